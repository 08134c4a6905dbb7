//! Kafka v2 record batches: lossless record decoding, batch building,
//! recompression to a topic's codec, produce-time validation (Kafka's `LogValidator`) and
//! timestamp lookups for ListOffsets.
//!
//! # Why our own record codec
//! kafka-protocol's `Record` is lossy for a broker: headers are an `IndexMap` (duplicate
//! header keys, which Kafka allows, collapse into one), header keys must be UTF-8, the
//! timestamp-type attribute bit is dropped on encode, and `base_timestamp` / `max_timestamp` /
//! record attributes are recomputed. Recompressing a producer's batch must not change what
//! consumers read, so [`Record`] keeps every field exactly as written (deltas, attributes,
//! raw header bytes, header order). Decoded keys/values/headers are zero-copy slices of the
//! (decompressed) batch.
//!
//! # Which checks run when (Kafka semantics and the Ringtail choice)
//! Kafka's `LogValidator` runs on every produce to a leader:
//! - *batch level* — CRC (`CORRUPT_MESSAGE`), exactly one batch per partition, magic 2,
//!   `lastOffsetDelta + 1 == recordsCount > 0`, no control batches from clients, producer id
//!   with negative base sequence (`INVALID_RECORD`). These read only the 61-byte header:
//!   [`validate_produce_batch`] — always run it.
//! - *record level* — every record parses (sizes add up, count matches), compacted topics
//!   reject null keys (`INVALID_RECORD`), `CreateTime` timestamps must lie within
//!   `[now - message.timestamp.before.max.ms, now + message.timestamp.after.max.ms]`
//!   (`INVALID_TIMESTAMP`), producers may not send `LogAppendTime` batches. Kafka iterates the
//!   records (decompressing compressed batches) on every produce; that is its main produce CPU
//!   cost. [`validate_records`] does these checks and computes the true max timestamp (Kafka
//!   rewrites the header's max timestamp with it, see [`set_max_timestamp`]). It walks the
//!   record bytes in place (lengths, timestamp and offset deltas, key presence) and allocates
//!   nothing per record; materialising [`Record`]s ([`decode_batch`]) is for the paths that
//!   need their contents (recompression, coordinators, ListOffsets).
//!   [`ValidationOptions::needs_record_validation`] says when it cannot reject anything (not
//!   compacted, unbounded timestamp window, no producer-set LogAppendTime): only then may the
//!   hot path skip it, and only if no recompression is needed either.
//! - Inner offsets that are not `0..n-1` are not rejected by current Kafka: the batch is
//!   rebuilt with sequential offsets. [`ValidationSummary::inner_offsets_sequential`] tells the
//!   caller; [`rebuild_batch`] renumbers them.
//!
//! The batch header itself (layout, attribute bits, parsing, CRC) is `storage::batch`'s: this
//! module reads and writes headers only through it.

use bytes::{BufMut, Bytes, BytesMut};
use storage::batch::{
    field, verify_crc, write_crc, BatchError, BatchHeader, ATTR_COMPRESSION_MASK, ATTR_CONTROL,
    ATTR_DELETE_HORIZON, ATTR_LOG_APPEND_TIME, ATTR_TRANSACTIONAL, BATCH_HEADER_LEN, LOG_OVERHEAD,
    MAGIC_V2,
};

use crate::log::compression::{self, Codec, CompressionError, HeaderCodec};

/// Meaning of record timestamps; the batch header's, so it lives with the header.
pub use storage::batch::TimestampType;

/// `RecordBatch.NO_TIMESTAMP`.
pub const NO_TIMESTAMP: i64 = -1;

/// Smallest possible encoded v2 record: length, attributes, timestamp delta, offset delta,
/// key length, value length, header count — one byte each.
const MIN_RECORD_BYTES: usize = 7;

/// One record-level problem, as Kafka reports it in `ProduceResponse.record_errors`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordError {
    /// Index of the record within its batch.
    pub batch_index: i32,
    pub message: String,
}

/// Record batch errors. Their Kafka codes are mapped in `crate::errors` (noted per variant).
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// Bytes that cannot be a batch (length fields, truncation). `CORRUPT_MESSAGE`.
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    /// CRC32C mismatch. `CORRUPT_MESSAGE`.
    #[error("record batch CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    CrcMismatch { stored: u32, computed: u32 },
    /// Magic other than 2. `INVALID_RECORD` (Produce v3+ must carry v2 batches).
    #[error("unsupported record batch magic {0}")]
    UnsupportedMagic(i8),
    /// Batch-level or record-level validation failure. `INVALID_RECORD`.
    #[error("invalid record: {message}")]
    InvalidRecord {
        message: String,
        record_errors: Vec<RecordError>,
    },
    /// A timestamp outside the allowed window, or a producer-set LogAppendTime. `INVALID_TIMESTAMP`.
    #[error("invalid timestamp: {message}")]
    InvalidTimestamp {
        message: String,
        record_errors: Vec<RecordError>,
    },
    #[error(transparent)]
    Compression(#[from] CompressionError),
}

impl RecordsError {
    /// Per-record errors for `ProduceResponse.record_errors` (empty for batch-level errors).
    pub fn record_errors(&self) -> &[RecordError] {
        match self {
            RecordsError::InvalidRecord { record_errors, .. }
            | RecordsError::InvalidTimestamp { record_errors, .. } => record_errors,
            _ => &[],
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        RecordsError::InvalidRecord {
            message: message.into(),
            record_errors: Vec::new(),
        }
    }
}

/// The header parser's errors, with the codes this broker has always answered them with: a
/// wrong magic is `INVALID_RECORD` (Produce v3+ must carry v2 batches), a wrong CRC or framing
/// `CORRUPT_MESSAGE`.
impl From<BatchError> for RecordsError {
    fn from(e: BatchError) -> Self {
        match e {
            BatchError::BadMagic(magic) => RecordsError::UnsupportedMagic(magic),
            BatchError::BadCrc { expected, computed } => RecordsError::CrcMismatch {
                stored: expected,
                computed,
            },
            e if e.is_invalid_record() => RecordsError::invalid(e.to_string()),
            e => RecordsError::Corrupt(e.to_string()),
        }
    }
}

/// Splits a record set (one or more concatenated v2 batches) into zero-copy per-batch slices.
/// Checks framing and magic, not CRCs.
pub fn split_batches(records: &Bytes) -> Result<Vec<Bytes>, RecordsError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < records.len() {
        let total = BatchHeader::parse_complete(&records[pos..])?.total_len();
        out.push(records.slice(pos..pos + total));
        pos += total;
    }
    Ok(out)
}

/// One record header. Keys are kept as raw bytes (Kafka writes UTF-8 strings) and duplicates
/// and order are preserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

/// One v2 record exactly as encoded (relative fields stay relative).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Unused by Kafka today; preserved.
    pub attributes: i8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// A batch header with its decoded records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBatch {
    pub info: BatchHeader,
    pub records: Vec<Record>,
}

impl DecodedBatch {
    /// Absolute offset of `record`.
    pub fn offset_of(&self, record: &Record) -> i64 {
        self.info
            .base_offset
            .saturating_add(i64::from(record.offset_delta))
    }

    /// Timestamp a consumer sees for `record`: the batch max timestamp for `LogAppendTime`
    /// batches, `base_timestamp + delta` otherwise (Kafka's `DefaultRecordBatch` rules).
    pub fn timestamp_of(&self, record: &Record) -> i64 {
        match self.info.timestamp_type() {
            TimestampType::LogAppendTime => self.info.max_timestamp,
            TimestampType::CreateTime => self
                .info
                .base_timestamp
                .wrapping_add(record.timestamp_delta),
        }
    }

    /// `(offset, timestamp, record)` for every record, in batch order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, i64, &Record)> + '_ {
        self.records
            .iter()
            .map(move |r| (self.offset_of(r), self.timestamp_of(r), r))
    }
}

// ---- varints (zig-zag, as Kafka's ByteUtils) ------------------------------------------------

struct Cursor<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a Bytes) -> Self {
        Cursor {
            buf,
            pos: 0,
            end: buf.len(),
        }
    }

    fn err(what: &str) -> RecordsError {
        RecordsError::invalid(format!("malformed record: {what}"))
    }

    fn u8(&mut self) -> Result<u8, RecordsError> {
        if self.pos >= self.end {
            return Err(Self::err("truncated"));
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    /// Kafka's `readUnsignedVarint` + zig-zag: at most 5 bytes.
    fn varint(&mut self) -> Result<i32, RecordsError> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let b = self.u8()?;
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(((value >> 1) as i32) ^ -((value & 1) as i32));
            }
        }
        Err(Self::err("varint longer than 5 bytes"))
    }

    /// Kafka's `readVarlong`: at most 10 bytes.
    fn varlong(&mut self) -> Result<i64, RecordsError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(Self::err("varlong longer than 10 bytes"))
    }

    fn bytes(&mut self, len: usize) -> Result<Bytes, RecordsError> {
        if len > self.end - self.pos {
            return Err(Self::err("field runs past the record"));
        }
        let b = self.buf.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(b)
    }

    /// A varint length then that many bytes; -1 is null.
    fn nullable_bytes(&mut self, what: &str) -> Result<Option<Bytes>, RecordsError> {
        let len = self.varint()?;
        match len {
            -1 => Ok(None),
            l if l < -1 => Err(Self::err(&format!("negative {what} length {l}"))),
            l => Ok(Some(self.bytes(l as usize)?)),
        }
    }
}

fn put_varint(out: &mut Vec<u8>, v: i32) {
    let mut z = ((v << 1) ^ (v >> 31)) as u32;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn varint_len(v: i32) -> usize {
    let z = ((v << 1) ^ (v >> 31)) as u32;
    (32 - z.leading_zeros() as usize).max(1).div_ceil(7)
}

fn varlong_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    (64 - z.leading_zeros() as usize).max(1).div_ceil(7)
}

// ---- decoding -------------------------------------------------------------------------------

/// The record bytes of a batch, decompressed (zero-copy for uncompressed batches).
pub fn records_payload(
    batch: &Bytes,
    max_decompressed_bytes: usize,
) -> Result<Bytes, RecordsError> {
    let info = BatchHeader::parse_exact(batch)?;
    payload_of(batch, &info, max_decompressed_bytes)
}

/// [`records_payload`] for a batch whose header `info` was parsed from `batch`.
fn payload_of(
    batch: &Bytes,
    info: &BatchHeader,
    max_decompressed_bytes: usize,
) -> Result<Bytes, RecordsError> {
    let payload = batch.slice(BATCH_HEADER_LEN..);
    Ok(compression::decompress(
        info.codec()?,
        &payload,
        max_decompressed_bytes,
    )?)
}

fn decode_record(cur: &mut Cursor<'_>) -> Result<Record, RecordsError> {
    let length = cur.varint()?;
    if length < 0 {
        return Err(Cursor::err("negative record length"));
    }
    let length = length as usize;
    if length > cur.end - cur.pos {
        return Err(Cursor::err("record length runs past the batch"));
    }
    let outer_end = cur.end;
    let record_end = cur.pos + length;
    cur.end = record_end;
    let attributes = cur.u8()? as i8;
    let timestamp_delta = cur.varlong()?;
    let offset_delta = cur.varint()?;
    let key = cur.nullable_bytes("key")?;
    let value = cur.nullable_bytes("value")?;
    let header_count = cur.varint()?;
    if header_count < 0 {
        return Err(Cursor::err("negative header count"));
    }
    // Each header needs at least 2 bytes: bound the allocation by the bytes present.
    let mut headers = Vec::with_capacity((header_count as usize).min((cur.end - cur.pos) / 2));
    for _ in 0..header_count {
        let key_len = cur.varint()?;
        if key_len < 0 {
            return Err(Cursor::err("negative header key length"));
        }
        let key = cur.bytes(key_len as usize)?;
        let value = cur.nullable_bytes("header value")?;
        headers.push(Header { key, value });
    }
    if cur.pos != record_end {
        return Err(Cursor::err(&format!(
            "record size {length} but fields used {}",
            length - (record_end - cur.pos)
        )));
    }
    cur.end = outer_end;
    Ok(Record {
        attributes,
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers,
    })
}

/// Decodes the records of a decompressed payload; exactly `count` records must fill it.
fn decode_payload(payload: &Bytes, count: i32) -> Result<Vec<Record>, RecordsError> {
    if count < 0 {
        return Err(RecordsError::invalid(format!(
            "negative record count {count}"
        )));
    }
    let mut cur = Cursor::new(payload);
    let mut records = Vec::with_capacity((count as usize).min(payload.len() / MIN_RECORD_BYTES));
    for index in 0..count {
        let record = decode_record(&mut cur).map_err(|e| match e {
            RecordsError::InvalidRecord { message, .. } => RecordsError::InvalidRecord {
                record_errors: vec![RecordError {
                    batch_index: index,
                    message: message.clone(),
                }],
                message,
            },
            other => other,
        })?;
        records.push(record);
    }
    if cur.pos != payload.len() {
        return Err(RecordsError::invalid(format!(
            "{} bytes left after the {count} records the batch declares",
            payload.len() - cur.pos
        )));
    }
    Ok(records)
}

/// A record parse error, attributed to the record at `index` (`record_errors`), as
/// `decode_payload` reports it.
fn at_record(index: i32, e: RecordsError) -> RecordsError {
    match e {
        RecordsError::InvalidRecord { message, .. } => RecordsError::InvalidRecord {
            record_errors: vec![RecordError {
                batch_index: index,
                message: message.clone(),
            }],
            message,
        },
        other => other,
    }
}

/// Bytes after the last declared record, as `decode_payload` reports them.
fn trailing_bytes(left: usize, count: i32) -> RecordsError {
    RecordsError::invalid(format!(
        "{left} bytes left after the {count} records the batch declares"
    ))
}

// ---- in-place record walk (produce validation) ----------------------------------------------

/// What produce validation reads of one record. Keys, values and headers are stepped over in
/// place: no `Bytes` slices (an atomic refcount increment and decrement each), no `Record`,
/// no `Vec<Header>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RecordFields {
    timestamp_delta: i64,
    offset_delta: i32,
    has_key: bool,
}

/// A forward-only reader over record bytes for [`walk_record`]. `rest` is what is left of the
/// payload, or of one record while its fields are read (so "truncated" means: past the end of
/// the record, as [`Cursor`] with its `end` set to the record's end).
///
/// Deliberately separate from [`Cursor`]: the decoding path (and the decoding validator the
/// walk is property-tested against) keeps its own primitives, and this one stays a plain slice
/// walk that the compiler can inline into the record loop. Error messages are [`Cursor`]'s.
struct Walk<'a> {
    rest: &'a [u8],
}

