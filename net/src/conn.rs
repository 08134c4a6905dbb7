//! Serving Kafka connections on a glommio shard.
//!
//! One connection = two local tasks:
//! - the *reader* (the `serve_connection` future itself) splits frames off the socket, parses
//!   the request header and spawns the handler for each request as its own local task, at most
//!   `max_in_flight` at a time (a semaphore permit travels with each request until its response
//!   is written, which bounds the memory a pipelining client can pin);
//! - the *writer* takes the spawned requests in arrival order, waits for each one's result and
//!   writes responses strictly in request order (Kafka clients pipeline and match responses by
//!   order), gathering every response that is already finished into one batch of writes.
//!
//! Frame-level garbage (bad size, unreadable header) and `HandlerResult::Close` end the
//! connection; a handler that panics is caught, logged, and closes only its own connection.
//!
//! A connection can move to another shard ([`Handoff`]): when the handler's notes in the
//! connection's [`Affinity`] show that its requests go to partitions of one other shard, the
//! reader stops reading, the writer writes every response still owed, and the socket, with the
//! bytes read but not yet handled, goes to that shard through [`Handler::hand_off`], whose
//! [`ConnHome::adopt`] serves it from there on. Requests keep their order: only one reader
//! reads the socket at any time, and nothing is in flight while it changes hands.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::future::poll_once;
use futures_lite::io::{AsyncWrite, AsyncWriteExt};
use futures_lite::FutureExt;
use glommio::channels::local_channel::{self, LocalReceiver};
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::{Semaphore, StaticPermit};
use glommio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::affinity::Affinity;
use crate::codec::{parse_request_header, RequestFrame};
use crate::frame::{FrameReader, DEFAULT_MAX_FRAME_BYTES};

/// Implemented by the broker: one instance per shard, shared by that shard's connections.
pub trait Handler: 'static {
    /// Handles one request. Runs as its own local task, concurrently with other requests of
    /// the same connection (up to `max_in_flight`); the connection writes the results in
    /// request order regardless of completion order.
    fn handle(&self, req: RequestFrame, conn: &ConnInfo) -> impl Future<Output = HandlerResult>;

    /// Gives the connection to shard `to` (whose [`ConnHome::adopt`] should serve it), when
    /// its [`Affinity`] asks for a move. The connection comes back as `Err` when it could not
    /// be delivered, and is then served here again. By default connections never move.
    fn hand_off(&self, to: usize, conn: Handoff) -> impl Future<Output = Result<(), Handoff>> {
        let _ = to;
        async move { Err(conn) }
    }
}

/// A connection on its way to another shard: the socket, and the bytes already read from it
/// that no request was made of yet. `Send`, to cross between shards.
#[derive(Debug)]
pub struct Handoff {
    pub fd: OwnedFd,
    pub buffered: Bytes,
    /// The connection's id ([`ConnInfo::id`]), kept for its whole life.
    pub id: u64,
    pub peer: SocketAddr,
    /// Moves so far ([`Affinity::moves`]), this one included.
    pub moves: u32,
}

/// What to do after a request.
#[derive(Debug)]
pub enum HandlerResult {
    /// A complete framed response (size prefix included), as one or more chunks.
    Respond(Vec<Bytes>),
    /// Send nothing (Produce with acks=0).
    NoResponse,
    /// Close the connection after the responses to earlier requests are written.
    Close,
}

/// Per-connection limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Largest request frame accepted (Kafka `socket.request.max.bytes`, default 100 MiB).
    pub max_frame_bytes: usize,
    /// Requests of one connection processed concurrently (pipelining depth).
    pub max_in_flight: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_in_flight: 16,
        }
    }
}

/// Identity of a connection, passed to the handler with every request.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Unique across shards of this process: the accepting shard's index in the top 16 bits.
    pub id: u64,
    pub peer: SocketAddr,
    /// The shard serving the connection now.
    pub shard: usize,
    /// Where the connection's data requests went: the handler notes them, and the connection
    /// moves when they show it belongs on another shard.
    pub affinity: Rc<Affinity>,
    /// Fires when the connection stops reading for good (the peer closed it, it idled out,
    /// or sent garbage): a request parked for a long time (a long-poll fetch) may stop
    /// waiting, as nobody may read its answer. Not fired when the connection moves.
    pub closed: ConnClosed,
}

/// A connection's "stopped reading for good" signal (see [`ConnInfo::closed`]).
#[derive(Clone)]
pub struct ConnClosed(Rc<Semaphore>);

