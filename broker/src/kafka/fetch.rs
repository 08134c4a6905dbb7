//! Fetch: read stored batches, long-poll until `min_bytes` or `max_wait_ms`.
//!
//! Runs on the shard serving the client's connection (the fetching shard). Each round reads
//! every partition with one [`ShardReq::Read`] call per owning shard; when that is enough
//! (or an error or the deadline says stop) the fetch answers, so a fetch whose data is
//! already there costs no more than the reads. Otherwise it long-polls: one
//! [`Shard::wait_for_data`] per owning shard (this one included), until the first of them
//! reports new data or the deadline passes, then reads again.
//!
//! Who owns the waits: this fetch. A wait on another shard is a router *wait*
//! (`net::route`): it holds none of that shard's request slots, so parked fetches never
//! delay produce, read or admin requests; and it is cancelled there as soon as this fetch
//! stops waiting for it (another wait fired, the deadline passed, or the fetch was dropped),
//! so no wait outlives its fetch (`ringtail_cross_shard_waits_parked` on `/metrics`). A shard
//! parks at most `max_cross_shard_waits_per_shard` waits of other shards; beyond that it
//! refuses one at once, and the fetch goes on without it: it answers at its deadline unless
//! its other waits fire first (new data on a refused shard is seen at the next fetch). A
//! fetch whose connection closed stops waiting and answers at once (into the void), which
//! cancels its waits too.
//!
//! Stored batch bytes are returned as they are on disk; no record is decoded. Fetch sessions
//! (KIP-227) are answered with "no session" (session id 0): clients then keep sending full
//! fetch requests, which Kafka's protocol allows; an incremental fetch naming a session we
//! never created gets FETCH_SESSION_ID_NOT_FOUND.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::FetchRequest;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchResponse, FetchableTopicResponse, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{BrokerId, ProducerId};
use kafka_protocol::ResponseError as E;
use net::codec::FetchRecords;

use crate::errors::PartitionError;
use crate::shard::replica::ReplicaFetch;
use crate::shard::{expect_read, ReadPart, ReadReply, Shard, ShardReq, WaitOutcome, WaitPart};

/// Upper bound on how long one fetch may park, whatever the client asks (Kafka has none, but
/// a bound keeps a confused client from pinning state for hours).
pub const FETCH_WAIT_MS_MAX: i32 = 30_000;

struct Slot {
    topic_index: usize,
    partition: i32,
    fetch_offset: i64,
    partition_max_bytes: usize,
    /// KIP-320: the leader epoch the client (or follower) believes in (-1: unchecked).
    current_leader_epoch: i32,
    /// A follower's last fetched epoch (-1: none).
    last_fetched_epoch: i32,
    /// Owner shard, or an error decided without reading.
    target: Result<usize, PartitionError>,
    reply: Option<ReadReply>,
}

