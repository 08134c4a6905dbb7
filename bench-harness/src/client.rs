//! A minimal Kafka protocol client on glommio: framing, version negotiation, and the few
//! administrative calls the harness needs (Metadata, CreateTopics, ListOffsets, InitProducerId).
//!
//! Requests are pipelined on the produce path: a connection is split into a [`FrameWriter`]
//! and a [`FrameReader`], and responses are matched in order (Kafka answers requests on one
//! connection in the order they were sent). The fetch path keeps the [`Conn`] whole and uses
//! [`Conn::send`] / [`Conn::receive`] to have its next Fetch on the wire while it processes
//! the previous response.

use anyhow::{anyhow, bail, ensure, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use glommio::net::TcpStream;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, CreateTopicsRequest,
    InitProducerIdRequest, ListOffsetsRequest, MetadataRequest, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use std::collections::{HashMap, VecDeque};
use std::os::unix::io::{AsRawFd, RawFd};
use std::time::Duration;

/// Largest response frame accepted: a guard against garbage length prefixes.
pub const FRAME_BYTES_MAX: usize = 512 << 20;
pub const CLIENT_ID: &str = "ringtail-bench";
/// A socket write that makes no progress for this long fails: the broker stopped reading
/// (hung or dead shard). Without it a producer blocked on a full socket waits forever; with
/// acks=0 nothing else would ever notice. Same order as Kafka's `request.timeout.ms`.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound on one round trip of [`Conn::call`] (ApiVersions, Metadata, CreateTopics,
/// ListOffsets, Fetch): a broker that accepts connections but never answers fails the run
/// instead of hanging it. Above the 30 s the broker may take for CreateTopics; a caller that
/// asks the broker to wait (Fetch max wait) extends it with [`Conn::set_call_timeout`].
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Highest versions this client encodes and decodes, per API. Capped below topic-ID-only
/// versions (Produce 13, Fetch 13+) so topic names work with every broker.
pub fn client_max_version(key: ApiKey) -> i16 {
    match key {
        ApiKey::Produce => 9,
        ApiKey::Fetch => 12,
        ApiKey::ListOffsets => 7,
        ApiKey::Metadata => 12,
        ApiKey::ApiVersions => 3,
        ApiKey::CreateTopics => 7,
        ApiKey::InitProducerId => 4,
        _ => 0,
    }
}

/// Lowest versions we accept (record batch v2 needs Produce 3 / Fetch 4).
pub fn client_min_version(key: ApiKey) -> i16 {
    match key {
        ApiKey::Produce => 3,
        ApiKey::Fetch => 4,
        ApiKey::ListOffsets => 1,
        ApiKey::Metadata => 1,
        ApiKey::CreateTopics => 2,
        ApiKey::InitProducerId => 0,
        _ => 0,
    }
}

/// Negotiated version per API key.
#[derive(Clone, Debug, Default)]
pub struct Versions(HashMap<i16, i16>);

impl Versions {
    pub fn get(&self, key: ApiKey) -> Result<i16> {
        self.0
            .get(&(key as i16))
            .copied()
            .ok_or_else(|| anyhow!("broker does not support {key:?} in a version we speak"))
    }
}

/// Encodes a request frame (length prefix, header, body).
pub fn encode_frame<R: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    req: &R,
) -> Result<BytesMut> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    header.encode(&mut buf, key.request_header_version(version))?;
    req.encode(&mut buf, version)
        .with_context(|| format!("encoding {key:?} v{version}"))?;
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

/// Strips the response header; returns the correlation id and the body.
pub fn split_response(key: ApiKey, version: i16, mut frame: Bytes) -> Result<(i32, Bytes)> {
    let h = ResponseHeader::decode(&mut frame, key.response_header_version(version))
        .with_context(|| format!("decoding {key:?} response header"))?;
    Ok((h.correlation_id, frame))
}

pub struct FrameReader {
    r: ReadHalf<TcpStream>,
    buf: BytesMut,
}

