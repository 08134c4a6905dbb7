//! One shard: the partitions this core owns, its copy of the metadata image, and the
//! cross-shard messages it answers.
//!
//! Owns: the partition table of this core (`Partition`: a `storage::PartitionLog` plus its
//! idempotent producer state and its transactions: open ones, last stable offset, aborted
//! ones, see `log::txn_index` and [`txn_markers`]), the shard's current `MetaSnapshot`, the
//! group coordinators of the `__consumer_offsets` partitions and the transaction coordinators
//! of the `__transaction_state` partitions it owns (each lent a `coordinator_log::ShardLog`),
//! the log cleaner of its compacted partitions ([`cleaner`]), its partitions' producer-state
//! snapshot files ([`producer_snapshots`]), and, on shard 0 only, the
//! [`controller_shell::ControllerShell`].
//!
//! The produce path ends here: `kafka::produce` hands each partition to its owner (directly,
//! or as [`ShardReq::Produce`]); [`Shard::produce_local`] validates (`log::records`), checks
//! sequences (`log::producer_state`), recompresses if the topic asks (`log::compression`),
//! calls `storage::PartitionLog::append` and waits for the durability the `acks` ask for.
//!
//! Invariants: a partition is appended to only here, on its owner; its offsets are assigned
//! synchronously after the idempotence check. A newer metadata image is applied in two phases
//! (open what it adds everywhere, then adopt it), never an older one. Long-poll waits for other
//! shards go through [`Shard::wait_for_data`] (router waits: no request slot, cancelled when
//! the fetch answers).
//!
//! Lives on exactly one glommio executor: everything here is `Rc`/`RefCell` and cannot leave the
//! thread. Other shards reach it only through [`ShardReq`] messages on the router. No `RefCell`
//! borrow is held across an `.await` (clippy `await_holding_refcell_ref` is an error).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError as E;
use storage::batch::ValidatedBatches;
use storage::{Durability, PartitionLog};
use tracing::{info, warn};

use crate::cluster::controller::{ControllerReq, ControllerResp, MetaAck, NewTopic};
use crate::cluster::meta::{partition_dir, MetaSnapshot, TopicMeta};
use crate::config::BrokerConfig;
use crate::errors::PartitionError;
use crate::log::compression;
use crate::log::producer_state::{ProducerBatch, ProducerStateTable, SeqCheck};
use crate::log::records::{self, ValidationOptions};
use crate::log::txn_index::{PartitionTxns, TxnAppendError, TxnCheck};

pub mod cleaner;
pub mod controller_shell;
pub mod producer_snapshots;
pub mod replica;

use self::controller_shell::ControllerShell;

mod coordinator_log;
mod sample;
mod txn_index_files;
pub mod txn_markers;

/// How often each shard applies retention to its partitions (Kafka's
/// `log.retention.check.interval.ms` default).
pub const RETENTION_CHECK_INTERVAL_MS: u64 = 300_000;

/// A request from one shard to another. Carries only `Send` data (`Bytes`, `Arc`).
#[derive(Debug)]
pub enum ShardReq {
    /// Partitions of one produce request owned by the target shard; appended concurrently.
    Produce(Vec<ProducePart>),
    /// Partitions of one fetch owned by the target shard, read in order within `max_bytes`.
    Read {
        parts: Vec<ReadPart>,
        max_bytes: usize,
    },
    /// Resolve when any of the partitions has data beyond its offset, or after `timeout_ms`.
    /// A long poll: send it with [`Shard::wait_for_data`] (a router wait: no request slot on
    /// the target, cancelled when the caller drops it), never with [`Shard::call`].
    WaitForData {
        parts: Vec<WaitPart>,
        timeout_ms: u64,
    },
    ListOffset {
        topic: String,
        partition: i32,
        timestamp: i64,
        /// read_committed: LATEST is the last stable offset.
        committed: bool,
        /// KIP-320: the leader epoch the client believes in (-1: unchecked).
        current_leader_epoch: i32,
    },
    /// OffsetForLeaderEpoch for one partition: the (epoch, end offset) of `leader_epoch`.
    EpochEnd {
        topic: String,
        partition: i32,
        current_leader_epoch: i32,
        leader_epoch: i32,
    },
    /// DescribeLogDirs: the bytes on disk of these partitions (`None`: not open here).
    LogSizes(Vec<(String, i32)>),
    /// DeleteRecords for one partition: move its log start offset to `offset` (-1: the high
    /// watermark).
    DeleteRecords {
        topic: String,
        partition: i32,
        offset: i64,
    },
    /// First phase of publishing metadata: open the partitions the snapshot adds here.
    /// Answered with [`ShardResp::MetaAck`].
    OpenPartitions(Arc<MetaSnapshot>),
    /// Second phase, once every shard opened its new partitions: adopt the snapshot (so
    /// requests route to the new partitions only when they are open everywhere), then close
    /// or delete what it dropped. Answered with [`ShardResp::MetaAck`] once done.
    ApplyMeta(Arc<MetaSnapshot>),
    /// For the controller shell; only shard 0 has one.
    Controller(ControllerReq),
    /// For the consumer-group coordinators of the target shard (see `coordinator`).
    Group(crate::coordinator::GroupReq),
    /// For the transaction coordinators of the target shard (see `coordinator::txns`).
    Txn(crate::coordinator::TxnReq),
    /// COMMIT/ABORT markers for partitions owned by the target shard (`txn_markers`);
    /// answered with [`ShardResp::Produce`], one result per marker.
    WriteMarkers(Vec<txn_markers::MarkerPart>),
    /// DescribeProducers for one partition owned by the target shard.
    DescribeProducers { topic: String, partition: i32 },
    /// Serve this client connection here from now on: its requests use this shard's
    /// partitions (see `net::affinity`).
    AdoptConnection(net::Handoff),
}

#[derive(Debug)]
pub enum ShardResp {
    Produce(Vec<ProduceResult>),
    Read(Vec<ReadReply>),
    Done,
    /// To `OpenPartitions` / `ApplyMeta`: the version this shard holds now and what it could
    /// not open.
    MetaAck(MetaAck),
    /// (offset, timestamp, leader epoch of the offset or -1).
    ListOffset(Result<(i64, i64, i32), PartitionError>),
    EpochEnd(Result<(i32, i64), PartitionError>),
    LogSizes(Vec<Option<u64>>),
    /// To `DeleteRecords`: the new low watermark (log start offset).
    DeleteRecords(Result<i64, PartitionError>),
    Controller(ControllerResp),
    Group(crate::coordinator::GroupResp),
    Txn(crate::coordinator::TxnResp),
    Producers(Result<Vec<txn_markers::ProducerInfo>, PartitionError>),
    /// To `AdoptConnection`: the connection back when the shard could not take it.
    Adopted(Result<(), net::Handoff>),
    /// The call itself failed (target shard unreachable).
    Failed(PartitionError),
}

/// One partition of a long poll: wake when it has data beyond `offset` (for a follower:
/// written; for a consumer: below the high watermark).
#[derive(Debug, Clone)]
pub struct WaitPart {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub replica: bool,
}

