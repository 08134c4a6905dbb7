#!/usr/bin/env python3
"""Shutdown time with many partitions: for each broker binary given, RUNS times (binaries
interleaved), start a fresh broker (2 shards, CPUs 0-1), create one topic with PARTITIONS
partitions, produce 3 records of 100 B to each (acks=all), send SIGTERM and time until the
process exits; prints each run and the median per binary.

    RUNS=3 PARTITIONS=2000 bench-harness/scripts/shutdown-time.py OLD/ringtail NEW/ringtail

Optional SETTINGS='{"shutdown_close_concurrency": 1}' (JSON) are written to the broker's TOML
file. Uses the client-test harness (broker/tests/clients), so confluent-kafka is needed.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "broker/tests/clients"))

import harness  # noqa: E402
import kclients  # noqa: E402


def one_run(binary: str, partitions: int, settings: dict | None) -> tuple[float, int, list]:
    os.environ["RINGTAIL_BIN"] = binary
    with tempfile.TemporaryDirectory(prefix="ringtail-shutdown-") as workdir:
        broker = harness.Broker(Path(workdir), settings=settings)
        try:
            broker.start()
            kclients.create_topic(broker.bootstrap, "many", partitions)
            prod = kclients.producer(broker.bootstrap, **{"linger.ms": 50})
            for i in range(partitions * 3):
                prod.produce("many", partition=i % partitions, value=b"x" * 100)
                if i % 1000 == 0:
                    prod.poll(0)
            kclients.flush_all(prod)
            started = time.monotonic()
            code = broker.stop(timeout_s=300)
            took = time.monotonic() - started
            shards = re.findall(r"partitions closed shard=(\d+) partitions=(\d+) took_ms=(\d+)", broker.log_text())
            return took, code, shards
        except BaseException:
            print(broker.tail(20), file=sys.stderr)
            raise
        finally:
            broker.terminate_quietly()


def main() -> None:
    binaries = sys.argv[1:]
    if not binaries:
        sys.exit(__doc__)
    runs = int(os.environ.get("RUNS", "3"))
    partitions = int(os.environ.get("PARTITIONS", "2000"))
    settings = json.loads(os.environ["SETTINGS"]) if os.environ.get("SETTINGS") else None
    results: dict[str, list[float]] = {b: [] for b in binaries}
    for run in range(runs):
        for binary in binaries:
            took, code, shards = one_run(binary, partitions, settings)
            results[binary].append(took)
            print(f"run {run + 1} {binary}: SIGTERM to exit {took:.2f} s, exit code {code}, "
                  f"per shard (shard, partitions, close ms) {shards}", flush=True)
    for binary, times in results.items():
        print(f"median {binary}: {statistics.median(times):.2f} s "
              f"[{', '.join(f'{t:.2f}' for t in times)}]")


if __name__ == "__main__":
    main()
