//! Labelled series: per topic, per partition, per consumer group, and the error counters by
//! Kafka error code, with a bound on how many label sets each family may have.
//!
//! Owns:
//! - [`PartitionTraffic`]: the records and bytes in/out of one partition, plain `Cell`s in the
//!   partition's struct on its owning shard (the produce and fetch paths add to them: no
//!   lock, no atomic, no allocation).
//! - [`ShardSample`]: what a shard publishes about its partitions and its group
//!   coordinators' committed offsets, about once a second (from its metrics reporter task,
//!   off the data path), as an `Arc` swapped under a mutex held only for the swap.
//! - [`render`]: the scrape-time aggregation (per topic over all shards, the lag of each
//!   committed offset against its partition's end offset) and the cap on label sets.
//!
//! Bounded labels: each family renders at most `metrics_label_sets_max` label sets, the
//! first ones in name order (topic, partition, group). The rest are folded into one
//! `"__other"` label set where a sum means something (records, bytes, log size, segments,
//! lag) and left out where it does not (offsets); either way they are counted in
//! `ringtail_metrics_series_folded_total{family}` as of the last scrape.
//!
//! Runs on: `PartitionTraffic` and sampling on each shard; rendering on the admin thread.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use storage::batch::{BatchHeader, BATCH_HEADER_LEN};

/// Default of `metrics_label_sets_max`: label sets one labelled family may render.
pub const METRICS_LABEL_SETS_MAX_DEFAULT: usize = 10_000;

/// The label value that stands for every label set beyond the cap.
pub const OTHER: &str = "__other";

/// Records and bytes through one partition since it was opened. Shard-local.
#[derive(Debug, Default)]
pub struct PartitionTraffic {
    records_in: Cell<u64>,
    bytes_in: Cell<u64>,
    records_out: Cell<u64>,
    bytes_out: Cell<u64>,
    /// The topic name as samples carry it, made once.
    topic: std::cell::OnceCell<Arc<str>>,
}

impl PartitionTraffic {
    /// `name` as a shared string, allocated at the first sample only.
    pub fn topic_name(&self, name: &str) -> Arc<str> {
        self.topic.get_or_init(|| Arc::from(name)).clone()
    }

    /// A produce appended `records` records in `bytes` bytes of batches (the count comes
    /// from the batch headers: `storage::batch::ValidatedBatches::record_count`).
    pub fn produced(&self, records: u64, bytes: usize) {
        self.records_in.set(self.records_in.get() + records);
        self.bytes_in.set(self.bytes_in.get() + bytes as u64);
    }

    /// A fetch returned these chunks of whole batches.
    pub fn fetched(&self, chunks: &[Bytes]) {
        let bytes: usize = chunks.iter().map(Bytes::len).sum();
        self.records_out
            .set(self.records_out.get() + records_in_chunks(chunks));
        self.bytes_out.set(self.bytes_out.get() + bytes as u64);
    }

    fn counts(&self) -> [u64; 4] {
        [
            self.records_in.get(),
            self.bytes_in.get(),
            self.records_out.get(),
            self.bytes_out.get(),
        ]
    }
}

/// Sum of the record counts of the batches in `chunks` (whole batches, concatenated; a batch
/// may continue in the next chunk). Reads only batch headers, with storage's parser, through
/// a header-sized stack buffer: no record is decoded, nothing is allocated.
pub fn records_in_chunks(chunks: &[Bytes]) -> u64 {
    let mut header = [0u8; BATCH_HEADER_LEN];
    let mut filled = 0usize;
    let mut skip = 0usize;
    let mut records = 0u64;
    for chunk in chunks {
        let mut rest: &[u8] = chunk;
        while !rest.is_empty() {
            if skip > 0 {
                let n = skip.min(rest.len());
                rest = &rest[n..];
                skip -= n;
                continue;
            }
            let n = (BATCH_HEADER_LEN - filled).min(rest.len());
            header[filled..filled + n].copy_from_slice(&rest[..n]);
            filled += n;
            rest = &rest[n..];
            if filled == BATCH_HEADER_LEN {
                let h = BatchHeader::read(&header);
                records += u64::try_from(h.records_count).unwrap_or(0);
                skip = h.total_len().saturating_sub(BATCH_HEADER_LEN);
                filled = 0;
            }
        }
    }
    records
}

