//! A minimal blocking Kafka client for the operator commands: one TCP connection per broker,
//! one request at a time, typed requests and responses from `kafka-protocol`.
//!
//! [`Connection`] asks the broker for its ApiVersions when it connects and every call picks
//! the highest version both sides support ([`Connection::version`]), so the commands work
//! against any Kafka-compatible broker. [`Client`] adds routing: it bootstraps from the first
//! reachable address, learns brokers, leaders and the controller from Metadata, and keeps one
//! connection per broker id so requests go to the broker that owns the partition, the group
//! or the controller role. Nothing here reads a data directory.
//!
//! Runs on: the CLI's main thread only (blocking I/O, no runtime).

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, MetadataRequest, MetadataResponse, RequestKind, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::ResponseError;

/// Largest response frame accepted (a describe of a big group stays far below).
const RESPONSE_BYTES_MAX: usize = 256 << 20;
/// Socket read/write timeout: above the 30 s the admin requests give the controller and far
/// above a Fetch long-poll (500 ms).
const IO_TIMEOUT: Duration = Duration::from_secs(45);
/// How long to wait for a TCP connection to a broker.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to retry while a group coordinator is loading or not yet known.
const COORDINATOR_WAIT: Duration = Duration::from_secs(30);
const CLIENT_ID: &str = "ringtail-cli";

/// A Kafka error answered by a broker: shown as `NAME: message` (`TOPIC_ALREADY_EXISTS:
/// Topic 'x' already exists.`), Kafka's own spelling of the error names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}", error_name(*.code), .message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
pub struct KafkaError {
    pub code: i16,
    pub message: Option<String>,
}

impl KafkaError {
    /// `Ok` for code 0, else the error with the broker's message (or `context` when the broker
    /// sent none or an empty one).
    pub fn check(code: i16, message: Option<&StrBytes>, context: &str) -> Result<(), KafkaError> {
        if code == 0 {
            return Ok(());
        }
        let message = match message.map(|m| m.as_str()).filter(|m| !m.is_empty()) {
            Some(m) => Some(m.to_string()),
            None if context.is_empty() => None,
            None => Some(context.to_string()),
        };
        Err(KafkaError { code, message })
    }

    pub fn is(&self, e: ResponseError) -> bool {
        self.code == e.code()
    }
}

/// Kafka's name of an error code (`UNKNOWN_TOPIC_OR_PARTITION`), as the Java tools print it.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(c)) => format!("UNKNOWN_ERROR_CODE_{c}"),
        Some(e) => {
            let camel = format!("{e:?}");
            let mut out = String::with_capacity(camel.len() + 8);
            for (i, ch) in camel.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_uppercase());
            }
            out
        }
    }
}

pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}

pub struct Connection {
    stream: TcpStream,
    addr: String,
    next_correlation_id: i32,
    /// The broker's supported range per API key.
    versions: HashMap<i16, (i16, i16)>,
}

