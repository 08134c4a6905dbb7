//! ApiVersions, Metadata, FindCoordinator, DescribeCluster: what a client learns about the
//! cluster before it does anything else.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};
use kafka_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use kafka_protocol::messages::describe_cluster_response::{
    DescribeClusterBroker, DescribeClusterResponse,
};
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::find_coordinator_response::FindCoordinatorResponse;
use kafka_protocol::messages::metadata_request::MetadataRequest;
use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::BrokerId;
use kafka_protocol::ResponseError as E;
use net::versions::ApiVersionTable;
use uuid::Uuid;

use super::{str_bytes, topic_name};
use crate::cluster::controller::{ControllerReq, ControllerResp, NewTopic};
use crate::cluster::meta::{
    validate_topic_name, MetaSnapshot, TopicMeta, OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC,
};
use crate::coordinator::group::find_coordinator::{
    find_coordinator_response, CoordinatorNode, KEY_TYPE_GROUP, KEY_TYPE_TRANSACTION,
};
use crate::coordinator::{coordinator_of, txn_coordinator_of, GroupReq, GroupResp};
use crate::shard::{expect_controller, Shard, ShardReq, ShardResp};

/// Kafka's "authorized operations not requested" marker.
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// Kafka's `AclOperation` codes that resources support (`AclEntry.supportedOperations`).
mod acl_op {
    pub const READ: u8 = 3;
    pub const WRITE: u8 = 4;
    pub const CREATE: u8 = 5;
    pub const DELETE: u8 = 6;
    pub const ALTER: u8 = 7;
    pub const DESCRIBE: u8 = 8;
    pub const CLUSTER_ACTION: u8 = 9;
    pub const DESCRIBE_CONFIGS: u8 = 10;
    pub const ALTER_CONFIGS: u8 = 11;
    pub const IDEMPOTENT_WRITE: u8 = 12;
}

/// Kafka's `Utils.to32BitField`: bit `code` set for each operation.
const fn op_bits(ops: &[u8]) -> i32 {
    let mut bits = 0i32;
    let mut i = 0;
    while i < ops.len() {
        bits |= 1 << ops[i];
        i += 1;
    }
    bits
}

/// Without an authorizer Kafka grants every operation a resource supports; so does Ringtail,
/// which has no ACLs. Topic: READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS,
/// ALTER_CONFIGS.
pub const TOPIC_AUTHORIZED_OPERATIONS: i32 = {
    use acl_op::*;
    op_bits(&[
        READ,
        WRITE,
        CREATE,
        DELETE,
        ALTER,
        DESCRIBE,
        DESCRIBE_CONFIGS,
        ALTER_CONFIGS,
    ])
};
/// Cluster: CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS,
/// IDEMPOTENT_WRITE.
pub const CLUSTER_AUTHORIZED_OPERATIONS: i32 = {
    use acl_op::*;
    op_bits(&[
        CREATE,
        ALTER,
        DESCRIBE,
        CLUSTER_ACTION,
        DESCRIBE_CONFIGS,
        ALTER_CONFIGS,
        IDEMPOTENT_WRITE,
    ])
};
/// Group: READ, DESCRIBE, DELETE.
pub const GROUP_AUTHORIZED_OPERATIONS: i32 = {
    use acl_op::*;
    op_bits(&[READ, DESCRIBE, DELETE])
};
const _: () = assert!(TOPIC_AUTHORIZED_OPERATIONS == 3576);
const _: () = assert!(CLUSTER_AUTHORIZED_OPERATIONS == 8096);
const _: () = assert!(GROUP_AUTHORIZED_OPERATIONS == 328);

pub fn api_versions(table: &ApiVersionTable, _version: i16) -> ApiVersionsResponse {
    let mut resp = ApiVersionsResponse::default();
    for (key, min, max) in table.entries() {
        let mut v = ApiVersion::default();
        v.api_key = *key as i16;
        v.min_version = *min;
        v.max_version = *max;
        resp.api_keys.push(v);
    }
    resp.finalized_features_epoch = -1;
    resp
}

