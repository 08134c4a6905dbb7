//! Traffic between nodes on the controller listener (`--controller-addr`), in Kafka's framing:
//! a size-prefixed frame with a Kafka request header, answered by a frame with the response
//! header. Broker registration and heartbeats are Kafka's own messages (BrokerRegistration,
//! key 62; BrokerHeartbeat, key 63; v0, from the `kafka-protocol` crate). The Raft library's
//! messages and forwarded controller requests have no Kafka schema: they use private API keys
//! ([`PrivateApi`]) with JSON bodies of openraft's serde types and ours.
//!
//! Owns: [`Peer`] (one lazily connected, reconnecting connection to one node, one request at
//! a time, every call bounded by a timeout) and the frame codec for both directions.
//!
//! Invariants: a frame larger than [`FRAME_BYTES_MAX`] is refused and the connection closed;
//! a response whose correlation id does not match is an error and the connection is dropped
//! (never reused out of step).
//!
//! Runs on: the controller thread (tokio).

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::RequestHeader;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// Largest frame accepted on the controller listener (snapshots of a big image included).
pub const FRAME_BYTES_MAX: usize = 512 << 20;

/// API keys Kafka does not define, for messages without a Kafka schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i16)]
pub enum PrivateApi {
    RaftAppend = 32001,
    RaftVote = 32002,
    RaftSnapshot = 32003,
    /// A controller request forwarded to the active controller.
    Forward = 32004,
}

impl PrivateApi {
    pub fn from_key(key: i16) -> Option<PrivateApi> {
        Some(match key {
            32001 => PrivateApi::RaftAppend,
            32002 => PrivateApi::RaftVote,
            32003 => PrivateApi::RaftSnapshot,
            32004 => PrivateApi::Forward,
            _ => return None,
        })
    }
}

pub const BROKER_REGISTRATION_KEY: i16 = 62;
pub const BROKER_HEARTBEAT_KEY: i16 = 63;

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("talking to {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr} did not answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("bad answer from {addr}: {reason}")]
    Protocol { addr: String, reason: String },
}

/// Encode a request frame: size, header (v2 for flexible Kafka messages, v1 otherwise), body.
pub fn encode_request(api_key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Bytes {
    let flexible = api_key == BROKER_REGISTRATION_KEY || api_key == BROKER_HEARTBEAT_KEY;
    let mut header = RequestHeader::default();
    header.request_api_key = api_key;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_static_str("ringtail-controller"));
    let mut buf = BytesMut::with_capacity(body.len() + 64);
    buf.put_i32(0);
    // ok: encoding a header into a growable buffer cannot fail.
    let _ = header.encode(&mut buf, if flexible { 2 } else { 1 });
    buf.put_slice(body);
    let size = i32::try_from(buf.len() - 4).unwrap_or(i32::MAX);
    buf[..4].copy_from_slice(&size.to_be_bytes());
    buf.freeze()
}

/// Encode a response frame: size, correlation id, tagged fields for flexible Kafka messages.
pub fn encode_response(api_key: i16, correlation_id: i32, body: &[u8]) -> Bytes {
    let flexible = api_key == BROKER_REGISTRATION_KEY || api_key == BROKER_HEARTBEAT_KEY;
    let mut buf = BytesMut::with_capacity(body.len() + 9);
    let size = body.len() + 4 + usize::from(flexible);
    buf.put_i32(i32::try_from(size).unwrap_or(i32::MAX));
    buf.put_i32(correlation_id);
    if flexible {
        buf.put_u8(0);
    }
    buf.put_slice(body);
    buf.freeze()
}

/// Read one size-prefixed frame.
pub async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Bytes> {
    let size = stream.read_i32().await?;
    let size = usize::try_from(size)
        .ok()
        .filter(|s| *s <= FRAME_BYTES_MAX)
        .ok_or_else(|| std::io::Error::other(format!("frame of {size} bytes refused")))?;
    let mut buf = vec![0u8; size];
    stream.read_exact(&mut buf).await?;
    Ok(Bytes::from(buf))
}

/// Encode a Kafka message body.
pub fn encode_message<M: Encodable>(msg: &M, version: i16) -> Result<Bytes, String> {
    let mut buf = BytesMut::new();
    msg.encode(&mut buf, version).map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}

