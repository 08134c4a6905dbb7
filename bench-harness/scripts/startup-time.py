#!/usr/bin/env python3
"""Start-up time against history (issue 21: "a broker with 1 GiB of __consumer_offsets
history and 1 000 partitions with idempotent producers restarts, clean and after kill -9, in
time that does not grow with the history").

One broker (2 shards, CPUs 0-1, default settings: 100 MiB offsets segments, cleaner every
15 s at 50 MiB/s per shard). Set-up: topic `idem` with PARTITIONS partitions, written by
idempotent producers (ringtail-bench --idempotence, acks=all) so every partition has
producer state. Then for each history size in SIZES_GIB (cumulative): OffsetCommit requests
(raw, v2, standalone) from GROUPS groups, each for PARTITIONS/GROUPS partitions of `idem` with
METADATA_BYTES of metadata per partition, until that many bytes of commits were written in
all; SETTLE_S seconds for the cleaner; then RESTARTS (3) pairs of a clean restart (SIGTERM,
start) and a crash restart (kill -9, start), each timed from process start to
- ready: `/ready` answers 200 and the Kafka port accepts (after a kill -9 this includes the
  controller waiting out the dead broker's session, broker.session.timeout.ms = 9 s, as
  Kafka's controller does, whatever the history);
- offsets: every group's committed offsets are served (OffsetFetch v1, retried while the
  coordinator is loading) and equal the last commit;
and the size of `__consumer_offsets` on disk at that moment, and from the broker's log the
time from its `starting` line to the last shard listening (opening every partition);
medians per kind of restart, and every run's "offsets served" time.

    SIZES_GIB=0.25,0.5,1 bench-harness/scripts/startup-time.py

Env: RINGTAIL_BIN (default target/release/ringtail), BENCH_BIN, PARTITIONS=1000, GROUPS=10,
METADATA_BYTES=4000, SETTLE_S=30, OFFSETS_SEGMENT_MIB=100 (`offsets.topic.segment.bytes`:
only sealed segments are cleaned, so history below partitions x segment size stays in the
active segments and is replayed whole; a smaller size shows the bound sooner). Uses the client-test harness (broker/tests/clients).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

repo = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(repo / "broker/tests/clients"))

import harness  # noqa: E402
import kclients  # noqa: E402
import kwire  # noqa: E402
from kwire import array, i16, i32, i64, string  # noqa: E402

SIZES_GIB = [float(s) for s in os.environ.get("SIZES_GIB", "0.25,0.5,1").split(",")]
PARTITIONS = int(os.environ.get("PARTITIONS", "1000"))
GROUPS = int(os.environ.get("GROUPS", "10"))
METADATA_BYTES = int(os.environ.get("METADATA_BYTES", "4000"))
SETTLE_S = int(os.environ.get("SETTLE_S", "30"))
RESTARTS = int(os.environ.get("RESTARTS", "3"))
OFFSETS_SEGMENT_MIB = int(os.environ.get("OFFSETS_SEGMENT_MIB", "100"))
BENCH = os.environ.get("BENCH_BIN", str(repo / "target/release/ringtail-bench"))
API_OFFSET_COMMIT = 8
API_OFFSET_FETCH = 9
RETRIABLE = {14, 15, 16}  # COORDINATOR_LOAD_IN_PROGRESS, _NOT_AVAILABLE, NOT_COORDINATOR
TOPIC = "idem"


def group_partitions(g: int) -> list[int]:
    per = PARTITIONS // GROUPS
    return list(range(g * per, (g + 1) * per))


def commit(conn: kwire.Conn, g: int, offset: int, metadata: str) -> int:
    """One standalone OffsetCommit v2; returns the bytes of metadata committed."""
    parts = group_partitions(g)
    body = (string(f"history-{g}") + i32(-1) + string("") + i64(-1)
            + array([string(TOPIC) + array([i32(p) + i64(offset) + string(metadata) for p in parts])]))
    r = conn.request(API_OFFSET_COMMIT, 2, body)
    for _ in range(r.i32()):
        r.string()
        for _ in range(r.i32()):
            r.i32()
            err = r.i16()
            if err:
                raise AssertionError(f"OffsetCommit error {err}")
    return len(parts) * len(metadata)


def offsets_served(bootstrap: str, expected: int, deadline_s: float = 600) -> None:
    """Waits until every group's committed offsets are served and equal `expected`."""
    deadline = time.monotonic() + deadline_s
    with kwire.Conn(bootstrap) as conn:
        for g in range(GROUPS):
            parts = group_partitions(g)
            while True:
                body = string(f"history-{g}") + array([string(TOPIC) + array([i32(p) for p in parts])])
                r = conn.request(API_OFFSET_FETCH, 1, body)
                got, errors = [], set()
                for _ in range(r.i32()):
                    r.string()
                    for _ in range(r.i32()):
                        r.i32()
                        got.append(r.i64())
                        r.string()
                        errors.add(r.i16())
                if errors <= {0} and got == [expected] * len(parts):
                    break
                assert errors <= RETRIABLE | {0}, errors
                assert time.monotonic() < deadline, f"group {g}: {set(got)} {errors}"
                time.sleep(0.02)


