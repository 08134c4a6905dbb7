//! The shard shell around the I/O-free group coordinator ([`crate::group`]).
//!
//! Lives on every shard. For each partition of `__consumer_offsets` the shard owns there is one
//! [`GroupCoordinator`], so groups spread over cores the way partitions do. The shell does what
//! the state machine cannot: it reads the partition back at open (`load_raw` every record,
//! then `finish_load`), appends the records the coordinator asks to persist through the
//! shard's own append path and reports durability in emission order, keeps one timer per
//! coordinator, and hands each response to the request that waits for it (often later: a
//! JoinGroup is answered when the rebalance completes, from a tick or another member's call).
//!
//! Other shards reach a coordinator only through [`GroupReq`] messages
//! (`ShardReq::Group`); `api::groups` routes each group to
//! `group_partition(group, partitions)` and the shard owning that partition.
//!
//! Invariants: no `RefCell` borrow is held across an `.await`; a coordinator is stepped only
//! once loaded; persist completions reach it in the order its `Persist` actions came out
//! (one append queue per coordinator, awaited in order); every request stepped gets exactly
//! one answer (NOT_COORDINATOR when the partition is closed under it).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::StreamExt;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::ListGroupsRequest;
use kafka_protocol::ResponseError as E;
use storage::{Durability, PendingAppend};
use tracing::{info, warn};

use crate::controller::{ControllerReq, ControllerResp, NewTopic};
use crate::group::{
    group_partition, Action, GroupConfig, GroupCoordinator, Input, PersistError, Response,
    OFFSETS_TOPIC,
};
use crate::records::{self, BatchSpec, NewRecord};
use crate::shard::{expect_controller, now_ms, Shard, ShardReq};

/// Bytes read per step while loading an offsets partition.
const LOAD_READ_BYTES_MAX: usize = 1 << 20;
/// Largest decompressed batch accepted while loading (Kafka writes offsets uncompressed;
/// this only bounds memory against a corrupt length).
const LOAD_BATCH_DECOMPRESSED_BYTES_MAX: usize = 64 << 20;

/// A consumer-group request for the coordinators of the target shard.
#[derive(Debug)]
pub enum GroupReq {
    /// One request for the coordinator of offsets partition `partition`.
    Step { partition: i32, input: Box<Input> },
    /// ListGroups on every coordinator of the target shard.
    ListAll {
        api_version: i16,
        request: ListGroupsRequest,
    },
    /// Whether the coordinators of these partitions serve requests: per partition, 0 or
    /// COORDINATOR_LOAD_IN_PROGRESS / COORDINATOR_NOT_AVAILABLE.
    Status { partitions: Vec<i32> },
}

#[derive(Debug)]
pub enum GroupResp {
    /// The coordinator's answer, or the Kafka error code that stands for all of it.
    Step(Result<Response, i16>),
    /// The groups of the loaded coordinators, and COORDINATOR_LOAD_IN_PROGRESS if some
    /// coordinator was still loading (Kafka answers ListGroups that way too).
    Listed {
        groups: Vec<ListedGroup>,
        error: i16,
    },
    Status(Vec<i16>),
}

/// Creates `__consumer_offsets` through the controller if it does not exist yet (Kafka
/// creates it on first use; we do it at start-up so the first consumer finds it): Kafka's
/// `offsets.topic.num.partitions`, compacted, `offsets.topic.segment.bytes`; replication
/// factor 1 whatever `offsets.topic.replication.factor` says, as this is a single broker.
/// Runs on shard 0 (the controller).
pub async fn ensure_offsets_topic(shard: &Rc<Shard>) {
    if shard.meta().topic(OFFSETS_TOPIC).is_some() {
        return;
    }
    let k = &shard.config.kafka;
    let topic = NewTopic {
        name: OFFSETS_TOPIC.to_string(),
        partitions: k.offsets_topic_num_partitions(),
        replication_factor: 1,
        configs: vec![
            ("cleanup.policy".into(), Some("compact".into())),
            ("compression.type".into(), Some("producer".into())),
            (
                "segment.bytes".into(),
                Some(k.offsets_topic_segment_bytes().to_string()),
            ),
        ],
        assignment_partitions: None,
    };
    let reply = shard
        .call(
            0,
            ShardReq::Controller(ControllerReq::CreateTopics {
                topics: vec![topic],
                validate_only: false,
            }),
        )
        .await;
    match expect_controller(reply) {
        ControllerResp::Topics(results) => match results.first() {
            Some(Ok(t)) => info!(partitions = t.partitions, "created {OFFSETS_TOPIC}"),
            Some(Err(e)) => warn!(code = e.code, msg = ?e.message, "cannot create {OFFSETS_TOPIC}"),
            None => warn!("cannot create {OFFSETS_TOPIC}: empty controller answer"),
        },
        other => warn!(?other, "cannot create {OFFSETS_TOPIC}"),
    }
}

