//! The charts in `benchmarks/` (embedded in BENCHMARKS.md) are what
//! `scripts/bench_charts.py` draws from `results/summary.json`: regenerated, they are byte for
//! byte the committed files, and a changed summary is reported as stale.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench-harness sits in the workspace")
        .to_path_buf()
}

fn charts(args: &[&str]) -> std::process::Output {
    Command::new("python3")
        .arg(repo().join("bench-harness/scripts/bench_charts.py"))
        .args(args)
        .output()
        .expect("python3 runs")
}

#[test]
fn committed_charts_match_the_summary() {
    let out = charts(&["--check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "throughput-100B.svg",
        "throughput-1KiB.svg",
        "latency-10k.svg",
    ] {
        let svg = std::fs::read_to_string(repo().join("benchmarks").join(name)).expect("chart");
        assert!(svg.starts_with("<svg") && svg.contains("<circle"), "{name}");
        let page = std::fs::read_to_string(repo().join("BENCHMARKS.md")).expect("page");
        assert!(
            page.contains(&format!("(benchmarks/{name})")),
            "BENCHMARKS.md does not show {name}"
        );
    }
}

#[test]
fn a_changed_summary_makes_the_charts_stale() {
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = repo().join("bench-harness/results/summary.json");
    let text = std::fs::read_to_string(&summary).expect("summary");
    let mut doc: serde_json::Value = serde_json::from_str(&text).expect("json");
    let cells = doc["cells"].as_array_mut().expect("cells");
    let cell = cells
        .iter_mut()
        .find(|c| c["rate"].as_f64() == Some(0.0))
        .expect("a closed-loop cell");
    let median = cell["records_per_sec"].as_f64().expect("rate");
    cell["records_per_sec"] = serde_json::json!(median * 0.5);
    let changed = dir.path().join("summary.json");
    std::fs::write(&changed, doc.to_string()).expect("write");
    let changed = changed.to_str().expect("utf-8 path");
    let out = charts(&["--summary", changed, "--check"]);
    assert!(!out.status.success(), "a halved median went unnoticed");
    assert!(String::from_utf8_lossy(&out.stderr).contains("stale"));
    // Written to another directory, the charts are there and well formed (the script parses
    // each one before writing).
    let out_dir = dir.path().join("out");
    let out_dir = out_dir.to_str().expect("utf-8 path");
    let out = charts(&["--summary", changed, "--out", out_dir]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(Path::new(out_dir).join("latency-10k.svg").is_file());
}
