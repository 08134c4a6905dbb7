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


def read_partitions(bootstrap: str, topic: str, parts: list[int], out: dict, errors: list) -> None:
    try:
        c = kclients.consumer(
            bootstrap,
            **{"max.partition.fetch.bytes": 256 << 10, "fetch.max.bytes": 1 << 20},
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


def test_concurrent_cold_reads_come_back_whole_through_read_ahead(broker_factory, topic_name):
    broker = broker_factory(cores="0", settings={"read_ahead_bytes_per_shard": READ_AHEAD_BUDGET})
    kclients.create_topic(broker.bootstrap, topic_name, PARTITIONS)
    deliveries = kclients.Deliveries()
    prod = kclients.producer(broker.bootstrap, **{"linger.ms": 20, "batch.size": 64 << 10, "acks": "1"})
    for i in range(RECORDS):
        for p in range(PARTITIONS):
            prod.produce(topic_name, partition=p, value=value_for(p, i), on_delivery=deliveries)
        if i % 200 == 0:
            prod.poll(0)
    kclients.flush_all(prod)
    assert not deliveries.failed and len(deliveries.ok) == RECORDS * PARTITIONS

    # A restart empties the batch cache: everything below is read from disk.
    broker.restart("term")
    before = kclients.scrape_metrics(broker)

    out: dict[int, int] = {}
    errors: list[BaseException] = []
    threads = [
        threading.Thread(
            target=read_partitions,
            args=(broker.bootstrap, topic_name, list(range(c, PARTITIONS, CONSUMERS)), out, errors),
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
