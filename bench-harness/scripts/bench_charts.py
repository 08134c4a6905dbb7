#!/usr/bin/env python3
"""Charts for BENCHMARKS.md from the standard suite's summary (bench-harness/results/summary.json,
written by scripts/summarize.py): hand-written SVG, no third-party package, no network.

    bench-harness/scripts/bench_charts.py                 # writes benchmarks/*.svg
    bench-harness/scripts/bench_charts.py --check         # exit 1 if a committed chart is stale

Charts (one per file, under benchmarks/ next to BENCHMARKS.md):
  throughput-100B.svg, throughput-1KiB.svg   closed-loop ("max") cells: median records/s as a
                                             bar, each run as a dot, MB/s and share of the raw
                                             disk write limit as the label;
  latency-10k.svg                            open-loop cells at the suite's fixed rate: p50,
                                             p99, p99.9, p99.99 and max per cell, log scale.

The output is a pure function of the summary (no dates, fixed number formatting), so --check can
compare byte for byte; bench-harness/tests/charts.rs runs it in CI.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SUMMARY = REPO / "bench-harness" / "results" / "summary.json"
DEFAULT_OUT = REPO / "benchmarks"

FONT = "font-family='DejaVu Sans, Arial, sans-serif'"
BAR = "#4878a8"
DOT = "#1b2f45"
PERCENTILES = [  # (summary key, label, colour)
    ("p50_ms", "p50", "#2e7d32"),
    ("p99_ms", "p99", "#1565c0"),
    ("p999_ms", "p99.9", "#6a1b9a"),
    ("p9999_ms", "p99.99", "#ef6c00"),
    ("max_ms", "max", "#c62828"),
]


def esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fmt_rate(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f} M"
    if value >= 1e3:
        return f"{value / 1e3:.0f} k"
    return f"{value:.0f}"


def cell_label(c: dict) -> str:
    return f"acks={c['acks']}, {c['partitions']} partition{'s' if c['partitions'] != 1 else ''}, {c['compression']}"


def nice_ceiling(value: float) -> float:
    """The smallest 1/2/5 x 10^k at or above value."""
    if value <= 0:
        return 1.0
    exp = math.floor(math.log10(value))
    for m in (1, 2, 5, 10):
        if m * 10**exp >= value:
            return m * 10**exp
    return 10 ** (exp + 1)


def throughput_chart(cells: list[dict], size: int, limits: dict) -> str:
    rows = sorted(
        (c for c in cells if c["record_bytes"] == size and not c["rate"]),
        key=lambda c: (c["acks"] != "1", c["partitions"], c["compression"]),
    )
    if not rows:
        raise SystemExit(f"no closed-loop cells of {size} B in the summary")
    top = nice_ceiling(max(max([c["records_per_sec"], *(c["records_per_sec_runs"] or [])]) for c in rows))
    left, width, row_h, head = 230, 480, 34, 70
    height = head + row_h * len(rows) + 50
    total_w = left + width + 250
    size_text = "100 B" if size == 100 else f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} B"
    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{total_w}' height='{height}' viewBox='0 0 {total_w} {height}'>",
        f"<rect width='{total_w}' height='{height}' fill='white'/>",
        f"<text x='12' y='24' {FONT} font-size='16' font-weight='bold'>Produce throughput, {esc(size_text)} records, closed loop</text>",
        f"<text x='12' y='44' {FONT} font-size='12' fill='#444'>bar: median records/s of {rows[0]['runs']} runs (dots: each run); label: MB/s and share of the raw O_DIRECT write limit ({limits['disk_write_mb_per_sec']:.0f} MB/s)</text>",
    ]
    for i in range(6):
        value = top * i / 5
        x = left + width * i / 5
        out.append(f"<line x1='{x:.1f}' y1='{head - 8}' x2='{x:.1f}' y2='{head + row_h * len(rows)}' stroke='#ddd'/>")
        out.append(f"<text x='{x:.1f}' y='{head + row_h * len(rows) + 16}' {FONT} font-size='11' text-anchor='middle'>{esc(fmt_rate(value))}</text>")
    out.append(f"<text x='{left + width / 2:.1f}' y='{head + row_h * len(rows) + 36}' {FONT} font-size='12' text-anchor='middle'>records/s</text>")
    for i, c in enumerate(rows):
        y = head + row_h * i
        w = width * c["records_per_sec"] / top
        out.append(f"<text x='{left - 8}' y='{y + row_h / 2 + 4:.1f}' {FONT} font-size='12' text-anchor='end'>{esc(cell_label(c))}</text>")
        out.append(f"<rect x='{left}' y='{y + 6}' width='{w:.1f}' height='{row_h - 12}' fill='{BAR}'/>")
        for run in c["records_per_sec_runs"] or []:
            x = left + width * run / top
            out.append(f"<circle cx='{x:.1f}' cy='{y + row_h / 2:.1f}' r='3' fill='{DOT}' stroke='white' stroke-width='1'/>")
        label = f"{fmt_rate(c['records_per_sec'])} rec/s, {c['mb_per_sec']:.0f} MB/s ({100 * c['disk_ratio']:.0f}% of disk)"
        out.append(f"<text x='{left + width + 8}' y='{y + row_h / 2 + 4:.1f}' {FONT} font-size='11'>{esc(label)}</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def latency_chart(cells: list[dict]) -> str:
    rows = sorted(
        (c for c in cells if c["rate"]),
        key=lambda c: (c["record_bytes"], c["acks"] != "1", c["partitions"], c["compression"]),
    )
    if not rows:
        raise SystemExit("no open-loop cells in the summary")
    rates = sorted({c["rate"] for c in rows})
    values = [c[k] for c in rows for k, _, _ in PERCENTILES if c.get(k)]
    lo = 10 ** math.floor(math.log10(min(values)))
    hi = 10 ** math.ceil(math.log10(max(values)))
    decades = round(math.log10(hi / lo))
    left, width, row_h, head = 270, 520, 24, 90
    height = head + row_h * len(rows) + 50
    total_w = left + width + 30

    def xpos(ms: float) -> float:
        return left + width * math.log10(ms / lo) / decades

    rate_text = ", ".join(f"{r:,.0f}" for r in rates)
    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{total_w}' height='{height}' viewBox='0 0 {total_w} {height}'>",
        f"<rect width='{total_w}' height='{height}' fill='white'/>",
        f"<text x='12' y='24' {FONT} font-size='16' font-weight='bold'>Produce latency at {esc(rate_text)} records/s (open loop)</text>",
        f"<text x='12' y='44' {FONT} font-size='12' fill='#444'>from each record's intended send time to its acknowledgement; median over runs of each percentile; log scale</text>",
    ]
    for i, (_, label, colour) in enumerate(PERCENTILES):
        x = left + i * 90
        out.append(f"<circle cx='{x}' cy='64' r='5' fill='{colour}'/>")
        out.append(f"<text x='{x + 9}' y='68' {FONT} font-size='12'>{label}</text>")
    for d in range(decades + 1):
        ms = lo * 10**d
        x = xpos(ms)
        out.append(f"<line x1='{x:.1f}' y1='{head - 6}' x2='{x:.1f}' y2='{head + row_h * len(rows)}' stroke='#ccc'/>")
        text = f"{ms:g}"
        out.append(f"<text x='{x:.1f}' y='{head + row_h * len(rows) + 16}' {FONT} font-size='11' text-anchor='middle'>{text}</text>")
    out.append(f"<text x='{left + width / 2:.1f}' y='{head + row_h * len(rows) + 36}' {FONT} font-size='12' text-anchor='middle'>milliseconds</text>")
    for i, c in enumerate(rows):
        y = head + row_h * i + row_h / 2
        size_text = "100 B" if c["record_bytes"] == 100 else f"{c['record_bytes'] // 1024} KiB"
        out.append(f"<text x='{left - 8}' y='{y + 4:.1f}' {FONT} font-size='12' text-anchor='end'>{esc(size_text + ', ' + cell_label(c))}</text>")
        xs = [xpos(c[k]) for k, _, _ in PERCENTILES if c.get(k)]
        out.append(f"<line x1='{min(xs):.1f}' y1='{y:.1f}' x2='{max(xs):.1f}' y2='{y:.1f}' stroke='#999'/>")
        for key, _, colour in PERCENTILES:
            if c.get(key):
                out.append(f"<circle cx='{xpos(c[key]):.1f}' cy='{y:.1f}' r='4.5' fill='{colour}'><title>{c[key]:.2f} ms</title></circle>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def render(summary: dict) -> dict[str, str]:
    cells = summary["cells"]
    limits = summary["raw_limits"]
    charts = {
        "throughput-100B.svg": throughput_chart(cells, 100, limits),
        "throughput-1KiB.svg": throughput_chart(cells, 1024, limits),
        "latency-10k.svg": latency_chart(cells),
    }
    for name, svg in charts.items():
        ET.fromstring(svg)  # well-formed, or this raises
    return charts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--summary", type=Path, default=DEFAULT_SUMMARY)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="compare with the files in --out instead of writing")
    args = ap.parse_args()
    charts = render(json.loads(args.summary.read_text()))
    if args.check:
        stale = [n for n, svg in charts.items() if not (args.out / n).is_file() or (args.out / n).read_text() != svg]
        if stale:
            print(f"stale charts in {args.out}: {', '.join(stale)}; regenerate with "
                  "bench-harness/scripts/bench_charts.py", file=sys.stderr)
            return 1
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, svg in charts.items():
        (args.out / name).write_text(svg)
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