/// One partition as its shard saw it at the last sample.
#[derive(Debug, Clone)]
pub struct PartitionSample {
    pub topic: Arc<str>,
    pub partition: i32,
    /// records in, bytes in, records out, bytes out.
    pub traffic: [u64; 4],
    pub log_bytes: u64,
    pub segments: u64,
    pub start_offset: i64,
    /// The end readers see (the high watermark of this single replica).
    pub end_offset: i64,
}

impl PartitionSample {
    pub fn new(topic: Arc<str>, partition: i32, traffic: &PartitionTraffic) -> PartitionSample {
        PartitionSample {
            topic,
            partition,
            traffic: traffic.counts(),
            log_bytes: 0,
            segments: 0,
            start_offset: 0,
            end_offset: 0,
        }
    }
}

/// One committed offset of a group, as its coordinator holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffsetSample {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
}

/// What one shard published at its last sample.
#[derive(Debug, Clone, Default)]
pub struct ShardSample {
    pub partitions: Vec<PartitionSample>,
    /// Partitions this shard leads (every replica it holds, until replication exists).
    pub leaders: u64,
    pub group_offsets: Vec<GroupOffsetSample>,
    /// Committed offsets not sampled: beyond the cap on this shard alone.
    pub group_offsets_dropped: u64,
}

/// Families with a label-set cap, as named in `ringtail_metrics_series_folded_total`.
const FAMILY_TOPIC: &str = "topic";
const FAMILY_PARTITION: &str = "partition";
const FAMILY_GROUP: &str = "group";

/// Renders the labelled families from every shard's last sample, `cap` label sets each.
pub fn render(out: &mut String, samples: &[Arc<ShardSample>], cap: usize) {
    let mut folded: BTreeMap<&str, u64> = BTreeMap::new();
    render_shards(out, samples);
    render_topics(out, samples, cap, &mut folded);
    let ends = render_partitions(out, samples, cap, &mut folded);
    render_groups(out, samples, &ends, cap, &mut folded);
    family(
        out,
        "ringtail_metrics_series_folded_total",
        "Label sets beyond metrics_label_sets_max, at this scrape, by family (topic, partition, \
         group): folded into the \"__other\" label set, or left out for offsets.",
        "gauge",
    );
    for name in [FAMILY_TOPIC, FAMILY_PARTITION, FAMILY_GROUP] {
        let n = folded.get(name).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "ringtail_metrics_series_folded_total{{family=\"{name}\"}} {n}"
        );
    }
}

fn render_shards(out: &mut String, samples: &[Arc<ShardSample>]) {
    family(
        out,
        "ringtail_shard_partitions",
        "Partition replicas open on the shard.",
        "gauge",
    );
    for (id, s) in samples.iter().enumerate() {
        let n = s.partitions.len();
        let _ = writeln!(out, "ringtail_shard_partitions{{shard=\"{id}\"}} {n}");
    }
    family(
        out,
        "ringtail_shard_leaders",
        "Partitions the shard leads (the other replicas it holds follow a leader elsewhere).",
        "gauge",
    );
    for (id, s) in samples.iter().enumerate() {
        let _ = writeln!(
            out,
            "ringtail_shard_leaders{{shard=\"{id}\"}} {}",
            s.leaders
        );
    }
}