impl FrameReader {
    /// Reads one whole response frame (without its length prefix).
    pub async fn read_frame(&mut self) -> Result<Bytes> {
        loop {
            if self.buf.len() >= 4 {
                let len = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                ensure!(
                    len >= 0 && (len as usize) <= FRAME_BYTES_MAX,
                    "bad frame length {len}"
                );
                let len = len as usize;
                if self.buf.len() >= 4 + len {
                    self.buf.advance(4);
                    return Ok(self.buf.split_to(len).freeze());
                }
                self.buf.reserve(4 + len - self.buf.len());
            }
            if self.buf.capacity() - self.buf.len() < 64 << 10 {
                self.buf.reserve(256 << 10);
            }
            let start = self.buf.len();
            let cap = self.buf.capacity();
            // SAFETY: the bytes between len and capacity are only exposed to `read`, which
            // writes into them; we then keep only the `n` bytes it reported as written.
            unsafe { self.buf.set_len(cap) };
            let res = self.r.read(&mut self.buf[start..]).await;
            let n = match res {
                Ok(n) => n,
                Err(e) => {
                    // SAFETY: shrinking back to the initialised prefix.
                    unsafe { self.buf.set_len(start) };
                    return Err(e).context("reading from broker");
                }
            };
            // SAFETY: `read` initialised exactly `n` bytes after `start`.
            unsafe { self.buf.set_len(start + n) };
            if n == 0 {
                bail!("broker closed the connection");
            }
        }
    }
}

pub struct FrameWriter {
    w: WriteHalf<TcpStream>,
    /// The socket, for vectored writes (glommio's stream writes one slice at a time). Valid
    /// while `w` (and with it the stream) lives.
    fd: RawFd,
}

/// iovecs per `sendmsg` call (well under Linux's IOV_MAX of 1024).
const IOVECS_PER_CALL: usize = 64;

impl FrameWriter {
    pub async fn write_frame(&mut self, frame: &[u8]) -> Result<()> {
        self.w.write_all(frame).await.context("writing to broker")?;
        self.w.flush().await.context("flushing to broker")
    }

    /// Writes `parts` back to back as one byte stream, with as few system calls as the socket
    /// buffer allows: a non-blocking vectored `sendmsg` first (no copy into a frame buffer);
    /// only when the socket is full does the rest of the current slice wait for room through
    /// glommio.
    pub async fn write_parts(&mut self, parts: &[&[u8]]) -> Result<()> {
        let mut idx = 0;
        let mut off = 0;
        while idx < parts.len() {
            if off == parts[idx].len() {
                idx += 1;
                off = 0;
                continue;
            }
            let mut iov = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; IOVECS_PER_CALL];
            let mut n_iov = 0;
            let mut want = 0;
            for (i, p) in parts[idx..].iter().enumerate() {
                if n_iov == IOVECS_PER_CALL {
                    break;
                }
                let p = if i == 0 { &p[off..] } else { p };
                if p.is_empty() {
                    continue;
                }
                iov[n_iov] = libc::iovec {
                    iov_base: p.as_ptr() as *mut libc::c_void,
                    iov_len: p.len(),
                };
                n_iov += 1;
                want += p.len();
            }
            debug_assert!(n_iov > 0 && want > 0);
            // SAFETY: an all-zero msghdr is valid (no address, no control data).
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = n_iov as _;
            // SAFETY: the iovecs point into `parts`, which outlive this call, and the kernel
            // only reads them; `self.fd` is the open socket owned by `self.w`.
            let sent =
                unsafe { libc::sendmsg(self.fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
            if sent > 0 {
                let mut sent = sent as usize;
                ensure!(sent <= want, "sendmsg reported more bytes than given");
                while sent > 0 {
                    let left = parts[idx].len() - off;
                    if sent >= left {
                        sent -= left;
                        idx += 1;
                        off = 0;
                    } else {
                        off += sent;
                        sent = 0;
                    }
                }
                continue;
            }
            ensure!(sent < 0, "writing to broker: the socket took no bytes");
            let err = std::io::Error::last_os_error();
            match err.kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock => {
                    // Socket buffer full: let glommio wait until the socket takes part of the
                    // current slice, then go on vectored. Waiting without progress for
                    // WRITE_STALL_TIMEOUT means the broker stopped reading (a hung or dead
                    // shard whose socket stays open): fail instead of waiting forever.
                    let write = async { Some(self.w.write(&parts[idx][off..]).await) };
                    let stall = async {
                        glommio::timer::sleep(WRITE_STALL_TIMEOUT).await;
                        None
                    };
                    // The timer goes first: when it fires, the write is not given a last
                    // try. (glommio's write would first retry `send`, and a socket whose
                    // reader stopped still takes a few bytes now and then without ever
                    // becoming writable, so the stall would pass unnoticed, 30 s at a time.)
                    match futures_lite::future::or(stall, write).await {
                        Some(Ok(0)) => bail!("writing to broker: the socket took no bytes"),
                        Some(Ok(n)) => {
                            ensure!(
                                n <= parts[idx].len() - off,
                                "write reported more bytes than given"
                            );
                            off += n;
                        }
                        Some(Err(e)) => return Err(e).context("writing to broker"),
                        None => bail!(
                            "writing to broker: no progress for {WRITE_STALL_TIMEOUT:?} \
                             (the broker stopped reading)"
                        ),
                    }
                }
                _ => return Err(err).context("writing to broker"),
            }
        }
        Ok(())
    }
}

