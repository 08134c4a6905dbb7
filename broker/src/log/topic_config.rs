//! Topic and broker configuration with Apache Kafka's names, types, defaults, validation and
//! DescribeConfigs semantics. No I/O: the admin handlers (CreateTopics, AlterConfigs,
//! IncrementalAlterConfigs, DescribeConfigs) and storage call into this module.
//!
//! # Which Kafka
//! The reference is Apache Kafka 4.x (`LogConfig`, `TopicConfig`, `ServerLogConfigs`,
//! `ServerTopicConfigSynonyms`, `ConfigHelper`, `ConfigurationControlManager`). Differences from
//! Kafka 3.x that clients can observe, kept on purpose:
//! - `segment.bytes` / `log.segment.bytes` must be at least 1 MiB (KIP-1030; 3.x allowed 14).
//!   Tests that need tiny segments use Kafka's internal topic config `internal.segment.bytes`
//!   (accepted, never described), exactly as Kafka's own tests do.
//! - `message.timestamp.after.max.ms` defaults to one hour (KIP-1030).
//! - `message.format.version` was removed in 4.0 and is an unknown config here too.
//! - `message.timestamp.difference.max.ms` (removed in 4.0) is still accepted for old tools, with
//!   the 3.6–3.9 meaning: it applies to the before/after bounds that are not set explicitly.
//! - `message.downconversion.enable` is accepted and ignored, as in Kafka 4.x.
//!
//! # Model
//! A [`TopicConfig`] stores only the overrides a client set explicitly (what Kafka keeps in its
//! metadata log). The effective value of a config is the override, else the broker-level default
//! from [`BrokerDefaults`] (the server.properties synonym, e.g. `log.retention.hours`), else the
//! topic config's own default. [`TopicSettings`] is the fully resolved, typed view that the data
//! path should hold (resolve once per metadata change, never per request).
//!
//! Unsupported-but-accepted configs: Kafka clients and tools (Terraform providers, Strimzi,
//! kafka-configs) set configs Ringtail does not act on yet. Rejecting them would break those tools,
//! so every Kafka topic config is accepted, validated with Kafka's rules, stored and described;
//! [`ConfigDef::supported`] says whether Ringtail gives it its Kafka meaning today.
//!
//! # Wiring
//! - Start-up: [`BrokerDefaults::from_pairs`] (or `from_json_values` for a TOML table converted
//!   with serde) on the file's Kafka-named settings.
//! - CreateTopics: [`TopicConfig::for_create`]; legacy AlterConfigs (full replacement):
//!   [`TopicConfig::validate_and_build`]; IncrementalAlterConfigs: [`TopicConfig::incremental`].
//!   Errors carry Kafka's message (`Display`); `crate::errors` maps them to Kafka's code.
//! - Dynamic broker configs (AlterConfigs / IncrementalAlterConfigs on the BROKER resource ""
//!   or this broker's id): [`apply_dynamic_ops`], then [`BrokerDefaults::with_dynamic`]; only
//!   [`is_dynamic_broker_config`] names are accepted. The controller persists them with the
//!   metadata and re-resolves every topic against the result.
//! - DescribeConfigs: [`TopicConfig::describe`] / [`BrokerDefaults::describe`] (broker id) /
//!   [`BrokerDefaults::describe_cluster_default`] (resource "").
//! - Data path: [`TopicConfig::settings`] and [`TopicSettings::log_config`], once per change.
//! - Persistence: `TopicConfig` is serde-(de)serialisable as a `{name: value}` map.

use std::collections::BTreeMap;
use std::fmt;

// ---------------------------------------------------------------------------------------------
// Kafka's enums with their wire codes
// ---------------------------------------------------------------------------------------------

/// Kafka's `ConfigDef.Type`, with the DescribeConfigs `config_type` codes (KIP-569).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigType {
    Boolean,
    String,
    Int,
    Short,
    Long,
    Double,
    List,
    Class,
    Password,
}

impl ConfigType {
    /// DescribeConfigsResponse `config_type` (KIP-569): 0 is UNKNOWN and never produced here.
    pub fn code(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Short => 4,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
            ConfigType::Class => 8,
            ConfigType::Password => 9,
        }
    }

    /// Kafka's upper-case type name, as used in its error messages ("Not a number of type LONG").
    pub fn kafka_name(self) -> &'static str {
        match self {
            ConfigType::Boolean => "BOOLEAN",
            ConfigType::String => "STRING",
            ConfigType::Int => "INT",
            ConfigType::Short => "SHORT",
            ConfigType::Long => "LONG",
            ConfigType::Double => "DOUBLE",
            ConfigType::List => "LIST",
            ConfigType::Class => "CLASS",
            ConfigType::Password => "PASSWORD",
        }
    }

    /// Kafka masks PASSWORD values in DescribeConfigs (`KafkaConfig.maybeSensitive`).
    pub fn is_sensitive(self) -> bool {
        self == ConfigType::Password
    }
}

/// Kafka's `DescribeConfigsResponse.ConfigSource`, with its wire codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigSource {
    /// DYNAMIC_TOPIC_CONFIG (1): an override set on the topic.
    TopicConfig,
    /// DYNAMIC_BROKER_CONFIG (2): set at run time for this broker (AlterConfigs on its id).
    DynamicBrokerConfig,
    /// DYNAMIC_DEFAULT_BROKER_CONFIG (3): set at run time as the cluster-wide default
    /// (AlterConfigs on the broker resource "").
    DynamicDefaultBrokerConfig,
    /// STATIC_BROKER_CONFIG (4): set in the broker's config file.
    StaticBrokerConfig,
    /// DEFAULT_CONFIG (5): Kafka's built-in default.
    DefaultConfig,
}

impl ConfigSource {
    pub fn code(self) -> i8 {
        match self {
            ConfigSource::TopicConfig => 1,
            ConfigSource::DynamicBrokerConfig => 2,
            ConfigSource::DynamicDefaultBrokerConfig => 3,
            ConfigSource::StaticBrokerConfig => 4,
            ConfigSource::DefaultConfig => 5,
        }
    }
}

/// IncrementalAlterConfigs `config_operation` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum AlterOp {
    Set,
    Delete,
    Append,
    Subtract,
}

impl AlterOp {
    pub fn code(self) -> i8 {
        match self {
            AlterOp::Set => 0,
            AlterOp::Delete => 1,
            AlterOp::Append => 2,
            AlterOp::Subtract => 3,
        }
    }

    /// `None` for an unknown code; Kafka answers that with INVALID_REQUEST.
    pub fn from_code(code: i8) -> Option<AlterOp> {
        match code {
            0 => Some(AlterOp::Set),
            1 => Some(AlterOp::Delete),
            2 => Some(AlterOp::Append),
            3 => Some(AlterOp::Subtract),
            _ => None,
        }
    }

    /// Kafka's `OpType` name, used verbatim in its error messages.
    pub fn kafka_name(self) -> &'static str {
        match self {
            AlterOp::Set => "SET",
            AlterOp::Delete => "DELETE",
            AlterOp::Append => "APPEND",
            AlterOp::Subtract => "SUBTRACT",
        }
    }
}

/// `compression.type` values (Kafka's `BrokerCompressionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompressionType {
    /// Keep whatever codec the producer used.
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionType {
    pub fn name(self) -> &'static str {
        match self {
            CompressionType::Producer => "producer",
            CompressionType::Uncompressed => "uncompressed",
            CompressionType::Gzip => "gzip",
            CompressionType::Snappy => "snappy",
            CompressionType::Lz4 => "lz4",
            CompressionType::Zstd => "zstd",
        }
    }

    fn from_name(name: &str) -> Option<CompressionType> {
        match name {
            "producer" => Some(CompressionType::Producer),
            "uncompressed" => Some(CompressionType::Uncompressed),
            "gzip" => Some(CompressionType::Gzip),
            "snappy" => Some(CompressionType::Snappy),
            "lz4" => Some(CompressionType::Lz4),
            "zstd" => Some(CompressionType::Zstd),
            _ => None,
        }
    }

    /// RecordBatch attributes codec bits (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd); `None` for
    /// `producer`, which keeps the batch's own codec.
    pub fn batch_codec(self) -> Option<u8> {
        match self {
            CompressionType::Producer => None,
            CompressionType::Uncompressed => Some(0),
            CompressionType::Gzip => Some(1),
            CompressionType::Snappy => Some(2),
            CompressionType::Lz4 => Some(3),
            CompressionType::Zstd => Some(4),
        }
    }
}

/// `message.timestamp.type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// A rejected configuration. `Display` gives the message Kafka puts in the response's
/// `error_message` for the same mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A topic config name Kafka does not know.
    #[error("Unknown topic config name: {0}")]
    Unknown(String),
    /// A key in the broker's Kafka-config table that this module does not know (Kafka only warns;
    /// Ringtail refuses so that a typo in a durability setting cannot go unnoticed).
    #[error("Unknown broker config name: {0}")]
    UnknownBroker(String),
    /// A value that does not parse or is out of range; Kafka's `ConfigException` wording.
    #[error("Invalid value {value} for configuration {name}: {reason}")]
    InvalidValue {
        name: String,
        value: String,
        reason: String,
    },
    /// A rejected combination or operation, message verbatim.
    #[error("{0}")]
    Invalid(String),
    /// A malformed request, e.g. the same key twice in one incremental alter (Kafka answers
    /// INVALID_REQUEST; the other variants are INVALID_CONFIG).
    #[error("{0}")]
    InvalidRequest(String),
}

impl ConfigError {
    fn invalid_value(name: &str, value: impl fmt::Display, reason: impl Into<String>) -> Self {
        ConfigError::InvalidValue {
            name: name.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Definitions
// ---------------------------------------------------------------------------------------------

/// Kafka's validators, as used by the configs below.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Validator {
    None,
    /// `Range.atLeast(min)` (for INT/SHORT/LONG).
    AtLeast(i64),
    /// `Range.between(min, max)` (integers).
    Between(i64, i64),
    /// `Range.between(min, max)` applied to a DOUBLE; bounds print as integers, as in Kafka.
    DoubleBetween(i64, i64),
    /// `ValidString.in(...)`, case-sensitive.
    OneOf(&'static [&'static str]),
    /// `ValidList.in(...)`: every element must be one of these (an empty list is allowed).
    ListOf(&'static [&'static str]),
    /// gzip level: 1..=9 or -1 (Deflater's default).
    GzipLevel,
    /// `ThrottledReplicaListValidator`: "*" or `partition:broker` pairs.
    ThrottledReplicas,
    /// A BOOLEAN that Ringtail can only honour as `false` (e.g. tiered storage).
    OnlyFalse(&'static str),
}

/// One topic-level config: Kafka's definition plus whether Ringtail acts on it.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    pub name: &'static str,
    pub ty: ConfigType,
    /// Kafka's default, in Kafka's canonical string form.
    pub default: &'static str,
    /// Kafka's documentation text (returned by DescribeConfigs v3+ when asked).
    pub doc: &'static str,
    /// Broker configs that supply this config's default, in precedence order
    /// (`retention.ms` <- `log.retention.ms`, `log.retention.minutes`, `log.retention.hours`).
    pub broker_synonyms: &'static [&'static str],
    pub validator: Validator,
    /// True when Ringtail gives the config its Kafka meaning. False: accepted, validated, stored
    /// and described like Kafka, but without effect yet (see the module docs for why).
    pub supported: bool,
    /// Deprecated or removed in current Kafka; accepted for older tools.
    pub deprecated: bool,
}

impl ConfigDef {
    /// Kafka's "Server Default Property" (the first broker synonym).
    pub fn broker_synonym(&self) -> Option<&'static str> {
        self.broker_synonyms.first().copied()
    }
}

/// One broker-level (server.properties) config this module understands.
#[derive(Debug, Clone, Copy)]
pub struct BrokerConfigDef {
    pub name: &'static str,
    pub ty: ConfigType,
    /// `None` where Kafka's default is null (e.g. `log.retention.ms`: fall back to a synonym).
    pub default: Option<&'static str>,
    pub doc: &'static str,
    pub validator: Validator,
}

const LONG_MAX: &str = "9223372036854775807";
const INT_MAX: &str = "2147483647";
const CLEANUP_POLICIES: &[&str] = &["compact", "delete"];
// Kafka's BrokerCompressionType.names() order; it shows up in the error message.
const COMPRESSION_TYPES: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];
const TIMESTAMP_TYPES: &[&str] = &["CreateTime", "LogAppendTime"];
/// LegacyRecord.RECORD_OVERHEAD_V0: the pre-4.0 minimum segment size, kept for the internal knob.
const SEGMENT_BYTES_MIN_INTERNAL: i64 = 14;
const SEGMENT_BYTES_MIN: i64 = 1024 * 1024;
const TIERED_STORAGE_OFF: &str = "Tiered Storage functionality is disabled in the broker. \
     Topic cannot be configured with remote log storage.";

const DOC_SEGMENT_BYTES: &str = "This configuration controls the segment file size for the log. \
Retention and cleaning is always done a file at a time so a larger segment size means fewer files \
but less granular control over retention.";
const DOC_SEGMENT_MS: &str = "This configuration controls the period of time after which Kafka \
will force the log to roll even if the segment file isn't full to ensure that retention can delete \
or compact old data.";
const DOC_SEGMENT_JITTER_MS: &str = "The maximum random jitter subtracted from the scheduled \
segment roll time to avoid thundering herds of segment rolling";
const DOC_SEGMENT_INDEX_BYTES: &str = "This configuration controls the size of the index that \
maps offsets to file positions. We preallocate this index file and shrink it only after log rolls. \
You generally should not need to change this setting.";
const DOC_FLUSH_MESSAGES: &str = "This setting allows specifying an interval at which we will \
force an fsync of data written to the log. For example if this was set to 1 we would fsync after \
every message; if it were 5 we would fsync after every five messages. In general we recommend you \
not set this and use replication for durability and allow the operating system's background flush \
capabilities as it is more efficient. This setting can be overridden on a per-topic basis (see \
<a href=\"#topicconfigs\">the per-topic configuration section</a>).";
const DOC_FLUSH_MS: &str = "This setting allows specifying a time interval at which we will force \
an fsync of data written to the log. For example if this was set to 1000 we would fsync after 1000 \
ms had passed. In general we recommend you not set this and use replication for durability and \
allow the operating system's background flush capabilities as it is more efficient.";
const DOC_RETENTION_BYTES: &str = "This configuration controls the maximum size a partition \
(which consists of log segments) can grow to before we will discard old log segments to free up \
space if we are using the \"delete\" retention policy. By default there is no size limit only a \
time limit. Since this limit is enforced at the partition level, multiply it by the number of \
partitions to compute the topic retention in bytes. Additionally, retention.bytes configuration \
operates independently of \"segment.ms\" and \"segment.bytes\" configurations. Moreover, it \
triggers the rolling of new segment if the retention.bytes is configured to zero.";
const DOC_RETENTION_MS: &str = "This configuration controls the maximum time we will retain a log \
before we will discard old log segments to free up space if we are using the \"delete\" retention \
policy. This represents an SLA on how soon consumers must read their data. If set to -1, no time \
limit is applied. Additionally, retention.ms configuration operates independently of \
\"segment.ms\" and \"segment.bytes\" configurations. Moreover, it triggers the rolling of new \
segment if the retention.ms condition is satisfied.";
const DOC_REMOTE_STORAGE_ENABLE: &str = "To enable tiered storage for a topic, set this \
configuration as true. You can not disable this config once it is enabled. It will be provided in \
future versions.";
const DOC_LOCAL_RETENTION_MS: &str = "The number of milliseconds to keep the local log segment \
before it gets deleted. Default value is -2, it represents `retention.ms` value is to be used. The \
effective value should always be less than or equal to `retention.ms` value.";
const DOC_LOCAL_RETENTION_BYTES: &str = "The maximum size of local log segments that can grow for \
a partition before it deletes the old segments. Default value is -2, it represents \
`retention.bytes` value to be used. The effective value should always be less than or equal to \
`retention.bytes` value.";
const DOC_REMOTE_LOG_COPY_DISABLE: &str = "Determines whether tiered data for a topic should \
become read only, and no more data uploading on a topic. Once this config is set to true, the \
local retention configuration (i.e. local.retention.ms/bytes) becomes irrelevant, and all data \
expiration follows the topic-wide retention configuration(i.e. retention.ms/bytes).";
const DOC_REMOTE_LOG_DELETE_ON_DISABLE: &str = "Determines whether tiered data for a topic should \
be deleted after tiered storage is disabled on a topic. This configuration should be enabled when \
trying to set `remote.storage.enable` from true to false";
const DOC_MAX_MESSAGE_BYTES: &str = "The largest record batch size allowed by Kafka (after \
compression if compression is enabled). If this is increased and there are consumers older than \
0.10.2, the consumers' fetch size must also be increased so that they can fetch record batches \
this large. In the latest message format version, records are always grouped into batches for \
efficiency. In previous message format versions, uncompressed records are not grouped into \
batches and this limit only applies to a single record in that case.";
const DOC_INDEX_INTERVAL_BYTES: &str = "This setting controls how frequently Kafka adds an index \
entry to its offset index. The default setting ensures that we index a message roughly every 4096 \
bytes. More indexing allows reads to jump closer to the exact position in the log but makes the \
index larger. You probably don't need to change this.";
const DOC_FILE_DELETE_DELAY_MS: &str = "The time to wait before deleting a file from the \
filesystem";
const DOC_DELETE_RETENTION_MS: &str = "The amount of time to retain delete tombstone markers for \
<a href=\"#compaction\">log compacted</a> topics. This setting also gives a bound on the time in \
which a consumer must complete a read if they begin from offset 0 to ensure that they get a valid \
snapshot of the final stage (otherwise delete tombstones may be collected before they complete \
their scan).";
const DOC_MIN_COMPACTION_LAG_MS: &str = "The minimum time a message will remain uncompacted in \
the log. Only applicable for logs that are being compacted.";
const DOC_MAX_COMPACTION_LAG_MS: &str = "The maximum time a message will remain ineligible for \
compaction in the log. Only applicable for logs that are being compacted.";
const DOC_MIN_CLEANABLE_DIRTY_RATIO: &str = "This configuration controls how frequently the log \
compactor will attempt to clean the log (assuming <a href=\"#compaction\">log compaction</a> is \
enabled). By default we will avoid cleaning a log where more than 50% of the log has been \
compacted. This ratio bounds the maximum space wasted in the log by duplicates (at 50% at most 50% \
of the log could be duplicates). A higher ratio will mean fewer, more efficient cleanings but will \
mean more wasted space in the log. If the max.compaction.lag.ms or the min.compaction.lag.ms \
configurations are also specified, then the log compactor considers the log to be eligible for \
compaction as soon as either: (i) the dirty ratio threshold has been met and the log has had dirty \
(uncompacted) records for at least the min.compaction.lag.ms duration, or (ii) if the log has had \
dirty (uncompacted) records for at most the max.compaction.lag.ms period.";
const DOC_CLEANUP_POLICY: &str = "This config designates the retention policy to use on log \
segments. The \"delete\" policy (which is the default) will discard old segments when their \
retention time or size limit has been reached. The \"compact\" policy will enable <a \
href=\"#compaction\">log compaction</a>, which retains the latest value for each key. It is also \
possible to specify both policies in a comma-separated list (e.g. \"delete,compact\"). In this \
case, old segments will be discarded per the retention time and size configuration, while \
retained segments will be compacted.";
const DOC_UNCLEAN_LEADER_ELECTION_ENABLE: &str = "Indicates whether to enable replicas not in the \
ISR set to be elected as leader as a last resort, even though doing so may result in data loss.\
<p>Note: In KRaft mode, when enabling this config dynamically, it needs to wait for the unclean \
leader electionthread to trigger election periodically (default is 5 minutes). Please run \
`kafka-leader-election.sh` with `unclean` option to trigger the unclean leader election \
immediately if needed.</p>";
const DOC_MIN_INSYNC_REPLICAS: &str = "When a producer sets acks to \"all\" (or \"-1\"), this \
configuration specifies the minimum number of replicas that must acknowledge a write for the write \
to be considered successful. If this minimum cannot be met, then the producer will raise an \
exception (either NotEnoughReplicas or NotEnoughReplicasAfterAppend).<br>When used together, \
<code>min.insync.replicas</code> and <code>acks</code> allow you to enforce greater durability \
guarantees. A typical scenario would be to create a topic with a replication factor of 3, set \
<code>min.insync.replicas</code> to 2, and produce with <code>acks</code> of \"all\". This will \
ensure that the producer raises an exception if a majority of replicas do not receive a write.";
const DOC_COMPRESSION_TYPE: &str = "Specify the final compression type for a given topic. This \
configuration accepts the standard compression codecs ('gzip', 'snappy', 'lz4', 'zstd'). It \
additionally accepts 'uncompressed' which is equivalent to no compression; and 'producer' which \
means retain the original compression codec set by the producer.";
const DOC_GZIP_LEVEL: &str =
    "The compression level to use if compression.type is set to <code>gzip</code>.";
