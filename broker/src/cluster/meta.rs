//! The metadata image as a node's shards read it: topics (partition counts, ids, configs,
//! each partition's replicas and leader), the registered brokers, which shard owns each
//! partition here, the broker's effective Kafka settings (the config file's plus the dynamic
//! broker configs set by AlterConfigs on the BROKER resource; every topic's resolved config in
//! an image was built against exactly those), and the end of the reserved producer-id range.
//!
//! Owns: [`MetaSnapshot`] (the image), [`owner_of`] (placement on shards), topic-name rules,
//! and [`LegacyMeta`], the reader of the single-node releases' `meta/topics.json` (migrated
//! into the metadata log once, see `crate::cluster::quorum`).
//!
//! Invariants: images are built only by applying the metadata log
//! ([`crate::cluster::image::ClusterImage`]); an image's version is the log index it reflects,
//! so versions only grow. `producer_ids_reserved_end` only grows: every producer id ever
//! handed out is below the committed value.
//!
//! Runs on: [`LegacyMeta`] once at start-up on the controller thread (blocking `std::fs`);
//! snapshots are read on every shard.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tracing::info;
use uuid::Uuid;

use crate::log::producer_state::read_legacy_reserved_end;
use crate::log::topic_config::{BrokerDefaults, TopicConfig};

/// Kafka's limit on topic name length.
pub const TOPIC_NAME_LEN_MAX: usize = 249;
/// A sanity bound on partitions per topic (Kafka has none; we keep memory per topic bounded).
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 100_000;
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// Kafka's internal topics: clients may not produce to or delete them.
pub fn is_internal_topic(name: &str) -> bool {
    name == OFFSETS_TOPIC || name == TRANSACTION_STATE_TOPIC
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    /// Only the explicitly set configs; defaults come from the broker at use.
    pub configs: BTreeMap<String, String>,
    #[serde(default)]
    pub internal: bool,
    /// One entry per partition: where its replicas live and who leads it. Empty in images
    /// written before the cluster existed (the migration assigns them to the node).
    #[serde(default)]
    pub assignments: Vec<PartitionAssignment>,
    #[serde(skip)]
    pub config: TopicConfig,
}

impl TopicMeta {
    /// Partition `p`'s replicas and leader, if `p` exists.
    pub fn assignment(&self, p: i32) -> Option<&PartitionAssignment> {
        usize::try_from(p)
            .ok()
            .and_then(|i| self.assignments.get(i))
    }
}

/// One partition's place in the cluster (Kafka's `PartitionRecord`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionAssignment {
    /// Broker ids holding a replica, the preferred leader first.
    pub replicas: Vec<i32>,
    /// The broker leading it, or -1 when no eligible replica is live (offline).
    pub leader: i32,
    /// Bumped on every leader change (KIP-320 fencing of stale leaders and clients).
    pub leader_epoch: i32,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
    /// Bumped on every change of this record (leader or ISR).
    pub partition_epoch: i32,
    /// An ongoing reassignment (KIP-455): replicas being added (they catch up as followers
    /// and must all be in the ISR before the reassignment completes) ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<i32>,
    /// ... and replicas that leave once it completes. `replicas` holds both meanwhile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<i32>,
}

