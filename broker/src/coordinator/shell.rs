//! The generic shell: runs [`StateMachine`]s, one per partition, on the shard owning the
//! partition (see the module docs of [`crate::coordinator`] for the contract and invariants).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::channel::{mpsc, oneshot};
use futures::StreamExt;
use tracing::{info, warn};

use super::{Action, Actions, CoordinatorLog, PendingDurable, PersistFailure, StateMachine};
use crate::errors::PartitionError;
use crate::log::records::{self, BatchSpec, NewRecord};

/// Bytes read per step while replaying a partition.
pub const LOAD_READ_BYTES_MAX: usize = 1 << 20;
/// Largest decompressed batch accepted while replaying (coordinators write uncompressed;
/// this only bounds memory against a corrupt length).
pub const LOAD_BATCH_DECOMPRESSED_BYTES_MAX: usize = 64 << 20;

/// Why a request got no answer from the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ShellError {
    /// No coordinator for that partition on this shard.
    #[error("no coordinator for this partition here")]
    NotOpen,
    /// Still replaying the partition.
    #[error("the coordinator is loading")]
    Loading,
    /// The load failed, or the coordinator was closed before the request arrived.
    #[error("the coordinator is unavailable")]
    Unavailable,
    /// The coordinator closed while the request waited for its answer.
    #[error("the coordinator closed under the request")]
    Closed,
}

/// Whether a coordinator serves requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Loading,
    Active,
    /// Load failed, or closed.
    Unavailable,
}

/// The coordinators of one kind on one shard, by partition of their topic.
pub struct Coordinators<M: StateMachine> {
    by_partition: RefCell<HashMap<i32, Rc<Shell<M>>>>,
}

impl<M: StateMachine> Default for Coordinators<M> {
    fn default() -> Self {
        Coordinators {
            by_partition: RefCell::new(HashMap::new()),
        }
    }
}

enum Phase<M> {
    Loading,
    Active(Box<M>),
    Unavailable,
}

/// An append of `Action::Persist { persist_id }`, as queued for the persister.
type QueuedAppend = (u64, Result<PendingDurable, PersistFailure>);

/// One coordinator and its I/O: waiters, append queue and timer.
struct Shell<M: StateMachine> {
    partition: i32,
    /// Names the coordinator kind in logs.
    kind: &'static str,
    log: Rc<dyn CoordinatorLog>,
    phase: RefCell<Phase<M>>,
    /// Request id -> the handler awaiting its response.
    waiters: RefCell<HashMap<u64, oneshot::Sender<M::Response>>>,
    next_request_id: Cell<u64>,
    /// Appends in emission order; the persister task awaits each and completes it.
    persist_tx: RefCell<Option<mpsc::UnboundedSender<QueuedAppend>>>,
    /// Wakes the timer task when the tick moved earlier.
    tick_tx: RefCell<Option<mpsc::UnboundedSender<()>>>,
    tick_at_ms: Cell<Option<i64>>,
}

impl<M: StateMachine> Coordinators<M> {
    /// Becomes the coordinator of `partition`, which this shard has just opened: replays
    /// `log` into `machine` in the background (answering [`ShellError::Loading`]
    /// meanwhile), then serves. Opening an open partition does nothing.
    pub fn open(
        &self,
        kind: &'static str,
        partition: i32,
        log: Rc<dyn CoordinatorLog>,
        machine: M,
    ) {
        if self.by_partition.borrow().contains_key(&partition) {
            return;
        }
        let (persist_tx, persist_rx) = mpsc::unbounded();
        let (tick_tx, tick_rx) = mpsc::unbounded();
        let shell = Rc::new(Shell {
            partition,
            kind,
            log,
            phase: RefCell::new(Phase::Loading),
            waiters: RefCell::new(HashMap::new()),
            next_request_id: Cell::new(0),
            persist_tx: RefCell::new(Some(persist_tx)),
            tick_tx: RefCell::new(Some(tick_tx)),
            tick_at_ms: Cell::new(None),
        });
        self.by_partition
            .borrow_mut()
            .insert(partition, shell.clone());
        glommio::spawn_local(persister(shell.clone(), persist_rx)).detach();
        glommio::spawn_local(ticker(shell.clone(), tick_rx)).detach();
        glommio::spawn_local(async move { shell.load(machine).await }).detach();
    }

