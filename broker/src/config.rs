//! Broker configuration: embedded defaults, then a TOML file, then environment variables and flags
//! (flags win). Kafka broker settings keep Kafka's dotted names under the `[kafka]` table, e.g.
//!
//! ```toml
//! kafka_addr = "0.0.0.0:9092"
//! data_dir = "/var/lib/ringtail"
//! cores = "0-3"
//! [kafka]
//! "log.retention.hours" = 168
//! "num.partitions" = 3
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::log::topic_config::BrokerDefaults;

/// Default Kafka listener: every interface, Kafka's port.
pub const KAFKA_ADDR_DEFAULT: &str = "0.0.0.0:9092";
/// Default admin HTTP listener (`/health`, `/ready`): loopback only, Redpanda's admin port.
pub const ADMIN_ADDR_DEFAULT: &str = "127.0.0.1:9644";
/// Connections accepted per shard before new ones are closed (the descriptor budget may
/// lower it, see [`crate::cluster::limits::plan`]).
pub const MAX_CONNECTIONS_PER_SHARD_DEFAULT: usize = 10_000;
pub use crate::cluster::limits::MAX_PARTITIONS_PER_SHARD_DEFAULT;
/// Requests of one connection processed at once (pipelining depth honoured).
pub const MAX_IN_FLIGHT_PER_CONNECTION_DEFAULT: usize = 32;
/// Memory for recently produced batches kept to serve tailing consumers, per shard (all of
/// its partitions together; each partition also keeps at most 8 MiB).
pub const BATCH_CACHE_BYTES_PER_SHARD_DEFAULT: usize = storage::log::DEFAULT_SHARD_CACHE_BYTES;
/// How long a shard keeps polling its rings after running out of work before it sleeps
/// (Seastar's `--idle-poll-time-us`, also 200 µs there). Under load a shard then never
/// pays the wake-up latency of a parked thread; an idle shard sleeps after this long.
pub const IDLE_POLL_US_DEFAULT: u64 = 200;
/// How long the metadata controller waits for another shard to acknowledge a new metadata
/// image (open its new partitions, adopt it) before answering the change with a retriable
/// REQUEST_TIMED_OUT. Below the Kafka clients' default `request.timeout.ms` (30 s), so they
/// see that answer rather than their own timeout.
pub const CONTROLLER_ACK_TIMEOUT_MS_DEFAULT: u64 = 25_000;
/// Kafka's `broker.session.timeout.ms`: a broker that has not heartbeated to the active
/// controller for this long is fenced (it leads nothing until it is back).
pub const BROKER_SESSION_TIMEOUT_MS_DEFAULT: u64 = 9_000;
/// Kafka's `broker.heartbeat.interval.ms`.
pub const BROKER_HEARTBEAT_INTERVAL_MS_DEFAULT: u64 = 2_000;
/// How long a metadata change (CreateTopics, ...) may wait for an active controller to commit
/// it before it fails with the retriable REQUEST_TIMED_OUT (below the clients' 30 s).
pub const CONTROLLER_REQUEST_TIMEOUT_MS_DEFAULT: u64 = 20_000;

/// How long a shutdown (SIGTERM/SIGINT) may take before the process exits anyway, with a
/// non-zero status. The systemd unit's `TimeoutStopSec` is this plus a margin.
pub const SHUTDOWN_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// How long a shutdown waits for requests in flight (a produce waiting for its write or
/// fsync, a fetch's long poll) before it closes the partitions under them.
pub const SHUTDOWN_DRAIN_MS_DEFAULT: u64 = 5_000;
/// Partitions one shard closes at once at shutdown (each close seals the active segment,
/// writes its indexes and a checkpoint: several fsyncs).
pub const SHUTDOWN_CLOSE_CONCURRENCY_DEFAULT: usize = 64;
/// Threads per shard for blocking file-system calls (glommio's default is one, which makes
/// every index and checkpoint fsync of a shard wait for the previous one).
pub const BLOCKING_THREADS_PER_SHARD_DEFAULT: usize = 8;

