//! Measurement: latency histograms, per-second series, the JSON result file and the human
//! summary.
//!
//! Latency is recorded in microseconds (3 significant digits, up to 1 hour). Throughput counts
//! records whose acknowledgement (or receipt) falls inside the measured window
//! `[warmup, duration)`, divided by the window length, so a backlog drained after the end is
//! not credited to the window. Latency counts records whose *intended* send time falls inside
//! the window.

use crate::workload::{ConsumeCheck, Workload};
use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Highest latency the histograms hold, in microseconds (1 hour).
const LATENCY_US_MAX: u64 = 3_600_000_000;

/// One time base shared by all workers: a monotonic origin plus the wall-clock time at that
/// origin, so intended send times can travel inside records (end-to-end latency) between
/// threads on the same host.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub t0: Instant,
    pub t0_unix_ns: u64,
}

impl Clock {
    pub fn now() -> Clock {
        let t0 = Instant::now();
        let t0_unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Clock { t0, t0_unix_ns }
    }
    /// Nanoseconds since t0 on the monotonic clock.
    pub fn elapsed_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }
    /// Current wall-clock time in ns since the epoch.
    pub fn unix_ns() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    }
}

pub fn new_latency_histogram() -> Histogram<u64> {
    // ok: constant, valid bounds (low 1 <= high/2, sigfig 3).
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct SecondBucket {
    pub produced_records: u64,
    pub produced_bytes: u64,
    pub consumed_records: u64,
    pub consumed_bytes: u64,
    /// Produce requests written in this second, and their frame bytes.
    pub requests: u64,
    pub request_bytes: u64,
    /// Highest produce latency of a record acknowledged in this second (µs).
    pub produce_latency_max_us: u64,
    /// Highest send lag of a record written in this second (µs).
    pub send_lag_max_us: u64,
    /// Longest produce round trip (written → response read) ending in this second (µs).
    pub round_trip_max_us: u64,
    /// Longest lateness of the worker's stall probe waking in this second (µs): how long the
    /// harness's own executor kept its tasks from running (busy task, or its thread off CPU).
    pub stall_max_us: u64,
}

/// Intended send times (ns since the clock's origin) of a batch's records in order,
/// run-length encoded: records generated together in closed loop share one time, so a batch
/// of a thousand small records carries a few dozen entries and its latencies are recorded
/// once per run instead of once per record. Open-loop times are all distinct (one run each).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IntendedTimes {
    runs: Vec<(u64, u32)>,
    records: u64,
}

impl IntendedTimes {
    pub fn with_capacity(runs: usize) -> IntendedTimes {
        IntendedTimes {
            runs: Vec::with_capacity(runs),
            records: 0,
        }
    }

    pub fn push(&mut self, t_ns: u64) {
        self.records += 1;
        if let Some(last) = self.runs.last_mut() {
            if last.0 == t_ns && last.1 < u32::MAX {
                last.1 += 1;
                return;
            }
        }
        self.runs.push((t_ns, 1));
    }

    /// Number of records.
    pub fn records(&self) -> u64 {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// `(time, records)` pairs in order.
    pub fn runs(&self) -> &[(u64, u32)] {
        &self.runs
    }
}

impl FromIterator<u64> for IntendedTimes {
    fn from_iter<I: IntoIterator<Item = u64>>(iter: I) -> Self {
        let mut t = IntendedTimes::default();
        for x in iter {
            t.push(x);
        }
        t
    }
}

/// Counters of one worker thread; merged after the run.
pub struct WorkerStats {
    pub produce_latency_us: Histogram<u64>,
    /// Time from intended send to the request being written to the socket: the harness's
    /// own (plus batching/linger) share of the produce latency.
    pub send_lag_us: Histogram<u64>,
    pub e2e_latency_us: Histogram<u64>,
    /// Produce request written → its response read (acks != 0), per request.
    pub round_trip_us: Histogram<u64>,
    pub produced_all: u64,
    pub produced_in_window: u64,
    pub produced_bytes_in_window: u64,
    pub produce_errors: u64,
    /// Records re-sent after a retriable error (each attempt counted).
    pub produce_retries: u64,
    pub produce_checksum: u64,
    pub consumed_all: u64,
    pub consumed_in_window: u64,
    pub consumed_bytes_in_window: u64,
    pub consume_checksum: u64,
    pub requests_sent: u64,
    /// Run-queue wait of the worker thread during the run (ns).
    pub runq_wait_ns: u64,
    pub series: Vec<SecondBucket>,
    pub errors: Vec<String>,
    pub window_start_ns: u64,
    pub window_end_ns: u64,
}

impl WorkerStats {
    pub fn new(w: &Workload) -> WorkerStats {
        WorkerStats {
            produce_latency_us: new_latency_histogram(),
            send_lag_us: new_latency_histogram(),
            e2e_latency_us: new_latency_histogram(),
            round_trip_us: new_latency_histogram(),
            produced_all: 0,
            produced_in_window: 0,
            produced_bytes_in_window: 0,
            produce_errors: 0,
            produce_retries: 0,
            produce_checksum: 0,
            consumed_all: 0,
            consumed_in_window: 0,
            consumed_bytes_in_window: 0,
            consume_checksum: 0,
            requests_sent: 0,
            runq_wait_ns: 0,
            series: Vec::new(),
            errors: Vec::new(),
            window_start_ns: (w.warmup_s * 1e9) as u64,
            window_end_ns: (w.duration_s * 1e9) as u64,
        }
    }