impl Connection {
    /// Connects to `addr` (HOST:PORT) and reads its ApiVersions.
    pub fn connect(addr: &str) -> anyhow::Result<Connection> {
        let stream = connect_any(addr)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let mut conn = Connection {
            stream,
            addr: addr.to_string(),
            next_correlation_id: 1,
            versions: HashMap::new(),
        };
        // v0: every Kafka broker since 0.10 answers it, with no flexible-version framing.
        let resp: ApiVersionsResponse = conn.call_at(
            ApiKey::ApiVersions,
            0,
            RequestKind::ApiVersions(ApiVersionsRequest::default()),
        )?;
        KafkaError::check(resp.error_code, None, "ApiVersions")?;
        conn.versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(conn)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the broker advertises `api_key` at all.
    pub fn supports(&self, api_key: ApiKey) -> bool {
        self.versions.contains_key(&(api_key as i16))
    }

    /// The broker's advertised versions, by API key.
    pub fn api_versions(&self) -> BTreeMap<i16, (i16, i16)> {
        self.versions.iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// The highest version of `api_key` in `ours` that the broker supports.
    pub fn version(&self, api_key: ApiKey, ours: RangeInclusive<i16>) -> anyhow::Result<i16> {
        pick_version(self.versions.get(&(api_key as i16)).copied(), &ours).map_err(|why| {
            anyhow!(
                "UNSUPPORTED_VERSION: the broker at {} {why} {api_key:?}",
                self.addr
            )
        })
    }

    /// Sends `request` at the highest common version in `ours` and decodes the response as `R`.
    pub fn call<R: Decodable>(
        &mut self,
        api_key: ApiKey,
        ours: RangeInclusive<i16>,
        request: RequestKind,
    ) -> anyhow::Result<R> {
        let version = self.version(api_key, ours)?;
        self.call_at(api_key, version, request)
    }

    /// Sends `request` at `version` and decodes the response as `R`.
    pub fn call_at<R: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        request: RequestKind,
    ) -> anyhow::Result<R> {
        let correlation_id = self.send(api_key, version, &request)?;
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .with_context(|| format!("reading the {api_key:?} response from {}", self.addr))?;
        let size = usize::try_from(i32::from_be_bytes(size)).unwrap_or(usize::MAX);
        if size > RESPONSE_BYTES_MAX {
            bail!("{api_key:?} response of {size} bytes is larger than {RESPONSE_BYTES_MAX}");
        }
        let mut body = vec![0u8; size];
        self.stream
            .read_exact(&mut body)
            .with_context(|| format!("reading the {api_key:?} response from {}", self.addr))?;
        let mut buf = Bytes::from(body);
        let header = ResponseHeader::decode(&mut buf, api_key.response_header_version(version))
            .with_context(|| format!("decoding the {api_key:?} response header"))?;
        if header.correlation_id != correlation_id {
            bail!(
                "{api_key:?}: correlation id {} instead of {correlation_id}",
                header.correlation_id
            );
        }
        R::decode(&mut buf, version).with_context(|| format!("decoding the {api_key:?} response"))
    }

    /// Sends a request that gets no response (Produce with acks=0).
    pub fn send_only(
        &mut self,
        api_key: ApiKey,
        ours: RangeInclusive<i16>,
        request: RequestKind,
    ) -> anyhow::Result<()> {
        let version = self.version(api_key, ours)?;
        self.send(api_key, version, &request).map(|_| ())
    }

    fn send(
        &mut self,
        api_key: ApiKey,
        version: i16,
        request: &RequestKind,
    ) -> anyhow::Result<i32> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame =
            net::codec::encode_request(api_key, version, correlation_id, Some(CLIENT_ID), request)
                .with_context(|| format!("encoding {api_key:?} v{version}"))?;
        self.stream
            .write_all(&frame)
            .with_context(|| format!("sending {api_key:?} to {}", self.addr))?;
        Ok(correlation_id)
    }
}

/// The highest version in both `ours` and the broker's advertised range; the reason (to finish
/// "the broker at X ... API") when there is none.
fn pick_version(broker: Option<(i16, i16)>, ours: &RangeInclusive<i16>) -> Result<i16, String> {
    let Some((min, max)) = broker else {
        return Err("does not support".to_string());
    };
    let version = (*ours.end()).min(max);
    if version < min.max(*ours.start()) {
        return Err(format!(
            "supports only v{min}-v{max} (this tool v{}-v{}) of",
            ours.start(),
            ours.end()
        ));
    }
    Ok(version)
}

fn connect_any(addr: &str) -> anyhow::Result<TcpStream> {
    let addrs = addr
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {addr}"))?;
    let mut last = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(anyhow!("cannot connect to {addr}: {e}")),
        None => Err(anyhow!("cannot resolve {addr}: no address")),
    }
}

/// What Metadata said about one partition.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionMeta {
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub error_code: i16,
}

