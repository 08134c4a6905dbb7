//! The shell driven without sockets: a toy counter machine over an in-memory log.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::oneshot;
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use glommio::{LocalExecutorBuilder, Placement};
use kafka_protocol::ResponseError as E;

use super::shell::LOAD_BATCH_DECOMPRESSED_BYTES_MAX;
use super::*;
use crate::log::records::{self, BatchSpec, NewRecord};

const KEY: &[u8] = b"n";

/// What the test sees of the machine living inside the shell.
#[derive(Default)]
struct Seen {
    replayed: RefCell<Vec<i64>>,
    /// Persist ids in the order their completions arrived.
    completed: RefCell<Vec<u64>>,
}

/// Adds numbers; each add is persisted as one record and answered once durable.
struct Counter {
    value: i64,
    next_persist_id: u64,
    /// (persist id, request id, delta) awaiting completion, in emission order.
    pending: VecDeque<(u64, u64, i64)>,
    /// (wake at, request id) parked until a time.
    sleepers: Vec<(i64, u64)>,
    loaded: bool,
    seen: Rc<Seen>,
}

impl Counter {
    fn new(seen: &Rc<Seen>) -> Counter {
        Counter {
            value: 0,
            next_persist_id: 0,
            pending: VecDeque::new(),
            sleepers: Vec::new(),
            loaded: false,
            seen: seen.clone(),
        }
    }

    fn rearm(&self) -> Option<Action<Reply, i64>> {
        let at_ms = self.sleepers.iter().map(|(at, _)| *at).min()?;
        Some(Action::ScheduleTick { at_ms })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Value(i64),
    Failed,
    Woke,
    ShutDown,
}

enum Op {
    Add(i64),
    Get,
    SleepMs(i64),
}

#[derive(Debug, thiserror::Error)]
enum CounterError {
    #[error("unreadable record")]
    BadRecord,
    #[error("cannot encode {0}")]
    Unencodable(i64),
    #[error("completion {0} out of order")]
    OutOfOrder(u64),
}

impl StateMachine for Counter {
    type Input = Op;
    type Response = Reply;
    type Record = i64;
    type Error = CounterError;

    fn replay(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), CounterError> {
        assert!(!self.loaded, "replay after finish_load");
        if key != KEY {
            return Err(CounterError::BadRecord);
        }
        let bytes: [u8; 8] = value
            .and_then(|v| v.try_into().ok())
            .ok_or(CounterError::BadRecord)?;
        let n = i64::from_be_bytes(bytes);
        self.value += n;
        self.seen.replayed.borrow_mut().push(n);
        Ok(())
    }

    fn finish_load(&mut self, _now_ms: i64) -> Actions<Self> {
        self.loaded = true;
        Vec::new()
    }

    fn step(&mut self, now_ms: i64, request_id: u64, input: Op) -> Actions<Self> {
        assert!(self.loaded, "stepped before the load finished");
        match input {
            Op::Add(n) => {
                let persist_id = self.next_persist_id;
                self.next_persist_id += 1;
                self.pending.push_back((persist_id, request_id, n));
                vec![Action::Persist {
                    persist_id,
                    records: vec![n],
                }]
            }
            Op::Get => vec![Action::Respond {
                request_id,
                response: Reply::Value(self.value),
            }],
            Op::SleepMs(ms) => {
                self.sleepers.push((now_ms + ms, request_id));
                self.rearm().into_iter().collect()
            }
        }
    }

    fn tick(&mut self, now_ms: i64) -> Actions<Self> {
        let (due, rest): (Vec<_>, Vec<_>) = self.sleepers.iter().partition(|(at, _)| *at <= now_ms);
        self.sleepers = rest;
        let mut out: Actions<Self> = due
            .into_iter()
            .map(|(_, request_id)| Action::Respond {
                request_id,
                response: Reply::Woke,
            })
            .collect();
        out.extend(self.rearm());
        out
    }

    fn persisted(
        &mut self,
        _now_ms: i64,
        persist_id: u64,
        result: Result<(), PersistFailure>,
    ) -> Result<Actions<Self>, CounterError> {
        self.seen.completed.borrow_mut().push(persist_id);
        match self.pending.front() {
            Some((id, _, _)) if *id == persist_id => {}
            _ => return Err(CounterError::OutOfOrder(persist_id)),
        }
        let Some((_, request_id, n)) = self.pending.pop_front() else {
            return Err(CounterError::OutOfOrder(persist_id));
        };
        let response = match result {
            Ok(()) => {
                self.value += n;
                Reply::Value(self.value)
            }
            Err(_) => Reply::Failed,
        };
        Ok(vec![Action::Respond {
            request_id,
            response,
        }])
    }

