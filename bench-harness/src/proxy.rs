//! `delay-proxy`: a TCP proxy that holds every Kafka frame for a fixed delay before
//! forwarding it, preserving order, to validate the harness's latency numbers against a known
//! injected delay.
//!
//! Kafka clients connect to the broker addresses that Metadata returns, not to the bootstrap
//! address; the proxy therefore rewrites every broker address in Metadata responses to its
//! own listen address (so it suits single-broker set-ups; use one proxy per broker and
//! `--broker-addr-override` on the harness otherwise).
//!
//! Plain blocking threads (reader and writer per direction per connection): the proxy is a
//! test instrument, and a sleeping writer thread gives a precise, order-preserving delay.

use crate::client::split_response;
use anyhow::{anyhow, bail, ensure, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, MetadataResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Direction {
    /// Delay broker-to-client frames only: a request/response round trip gains the delay once.
    Response,
    /// Delay both directions: a round trip gains twice the delay.
    Both,
}

const FRAME_BYTES_MAX: usize = 512 << 20;

fn read_frame(s: &mut TcpStream) -> Result<Option<Bytes>> {
    let mut len = [0u8; 4];
    match s.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let n = i32::from_be_bytes(len);
    ensure!(
        n >= 0 && (n as usize) <= FRAME_BYTES_MAX,
        "bad frame length {n}"
    );
    let mut buf = vec![0u8; n as usize];
    s.read_exact(&mut buf)?;
    Ok(Some(Bytes::from(buf)))
}

/// In-flight Metadata requests on one connection: correlation id -> version.
type Pending = Arc<Mutex<HashMap<i32, i16>>>;

/// Rewrites the broker list of a Metadata response frame body to point at `host:port`.
pub fn rewrite_metadata(frame: Bytes, version: i16, host: &str, port: i32) -> Result<Bytes> {
    let key = ApiKey::Metadata;
    let (corr, mut body) = split_response(key, version, frame)?;
    let mut resp = MetadataResponse::decode(&mut body, version)?;
    for b in resp.brokers.iter_mut() {
        b.host = StrBytes::from_string(host.to_string());
        b.port = port;
    }
    let mut out = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(corr)
        .encode(&mut out, key.response_header_version(version))?;
    resp.encode(&mut out, version)?;
    Ok(out.freeze())
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    delay: Duration,
    requests: bool,
    pending: Pending,
    listen: (String, i32),
) -> Result<()> {
    let (tx, rx) = mpsc::channel::<(Instant, Bytes)>();
    let mut to_for_shutdown = to.try_clone()?;
    let writer = std::thread::spawn(move || -> Result<()> {
        for (due, frame) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let mut out = Vec::with_capacity(4 + frame.len());
            out.put_i32(frame.len() as i32);
            out.extend_from_slice(&frame);
            to.write_all(&out)?;
        }
        Ok(())
    });
    let res: Result<()> = (|| {
        while let Some(mut frame) = read_frame(&mut from)? {
            let arrived = Instant::now();
            if requests {
                let mut peek = frame.clone();
                if peek.len() >= 4 {
                    let api = i16::from_be_bytes([peek[0], peek[1]]);
                    let version = i16::from_be_bytes([peek[2], peek[3]]);
                    if let Ok(key) = ApiKey::try_from(api) {
                        if key == ApiKey::Metadata {
                            let h = RequestHeader::decode(
                                &mut peek,
                                key.request_header_version(version),
                            )?;
                            pending
                                .lock()
                                .map_err(|_| anyhow!("poisoned"))?
                                .insert(h.correlation_id, version);
                        }
                    }
                }
            } else if frame.len() >= 4 {
                let corr = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
                let version = pending
                    .lock()
                    .map_err(|_| anyhow!("poisoned"))?
                    .remove(&corr);
                if let Some(v) = version {
                    frame = rewrite_metadata(frame, v, &listen.0, listen.1)
                        .context("rewriting Metadata")?;
                }
            }
            let due = if delay.is_zero() {
                arrived
            } else {
                arrived + delay
            };
            if tx.send((due, frame)).is_err() {
                break;
            }
        }
        Ok(())
    })();
    drop(tx);
    let w = writer
        .join()
        .map_err(|_| anyhow!("proxy writer panicked"))?;
    let _ = to_for_shutdown.flush();
    let _ = to_for_shutdown.shutdown(std::net::Shutdown::Write);
    res.and(w)
}

