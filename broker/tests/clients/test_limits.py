"""Absurd resource requests are refused and the broker keeps serving: partition counts beyond
the per-shard limit (CreateTopics, validate_only, CreatePartitions, auto-creation), beyond
the file descriptor budget, and connections beyond `max_connections_per_shard`. A partition
that cannot open is reported once, and the others still open."""

from __future__ import annotations

import socket
import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewPartitions, NewTopic

import kclients
from harness import ringtail_bin

DEADLINE_S = 120.0
OFFSETS_PARTITIONS = 50  # offsets.topic.num.partitions default


def create_error(bootstrap: str, topic: NewTopic, **options) -> KafkaError:
    """CreateTopics that must fail: the error it failed with."""
    client = kclients.admin(bootstrap)
    fut = client.create_topics([topic], operation_timeout=30, request_timeout=DEADLINE_S, **options)
    with pytest.raises(KafkaException) as info:
        fut[topic.topic].result(timeout=DEADLINE_S)
    return info.value.args[0]


def create_partitions_error(bootstrap: str, topic: str, count: int) -> KafkaError:
    client = kclients.admin(bootstrap)
    fut = client.create_partitions([NewPartitions(topic, count)], operation_timeout=30,
                                   request_timeout=DEADLINE_S)
    with pytest.raises(KafkaException) as info:
        fut[topic].result(timeout=DEADLINE_S)
    return info.value.args[0]


def topic_exists(bootstrap: str, topic: str) -> bool:
    md = kclients.admin(bootstrap).list_topics(timeout=30)
    return topic in md.topics


def produce_and_consume(bootstrap: str, topic: str, partitions: int, count: int = 1000) -> None:
    """Every partition takes records and gives them back, in order."""
    deliveries = kclients.Deliveries()
    prod = kclients.producer(bootstrap)
    for i in range(count):
        prod.produce(topic, partition=i % partitions, value=b"v%d" % i, on_delivery=deliveries)
    kclients.flush_all(prod, DEADLINE_S)
    assert not deliveries.failed, deliveries.failed[:3]
    got = kclients.consume_all(bootstrap, topic, partitions, timeout_s=DEADLINE_S)
    assert sum(len(v) for v in got.values()) == count
    for p in range(partitions):
        expected = [b"v%d" % i for i in range(p, count, partitions)]
        assert [m.value for m in got[p]] == expected


def test_hundred_thousand_partitions_refused_and_broker_keeps_working(broker_factory, topic_name):
    broker = broker_factory(cores="0,1")
    log = broker.log_text()
    assert "RLIMIT_NOFILE" in log and "partition limit" in log, broker.tail()

    # What a new user tried: one topic with absurdly many partitions.
    for options in ({"validate_only": True}, {}):
        err = create_error(broker.bootstrap, NewTopic(topic_name, num_partitions=100_000,
                                                      replication_factor=1), **options)
        assert err.code() == KafkaError.INVALID_PARTITIONS, err
        message = err.str()
        assert "max_partitions_per_shard" in message, message
        assert "Refusing to add 100000 partition(s)" in message, message
        assert "would own" in message and "2 shard(s)" in message, message
    assert not topic_exists(broker.bootstrap, topic_name)

    # The broker goes on creating, producing to and consuming from new topics.
    moderate = topic_name + "-moderate"
    kclients.create_topic(broker.bootstrap, moderate, 8)
    produce_and_consume(broker.bootstrap, moderate, 8)

    # CreatePartitions beyond the limit is refused too; a moderate growth works.
    err = create_partitions_error(broker.bootstrap, moderate, 100_000)
    assert err.code() == KafkaError.INVALID_PARTITIONS, err
    assert "max_partitions_per_shard" in err.str(), err.str()
    client = kclients.admin(broker.bootstrap)
    fut = client.create_partitions([NewPartitions(moderate, 12)], operation_timeout=30,
                                   request_timeout=DEADLINE_S)
    fut[moderate].result(timeout=DEADLINE_S)
    kclients.wait_partitions(broker.bootstrap, moderate, 12)
    other = topic_name + "-after"
    kclients.create_topic(broker.bootstrap, other, 4)
    produce_and_consume(broker.bootstrap, other, 4)
    # The refusals were logged, but not once per partition.
    assert len([line for line in broker.log_text().splitlines() if "Refusing to add" in line]) <= 3
    assert broker.alive()