/// Every live (registered, unfenced) broker, as Kafka lists them.
fn broker_entries(meta: &MetaSnapshot) -> Vec<MetadataResponseBroker> {
    meta.live_brokers()
        .map(|info| {
            let mut b = MetadataResponseBroker::default();
            b.node_id = BrokerId(info.id);
            b.host = str_bytes(&info.host);
            b.port = info.port;
            b.rack = info.rack.as_deref().map(str_bytes);
            b
        })
        .collect()
}

/// The active controller's id; -1 while there is none (clients then retry admin requests).
fn controller_id() -> BrokerId {
    BrokerId(crate::cluster::quorum::active_controller())
}

fn topic_entry(meta: &MetaSnapshot, topic: &TopicMeta) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.name = Some(topic_name(&topic.name));
    t.topic_id = topic.id;
    t.is_internal = topic.internal;
    t.topic_authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
    for (index, a) in (0..topic.partitions).zip(&topic.assignments) {
        let mut p = MetadataResponsePartition::default();
        p.partition_index = index;
        p.leader_id = BrokerId(a.leader);
        p.leader_epoch = a.leader_epoch;
        p.replica_nodes = a.replicas.iter().copied().map(BrokerId).collect();
        p.isr_nodes = a.isr.iter().copied().map(BrokerId).collect();
        p.offline_replicas = a
            .replicas
            .iter()
            .copied()
            .filter(|r| meta.live_broker(*r).is_none())
            .map(BrokerId)
            .collect();
        if a.leader < 0 || meta.live_broker(a.leader).is_none() {
            p.error_code = E::LeaderNotAvailable.code();
        }
        t.partitions.push(p);
    }
    t
}

fn error_topic(name: Option<&str>, id: Uuid, code: i16) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.name = name.map(topic_name);
    t.topic_id = id;
    t.error_code = code;
    t.topic_authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
    t
}

pub async fn metadata(shard: &Rc<Shard>, req: MetadataRequest, version: i16) -> MetadataResponse {
    let mut resp = MetadataResponse::default();
    resp.brokers = broker_entries(&shard.meta());
    resp.controller_id = controller_id();
    resp.cluster_authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
    // v8-10 may ask for the cluster's operations (v11 moved that to DescribeCluster).
    if (8..=10).contains(&version) && req.include_cluster_authorized_operations {
        resp.cluster_authorized_operations = CLUSTER_AUTHORIZED_OPERATIONS;
    }
    let topic_ops = version >= 8 && req.include_topic_authorized_operations;
    let mut resp = metadata_topics(shard, req, version, resp).await;
    if topic_ops {
        for t in &mut resp.topics {
            t.topic_authorized_operations = TOPIC_AUTHORIZED_OPERATIONS;
        }
    }
    resp
}

