//! `ringtail topic ...`: CreateTopics, DeleteTopics and CreatePartitions sent to the
//! controller; Metadata and per-leader ListOffsets for `list`/`describe` (and
//! DescribeLogDirs for partition sizes when the brokers advertise it); DescribeConfigs and
//! IncrementalAlterConfigs for configs.

use std::collections::BTreeMap;

use anyhow::bail;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, DescribeLogDirsRequest, DescribeLogDirsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, RequestKind,
};
use serde_json::json;

use super::offsets::{self, Tp};
use super::output::{dash, print_json, table, Format};
use super::wire::{str_bytes, topic_name, Client, KafkaError};
use super::{parse_key_value, ConnArgs};

/// How long the controller may take for a create/delete/add-partitions.
const ADMIN_TIMEOUT_MS: i32 = 30_000;
/// Kafka's resource type of a topic in config requests.
const RESOURCE_TOPIC: i8 = 2;

#[derive(clap::Args, Debug)]
pub struct TopicArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(subcommand)]
    pub command: TopicCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum TopicCommand {
    /// Create topics.
    Create {
        #[arg(required = true)]
        topics: Vec<String>,
        /// Partitions per topic [default: the broker's num.partitions].
        #[arg(short, long, default_value_t = -1, allow_negative_numbers = true)]
        partitions: i32,
        /// Replication factor [default: the broker's default.replication.factor].
        #[arg(short, long, default_value_t = -1, allow_negative_numbers = true)]
        replicas: i16,
        /// Topic config KEY=VALUE (repeatable), e.g. -c retention.ms=3600000.
        #[arg(short, long)]
        config: Vec<String>,
    },
    /// List topics with their partition count and replication factor.
    List {
        /// Also list internal topics (__consumer_offsets, ...).
        #[arg(short, long)]
        internal: bool,
    },
    /// Partitions of a topic: leader, replicas, ISR, log start/end offsets (and sizes when the
    /// brokers answer DescribeLogDirs).
    Describe { topic: String },
    /// Delete topics.
    Delete {
        #[arg(required = true)]
        topics: Vec<String>,
    },
    /// Add partitions to a topic.
    AddPartitions {
        topic: String,
        /// How many partitions to add.
        #[arg(short, long)]
        num: i32,
    },
    /// Set (--set KEY=VALUE) or remove (--delete KEY) topic configs.
    AlterConfig {
        topic: String,
        #[arg(long)]
        set: Vec<String>,
        #[arg(long)]
        delete: Vec<String>,
    },
    /// Every config of a topic with its value and where it comes from.
    DescribeConfig { topic: String },
}

pub fn run(args: TopicArgs) -> anyhow::Result<()> {
    let format = args.conn.output()?;
    let mut client = args.conn.client()?;
    match args.command {
        TopicCommand::Create {
            topics,
            partitions,
            replicas,
            config,
        } => create(&mut client, format, &topics, partitions, replicas, &config),
        TopicCommand::List { internal } => list(&mut client, format, internal),
        TopicCommand::Describe { topic } => describe(&mut client, format, &topic),
        TopicCommand::Delete { topics } => delete(&mut client, format, &topics),
        TopicCommand::AddPartitions { topic, num } => {
            add_partitions(&mut client, format, &topic, num)
        }
        TopicCommand::AlterConfig { topic, set, delete } => {
            alter_config(&mut client, format, &topic, &set, &delete)
        }
        TopicCommand::DescribeConfig { topic } => describe_config(&mut client, format, &topic),
    }
}

