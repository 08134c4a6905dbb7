//! Partition replication on the shard that owns each replica: the shell around
//! [`crate::replication::state::LeaderState`] and the follower's fetchers.
//!
//! Owns, per partition replica ([`Replica`], shared by the `Partition` values that replace
//! each other on config changes): its role (leader with its replication state, or follower
//! of a leader at an epoch), the high watermark a follower learned, and the event that wakes
//! acks=all produces and consumer long polls when the high watermark moves or the role
//! changes. Per shard: one fetcher task per leader node it follows partitions of (so replica
//! traffic from this shard to a node is one connection and one request at a time, however
//! many partitions), the peer connections ([`crate::cluster::peer_client`]), and the
//! high-watermark checkpoint file of its partitions.
//!
//! Roles follow the metadata: [`Shard::sync_roles`] runs after every applied image (and once
//! a second, to retry what failed). Becoming leader at a new epoch first records the epoch in
//! the leader-epoch file at the log end (replicated partitions), then starts a fresh
//! `LeaderState`; from then on appends carry the epoch. Becoming follower wakes every waiter:
//! a deposed leader acknowledges nothing more (acks=all waiters answer NOT_LEADER_OR_FOLLOWER).
//!
//! The follower side (Kafka's `ReplicaFetcherThread`): fetch from the log end with the last
//! fetched epoch; the leader answers records (appended as they are, offsets and epochs kept,
//! producer and transaction state updated from them) or a diverging epoch (the follower
//! truncates to where its log and the leader's agree, then rebuilds its producer state).
//! A follower reports an offset only once the batches before it are written (fsynced when
//! `ringtail.acks.all.fsync`), so a kill -9 cannot lose what the leader counted.
//!
//! Runs on the partition's owning shard only; everything is `Rc`/`RefCell`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{
    FetchPartition, FetchRequest, FetchTopic, ReplicaState,
};
use kafka_protocol::messages::fetch_response::{FetchResponse, PartitionData};
use kafka_protocol::messages::{ApiKey, BrokerId, RequestKind};
use kafka_protocol::ResponseError as E;
use storage::batch::ValidatedBatches;
use storage::{Durability, PartitionLog};
use tracing::{debug, info, warn};

use super::{now_ms, Partition, Shard, ShardReq};
use crate::cluster::controller::{ControllerReq, ControllerResp};
use crate::cluster::meta::MetaSnapshot;
use crate::errors::PartitionError;
use crate::log::producer_state::ProducerBatch;
use crate::replication::state::{Event, LeaderState};

/// Fetch version the followers send (v15: `ReplicaState`, topic ids, diverging epochs).
const REPLICA_FETCH_VERSION: i16 = 15;
/// Kafka's `replica.fetch.wait.max.ms` default.
pub const REPLICA_FETCH_WAIT_MAX_MS: i32 = 500;
/// Kafka's `replica.fetch.max.bytes` default (per partition).
pub const REPLICA_FETCH_MAX_BYTES: i32 = 1 << 20;
/// Kafka's `replica.fetch.response.max.bytes` default.
pub const REPLICA_FETCH_RESPONSE_MAX_BYTES: i32 = 10 << 20;
/// Kafka's `replica.fetch.backoff.ms` default: pause after a failed fetch.
const REPLICA_FETCH_BACKOFF: Duration = Duration::from_millis(1000);
/// How long a follower waits for a fetch answer beyond the leader's long poll.
const REPLICA_FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How often leaders look for lagging followers and roles are re-checked.
const REPLICATION_TICK: Duration = Duration::from_millis(500);
/// How often the high-watermark checkpoint is written (Kafka's
/// `replica.high.watermark.checkpoint.interval.ms` default).
const HW_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(5000);
/// The checkpoint file of shard N in the data dir.
const HW_CHECKPOINT_PREFIX: &str = "replication-offset-checkpoint.shard-";

/// The replication side of one partition replica (see the module docs).
pub struct Replica {
    pub role: RefCell<Role>,
    /// Fires when the high watermark moves or the role changes.
    pub changed: Rc<storage::event::Event>,
}

impl Replica {
    /// A replica that leads nothing yet: [`Shard::sync_roles`] gives it its role.
    pub fn new(high_watermark: i64) -> Replica {
        Replica {
            role: RefCell::new(Role::Follower {
                leader: -1,
                leader_epoch: -1,
                high_watermark,
            }),
            changed: Rc::new(storage::event::Event::default()),
        }
    }

    fn wake(&self) {
        self.changed.notify_all();
    }
}

