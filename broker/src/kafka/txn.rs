//! Transaction APIs: transactional InitProducerId, AddPartitionsToTxn (v0-3),
//! AddOffsetsToTxn, TxnOffsetCommit, EndTxn, and the admin views DescribeTransactions,
//! ListTransactions, DescribeProducers; plus the marker jobs the coordinator hands out.
//!
//! Each transactional id belongs to the coordinator of its `__transaction_state` partition
//! ([`txn_coordinator_of`]), on the shard owning that partition; requests travel there as
//! [`ShardReq::Txn`]. A [`MarkerJob`] that comes back with an answer is run by the handler
//! that received it ([`run_marker_job`]): markers go to every partition's owner as
//! [`ShardReq::WriteMarkers`], a commit's offsets to the group coordinators, and the outcome
//! back to the transaction coordinator. Jobs nobody runs (a failure, a restart, a timed-out
//! transaction) are collected by [`pending_work_pass`], which every shard runs periodically
//! for the coordinators it owns. Runs on any shard.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedTxn;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeProducersRequest, DescribeProducersResponse,
    DescribeTransactionsRequest, DescribeTransactionsResponse, EndTxnRequest, EndTxnResponse,
    GroupId, InitProducerIdRequest, InitProducerIdResponse, ListTransactionsRequest,
    ListTransactionsResponse, OffsetCommitRequest, ProducerId, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use kafka_protocol::ResponseError as E;
use tracing::warn;

use super::{str_bytes, topic_name};
use crate::cluster::controller::{ControllerReq, ControllerResp};
use crate::coordinator::group;
use crate::coordinator::txn::{self, Input, MarkerJob, PendingOffset, Response, TxnDescription};
use crate::coordinator::{
    coordinator_of, txn_coordinator_of, GroupReq, GroupResp, ShellError, TxnReq, TxnResp,
};
use crate::errors::KafkaCode;
use crate::shard::txn_markers::MarkerPart;
use crate::shard::{expect_controller, expect_produce, Shard, ShardReq, ShardResp};

/// The Kafka code for a request the shell could not hand to a coordinator.
fn shell_code(e: ShellError) -> i16 {
    match e {
        ShellError::Loading => E::CoordinatorLoadInProgress.code(),
        ShellError::NotOpen | ShellError::Unavailable | ShellError::Closed => {
            E::NotCoordinator.code()
        }
    }
}

/// Sends `input` to the coordinator of `transactional_id`.
async fn step(shard: &Rc<Shard>, transactional_id: &str, input: Input) -> Result<Response, i16> {
    let Some((partition, owner)) = txn_coordinator_of(&shard.meta(), transactional_id) else {
        return Err(E::CoordinatorNotAvailable.code());
    };
    let req = ShardReq::Txn(TxnReq::Step {
        partition,
        input: Box::new(input),
    });
    match shard.call(owner, req).await {
        ShardResp::Txn(TxnResp::Step(result)) => result.map_err(shell_code),
        ShardResp::Failed(e) => {
            warn!(code = e.code, msg = ?e.message, "transaction coordinator unreachable");
            Err(E::CoordinatorNotAvailable.code())
        }
        other => {
            warn!(?other, "unexpected reply from a transaction coordinator");
            Err(E::UnknownServerError.code())
        }
    }
}

fn mismatched(got: &Response) -> i16 {
    warn!(
        ?got,
        "transaction coordinator answered another API's response"
    );
    E::UnknownServerError.code()
}

