//! `ringtail consume TOPIC`: Fetch from each partition's leader and print every record, as
//! its value (default), as one JSON object per line (`--format json`) or through a format
//! string (`--format '%k %v %h %p %o %t'`).
//!
//! With `--group G` the consumer is a member of the classic consumer group ([`Member`]):
//! it joins (range assignor), reads the partitions it is assigned, starting at the group's
//! committed offsets (partitions without one start at `--offset`), commits its position after
//! each fetch round, heartbeats between fetches, rejoins when the group rebalances, and leaves
//! at exit, also on the first SIGINT/SIGTERM (`STOP_REQUESTED`). With `--group G
//! --partitions ...` it is *standalone* instead (like `assign()` plus commits in the Java
//! client): it reads the named partitions without joining and commits with generation -1,
//! which the broker refuses while the group has active members.
//!
//! Runs on: the `ringtail` process's main thread (blocking sockets).
//!
//! Reads with isolation level read_uncommitted (records of open or aborted transactions are
//! shown, control records are not).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, RequestKind};
use kafka_protocol::records::{Record, RecordBatchDecoder};
use kafka_protocol::ResponseError;
use serde_json::json;

use super::group::{commit_offsets, committed_offsets};
use super::member::Member;
use super::offsets::{self, Tp};
use super::output::Progress;
use super::wire::{topic_name, Client, Connection, KafkaError};
use super::ConnArgs;
use crate::log::compression::kp_decompress;

/// Long-poll of one Fetch when a partition has no new data.
const FETCH_MAX_WAIT_MS: i32 = 500;
/// Bytes per partition per Fetch.
const FETCH_PARTITION_BYTES_MAX: i32 = 1 << 20;
/// Bytes per Fetch response.
const FETCH_BYTES_MAX: i32 = 16 << 20;
/// Size of a record batch header up to and including `lastOffsetDelta`.
const BATCH_HEADER_PREFIX: usize = 27;
const ATTR_CONTROL: i16 = 0x20;
/// Pause before fetching again after a retriable partition error (leader moving, ...).
const RETRY_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Format strings (--format): %k key, %v value, %h headers (k=v,k2=v2), \
%p partition, %o offset, %t timestamp (ms), %T topic, %% a percent sign; \\n, \\t, \\\\ \
escapes. A newline follows each record unless the format ends with one. --format json prints \
one JSON object per record; the default (table) prints the value."
)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    pub topic: String,
    /// Where to start: earliest, latest, an offset N, or @TIMESTAMP-MS (first record at or
    /// after it). With --group: only for partitions without a committed offset.
    #[arg(short, long)]
    pub offset: Option<String>,
    /// Partitions to read, e.g. 0,2 [default: all].
    #[arg(short, long, value_delimiter = ',')]
    pub partitions: Vec<i32>,
    /// Consumer group: join it (range assignor) and read the assigned partitions from the
    /// committed offsets, committing as it goes. With --partitions: standalone (no membership,
    /// generation -1 commits, refused while the group has members).
    #[arg(short, long)]
    pub group: Option<String>,
    /// Stop after N records.
    #[arg(short, long)]
    pub num: Option<u64>,
    /// Stop at the end offsets the partitions had when the command started.
    #[arg(short, long)]
    pub exit_at_end: bool,
}

/// Where consumption starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Earliest,
    Latest,
    Offset(i64),
    Timestamp(i64),
}

pub fn parse_start(s: &str) -> anyhow::Result<StartAt> {
    Ok(match s {
        "earliest" | "start" | "oldest" | "beginning" => StartAt::Earliest,
        "latest" | "end" | "newest" => StartAt::Latest,
        _ => {
            if let Some(ts) = s.strip_prefix('@') {
                StartAt::Timestamp(
                    ts.parse()
                        .map_err(|_| anyhow!("--offset @{ts}: not a timestamp in ms"))?,
                )
            } else {
                match s.parse::<i64>() {
                    Ok(o) if o >= 0 => StartAt::Offset(o),
                    _ => bail!("--offset must be earliest, latest, N or @TIMESTAMP-MS, not '{s}'"),
                }
            }
        }
    })
}

/// One piece of a parsed format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Key,
    Value,
    Headers,
    Partition,
    Offset,
    Timestamp,
    Topic,
}

