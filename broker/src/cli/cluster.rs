//! `ringtail cluster info`: the brokers, the controller and the cluster id (DescribeCluster
//! when the broker advertises it, else Metadata), topic and partition counts (Metadata), and
//! the API versions of the bootstrap broker (the Kafka protocol carries no software version;
//! the API ranges are what a client can rely on).

use kafka_protocol::messages::{
    ApiKey, DescribeClusterRequest, DescribeClusterResponse, RequestKind,
};
use serde_json::json;

use super::output::{dash, print_json, table, Format};
use super::wire::{BrokerMeta, KafkaError};
use super::ConnArgs;

#[derive(clap::Args, Debug)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// Brokers, controller, cluster id, API versions, topic and partition counts.
    Info,
}

/// The APIs whose ranges the table shows (all of them in JSON).
const SHOWN_APIS: [ApiKey; 4] = [
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::Metadata,
    ApiKey::OffsetCommit,
];

pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let format = args.conn.output()?;
    let mut client = args.conn.client()?;
    let ClusterCommand::Info = args.command;
    let topics = client.metadata(None)?;
    let (cluster_id, controller, brokers, fenced, source) = {
        let conn = client.any()?;
        if conn.supports(ApiKey::DescribeCluster) {
            // v2 lists fenced brokers too (marked), so offline replicas can be told apart.
            let version = conn.version(ApiKey::DescribeCluster, 0..=2)?;
            let mut req = DescribeClusterRequest::default();
            req.include_fenced_brokers = version >= 2;
            let resp: DescribeClusterResponse = conn.call_at(
                ApiKey::DescribeCluster,
                version,
                RequestKind::DescribeCluster(req),
            )?;
            KafkaError::check(
                resp.error_code,
                resp.error_message.as_ref(),
                "DescribeCluster",
            )?;
            let brokers: Vec<BrokerMeta> = resp
                .brokers
                .iter()
                .map(|b| BrokerMeta {
                    id: b.broker_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                })
                .collect();
            let fenced: Vec<i32> = resp
                .brokers
                .iter()
                .filter(|b| b.is_fenced)
                .map(|b| b.broker_id.0)
                .collect();
            (
                Some(resp.cluster_id.to_string()),
                resp.controller_id.0,
                brokers,
                fenced,
                "DescribeCluster",
            )
        } else {
            (
                client.cluster_id.clone(),
                client.controller_id,
                client.brokers.values().cloned().collect(),
                Vec::new(),
                "Metadata",
            )
        }
    };
    // Per broker: partitions it leads and replicas it holds; replicas on brokers that are
    // fenced or not listed at all are offline.
    let live = |id: i32| brokers.iter().any(|b| b.id == id) && !fenced.contains(&id);
    let mut leads: std::collections::BTreeMap<i32, usize> = Default::default();
    let mut holds: std::collections::BTreeMap<i32, usize> = Default::default();
    let mut offline_partitions = 0usize;
    let mut offline_replicas = 0usize;
    // Partitions whose ISR is smaller than their replica set (Kafka's under-replicated).
    let mut under_replicated = 0usize;
    for p in topics.iter().flat_map(|t| t.partitions.iter()) {
        if p.isr.len() < p.replicas.len() {
            under_replicated += 1;
        }
        if p.leader >= 0 && live(p.leader) {
            *leads.entry(p.leader).or_default() += 1;
        } else {
            offline_partitions += 1;
        }
        for r in &p.replicas {
            *holds.entry(*r).or_default() += 1;
            if !live(*r) {
                offline_replicas += 1;
            }
        }
    }
    let versions = client.any()?.api_versions();
    let user_topics = topics.iter().filter(|t| !t.internal).count();
    let partitions: usize = topics.iter().map(|t| t.partitions.len()).sum();
    let bootstrap = client.any()?.addr().to_string();
    match format {
        Format::Json => print_json(&json!({
            "cluster_id": cluster_id,
            "controller_id": controller,
            "brokers": brokers,
            "topics": user_topics,
            "internal_topics": topics.len() - user_topics,
            "partitions": partitions,
            "offline_partitions": offline_partitions,
            "offline_replicas": offline_replicas,
            "under_replicated_partitions": under_replicated,
            "fenced_brokers": fenced,
            "partitions_per_broker": brokers.iter().map(|b| json!({
                "id": b.id,
                "leader": leads.get(&b.id).copied().unwrap_or(0),
                "replicas": holds.get(&b.id).copied().unwrap_or(0),
                "fenced": fenced.contains(&b.id),
            })).collect::<Vec<_>>(),
            "source": source,
            "api_versions": versions.iter().map(|(k, (min, max))| json!({
                "api_key": k,
                "name": ApiKey::try_from(*k).map(|a| format!("{a:?}")).unwrap_or_default(),
                "min_version": min,
                "max_version": max,
            })).collect::<Vec<_>>(),
        })),
        Format::Table => {
            let apis: Vec<String> = SHOWN_APIS
                .iter()
                .filter_map(|a| {
                    versions
                        .get(&(*a as i16))
                        .map(|(min, max)| format!("{a:?} v{min}-{max}"))
                })
                .collect();
            let summary = vec![
                vec!["cluster-id".to_string(), dash(cluster_id)],
                vec!["controller".to_string(), controller.to_string()],
                vec!["topics".to_string(), user_topics.to_string()],
                vec!["partitions".to_string(), partitions.to_string()],
                vec![
                    "offline".to_string(),
                    format!("{offline_partitions} partition(s), {offline_replicas} replica(s)"),
                ],
                vec![
                    "under-replicated".to_string(),
                    format!("{under_replicated} partition(s)"),
                ],
                vec![
                    "api-versions".to_string(),
                    format!(
                        "{} APIs at {bootstrap} ({})",
                        versions.len(),
                        apis.join(", ")
                    ),
                ],
            ];
            print!("{}", table(&["CLUSTER", ""], &summary));
            println!();
            let rows: Vec<Vec<String>> = brokers
                .iter()
                .map(|b| {
                    let id = if b.id == controller {
                        format!("{}*", b.id)
                    } else {
                        b.id.to_string()
                    };
                    vec![
                        id,
                        b.host.clone(),
                        b.port.to_string(),
                        dash(b.rack.clone()),
                        if fenced.contains(&b.id) {
                            "fenced"
                        } else {
                            "live"
                        }
                        .to_string(),
                        leads.get(&b.id).copied().unwrap_or(0).to_string(),
                        holds.get(&b.id).copied().unwrap_or(0).to_string(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &["ID", "HOST", "PORT", "RACK", "STATE", "LEADS", "REPLICAS"],
                    &rows
                )
            );
            Ok(())
        }
    }
}
