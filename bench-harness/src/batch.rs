//! Kafka v2 record batches: a small, allocation-light encoder for the produce path and a
//! record iterator for the consume path.
//!
//! Why not `kafka_protocol::records`: its encoder takes one `Record` struct per record (with an
//! `IndexMap` of headers) and its decoder allocates one per record. The load generator must stay
//! well ahead of the broker it measures on a 2-core machine, so the hot path writes the wire
//! format directly. Both directions are unit-tested against `kafka_protocol`'s codec, which is the
//! independent reference.
//!
//! The fixed batch header (layout, attribute bits, parsing, CRC) is `storage::batch`'s, the one
//! definition the broker uses too; this module adds the record section and the framing of a
//! Fetch response (partial trailing batches, a size limit).

use anyhow::{anyhow, bail, ensure, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use std::io::{Read, Write};
use storage::batch::{self as v2, field, BATCH_HEADER_LEN, LOG_OVERHEAD};
/// Largest batch the decoder accepts: a guard against garbage lengths.
pub const BATCH_BYTES_MAX: usize = 256 << 20;

/// Compression codecs of the Kafka record batch attributes (bits 0..2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    pub fn attribute_bits(self) -> i16 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Snappy => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }

    pub fn from_attribute_bits(bits: i16) -> Result<Codec> {
        Ok(match bits & v2::ATTR_COMPRESSION_MASK {
            0 => Codec::None,
            1 => Codec::Gzip,
            2 => Codec::Snappy,
            3 => Codec::Lz4,
            4 => Codec::Zstd,
            other => bail!("unknown compression codec {other}"),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

impl std::str::FromStr for Codec {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Codec> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "none" | "uncompressed" | "" => Codec::None,
            "gzip" => Codec::Gzip,
            "snappy" => Codec::Snappy,
            "lz4" => Codec::Lz4,
            "zstd" => Codec::Zstd,
            other => bail!("unknown compression codec {other:?} (none|gzip|snappy|lz4|zstd)"),
        })
    }
}

/// Producer identity stamped into a batch (idempotence); `NONE` for plain producers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerStamp {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl ProducerStamp {
    pub const NONE: ProducerStamp = ProducerStamp {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    };
}

/// Accumulates records for one partition and seals them into one v2 batch.
///
/// The records are written straight into the buffer that becomes the batch: the first
/// [`BATCH_HEADER_LEN`] are reserved for the header, filled in by [`BatchBuilder::seal`], so an
/// uncompressed batch is sealed without copying its records (the CRC32C pass reads them once
/// while they are still in cache).
#[derive(Debug)]
pub struct BatchBuilder {
    /// Header placeholder followed by the uncompressed record section.
    buf: BytesMut,
    /// Allocation size of a fresh buffer.
    capacity_bytes: usize,
    count: i32,
    base_timestamp_ms: i64,
    max_timestamp_ms: i64,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new(16 << 10)
    }
}

impl BatchBuilder {
    pub fn new(capacity_bytes: usize) -> Self {
        let capacity_bytes = capacity_bytes.max(BATCH_HEADER_LEN + 64);
        let mut b = Self {
            buf: BytesMut::new(),
            capacity_bytes,
            count: 0,
            base_timestamp_ms: 0,
            max_timestamp_ms: 0,
        };
        b.reset_buffer();
        b
    }

