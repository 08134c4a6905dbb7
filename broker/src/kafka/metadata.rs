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
use crate::cluster::meta::{validate_topic_name, TopicMeta};
use crate::coordinator::group::find_coordinator::{
    find_coordinator_response, CoordinatorNode, KEY_TYPE_GROUP, KEY_TYPE_TRANSACTION,
};
use crate::coordinator::{coordinator_of, GroupReq, GroupResp};
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

fn broker_entry(shard: &Shard) -> MetadataResponseBroker {
    let mut b = MetadataResponseBroker::default();
    b.node_id = BrokerId(shard.config.node_id);
    b.host = str_bytes(&shard.config.advertised_host);
    b.port = shard.config.advertised_port;
    b
}

fn topic_entry(shard: &Shard, topic: &TopicMeta) -> MetadataResponseTopic {
    let node = BrokerId(shard.config.node_id);
    let mut t = MetadataResponseTopic::default();
    t.name = Some(topic_name(&topic.name));
    t.topic_id = topic.id;
    t.is_internal = topic.internal;
    t.topic_authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
    for index in 0..topic.partitions {
        let mut p = MetadataResponsePartition::default();
        p.partition_index = index;
        p.leader_id = node;
        p.leader_epoch = 0;
        p.replica_nodes = vec![node];
        p.isr_nodes = vec![node];
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
    resp.brokers.push(broker_entry(shard));
    resp.controller_id = BrokerId(shard.config.node_id);
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
                .map(|t| topic_entry(shard, t))
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
                    Some(tm) => topic_entry(shard, tm),
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
                Some(tm) => topic_entry(shard, tm),
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
    let statuses = if key_type == KEY_TYPE_TRANSACTION {
        super::txn::coordinator_statuses(shard, &keys).await
    } else {
        coordinator_statuses(shard, &keys).await
    };
    let node = CoordinatorNode {
        node_id: shard.config.node_id,
        host: shard.config.advertised_host.clone(),
        port: shard.config.advertised_port,
    };
    find_coordinator_response(version, &req, |key_type, key| match key_type {
        KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION => match statuses.get(key).copied() {
            Some(0) => Ok(node.clone()),
            Some(code) => Err(code),
            None => Err(E::CoordinatorNotAvailable.code()),
        },
        _ => Err(E::CoordinatorNotAvailable.code()),
    })
}

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
    _version: i16,
) -> DescribeClusterResponse {
    let mut resp = DescribeClusterResponse::default();
    resp.cluster_id = str_bytes(&shard.meta().cluster_id);
    resp.controller_id = BrokerId(shard.config.node_id);
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
    let mut b = DescribeClusterBroker::default();
    b.broker_id = BrokerId(shard.config.node_id);
    b.host = str_bytes(&shard.config.advertised_host);
    b.port = shard.config.advertised_port;
    resp.brokers.push(b);
    resp
}
