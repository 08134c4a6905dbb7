//! Kafka v2 `RecordBatch` headers: the one place their layout is defined, and where they are
//! parsed, verified and written.
//!
//! The fixed 61-byte header is decoded here; records are never looked at. The layout (all
//! big-endian) is, as [`field`] derives it and the compile-time assertions below check it:
//!
//! | bytes  | field                  |
//! |--------|------------------------|
//! | 0..8   | baseOffset             |
//! | 8..12  | batchLength (= total - 12) |
//! | 12..16 | partitionLeaderEpoch   |
//! | 16     | magic (must be 2)      |
//! | 17..21 | crc (CRC32C of 21..end) |
//! | 21..23 | attributes             |
//! | 23..27 | lastOffsetDelta        |
//! | 27..35 | baseTimestamp          |
//! | 35..43 | maxTimestamp           |
//! | 43..51 | producerId             |
//! | 51..53 | producerEpoch          |
//! | 53..57 | baseSequence           |
//! | 57..61 | recordsCount           |
//!
//! Because the CRC starts at `attributes`, the broker may rewrite `baseOffset` and
//! `partitionLeaderEpoch` without recomputing it.
//!
//! Every other crate that reads or writes a header (the broker's produce validation and record
//! codec, the bench harness) goes through [`field`], the `ATTR_*` bits, [`BatchHeader::parse`]
//! and its variants, [`verify_crc`] and [`BatchHeader::write`]; none keeps offsets of its own.
//! Everything here is pure (no I/O) and runs on whichever shard calls it.
//!
//! Every [`BatchError`] means the bytes are not a valid batch; storage's callers map all of
//! them to `CORRUPT_MESSAGE` (Kafka error code 2). Kafka itself answers the count/offset-range
//! inconsistencies ([`BatchError::BadRecordCount`], [`BatchError::BadLastOffsetDelta`]) with
//! `INVALID_RECORD` (87); see [`BatchError::is_invalid_record`] if the broker wants to be that
//! precise.

use std::mem::size_of;
use std::ops::Range;

use bytes::Bytes;

/// Byte ranges of the header fields, in wire order. Each field starts where the previous one
/// ends and is as wide as its type, so the offsets are derived rather than typed in; the
/// assertions below check them against Kafka's `DefaultRecordBatch` constants.
pub mod field {
    use super::{size_of, Range};

    const fn after(previous: Range<usize>, width: usize) -> Range<usize> {
        previous.end..previous.end + width
    }

    pub const BASE_OFFSET: Range<usize> = 0..size_of::<i64>();
    pub const LENGTH: Range<usize> = after(BASE_OFFSET, size_of::<i32>());
    pub const PARTITION_LEADER_EPOCH: Range<usize> = after(LENGTH, size_of::<i32>());
    pub const MAGIC: Range<usize> = after(PARTITION_LEADER_EPOCH, size_of::<i8>());
    pub const CRC: Range<usize> = after(MAGIC, size_of::<u32>());
    pub const ATTRIBUTES: Range<usize> = after(CRC, size_of::<i16>());
    pub const LAST_OFFSET_DELTA: Range<usize> = after(ATTRIBUTES, size_of::<i32>());
    pub const BASE_TIMESTAMP: Range<usize> = after(LAST_OFFSET_DELTA, size_of::<i64>());
    pub const MAX_TIMESTAMP: Range<usize> = after(BASE_TIMESTAMP, size_of::<i64>());
    pub const PRODUCER_ID: Range<usize> = after(MAX_TIMESTAMP, size_of::<i64>());
    pub const PRODUCER_EPOCH: Range<usize> = after(PRODUCER_ID, size_of::<i16>());
    pub const BASE_SEQUENCE: Range<usize> = after(PRODUCER_EPOCH, size_of::<i32>());
    pub const RECORDS_COUNT: Range<usize> = after(BASE_SEQUENCE, size_of::<i32>());
}