impl ConnClosed {
    pub fn new() -> ConnClosed {
        // No permit is ever given: waiters wake only when the semaphore is closed.
        ConnClosed(Rc::new(Semaphore::new(0)))
    }

    pub fn close(&self) {
        self.0.close();
    }

    /// Resolves once [`close`](Self::close) was called (at once if it was already).
    pub async fn wait(&self) {
        while self.0.acquire(1).await.is_ok() {
            // ok: unreachable in practice, nobody signals permits; wait again if one does.
        }
    }
}

impl Default for ConnClosed {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ConnClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnClosed")
    }
}

/// Responses gathered into one batch of writes before flushing, at most.
const WRITE_BATCH_BYTES_MAX: usize = 1 << 20;

/// A request handed from the reader to the writer.
struct InFlight {
    handle: JoinHandle<Option<HandlerResult>>,
    /// The handle's output when the writer already polled it to completion.
    ready: Option<Option<Option<HandlerResult>>>,
    correlation_id: i32,
    api_key: i16,
    _permit: StaticPermit,
}

/// Serves one connection until EOF, error, garbage or a `Close` from the handler, or until
/// another shard took it over ([`Handler::hand_off`]). Never panics on input.
pub async fn serve_connection<H: Handler>(
    stream: TcpStream,
    handler: Rc<H>,
    limits: ConnLimits,
    info: ConnInfo,
    idle_timeout: Option<Duration>,
) {
    serve_from(stream, Bytes::new(), handler, limits, info, idle_timeout).await
}

/// [`serve_connection`] for a stream whose first bytes, `buffered`, were already read.
async fn serve_from<H: Handler>(
    mut stream: TcpStream,
    mut buffered: Bytes,
    handler: Rc<H>,
    limits: ConnLimits,
    mut info: ConnInfo,
    idle_timeout: Option<Duration>,
) {
    if let Err(e) = stream.set_nodelay(true) {
        debug!(conn = info.id, error = %e, "set_nodelay failed");
    }
    loop {
        let Some((to, handoff)) =
            serve_until_move(stream, buffered, &handler, limits, &info, idle_timeout).await
        else {
            return;
        };
        match handler.hand_off(to, handoff).await {
            Ok(()) => {
                debug!(conn = info.id, from = info.shard, to, "connection moved");
                return;
            }
            Err(back) => {
                debug!(
                    conn = info.id,
                    shard = info.shard,
                    to,
                    "connection could not move; staying"
                );
                // SAFETY: `back.fd` is the connection's socket, owned by the handoff and
                // released here to the new stream, which becomes its only owner.
                stream = unsafe { TcpStream::from_raw_fd(back.fd.into_raw_fd()) };
                buffered = back.buffered;
                // Counted as a move, so the next attempt needs a longer run of requests.
                info.affinity = Rc::new(Affinity::new(info.shard, back.moves));
            }
        }
    }
}

