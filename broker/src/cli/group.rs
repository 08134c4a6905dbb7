//! `ringtail group ...`, in the spirit of `kafka-consumer-groups.sh`:
//!
//! - `list`: every group, its state and protocol type;
//! - `describe GROUP`: per partition the committed offset, the log end offset and the lag,
//!   with the member that owns the partition;
//! - `delete GROUP`: delete an empty group and its offsets;
//! - `reset-offsets GROUP`: move committed offsets (earliest, latest, an offset, a time, a
//!   shift), refused while the group has members, as Kafka does.
//!
//! Group requests go to the group's coordinator (FindCoordinator); ListOffsets to each
//! partition's leader.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, bail};
use bytes::Buf;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, DeleteGroupsRequest, DeleteGroupsResponse,
    DescribeGroupsRequest, DescribeGroupsResponse, GroupId, ListGroupsRequest, ListGroupsResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    RequestKind,
};
use kafka_protocol::protocol::Decodable;
use serde_json::json;

use super::offsets::{self, Tp};
use super::output::{dash, print_json, table, Format, Progress};
use super::wire::{str_bytes, topic_name, Client, Connection, KafkaError};
use super::ConnArgs;

/// Partitions per OffsetCommit request of a reset (progress is reported between requests).
const RESET_COMMIT_PARTITIONS_MAX: usize = 1000;

#[derive(clap::Args, Debug)]
pub struct GroupArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(subcommand)]
    pub command: GroupCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum GroupCommand {
    /// List the consumer groups.
    List,
    /// Show a group's members and, per partition, committed offset, log end offset and lag.
    Describe { group: String },
    /// Delete an empty group and its committed offsets.
    Delete { group: String },
    /// Move a group's committed offsets (the group must have no active members).
    ResetOffsets(ResetArgs),
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).multiple(false)
    .args(["to_earliest", "to_latest", "to_offset", "to_datetime", "shift_by"])))]
#[command(group(clap::ArgGroup::new("scope").required(true).multiple(true)
    .args(["topic", "all_topics"])))]
pub struct ResetArgs {
    pub group: String,
    /// TOPIC or TOPIC:P1,P2 (repeatable): the partitions to reset (all of the topic's
    /// partitions when none are named).
    #[arg(long)]
    pub topic: Vec<String>,
    /// Every partition the group has committed offsets for.
    #[arg(long)]
    pub all_topics: bool,
    /// To the log start offset.
    #[arg(long)]
    pub to_earliest: bool,
    /// To the log end offset.
    #[arg(long)]
    pub to_latest: bool,
    /// To this offset (clamped to the log's start and end, as Kafka does).
    #[arg(long, allow_negative_numbers = true)]
    pub to_offset: Option<i64>,
    /// To the first offset at or after a time: YYYY-MM-DDTHH:MM:SS[.mmm][Z|+HH:MM] (no
    /// zone: UTC) or milliseconds since the epoch.
    #[arg(long)]
    pub to_datetime: Option<String>,
    /// Move the committed offset by N (negative: back), clamped to the log.
    #[arg(long, allow_negative_numbers = true)]
    pub shift_by: Option<i64>,
    /// Print the new offsets without committing them.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(args: GroupArgs) -> anyhow::Result<()> {
    let format = args.conn.output()?;
    let mut client = args.conn.client()?;
    match args.command {
        GroupCommand::List => list(&mut client, format),
        GroupCommand::Describe { group } => {
            let rows = describe(&mut client, &group)?;
            match format {
                Format::Table => print!("{}", render(&group, &rows)),
                Format::Json => print_json(&json!(rows
                    .iter()
                    .map(|r| json!({
                        "group": group,
                        "topic": r.topic,
                        "partition": r.partition,
                        "committed_offset": r.committed,
                        "log_end_offset": r.log_end,
                        "lag": r.lag(),
                        "member_id": r.member_id,
                        "host": r.host,
                        "client_id": r.client_id,
                    }))
                    .collect::<Vec<_>>()))?,
            }
            Ok(())
        }
        GroupCommand::Delete { group } => delete(&mut client, format, &group),
        GroupCommand::ResetOffsets(r) => reset_offsets(&mut client, format, &r),
    }
}

fn group_id(group: &str) -> GroupId {
    GroupId(str_bytes(group))
}