fn serve_conn(
    client: TcpStream,
    upstream: &str,
    delay: Duration,
    direction: Direction,
    listen: (String, i32),
) -> Result<()> {
    let up = TcpStream::connect(upstream).with_context(|| format!("connecting to {upstream}"))?;
    client.set_nodelay(true)?;
    up.set_nodelay(true)?;
    let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
    let req_delay = if direction == Direction::Both {
        delay
    } else {
        Duration::ZERO
    };
    let (c2, u2, p2, l2) = (
        client.try_clone()?,
        up.try_clone()?,
        pending.clone(),
        listen.clone(),
    );
    let t = std::thread::spawn(move || pump(c2, u2, req_delay, true, p2, l2));
    let r = pump(up, client, delay, false, pending, listen);
    let t = t.join().map_err(|_| anyhow!("proxy thread panicked"))?;
    r.and(t)
}

/// Serves until killed.
pub fn run_forever(
    listen: &str,
    upstream: &str,
    delay_ms: f64,
    direction: Direction,
) -> Result<()> {
    ensure!(delay_ms >= 0.0, "negative delay");
    let l = TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
    let addr = l.local_addr()?;
    let delay = Duration::from_secs_f64(delay_ms / 1000.0);
    eprintln!("delay-proxy: {addr} -> {upstream}, +{delay_ms} ms ({direction:?})");
    let host = match listen.rsplit_once(':') {
        Some((h, _)) if !h.is_empty() && h != "0.0.0.0" => h.to_string(),
        _ => "127.0.0.1".to_string(),
    };
    let listen_ad = (host, addr.port() as i32);
    for c in l.incoming() {
        let c = match c {
            Ok(c) => c,
            Err(e) => {
                eprintln!("delay-proxy: accept: {e}");
                continue;
            }
        };
        let (up, la) = (upstream.to_string(), listen_ad.clone());
        std::thread::spawn(move || {
            if let Err(e) = serve_conn(c, &up, delay, direction, la) {
                eprintln!("delay-proxy: connection ended: {e:#}");
            }
        });
    }
    bail!("listener closed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
    use kafka_protocol::messages::BrokerId;

    #[test]
    fn metadata_brokers_are_rewritten() {
        for version in [1i16, 9, 12] {
            let resp =
                MetadataResponse::default().with_brokers(vec![MetadataResponseBroker::default()
                    .with_node_id(BrokerId(3))
                    .with_host(StrBytes::from_static_str("broker.example"))
                    .with_port(9092)]);
            let mut frame = BytesMut::new();
            ResponseHeader::default()
                .with_correlation_id(41)
                .encode(
                    &mut frame,
                    ApiKey::Metadata.response_header_version(version),
                )
                .expect("header");
            resp.encode(&mut frame, version).expect("body");
            let out =
                rewrite_metadata(frame.freeze(), version, "127.0.0.1", 19092).expect("rewrite");
            let (corr, mut body) = split_response(ApiKey::Metadata, version, out).expect("split");
            assert_eq!(corr, 41);
            let back = MetadataResponse::decode(&mut body, version).expect("decode");
            assert_eq!(back.brokers.len(), 1);
            assert_eq!(back.brokers[0].node_id, BrokerId(3));
            assert_eq!(back.brokers[0].host.as_str(), "127.0.0.1");
            assert_eq!(back.brokers[0].port, 19092);
        }
    }
}