    /// Starts an empty batch: a buffer with room for `capacity_bytes` and the header
    /// placeholder.
    fn reset_buffer(&mut self) {
        if self.buf.capacity() < self.capacity_bytes / 2 {
            self.buf = BytesMut::with_capacity(self.capacity_bytes);
        }
        self.buf.clear();
        self.buf.put_bytes(0, BATCH_HEADER_LEN);
        debug_assert_eq!(self.buf.len(), BATCH_HEADER_LEN);
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn record_count(&self) -> i32 {
        self.count
    }

    /// Bytes of the uncompressed batch if sealed now.
    pub fn size_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Appends one record (no headers). Offsets are deltas from the batch start.
    pub fn append(&mut self, timestamp_ms: i64, key: Option<&[u8]>, value: &[u8]) {
        self.append_with(timestamp_ms, key, value.len(), |out| out.put_slice(value));
    }

    /// Appends one record whose `value_len` value bytes are written by `write_value` straight
    /// into the batch (no intermediate copy); returns the value as written.
    ///
    /// Panics if `write_value` does not append exactly `value_len` bytes: that would corrupt
    /// the batch, and it is a bug in the caller, never a property of the data.
    pub fn append_with<F: FnOnce(&mut BytesMut)>(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value_len: usize,
        write_value: F,
    ) -> &[u8] {
        if self.count == 0 {
            self.base_timestamp_ms = timestamp_ms;
            self.max_timestamp_ms = timestamp_ms;
        }
        self.max_timestamp_ms = self.max_timestamp_ms.max(timestamp_ms);
        let ts_delta = timestamp_ms - self.base_timestamp_ms;
        let offset_delta = self.count as i64;
        let key_len = key.map_or(-1, |k| k.len() as i64);
        let body_len = 1
            + varint_len(ts_delta)
            + varint_len(offset_delta)
            + varint_len(key_len)
            + key.map_or(0, |k| k.len())
            + varint_len(value_len as i64)
            + value_len
            + varint_len(0);
        self.buf.reserve(body_len + varint_len(body_len as i64));
        put_varint(&mut self.buf, body_len as i64);
        self.buf.put_i8(0); // record attributes: unused
        put_varint(&mut self.buf, ts_delta);
        put_varint(&mut self.buf, offset_delta);
        put_varint(&mut self.buf, key_len);
        if let Some(k) = key {
            self.buf.put_slice(k);
        }
        put_varint(&mut self.buf, value_len as i64);
        let value_start = self.buf.len();
        write_value(&mut self.buf);
        let value_end = self.buf.len();
        assert_eq!(
            value_end - value_start,
            value_len,
            "record value writer wrote the wrong length"
        );
        self.buf.put_u8(0); // header count: varint 0
        self.count += 1;
        &self.buf[value_start..value_end]
    }

    /// Seals the batch: compresses the record section if asked, writes the header and CRC32C,
    /// and resets the builder for reuse. An uncompressed batch is handed out without a copy.
    pub fn seal(&mut self, codec: Codec, stamp: ProducerStamp) -> Result<Bytes> {
        ensure!(self.count > 0, "sealing an empty batch");
        let out = match codec {
            Codec::None => {
                let mut out = self.buf.split();
                self.write_header(&mut out, codec, stamp);
                out
            }
            _ => {
                let body = compress(codec, &self.buf[BATCH_HEADER_LEN..])?;
                let mut out = BytesMut::with_capacity(BATCH_HEADER_LEN + body.len());
                out.put_bytes(0, BATCH_HEADER_LEN);
                out.put_slice(&body);
                self.write_header(&mut out, codec, stamp);
                out
            }
        };
        self.count = 0;
        self.reset_buffer();
        Ok(out.freeze())
    }

    /// Fills the header placeholder of `batch` (header + record section) and its CRC32C.
    fn write_header(&self, batch: &mut BytesMut, codec: Codec, stamp: ProducerStamp) {
        assert!(batch.len() > BATCH_HEADER_LEN, "batch without records");
        let header = v2::BatchHeader {
            base_offset: 0, // assigned by the broker
            length: (batch.len() - LOG_OVERHEAD) as i32,
            partition_leader_epoch: -1, // assigned by the broker
            magic: v2::MAGIC_V2,
            crc: 0, // below
            // Create-time timestamps, not transactional.
            attributes: codec.attribute_bits(),
            last_offset_delta: self.count - 1,
            base_timestamp: self.base_timestamp_ms,
            max_timestamp: self.max_timestamp_ms,
            producer_id: stamp.producer_id,
            producer_epoch: stamp.producer_epoch,
            base_sequence: stamp.base_sequence,
            records_count: self.count,
        };
        let mut head = [0u8; BATCH_HEADER_LEN];
        header.write(&mut head);
        batch[..BATCH_HEADER_LEN].copy_from_slice(&head);
        v2::write_crc(batch);
    }
}

fn compress(codec: Codec, body: &[u8]) -> Result<Vec<u8>> {
    Ok(match codec {
        Codec::None => body.to_vec(),
        Codec::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(body)?;
            e.finish()?
        }
        // Kafka's Java client writes xerial-framed snappy; librdkafka and Kafka read it.
        Codec::Snappy => {
            let mut out = Vec::with_capacity(body.len() / 2 + 32);
            out.extend_from_slice(XERIAL_MAGIC);
            let mut enc = snap::raw::Encoder::new();
            for block in body.chunks(32 << 10) {
                let c = enc.compress_vec(block).context("snappy compress")?;
                out.extend_from_slice(&(c.len() as u32).to_be_bytes());
                out.extend_from_slice(&c);
            }
            out
        }
        // Kafka magic v2 uses the standard LZ4 frame format.
        Codec::Lz4 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            e.write_all(body)?;
            e.finish().map_err(|e| anyhow!("lz4 compress: {e}"))?
        }
        // Level 3 is Kafka's and librdkafka's default.
        Codec::Zstd => zstd::bulk::compress(body, 3).context("zstd compress")?,
    })
}

