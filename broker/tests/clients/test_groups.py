"""Consumer groups with librdkafka (classic protocol): two members split the partitions, and
committed offsets let the next member resume exactly where the last one stopped."""

from __future__ import annotations

import time

from confluent_kafka import KafkaException, TopicPartition

import kclients

PARTITIONS = 4
PER_PARTITION = 100
DEADLINE_S = 90


def produce_numbered(bootstrap: str, topic: str) -> None:
    deliveries = kclients.Deliveries()
    prod = kclients.producer(bootstrap)
    for i in range(PER_PARTITION):
        for p in range(PARTITIONS):
            prod.produce(topic, partition=p, value=f"{p}:{i}".encode(), on_delivery=deliveries)
    kclients.flush_all(prod)
    assert not deliveries.failed


def group_consumer(bootstrap: str, group: str, **extra):
    return kclients.consumer(bootstrap, **{"group.id": group, "session.timeout.ms": 30000, **extra})


def poll_values(consumer, want: int, deadline: float) -> list[tuple[int, int, bytes]]:
    out = []
    while len(out) < want:
        assert time.monotonic() < deadline, f"consumed {len(out)} of {want}"
        for m in consumer.consume(num_messages=want - len(out), timeout=0.5):
            if m.error() is not None:
                raise KafkaException(m.error())
            out.append((m.partition(), m.offset(), m.value()))
    return out


def test_group_members_split_partitions(broker, topic_name):
    kclients.create_topic(broker.bootstrap, topic_name, PARTITIONS)
    produce_numbered(broker.bootstrap, topic_name)
    group = f"g-{topic_name}"
    members = [group_consumer(broker.bootstrap, group) for _ in range(2)]
    try:
        for c in members:
            c.subscribe([topic_name])
        deadline = time.monotonic() + DEADLINE_S
        seen: dict[int, set] = {0: set(), 1: set()}
        while True:
            assert time.monotonic() < deadline, f"assignments never settled: {[c.assignment() for c in members]}"
            for idx, c in enumerate(members):
                for m in c.consume(num_messages=100, timeout=0.2):
                    if m.error() is not None:
                        raise KafkaException(m.error())
                    seen[idx].add(m.partition())
            parts = [{tp.partition for tp in c.assignment()} for c in members]
            if all(len(p) == PARTITIONS // 2 for p in parts):
                break
        assert parts[0].isdisjoint(parts[1]) and parts[0] | parts[1] == set(range(PARTITIONS)), parts
    finally:
        for c in members:
            c.close()


def test_group_commit_and_resume(broker, topic_name):
    kclients.create_topic(broker.bootstrap, topic_name, PARTITIONS)
    produce_numbered(broker.bootstrap, topic_name)
    total = PARTITIONS * PER_PARTITION
    group = f"g-{topic_name}"
    deadline = time.monotonic() + DEADLINE_S

    first = group_consumer(broker.bootstrap, group)
    try:
        first.subscribe([topic_name])
        part1 = poll_values(first, total // 2, deadline)
        first.commit(asynchronous=False)
        committed = first.committed([TopicPartition(topic_name, p) for p in range(PARTITIONS)], timeout=60)
    finally:
        first.close()
    positions = {p: 0 for p in range(PARTITIONS)}
    for p, offset, _ in part1:
        positions[p] = max(positions[p], offset + 1)
    assert {tp.partition: tp.offset for tp in committed} == {
        p: (o if o > 0 else -1001) for p, o in positions.items()  # -1001: nothing committed
    }

    second = group_consumer(broker.bootstrap, group)
    try:
        second.subscribe([topic_name])
        part2 = poll_values(second, total - len(part1), deadline)
    finally:
        second.close()
    for p, offset, _ in part2:
        assert offset >= positions[p], f"partition {p}: re-read offset {offset} below committed {positions[p]}"
    values = sorted(v for _, _, v in part1 + part2)
    assert values == sorted(f"{p}:{i}".encode() for p in range(PARTITIONS) for i in range(PER_PARTITION))
