"""The `ringtail` operator CLI (topic, produce, consume, group, cluster) against a real broker,
cross-checked with confluent-kafka: what the CLI writes a real client reads, and what a real
client writes or commits the CLI shows."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest

import kwire
from confluent_kafka import TopicPartition
from confluent_kafka.admin import ConfigResource

from harness import ringtail_bin
from kclients import (
    DEADLINE_S,
    Deliveries,
    admin,
    consume_all,
    consumer,
    create_topic,
    flush_all,
    producer,
    wait_partitions,
)

CLI_TIMEOUT_S = 120


def cli(broker, *args: str, stdin: str | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    """Runs `ringtail ARGS --brokers BOOTSTRAP`; with ok=True it must exit 0."""
    out = subprocess.run(
        [str(ringtail_bin()), *args, "--brokers", broker.bootstrap],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )
    if ok:
        assert out.returncode == 0, f"ringtail {' '.join(args)}: {out.stderr}"
        # Piped: no progress and no chatter on stderr.
        assert out.stderr == "", out.stderr
    return out


def cli_json(broker, *args: str, stdin: str | None = None):
    return json.loads(cli(broker, *args, "--format", "json", stdin=stdin).stdout)


def assert_fails(out: subprocess.CompletedProcess, needle: str) -> None:
    """A non-zero exit with one line on stderr naming `needle`."""
    assert out.returncode != 0, out.stdout
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert needle in lines[0], out.stderr


def group_name() -> str:
    return f"cli-{uuid.uuid4().hex[:10]}"


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    c = consumer(bootstrap, **{"group.id": group})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=DEADLINE_S)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


@pytest.mark.timeout(180)
def test_topic_create_list_describe_delete(broker, topic_name):
    out = cli(broker, "topic", "create", topic_name, "-p", "3", "-c", "retention.ms=7200000")
    assert topic_name in out.stdout and "CREATED" in out.stdout
    wait_partitions(broker.bootstrap, topic_name, 3)

    assert_fails(cli(broker, "topic", "create", topic_name, "-p", "3", ok=False), "TOPIC_ALREADY_EXISTS")

    listed = {t["name"]: t for t in cli_json(broker, "topic", "list")}
    assert listed[topic_name]["partitions"] == 3, listed
    assert "__consumer_offsets" not in listed
    assert topic_name in cli(broker, "topic", "list").stdout.split()

    described = cli_json(broker, "topic", "describe", topic_name)
    assert [p["partition"] for p in described["partitions"]] == [0, 1, 2]
    md = admin(broker.bootstrap).list_topics(topic=topic_name, timeout=DEADLINE_S).topics[topic_name]
    for p in described["partitions"]:
        assert p["leader"] == md.partitions[p["partition"]].leader
        assert p["replicas"] == list(md.partitions[p["partition"]].replicas)
        assert p["isr"] == list(md.partitions[p["partition"]].isrs)
        assert (p["log_start_offset"], p["log_end_offset"]) == (0, 0)
    table = cli(broker, "topic", "describe", topic_name).stdout
    assert "LOG-END-OFFSET" in table and f"NAME        {topic_name}" in table
    # Sizes come from DescribeLogDirs: an empty partition takes 0 bytes, one batch its bytes.
    assert [p["size_bytes"] for p in described["partitions"]] == [0, 0, 0]
    batch = kwire.record_batch([(b"k", b"v" * 100)])
    with kwire.Conn(broker.bootstrap) as conn:
        error, _ = conn.produce_v3(topic_name, 1, batch)
    assert error == 0
    described = cli_json(broker, "topic", "describe", topic_name)
    assert [p["size_bytes"] for p in described["partitions"]] == [0, len(batch), 0]
    assert "SIZE" in cli(broker, "topic", "describe", topic_name).stdout

    out = cli(broker, "topic", "delete", topic_name)
    assert "DELETED" in out.stdout
    deadline = time.monotonic() + DEADLINE_S
    while topic_name in admin(broker.bootstrap).list_topics(timeout=DEADLINE_S).topics:
        assert time.monotonic() < deadline, "topic still listed after delete"
        time.sleep(0.2)
    assert_fails(cli(broker, "topic", "describe", topic_name, ok=False), "UNKNOWN_TOPIC_OR_PARTITION")
    assert_fails(cli(broker, "topic", "delete", topic_name, ok=False), "UNKNOWN_TOPIC_OR_PARTITION")


@pytest.mark.timeout(180)
def test_topic_configs_and_add_partitions(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 1)
    cli(broker, "topic", "alter-config", topic_name, "--set", "retention.ms=123456", "--set", "cleanup.policy=compact")
    res = ConfigResource(ConfigResource.Type.TOPIC, topic_name)
    client = admin(broker.bootstrap)  # referenced until the future resolves
    configs = client.describe_configs([res])[res].result(timeout=DEADLINE_S)
    assert configs["retention.ms"].value == "123456"
    assert configs["cleanup.policy"].value == "compact"

    shown = {c["name"]: c for c in cli_json(broker, "topic", "describe-config", topic_name)}
    assert shown["retention.ms"]["value"] == "123456"
    assert shown["retention.ms"]["source"] == "DYNAMIC_TOPIC_CONFIG"
    assert shown["segment.bytes"]["source"] != "DYNAMIC_TOPIC_CONFIG"

    cli(broker, "topic", "alter-config", topic_name, "--delete", "cleanup.policy")
    shown = {c["name"]: c for c in cli_json(broker, "topic", "describe-config", topic_name)}
    assert shown["cleanup.policy"]["value"] == "delete"

    assert_fails(
        cli(broker, "topic", "alter-config", topic_name, "--set", "retention.ms=soon", ok=False),
        "INVALID_CONFIG",
    )
    assert_fails(
        cli(broker, "topic", "describe-config", f"{topic_name}-missing", ok=False),
        "UNKNOWN_TOPIC_OR_PARTITION",
    )

    assert cli_json(broker, "topic", "add-partitions", topic_name, "-n", "2")["partitions"] == 3
    wait_partitions(broker.bootstrap, topic_name, 3)
    assert len(cli_json(broker, "topic", "describe", topic_name)["partitions"]) == 3


@pytest.mark.timeout(240)
@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_cli_produce_confluent_consume(broker, topic_name, codec):
    partitions = 4
    create_topic(broker.bootstrap, topic_name, partitions)
    lines = [f"key-{i}:value {i}: with colon" for i in range(200)] + ["no separator here"]
    delivered = [
        json.loads(line)
        for line in cli(
            broker, "produce", topic_name, "-k", ":", "-H", "app=cli", "-H", "n=1=2",
            "-z", codec, "-v", "--format", "json", stdin="\n".join(lines) + "\n",
        ).stdout.splitlines()
    ]
    assert len(delivered) == len(lines)
    got = consume_all(broker.bootstrap, topic_name, partitions)
    by_pos = {(m.partition, m.offset): m for msgs in got.values() for m in msgs}
    assert len(by_pos) == len(lines)
    for line, d in zip(lines, delivered):
        m = by_pos[(d["partition"], d["offset"])]
        key, sep, value = line.partition(":")
        if sep:
            assert (m.key, m.value) == (key.encode(), value.encode())
        else:
            assert (m.key, m.value) == (None, line.encode())
        assert m.headers == (("app", b"cli"), ("n", b"1=2"))

    # Keyed records land where the Java client and librdkafka's murmur2_random put them.
    twin = f"{topic_name}-twin"
    create_topic(broker.bootstrap, twin, partitions)
    prod = producer(broker.bootstrap, partitioner="murmur2_random")
    report = Deliveries()
    for i in range(200):
        prod.produce(twin, f"value {i}".encode(), key=f"key-{i}".encode(), on_delivery=report)
    flush_all(prod)
    theirs = {m.key: m.partition for m in report.ok}
    ours = {by_pos[(d["partition"], d["offset"])].key: d["partition"] for d in delivered[:200]}
    assert ours == theirs


@pytest.mark.timeout(180)
def test_cli_produce_acks_and_partition(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 3)
    out = cli(broker, "produce", topic_name, "-p", "2", "--acks", "1", "-v", stdin="a\nb\n")
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    assert rows == [[topic_name, "2", "0"], [topic_name, "2", "1"]]
    cli(broker, "produce", topic_name, "-p", "1", "--acks", "0", stdin="c\n")
    # acks=0 reports nothing; the record still arrives.
    got = consume_all(broker.bootstrap, topic_name, 3, until={0: 0, 1: 1, 2: 2})
    assert [m.value for m in got[1]] == [b"c"]
    assert [m.value for m in got[2]] == [b"a", b"b"]
    assert_fails(cli(broker, "produce", f"{topic_name}-missing", stdin="x\n", ok=False), "UNKNOWN_TOPIC_OR_PARTITION")
    assert_fails(cli(broker, "produce", topic_name, "-z", "brotli", stdin="x\n", ok=False), "--compression")


@pytest.mark.timeout(180)
def test_confluent_produce_cli_consume(broker, topic_name):
    partitions = 2
    create_topic(broker.bootstrap, topic_name, partitions)
    prod = producer(broker.bootstrap, **{"compression.type": "lz4"})
    report = Deliveries()
    for i in range(50):
        prod.produce(topic_name, f"v{i}".encode(), key=f"k{i}".encode(), partition=i % partitions,
                     headers=[("h", f"x{i}".encode())], on_delivery=report)
    flush_all(prod)
    assert not report.failed
    sent = {(m.partition, m.offset): m for m in report.ok}

    records = [json.loads(line) for line in cli(broker, "consume", topic_name, "-e", "--format", "json").stdout.splitlines()]
    assert len(records) == 50
    for r in records:
        m = sent[(r["partition"], r["offset"])]
        i = int(m.value.decode()[1:])
        assert (r["key"], r["value"], r["headers"]) == (f"k{i}", f"v{i}", {"h": f"x{i}"})
        assert r["timestamp"] == m.timestamp_ms

    text = cli(broker, "consume", topic_name, "-p", "1", "-o", "3", "-n", "2",
               "--format", r"%k|%v|%h|%p|%o|%t|%T").stdout
    expected = [sent[(1, o)] for o in (3, 4)]
    assert text.splitlines() == [
        f"{m.key.decode()}|{m.value.decode()}|h=x{m.value.decode()[1:]}|1|{m.offset}|{m.timestamp_ms}|{topic_name}"
        for m in expected
    ]
    # @timestamp: the first record at or after it, per partition.
    cut = sent[(0, 10)].timestamp_ms
    first = cli(broker, "consume", topic_name, "-p", "0", "-o", f"@{cut}", "-n", "1", "--format", "%o").stdout
    assert int(first) <= 10 and sent[(0, int(first))].timestamp_ms >= cut
    # latest + exit-at-end: nothing.
    assert cli(broker, "consume", topic_name, "-o", "latest", "-e").stdout == ""
    assert_fails(cli(broker, "consume", f"{topic_name}-missing", "-e", ok=False), "UNKNOWN_TOPIC_OR_PARTITION")


@pytest.mark.timeout(240)
def test_group_consume_commit_and_reset_offsets(broker, topic_name):
    partitions = 3
    create_topic(broker.bootstrap, topic_name, partitions)
    prod = producer(broker.bootstrap)
    for i in range(60):
        prod.produce(topic_name, f"v{i}".encode(), partition=i % partitions)
    flush_all(prod)
    group = group_name()

    # The CLI's standalone group consumer commits what it printed.
    out = cli(broker, "consume", topic_name, "-g", group, "-p", "0", "-n", "5", "--format", "%o")
    assert out.stdout.split() == ["0", "1", "2", "3", "4"]
    assert committed(broker.bootstrap, group, topic_name, 1) == {0: 5}
    out = cli(broker, "consume", topic_name, "-g", group, "-p", "0", "-n", "2", "--format", "%o")
    assert out.stdout.split() == ["5", "6"]
    cli(broker, "consume", topic_name, "-g", group, "-e", "--format", "%o")
    assert committed(broker.bootstrap, group, topic_name, partitions) == {p: 20 for p in range(partitions)}
    rows = [r for r in cli_json(broker, "group", "describe", group)]
    assert {(r["partition"], r["committed_offset"], r["lag"]) for r in rows} == {(p, 20, 0) for p in range(partitions)}

    # Resets, each checked with confluent-kafka's committed() and by what it then reads.
    dry = cli_json(broker, "group", "reset-offsets", group, "--topic", topic_name, "--to-earliest", "--dry-run")
    assert {p["new_offset"] for p in dry["partitions"]} == {0}
    assert committed(broker.bootstrap, group, topic_name, partitions) == {p: 20 for p in range(partitions)}

    cli(broker, "group", "reset-offsets", group, "--topic", topic_name, "--to-earliest")
    assert committed(broker.bootstrap, group, topic_name, partitions) == {p: 0 for p in range(partitions)}
    cli(broker, "group", "reset-offsets", group, "--topic", f"{topic_name}:1,2", "--to-offset", "7")
    assert committed(broker.bootstrap, group, topic_name, partitions) == {0: 0, 1: 7, 2: 7}
    cli(broker, "group", "reset-offsets", group, "--topic", topic_name, "--shift-by", "-3")
    assert committed(broker.bootstrap, group, topic_name, partitions) == {0: 0, 1: 4, 2: 4}
    cli(broker, "group", "reset-offsets", group, "--all-topics", "--to-offset", "1000")
    assert committed(broker.bootstrap, group, topic_name, partitions) == {p: 20 for p in range(partitions)}
    cli(broker, "group", "reset-offsets", group, "--topic", topic_name, "--to-datetime", "1970-01-01T00:00:00Z")
    assert committed(broker.bootstrap, group, topic_name, partitions) == {p: 0 for p in range(partitions)}
    cli(broker, "group", "reset-offsets", group, "--topic", f"{topic_name}:2", "--to-latest")

    # What a group member of confluent-kafka reads next starts there.
    c = consumer(broker.bootstrap, **{"group.id": group, "auto.offset.reset": "latest"})
    try:
        c.assign([TopicPartition(topic_name, p) for p in range(partitions)])
        seen: dict[int, int] = {}
        deadline = time.monotonic() + DEADLINE_S
        while len(seen) < 2:
            assert time.monotonic() < deadline, seen
            for m in c.consume(num_messages=100, timeout=0.5):
                assert m.error() is None, m.error()
                seen.setdefault(m.partition(), m.offset())
        assert seen == {0: 0, 1: 0}
    finally:
        c.close()

    assert_fails(
        cli(broker, "group", "reset-offsets", group, "--topic", f"{topic_name}-missing", "--to-earliest", ok=False),
        "UNKNOWN_TOPIC_OR_PARTITION",
    )

    assert group in {g["group"] for g in cli_json(broker, "group", "list")}
    assert "deleted" in cli(broker, "group", "delete", group).stdout
    assert group not in {g["group"] for g in cli_json(broker, "group", "list")}
    assert committed(broker.bootstrap, group, topic_name, partitions) == {p: -1001 for p in range(partitions)}
    assert_fails(cli(broker, "group", "delete", group, ok=False), "GROUP_ID_NOT_FOUND")


@pytest.mark.timeout(240)
def test_reset_refused_while_the_group_has_members(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 1)
    group = group_name()
    c = consumer(broker.bootstrap, **{"group.id": group})
    try:
        assigned = []
        c.subscribe([topic_name], on_assign=lambda _c, parts: assigned.extend(parts))
        deadline = time.monotonic() + DEADLINE_S
        while not assigned:
            assert time.monotonic() < deadline, "no assignment"
            c.poll(0.2)
        out = cli(broker, "group", "reset-offsets", group, "--topic", topic_name, "--to-earliest", ok=False)
        assert_fails(out, "inactive")
        assert "Stable" in out.stderr
        listed = {g["group"]: g for g in cli_json(broker, "group", "list")}
        assert listed[group]["state"] == "Stable"
        assert any(r["member_id"] for r in cli_json(broker, "group", "describe", group))
        assert_fails(cli(broker, "group", "delete", group, ok=False), "NON_EMPTY_GROUP")
        # The standalone consumer's commits are refused while the group has members.
        cli(broker, "produce", topic_name, stdin="x\n")
        out = cli(broker, "consume", topic_name, "-g", group, "-p", "0", "-e", ok=False)
        assert out.returncode != 0 and len(out.stderr.splitlines()) == 1, out.stderr
    finally:
        c.close()


@pytest.mark.timeout(120)
def test_cluster_info(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 2)
    info = cli_json(broker, "cluster", "info")
    assert [(b["host"], b["port"]) for b in info["brokers"]] == [("127.0.0.1", broker.kafka_port)]
    assert info["controller_id"] == info["brokers"][0]["id"]
    assert info["cluster_id"]
    md = admin(broker.bootstrap).list_topics(timeout=DEADLINE_S)
    assert info["partitions"] == sum(len(t.partitions) for t in md.topics.values())
    assert info["source"] == "DescribeCluster"
    assert any(a["name"] == "Produce" for a in info["api_versions"])
    table = cli(broker, "cluster", "info").stdout
    assert "cluster-id" in table and f"{broker.kafka_port}" in table


@pytest.mark.timeout(60)
def test_errors_are_one_line_and_non_zero(broker):
    out = subprocess.run(
        [str(ringtail_bin()), "topic", "list", "--brokers", "127.0.0.1:1"],
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
    )
    assert_fails(out, "127.0.0.1:1")
    # RINGTAIL_BROKERS is read when --brokers is not given.
    env_out = subprocess.run(
        [str(ringtail_bin()), "topic", "list", "--format", "json"],
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
        env={"RINGTAIL_BROKERS": broker.bootstrap, "PATH": "/usr/bin:/bin"},
    )
    assert env_out.returncode == 0, env_out.stderr
    assert isinstance(json.loads(env_out.stdout), list)
    assert_fails(cli(broker, "topic", "list", "--format", "yaml", ok=False), "--format")


def members_by_client(broker, group: str) -> dict[str, set[int]]:
    """client id -> partitions it owns, from `ringtail group describe --format json`."""
    owned: dict[str, set[int]] = {}
    for r in cli_json(broker, "group", "describe", group):
        if r["client_id"]:
            owned.setdefault(r["client_id"], set()).add(r["partition"])
    return owned


@pytest.mark.timeout(240)
def test_group_member_consume_rebalances_with_confluent(broker, topic_name):
    partitions = 4
    create_topic(broker.bootstrap, topic_name, partitions)
    prod = producer(broker.bootstrap)
    for i in range(40):
        prod.produce(topic_name, f"v{i}".encode(), partition=i % partitions)
    flush_all(prod)
    group = group_name()

    # Alone in the group, the CLI member gets every partition, commits what it read, leaves.
    out = cli(broker, "consume", topic_name, "-g", group, "-e", "--format", "%p %o")
    assert sorted(tuple(map(int, line.split())) for line in out.stdout.splitlines()) == sorted(
        (p, o) for p in range(partitions) for o in range(10)
    )
    assert committed(broker.bootstrap, group, topic_name, partitions) == {p: 10 for p in range(partitions)}
    assert {g["group"]: g["state"] for g in cli_json(broker, "group", "list")}[group] == "Empty"

    # A running CLI member and a confluent-kafka member split the partitions (range assignor).
    proc = subprocess.Popen(
        [str(ringtail_bin()), "consume", topic_name, "-g", group, "--brokers", broker.bootstrap],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    c = None
    try:
        deadline = time.monotonic() + DEADLINE_S
        while members_by_client(broker, group).get("ringtail-cli") != set(range(partitions)):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, members_by_client(broker, group)
            time.sleep(0.3)
        c = consumer(broker.bootstrap, **{"group.id": group, "client.id": "confluent"})
        c.subscribe([topic_name])
        while True:
            c.poll(0.2)
            owned = members_by_client(broker, group)
            if len(owned.get("ringtail-cli", ())) == 2 and len(owned.get("confluent", ())) == 2:
                break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, owned
        assert owned["ringtail-cli"] | owned["confluent"] == set(range(partitions))
        c.close()
        c = None
        # SIGTERM ends the CLI member cleanly: it leaves the group before it exits.
        proc.terminate()
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
        assert {g["group"]: g["state"] for g in cli_json(broker, "group", "list")}[group] == "Empty"
    finally:
        if c is not None:
            c.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def run_with_tty_stderr(args: list[str]) -> tuple[int, str, str]:
    """Runs ringtail with stdout piped and stderr on a pseudo-terminal; (rc, stdout, stderr)."""
    import os
    import pty

    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([str(ringtail_bin()), *args], stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the process closed its end
                break
            if not data:
                break
            chunks.append(data)
        out, _ = proc.communicate(timeout=CLI_TIMEOUT_S)
        return proc.returncode, out.decode(), b"".join(chunks).decode(errors="replace")
    finally:
        os.close(master)


@pytest.mark.timeout(180)
def test_progress_only_on_a_terminal(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 2)
    cli(broker, "produce", topic_name, stdin="".join(f"{i}\n" for i in range(2000)))
    rc, out, err = run_with_tty_stderr(["consume", topic_name, "-e", "--format", "%o", "--brokers", broker.bootstrap])
    assert rc == 0, err
    assert len(out.splitlines()) == 2000
    assert "consumed: " in err, err
    group = group_name()
    rc, out, err = run_with_tty_stderr(
        ["group", "reset-offsets", group, "--topic", topic_name, "--to-latest", "--brokers", broker.bootstrap]
    )
    assert rc == 0, err
    assert "committing offsets: 2/2" in err, err
    # The same commands piped: nothing on stderr (cli() checks it).
    cli(broker, "consume", topic_name, "-e", "--format", "%o")
    cli(broker, "group", "reset-offsets", group, "--topic", topic_name, "--to-earliest")


@pytest.mark.timeout(120)
def test_produce_binary_lines(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 1)
    data = b"\xff\x00key|\xfe\x01value\r\n" + b"plain\n" + b"last-without-newline"
    out = subprocess.run(
        [str(ringtail_bin()), "produce", topic_name, "-k", "|", "--brokers", broker.bootstrap],
        input=data, capture_output=True, timeout=CLI_TIMEOUT_S,
    )
    assert out.returncode == 0 and out.stderr == b"", out.stderr
    got = consume_all(broker.bootstrap, topic_name, 1)[0]
    assert [(m.key, m.value) for m in got] == [
        (b"\xff\x00key", b"\xfe\x01value"),
        (None, b"plain"),
        (None, b"last-without-newline"),
    ]


@pytest.mark.timeout(60)
def test_bootstrap_list_skips_unreachable_brokers(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 1)
    out = subprocess.run(
        [str(ringtail_bin()), "topic", "list", "--format", "json", "--brokers", f"127.0.0.1:1,{broker.bootstrap}"],
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
    )
    assert out.returncode == 0, out.stderr
    assert topic_name in {t["name"] for t in json.loads(out.stdout)}
