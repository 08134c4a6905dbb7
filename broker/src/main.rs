//! `ringtail`: the broker (`ringtail serve`) and operator commands.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ringtail",
    version,
    about = "A Kafka-compatible event-streaming broker, thread-per-core on io_uring"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    Serve(ServeArgs),
    #[command(flatten)]
    Ops(broker::cli::OpsCommand),
    /// Transactions of a running broker: list, abort a hanging one.
    Txn(broker::cli::TxnArgs),
    /// Report (and with --apply, change) OS settings that matter for Ringtail.
    Tune {
        /// Directory whose filesystem and disk are checked.
        #[arg(long, env = "RINGTAIL_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// Write the recommended values where this machine allows it.
        #[arg(long)]
        apply: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Kafka listener, HOST:PORT [default: 0.0.0.0:9092].
    #[arg(long, env = "RINGTAIL_KAFKA_ADDR")]
    kafka_addr: Option<String>,
    /// HOST:PORT given to clients in Metadata [default: the listener, or this host's name].
    #[arg(long, env = "RINGTAIL_ADVERTISED_ADDR")]
    advertised_addr: Option<String>,
    /// Admin HTTP endpoint (/health, /ready), HOST:PORT or "off" [default: 127.0.0.1:9644].
    #[arg(long, env = "RINGTAIL_ADMIN_ADDR")]
    admin_addr: Option<String>,
    /// Where partitions and metadata live [default: ./data].
    #[arg(long, env = "RINGTAIL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// CPUs to run shards on, taskset syntax: 1 | 0,1 | 0-3 [default: all online CPUs].
    #[arg(long, env = "RINGTAIL_CORES")]
    cores: Option<String>,
    /// This broker's node id [default: 0].
    #[arg(long, env = "RINGTAIL_NODE_ID")]
    node_id: Option<i32>,
    /// Controller listener for cluster traffic (Raft, broker registration, forwarded admin
    /// requests), IP:PORT [default: none; a lone node needs none].
    #[arg(long, env = "RINGTAIL_CONTROLLER_ADDR")]
    controller_addr: Option<String>,
    /// The controller quorum's voters, ID@IP:PORT,... (e.g. 1@10.0.0.1:9093,2@10.0.0.2:9093,
    /// 3@10.0.0.3:9093) [default: this node alone]. A node not named joins as a broker only.
    #[arg(long, env = "RINGTAIL_CONTROLLER_QUORUM")]
    controller_quorum: Option<String>,
    /// This broker's rack (Kafka's broker.rack): replicas of a partition spread over racks.
    #[arg(long, env = "RINGTAIL_RACK")]
    rack: Option<String>,
    /// TOML config file; flags and environment override it.
    #[arg(long, env = "RINGTAIL_CONFIG")]
    config: Option<PathBuf>,
}

fn init_logging() {
    // openraft narrates every election at info: keep it at warn unless asked for.
    let spec = std::env::var("RINGTAIL_LOG").unwrap_or_else(|_| "info".to_string());
    let spec = if spec.contains("openraft") {
        spec
    } else {
        format!("{spec},openraft=warn")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

/// Large page-aligned buffers (glommio's O_DIRECT buffers) on huge pages, so each read
/// reaches the device as one request; everything else from the system allocator.
#[global_allocator]
static ALLOC: storage::dma_alloc::DmaBufferAlloc = storage::dma_alloc::DmaBufferAlloc;

fn main() -> std::process::ExitCode {
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => {
            let over = broker::config::Overrides {
                kafka_addr: args.kafka_addr,
                advertised_addr: args.advertised_addr,
                admin_addr: args.admin_addr,
                data_dir: args.data_dir,
                cores: args.cores,
                node_id: args.node_id,
                controller_addr: args.controller_addr,
                controller_quorum: args.controller_quorum,
                rack: args.rack,
                config_file: args.config,
            };
            broker::config::BrokerConfig::resolve(&over).and_then(broker::server::run)
        }
        Command::Ops(command) => broker::cli::run(command),
        Command::Txn(args) => broker::cli::run_txn(args),
        Command::Tune {
            data_dir,
            apply,
            json,
        } => tune(&data_dir, apply, json),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringtail: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn tune(data_dir: &std::path::Path, apply: bool, json: bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let checks = if apply {
        tuning::tune_apply(data_dir)
    } else {
        tuning::tune_report(data_dir)
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
        return Ok(());
    }
    for c in &checks {
        println!(
            "{:<5} {:<28} {}",
            format!("{:?}", c.status),
            c.name,
            c.detail
        );
        if let Some(fix) = &c.fix {
            println!("      {:<28} fix: {fix}", "");
        }
    }
    Ok(())
}
