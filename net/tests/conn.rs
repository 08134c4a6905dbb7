//! Real sockets: a glommio executor serving an echo-ish handler, std clients pipelining.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use glommio::{LocalExecutorBuilder, Placement};
use net::{ConnInfo, ConnLimits, Handler, HandlerResult, Listener, RequestFrame};

/// Api keys with special meaning for the test handler.
const API_CLOSE: i16 = 999;
const API_NO_RESPONSE: i16 = 1000;
const API_PANIC: i16 = 1001;
/// Answers with a large response in many chunks: body = first 4 bytes of the request body
/// as a big-endian chunk count, each chunk 64 KiB of the chunk's index byte.
const API_BIG: i16 = 1002;
const BIG_CHUNK: usize = 64 * 1024;

/// Answers each request with `correlation id ++ body`, in two chunks, after a delay that
/// makes later requests finish *earlier* (so in-order writing is actually exercised).
struct Echo;

impl Handler for Echo {
    // Implementations may use `async fn` for the trait's `-> impl Future` method.
    async fn handle(&self, req: RequestFrame, _conn: &ConnInfo) -> HandlerResult {
        {
            match req.api_key {
                API_CLOSE => return HandlerResult::Close,
                API_NO_RESPONSE => return HandlerResult::NoResponse,
                API_PANIC => panic!("test handler panic"),
                API_BIG => {
                    let n =
                        u32::from_be_bytes([req.body[0], req.body[1], req.body[2], req.body[3]]);
                    let mut head = BytesMut::new();
                    head.put_i32(4 + (n as usize * BIG_CHUNK) as i32);
                    head.put_i32(req.correlation_id);
                    let mut chunks = vec![head.freeze()];
                    for i in 0..n {
                        chunks.push(Bytes::from(vec![i as u8; BIG_CHUNK]));
                    }
                    return HandlerResult::Respond(chunks);
                }
                _ => {}
            }
            let delay_ms = 20u64.saturating_sub((req.correlation_id as u64 % 10) * 2);
            glommio::timer::sleep(Duration::from_millis(delay_ms)).await;
            let mut head = BytesMut::new();
            head.put_i32(4 + req.body.len() as i32);
            head.put_i32(req.correlation_id);
            HandlerResult::Respond(vec![head.freeze(), req.body])
        }
    }
}

const MAX_FRAME: usize = 1 << 20;

fn start_server() -> SocketAddr {
    start_server_with(64, None)
}

fn start_server_with(max_connections: usize, idle_timeout: Option<Duration>) -> SocketAddr {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let ex = LocalExecutorBuilder::new(Placement::Unbound)
            .make()
            .expect("executor");
        ex.run(async move {
            let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), 0)
                .expect("bind")
                .with_idle_timeout(idle_timeout);
            tx.send(listener.local_addr()).unwrap();
            let limits = ConnLimits {
                max_frame_bytes: MAX_FRAME,
                max_in_flight: 4,
            };
            let _ = listener.serve(Rc::new(Echo), limits, max_connections).await;
        });
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("server started")
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A request frame: size, api key, version, correlation id, null client id, body.
fn request(api_key: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_i32((2 + 2 + 4 + 2 + body.len()) as i32);
    b.put_i16(api_key);
    b.put_i16(0);
    b.put_i32(correlation_id);
    b.put_i16(-1);
    b.put_slice(body);
    b.to_vec()
}

fn read_response(s: &mut TcpStream) -> std::io::Result<(i32, Bytes)> {
    let mut size = [0u8; 4];
    s.read_exact(&mut size)?;
    let size = i32::from_be_bytes(size) as usize;
    let mut body = vec![0u8; size];
    s.read_exact(&mut body)?;
    let corr = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    Ok((corr, Bytes::from(body).slice(4..)))
}

/// True when the server closed the connection (EOF or reset) within the read timeout.
fn is_closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(e) => panic!("expected close, got {e}"),
        }
    }
}

/// Unknown api keys (the handler decides) get a v1 header; use the "header only" key 7000.
const API_ECHO: i16 = 7000;

#[test]
fn pipelined_requests_are_answered_in_order() {
    let addr = start_server();
    let mut c = connect(addr);
    let mut all = Vec::new();
    for i in 0..40 {
        all.extend(request(API_ECHO, i, format!("payload-{i}").as_bytes()));
    }
    // One write with every request: the server sees them pipelined, in several frames per
    // read, and answers at most 4 concurrently.
    c.write_all(&all).unwrap();
    for i in 0..40 {
        let (corr, body) = read_response(&mut c).unwrap();
        assert_eq!(corr, i);
        assert_eq!(&body[..], format!("payload-{i}").as_bytes());
    }
}

