//! Record keys and values.
//!
//! Values are printable ASCII so an independent client (`kcat -f '%k %s\n'`) can read them
//! back line by line. A value of at least [`HEADER_BYTES`] starts with `RT`, the intended send
//! time as 20 decimal digits of wall-clock nanoseconds, and `:`; the rest is filler drawn from
//! a seeded pool of random printable bytes (roughly as compressible as random base-64 text).

use crate::batch::BatchBuilder;
use crate::workload::{KeyMode, SizeDist};
use bytes::BufMut;

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
    /// The value header of the last intended time written (records generated together in
    /// closed loop share one), so the 20 digits are formatted once per distinct time.
    header: [u8; HEADER_BYTES],
    header_time_ns: Option<u64>,
    /// Pool offsets of the next records' filler, drawn ahead so their cache lines can be
    /// prefetched: the pool does not stay in L2 while batches stream through it, and waiting
    /// for a random slice to arrive from L3 cost more than copying and checksumming it.
    starts: [usize; PREFETCH_AHEAD],
    next_slot: usize,
    /// Bytes of a record's filler worth prefetching.
    prefetch_bytes: usize,
    /// CRC register after the cached header (see `header`), from the standard initial
    /// register: the checksum of unkeyed records starts from it.
    header_reg: u32,
    /// O(1) checksums of fixed-length filler slices (fixed record sizes only).
    slice_crc: Option<SliceCrc>,
}

/// Records whose filler is prefetched ahead of the one being written.
const PREFETCH_AHEAD: usize = 4;
/// Prefetch at most this much per record; the hardware prefetcher follows longer values.
const PREFETCH_BYTES_MAX: usize = 2048;

/// A record key: `k` and up to 20 decimal digits, kept inline (no allocation per record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    buf: [u8; 21],
    len: u8,
}