    fn bucket(&mut self, at_ns: u64) -> &mut SecondBucket {
        let s = (at_ns / 1_000_000_000) as usize;
        // Bounded: runs are limited to their duration plus drain time.
        if self.series.len() <= s {
            self.series.resize(s + 1, SecondBucket::default());
        }
        &mut self.series[s]
    }

    pub fn in_window(&self, at_ns: u64) -> bool {
        at_ns >= self.window_start_ns && at_ns < self.window_end_ns
    }

    pub fn note_error(&mut self, e: String) {
        if self.errors.len() < 20 {
            self.errors.push(e);
        }
    }

    /// A produced batch was acknowledged at `ack_ns`.
    pub fn on_acked(
        &mut self,
        ack_ns: u64,
        intended: &IntendedTimes,
        payload_bytes: u64,
        checksum: u64,
    ) {
        let n = intended.records();
        self.produced_all += n;
        self.produce_checksum = self.produce_checksum.wrapping_add(checksum);
        let b = self.bucket(ack_ns);
        b.produced_records += n;
        b.produced_bytes += payload_bytes;
        if self.in_window(ack_ns) {
            self.produced_in_window += n;
            self.produced_bytes_in_window += payload_bytes;
        }
        // The earliest intended time has the batch's highest latency.
        if let Some(&(first, _)) = intended.runs().first() {
            let b = self.bucket(ack_ns);
            b.produce_latency_max_us = b
                .produce_latency_max_us
                .max(ack_ns.saturating_sub(first) / 1000);
        }
        for &(t, count) in intended.runs() {
            if self.in_window(t) {
                let us = ack_ns.saturating_sub(t) / 1000;
                self.produce_latency_us
                    .saturating_record_n(us.max(1), count as u64);
            }
        }
    }

    /// The response to a Produce request arrived at `now_ns`, `rtt_ns` after the request
    /// was written. Requests written in the warm-up are left out, like records intended then.
    pub fn on_round_trip(&mut self, now_ns: u64, rtt_ns: u64) {
        let b = self.bucket(now_ns);
        b.round_trip_max_us = b.round_trip_max_us.max(rtt_ns / 1000);
        if self.in_window(now_ns.saturating_sub(rtt_ns)) {
            self.round_trip_us.saturating_record((rtt_ns / 1000).max(1));
        }
    }

    /// The stall probe, due at `due_ns`, ran at `now_ns`.
    pub fn on_probe(&mut self, due_ns: u64, now_ns: u64) {
        let b = self.bucket(now_ns);
        b.stall_max_us = b.stall_max_us.max(now_ns.saturating_sub(due_ns) / 1000);
    }

    /// A Produce request of `bytes` bytes (whole frame) is being written at `now_ns`.
    pub fn on_request(&mut self, now_ns: u64, bytes: usize) {
        self.requests_sent += 1;
        let b = self.bucket(now_ns);
        b.requests += 1;
        b.request_bytes += bytes as u64;
    }

    /// A batch was written to the socket at `sent_ns`.
    pub fn on_sent(&mut self, sent_ns: u64, intended: &IntendedTimes) {
        if let Some(&(first, _)) = intended.runs().first() {
            let b = self.bucket(sent_ns);
            b.send_lag_max_us = b.send_lag_max_us.max(sent_ns.saturating_sub(first) / 1000);
        }
        for &(t, count) in intended.runs() {
            if self.in_window(t) {
                self.send_lag_us
                    .saturating_record_n((sent_ns.saturating_sub(t) / 1000).max(1), count as u64);
            }
        }
    }

    /// One record was consumed at `now_ns`; `intended_ns` comes from the record if it carries
    /// the harness's header.
    pub fn on_consumed(
        &mut self,
        now_ns: u64,
        payload_bytes: u64,
        intended_ns: Option<u64>,
        e2e_us: Option<u64>,
    ) {
        self.count_consumed(now_ns, 1, payload_bytes);
        if let (Some(t), Some(us)) = (intended_ns, e2e_us) {
            if self.in_window(t) {
                self.e2e_latency_us.saturating_record(us.max(1));
            }
        }
    }

    /// `records` records of one batch were counted at `now_ns` from its header alone
    /// (`--check headers`); `wire_bytes` is what the batch occupied in the response. No
    /// latency and no checksum: the records were not read.
    pub fn on_consumed_batch(&mut self, now_ns: u64, records: u64, wire_bytes: u64) {
        self.count_consumed(now_ns, records, wire_bytes);
    }

    fn count_consumed(&mut self, now_ns: u64, records: u64, bytes: u64) {
        self.consumed_all += records;
        let b = self.bucket(now_ns);
        b.consumed_records += records;
        b.consumed_bytes += bytes;
        if self.in_window(now_ns) {
            self.consumed_in_window += records;
            self.consumed_bytes_in_window += bytes;
        }
    }