/// Size of the fixed part of a v2 record batch, up to and including `recordsCount`.
pub const BATCH_HEADER_LEN: usize = field::RECORDS_COUNT.end;
/// `baseOffset` + `batchLength`: the bytes not counted by `batchLength`.
pub const LOG_OVERHEAD: usize = field::LENGTH.end;
/// Offset of the first byte covered by the CRC (`attributes`); it covers the rest of the batch.
pub const CRC_START: usize = field::ATTRIBUTES.start;
/// Smallest `batchLength` a v2 batch can have: a header and no records.
pub const BATCH_LENGTH_MIN: i32 = (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32;
/// The only record batch format we store.
pub const MAGIC_V2: i8 = 2;

// The derived layout agrees with Kafka's `DefaultRecordBatch` offsets, typed in independently.
const _: () = {
    assert!(field::BASE_OFFSET.start == 0);
    assert!(field::LENGTH.start == 8);
    assert!(field::PARTITION_LEADER_EPOCH.start == 12);
    assert!(field::MAGIC.start == 16);
    assert!(field::CRC.start == 17);
    assert!(field::ATTRIBUTES.start == 21);
    assert!(field::LAST_OFFSET_DELTA.start == 23);
    assert!(field::BASE_TIMESTAMP.start == 27);
    assert!(field::MAX_TIMESTAMP.start == 35);
    assert!(field::PRODUCER_ID.start == 43);
    assert!(field::PRODUCER_EPOCH.start == 51);
    assert!(field::BASE_SEQUENCE.start == 53);
    assert!(field::RECORDS_COUNT.start == 57);
    assert!(BATCH_HEADER_LEN == 61 && LOG_OVERHEAD == 12 && CRC_START == 21);
    // The header is exactly its fields: four i64, five i32 and the u32 CRC, two i16, the magic.
    assert!(
        BATCH_HEADER_LEN
            == 4 * size_of::<i64>() + 6 * size_of::<i32>() + 2 * size_of::<i16>() + size_of::<i8>()
    );
    // The CRC covers everything after itself and nothing the broker rewrites on append.
    assert!(field::CRC.end == CRC_START);
    assert!(field::BASE_OFFSET.end <= CRC_START && field::PARTITION_LEADER_EPOCH.end <= CRC_START);
    assert!(BATCH_LENGTH_MIN == 49);
};

/// `attributes` bits 0-2: the compression codec (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
pub const ATTR_COMPRESSION_MASK: i16 = 0x07;
/// `attributes` bit 3: timestamps are broker append times (LogAppendTime), not CreateTime.
pub const ATTR_LOG_APPEND_TIME: i16 = 0x08;
/// `attributes` bit 4: part of a transaction.
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
/// `attributes` bit 5: a control batch (transaction markers), no application records.
pub const ATTR_CONTROL: i16 = 0x20;
/// `attributes` bit 6: `baseTimestamp` is the compaction delete horizon.
pub const ATTR_DELETE_HORIZON: i16 = 0x40;

// Kafka's bits, each flag a single bit, none overlapping another or the codec.
const _: () = {
    let flags = [
        ATTR_LOG_APPEND_TIME,
        ATTR_TRANSACTIONAL,
        ATTR_CONTROL,
        ATTR_DELETE_HORIZON,
    ];
    let mut seen = ATTR_COMPRESSION_MASK;
    let mut i = 0;
    while i < flags.len() {
        assert!(flags[i].count_ones() == 1 && flags[i] & seen == 0);
        seen |= flags[i];
        i += 1;
    }
    assert!(seen == 0x7f && ATTR_COMPRESSION_MASK == 0b111);
};

/// Meaning of a batch's timestamps (`attributes` bit 3; a topic's `message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// Why a byte string is not an acceptable record batch. All variants map to
/// `CORRUPT_MESSAGE` at the protocol boundary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than a batch header (or than the declared batch length).
    #[error("record batch truncated: need {needed} bytes, have {available}")]
    TooShort { needed: usize, available: usize },
    /// `batchLength` is negative, smaller than the header, or larger than allowed.
    #[error("impossible record batch length {length}")]
    BadLength { length: i32 },
    /// Bytes after the batch where exactly one batch was expected
    /// ([`BatchHeader::parse_exact`]).
    #[error("record batch length {length} does not match the {available} bytes given")]
    LengthMismatch { length: i32, available: usize },
    /// Magic byte other than 2 (legacy message sets are not supported).
    #[error("unsupported record batch magic {0}")]
    BadMagic(i8),
    /// CRC32C over attributes..end does not match the header.
    #[error("record batch CRC mismatch: header {expected:#010x}, computed {computed:#010x}")]
    BadCrc { expected: u32, computed: u32 },
    /// `recordsCount` is not positive or cannot fit into the batch bytes.
    #[error("invalid record count {count}")]
    BadRecordCount { count: i32 },
    /// `lastOffsetDelta` disagrees with `recordsCount`.
    #[error("lastOffsetDelta {last_offset_delta} inconsistent with record count {count}")]
    BadLastOffsetDelta { last_offset_delta: i32, count: i32 },
    /// A produce request carried no batch at all.
    #[error("no record batch in request")]
    Empty,
}

impl BatchError {
    /// True for the errors Kafka reports as `INVALID_RECORD` rather than `CORRUPT_MESSAGE`.
    pub fn is_invalid_record(&self) -> bool {
        matches!(
            self,
            BatchError::BadRecordCount { .. } | BatchError::BadLastOffsetDelta { .. }
        )
    }
}

/// The decoded fixed header of one v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// The `batchLength` field: bytes after the length field itself.
    pub length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    /// `firstTimestamp` in the Kafka spec.
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

/// The bytes of `range` in `header`. Every caller passes a [`field`] as wide as the type it
/// decodes (`N` is inferred from that type), so the lengths always agree.
#[inline(always)]
fn bytes_at<const N: usize>(header: &[u8; BATCH_HEADER_LEN], range: Range<usize>) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&header[range]);
    out
}

#[cold]
fn too_short(needed: usize, buf: &[u8]) -> BatchError {
    BatchError::TooShort {
        needed,
        available: buf.len(),
    }
}

impl BatchHeader {
    /// Decodes every field of `header` as it is, checking nothing (see [`BatchHeader::parse`]).
    /// The inverse of [`BatchHeader::write`].
    #[inline(always)]
    pub fn read(header: &[u8; BATCH_HEADER_LEN]) -> BatchHeader {
        BatchHeader {
            base_offset: i64::from_be_bytes(bytes_at(header, field::BASE_OFFSET)),
            length: i32::from_be_bytes(bytes_at(header, field::LENGTH)),
            partition_leader_epoch: i32::from_be_bytes(bytes_at(
                header,
                field::PARTITION_LEADER_EPOCH,
            )),
            magic: i8::from_be_bytes(bytes_at(header, field::MAGIC)),
            crc: u32::from_be_bytes(bytes_at(header, field::CRC)),
            attributes: i16::from_be_bytes(bytes_at(header, field::ATTRIBUTES)),
            last_offset_delta: i32::from_be_bytes(bytes_at(header, field::LAST_OFFSET_DELTA)),
            base_timestamp: i64::from_be_bytes(bytes_at(header, field::BASE_TIMESTAMP)),
            max_timestamp: i64::from_be_bytes(bytes_at(header, field::MAX_TIMESTAMP)),
            producer_id: i64::from_be_bytes(bytes_at(header, field::PRODUCER_ID)),
            producer_epoch: i16::from_be_bytes(bytes_at(header, field::PRODUCER_EPOCH)),
            base_sequence: i32::from_be_bytes(bytes_at(header, field::BASE_SEQUENCE)),
            records_count: i32::from_be_bytes(bytes_at(header, field::RECORDS_COUNT)),
        }
    }