impl<'a> Walk<'a> {
    #[cold]
    #[inline(never)]
    fn err(what: &str) -> RecordsError {
        Cursor::err(what)
    }

    #[inline(always)]
    fn u8(&mut self) -> Result<u8, RecordsError> {
        let Some((&b, rest)) = self.rest.split_first() else {
            return Err(Self::err("truncated"));
        };
        self.rest = rest;
        Ok(b)
    }

    /// [`Cursor::varint`]: at most 5 bytes, zig-zag; bits past 32 are dropped as there.
    #[inline(always)]
    fn varint(&mut self) -> Result<i32, RecordsError> {
        let value = self.unsigned_varint(5, "varint longer than 5 bytes")? as u32;
        Ok(((value >> 1) as i32) ^ -((value & 1) as i32))
    }

    /// [`Cursor::varlong`]: at most 10 bytes, zig-zag.
    #[inline(always)]
    fn varlong(&mut self) -> Result<i64, RecordsError> {
        let value = self.unsigned_varint(10, "varlong longer than 10 bytes")?;
        Ok(((value >> 1) as i64) ^ -((value & 1) as i64))
    }

    /// An unsigned base-128 varint of at most `max_len` bytes (bits past 64 are dropped).
    #[inline(always)]
    fn unsigned_varint(
        &mut self,
        max_len: usize,
        too_long: &'static str,
    ) -> Result<u64, RecordsError> {
        // A record's varints (lengths up to 8 KiB, deltas, counts) are mostly one or two bytes:
        // take those without the loop.
        match *self.rest {
            [b0, ref rest @ ..] if b0 & 0x80 == 0 => {
                self.rest = rest;
                return Ok(u64::from(b0));
            }
            [b0, b1, ref rest @ ..] if b1 & 0x80 == 0 => {
                self.rest = rest;
                return Ok(u64::from(b0 & 0x7f) | u64::from(b1) << 7);
            }
            _ => {}
        }
        let mut value: u64 = 0;
        for (i, &b) in self.rest.iter().take(max_len).enumerate() {
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.rest = &self.rest[i + 1..];
                return Ok(value);
            }
        }
        // No terminating byte: the bytes ran out first, or `max_len` did not end it.
        Err(Self::err(if self.rest.len() < max_len {
            "truncated"
        } else {
            too_long
        }))
    }

    /// Steps over `len` bytes ([`Cursor::bytes`] without the slice).
    #[inline(always)]
    fn skip(&mut self, len: usize) -> Result<(), RecordsError> {
        match self.rest.get(len..) {
            Some(rest) => {
                self.rest = rest;
                Ok(())
            }
            None => Err(Self::err("field runs past the record")),
        }
    }

    /// Steps over a varint length and that many bytes, -1 being null
    /// ([`Cursor::nullable_bytes`]); true when the field is not null.
    #[inline(always)]
    fn skip_nullable(&mut self, what: &str) -> Result<bool, RecordsError> {
        match self.varint()? {
            -1 => Ok(false),
            l if l < -1 => Err(Self::negative_length(what, l)),
            l => self.skip(l as usize).map(|()| true),
        }
    }

    #[cold]
    #[inline(never)]
    fn negative_length(what: &str, len: i32) -> RecordsError {
        Cursor::err(&format!("negative {what} length {len}"))
    }
}

/// Reads one record with exactly the checks of [`decode_record`], in the same order, so the
/// same bytes fail with the same error; the equivalence is property-tested against the
/// decoding validator (`tests::walk_equivalence`). Keep the two in step.
#[inline(always)]
fn walk_record(payload: &mut Walk<'_>) -> Result<RecordFields, RecordsError> {
    let length = payload.varint()?;
    if length < 0 {
        return Err(Walk::err("negative record length"));
    }
    let length = length as usize;
    if length > payload.rest.len() {
        return Err(Walk::err("record length runs past the batch"));
    }
    let (body, after) = payload.rest.split_at(length);
    let mut cur = Walk { rest: body };
    cur.u8()?; // record attributes: unused by Kafka
    let timestamp_delta = cur.varlong()?;
    let offset_delta = cur.varint()?;
    let has_key = cur.skip_nullable("key")?;
    cur.skip_nullable("value")?;
    let header_count = cur.varint()?;
    if header_count < 0 {
        return Err(Walk::err("negative header count"));
    }
    // Every header takes at least one byte, so a lying count stops at the record's end.
    for _ in 0..header_count {
        let key_len = cur.varint()?;
        if key_len < 0 {
            return Err(Walk::err("negative header key length"));
        }
        cur.skip(key_len as usize)?;
        cur.skip_nullable("header value")?;
    }
    if !cur.rest.is_empty() {
        return Err(Walk::err(&format!(
            "record size {length} but fields used {}",
            length - cur.rest.len()
        )));
    }
    payload.rest = after;
    Ok(RecordFields {
        timestamp_delta,
        offset_delta,
        has_key,
    })
}

/// Verifies the CRC and decodes every record of one batch (decompressing if needed).
pub fn decode_batch(
    batch: &Bytes,
    max_decompressed_bytes: usize,
) -> Result<DecodedBatch, RecordsError> {
    decode_batch_sized(batch, max_decompressed_bytes).map(|(decoded, _)| decoded)
}

/// [`decode_batch`], also returning the decompressed size of the records.
fn decode_batch_sized(
    batch: &Bytes,
    max_decompressed_bytes: usize,
) -> Result<(DecodedBatch, usize), RecordsError> {
    verify_crc(batch)?;
    decode_batch_crc_checked(batch, max_decompressed_bytes)
}

/// [`decode_batch_sized`] for a batch whose CRC the caller has just verified (the produce
/// path checks it once in [`validate_produce_batch`]; a second CRC pass over every batch
/// showed up as ~9% of the broker's CPU in a 100-byte-record produce profile).
fn decode_batch_crc_checked(
    batch: &Bytes,
    max_decompressed_bytes: usize,
) -> Result<(DecodedBatch, usize), RecordsError> {
    let info = BatchHeader::parse_exact(batch)?;
    let payload = records_payload(batch, max_decompressed_bytes)?;
    let records = decode_payload(&payload, info.records_count)?;
    Ok((DecodedBatch { info, records }, payload.len()))
}

// ---- encoding -------------------------------------------------------------------------------

fn encode_record(out: &mut Vec<u8>, r: &Record) {
    let mut body = 1 + varlong_len(r.timestamp_delta) + varint_len(r.offset_delta);
    let field = |b: &Option<Bytes>| match b {
        Some(b) => varint_len(b.len() as i32) + b.len(),
        None => 1,
    };
    body += field(&r.key) + field(&r.value) + varint_len(r.headers.len() as i32);
    for h in &r.headers {
        body += varint_len(h.key.len() as i32) + h.key.len() + field(&h.value);
    }
    let start = out.len();
    put_varint(out, body as i32);
    let body_start = out.len();
    out.push(r.attributes as u8);
    put_varlong(out, r.timestamp_delta);
    put_varint(out, r.offset_delta);
    let put_field = |out: &mut Vec<u8>, b: &Option<Bytes>| match b {
        Some(b) => {
            put_varint(out, b.len() as i32);
            out.extend_from_slice(b);
        }
        None => put_varint(out, -1),
    };
    put_field(out, &r.key);
    put_field(out, &r.value);
    put_varint(out, r.headers.len() as i32);
    for h in &r.headers {
        put_varint(out, h.key.len() as i32);
        out.extend_from_slice(&h.key);
        put_field(out, &h.value);
    }
    // Pair assertion: the size we announced is the size we wrote.
    assert_eq!(
        out.len() - body_start,
        body,
        "record size mismatch at {start}"
    );
}

/// Largest field the v2 format can carry (lengths are signed varints).
fn check_record_sizes(records: &[Record]) -> Result<(), RecordsError> {
    let too_big = |len: usize| len > (i32::MAX as usize) / 2;
    for r in records {
        let mut total =
            r.key.as_ref().map_or(0, Bytes::len) + r.value.as_ref().map_or(0, Bytes::len);
        for h in &r.headers {
            total += h.key.len() + h.value.as_ref().map_or(0, Bytes::len);
        }
        if too_big(total) || r.headers.len() > i32::MAX as usize {
            return Err(RecordsError::invalid("record too large to encode"));
        }
    }
    Ok(())
}

/// Encodes a batch from a header template and records; `records_count`, `last_offset_delta`,
/// `length`, codec bits and CRC are derived, every other header field is taken from
/// `info` as is.
fn encode_batch(
    info: &BatchHeader,
    records: &[Record],
    codec: Codec,
) -> Result<Bytes, RecordsError> {
    check_record_sizes(records)?;
    let count = i32::try_from(records.len())
        .map_err(|_| RecordsError::invalid("too many records for one batch"))?;
    let mut payload = Vec::new();
    for r in records {
        encode_record(&mut payload, r);
    }
    let last_offset_delta = records
        .iter()
        .map(|r| r.offset_delta)
        .max()
        .unwrap_or(info.last_offset_delta);
    let header = BatchHeader {
        length: 0, // below, once the records are compressed
        magic: MAGIC_V2,
        crc: 0, // below
        attributes: (info.attributes & !ATTR_COMPRESSION_MASK) | codec.id(),
        last_offset_delta,
        records_count: count,
        ..*info
    };
    let mut head = [0u8; BATCH_HEADER_LEN];
    header.write(&mut head);
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + payload.len() / 2 + 64);
    out.extend_from_slice(&head);
    compression::compress_into(codec, &payload, &mut out)?;
    let length = i32::try_from(out.len() - LOG_OVERHEAD)
        .map_err(|_| RecordsError::invalid("batch larger than 2 GiB"))?;
    out[field::LENGTH].copy_from_slice(&length.to_be_bytes());
    write_crc(&mut out);
    Ok(Bytes::from(out))
}

/// Re-encodes a stored batch keeping only `records` (a subset, in order, with their
/// original offset deltas) in `codec`: the base offset, last offset delta, producer fields,
/// timestamps and attributes other than the codec stay as they were, as Kafka's cleaner
/// does (`MemoryRecords.filterTo` with `overrideLastOffset`), so offsets and the producer's
/// sequence range survive compaction. No records gives an empty batch (header only, no
/// compression), which Kafka keeps for a producer's last batch.
///
/// `delete_horizon_ms` (KIP-534): when set, the batch is marked with
/// [`ATTR_DELETE_HORIZON`] and its base timestamp becomes the horizon (when the cleaner may
/// drop its tombstones or its marker); every record's timestamp delta is recomputed so
/// the timestamps consumers see do not change.
pub fn encode_retained(
    info: &BatchHeader,
    records: &[Record],
    codec: Codec,
    delete_horizon_ms: Option<i64>,
) -> Result<Bytes, RecordsError> {
    let codec = if records.is_empty() {
        Codec::None
    } else {
        codec
    };
    let rebased: Vec<Record>;
    let (info, records) = match delete_horizon_ms {
        None => (*info, records),
        Some(horizon) => {
            rebased = records
                .iter()
                .map(|r| Record {
                    timestamp_delta: info
                        .base_timestamp
                        .wrapping_add(r.timestamp_delta)
                        .wrapping_sub(horizon),
                    ..r.clone()
                })
                .collect();
            let header = BatchHeader {
                attributes: info.attributes | ATTR_DELETE_HORIZON,
                base_timestamp: horizon,
                ..*info
            };
            (header, rebased.as_slice())
        }
    };
    let info = &info;
    let out = encode_batch(info, records, codec)?;
    let mut out = out.to_vec();
    out[field::LAST_OFFSET_DELTA].copy_from_slice(&info.last_offset_delta.to_be_bytes());
    out[field::MAX_TIMESTAMP].copy_from_slice(&info.max_timestamp.to_be_bytes());
    write_crc(&mut out);
    // Pair assertion: the new batch parses with the offsets of the old one.
    let check = BatchHeader::parse_and_verify(&out)?;
    assert_eq!(
        (check.base_offset, check.last_offset()),
        (info.base_offset, info.last_offset())
    );
    assert_eq!(check.base_timestamp, info.base_timestamp);
    Ok(Bytes::from(out))
}

/// Header fields for [`build_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSpec {
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    pub codec: Codec,
    pub timestamp_type: TimestampType,
    pub transactional: bool,
    pub control: bool,
    /// -1 for non-idempotent batches.
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// For `LogAppendTime` batches: the append time, stored as the max timestamp.
    pub log_append_time_ms: i64,
}

impl Default for BatchSpec {
    fn default() -> Self {
        BatchSpec {
            base_offset: 0,
            partition_leader_epoch: -1,
            codec: Codec::None,
            timestamp_type: TimestampType::CreateTime,
            transactional: false,
            control: false,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            log_append_time_ms: NO_TIMESTAMP,
        }
    }
}

/// A record to put in a new batch: absolute timestamp, offsets assigned in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// Builds one v2 batch the way Kafka's `MemoryRecordsBuilder` does: offset deltas `0..n-1`,
/// base timestamp = first record's timestamp, max timestamp = the largest record timestamp
/// (or `log_append_time_ms` for `LogAppendTime`). Used for internal topics and tests.
pub fn build_batch(spec: &BatchSpec, records: &[NewRecord]) -> Result<Bytes, RecordsError> {
    if records.is_empty() {
        return Err(RecordsError::invalid("a batch needs at least one record"));
    }
    let base_timestamp = records[0].timestamp; // ok: not empty, checked above
    let max_timestamp = match spec.timestamp_type {
        TimestampType::LogAppendTime => spec.log_append_time_ms,
        TimestampType::CreateTime => records
            .iter()
            .map(|r| r.timestamp)
            .max()
            .unwrap_or(NO_TIMESTAMP),
    };
    let mut attributes = 0;
    if spec.timestamp_type == TimestampType::LogAppendTime {
        attributes |= ATTR_LOG_APPEND_TIME;
    }
    if spec.transactional {
        attributes |= ATTR_TRANSACTIONAL;
    }
    if spec.control {
        attributes |= ATTR_CONTROL;
    }
    let encoded: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            attributes: 0,
            timestamp_delta: r.timestamp.wrapping_sub(base_timestamp),
            offset_delta: i as i32, // ok: count checked by encode_batch via try_from
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.clone(),
        })
        .collect();
    let info = BatchHeader {
        base_offset: spec.base_offset,
        length: 0,
        partition_leader_epoch: spec.partition_leader_epoch,
        magic: MAGIC_V2,
        crc: 0,
        attributes,
        last_offset_delta: 0,
        base_timestamp,
        max_timestamp,
        producer_id: spec.producer_id,
        producer_epoch: spec.producer_epoch,
        base_sequence: spec.base_sequence,
        records_count: 0,
    };
    encode_batch(&info, &encoded, spec.codec)
}