    pub fn merge(&mut self, o: &WorkerStats) -> Result<()> {
        self.produce_latency_us
            .add(&o.produce_latency_us)
            .context("merge histogram")?;
        self.e2e_latency_us
            .add(&o.e2e_latency_us)
            .context("merge histogram")?;
        self.send_lag_us
            .add(&o.send_lag_us)
            .context("merge histogram")?;
        self.round_trip_us
            .add(&o.round_trip_us)
            .context("merge histogram")?;
        self.produced_all += o.produced_all;
        self.produced_in_window += o.produced_in_window;
        self.produced_bytes_in_window += o.produced_bytes_in_window;
        self.produce_errors += o.produce_errors;
        self.produce_retries += o.produce_retries;
        self.produce_checksum = self.produce_checksum.wrapping_add(o.produce_checksum);
        self.consumed_all += o.consumed_all;
        self.consumed_in_window += o.consumed_in_window;
        self.consumed_bytes_in_window += o.consumed_bytes_in_window;
        self.consume_checksum = self.consume_checksum.wrapping_add(o.consume_checksum);
        self.requests_sent += o.requests_sent;
        self.runq_wait_ns += o.runq_wait_ns;
        if self.series.len() < o.series.len() {
            self.series.resize(o.series.len(), SecondBucket::default());
        }
        for (a, b) in self.series.iter_mut().zip(&o.series) {
            a.produced_records += b.produced_records;
            a.produced_bytes += b.produced_bytes;
            a.consumed_records += b.consumed_records;
            a.consumed_bytes += b.consumed_bytes;
            a.requests += b.requests;
            a.request_bytes += b.request_bytes;
            a.produce_latency_max_us = a.produce_latency_max_us.max(b.produce_latency_max_us);
            a.send_lag_max_us = a.send_lag_max_us.max(b.send_lag_max_us);
            a.round_trip_max_us = a.round_trip_max_us.max(b.round_trip_max_us);
            a.stall_max_us = a.stall_max_us.max(b.stall_max_us);
        }
        for e in &o.errors {
            self.note_error(e.clone());
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
}

impl LatencySummary {
    pub fn from_us(h: &Histogram<u64>) -> Option<LatencySummary> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(LatencySummary {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            p9999: ms(h.value_at_quantile(0.9999)),
            max: ms(h.max()),
        })
    }
}

/// (percentile, latency ms) points for the percentile curve, from p0 to p99.999+.
pub fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for it in h.iter_quantiles(2) {
        let q = it.quantile_iterated_to();
        out.push((
            q * 100.0,
            h.highest_equivalent(it.value_iterated_to()) as f64 / 1000.0,
        ));
        if q >= 0.99999 {
            break;
        }
    }
    out.push((100.0, h.max() as f64 / 1000.0));
    out
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SeriesPoint {
    pub t_s: u64,
    pub produced_records_per_sec: u64,
    pub produced_mb_per_sec: f64,
    pub consumed_records_per_sec: u64,
    pub consumed_mb_per_sec: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub broker_cpu_pct: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub broker_rss_mb: Option<f64>,
    /// The broker's run-queue wait in this second (% of wall time, summed over threads):
    /// when other processes took its CPU.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub broker_runq_wait_pct: Option<f64>,
    /// Produce requests written in this second and their mean frame size: a producer that
    /// fell behind its schedule sends fewer, fuller requests.
    #[serde(default)]
    pub produce_requests: u64,
    #[serde(default)]
    pub produce_request_kib_mean: f64,
    /// Highest produce latency of a record acknowledged in this second, and highest send lag
    /// of a record written in it (ms): when a run fell behind and whether it recovered.
    #[serde(default)]
    pub produce_latency_max_ms: f64,
    #[serde(default)]
    pub send_lag_max_ms: f64,
    /// Longest produce round trip (request written → response read) ending in this second.
    #[serde(default)]
    pub produce_round_trip_max_ms: f64,
    /// Longest time the harness's own executor kept its tasks waiting in this second (a
    /// probe's lateness): a round trip or send lag no longer than this may be the harness's.
    #[serde(default)]
    pub harness_stall_max_ms: f64,
    /// MB/s written to disk by processes other than the broker in this second.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub other_disk_write_mb_per_sec: Option<f64>,
}

/// One per-second sample of a local broker and of the machine around it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BrokerSample {
    /// CPU % of one core.
    pub cpu_pct: f64,
    pub rss_mb: f64,
    /// Runnable but waiting for a CPU, % of wall time (summed over threads).
    pub runq_wait_pct: f64,
    /// MB/s written to the machine's disks by anything but the broker (`None`: unknown).
    pub other_disk_write_mb_per_sec: Option<f64>,
}

/// Run-queue wait (broker or harness, % of wall time) above which a run is flagged as
/// having shared its CPUs. Runs on a quiet machine stay at 0.5-5%; runs that overlapped a
/// build of other processes on the same cores measured 12-30%, and those were the ones
/// whose producer fell behind its schedule (latency in the hundreds of ms).
pub const RUNQ_WAIT_WARN_PCT: f64 = 8.0;
/// Disk writes by other processes (MB/s, mean over the run) above which a run is flagged:
/// a buffered writer next to the broker (a build, a copy) takes the disk's bandwidth and
/// stalls the broker's appends without taking its CPU.
pub const OTHER_DISK_WRITE_WARN_MB_PER_SEC: f64 = 20.0;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BrokerUsage {
    pub pid: u32,
    pub cpu_pct_mean: f64,
    pub cpu_pct_max: f64,
    pub rss_mb_max: f64,
    /// Time the broker's threads were runnable but not running, % of wall time (summed over
    /// threads): CPU taken by other processes on a shared machine.
    #[serde(default)]
    pub runq_wait_pct_mean: f64,
    /// MB/s written to the machine's disks by other processes (device writes minus the
    /// broker's own), mean and highest second; absent when /proc did not tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_disk_write_mb_per_sec_mean: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_disk_write_mb_per_sec_max: Option<f64>,
}

/// What consumed bytes count (`consumed_bytes_unit`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsumedBytesUnit {
    /// Bytes of record values (`--check full`), as for produced bytes.
    #[default]
    RecordValues,
    /// Wire bytes of every batch holding a new record: 12 + its batch length, headers and
    /// record framing included (`--check headers`, which never reads the values).
    BatchWireBytes,
}