    /// Encodes every field into `header` as it is, the `crc` and `length` fields included (a
    /// builder fills them in afterwards, see [`write_crc`]). The inverse of
    /// [`BatchHeader::read`].
    #[inline]
    pub fn write(&self, header: &mut [u8; BATCH_HEADER_LEN]) {
        header[field::BASE_OFFSET].copy_from_slice(&self.base_offset.to_be_bytes());
        header[field::LENGTH].copy_from_slice(&self.length.to_be_bytes());
        header[field::PARTITION_LEADER_EPOCH]
            .copy_from_slice(&self.partition_leader_epoch.to_be_bytes());
        header[field::MAGIC].copy_from_slice(&self.magic.to_be_bytes());
        header[field::CRC].copy_from_slice(&self.crc.to_be_bytes());
        header[field::ATTRIBUTES].copy_from_slice(&self.attributes.to_be_bytes());
        header[field::LAST_OFFSET_DELTA].copy_from_slice(&self.last_offset_delta.to_be_bytes());
        header[field::BASE_TIMESTAMP].copy_from_slice(&self.base_timestamp.to_be_bytes());
        header[field::MAX_TIMESTAMP].copy_from_slice(&self.max_timestamp.to_be_bytes());
        header[field::PRODUCER_ID].copy_from_slice(&self.producer_id.to_be_bytes());
        header[field::PRODUCER_EPOCH].copy_from_slice(&self.producer_epoch.to_be_bytes());
        header[field::BASE_SEQUENCE].copy_from_slice(&self.base_sequence.to_be_bytes());
        header[field::RECORDS_COUNT].copy_from_slice(&self.records_count.to_be_bytes());
    }

    /// Decodes the fixed header at the start of `buf`. Checks only what the header alone can
    /// tell, in this order: enough bytes for a header, magic 2 (legacy message sets keep their
    /// magic at the same offset, so an old client is told so whatever its length field says),
    /// and a `batchLength` of at least a header. Neither the CRC nor the presence of the whole
    /// batch is checked (see [`BatchHeader::parse_complete`], [`BatchHeader::verify`]).
    // Always inlined (as the three below): a caller that uses a few fields then decodes only
    // those, and the produce path parses each batch's header several times.
    #[inline(always)]
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        let Some(header) = buf.first_chunk::<BATCH_HEADER_LEN>() else {
            return Err(too_short(BATCH_HEADER_LEN, buf));
        };
        let parsed = BatchHeader::read(header);
        if parsed.magic != MAGIC_V2 {
            return Err(BatchError::BadMagic(parsed.magic));
        }
        if parsed.length < BATCH_LENGTH_MIN {
            return Err(BatchError::BadLength {
                length: parsed.length,
            });
        }
        debug_assert!(parsed.total_len() >= BATCH_HEADER_LEN);
        Ok(parsed)
    }

    /// [`BatchHeader::parse`], and the whole batch is in `buf` (at its start; more may follow).
    /// The CRC is not checked.
    #[inline(always)]
    pub fn parse_complete(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        let header = BatchHeader::parse(buf)?;
        if buf.len() < header.total_len() {
            return Err(too_short(header.total_len(), buf));
        }
        Ok(header)
    }

    /// [`BatchHeader::parse`] for a slice that holds exactly one batch: `batchLength` must
    /// account for every byte of `buf`. The CRC is not checked.
    #[inline(always)]
    pub fn parse_exact(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        let header = BatchHeader::parse_complete(buf)?;
        if buf.len() != header.total_len() {
            return Err(BatchError::LengthMismatch {
                length: header.length,
                available: buf.len(),
            });
        }
        Ok(header)
    }

    /// Parses a header and checks that the whole batch is in `buf` (at its start)
    /// with a matching CRC32C. Used for producer input and by recovery.
    pub fn parse_and_verify(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        let header = BatchHeader::parse(buf)?;
        header.verify(buf)?;
        Ok(header)
    }

    /// Checks that `buf` starts with the whole batch this header describes and that
    /// its CRC32C matches.
    pub fn verify(&self, buf: &[u8]) -> Result<(), BatchError> {
        let total = self.total_len();
        if total < BATCH_HEADER_LEN {
            return Err(BatchError::BadLength {
                length: self.length,
            });
        }
        let Some(covered) = buf.get(CRC_START..total) else {
            return Err(too_short(total, buf));
        };
        check_crc(self.crc, covered)
    }

    /// Checks the record count and offset range (Kafka's `validateBatch`).
    pub fn check_counts(&self) -> Result<(), BatchError> {
        let count = self.records_count;
        // A record takes at least 7 bytes, so a count beyond the byte length is a lie
        // that would otherwise let a client push the log end offset arbitrarily far.
        if count <= 0 || count as i64 > self.length as i64 {
            return Err(BatchError::BadRecordCount { count });
        }
        if self.last_offset_delta != count - 1 {
            return Err(BatchError::BadLastOffsetDelta {
                last_offset_delta: self.last_offset_delta,
                count,
            });
        }
        Ok(())
    }

    /// Bytes of the whole batch including the offset and length fields (a negative
    /// `batchLength`, which [`BatchHeader::parse`] rejects, counts as 0).
    #[inline]
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.length.max(0) as usize
    }

    /// Offset of the last record of the batch (saturating: `baseOffset` is not covered by
    /// the CRC, so a damaged one must not overflow).
    #[inline]
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Compression codec bits: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    #[inline]
    pub fn compression(&self) -> u8 {
        (self.attributes & ATTR_COMPRESSION_MASK) as u8
    }

    #[inline]
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    #[inline]
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// True for idempotent or transactional batches (`producerId` >= 0).
    #[inline]
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// True when the batch's timestamps are broker append times.
    #[inline]
    pub fn timestamp_type_log_append(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }

    /// The meaning of the batch's timestamps.
    #[inline]
    pub fn timestamp_type(&self) -> TimestampType {
        if self.timestamp_type_log_append() {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }
}