/// Shutdown settings.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownConfig {
    /// `shutdown_timeout_ms`
    pub timeout_ms: u64,
    /// `shutdown_drain_ms`
    pub drain_ms: u64,
    /// `shutdown_close_concurrency`
    pub close_concurrency: usize,
}

/// The same, for one partition.
pub const BATCH_CACHE_BYTES_PER_PARTITION_DEFAULT: usize = storage::log::DEFAULT_READ_CACHE_BYTES;

/// What the TOML file may hold. Every field is optional: absent means "use the default".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub kafka_addr: Option<String>,
    pub advertised_addr: Option<String>,
    pub admin_addr: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub cores: Option<String>,
    pub node_id: Option<i32>,
    /// The controller listener, `HOST:PORT` (cluster traffic: Raft, registration, forwarding).
    pub controller_addr: Option<String>,
    /// The controller quorum's voters, `ID@HOST:PORT,...`.
    pub controller_quorum: Option<String>,
    /// Kafka's `broker.rack`: placement spreads a partition's replicas over racks.
    pub rack: Option<String>,
    pub broker_session_timeout_ms: Option<u64>,
    pub broker_heartbeat_interval_ms: Option<u64>,
    pub controller_request_timeout_ms: Option<u64>,
    pub max_connections_per_shard: Option<usize>,
    pub max_partitions_per_shard: Option<usize>,
    pub max_in_flight_per_connection: Option<usize>,
    pub batch_cache_bytes_per_shard: Option<usize>,
    pub batch_cache_bytes_per_partition: Option<usize>,
    pub read_ahead_bytes_per_shard: Option<usize>,
    pub idle_poll_us: Option<u64>,
    pub move_connections: Option<bool>,
    pub controller_ack_timeout_ms: Option<u64>,
    pub cross_shard_queue_depth: Option<usize>,
    pub max_cross_shard_requests_per_shard: Option<usize>,
    pub max_cross_shard_waits_per_shard: Option<usize>,
    pub metrics_label_sets_max: Option<usize>,
    pub shutdown_timeout_ms: Option<u64>,
    pub shutdown_drain_ms: Option<u64>,
    pub shutdown_close_concurrency: Option<usize>,
    pub blocking_threads_per_shard: Option<usize>,
    /// Kafka broker settings by their Kafka names (`log.retention.hours`, `num.partitions`, ...).
    #[serde(default)]
    pub kafka: BTreeMap<String, toml::Value>,
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        FileConfig::parse(&text).with_context(|| format!("config file {}", path.display()))
    }

    /// Parses a config file's text. An error is one line naming the key at fault, its line
    /// and what is wrong (`max_connections_per_shard (line 3): invalid type: string "x",
    /// expected usize`); an unknown key is named by serde's own message.
    pub fn parse(text: &str) -> anyhow::Result<FileConfig> {
        toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
            // Which key: the first one that fails alone (a syntax error has none).
            let key = toml::from_str::<toml::Table>(text).ok().and_then(|table| {
                table.into_iter().find_map(|(key, value)| {
                    let alone = toml::Table::from_iter([(key.clone(), value)]);
                    toml::Value::Table(alone)
                        .try_into::<FileConfig>()
                        .is_err()
                        .then_some(key)
                })
            });
            let message = e.message().trim();
            match (key, line) {
                (Some(key), Some(line)) => anyhow::anyhow!("{key} (line {line}): {message}"),
                (Some(key), None) => anyhow::anyhow!("{key}: {message}"),
                (None, Some(line)) => anyhow::anyhow!("line {line}: {message}"),
                (None, None) => anyhow::anyhow!("{message}"),
            }
        })
    }
}

