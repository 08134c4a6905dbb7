"""A group member in its own process, so a test can `kill -9` it.

    python3 group_worker.py BOOTSTRAP GROUP TOPIC LOGFILE [--delay-ms N] [--instance-id ID]

Subscribes with confluent-kafka (manual commits), and for every record: processes it (appends
`<time> R <partition> <offset>` to LOGFILE, flushed), then commits offset+1 synchronously and
appends `<time> C <partition> <offset+1>` once the commit succeeded. Assignment changes are
logged as `<time> A <p,p,...>` (the full assignment after the change). SIGTERM makes it finish
the record in hand, commit, and close cleanly (LeaveGroup).
"""

from __future__ import annotations

import argparse
import signal
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("group")
    ap.add_argument("topic")
    ap.add_argument("logfile")
    ap.add_argument("--delay-ms", type=int, default=0)
    ap.add_argument("--instance-id")
    ap.add_argument("--session-timeout-ms", type=int, default=6000)
    args = ap.parse_args()

    log = open(args.logfile, "a", buffering=1)

    def note(line: str) -> None:
        log.write(f"{time.time():.6f} {line}\n")
        log.flush()

    stopping = False

    def on_term(_sig, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    config = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": args.session_timeout_ms,
        "heartbeat.interval.ms": 1000,
        "enable.partition.eof": False,
    }
    if args.instance_id:
        config["group.instance.id"] = args.instance_id
    consumer = Consumer(config)
    assigned: set[int] = set()

    def on_assign(c, partitions):
        assigned.update(p.partition for p in partitions)
        note("A " + ",".join(str(p) for p in sorted(assigned)))

    def on_revoke(c, partitions):
        assigned.difference_update(p.partition for p in partitions)
        note("A " + ",".join(str(p) for p in sorted(assigned)))

    consumer.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke)
    note("S")
    while not stopping:
        msg = consumer.poll(0.2)
        if msg is None or msg.error():
            continue
        note(f"R {msg.partition()} {msg.offset()}")
        if args.delay_ms:
            time.sleep(args.delay_ms / 1000)
        try:
            consumer.commit(
                offsets=[TopicPartition(msg.topic(), msg.partition(), msg.offset() + 1)],
                asynchronous=False,
            )
            note(f"C {msg.partition()} {msg.offset() + 1}")
        except KafkaException as e:
            note(f"E commit {msg.partition()} {msg.offset() + 1} {e}")
    consumer.close()
    note("X")


if __name__ == "__main__":
    main()
