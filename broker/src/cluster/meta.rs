//! Cluster metadata: topics, their partition counts, ids and configs, and which shard owns each
//! partition.
//!
//! One writer (the controller on shard 0, see [`crate::cluster::controller`]) changes it; every shard holds
//! an immutable [`MetaSnapshot`] behind an `Arc` and swaps it when the controller publishes a new
//! one, so readers never block. The dynamic broker configs (AlterConfigs on the BROKER resource)
//! are part of it: [`MetaSnapshot::broker`] is the broker's effective Kafka settings, and every
//! topic's resolved config in the snapshot was built against exactly those. The snapshot is persisted as `meta/topics.json` in the data dir
//! (write to a temp file, fsync, rename, fsync the directory) before it is published.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::log::topic_config::{BrokerDefaults, DynamicLevel, TopicConfig};

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
    #[serde(skip)]
    pub config: TopicConfig,
}

#[derive(Debug, Serialize, Deserialize)]
struct MetaFile {
    version: u64,
    cluster_id: String,
    topics: Vec<TopicMeta>,
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

    fn rebuild_index(&mut self) {
        self.by_id = self
            .topics
            .values()
            .map(|t| (t.id, t.name.clone()))
            .collect();
    }

    pub fn with_topics(&self, topics: BTreeMap<String, Arc<TopicMeta>>) -> MetaSnapshot {
        let mut next = MetaSnapshot {
            version: self.version + 1,
            cluster_id: self.cluster_id.clone(),
            topics,
            by_id: HashMap::new(),
            shards: self.shards,
            broker: self.broker.clone(),
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

/// The on-disk home of the metadata; only the controller writes it.
pub struct MetaStore {
    path: PathBuf,
}

impl MetaStore {
    pub fn new(data_dir: &Path) -> MetaStore {
        MetaStore {
            path: data_dir.join("meta").join("topics.json"),
        }
    }

    /// Load the snapshot from disk, or make the first one (with a fresh cluster id).
    /// `broker`: the config file's settings; the stored dynamic broker configs go on top.
    pub fn load(&self, shards: usize, broker: &BrokerDefaults) -> anyhow::Result<MetaSnapshot> {
        let mut snapshot = MetaSnapshot {
            version: 0,
            cluster_id: new_cluster_id(),
            topics: BTreeMap::new(),
            by_id: HashMap::new(),
            shards,
            broker: Arc::new(broker.statics_only()),
        };
        match std::fs::read(&self.path) {
            Ok(bytes) => {
                let file: MetaFile = serde_json::from_slice(&bytes)
                    .with_context(|| format!("parsing {}", self.path.display()))?;
                snapshot.version = file.version;
                snapshot.cluster_id = file.cluster_id;
                let dynamic = file.dynamic_broker_configs;
                snapshot.broker = Arc::new(with_stored_dynamic(broker, &dynamic));
                let broker = &*snapshot.broker.clone();
                for mut topic in file.topics {
                    topic.config =
                        TopicConfig::from_map(topic.configs.clone(), broker).map_err(|e| {
                            anyhow::anyhow!("stored config of topic {}: {e}", topic.name)
                        })?;
                    snapshot.topics.insert(topic.name.clone(), Arc::new(topic));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.save(&snapshot)?;
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.path.display())),
        }
        snapshot.rebuild_index();
        Ok(snapshot)
    }

    /// Durably replace the stored metadata with `snapshot`.
    pub fn save(&self, snapshot: &MetaSnapshot) -> anyhow::Result<()> {
        let dir = self.path.parent().context("meta path has a parent")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let file = MetaFile {
            version: snapshot.version,
            cluster_id: snapshot.cluster_id.clone(),
            topics: snapshot.topics.values().map(|t| (**t).clone()).collect(),
            dynamic_broker_configs: DynamicBrokerConfigs {
                cluster_default: snapshot.broker.dynamic_map(DynamicLevel::ClusterDefault),
                this_broker: snapshot.broker.dynamic_map(DynamicLevel::ThisBroker),
            },
        };
        let bytes = serde_json::to_vec_pretty(&file)?;
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut f = std::fs::File::create(&tmp)
                .with_context(|| format!("creating {}", tmp.display()))?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    }
}

/// The config file's settings with the stored dynamic broker configs. A stored config that is
/// no longer valid (an upgrade changed the rules, the file's settings now conflict with it) is
/// dropped with a warning rather than keeping the broker from starting.
fn with_stored_dynamic(broker: &BrokerDefaults, stored: &DynamicBrokerConfigs) -> BrokerDefaults {
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
    match statics.with_dynamic(&valid(&stored.cluster_default), &valid(&stored.this_broker)) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring the stored dynamic broker configs");
            statics
        }
    }
}

/// Kafka cluster ids are 16 random bytes in URL-safe base64 without padding.
fn new_cluster_id() -> String {
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
    fn dynamic_broker_configs_persist_and_resolve_topics() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::new(dir.path());
        let file_settings =
            BrokerDefaults::from_pairs([("log.retention.hours".into(), "24".into())]).unwrap();
        let first = store.load(1, &file_settings).unwrap();
        let dynamic = file_settings
            .with_dynamic(
                &[("log.retention.ms".to_string(), "60000".to_string())].into(),
                &[("message.max.bytes".to_string(), "2000".to_string())].into(),
            )
            .unwrap();
        let config = TopicConfig::defaults(&dynamic);
        let topic = Arc::new(TopicMeta {
            name: "t".into(),
            id: Uuid::new_v4(),
            partitions: 1,
            configs: BTreeMap::new(),
            internal: false,
            config,
        });
        let next = first.with_broker(dynamic.clone(), [("t".to_string(), topic)].into());
        store.save(&next).unwrap();
        let loaded = store.load(1, &file_settings).unwrap();
        assert_eq!(*loaded.broker, dynamic);
        let settings = loaded.topic("t").unwrap().config.settings().clone();
        assert_eq!(settings.retention_ms, 60_000);
        assert_eq!(settings.max_message_bytes, 2000);
        // A stored config that became invalid is dropped, not fatal.
        let text = std::fs::read_to_string(dir.path().join("meta/topics.json")).unwrap();
        let broken = text.replace("\"message.max.bytes\"", "\"num.partitions\"");
        std::fs::write(dir.path().join("meta/topics.json"), broken).unwrap();
        let loaded = store.load(1, &file_settings).unwrap();
        assert_eq!(
            loaded.broker.message_max_bytes(),
            file_settings.message_max_bytes()
        );
        assert_eq!(loaded.broker.log_retention_ms(), 60_000);
    }

    #[test]
    fn cluster_id_shape() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert_ne!(id, new_cluster_id());
    }
}
