//! The metadata image and its store: topics (partition counts, ids, configs), which shard owns
//! each partition, the broker's effective Kafka settings (the config file's plus the dynamic
//! broker configs set by AlterConfigs on the BROKER resource; every topic's resolved config in
//! an image was built against exactly those), and the end of the durably reserved producer-id
//! range.
//!
//! Owns: [`MetaSnapshot`] (the image), [`owner_of`] (placement), topic-name rules and
//! [`MetaStore`], the image's on-disk home `meta/topics.json` in the data dir.
//!
//! Invariants: one writer changes the image (the controller shell on shard 0, deciding with
//! [`crate::cluster::controller`]); each change makes a new snapshot with `version + 1`, and a
//! snapshot is durable before any shard sees it. The file is replaced crash-safely: written to
//! a temp file, fdatasync'ed, renamed over the old one, then the directory is synced, so after
//! a crash the file holds either the old or the new image, whole. `producer_ids_reserved_end`
//! only grows: every producer id ever handed out is below the persisted value.
//!
//! Runs on: [`MetaStore::load`] once at start-up, before the executors (blocking `std::fs`);
//! [`MetaStore::save`] on shard 0 with glommio file I/O (io_uring; glommio runs the rename on
//! its blocking-thread pool), so persisting never blocks the reactor. Snapshots are read on
//! every shard.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tracing::info;
use uuid::Uuid;

use crate::log::producer_state::read_legacy_reserved_end;
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

/// Why persisting the image failed. The stored file then holds the previous image or (when
/// the failure came after the rename) the new one, whole either way.
#[derive(Debug, thiserror::Error)]
pub enum MetaStoreError {
    #[error("encoding the metadata image: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The on-disk home of the metadata; only the controller shell writes it.
pub struct MetaStore {
    path: PathBuf,
}

impl MetaStore {
    pub fn new(data_dir: &Path) -> MetaStore {
        MetaStore {
            path: data_dir.join("meta").join("topics.json"),
        }
    }

    fn dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    fn tmp_path(&self) -> PathBuf {
        self.path.with_extension("json.tmp")
    }

    /// The file that held the producer-id reservation before it moved into the image.
    fn legacy_producer_ids_path(&self) -> PathBuf {
        self.dir().join("producer_ids")
    }

    /// Load the snapshot from disk, or make the first one (with a fresh cluster id). Blocking:
    /// call before the executors start.
    ///
    /// Upgrade: if the legacy `meta/producer_ids` file exists, its reserved end is folded into
    /// the image (the larger of the two wins), the image is saved, and the legacy file removed,
    /// so producer ids never go backwards. A crash in between only repeats this next time.
    ///
    /// `broker`: the config file's settings; the stored dynamic broker configs go on top.
    pub fn load(&self, shards: usize, broker: &BrokerDefaults) -> anyhow::Result<MetaSnapshot> {
        let mut snapshot = MetaSnapshot {
            version: 0,
            cluster_id: new_cluster_id(),
            topics: BTreeMap::new(),
            by_id: HashMap::new(),
            shards,
            broker: Arc::new(broker.statics_only()),
            producer_ids_reserved_end: 0,
        };
        let mut dirty = false;
        match std::fs::read(&self.path) {
            Ok(bytes) => {
                let file: MetaFile = serde_json::from_slice(&bytes)
                    .with_context(|| format!("parsing {}", self.path.display()))?;
                anyhow::ensure!(
                    file.producer_ids_reserved_end >= 0,
                    "{}: negative producer_ids_reserved_end",
                    self.path.display()
                );
                snapshot.version = file.version;
                snapshot.cluster_id = file.cluster_id;
                snapshot.producer_ids_reserved_end = file.producer_ids_reserved_end;
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
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => dirty = true,
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.path.display())),
        }
        let legacy_path = self.legacy_producer_ids_path();
        let legacy = read_legacy_reserved_end(&legacy_path)
            .map_err(|e| anyhow::anyhow!("producer id allocator: {e}"))?;
        if let Some(end) = legacy {
            if end > snapshot.producer_ids_reserved_end {
                snapshot.producer_ids_reserved_end = end;
                snapshot.version += 1;
                dirty = true;
            }
        }
        if dirty {
            self.save_blocking(&snapshot)?;
        }
        if legacy.is_some() {
            info!(
                reserved_end = snapshot.producer_ids_reserved_end,
                "moved the producer-id reservation into the metadata image"
            );
            std::fs::remove_file(&legacy_path)
                .with_context(|| format!("removing {}", legacy_path.display()))?;
            sync_dir_blocking(&self.dir())?;
        }
        snapshot.rebuild_index();
        Ok(snapshot)
    }

