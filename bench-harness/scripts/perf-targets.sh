#!/usr/bin/env bash
# Issue 6 performance targets on this machine: broker pinned to CPU 1 (`--cores 1`),
# harness pinned to CPU 0; fresh broker + data dir per run; raw limits measured in the
# same invocation. Prints one line per run and writes JSON to $OUT.
#
# Usage: bench-harness/scripts/perf-targets.sh [OUT_DIR]   Env: RUNS=3 DATA_ROOT=/var/tmp RINGTAIL_BIN BENCH_BIN ONLY=<section>
# Sections: raw p100 p1k p1k1 e2e read idle hops (ONLY matches a substring). The 1 KiB x 12 acks=1
# cell and the cold read also measure the raw limit right before each run and print the ratio;
# the cache reads (full check, then --check headers) print their ratio to the loopback figure
# of this invocation and to loopback measured right before each of them (1 MiB writes, and
# 64 KiB writes: the issue names both sizes).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"; repo="$(cd "$here/../.." && pwd)"
OUT="${1:-/tmp/ringtail-perf}"; RUNS="${RUNS:-3}"; DATA_ROOT="${DATA_ROOT:-/var/tmp}"; ONLY="${ONLY:-}"
BIN="${RINGTAIL_BIN:-$repo/target/release/ringtail}"; BENCH="${BENCH_BIN:-$repo/target/release/ringtail-bench}"
mkdir -p "$OUT"
bp=""; dir=""; port=""
cleanup() { [[ -n "$bp" ]] && kill "$bp" 2>/dev/null; wait "$bp" 2>/dev/null; [[ -n "$dir" ]] && rm -rf "$dir" "$dir.log" "$dir.toml"; }
trap cleanup EXIT
start_broker() { # [extra serve args...]
  [[ -n "$dir" ]] || dir=$(mktemp -d "$DATA_ROOT/rt-perf.XXXX")
  port=$((20000 + RANDOM % 20000))
  taskset -c 1 "$BIN" serve --kafka-addr 127.0.0.1:$port --data-dir "$dir" --cores 1 --admin-addr off "$@" >>"$dir.log" 2>&1 &
  bp=$!
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && return 0; sleep 0.1; done
  echo "broker did not start" >&2; cat "$dir.log" >&2; return 1
}
stop_broker() { kill "$bp" 2>/dev/null; wait "$bp" 2>/dev/null; bp=""; }
# Two shards (CPUs 0 and 1, one of them shared with the harness) with the admin endpoint on
# $port+1 for /metrics. Usage: start_broker_2shards MOVE_CONNECTIONS(true|false)
start_broker_2shards() {
  [[ -n "$dir" ]] || dir=$(mktemp -d "$DATA_ROOT/rt-perf.XXXX")
  port=$((20000 + RANDOM % 20000))
  printf 'move_connections = %s\n' "$1" >"$dir.toml"
  "$BIN" serve --kafka-addr 127.0.0.1:$port --data-dir "$dir" --cores 0,1 --admin-addr 127.0.0.1:$((port + 1)) \
    --config "$dir.toml" >>"$dir.log" 2>&1 &
  bp=$!
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && return 0; sleep 0.1; done
  echo "broker did not start" >&2; cat "$dir.log" >&2; return 1
}
fresh() { cleanup; bp=""; dir=""; }
bench() { taskset -c 0 "$BENCH" "$@" --bootstrap 127.0.0.1:$port --cores 0 --no-charts; }
summary() { python3 - "$@" <<'PY'
import json,sys
d=json.load(open(sys.argv[1])); l=d.get('latency_ms') or {}; b=d.get('broker') or {}; e=d.get('e2e_latency_ms') or {}
s=[x for x in d['series'] if x.get('consumed_records_per_sec',0)>0]
unit={'batch_wire_bytes':'batch wire bytes'}.get(d.get('consumed_bytes_unit'),'record values')
chk=d.get('consume_check','full')+('' if d.get('consume_content_verified',True) else ', content NOT verified')
cons=f" consumed {d['consumed_mb_per_sec']:.0f} MB/s of {unit} [check {chk}] (busy seconds: {[round(x['consumed_mb_per_sec']) for x in s]})" if d['consumed_total'] else ""
e2e=f" e2e p50 {e['p50']:.2f} p99 {e['p99']:.2f} p99.9 {e['p999']:.2f} p99.99 {e['p9999']:.2f} ms" if e else ""
ack=f" ack p50 {l['p50']:.2f} p99 {l['p99']:.2f} p99.99 {l['p9999']:.2f} ms" if l else ""
print(f"{d['name']}: {d['records_per_sec']:,.0f} rec/s {d['mb_per_sec']:.1f} MB/s{ack}{e2e}{cons} | broker CPU {b.get('cpu_pct_mean',0):.0f}% wait {b.get('runq_wait_pct_mean',0):.0f}% RSS {b.get('rss_mb_max',0):.0f} MB | harness CPU {d['harness_cpu_pct']:.0f}% | errors {d['produce_errors']}")
PY
}
want() { [[ -z "$ONLY" || "$1" == *"$ONLY"* ]]; }
# One ratio line: the median of a consume run's busy seconds (the last one, partial, dropped)
# over a reference bandwidth. Usage: busy_ratio RESULT_JSON REFERENCE_MB_PER_SEC LABEL
busy_ratio() { python3 - "$@" <<'PY'
import json, statistics, sys
d = json.load(open(sys.argv[1])); ref = float(sys.argv[2]); label = sys.argv[3]
busy = [x['consumed_mb_per_sec'] for x in d['series'] if x.get('consumed_records_per_sec', 0) > 0]
busy = busy[:-1] if len(busy) > 1 else busy  # the last second is partial
if busy and ref > 0:
    m = statistics.median(busy)
    print(f"{label}: {m:.0f} / {ref:.0f} MB/s = {m / ref:.2f} x")
else:
    print(f"{label}: no ratio ({len(busy)} busy seconds, reference {ref:.0f} MB/s)")
PY
}
raw_done=0

