//! `ringtail produce TOPIC`: one record per line of stdin, batched per partition and sent to
//! each partition's leader.
//!
//! Partitioning: a keyed record goes to `(murmur2(key) & 0x7fffffff) % partitions`, the Java
//! client's default partitioner and librdkafka's `murmur2_random` (librdkafka's own default,
//! `consistent_random`, hashes with CRC32 instead: set `partitioner=murmur2_random` in
//! librdkafka-based clients to agree with this tool and with Java). Records without a key are
//! "sticky" like the Java client's: all keyless records of one batch go to one partition,
//! the next batch to the next partition (starting at a random one).
//!
//! Batching: from a pipe or file, up to `BATCH_RECORDS_MAX` records or `BATCH_BYTES_MAX` bytes
//! per request; from a terminal, every line is sent when it is typed.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, RequestKind};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType, NO_PARTITION_LEADER_EPOCH,
    NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};
use kafka_protocol::ResponseError;
use serde_json::json;

use super::output::{Format, Progress};
use super::wire::{topic_name, Client, KafkaError};
use super::{parse_key_value, ConnArgs};
use crate::log::compression::{kp_compress, Codec};

/// Records per Produce request when reading from a pipe.
const BATCH_RECORDS_MAX: usize = 10_000;
/// Bytes (keys + values) per Produce request when reading from a pipe; below Kafka's
/// default `message.max.bytes` (1 MiB) per partition batch for most partition counts.
const BATCH_BYTES_MAX: usize = 512 * 1024;
/// How long the leader may wait for replication (acks=all).
const PRODUCE_TIMEOUT_MS: i32 = 30_000;
/// Attempts of one batch on retriable errors (NOT_LEADER, leader elections, ...).
const SEND_ATTEMPTS_MAX: u32 = 5;
const RETRY_BACKOFF: Duration = Duration::from_millis(250);

#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    pub topic: String,
    /// Split each line at the first SEP into key and value (lines without SEP have no key).
    #[arg(short = 'k', long)]
    pub key_separator: Option<String>,
    /// Header KEY=VALUE added to every record (repeatable).
    #[arg(short = 'H', long)]
    pub header: Vec<String>,
    /// Acknowledgements: all (-1), 1 (leader only) or 0 (none: no offsets reported).
    #[arg(long, default_value = "all", allow_hyphen_values = true)]
    pub acks: String,
    /// Batch compression: none, gzip, snappy, lz4 or zstd.
    #[arg(short = 'z', long, default_value = "none")]
    pub compression: String,
    /// Send every record to this partition instead of partitioning by key.
    #[arg(short, long)]
    pub partition: Option<i32>,
    /// Print the partition and offset of every record (json with --format json).
    #[arg(short, long)]
    pub verbose: bool,
}