/// Prints one status row per topic and fails with the first error.
fn report(
    format: Format,
    results: Vec<(String, Result<(), KafkaError>)>,
    done: &str,
) -> anyhow::Result<()> {
    match format {
        Format::Json => print_json(&json!(results
            .iter()
            .map(|(t, r)| json!({"topic": t, "error": r.as_ref().err().map(|e| e.to_string())}))
            .collect::<Vec<_>>()))?,
        Format::Table => {
            let rows: Vec<Vec<String>> = results
                .iter()
                .filter(|(_, r)| r.is_ok())
                .map(|(t, _)| vec![t.clone(), done.to_string()])
                .collect();
            if !rows.is_empty() {
                print!("{}", table(&["TOPIC", "STATUS"], &rows));
            }
        }
    }
    match results.into_iter().find_map(|(_, r)| r.err()) {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

fn create(
    client: &mut Client,
    format: Format,
    topics: &[String],
    partitions: i32,
    replicas: i16,
    config: &[String],
) -> anyhow::Result<()> {
    let configs = config
        .iter()
        .map(|c| {
            let (k, v) = parse_key_value(c)?;
            let mut tc = CreatableTopicConfig::default();
            tc.name = str_bytes(&k);
            tc.value = Some(str_bytes(&v));
            Ok(tc)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut req = CreateTopicsRequest::default();
    req.timeout_ms = ADMIN_TIMEOUT_MS;
    req.topics = topics
        .iter()
        .map(|t| {
            let mut ct = CreatableTopic::default();
            ct.name = topic_name(t);
            ct.num_partitions = partitions;
            ct.replication_factor = replicas;
            ct.configs = configs.clone();
            ct
        })
        .collect();
    // v4+: -1 partitions/replicas mean the broker's defaults (KIP-464).
    let resp: CreateTopicsResponse =
        client
            .controller()?
            .call(ApiKey::CreateTopics, 4..=7, RequestKind::CreateTopics(req))?;
    let results = resp
        .topics
        .iter()
        .map(|t| {
            (
                t.name.0.to_string(),
                KafkaError::check(t.error_code, t.error_message.as_ref(), ""),
            )
        })
        .collect();
    report(format, results, "CREATED")
}

fn delete(client: &mut Client, format: Format, topics: &[String]) -> anyhow::Result<()> {
    let mut req = DeleteTopicsRequest::default();
    req.timeout_ms = ADMIN_TIMEOUT_MS;
    req.topic_names = topics.iter().map(|t| topic_name(t)).collect();
    // v1-v5 name topics in `topic_names` (v6 moved to `topics` with ids).
    let resp: DeleteTopicsResponse =
        client
            .controller()?
            .call(ApiKey::DeleteTopics, 1..=5, RequestKind::DeleteTopics(req))?;
    let results = resp
        .responses
        .iter()
        .map(|t| {
            let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
            let ctx = format!("Topic '{name}' does not exist.");
            let r = KafkaError::check(t.error_code, t.error_message.as_ref(), &ctx);
            (name, r)
        })
        .collect();
    report(format, results, "DELETED")
}

fn list(client: &mut Client, format: Format, internal: bool) -> anyhow::Result<()> {
    let mut topics = client.metadata(None)?;
    topics.retain(|t| internal || !t.internal);
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    let replicas =
        |t: &super::wire::TopicMeta| t.partitions.first().map(|p| p.replicas.len()).unwrap_or(0);
    match format {
        Format::Json => print_json(&json!(topics
            .iter()
            .map(|t| json!({
                "name": t.name,
                "partitions": t.partitions.len(),
                "replicas": replicas(t),
                "internal": t.internal,
            }))
            .collect::<Vec<_>>())),
        Format::Table => {
            let rows: Vec<Vec<String>> = topics
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        t.partitions.len().to_string(),
                        replicas(t).to_string(),
                    ]
                })
                .collect();
            print!("{}", table(&["NAME", "PARTITIONS", "REPLICAS"], &rows));
            Ok(())
        }
    }
}

/// Bytes on disk per partition, summed over the log dirs of the partition's leader; None when
/// a leader does not support DescribeLogDirs (the column is then left out).
fn partition_sizes(
    client: &mut Client,
    topic: &str,
    leaders: &BTreeMap<Tp, i32>,
) -> anyhow::Result<Option<BTreeMap<i32, i64>>> {
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for ((_, p), leader) in leaders {
        by_leader.entry(*leader).or_default().push(*p);
    }
    let mut sizes = BTreeMap::new();
    for (leader, partitions) in by_leader {
        let conn = client.broker(leader)?;
        if !conn.supports(ApiKey::DescribeLogDirs) {
            return Ok(None);
        }
        let mut dt = DescribableLogDirTopic::default();
        dt.topic = topic_name(topic);
        dt.partitions = partitions.clone();
        let mut req = DescribeLogDirsRequest::default();
        req.topics = Some(vec![dt]);
        let resp: DescribeLogDirsResponse = conn.call(
            ApiKey::DescribeLogDirs,
            1..=4,
            RequestKind::DescribeLogDirs(req),
        )?;
        KafkaError::check(resp.error_code, None, "DescribeLogDirs")?;
        for dir in resp.results.iter().filter(|d| d.error_code == 0) {
            for t in dir.topics.iter().filter(|t| t.name.0.as_str() == topic) {
                for p in t.partitions.iter().filter(|p| !p.is_future_key) {
                    if partitions.contains(&p.partition_index) {
                        *sizes.entry(p.partition_index).or_insert(0) += p.partition_size;
                    }
                }
            }
        }
    }
    Ok(Some(sizes))
}

fn describe(client: &mut Client, format: Format, topic: &str) -> anyhow::Result<()> {
    let meta = client.topic(topic)?;
    let leaders = offsets::leaders(std::slice::from_ref(&meta));
    let tps: Vec<Tp> = leaders.keys().cloned().collect();
    let starts = offsets::list_offsets(client, &leaders, &tps, offsets::EARLIEST)?;
    let ends = offsets::list_offsets(client, &leaders, &tps, offsets::LATEST)?;
    let sizes = partition_sizes(client, topic, &leaders)?;
    let key = |p: i32| (topic.to_string(), p);
    let ids = |v: &[i32]| {
        v.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    match format {
        Format::Json => print_json(&json!({
            "name": meta.name,
            "internal": meta.internal,
            "partitions": meta.partitions.iter().map(|p| json!({
                "partition": p.partition,
                "leader": p.leader,
                "replicas": p.replicas,
                "isr": p.isr,
                "error": (p.error_code != 0).then(|| super::wire::error_name(p.error_code)),
                "log_start_offset": starts.get(&key(p.partition)),
                "log_end_offset": ends.get(&key(p.partition)),
                "size_bytes": sizes.as_ref().and_then(|s| s.get(&p.partition)),
            })).collect::<Vec<_>>(),
        })),
        Format::Table => {
            println!("NAME        {}", meta.name);
            println!("PARTITIONS  {}", meta.partitions.len());
            println!(
                "REPLICAS    {}",
                meta.partitions
                    .first()
                    .map(|p| p.replicas.len())
                    .unwrap_or(0)
            );
            println!();
            let mut headers = vec![
                "PARTITION",
                "LEADER",
                "REPLICAS",
                "ISR",
                "LOG-START-OFFSET",
                "LOG-END-OFFSET",
            ];
            if sizes.is_some() {
                headers.push("SIZE");
            }
            let rows: Vec<Vec<String>> = meta
                .partitions
                .iter()
                .map(|p| {
                    let mut row = vec![
                        p.partition.to_string(),
                        if p.leader >= 0 {
                            p.leader.to_string()
                        } else {
                            "-".to_string()
                        },
                        ids(&p.replicas),
                        ids(&p.isr),
                        dash(starts.get(&key(p.partition))),
                        dash(ends.get(&key(p.partition))),
                    ];
                    if let Some(s) = &sizes {
                        row.push(dash(s.get(&p.partition)));
                    }
                    row
                })
                .collect();
            print!("{}", table(&headers, &rows));
            Ok(())
        }
    }
}

fn add_partitions(
    client: &mut Client,
    format: Format,
    topic: &str,
    num: i32,
) -> anyhow::Result<()> {
    if num <= 0 {
        bail!("--num must be at least 1");
    }
    let meta = client.topic(topic)?;
    let count = i32::try_from(meta.partitions.len())?.saturating_add(num);
    let mut t = CreatePartitionsTopic::default();
    t.name = topic_name(topic);
    t.count = count;
    let mut req = CreatePartitionsRequest::default();
    req.timeout_ms = ADMIN_TIMEOUT_MS;
    req.topics = vec![t];
    let resp: CreatePartitionsResponse = client.controller()?.call(
        ApiKey::CreatePartitions,
        0..=3,
        RequestKind::CreatePartitions(req),
    )?;
    for r in &resp.results {
        KafkaError::check(r.error_code, r.error_message.as_ref(), "")?;
    }
    match format {
        Format::Json => print_json(&json!({"topic": topic, "partitions": count, "added": num})),
        Format::Table => {
            println!("{topic}: {count} partitions (added {num})");
            Ok(())
        }
    }
}

fn alter_config(
    client: &mut Client,
    format: Format,
    topic: &str,
    set: &[String],
    delete: &[String],
) -> anyhow::Result<()> {
    if set.is_empty() && delete.is_empty() {
        bail!("nothing to change: give --set KEY=VALUE and/or --delete KEY");
    }
    let mut configs = Vec::new();
    for s in set {
        let (k, v) = parse_key_value(s)?;
        let mut c = AlterableConfig::default();
        c.name = str_bytes(&k);
        c.config_operation = 0; // SET
        c.value = Some(str_bytes(&v));
        configs.push(c);
    }
    for k in delete {
        let mut c = AlterableConfig::default();
        c.name = str_bytes(k);
        c.config_operation = 1; // DELETE
        c.value = None;
        configs.push(c);
    }
    let mut res = AlterConfigsResource::default();
    res.resource_type = RESOURCE_TOPIC;
    res.resource_name = str_bytes(topic);
    res.configs = configs;
    let mut req = IncrementalAlterConfigsRequest::default();
    req.resources = vec![res];
    let resp: IncrementalAlterConfigsResponse = client.controller()?.call(
        ApiKey::IncrementalAlterConfigs,
        0..=1,
        RequestKind::IncrementalAlterConfigs(req),
    )?;
    for r in &resp.responses {
        KafkaError::check(r.error_code, r.error_message.as_ref(), "")?;
    }
    match format {
        Format::Json => print_json(&json!({"topic": topic, "set": set, "deleted": delete})),
        Format::Table => {
            println!("{topic}: configs updated");
            Ok(())
        }
    }
}

/// Kafka's names of config sources (DescribeConfigs `config_source`).
fn source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

fn describe_config(client: &mut Client, format: Format, topic: &str) -> anyhow::Result<()> {
    let mut res = DescribeConfigsResource::default();
    res.resource_type = RESOURCE_TOPIC;
    res.resource_name = str_bytes(topic);
    res.configuration_keys = None;
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![res];
    let resp: DescribeConfigsResponse = client.any()?.call(
        ApiKey::DescribeConfigs,
        1..=4,
        RequestKind::DescribeConfigs(req),
    )?;
    let Some(r) = resp.results.first() else {
        bail!("DescribeConfigs answered no resource");
    };
    KafkaError::check(
        r.error_code,
        r.error_message.as_ref(),
        &format!("Topic '{topic}' does not exist."),
    )?;
    let mut configs: Vec<_> = r.configs.iter().collect();
    configs.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    let value =
        |c: &kafka_protocol::messages::describe_configs_response::DescribeConfigsResourceResult| {
            if c.is_sensitive {
                "(sensitive)".to_string()
            } else {
                c.value.as_ref().map(|v| v.to_string()).unwrap_or_default()
            }
        };
    match format {
        Format::Json => print_json(&json!(configs
            .iter()
            .map(|c| json!({
                "name": c.name.as_str(),
                "value": value(c),
                "source": source_name(c.config_source),
                "read_only": c.read_only,
            }))
            .collect::<Vec<_>>())),
        Format::Table => {
            let rows: Vec<Vec<String>> = configs
                .iter()
                .map(|c| {
                    vec![
                        c.name.to_string(),
                        value(c),
                        source_name(c.config_source).to_string(),
                    ]
                })
                .collect();
            print!("{}", table(&["KEY", "VALUE", "SOURCE"], &rows));
            Ok(())
        }
    }
}