fn render_topics<'a>(
    out: &mut String,
    samples: &'a [Arc<ShardSample>],
    cap: usize,
    folded: &mut BTreeMap<&'static str, u64>,
) {
    let mut topics: BTreeMap<&'a str, [u64; 4]> = BTreeMap::new();
    for p in samples.iter().flat_map(|s| &s.partitions) {
        let sum = topics.entry(&p.topic).or_default();
        for (a, b) in sum.iter_mut().zip(p.traffic) {
            *a += b;
        }
    }
    let (kept, rest) = split_at_cap(topics.into_iter().collect::<Vec<_>>(), cap);
    let mut other = [0u64; 4];
    for (_, t) in &rest {
        for (a, b) in other.iter_mut().zip(t) {
            *a += b;
        }
    }
    *folded.entry(FAMILY_TOPIC).or_default() += rest.len() as u64;
    let names = [
        (
            "ringtail_topic_records_in_total",
            "Records appended by produce requests (from batch headers), by topic.",
        ),
        (
            "ringtail_topic_bytes_in_total",
            "Record batch bytes appended by produce requests, by topic.",
        ),
        (
            "ringtail_topic_records_out_total",
            "Records in the batches returned by fetches (whole batches: a fetch from the middle \
             of a batch counts the batch), by topic.",
        ),
        (
            "ringtail_topic_bytes_out_total",
            "Record batch bytes returned by fetches, by topic.",
        ),
    ];
    for (i, (name, help)) in names.into_iter().enumerate() {
        family(out, name, help, "counter");
        for (topic, t) in &kept {
            let _ = writeln!(out, "{name}{{topic=\"{}\"}} {}", escape(topic), t[i]);
        }
        if !rest.is_empty() {
            let _ = writeln!(out, "{name}{{topic=\"{OTHER}\"}} {}", other[i]);
        }
    }
}

/// Renders the per-partition families; returns each partition's end offset (all of them,
/// capped or not) for the lag.
fn render_partitions<'a>(
    out: &mut String,
    samples: &'a [Arc<ShardSample>],
    cap: usize,
    folded: &mut BTreeMap<&'static str, u64>,
) -> HashMap<(&'a str, i32), i64> {
    let mut parts: Vec<&PartitionSample> = samples.iter().flat_map(|s| &s.partitions).collect();
    parts.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let ends = parts
        .iter()
        .map(|p| ((&*p.topic, p.partition), p.end_offset))
        .collect();
    let (kept, rest) = split_at_cap(parts, cap);
    *folded.entry(FAMILY_PARTITION).or_default() += rest.len() as u64;
    let summed: [PartitionFamily; 2] = [
        (
            "ringtail_partition_log_size_bytes",
            "Bytes of the partition's segments (as written).",
            |p| p.log_bytes as i64,
        ),
        (
            "ringtail_partition_log_segments",
            "Segments of the partition's log.",
            |p| p.segments as i64,
        ),
    ];
    let offsets: [PartitionFamily; 2] = [
        (
            "ringtail_partition_log_start_offset",
            "The partition's log start offset (the earliest offset a consumer can read).",
            |p| p.start_offset,
        ),
        (
            "ringtail_partition_log_end_offset",
            "The partition's end offset as consumers see it (the high watermark; what \
             ListOffsets latest answers).",
            |p| p.end_offset,
        ),
    ];
    for (name, help, field) in summed.into_iter().chain(offsets) {
        family(out, name, help, "gauge");
        for p in &kept {
            let _ = writeln!(
                out,
                "{name}{{topic=\"{}\",partition=\"{}\"}} {}",
                escape(&p.topic),
                p.partition,
                field(p)
            );
        }
        let is_offset = name.ends_with("_offset");
        if !rest.is_empty() && !is_offset {
            let sum: i64 = rest.iter().map(|p| field(p)).sum();
            let _ = writeln!(
                out,
                "{name}{{topic=\"{OTHER}\",partition=\"{OTHER}\"}} {sum}"
            );
        }
    }
    ends
}