impl Key {
    fn new(k: u64) -> Key {
        let mut buf = [0u8; 21];
        buf[0] = b'k';
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut v = k;
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        let n = digits.len() - i;
        buf[1..1 + n].copy_from_slice(&digits[i..]);
        Key {
            buf,
            len: (1 + n) as u8,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

/// What [`PayloadGen::append_record`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub value_len: usize,
    /// [`record_checksum`] of the record, computed over the bytes as written into the batch.
    pub checksum: u64,
}

impl PayloadGen {
    pub fn new(seed: u64, size: SizeDist, key_mode: KeyMode, key_cardinality: u64) -> PayloadGen {
        let mut rng = Rng::new(seed);
        let pool: Vec<u8> = (0..POOL_BYTES)
            .map(|_| ALPHABET[(rng.next_u64() & 63) as usize])
            .collect();
        let mut starts = [0; PREFETCH_AHEAD];
        for s in &mut starts {
            *s = rng.below(POOL_BYTES as u64) as usize;
        }
        let filler_len = match size {
            SizeDist::Fixed { bytes } if bytes >= HEADER_BYTES => Some(bytes - HEADER_BYTES),
            SizeDist::Fixed { bytes } => Some(bytes),
            SizeDist::Uniform { .. } => None,
        };
        let slice_crc = filler_len
            .filter(|&l| (SLICE_CRC_MIN_BYTES..=POOL_BYTES).contains(&l))
            .map(|l| SliceCrc::new(&pool, l));
        PayloadGen {
            header_reg: 0,
            slice_crc,
            starts,
            next_slot: 0,
            prefetch_bytes: size.max().min(PREFETCH_BYTES_MAX),
            pool,
            rng,
            size,
            key_mode,
            key_cardinality,
            next_key: 0,
            header: [0; HEADER_BYTES],
            header_time_ns: None,
        }
    }

    /// The next record's key (`None` without keys). Drawn before the value because the key
    /// chooses the partition, i.e. the batch the value is written into.
    pub fn next_key(&mut self) -> Option<Key> {
        let k = match self.key_mode {
            KeyMode::None => return None,
            KeyMode::RoundRobin => {
                let k = self.next_key;
                self.next_key = (self.next_key + 1) % self.key_cardinality.max(1);
                k
            }
            KeyMode::Random => self.rng.below(self.key_cardinality.max(1)),
        };
        Some(Key::new(k))
    }

    /// Draws the next value and appends the record straight into `batch` (one copy, from the
    /// pool into the batch); the checksum is computed over the bytes just written, while they
    /// are in cache.
    pub fn append_record(
        &mut self,
        batch: &mut BatchBuilder,
        timestamp_ms: i64,
        intended_unix_ns: u64,
        key: Option<&Key>,
    ) -> Appended {
        let len = match self.size {
            SizeDist::Fixed { bytes } => bytes,
            SizeDist::Uniform { min, max } => min + self.rng.below((max - min + 1) as u64) as usize,
        };
        let with_header = len >= HEADER_BYTES;
        if with_header && self.header_time_ns != Some(intended_unix_ns) {
            self.header[..2].copy_from_slice(b"RT");
            write_digits20(&mut self.header[2..22], intended_unix_ns);
            self.header[22] = b':';
            self.header_time_ns = Some(intended_unix_ns);
            self.header_reg = !crc32fast::hash(&self.header);
        }
        let filler_len = if with_header { len - HEADER_BYTES } else { len };
        let key = key.map(|k| k.as_bytes());
        // This record's first filler offset was drawn PREFETCH_AHEAD records ago; draw the
        // replacement now and start loading its lines.
        let slot = self.next_slot;
        self.next_slot = (slot + 1) % PREFETCH_AHEAD;
        let first = self.starts[slot];
        let ahead = self.rng.below(POOL_BYTES as u64) as usize;
        self.starts[slot] = ahead;
        prefetch(&self.pool[ahead..(ahead + self.prefetch_bytes).min(POOL_BYTES)]);
        if let Some(sc) = &self.slice_crc {
            sc.prefetch(ahead);
        }
        let (pool, rng, header) = (&self.pool, &mut self.rng, &self.header);
        match &self.slice_crc {
            // Fast path: the filler is one pool slice of the precomputed length, so its CRC
            // comes from two table lookups instead of a pass over the bytes.
            Some(sc) if sc.len == filler_len && first + filler_len <= POOL_BYTES => {
                let reg = match (key, with_header) {
                    (None, true) => self.header_reg,
                    (None, false) => !0,
                    (Some(k), _) => {
                        let mut h = crc32fast::Hasher::new();
                        h.update(k);
                        if with_header {
                            h.update(header);
                        }
                        !h.finalize()
                    }
                };
                let checksum = !sc.extend(reg, first) as u64;
                let chunk = &pool[first..first + filler_len];
                let value = batch.append_with(timestamp_ms, key, len, |out| {
                    if with_header {
                        out.put_slice(header);
                    }
                    out.put_slice(chunk);
                });
                debug_assert_eq!(checksum, record_checksum(key, value));
                Appended {
                    value_len: len,
                    checksum,
                }
            }
            _ => {
                // The checksum reads the source bytes (pool and header, in cache) rather than
                // the copy just written into the batch: reading freshly stored bytes back
                // stalls until the stores drain, which cost more than the CRC itself.
                let mut crc = crc32fast::Hasher::new();
                if let Some(k) = key {
                    crc.update(k);
                }
                let mut first_start = Some(first);
                let value = batch.append_with(timestamp_ms, key, len, |out| {
                    let mut need = len;
                    if with_header {
                        out.put_slice(header);
                        crc.update(header);
                        need -= HEADER_BYTES;
                    }
                    while need > 0 {
                        let start = match first_start.take() {
                            Some(s) => s,
                            None => rng.below(POOL_BYTES as u64) as usize,
                        };
                        let take = need.min(POOL_BYTES - start);
                        let chunk = &pool[start..start + take];
                        crc.update(chunk);
                        out.put_slice(chunk);
                        need -= take;
                    }
                });
                let checksum = crc.finalize() as u64;
                debug_assert_eq!(checksum, record_checksum(key, value));
                Appended {
                    value_len: len,
                    checksum,
                }
            }
        }
    }

    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }
}

/// Shortest filler worth the slice-CRC tables (below it a direct CRC is as fast).
const SLICE_CRC_MIN_BYTES: usize = 16;

/// Byte-at-a-time table of the reflected CRC-32 (IEEE) polynomial, as zlib's.
const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// One byte into a CRC-32 register (no initial or final inversion).
fn crc_step(reg: u32, byte: u8) -> u32 {
    CRC_TABLE[((reg ^ byte as u32) & 0xff) as usize] ^ (reg >> 8)
}

/// CRC-32 of pool slices of one length `len` in O(1).
///
/// The register update is linear over GF(2): processing bytes `m` from register `r` gives
/// `Z(r) ^ F(m)`, where `Z` appends `len(m)` zero bytes and `F(m)` is the register after `m`
/// from zero. With `P(i)` the register after `pool[..i]` from zero,
/// `F(pool[s..s+len]) = P(s+len) ^ Z_len(P(s))`, so processing the slice from register `r`
/// gives `Z_len(r ^ P(s)) ^ P(s+len)`: two lookups in `prefix` and one application of the
/// linear map `Z_len`, kept as four byte tables.
struct SliceCrc {
    len: usize,
    /// `P(i)` for every `i` in `0..=POOL_BYTES`.
    prefix: Vec<u32>,
    /// `Z_len` split by register byte: `Z_len(r) = xor of shift[k][byte k of r]`.
    shift: Box<[[u32; 256]; 4]>,
}

impl SliceCrc {
    fn new(pool: &[u8], len: usize) -> SliceCrc {
        assert!(len <= pool.len());
        let mut prefix = Vec::with_capacity(pool.len() + 1);
        let mut reg = 0u32;
        prefix.push(reg);
        for &b in pool {
            reg = crc_step(reg, b);
            prefix.push(reg);
        }
        // Z_len of each single-bit register, then of every byte value by linearity.
        let mut basis = [0u32; 32];
        for (bit, img) in basis.iter_mut().enumerate() {
            let mut r = 1u32 << bit;
            for _ in 0..len {
                r = crc_step(r, 0);
            }
            *img = r;
        }
        let mut shift = Box::new([[0u32; 256]; 4]);
        for (k, table) in shift.iter_mut().enumerate() {
            for (b, entry) in table.iter_mut().enumerate() {
                *entry = (0..8)
                    .filter(|i| b & (1 << i) != 0)
                    .fold(0, |acc, i| acc ^ basis[8 * k + i]);
            }
        }
        SliceCrc { len, prefix, shift }
    }