fn check_crc(expected: u32, covered: &[u8]) -> Result<(), BatchError> {
    let computed = crc32c(covered);
    if computed != expected {
        return Err(BatchError::BadCrc { expected, computed });
    }
    Ok(())
}

/// Checks the CRC32C of the batch that `batch` holds exactly (attributes through the end of
/// the slice) against its `crc` field. Reads no other field, so it may run before or after
/// [`BatchHeader::parse`].
pub fn verify_crc(batch: &[u8]) -> Result<(), BatchError> {
    let Some(header) = batch.first_chunk::<BATCH_HEADER_LEN>() else {
        return Err(too_short(BATCH_HEADER_LEN, batch));
    };
    check_crc(
        u32::from_be_bytes(bytes_at(header, field::CRC)),
        &batch[CRC_START..],
    )
}

/// Recomputes the `crc` field of the batch that `batch` holds exactly, after its attributes,
/// later header fields or records changed. For batches this process builds or rewrites.
///
/// # Panics
/// If `batch` is shorter than a header.
pub fn write_crc(batch: &mut [u8]) {
    assert!(
        batch.len() >= BATCH_HEADER_LEN,
        "write_crc on {} bytes, shorter than a batch header",
        batch.len()
    );
    let crc = crc32c(&batch[CRC_START..]);
    batch[field::CRC].copy_from_slice(&crc.to_be_bytes());
}

/// The header bytes at the start of `buf`, to rewrite fields in place.
pub fn header_mut(buf: &mut [u8]) -> Result<&mut [u8; BATCH_HEADER_LEN], BatchError> {
    let available = buf.len();
    buf.first_chunk_mut().ok_or(BatchError::TooShort {
        needed: BATCH_HEADER_LEN,
        available,
    })
}

/// Rewrites `baseOffset` (outside the CRC).
#[inline]
pub fn set_base_offset(header: &mut [u8; BATCH_HEADER_LEN], base_offset: i64) {
    header[field::BASE_OFFSET].copy_from_slice(&base_offset.to_be_bytes());
}

/// Rewrites `partitionLeaderEpoch` (outside the CRC).
#[inline]
pub fn set_partition_leader_epoch(header: &mut [u8; BATCH_HEADER_LEN], epoch: i32) {
    header[field::PARTITION_LEADER_EPOCH].copy_from_slice(&epoch.to_be_bytes());
}

/// CRC32C (Castagnoli), the checksum of Kafka's v2 record batches.
#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    crc_fast::crc32_iscsi(data)
}

/// The CRC32C of `a` followed by `b`, given `crc_a`, the CRC32C of `a`.
pub fn crc32c_append(crc_a: u32, b: &[u8]) -> u32 {
    let combined = crc_fast::checksum_combine(
        crc_fast::CrcAlgorithm::Crc32Iscsi,
        u64::from(crc_a),
        u64::from(crc32c(b)),
        b.len() as u64,
    );
    combined as u32 // ok: a CRC-32 combination fits in 32 bits
}

/// Marks a batch as LogAppendTime with `max_timestamp = ts` and recomputes its CRC, as
/// Kafka does for topics with `message.timestamp.type=LogAppendTime`. `header` is the
/// batch's first [`BATCH_HEADER_LEN`] bytes, rewritten in place; `rest` is everything after
/// them, which the CRC covers but which does not change (so it can stay shared).
pub(crate) fn set_log_append_time(header: &mut [u8; BATCH_HEADER_LEN], rest: &[u8], ts: i64) {
    let attributes = i16::from_be_bytes(bytes_at(header, field::ATTRIBUTES)) | ATTR_LOG_APPEND_TIME;
    header[field::ATTRIBUTES].copy_from_slice(&attributes.to_be_bytes());
    header[field::MAX_TIMESTAMP].copy_from_slice(&ts.to_be_bytes());
    let crc = crc32c_append(crc32c(&header[CRC_START..]), rest);
    header[field::CRC].copy_from_slice(&crc.to_be_bytes());
}
/// One or more concatenated record batches (a produce request's `records`), fully
/// validated: lengths, magic 2, CRC32C, record counts and offset deltas. Holds the
/// original `Bytes` (no copy).
#[derive(Debug, Clone)]
pub struct ValidatedBatches {
    bytes: Bytes,
    headers: Vec<BatchHeader>,
    record_count: u64,
    max_timestamp: i64,
}

impl ValidatedBatches {
    /// Validates every batch in `bytes`; the batches must exactly fill it.
    pub fn parse(bytes: Bytes) -> Result<Self, BatchError> {
        Self::parse_with(bytes, true)
    }