impl ConsumedBytesUnit {
    pub fn describe(self) -> &'static str {
        match self {
            ConsumedBytesUnit::RecordValues => "record values",
            ConsumedBytesUnit::BatchWireBytes => "batch wire bytes",
        }
    }
}

/// The JSON result file. `records_total`, `records_per_sec`, `mb_per_sec` and `latency_ms`
/// describe the run's primary direction: produced (acked) records for produce and e2e runs,
/// consumed records for consume runs. `latency_ms` is the produce ack latency for produce
/// runs and the end-to-end latency for e2e/consume runs. MB = 10^6 bytes of record values,
/// except consumed MB with `consume_check` = headers: batch wire bytes (`consumed_bytes_unit`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BenchResult {
    pub name: String,
    pub mode: String,
    pub started_at_unix_s: u64,
    pub window_s: f64,
    pub records_total: u64,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
    pub latency_ms: Option<LatencySummary>,
    pub produce_latency_ms: Option<LatencySummary>,
    pub e2e_latency_ms: Option<LatencySummary>,
    /// Intended send -> request written (batching, linger, in-flight limit, harness delays).
    #[serde(default)]
    pub send_lag_ms: Option<LatencySummary>,
    /// Per Produce request: written → response read (the broker's and the network's share;
    /// acks != 0 only). A run whose send lag is high while this stays low was held up by
    /// the harness; one where both are high, by the broker side.
    #[serde(default)]
    pub produce_round_trip_ms: Option<LatencySummary>,
    pub produced_acked_all: u64,
    pub produce_errors: u64,
    #[serde(default)]
    pub produce_retries: u64,
    /// Wrapping sum of crc32(key ++ value) over acknowledged records (key empty if null).
    pub produce_checksum: u64,
    pub consumed_total: u64,
    pub consumed_records_per_sec: f64,
    pub consumed_mb_per_sec: f64,
    /// What consumers verified: `full` (batch CRCs, every record, checksum, e2e latency) or
    /// `headers` (batch headers only). Older results were all `full`.
    #[serde(default)]
    pub consume_check: ConsumeCheck,
    /// Whether the consumed content was verified; false with `consume_check` = headers.
    #[serde(default = "content_verified_by_default")]
    pub consume_content_verified: bool,
    /// Unit of `consumed_mb_per_sec`, of the series' consumed MB/s, and of `mb_per_sec` in
    /// consume runs.
    #[serde(default)]
    pub consumed_bytes_unit: ConsumedBytesUnit,
    /// Wrapping sum of crc32(key ++ value) over consumed records; null when the records were
    /// not read (`consume_check` = headers), so nothing can compare it by mistake.
    pub consume_checksum: Option<u64>,
    pub requests_sent: u64,
    pub latency_percentiles: Vec<(f64, f64)>,
    pub series: Vec<SeriesPoint>,
    pub broker: Option<BrokerUsage>,
    /// CPU used by the harness itself during the run, % of one core: near 100% per worker
    /// core means the harness, not the broker, may be the limit.
    #[serde(default)]
    pub harness_cpu_pct: Option<f64>,
    /// Time the harness's threads were runnable but waiting for a CPU, % of wall time.
    #[serde(default)]
    pub harness_runq_wait_pct: Option<f64>,
    /// Why this run's latencies may not be representative: other processes took the
    /// broker's or the harness's CPU, or the disk's bandwidth, during the run (see
    /// [`BenchResult::contention_warnings`]). Empty when nothing was noticed.
    #[serde(default)]
    pub contention: Vec<String>,
    pub errors: Vec<String>,
    pub workload: Option<Workload>,
}

fn content_verified_by_default() -> bool {
    true
}

