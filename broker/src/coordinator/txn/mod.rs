//! Transaction coordinator: an I/O-free state machine (one per partition of
//! `__transaction_state`), run by the generic shell like the group coordinator.
//!
//! # What this module owns
//! Every transactional id that hashes onto its partition ([`txn_partition`], Kafka's
//! `partitionFor`): the producer id and epoch bound to it, its transaction timeout, the state
//! of its current transaction (Kafka's `TransactionState`), the partitions and groups added to
//! it, and the offsets committed in it (TxnOffsetCommit), which become visible only when the
//! transaction commits. The old (pre-KIP-890, "transaction version 1") protocol: clients add
//! partitions explicitly (AddPartitionsToTxn v0-3) and EndTxn does not bump the epoch.
//!
//! # How it is driven
//! Requests are [`Input`]s; answers are [`Response`]s through the shell's `Respond`. State is
//! persisted as one record per transactional id (key: the id; value: [`TxnRecord`], JSON with a
//! version; a tombstone when the id expires) and changes in memory only once its record is
//! durable (the id is "pending" meanwhile and answers CONCURRENT_TRANSACTIONS, like Kafka's
//! `pendingState`).
//!
//! Completing a transaction means writing COMMIT/ABORT markers to other partitions, which
//! the machine cannot do itself: an answer may carry a [`MarkerJob`]. Whoever receives it
//! must write the markers (and, for a commit, apply the transaction's offsets to the group
//! coordinators), then step [`Input::MarkersWritten`]; the machine then persists the complete
//! state. A job is handed out once at a time per id (`markers_in_flight`); when it fails, or
//! after a restart, [`Input::PendingWork`] hands it out again, so a transaction that reached
//! PrepareCommit/PrepareAbort always completes: the partitions' last stable offsets never
//! stay stuck. `PendingWork` also aborts transactions older than their timeout (bumping the
//! epoch, which fences the producer) and expires idle ids (`transactional.id.expiration.ms`).
//!
//! Failures are [`TxnError`]s, mapped to Kafka codes in `crate::errors` only.
//!
//! # Invariants
//! - Every request stepped gets exactly one answer (persist completion, or `shutdown`).
//! - At most one persist per transactional id is outstanding.
//! - A transaction's markers carry the epoch stored with its Prepare state, which is at least
//!   every epoch its data was written with.

mod records;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use records::{RecordError, TxnRecord};

/// Name of the internal transaction log topic.
pub const TXN_STATE_TOPIC: &str = crate::cluster::meta::TRANSACTION_STATE_TOPIC;

/// The partition of `__transaction_state` coordinating `transactional_id` (Kafka's
/// `Utils.abs(transactionalId.hashCode) % partitions`, the same hash as groups).
pub fn txn_partition(transactional_id: &str, partitions: u32) -> u32 {
    crate::coordinator::group::group_partition(transactional_id, partitions)
}

/// Coordinator settings; names and defaults are Kafka's broker configs.
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`
    pub transaction_timeout_ms_max: i32,
    /// `transactional.id.expiration.ms`
    pub transactional_id_expiration_ms: i64,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            transaction_timeout_ms_max: 900_000,
            transactional_id_expiration_ms: 604_800_000,
        }
    }
}

/// Kafka's `TransactionState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    /// The name Kafka's admin APIs use (DescribeTransactions, ListTransactions).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    fn is_prepare(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// An offset committed inside a transaction (TxnOffsetCommit), applied on commit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingOffset {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

/// What a transactional id is bound to, and its current transaction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TxnMeta {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    pub groups: BTreeSet<String>,
    pub offsets: Vec<PendingOffset>,
    /// When the current transaction started (first partition added), or -1.
    pub start_ms: i64,
    pub last_update_ms: i64,
}

/// The markers a completing transaction needs, and (commit) its offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerJob {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub partitions: Vec<(String, i32)>,
    pub offsets: Vec<PendingOffset>,
}

