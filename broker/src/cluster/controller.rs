//! The metadata controller's decisions: an I/O-free state machine.
//!
//! Owns: what a metadata request does to the image. Given the current image (the last durable
//! [`MetaSnapshot`]) and a [`ControllerReq`], [`Controller::decide`] yields a [`Decision`]: the
//! response and, if anything changed, the next image to persist and publish. It validates
//! CreateTopics / DeleteTopics / CreatePartitions / AlterConfigs (topics, and dynamic broker
//! configs, which re-resolve every topic's config) and hands out producer ids
//! from blocks reserved in the image. [`Decision::settle`] turns what the shards acknowledged
//! for a published image ([`PublishReport`]) into the final answer.
//!
//! It does no I/O, awaits nothing and knows nothing of shards or executors: the controller
//! shell (`crate::shard::controller_shell`, on shard 0) drives it — serialises requests,
//! persists `Decision::publish`, calls [`Controller::commit`] once it is durable, publishes it
//! to every shard, and answers with `Decision::settle`. Tests here run it without executors.
//!
//! A change that would make a shard own more partition replicas than the limit
//! ([`crate::cluster::limits`]) is refused before anything is persisted.
//!
//! Refusals are [`ControllerError`]s, whose `Display` is the message clients get; their Kafka
//! codes are chosen in `crate::errors` only (this module names none), and the responses carry
//! them as `PartitionError::from(ControllerError)`.
//!
//! Invariants: a decision never changes the image it was given; a new image has
//! `version + 1`; a validate-only request or one where every entry fails changes nothing;
//! a producer id is handed out only from a block whose end is durable in the image
//! (`producer_ids_reserved_end`), so ids never repeat across restarts, at the cost of
//! skipping the unused rest of a block after a restart.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use uuid::Uuid;

use crate::cluster::limits;
use crate::cluster::meta::{
    validate_topic_name, MetaSnapshot, PartitionAssignment, TopicMeta, PARTITIONS_PER_TOPIC_MAX,
};
use crate::errors::PartitionError;
use crate::log::producer_state::{ProducerIdBlock, PRODUCER_ID_BLOCK_SIZE};
use crate::log::topic_config::{
    apply_dynamic_ops, AlterOp, ConfigError, DynamicLevel, TopicConfig,
};

/// Why the controller refused (part of) a request. Its `Display` is the message sent to the
/// client; the Kafka code for each variant is chosen in `crate::errors` (`KafkaCode`), and
/// `PartitionError::from` turns it into the answer `ControllerResp` carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControllerError {
    /// Some shard did not acknowledge the published image (the change is stored).
    #[error("shard(s) {shards:?} did not acknowledge metadata version {version}; the change is stored and reaches them with the next one")]
    NotAcknowledged { shards: Vec<usize>, version: u64 },
    /// A created or grown topic has partitions that could not be opened (they stay offline).
    #[error("partition(s) {partitions:?} of topic {topic} could not be opened")]
    PartitionsNotOpened { topic: String, partitions: Vec<i32> },
    /// The change would make a shard own more partition replicas than the limit.
    #[error("{0}")]
    OverPartitionLimit(String),
    #[error("producer id space exhausted")]
    ProducerIdsExhausted,
    /// The topic name is not legal (the reason, from `validate_topic_name`).
    #[error("{0}")]
    InvalidTopicName(String),
    #[error("Create topics request from client contains multiple entries for topic {0}")]
    DuplicateTopic(String),
    #[error("Topic '{0}' already exists.")]
    TopicAlreadyExists(String),
    #[error("Number of partitions must be between 1 and {max}, got {0}.", max = PARTITIONS_PER_TOPIC_MAX)]
    PartitionCountOutOfRange(i32),
    #[error("Replication factor must be larger than 0.")]
    ReplicationFactorNotPositive,
    /// More replicas than live brokers.
    #[error("Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {live} broker(s) are registered.")]
    ReplicationFactorTooLarge { rf: i16, live: usize },
    /// No live broker to place a partition on.
    #[error("No live broker to place the partitions on.")]
    NoLiveBrokers,
    #[error("Deleting the internal topic {0} is not allowed.")]
    InternalTopicDeletion(String),
    /// DeleteTopics of a topic that does not exist.
    #[error("This server does not host this topic-partition.")]
    TopicNotHosted,
    /// CreatePartitions that would not grow the topic.
    #[error(
        "Topic currently has {current} partitions, which is higher than the requested {requested}."
    )]
    PartitionCountNotIncreased { current: i32, requested: i32 },
    #[error("Number of partitions must be at most {max}.", max = PARTITIONS_PER_TOPIC_MAX)]
    PartitionCountAboveMax,
    /// A dynamic broker config change was rejected (KAFKA-13609: Kafka answers every one
    /// with INVALID_REQUEST).
    #[error("{0}")]
    BrokerConfigRejected(ConfigError),
    /// A stored topic config no longer resolves under new broker configs.
    #[error("topic {topic}: {error}")]
    TopicConfigUnresolvable { topic: String, error: ConfigError },
    /// CreatePartitions / AlterConfigs of a topic that does not exist.
    #[error("The topic '{0}' does not exist.")]
    UnknownTopic(String),
    /// AlterPartition from a broker that does not lead at that epoch.
    #[error("broker {broker} does not lead {topic}-{partition} at leader epoch {leader_epoch} (the leader is {leader} at epoch {current_epoch})")]
    NotLeaderAtEpoch {
        topic: String,
        partition: i32,
        broker: i32,
        leader_epoch: i32,
        leader: i32,
        current_epoch: i32,
    },
    /// AlterPartition decided on an older version of the partition.
    #[error("partition epoch {got} of {topic}-{partition} is stale (now {current})")]
    StalePartitionEpoch {
        topic: String,
        partition: i32,
        got: i32,
        current: i32,
    },
    /// AlterPartitionReassignments: a bad target replica list.
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// AlterPartitionReassignments: cancelling where nothing is being reassigned.
    #[error("No ongoing reassignment for this partition.")]
    NoReassignmentInProgress,
    /// ElectLeaders: the partition already has the leader asked for.
    #[error("Leader election not needed for topic partition.")]
    ElectionNotNeeded,
    /// ElectLeaders (preferred): the preferred replica is not live or not in sync.
    #[error("The preferred leader was not available.")]
    PreferredLeaderNotAvailable,
    /// ElectLeaders (unclean): no live replica.
    #[error("Eligible topic partition leaders are not available.")]
    EligibleLeadersNotAvailable,
    /// The proposed ISR names a replica that may not join it.
    #[error("the new ISR {isr:?} of {topic}-{partition} is not valid: {why}")]
    IneligibleIsr {
        topic: String,
        partition: i32,
        isr: Vec<i32>,
        why: String,
    },
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum ConfigChange {
    /// AlterConfigs: the new complete set of overrides.
    Replace(Vec<(String, Option<String>)>),
    /// IncrementalAlterConfigs.
    Incremental(Vec<(String, AlterOp, Option<String>)>),
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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
    /// A partition leader asks to change the ISR (Kafka's AlterPartition, KIP-497): refused
    /// when `broker` no longer leads at `leader_epoch`, or the partition changed since
    /// `partition_epoch` (a stale leader's change), or a new member is fenced (KIP-841).
    AlterPartition {
        topic: String,
        partition: i32,
        broker: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    },
    /// ElectLeaders: `unclean` false elects each partition's preferred replica (the first
    /// of its replicas) when it is live and in sync; true elects any live replica of a
    /// partition without a leader. `None`: every partition.
    ElectLeaders {
        unclean: bool,
        partitions: Option<Vec<(String, i32)>>,
    },
    /// AlterPartitionReassignments (KIP-455): per partition the target replicas, or `None`
    /// to cancel an ongoing reassignment.
    AlterReassignments {
        changes: Vec<(String, i32, Option<Vec<i32>>)>,
    },
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum ControllerResp {
    /// To ElectLeaders: one result per partition asked for (or changed, when all were).
    Elected(Vec<(String, i32, Result<(), PartitionError>)>),
    /// To AlterReassignments: one result per change, in request order.
    Reassigned(Vec<Result<(), PartitionError>>),
    /// To AlterPartition.
    Altered(Result<(), PartitionError>),
    /// One result per requested topic, in request order.
    Topics(Vec<Result<Arc<TopicMeta>, PartitionError>>),
    ProducerId(Result<i64, PartitionError>),
    /// One result per requested resource, in request order.
    Configs(Vec<Result<(), PartitionError>>),
    NotController,
    Failed(PartitionError),
}

/// What the controller decides with besides the image. The broker's Kafka settings
/// (`num.partitions`, topic config defaults, dynamic broker configs) are part of the image
/// ([`MetaSnapshot::broker`]).
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Partition replicas a shard may own (from `BrokerConfig::partition_limit`).
    pub partition_limit: limits::PartitionLimit,
    /// Producer ids reserved (and persisted) at a time, so InitProducerId persists once per
    /// block rather than once per id.
    pub producer_id_block_size: i64,
}

