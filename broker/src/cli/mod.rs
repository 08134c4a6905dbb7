//! Operator commands that talk to any Kafka-compatible cluster over the Kafka protocol, in the
//! spirit of Redpanda's `rpk` and Kafka's `kafka-*.sh` tools. They never read a data
//! directory: everything goes through a broker.
//!
//! - `ringtail topic create|list|describe|delete|add-partitions|alter-config|describe-config`
//!   ([`topic`]);
//! - `ringtail produce TOPIC` and `ringtail consume TOPIC` ([`produce`], [`consume`]; a
//!   consume with `--group` is a classic group member, [`member`]);
//! - `ringtail group list|describe|delete|reset-offsets` ([`group`]);
//! - `ringtail cluster info` ([`cluster`]).
//! - `ringtail txn list` / `ringtail txn abort ID`: transactions ([`txn`]).
//! - `ringtail config print`: the effective broker configuration and where each value came
//!   from ([`config_print`]; local, it talks to no broker).
//!
//! Every command takes `--brokers HOST:PORT[,...]` (`RINGTAIL_BROKERS`; `--bootstrap` and
//! `RINGTAIL_BOOTSTRAP` are kept as aliases) and `--format table|json`. Requests are routed
//! like a client library does ([`wire::Client`]): admin requests to the controller, partition
//! requests to the partition's leader, group requests to the group's coordinator. Errors end
//! the command with a non-zero exit and one line naming the Kafka error
//! (`TOPIC_ALREADY_EXISTS: Topic 'x' already exists.`).
//!
//! Invariants: output for scripts (`--format json`) goes to stdout only; progress goes to
//! stderr and only when stderr is a terminal ([`output::Progress`]).
//!
//! Runs on: the `ringtail` process's main thread (blocking sockets, no runtime, no shards).

pub mod cluster;
pub mod config_print;
pub mod consume;
pub mod group;
pub mod member;
pub mod offsets;
pub mod output;
pub mod produce;
pub mod topic;
pub mod txn;
pub mod wire;

use anyhow::bail;

pub use txn::{run_txn, TxnArgs};

pub use group::{render, LagRow};

/// Default bootstrap address.
pub const BROKERS_DEFAULT: &str = "127.0.0.1:9092";

/// Connection and output options every command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnArgs {
    /// Brokers to bootstrap from, HOST:PORT[,HOST:PORT...] [env: RINGTAIL_BROKERS; default:
    /// 127.0.0.1:9092].
    #[arg(long = "brokers", visible_alias = "bootstrap", global = true)]
    pub brokers: Option<String>,
    /// Output: `table` (for people) or `json` (for scripts); `consume` also takes a format
    /// string such as '%k %v %h %p %o %t'.
    #[arg(long, global = true, default_value = "table")]
    pub format: String,
}

impl ConnArgs {
    /// `--brokers`, else `RINGTAIL_BROKERS`, else `RINGTAIL_BOOTSTRAP` (the old name), else
    /// the default.
    pub fn brokers(&self) -> String {
        self.brokers
            .clone()
            .or_else(|| std::env::var("RINGTAIL_BROKERS").ok())
            .or_else(|| std::env::var("RINGTAIL_BOOTSTRAP").ok())
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| BROKERS_DEFAULT.to_string())
    }

    /// The output format for commands that print tables or JSON.
    pub fn output(&self) -> anyhow::Result<output::Format> {
        output::Format::parse(&self.format)
    }

    pub fn client(&self) -> anyhow::Result<wire::Client> {
        wire::Client::new(&self.brokers())
    }
}

/// The operator subcommands of `ringtail` (flattened into the binary's command list).
#[derive(clap::Subcommand, Debug)]
pub enum OpsCommand {
    /// Topics: create, list, describe (partitions, leaders, offsets), delete, add partitions,
    /// alter and describe configs.
    Topic(topic::TopicArgs),
    /// Produce lines from stdin as records (one record per line).
    Produce(produce::ProduceArgs),
    /// Consume records and print them (table, json or a format string).
    Consume(consume::ConsumeArgs),
    /// Consumer groups: list, describe (with lag), delete, reset offsets.
    Group(group::GroupArgs),
    /// The cluster: brokers, controller, cluster id, API versions, topic and partition counts.
    Cluster(cluster::ClusterArgs),
}

