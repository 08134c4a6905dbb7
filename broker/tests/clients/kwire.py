"""Hand-built Kafka requests over a plain socket, for what real clients never send (garbage,
corrupt CRCs, unsupported versions) and for what they never show (stored batch attributes).

Only the non-flexible versions that Kafka 4.0 still accepts are built here (Produce v3,
Fetch v4, ApiVersions v0/v3, Metadata v1): simple to encode, and any Kafka broker must take them.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

API_PRODUCE = 0
API_FETCH = 1
API_METADATA = 3
API_API_VERSIONS = 18

ERR_NONE = 0
ERR_CORRUPT_MESSAGE = 2
ERR_UNKNOWN_TOPIC_OR_PARTITION = 3
ERR_UNSUPPORTED_VERSION = 35

# Kafka v2 RecordBatch header: baseOffset(8) batchLength(4) partitionLeaderEpoch(4) magic(1)
# crc(4) attributes(2) ... ; batchLength counts from partitionLeaderEpoch on.
BATCH_LENGTH_OFFSET = 8
BATCH_MAGIC_OFFSET = 16
BATCH_CRC_OFFSET = 17
BATCH_ATTRIBUTES_OFFSET = 21
BATCH_HEADER_BYTES = 61

CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


# -- encoding --------------------------------------------------------------------------------
def i8(v: int) -> bytes:
    return struct.pack(">b", v)


def i16(v: int) -> bytes:
    return struct.pack(">h", v)


def i32(v: int) -> bytes:
    return struct.pack(">i", v)


def i64(v: int) -> bytes:
    return struct.pack(">q", v)


def string(v: str | None) -> bytes:
    if v is None:
        return i16(-1)
    raw = v.encode()
    return i16(len(raw)) + raw


def nbytes(v: bytes | None) -> bytes:
    if v is None:
        return i32(-1)
    return i32(len(v)) + bytes(v)


def array(items: list[bytes]) -> bytes:
    return i32(len(items)) + b"".join(items)


def uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def compact_string(v: str | None) -> bytes:
    if v is None:
        return uvarint(0)
    raw = v.encode()
    return uvarint(len(raw) + 1) + raw


def request_header(api_key: int, version: int, correlation_id: int, client_id: str | None,
                   flexible: bool = False) -> bytes:
    """Request header v1 (or v2 with an empty tagged-field section when `flexible`)."""
    header = i16(api_key) + i16(version) + i32(correlation_id) + string(client_id)
    if flexible:
        header += uvarint(0)
    return header


# -- decoding --------------------------------------------------------------------------------
class Reader:
    def __init__(self, data: bytes):
        self.data = memoryview(data)
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"response truncated: need {n} bytes at {self.pos}, have {len(self.data)}")
        chunk = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return chunk

    def i8(self) -> int:
        return struct.unpack(">b", self.take(1))[0]

    def i16(self) -> int:
        return struct.unpack(">h", self.take(2))[0]

    def i32(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def i64(self) -> int:
        return struct.unpack(">q", self.take(8))[0]

    def string(self) -> str | None:
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def nbytes(self) -> bytes | None:
        n = self.i32()
        return None if n < 0 else self.take(n)

    def array(self, item):
        n = self.i32()
        return None if n < 0 else [item(self) for _ in range(n)]

    def uvarint(self) -> int:
        shift = 0
        value = 0
        while True:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def compact_array(self, item):
        n = self.uvarint()
        return None if n == 0 else [item(self) for _ in range(n - 1)]

    def skip_tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())

    def remaining(self) -> int:
        return len(self.data) - self.pos


# -- connection ------------------------------------------------------------------------------
class Conn:
    """One Kafka connection speaking raw frames."""

    def __init__(self, bootstrap: str, timeout_s: float = 30.0, client_id: str = "ringtail-raw-tests"):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        self.sock.settimeout(timeout_s)
        self.client_id = client_id
        self.next_correlation_id = 1

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, payload: bytes) -> None:
        self.sock.sendall(i32(len(payload)) + payload)

    def _recv_exact(self, n: int) -> bytes:
        chunks = []
        while n:
            chunk = self.sock.recv(min(n, 1 << 20))
            if not chunk:
                raise ConnectionError("connection closed by broker")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def recv_frame(self) -> bytes:
        (size,) = struct.unpack(">i", self._recv_exact(4))
        return self._recv_exact(size)

    def request(self, api_key: int, version: int, body: bytes, *, flexible_request: bool = False,
                flexible_response: bool = False) -> Reader:
        """Send one request and return a Reader positioned after the response header."""
        correlation_id = self.next_correlation_id
        self.next_correlation_id += 1
        header = request_header(api_key, version, correlation_id, self.client_id, flexible_request)
        self.send_frame(header + body)
        reader = Reader(self.recv_frame())
        got = reader.i32()
        assert got == correlation_id, f"correlation id {got}, expected {correlation_id}"
        if flexible_response:
            reader.skip_tagged_fields()
        return reader

    def closed_by_peer(self, timeout_s: float = 30.0) -> bool:
        """True when the broker closes this connection within the timeout (EOF or reset).
        Any bytes the broker sends first are read and ignored."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                if not self.sock.recv(65536):
                    return True
            except (ConnectionResetError, BrokenPipeError):
                return True
            except socket.timeout:
                return False
        return False

    # -- typed requests ------------------------------------------------------------------
    def api_versions_v0(self) -> tuple[int, dict[int, tuple[int, int]]]:
        r = self.request(API_API_VERSIONS, 0, b"")
        error = r.i16()
        keys = r.array(lambda r: (r.i16(), r.i16(), r.i16())) or []
        return error, {k: (lo, hi) for k, lo, hi in keys}

    def produce_v3(self, topic: str, partition: int, records: bytes, acks: int = -1,
                   timeout_ms: int = 30000) -> tuple[int, int]:
        """Produce one record set; returns (error_code, base_offset)."""
        body = (
            string(None)
            + i16(acks)
            + i32(timeout_ms)
            + array([string(topic) + array([i32(partition) + nbytes(records)])])
        )
        r = self.request(API_PRODUCE, 3, body)
        responses = r.array(
            lambda r: (r.string(), r.array(lambda r: (r.i32(), r.i16(), r.i64(), r.i64())))
        )
        assert responses and responses[0][0] == topic, f"unexpected produce response {responses}"
        partition_id, error, base_offset, _log_append_time = responses[0][1][0]
        assert partition_id == partition
        return error, base_offset

    def fetch_v4(self, topic: str, partition: int, offset: int, max_bytes: int = 8 << 20,
                 max_wait_ms: int = 100) -> "FetchedPartition":
        body = (
            i32(-1)  # replica id: a consumer
            + i32(max_wait_ms)
            + i32(1)  # min bytes
            + i32(max_bytes)
            + i8(0)  # read_uncommitted
            + array([string(topic) + array([i32(partition) + i64(offset) + i32(max_bytes)])])
        )
        r = self.request(API_FETCH, 4, body)
        r.i32()  # throttle time
        topics = read_fetch_v4_topics(r)
        assert topics and topics[0][0] == topic, f"unexpected fetch response {topics}"
        return topics[0][1][0]

    def send_fetch_v4(self, topic: str, partitions: list[tuple[int, int]], max_wait_ms: int,
                      min_bytes: int = 1, max_bytes: int = 8 << 20) -> int:
        """Send a Fetch v4 for (partition, offset) pairs of one topic without waiting for the
        answer (a long poll parks it on the broker); returns its correlation id for
        `recv_fetch_v4`."""
        correlation_id = self.next_correlation_id
        self.next_correlation_id += 1
        body = (
            i32(-1)  # replica id: a consumer
            + i32(max_wait_ms)
            + i32(min_bytes)
            + i32(max_bytes)
            + i8(0)  # read_uncommitted
            + array([string(topic) + array([i32(p) + i64(offset) + i32(max_bytes) for p, offset in partitions])])
        )
        self.send_frame(request_header(API_FETCH, 4, correlation_id, self.client_id) + body)
        return correlation_id

    def recv_fetch_v4(self, correlation_id: int) -> dict[int, "FetchedPartition"]:
        """The answer to `send_fetch_v4`: {partition: FetchedPartition} (one topic)."""
        r = Reader(self.recv_frame())
        got = r.i32()
        assert got == correlation_id, f"correlation id {got}, expected {correlation_id}"
        r.i32()  # throttle time
        topics = read_fetch_v4_topics(r) or []
        return {p.partition: p for _, parts in topics for p in parts or []}