/// Records of several chunks are handed to `spliced`, which sends them without joining them.
pub async fn fetch(
    shard: &Rc<Shard>,
    req: FetchRequest,
    version: i16,
    spliced: &mut FetchRecords,
    affinity: Option<&net::Affinity>,
    closed: &net::ConnClosed,
) -> FetchResponse {
    let mut response = FetchResponse::default();
    if version >= 7 && req.session_id != 0 {
        response.error_code = E::FetchSessionIdNotFound.code();
        shard.metrics().fetch_error(response.error_code);
        return response;
    }
    let meta = shard.meta();
    let use_ids = version >= 13;
    // A follower's fetch names its broker id (in `ReplicaState` since v15).
    let replica_id = if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    let mut slots: Vec<Slot> = Vec::new();
    for t in &req.topics {
        let known = if use_ids {
            meta.topic_by_id(&t.topic_id).cloned()
        } else {
            meta.topic(t.topic.0.as_str()).cloned()
        };
        let mut topic = FetchableTopicResponse::default();
        topic.topic = t.topic.clone();
        topic.topic_id = t.topic_id;
        let topic_index = topics.len();
        topics.push(topic);
        for p in &t.partitions {
            let target = match &known {
                None if use_ids => Err(PartitionError::new(E::UnknownTopicId)),
                known => super::leader_shard(&meta, known.as_deref(), p.partition)
                    .map_err(PartitionError::new),
            };
            slots.push(Slot {
                topic_index,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                partition_max_bytes: usize::try_from(p.partition_max_bytes.max(0)).unwrap_or(0),
                current_leader_epoch: if version >= 9 {
                    p.current_leader_epoch
                } else {
                    -1
                },
                last_fetched_epoch: if version >= 12 {
                    p.last_fetched_epoch
                } else {
                    -1
                },
                target,
                reply: None,
            });
        }
        // Keep the name for reads even when the client addressed the topic by id.
        if use_ids {
            if let Some(tm) = &known {
                topics[topic_index].topic = super::topic_name(&tm.name);
            }
        }
    }
    if let Some(affinity) = affinity {
        affinity.note_owners(slots.iter().filter_map(|s| s.target.as_ref().ok().copied()));
    }
    let names: Vec<String> = topics.iter().map(|t| t.topic.0.to_string()).collect();
    let max_bytes = usize::try_from(req.max_bytes.max(0)).unwrap_or(0);
    let min_bytes = usize::try_from(req.min_bytes.max(0)).unwrap_or(0);
    let max_wait = Duration::from_millis(req.max_wait_ms.clamp(0, FETCH_WAIT_MS_MAX) as u64);
    let deadline = Instant::now() + max_wait;
    let read_committed = req.isolation_level == 1 && replica_id < 0;
    let replica = (replica_id >= 0).then_some(replica_id);

    loop {
        read_round(
            shard,
            &mut slots,
            &names,
            max_bytes,
            read_committed,
            replica,
        )
        .await;
        let total: usize = slots
            .iter()
            .filter_map(|s| s.reply.as_ref())
            .map(ReadReply::records_len)
            .sum();
        let any_error = slots.iter().any(|s| {
            s.target.is_err()
                || s.reply
                    .as_ref()
                    .is_some_and(|r| r.error.is_some() || r.diverging_epoch.is_some())
        });
        let now = Instant::now();
        if total >= min_bytes.max(1) || any_error || now >= deadline || slots.is_empty() {
            break;
        }
        let peer_gone = wait_for_any(
            shard,
            &slots,
            &names,
            deadline - now,
            closed,
            replica.is_some(),
        )
        .await;
        if peer_gone {
            break; // nobody reads the answer: no need for a last read
        }
        if Instant::now() >= deadline {
            read_round(
                shard,
                &mut slots,
                &names,
                max_bytes,
                read_committed,
                replica,
            )
            .await;
            break;
        }
    }

    // Assemble in request order within the response byte limit: a partition whose records
    // would cross the limit returns none this time (the client fetches it again), except the
    // very first data, which goes out whole (KIP-74).
    let mut used = 0usize;
    let mut hinted: Vec<i32> = Vec::new();
    for slot in slots {
        let mut pd = PartitionData::default();
        pd.partition_index = slot.partition;
        pd.preferred_read_replica = BrokerId(-1);
        pd.aborted_transactions = read_committed.then(Vec::new);
        match (slot.target, slot.reply) {
            (Err(e), _) => {
                pd.error_code = e.code;
                pd.high_watermark = -1;
                pd.last_stable_offset = -1;
                pd.log_start_offset = -1;
            }
            (Ok(_), None) => {
                pd.error_code = E::UnknownServerError.code();
            }
            (Ok(_), Some(reply)) => {
                pd.high_watermark = reply.high_watermark;
                pd.last_stable_offset = reply.last_stable_offset;
                if read_committed {
                    pd.aborted_transactions = Some(
                        reply
                            .aborted
                            .iter()
                            .map(|a| {
                                let mut t = AbortedTransaction::default();
                                t.producer_id = ProducerId(a.producer_id);
                                t.first_offset = a.first_offset;
                                t
                            })
                            .collect(),
                    );
                }
                pd.log_start_offset = reply.log_start_offset;
                if let Some((epoch, end_offset)) = reply.diverging_epoch {
                    pd.diverging_epoch.epoch = epoch;
                    pd.diverging_epoch.end_offset = end_offset;
                }
                if let Some(e) = reply.error {
                    pd.error_code = e.code;
                    pd.records = Some(Bytes::new());
                } else {
                    let len = reply.records_len();
                    if used == 0 || used + len <= max_bytes {
                        used += len;
                        pd.records = Some(spliced.records(reply.records));
                    } else {
                        pd.records = Some(Bytes::new());
                    }
                }
            }
        }
        if pd.records.is_none() {
            pd.records = Some(Bytes::new());
        }
        if pd.error_code != 0 {
            shard.metrics().fetch_error(pd.error_code);
        }
        // KIP-951 (v16+): who leads a partition this node does not.
        if version >= 16 && pd.error_code == E::NotLeaderOrFollower.code() {
            let name = topics[slot.topic_index].topic.0.to_string();
            if let Some((leader, epoch)) = super::leader_of(&meta, &name, slot.partition) {
                pd.current_leader.leader_id = BrokerId(leader);
                pd.current_leader.leader_epoch = epoch;
                if !hinted.contains(&leader) {
                    hinted.push(leader);
                }
            }
        }
        topics[slot.topic_index].partitions.push(pd);
    }
    for id in hinted {
        if let Some(b) = meta.live_broker(id) {
            let mut e = NodeEndpoint::default();
            e.node_id = BrokerId(b.id);
            e.host = super::str_bytes(&b.host);
            e.port = b.port;
            e.rack = b.rack.as_deref().map(super::str_bytes);
            response.node_endpoints.push(e);
        }
    }
    response.responses = topics;
    response.session_id = 0;
    response
}

