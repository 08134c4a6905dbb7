#!/usr/bin/env python3
"""Produce throughput with replication (issue 19): RF=3 acks=all against RF=1 acks=all and
RF=1 acks=1, on one 3-node cluster, arms interleaved, plus the replication lag under load and
the bytes followers copied per byte they replicated.

Three `ringtail` nodes share this machine (node i pinned to CPU (i-1) % 2; the client is not
pinned), so absolute figures are not the point: the ratios measured in the same run are. For
each of RUNS runs, every arm produces RECORDS records of SIZE bytes with confluent-kafka
(enable.idempotence for acks=all, linger.ms=5) to a fresh 1-partition topic, in rotating
order; time runs from the first produce to the last acknowledgement. While the RF=3 arm runs,
its leader's `/metrics` is sampled every 100 ms for `ringtail_replica_max_lag_records` (the
lag, records, of the slowest follower). After it, `ringtail_replication_bytes_total` of the two
followers is compared with the bytes the leader appended (`ringtail_produce_bytes_total`):
followers store the leader's batch bytes as they are, so the ratio is 1.00 when nothing is
re-encoded or fetched twice.

    RUNS=5 RECORDS=100000 SIZE=1024 bench-harness/scripts/replication-produce.py [BINARY]

BINARY defaults to target/release/ringtail. Uses the client-test harness
(broker/tests/clients), so confluent-kafka is needed.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "broker/tests/clients"))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import NewTopic  # noqa: E402

from cluster_harness import Cluster, wait_for  # noqa: E402


def metric(url: str, name: str) -> float:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def produce(bootstrap: str, topic: str, records: int, size: int, acks: str) -> float:
    p = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 5,
                  "enable.idempotence": acks == "all", "queue.buffering.max.messages": 200000})
    value = b"x" * size
    failed = []

    def done(err, _msg):
        if err is not None:
            failed.append(err)

    started = time.monotonic()
    for _ in range(records):
        while True:
            try:
                p.produce(topic, value=value, partition=0, on_delivery=done)
                break
            except BufferError:
                p.poll(0.001)
        p.poll(0)
    left = p.flush(300)
    elapsed = time.monotonic() - started
    if left or failed:
        raise SystemExit(f"{topic}: {left} unsent, {len(failed)} failed ({failed[:1]})")
    return elapsed


def main() -> None:
    runs = int(os.environ.get("RUNS", "5"))
    records = int(os.environ.get("RECORDS", "100000"))
    size = int(os.environ.get("SIZE", "1024"))
    if len(sys.argv) > 1:
        os.environ["RINGTAIL_BIN"] = str(Path(sys.argv[1]).resolve())
    os.environ.setdefault("RINGTAIL_BIN", str(ROOT / "target/release/ringtail"))
    arms = [("RF=3 acks=all", 3, "all"), ("RF=1 acks=all", 1, "all"), ("RF=1 acks=1", 1, "1")]
    results: dict[str, list[float]] = {a[0]: [] for a in arms}
    lags: list[float] = []
    copy_ratios: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        c = Cluster(Path(tmp))
        c.start()
        try:
            for run in range(runs):
                order = arms[run % 3:] + arms[:run % 3]
                for name, rf, acks in order:
                    topic = f"bench-{run}-{rf}-{acks}"
                    fut = c.admin().create_topics([NewTopic(topic, 1, rf)], request_timeout=30)[topic]
                    fut.result(60)

                    def placed():
                        pm = c.admin().list_topics(topic, timeout=10).topics[topic].partitions[0]
                        return (pm.leader, list(pm.replicas)) if pm.leader > 0 and len(pm.isrs) == rf else None

                    leader, replicas = wait_for(f"{topic} led and in sync", placed, timeout_s=60)
                    leader_url = c.nodes[leader].admin_url
                    followers = [r for r in replicas if r != leader]
                    sampling = threading.Event()
                    peak = [0.0]
                    if rf == 3:
                        before_copied = sum(metric(c.nodes[i].admin_url, "ringtail_replication_bytes_total")
                                            for i in followers)
                        before_appended = metric(leader_url, "ringtail_produce_bytes_total")

                        def sample():
                            while not sampling.is_set():
                                try:
                                    peak[0] = max(peak[0], metric(leader_url, "ringtail_replica_max_lag_records"))
                                except OSError:
                                    pass
                                time.sleep(0.1)

                        sampler = threading.Thread(target=sample, daemon=True)
                        sampler.start()
                    elapsed = produce(c.bootstrap(), topic, records, size, acks)
                    sampling.set()
                    rate = records / elapsed
                    results[name].append(rate)
                    line = f"run {run} {name}: {rate:,.0f} records/s ({rate * size / 1e6:.1f} MB/s)"
                    if rf == 3:
                        lags.append(peak[0])
                        # Followers finish their last fetches.
                        time.sleep(2)
                        copied = sum(metric(c.nodes[i].admin_url, "ringtail_replication_bytes_total")
                                     for i in followers) - before_copied
                        appended = metric(leader_url, "ringtail_produce_bytes_total") - before_appended
                        ratio = copied / (2 * appended) if appended else float("nan")
                        copy_ratios.append(ratio)
                        line += f"; max follower lag {peak[0]:.0f} records; bytes copied per replicated byte {ratio:.3f}"
                    print(line, flush=True)
        finally:
            c.stop()
    print()
    base = statistics.median(results["RF=1 acks=1"])
    for name, _, _ in arms:
        med = statistics.median(results[name])
        print(f"{name}: median {med:,.0f} records/s ({med * size / 1e6:.1f} MB/s), {med / base:.2f} x RF=1 acks=1")
    print(f"RF=3 acks=all / RF=1 acks=all: {statistics.median(results['RF=3 acks=all']) / statistics.median(results['RF=1 acks=all']):.2f}")
    print(f"max follower lag under load (median of runs): {statistics.median(lags):.0f} records")
    print(f"bytes copied per replicated byte (median of runs): {statistics.median(copy_ratios):.3f}")


if __name__ == "__main__":
    main()
