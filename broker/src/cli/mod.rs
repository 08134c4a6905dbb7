//! Operator commands that talk to a running broker over the Kafka protocol, in the spirit of
//! `rpk` and `kafka-consumer-groups.sh`:
//!
//! - `ringtail group list`: every group, its state and protocol type.
//! - `ringtail group describe GROUP`: per partition the committed offset, the log end offset
//!   and the lag, with the member that owns the partition.
//! - `ringtail group delete GROUP`: delete an empty group and its offsets.
//! - `ringtail txn list` / `ringtail txn abort ID`: transactions (see [`txn`]).
//!
//! They work against any Kafka-compatible broker (`--bootstrap HOST:PORT`); each request goes
//! to the group's coordinator found with FindCoordinator.

mod txn;
mod wire;

pub use txn::{run_txn, TxnArgs};

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Buf;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, ConsumerProtocolAssignment, DeleteGroupsRequest, DeleteGroupsResponse,
    DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    GroupId, ListGroupsRequest, ListGroupsResponse, ListOffsetsRequest, ListOffsetsResponse,
    OffsetFetchRequest, OffsetFetchResponse, RequestKind, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::ResponseError;

use wire::Connection;

/// How long to retry while a coordinator is loading.
const COORDINATOR_WAIT: Duration = Duration::from_secs(30);

#[derive(clap::Args, Debug)]
pub struct GroupArgs {
    /// A broker of the cluster, HOST:PORT.
    #[arg(
        long,
        global = true,
        env = "RINGTAIL_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap: String,
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
}

pub fn run_group(args: GroupArgs) -> anyhow::Result<()> {
    match args.command {
        GroupCommand::List => list(&args.bootstrap),
        GroupCommand::Describe { group } => {
            let rows = describe(&args.bootstrap, &group)?;
            print!("{}", render(&group, &rows));
            Ok(())
        }
        GroupCommand::Delete { group } => delete(&args.bootstrap, &group),
    }
}

fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?} ({code})"),
        None => format!("error code {code}"),
    }
}

fn list(bootstrap: &str) -> anyhow::Result<()> {
    let mut conn = Connection::connect(bootstrap)?;
    let resp: ListGroupsResponse = conn.call(
        ApiKey::ListGroups,
        4,
        RequestKind::ListGroups(ListGroupsRequest::default()),
    )?;
    if resp.error_code != 0 {
        eprintln!("warning: {}", error_name(resp.error_code));
    }
    let mut groups: Vec<_> = resp.groups.iter().collect();
    groups.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
    println!("{:<40} {:<20} PROTOCOL-TYPE", "GROUP", "STATE");
    for g in groups {
        println!(
            "{:<40} {:<20} {}",
            g.group_id.0.as_str(),
            g.group_state.as_str(),
            g.protocol_type.as_str()
        );
    }
    Ok(())
}