/// Writes a job's markers (and a commit's offsets), then reports to the coordinator.
pub async fn run_marker_job(shard: &Rc<Shard>, job: MarkerJob) {
    let meta = shard.meta();
    let mut by_owner: BTreeMap<usize, Vec<MarkerPart>> = BTreeMap::new();
    for (topic, partition) in &job.partitions {
        if meta.topic(topic).is_none() {
            continue; // deleted meanwhile: no marker needed
        }
        by_owner
            .entry(meta.owner(topic, *partition))
            .or_default()
            .push(MarkerPart {
                topic: topic.clone(),
                partition: *partition,
                producer_id: job.producer_id,
                producer_epoch: job.producer_epoch,
                commit: job.commit,
            });
    }
    let writes = by_owner.into_iter().map(|(owner, parts)| async move {
        let n = parts.len();
        expect_produce(shard.call(owner, ShardReq::WriteMarkers(parts)).await, n)
    });
    let mut ok = true;
    for results in futures::future::join_all(writes).await {
        for r in results {
            if let Some(e) = r.error {
                warn!(code = e.code, msg = ?e.message, txn = %job.transactional_id, "writing a transaction marker failed");
                ok = false;
            }
        }
    }
    if ok && job.commit && !job.offsets.is_empty() {
        ok = apply_offsets(shard, &job.offsets).await;
    }
    let input = Input::MarkersWritten {
        transactional_id: job.transactional_id.clone(),
        producer_id: job.producer_id,
        producer_epoch: job.producer_epoch,
        ok,
    };
    match step(shard, &job.transactional_id, input).await {
        Ok(Response::Done(Ok(()))) => {}
        other => {
            warn!(?other, txn = %job.transactional_id, "completing a transaction failed; retried later")
        }
    }
}

/// Makes a committed transaction's offsets visible: one commit per group.
async fn apply_offsets(shard: &Rc<Shard>, offsets: &[PendingOffset]) -> bool {
    let mut by_group: BTreeMap<&str, Vec<&PendingOffset>> = BTreeMap::new();
    for o in offsets {
        by_group.entry(o.group.as_str()).or_default().push(o);
    }
    let mut ok = true;
    for (group_id, offsets) in by_group {
        let Some((partition, owner)) = coordinator_of(&shard.meta(), group_id) else {
            return false;
        };
        let mut topics: BTreeMap<&str, Vec<&PendingOffset>> = BTreeMap::new();
        for o in offsets {
            topics.entry(o.topic.as_str()).or_default().push(o);
        }
        let mut request = OffsetCommitRequest::default();
        request.group_id = GroupId(str_bytes(group_id));
        request.generation_id_or_member_epoch = -1;
        request.retention_time_ms = -1;
        for (topic, offsets) in topics {
            let mut t = OffsetCommitRequestTopic::default();
            t.name = topic_name(topic);
            for o in offsets {
                let mut p = OffsetCommitRequestPartition::default();
                p.partition_index = o.partition;
                p.committed_offset = o.offset;
                p.committed_leader_epoch = o.leader_epoch;
                p.committed_metadata = Some(str_bytes(&o.metadata));
                t.partitions.push(p);
            }
            request.topics.push(t);
        }
        let req = ShardReq::Group(GroupReq::Step {
            partition,
            input: Box::new(group::Input::TxnOffsetsCommitted { request }),
        });
        match shard.call(owner, req).await {
            ShardResp::Group(GroupResp::Step(Ok(group::Response::OffsetCommit(r))))
                if r.topics
                    .iter()
                    .all(|t| t.partitions.iter().all(|p| p.error_code == 0)) => {}
            other => {
                warn!(
                    ?other,
                    group = group_id,
                    "applying a transaction's offsets failed"
                );
                ok = false;
            }
        }
    }
    ok
}

/// Runs the marker jobs of this shard's transaction coordinators nobody runs, aborts
/// timed-out transactions and expires idle transactional ids (every shard, periodically).
pub async fn pending_work_pass(shard: &Rc<Shard>) {
    if shard.txn_coordinators.partitions().is_empty() {
        return;
    }
    let resp = shard
        .txn_coordinators
        .serve(TxnReq::All {
            input: Box::new(Input::PendingWork),
        })
        .await;
    let TxnResp::All(results) = resp else { return };
    for r in results {
        if let Ok(Response::Jobs(jobs)) = r {
            for job in jobs {
                run_marker_job(shard, job).await;
            }
        }
    }
}

/// Allocates an unused producer id (shard 0's controller).
async fn fresh_producer_id(shard: &Rc<Shard>) -> Result<i64, i16> {
    match expect_controller(
        shard
            .call(0, ShardReq::Controller(ControllerReq::AllocateProducerId))
            .await,
    ) {
        ControllerResp::ProducerId(Ok(id)) => Ok(id),
        ControllerResp::ProducerId(Err(e)) | ControllerResp::Failed(e) => Err(e.code),
        _ => Err(E::UnknownServerError.code()),
    }
}

