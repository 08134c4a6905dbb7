//! Counters for operators, served by the admin endpoint as `GET /metrics` (Prometheus text
//! format 0.0.4).
//!
//! Each shard updates only its own [`ShardMetrics`] (relaxed atomic adds on its own cache
//! lines, so the data path takes no lock and shares no line with another core); the admin
//! thread reads them all when scraped. Cross-shard calls per request, the figure the
//! thread-per-core design tries to keep near zero, is
//! `ringtail_cross_shard_calls_total / ringtail_requests_total`.
//!
//! Labelled series (per topic, partition, group) come from each shard's last published
//! [`ShardSample`] and are bounded by `metrics_label_sets_max` (see [`crate::ops::series`]).
//! Error counters are a fixed array per API indexed by Kafka error code (the code space is
//! Kafka's and small), summed over shards at scrape.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use kafka_protocol::messages::ApiKey;
use kafka_protocol::ResponseError;

use crate::ops::series::{self, family, ShardSample};
use storage::iotime::{TimeCounts, TIME_BUCKETS_US};

/// Kafka API keys counted individually (every key Kafka defines is below this).
const API_KEYS: usize = 128;

/// Error codes counted individually: Kafka's run from -1 (UNKNOWN_SERVER_ERROR) to about 130;
/// slot `code + 1`. A code outside lands in the last slot (rendered as `code="other"`).
const ERROR_CODE_SLOTS: usize = 192;

/// APIs whose handling time is kept as a histogram: the data path.
const TIMED_APIS: [ApiKey; 2] = [ApiKey::Produce, ApiKey::Fetch];