    /// Answers the sleepers; abandons pending appends (their requests learn `Closed`).
    fn shutdown(&mut self) -> Actions<Self> {
        self.pending.clear();
        std::mem::take(&mut self.sleepers)
            .into_iter()
            .map(|(_, request_id)| Action::Respond {
                request_id,
                response: Reply::ShutDown,
            })
            .collect()
    }

    fn encode(record: &i64) -> Result<(Bytes, Option<Bytes>), CounterError> {
        if *record == i64::MIN {
            return Err(CounterError::Unencodable(*record));
        }
        Ok((
            Bytes::from_static(KEY),
            Some(Bytes::copy_from_slice(&record.to_be_bytes())),
        ))
    }
}

/// An in-memory partition: batches with their offsets; appends can be held (durability
/// released by the test) or refused, and the replay can be held at its first read.
#[derive(Default)]
struct FakeLog {
    /// (base offset, last offset, batch).
    batches: RefCell<Vec<(i64, i64, Bytes)>>,
    next_offset: Cell<i64>,
    hold_durability: Cell<bool>,
    held: RefCell<Vec<oneshot::Sender<()>>>,
    refuse_appends: Cell<bool>,
    fail_reads: Cell<bool>,
    read_gate: RefCell<Option<oneshot::Receiver<()>>>,
    reads: Cell<usize>,
}

impl FakeLog {
    /// The values of every record in the log, batch by batch.
    fn values(&self) -> Vec<Vec<i64>> {
        self.batches
            .borrow()
            .iter()
            .map(|(_, _, batch)| {
                records::decode_batch(batch, LOAD_BATCH_DECOMPRESSED_BYTES_MAX)
                    .unwrap()
                    .records
                    .into_iter()
                    .map(|r| {
                        let v: [u8; 8] = r.value.unwrap().as_ref().try_into().unwrap();
                        i64::from_be_bytes(v)
                    })
                    .collect()
            })
            .collect()
    }

    /// Appends a batch of raw (key, value) records, durable at once.
    fn push(&self, records: &[(&'static [u8], i64)]) {
        let built: Vec<NewRecord> = records
            .iter()
            .map(|(key, n)| NewRecord {
                timestamp: 0,
                key: Some(Bytes::from_static(key)),
                value: Some(Bytes::copy_from_slice(&n.to_be_bytes())),
                headers: Vec::new(),
            })
            .collect();
        let batch = records::build_batch(&BatchSpec::default(), &built).unwrap();
        drop(self.append(batch).unwrap());
    }
}

impl CoordinatorLog for FakeLog {
    fn now_ms(&self) -> i64 {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        since_epoch.map_or(0, |d| d.as_millis() as i64)
    }

    fn log_start_offset(&self) -> i64 {
        0
    }

    fn high_watermark(&self) -> i64 {
        self.next_offset.get()
    }

    /// One batch per read, so the replay has to loop.
    fn read(
        &self,
        offset: i64,
        _max_bytes: usize,
    ) -> LocalBoxFuture<'_, Result<Bytes, PartitionError>> {
        async move {
            let gate = self.read_gate.borrow_mut().take();
            if let Some(gate) = gate {
                let _ = gate.await;
            }
            self.reads.set(self.reads.get() + 1);
            if self.fail_reads.get() {
                return Err(PartitionError::new(E::KafkaStorageError));
            }
            let batches = self.batches.borrow();
            Ok(batches
                .iter()
                .find(|(_, last, _)| *last >= offset)
                .map(|(_, _, b)| b.clone())
                .unwrap_or_default())
        }
        .boxed_local()
    }

    fn append(&self, batch: Bytes) -> Result<PendingDurable, PartitionError> {
        if self.refuse_appends.get() {
            return Err(PartitionError::new(E::KafkaStorageError));
        }
        let info = storage::batch::BatchHeader::parse_exact(&batch).unwrap();
        let count = i64::from(info.records_count);
        let base = self.next_offset.get();
        let mut bytes = batch.to_vec();
        bytes[..8].copy_from_slice(&base.to_be_bytes());
        self.batches
            .borrow_mut()
            .push((base, base + count - 1, Bytes::from(bytes)));
        self.next_offset.set(base + count);
        if !self.hold_durability.get() {
            return Ok(async { Ok(()) }.boxed_local());
        }
        let (tx, rx) = oneshot::channel();
        self.held.borrow_mut().push(tx);
        Ok(async move {
            rx.await
                .map_err(|_| PartitionError::new(E::KafkaStorageError))
        }
        .boxed_local())
    }
}

fn run<F: Future<Output = ()> + 'static>(test: impl FnOnce() -> F + Send + 'static) {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(512 << 10)
        .spawn(test)
        .unwrap()
        .join()
        .unwrap();
}

/// Waits for `cond` with a generous deadline (no timing assertion).
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
}

