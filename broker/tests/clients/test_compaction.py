"""Log compaction with real clients: a compacted topic ends up holding the latest value of
each key, tombstones go after delete.retention.ms, offsets keep increasing; a kill -9 at each
step of a segment replacement leaves a consistent, complete log; keyless records are refused."""

from __future__ import annotations

import struct
import time

import pytest
from confluent_kafka import KafkaError, TopicPartition

import kclients

DEADLINE_S = 240
KEYS = 1000
DELETED_KEYS = 100  # keys 0..99 get tombstones
UPDATES = 100_000
FINAL_KEYS = range(100, 550)  # updated once more after the tombstones
# Written last, alone in the active segment (never cleaned, as in Kafka), so that every one
# of the 1 000 keys' records lies in a cleanable segment.
MARKER_KEY = b"roll-marker"

# Small segments, eager cleaning, short tombstone retention: compaction happens in seconds.
TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "internal.segment.bytes": str(256 * 1024),
    "segment.ms": "1000",
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "5000",
}
BROKER_CONFIG = {"log.cleaner.backoff.ms": 200}

pytestmark = pytest.mark.timeout(600)


def key(i: int) -> bytes:
    return f"key-{i:04d}".encode()


def produce_history(bootstrap: str, topic: str, codec: str) -> dict[bytes, bytes]:
    """100 000 updates over 1 000 keys and tombstones for 100 of them; returns the latest
    value of every live key."""
    deliveries = kclients.Deliveries()
    prod = kclients.producer(bootstrap, **{"compression.type": codec, "linger.ms": 20, "batch.size": 65536,
                                           "enable.idempotence": True})
    latest: dict[bytes, bytes | None] = {}
    first_part = UPDATES - len(FINAL_KEYS)
    for n in range(first_part):
        k, v = key(n % KEYS), f"value-{n}-{codec}".encode()
        prod.produce(topic, key=k, value=v, on_delivery=deliveries)
        latest[k] = v
        if n % 2000 == 0:
            prod.poll(0)
    for i in range(DELETED_KEYS):
        prod.produce(topic, key=key(i), value=None, on_delivery=deliveries)
        latest[key(i)] = None
    kclients.flush_all(prod)
    # Let segment.ms pass before each of the last two rounds so each append rolls: the
    # tombstones and the final updates end up in sealed (cleanable) segments, as the active
    # segment is never cleaned (as in Kafka); only the very last update stays there.
    time.sleep(1.5)
    for n, i in enumerate(FINAL_KEYS):
        v = f"final-{n}-{codec}".encode()
        prod.produce(topic, key=key(i), value=v, on_delivery=deliveries)
        latest[key(i)] = v
    kclients.flush_all(prod)
    time.sleep(1.5)
    prod.produce(topic, key=MARKER_KEY, value=b"marker", on_delivery=deliveries)
    latest[MARKER_KEY] = b"marker"
    kclients.flush_all(prod)
    assert not deliveries.failed, deliveries.failed[:3]
    assert len(deliveries.ok) == UPDATES + DELETED_KEYS + 1
    return {k: v for k, v in latest.items() if v is not None}


def read_from_beginning(bootstrap: str, topic: str) -> list[kclients.Msg]:
    """Everything up to the high watermark, offsets checked strictly increasing."""
    hw = kclients.high_watermarks(bootstrap, topic, 1)[0]
    c = kclients.consumer(bootstrap)
    got: list[kclients.Msg] = []
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + DEADLINE_S
        while True:
            pos = c.position([TopicPartition(topic, 0)])[0].offset
            if got and got[-1].offset + 1 >= hw:
                break
            if pos >= hw > 0 and got:
                break
            assert time.monotonic() < deadline, f"read {len(got)} records, not up to {hw}"
            for m in c.consume(num_messages=10000, timeout=0.5):
                if m.error() is not None:
                    raise AssertionError(m.error())
                msg = kclients.Msg(m.partition(), m.offset(), m.key(), m.value(), (), 0, 0)
                assert not got or msg.offset > got[-1].offset, (
                    f"offset {msg.offset} after {got[-1].offset}"
                )
                got.append(msg)
    finally:
        c.close()
    return got