/// What Metadata said about one topic.
#[derive(Debug, Clone)]
pub struct TopicMeta {
    pub name: String,
    pub internal: bool,
    pub error_code: i16,
    pub partitions: Vec<PartitionMeta>,
}

/// A broker as Metadata lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BrokerMeta {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// A cluster view: bootstrap connection, brokers by id and one connection per broker.
pub struct Client {
    bootstrap: Vec<String>,
    boot: Option<Connection>,
    conns: HashMap<i32, Connection>,
    pub brokers: BTreeMap<i32, BrokerMeta>,
    pub controller_id: i32,
    pub cluster_id: Option<String>,
}

impl Client {
    /// `brokers`: comma-separated HOST:PORT list; the first reachable one is used to bootstrap.
    pub fn new(brokers: &str) -> anyhow::Result<Client> {
        let bootstrap: Vec<String> = brokers
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if bootstrap.is_empty() {
            bail!("--brokers is empty");
        }
        Ok(Client {
            bootstrap,
            boot: None,
            conns: HashMap::new(),
            brokers: BTreeMap::new(),
            controller_id: -1,
            cluster_id: None,
        })
    }

    /// A connection to any broker (the bootstrap one).
    pub fn any(&mut self) -> anyhow::Result<&mut Connection> {
        if self.boot.is_none() {
            let mut errors = Vec::new();
            for addr in &self.bootstrap {
                match Connection::connect(addr) {
                    Ok(c) => {
                        self.boot = Some(c);
                        break;
                    }
                    Err(e) => errors.push(format!("{e:#}")),
                }
            }
            if self.boot.is_none() {
                bail!("no broker reachable: {}", errors.join("; "));
            }
        }
        self.boot
            .as_mut()
            .ok_or_else(|| anyhow!("no bootstrap connection"))
    }

    /// Metadata for `topics` (None: every topic); refreshes the broker list and controller.
    pub fn metadata(&mut self, topics: Option<&[String]>) -> anyhow::Result<Vec<TopicMeta>> {
        let mut req = MetadataRequest::default();
        req.topics = topics.map(|ts| {
            ts.iter()
                .map(|t| {
                    let mut mt = MetadataRequestTopic::default();
                    mt.name = Some(topic_name(t));
                    mt
                })
                .collect()
        });
        req.allow_auto_topic_creation = false;
        // v4+: the only versions where auto-creation can be turned off.
        let resp: MetadataResponse =
            self.any()?
                .call(ApiKey::Metadata, 4..=12, RequestKind::Metadata(req))?;
        self.brokers = resp
            .brokers
            .iter()
            .map(|b| {
                (
                    b.node_id.0,
                    BrokerMeta {
                        id: b.node_id.0,
                        host: b.host.to_string(),
                        port: b.port,
                        rack: b.rack.as_ref().map(|r| r.to_string()),
                    },
                )
            })
            .collect();
        self.controller_id = resp.controller_id.0;
        self.cluster_id = resp.cluster_id.as_ref().map(|c| c.to_string());
        Ok(resp
            .topics
            .iter()
            .map(|t| {
                let mut partitions: Vec<PartitionMeta> = t
                    .partitions
                    .iter()
                    .map(|p| PartitionMeta {
                        partition: p.partition_index,
                        leader: p.leader_id.0,
                        replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                        isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                        error_code: p.error_code,
                    })
                    .collect();
                partitions.sort_by_key(|p| p.partition);
                TopicMeta {
                    name: t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
                    internal: t.is_internal,
                    error_code: t.error_code,
                    partitions,
                }
            })
            .collect())
    }

    /// Metadata of one existing topic; `UNKNOWN_TOPIC_OR_PARTITION` when it does not exist.
    pub fn topic(&mut self, topic: &str) -> anyhow::Result<TopicMeta> {
        let mut topics = self.metadata(Some(&[topic.to_string()]))?;
        let t = topics
            .pop()
            .ok_or_else(|| anyhow!("Metadata answered no topic for '{topic}'"))?;
        KafkaError::check(
            t.error_code,
            None,
            &format!("Topic '{topic}' does not exist."),
        )?;
        Ok(t)
    }

