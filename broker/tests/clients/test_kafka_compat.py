"""Where Ringtail used to answer differently from Apache Kafka 4.x (issue 22), checked with
confluent-kafka (librdkafka) and, where the client hides the detail, on the wire (kwire):
per-record produce errors (KIP-467), ListOffsets MAX_TIMESTAMP at the record, authorized
operations, DeleteRecords, and dynamic broker configs."""

from __future__ import annotations

import functools
import signal
import time
import uuid

import pytest
from confluent_kafka import OFFSET_END, KafkaError, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import (
    AclOperation,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    OffsetSpec,
)

import kclients
import kwire

DEADLINE_S = 60
API_LIST_OFFSETS = 2
API_DELETE_RECORDS = 21

TOPIC_OPERATIONS = {
    AclOperation.READ,
    AclOperation.WRITE,
    AclOperation.CREATE,
    AclOperation.DELETE,
    AclOperation.ALTER,
    AclOperation.DESCRIBE,
    AclOperation.DESCRIBE_CONFIGS,
    AclOperation.ALTER_CONFIGS,
}
CLUSTER_OPERATIONS = {
    AclOperation.CREATE,
    AclOperation.ALTER,
    AclOperation.DESCRIBE,
    AclOperation.CLUSTER_ACTION,
    AclOperation.DESCRIBE_CONFIGS,
    AclOperation.ALTER_CONFIGS,
    AclOperation.IDEMPOTENT_WRITE,
}
GROUP_OPERATIONS = {AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DELETE}


class TimeLimitExceeded(AssertionError):
    pass


def time_limit(seconds: int):
    """Fail the test if it runs longer than `seconds` (SIGALRM; pytest runs tests on the main
    thread)."""

    def wrap(test):
        @functools.wraps(test)
        def run(*args, **kwargs):
            def expired(_signum, _frame):
                raise TimeLimitExceeded(f"{test.__name__} ran longer than {seconds} s")

            previous = signal.signal(signal.SIGALRM, expired)
            signal.alarm(seconds)
            try:
                return test(*args, **kwargs)
            finally:
                signal.alarm(0)
                signal.signal(signal.SIGALRM, previous)

        return run

    return wrap


def batch_with_timestamps(records: list[tuple[bytes | None, bytes, int]]) -> bytes:
    """One uncompressed v2 batch whose records carry their own timestamps."""
    from kafka.record.default_records import DefaultRecordBatchBuilder

    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=False, producer_id=-1, producer_epoch=-1,
        base_sequence=-1, batch_size=1 << 30,
    )
    for offset, (key, value, ts) in enumerate(records):
        builder.append(offset, timestamp=ts, key=key, value=value, headers=[])
    return bytes(builder.build())


def produce_v8(conn: kwire.Conn, topic: str, records: bytes):
    """Produce v8 (the first version with KIP-467's record_errors, still non-flexible).
    Returns (error_code, base_offset, record_errors [(batch_index, message)], error_message)."""
    body = (
        kwire.string(None)
        + kwire.i16(-1)
        + kwire.i32(30000)
        + kwire.array([kwire.string(topic) + kwire.array([kwire.i32(0) + kwire.nbytes(records)])])
    )
    r = conn.request(kwire.API_PRODUCE, 8, body)

    def partition(r):
        index, error, base_offset, _append_time, _log_start = r.i32(), r.i16(), r.i64(), r.i64(), r.i64()
        record_errors = r.array(lambda r: (r.i32(), r.string())) or []
        message = r.string()
        return index, error, base_offset, record_errors, message

    responses = r.array(lambda r: (r.string(), r.array(partition)))
    assert responses and responses[0][0] == topic, responses
    index, error, base_offset, record_errors, message = responses[0][1][0]
    assert index == 0
    return error, base_offset, record_errors, message


