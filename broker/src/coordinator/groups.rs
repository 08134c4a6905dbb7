//! The group coordinator as a user of the shell: [`GroupCoordinator`] as a
//! [`StateMachine`], the cross-shard [`GroupReq`] messages, and where a group lives.
//!
//! Runs on every shard: one [`GroupCoordinator`] per partition of `__consumer_offsets` the
//! shard owns, in a [`GroupCoordinators`] the shard holds. Other shards reach it only through
//! `ShardReq::Group`; `kafka::groups` routes each group to [`coordinator_of`] (Kafka's
//! `partitionFor`, [`group_partition`]) and the shard owning that partition.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::ListGroupsRequest;
use kafka_protocol::ResponseError as E;
use tracing::warn;

use super::group::records::{OffsetsRecord, RecordError};
use super::group::{
    self, group_partition, CoordinatorError, GroupConfig, GroupCoordinator, Input, PersistError,
    Response, OFFSETS_TOPIC,
};
use super::{
    Action, Actions, CoordinatorLog, Coordinators, PersistFailure, ShellError, StateMachine, Status,
};
use crate::cluster::meta::{MetaSnapshot, TopicMeta};
use crate::config::BrokerConfig;

/// A consumer-group request for the coordinators of the target shard.
#[derive(Debug)]
pub enum GroupReq {
    /// One request for the coordinator of offsets partition `partition`.
    Step { partition: i32, input: Box<Input> },
    /// ListGroups on every coordinator of the target shard.
    ListAll {
        api_version: i16,
        request: ListGroupsRequest,
    },
    /// Whether the coordinators of these partitions serve requests: per partition, 0 or
    /// COORDINATOR_LOAD_IN_PROGRESS / COORDINATOR_NOT_AVAILABLE.
    Status { partitions: Vec<i32> },
}

#[derive(Debug)]
pub enum GroupResp {
    /// The coordinator's answer, or the Kafka error code that stands for all of it.
    Step(Result<Response, i16>),
    /// The groups of the loaded coordinators, and COORDINATOR_LOAD_IN_PROGRESS if some
    /// coordinator was still loading (Kafka answers ListGroups that way too).
    Listed {
        groups: Vec<ListedGroup>,
        error: i16,
    },
    Status(Vec<i16>),
}

/// Where a group is coordinated: (offsets partition, owning shard), or `None` before the
/// offsets topic exists.
pub fn coordinator_of(meta: &MetaSnapshot, group_id: &str) -> Option<(i32, usize)> {
    let topic = meta.topic(OFFSETS_TOPIC)?;
    let partitions = u32::try_from(topic.partitions).ok().filter(|n| *n > 0)?;
    let partition = i32::try_from(group_partition(group_id, partitions)).ok()?;
    Some((partition, meta.owner(OFFSETS_TOPIC, partition)))
}

/// The group coordinator settings, from the broker's Kafka configs and those of the offsets
/// topic (the one being opened: the shard's snapshot may not show it yet).
pub fn group_config(config: &BrokerConfig, offsets_topic: &TopicMeta) -> GroupConfig {
    let k = &config.kafka;
    let record_bytes_max = usize::try_from(offsets_topic.config.max_message_bytes())
        .unwrap_or(GroupConfig::default().group_record_bytes_max);
    GroupConfig {
        session_timeout_ms_min: k.group_min_session_timeout_ms(),
        session_timeout_ms_max: k.group_max_session_timeout_ms(),
        initial_rebalance_delay_ms: k.group_initial_rebalance_delay_ms(),
        group_size_max: usize::try_from(k.group_max_size()).unwrap_or(usize::MAX),
        offsets_retention_ms: k.offsets_retention_ms(),
        offsets_retention_check_interval_ms: k.offsets_retention_check_interval_ms(),
        group_record_bytes_max: record_bytes_max,
        // Member ids must not repeat across coordinators or restarts.
        member_id_seed: uuid::Uuid::new_v4().as_u64_pair().0,
        ..GroupConfig::default()
    }
}