const DOC_LZ4_LEVEL: &str =
    "The compression level to use if compression.type is set to <code>lz4</code>.";
const DOC_ZSTD_LEVEL: &str =
    "The compression level to use if compression.type is set to <code>zstd</code>.";
const DOC_PREALLOCATE: &str =
    "True if we should preallocate the file on disk when creating a new log segment.";
const DOC_TIMESTAMP_TYPE: &str = "Define whether the timestamp in the message is message create \
time or log append time. The value should be either `CreateTime` or `LogAppendTime`";
const DOC_TIMESTAMP_DIFFERENCE: &str = "[DEPRECATED] The maximum difference allowed between the \
timestamp when a broker receives a message and the timestamp specified in the message. If \
message.timestamp.type=CreateTime, a message will be rejected if the difference in timestamp \
exceeds this threshold. This configuration is ignored if message.timestamp.type=LogAppendTime.";
const DOC_TIMESTAMP_BEFORE: &str = "This configuration sets the allowable timestamp difference \
between the broker's timestamp and the message timestamp. The message timestamp can be earlier \
than or equal to the broker's timestamp, with the maximum allowable difference determined by the \
value set in this configuration. If message.timestamp.type=CreateTime, the message will be \
rejected if the difference in timestamps exceeds this specified threshold. This configuration is \
ignored if message.timestamp.type=LogAppendTime.";
const DOC_TIMESTAMP_AFTER: &str = "This configuration sets the allowable timestamp difference \
between the message timestamp and the broker's timestamp. The message timestamp can be later than \
or equal to the broker's timestamp, with the maximum allowable difference determined by the value \
set in this configuration. If message.timestamp.type=CreateTime, the message will be rejected if \
the difference in timestamps exceeds this specified threshold. This configuration is ignored if \
message.timestamp.type=LogAppendTime.";
const DOC_DOWNCONVERSION: &str = "This configuration controls whether down-conversion of message \
formats is enabled to satisfy consume requests. When set to <code>false</code>, broker will not \
perform down-conversion for consumers expecting an older message format. The broker responds with \
<code>UNSUPPORTED_VERSION</code> error for consume requests from such older clients. This \
configurationdoes not apply to any message format conversion that might be required for \
replication to followers.";
const DOC_LEADER_THROTTLED: &str = "A list of replicas for which log replication should be \
throttled on the leader side. The list should describe a set of replicas in the form \
[PartitionId]:[BrokerId],[PartitionId]:[BrokerId]:... or alternatively the wildcard '*' can be \
used to throttle all replicas for this topic.";
const DOC_FOLLOWER_THROTTLED: &str = "A list of replicas for which log replication should be \
throttled on the follower side. The list should describe a set of replicas in the form \
[PartitionId]:[BrokerId],[PartitionId]:[BrokerId]:... or alternatively the wildcard '*' can be \
used to throttle all replicas for this topic.";
const DOC_INTERNAL_SEGMENT_BYTES: &str =
    "The maximum size of a single log file. This should be used for testing only.";

macro_rules! topic_def {
    ($name:expr, $ty:ident, $default:expr, $validator:expr, $syn:expr, $supported:expr,
     $deprecated:expr, $doc:expr) => {
        ConfigDef {
            name: $name,
            ty: ConfigType::$ty,
            default: $default,
            doc: $doc,
            broker_synonyms: $syn,
            validator: $validator,
            supported: $supported,
            deprecated: $deprecated,
        }
    };
}

/// Every topic config Kafka 4.x describes, sorted by name (Kafka's `LogConfig.configNames()`
/// order, and the order DescribeConfigs returns here).
#[rustfmt::skip]
pub static TOPIC_CONFIGS: &[ConfigDef] = &[
    // "delete" is enforced by storage retention; "compact" is accepted (Kafka Connect and
    // Streams require it) and enforced by produce validation (null keys), compaction is pending.
    topic_def!("cleanup.policy", List, "delete", Validator::ListOf(CLEANUP_POLICIES),
        &["log.cleanup.policy"], true, false, DOC_CLEANUP_POLICY),
    topic_def!("compression.gzip.level", Int, "-1", Validator::GzipLevel,
        &["compression.gzip.level"], true, false, DOC_GZIP_LEVEL),
    topic_def!("compression.lz4.level", Int, "9", Validator::Between(1, 17),
        &["compression.lz4.level"], true, false, DOC_LZ4_LEVEL),
    topic_def!("compression.type", String, "producer", Validator::OneOf(COMPRESSION_TYPES),
        &["compression.type"], true, false, DOC_COMPRESSION_TYPE),
    topic_def!("compression.zstd.level", Int, "3", Validator::Between(-131072, 22),
        &["compression.zstd.level"], true, false, DOC_ZSTD_LEVEL),
    topic_def!("delete.retention.ms", Long, "86400000", Validator::AtLeast(0),
        &["log.cleaner.delete.retention.ms"], false, false, DOC_DELETE_RETENTION_MS),
    topic_def!("file.delete.delay.ms", Long, "60000", Validator::AtLeast(0),
        &["log.segment.delete.delay.ms"], false, false, DOC_FILE_DELETE_DELAY_MS),
    topic_def!("flush.messages", Long, LONG_MAX, Validator::AtLeast(1),
        &["log.flush.interval.messages"], true, false, DOC_FLUSH_MESSAGES),
    topic_def!("flush.ms", Long, LONG_MAX, Validator::AtLeast(0),
        &["log.flush.interval.ms", "log.flush.scheduler.interval.ms"], true, false, DOC_FLUSH_MS),
    topic_def!("follower.replication.throttled.replicas", List, "", Validator::ThrottledReplicas,
        &[], false, false, DOC_FOLLOWER_THROTTLED),
    topic_def!("index.interval.bytes", Int, "4096", Validator::AtLeast(0),
        &["log.index.interval.bytes"], true, false, DOC_INDEX_INTERVAL_BYTES),
    topic_def!("leader.replication.throttled.replicas", List, "", Validator::ThrottledReplicas,
        &[], false, false, DOC_LEADER_THROTTLED),
    topic_def!("local.retention.bytes", Long, "-2", Validator::AtLeast(-2),
        &["log.local.retention.bytes"], true, false, DOC_LOCAL_RETENTION_BYTES),
    topic_def!("local.retention.ms", Long, "-2", Validator::AtLeast(-2),
        &["log.local.retention.ms"], true, false, DOC_LOCAL_RETENTION_MS),
    topic_def!("max.compaction.lag.ms", Long, LONG_MAX, Validator::AtLeast(1),
        &["log.cleaner.max.compaction.lag.ms"], false, false, DOC_MAX_COMPACTION_LAG_MS),
    topic_def!("max.message.bytes", Int, "1048588", Validator::AtLeast(0),
        &["message.max.bytes"], true, false, DOC_MAX_MESSAGE_BYTES),
    topic_def!("message.downconversion.enable", Boolean, "true", Validator::None,
        &["log.message.downconversion.enable"], true, true, DOC_DOWNCONVERSION),
    topic_def!("message.timestamp.after.max.ms", Long, "3600000", Validator::AtLeast(0),
        &["log.message.timestamp.after.max.ms"], true, false, DOC_TIMESTAMP_AFTER),
    topic_def!("message.timestamp.before.max.ms", Long, LONG_MAX, Validator::AtLeast(0),
        &["log.message.timestamp.before.max.ms"], true, false, DOC_TIMESTAMP_BEFORE),
    topic_def!("message.timestamp.difference.max.ms", Long, LONG_MAX, Validator::AtLeast(0),
        &["log.message.timestamp.difference.max.ms"], true, true, DOC_TIMESTAMP_DIFFERENCE),
    topic_def!("message.timestamp.type", String, "CreateTime", Validator::OneOf(TIMESTAMP_TYPES),
        &["log.message.timestamp.type"], true, false, DOC_TIMESTAMP_TYPE),
    topic_def!("min.cleanable.dirty.ratio", Double, "0.5", Validator::DoubleBetween(0, 1),
        &["log.cleaner.min.cleanable.ratio"], false, false, DOC_MIN_CLEANABLE_DIRTY_RATIO),
    topic_def!("min.compaction.lag.ms", Long, "0", Validator::AtLeast(0),
        &["log.cleaner.min.compaction.lag.ms"], false, false, DOC_MIN_COMPACTION_LAG_MS),
    topic_def!("min.insync.replicas", Int, "1", Validator::AtLeast(1),
        &["min.insync.replicas"], true, false, DOC_MIN_INSYNC_REPLICAS),
    topic_def!("preallocate", Boolean, "false", Validator::None,
        &["log.preallocate"], true, false, DOC_PREALLOCATE),
    topic_def!("remote.log.copy.disable", Boolean, "false", Validator::None,
        &[], true, false, DOC_REMOTE_LOG_COPY_DISABLE),
    topic_def!("remote.log.delete.on.disable", Boolean, "false", Validator::None,
        &[], true, false, DOC_REMOTE_LOG_DELETE_ON_DISABLE),
    topic_def!("remote.storage.enable", Boolean, "false", Validator::OnlyFalse(TIERED_STORAGE_OFF),
        &[], true, false, DOC_REMOTE_STORAGE_ENABLE),
    topic_def!("retention.bytes", Long, "-1", Validator::None,
        &["log.retention.bytes"], true, false, DOC_RETENTION_BYTES),
    topic_def!("retention.ms", Long, "604800000", Validator::AtLeast(-1),
        &["log.retention.ms", "log.retention.minutes", "log.retention.hours"], true, false,
        DOC_RETENTION_MS),
    topic_def!("segment.bytes", Int, "1073741824", Validator::AtLeast(SEGMENT_BYTES_MIN),
        &["log.segment.bytes"], true, false, DOC_SEGMENT_BYTES),
    topic_def!("segment.index.bytes", Int, "10485760", Validator::AtLeast(4),
        &["log.index.size.max.bytes"], true, false, DOC_SEGMENT_INDEX_BYTES),
    topic_def!("segment.jitter.ms", Long, "0", Validator::AtLeast(0),
        &["log.roll.jitter.ms", "log.roll.jitter.hours"], false, false, DOC_SEGMENT_JITTER_MS),
    topic_def!("segment.ms", Long, "604800000", Validator::AtLeast(1),
        &["log.roll.ms", "log.roll.hours"], true, false, DOC_SEGMENT_MS),
    topic_def!("unclean.leader.election.enable", Boolean, "false", Validator::None,
        &["unclean.leader.election.enable"], false, false, DOC_UNCLEAN_LEADER_ELECTION_ENABLE),
];

/// Kafka's internal topic configs: accepted by CreateTopics/AlterConfigs, never described.
/// `internal.segment.bytes` overrides `segment.bytes` below its 1 MiB minimum (tests only).
#[rustfmt::skip]
pub static INTERNAL_TOPIC_CONFIGS: &[ConfigDef] = &[
    topic_def!("internal.segment.bytes", Int, "", Validator::AtLeast(SEGMENT_BYTES_MIN_INTERNAL),
        &[], true, false, DOC_INTERNAL_SEGMENT_BYTES),
];

/// Finds a topic config definition (public or internal) by name.
pub fn topic_config_def(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS
        .iter()
        .chain(INTERNAL_TOPIC_CONFIGS.iter())
        .find(|d| d.name == name)
}

macro_rules! broker_def {
    ($name:expr, $ty:ident, $default:expr, $validator:expr, $doc:expr) => {
        BrokerConfigDef {
            name: $name,
            ty: ConfigType::$ty,
            default: $default,
            doc: $doc,
            validator: $validator,
        }
    };
}

