"""The metadata controller end to end: a topic is usable on every shard the moment CreateTopics
answers, and producer-id reservations are persisted with the metadata (ids keep growing across
restarts, and across the upgrade from the separate `meta/producer_ids` file)."""

from __future__ import annotations

import json
import uuid
import struct
import time

import kclients
import kwire
from harness import Broker

API_CREATE_TOPICS = 19
API_INIT_PRODUCER_ID = 22
ERR_TOPIC_ALREADY_EXISTS = 36
ERR_KAFKA_STORAGE_ERROR = 56
DEADLINE_S = 120


def create_topic_v2(conn: kwire.Conn, name: str, partitions: int, validate_only: bool = False) -> int:
    """Raw CreateTopics v2 (the oldest Kafka 4 accepts) for one topic; returns its error code."""
    body = (
        kwire.array([
            kwire.string(name) + kwire.i32(partitions) + kwire.i16(1) + kwire.array([]) + kwire.array([])
        ])
        + kwire.i32(30_000)
        + kwire.i8(1 if validate_only else 0)
    )
    r = conn.request(API_CREATE_TOPICS, 2, body)
    _throttle = r.i32()
    topics = r.array(lambda r: (r.string(), r.i16(), r.string()))
    assert topics and topics[0][0] == name, f"unexpected CreateTopics answer {topics}"
    return topics[0][1]


def init_producer_id(conn: kwire.Conn) -> int:
    """Raw InitProducerId v0 for an idempotent (non-transactional) producer."""
    r = conn.request(API_INIT_PRODUCER_ID, 0, kwire.string(None) + kwire.i32(60_000))
    _throttle, error, producer_id, epoch = r.i32(), r.i16(), r.i64(), r.i16()
    assert error == kwire.ERR_NONE, f"InitProducerId error {error}"
    assert producer_id >= 0 and epoch == 0, (producer_id, epoch)
    return producer_id


def producer_ids(bootstrap: str, n: int) -> list[int]:
    with kwire.Conn(bootstrap) as conn:
        ids = [init_producer_id(conn) for _ in range(n)]
    assert ids == sorted(set(ids)), f"ids within a run are distinct and increasing: {ids}"
    return ids


def test_created_topic_is_usable_on_every_shard_at_once(broker_factory, topic_name):
    """Two shards; the partitions of each new topic spread over both. Right after CreateTopics
    answers, a produce to every partition succeeds, from two connections (which may be served
    by different shards), without waiting for metadata to settle."""
    broker = broker_factory(cores="0,1")
    partitions = 12
    batch = kwire.record_batch([(b"k", b"v")])
    with kwire.Conn(broker.bootstrap) as first, kwire.Conn(broker.bootstrap) as second:
        assert create_topic_v2(first, f"{topic_name}-dry", 3, validate_only=True) == kwire.ERR_NONE
        for round_ in range(4):
            name = f"{topic_name}-{round_}"
            assert create_topic_v2(first, name, partitions) == kwire.ERR_NONE
            for conn in (first, second):
                for p in range(partitions):
                    error, _ = conn.produce_v3(name, p, batch)
                    assert error == kwire.ERR_NONE, f"{name}/{p}: produce error {error} right after create"
            assert create_topic_v2(second, name, partitions) == ERR_TOPIC_ALREADY_EXISTS
        # The validate-only request created nothing.
        error, _ = first.produce_v3(f"{topic_name}-dry", 0, batch)
        assert error == kwire.ERR_UNKNOWN_TOPIC_OR_PARTITION


def test_create_topics_reports_partitions_that_could_not_open(broker_factory, topic_name):
    """A partition whose directory cannot be made (a plain file is in the way) stays offline,
    and CreateTopics says so for that topic instead of answering success."""
    broker = broker_factory(cores="0,1")
    (broker.data_dir / f"{topic_name}-1").write_bytes(b"in the way")
    batch = kwire.record_batch([(b"k", b"v")])
    with kwire.Conn(broker.bootstrap) as conn:
        assert create_topic_v2(conn, topic_name, 3) == ERR_KAFKA_STORAGE_ERROR
        for p, expected in ((0, kwire.ERR_NONE), (1, kwire.ERR_UNKNOWN_TOPIC_OR_PARTITION), (2, kwire.ERR_NONE)):
            error, _ = conn.produce_v3(topic_name, p, batch)
            assert error == expected, f"partition {p}: error {error}, expected {expected}"
        # Other topics are unaffected.
        assert create_topic_v2(conn, f"{topic_name}-ok", 3) == kwire.ERR_NONE


def test_producer_ids_keep_growing_across_restarts(broker_factory, topic_name):
    broker = broker_factory()
    seen = producer_ids(broker.bootstrap, 5)
    for how in ("term", "kill"):
        broker.restart(how)
        ids = producer_ids(broker.bootstrap, 3)
        assert min(ids) > max(seen), f"after a {how} restart: {ids} not above {max(seen)}"
        seen += ids
    # A real idempotent producer gets an id above every earlier one too.
    kclients.create_topic(broker.bootstrap, topic_name, 1)
    prod = kclients.producer(broker.bootstrap, **{"enable.idempotence": True})
    prod.produce(topic_name, value=b"x")
    kclients.flush_all(prod)
    with kwire.Conn(broker.bootstrap) as conn:
        batches = kwire.fetch_all_batches(conn, topic_name, 0, deadline_s=DEADLINE_S)
    assert batches and batches[0].producer_id > max(seen), (batches[0].producer_id, max(seen))


# -- the upgrade from the legacy producer-id file ------------------------------------------

def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def legacy_producer_id_file(reserved_end: int) -> bytes:
    """The `meta/producer_ids` file earlier brokers wrote: magic, version, end, crc32c."""
    body = b"RTPI" + struct.pack(">hq", 1, reserved_end)
    return body + struct.pack(">I", _crc32c(body))


def test_old_data_dir_with_legacy_producer_id_file_keeps_increasing_ids(tmp_path, topic_name):
    assert _crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    # A data dir as an old single-node release left it: the topics in meta/topics.json without
    # a reservation, the reservation in its own file, far above anything handed out since.
    broker = Broker(tmp_path / "old", cores="0,1")
    meta = broker.data_dir / "meta"
    meta.mkdir(parents=True)
    (meta / "topics.json").write_text(json.dumps({
        "version": 3,
        "cluster_id": "old-cluster-id",
        "topics": [{"name": topic_name, "id": str(uuid.uuid4()), "partitions": 2, "configs": {}}],
    }))
    legacy_end = 123_000
    (meta / "producer_ids").write_bytes(legacy_producer_id_file(legacy_end))
    try:
        broker.start()
        ids = producer_ids(broker.bootstrap, 3)
        assert min(ids) >= legacy_end, f"ids {ids} went below the legacy reservation {legacy_end}"
        assert not (meta / "producer_ids").exists(), "the legacy files are read once"
        assert (meta / "topics.json.migrated").exists()
        # The topic survived the upgrade.
        with kwire.Conn(broker.bootstrap) as conn:
            error, _ = conn.produce_v3(topic_name, 1, kwire.record_batch([(None, b"v")]))
            assert error == kwire.ERR_NONE

        broker.restart("kill")
        again = producer_ids(broker.bootstrap, 2)
        assert min(again) > max(ids), (again, ids)
    finally:
        broker.terminate_quietly()