#[derive(Debug, Clone)]
pub enum Role {
    Leader(LeaderState),
    /// Following `leader` (-1: nobody leads) at `leader_epoch`.
    Follower {
        leader: i32,
        leader_epoch: i32,
        high_watermark: i64,
    },
}

/// What a follower's fetch says about itself (Fetch with a replica id).
#[derive(Debug, Clone, Copy)]
pub struct ReplicaFetch {
    pub replica_id: i32,
    pub current_leader_epoch: i32,
    pub last_fetched_epoch: i32,
}

impl Replica {
    /// What consumers may see of `log`: everything the ISR has (a single replica: everything
    /// written).
    pub fn high_watermark(&self, log: &PartitionLog) -> i64 {
        let end = log.written_end_offset();
        let mut role = self.role.borrow_mut();
        match &mut *role {
            Role::Leader(s) if s.replicas().len() <= 1 => end,
            Role::Leader(s) => {
                if s.step(Event::LeaderWrite { leader_end: end })
                    .high_watermark
                    .is_some()
                {
                    self.wake();
                }
                s.high_watermark()
            }
            Role::Follower { high_watermark, .. } => (*high_watermark).min(end),
        }
    }

    /// The leader epoch this replica leads at, or `None` when it does not lead.
    pub fn leader_epoch(&self) -> Option<i32> {
        match &*self.role.borrow() {
            Role::Leader(s) => Some(s.leader_epoch),
            Role::Follower { .. } => None,
        }
    }

    /// Whether an acks=all append may go ahead (`min.insync.replicas` in sync).
    pub fn enough_replicas(&self) -> bool {
        match &*self.role.borrow() {
            Role::Leader(s) => s.enough_replicas(),
            Role::Follower { .. } => false,
        }
    }

    /// acks=all: waits until the high watermark passes `last_offset`, or fails with the
    /// retriable error a client expects (NOT_LEADER_OR_FOLLOWER when this replica stopped
    /// leading at `leader_epoch`, NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR fell below
    /// `min.insync.replicas`, REQUEST_TIMED_OUT at `deadline`).
    pub async fn wait_replicated(
        &self,
        log: &PartitionLog,
        leader_epoch: i32,
        last_offset: i64,
        deadline: Instant,
    ) -> Result<(), PartitionError> {
        loop {
            let listener = self.changed.listen();
            if self.leader_epoch() != Some(leader_epoch) {
                return Err(PartitionError::with_message(
                    E::NotLeaderOrFollower,
                    "leadership moved before the records were replicated",
                ));
            }
            let replicated = self.high_watermark(log) > last_offset;
            if !self.enough_replicas() {
                return Err(PartitionError::new(E::NotEnoughReplicasAfterAppend));
            }
            if replicated {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                if !crate::cluster::quorum::controller_session_alive() {
                    // Probably replaced while cut off from the controller: send the client
                    // to look for the new leader.
                    return Err(PartitionError::with_message(
                        E::NotLeaderOrFollower,
                        "not replicated in time, and this broker lost its controller session",
                    ));
                }
                return Err(PartitionError::new(E::RequestTimedOut));
            }
            let written_end = log.written_end_offset();
            futures_lite::future::or(
                futures_lite::future::or(listener, log.wait_for_data(written_end)),
                glommio::timer::sleep(left),
            )
            .await;
        }
    }
}

impl Partition {
    /// See [`Replica::high_watermark`].
    pub fn high_watermark(&self) -> i64 {
        self.replica.high_watermark(&self.log)
    }

    /// See [`Replica::leader_epoch`].
    pub fn leader_epoch(&self) -> Option<i32> {
        self.replica.leader_epoch()
    }

    /// See [`Replica::enough_replicas`].
    pub fn enough_replicas(&self) -> bool {
        self.replica.enough_replicas()
    }

    fn replicated(&self) -> bool {
        self.topic
            .assignment(self.index)
            .is_some_and(|a| a.replicas.len() > 1)
    }
}

/// KIP-320: a request's `current_leader_epoch` against this replica's (-1: unchecked).
pub fn check_leader_epoch(
    partition: &Partition,
    current_leader_epoch: i32,
) -> Result<(), PartitionError> {
    if current_leader_epoch < 0 {
        return Ok(());
    }
    match partition.leader_epoch() {
        Some(e) if current_leader_epoch < e => Err(PartitionError::new(E::FencedLeaderEpoch)),
        Some(e) if current_leader_epoch > e => Err(PartitionError::new(E::UnknownLeaderEpoch)),
        Some(_) => Ok(()),
        None => Err(PartitionError::new(E::NotLeaderOrFollower)),
    }
}