/// Where a group is coordinated: (offsets partition, owning shard), or `None` before the
/// offsets topic exists.
pub fn coordinator_of(shard: &Shard, group_id: &str) -> Option<(i32, usize)> {
    let meta = shard.meta();
    let topic = meta.topic(OFFSETS_TOPIC)?;
    let partitions = u32::try_from(topic.partitions).ok().filter(|n| *n > 0)?;
    let partition = i32::try_from(group_partition(group_id, partitions)).ok()?;
    Some((partition, meta.owner(OFFSETS_TOPIC, partition)))
}

/// The coordinators of one shard, by offsets partition.
#[derive(Default)]
pub struct Coordinators {
    by_partition: RefCell<HashMap<i32, Rc<Shell>>>,
}

enum Phase {
    Loading,
    Active(Box<GroupCoordinator>),
    /// Load failed or closed: requests get an error until the partition is opened again.
    Unavailable,
}

/// An append of `Action::Persist { persist_id }`, as queued for the persister.
type QueuedAppend = (u64, Result<PendingAppend, PersistError>);

/// One coordinator and its I/O: waiters, append queue and timer.
struct Shell {
    partition: i32,
    phase: RefCell<Phase>,
    /// Request id -> the handler awaiting its response.
    waiters: RefCell<HashMap<u64, oneshot::Sender<Response>>>,
    next_request_id: Cell<u64>,
    /// Appends in emission order; the persister task awaits each and completes it.
    persist_tx: RefCell<Option<mpsc::UnboundedSender<QueuedAppend>>>,
    /// Wakes the timer task when the tick moved earlier.
    tick_tx: RefCell<Option<mpsc::UnboundedSender<()>>>,
    tick_at_ms: Cell<Option<i64>>,
    durability: Durability,
}

impl Coordinators {
    /// Starts the coordinator of offsets partition `partition`, which this shard has just
    /// opened: it loads in the background and answers COORDINATOR_LOAD_IN_PROGRESS meanwhile.
    pub fn open(&self, shard: &Rc<Shard>, partition: i32) {
        if self.by_partition.borrow().contains_key(&partition) {
            return;
        }
        let (persist_tx, persist_rx) = mpsc::unbounded();
        let (tick_tx, tick_rx) = mpsc::unbounded();
        let durability = if shard.config.kafka.acks_all_fsync() {
            Durability::Fsynced
        } else {
            Durability::Written
        };
        let shell = Rc::new(Shell {
            partition,
            phase: RefCell::new(Phase::Loading),
            waiters: RefCell::new(HashMap::new()),
            next_request_id: Cell::new(0),
            persist_tx: RefCell::new(Some(persist_tx)),
            tick_tx: RefCell::new(Some(tick_tx)),
            tick_at_ms: Cell::new(None),
            durability,
        });
        self.by_partition
            .borrow_mut()
            .insert(partition, shell.clone());
        glommio::spawn_local(persister(shard.clone(), shell.clone(), persist_rx)).detach();
        glommio::spawn_local(ticker(shard.clone(), shell.clone(), tick_rx)).detach();
        let shard = shard.clone();
        glommio::spawn_local(async move { shell.load(&shard).await }).detach();
    }

    /// Stops the coordinator of `partition` (partition closed or moved): parked requests
    /// get NOT_COORDINATOR, its tasks end.
    pub fn close(&self, partition: i32) {
        let shell = self.by_partition.borrow_mut().remove(&partition);
        if let Some(shell) = shell {
            shell.close();
        }
    }

    /// Stops every coordinator (shard shutdown), before the partitions close.
    pub fn close_all(&self) {
        let shells: Vec<Rc<Shell>> = self
            .by_partition
            .borrow_mut()
            .drain()
            .map(|(_, s)| s)
            .collect();
        for shell in shells {
            shell.close();
        }
    }

