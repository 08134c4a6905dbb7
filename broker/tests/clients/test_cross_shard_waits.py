"""Fetch long polls that wait on another shard (the broker runs two shards, `cores="0,1"`).

A fetch is served by the shard that accepted its connection; when it waits for data it parks
one wait on each shard owning one of its partitions. These tests check that such a remote wait
takes none of the request slots produce needs (`max_cross_shard_requests_per_shard`), and
that it is cancelled when its fetch answers, so none stays parked
(`ringtail_cross_shard_waits_parked` on `/metrics`).

Fetches are sent as raw frames (`kwire`) so that each one's connection, home shard and parked
state are known; the produce side is a real confluent-kafka producer. Every wait has a
deadline; sockets have timeouts.
"""

from __future__ import annotations

import re
import select
import time

import kclients
import kwire

SHARDS = 2
# The broker clamps a fetch's max_wait_ms to this (FETCH_WAIT_MS_MAX): a parked fetch and its
# remote wait end by themselves this long after they were sent.
FETCH_WAIT_MS_MAX = 30_000
DEADLINE_S = 60.0
# Well under FETCH_WAIT_MS_MAX: what must happen before the parked fetches time out.
WHILE_PARKED_S = 20.0


def owner_of(topic: str, partition: int, shards: int = SHARDS) -> int:
    """The broker's partition placement (`meta::owner_of`): FNV-1a of the name plus the index."""
    h = 0xCBF29CE484222325
    for byte in topic.encode():
        h ^= byte
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return ((h + partition) & 0xFFFFFFFFFFFFFFFF) % shards


def per_shard(broker, family: str, api: str | None = None) -> dict[int, float]:
    """One metric family by shard, from /metrics."""
    status, body = broker.http_get("/metrics")
    assert status == 200, body
    out = {s: 0.0 for s in range(SHARDS)}
    for line in body.decode().splitlines():
        if not line.startswith(family + "{"):
            continue
        series, value = line.rsplit(" ", 1)
        if api is not None and f'api="{api}"' not in series:
            continue
        shard = re.search(r'shard="(\d+)"', series)
        if shard:
            out[int(shard.group(1))] += float(value)
    return out


def home_shard(broker, conn: kwire.Conn) -> int:
    """The shard serving `conn`: the one whose ApiVersions count grows by its request."""
    before = per_shard(broker, "ringtail_requests_total", "ApiVersions")
    error, _ = conn.api_versions_v0()
    assert error == kwire.ERR_NONE
    after = per_shard(broker, "ringtail_requests_total", "ApiVersions")
    grown = [s for s in range(SHARDS) if after[s] > before[s]]
    assert len(grown) == 1, (before, after)
    return grown[0]


def connections_on_each_shard(broker, per_shard_wanted: int) -> list[tuple[kwire.Conn, int]]:
    """At least `per_shard_wanted` connections served by each shard (the kernel spreads new
    connections over the shards; surplus ones are closed)."""
    conns: list[tuple[kwire.Conn, int]] = []
    counts = {s: 0 for s in range(SHARDS)}
    for _ in range(200):
        if all(n >= per_shard_wanted for n in counts.values()):
            return conns
        conn = kwire.Conn(broker.bootstrap)
        shard = home_shard(broker, conn)
        if counts[shard] >= per_shard_wanted:
            conn.close()
            continue
        counts[shard] += 1
        conns.append((conn, shard))
    for conn, _ in conns:
        conn.close()
    raise AssertionError(f"the kernel never spread connections over both shards: {counts}")


def wait_metric(broker, family: str, ok, what: str, deadline_s: float = DEADLINE_S) -> dict[int, float]:
    """Polls a per-shard metric (refreshed by each shard once a second) until `ok(values)`."""
    deadline = time.monotonic() + deadline_s
    while True:
        values = per_shard(broker, family)
        if ok(values):
            return values
        assert time.monotonic() < deadline, f"{what}: {family} is {values}"
        time.sleep(0.1)


def unanswered(conns: list[kwire.Conn]) -> list[kwire.Conn]:
    """The connections with nothing to read yet (their fetch is still parked)."""
    readable, _, _ = select.select([c.sock for c in conns], [], [], 0)
    return [c for c in conns if c.sock not in readable]