/// Lays out a Produce request (v3..=9) for [`FrameWriter::write_parts`] without copying its
/// record batches: the bytes around the batches (length prefix, header, topic and partition
/// fields, lengths, tagged fields) go into `glue`, and `cuts[i]` is where batch `i` belongs in
/// it. The frame is `glue[..cuts[0]] ++ batch 0 ++ glue[cuts[0]..cuts[1]] ++ batch 1 ++ … ++
/// glue[cuts[n-1]..]`, byte for byte what [`encode_frame`] writes for the same request.
#[allow(clippy::too_many_arguments)]
pub fn encode_produce_glue(
    version: i16,
    correlation_id: i32,
    acks: i16,
    timeout_ms: i32,
    topic: &str,
    batches: &[(i32, &[u8])],
    glue: &mut Vec<u8>,
    cuts: &mut Vec<usize>,
) -> Result<()> {
    ensure!(
        (3..=9).contains(&version),
        "Produce v{version} is not laid out by hand"
    );
    ensure!(topic.len() <= i16::MAX as usize, "topic name too long");
    let flexible = version >= 9;
    glue.clear();
    cuts.clear();
    glue.put_i32(0); // frame length, filled in below
    glue.put_i16(ApiKey::Produce as i16);
    glue.put_i16(version);
    glue.put_i32(correlation_id);
    glue.put_i16(CLIENT_ID.len() as i16); // client id: a nullable string in every header version
    glue.put_slice(CLIENT_ID.as_bytes());
    if flexible {
        put_uvarint(glue, 0); // header tagged fields
        put_uvarint(glue, 0); // transactional id: null compact string
    } else {
        glue.put_i16(-1); // transactional id: null
    }
    glue.put_i16(acks);
    glue.put_i32(timeout_ms);
    if flexible {
        put_uvarint(glue, 2); // one topic
        put_uvarint(glue, topic.len() as u64 + 1);
    } else {
        glue.put_i32(1);
        glue.put_i16(topic.len() as i16);
    }
    glue.put_slice(topic.as_bytes());
    if flexible {
        put_uvarint(glue, batches.len() as u64 + 1);
    } else {
        glue.put_i32(batches.len() as i32);
    }
    let mut total = 0usize;
    for (i, (partition, data)) in batches.iter().enumerate() {
        ensure!(data.len() < i32::MAX as usize, "record batch too large");
        if i > 0 && flexible {
            put_uvarint(glue, 0); // previous partition's tagged fields
        }
        glue.put_i32(*partition);
        if flexible {
            put_uvarint(glue, data.len() as u64 + 1);
        } else {
            glue.put_i32(data.len() as i32);
        }
        cuts.push(glue.len());
        total += data.len();
    }
    if flexible {
        if !batches.is_empty() {
            put_uvarint(glue, 0); // last partition's tagged fields
        }
        put_uvarint(glue, 0); // topic tagged fields
        put_uvarint(glue, 0); // request tagged fields
    }
    total += glue.len() - 4;
    ensure!(total <= i32::MAX as usize, "request too large");
    glue[..4].copy_from_slice(&(total as i32).to_be_bytes());
    debug_assert_eq!(cuts.len(), batches.len());
    Ok(())
}

fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Requests a [`Conn`] may have sent and not yet received the response of. The consumer
/// keeps one Fetch ahead; the bound only catches a caller that stops receiving.
pub const CONN_IN_FLIGHT_MAX: usize = 16;

/// A request sent on a [`Conn`] whose response is still to be received.
#[derive(Clone, Copy, Debug)]
struct Pending {
    correlation_id: i32,
    key: ApiKey,
    version: i16,
}

