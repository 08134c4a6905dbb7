//! The records of `__transaction_state`: one per transactional id, compacted by key.
//!
//! Key: Kafka's `TransactionLogKey` v0 (int16 version 0, then the id as an int16-length
//! string), so keys compact as Kafka's do. Value: a Ringtail-specific, versioned encoding
//! (the magic `RTX1` then JSON of [`TxnMeta`]): it also carries the transaction's pending
//! offsets, which Kafka keeps in `__consumer_offsets` instead. A tombstone deletes the id.

use bytes::Bytes;

use super::TxnMeta;

const KEY_VERSION: i16 = 0;
const VALUE_MAGIC: &[u8; 4] = b"RTX1";

/// Why a record does not decode (or encode).
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("transaction log key truncated or malformed")]
    BadKey,
    #[error("transaction log key version {0} is not supported")]
    KeyVersion(i16),
    #[error("transaction log value has an unknown format")]
    BadValueMagic,
    #[error("transaction log value: {0}")]
    Json(#[from] serde_json::Error),
    #[error("transactional id too long")]
    IdTooLong,
    #[error("completion of unknown persist {0}")]
    UnknownPersist(u64),
}

/// One record: the state of `transactional_id`, or `None` (tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    pub transactional_id: String,
    pub meta: Option<TxnMeta>,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Value {
    pub meta: TxnMeta,
}

impl TxnRecord {
    pub fn encode(&self) -> Result<(Bytes, Option<Bytes>), RecordError> {
        let id = self.transactional_id.as_bytes();
        let len = i16::try_from(id.len()).map_err(|_| RecordError::IdTooLong)?;
        let mut key = Vec::with_capacity(4 + id.len());
        key.extend_from_slice(&KEY_VERSION.to_be_bytes());
        key.extend_from_slice(&len.to_be_bytes());
        key.extend_from_slice(id);
        let value = match &self.meta {
            None => None,
            Some(meta) => {
                let mut v = VALUE_MAGIC.to_vec();
                serde_json::to_writer(&mut v, &Value { meta: meta.clone() })?;
                Some(Bytes::from(v))
            }
        };
        Ok((Bytes::from(key), value))
    }
}

pub(super) fn decode_key(key: &[u8]) -> Result<String, RecordError> {
    let version = i16::from_be_bytes(
        key.get(0..2)
            .and_then(|b| b.try_into().ok())
            .ok_or(RecordError::BadKey)?,
    );
    if version != KEY_VERSION {
        return Err(RecordError::KeyVersion(version));
    }
    let len = i16::from_be_bytes(
        key.get(2..4)
            .and_then(|b| b.try_into().ok())
            .ok_or(RecordError::BadKey)?,
    );
    let len = usize::try_from(len).map_err(|_| RecordError::BadKey)?;
    let id = key.get(4..4 + len).ok_or(RecordError::BadKey)?;
    String::from_utf8(id.to_vec()).map_err(|_| RecordError::BadKey)
}

pub(super) fn decode_value(value: &[u8]) -> Result<Value, RecordError> {
    let body = value
        .strip_prefix(VALUE_MAGIC.as_slice())
        .ok_or(RecordError::BadValueMagic)?;
    Ok(serde_json::from_slice(body)?)
}
