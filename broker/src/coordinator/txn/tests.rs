//! The transaction coordinator without sockets: drive it, complete its persists, and check
//! its answers and that a replay of what it persisted gives the same state.

use super::*;
use crate::coordinator::Action as A;

struct Harness {
    c: TxnCoordinator,
    /// Everything persisted (durable), in order.
    log: Vec<TxnRecord>,
    next_request: u64,
    now: i64,
}

impl Harness {
    fn new() -> Self {
        Harness {
            c: TxnCoordinator::new(TxnConfig {
                transaction_timeout_ms_max: 60_000,
                transactional_id_expiration_ms: 100_000,
            }),
            log: Vec::new(),
            next_request: 0,
            now: 1_000,
        }
    }

    /// Steps `input`, completes every persist successfully, returns the answers.
    fn step(&mut self, input: Input) -> Vec<Response> {
        let id = self.next_request;
        self.next_request += 1;
        let actions = self.c.step(self.now, id, input);
        self.run(actions)
    }

    fn run(&mut self, actions: Vec<Action>) -> Vec<Response> {
        let mut out = Vec::new();
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        while let Some(a) = queue.pop_front() {
            match a {
                A::Respond { response, .. } => out.push(response),
                A::Persist {
                    persist_id,
                    records,
                } => {
                    for r in &records {
                        let (k, v) = r.encode().unwrap();
                        let mut probe = TxnCoordinator::new(TxnConfig::default());
                        probe.replay(&k, v.as_deref()).unwrap();
                        assert_eq!(probe.get(&r.transactional_id), r.meta.as_ref());
                    }
                    self.log.extend(records);
                    queue.extend(self.c.persisted(persist_id, Ok(())).unwrap());
                }
                A::ScheduleTick { .. } => {}
            }
        }
        out
    }

    fn one(&mut self, input: Input) -> Response {
        let mut r = self.step(input);
        assert_eq!(r.len(), 1, "{r:?}");
        r.remove(0)
    }

    fn init(&mut self, id: &str, fresh: i64) -> Result<(i64, i16), TxnError> {
        match self.one(Input::InitProducerId {
            transactional_id: id.into(),
            timeout_ms: 10_000,
            expected: None,
            fresh_producer_id: fresh,
        }) {
            Response::InitProducerId { result, .. } => result,
            other => panic!("{other:?}"),
        }
    }