def offsets_bytes(data_dir: Path) -> int:
    return sum(f.stat().st_size for d in data_dir.glob("__consumer_offsets-*") for f in d.iterdir()
               if f.is_file())


def ts(line: str) -> datetime:
    return datetime.fromisoformat(line.split()[0].replace("Z", "+00:00"))


def local_open_s(log: str) -> float:
    """Seconds from the broker's `starting` line (it joined the cluster: after a kill -9 the
    controller first waits out the old broker session) to the last shard listening, i.e.
    opening and recovering the partitions."""
    lines = log.splitlines()
    start = max(i for i, ln in enumerate(lines) if "harness: start #" in ln)
    lines = lines[start:]
    began = ts(next(ln for ln in lines if " INFO starting cluster_id=" in ln))
    listening = max(ts(ln) for ln in lines if " INFO listening shard=" in ln)
    return (listening - began).total_seconds()


def timed_start(broker, expected: int) -> tuple[float, float, float]:
    t0 = time.monotonic()
    broker.launch()
    broker.wait_ready(600)
    ready = time.monotonic() - t0
    offsets_served(broker.bootstrap, expected)
    return ready, time.monotonic() - t0, local_open_s(broker.log_text())


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ringtail-startup-", dir=os.environ.get("DATA_ROOT")) as wd:
        broker = harness.Broker(Path(wd), cores="0,1", config={
            "offsets.topic.segment.bytes": OFFSETS_SEGMENT_MIB << 20})
        try:
            broker.start()
            kclients.create_topic(broker.bootstrap, TOPIC, PARTITIONS)
            subprocess.run(["taskset", "-c", "0", BENCH, "produce", "--bootstrap", broker.bootstrap,
                            "--topic", TOPIC, "--no-create-topics", "--record-size", "100",
                            "--idempotence", "--acks", "all", "--producers", "4", "--rate", "20000",
                            "--duration", "10", "--no-charts"], check=True, stdout=subprocess.DEVNULL)
            print(f"== {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {PARTITIONS} partitions with "
                  f"idempotent producers; commits of {GROUPS} groups x {PARTITIONS // GROUPS} partitions x "
                  f"{METADATA_BYTES} B metadata; offsets segments {OFFSETS_SEGMENT_MIB} MiB", flush=True)
            metadata = "m" * METADATA_BYTES
            written, offset = 0, 0
            for size in SIZES_GIB:
                started = time.monotonic()
                with kwire.Conn(broker.bootstrap, timeout_s=120) as conn:
                    while written < size * (1 << 30):
                        offset += 1
                        for g in range(GROUPS):
                            written += commit(conn, g, offset, metadata)
                took = time.monotonic() - started
                time.sleep(SETTLE_S)
                times: dict[str, list[tuple[float, float, float]]] = {"term": [], "kill": []}
                for _ in range(RESTARTS):
                    for how in ("term", "kill"):
                        if how == "term":
                            broker.stop(timeout_s=300)
                        else:
                            broker.kill9()
                        on_disk = offsets_bytes(broker.data_dir)
                        times[how].append(timed_start(broker, offset))
                for how, runs in times.items():
                    ready, served, opening = (statistics.median(r[i] for r in runs) for i in range(3))
                    print(f"history {written / (1 << 30):.2f} GiB ({offset} commits per key, written in {took:.0f} s), "
                          f"__consumer_offsets on disk {on_disk / (1 << 20):.0f} MiB, restart after "
                          f"{'SIGTERM' if how == 'term' else 'kill -9'} (median of {RESTARTS}): ready {ready:.2f} s, "
                          f"offsets served {served:.2f} s; partitions opened in {opening:.2f} s "
                          f"[served: {', '.join(f'{r[1]:.2f}' for r in runs)}]", flush=True)
        except BaseException:
            print(broker.tail(30), file=sys.stderr)
            raise
        finally:
            broker.terminate_quietly()


if __name__ == "__main__":
    main()
