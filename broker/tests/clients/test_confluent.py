"""confluent-kafka (librdkafka 2.16): producer with acks=all and every compression type (stored
compressed as sent), consumer over all partitions, key -> partition stability,
offsets_for_times and seek/replay, and the AdminClient."""

from __future__ import annotations

import json
import time
import zlib

import pytest
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaError, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, NewPartitions, NewTopic

import kclients
import kwire

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def compressible_value(i: int) -> bytes:
    doc = {"seq": i, "user": f"user-{i % 97}", "event": "page_view", "path": "/products/" + "ab" * 20,
           "tags": ["alpha", "beta", "gamma"], "pad": "z" * 64}
    return json.dumps(doc).encode()


def librdkafka_partition(key: bytes, partitions: int) -> int:
    """librdkafka's default `consistent_random` partitioner for a non-empty key: CRC32 mod n."""
    return (zlib.crc32(key) & 0xFFFFFFFF) % partitions


@pytest.mark.parametrize("codec", CODECS)
def test_producer_acks_all_every_codec_stored_as_sent(broker, topic_name, codec):
    partitions = 3
    count = 3000
    kclients.create_topic(broker.bootstrap, topic_name, partitions)

    capture = kclients.LogCapture()
    deliveries = kclients.Deliveries()
    prod = kclients.producer(
        broker.bootstrap, capture,
        **{"compression.type": codec, "acks": "all", "linger.ms": 20, "batch.num.messages": 500,
           "debug": "feature,protocol,msg"},
    )
    produced = []
    for i in range(count):
        key = f"key-{i % 50}".encode()
        value = compressible_value(i)
        prod.produce(topic_name, key=key, value=value, on_delivery=deliveries)
        produced.append((key, value))
        if i % 500 == 0:
            prod.poll(0)
    kclients.flush_all(prod)

    assert not deliveries.failed, f"{len(deliveries.failed)} failed deliveries, first: {deliveries.failed[:3]}"
    assert len(deliveries.ok) == count
    fallbacks = capture.matching("not compressing", "does not support compression")
    assert not fallbacks, f"librdkafka refused to compress with {codec}: {fallbacks[:3]}"

    # Keys map to partitions the way librdkafka's default partitioner says.
    for m in deliveries.ok:
        assert m.partition == librdkafka_partition(m.key, partitions), m

    # The broker stored exactly the batches the producer sent: same codec, magic 2.
    by_offset = {(m.partition, m.offset): m for m in deliveries.ok}
    with kwire.Conn(broker.bootstrap) as conn:
        seen = 0
        for p in range(partitions):
            batches = kwire.fetch_all_batches(conn, topic_name, p)
            assert batches, f"partition {p} has no stored batches"
            codecs = {b.codec for b in batches}
            assert codecs == {kwire.CODEC_IDS[codec]}, (
                f"partition {p}: stored codecs {codecs}, producer sent {codec} "
                f"(attributes of first batches: {[hex(b.attributes) for b in batches[:5]]})"
            )
            assert {b.magic for b in batches} == {2}
            if codec != "none":
                assert len(batches) < len([m for m in deliveries.ok if m.partition == p]), (
                    "compressed records should arrive several per batch"
                )
            for batch in batches:
                for offset, _ts, key, value, _headers in kwire.decode_records(batch):
                    m = by_offset[(p, offset)]
                    assert (key, value) == (m.key, m.value), f"{p}@{offset}"
                    seen += 1
        assert seen == count

    # A consumer assigned to every partition reads everything back in per-partition order.
    got = kclients.consume_all(broker.bootstrap, topic_name, partitions)
    for p in range(partitions):
        want = [(k, v) for k, v in produced if librdkafka_partition(k, partitions) == p]
        assert [(m.key, m.value) for m in got[p]] == want, f"partition {p} order/content"
        assert [m.offset for m in got[p]] == list(range(len(want)))


