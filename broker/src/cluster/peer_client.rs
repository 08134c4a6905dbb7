//! Requests from this broker to another broker's Kafka listener: the replica fetchers
//! (`replication::fetcher`) and, later, the transaction coordinator's markers.
//!
//! Owns: one TCP connection per peer node per shard (created lazily, dropped on any error and
//! reconnected by the next call). Requests on one connection go one at a time, in order: a
//! shard's fetcher for a leader node has one request outstanding, which is what Kafka's
//! follower does too. Runs on the shard that owns the `PeerClients` (glommio, `!Send`).
//!
//! Invariants: a response is matched to its request by correlation id; a mismatch, a frame
//! over `PEER_RESPONSE_BYTES_MAX`, a decode error or a timeout closes the connection, so the
//! next call starts on a clean stream. Nothing here panics on what the peer sends.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseHeader};
use kafka_protocol::protocol::Decodable;

use crate::cluster::meta::MetaSnapshot;

/// Largest response frame accepted from a peer (a replica fetch answers at most
/// `replica.fetch.response.max.bytes` of records plus headers).
pub const PEER_RESPONSE_BYTES_MAX: usize = 128 << 20;

/// How long connecting to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call to a peer failed. Every variant closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("broker {0} is not a live broker in the metadata")]
    UnknownNode(i32),
    #[error("cannot connect to broker {node} at {addr}: {reason}")]
    Connect {
        node: i32,
        addr: String,
        reason: String,
    },
    #[error("broker {node}: {reason}")]
    Io { node: i32, reason: String },
    #[error("broker {node} did not answer {api_key:?} within {timeout_ms} ms")]
    Timeout {
        node: i32,
        api_key: ApiKey,
        timeout_ms: u64,
    },
    #[error("broker {node}: bad {api_key:?} response: {reason}")]
    Protocol {
        node: i32,
        api_key: ApiKey,
        reason: String,
    },
}

struct Conn {
    addr: String,
    stream: TcpStream,
    next_correlation_id: i32,
}

/// The connections of one shard to the other brokers (see the module docs). A call takes its
/// node's idle connection out of the pool (or opens one) and puts it back when the exchange
/// succeeded, so concurrent calls to one node use separate connections.
pub struct PeerClients {
    client_id: String,
    idle: RefCell<HashMap<i32, Conn>>,
}

impl PeerClients {
    pub fn new(node_id: i32, shard: usize) -> PeerClients {
        PeerClients {
            client_id: format!("ringtail-broker-{node_id}-shard-{shard}"),
            idle: RefCell::new(HashMap::new()),
        }
    }

    /// Sends `request` to broker `node` at `version` and decodes its response as `R`, within
    /// `timeout` (connecting included).
    pub async fn call<R: Decodable>(
        &self,
        meta: &MetaSnapshot,
        node: i32,
        api_key: ApiKey,
        version: i16,
        request: &RequestKind,
        timeout: Duration,
    ) -> Result<R, PeerError> {
        let Some(broker) = meta.brokers.get(&node) else {
            return Err(PeerError::UnknownNode(node));
        };
        let addr = format!("{}:{}", broker.host, broker.port);
        futures_lite::future::or(
            self.call_once::<R>(node, &addr, api_key, version, request),
            async {
                glommio::timer::sleep(timeout).await;
                Err(PeerError::Timeout {
                    node,
                    api_key,
                    timeout_ms: timeout.as_millis() as u64,
                })
            },
        )
        .await
    }

    /// Forgets the idle connection to `node`.
    pub fn disconnect(&self, node: i32) {
        self.idle.borrow_mut().remove(&node);
    }

    /// One exchange on a pooled or new connection; a connection that failed in any way (or
    /// whose exchange was cancelled by the caller's timeout) is dropped, not pooled.
    async fn call_once<R: Decodable>(
        &self,
        node: i32,
        addr: &str,
        api_key: ApiKey,
        version: i16,
        request: &RequestKind,
    ) -> Result<R, PeerError> {
        let existing = self
            .idle
            .borrow_mut()
            .remove(&node)
            .filter(|c| c.addr == addr);
        let mut conn = match existing {
            Some(c) => c,
            None => {
                let connect_error = |reason: String| PeerError::Connect {
                    node,
                    addr: addr.to_string(),
                    reason,
                };
                let stream = futures_lite::future::or(
                    async { TcpStream::connect(addr).await.map_err(|e| e.to_string()) },
                    async {
                        glommio::timer::sleep(CONNECT_TIMEOUT).await;
                        Err(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))
                    },
                )
                .await
                .map_err(connect_error)?;
                let _ = stream.set_nodelay(true);
                Conn {
                    addr: addr.to_string(),
                    stream,
                    next_correlation_id: 1,
                }
            }
        };
        let correlation_id = conn.next_correlation_id;
        conn.next_correlation_id = conn.next_correlation_id.wrapping_add(1);
        let frame = net::codec::encode_request(
            api_key,
            version,
            correlation_id,
            Some(&self.client_id),
            request,
        )
        .map_err(|e| PeerError::Protocol {
            node,
            api_key,
            reason: e.to_string(),
        })?;
        let io = |e: std::io::Error| PeerError::Io {
            node,
            reason: e.to_string(),
        };
        conn.stream.write_all(&frame).await.map_err(io)?;
        let mut size = [0u8; 4];
        conn.stream.read_exact(&mut size).await.map_err(io)?;
        let size = usize::try_from(i32::from_be_bytes(size)).unwrap_or(usize::MAX);
        if size > PEER_RESPONSE_BYTES_MAX {
            return Err(PeerError::Protocol {
                node,
                api_key,
                reason: format!("frame of {size} bytes (limit {PEER_RESPONSE_BYTES_MAX})"),
            });
        }
        let mut body = vec![0u8; size];
        conn.stream.read_exact(&mut body).await.map_err(io)?;
        let mut buf = Bytes::from(body);
        let protocol = |reason: String| PeerError::Protocol {
            node,
            api_key,
            reason,
        };
        let header = ResponseHeader::decode(&mut buf, api_key.response_header_version(version))
            .map_err(|e| protocol(format!("header: {e:#}")))?;
        if header.correlation_id != correlation_id {
            return Err(protocol(format!(
                "correlation id {} instead of {correlation_id}",
                header.correlation_id
            )));
        }
        let response = R::decode(&mut buf, version).map_err(|e| protocol(format!("{e:#}")))?;
        // Healthy: keep the connection for the next call (one idle connection per node).
        self.idle.borrow_mut().entry(node).or_insert(conn);
        Ok(response)
    }
}
