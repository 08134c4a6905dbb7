//! The metadata controller: the single writer of cluster metadata. Lives on shard 0.
//!
//! Every change (create/delete topics, add partitions, alter topic or dynamic broker configs)
//! runs one at a time:
//! build the next snapshot, persist it, publish it to every shard (each opens or deletes the
//! partitions it owns), then answer. A client therefore sees its topic usable on every shard
//! as soon as CreateTopics returns. A change that would make a shard own more partition
//! replicas than the limit (`limits`) is refused before anything is persisted.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::ResponseError as E;
use tracing::{info, warn};
use uuid::Uuid;

use crate::cluster::limits;
use crate::cluster::meta::{
    validate_topic_name, MetaSnapshot, MetaStore, TopicMeta, PARTITIONS_PER_TOPIC_MAX,
};
use crate::errors::PartitionError;
use crate::log::producer_state::ProducerIdAllocator;
use crate::log::topic_config::{
    apply_dynamic_ops, AlterOp, ConfigError, DynamicLevel, TopicConfig,
};
use crate::shard::{Shard, ShardReq};

#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    /// -1: the broker default (`num.partitions`).
    pub partitions: i32,
    /// -1: the broker default; anything above the number of brokers (1) is refused.
    pub replication_factor: i16,
    pub configs: Vec<(String, Option<String>)>,
    /// Manual replica assignment: the partition count is the number of entries.
    pub assignment_partitions: Option<i32>,
}

#[derive(Debug, Clone)]
pub enum ConfigChange {
    /// AlterConfigs: the new complete set of overrides.
    Replace(Vec<(String, Option<String>)>),
    /// IncrementalAlterConfigs.
    Incremental(Vec<(String, AlterOp, Option<String>)>),
}

#[derive(Debug)]
pub enum ControllerReq {
    CreateTopics {
        topics: Vec<NewTopic>,
        validate_only: bool,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    CreatePartitions {
        topics: Vec<(String, i32)>,
        validate_only: bool,
    },
    AlterConfigs {
        changes: Vec<(String, ConfigChange)>,
        validate_only: bool,
    },
    /// Dynamic broker configs: one change per BROKER resource, at its level.
    AlterBrokerConfigs {
        changes: Vec<(DynamicLevel, ConfigChange)>,
        validate_only: bool,
    },
    AllocateProducerId,
}

#[derive(Debug)]
pub enum ControllerResp {
    /// One result per requested topic, in request order.
    Topics(Vec<Result<Arc<TopicMeta>, PartitionError>>),
    ProducerId(Result<i64, PartitionError>),
    /// One result per requested resource, in request order.
    Configs(Vec<Result<(), PartitionError>>),
    NotController,
    Failed(PartitionError),
}

pub struct Controller {
    store: MetaStore,
    lock: glommio::sync::Semaphore,
    producer_ids: RefCell<ProducerIdAllocator>,
    /// Changes refused by the partition limit so far (logged at powers of two: a client that
    /// retries auto-creation must not flood the log).
    limit_refusals: Cell<u64>,
}

impl Controller {
    pub fn new(store: MetaStore, producer_ids: ProducerIdAllocator) -> Controller {
        Controller {
            store,
            lock: glommio::sync::Semaphore::new(1),
            producer_ids: RefCell::new(producer_ids),
            limit_refusals: Cell::new(0),
        }
    }

    /// The partition limit refused a change: an INVALID_PARTITIONS answer (what Redpanda
    /// answers for its per-shard limit) and, now and then, a log line.
    fn refuse_over_limit(&self, message: String) -> PartitionError {
        let n = self.limit_refusals.get() + 1;
        self.limit_refusals.set(n);
        if n.is_power_of_two() {
            warn!(refused_so_far = n, "{message}");
        }
        PartitionError::with_message(E::InvalidPartitions, message)
    }

