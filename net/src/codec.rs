//! Request header parsing, request body decoding and response encoding.
//!
//! Decoding untrusted bytes is the riskiest thing this crate does, so [`decode_request`] is
//! layered:
//! 1. the version is checked against the request struct's *real* range (see
//!    [`crate::versions::request_struct_versions`]), not `ApiKey::valid_versions`;
//! 2. the body is decoded through `GuardedBuf`, which stops the `kafka-protocol` decoders from
//!    pre-allocating a `Vec` from an absurd length prefix (they call `Vec::with_capacity(n)`
//!    with `n` straight from the wire, and an allocation failure aborts the process — no
//!    `catch_unwind` can stop that);
//! 3. the decode runs under `catch_unwind` as a last line of defence;
//! 4. bytes after the body are ignored, as Apache Kafka does (real clients send some).
//!
//! Errors carry the request's (api key, version, correlation id) whenever the header was
//! readable, so the broker can still answer with an error response.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::buf::{ByteBuf, ByteBufMut};
use kafka_protocol::protocol::{Decodable, Encodable};
use tracing::{debug, warn};

use crate::apis::for_each_api;
use crate::frame::SIZE_PREFIX_BYTES;
use crate::versions::{request_struct_versions, response_struct_versions};

/// A request whose header has been parsed; the body is still raw bytes.
#[derive(Debug, Clone)]
pub struct RequestFrame {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    /// Bytes of the request header (key, version, correlation id, client id, tagged fields).
    pub header_len: usize,
    /// Everything after the header: a zero-copy slice of the frame read from the socket.
    pub body: Bytes,
}

impl RequestFrame {
    pub fn ids(&self) -> RequestIds {
        RequestIds {
            api_key: self.api_key,
            api_version: self.api_version,
            correlation_id: self.correlation_id,
        }
    }

    /// The API key if the `kafka-protocol` crate knows it.
    pub fn known_api_key(&self) -> Option<ApiKey> {
        ApiKey::try_from(self.api_key).ok()
    }
}

/// What the broker needs to answer a request even when its body is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestIds {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

impl std::fmt::Display for RequestIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "api {} v{} (correlation id {})",
            self.api_key, self.api_version, self.correlation_id
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than api key + version + correlation id: nothing to answer to.
    #[error("request header too short: {len} bytes")]
    HeaderTooShort { len: usize },
    /// The fixed part was readable but the client id / tagged fields were not.
    #[error("malformed request header for {ids}: {reason}")]
    Header { ids: RequestIds, reason: String },
    #[error("unknown api key in {ids}")]
    UnknownApiKey { ids: RequestIds },
    /// The version is outside what the `kafka-protocol` request struct can decode.
    #[error("unsupported version for {ids}; decodable range {min}..={max}")]
    UnsupportedVersion { ids: RequestIds, min: i16, max: i16 },
    #[error("malformed body for {ids}: {reason}")]
    Body { ids: RequestIds, reason: String },
    #[error("decoder panicked on the body of {ids}")]
    Panicked { ids: RequestIds },
}

impl DecodeError {
    /// The request's identity, when the header got that far.
    pub fn ids(&self) -> Option<RequestIds> {
        match self {
            DecodeError::HeaderTooShort { .. } => None,
            DecodeError::Header { ids, .. }
            | DecodeError::UnknownApiKey { ids }
            | DecodeError::UnsupportedVersion { ids, .. }
            | DecodeError::Body { ids, .. }
            | DecodeError::Panicked { ids } => Some(*ids),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("unknown api key {api_key}")]
    UnknownApiKey { api_key: i16 },
    #[error("response kind {kind:?} does not match api key {api_key:?}")]
    KindMismatch {
        api_key: ApiKey,
        kind: Option<ApiKey>,
    },
    #[error("{api_key:?} response cannot be encoded at v{api_version}; range {min}..={max}")]
    UnsupportedVersion {
        api_key: ApiKey,
        api_version: i16,
        min: i16,
        max: i16,
    },
    #[error("encoding {api_key:?} v{api_version} failed: {reason}")]
    Body {
        api_key: ApiKey,
        api_version: i16,
        reason: String,
    },
    #[error("encoded frame of {size} bytes does not fit an i32 size prefix")]
    TooLarge { size: usize },
    #[error("encoder panicked on {api_key:?} v{api_version}")]
    Panicked { api_key: ApiKey, api_version: i16 },
}

/// Request header version for `api_key`/`api_version`. Unknown keys are treated as header v1
/// (key, version, correlation id, nullable client id), which every Kafka version since 0.8 uses
/// for the non-flexible part, so we can still read the correlation id and answer.
pub fn request_header_version(api_key: i16, api_version: i16) -> i16 {
    match ApiKey::try_from(api_key) {
        Ok(key) => key.request_header_version(api_version),
        Err(()) => 1,
    }
}

/// Response header version: 0 (correlation id) or 1 (plus tagged fields). ApiVersions always
/// answers with v0 so that a client that sent a too-new version can still parse the error.
pub fn response_header_version(api_key: ApiKey, api_version: i16) -> i16 {
    if api_key == ApiKey::ApiVersions {
        return 0;
    }
    api_key.response_header_version(api_version)
}

/// Parses the request header at the front of a frame body (the size prefix already removed).
pub fn parse_request_header(frame: Bytes) -> Result<RequestFrame, DecodeError> {
    let len = frame.len();
    if len < 8 {
        debug!(len, "request header too short");
        return Err(DecodeError::HeaderTooShort { len });
    }
    let mut cursor = &frame[..];
    let api_key = cursor.get_i16();
    let api_version = cursor.get_i16();
    let correlation_id = cursor.get_i32();
    let ids = RequestIds {
        api_key,
        api_version,
        correlation_id,
    };
    let header_version = request_header_version(api_key, api_version);
    let mut client_id = None;
    if header_version >= 1 {
        client_id = read_nullable_string(&mut cursor).map_err(|reason| {
            debug!(%ids, reason, "bad client id in request header");
            DecodeError::Header {
                ids,
                reason: reason.to_string(),
            }
        })?;
    }
    if header_version >= 2 {
        skip_tagged_fields(&mut cursor).map_err(|reason| {
            debug!(%ids, reason, "bad tagged fields in request header");
            DecodeError::Header {
                ids,
                reason: reason.to_string(),
            }
        })?;
    }
    let header_len = len - cursor.len();
    Ok(RequestFrame {
        api_key,
        api_version,
        correlation_id,
        client_id,
        header_len,
        body: frame.slice(header_len..),
    })
}

fn read_nullable_string(cursor: &mut &[u8]) -> Result<Option<String>, &'static str> {
    if cursor.len() < 2 {
        return Err("client id length truncated");
    }
    let n = cursor.get_i16();
    if n == -1 {
        return Ok(None);
    }
    if n < 0 {
        return Err("negative client id length");
    }
    let n = n as usize; // ok: non-negative i16
    if cursor.len() < n {
        return Err("client id truncated");
    }
    // Kafka reads the client id as UTF-8; a lossy read keeps a misbehaving client answerable.
    let s = String::from_utf8_lossy(&cursor[..n]).into_owned();
    cursor.advance(n);
    Ok(Some(s))
}

