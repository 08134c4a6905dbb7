//! Record-batch compression codecs, byte-compatible with Kafka's Java clients and librdkafka.
//!
//! Everything a Kafka batch can carry (`attributes & 0x7`): none, gzip, snappy, lz4, zstd.
//! All codecs are implemented here (on flate2, snap, lz4_flex, zstd) rather than through
//! kafka-protocol's built-in ones, for two reasons: kafka-protocol's lz4 needs the C `lz4`
//! crate (we use lz4_flex), and its decompressors have no output limit — a 1 MiB zstd batch
//! can expand to gigabytes, so every decompression here takes `max_output_bytes`
//! ("limit everything"). [`kp_compress`] / [`kp_decompress`] plug these codecs into
//! kafka-protocol's `encode_with_custom_compression` / `decode_with_custom_compression`.
//!
//! Wire details that matter for interoperability:
//! - **lz4**: the standard LZ4 *frame* format. Kafka's Java reader (`Lz4BlockInputStream`)
//!   decompresses every block on its own, so it cannot read linked blocks: we write
//!   independent 64 KiB blocks, no block/content checksums and no content size, exactly the
//!   frame descriptor Kafka's `Lz4BlockOutputStream` writes. Reading accepts any standard
//!   frame (linked blocks, checksums, content size: librdkafka and python `lz4.frame` use them).
//!   The broken header checksum of pre-0.10 Kafka only exists for magic v0 and is irrelevant.
//! - **snappy**: Java clients write the xerial `SnappyOutputStream` framing (16-byte magic
//!   header, then `[u32 big-endian length][raw snappy block]` chunks of up to 32 KiB input);
//!   some clients write one raw snappy block. We write xerial framing and read both, as
//!   `SnappyInputStream` does.
//! - **gzip**: RFC 1952; several concatenated members are accepted (Java's `GZIPInputStream`
//!   does). Level 6 (`Deflater.DEFAULT_COMPRESSION`, Kafka's `compression.gzip.level` default).
//! - **zstd**: standard frames, level 3 (Kafka's `compression.zstd.level` default);
//!   concatenated frames are accepted.

use std::io::{self, Read, Write};
use std::str::FromStr;

use bytes::{BufMut, Bytes, BytesMut};

/// Upper bound on the decompressed size of one batch unless the caller passes its own.
/// Kafka's `message.max.bytes` default is ~1 MiB of *compressed* bytes; 128 MiB allows a
/// 100× ratio on such a batch while bounding what one bad batch can make a shard allocate.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 128 * 1024 * 1024;

/// Kafka's default gzip level (`Deflater.DEFAULT_COMPRESSION`).
pub const GZIP_LEVEL_DEFAULT: u32 = 6;
/// Kafka's default zstd level.
pub const ZSTD_LEVEL_DEFAULT: i32 = 3;
/// xerial snappy-java's default block size, used by Kafka's Java producer.
pub const SNAPPY_XERIAL_BLOCK_BYTES: usize = 32 * 1024;

/// Magic header of xerial snappy-java's framing: `\x82SNAPPY\0`, version 1, compatible 1.
const SNAPPY_XERIAL_HEADER: [u8; 16] = [
    0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1,
];
/// Only the first 8 bytes identify the framing; the versions are not checked by readers.
const SNAPPY_XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];