/// The leader epoch the record at `offset` was written in (-1: unknown, e.g. an unreplicated
/// partition whose batches carry none).
pub fn epoch_of_offset(log: &PartitionLog, offset: i64) -> i32 {
    log.leader_epochs()
        .iter()
        .rev()
        .find(|e| e.start_offset <= offset)
        .map_or(-1, |e| e.epoch)
}

/// Replication figures of one shard, for `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReplicationStats {
    pub leaders: u64,
    pub under_replicated: u64,
    pub under_min_isr: u64,
    pub offline: u64,
    pub max_follower_lag: i64,
}

impl Shard {
    /// ListOffsets on the leader, with KIP-320's epoch check and the epoch of the offset
    /// found (for LATEST, the latest epoch).
    pub async fn list_offset_with_epoch(
        &self,
        topic: &str,
        index: i32,
        timestamp: i64,
        committed: bool,
        current_leader_epoch: i32,
    ) -> Result<(i64, i64, i32), PartitionError> {
        let partition = self
            .partition(topic, index)
            .ok_or_else(|| PartitionError::new(E::UnknownTopicOrPartition))?;
        check_leader_epoch(&partition, current_leader_epoch)?;
        let (offset, ts) = self
            .list_offset_local(topic, index, timestamp, committed)
            .await?;
        let epoch = if offset < 0 {
            -1
        } else if timestamp == -1 {
            partition.log.latest_epoch().map_or(-1, |e| e.epoch)
        } else {
            epoch_of_offset(&partition.log, offset)
        };
        Ok((offset, ts, epoch))
    }

    /// OffsetForLeaderEpoch on the leader: the largest epoch at or below `leader_epoch` and
    /// where it ends (the start of the next epoch, or the log end); (-1, -1) when unknown.
    pub fn epoch_end_local(
        &self,
        topic: &str,
        index: i32,
        current_leader_epoch: i32,
        leader_epoch: i32,
    ) -> Result<(i32, i64), PartitionError> {
        let partition = self
            .partition(topic, index)
            .ok_or_else(|| PartitionError::new(E::UnknownTopicOrPartition))?;
        if current_leader_epoch >= 0 {
            check_leader_epoch(&partition, current_leader_epoch)?;
        } else if partition.leader_epoch().is_none() {
            return Err(PartitionError::new(E::NotLeaderOrFollower));
        }
        Ok(partition
            .log
            .end_offset_for_epoch(leader_epoch)
            .unwrap_or((-1, -1)))
    }