#[test]
fn requests_split_across_writes_are_reassembled() {
    let addr = start_server();
    let mut c = connect(addr);
    let big = vec![0xabu8; 300_000];
    let frame = request(API_ECHO, 5, &big);
    for piece in frame.chunks(7_777) {
        c.write_all(piece).unwrap();
        c.flush().unwrap();
    }
    let (corr, body) = read_response(&mut c).unwrap();
    assert_eq!(corr, 5);
    assert_eq!(body.len(), big.len());
    assert!(body.iter().all(|&b| b == 0xab));
}

#[test]
fn no_response_requests_are_skipped_in_order() {
    let addr = start_server();
    let mut c = connect(addr);
    let mut all = Vec::new();
    all.extend(request(API_ECHO, 1, b"a"));
    all.extend(request(API_NO_RESPONSE, 2, b"b"));
    all.extend(request(API_ECHO, 3, b"c"));
    c.write_all(&all).unwrap();
    assert_eq!(read_response(&mut c).unwrap().0, 1);
    assert_eq!(read_response(&mut c).unwrap().0, 3);
}

#[test]
fn garbage_closes_only_its_own_connection() {
    let addr = start_server();
    let mut good = connect(addr);
    good.write_all(&request(API_ECHO, 1, b"before")).unwrap();
    assert_eq!(read_response(&mut good).unwrap().0, 1);

    // Negative size.
    let mut bad = connect(addr);
    bad.write_all(&(-7i32).to_be_bytes()).unwrap();
    assert!(is_closed(&mut bad));

    // Oversize frame: closed as soon as the size is seen, without sending the body.
    let mut big = connect(addr);
    big.write_all(&((MAX_FRAME + 1) as i32).to_be_bytes())
        .unwrap();
    assert!(is_closed(&mut big));

    // A frame too short to hold a request header.
    let mut short = connect(addr);
    short.write_all(&[0, 0, 0, 3, 1, 2, 3]).unwrap();
    assert!(is_closed(&mut short));

    // A handler that asks to close; earlier responses are still delivered.
    let mut closing = connect(addr);
    let mut both = request(API_ECHO, 10, b"x");
    both.extend(request(API_CLOSE, 11, b""));
    both.extend(request(API_ECHO, 12, b"never"));
    closing.write_all(&both).unwrap();
    assert_eq!(read_response(&mut closing).unwrap().0, 10);
    assert!(is_closed(&mut closing));

    // A panicking handler closes its connection but not the shard.
    let mut panicking = connect(addr);
    panicking.write_all(&request(API_PANIC, 1, b"")).unwrap();
    assert!(is_closed(&mut panicking));

    // The first connection still works, and new ones are accepted.
    good.write_all(&request(API_ECHO, 2, b"after")).unwrap();
    let (corr, body) = read_response(&mut good).unwrap();
    assert_eq!((corr, &body[..]), (2, &b"after"[..]));
    let mut fresh = connect(addr);
    fresh.write_all(&request(API_ECHO, 3, b"fresh")).unwrap();
    assert_eq!(read_response(&mut fresh).unwrap().0, 3);
}

#[test]
fn client_half_close_still_gets_responses() {
    let addr = start_server();
    let mut c = connect(addr);
    let mut all = Vec::new();
    for i in 0..5 {
        all.extend(request(API_ECHO, i, b"x"));
    }
    c.write_all(&all).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    for i in 0..5 {
        assert_eq!(read_response(&mut c).unwrap().0, i);
    }
    assert!(is_closed(&mut c));
}

#[test]
fn large_gathered_responses_survive_a_slow_reader() {
    let addr = start_server();
    let mut c = connect(addr);
    // 2 x 128 chunks of 64 KiB = 16 MiB: far beyond the socket buffers, so the writer hits
    // EAGAIN and must resume mid-chunk.
    let mut all = request(API_BIG, 1, &128u32.to_be_bytes());
    all.extend(request(API_ECHO, 2, b"after-big"));
    all.extend(request(API_BIG, 3, &128u32.to_be_bytes()));
    c.write_all(&all).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    for corr in [1, 3] {
        let (got, body) = read_response(&mut c).unwrap();
        assert_eq!(got, corr);
        assert_eq!(body.len(), 128 * BIG_CHUNK);
        for (i, chunk) in body.chunks(BIG_CHUNK).enumerate() {
            assert!(chunk.iter().all(|&b| b == i as u8), "chunk {i} corrupted");
        }
        if corr == 1 {
            let (got, body) = read_response(&mut c).unwrap();
            assert_eq!((got, &body[..]), (2, &b"after-big"[..]));
        }
    }
}

