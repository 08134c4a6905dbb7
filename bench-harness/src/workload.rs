//! The description of a run: CLI flags and OpenMessaging-Benchmark workload files both
//! become a [`Workload`].

use crate::batch::Codec;
use anyhow::{anyhow, bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

/// Record value size: fixed or drawn uniformly from a range.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SizeDist {
    Fixed { bytes: usize },
    Uniform { min: usize, max: usize },
}

impl SizeDist {
    pub fn mean(&self) -> f64 {
        match *self {
            SizeDist::Fixed { bytes } => bytes as f64,
            SizeDist::Uniform { min, max } => (min + max) as f64 / 2.0,
        }
    }
    pub fn max(&self) -> usize {
        match *self {
            SizeDist::Fixed { bytes } => bytes,
            SizeDist::Uniform { max, .. } => max,
        }
    }
}

impl std::str::FromStr for SizeDist {
    type Err = anyhow::Error;
    /// `100` or `64..1024` (uniform, inclusive).
    fn from_str(s: &str) -> Result<SizeDist> {
        let d = if let Some((a, b)) = s.split_once("..") {
            let (min, max) = (a.trim().parse()?, b.trim().parse()?);
            ensure!(min <= max, "record size range {min}..{max} is empty");
            SizeDist::Uniform { min, max }
        } else {
            SizeDist::Fixed {
                bytes: s.trim().parse().context("record size")?,
            }
        };
        ensure!(d.max() <= 16 << 20, "record size over 16 MiB");
        Ok(d)
    }
}

/// How record keys are chosen (OMB `keyDistributor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyMode {
    /// No key; the sticky partitioner fills one partition's batch at a time.
    None,
    /// Keys `k0..k{n-1}` in turn.
    RoundRobin,
    /// Keys drawn uniformly from `k0..k{n-1}`.
    Random,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Produce,
    Consume,
    E2e,
}

/// Where consumers start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    Earliest,
    Latest,
}

/// How much of what they fetch consumers check (`--check`).
///
/// `Full` is the default and what every published result uses: every batch's CRC32C, every
/// record decoded, the `crc32(key ++ value)` checksum and end-to-end latency. `Headers` reads
/// only each batch's fixed header (offsets, length, magic, record count, attributes), so a
/// single consumer core can keep up with a broker that outruns the verifying consumer; it
/// measures what the broker serves, not what the harness can verify, and its results say so.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsumeCheck {
    #[default]
    Full,
    Headers,
}

impl ConsumeCheck {
    pub fn name(self) -> &'static str {
        match self {
            ConsumeCheck::Full => "full",
            ConsumeCheck::Headers => "headers",
        }
    }
}

impl std::str::FromStr for ConsumeCheck {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<ConsumeCheck> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "full" => ConsumeCheck::Full,
            "headers" => ConsumeCheck::Headers,
            other => bail!("unknown consumer check {other:?} (full|headers)"),
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Workload {
    pub name: String,
    pub mode: Mode,
    pub bootstrap: String,
    pub broker_override: Option<String>,
    pub topics: Vec<String>,
    pub partitions: i32,
    pub replication_factor: i16,
    pub create_topics: bool,
    pub record_size: SizeDist,
    pub key_mode: KeyMode,
    pub key_cardinality: u64,
    pub producers_per_topic: u32,
    pub subscriptions_per_topic: u32,
    pub consumers_per_subscription: u32,
    pub acks: i16,
    pub batch_bytes: usize,
    pub linger_ms: f64,
    pub compression: Codec,
    pub idempotence: bool,
    pub max_in_flight: usize,
    /// Total records/s over all producers; 0 = as fast as possible (closed loop).
    pub rate: f64,
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Cores of the harness's worker threads (one glommio executor each).
    pub cores: Vec<usize>,
    pub start_from: StartFrom,
    /// Stop consuming after this many records (consume mode); 0 = by duration.
    pub consume_records: u64,
    pub fetch_max_wait_ms: i32,
    /// What consumers verify of each fetched batch. Results written before this knob
    /// existed were all `full`.
    #[serde(default)]
    pub consume_check: ConsumeCheck,
    /// Bytes of records buffered per producer before the generator waits.
    pub buffer_bytes: usize,
    pub seed: u64,
    /// Local broker PID for /proc sampling (auto-detected from the bootstrap port if None).
    pub broker_pid: Option<u32>,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            name: "adhoc".into(),
            mode: Mode::Produce,
            bootstrap: "127.0.0.1:9092".into(),
            broker_override: None,
            topics: vec!["ringtail-bench".into()],
            partitions: 1,
            replication_factor: 1,
            create_topics: true,
            record_size: SizeDist::Fixed { bytes: 100 },
            key_mode: KeyMode::None,
            key_cardinality: 0,
            producers_per_topic: 1,
            subscriptions_per_topic: 1,
            consumers_per_subscription: 1,
            acks: 1,
            batch_bytes: 128 << 10,
            linger_ms: 1.0,
            compression: Codec::None,
            idempotence: false,
            max_in_flight: 5,
            rate: 0.0,
            duration_s: 10.0,
            warmup_s: 0.0,
            cores: vec![0],
            start_from: StartFrom::Latest,
            consume_records: 0,
            fetch_max_wait_ms: 100,
            consume_check: ConsumeCheck::Full,
            buffer_bytes: 32 << 20,
            seed: 1,
            broker_pid: None,
        }
    }
}

