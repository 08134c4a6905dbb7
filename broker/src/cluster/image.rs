//! The replicated cluster metadata: the records of the metadata log and the image they build.
//!
//! Owns: [`MetaRecord`] (what the controller quorum's log holds, Kafka's metadata records in
//! spirit: topics with their partition assignments, removals, producer-id reservations,
//! dynamic configs, broker registrations and fencing), [`ClusterImage`] (the state every node
//! builds by applying them in log order), [`diff`] (the records that take one
//! [`MetaSnapshot`] to another, so the I/O-free [`crate::cluster::controller`] keeps deciding
//! in terms of whole images) and [`place_replicas`] (which brokers get a new partition).
//!
//! Invariants: applying is deterministic — every node that applies the same records in the
//! same order holds the same image (only the topic configs' resolution differs: each node
//! resolves them against its own config file and its own dynamic broker configs). A record
//! that does not fit the image (a stale registration, an unknown broker) changes nothing, on
//! every node alike. A partition's leader is always a live (registered, unfenced) replica or
//! -1; every leader change bumps the leader epoch and the partition epoch.
//!
//! Runs on: the controller thread (the quorum's state machine); the [`MetaSnapshot`]s it makes
//! are published to every shard. No I/O here.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing::warn;
use uuid::Uuid;

use crate::cluster::meta::{
    with_stored_dynamic, BrokerInfo, MetaSnapshot, PartitionAssignment, TopicMeta,
};
use crate::log::topic_config::{BrokerDefaults, DynamicLevel, TopicConfig};

/// One entry of the metadata log; a command is a batch of them, applied atomically.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MetaRecord {
    /// The first record of a cluster: its id and, when a single-node data dir is upgraded,
    /// the image migrated from it. Ignored once the cluster has an id.
    Bootstrap {
        cluster_id: String,
        topics: Vec<TopicMeta>,
        producer_ids_reserved_end: i64,
        cluster_configs: BTreeMap<String, String>,
        broker_configs: BTreeMap<i32, BTreeMap<String, String>>,
    },
    /// A topic created or changed (partitions added, configs altered, assignments moved).
    PutTopic(TopicMeta),
    RemoveTopic {
        name: String,
        id: Uuid,
    },
    /// The producer-id range reserved so far (only grows).
    ProducerIds {
        reserved_end: i64,
    },
    /// Dynamic broker configs: the cluster-wide defaults.
    ClusterConfigs(BTreeMap<String, String>),
    /// Dynamic broker configs of one broker.
    BrokerConfigs {
        broker: i32,
        configs: BTreeMap<String, String>,
    },
    /// A broker (re)registered; its epoch becomes the index of this record. A registration
    /// leaves it unfenced and elects it leader of the offline partitions it is in sync for.
    RegisterBroker(BrokerInfo),
    /// The broker missed its session or asked to shut down: it leads nothing any more.
    FenceBroker {
        id: i32,
        epoch: i64,
    },
    /// The broker is back (heartbeats again, same registration).
    UnfenceBroker {
        id: i32,
        epoch: i64,
    },
}

/// The data a node needs to turn the replicated image into its own [`MetaSnapshot`].
#[derive(Debug, Clone)]
pub struct NodeView {
    pub node_id: i32,
    pub shards: usize,
    /// The config file's Kafka settings (no dynamic configs).
    pub statics: BrokerDefaults,
}

/// The state built from the metadata log (see the module docs).
#[derive(Debug, Clone)]
pub struct ClusterImage {
    view: NodeView,
    /// The log index of the last record applied (the image version).
    pub applied: u64,
    pub cluster_id: Option<String>,
    /// Topic configs resolved against this node's broker settings.
    topics: BTreeMap<String, Arc<TopicMeta>>,
    producer_ids_reserved_end: i64,
    cluster_configs: BTreeMap<String, String>,
    broker_configs: BTreeMap<i32, BTreeMap<String, String>>,
    brokers: Arc<BTreeMap<i32, BrokerInfo>>,
    /// The node's effective settings: statics plus its dynamic configs.
    broker: Arc<BrokerDefaults>,
}

/// The serialized form of a [`ClusterImage`] (snapshots of the metadata log).
#[derive(Debug, Serialize, Deserialize)]
struct ImageFile {
    applied: u64,
    cluster_id: Option<String>,
    topics: Vec<TopicMeta>,
    producer_ids_reserved_end: i64,
    cluster_configs: BTreeMap<String, String>,
    broker_configs: BTreeMap<i32, BTreeMap<String, String>>,
    brokers: Vec<BrokerInfo>,
}