/// A connection to the coordinator of `group` (retried while it loads).
fn coordinator(bootstrap: &str, group: &str) -> anyhow::Result<Connection> {
    let deadline = Instant::now() + COORDINATOR_WAIT;
    loop {
        let mut conn = Connection::connect(bootstrap)?;
        let mut req = FindCoordinatorRequest::default();
        req.key = StrBytes::from_string(group.to_string());
        let resp: FindCoordinatorResponse = conn.call(
            ApiKey::FindCoordinator,
            3,
            RequestKind::FindCoordinator(req),
        )?;
        match resp.error_code {
            0 => {
                let addr = format!("{}:{}", resp.host.as_str(), resp.port);
                return Connection::connect(&addr)
                    .with_context(|| format!("connecting to the coordinator {addr}"));
            }
            code if Instant::now() < deadline
                && (code == ResponseError::CoordinatorLoadInProgress.code()
                    || code == ResponseError::CoordinatorNotAvailable.code()) =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            code => bail!("FindCoordinator for {group}: {}", error_name(code)),
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

fn describe(bootstrap: &str, group: &str) -> anyhow::Result<Vec<LagRow>> {
    let mut conn = coordinator(bootstrap, group)?;
    let mut req = DescribeGroupsRequest::default();
    req.groups = vec![GroupId(StrBytes::from_string(group.to_string()))];
    let described: DescribeGroupsResponse =
        conn.call(ApiKey::DescribeGroups, 5, RequestKind::DescribeGroups(req))?;
    let Some(g) = described.groups.first() else {
        bail!("DescribeGroups answered no group");
    };
    if g.error_code != 0 {
        bail!("DescribeGroups {group}: {}", error_name(g.error_code));
    }
    let mut owners: BTreeMap<(String, i32), Owner> = BTreeMap::new();
    if g.protocol_type.as_str() == "consumer" {
        for m in &g.members {
            for (topic, partition) in decode_assignment(&m.member_assignment) {
                owners.insert(
                    (topic, partition),
                    (
                        m.member_id.to_string(),
                        m.client_host.to_string(),
                        m.client_id.to_string(),
                    ),
                );
            }
        }
    }

    let mut req = OffsetFetchRequest::default();
    req.group_id = GroupId(StrBytes::from_string(group.to_string()));
    req.topics = None; // all committed offsets
    let fetched: OffsetFetchResponse =
        conn.call(ApiKey::OffsetFetch, 7, RequestKind::OffsetFetch(req))?;
    if fetched.error_code != 0 {
        bail!("OffsetFetch {group}: {}", error_name(fetched.error_code));
    }
    let mut committed: BTreeMap<(String, i32), i64> = BTreeMap::new();
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

    let mut keys: Vec<(String, i32)> = committed.keys().cloned().collect();
    keys.extend(owners.keys().cloned());
    keys.sort();
    keys.dedup();
    let ends = log_end_offsets(&mut Connection::connect(bootstrap)?, &keys)?;
    Ok(keys
        .into_iter()
        .map(|key| {
            let owner = owners.get(&key).cloned();
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

/// Latest offsets (ListOffsets LATEST) of the partitions; failed ones are left out.
fn log_end_offsets(
    conn: &mut Connection,
    keys: &[(String, i32)],
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in keys {
        by_topic.entry(t.as_str()).or_default().push(*p);
    }
    let mut req = ListOffsetsRequest::default();
    req.replica_id = BrokerId(-1);
    req.topics = by_topic
        .into_iter()
        .map(|(t, partitions)| {
            let mut lt = ListOffsetsTopic::default();
            lt.name = TopicName(StrBytes::from_string(t.to_string()));
            lt.partitions = partitions
                .into_iter()
                .map(|p| {
                    let mut lp = ListOffsetsPartition::default();
                    lp.partition_index = p;
                    lp.timestamp = -1;
                    lp.current_leader_epoch = -1;
                    lp
                })
                .collect();
            lt
        })
        .collect();
    let mut out = BTreeMap::new();
    if req.topics.is_empty() {
        return Ok(out);
    }
    let resp: ListOffsetsResponse =
        conn.call(ApiKey::ListOffsets, 4, RequestKind::ListOffsets(req))?;
    for t in resp.topics {
        for p in t.partitions {
            if p.error_code == 0 {
                out.insert((t.name.0.to_string(), p.partition_index), p.offset);
            }
        }
    }
    Ok(out)
}

/// The partitions of a consumer-protocol assignment (any version); nothing when it does not
/// parse (another protocol, or an empty assignment during a rebalance).
fn decode_assignment(bytes: &bytes::Bytes) -> Vec<(String, i32)> {
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
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
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
            dash(r.committed.map(|v| v.to_string())),
            dash(r.log_end.map(|v| v.to_string())),
            dash(r.lag().map(|v| v.to_string())),
            dash(r.member_id.clone()),
            dash(r.host.clone()),
            dash(r.client_id.clone()),
        ));
    }
    out
}

fn delete(bootstrap: &str, group: &str) -> anyhow::Result<()> {
    let mut conn = coordinator(bootstrap, group)?;
    let mut req = DeleteGroupsRequest::default();
    req.groups_names = vec![GroupId(StrBytes::from_string(group.to_string()))];
    let resp: DeleteGroupsResponse =
        conn.call(ApiKey::DeleteGroups, 2, RequestKind::DeleteGroups(req))?;
    match resp.results.first().map(|r| r.error_code) {
        Some(0) => {
            println!("deleted group {group}");
            Ok(())
        }
        Some(code) => bail!("DeleteGroups {group}: {}", error_name(code)),
        None => bail!("DeleteGroups answered no group"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::protocol::Encodable;

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
}
