//! `ringtail config print`: the configuration `ringtail serve` would run with, every key with
//! its effective value and where that value came from (built-in default, the config file,
//! an environment variable or a command-line flag), as a table or `--format json`.
//!
//! It owns [`ServeArgs`], the flags and environment variables `serve` and `config print` share,
//! so both resolve a configuration the same way ([`BrokerConfig::resolve`]): what `config print`
//! refuses (an unknown key, a bad value, each error naming the key) `serve` refuses too.
//!
//! Precedence, as in [`BrokerConfig::resolve`]: a serve flag, else its `RINGTAIL_*` variable
//! (clap reads both), else the file, else the default; the limits read with
//! `RINGTAIL_<KEY>` ([`ENV_KEYS`]) take the variable over the file; the other keys come from
//! the file or the default. `[kafka]` settings come from the file or Kafka's default (dynamic
//! broker configs set at run time live in the cluster's metadata, not here: see `ringtail
//! topic describe-config`).
//!
//! Invariant: [`settings`] lists every key the config file accepts (a unit test compares it with
//! serde's list), and its flag and environment layers match what `config.rs` reads.
//!
//! Runs on: the `ringtail` process's main thread, before and without any shard.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::Context;
use serde_json::{json, Value};

use super::output::{self, Format};
use crate::config::{BrokerConfig, Overrides};
use crate::log::topic_config::ConfigSource;

/// Flags of `ringtail serve` (and `ringtail config print`), each also read from its
/// `RINGTAIL_*` environment variable; they override the config file.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// Kafka listener, HOST:PORT [default: 0.0.0.0:9092].
    #[arg(long, env = "RINGTAIL_KAFKA_ADDR")]
    pub kafka_addr: Option<String>,
    /// HOST:PORT given to clients in Metadata [default: the listener, or this host's name].
    #[arg(long, env = "RINGTAIL_ADVERTISED_ADDR")]
    pub advertised_addr: Option<String>,
    /// Admin HTTP endpoint (/health, /ready), HOST:PORT or "off" [default: 127.0.0.1:9644].
    #[arg(long, env = "RINGTAIL_ADMIN_ADDR")]
    pub admin_addr: Option<String>,
    /// Where partitions and metadata live [default: ./data].
    #[arg(long, env = "RINGTAIL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// CPUs to run shards on, taskset syntax: 1 | 0,1 | 0-3 [default: all online CPUs].
    #[arg(long, env = "RINGTAIL_CORES")]
    pub cores: Option<String>,
    /// This broker's node id [default: 0].
    #[arg(long, env = "RINGTAIL_NODE_ID")]
    pub node_id: Option<i32>,
    /// Controller listener for cluster traffic (Raft, broker registration, forwarded admin
    /// requests), IP:PORT [default: none; a lone node needs none].
    #[arg(long, env = "RINGTAIL_CONTROLLER_ADDR")]
    pub controller_addr: Option<String>,
    /// The controller quorum's voters, ID@IP:PORT,... (e.g. 1@10.0.0.1:9093,2@10.0.0.2:9093,
    /// 3@10.0.0.3:9093) [default: this node alone]. A node not named joins as a broker only.
    #[arg(long, env = "RINGTAIL_CONTROLLER_QUORUM")]
    pub controller_quorum: Option<String>,
    /// This broker's rack (Kafka's broker.rack): replicas of a partition spread over racks.
    #[arg(long, env = "RINGTAIL_RACK")]
    pub rack: Option<String>,
    /// TOML config file; flags and environment override it.
    #[arg(long, env = "RINGTAIL_CONFIG")]
    pub config: Option<PathBuf>,
}

/// The clap ids (= config keys) of [`ServeArgs`]' setting flags; `config` is the file itself.
const FLAG_KEYS: &[&str] = &[
    "kafka_addr",
    "advertised_addr",
    "admin_addr",
    "data_dir",
    "cores",
    "node_id",
    "controller_addr",
    "controller_quorum",
    "rack",
];

/// Keys [`BrokerConfig::resolve`] reads from `RINGTAIL_<KEY>` (over the file) without a flag.
pub const ENV_KEYS: &[&str] = &[
    "broker_session_timeout_ms",
    "broker_heartbeat_interval_ms",
    "controller_request_timeout_ms",
    "max_connections_per_shard",
    "max_partitions_per_shard",
    "cross_shard_queue_depth",
    "max_cross_shard_requests_per_shard",
    "max_cross_shard_waits_per_shard",
    "shutdown_timeout_ms",
    "shutdown_drain_ms",
];