fn list(client: &mut Client, format: Format) -> anyhow::Result<()> {
    // Every broker coordinates some groups: ask each one.
    client.metadata(Some(&[]))?;
    let ids: Vec<i32> = client.brokers.keys().copied().collect();
    let mut groups = BTreeMap::new();
    for id in ids {
        let resp: ListGroupsResponse = client.broker(id)?.call(
            ApiKey::ListGroups,
            0..=4,
            RequestKind::ListGroups(ListGroupsRequest::default()),
        )?;
        KafkaError::check(resp.error_code, None, "ListGroups")?;
        for g in resp.groups {
            groups.insert(
                g.group_id.0.to_string(),
                (g.group_state.to_string(), g.protocol_type.to_string()),
            );
        }
    }
    match format {
        Format::Json => print_json(&json!(groups
            .iter()
            .map(|(g, (s, p))| json!({"group": g, "state": s, "protocol_type": p}))
            .collect::<Vec<_>>())),
        Format::Table => {
            let rows: Vec<Vec<String>> = groups
                .into_iter()
                .map(|(g, (s, p))| vec![g, s, p])
                .collect();
            print!("{}", table(&["GROUP", "STATE", "PROTOCOL-TYPE"], &rows));
            Ok(())
        }
    }
}

/// One line of `group describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LagRow {
    pub topic: String,
    pub partition: i32,
    /// None: nothing committed.
    pub committed: Option<i64>,
    /// None: the end offset could not be read.
    pub log_end: Option<i64>,
    pub member_id: Option<String>,
    pub host: Option<String>,
    pub client_id: Option<String>,
}

impl LagRow {
    /// Kafka's lag: log end minus committed, when both are known.
    pub fn lag(&self) -> Option<i64> {
        Some((self.log_end? - self.committed?).max(0))
    }
}

/// The member fields of a row: (member id, host, client id).
type Owner = (String, String, String);

/// What DescribeGroups says about a group: state, member count and members' partitions.
struct GroupInfo {
    state: String,
    members: usize,
    owners: BTreeMap<Tp, Owner>,
}

fn describe_group(conn: &mut Connection, group: &str) -> anyhow::Result<GroupInfo> {
    let mut req = DescribeGroupsRequest::default();
    req.groups = vec![group_id(group)];
    let described: DescribeGroupsResponse = conn.call(
        ApiKey::DescribeGroups,
        0..=5,
        RequestKind::DescribeGroups(req),
    )?;
    let Some(g) = described.groups.first() else {
        bail!("DescribeGroups answered no group");
    };
    KafkaError::check(g.error_code, None, &format!("group '{group}'"))?;
    let mut owners = BTreeMap::new();
    if g.protocol_type.as_str() == "consumer" {
        for m in &g.members {
            for tp in decode_assignment(&m.member_assignment) {
                owners.insert(
                    tp,
                    (
                        m.member_id.to_string(),
                        m.client_host.to_string(),
                        m.client_id.to_string(),
                    ),
                );
            }
        }
    }
    Ok(GroupInfo {
        state: g.group_state.to_string(),
        members: g.members.len(),
        owners,
    })
}

/// Every committed offset of `group`.
pub fn committed_offsets(conn: &mut Connection, group: &str) -> anyhow::Result<BTreeMap<Tp, i64>> {
    let mut req = OffsetFetchRequest::default();
    req.group_id = group_id(group);
    req.topics = None; // all committed offsets (v2+)
    let fetched: OffsetFetchResponse =
        conn.call(ApiKey::OffsetFetch, 2..=7, RequestKind::OffsetFetch(req))?;
    KafkaError::check(
        fetched.error_code,
        None,
        &format!("OffsetFetch of '{group}'"),
    )?;
    let mut committed = BTreeMap::new();
    for t in &fetched.topics {
        for p in &t.partitions {
            if p.error_code == 0 && p.committed_offset >= 0 {
                committed.insert(
                    (t.name.0.to_string(), p.partition_index),
                    p.committed_offset,
                );
            }
        }
    }
    Ok(committed)
}

/// Commits `offsets` for `group` as a standalone (simple) consumer would: generation -1 and
/// no member id, which a broker accepts only while the group has no members.
pub fn commit_offsets(
    conn: &mut Connection,
    group: &str,
    offsets: &BTreeMap<Tp, i64>,
) -> anyhow::Result<()> {
    commit_offsets_as(conn, group, -1, "", offsets)
}

