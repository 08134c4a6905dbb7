"""Idempotent-producer state across restarts (clean SIGTERM and kill -9), with the
producer-state snapshots (`producer-state-<offset>.snapshot`, written at segment roll and clean
shutdown): a retried batch is still recognised as a duplicate, the next sequence is still
enforced, and start-up replays only the log after the newest snapshot (nothing at all after a
clean shutdown, whose storage checkpoint also lets recovery skip scanning the segments)."""

from __future__ import annotations

import re

import pytest

import kclients
import kwire

pytestmark = pytest.mark.timeout(300)

PRODUCER_ID = 4242
ERR_OUT_OF_ORDER_SEQUENCE_NUMBER = 45
BATCHES = 200


def batch(seq: int) -> bytes:
    return kwire.record_batch([(b"k", f"v{seq}".encode() + b"x" * 200)], producer_id=PRODUCER_ID,
                              producer_epoch=0, base_sequence=seq)


def lines_of_this_start(broker, message: str, needle: str) -> list[dict[str, str]]:
    """The fields of this start's log lines with `message` that contain `needle`."""
    text = broker.log_text()
    text = text[text.rfind("=== harness: start #"):]
    out = []
    for line in text.splitlines():
        if message in line and needle in line:
            out.append(dict(re.findall(r"(\w+)=(\S+)", line)))
    return out


@pytest.mark.parametrize("how", ["term", "kill"])
def test_idempotent_dedup_survives_restart(broker_factory, topic_name, how):
    broker = broker_factory()
    # Small segments: many rolls, so snapshots exist before the restart.
    kclients.create_topic(broker.bootstrap, topic_name, 1, config={"internal.segment.bytes": "8192"})
    offsets = {}
    with kwire.Conn(broker.bootstrap) as conn:
        for seq in range(BATCHES):
            error, offset = conn.produce_v3(topic_name, 0, batch(seq))
            assert error == 0, f"seq {seq}: error {error}"
            offsets[seq] = offset
    assert list(offsets.values()) == list(range(BATCHES))

    broker.restart(how)

    loaded = lines_of_this_start(broker, "producer state loaded", f"topic={topic_name}")
    opened = lines_of_this_start(broker, "partition log opened", topic_name)
    assert len(opened) == 1, opened
    assert len(loaded) == 1, loaded
    snapshot_end = int(loaded[0]["snapshot_end_offset"])
    replayed = int(loaded[0]["replayed_batches"])
    assert snapshot_end > 0, f"no producer state snapshot was used: {loaded}"
    if how == "term":
        # The shutdown snapshot covers everything: nothing to replay.
        assert snapshot_end == BATCHES and replayed == 0, loaded
        # And the storage's clean-shutdown record: no segment is scanned.
        assert opened[0]["scanned_bytes"] == "0", opened
    else:
        # Only the tail after the last roll's snapshot.
        assert replayed < BATCHES // 2, loaded

    with kwire.Conn(broker.bootstrap) as conn:
        # A retry of one of the last five batches: the original offset, nothing appended.
        error, offset = conn.produce_v3(topic_name, 0, batch(BATCHES - 2))
        assert (error, offset) == (0, offsets[BATCHES - 2])
        # A gap in the sequence is refused; the next sequence is appended at the end.
        error, _ = conn.produce_v3(topic_name, 0, batch(BATCHES + 1))
        assert error == ERR_OUT_OF_ORDER_SEQUENCE_NUMBER
        error, offset = conn.produce_v3(topic_name, 0, batch(BATCHES))
        assert (error, offset) == (0, BATCHES)
    assert kclients.high_watermarks(broker.bootstrap, topic_name, 1)[0] == BATCHES + 1