impl ClusterImage {
    pub fn empty(view: NodeView) -> ClusterImage {
        let broker = Arc::new(view.statics.statics_only());
        ClusterImage {
            view,
            applied: 0,
            cluster_id: None,
            topics: BTreeMap::new(),
            producer_ids_reserved_end: 0,
            cluster_configs: BTreeMap::new(),
            broker_configs: BTreeMap::new(),
            brokers: Arc::new(BTreeMap::new()),
            broker,
        }
    }

    pub fn view(&self) -> &NodeView {
        &self.view
    }

    pub fn is_bootstrapped(&self) -> bool {
        self.cluster_id.is_some()
    }

    pub fn brokers(&self) -> &BTreeMap<i32, BrokerInfo> {
        &self.brokers
    }

    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&ImageFile {
            applied: self.applied,
            cluster_id: self.cluster_id.clone(),
            topics: self.topics.values().map(|t| (**t).clone()).collect(),
            producer_ids_reserved_end: self.producer_ids_reserved_end,
            cluster_configs: self.cluster_configs.clone(),
            broker_configs: self.broker_configs.clone(),
            brokers: self.brokers.values().cloned().collect(),
        })
    }

    pub fn decode(view: NodeView, bytes: &[u8]) -> Result<ClusterImage, serde_json::Error> {
        let file: ImageFile = serde_json::from_slice(bytes)?;
        let mut image = ClusterImage::empty(view);
        image.applied = file.applied;
        image.cluster_id = file.cluster_id;
        image.producer_ids_reserved_end = file.producer_ids_reserved_end;
        image.cluster_configs = file.cluster_configs;
        image.broker_configs = file.broker_configs;
        image.brokers = Arc::new(file.brokers.into_iter().map(|b| (b.id, b)).collect());
        image.resolve_broker();
        for topic in file.topics {
            image.put_topic(topic);
        }
        Ok(image)
    }

    /// The node's settings from the config file plus the stored dynamic configs.
    fn resolve_broker(&mut self) {
        let empty = BTreeMap::new();
        let mine = self
            .broker_configs
            .get(&self.view.node_id)
            .unwrap_or(&empty);
        self.broker = Arc::new(with_stored_dynamic(
            &self.view.statics,
            &self.cluster_configs,
            mine,
        ));
    }

    fn resolve_all_topics(&mut self) {
        let topics = std::mem::take(&mut self.topics);
        for (_, topic) in topics {
            self.put_topic((*topic).clone());
        }
    }

    fn put_topic(&mut self, mut topic: TopicMeta) {
        topic.config = TopicConfig::from_map(topic.configs.clone(), &self.broker).unwrap_or_else(
            |e| {
                tracing::warn!(topic = %topic.name, error = %e, "stored topic config does not resolve; using the defaults");
                TopicConfig::defaults(&self.broker)
            },
        );
        let n = usize::try_from(topic.partitions).unwrap_or(0);
        if topic.assignments.len() != n {
            tracing::warn!(topic = %topic.name, partitions = n, assignments = topic.assignments.len(), "topic record without an assignment per partition; the missing ones are offline");
            topic.assignments.resize(
                n,
                PartitionAssignment {
                    replicas: Vec::new(),
                    leader: -1,
                    leader_epoch: 0,
                    isr: Vec::new(),
                    partition_epoch: 0,
                    adding: Vec::new(),
                    removing: Vec::new(),
                },
            );
        }
        self.topics.insert(topic.name.clone(), Arc::new(topic));
    }

    /// Apply the records of the log entry at `index`, in order.
    pub fn apply(&mut self, index: u64, records: &[MetaRecord]) {
        for record in records {
            self.apply_one(index, record);
        }
        self.applied = self.applied.max(index);
    }

    fn apply_one(&mut self, index: u64, record: &MetaRecord) {
        match record {
            MetaRecord::Bootstrap {
                cluster_id,
                topics,
                producer_ids_reserved_end,
                cluster_configs,
                broker_configs,
            } => {
                if self.cluster_id.is_some() {
                    return;
                }
                self.cluster_id = Some(cluster_id.clone());
                self.producer_ids_reserved_end = *producer_ids_reserved_end;
                self.cluster_configs = cluster_configs.clone();
                self.broker_configs = broker_configs.clone();
                self.resolve_broker();
                for topic in topics {
                    self.put_topic(topic.clone());
                }
            }
            MetaRecord::PutTopic(topic) => self.put_topic(topic.clone()),
            MetaRecord::RemoveTopic { name, id } => {
                if self.topics.get(name).is_some_and(|t| t.id == *id) {
                    self.topics.remove(name);
                }
            }
            MetaRecord::ProducerIds { reserved_end } => {
                self.producer_ids_reserved_end = self.producer_ids_reserved_end.max(*reserved_end)
            }
            MetaRecord::ClusterConfigs(configs) => {
                self.cluster_configs = configs.clone();
                self.resolve_broker();
                self.resolve_all_topics();
            }
            MetaRecord::BrokerConfigs { broker, configs } => {
                if configs.is_empty() {
                    self.broker_configs.remove(broker);
                } else {
                    self.broker_configs.insert(*broker, configs.clone());
                }
                if *broker == self.view.node_id {
                    self.resolve_broker();
                    self.resolve_all_topics();
                }
            }
            MetaRecord::RegisterBroker(info) => {
                let mut info = info.clone();
                info.epoch = i64::try_from(index).unwrap_or(i64::MAX);
                info.fenced = false;
                let id = info.id;
                Arc::make_mut(&mut self.brokers).insert(id, info);
                self.elect_offline_leaders(id);
            }
            MetaRecord::FenceBroker { id, epoch } => {
                let Some(b) = self.brokers.get(id) else {
                    return;
                };
                if b.epoch != *epoch || b.fenced {
                    return;
                }
                if let Some(b) = Arc::make_mut(&mut self.brokers).get_mut(id) {
                    b.fenced = true;
                }
                self.move_leadership_from(*id);
            }
            MetaRecord::UnfenceBroker { id, epoch } => {
                let Some(b) = self.brokers.get(id) else {
                    return;
                };
                if b.epoch != *epoch || !b.fenced {
                    return;
                }
                if let Some(b) = Arc::make_mut(&mut self.brokers).get_mut(id) {
                    b.fenced = false;
                }
                self.elect_offline_leaders(*id);
            }
        }
    }

    pub(crate) fn is_live(&self, id: i32) -> bool {
        self.brokers.get(&id).is_some_and(|b| !b.fenced)
    }

    /// A fenced broker leads nothing: each partition it led goes to the next live in-sync
    /// replica, or offline (-1) when there is none (unclean election is off). The ISR keeps
    /// the fenced broker only when it is the last member (Kafka does the same: the last
    /// in-sync replica stays recorded so it can lead again without data loss).
    fn move_leadership_from(&mut self, id: i32) {
        let live: Vec<i32> = self
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| b.id)
            .collect();
        for topic in self.topics.values_mut() {
            if !topic
                .assignments
                .iter()
                .any(|a| a.leader == id || (a.isr.contains(&id) && a.isr.len() > 1))
            {
                continue;
            }
            let unclean = unclean_allowed(topic);
            let t = Arc::make_mut(topic);
            for a in &mut t.assignments {
                let mut changed = false;
                if a.isr.contains(&id) && a.isr.len() > 1 {
                    a.isr.retain(|r| *r != id);
                    changed = true;
                }
                if a.leader == id {
                    a.leader = a
                        .replicas
                        .iter()
                        .copied()
                        .find(|r| *r != id && a.isr.contains(r) && live.contains(r))
                        .unwrap_or(-1);
                    if a.leader == -1 && unclean {
                        if let Some(r) = a.replicas.iter().copied().find(|r| live.contains(r)) {
                            warn!(topic = %t.name, leader = r, isr = ?a.isr, "unclean leader election: no in-sync replica is live; electing an out-of-sync one (records may be lost)");
                            a.leader = r;
                            a.isr = vec![r];
                        }
                    }
                    a.leader_epoch += 1;
                    changed = true;
                }
                if changed {
                    a.partition_epoch += 1;
                }
            }
        }
    }

    /// A broker that (re)joined leads the offline partitions whose ISR names it (and, with
    /// `unclean.leader.election.enable` set on the topic, those it merely holds a replica of).
    fn elect_offline_leaders(&mut self, id: i32) {
        if !self.is_live(id) {
            return;
        }
        for topic in self.topics.values_mut() {
            let unclean = unclean_allowed(topic);
            if !topic.assignments.iter().any(|a| {
                a.leader == -1 && (a.isr.contains(&id) || (unclean && a.replicas.contains(&id)))
            }) {
                continue;
            }
            let t = Arc::make_mut(topic);
            for a in &mut t.assignments {
                if a.leader == -1 && a.isr.contains(&id) {
                    a.leader = id;
                    a.leader_epoch += 1;
                    a.partition_epoch += 1;
                } else if a.leader == -1 && unclean && a.replicas.contains(&id) {
                    warn!(topic = %t.name, leader = id, isr = ?a.isr, "unclean leader election: electing an out-of-sync replica (records may be lost)");
                    a.leader = id;
                    a.isr = vec![id];
                    a.leader_epoch += 1;
                    a.partition_epoch += 1;
                }
            }
        }
    }

    /// The image as this node's shards see it.
    pub fn snapshot(&self) -> MetaSnapshot {
        self.snapshot_for(self.view.node_id)
    }

    /// The image as broker `node_id` would see it (its own dynamic configs resolved): the
    /// active controller decides a forwarded AlterConfigs of a broker resource on it.
    pub fn snapshot_for(&self, node_id: i32) -> MetaSnapshot {
        let (topics, broker) = if node_id == self.view.node_id {
            (self.topics.clone(), self.broker.clone())
        } else {
            let mut other = self.clone();
            other.view.node_id = node_id;
            other.resolve_broker();
            other.resolve_all_topics();
            (other.topics, other.broker)
        };
        let mut snapshot = MetaSnapshot {
            version: self.applied,
            cluster_id: self.cluster_id.clone().unwrap_or_default(),
            topics,
            by_id: HashMap::new(),
            shards: self.view.shards,
            broker,
            producer_ids_reserved_end: self.producer_ids_reserved_end,
            node_id,
            brokers: self.brokers.clone(),
        };
        snapshot.rebuild_index();
        snapshot
    }
}

