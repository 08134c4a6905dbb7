//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
//! AlterConfigs, IncrementalAlterConfigs (topics, and the dynamic broker configs of the BROKER
//! resource). Changes go to the controller on shard 0.

use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::messages::alter_configs_request::AlterConfigsRequest;
use kafka_protocol::messages::alter_configs_response::{
    AlterConfigsResourceResponse, AlterConfigsResponse,
};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsRequest;
use kafka_protocol::messages::create_partitions_response::{
    CreatePartitionsResponse, CreatePartitionsTopicResult,
};
use kafka_protocol::messages::create_topics_request::CreateTopicsRequest;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult, CreateTopicsResponse,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicsRequest;
use kafka_protocol::messages::delete_topics_response::{
    DeletableTopicResult, DeleteTopicsResponse,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsRequest;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
    DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_request::IncrementalAlterConfigsRequest;
use kafka_protocol::messages::incremental_alter_configs_response::{
    AlterConfigsResourceResponse as IncrementalResourceResponse, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as E;
use uuid::Uuid;

use super::{str_bytes, topic_name};
use crate::cluster::controller::{ConfigChange, ControllerReq, ControllerResp, NewTopic};
use crate::cluster::meta::TopicMeta;
use crate::errors::PartitionError;
use crate::log::topic_config::{AlterOp, DynamicLevel, EffectiveValue};
use crate::shard::{expect_controller, Shard, ShardReq};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

type TopicResults = Vec<Result<Arc<TopicMeta>, PartitionError>>;

/// Run a controller request that answers per topic; a failed call fails every topic.
async fn controller_topics(shard: &Rc<Shard>, req: ControllerReq, n: usize) -> TopicResults {
    match expect_controller(shard.call(0, ShardReq::Controller(req)).await) {
        ControllerResp::Topics(results) if results.len() == n => results,
        ControllerResp::Failed(e) => vec![Err(e); n],
        _ => vec![Err(PartitionError::new(E::UnknownServerError)); n],
    }
}

fn opt_str(s: &Option<String>) -> Option<StrBytes> {
    s.as_deref().map(str_bytes)
}

pub async fn create_topics(
    shard: &Rc<Shard>,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let topics: Vec<NewTopic> = req
        .topics
        .iter()
        .map(|t| NewTopic {
            name: t.name.0.to_string(),
            partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            configs: t
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect(),
            assignment_partitions: (!t.assignments.is_empty())
                .then(|| i32::try_from(t.assignments.len()).unwrap_or(i32::MAX)),
        })
        .collect();
    // Manual assignments may only name this broker.
    let node = shard.config.node_id;
    let bad_assignment: Vec<bool> = req
        .topics
        .iter()
        .map(|t| {
            t.assignments
                .iter()
                .any(|a| a.broker_ids.iter().any(|b| b.0 != node) || a.broker_ids.len() != 1)
                || (!t.assignments.is_empty()
                    && (t.num_partitions != -1 || t.replication_factor != -1))
        })
        .collect();
    let n = topics.len();
    let results = controller_topics(
        shard,
        ControllerReq::CreateTopics {
            topics: topics
                .iter()
                .zip(&bad_assignment)
                .filter(|(_, bad)| !**bad)
                .map(|(t, _)| t.clone())
                .collect(),
            validate_only: req.validate_only,
        },
        n - bad_assignment.iter().filter(|b| **b).count(),
    )
    .await;
    let mut results = results.into_iter();
    let mut resp = CreateTopicsResponse::default();
    for (t, bad) in req.topics.into_iter().zip(bad_assignment) {
        let mut r = CreatableTopicResult::default();
        r.name = t.name;
        r.num_partitions = -1;
        r.replication_factor = -1;
        let result = if bad {
            Err(PartitionError::with_message(
                E::InvalidReplicaAssignment,
                "replica assignments may only name this broker, once per partition, with numPartitions and replicationFactor -1",
            ))
        } else {
            results
                .next()
                .unwrap_or_else(|| Err(PartitionError::new(E::UnknownServerError)))
        };
        match result {
            Ok(topic) => {
                r.topic_id = topic.id;
                r.num_partitions = topic.partitions;
                r.replication_factor = topic
                    .assignments
                    .first()
                    .map_or(1, |a| i16::try_from(a.replicas.len()).unwrap_or(i16::MAX));
                if version >= 5 {
                    let configs = topic
                        .config
                        .describe(None, &shard.meta().broker)
                        .into_iter()
                        .map(|(name, v)| {
                            let mut c = CreatableTopicConfigs::default();
                            c.name = str_bytes(&name);
                            c.value = if v.sensitive {
                                None
                            } else {
                                v.value.as_deref().map(str_bytes)
                            };
                            c.read_only = v.read_only;
                            c.config_source = v.source.code();
                            c.is_sensitive = v.sensitive;
                            c
                        })
                        .collect();
                    r.configs = Some(configs);
                }
            }
            Err(e) => {
                r.error_code = e.code;
                r.error_message = opt_str(&e.message);
                r.topic_id = Uuid::nil();
            }
        }
        resp.topics.push(r);
    }
    resp
}

pub async fn delete_topics(
    shard: &Rc<Shard>,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let meta = shard.meta();
    // v6+ names topics in `topics` (by name or id); older versions in `topic_names`.
    let wanted: Vec<(Option<String>, Uuid)> = if version >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    let mut resolved: Vec<Result<String, PartitionError>> = Vec::new();
    for (name, id) in &wanted {
        resolved.push(match (name, id) {
            (Some(name), id) if id.is_nil() => Ok(name.clone()),
            (None, id) if !id.is_nil() => meta
                .topic_by_id(id)
                .map(|t| t.name.clone())
                .ok_or_else(|| PartitionError::new(E::UnknownTopicId)),
            _ => Err(PartitionError::with_message(
                E::InvalidRequest,
                "a topic must be named by exactly one of name and id",
            )),
        });
    }
    let names: Vec<String> = resolved.iter().filter_map(|r| r.clone().ok()).collect();
    let n = names.len();
    let mut results = controller_topics(shard, ControllerReq::DeleteTopics { names }, n)
        .await
        .into_iter();
    let mut resp = DeleteTopicsResponse::default();
    for ((name, id), r) in wanted.into_iter().zip(resolved) {
        let mut out = DeletableTopicResult::default();
        out.name = name.as_deref().map(topic_name);
        out.topic_id = id;
        let result = match r {
            Ok(_) => results
                .next()
                .unwrap_or_else(|| Err(PartitionError::new(E::UnknownServerError))),
            Err(e) => Err(e),
        };
        match result {
            Ok(topic) => {
                out.name = Some(topic_name(&topic.name));
                out.topic_id = topic.id;
            }
            Err(e) => {
                out.error_code = e.code;
                out.error_message = opt_str(&e.message);
            }
        }
        resp.responses.push(out);
    }
    resp
}

pub async fn create_partitions(
    shard: &Rc<Shard>,
    req: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let topics: Vec<(String, i32)> = req
        .topics
        .iter()
        .map(|t| (t.name.0.to_string(), t.count))
        .collect();
    let n = topics.len();
    let mut results = controller_topics(
        shard,
        ControllerReq::CreatePartitions {
            topics,
            validate_only: req.validate_only,
        },
        n,
    )
    .await
    .into_iter();
    let node = shard.config.node_id;
    let mut resp = CreatePartitionsResponse::default();
    for t in req.topics {
        let mut r = CreatePartitionsTopicResult::default();
        let bad_assignment = t.assignments.as_ref().is_some_and(|a| {
            a.iter()
                .any(|x| x.broker_ids.len() != 1 || x.broker_ids.iter().any(|b| b.0 != node))
        });
        let result = results
            .next()
            .unwrap_or_else(|| Err(PartitionError::new(E::UnknownServerError)));
        r.name = t.name;
        if bad_assignment {
            r.error_code = E::InvalidReplicaAssignment.code();
        } else if let Err(e) = result {
            r.error_code = e.code;
            r.error_message = opt_str(&e.message);
        }
        resp.results.push(r);
    }
    resp
}

fn describe_entry(
    name: &str,
    v: EffectiveValue,
    synonyms: bool,
    docs: bool,
) -> DescribeConfigsResourceResult {
    let mut c = DescribeConfigsResourceResult::default();
    c.name = str_bytes(name);
    c.value = if v.sensitive {
        None
    } else {
        v.value.as_deref().map(str_bytes)
    };
    c.read_only = v.read_only;
    c.config_source = v.source.code();
    c.is_sensitive = v.sensitive;
    c.config_type = v.ty.code();
    if synonyms {
        c.synonyms = v
            .synonyms
            .iter()
            .map(|syn| {
                let mut s = DescribeConfigsSynonym::default();
                s.name = str_bytes(&syn.name);
                s.value = syn.value.as_deref().map(str_bytes);
                s.source = syn.source.code();
                s
            })
            .collect();
    }
    if docs {
        c.documentation = Some(str_bytes(v.doc));
    }
    c
}

pub fn describe_configs(
    shard: &Rc<Shard>,
    req: DescribeConfigsRequest,
    _version: i16,
) -> DescribeConfigsResponse {
    let meta = shard.meta();
    let broker = &*meta.broker;
    let mut resp = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut out = DescribeConfigsResult::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let keys: Option<Vec<String>> = res
            .configuration_keys
            .as_ref()
            .map(|k| k.iter().map(|s| s.to_string()).collect());
        match res.resource_type {
            RESOURCE_TOPIC => match meta.topic(&res.resource_name) {
                Some(topic) => {
                    out.configs = topic
                        .config
                        .describe(keys.as_deref(), broker)
                        .into_iter()
                        .map(|(n, v)| {
                            describe_entry(&n, v, req.include_synonyms, req.include_documentation)
                        })
                        .collect();
                }
                None => {
                    out.error_code = E::UnknownTopicOrPartition.code();
                    out.error_message = Some(str_bytes(&format!(
                        "Topic {} does not exist",
                        res.resource_name.as_str()
                    )));
                }
            },
            RESOURCE_BROKER => {
                let name = res.resource_name.as_str();
                let entries = if name.is_empty() {
                    Some(broker.describe_cluster_default(keys.as_deref()))
                } else if name == shard.config.node_id.to_string() {
                    Some(broker.describe(keys.as_deref()))
                } else {
                    None
                };
                if let Some(entries) = entries {
                    out.configs = entries
                        .into_iter()
                        .map(|(n, v)| {
                            describe_entry(&n, v, req.include_synonyms, req.include_documentation)
                        })
                        .collect();
                } else {
                    out.error_code = E::InvalidRequest.code();
                    out.error_message = Some(str_bytes(&format!(
                        "Unexpected broker id, expected {} or empty string, but received {name}",
                        shard.config.node_id
                    )));
                }
            }
            other => {
                out.error_code = E::InvalidRequest.code();
                out.error_message = Some(str_bytes(&format!("Unsupported resource type {other}")));
            }
        }
        resp.results.push(out);
    }
    resp
}

/// Shared driver of both alter APIs: topic resources and broker resources (dynamic broker
/// configs: "" is the cluster-wide default, this broker's id its own) go to the controller.
async fn alter_resources(
    shard: &Rc<Shard>,
    resources: Vec<(i8, StrBytes, ConfigChange)>,
    validate_only: bool,
) -> Vec<(i8, StrBytes, Result<(), PartitionError>)> {
    let node = shard.config.node_id.to_string();
    let broker_level = |name: &str| {
        if name.is_empty() {
            Ok(DynamicLevel::ClusterDefault)
        } else if name == node {
            Ok(DynamicLevel::ThisBroker)
        } else {
            Err(PartitionError::with_message(
                E::InvalidRequest,
                format!(
                    "Unexpected broker id, expected {node} or empty string, but received {name}"
                ),
            ))
        }
    };
    let changes: Vec<(String, ConfigChange)> = resources
        .iter()
        .filter(|(ty, _, _)| *ty == RESOURCE_TOPIC)
        .map(|(_, name, change)| (name.to_string(), change.clone()))
        .collect();
    let broker_changes: Vec<(DynamicLevel, ConfigChange)> = resources
        .iter()
        .filter(|(ty, _, _)| *ty == RESOURCE_BROKER)
        .filter_map(|(_, name, change)| Some((broker_level(name).ok()?, change.clone())))
        .collect();
    let n = changes.len();
    let mut results = if n == 0 {
        Vec::new().into_iter()
    } else {
        controller_topics(
            shard,
            ControllerReq::AlterConfigs {
                changes,
                validate_only,
            },
            n,
        )
        .await
        .into_iter()
    };
    let nb = broker_changes.len();
    let mut broker_results = if nb == 0 {
        Vec::new().into_iter()
    } else {
        let req = ControllerReq::AlterBrokerConfigs {
            changes: broker_changes,
            validate_only,
        };
        match expect_controller(shard.call(0, ShardReq::Controller(req)).await) {
            ControllerResp::Configs(r) if r.len() == nb => r,
            ControllerResp::Failed(e) => vec![Err(e); nb],
            _ => vec![Err(PartitionError::new(E::UnknownServerError)); nb],
        }
        .into_iter()
    };
    resources
        .into_iter()
        .map(|(ty, name, _)| {
            let result = match ty {
                RESOURCE_TOPIC => results
                    .next()
                    .unwrap_or_else(|| Err(PartitionError::new(E::UnknownServerError)))
                    .map(|_| ()),
                RESOURCE_BROKER => broker_level(&name).and_then(|_| {
                    broker_results
                        .next()
                        .unwrap_or_else(|| Err(PartitionError::new(E::UnknownServerError)))
                }),
                other => Err(PartitionError::with_message(
                    E::InvalidRequest,
                    format!("Unsupported resource type {other}"),
                )),
            };
            (ty, name, result)
        })
        .collect()
}

pub async fn alter_configs(
    shard: &Rc<Shard>,
    req: AlterConfigsRequest,
    _version: i16,
) -> AlterConfigsResponse {
    let resources = req
        .resources
        .into_iter()
        .map(|r| {
            let pairs = r
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect();
            (
                r.resource_type,
                r.resource_name,
                ConfigChange::Replace(pairs),
            )
        })
        .collect();
    let mut resp = AlterConfigsResponse::default();
    for (ty, name, result) in alter_resources(shard, resources, req.validate_only).await {
        let mut r = AlterConfigsResourceResponse::default();
        r.resource_type = ty;
        r.resource_name = name;
        if let Err(e) = result {
            r.error_code = e.code;
            r.error_message = opt_str(&e.message);
        }
        resp.responses.push(r);
    }
    resp
}

pub async fn incremental_alter_configs(
    shard: &Rc<Shard>,
    req: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    let mut invalid_op = Vec::new();
    let resources = req
        .resources
        .into_iter()
        .map(|r| {
            let mut ops = Vec::new();
            let mut bad = false;
            for c in &r.configs {
                match AlterOp::from_code(c.config_operation) {
                    Some(op) => ops.push((
                        c.name.to_string(),
                        op,
                        c.value.as_ref().map(|v| v.to_string()),
                    )),
                    None => bad = true,
                }
            }
            invalid_op.push(bad);
            (
                r.resource_type,
                r.resource_name,
                ConfigChange::Incremental(ops),
            )
        })
        .collect::<Vec<_>>();
    // A resource with an unknown operation code fails alone, as in Kafka.
    let (good, bad): (Vec<_>, Vec<_>) = resources
        .into_iter()
        .zip(invalid_op)
        .partition(|(_, bad)| !*bad);
    let mut done = alter_resources(
        shard,
        good.into_iter().map(|(r, _)| r).collect(),
        req.validate_only,
    )
    .await;
    for ((ty, name, _), _) in bad {
        done.push((
            ty,
            name,
            Err(PartitionError::with_message(
                E::InvalidRequest,
                "unknown config operation",
            )),
        ));
    }
    let mut resp = IncrementalAlterConfigsResponse::default();
    for (ty, name, result) in done {
        let mut r = IncrementalResourceResponse::default();
        r.resource_type = ty;
        r.resource_name = name;
        if let Err(e) = result {
            r.error_code = e.code;
            r.error_message = opt_str(&e.message);
        }
        resp.responses.push(r);
    }
    resp
}