/// What the shell logs for the group coordinator.
#[derive(Debug, thiserror::Error)]
pub enum GroupShellError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Driver(#[from] CoordinatorError),
}

fn actions(group_actions: Vec<group::Action>) -> Actions<GroupCoordinator> {
    group_actions
        .into_iter()
        .map(|a| match a {
            group::Action::Respond {
                request_id,
                response,
            } => Action::Respond {
                request_id,
                response,
            },
            group::Action::Persist {
                persist_id,
                records,
            } => Action::Persist {
                persist_id,
                records,
            },
            group::Action::ScheduleTick { at_ms } => Action::ScheduleTick { at_ms },
        })
        .collect()
}

impl StateMachine for GroupCoordinator {
    type Input = Input;
    type Response = Response;
    type Record = OffsetsRecord;
    type Error = GroupShellError;

    fn replay(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), GroupShellError> {
        Ok(self.load_raw(key, value)?)
    }

    fn finish_load(&mut self, now_ms: i64) -> Actions<Self> {
        actions(GroupCoordinator::finish_load(self, now_ms))
    }

    fn step(&mut self, now_ms: i64, request_id: u64, input: Input) -> Actions<Self> {
        actions(GroupCoordinator::step(self, now_ms, request_id, input))
    }

    fn tick(&mut self, now_ms: i64) -> Actions<Self> {
        actions(GroupCoordinator::tick(self, now_ms))
    }

    fn persisted(
        &mut self,
        now_ms: i64,
        persist_id: u64,
        result: Result<(), PersistFailure>,
    ) -> Result<Actions<Self>, GroupShellError> {
        let result = result.map_err(|failure| match failure {
            PersistFailure::Encode(_) => PersistError::Other,
            PersistFailure::Log(e) => PersistError::from_append_error(e.code),
        });
        Ok(actions(self.persist_complete(now_ms, persist_id, result)?))
    }

    fn shutdown(&mut self) -> Actions<Self> {
        actions(GroupCoordinator::shutdown(self))
    }

    fn encode(record: &OffsetsRecord) -> Result<(Bytes, Option<Bytes>), GroupShellError> {
        Ok(record.encode()?)
    }
}

/// The group coordinators of one shard, by offsets partition.
#[derive(Default)]
pub struct GroupCoordinators {
    shells: Coordinators<GroupCoordinator>,
}

/// The Kafka code for a request the shell could not hand to a coordinator.
fn shell_code(e: ShellError) -> i16 {
    match e {
        ShellError::Loading => E::CoordinatorLoadInProgress.code(),
        ShellError::NotOpen | ShellError::Unavailable | ShellError::Closed => {
            E::NotCoordinator.code()
        }
    }
}

impl GroupCoordinators {
    /// Starts the coordinator of offsets partition `partition`, which this shard has just
    /// opened; it loads in the background and answers COORDINATOR_LOAD_IN_PROGRESS meanwhile.
    pub fn open(&self, partition: i32, log: Rc<dyn CoordinatorLog>, config: GroupConfig) {
        self.shells
            .open("group", partition, log, GroupCoordinator::new(config));
    }

    /// Stops the coordinator of `partition` (partition closed or moved): parked requests
    /// get NOT_COORDINATOR, its tasks end.
    pub fn close(&self, partition: i32) {
        self.shells.close(partition);
    }

    /// Stops every coordinator (shard shutdown), before the partitions close.
    pub fn close_all(&self) {
        self.shells.close_all();
    }

    /// Topics were deleted: every coordinator of this shard drops their committed offsets
    /// and writes tombstones for them. Returns how many offsets were removed. A coordinator
    /// still loading is skipped (its offsets for the topics stay until they expire).
    pub async fn topics_deleted(&self, topics: &[String]) -> usize {
        let mut removed = 0;
        for partition in self.shells.partitions() {
            let input = Input::TopicsDeleted {
                topics: topics.to_vec(),
            };
            match self.shells.step(partition, input).await {
                Ok(Response::TopicsDeleted { offsets_removed }) => removed += offsets_removed,
                Ok(other) => warn!(?other, "TopicsDeleted answered with another response"),
                Err(e) => warn!(partition, error = ?e, "offsets of deleted topics not removed"),
            }
        }
        removed
    }