/// A record batch compression codec (`attributes & 0x7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    /// All codecs, in attribute-id order.
    pub const ALL: [Codec; 5] = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ];

    /// The codec encoded in a v2 batch's attributes (bits 0-2).
    pub fn from_attributes(attributes: i16) -> Result<Codec, CompressionError> {
        Codec::from_id(attributes & storage::batch::ATTR_COMPRESSION_MASK)
    }

    /// The codec with Kafka id `id` (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn from_id(id: i16) -> Result<Codec, CompressionError> {
        match id {
            0 => Ok(Codec::None),
            1 => Ok(Codec::Gzip),
            2 => Ok(Codec::Snappy),
            3 => Ok(Codec::Lz4),
            4 => Ok(Codec::Zstd),
            other => Err(CompressionError::UnknownCodec(other)),
        }
    }

    /// Kafka id of the codec, as stored in the batch attributes.
    pub fn id(self) -> i16 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Snappy => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }

    /// Kafka's name of the codec (`CompressionType.name`).
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }

    /// Whether a Produce request of `api_version` may carry this codec: zstd needs Produce v7+
    /// (KIP-110); older requests get `UNSUPPORTED_COMPRESSION_TYPE` (76).
    pub fn allowed_in_produce_version(self, api_version: i16) -> bool {
        self != Codec::Zstd || api_version >= 7
    }

    /// The same codec in kafka-protocol's terms.
    pub fn to_kafka_protocol(self) -> kafka_protocol::records::Compression {
        use kafka_protocol::records::Compression as C;
        match self {
            Codec::None => C::None,
            Codec::Gzip => C::Gzip,
            Codec::Snappy => C::Snappy,
            Codec::Lz4 => C::Lz4,
            Codec::Zstd => C::Zstd,
        }
    }

    /// kafka-protocol's codec in our terms.
    pub fn from_kafka_protocol(c: kafka_protocol::records::Compression) -> Codec {
        use kafka_protocol::records::Compression as C;
        match c {
            C::None => Codec::None,
            C::Gzip => Codec::Gzip,
            C::Snappy => Codec::Snappy,
            C::Lz4 => Codec::Lz4,
            C::Zstd => Codec::Zstd,
        }
    }
}

/// A topic's `compression.type` config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicCompression {
    /// `producer` (Kafka's default): keep whatever codec the producer used.
    Producer,
    /// A fixed codec (`uncompressed` is [`Codec::None`]).
    Codec(Codec),
}

impl TopicCompression {
    /// The codec batches must be stored with, given the codec the producer used.
    pub fn target_codec(self, batch_codec: Codec) -> Codec {
        match self {
            TopicCompression::Producer => batch_codec,
            TopicCompression::Codec(c) => c,
        }
    }

    /// True when a batch written with `batch_codec` must be recompressed before storing
    /// (Kafka's `LogValidator`: source codec differs from the target codec).
    pub fn needs_recompression(self, batch_codec: Codec) -> bool {
        self.target_codec(batch_codec) != batch_codec
    }

    /// The config value, as Kafka spells it.
    pub fn name(self) -> &'static str {
        match self {
            TopicCompression::Producer => "producer",
            TopicCompression::Codec(Codec::None) => "uncompressed",
            TopicCompression::Codec(c) => c.name(),
        }
    }
}

impl FromStr for TopicCompression {
    type Err = CompressionError;

    /// Parses Kafka's `compression.type` values (case-insensitive like Kafka's validator).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "producer" => Ok(TopicCompression::Producer),
            "uncompressed" => Ok(TopicCompression::Codec(Codec::None)),
            "gzip" => Ok(TopicCompression::Codec(Codec::Gzip)),
            "snappy" => Ok(TopicCompression::Codec(Codec::Snappy)),
            "lz4" => Ok(TopicCompression::Codec(Codec::Lz4)),
            "zstd" => Ok(TopicCompression::Codec(Codec::Zstd)),
            _ => Err(CompressionError::UnknownTopicCompression(s.to_owned())),
        }
    }
}

/// Compression failures. Their Kafka codes are mapped in `crate::errors`.
#[derive(Debug, thiserror::Error)]
pub enum CompressionError {
    #[error("unknown compression codec id {0}")]
    UnknownCodec(i16),
    #[error("unknown compression.type {0:?} (expected producer, uncompressed, gzip, snappy, lz4 or zstd)")]
    UnknownTopicCompression(String),
    #[error("corrupt {codec:?} data: {reason}")]
    Corrupt { codec: Codec, reason: String },
    #[error("{codec:?} data decompresses to more than {limit_bytes} bytes")]
    TooLarge { codec: Codec, limit_bytes: usize },
    #[error("{codec:?} compression failed: {reason}")]
    Compress { codec: Codec, reason: String },
}