def test_configured_limit_counts_internal_topics_and_stops_auto_creation(broker_factory, topic_name):
    limit = 100
    broker = broker_factory(cores="0", settings={"max_partitions_per_shard": limit})
    kclients.wait_partitions(broker.bootstrap, "__consumer_offsets", OFFSETS_PARTITIONS)
    fill = topic_name + "-fill"
    kclients.create_topic(broker.bootstrap, fill, limit - OFFSETS_PARTITIONS)

    err = create_error(broker.bootstrap, NewTopic(topic_name, num_partitions=1, replication_factor=1))
    assert err.code() == KafkaError.INVALID_PARTITIONS, err
    assert f"shard 0 would own {limit + 1}" in err.str(), err.str()
    assert f"({limit} now + 1 new)" in err.str(), err.str()
    assert f"limit of {limit}" in err.str(), err.str()

    # A producer to an unknown topic (auto-creation by Metadata) does not get it created.
    auto = topic_name + "-auto"
    deliveries = kclients.Deliveries()
    prod = kclients.producer(broker.bootstrap, **{"message.timeout.ms": 5000})
    prod.produce(auto, value=b"x", on_delivery=deliveries)
    prod.flush(DEADLINE_S)
    assert len(deliveries.failed) == 1 and not deliveries.ok, (deliveries.ok, deliveries.failed)
    print("auto-created topic refused; delivery failed with", deliveries.failed[0][0])
    assert not topic_exists(broker.bootstrap, auto)

    # Room again after a delete: the same producer's topic is auto-created and takes records.
    client = kclients.admin(broker.bootstrap)  # referenced until the future resolves
    fut = client.delete_topics([fill], operation_timeout=30)
    fut[fill].result(timeout=DEADLINE_S)
    deliveries = kclients.Deliveries()
    prod = kclients.producer(broker.bootstrap)
    prod.produce(auto, value=b"y", on_delivery=deliveries)
    kclients.flush_all(prod, DEADLINE_S)
    assert not deliveries.failed, deliveries.failed
    assert topic_exists(broker.bootstrap, auto)
    kclients.create_topic(broker.bootstrap, topic_name, 10)
    produce_and_consume(broker.bootstrap, topic_name, 10)