/// The broker-level (server.properties) configs Ringtail reads, sorted by name, with Kafka's
/// types, defaults and validators. Ringtail-specific settings live elsewhere in its TOML file.
#[rustfmt::skip]
pub static BROKER_CONFIGS: &[BrokerConfigDef] = &[
    broker_def!("auto.create.topics.enable", Boolean, Some("true"), Validator::None,
        "Enable auto creation of topic on the server."),
    broker_def!("auto.leader.rebalance.enable", Boolean, Some("true"), Validator::None,
        "Enables auto leader balancing. The active controller periodically moves the leadership \
         of each partition back to its preferred replica (the first in its replica list) when \
         that replica is live and in sync; see leader.imbalance.check.interval.seconds."),
    broker_def!("compression.gzip.level", Int, Some("-1"), Validator::GzipLevel, DOC_GZIP_LEVEL),
    broker_def!("compression.lz4.level", Int, Some("9"), Validator::Between(1, 17), DOC_LZ4_LEVEL),
    broker_def!("compression.type", String, Some("producer"), Validator::OneOf(COMPRESSION_TYPES),
        DOC_COMPRESSION_TYPE),
    broker_def!("compression.zstd.level", Int, Some("3"), Validator::Between(-131072, 22),
        DOC_ZSTD_LEVEL),
    broker_def!("connections.max.idle.ms", Long, Some("600000"), Validator::AtLeast(1),
        "Idle connections timeout: the server socket processor threads close the connections \
         that idle more than this"),
    broker_def!("default.replication.factor", Int, Some("1"), Validator::None,
        "The replication factor for automatically created topics, and for topics created with -1 \
         as the replication factor"),
    broker_def!("delete.topic.enable", Boolean, Some("true"), Validator::None,
        "When set to true, topics can be deleted by the admin client. When set to false, deletion \
         requests will be explicitly rejected by the broker."),
    broker_def!("group.consumer.heartbeat.interval.ms", Int, Some("5000"), Validator::AtLeast(1),
        "The heartbeat interval given to the members of a consumer group."),
    broker_def!("group.consumer.max.heartbeat.interval.ms", Int, Some("15000"),
        Validator::AtLeast(1), "The maximum heartbeat interval for registered consumers."),
    broker_def!("group.consumer.max.session.timeout.ms", Int, Some("60000"),
        Validator::AtLeast(1), "The maximum allowed session timeout for registered consumers."),
    broker_def!("group.consumer.max.size", Int, Some(INT_MAX), Validator::AtLeast(1),
        "The maximum number of consumers that a single consumer group can accommodate."),
    broker_def!("group.consumer.min.heartbeat.interval.ms", Int, Some("5000"),
        Validator::AtLeast(1), "The minimum heartbeat interval for registered consumers."),
    broker_def!("group.consumer.min.session.timeout.ms", Int, Some("45000"),
        Validator::AtLeast(1), "The minimum allowed session timeout for registered consumers."),
    broker_def!("group.consumer.session.timeout.ms", Int, Some("45000"), Validator::AtLeast(1),
        "The timeout to detect client failures when using the consumer group protocol."),
    broker_def!("group.coordinator.rebalance.protocols", List, Some("classic,consumer"),
        Validator::ListOf(&["classic", "consumer"]),
        "The list of enabled rebalance protocols."),
    broker_def!("group.initial.rebalance.delay.ms", Int, Some("3000"), Validator::None,
        "The amount of time the group coordinator will wait for more consumers to join a new \
         group before performing the first rebalance. A longer delay means potentially fewer \
         rebalances, but increases the time until processing begins."),
    broker_def!("group.max.session.timeout.ms", Int, Some("1800000"), Validator::None,
        "The maximum allowed session timeout for registered consumers. Longer timeouts give \
         consumers more time to process messages in between heartbeats at the cost of a longer \
         time to detect failures."),
    broker_def!("group.max.size", Int, Some(INT_MAX), Validator::AtLeast(1),
        "The maximum number of consumers that a single consumer group can accommodate."),
    broker_def!("group.min.session.timeout.ms", Int, Some("6000"), Validator::None,
        "The minimum allowed session timeout for registered consumers. Shorter timeouts result \
         in quicker failure detection at the cost of more frequent consumer heartbeating, which \
         can overwhelm broker resources."),
    broker_def!("leader.imbalance.check.interval.seconds", Long, Some("300"), Validator::AtLeast(1),
        "The frequency with which the partition rebalance check is triggered by the controller"),
    broker_def!("log.cleaner.backoff.ms", Long, Some("15000"), Validator::AtLeast(0),
        "The amount of time to sleep when there are no logs to clean"),
    broker_def!("log.cleaner.dedupe.buffer.size", Long, Some("134217728"), Validator::None,
        "The total memory used for log deduplication across all cleaner threads (Ringtail: \
         per shard, for the key map of one partition's dirty section)"),
    broker_def!("log.cleaner.delete.retention.ms", Long, Some("86400000"), Validator::AtLeast(0),
        DOC_DELETE_RETENTION_MS),
    broker_def!("log.cleaner.enable", Boolean, Some("true"), Validator::None,
        "Enable the log cleaner process to run on the server. Should be enabled if using any \
         topics with a cleanup.policy=compact including the internal offsets topic. If \
         disabled those topics will not be compacted and continually grow in size."),
    broker_def!("log.cleaner.io.buffer.size", Int, Some("524288"), Validator::AtLeast(0),
        "The total memory used for log cleaner I/O buffers across all cleaner threads \
         (Ringtail: the bytes one cleaner read takes from a segment)"),
    broker_def!("log.cleaner.io.max.bytes.per.second", Long, Some("52428800"),
        Validator::AtLeast(1),
        "The log cleaner will be throttled so that the sum of its read and write i/o will be \
         less than this value on average (Ringtail: per shard; default 50 MiB/s rather than \
         Kafka's unlimited, so compaction stays background work)"),
    broker_def!("log.cleaner.max.compaction.lag.ms", Long, Some(LONG_MAX), Validator::AtLeast(1),
        DOC_MAX_COMPACTION_LAG_MS),
    broker_def!("log.cleaner.min.cleanable.ratio", Double, Some("0.5"),
        Validator::DoubleBetween(0, 1), DOC_MIN_CLEANABLE_DIRTY_RATIO),
    broker_def!("log.cleaner.min.compaction.lag.ms", Long, Some("0"), Validator::AtLeast(0),
        DOC_MIN_COMPACTION_LAG_MS),
    broker_def!("log.cleanup.policy", List, Some("delete"), Validator::ListOf(CLEANUP_POLICIES),
        DOC_CLEANUP_POLICY),
    broker_def!("log.flush.interval.messages", Long, Some(LONG_MAX), Validator::AtLeast(1),
        "The number of messages accumulated on a log partition before messages are flushed to \
         disk."),
    broker_def!("log.flush.interval.ms", Long, None, Validator::None,
        "The maximum time in ms that a message in any topic is kept in memory before flushed to \
         disk. If not set, the value in log.flush.scheduler.interval.ms is used"),
    broker_def!("log.flush.scheduler.interval.ms", Long, Some(LONG_MAX), Validator::None,
        "The frequency in ms that the log flusher checks whether any log needs to be flushed to \
         disk"),
    broker_def!("log.index.interval.bytes", Int, Some("4096"), Validator::AtLeast(0),
        "The interval with which we add an entry to the offset index."),
    broker_def!("log.index.size.max.bytes", Int, Some("10485760"), Validator::AtLeast(4),
        "The maximum size in bytes of the offset index"),
    broker_def!("log.local.retention.bytes", Long, Some("-2"), Validator::AtLeast(-2),
        "The maximum size of local log segments that can grow for a partition before it gets \
         eligible for deletion. Default value is -2, it represents `log.retention.bytes` value \
         to be used. The effective value should always be less than or equal to \
         `log.retention.bytes` value."),
    broker_def!("log.local.retention.ms", Long, Some("-2"), Validator::AtLeast(-2),
        "The number of milliseconds to keep the local log segments before it gets eligible for \
         deletion. Default value is -2, it represents `log.retention.ms` value is to be used. The \
         effective value should always be less than or equal to `log.retention.ms` value."),
    broker_def!("log.message.downconversion.enable", Boolean, Some("true"), Validator::None,
        DOC_DOWNCONVERSION),
    broker_def!("log.message.timestamp.after.max.ms", Long, Some("3600000"),
        Validator::AtLeast(0), DOC_TIMESTAMP_AFTER),
    broker_def!("log.message.timestamp.before.max.ms", Long, Some(LONG_MAX),
        Validator::AtLeast(0), DOC_TIMESTAMP_BEFORE),
    broker_def!("log.message.timestamp.difference.max.ms", Long, Some(LONG_MAX),
        Validator::AtLeast(0), DOC_TIMESTAMP_DIFFERENCE),
    broker_def!("log.message.timestamp.type", String, Some("CreateTime"),
        Validator::OneOf(TIMESTAMP_TYPES),
        "Define whether the timestamp in the message is message create time or log append time. \
         The value should be either <code>CreateTime</code> or <code>LogAppendTime</code>."),
    broker_def!("log.preallocate", Boolean, Some("false"), Validator::None,
        "Should pre allocate file when create new segment? If you are using Kafka on Windows, you \
         probably need to set it to true."),
    broker_def!("log.retention.bytes", Long, Some("-1"), Validator::None,
        "The maximum size of the log before deleting it"),
    broker_def!("log.retention.check.interval.ms", Long, Some("300000"), Validator::AtLeast(1),
        "The frequency in milliseconds that the log cleaner checks whether any log is eligible \
         for deletion"),
    broker_def!("log.retention.hours", Int, Some("168"), Validator::None,
        "The number of hours to keep a log file before deleting it (in hours), tertiary to \
         log.retention.ms property"),
    broker_def!("log.retention.minutes", Int, None, Validator::None,
        "The number of minutes to keep a log file before deleting it (in minutes), secondary to \
         log.retention.ms property. If not set, the value in log.retention.hours is used"),
    broker_def!("log.retention.ms", Long, None, Validator::None,
        "The number of milliseconds to keep a log file before deleting it (in milliseconds), If \
         not set, the value in log.retention.minutes is used. If set to -1, no time limit is \
         applied."),
    broker_def!("log.roll.hours", Int, Some("168"), Validator::AtLeast(1),
        "The maximum time before a new log segment is rolled out (in hours), secondary to \
         log.roll.ms property"),
    broker_def!("log.roll.jitter.hours", Int, Some("0"), Validator::AtLeast(0),
        "The maximum jitter to subtract from logRollTimeMillis (in hours), secondary to \
         log.roll.jitter.ms property"),
    broker_def!("log.roll.jitter.ms", Long, None, Validator::None,
        "The maximum jitter to subtract from logRollTimeMillis (in milliseconds). If not set, the \
         value in log.roll.jitter.hours is used"),
    broker_def!("log.roll.ms", Long, None, Validator::None,
        "The maximum time before a new log segment is rolled out (in milliseconds). If not set, \
         the value in log.roll.hours is used"),
    broker_def!("log.segment.bytes", Int, Some("1073741824"), Validator::AtLeast(SEGMENT_BYTES_MIN),
        "The maximum size of a single log file"),
    broker_def!("log.segment.delete.delay.ms", Long, Some("60000"), Validator::AtLeast(0),
        "The amount of time to wait before deleting a file from the filesystem. If the value is \
         0 and there is no file to delete, the system will wait 1 millisecond. Low value will \
         cause busy waiting"),
    broker_def!("message.max.bytes", Int, Some("1048588"), Validator::AtLeast(0),
        "The largest record batch size allowed by Kafka (after compression if compression is \
         enabled). If this is increased and there are consumers older than 0.10.2, the \
         consumers' fetch size must also be increased so that they can fetch record batches this \
         large. In the latest message format version, records are always grouped into batches \
         for efficiency. In previous message format versions, uncompressed records are not \
         grouped into batches and this limit only applies to a single record in that case.This \
         can be set per topic with the topic level <code>max.message.bytes</code> config."),
    broker_def!("min.insync.replicas", Int, Some("1"), Validator::AtLeast(1),
        DOC_MIN_INSYNC_REPLICAS),
    broker_def!("num.partitions", Int, Some("1"), Validator::AtLeast(1),
        "The default number of log partitions per topic"),
    broker_def!("offsets.retention.check.interval.ms", Long, Some("600000"),
        Validator::AtLeast(1), "Frequency at which to check for stale offsets"),
    broker_def!("offsets.retention.minutes", Int, Some("10080"), Validator::AtLeast(1),
        "For subscribed consumers, committed offset of a specific partition will be expired and \
         discarded when 1) this retention period has elapsed after the consumer group loses all \
         its consumers (i.e. becomes empty); 2) this retention period has elapsed since the last \
         time an offset is committed for the partition and the group is no longer subscribed to \
         the corresponding topic. For standalone consumers (using manual assignment), offsets \
         will be expired after this retention period has elapsed since the time of last commit. \
         Note that when a group is deleted via the delete-group request, its committed offsets \
         will also be deleted without extra retention period; also when a topic is deleted via \
         the delete-topic request, upon propagated metadata update any group's committed offsets \
         for that topic will also be deleted without extra retention period."),
    broker_def!("offsets.topic.num.partitions", Int, Some("50"), Validator::AtLeast(1),
        "The number of partitions for the offset commit topic (should not change after \
         deployment)."),
    broker_def!("offsets.topic.replication.factor", Short, Some("3"), Validator::AtLeast(1),
        "The replication factor for the offsets topic (set higher to ensure availability). \
         Internal topic creation will fail until the cluster size meets this replication factor \
         requirement."),
    broker_def!("offsets.topic.segment.bytes", Int, Some("104857600"), Validator::AtLeast(1),
        "The offsets topic segment bytes should be kept relatively small in order to facilitate \
         faster log compaction and cache loads."),
    broker_def!("producer.id.expiration.ms", Int, Some("86400000"), Validator::AtLeast(1),
        "The time in ms that a topic partition leader will wait before expiring producer IDs. \
         Producer IDs will not expire while a transaction associated to them is still ongoing. \
         Note that producer IDs may expire sooner if the last write from the producer ID is \
         deleted due to the topic's retention settings. Setting this value the same or higher \
         than <code>delivery.timeout.ms</code> can help prevent expiration during retries and \
         protect against message duplication, but the default should be reasonable for most use \
         cases."),
    broker_def!("remote.log.storage.system.enable", Boolean, Some("false"),
        Validator::OnlyFalse("Ringtail has no tiered storage"),
        "Whether to enable tiered storage functionality in a broker or not. When it is true \
         broker starts all the services required for the tiered storage functionality."),
    broker_def!("replica.lag.time.max.ms", Long, Some("30000"), Validator::None,
        "If a follower hasn't sent any fetch requests or hasn't consumed up to the leaders log \
         end offset for at least this time, the leader will remove the follower from isr"),
    // Ringtail extension (the only non-Kafka name here; Kafka brokers also describe vendor keys).
    broker_def!("ringtail.acks.all.fsync", Boolean, Some("true"), Validator::None,
        "Ringtail: with acks=all (-1), acknowledge a produce only after the appended batches are \
         fdatasync'ed (coalesced across requests), so a single replica survives power loss. \
         false: acknowledge once written to the device, like acks=1; durability then relies on \
         replication, as with Kafka's defaults (flush.messages unset)."),
    broker_def!("socket.request.max.bytes", Int, Some("104857600"), Validator::AtLeast(1),
        "The maximum number of bytes in a socket request"),
    broker_def!("transaction.abort.timed.out.transaction.cleanup.interval.ms", Int,
        Some("10000"), Validator::AtLeast(1),
        "The interval at which to rollback transactions that have timed out. Ringtail also \
         completes, at this interval, transactions whose markers could not be written (and \
         expires transactional ids idle for transactional.id.expiration.ms)."),
    broker_def!("transaction.max.timeout.ms", Int, Some("900000"), Validator::AtLeast(1),
        "The maximum allowed timeout for transactions. If a client’s requested transaction time \
         exceed this, then the broker will return an error in InitProducerIdRequest. This \
         prevents a client from too large of a timeout, which can stall consumers reading from \
         topics included in the transaction."),
    broker_def!("transaction.state.log.num.partitions", Int, Some("50"), Validator::AtLeast(1),
        "The number of partitions for the transaction topic (should not change after \
         deployment)."),
    broker_def!("transaction.state.log.replication.factor", Short, Some("3"),
        Validator::AtLeast(1),
        "The replication factor for the transaction topic (set higher to ensure availability). \
         Internal topic creation will fail until the cluster size meets this replication factor \
         requirement."),
    broker_def!("transaction.state.log.segment.bytes", Int, Some("104857600"),
        Validator::AtLeast(1),
        "The transaction topic segment bytes should be kept relatively small in order to \
         facilitate faster log compaction and cache loads"),
    broker_def!("transactional.id.expiration.ms", Int, Some("604800000"), Validator::AtLeast(1),
        "The time in ms that the transaction coordinator will wait without receiving any \
         transaction status updates for the current transaction before expiring its \
         transactional id. Transactional IDs will not expire while a the transaction is still \
         ongoing."),
    broker_def!("unclean.leader.election.enable", Boolean, Some("false"), Validator::None,
        DOC_UNCLEAN_LEADER_ELECTION_ENABLE),
];

/// Finds a broker config definition by name.
pub fn broker_config_def(name: &str) -> Option<&'static BrokerConfigDef> {
    BROKER_CONFIGS.iter().find(|d| d.name == name)
}

// ---------------------------------------------------------------------------------------------
// Parsed values (Kafka's ConfigDef.parseType + validators)
// ---------------------------------------------------------------------------------------------

/// A parsed config value. Only values that passed their validator are ever stored.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Bool(bool),
    Int(i32),
    Short(i16),
    Long(i64),
    Double(f64),
    Str(String),
    List(Vec<String>),
}

impl Value {
    /// Kafka's `ConfigDef.convertToString`: the form DescribeConfigs returns.
    fn to_kafka_string(&self) -> String {
        match self {
            Value::Bool(b) => b.to_string(),
            Value::Int(v) => v.to_string(),
            Value::Short(v) => v.to_string(),
            Value::Long(v) => v.to_string(),
            Value::Double(v) => java_double_string(*v),
            Value::Str(s) => s.clone(),
            Value::List(items) => items.join(","),
        }
    }

    fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(i64::from(*v)),
            Value::Short(v) => Some(i64::from(*v)),
            Value::Long(v) => Some(*v),
            _ => None,
        }
    }
}

/// Java's `Double.toString` for the values configs hold: "0.5", "1.0", "1.0E-4".
fn java_double_string(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "NaN".to_string()
        } else if v > 0.0 {
            "Infinity".to_string()
        } else {
            "-Infinity".to_string()
        };
    }
    let magnitude = v.abs();
    if magnitude == 0.0 || (1e-3..1e7).contains(&magnitude) {
        let s = format!("{v}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        // Rust prints "1e-4"; Java prints "1.0E-4".
        let s = format!("{v:e}");
        match s.split_once('e') {
            Some((mantissa, exponent)) if mantissa.contains('.') => {
                format!("{mantissa}E{exponent}")
            }
            Some((mantissa, exponent)) => format!("{mantissa}.0E{exponent}"),
            None => s,
        }
    }
}

/// Parses `raw` as Kafka's `ConfigDef.parseType` does, then applies the validator.
fn parse_value(
    name: &str,
    ty: ConfigType,
    validator: Validator,
    raw: &str,
) -> Result<Value, ConfigError> {
    let trimmed = raw.trim();
    let not_a_number = || {
        ConfigError::invalid_value(
            name,
            raw,
            format!("Not a number of type {}", ty.kafka_name()),
        )
    };
    let value = match ty {
        ConfigType::Boolean => {
            if trimmed.eq_ignore_ascii_case("true") {
                Value::Bool(true)
            } else if trimmed.eq_ignore_ascii_case("false") {
                Value::Bool(false)
            } else {
                return Err(ConfigError::invalid_value(
                    name,
                    raw,
                    "Expected value to be either true or false",
                ));
            }
        }
        ConfigType::Int => Value::Int(trimmed.parse::<i32>().map_err(|_| not_a_number())?),
        ConfigType::Short => Value::Short(trimmed.parse::<i16>().map_err(|_| not_a_number())?),
        ConfigType::Long => Value::Long(trimmed.parse::<i64>().map_err(|_| not_a_number())?),
        ConfigType::Double => {
            let v = trimmed.parse::<f64>().map_err(|_| not_a_number())?;
            // Java's Range check lets NaN through (every comparison is false); Ringtail does not.
            if v.is_nan() {
                return Err(not_a_number());
            }
            Value::Double(v)
        }
        ConfigType::List => {
            if trimmed.is_empty() {
                Value::List(Vec::new())
            } else {
                // Kafka splits on "\s*,\s*" keeping empty items ("a,,b" -> ["a", "", "b"]).
                Value::List(trimmed.split(',').map(|s| s.trim().to_string()).collect())
            }
        }
        ConfigType::String | ConfigType::Class | ConfigType::Password => {
            Value::Str(trimmed.to_string())
        }
    };
    validate(name, validator, &value)?;
    Ok(value)
}

fn validate(name: &str, validator: Validator, value: &Value) -> Result<(), ConfigError> {
    match validator {
        Validator::None => Ok(()),
        Validator::AtLeast(min) => match value.as_i64() {
            Some(v) if v < min => Err(ConfigError::invalid_value(
                name,
                v,
                format!("Value must be at least {min}"),
            )),
            _ => Ok(()),
        },
        Validator::Between(min, max) => match value.as_i64() {
            Some(v) if v < min => Err(ConfigError::invalid_value(
                name,
                v,
                format!("Value must be at least {min}"),
            )),
            Some(v) if v > max => Err(ConfigError::invalid_value(
                name,
                v,
                format!("Value must be no more than {max}"),
            )),
            _ => Ok(()),
        },
        Validator::DoubleBetween(min, max) => match value {
            Value::Double(v) if *v < min as f64 => Err(ConfigError::invalid_value(
                name,
                java_double_string(*v),
                format!("Value must be at least {min}"),
            )),
            Value::Double(v) if *v > max as f64 => Err(ConfigError::invalid_value(
                name,
                java_double_string(*v),
                format!("Value must be no more than {max}"),
            )),
            _ => Ok(()),
        },
        Validator::OneOf(allowed) => match value {
            Value::Str(s) if !allowed.contains(&s.as_str()) => Err(ConfigError::invalid_value(
                name,
                s,
                format!("String must be one of: {}", allowed.join(", ")),
            )),
            _ => Ok(()),
        },
        Validator::ListOf(allowed) => match value {
            Value::List(items) => match items.iter().find(|i| !allowed.contains(&i.as_str())) {
                Some(bad) => Err(ConfigError::invalid_value(
                    name,
                    bad,
                    format!("String must be one of: {}", allowed.join(", ")),
                )),
                None => Ok(()),
            },
            _ => Ok(()),
        },
        Validator::GzipLevel => match value.as_i64() {
            Some(v) if v > 9 || (v < 1 && v != -1) => Err(ConfigError::invalid_value(
                name,
                v,
                "Value must be between 1 and 9 or equal to -1",
            )),
            _ => Ok(()),
        },
        Validator::ThrottledReplicas => match value {
            Value::List(items) => {
                let pairs_ok = items.iter().all(|i| i.is_empty() || is_replica_pair(i));
                if pairs_ok || items.concat() == "*" {
                    Ok(())
                } else {
                    Err(ConfigError::invalid_value(
                        name,
                        format!("[{}]", items.join(", ")),
                        format!(
                            "{name} must be the literal '*' or a list of replicas in the following \
                             format: [partitionId]:[brokerId],[partitionId]:[brokerId],..."
                        ),
                    ))
                }
            }
            _ => Ok(()),
        },
        Validator::OnlyFalse(reason) => match value {
            Value::Bool(true) => Err(ConfigError::Invalid(reason.to_string())),
            _ => Ok(()),
        },
    }
}

fn is_replica_pair(item: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    matches!(item.split_once(':'), Some((p, b)) if digits(p) && digits(b))
}