def produce_one(broker, topic: str, partition: int, value: bytes) -> None:
    with kwire.Conn(broker.bootstrap) as conn:
        error, _ = conn.produce_v3(topic, partition, kwire.record_batch([(None, value)]))
        assert error == kwire.ERR_NONE


def test_produce_is_answered_while_more_fetches_than_request_slots_stay_parked(broker_factory, topic_name):
    slots = 2
    fetches_per_shard = slots + 2
    broker = broker_factory(settings={"max_cross_shard_requests_per_shard": slots})
    waited, produced = f"{topic_name}-waited", f"{topic_name}-produced"
    kclients.create_topic(broker.bootstrap, waited, SHARDS)
    kclients.create_topic(broker.bootstrap, produced, SHARDS)
    assert {owner_of(waited, p) for p in range(SHARDS)} == set(range(SHARDS))
    assert {owner_of(produced, p) for p in range(SHARDS)} == set(range(SHARDS))

    # Each fetch reads a partition of each shard, so each parks one wait on the shard that
    # does not serve its connection: more waits on each shard than it has request slots.
    conns = connections_on_each_shard(broker, fetches_per_shard)
    try:
        fetches = [
            (conn, conn.send_fetch_v4(waited, [(p, 0) for p in range(SHARDS)], FETCH_WAIT_MS_MAX))
            for conn, _ in conns
        ]
        sent_at = time.monotonic()
        wait_metric(
            broker,
            "ringtail_cross_shard_waits_parked",
            lambda v: all(v[s] == fetches_per_shard for s in range(SHARDS)),
            "every fetch parks one wait on the other shard",
            deadline_s=WHILE_PARKED_S,
        )

        # A real producer writing to partitions of both shards: each of its requests needs a
        # request slot on the shard that does not serve its connection.
        deliveries = kclients.Deliveries()
        prod = kclients.producer(broker.bootstrap, **{"message.timeout.ms": int(WHILE_PARKED_S * 1000)})
        count = 200
        for i in range(count):
            prod.produce(produced, value=b"v%d" % i, partition=i % SHARDS, on_delivery=deliveries)
        remaining = prod.flush(WHILE_PARKED_S)
        assert remaining == 0 and not deliveries.failed and len(deliveries.ok) == count, (
            f"produce not answered while fetches were parked: {remaining} left, "
            f"failed {deliveries.failed[:3]}"
        )
        assert time.monotonic() - sent_at < FETCH_WAIT_MS_MAX / 1000, "the fetches timed out first"
        # ... and the fetches are still parked, with their remote waits.
        assert len(unanswered([c for c, _ in fetches])) == len(fetches)
        parked = per_shard(broker, "ringtail_cross_shard_waits_parked")
        assert all(parked[s] == fetches_per_shard for s in range(SHARDS)), parked

        # Data for the fetches: every one answers with it, and no wait stays behind.
        for p in range(SHARDS):
            produce_one(broker, waited, p, b"wake")
        for conn, correlation_id in fetches:
            conn.sock.settimeout(WHILE_PARKED_S)
            got = conn.recv_fetch_v4(correlation_id)
            assert all(part.error == kwire.ERR_NONE for part in got.values()), got
            assert any(part.records for part in got.values()), got
        wait_metric(
            broker,
            "ringtail_cross_shard_waits_parked",
            lambda v: all(v[s] == 0 for s in range(SHARDS)),
            "answered fetches leave no wait parked",
            deadline_s=WHILE_PARKED_S,
        )
    finally:
        for conn, _ in conns:
            conn.close()


