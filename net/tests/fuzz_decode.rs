//! Property-based fuzzing of the request path: random and mutated frames must never panic
//! (or abort) `parse_request_header` + `decode_request`. Runs in `cargo test`; the cargo-fuzz
//! target in `net/fuzz` runs the same entry point for longer.

use bytes::{BufMut, Bytes, BytesMut};
use net::codec::default_request;
use net::kafka_protocol::messages::ApiKey;
use net::versions::request_struct_versions;
use net::{decode_request, encode_request, parse_request_header};
use proptest::prelude::*;

/// Every API at every decodable version, default-valued, header included (no size prefix).
fn seeds() -> Vec<Bytes> {
    let mut out = Vec::new();
    for key in ApiKey::iter() {
        let range = request_struct_versions(key);
        for version in range.min..=range.max {
            if let Ok(framed) = encode_request(key, version, 7, Some("fuzz"), &default_request(key))
            {
                out.push(framed.slice(4..));
            }
        }
    }
    out
}

/// Parse + decode; checks the error's ids agree with the parsed header.
fn exercise(frame: Bytes) {
    let Ok(req) = parse_request_header(frame) else {
        return;
    };
    if let Err(e) = decode_request(&req) {
        assert_eq!(e.ids(), Some(req.ids()));
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    /// Overwrite 4 bytes with a value that looks like a huge or negative length.
    BigInt(usize, u32),
    /// Overwrite 5 bytes with a maximal varint.
    BigVarint(usize),
    Append(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (
            any::<usize>(),
            prop_oneof![
                Just(0x7fff_ffffu32),
                Just(0xffff_fffe),
                Just(0x8000_0000),
                Just(0x0100_0000),
                any::<u32>()
            ]
        )
            .prop_map(|(i, v)| Mutation::BigInt(i, v)),
        any::<usize>().prop_map(Mutation::BigVarint),
        prop::collection::vec(any::<u8>(), 1..16).prop_map(Mutation::Append),
    ]
}

fn apply(frame: &Bytes, mutations: &[Mutation]) -> Bytes {
    let mut v = frame.to_vec();
    for m in mutations {
        let len = v.len();
        match m {
            Mutation::FlipBit(i, b) if len > 0 => v[i % len] ^= 1 << b,
            Mutation::Truncate(i) => v.truncate(i % (len + 1)),
            Mutation::Insert(i, b) => v.insert(i % (len + 1), *b),
            Mutation::BigInt(i, x) if len >= 4 => {
                let at = i % (len - 3);
                v[at..at + 4].copy_from_slice(&x.to_be_bytes());
            }
            Mutation::BigVarint(i) if len >= 5 => {
                let at = i % (len - 4);
                v[at..at + 5].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
            }
            Mutation::Append(extra) => v.extend_from_slice(extra),
            _ => {}
        }
    }
    Bytes::from(v)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_valid_frames_never_panic(
        seed in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        thread_local!(static SEEDS: Vec<Bytes> = seeds());
        let frame = SEEDS.with(|s| s[seed.index(s.len())].clone());
        exercise(apply(&frame, &mutations));
    }

    #[test]
    fn random_bodies_under_real_headers_never_panic(
        api_key in prop_oneof![0i16..=95, any::<i16>()],
        api_version in prop_oneof![-1i16..=20, any::<i16>()],
        correlation_id in any::<i32>(),
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut b = BytesMut::new();
        b.put_i16(api_key);
        b.put_i16(api_version);
        b.put_i32(correlation_id);
        b.put_i16(-1); // null client id
        // Flexible headers: empty tagged fields. Harmless extra byte for v1 headers.
        b.put_u8(0);
        b.put_slice(&body);
        exercise(b.freeze());
    }

    #[test]
    fn random_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..512)) {
        exercise(Bytes::from(raw));
    }
}

#[test]
fn every_seed_decodes_back() {
    // The seeds themselves must be valid: otherwise the mutation test only fuzzes the
    // error path.
    let seeds = seeds();
    assert!(seeds.len() > 250, "only {} seeds", seeds.len());
    let mut failures = Vec::new();
    for frame in &seeds {
        let req = parse_request_header(frame.clone()).unwrap();
        if let Err(e) = decode_request(&req) {
            failures.push(e.to_string());
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Writes the seeds as a cargo-fuzz corpus:
/// `NET_FUZZ_CORPUS=net/fuzz/corpus/decode_request cargo test -p ringtail-net --test fuzz_decode -- --ignored`
#[test]
#[ignore]
fn write_fuzz_corpus() {
    let Some(dir) = std::env::var_os("NET_FUZZ_CORPUS") else {
        return;
    };
    std::fs::create_dir_all(&dir).unwrap();
    for (i, seed) in seeds().iter().enumerate() {
        std::fs::write(
            std::path::Path::new(&dir).join(format!("seed-{i:04}")),
            seed,
        )
        .unwrap();
    }
}