/// A value whose string form has already been validated (defaults in the static tables).
fn parse_default(name: &str, ty: ConfigType, raw: &str) -> Value {
    match parse_value(name, ty, Validator::None, raw) {
        Ok(v) => v,
        Err(_) => {
            // The tables are checked by the `every_default_parses_and_validates` test.
            debug_assert!(false, "default of {name} does not parse: {raw:?}");
            Value::Str(raw.to_string())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// DescribeConfigs output
// ---------------------------------------------------------------------------------------------

/// One synonym in a DescribeConfigs entry, highest precedence first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSynonym {
    pub name: String,
    pub value: Option<String>,
    pub source: ConfigSource,
}

/// One DescribeConfigs result entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveValue {
    /// `None` only for broker configs whose Kafka default is null (e.g. `log.retention.ms`).
    pub value: Option<String>,
    pub source: ConfigSource,
    /// DescribeConfigs v0 `is_default`: `source == DefaultConfig`.
    pub is_default: bool,
    pub read_only: bool,
    pub sensitive: bool,
    pub synonyms: Vec<ConfigSynonym>,
    pub ty: ConfigType,
    pub doc: &'static str,
}

// ---------------------------------------------------------------------------------------------
// Broker defaults
// ---------------------------------------------------------------------------------------------

/// Broker-level Kafka settings (the `server.properties` part of Ringtail's config file, plus
/// the dynamic broker configs set with AlterConfigs), with Kafka's precedence rules:
/// DYNAMIC_BROKER_CONFIG, then DYNAMIC_DEFAULT_BROKER_CONFIG, then STATIC_BROKER_CONFIG, then
/// Kafka's default. A value is immutable; a dynamic change builds a new one
/// ([`BrokerDefaults::with_dynamic`]) that the controller publishes with the metadata.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BrokerDefaults {
    /// Values set in the config file, parsed and validated.
    statics: BTreeMap<&'static str, Value>,
    /// Dynamic cluster-wide defaults (BROKER resource ""), only [`is_dynamic_broker_config`]
    /// names.
    dynamic_default: BTreeMap<&'static str, Value>,
    /// Dynamic configs of this broker (BROKER resource named by its id), likewise.
    dynamic_broker: BTreeMap<&'static str, Value>,
}

/// Where a dynamic broker config is set: Kafka's BROKER resource "" or this broker's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DynamicLevel {
    ClusterDefault,
    ThisBroker,
}

/// Broker configs outside the topic-config synonyms that Kafka lets AlterConfigs change at run
/// time and Ringtail has (`DynamicProducerStateManagerConfig`).
const DYNAMIC_OTHER_BROKER_CONFIGS: &[&str] = &["producer.id.expiration.ms"];

/// Kafka's `DynamicBrokerConfig.AllDynamicConfigs`, restricted to the broker configs Ringtail
/// knows: the broker synonym of every topic config (`DynamicLogConfig.ReconfigurableConfigs`,
/// e.g. `log.retention.ms`, `log.segment.bytes`, `message.max.bytes`; not the lower-precedence
/// `log.retention.hours`) and [`DYNAMIC_OTHER_BROKER_CONFIGS`]. All of them are cluster-wide
/// (settable at "" and per broker); Kafka's per-broker-only ones (listeners, SSL) do not exist
/// here. Everything else is read-only, as in Kafka (`num.partitions` included).
pub fn is_dynamic_broker_config(name: &str) -> bool {
    broker_config_def(name).is_some()
        && (DYNAMIC_OTHER_BROKER_CONFIGS.contains(&name)
            || TOPIC_CONFIGS
                .iter()
                .any(|d| d.broker_synonym() == Some(name)))
}

impl BrokerDefaults {
    /// Builds from `(kafka.dotted.name, value)` pairs. Values are strings as in server.properties;
    /// lists are comma-separated. Later duplicates win (as in a properties file). An unknown name
    /// is an error; see [`BrokerDefaults::from_pairs_lenient`] for Kafka's warn-and-ignore.
    pub fn from_pairs(
        pairs: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let (broker, unknown) = Self::build(pairs)?;
        match unknown.into_iter().next() {
            Some(name) => Err(ConfigError::UnknownBroker(name)),
            None => Ok(broker),
        }
    }

    /// Like [`BrokerDefaults::from_pairs`], but unknown names are returned instead of refused,
    /// so the caller can log Kafka's "The configuration '...' was supplied but isn't a known
    /// config." Values of known names are still validated.
    pub fn from_pairs_lenient(
        pairs: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Self, Vec<String>), ConfigError> {
        Self::build(pairs)
    }

    fn build(
        pairs: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Self, Vec<String>), ConfigError> {
        let mut statics = BTreeMap::new();
        let mut unknown = Vec::new();
        for (name, raw) in pairs {
            let Some(def) = broker_config_def(&name) else {
                unknown.push(name);
                continue;
            };
            let value = parse_value(def.name, def.ty, def.validator, &raw)?;
            statics.insert(def.name, value);
        }
        let broker = BrokerDefaults {
            statics,
            ..BrokerDefaults::default()
        };
        broker.validate_combinations()?;
        Ok((broker, unknown))
    }

    /// Builds from JSON-like values, e.g. a TOML table converted with `serde_json::to_value`:
    /// strings, integers, floats and booleans as written; arrays become comma-separated lists.
    pub fn from_json_values(
        pairs: impl IntoIterator<Item = (String, serde_json::Value)>,
    ) -> Result<Self, ConfigError> {
        let mut strings = Vec::new();
        for (name, value) in pairs {
            let raw = json_to_config_string(&name, &value)?;
            strings.push((name, raw));
        }
        Self::from_pairs(strings)
    }

    /// Kafka's `KafkaConfig` start-up checks that involve more than one key.
    fn validate_combinations(&self) -> Result<(), ConfigError> {
        if self.log_roll_ms() < 1 {
            return Err(ConfigError::Invalid(
                "log.roll.ms must be greater than or equal to 1".into(),
            ));
        }
        if self.log_roll_jitter_ms() < 0 {
            return Err(ConfigError::Invalid(
                "log.roll.jitter.ms must be greater than or equal to 0".into(),
            ));
        }
        let retention_ms = self.log_retention_ms();
        if retention_ms < 1 && retention_ms != -1 {
            return Err(ConfigError::Invalid(
                "log.retention.ms must be unlimited (-1) or, greater than or equal to 1".into(),
            ));
        }
        let min_lag = self.long("log.cleaner.min.compaction.lag.ms");
        let max_lag = self.long("log.cleaner.max.compaction.lag.ms");
        if min_lag > max_lag {
            return Err(ConfigError::Invalid(format!(
                "conflict topic config setting min.compaction.lag.ms ({min_lag}) > \
                 max.compaction.lag.ms ({max_lag})"
            )));
        }
        let ge = |a: &str, b: &str| -> Result<(), ConfigError> {
            if self.int(a) >= self.int(b) {
                Ok(())
            } else {
                Err(ConfigError::Invalid(format!(
                    "{a} must be greater than or equal to {b}"
                )))
            }
        };
        let le = |a: &str, b: &str| -> Result<(), ConfigError> {
            if self.int(a) <= self.int(b) {
                Ok(())
            } else {
                Err(ConfigError::Invalid(format!(
                    "{a} must be less than or equal to {b}"
                )))
            }
        };
        ge(
            "group.consumer.max.heartbeat.interval.ms",
            "group.consumer.min.heartbeat.interval.ms",
        )?;
        ge(
            "group.consumer.heartbeat.interval.ms",
            "group.consumer.min.heartbeat.interval.ms",
        )?;
        le(
            "group.consumer.heartbeat.interval.ms",
            "group.consumer.max.heartbeat.interval.ms",
        )?;
        ge(
            "group.consumer.max.session.timeout.ms",
            "group.consumer.min.session.timeout.ms",
        )?;
        ge(
            "group.consumer.session.timeout.ms",
            "group.consumer.min.session.timeout.ms",
        )?;
        le(
            "group.consumer.session.timeout.ms",
            "group.consumer.max.session.timeout.ms",
        )?;
        if self.int("group.consumer.heartbeat.interval.ms")
            >= self.int("group.consumer.session.timeout.ms")
        {
            return Err(ConfigError::Invalid(
                "group.consumer.heartbeat.interval.ms must be less than \
                 group.consumer.session.timeout.ms"
                    .into(),
            ));
        }
        Ok(())
    }

    /// True when `name` was set in the config file.
    pub fn is_set(&self, name: &str) -> bool {
        self.statics.contains_key(name)
    }

    /// The configured or default value of a broker config, typed. `None` for unknown names and
    /// for null defaults that were not configured.
    fn get(&self, name: &str) -> Option<Value> {
        if let Some(v) = self.configured(name) {
            return Some(v.clone());
        }
        let def = broker_config_def(name)?;
        def.default.map(|d| parse_default(def.name, def.ty, d))
    }

    fn long(&self, name: &str) -> i64 {
        match self.get(name).as_ref().and_then(Value::as_i64) {
            Some(v) => v,
            None => {
                debug_assert!(
                    false,
                    "{name} is not an integer broker config with a default"
                );
                0
            }
        }
    }

    fn int(&self, name: &str) -> i32 {
        i32::try_from(self.long(name)).unwrap_or(i32::MAX) // ok: INT/SHORT configs fit in i32
    }

    fn boolean(&self, name: &str) -> bool {
        match self.get(name) {
            Some(Value::Bool(b)) => b,
            _ => {
                debug_assert!(false, "{name} is not a boolean broker config");
                false
            }
        }
    }

    fn long_opt(&self, name: &str) -> Option<i64> {
        self.configured(name).and_then(Value::as_i64)
    }

    /// The value set for `name` at the highest-precedence level that sets it (dynamic for
    /// this broker, dynamic default, config file), if any.
    fn configured(&self, name: &str) -> Option<&Value> {
        self.dynamic_broker
            .get(name)
            .or_else(|| self.dynamic_default.get(name))
            .or_else(|| self.statics.get(name))
    }

    /// The dynamic configs set at `level`, as Kafka-canonical strings (what is persisted).
    pub fn dynamic_map(&self, level: DynamicLevel) -> BTreeMap<String, String> {
        let map = match level {
            DynamicLevel::ClusterDefault => &self.dynamic_default,
            DynamicLevel::ThisBroker => &self.dynamic_broker,
        };
        map.iter()
            .map(|(k, v)| (k.to_string(), v.to_kafka_string()))
            .collect()
    }

    /// Checks one dynamic broker config as Kafka's `DynamicBrokerConfig.validateConfigs` does:
    /// a known name, updatable at run time, with a valid value.
    pub fn validate_dynamic(name: &str, value: &str) -> Result<(), ConfigError> {
        let def = broker_config_def(name).ok_or_else(|| ConfigError::UnknownBroker(name.into()))?;
        if !is_dynamic_broker_config(def.name) {
            // Kafka prints the names as a Scala Set.
            return Err(ConfigError::InvalidRequest(format!(
                "Cannot update these configs dynamically: Set({name})"
            )));
        }
        parse_value(def.name, def.ty, def.validator, value).map(|_| ())
    }

    /// These static settings with the given dynamic configs (each a full map of its level),
    /// validated like Kafka's dynamic update (each name, each value, then the cross-config
    /// rules on the result).
    pub fn with_dynamic(
        &self,
        cluster_default: &BTreeMap<String, String>,
        this_broker: &BTreeMap<String, String>,
    ) -> Result<BrokerDefaults, ConfigError> {
        let parse = |map: &BTreeMap<String, String>| {
            let mut out = BTreeMap::new();
            for (name, raw) in map {
                Self::validate_dynamic(name, raw)?;
                let def = broker_config_def(name)
                    .ok_or_else(|| ConfigError::UnknownBroker(name.clone()))?;
                out.insert(def.name, parse_value(def.name, def.ty, def.validator, raw)?);
            }
            Ok::<_, ConfigError>(out)
        };
        let next = BrokerDefaults {
            statics: self.statics.clone(),
            dynamic_default: parse(cluster_default)?,
            dynamic_broker: parse(this_broker)?,
        };
        next.validate_combinations()?;
        Ok(next)
    }

    /// These settings without any dynamic config (the config file and Kafka's defaults).
    pub fn statics_only(&self) -> BrokerDefaults {
        BrokerDefaults {
            statics: self.statics.clone(),
            ..BrokerDefaults::default()
        }
    }

    /// `log.retention.ms`, else `log.retention.minutes`, else `log.retention.hours`; any negative
    /// result means unlimited (-1), as in `KafkaConfig.logRetentionTimeMillis`.
    pub fn log_retention_ms(&self) -> i64 {
        let ms = self
            .long_opt("log.retention.ms")
            .or_else(|| {
                self.long_opt("log.retention.minutes")
                    .map(|m| m.saturating_mul(60_000))
            })
            .unwrap_or_else(|| self.long("log.retention.hours").saturating_mul(3_600_000));
        if ms < 0 {
            -1
        } else {
            ms
        }
    }

    /// `log.roll.ms`, else `log.roll.hours`.
    pub fn log_roll_ms(&self) -> i64 {
        self.long_opt("log.roll.ms")
            .unwrap_or_else(|| self.long("log.roll.hours").saturating_mul(3_600_000))
    }

    /// `log.roll.jitter.ms`, else `log.roll.jitter.hours`.
    pub fn log_roll_jitter_ms(&self) -> i64 {
        self.long_opt("log.roll.jitter.ms")
            .unwrap_or_else(|| self.long("log.roll.jitter.hours").saturating_mul(3_600_000))
    }

    /// `log.flush.interval.ms`, else `log.flush.scheduler.interval.ms`.
    pub fn log_flush_interval_ms(&self) -> i64 {
        self.long_opt("log.flush.interval.ms")
            .unwrap_or_else(|| self.long("log.flush.scheduler.interval.ms"))
    }

    pub fn num_partitions(&self) -> i32 {
        self.int("num.partitions")
    }
    /// `default.replication.factor` (Kafka INT), as the i16 CreateTopics uses; values beyond
    /// i16 saturate (CreateTopics then fails with INVALID_REPLICATION_FACTOR, as in Kafka).
    pub fn default_replication_factor(&self) -> i16 {
        let rf = self.long("default.replication.factor");
        i16::try_from(rf).unwrap_or(if rf < 0 { i16::MIN } else { i16::MAX })
    }
    pub fn auto_create_topics_enable(&self) -> bool {
        self.boolean("auto.create.topics.enable")
    }
    /// `ringtail.acks.all.fsync` (default true): acks=all waits for fdatasync.
    pub fn acks_all_fsync(&self) -> bool {
        self.boolean("ringtail.acks.all.fsync")
    }
    pub fn delete_topic_enable(&self) -> bool {
        self.boolean("delete.topic.enable")
    }
    /// `socket.request.max.bytes`: the largest request frame accepted.
    pub fn socket_request_max_bytes(&self) -> usize {
        usize::try_from(self.int("socket.request.max.bytes")).unwrap_or(0) // ok: validated >= 1
    }
    pub fn message_max_bytes(&self) -> i32 {
        self.int("message.max.bytes")
    }
    pub fn min_insync_replicas(&self) -> i32 {
        self.int("min.insync.replicas")
    }
    pub fn unclean_leader_election_enable(&self) -> bool {
        self.boolean("unclean.leader.election.enable")
    }
    /// `connections.max.idle.ms`: connections that send nothing for this long are closed.
    pub fn connections_max_idle(&self) -> std::time::Duration {
        std::time::Duration::from_millis(
            u64::try_from(self.long("connections.max.idle.ms")).unwrap_or(1),
        ) // ok: validated >= 1
    }
    /// `log.cleaner.enable`: compact `cleanup.policy=compact` topics.
    pub fn log_cleaner_enable(&self) -> bool {
        self.boolean("log.cleaner.enable")
    }
    /// `log.cleaner.backoff.ms`: pause between two passes over a shard's compacted partitions.
    pub fn log_cleaner_backoff_ms(&self) -> u64 {
        u64::try_from(self.long("log.cleaner.backoff.ms")).unwrap_or(0) // ok: validated >= 0
    }
    /// `log.cleaner.io.max.bytes.per.second`: a shard's cleaner reads plus writes at most this.
    pub fn log_cleaner_io_max_bytes_per_second(&self) -> u64 {
        u64::try_from(self.long("log.cleaner.io.max.bytes.per.second")).unwrap_or(1)
        // ok: >= 1
    }
    /// `log.cleaner.dedupe.buffer.size`: memory bound of one cleaning's key map.
    pub fn log_cleaner_dedupe_buffer_bytes(&self) -> usize {
        usize::try_from(self.long("log.cleaner.dedupe.buffer.size")).unwrap_or(1 << 20)
    }
    /// `log.cleaner.io.buffer.size`: bytes one cleaner read takes from a segment.
    pub fn log_cleaner_io_buffer_bytes(&self) -> usize {
        usize::try_from(self.int("log.cleaner.io.buffer.size")).unwrap_or(0) // ok: >= 0
    }
    pub fn log_retention_check_interval_ms(&self) -> i64 {
        self.long("log.retention.check.interval.ms")
    }
    pub fn offsets_topic_num_partitions(&self) -> i32 {
        self.int("offsets.topic.num.partitions")
    }
    /// Kafka's default is 3; a single-node cluster must set 1 (as Kafka's quickstart does).
    pub fn offsets_topic_replication_factor(&self) -> i16 {
        i16::try_from(self.long("offsets.topic.replication.factor")).unwrap_or(i16::MAX)
        // ok: SHORT
    }
    pub fn offsets_topic_segment_bytes(&self) -> i32 {
        self.int("offsets.topic.segment.bytes")
    }
    pub fn offsets_retention_minutes(&self) -> i32 {
        self.int("offsets.retention.minutes")
    }
    pub fn offsets_retention_ms(&self) -> i64 {
        self.long("offsets.retention.minutes")
            .saturating_mul(60_000)
    }
    pub fn offsets_retention_check_interval_ms(&self) -> i64 {
        self.long("offsets.retention.check.interval.ms")
    }
    pub fn group_initial_rebalance_delay_ms(&self) -> i32 {
        self.int("group.initial.rebalance.delay.ms")
    }
    pub fn group_min_session_timeout_ms(&self) -> i32 {
        self.int("group.min.session.timeout.ms")
    }
    pub fn group_max_session_timeout_ms(&self) -> i32 {
        self.int("group.max.session.timeout.ms")
    }
    pub fn group_max_size(&self) -> i32 {
        self.int("group.max.size")
    }
    pub fn group_consumer_session_timeout_ms(&self) -> i32 {
        self.int("group.consumer.session.timeout.ms")
    }
    pub fn group_consumer_min_session_timeout_ms(&self) -> i32 {
        self.int("group.consumer.min.session.timeout.ms")
    }
    pub fn group_consumer_max_session_timeout_ms(&self) -> i32 {
        self.int("group.consumer.max.session.timeout.ms")
    }
    pub fn group_consumer_heartbeat_interval_ms(&self) -> i32 {
        self.int("group.consumer.heartbeat.interval.ms")
    }
    pub fn group_consumer_min_heartbeat_interval_ms(&self) -> i32 {
        self.int("group.consumer.min.heartbeat.interval.ms")
    }
    pub fn group_consumer_max_heartbeat_interval_ms(&self) -> i32 {
        self.int("group.consumer.max.heartbeat.interval.ms")
    }
    pub fn group_consumer_max_size(&self) -> i32 {
        self.int("group.consumer.max.size")
    }
    /// `group.coordinator.rebalance.protocols` contains "consumer" (KIP-848 enabled).
    pub fn consumer_protocol_enabled(&self) -> bool {
        matches!(self.get("group.coordinator.rebalance.protocols"),
            Some(Value::List(items)) if items.iter().any(|p| p == "consumer"))
    }
    pub fn transaction_state_log_num_partitions(&self) -> i32 {
        self.int("transaction.state.log.num.partitions")
    }
    pub fn transaction_state_log_replication_factor(&self) -> i16 {
        i16::try_from(self.long("transaction.state.log.replication.factor")).unwrap_or(i16::MAX)
        // ok: SHORT
    }
    pub fn transaction_state_log_segment_bytes(&self) -> i32 {
        self.int("transaction.state.log.segment.bytes")
    }
    pub fn transaction_cleanup_interval_ms(&self) -> i32 {
        self.int("transaction.abort.timed.out.transaction.cleanup.interval.ms")
    }
    pub fn transaction_max_timeout_ms(&self) -> i32 {
        self.int("transaction.max.timeout.ms")
    }
    pub fn transactional_id_expiration_ms(&self) -> i32 {
        self.int("transactional.id.expiration.ms")
    }
    pub fn producer_id_expiration_ms(&self) -> i32 {
        self.int("producer.id.expiration.ms")
    }
    pub fn replica_lag_time_max_ms(&self) -> i64 {
        self.long("replica.lag.time.max.ms")
    }
    pub fn auto_leader_rebalance_enable(&self) -> bool {
        self.boolean("auto.leader.rebalance.enable")
    }
    pub fn leader_imbalance_check_interval_seconds(&self) -> i64 {
        self.long("leader.imbalance.check.interval.seconds")
    }