impl BenchResult {
    pub fn build(
        w: &Workload,
        s: &WorkerStats,
        started_at_unix_s: u64,
        broker: Option<(BrokerUsage, Vec<BrokerSample>)>,
    ) -> BenchResult {
        let window_s = (w.duration_s - w.warmup_s).max(1e-9);
        let produce = LatencySummary::from_us(&s.produce_latency_us);
        let e2e = LatencySummary::from_us(&s.e2e_latency_us);
        let consume_primary = w.mode == crate::workload::Mode::Consume;
        let (records, bytes) = if consume_primary {
            (s.consumed_in_window, s.consumed_bytes_in_window)
        } else {
            (s.produced_in_window, s.produced_bytes_in_window)
        };
        let (latency, curve_h) = match w.mode {
            crate::workload::Mode::Produce => (produce.clone(), &s.produce_latency_us),
            _ => (e2e.clone(), &s.e2e_latency_us),
        };
        let samples = broker.as_ref().map(|b| b.1.clone()).unwrap_or_default();
        let series = s
            .series
            .iter()
            .enumerate()
            .map(|(i, b)| SeriesPoint {
                t_s: i as u64,
                produced_records_per_sec: b.produced_records,
                produced_mb_per_sec: b.produced_bytes as f64 / 1e6,
                consumed_records_per_sec: b.consumed_records,
                consumed_mb_per_sec: b.consumed_bytes as f64 / 1e6,
                broker_cpu_pct: samples.get(i).map(|x| x.cpu_pct),
                broker_rss_mb: samples.get(i).map(|x| x.rss_mb),
                broker_runq_wait_pct: samples.get(i).map(|x| x.runq_wait_pct),
                other_disk_write_mb_per_sec: samples
                    .get(i)
                    .and_then(|x| x.other_disk_write_mb_per_sec),
                produce_requests: b.requests,
                produce_request_kib_mean: if b.requests > 0 {
                    b.request_bytes as f64 / b.requests as f64 / 1024.0
                } else {
                    0.0
                },
                produce_latency_max_ms: b.produce_latency_max_us as f64 / 1000.0,
                send_lag_max_ms: b.send_lag_max_us as f64 / 1000.0,
                produce_round_trip_max_ms: b.round_trip_max_us as f64 / 1000.0,
                harness_stall_max_ms: b.stall_max_us as f64 / 1000.0,
            })
            .collect();
        BenchResult {
            name: w.name.clone(),
            mode: format!("{:?}", w.mode).to_lowercase(),
            started_at_unix_s,
            window_s,
            records_total: records,
            records_per_sec: records as f64 / window_s,
            mb_per_sec: bytes as f64 / 1e6 / window_s,
            latency_ms: latency,
            produce_latency_ms: produce,
            e2e_latency_ms: e2e,
            send_lag_ms: LatencySummary::from_us(&s.send_lag_us),
            produce_round_trip_ms: LatencySummary::from_us(&s.round_trip_us),
            produced_acked_all: s.produced_all,
            produce_errors: s.produce_errors,
            produce_retries: s.produce_retries,
            produce_checksum: s.produce_checksum,
            consumed_total: s.consumed_all,
            consumed_records_per_sec: s.consumed_in_window as f64 / window_s,
            consumed_mb_per_sec: s.consumed_bytes_in_window as f64 / 1e6 / window_s,
            consume_check: w.consume_check,
            consume_content_verified: w.consume_check == ConsumeCheck::Full,
            consumed_bytes_unit: match w.consume_check {
                ConsumeCheck::Full => ConsumedBytesUnit::RecordValues,
                ConsumeCheck::Headers => ConsumedBytesUnit::BatchWireBytes,
            },
            consume_checksum: match w.consume_check {
                ConsumeCheck::Full => Some(s.consume_checksum),
                ConsumeCheck::Headers => None,
            },
            requests_sent: s.requests_sent,
            latency_percentiles: percentile_curve(curve_h),
            series,
            broker: broker.map(|b| b.0),
            harness_cpu_pct: None,
            harness_runq_wait_pct: None,
            contention: Vec::new(),
            errors: s.errors.clone(),
            workload: Some(w.clone()),
        }
    }