    pub async fn handle(&self, shard: &Rc<Shard>, req: ControllerReq) -> ControllerResp {
        if self.lock.acquire(1).await.is_err() {
            return ControllerResp::Failed(PartitionError::new(E::UnknownServerError));
        }
        let _release = crate::shard::scopeguard(|| self.lock.signal(1));
        match req {
            ControllerReq::AllocateProducerId => {
                let id = self.producer_ids.borrow_mut().allocate();
                ControllerResp::ProducerId(id.map_err(|e| {
                    warn!(error = %e, "producer id allocation failed");
                    PartitionError::with_message(E::UnknownServerError, e.to_string())
                }))
            }
            ControllerReq::CreateTopics {
                topics,
                validate_only,
            } => self.create_topics(shard, topics, validate_only).await,
            ControllerReq::DeleteTopics { names } => self.delete_topics(shard, names).await,
            ControllerReq::CreatePartitions {
                topics,
                validate_only,
            } => self.create_partitions(shard, topics, validate_only).await,
            ControllerReq::AlterConfigs {
                changes,
                validate_only,
            } => self.alter_configs(shard, changes, validate_only).await,
            ControllerReq::AlterBrokerConfigs {
                changes,
                validate_only,
            } => {
                self.alter_broker_configs(shard, changes, validate_only)
                    .await
            }
        }
    }