struct Fixture {
    log: Rc<FakeLog>,
    seen: Rc<Seen>,
    coordinators: Rc<Coordinators<Counter>>,
}

const P: i32 = 3;

impl Fixture {
    fn new(log: FakeLog) -> Fixture {
        Fixture {
            log: Rc::new(log),
            seen: Rc::new(Seen::default()),
            coordinators: Rc::new(Coordinators::default()),
        }
    }

    fn open(&self) {
        let log: Rc<dyn CoordinatorLog> = self.log.clone();
        self.coordinators
            .open("counter", P, log, Counter::new(&self.seen));
    }

    async fn open_and_load(&self) {
        self.open();
        let c = self.coordinators.clone();
        until("the load", || c.status(P) == Some(Status::Active)).await;
    }

    /// Steps in a task of its own; the answer lands in the returned cell.
    fn spawn_step(&self, op: Op) -> Rc<RefCell<Option<Result<Reply, ShellError>>>> {
        let out = Rc::new(RefCell::new(None));
        let c = self.coordinators.clone();
        let o = out.clone();
        glommio::spawn_local(async move {
            let answer = c.step(P, op).await;
            assert!(o.borrow_mut().replace(answer).is_none(), "answered twice");
        })
        .detach();
        out
    }
}

#[test]
fn replay_feeds_every_record_in_order_then_serves() {
    run(|| async {
        let log = FakeLog::default();
        log.push(&[(KEY, 1), (KEY, 2)]);
        log.push(&[(KEY, 3)]);
        log.push(&[(b"junk", 100)]);
        log.push(&[(KEY, 4)]);
        let f = Fixture::new(log);
        f.open_and_load().await;
        assert_eq!(*f.seen.replayed.borrow(), vec![1, 2, 3, 4]);
        assert!(
            f.log.reads.get() >= 4,
            "one batch per read: the replay loops"
        );
        assert_eq!(f.coordinators.step(P, Op::Get).await, Ok(Reply::Value(10)));
        assert_eq!(
            f.coordinators.step(P + 1, Op::Get).await,
            Err(ShellError::NotOpen)
        );
    });
}

#[test]
fn requests_during_the_load_are_refused_with_loading() {
    run(|| async {
        let log = FakeLog::default();
        log.push(&[(KEY, 7)]);
        let (release, gate) = oneshot::channel();
        *log.read_gate.borrow_mut() = Some(gate);
        let f = Fixture::new(log);
        f.open();
        assert_eq!(f.coordinators.status(P), Some(Status::Loading));
        assert_eq!(
            f.coordinators.step(P, Op::Get).await,
            Err(ShellError::Loading)
        );
        release.send(()).unwrap();
        let c = f.coordinators.clone();
        until("the load", || c.status(P) == Some(Status::Active)).await;
        assert_eq!(f.coordinators.step(P, Op::Get).await, Ok(Reply::Value(7)));
    });
}

#[test]
fn a_failed_load_leaves_the_coordinator_unavailable() {
    run(|| async {
        let log = FakeLog::default();
        log.push(&[(KEY, 1)]);
        log.fail_reads.set(true);
        let f = Fixture::new(log);
        f.open();
        let c = f.coordinators.clone();
        until("the failed load", || {
            c.status(P) == Some(Status::Unavailable)
        })
        .await;
        assert_eq!(
            f.coordinators.step(P, Op::Get).await,
            Err(ShellError::Unavailable)
        );
    });
}