    /// Signs that the run shared the machine with other work, from the run-queue waits and
    /// the other processes' disk writes already in the result. A producer near its
    /// in-flight limit cannot catch up after its round trips slow down, so on a shared
    /// machine a run may lag its schedule by hundreds of ms while a quiet rerun does not:
    /// such runs are not comparable and should be repeated.
    pub fn contention_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(b) = &self.broker {
            if b.runq_wait_pct_mean > RUNQ_WAIT_WARN_PCT {
                out.push(format!(
                    "the broker waited for a CPU {:.0}% of the time (other processes on its cores)",
                    b.runq_wait_pct_mean
                ));
            }
            if let Some(mb) = b.other_disk_write_mb_per_sec_mean {
                if mb > OTHER_DISK_WRITE_WARN_MB_PER_SEC {
                    out.push(format!(
                        "other processes wrote {mb:.0} MB/s to disk (highest second {:.0} MB/s)",
                        b.other_disk_write_mb_per_sec_max.unwrap_or(mb)
                    ));
                }
            }
        }
        if let Some(w) = self.harness_runq_wait_pct {
            if w > RUNQ_WAIT_WARN_PCT {
                out.push(format!(
                    "the harness waited for a CPU {w:.0}% of the time (other processes on its cores)"
                ));
            }
        }
        out
    }

    pub fn summary(&self) -> String {
        let mut o = String::new();
        let lat = |l: &Option<LatencySummary>| match l {
            Some(l) => format!(
                "p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  p99.99 {:.3}  max {:.3} ms  (n={})",
                l.p50, l.p90, l.p99, l.p999, l.p9999, l.max, l.count
            ),
            None => "n/a".into(),
        };
        o += &format!("== {} ({}) ==\n", self.name, self.mode);
        if self.mode != "consume" {
            o += &format!(
                "produced : {} records in {:.1} s window = {:.0} rec/s, {:.2} MB/s  (acked total {}, errors {}, retried {})\n",
                self.records_total, self.window_s, self.records_per_sec, self.mb_per_sec, self.produced_acked_all, self.produce_errors, self.produce_retries
            );
            o += &format!(
                "produce latency (ack - intended send): {}\n",
                lat(&self.produce_latency_ms)
            );
            o += &format!(
                "  of which send lag (written - intended): {}\n",
                lat(&self.send_lag_ms)
            );
            if self.produce_round_trip_ms.is_some() {
                o += &format!(
                    "  request round trip (response - written): {}\n",
                    lat(&self.produce_round_trip_ms)
                );
            }
        }
        if self.mode != "produce" {
            o += &format!(
                "consumed : {} records = {:.0} rec/s, {:.2} MB/s of {} in window (total {})\n",
                if self.mode == "consume" {
                    self.records_total
                } else {
                    (self.consumed_records_per_sec * self.window_s) as u64
                },
                self.consumed_records_per_sec,
                self.consumed_mb_per_sec,
                self.consumed_bytes_unit.describe(),
                self.consumed_total
            );
            if self.consume_content_verified {
                o += &format!(
                    "end-to-end latency (consume - intended send): {}\n",
                    lat(&self.e2e_latency_ms)
                );
            } else {
                o += &format!(
                    "content NOT verified (--check {}): records counted from batch headers; \
                     no CRC, no record decode, no checksum, no end-to-end latency\n",
                    self.consume_check.name()
                );
            }
        }
        if let Some(b) = &self.broker {
            o += &format!(
                "broker pid {}: CPU mean {:.0}% max {:.0}%, RSS max {:.1} MB; runnable but waiting for a CPU: {:.0}%\n",
                b.pid, b.cpu_pct_mean, b.cpu_pct_max, b.rss_mb_max, b.runq_wait_pct_mean
            );
        }
        if let Some(c) = self.harness_cpu_pct {
            o += &format!(
                "harness CPU: {c:.0}% of one core; runnable but waiting for a CPU: {:.0}%\n",
                self.harness_runq_wait_pct.unwrap_or(0.0)
            );
        }
        if let Some(b) = &self.broker {
            if let Some(mb) = b.other_disk_write_mb_per_sec_mean {
                o += &format!(
                    "disk writes by other processes: mean {mb:.1} MB/s, highest second {:.1} MB/s\n",
                    b.other_disk_write_mb_per_sec_max.unwrap_or(mb)
                );
            }
        }
        for c in &self.contention {
            o += &format!("warning: shared machine: {c}; latencies not representative, rerun\n");
        }
        for e in self.errors.iter().take(5) {
            o += &format!("error: {e}\n");
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_and_latency_accounting() {
        let w = Workload {
            warmup_s: 1.0,
            duration_s: 3.0,
            ..Workload::default()
        };
        let mut s = WorkerStats::new(&w);
        // Intended in warm-up, acked in window: counts for throughput, not latency.
        s.on_acked(
            1_500_000_000,
            &IntendedTimes::from_iter([900_000_000]),
            100,
            7,
        );
        // Intended and acked in window: 5 ms latency.
        s.on_acked(
            2_005_000_000,
            &IntendedTimes::from_iter([2_000_000_000]),
            100,
            8,
        );
        // Acked after the window: neither throughput nor (intended inside) ... latency counts.
        s.on_acked(
            3_100_000_000,
            &IntendedTimes::from_iter([2_900_000_000]),
            100,
            9,
        );
        assert_eq!(s.produced_all, 3);
        assert_eq!(s.produced_in_window, 2);
        assert_eq!(s.produce_latency_us.len(), 2);
        assert_eq!(s.produce_checksum, 24);
        let r = BenchResult::build(&w, &s, 0, None);
        assert_eq!(r.records_total, 2);
        assert!((r.records_per_sec - 1.0).abs() < 1e-9);
        let l = r.latency_ms.expect("latency");
        assert!((l.p50 - 5.0).abs() < 0.01, "{l:?}");
        assert!((l.max - 200.0).abs() < 0.5, "{l:?}");
        assert_eq!(r.series.len(), 4);
    }

    /// A headers-only consume run says so: no checksum (null in JSON, not 0), content not
    /// verified, consumed bytes in batch wire bytes; a full run keeps today's fields.
    #[test]
    fn headers_check_result_says_content_was_not_verified() {
        let mut w = Workload {
            mode: crate::workload::Mode::Consume,
            warmup_s: 0.0,
            duration_s: 2.0,
            consume_check: ConsumeCheck::Headers,
            ..Workload::default()
        };
        let mut s = WorkerStats::new(&w);
        s.on_consumed_batch(500_000_000, 100, 2_000_000);
        let r = BenchResult::build(&w, &s, 0, None);
        assert_eq!(r.consumed_total, 100);
        assert!((r.consumed_mb_per_sec - 1.0).abs() < 1e-9);
        assert_eq!(r.consume_checksum, None);
        assert!(!r.consume_content_verified);
        assert_eq!(r.consumed_bytes_unit, ConsumedBytesUnit::BatchWireBytes);
        let text = r.summary();
        assert!(text.contains("MB/s of batch wire bytes"), "{text}");
        assert!(text.contains("content NOT verified"), "{text}");
        assert!(!text.contains("end-to-end latency ("), "{text}");
        let json = serde_json::to_value(&r).expect("json");
        assert!(json["consume_checksum"].is_null());
        assert_eq!(json["consume_check"], "headers");
        assert_eq!(json["consumed_bytes_unit"], "batch_wire_bytes");

        w.consume_check = ConsumeCheck::Full;
        let mut s = WorkerStats::new(&w);
        s.on_consumed(500_000_000, 1000, None, None);
        s.consume_checksum = 42;
        let r = BenchResult::build(&w, &s, 0, None);
        assert_eq!(r.consume_checksum, Some(42));
        assert!(r.consume_content_verified);
        let text = r.summary();
        assert!(text.contains("MB/s of record values"), "{text}");
        assert!(text.contains("end-to-end latency ("), "{text}");
        assert!(!text.contains("NOT verified"), "{text}");
        // Results written before these fields existed read back as full checks.
        let mut json = serde_json::to_value(&r).expect("json");
        for k in [
            "consume_check",
            "consume_content_verified",
            "consumed_bytes_unit",
        ] {
            json.as_object_mut().expect("object").remove(k);
        }
        let old: BenchResult = serde_json::from_value(json).expect("old result");
        assert_eq!(old.consume_check, ConsumeCheck::Full);
        assert!(old.consume_content_verified);
        assert_eq!(old.consumed_bytes_unit, ConsumedBytesUnit::RecordValues);
    }

    #[test]
    fn intended_runs_weigh_latency_by_record_count() {
        let w = Workload {
            warmup_s: 0.0,
            duration_s: 10.0,
            ..Workload::default()
        };
        let t: IntendedTimes = [1_000_000, 1_000_000, 1_000_000, 2_000_000]
            .into_iter()
            .collect();
        assert_eq!(t.records(), 4);
        assert_eq!(t.runs(), &[(1_000_000, 3), (2_000_000, 1)]);
        let mut s = WorkerStats::new(&w);
        s.on_sent(3_000_000, &t);
        s.on_acked(11_000_000, &t, 400, 5);
        assert_eq!(s.produced_all, 4);
        assert_eq!(s.produce_latency_us.len(), 4);
        assert_eq!(s.send_lag_us.len(), 4);
        // Three records at 10 ms, one at 9 ms.
        assert_eq!(s.produce_latency_us.value_at_quantile(0.5) / 100, 100);
        assert_eq!(s.produce_latency_us.min() / 100, 90);
    }

    #[test]
    fn series_shows_request_sizes_and_worst_latency_per_second() {
        let w = Workload {
            warmup_s: 0.0,
            duration_s: 10.0,
            ..Workload::default()
        };
        let mut s = WorkerStats::new(&w);
        // Second 0: two small requests, acknowledged quickly.
        let a: IntendedTimes = [100_000_000, 100_100_000].into_iter().collect();
        s.on_request(100_200_000, 2_000);
        s.on_sent(100_200_000, &a);
        s.on_request(100_300_000, 4_000);
        s.on_acked(100_600_000, &a, 2_000, 1);
        // Second 1: one big request whose records waited 300 ms to be written.
        let b: IntendedTimes = [1_100_000_000, 1_200_000_000].into_iter().collect();
        s.on_request(1_400_000_000, 130_000);
        s.on_sent(1_400_000_000, &b);
        s.on_acked(1_402_000_000, &b, 2_000, 1);
        assert_eq!(s.requests_sent, 3);
        let mut other = WorkerStats::new(&w);
        other.on_request(1_500_000_000, 10_000);
        s.merge(&other).expect("merge");
        let samples = vec![
            BrokerSample {
                cpu_pct: 90.0,
                rss_mb: 30.0,
                runq_wait_pct: 2.0,
                other_disk_write_mb_per_sec: Some(0.5),
            },
            BrokerSample {
                cpu_pct: 40.0,
                rss_mb: 31.0,
                runq_wait_pct: 35.0,
                other_disk_write_mb_per_sec: None,
            },
        ];
        let r = BenchResult::build(&w, &s, 0, Some((BrokerUsage::default(), samples)));
        assert_eq!(r.series[1].broker_runq_wait_pct, Some(35.0));
        assert_eq!(r.series[0].other_disk_write_mb_per_sec, Some(0.5));
        assert_eq!(r.series[1].other_disk_write_mb_per_sec, None);
        let p0 = &r.series[0];
        assert_eq!(p0.produce_requests, 2);
        assert!((p0.produce_request_kib_mean - 3_000.0 / 1024.0).abs() < 1e-9);
        assert!((p0.send_lag_max_ms - 0.2).abs() < 1e-9);
        assert!((p0.produce_latency_max_ms - 0.6).abs() < 1e-9);
        let p1 = &r.series[1];
        assert_eq!(p1.produce_requests, 2);
        assert!((p1.produce_request_kib_mean - 70_000.0 / 1024.0).abs() < 1e-9);
        // The worst record is the batch's first: intended 1.1 s, written 1.4 s, acked 1.402 s.
        assert!((p1.send_lag_max_ms - 300.0).abs() < 1e-9);
        assert!((p1.produce_latency_max_ms - 302.0).abs() < 1e-9);
    }

    #[test]
    fn the_stall_probe_keeps_the_longest_lateness_per_second_across_workers() {
        let w = Workload::default();
        let mut a = WorkerStats::new(&w);
        a.on_probe(1_000_000, 1_100_000); // 0.1 ms late in second 0
        a.on_probe(1_500_000_000, 1_503_000_000); // 3 ms late in second 1
        let mut b = WorkerStats::new(&w);
        b.on_probe(2_000_000, 2_400_000); // 0.4 ms late in second 0
        b.on_probe(2_600_000_000, 2_600_000_000); // on time in second 2
        b.on_probe(1_800_000_000, 1_700_000_000); // a clock running backwards counts as 0
        a.merge(&b).expect("merge");
        let r = BenchResult::build(&w, &a, 0, None);
        let stalls: Vec<f64> = r.series.iter().map(|x| x.harness_stall_max_ms).collect();
        assert_eq!(stalls, vec![0.4, 3.0, 0.0]);
    }

    #[test]
    fn round_trips_are_summarised_and_kept_per_second() {
        let w = Workload {
            warmup_s: 1.0,
            duration_s: 10.0,
            ..Workload::default()
        };
        let mut s = WorkerStats::new(&w);
        // Written in the warm-up: only the per-second maximum sees it.
        s.on_round_trip(1_001_000_000, 40_000_000);
        s.on_round_trip(2_000_000_000, 300_000);
        s.on_round_trip(2_500_000_000, 5_000_000);
        let r = BenchResult::build(&w, &s, 0, None);
        let rt = r.produce_round_trip_ms.clone().expect("round trips");
        assert_eq!(rt.count, 2);
        assert!((rt.max - 5.0).abs() < 0.01, "{rt:?}");
        assert!((r.series[1].produce_round_trip_max_ms - 40.0).abs() < 1e-9);
        assert!((r.series[2].produce_round_trip_max_ms - 5.0).abs() < 1e-9);
        assert!(r.summary().contains("request round trip"));
        // No produce requests (consume runs): no summary.
        let empty = BenchResult::build(&w, &WorkerStats::new(&w), 0, None);
        assert!(empty.produce_round_trip_ms.is_none());
    }

    #[test]
    fn contention_is_flagged_from_waits_and_other_disk_writes() {
        let quiet = BenchResult {
            broker: Some(BrokerUsage {
                runq_wait_pct_mean: 2.5,
                other_disk_write_mb_per_sec_mean: Some(4.0),
                other_disk_write_mb_per_sec_max: Some(35.0),
                ..Default::default()
            }),
            harness_runq_wait_pct: Some(0.6),
            ..Default::default()
        };
        assert!(quiet.contention_warnings().is_empty());
        // Unknown counters (remote broker, no /proc access) flag nothing either.
        assert!(BenchResult::default().contention_warnings().is_empty());

        let mut busy = quiet.clone();
        if let Some(b) = busy.broker.as_mut() {
            b.runq_wait_pct_mean = 29.0;
            b.other_disk_write_mb_per_sec_mean = Some(262.0);
            b.other_disk_write_mb_per_sec_max = Some(1703.0);
        }
        busy.harness_runq_wait_pct = Some(25.0);
        let w = busy.contention_warnings();
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("broker waited for a CPU 29%"), "{w:?}");
        assert!(w[1].contains("262 MB/s") && w[1].contains("1703"), "{w:?}");
        assert!(w[2].contains("harness waited for a CPU 25%"), "{w:?}");
        busy.contention = w;
        let text = busy.summary();
        assert_eq!(text.matches("warning: shared machine").count(), 3, "{text}");
        // Results written before the field existed read back without warnings.
        let mut json = serde_json::to_value(&busy).expect("json");
        json.as_object_mut().expect("object").remove("contention");
        let old: BenchResult = serde_json::from_value(json).expect("old result");
        assert!(old.contention.is_empty());
    }
}