/// Runs one operator command.
pub fn run(command: OpsCommand) -> anyhow::Result<()> {
    // Rust ignores SIGPIPE, so `ringtail topic list | head -1` would fail writing stdout; a
    // command-line tool should end quietly instead, like other Unix tools.
    // SAFETY: called before any other thread exists; SIG_DFL is a valid disposition and
    // nothing in this process relies on SIGPIPE being ignored (the broker does not run here).
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match command {
        OpsCommand::Topic(args) => topic::run(args),
        OpsCommand::Produce(args) => produce::run(args),
        OpsCommand::Consume(args) => consume::run(args),
        OpsCommand::Group(args) => group::run(args),
        OpsCommand::Cluster(args) => cluster::run(args),
    }
}

/// `k=v` → (k, v); the value may contain `=`.
pub fn parse_key_value(s: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("expected KEY=VALUE, got '{s}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser, Debug)]
    struct TestCli {
        #[command(subcommand)]
        command: OpsCommand,
    }

    fn parse(args: &[&str]) -> Result<OpsCommand, clap::Error> {
        let mut full = vec!["ringtail"];
        full.extend_from_slice(args);
        TestCli::try_parse_from(full).map(|c| c.command)
    }

    #[test]
    fn key_values_split_at_the_first_equals() {
        assert_eq!(
            parse_key_value("a=b=c").unwrap(),
            ("a".to_string(), "b=c".to_string())
        );
        assert_eq!(parse_key_value("a=").unwrap(), ("a".into(), "".into()));
        assert!(parse_key_value("=b").is_err());
        assert!(parse_key_value("ab").is_err());
    }

    #[test]
    fn brokers_flag_and_its_bootstrap_alias() {
        for flag in ["--brokers", "--bootstrap"] {
            let OpsCommand::Topic(t) = parse(&["topic", "list", flag, "h:1"]).unwrap() else {
                panic!("not a topic command");
            };
            assert_eq!(t.conn.brokers(), "h:1");
        }
        // Global: also accepted before the verb.
        let OpsCommand::Group(g) = parse(&["group", "--brokers", "h:2", "list"]).unwrap() else {
            panic!("not a group command");
        };
        assert_eq!(g.conn.brokers(), "h:2");
    }

    #[test]
    fn topic_create_arguments() {
        let OpsCommand::Topic(t) = parse(&[
            "topic",
            "create",
            "a",
            "b",
            "-p",
            "3",
            "-r",
            "1",
            "-c",
            "retention.ms=5",
            "-c",
            "cleanup.policy=compact",
        ])
        .unwrap() else {
            panic!("not a topic command");
        };
        let topic::TopicCommand::Create {
            topics,
            partitions,
            replicas,
            config,
        } = t.command
        else {
            panic!("not create");
        };
        assert_eq!(topics, ["a", "b"]);
        assert_eq!((partitions, replicas), (3, 1));
        assert_eq!(config, ["retention.ms=5", "cleanup.policy=compact"]);
    }

    #[test]
    fn reset_offsets_needs_exactly_one_target() {
        assert!(parse(&["group", "reset-offsets", "g", "--topic", "t"]).is_err());
        assert!(parse(&[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-earliest",
            "--to-latest"
        ])
        .is_err());
        let OpsCommand::Group(g) = parse(&[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "t:0,2",
            "--shift-by",
            "-5",
            "--dry-run",
        ])
        .unwrap() else {
            panic!("not a group command");
        };
        let group::GroupCommand::ResetOffsets(r) = g.command else {
            panic!("not reset-offsets");
        };
        assert_eq!(r.shift_by, Some(-5));
        assert!(r.dry_run);
        assert_eq!(r.topic, ["t:0,2"]);
    }

    #[test]
    fn produce_and_consume_arguments() {
        let OpsCommand::Produce(p) = parse(&[
            "produce", "t", "-k", ":", "-H", "a=1", "-H", "b=2", "--acks", "1", "-z", "zstd", "-v",
        ])
        .unwrap() else {
            panic!("not produce");
        };
        assert_eq!(p.key_separator.as_deref(), Some(":"));
        assert_eq!(p.header, ["a=1", "b=2"]);
        assert_eq!(p.acks, "1");
        assert_eq!(p.compression, "zstd");
        assert!(p.verbose);
        let OpsCommand::Consume(c) = parse(&[
            "consume",
            "t",
            "-o",
            "@1700000000000",
            "-n",
            "10",
            "-g",
            "grp",
            "--format",
            "%k %v",
        ])
        .unwrap() else {
            panic!("not consume");
        };
        assert_eq!(c.offset.as_deref(), Some("@1700000000000"));
        assert_eq!(c.num, Some(10));
        assert_eq!(c.group.as_deref(), Some("grp"));
        assert_eq!(c.conn.format, "%k %v");
    }
}
