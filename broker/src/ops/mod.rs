//! What operators see of a running broker: counters and histograms ([`metrics`]), labelled
//! series per topic, partition and group with their cap ([`series`]), and the
//! admin HTTP endpoint that serves them with `/health` and `/ready` ([`admin_http`]).
//!
//! Invariants: each shard writes only its own counters (relaxed atomics on its own cache
//! lines); the admin endpoint runs on its own thread and only reads.

pub mod admin_http;
pub mod metrics;
pub mod series;