/// Decode a Kafka message body.
pub fn decode_message<M: Decodable>(mut body: Bytes, version: i16) -> Result<M, String> {
    M::decode(&mut body, version).map_err(|e| e.to_string())
}

/// One connection to one node's controller listener (see the module docs).
pub struct Peer {
    addr: String,
    conn: Mutex<(Option<TcpStream>, i32)>,
}

impl Peer {
    pub fn new(addr: String) -> Peer {
        Peer {
            addr,
            conn: Mutex::new((None, 0)),
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Send one request and await its response body, within `timeout`.
    pub async fn call(
        &self,
        api_key: i16,
        version: i16,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        // The timeout covers waiting for the connection too: a heartbeat must not queue for
        // 15 s behind a forwarded request to a controller that stopped answering (the broker
        // would miss its session with the new controller meanwhile).
        let attempt = tokio::time::timeout(timeout, async {
            let mut guard = self.conn.lock().await;
            let result = self.call_locked(&mut guard, api_key, version, body).await;
            if result.is_err() {
                // Never reuse a connection that may be out of step.
                guard.0 = None;
            }
            result
        })
        .await;
        match attempt {
            Ok(result) => result,
            Err(_) => {
                // Cancelled mid-exchange (or never got the connection): if we held it, the
                // stream may be out of step; drop it unless someone else holds it now.
                if let Ok(mut guard) = self.conn.try_lock() {
                    guard.0 = None;
                }
                Err(RpcError::Timeout {
                    addr: self.addr.clone(),
                    timeout,
                })
            }
        }
    }

    async fn call_locked(
        &self,
        guard: &mut (Option<TcpStream>, i32),
        api_key: i16,
        version: i16,
        body: &[u8],
    ) -> Result<Bytes, RpcError> {
        let io = |source| RpcError::Io {
            addr: self.addr.clone(),
            source,
        };
        if guard.0.is_none() {
            let stream =
                TcpStream::connect(&self.addr)
                    .await
                    .map_err(|source| RpcError::Connect {
                        addr: self.addr.clone(),
                        source,
                    })?;
            let _ = stream.set_nodelay(true);
            guard.0 = Some(stream);
        }
        guard.1 = guard.1.wrapping_add(1);
        let correlation_id = guard.1;
        let Some(stream) = guard.0.as_mut() else {
            return Err(RpcError::Protocol {
                addr: self.addr.clone(),
                reason: "no connection".into(),
            });
        };
        stream
            .write_all(&encode_request(api_key, version, correlation_id, body))
            .await
            .map_err(io)?;
        let mut frame = read_frame(stream).await.map_err(io)?;
        if frame.len() < 4 {
            return Err(RpcError::Protocol {
                addr: self.addr.clone(),
                reason: "response shorter than its header".into(),
            });
        }
        let got = frame.get_i32();
        if got != correlation_id {
            return Err(RpcError::Protocol {
                addr: self.addr.clone(),
                reason: format!("correlation id {got} instead of {correlation_id}"),
            });
        }
        if api_key == BROKER_REGISTRATION_KEY || api_key == BROKER_HEARTBEAT_KEY {
            // Response header v1: an empty tagged-field section.
            if frame.is_empty() || frame.get_u8() != 0 {
                return Err(RpcError::Protocol {
                    addr: self.addr.clone(),
                    reason: "unexpected tagged fields in the response header".into(),
                });
            }
        }
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_frames_parse_with_the_kafka_header_parser() {
        let frame = encode_request(PrivateApi::RaftVote as i16, 0, 7, b"{}");
        let parsed = net::codec::parse_request_header(frame.slice(4..)).unwrap();
        assert_eq!(parsed.api_key, 32002);
        assert_eq!(parsed.correlation_id, 7);
        assert_eq!(&parsed.body[..], b"{}");
        let frame = encode_request(BROKER_HEARTBEAT_KEY, 0, 9, b"x");
        let parsed = net::codec::parse_request_header(frame.slice(4..)).unwrap();
        assert_eq!((parsed.api_key, parsed.correlation_id), (63, 9));
        assert_eq!(&parsed.body[..], b"x");
        let size = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        assert_eq!(size, frame.len() - 4);
    }
}
