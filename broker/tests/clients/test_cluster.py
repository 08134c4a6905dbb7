"""Several `ringtail` processes as one cluster (issue 18): a Raft controller quorum, broker
registration and fencing, partitions placed over the nodes, admin requests through any node.

Real processes on 127.0.0.1, real clients (kcat, confluent-kafka, kafka-python). The fault
tests run one round in CI; `RINGTAIL_CLUSTER_ROUNDS=10` runs the long version (README).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import ConfigResource, NewPartitions, NewTopic

import kwire
from cluster_harness import SESSION_TIMEOUT_MS, Cluster, rounds, wait_for
from harness import Broker, free_port, ringtail_bin

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def cluster(tmp_path, request):
    c = Cluster(tmp_path / "cluster")
    try:
        c.start()
    except Exception:
        print(c.logs())
        c.stop()
        raise
    yield c
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(c.logs())
    c.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def cluster_info(c: Cluster, via: int) -> dict:
    """`ringtail cluster info --format json` through node `via`."""
    out = subprocess.run([str(ringtail_bin()), "cluster", "info", "--brokers", c.nodes[via].bootstrap,
                          "--format", "json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def metadata(c: Cluster, via: int, topic: str | None = None):
    return c.admin(via).list_topics(topic=topic, timeout=20)


def leaders(c: Cluster, via: int, topic: str) -> dict[int, int]:
    md = metadata(c, via, topic)
    t = md.topics[topic]
    if t.error is not None:
        raise AssertionError(f"{topic}: {t.error}")
    return {p: pm.leader for p, pm in t.partitions.items()}


def create_topic(c: Cluster, via: int, name: str, partitions: int, config: dict | None = None):
    """Create through node `via`; a retry that finds the topic created counts as done."""

    def attempt():
        fut = c.admin(via).create_topics(
            [NewTopic(name, partitions, 1, config=config or {})], request_timeout=30
        )[name]
        try:
            fut.result(timeout=60)
        except KafkaException as err:
            if err.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
        return True

    wait_for(f"creating {name} via node {via}", attempt, timeout_s=120)
    wait_for(f"{name} with {partitions} partitions on node {via}",
             lambda: len(leaders(c, via, name)) == partitions)


def produce(bootstrap: str, topic: str, records: list[tuple[int, bytes, bytes]]):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "message.timeout.ms": 60000})
    failures = []

    def done(err, _msg):
        if err is not None:
            failures.append(err)

    for partition, key, value in records:
        p.produce(topic, key=key, value=value, partition=partition, on_delivery=done)
    assert p.flush(90) == 0, "records left unsent"
    assert not failures, failures


def test_three_nodes_form_one_cluster_and_serve_every_partition(cluster):
    out = subprocess.run(["kcat", "-b", cluster.bootstrap(1), "-L", "-J"],
                         capture_output=True, timeout=60, check=True)
    brokers = json.loads(out.stdout)["brokers"]
    assert sorted(b["id"] for b in brokers) == [1, 2, 3]

    topic = unique("spread")
    create_topic(cluster, 2, topic, 6)
    # Node 3 learns the topic from the metadata log a moment later.
    wait_for("the topic on node 3", lambda: len(leaders(cluster, 3, topic)) == 6)
    md = metadata(cluster, 3, topic)
    placed = {p: (pm.leader, list(pm.replicas), list(pm.isrs)) for p, pm in md.topics[topic].partitions.items()}
    assert {leader for leader, _, _ in placed.values()} == {1, 2, 3}, placed
    for leader, replicas, isrs in placed.values():
        assert replicas == [leader] and isrs == [leader]

    # A node that does not lead a partition refuses it (clients then refresh metadata).
    partition, (leader, _, _) = next(iter(placed.items()))
    other = next(i for i in cluster.nodes if i != leader)
    with kwire.Conn(cluster.nodes[other].bootstrap) as conn:
        error, _ = conn.produce_v3(topic, partition, kwire.record_batch([(b"k", b"v")]))
    assert error == 6, "NOT_LEADER_OR_FOLLOWER expected"

    # confluent-kafka produces through one node's bootstrap; each record lands on its leader.
    records = [(p, f"k{p}-{i}".encode(), f"v{p}-{i}".encode()) for p in range(6) for i in range(50)]
    produce(cluster.nodes[3].bootstrap, topic, records)

    # kafka-python reads everything back through another node's bootstrap.
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    kc = KafkaConsumer(bootstrap_servers=cluster.nodes[1].bootstrap, enable_auto_commit=False,
                       consumer_timeout_ms=20000, auto_offset_reset="earliest")
    kc.assign([KTP(topic, p) for p in range(6)])
    seen = set()
    deadline = time.monotonic() + 90
    while len(seen) < len(records) and time.monotonic() < deadline:
        for tp, msgs in kc.poll(timeout_ms=1000).items():
            for m in msgs:
                seen.add((tp.partition, m.key, m.value))
    kc.close()
    assert seen == set(records)

    # Consumer groups: coordinators on different nodes, offsets committed through them.
    coordinators = {}
    for g in range(8):
        group = unique(f"group{g}")
        c = Consumer({"bootstrap.servers": cluster.bootstrap(2), "group.id": group,
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe([topic])
        got = 0
        deadline = time.monotonic() + 90
        while got < len(records) and time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is not None and m.error() is None:
                got += 1
        assert got == len(records), f"group {group} consumed {got}"
        c.commit(asynchronous=False)
        committed = c.committed([TopicPartition(topic, p) for p in range(6)], timeout=30)
        assert [tp.offset for tp in committed] == [50] * 6
        c.close()
        desc = cluster.admin(1).describe_consumer_groups([group])[group].result(timeout=30)
        coordinators[group] = desc.coordinator.id
    assert len(set(coordinators.values())) >= 2, coordinators

    # `ringtail cluster info`: three live brokers, partitions spread, nothing offline.
    info = cluster_info(cluster, 3)
    assert sorted(b["id"] for b in info["brokers"]) == [1, 2, 3]
    assert info["controller_id"] in (1, 2, 3)
    per_broker = {b["id"]: b for b in info["partitions_per_broker"]}
    assert all(per_broker[i]["leader"] >= 2 and not per_broker[i]["fenced"] for i in (1, 2, 3))
    assert sum(b["leader"] for b in per_broker.values()) == info["partitions"]
    assert info["offline_partitions"] == 0 and info["offline_replicas"] == 0

    # /metrics: one active controller, three registered brokers, none fenced.
    from kclients import scrape_metrics

    scraped = {i: scrape_metrics(n) for i, n in cluster.nodes.items()}
    assert sum(m[("ringtail_controller_active", "")] for m in scraped.values()) == 1
    for m in scraped.values():
        assert m[("ringtail_brokers_registered", "")] == 3
        assert m[("ringtail_brokers_fenced", "")] == 0
        assert m[("ringtail_metadata_offset", "")] > 0


def test_controller_failover_keeps_metadata_changes_working(cluster):
    earlier = None
    for r in range(rounds()):
        active = cluster.controller_id(via=1)
        survivors = [i for i in cluster.nodes if i != active]
        cluster.nodes[active].kill9()
        wait_for("a new active controller",
                 lambda: cluster.controller_id(via=survivors[0]) in survivors, timeout_s=120)
        created = []
        for via in survivors:
            name = unique(f"after-failover-r{r}-via{via}")
            create_topic(cluster, via, name, 2)
            fut = cluster.admin(via).create_partitions([NewPartitions(name, 3)])[name]
            fut.result(timeout=60)
            wait_for(f"{name} grown to 3", lambda: len(leaders(cluster, via, name)) == 3)
            res = ConfigResource("topic", name, set_config={"retention.ms": "123456"})
            cluster.admin(via).alter_configs([res])[res].result(timeout=60)
            created.append(name)
        if earlier is not None:
            cluster.admin(survivors[0]).delete_topics([earlier])[earlier].result(timeout=60)
            wait_for(f"{earlier} gone",
                     lambda: earlier not in metadata(cluster, survivors[1]).topics)
        # The killed node rejoins with everything it missed.
        cluster.nodes[active].start()
        back = active

        def caught_up():
            topics = metadata(cluster, back).topics
            return all(n in topics and len(topics[n].partitions) == 3 for n in created) and (
                earlier is None or earlier not in topics)

        wait_for(f"node {back} catching up on the metadata it missed", caught_up, timeout_s=120)
        res = ConfigResource("topic", created[0])
        configs = cluster.admin(back).describe_configs([res])[res].result(timeout=60)
        assert configs["retention.ms"].value == "123456"
        earlier = created[0]


def test_a_stopped_node_is_fenced_and_unfenced_when_it_returns(cluster):
    topic = unique("fence")
    create_topic(cluster, 1, topic, 6)
    for r in range(rounds()):
        active = cluster.controller_id(via=1)
        victim = next(i for i in cluster.nodes if i != active)
        watcher = next(i for i in cluster.nodes if i not in (victim,))
        led = [p for p, leader in leaders(cluster, watcher, topic).items() if leader == victim]
        assert led, "placement gave the victim no partition"
        os.kill(cluster.nodes[victim].pid, signal.SIGSTOP)
        try:
            def fenced():
                md = metadata(cluster, watcher, topic)
                offline = all(md.topics[topic].partitions[p].leader == -1 for p in led)
                return offline and victim not in md.brokers

            wait_for(f"node {victim} fenced (session {SESSION_TIMEOUT_MS} ms)", fenced, timeout_s=120)
            from kclients import scrape_metrics

            info = wait_for("cluster info showing the fenced broker", lambda: (
                i if (i := cluster_info(cluster, watcher))["offline_partitions"] >= len(led) else None))
            assert victim in info["fenced_brokers"], info
            assert info["offline_replicas"] >= len(led)
            wait_for("the fenced broker and its offline partitions on /metrics", lambda: (
                (m := scrape_metrics(cluster.nodes[watcher]))[("ringtail_brokers_fenced", "")] == 1
                and m[("ringtail_partitions_offline", "")] >= len(led)))
        finally:
            os.kill(cluster.nodes[victim].pid, signal.SIGCONT)

        def unfenced():
            md = metadata(cluster, watcher, topic)
            return victim in md.brokers and all(
                md.topics[topic].partitions[p].leader == victim for p in led)

        wait_for(f"node {victim} unfenced", unfenced, timeout_s=120)
        produce(cluster.bootstrap(), topic, [(led[0], b"k", f"after-{r}".encode())])


def wait_exit(node: Broker, timeout_s: float = 120.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if node.proc.poll() is not None:
            node.stopped_on_purpose = True
            return node.proc.returncode
        time.sleep(0.2)
    node.kill9()
    raise AssertionError("the node did not refuse to start:\n" + node.tail())


def test_broker_only_node_joins_and_bad_identities_refuse_to_start(cluster, tmp_path):
    settings = {"broker_session_timeout_ms": SESSION_TIMEOUT_MS, "broker_heartbeat_interval_ms": 500}
    # A node not named in the quorum joins as a broker only (a metadata learner).
    extra = Broker(tmp_path / "node5", cores="1", node_id=5, settings=settings,
                   extra_args=["--controller-addr", f"127.0.0.1:{free_port()}",
                               "--controller-quorum", cluster.quorum])
    cluster.nodes[5] = extra
    try:
        extra.start(ready_timeout_s=120)
        wait_for("node 5 listed", lambda: 5 in metadata(cluster, 1).brokers)
        topic = unique("with-five")
        create_topic(cluster, 5, topic, 8)
        wait_for("node 5 leading some of the partitions, seen from node 1",
                 lambda: 5 in set(leaders(cluster, 1, topic).values()))

        # The same id again, from another process and data dir: refused with one clear line.
        dup = Broker(tmp_path / "dup5", cores="0", node_id=5, settings=settings,
                     extra_args=["--controller-addr", f"127.0.0.1:{free_port()}",
                                 "--controller-quorum", cluster.quorum])
        dup.launch()
        assert wait_exit(dup) != 0
        assert "node id 5 is registered by another live broker" in dup.log_text()
    finally:
        extra.terminate_quietly()
        del cluster.nodes[5]

    # A quorum list that disagrees with the cluster's.
    node3 = cluster.nodes[3]
    node3.stop()
    wrong = cluster.quorum.replace(f"1@127.0.0.1:{cluster.controller_ports[1]}",
                                   f"1@127.0.0.1:{free_port()}")
    node3.extra_args = cluster.node_args(3, quorum=wrong)
    node3.launch()
    assert wait_exit(node3) != 0
    assert "disagrees with the cluster's quorum" in node3.log_text()

    # A data dir of another cluster (a lone node 3 ran on it).
    other = tmp_path / "other"
    lone = Broker(other, cores="0", node_id=3)
    lone.start()
    lone.stop()
    intruder = Broker(other, cores="0", node_id=3, settings=settings,
                      extra_args=cluster.node_args(3))
    intruder.kafka_port = node3.kafka_port
    intruder.launch()
    assert wait_exit(intruder) != 0
    assert "disagrees with the cluster's quorum" in intruder.log_text() or \
        "another cluster" in intruder.log_text()

    # With its own settings node 3 is welcome back.
    node3.extra_args = cluster.node_args(3)
    node3.start(ready_timeout_s=120)
    wait_for("node 3 listed again", lambda: 3 in metadata(cluster, 1).brokers)


def test_without_a_majority_data_flows_and_metadata_changes_are_refused(cluster):
    topic = unique("minority")
    create_topic(cluster, 1, topic, 6)
    survivor = 1
    led = wait_for("partitions led by node 1", lambda: [
        p for p, leader in leaders(cluster, survivor, topic).items() if leader == survivor])
    others = [i for i in cluster.nodes if i != survivor]
    for i in others:
        os.kill(cluster.nodes[i].pid, signal.SIGSTOP)
    try:
        # Produce and fetch on the survivor's own partitions keep working.
        records = [(p, b"k", f"minority-{p}".encode()) for p in led]
        p = Producer({"bootstrap.servers": cluster.nodes[survivor].bootstrap, "acks": "all",
                      "message.timeout.ms": 60000})
        failures = []
        for partition, key, value in records:
            p.produce(topic, key=key, value=value, partition=partition,
                      on_delivery=lambda err, _m: err and failures.append(err))
        assert p.flush(90) == 0 and not failures, failures
        with kwire.Conn(cluster.nodes[survivor].bootstrap) as conn:
            for partition in led:
                fetched = conn.fetch_v4(topic, partition, 0)
                assert fetched.error == 0 and fetched.records, partition
        # A metadata change cannot be committed: a retriable error, never a success.
        name = unique("refused")
        admin = cluster.admin(survivor)
        fut = admin.create_topics([NewTopic(name, 1, 1)], request_timeout=40)[name]
        with pytest.raises(KafkaException) as err:
            fut.result(timeout=90)
        assert err.value.args[0].retriable() or err.value.args[0].name() in (
            "REQUEST_TIMED_OUT", "NOT_CONTROLLER", "_TIMED_OUT"), err.value
    finally:
        for i in others:
            os.kill(cluster.nodes[i].pid, signal.SIGCONT)
    # Once the majority is back, metadata changes work again and nothing was half-done.
    create_topic(cluster, survivor, unique("majority-back"), 1)