/// Compresses `input` with `codec`, appending to `out`.
pub fn compress_into(
    codec: Codec,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    let fail = |reason: String| CompressionError::Compress { codec, reason };
    match codec {
        Codec::None => out.extend_from_slice(input),
        Codec::Gzip => {
            let mut enc =
                flate2::write::GzEncoder::new(out, flate2::Compression::new(GZIP_LEVEL_DEFAULT));
            enc.write_all(input).map_err(|e| fail(e.to_string()))?;
            enc.finish().map_err(|e| fail(e.to_string()))?;
        }
        Codec::Snappy => {
            out.extend_from_slice(&SNAPPY_XERIAL_HEADER);
            let mut encoder = snap::raw::Encoder::new();
            for chunk in input.chunks(SNAPPY_XERIAL_BLOCK_BYTES) {
                let len_at = out.len();
                out.extend_from_slice(&[0; 4]);
                let start = out.len();
                out.resize(start + snap::raw::max_compress_len(chunk.len()), 0);
                let n = encoder
                    .compress(chunk, &mut out[start..])
                    .map_err(|e| fail(e.to_string()))?;
                out.truncate(start + n);
                let n = u32::try_from(n).map_err(|_| fail("snappy block too large".into()))?;
                out[len_at..len_at + 4].copy_from_slice(&n.to_be_bytes());
            }
        }
        Codec::Lz4 => {
            use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
            let info = FrameInfo::new()
                .block_size(BlockSize::Max64KB)
                .block_mode(BlockMode::Independent)
                .block_checksums(false)
                .content_checksum(false);
            let mut enc = FrameEncoder::with_frame_info(info, out);
            enc.write_all(input).map_err(|e| fail(e.to_string()))?;
            enc.finish().map_err(|e| fail(e.to_string()))?;
        }
        Codec::Zstd => {
            let compressed =
                zstd::bulk::compress(input, ZSTD_LEVEL_DEFAULT).map_err(|e| fail(e.to_string()))?;
            out.extend_from_slice(&compressed);
        }
    }
    Ok(())
}

/// Compresses `input` with `codec` into a new buffer.
pub fn compress(codec: Codec, input: &[u8]) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    compress_into(codec, input, &mut out)?;
    Ok(out)
}

/// Decompresses `input`, refusing output larger than `max_output_bytes`.
/// `Codec::None` returns the input itself (no copy).
pub fn decompress(
    codec: Codec,
    input: &Bytes,
    max_output_bytes: usize,
) -> Result<Bytes, CompressionError> {
    let corrupt = |e: &dyn std::fmt::Display| CompressionError::Corrupt {
        codec,
        reason: e.to_string(),
    };
    let out = match codec {
        Codec::None => {
            if input.len() > max_output_bytes {
                return Err(CompressionError::TooLarge {
                    codec,
                    limit_bytes: max_output_bytes,
                });
            }
            return Ok(input.clone());
        }
        Codec::Gzip => read_limited(
            codec,
            flate2::read::MultiGzDecoder::new(&input[..]),
            max_output_bytes,
        )?,
        Codec::Snappy => snappy_decompress(input, max_output_bytes)?,
        Codec::Lz4 => read_limited(
            codec,
            lz4_flex::frame::FrameDecoder::new(&input[..]),
            max_output_bytes,
        )?,
        Codec::Zstd => {
            let dec =
                zstd::stream::read::Decoder::with_buffer(&input[..]).map_err(|e| corrupt(&e))?;
            read_limited(codec, dec, max_output_bytes)?
        }
    };
    Ok(Bytes::from(out))
}

/// Reads a decoder to the end, failing once more than `limit` bytes come out.
fn read_limited<R: Read>(
    codec: Codec,
    reader: R,
    limit: usize,
) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e: io::Error| CompressionError::Corrupt {
            codec,
            reason: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(CompressionError::TooLarge {
            codec,
            limit_bytes: limit,
        });
    }
    Ok(out)
}

fn snappy_decompress(input: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    let codec = Codec::Snappy;
    let corrupt = |reason: String| CompressionError::Corrupt { codec, reason };
    let too_large = || CompressionError::TooLarge {
        codec,
        limit_bytes: limit,
    };
    let mut decoder = snap::raw::Decoder::new();
    let mut raw_block = |block: &[u8], out: &mut Vec<u8>| -> Result<(), CompressionError> {
        let n = snap::raw::decompress_len(block).map_err(|e| corrupt(e.to_string()))?;
        if n > limit.saturating_sub(out.len()) {
            return Err(too_large());
        }
        let start = out.len();
        out.resize(start + n, 0);
        let written = decoder
            .decompress(block, &mut out[start..])
            .map_err(|e| corrupt(e.to_string()))?;
        out.truncate(start + written);
        Ok(())
    };
    let mut out = Vec::new();
    if input.len() < SNAPPY_XERIAL_HEADER.len() || input[..8] != SNAPPY_XERIAL_MAGIC {
        // Not xerial-framed: one raw snappy block (SnappyInputStream's fallback).
        raw_block(input, &mut out)?;
        return Ok(out);
    }
    let mut rest = &input[SNAPPY_XERIAL_HEADER.len()..];
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(corrupt("truncated xerial chunk length".into()));
        };
        let len = u32::from_be_bytes(*len) as usize;
        let block = tail
            .get(..len)
            .ok_or_else(|| corrupt("truncated xerial chunk".into()))?;
        raw_block(block, &mut out)?;
        rest = &tail[len..];
    }
    Ok(out)
}