    /// Gives every partition replica of this shard the role `snapshot` names.
    pub async fn sync_roles(self: &Rc<Self>, snapshot: &MetaSnapshot) {
        let me = snapshot.node_id;
        let lag_max_ms = snapshot.broker.replica_lag_time_max_ms();
        let parts: Vec<Rc<Partition>> = self.partitions.borrow().values().cloned().collect();
        let now = now_ms();
        for p in parts {
            let Some(topic) = snapshot.topic(&p.topic.name).filter(|t| t.id == p.topic.id) else {
                continue;
            };
            let Some(a) = topic.assignment(p.index) else {
                continue;
            };
            let min_isr = usize::try_from(topic.config.min_insync_replicas()).unwrap_or(1);
            if a.leader == me {
                let known_hw = {
                    let mut role = p.replica.role.borrow_mut();
                    match &mut *role {
                        Role::Leader(s) if s.leader_epoch == a.leader_epoch => {
                            s.set_limits(min_isr, lag_max_ms);
                            if s.replicas() != a.replicas.as_slice() {
                                s.set_replicas(a.replicas.clone(), now);
                            }
                            if s.partition_epoch != a.partition_epoch || s.isr() != a.isr {
                                let isr_before = s.isr().len();
                                let actions = s.step(Event::IsrChanged {
                                    isr: a.isr.clone(),
                                    partition_epoch: a.partition_epoch,
                                    leader_end: p.log.written_end_offset(),
                                    now_ms: now,
                                });
                                if a.isr.len() < isr_before {
                                    self.metrics().isr_shrunk();
                                } else if a.isr.len() > isr_before {
                                    self.metrics().isr_expanded();
                                }
                                info!(topic = %p.topic.name, partition = p.index, isr = ?a.isr, partition_epoch = a.partition_epoch, "ISR changed");
                                drop(role);
                                let _ = actions;
                                p.replica.wake();
                            }
                            continue;
                        }
                        Role::Leader(s) => s.high_watermark(),
                        Role::Follower { high_watermark, .. } => *high_watermark,
                    }
                };
                if a.replicas.len() > 1 {
                    let end = p.log.log_end_offset();
                    if let Err(e) = p.log.assign_epoch(a.leader_epoch, end).await {
                        warn!(topic = %p.topic.name, partition = p.index, epoch = a.leader_epoch, error = %e, "cannot start leader epoch; retrying");
                        continue;
                    }
                    p.log.set_leader_epoch(Some(a.leader_epoch));
                }
                let state = LeaderState::new(
                    me,
                    a.leader_epoch,
                    a.partition_epoch,
                    a.replicas.clone(),
                    a.isr.clone(),
                    known_hw,
                    p.log.written_end_offset(),
                    min_isr,
                    lag_max_ms,
                    now_ms(),
                );
                if a.replicas.len() > 1 {
                    info!(topic = %p.topic.name, partition = p.index, leader_epoch = a.leader_epoch, isr = ?a.isr, log_end = p.log.log_end_offset(), high_watermark = state.high_watermark(), "leading");
                }
                *p.replica.role.borrow_mut() = Role::Leader(state);
                p.replica.wake();
                // Coordinators move with leadership: load on becoming leader.
                if p.topic.name == crate::coordinator::group::OFFSETS_TOPIC {
                    self.open_group_coordinator(&p);
                } else if p.topic.name == crate::coordinator::txn::TXN_STATE_TOPIC {
                    self.open_txn_coordinator(&p);
                }
            } else {
                let mut role = p.replica.role.borrow_mut();
                let known_hw = match &*role {
                    Role::Follower {
                        leader,
                        leader_epoch,
                        ..
                    } if *leader == a.leader && *leader_epoch == a.leader_epoch => continue,
                    Role::Follower { high_watermark, .. } => *high_watermark,
                    Role::Leader(s) => s.high_watermark(),
                };
                let was_leader = matches!(&*role, Role::Leader(_));
                *role = Role::Follower {
                    leader: a.leader,
                    leader_epoch: a.leader_epoch,
                    high_watermark: known_hw,
                };
                drop(role);
                p.log.set_leader_epoch(None);
                // ... and unload on losing it.
                if p.topic.name == crate::coordinator::group::OFFSETS_TOPIC {
                    self.coordinators.close(p.index);
                } else if p.topic.name == crate::coordinator::txn::TXN_STATE_TOPIC {
                    self.txn_coordinators.close(p.index);
                }
                if was_leader || a.leader >= 0 {
                    info!(topic = %p.topic.name, partition = p.index, leader = a.leader, leader_epoch = a.leader_epoch, "following");
                }
                p.replica.wake();
            }
        }
        self.ensure_fetchers(snapshot);
    }

    /// Whether some partition's role differs from what the current image says.
    fn roles_out_of_date(&self, snapshot: &MetaSnapshot) -> bool {
        self.partitions.borrow().values().any(|p| {
            let Some(a) = snapshot
                .topic(&p.topic.name)
                .filter(|t| t.id == p.topic.id)
                .and_then(|t| t.assignment(p.index))
            else {
                return false;
            };
            match &*p.replica.role.borrow() {
                Role::Leader(s) => {
                    a.leader != snapshot.node_id
                        || s.leader_epoch != a.leader_epoch
                        || s.partition_epoch != a.partition_epoch
                }
                Role::Follower {
                    leader,
                    leader_epoch,
                    ..
                } => {
                    a.leader == snapshot.node_id
                        || *leader != a.leader
                        || *leader_epoch != a.leader_epoch
                }
            }
        })
    }