def list_offsets_v7(conn: kwire.Conn, topic: str, timestamp: int) -> tuple[int, int, int]:
    """ListOffsets v7 (MAX_TIMESTAMP's first version; flexible) for partition 0:
    (error_code, timestamp, offset)."""
    def compact_array(items: list[bytes]) -> bytes:
        return kwire.uvarint(len(items) + 1) + b"".join(items)

    tags = kwire.uvarint(0)
    partition = kwire.i32(0) + kwire.i32(-1) + kwire.i64(timestamp) + tags
    body = (
        kwire.i32(-1)  # replica id
        + kwire.i8(0)  # isolation level
        + compact_array([kwire.compact_string(topic) + compact_array([partition]) + tags])
        + tags
    )
    r = conn.request(API_LIST_OFFSETS, 7, body, flexible_request=True, flexible_response=True)
    r.i32()  # throttle

    def compact_string(r):
        n = r.uvarint() - 1
        return None if n < 0 else r.take(n).decode()

    def part(r):
        out = (r.i32(), r.i16(), r.i64(), r.i64(), r.i32())
        r.skip_tagged_fields()
        return out

    def topic_entry(r):
        out = (compact_string(r), r.compact_array(part))
        r.skip_tagged_fields()
        return out

    topics = r.compact_array(topic_entry)
    _index, error, ts, offset, _epoch = topics[0][1][0]
    return error, ts, offset


def delete_records_v1(conn: kwire.Conn, parts: list[tuple[str, int, int]]):
    """DeleteRecords v1 (non-flexible), one topic entry per part, answers in request order:
    [(topic, partition, low_watermark, error_code)]."""
    body = kwire.array([
        kwire.string(topic) + kwire.array([kwire.i32(partition) + kwire.i64(offset)])
        for topic, partition, offset in parts
    ]) + kwire.i32(30000)
    r = conn.request(API_DELETE_RECORDS, 1, body)
    r.i32()  # throttle
    topics = r.array(lambda r: (r.string(), r.array(lambda r: (r.i32(), r.i64(), r.i16()))))
    return [(name, p, low, err) for name, ps in topics for p, low, err in ps]


def config_entries(client, resource: ConfigResource) -> dict[str, ConfigEntry]:
    return client.describe_configs([resource], request_timeout=DEADLINE_S)[resource].result(timeout=DEADLINE_S)


# -- 1. per-record produce errors (KIP-467) ---------------------------------------------------

@time_limit(180)
def test_batch_with_keyless_records_on_compacted_topic_fails_per_record(broker, topic_name):
    kclients.create_topic(broker.bootstrap, topic_name, 1, {"cleanup.policy": "compact"})
    bad = {i for i in range(100) if i % 10 == 0}

    # confluent-kafka: one batch of 100 (long linger), every 10th record without a key.
    deliveries: list[tuple[int, KafkaError | None]] = []
    prod = kclients.producer(broker.bootstrap, **{"linger.ms": 2000, "retries": 0})
    for i in range(100):
        key = None if i in bad else f"k{i}".encode()
        prod.produce(topic_name, key=key, value=f"v{i}".encode(), partition=0,
                     on_delivery=lambda err, msg, i=i: deliveries.append((i, err)))
    kclients.flush_all(prod, timeout_s=DEADLINE_S)
    assert len(deliveries) == 100
    failed_invalid = {i for i, err in deliveries if err is not None and err.code() == KafkaError.INVALID_RECORD}
    failed_other = {i for i, err in deliveries
                    if err is not None and err.code() == KafkaError._INVALID_DIFFERENT_RECORD}
    assert failed_invalid == bad, deliveries[:12]
    assert failed_other == set(range(100)) - bad, deliveries[:12]
    assert kclients.high_watermarks(broker.bootstrap, topic_name, 1) == {0: 0}

    # On the wire: the partition error, its message and the offending records by batch index.
    batch = kwire.record_batch([(None if i in bad else f"k{i}".encode(), b"v") for i in range(100)])
    with kwire.Conn(broker.bootstrap) as conn:
        error, base_offset, record_errors, message = produce_v8(conn, topic_name, batch)
    assert error == KafkaError.INVALID_RECORD
    assert base_offset == -1
    assert [index for index, _ in record_errors] == sorted(bad)
    assert all(m == f"Compacted topic cannot accept message without key in topic partition {topic_name}-0"
               for _, m in record_errors), record_errors[:2]
    assert message == (
        "One or more records have been rejected due to 10 record errors in total, and only showing the "
        "first three errors at most: ["
        + ", ".join(f"RecordError(batchIndex={i}, message='{record_errors[0][1]}')" for i in (0, 10, 20))
        + "]"
    ), message