#[test]
fn connections_beyond_the_limit_are_closed() {
    let addr = start_server_with(2, None);
    let mut a = connect(addr);
    let mut b = connect(addr);
    for (i, c) in [&mut a, &mut b].into_iter().enumerate() {
        c.write_all(&request(API_ECHO, i as i32, b"x")).unwrap();
        assert_eq!(read_response(c).unwrap().0, i as i32);
    }
    let mut third = connect(addr);
    let _ = third.write_all(&request(API_ECHO, 9, b"x"));
    assert!(is_closed(&mut third));
    // Once a slot frees up, new connections are served again (the server notices the close
    // asynchronously, so retry for a while).
    drop(a);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut c = connect(addr);
        let _ = c.write_all(&request(API_ECHO, 10, b"y"));
        if let Ok((10, _)) = read_response(&mut c) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "slot never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
    b.write_all(&request(API_ECHO, 11, b"z")).unwrap();
    assert_eq!(read_response(&mut b).unwrap().0, 11);
}

#[test]
fn idle_connections_are_closed() {
    let addr = start_server_with(64, Some(Duration::from_millis(300)));
    let mut c = connect(addr);
    c.write_all(&request(API_ECHO, 1, b"x")).unwrap();
    assert_eq!(read_response(&mut c).unwrap().0, 1);
    // Nothing more is sent: the server closes the connection after the idle timeout.
    assert!(is_closed(&mut c));
}

/// Idleness means no bytes at all: a connection that keeps sending requests, or one whose
/// request trickles in a byte at a time for longer than the timeout, stays open; once it goes
/// quiet it is closed.
#[test]
fn only_quiet_connections_count_as_idle() {
    let timeout = Duration::from_secs(2);
    let addr = start_server_with(64, Some(timeout));
    let mut c = connect(addr);
    // Requests every 100 ms for about 2.5 timeouts.
    for i in 0..50 {
        c.write_all(&request(API_ECHO, i, b"x")).unwrap();
        assert_eq!(read_response(&mut c).unwrap().0, i);
        std::thread::sleep(Duration::from_millis(100));
    }
    // One request, a byte every 100 ms (about 2.5 timeouts end to end).
    let frame = request(API_ECHO, 99, &[7u8; 40]);
    for byte in &frame {
        c.write_all(std::slice::from_ref(byte)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    let (corr, body) = read_response(&mut c).unwrap();
    assert_eq!((corr, &body[..]), (99, &[7u8; 40][..]));
    assert!(is_closed(&mut c));
}

/// A two-shard server for connection moves. Each request's first body byte names the shard
/// that owns "its partitions"; the handler notes it in the connection's affinity and answers
/// `correlation id ++ serving shard ++ body`, later requests sooner (as `Echo` does).
struct Mover {
    shard: usize,
    /// To the other shard: a connection to adopt, and where to send the answer.
    peer: mpsc::Sender<(net::Handoff, mpsc::Sender<Result<(), net::Handoff>>)>,
}

impl Handler for Mover {
    async fn handle(&self, req: RequestFrame, conn: &ConnInfo) -> HandlerResult {
        assert_eq!(conn.shard, self.shard, "served by the shard it lives on");
        conn.affinity
            .note_owners(req.body.first().map(|b| *b as usize));
        let delay_ms = 6u64.saturating_sub((req.correlation_id as u64 % 4) * 2);
        glommio::timer::sleep(Duration::from_millis(delay_ms)).await;
        let mut head = BytesMut::new();
        head.put_i32(4 + 1 + req.body.len() as i32);
        head.put_i32(req.correlation_id);
        head.put_u8(self.shard as u8);
        HandlerResult::Respond(vec![head.freeze(), req.body])
    }

    async fn hand_off(&self, to: usize, conn: net::Handoff) -> Result<(), net::Handoff> {
        assert_eq!(to, 1 - self.shard);
        let (reply_tx, reply_rx) = mpsc::channel();
        if let Err(mpsc::SendError((conn, _))) = self.peer.send((conn, reply_tx)) {
            return Err(conn);
        }
        loop {
            match reply_rx.try_recv() {
                Ok(result) => return result,
                Err(mpsc::TryRecvError::Empty) => {
                    glommio::timer::sleep(Duration::from_millis(1)).await
                }
                Err(mpsc::TryRecvError::Disconnected) => panic!("peer shard gone"),
            }
        }
    }
}

/// Shard 0 listens; shard 1 only adopts connections, and takes at most `shard1_max` at once.
fn start_two_shards(shard1_max: usize) -> SocketAddr {
    let (to0, from1) = mpsc::channel();
    let (to1, from0) = mpsc::channel();
    let (addr_tx, addr_rx) = mpsc::channel();
    for (shard, peer, inbox, max) in [(0, to1, from1, 64), (1, to0, from0, shard1_max)] {
        let addr_tx = addr_tx.clone();
        std::thread::spawn(move || {
            let ex = LocalExecutorBuilder::new(Placement::Unbound)
                .make()
                .expect("executor");
            ex.run(async move {
                let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), shard).expect("bind");
                let limits = ConnLimits {
                    max_frame_bytes: MAX_FRAME,
                    max_in_flight: 4,
                };
                let home = Rc::new(listener.home(Rc::new(Mover { shard, peer }), limits, max));
                let inbox: mpsc::Receiver<(net::Handoff, mpsc::Sender<_>)> = inbox;
                let adopter = home.clone();
                glommio::spawn_local(async move {
                    loop {
                        while let Ok((conn, reply)) = inbox.try_recv() {
                            let _ = reply.send(adopter.adopt(conn));
                        }
                        glommio::timer::sleep(Duration::from_millis(1)).await;
                    }
                })
                .detach();
                if shard == 0 {
                    addr_tx.send(listener.local_addr()).unwrap();
                    let _ = listener.serve_home(home).await;
                } else {
                    std::future::pending::<()>().await;
                }
            });
        });
    }
    addr_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("server started")
}

