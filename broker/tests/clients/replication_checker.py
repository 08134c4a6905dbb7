"""A Jepsen-style checker for replicated partitions (issue 19), and the workload that feeds it.

The workload: idempotent producers (acks=all) write unique values `p{producer}-{seq}` to a few
partitions and record every acknowledged (partition, offset, value) from their delivery
reports; a consumer group reads throughout and records every record it is handed, per
assignment session. Afterwards the test reads every partition back (through the leader with a
plain consumer, and each node's log files on disk once the cluster is stopped) and hands all of
it to `check()`, which counts the anomalies Jepsen found in Kafka and Redpanda:

- lost: an acknowledged record absent at its offset in some final view (the leader's read or
  one node's log);
- duplicated: a value stored at more than one (partition, offset);
- inconsistent offsets: a (partition, offset) seen holding two different values anywhere
  (acknowledgements, consumer reads, final views);
- reordered: one producer's values out of sequence order within a partition (final views), or
  acknowledged at offsets out of sequence order;
- consumer skips: an acknowledged offset the consumer group jumped over (inside one assignment
  session, or when a new session started past everything the group had been handed), or never
  handed to the group although it read past it; re-reading after a rebalance is allowed;
- diverged: an offset present in one final view and absent from another (replicas must be
  identical once the cluster is healed and the producers stopped).

The checker is pure (no broker): `test_replication_checker.py` feeds it synthetic histories
with each anomaly. `Workload` runs the producers and consumers in threads of the test process.
"""

from __future__ import annotations

import itertools
import re
import struct
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

VALUE_RE = re.compile(r"^p(\d+)-(\d+)$")

# A final view: {partition: [(offset, value), ...]} in offset order. A view without a
# partition (a node that holds no replica of it) is not compared for that partition.
View = dict[int, list[tuple[int, str]]]


def parse_value(value: str) -> tuple[int, int] | None:
    """(producer, seq) of a workload value, None for anything else."""
    m = VALUE_RE.match(value)
    return (int(m.group(1)), int(m.group(2))) if m else None


@dataclass(frozen=True)
class Ack:
    partition: int
    offset: int
    value: str


@dataclass(frozen=True)
class Delivery:
    """One record handed to a consumer of the group. `session` names one consumer's one
    assignment of the partition (a new session starts at each assignment)."""

    seq: int  # global order of deliveries across the group's consumers
    session: str
    partition: int
    offset: int
    value: str


@dataclass
class History:
    acks: list[Ack] = field(default_factory=list)
    # Values whose delivery report was an error: indeterminate (may or may not be stored).
    failed: list[tuple[str, str]] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    # Final reads: name ("leader", "node1 disk", ...) -> view.
    final: dict[str, View] = field(default_factory=dict)


@dataclass
class Report:
    acknowledged: int = 0
    failed: int = 0
    consumed: int = 0
    lost: int = 0
    duplicated: int = 0
    inconsistent: int = 0
    reordered: int = 0
    skipped: int = 0
    diverged: int = 0
    unexpected: int = 0
    rewinds: int = 0  # re-reads inside one session (allowed, reported)
    views: list[str] = field(default_factory=list)
    examples: dict[str, list] = field(default_factory=lambda: defaultdict(list))

    ANOMALIES = ("lost", "duplicated", "inconsistent", "reordered", "skipped", "diverged", "unexpected")

    def anomalies(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.ANOMALIES if getattr(self, k)}

    def example(self, kind: str, what) -> None:
        if len(self.examples[kind]) < 10:
            self.examples[kind].append(what)

    def summary(self) -> str:
        counts = ", ".join(
            f"{k} {getattr(self, k)}"
            for k in ("acknowledged", "failed", "consumed") + self.ANOMALIES + ("rewinds",)
        )
        lines = [counts, f"views: {', '.join(self.views)}"]
        for kind, items in self.examples.items():
            if items:
                lines.append(f"{kind} e.g.: {items}")
        return "\n".join(lines)