    /// Resigns `partition` (closed or moved): the machine answers what it parked, every
    /// other waiting request gets [`ShellError::Closed`], its tasks end.
    pub fn close(&self, partition: i32) {
        let shell = self.by_partition.borrow_mut().remove(&partition);
        if let Some(shell) = shell {
            shell.close();
        }
    }

    /// Closes every coordinator (shard shutdown), before the partitions close.
    pub fn close_all(&self) {
        let shells: Vec<Rc<Shell<M>>> = self
            .by_partition
            .borrow_mut()
            .drain()
            .map(|(_, s)| s)
            .collect();
        for shell in shells {
            shell.close();
        }
    }

    /// The partitions with a coordinator here, ascending.
    pub fn partitions(&self) -> Vec<i32> {
        let mut partitions: Vec<i32> = self.by_partition.borrow().keys().copied().collect();
        partitions.sort_unstable();
        partitions
    }

    /// Calls `f` with every loaded machine (for metrics: read-only, synchronous, so no borrow
    /// outlives the call).
    pub fn for_each_active(&self, mut f: impl FnMut(&M)) {
        let shells: Vec<Rc<Shell<M>>> = self.by_partition.borrow().values().cloned().collect();
        for shell in shells {
            if let Phase::Active(machine) = &*shell.phase.borrow() {
                f(machine);
            }
        }
    }

    /// Whether the coordinator of `partition` serves; `None` when there is none here.
    pub fn status(&self, partition: i32) -> Option<Status> {
        let shell = self.by_partition.borrow().get(&partition).cloned();
        shell.map(|s| s.status())
    }

    /// Steps the coordinator of `partition` and waits for this request's answer (maybe from
    /// a later call).
    pub async fn step(&self, partition: i32, input: M::Input) -> Result<M::Response, ShellError> {
        let shell = self.by_partition.borrow().get(&partition).cloned();
        match shell {
            Some(shell) => shell.step(input).await,
            None => Err(ShellError::NotOpen),
        }
    }
}

impl<M: StateMachine> Shell<M> {
    fn status(&self) -> Status {
        match &*self.phase.borrow() {
            Phase::Active(_) => Status::Active,
            Phase::Loading => Status::Loading,
            Phase::Unavailable => Status::Unavailable,
        }
    }

    async fn step(self: &Rc<Self>, input: M::Input) -> Result<M::Response, ShellError> {
        let request_id = self.next_request_id.get();
        self.next_request_id.set(request_id + 1);
        // The waiter is registered before the actions are applied: the answer may come out
        // of this very step.
        let (tx, rx) = oneshot::channel();
        let actions = match &mut *self.phase.borrow_mut() {
            Phase::Active(machine) => machine.step(self.log.now_ms(), request_id, input),
            Phase::Loading => return Err(ShellError::Loading),
            Phase::Unavailable => return Err(ShellError::Unavailable),
        };
        self.waiters.borrow_mut().insert(request_id, tx);
        self.apply(actions);
        // A dropped sender means the coordinator was closed under the request.
        rx.await.map_err(|_| ShellError::Closed)
    }

    fn tick(self: &Rc<Self>) {
        let actions = match &mut *self.phase.borrow_mut() {
            Phase::Active(machine) => machine.tick(self.log.now_ms()),
            _ => return,
        };
        self.apply(actions);
    }

    fn persisted(self: &Rc<Self>, persist_id: u64, result: Result<(), PersistFailure>) {
        let completed = match &mut *self.phase.borrow_mut() {
            Phase::Active(machine) => machine.persisted(self.log.now_ms(), persist_id, result),
            // Closed meanwhile: shutdown already answered whoever waited for this append.
            _ => return,
        };
        match completed {
            Ok(actions) => self.apply(actions),
            Err(e) => {
                warn!(kind = self.kind, partition = self.partition, error = %e, "persist completion refused")
            }
        }
    }