impl ServeArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            kafka_addr: self.kafka_addr.clone(),
            advertised_addr: self.advertised_addr.clone(),
            admin_addr: self.admin_addr.clone(),
            data_dir: self.data_dir.clone(),
            cores: self.cores.clone(),
            node_id: self.node_id,
            controller_addr: self.controller_addr.clone(),
            controller_quorum: self.controller_quorum.clone(),
            rack: self.rack.clone(),
            config_file: self.config.clone(),
        }
    }
}

/// `ringtail config ...`
#[derive(clap::Args, Debug)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the configuration `ringtail serve` would run with given the same flags,
    /// environment and --config file: every key, its value and where the value came from.
    Print(PrintArgs),
}

#[derive(clap::Args, Debug)]
pub struct PrintArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// `table` (for people) or `json` (for scripts).
    #[arg(long, default_value = "table")]
    pub format: String,
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default (Ringtail's, or Kafka's for `[kafka]` settings).
    Default,
    /// The config file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A command-line flag.
    Flag(String),
}

impl Source {
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::File(_) => "file",
            Source::Env(_) => "env",
            Source::Flag(_) => "flag",
        }
    }

    /// The file, variable or flag; `None` for a default.
    pub fn origin(&self) -> Option<String> {
        match self {
            Source::Default => None,
            Source::File(path) => Some(path.display().to_string()),
            Source::Env(var) => Some(var.clone()),
            Source::Flag(flag) => Some(flag.clone()),
        }
    }

    fn describe(&self) -> String {
        match self.origin() {
            Some(origin) => format!("{} {origin}", self.kind()),
            None => self.kind().to_string(),
        }
    }
}

/// How a key may be set besides the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A serve flag and its `RINGTAIL_*` variable (clap).
    Flag,
    /// `RINGTAIL_<KEY>` only.
    Env,
    /// Only the file.
    File,
}

/// What sets values besides the defaults: the inputs of the source tracking.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    /// `--config` / `RINGTAIL_CONFIG`.
    pub config_file: Option<PathBuf>,
    /// Top-level keys present in the config file.
    pub file_keys: BTreeSet<String>,
    /// Serve flags given, by key: [`Source::Flag`] or [`Source::Env`] (clap's value source).
    pub flags: BTreeMap<String, Source>,
    /// [`ENV_KEYS`] whose variable is set (non-blank).
    pub env_keys: BTreeSet<String>,
}

impl Layers {
    /// Where `key`'s value came from, by [`BrokerConfig::resolve`]'s precedence.
    pub fn source_of(&self, key: &str, via: Via) -> Source {
        if via == Via::Flag {
            if let Some(source) = self.flags.get(key) {
                return source.clone();
            }
        }
        if via == Via::Env && self.env_keys.contains(key) {
            return Source::Env(env_var(key));
        }
        match &self.config_file {
            Some(path) if self.file_keys.contains(key) => Source::File(path.clone()),
            _ => Source::Default,
        }
    }
}

/// `RINGTAIL_<KEY IN CAPITALS>`.
pub fn env_var(key: &str) -> String {
    format!("RINGTAIL_{}", key.to_ascii_uppercase())
}

/// One printed setting.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// The file's key; `[kafka]` settings as `kafka.<name>`.
    pub key: String,
    /// `null` where unset (no controller address, Kafka's null defaults).
    pub value: Value,
    pub source: Source,
}

