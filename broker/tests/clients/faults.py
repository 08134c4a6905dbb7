"""Faults for the replication fault suite: network partitions between cluster nodes on
127.0.0.1 (iptables), and a data dir on a small loop-mounted ext4 file system that fills up.

Network partitions: every node runs as its own uid (`Cluster(run_as=...)`), so iptables can
tell which node sent a packet (`-m owner --uid-owner`, OUTPUT chain: loopback packets pass it
once, owned by the sending socket). Isolating node X drops every packet X's processes send to
another node's Kafka or controller port, and every packet another node sends to X's ports.
The test's own clients run as root and still reach every node, so the test can watch the
isolated side refuse writes. Rules live in a chain of their own, removed by `close()`.

Disk: `LoopDisk` makes an ext4 image (O_DIRECT works on ext4, not on tmpfs), mounts it on a
node's data dir, and `fill()` takes every free block with a filler file (ENOSPC for the
broker's next write); `free()` deletes the filler.

Both need root; `why_not_available()` says why a fault cannot run here (the tests skip with it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

NODE_UID_BASE = 61000  # node i runs as uid/gid NODE_UID_BASE + i


def _run(*cmd: str) -> subprocess.CompletedProcess:
    out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}")
    return out


def iptables_missing() -> str | None:
    if os.geteuid() != 0:
        return "network partitions need root (iptables rules, nodes run as other uids)"
    if shutil.which("iptables") is None:
        return "iptables is not installed (run-tests.sh installs it with apt)"
    try:
        _run("iptables", "-w", "-L", "OUTPUT", "-n")
    except (RuntimeError, OSError) as err:
        return f"iptables does not work here: {err}"
    return None


def loop_disk_missing() -> str | None:
    if os.geteuid() != 0:
        return "a loop-mounted data dir needs root"
    for tool in ("losetup", "mkfs.ext4", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not Path("/dev/loop-control").exists():
        return "no loop device support (/dev/loop-control missing)"
    return None


class NetworkPartitioner:
    """Drops traffic between cluster nodes. `nodes`: node id -> (uid, [ports])."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.chain = f"RTFAULT{os.getpid() % 100000}"
        _run("iptables", "-w", "-N", self.chain)
        _run("iptables", "-w", "-I", "OUTPUT", "-o", "lo", "-j", self.chain)
        self.isolated: set[int] = set()

    def _ports(self, node_id: int) -> list[int]:
        node = self.cluster.nodes[node_id]
        return [node.kafka_port, self.cluster.controller_ports[node_id]]

    def isolate(self, node_id: int) -> None:
        """Cut node_id off from every other node (both directions)."""
        me = self.cluster.nodes[node_id]
        assert me.run_as is not None, "isolation needs the node to run as its own uid"
        for other_id, other in self.cluster.nodes.items():
            if other_id == node_id:
                continue
            assert other.run_as is not None and other.run_as != me.run_as
            for port in self._ports(other_id):
                self._drop(me.run_as, port)
            for port in self._ports(node_id):
                self._drop(other.run_as, port)
        self.isolated.add(node_id)

    def _drop(self, uid: int, port: int) -> None:
        _run("iptables", "-w", "-A", self.chain, "-p", "tcp", "-d", "127.0.0.1", "--dport", str(port),
             "-m", "owner", "--uid-owner", str(uid), "-j", "DROP")

    def heal(self) -> None:
        _run("iptables", "-w", "-F", self.chain)
        self.isolated.clear()

    def rules(self) -> str:
        return _run("iptables", "-w", "-L", self.chain, "-n", "-v").stdout

    def close(self) -> None:
        """Remove the chain (never raises: teardown)."""
        for cmd in (["-F", self.chain], ["-D", "OUTPUT", "-o", "lo", "-j", self.chain], ["-X", self.chain]):
            subprocess.run(["iptables", "-w", *cmd], capture_output=True, timeout=60)


class LoopDisk:
    """A small ext4 file system on a loop device, mounted at `mountpoint`."""

    def __init__(self, image: Path, mountpoint: Path, size_mib: int = 256):
        self.image = Path(image)
        self.mountpoint = Path(mountpoint)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        with open(self.image, "wb") as f:
            f.truncate(size_mib << 20)
        # -m 0: no blocks reserved for root (the broker may run as root).
        _run("mkfs.ext4", "-q", "-F", "-m", "0", str(self.image))
        _run("mount", "-o", "loop", str(self.image), str(self.mountpoint))
        self.mounted = True
        self.filler = self.mountpoint / "zz-disk-filler"

    def free_bytes(self) -> int:
        st = os.statvfs(self.mountpoint)
        return st.f_bavail * st.f_frsize

    def fill(self) -> int:
        """Take every free block; returns the bytes the filler holds."""
        with open(self.filler, "ab", buffering=0) as f:
            free = self.free_bytes()
            if free > 0:
                try:
                    os.posix_fallocate(f.fileno(), f.seek(0, 2), free)
                except OSError:
                    pass  # ENOSPC part way (metadata rounding): the writes take the rest
            for size in (1 << 16, 4096):
                chunk = b"\0" * size
                while True:
                    try:
                        f.seek(0, 2)
                        f.write(chunk)
                    except OSError:
                        break
        return os.stat(self.filler).st_blocks * 512

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def close(self) -> None:
        """Unmount and delete the image (never raises: teardown). The process using the data
        dir must be stopped first."""
        if self.mounted:
            out = subprocess.run(["umount", str(self.mountpoint)], capture_output=True, timeout=60)
            if out.returncode != 0:
                subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True, timeout=60)
            self.mounted = False
        self.image.unlink(missing_ok=True)
