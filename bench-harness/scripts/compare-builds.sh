#!/usr/bin/env bash
# Produce throughput of two broker builds, measured in one invocation with the runs
# interleaved (A, B, A, B, ...) so that both see the same machine: the figure a change that
# must not slow the data path is judged by.
#
# Same set-up as standard-suite.sh: the broker pinned to $BROKER_CORE with `--cores 1`
# worth of shards, the harness (one binary for both builds) to $BENCH_CORE, a fresh broker and
# data dir per run, closed loop (rate 0). Prints per cell the median records/s of each build,
# every run, and B/A.
#
# Usage: bench-harness/scripts/compare-builds.sh A_RINGTAIL_BIN B_RINGTAIL_BIN [OUT_DIR]
# Env:   RUNS=3 DURATION=8 WARMUP=2 DATA_ROOT=/var/tmp BROKER_CORE=1 BENCH_CORE=0
#        BENCH_BIN=... (default: target/release/ringtail-bench, built if missing)
#        CELLS="100:1:1 100:all:12 1024:1:1 1024:all:12" (record bytes:acks:partitions)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
a_bin="${1:?usage: compare-builds.sh A_RINGTAIL_BIN B_RINGTAIL_BIN [OUT_DIR]}"
b_bin="${2:?usage: compare-builds.sh A_RINGTAIL_BIN B_RINGTAIL_BIN [OUT_DIR]}"
out="${3:-$(mktemp -d /tmp/rtb-compare.XXXXXX)}"
RUNS="${RUNS:-3}"
DURATION="${DURATION:-8}"
WARMUP="${WARMUP:-2}"
DATA_ROOT="${DATA_ROOT:-/var/tmp}"
BROKER_CORE="${BROKER_CORE:-1}"
BENCH_CORE="${BENCH_CORE:-0}"
CELLS="${CELLS:-100:1:1 100:all:12 1024:1:1 1024:all:12}"
target="${CARGO_TARGET_DIR:-$repo/target}"
BENCH_BIN="${BENCH_BIN:-$target/release/ringtail-bench}"
if [[ ! -x "$BENCH_BIN" ]]; then
  (cd "$repo" && cargo build --release -p ringtail-bench-harness)
fi
for bin in "$a_bin" "$b_bin" "$BENCH_BIN"; do
  [[ -x "$bin" ]] || { echo "$bin is not an executable" >&2; exit 1; }
done

mkdir -p "$out"
work="$(mktemp -d "$DATA_ROOT/rtb-compare.XXXXXX")"
broker_pid=""
cleanup() {
  if [[ -n "$broker_pid" ]]; then kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run_one() {
  local bin="$1" label="$2" size="$3" acks="$4" parts="$5" run="$6"
  local port dir
  port="$(free_port)"
  dir="$work/$label-$size-$acks-$parts-$run"
  mkdir -p "$dir"
  taskset -c "$BROKER_CORE" "$bin" serve --kafka-addr "127.0.0.1:$port" --data-dir "$dir" \
    --cores "$BROKER_CORE" --admin-addr off >"$dir.log" 2>&1 &
  broker_pid=$!
  local up=""
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=1; break; fi
    kill -0 "$broker_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -z "$up" ]]; then echo "broker $label did not start:" >&2; cat "$dir.log" >&2; exit 1; fi
  taskset -c "$BENCH_CORE" "$BENCH_BIN" produce --bootstrap "127.0.0.1:$port" --topic bench \
    --partitions "$parts" --record-size "$size" --acks "$acks" --compression none --rate 0 \
    --duration "$DURATION" --warmup "$WARMUP" --cores "$BENCH_CORE" --broker-pid "$broker_pid" \
    --name "$label" --json "$out/$label-s$size-a$acks-p$parts-run$run.json" --no-charts >/dev/null \
    || echo "!! run failed: $label $size $acks $parts $run" >&2
  kill "$broker_pid" 2>/dev/null || true
  wait "$broker_pid" 2>/dev/null || true
  broker_pid=""
  rm -rf "$dir"
}

{
  echo "started_at=$(date -u +%FT%TZ) git=$(cd "$repo" && git rev-parse --short HEAD)"
  echo "A=$a_bin"
  echo "B=$b_bin"
  echo "runs=$RUNS duration_s=$DURATION warmup_s=$WARMUP cells=$CELLS"
  echo "loadavg_at_start=$(cat /proc/loadavg)"
} | tee "$out/environment.txt"

for cell in $CELLS; do
  IFS=: read -r size acks parts <<<"$cell"
  for run in $(seq 1 "$RUNS"); do
    run_one "$a_bin" A "$size" "$acks" "$parts" "$run"
    run_one "$b_bin" B "$size" "$acks" "$parts" "$run"
  done
done
echo "loadavg_at_end=$(cat /proc/loadavg)" | tee -a "$out/environment.txt"

python3 - "$out" <<'PY'
import glob, json, os, re, statistics, sys
out = sys.argv[1]
cells = {}
for path in glob.glob(os.path.join(out, "*.json")):
    m = re.match(r"([AB])-s(\d+)-a(\w+)-p(\d+)-run(\d+)\.json$", os.path.basename(path))
    if not m:
        continue
    label, size, acks, parts, _ = m.groups()
    with open(path) as f:
        rate = json.load(f).get("records_per_sec") or 0.0
    cells.setdefault((int(size), acks, int(parts)), {}).setdefault(label, []).append(rate)
print("| record | acks | partitions | A rec/s (median) | B rec/s (median) | B / A | A runs | B runs |")
print("|---:|---|---:|---:|---:|---:|---|---|")
for (size, acks, parts), runs in sorted(cells.items()):
    a, b = runs.get("A", []), runs.get("B", [])
    ma = statistics.median(a) if a else 0.0
    mb = statistics.median(b) if b else 0.0
    ratio = f"{mb / ma:.2f}" if ma else "-"
    fmt = lambda xs: "[" + ", ".join(f"{x:,.0f}" for x in xs) + "]"
    print(f"| {size} B | {acks} | {parts} | {ma:,.0f} | {mb:,.0f} | {ratio} | {fmt(a)} | {fmt(b)} |")
PY