    /// On the leader, for a follower's fetch of `partition` from `fetch_offset`: checks its
    /// epochs, records its progress, and answers the diverging epoch when its log went
    /// another way (then nothing is read).
    pub fn on_replica_fetch(
        self: &Rc<Self>,
        partition: &Rc<Partition>,
        fetch: &ReplicaFetch,
        fetch_offset: i64,
    ) -> Result<Option<(i32, i64)>, PartitionError> {
        let leader_end = partition.log.written_end_offset();
        let actions = {
            let mut role = partition.replica.role.borrow_mut();
            let Role::Leader(s) = &mut *role else {
                return Err(PartitionError::new(E::NotLeaderOrFollower));
            };
            if fetch.current_leader_epoch >= 0 {
                if fetch.current_leader_epoch < s.leader_epoch {
                    return Err(PartitionError::new(E::FencedLeaderEpoch));
                }
                if fetch.current_leader_epoch > s.leader_epoch {
                    return Err(PartitionError::new(E::UnknownLeaderEpoch));
                }
            }
            if !s.replicas().contains(&fetch.replica_id) {
                return Err(PartitionError::with_message(
                    E::NotLeaderOrFollower,
                    format!(
                        "broker {} holds no replica of this partition",
                        fetch.replica_id
                    ),
                ));
            }
            if fetch.last_fetched_epoch >= 0 {
                if let Some((epoch, end)) =
                    partition.log.end_offset_for_epoch(fetch.last_fetched_epoch)
                {
                    if epoch != fetch.last_fetched_epoch || end < fetch_offset {
                        return Ok(Some((epoch, end)));
                    }
                }
            }
            s.step(Event::FollowerFetch {
                replica: fetch.replica_id,
                fetch_offset,
                leader_end,
                now_ms: now_ms(),
            })
        };
        if actions.high_watermark.is_some() {
            partition.replica.wake();
        }
        if let Some(isr) = actions.propose_isr {
            self.propose_isr(partition, isr);
        }
        Ok(None)
    }

    /// Sends an ISR change to the controller in the background; a refusal clears it so the
    /// next fetch or tick may propose again.
    fn propose_isr(self: &Rc<Self>, partition: &Rc<Partition>, isr: Vec<i32>) {
        let (leader_epoch, partition_epoch) = match &*partition.replica.role.borrow() {
            Role::Leader(s) => (s.leader_epoch, s.partition_epoch),
            Role::Follower { .. } => return,
        };
        let shard = self.clone();
        let p = partition.clone();
        let broker = self.meta().node_id;
        info!(topic = %p.topic.name, partition = p.index, isr = ?isr, "proposing ISR change");
        glommio::spawn_local(async move {
            let req = ControllerReq::AlterPartition {
                topic: p.topic.name.clone(),
                partition: p.index,
                broker,
                leader_epoch,
                partition_epoch,
                isr,
            };
            let reply = super::expect_controller(shard.call(0, ShardReq::Controller(req)).await);
            let ok = matches!(reply, ControllerResp::Altered(Ok(())));
            if !ok {
                warn!(topic = %p.topic.name, partition = p.index, reply = ?reply, "ISR change refused");
                // Let the next metadata or tick decide again, after a pause.
                glommio::timer::sleep(REPLICA_FETCH_BACKOFF).await;
                if let Role::Leader(s) = &mut *p.replica.role.borrow_mut() {
                    s.step(Event::IsrChangeFailed);
                }
            } else {
                // Applied with the image; if the image came first, this is a no-op.
                let meta = shard.meta();
                shard.sync_roles(&meta).await;
            }
        })
        .detach();
    }

    /// A consumer's long poll: resolves once the high watermark passes `offset` (or the role
    /// changed, or the log closed); the caller bounds it with its own deadline.
    pub async fn wait_for_high_watermark(partition: Rc<Partition>, offset: i64) {
        loop {
            let listener = partition.replica.changed.listen();
            if partition.high_watermark() > offset || partition.leader_epoch().is_none() {
                return;
            }
            let written_end = partition.log.written_end_offset();
            if written_end < offset {
                // Nothing new written yet: the log's own wait wakes us first.
                futures_lite::future::or(listener, partition.log.wait_for_data(offset)).await;
            } else {
                futures_lite::future::or(listener, partition.log.wait_for_data(written_end)).await;
            }
        }
    }

    /// One fetcher task per leader node this shard follows partitions of.
    fn ensure_fetchers(self: &Rc<Self>, snapshot: &MetaSnapshot) {
        if crate::server::shutting_down() {
            return;
        }
        let me = snapshot.node_id;
        let mut leaders: Vec<i32> = self
            .partitions
            .borrow()
            .values()
            .filter_map(|p| match &*p.replica.role.borrow() {
                Role::Follower { leader, .. } if *leader >= 0 && *leader != me => Some(*leader),
                _ => None,
            })
            .collect();
        leaders.sort_unstable();
        leaders.dedup();
        for leader in leaders {
            if self.fetchers.borrow_mut().insert(leader) {
                let shard = self.clone();
                glommio::spawn_local(async move { shard.run_fetcher(leader).await }).detach();
            }
        }
    }