def test_keys_map_to_stable_partitions(broker, topic_name):
    partitions = 6
    kclients.create_topic(broker.bootstrap, topic_name, partitions)
    keys = [f"customer-{i}".encode() for i in range(200)]
    placements = []
    for _round in range(2):
        deliveries = kclients.Deliveries()
        prod = kclients.producer(broker.bootstrap)
        for key in keys:
            prod.produce(topic_name, key=key, value=b"v", on_delivery=deliveries)
        kclients.flush_all(prod)
        assert not deliveries.failed
        placements.append({m.key: m.partition for m in deliveries.ok})
    assert placements[0] == placements[1]
    assert len(set(placements[0].values())) == partitions, "200 keys should hit every partition"
    for key, p in placements[0].items():
        assert p == librdkafka_partition(key, partitions)

    got = kclients.consume_all(broker.bootstrap, topic_name, partitions)
    for p, msgs in got.items():
        assert {m.key for m in msgs} == {k for k, q in placements[0].items() if q == p}


def test_offsets_for_times_and_seek_replay(broker, topic_name):
    partitions = 2
    count = 200
    kclients.create_topic(broker.bootstrap, topic_name, partitions)
    base_ts = int(time.time() * 1000) - 3_600_000
    prod = kclients.producer(broker.bootstrap, **{"linger.ms": 50})
    deliveries = kclients.Deliveries()
    for p in range(partitions):
        for i in range(count):
            # Several records per batch, each with its own timestamp 10 ms apart.
            prod.produce(topic_name, partition=p, value=f"{p}:{i}".encode(),
                         timestamp=base_ts + i * 10, on_delivery=deliveries)
    kclients.flush_all(prod)
    assert not deliveries.failed

    c = kclients.consumer(broker.bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=60) == (0, count)
        queries = {
            base_ts - 1000: 0,              # before everything: the first record
            base_ts: 0,
            base_ts + 37 * 10: 37,          # an exact record timestamp
            base_ts + 37 * 10 - 5: 37,      # between two records: the later one
            base_ts + (count - 1) * 10: count - 1,
        }
        for ts, want in queries.items():
            for p in range(partitions):
                res = c.offsets_for_times([TopicPartition(topic_name, p, ts)], timeout=60)
                assert res[0].error is None, res[0].error
                assert res[0].offset == want, f"partition {p} ts {ts - base_ts:+d}: {res[0].offset} != {want}"
        res = c.offsets_for_times([TopicPartition(topic_name, 0, base_ts + count * 10 + 1)], timeout=60)
        assert res[0].offset == OFFSET_END, f"timestamp after the last record: {res[0].offset}"

        # Start at the offset offsets_for_times gave, then seek back and replay.
        start = c.offsets_for_times([TopicPartition(topic_name, 1, base_ts + 120 * 10)], timeout=60)[0]
        c.assign([start])
        first = consume_n(c, 10)
        assert [(m.partition(), m.offset(), m.value()) for m in first] == [
            (1, 120 + i, f"1:{120 + i}".encode()) for i in range(10)
        ]
        assert [m.timestamp()[1] for m in first] == [base_ts + (120 + i) * 10 for i in range(10)]
        c.seek(TopicPartition(topic_name, 1, 5))
        replay = consume_n(c, 20)
        assert [m.offset() for m in replay] == list(range(5, 25))
        assert [m.value() for m in replay] == [f"1:{i}".encode() for i in range(5, 25)]
        c.seek(TopicPartition(topic_name, 1, OFFSET_BEGINNING))
        again = consume_n(c, 3)
        assert [m.offset() for m in again] == [0, 1, 2]
    finally:
        c.close()


def consume_n(c, n: int, timeout_s: float = 60.0):
    out = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n:
        assert time.monotonic() < deadline, f"got {len(out)} of {n} messages"
        for m in c.consume(num_messages=n - len(out), timeout=0.5):
            if m.error() is not None:
                raise KafkaException(m.error())
            out.append(m)
    return out