/// The resolved configuration a broker runs with.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub kafka_addr: SocketAddr,
    /// host:port put in Metadata responses.
    pub advertised_host: String,
    pub advertised_port: i32,
    pub admin_addr: Option<SocketAddr>,
    pub data_dir: PathBuf,
    /// CPUs to run shards on, one shard per CPU.
    pub shard_cpus: Vec<usize>,
    pub node_id: i32,
    /// See [`FileConfig::controller_addr`].
    pub controller_addr: Option<SocketAddr>,
    /// Voter id -> controller address; empty: this node is a quorum of one.
    pub controller_quorum: BTreeMap<i32, String>,
    pub rack: Option<String>,
    pub broker_session_timeout_ms: u64,
    pub broker_heartbeat_interval_ms: u64,
    pub controller_request_timeout_ms: u64,
    /// Effective once the broker started: [`crate::server::run`] lowers it to the descriptor
    /// budget.
    pub max_connections_per_shard: usize,
    /// Partition replicas a shard may own (`max_partitions_per_shard`, and the descriptor
    /// budget [`crate::server::run`] adds at start-up).
    pub partition_limit: crate::cluster::limits::PartitionLimit,
    pub max_in_flight_per_connection: usize,
    pub batch_cache_bytes_per_shard: usize,
    pub batch_cache_bytes_per_partition: usize,
    pub read_ahead_bytes_per_shard: usize,
    pub idle_poll_us: u64,
    /// Move a client connection to the shard that owns the partitions its requests use, so
    /// they stop costing a cross-shard call each (see `net::affinity`). Default true.
    pub move_connections: bool,
    /// See [`CONTROLLER_ACK_TIMEOUT_MS_DEFAULT`].
    pub controller_ack_timeout_ms: u64,
    /// Sizing of the cross-shard router (see `net::route`):
    /// - `queue_depth` (`cross_shard_queue_depth`): capacity of each shard-pair queue;
    /// - `max_concurrent_served` (`max_cross_shard_requests_per_shard`): requests of other
    ///   shards (produce, read, metadata, groups) one shard serves at once;
    /// - `max_parked_waits` (`max_cross_shard_waits_per_shard`): fetch long-poll waits of
    ///   other shards one shard keeps parked at once; they use no request slot.
    ///
    /// Each is also read from `RINGTAIL_<KEY IN CAPITALS>`, which overrides the file.
    pub cross_shard: net::route::RouteConfig,
    pub kafka: BrokerDefaults,
    /// Label sets one labelled `/metrics` family may render (see `ops::series`).
    pub metrics_label_sets_max: usize,
    /// Shutdown bounds and parallelism (see `server`): [`SHUTDOWN_TIMEOUT_MS_DEFAULT`] etc.
    pub shutdown: ShutdownConfig,
    /// Threads per shard for blocking file-system calls (index, checkpoint and metadata
    /// writes with their fsyncs): [`BLOCKING_THREADS_PER_SHARD_DEFAULT`].
    pub blocking_threads_per_shard: usize,
    /// Test-only fault injection: drop (close the connection instead of answering) every Nth
    /// produce response. Set by `RINGTAIL_TEST_DROP_PRODUCE_RESPONSES`.
    pub test_drop_produce_every: Option<u64>,
    /// Test-only fault injection: a produce to this topic makes a background task of the
    /// owning shard panic (as a storage bug would). Set by `RINGTAIL_TEST_PANIC_TOPIC`.
    pub test_panic_topic: Option<String>,
    /// Test-only: shards wait this long after a shutdown signal before they close their
    /// partitions (so a test can send a second signal during the shutdown). Set by
    /// `RINGTAIL_TEST_SHUTDOWN_STALL_MS`.
    pub test_shutdown_stall_ms: Option<u64>,
}

/// Command-line / environment overrides, already parsed by clap.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub kafka_addr: Option<String>,
    pub advertised_addr: Option<String>,
    pub admin_addr: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub cores: Option<String>,
    pub node_id: Option<i32>,
    pub controller_addr: Option<String>,
    pub controller_quorum: Option<String>,
    pub rack: Option<String>,
    pub config_file: Option<PathBuf>,
}