const XERIAL_MAGIC: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

fn decompress(codec: Codec, data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    match codec {
        Codec::None => out.extend_from_slice(data),
        Codec::Gzip => {
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .context("gzip decompress")?;
        }
        Codec::Snappy => {
            let mut dec = snap::raw::Decoder::new();
            if data.starts_with(&XERIAL_MAGIC[..8]) {
                let mut rest = data
                    .get(16..)
                    .ok_or_else(|| anyhow!("short xerial header"))?;
                while !rest.is_empty() {
                    ensure!(rest.len() >= 4, "truncated xerial block length");
                    let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                    let block = rest
                        .get(4..4 + n)
                        .ok_or_else(|| anyhow!("truncated xerial"))?;
                    out.extend_from_slice(&dec.decompress_vec(block).context("snappy block")?);
                    rest = &rest[4 + n..];
                }
            } else {
                out = dec.decompress_vec(data).context("snappy decompress")?;
            }
        }
        Codec::Lz4 => {
            lz4_flex::frame::FrameDecoder::new(data)
                .read_to_end(&mut out)
                .context("lz4 decompress")?;
        }
        Codec::Zstd => {
            out = zstd::stream::decode_all(data).context("zstd decompress")?;
        }
    }
    ensure!(out.len() <= BATCH_BYTES_MAX, "decompressed batch too large");
    Ok(out)
}

/// The fields of a v2 batch's fixed header that a consumer needs to count and skip it,
/// read at their fixed offsets: nothing past byte 61 is touched, no CRC is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Base offset + last offset delta.
    pub last_offset: i64,
    pub record_count: i32,
    pub attributes: i16,
    /// What the batch occupies in the Fetch response: 12 (base offset and length fields) +
    /// the batch length.
    pub wire_bytes: usize,
}

impl BatchHeader {
    /// Control batches (transaction markers) carry no application records.
    pub fn is_control(&self) -> bool {
        self.attributes & v2::ATTR_CONTROL != 0
    }

    /// Records at offsets >= `next`, from the header alone.
    ///
    /// A batch starting at or after `next` counts its record count. One that starts before
    /// (brokers serve whole batches, so the first batch after a reset, or a compressed batch,
    /// may) counts `last_offset - next + 1`: exact when the batch's offsets are contiguous, as
    /// in every batch a producer writes (uncompressed or not) that compaction has not
    /// thinned; for a compacted batch it is an upper bound. Never more than the record count.
    pub fn records_from(&self, next: i64) -> u64 {
        let count = self.record_count.max(0) as u64;
        if self.base_offset >= next {
            return count;
        }
        let from_next = (self.last_offset - next + 1).max(0) as u64;
        from_next.min(count)
    }
}

/// Walks the complete batches of a Fetch `records` blob by their headers; see [`walk_batches`].
pub struct BatchWalk<'a> {
    data: &'a [u8],
}

/// Walks the complete v2 batches of a Fetch `records` blob, yielding each batch's header and
/// its bytes (header included). A trailing partial batch (brokers may cut the last one at
/// `partition_max_bytes`) ends the walk, as in Kafka clients. Framing errors (negative or
/// oversized length, a batch shorter than its header, a magic other than 2, a negative record
/// count) are yielded once, then the walk ends: nothing after a bad length can be trusted.
///
/// This is the one place batch framing is parsed: [`split_batches`], the consumer's
/// header-only accounting and its prefetch all walk with it.
pub fn walk_batches(data: &[u8]) -> BatchWalk<'_> {
    BatchWalk { data }
}

