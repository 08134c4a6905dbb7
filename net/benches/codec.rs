//! Decode/encode costs on the hot paths: request frames split off the byte stream, Produce
//! and Fetch requests, Fetch responses with spliced records (one buffer per partition, and
//! the several stored chunks per partition the broker sends from its cache).
//! `cargo bench -p ringtail-net --bench codec`.

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use net::codec::{encode_response_with, FetchRecords};
use net::frame::FrameDecoder;
use net::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use net::kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use net::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use net::kafka_protocol::messages::*;
use net::kafka_protocol::protocol::StrBytes;
use net::{decode_request, encode_request, encode_response, parse_request_header};

fn topic() -> TopicName {
    TopicName(StrBytes::from_static_str("bench-topic"))
}

fn produce(partitions: i32, records_bytes: usize) -> RequestKind {
    let data = (0..partitions)
        .map(|i| {
            PartitionProduceData::default()
                .with_index(i)
                .with_records(Some(Bytes::from(vec![7u8; records_bytes])))
        })
        .collect();
    RequestKind::Produce(
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic())
                .with_partition_data(data)]),
    )
}

fn fetch(partitions: i32) -> RequestKind {
    let parts = (0..partitions)
        .map(|i| {
            FetchPartition::default()
                .with_partition(i)
                .with_fetch_offset(123_456)
                .with_partition_max_bytes(1_048_576)
        })
        .collect();
    RequestKind::Fetch(
        FetchRequest::default()
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(52_428_800) // > body and > 2^20: takes the guarded double decode
            .with_session_id(0)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic())
                .with_partitions(parts)]),
    )
}

fn fetch_response(partitions: i32, records_bytes: usize) -> ResponseKind {
    let parts = (0..partitions)
        .map(|i| {
            PartitionData::default()
                .with_partition_index(i)
                .with_high_watermark(1_000_000)
                .with_records(Some(Bytes::from(vec![9u8; records_bytes])))
        })
        .collect();
    ResponseKind::Fetch(FetchResponse::default().with_responses(vec![
        FetchableTopicResponse::default()
            .with_topic(topic())
            .with_partitions(parts),
    ]))
}

fn bench(c: &mut Criterion) {
    let cases = [
        ("produce_v9_1x1KiB", ApiKey::Produce, 9, produce(1, 1024)),
        (
            "produce_v9_16x16KiB",
            ApiKey::Produce,
            9,
            produce(16, 16 * 1024),
        ),
        ("fetch_v12_1p", ApiKey::Fetch, 12, fetch(1)),
        ("fetch_v12_64p", ApiKey::Fetch, 12, fetch(64)),
    ];
    for (name, key, version, req) in cases {
        let framed = encode_request(key, version, 1, Some("bench"), &req).unwrap();
        let body = framed.slice(4..);
        c.bench_function(&format!("decode/{name}"), |b| {
            b.iter(|| {
                let frame = parse_request_header(body.clone()).unwrap();
                decode_request(&frame).unwrap()
            })
        });
    }
    for (name, resp) in [
        ("fetch_resp_v12_4x1MiB_spliced", fetch_response(4, 1 << 20)),
        ("fetch_resp_v12_64x1KiB_copied", fetch_response(64, 1024)),
    ] {
        c.bench_function(&format!("encode/{name}"), |b| {
            b.iter(|| encode_response(ApiKey::Fetch as i16, 12, 1, &resp).unwrap())
        });
    }
    // What the broker does per fetch from its cache: each partition's records are several
    // stored chunks (header + body per batch), given to the encoder as placeholders and sent
    // as separate buffers.
    let chunks: Vec<Bytes> = (0..8).map(|_| Bytes::from(vec![5u8; 128 << 10])).collect();
    c.bench_function("encode/fetch_resp_v12_12x1MiB_chunked", |b| {
        b.iter(|| {
            let mut spliced = FetchRecords::new();
            let parts = (0..12)
                .map(|i| {
                    PartitionData::default()
                        .with_partition_index(i)
                        .with_high_watermark(1_000_000)
                        .with_records(Some(spliced.records(chunks.clone())))
                })
                .collect();
            let resp = ResponseKind::Fetch(FetchResponse::default().with_responses(vec![
                FetchableTopicResponse::default()
                    .with_topic(topic())
                    .with_partitions(parts),
            ]));
            encode_response_with(ApiKey::Fetch as i16, 12, 1, &resp, &spliced).unwrap()
        })
    });
    // Splitting request frames off the received bytes (16 frames of 64 KiB).
    let mut stream = BytesMut::new();
    for _ in 0..16 {
        stream.put_i32(64 << 10);
        stream.put_slice(&[3u8; 64 << 10]);
    }
    let decoder = FrameDecoder::new(1 << 20);
    c.bench_function("frame/decode_16x64KiB", |b| {
        b.iter_batched(
            || stream.clone(),
            |mut buf| {
                let mut n = 0;
                while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                    n += frame.len();
                }
                assert_eq!(n, 16 << 16);
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