/// `--format` of consume: `table` (the value, one per line), `json` (an object per line) or a
/// template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordFormat {
    Json,
    Template(Vec<Piece>),
}

/// Parses a format string: `%k` key, `%v` value, `%h` headers (`k=v,k2=v2`), `%p` partition,
/// `%o` offset, `%t` timestamp (ms), `%T` topic, `%%` a percent sign; `\n`, `\t`, `\\` escapes.
/// A newline is added after each record unless the format ends with one.
pub fn parse_format(s: &str) -> RecordFormat {
    match s {
        "json" => return RecordFormat::Json,
        "table" | "text" => {
            return RecordFormat::Template(vec![Piece::Value, Piece::Text("\n".into())])
        }
        _ => {}
    }
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let piece = match (c, chars.peek().copied()) {
            ('%', Some('k')) => Some(Piece::Key),
            ('%', Some('v')) => Some(Piece::Value),
            ('%', Some('h')) => Some(Piece::Headers),
            ('%', Some('p')) => Some(Piece::Partition),
            ('%', Some('o')) => Some(Piece::Offset),
            ('%', Some('t')) => Some(Piece::Timestamp),
            ('%', Some('T')) => Some(Piece::Topic),
            ('%', Some('%')) => {
                chars.next();
                text.push('%');
                continue;
            }
            ('\\', Some('n')) => {
                chars.next();
                text.push('\n');
                continue;
            }
            ('\\', Some('t')) => {
                chars.next();
                text.push('\t');
                continue;
            }
            ('\\', Some('\\')) => {
                chars.next();
                text.push('\\');
                continue;
            }
            _ => None,
        };
        match piece {
            Some(p) => {
                chars.next();
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(p);
            }
            None => text.push(c),
        }
    }
    if !text.ends_with('\n') {
        text.push('\n');
    }
    pieces.push(Piece::Text(text));
    RecordFormat::Template(pieces)
}

fn lossy(b: &Option<Bytes>) -> String {
    b.as_ref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

/// Renders one record.
pub fn render_record(format: &RecordFormat, topic: &str, partition: i32, r: &Record) -> String {
    match format {
        RecordFormat::Json => {
            let headers: serde_json::Map<String, serde_json::Value> = r
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        v.as_ref()
                            .map(|v| json!(String::from_utf8_lossy(v)))
                            .unwrap_or(serde_json::Value::Null),
                    )
                })
                .collect();
            let mut line = json!({
                "topic": topic,
                "partition": partition,
                "offset": r.offset,
                "timestamp": r.timestamp,
                "key": r.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
                "value": r.value.as_ref().map(|v| String::from_utf8_lossy(v).into_owned()),
                "headers": headers,
            })
            .to_string();
            line.push('\n');
            line
        }
        RecordFormat::Template(pieces) => {
            let mut out = String::new();
            for p in pieces {
                match p {
                    Piece::Text(t) => out.push_str(t),
                    Piece::Key => out.push_str(&lossy(&r.key)),
                    Piece::Value => out.push_str(&lossy(&r.value)),
                    Piece::Headers => {
                        let hs: Vec<String> = r
                            .headers
                            .iter()
                            .map(|(k, v)| match v {
                                Some(v) => format!("{k}={}", String::from_utf8_lossy(v)),
                                None => k.to_string(),
                            })
                            .collect();
                        out.push_str(&hs.join(","));
                    }
                    Piece::Partition => out.push_str(&partition.to_string()),
                    Piece::Offset => out.push_str(&r.offset.to_string()),
                    Piece::Timestamp => out.push_str(&r.timestamp.to_string()),
                    Piece::Topic => out.push_str(topic),
                }
            }
            out
        }
    }
}

/// A complete record batch of a Fetch response: its bytes, and what the position becomes
/// after it.
struct RawBatch {
    bytes: Bytes,
    next_offset: i64,
    control: bool,
}