/// Serves the connection until it ends (`None`) or its affinity asks to move it: then every
/// response owed has been written, and the socket comes back as a [`Handoff`] for shard `to`.
async fn serve_until_move<H: Handler>(
    stream: TcpStream,
    buffered: Bytes,
    handler: &Rc<H>,
    limits: ConnLimits,
    info: &ConnInfo,
    idle_timeout: Option<Duration>,
) -> Option<(usize, Handoff)> {
    let fd = stream.as_raw_fd();
    let max_in_flight = limits.max_in_flight.max(1);
    let (read_half, write_half) = futures_lite::io::split(stream);
    let (tx, rx) = local_channel::new_bounded::<InFlight>(max_in_flight);
    let permits = Rc::new(Semaphore::new(max_in_flight as u64));
    let moving = Rc::new(Cell::new(false));
    let writer = glommio::spawn_local(write_loop(
        write_half,
        rx,
        permits.clone(),
        fd,
        info.clone(),
        moving.clone(),
    ))
    .detach();

    let mut frames =
        FrameReader::with_socket(read_half, limits.max_frame_bytes, fd).with_buffered(&buffered);
    drop(buffered);
    let idle = Rc::new(Cell::new(false));
    // Dropped (so cancelled) when the reader stops, before the socket can be closed.
    let watchdog = idle_timeout
        .map(|t| glommio::spawn_local(watch_idle(frames.received(), t, fd, idle.clone())));
    let mut move_to = None;
    loop {
        // Checked between requests: a move must not split a frame between two readers.
        if let Some(to) = info.affinity.wanted_move() {
            move_to = Some(to);
            moving.set(true);
            break;
        }
        let frame = match frames.next_frame().await {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(_) if idle.get() => {
                info!(conn = info.id, peer = %info.peer, "closing idle connection");
                break;
            }
            Ok(None) => {
                debug!(conn = info.id, peer = %info.peer, "connection closed by peer");
                break;
            }
            Err(e) => {
                warn!(conn = info.id, peer = %info.peer, error = %e, "closing connection: bad frame");
                break;
            }
        };
        let req = match parse_request_header(frame) {
            Ok(req) => req,
            Err(e) => {
                warn!(conn = info.id, peer = %info.peer, error = %e, "closing connection: bad request header");
                break;
            }
        };
        // Wait for a pipelining slot; the permit is released once the response is written.
        let Ok(permit) = permits.acquire_static_permit(1).await else {
            break; // the writer closed the semaphore on its way out: nothing more to do
        };
        let correlation_id = req.correlation_id;
        let api_key = req.api_key;
        let task_handler = handler.clone();
        let task_info = info.clone();
        let handle = glommio::spawn_local(async move {
            let fut = task_handler.handle(req, &task_info);
            match AssertUnwindSafe(fut).catch_unwind().await {
                Ok(result) => Some(result),
                Err(_) => {
                    warn!(
                        conn = task_info.id,
                        api_key, correlation_id, "request handler panicked; closing connection"
                    );
                    None
                }
            }
        })
        .detach();
        let in_flight = InFlight {
            handle,
            ready: None,
            correlation_id,
            api_key,
            _permit: permit,
        };
        if tx.send(in_flight).await.is_err() {
            debug!(conn = info.id, "writer finished; stop reading");
            break;
        }
    }
    drop(watchdog);
    if move_to.is_none() {
        // Long polls still in flight may answer now instead of at their deadline.
        info.closed.close();
    }
    // Dropping the sender lets the writer drain what is in flight and then finish.
    drop(tx);
    let drained = writer.await.unwrap_or(false);
    let to = move_to?;
    if !drained || idle.get() {
        // The writer failed or was told to close: the connection ends here after all.
        shutdown_socket(fd);
        return None;
    }
    // The halves close `fd` when dropped; the handoff keeps the socket open through its own
    // descriptor.
    // SAFETY: `fd` is the connection's socket, open while `frames` (the read half) lives;
    // F_DUPFD_CLOEXEC only creates a new descriptor for it.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        warn!(conn = info.id, error = %io::Error::last_os_error(),
            "cannot duplicate the socket to move the connection; closing it");
        shutdown_socket(fd);
        return None;
    }
    // SAFETY: `dup` was just created by fcntl and is owned by nothing else.
    let owned = unsafe { OwnedFd::from_raw_fd(dup) };
    let handoff = Handoff {
        fd: owned,
        buffered: frames.take_buffered(),
        id: info.id,
        peer: info.peer,
        moves: info.affinity.moves().saturating_add(1),
    };
    drop(frames);
    Some((to, handoff))
}

/// Kafka's `connections.max.idle.ms`: ends the connection's reading once no byte has arrived
/// for `timeout` (checked twice per timeout, so after 1 to 1.5 timeouts). Shutting down the
/// read side wakes the reader with an end of stream; responses to requests already in
/// flight are still written.
///
/// Why a watchdog instead of a read timeout on the socket: glommio's read timeout inserts a
/// reactor timer (a clock read and a B-tree insert) for every read that waits and removes
/// it for every read that completes, thousands of times a second under load; with the
/// watchdog, the broker's samples in `clock_gettime` and the timer B-tree fell from about 5%
/// to about 2.5% at 1 KiB x 12 partitions. This sleeps on the reactor's timer twice per
/// timeout instead.
async fn watch_idle(received: Rc<Cell<u64>>, timeout: Duration, fd: RawFd, fired: Rc<Cell<bool>>) {
    let step = (timeout / 2).max(Duration::from_millis(1));
    let mut seen = received.get();
    let mut quiet = Duration::ZERO;
    loop {
        glommio::timer::sleep(step).await;
        let now = received.get();
        if now != seen {
            seen = now;
            quiet = Duration::ZERO;
            continue;
        }
        quiet += step;
        if quiet >= timeout {
            fired.set(true);
            // SAFETY: this task is cancelled (dropped) by `serve_connection` before the
            // stream that owns `fd` can be dropped, so `fd` is still this connection's
            // socket; shutdown does not close or invalidate the descriptor.
            let rc = unsafe { libc::shutdown(fd, libc::SHUT_RD) };
            if rc != 0 {
                debug!(fd, error = %io::Error::last_os_error(), "idle shutdown failed");
            }
            return;
        }
    }
}

