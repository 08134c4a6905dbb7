//! `ringtail txn`: transactions of a running broker, in the spirit of `kafka-transactions.sh`.
//!
//! - `ringtail txn list`: every transactional id with its state, producer id and epoch, and for
//!   open transactions how long they have run and which partitions they hold
//!   (ListTransactions, then DescribeTransactions at the coordinators).
//! - `ringtail txn abort TRANSACTIONAL_ID`: abort the id's open (hanging) transaction. It
//!   sends InitProducerId for the id, as a new producer instance would: the coordinator fences
//!   the current producer (epoch bump) and writes ABORT markers, so the partitions' last
//!   stable offsets move on. Works against any Kafka broker; the live producer, if any, is
//!   fenced and must re-initialise.

use std::time::{Duration, Instant};

use anyhow::bail;
use kafka_protocol::messages::{
    ApiKey, DescribeTransactionsRequest, DescribeTransactionsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, InitProducerIdRequest, InitProducerIdResponse,
    ListTransactionsRequest, ListTransactionsResponse, RequestKind, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::wire::Connection;

/// How long `abort` retries while the coordinator completes the abort.
const ABORT_WAIT: Duration = Duration::from_secs(60);
/// The transaction timeout `abort`'s InitProducerId asks for (Kafka's client default).
const ABORT_TXN_TIMEOUT_MS: i32 = 60_000;

#[derive(clap::Args, Debug)]
pub struct TxnArgs {
    /// A broker of the cluster, HOST:PORT.
    #[arg(
        long,
        global = true,
        env = "RINGTAIL_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap: String,
    #[command(subcommand)]
    pub command: TxnCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum TxnCommand {
    /// List the transactional ids and their transactions.
    List,
    /// Abort the open transaction of a transactional id (fences its producer).
    Abort { transactional_id: String },
}

pub fn run_txn(args: TxnArgs) -> anyhow::Result<()> {
    match args.command {
        TxnCommand::List => list(&args.bootstrap),
        TxnCommand::Abort { transactional_id } => abort(&args.bootstrap, &transactional_id),
    }
}

fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?} ({code})"),
        None => format!("error code {code}"),
    }
}

/// A connection to the coordinator of `transactional_id`.
fn coordinator(bootstrap: &str, transactional_id: &str) -> anyhow::Result<Connection> {
    let deadline = Instant::now() + ABORT_WAIT;
    loop {
        let mut conn = Connection::connect(bootstrap)?;
        let mut req = FindCoordinatorRequest::default();
        req.key = StrBytes::from_string(transactional_id.to_string());
        req.key_type = 1;
        let resp: FindCoordinatorResponse = conn.call_at(
            ApiKey::FindCoordinator,
            3,
            RequestKind::FindCoordinator(req),
        )?;
        match resp.error_code {
            0 => return Connection::connect(&format!("{}:{}", resp.host.as_str(), resp.port)),
            code if Instant::now() < deadline
                && (code == ResponseError::CoordinatorLoadInProgress.code()
                    || code == ResponseError::CoordinatorNotAvailable.code()) =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            code => bail!("FindCoordinator({transactional_id}): {}", error_name(code)),
        }
    }
}

fn list(bootstrap: &str) -> anyhow::Result<()> {
    let mut conn = Connection::connect(bootstrap)?;
    let resp: ListTransactionsResponse = conn.call_at(
        ApiKey::ListTransactions,
        0,
        RequestKind::ListTransactions(ListTransactionsRequest::default()),
    )?;
    if resp.error_code != 0 {
        eprintln!("warning: {}", error_name(resp.error_code));
    }
    let mut ids: Vec<String> = resp
        .transaction_states
        .iter()
        .map(|t| t.transactional_id.0.to_string())
        .collect();
    ids.sort();
    println!(
        "{:<40} {:<15} {:>12} {:>6} {:>12}  PARTITIONS",
        "TRANSACTIONAL-ID", "STATE", "PRODUCER-ID", "EPOCH", "RUNNING-MS"
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    for id in ids {
        let mut coord = coordinator(bootstrap, &id)?;
        let mut req = DescribeTransactionsRequest::default();
        req.transactional_ids = vec![TransactionalId(StrBytes::from_string(id.clone()))];
        let described: DescribeTransactionsResponse = coord.call_at(
            ApiKey::DescribeTransactions,
            0,
            RequestKind::DescribeTransactions(req),
        )?;
        for t in described.transaction_states {
            if t.error_code != 0 {
                println!("{id:<40} {}", error_name(t.error_code));
                continue;
            }
            let running = if t.transaction_start_time_ms >= 0 {
                (now_ms - t.transaction_start_time_ms).to_string()
            } else {
                "-".to_string()
            };
            let partitions: Vec<String> = t
                .topics
                .iter()
                .flat_map(|topic| {
                    topic
                        .partitions
                        .iter()
                        .map(move |p| format!("{}-{p}", topic.topic.0.as_str()))
                })
                .collect();
            println!(
                "{:<40} {:<15} {:>12} {:>6} {:>12}  {}",
                id,
                t.transaction_state.as_str(),
                t.producer_id.0,
                t.producer_epoch,
                running,
                partitions.join(",")
            );
        }
    }
    Ok(())
}

fn abort(bootstrap: &str, transactional_id: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + ABORT_WAIT;
    loop {
        let mut conn = coordinator(bootstrap, transactional_id)?;
        let mut req = InitProducerIdRequest::default();
        req.transactional_id = Some(TransactionalId(StrBytes::from_string(
            transactional_id.to_string(),
        )));
        req.transaction_timeout_ms = ABORT_TXN_TIMEOUT_MS;
        req.producer_id = kafka_protocol::messages::ProducerId(-1);
        req.producer_epoch = -1;
        let resp: InitProducerIdResponse =
            conn.call_at(ApiKey::InitProducerId, 2, RequestKind::InitProducerId(req))?;
        match resp.error_code {
            0 => {
                println!(
                    "{transactional_id}: no open transaction left (producer id {}, epoch {})",
                    resp.producer_id.0, resp.producer_epoch
                );
                return Ok(());
            }
            code if Instant::now() < deadline
                && (code == ResponseError::ConcurrentTransactions.code()
                    || code == ResponseError::CoordinatorLoadInProgress.code()
                    || code == ResponseError::NotCoordinator.code()) =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            code => bail!("aborting {transactional_id}: {}", error_name(code)),
        }
    }
}