impl PartitionAssignment {
    /// A new partition led by the first of `replicas`, all in sync.
    pub fn new(replicas: Vec<i32>) -> PartitionAssignment {
        PartitionAssignment {
            leader: replicas.first().copied().unwrap_or(-1),
            isr: replicas.clone(),
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    /// Completes an ongoing reassignment once every added replica is in the ISR: the
    /// removed replicas leave the replica set and the ISR, and leadership moves off a
    /// removed leader to the first in-sync target replica that is live. True if it changed.
    pub fn complete_reassignment(&mut self, live: impl Fn(i32) -> bool) -> bool {
        if self.adding.is_empty() && self.removing.is_empty() {
            return false;
        }
        if !self.adding.iter().all(|r| self.isr.contains(r)) {
            return false;
        }
        let removing = std::mem::take(&mut self.removing);
        self.adding.clear();
        self.replicas.retain(|r| !removing.contains(r));
        self.isr.retain(|r| !removing.contains(r));
        if removing.contains(&self.leader) {
            self.leader = self
                .replicas
                .iter()
                .copied()
                .find(|r| self.isr.contains(r) && live(*r))
                .unwrap_or(-1);
            self.leader_epoch += 1;
        }
        self.partition_epoch += 1;
        true
    }
}

/// A registered broker (Kafka's `RegisterBrokerRecord` plus its fencing state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub id: i32,
    /// Where clients reach its Kafka listener.
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Its controller listener (`--controller-addr`), if it has one.
    pub controller_addr: Option<String>,
    /// Random per process start: tells a restart from a second process with the same id.
    pub incarnation: Uuid,
    /// The metadata log index of its registration.
    pub epoch: i64,
    /// Fenced brokers lead nothing and are not listed to clients.
    pub fenced: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct MetaFile {
    version: u64,
    cluster_id: String,
    topics: Vec<TopicMeta>,
    /// Absent in files written before producer-id blocks moved into the image (0 then; the
    /// legacy `meta/producer_ids` file is folded in at load).
    #[serde(default)]
    producer_ids_reserved_end: i64,
    /// Absent in files written before dynamic broker configs existed.
    #[serde(default)]
    dynamic_broker_configs: DynamicBrokerConfigs,
}

/// The dynamic broker configs as persisted: Kafka-named settings as canonical strings.
#[derive(Debug, Default, Serialize, Deserialize)]
struct DynamicBrokerConfigs {
    /// The cluster-wide defaults (BROKER resource "").
    #[serde(default)]
    cluster_default: BTreeMap<String, String>,
    /// This broker's own (BROKER resource named by its id). The metadata is this node's, so
    /// no id is stored: a changed `node_id` keeps them.
    #[serde(default)]
    this_broker: BTreeMap<String, String>,
}

/// An immutable view of the cluster metadata.
#[derive(Debug, Clone)]
pub struct MetaSnapshot {
    pub version: u64,
    pub cluster_id: String,
    pub topics: BTreeMap<String, Arc<TopicMeta>>,
    pub by_id: HashMap<Uuid, String>,
    pub shards: usize,
    /// The broker's Kafka settings: the config file's plus the dynamic broker configs.
    pub broker: Arc<BrokerDefaults>,
    /// End of the producer-id range reserved so far: every id the controller handed out (in
    /// this or an earlier run) is below it, so the next block starts here.
    pub producer_ids_reserved_end: i64,
    /// This node's broker id.
    pub node_id: i32,
    /// Every registered broker, fenced ones included.
    pub brokers: Arc<BTreeMap<i32, BrokerInfo>>,
}

impl MetaSnapshot {
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicMeta>> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&Arc<TopicMeta>> {
        self.by_id.get(id).and_then(|name| self.topics.get(name))
    }

    /// The shard that owns a partition. Stable for a given shard count: a partition's data
    /// lives in the shared data dir, so a restart with another shard count just moves owners.
    pub fn owner(&self, topic: &str, partition: i32) -> usize {
        owner_of(topic, partition, self.shards)
    }

    /// Whether this node holds a replica of partition `p` of `topic` (so one of its shards
    /// opens it).
    pub fn hosts(&self, topic: &TopicMeta, p: i32) -> bool {
        topic
            .assignment(p)
            .is_some_and(|a| a.replicas.contains(&self.node_id))
    }

    /// Whether this node leads partition `p` of `topic` (so it serves produce and fetch).
    pub fn leads(&self, topic: &TopicMeta, p: i32) -> bool {
        topic
            .assignment(p)
            .is_some_and(|a| a.leader == self.node_id)
    }

    /// The brokers clients may use: registered and not fenced.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerInfo> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// A live broker by id.
    pub fn live_broker(&self, id: i32) -> Option<&BrokerInfo> {
        self.brokers.get(&id).filter(|b| !b.fenced)
    }

    pub(crate) fn rebuild_index(&mut self) {
        self.by_id = self
            .topics
            .values()
            .map(|t| (t.id, t.name.clone()))
            .collect();
    }

    /// The next version with `topics` instead of this one's.
    pub fn with_topics(&self, topics: BTreeMap<String, Arc<TopicMeta>>) -> MetaSnapshot {
        let mut next = MetaSnapshot {
            version: self.version + 1,
            cluster_id: self.cluster_id.clone(),
            topics,
            by_id: HashMap::new(),
            shards: self.shards,
            broker: self.broker.clone(),
            producer_ids_reserved_end: self.producer_ids_reserved_end,
            node_id: self.node_id,
            brokers: self.brokers.clone(),
        };
        next.rebuild_index();
        next
    }

    /// The next snapshot with other broker settings; `topics` must have been resolved against
    /// `broker` (see [`TopicConfig::from_map`]).
    pub fn with_broker(
        &self,
        broker: BrokerDefaults,
        topics: BTreeMap<String, Arc<TopicMeta>>,
    ) -> MetaSnapshot {
        let mut next = self.with_topics(topics);
        next.broker = Arc::new(broker);
        next
    }

    /// The next version with the producer-id range reserved up to `end`.
    pub fn with_producer_ids_reserved_end(&self, end: i64) -> MetaSnapshot {
        assert!(
            end >= self.producer_ids_reserved_end,
            "the reserved producer-id range never shrinks"
        );
        let mut next = self.clone();
        next.version = self.version + 1;
        next.producer_ids_reserved_end = end;
        next
    }
}

/// FNV-1a of the topic name plus the partition: consecutive partitions of a topic land on
/// consecutive shards, and different topics start at different shards.
pub fn owner_of(topic: &str, partition: i32, shards: usize) -> usize {
    let p = u64::try_from(partition).unwrap_or(0);
    (topic_hash(topic).wrapping_add(p) % shards.max(1) as u64) as usize
}

/// FNV-1a of the topic name: where [`owner_of`] starts counting the topic's partitions.
pub fn topic_hash(topic: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in topic.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Kafka's topic name rule: 1..=249 chars of [a-zA-Z0-9._-], not "." or "..".
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return Err("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > TOPIC_NAME_LEN_MAX {
        return Err(format!(
            "Topic name is illegal, it can't be longer than {TOPIC_NAME_LEN_MAX} characters, topic name: {name}"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(format!(
            "Topic name {name} is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// The metadata file of a single-node data dir from before the controller quorum
/// (`meta/topics.json`, plus the older `meta/producer_ids`). Read once, when the quorum
/// bootstraps the cluster, to migrate its topics, configs and producer-id reservation into the
/// metadata log; then renamed to `topics.json.migrated` so it is never read again.
pub struct LegacyMeta {
    path: PathBuf,
}

/// What a legacy metadata file held.
#[derive(Debug, Clone)]
pub struct LegacyImage {
    pub cluster_id: String,
    pub topics: Vec<TopicMeta>,
    pub producer_ids_reserved_end: i64,
    pub cluster_configs: BTreeMap<String, String>,
    pub this_broker_configs: BTreeMap<String, String>,
}

impl LegacyMeta {
    pub fn new(data_dir: &Path) -> LegacyMeta {
        LegacyMeta {
            path: data_dir.join("meta").join("topics.json"),
        }
    }

    fn dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    fn legacy_producer_ids_path(&self) -> PathBuf {
        self.dir().join("producer_ids")
    }

    /// The legacy image, if the data dir has one. Blocking `std::fs`, read-only. The larger of
    /// the two producer-id reservations wins, so ids never go backwards.
    pub fn read(&self) -> anyhow::Result<Option<LegacyImage>> {
        let legacy_pids = read_legacy_reserved_end(&self.legacy_producer_ids_path())
            .map_err(|e| anyhow::anyhow!("producer id allocator: {e}"))?;
        let file: MetaFile = match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", self.path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(legacy_pids.map(|end| LegacyImage {
                    cluster_id: new_cluster_id(),
                    topics: Vec::new(),
                    producer_ids_reserved_end: end,
                    cluster_configs: BTreeMap::new(),
                    this_broker_configs: BTreeMap::new(),
                }))
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.path.display())),
        };
        anyhow::ensure!(
            file.producer_ids_reserved_end >= 0,
            "{}: negative producer_ids_reserved_end",
            self.path.display()
        );
        Ok(Some(LegacyImage {
            cluster_id: file.cluster_id,
            topics: file.topics,
            producer_ids_reserved_end: file.producer_ids_reserved_end.max(legacy_pids.unwrap_or(0)),
            cluster_configs: file.dynamic_broker_configs.cluster_default,
            this_broker_configs: file.dynamic_broker_configs.this_broker,
        }))
    }

    /// Once the migrated image is committed to the metadata log: move the legacy files aside
    /// (kept for forensics, never read again). Idempotent.
    pub fn retire(&self) -> anyhow::Result<()> {
        let moved = self.path.with_extension("json.migrated");
        match std::fs::rename(&self.path, &moved) {
            Ok(()) => {
                info!(from = %self.path.display(), to = %moved.display(), "retired the single-node metadata file")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("renaming {}", self.path.display())),
        }
        let pids = self.legacy_producer_ids_path();
        match std::fs::remove_file(&pids) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", pids.display())),
        }
        sync_dir_blocking(&self.dir())
    }
}

/// The config file's settings with the stored dynamic broker configs. A stored config that is
/// no longer valid (an upgrade changed the rules, the file's settings now conflict with it) is
/// dropped with a warning rather than keeping the broker from starting.
pub(crate) fn with_stored_dynamic(
    broker: &BrokerDefaults,
    cluster_default: &BTreeMap<String, String>,
    this_broker: &BTreeMap<String, String>,
) -> BrokerDefaults {
    let statics = broker.statics_only();
    let valid = |map: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        map.iter()
            .filter(|(name, value)| match BrokerDefaults::validate_dynamic(name, value) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(config = %name, error = %e, "ignoring stored dynamic broker config");
                    false
                }
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    match statics.with_dynamic(&valid(cluster_default), &valid(this_broker)) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring the stored dynamic broker configs");
            statics
        }
    }
}