impl<'a> BatchWalk<'a> {
    fn next_batch(&mut self) -> Result<Option<(BatchHeader, &'a [u8])>> {
        let data = self.data;
        let Some(length) = data.get(field::LENGTH) else {
            return Ok(None);
        };
        let batch_len = i32::from_be_bytes(length.try_into()?);
        ensure!(batch_len >= 0, "negative batch length");
        let total = LOG_OVERHEAD + batch_len as usize;
        ensure!(total <= BATCH_BYTES_MAX, "batch length {total} over limit");
        if data.len() < total {
            return Ok(None); // partial trailing batch
        }
        let (b, rest) = data.split_at(total);
        // Header size, magic 2 and a length that holds the header: the broker's own checks.
        let h = v2::BatchHeader::parse(b)?;
        ensure!(
            h.records_count >= 0,
            "negative record count {}",
            h.records_count
        );
        self.data = rest;
        Ok(Some((
            BatchHeader {
                base_offset: h.base_offset,
                last_offset: h.last_offset(),
                record_count: h.records_count,
                attributes: h.attributes,
                wire_bytes: total,
            },
            b,
        )))
    }
}

impl<'a> Iterator for BatchWalk<'a> {
    type Item = Result<(BatchHeader, &'a [u8])>;
    fn next(&mut self) -> Option<Self::Item> {
        match self.next_batch() {
            Ok(item) => item.map(Ok),
            Err(e) => {
                self.data = &[];
                Some(Err(e))
            }
        }
    }
}

/// What the consumer needs from one batch.
#[derive(Debug)]
pub struct DecodedBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    pub record_count: i32,
    pub is_control: bool,
    pub codec: Codec,
    pub base_timestamp_ms: i64,
    /// Uncompressed record section.
    pub records: Bytes,
}

/// A record borrowed from a decoded batch.
#[derive(Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

/// Splits a Fetch `records` blob into complete v2 batches, decoded; see [`walk_batches`] for
/// what ends the walk and what is an error.
pub fn split_batches(data: Bytes, verify_crc: bool) -> Result<Vec<DecodedBatch>> {
    walk_batches(&data)
        .map(|item| {
            let (header, batch) = item?;
            // ok: `batch` is a subslice of `data` (the walk only splits it), which is all
            // `slice_ref` requires.
            DecodedBatch::decode(&header, data.slice_ref(batch), verify_crc)
        })
        .collect()
}

impl DecodedBatch {
    /// Decodes one batch found by [`walk_batches`]: `batch` is the batch's bytes (header
    /// included) as a `Bytes`, so an uncompressed record section is shared, not copied.
    /// Verifies the CRC32C if asked, and decompresses.
    pub fn decode(header: &BatchHeader, batch: Bytes, verify_crc: bool) -> Result<DecodedBatch> {
        ensure!(
            batch.len() == header.wire_bytes && batch.len() >= BATCH_HEADER_LEN,
            "batch bytes ({}) do not match their header ({})",
            batch.len(),
            header.wire_bytes
        );
        if verify_crc {
            v2::verify_crc(&batch)?;
        }
        let base_timestamp_ms = v2::BatchHeader::parse(&batch)?.base_timestamp;
        let codec = Codec::from_attribute_bits(header.attributes)?;
        let body = batch.slice(BATCH_HEADER_LEN..);
        let records = match codec {
            Codec::None => body,
            c => Bytes::from(decompress(c, &body)?),
        };
        Ok(DecodedBatch {
            base_offset: header.base_offset,
            last_offset: header.last_offset,
            record_count: header.record_count,
            is_control: header.is_control(),
            codec,
            base_timestamp_ms,
            records,
        })
    }

    /// Iterates the records of the batch; errors on malformed input.
    pub fn iter(&self) -> RecordIter<'_> {
        RecordIter {
            buf: &self.records,
            remaining: self.record_count.max(0),
            base_offset: self.base_offset,
            base_ts: self.base_timestamp_ms,
        }
    }
}

pub struct RecordIter<'a> {
    buf: &'a [u8],
    remaining: i32,
    base_offset: i64,
    base_ts: i64,
}

impl<'a> RecordIter<'a> {
    fn next_record(&mut self) -> Result<RecordRef<'a>> {
        let len = get_varint(&mut self.buf)?;
        ensure!(
            len >= 0 && len as usize <= self.buf.len(),
            "bad record length {len}"
        );
        let (mut rec, rest) = self.buf.split_at(len as usize);
        self.buf = rest;
        ensure!(!rec.is_empty(), "empty record");
        rec = &rec[1..]; // attributes
        let ts_delta = get_varint(&mut rec)?;
        let offset_delta = get_varint(&mut rec)?;
        let key = get_bytes(&mut rec)?;
        let value = get_bytes(&mut rec)?;
        Ok(RecordRef {
            offset: self.base_offset + offset_delta,
            timestamp_ms: self.base_ts + ts_delta,
            key,
            value,
        })
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordRef<'a>>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining <= 0 {
            return None;
        }
        self.remaining -= 1;
        let r = self.next_record();
        if r.is_err() {
            self.remaining = 0;
        }
        Some(r)
    }
}

