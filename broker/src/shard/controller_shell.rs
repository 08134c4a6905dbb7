//! The controller shell: the thin driver of the metadata controller, on shard 0.
//!
//! Owns: the current metadata image (the last durable one), the [`MetaStore`] that persists
//! it, and the I/O-free [`Controller`] that decides what each request does. Requests arrive as
//! [`ShardReq::Controller`] messages (from any shard, shard 0 included, and from start-up's
//! `coordinator::ensure_offsets_topic`); the shell talks to the shards only through the
//! [`Router`], never by holding a [`crate::shard::Shard`].
//!
//! One request at a time (a semaphore): decide; if the decision makes a new image, persist it
//! ([`MetaStore::save`], glommio file I/O, off the reactor's blocking path), adopt it, then
//! publish it in two phases — [`ShardReq::OpenPartitions`] on every shard, then
//! [`ShardReq::ApplyMeta`] on every shard — and await each shard's [`MetaAck`]. Only then
//! does it answer, through [`crate::cluster::controller::Decision::settle`]: a topic whose
//! partitions could not be opened answers KAFKA_STORAGE_ERROR, and a shard that did not
//! acknowledge (unreachable, or silent for `controller_ack_timeout_ms`) makes the change answer
//! REQUEST_TIMED_OUT and is logged. A client therefore finds a created topic usable on every
//! shard as soon as CreateTopics returns successfully.
//!
//! Invariants: an image is durable before any shard sees it, and is adopted by the shell once
//! durable even if some shard does not acknowledge it (the file is the truth; every image is
//! complete, so a shard that missed one catches up with the next). A failed persist changes
//! nothing: the old image stays in force and no producer id of an unpersisted block is handed
//! out. Shard 0's own acknowledgement has no deadline: cancelling its handler half-way would
//! leave its metadata half applied.
//!
//! Runs on: shard 0 only.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError as E;
use tracing::{info, warn};

use crate::cluster::controller::{
    Controller, ControllerReq, ControllerResp, MetaAck, PublishReport, RequestKind,
};
use crate::cluster::meta::{MetaSnapshot, MetaStore};
use crate::errors::PartitionError;
use crate::shard::{scopeguard, Router, ShardReq, ShardResp};

/// The metadata controller's driver (see the module docs).
pub struct ControllerShell {
    router: Router,
    store: MetaStore,
    state: RefCell<State>,
    /// Serialises requests: each one decides on the image the previous one left.
    lock: glommio::sync::Semaphore,
    /// How long to wait for another shard's acknowledgement of a published image.
    ack_timeout: Duration,
}

struct State {
    /// The last durable image.
    image: Arc<MetaSnapshot>,
    controller: Controller,
}

impl ControllerShell {
    /// `image` is the one loaded at start-up (durable already).
    pub fn new(
        router: Router,
        store: MetaStore,
        image: Arc<MetaSnapshot>,
        controller: Controller,
        ack_timeout: Duration,
    ) -> ControllerShell {
        ControllerShell {
            router,
            store,
            state: RefCell::new(State { image, controller }),
            lock: glommio::sync::Semaphore::new(1),
            ack_timeout,
        }
    }

    /// Decide, persist, publish, check the acknowledgements, answer.
    pub async fn handle(&self, req: ControllerReq) -> ControllerResp {
        if self.lock.acquire(1).await.is_err() {
            return ControllerResp::Failed(PartitionError::new(E::UnknownServerError));
        }
        let _release = scopeguard(|| self.lock.signal(1));
        let mut decision = {
            let state = self.state.borrow();
            state.controller.decide(&state.image, req)
        };
        let Some(next) = decision.publish.take() else {
            let mut state = self.state.borrow_mut();
            let State { image, controller } = &mut *state;
            controller.commit(&decision, image);
            return decision.response;
        };
        if let Err(e) = self.store.save(&next).await {
            warn!(version = next.version, error = %e, "persisting metadata failed; the change is dropped");
            return ControllerResp::Failed(PartitionError::with_message(
                E::KafkaStorageError,
                format!("persisting metadata: {e}"),
            ));
        }
        let image = Arc::new(next);
        {
            let mut state = self.state.borrow_mut();
            state.controller.commit(&decision, &image);
            state.image = image.clone();
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
        let kind = decision.kind;
        let response = decision.settle(&report);
        log_change(kind, &response);
        response
    }

    /// Both phases of publishing `image` to every shard (this one included).
    async fn publish(&self, image: &Arc<MetaSnapshot>) -> PublishReport {
        let shards = 0..self.router.nr_shards();
        let open = shards
            .clone()
            .map(|shard| self.ack(shard, ShardReq::OpenPartitions(image.clone())));
        // Phase two only once every shard opened its new partitions: no shard routes to a
        // partition its owner has not opened. It runs even if a shard did not answer phase
        // one: the image is durable, so every shard must converge on it.
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
            RequestKind::AlterBrokerConfigs | RequestKind::AllocateProducerId => {}
        }
    }
}