def wait_compacted(bootstrap: str, topic: str, expected: dict[bytes, bytes]) -> list[kclients.Msg]:
    """Polls until a read from the beginning shows exactly `expected` (one record per live
    key, no tombstones); returns that read."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        got = read_from_beginning(bootstrap, topic)
        view = {m.key: m.value for m in got}
        if len(got) == len(expected) and view == expected:
            return got
        assert time.monotonic() < deadline, (
            f"not compacted within {DEADLINE_S} s: {len(got)} records, "
            f"{sum(1 for m in got if m.value is None)} tombstones, {len(view)} keys"
        )
        time.sleep(1)


@pytest.mark.parametrize("codec", ["none", "lz4", "zstd"])
def test_compaction_keeps_latest_value_per_key(broker_factory, topic_name, codec):
    broker = broker_factory(config=BROKER_CONFIG)
    kclients.create_topic(broker.bootstrap, topic_name, 1, config=TOPIC_CONFIG)
    expected = produce_history(broker.bootstrap, topic_name, codec)
    assert len(expected) == KEYS - DELETED_KEYS + 1  # the live keys and the marker
    got = wait_compacted(broker.bootstrap, topic_name, expected)
    assert [m.offset for m in got] == sorted({m.offset for m in got})
    # The log end did not move: the last record keeps its offset.
    assert got[-1].offset == UPDATES + DELETED_KEYS
    # The cleaner's figures are on /metrics (published after each pass).
    deadline = time.monotonic() + DEADLINE_S
    while True:
        status, body = broker.http_get("/metrics")
        assert status == 200
        lines = body.decode().splitlines()
        mine = [ln for ln in lines if f'topic="{topic_name}"' in ln]
        read = sum(float(ln.split()[-1]) for ln in lines
                   if ln.startswith("ringtail_log_cleaner_read_bytes_total{"))
        written = sum(float(ln.split()[-1]) for ln in lines
                      if ln.startswith("ringtail_log_cleaner_written_bytes_total{"))
        if (read > 0 and written > 0
                and any(ln.startswith("ringtail_log_cleaner_dirty_ratio{") for ln in mine)
                and any(ln.startswith("ringtail_log_cleaner_seconds_since_last_clean{") for ln in mine)):
            break
        assert time.monotonic() < deadline, f"cleaner metrics missing: read {read}, written {written}, {mine}"
        time.sleep(0.5)
    # And it survives a restart as it is.
    broker.restart("term")
    assert {m.key: m.value for m in read_from_beginning(broker.bootstrap, topic_name)} == expected


def test_compacted_topic_refuses_records_without_key(broker, topic_name):
    kclients.create_topic(broker.bootstrap, topic_name, 1, config={"cleanup.policy": "compact"})
    deliveries = kclients.Deliveries()
    prod = kclients.producer(broker.bootstrap, **{"message.timeout.ms": 30000})
    # One batch each: the broker refuses a whole batch holding a record without a key.
    prod.produce(topic_name, value=b"no key", on_delivery=deliveries)
    kclients.flush_all(prod)
    prod.produce(topic_name, key=b"k", value=b"with key", on_delivery=deliveries)
    kclients.flush_all(prod)
    assert len(deliveries.ok) == 1 and deliveries.ok[0].key == b"k"
    assert len(deliveries.failed) == 1
    assert "INVALID_RECORD" in deliveries.failed[0][0] or "invalid" in deliveries.failed[0][0].lower(), (
        deliveries.failed
    )


def wait_for_log(broker, text: str, timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in broker.log_text():
        assert broker.alive(), "broker died"
        assert time.monotonic() < deadline, f"{text!r} not in the broker log within {timeout_s} s"
        time.sleep(0.2)


@pytest.mark.parametrize("step", [1, 2, 3, 4, 5])
def test_kill9_during_segment_replacement(broker_factory, topic_name, step):
    broker = broker_factory(config=BROKER_CONFIG, env={"RINGTAIL_TEST_COMPACTION_PAUSE_STEP": str(step)})
    kclients.create_topic(broker.bootstrap, topic_name, 1, config=TOPIC_CONFIG)
    expected = produce_history(broker.bootstrap, topic_name, "lz4")
    before = {m.offset: (m.key, m.value) for m in read_from_beginning(broker.bootstrap, topic_name)}
    wait_for_log(broker, f"segment replacement paused at step {step}")
    broker.kill9()
    broker.env.pop("RINGTAIL_TEST_COMPACTION_PAUSE_STEP")
    broker.start()
    # Consistent: every record read is the one written at its offset; complete: every live
    # key's latest value is there.
    after = read_from_beginning(broker.bootstrap, topic_name)
    for m in after:
        assert before.get(m.offset) == (m.key, m.value), f"offset {m.offset} changed"
    latest = {}
    for m in after:
        latest[m.key] = m.value
    for k, v in expected.items():
        assert latest.get(k) == v, f"{k!r}: latest {latest.get(k)!r}, expected {v!r}"
    # And cleaning completes after the restart.
    wait_compacted(broker.bootstrap, topic_name, expected)


def test_deleting_a_topic_forgets_its_committed_offsets(broker, topic_name):
    """Kafka drops a deleted topic's committed offsets (tombstones in __consumer_offsets): a
    topic re-created under the same name starts without them."""
    kclients.create_topic(broker.bootstrap, topic_name, 1)
    group = f"g-{topic_name}"
    c = kclients.consumer(broker.bootstrap, **{"group.id": group})
    try:
        c.commit(offsets=[TopicPartition(topic_name, 0, 5)], asynchronous=False)
        assert c.committed([TopicPartition(topic_name, 0)], timeout=30)[0].offset == 5
    finally:
        c.close()
    client = kclients.admin(broker.bootstrap)
    client.delete_topics([topic_name], operation_timeout=30)[topic_name].result(timeout=60)
    deadline = time.monotonic() + 60
    while topic_name in client.list_topics(timeout=10).topics:
        assert time.monotonic() < deadline, "topic not deleted"
        time.sleep(0.2)
    kclients.create_topic(broker.bootstrap, topic_name, 1)
    c = kclients.consumer(broker.bootstrap, **{"group.id": group})
    try:
        committed = c.committed([TopicPartition(topic_name, 0)], timeout=30)[0].offset
    finally:
        c.close()
    assert committed < 0, f"offset {committed} survived the topic's deletion"


def test_consumer_offsets_compacts_and_replays(broker_factory):
    """__consumer_offsets is compacted like any compact topic: thousands of commits over a few
    group/partitions shrink to about one record each, and after a kill -9 the coordinators
    replay the compacted log to the latest committed offsets."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    broker = broker_factory(config={**BROKER_CONFIG, "offsets.topic.num.partitions": 2})
    topic = "offsets-source"
    kclients.create_topic(broker.bootstrap, topic, 2)
    client = kclients.admin(broker.bootstrap)
    res = ConfigResource(ConfigResource.Type.TOPIC, "__consumer_offsets", incremental_configs=[
        ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
        for name, value in [("internal.segment.bytes", "16384"), ("segment.ms", "1000"),
                            ("min.cleanable.dirty.ratio", "0.01")]
    ])
    client.incremental_alter_configs([res], request_timeout=60)[res].result(timeout=60)

    groups = [f"offsets-group-{i}" for i in range(4)]
    rounds = 300
    consumers = {g: kclients.consumer(broker.bootstrap, **{"group.id": g}) for g in groups}
    try:
        for r in range(rounds):
            for g, c in consumers.items():
                c.commit(offsets=[TopicPartition(topic, p, r + 1) for p in range(2)], asynchronous=False)
        time.sleep(1.5)  # segment.ms: the next commits roll the segment
        for g, c in consumers.items():
            c.commit(offsets=[TopicPartition(topic, p, rounds + 1) for p in range(2)], asynchronous=False)
    finally:
        for c in consumers.values():
            c.close()

    def offsets_log_records() -> int:
        got = kclients.consume_all(broker.bootstrap, "__consumer_offsets", 2,
                                   until=kclients.high_watermarks(broker.bootstrap, "__consumer_offsets", 2))
        return sum(len(v) for v in got.values())

    deadline = time.monotonic() + DEADLINE_S
    while (n := offsets_log_records()) > 100:
        assert time.monotonic() < deadline, f"__consumer_offsets still holds {n} records"
        time.sleep(1)

    broker.restart("kill")
    for g in groups:
        c = kclients.consumer(broker.bootstrap, **{"group.id": g})
        try:
            committed = c.committed([TopicPartition(topic, p) for p in range(2)], timeout=60)
        finally:
            c.close()
        assert [tp.offset for tp in committed] == [rounds + 1, rounds + 1], (g, committed)