/// Shuts the socket down both ways, waking a reader blocked on it.
fn shutdown_socket(fd: RawFd) {
    // SAFETY: `fd` belongs to the connection's TcpStream, which is alive (owned by the read and
    // write halves) for as long as the writer task that calls this runs; shutdown does not
    // close or invalidate the descriptor.
    let rc = unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    if rc != 0 {
        debug!(fd, error = %io::Error::last_os_error(), "shutdown failed");
    }
}

/// Writes responses in request order until the reader stops sending requests (returns
/// true: every response was written) or the connection must close (false). The socket is
/// shut down on the way out, except after a drain for a move (`moving`).
async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    rx: LocalReceiver<InFlight>,
    permits: Rc<Semaphore>,
    fd: RawFd,
    info: ConnInfo,
    moving: Rc<Cell<bool>>,
) -> bool {
    let mut next: Option<InFlight> = None;
    let mut batch: Vec<Bytes> = Vec::new();
    let mut done: Vec<InFlight> = Vec::new();
    let mut close = false;
    'outer: loop {
        let first = match next.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => break,
            },
        };
        let mut current = first;
        let mut batch_bytes = 0usize;
        loop {
            let result = match current.ready.take() {
                Some(ready) => ready,
                None => (&mut current.handle).await,
            };
            match result.flatten() {
                Some(HandlerResult::Respond(chunks)) => {
                    batch_bytes += chunks.iter().map(Bytes::len).sum::<usize>();
                    batch.extend(chunks);
                }
                Some(HandlerResult::NoResponse) => {}
                Some(HandlerResult::Close) => {
                    debug!(
                        conn = info.id,
                        api_key = current.api_key,
                        correlation_id = current.correlation_id,
                        "handler asked to close the connection"
                    );
                    close = true;
                }
                // The handler panicked (already logged) or its task was cancelled.
                None => close = true,
            }
            done.push(current);
            if close || batch_bytes >= WRITE_BATCH_BYTES_MAX {
                break;
            }
            // Add the next request to this batch only if its response is already finished;
            // otherwise write what we have first, so a slow request never delays finished
            // responses ahead of it.
            let Some(Some(mut candidate)) = poll_once(rx.recv()).await else {
                break;
            };
            match poll_once(&mut candidate.handle).await {
                Some(ready) => {
                    candidate.ready = Some(ready);
                    current = candidate;
                }
                None => {
                    next = Some(candidate);
                    break;
                }
            }
        }
        if let Err(e) = write_batch(&mut writer, fd, &batch).await {
            debug!(conn = info.id, error = %e, "write failed; closing connection");
            close = true;
        }
        batch.clear();
        done.clear(); // releases the pipelining slots
        if close {
            break 'outer;
        }
    }
    let flushed = writer.flush().await.is_ok();
    // A reader waiting for a pipelining slot must not wait for permits held by requests that
    // will never be written.
    permits.close();
    let drained = !close && flushed;
    if !(drained && moving.get()) {
        // Wake the reader if it is blocked on the socket; it will see EOF and stop.
        shutdown_socket(fd);
    }
    drained
}

/// Writes `chunks` back to back with gathered `sendmsg` calls straight from the chunks' memory
/// (no joining copy). When the socket buffer is full, part of the current chunk goes through
/// glommio's `write`, which parks the task until the socket is writable; then gathering resumes.
async fn write_batch<W: AsyncWrite + Unpin>(
    writer: &mut W,
    fd: RawFd,
    chunks: &[Bytes],
) -> io::Result<()> {
    let mut idx = 0;
    let mut offset = 0;
    while idx < chunks.len() {
        if offset >= chunks[idx].len() {
            idx += 1;
            offset = 0;
            continue;
        }
        let written = match send_gathered(fd, &chunks[idx..], offset) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                writer.write(&chunks[idx][offset..]).await?
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        // Advance the (chunk, offset) cursor by `written` bytes.
        let mut left = written;
        while left > 0 && idx < chunks.len() {
            let in_chunk = chunks[idx].len() - offset;
            if left < in_chunk {
                offset += left;
                left = 0;
            } else {
                left -= in_chunk;
                idx += 1;
                offset = 0;
            }
        }
        debug_assert_eq!(left, 0, "kernel reported more bytes than we offered");
    }
    Ok(())
}