echo "== $(date -u +%FT%TZ) git $(cd "$repo" && git rev-parse --short HEAD) load $(cut -d' ' -f1-3 /proc/loadavg)"
if want raw; then
  d=$(mktemp -d "$DATA_ROOT/rt-raw.XXXX")
  taskset -c 0,1 "$BENCH" raw-limits --dir "$d" --seconds 3 --json "$OUT/raw-limits.json" | tail -1 && raw_done=1
  if command -v fio >/dev/null; then
    fio --name=w --filename="$d/f" --ioengine=io_uring --direct=1 --rw=write --bs=1m --size=3g --output-format=terse >/dev/null 2>&1
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null
    taskset -c 1 fio --name=r --filename="$d/f" --ioengine=io_uring --direct=1 --rw=read --bs=1m --iodepth=4 --size=3g --output-format=terse 2>/dev/null \
      | awk -F';' '{printf "O_DIRECT sequential read (fio, 1 MiB, QD 4, CPU 1): %.0f MB/s\n", $7*1024/1e6}' | tee "$OUT/raw-read.txt"
  fi
  rm -rf "$d"
fi
# Raw limits measured right before one run (PAIR=1): this VM's disk write bandwidth drifts
# by 1.5x over minutes, so a produce run is compared with the disk as it is at that moment.
raw_now() {
  local d; d=$(mktemp -d "$DATA_ROOT/rt-rawnow.XXXX")
  taskset -c 0,1 "$BENCH" raw-limits --dir "$d" --seconds 3 --json "$d/raw.json" >/dev/null 2>&1
  cp "$d/raw.json" "$1" 2>/dev/null; rm -rf "$d"
}
produce_cell() { # name, serve-args-string, bench args...
  local name=$1 sargs=$2; shift 2
  for r in $(seq 1 "$RUNS"); do
    [[ "${PAIR:-0}" == 1 ]] && raw_now "$OUT/$name-$r-raw.json"
    fresh; start_broker $sargs || continue
    bench produce --topic t --json "$OUT/$name-$r.json" --name "$name" "$@" >"$OUT/$name-$r.log" 2>&1
    stop_broker; summary "$OUT/$name-$r.json"
    [[ "${PAIR:-0}" == 1 ]] && python3 - "$OUT/$name-$r.json" "$OUT/$name-$r-raw.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); raw = json.load(open(sys.argv[2]))
disk, lo = raw['disk_write_mb_per_sec'], raw['loopback_mb_per_sec']
print(f"  vs raw limits measured just before: disk {disk:.0f}, loopback {lo:.0f} MB/s: "
      f"{d['mb_per_sec']:.0f} / {min(disk, lo):.0f} = {d['mb_per_sec'] / min(disk, lo):.2f} x")
PY
  done
}
want p100 && produce_cell p100-a1-p1 "" --partitions 1 --record-size 100 --acks 1 --duration 10 --warmup 2
want p1k && PAIR=1 produce_cell p1k-a1-p12 "" --partitions 12 --record-size 1024 --acks 1 --duration 10 --warmup 2
want p1k && produce_cell p1k-aall-p12 "" --partitions 12 --record-size 1024 --acks all --duration 10 --warmup 2
want p1k1 && produce_cell p1k-a1-p1 "" --partitions 1 --record-size 1024 --acks 1 --duration 10 --warmup 2
# The issue's e2e rate is half of the measured maximum (1 KiB, acks=1). Earlier sessions used
# 300 k rec/s; when the 1 KiB x 1 partition cell ran in this invocation, half of its median
# rate is measured too (it reached 1.0-1.07 M rec/s in session 9).
half_max_rate() {
  python3 - "$OUT" "$RUNS" <<'PY'
import json, os, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
rates = []
for r in range(1, runs + 1):
    f = os.path.join(out, f"p1k-a1-p1-{r}.json")
    if os.path.exists(f):
        rates.append(json.load(open(f))["records_per_sec"])
if rates:
    print(int(statistics.median(rates) / 2 / 1000) * 1000)
PY
}
if want e2e; then
  default_rates=300000
  if want p1k1; then half=$(half_max_rate); [[ -n "$half" ]] && default_rates="300000 $half"; fi
  for rate in ${E2E_RATES:-$default_rates}; do
    for r in $(seq 1 "$RUNS"); do
      fresh; start_broker || continue
      bench e2e --topic t --json "$OUT/e2e-$rate-$r.json" --name "e2e-1k-p1-$rate" --partitions 1 --record-size 1024 --acks 1 \
        --rate "$rate" --linger-ms 0 --duration 12 --warmup 2 ${E2E_ARGS:-} >"$OUT/e2e-$rate-$r.log" 2>&1
      stop_broker; summary "$OUT/e2e-$rate-$r.json"
    done
  done