def read_records(bootstrap: str, topic: str, isolation: str = "read_uncommitted") -> list[tuple]:
    """(offset, key, value, timestamp ms) of every record a consumer with `isolation` reads
    from the beginning up to the high watermark (no transaction is open in these tests, so
    the high watermark is also the last stable offset)."""
    hw = kclients.high_watermarks(bootstrap, topic, 1)[0]
    c = kclients.consumer(bootstrap, **{"isolation.level": isolation})
    got: list[tuple] = []
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + DEADLINE_S
        while c.position([TopicPartition(topic, 0)])[0].offset < hw:
            assert time.monotonic() < deadline, f"{isolation}: read {len(got)} records, not up to {hw}"
            for m in c.consume(num_messages=10000, timeout=0.5):
                if m.error() is not None:
                    raise AssertionError(m.error())
                got.append((m.offset(), m.key(), m.value(), m.timestamp()[1]))
    finally:
        c.close()
    return got


def roll(bootstrap: str, topic: str) -> None:
    """Seals what was written so far (as the active segment is never cleaned): one record
    after segment.ms has passed starts a new segment."""
    time.sleep(1.5)
    deliveries = kclients.Deliveries()
    prod = kclients.producer(bootstrap)
    prod.produce(topic, key=MARKER_KEY, value=b"marker", on_delivery=deliveries)
    kclients.flush_all(prod)
    assert len(deliveries.ok) == 1, deliveries.failed


