//! `net`: the Kafka wire layer of Ringtail.
//!
//! What this crate owns, bottom-up:
//! - [`frame`]: length-prefixed frames (big-endian `i32` size, then the body) and the size
//!   limit, checked before any body allocation.
//! - [`codec`]: the request header ([`parse_request_header`]), typed request decoding over the
//!   `kafka-protocol` crate ([`decode_request`]) and response encoding with the right header
//!   version and size prefix ([`encode_response`]).
//! - [`versions`]: the advertised ApiVersions table, the real version ranges of the
//!   `kafka-protocol` structs, and the KIP-511 fallback response.
//! - [`conn`]: serving connections on a glommio shard — pipelined requests, in-order
//!   responses written with gathered `sendmsg`, SO_REUSEPORT listeners, connection limits and
//!   idle timeouts — around a broker-provided [`Handler`].
//! - [`route`]: typed request/response between shards over bounded glommio shared channels.
//!
//! Zero copy: a request body is a slice of the socket read buffer (Produce `records` reach the
//! broker without a copy), and Fetch `records` of 16 KiB or more are emitted by
//! [`encode_response`] as separate chunks that the connection hands straight to `sendmsg`.
//!
//! What it does not own: Kafka *semantics*. It knows no topics, logs or groups; it does not
//! decide which APIs or versions are supported (the broker does, with [`ApiVersionTable`]).
//!
//! Invariants:
//! - Nothing here panics on input from the network. Decoding validates versions against the
//!   request struct's real range, defuses absurd length prefixes before the decoder can
//!   pre-allocate from them, catches panics as a last resort, and rejects trailing bytes.
//! - A connection answers strictly in request order; at most `max_in_flight` requests of one
//!   connection are between "read" and "response written".
//! - Frame-level garbage closes only the connection it arrived on.
//! - Everything that runs on a shard is `!Send` and lives on that shard; only [`route`]
//!   crosses threads, through bounded queues.

pub mod affinity;
mod apis;
pub mod codec;
pub mod conn;
pub mod frame;
pub mod route;
pub mod versions;

pub use affinity::Affinity;
pub use codec::{
    decode_request, encode_request, encode_response, parse_request_header, DecodeError,
    EncodeError, RequestFrame, RequestIds,
};
pub use conn::{
    listen, serve_connection, ConnClosed, ConnHome, ConnInfo, ConnLimits, Handler, HandlerResult,
    Handoff, Listener, ListenerStats,
};
pub use frame::FrameError;
pub use route::{RouteError, ShardRouter};
pub use versions::{encode_api_versions_fallback, ApiVersionTable, VersionSupport};

/// Re-export so the broker and tests use the exact same protocol crate version.
pub use kafka_protocol;