/// Commits `offsets` for `group` as member `member_id` of `generation` (-1 and "" for a
/// standalone commit).
pub fn commit_offsets_as(
    conn: &mut Connection,
    group: &str,
    generation: i32,
    member_id: &str,
    offsets: &BTreeMap<Tp, i64>,
) -> anyhow::Result<()> {
    let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for ((t, p), o) in offsets {
        let mut cp = OffsetCommitRequestPartition::default();
        cp.partition_index = *p;
        cp.committed_offset = *o;
        cp.committed_leader_epoch = -1;
        cp.committed_metadata = Some(str_bytes(""));
        by_topic.entry(t.as_str()).or_default().push(cp);
    }
    let mut req = OffsetCommitRequest::default();
    req.group_id = group_id(group);
    req.generation_id_or_member_epoch = generation;
    req.member_id = str_bytes(member_id);
    req.retention_time_ms = -1;
    req.topics = by_topic
        .into_iter()
        .map(|(t, partitions)| {
            let mut ct = OffsetCommitRequestTopic::default();
            ct.name = topic_name(t);
            ct.partitions = partitions;
            ct
        })
        .collect();
    let resp: OffsetCommitResponse =
        conn.call(ApiKey::OffsetCommit, 2..=8, RequestKind::OffsetCommit(req))?;
    for t in &resp.topics {
        for p in &t.partitions {
            KafkaError::check(
                p.error_code,
                None,
                &format!(
                    "committing {}-{} for group '{group}'",
                    t.name.0, p.partition_index
                ),
            )?;
        }
    }
    Ok(())
}

fn describe(client: &mut Client, group: &str) -> anyhow::Result<Vec<LagRow>> {
    let mut conn = client.coordinator(group)?;
    let info = describe_group(&mut conn, group)?;
    let committed = committed_offsets(&mut conn, group)?;
    let mut keys: Vec<Tp> = committed.keys().cloned().collect();
    keys.extend(info.owners.keys().cloned());
    keys.sort();
    keys.dedup();
    let ends = log_end_offsets(client, &keys)?;
    Ok(keys
        .into_iter()
        .map(|key| {
            let owner = info.owners.get(&key).cloned();
            LagRow {
                committed: committed.get(&key).copied(),
                log_end: ends.get(&key).copied(),
                member_id: owner.as_ref().map(|o| o.0.clone()),
                host: owner.as_ref().map(|o| o.1.clone()),
                client_id: owner.map(|o| o.2),
                topic: key.0,
                partition: key.1,
            }
        })
        .collect())
}