    /// Register after processing `pool[start..start + len]` from register `reg`.
    #[inline]
    fn extend(&self, reg: u32, start: usize) -> u32 {
        let a = reg ^ self.prefix[start];
        let s = &self.shift;
        s[0][(a & 0xff) as usize]
            ^ s[1][((a >> 8) & 0xff) as usize]
            ^ s[2][((a >> 16) & 0xff) as usize]
            ^ s[3][(a >> 24) as usize]
            ^ self.prefix[start + self.len]
    }

    /// Starts loading the two prefix entries a slice at `start` will need.
    fn prefetch(&self, start: usize) {
        if let Some(a) = self.prefix.get(start) {
            prefetch_line(a as *const u32 as *const u8);
        }
        if let Some(b) = self.prefix.get(start + self.len) {
            prefetch_line(b as *const u32 as *const u8);
        }
    }
}

/// Asks the CPU to bring `bytes` into cache (a hint: no effect on results).
#[inline]
fn prefetch(bytes: &[u8]) {
    for line in bytes.chunks(64) {
        prefetch_line(line.as_ptr());
    }
}

/// Asks the CPU to bring the cache line holding `p` into cache.
#[inline]
fn prefetch_line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch is only a hint: it never faults and reads nothing observable;
        // callers pass addresses inside live allocations anyway.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Two decimal digits per entry: halves the divisions of the timestamp header.
const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Writes `v` as exactly 20 decimal digits (u64::MAX has 20).
fn write_digits20(out: &mut [u8], mut v: u64) {
    assert_eq!(out.len(), 20);
    for pair in out.chunks_exact_mut(2).rev() {
        let d = (v % 100) as usize * 2;
        v /= 100;
        pair.copy_from_slice(&DIGIT_PAIRS[d..d + 2]);
    }
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
        use crate::batch::{split_batches, Codec, ProducerStamp};
        let mut g = PayloadGen::new(
            1,
            SizeDist::Uniform { min: 10, max: 300 },
            KeyMode::RoundRobin,
            3,
        );
        let mut b = BatchBuilder::new(1024);
        let mut want = Vec::new();
        for i in 0..1000u64 {
            // Pairs of records share an intended time, as in closed loop.
            let t = 1_763_000_000_000_000_000 + i / 2;
            let key = g.next_key();
            assert_eq!(
                key.map(|k| k.as_bytes().to_vec()),
                Some(format!("k{}", i % 3).into_bytes())
            );
            let a = g.append_record(&mut b, 7, t, key.as_ref());
            want.push((t, a));
        }
        let batch = b.seal(Codec::None, ProducerStamp::NONE).expect("seal");
        let decoded = split_batches(batch, true).expect("decode");
        assert_eq!(decoded.len(), 1);
        let mut n = 0;
        for (r, (t, a)) in decoded[0].iter().zip(&want) {
            let r = r.expect("record");
            let value = r.value.expect("value");
            assert_eq!(value.len(), a.value_len);
            assert!((10..=300).contains(&value.len()));
            assert!(value.iter().all(|c| c.is_ascii_graphic()));
            assert_eq!(record_checksum(r.key, value), a.checksum);
            if value.len() >= HEADER_BYTES {
                assert_eq!(parse_intended(value), Some(*t));
            } else {
                assert_eq!(parse_intended(value), None);
            }
            n += 1;
        }
        assert_eq!(n, want.len());
    }

