"""Start, stop and restart a real `ringtail` broker process for the client tests.

The broker is the release binary named by $RINGTAIL_BIN (run-tests.sh sets it). Every broker
gets its own free ports and data directory; its stdout and stderr go to a log file that the
test fixtures print (tail) when a test fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

# Generous on purpose: the CI box has 2 cores shared with cargo and other tests.
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0


def repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def ringtail_bin() -> Path:
    configured = os.environ.get("RINGTAIL_BIN")
    if configured:
        return Path(configured).resolve()
    target = os.environ.get("CARGO_TARGET_DIR") or str(repo_root() / "target")
    return Path(target) / "release" / "ringtail"


def free_port() -> int:
    """A port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


class BrokerError(AssertionError):
    """The broker did not behave (failed to start, stop or stay up); message includes its log."""


class Broker:
    """One `ringtail serve` process with a fixed data dir and fixed ports across restarts."""

    def __init__(
        self,
        workdir: Path,
        *,
        cores: str = "0,1",
        node_id: int = 0,
        env: dict[str, str] | None = None,
        config: dict | None = None,
        settings: dict | None = None,
        extra_args: list[str] | None = None,
        run_as: int | None = None,
    ):
        self.binary = ringtail_bin()
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.log_path = self.workdir / "broker.log"
        self.cores = cores
        self.node_id = node_id
        self.kafka_port = free_port()
        self.admin_port = free_port()
        self.env = dict(env or {})
        self.config = config
        self.settings = settings
        self.extra_args = list(extra_args or [])
        # Run the process as this uid (and gid), e.g. so iptables can tell nodes apart by owner.
        self.run_as = run_as
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self._log_offset_at_start = 0
        # Set when the harness itself stopped the process, so an exit is not a crash.
        self.stopped_on_purpose = True

    # -- addresses ---------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "broker not started"
        return self.proc.pid

    # -- life cycle ------------------------------------------------------------------------
    def command(self) -> list[str]:
        cmd = [
            str(self.binary),
            "serve",
            "--kafka-addr",
            self.bootstrap,
            "--data-dir",
            str(self.data_dir),
            "--cores",
            self.cores,
            "--node-id",
            str(self.node_id),
            "--admin-addr",
            f"127.0.0.1:{self.admin_port}",
        ]
        if self.config or self.settings:
            config_path = self.workdir / "ringtail.toml"
            # Ringtail's own settings are top-level keys; Kafka broker settings keep their
            # Kafka names under the [kafka] table.
            lines = [f"{key} = {_toml_value(value)}" for key, value in (self.settings or {}).items()]
            lines += ["[kafka]"] + [f'"{key}" = {_toml_value(value)}' for key, value in (self.config or {}).items()]
            config_path.write_text("\n".join(lines) + "\n")
            cmd += ["--config", str(config_path)]
        return cmd + self.extra_args

    def start(self, ready_timeout_s: float = READY_TIMEOUT_S) -> "Broker":
        """Start and wait until ready. On the first start only, a port taken between
        free_port() and the broker's bind is retried with fresh ports (restarts must keep theirs)."""
        attempts = 3 if self.starts == 0 else 1
        for attempt in range(attempts):
            try:
                return self._start_once(ready_timeout_s)
            except BrokerError:
                if not self._lost_port_race() or attempt == attempts - 1:
                    raise
                self._note("port already in use: retrying with fresh ports")
                self.kafka_port = free_port()
                self.admin_port = free_port()
        raise AssertionError("unreachable")

    def _start_once(self, ready_timeout_s: float) -> "Broker":
        self.launch()
        try:
            self.wait_ready(ready_timeout_s)
        except BrokerError:
            # Never leave a half-started broker behind: no fixture teardown will see it.
            self.kill9()
            raise
        return self

    def launch(self) -> "Broker":
        """Start the process without waiting for it to be ready (cluster nodes: a node is
        ready only once a majority of the controller quorum runs)."""
        if not self.binary.exists():
            raise BrokerError(
                f"broker binary {self.binary} does not exist (build it with "
                "`cargo build --release -p ringtail-broker` or set RINGTAIL_BIN)"
            )
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        self.starts += 1
        env = dict(os.environ)
        env.setdefault("RINGTAIL_LOG", "info")
        env.setdefault("RUST_BACKTRACE", "1")
        env.update(self.env)
        cmd = self.command()
        self._log_offset_at_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        identity = {}
        if self.run_as is not None:
            for path in [self.workdir, *self.workdir.rglob("*")]:
                if not path.is_symlink():
                    os.chown(path, self.run_as, self.run_as)
            identity = {"user": self.run_as, "group": self.run_as, "extra_groups": []}
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== harness: start #{self.starts}: {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                **identity,
            )
        self.stopped_on_purpose = False
        return self

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait for /ready to answer 200 and for the Kafka port to accept connections."""
        deadline = time.monotonic() + timeout_s
        last_status = "no answer yet"
        while time.monotonic() < deadline:
            if self._lost_port_race():
                raise BrokerError("broker could not bind its port (Address already in use)\n" + self.tail())
            if self.proc is not None and self.proc.poll() is not None:
                raise BrokerError(
                    f"broker exited with code {self.proc.returncode} before it was ready\n"
                    + self.tail()
                )
            try:
                with urllib.request.urlopen(self.admin_url + "/ready", timeout=2) as resp:
                    last_status = f"HTTP {resp.status}"
                    if resp.status == 200 and self._kafka_port_open():
                        return
            except urllib.error.HTTPError as err:
                last_status = f"HTTP {err.code}"
            except (urllib.error.URLError, OSError) as err:
                last_status = f"{type(err).__name__}: {err}"
            time.sleep(0.1)
        raise BrokerError(
            f"broker not ready after {timeout_s:.0f} s (last /ready: {last_status})\n" + self.tail()
        )

    def _lost_port_race(self) -> bool:
        """Did this start fail because someone else took one of our ports?"""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_offset_at_start)
                return b"Address already in use" in log.read()
        except FileNotFoundError:
            return False

    def _kafka_port_open(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.kafka_port), timeout=2):
                return True
        except OSError:
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def http_get(self, path: str, timeout_s: float = 5) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.admin_url + path, timeout=timeout_s) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """Clean shutdown with SIGTERM; returns the exit code. Raises if it does not exit."""
        assert self.proc is not None, "broker not started"
        self.stopped_on_purpose = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
                raise BrokerError(
                    f"broker did not exit within {timeout_s:.0f} s of SIGTERM (killed)\n" + self.tail()
                )
        self._note(f"stopped with SIGTERM, exit code {self.proc.returncode}")
        return self.proc.returncode

    def kill9(self) -> None:
        """Crash the broker: SIGKILL, no chance to flush anything."""
        assert self.proc is not None, "broker not started"
        self.stopped_on_purpose = True
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._note("killed with SIGKILL")

    def restart(self, how: str = "term") -> int | None:
        """Stop (`term`: SIGTERM, `kill`: SIGKILL) and start again on the same dir and ports."""
        code = None
        if how == "term":
            code = self.stop()
        elif how == "kill":
            self.kill9()
        else:
            raise ValueError(how)
        self.start()
        return code

    def terminate_quietly(self) -> None:
        """Teardown: stop whatever is left, never raise."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.stopped_on_purpose = True
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def crashed(self) -> bool:
        """The process exited although the harness did not stop it."""
        return self.proc is not None and self.proc.poll() is not None and not self.stopped_on_purpose

    # -- logs ----------------------------------------------------------------------------
    def _note(self, message: str) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"=== harness: {message}\n".encode())

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 80) -> str:
        text = self.log_text().splitlines()
        shown = "\n".join(text[-lines:])
        return f"--- last {min(lines, len(text))} lines of {self.log_path} ---\n{shown}\n--- end of broker log ---"