    /// Answers a [`GroupReq`] for this shard's coordinators.
    pub async fn serve(&self, shard: &Rc<Shard>, req: GroupReq) -> GroupResp {
        match req {
            GroupReq::Step { partition, input } => {
                let shell = self.by_partition.borrow().get(&partition).cloned();
                match shell {
                    Some(shell) => GroupResp::Step(shell.step(shard, *input).await),
                    None => GroupResp::Step(Err(E::NotCoordinator.code())),
                }
            }
            GroupReq::ListAll {
                api_version,
                request,
            } => {
                let mut shells: Vec<Rc<Shell>> =
                    self.by_partition.borrow().values().cloned().collect();
                shells.sort_by_key(|s| s.partition);
                let mut groups = Vec::new();
                let mut error = 0;
                for shell in shells {
                    let input = Input::ListGroups {
                        api_version,
                        request: request.clone(),
                    };
                    match shell.step(shard, input).await {
                        Ok(Response::ListGroups(r)) => groups.extend(r.groups),
                        Ok(other) => warn!(?other, "ListGroups answered with another response"),
                        Err(code) => error = code,
                    }
                }
                GroupResp::Listed { groups, error }
            }
            GroupReq::Status { partitions } => {
                let map = self.by_partition.borrow();
                GroupResp::Status(
                    partitions
                        .iter()
                        .map(|p| match map.get(p).map(|s| s.status()) {
                            Some(code) => code,
                            None => E::CoordinatorNotAvailable.code(),
                        })
                        .collect(),
                )
            }
        }
    }
}

impl Shell {
    fn status(&self) -> i16 {
        match &*self.phase.borrow() {
            Phase::Active(_) => 0,
            Phase::Loading => E::CoordinatorLoadInProgress.code(),
            Phase::Unavailable => E::CoordinatorNotAvailable.code(),
        }
    }

    /// Steps the coordinator and waits for this request's answer (maybe from a later call).
    async fn step(self: &Rc<Self>, shard: &Rc<Shard>, input: Input) -> Result<Response, i16> {
        let request_id = self.next_request_id.get();
        self.next_request_id.set(request_id + 1);
        let actions = match &mut *self.phase.borrow_mut() {
            Phase::Active(coordinator) => coordinator.step(now_ms(), request_id, input),
            Phase::Loading => return Err(E::CoordinatorLoadInProgress.code()),
            Phase::Unavailable => return Err(E::NotCoordinator.code()),
        };
        let (tx, rx) = oneshot::channel();
        self.waiters.borrow_mut().insert(request_id, tx);
        self.apply(shard, actions);
        // A dropped sender means the coordinator was closed under the request.
        rx.await.map_err(|_| E::NotCoordinator.code())
    }

    fn tick(self: &Rc<Self>, shard: &Rc<Shard>) {
        let actions = match &mut *self.phase.borrow_mut() {
            Phase::Active(coordinator) => coordinator.tick(now_ms()),
            _ => return,
        };
        self.apply(shard, actions);
    }

    fn persisted(
        self: &Rc<Self>,
        shard: &Rc<Shard>,
        persist_id: u64,
        result: Result<(), PersistError>,
    ) {
        let completed = match &mut *self.phase.borrow_mut() {
            Phase::Active(coordinator) => {
                coordinator.persist_complete(now_ms(), persist_id, result)
            }
            // Closed meanwhile: shutdown already answered whoever waited for this append.
            _ => return,
        };
        match completed {
            Ok(actions) => self.apply(shard, actions),
            Err(e) => warn!(partition = self.partition, error = %e, "persist completion refused"),
        }
    }