impl BrokerConfig {
    pub fn resolve(over: &Overrides) -> anyhow::Result<BrokerConfig> {
        let file = match &over.config_file {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let kafka_addr_text = over
            .kafka_addr
            .clone()
            .or(file.kafka_addr.clone())
            .unwrap_or_else(|| KAFKA_ADDR_DEFAULT.to_string());
        let kafka_addr: SocketAddr = kafka_addr_text.parse().with_context(|| {
            format!("kafka_addr (--kafka-addr) {kafka_addr_text:?} is not HOST:PORT")
        })?;
        let (advertised_host, advertised_port) = match over
            .advertised_addr
            .clone()
            .or(file.advertised_addr.clone())
        {
            Some(text) => parse_host_port(&text).context("advertised_addr (--advertised-addr)")?,
            None => (
                default_advertised_host(&kafka_addr),
                i32::from(kafka_addr.port()),
            ),
        };
        let admin_addr =
            match over
                .admin_addr
                .clone()
                .or(file.admin_addr.clone())
                .unwrap_or_else(|| ADMIN_ADDR_DEFAULT.to_string())
                .as_str()
            {
                "" | "off" | "none" => None,
                text => Some(text.parse().with_context(|| {
                    format!("admin_addr (--admin-addr) {text:?} is not HOST:PORT")
                })?),
            };
        let data_dir = over
            .data_dir
            .clone()
            .or(file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("./data"));
        // Absolute from here on: glommio opens directories given relative paths wrongly
        // (EBADF persisting metadata under the default "./data").
        let data_dir = if data_dir.is_relative() {
            std::env::current_dir()
                .context("reading the working directory for a relative data dir")?
                .join(data_dir)
        } else {
            data_dir
        };
        let online = tuning::online_cpus();
        let shard_cpus = match over.cores.clone().or(file.cores.clone()) {
            Some(list) => {
                let cpus = tuning::parse_cpu_list(&list)
                    .map_err(|e| anyhow::anyhow!("cores (--cores) {list:?}: {e}"))?;
                for cpu in &cpus {
                    if !online.contains(cpu) {
                        bail!(
                            "cores (--cores) {list:?}: CPU {cpu} is not online here (online: {online:?})"
                        );
                    }
                }
                cpus
            }
            None => online,
        };
        if shard_cpus.is_empty() {
            bail!("no CPU to run a shard on");
        }
        let mut pairs = Vec::new();
        for (name, value) in &file.kafka {
            let text = match value {
                toml::Value::String(s) => s.clone(),
                // Kafka lists are comma-separated strings.
                toml::Value::Array(items) => items
                    .iter()
                    .map(|v| match v {
                        toml::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            pairs.push((name.clone(), text));
        }
        let kafka = BrokerDefaults::from_pairs(pairs)
            .map_err(|e| anyhow::anyhow!("[kafka] table of the config file: {e}"))?;
        let test_drop_produce_every = match std::env::var("RINGTAIL_TEST_DROP_PRODUCE_RESPONSES") {
            Ok(v) if !v.is_empty() => {
                let n: u64 = v
                    .parse()
                    .context("RINGTAIL_TEST_DROP_PRODUCE_RESPONSES must be a number")?;
                (n > 0).then_some(n)
            }
            _ => None,
        };
        let max_connections_per_shard = env_setting::<usize>("max_connections_per_shard")?
            .or(file.max_connections_per_shard)
            .unwrap_or(MAX_CONNECTIONS_PER_SHARD_DEFAULT);
        if max_connections_per_shard == 0 {
            bail!("max_connections_per_shard must be at least 1");
        }
        let max_partitions_per_shard = env_setting::<usize>("max_partitions_per_shard")?
            .or(file.max_partitions_per_shard)
            .unwrap_or(MAX_PARTITIONS_PER_SHARD_DEFAULT);
        let ceiling = crate::cluster::limits::MAX_PARTITIONS_PER_SHARD_CEILING;
        if !(1..=ceiling).contains(&max_partitions_per_shard) {
            bail!("max_partitions_per_shard must be between 1 and {ceiling}, got {max_partitions_per_shard}");
        }
        let shard_count = shard_cpus.len();
        let test_panic_topic = std::env::var("RINGTAIL_TEST_PANIC_TOPIC")
            .ok()
            .filter(|t| !t.is_empty());
        let cross_shard = net::route::RouteConfig {
            queue_depth: at_least_one(
                "cross_shard_queue_depth",
                env_setting("cross_shard_queue_depth")?
                    .or(file.cross_shard_queue_depth)
                    .unwrap_or(net::route::QUEUE_DEPTH_DEFAULT),
            )?,
            max_concurrent_served: at_least_one(
                "max_cross_shard_requests_per_shard",
                env_setting("max_cross_shard_requests_per_shard")?
                    .or(file.max_cross_shard_requests_per_shard)
                    .unwrap_or(net::route::MAX_CONCURRENT_SERVED_DEFAULT),
            )?,
            // 0 is allowed: fetches then never park on other shards (they answer at their
            // deadline unless their own shard's partitions get data).
            max_parked_waits: env_setting("max_cross_shard_waits_per_shard")?
                .or(file.max_cross_shard_waits_per_shard)
                .unwrap_or(net::route::MAX_PARKED_WAITS_DEFAULT),
        };
        let controller_addr = over
            .controller_addr
            .clone()
            .or(file.controller_addr.clone())
            .map(|text| {
                text.parse::<SocketAddr>().with_context(|| {
                    format!("controller_addr (--controller-addr) {text:?} is not IP:PORT")
                })
            })
            .transpose()?;
        let controller_quorum = match over
            .controller_quorum
            .clone()
            .or(file.controller_quorum.clone())
        {
            Some(text) => parse_quorum(&text).context("controller_quorum (--controller-quorum)")?,
            None => BTreeMap::new(),
        };
        let session_ms = env_setting("broker_session_timeout_ms")?
            .or(file.broker_session_timeout_ms)
            .unwrap_or(BROKER_SESSION_TIMEOUT_MS_DEFAULT)
            .max(100);
        let heartbeat_ms = env_setting("broker_heartbeat_interval_ms")?
            .or(file.broker_heartbeat_interval_ms)
            .unwrap_or(BROKER_HEARTBEAT_INTERVAL_MS_DEFAULT)
            .max(10);
        if heartbeat_ms >= session_ms {
            bail!("broker_heartbeat_interval_ms ({heartbeat_ms}) must be below broker_session_timeout_ms ({session_ms})");
        }
        let shutdown = ShutdownConfig {
            timeout_ms: at_least_one(
                "shutdown_timeout_ms",
                env_setting("shutdown_timeout_ms")?
                    .or(file.shutdown_timeout_ms)
                    .unwrap_or(SHUTDOWN_TIMEOUT_MS_DEFAULT) as usize,
            )? as u64,
            drain_ms: env_setting("shutdown_drain_ms")?
                .or(file.shutdown_drain_ms)
                .unwrap_or(SHUTDOWN_DRAIN_MS_DEFAULT),
            close_concurrency: at_least_one(
                "shutdown_close_concurrency",
                file.shutdown_close_concurrency
                    .unwrap_or(SHUTDOWN_CLOSE_CONCURRENCY_DEFAULT),
            )?,
        };
        Ok(BrokerConfig {
            controller_addr,
            controller_quorum,
            rack: over
                .rack
                .clone()
                .or(file.rack.clone())
                .filter(|r| !r.is_empty()),
            broker_session_timeout_ms: session_ms,
            broker_heartbeat_interval_ms: heartbeat_ms,
            controller_request_timeout_ms: env_setting("controller_request_timeout_ms")?
                .or(file.controller_request_timeout_ms)
                .unwrap_or(CONTROLLER_REQUEST_TIMEOUT_MS_DEFAULT)
                .max(100),
            kafka_addr,
            advertised_host,
            advertised_port,
            admin_addr,
            data_dir,
            shard_cpus,
            node_id: over.node_id.or(file.node_id).unwrap_or(0),
            max_connections_per_shard,
            partition_limit: crate::cluster::limits::PartitionLimit::new(
                max_partitions_per_shard,
                shard_count,
            ),
            max_in_flight_per_connection: file
                .max_in_flight_per_connection
                .unwrap_or(MAX_IN_FLIGHT_PER_CONNECTION_DEFAULT)
                .max(1),
            batch_cache_bytes_per_shard: file
                .batch_cache_bytes_per_shard
                .unwrap_or(BATCH_CACHE_BYTES_PER_SHARD_DEFAULT),
            batch_cache_bytes_per_partition: file
                .batch_cache_bytes_per_partition
                .unwrap_or(BATCH_CACHE_BYTES_PER_PARTITION_DEFAULT),
            read_ahead_bytes_per_shard: file
                .read_ahead_bytes_per_shard
                .unwrap_or(storage::DEFAULT_SHARD_READ_AHEAD_BYTES),
            idle_poll_us: file.idle_poll_us.unwrap_or(IDLE_POLL_US_DEFAULT),
            move_connections: file.move_connections.unwrap_or(true),
            controller_ack_timeout_ms: file
                .controller_ack_timeout_ms
                .unwrap_or(CONTROLLER_ACK_TIMEOUT_MS_DEFAULT)
                .max(1),
            cross_shard,
            kafka,
            metrics_label_sets_max: file
                .metrics_label_sets_max
                .unwrap_or(crate::ops::series::METRICS_LABEL_SETS_MAX_DEFAULT),
            shutdown,
            blocking_threads_per_shard: at_least_one(
                "blocking_threads_per_shard",
                file.blocking_threads_per_shard
                    .unwrap_or(BLOCKING_THREADS_PER_SHARD_DEFAULT),
            )?,
            test_drop_produce_every,
            test_panic_topic,
            test_shutdown_stall_ms: env_setting("test_shutdown_stall_ms")?,
        })
    }

    pub fn shards(&self) -> usize {
        self.shard_cpus.len()
    }
}

/// A Ringtail setting from the environment: `key` in capitals after `RINGTAIL_`
/// (`cross_shard_queue_depth` -> `RINGTAIL_CROSS_SHARD_QUEUE_DEPTH`). Unset or empty is `None`.
fn env_setting<T: std::str::FromStr>(key: &str) -> anyhow::Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    let var = format!("RINGTAIL_{}", key.to_ascii_uppercase());
    match std::env::var(&var) {
        Ok(text) if !text.trim().is_empty() => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{var}={text:?}: {e}")),
        _ => Ok(None),
    }
}

/// `--controller-quorum`: `ID@HOST:PORT` entries separated by commas.
pub fn parse_quorum(text: &str) -> anyhow::Result<BTreeMap<i32, String>> {
    let mut voters = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, addr) = entry
            .split_once('@')
            .with_context(|| format!("controller quorum entry {entry:?} is not ID@HOST:PORT"))?;
        let id: i32 = id
            .parse()
            .with_context(|| format!("controller quorum entry {entry:?}: bad node id"))?;
        if id < 0 {
            bail!("controller quorum entry {entry:?}: node ids are not negative");
        }
        addr.parse::<SocketAddr>().with_context(|| {
            format!("controller quorum entry {entry:?}: {addr:?} is not IP:PORT")
        })?;
        if voters.insert(id, addr.to_string()).is_some() {
            bail!("controller quorum names node {id} twice");
        }
    }
    if voters.is_empty() {
        bail!("the controller quorum {text:?} names no voter");
    }
    Ok(voters)
}

fn at_least_one(key: &str, value: usize) -> anyhow::Result<usize> {
    if value == 0 {
        bail!("{key} must be at least 1");
    }
    Ok(value)
}

fn parse_host_port(text: &str) -> anyhow::Result<(String, i32)> {
    let (host, port) = text
        .rsplit_once(':')
        .with_context(|| format!("{text:?} is not HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("{text:?}: bad port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("{text:?}: empty host");
    }
    Ok((host.to_string(), i32::from(port)))
}

/// A wildcard bind address cannot be advertised: use the host name, as Kafka does.
fn default_advertised_host(addr: &SocketAddr) -> String {
    if !addr.ip().is_unspecified() {
        return addr.ip().to_string();
    }
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
#[path = "config_template_tests.rs"]
mod template_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_parsing() {
        assert_eq!(parse_host_port("a.b:9092").unwrap(), ("a.b".into(), 9092));
        assert_eq!(parse_host_port("[::1]:1").unwrap(), ("::1".into(), 1));
        assert!(parse_host_port("nohost").is_err());
        assert!(parse_host_port(":9092").is_err());
        assert!(parse_host_port("h:99999").is_err());
    }

    #[test]
    fn file_config_rejects_unknown_keys() {
        let err = toml::from_str::<FileConfig>("kafka_adr = \"x\"").unwrap_err();
        assert!(err.to_string().contains("kafka_adr"));
        let ok: FileConfig =
            toml::from_str("cores = \"0-1\"\n[kafka]\n\"num.partitions\" = 3\n").unwrap();
        assert_eq!(ok.cores.as_deref(), Some("0-1"));
        assert_eq!(ok.kafka.len(), 1);
    }

    #[test]
    fn cross_shard_limits_from_the_file() {
        let file: FileConfig = toml::from_str(
            "cross_shard_queue_depth = 16\nmax_cross_shard_requests_per_shard = 2\n\
             max_cross_shard_waits_per_shard = 0\n",
        )
        .unwrap();
        assert_eq!(file.cross_shard_queue_depth, Some(16));
        assert_eq!(file.max_cross_shard_requests_per_shard, Some(2));
        assert_eq!(file.max_cross_shard_waits_per_shard, Some(0));
        assert!(at_least_one("x", 0).is_err());
        assert_eq!(at_least_one("x", 3).unwrap(), 3);
    }

    #[test]
    fn settings_from_the_environment() {
        // A key nothing else reads, so parallel tests do not see it.
        let key = "test_only_env_setting";
        std::env::set_var("RINGTAIL_TEST_ONLY_ENV_SETTING", " 7 ");
        assert_eq!(env_setting::<usize>(key).unwrap(), Some(7));
        std::env::set_var("RINGTAIL_TEST_ONLY_ENV_SETTING", "seven");
        let err = env_setting::<usize>(key).unwrap_err().to_string();
        assert!(err.contains("RINGTAIL_TEST_ONLY_ENV_SETTING"), "{err}");
        std::env::set_var("RINGTAIL_TEST_ONLY_ENV_SETTING", "");
        assert_eq!(env_setting::<usize>(key).unwrap(), None);
        std::env::remove_var("RINGTAIL_TEST_ONLY_ENV_SETTING");
        assert_eq!(env_setting::<usize>(key).unwrap(), None);
    }

    #[test]
    fn limit_keys_parse() {
        let f: FileConfig =
            toml::from_str("max_partitions_per_shard = 10\nmax_connections_per_shard = 3\n")
                .unwrap();
        assert_eq!(f.max_partitions_per_shard, Some(10));
        assert_eq!(f.max_connections_per_shard, Some(3));
        assert!(toml::from_str::<FileConfig>("max_partitions_per_shard = -1").is_err());
    }
}
