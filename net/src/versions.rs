//! Which API versions the broker advertises, and what the `kafka-protocol` structs can really
//! decode/encode.
//!
//! `ApiKey::valid_versions` in kafka-protocol 0.18 overstates some structs (InitProducerId says
//! 6, the struct stops at 5; OffsetCommit/OffsetFetch say 10, the structs stop at 9), so the
//! ranges here come from each struct's own `Message::VERSIONS`, and
//! [`ApiVersionTable::verify`] round-trips every advertised version through the real structs.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, Message, VersionRange};

use crate::apis::for_each_api;

/// Kafka's UNSUPPORTED_VERSION error code.
pub const UNSUPPORTED_VERSION: i16 = 35;

macro_rules! struct_versions {
    ($(($name:ident, $req:ident, $resp:ident)),* $(,)?) => {
        /// Versions the request struct for `key` decodes.
        pub fn request_struct_versions(key: ApiKey) -> VersionRange {
            match key {
                $(ApiKey::$name => <$req as Message>::VERSIONS,)*
            }
        }

        /// Versions the response struct for `key` encodes.
        pub fn response_struct_versions(key: ApiKey) -> VersionRange {
            match key {
                $(ApiKey::$name => <$resp as Message>::VERSIONS,)*
            }
        }

        /// Encodes a default request and a default response of `key` at `version`, decodes the
        /// request back and checks that every byte was consumed.
        fn round_trip_defaults(key: ApiKey, version: i16) -> Result<(), String> {
            match key {
                $(ApiKey::$name => {
                    let req = <$req>::default();
                    let mut buf = BytesMut::new();
                    req.encode(&mut buf, version).map_err(|e| format!("request encode: {e:#}"))?;
                    let mut bytes = buf.freeze();
                    let back = <$req as Decodable>::decode(&mut bytes, version)
                        .map_err(|e| format!("request decode: {e:#}"))?;
                    if !bytes.is_empty() {
                        return Err(format!("request decode left {} bytes", bytes.len()));
                    }
                    if back != req {
                        return Err("request round trip changed the value".to_string());
                    }
                    let resp = <$resp>::default();
                    let mut buf = BytesMut::new();
                    resp.encode(&mut buf, version).map_err(|e| format!("response encode: {e:#}"))?;
                    Ok(())
                })*
            }
        }
    };
}
for_each_api!(struct_versions);

/// Versions both the request and the response struct of `key` support.
pub fn codec_versions(key: ApiKey) -> VersionRange {
    request_struct_versions(key).intersect(&response_struct_versions(key))
}

/// Outcome of looking a request up in the advertised table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSupport {
    Supported,
    /// The API is advertised but not at this version.
    UnsupportedVersion {
        min: i16,
        max: i16,
    },
    /// The API is not advertised at all (or unknown to the codec).
    UnknownApi,
}

/// A problem found by [`ApiVersionTable::verify`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key:?} v{version}: {problem}")]
pub struct VersionProblem {
    pub key: ApiKey,
    pub version: i16,
    pub problem: String,
}

/// The set of (api, min version, max version) the broker advertises in ApiVersions.
#[derive(Debug, Clone, Default)]
pub struct ApiVersionTable {
    entries: Vec<(ApiKey, i16, i16)>,
}

impl ApiVersionTable {
    /// Builds a table; later entries for the same key replace earlier ones. Entries are kept
    /// sorted by api key, as Kafka lists them.
    pub fn new(entries: impl IntoIterator<Item = (ApiKey, i16, i16)>) -> Self {
        let mut table = Self::default();
        for (key, min, max) in entries {
            table.insert(key, min, max);
        }
        table
    }

    pub fn insert(&mut self, key: ApiKey, min: i16, max: i16) {
        self.entries.retain(|(k, _, _)| *k != key);
        self.entries.push((key, min, max));
        self.entries.sort_by_key(|(k, _, _)| *k as i16);
    }

    pub fn entries(&self) -> &[(ApiKey, i16, i16)] {
        &self.entries
    }