fn read_unsigned_varint(cursor: &mut &[u8]) -> Result<u32, &'static str> {
    let mut value: u32 = 0;
    for i in 0..5 {
        let Some((&b, rest)) = cursor.split_first() else {
            return Err("varint truncated");
        };
        *cursor = rest;
        value |= u32::from(b & 0x7f) << (i * 7);
        if b < 0x80 {
            return Ok(value);
        }
    }
    Err("varint longer than 5 bytes")
}

fn skip_tagged_fields(cursor: &mut &[u8]) -> Result<(), &'static str> {
    let count = read_unsigned_varint(cursor)?;
    for _ in 0..count {
        let _tag = read_unsigned_varint(cursor)?;
        let size = read_unsigned_varint(cursor)? as usize;
        if cursor.len() < size {
            return Err("tagged field truncated");
        }
        cursor.advance(size);
    }
    Ok(())
}

/// Largest element count we let a decoder pre-allocate for without first proving the count is
/// plausible. With the largest message structs at a few hundred bytes this bounds one
/// speculative `Vec::with_capacity` to a few hundred MiB of (untouched) virtual memory.
const LENGTH_UNCHECKED_MAX: i64 = 1 << 20;

/// Value substituted for a suspicious `i32` during the guarded pass. Negative and not -1, so
/// every length decoder in `kafka-protocol` (arrays, bytes) rejects it before allocating,
/// while a plain `i32` field that merely holds a big number decodes on.
const POISON_I32: i32 = -2;

/// A [`Bytes`] reader that defuses huge length prefixes.
///
/// The `kafka-protocol` decoders read array lengths with `try_get_i32` (classic arrays) or an
/// unsigned varint made of `try_get_u8` calls (compact arrays) and then call
/// `Vec::with_capacity(n)`. A legitimate length never exceeds the bytes that follow it (every
/// element takes at least one byte), so:
/// - an `i32` larger than both the remaining bytes and [`LENGTH_UNCHECKED_MAX`] is replaced by
///   [`POISON_I32`] in the guarded pass. If it was a length, decoding fails (as the real decode
///   would, since the bytes cannot be there) without allocating; if it was an ordinary field
///   (e.g. `max_bytes = 52428800`), decoding goes on with a wrong value, and the caller
///   re-decodes unguarded, which is then safe because the structure — every length — is known
///   to be sane;
/// - unsigned varints are only ever lengths, counts or tags in Kafka messages, so an
///   implausible one is a decode error outright.
struct GuardedBuf {
    inner: Bytes,
    guard: bool,
    substitutions: u32,
    /// Remaining bytes right after the last `try_get_u8`, to tell whether the next one
    /// continues the same varint.
    varint_resume_at: usize,
    varint_len: u32,
    varint_value: u32,
}

impl GuardedBuf {
    fn new(inner: Bytes, guard: bool) -> Self {
        Self {
            inner,
            guard,
            substitutions: 0,
            varint_resume_at: usize::MAX,
            varint_len: 0,
            varint_value: 0,
        }
    }

    fn plausible_len_max(&self) -> i64 {
        (self.inner.remaining() as i64).max(LENGTH_UNCHECKED_MAX)
    }
}

impl Buf for GuardedBuf {
    fn remaining(&self) -> usize {
        self.inner.remaining()
    }

    fn chunk(&self) -> &[u8] {
        self.inner.chunk()
    }

    fn advance(&mut self, cnt: usize) {
        // Default `Buf` methods check `remaining` before advancing; clamp anyway so a misuse
        // becomes a short read instead of a panic.
        let cnt = cnt.min(self.inner.remaining());
        self.inner.advance(cnt)
    }

    fn try_get_i32(&mut self) -> Result<i32, bytes::TryGetError> {
        let v = self.inner.try_get_i32()?;
        if self.guard && i64::from(v) > self.plausible_len_max() {
            self.substitutions += 1;
            return Ok(POISON_I32);
        }
        Ok(v)
    }

    fn try_get_u8(&mut self) -> Result<u8, bytes::TryGetError> {
        let before = self.inner.remaining();
        let b = self.inner.try_get_u8()?;
        if before != self.varint_resume_at || self.varint_len >= 5 {
            self.varint_len = 0;
            self.varint_value = 0;
        }
        // Mirror kafka-protocol's UnsignedVarInt accumulation (u32, high bits dropped).
        self.varint_value |= u32::from(b & 0x7f) << (self.varint_len * 7);
        self.varint_len += 1;
        self.varint_resume_at = self.inner.remaining();
        // kafka-protocol stops after 5 bytes even when the 5th has the continuation bit.
        if b < 0x80 || self.varint_len >= 5 {
            let value = i64::from(self.varint_value);
            self.varint_len = 0;
            self.varint_value = 0;
            // Compact lengths are stored as n + 1.
            if self.guard && value > self.plausible_len_max() + 1 {
                return Err(bytes::TryGetError {
                    requested: value as usize, // ok: value <= u32::MAX
                    available: self.inner.remaining(),
                });
            }
        }
        Ok(b)
    }
}

