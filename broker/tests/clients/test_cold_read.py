"""Cold reads: after a restart nothing is cached, so consumers read the partitions back from
the segment files, through the read-ahead streams. Several librdkafka consumers read at once,
each its own partitions, with a read-ahead budget too small for all their streams at full
depth: every record comes back in order and unchanged, and most partition reads are served
from read-ahead rather than from a disk read made while the fetch waits."""

from __future__ import annotations

import threading
import time

from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

import kclients

PARTITIONS = 6
CONSUMERS = 3
RECORDS = 5000  # per partition, 1 KiB each: about 5 MiB per partition
VALUE_BYTES = 1024
# One shard; room for every stream's first four 256 KiB ranges, but not for all at full depth.
READ_AHEAD_BUDGET = 8 << 20
DEADLINE_S = 180


def value_for(partition: int, i: int) -> bytes:
    head = f"{partition}:{i}:".encode()
    return (head * (VALUE_BYTES // len(head) + 1))[:VALUE_BYTES]


def read_partitions(
    bootstrap: str, topic: str, parts: list[int], out: dict, errors: list, fetch_bytes: int
) -> None:
    try:
        c = kclients.consumer(
            bootstrap,
            **{"max.partition.fetch.bytes": fetch_bytes, "fetch.max.bytes": 4 * fetch_bytes},
        )
        try:
            c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
            got = {p: 0 for p in parts}
            deadline = time.monotonic() + DEADLINE_S
            while any(n < RECORDS for n in got.values()):
                assert time.monotonic() < deadline, f"partitions {parts}: read only {got} of {RECORDS} each"
                for m in c.consume(num_messages=5000, timeout=0.5):
                    if m.error() is not None:
                        raise KafkaException(m.error())
                    p = m.partition()
                    assert m.offset() == got[p], f"partition {p}: offset {m.offset()}, expected {got[p]}"
                    assert m.value() == value_for(p, got[p]), f"partition {p} offset {m.offset()}: wrong value"
                    got[p] += 1
            out.update(got)
        finally:
            c.close()
    except BaseException as e:  # noqa: BLE001 - re-raised in the test thread
        errors.append(e)


def fill_and_restart(broker, topic: str) -> None:
    """Writes every partition's records, then restarts the broker: the batch cache is empty,
    so reads come from disk."""
    kclients.create_topic(broker.bootstrap, topic, PARTITIONS)
    deliveries = kclients.Deliveries()
    prod = kclients.producer(broker.bootstrap, **{"linger.ms": 20, "batch.size": 64 << 10, "acks": "1"})
    for i in range(RECORDS):
        for p in range(PARTITIONS):
            prod.produce(topic, partition=p, value=value_for(p, i), on_delivery=deliveries)
        if i % 200 == 0:
            prod.poll(0)
    kclients.flush_all(prod)
    assert not deliveries.failed and len(deliveries.ok) == RECORDS * PARTITIONS
    broker.restart("term")


def read_everything(broker, topic: str, fetch_bytes: int = 256 << 10) -> None:
    """CONSUMERS librdkafka consumers at once, each its share of the partitions, read every
    record back and check it; `fetch_bytes` is their max.partition.fetch.bytes."""
    out: dict[int, int] = {}
    errors: list[BaseException] = []
    threads = [
        threading.Thread(
            target=read_partitions,
            args=(broker.bootstrap, topic, list(range(c, PARTITIONS, CONSUMERS)), out, errors, fetch_bytes),
        )
        for c in range(CONSUMERS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE_S + 30)
    if errors:
        raise errors[0]
    assert out == {p: RECORDS for p in range(PARTITIONS)}


def test_concurrent_cold_reads_come_back_whole_through_read_ahead(broker_factory, topic_name):
    broker = broker_factory(cores="0", settings={"read_ahead_bytes_per_shard": READ_AHEAD_BUDGET})
    fill_and_restart(broker, topic_name)
    before = kclients.scrape_metrics(broker)
    read_everything(broker, topic_name)

    # Shards publish their counters about once a second.
    def hits() -> float:
        return after.get(("ringtail_read_ahead_hits_total", ""), 0) - before.get(
            ("ringtail_read_ahead_hits_total", ""), 0
        )

    after = kclients.scrape_metrics(broker)
    deadline = time.monotonic() + 30
    # About 5 MiB per partition read 256 KiB at a time: at least 20 reads each.
    reads_at_least = PARTITIONS * (RECORDS * VALUE_BYTES // (256 << 10))
    while hits() < reads_at_least // 2 and time.monotonic() < deadline:
        time.sleep(0.3)
        after = kclients.scrape_metrics(broker)
    assert hits() >= reads_at_least // 2, f"{hits()} reads from read-ahead, expected at least {reads_at_least // 2}"
    assert after[("ringtail_read_ahead_bytes", "")] <= READ_AHEAD_BUDGET


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def test_io_buffers_of_a_cold_read_are_given_back_once_idle(broker_factory, topic_name):
    """A cold read takes I/O buffers for its disk reads and read-ahead. Once the readers are
    done, the buffers are free but still mapped; the broker gives them back to the system
    after they stay idle for a 10 s interval: the allocator's free gauge falls, and so does
    the process's RSS."""
    broker = broker_factory(cores="0")
    fill_and_restart(broker, topic_name)

    def io(state: str) -> float:
        return kclients.scrape_metrics(broker).get(("ringtail_io_buffer_bytes", state), 0) / (1 << 20)

    # The peak is sampled while the read runs and right after it, not only once it is over:
    # on a loaded machine (CI runs two test processes on 2 cores) buffers freed early in a
    # slow read can already be idle for their 10 s and be given back before a single scrape
    # after the read.
    samples: list[tuple[float, float]] = []
    reading = threading.Event()
    reading.set()

    def sample() -> None:
        while reading.is_set():
            samples.append((io("free"), rss_mib(broker.pid)))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        read_everything(broker, topic_name, fetch_bytes=1 << 20)
    finally:
        reading.clear()
        sampler.join(30)
    samples.append((io("free"), rss_mib(broker.pid)))
    peak_free, peak_rss = max(samples)
    assert peak_free >= 2, f"a cold read of {PARTITIONS} partitions left only {peak_free:.1f} MiB of free I/O buffers"
    deadline = time.monotonic() + 90
    while io("free") > peak_free / 4 and time.monotonic() < deadline:
        time.sleep(1)
    free, rss = io("free"), rss_mib(broker.pid)
    assert free <= peak_free / 4, f"free I/O buffers: {peak_free:.1f} MiB after the read, still {free:.1f} MiB after 90 s idle"
    given_back = peak_free - free
    assert peak_rss - rss >= given_back / 2, (
        f"RSS {peak_rss:.0f} -> {rss:.0f} MiB while {given_back:.1f} MiB of free I/O buffers were unmapped"
    )