    /// Calls `f(group, topic, partition, committed offset)` for every offset the loaded
    /// coordinators of this shard hold (for `/metrics`).
    pub fn for_each_committed(&self, mut f: impl FnMut(&str, &str, i32, i64)) {
        self.shells
            .for_each_active(|machine| machine.for_each_committed(&mut f));
    }

    /// Answers a [`GroupReq`] for this shard's coordinators.
    pub async fn serve(&self, req: GroupReq) -> GroupResp {
        match req {
            GroupReq::Step { partition, input } => GroupResp::Step(
                self.shells
                    .step(partition, *input)
                    .await
                    .map_err(shell_code),
            ),
            GroupReq::ListAll {
                api_version,
                request,
            } => {
                let mut groups = Vec::new();
                let mut error = 0;
                for partition in self.shells.partitions() {
                    let input = Input::ListGroups {
                        api_version,
                        request: request.clone(),
                    };
                    match self.shells.step(partition, input).await {
                        Ok(Response::ListGroups(r)) => groups.extend(r.groups),
                        Ok(other) => warn!(?other, "ListGroups answered with another response"),
                        Err(e) => error = shell_code(e),
                    }
                }
                GroupResp::Listed { groups, error }
            }
            GroupReq::Status { partitions } => GroupResp::Status(
                partitions
                    .iter()
                    .map(|p| match self.shells.status(*p) {
                        Some(Status::Active) => 0,
                        Some(Status::Loading) => E::CoordinatorLoadInProgress.code(),
                        Some(Status::Unavailable) | None => E::CoordinatorNotAvailable.code(),
                    })
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::shell::LOAD_BATCH_DECOMPRESSED_BYTES_MAX;
    use crate::log::records::{self, BatchSpec, NewRecord};
    use group::records::{OffsetCommitKey, OffsetCommitValue};

    #[test]
    fn offsets_records_round_trip_through_a_batch() {
        let records = vec![
            OffsetsRecord::OffsetCommit {
                key: OffsetCommitKey {
                    group: "g".into(),
                    topic: "t".into(),
                    partition: 3,
                },
                value: Some(OffsetCommitValue {
                    offset: 42,
                    leader_epoch: 7,
                    metadata: "m".into(),
                    commit_timestamp_ms: 1,
                    expire_timestamp_ms: -1,
                }),
            },
            OffsetsRecord::GroupMetadata {
                group: "g".into(),
                value: None,
            },
        ];
        let built: Vec<NewRecord> = records
            .iter()
            .map(|r| {
                let (key, value) = <GroupCoordinator as StateMachine>::encode(r).unwrap();
                NewRecord {
                    timestamp: 5,
                    key: Some(key),
                    value,
                    headers: Vec::new(),
                }
            })
            .collect();
        let batch = records::build_batch(&BatchSpec::default(), &built).unwrap();
        let back: Vec<OffsetsRecord> =
            records::decode_batch(&batch, LOAD_BATCH_DECOMPRESSED_BYTES_MAX)
                .unwrap()
                .records
                .into_iter()
                .map(|r| OffsetsRecord::decode(&r.key.unwrap(), r.value.as_deref()).unwrap())
                .collect();
        assert_eq!(back, records);
    }

    #[test]
    fn shell_errors_map_to_kafka_coordinator_codes() {
        assert_eq!(
            shell_code(ShellError::Loading),
            E::CoordinatorLoadInProgress.code()
        );
        for e in [
            ShellError::NotOpen,
            ShellError::Unavailable,
            ShellError::Closed,
        ] {
            assert_eq!(shell_code(e), E::NotCoordinator.code());
        }
    }
}
