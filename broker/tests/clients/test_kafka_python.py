"""kafka-python 3.x with its defaults (idempotent producer, ApiVersions v4 first): a second,
independent implementation of the protocol."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

import kclients
import kwire

DEADLINE_S = 60


@pytest.mark.parametrize("compression", [None, "gzip", "snappy", "lz4", "zstd"])
def test_kafka_python_roundtrip_default_idempotent_producer(broker, topic_name, compression):
    partitions = 3
    count = 600
    kclients.create_topic(broker.bootstrap, topic_name, partitions)

    prod = KafkaProducer(bootstrap_servers=broker.bootstrap, compression_type=compression,
                         request_timeout_ms=DEADLINE_S * 1000)
    assert prod.config["enable_idempotence"], "kafka-python default should be idempotent"
    sent = []
    for i in range(count):
        p = i % partitions
        key = f"k{i}".encode()
        value = (f"value-{i}-" + "payload" * 10).encode()
        headers = [("seq", str(i).encode()), ("lib", b"kafka-python")]
        sent.append((prod.send(topic_name, key=key, value=value, headers=headers, partition=p),
                     p, key, value, headers))
    prod.flush(timeout=DEADLINE_S)
    acked = {}
    for fut, p, key, value, headers in sent:
        md = fut.get(timeout=DEADLINE_S)
        assert md.partition == p
        acked[(p, md.offset)] = (key, value, headers)
    prod.close(timeout=DEADLINE_S)
    for p in range(partitions):
        assert sorted(o for q, o in acked if q == p) == list(range(count // partitions))

    # The stored batches carry the producer id and contiguous sequences (idempotence is on),
    # and kafka-python's codec as sent.
    with kwire.Conn(broker.bootstrap) as conn:
        for p in range(partitions):
            batches = kwire.fetch_all_batches(conn, topic_name, p)
            # kafka-python sends a batch uncompressed when compressing would not shrink it.
            codecs = {b.codec for b in batches}
            want = kwire.CODEC_IDS[compression or "none"]
            assert want in codecs and codecs <= {want, 0}, f"partition {p}: stored codecs {codecs}"
            assert len({b.producer_id for b in batches}) == 1 and batches[0].producer_id >= 0, (
                [(b.producer_id, b.producer_epoch) for b in batches[:5]]
            )
            sequence = 0
            for b in batches:
                assert b.base_sequence == sequence, f"partition {p} batch @{b.base_offset}"
                sequence += b.record_count

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                             group_id=None, auto_offset_reset="earliest",
                             request_timeout_ms=DEADLINE_S * 1000 + 5000)
    try:
        consumer.assign([TopicPartition(topic_name, p) for p in range(partitions)])
        consumer.seek_to_beginning()
        got = {}
        deadline = time.monotonic() + DEADLINE_S
        while len(got) < count:
            assert time.monotonic() < deadline, f"consumed {len(got)} of {count}"
            for tp, records in consumer.poll(timeout_ms=500, max_records=1000).items():
                for r in records:
                    assert (tp.partition, r.offset) not in got, f"duplicate {tp.partition}@{r.offset}"
                    got[(tp.partition, r.offset)] = (r.key, r.value, list(r.headers))
    finally:
        consumer.close()
    assert got == {k: (key, value, headers) for k, (key, value, headers) in acked.items()}


def test_kafka_python_admin_create_and_delete(broker, topic_name):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=DEADLINE_S * 1000)
    try:
        admin.create_topics({topic_name: {"num_partitions": 4, "replication_factor": 1,
                                          "configs": {"retention.ms": "3600000"}}})
        deadline = time.monotonic() + DEADLINE_S
        while True:
            topics = {t["name"]: t for t in admin.describe_topics([topic_name])}
            t = topics.get(topic_name)
            if t and t["error_code"] == 0 and len(t["partitions"]) == 4:
                break
            assert time.monotonic() < deadline, f"created topic not visible: {t}"
            time.sleep(0.2)
        assert topic_name in admin.list_topics()
        assert all(p["leader_id"] == 0 for p in t["partitions"]), t["partitions"]

        admin.delete_topics([topic_name])
        deadline = time.monotonic() + DEADLINE_S
        while topic_name in admin.list_topics():
            assert time.monotonic() < deadline, "deleted topic still listed"
            time.sleep(0.2)
    finally:
        admin.close()


def test_kafka_python_pipelined_idempotent_producer_moves_to_the_partition_owner(broker, topic_name):
    """On the 2-shard test broker a connection lands on either shard. kafka-python pipelines up
    to 5 idempotent produce requests; one that landed on the shard not owning its partition
    moves after 16 requests (net::affinity), with requests still queued behind the move.
    Every producer's cross-shard calls stay bounded, and offsets and sequences stay
    contiguous."""
    partitions, producers, count = 2, 6, 2000
    kclients.create_topic(broker.bootstrap, topic_name, partitions)
    for n in range(producers):
        p = n % partitions
        before = kclients.scrape_metrics(broker)
        prod = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0, batch_size=2048,
                             request_timeout_ms=DEADLINE_S * 1000)
        futures = [prod.send(topic_name, value=f"{n}:{i}".encode() + b"x" * 100, partition=p)
                   for i in range(count)]
        prod.flush(timeout=DEADLINE_S)
        offsets = [f.get(timeout=DEADLINE_S).offset for f in futures]
        prod.close(timeout=DEADLINE_S)
        assert offsets == list(range(offsets[0], offsets[0] + count)), f"producer {n}: offsets not contiguous"
        after = kclients.scrape_metrics(broker)
        requests = after[("ringtail_requests_total", "Produce")] - before.get(("ringtail_requests_total", "Produce"), 0)
        cross = after.get(("ringtail_cross_shard_calls_total", ""), 0) - before.get(("ringtail_cross_shard_calls_total", ""), 0)
        assert requests >= 100, f"producer {n}: only {requests} produce requests"
        # At most the run before the move (16), the requests already read or queued behind
        # it (up to 5 in flight), and a few non-data calls (InitProducerId goes to shard 0).
        assert cross <= 32, f"producer {n}: {cross} cross-shard calls for {requests} produce requests"
    with kwire.Conn(broker.bootstrap) as conn:
        for p in range(partitions):
            batches = kwire.fetch_all_batches(conn, topic_name, p)
            assert sum(b.record_count for b in batches) == count * producers // partitions
            for pid in {b.producer_id for b in batches}:
                sequence = 0
                for b in (b for b in batches if b.producer_id == pid):
                    assert b.base_sequence == sequence, f"partition {p}, producer id {pid}"
                    sequence += b.record_count


@pytest.mark.timeout(120)
def test_kafka_python_describe_log_dirs_reports_partition_sizes(broker, topic_name):
    kclients.create_topic(broker.bootstrap, topic_name, 2)
    batch = kwire.record_batch([(b"k", b"v" * 200)])
    with kwire.Conn(broker.bootstrap) as conn:
        error, _ = conn.produce_v3(topic_name, 0, batch)
    assert error == kwire.ERR_NONE
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    try:
        answers = admin.describe_log_dirs()
    finally:
        admin.close()
    dirs = [d for a in answers for d in a["log_dirs"]]
    assert len(dirs) == 1 and dirs[0]["error_code"] == 0
    assert dirs[0]["log_dir"] == str(broker.data_dir)
    sizes = {p["partition_index"]: p["partition_size"]
             for t in dirs[0]["topics"] if t["name"] == topic_name for p in t["partitions"]}
    assert sizes == {0: len(batch), 1: 0}