/// A connection used for request/response calls, splittable for pipelining.
///
/// [`Conn::call`] is one round trip; [`Conn::send`] and [`Conn::receive`] split it so a
/// caller can have a request on the wire while it works on the previous response. Kafka
/// answers the requests of one connection in the order they were sent, so responses are
/// received in send order.
pub struct Conn {
    pub addr: String,
    reader: FrameReader,
    writer: FrameWriter,
    pub versions: Versions,
    next_correlation_id: i32,
    call_timeout: Duration,
    /// Sent requests awaiting their responses, oldest first.
    in_flight: VecDeque<Pending>,
    /// Set when a write or read failed or timed out mid-frame: the byte stream is then at an
    /// unknown position, and reading on would misparse, so every later use fails with this.
    broken: Option<String>,
}

impl Conn {
    /// Connects and negotiates API versions.
    pub async fn connect(addr: &str) -> Result<Conn> {
        let stream = TcpStream::connect_timeout(addr, Duration::from_secs(10))
            .await
            .map_err(|e| anyhow!("connecting to {addr}: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| anyhow!("TCP_NODELAY: {e}"))?;
        let fd = stream.as_raw_fd();
        let (r, w) = futures_lite::io::split(stream);
        let mut conn = Conn {
            addr: addr.to_string(),
            reader: FrameReader {
                r,
                buf: BytesMut::with_capacity(256 << 10),
            },
            writer: FrameWriter { w, fd },
            versions: Versions::default(),
            next_correlation_id: 1,
            call_timeout: CALL_TIMEOUT,
            in_flight: VecDeque::new(),
            broken: None,
        };
        conn.negotiate().await?;
        Ok(conn)
    }

    /// Sets how long one [`Conn::call`] round trip (or one [`Conn::send`] write, or one
    /// [`Conn::receive`] wait) may take before it fails.
    pub fn set_call_timeout(&mut self, timeout: Duration) {
        self.call_timeout = timeout;
    }

    pub fn next_correlation_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        id
    }

    async fn negotiate(&mut self) -> Result<()> {
        // KIP-511: a broker that does not know our ApiVersions version answers v0 with
        // UNSUPPORTED_VERSION and its range; retry at v0 then.
        let mut version = client_max_version(ApiKey::ApiVersions);
        let resp = loop {
            let req = ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
                .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
            let body = self.raw_call(ApiKey::ApiVersions, version, &req).await?;
            let mut b = body.clone();
            let resp = match ApiVersionsResponse::decode(&mut b, version) {
                Ok(r) => r,
                Err(_) if version > 0 => {
                    let mut b = body;
                    ApiVersionsResponse::decode(&mut b, 0).context("ApiVersions v0")?
                }
                Err(e) => return Err(e).context("decoding ApiVersions"),
            };
            if resp.error_code == 35 && version > 0 {
                version = 0;
                continue;
            }
            ensure!(
                resp.error_code == 0,
                "ApiVersions error {}",
                resp.error_code
            );
            break resp;
        };
        let mut map = HashMap::new();
        for k in &resp.api_keys {
            let Ok(key) = ApiKey::try_from(k.api_key) else {
                continue;
            };
            let ours = client_max_version(key);
            let v = ours.min(k.max_version);
            if v >= client_min_version(key).max(k.min_version) && ours > 0 {
                map.insert(k.api_key, v);
            }
        }
        map.insert(ApiKey::ApiVersions as i16, version);
        self.versions = Versions(map);
        Ok(())
    }

    /// Requests sent and not yet received.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    fn usable(&self) -> Result<()> {
        match &self.broken {
            None => Ok(()),
            Some(why) => bail!(
                "connection to {} unusable after an earlier failure: {why}",
                self.addr
            ),
        }
    }

    /// Records that the stream is at an unknown position (see `broken`) and passes `e` on.
    fn poison<T>(&mut self, e: anyhow::Error) -> Result<T> {
        self.broken.get_or_insert_with(|| format!("{e:#}"));
        Err(e)
    }

    /// Writes one request frame; returns its correlation id.
    async fn raw_send<R: Encodable>(&mut self, key: ApiKey, version: i16, req: &R) -> Result<i32> {
        self.usable()?;
        ensure!(
            self.in_flight.len() < CONN_IN_FLIGHT_MAX,
            "{key:?} to {}: {} requests already in flight",
            self.addr,
            self.in_flight.len()
        );
        let corr = self.next_correlation_id();
        let frame = encode_frame(key, version, corr, req)?;
        let limit = self.call_timeout;
        let addr = self.addr.clone();
        let write = self.writer.write_frame(&frame);
        let timeout = async {
            glommio::timer::sleep(limit).await;
            Err(anyhow!(
                "{key:?} to {addr}: request not written within {limit:?}"
            ))
        };
        if let Err(e) = futures_lite::future::or(write, timeout).await {
            // Part of the frame may be on the wire.
            return self.poison(e);
        }
        self.in_flight.push_back(Pending {
            correlation_id: corr,
            key,
            version,
        });
        Ok(corr)
    }

