//! Committed offsets of a group, their expiry rule, and the small piece of the consumer
//! protocol we need to know which topics a group subscribes to.

use super::records::OffsetCommitValue;
use super::state::{ClassicGroup, GroupState};

/// A committed offset as the coordinator keeps it (Kafka's `OffsetAndMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    /// -1 when unknown.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Set only by OffsetCommit v2-v4 with an explicit retention time.
    pub expire_timestamp_ms: Option<i64>,
}

impl CommittedOffset {
    pub fn from_value(v: &OffsetCommitValue) -> Self {
        CommittedOffset {
            offset: v.offset,
            leader_epoch: v.leader_epoch,
            metadata: v.metadata.clone(),
            commit_timestamp_ms: v.commit_timestamp_ms,
            expire_timestamp_ms: (v.expire_timestamp_ms >= 0).then_some(v.expire_timestamp_ms),
        }
    }

    pub fn to_value(&self) -> OffsetCommitValue {
        OffsetCommitValue {
            offset: self.offset,
            leader_epoch: self.leader_epoch,
            metadata: self.metadata.clone(),
            commit_timestamp_ms: self.commit_timestamp_ms,
            expire_timestamp_ms: self.expire_timestamp_ms.unwrap_or(-1),
        }
    }
}

/// Kafka's `offsetExpirationCondition` + `isOffsetExpired`: returns whether `offset` of
/// `topic` has expired at `now_ms`, or `None` when the group's offsets never expire in its
/// current state (members are active).
pub(crate) fn is_offset_expired(
    group: &ClassicGroup,
    topic: &str,
    offset: &CommittedOffset,
    now_ms: i64,
    retention_ms: i64,
) -> bool {
    let base_ms = match &group.protocol_type {
        None => offset.commit_timestamp_ms,
        Some(protocol_type) => {
            if group.is(GroupState::Empty) {
                // Retention counts from when the group became empty.
                group
                    .state_timestamp_ms
                    .unwrap_or(offset.commit_timestamp_ms)
            } else if protocol_type == super::CONSUMER_PROTOCOL_TYPE
                && group.subscribed_topics.is_some()
                && group.is(GroupState::Stable)
            {
                offset.commit_timestamp_ms
            } else {
                return false;
            }
        }
    };
    if group.is_subscribed_to_topic(topic) {
        return false;
    }
    let expire_ms = offset
        .expire_timestamp_ms
        .unwrap_or(base_ms.saturating_add(retention_ms));
    now_ms >= expire_ms
}

/// Topics of a consumer-protocol subscription (`ConsumerProtocolSubscription`): every
/// version starts with int16 version, then an int32-counted array of int16-length strings.
/// Returns `None` if the bytes do not parse (Kafka then treats the topics as unknown).
pub(crate) fn parse_subscription_topics(bytes: &[u8]) -> Option<Vec<String>> {
    let mut pos = 0usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let end = pos.checked_add(n)?;
        let s = bytes.get(pos..end)?;
        pos = end;
        Some(s)
    };
    let v = take(2)?;
    if i16::from_be_bytes([v[0], v[1]]) < 0 {
        return None;
    }
    let n = take(4)?;
    let count = i32::from_be_bytes([n[0], n[1], n[2], n[3]]);
    if count < 0 {
        return None;
    }
    let mut topics = Vec::new();
    for _ in 0..count {
        let l = take(2)?;
        let len = i16::from_be_bytes([l[0], l[1]]);
        if len < 0 {
            return None;
        }
        let s = take(len as usize)?;
        topics.push(std::str::from_utf8(s).ok()?.to_owned());
    }
    Some(topics)
}

/// Encodes a v0 consumer-protocol subscription (tests and tools).
pub fn encode_subscription_v0(topics: &[&str]) -> bytes::Bytes {
    use bytes::BufMut;
    let mut b = bytes::BytesMut::new();
    b.put_i16(0);
    b.put_i32(topics.len() as i32);
    for t in topics {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
    }
    b.put_i32(-1); // null user data
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_topics_parse() {
        let b = encode_subscription_v0(&["a", "bb"]);
        assert_eq!(
            parse_subscription_topics(&b),
            Some(vec!["a".to_string(), "bb".to_string()])
        );
        assert_eq!(parse_subscription_topics(&b[..5]), None);
        assert_eq!(parse_subscription_topics(&[]), None);
    }
}