async fn metadata_topics(
    shard: &Rc<Shard>,
    req: MetadataRequest,
    version: i16,
    mut resp: MetadataResponse,
) -> MetadataResponse {
    let mut meta = shard.meta();
    resp.cluster_id = Some(str_bytes(&meta.cluster_id));

    // v0 has no null topic list: an empty list means "all topics" there.
    let requested = match req.topics {
        Some(list) if !(version == 0 && list.is_empty()) => list,
        _ => {
            resp.topics = meta
                .topics
                .values()
                .map(|t| topic_entry(&meta, t))
                .collect();
            return resp;
        }
    };
    // Auto-create missing topics first (v4+ clients say whether they allow it).
    let allow_auto = (version < 4 || req.allow_auto_topic_creation)
        && shard.config.kafka.auto_create_topics_enable();
    // Topics whose auto-creation was refused (e.g. by the partition limit): the refusal's
    // error code is their answer, as Kafka answers a failed auto-creation.
    let mut refused: HashMap<String, i16> = HashMap::new();
    if allow_auto {
        let missing: Vec<NewTopic> = requested
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
            .filter(|n| meta.topic(n).is_none() && validate_topic_name(n).is_ok())
            .map(|name| NewTopic {
                name,
                partitions: -1,
                replication_factor: -1,
                configs: Vec::new(),
                assignment_partitions: None,
            })
            .collect();
        if !missing.is_empty() {
            let names: Vec<String> = missing.iter().map(|t| t.name.clone()).collect();
            let reply = shard
                .call(
                    0,
                    ShardReq::Controller(ControllerReq::CreateTopics {
                        topics: missing,
                        validate_only: false,
                    }),
                )
                .await;
            match expect_controller(reply) {
                ControllerResp::Failed(e) => {
                    tracing::warn!(code = e.code, msg = ?e.message, "auto-creating topics failed");
                }
                ControllerResp::Topics(results) => {
                    for (name, result) in names.into_iter().zip(results) {
                        // A topic created meanwhile by someone else is simply there.
                        match result {
                            Err(e) if e.code != E::TopicAlreadyExists.code() => {
                                refused.insert(name, e.code);
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
            meta = shard.meta();
        }
    }
    for t in requested {
        let entry = match (&t.name, t.topic_id) {
            (Some(name), _) => {
                let name = name.0.to_string();
                match meta.topic(&name) {
                    Some(tm) => topic_entry(&meta, tm),
                    None if validate_topic_name(&name).is_err() => {
                        error_topic(Some(&name), Uuid::nil(), E::InvalidTopicException.code())
                    }
                    None => match refused.get(&name) {
                        Some(&code) => error_topic(Some(&name), Uuid::nil(), code),
                        None => {
                            error_topic(Some(&name), Uuid::nil(), E::UnknownTopicOrPartition.code())
                        }
                    },
                }
            }
            (None, id) => match meta.topic_by_id(&id) {
                Some(tm) => topic_entry(&meta, tm),
                None => error_topic(None, id, E::UnknownTopicId.code()),
            },
        };
        resp.topics.push(entry);
    }
    resp
}

/// FindCoordinator: a group's coordinator is this node once the coordinator of its
/// `__consumer_offsets` partition has loaded (COORDINATOR_LOAD_IN_PROGRESS until then, as in
/// Kafka; COORDINATOR_NOT_AVAILABLE before the offsets topic exists). Like Kafka, the empty
/// group id is a valid key.
pub async fn find_coordinator(
    shard: &Rc<Shard>,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let keys: Vec<&str> = if version >= 4 {
        req.coordinator_keys.iter().map(|k| k.as_str()).collect()
    } else {
        vec![req.key.as_str()]
    };
    let key_type = if version >= 1 {
        req.key_type
    } else {
        KEY_TYPE_GROUP
    };
    let txn = key_type == KEY_TYPE_TRANSACTION;
    if txn {
        super::txn::ensure_txn_state_topic(shard).await;
    }
    // The coordinator is the leader of the key's partition of `__consumer_offsets` (groups)
    // or `__transaction_state` (transactional ids): this node's own coordinators report their
    // load state; other nodes' are named directly.
    let meta = shard.meta();
    let (state_topic, locate): (&str, CoordinatorLocator) = if txn {
        (TRANSACTION_STATE_TOPIC, txn_coordinator_of)
    } else {
        (OFFSETS_TOPIC, coordinator_of)
    };
    let mut remote: HashMap<String, Result<CoordinatorNode, i16>> = HashMap::new();
    let mut local: Vec<&str> = Vec::new();
    for key in &keys {
        let leader = locate(&meta, key).and_then(|(partition, _)| {
            meta.topic(state_topic)
                .and_then(|t| t.assignment(partition))
                .map(|a| a.leader)
        });
        match leader {
            Some(id) if id == meta.node_id => local.push(key),
            Some(id) => {
                let node = meta.live_broker(id).map(|b| CoordinatorNode {
                    node_id: b.id,
                    host: b.host.clone(),
                    port: b.port,
                });
                remote.insert(
                    key.to_string(),
                    node.ok_or(E::CoordinatorNotAvailable.code()),
                );
            }
            None => {
                remote.insert(key.to_string(), Err(E::CoordinatorNotAvailable.code()));
            }
        }
    }
    let statuses = if txn {
        super::txn::coordinator_statuses(shard, &local).await
    } else {
        coordinator_statuses(shard, &local).await
    };
    let node = CoordinatorNode {
        node_id: shard.config.node_id,
        host: shard.config.advertised_host.clone(),
        port: shard.config.advertised_port,
    };
    find_coordinator_response(version, &req, |key_type, key| match key_type {
        KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION => {
            match (statuses.get(key).copied(), remote.get(key)) {
                (Some(0), _) => Ok(node.clone()),
                (Some(code), _) => Err(code),
                (None, Some(answer)) => answer.clone(),
                (None, None) => Err(E::CoordinatorNotAvailable.code()),
            }
        }
        _ => Err(E::CoordinatorNotAvailable.code()),
    })
}

/// Where a coordinator key lives: its partition of the state topic and the owning shard.
type CoordinatorLocator = fn(&MetaSnapshot, &str) -> Option<(i32, usize)>;

/// Per group key: 0 when its coordinator serves requests, else the error code to answer.
async fn coordinator_statuses(shard: &Rc<Shard>, keys: &[&str]) -> HashMap<String, i16> {
    let mut by_owner: BTreeMap<usize, Vec<(String, i32)>> = BTreeMap::new();
    let mut statuses = HashMap::new();
    for key in keys {
        match coordinator_of(&shard.meta(), key) {
            Some((partition, owner)) => by_owner
                .entry(owner)
                .or_default()
                .push((key.to_string(), partition)),
            None => {
                statuses.insert(key.to_string(), E::CoordinatorNotAvailable.code());
            }
        }
    }
    let calls = by_owner.into_iter().map(|(owner, asked)| async move {
        let partitions = asked.iter().map(|(_, p)| *p).collect();
        let reply = shard
            .call(owner, ShardReq::Group(GroupReq::Status { partitions }))
            .await;
        (asked, reply)
    });
    for (asked, reply) in futures::future::join_all(calls).await {
        let codes = match reply {
            ShardResp::Group(GroupResp::Status(codes)) if codes.len() == asked.len() => codes,
            _ => vec![E::CoordinatorNotAvailable.code(); asked.len()],
        };
        for ((key, _), code) in asked.into_iter().zip(codes) {
            statuses.insert(key, code);
        }
    }
    statuses
}

pub fn describe_cluster(
    shard: &Rc<Shard>,
    req: DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    let mut resp = DescribeClusterResponse::default();
    let meta = shard.meta();
    resp.cluster_id = str_bytes(&meta.cluster_id);
    resp.controller_id = controller_id();
    resp.endpoint_type = 1;
    resp.cluster_authorized_operations = if req.include_cluster_authorized_operations {
        CLUSTER_AUTHORIZED_OPERATIONS
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    };
    if req.endpoint_type != 1 {
        resp.error_code = E::UnsupportedEndpointType.code();
        return resp;
    }
    // As Kafka: the live brokers; fenced ones too (marked) when a v2+ request asks for them.
    let include_fenced = version >= 2 && req.include_fenced_brokers;
    for info in meta.brokers.values() {
        if info.fenced && !include_fenced {
            continue;
        }
        let mut b = DescribeClusterBroker::default();
        b.broker_id = BrokerId(info.id);
        b.host = str_bytes(&info.host);
        b.port = info.port;
        b.rack = info.rack.as_deref().map(str_bytes);
        b.is_fenced = version >= 2 && info.fenced;
        resp.brokers.push(b);
    }
    resp
}
