//! Print the disk and loopback probes as JSON (used by the benchmark scripts).
//!
//! Usage: `cargo run --release -p ringtail-tuning --example probe -- [DIR] [PHASE_MS] [FILE_MIB]`
//! DIR defaults to the current directory, PHASE_MS to 1000, FILE_MIB to 256.

use std::path::PathBuf;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| ".".into()));
    let phase_ms: u64 = args.next().map_or(Ok(1000), |s| s.parse())?;
    let file_mib: u64 = args.next().map_or(Ok(256), |s| s.parse())?;
    let phase = Duration::from_millis(phase_ms);

    let disk = tuning::probe_disk(
        &dir,
        tuning::ProbeOptions {
            file_bytes_max: file_mib << 20,
            phase_duration_max: phase,
            ..Default::default()
        },
    )?;
    let loopback_64k = tuning::probe_loopback(64 << 10, phase)?;
    let loopback_1m = tuning::probe_loopback(1 << 20, phase)?;
    let report = serde_json::json!({
        "disk": disk,
        "loopback_64k_bytes_per_sec": loopback_64k,
        "loopback_1m_bytes_per_sec": loopback_1m,
        "online_cpus": tuning::format_cpu_list(&tuning::online_cpus()),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