/// Splits fetched bytes into complete v2 batches (a response may end with a partial one).
fn split_batches(mut records: Bytes) -> anyhow::Result<Vec<RawBatch>> {
    let mut out = Vec::new();
    while records.len() >= 12 {
        let base = i64::from_be_bytes(records[0..8].try_into()?);
        let len = i32::from_be_bytes(records[8..12].try_into()?);
        let total = usize::try_from(len).map_err(|_| anyhow!("negative batch length"))? + 12;
        if records.len() < total {
            break;
        }
        let bytes = records.split_to(total);
        if bytes.len() < BATCH_HEADER_PREFIX || bytes[16] != 2 {
            bail!(
                "message format v{} at offset {base} is not supported",
                bytes.get(16).copied().unwrap_or(0)
            );
        }
        let attributes = i16::from_be_bytes(bytes[21..23].try_into()?);
        let last_delta = i32::from_be_bytes(bytes[23..27].try_into()?);
        out.push(RawBatch {
            bytes,
            next_offset: base + i64::from(last_delta) + 1,
            control: attributes & ATTR_CONTROL != 0,
        });
    }
    Ok(out)
}

struct Consumer {
    client: Client,
    topic: String,
    leaders: BTreeMap<Tp, i32>,
    positions: BTreeMap<i32, i64>,
}

impl Consumer {
    fn refresh(&mut self) -> anyhow::Result<()> {
        let meta = self.client.topic(&self.topic)?;
        self.leaders = offsets::leaders(std::slice::from_ref(&meta));
        Ok(())
    }

    /// One Fetch per leader; the records per partition, in offset order.
    fn fetch_round(&mut self) -> anyhow::Result<Vec<(i32, Vec<Record>)>> {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in self.positions.keys() {
            if let Some(l) = self.leaders.get(&(self.topic.clone(), *p)) {
                by_leader.entry(*l).or_default().push(*p);
            }
        }
        if by_leader.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(FETCH_MAX_WAIT_MS as u64));
            self.refresh()?;
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut stale = false;
        let mut out_of_range = Vec::new();
        for (leader, partitions) in by_leader {
            let mut ft = FetchTopic::default();
            ft.topic = topic_name(&self.topic);
            ft.partitions = partitions
                .iter()
                .map(|p| {
                    let mut fp = FetchPartition::default();
                    fp.partition = *p;
                    fp.fetch_offset = self.positions.get(p).copied().unwrap_or(0);
                    fp.current_leader_epoch = -1;
                    fp.last_fetched_epoch = -1;
                    fp.log_start_offset = -1;
                    fp.partition_max_bytes = FETCH_PARTITION_BYTES_MAX;
                    fp
                })
                .collect();
            let mut req = FetchRequest::default();
            req.replica_id = BrokerId(-1);
            req.max_wait_ms = FETCH_MAX_WAIT_MS;
            req.min_bytes = 1;
            req.max_bytes = FETCH_BYTES_MAX;
            req.isolation_level = 0;
            req.session_id = 0;
            req.session_epoch = -1;
            req.topics = vec![ft];
            let conn: &mut Connection = self.client.broker(leader)?;
            let resp: FetchResponse =
                match conn.call(ApiKey::Fetch, 4..=12, RequestKind::Fetch(req)) {
                    Ok(r) => r,
                    Err(e) => {
                        self.client.drop_broker(leader);
                        return Err(e);
                    }
                };
            KafkaError::check(resp.error_code, None, "Fetch")?;
            for t in resp.responses {
                for pd in t.partitions {
                    let p = pd.partition_index;
                    if pd.error_code != 0 {
                        let e = KafkaError::check(pd.error_code, None, &format!("partition {p}"))
                            .err()
                            .unwrap_or(KafkaError {
                                code: pd.error_code,
                                message: None,
                            });
                        if e.is(ResponseError::OffsetOutOfRange) {
                            out_of_range.push(p);
                            continue;
                        }
                        if ResponseError::try_from_code(pd.error_code)
                            .is_some_and(|e| e.is_retriable())
                        {
                            stale = true;
                            continue;
                        }
                        return Err(e.into());
                    }
                    let Some(records) = pd.records else { continue };
                    let mut position = self.positions.get(&p).copied().unwrap_or(0);
                    let mut kept = Vec::new();
                    for batch in split_batches(records)? {
                        if !batch.control {
                            let mut bytes = batch.bytes.clone();
                            let set = RecordBatchDecoder::decode_with_custom_compression(
                                &mut bytes,
                                Some(kp_decompress),
                            )
                            .with_context(|| format!("decoding a batch of partition {p}"))?;
                            kept.extend(set.records.into_iter().filter(|r| r.offset >= position));
                        }
                        position = position.max(batch.next_offset);
                    }
                    self.positions.insert(p, position);
                    out.push((p, kept));
                }
            }
        }
        if !out_of_range.is_empty() {
            self.skip_out_of_range(&out_of_range)?;
        }
        if stale {
            std::thread::sleep(RETRY_BACKOFF);
            self.refresh()?;
        }
        Ok(out)
    }

    /// Like `auto.offset.reset=earliest`: a position below the log start (retention deleted
    /// it) moves to the log start, one past the end moves to the end; says so on stderr.
    fn skip_out_of_range(&mut self, partitions: &[i32]) -> anyhow::Result<()> {
        let tps: Vec<Tp> = partitions
            .iter()
            .map(|p| (self.topic.clone(), *p))
            .collect();
        let starts =
            offsets::list_offsets(&mut self.client, &self.leaders, &tps, offsets::EARLIEST)?;
        let ends = offsets::list_offsets(&mut self.client, &self.leaders, &tps, offsets::LATEST)?;
        for tp in &tps {
            let (Some(&start), Some(&end)) = (starts.get(tp), ends.get(tp)) else {
                continue;
            };
            let Some(pos) = self.positions.get_mut(&tp.1) else {
                continue;
            };
            let next = if *pos < start { start } else { end };
            eprintln!(
                "ringtail: partition {}: offset {} is out of range [{start}, {end}], continuing at {next}",
                tp.1, *pos
            );
            *pos = next;
        }
        Ok(())
    }
}

