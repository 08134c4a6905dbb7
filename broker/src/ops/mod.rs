//! What operators see of a running broker: counters and histograms ([`metrics`]) and the
//! admin HTTP endpoint that serves them with `/health` and `/ready` ([`admin_http`]).
//!
//! Invariants: each shard writes only its own counters (relaxed atomics on its own cache
//! lines); the admin endpoint runs on its own thread and only reads.

pub mod admin_http;
pub mod metrics;