fn sync_dir_blocking(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// Kafka cluster ids are 16 random bytes in URL-safe base64 without padding.
pub(crate) fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = Uuid::new_v4().into_bytes();
    let mut out = String::with_capacity(22);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
    }

    #[test]
    fn owners_spread_and_are_stable() {
        let owners: Vec<usize> = (0..12).map(|p| owner_of("t", p, 2)).collect();
        assert_eq!(owners.iter().filter(|&&s| s == 0).count(), 6);
        assert_eq!(
            owners,
            (0..12).map(|p| owner_of("t", p, 2)).collect::<Vec<_>>()
        );
        assert!((0..100).all(|p| owner_of("x", p, 1) == 0));
    }

    #[test]
    fn legacy_files_are_read_and_retired() {
        let dir = tempfile::tempdir().unwrap();
        let meta_dir = dir.path().join("meta");
        std::fs::create_dir_all(&meta_dir).unwrap();
        assert!(LegacyMeta::new(dir.path()).read().unwrap().is_none());
        let id = Uuid::new_v4();
        std::fs::write(
            meta_dir.join("topics.json"),
            format!(
                r#"{{"version": 4, "cluster_id": "abc", "topics": [{{"name": "t", "id": "{id}", "partitions": 2, "configs": {{"retention.ms": "1000"}}}}], "dynamic_broker_configs": {{"cluster_default": {{"log.retention.ms": "5"}}}}}}"#
            ),
        )
        .unwrap();
        crate::log::producer_state::write_pid_file(&meta_dir.join("producer_ids"), 5000).unwrap();
        let legacy = LegacyMeta::new(dir.path()).read().unwrap().unwrap();
        assert_eq!(legacy.cluster_id, "abc");
        assert_eq!(legacy.producer_ids_reserved_end, 5000);
        assert_eq!(legacy.topics.len(), 1);
        assert_eq!(legacy.topics[0].id, id);
        assert!(legacy.topics[0].assignments.is_empty());
        assert_eq!(
            legacy
                .cluster_configs
                .get("log.retention.ms")
                .map(String::as_str),
            Some("5")
        );
        LegacyMeta::new(dir.path()).retire().unwrap();
        assert!(LegacyMeta::new(dir.path()).read().unwrap().is_none());
        assert!(meta_dir.join("topics.json.migrated").exists());
        // A corrupt legacy file stops the start-up rather than resetting ids.
        std::fs::write(meta_dir.join("producer_ids"), b"junk").unwrap();
        assert!(LegacyMeta::new(dir.path()).read().is_err());
    }

    #[test]
    fn cluster_id_shape() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert_ne!(id, new_cluster_id());
    }
}