impl ControllerConfig {
    pub fn new(partition_limit: limits::PartitionLimit) -> ControllerConfig {
        ControllerConfig {
            partition_limit,
            producer_id_block_size: PRODUCER_ID_BLOCK_SIZE,
        }
    }
}

/// The controller's state besides the image: the producer-id block it hands ids out of.
#[derive(Debug)]
pub struct Controller {
    config: ControllerConfig,
    /// Within `[.., image.producer_ids_reserved_end)`; `None` until the first allocation of
    /// this run (a restart skips the rest of the last block).
    producer_ids: Option<ProducerIdBlock>,
    /// Changes refused by the partition limit so far (logged at powers of two: a client that
    /// retries auto-creation must not flood the log).
    limit_refusals: Cell<u64>,
}

/// The outcome of one request, before any I/O.
#[derive(Debug)]
#[must_use]
pub struct Decision {
    /// The answer if `publish` is `None`; otherwise the answer once `publish` is durable and
    /// every shard acknowledged it (see [`Decision::settle`]).
    pub response: ControllerResp,
    /// The next image (version + 1), to persist and then publish to every shard.
    pub publish: Option<MetaSnapshot>,
    /// What kind of request this decided (for the answer's checks and the log).
    pub kind: RequestKind,
    /// The producer-id block to continue from, adopted by [`Controller::commit`].
    producer_ids: Option<ProducerIdBlock>,
}

/// The kinds of [`ControllerReq`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RequestKind {
    CreateTopics,
    DeleteTopics,
    CreatePartitions,
    AlterConfigs,
    AlterBrokerConfigs,
    AllocateProducerId,
    AlterPartition,
    ElectLeaders,
    AlterReassignments,
}

impl RequestKind {
    /// Whether the answer depends on the owners opening the image's new partitions.
    pub fn opens_partitions(self) -> bool {
        matches!(
            self,
            RequestKind::CreateTopics | RequestKind::CreatePartitions
        )
    }
}

/// One shard's acknowledgement of an image ([`crate::cluster::meta::MetaSnapshot`] version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaAck {
    /// The image version the shard holds (or prepared) after handling the message; below the
    /// published version means it did not take it.
    pub version: u64,
    /// Partitions of the image this shard owns but could not open (they stay offline).
    pub unopened: Vec<(String, i32)>,
}

/// What publishing one image to every shard came to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PublishReport {
    /// The published image's version.
    pub version: u64,
    /// Shards that did not acknowledge a phase: unreachable, too slow, or still on an older
    /// image. They get the image with the next publication (every image is complete).
    pub unacknowledged: Vec<usize>,
    /// Partitions whose owner could not open them.
    pub unopened: Vec<(String, i32)>,
}

impl PublishReport {
    /// Gathers the answers of both phases to publishing image `version`: per shard, its
    /// acknowledgement, or `None` if it gave none. The partitions that count as unopened are
    /// those the commit phase reports (the owner's state once it adopted the image).
    pub fn from_acks(
        version: u64,
        open_phase: &[(usize, Option<MetaAck>)],
        apply_phase: &[(usize, Option<MetaAck>)],
    ) -> PublishReport {
        let mut report = PublishReport {
            version,
            ..PublishReport::default()
        };
        for (shard, ack) in open_phase.iter().chain(apply_phase) {
            let taken = ack.as_ref().is_some_and(|a| a.version >= version);
            if !taken && !report.unacknowledged.contains(shard) {
                report.unacknowledged.push(*shard);
            }
        }
        report.unacknowledged.sort_unstable();
        for (_, ack) in apply_phase {
            if let Some(ack) = ack {
                report.unopened.extend(ack.unopened.iter().cloned());
            }
        }
        report.unopened.sort();
        report
    }

    pub fn is_clean(&self) -> bool {
        self.unacknowledged.is_empty() && self.unopened.is_empty()
    }
}

impl Decision {
    fn new(kind: RequestKind, response: ControllerResp, publish: Option<MetaSnapshot>) -> Self {
        Decision {
            response,
            publish,
            kind,
            producer_ids: None,
        }
    }

    /// The answer once `publish` was persisted and published with `report`.
    ///
    /// A producer id stands whatever the shards said (its block is durable). A topic change
    /// that some shard did not acknowledge fails with REQUEST_TIMED_OUT (retriable; the change
    /// is persisted and reaches that shard with the next image, as in Kafka, where a timed-out
    /// CreateTopics may still create the topic). A created or grown topic with a partition
    /// that could not be opened fails with KAFKA_STORAGE_ERROR (the partition stays offline).
    pub fn settle(self, report: &PublishReport) -> ControllerResp {
        settle(self.kind, self.response, report)
    }
}

impl RequestKind {
    /// The kind of `req`.
    pub fn of(req: &ControllerReq) -> RequestKind {
        match req {
            ControllerReq::CreateTopics { .. } => RequestKind::CreateTopics,
            ControllerReq::DeleteTopics { .. } => RequestKind::DeleteTopics,
            ControllerReq::CreatePartitions { .. } => RequestKind::CreatePartitions,
            ControllerReq::AlterConfigs { .. } => RequestKind::AlterConfigs,
            ControllerReq::AlterBrokerConfigs { .. } => RequestKind::AlterBrokerConfigs,
            ControllerReq::AllocateProducerId => RequestKind::AllocateProducerId,
            ControllerReq::AlterPartition { .. } => RequestKind::AlterPartition,
            ControllerReq::ElectLeaders { .. } => RequestKind::ElectLeaders,
            ControllerReq::AlterReassignments { .. } => RequestKind::AlterReassignments,
        }
    }
}

/// The answer to a decided request of `kind` once its image was published on this node with
/// `report` (see [`Decision::settle`]).
pub fn settle(
    kind: RequestKind,
    response: ControllerResp,
    report: &PublishReport,
) -> ControllerResp {
    {
        let version = report.version;
        let not_acknowledged = || {
            PartitionError::from(ControllerError::NotAcknowledged {
                shards: report.unacknowledged.clone(),
                version,
            })
        };
        let results = match response {
            ControllerResp::Topics(results) => results,
            ControllerResp::Configs(results) if !report.unacknowledged.is_empty() => {
                let results = results
                    .into_iter()
                    .map(|r| r.and_then(|()| Err(not_acknowledged())))
                    .collect();
                return ControllerResp::Configs(results);
            }
            other => return other,
        };
        let results = results
            .into_iter()
            .map(|result| {
                let topic = result?;
                if !report.unacknowledged.is_empty() {
                    return Err(not_acknowledged());
                }
                if kind.opens_partitions() {
                    let offline: Vec<i32> = report
                        .unopened
                        .iter()
                        .filter(|(name, _)| *name == topic.name)
                        .map(|(_, p)| *p)
                        .collect();
                    if !offline.is_empty() {
                        return Err(ControllerError::PartitionsNotOpened {
                            topic: topic.name.clone(),
                            partitions: offline,
                        }
                        .into());
                    }
                }
                Ok(topic)
            })
            .collect();
        ControllerResp::Topics(results)
    }
}

impl Controller {
    pub fn new(config: ControllerConfig) -> Controller {
        Controller {
            config,
            producer_ids: None,
            limit_refusals: Cell::new(0),
        }
    }

    /// The partition limit refused a change: an INVALID_PARTITIONS answer (what Redpanda
    /// answers for its per-shard limit) and, now and then, a log line.
    fn refuse_over_limit(&self, message: String) -> PartitionError {
        let n = self.limit_refusals.get() + 1;
        self.limit_refusals.set(n);
        if n.is_power_of_two() {
            tracing::warn!(refused_so_far = n, "{message}");
        }
        ControllerError::OverPartitionLimit(message).into()
    }

    /// Adopt the state `decision` leaves behind, given the image now durable: the decision's
    /// own `publish` once persisted, or the image it was decided on when it published nothing.
    /// A decision whose image could not be persisted is dropped instead.
    pub fn commit(&mut self, decision: &Decision, durable: &MetaSnapshot) {
        if let Some(block) = decision.producer_ids {
            assert!(
                block.end() <= durable.producer_ids_reserved_end,
                "a producer-id block beyond the durably reserved range"
            );
            self.producer_ids = Some(block);
        }
    }

