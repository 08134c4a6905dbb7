//! Print the start-up checks, the io_memory plan, the placement and the `tune` report.
//!
//! Usage: `cargo run -p ringtail-tuning --example checks -- [DATA_DIR] [SHARDS] [--json]`
//! Read-only: nothing is changed (`tuning::tune_apply` is never called here).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let mut positional = args.iter().filter(|a| !a.starts_with("--"));
    let dir = PathBuf::from(positional.next().map_or(".", String::as_str));
    let online = tuning::online_cpus();
    let placement = tuning::plan_placement(&online, None)?;
    let shards = match positional.next() {
        Some(s) => s.parse()?,
        None => placement.shard_cpus.len(),
    };
    let checks = tuning::startup_checks(&dir, shards);
    let plan = tuning::plan_io_memory(shards, tuning::GLOMMIO_DEFAULT_IO_MEMORY_BYTES);
    let report = tuning::tune_report(&dir);
    if json {
        let plan = match &plan {
            Ok(p) => serde_json::to_value(p)?,
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        };
        let out = serde_json::json!({
            "startup_checks": checks,
            "io_memory": plan,
            "placement": placement,
            "tune": report,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("== start-up checks ({} shards, {})", shards, dir.display());
    for c in &checks {
        println!("{c}");
    }
    match &plan {
        Ok(p) => println!("io_memory: {}", p.explanation),
        Err(e) => println!("io_memory: {e}"),
    }
    println!("placement: {}", placement.explanation);
    println!("== tune report");
    for c in &report {
        let values = match (&c.current, &c.recommended) {
            (Some(cur), Some(rec)) => format!(" [current {cur}, recommended {rec}]"),
            _ => String::new(),
        };
        let apply = if c.can_apply { " (can apply)" } else { "" };
        println!("{c}{values}{apply}");
    }
    Ok(())
}