impl Workload {
    pub fn validate(&self) -> Result<()> {
        ensure!(!self.topics.is_empty(), "no topics");
        ensure!(self.partitions >= 1, "partitions must be >= 1");
        ensure!(self.duration_s > 0.0, "duration must be > 0");
        ensure!(
            self.warmup_s >= 0.0 && self.warmup_s < self.duration_s,
            "warm-up must be shorter than the duration"
        );
        ensure!(matches!(self.acks, -1..=1), "acks must be 0, 1 or -1/all");
        ensure!(
            !self.idempotence || self.acks == -1,
            "idempotence needs acks=all (as in Kafka)"
        );
        ensure!(
            !self.idempotence || self.max_in_flight <= 5,
            "idempotence allows at most 5 in flight per connection"
        );
        ensure!(self.max_in_flight >= 1, "max in flight must be >= 1");
        ensure!(self.batch_bytes >= 1024, "batch size must be >= 1 KiB");
        ensure!(self.rate >= 0.0, "rate must be >= 0");
        ensure!(!self.cores.is_empty(), "no worker cores");
        ensure!(
            self.consume_check == ConsumeCheck::Full || self.mode != Mode::Produce,
            "a consumer check level applies to runs with consumers; a produce run has none"
        );
        ensure!(
            self.key_mode == KeyMode::None || self.key_cardinality > 0,
            "keyed mode needs a key cardinality"
        );
        Ok(())
    }

    pub fn total_producers(&self) -> u32 {
        match self.mode {
            Mode::Consume => 0,
            _ => self.producers_per_topic * self.topics.len() as u32,
        }
    }

    pub fn total_consumers(&self) -> u32 {
        match self.mode {
            Mode::Produce => 0,
            _ => {
                self.subscriptions_per_topic
                    * self.consumers_per_subscription
                    * self.topics.len() as u32
            }
        }
    }
}

/// Parses an OpenMessaging Benchmark workload file (flat YAML) onto `base`, so published OMB
/// workloads run as written. Unknown keys are reported, not fatal (OMB has driver-specific
/// extras).
pub fn apply_omb_workload(base: &mut Workload, text: &str) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let mut producer_rate: Option<f64> = None;
    for (lineno, raw) in text.lines().enumerate() {
        let line = strip_comment(raw).trim_end();
        if line.trim().is_empty() || line.trim() == "---" {
            continue;
        }
        ensure!(
            !line.starts_with(' ') && !line.starts_with('\t'),
            "line {}: nested YAML is not part of the OMB workload format",
            lineno + 1
        );
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| anyhow!("line {}: expected `key: value`", lineno + 1))?;
        let key = key.trim();
        let value = value.trim().trim_matches('"').trim_matches('\'');
        let num = || -> Result<f64> {
            value.parse::<f64>().with_context(|| {
                format!("line {}: {key} wants a number, got {value:?}", lineno + 1)
            })
        };
        match key {
            "name" => base.name = value.to_string(),
            "topics" => {
                let n = num()? as usize;
                ensure!(n >= 1, "topics must be >= 1");
                let prefix = base.topics.first().cloned().unwrap_or_else(|| "omb".into());
                base.topics = if n == 1 {
                    vec![prefix]
                } else {
                    (0..n).map(|i| format!("{prefix}-{i}")).collect()
                };
            }
            "partitionsPerTopic" => base.partitions = num()? as i32,
            "messageSize" => {
                base.record_size = SizeDist::Fixed {
                    bytes: num()? as usize,
                }
            }
            "producersPerTopic" => base.producers_per_topic = num()? as u32,
            "subscriptionsPerTopic" => base.subscriptions_per_topic = num()? as u32,
            "consumerPerSubscription" => base.consumers_per_subscription = num()? as u32,
            "producerRate" => producer_rate = Some(num()?),
            "testDurationMinutes" => base.duration_s = num()? * 60.0,
            "warmupDurationMinutes" => base.warmup_s = num()? * 60.0,
            "keyDistributor" => {
                base.key_mode = match value {
                    "NO_KEY" => KeyMode::None,
                    "KEY_ROUND_ROBIN" => KeyMode::RoundRobin,
                    "RANDOM_NANO" => KeyMode::Random,
                    other => bail!("unknown keyDistributor {other}"),
                };
                if base.key_mode != KeyMode::None && base.key_cardinality == 0 {
                    // OMB draws keys from an unbounded space; a large cardinality is the
                    // closest bounded equivalent.
                    base.key_cardinality = 1_000_000;
                }
            }
            "consumerBacklogSizeGB" => {
                if num()? != 0.0 {
                    warnings.push(
                        "consumerBacklogSizeGB (backlog drain) is not supported; ignored".into(),
                    );
                }
            }
            "payloadFile"
            | "useRandomizedPayloads"
            | "randomBytesRatio"
            | "randomizedPayloadPoolSize" => {
                warnings.push(format!(
                    "{key}: payloads are generated (random printable bytes); ignored"
                ));
            }
            other => warnings.push(format!("unknown workload key {other}; ignored")),
        }
    }
    if let Some(r) = producer_rate {
        // OMB: producerRate is the total rate over all producers; 0 or negative = max.
        base.rate = r.max(0.0);
    }
    base.mode = if base.subscriptions_per_topic * base.consumers_per_subscription > 0 {
        Mode::E2e
    } else {
        Mode::Produce
    };
    base.validate()?;
    Ok(warnings)
}