@dataclass
class FetchedPartition:
    partition: int
    error: int
    high_watermark: int
    last_stable_offset: int
    aborted: list | None
    records: bytes = field(repr=False)


@dataclass
class StoredBatch:
    base_offset: int
    length: int
    magic: int
    attributes: int
    raw: bytes = field(repr=False)

    @property
    def codec(self) -> int:
        return self.attributes & 0x7

    @property
    def last_offset(self) -> int:
        return self.base_offset + struct.unpack_from(">i", self.raw, 23)[0]

    @property
    def producer_id(self) -> int:
        return struct.unpack_from(">q", self.raw, 43)[0]

    @property
    def producer_epoch(self) -> int:
        return struct.unpack_from(">h", self.raw, 51)[0]

    @property
    def base_sequence(self) -> int:
        return struct.unpack_from(">i", self.raw, 53)[0]

    @property
    def record_count(self) -> int:
        return struct.unpack_from(">i", self.raw, 57)[0]


def split_batches(records: bytes) -> list[StoredBatch]:
    """Split fetched bytes into whole v2 batches (a trailing partial batch is dropped, as
    Kafka may cut the last one at max_bytes)."""
    batches = []
    pos = 0
    while len(records) - pos >= 12:
        base_offset, length = struct.unpack_from(">qi", records, pos)
        end = pos + 12 + length
        if end > len(records):
            break
        raw = records[pos:end]
        magic = raw[BATCH_MAGIC_OFFSET]
        attributes = struct.unpack_from(">h", raw, BATCH_ATTRIBUTES_OFFSET)[0]
        batches.append(StoredBatch(base_offset, length, magic, attributes, raw))
        pos = end
    return batches


