"""The replication checker on synthetic histories (no broker): a clean history passes, and each
anomaly kind is detected and counted."""

from __future__ import annotations

import struct

import pytest

from replication_checker import Ack, Delivery, History, check, figures_header, figures_row, read_disk_view

pytestmark = pytest.mark.timeout(60)


def clean_history() -> History:
    """Two producers, two partitions, 4 records each; the group reads everything once, then
    re-reads partition 1 after a rebalance; two identical final views."""
    log = {
        0: [(0, "p0-0"), (1, "p1-0"), (2, "p0-2"), (3, "p1-2")],
        1: [(0, "p0-1"), (1, "p1-1"), (2, "p0-3"), (3, "p1-3")],
    }
    h = History()
    for p, records in log.items():
        h.acks += [Ack(p, o, v) for o, v in records]
    seq = 0
    for p, records in log.items():
        for o, v in records:
            h.deliveries.append(Delivery(seq, "c0g1", p, o, v))
            seq += 1
    # A rebalance: consumer 1 re-reads partition 1 from offset 2 (allowed).
    for o, v in log[1][2:]:
        h.deliveries.append(Delivery(seq, "c1g1", 1, o, v))
        seq += 1
    h.final = {"leader": {p: list(r) for p, r in log.items()},
               "node2 disk": {p: list(r) for p, r in log.items()}}
    return h


def test_a_clean_history_has_no_anomalies():
    r = check(clean_history())
    assert r.anomalies() == {}, r.summary()
    assert r.acknowledged == 8 and r.consumed == 10
    assert r.rewinds == 0


def test_a_lost_write_is_detected_in_any_view():
    h = clean_history()
    # Node 2 lacks an acknowledged record the leader has (and nothing else differs).
    h.final["node2 disk"][0] = [rec for rec in h.final["node2 disk"][0] if rec[0] != 3]
    r = check(h)
    assert r.lost == 1 and r.diverged == 1, r.summary()
    assert r.examples["lost"][0][:3] == (0, 3, "p1-2")
    # Lost from every view: the acknowledged tail of partition 1 truncated away.
    h = clean_history()
    for view in h.final.values():
        view[1] = view[1][:2]
    r = check(h)
    assert r.lost == 2 and r.diverged == 0, r.summary()


def test_an_offset_holding_two_values_is_detected():
    h = clean_history()
    # The new leader stored another value where an acknowledged one was (Redpanda 21.10).
    for view in h.final.values():
        view[0][2] = (2, "p1-9")
    r = check(h)
    assert r.inconsistent == 1 and r.lost == 1, r.summary()
    assert r.examples["inconsistent"][0] == (0, 2, ["p0-2", "p1-9"])
    # Two acknowledgements of different values at one offset.
    h = clean_history()
    h.acks.append(Ack(1, 0, "p1-7"))
    r = check(h)
    assert r.inconsistent == 1, r.summary()
    # A consumer handed a record that was later truncated and replaced (a read past the HW).
    h = clean_history()
    h.deliveries.append(Delivery(99, "c1g2", 0, 3, "p0-8"))
    r = check(h)
    assert r.inconsistent == 1 and r.lost == 0, r.summary()


def test_duplicates_are_detected():
    h = clean_history()
    # The same value stored twice (a retry the idempotent producer should have deduplicated).
    for view in h.final.values():
        view[0].append((4, "p0-2"))
    r = check(h)
    assert r.duplicated == 1, r.summary()
    assert r.examples["duplicated"][0] == ("p0-2", [(0, 2), (0, 4)])
    # Acknowledged twice at two offsets.
    h = clean_history()
    h.acks.append(Ack(0, 4, "p1-0"))
    r = check(h)
    assert r.duplicated == 1, r.summary()


def test_reordering_within_a_partition_is_detected():
    h = clean_history()
    for view in h.final.values():
        view[1] = [(0, "p0-3"), (1, "p1-1"), (2, "p0-1"), (3, "p1-3")]
    r = check(h)
    assert r.reordered >= 1, r.summary()
    # Acknowledged offsets out of the producer's order.
    h = clean_history()
    h.acks = [a for a in h.acks if a.value not in ("p0-0", "p0-2")]
    h.acks += [Ack(0, 0, "p0-2"), Ack(0, 2, "p0-0")]
    r = check(h)
    assert r.reordered >= 1, r.summary()
    # Different producers interleaving is not reordering (the clean history does it).
    assert check(clean_history()).reordered == 0