impl ByteBuf for GuardedBuf {
    fn peek_bytes(&mut self, r: std::ops::Range<usize>) -> Bytes {
        if r.start <= r.end && r.end <= self.inner.len() {
            self.inner.slice(r)
        } else {
            Bytes::new()
        }
    }

    fn get_bytes(&mut self, size: usize) -> Bytes {
        let size = size.min(self.inner.len());
        self.inner.split_to(size)
    }
}

macro_rules! decode_body_match {
    ($(($name:ident, $req:ident, $resp:ident)),* $(,)?) => {
        /// Decodes a request body of a known API at a version its struct supports.
        fn decode_body(
            key: ApiKey,
            buf: &mut GuardedBuf,
            version: i16,
        ) -> anyhow::Result<RequestKind> {
            Ok(match key {
                $(ApiKey::$name => RequestKind::$name(<$req as Decodable>::decode(buf, version)?),)*
            })
        }

        /// The API a response variant belongs to.
        pub fn response_api_key(response: &ResponseKind) -> Option<ApiKey> {
            match response {
                $(ResponseKind::$name(_) => Some(ApiKey::$name),)*
                #[allow(unreachable_patterns)]
                _ => None,
            }
        }

        /// A request of `key` with every field at its default (seeds for tests and fuzzing).
        pub fn default_request(key: ApiKey) -> RequestKind {
            match key {
                $(ApiKey::$name => RequestKind::$name(<$req>::default()),)*
            }
        }

        /// The API a request variant belongs to.
        pub fn request_api_key(request: &RequestKind) -> Option<ApiKey> {
            match request {
                $(RequestKind::$name(_) => Some(ApiKey::$name),)*
                #[allow(unreachable_patterns)]
                _ => None,
            }
        }
    };
}
for_each_api!(decode_body_match);

/// One guarded-or-plain decode pass, with panics turned into errors.
fn decode_pass(
    key: ApiKey,
    frame: &RequestFrame,
    guard: bool,
) -> Result<(RequestKind, u32), DecodeError> {
    let ids = frame.ids();
    let mut buf = GuardedBuf::new(frame.body.clone(), guard);
    let result = catch_unwind(AssertUnwindSafe(|| {
        decode_body(key, &mut buf, frame.api_version)
    }));
    match result {
        Ok(Ok(kind)) => {
            let trailing = buf.remaining();
            if trailing > 0 {
                // Apache Kafka ignores bytes after a request body, and real clients send them
                // (librdkafka 2.16 adds 3 bytes to a Metadata v12 "all topics" request), so a
                // strict check here would cut off working clients.
                debug!(%ids, trailing, "ignoring trailing bytes after request body");
            }
            Ok((kind, buf.substitutions))
        }
        Ok(Err(e)) => {
            debug!(%ids, error = %format!("{e:#}"), "malformed request body");
            Err(DecodeError::Body {
                ids,
                reason: format!("{e:#}"),
            })
        }
        Err(_) => {
            warn!(%ids, "kafka-protocol decoder panicked; treating the body as malformed");
            Err(DecodeError::Panicked { ids })
        }
    }
}

/// Decodes the body of `frame` into a typed request. Never panics.
pub fn decode_request(frame: &RequestFrame) -> Result<RequestKind, DecodeError> {
    let ids = frame.ids();
    let Ok(key) = ApiKey::try_from(frame.api_key) else {
        debug!(%ids, "unknown api key");
        return Err(DecodeError::UnknownApiKey { ids });
    };
    let range = request_struct_versions(key);
    if frame.api_version < range.min || frame.api_version > range.max {
        debug!(%ids, min = range.min, max = range.max, "request version not decodable");
        return Err(DecodeError::UnsupportedVersion {
            ids,
            min: range.min,
            max: range.max,
        });
    }
    let (kind, substitutions) = decode_pass(key, frame, true)?;
    if substitutions == 0 {
        return Ok(kind);
    }
    // Some plain i32 fields held values the guard replaced; the structure is proven sane, so
    // decode again without the guard to get the real values.
    decode_pass(key, frame, false).map(|(kind, _)| kind)
}

/// Writes a response header of the given version.
fn put_response_header(buf: &mut BytesMut, header_version: i16, correlation_id: i32) {
    buf.put_i32(correlation_id);
    if header_version >= 1 {
        buf.put_u8(0); // no tagged fields
    }
}

/// Fetch `records` blobs at least this large are written as their own chunk, referencing the
/// stored bytes, instead of being copied into the response buffer.
pub const SPLICE_RECORDS_BYTES_MIN: usize = 16 * 1024;

/// A `ByteBufMut` that builds a response as a list of chunks: small fields are appended to a
/// growing buffer, and a `put_slice` of one of the known large `records` blobs (recognised by
/// address and length) closes the current chunk and adds the blob itself, zero-copy.
struct ChunkedBuf {
    done: Vec<Bytes>,
    done_len: usize,
    cur: BytesMut,
    splice: HashMap<(usize, usize), Vec<Bytes>>,
    /// A seek/range into an already-closed chunk was requested: fall back to plain encoding.
    broken: bool,
}

impl ChunkedBuf {
    fn new(splice: HashMap<(usize, usize), Vec<Bytes>>) -> Self {
        Self {
            done: Vec::new(),
            done_len: 0,
            cur: BytesMut::with_capacity(1024),
            splice,
            broken: false,
        }
    }