    /// Carries out the coordinator's actions. Never awaits: appends are queued (offsets are
    /// assigned here, in emission order) and awaited by the persister task.
    fn apply(self: &Rc<Self>, shard: &Rc<Shard>, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Respond {
                    request_id,
                    response,
                } => {
                    let waiter = self.waiters.borrow_mut().remove(&request_id);
                    match waiter {
                        // The client may have gone; its answer has nowhere to go.
                        Some(tx) => {
                            let _ = tx.send(response);
                        }
                        None => warn!(
                            partition = self.partition,
                            request_id, "response for a request nobody waits for"
                        ),
                    }
                }
                Action::Persist {
                    persist_id,
                    records,
                } => {
                    let append = self.append(shard, &records);
                    let queued = self
                        .persist_tx
                        .borrow()
                        .as_ref()
                        .map(|tx| tx.unbounded_send((persist_id, append)).is_ok());
                    if queued != Some(true) {
                        warn!(
                            partition = self.partition,
                            persist_id, "append after close dropped"
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

    /// Encodes the records as one batch and appends it to this coordinator's partition.
    fn append(
        &self,
        shard: &Shard,
        records: &[crate::group::records::OffsetsRecord],
    ) -> Result<PendingAppend, PersistError> {
        let now = now_ms();
        let mut batch_records = Vec::with_capacity(records.len());
        for record in records {
            let (key, value) = record.encode().map_err(|e| {
                warn!(partition = self.partition, error = %e, "cannot encode an offsets record");
                PersistError::Other
            })?;
            batch_records.push(NewRecord {
                timestamp: now,
                key: Some(key),
                value,
                headers: Vec::new(),
            });
        }
        let batch = records::build_batch(&BatchSpec::default(), &batch_records).map_err(|e| {
            warn!(partition = self.partition, error = %e, "cannot build an offsets batch");
            PersistError::Other
        })?;
        // Pair assertion with the replay at load: what goes to disk is one batch holding
        // every record, in order.
        let info =
            storage::batch::BatchHeader::parse_exact(&batch).map_err(|_| PersistError::Other)?;
        assert_eq!(
            usize::try_from(info.records_count).ok(),
            Some(records.len()),
            "offsets batch must hold every record"
        );
        shard
            .append_built(OFFSETS_TOPIC, self.partition, batch)
            .map_err(|e| {
                warn!(partition = self.partition, code = e.code, msg = ?e.message, "offsets append failed");
                PersistError::from_append_error(e.code)
            })
    }

    /// Replays the partition into a new coordinator, then lets requests in.
    async fn load(self: Rc<Self>, shard: &Rc<Shard>) {
        let started = std::time::Instant::now();
        let mut coordinator = GroupCoordinator::new(group_config(shard));
        let loaded = self.replay(shard, &mut coordinator).await;
        if !matches!(*self.phase.borrow(), Phase::Loading) {
            return; // closed while loading
        }
        match loaded {
            Ok(records) => {
                let actions = coordinator.finish_load(now_ms());
                *self.phase.borrow_mut() = Phase::Active(Box::new(coordinator));
                self.apply(shard, actions);
                if records > 0 {
                    info!(
                        partition = self.partition,
                        records,
                        ms = started.elapsed().as_millis() as u64,
                        "group coordinator loaded"
                    );
                }
            }
            Err(e) => {
                warn!(partition = self.partition, error = %e, "loading the group coordinator failed; it stays unavailable");
                *self.phase.borrow_mut() = Phase::Unavailable;
            }
        }
    }

    /// Feeds every record of the partition (log start to high watermark) to `coordinator`;
    /// returns how many records were read.
    async fn replay(
        &self,
        shard: &Shard,
        coordinator: &mut GroupCoordinator,
    ) -> Result<u64, LoadError> {
        let partition = shard
            .partition(OFFSETS_TOPIC, self.partition)
            .ok_or(LoadError::NotOpen)?;
        let log = partition.log.clone();
        drop(partition);
        let end = log.high_watermark();
        let mut offset = log.log_start_offset();
        let mut count = 0u64;
        while offset < end {
            let read = log.read(offset, LOAD_READ_BYTES_MAX, true).await?;
            let bytes = read.into_bytes().await?;
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
                        if let Err(e) = coordinator.load_raw(key, record.value.as_deref()) {
                            // One bad record must not keep every group of the partition offline.
                            warn!(partition = self.partition, offset = record_offset, error = %e, "skipping an unreadable offsets record");
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
        if let Phase::Active(mut coordinator) = previous {
            for action in coordinator.shutdown() {
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
        // Whoever still waits learns NOT_COORDINATOR from the dropped sender.
        self.waiters.borrow_mut().clear();
        self.persist_tx.borrow_mut().take();
        self.tick_tx.borrow_mut().take();
    }
}

/// Awaits the coordinator's appends one by one, so completions keep emission order.
async fn persister(
    shard: Rc<Shard>,
    shell: Rc<Shell>,
    mut rx: mpsc::UnboundedReceiver<QueuedAppend>,
) {
    let mut last_persist_id = None;
    while let Some((persist_id, append)) = rx.next().await {
        // The coordinator numbers its appends in emission order; so must the completions.
        assert!(
            last_persist_id.is_none_or(|last| persist_id > last),
            "persist {persist_id} after {last_persist_id:?}"
        );
        last_persist_id = Some(persist_id);
        let result = match append {
            Ok(pending) => pending.wait(shell.durability).await.map_err(|e| {
                warn!(partition = shell.partition, error = %e, "offsets append not durable");
                PersistError::from_append_error(crate::errors::storage_code(&e).code())
            }),
            Err(e) => Err(e),
        };
        shell.persisted(&shard, persist_id, result);
    }
}

/// The coordinator's timer: sleeps until the armed tick (or forever when none), re-armed
/// through `rx`; ends when the shell closes.
async fn ticker(shard: Rc<Shard>, shell: Rc<Shell>, mut rx: mpsc::UnboundedReceiver<()>) {
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
                    let wait_ms = u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0);
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
                shell.tick(&shard);
            }
        }
    }
}

/// The coordinator settings, from the broker's Kafka configs.
fn group_config(shard: &Shard) -> GroupConfig {
    let k = &shard.config.kafka;
    let record_bytes_max = shard
        .meta()
        .topic(OFFSETS_TOPIC)
        .map(|t| t.config.max_message_bytes() as usize)
        .unwrap_or(GroupConfig::default().group_record_bytes_max);
    GroupConfig {
        session_timeout_ms_min: k.group_min_session_timeout_ms(),
        session_timeout_ms_max: k.group_max_session_timeout_ms(),
        initial_rebalance_delay_ms: k.group_initial_rebalance_delay_ms(),
        group_size_max: usize::try_from(k.group_max_size()).unwrap_or(usize::MAX),
        offsets_retention_ms: k.offsets_retention_ms(),
        offsets_retention_check_interval_ms: k.offsets_retention_check_interval_ms(),
        group_record_bytes_max: record_bytes_max,
        // Member ids must not repeat across coordinators or restarts.
        member_id_seed: uuid::Uuid::new_v4().as_u64_pair().0,
        ..GroupConfig::default()
    }
}

#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("the offsets partition is not open on this shard")]
    NotOpen,
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    #[error(transparent)]
    Records(#[from] records::RecordsError),
}

/// The record bytes of an offsets batch, for tests: key and value of every record.
#[cfg(test)]
fn batch_records(batch: &bytes::Bytes) -> Vec<(Option<bytes::Bytes>, Option<bytes::Bytes>)> {
    records::decode_batch(batch, LOAD_BATCH_DECOMPRESSED_BYTES_MAX)
        .map(|d| d.records.into_iter().map(|r| (r.key, r.value)).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::records::{OffsetCommitKey, OffsetCommitValue, OffsetsRecord};

    #[test]
    fn offsets_records_round_trip_through_a_batch() {
        let records = vec![
            OffsetsRecord::OffsetCommit {
                key: OffsetCommitKey {
                    group: "g".into(),
                    topic: "t".into(),
                    partition: 3,
                },
                value: Some(OffsetCommitValue {
                    offset: 42,
                    leader_epoch: 7,
                    metadata: "m".into(),
                    commit_timestamp_ms: 1,
                    expire_timestamp_ms: -1,
                }),
            },
            OffsetsRecord::GroupMetadata {
                group: "g".into(),
                value: None,
            },
        ];
        let built: Vec<NewRecord> = records
            .iter()
            .map(|r| {
                let (key, value) = r.encode().unwrap();
                NewRecord {
                    timestamp: 5,
                    key: Some(key),
                    value,
                    headers: Vec::new(),
                }
            })
            .collect();
        let batch = records::build_batch(&BatchSpec::default(), &built).unwrap();
        let back: Vec<OffsetsRecord> = batch_records(&batch)
            .into_iter()
            .map(|(k, v)| OffsetsRecord::decode(&k.unwrap(), v.as_deref()).unwrap())
            .collect();
        assert_eq!(back, records);
    }
}