    /// [`ValidatedBatches::parse`] for bytes whose CRC32C the caller has already verified
    /// (the broker's produce validation checks it once; a second pass over every produced
    /// batch cost ~9% of the broker's CPU with 100-byte records). Lengths, magic and counts
    /// are still checked here; only the checksum is trusted.
    pub fn parse_crc_verified(bytes: Bytes) -> Result<Self, BatchError> {
        Self::parse_with(bytes, false)
    }

    fn parse_with(bytes: Bytes, verify_crc: bool) -> Result<Self, BatchError> {
        let mut headers = Vec::new();
        let mut record_count = 0u64;
        let mut max_timestamp = i64::MIN;
        let mut pos = 0usize;
        while pos < bytes.len() {
            let rest = &bytes[pos..];
            let header = if verify_crc {
                BatchHeader::parse_and_verify(rest)?
            } else {
                BatchHeader::parse_complete(rest)?
            };
            header.check_counts()?;
            record_count += header.records_count as u64;
            max_timestamp = max_timestamp.max(header.max_timestamp);
            pos += header.total_len();
            headers.push(header);
        }
        if headers.is_empty() {
            return Err(BatchError::Empty);
        }
        debug_assert_eq!(pos, bytes.len());
        Ok(ValidatedBatches {
            bytes,
            headers,
            record_count,
            max_timestamp,
        })
    }

    /// Headers in order; `base_offset` is whatever the producer sent (usually 0).
    pub fn headers(&self) -> &[BatchHeader] {
        &self.headers
    }

    /// The original bytes, unchanged.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Sum of `recordsCount` over all batches.
    pub fn record_count(&self) -> u64 {
        self.record_count
    }

    /// Number of offsets the batches occupy (sum of lastOffsetDelta + 1).
    pub fn offset_count(&self) -> u64 {
        self.headers
            .iter()
            .map(|h| h.last_offset_delta as u64 + 1)
            .sum()
    }