def test_consumer_skips_are_detected():
    # Inside one session: 0, 1, then 3 -- offset 2 was acknowledged and jumped over.
    h = clean_history()
    h.deliveries = [d for d in h.deliveries if not (d.partition == 0 and d.offset == 2)]
    r = check(h)
    assert r.skipped == 1, r.summary()
    assert r.examples["skipped"][0][:2] == (0, 2)
    # A new session that starts past everything the group was handed.
    h = clean_history()
    h.deliveries = [d for d in h.deliveries if d.partition != 1]
    h.deliveries += [Delivery(100, "c0g1", 1, 0, "p0-1"), Delivery(101, "c1g2", 1, 2, "p0-3"),
                     Delivery(102, "c1g2", 1, 3, "p1-3")]
    r = check(h)
    assert r.skipped == 1, r.summary()
    # Skipped, then re-read by a later session: still a skip (the group was handed 3 before 2).
    h.deliveries.append(Delivery(103, "c0g3", 1, 1, "p1-1"))
    assert check(h).skipped == 1
    # Re-reading from earlier offsets after a rebalance is not a skip.
    h = clean_history()
    h.deliveries.append(Delivery(200, "c1g5", 0, 0, "p0-0"))
    h.deliveries.append(Delivery(201, "c1g5", 0, 1, "p1-0"))
    assert check(h).anomalies() == {}
    # A rewind inside one session is counted but allowed.
    h = clean_history()
    h.deliveries.append(Delivery(300, "c0g1", 0, 1, "p1-0"))
    r = check(h)
    assert r.rewinds == 1 and r.anomalies() == {}, r.summary()
    # Unacknowledged offsets may be jumped (a failed write left a gap in acknowledgements).
    h = clean_history()
    h.acks = [a for a in h.acks if not (a.partition == 0 and a.offset == 2)]
    h.deliveries = [d for d in h.deliveries if not (d.partition == 0 and d.offset == 2)]
    for view in h.final.values():
        view[0] = [rec for rec in view[0] if rec[0] != 2]
    assert check(h).anomalies() == {}


def test_diverged_replicas_and_unexpected_values_are_detected():
    h = clean_history()
    # A follower kept an unacknowledged tail the leader does not have.
    h.final["node2 disk"][1].append((4, "p0-5"))
    r = check(h)
    assert r.diverged == 1 and r.lost == 0, r.summary()
    h = clean_history()
    for view in h.final.values():
        view[0].append((4, "garbage"))
    r = check(h)
    assert r.unexpected == 1, r.summary()
    # A view without a partition (no replica on that node) is not compared for it.
    h = clean_history()
    del h.final["node2 disk"][1]
    assert check(h).anomalies() == {}


def test_disk_view_reads_segment_files(tmp_path):
    import kwire

    pdir = tmp_path / "t-0"
    pdir.mkdir()
    batches = b""
    for base, values in ((0, [b"p0-0", b"p0-1"]), (2, [b"p1-0"])):
        raw = bytearray(kwire.record_batch([(None, v) for v in values]))
        struct.pack_into(">q", raw, 0, base)  # base offset is outside the CRC
        batches += bytes(raw)
    # A preallocated tail of zeros after the batches.
    (pdir / f"{0:020}.log").write_bytes(batches + bytes(4096))
    view, notes = read_disk_view(tmp_path, "t", 2)
    assert view == {0: [(0, "p0-0"), (1, "p0-1"), (2, "p1-0")]}
    assert notes == ["t-1: no replica here"]


def test_figures_row_format():
    r = check(clean_history())
    header = figures_header().splitlines()
    row = figures_row("kill -9 leader", 3, 2, r, [4.25, 7.5])
    assert header[0].count("|") == row.count("|")
    assert row == "| kill -9 leader | 3 | 2 | 8 | 0 | 0 | 0 | 0 | 0 | 0 | 7.5 |"