/// Compression hook for kafka-protocol's `RecordBatchEncoder::encode_with_custom_compression`
/// (with `B = BytesMut`): compresses the encoded records with our codecs.
pub fn kp_compress(
    records: &mut BytesMut,
    out: &mut BytesMut,
    compression: kafka_protocol::records::Compression,
) -> anyhow::Result<()> {
    let compressed = compress(Codec::from_kafka_protocol(compression), records)?;
    out.put_slice(&compressed);
    Ok(())
}

/// Decompression hook for kafka-protocol's `RecordBatchDecoder::decode_with_custom_compression`
/// (with `B = Bytes`), bounded by [`DEFAULT_MAX_DECOMPRESSED_BYTES`].
pub fn kp_decompress(
    compressed: &mut Bytes,
    compression: kafka_protocol::records::Compression,
) -> anyhow::Result<Bytes> {
    Ok(decompress(
        Codec::from_kafka_protocol(compression),
        compressed,
        DEFAULT_MAX_DECOMPRESSED_BYTES,
    )?)
}

// ---- broker glue ------------------------------------------------------------------------------

/// Re-exported so produce / ListOffsets code can reach the record-level operations through
/// `compression::` (they live in [`crate::log::records`]).
pub use crate::log::records::{find_record_by_timestamp, recompress, RecordsError};

impl From<crate::log::topic_config::CompressionType> for TopicCompression {
    fn from(c: crate::log::topic_config::CompressionType) -> Self {
        use crate::log::topic_config::CompressionType as T;
        match c {
            T::Producer => TopicCompression::Producer,
            T::Uncompressed => TopicCompression::Codec(Codec::None),
            T::Gzip => TopicCompression::Codec(Codec::Gzip),
            T::Snappy => TopicCompression::Codec(Codec::Snappy),
            T::Lz4 => TopicCompression::Codec(Codec::Lz4),
            T::Zstd => TopicCompression::Codec(Codec::Zstd),
        }
    }
}

/// The codec a produced record set must be rewritten to before it is stored
/// ([`recompress`]), or `None` when the topic keeps the producer's codec or every data batch
/// already uses the topic's codec. Control batches are never rewritten. A batch with unknown
/// codec bits asks for a rewrite, which then fails with `UNSUPPORTED_COMPRESSION_TYPE`.
pub fn recompression_target(
    topic: impl Into<TopicCompression>,
    batches: &storage::batch::ValidatedBatches,
) -> Option<Codec> {
    let TopicCompression::Codec(target) = topic.into() else {
        return None;
    };
    batches
        .headers()
        .iter()
        .filter(|h| !h.is_control())
        .any(|h| h.codec().map_or(true, |c| c != target))
        .then_some(target)
}

/// The codec of a parsed batch header: storage knows where the bits are, this module what
/// they mean.
pub trait HeaderCodec {
    /// The batch's compression codec; an error for bits that name none.
    fn codec(&self) -> Result<Codec, CompressionError>;
}

