"""Bad input over raw sockets. Kafka's behaviour is the reference:
- frame-level garbage, an oversize frame (> socket.request.max.bytes, 100 MiB by default), an
  unknown API key, or an unsupported version of a known API (other than ApiVersions) closes
  that connection only (kafka.network.SocketServer: InvalidReceiveException /
  InvalidRequestException -> close);
- ApiVersions at an unsupported version is answered at v0 with UNSUPPORTED_VERSION and the
  supported ApiVersions range (KIP-511);
- produce to an unknown topic -> UNKNOWN_TOPIC_OR_PARTITION; a batch whose CRC does not match ->
  CORRUPT_MESSAGE and nothing stored.
Afterwards the broker is alive and data acknowledged before is intact."""

from __future__ import annotations

import time

import pytest

import kclients
import kwire
from kwire import i8, i16, i32, string

SOCKET_REQUEST_MAX_BYTES = 104_857_600  # Kafka's default socket.request.max.bytes
BASELINE_TOPIC = "bad-input-baseline"
BASELINE_COUNT = 2000


@pytest.fixture(scope="module", autouse=True)
def baseline(_module_broker):
    """Acknowledged data written before any bad input; checked again at the end."""
    bootstrap = _module_broker.bootstrap
    kclients.create_topic(bootstrap, BASELINE_TOPIC, 3)
    deliveries = kclients.Deliveries()
    prod = kclients.producer(bootstrap, **{"acks": "all"})
    for i in range(BASELINE_COUNT):
        prod.produce(BASELINE_TOPIC, key=f"k{i}".encode(), value=f"baseline-{i}".encode(),
                     partition=i % 3, on_delivery=deliveries)
    kclients.flush_all(prod)
    assert not deliveries.failed, deliveries.failed[:3]
    return {(m.partition, m.offset): m.value for m in deliveries.ok}


def assert_other_clients_work(broker, topic):
    """A fresh raw connection and a real client both still get answers."""
    with kwire.Conn(broker.bootstrap) as conn:
        error, versions = conn.api_versions_v0()
        assert error == 0 and kwire.API_PRODUCE in versions
    deliveries = kclients.Deliveries()
    prod = kclients.producer(broker.bootstrap)
    prod.produce(topic, value=b"still-working", on_delivery=deliveries)
    kclients.flush_all(prod, timeout_s=60)
    assert not deliveries.failed and len(deliveries.ok) == 1