/// How a consume commits its position.
enum Committer {
    /// No `--group`.
    Nothing,
    /// `--group` with `--partitions`: generation -1 commits, no membership.
    Standalone { conn: Connection, group: String },
    /// `--group` alone: a member of the group.
    Member(Member),
}

impl Committer {
    fn committed(&mut self, group: Option<&str>) -> anyhow::Result<BTreeMap<Tp, i64>> {
        match (self, group) {
            (Committer::Standalone { conn, group }, _) => committed_offsets(conn, group),
            (Committer::Member(m), Some(g)) => committed_offsets(m.connection(), g),
            _ => Ok(BTreeMap::new()),
        }
    }

    fn commit(&mut self, offsets: &BTreeMap<Tp, i64>) -> anyhow::Result<()> {
        match self {
            Committer::Nothing => Ok(()),
            Committer::Standalone { conn, group } => commit_offsets(conn, group, offsets),
            Committer::Member(m) => m.commit(offsets),
        }
    }
}

/// Where each of `partitions` starts (its committed offset, else `start`) and its end offset
/// now.
fn start_positions(
    client: &mut Client,
    topic: &str,
    leaders: &BTreeMap<Tp, i32>,
    partitions: &[i32],
    start: StartAt,
    committed: &BTreeMap<Tp, i64>,
) -> anyhow::Result<(BTreeMap<i32, i64>, BTreeMap<i32, i64>)> {
    let tps: Vec<Tp> = partitions.iter().map(|p| (topic.to_string(), *p)).collect();
    let starts = offsets::list_offsets(client, leaders, &tps, offsets::EARLIEST)?;
    let ends = offsets::list_offsets(client, leaders, &tps, offsets::LATEST)?;
    let at_time = match start {
        StartAt::Timestamp(ms) => Some(offsets::list_offsets(client, leaders, &tps, ms)?),
        _ => None,
    };
    let mut positions = BTreeMap::new();
    let mut end_offsets = BTreeMap::new();
    for tp in &tps {
        let (s, e) = (
            starts.get(tp).copied().unwrap_or(0),
            ends.get(tp).copied().unwrap_or(0),
        );
        let pos = match committed.get(tp) {
            Some(c) => *c,
            None => match start {
                StartAt::Earliest => s,
                StartAt::Latest => e,
                StartAt::Offset(o) => o.clamp(s, e.max(s)),
                StartAt::Timestamp(_) => match at_time.as_ref().and_then(|m| m.get(tp)) {
                    Some(o) if *o >= 0 => *o,
                    _ => e,
                },
            },
        };
        positions.insert(tp.1, pos);
        end_offsets.insert(tp.1, e);
    }
    Ok((positions, end_offsets))
}