#[derive(Debug, Clone)]
pub struct ProducePart {
    pub topic: String,
    pub partition: i32,
    pub records: Option<Bytes>,
    pub acks: i16,
    /// The request's `timeout_ms`: how long acks=all may wait for the ISR.
    pub timeout_ms: i32,
    /// The request's transactional id (transactional batches need one).
    pub transactional_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ProduceResult {
    pub error: Option<PartitionError>,
    pub base_offset: i64,
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
}

impl ProduceResult {
    fn failed(error: PartitionError) -> ProduceResult {
        ProduceResult {
            error: Some(error),
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: -1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReadPart {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub max_bytes: usize,
    pub min_one: bool,
    /// `read_committed`: stop at the last stable offset.
    pub committed: bool,
    /// A follower's fetch: its progress counts for the high watermark and ISR, and it
    /// reads up to the leader's log end rather than the high watermark.
    pub replica: Option<replica::ReplicaFetch>,
    /// A consumer's `current_leader_epoch` (KIP-320; -1: not checked).
    pub current_leader_epoch: i32,
}

#[derive(Debug, Clone)]
pub struct ReadReply {
    pub error: Option<PartitionError>,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    /// `read_committed`: the aborted transactions overlapping the range read.
    pub aborted: Vec<crate::log::txn_index::AbortedTxn>,
    pub log_start_offset: i64,
    /// Whole batches, in order, possibly in several chunks.
    pub records: Vec<Bytes>,
    /// To a follower whose log went another way: the leader's (epoch, end offset) of the
    /// epoch it last fetched, so it truncates there (nothing else is read).
    pub diverging_epoch: Option<(i32, i64)>,
}

impl ReadReply {
    pub fn records_len(&self) -> usize {
        self.records.iter().map(Bytes::len).sum()
    }

    pub fn failed(error: PartitionError) -> ReadReply {
        ReadReply {
            error: Some(error),
            high_watermark: -1,
            last_stable_offset: -1,
            aborted: Vec::new(),
            log_start_offset: -1,
            records: Vec::new(),
            diverging_epoch: None,
        }
    }
}

pub type Router = net::route::ShardRouter<ShardReq, ShardResp>;

/// How a [`Shard::wait_for_data`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// Data arrived, the timeout passed, or the target shard failed (the next read says so).
    Ended,
    /// The target shard parks as many waits as it may: this one was never parked.
    Refused,
}

/// A partition replica owned by this shard.
pub struct Partition {
    pub topic: Arc<TopicMeta>,
    pub index: i32,
    pub log: PartitionLog,
    /// Shared with the `Partition` that replaces this one on a metadata change (a fetcher or
    /// produce still holding this one must update the same state, not a copy).
    pub producers: Rc<RefCell<ProducerStateTable>>,
    /// Open and aborted transactions, the last stable offset (`log::txn_index`).
    pub txns: Rc<RefCell<PartitionTxns>>,
    /// Active segment base when the last producer-state snapshot was taken: a roll past it
    /// takes the next one (see [`producer_snapshots`]).
    pub snapshot_segment_base: Cell<i64>,
    /// Records and bytes in and out, for `/metrics` (see [`sample`]); shared with the
    /// `Partition` that replaces this one on a config change, so the counts go on.
    pub traffic: Rc<crate::ops::series::PartitionTraffic>,
    /// Its role (leader or follower), high watermark and replication state (see
    /// [`replica`]); shared with the `Partition` that replaces this one.
    pub replica: Rc<replica::Replica>,
    /// The log's rollback count when the producer state last caught up with it (see
    /// `storage::PartitionLog::rollbacks`).
    pub rollbacks_seen: Cell<u64>,
}

pub struct Shard {
    pub id: usize,
    pub config: Arc<BrokerConfig>,
    pub router: Router,
    meta: RefCell<Arc<MetaSnapshot>>,
    partitions: RefCell<HashMap<(String, i32), Rc<Partition>>>,
    /// Serialises metadata application (opening and deleting partitions awaits I/O).
    apply_lock: glommio::sync::Semaphore,
    /// Newest snapshot version whose partitions were opened ([`ShardReq::OpenPartitions`]).
    /// An older snapshot arriving later must not be applied: it would delete them.
    prepared_version: Cell<u64>,
    /// The snapshot version whose partitions [`ShardReq::OpenPartitions`] last tried to open:
    /// its [`ShardReq::ApplyMeta`] does not try again the ones that failed (one report each).
    opened_version: Cell<Option<u64>>,
    /// The controller shell; only on shard 0.
    pub controller: Option<ControllerShell>,
    /// One group coordinator per `__consumer_offsets` partition this shard owns.
    pub coordinators: crate::coordinator::GroupCoordinators,
    /// One transaction coordinator per `__transaction_state` partition this shard owns.
    pub txn_coordinators: crate::coordinator::TxnCoordinators,
    produce_responses: Cell<u64>,
    pub ready_shards: Arc<AtomicUsize>,
    /// Every shard's counters (this one updates only its own).
    metrics: Arc<crate::ops::metrics::Metrics>,
    /// Takes connections moved here from other shards; set once the listener is up.
    conn_home: RefCell<Option<ConnAdopter>>,
    /// The log cleaner's counters and per-partition state (see [`cleaner`]).
    pub cleaner: RefCell<cleaner::CleanerState>,
    /// Connections to the other brokers (replica fetchers).
    pub peers: crate::cluster::peer_client::PeerClients,
    /// The leader nodes this shard runs a replica fetcher for.
    fetchers: RefCell<HashSet<i32>>,
    /// High watermarks read from the checkpoints at start-up, taken by partitions as they
    /// open.
    hw_checkpoint: RefCell<HashMap<(String, i32), i64>>,
}

/// Serves a connection moved to this shard, or gives it back (see [`net::ConnHome::adopt`]).
impl Partition {
    /// After a failed write rolled the log back (see `storage::PartitionLog::rollbacks`),
    /// the producer state forgets the dropped appends. Runs before every append, in the same
    /// synchronous step that assigns offsets, so no offset is reused before it.
    pub fn forget_rolled_back_appends(&self) {
        let rollbacks = self.log.rollbacks();
        if rollbacks != self.rollbacks_seen.get() {
            self.rollbacks_seen.set(rollbacks);
            self.producers
                .borrow_mut()
                .forget_from(self.log.log_end_offset());
        }
    }
}

pub type ConnAdopter = Box<dyn Fn(net::Handoff) -> Result<(), net::Handoff>>;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Shard {
    pub fn new(
        id: usize,
        config: Arc<BrokerConfig>,
        router: Router,
        meta: Arc<MetaSnapshot>,
        controller: Option<ControllerShell>,
        ready_shards: Arc<AtomicUsize>,
        metrics: Arc<crate::ops::metrics::Metrics>,
    ) -> Shard {
        let hw_checkpoint = replica::load_high_watermarks(&config.data_dir);
        let peers = crate::cluster::peer_client::PeerClients::new(meta.node_id, id);
        Shard {
            id,
            config,
            router,
            meta: RefCell::new(meta),
            partitions: RefCell::new(HashMap::new()),
            apply_lock: glommio::sync::Semaphore::new(1),
            prepared_version: Cell::new(0),
            opened_version: Cell::new(None),
            controller,
            coordinators: Default::default(),
            txn_coordinators: Default::default(),
            produce_responses: Cell::new(0),
            ready_shards,
            metrics,
            conn_home: RefCell::new(None),
            cleaner: RefCell::new(cleaner::CleanerState::default()),
            peers,
            fetchers: RefCell::new(HashSet::new()),
            hw_checkpoint: RefCell::new(hw_checkpoint),
        }
    }

    /// Where connections moved to this shard are served from now on.
    pub fn set_conn_home(&self, adopt: ConnAdopter) {
        *self.conn_home.borrow_mut() = Some(adopt);
    }

    /// Moves a client connection to shard `to`; gives it back when that shard cannot take it.
    pub async fn hand_off_connection(
        self: &Rc<Self>,
        to: usize,
        conn: net::Handoff,
    ) -> Result<(), net::Handoff> {
        if to == self.id || to >= self.shards() {
            return Err(conn);
        }
        match self.call(to, ShardReq::AdoptConnection(conn)).await {
            ShardResp::Adopted(result) => result,
            other => {
                // The request (and with it the socket) is gone: the connection is closed.
                warn!(shard = self.id, to, resp = ?other, "moving a connection failed; it was closed");
                Ok(())
            }
        }
    }

    pub fn meta(&self) -> Arc<MetaSnapshot> {
        self.meta.borrow().clone()
    }

    pub fn shards(&self) -> usize {
        self.config.shards()
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<Rc<Partition>> {
        self.partitions
            .borrow()
            .get(&(topic.to_string(), index))
            .cloned()
    }

    pub fn partition_count(&self) -> usize {
        self.partitions.borrow().len()
    }

    /// Test-only fault injection: true when this produce response is to be dropped.
    pub fn drop_this_produce_response(&self) -> bool {
        let Some(every) = self.config.test_drop_produce_every else {
            return false;
        };
        let n = self.produce_responses.get() + 1;
        self.produce_responses.set(n);
        n.is_multiple_of(every)
    }

    /// Send a request to `shard`, or run it here when it is this shard.
    /// This shard's counters.
    pub fn metrics(&self) -> &crate::ops::metrics::ShardMetrics {
        self.metrics.shard(self.id)
    }

    /// Every shard's metrics (the log cleaner publishes its own block there).
    pub fn metrics_registry(&self) -> &crate::ops::metrics::Metrics {
        &self.metrics
    }

    pub async fn call(self: &Rc<Self>, shard: usize, req: ShardReq) -> ShardResp {
        if shard == self.id {
            return self.serve(req).await;
        }
        self.metrics().cross_shard_call();
        match self.router.call(shard, req).await {
            Ok(resp) => resp,
            Err(e) => {
                warn!(shard = self.id, to = shard, error = %e, "cross-shard call failed");
                failed_resp(PartitionError::with_message(
                    E::KafkaStorageError,
                    format!("shard {shard} unreachable: {e}"),
                ))
            }
        }
    }

    /// Parks [`ShardReq::WaitForData`] on `shard` (run here when it is this shard) until any
    /// of `parts` has data beyond its offset or `timeout_ms` passed. On another shard the
    /// wait is owned by this future: dropping it cancels the wait there. It holds none of
    /// that shard's request slots, and is refused at once when that shard already parks
    /// `max_cross_shard_waits_per_shard` waits.
    pub async fn wait_for_data(
        self: &Rc<Self>,
        shard: usize,
        parts: Vec<WaitPart>,
        timeout_ms: u64,
    ) -> WaitOutcome {
        let req = ShardReq::WaitForData { parts, timeout_ms };
        if shard == self.id {
            self.serve(req).await;
            return WaitOutcome::Ended;
        }
        self.metrics().cross_shard_call();
        match self.router.wait(shard, req).await {
            Ok(_) => WaitOutcome::Ended,
            Err(net::RouteError::WaitsFull { .. }) => WaitOutcome::Refused,
            Err(e) => {
                warn!(shard = self.id, to = shard, error = %e, "cross-shard wait failed");
                WaitOutcome::Ended
            }
        }
    }

    /// Answer a cross-shard request (or a local one routed through [`Shard::call`]).
    pub async fn serve(self: &Rc<Self>, req: ShardReq) -> ShardResp {
        match req {
            ShardReq::Produce(parts) => {
                let appends = parts.into_iter().map(|part| self.produce_local(part));
                ShardResp::Produce(futures::future::join_all(appends).await)
            }
            ShardReq::Read { parts, max_bytes } => {
                ShardResp::Read(self.read_many_local(parts, max_bytes).await)
            }
            ShardReq::WaitForData { parts, timeout_ms } => {
                self.wait_local(&parts, timeout_ms).await;
                ShardResp::Done
            }
            ShardReq::LogSizes(parts) => ShardResp::LogSizes(
                parts
                    .iter()
                    .map(|(topic, p)| {
                        self.partition(topic, *p)
                            .map(|part| part.log.size_and_segments().0)
                    })
                    .collect(),
            ),
            ShardReq::ListOffset {
                topic,
                partition,
                timestamp,
                committed,
                current_leader_epoch,
            } => ShardResp::ListOffset(
                self.list_offset_with_epoch(
                    &topic,
                    partition,
                    timestamp,
                    committed,
                    current_leader_epoch,
                )
                .await,
            ),
            ShardReq::EpochEnd {
                topic,
                partition,
                current_leader_epoch,
                leader_epoch,
            } => ShardResp::EpochEnd(self.epoch_end_local(
                &topic,
                partition,
                current_leader_epoch,
                leader_epoch,
            )),
            ShardReq::DeleteRecords {
                topic,
                partition,
                offset,
            } => {
                ShardResp::DeleteRecords(self.delete_records_local(&topic, partition, offset).await)
            }
            ShardReq::OpenPartitions(snapshot) => {
                ShardResp::MetaAck(self.open_partitions(&snapshot).await)
            }
            ShardReq::ApplyMeta(snapshot) => ShardResp::MetaAck(self.apply_meta(snapshot).await),
            ShardReq::Controller(req) => match &self.controller {
                Some(controller) => ShardResp::Controller(controller.handle(req).await),
                None => ShardResp::Controller(ControllerResp::NotController),
            },
            ShardReq::Group(req) => ShardResp::Group(self.coordinators.serve(req).await),
            ShardReq::Txn(req) => ShardResp::Txn(self.txn_coordinators.serve(req).await),
            ShardReq::WriteMarkers(parts) => {
                let writes = parts.into_iter().map(|part| self.write_marker_local(part));
                ShardResp::Produce(futures::future::join_all(writes).await)
            }
            ShardReq::DescribeProducers { topic, partition } => {
                ShardResp::Producers(self.describe_producers_local(&topic, partition))
            }
            ShardReq::AdoptConnection(conn) => {
                let home = self.conn_home.borrow();
                ShardResp::Adopted(match home.as_ref() {
                    Some(adopt) => adopt(conn),
                    None => Err(conn),
                })
            }
        }
    }

    /// The version this shard holds or has prepared (what an acknowledgement reports).
    fn meta_version(&self) -> u64 {
        self.meta.borrow().version.max(self.prepared_version.get())
    }

    /// Adopt a metadata snapshot: open the partitions this shard now owns, delete those of
    /// deleted topics, and pass config changes to the logs. The acknowledgement lists the
    /// partitions of the snapshot owned here that are not open (they stay offline).
    pub async fn apply_meta(self: &Rc<Self>, snapshot: Arc<MetaSnapshot>) -> MetaAck {
        if self.apply_lock.acquire(1).await.is_err() {
            return MetaAck {
                version: self.meta.borrow().version,
                unopened: Vec::new(),
            };
        }
        let _release = scopeguard(|| self.apply_lock.signal(1));
        if snapshot.version < self.meta.borrow().version
            || snapshot.version < self.prepared_version.get()
        {
            // An older snapshot overtaken by a newer one.
            return MetaAck {
                version: self.meta_version(),
                unopened: Vec::new(),
            };
        }
        let previous = std::mem::replace(&mut *self.meta.borrow_mut(), snapshot.clone());

        // Drop partitions whose topic is gone (or was re-created with a new id) or whose
        // partition no longer belongs here.
        let stale: Vec<((String, i32), Rc<Partition>)> = self
            .partitions
            .borrow()
            .iter()
            .filter(|((topic, index), p)| match snapshot.topic(topic) {
                Some(t) => {
                    t.id != p.topic.id
                        || snapshot.owner(topic, *index) != self.id
                        || !snapshot.hosts(t, *index)
                }
                None => true,
            })
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect();
        // Dropping an older incarnation of a topic makes room for its new one, which the
        // open phase had to leave alone.
        let dropped_any = !stale.is_empty();
        let mut deleted_topics: Vec<String> = Vec::new();
        for (key, partition) in stale {
            self.partitions.borrow_mut().remove(&key);
            if key.0 == crate::coordinator::group::OFFSETS_TOPIC {
                self.coordinators.close(key.1);
            }
            if key.0 == crate::coordinator::txn::TXN_STATE_TOPIC {
                self.txn_coordinators.close(key.1);
            }
            let deleted = snapshot
                .topic(&key.0)
                .is_none_or(|t| t.id != partition.topic.id);
            // A replica reassigned away from this node: its data goes too (the topic stays).
            let moved_away = !deleted
                && snapshot
                    .topic(&key.0)
                    .is_some_and(|t| !snapshot.hosts(t, key.1));
            let log = partition.log.clone();
            drop(partition);
            if deleted || moved_away {
                if deleted && !deleted_topics.contains(&key.0) {
                    deleted_topics.push(key.0.clone());
                }
                info!(topic = %key.0, partition = key.1, moved_away, "deleting partition");
                if let Err(e) = log.delete().await {
                    warn!(topic = %key.0, partition = key.1, error = %e, "deleting partition failed");
                }
            } else if let Err(e) = log.close().await {
                warn!(topic = %key.0, partition = key.1, error = %e, "closing partition failed");
            }
        }

        // Deleted topics' committed offsets become tombstones in the offsets log (every
        // shard tells its own coordinators; a topic with no partition here is found by
        // comparing with the previous snapshot).
        for name in previous.topics.keys() {
            let gone = snapshot
                .topic(name)
                .is_none_or(|t| Some(t.id) != previous.topic(name).map(|p| p.id));
            if gone
                && !deleted_topics.contains(name)
                && name != crate::coordinator::group::OFFSETS_TOPIC
            {
                deleted_topics.push(name.clone());
            }
        }
        if !deleted_topics.is_empty() {
            let removed = self.coordinators.topics_deleted(&deleted_topics).await;
            if removed > 0 {
                info!(shard = self.id, topics = ?deleted_topics, offsets = removed, "removed committed offsets of deleted topics");
            }
        }

        // Update what changed, open what is new (done already when OpenPartitions ran).
        for topic in snapshot.topics.values() {
            for index in 0..topic.partitions {
                if snapshot.owner(&topic.name, index) != self.id || !snapshot.hosts(topic, index) {
                    continue;
                }
                let existing = self.partition(&topic.name, index);
                match existing {
                    Some(p) if Arc::ptr_eq(&p.topic, topic) || p.topic.id != topic.id => {}
                    Some(p) => {
                        p.log.update_config(topic.config.log_config());
                        let replaced = Rc::new(Partition {
                            topic: topic.clone(),
                            index,
                            log: p.log.clone(),
                            producers: p.producers.clone(),
                            txns: p.txns.clone(),
                            snapshot_segment_base: Cell::new(p.snapshot_segment_base.get()),
                            traffic: p.traffic.clone(),
                            replica: p.replica.clone(),
                            rollbacks_seen: Cell::new(p.rollbacks_seen.get()),
                        });
                        self.partitions
                            .borrow_mut()
                            .insert((topic.name.clone(), index), replaced);
                    }
                    None => {}
                }
            }
        }
        if dropped_any || self.opened_version.get() != Some(snapshot.version) {
            self.open_new_partitions(&snapshot).await;
        }
        self.sync_roles(&snapshot).await;
        MetaAck {
            version: self.meta_version(),
            unopened: self.unopened_partitions(&snapshot),
        }
    }

    /// Phase one of a metadata change (see [`ShardReq::OpenPartitions`]).
    async fn open_partitions(self: &Rc<Self>, snapshot: &Arc<MetaSnapshot>) -> MetaAck {
        if self.apply_lock.acquire(1).await.is_err() {
            return MetaAck {
                version: self.meta.borrow().version,
                unopened: Vec::new(),
            };
        }
        let _release = scopeguard(|| self.apply_lock.signal(1));
        if snapshot.version < self.meta.borrow().version {
            return MetaAck {
                version: self.meta_version(),
                unopened: Vec::new(),
            };
        }
        self.prepared_version
            .set(self.prepared_version.get().max(snapshot.version));
        self.open_new_partitions(snapshot).await;
        self.opened_version.set(Some(snapshot.version));
        MetaAck {
            version: self.meta_version(),
            unopened: self.unopened_partitions(snapshot),
        }
    }

    /// The partitions of `snapshot` owned here that are not open (in that incarnation): what
    /// an acknowledgement reports as offline.
    fn unopened_partitions(&self, snapshot: &MetaSnapshot) -> Vec<(String, i32)> {
        let mut unopened = Vec::new();
        for topic in snapshot.topics.values() {
            for index in 0..topic.partitions {
                if snapshot.owner(&topic.name, index) == self.id
                    && snapshot.hosts(topic, index)
                    && self
                        .partition(&topic.name, index)
                        .is_none_or(|p| p.topic.id != topic.id)
                {
                    unopened.push((topic.name.clone(), index));
                }
            }
        }
        unopened
    }

    /// Open the partitions of `snapshot` owned here that are not open yet. A partition of an
    /// older incarnation of the topic (same name, other id) is left to the commit phase.
    ///
    /// A partition that cannot open stays offline and the others still open; failures are
    /// reported in one warning per call (with a count and the first error), not one each:
    /// when descriptors run out, every open fails. Never opens more partitions than the
    /// partition limit (internal topics first), so metadata written under a higher limit
    /// cannot exhaust the descriptors client connections need.
    async fn open_new_partitions(self: &Rc<Self>, snapshot: &MetaSnapshot) {
        let mut to_open = Vec::new();
        for topic in snapshot.topics.values() {
            for index in 0..topic.partitions {
                if snapshot.owner(&topic.name, index) == self.id
                    && snapshot.hosts(topic, index)
                    && self.partition(&topic.name, index).is_none()
                {
                    to_open.push((topic.clone(), index));
                }
            }
        }
        if to_open.is_empty() {
            return;
        }
        // The broker needs its internal topics whatever else fits (stable: order kept).
        to_open.sort_by_key(|(topic, _)| !crate::cluster::meta::is_internal_topic(&topic.name));
        let max = self.config.partition_limit.max_per_shard();
        let mut over_limit = 0usize;
        let mut failed = 0usize;
        let mut first_failure: Option<(String, i32, storage::StorageError)> = None;
        for (topic, index) in to_open {
            let internal = crate::cluster::meta::is_internal_topic(&topic.name);
            if !internal && self.partition_count() >= max {
                over_limit += 1;
                continue;
            }
            match self.open_partition(topic.clone(), index).await {
                Ok(p) => {
                    // Its coordinator (internal topics) starts when it leads (`sync_roles`).
                    self.partitions
                        .borrow_mut()
                        .insert((topic.name.clone(), index), Rc::new(p));
                }
                Err(e) => {
                    failed += 1;
                    if first_failure.is_none() {
                        first_failure = Some((topic.name.clone(), index, e));
                    }
                }
            }
        }
        if let Some((topic, partition, error)) = first_failure {
            warn!(
                shard = self.id,
                failed,
                first_topic = %topic,
                first_partition = partition,
                first_error = %error,
                "cannot open {failed} partition(s); they stay offline until the next metadata change or restart"
            );
        }
        if over_limit > 0 {
            warn!(
                shard = self.id,
                over_limit,
                "not opening {over_limit} partition(s): this shard already has {} open, the limit is {}; they stay offline (delete topics or raise the limit)",
                self.partition_count(),
                self.config.partition_limit.describe()
            );
        }
    }

    async fn open_partition(
        &self,
        topic: Arc<TopicMeta>,
        index: i32,
    ) -> Result<Partition, storage::StorageError> {
        let dir = partition_dir(&self.config.data_dir, &topic.name, index);
        let log = PartitionLog::open(dir, topic.config.log_config()).await?;
        log.set_read_cache_bytes(self.config.batch_cache_bytes_per_partition);
        let (producers, txns) = load_producer_state(&log, &topic.name, index).await?;
        let high_watermark = self
            .hw_checkpoint
            .borrow_mut()
            .remove(&(topic.name.clone(), index))
            .unwrap_or(0);
        let segment_base = log.active_segment_base();
        let rollbacks = log.rollbacks();
        Ok(Partition {
            topic,
            index,
            log,
            producers: Rc::new(RefCell::new(producers)),
            txns: Rc::new(RefCell::new(txns)),
            snapshot_segment_base: Cell::new(segment_base),
            traffic: Default::default(),
            rollbacks_seen: Cell::new(rollbacks),
            replica: Rc::new(replica::Replica::new(high_watermark)),
        })
    }

    /// Append one partition's records on this (owning) shard.
    pub async fn produce_local(&self, part: ProducePart) -> ProduceResult {
        if self.config.test_panic_topic.as_deref() == Some(part.topic.as_str()) {
            // A detached task, like a partition's writer: its panic is not caught by the
            // connection's handler and ends the shard's thread.
            glommio::spawn_local(async {
                panic!("test fault injection (RINGTAIL_TEST_PANIC_TOPIC)")
            })
            .detach();
        }
        let Some(partition) = self.partition(&part.topic, part.partition) else {
            return ProduceResult::failed(PartitionError::new(E::UnknownTopicOrPartition));
        };
        match self
            .append(
                &partition,
                part.records,
                part.acks,
                part.transactional_id.as_deref(),
                part.timeout_ms,
            )
            .await
        {
            Ok(result) => result,
            Err(error) => {
                if error.code != E::OutOfOrderSequenceNumber.code() {
                    warn!(topic = %part.topic, partition = part.partition, code = error.code, msg = ?error.message, "produce rejected");
                }
                ProduceResult::failed(error.in_partition(&part.topic, part.partition))
            }
        }
    }

    async fn append(
        &self,
        partition: &Partition,
        records: Option<Bytes>,
        acks: i16,
        transactional_id: Option<&str>,
        timeout_ms: i32,
    ) -> Result<ProduceResult, PartitionError> {
        // Only the leader appends; acks=all needs min.insync.replicas in sync first.
        let leader_epoch = partition
            .leader_epoch()
            .ok_or_else(|| PartitionError::new(E::NotLeaderOrFollower))?;
        if acks == -1 && !partition.enough_replicas() {
            return Err(PartitionError::new(E::NotEnoughReplicas));
        }
        let deadline = std::time::Instant::now()
            + Duration::from_millis(u64::try_from(timeout_ms.max(0)).unwrap_or(0));
        let records = records.ok_or_else(|| {
            PartitionError::with_message(E::CorruptMessage, "produce request without records")
        })?;
        let topic_config = &partition.topic.config;
        // Kafka's LogValidator: exactly one v2 batch per partition (Produce v3+), CRC, and the
        // record-level checks the topic's settings call for; recompresses when the topic's
        // compression.type asks for it.
        let options = ValidationOptions::for_topic(topic_config.settings(), now_ms());
        let validated =
            records::validate_produce(&records, topic_config.compression_type().into(), &options)?;
        // validate_produce verified the CRC (once, on the bytes it returns).
        let batches = ValidatedBatches::parse_crc_verified(validated.batch)?;
        let headers = batches.headers();
        // Clients never write markers; a transactional batch needs its transactional id.
        let transactional = headers.iter().any(|h| h.is_transactional());
        if headers.iter().any(|h| h.is_control())
            || (transactional && (transactional_id.is_none() || headers[0].producer_id < 0))
        {
            return Err(TxnAppendError::Invalid.into());
        }
        let txn_of = transactional.then(|| (headers[0].producer_id, headers[0].producer_epoch));
        if let (Some((pid, epoch)), Some(id)) = (txn_of, transactional_id) {
            let check = partition.txns.borrow().check(pid, epoch)?;
            if check == TxnCheck::Verify {
                self.verify_in_transaction(id, pid, epoch, &partition.topic.name, partition.index)
                    .await?;
            }
        }
        // A failed write rolled the log back since the last append: what the producer state
        // learned from the dropped appends goes too, before their offsets are reused.
        partition.forget_rolled_back_appends();
        let seq = headers.first().filter(|h| h.producer_id >= 0).map(|h| {
            (
                h.producer_id,
                h.producer_epoch,
                h.base_sequence,
                crate::log::producer_state::last_sequence(h.base_sequence, h.last_offset_delta),
                h.max_timestamp,
            )
        });
        if let Some((pid, epoch, first, last, _)) = seq {
            let check = partition.producers.borrow().check(pid, epoch, first, last);
            match check {
                SeqCheck::Append => {}
                SeqCheck::Duplicate {
                    base_offset,
                    last_offset,
                    log_append_time_ms,
                } => {
                    // The original may still be in flight: answer only once it is as durable
                    // as this request asks.
                    let durable = match acks {
                        0 => true,
                        1 => last_offset < partition.log.written_end_offset(),
                        _ => last_offset < partition.log.durable_offset(),
                    };
                    if !durable {
                        partition.log.flush().await?;
                    }
                    if acks == -1 {
                        partition
                            .replica
                            .wait_replicated(&partition.log, leader_epoch, last_offset, deadline)
                            .await?;
                    }
                    return Ok(ProduceResult {
                        error: None,
                        base_offset,
                        log_append_time_ms,
                        log_start_offset: partition.log.log_start_offset(),
                    });
                }
                SeqCheck::Reject(e) => return Err(e.into()),
            }
        }
        let log_append_time = topic_config.timestamp_type_log_append().then(now_ms);
        // Offsets are assigned synchronously here, right after the sequence check: nothing
        // else can run on this shard in between.
        let pending = partition.log.append(&batches, log_append_time)?;
        self.metrics()
            .produced(batches.bytes().len(), batches.headers().len());
        if let Some((pid, epoch)) = txn_of {
            partition.txns.borrow_mut().on_data(
                pid,
                epoch,
                pending.base_offset,
                pending.last_offset,
            );
        }
        partition
            .traffic
            .produced(batches.record_count(), batches.bytes().len());
        if let Some((producer_id, producer_epoch, first_seq, last_seq, max_ts)) = seq {
            partition.producers.borrow_mut().record(&ProducerBatch {
                producer_id,
                producer_epoch,
                first_seq,
                last_seq,
                base_offset: pending.base_offset,
                last_offset: pending.last_offset,
                max_timestamp_ms: log_append_time.unwrap_or(max_ts),
            });
        }
        // A roll: snapshot the producer state in the background (the next start replays
        // only what follows it).
        let segment_base = partition.log.active_segment_base();
        if segment_base > partition.snapshot_segment_base.get() {
            partition.snapshot_segment_base.set(segment_base);
            let mut table = partition.producers.borrow().clone();
            table.advance_end_offset(partition.log.log_end_offset());
            let dir = partition.log.dir().to_path_buf();
            glommio::spawn_local(async move { producer_snapshots::write(dir, &table).await })
                .detach();
            let end = partition.log.log_end_offset();
            txn_markers::persist_txn_index(&partition.log, &partition.txns.borrow(), end);
        }
        let base_offset = pending.base_offset;
        let last_offset = pending.last_offset;
        let durability = match acks {
            0 => Durability::Queued,
            1 => Durability::Written,
            _ => {
                if self.config.kafka.acks_all_fsync() {
                    Durability::Fsynced
                } else {
                    Durability::Written
                }
            }
        };
        pending.wait(durability).await?;
        if acks == -1 {
            partition
                .replica
                .wait_replicated(&partition.log, leader_epoch, last_offset, deadline)
                .await?;
        }
        Ok(ProduceResult {
            error: None,
            base_offset,
            log_append_time_ms: log_append_time.unwrap_or(-1),
            log_start_offset: partition.log.log_start_offset(),
        })
    }

    /// Read partitions in order, sharing `max_bytes` (Kafka's fetch.max.bytes): each gets at
    /// most its own limit and what is left; `min_one` is kept only until some data was read.
    ///
    /// Two phases: the byte ranges are chosen partition by partition (cheap: cache and index
    /// lookups), then every range not in the cache is loaded from disk at once, so a fetch of
    /// cold data over many partitions keeps several reads in flight instead of one.
    pub async fn read_many_local(
        self: &Rc<Self>,
        parts: Vec<ReadPart>,
        max_bytes: usize,
    ) -> Vec<ReadReply> {
        let mut remaining = max_bytes;
        let mut min_one = true;
        let mut planned = Vec::with_capacity(parts.len());
        for mut part in parts {
            part.max_bytes = part.max_bytes.min(remaining);
            part.min_one &= min_one;
            let plan = self.plan_read(&part).await;
            if let Ok((_, read, _)) = &plan {
                if read.bytes > 0 {
                    min_one = false;
                    remaining = remaining.saturating_sub(read.bytes);
                }
            }
            planned.push(plan);
        }
        let replies = futures::future::join_all(planned.into_iter().map(finish_read)).await;
        self.metrics()
            .fetched(replies.iter().map(ReadReply::records_len).sum());
        replies
    }

    /// Chooses the byte range of one partition read (nothing is loaded from disk yet).
    async fn plan_read(
        self: &Rc<Self>,
        part: &ReadPart,
    ) -> Result<(Rc<Partition>, storage::ReadResult, Option<i64>), ReadReply> {
        let Some(partition) = self.partition(&part.topic, part.partition) else {
            return Err(ReadReply::failed(PartitionError::new(
                E::UnknownTopicOrPartition,
            )));
        };
        // A follower reads everything written (its fetch offset tells the leader what it
        // has); consumers read up to the high watermark, read_committed ones up to the last
        // stable offset.
        let visible_end = if let Some(fetch) = &part.replica {
            match self.on_replica_fetch(&partition, fetch, part.offset) {
                Ok(None) => partition.log.written_end_offset(),
                Ok(Some(diverging)) => {
                    let mut reply = read_reply(&partition, Vec::new(), None);
                    reply.diverging_epoch = Some(diverging);
                    return Err(reply);
                }
                Err(e) => return Err(ReadReply::failed(e)),
            }
        } else {
            if part.current_leader_epoch >= 0 {
                match partition.leader_epoch() {
                    Some(e) if part.current_leader_epoch < e => {
                        return Err(ReadReply::failed(PartitionError::new(E::FencedLeaderEpoch)))
                    }
                    Some(e) if part.current_leader_epoch > e => {
                        return Err(ReadReply::failed(PartitionError::new(
                            E::UnknownLeaderEpoch,
                        )))
                    }
                    _ => {}
                }
            }
            let high_watermark = partition.high_watermark();
            if part.committed {
                partition.txns.borrow().last_stable_offset(high_watermark)
            } else {
                high_watermark
            }
        };
        match partition
            .log
            .read(part.offset, part.max_bytes, part.min_one, visible_end)
            .await
        {
            Ok(read) => Ok((partition, read, part.committed.then_some(part.offset))),
            Err(e) => Err(read_error(&partition.log, &e)),
        }
    }

    /// Wait until any of the partitions has data beyond its offset, or the timeout.
    pub async fn wait_local(&self, parts: &[WaitPart], timeout_ms: u64) {
        let waits: Vec<_> = parts
            .iter()
            .filter_map(|w| {
                let partition = self.partition(&w.topic, w.partition)?;
                let (offset, replica) = (w.offset, w.replica);
                Some(Box::pin(async move {
                    if replica {
                        partition.log.wait_for_data(offset).await
                    } else {
                        Shard::wait_for_high_watermark(partition, offset).await
                    }
                }))
            })
            .collect();
        if waits.is_empty() {
            return;
        }
        futures_lite::future::or(
            async {
                futures::future::select_all(waits).await;
            },
            async {
                glommio::timer::sleep(Duration::from_millis(timeout_ms)).await;
            },
        )
        .await;
    }

    /// ListOffsets for one partition: (offset, timestamp).
    pub async fn list_offset_local(
        &self,
        topic: &str,
        index: i32,
        timestamp: i64,
        committed: bool,
    ) -> Result<(i64, i64), PartitionError> {
        let partition = self
            .partition(topic, index)
            .ok_or_else(|| PartitionError::new(E::UnknownTopicOrPartition))?;
        let log = &partition.log;
        // Kafka's `lastFetchableOffset`: lookups by timestamp search the whole log, then
        // answer nothing for an offset a consumer of this isolation level cannot read yet.
        let fetchable_end = if committed {
            let end = partition.high_watermark();
            partition.txns.borrow().last_stable_offset(end)
        } else {
            partition.high_watermark()
        };
        let readable = |(offset, ts): (i64, i64)| {
            if offset < fetchable_end {
                (offset, ts)
            } else {
                (-1, -1)
            }
        };
        match timestamp {
            // LATEST: the high watermark, or for read_committed the last stable offset.
            -1 if committed => Ok((
                partition
                    .txns
                    .borrow()
                    .last_stable_offset(partition.high_watermark()),
                -1,
            )),
            -1 => Ok((partition.high_watermark(), -1)),
            // EARLIEST and EARLIEST_LOCAL: everything is local.
            -2 | -4 => Ok((log.log_start_offset(), -1)),
            // MAX_TIMESTAMP: the first record carrying the largest timestamp (KAFKA-16310),
            // found in the first batch whose max timestamp reaches it.
            -3 => {
                let visible_end = partition.high_watermark();
                let Some((_, max_ts)) = log.max_timestamp_offset(visible_end).await? else {
                    return Ok((-1, -1));
                };
                let Some(batch) = log.find_batch_by_timestamp(max_ts, visible_end).await? else {
                    return Ok((-1, -1));
                };
                match records::max_timestamp_record(&batch)? {
                    Some(found) => Ok(readable(found)),
                    None => Ok((-1, -1)),
                }
            }
            ts if ts >= 0 => {
                let Some(batch) = log
                    .find_batch_by_timestamp(ts, partition.high_watermark())
                    .await?
                else {
                    return Ok((-1, -1));
                };
                match compression::find_record_by_timestamp(&batch, ts)? {
                    Some(found) => Ok(readable(found)),
                    None => Ok((-1, -1)),
                }
            }
            _ => Err(PartitionError::with_message(
                E::InvalidRequest,
                format!("unknown ListOffsets timestamp {timestamp}"),
            )),
        }
    }

    /// DeleteRecords for one partition owned here (Kafka's `Partition.deleteRecordsOnLeader`):
    /// the new low watermark.
    pub async fn delete_records_local(
        &self,
        topic: &str,
        index: i32,
        offset: i64,
    ) -> Result<i64, PartitionError> {
        let partition = self
            .partition(topic, index)
            .ok_or_else(|| PartitionError::new(E::UnknownTopicOrPartition))?;
        if !partition.topic.config.settings().cleanup_delete {
            return Err(PartitionError::with_message(
                E::PolicyViolation,
                format!(
                    "Records of partition {topic}-{index} can not be deleted due to the configured policy"
                ),
            ));
        }
        if partition.leader_epoch().is_none() {
            return Err(PartitionError::new(E::NotLeaderOrFollower));
        }
        let log = &partition.log;
        let high_watermark = partition.high_watermark();
        let target = if offset == -1 { high_watermark } else { offset };
        if target > high_watermark {
            return Err(PartitionError::new(E::OffsetOutOfRange));
        }
        // Storage refuses negative offsets and offsets beyond the high watermark with
        // OffsetOutOfRange, as Kafka does.
        log.delete_records_before(target).await?;
        let low_watermark = log.log_start_offset();
        Ok(low_watermark)
    }

    /// Apply retention to every partition of this shard.
    pub async fn retention_pass(&self) {
        let partitions: Vec<Rc<Partition>> = self.partitions.borrow().values().cloned().collect();
        let now = now_ms();
        // A dynamic broker config: read it from the current snapshot.
        let producer_expiration_ms = i64::from(self.meta().broker.producer_id_expiration_ms());
        for p in partitions {
            if let Err(e) = p.log.apply_retention(now).await {
                warn!(topic = %p.topic.name, partition = p.index, error = %e, "retention failed");
            }
            // Kafka forgets idle idempotent producers after producer.id.expiration.ms.
            p.producers.borrow_mut().expire(now, producer_expiration_ms);
            p.txns.borrow_mut().trim_before(p.log.log_start_offset());
        }
    }

    /// Closes every partition (shutdown), `concurrency` at a time: first flushes them all
    /// (data written and fsynced), then closes each (seals the active segment, writes its
    /// indexes and checkpoint: several fsyncs). One after the other took 30 s for 2 000
    /// partitions on the reference VM.
    pub async fn close_all(&self, concurrency: usize) {
        use futures::StreamExt as _;
        // Coordinators first: their parked requests are answered before the logs go.
        self.coordinators.close_all();
        self.txn_coordinators.close_all();
        let partitions: Vec<Rc<Partition>> = self
            .partitions
            .borrow_mut()
            .drain()
            .map(|(_, p)| p)
            .collect();
        // Data first: every partition's appended batches written and fsynced, so a shutdown
        // cut short (timeout, second signal) later leaves only index and checkpoint work to
        // recovery.
        let logs: Vec<PartitionLog> = partitions.iter().map(|p| p.log.clone()).collect();
        futures::stream::iter(logs)
            .for_each_concurrent(concurrency.max(1), |log| async move {
                if let Err(e) = log.flush().await {
                    warn!(error = %e, "flushing partition at shutdown failed");
                }
            })
            .await;
        futures::stream::iter(partitions)
            .for_each_concurrent(concurrency.max(1), |p| async move {
                let log = p.log.clone();
                let mut table = p.producers.borrow().clone();
                let txns = p.txns.borrow().clone();
                let (topic, index) = (p.topic.clone(), p.index);
                drop(p);
                let dir = log.dir().to_path_buf();
                let handle = log.clone();
                match log.close().await {
                    // Clean: the log ends where its appends did; the next start loads this
                    // and replays nothing.
                    Ok(()) => {
                        table.advance_end_offset(handle.log_end_offset());
                        producer_snapshots::write(dir.clone(), &table).await;
                        txn_index_files::write(dir, txns, handle.log_end_offset()).await
                    }
                    Err(e) => {
                        warn!(topic = %topic.name, partition = index, error = %e, "closing partition at shutdown failed")
                    }
                }
            })
            .await;
    }

    /// Creates an internal topic (`__consumer_offsets`, `__transaction_state`) through the
    /// controller, like any client's CreateTopics: compacted, `compression.type=producer`,
    /// the given partitions and segment size; replication factor `replication_factor`
    /// (`offsets.topic.replication.factor` / `transaction.state.log.replication.factor`,
    /// default 3) but at most the brokers of the cluster: the voters of the controller
    /// quorum, and the live brokers now (so a single node, or a cluster still starting, gets
    /// a topic rather than an error). A topic someone else created meanwhile is fine; a
    /// failure is logged and the next caller tries again.
    pub async fn create_internal_topic(
        self: &Rc<Self>,
        name: &str,
        partitions: i32,
        segment_bytes: i32,
        replication_factor: i16,
    ) {
        let brokers = self
            .config
            .controller_quorum
            .len()
            .max(self.meta().live_brokers().count())
            .min(self.meta().live_brokers().count())
            .max(1);
        let replication_factor =
            replication_factor.clamp(1, i16::try_from(brokers).unwrap_or(i16::MAX));
        let topic = NewTopic {
            name: name.to_string(),
            partitions,
            replication_factor,
            configs: vec![
                ("cleanup.policy".into(), Some("compact".into())),
                ("compression.type".into(), Some("producer".into())),
                ("segment.bytes".into(), Some(segment_bytes.to_string())),
            ],
            assignment_partitions: None,
        };
        let reply = self
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
                Some(Ok(t)) => info!(partitions = t.partitions, "created {name}"),
                Some(Err(e))
                    if e.code == kafka_protocol::ResponseError::TopicAlreadyExists.code() => {}
                Some(Err(e)) => warn!(code = e.code, msg = ?e.message, "cannot create {name}"),
                None => warn!("cannot create {name}: empty controller answer"),
            },
            other => warn!(?other, "cannot create {name}"),
        }
    }

    pub fn mark_ready(&self) {
        self.ready_shards.fetch_add(1, Ordering::SeqCst);
    }
}

fn failed_resp(error: PartitionError) -> ShardResp {
    ShardResp::Failed(error)
}

/// Extract the typed reply, or turn a failed call (or, by a bug, a mismatched reply) into
/// errors for each of the `n` parts asked for. Never panics.
pub fn expect_produce(resp: ShardResp, n: usize) -> Vec<ProduceResult> {
    match resp {
        ShardResp::Produce(r) if r.len() == n => r,
        other => vec![ProduceResult::failed(reply_error(&other)); n],
    }
}

pub fn expect_read(resp: ShardResp, n: usize) -> Vec<ReadReply> {
    match resp {
        ShardResp::Read(r) if r.len() == n => r,
        other => vec![ReadReply::failed(reply_error(&other)); n],
    }
}

pub fn expect_list_offset(resp: ShardResp) -> Result<(i64, i64, i32), PartitionError> {
    match resp {
        ShardResp::ListOffset(r) => r,
        other => Err(reply_error(&other)),
    }
}

pub fn expect_epoch_end(resp: ShardResp) -> Result<(i32, i64), PartitionError> {
    match resp {
        ShardResp::EpochEnd(r) => r,
        other => Err(reply_error(&other)),
    }
}

pub fn expect_delete_records(resp: ShardResp) -> Result<i64, PartitionError> {
    match resp {
        ShardResp::DeleteRecords(r) => r,
        other => Err(reply_error(&other)),
    }
}

pub fn expect_controller(resp: ShardResp) -> ControllerResp {
    match resp {
        ShardResp::Controller(r) => r,
        other => ControllerResp::Failed(reply_error(&other)),
    }
}

fn reply_error(resp: &ShardResp) -> PartitionError {
    match resp {
        ShardResp::Failed(e) => e.clone(),
        other => {
            warn!(?other, "unexpected cross-shard reply");
            PartitionError::with_message(E::UnknownServerError, "unexpected cross-shard reply")
        }
    }
}

/// Run `f` when dropped: releases a semaphore on every exit path of an async fn.
pub fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// Loads a planned read's bytes and builds the reply.
/// `committed_from`: a read_committed read from this offset (its aborted transactions are
/// reported).
async fn finish_read(
    plan: Result<(Rc<Partition>, storage::ReadResult, Option<i64>), ReadReply>,
) -> ReadReply {
    let (partition, read, committed_from) = match plan {
        Ok(p) => p,
        Err(reply) => return reply,
    };
    match read.into_chunks().await {
        Ok(records) => {
            partition.traffic.fetched(&records);
            read_reply(&partition, records, committed_from)
        }
        Err(e) => read_error(&partition.log, &e),
    }
}

/// The reply carrying `records` of `partition` with its offsets as of now; `committed_from`:
/// a read_committed read from this offset (its aborted transactions are listed).
fn read_reply(
    partition: &Partition,
    records: Vec<Bytes>,
    committed_from: Option<i64>,
) -> ReadReply {
    let high_watermark = partition.high_watermark();
    let last_stable_offset = partition.txns.borrow().last_stable_offset(high_watermark);
    ReadReply {
        error: None,
        high_watermark,
        last_stable_offset,
        aborted: match committed_from {
            Some(from) => partition
                .txns
                .borrow()
                .aborted_between(from, last_stable_offset),
            None => Vec::new(),
        },
        log_start_offset: partition.log.log_start_offset(),
        records,
        diverging_epoch: None,
    }
}

/// The reply for a failed read of `log`.
fn read_error(log: &PartitionLog, e: &storage::StorageError) -> ReadReply {
    ReadReply {
        error: Some(PartitionError::from(e)),
        high_watermark: log.written_end_offset(),
        last_stable_offset: log.written_end_offset(),
        aborted: Vec::new(),
        log_start_offset: log.log_start_offset(),
        records: Vec::new(),
        diverging_epoch: None,
    }
}

/// Rebuilds a partition's idempotent-producer state (the newest snapshot, then the log after
/// it, so retried batches sent before a restart are still recognised as duplicates) and its
/// transactions (from the log start: the aborted-transaction state is not in the snapshot).
/// At open, and on a follower after truncation.
pub(crate) async fn load_producer_state(
    log: &PartitionLog,
    topic: &str,
    index: i32,
) -> Result<(ProducerStateTable, PartitionTxns), storage::StorageError> {
    let dir = log.dir().to_path_buf();
    let snapshot = producer_snapshots::load(dir, log.log_end_offset()).await;
    let from_snapshot = snapshot.as_ref().map(ProducerStateTable::end_offset);
    let mut producers = snapshot.unwrap_or_default();
    let replay_from = producers.end_offset().max(log.log_start_offset());
    let mut batches = Vec::new();
    // Transactional batches and markers, in log order, to rebuild the transactions (after
    // the transaction index; from the log start without one).
    let (txns_indexed, txn_replay_from) = txn_markers::load_txn_index(log).await;
    let mut txn_events = Vec::new();
    log.for_each_batch_header(txn_replay_from.min(replay_from), |h| {
        if h.is_transactional() && h.producer_id >= 0 && h.base_offset >= txn_replay_from {
            txn_events.push(txn_markers::TxnEvent::from_header(h));
        }
        if h.producer_id >= 0 && !h.is_control() && h.base_offset >= replay_from {
            batches.push(ProducerBatch::of(h));
        }
    })
    .await?;
    let replayed = producers.rebuild_from(batches);
    producers.advance_end_offset(log.log_end_offset());
    info!(
        topic = %topic,
        partition = index,
        snapshot_end_offset = from_snapshot.unwrap_or(-1),
        txn_replayed_from = txn_replay_from,
        replayed_from = replay_from,
        replayed_batches = replayed,
        producers = producers.len(),
        "producer state loaded"
    );
    let txns = txn_markers::rebuild_txns(log, txns_indexed, txn_events).await?;
    Ok((producers, txns))
}
