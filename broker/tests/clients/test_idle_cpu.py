"""An idle broker must not spin: < 2 % of one core while nothing happens (measured from
/proc/PID/stat utime+stime of all its threads, after a warm-up with real traffic)."""

from __future__ import annotations

import os
import time

import kclients

IDLE_CPU_PERCENT_MAX = 2.0
MEASURE_S = 10.0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        # The command name (field 2) may contain spaces: split after its closing parenthesis.
        fields = f.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def test_idle_broker_does_not_spin(broker_factory, topic_name):
    broker = broker_factory(cores="0,1")

    # Warm-up: real traffic through both shards, then every client goes away.
    kclients.create_topic(broker.bootstrap, topic_name, 4)
    deliveries = kclients.Deliveries()
    prod = kclients.producer(broker.bootstrap)
    for i in range(5000):
        prod.produce(topic_name, partition=i % 4, value=b"warm-up %d" % i, on_delivery=deliveries)
    kclients.flush_all(prod)
    assert not deliveries.failed
    got = kclients.consume_all(broker.bootstrap, topic_name, 4)
    assert sum(len(v) for v in got.values()) == 5000
    del prod
    time.sleep(3.0)  # let connection teardown and any spin-before-park windows pass

    start_cpu = cpu_seconds(broker.pid)
    start = time.monotonic()
    time.sleep(MEASURE_S)
    used = cpu_seconds(broker.pid) - start_cpu
    elapsed = time.monotonic() - start
    percent = 100.0 * used / elapsed
    assert broker.alive()
    assert percent < IDLE_CPU_PERCENT_MAX, (
        f"idle broker used {used:.2f} s CPU in {elapsed:.1f} s = {percent:.1f} % of a core "
        f"(limit {IDLE_CPU_PERCENT_MAX} %): something is busy-polling"
    )


RSS_MAX_MIB = 256


def rss_high_water_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmHWM in /proc/PID/status")


def test_thousand_partitions_stay_small(broker_factory, topic_name):
    """1000 partitions, every one written to many times with small batches: the broker's
    peak RSS stays under 256 MiB (the recent-batch caches share one budget per shard and do
    not pin whole request buffers), and everything is read back."""
    broker = broker_factory(cores="0")
    partitions = 1000
    kclients.create_topic(broker.bootstrap, topic_name, partitions)
    deliveries = kclients.Deliveries()
    prod = kclients.producer(broker.bootstrap, **{"linger.ms": 0, "acks": 1})
    value = b"v" * 1000
    total = 100_000
    # Paced like a steady stream (many small produce requests, each touching a few dozen
    # partitions), which is what used to make cached batches pin whole request buffers.
    for i in range(total):
        prod.produce(topic_name, partition=i % partitions, value=value, on_delivery=deliveries)
        if i % 20 == 19:
            prod.poll(0)
            time.sleep(0.001)
    kclients.flush_all(prod)
    assert not deliveries.failed
    peak = rss_high_water_mib(broker.pid)
    assert broker.alive()
    print(f"peak RSS {peak:.0f} MiB")
    assert peak < RSS_MAX_MIB, f"peak RSS {peak:.0f} MiB with {partitions} partitions"
    got = kclients.consume_all(broker.bootstrap, topic_name, partitions)
    assert sum(len(v) for v in got.values()) == total