    fn encode(snapshot: &MetaSnapshot) -> Result<Vec<u8>, MetaStoreError> {
        let file = MetaFile {
            version: snapshot.version,
            cluster_id: snapshot.cluster_id.clone(),
            topics: snapshot.topics.values().map(|t| (**t).clone()).collect(),
            producer_ids_reserved_end: snapshot.producer_ids_reserved_end,
            dynamic_broker_configs: DynamicBrokerConfigs {
                cluster_default: snapshot.broker.dynamic_map(DynamicLevel::ClusterDefault),
                this_broker: snapshot.broker.dynamic_map(DynamicLevel::ThisBroker),
            },
        };
        Ok(serde_json::to_vec_pretty(&file)?)
    }

    /// [`MetaStore::save`] with blocking `std::fs`, for start-up (no executor yet).
    fn save_blocking(&self, snapshot: &MetaSnapshot) -> anyhow::Result<()> {
        let dir = self.dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let bytes = Self::encode(snapshot)?;
        let tmp = self.tmp_path();
        {
            let mut f = std::fs::File::create(&tmp)
                .with_context(|| format!("creating {}", tmp.display()))?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        sync_dir_blocking(&dir)
    }

    /// Durably replace the stored metadata with `snapshot`: temp file, fdatasync, rename,
    /// directory sync, all through glommio (never blocks the reactor). Call on an executor;
    /// the directory exists since [`MetaStore::load`].
    pub async fn save(&self, snapshot: &MetaSnapshot) -> Result<(), MetaStoreError> {
        let bytes = Self::encode(snapshot)?;
        let tmp = self.tmp_path();
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |e: glommio::GlommioError<()>| MetaStoreError::Io {
                op,
                path,
                source: e.into(),
            }
        };
        let file = glommio::io::BufferedFile::create(&tmp)
            .await
            .map_err(io("creating", &tmp))?;
        let mut written = 0;
        while written < bytes.len() {
            let n = file
                .write_at(bytes[written..].to_vec(), written as u64)
                .await
                .map_err(io("writing", &tmp))?;
            if n == 0 {
                return Err(MetaStoreError::Io {
                    op: "writing",
                    path: tmp,
                    source: std::io::ErrorKind::WriteZero.into(),
                });
            }
            written += n;
        }
        // A new file: fdatasync also makes its size durable.
        file.fdatasync().await.map_err(io("syncing", &tmp))?;
        file.close().await.map_err(io("closing", &tmp))?;
        glommio::io::rename(&tmp, &self.path)
            .await
            .map_err(io("renaming", &tmp))?;
        let dir_path = self.dir();
        let dir = glommio::io::Directory::open(&dir_path)
            .await
            .map_err(io("opening", &dir_path))?;
        dir.sync().await.map_err(io("syncing", &dir_path))?;
        dir.close().await.map_err(io("closing", &dir_path))?;
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

fn sync_dir_blocking(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
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

    fn run<Fut>(f: impl FnOnce() -> Fut + Send + 'static) -> Fut::Output
    where
        Fut: std::future::Future + 'static,
        Fut::Output: Send + 'static,
    {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(512 << 10)
            .spawn(f)
            .expect("spawn executor")
            .join()
            .expect("executor thread")
    }

    fn topic(name: &str, partitions: i32) -> Arc<TopicMeta> {
        Arc::new(TopicMeta {
            name: name.into(),
            id: Uuid::new_v4(),
            partitions,
            configs: BTreeMap::new(),
            internal: false,
            config: TopicConfig::default(),
        })
    }

    #[test]
    fn saved_with_glommio_and_loaded_back() {
        let dir = tempfile::tempdir().unwrap();
        let broker = BrokerDefaults::default();
        let first = MetaStore::new(dir.path()).load(2, &broker).unwrap();
        assert_eq!((first.version, first.producer_ids_reserved_end), (0, 0));
        let mut topics = BTreeMap::new();
        topics.insert("a".to_string(), topic("a", 3));
        let next = first
            .with_topics(topics)
            .with_producer_ids_reserved_end(3000);
        assert_eq!(next.version, 2);
        let expected = next.clone();
        let data_dir = dir.path().to_path_buf();
        run(move || async move { MetaStore::new(&data_dir).save(&next).await }).unwrap();
        let loaded = MetaStore::new(dir.path()).load(2, &broker).unwrap();
        assert_eq!(loaded.version, 2);
        assert_eq!(loaded.cluster_id, first.cluster_id);
        assert_eq!(loaded.producer_ids_reserved_end, 3000);
        let a = loaded.topic("a").unwrap();
        assert_eq!(a.partitions, 3);
        assert_eq!(a.id, expected.topic("a").unwrap().id);
        assert_eq!(
            loaded.topic_by_id(&a.id).map(|t| t.name.as_str()),
            Some("a")
        );
        assert!(!dir.path().join("meta/topics.json.tmp").exists());
    }

    #[test]
    fn old_meta_files_load_and_the_legacy_producer_id_file_is_folded_in() {
        let dir = tempfile::tempdir().unwrap();
        let meta_dir = dir.path().join("meta");
        std::fs::create_dir_all(&meta_dir).unwrap();
        // A file written before producer ids moved into the image.
        let id = Uuid::new_v4();
        std::fs::write(
            meta_dir.join("topics.json"),
            format!(
                r#"{{"version": 4, "cluster_id": "abc", "topics": [{{"name": "t", "id": "{id}", "partitions": 2, "configs": {{}}}}]}}"#
            ),
        )
        .unwrap();
        crate::log::producer_state::write_pid_file(&meta_dir.join("producer_ids"), 5000).unwrap();
        let broker = BrokerDefaults::default();
        let loaded = MetaStore::new(dir.path()).load(1, &broker).unwrap();
        assert_eq!(loaded.producer_ids_reserved_end, 5000);
        assert_eq!(loaded.version, 5, "the fold is a new version");
        assert_eq!(loaded.topic("t").map(|t| t.id), Some(id));
        assert!(!meta_dir.join("producer_ids").exists(), "read once");
        // Persisted: a second start needs no legacy file.
        let again = MetaStore::new(dir.path()).load(1, &broker).unwrap();
        assert_eq!((again.version, again.producer_ids_reserved_end), (5, 5000));
        // A stale legacy file (a crash before it was removed) never moves the end back.
        crate::log::producer_state::write_pid_file(&meta_dir.join("producer_ids"), 1000).unwrap();
        let third = MetaStore::new(dir.path()).load(1, &broker).unwrap();
        assert_eq!((third.version, third.producer_ids_reserved_end), (5, 5000));
        assert!(!meta_dir.join("producer_ids").exists());
        // A corrupt legacy file stops the start-up rather than resetting ids.
        std::fs::write(meta_dir.join("producer_ids"), b"junk").unwrap();
        assert!(MetaStore::new(dir.path()).load(1, &broker).is_err());
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
        store.save_blocking(&next).unwrap();
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