    fn finish(mut self) -> Vec<Bytes> {
        if !self.cur.is_empty() {
            self.done.push(self.cur.freeze());
        }
        self.done
    }
}

// SAFETY: every method forwards to the inner `BytesMut`, which upholds `BufMut`'s contract
// (`chunk_mut` returns writable memory, `advance_mut` only after it was initialised);
// `put_slice` either forwards or moves whole, already-initialised `Bytes` into `done`.
unsafe impl BufMut for ChunkedBuf {
    fn remaining_mut(&self) -> usize {
        self.cur.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller guarantees `cnt` bytes of `chunk_mut()` — the inner buffer's
        // chunk — were initialised, which is exactly `BytesMut::advance_mut`'s requirement.
        unsafe { self.cur.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut bytes::buf::UninitSlice {
        self.cur.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if src.len() >= SPLICE_RECORDS_BYTES_MIN {
            if let Some(blobs) = self.splice.get(&(src.as_ptr() as usize, src.len())) {
                if !self.cur.is_empty() {
                    let head = self.cur.split().freeze();
                    self.done_len += head.len();
                    self.done.push(head);
                }
                for blob in blobs {
                    self.done_len += blob.len();
                    self.done.push(blob.clone());
                }
                return;
            }
        }
        self.cur.put_slice(src);
    }
}

impl ByteBufMut for ChunkedBuf {
    fn offset(&self) -> usize {
        self.done_len + self.cur.len()
    }

    fn seek(&mut self, offset: usize) {
        match offset.checked_sub(self.done_len) {
            Some(local) => self.cur.resize(local, 0),
            None => self.broken = true,
        }
    }

    fn range(&mut self, r: std::ops::Range<usize>) -> &mut [u8] {
        let local = r.start.checked_sub(self.done_len).and_then(|start| {
            let end = r.end.checked_sub(self.done_len)?;
            (start <= end && end <= self.cur.len()).then_some(start..end)
        });
        match local {
            Some(local) => &mut self.cur[local],
            None => {
                self.broken = true;
                &mut []
            }
        }
    }
}

/// The `records` of fetched partitions that are made of several chunks (stored batches as
/// they lie in the cache, or several cached entries), sent back to back without joining them.
///
/// The kafka-protocol encoder wants one contiguous `Bytes` per partition. Instead of copying
/// the chunks together, [`FetchRecords::records`] returns a placeholder of the right length:
/// a slice of a read-only, never-touched anonymous mapping (no memory behind it), at an
/// address unique within the response. The chunked encoder recognises the placeholder by
/// address and length and sends the chunks in its place; the placeholder's (zero) bytes are
/// never sent — every other encoding path first swaps the real bytes back in.
#[derive(Default)]
pub struct FetchRecords {
    spliced: HashMap<(usize, usize), Vec<Bytes>>,
    /// Offset of the next placeholder within the mapping.
    next: usize,
}

/// Address space reserved for placeholders: bounds one response's total spliced records.
const PLACEHOLDER_SPACE: usize = 1 << 30;

/// The read-only zero mapping placeholders point into, or `None` if it cannot be made.
fn placeholder_space() -> Option<&'static [u8]> {
    static SPACE: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    let addr = (*SPACE.get_or_init(|| {
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing
        // touches no existing memory. MAP_NORESERVE: nothing is ever written (PROT_READ),
        // so it costs address space only.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PLACEHOLDER_SPACE,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            warn!(error = %std::io::Error::last_os_error(), "cannot map fetch placeholders; multi-chunk fetch records will be copied");
            None
        } else {
            Some(p as usize)
        }
    }))?;
    // SAFETY: `addr` is the start of a PROT_READ mapping of PLACEHOLDER_SPACE bytes that is
    // never unmapped nor made writable, so it is valid, initialised (zero) and immutable for
    // 'static.
    Some(unsafe { std::slice::from_raw_parts(addr as *const u8, PLACEHOLDER_SPACE) })
}

impl FetchRecords {
    pub fn new() -> Self {
        Self::default()
    }

    /// The `records` value for a partition whose record bytes are `chunks`, in order.
    pub fn records(&mut self, mut chunks: Vec<Bytes>) -> Bytes {
        chunks.retain(|c| !c.is_empty());
        if chunks.len() <= 1 {
            return chunks.pop().unwrap_or_default();
        }
        let len: usize = chunks.iter().map(Bytes::len).sum();
        if len >= SPLICE_RECORDS_BYTES_MIN {
            if let Some(space) = placeholder_space() {
                if let Some(slot) = space.get(self.next..self.next + len) {
                    // Consecutive placeholders start one byte apart: (address, length) stays
                    // unique within the response while using little of the space.
                    self.next += 1;
                    let placeholder = Bytes::from_static(slot);
                    self.spliced
                        .insert((placeholder.as_ptr() as usize, len), chunks);
                    return placeholder;
                }
            }
        }
        let mut out = BytesMut::with_capacity(len);
        for c in &chunks {
            out.extend_from_slice(c);
        }
        out.freeze()
    }

    /// `resp` with every placeholder replaced by its joined chunks (for encoders that do not
    /// splice).
    fn materialize(&self, resp: &FetchResponse) -> FetchResponse {
        let mut out = resp.clone();
        for topic in &mut out.responses {
            for partition in &mut topic.partitions {
                if let Some(records) = &mut partition.records {
                    if let Some(chunks) = self
                        .spliced
                        .get(&(records.as_ptr() as usize, records.len()))
                    {
                        let mut joined = BytesMut::with_capacity(records.len());
                        for c in chunks {
                            joined.extend_from_slice(c);
                        }
                        *records = joined.freeze();
                    }
                }
            }
        }
        out
    }
}