    /// What `req` does to `image`. Pure: no I/O, and `self` is unchanged until
    /// [`Controller::commit`].
    pub fn decide(&self, image: &MetaSnapshot, req: ControllerReq) -> Decision {
        match req {
            ControllerReq::AllocateProducerId => self.allocate_producer_id(image),
            ControllerReq::CreateTopics {
                topics,
                validate_only,
            } => self.create_topics(image, topics, validate_only),
            ControllerReq::DeleteTopics { names } => self.delete_topics(image, names),
            ControllerReq::CreatePartitions {
                topics,
                validate_only,
            } => self.create_partitions(image, topics, validate_only),
            ControllerReq::AlterConfigs {
                changes,
                validate_only,
            } => self.alter_configs(image, changes, validate_only),
            ControllerReq::AlterBrokerConfigs {
                changes,
                validate_only,
            } => alter_broker_configs(image, changes, validate_only),
            ControllerReq::AlterPartition {
                topic,
                partition,
                broker,
                leader_epoch,
                partition_epoch,
                isr,
            } => alter_partition(
                image,
                &topic,
                partition,
                broker,
                leader_epoch,
                partition_epoch,
                isr,
            ),
            ControllerReq::ElectLeaders {
                unclean,
                partitions,
            } => elect_leaders(image, unclean, partitions),
            ControllerReq::AlterReassignments { changes } => alter_reassignments(image, changes),
        }
    }

    /// The next id of the current block; when it is used up (or at the first allocation of a
    /// run), a new block starting at the image's reserved end, which makes a new image.
    fn allocate_producer_id(&self, image: &MetaSnapshot) -> Decision {
        let mut current = self
            .producer_ids
            .filter(|b| b.end() <= image.producer_ids_reserved_end);
        if let Some(id) = current.as_mut().and_then(ProducerIdBlock::claim) {
            let mut decision = Decision::new(
                RequestKind::AllocateProducerId,
                ControllerResp::ProducerId(Ok(id)),
                None,
            );
            decision.producer_ids = current;
            return decision;
        }
        let exhausted = || {
            let error = ControllerError::ProducerIdsExhausted.into();
            Decision::new(
                RequestKind::AllocateProducerId,
                ControllerResp::ProducerId(Err(error)),
                None,
            )
        };
        let Some(mut block) = ProducerIdBlock::new(
            image.producer_ids_reserved_end,
            self.config.producer_id_block_size,
        ) else {
            return exhausted();
        };
        let Some(id) = block.claim() else {
            return exhausted();
        };
        let mut decision = Decision::new(
            RequestKind::AllocateProducerId,
            ControllerResp::ProducerId(Ok(id)),
            Some(image.with_producer_ids_reserved_end(block.end())),
        );
        decision.producer_ids = Some(block);
        decision
    }

    fn create_topics(
        &self,
        current: &MetaSnapshot,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Decision {
        // The effective broker settings, dynamic configs included.
        let broker = &*current.broker;
        let limit = &self.config.partition_limit;
        let mut owned = limits::owned_per_shard(
            current
                .topics
                .values()
                .map(|t| (t.name.as_str(), t.partitions)),
            current.shards,
        );
        let mut next = current.topics.clone();
        let mut results = Vec::with_capacity(topics.len());
        let mut seen = HashSet::new();
        for t in topics {
            let result = (|| {
                validate_topic_name(&t.name).map_err(ControllerError::InvalidTopicName)?;
                if !seen.insert(t.name.clone()) {
                    return Err(ControllerError::DuplicateTopic(t.name.clone()).into());
                }
                if next.contains_key(&t.name) {
                    return Err(ControllerError::TopicAlreadyExists(t.name.clone()).into());
                }
                let partitions = match (t.assignment_partitions, t.partitions) {
                    (Some(n), _) => n,
                    (None, -1) => broker.num_partitions(),
                    (None, n) => n,
                };
                if partitions <= 0 || partitions > PARTITIONS_PER_TOPIC_MAX {
                    return Err(ControllerError::PartitionCountOutOfRange(partitions).into());
                }
                let rf = if t.replication_factor == -1 {
                    broker.default_replication_factor()
                } else {
                    t.replication_factor
                };
                if rf <= 0 {
                    return Err(ControllerError::ReplicationFactorNotPositive.into());
                }
                let live: Vec<_> = current.live_brokers().collect();
                if rf as usize > live.len() {
                    return Err(ControllerError::ReplicationFactorTooLarge {
                        rf,
                        live: live.len(),
                    }
                    .into());
                }
                let assignments = crate::cluster::image::place_replicas(
                    &live,
                    &t.name,
                    0,
                    partitions,
                    rf as usize,
                )
                .ok_or(ControllerError::NoLiveBrokers)?
                .into_iter()
                .map(PartitionAssignment::new)
                .collect();
                let config = TopicConfig::for_create(t.configs.clone(), broker)?;
                let internal = crate::cluster::meta::is_internal_topic(&t.name);
                if let Err(message) = limit.check(&mut owned, &t.name, 0, partitions) {
                    if !internal {
                        return Err(self.refuse_over_limit(message));
                    }
                    // The broker cannot work without its internal topics: created anyway.
                    tracing::warn!("{message} Creating the internal topic anyway.");
                    limits::add_partitions(&mut owned, &t.name, 0, partitions);
                }
                let topic = Arc::new(TopicMeta {
                    name: t.name.clone(),
                    id: Uuid::new_v4(),
                    partitions,
                    configs: config.to_map(),
                    internal,
                    assignments,
                    config,
                });
                Ok(topic)
            })();
            if let Ok(topic) = &result {
                next.insert(topic.name.clone(), topic.clone());
            }
            results.push(result);
        }
        let changed = !validate_only && results.iter().any(|r| r.is_ok());
        Decision::new(
            RequestKind::CreateTopics,
            ControllerResp::Topics(results),
            changed.then(|| current.with_topics(next)),
        )
    }

    fn delete_topics(&self, current: &MetaSnapshot, names: Vec<String>) -> Decision {
        let mut next = current.topics.clone();
        let results: Vec<_> = names
            .iter()
            .map(|name| {
                if crate::cluster::meta::is_internal_topic(name) && next.contains_key(name) {
                    // Deleting it would drop every group's committed offsets.
                    return Err(ControllerError::InternalTopicDeletion(name.clone()).into());
                }
                next.remove(name)
                    .ok_or_else(|| ControllerError::TopicNotHosted.into())
            })
            .collect();
        let changed = results.iter().any(|r| r.is_ok());
        Decision::new(
            RequestKind::DeleteTopics,
            ControllerResp::Topics(results),
            changed.then(|| current.with_topics(next)),
        )
    }

    fn create_partitions(
        &self,
        current: &MetaSnapshot,
        topics: Vec<(String, i32)>,
        validate_only: bool,
    ) -> Decision {
        let kind = RequestKind::CreatePartitions;
        let limit = &self.config.partition_limit;
        let mut owned = limits::owned_per_shard(
            current
                .topics
                .values()
                .map(|t| (t.name.as_str(), t.partitions)),
            current.shards,
        );
        change_topics(kind, current, topics, validate_only, |t, count| {
            if count <= t.partitions {
                return Err(ControllerError::PartitionCountNotIncreased {
                    current: t.partitions,
                    requested: count,
                }
                .into());
            }
            if count > PARTITIONS_PER_TOPIC_MAX {
                return Err(ControllerError::PartitionCountAboveMax.into());
            }
            limit
                .check(&mut owned, &t.name, t.partitions, count)
                .map_err(|message| self.refuse_over_limit(message))?;
            let rf = t.assignments.first().map_or(1, |a| a.replicas.len().max(1));
            let live: Vec<_> = current.live_brokers().collect();
            let added = crate::cluster::image::place_replicas(
                &live,
                &t.name,
                t.partitions,
                count - t.partitions,
                rf,
            )
            .ok_or(ControllerError::ReplicationFactorTooLarge {
                rf: i16::try_from(rf).unwrap_or(i16::MAX),
                live: live.len(),
            })?;
            let mut grown = t.clone();
            grown.partitions = count;
            grown
                .assignments
                .extend(added.into_iter().map(PartitionAssignment::new));
            Ok(grown)
        })
    }

    fn alter_configs(
        &self,
        current: &MetaSnapshot,
        changes: Vec<(String, ConfigChange)>,
        validate_only: bool,
    ) -> Decision {
        let broker = &*current.broker;
        let kind = RequestKind::AlterConfigs;
        change_topics(kind, current, changes, validate_only, |t, change| {
            let config = match change {
                ConfigChange::Replace(pairs) => TopicConfig::validate_and_build(pairs, broker),
                ConfigChange::Incremental(ops) => t.config.incremental(&ops, broker),
            }?;
            let mut altered = t.clone();
            altered.configs = config.to_map();
            altered.config = config;
            Ok(altered)
        })
    }
}

/// Dynamic broker configs (Kafka's `DynamicBrokerConfig`): each resource's change is
/// validated on top of the ones before it; then the new settings make the next image with
/// every topic's config re-resolved against them, so a new default (e.g. `log.retention.ms`)
/// applies at once to the topics that do not override it.
fn alter_broker_configs(
    current: &MetaSnapshot,
    changes: Vec<(DynamicLevel, ConfigChange)>,
    validate_only: bool,
) -> Decision {
    let kind = RequestKind::AlterBrokerConfigs;
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
            Err(e) => Err(ControllerError::BrokerConfigRejected(e).into()),
        });
    }
    if validate_only || broker == *current.broker {
        return Decision::new(kind, ControllerResp::Configs(results), None);
    }
    let mut topics = current.topics.clone();
    for topic in topics.values_mut() {
        let config = match TopicConfig::from_map(topic.configs.clone(), &broker) {
            Ok(c) => c,
            Err(e) => {
                let failed = ControllerResp::Failed(broker_change_failed(&topic.name, &e));
                return Decision::new(kind, failed, None);
            }
        };
        if config != topic.config {
            let mut t = (**topic).clone();
            t.config = config;
            *topic = Arc::new(t);
        }
    }
    let next = current.with_broker(broker, topics);
    Decision::new(kind, ControllerResp::Configs(results), Some(next))
}

