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


def test_dead_shard_stops_the_broker(broker_factory, topic_name):
    """A shard whose thread dies (a panic in one of its background tasks) must end the
    process with a non-zero status, so a supervisor restarts it: before, the process stayed
    up with its listening socket open while nothing read it, and every client hung. Data
    acknowledged before the fault is still there after a restart."""
    import time

    import kclients

    bad_topic = topic_name + "-panic"
    broker = broker_factory(cores="0,1", env={"RINGTAIL_TEST_PANIC_TOPIC": bad_topic})
    kclients.create_topic(broker.bootstrap, topic_name, 2)
    kclients.create_topic(broker.bootstrap, bad_topic, 2)
    deliveries = kclients.Deliveries()
    prod = kclients.producer(broker.bootstrap)
    for i in range(200):
        prod.produce(topic_name, partition=i % 2, value=b"kept %d" % i, on_delivery=deliveries)
    kclients.flush_all(prod)
    assert not deliveries.failed and len(deliveries.ok) == 200

    broker.stopped_on_purpose = True  # the exit below is what this test wants
    prod.produce(bad_topic, partition=0, value=b"boom")
    prod.poll(0)
    deadline = time.monotonic() + EXIT_DEADLINE_S
    while broker.proc.poll() is None and time.monotonic() < deadline:
        prod.poll(0.1)
    code = broker.proc.poll()
    assert code is not None, "broker still running after a shard died:\n" + broker.tail(60)
    assert code != 0, broker.tail(60)
    assert "shard thread ended abnormally" in broker.log_text(), broker.tail(60)
    del prod

    broker.start()
    got = kclients.consume_all(broker.bootstrap, topic_name, 2)
    assert sorted(m.value for v in got.values() for m in v) == sorted(
        b"kept %d" % i for i in range(200)
    )