/// The large `records` blobs of a Fetch response, keyed by (address, length): single blobs
/// as they are, placeholders as their chunks.
fn fetch_splice_candidates(
    resp: &FetchResponse,
    spliced: &FetchRecords,
) -> HashMap<(usize, usize), Vec<Bytes>> {
    let mut out = HashMap::new();
    for topic in &resp.responses {
        for partition in &topic.partitions {
            if let Some(records) = &partition.records {
                if records.len() >= SPLICE_RECORDS_BYTES_MIN {
                    let key = (records.as_ptr() as usize, records.len());
                    let chunks = match spliced.spliced.get(&key) {
                        Some(chunks) => chunks.clone(),
                        None => vec![records.clone()],
                    };
                    out.insert(key, chunks);
                }
            }
        }
    }
    out
}

/// Encodes a Fetch response body as chunks with the large record blobs spliced in. `None`
/// when the encoder did something the chunked buffer cannot follow (then encode plainly).
fn encode_fetch_chunked(
    resp: &FetchResponse,
    version: i16,
    splice: HashMap<(usize, usize), Vec<Bytes>>,
) -> Option<anyhow::Result<Vec<Bytes>>> {
    let mut buf = ChunkedBuf::new(splice);
    let result = <FetchResponse as Encodable>::encode(resp, &mut buf, version);
    if buf.broken {
        return None;
    }
    Some(result.map(|()| buf.finish()))
}

/// Encodes a complete response frame: size prefix, response header, body.
///
/// Returns one or more chunks to be written back to back; today it is always one chunk, but
/// callers must not assume that (a zero-copy fetch path will splice stored batches in).
pub fn encode_response(
    api_key: i16,
    api_version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Result<Vec<Bytes>, EncodeError> {
    encode_response_with(
        api_key,
        api_version,
        correlation_id,
        response,
        &FetchRecords::default(),
    )
}

/// [`encode_response`] for a Fetch response whose `records` may be placeholders made by
/// `spliced`.
pub fn encode_response_with(
    api_key: i16,
    api_version: i16,
    correlation_id: i32,
    response: &ResponseKind,
    spliced: &FetchRecords,
) -> Result<Vec<Bytes>, EncodeError> {
    let Ok(key) = ApiKey::try_from(api_key) else {
        warn!(api_key, "cannot encode a response for an unknown api key");
        return Err(EncodeError::UnknownApiKey { api_key });
    };
    let kind = response_api_key(response);
    if kind != Some(key) {
        warn!(
            ?key,
            ?kind,
            "response kind does not match the request's api key"
        );
        return Err(EncodeError::KindMismatch { api_key: key, kind });
    }
    let range = response_struct_versions(key);
    if api_version < range.min || api_version > range.max {
        warn!(?key, api_version, "response version not encodable");
        return Err(EncodeError::UnsupportedVersion {
            api_key: key,
            api_version,
            min: range.min,
            max: range.max,
        });
    }
    let materialized;
    let mut response = response;
    if let ResponseKind::Fetch(fetch) = response {
        let splice = fetch_splice_candidates(fetch, spliced);
        if !splice.is_empty() {
            let chunked = catch_unwind(AssertUnwindSafe(|| {
                encode_fetch_chunked(fetch, api_version, splice)
            }));
            match chunked {
                Ok(Some(Ok(body))) => {
                    return frame_chunks(key, api_version, correlation_id, body);
                }
                Ok(Some(Err(e))) => {
                    warn!(?key, api_version, error = %format!("{e:#}"), "response encoding failed");
                    return Err(EncodeError::Body {
                        api_key: key,
                        api_version,
                        reason: format!("{e:#}"),
                    });
                }
                // The encoder seeked backwards across a spliced chunk: encode plainly.
                Ok(None) => debug!(
                    ?key,
                    api_version, "chunked fetch encoding fell back to a copy"
                ),
                Err(_) => {
                    warn!(?key, api_version, "kafka-protocol encoder panicked");
                    return Err(EncodeError::Panicked {
                        api_key: key,
                        api_version,
                    });
                }
            }
        }
        // Never encode a placeholder's bytes.
        if !spliced.spliced.is_empty() {
            materialized = ResponseKind::Fetch(spliced.materialize(fetch));
            response = &materialized;
        }
    }
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0); // size, patched below
    put_response_header(
        &mut buf,
        response_header_version(key, api_version),
        correlation_id,
    );
    let encoded = catch_unwind(AssertUnwindSafe(|| response.encode(&mut buf, api_version)));
    match encoded {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            warn!(?key, api_version, error = %format!("{e:#}"), "response encoding failed");
            return Err(EncodeError::Body {
                api_key: key,
                api_version,
                reason: format!("{e:#}"),
            });
        }
        Err(_) => {
            warn!(?key, api_version, "kafka-protocol encoder panicked");
            return Err(EncodeError::Panicked {
                api_key: key,
                api_version,
            });
        }
    }
    let size = buf.len() - SIZE_PREFIX_BYTES;
    let size_i32 = i32::try_from(size).map_err(|_| EncodeError::TooLarge { size })?;
    buf[..SIZE_PREFIX_BYTES].copy_from_slice(&size_i32.to_be_bytes());
    Ok(vec![buf.freeze()])
}

/// Prepends the size prefix and response header to body chunks. A small leading body chunk
/// is copied into the header's buffer to save an iovec; spliced records are never copied.
fn frame_chunks(
    key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: Vec<Bytes>,
) -> Result<Vec<Bytes>, EncodeError> {
    let mut head = BytesMut::with_capacity(16);
    head.put_i32(0);
    put_response_header(
        &mut head,
        response_header_version(key, api_version),
        correlation_id,
    );
    let body_len: usize = body.iter().map(Bytes::len).sum();
    let size = head.len() - SIZE_PREFIX_BYTES + body_len;
    let size_i32 = i32::try_from(size).map_err(|_| EncodeError::TooLarge { size })?;
    head[..SIZE_PREFIX_BYTES].copy_from_slice(&size_i32.to_be_bytes());
    let mut chunks = Vec::with_capacity(body.len() + 1);
    let mut body = body.into_iter().peekable();
    // Fold the first body chunk into the header when it is not a spliced blob.
    if let Some(first) = body.peek() {
        if first.len() < SPLICE_RECORDS_BYTES_MIN {
            head.extend_from_slice(first);
            body.next();
        }
    }
    chunks.push(head.freeze());
    chunks.extend(body);
    Ok(chunks)
}