/// A stored topic config that no longer resolves (cannot happen for validated overrides).
fn broker_change_failed(topic: &str, e: &ConfigError) -> PartitionError {
    tracing::warn!(topic, error = %e, "re-resolving a topic config failed");
    ControllerError::TopicConfigUnresolvable {
        topic: topic.to_owned(),
        error: e.clone(),
    }
    .into()
}

/// Apply `change` to each named existing topic (later entries see earlier changes); a new
/// image if anything changed and this is not a dry run. One result per entry.
fn change_topics<T>(
    kind: RequestKind,
    current: &MetaSnapshot,
    items: Vec<(String, T)>,
    validate_only: bool,
    mut change: impl FnMut(&TopicMeta, T) -> Result<TopicMeta, PartitionError>,
) -> Decision {
    let mut next: BTreeMap<String, Arc<TopicMeta>> = current.topics.clone();
    let mut results = Vec::with_capacity(items.len());
    for (name, item) in items {
        let result = match next.get(&name) {
            None => Err(ControllerError::UnknownTopic(name.clone()).into()),
            Some(t) => change(t, item).map(Arc::new),
        };
        if let Ok(t) = &result {
            next.insert(name, t.clone());
        }
        results.push(result);
    }
    let changed = !validate_only && results.iter().any(|r| r.is_ok());
    Decision::new(
        kind,
        ControllerResp::Topics(results),
        changed.then(|| current.with_topics(next)),
    )
}

/// ElectLeaders (see [`ControllerReq::ElectLeaders`]); also what the active controller runs
/// for `auto.leader.rebalance.enable` (preferred, every partition).
fn elect_leaders(
    image: &MetaSnapshot,
    unclean: bool,
    partitions: Option<Vec<(String, i32)>>,
) -> Decision {
    let all = partitions.is_none();
    let wanted: Vec<(String, i32)> = partitions.unwrap_or_else(|| {
        image
            .topics
            .values()
            .flat_map(|t| (0..t.partitions).map(move |p| (t.name.clone(), p)))
            .collect()
    });
    let mut topics = image.topics.clone();
    let mut results = Vec::new();
    let mut changed = false;
    for (name, p) in wanted {
        let outcome = elect_one(image, &mut topics, &name, p, unclean);
        changed |= outcome.is_ok();
        // Electing everything reports only what changed or could not (Kafka lists the
        // partitions it elected, or failed to).
        if !all || !matches!(outcome, Err(ControllerError::ElectionNotNeeded)) {
            if all && matches!(outcome, Err(ControllerError::PreferredLeaderNotAvailable)) {
                continue;
            }
            results.push((name, p, outcome.map_err(PartitionError::from)));
        }
    }
    let publish = changed.then(|| image.with_topics(topics));
    Decision::new(
        RequestKind::ElectLeaders,
        ControllerResp::Elected(results),
        publish,
    )
}

/// One partition of [`elect_leaders`], changed in `topics`.
fn elect_one(
    image: &MetaSnapshot,
    topics: &mut BTreeMap<String, Arc<TopicMeta>>,
    name: &str,
    p: i32,
    unclean: bool,
) -> Result<(), ControllerError> {
    let t = topics.get(name).ok_or(ControllerError::TopicNotHosted)?;
    let a = t.assignment(p).ok_or(ControllerError::TopicNotHosted)?;
    let new_leader = if unclean {
        if a.leader >= 0 {
            return Err(ControllerError::ElectionNotNeeded);
        }
        a.replicas
            .iter()
            .copied()
            .find(|r| image.live_broker(*r).is_some())
            .ok_or(ControllerError::EligibleLeadersNotAvailable)?
    } else {
        let preferred = a.replicas.first().copied().unwrap_or(-1);
        if a.leader == preferred {
            return Err(ControllerError::ElectionNotNeeded);
        }
        if image.live_broker(preferred).is_none() || !a.isr.contains(&preferred) {
            return Err(ControllerError::PreferredLeaderNotAvailable);
        }
        preferred
    };
    let mut next = (**t).clone();
    if let Some(slot) = usize::try_from(p)
        .ok()
        .and_then(|i| next.assignments.get_mut(i))
    {
        if unclean && !slot.isr.contains(&new_leader) {
            slot.isr = vec![new_leader];
        }
        slot.leader = new_leader;
        slot.leader_epoch += 1;
        slot.partition_epoch += 1;
    }
    topics.insert(name.to_string(), Arc::new(next));
    Ok(())
}

/// AlterPartitionReassignments (see [`ControllerReq::AlterReassignments`]). A new reassignment
/// adds the target replicas that are not replicas yet (followers that catch up), keeps the
/// others until then, and completes when every added replica is in the ISR
/// ([`PartitionAssignment::complete_reassignment`], also run by AlterPartition). Cancelling
/// goes back to the replicas before the reassignment.
fn alter_reassignments(
    image: &MetaSnapshot,
    changes: Vec<(String, i32, Option<Vec<i32>>)>,
) -> Decision {
    let mut topics = image.topics.clone();
    let mut results = Vec::new();
    let mut changed = false;
    for (name, p, target) in changes {
        let outcome = reassign_one(image, &mut topics, &name, p, target);
        changed |= matches!(outcome, Ok(true));
        results.push(outcome.map(|_| ()).map_err(PartitionError::from));
    }
    let publish = changed.then(|| image.with_topics(topics));
    Decision::new(
        RequestKind::AlterReassignments,
        ControllerResp::Reassigned(results),
        publish,
    )
}