/// `cpus` in taskset syntax, ranges folded: `[0, 1, 2, 5]` -> `0-2,5`.
pub fn cpu_list(cpus: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

/// Every top-level key with its effective value and how else than the file it may be set.
pub fn values(cfg: &BrokerConfig) -> Vec<(&'static str, Via, Value)> {
    let advertised = if cfg.advertised_host.contains(':') {
        format!("[{}]:{}", cfg.advertised_host, cfg.advertised_port)
    } else {
        format!("{}:{}", cfg.advertised_host, cfg.advertised_port)
    };
    let quorum = (!cfg.controller_quorum.is_empty()).then(|| {
        cfg.controller_quorum
            .iter()
            .map(|(id, addr)| format!("{id}@{addr}"))
            .collect::<Vec<_>>()
            .join(",")
    });
    vec![
        ("kafka_addr", Via::Flag, json!(cfg.kafka_addr.to_string())),
        ("advertised_addr", Via::Flag, json!(advertised)),
        (
            "admin_addr",
            Via::Flag,
            json!(cfg.admin_addr.map_or("off".to_string(), |a| a.to_string())),
        ),
        (
            "data_dir",
            Via::Flag,
            json!(cfg.data_dir.display().to_string()),
        ),
        ("cores", Via::Flag, json!(cpu_list(&cfg.shard_cpus))),
        ("node_id", Via::Flag, json!(cfg.node_id)),
        (
            "controller_addr",
            Via::Flag,
            json!(cfg.controller_addr.map(|a| a.to_string())),
        ),
        ("controller_quorum", Via::Flag, json!(quorum)),
        ("rack", Via::Flag, json!(cfg.rack)),
        (
            "broker_session_timeout_ms",
            Via::Env,
            json!(cfg.broker_session_timeout_ms),
        ),
        (
            "broker_heartbeat_interval_ms",
            Via::Env,
            json!(cfg.broker_heartbeat_interval_ms),
        ),
        (
            "controller_request_timeout_ms",
            Via::Env,
            json!(cfg.controller_request_timeout_ms),
        ),
        (
            "max_connections_per_shard",
            Via::Env,
            json!(cfg.max_connections_per_shard),
        ),
        (
            "max_partitions_per_shard",
            Via::Env,
            json!(cfg.partition_limit.configured),
        ),
        (
            "max_in_flight_per_connection",
            Via::File,
            json!(cfg.max_in_flight_per_connection),
        ),
        (
            "batch_cache_bytes_per_shard",
            Via::File,
            json!(cfg.batch_cache_bytes_per_shard),
        ),
        (
            "batch_cache_bytes_per_partition",
            Via::File,
            json!(cfg.batch_cache_bytes_per_partition),
        ),
        (
            "read_ahead_bytes_per_shard",
            Via::File,
            json!(cfg.read_ahead_bytes_per_shard),
        ),
        ("idle_poll_us", Via::File, json!(cfg.idle_poll_us)),
        ("move_connections", Via::File, json!(cfg.move_connections)),
        (
            "controller_ack_timeout_ms",
            Via::File,
            json!(cfg.controller_ack_timeout_ms),
        ),
        (
            "cross_shard_queue_depth",
            Via::Env,
            json!(cfg.cross_shard.queue_depth),
        ),
        (
            "max_cross_shard_requests_per_shard",
            Via::Env,
            json!(cfg.cross_shard.max_concurrent_served),
        ),
        (
            "max_cross_shard_waits_per_shard",
            Via::Env,
            json!(cfg.cross_shard.max_parked_waits),
        ),
        (
            "metrics_label_sets_max",
            Via::File,
            json!(cfg.metrics_label_sets_max),
        ),
        (
            "shutdown_timeout_ms",
            Via::Env,
            json!(cfg.shutdown.timeout_ms),
        ),
        ("shutdown_drain_ms", Via::Env, json!(cfg.shutdown.drain_ms)),
        (
            "shutdown_close_concurrency",
            Via::File,
            json!(cfg.shutdown.close_concurrency),
        ),
        (
            "blocking_threads_per_shard",
            Via::File,
            json!(cfg.blocking_threads_per_shard),
        ),
    ]
}

/// Every setting of `cfg` (top-level keys, then `[kafka]`) with its source.
pub fn settings(cfg: &BrokerConfig, layers: &Layers) -> Vec<Setting> {
    let mut out: Vec<Setting> = values(cfg)
        .into_iter()
        .map(|(key, via, value)| Setting {
            key: key.to_string(),
            value,
            source: layers.source_of(key, via),
        })
        .collect();
    for (name, effective) in cfg.kafka.describe(None) {
        let source = match (&layers.config_file, effective.source) {
            (Some(path), ConfigSource::StaticBrokerConfig) => Source::File(path.clone()),
            _ => Source::Default,
        };
        out.push(Setting {
            key: format!("kafka.{name}"),
            value: json!(effective.value),
            source,
        });
    }
    out
}

/// The sources clap saw for the serve flags of `matches` (the `config print` subcommand's).
pub fn flag_sources(matches: &clap::ArgMatches) -> BTreeMap<String, Source> {
    let mut out = BTreeMap::new();
    for key in FLAG_KEYS.iter().chain(["config"].iter()) {
        let source = match matches.value_source(key) {
            Some(clap::parser::ValueSource::CommandLine) => {
                Source::Flag(format!("--{}", key.replace('_', "-")))
            }
            Some(clap::parser::ValueSource::EnvVariable) => Source::Env(env_var(key)),
            _ => continue,
        };
        out.insert(key.to_string(), source);
    }
    out
}

/// Runs `ringtail config print`; `matches` are the subcommand's (for flag-or-variable).
pub fn run(args: ConfigArgs, matches: Option<&clap::ArgMatches>) -> anyhow::Result<()> {
    let ConfigCommand::Print(print) = args.command;
    let format = Format::parse(&print.format)?;
    let over = print.serve.overrides();
    // Exactly what `serve` does first: the same errors for unknown keys and bad values.
    let cfg = BrokerConfig::resolve(&over)?;
    let file_keys = match &over.config_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading config file {}", path.display()))?;
            toml::from_str::<toml::Table>(&text)
                .with_context(|| format!("config file {}", path.display()))?
                .keys()
                .cloned()
                .collect()
        }
        None => BTreeSet::new(),
    };
    let layers = Layers {
        config_file: over.config_file.clone(),
        file_keys,
        flags: matches.map(flag_sources).unwrap_or_default(),
        env_keys: ENV_KEYS
            .iter()
            .filter(|k| std::env::var(env_var(k)).is_ok_and(|v| !v.trim().is_empty()))
            .map(|k| k.to_string())
            .collect(),
    };
    let config_source = layers.flags.get("config").cloned();
    let rows = settings(&cfg, &layers);
    match format {
        Format::Json => output::print_json(&render_json(
            over.config_file.as_ref(),
            config_source.as_ref(),
            &rows,
        )),
        Format::Table => {
            if let Some(path) = &over.config_file {
                let from = config_source.map(|s| s.describe()).unwrap_or_default();
                println!("config file: {} ({from})", path.display());
            } else {
                println!("config file: none (built-in defaults; --config FILE to read one)");
            }
            print!("{}", render_table(&rows));
            Ok(())
        }
    }
}