    async fn create_topics(
        &self,
        shard: &Rc<Shard>,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> ControllerResp {
        let current = shard.meta();
        // The effective broker settings, dynamic configs included.
        let broker = &*current.broker;
        let limit = &shard.config.partition_limit;
        let mut owned = limits::owned_per_shard(
            current
                .topics
                .values()
                .map(|t| (t.name.as_str(), t.partitions)),
            current.shards,
        );
        let mut next = current.topics.clone();
        let mut results = Vec::with_capacity(topics.len());
        let mut seen = std::collections::HashSet::new();
        for t in topics {
            let result = (|| {
                validate_topic_name(&t.name)
                    .map_err(|m| PartitionError::with_message(E::InvalidTopicException, m))?;
                if !seen.insert(t.name.clone()) {
                    return Err(PartitionError::with_message(
                        E::InvalidRequest,
                        format!("Create topics request from client contains multiple entries for topic {}", t.name),
                    ));
                }
                if next.contains_key(&t.name) {
                    return Err(PartitionError::with_message(
                        E::TopicAlreadyExists,
                        format!("Topic '{}' already exists.", t.name),
                    ));
                }
                let partitions = match (t.assignment_partitions, t.partitions) {
                    (Some(n), _) => n,
                    (None, -1) => broker.num_partitions(),
                    (None, n) => n,
                };
                if partitions <= 0 || partitions > PARTITIONS_PER_TOPIC_MAX {
                    return Err(PartitionError::with_message(
                        E::InvalidPartitions,
                        format!("Number of partitions must be between 1 and {PARTITIONS_PER_TOPIC_MAX}, got {partitions}."),
                    ));
                }
                let rf = if t.replication_factor == -1 {
                    broker.default_replication_factor()
                } else {
                    t.replication_factor
                };
                if rf <= 0 {
                    return Err(PartitionError::with_message(
                        E::InvalidReplicationFactor,
                        "Replication factor must be larger than 0.",
                    ));
                }
                if rf > 1 {
                    return Err(PartitionError::with_message(
                        E::InvalidReplicationFactor,
                        format!("Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only 1 broker(s) are registered."),
                    ));
                }
                let config = TopicConfig::for_create(t.configs.clone(), broker)?;
                let internal = crate::cluster::meta::is_internal_topic(&t.name);
                if let Err(message) = limit.check(&mut owned, &t.name, 0, partitions) {
                    if !internal {
                        return Err(self.refuse_over_limit(message));
                    }
                    // The broker cannot work without its internal topics: created anyway.
                    warn!("{message} Creating the internal topic anyway.");
                    limits::add_partitions(&mut owned, &t.name, 0, partitions);
                }
                let topic = Arc::new(TopicMeta {
                    name: t.name.clone(),
                    id: Uuid::new_v4(),
                    partitions,
                    configs: config.to_map(),
                    internal,
                    config,
                });
                Ok(topic)
            })();
            if let Ok(topic) = &result {
                next.insert(topic.name.clone(), topic.clone());
            }
            results.push(result);
        }
        if validate_only || results.iter().all(|r| r.is_err()) {
            return ControllerResp::Topics(results);
        }
        if let Err(e) = self.publish(shard, current.with_topics(next)).await {
            return ControllerResp::Failed(e);
        }
        for topic in results.iter().flatten() {
            info!(topic = %topic.name, partitions = topic.partitions, "created topic");
        }
        ControllerResp::Topics(results)
    }

    async fn delete_topics(&self, shard: &Rc<Shard>, names: Vec<String>) -> ControllerResp {
        let current = shard.meta();
        let mut next = current.topics.clone();
        let results: Vec<_> = names
            .iter()
            .map(|name| {
                if crate::cluster::meta::is_internal_topic(name) && next.contains_key(name) {
                    // Deleting it would drop every group's committed offsets.
                    return Err(PartitionError::with_message(
                        E::InvalidRequest,
                        format!("Deleting the internal topic {name} is not allowed."),
                    ));
                }
                next.remove(name).ok_or_else(|| {
                    PartitionError::with_message(
                        E::UnknownTopicOrPartition,
                        "This server does not host this topic-partition.",
                    )
                })
            })
            .collect();
        if results.iter().any(|r| r.is_ok()) {
            if let Err(e) = self.publish(shard, current.with_topics(next)).await {
                return ControllerResp::Failed(e);
            }
            for topic in results.iter().flatten() {
                info!(topic = %topic.name, "deleted topic");
            }
        }
        ControllerResp::Topics(results)
    }

    async fn create_partitions(
        &self,
        shard: &Rc<Shard>,
        topics: Vec<(String, i32)>,
        validate_only: bool,
    ) -> ControllerResp {
        let current = shard.meta();
        let limit = &shard.config.partition_limit;
        let mut owned = limits::owned_per_shard(
            current
                .topics
                .values()
                .map(|t| (t.name.as_str(), t.partitions)),
            current.shards,
        );
        self.change_topics(shard, topics, validate_only, |t, count| {
            if count <= t.partitions {
                return Err(PartitionError::with_message(
                    E::InvalidPartitions,
                    format!(
                        "Topic currently has {} partitions, which is higher than the requested {count}.",
                        t.partitions
                    ),
                ));
            }
            if count > PARTITIONS_PER_TOPIC_MAX {
                return Err(PartitionError::with_message(
                    E::InvalidPartitions,
                    format!("Number of partitions must be at most {PARTITIONS_PER_TOPIC_MAX}."),
                ));
            }
            limit
                .check(&mut owned, &t.name, t.partitions, count)
                .map_err(|message| self.refuse_over_limit(message))?;
            let mut grown = t.clone();
            grown.partitions = count;
            Ok(grown)
        })
        .await
    }

    async fn alter_configs(
        &self,
        shard: &Rc<Shard>,
        changes: Vec<(String, ConfigChange)>,
        validate_only: bool,
    ) -> ControllerResp {
        let broker = shard.meta().broker.clone();
        self.change_topics(shard, changes, validate_only, |t, change| {
            let config = match change {
                ConfigChange::Replace(pairs) => TopicConfig::validate_and_build(pairs, &broker),
                ConfigChange::Incremental(ops) => t.config.incremental(&ops, &broker),
            }?;
            let mut altered = t.clone();
            altered.configs = config.to_map();
            altered.config = config;
            Ok(altered)
        })
        .await
    }

    /// Dynamic broker configs (Kafka's `DynamicBrokerConfig`): each resource's change is
    /// validated on top of the ones before it; then the new settings are persisted and
    /// published with every topic's config re-resolved against them, so a new default (e.g.
    /// `log.retention.ms`) applies at once to the topics that do not override it.
    async fn alter_broker_configs(
        &self,
        shard: &Rc<Shard>,
        changes: Vec<(DynamicLevel, ConfigChange)>,
        validate_only: bool,
    ) -> ControllerResp {
        let current = shard.meta();
        let statics = current.broker.statics_only();
        let mut broker = (*current.broker).clone();
        let mut results = Vec::with_capacity(changes.len());
        for (level, change) in changes {
            let result = (|| {
                let level_map = broker.dynamic_map(level);
                let next_map = match change {
                    ConfigChange::Replace(pairs) => {
                        let ops: Vec<_> = pairs
                            .into_iter()
                            .map(|(name, value)| (name, AlterOp::Set, value))
                            .collect();
                        apply_dynamic_ops(&BTreeMap::new(), &ops, &broker)?
                    }
                    ConfigChange::Incremental(ops) => apply_dynamic_ops(&level_map, &ops, &broker)?,
                };
                let (default, this) = match level {
                    DynamicLevel::ClusterDefault => {
                        (next_map, broker.dynamic_map(DynamicLevel::ThisBroker))
                    }
                    DynamicLevel::ThisBroker => {
                        (broker.dynamic_map(DynamicLevel::ClusterDefault), next_map)
                    }
                };
                statics.with_dynamic(&default, &this)
            })();
            // KAFKA-13609: Kafka answers every rejected broker config change with
            // INVALID_REQUEST (its ConfigAdminManager wraps the ConfigException).
            results.push(match result {
                Ok(next) => {
                    broker = next;
                    Ok(())
                }
                Err(e) => Err(PartitionError::with_message(
                    E::InvalidRequest,
                    e.to_string(),
                )),
            });
        }
        if validate_only || broker == *current.broker {
            return ControllerResp::Configs(results);
        }
        let mut topics = current.topics.clone();
        for topic in topics.values_mut() {
            let config = match TopicConfig::from_map(topic.configs.clone(), &broker) {
                Ok(c) => c,
                Err(e) => return ControllerResp::Failed(broker_change_failed(&topic.name, &e)),
            };
            if config != topic.config {
                let mut t = (**topic).clone();
                t.config = config;
                *topic = Arc::new(t);
            }
        }
        if let Err(e) = self
            .publish(shard, current.with_broker(broker, topics))
            .await
        {
            return ControllerResp::Failed(e);
        }
        info!("dynamic broker configs changed");
        ControllerResp::Configs(results)
    }

    /// Apply `change` to each named existing topic (later entries see earlier changes), then
    /// publish once if anything changed and this is not a dry run. One result per entry.
    async fn change_topics<T>(
        &self,
        shard: &Rc<Shard>,
        items: Vec<(String, T)>,
        validate_only: bool,
        mut change: impl FnMut(&TopicMeta, T) -> Result<TopicMeta, PartitionError>,
    ) -> ControllerResp {
        let current = shard.meta();
        let mut next: BTreeMap<String, Arc<TopicMeta>> = current.topics.clone();
        let mut results = Vec::with_capacity(items.len());
        for (name, item) in items {
            let result = match next.get(&name) {
                None => Err(PartitionError::with_message(
                    E::UnknownTopicOrPartition,
                    format!("The topic '{name}' does not exist."),
                )),
                Some(t) => change(t, item).map(Arc::new),
            };
            if let Ok(t) = &result {
                next.insert(name, t.clone());
            }
            results.push(result);
        }
        if !validate_only && results.iter().any(|r| r.is_ok()) {
            if let Err(e) = self.publish(shard, current.with_topics(next)).await {
                return ControllerResp::Failed(e);
            }
        }
        ControllerResp::Topics(results)
    }

    /// Persist, then make every shard adopt the snapshot before returning.
    async fn publish(
        &self,
        shard: &Rc<Shard>,
        snapshot: MetaSnapshot,
    ) -> Result<(), PartitionError> {
        self.store.save(&snapshot).map_err(|e| {
            warn!(error = %e, "persisting metadata failed");
            PartitionError::with_message(E::KafkaStorageError, format!("persisting metadata: {e}"))
        })?;
        let snapshot = Arc::new(snapshot);
        // Two phases: no shard routes to a new partition before its owner has opened it.
        let opens = (0..shard.shards())
            .map(|target| shard.call(target, ShardReq::OpenPartitions(snapshot.clone())));
        futures::future::join_all(opens).await;
        let applies = (0..shard.shards())
            .map(|target| shard.call(target, ShardReq::ApplyMeta(snapshot.clone())));
        futures::future::join_all(applies).await;
        Ok(())
    }
}

/// A stored topic config that no longer resolves (cannot happen for validated overrides).
fn broker_change_failed(topic: &str, e: &ConfigError) -> PartitionError {
    warn!(topic, error = %e, "re-resolving a topic config failed");
    PartitionError::with_message(E::InvalidRequest, format!("topic {topic}: {e}"))
}