    #[test]
    fn values_differ_between_records_and_seeds() {
        let size = SizeDist::Fixed { bytes: 100 };
        let values = |seed: u64| {
            let mut g = PayloadGen::new(seed, size, KeyMode::None, 0);
            let mut b = BatchBuilder::new(1 << 16);
            (0..200)
                .map(|_| g.append_record(&mut b, 0, 42, None).checksum)
                .collect::<Vec<_>>()
        };
        let a = values(1);
        let mut distinct = a.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            a.len(),
            "records with one intended time must differ"
        );
        assert_eq!(a, values(1), "same seed, same records");
        assert_ne!(a, values(2));
    }

    #[test]
    fn slice_crc_matches_direct_crc_at_every_kind_of_offset() {
        let pool: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
            .collect();
        for len in [16, 77, 1001] {
            let sc = SliceCrc::new(&pool, len);
            for start in [0, 1, 15, 64, 333, pool.len() - len] {
                let slice = &pool[start..start + len];
                // From the standard initial register (no prefix) ...
                assert_eq!(
                    !sc.extend(!0, start),
                    crc32fast::hash(slice),
                    "len {len} at {start}"
                );
                // ... and after a prefix, as for key ++ header ++ filler.
                let mut h = crc32fast::Hasher::new();
                h.update(b"k42RT:prefix");
                let reg = !h.clone().finalize();
                h.update(slice);
                assert_eq!(!sc.extend(reg, start), h.finalize(), "len {len} at {start}");
            }
        }
    }

    #[test]
    fn fixed_and_uniform_sizes_checksum_alike() {
        use crate::batch::{split_batches, Codec, ProducerStamp};
        // Fixed sizes take the slice-CRC path, with and without keys and headers.
        for (size, keys) in [
            (100, KeyMode::None),
            (1024, KeyMode::Random),
            (20, KeyMode::None),
        ] {
            let mut g = PayloadGen::new(9, SizeDist::Fixed { bytes: size }, keys, 50);
            assert_eq!(
                g.slice_crc.is_some(),
                size >= 16 + HEADER_BYTES || (16..HEADER_BYTES).contains(&size)
            );
            let mut b = BatchBuilder::new(1 << 16);
            let mut sums = Vec::new();
            for i in 0..500u64 {
                let key = g.next_key();
                sums.push(
                    g.append_record(&mut b, 1, 1_763_000_000_000_000_000 + i / 7, key.as_ref())
                        .checksum,
                );
            }
            let batch = b.seal(Codec::None, ProducerStamp::NONE).expect("seal");
            let decoded = split_batches(batch, true).expect("decode");
            let got: Vec<u64> = decoded[0]
                .iter()
                .map(|r| {
                    let r = r.expect("record");
                    record_checksum(r.key, r.value.expect("value"))
                })
                .collect();
            assert_eq!(got, sums, "size {size}");
        }
    }

    #[test]
    fn digits20_pads_and_covers_u64() {
        let mut d = [0u8; 20];
        write_digits20(&mut d, 0);
        assert_eq!(&d, b"00000000000000000000");
        write_digits20(&mut d, u64::MAX);
        assert_eq!(&d, b"18446744073709551615");
        write_digits20(&mut d, 1_763_000_000_123_456_789);
        assert_eq!(&d, b"01763000000123456789");
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