def check(h: History) -> Report:
    r = Report(acknowledged=len(h.acks), failed=len(h.failed), consumed=len(h.deliveries),
               views=sorted(h.final))
    acked_at: dict[tuple[int, int], str] = {}
    acked_offsets: dict[int, list[int]] = defaultdict(list)

    # Every value seen at each (partition, offset), from any source.
    seen_at: dict[tuple[int, int], set[str]] = defaultdict(set)
    for a in h.acks:
        seen_at[(a.partition, a.offset)].add(a.value)
        if (a.partition, a.offset) not in acked_at:
            acked_at[(a.partition, a.offset)] = a.value
            acked_offsets[a.partition].append(a.offset)
    for offsets in acked_offsets.values():
        offsets.sort()
    for d in h.deliveries:
        seen_at[(d.partition, d.offset)].add(d.value)
    for view in h.final.values():
        for p, records in view.items():
            for o, v in records:
                seen_at[(p, o)].add(v)

    # Offsets holding two values.
    for (p, o), values in sorted(seen_at.items()):
        if len(values) > 1:
            r.inconsistent += 1
            r.example("inconsistent", (p, o, sorted(values)))

    # Lost: acknowledged, absent at its offset in some final view.
    indexed = {name: {p: dict(records) for p, records in view.items()} for name, view in h.final.items()}
    for (p, o), v in sorted(acked_at.items()):
        missing_in = [name for name, view in indexed.items() if p in view and view[p].get(o) != v]
        if missing_in:
            r.lost += 1
            r.example("lost", (p, o, v, missing_in))

    # Duplicated: one value at two places (acknowledged twice, or stored twice in a view).
    places: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for a in h.acks:
        places[a.value].add((a.partition, a.offset))
    for view in h.final.values():
        for p, records in view.items():
            for o, v in records:
                places[v].add((p, o))
    for v, where in sorted(places.items()):
        if len(where) > 1:
            r.duplicated += 1
            r.example("duplicated", (v, sorted(where)))

    # Values no producer wrote.
    for v in sorted(places):
        if parse_value(v) is None:
            r.unexpected += 1
            r.example("unexpected", v)

    # Reordered: per partition and producer, sequence numbers must increase with offsets.
    out_of_order: set[tuple[int, str]] = set()

    def scan(records: list[tuple[int, str]], p: int, source: str) -> None:
        last: dict[int, tuple[int, str]] = {}
        for _o, v in records:
            parsed = parse_value(v)
            if parsed is None:
                continue
            producer, seq = parsed
            prev = last.get(producer)
            if prev is not None and seq <= prev[0] and (p, v) not in out_of_order:
                out_of_order.add((p, v))
                r.example("reordered", (source, p, prev[1], v))
            last[producer] = (seq, v)

    by_partition: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for (p, o), v in acked_at.items():
        by_partition[p].append((o, v))
    for p, records in by_partition.items():
        scan(sorted(records), p, "acks")
    for name, view in h.final.items():
        for p, records in view.items():
            scan(sorted(records), p, name)
    r.reordered = len(out_of_order)

    # Diverged: an offset some final view has and another lacks.
    if len(indexed) > 1:
        names = sorted(indexed)
        partitions = set().union(*(set(v) for v in indexed.values()))
        for p in sorted(partitions):
            having = [n for n in names if p in indexed[n]]
            offsets = set().union(*(set(indexed[n][p]) for n in having))
            for o in sorted(offsets):
                lacking = [n for n in having if o not in indexed[n][p]]
                if lacking:
                    r.diverged += 1
                    r.example("diverged", (p, o, lacking))

    # Consumer skips.
    skipped: set[tuple[int, int]] = set()
    frontier: dict[int, int] = defaultdict(int)  # group: max offset handed out + 1
    session_last: dict[tuple[str, int], int] = {}
    delivered: dict[int, set[int]] = defaultdict(set)

    def acked_between(p: int, lo: int, hi: int) -> list[int]:
        """Acknowledged offsets of p in [lo, hi)."""
        import bisect

        offs = acked_offsets.get(p, [])
        return offs[bisect.bisect_left(offs, lo):bisect.bisect_left(offs, hi)]

    for d in sorted(h.deliveries, key=lambda d: d.seq):
        key = (d.session, d.partition)
        last = session_last.get(key)
        lo = frontier[d.partition] if last is None else last + 1
        if last is not None and d.offset <= last:
            r.rewinds += 1
        elif d.offset > lo:
            for o in acked_between(d.partition, lo, d.offset):
                if (d.partition, o) not in skipped:
                    skipped.add((d.partition, o))
                    r.example("skipped", (d.partition, o, f"{d.session} jumped {lo}->{d.offset}"))
        session_last[key] = d.offset
        delivered[d.partition].add(d.offset)
        frontier[d.partition] = max(frontier[d.partition], d.offset + 1)
    if h.deliveries:
        for p, offs in acked_offsets.items():
            for o in acked_between(p, 0, frontier[p]):
                if o not in delivered[p] and (p, o) not in skipped:
                    skipped.add((p, o))
                    r.example("skipped", (p, o, "never handed to the group"))
    r.skipped = len(skipped)
    return r


