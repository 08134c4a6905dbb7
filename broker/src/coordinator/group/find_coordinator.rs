//! FindCoordinator (API key 10): which broker coordinates a group (or transactional id).
//!
//! A group's coordinator is the leader of partition [`super::group_partition`] of
//! `__consumer_offsets`; on one node, the shard owning that partition. This module only
//! shapes the response across versions (v0-v3 single key, v4+ batched keys); the caller
//! resolves keys to nodes from its metadata.

use kafka_protocol::messages::{
    find_coordinator_response::Coordinator, BrokerId, FindCoordinatorRequest,
    FindCoordinatorResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::GroupError;
use crate::errors::KafkaCode;

/// `key_type` of groups.
pub const KEY_TYPE_GROUP: i8 = 0;
/// `key_type` of transactional ids.
pub const KEY_TYPE_TRANSACTION: i8 = 1;

/// A broker endpoint as FindCoordinator reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorNode {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
}

/// Builds the FindCoordinator response. `locate(key_type, key)` returns the coordinator of
/// a group (`key_type` 0) or transactional id (1), or an error code
/// (COORDINATOR_NOT_AVAILABLE when the partition has no leader yet). Unknown key types get
/// INVALID_REQUEST, as in Kafka.
pub fn find_coordinator_response(
    api_version: i16,
    request: &FindCoordinatorRequest,
    locate: impl Fn(i8, &str) -> Result<CoordinatorNode, i16>,
) -> FindCoordinatorResponse {
    // v0 has no key type: always a group.
    let key_type = if api_version >= 1 {
        request.key_type
    } else {
        KEY_TYPE_GROUP
    };
    let resolve = |key: &str| -> (i16, CoordinatorNode) {
        let no_node = CoordinatorNode {
            node_id: -1,
            host: String::new(),
            port: -1,
        };
        if key_type != KEY_TYPE_GROUP && key_type != KEY_TYPE_TRANSACTION {
            return (GroupError::UnknownCoordinatorKeyType.kafka_code(), no_node);
        }
        match locate(key_type, key) {
            Ok(node) => (0, node),
            Err(code) => (code, no_node),
        }
    };
    let mut r = FindCoordinatorResponse::default();
    if api_version >= 4 {
        r.coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let (code, node) = resolve(key.as_str());
                let mut c = Coordinator::default();
                c.key = key.clone();
                c.node_id = BrokerId(node.node_id);
                c.host = StrBytes::from_string(node.host);
                c.port = node.port;
                c.error_code = code;
                // Kafka leaves the per-key message null.
                c.error_message = None;
                c
            })
            .collect();
    } else {
        let (code, node) = resolve(request.key.as_str());
        r.error_code = code;
        r.error_message = Some(StrBytes::from_string(crate::errors::kafka_message(code)));
        r.node_id = BrokerId(node.node_id);
        r.host = StrBytes::from_string(node.host);
        r.port = node.port;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::super::group_partition;
    use super::*;
    use kafka_protocol::ResponseError;

    fn locate(key_type: i8, key: &str) -> Result<CoordinatorNode, i16> {
        assert_eq!(key_type, KEY_TYPE_GROUP);
        let p = group_partition(key, 50);
        if p == 0 {
            return Err(ResponseError::CoordinatorNotAvailable.code());
        }
        Ok(CoordinatorNode {
            node_id: 1,
            host: format!("h{p}"),
            port: 9092,
        })
    }

    #[test]
    fn batched_and_single_key_versions() {
        let mut req = FindCoordinatorRequest::default();
        req.coordinator_keys = vec![
            StrBytes::from_static_str("my-group"),
            StrBytes::from_static_str("polygenelubricants"),
        ];
        let r = find_coordinator_response(4, &req, locate);
        assert_eq!(r.coordinators.len(), 2);
        assert_eq!(r.coordinators[0].host.as_str(), "h12");
        assert_eq!(r.coordinators[0].error_code, 0);
        assert_eq!(r.coordinators[0].error_message, None);
        assert_eq!(
            r.coordinators[1].error_code,
            ResponseError::CoordinatorNotAvailable.code()
        );
        assert_eq!(
            (r.coordinators[1].node_id.0, r.coordinators[1].port),
            (-1, -1)
        );

        let mut req = FindCoordinatorRequest::default();
        req.key = StrBytes::from_static_str("my-group");
        let r = find_coordinator_response(1, &req, locate);
        assert_eq!((r.error_code, r.node_id.0, r.host.as_str()), (0, 1, "h12"));
        assert_eq!(r.error_message.as_ref().map(|m| m.as_str()), Some("NONE"));
        // Like Kafka, an empty group id is a valid key.
        req.key = StrBytes::new();
        assert_eq!(
            find_coordinator_response(0, &req, |_, _| Ok(CoordinatorNode {
                node_id: 1,
                host: "h".into(),
                port: 1,
            }))
            .error_code,
            0
        );

        req.key_type = 7;
        let r = find_coordinator_response(2, &req, locate);
        assert_eq!(r.error_code, ResponseError::InvalidRequest.code());
    }
}