/// Encodes a complete request frame (size prefix, header, body). Used by tests, tools and the
/// bench harness; the broker never sends requests to clients.
pub fn encode_request(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    client_id: Option<&str>,
    request: &RequestKind,
) -> Result<Bytes, EncodeError> {
    if request_api_key(request) != Some(api_key) {
        return Err(EncodeError::KindMismatch {
            api_key,
            kind: request_api_key(request),
        });
    }
    let range = request_struct_versions(api_key);
    if api_version < range.min || api_version > range.max {
        return Err(EncodeError::UnsupportedVersion {
            api_key,
            api_version,
            min: range.min,
            max: range.max,
        });
    }
    let header_version = api_key.request_header_version(api_version);
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    buf.put_i16(api_key as i16);
    buf.put_i16(api_version);
    buf.put_i32(correlation_id);
    if header_version >= 1 {
        match client_id {
            Some(id) => {
                let len = i16::try_from(id.len()).map_err(|_| EncodeError::Body {
                    api_key,
                    api_version,
                    reason: "client id longer than 32767 bytes".to_string(),
                })?;
                buf.put_i16(len);
                buf.put_slice(id.as_bytes());
            }
            None => buf.put_i16(-1),
        }
    }
    if header_version >= 2 {
        buf.put_u8(0);
    }
    let encoded = catch_unwind(AssertUnwindSafe(|| request.encode(&mut buf, api_version)));
    match encoded {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(EncodeError::Body {
                api_key,
                api_version,
                reason: format!("{e:#}"),
            })
        }
        Err(_) => {
            return Err(EncodeError::Panicked {
                api_key,
                api_version,
            })
        }
    }
    let size = buf.len() - SIZE_PREFIX_BYTES;
    let size_i32 = i32::try_from(size).map_err(|_| EncodeError::TooLarge { size })?;
    buf[..SIZE_PREFIX_BYTES].copy_from_slice(&size_i32.to_be_bytes());
    Ok(buf.freeze())
}