# -- reading logs from disk ------------------------------------------------------------------

def read_disk_view(data_dir: Path, topic: str, partitions: int) -> tuple[View, list[str]]:
    """Every record of the topic in one node's data dir, from its segment files (Kafka v2
    batches, concatenated; a preallocated tail reads as zeros). Read with the node stopped.
    Returns the view and notes (a partition dir missing, a batch that fails its CRC)."""
    from kafka.record.default_records import DefaultRecordBatch

    view: View = {}
    notes: list[str] = []
    for p in range(partitions):
        pdir = Path(data_dir) / f"{topic}-{p}"
        if not pdir.is_dir():
            notes.append(f"{pdir.name}: no replica here")
            continue
        records: list[tuple[int, str]] = []
        for seg in sorted(pdir.glob("*.log")):
            data = seg.read_bytes()
            pos = 0
            while len(data) - pos >= 61:
                _base, length = struct.unpack_from(">qi", data, pos)
                if length < 49 or pos + 12 + length > len(data):
                    break  # preallocated zeros, or the end of what was written
                raw = bytearray(data[pos:pos + 12 + length])
                batch = DefaultRecordBatch(raw)
                if not batch.validate_crc():
                    notes.append(f"{seg}: batch at +{pos} fails its CRC; stopped reading there")
                    break
                if not batch.is_control_batch:
                    for rec in batch:
                        records.append((rec.offset, (rec.value or b"").decode(errors="replace")))
                pos += 12 + length
        records.sort()
        view[p] = records
    return view, notes


# -- the workload ---------------------------------------------------------------------------

class _Producer(threading.Thread):
    def __init__(self, workload: "Workload", index: int):
        super().__init__(name=f"producer-{index}", daemon=True)
        self.w = workload
        self.index = index
        self.seq = 0

    def run(self) -> None:
        from confluent_kafka import Producer

        w = self.w
        config = {
            "bootstrap.servers": w.bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": w.message_timeout_ms,
            "request.timeout.ms": 10000,
            "error_cb": self._on_error,
        }
        config.update(w.producer_overrides)
        prod = Producer(config)
        interval = 1.0 / w.rate_per_producer
        next_at = time.monotonic()
        partitions = w.partitions
        while not w.stop_producing.is_set():
            value = f"p{self.index}-{self.seq}"
            partition = self.seq % partitions
            self.seq += 1
            while True:
                try:
                    prod.produce(w.topic, key=w.key, value=value.encode(), partition=partition,
                                 on_delivery=self._on_delivery)
                    break
                except BufferError:
                    prod.poll(0.1)
            prod.poll(0)
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                prod.poll(delay)
            else:
                next_at = time.monotonic()
        left = prod.flush(w.flush_timeout_s)
        with w.lock:
            w.unflushed += left

    def _on_delivery(self, err, msg) -> None:
        w = self.w
        value = msg.value().decode()
        with w.lock:
            if err is not None:
                w.history.failed.append((value, str(err)))
                w.delivery_errors[err.name()] += 1
            else:
                w.history.acks.append(Ack(msg.partition(), msg.offset(), value))
                w.last_ack = time.monotonic()

    def _on_error(self, err) -> None:
        with self.w.lock:
            self.w.client_errors.append((err.name(), err.fatal(), err.retriable(), str(err)))


class _Consumer(threading.Thread):
    def __init__(self, workload: "Workload", index: int):
        super().__init__(name=f"consumer-{index}", daemon=True)
        self.w = workload
        self.index = index
        self.generation = 0

    def run(self) -> None:
        from confluent_kafka import Consumer

        w = self.w
        c = Consumer({
            "bootstrap.servers": w.bootstrap,
            "group.id": w.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 1000,
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 1000,
            "enable.partition.eof": False,
        })

        def on_assign(_c, _parts):
            self.generation += 1

        def on_revoke(_c, _parts):
            self.generation += 1

        c.subscribe([w.topic], on_assign=on_assign, on_revoke=on_revoke)
        try:
            while not w.stop_consuming.is_set():
                for m in c.consume(num_messages=500, timeout=0.5):
                    if m.error() is not None:
                        with w.lock:
                            w.consumer_errors[m.error().name()] += 1
                        continue
                    d = Delivery(next(w.delivery_seq), f"c{self.index}g{self.generation}",
                                 m.partition(), m.offset(), (m.value() or b"").decode(errors="replace"))
                    with w.lock:
                        w.history.deliveries.append(d)
        finally:
            c.close()


