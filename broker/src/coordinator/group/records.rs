//! Codec for the records of the internal `__consumer_offsets` topic.
//!
//! The formats are Kafka's own (`group-coordinator/src/main/resources/common/message/*.json`),
//! so Kafka tools (`kafka-console-consumer --formatter ...OffsetsMessageFormatter`, `kcat`
//! with a decoder) can read a Ringtail offsets topic, and a Kafka log can be replayed here.
//!
//! Every key starts with an int16 "key version" that is really the record type:
//! - 0 and 1: `OffsetCommitKey` (group, topic, partition); 0 is the legacy spelling.
//! - 2: `GroupMetadataKey` (group).
//! - 3 and up: KIP-848 / share-group records; not classic-group state, reported as
//!   [`RecordError::UnknownKeyType`] so the loader can skip them.
//!
//! Every value starts with an int16 schema version. A missing value is a tombstone
//! (delete the offset, or delete the group).
//!
//! We write `OffsetCommitKey` v1, `OffsetCommitValue` v1 (when the commit carries an explicit
//! expire timestamp, i.e. OffsetCommit v2-v4 with a retention time) or v3 (otherwise), and
//! `GroupMetadataKey` v2 with `GroupMetadataValue` v3, like Kafka 3.x. We read value versions
//! 0-4 of both (v4 is the flexible encoding).

use bytes::{BufMut, Bytes, BytesMut};

/// Largest string the codec accepts (Kafka strings are int16-length prefixed).
const STRING_BYTES_MAX: usize = i16::MAX as usize;

/// Errors while decoding a record of the offsets topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record truncated: needed {needed} bytes at position {at}, {len} available")]
    Truncated {
        at: usize,
        needed: usize,
        len: usize,
    },
    #[error("key type {0} is not a classic group record")]
    UnknownKeyType(i16),
    #[error("unsupported {what} value version {version}")]
    UnsupportedVersion { what: &'static str, version: i16 },
    #[error("invalid length {0}")]
    InvalidLength(i64),
    #[error("string is not UTF-8")]
    InvalidUtf8,
    #[error("null where a non-null {0} is required")]
    UnexpectedNull(&'static str),
    #[error("{0} trailing bytes after the record")]
    TrailingBytes(usize),
    #[error("string of {0} bytes is too long to encode")]
    StringTooLong(usize),
}

/// Key of a committed offset: `OffsetCommitKey`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OffsetCommitKey {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

/// Value of a committed offset: `OffsetCommitValue` (the union of versions 0-4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitValue {
    pub offset: i64,
    /// -1 when unknown (always -1 for versions below 3).
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Only version 1 carries it; -1 means "use the broker's retention".
    pub expire_timestamp_ms: i64,
}

