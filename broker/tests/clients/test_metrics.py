"""`/metrics` with a real client: produce, consume and commit with confluent-kafka, scrape the
Prometheus text, and check the per-topic, per-partition and per-group series move by exactly
what the client did (records in, lag = end - committed, an error counter after a produce to a
partition that does not exist).

Shards publish their partition and group samples about once a second, so every check waits
(with a generous deadline) for the value it expects rather than reading it once."""

from __future__ import annotations

import re
import time

import pytest
from confluent_kafka import TopicPartition

import kclients
import kwire

DEADLINE_S = 60.0
PARTITIONS = 2

_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> dict[tuple, float]:
    """Prometheus text format 0.0.4 -> {(name, frozenset(labels)): value}. Strict: every
    non-comment line must parse, every sample's family must have a TYPE line, and no series
    may appear twice."""
    types: dict[str, str] = {}
    out: dict[tuple, float] = {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram"), line
            types[name] = kind
            continue
        if line.startswith("#"):
            continue
        m = _LINE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or base in types, f"{name} has no # TYPE line"
        pairs = _LABEL.findall(labels)
        assert ",".join(f'{k}="{v}"' for k, v in pairs) == labels, f"bad labels in {line!r}"
        key = (name, frozenset(pairs))
        assert key not in out, f"series twice: {line!r}"
        out[key] = float(value)
    return out


def scrape(broker) -> dict[tuple, float]:
    status, body = broker.http_get("/metrics")
    assert status == 200, body
    return parse_prometheus(body.decode())


def value(metrics: dict[tuple, float], name: str, **labels) -> float | None:
    return metrics.get((name, frozenset((k, str(v)) for k, v in labels.items())))


def wait_for(broker, what: str, check) -> dict[tuple, float]:
    """Scrape until `check(metrics)` is true; the last scrape is in the failure message."""
    deadline = time.monotonic() + DEADLINE_S
    metrics = {}
    while time.monotonic() < deadline:
        metrics = scrape(broker)
        if check(metrics):
            return metrics
        time.sleep(0.2)
    interesting = {k: v for k, v in metrics.items() if k[0].startswith(("ringtail_topic", "ringtail_group",
                                                                         "ringtail_partition", "ringtail_produce_err"))}
    raise AssertionError(f"/metrics never showed {what} within {DEADLINE_S:.0f} s; last: {interesting}")


@pytest.mark.timeout(240)
def test_metrics_follow_produce_consume_commit_and_errors(broker, topic_name):
    kclients.create_topic(broker.bootstrap, topic_name, PARTITIONS)
    records_in = lambda m: value(m, "ringtail_topic_records_in_total", topic=topic_name)
    # Each shard publishes its own partitions: wait until both partitions are there.
    before = wait_for(
        broker,
        f"both partitions of the new topic {topic_name}",
        lambda m: all(value(m, "ringtail_partition_log_end_offset", topic=topic_name, partition=p) == 0
                      for p in range(PARTITIONS)),
    )
    assert records_in(before) == 0
    assert value(before, "ringtail_partition_log_segments", topic=topic_name, partition=1) >= 1
    errors_before = value(before, "ringtail_produce_errors_total", code=3,
                          error="UnknownTopicOrPartition") or 0

    # Produce 30 records to partition 0 and 12 to partition 1, in several batches.
    deliveries = kclients.Deliveries()
    prod = kclients.producer(broker.bootstrap, **{"linger.ms": 0})
    for i in range(30):
        prod.produce(topic_name, partition=0, value=f"p0-{i}".encode(), on_delivery=deliveries)
        if i % 7 == 0:
            prod.flush(DEADLINE_S)
    for i in range(12):
        prod.produce(topic_name, partition=1, value=f"p1-{i}".encode(), on_delivery=deliveries)
    kclients.flush_all(prod)
    assert not deliveries.failed and len(deliveries.ok) == 42

    m = wait_for(broker, "42 records in", lambda m: records_in(m) == 42)
    produced_bytes = value(m, "ringtail_topic_bytes_in_total", topic=topic_name)
    assert produced_bytes and produced_bytes > 42 * len("p0-0")
    assert value(m, "ringtail_partition_log_end_offset", topic=topic_name, partition=0) == 30
    assert value(m, "ringtail_partition_log_end_offset", topic=topic_name, partition=1) == 12
    assert value(m, "ringtail_partition_log_start_offset", topic=topic_name, partition=0) == 0
    assert value(m, "ringtail_partition_log_size_bytes", topic=topic_name, partition=0) > 0

    # Consume everything in a group, commit partition 0 at 10 and partition 1 at its end.
    group = f"g-{topic_name}"
    c = kclients.consumer(broker.bootstrap, **{"group.id": group})
    try:
        c.assign([TopicPartition(topic_name, p, 0) for p in range(PARTITIONS)])
        got = 0
        deadline = time.monotonic() + DEADLINE_S
        while got < 42:
            assert time.monotonic() < deadline, f"consumed {got} of 42"
            for msg in c.consume(num_messages=100, timeout=0.5):
                assert msg.error() is None, msg.error()
                got += 1
        c.commit(offsets=[TopicPartition(topic_name, 0, 10), TopicPartition(topic_name, 1, 12)],
                 asynchronous=False)
    finally:
        c.close()

    def lag(m, p):
        return value(m, "ringtail_group_lag", group=group, topic=topic_name, partition=p)

    m = wait_for(broker, "the group's lag", lambda m: lag(m, 0) is not None and lag(m, 1) is not None)
    for p, committed in ((0, 10), (1, 12)):
        assert value(m, "ringtail_group_committed_offset", group=group, topic=topic_name,
                     partition=p) == committed
        end = value(m, "ringtail_partition_log_end_offset", topic=topic_name, partition=p)
        assert lag(m, p) == end - committed
    assert lag(m, 0) == 20 and lag(m, 1) == 0
    # Every fetched batch was returned once, whole: the records out are exactly the records in.
    # (Each shard publishes its own partitions' counts: wait for both.)
    m = wait_for(broker, "42 records out",
                 lambda m: value(m, "ringtail_topic_records_out_total", topic=topic_name) == 42)
    assert value(m, "ringtail_topic_bytes_out_total", topic=topic_name) == produced_bytes

    # Producing more moves the lag by exactly as much.
    for i in range(5):
        prod.produce(topic_name, partition=0, value=f"more-{i}".encode(), on_delivery=deliveries)
    kclients.flush_all(prod)
    m = wait_for(broker, "lag 25", lambda m: lag(m, 0) == 25)
    assert records_in(m) == 47

    # A produce to a partition that does not exist is answered UNKNOWN_TOPIC_OR_PARTITION and
    # counted; records-in does not move. (librdkafka refuses such a record itself, knowing the
    # partition count: send the request as a client with stale metadata would.)
    with kwire.Conn(broker.bootstrap) as conn:
        error, _ = conn.produce_v3(topic_name, PARTITIONS + 5, kwire.record_batch([(None, b"nowhere")]))
    assert error == 3, f"expected UNKNOWN_TOPIC_OR_PARTITION (3), got {error}"
    m = wait_for(
        broker,
        "one more UNKNOWN_TOPIC_OR_PARTITION produce error",
        lambda m: (value(m, "ringtail_produce_errors_total", code=3, error="UnknownTopicOrPartition") or 0)
        == errors_before + 1,
    )
    assert records_in(m) == 47
    assert value(m, "ringtail_metrics_series_folded_total", family="topic") == 0
    shards = [v for (name, _), v in m.items() if name == "ringtail_shard_partitions"]
    assert len(shards) == 2 and sum(shards) >= PARTITIONS


@pytest.mark.timeout(240)
def test_metrics_label_sets_are_capped(broker_factory, topic_name):
    broker = broker_factory(settings={"metrics_label_sets_max": 2})
    names = [f"{topic_name}-{i}" for i in range(4)]
    for name in names:
        kclients.create_topic(broker.bootstrap, name, 1)
    prod = kclients.producer(broker.bootstrap)
    for i, name in enumerate(names):
        for _ in range(i + 1):
            prod.produce(name, value=b"x")
    kclients.flush_all(prod)
    # __consumer_offsets has 50 partitions: with a cap of 2 nearly everything is folded.
    m = wait_for(
        broker,
        "the four topics' 10 records (2 own series, the rest in __other)",
        lambda m: sum(v for (n, _), v in m.items() if n == "ringtail_topic_records_in_total") == 10,
    )
    topic_series = [dict(l) for (n, l) in m if n == "ringtail_topic_records_in_total"]
    assert len(topic_series) == 3, topic_series
    assert {"topic": "__other"} in topic_series
    assert value(m, "ringtail_metrics_series_folded_total", family="topic") == 3  # 5 topics - 2
    partition_series = [dict(l) for (n, l) in m if n == "ringtail_partition_log_end_offset"]
    assert len(partition_series) == 2
    assert value(m, "ringtail_metrics_series_folded_total", family="partition") == 50 + 4 - 2


@pytest.mark.timeout(120)
def test_every_metric_is_documented_and_the_dashboard_uses_only_served_ones(broker, topic_name):
    """README.md names every family /metrics serves; ops/grafana/ringtail.json queries only
    families /metrics serves."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    kclients.create_topic(broker.bootstrap, topic_name, 1)
    status, body = broker.http_get("/metrics")
    assert status == 200
    served = set(re.findall(r"^# TYPE (\S+) ", body.decode(), re.M))
    assert "ringtail_group_lag" in served and "ringtail_topic_records_in_total" in served
    readme = (root / "README.md").read_text()
    documented = set(re.findall(r"`(ringtail_[a-z0-9_]+)`", readme))
    # The table abbreviates siblings as `ringtail_x_accepted_total`, `_rejected_total`.
    for m in re.finditer(r"`(ringtail_[a-z0-9_]+?)_[a-z]+_total`((?:, `_[a-z_]+`)+)", readme):
        documented |= {m.group(1) + s for s in re.findall(r"`(_[a-z_]+)`", m.group(2))}
    undocumented = sorted(served - documented)
    assert not undocumented, f"metrics missing from README.md: {undocumented}"

    dashboard = json.loads((root / "ops/grafana/ringtail.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    used = {re.sub(r"_bucket$", "", n) for e in exprs for n in re.findall(r"ringtail_[a-z0-9_]+", e)}
    assert not sorted(used - served), f"dashboard queries unknown metrics: {sorted(used - served)}"
