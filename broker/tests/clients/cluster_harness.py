"""A cluster of real `ringtail` processes on 127.0.0.1 for the cluster tests.

Each node is a `harness.Broker` with its own data dir, Kafka port, admin port and controller
port; every node is a voter of the controller quorum. Nodes start together (a node is ready only
once a majority of the quorum runs). Short broker sessions keep fencing tests quick; the
deadlines the tests wait with stay generous for a loaded 2-core machine.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient

from harness import Broker, BrokerError, free_port

SESSION_TIMEOUT_MS = 3000
HEARTBEAT_INTERVAL_MS = 500
READY_TIMEOUT_S = 120.0


def rounds(ci: int = 1) -> int:
    """How many fault rounds the cluster tests run: `ci` in CI, more for the long version
    (`RINGTAIL_CLUSTER_ROUNDS=10 ./run-tests.sh -k cluster`, see the README)."""
    return max(1, int(os.environ.get("RINGTAIL_CLUSTER_ROUNDS", str(ci))))


class Cluster:
    def __init__(self, workdir: Path, nodes: int = 3, settings: dict | None = None,
                 config: dict | None = None, run_as: dict[int, int] | None = None):
        """`settings`: Ringtail's own keys; `config`: Kafka broker settings ([kafka] table);
        `run_as`: node id -> uid to run that node's process as."""
        self.workdir = Path(workdir)
        self.controller_ports = {i: free_port() for i in range(1, nodes + 1)}
        self.quorum = ",".join(f"{i}@127.0.0.1:{p}" for i, p in self.controller_ports.items())
        base = {
            "broker_session_timeout_ms": SESSION_TIMEOUT_MS,
            "broker_heartbeat_interval_ms": HEARTBEAT_INTERVAL_MS,
            "controller_request_timeout_ms": 15000,
        }
        base.update(settings or {})
        self._admins: list[AdminClient] = []
        self.nodes: dict[int, Broker] = {}
        for i in self.controller_ports:
            self.nodes[i] = Broker(
                self.workdir / f"node{i}",
                cores=str((i - 1) % 2),
                node_id=i,
                settings=base,
                config=config,
                extra_args=self.node_args(i),
                run_as=(run_as or {}).get(i),
            )

    def node_args(self, i: int, quorum: str | None = None) -> list[str]:
        return [
            "--controller-addr",
            f"127.0.0.1:{self.controller_ports[i]}",
            "--controller-quorum",
            quorum or self.quorum,
        ]

    def start(self) -> "Cluster":
        for node in self.nodes.values():
            node.launch()
        for node in self.nodes.values():
            node.wait_ready(READY_TIMEOUT_S)
        return self

    def stop(self) -> None:
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                # SIGCONT first: a stopped process cannot handle SIGTERM.
                try:
                    os.kill(node.pid, signal.SIGCONT)
                except OSError:
                    pass
            node.terminate_quietly()

    def bootstrap(self, *ids: int) -> str:
        ids = ids or tuple(i for i, n in self.nodes.items() if n.alive())
        return ",".join(self.nodes[i].bootstrap for i in ids)

    def admin(self, *ids: int) -> AdminClient:
        """A fresh admin client through the given nodes: a new client learns the current
        controller from its first Metadata (librdkafka keeps a stale one for minutes). Kept
        referenced until the cluster stops: librdkafka cancels the futures of a client that
        is garbage-collected."""
        client = AdminClient({"bootstrap.servers": self.bootstrap(*ids)})
        self._admins.append(client)
        return client

    def controller_id(self, via: int, timeout_s: float = 90.0) -> int:
        """The active controller as node `via` reports it (DescribeCluster)."""
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            try:
                desc = self.admin(via).describe_cluster(request_timeout=10).result(timeout=15)
                if desc.controller is not None and desc.controller.id in self.nodes:
                    return desc.controller.id
                last = desc
            except Exception as err:  # noqa: BLE001 - retried until the deadline
                last = err
            time.sleep(0.3)
        raise AssertionError(f"no active controller seen via node {via}: {last}")

    def logs(self) -> str:
        return "\n".join(f"--- node {i} ---\n{n.tail(60)}" for i, n in self.nodes.items())


def wait_for(what: str, check, timeout_s: float = 90.0, interval_s: float = 0.3):
    """Poll `check()` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as err:  # noqa: BLE001 - retried until the deadline
            last_error = err
        time.sleep(interval_s)
    raise AssertionError(f"timed out waiting for {what} (last error: {last_error})")


__all__ = ["Cluster", "BrokerError", "wait_for", "rounds", "SESSION_TIMEOUT_MS"]