/// Why a request failed; `crate::errors` maps each to its Kafka code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    #[error("not the coordinator (or it closed)")]
    NotCoordinator,
    #[error("the coordinator could not persist the state")]
    CoordinatorNotAvailable,
    #[error("another operation on this transactional id is in progress")]
    ConcurrentTransactions,
    #[error("the producer was fenced by a newer epoch")]
    ProducerFenced,
    #[error("the producer id does not match the transactional id")]
    InvalidProducerIdMapping,
    #[error("the transaction is not in a state allowing this")]
    InvalidTxnState,
    #[error("transaction timeout out of bounds")]
    InvalidTransactionTimeout,
    #[error("invalid producer epoch")]
    InvalidProducerEpoch,
}

/// A request for the coordinator.
#[derive(Debug, Clone)]
pub enum Input {
    /// `fresh_producer_id`: an unused producer id (allocated by the caller) for a new id or an
    /// exhausted epoch. `expected`: KIP-360's current (producer id, epoch), if sent.
    InitProducerId {
        transactional_id: String,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        fresh_producer_id: i64,
    },
    AddPartitions {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<(String, i32)>,
    },
    /// Whether a transactional produce to `partition` is allowed (it was added).
    Verify {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partition: (String, i32),
    },
    AddOffsets {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        group: String,
    },
    TxnOffsetCommit {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        offsets: Vec<PendingOffset>,
    },
    EndTxn {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    },
    /// The job of this transaction ran: `ok` when every marker (and offset) is durable.
    MarkersWritten {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        ok: bool,
    },
    /// Abort timed-out transactions, expire idle ids, and hand out the marker jobs nobody runs.
    PendingWork,
    /// Abort the current transaction of this id (operator action), fencing its producer.
    Abort { transactional_id: String },
    /// Describe these ids (`None` for an id this coordinator does not know).
    Describe { transactional_ids: Vec<String> },
    /// Every id with its state.
    List,
    /// The (group, topic, partition)s of these groups with offsets committed in a transaction
    /// that may still commit (OffsetFetch `require_stable`, Kafka's
    /// `hasPendingTransactionalOffsets`). Answered [`Response::PendingOffsets`].
    PendingOffsets { groups: Vec<String> },
}

/// A transactional id as the admin APIs show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnDescription {
    pub transactional_id: String,
    pub meta: TxnMeta,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    InitProducerId {
        result: Result<(i64, i16), TxnError>,
        job: Option<MarkerJob>,
    },
    /// AddPartitions, AddOffsets, TxnOffsetCommit, Verify, MarkersWritten.
    Done(Result<(), TxnError>),
    EndTxn {
        result: Result<(), TxnError>,
        job: Option<MarkerJob>,
    },
    Jobs(Vec<MarkerJob>),
    Abort {
        result: Result<(), TxnError>,
        job: Option<MarkerJob>,
    },
    Described(Vec<Option<TxnDescription>>),
    /// To [`Input::PendingOffsets`]: (group, topic, partition), without duplicates.
    PendingOffsets(Vec<(String, String, i32)>),
}

/// Actions, as the shell knows them.
pub type Action = super::Action<Response, TxnRecord>;

/// What to answer once a persist is durable.
#[derive(Debug)]
enum Then {
    Respond(u64, Response),
    /// A state change nobody waits for (timeout abort, expiration).
    Nothing,
}

#[derive(Debug)]
struct Pending {
    transactional_id: String,
    /// `None`: the id is deleted (expired).
    meta: Option<TxnMeta>,
    then: Then,
    /// On success, hand this id's job to the answer (the job needs the installed state).
    attach_job: bool,
}

/// The coordinator of one `__transaction_state` partition.
#[derive(Debug)]
pub struct TxnCoordinator {
    cfg: TxnConfig,
    txns: BTreeMap<String, TxnMeta>,
    /// Ids with a persist outstanding.
    pending_ids: BTreeSet<String>,
    /// Ids whose marker job is handed out and not reported back.
    markers_in_flight: BTreeSet<String>,
    persists: HashMap<u64, Pending>,
    next_persist_id: u64,
    actions: Vec<Action>,
}