fi
# Raw read bandwidth in the cold read's shape (12 files read at once with O_DIRECT), measured
# right before each cold run: this VM's disk varies too much between runs for one figure.
raw_read12() {
  command -v fio >/dev/null || { echo 0; return; }
  local d; d=$(mktemp -d "$DATA_ROOT/rt-raw12.XXXX")
  fio --name=w --directory="$d" --numjobs=12 --size=512M --bs=1M --rw=write --direct=1 --ioengine=io_uring \
    --iodepth=4 --group_reporting --output-format=terse >/dev/null 2>&1
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null
  taskset -c 1 fio --name=r --directory="$d" --numjobs=12 --size=512M --bs=1M --rw=read --direct=1 --ioengine=io_uring \
    --iodepth=2 --group_reporting --output-format=terse 2>/dev/null | awk -F';' '{printf "%.0f", $7*1024/1e6}'
  rm -rf "$d"
}
if want read; then
  # The loopback figure of this invocation (one core that only receives): from the raw section
  # if it ran; otherwise (e.g. ONLY=read, or a raw-limits.json left by an earlier invocation)
  # measured once here, before any broker runs.
  if [[ "$raw_done" != 1 || ! -s "$OUT/raw-limits.json" ]]; then
    raw_now "$OUT/raw-limits.json"
    echo "loopback measured for the read section: $(python3 -c "import json;print(round(json.load(open('$OUT/raw-limits.json'))['loopback_mb_per_sec']))" 2>/dev/null || echo '?') MB/s"
  fi
  loopback=$(python3 -c "import json;print(json.load(open('$OUT/raw-limits.json'))['loopback_mb_per_sec'])" 2>/dev/null || echo 0)
  for r in $(seq 1 "$RUNS"); do
    fresh; start_broker --config "$here/perf-bigcache.toml" || continue
    bench produce --topic t --json "$OUT/fill-$r.json" --name fill --partitions 12 --record-size 1024 --acks 1 --duration 10 --warmup 0 >/dev/null 2>&1
    n=$(python3 -c "import json;print(json.load(open('$OUT/fill-$r.json'))['produced_acked_all'])")
    # Loopback moves between 2.7 and 4.0 GB/s within minutes on this VM: measure it again
    # right before the cache reads, with the broker up and idle, and compare with that.
    raw_now "$OUT/raw-cache-$r.json"
    lo_now=$(python3 -c "import json;print(json.load(open('$OUT/raw-cache-$r.json'))['loopback_mb_per_sec'])" 2>/dev/null || echo 0)
    lo64_now=$(python3 -c "import json;print(json.load(open('$OUT/raw-cache-$r.json')).get('loopback_64k_mb_per_sec', 0))" 2>/dev/null || echo 0)
    # From the batch cache: 4 independent readers of everything just written (all cached).
    # Run twice on the same data. The full check (every batch CRC32C, every record decoded and
    # checksummed, e2e latency) is the measurement that verifies what the broker served, but
    # its one consumer core (receive copy, CRC, checksums) tops out at ~0.6 x loopback while
    # the broker's core still has headroom: it measures the harness. The --check headers run
    # counts records from batch headers only, so it shows what the broker serves when the
    # consumer is not the limit; its content is not verified (the full run just before is).
    bench consume --topic t --json "$OUT/cache-$r.json" --name "cache-read" --partitions 12 --record-size 1024 --from earliest \
      --records $((n * 4)) --subscriptions 4 --duration 60 --warmup 0 >"$OUT/cache-$r.log" 2>&1
    summary "$OUT/cache-$r.json"
    busy_ratio "$OUT/cache-$r.json" "$loopback" "cache-read [check full, MB of record values] vs loopback at the start"
    busy_ratio "$OUT/cache-$r.json" "$lo_now" "cache-read [check full, MB of record values] vs loopback right before"
    busy_ratio "$OUT/cache-$r.json" "$lo64_now" "cache-read [check full, MB of record values] vs loopback with 64 KiB writes right before"
    bench consume --topic t --json "$OUT/cache-headers-$r.json" --name "cache-read-headers" --partitions 12 --record-size 1024 \
      --from earliest --records $((n * 4)) --subscriptions 4 --duration 60 --warmup 0 --check headers >"$OUT/cache-headers-$r.log" 2>&1
    summary "$OUT/cache-headers-$r.json"
    busy_ratio "$OUT/cache-headers-$r.json" "$loopback" "cache-read [check headers, MB of batch wire bytes] vs loopback at the start"
    busy_ratio "$OUT/cache-headers-$r.json" "$lo_now" "cache-read [check headers, MB of batch wire bytes] vs loopback right before"
    busy_ratio "$OUT/cache-headers-$r.json" "$lo64_now" "cache-read [check headers, MB of batch wire bytes] vs loopback with 64 KiB writes right before"
    # Cold: more data first (the fill above grows the cache's memory, which this VM hands out
    # at about 200 MB/s, so it leaves only 2-3 s of reading at disk speed). Then restart
    # (empty cache), drop the page cache, 4 consumers of 3 partitions each read it all.
    stop_broker; start_broker || continue
    bench produce --topic t --json "$OUT/fill-more-$r.json" --name fill-more --partitions 12 --record-size 1024 --acks 1 --duration 5 --warmup 0 >/dev/null 2>&1
    more=$(python3 -c "import json;print(json.load(open('$OUT/fill-more-$r.json'))['produced_acked_all'])" 2>/dev/null || echo 0)
    n=$((n + ${more:-0}))
    stop_broker; raw=$(raw_read12); sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; start_broker || continue
    bench consume --topic t --json "$OUT/cold-$r.json" --name "cold-read" --partitions 12 --record-size 1024 --from earliest \
      --records "$n" --consumers 4 --duration 60 --warmup 0 >"$OUT/cold-$r.log" 2>&1
    stop_broker; summary "$OUT/cold-$r.json"
    busy_ratio "$OUT/cold-$r.json" "$raw" "cold-read vs fio 12-stream O_DIRECT read just before"
  done