pub fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let format = parse_format(&args.conn.format);
    let start = match &args.offset {
        Some(s) => parse_start(s)?,
        None => StartAt::Earliest,
    };
    let mut client = args.conn.client()?;
    let meta = client.topic(&args.topic)?;
    let all: Vec<i32> = meta.partitions.iter().map(|p| p.partition).collect();
    for p in &args.partitions {
        if !all.contains(p) {
            bail!(
                "UNKNOWN_TOPIC_OR_PARTITION: topic '{}' has no partition {p}",
                args.topic
            );
        }
    }
    let (mut committer, partitions) = match &args.group {
        Some(g) if args.partitions.is_empty() => {
            let (member, assigned) = Member::join(&mut client, g, &args.topic)?;
            (Committer::Member(member), assigned)
        }
        Some(g) => (
            Committer::Standalone {
                conn: client.coordinator(g)?,
                group: g.clone(),
            },
            args.partitions.clone(),
        ),
        None if args.partitions.is_empty() => (Committer::Nothing, all),
        None => (Committer::Nothing, args.partitions.clone()),
    };
    let leaders = offsets::leaders(std::slice::from_ref(&meta));
    let committed = committer.committed(args.group.as_deref())?;
    let (positions, mut ends) = start_positions(
        &mut client,
        &args.topic,
        &leaders,
        &partitions,
        start,
        &committed,
    )?;
    let mut consumer = Consumer {
        client,
        topic: args.topic.clone(),
        leaders,
        positions,
    };
    install_stop_handler();
    let result = consume_loop(
        &args,
        &format,
        start,
        &mut consumer,
        &mut committer,
        &mut ends,
    );
    if let Committer::Member(m) = &mut committer {
        m.leave();
    }
    result
}

/// Set by the first SIGINT/SIGTERM: the consume loop ends after the fetch in progress,
/// commits and leaves its group. A second signal exits at once.
static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_signal: libc::c_int) {
    if STOP_REQUESTED.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe; nothing needs to run on a second Ctrl-C.
        unsafe { libc::_exit(130) };
    }
}