def test_remote_waits_are_cancelled_when_their_fetch_answers(broker, topic_name):
    kclients.create_topic(broker.bootstrap, topic_name, SHARDS)
    by_owner = {owner_of(topic_name, p): p for p in range(SHARDS)}
    assert set(by_owner) == set(range(SHARDS))
    conns = connections_on_each_shard(broker, 2)
    rounds = 5
    cancelled_before = per_shard(broker, "ringtail_cross_shard_waits_cancelled_total")
    try:
        for round_ in range(rounds):
            # Shard 0's partition has `round_` records by now; shard 1's has none.
            offsets = [(by_owner[0], round_), (by_owner[1], 0)]
            fetches = [
                (conn, shard, conn.send_fetch_v4(topic_name, offsets, FETCH_WAIT_MS_MAX))
                for conn, shard in conns
            ]
            wait_metric(
                broker,
                "ringtail_cross_shard_waits_parked",
                lambda v: sum(v.values()) == len(fetches),
                f"round {round_}: every fetch parks one wait on the other shard",
                deadline_s=WHILE_PARKED_S,
            )
            # Data on shard 0's partition only: fetches served by shard 0 see it through
            # their local wait, so their wait on shard 1 must be cancelled; fetches served
            # by shard 1 see it through their wait on shard 0, which answers.
            produce_one(broker, topic_name, by_owner[0], b"round %d" % round_)
            for conn, _, correlation_id in fetches:
                conn.sock.settimeout(WHILE_PARKED_S)
                got = conn.recv_fetch_v4(correlation_id)
                assert got[by_owner[0]].error == kwire.ERR_NONE and got[by_owner[0]].records, got
            # Well before the remote waits' own timeouts: nothing stays parked.
            wait_metric(
                broker,
                "ringtail_cross_shard_waits_parked",
                lambda v: sum(v.values()) == 0,
                f"round {round_}: answered fetches leave no wait parked",
                deadline_s=WHILE_PARKED_S,
            )
    finally:
        for conn, _ in conns:
            conn.close()
    served_by_0 = sum(1 for _, shard in conns if shard == 0)
    cancelled = wait_metric(
        broker,
        "ringtail_cross_shard_waits_cancelled_total",
        lambda v: v[1] - cancelled_before[1] >= rounds * served_by_0,
        "shard 1 cancelled the waits of the fetches shard 0 answered",
    )
    assert cancelled[1] - cancelled_before[1] == rounds * served_by_0, (cancelled_before, cancelled)


def test_remote_wait_is_cancelled_when_its_fetch_connection_closes(broker, topic_name):
    kclients.create_topic(broker.bootstrap, topic_name, SHARDS)
    conns = connections_on_each_shard(broker, 1)
    cancelled_before = per_shard(broker, "ringtail_cross_shard_waits_cancelled_total")
    try:
        for conn, _ in conns:
            conn.send_fetch_v4(topic_name, [(p, 0) for p in range(SHARDS)], FETCH_WAIT_MS_MAX)
        wait_metric(
            broker,
            "ringtail_cross_shard_waits_parked",
            lambda v: all(v[s] == 1 for s in range(SHARDS)),
            "each fetch parks one wait on the other shard",
            deadline_s=WHILE_PARKED_S,
        )
    finally:
        # The clients go away without waiting for their answers.
        for conn, _ in conns:
            conn.close()
    # Well before the fetches' own deadline, their waits on the other shard are dropped.
    wait_metric(
        broker,
        "ringtail_cross_shard_waits_parked",
        lambda v: sum(v.values()) == 0,
        "closed connections leave no wait parked",
        deadline_s=WHILE_PARKED_S,
    )
    cancelled = per_shard(broker, "ringtail_cross_shard_waits_cancelled_total")
    assert all(cancelled[s] - cancelled_before[s] == 1 for s in range(SHARDS)), (cancelled_before, cancelled)


def test_fetch_answers_at_its_deadline_when_the_other_shard_refuses_its_wait(broker_factory, topic_name):
    # No room for waits of other shards: every fetch that needs one goes on without it.
    broker = broker_factory(settings={"max_cross_shard_waits_per_shard": 0})
    kclients.create_topic(broker.bootstrap, topic_name, SHARDS)
    conns = connections_on_each_shard(broker, 1)
    refused_before = per_shard(broker, "ringtail_cross_shard_waits_refused_total")
    try:
        fetches = [(conn, conn.send_fetch_v4(topic_name, [(p, 0) for p in range(SHARDS)], 1_000)) for conn, _ in conns]
        for conn, correlation_id in fetches:
            conn.sock.settimeout(WHILE_PARKED_S)
            got = conn.recv_fetch_v4(correlation_id)
            assert sorted(got) == list(range(SHARDS)), got
            assert all(part.error == kwire.ERR_NONE and not part.records for part in got.values()), got
    finally:
        for conn, _ in conns:
            conn.close()
    refused = wait_metric(
        broker,
        "ringtail_cross_shard_waits_refused_total",
        lambda v: all(v[s] - refused_before[s] >= 1 for s in range(SHARDS)),
        "each shard refused the other's wait",
    )
    assert per_shard(broker, "ringtail_cross_shard_waits_parked") == {s: 0.0 for s in range(SHARDS)}, refused