    /// The broker's default for a topic config (Kafka's `KafkaConfig.extractLogConfigMap`), or
    /// `None` when the topic config has no broker synonym.
    fn topic_default(&self, def: &ConfigDef) -> Option<Value> {
        match def.name {
            "retention.ms" => Some(Value::Long(self.log_retention_ms())),
            "segment.ms" => Some(Value::Long(self.log_roll_ms())),
            "segment.jitter.ms" => Some(Value::Long(self.log_roll_jitter_ms())),
            "flush.ms" => Some(Value::Long(self.log_flush_interval_ms())),
            _ => {
                let synonym = def.broker_synonym()?;
                let value = self.get(synonym)?;
                // Broker and topic types agree for single synonyms; widen INT to LONG if not.
                Some(match (def.ty, value) {
                    (ConfigType::Long, v @ (Value::Int(_) | Value::Short(_))) => {
                        Value::Long(v.as_i64().unwrap_or(0)) // ok: matched integer variants
                    }
                    (_, v) => v,
                })
            }
        }
    }

    /// Kafka's `ConfigHelper.configSynonyms(name, brokerConfigSynonyms(name))`: static-file
    /// settings, then built-in defaults, of `name` and the broker configs sharing its setting.
    ///
    /// Kafka then drops every entry before the first one called `name`. That keeps the lower
    /// precedence synonyms (`log.retention.hours` when describing `log.retention.ms`) but, as a
    /// side effect, a topic's `retention.ms` lists no synonym and reports DEFAULT_CONFIG unless
    /// `log.retention.ms` itself is set, even when `log.retention.hours` is in the file. Clients
    /// and tools see that from Kafka, so Ringtail reproduces it.
    fn synonyms_for(&self, name: &'static str) -> Vec<ConfigSynonym> {
        let names = broker_config_synonyms(name);
        let mut out = Vec::new();
        let dynamic = [
            (&self.dynamic_broker, ConfigSource::DynamicBrokerConfig),
            (
                &self.dynamic_default,
                ConfigSource::DynamicDefaultBrokerConfig,
            ),
        ];
        for (map, source) in dynamic {
            for name in names {
                if let Some(v) = map.get(name) {
                    out.push(ConfigSynonym {
                        name: name.to_string(),
                        value: Some(v.to_kafka_string()),
                        source,
                    });
                }
            }
        }
        for name in names {
            if let Some(v) = self.statics.get(name) {
                out.push(ConfigSynonym {
                    name: name.to_string(),
                    value: Some(v.to_kafka_string()),
                    source: ConfigSource::StaticBrokerConfig,
                });
            }
        }
        for name in names {
            let default = broker_config_def(name).and_then(|d| d.default.map(|s| (d, s)));
            if let Some((def, raw)) = default {
                out.push(ConfigSynonym {
                    name: name.to_string(),
                    value: Some(parse_default(def.name, def.ty, raw).to_kafka_string()),
                    source: ConfigSource::DefaultConfig,
                });
            }
        }
        let first = out.iter().position(|s| s.name == name).unwrap_or(out.len());
        out.split_off(first)
    }

    /// DescribeConfigs for the BROKER resource named by this broker's id: every config in
    /// [`BROKER_CONFIGS`] (sorted), or only the requested keys (unknown keys are skipped, as
    /// Kafka does). Source: the highest-precedence level that sets it (see the type docs).
    /// Only [`is_dynamic_broker_config`] entries are writable.
    pub fn describe(&self, keys: Option<&[String]>) -> Vec<(String, EffectiveValue)> {
        self.describe_level(keys, DynamicLevel::ThisBroker)
    }

    /// DescribeConfigs for the BROKER resource "" (Kafka's `ConfigHelper`): only the dynamic
    /// cluster-wide defaults, with the synonyms of that level.
    pub fn describe_cluster_default(
        &self,
        keys: Option<&[String]>,
    ) -> Vec<(String, EffectiveValue)> {
        let only_defaults = BrokerDefaults {
            statics: BTreeMap::new(),
            dynamic_default: self.dynamic_default.clone(),
            dynamic_broker: BTreeMap::new(),
        };
        only_defaults.describe_level(keys, DynamicLevel::ClusterDefault)
    }

    fn describe_level(
        &self,
        keys: Option<&[String]>,
        level: DynamicLevel,
    ) -> Vec<(String, EffectiveValue)> {
        BROKER_CONFIGS
            .iter()
            .filter(|d| keys.is_none_or(|k| k.iter().any(|k| k == d.name)))
            .filter(|d| {
                level == DynamicLevel::ThisBroker || self.dynamic_default.contains_key(d.name)
            })
            .map(|def| {
                let mut synonyms = self.synonyms_for(def.name);
                if level == DynamicLevel::ClusterDefault {
                    synonyms.retain(|s| s.source == ConfigSource::DynamicDefaultBrokerConfig);
                }
                let source = synonyms
                    .first()
                    .map_or(ConfigSource::DefaultConfig, |s| s.source);
                let value = self.get(def.name).map(|v| v.to_kafka_string());
                let sensitive = def.ty.is_sensitive();
                let entry = EffectiveValue {
                    value: if sensitive { None } else { value },
                    source,
                    is_default: source == ConfigSource::DefaultConfig,
                    read_only: !is_dynamic_broker_config(def.name),
                    sensitive,
                    synonyms,
                    ty: def.ty,
                    doc: def.doc,
                };
                (def.name.to_string(), entry)
            })
            .collect()
    }
}

/// IncrementalAlterConfigs on one level of dynamic broker configs (`current`, canonical
/// strings): SET (a `None` value deletes), DELETE, and APPEND/SUBTRACT for LIST configs
/// (starting from the level's value, else the effective one in `broker`). Names and values are
/// checked with [`BrokerDefaults::validate_dynamic`]; the caller checks the combination.
pub fn apply_dynamic_ops(
    current: &BTreeMap<String, String>,
    ops: &[(String, AlterOp, Option<String>)],
    broker: &BrokerDefaults,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut next = current.clone();
    for (i, (name, op, value)) in ops.iter().enumerate() {
        if ops[..i].iter().any(|(other, _, _)| other == name) {
            return Err(ConfigError::InvalidRequest(
                "Error due to duplicate config keys".into(),
            ));
        }
        match (op, value) {
            (AlterOp::Set, Some(v)) => {
                next.insert(name.clone(), v.clone());
            }
            (AlterOp::Set, None) | (AlterOp::Delete, _) => {
                next.remove(name);
            }
            (AlterOp::Append | AlterOp::Subtract, _) => {
                let def = broker_config_def(name).filter(|d| d.ty == ConfigType::List);
                let Some(def) = def else {
                    return Err(ConfigError::Invalid(format!(
                        "Can't {} to key {name} because its type is not LIST.",
                        op.kafka_name()
                    )));
                };
                let base = match next.get(name) {
                    Some(v) => v.clone(),
                    None => broker
                        .get(def.name)
                        .map(|v| v.to_kafka_string())
                        .unwrap_or_default(),
                };
                let mut parts: Vec<String> = base
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect();
                for item in value.as_deref().unwrap_or("").split(',') {
                    if *op == AlterOp::Append {
                        if !parts.iter().any(|p| p == item) {
                            parts.push(item.to_string());
                        }
                    } else if let Some(pos) = parts.iter().position(|p| p == item) {
                        parts.remove(pos);
                    }
                }
                next.insert(name.clone(), parts.join(","));
            }
        }
    }
    for (name, value) in &next {
        if current.get(name) != Some(value) {
            BrokerDefaults::validate_dynamic(name, value)?;
        }
    }
    Ok(next)
}