/// The `--format json` document: `{config_file, settings: [{key, value, source, origin}]}`.
pub fn render_json(
    config_file: Option<&PathBuf>,
    config_source: Option<&Source>,
    rows: &[Setting],
) -> Value {
    let settings: Vec<Value> = rows
        .iter()
        .map(|s| {
            json!({
                "key": s.key,
                "value": s.value,
                "source": s.source.kind(),
                "origin": s.source.origin(),
            })
        })
        .collect();
    json!({
        "config_file": config_file.map(|p| json!({
            "path": p.display().to_string(),
            "source": config_source.map(Source::kind),
            "origin": config_source.and_then(Source::origin),
        })),
        "settings": settings,
    })
}

/// KEY, VALUE, SOURCE columns (`-` for an unset value).
pub fn render_table(rows: &[Setting]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|s| {
            let value = match &s.value {
                Value::Null => "-".to_string(),
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            vec![s.key.clone(), value, s.source.describe()]
        })
        .collect();
    output::table(&["KEY", "VALUE", "SOURCE"], &cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_file(text: &str) -> (BrokerConfig, Layers) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ringtail.toml");
        std::fs::write(&path, text).unwrap();
        let cfg = BrokerConfig::resolve(&Overrides {
            config_file: Some(path.clone()),
            ..Overrides::default()
        })
        .unwrap();
        let layers = Layers {
            config_file: Some(path),
            file_keys: toml::from_str::<toml::Table>(text)
                .unwrap()
                .keys()
                .cloned()
                .collect(),
            ..Layers::default()
        };
        (cfg, layers)
    }

    fn find<'a>(rows: &'a [Setting], key: &str) -> &'a Setting {
        rows.iter()
            .find(|s| s.key == key)
            .unwrap_or_else(|| panic!("no row {key}"))
    }

    /// The top-level keys the loader accepts, from serde's "expected one of" list.
    fn loader_keys() -> BTreeSet<String> {
        let err = toml::from_str::<crate::config::FileConfig>("__probe__ = 1")
            .unwrap_err()
            .to_string();
        let list = err.split("expected one of").nth(1).unwrap().to_string();
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .filter(|k| k != "kafka")
            .collect()
    }

    #[test]
    fn every_file_key_is_printed_once() {
        let cfg = BrokerConfig::resolve(&Overrides::default()).unwrap();
        let printed: Vec<&str> = values(&cfg).iter().map(|(k, _, _)| *k).collect();
        let unique: BTreeSet<String> = printed.iter().map(|k| k.to_string()).collect();
        assert_eq!(unique.len(), printed.len(), "a key printed twice");
        assert_eq!(
            unique,
            loader_keys(),
            "config print and FileConfig disagree"
        );
        // And every Kafka setting, after them.
        let rows = settings(&cfg, &Layers::default());
        let kafka = rows.iter().filter(|s| s.key.starts_with("kafka.")).count();
        assert_eq!(kafka, crate::log::topic_config::BROKER_CONFIGS.len());
        assert!(rows.iter().all(|s| s.source == Source::Default));
    }

    /// The flag and variable layers here are the ones `config.rs` reads: a key read with
    /// `env_setting("key")` there is [`Via::Env`] here, a serve flag is [`Via::Flag`].
    #[test]
    fn layers_match_what_resolve_reads() {
        let source = include_str!("../config.rs");
        let mut read_from_env = BTreeSet::new();
        for piece in source.split("env_setting").skip(1) {
            // `::<usize>("key")?` or `("key")?`
            let Some(open) = piece.find("(\"") else {
                continue;
            };
            if open > 12 {
                continue;
            }
            let rest = &piece[open + 2..];
            if let Some(end) = rest.find('"') {
                read_from_env.insert(rest[..end].to_string());
            }
        }
        read_from_env.retain(|k| !k.starts_with("test_"));
        let cfg = BrokerConfig::resolve(&Overrides::default()).unwrap();
        let table = values(&cfg);
        let env: BTreeSet<String> = table
            .iter()
            .filter(|(_, via, _)| *via == Via::Env)
            .map(|(k, _, _)| k.to_string())
            .collect();
        assert_eq!(env, read_from_env);
        assert_eq!(
            env,
            ENV_KEYS
                .iter()
                .map(|k| k.to_string())
                .collect::<BTreeSet<_>>()
        );
        let flags: Vec<&str> = table
            .iter()
            .filter(|(_, via, _)| *via == Via::Flag)
            .map(|(k, _, _)| *k)
            .collect();
        assert_eq!(flags, FLAG_KEYS);
        // The serve flags are exactly `Overrides`' settings.
        let overrides = source
            .split("pub struct Overrides {")
            .nth(1)
            .and_then(|rest| rest.split('}').next())
            .unwrap();
        let fields: Vec<&str> = overrides
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pub "))
            .filter_map(|l| l.split(':').next())
            .filter(|f| *f != "config_file")
            .collect();
        assert_eq!(fields, FLAG_KEYS);
    }

    #[test]
    fn precedence_flag_then_env_then_file_then_default() {
        let path = PathBuf::from("/etc/ringtail/ringtail.toml");
        let mut layers = Layers {
            config_file: Some(path.clone()),
            file_keys: ["kafka_addr", "rack", "shutdown_drain_ms", "idle_poll_us"]
                .iter()
                .map(|k| k.to_string())
                .collect(),
            ..Layers::default()
        };
        let file = Source::File(path.clone());
        assert_eq!(layers.source_of("kafka_addr", Via::Flag), file);
        assert_eq!(layers.source_of("idle_poll_us", Via::File), file);
        assert_eq!(layers.source_of("node_id", Via::Flag), Source::Default);
        layers
            .flags
            .insert("kafka_addr".into(), Source::Flag("--kafka-addr".into()));
        layers
            .flags
            .insert("rack".into(), Source::Env("RINGTAIL_RACK".into()));
        layers.env_keys.insert("shutdown_drain_ms".into());
        assert_eq!(
            layers.source_of("kafka_addr", Via::Flag),
            Source::Flag("--kafka-addr".into())
        );
        assert_eq!(
            layers.source_of("rack", Via::Flag),
            Source::Env("RINGTAIL_RACK".into())
        );
        assert_eq!(
            layers.source_of("shutdown_drain_ms", Via::Env),
            Source::Env("RINGTAIL_SHUTDOWN_DRAIN_MS".into())
        );
        // A variable named like a file-only key is not read: the file (or default) stands.
        layers.env_keys.insert("idle_poll_us".into());
        assert_eq!(layers.source_of("idle_poll_us", Via::File), file);
        // Without a file nothing is from a file.
        layers.config_file = None;
        assert_eq!(layers.source_of("idle_poll_us", Via::File), Source::Default);
    }

    #[test]
    fn values_and_sources_from_a_file() {
        let (cfg, layers) = resolve_file(
            "kafka_addr = \"127.0.0.1:19092\"\nidle_poll_us = 50\nmove_connections = false\n\
             [kafka]\n\"num.partitions\" = 3\n\"log.retention.hours\" = 2\n",
        );
        let rows = settings(&cfg, &layers);
        let path = layers.config_file.clone().unwrap();
        let file = Source::File(path.clone());
        assert_eq!(find(&rows, "kafka_addr").value, json!("127.0.0.1:19092"));
        assert_eq!(find(&rows, "kafka_addr").source, file);
        // Derived from the listener: a default.
        assert_eq!(
            find(&rows, "advertised_addr").value,
            json!("127.0.0.1:19092")
        );
        assert_eq!(find(&rows, "advertised_addr").source, Source::Default);
        assert_eq!(find(&rows, "idle_poll_us").value, json!(50));
        assert_eq!(find(&rows, "move_connections").value, json!(false));
        assert_eq!(find(&rows, "node_id").source, Source::Default);
        assert_eq!(find(&rows, "controller_addr").value, Value::Null);
        assert_eq!(find(&rows, "kafka.num.partitions").value, json!("3"));
        assert_eq!(find(&rows, "kafka.num.partitions").source, file);
        let hours = find(&rows, "kafka.log.retention.hours");
        assert_eq!((&hours.value, &hours.source), (&json!("2"), &file));
        // Kafka's null default, as DescribeConfigs shows it (the hours decide).
        let retention = find(&rows, "kafka.log.retention.ms");
        assert_eq!(
            (&retention.value, &retention.source),
            (&Value::Null, &Source::Default)
        );
        assert_eq!(
            find(&rows, "kafka.log.segment.bytes").source,
            Source::Default
        );

        let table = render_table(&rows);
        assert!(table.starts_with("KEY"), "{table}");
        assert!(
            table.lines().any(|l| l.starts_with("idle_poll_us")
                && l.contains(" 50 ")
                && l.contains("file ")),
            "{table}"
        );
        let doc = render_json(layers.config_file.as_ref(), None, &rows);
        let first = &doc["settings"][0];
        assert_eq!(first["key"], "kafka_addr");
        assert_eq!(first["source"], "file");
        assert_eq!(
            first["origin"],
            json!(layers.config_file.unwrap().display().to_string())
        );
    }

    #[test]
    fn bad_files_name_the_key() {
        use crate::config::FileConfig;
        for (text, key) in [
            (
                "max_connections_per_shard = \"abc\"\n",
                "max_connections_per_shard",
            ),
            (
                "idle_poll_us = 1\nmove_connections = 3\n",
                "move_connections",
            ),
            ("node_id = \"a\"\n", "node_id"),
            ("kafka = 3\n", "kafka"),
            ("kafka_adr = \"x\"\n", "kafka_adr"),
        ] {
            let err = format!("{:#}", FileConfig::parse(text).unwrap_err());
            assert!(err.starts_with(key), "{text}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
        let err = format!("{:#}", FileConfig::parse("a = = 1").unwrap_err());
        assert!(err.starts_with("line 1"), "{err}");
    }

    #[test]
    fn cpu_lists_fold_ranges() {
        assert_eq!(cpu_list(&[0, 1, 2, 5]), "0-2,5");
        assert_eq!(cpu_list(&[3]), "3");
        assert_eq!(cpu_list(&[0, 2, 3]), "0,2-3");
        assert_eq!(cpu_list(&[]), "");
    }
}
