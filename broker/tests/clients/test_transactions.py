"""Transactions and exactly-once with unmodified clients (confluent-kafka / librdkafka and
kafka-python) against a real `ringtail`: commits are visible with their offsets, aborts are
not (to read_committed consumers), a second producer fences the first, and a
consume-transform-produce loop moves every record exactly once across a kill -9."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

import kclients

DEADLINE_S = 60.0


def txn_producer(bootstrap: str, txn_id: str, **overrides):
    return kclients.producer(
        bootstrap,
        **{"transactional.id": txn_id, "transaction.timeout.ms": 30000, **overrides},
    )


def high_watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    """High watermarks (a read_committed client's ListOffsets would answer the LSO)."""
    c = kclients.consumer(bootstrap, **{"isolation.level": "read_uncommitted"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=DEADLINE_S)[1]
                for p in range(partitions)}
    finally:
        c.close()


def read_all(bootstrap: str, topic: str, partitions: int, isolation: str,
             timeout_s: float = DEADLINE_S) -> list:
    """Every record of `topic` a consumer with `isolation` sees, reading until its position
    reaches the end (high watermark, which is also the LSO once no transaction is open)."""
    ends = high_watermarks(bootstrap, topic, partitions)
    c = kclients.consumer(bootstrap, **{"isolation.level": isolation})
    out = []
    try:
        tps = [TopicPartition(topic, p, 0) for p in range(partitions)]
        c.assign(tps)
        deadline = time.monotonic() + timeout_s
        while True:
            for m in c.consume(num_messages=10000, timeout=0.5):
                if m.error() is not None:
                    raise KafkaException(m.error())
                out.append((m.partition(), m.offset(), m.key(), m.value()))
            positions = {tp.partition: tp.offset for tp in c.position(tps)}
            if all(positions[p] >= ends[p] for p in range(partitions) if ends[p] > 0):
                return out
            assert time.monotonic() < deadline, (
                f"{isolation} consumer stuck at {positions}, ends {ends}, read {len(out)}"
            )
    finally:
        c.close()


def committed(bootstrap: str, group: str, topic: str, partitions: int,
              isolation: str = "read_committed", timeout_s: float = DEADLINE_S) -> dict[int, int]:
    """Committed offsets. A read_committed client (librdkafka's default) asks with
    require_stable, so it waits while a transaction holds offsets of the group."""
    c = kclients.consumer(bootstrap, **{"group.id": group, "isolation.level": isolation})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=timeout_s)
        return {tp.partition: tp.offset for tp in got}
    finally:
        c.close()


def group_metadata(bootstrap: str, group: str, topic: str):
    """A consumer group's metadata for send_offsets_to_transaction (the consumer stays open)."""
    c = kclients.consumer(bootstrap, **{"group.id": group})
    c.subscribe([topic])
    deadline = time.monotonic() + DEADLINE_S
    while not c.assignment():
        assert time.monotonic() < deadline, "no assignment"
        c.poll(0.2)
    return c, c.consumer_group_metadata()


@pytest.mark.timeout(180)
def test_committed_transaction_shows_records_and_offsets(broker, topic_name):
    src, out, group = f"{topic_name}-in", f"{topic_name}-out", f"g-{uuid.uuid4().hex[:8]}"
    kclients.create_topic(broker.bootstrap, src, 1)
    kclients.create_topic(broker.bootstrap, out, 2)
    consumer, gmd = group_metadata(broker.bootstrap, group, src)
    try:
        p = txn_producer(broker.bootstrap, f"tx-{topic_name}")
        p.init_transactions(DEADLINE_S)
        p.begin_transaction()
        for i in range(10):
            p.produce(out, key=str(i).encode(), value=f"v{i}".encode(), partition=i % 2)
        p.send_offsets_to_transaction([TopicPartition(src, 0, 42)], gmd, DEADLINE_S)
        # Not visible before the commit.
        assert committed(broker.bootstrap, group, src, 1, "read_uncommitted")[0] < 0
        p.commit_transaction(DEADLINE_S)
    finally:
        consumer.close()
    got = read_all(broker.bootstrap, out, 2, "read_committed")
    assert sorted(v for *_, v in got) == sorted(f"v{i}".encode() for i in range(10))
    assert committed(broker.bootstrap, group, src, 1) == {0: 42}