class Workload:
    """Producers and a consumer group running in threads against `topic`."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, *, producers: int = 2,
                 consumers: int = 2, rate_per_producer: float = 150.0,
                 message_timeout_ms: int = 120000, producer_overrides: dict | None = None,
                 key_bytes: int = 0):
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.rate_per_producer = rate_per_producer
        self.key = b"k" * key_bytes if key_bytes else None  # padding (values stay short)
        self.message_timeout_ms = message_timeout_ms
        self.flush_timeout_s = message_timeout_ms / 1000 + 30
        self.producer_overrides = dict(producer_overrides or {})
        self.group = f"checker-{uuid.uuid4().hex[:8]}"
        self.history = History()
        self.lock = threading.Lock()
        self.delivery_seq = itertools.count()
        self.delivery_errors: dict[str, int] = defaultdict(int)
        self.consumer_errors: dict[str, int] = defaultdict(int)
        self.client_errors: list[tuple[str, bool, bool, str]] = []
        self.unflushed = 0
        self.last_ack = 0.0
        self.stop_producing = threading.Event()
        self.stop_consuming = threading.Event()
        self._producers = [_Producer(self, i) for i in range(producers)]
        self._consumers = [_Consumer(self, i) for i in range(consumers)]

    def start(self) -> "Workload":
        for t in self._consumers + self._producers:
            t.start()
        return self

    def acked(self) -> int:
        with self.lock:
            return len(self.history.acks)

    def wait_acks(self, more: int, timeout_s: float = 120.0) -> None:
        """Wait until `more` further records are acknowledged (progress under the fault)."""
        target = self.acked() + more
        deadline = time.monotonic() + timeout_s
        while self.acked() < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"no progress: {self.acked()} of {target} acknowledged "
                                     f"after {timeout_s:.0f} s; errors {dict(self.delivery_errors)}")
            time.sleep(0.2)

    def stop_producers(self) -> None:
        self.stop_producing.set()
        for t in self._producers:
            t.join(self.flush_timeout_s + 30)
        assert not any(t.is_alive() for t in self._producers), "a producer did not finish flushing"

    def drain_consumers(self, timeout_s: float = 120.0) -> None:
        """Let the group read up to every acknowledged offset (or the deadline), then stop it."""
        with self.lock:
            want: dict[int, int] = defaultdict(lambda: -1)
            for a in self.history.acks:
                want[a.partition] = max(want[a.partition], a.offset)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                got: dict[int, int] = defaultdict(lambda: -1)
                for d in self.history.deliveries:
                    got[d.partition] = max(got[d.partition], d.offset)
            if all(got[p] >= o for p, o in want.items()):
                break
            time.sleep(0.5)
        self.stop_consuming.set()
        for t in self._consumers:
            t.join(60)

    def stop(self) -> None:
        """Teardown: stop everything, never raise."""
        self.stop_producing.set()
        self.stop_consuming.set()
        for t in self._producers + self._consumers:
            t.join(5)

    def errors(self) -> str:
        with self.lock:
            fatal = [e for e in self.client_errors if e[1]]
            kinds = sorted({e[0] for e in self.client_errors})
            return (f"delivery errors {dict(self.delivery_errors)}, client errors {kinds} "
                    f"(fatal {fatal[:3]}), consumer errors {dict(self.consumer_errors)}, "
                    f"unflushed {self.unflushed}")


def read_view_via_consumer(bootstrap: str, topic: str, partitions: int, timeout_s: float = 120.0) -> View:
    """Every partition from the beginning to its high watermark, through the current leaders."""
    import kclients

    msgs = kclients.consume_all(bootstrap, topic, partitions, timeout_s=timeout_s)
    return {p: [(m.offset, (m.value or b"").decode(errors="replace")) for m in ms] for p, ms in msgs.items()}


FIGURE_COLUMNS = ("fault", "RF", "rounds", "acknowledged", "lost", "duplicated", "inconsistent",
                  "reordered", "skipped", "diverged", "heal s (max)")


def figures_row(fault: str, rf: int, rounds: int, report: Report, heal_s: list[float]) -> str:
    """One row of the README's figures table (Markdown)."""
    heal = f"{max(heal_s):.1f}" if heal_s else "-"
    cells = [fault, str(rf), str(rounds), str(report.acknowledged), str(report.lost),
             str(report.duplicated), str(report.inconsistent), str(report.reordered),
             str(report.skipped), str(report.diverged), heal]
    return "| " + " | ".join(cells) + " |"


def figures_header() -> str:
    return ("| " + " | ".join(FIGURE_COLUMNS) + " |\n"
            + "|" + "|".join("---" for _ in FIGURE_COLUMNS) + "|")