impl HeaderCodec for storage::batch::BatchHeader {
    fn codec(&self) -> Result<Codec, CompressionError> {
        Codec::from_attributes(self.attributes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::KafkaCode;

    fn sample(len: usize) -> Vec<u8> {
        // Compressible but not trivial: JSON-ish text with a counter.
        let mut v = Vec::with_capacity(len);
        let mut i = 0u64;
        while v.len() < len {
            v.extend_from_slice(format!("{{\"id\":{i},\"name\":\"user-{}\"}},", i % 97).as_bytes());
            i += 1;
        }
        v.truncate(len);
        v
    }

    #[test]
    fn every_codec_round_trips_all_sizes() {
        for codec in Codec::ALL {
            for len in [
                0usize,
                1,
                100,
                32 * 1024,
                32 * 1024 + 1,
                64 * 1024 + 7,
                300_000,
            ] {
                let input = sample(len);
                let c = compress(codec, &input).unwrap();
                let d = decompress(codec, &Bytes::from(c), usize::MAX).unwrap();
                assert_eq!(&d[..], &input[..], "{codec:?} len {len}");
            }
        }
    }

    #[test]
    fn names_ids_and_topic_config() {
        for codec in Codec::ALL {
            assert_eq!(Codec::from_id(codec.id()).unwrap(), codec);
            assert_eq!(Codec::from_attributes(codec.id() | 0x18).unwrap(), codec);
            assert_eq!(Codec::from_kafka_protocol(codec.to_kafka_protocol()), codec);
            let topic = TopicCompression::Codec(codec);
            assert_eq!(topic.name().parse::<TopicCompression>().unwrap(), topic);
        }
        assert!(matches!(
            Codec::from_id(5),
            Err(CompressionError::UnknownCodec(5))
        ));
        assert_eq!(Codec::from_attributes(0x7).unwrap_err().kafka_code(), 76);
        assert_eq!(
            "PRODUCER".parse::<TopicCompression>().unwrap(),
            TopicCompression::Producer
        );
        assert!("none".parse::<TopicCompression>().is_err());
        assert!("brotli".parse::<TopicCompression>().is_err());
        let p = TopicCompression::Producer;
        assert!(!p.needs_recompression(Codec::Lz4));
        assert_eq!(p.target_codec(Codec::Lz4), Codec::Lz4);
        let z = TopicCompression::Codec(Codec::Zstd);
        assert!(z.needs_recompression(Codec::Lz4));
        assert!(!z.needs_recompression(Codec::Zstd));
        assert!(!Codec::Zstd.allowed_in_produce_version(6));
        assert!(Codec::Zstd.allowed_in_produce_version(7));
        assert!(Codec::Lz4.allowed_in_produce_version(3));
    }

    #[test]
    fn lz4_frame_descriptor_matches_kafka_writer() {
        let c = compress(Codec::Lz4, b"hello hello hello hello").unwrap();
        assert_eq!(&c[..4], &[0x04, 0x22, 0x4d, 0x18], "LZ4 frame magic");
        // FLG: version 01, block independence set, no checksums, no content size.
        assert_eq!(c[4], 0b0110_0000);
        // BD: 64 KiB max block size.
        assert_eq!(c[5], 0x40);
        // Large input: every block independent, each at most 64 KiB uncompressed.
        let big = sample(200_000);
        let c = compress(Codec::Lz4, &big).unwrap();
        let mut pos = 7;
        let mut blocks = 0;
        loop {
            let size = u32::from_le_bytes(c[pos..pos + 4].try_into().unwrap());
            pos += 4;
            if size == 0 {
                break;
            }
            let len = (size & 0x7fff_ffff) as usize;
            let block = &c[pos..pos + len];
            if size & 0x8000_0000 == 0 {
                // Decodable without any previous block as dictionary.
                let d = lz4_flex::block::decompress(block, 64 * 1024).unwrap();
                assert!(d.len() <= 64 * 1024);
            }
            pos += len;
            blocks += 1;
        }
        assert_eq!(pos, c.len());
        assert_eq!(blocks, 4);
    }

    #[test]
    fn snappy_xerial_framing_and_raw_fallback() {
        let input = sample(100_000);
        let c = compress(Codec::Snappy, &input).unwrap();
        assert_eq!(&c[..16], &SNAPPY_XERIAL_HEADER);
        // First chunk holds exactly 32 KiB of input.
        let len = u32::from_be_bytes(c[16..20].try_into().unwrap()) as usize;
        let first = snap::raw::Decoder::new()
            .decompress_vec(&c[20..20 + len])
            .unwrap();
        assert_eq!(first.len(), SNAPPY_XERIAL_BLOCK_BYTES);
        let raw = snap::raw::Encoder::new().compress_vec(&input).unwrap();
        let d = decompress(Codec::Snappy, &Bytes::from(raw), usize::MAX).unwrap();
        assert_eq!(&d[..], &input[..]);
        // Truncated framing is an error, not a panic.
        for cut in [17, 19, 25, c.len() - 1] {
            assert!(decompress(
                Codec::Snappy,
                &Bytes::copy_from_slice(&c[..cut]),
                usize::MAX
            )
            .is_err());
        }
    }

    #[test]
    fn gzip_accepts_concatenated_members() {
        let mut c = compress(Codec::Gzip, b"first,").unwrap();
        c.extend(compress(Codec::Gzip, b"second").unwrap());
        let d = decompress(Codec::Gzip, &Bytes::from(c), usize::MAX).unwrap();
        assert_eq!(&d[..], b"first,second");
    }

    #[test]
    fn decompression_is_bounded() {
        let zeros = vec![0u8; 4 * 1024 * 1024];
        for codec in Codec::ALL {
            let c = Bytes::from(compress(codec, &zeros).unwrap());
            let err = decompress(codec, &c, 1024 * 1024).unwrap_err();
            assert!(
                matches!(err, CompressionError::TooLarge { limit_bytes, .. } if limit_bytes == 1024 * 1024),
                "{codec:?}: {err}"
            );
            assert_eq!(err.kafka_code(), 10);
            // Exactly at the limit is fine.
            assert_eq!(
                decompress(codec, &c, zeros.len()).unwrap().len(),
                zeros.len()
            );
        }
    }

    #[test]
    fn garbage_is_an_error_for_every_codec() {
        let garbage = Bytes::from_static(b"\x00\x01\x02\x03definitely not compressed data\xff\xfe");
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let err = decompress(codec, &garbage, 1 << 20).unwrap_err();
            assert_eq!(err.kafka_code(), 2, "{codec:?}: {err}");
        }
        // Corrupting compressed bytes never panics.
        let input = sample(50_000);
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let c = compress(codec, &input).unwrap();
            for i in (0..c.len()).step_by(97) {
                let mut bad = c.clone();
                bad[i] ^= 0x55;
                let _ = decompress(codec, &Bytes::from(bad), 1 << 20);
            }
        }
    }