/// One partition of [`alter_reassignments`]; true when it changed.
fn reassign_one(
    image: &MetaSnapshot,
    topics: &mut BTreeMap<String, Arc<TopicMeta>>,
    name: &str,
    p: i32,
    target: Option<Vec<i32>>,
) -> Result<bool, ControllerError> {
    let t = topics.get(name).ok_or(ControllerError::TopicNotHosted)?;
    let a = t
        .assignment(p)
        .ok_or(ControllerError::TopicNotHosted)?
        .clone();
    let ongoing = !a.adding.is_empty() || !a.removing.is_empty();
    // The replicas before any ongoing reassignment.
    let original: Vec<i32> = a
        .replicas
        .iter()
        .copied()
        .filter(|r| !a.adding.contains(r))
        .collect();
    let live = |r: i32| image.live_broker(r).is_some();
    let mut next = a.clone();
    match target {
        None => {
            if !ongoing {
                return Err(ControllerError::NoReassignmentInProgress);
            }
            next.replicas = original;
            next.adding.clear();
            next.removing.clear();
            next.isr.retain(|r| next.replicas.contains(r));
            if !next.replicas.contains(&next.leader) {
                next.leader = next
                    .replicas
                    .iter()
                    .copied()
                    .find(|r| next.isr.contains(r) && live(*r))
                    .unwrap_or(-1);
                next.leader_epoch += 1;
            }
            next.partition_epoch += 1;
        }
        Some(target) => {
            let invalid = |why: String| ControllerError::InvalidReplicaAssignment(why);
            if target.is_empty() {
                return Err(invalid("the target replica list is empty".into()));
            }
            let mut unique = target.clone();
            unique.sort_unstable();
            unique.dedup();
            if unique.len() != target.len() {
                return Err(invalid(format!("duplicate brokers in {target:?}")));
            }
            if let Some(b) = target.iter().find(|b| !image.brokers.contains_key(b)) {
                return Err(invalid(format!("broker {b} is not registered")));
            }
            if !ongoing && target == a.replicas {
                return Ok(false);
            }
            next.adding = target
                .iter()
                .copied()
                .filter(|r| !original.contains(r))
                .collect();
            next.removing = original
                .iter()
                .copied()
                .filter(|r| !target.contains(r))
                .collect();
            next.replicas = target.clone();
            next.replicas.extend(next.removing.iter().copied());
            next.isr.retain(|r| next.replicas.contains(r));
            next.partition_epoch += 1;
            if next.adding.is_empty() {
                // Only removals (or a new order): complete now.
                next.complete_reassignment(live);
                next.replicas = target;
            } else {
                next.complete_reassignment(live);
            }
        }
    }
    let mut t2 = (**t).clone();
    if let Some(slot) = usize::try_from(p)
        .ok()
        .and_then(|i| t2.assignments.get_mut(i))
    {
        *slot = next;
    }
    topics.insert(name.to_string(), Arc::new(t2));
    Ok(true)
}