// ---- recompression --------------------------------------------------------------------------

/// Rebuilds one batch with `target` codec and sequential inner offsets, keeping everything
/// else (producer id/epoch/sequence, transactional bit, timestamp type, base timestamp, record
/// attributes, keys, values, header bytes and order). The max timestamp is recomputed from the
/// records for `CreateTime` (as Kafka's builder does) and kept for `LogAppendTime`.
/// Control batches and empty batches are returned unchanged.
pub fn rebuild_batch(
    batch: &Bytes,
    target: Codec,
    max_decompressed_bytes: usize,
) -> Result<Bytes, RecordsError> {
    let decoded = decode_batch(batch, max_decompressed_bytes)?;
    let info = decoded.info;
    if info.is_control() || decoded.records.is_empty() {
        return Ok(batch.clone());
    }
    let mut records = decoded.records;
    for (i, r) in records.iter_mut().enumerate() {
        r.offset_delta = i as i32; // ok: records_count is an i32
    }
    let mut template = info;
    if info.timestamp_type() == TimestampType::CreateTime {
        template.max_timestamp = records
            .iter()
            .map(|r| info.base_timestamp.wrapping_add(r.timestamp_delta))
            .max()
            .unwrap_or(info.max_timestamp);
    }
    let out = encode_batch(&template, &records, target)?;
    // Pair assertion: the new batch parses and carries the same number of records.
    let check = BatchHeader::parse_exact(&out)?;
    assert_eq!(check.records_count, info.records_count);
    assert_eq!(check.last_offset_delta, info.records_count - 1);
    Ok(out)
}

/// Recompresses every batch of a record set to `target` (Kafka's `LogValidator` path when a
/// topic's `compression.type` is not `producer` and differs from the batch codec). Batches
/// already in `target` (and control or empty batches) are copied unchanged; the output has
/// one batch per input batch, with new CRCs. Bounded by
/// [`compression::DEFAULT_MAX_DECOMPRESSED_BYTES`] per batch.
pub fn recompress(batches: &Bytes, target: Codec) -> Result<Bytes, RecordsError> {
    recompress_with_limit(batches, target, compression::DEFAULT_MAX_DECOMPRESSED_BYTES)
}

/// [`recompress`] with an explicit decompressed-size limit per batch.
pub fn recompress_with_limit(
    batches: &Bytes,
    target: Codec,
    max_decompressed_bytes: usize,
) -> Result<Bytes, RecordsError> {
    let parts = split_batches(batches)?;
    let mut changed = Vec::with_capacity(parts.len());
    let mut any = false;
    for part in &parts {
        let info = BatchHeader::parse_exact(part)?;
        if info.codec()? == target || info.is_control() || info.records_count == 0 {
            verify_crc(part)?;
            changed.push(None);
        } else {
            changed.push(Some(rebuild_batch(part, target, max_decompressed_bytes)?));
            any = true;
        }
    }
    if !any {
        return Ok(batches.clone());
    }
    let mut out = BytesMut::with_capacity(batches.len());
    for (part, new) in parts.iter().zip(&changed) {
        out.put_slice(new.as_ref().unwrap_or(part));
    }
    Ok(out.freeze())
}

// ---- timestamps -----------------------------------------------------------------------------

/// ListOffsets by timestamp within one stored batch: offset and timestamp of the first record
/// (in batch order) whose timestamp is `>= ts`, as Kafka's `LogSegment.findOffsetByTimestamp`.
/// A batch whose header max timestamp is below `ts` is answered from the header alone.
pub fn find_record_by_timestamp(
    batch: &Bytes,
    ts: i64,
) -> Result<Option<(i64, i64)>, RecordsError> {
    let info = BatchHeader::parse_exact(batch)?;
    if info.max_timestamp < ts {
        return Ok(None);
    }
    let decoded = decode_batch(batch, compression::DEFAULT_MAX_DECOMPRESSED_BYTES)?;
    let found = decoded
        .iter()
        .find(|(_, t, _)| *t >= ts)
        .map(|(offset, t, _)| (offset, t));
    Ok(found)
}

/// ListOffsets `MAX_TIMESTAMP` within one batch: offset and timestamp of the first record
/// carrying the batch's largest timestamp (`None` for an empty batch).
pub fn max_timestamp_record(batch: &Bytes) -> Result<Option<(i64, i64)>, RecordsError> {
    let decoded = decode_batch(batch, compression::DEFAULT_MAX_DECOMPRESSED_BYTES)?;
    let mut best: Option<(i64, i64)> = None;
    for (offset, t, _) in decoded.iter() {
        if best.is_none_or(|(_, bt)| t > bt) {
            best = Some((offset, t));
        }
    }
    Ok(best)
}

// ---- in-place header updates ----------------------------------------------------------------

/// Sets the partition leader epoch (not covered by the CRC), as Kafka does on append.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) -> Result<(), RecordsError> {
    BatchHeader::parse_exact(batch)?;
    storage::batch::set_partition_leader_epoch(storage::batch::header_mut(batch)?, epoch);
    Ok(())
}

/// Sets the max timestamp and timestamp type and recomputes the CRC (Kafka's
/// `setMaxTimestamp`): `LogAppendTime` topics stamp `now_ms`; `CreateTime` topics store the
/// true max record timestamp found by [`validate_records`].
pub fn set_max_timestamp(
    batch: &mut [u8],
    timestamp_type: TimestampType,
    max_timestamp: i64,
) -> Result<(), RecordsError> {
    let info = BatchHeader::parse_exact(batch)?;
    verify_crc(batch)?;
    let attributes = match timestamp_type {
        TimestampType::LogAppendTime => info.attributes | ATTR_LOG_APPEND_TIME,
        TimestampType::CreateTime => info.attributes & !ATTR_LOG_APPEND_TIME,
    };
    if attributes == info.attributes && max_timestamp == info.max_timestamp {
        return Ok(());
    }
    let stamped = BatchHeader {
        attributes,
        max_timestamp,
        ..info
    };
    stamped.write(storage::batch::header_mut(batch)?);
    write_crc(batch);
    Ok(())
}

// ---- validation -----------------------------------------------------------------------------