pub async fn init_producer_id(
    shard: &Rc<Shard>,
    req: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    let Some(id) = req.transactional_id.as_ref().map(|t| t.0.to_string()) else {
        return resp;
    };
    let fresh = match fresh_producer_id(shard).await {
        Ok(pid) => pid,
        Err(code) => {
            resp.error_code = code;
            return resp;
        }
    };
    let expected =
        (version >= 3 && req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
    let input = Input::InitProducerId {
        transactional_id: id.clone(),
        timeout_ms: req.transaction_timeout_ms,
        expected,
        fresh_producer_id: fresh,
    };
    match step(shard, &id, input).await {
        Ok(Response::InitProducerId { result, job }) => {
            if let Some(job) = job {
                run_marker_job(shard, job).await;
            }
            match result {
                Ok((pid, epoch)) => {
                    resp.producer_id = ProducerId(pid);
                    resp.producer_epoch = epoch;
                }
                Err(e) => resp.error_code = e.kafka_code(),
            }
        }
        Ok(other) => resp.error_code = mismatched(&other),
        Err(code) => resp.error_code = code,
    }
    resp
}

/// The error code of one (topic, partition) of a request.
type PartitionCode = dyn Fn(&(String, i32)) -> i16;

pub async fn add_partitions_to_txn(
    shard: &Rc<Shard>,
    req: AddPartitionsToTxnRequest,
    _version: i16,
) -> AddPartitionsToTxnResponse {
    let meta = shard.meta();
    let id = req.v3_and_below_transactional_id.0.to_string();
    let mut partitions = Vec::new();
    let mut unknown = Vec::new();
    for t in &req.v3_and_below_topics {
        let name = t.name.0.to_string();
        for p in &t.partitions {
            match meta.topic(&name) {
                Some(tm) if *p >= 0 && *p < tm.partitions => partitions.push((name.clone(), *p)),
                _ => unknown.push((name.clone(), *p)),
            }
        }
    }
    let code_for: Box<PartitionCode> = if !unknown.is_empty() {
        // Kafka: the unknown ones fail, the others are not attempted.
        Box::new(move |p: &(String, i32)| {
            if unknown.contains(p) {
                E::UnknownTopicOrPartition.code()
            } else {
                E::OperationNotAttempted.code()
            }
        })
    } else {
        let input = Input::AddPartitions {
            transactional_id: id.clone(),
            producer_id: req.v3_and_below_producer_id.0,
            producer_epoch: req.v3_and_below_producer_epoch,
            partitions,
        };
        let code = match step(shard, &id, input).await {
            Ok(Response::Done(Ok(()))) => 0,
            Ok(Response::Done(Err(e))) => e.kafka_code(),
            Ok(other) => mismatched(&other),
            Err(code) => code,
        };
        Box::new(move |_: &(String, i32)| code)
    };
    let mut resp = AddPartitionsToTxnResponse::default();
    for t in &req.v3_and_below_topics {
        let name = t.name.0.to_string();
        let mut rt = AddPartitionsToTxnTopicResult::default();
        rt.name = t.name.clone();
        for p in &t.partitions {
            let mut rp = AddPartitionsToTxnPartitionResult::default();
            rp.partition_index = *p;
            rp.partition_error_code = code_for(&(name.clone(), *p));
            rt.results_by_partition.push(rp);
        }
        resp.results_by_topic_v3_and_below.push(rt);
    }
    resp
}

pub async fn add_offsets_to_txn(
    shard: &Rc<Shard>,
    req: AddOffsetsToTxnRequest,
    _version: i16,
) -> AddOffsetsToTxnResponse {
    let id = req.transactional_id.0.to_string();
    let input = Input::AddOffsets {
        transactional_id: id.clone(),
        producer_id: req.producer_id.0,
        producer_epoch: req.producer_epoch,
        group: req.group_id.0.to_string(),
    };
    let mut resp = AddOffsetsToTxnResponse::default();
    resp.error_code = match step(shard, &id, input).await {
        Ok(Response::Done(Ok(()))) => 0,
        Ok(Response::Done(Err(e))) => e.kafka_code(),
        Ok(other) => mismatched(&other),
        Err(code) => code,
    };
    resp
}

pub async fn txn_offset_commit(
    shard: &Rc<Shard>,
    req: TxnOffsetCommitRequest,
    _version: i16,
) -> TxnOffsetCommitResponse {
    let id = req.transactional_id.0.to_string();
    let group_id = req.group_id.0.to_string();
    let meta = shard.meta();
    let mut offsets = Vec::new();
    let mut unknown = Vec::new();
    for t in &req.topics {
        let name = t.name.0.to_string();
        for p in &t.partitions {
            match meta.topic(&name) {
                Some(tm) if p.partition_index >= 0 && p.partition_index < tm.partitions => offsets
                    .push(PendingOffset {
                        group: group_id.clone(),
                        topic: name.clone(),
                        partition: p.partition_index,
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p
                            .committed_metadata
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                    }),
                _ => unknown.push((name.clone(), p.partition_index)),
            }
        }
    }
    // v3+ name the member: the group's coordinator refuses a stale generation or a fenced
    // member before the offsets join the transaction (v0-2 send -1 / "" and pass).
    let group_code = if offsets.is_empty() {
        0
    } else {
        super::groups::check_txn_offset_commit(
            shard,
            &group_id,
            req.member_id.as_str(),
            req.group_instance_id.as_ref().map(|s| s.as_str()),
            req.generation_id,
        )
        .await
    };
    let code = if offsets.is_empty() || group_code != 0 {
        group_code
    } else {
        let input = Input::TxnOffsetCommit {
            transactional_id: id.clone(),
            producer_id: req.producer_id.0,
            producer_epoch: req.producer_epoch,
            offsets,
        };
        match step(shard, &id, input).await {
            Ok(Response::Done(Ok(()))) => 0,
            Ok(Response::Done(Err(e))) => e.kafka_code(),
            Ok(other) => mismatched(&other),
            Err(code) => code,
        }
    };
    let mut resp = TxnOffsetCommitResponse::default();
    for t in &req.topics {
        let name = t.name.0.to_string();
        let mut rt = TxnOffsetCommitResponseTopic::default();
        rt.name = t.name.clone();
        for p in &t.partitions {
            let mut rp = TxnOffsetCommitResponsePartition::default();
            rp.partition_index = p.partition_index;
            rp.error_code = if unknown.contains(&(name.clone(), p.partition_index)) {
                E::UnknownTopicOrPartition.code()
            } else {
                code
            };
            rt.partitions.push(rp);
        }
        resp.topics.push(rt);
    }
    resp
}

pub async fn end_txn(shard: &Rc<Shard>, req: EndTxnRequest, _version: i16) -> EndTxnResponse {
    let id = req.transactional_id.0.to_string();
    let input = Input::EndTxn {
        transactional_id: id.clone(),
        producer_id: req.producer_id.0,
        producer_epoch: req.producer_epoch,
        commit: req.committed,
    };
    let mut resp = EndTxnResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    resp.error_code = match step(shard, &id, input).await {
        Ok(Response::EndTxn { result, job }) => {
            // The outcome is decided (durable); the client is answered once the markers are
            // written, so its next transaction does not wait for them.
            if let Some(job) = job {
                run_marker_job(shard, job).await;
            }
            match result {
                Ok(()) => 0,
                Err(e) => e.kafka_code(),
            }
        }
        Ok(other) => mismatched(&other),
        Err(code) => code,
    };
    resp
}

/// Aborts the current transaction of `transactional_id` (the CLI's `txn abort`): the
/// coordinator fences its producer and writes ABORT markers. Returns the Kafka code.
pub async fn abort_transaction(shard: &Rc<Shard>, transactional_id: &str) -> i16 {
    let input = Input::Abort {
        transactional_id: transactional_id.to_owned(),
    };
    match step(shard, transactional_id, input).await {
        Ok(Response::Abort { result, job }) => {
            if let Some(job) = job {
                run_marker_job(shard, job).await;
            }
            match result {
                Ok(()) => 0,
                Err(e) => e.kafka_code(),
            }
        }
        Ok(other) => mismatched(&other),
        Err(code) => code,
    }
}

fn described(d: &TxnDescription) -> TransactionState {
    let mut s = TransactionState::default();
    s.transactional_id = kafka_protocol::messages::TransactionalId(str_bytes(&d.transactional_id));
    s.transaction_state = str_bytes(d.meta.state.name());
    s.transaction_timeout_ms = d.meta.timeout_ms;
    s.transaction_start_time_ms = d.meta.start_ms;
    s.producer_id = ProducerId(d.meta.producer_id);
    s.producer_epoch = d.meta.producer_epoch;
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in &d.meta.partitions {
        topics.entry(t.as_str()).or_default().push(*p);
    }
    s.topics = topics
        .into_iter()
        .map(|(t, partitions)| {
            let mut td = TopicData::default();
            td.topic = topic_name(t);
            td.partitions = partitions;
            td
        })
        .collect();
    s
}

pub async fn describe_transactions(
    shard: &Rc<Shard>,
    req: DescribeTransactionsRequest,
    _version: i16,
) -> DescribeTransactionsResponse {
    let mut resp = DescribeTransactionsResponse::default();
    for id in &req.transactional_ids {
        let id = id.0.to_string();
        let input = Input::Describe {
            transactional_ids: vec![id.clone()],
        };
        let mut s = match step(shard, &id, input).await {
            Ok(Response::Described(mut d)) => match d.pop().flatten() {
                Some(d) => described(&d),
                None => {
                    let mut s = TransactionState::default();
                    s.error_code = E::TransactionalIdNotFound.code();
                    s
                }
            },
            Ok(other) => {
                let mut s = TransactionState::default();
                s.error_code = mismatched(&other);
                s
            }
            Err(code) => {
                let mut s = TransactionState::default();
                s.error_code = code;
                s
            }
        };
        s.transactional_id = kafka_protocol::messages::TransactionalId(str_bytes(&id));
        resp.transaction_states.push(s);
    }
    resp
}

/// Every transactional id of every coordinator of this node.
pub async fn list_all(shard: &Rc<Shard>) -> (Vec<TxnDescription>, i16) {
    let mut out = Vec::new();
    let mut error = 0;
    for target in 0..shard.shards() {
        let req = ShardReq::Txn(TxnReq::All {
            input: Box::new(Input::List),
        });
        match shard.call(target, req).await {
            ShardResp::Txn(TxnResp::All(results)) => {
                for r in results {
                    match r {
                        Ok(Response::Described(d)) => out.extend(d.into_iter().flatten()),
                        Ok(_) => {}
                        Err(e) => error = shell_code(e),
                    }
                }
            }
            _ => error = E::CoordinatorNotAvailable.code(),
        }
    }
    (out, error)
}

/// Offsets of `groups` committed in transactions that may still commit, on every
/// transaction coordinator of this node: (group, topic, partition). `None` when some
/// coordinator could not answer (loading): the caller must treat every offset as unstable.
pub async fn pending_txn_offsets(
    shard: &Rc<Shard>,
    groups: &[String],
) -> Option<BTreeSet<(String, String, i32)>> {
    let mut out = BTreeSet::new();
    for target in 0..shard.shards() {
        let req = ShardReq::Txn(TxnReq::All {
            input: Box::new(Input::PendingOffsets {
                groups: groups.to_vec(),
            }),
        });
        let ShardResp::Txn(TxnResp::All(results)) = shard.call(target, req).await else {
            return None;
        };
        for r in results {
            match r {
                Ok(Response::PendingOffsets(p)) => out.extend(p),
                _ => return None,
            }
        }
    }
    Some(out)
}

pub async fn list_transactions(
    shard: &Rc<Shard>,
    req: ListTransactionsRequest,
    version: i16,
) -> ListTransactionsResponse {
    let (all, error) = list_all(shard).await;
    let mut resp = ListTransactionsResponse::default();
    resp.error_code = error;
    let known = [
        "Empty",
        "Ongoing",
        "PrepareCommit",
        "PrepareAbort",
        "CompleteCommit",
        "CompleteAbort",
    ];
    resp.unknown_state_filters = req
        .state_filters
        .iter()
        .filter(|f| !known.contains(&f.as_str()))
        .cloned()
        .collect();
    let now = crate::shard::now_ms();
    for d in all {
        let state = d.meta.state.name();
        if !req.state_filters.is_empty() && !req.state_filters.iter().any(|f| f.as_str() == state) {
            continue;
        }
        if !req.producer_id_filters.is_empty()
            && !req
                .producer_id_filters
                .contains(&ProducerId(d.meta.producer_id))
        {
            continue;
        }
        // v1 (KIP-994): only transactions running longer than this.
        if version >= 1
            && req.duration_filter >= 0
            && (d.meta.start_ms < 0 || now - d.meta.start_ms < req.duration_filter)
        {
            continue;
        }
        let mut t = ListedTxn::default();
        t.transactional_id =
            kafka_protocol::messages::TransactionalId(str_bytes(&d.transactional_id));
        t.producer_id = ProducerId(d.meta.producer_id);
        t.transaction_state = str_bytes(state);
        resp.transaction_states.push(t);
    }
    resp
}

pub async fn describe_producers(
    shard: &Rc<Shard>,
    req: DescribeProducersRequest,
    _version: i16,
) -> DescribeProducersResponse {
    let meta = shard.meta();
    let mut resp = DescribeProducersResponse::default();
    for t in &req.topics {
        let name = t.name.0.to_string();
        let mut rt = TopicResponse::default();
        rt.name = t.name.clone();
        for p in &t.partition_indexes {
            let mut rp = PartitionResponse::default();
            rp.partition_index = *p;
            match meta.topic(&name) {
                Some(tm) if *p >= 0 && *p < tm.partitions => {
                    let owner = meta.owner(&name, *p);
                    let req = ShardReq::DescribeProducers {
                        topic: name.clone(),
                        partition: *p,
                    };
                    match shard.call(owner, req).await {
                        ShardResp::Producers(Ok(producers)) => {
                            rp.active_producers = producers
                                .into_iter()
                                .map(|p| {
                                    let mut s = ProducerState::default();
                                    s.producer_id = ProducerId(p.producer_id);
                                    s.producer_epoch = i32::from(p.producer_epoch);
                                    s.last_sequence = p.last_sequence;
                                    s.last_timestamp = p.last_timestamp_ms;
                                    s.coordinator_epoch = -1;
                                    s.current_txn_start_offset = p.current_txn_start_offset;
                                    s
                                })
                                .collect()
                        }
                        ShardResp::Producers(Err(e)) | ShardResp::Failed(e) => {
                            rp.error_code = e.code
                        }
                        _ => rp.error_code = E::UnknownServerError.code(),
                    }
                }
                _ => rp.error_code = E::UnknownTopicOrPartition.code(),
            }
            rt.partitions.push(rp);
        }
        resp.topics.push(rt);
    }
    resp
}

/// Creates `__transaction_state` through the controller the first time a transactional id
/// looks for its coordinator (as Kafka does): `transaction.state.log.num.partitions`,
/// compacted, `transaction.state.log.segment.bytes`, `transaction.state.log.replication.factor`
/// (at most the cluster's brokers).
pub async fn ensure_txn_state_topic(shard: &Rc<Shard>) {
    if shard.meta().topic(txn::TXN_STATE_TOPIC).is_some() {
        return;
    }
    let k = &shard.config.kafka;
    shard
        .create_internal_topic(
            txn::TXN_STATE_TOPIC,
            k.transaction_state_log_num_partitions(),
            k.transaction_state_log_segment_bytes(),
            k.transaction_state_log_replication_factor(),
        )
        .await;
}

/// FindCoordinator for transactional ids: per key, 0 when its coordinator serves, else the
/// code to answer. Creates the transaction state topic on first use.
pub async fn coordinator_statuses(shard: &Rc<Shard>, keys: &[&str]) -> HashMap<String, i16> {
    ensure_txn_state_topic(shard).await;
    let meta = shard.meta();
    let mut statuses = HashMap::new();
    for key in keys {
        let code = match txn_coordinator_of(&meta, key) {
            None => E::CoordinatorNotAvailable.code(),
            Some((partition, owner)) => {
                let req = ShardReq::Txn(TxnReq::Status {
                    partitions: vec![partition],
                });
                match shard.call(owner, req).await {
                    ShardResp::Txn(TxnResp::Status(s)) => match s.first() {
                        Some(Some(crate::coordinator::Status::Active)) => 0,
                        Some(Some(crate::coordinator::Status::Loading)) => {
                            E::CoordinatorLoadInProgress.code()
                        }
                        _ => E::CoordinatorNotAvailable.code(),
                    },
                    _ => E::CoordinatorNotAvailable.code(),
                }
            }
        };
        statuses.insert(key.to_string(), code);
    }
    statuses
}