@pytest.mark.timeout(180)
def test_aborted_transaction_is_hidden_from_read_committed_only(broker, topic_name):
    src, group = f"{topic_name}-in", f"g-{uuid.uuid4().hex[:8]}"
    kclients.create_topic(broker.bootstrap, src, 1)
    kclients.create_topic(broker.bootstrap, topic_name, 2)
    consumer, gmd = group_metadata(broker.bootstrap, group, src)
    try:
        p = txn_producer(broker.bootstrap, f"tx-{topic_name}")
        p.init_transactions(DEADLINE_S)
        p.begin_transaction()
        for i in range(20):
            p.produce(topic_name, value=f"aborted-{i}".encode(), partition=i % 2)
        p.flush(DEADLINE_S)
        p.send_offsets_to_transaction([TopicPartition(src, 0, 7)], gmd, DEADLINE_S)
        p.abort_transaction(DEADLINE_S)
        p.begin_transaction()
        for i in range(10):
            p.produce(topic_name, value=f"committed-{i}".encode(), partition=i % 2)
        p.commit_transaction(DEADLINE_S)
    finally:
        consumer.close()
    rc = read_all(broker.bootstrap, topic_name, 2, "read_committed")
    assert sorted(v for *_, v in rc) == sorted(f"committed-{i}".encode() for i in range(10))
    ru = read_all(broker.bootstrap, topic_name, 2, "read_uncommitted")
    assert len([v for *_, v in ru if v.startswith(b"aborted-")]) == 20
    assert len([v for *_, v in ru if v.startswith(b"committed-")]) == 10
    # The aborted transaction's offsets were never committed.
    assert committed(broker.bootstrap, group, src, 1)[0] < 0


@pytest.mark.timeout(180)
def test_second_producer_fences_the_first(broker, topic_name):
    kclients.create_topic(broker.bootstrap, topic_name, 1)
    txn_id = f"tx-{topic_name}"
    first = txn_producer(broker.bootstrap, txn_id)
    first.init_transactions(DEADLINE_S)
    first.begin_transaction()
    first.produce(topic_name, value=b"zombie")
    first.flush(DEADLINE_S)

    second = txn_producer(broker.bootstrap, txn_id)
    second.init_transactions(DEADLINE_S)  # aborts the first one's open transaction
    second.begin_transaction()
    second.produce(topic_name, value=b"winner")
    second.commit_transaction(DEADLINE_S)

    with pytest.raises(KafkaException) as raised:
        first.produce(topic_name, value=b"zombie-2")
        first.commit_transaction(DEADLINE_S)
    err = raised.value.args[0]
    assert err.fatal() or err.txn_requires_abort(), err
    rc = read_all(broker.bootstrap, topic_name, 1, "read_committed")
    assert [v for *_, v in rc] == [b"winner"]


COPIER = Path(__file__).with_name("txn_copier.py")


def start_copier(bootstrap, src, dst, group, txn_id, log_path):
    return subprocess.Popen(
        [sys.executable, str(COPIER), bootstrap, src, dst, group, txn_id],
        stdout=open(log_path, "ab"), stderr=subprocess.STDOUT)


def input_committed(bootstrap: str, group: str, src: str) -> int:
    """How many input records the application has committed (its group's offsets)."""
    try:
        return sum(max(o, 0) for o in committed(bootstrap, group, src, 2).values())
    except KafkaException:
        return -1  # broker restarting


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_consume_transform_produce_is_exactly_once_across_kill9(broker_factory, topic_name, tmp_path):
    broker = broker_factory()
    src, dst, group = f"{topic_name}-in", f"{topic_name}-out", f"g-{uuid.uuid4().hex[:8]}"
    total = 10_000
    kclients.create_topic(broker.bootstrap, src, 2)
    kclients.create_topic(broker.bootstrap, dst, 2)
    p = kclients.producer(broker.bootstrap, **{"enable.idempotence": True})
    for i in range(total):
        p.produce(src, key=str(i).encode(), value=str(i).encode(), partition=i % 2)
    kclients.flush_all(p)

    args = (broker.bootstrap, src, dst, group, f"tx-{topic_name}", tmp_path / "copier.log")
    app = start_copier(*args)
    try:
        deadline = time.monotonic() + 480
        # Kill -9 the broker while the application is in the middle of the stream.
        while input_committed(broker.bootstrap, group, src) < total // 3:
            assert time.monotonic() < deadline, "the copier made no progress"
            assert app.poll() is None, "the copier died"
            time.sleep(0.2)
        broker.restart("kill")
        # An application stuck in its client after the crash is restarted as operators
        # would (its successor fences it).
        last, last_change = -1, time.monotonic()
        while (done := input_committed(broker.bootstrap, group, src)) < total:
            assert time.monotonic() < deadline, f"copied only {done} of {total}"
            if done != last:
                last, last_change = done, time.monotonic()
            elif time.monotonic() - last_change > 40:
                app.kill()
                app.wait(30)
                app = start_copier(*args)
                last_change = time.monotonic()
            time.sleep(0.5)
    finally:
        app.kill()
        app.wait(30)
    got = read_all(broker.bootstrap, dst, 2, "read_committed", timeout_s=120)
    values = sorted(int(v[len(b"copy-"):]) for *_, v in got)
    assert len(values) == total, f"{len(values)} records, {len(set(values))} distinct"
    assert values == list(range(total))