#[test]
fn appends_land_and_complete_in_emission_order() {
    run(|| async {
        let f = Fixture::new(FakeLog::default());
        f.open_and_load().await;
        f.log.hold_durability.set(true);
        let answers: Vec<_> = [1, 2, 3].map(|n| f.spawn_step(Op::Add(n))).into();
        let log = &f.log;
        until("three appends", || log.held.borrow().len() == 3).await;
        assert_eq!(f.log.values(), vec![vec![1], vec![2], vec![3]]);
        // Durable out of order: the completions still reach the machine in order.
        let held: Vec<_> = f.log.held.borrow_mut().drain(..).collect();
        for tx in held.into_iter().rev() {
            tx.send(()).unwrap();
        }
        until("three answers", || {
            answers.iter().all(|a| a.borrow().is_some())
        })
        .await;
        assert_eq!(*f.seen.completed.borrow(), vec![0, 1, 2]);
        let got: Vec<_> = answers.iter().map(|a| a.borrow().clone()).collect();
        assert_eq!(
            got,
            vec![
                Some(Ok(Reply::Value(1))),
                Some(Ok(Reply::Value(3))),
                Some(Ok(Reply::Value(6)))
            ]
        );
    });
}

#[test]
fn failed_appends_are_reported_to_the_machine() {
    run(|| async {
        let f = Fixture::new(FakeLog::default());
        f.open_and_load().await;
        f.log.refuse_appends.set(true);
        assert_eq!(f.coordinators.step(P, Op::Add(5)).await, Ok(Reply::Failed));
        f.log.refuse_appends.set(false);
        assert_eq!(
            f.coordinators.step(P, Op::Add(i64::MIN)).await,
            Ok(Reply::Failed)
        );
        f.log.hold_durability.set(true);
        let answer = f.spawn_step(Op::Add(9));
        let log = &f.log;
        until("the held append", || log.held.borrow().len() == 1).await;
        // The durability wait fails (the sender is dropped).
        f.log.held.borrow_mut().clear();
        until("the answer", || answer.borrow().is_some()).await;
        assert_eq!(*answer.borrow(), Some(Ok(Reply::Failed)));
        assert_eq!(*f.seen.completed.borrow(), vec![0, 1, 2]);
        assert_eq!(f.coordinators.step(P, Op::Get).await, Ok(Reply::Value(0)));
    });
}

#[test]
fn the_timer_fires_and_moves_earlier_when_rearmed() {
    run(|| async {
        let f = Fixture::new(FakeLog::default());
        f.open_and_load().await;
        let late = f.spawn_step(Op::SleepMs(40));
        let early = f.spawn_step(Op::SleepMs(1));
        until("the early sleeper", || early.borrow().is_some()).await;
        assert_eq!(*early.borrow(), Some(Ok(Reply::Woke)));
        until("the late sleeper", || late.borrow().is_some()).await;
        assert_eq!(*late.borrow(), Some(Ok(Reply::Woke)));
    });
}

#[test]
fn close_answers_every_waiting_request_once_and_stops_the_tasks() {
    run(|| async {
        let f = Fixture::new(FakeLog::default());
        f.open_and_load().await;
        f.log.hold_durability.set(true);
        let add = f.spawn_step(Op::Add(1));
        let sleeper = f.spawn_step(Op::SleepMs(600_000));
        let log = &f.log;
        until("the held append", || log.held.borrow().len() == 1).await;
        f.coordinators.close(P);
        until("both answers", || {
            add.borrow().is_some() && sleeper.borrow().is_some()
        })
        .await;
        // Parked in the machine: its shutdown answer; waiting on the log: Closed.
        assert_eq!(*sleeper.borrow(), Some(Ok(Reply::ShutDown)));
        assert_eq!(*add.borrow(), Some(Err(ShellError::Closed)));
        assert_eq!(f.coordinators.status(P), None);
        assert_eq!(
            f.coordinators.step(P, Op::Get).await,
            Err(ShellError::NotOpen)
        );
        // The append becomes durable after the close: nobody is answered twice.
        let held: Vec<_> = f.log.held.borrow_mut().drain(..).collect();
        for tx in held {
            tx.send(()).unwrap();
        }
        // The persister, the timer and the load task all let go of the log.
        until("the tasks to end", || Rc::strong_count(&f.log) == 1).await;
        assert!(f.seen.completed.borrow().is_empty());
    });
}

#[test]
fn reopening_replays_what_was_persisted() {
    run(|| async {
        let f = Fixture::new(FakeLog::default());
        f.open_and_load().await;
        assert_eq!(
            f.coordinators.step(P, Op::Add(2)).await,
            Ok(Reply::Value(2))
        );
        assert_eq!(
            f.coordinators.step(P, Op::Add(3)).await,
            Ok(Reply::Value(5))
        );
        f.coordinators.close(P);
        f.open_and_load().await;
        assert_eq!(*f.seen.replayed.borrow(), vec![2, 3]);
        assert_eq!(f.coordinators.step(P, Op::Get).await, Ok(Reply::Value(5)));
    });
}
