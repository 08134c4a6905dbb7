//! The controller shell: shard 0's link to the controller quorum.
//!
//! Owns: publishing every image the quorum applies ([`QuorumHandle::images`]) to this node's
//! shards, and answering metadata requests. Requests arrive as [`ShardReq::Controller`]
//! messages (from any shard, shard 0 included, and from start-up's `ensure_offsets_topic`);
//! the shell hands each to the quorum ([`QuorumHandle::submit`]: decided by the active
//! controller, wherever it runs, and committed to the metadata log), then waits until this
//! node has published an image that includes the change and answers through
//! [`crate::cluster::controller::settle`]: a topic whose local partitions could not be opened
//! answers KAFKA_STORAGE_ERROR; a shard that did not acknowledge (unreachable, or silent for
//! `controller_ack_timeout_ms`) makes the change answer REQUEST_TIMED_OUT. A client therefore
//! finds a created topic usable on this node as soon as CreateTopics returns successfully.
//!
//! Publishing is two-phase, one image at a time, in version order — [`ShardReq::OpenPartitions`]
//! on every shard, then [`ShardReq::ApplyMeta`] on every shard — and may skip images that a
//! newer one supersedes (every image is complete). The shell talks to the shards only through
//! the [`Router`], never by holding a [`crate::shard::Shard`].
//!
//! Invariants: an image reaches the shards only once the quorum applied it (it is committed);
//! shards see images in increasing version order; shard 0's own acknowledgement has no
//! deadline: cancelling its handler half-way would leave its metadata half applied.
//!
//! Runs on: shard 0 only.

use std::sync::Arc;
use std::time::Duration;

use futures::future::Either;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::cluster::controller::{
    settle, ControllerReq, ControllerResp, MetaAck, PublishReport, RequestKind,
};
use crate::cluster::meta::MetaSnapshot;
use crate::cluster::quorum::QuorumHandle;
use crate::errors::PartitionError;
use crate::shard::{Router, ShardReq, ShardResp};

/// Shard 0's link to the controller quorum (see the module docs).
pub struct ControllerShell {
    router: Router,
    quorum: QuorumHandle,
    /// The report of the last image published to every shard.
    published: watch::Sender<PublishReport>,
    /// How long to wait for another shard's acknowledgement of a published image.
    ack_timeout: Duration,
}

impl ControllerShell {
    /// `initial`: the image every shard starts with.
    pub fn new(
        router: Router,
        quorum: QuorumHandle,
        initial: &MetaSnapshot,
        ack_timeout: Duration,
    ) -> ControllerShell {
        let (published, _) = watch::channel(PublishReport {
            version: initial.version,
            ..PublishReport::default()
        });
        ControllerShell {
            router,
            quorum,
            published,
            ack_timeout,
        }
    }

    /// Publish every new image of the quorum to every shard, until the quorum goes away.
    pub async fn run_publisher(&self) {
        let mut images = self.quorum.images();
        loop {
            if images.changed().await.is_err() {
                return;
            }
            let image = images.borrow_and_update().clone();
            if image.version <= self.published.borrow().version {
                continue;
            }
            let report = self.publish(&image).await;
            if !report.is_clean() {
                warn!(
                    version = report.version,
                    unacknowledged = ?report.unacknowledged,
                    unopened = ?report.unopened,
                    "metadata published with problems"
                );
            }
            self.published.send_replace(report);
        }
    }

    /// Have the quorum decide `req`, wait until this node published the change, answer.
    pub async fn handle(&self, req: ControllerReq) -> ControllerResp {
        let submitted = match self.quorum.submit(req).await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "metadata request failed");
                return ControllerResp::Failed(PartitionError::from(e));
            }
        };
        let kind = submitted.kind;
        let Some(index) = submitted.index else {
            return submitted.response;
        };
        let report = self.wait_published(index).await;
        let response = settle(kind, submitted.response, &report);
        log_change(kind, &response);
        response
    }

    /// The report of the first publication at or above `version`; a report naming every
    /// other shard unacknowledged if none comes within the acknowledgement timeout.
    async fn wait_published(&self, version: u64) -> PublishReport {
        let mut reports = self.published.subscribe();
        let wait = Box::pin(async move {
            reports
                .wait_for(|r| r.version >= version)
                .await
                .map(|r| r.clone())
                .ok()
        });
        let deadline = Box::pin(glommio::timer::sleep(self.ack_timeout));
        match futures::future::select(wait, deadline).await {
            Either::Left((Some(report), _)) => report,
            _ => PublishReport {
                version,
                unacknowledged: (0..self.router.nr_shards()).collect(),
                unopened: Vec::new(),
            },
        }
    }

    /// Both phases of publishing `image` to every shard (this one included).
    async fn publish(&self, image: &Arc<MetaSnapshot>) -> PublishReport {
        let shards = 0..self.router.nr_shards();
        let open = shards
            .clone()
            .map(|shard| self.ack(shard, ShardReq::OpenPartitions(image.clone())));
        // Phase two only once every shard opened its new partitions: no shard routes to a
        // partition its owner has not opened. It runs even if a shard did not answer phase
        // one: the image is committed, so every shard must converge on it.
        let open = futures::future::join_all(open).await;
        let apply = shards.map(|shard| self.ack(shard, ShardReq::ApplyMeta(image.clone())));
        let apply = futures::future::join_all(apply).await;
        PublishReport::from_acks(image.version, &open, &apply)
    }

    /// One shard's acknowledgement of `req`, or `None` (logged) if it gave none.
    async fn ack(&self, shard: usize, req: ShardReq) -> (usize, Option<MetaAck>) {
        let reply = if shard == self.router.shard_id() {
            self.router.call(shard, req).await
        } else {
            self.router.call_timeout(shard, req, self.ack_timeout).await
        };
        match reply {
            Ok(ShardResp::MetaAck(ack)) => (shard, Some(ack)),
            Ok(other) => {
                warn!(shard, reply = ?other, "unexpected answer to a metadata publication");
                (shard, None)
            }
            Err(e) => {
                warn!(shard, error = %e, "shard did not acknowledge a metadata publication");
                (shard, None)
            }
        }
    }
}

fn log_change(kind: RequestKind, response: &ControllerResp) {
    if let ControllerResp::Configs(results) = response {
        if results.iter().any(Result::is_ok) {
            info!("dynamic broker configs changed");
        }
        return;
    }
    let ControllerResp::Topics(results) = response else {
        return;
    };
    for topic in results.iter().flatten() {
        match kind {
            RequestKind::CreateTopics => {
                info!(topic = %topic.name, partitions = topic.partitions, "created topic")
            }
            RequestKind::DeleteTopics => info!(topic = %topic.name, "deleted topic"),
            RequestKind::CreatePartitions => {
                info!(topic = %topic.name, partitions = topic.partitions, "added partitions")
            }
            RequestKind::AlterConfigs => info!(topic = %topic.name, "altered topic configs"),
            RequestKind::AlterBrokerConfigs
            | RequestKind::AllocateProducerId
            | RequestKind::AlterPartition
            | RequestKind::ElectLeaders
            | RequestKind::AlterReassignments => {}
        }
    }
}
