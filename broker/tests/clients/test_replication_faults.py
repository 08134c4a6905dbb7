"""The replication fault suite (issue 19): three real nodes on 127.0.0.1, idempotent acks=all
producers and a consumer group running throughout, one fault at a time, then the Jepsen-style
checker (`replication_checker.py`) over every acknowledgement, every consumer delivery, the
leader's final read and each node's log files on disk.

Faults: kill -9 of a leader (restarted), SIGSTOP of a leader past the session timeout, a network
partition isolating a leader and then a follower, a rolling restart, a follower's disk filling
up. Each test prints a row of figures (and appends it to `target/replication-fault-figures.md`)
and asserts that no anomaly was found.

CI runs few rounds (`rounds(ci=2)`); the long version: `RINGTAIL_CLUSTER_ROUNDS=20
PYTEST_ARGS="-k replication_faults" ./run-tests.sh`. `RINGTAIL_FAULT_RF=1` runs the same faults
on unreplicated topics (the self-test of the machinery from before replication existed).
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import NewTopic

import kwire
from cluster_harness import SESSION_TIMEOUT_MS, BrokerError, Cluster, rounds, wait_for
from faults import NODE_UID_BASE, LoopDisk, NetworkPartitioner, iptables_missing, loop_disk_missing
from harness import ringtail_bin
from replication_checker import (Ack, Workload, check, figures_header, figures_row, read_disk_view,
                                 read_view_via_consumer)

# A time limit per test that grows with the rounds asked for (the long version runs 20).
pytestmark = [pytest.mark.timeout(300 + 150 * rounds(ci=2)), pytest.mark.slow]

RF = int(os.environ.get("RINGTAIL_FAULT_RF", "3"))
PARTITIONS = 3
MIN_ISR = 2 if RF >= 3 else 1
REPLICA_LAG_MS = 3000
HEAL_TIMEOUT_S = 180.0
# Values of raw Produce requests sent straight to one node: each its own "producer" (they
# are sent concurrently, so no order among them is promised).
RAW_PRODUCERS = itertools.count(9000)

# Records the workload must get acknowledged while a fault lasts / after it healed.
PROGRESS = 150


def broker_config() -> dict:
    return {"replica.lag.time.max.ms": REPLICA_LAG_MS}


def topic_config() -> dict:
    return {"min.insync.replicas": str(MIN_ISR)}


# Replication metrics summed over the nodes, noted at the end of each test (absent ones skipped).
REPLICATION_METRICS = ("ringtail_isr_shrinks_total", "ringtail_isr_expands_total",
                       "ringtail_replica_truncations_total", "ringtail_under_replicated_partitions",
                       "ringtail_under_min_isr_partitions", "ringtail_offline_partitions")


def figures_path() -> Path:
    return ringtail_bin().parent.parent / "replication-fault-figures.md"


# -- cluster and topic helpers -----------------------------------------------------------------

class FaultCluster:
    """A started cluster, its topic and its workload, torn down together."""

    def __init__(self, workdir: Path, run_as: bool = False, loop_disk_node: int | None = None):
        self.workdir = workdir
        self.uids = {i: NODE_UID_BASE + i for i in (1, 2, 3)} if run_as else None
        self.cluster = Cluster(workdir / "cluster", config=broker_config(), run_as=self.uids)
        self.disk: LoopDisk | None = None
        self.loop_disk_node = loop_disk_node
        if loop_disk_node is not None:
            node = self.cluster.nodes[loop_disk_node]
            self.disk = LoopDisk(workdir / f"node{loop_disk_node}.img", node.data_dir)
        self.partitioner: NetworkPartitioner | None = None
        self.workload: Workload | None = None
        self.topic = f"faults-{uuid.uuid4().hex[:8]}"
        self.heal_s: list[float] = []
        self.extra_acks: list[Ack] = []  # raw produce requests a node acknowledged
        self.notes: list[str] = []

    def start(self) -> "FaultCluster":
        for attempt in range(3):
            try:
                self.cluster.start()
                break
            except BrokerError as err:
                # free_port() races with other processes: start over on fresh ports.
                if "could not bind" not in str(err) or attempt == 2:
                    raise
                self.cluster.stop()
                self.cluster = Cluster(self.workdir / f"cluster-{attempt + 2}", config=broker_config(),
                                       run_as=self.uids)
                if self.disk is not None:
                    self.disk.close()
                    self.disk = LoopDisk(self.workdir / f"node{self.loop_disk_node}-{attempt + 2}.img",
                                         self.nodes[self.loop_disk_node].data_dir)
        create_topic(self.cluster, self.topic)
        wait_for("every replica in sync after creation", lambda: self.healed(), timeout_s=HEAL_TIMEOUT_S)
        return self

    @property
    def nodes(self):
        return self.cluster.nodes

    def run_workload(self, **kw) -> Workload:
        self.workload = Workload(self.cluster.bootstrap(1, 2, 3), self.topic, PARTITIONS, **kw).start()
        self.workload.wait_acks(PROGRESS, timeout_s=120)
        return self.workload

    def state(self, via: int | None = None) -> dict[int, tuple[int, list[int], list[int]]]:
        """{partition: (leader, replicas, isr)} as node `via` (default: the first live node)
        sees it, asked over a raw connection to that node only."""
        if via is None:
            via = next(i for i, n in self.nodes.items() if n.alive())
        return node_metadata(self.nodes[via].bootstrap, self.topic)

    def healed(self) -> bool:
        """Every node up, every partition led, every replica in the ISR, as every node sees it."""
        if not all(n.alive() for n in self.nodes.values()):
            return False
        for via in self.nodes:
            st = self.state(via)
            if len(st) != PARTITIONS:
                return False
            for leader, replicas, isr in st.values():
                if leader < 0 or len(replicas) != RF or isr != replicas:
                    return False
        return under_replicated(self.cluster) in (0, None)

    def metadata_caught_up(self) -> None:
        """Every node applies the metadata log: each reaches the furthest offset any node had
        applied when this started (a node whose controller quorum member died keeps serving
        a frozen view, which can look healed from its own metadata)."""
        target = max(metadata_offsets(self.cluster).values())
        deadline = time.monotonic() + HEAL_TIMEOUT_S
        while (offsets := metadata_offsets(self.cluster)) and min(offsets.values()) < target:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"nodes stopped applying the metadata log: ringtail_metadata_offset {offsets}, "
                    f"wanted each >= {target} (a node whose controller quorum member quit keeps "
                    "serving a frozen metadata view)")
            time.sleep(0.5)

    def wait_healed(self, since: float, what: str) -> float:
        wait_for(f"cluster healed after {what}", self.healed, timeout_s=HEAL_TIMEOUT_S, interval_s=0.5)
        self.metadata_caught_up()
        wait_for(f"cluster healed after {what}", self.healed, timeout_s=HEAL_TIMEOUT_S, interval_s=0.5)
        took = time.monotonic() - since
        self.heal_s.append(took)
        return took

    def leader_of(self, partition: int, via: int | None = None) -> int:
        return self.state(via)[partition][0]

    def new_leader(self, partition: int, old: int, via: int) -> int:
        """Wait until node `via` sees a leader for `partition` other than `old`."""
        return wait_for(f"a new leader of partition {partition} (was node {old}) seen by node {via}",
                        lambda: (lambda l: l if l >= 0 and l != old else None)(self.leader_of(partition, via)),
                        timeout_s=HEAL_TIMEOUT_S)

    def finish(self, fault: str, rounds_run: int) -> None:
        """Heal, stop the load, read everything back, check, print and record the figures."""
        w = self.workload
        assert w is not None
        w.wait_acks(PROGRESS, timeout_s=HEAL_TIMEOUT_S)
        w.stop_producers()
        w.drain_consumers(timeout_s=120)
        wait_for("every replica in sync before the final read", self.healed, timeout_s=HEAL_TIMEOUT_S)
        history = w.history
        history.acks.extend(self.extra_acks)
        self.notes.append(f"metrics at the end: {replication_metrics(self.cluster)}")
        history.final["leader read"] = read_view_via_consumer(self.cluster.bootstrap(), self.topic, PARTITIONS)
        # Every record was acknowledged by the whole ISR, so followers hold the leader's log;
        # a moment for their next fetch (which also carries the final high watermark).
        time.sleep(1.0)
        self.cluster.stop()
        notes = []
        for i, node in self.nodes.items():
            view, n = read_disk_view(node.data_dir, self.topic, PARTITIONS)
            history.final[f"node{i} disk"] = view
            notes += [f"node{i}: {x}" for x in n]
        report = check(history)
        row = figures_row(fault, RF, rounds_run, report, self.heal_s)
        print(f"\n{figures_header()}\n{row}\n{report.summary()}\n{w.errors()}")
        for note in self.notes + notes:
            print("note:", note)
        with open(figures_path(), "a") as f:
            f.write(row + "\n")
        if report.anomalies():
            dump = self.workdir / "history.json"
            dump_history(history, dump)
            print(f"history written to {dump}")
        assert report.anomalies() == {}, report.summary()
        if RF > 1:
            missing = [x for x in notes if "no replica here" in x]
            assert not missing, missing
        assert w.unflushed == 0, w.errors()
        fatal = [e for e in w.client_errors if e[1]]
        assert not fatal, fatal

    def close(self, failed: bool) -> None:
        if self.workload is not None:
            self.workload.stop()
        if self.partitioner is not None:
            self.partitioner.close()
        if failed:
            print(self.cluster.logs())
        self.cluster.stop()
        if self.disk is not None:
            self.disk.close()


def dump_history(history, path: Path) -> None:
    """The whole history as JSON, for a post-mortem of a failed check."""
    import json
    from dataclasses import asdict

    path.write_text(json.dumps({
        "acks": [asdict(a) for a in history.acks],
        "failed": history.failed,
        "deliveries": [asdict(d) for d in history.deliveries],
        "final": {name: {str(p): recs for p, recs in view.items()} for name, view in history.final.items()},
    }))


def create_topic(c: Cluster, name: str) -> None:
    def attempt():
        fut = c.admin(1).create_topics(
            [NewTopic(name, PARTITIONS, RF, config=topic_config())], request_timeout=30)[name]
        try:
            fut.result(timeout=60)
        except KafkaException as err:
            if err.args[0].name() == "INVALID_REPLICATION_FACTOR":
                pytest.fail(f"replication factor {RF} refused: this build has no replication "
                            "(RINGTAIL_FAULT_RF=1 runs the suite on unreplicated topics)")
            if err.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
        return True

    wait_for(f"creating {name}", attempt, timeout_s=120)


def node_metadata(bootstrap: str, topic: str) -> dict[int, tuple[int, list[int], list[int]]]:
    """Metadata v1 for one topic from exactly this node: {partition: (leader, replicas, isr)}."""
    with kwire.Conn(bootstrap, timeout_s=10) as conn:
        r = conn.request(kwire.API_METADATA, 1, kwire.array([kwire.string(topic)]))
        r.array(lambda r: (r.i32(), r.string(), r.i32(), r.string()))  # brokers
        r.i32()  # controller id
        topics = r.array(lambda r: (r.i16(), r.string(), r.i8(), r.array(lambda r: (
            r.i16(), r.i32(), r.i32(), r.array(lambda r: r.i32()), r.array(lambda r: r.i32())))))
    for error, name, _internal, partitions in topics or []:
        if name == topic:
            if error != 0:
                raise AssertionError(f"metadata for {topic} from {bootstrap}: error {error}")
            return {p: (leader, sorted(replicas or []), sorted(isr or []))
                    for _err, p, leader, replicas, isr in partitions}
    raise AssertionError(f"{topic} not in metadata from {bootstrap}")


def replication_metrics(c: Cluster) -> dict[str, int]:
    from kclients import scrape_metrics

    out: dict[str, int] = {}
    for node in c.nodes.values():
        if not node.alive():
            continue
        for (name, *_), value in scrape_metrics(node).items():
            if name in REPLICATION_METRICS:
                out[name] = out.get(name, 0) + int(value)
    return out


def active_controller(c: Cluster) -> int | None:
    """The node whose /metrics says it is the active controller."""
    from kclients import scrape_metrics

    for i, node in c.nodes.items():
        if node.alive() and scrape_metrics(node).get(("ringtail_controller_active", ""), 0) >= 1:
            return i
    return None


def metadata_offsets(c: Cluster) -> dict[int, int]:
    """ringtail_metadata_offset of every node."""
    from kclients import scrape_metrics

    return {i: int(scrape_metrics(n)[("ringtail_metadata_offset", "")]) for i, n in c.nodes.items()}


def under_replicated(c: Cluster) -> int | None:
    """Sum of ringtail_under_replicated_partitions over the nodes (None: no such metric)."""
    from kclients import scrape_metrics

    total = None
    for node in c.nodes.values():
        m = scrape_metrics(node)
        for (name, *_), value in m.items():
            if name == "ringtail_under_replicated_partitions":
                total = (total or 0) + int(value)
    return total


def raw_produce(bootstrap: str, topic: str, partition: int, value: str, timeout_s: float = 30.0):
    """One acks=all Produce v3 over a raw connection: (error code, base offset), or the
    exception (a connection that timed out or closed)."""
    try:
        with kwire.Conn(bootstrap, timeout_s=timeout_s) as conn:
            return conn.produce_v3(topic, partition, kwire.record_batch([(None, value.encode())]),
                                   acks=-1, timeout_ms=int(timeout_s * 1000) - 2000)
    except (OSError, ConnectionError, AssertionError) as err:
        return err


def raw_produce_all(bootstrap: str, topic: str, tries: list[tuple[int, str]], timeout_s: float) -> list:
    """raw_produce of each (partition, value) at once, one connection each: [(p, value, result)]."""
    results: list = []
    threads = [threading.Thread(target=lambda p=p, v=v: results.append(
        (p, v, raw_produce(bootstrap, topic, p, v, timeout_s)))) for p, v in tries]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s + 30)
    return results


@pytest.fixture
def faults(tmp_path, request):
    made: list[FaultCluster] = []

    def make(**kw) -> FaultCluster:
        workdir = tmp_path
        if kw.get("run_as"):
            # Other uids cannot enter pytest's 0700 temp root: a world-traversable dir of our own.
            workdir = Path(tempfile.mkdtemp(prefix="ringtail-faults-"))
            os.chmod(workdir, 0o755)
            kw_cleanup.append(workdir)
        fc = FaultCluster(workdir, **kw)
        made.append(fc)
        return fc.start()

    kw_cleanup: list[Path] = []
    yield make
    report = getattr(request.node, "rep_call", None)
    failed = report is not None and report.failed
    for fc in made:
        fc.close(failed)
    for d in kw_cleanup:
        if not failed:
            shutil.rmtree(d, ignore_errors=True)
        else:
            print(f"kept {d} for inspection")


# -- the faults ----------------------------------------------------------------------------------

def test_replication_faults_kill9_leader_under_load(faults):
    fc = faults()
    w = fc.run_workload()
    n = rounds(ci=2)
    for r in range(n):
        partition = r % PARTITIONS
        victim = fc.leader_of(partition)
        others = [i for i in fc.nodes if i != victim]
        fc.nodes[victim].kill9()
        t0 = time.monotonic()
        if RF > 1:
            fc.new_leader(partition, victim, via=others[0])
            # The survivors keep acknowledging while the victim is down.
            w.wait_acks(PROGRESS, timeout_s=HEAL_TIMEOUT_S)
        fc.nodes[victim].start(ready_timeout_s=120)
        fc.wait_healed(t0, f"kill -9 of node {victim} (round {r})")
        w.wait_acks(PROGRESS, timeout_s=HEAL_TIMEOUT_S)
    fc.finish("kill -9 of a leader, restarted", n)


def test_replication_faults_sigstop_leader_past_session_timeout(faults):
    fc = faults()
    w = fc.run_workload()
    n = rounds(ci=1)
    stale_acks = []
    for r in range(n):
        partition = r % PARTITIONS
        victim = fc.leader_of(partition)
        watcher = next(i for i in fc.nodes if i != victim)
        node = fc.nodes[victim]
        os.kill(node.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        results: list = []
        try:
            if RF > 1:
                fc.new_leader(partition, victim, via=watcher)
                w.wait_acks(PROGRESS, timeout_s=HEAL_TIMEOUT_S)
            else:
                wait_for(f"node {victim} fenced", lambda: fc.leader_of(partition, watcher) == -1,
                         timeout_s=HEAL_TIMEOUT_S)
            # Requests queued in the stopped node's socket: it handles them on SIGCONT, while
            # it may still believe it leads. Replaced, it must acknowledge none of them.
            tries = [(p, f"p{next(RAW_PRODUCERS)}-0")
                     for p in [partition] * 3 + [q for q in range(PARTITIONS) if q != partition]]
            senders = [threading.Thread(target=lambda p=p, v=v: results.append(
                (p, v, raw_produce(node.bootstrap, fc.topic, p, v)))) for p, v in tries]
            for t in senders:
                t.start()
            time.sleep(1.0)  # let them connect and send (the kernel queues them)
        finally:
            os.kill(node.pid, signal.SIGCONT)
        for t in senders:
            t.join(60)
        for p, value, res in results:
            if isinstance(res, tuple) and res[0] == 0:
                fc.extra_acks.append(Ack(p, res[1], value))
                stale_acks.append((p, value, res))
        fc.notes.append(f"round {r}: raw produce to the stopped node {victim} after SIGCONT: "
                        f"{[(p, v, res if isinstance(res, tuple) else type(res).__name__) for p, v, res in results]}")
        fc.wait_healed(t0, f"SIGSTOP of node {victim} (round {r})")
        w.wait_acks(PROGRESS, timeout_s=HEAL_TIMEOUT_S)
    if RF > 1:
        assert not stale_acks, f"a replaced leader acknowledged writes: {stale_acks}"
    fc.finish("SIGSTOP of a leader past the session timeout", n)


def test_replication_faults_network_partition_leader_then_follower(faults):
    reason = iptables_missing()
    if reason:
        pytest.skip(reason)
    # Nodes run as other uids (RLIMIT_MEMLOCK applies to them; the broker sizes its io
    # memory from it).
    fc = faults(run_as=True)
    fc.partitioner = NetworkPartitioner(fc.cluster)
    w = fc.run_workload()
    n = rounds(ci=1)
    minority_acks = []
    for r in range(n):
        for role in ("leader", "follower"):
            st = fc.state(active_controller(fc.cluster))  # the freshest view
            if role == "leader":
                # The active controller when it leads a partition (a controller failover and a
                # partition leader failover at once), otherwise some partition's leader.
                controller = active_controller(fc.cluster)
                partition = next((p for p, s in sorted(st.items()) if s[0] == controller), r % PARTITIONS)
                victim = st[partition][0]
                fc.notes.append(f"round {r}: isolating node {victim}, leader of partition {partition}; "
                                f"active controller: node {controller}")
            else:
                # A node leading as few partitions as possible (after the leader round the
                # isolated node usually leads none: leadership does not move back by itself).
                led = {i: sum(1 for s in st.values() if s[0] == i) for i in fc.nodes}
                victim = min(led, key=lambda i: (led[i], i))
                partition = next((p for p, s in st.items() if s[0] != victim), 0)
                fc.notes.append(f"round {r}: follower isolation of node {victim} which leads {led[victim]} partitions")
            majority = [i for i in fc.nodes if i != victim]
            fc.partitioner.isolate(victim)
            t0 = time.monotonic()
            if RF > 1:
                if role == "leader":
                    fc.new_leader(partition, victim, via=majority[0])
                else:
                    wait_for(f"node {victim} out of the ISR of partition {partition}",
                             lambda: victim not in fc.state(majority[0])[partition][2], timeout_s=HEAL_TIMEOUT_S)
                # The majority side keeps acknowledging.
                w.wait_acks(PROGRESS, timeout_s=HEAL_TIMEOUT_S)
                # The minority side acknowledges no acks=all write (whatever it believes it leads).
                tries = [(p, f"p{next(RAW_PRODUCERS)}-0") for p in range(PARTITIONS)]
                for p, value, res in raw_produce_all(fc.nodes[victim].bootstrap, fc.topic, tries, 15):
                    fc.notes.append(f"round {r}: raw produce to isolated {role} node {victim}: {p} {value} {res!r}")
                    if isinstance(res, tuple) and res[0] == 0:
                        minority_acks.append((role, p, value, res))
                        fc.extra_acks.append(Ack(p, res[1], value))
            else:
                # Unreplicated: the isolated node is fenced (proves the rules cut it off).
                led = [p for p, s in st.items() if s[0] == victim]
                wait_for(f"isolated node {victim} fenced (session {SESSION_TIMEOUT_MS} ms)",
                         lambda: all(fc.leader_of(p, majority[0]) == -1 for p in led),
                         timeout_s=HEAL_TIMEOUT_S)
            fc.partitioner.heal()
            fc.wait_healed(t0, f"isolation of {role} node {victim} (round {r})")
            w.wait_acks(PROGRESS, timeout_s=HEAL_TIMEOUT_S)
    if RF > 1:
        assert not minority_acks, f"the isolated node acknowledged acks=all writes: {minority_acks}"
    fc.finish("network partition: a leader, then a follower", n)


def test_replication_faults_rolling_restart_under_load(faults):
    fc = faults()
    w = fc.run_workload()
    n = rounds(ci=1)
    for r in range(n):
        for i in fc.nodes:
            node = fc.nodes[i]
            led = [p for p, s in fc.state().items() if s[0] == i]
            t0 = time.monotonic()
            node.stop()
            if RF > 1:
                watcher = next(j for j in fc.nodes if j != i)
                for p in led:
                    fc.new_leader(p, i, via=watcher)
                w.wait_acks(PROGRESS // 2, timeout_s=HEAL_TIMEOUT_S)
            node.start(ready_timeout_s=120)
            fc.wait_healed(t0, f"restart of node {i} (round {r})")
    w.wait_acks(PROGRESS, timeout_s=HEAL_TIMEOUT_S)
    # Producers saw only retriable errors: every record was eventually acknowledged.
    assert not w.history.failed, (w.history.failed[:5], w.errors())
    fc.finish("rolling restart of all nodes", n)


def test_replication_faults_follower_disk_full(faults):
    reason = loop_disk_missing()
    if reason:
        pytest.skip(reason)
    victim = 3
    fc = faults(loop_disk_node=victim)
    node = fc.nodes[victim]
    if RF > 1 and any(s[0] == victim for s in fc.state().values()):
        # Make the victim a follower only: a clean restart hands its leaderships over, and
        # they stay with the others (no preferred-leader election within the test).
        node.stop()
        node.start(ready_timeout_s=120)
        wait_for("node 3 back in every ISR", fc.healed, timeout_s=HEAL_TIMEOUT_S)
    fc.notes.append(f"node {victim} leads {sum(1 for s in fc.state().values() if s[0] == victim)} "
                    "partitions when its disk fills")
    # Bigger records, so the victim needs fresh blocks soon after the disk is full (segments
    # are allocated ahead of the writer in steps of 1 MiB and more).
    w = fc.run_workload(key_bytes=2048)
    n = rounds(ci=1)
    for r in range(n):
        taken = fc.disk.fill()
        t0 = time.monotonic()
        fc.notes.append(f"round {r}: filled node {victim}'s disk ({taken >> 10} KiB taken)")
        if RF > 1:
            watcher = next(i for i in fc.nodes if i != victim)
            # It leaves the ISR of partitions it follows (or dies; both are fine) ...
            wait_for(f"node {victim} out of some ISR", lambda: not node.alive() or any(
                victim not in s[2] for s in fc.state(watcher).values()), timeout_s=HEAL_TIMEOUT_S)
            # ... and every partition stays writable with min.insync.replicas=2.
            before = per_partition_acks(w)
            wait_for("acknowledgements on every partition with the disk full", lambda: all(
                per_partition_acks(w)[p] >= before[p] + 20 for p in range(PARTITIONS)), timeout_s=HEAL_TIMEOUT_S)
        else:
            time.sleep(5)
        log = node.log_text()
        enospc = sum(log.count(s) for s in ("No space left on device", "os error 28"))
        fc.notes.append(f"round {r}: node {victim} log lines on ENOSPC so far: {enospc}")
        fc.notes.append(f"round {r}: node {victim} {'alive' if node.alive() else 'exited with ' + str(node.proc.returncode)} "
                        f"with its disk full; state {fc.state(next(i for i in fc.nodes if i != victim))}")
        fc.disk.free()
        # With space back, the node either heals by itself, or it stopped (a broker whose
        # disk failed may exit, to be restarted). Running on with a part of it dead is not
        # fine: wait_healed also waits for its metadata to catch up.
        # A node whose metadata log write failed shuts itself down (gracefully: it may take
        # a few seconds); wait until it either exited or healed by itself.
        settle = time.monotonic() + 60
        while node.alive() and time.monotonic() < settle and not fc.healed():
            time.sleep(0.5)
        if not node.alive():
            fc.notes.append(f"round {r}: node {victim} exited (code {node.proc.returncode}); restarted it")
            node.stopped_on_purpose = True
            node.start(ready_timeout_s=120)
        fc.wait_healed(t0, f"node {victim}'s disk full (round {r})")
        w.wait_acks(PROGRESS, timeout_s=HEAL_TIMEOUT_S)
    fc.finish("a follower's disk full (ENOSPC)", n)


def per_partition_acks(w: Workload) -> dict[int, int]:
    counts = {p: 0 for p in range(PARTITIONS)}
    with w.lock:
        for a in w.history.acks:
            counts[a.partition] += 1
    return counts