/// Kafka's murmur2 (as `org.apache.kafka.common.utils.Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of a keyed record: the Java client's default partitioner.
pub fn key_partition(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// `--acks` → the Produce field.
pub fn parse_acks(s: &str) -> anyhow::Result<i16> {
    match s {
        "all" | "-1" => Ok(-1),
        "0" => Ok(0),
        "1" => Ok(1),
        other => bail!("--acks must be all, -1, 0 or 1, not '{other}'"),
    }
}

pub fn parse_codec(s: &str) -> anyhow::Result<Codec> {
    Codec::ALL
        .into_iter()
        .find(|c| c.name() == s)
        .ok_or_else(|| anyhow!("--compression must be none, gzip, snappy, lz4 or zstd, not '{s}'"))
}

/// One line of input (bytes, not necessarily UTF-8) as (key, value).
pub fn split_line(line: &[u8], separator: Option<&str>) -> (Option<Bytes>, Bytes) {
    let split = separator
        .map(str::as_bytes)
        .filter(|sep| !sep.is_empty())
        .and_then(|sep| {
            line.windows(sep.len())
                .position(|w| w == sep)
                .map(|i| (&line[..i], &line[i + sep.len()..]))
        });
    match split {
        Some((k, v)) => (Some(Bytes::copy_from_slice(k)), Bytes::copy_from_slice(v)),
        None => (None, Bytes::copy_from_slice(line)),
    }
}

struct Pending {
    /// Input order of the record (for `-v` output).
    seq: u64,
    key: Option<Bytes>,
    value: Bytes,
}

struct Producer {
    client: Client,
    topic: String,
    partitions: i32,
    leaders: BTreeMap<i32, i32>,
    acks: i16,
    codec: Codec,
    headers: IndexMap<StrBytes, Option<Bytes>>,
    forced_partition: Option<i32>,
    sticky: i32,
}

/// (input order, partition, offset; -1 when acks=0).
type Delivered = (u64, i32, i64);

impl Producer {
    fn refresh(&mut self) -> anyhow::Result<()> {
        let meta = self.client.topic(&self.topic)?;
        self.partitions = i32::try_from(meta.partitions.len())?;
        if self.partitions == 0 {
            bail!("topic '{}' has no partitions", self.topic);
        }
        self.leaders = meta
            .partitions
            .iter()
            .map(|p| (p.partition, p.leader))
            .collect();
        Ok(())
    }

    fn partition_of(&self, key: Option<&Bytes>) -> i32 {
        match (self.forced_partition, key) {
            (Some(p), _) => p,
            (None, Some(k)) => key_partition(k, self.partitions),
            (None, None) => self.sticky,
        }
    }

    fn encode(&self, records: &[Pending]) -> anyhow::Result<Bytes> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let records: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, r)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
                producer_id: NO_PRODUCER_ID,
                producer_epoch: NO_PRODUCER_EPOCH,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // kafka-protocol starts a new batch wherever `offset - sequence` changes; with
                // this the whole set is one batch whose base sequence is NO_SEQUENCE (-1).
                sequence: NO_SEQUENCE.wrapping_add(i as i32),
                timestamp: now_ms,
                key: r.key.clone(),
                value: Some(r.value.clone()),
                headers: self.headers.clone(),
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: self.codec.to_kafka_protocol(),
        };
        RecordBatchEncoder::encode_with_custom_compression(
            &mut buf,
            &records,
            &options,
            Some(kp_compress),
        )
        .context("encoding a record batch")?;
        Ok(buf.freeze())
    }

    /// Sends the records of `batch` (by partition), retrying partitions that failed with a
    /// retriable error after a metadata refresh.
    fn send(&mut self, mut batch: BTreeMap<i32, Vec<Pending>>) -> anyhow::Result<Vec<Delivered>> {
        let mut delivered = Vec::new();
        let mut attempt = 0;
        while !batch.is_empty() {
            attempt += 1;
            let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
            for p in batch.keys() {
                let leader = self.leaders.get(p).copied().unwrap_or(-1);
                by_leader.entry(leader).or_default().push(*p);
            }
            let mut retry: Vec<(i32, KafkaError)> = Vec::new();
            for (leader, partitions) in by_leader {
                if leader < 0 {
                    retry.extend(partitions.iter().map(|p| {
                        (
                            *p,
                            KafkaError {
                                code: ResponseError::LeaderNotAvailable.code(),
                                message: Some(format!("partition {p} has no leader")),
                            },
                        )
                    }));
                    continue;
                }
                let mut data = Vec::new();
                for p in &partitions {
                    let mut pd = PartitionProduceData::default();
                    pd.index = *p;
                    pd.records = Some(self.encode(batch.get(p).map_or(&[][..], Vec::as_slice))?);
                    data.push(pd);
                }
                let mut td = TopicProduceData::default();
                td.name = topic_name(&self.topic);
                td.partition_data = data;
                let mut req = ProduceRequest::default();
                req.acks = self.acks;
                req.timeout_ms = PRODUCE_TIMEOUT_MS;
                req.topic_data = vec![td];
                // zstd needs Produce v7+ (KIP-110).
                let min_version = if self.codec == Codec::Zstd { 7 } else { 3 };
                let conn = match self.client.broker(leader) {
                    Ok(c) => c,
                    Err(e) => {
                        let why = format!("{e:#}");
                        retry.extend(partitions.iter().map(|p| {
                            (
                                *p,
                                KafkaError {
                                    code: ResponseError::NetworkException.code(),
                                    message: Some(why.clone()),
                                },
                            )
                        }));
                        continue;
                    }
                };
                if self.acks == 0 {
                    conn.send_only(ApiKey::Produce, min_version..=9, RequestKind::Produce(req))?;
                    for p in &partitions {
                        for r in batch.remove(p).unwrap_or_default() {
                            delivered.push((r.seq, *p, -1));
                        }
                    }
                    continue;
                }
                let resp: ProduceResponse =
                    match conn.call(ApiKey::Produce, min_version..=9, RequestKind::Produce(req)) {
                        Ok(r) => r,
                        Err(e) => {
                            // A broken connection: reconnect on the next attempt.
                            self.client.drop_broker(leader);
                            let why = format!("{e:#}");
                            retry.extend(partitions.iter().map(|p| {
                                (
                                    *p,
                                    KafkaError {
                                        code: ResponseError::NetworkException.code(),
                                        message: Some(why.clone()),
                                    },
                                )
                            }));
                            continue;
                        }
                    };
                for t in &resp.responses {
                    for pr in &t.partition_responses {
                        match KafkaError::check(pr.error_code, pr.error_message.as_ref(), "") {
                            Ok(()) => {
                                for (i, r) in batch
                                    .remove(&pr.index)
                                    .unwrap_or_default()
                                    .into_iter()
                                    .enumerate()
                                {
                                    delivered.push((r.seq, pr.index, pr.base_offset + i as i64));
                                }
                            }
                            Err(e) => {
                                let retriable = ResponseError::try_from_code(e.code)
                                    .is_some_and(|e| e.is_retriable());
                                if !retriable {
                                    return Err(e.into());
                                }
                                retry.push((pr.index, e));
                            }
                        }
                    }
                }
            }
            if batch.is_empty() {
                break;
            }
            if attempt >= SEND_ATTEMPTS_MAX {
                return Err(match retry.into_iter().next() {
                    Some((_, e)) => e.into(),
                    None => anyhow!("the broker answered for none of the partitions sent"),
                });
            }
            std::thread::sleep(RETRY_BACKOFF);
            self.refresh()?;
        }
        Ok(delivered)
    }
}

pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let format = args.conn.output()?;
    let acks = parse_acks(&args.acks)?;
    let codec = parse_codec(&args.compression)?;
    let mut headers = IndexMap::new();
    for h in &args.header {
        let (k, v) = parse_key_value(h)?;
        headers.insert(StrBytes::from_string(k), Some(Bytes::from(v.into_bytes())));
    }
    let mut producer = Producer {
        client: args.conn.client()?,
        topic: args.topic.clone(),
        partitions: 0,
        leaders: BTreeMap::new(),
        acks,
        codec,
        headers,
        forced_partition: args.partition,
        sticky: 0,
    };
    producer.refresh()?;
    if let Some(p) = args.partition {
        if !(0..producer.partitions).contains(&p) {
            bail!(
                "UNKNOWN_TOPIC_OR_PARTITION: topic '{}' has no partition {p}",
                args.topic
            );
        }
    }
    // A random first sticky partition, as the Java client picks one.
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id();
    producer.sticky = (seed % producer.partitions as u32) as i32;

    let interactive = std::io::stdin().is_terminal();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    // Not while someone types records into the terminal.
    let mut progress = Progress::when("produced", None, !interactive);
    let mut seq: u64 = 0;
    let mut line: Vec<u8> = Vec::new();
    let mut batch: BTreeMap<i32, Vec<Pending>> = BTreeMap::new();
    let mut batch_records = 0usize;
    let mut batch_bytes = 0usize;
    let mut total = 0u64;
    loop {
        line.clear();
        let n = input
            .read_until(b'\n', &mut line)
            .context("reading stdin")?;
        let eof = n == 0;
        if !eof {
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            let (key, value) = split_line(text, args.key_separator.as_deref());
            let p = producer.partition_of(key.as_ref());
            batch_bytes += value.len() + key.as_ref().map_or(0, |k| k.len());
            batch_records += 1;
            batch
                .entry(p)
                .or_default()
                .push(Pending { seq, key, value });
            seq += 1;
        }
        let full = batch_records >= BATCH_RECORDS_MAX || batch_bytes >= BATCH_BYTES_MAX;
        if batch_records > 0 && (eof || full || interactive) {
            let mut delivered = producer.send(std::mem::take(&mut batch))?;
            total += batch_records as u64;
            progress.add(batch_records as u64);
            batch_records = 0;
            batch_bytes = 0;
            producer.sticky = (producer.sticky + 1) % producer.partitions;
            if args.verbose {
                delivered.sort_unstable();
                for (_, p, o) in delivered {
                    match format {
                        Format::Json => println!(
                            "{}",
                            json!({"topic": args.topic, "partition": p, "offset": o})
                        ),
                        Format::Table => println!("{}\t{p}\t{o}", args.topic),
                    }
                }
            }
        }
        if eof {
            break;
        }
    }
    progress.finish();
    if !args.verbose && format == Format::Table && std::io::stderr().is_terminal() {
        eprintln!("produced {total} records to {}", args.topic);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_test_vectors() {
        // From Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
        assert!((0..8).contains(&key_partition(b"foobar", 8)));
    }

    #[test]
    fn lines_split_at_the_first_separator() {
        assert_eq!(
            split_line(b"\xff\x00:\xfe", Some(":")),
            (
                Some(Bytes::from_static(b"\xff\x00")),
                Bytes::from_static(b"\xfe")
            )
        );
        assert_eq!(
            split_line(b"a:b", Some("")),
            (None, Bytes::from_static(b"a:b"))
        );
        assert_eq!(
            split_line(b"k:v:w", Some(":")),
            (Some(Bytes::from_static(b"k")), Bytes::from_static(b"v:w"))
        );
        assert_eq!(
            split_line(b"kv", Some(":")),
            (None, Bytes::from_static(b"kv"))
        );
        assert_eq!(split_line(b"k:v", None), (None, Bytes::from_static(b"k:v")));
        assert_eq!(
            split_line(b"key||", Some("||")),
            (Some(Bytes::from_static(b"key")), Bytes::new())
        );
    }

    #[test]
    fn acks_and_codecs() {
        assert_eq!(parse_acks("all").unwrap(), -1);
        assert_eq!(parse_acks("-1").unwrap(), -1);
        assert_eq!(parse_acks("0").unwrap(), 0);
        assert_eq!(parse_acks("1").unwrap(), 1);
        assert!(parse_acks("2").is_err());
        for name in ["none", "gzip", "snappy", "lz4", "zstd"] {
            assert_eq!(parse_codec(name).unwrap().name(), name);
        }
        assert!(parse_codec("brotli").is_err());
    }
}