/// Concatenates response chunks (tests and tools; the connection writes chunks without
/// joining them).
pub fn concat_chunks(chunks: &[Bytes]) -> Bytes {
    let total = chunks.iter().map(Bytes::len).sum();
    let mut out = BytesMut::with_capacity(total);
    for c in chunks {
        out.extend_from_slice(c);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{fetch_request, metadata_request, produce_request};
    use kafka_protocol::protocol::StrBytes;

    fn round_trip(key: ApiKey, version: i16, req: RequestKind) {
        let framed = encode_request(key, version, 42, Some("client-1"), &req).unwrap();
        let size = i32::from_be_bytes([framed[0], framed[1], framed[2], framed[3]]) as usize;
        assert_eq!(size, framed.len() - 4);
        let frame = parse_request_header(framed.slice(4..)).unwrap();
        assert_eq!(frame.api_key, key as i16);
        assert_eq!(frame.api_version, version);
        assert_eq!(frame.correlation_id, 42);
        assert_eq!(frame.client_id.as_deref(), Some("client-1"));
        let expected_header_len = 2
            + 2
            + 4
            + 2
            + "client-1".len()
            + usize::from(key.request_header_version(version) >= 2);
        assert_eq!(frame.header_len, expected_header_len);
        let back = decode_request(&frame).unwrap();
        assert_eq!(back, req, "{key:?} v{version}");
    }

    fn metadata(topics: &[&str]) -> MetadataRequest {
        MetadataRequest::default().with_topics(Some(
            topics
                .iter()
                .map(|t| {
                    metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(t.to_string()))))
                })
                .collect(),
        ))
    }

    fn produce() -> ProduceRequest {
        let partition = produce_request::PartitionProduceData::default()
            .with_index(3)
            .with_records(Some(Bytes::from_static(b"opaque-record-batch-bytes")));
        let topic = produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(vec![partition]);
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![topic])
    }

    fn fetch(version: i16) -> FetchRequest {
        let partition = fetch_request::FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(1234)
            .with_partition_max_bytes(1_048_576);
        let topic = fetch_request::FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![partition]);
        FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(52_428_800)
            // Sessions exist from v7; older versions silently drop the field.
            .with_session_id(if version >= 7 { 1_987_654_321 } else { 0 })
            .with_topics(vec![topic])
    }

    #[test]
    fn round_trips_at_flexible_and_classic_versions() {
        // Metadata: v8 classic header v1, v9+ flexible header v2.
        round_trip(
            ApiKey::Metadata,
            1,
            RequestKind::Metadata(metadata(&["a", "b"])),
        );
        round_trip(
            ApiKey::Metadata,
            9,
            RequestKind::Metadata(metadata(&["a", "b"])),
        );
        round_trip(ApiKey::Produce, 3, RequestKind::Produce(produce()));
        round_trip(ApiKey::Produce, 9, RequestKind::Produce(produce()));
        // Fetch v4 classic; big plain i32 fields exercise the guarded double decode.
        round_trip(ApiKey::Fetch, 4, RequestKind::Fetch(fetch(4)));
        round_trip(ApiKey::Fetch, 12, RequestKind::Fetch(fetch(12)));
        round_trip(
            ApiKey::ApiVersions,
            3,
            RequestKind::ApiVersions(
                ApiVersionsRequest::default()
                    .with_client_software_name(StrBytes::from_static_str("x"))
                    .with_client_software_version(StrBytes::from_static_str("1")),
            ),
        );
    }

    #[test]
    fn produce_records_are_zero_copy_slices_of_the_frame() {
        let framed = encode_request(
            ApiKey::Produce,
            9,
            1,
            None,
            &RequestKind::Produce(produce()),
        )
        .unwrap();
        let frame = parse_request_header(framed.slice(4..)).unwrap();
        let RequestKind::Produce(req) = decode_request(&frame).unwrap() else {
            panic!("not a produce");
        };
        let records = req.topic_data[0].partition_data[0].records.clone().unwrap();
        let frame_range = framed.as_ptr() as usize..framed.as_ptr() as usize + framed.len();
        assert!(frame_range.contains(&(records.as_ptr() as usize)));
    }

    #[test]
    fn header_versions() {
        assert_eq!(request_header_version(ApiKey::Produce as i16, 8), 1);
        assert_eq!(request_header_version(ApiKey::Produce as i16, 9), 2);
        assert_eq!(request_header_version(30_000, 0), 1);
        assert_eq!(response_header_version(ApiKey::ApiVersions, 4), 0);
        assert_eq!(response_header_version(ApiKey::Metadata, 9), 1);
        assert_eq!(response_header_version(ApiKey::Metadata, 8), 0);
    }

    #[test]
    fn unknown_api_key_still_yields_ids() {
        let mut raw = BytesMut::new();
        raw.put_i16(12_345);
        raw.put_i16(7);
        raw.put_i32(99);
        raw.put_i16(2);
        raw.put_slice(b"id");
        raw.put_slice(b"body");
        let frame = parse_request_header(raw.freeze()).unwrap();
        assert_eq!(frame.client_id.as_deref(), Some("id"));
        assert_eq!(&frame.body[..], b"body");
        let err = decode_request(&frame).unwrap_err();
        assert!(matches!(err, DecodeError::UnknownApiKey { .. }));
        assert_eq!(
            err.ids(),
            Some(RequestIds {
                api_key: 12_345,
                api_version: 7,
                correlation_id: 99
            })
        );
    }

    #[test]
    fn short_and_truncated_headers() {
        assert!(matches!(
            parse_request_header(Bytes::from_static(&[0, 3, 0])),
            Err(DecodeError::HeaderTooShort { len: 3 })
        ));
        // Metadata v1, client id claims 10 bytes, only 2 present.
        let raw = Bytes::from_static(&[0, 3, 0, 1, 0, 0, 0, 5, 0, 10, b'a', b'b']);
        let err = parse_request_header(raw).unwrap_err();
        assert!(matches!(err, DecodeError::Header { .. }));
        assert_eq!(err.ids().map(|i| i.correlation_id), Some(5));
    }

    #[test]
    fn unsupported_version_is_checked_against_the_struct() {
        let raw = Bytes::from_static(&[0, 22, 0, 6, 0, 0, 0, 5, 255, 255, 0]);
        let frame = parse_request_header(raw).unwrap();
        match decode_request(&frame) {
            Err(DecodeError::UnsupportedVersion { min, max, .. }) => {
                assert_eq!((min, max), (0, 5));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn trailing_bytes_are_ignored_like_kafka() {
        let framed = encode_request(
            ApiKey::Metadata,
            1,
            7,
            None,
            &RequestKind::Metadata(metadata(&["a"])),
        )
        .unwrap();
        let mut raw = BytesMut::from(&framed[4..]);
        raw.put_u8(0);
        let frame = parse_request_header(raw.freeze()).unwrap();
        match decode_request(&frame) {
            Ok(RequestKind::Metadata(m)) => assert_eq!(m.topics.map(|t| t.len()), Some(1)),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Without the guard these would make kafka-protocol call `Vec::with_capacity` with ~2^31
    /// elements, and the failed allocation would abort the whole test process.
    #[test]
    fn huge_length_prefixes_fail_without_allocating() {
        // Metadata v1: topics array length i32::MAX.
        let raw = Bytes::from_static(&[0, 3, 0, 1, 0, 0, 0, 1, 255, 255, 0x7f, 0xff, 0xff, 0xff]);
        let frame = parse_request_header(raw).unwrap();
        assert!(matches!(
            decode_request(&frame),
            Err(DecodeError::Body { .. })
        ));
        // Metadata v9 (flexible): compact topics array length u32::MAX as varint.
        let raw = Bytes::from_static(&[
            0, 3, 0, 9, 0, 0, 0, 1, 255, 255, 0, 0xff, 0xff, 0xff, 0xff, 0x0f,
        ]);
        let frame = parse_request_header(raw).unwrap();
        assert!(matches!(
            decode_request(&frame),
            Err(DecodeError::Body { .. })
        ));
        // A 5-byte varint whose last byte still has the continuation bit: kafka-protocol
        // stops reading there and uses the (huge) value.
        let raw = Bytes::from_static(&[
            0, 3, 0, 9, 0, 0, 0, 1, 255, 255, 0, 0xff, 0xff, 0xff, 0xff, 0xff,
        ]);
        let frame = parse_request_header(raw).unwrap();
        assert!(matches!(
            decode_request(&frame),
            Err(DecodeError::Body { .. })
        ));
        // Produce v3: acks, timeout, then topic array of i32::MAX entries.
        let raw = Bytes::from_static(&[
            0, 0, 0, 3, 0, 0, 0, 1, 255, 255, 255, 255, 0, 1, 0, 0, 0x75, 0x30, 0x7f, 0xff, 0xff,
            0xff,
        ]);
        let frame = parse_request_header(raw).unwrap();
        assert!(matches!(
            decode_request(&frame),
            Err(DecodeError::Body { .. })
        ));
    }

    #[test]
    fn response_encoding_uses_the_right_header() {
        let resp = ResponseKind::Metadata(MetadataResponse::default());
        let v9 = concat_chunks(&encode_response(3, 9, 11, &resp).unwrap());
        let v8 = concat_chunks(&encode_response(3, 8, 11, &resp).unwrap());
        // v9 has a one-byte tagged-field section in the header that v8 lacks.
        assert_eq!(&v9[4..8], &11i32.to_be_bytes());
        assert_eq!(v9[8], 0);
        let size9 = i32::from_be_bytes([v9[0], v9[1], v9[2], v9[3]]) as usize;
        assert_eq!(size9, v9.len() - 4);
        let mut body = v8.slice(8..);
        let back = MetadataResponse::decode(&mut body, 8).unwrap();
        assert!(body.is_empty());
        assert_eq!(back, MetadataResponse::default());
        // ApiVersions v3 is flexible but its response header stays v0.
        let av = ResponseKind::ApiVersions(ApiVersionsResponse::default());
        let framed = concat_chunks(&encode_response(18, 3, 5, &av).unwrap());
        let mut body = framed.slice(8..);
        ApiVersionsResponse::decode(&mut body, 3).unwrap();
        assert!(body.is_empty());
    }

    #[test]
    fn response_encoding_rejects_mismatches() {
        let resp = ResponseKind::Metadata(MetadataResponse::default());
        assert!(matches!(
            encode_response(0, 9, 1, &resp),
            Err(EncodeError::KindMismatch { .. })
        ));
        assert!(matches!(
            encode_response(3, 99, 1, &resp),
            Err(EncodeError::UnsupportedVersion { .. })
        ));
        assert!(matches!(
            encode_response(-5, 0, 1, &resp),
            Err(EncodeError::UnknownApiKey { .. })
        ));
    }

    fn fetch_response(blobs: &[Bytes]) -> FetchResponse {
        use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
        let partitions = blobs
            .iter()
            .enumerate()
            .map(|(i, b)| {
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_high_watermark(1000 + i as i64)
                    .with_records(Some(b.clone()))
            })
            .collect();
        FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(partitions)])
    }

    #[test]
    fn fetch_records_are_spliced_not_copied() {
        let big1 = Bytes::from(vec![1u8; SPLICE_RECORDS_BYTES_MIN + 5]);
        let small = Bytes::from(vec![2u8; 100]);
        let big2 = Bytes::from(vec![3u8; 200_000]);
        let resp = fetch_response(&[big1.clone(), small, big2.clone()]);
        for version in [4i16, 11, 12, 16] {
            let kind = ResponseKind::Fetch(resp.clone());
            let chunks = encode_response(ApiKey::Fetch as i16, version, 9, &kind).unwrap();
            // The big blobs are chunks of their own, pointing at the original memory.
            assert!(chunks
                .iter()
                .any(|c| c.as_ptr() == big1.as_ptr() && c.len() == big1.len()));
            assert!(chunks
                .iter()
                .any(|c| c.as_ptr() == big2.as_ptr() && c.len() == big2.len()));
            // Byte for byte what a plain encode produces.
            let mut plain = BytesMut::new();
            plain.put_i32(0);
            put_response_header(
                &mut plain,
                response_header_version(ApiKey::Fetch, version),
                9,
            );
            kind.encode(&mut plain, version).unwrap();
            let size = (plain.len() - 4) as i32;
            plain[..4].copy_from_slice(&size.to_be_bytes());
            assert_eq!(concat_chunks(&chunks), plain.freeze(), "v{version}");
        }
        // Small records only: one chunk, as before.
        let kind = ResponseKind::Fetch(fetch_response(&[Bytes::from_static(b"tiny")]));
        assert_eq!(encode_response(1, 12, 9, &kind).unwrap().len(), 1);
    }

    /// Records made of several chunks go out as those chunks, and the frame is byte for byte
    /// the plain encoding of the joined records; a placeholder's own bytes never go out.
    #[test]
    fn multi_chunk_records_are_sent_as_their_chunks() {
        let parts_a: Vec<Bytes> = (0..40u8)
            .map(|i| Bytes::from(vec![i; 61 + usize::from(i) * 97]))
            .collect();
        let parts_b: Vec<Bytes> = vec![
            Bytes::from(vec![7u8; 10]),
            Bytes::new(),
            Bytes::from(vec![8u8; 20]),
        ];
        // Same total length as A, so only the placeholder address tells them apart.
        let total_a: usize = parts_a.iter().map(Bytes::len).sum();
        let parts_c = vec![
            Bytes::from(vec![9u8; total_a / 2]),
            Bytes::from(vec![10u8; total_a - total_a / 2]),
        ];
        let join = |parts: &[Bytes]| -> Bytes {
            Bytes::from(
                parts
                    .iter()
                    .flat_map(|p| p.iter().copied())
                    .collect::<Vec<u8>>(),
            )
        };
        let mut spliced = FetchRecords::new();
        let a = spliced.records(parts_a.clone());
        let b = spliced.records(parts_b.clone());
        let c = spliced.records(parts_c.clone());
        assert_eq!(a.len(), total_a);
        assert_ne!(a.as_ptr(), c.as_ptr());
        // Small totals are joined right away (one small copy instead of many iovecs).
        assert_eq!(b, join(&parts_b));
        let real = fetch_response(&[join(&parts_a), b.clone(), join(&parts_c)]);
        let with_placeholders = fetch_response(&[a, b, c]);
        for version in [4i16, 11, 12, 16] {
            let chunks = encode_response_with(
                ApiKey::Fetch as i16,
                version,
                5,
                &ResponseKind::Fetch(with_placeholders.clone()),
                &spliced,
            )
            .unwrap();
            for part in parts_a.iter().chain(&parts_c) {
                assert!(
                    chunks.iter().any(|c| c.as_ptr() == part.as_ptr()),
                    "a record chunk was copied (v{version})"
                );
            }
            let plain = encode_response(
                ApiKey::Fetch as i16,
                version,
                5,
                &ResponseKind::Fetch(real.clone()),
            )
            .unwrap();
            assert_eq!(concat_chunks(&chunks), concat_chunks(&plain), "v{version}");
        }
        // Encoders that cannot splice get the joined bytes, never the placeholders' zeros.
        let materialized = spliced.materialize(&with_placeholders);
        assert_eq!(materialized, real);
    }
}
