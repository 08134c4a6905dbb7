//! A minimal blocking Kafka client for the admin commands: one TCP connection, one request
//! at a time, typed requests and responses from `kafka-protocol`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseHeader};
use kafka_protocol::protocol::Decodable;

/// Largest response frame accepted (a describe of a big group stays far below).
const RESPONSE_BYTES_MAX: usize = 256 << 20;
const IO_TIMEOUT: Duration = Duration::from_secs(30);
const CLIENT_ID: &str = "ringtail-cli";

pub struct Connection {
    stream: TcpStream,
    next_correlation_id: i32,
}

impl Connection {
    pub fn connect(bootstrap: &str) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(bootstrap)
            .with_context(|| format!("cannot connect to {bootstrap}"))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            next_correlation_id: 1,
        })
    }

    /// Sends `request` at `version` and decodes the response as `R`.
    pub fn call<R: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        request: RequestKind,
    ) -> anyhow::Result<R> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame = net::codec::encode_request(
            api_key,
            version,
            correlation_id,
            Some(CLIENT_ID),
            &request,
        )?;
        self.stream
            .write_all(&frame)
            .with_context(|| format!("sending {api_key:?}"))?;
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .with_context(|| format!("reading the {api_key:?} response"))?;
        let size = usize::try_from(i32::from_be_bytes(size)).unwrap_or(usize::MAX);
        if size > RESPONSE_BYTES_MAX {
            bail!("{api_key:?} response of {size} bytes is larger than {RESPONSE_BYTES_MAX}");
        }
        let mut body = vec![0u8; size];
        self.stream.read_exact(&mut body)?;
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
}