/// Request handling times of one API: a count per bucket of
/// [`storage::iotime::TIME_BUCKETS_US`] (not cumulative; rendered cumulatively), plus the
/// +Inf bucket, and the sum. Also holds the shard's copy of storage's write and fsync times.
struct TimeHistogram {
    buckets: [AtomicU64; TIME_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl TimeHistogram {
    fn new() -> TimeHistogram {
        TimeHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }

    fn record(&self, took: std::time::Duration) {
        let (i, us) = TimeCounts::bucket_of(took);
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Relaxed);
        }
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// Replaces the contents with a snapshot kept elsewhere (storage's thread-local counts).
    fn store(&self, counts: &TimeCounts) {
        for (b, n) in self.buckets.iter().zip(counts.buckets) {
            b.store(n, Relaxed);
        }
        self.sum_us.store(counts.sum_us, Relaxed);
    }

    /// Appends the `_bucket`, `_sum` and `_count` lines of this histogram under `labels`.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Relaxed);
            let le = TIME_BUCKETS_US
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// One shard's counters. Aligned so two shards' counters never share a cache line.
#[repr(align(128))]
pub struct ShardMetrics {
    requests: [AtomicU64; API_KEYS],
    request_times: [TimeHistogram; TIMED_APIS.len()],
    // Copies of storage's thread-local histograms, refreshed with the gauges.
    log_write_times: TimeHistogram,
    log_fsync_times: TimeHistogram,
    cross_shard_calls: AtomicU64,
    produce_bytes: AtomicU64,
    produce_batches: AtomicU64,
    fetch_bytes: AtomicU64,
    read_ahead_hits: AtomicU64,
    connections_accepted: AtomicU64,
    connections_rejected: AtomicU64,
    connections_moved_in: AtomicU64,
    cross_shard_waits_refused: AtomicU64,
    cross_shard_waits_cancelled: AtomicU64,
    // Gauges, refreshed by the shard about once a second (see `record_shard_state`).
    connections_active: AtomicU64,
    batch_cache_bytes: AtomicU64,
    read_ahead_bytes: AtomicU64,
    cross_shard_waits_parked: AtomicU64,
    /// Partition errors in Produce / Fetch responses, by error code (slot `code + 1`).
    produce_errors: [AtomicU64; ERROR_CODE_SLOTS],
    fetch_errors: [AtomicU64; ERROR_CODE_SLOTS],
    /// The shard's last published sample of its partitions and committed offsets.
    sample: Mutex<Arc<ShardSample>>,
    /// Partition replication (see `shard::replica`).
    replication: ReplicationCounters,
}

/// One shard's replication counters and gauges.
#[derive(Default)]
struct ReplicationCounters {
    bytes: AtomicU64,
    batches: AtomicU64,
    isr_shrinks: AtomicU64,
    isr_expands: AtomicU64,
    truncations: AtomicU64,
    leaders: AtomicU64,
    under_replicated: AtomicU64,
    under_min_isr: AtomicU64,
    offline: AtomicU64,
    max_lag: AtomicU64,
}

impl ShardMetrics {
    fn new() -> ShardMetrics {
        ShardMetrics {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            request_times: std::array::from_fn(|_| TimeHistogram::new()),
            log_write_times: TimeHistogram::new(),
            log_fsync_times: TimeHistogram::new(),
            cross_shard_calls: AtomicU64::new(0),
            produce_bytes: AtomicU64::new(0),
            produce_batches: AtomicU64::new(0),
            fetch_bytes: AtomicU64::new(0),
            read_ahead_hits: AtomicU64::new(0),
            connections_accepted: AtomicU64::new(0),
            connections_rejected: AtomicU64::new(0),
            connections_moved_in: AtomicU64::new(0),
            cross_shard_waits_refused: AtomicU64::new(0),
            cross_shard_waits_cancelled: AtomicU64::new(0),
            connections_active: AtomicU64::new(0),
            batch_cache_bytes: AtomicU64::new(0),
            read_ahead_bytes: AtomicU64::new(0),
            cross_shard_waits_parked: AtomicU64::new(0),
            produce_errors: std::array::from_fn(|_| AtomicU64::new(0)),
            fetch_errors: std::array::from_fn(|_| AtomicU64::new(0)),
            sample: Mutex::new(Arc::new(ShardSample::default())),
            replication: ReplicationCounters::default(),
        }
    }

    /// A follower appended batches copied from its leader.
    pub fn replicated(&self, bytes: usize, batches: usize) {
        self.replication.bytes.fetch_add(bytes as u64, Relaxed);
        self.replication.batches.fetch_add(batches as u64, Relaxed);
    }

    pub fn isr_shrunk(&self) {
        self.replication.isr_shrinks.fetch_add(1, Relaxed);
    }

    pub fn isr_expanded(&self) {
        self.replication.isr_expands.fetch_add(1, Relaxed);
    }

    /// A follower cut its log back to agree with its leader.
    pub fn replica_truncated(&self) {
        self.replication.truncations.fetch_add(1, Relaxed);
    }

    /// The shard's replication gauges, refreshed by its replication tick.
    pub fn record_replication(&self, s: crate::shard::replica::ReplicationStats) {
        let r = &self.replication;
        r.leaders.store(s.leaders, Relaxed);
        r.under_replicated.store(s.under_replicated, Relaxed);
        r.under_min_isr.store(s.under_min_isr, Relaxed);
        r.offline.store(s.offline, Relaxed);
        r.max_lag
            .store(u64::try_from(s.max_follower_lag).unwrap_or(0), Relaxed);
    }

    /// Publishes the shard's partitions and committed offsets as of now (once a second,
    /// from the shard's reporter task; the lock is held only for the swap).
    pub fn publish_sample(&self, sample: ShardSample) {
        let sample = Arc::new(sample);
        match self.sample.lock() {
            Ok(mut slot) => *slot = sample,
            // A scrape that panicked while holding the lock: the slot itself is fine.
            Err(poisoned) => *poisoned.into_inner() = sample,
        }
    }

    fn last_sample(&self) -> Arc<ShardSample> {
        match self.sample.lock() {
            Ok(slot) => slot.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// A Produce response carried this error code for a partition.
    pub fn produce_error(&self, code: i16) {
        error_slot(&self.produce_errors, code).fetch_add(1, Relaxed);
    }

    /// A Fetch response carried this error code (for a partition or the whole request).
    pub fn fetch_error(&self, code: i16) {
        error_slot(&self.fetch_errors, code).fetch_add(1, Relaxed);
    }

    /// The shard's connection counts and memory held for readers, as of now.
    pub fn record_shard_state(&self, state: ShardState) {
        self.connections_active
            .store(state.connections_active, Relaxed);
        self.connections_accepted
            .store(state.connections_accepted, Relaxed);
        self.connections_rejected
            .store(state.connections_rejected, Relaxed);
        self.connections_moved_in
            .store(state.connections_moved_in, Relaxed);
        self.batch_cache_bytes
            .store(state.batch_cache_bytes, Relaxed);
        self.read_ahead_bytes.store(state.read_ahead_bytes, Relaxed);
        self.read_ahead_hits.store(state.read_ahead_hits, Relaxed);
        self.cross_shard_waits_parked
            .store(state.cross_shard_waits_parked, Relaxed);
        self.cross_shard_waits_refused
            .store(state.cross_shard_waits_refused, Relaxed);
        self.cross_shard_waits_cancelled
            .store(state.cross_shard_waits_cancelled, Relaxed);
        self.log_write_times.store(&state.log_write_times);
        self.log_fsync_times.store(&state.log_fsync_times);
    }

    /// A request with this API key was received (and its version is supported).
    pub fn request(&self, api_key: i16) {
        if let Some(c) = usize::try_from(api_key)
            .ok()
            .and_then(|k| self.requests.get(k))
        {
            c.fetch_add(1, Relaxed);
        }
    }

    /// A request with this API key took `took` from its frame being read to its response
    /// being ready (kept for Produce and Fetch).
    pub fn request_time(&self, api_key: i16, took: std::time::Duration) {
        if let Some(i) = TIMED_APIS.iter().position(|k| *k as i16 == api_key) {
            self.request_times[i].record(took);
        }
    }

    /// This shard called another shard (for partitions or groups it does not own).
    pub fn cross_shard_call(&self) {
        self.cross_shard_calls.fetch_add(1, Relaxed);
    }

    /// Record batches appended to a partition log of this shard.
    pub fn produced(&self, bytes: usize, batches: usize) {
        self.produce_bytes.fetch_add(bytes as u64, Relaxed);
        self.produce_batches.fetch_add(batches as u64, Relaxed);
    }

    /// Record bytes returned to consumers (and followers) by fetches this shard answered.
    pub fn fetched(&self, bytes: usize) {
        self.fetch_bytes.fetch_add(bytes as u64, Relaxed);
    }
}

/// What a shard reports about itself periodically ([`ShardMetrics::record_shard_state`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct ShardState {
    pub connections_active: u64,
    pub connections_accepted: u64,
    pub connections_rejected: u64,
    /// Connections other shards handed to this one.
    pub connections_moved_in: u64,
    pub batch_cache_bytes: u64,
    pub read_ahead_bytes: u64,
    /// Storage's thread-local count of reads served from read-ahead.
    pub read_ahead_hits: u64,
    /// Fetch long-poll waits of other shards parked on this one now, refused (over
    /// `max_cross_shard_waits_per_shard`) and cancelled (their fetch answered) so far.
    pub cross_shard_waits_parked: u64,
    pub cross_shard_waits_refused: u64,
    pub cross_shard_waits_cancelled: u64,
    /// Storage's thread-local histograms of partition log writes and durability fsyncs.
    pub log_write_times: TimeCounts,
    pub log_fsync_times: TimeCounts,
}

/// The counter of `code` (the last slot for a code outside Kafka's range).
fn error_slot(slots: &[AtomicU64; ERROR_CODE_SLOTS], code: i16) -> &AtomicU64 {
    let last = ERROR_CODE_SLOTS - 1;
    let i = usize::try_from(i32::from(code) + 1).map_or(last, |i| i.min(last));
    &slots[i] // ok: i <= last
}

/// The counters of every shard.
pub struct Metrics {
    shards: Box<[ShardMetrics]>,
    /// Counts of shards outside `0..shards` (never rendered); keeps callers free of checks.
    discard: ShardMetrics,
    /// The log cleaners' figures (see [`CleanerMetrics`]).
    pub cleaner: CleanerMetrics,
    /// `metrics_label_sets_max`: label sets per labelled family.
    label_sets_max: usize,
}

impl Metrics {
    pub fn new(shards: usize) -> Arc<Metrics> {
        Metrics::with_label_sets_max(shards, series::METRICS_LABEL_SETS_MAX_DEFAULT)
    }

    /// `label_sets_max`: `metrics_label_sets_max`, the label sets a labelled family may render.
    pub fn with_label_sets_max(shards: usize, label_sets_max: usize) -> Arc<Metrics> {
        Arc::new(Metrics {
            shards: (0..shards).map(|_| ShardMetrics::new()).collect(),
            discard: ShardMetrics::new(),
            cleaner: CleanerMetrics::new(shards),
            label_sets_max,
        })
    }

    /// The cap on label sets per labelled family (shards also bound their samples by it).
    pub fn label_sets_max(&self) -> usize {
        self.label_sets_max
    }

    pub fn shard(&self, id: usize) -> &ShardMetrics {
        self.shards.get(id).unwrap_or(&self.discard)
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        family(
            &mut out,
            "ringtail_requests_total",
            "Kafka requests received, by shard and API.",
            "counter",
        );
        for (id, s) in self.shards.iter().enumerate() {
            for (key, count) in s.requests.iter().enumerate() {
                let n = count.load(Relaxed);
                if n == 0 {
                    continue;
                }
                let api = i16::try_from(key)
                    .ok()
                    .and_then(|k| ApiKey::try_from(k).ok())
                    .map_or_else(|| format!("api_{key}"), |k| format!("{k:?}"));
                let _ = writeln!(
                    out,
                    "ringtail_requests_total{{shard=\"{id}\",api=\"{api}\"}} {n}"
                );
            }
        }
        family(
            &mut out,
            "ringtail_request_duration_seconds",
            "Time from a request's frame being read to its response being ready, by shard and API \
             (Produce: includes the write acks=1/all waits for; Fetch: includes the long-poll wait).",
            "histogram",
        );
        for (id, s) in self.shards.iter().enumerate() {
            for (api, h) in TIMED_APIS.iter().zip(&s.request_times) {
                let labels = format!("shard=\"{id}\",api=\"{api:?}\"");
                h.render(&mut out, "ringtail_request_duration_seconds", &labels);
            }
        }
        let storage_times: [(&str, &str, HistogramField); 2] = [
            (
                "ringtail_log_write_duration_seconds",
                "Time a partition log's write group took from submission to completion (acks=1 \
                 waits for it; the part of Produce time spent on the disk).",
                |s| &s.log_write_times,
            ),
            (
                "ringtail_log_fsync_duration_seconds",
                "Time an fdatasync for durability took (acks=all, flush.messages, flush.ms).",
                |s| &s.log_fsync_times,
            ),
        ];
        for (name, help, field) in storage_times {
            family(&mut out, name, help, "histogram");
            for (id, s) in self.shards.iter().enumerate() {
                field(s).render(&mut out, name, &format!("shard=\"{id}\""));
            }
        }
        let per_shard: [(&str, &str, Field); 14] = [
            (
                "ringtail_cross_shard_calls_total",
                "Calls a shard made to another shard: requests for partitions or groups it does not own.",
                |s| &s.cross_shard_calls,
            ),
            (
                "ringtail_cross_shard_waits_parked",
                "Fetch long-poll waits of other shards parked on this shard now (each ends when \
                 its data arrives or its fetch answers).",
                |s| &s.cross_shard_waits_parked,
            ),
            (
                "ringtail_cross_shard_waits_refused_total",
                "Fetch long-poll waits of other shards this shard refused: it already parked \
                 max_cross_shard_waits_per_shard (those fetches answer at their deadline).",
                |s| &s.cross_shard_waits_refused,
            ),
            (
                "ringtail_cross_shard_waits_cancelled_total",
                "Fetch long-poll waits of other shards dropped here because their fetch had \
                 answered (or ended) already.",
                |s| &s.cross_shard_waits_cancelled,
            ),
            (
                "ringtail_produce_bytes_total",
                "Record batch bytes appended to partition logs.",
                |s| &s.produce_bytes,
            ),
            (
                "ringtail_produce_batches_total",
                "Record batches appended to partition logs.",
                |s| &s.produce_batches,
            ),
            (
                "ringtail_fetch_bytes_total",
                "Record bytes returned by fetches.",
                |s| &s.fetch_bytes,
            ),
            (
                "ringtail_read_ahead_hits_total",
                "Disk reads served from read-ahead instead of the disk.",
                |s| &s.read_ahead_hits,
            ),
            (
                "ringtail_connections_accepted_total",
                "Kafka connections accepted.",
                |s| &s.connections_accepted,
            ),
            (
                "ringtail_connections_rejected_total",
                "Kafka connections closed at once: the shard's connection limit was reached.",
                |s| &s.connections_rejected,
            ),
            (
                "ringtail_connections_moved_total",
                "Kafka connections moved to this shard from another: their requests used partitions this shard owns.",
                |s| &s.connections_moved_in,
            ),
            (
                "ringtail_connections_active",
                "Kafka connections open now.",
                |s| &s.connections_active,
            ),
            (
                "ringtail_batch_cache_bytes",
                "Memory held by the recent-batch cache that serves tailing consumers.",
                |s| &s.batch_cache_bytes,
            ),
            (
                "ringtail_read_ahead_bytes",
                "Memory held by read-ahead for sequential disk readers.",
                |s| &s.read_ahead_bytes,
            ),
        ];
        for (name, help, field) in per_shard {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            family(&mut out, name, help, kind);
            for (id, s) in self.shards.iter().enumerate() {
                let _ = writeln!(out, "{name}{{shard=\"{id}\"}} {}", field(s).load(Relaxed));
            }
        }
        let errors: [(&str, &str, ErrorsField); 2] = [
            (
                "ringtail_produce_errors_total",
                "Partitions answered with an error in Produce responses, by Kafka error code.",
                |s| &s.produce_errors,
            ),
            (
                "ringtail_fetch_errors_total",
                "Partitions (or whole requests) answered with an error in Fetch responses, by \
                 Kafka error code.",
                |s| &s.fetch_errors,
            ),
        ];
        for (name, help, field) in errors {
            family(&mut out, name, help, "counter");
            for slot in 0..ERROR_CODE_SLOTS {
                let n: u64 = self
                    .shards
                    .iter()
                    .map(|s| field(s)[slot].load(Relaxed))
                    .sum();
                if n == 0 {
                    continue;
                }
                let (code, error) = if slot == ERROR_CODE_SLOTS - 1 {
                    ("other".to_string(), "Other".to_string())
                } else {
                    let code = slot as i16 - 1;
                    let error = ResponseError::try_from_code(code)
                        .map_or_else(|| "Unknown".to_string(), |e| format!("{e:?}"));
                    (code.to_string(), error)
                };
                let _ = writeln!(out, "{name}{{code=\"{code}\",error=\"{error}\"}} {n}");
            }
        }
        let samples: Vec<Arc<ShardSample>> =
            self.shards.iter().map(ShardMetrics::last_sample).collect();
        series::render(&mut out, &samples, self.label_sets_max);
        // Process-wide: the I/O buffer allocator is shared by every shard.
        let io = storage::dma_alloc::stats();
        family(
            &mut out,
            "ringtail_io_buffer_bytes",
            "Memory of the allocator for disk I/O buffers (64 KiB and up, on huge pages): \
             in_use is held by writes, reads and read-ahead; free is kept for reuse and given \
             back once idle for 10-20 s.",
            "gauge",
        );
        let free = io.mapped_bytes.saturating_sub(io.in_use_bytes);
        for (state, bytes) in [("in_use", io.in_use_bytes), ("free", free)] {
            let _ = writeln!(out, "ringtail_io_buffer_bytes{{state=\"{state}\"}} {bytes}");
        }
        self.cleaner.render(&mut out);
        self.render_replication(&mut out);
        out
    }

    fn render_replication(&self, out: &mut String) {
        type R = fn(&ReplicationCounters) -> &AtomicU64;
        let families: [(&str, &str, &str, R); 10] = [
            ("ringtail_replication_bytes_total", "Record bytes followers on this node copied from their leaders, by shard.", "counter", |r| &r.bytes),
            ("ringtail_replication_batches_total", "Record batches followers on this node copied from their leaders, by shard.", "counter", |r| &r.batches),
            ("ringtail_isr_shrinks_total", "ISR changes that removed a replica, of partitions this node leads.", "counter", |r| &r.isr_shrinks),
            ("ringtail_isr_expands_total", "ISR changes that added a replica, of partitions this node leads.", "counter", |r| &r.isr_expands),
            ("ringtail_replica_truncations_total", "Times a follower on this node cut its log back to agree with a new leader.", "counter", |r| &r.truncations),
            ("ringtail_leader_partitions", "Partitions this node leads, by shard.", "gauge", |r| &r.leaders),
            ("ringtail_under_replicated_partitions", "Partitions this node leads whose ISR is smaller than their replica set.", "gauge", |r| &r.under_replicated),
            ("ringtail_under_min_isr_partitions", "Partitions this node leads whose ISR is below min.insync.replicas (acks=all produce is refused).", "gauge", |r| &r.under_min_isr),
            ("ringtail_offline_partitions", "Partitions of the cluster without a leader (reported by shard 0).", "gauge", |r| &r.offline),
            ("ringtail_replica_max_lag_records", "The largest follower lag (records behind the leader's log end) among partitions this node leads.", "gauge", |r| &r.max_lag),
        ];
        for (name, help, kind, field) in families {
            family(out, name, help, kind);
            for (id, s) in self.shards.iter().enumerate() {
                let v = field(&s.replication).load(Relaxed);
                let _ = writeln!(out, "{name}{{shard=\"{id}\"}} {v}");
            }
        }
    }
}

/// Picks one counter out of a shard's.
type Field = fn(&ShardMetrics) -> &AtomicU64;

/// Picks one error-code array out of a shard's.
type ErrorsField = fn(&ShardMetrics) -> &[AtomicU64; ERROR_CODE_SLOTS];

/// Picks one histogram out of a shard's.
type HistogramField = fn(&ShardMetrics) -> &TimeHistogram;

// ---- The log cleaner (issue 21: compaction) -----------------------------------------------

/// What one shard's log cleaner last published: its byte counters and, per compacted
/// partition it owns, the dirty ratio and the time of the last cleaning. The cleaner replaces
/// its shard's entry after every pass (not on the data path, so a mutex is fine).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CleanerShardView {
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// (topic, partition, dirty ratio, wall-clock ms of the last cleaning or 0 if none yet).
    pub partitions: Vec<(String, i32, f64, i64)>,
}

/// Every shard's [`CleanerShardView`].
pub struct CleanerMetrics {
    shards: Box<[std::sync::Mutex<CleanerShardView>]>,
}

impl CleanerMetrics {
    fn new(shards: usize) -> CleanerMetrics {
        CleanerMetrics {
            shards: (0..shards).map(|_| Default::default()).collect(),
        }
    }

    /// Replaces shard `id`'s view (ignored for unknown shards).
    pub fn publish(&self, id: usize, view: CleanerShardView) {
        if let Some(slot) = self.shards.get(id) {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = view;
        }
    }

    fn render(&self, out: &mut String) {
        let views: Vec<CleanerShardView> = self
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect();
        family(
            out,
            "ringtail_log_cleaner_read_bytes_total",
            "Bytes the log cleaner read from compacted partitions' segments, by shard.",
            "counter",
        );
        for (id, v) in views.iter().enumerate() {
            let _ = writeln!(
                out,
                "ringtail_log_cleaner_read_bytes_total{{shard=\"{id}\"}} {}",
                v.bytes_read
            );
        }
        family(
            out,
            "ringtail_log_cleaner_written_bytes_total",
            "Bytes the log cleaner wrote into cleaned segments, by shard.",
            "counter",
        );
        for (id, v) in views.iter().enumerate() {
            let _ = writeln!(
                out,
                "ringtail_log_cleaner_written_bytes_total{{shard=\"{id}\"}} {}",
                v.bytes_written
            );
        }
        family(
            out,
            "ringtail_log_cleaner_dirty_ratio",
            "Share of a compacted partition's sealed bytes not cleaned yet (what \
             min.cleanable.dirty.ratio is compared with).",
            "gauge",
        );
        for v in &views {
            for (topic, partition, ratio, _) in &v.partitions {
                let _ = writeln!(out, "ringtail_log_cleaner_dirty_ratio{{topic=\"{topic}\",partition=\"{partition}\"}} {ratio}");
            }
        }
        family(
            out,
            "ringtail_log_cleaner_seconds_since_last_clean",
            "Seconds since the log cleaner last cleaned a compacted partition (absent until \
             it has, since the broker started).",
            "gauge",
        );
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for v in &views {
            for (topic, partition, _, last_ms) in v.partitions.iter().filter(|p| p.3 > 0) {
                let secs = (now_ms - last_ms).max(0) as f64 / 1000.0;
                let _ = writeln!(out, "ringtail_log_cleaner_seconds_since_last_clean{{topic=\"{topic}\",partition=\"{partition}\"}} {secs}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_shard_and_api() {
        let m = Metrics::new(2);
        m.shard(0).request(ApiKey::Produce as i16);
        m.shard(0).request(ApiKey::Produce as i16);
        m.shard(1).request(ApiKey::Fetch as i16);
        m.shard(1).request(-1); // ignored, never a panic
        m.shard(1).request(500);
        m.shard(7).request(0); // no such shard: not rendered
        m.shard(1).cross_shard_call();
        let ms = std::time::Duration::from_millis;
        m.shard(0).request_time(ApiKey::Produce as i16, ms(0));
        m.shard(0).request_time(ApiKey::Produce as i16, ms(3));
        m.shard(0).request_time(ApiKey::Produce as i16, ms(60_000));
        m.shard(0).request_time(ApiKey::Fetch as i16, ms(100));
        m.shard(0).request_time(ApiKey::Metadata as i16, ms(1)); // not timed
        m.shard(0).produced(1000, 2);
        m.shard(1).fetched(300);
        let mut writes = TimeCounts::default();
        writes.record(ms(1));
        writes.record(ms(7));
        m.shard(1).record_shard_state(ShardState {
            read_ahead_hits: 9,
            log_write_times: writes,
            ..ShardState::default()
        });
        m.shard(0).record_shard_state(ShardState {
            connections_active: 3,
            connections_accepted: 5,
            connections_moved_in: 2,
            batch_cache_bytes: 4096,
            cross_shard_waits_parked: 4,
            cross_shard_waits_cancelled: 6,
            ..ShardState::default()
        });
        m.shard(0).produce_error(3);
        m.shard(1).produce_error(3);
        m.shard(1).fetch_error(1);
        m.shard(1).fetch_error(-1);
        m.shard(1).fetch_error(i16::MAX);
        m.shard(1).fetch_error(i16::MIN);
        let text = m.render();
        for line in [
            "ringtail_produce_errors_total{code=\"3\",error=\"UnknownTopicOrPartition\"} 2",
            "ringtail_fetch_errors_total{code=\"1\",error=\"OffsetOutOfRange\"} 1",
            "ringtail_fetch_errors_total{code=\"-1\",error=\"UnknownServerError\"} 1",
            "ringtail_fetch_errors_total{code=\"other\",error=\"Other\"} 2",
            "ringtail_shard_partitions{shard=\"1\"} 0",
            "ringtail_requests_total{shard=\"0\",api=\"Produce\"} 2",
            "ringtail_requests_total{shard=\"1\",api=\"Fetch\"} 1",
            "ringtail_cross_shard_calls_total{shard=\"0\"} 0",
            "ringtail_cross_shard_calls_total{shard=\"1\"} 1",
            "ringtail_produce_bytes_total{shard=\"0\"} 1000",
            "ringtail_produce_batches_total{shard=\"0\"} 2",
            "ringtail_fetch_bytes_total{shard=\"1\"} 300",
            "ringtail_read_ahead_hits_total{shard=\"1\"} 9",
            "# TYPE ringtail_requests_total counter",
            "ringtail_connections_active{shard=\"0\"} 3",
            "ringtail_connections_accepted_total{shard=\"0\"} 5",
            "ringtail_connections_moved_total{shard=\"0\"} 2",
            "ringtail_batch_cache_bytes{shard=\"0\"} 4096",
            "ringtail_cross_shard_waits_parked{shard=\"0\"} 4",
            "ringtail_cross_shard_waits_cancelled_total{shard=\"0\"} 6",
            "ringtail_cross_shard_waits_refused_total{shard=\"1\"} 0",
            "# TYPE ringtail_cross_shard_waits_parked gauge",
            "# TYPE ringtail_connections_active gauge",
            "# TYPE ringtail_io_buffer_bytes gauge",
            "# TYPE ringtail_connections_accepted_total counter",
            "# TYPE ringtail_request_duration_seconds histogram",
            "ringtail_request_duration_seconds_bucket{shard=\"0\",api=\"Produce\",le=\"0.0001\"} 1",
            "ringtail_request_duration_seconds_bucket{shard=\"0\",api=\"Produce\",le=\"0.0025\"} 1",
            "ringtail_request_duration_seconds_bucket{shard=\"0\",api=\"Produce\",le=\"0.005\"} 2",
            "ringtail_request_duration_seconds_bucket{shard=\"0\",api=\"Produce\",le=\"10\"} 2",
            "ringtail_request_duration_seconds_bucket{shard=\"0\",api=\"Produce\",le=\"+Inf\"} 3",
            "ringtail_request_duration_seconds_sum{shard=\"0\",api=\"Produce\"} 60.003",
            "ringtail_request_duration_seconds_count{shard=\"0\",api=\"Produce\"} 3",
            "ringtail_request_duration_seconds_bucket{shard=\"0\",api=\"Fetch\",le=\"0.05\"} 0",
            "ringtail_request_duration_seconds_bucket{shard=\"0\",api=\"Fetch\",le=\"0.1\"} 1",
            "ringtail_request_duration_seconds_count{shard=\"1\",api=\"Fetch\"} 0",
            "# TYPE ringtail_log_write_duration_seconds histogram",
            "ringtail_log_write_duration_seconds_bucket{shard=\"1\",le=\"0.001\"} 1",
            "ringtail_log_write_duration_seconds_bucket{shard=\"1\",le=\"0.01\"} 2",
            "ringtail_log_write_duration_seconds_sum{shard=\"1\"} 0.008",
            "ringtail_log_write_duration_seconds_count{shard=\"1\"} 2",
            "ringtail_log_fsync_duration_seconds_count{shard=\"0\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("shard=\"7\""));
        assert_eq!(text.matches("ringtail_requests_total{").count(), 2);
        assert!(!text.contains("api=\"Metadata\",le="));
    }
}