@time_limit(120)
def test_record_with_timestamp_out_of_range_is_listed(broker_factory, topic_name):
    broker = broker_factory()
    kclients.create_topic(broker.bootstrap, topic_name, 1, {"message.timestamp.after.max.ms": "60000"})
    now = int(time.time() * 1000)
    batch = batch_with_timestamps([(b"a", b"1", now), (b"b", b"2", now + 3_600_000), (b"c", b"3", now)])
    with kwire.Conn(broker.bootstrap) as conn:
        error, _, record_errors, message = produce_v8(conn, topic_name, batch)
    assert error == KafkaError.INVALID_TIMESTAMP
    assert [index for index, _ in record_errors] == [1], record_errors
    assert "out of range" in record_errors[0][1]
    assert message == "One or more records have been rejected due to invalid timestamp"


# -- 2. ListOffsets MAX_TIMESTAMP finds the record ------------------------------------------

@time_limit(120)
def test_max_timestamp_is_the_record_not_the_batch_end(broker, topic_name):
    kclients.create_topic(broker.bootstrap, topic_name, 1)
    base = int(time.time() * 1000) - 10_000
    stamps = [base + 100, base + 400, base + 250]
    # One batch, produced by librdkafka (a long linger batches the three).
    prod = kclients.producer(broker.bootstrap, **{"linger.ms": 1000})
    for i, ts in enumerate(stamps):
        prod.produce(topic_name, key=b"k", value=f"v{i}".encode(), partition=0, timestamp=ts)
    kclients.flush_all(prod, timeout_s=DEADLINE_S)
    with kwire.Conn(broker.bootstrap) as conn:
        batches = kwire.fetch_all_batches(conn, topic_name, 0)
    assert [(b.base_offset, b.record_count) for b in batches] == [(0, 3)], "the three records form one batch"

    client = kclients.admin(broker.bootstrap)
    tp = TopicPartition(topic_name, 0)
    info = client.list_offsets({tp: OffsetSpec.max_timestamp()}, request_timeout=DEADLINE_S)[tp].result(timeout=DEADLINE_S)
    assert (info.offset, info.timestamp) == (1, base + 400)
    with kwire.Conn(broker.bootstrap) as conn:
        assert list_offsets_v7(conn, topic_name, -3) == (0, base + 400, 1)

    # The same for a compressed batch built by hand, behind another batch.
    records = batch_with_timestamps([(b"x", b"1", base + 50), (b"y", b"2", base + 900), (b"z", b"3", base + 900)])
    with kwire.Conn(broker.bootstrap) as conn:
        error, base_offset = conn.produce_v3(topic_name, 0, records)
        assert (error, base_offset) == (0, 3)
        assert list_offsets_v7(conn, topic_name, -3) == (0, base + 900, 4)


# -- 3. authorized operations --------------------------------------------------------------

