"""Start-up failures end the process with a non-zero status (as Kafka does), so a supervisor
(systemd, Kubernetes) sees them and restarts or alerts, instead of a broker that hangs unready."""

from __future__ import annotations

import socket
import subprocess

from harness import free_port, ringtail_bin

EXIT_DEADLINE_S = 60


def test_kafka_port_in_use_exits_nonzero(tmp_path):
    squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    port = squatter.getsockname()[1]
    log_path = tmp_path / "broker.log"
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [str(ringtail_bin()), "serve", "--kafka-addr", f"127.0.0.1:{port}",
                 "--data-dir", str(tmp_path / "data"), "--cores", "0,1",
                 "--admin-addr", f"127.0.0.1:{free_port()}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
            try:
                code = proc.wait(timeout=EXIT_DEADLINE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
                code = None
    finally:
        squatter.close()
    log = log_path.read_text(errors="replace")
    telling = [line for line in log.splitlines() if "partition log opened" not in line]
    assert code is not None, (
        f"broker still running {EXIT_DEADLINE_S} s after failing to bind its Kafka port; its log "
        "(without 'partition log opened' lines):\n" + "\n".join(telling[-25:])
    )
    assert code != 0, "a broker that could not listen exited with status 0"
    assert "Address already in use" in log