/// iovecs per `sendmsg` (well under Linux's IOV_MAX of 1024).
const IOVECS_MAX: usize = 64;

/// One non-blocking `sendmsg` of up to [`IOVECS_MAX`] chunks, the first starting at `offset`.
fn send_gathered(fd: RawFd, chunks: &[Bytes], offset: usize) -> io::Result<usize> {
    let mut iov: Vec<libc::iovec> = Vec::with_capacity(chunks.len().min(IOVECS_MAX));
    for (i, chunk) in chunks.iter().take(IOVECS_MAX).enumerate() {
        let slice = if i == 0 { &chunk[offset..] } else { &chunk[..] };
        if slice.is_empty() {
            continue;
        }
        iov.push(libc::iovec {
            iov_base: slice.as_ptr() as *mut libc::c_void,
            iov_len: slice.len(),
        });
    }
    if iov.is_empty() {
        return Ok(0);
    }
    // SAFETY: an all-zero msghdr is a valid value (null name/control pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len() as _;
    // SAFETY: `fd` is the connection's socket, kept open by the stream halves for as long as
    // the writer runs; every iovec points into a `Bytes` in `chunks`, borrowed for the whole
    // call, and the kernel only reads from them; `msg` and `iov` outlive the call.
    let rc = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize) // ok: non-negative ssize_t
}

/// A bound listening socket on one shard (SO_REUSEPORT: every shard binds the same address
/// and the kernel spreads connections over them).
pub struct Listener {
    inner: TcpListener,
    local_addr: SocketAddr,
    shard: usize,
    idle_timeout: Option<Duration>,
    stats: Rc<ListenerStats>,
}

/// Per-shard connection counters, for metrics (`Listener::stats`).
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections being served right now.
    pub active: Cell<usize>,
    pub accepted_total: Cell<u64>,
    /// Closed at once because `max_connections` was reached.
    pub rejected_total: Cell<u64>,
    /// Moved here from other shards ([`ConnHome::adopt`]).
    pub moved_in_total: Cell<u64>,
}

/// Kafka's `connections.max.idle.ms` default: 10 minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

impl Listener {
    /// Binds `addr` with SO_REUSEPORT. Must run inside a glommio executor.
    pub fn bind(addr: SocketAddr, shard: usize) -> io::Result<Listener> {
        // glommio's TcpListener::bind sets SO_REUSEPORT before bind and listens with a
        // backlog of 1024.
        let inner = TcpListener::bind(addr).map_err(io::Error::from)?;
        let local_addr = inner.local_addr().map_err(io::Error::from)?;
        Ok(Listener {
            inner,
            local_addr,
            shard,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            stats: Rc::new(ListenerStats::default()),
        })
    }

    /// Live counters of this listener (take them before `serve` consumes the listener).
    pub fn stats(&self) -> Rc<ListenerStats> {
        self.stats.clone()
    }

    /// Closes connections that send nothing for this long (Kafka `connections.max.idle.ms`,
    /// default [`DEFAULT_IDLE_TIMEOUT`]); `None` keeps idle connections forever.
    pub fn with_idle_timeout(mut self, idle_timeout: Option<Duration>) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Accepts forever, serving each connection as a local task. Connections beyond
    /// `max_connections` on this shard are closed immediately (logged at the 1st, 2nd, 4th,
    /// ... such connection). Accept errors (e.g. EMFILE) are retried after a short pause and
    /// logged at the 1st, 2nd, 4th, ... in a row.
    pub async fn serve<H: Handler>(
        self,
        handler: Rc<H>,
        limits: ConnLimits,
        max_connections: usize,
    ) -> io::Result<()> {
        let home = Rc::new(self.home(handler, limits, max_connections));
        self.serve_home(home).await
    }

    /// Where this shard's connections are served, including those moved here from other
    /// shards ([`ConnHome::adopt`]); pass it to [`Listener::serve_home`].
    pub fn home<H: Handler>(
        &self,
        handler: Rc<H>,
        limits: ConnLimits,
        max_connections: usize,
    ) -> ConnHome<H> {
        ConnHome {
            handler,
            limits,
            max_connections,
            idle_timeout: self.idle_timeout,
            stats: self.stats.clone(),
            shard: self.shard,
        }
    }