@time_limit(120)
def test_authorized_operations_are_every_supported_operation(broker, topic_name):
    kclients.create_topic(broker.bootstrap, topic_name, 1)
    client = kclients.admin(broker.bootstrap)
    topic = client.describe_topics(
        TopicCollection([topic_name]), include_authorized_operations=True, request_timeout=DEADLINE_S
    )[topic_name].result(timeout=DEADLINE_S)
    assert set(topic.authorized_operations) == TOPIC_OPERATIONS
    cluster = client.describe_cluster(include_authorized_operations=True, request_timeout=DEADLINE_S).result(
        timeout=DEADLINE_S
    )
    assert set(cluster.authorized_operations) == CLUSTER_OPERATIONS
    # Not asked for: none listed.
    plain = client.describe_topics(TopicCollection([topic_name]), request_timeout=DEADLINE_S)[topic_name].result(
        timeout=DEADLINE_S
    )
    assert not plain.authorized_operations

    # A group that exists (it committed an offset).
    group = f"g-{uuid.uuid4().hex[:10]}"
    prod = kclients.producer(broker.bootstrap)
    prod.produce(topic_name, value=b"x", partition=0)
    kclients.flush_all(prod, timeout_s=DEADLINE_S)
    consumer = kclients.consumer(broker.bootstrap, **{"group.id": group})
    try:
        consumer.commit(offsets=[TopicPartition(topic_name, 0, 1)], asynchronous=False)
    finally:
        consumer.close()
    described = client.describe_consumer_groups(
        [group], include_authorized_operations=True, request_timeout=DEADLINE_S
    )[group].result(timeout=DEADLINE_S)
    assert set(described.authorized_operations) == GROUP_OPERATIONS


# -- 4. DeleteRecords --------------------------------------------------------------------------

def first_offset_from_earliest(bootstrap: str, topic: str) -> int:
    c = kclients.consumer(bootstrap, **{"auto.offset.reset": "earliest"})
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error() is not None:
                raise KafkaException(m.error())
            return m.offset()
    finally:
        c.close()
    raise AssertionError(f"nothing consumed from {topic} within {DEADLINE_S} s")


@time_limit(240)
def test_delete_records_moves_the_low_watermark_and_survives_a_restart(broker_factory, topic_name):
    broker = broker_factory()
    kclients.create_topic(broker.bootstrap, topic_name, 2)
    prod = kclients.producer(broker.bootstrap)
    for i in range(100):
        prod.produce(topic_name, value=f"v{i}".encode(), partition=0)
        prod.produce(topic_name, value=f"w{i}".encode(), partition=1)
    kclients.flush_all(prod, timeout_s=DEADLINE_S)

    client = kclients.admin(broker.bootstrap)
    asked = [TopicPartition(topic_name, 0, 40), TopicPartition(topic_name, 1, OFFSET_END)]
    futures = client.delete_records(asked, request_timeout=DEADLINE_S)
    low = {tp.partition: f.result(timeout=DEADLINE_S).low_watermark for tp, f in futures.items()}
    assert low == {0: 40, 1: 100}

    # Beyond the high watermark.
    tp = TopicPartition(topic_name, 0, 101)
    with pytest.raises(KafkaException) as failed:
        client.delete_records([tp], request_timeout=DEADLINE_S)[tp].result(timeout=DEADLINE_S)
    assert failed.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE
    # librdkafka refuses unknown partitions itself; the broker's answers, on the wire:
    with kwire.Conn(broker.bootstrap) as conn:
        answers = delete_records_v1(conn, [(topic_name, 7, 1), (topic_name, 1, -1), ("no-such-topic", 0, 1),
                                           (topic_name, 0, -5)])
    assert answers == [
        (topic_name, 7, -1, KafkaError.UNKNOWN_TOPIC_OR_PART),
        (topic_name, 1, 100, 0),
        ("no-such-topic", 0, -1, KafkaError.UNKNOWN_TOPIC_OR_PART),
        (topic_name, 0, -1, KafkaError.OFFSET_OUT_OF_RANGE),
    ]

    def check():
        c = kclients.consumer(broker.bootstrap)
        try:
            assert c.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=DEADLINE_S) == (40, 100)
        finally:
            c.close()
        assert first_offset_from_earliest(broker.bootstrap, topic_name) == 40
        got = kclients.consume_all(broker.bootstrap, topic_name, 1, until={0: 100})
        assert [m.offset for m in got[0]] == list(range(40, 100))
        assert got[0][0].value == b"v40"

    check()
    broker.restart("term")
    check()
    broker.restart("kill")
    check()


