"""Forced producer retries with enable.idempotence=true: the broker drops every Nth produce
response (test-only switch RINGTAIL_TEST_DROP_PRODUCE_RESPONSES), the producer retries batches
the broker already wrote, and every record must still be in the log exactly once, in order."""

from __future__ import annotations

import kclients


def test_idempotent_retries_store_each_record_exactly_once_in_order(broker_factory, topic_name):
    broker = broker_factory(env={"RINGTAIL_TEST_DROP_PRODUCE_RESPONSES": "3"})
    partitions = 2
    per_partition = 2500
    kclients.create_topic(broker.bootstrap, topic_name, partitions)

    capture = kclients.LogCapture()
    client_errors = []
    deliveries = kclients.Deliveries()
    prod = kclients.producer(
        broker.bootstrap, capture,
        **{
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "batch.num.messages": 100,  # many produce requests, several in flight
            "retry.backoff.ms": 20,
            "reconnect.backoff.ms": 20,
            "message.timeout.ms": 180000,
            "error_cb": client_errors.append,
            "debug": "broker,protocol,msg,eos",
        },
    )
    for i in range(per_partition):
        for p in range(partitions):
            prod.produce(topic_name, partition=p, key=b"k", value=f"{p}:{i}".encode(), on_delivery=deliveries)
        if i % 100 == 0:
            prod.poll(0)
    kclients.flush_all(prod, timeout_s=240)
    fatal = [e for e in client_errors if e.fatal()]
    assert not fatal, f"idempotent producer hit fatal errors: {fatal}"
    assert not deliveries.failed, f"{len(deliveries.failed)} failed deliveries, first: {deliveries.failed[:3]}"

    # The switch must really have dropped responses, or this test proves nothing.
    disconnects = capture.matching("disconnected", "connection closed", "connection reset", "receive failed")
    assert disconnects, (
        "no dropped produce response seen by the producer: is RINGTAIL_TEST_DROP_PRODUCE_RESPONSES honoured?"
    )

    # Delivery reports: each record acknowledged at the offset equal to its sequence number.
    for m in deliveries.ok:
        p, seq = map(int, m.value.decode().split(":"))
        assert m.partition == p
        assert m.offset == seq, f"record {p}:{seq} acknowledged at offset {m.offset}"

    # The log: exactly once, in order, nothing else.
    got = kclients.consume_all(broker.bootstrap, topic_name, partitions,
                               until={p: per_partition for p in range(partitions)})
    hw = kclients.high_watermarks(broker.bootstrap, topic_name, partitions)
    for p in range(partitions):
        assert hw[p] == per_partition, f"partition {p} holds {hw[p]} records, {per_partition} produced"
        values = [m.value.decode() for m in got[p]]
        assert values == [f"{p}:{i}" for i in range(per_partition)], first_difference(values, p, per_partition)
        assert [m.offset for m in got[p]] == list(range(per_partition))


def first_difference(values: list[str], p: int, n: int) -> str:
    want = [f"{p}:{i}" for i in range(n)]
    for i, (a, b) in enumerate(zip(values, want)):
        if a != b:
            return f"partition {p}: offset {i} holds {a!r}, expected {b!r} (context {values[max(0, i - 3):i + 3]})"
    return f"partition {p}: {len(values)} records, expected {n}"


def test_kafka_python_idempotent_retries_store_each_record_exactly_once_in_order(broker_factory, topic_name):
    """The same, with kafka-python's own idempotent producer (its default configuration)."""
    from kafka import KafkaProducer

    broker = broker_factory(env={"RINGTAIL_TEST_DROP_PRODUCE_RESPONSES": "3"})
    partitions = 2
    per_partition = 1000
    kclients.create_topic(broker.bootstrap, topic_name, partitions)
    prod = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=2, batch_size=2048,
                         retry_backoff_ms=20, request_timeout_ms=30000, delivery_timeout_ms=180000)
    assert prod.config["enable_idempotence"]
    futures = []
    for i in range(per_partition):
        for p in range(partitions):
            futures.append((p, i, prod.send(topic_name, partition=p, value=f"{p}:{i}".encode())))
    prod.flush(timeout=240)
    for p, i, fut in futures:
        md = fut.get(timeout=60)
        assert (md.partition, md.offset) == (p, i), f"record {p}:{i} acknowledged at {md.partition}@{md.offset}"
    prod.close(timeout=30)

    got = kclients.consume_all(broker.bootstrap, topic_name, partitions,
                               until={p: per_partition for p in range(partitions)})
    hw = kclients.high_watermarks(broker.bootstrap, topic_name, partitions)
    for p in range(partitions):
        assert hw[p] == per_partition, f"partition {p} holds {hw[p]} records, {per_partition} produced"
        values = [m.value.decode() for m in got[p]]
        assert values == [f"{p}:{i}" for i in range(per_partition)], first_difference(values, p, per_partition)
    # Drops really happened (the broker logs each one: "test switch: dropping this produce response").
    assert "dropping this produce response" in broker.log_text(), "no produce response was dropped"