    fn add(&mut self, id: &str, pid: i64, epoch: i16, p: i32) -> Result<(), TxnError> {
        match self.one(Input::AddPartitions {
            transactional_id: id.into(),
            producer_id: pid,
            producer_epoch: epoch,
            partitions: vec![("t".into(), p)],
        }) {
            Response::Done(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn replayed(&self) -> TxnCoordinator {
        let mut c = TxnCoordinator::new(TxnConfig::default());
        for r in &self.log {
            let (k, v) = r.encode().unwrap();
            c.replay(&k, v.as_deref()).unwrap();
        }
        c
    }
}

#[test]
fn commit_hands_out_the_markers_then_completes() {
    let mut h = Harness::new();
    let (pid, epoch) = h.init("tx", 7).unwrap();
    assert_eq!((pid, epoch), (7, 0));
    h.add("tx", pid, epoch, 0).unwrap();
    h.add("tx", pid, epoch, 1).unwrap();
    let job = match h.one(Input::EndTxn {
        transactional_id: "tx".into(),
        producer_id: pid,
        producer_epoch: epoch,
        commit: true,
    }) {
        Response::EndTxn {
            result: Ok(()),
            job: Some(job),
        } => job,
        other => panic!("{other:?}"),
    };
    assert!(job.commit);
    assert_eq!(job.partitions, vec![("t".into(), 0), ("t".into(), 1)]);
    assert_eq!(h.c.get("tx").unwrap().state, TxnState::PrepareCommit);
    // Nobody else gets the job while it is out.
    assert_eq!(h.one(Input::PendingWork), Response::Jobs(Vec::new()));
    assert_eq!(
        h.one(Input::MarkersWritten {
            transactional_id: "tx".into(),
            producer_id: pid,
            producer_epoch: epoch,
            ok: true
        }),
        Response::Done(Ok(()))
    );
    assert_eq!(h.c.get("tx").unwrap().state, TxnState::CompleteCommit);
    assert_eq!(h.replayed().get("tx"), h.c.get("tx"));
}

#[test]
fn a_failed_marker_job_is_handed_out_again() {
    let mut h = Harness::new();
    let (pid, epoch) = h.init("tx", 1).unwrap();
    h.add("tx", pid, epoch, 0).unwrap();
    let r = h.one(Input::EndTxn {
        transactional_id: "tx".into(),
        producer_id: pid,
        producer_epoch: epoch,
        commit: false,
    });
    assert!(matches!(r, Response::EndTxn { job: Some(_), .. }));
    h.one(Input::MarkersWritten {
        transactional_id: "tx".into(),
        producer_id: pid,
        producer_epoch: epoch,
        ok: false,
    });
    match h.one(Input::PendingWork) {
        Response::Jobs(jobs) => {
            assert_eq!(jobs.len(), 1);
            assert!(!jobs[0].commit);
        }
        other => panic!("{other:?}"),
    }
    // After a restart (replay), the prepared transaction is handed out as well.
    let mut restarted = h.replayed();
    let actions = restarted.step(h.now, 99, Input::PendingWork);
    assert!(matches!(
        &actions[..],
        [A::Respond { response: Response::Jobs(j), .. }] if j.len() == 1
    ));
}

#[test]
fn a_second_init_fences_the_first_producer_and_aborts_its_transaction() {
    let mut h = Harness::new();
    let (pid, e0) = h.init("tx", 5).unwrap();
    h.add("tx", pid, e0, 0).unwrap();
    let job = match h.one(Input::InitProducerId {
        transactional_id: "tx".into(),
        timeout_ms: 10_000,
        expected: None,
        fresh_producer_id: 6,
    }) {
        Response::InitProducerId {
            result: Err(TxnError::ConcurrentTransactions),
            job: Some(job),
        } => job,
        other => panic!("{other:?}"),
    };
    assert!(!job.commit);
    assert_eq!(job.producer_epoch, e0 + 1);
    // The zombie is fenced.
    assert_eq!(h.add("tx", pid, e0, 1), Err(TxnError::ProducerFenced));
    h.one(Input::MarkersWritten {
        transactional_id: "tx".into(),
        producer_id: job.producer_id,
        producer_epoch: job.producer_epoch,
        ok: true,
    });
    assert_eq!(h.init("tx", 6), Ok((pid, e0 + 2)));
    assert_eq!(h.add("tx", pid, e0 + 1, 1), Err(TxnError::ProducerFenced));
    assert_eq!(
        h.add("tx", 99, e0 + 2, 1),
        Err(TxnError::InvalidProducerIdMapping)
    );
}

#[test]
fn timeouts_abort_with_a_bumped_epoch_and_idle_ids_expire() {
    let mut h = Harness::new();
    let (pid, epoch) = h.init("tx", 3).unwrap();
    h.add("tx", pid, epoch, 0).unwrap();
    h.now += 10_001;
    // The first pass persists PrepareAbort; the job comes out of the next pass.
    assert_eq!(h.one(Input::PendingWork), Response::Jobs(Vec::new()));
    assert_eq!(h.c.get("tx").unwrap().state, TxnState::PrepareAbort);
    let job = match h.one(Input::PendingWork) {
        Response::Jobs(mut jobs) => jobs.remove(0),
        other => panic!("{other:?}"),
    };
    assert_eq!(job.producer_epoch, epoch + 1);
    h.one(Input::MarkersWritten {
        transactional_id: "tx".into(),
        producer_id: pid,
        producer_epoch: epoch + 1,
        ok: true,
    });
    assert_eq!(h.c.get("tx").unwrap().state, TxnState::CompleteAbort);
    h.now += 100_001;
    h.one(Input::PendingWork);
    assert!(h.c.get("tx").is_none());
    assert!(h.replayed().get("tx").is_none());
}

#[test]
fn offsets_ride_with_the_commit_only() {
    let mut h = Harness::new();
    let (pid, epoch) = h.init("tx", 3).unwrap();
    let offset = PendingOffset {
        group: "g".into(),
        topic: "t".into(),
        partition: 0,
        offset: 10,
        leader_epoch: -1,
        metadata: String::new(),
    };
    let commit_offsets = |h: &mut Harness, o: &PendingOffset| {
        h.one(Input::TxnOffsetCommit {
            transactional_id: "tx".into(),
            producer_id: pid,
            producer_epoch: epoch,
            offsets: vec![o.clone()],
        })
    };
    // Offsets need a transaction.
    assert_eq!(
        commit_offsets(&mut h, &offset),
        Response::Done(Err(TxnError::InvalidTxnState))
    );
    h.one(Input::AddOffsets {
        transactional_id: "tx".into(),
        producer_id: pid,
        producer_epoch: epoch,
        group: "g".into(),
    });
    assert_eq!(commit_offsets(&mut h, &offset), Response::Done(Ok(())));
    let newer = PendingOffset {
        offset: 20,
        ..offset.clone()
    };
    commit_offsets(&mut h, &newer);
    match h.one(Input::EndTxn {
        transactional_id: "tx".into(),
        producer_id: pid,
        producer_epoch: epoch,
        commit: true,
    }) {
        Response::EndTxn { job: Some(job), .. } => assert_eq!(job.offsets, vec![newer]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn timeouts_beyond_the_maximum_are_refused() {
    let mut h = Harness::new();
    let r = h.one(Input::InitProducerId {
        transactional_id: "tx".into(),
        timeout_ms: 60_001,
        expected: None,
        fresh_producer_id: 1,
    });
    assert!(matches!(
        r,
        Response::InitProducerId {
            result: Err(TxnError::InvalidTransactionTimeout),
            ..
        }
    ));
}

#[test]
fn a_failed_persist_changes_nothing() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    let actions = c.step(
        0,
        1,
        Input::InitProducerId {
            transactional_id: "tx".into(),
            timeout_ms: 1000,
            expected: None,
            fresh_producer_id: 1,
        },
    );
    let persist_id = match &actions[..] {
        [A::Persist { persist_id, .. }] => *persist_id,
        other => panic!("{other:?}"),
    };
    let answered = c.persisted(persist_id, Err(())).unwrap();
    assert!(matches!(
        &answered[..],
        [A::Respond {
            response: Response::InitProducerId {
                result: Err(TxnError::CoordinatorNotAvailable),
                ..
            },
            ..
        }]
    ));
    assert!(c.get("tx").is_none());
}

/// Only the Complete records may skip the sync (see `StateMachine::must_sync`): the Prepare
/// record decides the outcome, the Ongoing record tells a restart which partitions to abort.
#[test]
fn only_complete_records_skip_the_sync() {
    use crate::coordinator::StateMachine;
    let record = |state: Option<TxnState>| TxnRecord {
        transactional_id: "t".to_owned(),
        meta: state.map(|state| TxnMeta {
            producer_id: 1,
            producer_epoch: 0,
            timeout_ms: 1_000,
            state,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            offsets: Vec::new(),
            start_ms: -1,
            last_update_ms: 0,
        }),
    };
    for (state, synced) in [
        (Some(TxnState::Empty), true),
        (Some(TxnState::Ongoing), true),
        (Some(TxnState::PrepareCommit), true),
        (Some(TxnState::PrepareAbort), true),
        (Some(TxnState::CompleteCommit), false),
        (Some(TxnState::CompleteAbort), false),
        (None, true),
    ] {
        assert_eq!(
            <TxnCoordinator as StateMachine>::must_sync(&record(state)),
            synced,
            "{state:?}"
        );
    }
}