def test_compaction_removes_aborted_transactions(broker_factory, topic_name):
    """Kafka's cleaner drops the data of aborted transactions: afterwards even a
    read_uncommitted consumer sees no aborted record, an aborted update never hid a
    committed one, and the producer carries on with its state intact (also after kill -9)."""
    broker = broker_factory(config=BROKER_CONFIG)
    kclients.create_topic(broker.bootstrap, topic_name, 1, config=TOPIC_CONFIG)
    prod = kclients.producer(broker.bootstrap, **{"transactional.id": f"txn-{topic_name}",
                                                  "transaction.timeout.ms": 30000})
    prod.init_transactions(60)

    def txn(records: list[tuple[bytes, bytes]], commit: bool) -> None:
        prod.begin_transaction()
        for k, v in records:
            prod.produce(topic_name, key=k, value=v)
        prod.flush(60)
        if commit:
            prod.commit_transaction(60)
        else:
            prod.abort_transaction(60)

    shared = [key(i) for i in range(100)]
    txn([(k, b"committed-1") for k in shared], commit=True)
    # Aborted updates of committed keys and aborted new keys.
    txn([(k, b"aborted") for k in shared[:50]] + [(b"new-%d" % i, b"aborted") for i in range(50)],
        commit=False)
    txn([(k, b"committed-3") for k in shared[50:]], commit=True)
    before = read_records(broker.bootstrap, topic_name)
    assert sum(1 for r in before if r[2] == b"aborted") == 100, "read_uncommitted sees aborted data before"
    roll(broker.bootstrap, topic_name)

    expected = {k: b"committed-1" for k in shared[:50]}
    expected.update({k: b"committed-3" for k in shared[50:]})
    expected[MARKER_KEY] = b"marker"
    deadline = time.monotonic() + DEADLINE_S
    while True:
        got = read_records(broker.bootstrap, topic_name)
        if len(got) == len(expected):
            break
        assert time.monotonic() < deadline, (
            f"not compacted: {len(got)} records, {sum(1 for r in got if r[2] == b'aborted')} aborted"
        )
        time.sleep(1)
    assert {r[1]: r[2] for r in got} == expected
    assert read_records(broker.bootstrap, topic_name, "read_committed") == got

    # The producer's state survived: its next transaction is accepted, before and after a
    # kill -9 (which rebuilds the partition's transactions from the cleaned log).
    txn([(shared[0], b"committed-4")], commit=True)
    del prod
    broker.restart("kill")
    expected[shared[0]] = b"committed-4"
    for isolation in ("read_uncommitted", "read_committed"):
        view = {r[1]: r[2] for r in read_records(broker.bootstrap, topic_name, isolation)}
        assert view == expected, isolation
    prod = kclients.producer(broker.bootstrap, **{"transactional.id": f"txn-{topic_name}",
                                                  "transaction.timeout.ms": 30000})
    prod.init_transactions(60)
    txn([(shared[1], b"committed-5")], commit=True)
    view = {r[1]: r[2] for r in read_records(broker.bootstrap, topic_name, "read_committed")}
    assert view[shared[1]] == b"committed-5"


