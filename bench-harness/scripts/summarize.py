#!/usr/bin/env python3
"""Summarise standard-suite runs: medians per cell, ratios to the raw limits, Markdown table,
median-run charts and one comparison chart (via `ringtail-bench compare`/`chart`)."""
import argparse
import glob
import json
import os
import re
import shutil
import statistics
import subprocess


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--limits", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--bench", required=True)
    a = ap.parse_args()
    limits = json.load(open(a.limits))
    cells = {}
    for f in sorted(glob.glob(os.path.join(a.raw, "*-run*.json"))):
        slug = re.sub(r"-run\d+\.json$", "", os.path.basename(f))
        r = json.load(open(f))
        cmd_file = f[:-5] + ".cmd"
        r["_cmd"] = open(cmd_file).read().strip() if os.path.exists(cmd_file) else ""
        r["_file"] = f
        env_file = f[:-5] + ".env"
        r["_load1"] = None
        if os.path.exists(env_file):
            for line in open(env_file):
                if line.startswith("loadavg "):
                    r["_load1"] = float(line.split()[1])
        cells.setdefault(slug, []).append(r)
    disk = limits["disk_write_mb_per_sec"]
    loop = limits["loopback_mb_per_sec"]
    rows = []
    med_dir = os.path.join(a.out, "median")
    os.makedirs(med_dir, exist_ok=True)
    median_files = []
    for slug, runs in cells.items():
        w = runs[0].get("workload") or {}
        lat = lambda k: med([(r.get("latency_ms") or {}).get(k) for r in runs])
        row = {
            "cell": slug,
            "record_bytes": (w.get("record_size") or {}).get("bytes"),
            "acks": {1: "1", -1: "all", 0: "0"}.get(w.get("acks"), w.get("acks")),
            "partitions": w.get("partitions"),
            "compression": w.get("compression"),
            "rate": w.get("rate"),
            "runs": len(runs),
            "records_per_sec": med([r["records_per_sec"] for r in runs]),
            "mb_per_sec": med([r["mb_per_sec"] for r in runs]),
            "p50_ms": lat("p50"),
            "p99_ms": lat("p99"),
            "p999_ms": lat("p999"),
            "p9999_ms": lat("p9999"),
            "max_ms": lat("max"),
            "errors": sum(r.get("produce_errors", 0) for r in runs),
            "broker_cpu_pct": med([(r.get("broker") or {}).get("cpu_pct_mean") for r in runs]),
            "broker_rss_mb": med([(r.get("broker") or {}).get("rss_mb_max") for r in runs]),
            "broker_runq_wait_pct": med([(r.get("broker") or {}).get("runq_wait_pct_mean") for r in runs]),
            "harness_cpu_pct": med([r.get("harness_cpu_pct") for r in runs]),
            "harness_runq_wait_pct": med([r.get("harness_runq_wait_pct") for r in runs]),
            "load1": med([r["_load1"] for r in runs]),
            # Runs the harness flagged as sharing the machine (CPU or disk taken by other
            # processes): their latencies are not comparable; rerun the cell.
            "contended_runs": sum(1 for r in runs if r.get("contention")),
            "records_per_sec_runs": [round(r["records_per_sec"]) for r in runs],
            "command": runs[0]["_cmd"],
        }
        row["disk_ratio"] = row["mb_per_sec"] / disk if disk else None
        row["loopback_ratio"] = row["mb_per_sec"] / loop if loop else None
        rows.append(row)
        # The run with the median throughput represents the cell in the charts.
        ranked = sorted(runs, key=lambda r: r["records_per_sec"])
        rep = ranked[len(ranked) // 2]
        dst = os.path.join(med_dir, slug + ".json")
        shutil.copyfile(rep["_file"], dst)
        subprocess.run([a.bench, "chart", dst], check=True, stdout=subprocess.DEVNULL)
        median_files.append(dst)
    json.dump({"raw_limits": limits, "cells": rows}, open(os.path.join(a.out, "summary.json"), "w"), indent=2)
    fmt = lambda v, d=1: "-" if v is None else f"{v:,.{d}f}"
    lines = [
        f"Raw limits: O_DIRECT sequential write {disk:,.0f} MB/s ({limits['disk_write_block_bytes'] >> 10} KiB blocks), "
        f"loopback TCP {loop:,.0f} MB/s with {limits.get('loopback_write_bytes', 1 << 20) >> 10} KiB writes"
        + (f", {limits['loopback_64k_mb_per_sec']:,.0f} MB/s with 64 KiB writes" if limits.get("loopback_64k_mb_per_sec") else "")
        + " (MB = 10^6 B).",
        "",
        "| record | acks | partitions | codec | rate | rec/s (median) | MB/s | of disk | of loopback | p50 ms | p99 ms | p99.9 ms | p99.99 ms | max ms | broker CPU % | broker RSS MB | broker / harness CPU-wait % | harness CPU % | load (1 min) | contended runs | errors | runs rec/s |",
        "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['record_bytes']} B | {r['acks']} | {r['partitions']} | {r['compression']} | "
            f"{'max' if not r['rate'] else fmt(r['rate'], 0)} | {fmt(r['records_per_sec'], 0)} | {fmt(r['mb_per_sec'], 1)} | "
            f"{fmt(100 * r['disk_ratio'] if r['disk_ratio'] is not None else None, 1)}% | "
            f"{fmt(100 * r['loopback_ratio'] if r['loopback_ratio'] is not None else None, 1)}% | "
            f"{fmt(r['p50_ms'], 2)} | {fmt(r['p99_ms'], 2)} | {fmt(r['p999_ms'], 2)} | {fmt(r['p9999_ms'], 2)} | {fmt(r['max_ms'], 2)} | "
            f"{fmt(r['broker_cpu_pct'], 0)} | {fmt(r['broker_rss_mb'], 0)} | "
            f"{fmt(r['broker_runq_wait_pct'], 0)} / {fmt(r['harness_runq_wait_pct'], 0)} | {fmt(r['harness_cpu_pct'], 0)} | "
            f"{fmt(r['load1'], 1)} | {r['contended_runs']} | {r['errors']} | {r['records_per_sec_runs']} |"
        )
    env_file = os.path.join(a.out, "environment.txt")
    if os.path.exists(env_file):
        lines += ["", "Environment:", "", "```", open(env_file).read().strip(), "```"]
    open(os.path.join(a.out, "summary.md"), "w").write("\n".join(lines) + "\n")
    if median_files:
        # One table with every cell; charts per group so each stays readable.
        subprocess.run([a.bench, "compare", "--markdown"] + median_files, check=True,
                       stdout=open(os.path.join(a.out, "compare.md"), "w"))
        groups = {}
        for f in median_files:
            slug = os.path.basename(f)[:-5]
            size = slug.split("-")[0]
            kind = "rate" if re.search(r"-r\d+$", slug) else "max"
            groups.setdefault((size, kind), []).append(f)
        for (size, kind), files in sorted(groups.items()):
            subprocess.run([a.bench, "compare", "--svg", os.path.join(a.out, f"suite-latency-{size}-{kind}.svg")]
                           + (["--throughput-svg", os.path.join(a.out, f"suite-throughput-{size}-{kind}.svg")] if kind == "max" else [])
                           + files, check=True, stdout=subprocess.DEVNULL)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