@pytest.mark.timeout(180)
def test_kafka_python_transactional_producer_commits_and_aborts(broker, topic_name):
    from kafka import KafkaProducer

    kclients.create_topic(broker.bootstrap, topic_name, 1)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=f"kp-{topic_name}",
                      request_timeout_ms=30000)
    try:
        p.init_transactions()
        p.begin_transaction()
        for i in range(5):
            p.send(topic_name, value=f"kp-commit-{i}".encode(), partition=0)
        p.commit_transaction()
        p.begin_transaction()
        for i in range(5):
            p.send(topic_name, value=f"kp-abort-{i}".encode(), partition=0)
        p.flush()
        p.abort_transaction()
    finally:
        p.close(timeout=30)
    rc = read_all(broker.bootstrap, topic_name, 1, "read_committed")
    assert [v for *_, v in rc] == [f"kp-commit-{i}".encode() for i in range(5)]
    ru = read_all(broker.bootstrap, topic_name, 1, "read_uncommitted")
    assert len(ru) == 10


@pytest.mark.timeout(240)
def test_open_transaction_survives_kill9_and_is_aborted_by_its_timeout(broker_factory, topic_name):
    """A producer dies mid-transaction and the broker is killed: after the restart the open
    transaction is rebuilt from the log (its records stay invisible to read_committed), and
    the coordinator aborts it at its timeout, so the LSO moves on and later commits are seen;
    the aborted records stay hidden across another restart (aborted index rebuilt)."""
    broker = broker_factory(config={"transaction.abort.timed.out.transaction.cleanup.interval.ms": 500})
    kclients.create_topic(broker.bootstrap, topic_name, 1)
    hanging = txn_producer(broker.bootstrap, f"tx-hang-{topic_name}", **{"transaction.timeout.ms": 4000})
    hanging.init_transactions(DEADLINE_S)
    hanging.begin_transaction()
    for i in range(5):
        hanging.produce(topic_name, value=f"hanging-{i}".encode())
    hanging.flush(DEADLINE_S)
    broker.restart("kill")

    other = txn_producer(broker.bootstrap, f"tx-other-{topic_name}")
    other.init_transactions(DEADLINE_S)
    other.begin_transaction()
    other.produce(topic_name, value=b"after")
    other.commit_transaction(DEADLINE_S)
    rc = read_all(broker.bootstrap, topic_name, 1, "read_committed", timeout_s=90)
    assert [v for *_, v in rc] == [b"after"]

    broker.restart("kill")
    rc = read_all(broker.bootstrap, topic_name, 1, "read_committed", timeout_s=90)
    assert [v for *_, v in rc] == [b"after"]
    ru = read_all(broker.bootstrap, topic_name, 1, "read_uncommitted")
    assert len(ru) == 6


