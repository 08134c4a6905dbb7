#!/usr/bin/env bash
# Standard benchmark suite of ringtail-bench on this machine.
#
# The broker runs pinned to one core (taskset -c $BROKER_CORE, `--cores 1`), the harness to
# another (taskset -c $BENCH_CORE, `--cores $BENCH_CORE`). Matrix: record size {100 B, 1 KiB} x
# acks {1, all} x partitions {1, 12} x codec {none, zstd}; each cell runs $RUNS times at
# maximum rate (closed loop, bounded by the producer buffer) with a fresh broker and data dir,
# and the median of the runs is reported. In the same invocation the raw limits are measured
# (O_DIRECT sequential write bandwidth of the data dir's filesystem and loopback TCP
# bandwidth), so every result is also given as a fraction of the physical limit.
#
# Usage: bench-harness/scripts/standard-suite.sh [OUT_DIR]
# Env:   RUNS=3 DURATION=12 WARMUP=2 DATA_ROOT=/var/tmp BROKER_CORE=1 BENCH_CORE=0
#        RINGTAIL_BIN=... BENCH_BIN=... (default: build both with cargo --release)
#        LATENCY_RATE=0 (records/s; >0 adds a fixed-rate latency run per cell)
#        ONLY='size=100 acks=1' (substring filter on cell names, for quick checks)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
crate="$(cd "$here/.." && pwd)"
repo="$(cd "$crate/.." && pwd)"
out="${1:-$crate/results}"
RUNS="${RUNS:-3}"
DURATION="${DURATION:-12}"
WARMUP="${WARMUP:-2}"
DATA_ROOT="${DATA_ROOT:-/var/tmp}"
BROKER_CORE="${BROKER_CORE:-1}"
BENCH_CORE="${BENCH_CORE:-0}"
LATENCY_RATE="${LATENCY_RATE:-0}"
ONLY="${ONLY:-}"
target="${CARGO_TARGET_DIR:-$repo/target}"

if [[ -z "${RINGTAIL_BIN:-}" || -z "${BENCH_BIN:-}" ]]; then
  (cd "$repo" && cargo build --release -p ringtail-broker -p ringtail-bench-harness)
fi
RINGTAIL_BIN="${RINGTAIL_BIN:-$target/release/ringtail}"
BENCH_BIN="${BENCH_BIN:-$target/release/ringtail-bench}"
[[ -x "$RINGTAIL_BIN" ]] || { echo "broker binary $RINGTAIL_BIN missing" >&2; exit 1; }
[[ -x "$BENCH_BIN" ]] || { echo "bench binary $BENCH_BIN missing" >&2; exit 1; }

mkdir -p "$out/raw"
work="$(mktemp -d "$DATA_ROOT/rtb-suite.XXXXXX")"
broker_pid=""
cleanup() {
  if [[ -n "$broker_pid" ]]; then kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_broker() {
  local dir="$1" port="$2"
  mkdir -p "$dir"
  taskset -c "$BROKER_CORE" "$RINGTAIL_BIN" serve --kafka-addr "127.0.0.1:$port" --data-dir "$dir" --cores "$BROKER_CORE" --admin-addr off \
    >"$dir.log" 2>&1 &
  broker_pid=$!
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    if ! kill -0 "$broker_pid" 2>/dev/null; then echo "broker died:" >&2; cat "$dir.log" >&2; return 1; fi
    sleep 0.1
  done
  echo "broker not listening on $port" >&2
  return 1
}

stop_broker() {
  kill "$broker_pid" 2>/dev/null || true
  wait "$broker_pid" 2>/dev/null || true
  broker_pid=""
}

echo "== raw limits (data dir filesystem: $DATA_ROOT)"
taskset -c "$BENCH_CORE,$BROKER_CORE" "$BENCH_BIN" raw-limits --dir "$work" --seconds 3 --json "$out/raw-limits.json"

{
  echo "started_at=$(date -u +%FT%TZ)"
  echo "git=$(cd "$repo" && git rev-parse --short HEAD)"
  echo "kernel=$(uname -r)"
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "cores=$(nproc) broker_core=$BROKER_CORE bench_core=$BENCH_CORE"
  echo "runs=$RUNS duration_s=$DURATION warmup_s=$WARMUP latency_rate=$LATENCY_RATE"
  echo "loadavg_at_start=$(cat /proc/loadavg)"
  echo "psi_cpu_at_start=$(head -1 /proc/pressure/cpu 2>/dev/null)"
  echo "psi_io_at_start=$(head -1 /proc/pressure/io 2>/dev/null)"
} >"$out/environment.txt"

cells=()
for size in 100 1024; do
  for acks in 1 all; do
    for parts in 1 12; do
      for codec in none zstd; do
        cells+=("size=$size acks=$acks partitions=$parts codec=$codec")
      done
    done
  done
done

run_cell() {
  local name="$1" tag="$2" rate="$3"
  local s a p c size acks parts codec
  read -r s a p c <<<"$name"
  size="${s#size=}"; acks="${a#acks=}"; parts="${p#partitions=}"; codec="${c#codec=}"
  local slug="s${size}-a${acks}-p${parts}-${codec}${tag}"
  for run in $(seq 1 "$RUNS"); do
    local port; port="$(free_port)"
    local dir="$work/$slug-$run"
    start_broker "$dir" "$port"
    local cmd=(taskset -c "$BENCH_CORE" "$BENCH_BIN" produce --bootstrap "127.0.0.1:$port" --topic bench
      --partitions "$parts" --record-size "$size" --acks "$acks" --compression "$codec" --rate "$rate"
      --duration "$DURATION" --warmup "$WARMUP" --cores "$BENCH_CORE" --broker-pid "$broker_pid"
      --name "$slug" --json "$out/raw/$slug-run$run.json" --no-charts)
    echo "-- $slug run $run: ${cmd[*]}"
    echo "${cmd[*]}" >"$out/raw/$slug-run$run.cmd"
    "${cmd[@]}" || echo "!! run failed: $slug run $run" >&2
    # How shared the machine was: other processes' CPU and I/O pressure during the run.
    { echo "loadavg $(cat /proc/loadavg)"; for r in cpu io; do echo "psi_$r $(head -1 /proc/pressure/$r 2>/dev/null)"; done; } \
      >"$out/raw/$slug-run$run.env"
    stop_broker
    rm -rf "$dir"
  done
}

for cell in "${cells[@]}"; do
  if [[ -n "$ONLY" && "$cell" != *"$ONLY"* ]]; then continue; fi
  run_cell "$cell" "" 0
  if [[ "$LATENCY_RATE" != "0" ]]; then run_cell "$cell" "-r$LATENCY_RATE" "$LATENCY_RATE"; fi
done

echo "== summary"
python3 "$here/summarize.py" --raw "$out/raw" --limits "$out/raw-limits.json" --out "$out" --bench "$BENCH_BIN"