impl TxnCoordinator {
    pub fn new(cfg: TxnConfig) -> Self {
        TxnCoordinator {
            cfg,
            txns: BTreeMap::new(),
            pending_ids: BTreeSet::new(),
            markers_in_flight: BTreeSet::new(),
            persists: HashMap::new(),
            next_persist_id: 0,
            actions: Vec::new(),
        }
    }

    /// The state of one id (tests, admin).
    pub fn get(&self, transactional_id: &str) -> Option<&TxnMeta> {
        self.txns.get(transactional_id)
    }

    /// Replays one record of the partition.
    pub fn replay(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), RecordError> {
        let id = records::decode_key(key)?;
        match value {
            None => {
                self.txns.remove(&id);
            }
            Some(v) => {
                let record = records::decode_value(v)?;
                self.txns.insert(id, record.meta);
            }
        }
        Ok(())
    }

    fn respond(&mut self, request_id: u64, response: Response) {
        self.actions.push(Action::Respond {
            request_id,
            response,
        });
    }

    fn take(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    fn persist(&mut self, id: &str, meta: Option<TxnMeta>, then: Then, attach_job: bool) {
        let persist_id = self.next_persist_id;
        self.next_persist_id += 1;
        assert!(
            self.pending_ids.insert(id.to_owned()),
            "one persist per transactional id"
        );
        let record = TxnRecord {
            transactional_id: id.to_owned(),
            meta: meta.clone(),
        };
        self.persists.insert(
            persist_id,
            Pending {
                transactional_id: id.to_owned(),
                meta,
                then,
                attach_job,
            },
        );
        self.actions.push(Action::Persist {
            persist_id,
            records: vec![record],
        });
    }

    /// The job completing `id`'s prepared transaction, marked as handed out.
    fn job_for(&mut self, id: &str) -> Option<MarkerJob> {
        let meta = self.txns.get(id)?;
        if !meta.state.is_prepare() {
            return None;
        }
        let commit = meta.state == TxnState::PrepareCommit;
        let job = MarkerJob {
            transactional_id: id.to_owned(),
            producer_id: meta.producer_id,
            producer_epoch: meta.producer_epoch,
            commit,
            partitions: meta.partitions.iter().cloned().collect(),
            offsets: if commit {
                meta.offsets.clone()
            } else {
                Vec::new()
            },
        };
        self.markers_in_flight.insert(id.to_owned());
        Some(job)
    }

    /// Checks the producer of a request against the id's binding (Kafka's old-protocol rule:
    /// another producer id, or any other epoch, is a fenced producer).
    fn check_producer(meta: &TxnMeta, producer_id: i64, epoch: i16) -> Result<(), TxnError> {
        if meta.producer_id != producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if meta.producer_epoch != epoch {
            return Err(TxnError::ProducerFenced);
        }
        Ok(())
    }

    /// Looks up an id for a request from its producer; `Err` when it must be refused.
    fn producer_meta(&self, id: &str, producer_id: i64, epoch: i16) -> Result<TxnMeta, TxnError> {
        let meta = self
            .txns
            .get(id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        Self::check_producer(meta, producer_id, epoch)?;
        if self.pending_ids.contains(id) {
            return Err(TxnError::ConcurrentTransactions);
        }
        Ok(meta.clone())
    }

    /// The same meta with a bumped epoch (or a fresh id once the epoch is exhausted).
    fn bumped(meta: &TxnMeta, fresh_producer_id: Option<i64>) -> TxnMeta {
        let mut next = meta.clone();
        match (meta.producer_epoch.checked_add(1), fresh_producer_id) {
            (Some(e), _) if e < i16::MAX => next.producer_epoch = e,
            (_, Some(pid)) => {
                next.producer_id = pid;
                next.producer_epoch = 0;
            }
            // Timeout aborts cannot take a new id: keep the epoch at its maximum.
            (_, None) => next.producer_epoch = i16::MAX - 1,
        }
        next
    }

    pub fn finish_load(&mut self, _now_ms: i64) -> Vec<Action> {
        Vec::new()
    }

    pub fn tick(&mut self, _now_ms: i64) -> Vec<Action> {
        Vec::new()
    }

    pub fn step(&mut self, now_ms: i64, request_id: u64, input: Input) -> Vec<Action> {
        match input {
            Input::InitProducerId {
                transactional_id,
                timeout_ms,
                expected,
                fresh_producer_id,
            } => self.init_producer_id(
                now_ms,
                request_id,
                &transactional_id,
                timeout_ms,
                expected,
                fresh_producer_id,
            ),
            Input::AddPartitions {
                transactional_id,
                producer_id,
                producer_epoch,
                partitions,
            } => self.add_to_txn(
                now_ms,
                request_id,
                &transactional_id,
                producer_id,
                producer_epoch,
                partitions,
                Vec::new(),
                Vec::new(),
            ),
            Input::AddOffsets {
                transactional_id,
                producer_id,
                producer_epoch,
                group,
            } => self.add_to_txn(
                now_ms,
                request_id,
                &transactional_id,
                producer_id,
                producer_epoch,
                Vec::new(),
                vec![group],
                Vec::new(),
            ),
            Input::TxnOffsetCommit {
                transactional_id,
                producer_id,
                producer_epoch,
                offsets,
            } => self.add_to_txn(
                now_ms,
                request_id,
                &transactional_id,
                producer_id,
                producer_epoch,
                Vec::new(),
                Vec::new(),
                offsets,
            ),
            Input::Verify {
                transactional_id,
                producer_id,
                producer_epoch,
                partition,
            } => {
                let result = match self.txns.get(&transactional_id) {
                    None => Err(TxnError::InvalidProducerIdMapping),
                    Some(meta) => {
                        Self::check_producer(meta, producer_id, producer_epoch).and_then(|()| {
                            if meta.state == TxnState::Ongoing
                                && meta.partitions.contains(&partition)
                            {
                                Ok(())
                            } else {
                                Err(TxnError::InvalidTxnState)
                            }
                        })
                    }
                };
                self.respond(request_id, Response::Done(result));
            }
            Input::EndTxn {
                transactional_id,
                producer_id,
                producer_epoch,
                commit,
            } => self.end_txn(
                now_ms,
                request_id,
                &transactional_id,
                producer_id,
                producer_epoch,
                commit,
            ),
            Input::MarkersWritten {
                transactional_id,
                producer_id,
                producer_epoch,
                ok,
            } => self.markers_written(
                now_ms,
                request_id,
                &transactional_id,
                producer_id,
                producer_epoch,
                ok,
            ),
            Input::PendingWork => self.pending_work(now_ms, request_id),
            Input::Abort { transactional_id } => {
                let result = match self.txns.get(&transactional_id) {
                    None => Err(TxnError::InvalidProducerIdMapping),
                    Some(_) if self.pending_ids.contains(&transactional_id) => {
                        Err(TxnError::ConcurrentTransactions)
                    }
                    Some(meta) if meta.state == TxnState::Ongoing => {
                        let mut next = Self::bumped(meta, None);
                        next.state = TxnState::PrepareAbort;
                        next.offsets.clear();
                        next.last_update_ms = now_ms;
                        self.persist(
                            &transactional_id,
                            Some(next),
                            Then::Respond(
                                request_id,
                                Response::Abort {
                                    result: Ok(()),
                                    job: None,
                                },
                            ),
                            true,
                        );
                        return self.take();
                    }
                    Some(meta) if meta.state.is_prepare() => {
                        let job = (!self.markers_in_flight.contains(&transactional_id))
                            .then(|| self.job_for(&transactional_id))
                            .flatten();
                        self.respond(
                            request_id,
                            Response::Abort {
                                result: Ok(()),
                                job,
                            },
                        );
                        return self.take();
                    }
                    Some(_) => Err(TxnError::InvalidTxnState),
                };
                self.respond(request_id, Response::Abort { result, job: None });
            }
            Input::Describe { transactional_ids } => {
                let described = transactional_ids
                    .iter()
                    .map(|id| {
                        self.txns.get(id).map(|meta| TxnDescription {
                            transactional_id: id.clone(),
                            meta: meta.clone(),
                        })
                    })
                    .collect();
                self.respond(request_id, Response::Described(described));
            }
            Input::List => {
                let described = self
                    .txns
                    .iter()
                    .map(|(id, meta)| {
                        Some(TxnDescription {
                            transactional_id: id.clone(),
                            meta: meta.clone(),
                        })
                    })
                    .collect();
                self.respond(request_id, Response::Described(described));
            }
            Input::PendingOffsets { groups } => {
                let pending = self.pending_offsets(&groups);
                self.respond(request_id, Response::PendingOffsets(pending));
            }
        }
        self.take()
    }

    /// Offsets of `groups` in transactions not yet complete. An aborting transaction has
    /// dropped its offsets already (they can no longer become visible), so in practice these
    /// are Ongoing and PrepareCommit transactions.
    fn pending_offsets(&self, groups: &[String]) -> Vec<(String, String, i32)> {
        let mut out = BTreeSet::new();
        for meta in self.txns.values() {
            if !matches!(
                meta.state,
                TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort
            ) {
                continue;
            }
            for o in &meta.offsets {
                if groups.contains(&o.group) {
                    out.insert((o.group.clone(), o.topic.clone(), o.partition));
                }
            }
        }
        out.into_iter().collect()
    }

    fn init_producer_id(
        &mut self,
        now_ms: i64,
        request_id: u64,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        fresh_producer_id: i64,
    ) {
        let fail = |this: &mut Self, e: TxnError| {
            this.respond(
                request_id,
                Response::InitProducerId {
                    result: Err(e),
                    job: None,
                },
            )
        };
        if timeout_ms <= 0 || timeout_ms > self.cfg.transaction_timeout_ms_max {
            return fail(self, TxnError::InvalidTransactionTimeout);
        }
        if self.pending_ids.contains(id) {
            return fail(self, TxnError::ConcurrentTransactions);
        }
        let Some(meta) = self.txns.get(id).cloned() else {
            let meta = TxnMeta {
                producer_id: fresh_producer_id,
                producer_epoch: 0,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                groups: BTreeSet::new(),
                offsets: Vec::new(),
                start_ms: -1,
                last_update_ms: now_ms,
            };
            let response = Response::InitProducerId {
                result: Ok((meta.producer_id, meta.producer_epoch)),
                job: None,
            };
            self.persist(id, Some(meta), Then::Respond(request_id, response), false);
            return;
        };
        if let Some((pid, epoch)) = expected {
            // KIP-360: a producer re-initialising must still own the id (or be retrying).
            let owns = pid == meta.producer_id
                && (epoch == meta.producer_epoch || epoch == meta.producer_epoch - 1);
            if !owns {
                return fail(self, TxnError::ProducerFenced);
            }
        }
        match meta.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                let job = (!self.markers_in_flight.contains(id))
                    .then(|| self.job_for(id))
                    .flatten();
                self.respond(
                    request_id,
                    Response::InitProducerId {
                        result: Err(TxnError::ConcurrentTransactions),
                        job,
                    },
                );
            }
            TxnState::Ongoing => {
                // Fence the current producer and abort its transaction first; the client
                // retries once the abort completes.
                let mut next = Self::bumped(&meta, None);
                next.state = TxnState::PrepareAbort;
                next.offsets.clear();
                next.last_update_ms = now_ms;
                let response = Response::InitProducerId {
                    result: Err(TxnError::ConcurrentTransactions),
                    job: None,
                };
                self.persist(id, Some(next), Then::Respond(request_id, response), true);
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let mut next = Self::bumped(&meta, Some(fresh_producer_id));
                next.state = TxnState::Empty;
                next.timeout_ms = timeout_ms;
                next.partitions.clear();
                next.groups.clear();
                next.offsets.clear();
                next.start_ms = -1;
                next.last_update_ms = now_ms;
                let response = Response::InitProducerId {
                    result: Ok((next.producer_id, next.producer_epoch)),
                    job: None,
                };
                self.persist(id, Some(next), Then::Respond(request_id, response), false);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn add_to_txn(
        &mut self,
        now_ms: i64,
        request_id: u64,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<(String, i32)>,
        groups: Vec<String>,
        offsets: Vec<PendingOffset>,
    ) {
        let meta = match self.producer_meta(id, producer_id, epoch) {
            Ok(meta) => meta,
            Err(e) => return self.respond(request_id, Response::Done(Err(e))),
        };
        let offset_commit = !offsets.is_empty();
        match meta.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                return self.respond(
                    request_id,
                    Response::Done(Err(TxnError::ConcurrentTransactions)),
                )
            }
            // Offsets belong to a transaction that has begun (AddOffsetsToTxn came first).
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                if offset_commit =>
            {
                return self.respond(request_id, Response::Done(Err(TxnError::InvalidTxnState)))
            }
            _ => {}
        }
        let mut next = meta.clone();
        if next.state != TxnState::Ongoing {
            next.state = TxnState::Ongoing;
            next.partitions.clear();
            next.groups.clear();
            next.offsets.clear();
            next.start_ms = now_ms;
        }
        next.partitions.extend(partitions);
        next.groups.extend(groups);
        for o in offsets {
            match next
                .offsets
                .iter_mut()
                .find(|p| p.group == o.group && p.topic == o.topic && p.partition == o.partition)
            {
                Some(existing) => *existing = o,
                None => next.offsets.push(o),
            }
        }
        if next == meta {
            // Nothing new (a retry): no write needed.
            return self.respond(request_id, Response::Done(Ok(())));
        }
        next.last_update_ms = now_ms;
        self.persist(
            id,
            Some(next),
            Then::Respond(request_id, Response::Done(Ok(()))),
            false,
        );
    }

    fn end_txn(
        &mut self,
        now_ms: i64,
        request_id: u64,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) {
        let fail = |this: &mut Self, e: TxnError| {
            this.respond(
                request_id,
                Response::EndTxn {
                    result: Err(e),
                    job: None,
                },
            )
        };
        let meta = match self.producer_meta(id, producer_id, epoch) {
            Ok(meta) => meta,
            Err(e) => return fail(self, e),
        };
        match (meta.state, commit) {
            (TxnState::Ongoing, _) => {
                let mut next = meta;
                next.state = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                if !commit {
                    next.offsets.clear();
                }
                next.last_update_ms = now_ms;
                let response = Response::EndTxn {
                    result: Ok(()),
                    job: None,
                };
                self.persist(id, Some(next), Then::Respond(request_id, response), true);
            }
            // A retry of an EndTxn that already completed.
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => self.respond(
                request_id,
                Response::EndTxn {
                    result: Ok(()),
                    job: None,
                },
            ),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                fail(self, TxnError::ConcurrentTransactions)
            }
            _ => fail(self, TxnError::InvalidTxnState),
        }
    }