    /// Reads the response to `corr`, which must be the oldest request in flight; returns its
    /// body. The call timeout counts from this call, not from the send: time the caller spent
    /// between the two is its own, not the broker's.
    async fn raw_receive(&mut self, corr: i32) -> Result<(ApiKey, i16, Bytes)> {
        self.usable()?;
        let Some(&due) = self.in_flight.front() else {
            bail!(
                "no request in flight on {} (receive of correlation id {corr})",
                self.addr
            );
        };
        ensure!(
            due.correlation_id == corr,
            "receive of correlation id {corr} on {}, but {} ({:?}) is answered first",
            self.addr,
            due.correlation_id,
            due.key
        );
        let (key, version) = (due.key, due.version);
        let limit = self.call_timeout;
        let addr = self.addr.clone();
        let read = self.reader.read_frame();
        let timeout = async {
            glommio::timer::sleep(limit).await;
            Err(anyhow!("{key:?} to {addr}: no response within {limit:?}"))
        };
        let frame = match futures_lite::future::or(read, timeout).await {
            Ok(f) => f,
            // On timeout the connection is left mid-exchange; the error ends its use.
            Err(e) => return self.poison(e),
        };
        self.in_flight.pop_front();
        let (got, body) = match split_response(key, version, frame) {
            Ok(x) => x,
            Err(e) => return self.poison(e),
        };
        if got != corr {
            return self.poison(anyhow!(
                "{key:?} to {}: correlation id {got}, expected {corr}",
                self.addr
            ));
        }
        Ok((key, version, body))
    }

    async fn raw_call<R: Encodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &R,
    ) -> Result<Bytes> {
        let corr = self.raw_send(key, version, req).await?;
        Ok(self.raw_receive(corr).await?.2)
    }

    /// Sends `req` at the negotiated version without waiting for its response; returns the
    /// correlation id to pass to [`Conn::receive`].
    pub async fn send<R: Request>(&mut self, req: &R) -> Result<i32> {
        let key = api_key::<R>()?;
        let version = self.versions.get(key)?;
        self.raw_send(key, version, req).await
    }

    /// Receives and decodes the response to the request [`Conn::send`] returned `corr` for;
    /// that request must be the oldest one in flight and of type `R`.
    pub async fn receive<R: Request>(&mut self, corr: i32) -> Result<R::Response> {
        let key = api_key::<R>()?;
        if let Some(due) = self.in_flight.front() {
            ensure!(
                due.correlation_id != corr || due.key == key,
                "correlation id {corr} on {} is a {:?}, received as {key:?}",
                self.addr,
                due.key
            );
        }
        let (_, version, mut body) = self.raw_receive(corr).await?;
        R::Response::decode(&mut body, version)
            .with_context(|| format!("decoding {key:?} v{version} response"))
    }

    /// One request/response round trip at the negotiated version.
    pub async fn call<R: Request>(&mut self, req: &R) -> Result<R::Response> {
        let corr = self.send(req).await?;
        self.receive::<R>(corr).await
    }

    /// Ends the connection with a FIN. Refuses while responses are outstanding: closing a
    /// socket with unread bytes makes the kernel reset it, and the broker would see its
    /// response writes fail.
    pub async fn close(mut self) -> Result<()> {
        ensure!(
            self.in_flight.is_empty(),
            "closing {} with {} responses not received",
            self.addr,
            self.in_flight.len()
        );
        self.writer
            .w
            .close()
            .await
            .with_context(|| format!("closing the connection to {}", self.addr))
    }

    /// Splits the connection for pipelining. Only between exchanges: a response still due
    /// would be read by the new owner as the answer to its own first request.
    pub fn into_split(self) -> (FrameReader, FrameWriter, Versions) {
        assert!(
            self.in_flight.is_empty() && self.broken.is_none(),
            "split of {} mid-exchange",
            self.addr
        );
        (self.reader, self.writer, self.versions)
    }
}

fn api_key<R: Request>() -> Result<ApiKey> {
    ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown api key {}", R::KEY))
}