def test_tombstone_kept_for_delete_retention_from_its_first_cleaning(broker_factory, topic_name):
    """KIP-534: a tombstone is kept for delete.retention.ms counted from when the cleaner
    first kept it (the delete horizon it writes into the batch), not from the record's own
    timestamp: a tombstone stamped a day ago is still there after the cleaning that removed
    the value it deletes, with its timestamp unchanged, and goes once the horizon passes."""
    import kwire

    retention_ms = 30_000
    broker = broker_factory(config=BROKER_CONFIG)
    kclients.create_topic(broker.bootstrap, topic_name, 1,
                          config={**TOPIC_CONFIG, "delete.retention.ms": str(retention_ms)})
    day_ago = int(time.time() * 1000) - 86_400_000
    started_ms = int(time.time() * 1000)
    deliveries = kclients.Deliveries()
    prod = kclients.producer(broker.bootstrap)
    prod.produce(topic_name, key=b"gone", value=b"old value", timestamp=day_ago, on_delivery=deliveries)
    prod.produce(topic_name, key=b"kept", value=b"live", timestamp=day_ago, on_delivery=deliveries)
    kclients.flush_all(prod)
    prod.produce(topic_name, key=b"gone", value=None, timestamp=day_ago + 1, on_delivery=deliveries)
    kclients.flush_all(prod)
    assert len(deliveries.ok) == 3, deliveries.failed
    roll(broker.bootstrap, topic_name)

    # The cleaning that removes the old value keeps the tombstone (before KIP-534 semantics
    # it went in the same pass: its own timestamp is a day past delete.retention.ms).
    deadline = time.monotonic() + DEADLINE_S
    while True:
        got = read_records(broker.bootstrap, topic_name)
        if all(r[2] != b"old value" for r in got):
            break
        assert time.monotonic() < deadline, f"not compacted: {got}"
        time.sleep(0.5)
    assert [(r[1], r[2], r[3]) for r in got] == [
        (b"kept", b"live", day_ago), (b"gone", None, day_ago + 1), (MARKER_KEY, b"marker", got[-1][3]),
    ]
    # The horizon is in the stored batch: attributes bit 6, base timestamp = horizon.
    with kwire.Conn(broker.bootstrap) as conn:
        batches = kwire.fetch_all_batches(conn, topic_name, 0)
    tomb = [b for b in batches if b.base_offset <= 2 <= b.last_offset]
    assert len(tomb) == 1 and tomb[0].attributes & 0x40, [hex(b.attributes) for b in batches]
    horizon = struct.unpack_from(">q", tomb[0].raw, 27)[0]
    assert horizon >= started_ms + retention_ms, (horizon, started_ms)
    # And it goes once the horizon has passed.
    deadline = time.monotonic() + retention_ms / 1000 + DEADLINE_S
    while any(r[1] == b"gone" for r in read_records(broker.bootstrap, topic_name)):
        assert time.monotonic() < deadline, "tombstone never removed"
        time.sleep(1)
    assert [(r[1], r[2]) for r in read_records(broker.bootstrap, topic_name)] == [
        (b"kept", b"live"), (MARKER_KEY, b"marker"),
    ]