# -- 5. dynamic broker configs ---------------------------------------------------------------

def low_watermark(bootstrap: str, topic: str) -> int:
    c = kclients.consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=DEADLINE_S)[0]
    finally:
        c.close()


def produce_old_records(bootstrap: str, topic: str, count: int, age_ms: int) -> None:
    prod = kclients.producer(bootstrap, **{"linger.ms": 0})
    ts = int(time.time() * 1000) - age_ms
    for i in range(count):
        prod.produce(topic, value=(f"{i}-" + "x" * 300).encode(), partition=0, timestamp=ts)
        prod.poll(0)
        if i % 10 == 9:
            prod.flush(DEADLINE_S)  # separate batches, so segments roll
    kclients.flush_all(prod, timeout_s=DEADLINE_S)


API_DESCRIBE_CONFIGS = 32
API_INCREMENTAL_ALTER_CONFIGS = 44
RESOURCE_BROKER = 4
SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG = 3


def set_cluster_default(bootstrap: str, name: str, value: str | None) -> None:
    """IncrementalAlterConfigs v0 on the BROKER resource "" (the cluster-wide default), which
    neither librdkafka nor kafka-python can name. `None` deletes."""
    op = 0 if value is not None else 1
    body = kwire.array([
        kwire.i8(RESOURCE_BROKER) + kwire.string("")
        + kwire.array([kwire.string(name) + kwire.i8(op) + kwire.string(value)])
    ]) + kwire.i8(0)
    with kwire.Conn(bootstrap) as conn:
        r = conn.request(API_INCREMENTAL_ALTER_CONFIGS, 0, body)
        r.i32()  # throttle
        answers = r.array(lambda r: (r.i16(), r.string(), r.i8(), r.string()))
    assert [(err, ty, name) for err, _message, ty, name in answers] == [(0, RESOURCE_BROKER, "")], answers


def describe_cluster_default(bootstrap: str) -> dict[str, tuple[str | None, int, bool, list]]:
    """DescribeConfigs v1 of the BROKER resource "": {name: (value, source, read_only, synonyms)}."""
    body = kwire.array([kwire.i8(RESOURCE_BROKER) + kwire.string("") + kwire.i32(-1)]) + kwire.i8(1)
    with kwire.Conn(bootstrap) as conn:
        r = conn.request(API_DESCRIBE_CONFIGS, 1, body)
        r.i32()  # throttle

        def entry(r):
            name, value, read_only, source, _sensitive = r.string(), r.string(), r.i8(), r.i8(), r.i8()
            synonyms = r.array(lambda r: (r.string(), r.string(), r.i8())) or []
            return name, (value, source, bool(read_only), synonyms)

        results = r.array(lambda r: (r.i16(), r.string(), r.i8(), r.string(), r.array(entry)))
    error, message, _ty, _name, entries = results[0]
    assert error == 0, message
    return dict(entries or [])


