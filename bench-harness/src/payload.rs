//! Record keys and values.
//!
//! Values are printable ASCII so an independent client (`kcat -f '%k %s\n'`) can read them
//! back line by line. A value of at least [`HEADER_BYTES`] starts with `RT`, the intended send
//! time as 20 decimal digits of wall-clock nanoseconds, and `:`; the rest is filler drawn from
//! a seeded pool of random printable bytes (roughly as compressible as random base-64 text).

use crate::workload::{KeyMode, SizeDist};

pub const HEADER_BYTES: usize = 23;
const POOL_BYTES: usize = 1 << 20;
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// splitmix64: tiny, fast, good enough for choosing sizes, keys and filler offsets.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

pub struct PayloadGen {
    pool: Vec<u8>,
    rng: Rng,
    size: SizeDist,
    key_mode: KeyMode,
    key_cardinality: u64,
    next_key: u64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

impl PayloadGen {
    pub fn new(seed: u64, size: SizeDist, key_mode: KeyMode, key_cardinality: u64) -> PayloadGen {
        let mut rng = Rng::new(seed);
        let pool = (0..POOL_BYTES)
            .map(|_| ALPHABET[(rng.next_u64() & 63) as usize])
            .collect();
        PayloadGen {
            pool,
            rng,
            size,
            key_mode,
            key_cardinality,
            next_key: 0,
            key: Vec::with_capacity(24),
            value: Vec::with_capacity(size.max()),
        }
    }

    /// Fills `self.key` / `self.value` for the next record; returns whether it has a key.
    pub fn next_record(&mut self, intended_unix_ns: u64) -> bool {
        let len = match self.size {
            SizeDist::Fixed { bytes } => bytes,
            SizeDist::Uniform { min, max } => min + self.rng.below((max - min + 1) as u64) as usize,
        };
        self.value.clear();
        if len >= HEADER_BYTES {
            self.value.extend_from_slice(b"RT");
            push_digits20(&mut self.value, intended_unix_ns);
            self.value.push(b':');
        }
        let mut need = len - self.value.len();
        while need > 0 {
            let start = self.rng.below(POOL_BYTES as u64) as usize;
            let take = need.min(POOL_BYTES - start);
            self.value
                .extend_from_slice(&self.pool[start..start + take]);
            need -= take;
        }
        let k = match self.key_mode {
            KeyMode::None => return false,
            KeyMode::RoundRobin => {
                let k = self.next_key;
                self.next_key = (self.next_key + 1) % self.key_cardinality.max(1);
                k
            }
            KeyMode::Random => self.rng.below(self.key_cardinality.max(1)),
        };
        self.key.clear();
        self.key.push(b'k');
        push_decimal(&mut self.key, k);
        true
    }

    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }
}

fn push_digits20(out: &mut Vec<u8>, mut v: u64) {
    let mut d = [b'0'; 20];
    for slot in d.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&d);
}

fn push_decimal(out: &mut Vec<u8>, v: u64) {
    let mut d = [0u8; 20];
    let mut i = d.len();
    let mut v = v;
    loop {
        i -= 1;
        d[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&d[i..]);
}

/// The intended send time (wall-clock ns) embedded by [`PayloadGen`], if present.
pub fn parse_intended(value: &[u8]) -> Option<u64> {
    if value.len() < HEADER_BYTES || &value[..2] != b"RT" || value[22] != b':' {
        return None;
    }
    let mut v: u64 = 0;
    for &c in &value[2..22] {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some(v)
}

/// Per-record checksum: crc32 (IEEE, as Python's `zlib.crc32`) of key ++ value; a null key
/// counts as empty. Sums of these are order-independent.
pub fn record_checksum(key: Option<&[u8]>, value: &[u8]) -> u64 {
    let mut h = crc32fast::Hasher::new();
    if let Some(k) = key {
        h.update(k);
    }
    h.update(value);
    h.finalize() as u64
}

/// Partition for a key: murmur2 as in Kafka's default partitioner, so keyed data lands where
/// Java/librdkafka clients (with `murmur2_random`) would put it.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions.max(1) as u32) as i32
}

fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ len as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_sizes_hold() {
        let mut g = PayloadGen::new(
            1,
            SizeDist::Uniform { min: 10, max: 300 },
            KeyMode::RoundRobin,
            3,
        );
        for i in 0..1000u64 {
            let t = 1_763_000_000_000_000_000 + i;
            assert!(g.next_record(t));
            assert!((10..=300).contains(&g.value.len()));
            assert!(g.value.iter().all(|c| c.is_ascii_graphic()));
            if g.value.len() >= HEADER_BYTES {
                assert_eq!(parse_intended(&g.value), Some(t));
            } else {
                assert_eq!(parse_intended(&g.value), None);
            }
            assert_eq!(g.key, format!("k{}", i % 3).into_bytes());
        }
    }

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58897971
        );
        assert_eq!(murmur2(b"abc") as i32, 479470107);
    }

    #[test]
    fn checksum_matches_zlib_crc32() {
        // 0xCBF43926 is the published CRC-32 check value of "123456789" (= zlib.crc32).
        let mut all = b"k1".to_vec();
        all.extend_from_slice(b"hello");
        assert_eq!(
            record_checksum(Some(b"k1"), b"hello"),
            crc32fast::hash(&all) as u64
        );
        assert_eq!(record_checksum(None, b"123456789"), 0xCBF4_3926);
    }
}