    fn markers_written(
        &mut self,
        now_ms: i64,
        request_id: u64,
        id: &str,
        producer_id: i64,
        epoch: i16,
        ok: bool,
    ) {
        self.markers_in_flight.remove(id);
        let current = self.txns.get(id).filter(|m| {
            m.state.is_prepare() && m.producer_id == producer_id && m.producer_epoch == epoch
        });
        let Some(meta) = current.cloned() else {
            // Stale report (already completed by another job): nothing to do.
            return self.respond(request_id, Response::Done(Ok(())));
        };
        if !ok {
            // PendingWork hands the job out again.
            return self.respond(request_id, Response::Done(Err(TxnError::NotCoordinator)));
        }
        if self.pending_ids.contains(id) {
            return self.respond(
                request_id,
                Response::Done(Err(TxnError::ConcurrentTransactions)),
            );
        }
        let mut next = meta;
        next.state = if next.state == TxnState::PrepareCommit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        next.partitions.clear();
        next.groups.clear();
        next.offsets.clear();
        next.start_ms = -1;
        next.last_update_ms = now_ms;
        self.persist(
            id,
            Some(next),
            Then::Respond(request_id, Response::Done(Ok(()))),
            false,
        );
    }

    fn pending_work(&mut self, now_ms: i64, request_id: u64) {
        let mut timed_out = Vec::new();
        let mut expired = Vec::new();
        let mut unclaimed = Vec::new();
        for (id, meta) in &self.txns {
            if self.pending_ids.contains(id) {
                continue;
            }
            match meta.state {
                TxnState::Ongoing
                    if meta.start_ms.saturating_add(i64::from(meta.timeout_ms)) < now_ms =>
                {
                    timed_out.push(id.clone())
                }
                TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                    if meta
                        .last_update_ms
                        .saturating_add(self.cfg.transactional_id_expiration_ms)
                        < now_ms =>
                {
                    expired.push(id.clone())
                }
                s if s.is_prepare() && !self.markers_in_flight.contains(id) => {
                    unclaimed.push(id.clone())
                }
                _ => {}
            }
        }
        for id in timed_out {
            let Some(meta) = self.txns.get(&id) else {
                continue;
            };
            // Kafka bumps the epoch when it aborts a timed-out transaction: the producer
            // is fenced and must re-initialise.
            let mut next = Self::bumped(meta, None);
            next.state = TxnState::PrepareAbort;
            next.offsets.clear();
            next.last_update_ms = now_ms;
            self.persist(&id, Some(next), Then::Nothing, false);
        }
        for id in expired {
            self.persist(&id, None, Then::Nothing, false);
        }
        let jobs = unclaimed.iter().filter_map(|id| self.job_for(id)).collect();
        self.respond(request_id, Response::Jobs(jobs));
    }