    /// The partitions this shard follows `leader` for, with the epoch it leads at.
    fn followed(&self, leader: i32) -> Vec<(Rc<Partition>, i32)> {
        self.partitions
            .borrow()
            .values()
            .filter_map(|p| match &*p.replica.role.borrow() {
                Role::Follower {
                    leader: l,
                    leader_epoch,
                    ..
                } if *l == leader => Some((p.clone(), *leader_epoch)),
                _ => None,
            })
            .collect()
    }

    /// The follower loop for one leader node (see the module docs); ends when this shard
    /// follows nothing there any more.
    async fn run_fetcher(self: Rc<Self>, leader: i32) {
        info!(shard = self.id, leader, "replica fetcher started");
        let mut failures = 0u32;
        loop {
            let parts = self.followed(leader);
            if parts.is_empty() || crate::server::shutting_down() {
                break;
            }
            let meta = self.meta();
            let request = self.replica_fetch_request(&meta, &parts);
            let result: Result<FetchResponse, _> = self
                .peers
                .call(
                    &meta,
                    leader,
                    ApiKey::Fetch,
                    REPLICA_FETCH_VERSION,
                    &RequestKind::Fetch(request),
                    REPLICA_FETCH_TIMEOUT,
                )
                .await;
            let response = match result {
                Ok(r) if r.error_code == 0 => r,
                Ok(r) => {
                    debug!(leader, code = r.error_code, "replica fetch refused");
                    glommio::timer::sleep(REPLICA_FETCH_BACKOFF).await;
                    continue;
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(30) {
                        warn!(shard = self.id, leader, failures, error = %e, "replica fetch failed; retrying");
                    }
                    glommio::timer::sleep(REPLICA_FETCH_BACKOFF).await;
                    continue;
                }
            };
            failures = 0;
            let by_key: HashMap<(uuid::Uuid, i32), (Rc<Partition>, i32)> = parts
                .into_iter()
                .map(|(p, e)| ((p.topic.id, p.index), (p, e)))
                .collect();
            let mut errors = 0usize;
            let mut total = 0usize;
            for topic in response.responses {
                for data in topic.partitions {
                    total += 1;
                    let Some((p, epoch)) = by_key.get(&(topic.topic_id, data.partition_index))
                    else {
                        continue;
                    };
                    if let Err(why) = self.apply_fetched(p, *epoch, data).await {
                        errors += 1;
                        debug!(topic = %p.topic.name, partition = p.index, why, "replica fetch of partition failed");
                    }
                }
            }
            if total > 0 && errors == total {
                glommio::timer::sleep(REPLICA_FETCH_BACKOFF).await;
            }
        }
        self.fetchers.borrow_mut().remove(&leader);
        info!(shard = self.id, leader, "replica fetcher stopped");
        // Something may have been added while stopping (never at shutdown: the fetcher
        // would stop again at once, and start again, forever).
        if !crate::server::shutting_down() {
            let meta = self.meta();
            self.ensure_fetchers(&meta);
        }
    }

    fn replica_fetch_request(
        &self,
        meta: &MetaSnapshot,
        parts: &[(Rc<Partition>, i32)],
    ) -> FetchRequest {
        let me = meta.node_id;
        let broker_epoch = meta.brokers.get(&me).map_or(-1, |b| b.epoch);
        let mut topics: Vec<FetchTopic> = Vec::new();
        let mut index: HashMap<uuid::Uuid, usize> = HashMap::new();
        for (p, epoch) in parts {
            let mut fp = FetchPartition::default();
            fp.partition = p.index;
            fp.current_leader_epoch = *epoch;
            fp.fetch_offset = p.log.log_end_offset();
            fp.last_fetched_epoch = p.log.latest_epoch().map_or(-1, |e| e.epoch);
            fp.log_start_offset = p.log.log_start_offset();
            fp.partition_max_bytes = REPLICA_FETCH_MAX_BYTES;
            let i = *index.entry(p.topic.id).or_insert_with(|| {
                let mut t = FetchTopic::default();
                t.topic_id = p.topic.id;
                t.topic = super::super::kafka::topic_name(&p.topic.name);
                topics.push(t);
                topics.len() - 1
            });
            topics[i].partitions.push(fp);
        }
        let mut state = ReplicaState::default();
        state.replica_id = BrokerId(me);
        state.replica_epoch = broker_epoch;
        let mut req = FetchRequest::default();
        req.replica_state = state;
        req.max_wait_ms = REPLICA_FETCH_WAIT_MAX_MS;
        req.min_bytes = 1;
        req.max_bytes = REPLICA_FETCH_RESPONSE_MAX_BYTES;
        req.isolation_level = 0;
        req.session_id = 0;
        req.session_epoch = -1;
        req.topics = topics;
        req
    }