    /// [`Listener::serve`] with a home made by [`Listener::home`].
    pub async fn serve_home<H: Handler>(self, home: Rc<ConnHome<H>>) -> io::Result<()> {
        let stats = self.stats.clone();
        let mut next_id: u64 = 0;
        let mut accept_errors: u64 = 0;
        info!(shard = self.shard, addr = %self.local_addr, "listening");
        loop {
            let stream = match self.inner.accept().await {
                Ok(s) => {
                    accept_errors = 0;
                    s
                }
                Err(e) => {
                    accept_errors += 1;
                    if accept_errors.is_power_of_two() {
                        warn!(shard = self.shard, error = %e, failures_in_a_row = accept_errors, "accept failed; retrying");
                    }
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let peer = match stream.peer_addr() {
                Ok(p) => p,
                Err(e) => {
                    debug!(shard = self.shard, error = %e, "peer_addr failed; dropping connection");
                    continue;
                }
            };
            if stats.active.get() >= home.max_connections {
                let rejected = stats.rejected_total.get() + 1;
                stats.rejected_total.set(rejected);
                // At powers of two: a flood of connections must not become a flood of logs.
                if rejected.is_power_of_two() {
                    warn!(shard = self.shard, %peer, max_connections = home.max_connections, rejected_so_far = rejected, "connection limit reached; closing new connections");
                }
                drop(stream);
                continue;
            }
            next_id += 1;
            let id = ((self.shard as u64) << 48) | (next_id & ((1 << 48) - 1));
            debug!(shard = self.shard, conn = id, %peer, "accepted connection");
            stats.accepted_total.set(stats.accepted_total.get() + 1);
            home.spawn(stream, Bytes::new(), id, peer, 0);
        }
    }
}

/// Serves connections on one shard: those its listener accepts and those other shards move
/// here. Made by [`Listener::home`].
pub struct ConnHome<H> {
    handler: Rc<H>,
    limits: ConnLimits,
    max_connections: usize,
    idle_timeout: Option<Duration>,
    stats: Rc<ListenerStats>,
    shard: usize,
}

impl<H: Handler> ConnHome<H> {
    /// Serves a connection another shard handed off, from where it stopped. Refused (the
    /// connection is returned) when this shard is at its connection limit.
    pub fn adopt(&self, conn: Handoff) -> Result<(), Handoff> {
        if self.stats.active.get() >= self.max_connections {
            debug!(
                shard = self.shard,
                conn = conn.id,
                "connection limit reached; not taking a moved connection"
            );
            return Err(conn);
        }
        // SAFETY: the handoff owns the connection's socket (a descriptor no one else
        // uses); it is released to the new stream, which becomes its only owner.
        let stream = unsafe { TcpStream::from_raw_fd(conn.fd.into_raw_fd()) };
        self.stats
            .moved_in_total
            .set(self.stats.moved_in_total.get() + 1);
        self.spawn(stream, conn.buffered, conn.id, conn.peer, conn.moves);
        Ok(())
    }

    fn spawn(&self, stream: TcpStream, buffered: Bytes, id: u64, peer: SocketAddr, moves: u32) {
        let info = ConnInfo {
            id,
            peer,
            shard: self.shard,
            affinity: Rc::new(Affinity::new(self.shard, moves)),
            closed: ConnClosed::new(),
        };
        self.stats.active.set(self.stats.active.get() + 1);
        let guard = ActiveGuard(self.stats.clone());
        let handler = self.handler.clone();
        let (limits, idle_timeout) = (self.limits, self.idle_timeout);
        glommio::spawn_local(async move {
            let _guard = guard;
            serve_from(stream, buffered, handler, limits, info, idle_timeout).await;
        })
        .detach();
    }
}

/// Decrements the shard's connection count when a connection task ends (even if cancelled).
struct ActiveGuard(Rc<ListenerStats>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get().saturating_sub(1));
    }
}

/// Binds with SO_REUSEPORT and serves forever. Use [`Listener::bind`] + [`Listener::serve`] to
/// learn the bound address or report bind errors before serving.
pub async fn listen<H: Handler>(
    addr: SocketAddr,
    handler: Rc<H>,
    limits: ConnLimits,
    shard: usize,
    max_connections: usize,
) -> io::Result<()> {
    Listener::bind(addr, shard)?
        .serve(handler, limits, max_connections)
        .await
}
