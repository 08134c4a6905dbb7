//! `ringtail-bench`: see the crate docs (`lib.rs`) for the model.

use anyhow::{bail, Context, Result};
use bench_harness::batch::Codec;
use bench_harness::stats::BenchResult;
use bench_harness::workload::{
    apply_omb_workload, ConsumeCheck, KeyMode, Mode, SizeDist, StartFrom, Workload,
};
use bench_harness::{charts, compare, proxy, runner};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "ringtail-bench",
    version,
    about = "Kafka-protocol load generator with honest (open-loop) latency"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Produce records and measure acknowledgement latency and throughput.
    Produce(RunArgs),
    /// Consume records (static partition assignment) and measure throughput.
    Consume(RunArgs),
    /// Produce and consume at once; latency = consume time - intended send time.
    E2e(RunArgs),
    /// Run an OpenMessaging-Benchmark workload file (flat YAML) as written.
    Omb {
        /// The OMB workload file.
        #[arg(long)]
        workload: PathBuf,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Put several JSON results side by side: a table and one chart.
    Compare {
        /// Result files written with --json.
        files: Vec<PathBuf>,
        /// Write the comparison chart (latency percentile curves) to this SVG file.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Write a throughput bar chart to this SVG file.
        #[arg(long)]
        throughput_svg: Option<PathBuf>,
        /// Print the table as Markdown.
        #[arg(long)]
        markdown: bool,
    },
    /// Re-draw the SVG charts of a JSON result.
    Chart {
        json: PathBuf,
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Measure physical limits: O_DIRECT sequential write bandwidth of DIR's filesystem and
    /// loopback TCP bandwidth with 1 MiB and 64 KiB writes (writer on core 0, reader on
    /// core 1).
    RawLimits {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// TCP proxy that delays every chunk by N ms in each direction (order preserved) and
    /// rewrites Metadata responses so clients keep talking through it.
    DelayProxy {
        #[arg(long)]
        listen: String,
        #[arg(long)]
        upstream: String,
        #[arg(long, default_value_t = 5.0)]
        delay_ms: f64,
        /// Delay only broker->client traffic (default: only that direction, so a round trip
        /// gains exactly delay-ms).
        #[arg(long, default_value = "response")]
        direction: proxy::Direction,
    },
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Bootstrap broker HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Connect to this HOST:PORT instead of every broker address from Metadata.
    #[arg(long)]
    broker_addr_override: Option<String>,
    /// Topic name(s); comma separated or repeated.
    #[arg(long, value_delimiter = ',')]
    topic: Vec<String>,
    #[arg(long)]
    partitions: Option<i32>,
    #[arg(long, default_value_t = 1)]
    replication_factor: i16,
    /// Fail instead of creating missing topics.
    #[arg(long)]
    no_create_topics: bool,
    /// Record value size in bytes: fixed (`100`) or uniform range (`64..1024`).
    #[arg(long)]
    record_size: Option<SizeDist>,
    /// Number of distinct keys (0 = no keys).
    #[arg(long, default_value_t = 0)]
    key_cardinality: u64,
    /// Key choice when key-cardinality > 0: round-robin or random.
    #[arg(long, default_value = "random")]
    key_mode: String,
    /// Producers per topic.
    #[arg(long)]
    producers: Option<u32>,
    /// Consumers per subscription.
    #[arg(long)]
    consumers: Option<u32>,
    /// Subscriptions (independent readers of every record) per topic.
    #[arg(long)]
    subscriptions: Option<u32>,
    /// 0, 1 or all (-1).
    #[arg(long, default_value = "1")]
    acks: String,
    /// Batch size in bytes per partition.
    #[arg(long, default_value_t = 128 * 1024)]
    batch_size: usize,
    #[arg(long, default_value_t = 1.0)]
    linger_ms: f64,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: Codec,
    /// Idempotent producer (InitProducerId; needs acks=all).
    #[arg(long)]
    idempotence: bool,
    #[arg(long, default_value_t = 5)]
    max_in_flight: usize,
    /// Total target rate in records/s over all producers (0 = as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// Run length in seconds (including warm-up).
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds at the start excluded from the results.
    #[arg(long)]
    warmup: Option<f64>,
    /// Cores to pin the harness's worker threads to (one executor each), e.g. `0` or `0,1`.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    cores: Vec<usize>,
    /// Where consumers start: latest or earliest.
    #[arg(long)]
    from: Option<String>,
    /// Consume mode: stop after this many records (0 = run for --duration).
    #[arg(long, default_value_t = 0)]
    records: u64,
    #[arg(long, default_value_t = 100)]
    fetch_max_wait_ms: i32,
    /// What consumers check of each fetched batch: `full` (default: batch CRC32C, every
    /// record decoded, checksums, end-to-end latency) or `headers` (batch headers only:
    /// records counted from the header, consumed MB = batch wire bytes, content NOT
    /// verified; for measuring what a broker serves when one verifying consumer core cannot
    /// keep up). Runs with consumers only.
    #[arg(long)]
    check: Option<ConsumeCheck>,
    /// Bytes a producer may buffer before its generator waits.
    #[arg(long, default_value_t = 32 << 20)]
    buffer_bytes: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// PID of a local broker to sample from /proc (default: found from the bootstrap port).
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Name of the run in reports.
    #[arg(long)]
    name: Option<String>,
    /// Write the JSON result here (and SVG charts next to it).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Skip SVG charts.
    #[arg(long)]
    no_charts: bool,
    /// Spin this many µs before parking an idle executor (lower wake-up latency, burns CPU).
    #[arg(long, default_value_t = 0)]
    spin_us: u64,
}

impl RunArgs {
    /// Applies flags on top of `w`: flags given explicitly win over a workload file.
    fn apply(&self, w: &mut Workload, mode: Option<Mode>) -> Result<()> {
        if let Some(m) = mode {
            w.mode = m;
        }
        w.bootstrap = self.bootstrap.clone();
        if self.broker_addr_override.is_some() {
            w.broker_override = self.broker_addr_override.clone();
        }
        if !self.topic.is_empty() {
            w.topics = self.topic.clone();
        }
        if let Some(p) = self.partitions {
            w.partitions = p;
        }
        w.replication_factor = self.replication_factor;
        w.create_topics = !self.no_create_topics;
        if let Some(s) = self.record_size {
            w.record_size = s;
        }
        if self.key_cardinality > 0 {
            w.key_cardinality = self.key_cardinality;
            w.key_mode = match self.key_mode.as_str() {
                "round-robin" | "round_robin" | "rr" => KeyMode::RoundRobin,
                "random" => KeyMode::Random,
                other => bail!("--key-mode {other}: round-robin or random"),
            };
        }
        if let Some(v) = self.producers {
            w.producers_per_topic = v;
        }
        if let Some(v) = self.consumers {
            w.consumers_per_subscription = v;
        }
        if let Some(v) = self.subscriptions {
            w.subscriptions_per_topic = v;
        }
        w.acks = match self.acks.as_str() {
            "0" => 0,
            "1" => 1,
            "all" | "-1" => -1,
            other => bail!("--acks {other}: 0, 1 or all"),
        };
        w.batch_bytes = self.batch_size;
        w.linger_ms = self.linger_ms;
        w.compression = self.compression;
        w.idempotence = self.idempotence;
        w.max_in_flight = self.max_in_flight;
        if let Some(r) = self.rate {
            w.rate = r;
        }
        if let Some(d) = self.duration {
            w.duration_s = d;
        }
        if let Some(d) = self.warmup {
            w.warmup_s = d;
        }
        w.cores = self.cores.clone();
        match self.from.as_deref() {
            Some("earliest") => w.start_from = StartFrom::Earliest,
            Some("latest") => w.start_from = StartFrom::Latest,
            Some(other) => bail!("--from {other}: earliest or latest"),
            None => {
                if w.mode == Mode::Consume {
                    w.start_from = StartFrom::Earliest;
                }
            }
        }
        w.consume_records = self.records;
        w.fetch_max_wait_ms = self.fetch_max_wait_ms;
        if let Some(c) = self.check {
            w.consume_check = c;
        }
        w.buffer_bytes = self.buffer_bytes;
        w.seed = self.seed;
        w.broker_pid = self.broker_pid;
        if let Some(n) = &self.name {
            w.name = n.clone();
        }
        w.validate()
    }
}

fn execute(w: Workload, args: &RunArgs) -> Result<()> {
    if w.mode != Mode::Produce {
        match w.consume_check {
            ConsumeCheck::Headers => eprintln!(
                "note: --check headers: consumers read batch headers only (no CRC, no record \
                 decode, no checksum, no end-to-end latency); consumed MB are batch wire bytes"
            ),
            ConsumeCheck::Full => {
                if w.record_size.max() < bench_harness::payload::HEADER_BYTES {
                    eprintln!(
                        "note: records shorter than {} bytes carry no send timestamp; end-to-end latency is unavailable",
                        bench_harness::payload::HEADER_BYTES
                    );
                }
            }
        }
    }
    let result = runner::run_checked(w, args.spin_us)?;
    print!("{}", result.summary());
    if let Some(path) = &args.json {
        write_result(&result, path, !args.no_charts)?;
    }
    if result.produce_errors > 0 {
        bail!("{} records failed to produce", result.produce_errors);
    }
    Ok(())
}

fn write_result(r: &BenchResult, path: &Path, charts_too: bool) -> Result<()> {
    let text = serde_json::to_string_pretty(r)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    println!("result: {}", path.display());
    if charts_too {
        for f in charts::write_result_charts(r, path)? {
            println!("chart: {}", f.display());
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Produce(a) => {
            let mut w = Workload::default();
            a.apply(&mut w, Some(Mode::Produce))?;
            execute(w, &a)
        }
        Cmd::Consume(a) => {
            let mut w = Workload::default();
            a.apply(&mut w, Some(Mode::Consume))?;
            execute(w, &a)
        }
        Cmd::E2e(a) => {
            let mut w = Workload::default();
            a.apply(&mut w, Some(Mode::E2e))?;
            execute(w, &a)
        }
        Cmd::Omb { workload, run } => {
            let text = std::fs::read_to_string(&workload)
                .with_context(|| format!("reading {}", workload.display()))?;
            let mut w = Workload {
                topics: vec!["omb".into()],
                ..Workload::default()
            };
            // Flags first for connection settings, then the file, then explicit overrides
            // of what the file sets would surprise: the file wins for its own keys.
            run.apply(&mut w, None)?;
            for warning in apply_omb_workload(&mut w, &text)? {
                eprintln!("workload: {warning}");
            }
            execute(w, &run)
        }
        Cmd::Compare {
            files,
            svg,
            throughput_svg,
            markdown,
        } => {
            let results = files
                .iter()
                .map(|f| {
                    let text = std::fs::read_to_string(f)
                        .with_context(|| format!("reading {}", f.display()))?;
                    let mut r: BenchResult = serde_json::from_str(&text)
                        .with_context(|| format!("parsing {}", f.display()))?;
                    if r.name.is_empty() || r.name == "adhoc" {
                        r.name = f
                            .file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_default();
                    }
                    Ok(r)
                })
                .collect::<Result<Vec<_>>>()?;
            print!("{}", compare::table(&results, markdown));
            if let Some(svg) = svg {
                charts::comparison_chart(&results, &svg)?;
                eprintln!("chart: {}", svg.display());
            }
            if let Some(svg) = throughput_svg {
                charts::throughput_bars(&results, &svg)?;
                eprintln!("chart: {}", svg.display());
            }
            Ok(())
        }
        Cmd::Chart { json, out_dir } => {
            let text = std::fs::read_to_string(&json)?;
            let r: BenchResult = serde_json::from_str(&text)?;
            let base = match out_dir {
                Some(d) => d.join(json.file_name().unwrap_or_default()),
                None => json.clone(),
            };
            for f in charts::write_result_charts(&r, &base)? {
                println!("chart: {}", f.display());
            }
            Ok(())
        }
        Cmd::RawLimits { dir, seconds, json } => {
            let r = bench_harness::rawlimits::measure(&dir, seconds)?;
            println!(
                "O_DIRECT sequential write ({} KiB blocks) on {}: {:.0} MB/s; loopback TCP: {:.0} MB/s \
                 ({} KiB writes), {:.0} MB/s ({} KiB writes)",
                r.disk_write_block_bytes >> 10,
                r.disk_dir,
                r.disk_write_mb_per_sec,
                r.loopback_mb_per_sec,
                r.loopback_write_bytes >> 10,
                r.loopback_64k_mb_per_sec,
                bench_harness::rawlimits::LOOPBACK_SMALL_WRITE_BYTES >> 10
            );
            if let Some(j) = json {
                std::fs::write(&j, serde_json::to_string_pretty(&r)?)?;
            }
            Ok(())
        }
        Cmd::DelayProxy {
            listen,
            upstream,
            delay_ms,
            direction,
        } => proxy::run_forever(&listen, &upstream, delay_ms, direction),
    }
}