/// Topic settings that drive record-level validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidationOptions {
    /// `cleanup.policy` contains `compact`: null keys are rejected.
    pub compacted: bool,
    /// The topic's `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// Broker clock.
    pub now_ms: i64,
    /// `message.timestamp.before.max.ms` (Kafka default `i64::MAX`).
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms` (Kafka 4.0 default 3600000; `i64::MAX` before).
    pub timestamp_after_max_ms: i64,
    pub max_decompressed_bytes: usize,
}

impl ValidationOptions {
    /// Kafka's defaults (4.x) for a non-compacted `CreateTime` topic.
    pub fn kafka_defaults(now_ms: i64) -> Self {
        ValidationOptions {
            compacted: false,
            timestamp_type: TimestampType::CreateTime,
            now_ms,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
            max_decompressed_bytes: compression::DEFAULT_MAX_DECOMPRESSED_BYTES,
        }
    }

    /// The options a topic's effective settings ask for.
    pub fn for_topic(settings: &crate::log::topic_config::TopicSettings, now_ms: i64) -> Self {
        ValidationOptions {
            compacted: settings.cleanup_compact,
            timestamp_type: match settings.timestamp_type {
                crate::log::topic_config::TimestampType::CreateTime => TimestampType::CreateTime,
                crate::log::topic_config::TimestampType::LogAppendTime => {
                    TimestampType::LogAppendTime
                }
            },
            now_ms,
            timestamp_before_max_ms: settings.timestamp_before_max_ms,
            timestamp_after_max_ms: settings.timestamp_after_max_ms,
            max_decompressed_bytes: compression::DEFAULT_MAX_DECOMPRESSED_BYTES,
        }
    }

    /// False when [`validate_records`] cannot reject `batch` (a batch that passed
    /// [`validate_produce_batch`]), so a hot path may skip decompressing it when no
    /// recompression is needed either. With Kafka 4 defaults (`after.max.ms` = 1 h) it is true
    /// for `CreateTime` topics: Kafka iterates every record of every produced batch.
    pub fn needs_record_validation(&self, batch: &BatchHeader) -> bool {
        self.compacted
            // A producer-set LogAppendTime can be an error (see validate_records).
            || batch.timestamp_type() == TimestampType::LogAppendTime
            || (self.timestamp_type == TimestampType::CreateTime
                && (self.timestamp_before_max_ms != i64::MAX
                    || self.timestamp_after_max_ms != i64::MAX))
    }
}

/// What [`validate_records`] learned about a valid batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidationSummary {
    pub record_count: i32,
    /// Largest record timestamp ([`NO_TIMESTAMP`] if none).
    pub max_timestamp: i64,
    /// Offset delta of the first record with `max_timestamp` (-1 if none).
    pub offset_delta_of_max_timestamp: i32,
    /// False when the inner offset deltas are not `0..n-1`: Kafka then rebuilds the batch
    /// ([`rebuild_batch`]) instead of storing it as is.
    pub inner_offsets_sequential: bool,
    /// Size of the decompressed records.
    pub uncompressed_bytes: usize,
}

/// Batch-level produce checks on the record set of one partition (header only, plus CRC):
/// exactly one v2 batch, CRC, `lastOffsetDelta + 1 == recordsCount > 0`, no control batch,
/// no negative base sequence with a producer id. Returns the batch header.
pub fn validate_produce_batch(records: &Bytes) -> Result<BatchHeader, RecordsError> {
    if records.is_empty() {
        return Err(RecordsError::invalid("record set has no batches at all"));
    }
    let parts = split_batches(records)?;
    if parts.len() != 1 {
        return Err(RecordsError::invalid(format!(
            "a produce request must carry exactly one batch per partition, got {}",
            parts.len()
        )));
    }
    let batch = &parts[0]; // ok: len checked above
    let info = BatchHeader::parse_exact(batch)?;
    verify_crc(batch)?;
    info.codec()?;
    let count_from_offsets = i64::from(info.last_offset_delta) + 1;
    if count_from_offsets <= 0 {
        return Err(RecordsError::invalid(format!(
            "batch has an invalid offset range: last offset delta {}",
            info.last_offset_delta
        )));
    }
    if info.records_count <= 0 {
        return Err(RecordsError::invalid(format!(
            "invalid reported count for record batch: {}",
            info.records_count
        )));
    }
    if count_from_offsets != i64::from(info.records_count) {
        return Err(RecordsError::invalid(format!(
            "inconsistent batch offset range (last offset delta {}) and count of records {}",
            info.last_offset_delta, info.records_count
        )));
    }
    if info.is_control() {
        return Err(RecordsError::invalid(
            "clients are not allowed to write control records",
        ));
    }
    if info.has_producer_id() && info.base_sequence < 0 {
        return Err(RecordsError::invalid(format!(
            "invalid sequence number {} in record batch with producerId {}",
            info.base_sequence, info.producer_id
        )));
    }
    Ok(info)
}

/// Record-level produce checks on one batch (decompressing it), Kafka's `validateRecord`:
/// records parse and fill the batch exactly, compacted topics need keys, `CreateTime`
/// timestamps lie in `[now - before_max, now + after_max]`, producers do not set
/// `LogAppendTime`. All records are checked; if any has a timestamp error the whole batch is
/// `INVALID_TIMESTAMP`, else `INVALID_RECORD`, with every `record_errors` entry listed.
pub fn validate_records(
    batch: &Bytes,
    opts: &ValidationOptions,
) -> Result<ValidationSummary, RecordsError> {
    verify_crc(batch)?;
    validate_records_crc_checked(batch, opts)
}

/// [`validate_records`] without its CRC pass, for a batch whose CRC was just verified.
///
/// Walks the (decompressed) records in place ([`walk_record`]): nothing is allocated per
/// record, only the error list when a record is rejected. Parse errors win over rejections
/// (the first malformed record is reported alone), as when the batch was decoded first.
fn validate_records_crc_checked(
    batch: &Bytes,
    opts: &ValidationOptions,
) -> Result<ValidationSummary, RecordsError> {
    let info = BatchHeader::parse_exact(batch)?;
    let payload = payload_of(batch, &info, opts.max_decompressed_bytes)?;
    let count = info.records_count;
    if count < 0 {
        return Err(RecordsError::invalid(format!(
            "negative record count {count}"
        )));
    }
    let log_append_time = info.timestamp_type() == TimestampType::LogAppendTime;
    let mut walk = Walk { rest: &payload };
    let mut errors: Vec<(bool, RecordError)> = Vec::new();
    let mut max_timestamp = NO_TIMESTAMP;
    let mut offset_delta_of_max = -1;
    let mut sequential = true;
    for index in 0..count {
        let record = walk_record(&mut walk).map_err(|e| at_record(index, e))?;
        if record.offset_delta != index {
            sequential = false;
        }
        // The record's own timestamp (Kafka's `record.timestamp()` for v2, as
        // `DecodedBatch::timestamp_of`).
        let timestamp = if log_append_time {
            info.max_timestamp
        } else {
            info.base_timestamp.wrapping_add(record.timestamp_delta)
        };
        if let Some(error) = check_record(&info, opts, index, &record, timestamp) {
            errors.push(error);
        }
        if timestamp > max_timestamp {
            max_timestamp = timestamp;
            offset_delta_of_max = index;
        }
    }
    if !walk.rest.is_empty() {
        return Err(trailing_bytes(walk.rest.len(), count));
    }
    if !errors.is_empty() {
        return Err(rejection(errors));
    }
    Ok(ValidationSummary {
        record_count: count,
        max_timestamp,
        offset_delta_of_max_timestamp: offset_delta_of_max,
        inner_offsets_sequential: sequential,
        uncompressed_bytes: payload.len(),
    })
}

/// Kafka's per-record checks (`LogValidator.validateRecord`): at most one error per record,
/// `(is_timestamp_error, error)`.
fn check_record(
    info: &BatchHeader,
    opts: &ValidationOptions,
    index: i32,
    record: &RecordFields,
    timestamp: i64,
) -> Option<(bool, RecordError)> {
    if opts.compacted && !record.has_key {
        Some((
            false,
            RecordError {
                batch_index: index,
                message: "Compacted topic cannot accept message without key".into(),
            },
        ))
    } else if opts.timestamp_type == TimestampType::CreateTime && timestamp != NO_TIMESTAMP {
        let diff = i128::from(opts.now_ms) - i128::from(timestamp);
        if diff > i128::from(opts.timestamp_before_max_ms)
            || -diff > i128::from(opts.timestamp_after_max_ms)
        {
            let offset = info
                .base_offset
                .saturating_add(i64::from(record.offset_delta));
            Some((
                true,
                RecordError {
                    batch_index: index,
                    message: format!(
                        "Timestamp {timestamp} of message with offset {offset} is out of range. The timestamp should be within [{}, {}]",
                        opts.now_ms.saturating_sub(opts.timestamp_before_max_ms),
                        opts.now_ms.saturating_add(opts.timestamp_after_max_ms)
                    ),
                },
            ))
        } else {
            None
        }
    } else if info.timestamp_type() == TimestampType::LogAppendTime {
        Some((
            true,
            RecordError {
                batch_index: index,
                message: "Invalid timestamp type in message. Producer should not set timestamp type to LogAppendTime.".into(),
            },
        ))
    } else {
        None
    }
}

/// The batch-level error for a non-empty list of record errors: `INVALID_TIMESTAMP` if any is
/// a timestamp error, else `INVALID_RECORD` quoting the first three, every error listed.
fn rejection(errors: Vec<(bool, RecordError)>) -> RecordsError {
    let timestamp_error = errors.iter().any(|(t, _)| *t);
    let record_errors: Vec<RecordError> = errors.into_iter().map(|(_, e)| e).collect();
    if timestamp_error {
        RecordsError::InvalidTimestamp {
            message: "One or more records have been rejected due to invalid timestamp".into(),
            record_errors,
        }
    } else {
        let shown: Vec<&str> = record_errors
            .iter()
            .take(3)
            .map(|e| e.message.as_str())
            .collect();
        RecordsError::InvalidRecord {
            message: format!(
                "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: {:?}",
                record_errors.len(),
                shown
            ),
            record_errors,
        }
    }
}

/// Result of [`validate_produce`]: the batch to store and what validation learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceValidation {
    /// The batch to append: the producer's bytes untouched, or a rebuilt / re-stamped copy.
    pub batch: Bytes,
    /// Header of `batch`.
    pub info: BatchHeader,
    /// True when `batch` is not the producer's bytes (recompressed, renumbered or max
    /// timestamp corrected).
    pub rewritten: bool,
    /// True when the records were decoded and checked ([`validate_records`] ran).
    pub records_checked: bool,
}

/// Kafka's `LogValidator` for one partition of a Produce request, in one call:
/// 1. [`validate_produce_batch`] (always; header + CRC);
/// 2. [`validate_records`] when it can reject something or the batch must be rebuilt
///    (see [`ValidationOptions::needs_record_validation`]);
/// 3. rebuild when the topic's `compression.type` differs from the batch codec or the inner
///    offsets are not sequential ([`rebuild_batch`]);
/// 4. for `CreateTime` topics, correct a header max timestamp that disagrees with the records
///    (Kafka always rewrites it; the time index and ListOffsets depend on it).
///
/// `LogAppendTime` stamping, base offsets and the partition leader epoch are left to the
/// append path ([`set_max_timestamp`], [`set_partition_leader_epoch`], storage).
pub fn validate_produce(
    records: &Bytes,
    topic_compression: compression::TopicCompression,
    opts: &ValidationOptions,
) -> Result<ProduceValidation, RecordsError> {
    let info = validate_produce_batch(records)?;
    let codec = info.codec()?;
    let target = topic_compression.target_codec(codec);
    let recompress = target != codec;
    if !recompress && !opts.needs_record_validation(&info) {
        return Ok(ProduceValidation {
            batch: records.clone(),
            info,
            rewritten: false,
            records_checked: false,
        });
    }
    // validate_produce_batch verified the CRC of exactly these bytes.
    let summary = validate_records_crc_checked(records, opts)?;
    let mut batch = records.clone();
    let mut rewritten = false;
    if recompress || !summary.inner_offsets_sequential {
        batch = rebuild_batch(records, target, opts.max_decompressed_bytes)?;
        rewritten = true;
    }
    let current = BatchHeader::parse_exact(&batch)?;
    if opts.timestamp_type == TimestampType::CreateTime
        && current.timestamp_type() == TimestampType::CreateTime
        && current.max_timestamp != summary.max_timestamp
    {
        let mut copy = batch.to_vec();
        set_max_timestamp(&mut copy, TimestampType::CreateTime, summary.max_timestamp)?;
        batch = Bytes::from(copy);
        rewritten = true;
    }
    let info = BatchHeader::parse_exact(&batch)?;
    // Pair assertion: whatever we produced still passes the header checks. Untouched
    // producer bytes were verified above; only a rebuilt or re-stamped copy needs a new pass.
    if rewritten {
        verify_crc(&batch)?;
    }
    assert_eq!(info.records_count, summary.record_count);
    Ok(ProduceValidation {
        batch,
        info,
        rewritten,
        records_checked: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::KafkaCode;
    use crate::log::compression::DEFAULT_MAX_DECOMPRESSED_BYTES as LIMIT;

    /// The decoding validator that [`validate_records_crc_checked`] replaced (unchanged but
    /// for its name and the CRC pass of [`validate_records`]): it materialises every record
    /// with [`decode_batch_crc_checked`] and checks the decoded fields. The walk must answer
    /// exactly what this answers, for every input.
    fn reference_validate_records(
        batch: &Bytes,
        opts: &ValidationOptions,
    ) -> Result<ValidationSummary, RecordsError> {
        verify_crc(batch)?;
        let (decoded, uncompressed_bytes) =
            decode_batch_crc_checked(batch, opts.max_decompressed_bytes)?;
        let info = decoded.info;
        let mut errors: Vec<(bool, RecordError)> = Vec::new();
        let mut max_timestamp = NO_TIMESTAMP;
        let mut offset_delta_of_max = -1;
        let mut sequential = true;
        for (index, record) in decoded.records.iter().enumerate() {
            let index = index as i32; // ok: at most records_count (an i32) records
            if record.offset_delta != index {
                sequential = false;
            }
            // The record's own timestamp (Kafka's `record.timestamp()` for v2).
            let timestamp = decoded.timestamp_of(record);
            if opts.compacted && record.key.is_none() {
                errors.push((
                    false,
                    RecordError {
                        batch_index: index,
                        message: "Compacted topic cannot accept message without key".into(),
                    },
                ));
            } else if opts.timestamp_type == TimestampType::CreateTime && timestamp != NO_TIMESTAMP
            {
                let diff = i128::from(opts.now_ms) - i128::from(timestamp);
                if diff > i128::from(opts.timestamp_before_max_ms)
                    || -diff > i128::from(opts.timestamp_after_max_ms)
                {
                    errors.push((
                        true,
                        RecordError {
                            batch_index: index,
                            message: format!(
                                "Timestamp {timestamp} of message with offset {} is out of range. The timestamp should be within [{}, {}]",
                                decoded.offset_of(record),
                                opts.now_ms.saturating_sub(opts.timestamp_before_max_ms),
                                opts.now_ms.saturating_add(opts.timestamp_after_max_ms)
                            ),
                        },
                    ));
                }
            } else if info.timestamp_type() == TimestampType::LogAppendTime {
                errors.push((
                    true,
                    RecordError {
                        batch_index: index,
                        message: "Invalid timestamp type in message. Producer should not set timestamp type to LogAppendTime.".into(),
                    },
                ));
            }
            if timestamp > max_timestamp {
                max_timestamp = timestamp;
                offset_delta_of_max = index;
            }
        }
        if !errors.is_empty() {
            let timestamp_error = errors.iter().any(|(t, _)| *t);
            let record_errors: Vec<RecordError> = errors.into_iter().map(|(_, e)| e).collect();
            return Err(if timestamp_error {
                RecordsError::InvalidTimestamp {
                    message: "One or more records have been rejected due to invalid timestamp"
                        .into(),
                    record_errors,
                }
            } else {
                let shown: Vec<&str> = record_errors
                    .iter()
                    .take(3)
                    .map(|e| e.message.as_str())
                    .collect();
                RecordsError::InvalidRecord {
                    message: format!(
                        "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: {:?}",
                        record_errors.len(),
                        shown
                    ),
                    record_errors,
                }
            });
        }
        Ok(ValidationSummary {
            record_count: decoded.records.len() as i32, // ok: equals records_count
            max_timestamp,
            offset_delta_of_max_timestamp: offset_delta_of_max,
            inner_offsets_sequential: sequential,
            uncompressed_bytes,
        })
    }

    fn h(key: &[u8], value: Option<&[u8]>) -> Header {
        Header {
            key: Bytes::copy_from_slice(key),
            value: value.map(Bytes::copy_from_slice),
        }
    }

    fn sample_records() -> Vec<NewRecord> {
        vec![
            NewRecord {
                timestamp: 1_700_000_000_000,
                key: Some(Bytes::from_static(b"k0")),
                value: Some(Bytes::from(vec![b'x'; 3000])),
                // Duplicate keys, a null value and a non-UTF-8 key must all survive.
                headers: vec![
                    h(b"a", Some(b"1")),
                    h(b"a", Some(b"2")),
                    h(b"n", None),
                    h(b"\xff\xfe", Some(b"")),
                ],
            },
            NewRecord {
                // Earlier than the base timestamp: negative delta.
                timestamp: 1_699_999_999_000,
                key: None,
                value: Some(Bytes::from_static(b"")),
                headers: vec![],
            },
            NewRecord {
                timestamp: 1_700_000_002_000,
                key: Some(Bytes::from_static(b"")),
                value: None,
                headers: vec![h(b"", None)],
            },
        ]
    }

    fn idempotent_spec(codec: Codec) -> BatchSpec {
        BatchSpec {
            base_offset: 0,
            partition_leader_epoch: 7,
            codec,
            producer_id: 9001,
            producer_epoch: 4,
            base_sequence: 55,
            transactional: true,
            ..BatchSpec::default()
        }
    }

    fn from_hex(s: &str) -> Bytes {
        let b = s.as_bytes();
        let digit = |c: u8| match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("bad hex"),
        };
        Bytes::from(
            b.chunks(2)
                .map(|p| digit(p[0]) << 4 | digit(p[1]))
                .collect::<Vec<u8>>(),
        )
    }

    /// Everything except the fields recompression legitimately changes.
    fn assert_same_content(a: &DecodedBatch, b: &DecodedBatch) {
        assert_eq!(a.records, b.records);
        let strip = |i: &BatchHeader| BatchHeader {
            length: 0,
            crc: 0,
            attributes: i.attributes & !ATTR_COMPRESSION_MASK,
            ..*i
        };
        assert_eq!(strip(&a.info), strip(&b.info));
        let ta: Vec<_> = a.iter().map(|(o, t, _)| (o, t)).collect();
        let tb: Vec<_> = b.iter().map(|(o, t, _)| (o, t)).collect();
        assert_eq!(ta, tb);
    }

    #[test]
    fn build_and_decode_every_codec() {
        let records = sample_records();
        for codec in Codec::ALL {
            let batch = build_batch(&idempotent_spec(codec), &records).unwrap();
            let d = decode_batch(&batch, LIMIT).unwrap();
            assert_eq!(d.info.codec().unwrap(), codec);
            assert_eq!(d.info.records_count, 3);
            assert_eq!(d.info.last_offset_delta, 2);
            assert_eq!(d.info.base_timestamp, 1_700_000_000_000);
            assert_eq!(d.info.max_timestamp, 1_700_000_002_000);
            assert_eq!(
                (
                    d.info.producer_id,
                    d.info.producer_epoch,
                    d.info.base_sequence
                ),
                (9001, 4, 55)
            );
            assert!(d.info.is_transactional() && !d.info.is_control());
            assert_eq!(d.info.partition_leader_epoch, 7);
            for (i, ((offset, ts, r), want)) in d.iter().zip(&records).enumerate() {
                assert_eq!(offset, i as i64);
                assert_eq!(ts, want.timestamp);
                assert_eq!(r.key, want.key);
                assert_eq!(r.value, want.value);
                assert_eq!(r.headers, want.headers);
            }
            assert_eq!(validate_produce_batch(&batch).unwrap(), d.info);
        }
    }

    #[test]
    fn recompress_between_every_pair_of_codecs() {
        let records = sample_records();
        for from in Codec::ALL {
            let original = build_batch(&idempotent_spec(from), &records).unwrap();
            let want = decode_batch(&original, LIMIT).unwrap();
            for to in Codec::ALL {
                let out = recompress(&original, to).unwrap();
                let got = decode_batch(&out, LIMIT).unwrap();
                assert_eq!(got.info.codec().unwrap(), to, "{from:?} -> {to:?}");
                assert_same_content(&want, &got);
                if from == to {
                    assert_eq!(out, original, "same codec is a no-op");
                }
                // And back again.
                let back = decode_batch(&recompress(&out, from).unwrap(), LIMIT).unwrap();
                assert_same_content(&want, &back);
            }
        }
    }

    #[test]
    fn recompress_keeps_one_batch_per_input_batch() {
        let mut set = BytesMut::new();
        let codecs = [Codec::Gzip, Codec::None, Codec::Zstd, Codec::Lz4];
        for (i, codec) in codecs.iter().enumerate() {
            let spec = BatchSpec {
                base_offset: i as i64 * 3,
                ..idempotent_spec(*codec)
            };
            set.put_slice(&build_batch(&spec, &sample_records()).unwrap());
        }
        let set = set.freeze();
        let out = recompress(&set, Codec::Snappy).unwrap();
        let parts = split_batches(&out).unwrap();
        assert_eq!(parts.len(), 4);
        for (i, (part, orig)) in parts.iter().zip(split_batches(&set).unwrap()).enumerate() {
            let got = decode_batch(part, LIMIT).unwrap();
            assert_eq!(got.info.codec().unwrap(), Codec::Snappy);
            assert_eq!(got.info.base_offset, i as i64 * 3);
            assert_same_content(&decode_batch(&orig, LIMIT).unwrap(), &got);
        }
    }

    #[test]
    fn recompress_keeps_log_append_time_and_control_batches() {
        let spec = BatchSpec {
            timestamp_type: TimestampType::LogAppendTime,
            log_append_time_ms: 1_800_000_000_000,
            codec: Codec::Gzip,
            ..BatchSpec::default()
        };
        let batch = build_batch(&spec, &sample_records()).unwrap();
        let out = decode_batch(&recompress(&batch, Codec::Zstd).unwrap(), LIMIT).unwrap();
        assert_eq!(out.info.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(out.info.max_timestamp, 1_800_000_000_000);
        assert!(out.iter().all(|(_, t, _)| t == 1_800_000_000_000));

        let control = build_batch(
            &BatchSpec {
                control: true,
                ..BatchSpec::default()
            },
            &sample_records()[..1],
        )
        .unwrap();
        assert_eq!(recompress(&control, Codec::Lz4).unwrap(), control);
    }

    #[test]
    fn recompress_renumbers_non_sequential_inner_offsets() {
        let batch = build_batch(&BatchSpec::default(), &sample_records()).unwrap();
        let mut d = decode_batch(&batch, LIMIT).unwrap();
        for (i, r) in d.records.iter_mut().enumerate() {
            r.offset_delta = i as i32 * 2; // 0, 2, 4: an old client's mistake
        }
        let odd = encode_batch(&d.info, &d.records, Codec::None).unwrap();
        let summary =
            validate_records(&odd, &ValidationOptions::kafka_defaults(1_700_000_000_000)).unwrap();
        assert!(!summary.inner_offsets_sequential);
        assert_eq!(
            validate_produce_batch(&odd).unwrap_err().kafka_code(),
            87,
            "delta 4 != count 3"
        );
        let fixed = rebuild_batch(&odd, Codec::None, LIMIT).unwrap();
        let f = decode_batch(&fixed, LIMIT).unwrap();
        assert_eq!(
            f.records.iter().map(|r| r.offset_delta).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert_eq!(f.info.last_offset_delta, 2);
        validate_produce_batch(&fixed).unwrap();
    }

    #[test]
    fn kafka_protocol_interop_both_directions() {
        use kafka_protocol::records::{
            Record as KpRecord, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
            TimestampType as KpTs,
        };
        let kp_records: Vec<KpRecord> = (0..50)
            .map(|i| KpRecord {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 3,
                producer_id: 77,
                producer_epoch: 1,
                timestamp_type: KpTs::Creation,
                offset: 1000 + i,
                sequence: 10 + i as i32,
                timestamp: 1_600_000_000_000 + i * 10,
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(format!("value-{i}-").repeat(100))),
                headers: [(
                    kafka_protocol::protocol::StrBytes::from_static_str("h"),
                    Some(Bytes::from_static(b"v")),
                )]
                .into_iter()
                .collect(),
            })
            .collect();
        for codec in Codec::ALL {
            // kafka-protocol encodes (its own gzip/snappy/zstd; lz4 only through our hook).
            let mut buf = BytesMut::new();
            let opts = RecordEncodeOptions {
                version: 2,
                compression: codec.to_kafka_protocol(),
            };
            if codec == Codec::Lz4 {
                RecordBatchEncoder::encode_with_custom_compression(
                    &mut buf,
                    &kp_records,
                    &opts,
                    Some(compression::kp_compress),
                )
                .unwrap();
            } else {
                RecordBatchEncoder::encode(&mut buf, &kp_records, &opts).unwrap();
            }
            let batch = buf.freeze();
            let ours = decode_batch(&batch, LIMIT).unwrap();
            assert_eq!(ours.info.codec().unwrap(), codec);
            assert_eq!((ours.info.producer_id, ours.info.base_sequence), (77, 10));
            for ((offset, ts, r), kp) in ours.iter().zip(&kp_records) {
                assert_eq!((offset, ts), (kp.offset, kp.timestamp));
                assert_eq!(r.key, kp.key);
                assert_eq!(r.value, kp.value);
                assert_eq!(r.headers, vec![h(b"h", Some(b"v"))]);
            }
            // We recompress to every codec; kafka-protocol decodes the result.
            for to in Codec::ALL {
                let mut out = recompress(&batch, to).unwrap();
                let set = RecordBatchDecoder::decode_with_custom_compression(
                    &mut out,
                    Some(compression::kp_decompress),
                )
                .unwrap();
                assert_eq!(set.records, kp_records, "{codec:?} -> {to:?}");
            }
        }
    }

    // Fixtures: batches built by kafka-python 3.0.12 (DefaultRecordBatchBuilder, with the
    // python lz4 / python-snappy / zstandard codecs) and one python `lz4.frame` frame with
    // linked blocks, content checksum and content size. Generated once with:
    // # Generates the kafka-python / python-lz4 fixtures embedded in records.rs tests.
    // import lz4.frame
    // from kafka.record.default_records import DefaultRecordBatchBuilder
    // out = []
    // for codec, name in [(0, "NONE"), (1, "GZIP"), (2, "SNAPPY"), (3, "LZ4"), (4, "ZSTD")]:
    //     b = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=0,
    //                                   producer_id=4242, producer_epoch=3, base_sequence=17,
    //                                   batch_size=1 << 22)
    //     b.append(0, 1700000000000, b"key-0", b"value-0" * 20, [("h1", b"v1"), ("h1", b"dup"), ("h2", None)])
    //     b.append(1, 1699999999000, None, b"second" * 30, [])
    //     b.append(2, 1700000005000, b"key-2", None, [("trace", b"\x00\xff")])
    //     if codec != 0:  # 128 KiB: several lz4 blocks (kept out of the uncompressed fixture)
    //         b.append(3, 1700000001000, b"big", (b"0123456789abcdef" * 8192), [])
    //     out.append((name, bytes(b.build())))
    // for name, data in out:
    //     print(f"const PY_{name}: &str = \"{data.hex()}\";")
    // raw = bytes(range(256)) * 600  # 150 KiB
    // linked = lz4.frame.compress(raw, block_linked=True, content_checksum=True, store_size=True,
    //                             block_size=lz4.frame.BLOCKSIZE_MAX64KB)
    // print(f"const PY_LZ4_LINKED_FRAME: &str = \"{linked.hex()}\";")
    const PY_NONE: &str = "0000000000000000000001b00000000002e7164c020000000000020000018bcfe568000000018bcfe57b88000000000000109200030000001100000003d2020000000a6b65792d30980276616c75652d3076616c75652d3076616c75652d3076616c75652d3076616c75652d3076616c75652d3076616c75652d3076616c75652d3076616c75652d3076616c75652d3076616c75652d3076616c75652d3076616c75652d3076616c75652d3076616c75652d3076616c75652d3076616c75652d3076616c75652d3076616c75652d3076616c75652d30060468310476310468310664757004683201f80200cf0f0201e8027365636f6e647365636f6e647365636f6e647365636f6e647365636f6e647365636f6e647365636f6e647365636f6e647365636f6e647365636f6e647365636f6e647365636f6e647365636f6e647365636f6e647365636f6e647365636f6e647365636f6e647365636f6e647365636f6e647365636f6e647365636f6e647365636f6e647365636f6e647365636f6e647365636f6e647365636f6e647365636f6e647365636f6e647365636f6e647365636f6e64002a00904e040a6b65792d3201020a74726163650400ff";
    const PY_GZIP: &str = "0000000000000000000001ce00000000022def21840001000000030000018bcfe568000000018bcfe57b880000000000001092000300000011000000041f8b0800a245036b02ffedd0bd4dc3501885e1cf57572ed224732045b2cdff12ece0d8178240808044a2f30894d90ac4148c40078829403ccd7bf4b4e72d45c4ecaa3c2d9b5ddaf6d79bb26c7ec5d479dde66dfbdd7adcdce575577da47899a7ea3d3d94e1f666fc5b8dbd783ecb3f4777559a3ddef743c9f1b99b16f13aafebd5e5c5342d9ab6db3f383c3a3e39ed57c358ce99999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999f9ff3abe00272906868e010200";
    const PY_SNAPPY: &str = "0000000000000000000019260000000002965e3aa60002000000030000018bcfe568000000018bcfe57b8800000000000010920003000000110000000482534e415050590000000001000000010000066e8080024cd2020000000a6b65792d30980276616c75652d30fe0700fe0700050780060468310476310468310664757004683201f80200cf0f0201e8027365636f6e64fe0600fe0600b6060014002a00904e042569a83201020a74726163650400ff98801000d00f06066269678080103031323334353637383961626364656630fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000861000000006148080023c33343536373839616263646566303132fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000be1000000006148080023c33343536373839616263646566303132fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000be1000000006148080023c33343536373839616263646566303132fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000fe1000be1000000000278e033c33343536373839616263646566303132fe1000fe1000fe1000fe1000fe1000f210000000";
    const PY_LZ4: &str = "000000000000000000000303000000000277167b420003000000030000018bcfe568000000018bcfe57b8800000000000010920003000000110000000404224d1868408e01020000000000567c010000ff05d2020000000a6b65792d30980276616c75652d30070072ff12060468310476310468310664757004683201f80200cf0f0201e8027365636f6e6406009b61002a00904e046901ff1b3201020a74726163650400ff98801000d00f0606626967808010303132333435363738396162636465661000ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff4a5065663031321b010000ff01333435363738396162636465663031321000ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffd85065663031321c000000ff01333435363738396162636465663031321000ff6750636465660000000000";
    const PY_ZSTD: &str = "0000000000000000000000c100000000027822f4d70004000000030000018bcfe568000000018bcfe57b8800000000000010920003000000110000000428b52ffda08e010200c403005406d2020000000a6b65792d30980276616c75652d30060468310476310468310664757004683201f80200cf0f0201e8027365636f6e64002a00904e043201020a74726163650400ff98801000d00f060662696780801030313233343536373839616263646566040002f39fc9858d0a30ab148a10882a774d00001033000100892a1002";
    const PY_LZ4_LINKED_FRAME: &str = "04224d184c400058020000000000640a020000fff1000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff0001ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe750fbfcfdfeff0a0100000f00ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe850fbfcfdfeff620000000f0001ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff4050fbfcfdfeff0000000045575484";

    #[test]
    fn decodes_kafka_python_batches_of_every_codec() {
        let fixtures = [
            (PY_NONE, Codec::None),
            (PY_GZIP, Codec::Gzip),
            (PY_SNAPPY, Codec::Snappy),
            (PY_LZ4, Codec::Lz4),
            (PY_ZSTD, Codec::Zstd),
        ];
        for (hex, codec) in fixtures {
            let batch = from_hex(hex);
            validate_produce_batch(&batch).unwrap();
            let d = decode_batch(&batch, LIMIT).unwrap();
            assert_eq!(d.info.codec().unwrap(), codec);
            assert_eq!(
                (
                    d.info.producer_id,
                    d.info.producer_epoch,
                    d.info.base_sequence
                ),
                (4242, 3, 17)
            );
            let n = if codec == Codec::None { 3 } else { 4 };
            assert_eq!(d.records.len(), n);
            let r0 = &d.records[0];
            assert_eq!(r0.key.as_deref(), Some(&b"key-0"[..]));
            assert_eq!(r0.value.as_deref(), Some("value-0".repeat(20).as_bytes()));
            assert_eq!(
                r0.headers,
                vec![
                    h(b"h1", Some(b"v1")),
                    h(b"h1", Some(b"dup")),
                    h(b"h2", None)
                ]
            );
            let ts: Vec<i64> = d.iter().map(|(_, t, _)| t).collect();
            assert_eq!(
                &ts[..3],
                &[1_700_000_000_000, 1_699_999_999_000, 1_700_000_005_000]
            );
            assert_eq!(d.records[1].key, None);
            assert_eq!(d.records[2].value, None);
            assert_eq!(d.records[2].headers, vec![h(b"trace", Some(b"\x00\xff"))]);
            if n == 4 {
                assert_eq!(
                    d.records[3].value.as_deref(),
                    Some("0123456789abcdef".repeat(8192).as_bytes())
                );
            }
            // Re-encoding with our codecs and reading back loses nothing.
            for to in Codec::ALL {
                let again = decode_batch(&recompress(&batch, to).unwrap(), LIMIT).unwrap();
                assert_same_content(&d, &again);
            }
        }
    }

    #[test]
    fn decodes_python_lz4_frame_with_linked_blocks_and_checksums() {
        let frame = from_hex(PY_LZ4_LINKED_FRAME);
        let want: Vec<u8> = (0..600).flat_map(|_| 0..=255u8).collect();
        let got = compression::decompress(Codec::Lz4, &frame, LIMIT).unwrap();
        assert_eq!(&got[..], &want[..]);
        // A flipped byte in the payload trips the content checksum.
        let mut bad = frame.to_vec();
        let at = bad.len() - 10;
        bad[at] ^= 1;
        assert!(compression::decompress(Codec::Lz4, &Bytes::from(bad), LIMIT).is_err());
    }

    fn ts_batch(codec: Codec, timestamps: &[i64]) -> Bytes {
        let records: Vec<NewRecord> = timestamps
            .iter()
            .map(|t| NewRecord {
                timestamp: *t,
                key: None,
                value: Some(Bytes::from_static(b"v")),
                headers: vec![],
            })
            .collect();
        let spec = BatchSpec {
            base_offset: 100,
            codec,
            ..BatchSpec::default()
        };
        build_batch(&spec, &records).unwrap()
    }

    #[test]
    fn find_record_by_timestamp_edge_cases() {
        for codec in Codec::ALL {
            // Not monotonic: Kafka answers the first record in batch order with ts >= target.
            let b = ts_batch(codec, &[50, 10, 30, 70, 70, 20]);
            assert_eq!(
                find_record_by_timestamp(&b, i64::MIN).unwrap(),
                Some((100, 50))
            );
            assert_eq!(find_record_by_timestamp(&b, 10).unwrap(), Some((100, 50)));
            assert_eq!(find_record_by_timestamp(&b, 51).unwrap(), Some((103, 70)));
            assert_eq!(find_record_by_timestamp(&b, 70).unwrap(), Some((103, 70)));
            assert_eq!(find_record_by_timestamp(&b, 71).unwrap(), None);
            assert_eq!(find_record_by_timestamp(&b, i64::MAX).unwrap(), None);
            assert_eq!(max_timestamp_record(&b).unwrap(), Some((103, 70)));
            let single = ts_batch(codec, &[5]);
            assert_eq!(
                find_record_by_timestamp(&single, 5).unwrap(),
                Some((100, 5))
            );
            assert_eq!(find_record_by_timestamp(&single, 6).unwrap(), None);
        }
        // LogAppendTime: every record has the batch's append time.
        let spec = BatchSpec {
            base_offset: 10,
            timestamp_type: TimestampType::LogAppendTime,
            log_append_time_ms: 900,
            ..BatchSpec::default()
        };
        let b = build_batch(&spec, &sample_records()).unwrap();
        assert_eq!(find_record_by_timestamp(&b, 900).unwrap(), Some((10, 900)));
        assert_eq!(find_record_by_timestamp(&b, 901).unwrap(), None);
        assert_eq!(max_timestamp_record(&b).unwrap(), Some((10, 900)));
        // Corrupt batch: an error, never a wrong answer.
        let mut bad = ts_batch(Codec::None, &[1, 2, 3]).to_vec();
        let n = bad.len();
        bad[n - 2] ^= 0xff;
        assert_eq!(
            find_record_by_timestamp(&Bytes::from(bad), 0)
                .unwrap_err()
                .kafka_code(),
            2
        );
    }

    #[test]
    fn produce_batch_checks() {
        let good = build_batch(&idempotent_spec(Codec::None), &sample_records()).unwrap();
        validate_produce_batch(&good).unwrap();
        assert_eq!(
            validate_produce_batch(&Bytes::new())
                .unwrap_err()
                .kafka_code(),
            87
        );

        let mut two = BytesMut::from(&good[..]);
        two.put_slice(&good);
        assert_eq!(
            validate_produce_batch(&two.freeze())
                .unwrap_err()
                .kafka_code(),
            87
        );

        let mut crc = good.to_vec();
        crc[70] ^= 1;
        assert!(matches!(
            validate_produce_batch(&Bytes::from(crc)),
            Err(RecordsError::CrcMismatch { .. })
        ));

        let patch = |at: usize, bytes: &[u8]| {
            let mut b = good.to_vec();
            b[at..at + bytes.len()].copy_from_slice(bytes);
            write_crc(&mut b);
            Bytes::from(b)
        };
        // count vs last offset delta
        let e = validate_produce_batch(&patch(field::RECORDS_COUNT.start, &4i32.to_be_bytes()))
            .unwrap_err();
        assert_eq!(e.kafka_code(), 87, "{e}");
        let e = validate_produce_batch(&patch(
            field::LAST_OFFSET_DELTA.start,
            &(-1i32).to_be_bytes(),
        ))
        .unwrap_err();
        assert_eq!(e.kafka_code(), 87, "{e}");
        // control batch from a client
        let attrs = (ATTR_CONTROL | ATTR_TRANSACTIONAL).to_be_bytes();
        assert_eq!(
            validate_produce_batch(&patch(field::ATTRIBUTES.start, &attrs))
                .unwrap_err()
                .kafka_code(),
            87
        );
        // producer id with a negative sequence
        let e = validate_produce_batch(&patch(field::BASE_SEQUENCE.start, &(-1i32).to_be_bytes()))
            .unwrap_err();
        assert_eq!(e.kafka_code(), 87);
        // unknown codec
        assert_eq!(
            validate_produce_batch(&patch(field::ATTRIBUTES.start, &7i16.to_be_bytes()))
                .unwrap_err()
                .kafka_code(),
            76
        );
        // old magic
        let mut old = good.to_vec();
        old[field::MAGIC.start] = 1;
        assert!(matches!(
            validate_produce_batch(&Bytes::from(old)),
            Err(RecordsError::UnsupportedMagic(1))
        ));
        // framing
        assert_eq!(
            validate_produce_batch(&good.slice(..good.len() - 1))
                .unwrap_err()
                .kafka_code(),
            2
        );
        assert_eq!(
            validate_produce_batch(&good.slice(..30))
                .unwrap_err()
                .kafka_code(),
            2
        );
    }

    #[test]
    fn record_level_validation() {
        let now = 1_700_000_000_000;
        let opts = ValidationOptions::kafka_defaults(now);
        for codec in Codec::ALL {
            let b = build_batch(&idempotent_spec(codec), &sample_records()).unwrap();
            let s = validate_records(&b, &opts).unwrap();
            assert_eq!(s.record_count, 3);
            assert_eq!(s.max_timestamp, 1_700_000_002_000);
            assert_eq!(s.offset_delta_of_max_timestamp, 2);
            assert!(s.inner_offsets_sequential);
            assert!(s.uncompressed_bytes > 3000);

            // Compacted topic: record 1 has a null key (record 2's empty key is fine).
            let compacted = ValidationOptions {
                compacted: true,
                ..opts
            };
            let e = validate_records(&b, &compacted).unwrap_err();
            assert_eq!(e.kafka_code(), 87);
            assert_eq!(
                e.record_errors()
                    .iter()
                    .map(|r| r.batch_index)
                    .collect::<Vec<_>>(),
                vec![1]
            );

            // after.max.ms: record 2 is 2 s in the future.
            let strict = ValidationOptions {
                timestamp_after_max_ms: 1_000,
                ..opts
            };
            let e = validate_records(&b, &strict).unwrap_err();
            assert_eq!(e.kafka_code(), 32);
            assert_eq!(
                e.record_errors()
                    .iter()
                    .map(|r| r.batch_index)
                    .collect::<Vec<_>>(),
                vec![2]
            );
            // before.max.ms: record 1 is 1 s in the past.
            let strict = ValidationOptions {
                timestamp_before_max_ms: 999,
                ..opts
            };
            let e = validate_records(&b, &strict).unwrap_err();
            assert_eq!(
                e.record_errors()
                    .iter()
                    .map(|r| r.batch_index)
                    .collect::<Vec<_>>(),
                vec![1]
            );
            // Both kinds: timestamp wins, every error listed.
            let both = ValidationOptions {
                compacted: true,
                timestamp_after_max_ms: 1_000,
                ..opts
            };
            let e = validate_records(&b, &both).unwrap_err();
            assert_eq!(e.kafka_code(), 32);
            assert_eq!(e.record_errors().len(), 2);
            // LogAppendTime topics ignore record timestamps.
            let lat = ValidationOptions {
                timestamp_type: TimestampType::LogAppendTime,
                timestamp_after_max_ms: 0,
                ..opts
            };
            validate_records(&b, &lat).unwrap();
            assert!(opts.needs_record_validation(&BatchHeader::parse_exact(&b).unwrap()));
            let lax = ValidationOptions {
                timestamp_after_max_ms: i64::MAX,
                ..opts
            };
            assert!(!lax.needs_record_validation(&BatchHeader::parse_exact(&b).unwrap()));
        }
        // A producer must not send LogAppendTime batches (to a LogAppendTime topic here).
        let spec = BatchSpec {
            timestamp_type: TimestampType::LogAppendTime,
            log_append_time_ms: now,
            ..BatchSpec::default()
        };
        let b = build_batch(&spec, &sample_records()).unwrap();
        let lat = ValidationOptions {
            timestamp_type: TimestampType::LogAppendTime,
            ..opts
        };
        assert_eq!(validate_records(&b, &lat).unwrap_err().kafka_code(), 32);
        // NO_TIMESTAMP records are not range-checked.
        let b = ts_batch(Codec::None, &[-1, -1]);
        let strict = ValidationOptions {
            timestamp_before_max_ms: 0,
            timestamp_after_max_ms: 0,
            ..opts
        };
        validate_records(&b, &strict).unwrap();
    }

    #[test]
    fn options_from_topic_settings() {
        let config = crate::log::topic_config::TopicConfig::default();
        let o = ValidationOptions::for_topic(config.settings(), 42);
        assert!(!o.compacted);
        assert_eq!(o.timestamp_type, TimestampType::CreateTime);
        assert_eq!(o.now_ms, 42);
        assert_eq!(
            o.timestamp_before_max_ms,
            config.settings().timestamp_before_max_ms
        );
        let mut settings = config.settings().clone();
        settings.cleanup_compact = true;
        settings.timestamp_type = crate::log::topic_config::TimestampType::LogAppendTime;
        let o = ValidationOptions::for_topic(&settings, 42);
        assert!(o.compacted);
        assert_eq!(o.timestamp_type, TimestampType::LogAppendTime);
    }

    #[test]
    fn validate_produce_pipeline() {
        use crate::log::compression::TopicCompression as TC;
        let now = 1_700_000_000_000;
        let lax = ValidationOptions {
            timestamp_after_max_ms: i64::MAX,
            ..ValidationOptions::kafka_defaults(now)
        };
        let strict = ValidationOptions::kafka_defaults(now);
        let lz4 = build_batch(&idempotent_spec(Codec::Lz4), &sample_records()).unwrap();

        // Nothing to check or change: the producer's bytes, untouched, not decoded.
        let v = validate_produce(&lz4, TC::Producer, &lax).unwrap();
        assert_eq!(v.batch, lz4);
        assert!(!v.rewritten && !v.records_checked);

        // Kafka 4 defaults bound future timestamps: records are checked, bytes kept.
        let v = validate_produce(&lz4, TC::Codec(Codec::Lz4), &strict).unwrap();
        assert!(v.records_checked && !v.rewritten);
        assert_eq!(v.batch, lz4);

        // Topic codec differs: recompressed, content identical.
        let v = validate_produce(&lz4, TC::Codec(Codec::Zstd), &lax).unwrap();
        assert!(v.rewritten && v.records_checked);
        assert_eq!(v.info.codec().unwrap(), Codec::Zstd);
        assert_same_content(
            &decode_batch(&lz4, LIMIT).unwrap(),
            &decode_batch(&v.batch, LIMIT).unwrap(),
        );

        // A wrong header max timestamp is corrected; a timestamp error rejects the batch.
        let mut lying = lz4.to_vec();
        lying[field::MAX_TIMESTAMP].copy_from_slice(&5i64.to_be_bytes());
        write_crc(&mut lying);
        let v = validate_produce(&Bytes::from(lying), TC::Producer, &strict).unwrap();
        assert!(v.rewritten);
        assert_eq!(v.info.max_timestamp, 1_700_000_002_000);
        let future = ValidationOptions {
            timestamp_after_max_ms: 10,
            ..strict
        };
        let e = validate_produce(&lz4, TC::Producer, &future).unwrap_err();
        assert_eq!(e.kafka_code(), 32);
        let compacted = ValidationOptions {
            compacted: true,
            ..lax
        };
        let e = validate_produce(&lz4, TC::Producer, &compacted).unwrap_err();
        assert_eq!(e.kafka_code(), 87);
        assert_eq!(e.record_errors()[0].batch_index, 1);

        // Non-sequential inner offsets are renumbered, as current Kafka does.
        let mut d = decode_batch(&lz4, LIMIT).unwrap();
        for (i, r) in d.records.iter_mut().enumerate() {
            r.offset_delta = if i == 2 { 1 } else { i as i32 };
        }
        let mut info = d.info;
        info.last_offset_delta = 2;
        let odd = encode_batch(&info, &d.records, Codec::Gzip).unwrap();
        let mut odd = odd.to_vec();
        odd[field::LAST_OFFSET_DELTA].copy_from_slice(&2i32.to_be_bytes());
        write_crc(&mut odd);
        let v = validate_produce(&Bytes::from(odd), TC::Producer, &strict).unwrap();
        assert!(v.rewritten);
        assert_eq!(v.info.codec().unwrap(), Codec::Gzip);
        let offsets: Vec<i32> = decode_batch(&v.batch, LIMIT)
            .unwrap()
            .records
            .iter()
            .map(|r| r.offset_delta)
            .collect();
        assert_eq!(offsets, vec![0, 1, 2]);

        // Header-level failures come first.
        let mut two = BytesMut::from(&lz4[..]);
        two.put_slice(&lz4);
        assert_eq!(
            validate_produce(&two.freeze(), TC::Producer, &lax)
                .unwrap_err()
                .kafka_code(),
            87
        );
    }

    #[test]
    fn malformed_records_are_invalid_record() {
        let good = build_batch(&BatchSpec::default(), &sample_records()).unwrap();
        let opts = ValidationOptions::kafka_defaults(1_700_000_000_000);
        let with_payload = |payload: &[u8], count: i32| {
            let mut b = good[..BATCH_HEADER_LEN].to_vec();
            b[field::RECORDS_COUNT].copy_from_slice(&count.to_be_bytes());
            b.extend_from_slice(payload);
            let len = (b.len() - LOG_OVERHEAD) as i32;
            b[field::LENGTH].copy_from_slice(&len.to_be_bytes());
            write_crc(&mut b);
            Bytes::from(b)
        };
        let payload = &good[BATCH_HEADER_LEN..];
        // Fewer records than declared, more than declared, trailing bytes.
        for (p, count) in [
            (payload, 4),
            (payload, 2),
            (&[payload, &[0u8][..]].concat()[..], 3),
        ] {
            let e = validate_records(&with_payload(p, count), &opts).unwrap_err();
            assert_eq!(e.kafka_code(), 87, "{e}");
        }
        // A record whose length field lies.
        let mut lying = payload.to_vec();
        lying[0] = 0x02; // length 1
        assert_eq!(
            validate_records(&with_payload(&lying, 3), &opts)
                .unwrap_err()
                .kafka_code(),
            87
        );
        // Overlong varint.
        let e = validate_records(&with_payload(&[0xff; 12], 1), &opts).unwrap_err();
        assert_eq!(e.kafka_code(), 87);
        // Huge declared count with a tiny payload: no giant allocation, just an error.
        assert!(validate_records(&with_payload(payload, i32::MAX), &opts).is_err());
    }

    #[test]
    fn random_corruption_never_panics() {
        let base = build_batch(&idempotent_spec(Codec::None), &sample_records()).unwrap();
        let mut seed = 0x1234_5678_9abc_def0u64;
        let opts = ValidationOptions::kafka_defaults(0);
        for _ in 0..3000 {
            let mut b = base.to_vec();
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = BATCH_HEADER_LEN + (seed as usize) % (b.len() - BATCH_HEADER_LEN);
                b[at] = (seed >> 32) as u8;
            }
            write_crc(&mut b); // make the parser, not the CRC, see the damage
            let b = Bytes::from(b);
            let _ = assert_same_as_reference(&b, &opts);
            let _ = recompress(&b, Codec::Zstd);
            let _ = find_record_by_timestamp(&b, 0);
        }
    }

    #[test]
    fn header_updates() {
        let mut b = build_batch(&idempotent_spec(Codec::Lz4), &sample_records())
            .unwrap()
            .to_vec();
        set_partition_leader_epoch(&mut b, 42).unwrap();
        verify_crc(&b).unwrap();
        set_max_timestamp(&mut b, TimestampType::LogAppendTime, 123).unwrap();
        verify_crc(&b).unwrap();
        let d = decode_batch(&Bytes::from(b.clone()), LIMIT).unwrap();
        assert_eq!(d.info.partition_leader_epoch, 42);
        assert_eq!(d.info.timestamp_type(), TimestampType::LogAppendTime);
        assert!(d.iter().all(|(_, t, _)| t == 123));
        set_max_timestamp(&mut b, TimestampType::CreateTime, 1_700_000_002_000).unwrap();
        let d = decode_batch(&Bytes::from(b), LIMIT).unwrap();
        assert_eq!(d.info.timestamp_type(), TimestampType::CreateTime);
        assert_eq!(d.info.max_timestamp, 1_700_000_002_000);
    }

    #[test]
    fn varint_lengths_match_encoding() {
        for v in [0, 1, -1, 63, -64, 64, -65, 8191, 8192, i32::MAX, i32::MIN] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let bytes = Bytes::from(out);
            assert_eq!(Cursor::new(&bytes).varint().unwrap(), v);
        }
        for v in [0i64, -1, 1 << 40, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            put_varlong(&mut out, v);
            assert_eq!(out.len(), varlong_len(v), "{v}");
            let bytes = Bytes::from(out);
            assert_eq!(Cursor::new(&bytes).varlong().unwrap(), v);
        }
    }

    /// Asserts that the in-place walk ([`validate_records`]) answers exactly what the decoding
    /// validator answered: the same summary, or the same error variant, fields, message and
    /// `record_errors`. Returns the answer.
    fn assert_same_as_reference(
        batch: &Bytes,
        opts: &ValidationOptions,
    ) -> Result<ValidationSummary, RecordsError> {
        let want = reference_validate_records(batch, opts);
        let got = validate_records(batch, opts);
        // Debug shows the variant and every field (record_errors included).
        assert_eq!(format!("{got:?}"), format!("{want:?}"), "batch {batch:?}");
        if let (Err(g), Err(w)) = (&got, &want) {
            assert_eq!(g.to_string(), w.to_string());
            assert_eq!(g.kafka_code(), w.kafka_code());
            assert_eq!(g.record_errors(), w.record_errors());
        }
        got
    }

    /// A batch around hand-encoded record bytes (`count` declared records), valid CRC.
    fn raw_batch(payload: &[u8], count: i32, codec: Codec) -> Bytes {
        let mut b = build_batch(&BatchSpec::default(), &sample_records()).unwrap()
            [..BATCH_HEADER_LEN]
            .to_vec();
        b[field::RECORDS_COUNT].copy_from_slice(&count.to_be_bytes());
        b[field::ATTRIBUTES].copy_from_slice(&codec.id().to_be_bytes());
        b.extend_from_slice(&compression::compress(codec, payload).unwrap());
        let len = (b.len() - LOG_OVERHEAD) as i32;
        b[field::LENGTH].copy_from_slice(&len.to_be_bytes());
        write_crc(&mut b);
        Bytes::from(b)
    }

    /// `fields` prefixed with their varint length: one encoded record.
    fn raw_record(fields: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, fields.len() as i32);
        out.extend_from_slice(fields);
        out
    }

    fn varint(v: i32) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        out
    }

    #[test]
    fn walk_reports_each_malformation_like_the_decoder() {
        let now = 1_700_000_000_000;
        let opts = ValidationOptions::kafka_defaults(now);
        // attributes 0, timestamp delta 0, offset delta 0
        let prefix = [0u8, 0, 0];
        let ok_record =
            raw_record(&[&prefix[..], &varint(1), b"k", &varint(-1), &varint(0)].concat());
        let cases: Vec<(Vec<u8>, i32, &str)> = vec![
            (varint(-2), 1, "malformed record: negative record length"),
            (
                [&varint(100)[..], &[0u8; 4]].concat(),
                1,
                "malformed record: record length runs past the batch",
            ),
            (raw_record(&[]), 1, "malformed record: truncated"),
            (
                raw_record(&[&[0u8][..], &[0xff; 11]].concat()),
                1,
                "malformed record: varlong longer than 10 bytes",
            ),
            (
                raw_record(&[&[0u8, 0][..], &[0xff; 6]].concat()),
                1,
                "malformed record: varint longer than 5 bytes",
            ),
            // Continuation bits up to the record's end: truncated, not overlong.
            (
                raw_record(&[&[0u8][..], &[0xff; 9]].concat()),
                1,
                "malformed record: truncated",
            ),
            (
                raw_record(&[&[0u8, 0][..], &[0xff; 4]].concat()),
                1,
                "malformed record: truncated",
            ),
            (
                raw_record(&[&prefix[..], &varint(-2), &varint(-1), &varint(0)].concat()),
                1,
                "malformed record: negative key length -2",
            ),
            (
                raw_record(&[&prefix[..], &varint(9), b"k", &varint(-1), &varint(0)].concat()),
                1,
                "malformed record: field runs past the record",
            ),
            (
                raw_record(&[&prefix[..], &varint(-1), &varint(-7), &varint(0)].concat()),
                1,
                "malformed record: negative value length -7",
            ),
            (
                raw_record(&[&prefix[..], &varint(-1), &varint(-1), &varint(-1)].concat()),
                1,
                "malformed record: negative header count",
            ),
            (
                raw_record(
                    &[
                        &prefix[..],
                        &varint(-1),
                        &varint(-1),
                        &varint(1),
                        &varint(-1),
                    ]
                    .concat(),
                ),
                1,
                "malformed record: negative header key length",
            ),
            (
                raw_record(
                    &[
                        &prefix[..],
                        &varint(-1),
                        &varint(-1),
                        &varint(1),
                        &varint(3),
                        b"ab",
                    ]
                    .concat(),
                ),
                1,
                "malformed record: field runs past the record",
            ),
            (
                raw_record(
                    &[
                        &prefix[..],
                        &varint(-1),
                        &varint(-1),
                        &varint(1),
                        &varint(1),
                        b"a",
                        &varint(-3),
                    ]
                    .concat(),
                ),
                1,
                "malformed record: negative header value length -3",
            ),
            // A header count the record cannot hold runs out of bytes.
            (
                raw_record(&[&prefix[..], &varint(-1), &varint(-1), &varint(i32::MAX)].concat()),
                1,
                "malformed record: truncated",
            ),
            (
                raw_record(
                    &[
                        &prefix[..],
                        &varint(-1),
                        &varint(-1),
                        &varint(0),
                        &[7u8, 7][..],
                    ]
                    .concat(),
                ),
                1,
                "malformed record: record size 8 but fields used 6",
            ),
            // The second record is the bad one: it is the one listed.
            (
                [&ok_record[..], &varint(-2)].concat(),
                2,
                "malformed record: negative record length",
            ),
            (
                [&ok_record[..], &[1u8, 2][..]].concat(),
                1,
                "invalid record: 2 bytes left after the 1 records the batch declares",
            ),
            (ok_record.clone(), 2, "malformed record: truncated"),
            (
                ok_record.clone(),
                -1,
                "invalid record: negative record count -1",
            ),
        ];
        for codec in Codec::ALL {
            for (payload, count, want) in &cases {
                let b = raw_batch(payload, *count, codec);
                let e = assert_same_as_reference(&b, &opts).unwrap_err();
                assert!(e.to_string().contains(want), "{codec:?}: {e} (want {want})");
                assert_eq!(e.kafka_code(), 87);
                if want.starts_with("malformed") {
                    // The two-record cases start with a good record: the second is bad.
                    let index = if *count == 2 { 1 } else { 0 };
                    assert_eq!(e.record_errors().len(), 1, "{want}");
                    assert_eq!(e.record_errors()[0].batch_index, index, "{want}");
                } else {
                    assert!(e.record_errors().is_empty());
                }
            }
            // And the well-formed one passes with its summary.
            let s = assert_same_as_reference(&raw_batch(&ok_record, 1, codec), &opts).unwrap();
            assert_eq!((s.record_count, s.offset_delta_of_max_timestamp), (1, 0));
            assert_eq!(s.uncompressed_bytes, ok_record.len());
        }
    }

    #[test]
    fn walk_matches_reference_on_rejections_and_summaries() {
        let now = 1_700_000_000_000;
        let base = ValidationOptions::kafka_defaults(now);
        let variants = [
            base,
            ValidationOptions {
                compacted: true,
                ..base
            },
            ValidationOptions {
                timestamp_after_max_ms: 1_000,
                ..base
            },
            ValidationOptions {
                timestamp_before_max_ms: 999,
                compacted: true,
                ..base
            },
            ValidationOptions {
                timestamp_type: TimestampType::LogAppendTime,
                ..base
            },
            ValidationOptions {
                max_decompressed_bytes: 100,
                ..base
            },
        ];
        for codec in Codec::ALL {
            for lat in [false, true] {
                let spec = BatchSpec {
                    base_offset: 1 << 40,
                    timestamp_type: if lat {
                        TimestampType::LogAppendTime
                    } else {
                        TimestampType::CreateTime
                    },
                    log_append_time_ms: now + 5,
                    ..idempotent_spec(codec)
                };
                let b = build_batch(&spec, &sample_records()).unwrap();
                for opts in &variants {
                    let _ = assert_same_as_reference(&b, opts);
                }
            }
            // Non-sequential inner offsets and a NO_TIMESTAMP record.
            let mut d = decode_batch(&ts_batch(codec, &[5, -1, 9, 9]), LIMIT).unwrap();
            for (r, delta) in d.records.iter_mut().zip([0, 3, 1, 2]) {
                r.offset_delta = delta;
            }
            let odd = encode_batch(&d.info, &d.records, codec).unwrap();
            let s = assert_same_as_reference(&odd, &base).unwrap();
            assert!(!s.inner_offsets_sequential);
            assert_eq!((s.max_timestamp, s.offset_delta_of_max_timestamp), (9, 2));
        }
        // Many small records (a 1 MiB batch of 100-byte values): the loop runs to the end.
        let records: Vec<NewRecord> = (0..10_000)
            .map(|i| NewRecord {
                timestamp: now - 10_000 + i,
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(vec![b'v'; 100])),
                headers: vec![],
            })
            .collect();
        for codec in [Codec::None, Codec::Zstd] {
            let b = build_batch(&idempotent_spec(codec), &records).unwrap();
            let s = assert_same_as_reference(&b, &base).unwrap();
            assert_eq!(s.record_count, 10_000);
            assert_eq!(
                (s.max_timestamp, s.offset_delta_of_max_timestamp),
                (now - 1, 9_999)
            );
            let strict = ValidationOptions {
                timestamp_before_max_ms: 5_000,
                ..base
            };
            let e = assert_same_as_reference(&b, &strict).unwrap_err();
            assert_eq!(e.record_errors().len(), 5_000);
        }
    }

    /// Property test: generated batches — valid, rejected and damaged — get the same answer
    /// from the in-place walk and from the decoding validator it replaced.
    mod walk_equivalence {
        use super::*;
        use proptest::prelude::*;
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;

        #[derive(Debug, Clone)]
        struct GenRecord {
            /// 0: at `now - before`, 1: at `now + after`, 2: near now, 3: raw, 4: NO_TIMESTAMP.
            ts_kind: u8,
            ts_jitter: i64,
            ts_raw: i64,
            key: Option<Vec<u8>>,
            value: Option<Vec<u8>>,
            headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        }

        /// Damage done to the batch, before compression (`Plain*`, `Count`) or after.
        #[derive(Debug, Clone)]
        enum Damage {
            PlainFlip(usize, u8),
            PlainTruncate(usize),
            PlainAppend(Vec<u8>),
            Count(i32),
            PackedFlip(usize, u8),
            HeaderFlip(usize, u8),
            PackedTruncate(usize),
        }

        #[derive(Debug, Clone)]
        struct GenCase {
            records: Vec<GenRecord>,
            codec: Codec,
            batch_lat: bool,
            log_append_time_ms: i64,
            base_offset: i64,
            offset_deltas: Option<Vec<i32>>,
            compacted: bool,
            topic_lat: bool,
            now_ms: i64,
            before_ms: i64,
            after_ms: i64,
            limit_bytes: usize,
            damage: Vec<Damage>,
            bad_crc: bool,
        }

        fn small_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
            proptest::collection::vec(any::<u8>(), 0..max)
        }

        fn gen_record() -> impl Strategy<Value = GenRecord> {
            (
                0u8..5,
                -2i64..=2,
                any::<i64>(),
                proptest::option::weighted(0.8, small_bytes(12)),
                proptest::option::weighted(0.9, small_bytes(160)),
                proptest::collection::vec(
                    (small_bytes(6), proptest::option::of(small_bytes(6))),
                    0..3,
                ),
            )
                .prop_map(|(ts_kind, ts_jitter, ts_raw, key, value, headers)| {
                    GenRecord {
                        ts_kind,
                        ts_jitter,
                        ts_raw,
                        key,
                        value,
                        headers,
                    }
                })
        }

        fn window() -> impl Strategy<Value = i64> {
            prop_oneof![
                3 => Just(i64::MAX),
                1 => Just(0i64),
                2 => Just(3_600_000i64),
                2 => 0i64..10_000,
                1 => any::<i64>(),
            ]
        }

        fn damage() -> impl Strategy<Value = Damage> {
            prop_oneof![
                (any::<usize>(), 1u8..=255).prop_map(|(at, x)| Damage::PlainFlip(at, x)),
                any::<usize>().prop_map(Damage::PlainTruncate),
                small_bytes(8).prop_map(Damage::PlainAppend),
                prop_oneof![-2i32..=2, any::<i32>()].prop_map(Damage::Count),
                (any::<usize>(), 1u8..=255).prop_map(|(at, x)| Damage::PackedFlip(at, x)),
                (0usize..BATCH_HEADER_LEN, 1u8..=255).prop_map(|(at, x)| Damage::HeaderFlip(at, x)),
                any::<usize>().prop_map(Damage::PackedTruncate),
            ]
        }

        fn gen_case() -> impl Strategy<Value = GenCase> {
            (
                (
                    proptest::collection::vec(gen_record(), 1..12),
                    proptest::sample::select(Codec::ALL.to_vec()),
                    proptest::bool::weighted(0.15),
                    any::<i64>(),
                    // Near i64::MAX: absolute offsets saturate (Kafka's error message).
                    prop_oneof![Just(0i64), Just(i64::MAX - 2), any::<i64>()],
                    proptest::option::weighted(
                        0.15,
                        proptest::collection::vec(prop_oneof![0i32..12, any::<i32>()], 12),
                    ),
                ),
                (
                    proptest::bool::weighted(0.3),
                    proptest::bool::weighted(0.15),
                    prop_oneof![Just(1_700_000_000_000i64), any::<i64>()],
                    window(),
                    window(),
                    prop_oneof![4 => Just(LIMIT), 1 => 0usize..4096],
                    // Mostly undamaged: the accept/reject logic needs parseable batches.
                    prop_oneof![
                        2 => Just(Vec::new()),
                        3 => proptest::collection::vec(damage(), 1..4),
                    ],
                    proptest::bool::weighted(0.05),
                ),
            )
                .prop_map(
                    |(
                        (records, codec, batch_lat, log_append_time_ms, base_offset, offset_deltas),
                        (
                            compacted,
                            topic_lat,
                            now_ms,
                            before_ms,
                            after_ms,
                            limit_bytes,
                            damage,
                            bad_crc,
                        ),
                    )| GenCase {
                        records,
                        codec,
                        batch_lat,
                        log_append_time_ms,
                        base_offset,
                        offset_deltas,
                        compacted,
                        topic_lat,
                        now_ms,
                        before_ms,
                        after_ms,
                        limit_bytes,
                        damage,
                        bad_crc,
                    },
                )
        }

        fn to_bytes(v: &Option<Vec<u8>>) -> Option<Bytes> {
            v.as_ref().map(|b| Bytes::copy_from_slice(b))
        }

        fn materialise(c: &GenCase) -> (Bytes, ValidationOptions) {
            let ts_type = |lat: bool| {
                if lat {
                    TimestampType::LogAppendTime
                } else {
                    TimestampType::CreateTime
                }
            };
            let opts = ValidationOptions {
                compacted: c.compacted,
                timestamp_type: ts_type(c.topic_lat),
                now_ms: c.now_ms,
                timestamp_before_max_ms: c.before_ms,
                timestamp_after_max_ms: c.after_ms,
                max_decompressed_bytes: c.limit_bytes,
            };
            let records: Vec<NewRecord> = c
                .records
                .iter()
                .map(|r| NewRecord {
                    timestamp: match r.ts_kind {
                        0 => c
                            .now_ms
                            .saturating_sub(c.before_ms)
                            .saturating_add(r.ts_jitter),
                        1 => c
                            .now_ms
                            .saturating_add(c.after_ms)
                            .saturating_add(r.ts_jitter),
                        2 => c.now_ms.saturating_add(r.ts_jitter),
                        3 => r.ts_raw,
                        _ => NO_TIMESTAMP,
                    },
                    key: to_bytes(&r.key),
                    value: to_bytes(&r.value),
                    headers: r
                        .headers
                        .iter()
                        .map(|(k, v)| Header {
                            key: Bytes::copy_from_slice(k),
                            value: to_bytes(v),
                        })
                        .collect(),
                })
                .collect();
            let spec = BatchSpec {
                base_offset: c.base_offset,
                timestamp_type: ts_type(c.batch_lat),
                log_append_time_ms: c.log_append_time_ms,
                ..BatchSpec::default()
            };
            let mut plain = build_batch(&spec, &records).unwrap();
            if let Some(deltas) = &c.offset_deltas {
                let mut d = decode_batch(&plain, LIMIT).unwrap();
                for (r, delta) in d.records.iter_mut().zip(deltas) {
                    r.offset_delta = *delta;
                }
                plain = encode_batch(&d.info, &d.records, Codec::None).unwrap();
            }
            let mut header = plain[..BATCH_HEADER_LEN].to_vec();
            let mut payload = plain[BATCH_HEADER_LEN..].to_vec();
            for d in &c.damage {
                match d {
                    Damage::PlainFlip(at, x) if !payload.is_empty() => {
                        let at = at % payload.len();
                        payload[at] ^= x;
                    }
                    Damage::PlainTruncate(n) => {
                        payload.truncate(payload.len() - n % (payload.len() + 1));
                    }
                    Damage::PlainAppend(extra) => payload.extend_from_slice(extra),
                    Damage::Count(delta) => {
                        let count =
                            i32::from_be_bytes(header[field::RECORDS_COUNT].try_into().unwrap())
                                .wrapping_add(*delta);
                        header[field::RECORDS_COUNT].copy_from_slice(&count.to_be_bytes());
                    }
                    _ => {}
                }
            }
            let attributes = (i16::from_be_bytes(header[field::ATTRIBUTES].try_into().unwrap())
                & !ATTR_COMPRESSION_MASK)
                | c.codec.id();
            header[field::ATTRIBUTES].copy_from_slice(&attributes.to_be_bytes());
            let mut batch = header;
            batch.extend_from_slice(&compression::compress(c.codec, &payload).unwrap());
            for d in &c.damage {
                if let Damage::PackedTruncate(n) = d {
                    let spare = batch.len() - BATCH_HEADER_LEN;
                    batch.truncate(batch.len() - n % (spare + 1));
                }
            }
            let len = (batch.len() - LOG_OVERHEAD) as i32;
            batch[field::LENGTH].copy_from_slice(&len.to_be_bytes());
            for d in &c.damage {
                match d {
                    Damage::PackedFlip(at, x) if batch.len() > BATCH_HEADER_LEN => {
                        let at = BATCH_HEADER_LEN + at % (batch.len() - BATCH_HEADER_LEN);
                        batch[at] ^= x;
                    }
                    Damage::HeaderFlip(at, x) => batch[*at] ^= x,
                    _ => {}
                }
            }
            if !c.bad_crc {
                write_crc(&mut batch);
            }
            (Bytes::from(batch), opts)
        }

        /// Which kind of answer a case got, to check the generator reaches each of them.
        fn outcome(r: &Result<ValidationSummary, RecordsError>) -> &'static str {
            match r {
                Ok(s) if s.inner_offsets_sequential => "ok",
                Ok(_) => "ok, offsets renumbered",
                Err(RecordsError::InvalidTimestamp { record_errors, .. })
                    if record_errors
                        .iter()
                        .any(|e| e.message.contains("LogAppendTime")) =>
                {
                    "producer-set LogAppendTime"
                }
                Err(RecordsError::InvalidTimestamp { .. }) => "timestamp out of range",
                Err(RecordsError::InvalidRecord { message, .. })
                    if message.contains("record errors in total") =>
                {
                    "null key on compacted topic"
                }
                Err(RecordsError::InvalidRecord { message, .. })
                    if message.contains("malformed record") =>
                {
                    "malformed record"
                }
                Err(RecordsError::InvalidRecord { message, .. })
                    if message.contains("bytes left after") =>
                {
                    "trailing bytes"
                }
                Err(RecordsError::InvalidRecord { .. }) => "other invalid record",
                Err(RecordsError::Compression(CompressionError::TooLarge { .. })) => "too large",
                Err(RecordsError::Compression(_)) => "compression error",
                Err(RecordsError::CrcMismatch { .. }) => "crc",
                Err(RecordsError::Corrupt(_) | RecordsError::UnsupportedMagic(_)) => "header",
            }
        }

        proptest! {
            // The walk's varint fast paths against the decoder's byte-at-a-time loop.
            #[test]
            fn walk_varints_match_cursor(bytes in proptest::collection::vec(prop_oneof![any::<u8>(), 0x80u8..=0xff], 0..13)) {
                let b = Bytes::from(bytes.clone());
                let mut cursor = Cursor::new(&b);
                let mut walk = Walk { rest: &bytes };
                let want = cursor.varint();
                let got = walk.varint();
                prop_assert_eq!(format!("{got:?}"), format!("{want:?}"));
                if want.is_ok() {
                    prop_assert_eq!(walk.rest.len(), b.len() - cursor.pos);
                }
                let mut cursor = Cursor::new(&b);
                let mut walk = Walk { rest: &bytes };
                let want = cursor.varlong();
                let got = walk.varlong();
                prop_assert_eq!(format!("{got:?}"), format!("{want:?}"));
                if want.is_ok() {
                    prop_assert_eq!(walk.rest.len(), b.len() - cursor.pos);
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 1000, .. ProptestConfig::default() })]
            #[test]
            fn walk_matches_decoding_validator(c in gen_case()) {
                let (batch, opts) = materialise(&c);
                let want = reference_validate_records(&batch, &opts);
                let got = validate_records(&batch, &opts);
                prop_assert_eq!(format!("{got:?}"), format!("{want:?}"));
                if let (Err(g), Err(w)) = (&got, &want) {
                    prop_assert_eq!(g.to_string(), w.to_string());
                    prop_assert_eq!(g.kafka_code(), w.kafka_code());
                }
            }
        }

        /// A fixed-seed run of the same generator: every kind of answer must occur, so the
        /// property above is not only ever comparing one kind of error.
        #[test]
        fn generator_reaches_every_outcome() {
            let mut runner = TestRunner::deterministic();
            let strategy = gen_case();
            let mut seen = std::collections::BTreeMap::<&str, usize>::new();
            let mut codecs = std::collections::BTreeSet::new();
            for _ in 0..3000 {
                let c = strategy.new_tree(&mut runner).unwrap().current();
                let (batch, opts) = materialise(&c);
                let got = assert_same_as_reference(&batch, &opts);
                *seen.entry(outcome(&got)).or_default() += 1;
                if got.is_ok() {
                    codecs.insert(c.codec.id());
                }
            }
            for kind in [
                "ok",
                "ok, offsets renumbered",
                "producer-set LogAppendTime",
                "timestamp out of range",
                "null key on compacted topic",
                "malformed record",
                "trailing bytes",
                "too large",
                "compression error",
                "crc",
                "header",
            ] {
                assert!(
                    seen.get(kind).copied().unwrap_or(0) > 0,
                    "{kind} never generated: {seen:?}"
                );
            }
            assert_eq!(
                codecs.len(),
                Codec::ALL.len(),
                "every codec accepted at least once"
            );
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn opt_bytes() -> impl Strategy<Value = Option<Bytes>> {
            proptest::option::of(
                proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from),
            )
        }

        fn record() -> impl Strategy<Value = NewRecord> {
            (
                any::<i64>(),
                opt_bytes(),
                opt_bytes(),
                proptest::collection::vec(
                    (proptest::collection::vec(any::<u8>(), 0..8), opt_bytes()),
                    0..4,
                ),
            )
                .prop_map(|(timestamp, key, value, headers)| NewRecord {
                    timestamp: timestamp >> 2, // keep deltas within i64
                    key,
                    value,
                    headers: headers
                        .into_iter()
                        .map(|(k, v)| Header {
                            key: Bytes::from(k),
                            value: v,
                        })
                        .collect(),
                })
        }

        fn codec() -> impl Strategy<Value = Codec> {
            proptest::sample::select(Codec::ALL.to_vec())
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]
            #[test]
            fn build_recompress_decode(records in proptest::collection::vec(record(), 1..20), from in codec(), to in codec(), pid in -1i64..3, seq in 0i32..i32::MAX, base_offset in prop_oneof![Just(5i64), any::<i64>()], now in any::<i64>(), window in any::<i64>()) {
                let spec = BatchSpec { base_offset, codec: from, producer_id: pid, producer_epoch: 0, base_sequence: if pid < 0 { -1 } else { seq }, ..BatchSpec::default() };
                let batch = build_batch(&spec, &records).unwrap();
                validate_produce_batch(&batch).unwrap();
                let a = decode_batch(&batch, LIMIT).unwrap();
                for ((offset, ts, r), want) in a.iter().zip(&records) {
                    prop_assert_eq!(ts, want.timestamp);
                    prop_assert_eq!(&r.key, &want.key);
                    prop_assert_eq!(&r.value, &want.value);
                    prop_assert_eq!(&r.headers, &want.headers);
                    prop_assert!(offset >= base_offset);
                }
                let opts = ValidationOptions { timestamp_before_max_ms: window, timestamp_after_max_ms: window, ..ValidationOptions::kafka_defaults(now) };
                match validate_records(&batch, &opts) {
                    Ok(summary) => prop_assert_eq!(summary.record_count as usize, records.len()),
                    Err(e) => prop_assert_eq!(e.kafka_code(), 32),
                }
                prop_assert!(max_timestamp_record(&batch).unwrap().is_some());
                let b = decode_batch(&recompress(&batch, to).unwrap(), LIMIT).unwrap();
                prop_assert_eq!(b.info.codec().unwrap(), to);
                prop_assert_eq!(&a.records, &b.records);
                prop_assert_eq!(a.info.max_timestamp, b.info.max_timestamp);
            }

            #[test]
            fn arbitrary_payloads_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..300), count in -2i32..12, codec_bits in 0i16..8, lat in any::<bool>(), base_offset in any::<i64>(), base_ts in any::<i64>(), max_ts in any::<i64>()) {
                let mut b = vec![0u8; BATCH_HEADER_LEN];
                b[..8].copy_from_slice(&base_offset.to_be_bytes());
                b[field::BASE_TIMESTAMP].copy_from_slice(&base_ts.to_be_bytes());
                b[field::MAX_TIMESTAMP].copy_from_slice(&max_ts.to_be_bytes());
                b[field::MAGIC.start] = MAGIC_V2 as u8;
                let attributes = codec_bits | if lat { ATTR_LOG_APPEND_TIME } else { 0 };
                b[field::ATTRIBUTES].copy_from_slice(&attributes.to_be_bytes());
                b[field::RECORDS_COUNT].copy_from_slice(&count.to_be_bytes());
                b.extend_from_slice(&payload);
                let len = (b.len() - LOG_OVERHEAD) as i32;
                b[field::LENGTH].copy_from_slice(&len.to_be_bytes());
                write_crc(&mut b);
                let b = Bytes::from(b);
                let opts = ValidationOptions { compacted: true, ..ValidationOptions::kafka_defaults(0) };
                let _ = validate_produce_batch(&b);
                if let Ok(d) = decode_batch(&b, 1 << 16) {
                    // Whatever decodes must re-encode and decode to the same records.
                    let again = decode_batch(&encode_batch(&d.info, &d.records, Codec::None).unwrap(), 1 << 16).unwrap();
                    prop_assert_eq!(d.records, again.records);
                }
                let _ = assert_same_as_reference(&b, &opts);
                let lax = ValidationOptions { compacted: false, timestamp_after_max_ms: 0, ..opts };
                let _ = assert_same_as_reference(&b, &lax);
                let _ = recompress_with_limit(&b, Codec::Gzip, 1 << 16);
                let _ = find_record_by_timestamp(&b, 0);
                let _ = max_timestamp_record(&b);
            }
        }
    }
}