GARBAGE = {
    "short-header": i32(3) + b"\x01\x02\x03",
    "zero-length": i32(0),
    "negative-length": i32(-5) + b"\x00" * 8,
    "http-request": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "random-bytes": i32(64) + bytes((i * 37 + 11) % 256 for i in range(64)),
    # A well-formed Metadata v1 header whose body claims 1000 topics but holds none.
    "truncated-body": i32(2 + 2 + 4 + 2 + 4) + i16(kwire.API_METADATA) + i16(1) + i32(7) + i16(-1) + i32(1000),
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_closes_only_that_connection(broker, topic_name, kind):
    kclients.create_topic(broker.bootstrap, topic_name, 1)
    bystander = kwire.Conn(broker.bootstrap)
    assert bystander.api_versions_v0()[0] == 0
    with kwire.Conn(broker.bootstrap) as bad:
        bad.send_raw(GARBAGE[kind])
        assert bad.closed_by_peer(30), f"broker kept the connection open after {kind} garbage"
    # The connection opened before the garbage is unaffected.
    assert bystander.api_versions_v0()[0] == 0
    bystander.close()
    assert_other_clients_work(broker, topic_name)


def test_oversize_frame_closes_connection(broker, topic_name):
    kclients.create_topic(broker.bootstrap, topic_name, 1)
    with kwire.Conn(broker.bootstrap) as bad:
        # Only the size prefix and a few bytes: the broker must not wait for (or buffer) 100 MiB.
        bad.send_raw(i32(SOCKET_REQUEST_MAX_BYTES + 1) + i16(kwire.API_METADATA) + i16(1) + i32(1))
        assert bad.closed_by_peer(30), "oversize frame did not close the connection"
    with kwire.Conn(broker.bootstrap) as bad:
        bad.send_raw(i32(0x7FFFFFFF))
        assert bad.closed_by_peer(30), "2 GiB frame size did not close the connection"
    assert_other_clients_work(broker, topic_name)


@pytest.mark.parametrize("api_key", [12345, 32767, -1])
def test_unknown_api_key_closes_connection(broker, topic_name, api_key):
    kclients.create_topic(broker.bootstrap, topic_name, 1)
    with kwire.Conn(broker.bootstrap) as bad:
        bad.send_frame(kwire.request_header(api_key, 0, 1, "bad-client"))
        assert bad.closed_by_peer(30), f"unknown api key {api_key}: connection not closed"
    assert_other_clients_work(broker, topic_name)


def test_unsupported_version_of_known_api_closes_connection(broker, topic_name):
    kclients.create_topic(broker.bootstrap, topic_name, 1)
    with kwire.Conn(broker.bootstrap) as conn:
        _, versions = conn.api_versions_v0()
        too_new = versions[kwire.API_METADATA][1] + 1
    with kwire.Conn(broker.bootstrap) as bad:
        bad.send_frame(kwire.request_header(kwire.API_METADATA, too_new, 1, "bad-client", flexible=True)
                       + kwire.uvarint(1) + i8(1) + kwire.uvarint(0))
        assert bad.closed_by_peer(30), f"Metadata v{too_new} (unsupported): connection not closed"
    assert_other_clients_work(broker, topic_name)


def test_api_versions_v0_lists_what_clients_need(broker):
    with kwire.Conn(broker.bootstrap) as conn:
        error, versions = conn.api_versions_v0()
    assert error == 0
    # librdkafka needs Produce >= 3 and Fetch >= 4 for v2 batches, Produce >= 7 / Fetch >= 10
    # for zstd, and FindCoordinator to compress lz4 at all (kafka-compat-notes.md).
    assert versions[kwire.API_PRODUCE][0] <= 3 <= 7 <= versions[kwire.API_PRODUCE][1], versions[0]
    assert versions[kwire.API_FETCH][0] <= 4 <= 10 <= versions[kwire.API_FETCH][1], versions[1]
    assert 10 in versions, "FindCoordinator not advertised"
    assert versions[kwire.API_API_VERSIONS][0] == 0 and versions[kwire.API_API_VERSIONS][1] >= 3


def parse_v0_fallback(reader: kwire.Reader) -> tuple[int, dict[int, tuple[int, int]]]:
    error = reader.i16()
    keys = reader.array(lambda r: (r.i16(), r.i16(), r.i16())) or []
    return error, {k: (lo, hi) for k, lo, hi in keys}


def api_versions_flexible_body() -> bytes:
    return kwire.compact_string("ringtail-tests") + kwire.compact_string("1.0") + kwire.uvarint(0)


def test_api_versions_unsupported_version_kip511_fallback(broker, topic_name):
    kclients.create_topic(broker.bootstrap, topic_name, 1)
    with kwire.Conn(broker.bootstrap) as conn:
        reader = conn.request(kwire.API_API_VERSIONS, 99, api_versions_flexible_body(), flexible_request=True)
        error, versions = parse_v0_fallback(reader)
        assert error == kwire.ERR_UNSUPPORTED_VERSION
        assert kwire.API_API_VERSIONS in versions, versions
        lo, hi = versions[kwire.API_API_VERSIONS]
        assert lo == 0 and 3 <= hi < 99
        # The connection stays usable: the client retries at a supported version.
        reader = conn.request(kwire.API_API_VERSIONS, hi, api_versions_flexible_body(), flexible_request=True)
        assert reader.i16() == 0
        keys = reader.compact_array(lambda r: (r.i16(), r.i16(), r.i16(), r.skip_tagged_fields()))
        assert kwire.API_PRODUCE in {k[0] for k in keys}
    assert_other_clients_work(broker, topic_name)


def test_api_versions_v4_as_kafka_python_sends_it(broker):
    """kafka-python 3.x opens with ApiVersions v4: answered at v4, or with the KIP-511 fallback."""
    with kwire.Conn(broker.bootstrap) as conn:
        _, versions = conn.api_versions_v0()
        reader = conn.request(kwire.API_API_VERSIONS, 4, api_versions_flexible_body(), flexible_request=True)
        if versions[kwire.API_API_VERSIONS][1] >= 4:
            assert reader.i16() == 0
            keys = reader.compact_array(lambda r: (r.i16(), r.i16(), r.i16(), r.skip_tagged_fields()))
            assert {k[0]: (k[1], k[2]) for k in keys} == versions
        else:
            error, fallback = parse_v0_fallback(reader)
            assert error == kwire.ERR_UNSUPPORTED_VERSION
            assert fallback[kwire.API_API_VERSIONS] == versions[kwire.API_API_VERSIONS]


def test_produce_to_unknown_topic_is_refused(broker, topic_name):
    with kwire.Conn(broker.bootstrap) as conn:
        error, _ = conn.produce_v3(topic_name, 0, kwire.record_batch([(b"k", b"v")]))
        assert error == kwire.ERR_UNKNOWN_TOPIC_OR_PARTITION
        # A partition beyond an existing topic's count is unknown too.
        kclients.create_topic(broker.bootstrap, topic_name, 2)
        error, _ = conn.produce_v3(topic_name, 5, kwire.record_batch([(b"k", b"v")]))
        assert error == kwire.ERR_UNKNOWN_TOPIC_OR_PARTITION


def metadata_v4(conn: kwire.Conn, topic: str, allow_auto_create: bool):
    body = kwire.array([string(topic)]) + i8(1 if allow_auto_create else 0)
    r = conn.request(kwire.API_METADATA, 4, body)
    r.i32()  # throttle
    r.array(lambda r: (r.i32(), r.string(), r.i32(), r.string()))  # brokers
    r.string()  # cluster id
    r.i32()  # controller
    topics = r.array(lambda r: (r.i16(), r.string(), r.i8(),
                                r.array(lambda r: (r.i16(), r.i32(), r.i32(),
                                                   r.array(lambda r: r.i32()), r.array(lambda r: r.i32())))))
    assert topics and topics[0][1] == topic, topics
    return topics[0]


def test_idle_connections_closed_after_connections_max_idle_ms(broker_factory, topic_name):
    """Kafka's `connections.max.idle.ms`: a connection that sends nothing for that long is
    closed by the broker, while one that keeps sending stays open."""
    broker = broker_factory(config={"connections.max.idle.ms": 1500})
    with kwire.Conn(broker.bootstrap) as idle, kwire.Conn(broker.bootstrap) as busy:
        for conn in (idle, busy):
            metadata_v4(conn, topic_name, allow_auto_create=True)
        # The busy one asks for metadata every 200 ms for about three idle timeouts.
        for _ in range(25):
            time.sleep(0.2)
            metadata_v4(busy, topic_name, allow_auto_create=False)
        idle.sock.settimeout(60)
        try:
            data = idle.sock.recv(1)
        except ConnectionResetError:
            data = b""
        assert data == b"", "the idle connection should have been closed"


def test_unknown_topic_with_auto_create_disabled(broker_factory, topic_name):
    broker = broker_factory(config={"auto.create.topics.enable": False})
    with kwire.Conn(broker.bootstrap) as conn:
        error, name, _internal, partitions = metadata_v4(conn, topic_name, allow_auto_create=True)
        assert error == kwire.ERR_UNKNOWN_TOPIC_OR_PARTITION and not partitions
        error, _ = conn.produce_v3(topic_name, 0, kwire.record_batch([(b"k", b"v")]))
        assert error == kwire.ERR_UNKNOWN_TOPIC_OR_PARTITION
        time.sleep(1)
        error, *_ = metadata_v4(conn, topic_name, allow_auto_create=True)
        assert error == kwire.ERR_UNKNOWN_TOPIC_OR_PARTITION, "topic was created although auto-create is off"


def test_metadata_auto_creates_topic_by_default(broker, topic_name):
    """Kafka's default auto.create.topics.enable=true: a Metadata request creates the topic."""
    with kwire.Conn(broker.bootstrap) as conn:
        deadline = time.monotonic() + 60
        while True:
            error, _name, _internal, partitions = metadata_v4(conn, topic_name, allow_auto_create=True)
            if error == 0 and partitions and all(p[2] >= 0 for p in partitions):
                break
            assert error in (0, 5), f"metadata error {error}"  # 5 = LEADER_NOT_AVAILABLE while creating
            assert time.monotonic() < deadline, "auto-created topic never became available"
            time.sleep(0.2)
        assert len(partitions) == 1  # num.partitions default


@pytest.mark.parametrize("damage", ["payload-byte", "crc-field"])
def test_corrupt_crc_is_refused_and_not_stored(broker, topic_name, damage):
    kclients.create_topic(broker.bootstrap, topic_name, 1)
    batch = bytearray(kwire.record_batch([(b"key-%d" % i, b"value-%d" % i) for i in range(10)]))
    if damage == "payload-byte":
        batch[-3] ^= 0xFF
    else:
        batch[kwire.BATCH_CRC_OFFSET] ^= 0x01
    with kwire.Conn(broker.bootstrap) as conn:
        error, _ = conn.produce_v3(topic_name, 0, bytes(batch))
        assert error == kwire.ERR_CORRUPT_MESSAGE, f"corrupt batch answered with error {error}"
        fetched = conn.fetch_v4(topic_name, 0, 0)
        assert fetched.error == 0 and fetched.high_watermark == 0 and not fetched.records
        # The next good batch lands at offset 0: nothing of the corrupt one was stored.
        error, base_offset = conn.produce_v3(topic_name, 0, kwire.record_batch([(b"k", b"good")]))
        assert (error, base_offset) == (0, 0)
        records = [r for b in kwire.fetch_all_batches(conn, topic_name, 0) for r in kwire.decode_records(b)]
        assert [(r[0], r[2], r[3]) for r in records] == [(0, b"k", b"good")]


def test_zz_broker_alive_and_acknowledged_data_intact(broker, baseline):
    """Runs last in this module (file order): after every bad input above."""
    assert broker.alive()
    status, _ = broker.http_get("/health")
    assert status == 200
    status, _ = broker.http_get("/ready")
    assert status == 200
    got = kclients.consume_all(broker.bootstrap, BASELINE_TOPIC, 3)
    stored = {(p, m.offset): m.value for p, msgs in got.items() for m in msgs}
    assert stored == baseline
