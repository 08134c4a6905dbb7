"""kcat (librdkafka 2.0.x inside): produce keyed messages with headers, consume them back
exactly, and `-L` metadata."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

import kclients

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat not installed (run-tests.sh installs it)")

KCAT_TIMEOUT_S = 90


def kcat(*args: str, stdin: bytes | None = None) -> str:
    proc = subprocess.run(
        [KCAT, *args],
        input=stdin,
        capture_output=True,
        timeout=KCAT_TIMEOUT_S,
    )
    assert proc.returncode == 0, (
        f"kcat {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout.decode(errors='replace')}"
        f"\nstderr:\n{proc.stderr.decode(errors='replace')}"
    )
    return proc.stdout.decode()


def kcat_consume(bootstrap: str, topic: str) -> list[dict]:
    out = kcat("-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-J", "-q")
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def headers_of(record: dict) -> list[tuple[str, str]]:
    flat = record.get("headers") or []
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


def test_kcat_produce_consume_exact(broker, topic_name):
    partitions = 3
    per_partition = 25
    kclients.create_topic(broker.bootstrap, topic_name, partitions)

    before_ms = int(time.time() * 1000)
    for p in range(partitions):
        lines = "".join(f"key-{p}-{i}:value {p} {i} {'x' * i}\n" for i in range(per_partition))
        kcat(
            "-P", "-b", broker.bootstrap, "-t", topic_name, "-p", str(p), "-K", ":",
            "-H", "trace=abc-123", "-H", f"part={p}", "-X", "acks=all",
            stdin=lines.encode(),
        )
    after_ms = int(time.time() * 1000)

    records = kcat_consume(broker.bootstrap, topic_name)
    assert len(records) == partitions * per_partition, records[:5]
    by_partition: dict[int, list[dict]] = {p: [] for p in range(partitions)}
    for rec in records:
        assert rec["topic"] == topic_name
        by_partition[rec["partition"]].append(rec)
    for p, recs in by_partition.items():
        assert [r["offset"] for r in recs] == list(range(per_partition)), f"partition {p} offsets"
        for i, rec in enumerate(recs):
            assert rec["key"] == f"key-{p}-{i}"
            assert rec["payload"] == f"value {p} {i} {'x' * i}"
            assert headers_of(rec) == [("trace", "abc-123"), ("part", str(p))]
            assert rec["tstype"] == "create"
            # CreateTime set by librdkafka while we produced (same clock; 1 s of slack).
            assert before_ms - 1000 <= rec["ts"] <= after_ms + 1000, rec

    # A second, independent reader (confluent-kafka) sees exactly the same records.
    again = kclients.consume_all(broker.bootstrap, topic_name, partitions)
    for p in range(partitions):
        assert [
            (m.offset, m.key.decode(), m.value.decode(), [(k, v.decode()) for k, v in m.headers], m.timestamp_ms)
            for m in again[p]
        ] == [
            (r["offset"], r["key"], r["payload"], headers_of(r), r["ts"]) for r in by_partition[p]
        ]


def test_kcat_reads_exact_timestamps_and_headers(broker, topic_name):
    """Records written with explicit timestamps and repeated/empty headers come back exactly."""
    partitions = 2
    kclients.create_topic(broker.bootstrap, topic_name, partitions)
    base_ts = 1_600_000_000_000
    deliveries = kclients.Deliveries()
    prod = kclients.producer(broker.bootstrap)
    expected = []
    for i in range(40):
        p = i % partitions
        headers = [("dup", b"one"), ("dup", b"two"), ("empty", b""), ("n", str(i).encode())]
        prod.produce(
            topic_name, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=p,
            timestamp=base_ts + i * 1000, headers=headers, on_delivery=deliveries,
        )
        expected.append((p, f"k{i}", f"v{i}", base_ts + i * 1000, [(k, v.decode()) for k, v in headers]))
    kclients.flush_all(prod)
    assert not deliveries.failed, deliveries.failed[:3]

    records = kcat_consume(broker.bootstrap, topic_name)
    got = sorted(records, key=lambda r: (r["partition"], r["offset"]))
    want = sorted(expected, key=lambda e: (e[0], int(e[1][1:])))
    assert len(got) == len(want)
    offsets = {p: 0 for p in range(partitions)}
    for rec, (p, key, value, ts, headers) in zip(got, want):
        assert (rec["partition"], rec["offset"]) == (p, offsets[p])
        offsets[p] += 1
        assert (rec["key"], rec["payload"], rec["ts"], rec["tstype"]) == (key, value, ts, "create")
        assert headers_of(rec) == headers


def test_kcat_metadata(broker, topic_name):
    kclients.create_topic(broker.bootstrap, topic_name, 4)
    md = json.loads(kcat("-L", "-J", "-b", broker.bootstrap))
    assert md["brokers"] == [{"id": 0, "name": broker.bootstrap}], md["brokers"]
    assert md.get("controllerid") == 0, md
    topics = {t["topic"]: t for t in md["topics"]}
    assert topic_name in topics, sorted(topics)
    topic = topics[topic_name]
    assert not topic.get("error"), topic
    assert sorted(p["partition"] for p in topic["partitions"]) == [0, 1, 2, 3]
    for part in topic["partitions"]:
        assert part["leader"] == 0, part
        assert part["replicas"] == [{"id": 0}], part
        assert part["isrs"] == [{"id": 0}], part
        assert not part.get("error"), part

    # Metadata for just this topic.
    one = json.loads(kcat("-L", "-J", "-b", broker.bootstrap, "-t", topic_name))
    assert [t["topic"] for t in one["topics"]] == [topic_name]
    assert len(one["topics"][0]["partitions"]) == 4
