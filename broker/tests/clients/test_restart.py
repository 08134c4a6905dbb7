"""Restart the broker (clean SIGTERM, and kill -9) while a producer with acks=all is writing:
every acknowledged record is still there afterwards, at the offset it was acknowledged at."""

from __future__ import annotations

import time

import pytest
from confluent_kafka.admin import ConfigResource

import kclients

PARTITIONS = 4
DEADLINE_S = 120


@pytest.mark.parametrize("how", ["term", "kill"])
def test_restart_keeps_every_acknowledged_record(broker_factory, topic_name, how):
    broker = broker_factory()
    kclients.create_topic(broker.bootstrap, topic_name, PARTITIONS, config={"retention.ms": "7200000"})

    deliveries = kclients.Deliveries()
    prod = kclients.producer(
        broker.bootstrap,
        **{"acks": "all", "linger.ms": 5, "message.timeout.ms": 180000, "reconnect.backoff.ms": 50,
           "reconnect.backoff.max.ms": 500},
    )

    # Phase 1: records fully acknowledged before anything happens.
    for i in range(20_000):
        prod.produce(topic_name, key=f"a{i}".encode(), value=f"a:{i}".encode(), on_delivery=deliveries)
        if i % 1000 == 0:
            prod.poll(0)
    kclients.flush_all(prod)
    assert not deliveries.failed
    phase1 = len(deliveries.ok)

    # Phase 2: keep producing, stop/kill the broker in the middle of it.
    exit_code = None
    produced = 0
    stop_after = None
    deadline = time.monotonic() + DEADLINE_S
    while stop_after is None or produced < stop_after:
        assert time.monotonic() < deadline, f"phase 2 stuck: {len(deliveries.ok) - phase1} acks"
        if produced - (len(deliveries.ok) - phase1) - len(deliveries.failed) > 2000:
            prod.poll(0.01)  # bound what is in flight
            if stop_after is not None:
                break  # broker is down: nothing more will be acknowledged now
            continue
        prod.produce(topic_name, key=f"b{produced}".encode(), value=f"b:{produced}".encode(),
                     on_delivery=deliveries)
        produced += 1
        prod.poll(0)
        if stop_after is None and len(deliveries.ok) - phase1 >= 1000:
            if how == "term":
                exit_code = broker.stop()
            else:
                broker.kill9()
            stop_after = produced + 500  # these queue up while the broker is down
    acked_while_running = len(deliveries.ok)

    broker.start()
    kclients.flush_all(prod, timeout_s=DEADLINE_S)
    if how == "term":
        assert exit_code == 0, f"SIGTERM should be a clean shutdown, exit code {exit_code}"

    acked = {(m.partition, m.offset): m.value for m in deliveries.ok}
    assert len(acked) == len(deliveries.ok), "two acknowledged records share an offset"
    assert acked_while_running > phase1

    # Every acknowledged record is there, at its offset.
    got = kclients.consume_all(broker.bootstrap, topic_name, PARTITIONS, timeout_s=DEADLINE_S)
    stored = {(p, m.offset): m.value for p, msgs in got.items() for m in msgs}
    missing = [(k, v) for k, v in acked.items() if stored.get(k) != v]
    assert not missing, (
        f"{len(missing)} of {len(acked)} acknowledged records lost or changed after {how}; "
        f"first: {[(k, v, stored.get(k)) for k, v in sorted(missing)[:5]]}"
    )
    for p, msgs in got.items():
        assert [m.offset for m in msgs] == list(range(len(msgs))), f"partition {p} has offset gaps"

    # The log continues after the recovered end, and the topic config survived.
    end = kclients.high_watermarks(broker.bootstrap, topic_name, PARTITIONS)
    more = kclients.Deliveries()
    prod2 = kclients.producer(broker.bootstrap)
    for p in range(PARTITIONS):
        prod2.produce(topic_name, partition=p, value=b"after-restart", on_delivery=more)
    kclients.flush_all(prod2)
    assert not more.failed
    assert {m.partition: m.offset for m in more.ok} == end
    res = ConfigResource("topic", topic_name)
    client = kclients.admin(broker.bootstrap)
    entries = client.describe_configs([res], request_timeout=60)[res].result(timeout=60)
    assert entries["retention.ms"].value == "7200000"


def test_restart_twice_and_new_topics_after_recovery(broker_factory, topic_name):
    """Recovery is repeatable: kill -9, restart, SIGTERM, restart; data and topics stay."""
    broker = broker_factory()
    kclients.create_topic(broker.bootstrap, topic_name, 2)
    deliveries = kclients.Deliveries()
    prod = kclients.producer(broker.bootstrap)
    for i in range(1000):
        prod.produce(topic_name, partition=i % 2, value=f"{i}".encode(), on_delivery=deliveries)
    kclients.flush_all(prod)
    assert not deliveries.failed

    broker.restart("kill")
    second = topic_name + "-2"
    kclients.create_topic(broker.bootstrap, second, 3)
    assert broker.restart("term") == 0

    md = kclients.admin(broker.bootstrap).list_topics(timeout=30)
    assert len(md.topics[topic_name].partitions) == 2
    assert len(md.topics[second].partitions) == 3
    got = kclients.consume_all(broker.bootstrap, topic_name, 2)
    assert sorted(int(m.value) for msgs in got.values() for m in msgs) == list(range(1000))