def source_of(entry: ConfigEntry) -> int:
    """ConfigEntry.source arrives as an int from librdkafka (or a ConfigSource enum)."""
    return getattr(entry.source, "value", entry.source)


def described(client, topic: str) -> dict[str, ConfigEntry]:
    res = ConfigResource("topic", topic)
    return client.describe_configs([res], request_timeout=60)[res].result(timeout=60)


def test_admin_create_describe_alter_delete_and_add_partitions(broker, topic_name):
    client = kclients.admin(broker.bootstrap)
    configs = {"retention.ms": "86400000", "cleanup.policy": "delete"}
    futures = client.create_topics(
        [NewTopic(topic_name, num_partitions=3, replication_factor=1, config=configs)], request_timeout=60
    )
    futures[topic_name].result(timeout=60)
    kclients.wait_partitions(broker.bootstrap, topic_name, 3)

    # Creating it again fails with TOPIC_ALREADY_EXISTS.
    again = client.create_topics([NewTopic(topic_name, num_partitions=3, replication_factor=1)], request_timeout=60)
    with pytest.raises(KafkaException) as err:
        again[topic_name].result(timeout=60)
    assert err.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS

    # Describe the topic.
    desc = client.describe_topics(TopicCollection([topic_name]), request_timeout=60)[topic_name].result(timeout=60)
    assert desc.name == topic_name
    assert not desc.is_internal
    assert [p.id for p in desc.partitions] == [0, 1, 2]
    for p in desc.partitions:
        assert p.leader is not None and p.leader.id == 0
        assert [n.id for n in p.replicas] == [0]
        assert [n.id for n in p.isr] == [0]

    # Describe configs: what we set is there, as a dynamic topic config.
    entries = described(client, topic_name)
    for name, value in configs.items():
        assert entries[name].value == value, entries.get(name)
        assert source_of(entries[name]) == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert "segment.bytes" in entries, sorted(entries)

    # IncrementalAlterConfigs: SET one, DELETE another (back to its default).
    res = ConfigResource("topic", topic_name, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("cleanup.policy", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    client.incremental_alter_configs([res], request_timeout=60)[res].result(timeout=60)
    entries = described(client, topic_name)
    assert entries["retention.ms"].value == "3600000"
    assert entries["cleanup.policy"].value == "delete"  # Kafka's default
    assert source_of(entries["cleanup.policy"]) != ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    # Unknown config names are refused.
    bad = ConfigResource("topic", topic_name, incremental_configs=[
        ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET),
    ])
    with pytest.raises(KafkaException):
        client.incremental_alter_configs([bad], request_timeout=60)[bad].result(timeout=60)

    # Add partitions: 3 -> 5, and the new ones take writes.
    client.create_partitions([NewPartitions(topic_name, 5)], request_timeout=60)[topic_name].result(timeout=60)
    kclients.wait_partitions(broker.bootstrap, topic_name, 5)
    deliveries = kclients.Deliveries()
    prod = kclients.producer(broker.bootstrap)
    for p in range(5):
        prod.produce(topic_name, partition=p, value=f"p{p}".encode(), on_delivery=deliveries)
    kclients.flush_all(prod)
    assert not deliveries.failed, deliveries.failed
    assert sorted((m.partition, m.offset) for m in deliveries.ok) == [(p, 0) for p in range(5)]

    # Delete: it disappears from metadata, and produce to it fails.
    client.delete_topics([topic_name], request_timeout=60)[topic_name].result(timeout=60)
    deadline = time.monotonic() + 60
    while topic_name in client.list_topics(timeout=30).topics:
        assert time.monotonic() < deadline, "deleted topic still listed after 60 s"
        time.sleep(0.2)
    with kwire.Conn(broker.bootstrap) as conn:
        err, _ = conn.produce_v3(topic_name, 0, kwire.record_batch([(None, b"late")]))
        assert err == kwire.ERR_UNKNOWN_TOPIC_OR_PARTITION


def test_admin_legacy_alter_configs(broker, topic_name):
    """The older AlterConfigs API (replaces the topic's whole dynamic config)."""
    client = kclients.admin(broker.bootstrap)
    kclients.create_topic(broker.bootstrap, topic_name, 1, config={"retention.ms": "86400000"})
    res = ConfigResource("topic", topic_name, set_config={"retention.bytes": "1048576"})
    client.alter_configs([res], request_timeout=60)[res].result(timeout=60)
    entries = described(client, topic_name)
    assert entries["retention.bytes"].value == "1048576"
    assert source_of(entries["retention.bytes"]) == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    # retention.ms was not in the new set, so it is back to Kafka's default (7 days).
    assert entries["retention.ms"].value == "604800000"


def test_metrics_count_requests_bytes_and_cross_shard_calls(broker, topic_name):
    partitions = 4
    count, size = 2000, 500
    kclients.create_topic(broker.bootstrap, topic_name, partitions)
    before = kclients.scrape_metrics(broker)
    deliveries = kclients.Deliveries()
    prod = kclients.producer(broker.bootstrap)
    for i in range(count):
        prod.produce(topic_name, value=bytes([i % 251]) * size, partition=i % partitions, on_delivery=deliveries)
    kclients.flush_all(prod)
    assert not deliveries.failed and len(deliveries.ok) == count
    got = kclients.consume_all(broker.bootstrap, topic_name, partitions)
    assert sum(len(msgs) for msgs in got.values()) == count
    after = kclients.scrape_metrics(broker)

    def grew(family: str, api: str = "") -> int:
        return after.get((family, api), 0) - before.get((family, api), 0)

    assert grew("ringtail_requests_total", "Produce") >= 1
    assert grew("ringtail_requests_total", "Fetch") >= 1
    assert grew("ringtail_requests_total", "Metadata") >= 1
    # Every Produce request was timed: the histogram counts each one once, in some bucket.
    hist = "ringtail_request_duration_seconds"
    produced = grew("ringtail_requests_total", "Produce")
    assert grew(f"{hist}_count", "Produce") == produced
    bounds = sorted({k[2] for k in after if k[0] == f"{hist}_bucket"}, key=float)
    assert bounds[-1] == "+Inf" and len(bounds) > 10, bounds
    cumulative = [after[(f"{hist}_bucket", "Produce", le)] - before.get((f"{hist}_bucket", "Produce", le), 0) for le in bounds]
    assert cumulative == sorted(cumulative) and cumulative[-1] == produced, cumulative
    assert 0 < grew(f"{hist}_sum", "Produce") < produced * 30, "each request took under 30 s"
    assert grew(f"{hist}_count", "Fetch") >= 1
    # Uncompressed batches: what was stored and fetched holds at least every value byte.
    assert grew("ringtail_produce_bytes_total") >= count * size
    assert grew("ringtail_produce_batches_total") >= partitions
    assert grew("ringtail_fetch_bytes_total") >= count * size
    # The shared broker runs two shards, which own alternate partitions of a topic, while a
    # client connection is served by one of them: requests for all four partitions make
    # that shard call the other.
    assert grew("ringtail_cross_shard_calls_total") > 0
    # Connection counts and storage's write/fsync times are refreshed by each shard once a
    # second: wait for the clients above.
    def refreshed() -> bool:
        return (
            grew("ringtail_connections_accepted_total") >= 2
            and grew("ringtail_log_write_duration_seconds_count") >= 1
            and grew("ringtail_log_fsync_duration_seconds_count") >= 1
        )

    deadline = time.monotonic() + 30
    while not refreshed() and time.monotonic() < deadline:
        time.sleep(0.2)
        after = kclients.scrape_metrics(broker)
    assert grew("ringtail_connections_accepted_total") >= 2, "a producer and a consumer connected"
    # acks=all on one node: the appends were written and fdatasynced, and both were timed.
    assert grew("ringtail_log_write_duration_seconds_count") >= 1
    assert grew("ringtail_log_fsync_duration_seconds_count") >= 1
    assert grew("ringtail_log_write_duration_seconds_sum") > 0
    assert ("ringtail_batch_cache_bytes", "") in after and ("ringtail_connections_active", "") in after


def test_connections_move_to_the_shard_that_owns_their_partition(broker, topic_name):
    """The shared broker runs two shards, which own alternate partitions; the kernel gives each
    connection to either. A producer or consumer that uses one partition only moves to its
    owner after a run of requests (net::affinity::MOVE_AFTER_REQUESTS = 16), and from then on
    its requests cost no cross-shard call. Nothing is lost or reordered across the move."""
    partitions, producers_per_partition, per_producer = 2, 6, 48
    kclients.create_topic(broker.bootstrap, topic_name, partitions)
    before = kclients.scrape_metrics(broker)

    def grew(family: str, api: str = "") -> float:
        return after.get((family, api), 0) - before.get((family, api), 0)

    producers = [(p, kclients.producer(broker.bootstrap, **{"linger.ms": 0}))
                 for p in range(partitions) for _ in range(producers_per_partition)]
    deliveries = kclients.Deliveries()
    # One request per message (flush each time), so every connection sends a long run.
    for seq in range(per_producer):
        for n, (p, prod) in enumerate(producers):
            prod.produce(topic_name, value=f"{n}:{seq}".encode(), partition=p, on_delivery=deliveries)
            prod.flush(60)
    assert not deliveries.failed and len(deliveries.ok) == len(producers) * per_producer
    after = kclients.scrape_metrics(broker)
    produce_requests = grew("ringtail_requests_total", "Produce")
    assert produce_requests >= len(producers) * per_producer
    moved, cross = grew("ringtail_connections_moved_total"), grew("ringtail_cross_shard_calls_total")
    # Moved counts are refreshed once a second.
    deadline = time.monotonic() + 30
    while moved == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
        after = kclients.scrape_metrics(broker)
        moved = grew("ringtail_connections_moved_total")
    print(f"producers: {moved:.0f} connections moved, {cross:.0f} cross-shard calls, {produce_requests:.0f} produce requests")
    # 12 connections, each on the wrong shard with probability 1/2: some moved (all 12 on
    # the right shard has odds of 1 in 4096).
    assert moved >= 1, (moved, cross)
    # A connection on the wrong shard made a cross-shard call per request until it moved,
    # about 16, never all 48 (plus a few for the non-data requests of every connection).
    assert cross <= moved * 20 + len(producers) * 4, (moved, cross, produce_requests)

    # Consumers of one partition each move too, and read everything in order.
    before = kclients.scrape_metrics(broker)
    for p in range(partitions):
        # Small fetches (one single-record batch each): many requests per connection.
        c = kclients.consumer(broker.bootstrap, **{"fetch.wait.max.ms": 10, "max.partition.fetch.bytes": 64})
        try:
            c.assign([TopicPartition(topic_name, p, OFFSET_BEGINNING)])
            got: list[bytes] = []
            deadline = time.monotonic() + kclients.DEADLINE_S
            while len(got) < producers_per_partition * per_producer:
                assert time.monotonic() < deadline, f"partition {p}: {len(got)} records"
                for m in c.consume(num_messages=100, timeout=0.5):
                    assert m.error() is None, m.error()
                    got.append(m.value())
        finally:
            c.close()
        # Each producer's records, in its order; none lost, none twice.
        by_producer: dict[str, list[int]] = {}
        for v in got:
            n, seq = v.decode().split(":")
            by_producer.setdefault(n, []).append(int(seq))
        assert len(by_producer) == producers_per_partition
        assert all(seqs == list(range(per_producer)) for seqs in by_producer.values()), by_producer
    after = kclients.scrape_metrics(broker)
    print(f"consumers: {grew('ringtail_cross_shard_calls_total'):.0f} cross-shard calls, "
          f"{grew('ringtail_requests_total', 'Fetch'):.0f} fetch requests")
    assert grew("ringtail_requests_total", "Fetch") >= 2 * 16
