//! Kafka request handling: which APIs and versions we implement, and dispatch from a decoded
//! request to its handler. Handlers return typed responses; encoding happens in `net`.

mod admin;
mod delete_records;
mod elections;
mod fetch;
mod groups;
mod log_dirs;
mod metadata;
mod offsets;
mod produce;
pub mod txn;

use std::rc::Rc;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use net::codec::RequestFrame;
use net::conn::{ConnInfo, HandlerResult};
use net::versions::{ApiVersionTable, VersionSupport};
use tracing::{debug, warn};

use crate::shard::Shard;

/// The APIs and versions this broker implements. Each range is decoded, handled and encoded
/// at every version inside it (see tests). Minimums follow what current clients need:
/// librdkafka only uses v2 record batches when Produce >= 3 and Fetch >= 4 are offered.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 16),
    (ApiKey::ListOffsets, 1, 8),
    // KIP-320: consumers check for truncation after a leader change.
    (ApiKey::OffsetForLeaderEpoch, 0, 4),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::DescribeLogDirs, 0, 4),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 0),
    (ApiKey::ListPartitionReassignments, 0, 0),
    // Consumer groups (classic protocol), answered by the coordinators in `coordinator`.
    // OffsetCommit < 2 and OffsetFetch 0 (ZooKeeper-era) have no structs in kafka-protocol.
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    // Transactions (the pre-KIP-890 protocol, "transaction version 1"): librdkafka sends
    // AddPartitionsToTxn v0, AddOffsetsToTxn v0, EndTxn v1, TxnOffsetCommit v3; kafka-python
    // at most v3 of each. AddPartitionsToTxn v4+ is broker-to-broker (KIP-890 verification),
    // EndTxn v5 / TxnOffsetCommit v5 are transaction version 2: not advertised, and no
    // `transaction.version` feature, so clients use the old protocol.
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 3),
    (ApiKey::TxnOffsetCommit, 0, 3),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
    (ApiKey::DescribeProducers, 0, 0),
];

pub fn api_table() -> ApiVersionTable {
    ApiVersionTable::new(SUPPORTED_APIS.to_vec())
}

pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// The leader and leader epoch of a partition this node knows, if it has a live leader
/// (KIP-951's `CurrentLeader` hints in Produce and Fetch answers).
pub fn leader_of(
    meta: &crate::cluster::meta::MetaSnapshot,
    topic: &str,
    partition: i32,
) -> Option<(i32, i32)> {
    let a = meta.topic(topic)?.assignment(partition)?;
    meta.live_broker(a.leader)?;
    Some((a.leader, a.leader_epoch))
}

/// The shard owning partition `p` of `topic` when this node leads it, or the error a client
/// gets (NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION).
pub fn leader_shard(
    meta: &crate::cluster::meta::MetaSnapshot,
    topic: Option<&crate::cluster::meta::TopicMeta>,
    p: i32,
) -> Result<usize, kafka_protocol::ResponseError> {
    match topic {
        Some(tm) if p >= 0 && p < tm.partitions => {
            if meta.leads(tm, p) {
                Ok(meta.owner(&tm.name, p))
            } else {
                Err(kafka_protocol::ResponseError::NotLeaderOrFollower)
            }
        }
        _ => Err(kafka_protocol::ResponseError::UnknownTopicOrPartition),
    }
}

pub fn topic_name(s: &str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(str_bytes(s))
}

impl net::Handler for KafkaHandler {
    fn handle(
        &self,
        req: RequestFrame,
        conn: &ConnInfo,
    ) -> impl std::future::Future<Output = HandlerResult> {
        self.handle_frame(req, conn)
    }

    async fn hand_off(&self, to: usize, conn: net::Handoff) -> Result<(), net::Handoff> {
        self.shard.hand_off_connection(to, conn).await
    }
}

/// The per-shard request handler that `net` drives for every connection on this shard.
pub struct KafkaHandler {
    pub shard: Rc<Shard>,
    pub table: ApiVersionTable,
    /// Requests being handled now (a graceful shutdown waits for them).
    in_flight: std::cell::Cell<usize>,
    /// Set at shutdown: requests read from now on close their connection (after the
    /// responses owed to earlier ones), so clients go to another broker or retry later.
    draining: std::cell::Cell<bool>,
}

impl KafkaHandler {
    pub fn new(shard: Rc<Shard>) -> KafkaHandler {
        KafkaHandler {
            shard,
            table: api_table(),
            in_flight: std::cell::Cell::new(0),
            draining: std::cell::Cell::new(false),
        }
    }