/// Leaders and broker addresses for the topics of a run.
#[derive(Clone, Debug, Default)]
pub struct ClusterMeta {
    pub brokers: HashMap<i32, String>,
    /// topic -> leader broker id per partition index
    pub leaders: HashMap<String, Vec<i32>>,
}

impl ClusterMeta {
    pub fn leader_addr(&self, topic: &str, partition: i32) -> Result<(i32, String)> {
        let leaders = self
            .leaders
            .get(topic)
            .ok_or_else(|| anyhow!("no metadata for topic {topic}"))?;
        let id = *leaders
            .get(partition as usize)
            .ok_or_else(|| anyhow!("no partition {partition} in {topic}"))?;
        let addr = self
            .brokers
            .get(&id)
            .ok_or_else(|| anyhow!("leader {id} of {topic}/{partition} not in broker list"))?;
        Ok((id, addr.clone()))
    }
}

/// Options that shape how topics are resolved.
#[derive(Clone, Debug)]
pub struct TopicSetup {
    pub partitions: i32,
    pub replication_factor: i16,
    pub create: bool,
    /// Connect to this address instead of every advertised broker address (to go through a
    /// proxy or NAT).
    pub broker_override: Option<String>,
}

/// Fetches metadata for `topics`, creating missing ones if asked, and waits (up to 30 s) until
/// every partition has a leader.
pub async fn resolve_topics(
    conn: &mut Conn,
    topics: &[String],
    setup: &TopicSetup,
) -> Result<ClusterMeta> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut created = false;
    loop {
        let req = MetadataRequest::default()
            .with_topics(Some(
                topics
                    .iter()
                    .map(|t| {
                        kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                    })
                    .collect(),
            ))
            .with_allow_auto_topic_creation(false);
        let resp = conn.call(&req).await?;
        let mut meta = ClusterMeta::default();
        for b in &resp.brokers {
            let addr = match &setup.broker_override {
                Some(a) => a.clone(),
                None => format!("{}:{}", b.host.as_str(), b.port),
            };
            meta.brokers.insert(b.node_id.0, addr);
        }
        let mut missing = Vec::new();
        let mut not_ready = Vec::new();
        for t in &resp.topics {
            let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
            match t.error_code {
                0 => {}
                3 => {
                    missing.push(name);
                    continue;
                }
                // LEADER_NOT_AVAILABLE etc.: retry until the deadline.
                _ => {
                    not_ready.push(format!("{name}: error {}", t.error_code));
                    continue;
                }
            }
            let mut parts: Vec<_> = t
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.leader_id.0, p.error_code))
                .collect();
            parts.sort();
            let ready = !parts.is_empty()
                && parts
                    .iter()
                    .enumerate()
                    .all(|(i, p)| p.0 == i as i32 && p.1 >= 0 && p.2 == 0);
            if !ready {
                not_ready.push(format!("{name}: partitions not ready"));
                continue;
            }
            meta.leaders
                .insert(name, parts.iter().map(|p| p.1).collect());
        }
        if !missing.is_empty() {
            ensure!(
                setup.create,
                "topics do not exist: {missing:?} (pass --create-topics)"
            );
            if !created {
                create_topics(conn, &missing, setup).await?;
                created = true;
            }
        }
        if missing.is_empty() && not_ready.is_empty() && meta.leaders.len() == topics.len() {
            return Ok(meta);
        }
        if std::time::Instant::now() > deadline {
            bail!("topics not ready after 30 s: missing {missing:?}, {not_ready:?}");
        }
        glommio::timer::sleep(Duration::from_millis(200)).await;
    }
}

async fn create_topics(conn: &mut Conn, topics: &[String], setup: &TopicSetup) -> Result<()> {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    let req = CreateTopicsRequest::default()
        .with_topics(
            topics
                .iter()
                .map(|t| {
                    CreatableTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t.clone())))
                        .with_num_partitions(setup.partitions)
                        .with_replication_factor(setup.replication_factor)
                })
                .collect(),
        )
        .with_timeout_ms(30_000);
    let resp = conn.call(&req).await?;
    for t in &resp.topics {
        // 36 = TOPIC_ALREADY_EXISTS: a concurrent creator won; fine.
        ensure!(
            t.error_code == 0 || t.error_code == 36,
            "CreateTopics {}: error {} {:?}",
            t.name.0.as_str(),
            t.error_code,
            t.error_message.as_ref().map(|m| m.to_string())
        );
    }
    Ok(())
}