/// Log end offsets of the partitions that still exist and have a leader; others are left
/// out (their lag shows as `-`).
fn log_end_offsets(client: &mut Client, keys: &[Tp]) -> anyhow::Result<BTreeMap<Tp, i64>> {
    if keys.is_empty() {
        return Ok(BTreeMap::new());
    }
    let topics: Vec<String> = keys
        .iter()
        .map(|k| k.0.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let meta = client.metadata(Some(&topics))?;
    let leaders = offsets::leaders(&meta);
    let known: Vec<Tp> = keys
        .iter()
        .filter(|k| leaders.contains_key(*k))
        .cloned()
        .collect();
    offsets::list_offsets(client, &leaders, &known, offsets::LATEST)
}

/// The partitions of a consumer-protocol assignment (any version); nothing when it does not
/// parse (another protocol, or an empty assignment during a rebalance).
pub(super) fn decode_assignment(bytes: &bytes::Bytes) -> Vec<Tp> {
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        return Vec::new();
    }
    let version = buf.get_i16().clamp(0, 3);
    match ConsumerProtocolAssignment::decode(&mut buf, version) {
        Ok(a) => a
            .assigned_partitions
            .into_iter()
            .flat_map(|tp| {
                let topic = tp.topic.0.to_string();
                tp.partitions.into_iter().map(move |p| (topic.clone(), p))
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The describe table, with kafka-consumer-groups.sh's columns.
pub fn render(group: &str, rows: &[LagRow]) -> String {
    let mut out = format!(
        "{:<24} {:<32} {:>9} {:>14} {:>14} {:>10} {:<48} {:<16} CLIENT-ID\n",
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<24} {:<32} {:>9} {:>14} {:>14} {:>10} {:<48} {:<16} {}\n",
            group,
            r.topic,
            r.partition,
            dash(r.committed),
            dash(r.log_end),
            dash(r.lag()),
            dash(r.member_id.clone()),
            dash(r.host.clone()),
            dash(r.client_id.clone()),
        ));
    }
    out
}

fn delete(client: &mut Client, format: Format, group: &str) -> anyhow::Result<()> {
    let mut conn = client.coordinator(group)?;
    let mut req = DeleteGroupsRequest::default();
    req.groups_names = vec![group_id(group)];
    let resp: DeleteGroupsResponse =
        conn.call(ApiKey::DeleteGroups, 0..=2, RequestKind::DeleteGroups(req))?;
    let r = resp
        .results
        .first()
        .ok_or_else(|| anyhow!("DeleteGroups answered no group"))?;
    KafkaError::check(r.error_code, None, &format!("group '{group}'"))?;
    match format {
        Format::Json => print_json(&json!({"group": group, "deleted": true})),
        Format::Table => {
            println!("deleted group {group}");
            Ok(())
        }
    }
}

/// `TOPIC` or `TOPIC:P1,P2` → (topic, partitions; empty = all).
pub fn parse_topic_spec(spec: &str) -> anyhow::Result<(String, Vec<i32>)> {
    let (topic, parts) = match spec.rsplit_once(':') {
        Some((t, ps)) => {
            let parts = ps
                .split(',')
                .map(|p| {
                    p.trim()
                        .parse::<i32>()
                        .ok()
                        .filter(|p| *p >= 0)
                        .ok_or_else(|| anyhow!("bad partition '{p}' in --topic {spec}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            (t, parts)
        }
        None => (spec, Vec::new()),
    };
    if topic.is_empty() {
        bail!("--topic {spec}: no topic name");
    }
    Ok((topic.to_string(), parts))
}

/// Milliseconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.mmm][Z|±HH:MM]` (no zone: UTC), or of
/// a plain integer of milliseconds.
pub fn parse_datetime_ms(s: &str) -> anyhow::Result<i64> {
    let bad =
        || anyhow!("bad --to-datetime '{s}': expected YYYY-MM-DDTHH:MM:SS[.mmm][Z|+HH:MM] or ms");
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let (date, rest) = s.split_once(['T', ' ']).ok_or_else(bad)?;
    let mut d = date.split('-');
    let (Some(y), Some(mo), Some(da), None) = (d.next(), d.next(), d.next(), d.next()) else {
        return Err(bad());
    };
    let (y, mo, da): (i64, i64, i64) = (
        y.parse().map_err(|_| bad())?,
        mo.parse().map_err(|_| bad())?,
        da.parse().map_err(|_| bad())?,
    );
    // Split off the zone: Z, +HH:MM or -HH:MM after the time.
    let (time, offset_min) = if let Some(t) = rest.strip_suffix('Z') {
        (t, 0)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let (t, z) = rest.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let (zh, zm) = z[1..].split_once(':').unwrap_or((&z[1..], "0"));
        let zh: i64 = zh.parse().map_err(|_| bad())?;
        let zm: i64 = zm.parse().map_err(|_| bad())?;
        (t, sign * (zh * 60 + zm))
    } else {
        (rest, 0)
    };
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':');
    let (Some(h), Some(mi), sec, None) = (t.next(), t.next(), t.next(), t.next()) else {
        return Err(bad());
    };
    let (h, mi, sec): (i64, i64, i64) = (
        h.parse().map_err(|_| bad())?,
        mi.parse().map_err(|_| bad())?,
        sec.unwrap_or("0").parse().map_err(|_| bad())?,
    );
    let frac3: String = frac.chars().chain("000".chars()).take(3).collect();
    let ms: i64 = frac3.parse().map_err(|_| bad())?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    let days = days_from_civil(y, mo, da);
    Ok((((days * 24 + h) * 60 + mi) * 60 + sec) * 1000 + ms - offset_min * 60_000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// What a reset moves each partition to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTarget {
    Earliest,
    Latest,
    Offset(i64),
    Timestamp(i64),
    ShiftBy(i64),
}

impl ResetArgs {
    pub fn target(&self) -> anyhow::Result<ResetTarget> {
        Ok(if self.to_earliest {
            ResetTarget::Earliest
        } else if self.to_latest {
            ResetTarget::Latest
        } else if let Some(o) = self.to_offset {
            ResetTarget::Offset(o)
        } else if let Some(t) = &self.to_datetime {
            ResetTarget::Timestamp(parse_datetime_ms(t)?)
        } else if let Some(n) = self.shift_by {
            ResetTarget::ShiftBy(n)
        } else {
            bail!("give one of --to-earliest, --to-latest, --to-offset, --to-datetime, --shift-by")
        })
    }
}

/// The new offset of one partition: Kafka's rules (offsets and shifts are clamped to the log,
/// a time past the end goes to the end).
pub fn new_offset(
    target: ResetTarget,
    start: i64,
    end: i64,
    committed: Option<i64>,
    at_time: Option<i64>,
) -> Result<i64, String> {
    let clamp = |o: i64| o.clamp(start, end.max(start));
    match target {
        ResetTarget::Earliest => Ok(start),
        ResetTarget::Latest => Ok(end),
        ResetTarget::Offset(o) => Ok(clamp(o)),
        ResetTarget::Timestamp(_) => Ok(match at_time {
            Some(o) if o >= 0 => clamp(o),
            _ => end,
        }),
        ResetTarget::ShiftBy(n) => match committed {
            Some(c) => Ok(clamp(c.saturating_add(n))),
            None => Err("no committed offset to shift".to_string()),
        },
    }
}

fn reset_offsets(client: &mut Client, format: Format, args: &ResetArgs) -> anyhow::Result<()> {
    let target = args.target()?;
    let group = args.group.as_str();
    let mut conn = client.coordinator(group)?;
    let info = describe_group(&mut conn, group)?;
    if info.members > 0 || !matches!(info.state.as_str(), "Empty" | "Dead" | "") {
        bail!(
            "Assignments can only be reset if the group '{group}' is inactive, but the current \
             state is {} ({} members).",
            info.state,
            info.members
        );
    }
    let committed = committed_offsets(&mut conn, group)?;

    // The partitions to reset.
    let mut wanted: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for spec in &args.topic {
        let (t, ps) = parse_topic_spec(spec)?;
        wanted.entry(t).or_default().extend(ps);
    }
    if args.all_topics {
        for (t, _) in committed.keys() {
            wanted.entry(t.clone()).or_default();
        }
    }
    let topics: Vec<String> = wanted.keys().cloned().collect();
    let meta = client.metadata(Some(&topics))?;
    let mut tps: Vec<Tp> = Vec::new();
    for t in &meta {
        KafkaError::check(
            t.error_code,
            None,
            &format!("Topic '{}' does not exist.", t.name),
        )?;
        let ps = wanted.get(&t.name).cloned().unwrap_or_default();
        let existing: BTreeSet<i32> = t.partitions.iter().map(|p| p.partition).collect();
        if ps.is_empty() {
            tps.extend(existing.iter().map(|p| (t.name.clone(), *p)));
        } else {
            for p in ps {
                if !existing.contains(&p) {
                    return Err(KafkaError {
                        code: kafka_protocol::ResponseError::UnknownTopicOrPartition.code(),
                        message: Some(format!("Partition {}-{p} does not exist.", t.name)),
                    }
                    .into());
                }
                tps.push((t.name.clone(), p));
            }
        }
    }
    tps.sort();
    tps.dedup();
    if tps.is_empty() {
        bail!("no partitions to reset");
    }

    let leaders = offsets::leaders(&meta);
    let starts = offsets::list_offsets(client, &leaders, &tps, offsets::EARLIEST)?;
    let ends = offsets::list_offsets(client, &leaders, &tps, offsets::LATEST)?;
    let at_time = match target {
        ResetTarget::Timestamp(ms) => Some(offsets::list_offsets(client, &leaders, &tps, ms)?),
        _ => None,
    };
    let mut new_offsets = BTreeMap::new();
    for tp in &tps {
        let (Some(&s), Some(&e)) = (starts.get(tp), ends.get(tp)) else {
            bail!("no offsets for {}-{}", tp.0, tp.1);
        };
        let t = at_time.as_ref().and_then(|m| m.get(tp).copied());
        let o = new_offset(target, s, e, committed.get(tp).copied(), t)
            .map_err(|why| anyhow!("{}-{}: {why}", tp.0, tp.1))?;
        new_offsets.insert(tp.clone(), o);
    }

    if !args.dry_run {
        let mut progress = Progress::new("committing offsets", Some(new_offsets.len() as u64));
        let all: Vec<(Tp, i64)> = new_offsets.iter().map(|(k, v)| (k.clone(), *v)).collect();
        for chunk in all.chunks(RESET_COMMIT_PARTITIONS_MAX) {
            let part: BTreeMap<Tp, i64> = chunk.iter().cloned().collect();
            commit_offsets(&mut conn, group, &part)?;
            progress.add(chunk.len() as u64);
        }
        progress.finish();
    }
    match format {
        Format::Json => print_json(&json!({
            "group": group,
            "dry_run": args.dry_run,
            "partitions": new_offsets.iter().map(|((t, p), o)| json!({
                "topic": t,
                "partition": p,
                "previous_offset": committed.get(&(t.clone(), *p)),
                "new_offset": o,
            })).collect::<Vec<_>>(),
        })),
        Format::Table => {
            let rows: Vec<Vec<String>> = new_offsets
                .iter()
                .map(|((t, p), o)| {
                    vec![
                        group.to_string(),
                        t.clone(),
                        p.to_string(),
                        dash(committed.get(&(t.clone(), *p))),
                        o.to_string(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "GROUP",
                        "TOPIC",
                        "PARTITION",
                        "PREVIOUS-OFFSET",
                        "NEW-OFFSET"
                    ],
                    &rows
                )
            );
            if args.dry_run {
                println!("(dry run: nothing committed)");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    #[test]
    fn assignment_decodes_at_its_version() {
        let mut a = ConsumerProtocolAssignment::default();
        let mut tp = TopicPartition::default();
        tp.topic = TopicName(StrBytes::from_static_str("t"));
        tp.partitions = vec![0, 3];
        a.assigned_partitions = vec![tp];
        for version in 0..=3i16 {
            let mut buf = bytes::BytesMut::new();
            buf.put_i16(version);
            a.encode(&mut buf, version).unwrap();
            assert_eq!(
                decode_assignment(&buf.freeze()),
                vec![("t".to_string(), 0), ("t".to_string(), 3)]
            );
        }
        assert!(decode_assignment(&bytes::Bytes::from_static(&[0])).is_empty());
        assert!(decode_assignment(&bytes::Bytes::from_static(&[0, 0, 9])).is_empty());
    }

    #[test]
    fn lag_is_end_minus_committed() {
        let row = LagRow {
            topic: "t".into(),
            partition: 0,
            committed: Some(4),
            log_end: Some(10),
            member_id: None,
            host: None,
            client_id: None,
        };
        assert_eq!(row.lag(), Some(6));
        let text = render(
            "g",
            &[
                row.clone(),
                LagRow {
                    committed: None,
                    ..row
                },
            ],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[1].split_whitespace().collect::<Vec<_>>()[..6] == ["g", "t", "0", "4", "10", "6"]
        );
        assert!(
            lines[2].split_whitespace().collect::<Vec<_>>()[..6] == ["g", "t", "0", "-", "10", "-"]
        );
    }

    #[test]
    fn topic_specs() {
        assert_eq!(parse_topic_spec("t").unwrap(), ("t".into(), vec![]));
        assert_eq!(parse_topic_spec("t:0,2").unwrap(), ("t".into(), vec![0, 2]));
        assert!(parse_topic_spec("t:x").is_err());
        assert!(parse_topic_spec("t:-1").is_err());
        assert!(parse_topic_spec(":1").is_err());
    }

    #[test]
    fn datetimes() {
        assert_eq!(parse_datetime_ms("1970-01-01T00:00:00").unwrap(), 0);
        assert_eq!(parse_datetime_ms("1970-01-01T00:00:01.5Z").unwrap(), 1500);
        assert_eq!(
            parse_datetime_ms("2023-11-14T22:13:20.000").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_datetime_ms("2023-11-15T00:13:20+02:00").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_datetime_ms("2023-11-14T21:13:20-01:00").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_datetime_ms("1700000000000").unwrap(),
            1_700_000_000_000
        );
        assert!(parse_datetime_ms("2023-13-01T00:00:00").is_err());
        assert!(parse_datetime_ms("yesterday").is_err());
    }

    #[test]
    fn new_offsets_follow_kafkas_rules() {
        use ResetTarget::*;
        assert_eq!(new_offset(Earliest, 5, 50, Some(20), None), Ok(5));
        assert_eq!(new_offset(Latest, 5, 50, Some(20), None), Ok(50));
        assert_eq!(new_offset(Offset(100), 5, 50, None, None), Ok(50));
        assert_eq!(new_offset(Offset(1), 5, 50, None, None), Ok(5));
        assert_eq!(new_offset(Offset(7), 5, 50, None, None), Ok(7));
        assert_eq!(new_offset(ShiftBy(-30), 5, 50, Some(20), None), Ok(5));
        assert_eq!(new_offset(ShiftBy(10), 5, 50, Some(20), None), Ok(30));
        assert!(new_offset(ShiftBy(1), 5, 50, None, None).is_err());
        assert_eq!(new_offset(Timestamp(0), 5, 50, None, Some(12)), Ok(12));
        assert_eq!(new_offset(Timestamp(0), 5, 50, None, Some(-1)), Ok(50));
        assert_eq!(new_offset(Timestamp(0), 5, 50, None, None), Ok(50));
    }
}