/// Kafka's `DynamicBrokerConfig.brokerConfigSynonyms`: broker configs that share one setting.
fn broker_config_synonyms(name: &'static str) -> &'static [&'static str] {
    const RETENTION: &[&str] = &[
        "log.retention.ms",
        "log.retention.minutes",
        "log.retention.hours",
    ];
    const ROLL: &[&str] = &["log.roll.ms", "log.roll.hours"];
    const JITTER: &[&str] = &["log.roll.jitter.ms", "log.roll.jitter.hours"];
    const FLUSH: &[&str] = &["log.flush.interval.ms", "log.flush.scheduler.interval.ms"];
    match name {
        "log.retention.ms" | "log.retention.minutes" | "log.retention.hours" => RETENTION,
        "log.roll.ms" | "log.roll.hours" => ROLL,
        "log.roll.jitter.ms" | "log.roll.jitter.hours" => JITTER,
        "log.flush.interval.ms" => FLUSH,
        _ => match broker_config_def(name) {
            Some(def) => std::slice::from_ref(&def.name),
            None => &[],
        },
    }
}

fn json_to_config_string(name: &str, value: &serde_json::Value) -> Result<String, ConfigError> {
    use serde_json::Value as J;
    match value {
        J::String(s) => Ok(s.clone()),
        J::Bool(b) => Ok(b.to_string()),
        J::Number(n) => Ok(n.to_string()),
        J::Array(items) => {
            let parts: Result<Vec<String>, ConfigError> = items
                .iter()
                .map(|item| match item {
                    J::Array(_) | J::Object(_) | J::Null => Err(ConfigError::invalid_value(
                        name,
                        value,
                        "Expected a comma separated list.",
                    )),
                    other => json_to_config_string(name, other),
                })
                .collect();
            Ok(parts?.join(","))
        }
        J::Null | J::Object(_) => Err(ConfigError::invalid_value(
            name,
            value,
            "Expected a string, number, boolean or list",
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Topic configs
// ---------------------------------------------------------------------------------------------

/// One topic's configuration: the overrides a client set explicitly (what is persisted and
/// described as TOPIC_CONFIG) plus their resolution against the broker's defaults, so the data
/// path reads plain fields ([`TopicConfig::settings`]) without lookups.
///
/// Every constructor validates. The resolution uses the [`BrokerDefaults`] passed to the
/// constructor; when a dynamic broker config changes, the controller rebuilds every topic's
/// `TopicConfig` against the new defaults ([`TopicConfig::from_map`]) in the same metadata
/// snapshot, so a published `TopicConfig` never goes stale. `Default` resolves against Kafka's
/// built-in defaults (for `#[serde(skip)]` fields); replace it with a broker-aware constructor.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    overrides: Overrides,
    settings: TopicSettings,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig::defaults(&BrokerDefaults::default())
    }
}

/// Validated explicit overrides, and the effective-value rules over them.
#[derive(Debug, Clone, Default, PartialEq)]
struct Overrides {
    map: BTreeMap<&'static str, Value>,
}

impl Overrides {
    fn parse_pairs(
        pairs: impl IntoIterator<Item = (String, Option<String>)>,
        reject_null: bool,
    ) -> Result<Overrides, ConfigError> {
        let pairs: Vec<(String, Option<String>)> = pairs.into_iter().collect();
        let mut defs = Vec::with_capacity(pairs.len());
        for (name, _) in &pairs {
            defs.push(topic_config_def(name).ok_or_else(|| ConfigError::Unknown(name.clone()))?);
        }
        let mut overrides = BTreeMap::new();
        for (def, (_, raw)) in defs.into_iter().zip(pairs) {
            match raw {
                Some(raw) => {
                    let value = parse_value(def.name, def.ty, def.validator, &raw)?;
                    overrides.insert(def.name, value);
                }
                None if reject_null => {
                    return Err(ConfigError::invalid_value(
                        def.name,
                        "null",
                        "Value must be non-null",
                    ))
                }
                None => {
                    overrides.remove(def.name);
                }
            }
        }
        Ok(Overrides { map: overrides })
    }

    /// Kafka's `LogConfig.validateValues` / `validateTopicLogConfigValues` on the effective values.
    fn validate_combinations(&self, broker: &BrokerDefaults) -> Result<(), ConfigError> {
        let min_lag = self.long("min.compaction.lag.ms", broker);
        let max_lag = self.long("max.compaction.lag.ms", broker);
        if min_lag > max_lag {
            return Err(ConfigError::Invalid(format!(
                "conflict topic config setting min.compaction.lag.ms ({min_lag}) > \
                 max.compaction.lag.ms ({max_lag})"
            )));
        }
        Ok(())
    }

    /// Effective typed value: override, else broker default, else the topic config default.
    fn value(&self, def: &ConfigDef, broker: &BrokerDefaults) -> Value {
        if let Some(v) = self.map.get(def.name) {
            return v.clone();
        }
        if let Some(v) = broker.topic_default(def) {
            return v;
        }
        parse_default(def.name, def.ty, def.default)
    }

    fn typed(&self, name: &str, broker: &BrokerDefaults) -> Value {
        match topic_config_def(name) {
            Some(def) => self.value(def, broker),
            None => {
                debug_assert!(false, "unknown topic config {name}");
                Value::Str(String::new())
            }
        }
    }

    fn long(&self, name: &str, broker: &BrokerDefaults) -> i64 {
        match self.typed(name, broker).as_i64() {
            Some(v) => v,
            None => {
                debug_assert!(false, "{name} is not an integer topic config");
                0
            }
        }
    }

    fn int(&self, name: &str, broker: &BrokerDefaults) -> i32 {
        i32::try_from(self.long(name, broker)).unwrap_or(i32::MAX) // ok: INT configs fit in i32
    }

    fn boolean(&self, name: &str, broker: &BrokerDefaults) -> bool {
        match self.typed(name, broker) {
            Value::Bool(b) => b,
            _ => {
                debug_assert!(false, "{name} is not a boolean topic config");
                false
            }
        }
    }

    fn string(&self, name: &str, broker: &BrokerDefaults) -> String {
        self.typed(name, broker).to_kafka_string()
    }

    /// `message.timestamp.before/after.max.ms`, honouring the deprecated
    /// `message.timestamp.difference.max.ms` where the bound itself was not set (topic level
    /// first, then broker level), as Kafka 3.6–3.9 did.
    fn timestamp_bound(&self, name: &'static str, broker: &BrokerDefaults) -> i64 {
        const DIFF: &str = "message.timestamp.difference.max.ms";
        let as_long = |v: &Value| v.as_i64();
        if let Some(v) = self.map.get(name).and_then(as_long) {
            return v;
        }
        if let Some(v) = self.map.get(DIFF).and_then(as_long) {
            return v;
        }
        let broker_name = format!("log.{name}");
        if let Some(v) = broker.long_opt(&broker_name) {
            return v;
        }
        if let Some(v) = broker.long_opt("log.message.timestamp.difference.max.ms") {
            return v;
        }
        self.long(name, broker)
    }

    /// Everything resolved, typed, for the data path.
    fn resolve(&self, broker: &BrokerDefaults) -> TopicSettings {
        let (cleanup_delete, cleanup_compact) = match self.typed("cleanup.policy", broker) {
            Value::List(items) => (
                items.iter().any(|p| p.eq_ignore_ascii_case("delete")),
                items.iter().any(|p| p.eq_ignore_ascii_case("compact")),
            ),
            _ => (true, false),
        };
        let retention_ms = self.long("retention.ms", broker);
        let retention_bytes = self.long("retention.bytes", broker);
        // -2 means "same as the total retention" (Kafka's LogConfig.localRetentionMs/Bytes).
        let local = |name: &str, total: i64| match self.long(name, broker) {
            -2 => total,
            v => v,
        };
        let segment_bytes = match self.map.get("internal.segment.bytes") {
            Some(Value::Int(v)) => *v,
            _ => self.int("segment.bytes", broker),
        };
        TopicSettings {
            cleanup_delete,
            cleanup_compact,
            // ok: validated against the same list of names
            compression: CompressionType::from_name(&self.string("compression.type", broker))
                .unwrap_or(CompressionType::Producer),
            compression_gzip_level: self.int("compression.gzip.level", broker),
            compression_lz4_level: self.int("compression.lz4.level", broker),
            compression_zstd_level: self.int("compression.zstd.level", broker),
            delete_retention_ms: self.long("delete.retention.ms", broker),
            file_delete_delay_ms: self.long("file.delete.delay.ms", broker),
            flush_messages: self.long("flush.messages", broker),
            flush_ms: self.long("flush.ms", broker),
            index_interval_bytes: self.int("index.interval.bytes", broker),
            local_retention_bytes: local("local.retention.bytes", retention_bytes),
            local_retention_ms: local("local.retention.ms", retention_ms),
            max_compaction_lag_ms: self.long("max.compaction.lag.ms", broker),
            max_message_bytes: self.int("max.message.bytes", broker),
            timestamp_type: if self.string("message.timestamp.type", broker) == "LogAppendTime" {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            },
            timestamp_before_max_ms: self
                .timestamp_bound("message.timestamp.before.max.ms", broker),
            timestamp_after_max_ms: self.timestamp_bound("message.timestamp.after.max.ms", broker),
            min_cleanable_dirty_ratio: match self.typed("min.cleanable.dirty.ratio", broker) {
                Value::Double(v) => v,
                _ => 0.5,
            },
            min_compaction_lag_ms: self.long("min.compaction.lag.ms", broker),
            min_insync_replicas: self.int("min.insync.replicas", broker),
            preallocate: self.boolean("preallocate", broker),
            retention_bytes,
            retention_ms,
            segment_bytes,
            segment_index_bytes: self.int("segment.index.bytes", broker),
            segment_jitter_ms: self.long("segment.jitter.ms", broker),
            segment_ms: self.long("segment.ms", broker),
            unclean_leader_election_enable: self.boolean("unclean.leader.election.enable", broker),
        }
    }
}

/// The resolved, typed settings of a topic: what produce/fetch/storage/retention code reads.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicSettings {
    pub cleanup_delete: bool,
    pub cleanup_compact: bool,
    pub compression: CompressionType,
    pub compression_gzip_level: i32,
    pub compression_lz4_level: i32,
    pub compression_zstd_level: i32,
    pub delete_retention_ms: i64,
    pub file_delete_delay_ms: i64,
    /// `Long.MAX_VALUE` means never (the default).
    pub flush_messages: i64,
    /// `Long.MAX_VALUE` means never (the default).
    pub flush_ms: i64,
    pub index_interval_bytes: i32,
    pub local_retention_bytes: i64,
    pub local_retention_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub max_message_bytes: i32,
    pub timestamp_type: TimestampType,
    /// Resolved with the deprecated `message.timestamp.difference.max.ms` fallback.
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    pub min_compaction_lag_ms: i64,
    pub min_insync_replicas: i32,
    pub preallocate: bool,
    pub retention_bytes: i64,
    pub retention_ms: i64,
    /// `internal.segment.bytes` when set, else `segment.bytes`.
    pub segment_bytes: i32,
    pub segment_index_bytes: i32,
    pub segment_jitter_ms: i64,
    pub segment_ms: i64,
    pub unclean_leader_election_enable: bool,
}

impl TopicSettings {
    /// The storage layer's view. Kafka's "never" sentinels become `None`; negative retention
    /// means unlimited (-1).
    pub fn log_config(&self) -> storage::LogConfig {
        // Every cast below is of a value validated non-negative (segment.bytes >= 14,
        // index.interval.bytes >= 0, segment.index.bytes >= 4, max.message.bytes >= 0), so the
        // fallbacks are unreachable.
        let to_u32 = |v: i32| u32::try_from(v).unwrap_or(0);
        let never = |v: i64| match v {
            i64::MAX => None,
            v => u64::try_from(v).ok(),
        };
        // Time and size retention only delete segments under cleanup.policy "delete"; a
        // compact-only topic (e.g. __consumer_offsets) keeps every segment, as in Kafka.
        let unlimited_if_negative = |v: i64| if self.cleanup_delete { v.max(-1) } else { -1 };
        storage::LogConfig {
            segment_bytes: u64::from(to_u32(self.segment_bytes)),
            segment_ms: self.segment_ms,
            retention_ms: unlimited_if_negative(self.retention_ms),
            retention_bytes: unlimited_if_negative(self.retention_bytes),
            flush_messages: never(self.flush_messages),
            flush_ms: never(self.flush_ms),
            index_interval_bytes: to_u32(self.index_interval_bytes),
            segment_index_bytes: to_u32(self.segment_index_bytes),
            preallocate: self.preallocate,
            max_message_bytes: to_u32(self.max_message_bytes),
        }
    }
}

impl TopicConfig {
    /// No overrides: every config takes the broker's default.
    pub fn defaults(broker: &BrokerDefaults) -> Self {
        Self::from_overrides(Overrides::default(), broker)
    }

    fn from_overrides(overrides: Overrides, broker: &BrokerDefaults) -> Self {
        let settings = overrides.resolve(broker);
        TopicConfig {
            overrides,
            settings,
        }
    }

    /// CreateTopics / legacy AlterConfigs (full replacement): validates names (Kafka checks all
    /// names first), then values, then cross-config rules against the broker's defaults. A `None`
    /// value means "not set" (legacy AlterConfigs uses it to delete); use
    /// [`TopicConfig::for_create`] where Kafka rejects nulls. A repeated name: the last one wins.
    pub fn validate_and_build(
        pairs: impl IntoIterator<Item = (String, Option<String>)>,
        broker: &BrokerDefaults,
    ) -> Result<TopicConfig, ConfigError> {
        let overrides = Overrides::parse_pairs(pairs, false)?;
        overrides.validate_combinations(broker)?;
        Ok(Self::from_overrides(overrides, broker))
    }

    /// CreateTopics: like [`TopicConfig::validate_and_build`] but a null value is invalid, with
    /// Kafka's message ("Invalid value null for configuration x: Value must be non-null").
    pub fn for_create(
        pairs: impl IntoIterator<Item = (String, Option<String>)>,
        broker: &BrokerDefaults,
    ) -> Result<TopicConfig, ConfigError> {
        let overrides = Overrides::parse_pairs(pairs, true)?;
        overrides.validate_combinations(broker)?;
        Ok(Self::from_overrides(overrides, broker))
    }

    /// IncrementalAlterConfigs on this topic's overrides, as Kafka's
    /// `ConfigurationControlManager`: SET (a `None` value deletes), DELETE, and APPEND/SUBTRACT
    /// for LIST configs only (starting from the override, else the topic config's default, as
    /// Kafka does). The result is validated as a whole; `self` is not changed.
    pub fn incremental(
        &self,
        ops: &[(String, AlterOp, Option<String>)],
        broker: &BrokerDefaults,
    ) -> Result<TopicConfig, ConfigError> {
        for (i, (name, _, _)) in ops.iter().enumerate() {
            if ops[..i].iter().any(|(other, _, _)| other == name) {
                return Err(ConfigError::InvalidRequest(
                    "Error due to duplicate config keys".into(),
                ));
            }
        }
        let mut current = self.to_map();
        for (name, op, value) in ops {
            match op {
                AlterOp::Set => match value {
                    Some(v) => {
                        current.insert(name.clone(), v.clone());
                    }
                    None => {
                        current.remove(name);
                    }
                },
                AlterOp::Delete => {
                    current.remove(name);
                }
                AlterOp::Append | AlterOp::Subtract => {
                    let def = topic_config_def(name).filter(|d| d.ty == ConfigType::List);
                    let Some(def) = def else {
                        return Err(ConfigError::Invalid(format!(
                            "Can't {} to key {name} because its type is not LIST.",
                            op.kafka_name()
                        )));
                    };
                    let base = current.get(name).map_or(def.default, String::as_str);
                    let mut parts: Vec<String> = base
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(str::to_string)
                        .collect();
                    let operand = value.as_deref().unwrap_or("");
                    for item in operand.split(',') {
                        if *op == AlterOp::Append {
                            if !parts.iter().any(|p| p == item) {
                                parts.push(item.to_string());
                            }
                        } else if let Some(pos) = parts.iter().position(|p| p == item) {
                            parts.remove(pos);
                        }
                    }
                    current.insert(name.clone(), parts.join(","));
                }
            }
        }
        Self::validate_and_build(current.into_iter().map(|(k, v)| (k, Some(v))), broker)
    }

    /// Loads persisted overrides: validates names and values but not the cross-config rules
    /// that depend on broker defaults, so a stored topic still loads after the broker's file
    /// changed (use this, not `validate_and_build`, when reading the metadata file).
    pub fn from_map(
        map: BTreeMap<String, String>,
        broker: &BrokerDefaults,
    ) -> Result<TopicConfig, ConfigError> {
        let overrides = Overrides::parse_pairs(map.into_iter().map(|(k, v)| (k, Some(v))), true)?;
        Ok(Self::from_overrides(overrides, broker))
    }

    /// The overrides as Kafka-canonical strings (what DescribeConfigs shows as TOPIC_CONFIG).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.overrides
            .map
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_kafka_string()))
            .collect()
    }

    /// The explicit override of `name`, canonical form.
    pub fn get_override(&self, name: &str) -> Option<String> {
        self.overrides.map.get(name).map(Value::to_kafka_string)
    }

    pub fn is_empty(&self) -> bool {
        self.overrides.map.is_empty()
    }

    /// The resolved settings the data path reads.
    pub fn settings(&self) -> &TopicSettings {
        &self.settings
    }

    /// Effective values mapped to the storage layer's config.
    pub fn log_config(&self) -> storage::LogConfig {
        self.settings.log_config()
    }

    pub fn compression_type(&self) -> CompressionType {
        self.settings.compression
    }

    pub fn timestamp_type_log_append(&self) -> bool {
        self.settings.timestamp_type == TimestampType::LogAppendTime
    }

    /// `(delete, compact)`. Both false for an empty `cleanup.policy` (infinite retention).
    pub fn cleanup_policy(&self) -> (bool, bool) {
        (self.settings.cleanup_delete, self.settings.cleanup_compact)
    }

    pub fn max_message_bytes(&self) -> u32 {
        u32::try_from(self.settings.max_message_bytes).unwrap_or(0) // ok: validated >= 0
    }

    pub fn min_insync_replicas(&self) -> i32 {
        self.settings.min_insync_replicas
    }

    /// One DescribeConfigs entry, as Kafka's `ConfigHelper.createTopicConfigEntry`. `None` for an
    /// unknown name, and for internal configs unless overridden.
    pub fn effective(&self, name: &str, broker: &BrokerDefaults) -> Option<EffectiveValue> {
        let def = topic_config_def(name)?;
        let is_internal = INTERNAL_TOPIC_CONFIGS.iter().any(|d| d.name == def.name);
        if is_internal && !self.overrides.map.contains_key(def.name) {
            return None;
        }
        let value = match def.name {
            "message.timestamp.before.max.ms" | "message.timestamp.after.max.ms" => {
                Value::Long(self.overrides.timestamp_bound(def.name, broker))
            }
            _ => self.overrides.value(def, broker),
        };
        let value_string = value.to_kafka_string();
        let mut synonyms = Vec::new();
        if self.overrides.map.contains_key(def.name) {
            synonyms.push(ConfigSynonym {
                name: def.name.to_string(),
                value: Some(value_string.clone()),
                source: ConfigSource::TopicConfig,
            });
        }
        if let Some(server_default) = def.broker_synonym() {
            synonyms.extend(broker.synonyms_for(server_default));
        }
        let source = synonyms
            .first()
            .map_or(ConfigSource::DefaultConfig, |s| s.source);
        let sensitive = def.ty.is_sensitive();
        Some(EffectiveValue {
            value: if sensitive { None } else { Some(value_string) },
            source,
            is_default: source == ConfigSource::DefaultConfig,
            read_only: false,
            sensitive,
            synonyms,
            ty: def.ty,
            doc: def.doc,
        })
    }

    /// DescribeConfigs for a TOPIC resource, sorted by name: every public config plus the internal
    /// ones this topic overrides (Kafka lists a config when it has a default or an override) when
    /// `keys` is `None` or empty (Kafka treats an empty key list as "all"), else only the requested
    /// ones; unknown keys are skipped. Each entry carries its synonyms; drop them when the request
    /// did not ask for synonyms, and the doc when it did not ask for documentation.
    pub fn describe(
        &self,
        keys: Option<&[String]>,
        broker: &BrokerDefaults,
    ) -> Vec<(String, EffectiveValue)> {
        let keys = keys.filter(|k| !k.is_empty());
        let mut out: Vec<(String, EffectiveValue)> = TOPIC_CONFIGS
            .iter()
            .chain(INTERNAL_TOPIC_CONFIGS.iter())
            .filter(|d| keys.is_none_or(|k| k.iter().any(|k| k == d.name)))
            .filter_map(|d| {
                self.effective(d.name, broker)
                    .map(|e| (d.name.to_string(), e))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::KafkaCode;
    /// Kafka error code INVALID_CONFIG.
    const INVALID_CONFIG: i16 = 40;
    /// Kafka error code INVALID_REQUEST.
    const INVALID_REQUEST: i16 = 42;

    fn broker(pairs: &[(&str, &str)]) -> BrokerDefaults {
        BrokerDefaults::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .expect("valid broker config")
    }

    fn topic(pairs: &[(&str, &str)], b: &BrokerDefaults) -> Result<TopicConfig, ConfigError> {
        TopicConfig::validate_and_build(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Some(v.to_string()))),
            b,
        )
    }

    fn eff(t: &TopicConfig, name: &str, b: &BrokerDefaults) -> EffectiveValue {
        t.effective(name, b).expect("known config")
    }

    fn op(name: &str, op: AlterOp, value: Option<&str>) -> (String, AlterOp, Option<String>) {
        (name.to_string(), op, value.map(str::to_string))
    }

    #[test]
    fn tables_are_sorted_unique_and_defaults_validate() {
        for w in TOPIC_CONFIGS.windows(2) {
            assert!(w[0].name < w[1].name, "{} !< {}", w[0].name, w[1].name);
        }
        for w in BROKER_CONFIGS.windows(2) {
            assert!(w[0].name < w[1].name, "{} !< {}", w[0].name, w[1].name);
        }
        for def in TOPIC_CONFIGS {
            parse_value(def.name, def.ty, def.validator, def.default)
                .unwrap_or_else(|e| panic!("default of {} invalid: {e}", def.name));
            for syn in def.broker_synonyms {
                assert!(
                    broker_config_def(syn).is_some(),
                    "{} synonym {syn} undefined",
                    def.name
                );
            }
        }
        for def in BROKER_CONFIGS {
            if let Some(d) = def.default {
                parse_value(def.name, def.ty, def.validator, d)
                    .unwrap_or_else(|e| panic!("default of {} invalid: {e}", def.name));
            }
        }
        // Canonical defaults round-trip unchanged (what DescribeConfigs prints).
        for def in TOPIC_CONFIGS {
            let v = parse_default(def.name, def.ty, def.default);
            assert_eq!(v.to_kafka_string(), def.default, "{}", def.name);
        }
    }

    #[test]
    fn all_kafka_topic_configs_present() {
        let expected = [
            "cleanup.policy",
            "compression.gzip.level",
            "compression.lz4.level",
            "compression.type",
            "compression.zstd.level",
            "delete.retention.ms",
            "file.delete.delay.ms",
            "flush.messages",
            "flush.ms",
            "follower.replication.throttled.replicas",
            "index.interval.bytes",
            "leader.replication.throttled.replicas",
            "local.retention.bytes",
            "local.retention.ms",
            "max.compaction.lag.ms",
            "max.message.bytes",
            "message.downconversion.enable",
            "message.timestamp.after.max.ms",
            "message.timestamp.before.max.ms",
            "message.timestamp.difference.max.ms",
            "message.timestamp.type",
            "min.cleanable.dirty.ratio",
            "min.compaction.lag.ms",
            "min.insync.replicas",
            "preallocate",
            "remote.log.copy.disable",
            "remote.log.delete.on.disable",
            "remote.storage.enable",
            "retention.bytes",
            "retention.ms",
            "segment.bytes",
            "segment.index.bytes",
            "segment.jitter.ms",
            "segment.ms",
            "unclean.leader.election.enable",
        ];
        let names: Vec<&str> = TOPIC_CONFIGS.iter().map(|d| d.name).collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn defaults_without_broker_file() {
        let b = BrokerDefaults::default();
        let t = TopicConfig::defaults(&b);
        let s = t.settings().clone();
        assert!(s.cleanup_delete && !s.cleanup_compact);
        assert_eq!(s.compression, CompressionType::Producer);
        assert_eq!(s.retention_ms, 604_800_000);
        assert_eq!(s.retention_bytes, -1);
        assert_eq!(s.segment_bytes, 1_073_741_824);
        assert_eq!(s.segment_ms, 604_800_000);
        assert_eq!(s.segment_index_bytes, 10_485_760);
        assert_eq!(s.max_message_bytes, 1_048_588);
        assert_eq!(s.flush_messages, i64::MAX);
        assert_eq!(s.flush_ms, i64::MAX);
        assert_eq!(s.timestamp_type, TimestampType::CreateTime);
        assert_eq!(s.timestamp_before_max_ms, i64::MAX);
        assert_eq!(s.timestamp_after_max_ms, 3_600_000);
        assert_eq!(s.min_insync_replicas, 1);
        assert_eq!(
            s.local_retention_ms, 604_800_000,
            "-2 resolves to retention.ms"
        );
        assert_eq!(
            s.local_retention_bytes, -1,
            "-2 resolves to retention.bytes"
        );
        assert_eq!(s.compression_gzip_level, -1);
        assert_eq!(s.compression_lz4_level, 9);
        assert_eq!(s.compression_zstd_level, 3);
        assert!((s.min_cleanable_dirty_ratio - 0.5).abs() < f64::EPSILON);
        assert_eq!(b.num_partitions(), 1);
        assert_eq!(b.default_replication_factor(), 1);
        assert!(b.auto_create_topics_enable());
        assert!(b.acks_all_fsync());
        assert_eq!(b.socket_request_max_bytes(), 104_857_600);
        assert_eq!(b.message_max_bytes(), 1_048_588);
        assert_eq!(b.offsets_topic_num_partitions(), 50);
        assert_eq!(b.offsets_topic_replication_factor(), 3);
        assert_eq!(b.offsets_retention_minutes(), 10080);
        assert_eq!(b.offsets_retention_ms(), 10080 * 60_000);
        assert_eq!(b.group_initial_rebalance_delay_ms(), 3000);
        assert_eq!(b.group_min_session_timeout_ms(), 6000);
        assert_eq!(b.group_max_session_timeout_ms(), 1_800_000);
        assert_eq!(b.group_consumer_session_timeout_ms(), 45_000);
        assert_eq!(b.group_consumer_heartbeat_interval_ms(), 5000);
        assert!(b.consumer_protocol_enabled());
        assert_eq!(b.transaction_state_log_num_partitions(), 50);
        assert_eq!(b.transaction_state_log_replication_factor(), 3);
        assert_eq!(b.transaction_max_timeout_ms(), 900_000);
        assert_eq!(b.transactional_id_expiration_ms(), 604_800_000);
        assert_eq!(b.producer_id_expiration_ms(), 86_400_000);
        assert_eq!(b.log_retention_check_interval_ms(), 300_000);
        assert!(b.delete_topic_enable());
        assert!(!b.unclean_leader_election_enable());
        assert_eq!(b.replica_lag_time_max_ms(), 30_000);
    }

    #[test]
    fn retention_precedence_ms_over_minutes_over_hours() {
        assert_eq!(
            broker(&[("log.retention.hours", "24")]).log_retention_ms(),
            86_400_000
        );
        let b = broker(&[
            ("log.retention.hours", "24"),
            ("log.retention.minutes", "10"),
        ]);
        assert_eq!(b.log_retention_ms(), 600_000);
        let b = broker(&[
            ("log.retention.hours", "24"),
            ("log.retention.minutes", "10"),
            ("log.retention.ms", "1234"),
        ]);
        assert_eq!(b.log_retention_ms(), 1234);
        assert_eq!(broker(&[("log.retention.ms", "-1")]).log_retention_ms(), -1);
        assert_eq!(
            broker(&[("log.retention.hours", "-5")]).log_retention_ms(),
            -1
        );
        // Kafka refuses 0 at start-up.
        let err = BrokerDefaults::from_pairs([("log.retention.ms".into(), "0".into())]);
        assert!(matches!(err, Err(ConfigError::Invalid(m)) if m.contains("log.retention.ms")));
        // Topic effective value follows the broker, then the override wins.
        let b = broker(&[("log.retention.minutes", "10")]);
        assert_eq!(
            TopicConfig::defaults(&b).settings().clone().retention_ms,
            600_000
        );
        let t = topic(&[("retention.ms", "5000")], &b).expect("valid");
        assert_eq!(t.settings().clone().retention_ms, 5000);
    }

    #[test]
    fn roll_jitter_and_flush_precedence() {
        let b = broker(&[("log.roll.hours", "2"), ("log.roll.jitter.hours", "1")]);
        let s = TopicConfig::defaults(&b).settings().clone();
        assert_eq!(s.segment_ms, 7_200_000);
        assert_eq!(s.segment_jitter_ms, 3_600_000);
        let b = broker(&[("log.roll.hours", "2"), ("log.roll.ms", "1000")]);
        assert_eq!(
            TopicConfig::defaults(&b).settings().clone().segment_ms,
            1000
        );
        let b = broker(&[("log.flush.scheduler.interval.ms", "3000")]);
        assert_eq!(TopicConfig::defaults(&b).settings().clone().flush_ms, 3000);
        let b = broker(&[
            ("log.flush.scheduler.interval.ms", "3000"),
            ("log.flush.interval.ms", "10"),
        ]);
        assert_eq!(TopicConfig::defaults(&b).settings().clone().flush_ms, 10);
        let b = broker(&[
            ("log.flush.interval.messages", "1"),
            ("message.max.bytes", "2000"),
        ]);
        let s = TopicConfig::defaults(&b).settings().clone();
        assert_eq!(s.flush_messages, 1);
        assert_eq!(s.max_message_bytes, 2000);
    }

    #[test]
    fn log_config_mapping() {
        let b = BrokerDefaults::default();
        let lc = TopicConfig::defaults(&b).log_config();
        assert_eq!(lc.segment_bytes, 1_073_741_824);
        assert_eq!(lc.segment_ms, 604_800_000);
        assert_eq!(lc.retention_ms, 604_800_000);
        assert_eq!(lc.retention_bytes, -1);
        assert_eq!(lc.flush_messages, None, "Long.MAX means never");
        assert_eq!(lc.flush_ms, None);
        assert_eq!(lc.index_interval_bytes, 4096);
        assert_eq!(lc.segment_index_bytes, 10_485_760);
        assert!(!lc.preallocate);
        assert_eq!(lc.max_message_bytes, 1_048_588);

        let t = topic(
            &[
                ("flush.messages", "1"),
                ("flush.ms", "0"),
                ("retention.ms", "-1"),
                ("retention.bytes", "-7"),
                ("segment.bytes", "1048576"),
                ("preallocate", "TRUE"),
                ("max.message.bytes", "0"),
                ("index.interval.bytes", "0"),
            ],
            &b,
        )
        .expect("valid");
        let lc = t.log_config();
        assert_eq!(lc.flush_messages, Some(1));
        assert_eq!(lc.flush_ms, Some(0));
        assert_eq!(lc.retention_ms, -1);
        assert_eq!(lc.retention_bytes, -1, "any negative is unlimited");
        assert_eq!(lc.segment_bytes, 1_048_576);
        assert!(lc.preallocate);
        assert_eq!(lc.max_message_bytes, 0);
        assert_eq!(lc.index_interval_bytes, 0);
    }

    #[test]
    fn internal_segment_bytes_for_tests() {
        let b = BrokerDefaults::default();
        let err = topic(&[("segment.bytes", "1000")], &b).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid value 1000 for configuration segment.bytes: Value must be at least 1048576"
        );
        let t = topic(&[("internal.segment.bytes", "1000")], &b).expect("valid");
        assert_eq!(t.log_config().segment_bytes, 1000);
        assert!(topic(&[("internal.segment.bytes", "13")], &b).is_err());
        // Listed (in name order) once overridden, as Kafka lists every config it holds.
        let all = t.describe(None, &b);
        let pos = all.iter().position(|(n, _)| n == "internal.segment.bytes");
        assert_eq!(
            pos,
            Some(11),
            "between index.interval.bytes and leader.replication..."
        );
        assert!(TopicConfig::defaults(&b)
            .describe(None, &b)
            .iter()
            .all(|(n, _)| n != "internal.segment.bytes"));
        let keys = vec!["internal.segment.bytes".to_string()];
        let one = t.describe(Some(&keys), &b);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].1.value.as_deref(), Some("1000"));
        assert_eq!(one[0].1.source, ConfigSource::TopicConfig);
        assert!(TopicConfig::defaults(&b)
            .describe(Some(&keys), &b)
            .is_empty());
    }

    #[test]
    fn invalid_values_have_kafka_messages() {
        let b = BrokerDefaults::default();
        let cases: &[(&str, &str, &str)] = &[
            ("retention.ms", "-5", "Invalid value -5 for configuration retention.ms: Value must be at least -1"),
            ("retention.ms", "abc", "Invalid value abc for configuration retention.ms: Not a number of type LONG"),
            ("retention.ms", "9223372036854775808", "Invalid value 9223372036854775808 for configuration retention.ms: Not a number of type LONG"),
            ("segment.index.bytes", "2147483648", "Invalid value 2147483648 for configuration segment.index.bytes: Not a number of type INT"),
            ("segment.ms", "0", "Invalid value 0 for configuration segment.ms: Value must be at least 1"),
            ("flush.messages", "0", "Invalid value 0 for configuration flush.messages: Value must be at least 1"),
            ("flush.ms", "-1", "Invalid value -1 for configuration flush.ms: Value must be at least 0"),
            ("max.message.bytes", "-1", "Invalid value -1 for configuration max.message.bytes: Value must be at least 0"),
            ("min.insync.replicas", "0", "Invalid value 0 for configuration min.insync.replicas: Value must be at least 1"),
            ("preallocate", "yes", "Invalid value yes for configuration preallocate: Expected value to be either true or false"),
            ("compression.type", "brotli", "Invalid value brotli for configuration compression.type: String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer"),
            ("compression.type", "GZIP", "Invalid value GZIP for configuration compression.type: String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer"),
            ("message.timestamp.type", "createtime", "Invalid value createtime for configuration message.timestamp.type: String must be one of: CreateTime, LogAppendTime"),
            ("cleanup.policy", "compact,remove", "Invalid value remove for configuration cleanup.policy: String must be one of: compact, delete"),
            ("cleanup.policy", "compact,", "Invalid value  for configuration cleanup.policy: String must be one of: compact, delete"),
            ("min.cleanable.dirty.ratio", "1.5", "Invalid value 1.5 for configuration min.cleanable.dirty.ratio: Value must be no more than 1"),
            ("min.cleanable.dirty.ratio", "-0.1", "Invalid value -0.1 for configuration min.cleanable.dirty.ratio: Value must be at least 0"),
            ("compression.gzip.level", "0", "Invalid value 0 for configuration compression.gzip.level: Value must be between 1 and 9 or equal to -1"),
            ("compression.gzip.level", "10", "Invalid value 10 for configuration compression.gzip.level: Value must be between 1 and 9 or equal to -1"),
            ("compression.lz4.level", "18", "Invalid value 18 for configuration compression.lz4.level: Value must be no more than 17"),
            ("compression.zstd.level", "23", "Invalid value 23 for configuration compression.zstd.level: Value must be no more than 22"),
            ("compression.zstd.level", "-131073", "Invalid value -131073 for configuration compression.zstd.level: Value must be at least -131072"),
            ("local.retention.ms", "-3", "Invalid value -3 for configuration local.retention.ms: Value must be at least -2"),
            ("max.compaction.lag.ms", "0", "Invalid value 0 for configuration max.compaction.lag.ms: Value must be at least 1"),
            ("leader.replication.throttled.replicas", "0:1,x", "Invalid value [0:1, x] for configuration leader.replication.throttled.replicas: leader.replication.throttled.replicas must be the literal '*' or a list of replicas in the following format: [partitionId]:[brokerId],[partitionId]:[brokerId],..."),
        ];
        for (name, value, message) in cases {
            let err = topic(&[(name, value)], &b).unwrap_err();
            assert_eq!(err.kafka_code(), INVALID_CONFIG, "{name}={value}");
            assert_eq!(err.to_string(), *message, "{name}={value}");
        }
        let err = topic(&[("remote.storage.enable", "true")], &b).unwrap_err();
        assert_eq!(err.kafka_code(), INVALID_CONFIG);
        assert_eq!(err.to_string(), TIERED_STORAGE_OFF);
    }

    #[test]
    fn valid_values_and_parsing_rules() {
        let b = BrokerDefaults::default();
        let t = topic(
            &[
                ("preallocate", " True "),
                ("cleanup.policy", " compact , delete "),
                ("retention.ms", " +42 "),
                ("min.cleanable.dirty.ratio", "1"),
                ("compression.type", "zstd"),
                ("compression.zstd.level", "-5"),
                ("message.timestamp.type", "LogAppendTime"),
                ("leader.replication.throttled.replicas", "0:1, 1:2"),
                ("follower.replication.throttled.replicas", "*"),
                ("remote.storage.enable", "false"),
                ("retention.bytes", "-100"),
            ],
            &b,
        )
        .expect("valid");
        let m = t.to_map();
        assert_eq!(m["preallocate"], "true");
        assert_eq!(m["cleanup.policy"], "compact,delete");
        assert_eq!(m["retention.ms"], "42");
        assert_eq!(m["min.cleanable.dirty.ratio"], "1.0");
        assert_eq!(m["leader.replication.throttled.replicas"], "0:1,1:2");
        assert_eq!(t.cleanup_policy(), (true, true));
        assert_eq!(t.compression_type(), CompressionType::Zstd);
        assert_eq!(t.compression_type().batch_codec(), Some(4));
        assert!(t.timestamp_type_log_append());
        // An empty cleanup.policy is accepted: neither delete nor compact.
        let t = topic(&[("cleanup.policy", "")], &b).expect("valid");
        assert_eq!(t.cleanup_policy(), (false, false));
        assert_eq!(t.to_map()["cleanup.policy"], "");
        // Empty throttled-replica list is the default and valid.
        assert!(topic(&[("leader.replication.throttled.replicas", "")], &b).is_ok());
    }

    #[test]
    fn unknown_names_and_nulls() {
        let b = BrokerDefaults::default();
        let err = topic(&[("retention.ms", "-5"), ("no.such.config", "1")], &b).unwrap_err();
        // Names are checked before values, as Kafka does.
        assert_eq!(err, ConfigError::Unknown("no.such.config".into()));
        assert_eq!(err.to_string(), "Unknown topic config name: no.such.config");
        assert_eq!(err.kafka_code(), 40);
        assert!(matches!(
            topic(&[("message.format.version", "3.0")], &b),
            Err(ConfigError::Unknown(_))
        ));
        // Legacy AlterConfigs: null means "not set".
        let t = TopicConfig::validate_and_build(
            [
                ("retention.ms".to_string(), Some("1".to_string())),
                ("retention.ms".to_string(), None),
            ],
            &b,
        )
        .expect("valid");
        assert!(t.is_empty());
        // CreateTopics: null is invalid.
        let err = TopicConfig::for_create([("retention.ms".to_string(), None)], &b).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid value null for configuration retention.ms: Value must be non-null"
        );
        // Last duplicate wins.
        let t = topic(&[("retention.ms", "1"), ("retention.ms", "2")], &b).expect("valid");
        assert_eq!(t.get_override("retention.ms").as_deref(), Some("2"));
    }

    #[test]
    fn compaction_lag_conflict_uses_effective_values() {
        let b = BrokerDefaults::default();
        let err = topic(
            &[
                ("min.compaction.lag.ms", "10"),
                ("max.compaction.lag.ms", "5"),
            ],
            &b,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "conflict topic config setting min.compaction.lag.ms (10) > max.compaction.lag.ms (5)"
        );
        assert_eq!(err.kafka_code(), INVALID_CONFIG);
        let b = broker(&[("log.cleaner.max.compaction.lag.ms", "100")]);
        assert!(topic(&[("min.compaction.lag.ms", "101")], &b).is_err());
        assert!(topic(&[("min.compaction.lag.ms", "100")], &b).is_ok());
    }

    #[test]
    fn incremental_set_delete_append_subtract() {
        let b = BrokerDefaults::default();
        let t = TopicConfig::defaults(&b);
        // APPEND to an unset list starts from the topic config default ("delete").
        let t = t
            .incremental(
                &[op("cleanup.policy", AlterOp::Append, Some("compact"))],
                &b,
            )
            .expect("valid");
        assert_eq!(
            t.get_override("cleanup.policy").as_deref(),
            Some("delete,compact")
        );
        assert_eq!(t.cleanup_policy(), (true, true));
        // Appending an existing element is a no-op.
        let t = t
            .incremental(&[op("cleanup.policy", AlterOp::Append, Some("delete"))], &b)
            .expect("valid");
        assert_eq!(
            t.get_override("cleanup.policy").as_deref(),
            Some("delete,compact")
        );
        let t = t
            .incremental(
                &[op("cleanup.policy", AlterOp::Subtract, Some("delete"))],
                &b,
            )
            .expect("valid");
        assert_eq!(t.get_override("cleanup.policy").as_deref(), Some("compact"));
        assert_eq!(t.cleanup_policy(), (false, true));
        let t = t
            .incremental(
                &[op("cleanup.policy", AlterOp::Subtract, Some("compact"))],
                &b,
            )
            .expect("valid");
        assert_eq!(t.get_override("cleanup.policy").as_deref(), Some(""));
        assert_eq!(t.cleanup_policy(), (false, false));
        // APPEND of an invalid element fails validation.
        let err = t
            .incremental(&[op("cleanup.policy", AlterOp::Append, Some("bogus"))], &b)
            .unwrap_err();
        assert_eq!(err.kafka_code(), INVALID_CONFIG);
        // SET and DELETE; the original is untouched.
        let t2 = t
            .incremental(
                &[
                    op("retention.ms", AlterOp::Set, Some("1000")),
                    op("cleanup.policy", AlterOp::Delete, None),
                ],
                &b,
            )
            .expect("valid");
        assert_eq!(t2.to_map().len(), 1);
        assert_eq!(t2.get_override("retention.ms").as_deref(), Some("1000"));
        assert_eq!(t.get_override("cleanup.policy").as_deref(), Some(""));
        // SET with a null value deletes; DELETE of an unset or unknown key is a no-op (KRaft).
        let t3 = t2
            .incremental(
                &[
                    op("retention.ms", AlterOp::Set, None),
                    op("segment.ms", AlterOp::Delete, None),
                    op("not.a.config", AlterOp::Delete, None),
                ],
                &b,
            )
            .expect("valid");
        assert!(t3.is_empty());
    }

    #[test]
    fn incremental_errors() {
        let b = BrokerDefaults::default();
        let t = TopicConfig::defaults(&b);
        let err = t
            .incremental(&[op("retention.ms", AlterOp::Append, Some("5"))], &b)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Can't APPEND to key retention.ms because its type is not LIST."
        );
        assert_eq!(err.kafka_code(), INVALID_CONFIG);
        let err = t
            .incremental(&[op("retention.ms", AlterOp::Subtract, Some("5"))], &b)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Can't SUBTRACT to key retention.ms because its type is not LIST."
        );
        let err = t
            .incremental(&[op("unknown.key", AlterOp::Set, Some("5"))], &b)
            .unwrap_err();
        assert_eq!(err, ConfigError::Unknown("unknown.key".into()));
        let err = t
            .incremental(
                &[
                    op("retention.ms", AlterOp::Set, Some("5")),
                    op("retention.ms", AlterOp::Delete, None),
                ],
                &b,
            )
            .unwrap_err();
        assert_eq!(err.kafka_code(), INVALID_REQUEST);
        let err = t
            .incremental(&[op("segment.ms", AlterOp::Set, Some("0"))], &b)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid value 0 for configuration segment.ms: Value must be at least 1"
        );
        assert_eq!(AlterOp::from_code(2), Some(AlterOp::Append));
        assert_eq!(AlterOp::from_code(4), None);
        assert_eq!(AlterOp::Subtract.code(), 3);
    }

    #[test]
    fn describe_all_order_sources_and_synonyms() {
        let b = broker(&[("log.retention.hours", "24"), ("compression.type", "lz4")]);
        let t = topic(&[("segment.ms", "1000"), ("retention.ms", "5000")], &b).expect("valid");
        let all = t.describe(None, &b);
        let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        let expected: Vec<&str> = TOPIC_CONFIGS.iter().map(|d| d.name).collect();
        assert_eq!(names, expected);
        assert_eq!(t.describe(Some(&[]), &b).len(), TOPIC_CONFIGS.len());
        let get = |n: &str| {
            all.iter()
                .find(|(k, _)| k == n)
                .map(|(_, e)| e.clone())
                .expect(n)
        };

        // Topic override: TOPIC_CONFIG first. The broker's log.retention.hours is not listed:
        // Kafka keeps only synonyms from log.retention.ms (the server default property) on.
        let r = get("retention.ms");
        assert_eq!(r.value.as_deref(), Some("5000"));
        assert_eq!(r.source, ConfigSource::TopicConfig);
        assert!(!r.is_default && !r.read_only && !r.sensitive);
        assert_eq!(r.ty, ConfigType::Long);
        assert_eq!(r.ty.code(), 5);
        let syn = |e: &EffectiveValue| -> Vec<(String, Option<String>, ConfigSource)> {
            e.synonyms
                .iter()
                .map(|s| (s.name.clone(), s.value.clone(), s.source))
                .collect()
        };
        let entry = |n: &str, v: &str, src| (n.to_string(), Some(v.to_string()), src);
        assert_eq!(
            syn(&r),
            vec![entry("retention.ms", "5000", ConfigSource::TopicConfig)]
        );
        // No override, log.retention.hours in the file: Kafka's value is derived from it but the
        // source stays DEFAULT_CONFIG with no synonyms (see BrokerDefaults::synonyms_for).
        let t0 = TopicConfig::defaults(&b);
        let r0 = eff(&t0, "retention.ms", &b);
        assert_eq!(r0.value.as_deref(), Some("86400000"));
        assert_eq!(r0.source, ConfigSource::DefaultConfig);
        assert!(r0.synonyms.is_empty());
        // log.retention.ms in the file: listed as STATIC_BROKER_CONFIG.
        let b_ms = broker(&[("log.retention.ms", "1000"), ("log.retention.hours", "24")]);
        let r1 = eff(&t0, "retention.ms", &b_ms);
        assert_eq!(r1.value.as_deref(), Some("1000"));
        assert_eq!(r1.source, ConfigSource::StaticBrokerConfig);
        assert_eq!(
            syn(&r1),
            vec![
                entry("log.retention.ms", "1000", ConfigSource::StaticBrokerConfig),
                entry(
                    "log.retention.hours",
                    "24",
                    ConfigSource::StaticBrokerConfig
                ),
                entry("log.retention.hours", "168", ConfigSource::DefaultConfig),
            ]
        );

        // From the broker file: STATIC_BROKER_CONFIG.
        let c = get("compression.type");
        assert_eq!(c.value.as_deref(), Some("lz4"));
        assert_eq!(c.source, ConfigSource::StaticBrokerConfig);
        assert_eq!(c.source.code(), 4);

        // Nothing set: DEFAULT_CONFIG with the default synonym.
        let s = get("segment.bytes");
        assert_eq!(s.value.as_deref(), Some("1073741824"));
        assert_eq!(s.source, ConfigSource::DefaultConfig);
        assert!(s.is_default);
        assert_eq!(s.synonyms.len(), 1);
        assert_eq!(s.synonyms[0].name, "log.segment.bytes");
        assert_eq!(s.doc, DOC_SEGMENT_BYTES);

        // No broker synonym at all: DEFAULT_CONFIG, no synonyms.
        let rs = get("remote.storage.enable");
        assert_eq!(rs.value.as_deref(), Some("false"));
        assert_eq!(rs.source, ConfigSource::DefaultConfig);
        assert!(rs.synonyms.is_empty());
        assert_eq!(rs.ty.code(), 1);

        // flush.ms with nothing set: log.flush.interval.ms is null, so no synonyms (as Kafka).
        let f = get("flush.ms");
        assert_eq!(f.value.as_deref(), Some(LONG_MAX));
        assert_eq!(f.source, ConfigSource::DefaultConfig);
        assert!(f.synonyms.is_empty());

        // Requested keys: Kafka order, unknown skipped.
        let keys: Vec<String> = ["segment.ms", "nope", "cleanup.policy"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let some = t.describe(Some(&keys), &b);
        let names: Vec<&str> = some.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["cleanup.policy", "segment.ms"]);
        assert_eq!(some[1].1.value.as_deref(), Some("1000"));
        assert!(t.effective("nope", &b).is_none());
    }

    #[test]
    fn deprecated_timestamp_difference_fallback() {
        let b = BrokerDefaults::default();
        let t = topic(&[("message.timestamp.difference.max.ms", "1000")], &b).expect("valid");
        let s = t.settings().clone();
        assert_eq!(s.timestamp_before_max_ms, 1000);
        assert_eq!(s.timestamp_after_max_ms, 1000);
        assert_eq!(
            eff(&t, "message.timestamp.after.max.ms", &b)
                .value
                .as_deref(),
            Some("1000")
        );
        let t = topic(
            &[
                ("message.timestamp.difference.max.ms", "1000"),
                ("message.timestamp.after.max.ms", "7"),
            ],
            &b,
        )
        .expect("valid");
        let s = t.settings().clone();
        assert_eq!(s.timestamp_before_max_ms, 1000);
        assert_eq!(s.timestamp_after_max_ms, 7);
        let b = broker(&[("log.message.timestamp.difference.max.ms", "99")]);
        let s = TopicConfig::defaults(&b).settings().clone();
        assert_eq!(
            (s.timestamp_before_max_ms, s.timestamp_after_max_ms),
            (99, 99)
        );
        let b = broker(&[
            ("log.message.timestamp.difference.max.ms", "99"),
            ("log.message.timestamp.before.max.ms", "5"),
        ]);
        let s = TopicConfig::defaults(&b).settings().clone();
        assert_eq!(
            (s.timestamp_before_max_ms, s.timestamp_after_max_ms),
            (5, 99)
        );
    }

    #[test]
    fn broker_describe_sources_and_synonyms() {
        let b = broker(&[("log.retention.hours", "24"), ("num.partitions", "3")]);
        let all = b.describe(None);
        assert_eq!(all.len(), BROKER_CONFIGS.len());
        let get = |n: &str| {
            all.iter()
                .find(|(k, _)| k == n)
                .map(|(_, e)| e.clone())
                .expect(n)
        };
        let np = get("num.partitions");
        assert_eq!(np.value.as_deref(), Some("3"));
        assert_eq!(np.source, ConfigSource::StaticBrokerConfig);
        assert!(np.read_only, "num.partitions is read-only in Kafka too");
        assert!(!get("log.retention.ms").read_only);
        assert!(get("log.retention.hours").read_only);
        assert_eq!(
            np.synonyms,
            vec![
                ConfigSynonym {
                    name: "num.partitions".into(),
                    value: Some("3".into()),
                    source: ConfigSource::StaticBrokerConfig
                },
                ConfigSynonym {
                    name: "num.partitions".into(),
                    value: Some("1".into()),
                    source: ConfigSource::DefaultConfig
                },
            ]
        );
        let ms = get("log.retention.ms");
        assert_eq!(ms.value, None, "null default");
        assert_eq!(ms.source, ConfigSource::DefaultConfig);
        assert!(ms.synonyms.is_empty());
        let h = get("log.retention.hours");
        assert_eq!(h.value.as_deref(), Some("24"));
        assert_eq!(h.source, ConfigSource::StaticBrokerConfig);
        let ac = get("auto.create.topics.enable");
        assert_eq!(ac.value.as_deref(), Some("true"));
        assert!(ac.is_default);
        let keys = vec!["num.partitions".to_string(), "bogus".to_string()];
        assert_eq!(b.describe(Some(&keys)).len(), 1);
        assert_eq!(b.num_partitions(), 3);
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn dynamic_broker_configs_follow_kafkas_precedence() {
        let b = broker(&[
            ("log.retention.hours", "24"),
            ("log.segment.bytes", "2097152"),
        ]);
        let d = b
            .with_dynamic(
                &map(&[
                    ("log.retention.ms", "60000"),
                    ("log.segment.bytes", "3145728"),
                ]),
                &map(&[("log.segment.bytes", "4194304")]),
            )
            .unwrap();
        // A dynamic log.retention.ms beats the file's log.retention.hours.
        assert_eq!(d.log_retention_ms(), 60_000);
        let t = TopicConfig::defaults(&d);
        assert_eq!(t.settings().retention_ms, 60_000);
        assert_eq!(
            t.settings().segment_bytes,
            4_194_304,
            "per broker beats the default"
        );
        let seg = t.effective("segment.bytes", &d).unwrap();
        assert_eq!(seg.source, ConfigSource::DynamicBrokerConfig);
        let sources: Vec<ConfigSource> = seg.synonyms.iter().map(|s| s.source).collect();
        assert_eq!(
            sources,
            vec![
                ConfigSource::DynamicBrokerConfig,
                ConfigSource::DynamicDefaultBrokerConfig,
                ConfigSource::StaticBrokerConfig,
                ConfigSource::DefaultConfig
            ]
        );
        let ret = t.effective("retention.ms", &d).unwrap();
        assert_eq!(ret.value.as_deref(), Some("60000"));
        assert_eq!(ret.source, ConfigSource::DynamicDefaultBrokerConfig);
        // The "" resource lists only the dynamic defaults, with their own synonyms only.
        let defaults = d.describe_cluster_default(None);
        let names: Vec<&str> = defaults.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["log.retention.ms", "log.segment.bytes"]);
        assert!(defaults.iter().all(|(_, e)| e.synonyms.len() == 1
            && e.source == ConfigSource::DynamicDefaultBrokerConfig
            && !e.read_only));
        assert_eq!(
            d.dynamic_map(DynamicLevel::ThisBroker),
            map(&[("log.segment.bytes", "4194304")])
        );
        assert_eq!(d.statics_only(), b);
    }

    #[test]
    fn dynamic_broker_config_errors_match_kafka() {
        let b = BrokerDefaults::default();
        let e = b
            .with_dynamic(&map(&[("num.partitions", "3")]), &BTreeMap::new())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Cannot update these configs dynamically: Set(num.partitions)"
        );
        assert_eq!(e.kafka_code(), INVALID_REQUEST);
        assert!(!is_dynamic_broker_config("log.retention.hours"));
        assert!(is_dynamic_broker_config("log.retention.ms"));
        assert!(is_dynamic_broker_config("message.max.bytes"));
        assert!(is_dynamic_broker_config("producer.id.expiration.ms"));
        let e = b
            .with_dynamic(&map(&[("log.retention.ms", "soon")]), &BTreeMap::new())
            .unwrap_err();
        assert!(e.to_string().contains("log.retention.ms"), "{e}");
        assert!(b
            .with_dynamic(&map(&[("bogus.config", "1")]), &BTreeMap::new())
            .is_err());
        // Incremental: duplicates, DELETE, APPEND on a list starting from the effective value.
        let ops = [
            (
                "log.retention.ms".to_string(),
                AlterOp::Set,
                Some("1".to_string()),
            ),
            ("log.retention.ms".to_string(), AlterOp::Delete, None),
        ];
        assert!(apply_dynamic_ops(&BTreeMap::new(), &ops, &b).is_err());
        let ops = [(
            "log.cleanup.policy".to_string(),
            AlterOp::Append,
            Some("compact".to_string()),
        )];
        let next = apply_dynamic_ops(&BTreeMap::new(), &ops, &b).unwrap();
        assert_eq!(next, map(&[("log.cleanup.policy", "delete,compact")]));
        let ops = [("log.cleanup.policy".to_string(), AlterOp::Delete, None)];
        assert!(apply_dynamic_ops(&next, &ops, &b).unwrap().is_empty());
    }

    #[test]
    fn broker_from_pairs_validation() {
        let err =
            BrokerDefaults::from_pairs([("log.retention.hourz".into(), "1".into())]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Unknown broker config name: log.retention.hourz"
        );
        let err = BrokerDefaults::from_pairs([("num.partitions".into(), "0".into())]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid value 0 for configuration num.partitions: Value must be at least 1"
        );
        let err =
            BrokerDefaults::from_pairs([("log.segment.bytes".into(), "100".into())]).unwrap_err();
        assert!(err.to_string().contains("Value must be at least 1048576"));
        assert!(BrokerDefaults::from_pairs([(
            "remote.log.storage.system.enable".into(),
            "true".into()
        )])
        .is_err());
        let err = BrokerDefaults::from_pairs([
            ("group.consumer.session.timeout.ms".into(), "50000".into()),
            (
                "group.consumer.max.session.timeout.ms".into(),
                "45000".into(),
            ),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("must be"), "{err}");
        let err = BrokerDefaults::from_pairs([("log.roll.ms".into(), "0".into())]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "log.roll.ms must be greater than or equal to 1"
        );
        let b = broker(&[
            ("offsets.topic.replication.factor", "1"),
            ("socket.request.max.bytes", "1048576"),
        ]);
        assert_eq!(b.offsets_topic_replication_factor(), 1);
        assert_eq!(b.socket_request_max_bytes(), 1_048_576);
        assert!(
            BrokerDefaults::from_pairs([(
                "offsets.topic.replication.factor".into(),
                "40000".into()
            )])
            .is_err(),
            "SHORT range"
        );
        // Broker defaults flow into topics.
        let b = broker(&[
            ("log.cleanup.policy", "compact"),
            ("min.insync.replicas", "2"),
            ("log.message.timestamp.type", "LogAppendTime"),
        ]);
        let t = TopicConfig::defaults(&b);
        assert_eq!(t.cleanup_policy(), (false, true));
        assert_eq!(t.min_insync_replicas(), 2);
        assert!(t.timestamp_type_log_append());
    }

    #[test]
    fn broker_ringtail_extension_and_replication_factor() {
        let b = broker(&[
            ("ringtail.acks.all.fsync", "false"),
            ("default.replication.factor", "3"),
        ]);
        assert!(!b.acks_all_fsync());
        assert_eq!(b.default_replication_factor(), 3_i16);
        let b = broker(&[("default.replication.factor", "100000")]);
        assert_eq!(b.default_replication_factor(), i16::MAX, "saturates");
        // The broker-aware constructor and Default agree when there is no file.
        assert_eq!(
            TopicConfig::default(),
            TopicConfig::defaults(&BrokerDefaults::default())
        );
    }

    #[test]
    fn broker_lenient_returns_unknown_names() {
        let pairs = [
            ("log.dirs".to_string(), "/data".to_string()),
            ("num.partitions".to_string(), "4".to_string()),
        ];
        let (b, unknown) = BrokerDefaults::from_pairs_lenient(pairs.clone()).expect("valid");
        assert_eq!(unknown, vec!["log.dirs".to_string()]);
        assert_eq!(b.num_partitions(), 4);
        assert_eq!(
            BrokerDefaults::from_pairs(pairs).unwrap_err(),
            ConfigError::UnknownBroker("log.dirs".into())
        );
        // Known names are still validated.
        assert!(
            BrokerDefaults::from_pairs_lenient([("num.partitions".into(), "x".into())]).is_err()
        );
    }

    #[test]
    fn broker_from_json_values() {
        let v = serde_json::json!({
            "log.retention.hours": 24,
            "auto.create.topics.enable": false,
            "log.cleanup.policy": ["delete", "compact"],
            "compression.type": "zstd",
            "log.cleaner.min.cleanable.ratio": 0.25
        });
        let map = v.as_object().cloned().unwrap_or_default();
        let b = BrokerDefaults::from_json_values(map).expect("valid");
        assert_eq!(b.log_retention_ms(), 86_400_000);
        assert!(!b.auto_create_topics_enable());
        let t = TopicConfig::defaults(&b);
        assert_eq!(t.cleanup_policy(), (true, true));
        assert_eq!(t.compression_type(), CompressionType::Zstd);
        assert!((t.settings().clone().min_cleanable_dirty_ratio - 0.25).abs() < f64::EPSILON);
        let bad = serde_json::json!({"num.partitions": null});
        let map = bad.as_object().cloned().unwrap_or_default();
        assert!(BrokerDefaults::from_json_values(map).is_err());
    }

    #[test]
    fn persistence_round_trip() {
        let b = BrokerDefaults::default();
        let t = topic(
            &[
                ("cleanup.policy", "compact, delete"),
                ("retention.ms", "100"),
                ("min.cleanable.dirty.ratio", ".25"),
            ],
            &b,
        )
        .expect("valid");
        let map = t.to_map();
        let json = serde_json::to_string(&map).expect("serialise");
        assert_eq!(
            json,
            r#"{"cleanup.policy":"compact,delete","min.cleanable.dirty.ratio":"0.25","retention.ms":"100"}"#
        );
        let back: BTreeMap<String, String> = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(TopicConfig::from_map(back, &b).expect("valid"), t);
        // Stored junk is refused, not silently accepted.
        let junk = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert!(TopicConfig::from_map(junk("retention.ms", "x"), &b).is_err());
        assert!(TopicConfig::from_map(junk("bogus", "1"), &b).is_err());
        // Cross-config rules are not re-checked on load: a broker file change cannot make a
        // stored topic unloadable.
        let strict = broker(&[("log.cleaner.max.compaction.lag.ms", "10")]);
        let stored = junk("min.compaction.lag.ms", "50");
        assert!(TopicConfig::validate_and_build(
            stored.clone().into_iter().map(|(k, v)| (k, Some(v))),
            &strict
        )
        .is_err());
        let loaded = TopicConfig::from_map(stored, &strict).expect("loads");
        assert_eq!(loaded.settings().min_compaction_lag_ms, 50);
        assert_eq!(loaded.settings().max_compaction_lag_ms, 10);
    }

    #[test]
    fn canonical_strings_reparse_identically() {
        // Whatever a client sends, the stored/described canonical form must parse back to the
        // same value (persistence and DescribeConfigs depend on it).
        for def in TOPIC_CONFIGS.iter().chain(INTERNAL_TOPIC_CONFIGS.iter()) {
            let samples: Vec<String> = match def.ty {
                ConfigType::Boolean => vec!["true".into(), " FALSE ".into(), "True".into()],
                ConfigType::Double => vec!["0".into(), ".25".into(), "1e-1".into(), " 1 ".into()],
                ConfigType::List => vec![
                    def.default.into(),
                    " compact , delete ".into(),
                    "0:1, 2:3".into(),
                    "*".into(),
                ],
                ConfigType::Int | ConfigType::Short | ConfigType::Long => vec![
                    " +1048576 ".into(),
                    "2147483647".into(),
                    "9".into(),
                    "-1".into(),
                    "-2".into(),
                ],
                _ => vec![def.default.into()],
            };
            for raw in samples {
                let Ok(first) = parse_value(def.name, def.ty, def.validator, &raw) else {
                    continue; // out of this config's range: covered by the invalid-value tests
                };
                let canonical = first.to_kafka_string();
                let again = parse_value(def.name, def.ty, def.validator, &canonical)
                    .unwrap_or_else(|e| panic!("{}: {raw:?} -> {canonical:?}: {e}", def.name));
                assert_eq!(again, first, "{} {raw:?}", def.name);
                assert_eq!(again.to_kafka_string(), canonical, "{} {raw:?}", def.name);
            }
        }
    }

    #[test]
    fn java_double_formatting() {
        assert_eq!(java_double_string(0.5), "0.5");
        assert_eq!(java_double_string(1.0), "1.0");
        assert_eq!(java_double_string(0.0), "0.0");
        assert_eq!(java_double_string(1e-4), "1.0E-4");
        assert_eq!(java_double_string(1.5e-4), "1.5E-4");
        assert_eq!(java_double_string(0.001), "0.001");
    }

    #[test]
    fn wire_codes() {
        let codes: Vec<i8> = [
            ConfigType::Boolean,
            ConfigType::String,
            ConfigType::Int,
            ConfigType::Short,
            ConfigType::Long,
            ConfigType::Double,
            ConfigType::List,
            ConfigType::Class,
            ConfigType::Password,
        ]
        .iter()
        .map(|t| t.code())
        .collect();
        assert_eq!(codes, vec![1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let sources: Vec<i8> = [
            ConfigSource::TopicConfig,
            ConfigSource::DynamicBrokerConfig,
            ConfigSource::DynamicDefaultBrokerConfig,
            ConfigSource::StaticBrokerConfig,
            ConfigSource::DefaultConfig,
        ]
        .iter()
        .map(|s| s.code())
        .collect();
        assert_eq!(sources, vec![1, 2, 3, 4, 5]);
        assert_eq!(CompressionType::Producer.batch_codec(), None);
        assert_eq!(CompressionType::Uncompressed.batch_codec(), Some(0));
    }
}
