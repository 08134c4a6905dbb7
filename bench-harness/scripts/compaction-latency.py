#!/usr/bin/env python3
"""Produce latency with and without the log cleaner at work (issue 21: "produce p99 latency
under steady load moves by less than 20% while compaction runs").

One broker (one shard, `--cores 1`), two loads the whole time, both from ringtail-bench on
CPU 0:
- the measured one: topic `lat` (4 partitions, cleanup.policy=delete), RATE records/s of
  100 B, acks=all, open loop;
- the churn: topic `churn` (1 partition, 4 MiB segments), CHURN_RATE records/s of 1 KiB over
  CHURN_KEYS keys, so there is always something to compact.
Arms alternate (ABBA order, RUNS pairs): `compact` sets churn's cleanup.policy=compact (the
cleaner, `log.cleaner.backoff.ms`=200 and min.cleanable.dirty.ratio 0.01, then works through
the backlog and keeps up with the churn), `delete` sets it back (the cleaner idles). Each arm
measures ARM_S seconds (after a 3 s warm-up) and prints p50/p99/p99.9 of the acks and the
cleaner's read+write MB/s during it (from /metrics); the end shows the medians per arm and the
p99 ratio.

    RUNS=3 ARM_S=15 bench-harness/scripts/compaction-latency.py

Env: RINGTAIL_BIN (default target/release/ringtail), BENCH_BIN (target/release/ringtail-bench),
RATE=20000, CHURN_RATE=5000, CHURN_KEYS=20000, PREFILL_S=20, CLEANER_MB_S (the broker's
log.cleaner.io.max.bytes.per.second in MB/s, default 50 as in Kafka's default of 50 MiB).
Uses the client-test harness (broker/tests/clients), so confluent-kafka is needed.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

repo = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(repo / "broker/tests/clients"))

import harness  # noqa: E402
import kclients  # noqa: E402
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource  # noqa: E402

RUNS = int(os.environ.get("RUNS", "3"))
ARM_S = int(os.environ.get("ARM_S", "15"))
WARMUP_S = 3
RATE = int(os.environ.get("RATE", "20000"))
CHURN_RATE = int(os.environ.get("CHURN_RATE", "5000"))
CHURN_KEYS = int(os.environ.get("CHURN_KEYS", "20000"))
PREFILL_S = int(os.environ.get("PREFILL_S", "20"))
CLEANER_MB_S = float(os.environ.get("CLEANER_MB_S", "50"))
BENCH = os.environ.get("BENCH_BIN", str(repo / "target/release/ringtail-bench"))


def cleaner_bytes(broker) -> float:
    status, body = broker.http_get("/metrics")
    assert status == 200, status
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(("ringtail_log_cleaner_read_bytes_total", "ringtail_log_cleaner_written_bytes_total")):
            total += float(line.split()[-1])
    return total


def set_policy(bootstrap: str, policy: str) -> None:
    client = kclients.admin(bootstrap)
    res = ConfigResource(ConfigResource.Type.TOPIC, "churn", incremental_configs=[
        ConfigEntry("cleanup.policy", policy, incremental_operation=AlterConfigOpType.SET)])
    client.incremental_alter_configs([res], request_timeout=60)[res].result(timeout=60)


def bench(bootstrap: str, *args: str) -> list[str]:
    return ["taskset", "-c", "0", BENCH, "produce", "--bootstrap", bootstrap, "--cores", "0", "--no-charts", *args]


def measure(broker, workdir: Path, arm: str, run: int) -> dict:
    out = workdir / f"{arm}-{run}.json"
    before_b, before_t = cleaner_bytes(broker), time.monotonic()
    subprocess.run(bench(broker.bootstrap, "--topic", "lat", "--partitions", "4", "--record-size", "100",
                         "--acks", "all", "--rate", str(RATE), "--duration", str(ARM_S + WARMUP_S),
                         "--warmup", str(WARMUP_S), "--name", f"{arm}-{run}", "--json", str(out)),
                   check=True, stdout=subprocess.DEVNULL)
    cleaner_mb_s = (cleaner_bytes(broker) - before_b) / (time.monotonic() - before_t) / 1e6
    d = json.loads(out.read_text())
    lat = d["latency_ms"]
    return {"arm": arm, "p50": lat["p50"], "p99": lat["p99"], "p999": lat["p999"],
            "records_per_sec": d["records_per_sec"], "errors": d["produce_errors"],
            "cleaner_mb_s": cleaner_mb_s, "broker_cpu": (d.get("broker") or {}).get("cpu_pct_mean", 0.0),
            "runq_wait": (d.get("broker") or {}).get("runq_wait_pct_mean", 0.0)}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ringtail-compaction-latency-") as wd:
        workdir = Path(wd)
        broker = harness.Broker(workdir, cores="1", config={
            "log.cleaner.backoff.ms": 200,
            "log.cleaner.io.max.bytes.per.second": int(CLEANER_MB_S * 1024 * 1024),
        })
        churn = None
        try:
            broker.start()
            kclients.create_topic(broker.bootstrap, "churn", 1, config={
                "cleanup.policy": "delete", "internal.segment.bytes": str(4 << 20),
                "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "0"})
            churn = subprocess.Popen(bench(
                broker.bootstrap, "--topic", "churn", "--no-create-topics", "--record-size", "1024",
                "--key-cardinality", str(CHURN_KEYS), "--acks", "1", "--rate", str(CHURN_RATE),
                "--duration", "100000", "--json", str(workdir / "churn.json")),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(PREFILL_S)
            print(f"== {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} load {os.getloadavg()[0]:.2f}; "
                  f"lat {RATE} rec/s x 100 B acks=all; churn {CHURN_RATE} rec/s x 1 KiB over {CHURN_KEYS} keys; "
                  f"arms of {ARM_S} s", flush=True)
            results = []
            for run in range(RUNS):
                order = ["compact", "delete"] if run % 2 == 0 else ["delete", "compact"]
                for arm in order:
                    set_policy(broker.bootstrap, arm)
                    time.sleep(2)
                    r = measure(broker, workdir, arm, run)
                    results.append(r)
                    print(f"run {run + 1} {arm:7}: p50 {r['p50']:.2f} p99 {r['p99']:.2f} p99.9 {r['p999']:.2f} ms, "
                          f"{r['records_per_sec']:,.0f} rec/s, errors {r['errors']}, cleaner {r['cleaner_mb_s']:.1f} MB/s, "
                          f"broker CPU {r['broker_cpu']:.0f}% runq wait {r['runq_wait']:.0f}%", flush=True)
            med = {}
            for arm in ("compact", "delete"):
                rs = [r for r in results if r["arm"] == arm]
                med[arm] = {k: statistics.median(r[k] for r in rs) for k in ("p50", "p99", "p999", "cleaner_mb_s")}
                m = med[arm]
                print(f"median {arm:7}: p50 {m['p50']:.2f} p99 {m['p99']:.2f} p99.9 {m['p999']:.2f} ms, "
                      f"cleaner {m['cleaner_mb_s']:.1f} MB/s")
            print(f"p99 compact/delete = {med['compact']['p99'] / med['delete']['p99']:.2f}; "
                  f"p50 ratio {med['compact']['p50'] / med['delete']['p50']:.2f}")
            print(broker.log_text().count("log cleaned"), "cleanings logged")
        except BaseException:
            print(broker.tail(20), file=sys.stderr)
            raise
        finally:
            if churn is not None:
                churn.terminate()
                churn.wait(timeout=30)
            broker.terminate_quietly()


if __name__ == "__main__":
    main()