fn render_groups(
    out: &mut String,
    samples: &[Arc<ShardSample>],
    ends: &HashMap<(&str, i32), i64>,
    cap: usize,
    folded: &mut BTreeMap<&'static str, u64>,
) {
    let mut offsets: Vec<&GroupOffsetSample> =
        samples.iter().flat_map(|s| &s.group_offsets).collect();
    offsets
        .sort_by(|a, b| (&a.group, &a.topic, a.partition).cmp(&(&b.group, &b.topic, b.partition)));
    let dropped: u64 = samples.iter().map(|s| s.group_offsets_dropped).sum();
    // Lag against the partition's end; a partition not open anywhere has none.
    let lag = |o: &GroupOffsetSample| {
        ends.get(&(o.topic.as_str(), o.partition))
            .map(|end| (end - o.committed).max(0))
    };
    let (kept, rest) = split_at_cap(offsets, cap);
    *folded.entry(FAMILY_GROUP).or_default() += rest.len() as u64 + dropped;
    family(
        out,
        "ringtail_group_committed_offset",
        "The offset a consumer group committed, by group, topic and partition.",
        "gauge",
    );
    for o in &kept {
        let _ = writeln!(
            out,
            "ringtail_group_committed_offset{{group=\"{}\",topic=\"{}\",partition=\"{}\"}} {}",
            escape(&o.group),
            escape(&o.topic),
            o.partition,
            o.committed
        );
    }
    family(
        out,
        "ringtail_group_lag",
        "Records a consumer group has not committed yet: the partition's end offset minus the \
         committed offset (never below 0), by group, topic and partition.",
        "gauge",
    );
    for o in &kept {
        if let Some(lag) = lag(o) {
            let _ = writeln!(
                out,
                "ringtail_group_lag{{group=\"{}\",topic=\"{}\",partition=\"{}\"}} {lag}",
                escape(&o.group),
                escape(&o.topic),
                o.partition
            );
        }
    }
    if !rest.is_empty() {
        let sum: i64 = rest.iter().filter_map(|o| lag(o)).sum();
        let _ = writeln!(
            out,
            "ringtail_group_lag{{group=\"{OTHER}\",topic=\"{OTHER}\",partition=\"{OTHER}\"}} {sum}"
        );
    }
}

/// A per-partition family: name, help, and the value it shows.
type PartitionFamily = (&'static str, &'static str, fn(&PartitionSample) -> i64);

/// The first `cap` items keep their own label set; the rest are folded.
fn split_at_cap<T>(mut items: Vec<T>, cap: usize) -> (Vec<T>, Vec<T>) {
    let rest = items.split_off(cap.min(items.len()));
    (items, rest)
}

/// A label value in the Prometheus text format: backslash, quote and newline escaped.
pub fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut s = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    std::borrow::Cow::Owned(s)
}