/// Whether two topic records differ in anything the log holds (not the resolved config).
fn topic_changed(a: &TopicMeta, b: &TopicMeta) -> bool {
    a.id != b.id
        || a.partitions != b.partitions
        || a.configs != b.configs
        || a.internal != b.internal
        || a.assignments != b.assignments
}

/// The records that take image `old` to `new` (both as seen by `new.node_id`): what the
/// controller's decision is written to the log as.
pub fn diff(old: &MetaSnapshot, new: &MetaSnapshot) -> Vec<MetaRecord> {
    let mut records = Vec::new();
    for (name, topic) in &old.topics {
        if new.topics.get(name).is_none_or(|t| t.id != topic.id) {
            records.push(MetaRecord::RemoveTopic {
                name: name.clone(),
                id: topic.id,
            });
        }
    }
    for (name, topic) in &new.topics {
        let changed = match old.topics.get(name) {
            None => true,
            Some(o) => !Arc::ptr_eq(o, topic) && topic_changed(o, topic),
        };
        if changed {
            records.push(MetaRecord::PutTopic((**topic).clone()));
        }
    }
    if new.producer_ids_reserved_end != old.producer_ids_reserved_end {
        records.push(MetaRecord::ProducerIds {
            reserved_end: new.producer_ids_reserved_end,
        });
    }
    let cluster = new.broker.dynamic_map(DynamicLevel::ClusterDefault);
    if cluster != old.broker.dynamic_map(DynamicLevel::ClusterDefault) {
        records.push(MetaRecord::ClusterConfigs(cluster));
    }
    let mine = new.broker.dynamic_map(DynamicLevel::ThisBroker);
    if mine != old.broker.dynamic_map(DynamicLevel::ThisBroker) {
        records.push(MetaRecord::BrokerConfigs {
            broker: new.node_id,
            configs: mine,
        });
    }
    records
}