/// Read every readable slot, one message per owning shard; `committed`: read_committed
/// (stop at each partition's last stable offset); `replica`: the follower fetching.
async fn read_round(
    shard: &Rc<Shard>,
    slots: &mut [Slot],
    names: &[String],
    max_bytes: usize,
    committed: bool,
    replica: Option<i32>,
) {
    let mut by_shard: Vec<(Vec<usize>, Vec<ReadPart>)> = (0..shard.shards())
        .map(|_| (Vec::new(), Vec::new()))
        .collect();
    for (i, slot) in slots.iter().enumerate() {
        if let Ok(target) = slot.target {
            by_shard[target].0.push(i);
            by_shard[target].1.push(ReadPart {
                topic: names[slot.topic_index].clone(),
                partition: slot.partition,
                offset: slot.fetch_offset,
                max_bytes: slot.partition_max_bytes,
                min_one: true,
                committed,
                replica: replica.map(|replica_id| ReplicaFetch {
                    replica_id,
                    current_leader_epoch: slot.current_leader_epoch,
                    last_fetched_epoch: slot.last_fetched_epoch,
                }),
                current_leader_epoch: slot.current_leader_epoch,
            });
        }
    }
    let calls = by_shard
        .into_iter()
        .enumerate()
        .filter(|(_, (ids, _))| !ids.is_empty())
        .map(|(target, (ids, parts))| async move {
            let n = parts.len();
            let replies = expect_read(
                shard
                    .call(target, ShardReq::Read { parts, max_bytes })
                    .await,
                n,
            );
            (ids, replies)
        });
    for (ids, replies) in futures::future::join_all(calls).await {
        for (i, reply) in ids.into_iter().zip(replies) {
            slots[i].reply = Some(reply);
        }
    }
}

/// Park until any partition of the fetch gets new data, or `timeout`, or the connection
/// closed (then true). Returning drops every wait still parked, which cancels those on other
/// shards.
async fn wait_for_any(
    shard: &Rc<Shard>,
    slots: &[Slot],
    names: &[String],
    timeout: Duration,
    closed: &net::ConnClosed,
    replica: bool,
) -> bool {
    let mut by_shard: Vec<Vec<WaitPart>> = vec![Vec::new(); shard.shards()];
    for slot in slots {
        if let Ok(target) = slot.target {
            // A read_committed fetch may have found data it may not return yet (past the last
            // stable offset): wait for what comes after it (a marker moves the LSO).
            let seen_end = slot
                .reply
                .as_ref()
                .filter(|r| r.error.is_none() && r.last_stable_offset < r.high_watermark)
                .map_or(slot.fetch_offset, |r| r.high_watermark);
            by_shard[target].push(WaitPart {
                topic: names[slot.topic_index].clone(),
                partition: slot.partition,
                offset: slot.fetch_offset.max(seen_end),
                replica,
            });
        }
    }
    let timeout_ms = timeout.as_millis() as u64;
    let waits: Vec<_> = by_shard
        .into_iter()
        .enumerate()
        .filter(|(_, parts)| !parts.is_empty())
        .map(|(target, parts)| {
            let shard = shard.clone();
            Box::pin(async move {
                if shard.wait_for_data(target, parts, timeout_ms).await == WaitOutcome::Refused {
                    // That shard parks as many waits as it may: go on without this one.
                    std::future::pending::<()>().await;
                }
            })
        })
        .collect();
    if waits.is_empty() {
        return false;
    }
    futures_lite::future::or(
        futures_lite::future::or(
            async {
                futures::future::select_all(waits).await;
                false
            },
            async {
                glommio::timer::sleep(timeout).await;
                false
            },
        ),
        async {
            closed.wait().await;
            true
        },
    )
    .await
}