/// Lets Ctrl-C / SIGTERM end a consume cleanly (commit, LeaveGroup) instead of killing it.
fn install_stop_handler() {
    let handler = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only touches an atomic and calls _exit, both async-signal-safe;
    // `signal` is called before any other thread exists.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Whether a member's failed commit means its generation is over.
fn needs_rejoin(e: &anyhow::Error) -> bool {
    e.downcast_ref::<KafkaError>().is_some_and(|k| {
        k.is(ResponseError::RebalanceInProgress)
            || k.is(ResponseError::IllegalGeneration)
            || k.is(ResponseError::UnknownMemberId)
    })
}

fn consume_loop(
    args: &ConsumeArgs,
    format: &RecordFormat,
    start: StartAt,
    consumer: &mut Consumer,
    committer: &mut Committer,
    ends: &mut BTreeMap<i32, i64>,
) -> anyhow::Result<()> {
    let mut progress = Progress::for_stream("consumed", args.num);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed: u64 = 0;
    let mut last_committed: BTreeMap<i32, i64> = BTreeMap::new();
    let mut broken_pipe = false;
    loop {
        if STOP_REQUESTED.load(Ordering::SeqCst) || args.num.is_some_and(|n| printed >= n) {
            break;
        }
        let at_end = consumer
            .positions
            .iter()
            .all(|(p, pos)| *pos >= ends.get(p).copied().unwrap_or(0));
        if args.exit_at_end && at_end {
            break;
        }
        let rounds = consumer.fetch_round()?;
        for (p, records) in rounds {
            for r in records {
                if broken_pipe || args.num.is_some_and(|n| printed >= n) {
                    // Not printed: the position (and a group's commit) goes back to it.
                    let pos = consumer.positions.entry(p).or_insert(r.offset);
                    *pos = (*pos).min(r.offset);
                    continue;
                }
                let text = render_record(format, &consumer.topic, p, &r);
                if let Err(e) = out.write_all(text.as_bytes()) {
                    if e.kind() != std::io::ErrorKind::BrokenPipe {
                        return Err(e).context("writing to stdout");
                    }
                    broken_pipe = true;
                    let pos = consumer.positions.entry(p).or_insert(r.offset);
                    *pos = (*pos).min(r.offset);
                    continue;
                }
                printed += 1;
                progress.add(1);
            }
        }
        if let Err(e) = out.flush() {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                return Err(e).context("writing to stdout");
            }
            broken_pipe = true;
        }
        let changed: BTreeMap<Tp, i64> = consumer
            .positions
            .iter()
            .filter(|(p, o)| last_committed.get(p) != Some(o))
            .map(|(p, o)| ((consumer.topic.clone(), *p), *o))
            .collect();
        let mut rejoin = false;
        if !changed.is_empty() {
            match committer.commit(&changed) {
                Ok(()) => last_committed.extend(changed.into_iter().map(|((_, p), o)| (p, o))),
                // A member whose generation ended rejoins; what it printed since its last
                // commit is read again by whoever gets the partition (at least once).
                Err(e) if matches!(committer, Committer::Member(_)) && needs_rejoin(&e) => {
                    rejoin = true;
                }
                Err(e) => return Err(e),
            }
        }
        if broken_pipe {
            break;
        }
        if let Committer::Member(m) = committer {
            if rejoin || m.heartbeat()? {
                // The group rebalances: rejoin and start over from the committed offsets.
                let assigned = m.rejoin(&mut consumer.client)?;
                consumer.refresh()?;
                let committed =
                    committed_offsets(m.connection(), args.group.as_deref().unwrap_or(""))?;
                let (positions, new_ends) = start_positions(
                    &mut consumer.client,
                    &consumer.topic,
                    &consumer.leaders,
                    &assigned,
                    start,
                    &committed,
                )?;
                consumer.positions = positions;
                *ends = new_ends;
                last_committed.clear();
            }
        }
    }
    progress.finish();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::TimestampType;

    fn record() -> Record {
        let mut headers = IndexMap::new();
        headers.insert(
            StrBytes::from_static_str("a"),
            Some(Bytes::from_static(b"1")),
        );
        headers.insert(StrBytes::from_static_str("b"), None);
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 42,
            sequence: -1,
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers,
        }
    }

    #[test]
    fn format_strings() {
        let r = record();
        let f = parse_format("%k %v %h %p %o %t %T 100%% \\t|");
        assert_eq!(
            render_record(&f, "top", 3, &r),
            "k v a=1,b 3 42 1700000000000 top 100% \t|\n"
        );
        assert_eq!(render_record(&parse_format("%v\\n"), "t", 0, &r), "v\n");
        assert_eq!(render_record(&parse_format("table"), "t", 0, &r), "v\n");
        // Unknown directives stay as they are.
        assert_eq!(render_record(&parse_format("%x%"), "t", 0, &r), "%x%\n");
        let j: serde_json::Value =
            serde_json::from_str(&render_record(&parse_format("json"), "t", 1, &r)).unwrap();
        assert_eq!(j["key"], "k");
        assert_eq!(j["offset"], 42);
        assert_eq!(j["headers"]["a"], "1");
        assert!(j["headers"]["b"].is_null());
    }

    #[test]
    fn start_offsets() {
        assert_eq!(parse_start("earliest").unwrap(), StartAt::Earliest);
        assert_eq!(parse_start("latest").unwrap(), StartAt::Latest);
        assert_eq!(parse_start("17").unwrap(), StartAt::Offset(17));
        assert_eq!(parse_start("@1700").unwrap(), StartAt::Timestamp(1700));
        assert!(parse_start("-3").is_err());
        assert!(parse_start("@x").is_err());
        assert!(parse_start("soon").is_err());
    }

    #[test]
    fn partial_batches_are_left_for_the_next_fetch() {
        let mut buf = bytes::BytesMut::new();
        let rec = record();
        kafka_protocol::records::RecordBatchEncoder::encode(
            &mut buf,
            [&rec],
            &kafka_protocol::records::RecordEncodeOptions {
                version: 2,
                compression: kafka_protocol::records::Compression::None,
            },
        )
        .unwrap();
        let one = buf.len();
        let mut two = buf.clone();
        two.extend_from_slice(&buf[..one - 3]);
        let batches = split_batches(two.freeze()).unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].next_offset, 43);
        assert!(!batches[0].control);
    }
}