/// Sends `n` requests owned by `owner` from correlation id `from` in one write, and returns
/// the serving shard of each answer, checking order and bodies.
fn burst(c: &mut TcpStream, from: i32, n: i32, owner: u8) -> Vec<u8> {
    let mut out = Vec::new();
    for corr in from..from + n {
        out.extend(request(API_ECHO, corr, &[owner, corr as u8, 0xAB]));
    }
    c.write_all(&out).unwrap();
    (from..from + n)
        .map(|corr| {
            let (got, body) = read_response(c).unwrap();
            assert_eq!(got, corr, "responses in request order");
            assert_eq!(body[1..], [owner, corr as u8, 0xAB], "body of {corr}");
            body[0]
        })
        .collect()
}

#[test]
fn a_connection_moves_to_the_shard_its_requests_use() {
    let addr = start_two_shards(64);
    let mut c = connect(addr);
    // Pipelined past the move: requests read ahead by shard 0 are answered by shard 1.
    let shards = burst(&mut c, 0, 3 * net::affinity::MOVE_AFTER_REQUESTS as i32, 1);
    let first_moved = shards
        .iter()
        .position(|s| *s == 1)
        .expect("the connection moved");
    assert!(
        first_moved >= net::affinity::MOVE_AFTER_REQUESTS as usize,
        "{shards:?}"
    );
    assert!(shards[first_moved..].iter().all(|s| *s == 1), "{shards:?}");
    // One at a time afterwards, and requests for shard 1's partitions keep it there.
    for corr in 100..110 {
        assert_eq!(burst(&mut c, corr, 1, 1), [1]);
    }
    // Requests for shard 0's partitions bring it back, after twice the run (second move).
    let back = burst(
        &mut c,
        200,
        3 * net::affinity::MOVE_AFTER_REQUESTS as i32,
        0,
    );
    let first_back = back.iter().position(|s| *s == 0).expect("moved back");
    assert!(
        first_back >= 2 * net::affinity::MOVE_AFTER_REQUESTS as usize,
        "{back:?}"
    );
    assert!(back[first_back..].iter().all(|s| *s == 0), "{back:?}");
}

#[test]
fn a_connection_the_other_shard_refuses_stays_served() {
    let addr = start_two_shards(0);
    let mut c = connect(addr);
    let shards = burst(&mut c, 0, 8 * net::affinity::MOVE_AFTER_REQUESTS as i32, 1);
    assert!(shards.iter().all(|s| *s == 0), "{shards:?}");
    for corr in 1000..1005 {
        assert_eq!(burst(&mut c, corr, 1, 1), [0]);
    }
}
