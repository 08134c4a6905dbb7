"""Small helpers around confluent-kafka (librdkafka) shared by the client tests."""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

DEADLINE_S = 60.0


class LogCapture(logging.Handler):
    """Collects librdkafka log lines (passed as `logger` in a client config)."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.logger = logging.getLogger(f"rdkafka-{uuid.uuid4().hex[:8]}")
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.logger.addHandler(self)

    def emit(self, record):
        self.lines.append(record.getMessage())

    def matching(self, *needles: str) -> list[str]:
        return [line for line in self.lines if any(n.lower() in line.lower() for n in needles)]


@dataclass(frozen=True)
class Msg:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple
    timestamp_type: int
    timestamp_ms: int


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap: str, name: str, partitions: int = 1, config: dict | None = None) -> None:
    """Create a topic with AdminClient and wait until metadata shows every partition led."""
    # Keep the client referenced until the future resolves: a collected AdminClient
    # destroys its handle and fails the pending request with _DESTROY.
    client = admin(bootstrap)
    futures = client.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=30,
        request_timeout=DEADLINE_S,
    )
    futures[name].result(timeout=DEADLINE_S)
    wait_partitions(bootstrap, name, partitions)


def wait_partitions(bootstrap: str, name: str, partitions: int) -> None:
    client = admin(bootstrap)
    deadline = time.monotonic() + DEADLINE_S
    last = None
    while time.monotonic() < deadline:
        md = client.list_topics(topic=name, timeout=10)
        last = md.topics.get(name)
        if (
            last is not None
            and last.error is None
            and len(last.partitions) == partitions
            and all(p.leader >= 0 for p in last.partitions.values())
        ):
            return
        time.sleep(0.2)
    raise AssertionError(f"topic {name} not visible with {partitions} led partitions: {last!r}")


def producer(bootstrap: str, capture: LogCapture | None = None, **overrides) -> Producer:
    config = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5}
    if capture is not None:
        config["logger"] = capture.logger
    config.update(overrides)
    return Producer(config)


class Deliveries:
    """Delivery-report callback that records successes and failures."""

    def __init__(self):
        self.ok: list[Msg] = []
        self.failed: list[tuple[str, bytes | None]] = []

    def __call__(self, err, msg):
        if err is not None:
            self.failed.append((str(err), msg.value()))
            return
        ts_type, ts = msg.timestamp()
        self.ok.append(
            Msg(msg.partition(), msg.offset(), msg.key(), msg.value(), tuple(msg.headers() or ()), ts_type, ts)
        )


def flush_all(prod: Producer, timeout_s: float = 120.0) -> None:
    remaining = prod.flush(timeout_s)
    assert remaining == 0, f"{remaining} messages still undelivered after {timeout_s:.0f} s"


def consumer(bootstrap: str, capture: LogCapture | None = None, **overrides) -> Consumer:
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": f"g-{uuid.uuid4().hex[:10]}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
    }
    if capture is not None:
        config["logger"] = capture.logger
    config.update(overrides)
    return Consumer(config)


def high_watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    c = consumer(bootstrap)
    try:
        return {
            p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=DEADLINE_S)[1]
            for p in range(partitions)
        }
    finally:
        c.close()


def consume_all(bootstrap: str, topic: str, partitions: int, until: dict[int, int] | None = None,
                timeout_s: float = DEADLINE_S, **overrides) -> dict[int, list[Msg]]:
    """Read every partition from the beginning up to `until[p]` (default: the high watermark),
    with a consumer assigned to all partitions (no group protocol). Checks per-partition
    offsets only increase."""
    if until is None:
        until = high_watermarks(bootstrap, topic, partitions)
    got: dict[int, list[Msg]] = {p: [] for p in range(partitions)}
    c = consumer(bootstrap, **overrides)
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        deadline = time.monotonic() + timeout_s
        while any((got[p][-1].offset + 1 if got[p] else 0) < until[p] for p in got):
            assert time.monotonic() < deadline, (
                f"consumed only { {p: len(v) for p, v in got.items()} } of {until} "
                f"from {topic} within {timeout_s:.0f} s"
            )
            for m in c.consume(num_messages=10000, timeout=0.5):
                if m.error() is not None:
                    raise KafkaException(m.error())
                ts_type, ts = m.timestamp()
                msg = Msg(m.partition(), m.offset(), m.key(), m.value(), tuple(m.headers() or ()), ts_type, ts)
                lst = got[msg.partition]
                assert not lst or msg.offset > lst[-1].offset, (
                    f"{topic}/{msg.partition}: offset {msg.offset} after {lst[-1].offset}"
                )
                lst.append(msg)
    finally:
        c.close()
    return got


def scrape_metrics(broker) -> dict[tuple, float]:
    """GET /metrics, summed over shards: {(family, api or state label or ""): value};
    histogram buckets are keyed (family, api, le)."""
    status, body = broker.http_get("/metrics")
    assert status == 200, body
    out: dict[tuple, float] = {}
    for line in body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        name, _, labels = series.partition("{")
        api = re.search(r'(?:api|state)="([^"]+)"', labels)
        le = re.search(r'le="([^"]+)"', labels)
        key = (name, api.group(1) if api else "") + ((le.group(1),) if le else ())
        out[key] = out.get(key, 0) + float(value)
    return out