fn strip_comment(line: &str) -> &str {
    match line.find('#') {
        Some(i) => &line[..i],
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_published_omb_workload() {
        // As published in openmessaging-benchmark workloads/1-topic-16-partitions-1kb.yaml.
        let text = "\
name: 1 topic / 16 partitions / 1Kb

topics: 1
partitionsPerTopic: 16
messageSize: 1024
payloadFile: \"payload/payload-1Kb.data\"
subscriptionsPerTopic: 1
consumerPerSubscription: 1
producersPerTopic: 1
producerRate: 50000
consumerBacklogSizeGB: 0
testDurationMinutes: 15
";
        let mut w = Workload::default();
        let warnings = apply_omb_workload(&mut w, text).expect("parse");
        assert_eq!(w.name, "1 topic / 16 partitions / 1Kb");
        assert_eq!(w.partitions, 16);
        assert_eq!(w.record_size, SizeDist::Fixed { bytes: 1024 });
        assert_eq!(w.rate, 50_000.0);
        assert_eq!(w.duration_s, 900.0);
        assert_eq!(w.mode, Mode::E2e);
        assert_eq!(w.total_producers(), 1);
        assert_eq!(w.total_consumers(), 1);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn rejects_nested_yaml_and_bad_numbers() {
        let mut w = Workload::default();
        assert!(apply_omb_workload(&mut w, "topics: x\n").is_err());
        assert!(apply_omb_workload(&mut w, "a:\n  b: 1\n").is_err());
    }

    #[test]
    fn consume_check_parses_defaults_to_full_and_needs_consumers() {
        assert_eq!(
            "headers".parse::<ConsumeCheck>().expect("headers"),
            ConsumeCheck::Headers
        );
        assert_eq!(
            "FULL".parse::<ConsumeCheck>().expect("full"),
            ConsumeCheck::Full
        );
        assert!("crc".parse::<ConsumeCheck>().is_err());
        let mut w = Workload::default();
        assert_eq!(w.consume_check, ConsumeCheck::Full);
        w.consume_check = ConsumeCheck::Headers;
        assert!(w.validate().is_err(), "produce runs have no consumers");
        w.mode = Mode::Consume;
        w.validate().expect("consume with headers");
        // A workload serialized before the knob existed reads back as `full`.
        let mut v = serde_json::to_value(Workload::default()).expect("to json");
        v.as_object_mut().expect("object").remove("consume_check");
        let old: Workload = serde_json::from_value(v).expect("old workload");
        assert_eq!(old.consume_check, ConsumeCheck::Full);
    }

    #[test]
    fn size_dist_parses() {
        assert_eq!(
            "100".parse::<SizeDist>().expect("fixed"),
            SizeDist::Fixed { bytes: 100 }
        );
        assert_eq!(
            "10..20".parse::<SizeDist>().expect("range"),
            SizeDist::Uniform { min: 10, max: 20 }
        );
        assert!("20..10".parse::<SizeDist>().is_err());
    }
}