@time_limit(300)
def test_dynamic_log_retention_default_applies_to_existing_topics_and_persists(broker_factory, topic_name):
    broker = broker_factory(config={"log.retention.check.interval.ms": 500})
    client = kclients.admin(broker.bootstrap)
    follows, keeps = f"{topic_name}-follows", f"{topic_name}-keeps"
    small_segments = {"internal.segment.bytes": "4096"}
    kclients.create_topic(broker.bootstrap, follows, 1, small_segments)
    kclients.create_topic(broker.bootstrap, keeps, 1, {**small_segments, "retention.ms": "-1"})
    for topic in (follows, keeps):
        produce_old_records(broker.bootstrap, topic, 60, age_ms=3_600_000)
    time.sleep(1.5)  # several retention passes with the default (7 days): nothing deleted
    assert low_watermark(broker.bootstrap, follows) == 0

    this = ConfigResource(ConfigResource.Type.BROKER, "0")
    # Read-only broker configs are refused as Kafka refuses them.
    bad = ConfigResource(ConfigResource.Type.BROKER, "0",
                         incremental_configs=[ConfigEntry("num.partitions", "3",
                                                          incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as refused:
        client.incremental_alter_configs([bad], request_timeout=DEADLINE_S)[bad].result(timeout=DEADLINE_S)
    assert refused.value.args[0].code() == KafkaError.INVALID_REQUEST
    assert "Cannot update these configs dynamically" in refused.value.args[0].str()

    # Neither librdkafka nor kafka-python can name the cluster-wide default (BROKER ""): kwire.
    set_cluster_default(broker.bootstrap, "log.retention.ms", "60000")

    def check_described():
        entries = describe_cluster_default(broker.bootstrap)
        assert set(entries) == {"log.retention.ms"}, "only the dynamic defaults at \"\""
        assert entries["log.retention.ms"] == (
            "60000", SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG, False,
            [("log.retention.ms", "60000", SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG)],
        )
        mine = config_entries(client, this)
        assert mine["log.retention.ms"].value == "60000"
        assert mine["log.retention.ms"].source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
        assert not mine["log.retention.ms"].is_read_only
        assert mine["num.partitions"].is_read_only
        follows_entry = config_entries(client, ConfigResource(ConfigResource.Type.TOPIC, follows))["retention.ms"]
        assert (follows_entry.value, follows_entry.source) == ("60000", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value)
        keeps_entry = config_entries(client, ConfigResource(ConfigResource.Type.TOPIC, keeps))["retention.ms"]
        assert (keeps_entry.value, keeps_entry.source) == ("-1", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)

    check_described()
    # Retention acts on the existing topic without a restart; the override keeps its data.
    deadline = time.monotonic() + DEADLINE_S
    while low_watermark(broker.bootstrap, follows) == 0:
        assert time.monotonic() < deadline, "dynamic log.retention.ms deleted nothing"
        time.sleep(0.3)
    assert low_watermark(broker.bootstrap, keeps) == 0

    broker.restart("term")
    check_described()
    # Still in force after the restart: new old data on the topic goes too.
    start = low_watermark(broker.bootstrap, follows)
    produce_old_records(broker.bootstrap, follows, 60, age_ms=3_600_000)
    deadline = time.monotonic() + DEADLINE_S
    while low_watermark(broker.bootstrap, follows) <= start:
        assert time.monotonic() < deadline, "dynamic log.retention.ms lost by the restart"
        time.sleep(0.3)

    # A per-broker value wins over the cluster default; deleting it falls back.
    per_broker = ConfigResource(ConfigResource.Type.BROKER, "0",
                                incremental_configs=[ConfigEntry("log.retention.ms", "120000",
                                                                 incremental_operation=AlterConfigOpType.SET)])
    client.incremental_alter_configs([per_broker], request_timeout=DEADLINE_S)[per_broker].result(timeout=DEADLINE_S)
    entry = config_entries(client, ConfigResource(ConfigResource.Type.TOPIC, follows))["retention.ms"]
    assert (entry.value, entry.source) == ("120000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    delete = ConfigResource(ConfigResource.Type.BROKER, "0",
                            incremental_configs=[ConfigEntry("log.retention.ms", None,
                                                             incremental_operation=AlterConfigOpType.DELETE)])
    client.incremental_alter_configs([delete], request_timeout=DEADLINE_S)[delete].result(timeout=DEADLINE_S)
    entry = config_entries(client, ConfigResource(ConfigResource.Type.TOPIC, follows))["retention.ms"]
    assert (entry.value, entry.source) == ("60000", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value)


@time_limit(180)
def test_dynamic_message_max_bytes_applies_to_produce(broker_factory, topic_name):
    broker = broker_factory()
    client = kclients.admin(broker.bootstrap)
    kclients.create_topic(broker.bootstrap, topic_name, 1)
    set_cluster_default(broker.bootstrap, "message.max.bytes", "2000")
    entry = config_entries(client, ConfigResource(ConfigResource.Type.TOPIC, topic_name))["max.message.bytes"]
    assert (entry.value, entry.source) == ("2000", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value)
    with kwire.Conn(broker.bootstrap) as conn:
        error, _ = conn.produce_v3(topic_name, 0, kwire.record_batch([(b"k", b"x" * 4000)]))
        assert error == KafkaError.MSG_SIZE_TOO_LARGE
        error, _ = conn.produce_v3(topic_name, 0, kwire.record_batch([(b"k", b"x" * 100)]))
        assert error == 0


# -- kafka-python's admin client ------------------------------------------------------------

@time_limit(240)
def test_kafka_python_admin_dynamic_broker_configs_and_delete_records(broker_factory, topic_name):
    from kafka import TopicPartition as KTopicPartition
    from kafka.admin import ConfigResource as KConfigResource
    from kafka.admin import ConfigResourceType, KafkaAdminClient

    broker = broker_factory()
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=DEADLINE_S * 1000)
    try:
        kclients.create_topic(broker.bootstrap, topic_name, 1)
        # Broker configs: dynamic ones are writable (kafka-python checks with a DescribeConfigs
        # first), read-only ones are not.
        described = admin.describe_configs([KConfigResource(ConfigResourceType.BROKER, "0")], config_filter="all")
        mine = described["broker"]["0"]
        assert mine["log.retention.ms"]["read_only"] is False
        assert mine["num.partitions"]["read_only"] is True
        dynamic = admin.describe_configs([KConfigResource(ConfigResourceType.BROKER, "0")], config_filter="dynamic")
        assert "log.segment.bytes" in dynamic["broker"]["0"]
        assert "num.partitions" not in dynamic["broker"]["0"]

        for incremental in (True, False):
            value = "3600000" if incremental else "7200000"
            done = admin.alter_configs(
                [KConfigResource(ConfigResourceType.BROKER, "0", configs={"log.retention.ms": value})],
                incremental=incremental,
            )
            assert done == {"broker": {"0": "OK"}}, done
            now = admin.describe_configs([KConfigResource(ConfigResourceType.BROKER, "0", configs={"log.retention.ms": None})],
                                         config_filter="all")["broker"]["0"]["log.retention.ms"]
            assert now["value"] == value
            assert now["config_source"] == "DYNAMIC_BROKER_CONFIG"
            topic = admin.describe_configs([KConfigResource(ConfigResourceType.TOPIC, topic_name)],
                                           config_filter="all")["topic"][topic_name]["retention.ms"]
            assert (topic["value"], topic["config_source"]) == (value, "DYNAMIC_BROKER_CONFIG")

        refused = admin.alter_configs(
            [KConfigResource(ConfigResourceType.BROKER, "0", configs={"num.partitions": "3"})],
            raise_on_unknown=False,
        )
        assert "InvalidRequest" in refused["broker"]["0"] and "dynamically" in refused["broker"]["0"], refused

        # DeleteRecords.
        prod = kclients.producer(broker.bootstrap)
        for i in range(50):
            prod.produce(topic_name, value=f"v{i}".encode(), partition=0)
        kclients.flush_all(prod, timeout_s=DEADLINE_S)
        result = admin.delete_records({KTopicPartition(topic_name, 0): 30})
        (tp, partition), = result.items()
        assert partition["low_watermark"] == 30 and partition["error_code"] == 0, result
    finally:
        admin.close()
    assert low_watermark(broker.bootstrap, topic_name) == 30
    assert first_offset_from_earliest(broker.bootstrap, topic_name) == 30
