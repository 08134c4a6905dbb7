"""Partition replication (issue 19) with real clients against three real `ringtail` processes:
the ISR and min.insync.replicas as a producer sees them, the high watermark as a consumer
sees it, group coordinators moving with leadership, leader epochs (OffsetForLeaderEpoch,
ListOffsets), and preferred-leader election.

The fault suite with the Jepsen-style checker is `test_replication_faults.py`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

import kwire
from cluster_harness import Cluster, wait_for
from harness import ringtail_bin

pytestmark = pytest.mark.timeout(600)

LAG_MAX_MS = 3000
API_LIST_OFFSETS = 2
API_OFFSET_FOR_LEADER_EPOCH = 23


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    for node in c.nodes.values():
        node.config = {"replica.lag.time.max.ms": LAG_MAX_MS}
    c.start()
    yield c
    c.stop()


def create_topic(c: Cluster, name: str, partitions: int, rf: int, config: dict | None = None):
    def attempt():
        fut = c.admin().create_topics([NewTopic(name, partitions, rf, config=config or {})],
                                      request_timeout=30)[name]
        try:
            fut.result(timeout=60)
        except KafkaException as err:
            if err.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
        return True

    wait_for(f"creating {name}", attempt, timeout_s=120)
    wait_for(f"{name} led everywhere", lambda: all(
        len(isr_of(c, name, via)) == partitions for via in c.nodes if c.nodes[via].alive()))


def isr_of(c: Cluster, topic: str, via: int | None = None) -> dict[int, tuple[int, list[int], list[int]]]:
    """partition -> (leader, replicas, isr) as node `via` (or any live node) reports it."""
    ids = (via,) if via is not None else tuple(i for i, n in c.nodes.items() if n.alive())
    md = c.admin(*ids).list_topics(topic, timeout=15)
    t = md.topics[topic]
    if t.error is not None:
        raise AssertionError(f"{topic}: {t.error}")
    return {p: (pm.leader, list(pm.replicas), sorted(pm.isrs)) for p, pm in t.partitions.items()
            if pm.leader >= 0}


def produce(bootstrap: str, topic: str, values: list[bytes], acks: str, timeout_ms: int = 60000,
            partition: int = 0) -> tuple[dict[int, bytes], list[KafkaError]]:
    """Produces `values`; returns what was acknowledged (offset -> value) and the errors."""
    acked: dict[int, bytes] = {}
    errors: list[KafkaError] = []

    def done(err, msg):
        if err is None:
            acked[msg.offset()] = msg.value()
        else:
            errors.append(err)

    p = Producer({"bootstrap.servers": bootstrap, "acks": acks, "enable.idempotence": acks == "all",
                  "message.timeout.ms": timeout_ms, "linger.ms": 5})
    for v in values:
        p.produce(topic, value=v, partition=partition, on_delivery=done)
    p.flush(timeout_ms / 1000 + 30)
    return acked, errors


def read_all(bootstrap: str, topic: str, partition: int, expect: int, timeout_s: float = 60.0) -> dict[int, bytes]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.monotonic_ns()}",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, partition, 0)])
    seen: dict[int, bytes] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and len(seen) < expect:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            seen[m.offset()] = m.value()
    finally:
        c.close()
    return seen


def high_watermark(bootstrap: str, topic: str, partition: int) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "hw-probe"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=15)[1]
    finally:
        c.close()


def test_acks_all_needs_min_insync_replicas_and_consumers_stop_at_the_high_watermark(cluster):
    topic = "isr-min"
    # min.insync.replicas=3: one follower out is enough to refuse acks=all, and the other two
    # nodes keep the controller quorum (stopping two of three would stop metadata changes).
    create_topic(cluster, topic, 1, 3, {"min.insync.replicas": "3"})
    leader, replicas, isr = isr_of(cluster, topic)[0]
    assert sorted(replicas) == [1, 2, 3] and isr == [1, 2, 3]
    acked, errors = produce(cluster.bootstrap(), topic, [b"a%d" % i for i in range(200)], "all")
    assert not errors and len(acked) == 200

    followers = [r for r in replicas if r != leader][:1]
    for f in followers:
        cluster.nodes[f].proc.send_signal(signal.SIGSTOP)
    try:
        # The follower stops fetching: it is fenced (session timeout) or dropped by the leader
        # (replica.lag.time.max.ms), whichever comes first.
        wait_for("the ISR to shrink", lambda: len(isr_of(cluster, topic, leader)[0][2]) == 2,
                 timeout_s=120)
        # Operators see it: the CLI and the leader's /metrics.
        out = subprocess.run([str(ringtail_bin()), "cluster", "info", "--brokers",
                              cluster.nodes[leader].bootstrap, "--format", "json"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["under_replicated_partitions"] >= 1

        def metric(name: str) -> float:
            text = urllib.request.urlopen(cluster.nodes[leader].admin_url + "/metrics",
                                          timeout=10).read().decode()
            return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith(name + "{"))

        wait_for("the under-replicated gauge", lambda: metric("ringtail_under_replicated_partitions") >= 1,
                 timeout_s=30)
        assert metric("ringtail_under_min_isr_partitions") >= 1
        boot = cluster.nodes[leader].bootstrap
        acked_all, errors_all = produce(boot, topic, [b"x"], "all", timeout_ms=5000)
        assert not acked_all and errors_all, "acks=all must fail below min.insync.replicas"
        assert errors_all[0].code() in (KafkaError.NOT_ENOUGH_REPLICAS, KafkaError._MSG_TIMED_OUT), errors_all
        # acks=1 is written but, below min.insync.replicas (KIP-966), not visible yet.
        hw_before = high_watermark(boot, topic, 0)
        acked_one, errors_one = produce(boot, topic, [b"b%d" % i for i in range(50)], "1")
        assert not errors_one and len(acked_one) == 50
        assert min(acked_one) >= hw_before
        assert high_watermark(boot, topic, 0) == hw_before
        assert len(read_all(boot, topic, 0, expect=hw_before + 1, timeout_s=5)) == hw_before
    finally:
        for f in followers:
            cluster.nodes[f].proc.send_signal(signal.SIGCONT)
    # The followers catch up and rejoin; the acks=1 records become visible.
    wait_for("the ISR to grow back", lambda: isr_of(cluster, topic)[0][2] == [1, 2, 3], timeout_s=180)
    wait_for("the high watermark to pass the acks=1 records",
             lambda: high_watermark(cluster.bootstrap(), topic, 0) >= max(acked_one) + 1, timeout_s=120)
    seen = read_all(cluster.bootstrap(), topic, 0, expect=250)
    assert len(seen) == 250
    for offset, value in list(acked.items()) + list(acked_one.items()):
        assert seen.get(offset) == value, (offset, value, seen.get(offset))


def test_a_group_coordinator_moves_with_leadership_and_keeps_committed_offsets(cluster):
    # __consumer_offsets is replicated to every node (RF = min(3, brokers)).
    wait_for("__consumer_offsets replicated",
             lambda: all(len(r) == 3 for _, r, _ in isr_of(cluster, "__consumer_offsets").values()),
             timeout_s=120)
    topic = "moving-groups"
    create_topic(cluster, topic, 1, 3, {"min.insync.replicas": "2"})
    acked, errors = produce(cluster.bootstrap(), topic, [b"m%d" % i for i in range(100)], "all")
    assert not errors
    group = "mover"
    c = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": group,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, 0, 0)])
    got = 0
    deadline = time.monotonic() + 60
    while got < 40 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got += 1
    c.commit(offsets=[TopicPartition(topic, 0, 40)], asynchronous=False)
    c.close()
    # Kill the coordinator's node.
    admin = cluster.admin()
    desc = admin.describe_consumer_groups([group], request_timeout=15)[group].result(timeout=30)
    coordinator = desc.coordinator.id
    cluster.nodes[coordinator].proc.send_signal(signal.SIGKILL)
    cluster.nodes[coordinator].proc.wait()
    others = [i for i in cluster.nodes if i != coordinator]

    def committed():
        c2 = Consumer({"bootstrap.servers": cluster.bootstrap(*others), "group.id": group,
                       "enable.auto.commit": False})
        try:
            offset = c2.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
            return offset if offset >= 0 else None
        finally:
            c2.close()

    assert wait_for("the committed offset through the new coordinator", committed, timeout_s=120) == 40
    cluster.nodes[coordinator].start()


def test_leader_epochs_offset_for_leader_epoch_and_preferred_election(cluster):
    topic = "epochs"
    create_topic(cluster, topic, 1, 3, {"min.insync.replicas": "2"})
    leader, replicas, _ = isr_of(cluster, topic)[0]
    assert leader == replicas[0]
    acked, errors = produce(cluster.bootstrap(), topic, [b"e%d" % i for i in range(30)], "all")
    assert not errors and len(acked) == 30
    cluster.nodes[leader].proc.send_signal(signal.SIGKILL)
    cluster.nodes[leader].proc.wait()
    others = [i for i in cluster.nodes if i != leader]
    new_leader = wait_for("a new leader", lambda: (isr_of(cluster, topic)[0][0]
                                                   if isr_of(cluster, topic)[0][0] != leader else None),
                          timeout_s=120)
    acked2, errors2 = produce(cluster.bootstrap(*others), topic, [b"f%d" % i for i in range(20)], "all")
    assert not errors2 and min(acked2) == 30

    # OffsetForLeaderEpoch v2 on the new leader: epoch 0 ended where epoch 1 began (30); a
    # stale current leader epoch is fenced.
    with kwire.Conn(cluster.nodes[new_leader].bootstrap) as conn:
        def epoch_end(current: int, epoch: int):
            body = (kwire.array([kwire.string(topic) + kwire.array([
                kwire.i32(0) + kwire.i32(current) + kwire.i32(epoch)])]))
            r = conn.request(API_OFFSET_FOR_LEADER_EPOCH, 2, body)
            r.i32()  # throttle
            topics = r.array(lambda r: (r.string(), r.array(lambda r: (r.i16(), r.i32(), r.i32(), r.i64()))))
            return topics[0][1][0]

        err, part, epoch, end = epoch_end(1, 0)
        assert (err, part, epoch, end) == (0, 0, 0, 30)
        err, _, epoch, end = epoch_end(1, 1)
        assert err == 0 and epoch == 1 and end == 50
        assert epoch_end(0, 0)[0] == 74  # FENCED_LEADER_EPOCH
        assert epoch_end(7, 0)[0] == 75  # UNKNOWN_LEADER_EPOCH

    # The preferred replica comes back; ElectLeaders (preferred) moves leadership back to it.
    cluster.nodes[leader].start()
    wait_for("the old leader back in sync", lambda: isr_of(cluster, topic)[0][2] == [1, 2, 3], timeout_s=180)
    from confluent_kafka import ElectionType

    def elect():
        # (confluent-kafka 2.16 rejects its own timeout keyword arguments here.)
        res = cluster.admin().elect_leaders(ElectionType.PREFERRED,
                                           [TopicPartition(topic, 0)]).result(timeout=60)
        err = next(iter(res.values()))
        return err is None or err.args[0].code() == KafkaError.ELECTION_NOT_NEEDED
    wait_for("the preferred election", elect, timeout_s=60)
    assert wait_for("the preferred replica leading", lambda: isr_of(cluster, topic)[0][0] == leader, timeout_s=60)
    seen = read_all(cluster.bootstrap(), topic, 0, expect=50)
    for offset, value in list(acked.items()) + list(acked2.items()):
        assert seen.get(offset) == value


API_ALTER_PARTITION_REASSIGNMENTS = 45
API_LIST_PARTITION_REASSIGNMENTS = 46


def compact_array(items: list[bytes] | None) -> bytes:
    return kwire.uvarint(0) if items is None else kwire.uvarint(len(items) + 1) + b"".join(items)


def compact_nullable_string(r: kwire.Reader) -> str | None:
    n = r.uvarint()
    return None if n == 0 else r.take(n - 1).decode()


def alter_reassignments(conn: kwire.Conn, topic: str, partition: int, replicas: list[int] | None):
    """AlterPartitionReassignments v0 (flexible): [(partition, error code)] of the topic."""
    body = (kwire.i32(30000)
            + compact_array([kwire.compact_string(topic) + compact_array([
                kwire.i32(partition)
                + compact_array(None if replicas is None else [kwire.i32(b) for b in replicas])
                + kwire.uvarint(0)]) + kwire.uvarint(0)])
            + kwire.uvarint(0))
    r = conn.request(API_ALTER_PARTITION_REASSIGNMENTS, 0, body, flexible_request=True,
                     flexible_response=True)
    r.i32()  # throttle
    top_error = r.i16()
    compact_nullable_string(r)

    def partition(r):
        index, code = r.i32(), r.i16()
        compact_nullable_string(r)
        r.skip_tagged_fields()
        return index, code

    def topic_result(r):
        compact_nullable_string(r)
        parts = r.compact_array(partition)
        r.skip_tagged_fields()
        return parts

    topics = r.compact_array(topic_result)
    return top_error, [p for parts in topics for p in parts]


def list_reassignments(conn: kwire.Conn) -> dict[tuple[str, int], tuple[list[int], list[int], list[int]]]:
    """ListPartitionReassignments v0 (flexible), every partition."""
    body = kwire.i32(30000) + kwire.uvarint(0) + kwire.uvarint(0)
    r = conn.request(API_LIST_PARTITION_REASSIGNMENTS, 0, body, flexible_request=True,
                     flexible_response=True)
    r.i32()
    assert r.i16() == 0
    compact_nullable_string(r)
    out = {}

    def partition(r):
        index = r.i32()
        ids = [r.compact_array(lambda r: r.i32()) for _ in range(3)]
        r.skip_tagged_fields()
        return index, ids

    def topic(r):
        name = compact_nullable_string(r)
        for index, ids in r.compact_array(partition):
            out[(name, index)] = tuple(ids)
        r.skip_tagged_fields()

    r.compact_array(topic)
    return out


def test_a_reassignment_moves_a_replica_after_the_new_one_caught_up(cluster):
    topic = "moving"
    create_topic(cluster, topic, 1, 2, {"min.insync.replicas": "1"})
    leader, replicas, isr = isr_of(cluster, topic)[0]
    acked, errors = produce(cluster.bootstrap(), topic, [b"r%d" % i for i in range(500)], "all")
    assert not errors and len(acked) == 500
    newcomer = next(i for i in cluster.nodes if i not in replicas)
    leaving = leader
    target = [newcomer] + [r for r in replicas if r != leaving]
    with kwire.Conn(cluster.nodes[leader].bootstrap) as conn:
        # Bad targets are refused with Kafka's codes.
        assert alter_reassignments(conn, topic, 0, [99])[1] == [(0, 39)]  # INVALID_REPLICA_ASSIGNMENT
        assert alter_reassignments(conn, topic, 0, None)[1] == [(0, 85)]  # NO_REASSIGNMENT_IN_PROGRESS
        assert alter_reassignments(conn, topic, 0, target) == (0, [(0, 0)])
        ongoing = list_reassignments(conn)
    # Either still in progress (the newcomer catching up) or already done.
    if (topic, 0) in ongoing:
        _, adding, removing = ongoing[(topic, 0)]
        assert adding == [newcomer] and removing == [leaving]
    done = wait_for("the reassignment to complete", lambda: (
        isr_of(cluster, topic)[0] if isr_of(cluster, topic)[0][1] == target else None), timeout_s=120)
    new_leader, new_replicas, new_isr = done
    assert new_replicas == target and sorted(new_isr) == sorted(target) and new_leader in target
    with kwire.Conn(cluster.nodes[newcomer].bootstrap) as conn:
        assert (topic, 0) not in list_reassignments(conn)
    # The data moved with it; the old replica's files are gone.
    seen = read_all(cluster.bootstrap(), topic, 0, expect=500)
    assert all(seen.get(o) == v for o, v in acked.items())
    old_dir = cluster.nodes[leaving].data_dir / f"{topic}-0"
    wait_for("the removed replica's data deleted", lambda: not old_dir.exists(), timeout_s=60)
    assert (cluster.nodes[newcomer].data_dir / f"{topic}-0").exists()
