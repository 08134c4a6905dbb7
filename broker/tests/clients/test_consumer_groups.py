"""Consumer groups against a real broker: confluent-kafka and kafka-python group consumers,
committed offsets across broker restarts, cooperative-sticky and static membership, and the
`ringtail group` CLI's lag.

Timing: session timeouts are 6-10 s and every wait has a deadline of 60 s or more, so a
loaded 2-core box only makes the tests slower. Assertions are on what was consumed and
committed, never on how long it took.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from harness import ringtail_bin
from kclients import Deliveries, consumer, create_topic, flush_all, producer

DEADLINE_S = 90.0
WORKER = Path(__file__).resolve().parent / "group_worker.py"


def group_name() -> str:
    return f"g-{uuid.uuid4().hex[:10]}"


def produce_numbered(bootstrap: str, topic: str, partitions: int, per_partition: int, start: int = 0) -> None:
    prod = producer(bootstrap)
    report = Deliveries()
    for i in range(start, start + per_partition):
        for p in range(partitions):
            prod.produce(topic, f"{p}:{i}".encode(), partition=p, on_delivery=report)
        prod.poll(0)
    flush_all(prod)
    assert not report.failed, report.failed[:3]


def poll_until(consumers: list[Consumer], done, timeout_s: float = DEADLINE_S, on_msg=None) -> None:
    """Poll every consumer round-robin until `done()` is true."""
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        for c in consumers:
            msg = c.poll(0.1)
            if msg is None:
                continue
            if msg.error():
                assert msg.error().code() in (KafkaError._PARTITION_EOF,), msg.error()
                continue
            if on_msg is not None:
                on_msg(c, msg)


def leave_then_close(consumers: list[Consumer], all_revoked) -> None:
    """Unsubscribes every consumer, polls until `all_revoked()`, then closes them.

    librdkafka can block forever in `close()` when a cooperative rebalance's assignment is
    still being served at that moment (seen here: `rd_kafka_consumer_close` ->
    `rd_kafka_assign0`, waiting for a reply from a group handler that is shutting down; the
    same family as librdkafka #4527). Once every member has left and revoked what it owned,
    no rebalance is left for `close()` to serve.
    """
    for c in consumers:
        c.unsubscribe()
    deadline = time.monotonic() + DEADLINE_S
    while not all_revoked() and time.monotonic() < deadline:
        for c in consumers:
            c.poll(0.1)
    for c in consumers:
        c.close()


# -- worker processes ------------------------------------------------------------------------


class Worker:
    """One `group_worker.py` process and the log it writes."""

    def __init__(self, bootstrap: str, group: str, topic: str, logdir: Path, name: str, **opts):
        self.log = logdir / f"{name}.log"
        self.log.touch()
        cmd = [sys.executable, str(WORKER), bootstrap, group, topic, str(self.log)]
        for key, value in opts.items():
            cmd += [f"--{key.replace('_', '-')}", str(value)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def lines(self) -> list[tuple[float, str, list[str]]]:
        out = []
        for line in self.log.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2:
                out.append((float(parts[0]), parts[1], parts[2:]))
        return out

    def assignment(self) -> set[int] | None:
        assigned = None
        for _, kind, rest in self.lines():
            if kind == "A":
                assigned = {int(p) for p in rest[0].split(",")} if rest else set()
        return assigned

    def records(self) -> list[tuple[float, int, int]]:
        return [(t, int(r[0]), int(r[1])) for t, k, r in self.lines() if k == "R"]

    def commits(self) -> list[tuple[float, int, int]]:
        return [(t, int(r[0]), int(r[1])) for t, k, r in self.lines() if k == "C"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)


def wait_for(condition, what: str, timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["close", "kill9"])
def test_three_members_split_partitions_and_survivors_take_over(broker, topic_name, tmp_path, how):
    partitions, per_partition = 6, 150
    create_topic(broker.bootstrap, topic_name, partitions)
    produce_numbered(broker.bootstrap, topic_name, partitions, per_partition)
    group = group_name()
    # Slow processing so that most records are still to read when a member goes away.
    workers = [
        Worker(broker.bootstrap, group, topic_name, tmp_path, f"w{i}", delay_ms=40)
        for i in range(3)
    ]
    try:
        wait_for(
            lambda: all(w.assignment() is not None and len(w.assignment()) == 2 for w in workers),
            "3 members with 2 partitions each",
        )
        assignments = [w.assignment() for w in workers]
        assert set().union(*assignments) == set(range(partitions)), assignments
        victim, survivors = workers[0], workers[1:]
        wait_for(lambda: len(victim.records()) >= 5, "the victim to process some records")
        if how == "close":
            victim.stop()
        else:
            victim.kill()
        # The survivors take the victim's partitions (after the session timeout for kill -9).
        wait_for(
            lambda: all(w.assignment() is not None for w in survivors)
            and set().union(*[w.assignment() for w in survivors]) == set(range(partitions)),
            "the survivors to own every partition",
        )
        wait_for(
            lambda: {(p, o) for w in workers for _, p, o in w.records()}
            >= {(p, o) for p in range(partitions) for o in range(per_partition)},
            "every record to be consumed",
            timeout_s=180,
        )
    finally:
        for w in workers:
            if w.proc.poll() is None:
                w.stop()
    # At-least-once: nothing skipped; a record read twice was never committed before it was
    # read again.
    reads: dict[tuple[int, int], list[float]] = {}
    for w in workers:
        for t, p, o in w.records():
            reads.setdefault((p, o), []).append(t)
    commits = [c for w in workers for c in w.commits()]
    for (p, o), times in reads.items():
        if len(times) < 2:
            continue
        second = sorted(times)[1]
        covered = [c for c in commits if c[1] == p and c[2] > o and c[0] < second]
        assert not covered, f"record {p}/{o} committed ({covered[0]}) and then read again at {second}"


def test_two_groups_each_see_every_record(broker, topic_name):
    partitions, per_partition = 3, 50
    create_topic(broker.bootstrap, topic_name, partitions)
    produce_numbered(broker.bootstrap, topic_name, partitions, per_partition)
    seen: dict[str, set[tuple[int, int]]] = {}
    members = []
    for _ in range(2):
        g = group_name()
        c = consumer(broker.bootstrap, **{"group.id": g, "session.timeout.ms": 10000})
        c.subscribe([topic_name])
        seen[g] = set()
        members.append((g, c))
    by_consumer = {id(c): g for g, c in members}
    try:
        poll_until(
            [c for _, c in members],
            lambda: all(len(s) == partitions * per_partition for s in seen.values()),
            on_msg=lambda c, m: seen[by_consumer[id(c)]].add((m.partition(), m.offset())),
        )
    finally:
        for _, c in members:
            c.close()
    for g, s in seen.items():
        assert s == {(p, o) for p in range(partitions) for o in range(per_partition)}, g


@pytest.mark.parametrize("how", ["term", "kill"])
def test_committed_offsets_survive_broker_restart(broker_factory, topic_name, how):
    b = broker_factory(config={"group.initial.rebalance.delay.ms": 0})
    partitions = 3
    create_topic(b.bootstrap, topic_name, partitions)
    produce_numbered(b.bootstrap, topic_name, partitions, 40)
    group = group_name()
    c = consumer(b.bootstrap, **{"group.id": group, "session.timeout.ms": 10000})
    c.subscribe([topic_name])
    counts = {p: 0 for p in range(partitions)}

    def process(_c, m):
        counts[m.partition()] += 1

    poll_until([c], lambda: all(n >= 40 for n in counts.values()), on_msg=process)
    # Manual commit after processing: different positions per partition.
    wanted = {p: 10 + 7 * p for p in range(partitions)}
    c.commit(offsets=[TopicPartition(topic_name, p, o) for p, o in wanted.items()], asynchronous=False)
    c.close()
    b.restart(how)

    c = consumer(b.bootstrap, **{"group.id": group, "session.timeout.ms": 10000})
    try:
        committed = c.committed([TopicPartition(topic_name, p) for p in range(partitions)], timeout=60)
        assert {tp.partition: tp.offset for tp in committed} == wanted
        first: dict[int, int] = {}
        c.subscribe([topic_name])

        def note_first(_c, m):
            first.setdefault(m.partition(), m.offset())

        poll_until([c], lambda: len(first) == partitions, on_msg=note_first)
        assert first == wanted
    finally:
        c.close()


def test_cooperative_sticky_moves_only_what_the_new_member_takes(broker, topic_name):
    partitions = 6
    create_topic(broker.bootstrap, topic_name, partitions)
    produce_numbered(broker.bootstrap, topic_name, partitions, 20)
    group = group_name()
    events: dict[str, list[tuple[str, set[int]]]] = {}
    owned: dict[str, set[int]] = {}

    def make(name: str) -> Consumer:
        c = consumer(
            broker.bootstrap,
            **{
                "group.id": group,
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": 10000,
                "heartbeat.interval.ms": 1000,
            },
        )
        events[name] = []
        owned[name] = set()

        def on_assign(_c, tps):
            got = {tp.partition for tp in tps}
            events[name].append(("assign", got))
            owned[name] |= got

        def on_revoke(_c, tps):
            lost = {tp.partition for tp in tps}
            events[name].append(("revoke", lost))
            owned[name] -= lost

        c.subscribe([topic_name], on_assign=on_assign, on_revoke=on_revoke)
        return c

    consumed_after_join: dict[str, int] = {"a": 0, "b": 0}
    joined = {"c": False}

    def count(c, _m):
        name = names[id(c)]
        if joined["c"] and name in consumed_after_join:
            consumed_after_join[name] += 1

    a, b = make("a"), make("b")
    names = {id(a): "a", id(b): "b"}
    members = [a, b]
    try:
        poll_until(members, lambda: owned["a"] | owned["b"] == set(range(partitions))
                   and owned["a"].isdisjoint(owned["b"]) and len(owned["a"]) == 3, on_msg=count)
        before = {"a": set(owned["a"]), "b": set(owned["b"])}
        events["a"].clear()
        events["b"].clear()
        c3 = make("c")
        names[id(c3)] = "c"
        members.append(c3)
        joined["c"] = True
        produce_numbered(broker.bootstrap, topic_name, partitions, 20, start=20)
        poll_until(members, lambda: len(owned["c"]) == 2 and all(len(owned[n]) == 2 for n in "ab"),
                   on_msg=count)
        # Only the partitions the new member took were revoked; the rest never stopped.
        revoked = set().union(*[s for n in "ab" for kind, s in events[n] if kind == "revoke"])
        assert revoked == owned["c"], (revoked, owned["c"], events)
        for n in "ab":
            assert owned[n] <= before[n], (n, owned[n], before[n])
            assert not any(kind == "assign" and s for kind, s in events[n]), events[n]
        # Records produced during the rebalance reach the members that kept their partitions.
        poll_until(members, lambda: all(v > 0 for v in consumed_after_join.values()), on_msg=count)
    finally:
        leave_then_close(members, lambda: not any(owned.values()))


def test_static_member_rejoins_without_rebalance(broker, topic_name):
    partitions = 4
    create_topic(broker.bootstrap, topic_name, partitions)
    group = group_name()
    events: dict[str, list[str]] = {"s1": [], "s2": []}
    owned: dict[str, set[int]] = {"s1": set(), "s2": set()}

    def make(name: str) -> Consumer:
        c = consumer(
            broker.bootstrap,
            **{"group.id": group, "group.instance.id": name, "session.timeout.ms": 10000},
        )

        def on_assign(_c, tps):
            events[name].append("assign")
            owned[name] = {tp.partition for tp in tps}

        def on_revoke(_c, tps):
            events[name].append("revoke")
            owned[name] = set()

        c.subscribe([topic_name], on_assign=on_assign, on_revoke=on_revoke)
        return c

    s1, s2 = make("s1"), make("s2")
    try:
        poll_until([s1, s2], lambda: len(owned["s1"]) == 2 and len(owned["s2"]) == 2)
        first = set(owned["s1"])
        s2_events = list(events["s2"])
        # A static member does not leave the group on close: its partitions wait for it.
        s1.close()
        events["s1"].clear()
        s1 = make("s1")
        poll_until([s1, s2], lambda: "assign" in events["s1"])
        # Keep s2 polling a little: a rebalance would show up as a revoke there.
        poll_until([s1, s2], lambda: owned["s1"] == first)
        end = time.monotonic() + 5
        poll_until([s1, s2], lambda: time.monotonic() > end)
        assert owned["s1"] == first
        assert events["s2"] == s2_events, events["s2"]
    finally:
        s1.close()
        s2.close()


def test_kafka_python_group_consumer(broker, topic_name):
    kafka = pytest.importorskip("kafka")
    partitions, per_partition = 3, 30
    create_topic(broker.bootstrap, topic_name, partitions)
    produce_numbered(broker.bootstrap, topic_name, partitions, per_partition)
    group = group_name()
    kc = kafka.KafkaConsumer(
        topic_name,
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=10000,
        consumer_timeout_ms=1000,
    )
    seen = set()
    try:
        deadline = time.monotonic() + DEADLINE_S
        while len(seen) < partitions * per_partition:
            assert time.monotonic() < deadline, f"kafka-python read {len(seen)} records"
            for m in kc:
                seen.add((m.partition, m.offset))
        kc.commit()
    finally:
        kc.close()
    c = consumer(broker.bootstrap, **{"group.id": group})
    try:
        committed = c.committed([TopicPartition(topic_name, p) for p in range(partitions)], timeout=60)
        assert {tp.partition: tp.offset for tp in committed} == {p: per_partition for p in range(partitions)}
    finally:
        c.close()


def test_cli_describe_shows_lag(broker, topic_name):
    partitions, produced, committed = 3, 50, 20
    create_topic(broker.bootstrap, topic_name, partitions)
    produce_numbered(broker.bootstrap, topic_name, partitions, produced)
    group = group_name()
    # A standalone consumer: assign + commit with a group id, no membership.
    c = consumer(broker.bootstrap, **{"group.id": group})
    try:
        c.assign([TopicPartition(topic_name, p, 0) for p in range(partitions)])
        c.commit(offsets=[TopicPartition(topic_name, p, committed) for p in range(partitions)],
                 asynchronous=False)
    finally:
        c.close()
    out = subprocess.run(
        [str(ringtail_bin()), "group", "describe", group, "--bootstrap", broker.bootstrap],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()[1:] if line.strip()]
    lag = {int(r[2]): (int(r[3]), int(r[4]), int(r[5])) for r in rows if r[1] == topic_name}
    assert lag == {p: (committed, produced, produced - committed) for p in range(partitions)}, out.stdout
    listed = subprocess.run(
        [str(ringtail_bin()), "group", "list", "--bootstrap", broker.bootstrap],
        capture_output=True, text=True, timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert group in listed.stdout.split()


def test_bad_input_gets_kafka_errors(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 1)
    group = group_name()
    c = consumer(broker.bootstrap, **{"group.id": group})
    try:
        with pytest.raises(KafkaException) as err:
            c.commit(offsets=[TopicPartition(f"{topic_name}-missing", 0, 5)], asynchronous=False)
        assert err.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, err.value
    finally:
        c.close()
    # Clients may not write the offsets topic.
    prod = producer(broker.bootstrap)
    report = Deliveries()
    prod.produce("__consumer_offsets", b"x", key=b"k", partition=0, on_delivery=report)
    prod.flush(60)
    assert report.failed and "INVALID_TOPIC" in report.failed[0][0].upper().replace(" ", "_"), report.failed


def test_find_coordinator_batched_keys_and_empty_group(broker):
    """FindCoordinator v4 (KIP-699 batched keys) answers every key with this broker; v0
    accepts the empty group id as Kafka does."""
    import kwire

    def compact_str(r: kwire.Reader) -> str | None:
        n = r.uvarint()
        return None if n == 0 else r.take(n - 1).decode()

    keys = [group_name(), group_name(), ""]
    body = kwire.i8(0) + kwire.uvarint(len(keys) + 1) + b"".join(kwire.compact_string(k) for k in keys)
    body += kwire.uvarint(0)
    host, port = broker.bootstrap.rsplit(":", 1)
    deadline = time.monotonic() + DEADLINE_S
    with kwire.Conn(broker.bootstrap) as conn:
        while True:
            r = conn.request(10, 4, body, flexible_request=True, flexible_response=True)
            r.i32()  # throttle
            answers = []
            for _ in range(r.uvarint() - 1):
                key = compact_str(r)
                node, got_host, got_port, code = r.i32(), compact_str(r), r.i32(), r.i16()
                compact_str(r)  # message
                r.skip_tagged_fields()
                answers.append((key, node, got_host, got_port, code))
            # 14: COORDINATOR_LOAD_IN_PROGRESS right after start-up.
            if all(a[4] == 0 for a in answers) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert answers == [(k, 0, host, int(port), 0) for k in keys], answers
        r = conn.request(10, 0, kwire.string(""))
        assert r.i16() == 0
        assert (r.i32(), r.string(), r.i32()) == (0, host, int(port))


def test_admin_client_lists_describes_and_deletes_groups(broker, topic_name):
    from confluent_kafka import ConsumerGroupTopicPartitions
    from confluent_kafka.admin import AdminClient

    create_topic(broker.bootstrap, topic_name, 2)
    produce_numbered(broker.bootstrap, topic_name, 2, 5)
    group = group_name()
    c = consumer(broker.bootstrap, **{"group.id": group, "session.timeout.ms": 10000,
                                      "client.id": "admin-test-client"})
    c.subscribe([topic_name])
    got = []
    poll_until([c], lambda: len(got) >= 10, on_msg=lambda _c, m: got.append(m))
    c.commit(asynchronous=False)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    try:
        described = admin.describe_consumer_groups([group], request_timeout=60)[group].result(timeout=60)
        assert described.group_id == group
        assert len(described.members) == 1
        assert described.members[0].client_id == "admin-test-client"
        assigned = {tp.partition for tp in described.members[0].assignment.topic_partitions}
        assert assigned == {0, 1}
        listed = admin.list_consumer_groups(request_timeout=60).result(timeout=60)
        assert group in {g.group_id for g in listed.valid}
        offsets = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, [TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)])]
        )[group].result(timeout=60)
        assert {tp.partition: tp.offset for tp in offsets.topic_partitions} == {0: 5, 1: 5}
        # A group with a member cannot be deleted (NON_EMPTY_GROUP); once empty it can.
        with pytest.raises(KafkaException) as err:
            admin.delete_consumer_groups([group], request_timeout=60)[group].result(timeout=60)
        assert err.value.args[0].code() == KafkaError.NON_EMPTY_GROUP
    finally:
        c.close()
    admin.delete_consumer_groups([group], request_timeout=60)[group].result(timeout=60)
    c = consumer(broker.bootstrap, **{"group.id": group})
    try:
        committed = c.committed([TopicPartition(topic_name, 0)], timeout=60)
        assert committed[0].offset < 0, committed  # deleted with the group
    finally:
        c.close()


@pytest.mark.slow
def test_offsets_of_empty_groups_expire(broker_factory, topic_name):
    b = broker_factory(config={"offsets.retention.minutes": 1, "offsets.retention.check.interval.ms": 1000})
    create_topic(b.bootstrap, topic_name, 1)
    group = group_name()
    c = consumer(b.bootstrap, **{"group.id": group})
    try:
        c.commit(offsets=[TopicPartition(topic_name, 0, 3)], asynchronous=False)
        assert c.committed([TopicPartition(topic_name, 0)], timeout=60)[0].offset == 3
        deadline = time.monotonic() + 240
        while c.committed([TopicPartition(topic_name, 0)], timeout=60)[0].offset == 3:
            assert time.monotonic() < deadline, "offset still committed 4 minutes after a 1 minute retention"
            time.sleep(2)
    finally:
        c.close()