    /// The append of `persist_id` completed; install the state and answer.
    pub fn persisted(
        &mut self,
        persist_id: u64,
        result: Result<(), ()>,
    ) -> Result<Vec<Action>, RecordError> {
        let Some(pending) = self.persists.remove(&persist_id) else {
            return Err(RecordError::UnknownPersist(persist_id));
        };
        self.pending_ids.remove(&pending.transactional_id);
        let id = pending.transactional_id;
        match result {
            Ok(()) => {
                match pending.meta {
                    Some(meta) => {
                        self.txns.insert(id.clone(), meta);
                    }
                    None => {
                        self.txns.remove(&id);
                    }
                }
                if let Then::Respond(request_id, mut response) = pending.then {
                    if pending.attach_job {
                        let job = self.job_for(&id);
                        match &mut response {
                            Response::InitProducerId { job: j, .. }
                            | Response::EndTxn { job: j, .. }
                            | Response::Abort { job: j, .. } => *j = job,
                            _ => {}
                        }
                    }
                    self.respond(request_id, response);
                }
            }
            Err(()) => {
                if let Then::Respond(request_id, response) = pending.then {
                    let e = TxnError::CoordinatorNotAvailable;
                    let failed = match response {
                        Response::InitProducerId { .. } => Response::InitProducerId {
                            result: Err(e),
                            job: None,
                        },
                        Response::EndTxn { .. } => Response::EndTxn {
                            result: Err(e),
                            job: None,
                        },
                        Response::Abort { .. } => Response::Abort {
                            result: Err(e),
                            job: None,
                        },
                        _ => Response::Done(Err(e)),
                    };
                    self.respond(request_id, failed);
                }
            }
        }
        Ok(self.take())
    }

    /// Resigning: answer everything waiting for a persist.
    pub fn shutdown(&mut self) -> Vec<Action> {
        let pending: Vec<Pending> = self.persists.drain().map(|(_, p)| p).collect();
        for p in pending {
            if let Then::Respond(request_id, response) = p.then {
                let e = TxnError::NotCoordinator;
                let failed = match response {
                    Response::InitProducerId { .. } => Response::InitProducerId {
                        result: Err(e),
                        job: None,
                    },
                    Response::EndTxn { .. } => Response::EndTxn {
                        result: Err(e),
                        job: None,
                    },
                    Response::Abort { .. } => Response::Abort {
                        result: Err(e),
                        job: None,
                    },
                    _ => Response::Done(Err(e)),
                };
                self.respond(request_id, failed);
            }
        }
        self.pending_ids.clear();
        self.markers_in_flight.clear();
        self.txns.clear();
        self.take()
    }
}