/// AlterPartition (see [`ControllerReq::AlterPartition`]): the new ISR, with the partition
/// epoch bumped; the leader and its epoch stay.
fn alter_partition(
    image: &MetaSnapshot,
    topic: &str,
    partition: i32,
    broker: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    isr: Vec<i32>,
) -> Decision {
    let answer = |r: Result<(), ControllerError>, publish| {
        Decision::new(
            RequestKind::AlterPartition,
            ControllerResp::Altered(r.map_err(PartitionError::from)),
            publish,
        )
    };
    let Some(t) = image.topic(topic) else {
        return answer(Err(ControllerError::UnknownTopic(topic.to_string())), None);
    };
    let Some(a) = t.assignment(partition) else {
        return answer(Err(ControllerError::TopicNotHosted), None);
    };
    if a.leader != broker || a.leader_epoch != leader_epoch {
        return answer(
            Err(ControllerError::NotLeaderAtEpoch {
                topic: topic.to_string(),
                partition,
                broker,
                leader_epoch,
                leader: a.leader,
                current_epoch: a.leader_epoch,
            }),
            None,
        );
    }
    if a.partition_epoch != partition_epoch {
        return answer(
            Err(ControllerError::StalePartitionEpoch {
                topic: topic.to_string(),
                partition,
                got: partition_epoch,
                current: a.partition_epoch,
            }),
            None,
        );
    }
    let ineligible = |why: String| ControllerError::IneligibleIsr {
        topic: topic.to_string(),
        partition,
        isr: isr.clone(),
        why,
    };
    if !isr.contains(&broker) {
        return answer(Err(ineligible("it must contain the leader".into())), None);
    }
    if let Some(r) = isr.iter().find(|r| !a.replicas.contains(r)) {
        return answer(Err(ineligible(format!("{r} is not a replica"))), None);
    }
    let mut unique = isr.clone();
    unique.sort_unstable();
    unique.dedup();
    if unique.len() != isr.len() {
        return answer(Err(ineligible("a replica is named twice".into())), None);
    }
    // KIP-841: a fenced broker never joins the ISR.
    if let Some(r) = isr
        .iter()
        .find(|r| !a.isr.contains(r) && image.live_broker(**r).is_none())
    {
        return answer(Err(ineligible(format!("broker {r} is fenced"))), None);
    }
    if isr == a.isr {
        return answer(Ok(()), None);
    }
    let mut topics = image.topics.clone();
    let mut next_topic = (**t).clone();
    if let Some(slot) = usize::try_from(partition)
        .ok()
        .and_then(|i| next_topic.assignments.get_mut(i))
    {
        slot.isr = isr;
        slot.partition_epoch += 1;
        // The last added replica caught up: the reassignment completes in the same change.
        slot.complete_reassignment(|r| image.live_broker(r).is_some());
    }
    topics.insert(topic.to_string(), Arc::new(next_topic));
    answer(Ok(()), Some(image.with_topics(topics)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use kafka_protocol::ResponseError as E;

    use super::*;
    use crate::log::topic_config::BrokerDefaults;

    fn image() -> MetaSnapshot {
        MetaSnapshot {
            version: 7,
            cluster_id: "test-cluster".into(),
            topics: BTreeMap::new(),
            by_id: HashMap::new(),
            shards: 2,
            broker: Arc::new(BrokerDefaults::default()),
            producer_ids_reserved_end: 0,
            node_id: 1,
            brokers: Arc::new(
                [(
                    1,
                    crate::cluster::meta::BrokerInfo {
                        id: 1,
                        host: "127.0.0.1".into(),
                        port: 9092,
                        rack: None,
                        controller_addr: None,
                        incarnation: Uuid::nil(),
                        epoch: 1,
                        fenced: false,
                    },
                )]
                .into(),
            ),
        }
    }

    /// `image()` with brokers 1-4 registered and live, and topic `t` of one partition on
    /// replicas 1, 2, 3 (leader 1, all in sync).
    fn four_brokers_one_topic() -> MetaSnapshot {
        let mut img = image();
        let mut brokers = (*img.brokers).clone();
        for id in 2..=4 {
            let mut b = brokers[&1].clone();
            b.id = id;
            brokers.insert(id, b);
        }
        img.brokers = Arc::new(brokers);
        let topic = TopicMeta {
            name: "t".into(),
            id: Uuid::from_u128(7),
            partitions: 1,
            configs: BTreeMap::new(),
            internal: false,
            assignments: vec![PartitionAssignment::new(vec![1, 2, 3])],
            config: Default::default(),
        };
        let mut topics = BTreeMap::new();
        topics.insert("t".to_string(), Arc::new(topic));
        img.with_topics(topics)
    }

    fn assignment(img: &MetaSnapshot) -> PartitionAssignment {
        img.topic("t")
            .and_then(|t| t.assignment(0))
            .cloned()
            .unwrap()
    }

    #[test]
    fn a_reassignment_adds_first_and_removes_once_the_new_replica_is_in_sync() {
        let c = controller();
        let img = four_brokers_one_topic();
        // Move from [1, 2, 3] to [4, 2, 3]: 4 joins as a follower, 1 leaves later.
        let d = c.decide(
            &img,
            ControllerReq::AlterReassignments {
                changes: vec![("t".into(), 0, Some(vec![4, 2, 3]))],
            },
        );
        assert!(
            matches!(&d.response, ControllerResp::Reassigned(r) if r.iter().all(Result::is_ok))
        );
        let img = d.publish.unwrap();
        let a = assignment(&img);
        assert_eq!(
            (a.replicas.clone(), a.adding.clone(), a.removing.clone()),
            (vec![4, 2, 3, 1], vec![4], vec![1])
        );
        assert_eq!((a.leader, a.isr.clone()), (1, vec![1, 2, 3]));
        // 4 caught up: the leader adds it to the ISR, which completes the reassignment and
        // moves leadership off the removed replica.
        let d = c.decide(
            &img,
            ControllerReq::AlterPartition {
                topic: "t".into(),
                partition: 0,
                broker: 1,
                leader_epoch: a.leader_epoch,
                partition_epoch: a.partition_epoch,
                isr: vec![1, 2, 3, 4],
            },
        );
        let img = d.publish.unwrap();
        let b = assignment(&img);
        assert_eq!(b.replicas, vec![4, 2, 3]);
        assert!(b.adding.is_empty() && b.removing.is_empty());
        assert_eq!(b.isr, vec![2, 3, 4]);
        assert_eq!(b.leader, 4);
        assert_eq!(b.leader_epoch, a.leader_epoch + 1);
        // Nothing in progress now: cancelling is refused; bad targets too.
        let d = c.decide(
            &img,
            ControllerReq::AlterReassignments {
                changes: vec![("t".into(), 0, None)],
            },
        );
        assert!(
            matches!(&d.response, ControllerResp::Reassigned(r) if r[0].as_ref().unwrap_err().code == E::NoReassignmentInProgress.code())
        );
        for bad in [vec![], vec![2, 2], vec![9]] {
            let d = c.decide(
                &img,
                ControllerReq::AlterReassignments {
                    changes: vec![("t".into(), 0, Some(bad))],
                },
            );
            assert!(
                matches!(&d.response, ControllerResp::Reassigned(r) if r[0].as_ref().unwrap_err().code == E::InvalidReplicaAssignment.code())
            );
            assert!(d.publish.is_none());
        }
    }

    #[test]
    fn a_cancelled_reassignment_goes_back_to_the_original_replicas() {
        let c = controller();
        let img = four_brokers_one_topic();
        let d = c.decide(
            &img,
            ControllerReq::AlterReassignments {
                changes: vec![("t".into(), 0, Some(vec![4, 2, 3]))],
            },
        );
        let img = d.publish.unwrap();
        let d = c.decide(
            &img,
            ControllerReq::AlterReassignments {
                changes: vec![("t".into(), 0, None)],
            },
        );
        let a = assignment(&d.publish.unwrap());
        // As in Kafka, the original replicas come back in the order they held during the
        // reassignment (kept ones first, then the ones that were leaving).
        assert_eq!(
            (a.replicas, a.isr, a.leader),
            (vec![2, 3, 1], vec![1, 2, 3], 1)
        );
        assert!(a.adding.is_empty() && a.removing.is_empty());
    }

    #[test]
    fn a_stale_leader_cannot_change_the_isr_and_preferred_election_needs_an_in_sync_replica() {
        let c = controller();
        let img = four_brokers_one_topic();
        let a = assignment(&img);
        let stale = c.decide(
            &img,
            ControllerReq::AlterPartition {
                topic: "t".into(),
                partition: 0,
                broker: 1,
                leader_epoch: a.leader_epoch,
                partition_epoch: a.partition_epoch - 1,
                isr: vec![1, 2],
            },
        );
        assert!(
            matches!(&stale.response, ControllerResp::Altered(Err(e)) if e.code == E::InvalidUpdateVersion.code())
        );
        let not_leader = c.decide(
            &img,
            ControllerReq::AlterPartition {
                topic: "t".into(),
                partition: 0,
                broker: 2,
                leader_epoch: a.leader_epoch,
                partition_epoch: a.partition_epoch,
                isr: vec![1, 2],
            },
        );
        assert!(
            matches!(&not_leader.response, ControllerResp::Altered(Err(e)) if e.code == E::FencedLeaderEpoch.code())
        );
        let shrink = c.decide(
            &img,
            ControllerReq::AlterPartition {
                topic: "t".into(),
                partition: 0,
                broker: 1,
                leader_epoch: a.leader_epoch,
                partition_epoch: a.partition_epoch,
                isr: vec![1, 2],
            },
        );
        let img2 = shrink.publish.unwrap();
        assert_eq!(assignment(&img2).isr, vec![1, 2]);
        // Preferred (1) already leads: not needed.
        let d = c.decide(
            &img2,
            ControllerReq::ElectLeaders {
                unclean: false,
                partitions: Some(vec![("t".into(), 0)]),
            },
        );
        assert!(
            matches!(&d.response, ControllerResp::Elected(r) if r[0].2.as_ref().unwrap_err().code == E::ElectionNotNeeded.code())
        );
    }

    fn config() -> ControllerConfig {
        ControllerConfig::new(limits::PartitionLimit::new(
            limits::MAX_PARTITIONS_PER_SHARD_DEFAULT,
            2,
        ))
    }

    fn controller() -> Controller {
        Controller::new(config())
    }

    fn new_topic(name: &str, partitions: i32) -> NewTopic {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor: -1,
            configs: Vec::new(),
            assignment_partitions: None,
        }
    }

    fn create(names: &[(&str, i32)], validate_only: bool) -> ControllerReq {
        ControllerReq::CreateTopics {
            topics: names.iter().map(|(n, p)| new_topic(n, *p)).collect(),
            validate_only,
        }
    }

    fn topics(resp: &ControllerResp) -> &[Result<Arc<TopicMeta>, PartitionError>] {
        match resp {
            ControllerResp::Topics(results) => results,
            other => panic!("not a per-topic answer: {other:?}"),
        }
    }

    fn codes(resp: &ControllerResp) -> Vec<i16> {
        topics(resp)
            .iter()
            .map(|r| r.as_ref().map_or_else(|e| e.code, |_| 0))
            .collect()
    }

    /// Decides `req` on `image`, commits as the shell does after a successful persist, and
    /// returns the answer and the image now in force.
    fn step(
        c: &mut Controller,
        image: &MetaSnapshot,
        req: ControllerReq,
    ) -> (ControllerResp, MetaSnapshot) {
        let mut d = c.decide(image, req);
        let next = d.publish.take().unwrap_or_else(|| image.clone());
        c.commit(&d, &next);
        let report = PublishReport {
            version: next.version,
            ..PublishReport::default()
        };
        (d.settle(&report), next)
    }

    #[test]
    fn create_topics_makes_the_next_image() {
        let c = controller();
        let current = image();
        let d = c.decide(&current, create(&[("a", 3), ("b", -1)], false));
        assert_eq!(d.kind, RequestKind::CreateTopics);
        assert_eq!(codes(&d.response), vec![0, 0]);
        let next = d.publish.as_ref().expect("a change publishes");
        assert_eq!(next.version, 8);
        assert_eq!(next.topic("a").map(|t| t.partitions), Some(3));
        // -1 partitions: the broker default (num.partitions, 1 by default).
        assert_eq!(
            next.topic("b").map(|t| t.partitions),
            Some(BrokerDefaults::default().num_partitions())
        );
        let a = next.topic("a").unwrap();
        assert_eq!(next.topic_by_id(&a.id).map(|t| t.name.as_str()), Some("a"));
        assert_ne!(a.id, next.topic("b").unwrap().id);
        // The given image is unchanged.
        assert!(current.topics.is_empty());
        assert_eq!(current.version, 7);
    }

    #[test]
    fn create_topics_validate_only_changes_nothing() {
        let c = controller();
        let d = c.decide(&image(), create(&[("a", 3), ("bad name", 1)], true));
        assert_eq!(codes(&d.response), vec![0, E::InvalidTopicException.code()]);
        assert!(d.publish.is_none());
    }

    #[test]
    fn create_topics_errors_per_topic() {
        let mut c = controller();
        let (_, current) = step(&mut c, &image(), create(&[("exists", 1)], false));
        let mut rf2 = new_topic("rf2", 1);
        rf2.replication_factor = 2;
        let mut rf0 = new_topic("rf0", 1);
        rf0.replication_factor = 0;
        let mut bad_config = new_topic("cfg", 1);
        bad_config.configs = vec![("cleanup.policy".into(), Some("nonsense".into()))];
        let mut null_config = new_topic("cfgnull", 1);
        null_config.configs = vec![("retention.ms".into(), None)];
        let mut assigned = new_topic("assigned", -1);
        assigned.assignment_partitions = Some(4);
        let req = ControllerReq::CreateTopics {
            topics: vec![
                new_topic("exists", 1),
                new_topic("dup", 1),
                new_topic("dup", 1),
                new_topic("", 1),
                new_topic("zero", 0),
                new_topic("huge", PARTITIONS_PER_TOPIC_MAX + 1),
                rf2,
                rf0,
                bad_config,
                null_config,
                assigned,
            ],
            validate_only: false,
        };
        let d = c.decide(&current, req);
        let got = codes(&d.response);
        assert_eq!(
            got[..8],
            [
                E::TopicAlreadyExists.code(),
                0,
                E::InvalidRequest.code(),
                E::InvalidTopicException.code(),
                E::InvalidPartitions.code(),
                E::InvalidPartitions.code(),
                E::InvalidReplicationFactor.code(),
                E::InvalidReplicationFactor.code(),
            ]
        );
        assert_ne!(got[8], 0, "an invalid config value is refused");
        assert_ne!(got[9], 0, "a null config value is refused at create");
        assert_eq!(got[10], 0);
        let next = d.publish.expect("the valid entries publish");
        assert_eq!(next.topic("assigned").map(|t| t.partitions), Some(4));
        assert!(next.topic("dup").is_some());
        assert_eq!(next.topics.len(), 3); // exists, dup, assigned
    }

    #[test]
    fn all_failing_entries_publish_nothing() {
        let c = controller();
        let d = c.decide(&image(), create(&[("", 1), ("x", 0)], false));
        assert!(topics(&d.response).iter().all(Result::is_err));
        assert!(d.publish.is_none());
        let d = c.decide(
            &image(),
            ControllerReq::DeleteTopics {
                names: vec!["missing".into()],
            },
        );
        assert_eq!(codes(&d.response), vec![E::UnknownTopicOrPartition.code()]);
        assert!(d.publish.is_none());
    }

    #[test]
    fn delete_topics() {
        let mut c = controller();
        let (_, current) = step(
            &mut c,
            &image(),
            create(
                &[("a", 1), ("b", 1), (crate::cluster::meta::OFFSETS_TOPIC, 2)],
                false,
            ),
        );
        let d = c.decide(
            &current,
            ControllerReq::DeleteTopics {
                names: vec![
                    "a".into(),
                    "a".into(),
                    "nope".into(),
                    crate::cluster::meta::OFFSETS_TOPIC.into(),
                ],
            },
        );
        assert_eq!(d.kind, RequestKind::DeleteTopics);
        assert_eq!(
            codes(&d.response),
            vec![
                0,
                E::UnknownTopicOrPartition.code(),
                E::UnknownTopicOrPartition.code(),
                E::InvalidRequest.code(),
            ]
        );
        let next = d.publish.expect("deleting publishes");
        assert!(next.topic("a").is_none());
        assert!(next.topic("b").is_some());
        assert!(next.by_id.values().all(|n| n != "a"));
        assert_eq!(next.version, current.version + 1);
    }

    #[test]
    fn create_partitions() {
        let mut c = controller();
        let (_, current) = step(&mut c, &image(), create(&[("a", 2)], false));
        let id = current.topic("a").unwrap().id;
        let req = |topics: Vec<(&str, i32)>, validate_only| ControllerReq::CreatePartitions {
            topics: topics
                .into_iter()
                .map(|(n, c)| (n.to_string(), c))
                .collect(),
            validate_only,
        };
        let d = c.decide(&current, req(vec![("a", 5)], true));
        assert_eq!(codes(&d.response), vec![0]);
        assert!(d.publish.is_none(), "validate_only");
        let d = c.decide(
            &current,
            req(
                vec![
                    ("a", 2),
                    ("a", PARTITIONS_PER_TOPIC_MAX + 1),
                    ("missing", 3),
                    ("a", 5),
                    ("a", 4),
                ],
                false,
            ),
        );
        assert_eq!(d.kind, RequestKind::CreatePartitions);
        assert_eq!(
            codes(&d.response),
            vec![
                E::InvalidPartitions.code(),
                E::InvalidPartitions.code(),
                E::UnknownTopicOrPartition.code(),
                0,
                // Later entries see earlier ones: 5 partitions now.
                E::InvalidPartitions.code(),
            ]
        );
        let next = d.publish.expect("growing publishes");
        let a = next.topic("a").unwrap();
        assert_eq!(a.partitions, 5);
        assert_eq!(a.id, id, "growing keeps the topic id");
    }

    #[test]
    fn alter_configs() {
        let mut c = controller();
        let (_, current) = step(&mut c, &image(), create(&[("a", 1)], false));
        let set =
            |v: &str| ConfigChange::Replace(vec![("retention.ms".into(), Some(v.to_string()))]);
        let d = c.decide(
            &current,
            ControllerReq::AlterConfigs {
                changes: vec![("a".into(), set("1000"))],
                validate_only: true,
            },
        );
        assert_eq!(codes(&d.response), vec![0]);
        assert!(d.publish.is_none());
        let d = c.decide(
            &current,
            ControllerReq::AlterConfigs {
                changes: vec![
                    ("a".into(), set("1000")),
                    ("a".into(), set("not a number")),
                    ("missing".into(), set("1")),
                    (
                        "a".into(),
                        ConfigChange::Incremental(vec![(
                            "cleanup.policy".into(),
                            AlterOp::Set,
                            Some("compact".into()),
                        )]),
                    ),
                ],
                validate_only: false,
            },
        );
        assert_eq!(d.kind, RequestKind::AlterConfigs);
        let got = codes(&d.response);
        assert_eq!(got[0], 0);
        assert_ne!(got[1], 0);
        assert_eq!(got[2], E::UnknownTopicOrPartition.code());
        assert_eq!(got[3], 0);
        let next = d.publish.expect("altering publishes");
        let configs = &next.topic("a").unwrap().configs;
        // Incremental on top of the replace before it.
        assert_eq!(
            configs.get("retention.ms").map(String::as_str),
            Some("1000")
        );
        assert_eq!(
            configs.get("cleanup.policy").map(String::as_str),
            Some("compact")
        );
    }

    fn allocate(c: &mut Controller, current: &mut MetaSnapshot) -> (i64, bool) {
        let d = c.decide(current, ControllerReq::AllocateProducerId);
        assert_eq!(d.kind, RequestKind::AllocateProducerId);
        let persisted = d.publish.is_some();
        let (resp, next) = step(c, current, ControllerReq::AllocateProducerId);
        // `step` decided again on the same state: the same decision.
        *current = next;
        match resp {
            ControllerResp::ProducerId(Ok(id)) => (id, persisted),
            other => panic!("no producer id: {other:?}"),
        }
    }

    #[test]
    fn producer_ids_come_from_persisted_blocks() {
        let config = ControllerConfig {
            producer_id_block_size: 3,
            ..config()
        };
        let mut c = Controller::new(config.clone());
        let mut current = image();
        let mut ids = Vec::new();
        let mut persists = 0;
        for _ in 0..7 {
            let (id, persisted) = allocate(&mut c, &mut current);
            persists += usize::from(persisted);
            assert!(
                id < current.producer_ids_reserved_end,
                "handed out from a durable block"
            );
            ids.push(id);
        }
        assert_eq!(ids, (0..7).collect::<Vec<_>>());
        assert_eq!(persists, 3, "one persist per block of 3");
        assert_eq!(current.producer_ids_reserved_end, 9);
        // A restart (a new controller on the durable image) skips the rest of the block.
        let mut c = Controller::new(config);
        let (id, persisted) = allocate(&mut c, &mut current);
        assert_eq!((id, persisted), (9, true));
        assert_eq!(current.producer_ids_reserved_end, 12);
    }

    #[test]
    fn a_block_not_persisted_is_not_used() {
        let c = controller();
        let current = image();
        let d = c.decide(&current, ControllerReq::AllocateProducerId);
        assert!(matches!(d.response, ControllerResp::ProducerId(Ok(0))));
        assert!(d.publish.is_some());
        // The shell drops the decision when persisting fails: the next one reserves again
        // from the same durable end and the id is not handed out twice.
        drop(d);
        let d = c.decide(&current, ControllerReq::AllocateProducerId);
        assert!(matches!(d.response, ControllerResp::ProducerId(Ok(0))));
        assert_eq!(
            d.publish.map(|m| m.producer_ids_reserved_end),
            Some(PRODUCER_ID_BLOCK_SIZE)
        );
    }

    #[test]
    fn producer_id_space_exhaustion_is_an_error() {
        let mut c = controller();
        let mut current = image();
        current.producer_ids_reserved_end = i64::MAX - 10;
        let d = c.decide(&current, ControllerReq::AllocateProducerId);
        assert!(matches!(d.response, ControllerResp::ProducerId(Err(_))));
        assert!(d.publish.is_none());
        c.commit(&d, &current);
        // Topic changes keep the reservation.
        let (_, next) = step(&mut c, &current, create(&[("a", 1)], false));
        assert_eq!(next.producer_ids_reserved_end, i64::MAX - 10);
    }

    #[test]
    fn the_partition_limit_refuses_before_anything_is_persisted() {
        let c = Controller::new(ControllerConfig::new(limits::PartitionLimit::new(4, 2)));
        let mut c2 = Controller::new(ControllerConfig::new(limits::PartitionLimit::new(4, 2)));
        // 2 shards x 4: 8 in all; 9 partitions cannot fit, even as a dry run.
        let d = c.decide(&image(), create(&[("big", 9)], true));
        assert_eq!(codes(&d.response), vec![E::InvalidPartitions.code()]);
        let (_, current) = step(&mut c2, &image(), create(&[("a", 6)], false));
        let d = c.decide(&current, create(&[("b", 4), ("c", 2)], false));
        assert_eq!(codes(&d.response)[0], E::InvalidPartitions.code());
        assert_eq!(codes(&d.response)[1], 0, "fits once b was refused");
        let d = c.decide(
            &current,
            ControllerReq::CreatePartitions {
                topics: vec![("a".into(), 12)],
                validate_only: false,
            },
        );
        assert_eq!(codes(&d.response), vec![E::InvalidPartitions.code()]);
        assert!(d.publish.is_none());
        // The internal topics are created anyway.
        let d = c.decide(
            &current,
            create(&[(crate::cluster::meta::OFFSETS_TOPIC, 50)], false),
        );
        assert_eq!(codes(&d.response), vec![0]);
    }

    #[test]
    fn alter_broker_configs_re_resolves_topics() {
        let mut c = controller();
        let (_, current) = step(&mut c, &image(), create(&[("a", 1)], false));
        let change = |v: &str| {
            ConfigChange::Incremental(vec![(
                "log.retention.ms".into(),
                AlterOp::Set,
                Some(v.to_string()),
            )])
        };
        let req = |changes, validate_only| ControllerReq::AlterBrokerConfigs {
            changes,
            validate_only,
        };
        let d = c.decide(
            &current,
            req(vec![(DynamicLevel::ClusterDefault, change("60000"))], true),
        );
        assert!(matches!(&d.response, ControllerResp::Configs(r) if r.len() == 1 && r[0].is_ok()));
        assert!(d.publish.is_none(), "validate_only");
        let d = c.decide(
            &current,
            req(
                vec![
                    (DynamicLevel::ClusterDefault, change("60000")),
                    (DynamicLevel::ThisBroker, change("not a number")),
                ],
                false,
            ),
        );
        assert_eq!(d.kind, RequestKind::AlterBrokerConfigs);
        match &d.response {
            ControllerResp::Configs(r) => {
                assert!(r[0].is_ok());
                assert_eq!(
                    r[1].as_ref().err().map(|e| e.code),
                    Some(E::InvalidRequest.code())
                );
            }
            other => panic!("{other:?}"),
        }
        let next = d
            .publish
            .as_ref()
            .expect("a broker config change publishes");
        assert_eq!(next.broker.log_retention_ms(), 60_000);
        // The topic without an override follows the new default at once.
        assert_eq!(
            next.topic("a").unwrap().config.settings().retention_ms,
            60_000
        );
        assert_eq!(next.version, current.version + 1);
        // A shard that did not acknowledge turns the successes into retriable timeouts.
        let report = PublishReport {
            version: next.version,
            unacknowledged: vec![1],
            unopened: Vec::new(),
        };
        match d.settle(&report) {
            ControllerResp::Configs(r) => {
                assert_eq!(
                    r[0].as_ref().err().map(|e| e.code),
                    Some(E::RequestTimedOut.code())
                );
                assert_eq!(
                    r[1].as_ref().err().map(|e| e.code),
                    Some(E::InvalidRequest.code())
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn settle_checks_acknowledgements_and_open_partitions() {
        let c = controller();
        let current = image();
        let decide = || c.decide(&current, create(&[("a", 2), ("b", 1), ("", 1)], false));
        let ack = |version, unopened: &[(&str, i32)]| {
            Some(MetaAck {
                version,
                unopened: unopened.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
            })
        };
        // Clean: every shard took version 8, everything open.
        let clean = PublishReport::from_acks(
            8,
            &[(0, ack(8, &[])), (1, ack(8, &[]))],
            &[(0, ack(8, &[])), (1, ack(8, &[]))],
        );
        assert!(clean.is_clean());
        let invalid = E::InvalidTopicException.code();
        assert_eq!(codes(&decide().settle(&clean)), vec![0, 0, invalid]);

        // Shard 1 could not open a-1 in phase one but did in phase two: fine.
        let retried = PublishReport::from_acks(
            8,
            &[(0, ack(8, &[])), (1, ack(8, &[("a", 1)]))],
            &[(0, ack(8, &[])), (1, ack(8, &[]))],
        );
        assert!(retried.is_clean());

        // a-1 stays offline: a fails with a storage error, b is fine.
        let offline = PublishReport::from_acks(
            8,
            &[(0, ack(8, &[])), (1, ack(8, &[("a", 1)]))],
            &[(0, ack(8, &[])), (1, ack(8, &[("a", 1)]))],
        );
        assert_eq!(offline.unopened, vec![("a".to_string(), 1)]);
        assert_eq!(
            codes(&decide().settle(&offline)),
            vec![E::KafkaStorageError.code(), 0, invalid]
        );

        // Shard 1 did not answer phase two, or answered with an older version: retriable
        // timeouts for every entry that succeeded; the invalid one keeps its error.
        for apply in [None, ack(7, &[])] {
            let silent = PublishReport::from_acks(
                8,
                &[(0, ack(8, &[])), (1, ack(8, &[]))],
                &[(0, ack(8, &[])), (1, apply)],
            );
            assert_eq!(silent.unacknowledged, vec![1]);
            let timed_out = E::RequestTimedOut.code();
            assert_eq!(
                codes(&decide().settle(&silent)),
                vec![timed_out, timed_out, invalid]
            );
        }
        // A shard silent in phase one only counts too.
        let silent_open = PublishReport::from_acks(
            8,
            &[(0, None), (1, ack(8, &[]))],
            &[(0, ack(8, &[])), (1, ack(8, &[]))],
        );
        assert_eq!(silent_open.unacknowledged, vec![0]);

        // Offline partitions do not fail a config change or a deletion.
        let mut c2 = controller();
        let (_, with_a) = step(&mut c2, &current, create(&[("a", 2)], false));
        let d = c2.decide(
            &with_a,
            ControllerReq::AlterConfigs {
                changes: vec![("a".into(), ConfigChange::Replace(Vec::new()))],
                validate_only: false,
            },
        );
        assert_eq!(codes(&d.settle(&offline)), vec![0]);
        // A producer id stands whatever the shards said.
        let d = c2.decide(&with_a, ControllerReq::AllocateProducerId);
        assert!(matches!(
            d.settle(&PublishReport::from_acks(9, &[(0, None)], &[(0, None)])),
            ControllerResp::ProducerId(Ok(0))
        ));
    }

    /// The messages clients get, as sent before the errors were typed (byte for byte).
    #[test]
    fn controller_error_messages_are_pinned() {
        use ControllerError as C;
        let unknown = || ConfigError::Unknown("x.y".into());
        let cases = [
            (
                C::NotAcknowledged {
                    shards: vec![1, 2],
                    version: 7,
                },
                "shard(s) [1, 2] did not acknowledge metadata version 7; the change is stored and reaches them with the next one".to_owned(),
            ),
            (
                C::PartitionsNotOpened {
                    topic: "t".into(),
                    partitions: vec![0, 3],
                },
                "partition(s) [0, 3] of topic t could not be opened".to_owned(),
            ),
            (C::OverPartitionLimit("over".into()), "over".to_owned()),
            (
                C::ProducerIdsExhausted,
                "producer id space exhausted".to_owned(),
            ),
            (C::InvalidTopicName("bad".into()), "bad".to_owned()),
            (
                C::DuplicateTopic("t".into()),
                "Create topics request from client contains multiple entries for topic t".to_owned(),
            ),
            (
                C::TopicAlreadyExists("t".into()),
                "Topic 't' already exists.".to_owned(),
            ),
            (
                C::PartitionCountOutOfRange(0),
                "Number of partitions must be between 1 and 100000, got 0.".to_owned(),
            ),
            (
                C::ReplicationFactorNotPositive,
                "Replication factor must be larger than 0.".to_owned(),
            ),
            (
                C::ReplicationFactorTooLarge { rf: 3, live: 1 },
                "Unable to replicate the partition 3 time(s): The target replication factor of 3 cannot be reached because only 1 broker(s) are registered.".to_owned(),
            ),
            (
                C::InternalTopicDeletion("__consumer_offsets".into()),
                "Deleting the internal topic __consumer_offsets is not allowed.".to_owned(),
            ),
            (
                C::TopicNotHosted,
                "This server does not host this topic-partition.".to_owned(),
            ),
            (
                C::PartitionCountNotIncreased {
                    current: 4,
                    requested: 2,
                },
                "Topic currently has 4 partitions, which is higher than the requested 2.".to_owned(),
            ),
            (
                C::PartitionCountAboveMax,
                "Number of partitions must be at most 100000.".to_owned(),
            ),
            (C::BrokerConfigRejected(unknown()), unknown().to_string()),
            (
                C::TopicConfigUnresolvable {
                    topic: "t".into(),
                    error: unknown(),
                },
                format!("topic t: {}", unknown()),
            ),
            (
                C::UnknownTopic("t".into()),
                "The topic 't' does not exist.".to_owned(),
            ),
        ];
        for (error, message) in cases {
            let sent = PartitionError::from(error.clone());
            assert_eq!(sent.message.as_deref(), Some(message.as_str()), "{error:?}");
            assert_eq!(sent.code, crate::errors::KafkaCode::kafka_code(&error));
        }
    }
}