def fetch_all_batches(conn: Conn, topic: str, partition: int, deadline_s: float = 60.0) -> list[StoredBatch]:
    """All stored batches of a partition from offset 0 up to its high watermark."""
    deadline = time.monotonic() + deadline_s
    batches: list[StoredBatch] = []
    offset = 0
    while True:
        fetched = conn.fetch_v4(topic, partition, offset)
        assert fetched.error == ERR_NONE, f"fetch {topic}/{partition}@{offset}: error {fetched.error}"
        got = split_batches(fetched.records)
        batches.extend(got)
        if got:
            offset = got[-1].last_offset + 1
        if offset >= fetched.high_watermark:
            return batches
        assert time.monotonic() < deadline, (
            f"fetch {topic}/{partition} stuck at offset {offset} (high watermark {fetched.high_watermark})"
        )


def record_batch(records: list[tuple[bytes | None, bytes | None]], *, codec: str = "none",
                 timestamp_ms: int | None = None, producer_id: int = -1, producer_epoch: int = -1,
                 base_sequence: int = -1) -> bytes:
    """A valid v2 RecordBatch (kafka-python's builder computes the CRC32C)."""
    from kafka.record.default_records import DefaultRecordBatchBuilder

    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=CODEC_IDS[codec],
        is_transactional=False,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        batch_size=1 << 30,
    )
    ts = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
    for offset, (key, value) in enumerate(records):
        builder.append(offset, timestamp=ts, key=key, value=value, headers=[])
    return bytes(builder.build())


def decode_records(batch: StoredBatch):
    """(offset, timestamp, key, value, headers) of every record in a stored batch."""
    from kafka.record.default_records import DefaultRecordBatch

    decoded = DefaultRecordBatch(bytearray(batch.raw))
    assert decoded.validate_crc(), f"stored batch at offset {batch.base_offset} fails its CRC32C"
    return [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in decoded]


def read_fetch_v4_topics(r: "Reader") -> list:
    """The topics array of a Fetch v4 response body (after throttle time):
    [(topic, [FetchedPartition, ...]), ...]."""
    return r.array(
        lambda r: (
            r.string(),
            r.array(
                lambda r: FetchedPartition(
                    partition=r.i32(),
                    error=r.i16(),
                    high_watermark=r.i64(),
                    last_stable_offset=r.i64(),
                    aborted=r.array(lambda r: (r.i64(), r.i64())),
                    records=r.nbytes() or b"",
                )
            ),
        )
    )