fi
if want idle; then
  fresh; start_broker || exit 1
  bench produce --topic idle --json "$OUT/idle-fill.json" --name idle-fill --partitions 1000 --record-size 1024 --acks 1 --rate 20000 \
    --duration 10 --warmup 0 --key-cardinality 5000 --key-mode round-robin >/dev/null 2>&1
  sleep 5; hz=$(getconf CLK_TCK)
  t0=$(awk '{print $14+$15}' /proc/$bp/stat); s0=$(date +%s.%N); sleep 30
  t1=$(awk '{print $14+$15}' /proc/$bp/stat); s1=$(date +%s.%N)
  echo "1000 partitions (each written): idle CPU over 30 s $(python3 -c "print(f'{100*($t1-$t0)/$hz/($s1-$s0):.2f}')")%, peak RSS $(awk '/VmHWM/{printf "%.0f MiB", $2/1024}' /proc/$bp/status)"
  stop_broker
fi
if want hops; then
  # Cross-shard calls per produce request on 2 shards, with connection moves on and off. The
  # harness's one connection lands on either shard; partition 0 of "t" is owned by one of
  # them. Throughput here shares CPU 0 between shard 0 and the harness: hops, not a scaling
  # figure.
  for r in $(seq 1 "$RUNS"); do
    for mv in true false; do
      fresh; start_broker_2shards "$mv" || exit 1
      bench produce --topic t --json "$OUT/hops-$mv-$r.json" --name "hops-move-$mv" --partitions 1 --record-size 100 \
        --acks 1 --duration 6 --warmup 0 >"$OUT/hops-$mv-$r.log" 2>&1
      sleep 1.2 # shards refresh connection counts once a second
      curl -s "127.0.0.1:$((port + 1))/metrics" >"$OUT/hops-$mv-$r.metrics"
      stop_broker; summary "$OUT/hops-$mv-$r.json"
      python3 - "$OUT/hops-$mv-$r.metrics" "$mv" <<'PY'
import re, sys
m = open(sys.argv[1]).read()
def total(pattern):
    return sum(float(v) for v in re.findall(pattern + r' (\S+)', m))
produce = total(r'ringtail_requests_total\{shard="\d+",api="Produce"\}')
cross = total(r'ringtail_cross_shard_calls_total\{shard="\d+"\}')
moved = total(r'ringtail_connections_moved_total\{shard="\d+"\}')
print(f"  move_connections={sys.argv[2]}: {produce:.0f} produce requests, {cross:.0f} cross-shard calls "
      f"({cross / max(produce, 1):.3f} per request), {moved:.0f} connections moved")
PY
    done
  done
fi