    /// The advertised (min, max) for a raw api key.
    pub fn range(&self, api_key: i16) -> Option<(i16, i16)> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k as i16 == api_key)
            .map(|&(_, min, max)| (min, max))
    }

    pub fn lookup(&self, api_key: i16, version: i16) -> VersionSupport {
        match self.range(api_key) {
            None => VersionSupport::UnknownApi,
            Some((min, max)) if version >= min && version <= max => VersionSupport::Supported,
            Some((min, max)) => VersionSupport::UnsupportedVersion { min, max },
        }
    }

    /// The `api_keys` list of an ApiVersions response.
    pub fn to_api_versions(&self) -> Vec<api_versions_response::ApiVersion> {
        self.entries
            .iter()
            .map(|&(key, min, max)| {
                api_versions_response::ApiVersion::default()
                    .with_api_key(key as i16)
                    .with_min_version(min)
                    .with_max_version(max)
            })
            .collect()
    }

    /// Checks every advertised version against the real structs: in range for both request
    /// and response, and a default request/response round-trips. Returns every problem found.
    pub fn verify(&self) -> Result<(), Vec<VersionProblem>> {
        let mut problems = Vec::new();
        for &(key, min, max) in &self.entries {
            if min > max {
                problems.push(VersionProblem {
                    key,
                    version: min,
                    problem: format!("empty range {min}..={max}"),
                });
                continue;
            }
            let codec = codec_versions(key);
            for version in min..=max {
                if version < codec.min || version > codec.max {
                    problems.push(VersionProblem {
                        key,
                        version,
                        problem: format!("outside the structs' range {codec}"),
                    });
                    continue;
                }
                if let Err(problem) = round_trip_defaults(key, version) {
                    problems.push(VersionProblem {
                        key,
                        version,
                        problem,
                    });
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// KIP-511: an ApiVersions request at a version we do not support is answered with
/// UNSUPPORTED_VERSION, at v0 framing (response header v0, body v0), listing the supported
/// ApiVersions range so the client can retry with a version we know.
///
/// Encoded by hand: the v0 layout is fixed and tiny, and this must never fail.
pub fn encode_api_versions_fallback(correlation_id: i32, table: &ApiVersionTable) -> Vec<Bytes> {
    let range = table.range(ApiKey::ApiVersions as i16);
    let entries: i32 = if range.is_some() { 1 } else { 0 };
    let mut buf = BytesMut::with_capacity(24);
    let body_len = 4 + 2 + 4 + 6 * entries;
    buf.put_i32(body_len);
    buf.put_i32(correlation_id); // response header v0
    buf.put_i16(UNSUPPORTED_VERSION);
    buf.put_i32(entries);
    if let Some((min, max)) = range {
        buf.put_i16(ApiKey::ApiVersions as i16);
        buf.put_i16(min);
        buf.put_i16(max);
    }
    debug_assert_eq!(buf.len(), 4 + body_len as usize);
    vec![buf.freeze()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::concat_chunks;

    #[test]
    fn struct_ranges_are_not_overstated() {
        // The known discrepancy from kafka-compat-notes: valid_versions says 6 for
        // InitProducerId; the struct stops at 5.
        assert!(request_struct_versions(ApiKey::InitProducerId).max <= 5);
        assert!(ApiKey::InitProducerId.valid_versions().max >= 5);
    }

    #[test]
    fn lookup_outcomes() {
        let table = ApiVersionTable::new([(ApiKey::Produce, 3, 9), (ApiKey::ApiVersions, 0, 3)]);
        assert_eq!(table.lookup(0, 9), VersionSupport::Supported);
        assert_eq!(
            table.lookup(0, 10),
            VersionSupport::UnsupportedVersion { min: 3, max: 9 }
        );
        assert_eq!(table.lookup(1, 4), VersionSupport::UnknownApi);
        assert_eq!(table.lookup(999, 0), VersionSupport::UnknownApi);
    }

    #[test]
    fn verify_accepts_real_ranges_and_flags_overstated_ones() {
        let good = ApiVersionTable::new([
            (ApiKey::Produce, 3, 13),
            (ApiKey::Fetch, 4, 17),
            (ApiKey::Metadata, 0, 12),
            (ApiKey::ApiVersions, 0, 4),
        ]);
        good.verify().unwrap();
        let bad = ApiVersionTable::new([(ApiKey::InitProducerId, 0, 6)]);
        let problems = bad.verify().unwrap_err();
        assert!(problems.iter().any(|p| p.version == 6), "{problems:?}");
    }

    #[test]
    fn fallback_decodes_as_api_versions_v0() {
        let table = ApiVersionTable::new([(ApiKey::ApiVersions, 0, 3)]);
        let frame = concat_chunks(&encode_api_versions_fallback(77, &table));
        let mut body = frame.slice(4..);
        assert_eq!(
            frame.len() - 4,
            i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize
        );
        let corr = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        assert_eq!(corr, 77);
        body = body.slice(4..);
        let resp = ApiVersionsResponse::decode(&mut body, 0).unwrap();
        assert!(body.is_empty());
        assert_eq!(resp.error_code, UNSUPPORTED_VERSION);
        assert_eq!(resp.api_keys.len(), 1);
        assert_eq!(resp.api_keys[0].api_key, ApiKey::ApiVersions as i16);
        assert_eq!(
            (resp.api_keys[0].min_version, resp.api_keys[0].max_version),
            (0, 3)
        );
    }
}