@pytest.mark.timeout(180)
def test_cli_lists_and_aborts_a_hanging_transaction(broker, topic_name):
    kclients.create_topic(broker.bootstrap, topic_name, 1)
    txn_id = f"tx-cli-{topic_name}"
    p = txn_producer(broker.bootstrap, txn_id)
    p.init_transactions(DEADLINE_S)
    p.begin_transaction()
    p.produce(topic_name, value=b"hanging")
    p.flush(DEADLINE_S)
    bin_path = broker.command()[0]

    def cli(*args):
        out = subprocess.run([bin_path, "txn", *args, "--bootstrap", broker.bootstrap],
                             capture_output=True, text=True, timeout=90)
        assert out.returncode == 0, out.stderr
        return out.stdout

    listed = [line for line in cli("list").splitlines() if line.startswith(txn_id)]
    assert len(listed) == 1 and "Ongoing" in listed[0] and f"{topic_name}-0" in listed[0], listed
    cli("abort", txn_id)
    listed = [line for line in cli("list").splitlines() if line.startswith(txn_id)]
    assert "CompleteAbort" in listed[0] or "Empty" in listed[0], listed
    # The LSO moved on: a read_committed reader reaches the end and sees nothing.
    assert read_all(broker.bootstrap, topic_name, 1, "read_committed") == []


