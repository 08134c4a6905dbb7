"""A consume-transform-produce application with transactions (confluent-kafka), run as its
own process by test_transactions.py: reads `src` (read_committed, group `group`), writes
b"copy-" + value to the same partition of `dst`, and commits its input offsets in the same
transaction (send_offsets_to_transaction). Runs until killed; on any error it starts over the
way a restarted application would (new producer with the same transactional.id, which fences
and aborts the old one; new consumer from the committed offsets).

usage: txn_copier.py BOOTSTRAP SRC DST GROUP TRANSACTIONAL_ID"""

from __future__ import annotations

import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition


def run(bootstrap: str, src: str, dst: str, group: str, txn_id: str) -> None:
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "isolation.level": "read_committed",
        "session.timeout.ms": 10000,
    })
    producer = Producer({
        "bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 5,
        "transaction.timeout.ms": 20000,
    })
    try:
        consumer.subscribe([src])
        producer.init_transactions(30)
        while True:
            msgs = [m for m in consumer.consume(num_messages=500, timeout=1.0) if m.error() is None]
            if not msgs:
                continue
            producer.begin_transaction()
            positions = {}
            for m in msgs:
                producer.produce(dst, key=m.key(), value=b"copy-" + m.value(), partition=m.partition())
                positions[m.partition()] = m.offset() + 1
            producer.send_offsets_to_transaction(
                [TopicPartition(src, p, o) for p, o in positions.items()],
                consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
    finally:
        try:
            consumer.close()
        except Exception:  # noqa: BLE001 - the broker may be down
            pass


def main() -> None:
    bootstrap, src, dst, group, txn_id = sys.argv[1:6]
    while True:
        try:
            run(bootstrap, src, dst, group, txn_id)
        except KafkaException as e:
            print(f"restarting after {e}", flush=True)
            time.sleep(0.5)


if __name__ == "__main__":
    main()