/// The replicas of each new partition `first..first + count` of `topic`: Kafka's
/// rack-alternating round robin over the live brokers. The brokers are ordered rack by rack
/// alternately (a, b, c, a, b, c, ...; brokers without a rack count as one rack), partition
/// `p`'s first replica is the broker at `(start + p) % n`, further replicas follow in that
/// order, so consecutive partitions spread their leaders over every broker and every rack.
/// `start` comes from the topic name, so the same request places the same way on every try.
/// `None` when there are fewer live brokers than `replication_factor`.
pub fn place_replicas(
    live: &[&BrokerInfo],
    topic: &str,
    first: i32,
    count: i32,
    replication_factor: usize,
) -> Option<Vec<Vec<i32>>> {
    if live.len() < replication_factor || replication_factor == 0 {
        return None;
    }
    let mut by_rack: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
    for b in live {
        by_rack.entry(b.rack.as_deref()).or_default().push(b.id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
    }
    let mut ordered = Vec::with_capacity(live.len());
    let mut round = 0;
    while ordered.len() < live.len() {
        for ids in by_rack.values() {
            if let Some(id) = ids.get(round) {
                ordered.push(*id);
            }
        }
        round += 1;
    }
    let n = ordered.len();
    let rack_of: HashMap<i32, Option<&str>> =
        live.iter().map(|b| (b.id, b.rack.as_deref())).collect();
    let racks = by_rack.len();
    let start = (crate::cluster::meta::topic_hash(topic) % n as u64) as usize;
    let out = (first..first.saturating_add(count))
        .map(|p| {
            let p = usize::try_from(p).unwrap_or(0);
            let mut chosen: Vec<i32> = Vec::with_capacity(replication_factor);
            // First pass: a rack not used yet while some rack is unused; second pass: any.
            for rack_aware in [true, false] {
                for i in 0..n {
                    if chosen.len() == replication_factor {
                        break;
                    }
                    let id = ordered[(start + p + i) % n];
                    if chosen.contains(&id) {
                        continue;
                    }
                    let used = |r: &i32| rack_of.get(r) == rack_of.get(&id);
                    let racks_used = chosen
                        .iter()
                        .map(|r| rack_of.get(r))
                        .collect::<std::collections::HashSet<_>>()
                        .len();
                    if rack_aware && racks_used < racks && chosen.iter().any(used) {
                        continue;
                    }
                    chosen.push(id);
                }
            }
            chosen
        })
        .collect();
    Some(out)
}

/// Whether the topic sets `unclean.leader.election.enable=true` itself. Only the topic's own
/// override counts here: applying the metadata log must give every node the same image, and
/// broker-level defaults may differ per node.
fn unclean_allowed(topic: &TopicMeta) -> bool {
    topic
        .configs
        .get("unclean.leader.election.enable")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(node_id: i32) -> NodeView {
        NodeView {
            node_id,
            shards: 2,
            statics: BrokerDefaults::default(),
        }
    }

    fn broker(id: i32, rack: Option<&str>) -> BrokerInfo {
        BrokerInfo {
            id,
            host: "127.0.0.1".into(),
            port: 9092 + id,
            rack: rack.map(str::to_string),
            controller_addr: None,
            incarnation: Uuid::new_v4(),
            epoch: 0,
            fenced: false,
        }
    }

    fn topic(name: &str, replicas: &[Vec<i32>]) -> TopicMeta {
        TopicMeta {
            name: name.into(),
            id: Uuid::new_v4(),
            partitions: replicas.len() as i32,
            configs: BTreeMap::new(),
            internal: false,
            assignments: replicas
                .iter()
                .map(|r| PartitionAssignment::new(r.clone()))
                .collect(),
            config: TopicConfig::default(),
        }
    }

    fn bootstrap() -> MetaRecord {
        MetaRecord::Bootstrap {
            cluster_id: "c".into(),
            topics: Vec::new(),
            producer_ids_reserved_end: 0,
            cluster_configs: BTreeMap::new(),
            broker_configs: BTreeMap::new(),
        }
    }

    #[test]
    fn fencing_moves_leaders_and_unfencing_brings_them_back() {
        let mut image = ClusterImage::empty(view(1));
        image.apply(1, &[bootstrap()]);
        image.apply(2, &[MetaRecord::RegisterBroker(broker(1, None))]);
        image.apply(3, &[MetaRecord::RegisterBroker(broker(2, None))]);
        image.apply(
            4,
            &[MetaRecord::PutTopic(topic(
                "t",
                &[vec![1], vec![2], vec![2, 1]],
            ))],
        );
        let epoch2 = image.brokers()[&2].epoch;
        assert_eq!(epoch2, 3, "the epoch is the registration's log index");
        // A stale epoch changes nothing.
        image.apply(5, &[MetaRecord::FenceBroker { id: 2, epoch: 99 }]);
        assert!(!image.brokers()[&2].fenced);
        image.apply(
            6,
            &[MetaRecord::FenceBroker {
                id: 2,
                epoch: epoch2,
            }],
        );
        let s = image.snapshot();
        let t = s.topic("t").unwrap();
        assert_eq!(t.assignments[0].leader, 1);
        let p1 = &t.assignments[1];
        assert_eq!(
            (p1.leader, p1.leader_epoch, p1.isr.clone()),
            (-1, 1, vec![2])
        );
        let p2 = &t.assignments[2];
        assert_eq!(
            (p2.leader, p2.leader_epoch, p2.isr.clone()),
            (1, 1, vec![1])
        );
        assert_eq!(s.live_brokers().count(), 1);
        image.apply(
            7,
            &[MetaRecord::UnfenceBroker {
                id: 2,
                epoch: epoch2,
            }],
        );
        let s = image.snapshot();
        let t = s.topic("t").unwrap();
        assert_eq!(
            (t.assignments[1].leader, t.assignments[1].leader_epoch),
            (2, 2)
        );
        assert_eq!(
            t.assignments[2].leader, 1,
            "an online partition keeps its leader"
        );
        assert_eq!(s.version, 7);
    }

    #[test]
    fn image_round_trips_and_bootstrap_happens_once() {
        let mut image = ClusterImage::empty(view(1));
        image.apply(1, &[bootstrap()]);
        image.apply(
            2,
            &[
                MetaRecord::RegisterBroker(broker(1, Some("a"))),
                MetaRecord::PutTopic(topic("x", &[vec![1]])),
                MetaRecord::ProducerIds { reserved_end: 3000 },
            ],
        );
        let mut other = bootstrap();
        if let MetaRecord::Bootstrap { cluster_id, .. } = &mut other {
            *cluster_id = "other".into();
        }
        image.apply(3, &[other]);
        assert_eq!(image.cluster_id.as_deref(), Some("c"));
        let back = ClusterImage::decode(view(1), &image.encode().unwrap()).unwrap();
        let (a, b) = (image.snapshot(), back.snapshot());
        assert_eq!(a.version, b.version);
        assert_eq!(a.producer_ids_reserved_end, 3000);
        assert_eq!(b.producer_ids_reserved_end, 3000);
        assert_eq!(
            a.topic("x").unwrap().assignments,
            b.topic("x").unwrap().assignments
        );
        assert_eq!(a.brokers, b.brokers);
    }

    #[test]
    fn diff_then_apply_reaches_the_new_image() {
        let mut image = ClusterImage::empty(view(1));
        image.apply(
            1,
            &[bootstrap(), MetaRecord::PutTopic(topic("gone", &[vec![1]]))],
        );
        image.apply(2, &[MetaRecord::PutTopic(topic("kept", &[vec![1]]))]);
        let old = image.snapshot();
        let mut topics = old.topics.clone();
        topics.remove("gone");
        topics.insert("new".into(), Arc::new(topic("new", &[vec![1], vec![1]])));
        let new = old.with_topics(topics).with_producer_ids_reserved_end(500);
        let records = diff(&old, &new);
        assert_eq!(records.len(), 3, "{records:?}");
        image.apply(3, &records);
        let got = image.snapshot();
        assert_eq!(
            got.topics.keys().collect::<Vec<_>>(),
            new.topics.keys().collect::<Vec<_>>()
        );
        assert_eq!(got.producer_ids_reserved_end, 500);
        assert!(diff(&got, &got).is_empty());
    }

    #[test]
    fn placement_spreads_leaders_and_racks() {
        let brokers = [
            broker(1, Some("a")),
            broker(2, Some("a")),
            broker(3, Some("b")),
        ];
        let live: Vec<&BrokerInfo> = brokers.iter().collect();
        let placed = place_replicas(&live, "t", 0, 6, 1).unwrap();
        for id in 1..=3 {
            assert_eq!(placed.iter().filter(|r| r[0] == id).count(), 2);
        }
        let placed = place_replicas(&live, "t", 0, 6, 2).unwrap();
        for replicas in &placed {
            let racks: Vec<_> = replicas
                .iter()
                .map(|id| brokers.iter().find(|b| b.id == *id).unwrap().rack.clone())
                .collect();
            assert_ne!(racks[0], racks[1], "two replicas on one rack: {replicas:?}");
        }
        assert!(place_replicas(&live, "t", 0, 1, 4).is_none());
        assert_eq!(place_replicas(&live, "t", 3, 2, 1).unwrap().len(), 2);
    }
}
