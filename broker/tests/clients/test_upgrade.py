"""A data dir written by the single-node release (before the controller quorum) upgrades in
place: topics, records, topic and broker configs, committed offsets and the producer-id
reservation all survive, and the metadata is migrated into the metadata log once.

The fixture `fixtures/single-node-6ae8fa4.tar.gz` was written by commit 6ae8fa4's binary with
`fixtures/make_single_node_fixture.py` (how to regenerate it is in that script).
"""

from __future__ import annotations

import tarfile
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

import kwire
from harness import Broker

pytestmark = pytest.mark.timeout(300)

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "single-node-6ae8fa4.tar.gz"


def read_all(bootstrap: str, topic: str, partitions: int, expected: int):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "upgrade-reader",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = []
    deadline = time.monotonic() + 60
    while len(got) < expected and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is not None and m.error() is None:
            got.append((m.partition(), m.offset(), m.key(), m.value()))
    c.close()
    return sorted(got)


def check(broker: Broker) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    md = admin.list_topics(timeout=20)
    assert "legacy" in md.topics and len(md.topics["legacy"].partitions) == 3
    records = read_all(broker.bootstrap, "legacy", 3, 30)
    assert len(records) == 30
    assert {(k, v) for _, _, k, v in records} == {(f"k{i}".encode(), f"v{i}".encode()) for i in range(30)}
    for p in range(3):
        offsets = [o for part, o, _, _ in records if part == p]
        assert offsets == list(range(10)), f"partition {p}: {offsets}"

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "legacy-group", "enable.auto.commit": False})
    committed = c.committed([TopicPartition("legacy", p) for p in range(3)], timeout=30)
    c.close()
    assert {tp.partition: tp.offset for tp in committed} == {0: 4, 1: 5, 2: 6}

    topic_res = ConfigResource("topic", "legacy")
    configs = admin.describe_configs([topic_res])[topic_res].result(timeout=30)
    assert configs["retention.ms"].value == "604800001"
    broker_res = ConfigResource("broker", "0")
    configs = admin.describe_configs([broker_res])[broker_res].result(timeout=30)
    assert configs["message.max.bytes"].value == "2000000"


def test_single_node_data_dir_from_the_previous_release_upgrades_in_place(tmp_path):
    broker = Broker(tmp_path / "upgraded", cores="0")
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(broker.data_dir)
    old_ids = set()
    try:
        broker.start()
        check(broker)
        assert (broker.data_dir / "meta" / "topics.json.migrated").exists()
        assert not (broker.data_dir / "meta" / "topics.json").exists()
        # Producer ids keep growing past the ones the old release handed out.
        with kwire.Conn(broker.bootstrap) as conn:
            for p in range(3):
                for batch in kwire.fetch_all_batches(conn, "legacy", p):
                    old_ids.add(batch.producer_id)
        assert old_ids and min(old_ids) >= 0
        prod = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
        prod.produce("fresh", key=b"new", value=b"new")
        assert prod.flush(30) == 0
        with kwire.Conn(broker.bootstrap) as conn:
            batches = kwire.fetch_all_batches(conn, "fresh", 0)
        new_id = batches[-1].producer_id
        assert new_id > max(old_ids), (new_id, old_ids)
        # Migrated once: a restart reads the metadata log, not the old file.
        broker.restart("term")
        check(broker)
        broker.restart("kill")
        check(broker)
    finally:
        broker.terminate_quietly()
