"""1 000 000 records across 12 partitions on 2 shards: no loss, no duplicate, per-partition
order, checked record by record."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

import kclients

TOTAL = 1_000_000
PARTITIONS = 12
DEADLINE_S = 600  # a loaded 2-core box: generous, this is not a speed test


@pytest.mark.slow
def test_million_records_12_partitions_two_shards(broker_factory, topic_name):
    broker = broker_factory(cores="0,1")
    kclients.create_topic(broker.bootstrap, topic_name, PARTITIONS)

    failures = []
    delivered = [0]

    def on_delivery(err, _msg):
        if err is not None:
            failures.append(str(err))
        else:
            delivered[0] += 1

    prod = kclients.producer(
        broker.bootstrap,
        **{
            "acks": "all",
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "message.timeout.ms": DEADLINE_S * 1000,
        },
    )
    padding = b"." * 40
    deadline = time.monotonic() + DEADLINE_S
    for i in range(TOTAL):
        p = i % PARTITIONS
        value = b"%d:%d:" % (p, i // PARTITIONS) + padding
        while True:
            try:
                prod.produce(topic_name, value=value, partition=p, on_delivery=on_delivery)
                break
            except BufferError:
                prod.poll(0.1)
                assert time.monotonic() < deadline, "producer queue never drained"
        if i % 20_000 == 0:
            prod.poll(0)
    kclients.flush_all(prod, timeout_s=max(60.0, deadline - time.monotonic()))
    assert not failures, f"{len(failures)} failed deliveries, first: {failures[:3]}"
    assert delivered[0] == TOTAL

    per_partition = TOTAL // PARTITIONS
    expected_count = {p: per_partition + (1 if p < TOTAL % PARTITIONS else 0) for p in range(PARTITIONS)}
    hw = kclients.high_watermarks(broker.bootstrap, topic_name, PARTITIONS)
    assert hw == expected_count, f"high watermarks {hw}, expected {expected_count}"

    consumer = kclients.consumer(
        broker.bootstrap,
        **{
            "fetch.max.bytes": 52_428_800,
            "max.partition.fetch.bytes": 10_485_760,
            "queued.max.messages.kbytes": 262_144,
            "fetch.wait.max.ms": 100,
        },
    )
    next_seq = {p: 0 for p in range(PARTITIONS)}
    remaining = TOTAL
    try:
        consumer.assign([TopicPartition(topic_name, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        while remaining > 0:
            assert time.monotonic() < deadline + 300, (
                f"consumed {TOTAL - remaining} of {TOTAL} (per partition {next_seq})"
            )
            for m in consumer.consume(num_messages=20_000, timeout=1.0):
                if m.error() is not None:
                    raise KafkaException(m.error())
                p = m.partition()
                vp, seq, _ = m.value().split(b":", 2)
                want = next_seq[p]
                if int(vp) != p or int(seq) != want or m.offset() != want:
                    pytest.fail(
                        f"partition {p} offset {m.offset()}: got record {vp.decode()}:{seq.decode()}, "
                        f"expected {p}:{want} at offset {want}"
                    )
                next_seq[p] = want + 1
                remaining -= 1
        # Nothing beyond what was produced.
        extra = consumer.consume(num_messages=100, timeout=2.0)
        assert not [m for m in extra if m.error() is None], "records beyond the produced ones"
    finally:
        consumer.close()
    assert next_seq == expected_count