    /// A follower applies one partition of a fetch answer.
    async fn apply_fetched(
        &self,
        p: &Rc<Partition>,
        leader_epoch: i32,
        data: PartitionData,
    ) -> Result<(), String> {
        let still_following = |p: &Partition| matches!(&*p.replica.role.borrow(), Role::Follower { leader_epoch: e, .. } if *e == leader_epoch);
        if !still_following(p) {
            return Ok(());
        }
        if data.error_code != 0 {
            return Err(format!("error code {}", data.error_code));
        }
        let diverging = &data.diverging_epoch;
        if diverging.epoch >= 0 || diverging.end_offset >= 0 {
            let mut target = diverging.end_offset.max(0);
            if let Some((_, end)) = p.log.end_offset_for_epoch(diverging.epoch) {
                target = target.min(end);
            }
            target = target.min(p.log.log_end_offset());
            return self.truncate_replica(p, target).await;
        }
        let records = data.records.unwrap_or_default();
        if !records.is_empty() {
            self.append_replicated(p, records).await?;
        }
        let end = p.log.log_end_offset();
        let mut role = p.replica.role.borrow_mut();
        if let Role::Follower { high_watermark, .. } = &mut *role {
            let hw = data.high_watermark.min(end);
            if hw != *high_watermark && hw >= 0 {
                *high_watermark = hw;
                drop(role);
                p.replica.wake();
            }
        }
        Ok(())
    }

