//! `ringtail`: the broker (`ringtail serve`) and operator commands.

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

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
    Serve(broker::cli::config_print::ServeArgs),
    /// The broker's configuration: `config print` shows every key's effective value and
    /// where it came from (default, file, environment, flag).
    Config(broker::cli::config_print::ConfigArgs),
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
    // Parsed by hand (not `Cli::parse`) so `config print` can ask clap where each value came
    // from (flag or environment variable).
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Command::Serve(args) => {
            broker::config::BrokerConfig::resolve(&args.overrides()).and_then(broker::server::run)
        }
        Command::Config(args) => {
            let print = matches
                .subcommand_matches("config")
                .and_then(|m| m.subcommand_matches("print"));
            broker::cli::config_print::run(args, print)
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