pub(crate) fn family(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage::batch::{field, LOG_OVERHEAD};

    /// A batch header (and zeroed body) claiming `records` records in `len` bytes in all.
    fn batch(records: i32, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        let length = i32::try_from(len - LOG_OVERHEAD).unwrap();
        b[field::LENGTH].copy_from_slice(&length.to_be_bytes());
        b[field::RECORDS_COUNT].copy_from_slice(&records.to_be_bytes());
        b
    }

    #[test]
    fn counts_records_of_batches_split_over_chunks() {
        let mut all = batch(3, 100);
        all.extend(batch(5, 70));
        all.extend(batch(1, 61));
        assert_eq!(records_in_chunks(&[Bytes::from(all.clone())]), 9);
        // Every split point, including inside headers.
        for cut in 0..all.len() {
            let chunks = [
                Bytes::copy_from_slice(&all[..cut]),
                Bytes::copy_from_slice(&all[cut..]),
            ];
            assert_eq!(records_in_chunks(&chunks), 9, "cut at {cut}");
        }
        assert_eq!(records_in_chunks(&[]), 0);
        let t = PartitionTraffic::default();
        t.produced(4, 400);
        t.fetched(&[Bytes::from(all)]);
        assert_eq!(t.counts(), [4, 400, 9, 231]);
    }

    fn part(topic: &str, partition: i32, records_in: u64, end: i64) -> PartitionSample {
        PartitionSample {
            topic: topic.into(),
            partition,
            traffic: [records_in, records_in * 10, 0, 0],
            log_bytes: 100,
            segments: 1,
            start_offset: 0,
            end_offset: end,
        }
    }

    fn offset(group: &str, topic: &str, partition: i32, committed: i64) -> GroupOffsetSample {
        GroupOffsetSample {
            group: group.into(),
            topic: topic.into(),
            partition,
            committed,
        }
    }

    #[test]
    fn aggregates_topics_and_computes_lag() {
        let s0 = ShardSample {
            partitions: vec![part("a", 0, 3, 10), part("b", 0, 1, 5)],
            leaders: 2,
            group_offsets: vec![offset("g\"1", "a", 1, 4), offset("g", "gone", 0, 1)],
            group_offsets_dropped: 0,
        };
        let s1 = ShardSample {
            partitions: vec![part("a", 1, 4, 7)],
            leaders: 1,
            group_offsets: vec![offset("g", "a", 0, 12)],
            group_offsets_dropped: 0,
        };
        let mut out = String::new();
        render(&mut out, &[Arc::new(s0), Arc::new(s1)], 100);
        for line in [
            "ringtail_shard_partitions{shard=\"0\"} 2",
            "ringtail_shard_leaders{shard=\"1\"} 1",
            "ringtail_topic_records_in_total{topic=\"a\"} 7",
            "ringtail_topic_bytes_in_total{topic=\"a\"} 70",
            "ringtail_topic_records_in_total{topic=\"b\"} 1",
            "ringtail_partition_log_end_offset{topic=\"a\",partition=\"1\"} 7",
            "ringtail_partition_log_segments{topic=\"b\",partition=\"0\"} 1",
            "ringtail_group_committed_offset{group=\"g\\\"1\",topic=\"a\",partition=\"1\"} 4",
            "ringtail_group_lag{group=\"g\\\"1\",topic=\"a\",partition=\"1\"} 3",
            // Committed past the end (a truncated log): lag 0, not negative.
            "ringtail_group_lag{group=\"g\",topic=\"a\",partition=\"0\"} 0",
            "ringtail_metrics_series_folded_total{family=\"topic\"} 0",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
        // A committed offset of a partition open nowhere has no lag.
        assert!(!out.contains("ringtail_group_lag{group=\"g\",topic=\"gone\""));
        assert!(!out.contains("=\"__other\""));
    }

    #[test]
    fn folds_label_sets_beyond_the_cap() {
        let s = ShardSample {
            partitions: vec![part("c", 0, 1, 9), part("a", 0, 2, 5), part("b", 0, 4, 6)],
            leaders: 3,
            group_offsets: vec![offset("g", "a", 0, 1), offset("g", "b", 0, 2)],
            group_offsets_dropped: 2,
        };
        let mut out = String::new();
        render(&mut out, &[Arc::new(s)], 1);
        for line in [
            "ringtail_topic_records_in_total{topic=\"a\"} 2",
            "ringtail_topic_records_in_total{topic=\"__other\"} 5",
            "ringtail_partition_log_size_bytes{topic=\"__other\",partition=\"__other\"} 200",
            "ringtail_group_lag{group=\"g\",topic=\"a\",partition=\"0\"} 4",
            "ringtail_group_lag{group=\"__other\",topic=\"__other\",partition=\"__other\"} 4",
            "ringtail_metrics_series_folded_total{family=\"topic\"} 2",
            "ringtail_metrics_series_folded_total{family=\"partition\"} 2",
            "ringtail_metrics_series_folded_total{family=\"group\"} 3",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
        assert!(!out.contains("topic=\"b\""));
        // Offsets are not summed into the other bucket.
        assert!(!out.contains("ringtail_partition_log_end_offset{topic=\"__other\""));
        assert_eq!(out.matches("ringtail_topic_records_in_total{").count(), 2);
    }
}