def poll_until(consumers, cond, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        for c in consumers:
            c.poll(0.1)


def offsets_refused(bootstrap: str, txn_id: str, out: str, offsets, gmd):
    """A transaction sending `offsets` with the group metadata `gmd`: the error the
    send_offsets_to_transaction call raises (then aborted), or None if it succeeded."""
    p = txn_producer(bootstrap, txn_id)
    p.init_transactions(DEADLINE_S)
    p.begin_transaction()
    p.produce(out, value=b"x")
    try:
        p.send_offsets_to_transaction(offsets, gmd, DEADLINE_S)
    except KafkaException as e:
        err = e.args[0]
        assert err.txn_requires_abort(), err
        p.abort_transaction(DEADLINE_S)
        return err
    p.commit_transaction(DEADLINE_S)
    return None


@pytest.mark.timeout(180)
def test_zombie_with_a_stale_generation_cannot_commit_offsets(broker, topic_name):
    """TxnOffsetCommit v3 carries the consumer's generation and member id: once the group
    rebalanced, a producer sending the old group metadata gets ILLEGAL_GENERATION (its
    offsets stay out), the current metadata commits, and a member that left gets
    UNKNOWN_MEMBER_ID."""
    src, out, group = f"{topic_name}-in", f"{topic_name}-out", f"g-{uuid.uuid4().hex[:8]}"
    kclients.create_topic(broker.bootstrap, src, 2)
    kclients.create_topic(broker.bootstrap, out, 1)
    a, stale = group_metadata(broker.bootstrap, group, src)
    b = kclients.consumer(broker.bootstrap, **{"group.id": group})
    try:
        b.subscribe([src])
        poll_until([a, b], lambda: len(a.assignment()) == 1 and len(b.assignment()) == 1,
                   "the second consumer's rebalance")
        err = offsets_refused(broker.bootstrap, f"tx-{topic_name}", out,
                              [TopicPartition(src, 0, 7)], stale)
        assert err is not None and err.code() == KafkaError.ILLEGAL_GENERATION, err
        assert committed(broker.bootstrap, group, src, 1)[0] < 0
        assert offsets_refused(broker.bootstrap, f"tx-{topic_name}", out,
                               [TopicPartition(src, 0, 9)], a.consumer_group_metadata()) is None
        assert committed(broker.bootstrap, group, src, 1) == {0: 9}
        # b leaves the group: its metadata names a member the group no longer has.
        b_gmd = b.consumer_group_metadata()
        b.close()
        err = offsets_refused(broker.bootstrap, f"tx-{topic_name}", out,
                              [TopicPartition(src, 0, 11)], b_gmd)
        assert err is not None and err.code() == KafkaError.UNKNOWN_MEMBER_ID, err
        assert committed(broker.bootstrap, group, src, 1) == {0: 9}
    finally:
        a.close()


@pytest.mark.timeout(180)
def test_fenced_static_member_cannot_commit_offsets(broker, topic_name):
    """A static member (group.instance.id) replaced by a new incarnation: the old one's
    metadata gets FENCED_INSTANCE_ID."""
    src, out, group = f"{topic_name}-in", f"{topic_name}-out", f"g-{uuid.uuid4().hex[:8]}"
    kclients.create_topic(broker.bootstrap, src, 1)
    kclients.create_topic(broker.bootstrap, out, 1)
    static = {"group.id": group, "group.instance.id": "i1", "session.timeout.ms": 30000}
    old = kclients.consumer(broker.bootstrap, **static)
    old.subscribe([src])
    poll_until([old], lambda: bool(old.assignment()), "the first incarnation's assignment")
    old_gmd = old.consumer_group_metadata()
    # The application restarts with the same instance id; the old process is a zombie.
    new = kclients.consumer(broker.bootstrap, **static)
    try:
        new.subscribe([src])
        poll_until([new], lambda: bool(new.assignment()), "the new incarnation's assignment")
        err = offsets_refused(broker.bootstrap, f"tx-{topic_name}", out,
                              [TopicPartition(src, 0, 5)], old_gmd)
        assert err is not None and err.code() == KafkaError.FENCED_INSTANCE_ID, err
        assert committed(broker.bootstrap, group, src, 1)[0] < 0
    finally:
        new.close()
        old.close()


@pytest.mark.timeout(180)
def test_read_committed_consumer_waits_for_pending_transactional_offsets(broker, topic_name):
    """OffsetFetch require_stable (v7+, sent by read_committed clients): while a transaction
    holds offsets of the group, the partition answers UNSTABLE_OFFSET_COMMIT and the client
    retries, so a consumer starting meanwhile begins at the offset the transaction commits
    rather than at the older committed one. read_uncommitted clients are answered at once."""
    src, out, group = f"{topic_name}-in", f"{topic_name}-out", f"g-{uuid.uuid4().hex[:8]}"
    kclients.create_topic(broker.bootstrap, src, 1)
    kclients.create_topic(broker.bootstrap, out, 1)
    feed = kclients.producer(broker.bootstrap)
    for i in range(100):
        feed.produce(src, value=f"in-{i}".encode(), partition=0)
    feed.flush(DEADLINE_S)
    consumer, gmd = group_metadata(broker.bootstrap, group, src)
    p = txn_producer(broker.bootstrap, f"tx-{topic_name}")
    p.init_transactions(DEADLINE_S)
    p.begin_transaction()
    p.produce(out, value=b"x")
    p.send_offsets_to_transaction([TopicPartition(src, 0, 42)], gmd, DEADLINE_S)
    consumer.close()

    assert committed(broker.bootstrap, group, src, 1, "read_uncommitted")[0] < 0
    with pytest.raises(KafkaException) as raised:
        # Retries UNSTABLE_OFFSET_COMMIT until its timeout (well within the transaction's).
        committed(broker.bootstrap, group, src, 1, timeout_s=5)
    assert raised.value.args[0].code() == KafkaError._TIMED_OUT, raised.value

    c = kclients.consumer(broker.bootstrap, **{"group.id": group, "isolation.level": "read_committed"})
    try:
        c.subscribe([src])
        poll_until([c], lambda: bool(c.assignment()), "an assignment")
        early = [m for m in c.consume(num_messages=100, timeout=2.0) if m.error() is None]
        assert early == [], "the consumer started before the transaction decided its offset"
        p.commit_transaction(DEADLINE_S)
        got = []
        deadline = time.monotonic() + DEADLINE_S
        while not got:
            assert time.monotonic() < deadline, "the consumer never started"
            got = [m for m in c.consume(num_messages=100, timeout=0.5) if m.error() is None]
        assert got[0].offset() == 42, got[0].offset()
    finally:
        c.close()
    assert committed(broker.bootstrap, group, src, 1) == {0: 42}


def list_offset(bootstrap: str, topic: str, spec, isolation) -> int:
    """One partition's ListOffsets answer through AdminClient.list_offsets (-1: none)."""
    admin = kclients.admin(bootstrap)
    tp = TopicPartition(topic, 0)
    futures = admin.list_offsets({tp: spec}, isolation_level=isolation, request_timeout=DEADLINE_S)
    return futures[tp].result(timeout=DEADLINE_S).offset


@pytest.mark.timeout(180)
def test_list_offsets_by_timestamp_stops_at_the_last_stable_offset(broker, topic_name):
    """ListOffsets by timestamp and MAX_TIMESTAMP with read_committed never answer an offset
    at or past the LSO (Kafka's lastFetchableOffset): records of an open transaction are
    found by read_uncommitted lookups only, and by both once it commits."""
    from confluent_kafka import IsolationLevel
    from confluent_kafka.admin import OffsetSpec

    kclients.create_topic(broker.bootstrap, topic_name, 1)
    plain = kclients.producer(broker.bootstrap)
    for i in range(10):
        plain.produce(topic_name, value=f"p{i}".encode(), partition=0, timestamp=1_000 + i)
    plain.flush(DEADLINE_S)
    p = txn_producer(broker.bootstrap, f"tx-{topic_name}")
    p.init_transactions(DEADLINE_S)
    p.begin_transaction()
    # In the future, so they stay the largest timestamps once the COMMIT marker (stamped
    # with the broker's clock) is written.
    future = int(time.time() * 1000) + 600_000
    for i in range(5):
        p.produce(topic_name, value=f"t{i}".encode(), partition=0, timestamp=future + i)
    p.flush(DEADLINE_S)

    rc, ru = IsolationLevel.READ_COMMITTED, IsolationLevel.READ_UNCOMMITTED
    b = broker.bootstrap
    assert list_offset(b, topic_name, OffsetSpec.for_timestamp(1_003), rc) == 3
    assert list_offset(b, topic_name, OffsetSpec.for_timestamp(1_003), ru) == 3
    assert list_offset(b, topic_name, OffsetSpec.for_timestamp(future + 2), ru) == 12
    assert list_offset(b, topic_name, OffsetSpec.for_timestamp(future + 2), rc) == -1
    assert list_offset(b, topic_name, OffsetSpec.max_timestamp(), ru) == 14
    assert list_offset(b, topic_name, OffsetSpec.max_timestamp(), rc) == -1
    assert list_offset(b, topic_name, OffsetSpec.latest(), rc) == 10
    assert list_offset(b, topic_name, OffsetSpec.latest(), ru) == 15

    p.commit_transaction(DEADLINE_S)
    assert list_offset(b, topic_name, OffsetSpec.for_timestamp(future + 2), rc) == 12
    assert list_offset(b, topic_name, OffsetSpec.max_timestamp(), rc) == 14
    assert list_offset(b, topic_name, OffsetSpec.latest(), rc) == 16  # after the COMMIT marker


def txn_replayed_from(broker, topic: str) -> list[int]:
    """Where each start of the broker began rebuilding `topic`-0's transactions from the
    log (0 = the log start: no usable transaction index)."""
    import re
    pat = re.compile(rf'producer state loaded topic="?{re.escape(topic)}"? partition=0 .*?txn_replayed_from=(\d+)')
    return [int(m.group(1)) for m in pat.finditer(broker.log_text())]


@pytest.mark.timeout(300)
def test_aborted_index_is_persisted_per_segment_and_rebuilt_when_damaged(broker_factory, topic_name):
    """The aborted-transaction index (`txn-index-*.txnindex`, one chunk per rolled segment)
    lets a restart read only the log after it; aborted records stay hidden to read_committed
    across a clean restart, a kill -9, and a restart with every index file damaged (rebuilt
    from the whole log)."""
    broker = broker_factory()
    kclients.create_topic(broker.bootstrap, topic_name, 1, {"internal.segment.bytes": "8192"})
    p = txn_producer(broker.bootstrap, f"tx-{topic_name}")
    p.init_transactions(DEADLINE_S)
    committed_values = []
    for t in range(12):
        p.begin_transaction()
        values = [f"t{t}-{i}-".encode() + b"x" * 200 for i in range(20)]
        for v in values:
            p.produce(topic_name, value=v)
        if t % 3 == 1:
            p.flush(DEADLINE_S)  # abort_transaction purges what is not sent yet
            p.abort_transaction(DEADLINE_S)
        else:
            p.commit_transaction(DEADLINE_S)
            committed_values += values

    def check():
        rc = read_all(broker.bootstrap, topic_name, 1, "read_committed")
        assert [v for *_, v in rc] == committed_values
        assert len(read_all(broker.bootstrap, topic_name, 1, "read_uncommitted")) == 12 * 20

    check()
    part_dir = broker.data_dir / f"{topic_name}-0"
    broker.restart("term")
    index_files = sorted(part_dir.glob("txn-index-*.txnindex"))
    assert len(index_files) >= 3, sorted(p.name for p in part_dir.iterdir())
    # A clean close wrote the index up to the log end: nothing is read from the log.
    assert txn_replayed_from(broker, topic_name)[-1] > 0
    check()

    broker.restart("kill")
    assert txn_replayed_from(broker, topic_name)[-1] > 0
    check()

    broker.stop()
    for f in part_dir.glob("txn-index-*.txnindex"):
        f.write_bytes(f.read_bytes()[:-3])
    broker.start()
    assert txn_replayed_from(broker, topic_name)[-1] == 0
    check()