/// Special timestamps of ListOffsets.
pub const LATEST: i64 = -1;
pub const EARLIEST: i64 = -2;

/// Returns the offset for `timestamp` (LATEST/EARLIEST) of each partition, in order.
pub async fn list_offsets(
    conn: &mut Conn,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> Result<Vec<i64>> {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(p)
                            .with_current_leader_epoch(-1)
                            .with_timestamp(timestamp)
                    })
                    .collect(),
            )]);
    let resp = conn.call(&req).await?;
    let mut out = Vec::with_capacity(partitions.len());
    for &p in partitions {
        let pr = resp
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|x| x.partition_index == p)
            .ok_or_else(|| anyhow!("ListOffsets: no answer for {topic}/{p}"))?;
        ensure!(
            pr.error_code == 0,
            "ListOffsets {topic}/{p}: error {}",
            pr.error_code
        );
        out.push(pr.offset);
    }
    Ok(out)
}

/// Gets an idempotent producer id and epoch.
pub async fn init_producer_id(conn: &mut Conn) -> Result<(i64, i16)> {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(kafka_protocol::messages::ProducerId(-1))
        .with_producer_epoch(-1);
    let resp = conn.call(&req).await?;
    ensure!(
        resp.error_code == 0,
        "InitProducerId error {}",
        resp.error_code
    );
    Ok((resp.producer_id.0, resp.producer_epoch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ProduceRequest;
    use kafka_protocol::protocol::decode_request_header_from_buffer;

    /// A stand-in broker on a std thread: answers ApiVersions (offering Metadata v12) and
    /// Metadata, in order, to the first `answers` requests; then reads on without answering.
    fn fake_broker(answers: usize) -> (String, std::thread::JoinHandle<()>) {
        use kafka_protocol::messages::api_versions_response::ApiVersion;
        use kafka_protocol::messages::MetadataResponse;
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let h = std::thread::spawn(move || {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let mut answered = 0;
            loop {
                let mut len = [0u8; 4];
                if s.read_exact(&mut len).is_err() {
                    return;
                }
                let mut frame = vec![0u8; i32::from_be_bytes(len) as usize];
                if s.read_exact(&mut frame).is_err() {
                    return;
                }
                if answered == answers {
                    continue;
                }
                answered += 1;
                let mut req = Bytes::from(frame);
                let h = decode_request_header_from_buffer(&mut req).expect("header");
                let key = ApiKey::try_from(h.request_api_key).expect("key");
                let v = h.request_api_version;
                let mut out = BytesMut::new();
                out.put_i32(0);
                ResponseHeader::default()
                    .with_correlation_id(h.correlation_id)
                    .encode(&mut out, key.response_header_version(v))
                    .expect("encode header");
                match key {
                    ApiKey::ApiVersions => ApiVersionsResponse::default()
                        .with_api_keys(vec![ApiVersion::default()
                            .with_api_key(ApiKey::Metadata as i16)
                            .with_min_version(0)
                            .with_max_version(12)])
                        .encode(&mut out, v),
                    _ => MetadataResponse::default()
                        .with_throttle_time_ms(h.correlation_id)
                        .encode(&mut out, v),
                }
                .expect("encode body");
                let n = (out.len() - 4) as i32;
                out[..4].copy_from_slice(&n.to_be_bytes());
                if s.write_all(&out).is_err() {
                    return;
                }
            }
        });
        (addr, h)
    }

    fn on_glommio<F, Fut>(f: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(f)
            .expect("executor")
            .join()
            .expect("test body");
    }

    /// send/receive pair responses with requests in send order; a receive out of order is an
    /// error that leaves the connection usable; `call` still works around them.
    #[test]
    fn send_and_receive_in_order() {
        let (addr, broker) = fake_broker(usize::MAX);
        on_glommio(move || async move {
            let mut c = Conn::connect(&addr).await.expect("connect");
            let req = MetadataRequest::default().with_topics(Some(vec![]));
            let a = c.send(&req).await.expect("send a");
            let b = c.send(&req).await.expect("send b");
            assert_eq!(c.in_flight(), 2);
            let err = c
                .receive::<MetadataRequest>(b)
                .await
                .expect_err("b before a");
            assert!(format!("{err:#}").contains("answered first"), "{err:#}");
            // The fake broker echoes the correlation id in throttle_time_ms.
            let ra = c.receive::<MetadataRequest>(a).await.expect("receive a");
            assert_eq!(ra.throttle_time_ms, a);
            let rb = c.receive::<MetadataRequest>(b).await.expect("receive b");
            assert_eq!(rb.throttle_time_ms, b);
            assert_eq!(c.in_flight(), 0);
            assert!(c.receive::<MetadataRequest>(b + 1).await.is_err());
            let r = c.call(&req).await.expect("call");
            assert_eq!(r.throttle_time_ms, b + 1);
            c.close().await.expect("close");
        });
        broker.join().expect("fake broker");
    }

    /// A response that does not come within the call timeout fails the receive, and the
    /// connection refuses further use instead of reading a late frame as another answer.
    #[test]
    fn receive_timeout_poisons_the_connection() {
        // ApiVersions and one Metadata are answered; the second Metadata never is.
        let (addr, broker) = fake_broker(2);
        on_glommio(move || async move {
            let mut c = Conn::connect(&addr).await.expect("connect");
            // Long enough for the answered request on a loaded machine.
            c.set_call_timeout(Duration::from_secs(2));
            let req = MetadataRequest::default().with_topics(Some(vec![]));
            let a = c.send(&req).await.expect("send a");
            let b = c.send(&req).await.expect("send b");
            c.receive::<MetadataRequest>(a)
                .await
                .expect("a is answered");
            let err = c.receive::<MetadataRequest>(b).await.expect_err("b is not");
            assert!(format!("{err:#}").contains("no response within"), "{err:#}");
            let err = c.send(&req).await.expect_err("poisoned");
            assert!(format!("{err:#}").contains("unusable"), "{err:#}");
        });
        // The connection closed with the executor: the fake broker's read ends.
        broker.join().expect("fake broker");
    }

    #[test]
    fn frames_decode_with_kafka_protocol() {
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(1234);
        for v in [3i16, 9] {
            let f = encode_frame(ApiKey::Produce, v, 77, &req).expect("encode");
            let len = i32::from_be_bytes([f[0], f[1], f[2], f[3]]) as usize;
            assert_eq!(len, f.len() - 4);
            let mut body = f.freeze().slice(4..);
            let h = decode_request_header_from_buffer(&mut body).expect("header");
            assert_eq!(h.correlation_id, 77);
            assert_eq!(h.request_api_version, v);
            let back = ProduceRequest::decode(&mut body, v).expect("body");
            assert_eq!(back.acks, -1);
            assert_eq!(back.timeout_ms, 1234);
        }
    }

    #[test]
    fn produce_glue_matches_kafka_protocol_encoding() {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        let batches: Vec<(i32, Bytes)> = vec![
            (3, Bytes::from(vec![7u8; 300])),
            (0, Bytes::from_static(b"x")),
            (
                11,
                Bytes::from((0..=255u8).cycle().take(70_000).collect::<Vec<u8>>()),
            ),
        ];
        let mut glue = Vec::new();
        let mut cuts = Vec::new();
        for v in 3i16..=9 {
            for n in [0, 1, 3] {
                let req = ProduceRequest::default()
                    .with_acks(-1)
                    .with_timeout_ms(30_000)
                    .with_topic_data(vec![TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_static_str("bench-topic")))
                        .with_partition_data(
                            batches[..n]
                                .iter()
                                .map(|(p, d)| {
                                    PartitionProduceData::default()
                                        .with_index(*p)
                                        .with_records(Some(d.clone()))
                                })
                                .collect(),
                        )]);
                let want = encode_frame(ApiKey::Produce, v, 4242, &req).expect("encode");
                let refs: Vec<(i32, &[u8])> =
                    batches[..n].iter().map(|(p, d)| (*p, &d[..])).collect();
                encode_produce_glue(
                    v,
                    4242,
                    -1,
                    30_000,
                    "bench-topic",
                    &refs,
                    &mut glue,
                    &mut cuts,
                )
                .expect("glue");
                let mut got = Vec::new();
                let mut at = 0;
                for (cut, (_, d)) in cuts.iter().zip(&refs) {
                    got.extend_from_slice(&glue[at..*cut]);
                    got.extend_from_slice(d);
                    at = *cut;
                }
                got.extend_from_slice(&glue[at..]);
                assert_eq!(got, &want[..], "Produce v{v} with {n} partitions");
            }
        }
        assert!(encode_produce_glue(13, 1, 1, 1, "t", &[], &mut glue, &mut cuts).is_err());
    }
}