    /// A connection to broker `id` (Metadata must have listed it).
    pub fn broker(&mut self, id: i32) -> anyhow::Result<&mut Connection> {
        if !self.conns.contains_key(&id) {
            let b = self
                .brokers
                .get(&id)
                .ok_or_else(|| anyhow!("broker {id} is not in the cluster's metadata"))?;
            let addr = format!("{}:{}", b.host, b.port);
            let conn =
                Connection::connect(&addr).with_context(|| format!("connecting to broker {id}"))?;
            self.conns.insert(id, conn);
        }
        self.conns
            .get_mut(&id)
            .ok_or_else(|| anyhow!("broker {id}: no connection"))
    }

    /// Forgets the connection to broker `id` (after an I/O error), so the next call reconnects.
    pub fn drop_broker(&mut self, id: i32) {
        self.conns.remove(&id);
    }

    /// A connection to the controller (admin requests such as CreateTopics go there); any
    /// broker when Metadata names none.
    pub fn controller(&mut self) -> anyhow::Result<&mut Connection> {
        if self.brokers.is_empty() {
            self.metadata(Some(&[]))?;
        }
        let id = self.controller_id;
        if id >= 0 && self.brokers.contains_key(&id) {
            self.broker(id)
        } else {
            self.any()
        }
    }

    /// A connection to the coordinator of `group` (retried while it loads).
    pub fn coordinator(&mut self, group: &str) -> anyhow::Result<Connection> {
        let deadline = Instant::now() + COORDINATOR_WAIT;
        loop {
            let mut req = FindCoordinatorRequest::default();
            req.key = str_bytes(group);
            // v0-v3 carry one key; v4 batches keys (answered in `coordinators`).
            let resp: FindCoordinatorResponse = self.any()?.call(
                ApiKey::FindCoordinator,
                0..=3,
                RequestKind::FindCoordinator(req),
            )?;
            let retriable = resp.error_code == ResponseError::CoordinatorLoadInProgress.code()
                || resp.error_code == ResponseError::CoordinatorNotAvailable.code();
            if resp.error_code == 0 {
                let addr = format!("{}:{}", resp.host.as_str(), resp.port);
                return Connection::connect(&addr)
                    .with_context(|| format!("connecting to the coordinator {addr}"));
            }
            if retriable && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            KafkaError::check(
                resp.error_code,
                resp.error_message.as_ref(),
                &format!("no coordinator for group '{group}'"),
            )?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_the_highest_common_one() {
        assert_eq!(pick_version(Some((0, 12)), &(4..=12)), Ok(12));
        assert_eq!(pick_version(Some((0, 9)), &(4..=12)), Ok(9));
        assert_eq!(pick_version(Some((3, 16)), &(4..=12)), Ok(12));
        assert!(pick_version(Some((0, 3)), &(4..=12)).is_err());
        assert!(pick_version(Some((13, 16)), &(4..=12)).is_err());
        assert!(pick_version(None, &(0..=3)).is_err());
    }

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(36), "TOPIC_ALREADY_EXISTS");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(9999), "UNKNOWN_ERROR_CODE_9999");
        let e = KafkaError::check(36, Some(&str_bytes("Topic 'x' already exists.")), "ctx")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "TOPIC_ALREADY_EXISTS: Topic 'x' already exists."
        );
        let e =
            KafkaError::check(3, Some(&str_bytes("")), "Topic 'y' does not exist.").unwrap_err();
        assert_eq!(
            e.to_string(),
            "UNKNOWN_TOPIC_OR_PARTITION: Topic 'y' does not exist."
        );
        assert!(KafkaError::check(0, None, "").is_ok());
    }
}