    /// Carries out the machine's actions. Never awaits: appends are queued (offsets are
    /// assigned here, in emission order) and awaited by the persister task.
    fn apply(self: &Rc<Self>, actions: Actions<M>) {
        for action in actions {
            match action {
                Action::Respond {
                    request_id,
                    response,
                } => self.respond(request_id, response),
                Action::Persist {
                    persist_id,
                    records,
                } => {
                    let append = self.append(&records);
                    let queued = self
                        .persist_tx
                        .borrow()
                        .as_ref()
                        .map(|tx| tx.unbounded_send((persist_id, append)).is_ok());
                    if queued != Some(true) {
                        warn!(
                            kind = self.kind,
                            partition = self.partition,
                            persist_id,
                            "append after close dropped"
                        );
                    }
                }
                Action::ScheduleTick { at_ms } => {
                    if self.tick_at_ms.get().is_none_or(|armed| at_ms < armed) {
                        self.tick_at_ms.set(Some(at_ms));
                        if let Some(tx) = self.tick_tx.borrow().as_ref() {
                            let _ = tx.unbounded_send(());
                        }
                    }
                }
            }
        }
    }

    fn respond(&self, request_id: u64, response: M::Response) {
        let waiter = self.waiters.borrow_mut().remove(&request_id);
        match waiter {
            // The client may have gone; its answer has nowhere to go.
            Some(tx) => {
                let _ = tx.send(response);
            }
            None => warn!(
                kind = self.kind,
                partition = self.partition,
                request_id,
                "response for a request nobody waits for"
            ),
        }
    }

    /// Encodes the records as one batch and appends it to the partition.
    fn append(&self, records: &[M::Record]) -> Result<PendingDurable, PersistFailure> {
        let now = self.log.now_ms();
        let mut batch_records = Vec::with_capacity(records.len());
        for record in records {
            let (key, value) = M::encode(record).map_err(|e| {
                warn!(kind = self.kind, partition = self.partition, error = %e, "cannot encode a coordinator record");
                PersistFailure::Encode(e.to_string())
            })?;
            batch_records.push(NewRecord {
                timestamp: now,
                key: Some(key),
                value,
                headers: Vec::new(),
            });
        }
        let batch = records::build_batch(&BatchSpec::default(), &batch_records).map_err(|e| {
            warn!(kind = self.kind, partition = self.partition, error = %e, "cannot build a coordinator batch");
            PersistFailure::Encode(e.to_string())
        })?;
        // Pair assertion with the replay at load: what goes to disk is one batch holding
        // every record, in order.
        let info = storage::batch::BatchHeader::parse_exact(&batch)
            .map_err(|e| PersistFailure::Encode(e.to_string()))?;
        assert_eq!(
            usize::try_from(info.records_count).ok(),
            Some(records.len()),
            "a coordinator batch must hold every record"
        );
        let append = if records.iter().any(M::must_sync) {
            self.log.append(batch)
        } else {
            self.log.append_unsynced(batch)
        };
        append.map_err(|e| {
            warn!(kind = self.kind, partition = self.partition, code = e.code, msg = ?e.message, "coordinator append failed");
            PersistFailure::Log(e)
        })
    }

    /// Replays the partition into `machine`, then lets requests in.
    async fn load(self: Rc<Self>, mut machine: M) {
        let started = Instant::now();
        let loaded = self.replay(&mut machine).await;
        if !matches!(*self.phase.borrow(), Phase::Loading) {
            return; // closed while loading
        }
        match loaded {
            Ok(records) => {
                let actions = machine.finish_load(self.log.now_ms());
                *self.phase.borrow_mut() = Phase::Active(Box::new(machine));
                self.apply(actions);
                if records > 0 {
                    info!(
                        kind = self.kind,
                        partition = self.partition,
                        records,
                        ms = started.elapsed().as_millis() as u64,
                        "coordinator loaded"
                    );
                }
            }
            Err(e) => {
                warn!(kind = self.kind, partition = self.partition, error = %e, "loading the coordinator failed; it stays unavailable");
                *self.phase.borrow_mut() = Phase::Unavailable;
            }
        }
    }

