//! `ringtail-bench`: a thread-per-core Kafka-protocol load generator with honest latency.
//!
//! Module map, in the order a run uses them:
//! - [`workload`]: what to run (CLI flags or OpenMessaging-Benchmark workload files).
//! - [`runner`]: one glommio executor per worker core; producers/consumers spread over them;
//!   a common start so intended send times share one origin.
//! - [`client`]: Kafka framing, ApiVersions negotiation, Metadata/CreateTopics/ListOffsets/
//!   InitProducerId — enough to drive any Kafka-compatible broker.
//! - [`produce`]: open-loop generator + batch accumulators + pipelined Produce requests.
//!   Latency = acknowledgement time − intended send time (no coordinated omission).
//! - [`consume`]: Fetch loops; end-to-end latency from the intended send time embedded in
//!   each record value ([`payload`]).
//! - [`batch`]: v2 record batch encoder/decoder (all five codecs).
//! - [`stats`], [`charts`], [`compare`]: histograms, JSON results, SVG charts, side-by-side.
//! - [`procstat`]: broker CPU/RSS from /proc when the broker is local.
//! - [`rawlimits`]: O_DIRECT write and loopback TCP bandwidth, measured beside the results.
//! - [`proxy`]: a TCP proxy that delays traffic (and rewrites Metadata so clients stay on it),
//!   used to validate the latency numbers.
//!
//! Invariants: every record's latency is measured from its intended send time, fixed before
//! it is generated; throughput counts only acknowledgements inside the measured window; a
//! record is counted as produced only after a successful acknowledgement (or, with acks=0,
//! after it was written to the socket).

pub mod batch;
pub mod charts;
pub mod client;
pub mod compare;
pub mod consume;
pub mod payload;
pub mod procstat;
pub mod produce;
pub mod proxy;
pub mod rawlimits;
pub mod runner;
pub mod stats;
pub mod workload;