    #[test]
    fn recompression_target_follows_topic_config() {
        use crate::log::records::{build_batch, BatchSpec, NewRecord};
        use crate::log::topic_config::CompressionType as T;
        let record = NewRecord {
            timestamp: 1,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: vec![],
        };
        let batch = |codec| {
            let spec = BatchSpec {
                codec,
                ..BatchSpec::default()
            };
            build_batch(&spec, std::slice::from_ref(&record)).unwrap()
        };
        let lz4 = storage::batch::ValidatedBatches::parse(batch(Codec::Lz4)).unwrap();
        assert_eq!(recompression_target(T::Producer, &lz4), None);
        assert_eq!(recompression_target(T::Lz4, &lz4), None);
        assert_eq!(recompression_target(T::Zstd, &lz4), Some(Codec::Zstd));
        assert_eq!(
            recompression_target(T::Uncompressed, &lz4),
            Some(Codec::None)
        );
        let mut two = BytesMut::from(&batch(Codec::Gzip)[..]);
        two.put_slice(&batch(Codec::Snappy));
        let two = storage::batch::ValidatedBatches::parse(two.freeze()).unwrap();
        assert_eq!(recompression_target(T::Gzip, &two), Some(Codec::Gzip));
        assert_eq!(
            TopicCompression::from(T::Uncompressed),
            TopicCompression::Codec(Codec::None)
        );
        for t in [
            T::Producer,
            T::Uncompressed,
            T::Gzip,
            T::Snappy,
            T::Lz4,
            T::Zstd,
        ] {
            assert_eq!(TopicCompression::from(t).name(), t.name());
        }
    }

    #[test]
    fn kafka_protocol_hooks_round_trip() {
        for codec in Codec::ALL {
            let mut records = BytesMut::from(&sample(5000)[..]);
            let mut out = BytesMut::new();
            kp_compress(&mut records, &mut out, codec.to_kafka_protocol()).unwrap();
            let mut compressed = out.freeze();
            let back = kp_decompress(&mut compressed, codec.to_kafka_protocol()).unwrap();
            assert_eq!(&back[..], &records[..]);
        }
    }
}