/// One member inside a `GroupMetadataValue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberMetadataValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Version 0 has none; decoding uses the session timeout then (as Kafka does).
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the group's selected protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// Value of a group's membership: `GroupMetadataValue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadataValue {
    /// Empty for a group without protocol type (standalone consumers).
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// -1 when unknown (versions below 2).
    pub current_state_timestamp_ms: i64,
    pub members: Vec<MemberMetadataValue>,
}

/// One record of `__consumer_offsets` that concerns classic groups. `None` values are
/// tombstones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetsRecord {
    OffsetCommit {
        key: OffsetCommitKey,
        value: Option<OffsetCommitValue>,
    },
    GroupMetadata {
        group: String,
        value: Option<GroupMetadataValue>,
    },
}

impl OffsetsRecord {
    /// The group this record belongs to (also the partitioning key of the offsets topic).
    pub fn group_id(&self) -> &str {
        match self {
            OffsetsRecord::OffsetCommit { key, .. } => &key.group,
            OffsetsRecord::GroupMetadata { group, .. } => group,
        }
    }

    /// Encodes the record as Kafka does: `(key, value)`; `None` value is a tombstone.
    pub fn encode(&self) -> Result<(Bytes, Option<Bytes>), RecordError> {
        match self {
            OffsetsRecord::OffsetCommit { key, value } => {
                let mut k = BytesMut::with_capacity(8 + key.group.len() + key.topic.len());
                k.put_i16(1);
                put_string(&mut k, &key.group)?;
                put_string(&mut k, &key.topic)?;
                k.put_i32(key.partition);
                let v = match value {
                    None => None,
                    Some(v) => Some(encode_offset_commit_value(v)?),
                };
                Ok((k.freeze(), v))
            }
            OffsetsRecord::GroupMetadata { group, value } => {
                let mut k = BytesMut::with_capacity(4 + group.len());
                k.put_i16(2);
                put_string(&mut k, group)?;
                let v = match value {
                    None => None,
                    Some(v) => Some(encode_group_metadata_value(v)?),
                };
                Ok((k.freeze(), v))
            }
        }
    }

    /// Decodes a record read back from the offsets topic.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<OffsetsRecord, RecordError> {
        let mut k = Reader::new(key);
        let key_type = k.i16()?;
        let record = match key_type {
            0 | 1 => {
                let group = k.string()?;
                let topic = k.string()?;
                let partition = k.i32()?;
                k.finish()?;
                let value = match value {
                    None => None,
                    Some(v) => Some(decode_offset_commit_value(v)?),
                };
                OffsetsRecord::OffsetCommit {
                    key: OffsetCommitKey {
                        group,
                        topic,
                        partition,
                    },
                    value,
                }
            }
            2 => {
                let group = k.string()?;
                k.finish()?;
                let value = match value {
                    None => None,
                    Some(v) => Some(decode_group_metadata_value(v)?),
                };
                OffsetsRecord::GroupMetadata { group, value }
            }
            other => return Err(RecordError::UnknownKeyType(other)),
        };
        Ok(record)
    }
}

fn encode_offset_commit_value(v: &OffsetCommitValue) -> Result<Bytes, RecordError> {
    let mut b = BytesMut::with_capacity(32 + v.metadata.len());
    if v.expire_timestamp_ms >= 0 {
        // Version 1: the only version with a per-offset expire timestamp.
        b.put_i16(1);
        b.put_i64(v.offset);
        put_string(&mut b, &v.metadata)?;
        b.put_i64(v.commit_timestamp_ms);
        b.put_i64(v.expire_timestamp_ms);
    } else {
        b.put_i16(3);
        b.put_i64(v.offset);
        b.put_i32(v.leader_epoch);
        put_string(&mut b, &v.metadata)?;
        b.put_i64(v.commit_timestamp_ms);
    }
    Ok(b.freeze())
}

fn decode_offset_commit_value(bytes: &[u8]) -> Result<OffsetCommitValue, RecordError> {
    let mut r = Reader::new(bytes);
    let version = r.i16()?;
    if !(0..=4).contains(&version) {
        return Err(RecordError::UnsupportedVersion {
            what: "OffsetCommitValue",
            version,
        });
    }
    let flexible = version >= 4;
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.string_any(flexible)?;
    let commit_timestamp_ms = r.i64()?;
    let expire_timestamp_ms = if version == 1 { r.i64()? } else { -1 };
    if flexible {
        r.skip_tagged_fields()?;
    }
    // Kafka ignores trailing bytes of values ("ignorable" future fields); so do we.
    Ok(OffsetCommitValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
        expire_timestamp_ms,
    })
}

fn encode_group_metadata_value(v: &GroupMetadataValue) -> Result<Bytes, RecordError> {
    let members_bytes: usize = v
        .members
        .iter()
        .map(|m| 64 + m.member_id.len() + m.subscription.len() + m.assignment.len())
        .sum();
    let mut b = BytesMut::with_capacity(64 + members_bytes);
    b.put_i16(3);
    put_string(&mut b, &v.protocol_type)?;
    b.put_i32(v.generation);
    put_nullable_string(&mut b, v.protocol.as_deref())?;
    put_nullable_string(&mut b, v.leader.as_deref())?;
    b.put_i64(v.current_state_timestamp_ms);
    let count = i32::try_from(v.members.len())
        .map_err(|_| RecordError::InvalidLength(v.members.len() as i64))?;
    b.put_i32(count);
    for m in &v.members {
        put_string(&mut b, &m.member_id)?;
        put_nullable_string(&mut b, m.group_instance_id.as_deref())?;
        put_string(&mut b, &m.client_id)?;
        put_string(&mut b, &m.client_host)?;
        b.put_i32(m.rebalance_timeout_ms);
        b.put_i32(m.session_timeout_ms);
        put_bytes(&mut b, &m.subscription)?;
        put_bytes(&mut b, &m.assignment)?;
    }
    Ok(b.freeze())
}

fn decode_group_metadata_value(bytes: &[u8]) -> Result<GroupMetadataValue, RecordError> {
    let mut r = Reader::new(bytes);
    let version = r.i16()?;
    if !(0..=4).contains(&version) {
        return Err(RecordError::UnsupportedVersion {
            what: "GroupMetadataValue",
            version,
        });
    }
    let flexible = version >= 4;
    let protocol_type = r.string_any(flexible)?;
    let generation = r.i32()?;
    let protocol = r.nullable_string_any(flexible)?;
    let leader = r.nullable_string_any(flexible)?;
    let current_state_timestamp_ms = if version >= 2 { r.i64()? } else { -1 };
    let count = r.array_len(flexible)?;
    // Each member takes at least 20 bytes; cap the reservation by what the input can hold.
    let mut members = Vec::with_capacity(count.min(bytes.len() / 20));
    for _ in 0..count {
        let member_id = r.string_any(flexible)?;
        let group_instance_id = if version >= 3 {
            r.nullable_string_any(flexible)?
        } else {
            None
        };
        let client_id = r.string_any(flexible)?;
        let client_host = r.string_any(flexible)?;
        let rebalance_timeout = if version >= 1 { Some(r.i32()?) } else { None };
        let session_timeout_ms = r.i32()?;
        let subscription = r.bytes_any(flexible)?;
        let assignment = r.bytes_any(flexible)?;
        if flexible {
            r.skip_tagged_fields()?;
        }
        members.push(MemberMetadataValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms: rebalance_timeout.unwrap_or(session_timeout_ms),
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    if flexible {
        r.skip_tagged_fields()?;
    }
    Ok(GroupMetadataValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp_ms,
        members,
    })
}

fn put_string(b: &mut BytesMut, s: &str) -> Result<(), RecordError> {
    if s.len() > STRING_BYTES_MAX {
        return Err(RecordError::StringTooLong(s.len()));
    }
    b.put_i16(s.len() as i16); // ok: bounded by STRING_BYTES_MAX just above
    b.put_slice(s.as_bytes());
    Ok(())
}

fn put_nullable_string(b: &mut BytesMut, s: Option<&str>) -> Result<(), RecordError> {
    match s {
        None => {
            b.put_i16(-1);
            Ok(())
        }
        Some(s) => put_string(b, s),
    }
}

fn put_bytes(b: &mut BytesMut, bytes: &[u8]) -> Result<(), RecordError> {
    let len =
        i32::try_from(bytes.len()).map_err(|_| RecordError::InvalidLength(bytes.len() as i64))?;
    b.put_i32(len);
    b.put_slice(bytes);
    Ok(())
}

/// Bounds-checked big-endian reader; every read fails cleanly on short input.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        let end = self.pos.checked_add(n).filter(|end| *end <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(RecordError::Truncated {
                at: self.pos,
                needed: n,
                len: self.buf.len(),
            }),
        }
    }

    fn i16(&mut self) -> Result<i16, RecordError> {
        let s = self.take(2)?;
        Ok(i16::from_be_bytes([s[0], s[1]]))
    }

    fn i32(&mut self) -> Result<i32, RecordError> {
        let s = self.take(4)?;
        Ok(i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn i64(&mut self) -> Result<i64, RecordError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(i64::from_be_bytes(a))
    }

    fn uvarint(&mut self) -> Result<u64, RecordError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordError::InvalidLength(-1))
    }

    /// Length of a string/bytes field; `None` for null.
    fn len_prefix(&mut self, flexible: bool, wide: bool) -> Result<Option<usize>, RecordError> {
        let len: i64 = if flexible {
            self.uvarint()? as i64 - 1
        } else if wide {
            i64::from(self.i32()?)
        } else {
            i64::from(self.i16()?)
        };
        if len == -1 {
            return Ok(None);
        }
        if len < 0 || len as usize > self.buf.len() - self.pos {
            return Err(RecordError::InvalidLength(len));
        }
        Ok(Some(len as usize))
    }

    fn nullable_string_any(&mut self, flexible: bool) -> Result<Option<String>, RecordError> {
        match self.len_prefix(flexible, false)? {
            None => Ok(None),
            Some(n) => {
                let s = self.take(n)?;
                let s = std::str::from_utf8(s).map_err(|_| RecordError::InvalidUtf8)?;
                Ok(Some(s.to_owned()))
            }
        }
    }

    fn string_any(&mut self, flexible: bool) -> Result<String, RecordError> {
        self.nullable_string_any(flexible)?
            .ok_or(RecordError::UnexpectedNull("string"))
    }

    fn string(&mut self) -> Result<String, RecordError> {
        self.string_any(false)
    }

    fn bytes_any(&mut self, flexible: bool) -> Result<Bytes, RecordError> {
        match self.len_prefix(flexible, true)? {
            None => Err(RecordError::UnexpectedNull("bytes")),
            Some(n) => Ok(Bytes::copy_from_slice(self.take(n)?)),
        }
    }

    fn array_len(&mut self, flexible: bool) -> Result<usize, RecordError> {
        let len: i64 = if flexible {
            self.uvarint()? as i64 - 1
        } else {
            i64::from(self.i32()?)
        };
        if len < 0 {
            return Err(RecordError::UnexpectedNull("array"));
        }
        Ok(len as usize)
    }

    fn skip_tagged_fields(&mut self) -> Result<(), RecordError> {
        let count = self.uvarint()?;
        for _ in 0..count {
            let _tag = self.uvarint()?;
            let size = self.uvarint()?;
            let size = usize::try_from(size).map_err(|_| RecordError::InvalidLength(-1))?;
            self.take(size)?;
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), RecordError> {
        let rest = self.buf.len() - self.pos;
        if rest == 0 {
            Ok(())
        } else {
            Err(RecordError::TrailingBytes(rest))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn commit(expire: i64) -> OffsetsRecord {
        OffsetsRecord::OffsetCommit {
            key: OffsetCommitKey {
                group: "g1".into(),
                topic: "orders".into(),
                partition: 7,
            },
            value: Some(OffsetCommitValue {
                offset: 42,
                leader_epoch: if expire >= 0 { -1 } else { 5 },
                metadata: "meta".into(),
                commit_timestamp_ms: 1_700_000_000_000,
                expire_timestamp_ms: expire,
            }),
        }
    }

    #[test]
    fn offset_commit_key_matches_kafka_bytes() {
        let (key, value) = commit(-1).encode().unwrap();
        // int16 type 1, "g1", "orders", int32 7
        let mut want = vec![0, 1, 0, 2, b'g', b'1', 0, 6];
        want.extend_from_slice(b"orders");
        want.extend_from_slice(&[0, 0, 0, 7]);
        assert_eq!(&key[..], &want[..]);
        let value = value.unwrap();
        assert_eq!(&value[..2], &[0, 3], "no expire timestamp => v3");
        assert_eq!(&value[2..10], &42i64.to_be_bytes());
        assert_eq!(&value[10..14], &5i32.to_be_bytes());
        assert_eq!(value.len(), 2 + 8 + 4 + 2 + 4 + 8);
    }

    #[test]
    fn offset_commit_v1_and_v3_round_trip() {
        for expire in [-1, 1_700_000_100_000] {
            let rec = commit(expire);
            let (k, v) = rec.encode().unwrap();
            if expire >= 0 {
                assert_eq!(&v.as_ref().unwrap()[..2], &[0, 1]);
            }
            assert_eq!(OffsetsRecord::decode(&k, v.as_deref()).unwrap(), rec);
        }
    }

    #[test]
    fn legacy_versions_decode() {
        // OffsetCommitValue v0: offset, metadata, timestamp
        let mut v0 = vec![0, 0];
        v0.extend_from_slice(&9i64.to_be_bytes());
        v0.extend_from_slice(&[0, 1, b'x']);
        v0.extend_from_slice(&77i64.to_be_bytes());
        let (k, _) = commit(-1).encode().unwrap();
        let rec = OffsetsRecord::decode(&k, Some(&v0)).unwrap();
        match rec {
            OffsetsRecord::OffsetCommit { value: Some(v), .. } => {
                assert_eq!(
                    (v.offset, v.leader_epoch, v.commit_timestamp_ms),
                    (9, -1, 77)
                );
                assert_eq!(v.metadata, "x");
            }
            other => panic!("unexpected {other:?}"),
        }
        // Key type 0 is the legacy spelling of the offset key.
        let mut k0 = k.to_vec();
        k0[1] = 0;
        assert!(matches!(
            OffsetsRecord::decode(&k0, None).unwrap(),
            OffsetsRecord::OffsetCommit { value: None, .. }
        ));
    }

    #[test]
    fn flexible_v4_offset_value_decodes() {
        let mut v = vec![0, 4];
        v.extend_from_slice(&11i64.to_be_bytes());
        v.extend_from_slice(&3i32.to_be_bytes());
        v.extend_from_slice(&[3, b'a', b'b']); // compact string "ab"
        v.extend_from_slice(&5i64.to_be_bytes());
        v.extend_from_slice(&[1, 9, 2, 0xAA, 0xBB]); // one unknown tagged field
        let (k, _) = commit(-1).encode().unwrap();
        let rec = OffsetsRecord::decode(&k, Some(&v)).unwrap();
        let OffsetsRecord::OffsetCommit { value: Some(v), .. } = rec else {
            panic!("not an offset commit");
        };
        assert_eq!(
            (v.offset, v.leader_epoch, v.metadata.as_str()),
            (11, 3, "ab")
        );
    }

    fn group_value(members: usize) -> GroupMetadataValue {
        GroupMetadataValue {
            protocol_type: "consumer".into(),
            generation: 3,
            protocol: Some("range".into()),
            leader: Some("m-0".into()),
            current_state_timestamp_ms: 1234,
            members: (0..members)
                .map(|i| MemberMetadataValue {
                    member_id: format!("m-{i}"),
                    group_instance_id: if i % 2 == 0 {
                        Some(format!("i-{i}"))
                    } else {
                        None
                    },
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 300_000,
                    session_timeout_ms: 45_000,
                    subscription: Bytes::from(vec![i as u8; 5]),
                    assignment: Bytes::from(vec![1, 2, 3]),
                })
                .collect(),
        }
    }

    #[test]
    fn group_metadata_round_trip_and_tombstone() {
        for n in [0, 1, 3] {
            let rec = OffsetsRecord::GroupMetadata {
                group: "g".into(),
                value: Some(group_value(n)),
            };
            let (k, v) = rec.encode().unwrap();
            assert_eq!(&k[..], &[0, 2, 0, 1, b'g']);
            assert_eq!(&v.as_ref().unwrap()[..2], &[0, 3]);
            assert_eq!(OffsetsRecord::decode(&k, v.as_deref()).unwrap(), rec);
        }
        let tomb = OffsetsRecord::GroupMetadata {
            group: "g".into(),
            value: None,
        };
        let (k, v) = tomb.encode().unwrap();
        assert!(v.is_none());
        assert_eq!(OffsetsRecord::decode(&k, None).unwrap(), tomb);
    }

    #[test]
    fn group_metadata_v0_uses_session_timeout_as_rebalance_timeout() {
        let mut v = vec![0, 0];
        v.extend_from_slice(&[0, 8]);
        v.extend_from_slice(b"consumer");
        v.extend_from_slice(&1i32.to_be_bytes());
        v.extend_from_slice(&[0, 5]);
        v.extend_from_slice(b"range");
        v.extend_from_slice(&[0, 1, b'm']);
        v.extend_from_slice(&1i32.to_be_bytes());
        v.extend_from_slice(&[0, 1, b'm', 0, 1, b'c', 0, 1, b'h']);
        v.extend_from_slice(&10_000i32.to_be_bytes());
        v.extend_from_slice(&0i32.to_be_bytes());
        v.extend_from_slice(&1i32.to_be_bytes());
        v.push(7);
        let rec = OffsetsRecord::decode(&[0, 2, 0, 1, b'g'], Some(&v)).unwrap();
        let OffsetsRecord::GroupMetadata { value: Some(g), .. } = rec else {
            panic!("not group metadata");
        };
        assert_eq!(g.members[0].rebalance_timeout_ms, 10_000);
        assert_eq!(g.current_state_timestamp_ms, -1);
        assert_eq!(&g.members[0].assignment[..], &[7]);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(matches!(
            OffsetsRecord::decode(&[0, 9, 0, 0], None),
            Err(RecordError::UnknownKeyType(9))
        ));
        assert!(OffsetsRecord::decode(&[0], None).is_err());
        assert!(OffsetsRecord::decode(&[0, 2, 0, 5, b'a'], None).is_err());
        assert!(OffsetsRecord::decode(&[0, 2, 0, 1, b'a'], Some(&[0, 9])).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(key in proptest::collection::vec(any::<u8>(), 0..40),
                               value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..80))) {
            let _ = OffsetsRecord::decode(&key, value.as_deref());
        }

        #[test]
        fn commit_round_trip(group in "[a-z]{0,12}", topic in "[a-z.]{1,12}", partition in any::<i32>(),
                             offset in any::<i64>(), epoch in -1i32..1000, meta in ".{0,20}",
                             ts in any::<i64>(), expire in prop_oneof![Just(-1i64), 0i64..i64::MAX]) {
            let rec = OffsetsRecord::OffsetCommit {
                key: OffsetCommitKey { group, topic, partition },
                value: Some(OffsetCommitValue {
                    offset,
                    leader_epoch: if expire >= 0 { -1 } else { epoch },
                    metadata: meta,
                    commit_timestamp_ms: ts,
                    expire_timestamp_ms: expire,
                }),
            };
            let (k, v) = rec.encode().unwrap();
            prop_assert_eq!(OffsetsRecord::decode(&k, v.as_deref()).unwrap(), rec);
        }
    }
}