    /// Shutdown: take no new requests (see `draining`).
    pub fn start_draining(&self) {
        self.draining.set(true);
    }

    /// Requests of this shard's connections being handled right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    /// Handles one request and records how long it took (`/metrics`), from the moment its
    /// frame was read to the moment its response is ready to be written (for a Fetch, that
    /// includes the long-poll wait).
    pub async fn handle_frame(&self, req: RequestFrame, conn: &ConnInfo) -> HandlerResult {
        if self.draining.get() {
            return HandlerResult::Close;
        }
        let started = std::time::Instant::now();
        let api = req.api_key;
        self.in_flight.set(self.in_flight.get() + 1);
        // Also when the connection task is dropped mid-request.
        let _done = crate::shard::scopeguard(|| self.in_flight.set(self.in_flight.get() - 1));
        let result = self.dispatch(req, conn).await;
        self.shard.metrics().request_time(api, started.elapsed());
        result
    }

    async fn dispatch(&self, req: RequestFrame, conn: &ConnInfo) -> HandlerResult {
        let api = req.api_key;
        let version = req.api_version;
        match self.table.lookup(api, version) {
            VersionSupport::Supported => {}
            VersionSupport::UnsupportedVersion { .. } if api == ApiKey::ApiVersions as i16 => {
                // KIP-511: answer with UNSUPPORTED_VERSION and our range, at v0 framing.
                return HandlerResult::Respond(net::versions::encode_api_versions_fallback(
                    req.correlation_id,
                    &self.table,
                ));
            }
            other => {
                // Kafka closes the connection when it cannot parse the request header/API.
                warn!(peer = %conn.peer, api, version, ?other, "unsupported API or version; closing connection");
                return HandlerResult::Close;
            }
        }
        self.shard.metrics().request(api);
        let request = match net::codec::decode_request(&req) {
            Ok(r) => r,
            Err(e) => {
                warn!(peer = %conn.peer, api, version, error = %e, "malformed request; closing connection");
                return HandlerResult::Close;
            }
        };
        debug!(peer = %conn.peer, api, version, correlation_id = req.correlation_id, "request");
        let shard = &self.shard;
        let mut spliced = net::codec::FetchRecords::new();
        // Where this connection's partitions live, when connections may move to them.
        let affinity =
            (shard.config.move_connections && shard.shards() > 1).then_some(&*conn.affinity);
        let response: ResponseKind = match request {
            RequestKind::ApiVersions(_) => {
                ResponseKind::ApiVersions(metadata::api_versions(&self.table, version))
            }
            RequestKind::Metadata(r) => {
                ResponseKind::Metadata(metadata::metadata(shard, r, version).await)
            }
            RequestKind::Produce(r) => {
                let acks = r.acks;
                let resp = produce::produce(shard, r, version, affinity).await;
                if acks == 0 {
                    return HandlerResult::NoResponse;
                }
                if shard.drop_this_produce_response() {
                    warn!(peer = %conn.peer, "test switch: dropping this produce response");
                    return HandlerResult::Close;
                }
                ResponseKind::Produce(resp)
            }
            RequestKind::Fetch(r) => {
                let closed = &conn.closed;
                ResponseKind::Fetch(
                    fetch::fetch(shard, r, version, &mut spliced, affinity, closed).await,
                )
            }
            RequestKind::ListOffsets(r) => {
                ResponseKind::ListOffsets(offsets::list_offsets(shard, r, version).await)
            }
            RequestKind::OffsetForLeaderEpoch(r) => ResponseKind::OffsetForLeaderEpoch(
                offsets::offset_for_leader_epoch(shard, r, version).await,
            ),
            RequestKind::FindCoordinator(r) => {
                ResponseKind::FindCoordinator(metadata::find_coordinator(shard, r, version).await)
            }
            RequestKind::JoinGroup(r) => {
                let client = groups::client_info(req.client_id.as_deref(), conn.peer);
                ResponseKind::JoinGroup(groups::join_group(shard, r, version, client).await)
            }
            RequestKind::SyncGroup(r) => {
                ResponseKind::SyncGroup(groups::sync_group(shard, r, version).await)
            }
            RequestKind::Heartbeat(r) => {
                ResponseKind::Heartbeat(groups::heartbeat(shard, r, version).await)
            }
            RequestKind::LeaveGroup(r) => {
                ResponseKind::LeaveGroup(groups::leave_group(shard, r, version).await)
            }
            RequestKind::OffsetCommit(r) => {
                ResponseKind::OffsetCommit(groups::offset_commit(shard, r, version).await)
            }
            RequestKind::OffsetFetch(r) => {
                ResponseKind::OffsetFetch(groups::offset_fetch(shard, r, version).await)
            }
            RequestKind::OffsetDelete(r) => {
                ResponseKind::OffsetDelete(groups::offset_delete(shard, r, version).await)
            }
            RequestKind::DescribeGroups(r) => {
                ResponseKind::DescribeGroups(groups::describe_groups(shard, r, version).await)
            }
            RequestKind::ListGroups(r) => {
                ResponseKind::ListGroups(groups::list_groups(shard, r, version).await)
            }
            RequestKind::DeleteGroups(r) => {
                ResponseKind::DeleteGroups(groups::delete_groups(shard, r, version).await)
            }
            RequestKind::DescribeLogDirs(r) => {
                ResponseKind::DescribeLogDirs(log_dirs::describe_log_dirs(shard, r, version).await)
            }
            RequestKind::DescribeCluster(r) => {
                ResponseKind::DescribeCluster(metadata::describe_cluster(shard, r, version))
            }
            RequestKind::InitProducerId(r) if r.transactional_id.is_some() => {
                ResponseKind::InitProducerId(txn::init_producer_id(shard, r, version).await)
            }
            RequestKind::InitProducerId(r) => {
                ResponseKind::InitProducerId(produce::init_producer_id(shard, r, version).await)
            }
            RequestKind::AddPartitionsToTxn(r) => ResponseKind::AddPartitionsToTxn(
                txn::add_partitions_to_txn(shard, r, version).await,
            ),
            RequestKind::AddOffsetsToTxn(r) => {
                ResponseKind::AddOffsetsToTxn(txn::add_offsets_to_txn(shard, r, version).await)
            }
            RequestKind::TxnOffsetCommit(r) => {
                ResponseKind::TxnOffsetCommit(txn::txn_offset_commit(shard, r, version).await)
            }
            RequestKind::EndTxn(r) => ResponseKind::EndTxn(txn::end_txn(shard, r, version).await),
            RequestKind::DescribeTransactions(r) => ResponseKind::DescribeTransactions(
                txn::describe_transactions(shard, r, version).await,
            ),
            RequestKind::ListTransactions(r) => {
                ResponseKind::ListTransactions(txn::list_transactions(shard, r, version).await)
            }
            RequestKind::DescribeProducers(r) => {
                ResponseKind::DescribeProducers(txn::describe_producers(shard, r, version).await)
            }
            RequestKind::DeleteRecords(r) => {
                ResponseKind::DeleteRecords(delete_records::delete_records(shard, r, version).await)
            }
            RequestKind::CreateTopics(r) => {
                ResponseKind::CreateTopics(admin::create_topics(shard, r, version).await)
            }
            RequestKind::DeleteTopics(r) => {
                ResponseKind::DeleteTopics(admin::delete_topics(shard, r, version).await)
            }
            RequestKind::AlterPartitionReassignments(r) => {
                ResponseKind::AlterPartitionReassignments(
                    elections::alter_partition_reassignments(shard, r, version).await,
                )
            }
            RequestKind::ListPartitionReassignments(r) => ResponseKind::ListPartitionReassignments(
                elections::list_partition_reassignments(shard, r, version),
            ),
            RequestKind::ElectLeaders(r) => {
                ResponseKind::ElectLeaders(elections::elect_leaders(shard, r, version).await)
            }
            RequestKind::CreatePartitions(r) => {
                ResponseKind::CreatePartitions(admin::create_partitions(shard, r, version).await)
            }
            RequestKind::DescribeConfigs(r) => {
                ResponseKind::DescribeConfigs(admin::describe_configs(shard, r, version))
            }
            RequestKind::AlterConfigs(r) => {
                ResponseKind::AlterConfigs(admin::alter_configs(shard, r, version).await)
            }
            RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
                admin::incremental_alter_configs(shard, r, version).await,
            ),
            _ => {
                warn!(peer = %conn.peer, api, version, "API advertised but not dispatched; closing connection");
                return HandlerResult::Close;
            }
        };
        match net::codec::encode_response_with(
            api,
            version,
            req.correlation_id,
            &response,
            &spliced,
        ) {
            Ok(chunks) => HandlerResult::Respond(chunks),
            Err(e) => {
                warn!(peer = %conn.peer, api, version, error = %e, "cannot encode response; closing connection");
                HandlerResult::Close
            }
        }
    }
}