    /// Largest `maxTimestamp` over all batches.
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// Total size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Never true for a successfully parsed value (kept for clippy's `len` rule).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Builds a valid v2 batch with `count` opaque records of `record_len` bytes each.
/// The record bodies are not valid Kafka records; storage never decodes them. Meant for
/// tests, benches and examples in this crate and its users.
pub fn build_test_batch(count: i32, record_len: usize, timestamp: i64) -> Bytes {
    assert!(count > 0, "a batch has at least one record");
    let body_len = count as usize * record_len.max(7);
    let total = BATCH_HEADER_LEN + body_len;
    let header = BatchHeader {
        base_offset: 0,
        length: (total - LOG_OVERHEAD) as i32,
        partition_leader_epoch: -1,
        magic: MAGIC_V2,
        crc: 0, // below
        attributes: 0,
        last_offset_delta: count - 1,
        base_timestamp: timestamp,
        max_timestamp: timestamp,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        records_count: count,
    };
    let mut head = [0u8; BATCH_HEADER_LEN];
    header.write(&mut head);
    let mut buf = vec![0u8; total];
    buf[..BATCH_HEADER_LEN].copy_from_slice(&head);
    for (i, b) in buf[BATCH_HEADER_LEN..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(7);
    }
    write_crc(&mut buf);
    Bytes::from(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CRC-32C check value from the CRC catalogue, and appending equals checksumming
    /// the concatenation for every split point (including empty halves).
    #[test]
    fn crc32c_is_castagnoli_and_appends() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 131 + i / 3) as u8).collect();
        let whole = crc32c(&data);
        for cut in [0, 1, 61, 64, 255, 4096, 4999, 5000] {
            let (a, b) = data.split_at(cut);
            assert_eq!(crc32c_append(crc32c(a), b), whole, "split at {cut}");
        }
    }

    #[test]
    fn parse_round_trip() {
        let b = build_test_batch(5, 20, 1234);
        let h = BatchHeader::parse_and_verify(&b).unwrap();
        assert_eq!(h.total_len(), b.len());
        assert_eq!(h.records_count, 5);
        assert_eq!(h.last_offset_delta, 4);
        assert_eq!(h.max_timestamp, 1234);
        assert_eq!(h.magic, 2);
        assert!(!h.is_control() && !h.is_transactional() && !h.timestamp_type_log_append());
        h.check_counts().unwrap();
        assert_eq!(BatchHeader::parse_exact(&b), Ok(h));
        assert_eq!(BatchHeader::parse_complete(&b), Ok(h));
        assert_eq!(verify_crc(&b), Ok(()));
        // Writing the parsed header back gives the same bytes.
        let mut again = [0u8; BATCH_HEADER_LEN];
        h.write(&mut again);
        assert_eq!(&again[..], &b[..BATCH_HEADER_LEN]);
    }

    /// Every field is read from Kafka's offsets: a header written by hand at the literal
    /// offsets of Kafka's `DefaultRecordBatch`, each field a distinct value, parses to those
    /// values, and writing them back gives the same bytes.
    #[test]
    fn each_field_at_kafka_offsets() {
        let mut b = [0u8; BATCH_HEADER_LEN];
        let mut put = |at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
        put(0, &0x0102_0304_0506_0708i64.to_be_bytes());
        put(8, &49i32.to_be_bytes());
        put(12, &0x0a0b_0c0di32.to_be_bytes());
        put(16, &[2]);
        put(17, &0xdead_beefu32.to_be_bytes());
        put(21, &0x0033i16.to_be_bytes()); // lz4, transactional, control
        put(23, &6i32.to_be_bytes());
        put(27, &1_700_000_000_000i64.to_be_bytes());
        put(35, &1_700_000_000_123i64.to_be_bytes());
        put(43, &4242i64.to_be_bytes());
        put(51, &(-7i16).to_be_bytes());
        put(53, &99i32.to_be_bytes());
        put(57, &7i32.to_be_bytes());
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(
            h,
            BatchHeader {
                base_offset: 0x0102_0304_0506_0708,
                length: 49,
                partition_leader_epoch: 0x0a0b_0c0d,
                magic: 2,
                crc: 0xdead_beef,
                attributes: 0x33,
                last_offset_delta: 6,
                base_timestamp: 1_700_000_000_000,
                max_timestamp: 1_700_000_000_123,
                producer_id: 4242,
                producer_epoch: -7,
                base_sequence: 99,
                records_count: 7,
            }
        );
        assert_eq!(h.total_len(), BATCH_HEADER_LEN);
        assert_eq!(h.last_offset(), 0x0102_0304_0506_0708 + 6);
        assert_eq!(h.compression(), 3);
        assert!(h.is_transactional() && h.is_control() && h.has_producer_id());
        assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
        let mut again = [0u8; BATCH_HEADER_LEN];
        h.write(&mut again);
        assert_eq!(again, b);
        // The in-place setters touch their field only.
        set_base_offset(&mut again, -2);
        set_partition_leader_epoch(&mut again, 5);
        let moved = BatchHeader::read(&again);
        assert_eq!(
            moved,
            BatchHeader {
                base_offset: -2,
                partition_leader_epoch: 5,
                ..h
            }
        );
    }

    /// Each attribute bit is seen by its own accessor and by no other.
    #[test]
    fn attribute_bits() {
        let with = |attributes: i16| BatchHeader {
            attributes,
            ..BatchHeader::parse(&build_test_batch(1, 7, 0)).unwrap()
        };
        let none = with(0);
        assert_eq!(none.compression(), 0);
        assert!(!none.is_transactional() && !none.is_control());
        assert_eq!(none.timestamp_type(), TimestampType::CreateTime);
        for codec in 0..=7 {
            let h = with(codec | ATTR_DELETE_HORIZON);
            assert_eq!(h.compression(), codec as u8);
            assert!(!h.is_transactional() && !h.is_control() && !h.timestamp_type_log_append());
        }
        let h = with(ATTR_LOG_APPEND_TIME);
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
        assert!(h.compression() == 0 && !h.is_transactional() && !h.is_control());
        let h = with(ATTR_TRANSACTIONAL);
        assert!(h.is_transactional() && !h.is_control() && !h.timestamp_type_log_append());
        let h = with(ATTR_CONTROL);
        assert!(h.is_control() && !h.is_transactional() && h.compression() == 0);
        assert!(!with(!ATTR_CONTROL).is_control());
    }

    /// The CRC covers `attributes` through the end and nothing before: changing a byte in
    /// front of the CRC field keeps the batch valid, changing the CRC field or any later byte
    /// does not. `BatchHeader::verify` agrees with `verify_crc` wherever the header parses.
    #[test]
    fn crc_covers_attributes_to_end() {
        let good = build_test_batch(3, 10, 5);
        for at in 0..good.len() {
            let mut b = good.to_vec();
            b[at] ^= 0x5a;
            let crc = verify_crc(&b);
            if at < field::CRC.start {
                assert_eq!(crc, Ok(()), "byte {at} is not covered");
            } else {
                assert!(matches!(crc, Err(BatchError::BadCrc { .. })), "byte {at}");
            }
            if let Ok(h) = BatchHeader::parse_exact(&b) {
                assert_eq!(h.verify(&b), crc, "byte {at}");
            }
        }
        // What the CRC covers is exactly what `crc32c` is given.
        assert_eq!(
            BatchHeader::parse(&good).unwrap().crc,
            crc32c(&good[CRC_START..])
        );
    }

    /// Every truncation of a valid batch is a typed error naming what was missing.
    #[test]
    fn truncated_input_is_too_short() {
        let good = build_test_batch(2, 30, 1);
        for len in 0..good.len() {
            let cut = &good[..len];
            let needed = if len < BATCH_HEADER_LEN {
                BATCH_HEADER_LEN
            } else {
                good.len()
            };
            let short = BatchError::TooShort {
                needed,
                available: len,
            };
            assert_eq!(BatchHeader::parse_complete(cut), Err(short.clone()));
            assert_eq!(BatchHeader::parse_exact(cut), Err(short.clone()));
            assert_eq!(BatchHeader::parse_and_verify(cut), Err(short.clone()));
            if len < BATCH_HEADER_LEN {
                assert_eq!(BatchHeader::parse(cut), Err(short.clone()));
                assert_eq!(verify_crc(cut), Err(short.clone()));
                assert_eq!(header_mut(&mut cut.to_vec()).unwrap_err(), short);
            } else {
                assert!(BatchHeader::parse(cut).is_ok(), "{len}");
                assert!(matches!(verify_crc(cut), Err(BatchError::BadCrc { .. })));
            }
        }
        let mut long = good.to_vec();
        long.push(0);
        assert!(BatchHeader::parse_complete(&long).is_ok());
        assert!(BatchHeader::parse_and_verify(&long).is_ok());
        assert_eq!(
            BatchHeader::parse_exact(&long),
            Err(BatchError::LengthMismatch {
                length: (good.len() - LOG_OVERHEAD) as i32,
                available: good.len() + 1,
            })
        );
    }

    /// Garbage headers: the magic is checked before the length (a legacy message set is told
    /// its magic whatever its length), lengths shorter than a header are rejected.
    #[test]
    fn garbage_headers_are_typed_errors() {
        let good = build_test_batch(1, 7, 0);
        let mut legacy = good.to_vec();
        legacy[field::MAGIC.start] = 1;
        legacy[field::LENGTH].copy_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(BatchHeader::parse(&legacy), Err(BatchError::BadMagic(1)));
        for length in [i32::MIN, -1, 0, 12, BATCH_LENGTH_MIN - 1] {
            let mut b = good.to_vec();
            b[field::LENGTH].copy_from_slice(&length.to_be_bytes());
            assert_eq!(
                BatchHeader::parse(&b),
                Err(BatchError::BadLength { length }),
                "{length}"
            );
        }
        assert_eq!(
            BatchHeader::parse(&[0u8; BATCH_HEADER_LEN]),
            Err(BatchError::BadMagic(0))
        );
        assert_eq!(
            BatchHeader::parse(&[0xffu8; 100]),
            Err(BatchError::BadMagic(-1))
        );
        // A huge length is a header that parses but a batch that is not there.
        let mut huge = good.to_vec();
        huge[field::LENGTH].copy_from_slice(&i32::MAX.to_be_bytes());
        let h = BatchHeader::parse(&huge).unwrap();
        assert_eq!(h.total_len(), LOG_OVERHEAD + i32::MAX as usize);
        assert!(matches!(h.verify(&huge), Err(BatchError::TooShort { .. })));
        // A hand-made header with a length below the minimum is refused, not sliced.
        let tiny = BatchHeader { length: 3, ..h };
        assert_eq!(tiny.verify(&good), Err(BatchError::BadLength { length: 3 }));
        assert_eq!(BatchHeader { length: -5, ..h }.total_len(), LOG_OVERHEAD);
        // The offset range saturates instead of overflowing on a damaged base offset.
        let far = BatchHeader {
            base_offset: i64::MAX - 1,
            last_offset_delta: 9,
            ..h
        };
        assert_eq!(far.last_offset(), i64::MAX);
    }

    #[test]
    fn concatenated_batches_validate() {
        let a = build_test_batch(3, 10, 5);
        let b = build_test_batch(2, 100, 9);
        let mut v = a.to_vec();
        v.extend_from_slice(&b);
        let vb = ValidatedBatches::parse(Bytes::from(v)).unwrap();
        assert_eq!(vb.headers().len(), 2);
        assert_eq!(vb.record_count(), 5);
        assert_eq!(vb.offset_count(), 5);
        assert_eq!(vb.max_timestamp(), 9);
    }

    #[test]
    fn parse_crc_verified_checks_everything_but_the_crc() {
        let a = build_test_batch(3, 10, 5);
        let b = build_test_batch(2, 100, 9);
        let mut v = a.to_vec();
        v.extend_from_slice(&b);
        let both = Bytes::from(v);
        let full = ValidatedBatches::parse(both.clone()).unwrap();
        let trusted = ValidatedBatches::parse_crc_verified(both.clone()).unwrap();
        assert_eq!(full.headers(), trusted.headers());
        assert_eq!(full.record_count(), trusted.record_count());
        assert_eq!(full.max_timestamp(), trusted.max_timestamp());
        // A truncated second batch is still caught without the checksum.
        assert!(matches!(
            ValidatedBatches::parse_crc_verified(both.slice(..both.len() - 1)),
            Err(BatchError::TooShort { .. })
        ));
        // So are lying counts.
        let mut counts = a.to_vec();
        counts[field::RECORDS_COUNT].copy_from_slice(&7i32.to_be_bytes());
        assert!(ValidatedBatches::parse_crc_verified(Bytes::from(counts)).is_err());
        assert!(matches!(
            ValidatedBatches::parse_crc_verified(Bytes::new()),
            Err(BatchError::Empty)
        ));
    }

    #[test]
    fn rejects_bad_input() {
        let good = build_test_batch(3, 10, 5);
        let mut crc = good.to_vec();
        crc[70] ^= 1;
        assert!(matches!(
            ValidatedBatches::parse(Bytes::from(crc)),
            Err(BatchError::BadCrc { .. })
        ));
        let mut magic = good.to_vec();
        magic[field::MAGIC.start] = 1;
        assert_eq!(
            ValidatedBatches::parse(Bytes::from(magic)).unwrap_err(),
            BatchError::BadMagic(1)
        );
        let mut len = good.to_vec();
        len[field::LENGTH].copy_from_slice(&10i32.to_be_bytes());
        assert!(matches!(
            ValidatedBatches::parse(Bytes::from(len)),
            Err(BatchError::BadLength { .. })
        ));
        let truncated = good.slice(..good.len() - 1);
        assert!(matches!(
            ValidatedBatches::parse(truncated),
            Err(BatchError::TooShort { .. })
        ));
        let mut trailing = good.to_vec();
        trailing.extend_from_slice(&[0u8; 5]);
        assert!(matches!(
            ValidatedBatches::parse(Bytes::from(trailing)),
            Err(BatchError::TooShort { .. })
        ));
        assert_eq!(
            ValidatedBatches::parse(Bytes::new()).unwrap_err(),
            BatchError::Empty
        );
        // lastOffsetDelta inconsistent with the count (CRC fixed so only the count is wrong).
        let mut lod = good.to_vec();
        lod[field::LAST_OFFSET_DELTA].copy_from_slice(&7i32.to_be_bytes());
        write_crc(&mut lod);
        let e = ValidatedBatches::parse(Bytes::from(lod)).unwrap_err();
        assert!(e.is_invalid_record());
    }

    #[test]
    fn log_append_time_rewrite_keeps_crc_valid() {
        let mut b = build_test_batch(2, 10, 5).to_vec();
        set_base_offset(header_mut(&mut b).unwrap(), 77);
        set_partition_leader_epoch(header_mut(&mut b).unwrap(), 3);
        let (head, rest) = b.split_at_mut(BATCH_HEADER_LEN);
        let head: &mut [u8; BATCH_HEADER_LEN] = head.try_into().unwrap();
        set_log_append_time(head, rest, 999);
        let h = BatchHeader::parse_and_verify(&b).unwrap();
        assert_eq!(h.base_offset, 77);
        assert_eq!(h.partition_leader_epoch, 3);
        assert_eq!(h.max_timestamp, 999);
        assert_eq!(h.base_timestamp, 5);
        assert!(h.timestamp_type_log_append());
    }

    /// Property tests: the header codec round-trips, and no input makes any entry point panic.
    mod props {
        use super::*;
        use proptest::prelude::*;

        fn any_header() -> impl Strategy<Value = BatchHeader> {
            (
                (any::<i64>(), any::<i32>(), any::<i32>(), any::<i8>()),
                (any::<u32>(), any::<i16>(), any::<i32>(), any::<i64>()),
                (
                    any::<i64>(),
                    any::<i64>(),
                    any::<i16>(),
                    any::<i32>(),
                    any::<i32>(),
                ),
            )
                .prop_map(
                    |((bo, len, ple, magic), (crc, attr, lod, bts), (mts, pid, pe, bs, rc))| {
                        BatchHeader {
                            base_offset: bo,
                            length: len,
                            partition_leader_epoch: ple,
                            magic,
                            crc,
                            attributes: attr,
                            last_offset_delta: lod,
                            base_timestamp: bts,
                            max_timestamp: mts,
                            producer_id: pid,
                            producer_epoch: pe,
                            base_sequence: bs,
                            records_count: rc,
                        }
                    },
                )
        }

        /// Every entry point on `buf`; checks what an `Ok` promises.
        fn exercise(buf: &[u8]) {
            let parsed = BatchHeader::parse(buf);
            if let Ok(h) = parsed {
                assert_eq!(h.magic, MAGIC_V2);
                assert!(h.length >= BATCH_LENGTH_MIN);
                assert!(h.total_len() >= BATCH_HEADER_LEN);
                let _ = (h.check_counts(), h.last_offset(), h.verify(buf));
                let _ = (h.compression(), h.timestamp_type(), h.is_control());
            }
            if let Ok(h) = BatchHeader::parse_complete(buf) {
                assert!(h.total_len() <= buf.len());
                assert_eq!(Ok(h), parsed);
            }
            if let Ok(h) = BatchHeader::parse_exact(buf) {
                assert_eq!(h.total_len(), buf.len());
                assert_eq!(h.verify(buf), verify_crc(buf));
            }
            if let Ok(h) = BatchHeader::parse_and_verify(buf) {
                assert_eq!(Ok(h), parsed);
            }
            let _ = verify_crc(buf);
            let bytes = Bytes::copy_from_slice(buf);
            if let Ok(v) = ValidatedBatches::parse(bytes.clone()) {
                let total: usize = v.headers().iter().map(BatchHeader::total_len).sum();
                assert_eq!(total, buf.len());
                assert!(v.headers().iter().all(|h| h.check_counts().is_ok()));
            }
            let _ = ValidatedBatches::parse_crc_verified(bytes);
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// `read` and `write` are inverses for every field value.
            #[test]
            fn read_write_round_trip(h in any_header()) {
                let mut bytes = [0u8; BATCH_HEADER_LEN];
                h.write(&mut bytes);
                prop_assert_eq!(BatchHeader::read(&bytes), h);
            }

            /// A batch built around any header with magic 2 and a plausible length parses
            /// back to that header (with the CRC `write_crc` computed) and verifies.
            #[test]
            fn built_batches_parse_back(h in any_header(), body_len in 0usize..200) {
                let h = BatchHeader {
                    magic: MAGIC_V2,
                    length: BATCH_LENGTH_MIN + body_len as i32,
                    ..h
                };
                let mut batch = vec![0x5au8; h.total_len()];
                let mut head = [0u8; BATCH_HEADER_LEN];
                h.write(&mut head);
                batch[..BATCH_HEADER_LEN].copy_from_slice(&head);
                write_crc(&mut batch);
                let want = BatchHeader { crc: crc32c(&batch[CRC_START..]), ..h };
                prop_assert_eq!(BatchHeader::parse_exact(&batch), Ok(want));
                prop_assert_eq!(BatchHeader::parse_and_verify(&batch), Ok(want));
                prop_assert_eq!(verify_crc(&batch), Ok(()));
            }

            /// Arbitrary bytes never make the parser panic.
            #[test]
            fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
                exercise(&buf);
            }

            /// Valid batches with random damage (overwritten bytes, cut or extended) never make
            /// the parser panic; a header that still parses keeps its promises.
            #[test]
            fn damaged_batches_never_panic(
                count in 1i32..5,
                record_len in 0usize..40,
                second in any::<bool>(),
                edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
                cut in any::<usize>(),
                extra in proptest::collection::vec(any::<u8>(), 0..80),
            ) {
                let mut buf = build_test_batch(count, record_len, 7).to_vec();
                if second {
                    buf.extend_from_slice(&build_test_batch(1, 9, 8));
                }
                for (at, byte) in edits {
                    let at = at % buf.len();
                    buf[at] = byte;
                }
                buf.truncate(cut % (buf.len() + 1));
                buf.extend_from_slice(&extra);
                exercise(&buf);
                // And with the CRC made to match, so the checks after it run too.
                if buf.len() >= BATCH_HEADER_LEN {
                    write_crc(&mut buf);
                    exercise(&buf);
                }
            }
        }
    }
}