fn get_bytes<'a>(buf: &mut &'a [u8]) -> Result<Option<&'a [u8]>> {
    let n = get_varint(buf)?;
    if n < 0 {
        return Ok(None);
    }
    let n = n as usize;
    ensure!(n <= buf.len(), "field length {n} past record end");
    let (v, rest) = buf.split_at(n);
    *buf = rest;
    Ok(Some(v))
}

/// Zig-zag varint (Kafka's varint/varlong) length.
fn varint_len(v: i64) -> usize {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

fn put_varint(buf: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    buf.put_u8(z as u8);
}

fn get_varint(buf: &mut &[u8]) -> Result<i64> {
    let mut z: u64 = 0;
    for i in 0..10 {
        let (&b, rest) = buf
            .split_first()
            .ok_or_else(|| anyhow!("truncated varint"))?;
        *buf = rest;
        z |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    bail!("varint longer than 10 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{Compression, RecordBatchDecoder};

    fn sample(builder: &mut BatchBuilder, n: usize) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
        let mut recs = Vec::new();
        for i in 0..n {
            let key = if i % 3 == 0 {
                None
            } else {
                Some(format!("k{i}").into_bytes())
            };
            let value = format!("value-{i}-{}", "x".repeat(i % 200)).into_bytes();
            builder.append(1_700_000_000_000 + i as i64, key.as_deref(), &value);
            recs.push((key, value));
        }
        recs
    }

    #[test]
    fn encoder_matches_kafka_protocol_decoder_for_every_codec() {
        // lz4 is left out of kafka-protocol's build (C lz4 off); checked by our own decoder.
        for codec in [Codec::None, Codec::Gzip, Codec::Snappy, Codec::Zstd] {
            let mut b = BatchBuilder::new(1024);
            let recs = sample(&mut b, 300);
            let stamp = ProducerStamp {
                producer_id: 42,
                producer_epoch: 3,
                base_sequence: 7,
            };
            let batch = b.seal(codec, stamp).expect("seal");
            assert!(b.is_empty());
            let mut buf = batch.clone();
            let set = RecordBatchDecoder::decode(&mut buf).expect("kafka-protocol decodes it");
            let want = match codec {
                Codec::None => Compression::None,
                Codec::Gzip => Compression::Gzip,
                Codec::Snappy => Compression::Snappy,
                Codec::Zstd => Compression::Zstd,
                Codec::Lz4 => Compression::Lz4,
            };
            assert_eq!(set.compression, want);
            assert_eq!(set.records.len(), recs.len());
            for (i, (r, (k, v))) in set.records.iter().zip(&recs).enumerate() {
                assert_eq!(r.offset, i as i64);
                assert_eq!(r.sequence, 7 + i as i32);
                assert_eq!(r.producer_id, 42);
                assert_eq!(r.timestamp, 1_700_000_000_000 + i as i64);
                assert_eq!(r.key.as_deref(), k.as_deref());
                assert_eq!(r.value.as_deref(), Some(v.as_slice()));
            }
        }
    }

    #[test]
    fn decoder_reads_kafka_protocol_encoded_batches_and_own_lz4() {
        use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions};
        let records: Vec<Record> = (0..50)
            .map(|i| Record {
                transactional: false,
                control: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: kafka_protocol::records::TimestampType::Creation,
                offset: 100 + i,
                // kafka-protocol starts a new batch when offset - sequence changes.
                sequence: (100 + i) as i32,
                timestamp: 5_000 + i,
                key: Some(Bytes::from(format!("key{i}"))),
                value: Some(Bytes::from(format!("val{i}"))),
                headers: Default::default(),
                delete_horizon: false,
            })
            .collect();
        let mut buf = BytesMut::new();
        let opts = RecordEncodeOptions {
            version: 2,
            compression: Compression::Zstd,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &opts).expect("encode");
        let mut own = BatchBuilder::new(64);
        own.append(9, Some(b"a"), b"lz4-value");
        let lz4 = own.seal(Codec::Lz4, ProducerStamp::NONE).expect("seal");
        buf.put_slice(&lz4);
        // A truncated trailing batch must be skipped, not fail.
        buf.put_slice(&lz4[..30]);
        let batches = split_batches(buf.freeze(), true).expect("split");
        assert_eq!(batches.len(), 2);
        let got: Vec<_> = batches[0].iter().collect::<Result<_>>().expect("records");
        assert_eq!(got.len(), 50);
        assert_eq!(got[7].offset, 107);
        assert_eq!(got[7].timestamp_ms, 5_007);
        assert_eq!(got[7].key, Some(&b"key7"[..]));
        assert_eq!(got[7].value, Some(&b"val7"[..]));
        assert_eq!(batches[1].codec, Codec::Lz4);
        let l: Vec<_> = batches[1]
            .iter()
            .collect::<Result<_>>()
            .expect("lz4 records");
        assert_eq!(l[0].value, Some(&b"lz4-value"[..]));
        assert_eq!(l[0].timestamp_ms, 9);
    }

    #[test]
    fn corrupt_batch_is_an_error() {
        let mut b = BatchBuilder::new(64);
        b.append(1, None, b"v");
        let mut raw = BytesMut::from(&b.seal(Codec::None, ProducerStamp::NONE).expect("seal")[..]);
        let last = raw.len() - 2;
        raw[last] ^= 0xff;
        assert!(split_batches(raw.freeze(), true).is_err());
    }

    /// The header walk reads the same offsets and counts as the full decode, for every codec,
    /// and ends quietly at a trailing partial batch.
    #[test]
    fn header_walk_agrees_with_decode() {
        let mut blob = BytesMut::new();
        let mut base = 0i64;
        let mut sizes = Vec::new();
        for (codec, n) in [(Codec::None, 10), (Codec::Zstd, 33), (Codec::Lz4, 5)] {
            let mut b = BatchBuilder::new(256);
            sample(&mut b, n);
            let mut raw = BytesMut::from(&b.seal(codec, ProducerStamp::NONE).expect("seal")[..]);
            raw[..8].copy_from_slice(&base.to_be_bytes());
            sizes.push(raw.len());
            blob.put_slice(&raw);
            base += n as i64;
        }
        let whole = blob.len();
        let partial = blob[..70].to_vec();
        blob.put_slice(&partial); // a batch of which only 70 bytes arrived
        let blob = blob.freeze();
        let headers: Vec<BatchHeader> = walk_batches(&blob)
            .map(|item| item.map(|(h, _)| h))
            .collect::<Result<_>>()
            .expect("walk");
        let decoded = split_batches(blob.clone(), true).expect("decode");
        assert_eq!(headers.len(), 3);
        assert_eq!(decoded.len(), 3);
        for ((h, d), size) in headers.iter().zip(&decoded).zip(&sizes) {
            assert_eq!(h.base_offset, d.base_offset);
            assert_eq!(h.last_offset, d.last_offset);
            assert_eq!(h.record_count, d.record_count);
            assert_eq!(h.record_count as usize, d.iter().count());
            assert_eq!(h.wire_bytes, *size);
            assert!(!h.is_control());
        }
        assert_eq!(headers.iter().map(|h| h.wire_bytes).sum::<usize>(), whole);
        // Batch 1 holds offsets 10..=42.
        let h = headers[1];
        assert_eq!(h.records_from(0), 33);
        assert_eq!(h.records_from(10), 33);
        assert_eq!(h.records_from(40), 3);
        assert_eq!(h.records_from(42), 1);
        assert_eq!(h.records_from(43), 0);
    }

    /// After a framing error the walk stops: nothing past a bad length can be trusted.
    #[test]
    fn header_walk_stops_at_the_first_framing_error() {
        let mut b = BatchBuilder::new(64);
        b.append(1, None, b"v");
        let good = b.seal(Codec::None, ProducerStamp::NONE).expect("seal");
        let mut blob = BytesMut::from(&good[..]);
        let mut bad = BytesMut::from(&good[..]);
        bad[field::RECORDS_COUNT].copy_from_slice(&(-3i32).to_be_bytes()); // negative record count
        blob.put_slice(&bad);
        blob.put_slice(&good);
        let items: Vec<_> = walk_batches(&blob).collect();
        assert_eq!(items.len(), 2, "good batch, then the error, then nothing");
        assert!(items[0].is_ok());
        assert!(items[1].is_err());
    }

    #[test]
    fn varints_round_trip() {
        for v in [
            0i64,
            1,
            -1,
            63,
            64,
            -65,
            300,
            i32::MAX as i64,
            i64::MIN,
            i64::MAX,
        ] {
            let mut b = BytesMut::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v));
            let mut s = &b[..];
            assert_eq!(get_varint(&mut s).expect("varint"), v);
            assert!(s.is_empty());
        }
    }
}
