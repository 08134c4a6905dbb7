#!/usr/bin/env python3
"""Independent read-back of a topic with confluent-kafka (librdkafka).

Reads every partition from the beginning to its end and prints JSON
{"count": N, "checksum": S} where S is the wrapping (mod 2^64) sum of
zlib.crc32(key + value) over all records, a null key counting as empty: the same
definition as ringtail-bench's `produce_checksum`. Exit code 3: confluent-kafka missing.
"""
import argparse
import json
import sys
import time
import zlib

try:
    from confluent_kafka import Consumer, KafkaError, TopicPartition
except ImportError:
    sys.exit(3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--timeout-s", type=float, default=60.0)
    a = ap.parse_args()
    c = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": "ringtail-bench-readback",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    })
    md = c.list_topics(a.topic, timeout=10)
    parts = sorted(md.topics[a.topic].partitions.keys())
    # Static assignment from offset 0: no group protocol needed.
    c.assign([TopicPartition(a.topic, p, 0) for p in parts])
    done = set()
    count = 0
    checksum = 0
    deadline = time.time() + a.timeout_s
    while len(done) < len(parts):
        if time.time() > deadline:
            print(f"timeout: eof on {sorted(done)} of {parts}", file=sys.stderr)
            sys.exit(1)
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                done.add(m.partition())
                continue
            print(f"error: {m.error()}", file=sys.stderr)
            sys.exit(1)
        count += 1
        checksum = (checksum + zlib.crc32((m.key() or b"") + (m.value() or b""))) % (1 << 64)
    c.close()
    print(json.dumps({"count": count, "checksum": checksum}))


if __name__ == "__main__":
    main()