def test_descriptor_budget_lowers_the_limit(broker_factory, topic_name, tmp_path, monkeypatch):
    # The broker starts with a soft RLIMIT_NOFILE of 1024 and a hard one of 2000: it raises the
    # soft one and budgets 2000 descriptors (1 shard: 320 reserved, 840 for connections,
    # 840 / 2 = 420 partition replicas: one descriptor per segment, two segments budgeted).
    wrapper = tmp_path / "ringtail-nofile"
    wrapper.write_text(f'#!/bin/sh\nexec prlimit --nofile=1024:2000 -- "{ringtail_bin()}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("RINGTAIL_BIN", str(wrapper))
    broker = broker_factory(cores="0")
    log = broker.log_text()
    assert "raised the soft RLIMIT_NOFILE from 1024 to the hard limit 2000" in log, broker.tail()
    assert "RLIMIT_NOFILE 2000" in log, broker.tail()

    kclients.wait_partitions(broker.bootstrap, "__consumer_offsets", OFFSETS_PARTITIONS)
    err = create_error(broker.bootstrap, NewTopic(topic_name, num_partitions=400, replication_factor=1))
    assert err.code() == KafkaError.INVALID_PARTITIONS, err
    assert "RLIMIT_NOFILE 2000" in err.str(), err.str()
    assert "would own 450" in err.str(), err.str()
    kclients.create_topic(broker.bootstrap, topic_name, 100)
    produce_and_consume(broker.bootstrap, topic_name, 100, count=2000)


def test_partition_that_cannot_open_is_reported_once(broker_factory, topic_name):
    broker = broker_factory(cores="0")
    # A file where a partition directory belongs: those partitions cannot open.
    broken = range(0, 10)
    for p in broken:
        (broker.data_dir / f"{topic_name}-{p}").write_bytes(b"not a directory")
    # The controller answers only once every shard acknowledged the new metadata: the topic is
    # created, but CreateTopics says its partitions could not open.
    err = create_error(broker.bootstrap, NewTopic(topic_name, num_partitions=20, replication_factor=1))
    assert err.code() == KafkaError.KAFKA_STORAGE_ERROR, err
    assert "could not be opened" in err.str(), err.str()

    deadline = time.monotonic() + DEADLINE_S
    reports: list[str] = []
    while time.monotonic() < deadline and not reports:
        reports = [line for line in broker.log_text().splitlines() if "cannot open" in line]
        time.sleep(0.2)
    assert len(reports) == 1, reports
    assert "cannot open 10 partition(s)" in reports[0], reports[0]

    # The others opened: they take records and give them back.
    deliveries = kclients.Deliveries()
    prod = kclients.producer(broker.bootstrap)
    for i in range(200):
        prod.produce(topic_name, partition=10 + i % 10, value=b"v%d" % i, on_delivery=deliveries)
    kclients.flush_all(prod, DEADLINE_S)
    assert not deliveries.failed, deliveries.failed[:3]
    assert len(deliveries.ok) == 200
    # One more metadata change: the offline partitions are retried, reported once more at most.
    kclients.create_topic(broker.bootstrap, topic_name + "-next", 2)
    produce_and_consume(broker.bootstrap, topic_name + "-next", 2)
    reports = [line for line in broker.log_text().splitlines() if "cannot open" in line]
    assert len(reports) <= 2, reports
    assert broker.alive()


def closed_by_peer(sock: socket.socket, timeout_s: float) -> bool:
    """True when the broker closed the connection (EOF or reset) within the time."""
    sock.settimeout(timeout_s)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_connections_beyond_the_limit_are_closed(broker_factory, topic_name):
    limit = 8
    broker = broker_factory(cores="0", env={"RINGTAIL_MAX_CONNECTIONS_PER_SHARD": str(limit)})
    host, port = broker.bootstrap.split(":")

    def wait_active(predicate) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while not predicate(kclients.scrape_metrics(broker).get(("ringtail_connections_active", ""), 0)):
            assert time.monotonic() < deadline, [
                (k, v) for k, v in kclients.scrape_metrics(broker).items() if "connections" in k[0]
            ]
            time.sleep(0.2)

    wait_active(lambda n: n == 0)  # the harness's readiness probe is gone
    held = [socket.create_connection((host, int(port)), timeout=10) for _ in range(limit)]
    try:
        wait_active(lambda n: n == limit)
        extra = [socket.create_connection((host, int(port)), timeout=10) for _ in range(20)]
        try:
            assert all(closed_by_peer(s, 30) for s in extra)
        finally:
            for s in extra:
                s.close()
        # The held ones are still served (none was closed to make room).
        assert not any(closed_by_peer(s, 0.2) for s in held)
    finally:
        for s in held:
            s.close()
    rejections = [line for line in broker.log_text().splitlines() if "connection limit reached" in line]
    assert 1 <= len(rejections) <= 5, rejections  # at the 1st, 2nd, 4th, 8th, 16th

    # Once they are gone, real clients are served again.
    wait_active(lambda n: n == 0)
    kclients.create_topic(broker.bootstrap, topic_name, 2)
    produce_and_consume(broker.bootstrap, topic_name, 2)


def test_lowered_limit_leaves_extra_partitions_offline_after_restart(broker_factory, topic_name):
    broker = broker_factory(cores="0", settings={"max_partitions_per_shard": 100})
    kclients.wait_partitions(broker.bootstrap, "__consumer_offsets", OFFSETS_PARTITIONS)
    kclients.create_topic(broker.bootstrap, topic_name, 40)
    # Restarted with a lower limit: the shard opens the internal topic first and then only
    # what fits, and says so once; it does not run into the descriptors connections need.
    broker.settings = {"max_partitions_per_shard": 60}
    broker.restart("term")
    lines = [line for line in broker.log_text().splitlines() if "not opening" in line]
    assert len(lines) == 1, lines
    assert "not opening 30 partition(s)" in lines[0], lines[0]
    # Group coordination (the internal topic) works, and so do the partitions that opened.
    group = kclients.consumer(broker.bootstrap)
    try:
        group.subscribe([topic_name])
        deadline = time.monotonic() + DEADLINE_S
        while not group.assignment():
            assert time.monotonic() < deadline, "no assignment from the group coordinator"
            group.poll(0.5)
    finally:
        group.close()
    err = create_error(broker.bootstrap, NewTopic(topic_name + "-more", num_partitions=1,
                                                  replication_factor=1))
    assert err.code() == KafkaError.INVALID_PARTITIONS, err
    assert broker.alive()
