//! Cluster metadata: topics, their partition counts, ids and configs, and which shard owns each
//! partition.
//!
//! One writer (the controller on shard 0, see [`crate::controller`]) changes it; every shard holds
//! an immutable [`MetaSnapshot`] behind an `Arc` and swaps it when the controller publishes a new
//! one, so readers never block. The snapshot is persisted as `meta/topics.json` in the data dir
//! (write to a temp file, fsync, rename, fsync the directory) before it is published.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::topic_config::TopicConfig;

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
}

/// An immutable view of the cluster metadata.
#[derive(Debug, Clone)]
pub struct MetaSnapshot {
    pub version: u64,
    pub cluster_id: String,
    pub topics: BTreeMap<String, Arc<TopicMeta>>,
    pub by_id: HashMap<Uuid, String>,
    pub shards: usize,
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
        };
        next.rebuild_index();
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
    pub fn load(
        &self,
        shards: usize,
        broker: &crate::topic_config::BrokerDefaults,
    ) -> anyhow::Result<MetaSnapshot> {
        let mut snapshot = MetaSnapshot {
            version: 0,
            cluster_id: new_cluster_id(),
            topics: BTreeMap::new(),
            by_id: HashMap::new(),
            shards,
        };
        match std::fs::read(&self.path) {
            Ok(bytes) => {
                let file: MetaFile = serde_json::from_slice(&bytes)
                    .with_context(|| format!("parsing {}", self.path.display()))?;
                snapshot.version = file.version;
                snapshot.cluster_id = file.cluster_id;
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
    fn cluster_id_shape() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert_ne!(id, new_cluster_id());
    }
}