    /// Feeds every keyed record of the partition (log start to high watermark) to
    /// `machine`; returns how many records were read.
    async fn replay(&self, machine: &mut M) -> Result<u64, LoadError> {
        let end = self.log.high_watermark();
        let mut offset = self.log.log_start_offset();
        let mut count = 0u64;
        while offset < end {
            let bytes = self.log.read(offset, LOAD_READ_BYTES_MAX).await?;
            if bytes.is_empty() {
                break;
            }
            for batch in records::split_batches(&bytes)? {
                let decoded = records::decode_batch(&batch, LOAD_BATCH_DECOMPRESSED_BYTES_MAX)?;
                let next = decoded.info.last_offset() + 1;
                if !decoded.info.is_control() {
                    for (record_offset, _, record) in decoded.iter() {
                        if record_offset < offset {
                            continue;
                        }
                        let Some(key) = &record.key else { continue };
                        count += 1;
                        if let Err(e) = machine.replay(key, record.value.as_deref()) {
                            // One bad record must not keep the whole partition offline.
                            warn!(kind = self.kind, partition = self.partition, offset = record_offset, error = %e, "skipping an unreadable coordinator record");
                        }
                    }
                }
                assert!(
                    next > offset || decoded.records.is_empty(),
                    "load must advance"
                );
                offset = offset.max(next);
            }
        }
        Ok(count)
    }

    fn close(&self) {
        let previous = std::mem::replace(&mut *self.phase.borrow_mut(), Phase::Unavailable);
        if let Phase::Active(mut machine) = previous {
            for action in machine.shutdown() {
                if let Action::Respond {
                    request_id,
                    response,
                } = action
                {
                    let waiter = self.waiters.borrow_mut().remove(&request_id);
                    if let Some(tx) = waiter {
                        let _ = tx.send(response);
                    }
                }
            }
        }
        // Whoever still waits learns `Closed` from the dropped sender.
        self.waiters.borrow_mut().clear();
        self.persist_tx.borrow_mut().take();
        self.tick_tx.borrow_mut().take();
    }
}

/// Awaits the coordinator's appends one by one, so completions keep emission order.
async fn persister<M: StateMachine>(
    shell: Rc<Shell<M>>,
    mut rx: mpsc::UnboundedReceiver<QueuedAppend>,
) {
    let mut last_persist_id = None;
    while let Some((persist_id, append)) = rx.next().await {
        // The machine numbers its appends in emission order; so must the completions.
        assert!(
            last_persist_id.is_none_or(|last| persist_id > last),
            "persist {persist_id} after {last_persist_id:?}"
        );
        last_persist_id = Some(persist_id);
        let result = match append {
            Ok(pending) => pending.await.map_err(|e| {
                warn!(kind = shell.kind, partition = shell.partition, code = e.code, msg = ?e.message, "coordinator append not durable");
                PersistFailure::Log(e)
            }),
            Err(e) => Err(e),
        };
        shell.persisted(persist_id, result);
    }
}

/// The coordinator's timer: sleeps until the armed tick (or forever when none), re-armed
/// through `rx`; ends when the shell closes.
async fn ticker<M: StateMachine>(shell: Rc<Shell<M>>, mut rx: mpsc::UnboundedReceiver<()>) {
    enum Wake {
        Rearmed,
        Due,
        Closed,
    }
    loop {
        let armed = shell.tick_at_ms.get();
        let rearmed = async {
            match rx.next().await {
                Some(()) => Wake::Rearmed,
                None => Wake::Closed,
            }
        };
        let due = async {
            match armed {
                Some(at) => {
                    let wait_ms = u64::try_from(at.saturating_sub(shell.log.now_ms())).unwrap_or(0);
                    glommio::timer::sleep(Duration::from_millis(wait_ms)).await;
                    Wake::Due
                }
                None => futures::future::pending().await,
            }
        };
        match futures_lite::future::or(rearmed, due).await {
            Wake::Closed => return,
            Wake::Rearmed => {}
            Wake::Due => {
                shell.tick_at_ms.set(None);
                shell.tick();
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("reading the partition failed: code {}", .0.code)]
    Read(PartitionError),
    #[error(transparent)]
    Records(#[from] records::RecordsError),
}

impl From<PartitionError> for LoadError {
    fn from(e: PartitionError) -> LoadError {
        LoadError::Read(e)
    }
}
