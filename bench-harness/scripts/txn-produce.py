#!/usr/bin/env python3
"""Transactional produce throughput against plain idempotent produce, same client, same
broker, arms interleaved (issue 20's target: >= 0.8 x with 1 000 records per transaction).

For each of RUNS runs: start a fresh broker (1 shard pinned to CPU 1, `--cores 1`), pin this
client to CPU 0, then run both arms on fresh 1-partition topics, in alternating order (AB,
BA, ...): RECORDS records of SIZE bytes with confluent-kafka (librdkafka), acks=all,
enable.idempotence=true, linger.ms=5; the transactional arm also sets transactional.id and
commits every PER_TXN records (begin, produce, commit_transaction). Time runs from the first
produce to the last acknowledgement (flush) or commit. Prints each run and the medians.

    RUNS=5 RECORDS=200000 SIZE=1024 PER_TXN=1000 bench-harness/scripts/txn-produce.py [BINARY]

BINARY defaults to target/release/ringtail. Optional CONFIG='{"ringtail.acks.all.fsync": false}'
(JSON) goes to the broker's [kafka] settings. Uses the client-test harness
(broker/tests/clients), so confluent-kafka is needed.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "broker/tests/clients"))

import harness  # noqa: E402
import kclients  # noqa: E402


def produce_arm(bootstrap: str, topic: str, records: int, size: int, per_txn: int | None,
                commits_ms: list[float]) -> float:
    """Seconds to produce `records` (committed in transactions of `per_txn` if given; each
    commit_transaction's duration goes to `commits_ms`)."""
    config = {"enable.idempotence": True, "acks": "all", "linger.ms": 5}
    if per_txn:
        config["transactional.id"] = f"bench-{topic}"
    p = kclients.producer(bootstrap, **config)
    value = b"x" * size
    if per_txn:
        p.init_transactions(60)
    started = time.monotonic()
    sent = 0
    while sent < records:
        n = min(per_txn or records, records - sent)
        if per_txn:
            p.begin_transaction()
        for _ in range(n):
            while True:
                try:
                    p.produce(topic, value=value, partition=0)
                    break
                except BufferError:
                    p.poll(0.001)
        sent += n
        if per_txn:
            t0 = time.monotonic()
            p.commit_transaction(60)
            commits_ms.append((time.monotonic() - t0) * 1000)
    kclients.flush_all(p)
    return time.monotonic() - started


def one_run(run: int, records: int, size: int, per_txn: int, commits_ms: list[float]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="ringtail-txnbench-") as workdir:
        config = json.loads(os.environ["CONFIG"]) if os.environ.get("CONFIG") else None
        broker = harness.Broker(Path(workdir), cores="1", config=config)
        try:
            os.sched_setaffinity(0, {0, 1})  # the broker inherits it, and needs CPU 1
            broker.start()
            os.sched_setaffinity(0, {0})
            arms = [("idempotent", None), ("transactional", per_txn)]
            if run % 2:
                arms.reverse()
            out = {}
            for name, txn in arms:
                topic = f"{name}-{run}"
                kclients.create_topic(broker.bootstrap, topic, 1)
                took = produce_arm(broker.bootstrap, topic, records, size, txn, commits_ms)
                out[name] = records / took
            return out
        except BaseException:
            print(broker.tail(20), file=sys.stderr)
            raise
        finally:
            broker.terminate_quietly()


def main() -> None:
    root = Path(__file__).resolve().parents[2]
    os.environ["RINGTAIL_BIN"] = sys.argv[1] if len(sys.argv) > 1 else str(root / "target/release/ringtail")
    runs = int(os.environ.get("RUNS", "5"))
    records = int(os.environ.get("RECORDS", "200000"))
    size = int(os.environ.get("SIZE", "1024"))
    per_txn = int(os.environ.get("PER_TXN", "1000"))
    rates: dict[str, list[float]] = {"idempotent": [], "transactional": []}
    ratios = []
    for run in range(runs):
        commits_ms: list[float] = []
        r = one_run(run, records, size, per_txn, commits_ms)
        for k, v in r.items():
            rates[k].append(v)
        ratios.append(r["transactional"] / r["idempotent"])
        print(f"run {run + 1}: idempotent {r['idempotent']:,.0f} rec/s, transactional "
              f"{r['transactional']:,.0f} rec/s, ratio {ratios[-1]:.2f}; commit_transaction median "
              f"{statistics.median(commits_ms):.1f} ms", flush=True)
    for k, v in rates.items():
        print(f"median {k}: {statistics.median(v):,.0f} rec/s "
              f"({statistics.median(v) * size / 1e6:.1f} MB/s) [{', '.join(f'{x:,.0f}' for x in v)}]")
    print(f"median ratio (per run): {statistics.median(ratios):.2f} [{', '.join(f'{x:.2f}' for x in ratios)}]")


if __name__ == "__main__":
    main()