    async fn append_replicated(&self, p: &Rc<Partition>, records: Bytes) -> Result<(), String> {
        let batches = ValidatedBatches::parse(records).map_err(|e| format!("bad batches: {e}"))?;
        p.forget_rolled_back_appends();
        let end = p.log.log_end_offset();
        if batches
            .headers()
            .first()
            .is_some_and(|h| h.base_offset < end)
        {
            return Err(format!(
                "leader sent offset {} below this replica's log end {end}",
                batches.headers()[0].base_offset
            ));
        }
        let pending = p
            .log
            .append_replica(&batches)
            .map_err(|e| format!("append: {e}"))?;
        self.metrics()
            .replicated(batches.bytes().len(), batches.headers().len());
        // Producer and transaction state follow the log, so a new leader deduplicates and
        // completes transactions as the old one did.
        let mut offset = 0usize;
        for h in batches.headers() {
            let len = h.total_len();
            let bytes = batches.bytes().slice(offset..offset + len);
            offset += len;
            if h.producer_id < 0 {
                continue;
            }
            let last = h.base_offset + i64::from(h.last_offset_delta.max(0));
            if h.is_control() {
                if let Some(commit) = super::txn_markers::control_batch_commit(&bytes) {
                    p.txns.borrow_mut().on_marker(
                        h.producer_id,
                        h.producer_epoch,
                        commit,
                        h.base_offset,
                    );
                }
                continue;
            }
            if h.is_transactional() {
                p.txns
                    .borrow_mut()
                    .on_data(h.producer_id, h.producer_epoch, h.base_offset, last);
            }
            p.producers
                .borrow_mut()
                .rebuild_from([ProducerBatch::of(h)]);
        }
        let durability = if self.config.kafka.acks_all_fsync() {
            Durability::Fsynced
        } else {
            Durability::Written
        };
        pending
            .wait(durability)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    /// Cuts a follower's log back to `offset` (where it agrees with the leader) and rebuilds
    /// what was derived from the removed records.
    async fn truncate_replica(&self, p: &Rc<Partition>, offset: i64) -> Result<(), String> {
        let end = p.log.log_end_offset();
        if offset >= end {
            return Ok(());
        }
        warn!(topic = %p.topic.name, partition = p.index, from = end, to = offset, "truncating to the leader's log");
        p.log
            .truncate_to(offset)
            .await
            .map_err(|e| format!("truncate: {e}"))?;
        self.metrics().replica_truncated();
        match super::load_producer_state(&p.log, &p.topic.name, p.index).await {
            Ok((producers, txns)) => {
                *p.producers.borrow_mut() = producers;
                *p.txns.borrow_mut() = txns;
            }
            Err(e) => {
                warn!(topic = %p.topic.name, partition = p.index, error = %e, "rebuilding producer state after truncation failed")
            }
        }
        if let Role::Follower { high_watermark, .. } = &mut *p.replica.role.borrow_mut() {
            *high_watermark = (*high_watermark).min(p.log.log_end_offset());
        }
        Ok(())
    }

    /// Once every [`REPLICATION_TICK`]: leaders drop lagging followers from the ISR, roles
    /// that failed to change are retried, and the high-watermark checkpoint is written
    /// every [`HW_CHECKPOINT_INTERVAL`].
    pub async fn run_replication(self: Rc<Self>) {
        let mut last_checkpoint = Instant::now();
        let mut written: HashMap<(String, i32), i64> = HashMap::new();
        loop {
            glommio::timer::sleep(REPLICATION_TICK).await;
            if crate::server::shutting_down() {
                break;
            }
            let meta = self.meta();
            if self.roles_out_of_date(&meta) {
                self.sync_roles(&meta).await;
            }
            let now = now_ms();
            let parts: Vec<Rc<Partition>> = self.partitions.borrow().values().cloned().collect();
            let mut stats = ReplicationStats::default();
            for p in &parts {
                let leader_end = p.log.written_end_offset();
                let actions = {
                    let mut role = p.replica.role.borrow_mut();
                    match &mut *role {
                        Role::Leader(s) => {
                            stats.leaders += 1;
                            if s.under_replicated() {
                                stats.under_replicated += 1;
                            }
                            if !s.enough_replicas() {
                                stats.under_min_isr += 1;
                            }
                            if let Some(lag) = s.follower_lags(leader_end).map(|(_, l)| l).max() {
                                stats.max_follower_lag = stats.max_follower_lag.max(lag);
                            }
                            Some(s.step(Event::Tick {
                                leader_end,
                                now_ms: now,
                            }))
                        }
                        Role::Follower { .. } => None,
                    }
                };
                if let Some(actions) = actions {
                    if actions.high_watermark.is_some() {
                        p.replica.wake();
                    }
                    if let Some(isr) = actions.propose_isr {
                        self.propose_isr(p, isr);
                    }
                }
            }
            if self.id == 0 {
                // Cluster-wide, from the image: partitions nobody leads.
                stats.offline = meta
                    .topics
                    .values()
                    .map(|t| t.assignments.iter().filter(|a| a.leader < 0).count() as u64)
                    .sum();
            }
            self.metrics().record_replication(stats);
            if last_checkpoint.elapsed() >= HW_CHECKPOINT_INTERVAL {
                last_checkpoint = Instant::now();
                self.checkpoint_high_watermarks(&parts, &mut written).await;
            }
        }
        let parts: Vec<Rc<Partition>> = self.partitions.borrow().values().cloned().collect();
        self.checkpoint_high_watermarks(&parts, &mut written).await;
    }

    /// Writes this shard's high-watermark checkpoint when a replicated partition's high
    /// watermark moved since the last one (temp file, fsync, rename).
    async fn checkpoint_high_watermarks(
        &self,
        parts: &[Rc<Partition>],
        written: &mut HashMap<(String, i32), i64>,
    ) {
        let current: HashMap<(String, i32), i64> = parts
            .iter()
            .filter(|p| p.replicated())
            .map(|p| ((p.topic.name.clone(), p.index), p.high_watermark()))
            .collect();
        if current == *written {
            return;
        }
        let mut text = format!("0\n{}\n", current.len());
        for ((topic, partition), hw) in &current {
            text.push_str(&format!("{topic} {partition} {hw}\n"));
        }
        let path = self
            .config
            .data_dir
            .join(format!("{HW_CHECKPOINT_PREFIX}{}", self.id));
        let result = glommio::executor()
            .spawn_blocking(move || write_atomically(&path, text.as_bytes()))
            .await;
        match result {
            Ok(()) => *written = current,
            Err(e) => {
                warn!(shard = self.id, error = %e, "writing the high-watermark checkpoint failed")
            }
        }
    }
}

fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Every shard's high-watermark checkpoints in `data_dir` (a partition may have moved
/// between shards since they were written). Unreadable lines are skipped: a missing high
/// watermark only means consumers wait for the followers' next fetches.
pub fn load_high_watermarks(data_dir: &std::path::Path) -> HashMap<(String, i32), i64> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.starts_with(HW_CHECKPOINT_PREFIX) || name.ends_with(".tmp") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in text.lines().skip(2) {
            let mut fields = line.split(' ');
            let (Some(topic), Some(p), Some(hw), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if let (Ok(p), Ok(hw)) = (p.parse::<i32>(), hw.parse::<i64>()) {
                out.insert((topic.to_string(), p), hw);
            }
        }
    }
    out
}
