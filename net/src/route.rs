//! Typed request/response between shards (one glommio `LocalExecutor` thread each).
//!
//! Built once before the executors start with [`build`], which returns one [`ShardEndpoints`]
//! per shard (`Send`: move each into its executor's closure). Inside the executor,
//! [`ShardEndpoints::connect`] yields a [`ShardRouter`] (`!Send`, cheap to clone). A shard
//! answers its peers by running [`ShardRouter::serve`] as a local task.
//!
//! Wiring: for every ordered pair of distinct shards (a, b) there is one bounded glommio
//! `shared_channel` for requests a→b and one for responses b→a, each [`RouteConfig::queue_depth`]
//! deep. Requests carry a call id; each shard runs one response pump per peer that completes the
//! matching pending call. Shard indices are the ones given to [`build`], independent of
//! executor ids.
//!
//! Two classes of request, with separate budgets on the serving shard:
//! - **Calls** ([`ShardRouter::call`]): work that finishes on its own (produce, read, metadata,
//!   groups). The serving shard runs at most [`RouteConfig::max_concurrent_served`] of them at
//!   once, for all peers together; beyond that it stops taking requests off its queues, which
//!   pushes back on the callers. A call runs to completion even when its caller stops waiting
//!   (a half-done append would be worse than a wasted one).
//! - **Waits** ([`ShardRouter::wait`]): long polls that may park for seconds (a fetch waiting
//!   for data). They hold no call permit, so parked waits can never starve calls. The serving
//!   shard parks at most [`RouteConfig::max_parked_waits`] of them; one more is refused at
//!   once ([`RouteError::WaitsFull`]) rather than queued, and the caller decides what to do
//!   without it. The *caller* owns a wait: dropping the `wait` future (its fetch answered,
//!   timed out or was abandoned) sends a cancel message after the request, and the serving
//!   shard drops the parked future, so no wait outlives the request it served. Parked,
//!   refused and cancelled waits are counted in [`RouteStats`]. Requests from one peer are
//!   taken off its queue in order, so while calls wait for a permit, the waits and cancels
//!   queued behind them wait too (a wait still ends at its own timeout).
//!
//! Which shard runs what: `call`/`wait` futures and the response pumps run on the calling
//! shard; the handler given to `serve` runs on the serving shard, each request as its own
//! local task. Calls to the caller's own shard run the handler directly, with no channel
//! hop and outside both budgets.
//!
//! Cost: each hop is a cross-thread wake-up. On the 2-core VM this project was measured on,
//! a call round trip is ≈ 43 µs p50 in a release build without executor spinning, with a p99
//! from 66 µs to several ms depending on core contention (`tests/route.rs` prints its own
//! measurement); keep hops off the latency path and batch where possible. A cancelled wait
//! costs one more one-way message.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use glommio::channels::local_channel::{self, LocalSender};
use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use glommio::sync::Semaphore;
use glommio::{GlommioError, ResourceType};
use tracing::{debug, warn};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("no shard {shard} (there are {nr_shards})")]
    NoSuchShard { shard: usize, nr_shards: usize },
    /// The peer's router is gone (its executor stopped) or it dropped the request.
    #[error("shard {shard} is disconnected")]
    Disconnected { shard: usize },
    /// A call to our own shard before `serve` was started here.
    #[error("shard {shard} is not serving requests")]
    NotServing { shard: usize },
    #[error("shard {shard} did not answer within {timeout:?}")]
    TimedOut {
        shard: usize,
        timeout: std::time::Duration,
    },
    /// A [`ShardRouter::wait`] the target refused: it already parks
    /// [`RouteConfig::max_parked_waits`] waits.
    #[error("shard {shard} parks as many waits as it may")]
    WaitsFull { shard: usize },
}

/// Default [`RouteConfig::queue_depth`].
pub const QUEUE_DEPTH_DEFAULT: usize = 128;
/// Default [`RouteConfig::max_concurrent_served`].
pub const MAX_CONCURRENT_SERVED_DEFAULT: usize = 1024;
/// Default [`RouteConfig::max_parked_waits`]. A parked wait costs a task and one waiter per
/// partition it watches, a few hundred bytes.
pub const MAX_PARKED_WAITS_DEFAULT: usize = 4096;

/// Sizing of the routing fabric (the broker's `cross_shard_queue_depth`,
/// `max_cross_shard_requests_per_shard` and `max_cross_shard_waits_per_shard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteConfig {
    /// Capacity of each per-pair request and response queue.
    pub queue_depth: usize,
    /// Calls from peers a shard processes concurrently (all peers together); beyond this it
    /// stops taking new requests off the queues, which pushes back on the callers.
    pub max_concurrent_served: usize,
    /// Waits from peers a shard keeps parked at once (all peers together); one more is
    /// refused at once with [`RouteError::WaitsFull`]. Waits hold no call permit.
    pub max_parked_waits: usize,
}

impl Default for RouteConfig {
    fn default() -> Self {
        Self {
            queue_depth: QUEUE_DEPTH_DEFAULT,
            max_concurrent_served: MAX_CONCURRENT_SERVED_DEFAULT,
            max_parked_waits: MAX_PARKED_WAITS_DEFAULT,
        }
    }
}

/// What travels on a request queue.
enum ToPeer<Req> {
    /// A request served under the call permits; runs to completion.
    Call(u64, Req),
    /// A long poll, parked within the wait budget until it answers or is cancelled.
    Wait(u64, Req),
    /// The caller stopped waiting for wait `id` (always sent after the `Wait` itself).
    Cancel(u64),
}

/// What travels on a response queue.
enum FromPeer<Resp> {
    Answer(u64, Resp),
    /// The wait with this id was refused: the serving shard's wait budget is used up.
    WaitRefused(u64),
}

type RequestSender<Req> = Rc<ConnectedSender<ToPeer<Req>>>;
type ResponseSender<Resp> = Rc<ConnectedSender<FromPeer<Resp>>>;
type SlotRef<T> = Rc<RefCell<Slot<T>>>;

/// Counters of one shard's router, for its metrics. Shard-local; read them with
/// [`ShardRouter::stats`].
#[derive(Debug, Default)]
pub struct RouteStats {
    waits_parked: Cell<u64>,
    waits_refused: Cell<u64>,
    waits_cancelled: Cell<u64>,
}

impl RouteStats {
    /// Waits of other shards parked here now.
    pub fn waits_parked(&self) -> u64 {
        self.waits_parked.get()
    }

    /// Waits of other shards refused here so far (the wait budget was used up).
    pub fn waits_refused_total(&self) -> u64 {
        self.waits_refused.get()
    }

    /// Waits of other shards dropped here so far because their caller cancelled them.
    pub fn waits_cancelled_total(&self) -> u64 {
        self.waits_cancelled.get()
    }
}

/// One shard's ends of every channel, ready to be moved into its executor.
pub struct ShardEndpoints<Req: Send + 'static, Resp: Send + 'static> {
    shard: usize,
    nr_shards: usize,
    config: RouteConfig,
    req_tx: Vec<Option<SharedSender<ToPeer<Req>>>>,
    req_rx: Vec<Option<SharedReceiver<ToPeer<Req>>>>,
    resp_tx: Vec<Option<SharedSender<FromPeer<Resp>>>>,
    resp_rx: Vec<Option<SharedReceiver<FromPeer<Resp>>>>,
}

/// Creates the channels for `nr_shards` shards; element `i` of the result belongs to shard `i`.
pub fn build<Req: Send + 'static, Resp: Send + 'static>(
    nr_shards: usize,
    config: RouteConfig,
) -> Vec<ShardEndpoints<Req, Resp>> {
    let depth = config.queue_depth.max(1);
    let mut endpoints: Vec<ShardEndpoints<Req, Resp>> = (0..nr_shards)
        .map(|shard| ShardEndpoints {
            shard,
            nr_shards,
            config,
            req_tx: (0..nr_shards).map(|_| None).collect(),
            req_rx: (0..nr_shards).map(|_| None).collect(),
            resp_tx: (0..nr_shards).map(|_| None).collect(),
            resp_rx: (0..nr_shards).map(|_| None).collect(),
        })
        .collect();
    for from in 0..nr_shards {
        for to in 0..nr_shards {
            if from == to {
                continue;
            }
            let (tx, rx) = shared_channel::new_bounded(depth);
            endpoints[from].req_tx[to] = Some(tx);
            endpoints[to].req_rx[from] = Some(rx);
            let (tx, rx) = shared_channel::new_bounded(depth);
            endpoints[to].resp_tx[from] = Some(tx);
            endpoints[from].resp_rx[to] = Some(rx);
        }
    }
    endpoints
}

impl<Req: Send + 'static, Resp: Send + 'static> ShardEndpoints<Req, Resp> {
    pub fn shard_id(&self) -> usize {
        self.shard
    }

    /// Connects every channel end to the current executor and starts the response pumps.
    /// Must run inside the shard's glommio executor.
    pub async fn connect(self) -> ShardRouter<Req, Resp> {
        let pending: Rc<PendingCalls<Result<Resp, RouteError>>> = Rc::new(PendingCalls::default());
        // `connect` waits until the other end is connected too, so every end is connected
        // concurrently: connecting one at a time in a fixed order deadlocks across shards.
        let req_tx = spawn_connects(self.req_tx, |tx| tx.connect());
        let req_rx = spawn_connects(self.req_rx, |rx| rx.connect());
        let resp_tx = spawn_connects(self.resp_tx, |tx| tx.connect());
        let resp_rx = spawn_connects(self.resp_rx, |rx| rx.connect());
        let req_tx: Vec<_> = join_connects(req_tx)
            .await
            .into_iter()
            .map(|tx| tx.map(Rc::new))
            .collect();
        let req_rx = join_connects(req_rx).await;
        let resp_tx: Vec<_> = join_connects(resp_tx)
            .await
            .into_iter()
            .map(|tx| tx.map(Rc::new))
            .collect();
        let resp_rx = join_connects(resp_rx).await;
        for (peer, rx) in resp_rx.into_iter().enumerate() {
            let Some(rx) = rx else { continue };
            let pending = pending.clone();
            let shard = self.shard;
            glommio::spawn_local(async move {
                while let Some(msg) = rx.recv().await {
                    let (id, result) = match msg {
                        FromPeer::Answer(id, resp) => (id, Ok(resp)),
                        FromPeer::WaitRefused(id) => {
                            (id, Err(RouteError::WaitsFull { shard: peer }))
                        }
                    };
                    if !pending.complete(id, result) {
                        debug!(
                            shard,
                            peer, id, "response for a call nobody awaits any more"
                        );
                    }
                }
                debug!(shard, peer, "response channel closed");
                pending.fail_peer(peer);
            })
            .detach();
        }
        ShardRouter {
            inner: Rc::new(Inner {
                shard: self.shard,
                nr_shards: self.nr_shards,
                config: self.config,
                req_tx,
                req_rx: RefCell::new(req_rx),
                resp_tx: RefCell::new(resp_tx),
                pending,
                next_id: Cell::new(0),
                local: RefCell::new(None),
                stats: Rc::new(RouteStats::default()),
            }),
        }
    }
}

fn spawn_connects<E, C, Fut>(
    ends: Vec<Option<E>>,
    connect: impl Fn(E) -> Fut,
) -> Vec<Option<glommio::Task<C>>>
where
    Fut: Future<Output = C> + 'static,
    C: 'static,
{
    ends.into_iter()
        .map(|end| end.map(|end| glommio::spawn_local(connect(end))))
        .collect()
}

async fn join_connects<C>(tasks: Vec<Option<glommio::Task<C>>>) -> Vec<Option<C>> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(match t {
            Some(t) => Some(t.await),
            None => None,
        });
    }
    out
}

type LocalHandler<Req, Resp> = Rc<dyn Fn(Req) -> Pin<Box<dyn Future<Output = Resp>>>>;

struct Inner<Req: Send + 'static, Resp: Send + 'static> {
    shard: usize,
    nr_shards: usize,
    config: RouteConfig,
    req_tx: Vec<Option<RequestSender<Req>>>,
    /// Taken by `serve`.
    req_rx: RefCell<Vec<Option<ConnectedReceiver<ToPeer<Req>>>>>,
    resp_tx: RefCell<Vec<Option<ResponseSender<Resp>>>>,
    pending: Rc<PendingCalls<Result<Resp, RouteError>>>,
    next_id: Cell<u64>,
    /// The serve handler, for calls to our own shard.
    local: RefCell<Option<LocalHandler<Req, Resp>>>,
    stats: Rc<RouteStats>,
}

/// The class of a request (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Call,
    Wait,
}

impl<Req: Send + 'static, Resp: Send + 'static> Inner<Req, Resp> {
    /// Tells `shard` to drop wait `id`. Runs in a destructor, so it cannot await: when the
    /// queue is full, a task delivers the cancel once there is room. Either way it lands
    /// behind the `Wait` it cancels (same FIFO queue, which already holds the wait).
    fn send_cancel(&self, shard: usize, id: u64) {
        let Some(Some(tx)) = self.req_tx.get(shard) else {
            return;
        };
        if let Err(GlommioError::WouldBlock(ResourceType::Channel(msg))) =
            tx.try_send(ToPeer::Cancel(id))
        {
            // (A closed queue needs no cancel: the peer drops its waits with it.)
            let tx = tx.clone();
            let from = self.shard;
            glommio::spawn_local(async move {
                if tx.send(msg).await.is_err() {
                    debug!(
                        from,
                        to = shard,
                        id,
                        "request channel closed; cancel not sent"
                    );
                }
            })
            .detach();
        }
    }
}

/// This shard's handle on the routing fabric.
pub struct ShardRouter<Req: Send + 'static, Resp: Send + 'static> {
    inner: Rc<Inner<Req, Resp>>,
}

impl<Req: Send + 'static, Resp: Send + 'static> Clone for ShardRouter<Req, Resp> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> ShardRouter<Req, Resp> {
    pub fn shard_id(&self) -> usize {
        self.inner.shard
    }

    pub fn nr_shards(&self) -> usize {
        self.inner.nr_shards
    }

    /// Sends `req` to `shard` and waits for its answer. A call to our own shard runs the
    /// local serve handler directly (no channel hop). Dropping the future stops waiting for
    /// the answer, but the peer still completes the request.
    pub async fn call(&self, shard: usize, req: Req) -> Result<Resp, RouteError> {
        self.request(shard, req, Class::Call).await
    }

    /// Sends a long poll `req` to `shard` and waits for its answer. On another shard it parks
    /// without holding a call permit, within that shard's [`RouteConfig::max_parked_waits`]:
    /// beyond that it is refused at once with [`RouteError::WaitsFull`]. Dropping the future
    /// before the answer cancels the wait on the peer (its handler future is dropped there).
    /// On our own shard it runs the local handler directly, as `call` does.
    pub async fn wait(&self, shard: usize, req: Req) -> Result<Resp, RouteError> {
        self.request(shard, req, Class::Wait).await
    }

    /// This shard's counters (shared: they keep counting after this call).
    pub fn stats(&self) -> Rc<RouteStats> {
        self.inner.stats.clone()
    }

    async fn request(&self, shard: usize, req: Req, class: Class) -> Result<Resp, RouteError> {
        let inner = &self.inner;
        if shard >= inner.nr_shards {
            return Err(RouteError::NoSuchShard {
                shard,
                nr_shards: inner.nr_shards,
            });
        }
        if shard == inner.shard {
            let local = inner.local.borrow().clone();
            return match local {
                Some(handler) => Ok(handler(req).await),
                None => Err(RouteError::NotServing { shard }),
            };
        }
        let Some(Some(tx)) = inner.req_tx.get(shard) else {
            return Err(RouteError::Disconnected { shard });
        };
        let id = inner.next_id.get();
        inner.next_id.set(id.wrapping_add(1));
        let rx = inner.pending.register(id, shard);
        // Removes the pending entry if this future is dropped before the answer arrives, and
        // then cancels a wait the peer already has.
        let mut guard = PendingGuard {
            inner,
            id,
            shard,
            cancel_on_drop: false,
        };
        let msg = match class {
            Class::Call => ToPeer::Call(id, req),
            Class::Wait => ToPeer::Wait(id, req),
        };
        if tx.send(msg).await.is_err() {
            warn!(from = inner.shard, to = shard, "request channel closed");
            return Err(RouteError::Disconnected { shard });
        }
        // Only now: a wait dropped while still queued for sending never reached the peer.
        guard.cancel_on_drop = class == Class::Wait;
        match rx.await {
            Some(result) => result,
            None => Err(RouteError::Disconnected { shard }),
        }
    }

    /// [`call`](Self::call) with a deadline. A peer that stops without dropping its tasks
    /// (glommio leaks the tasks of an executor that exits) never answers nor disconnects, so
    /// use this where a stuck or dead shard must not hang the caller. The late answer, if it
    /// ever comes, is discarded.
    pub async fn call_timeout(
        &self,
        shard: usize,
        req: Req,
        timeout: std::time::Duration,
    ) -> Result<Resp, RouteError> {
        let call = self.call(shard, req);
        let deadline = async {
            glommio::timer::sleep(timeout).await;
            Err(RouteError::TimedOut { shard, timeout })
        };
        futures_lite::future::or(call, deadline).await
    }

    /// Calls every other shard concurrently with `make(shard)` and gathers the replies in
    /// shard order.
    pub async fn broadcast(
        &self,
        make: impl Fn(usize) -> Req,
    ) -> Vec<(usize, Result<Resp, RouteError>)> {
        let mut tasks = Vec::with_capacity(self.inner.nr_shards.saturating_sub(1));
        for shard in (0..self.inner.nr_shards).filter(|&s| s != self.inner.shard) {
            let router = self.clone();
            let req = make(shard);
            tasks.push((
                shard,
                glommio::spawn_local(async move { router.call(shard, req).await }),
            ));
        }
        let mut replies = Vec::with_capacity(tasks.len());
        for (shard, task) in tasks {
            replies.push((shard, task.await));
        }
        replies
    }

    /// Starts answering requests from other shards (and our own `call`s to ourselves) with
    /// `handler`, each request as its own local task (calls under the call permits, waits
    /// under the wait budget; see the module docs). Spawn the returned future as a local
    /// task; it ends when every peer's request channel has closed (their routers were
    /// dropped). It does not hold on to this router, so dropping every `ShardRouter` clone
    /// closes our outgoing channels and lets the peers shut down. Call once per shard; a
    /// second call's future finishes at once.
    pub fn serve<F, Fut>(&self, handler: F) -> impl Future<Output = ()> + 'static
    where
        F: Fn(Req) -> Fut + 'static,
        Fut: Future<Output = Resp> + 'static,
    {
        let handler = Rc::new(handler);
        {
            let h = handler.clone();
            let local: LocalHandler<Req, Resp> = Rc::new(move |req| Box::pin(h(req)));
            *self.inner.local.borrow_mut() = Some(local);
        }
        let receivers = std::mem::take(&mut *self.inner.req_rx.borrow_mut());
        let senders = std::mem::take(&mut *self.inner.resp_tx.borrow_mut());
        let budget = Rc::new(ServeBudget {
            call_permits: Rc::new(Semaphore::new(
                self.inner.config.max_concurrent_served.max(1) as u64,
            )),
            waits_max: self.inner.config.max_parked_waits as u64,
            stats: self.inner.stats.clone(),
        });
        let shard = self.inner.shard;
        let mut loops = Vec::new();
        for (peer, (rx, tx)) in receivers.into_iter().zip(senders).enumerate() {
            let (Some(rx), Some(tx)) = (rx, tx) else {
                continue;
            };
            let handler = handler.clone();
            let budget = budget.clone();
            loops.push(serve_peer(shard, peer, rx, tx, handler, budget));
        }
        async move {
            let tasks: Vec<_> = loops.into_iter().map(glommio::spawn_local).collect();
            for t in tasks {
                t.await;
            }
        }
    }
}

/// What a serving shard lets its peers use, all peers together.
struct ServeBudget {
    call_permits: Rc<Semaphore>,
    waits_max: u64,
    stats: Rc<RouteStats>,
}

/// Waits of one peer parked here, by call id. Dropping the sender cancels the wait.
type ParkedWaits = Rc<RefCell<HashMap<u64, LocalSender<()>>>>;

/// Takes requests from one peer off its queue and answers each in its own task.
async fn serve_peer<Req, Resp, F, Fut>(
    shard: usize,
    peer: usize,
    rx: ConnectedReceiver<ToPeer<Req>>,
    tx: ResponseSender<Resp>,
    handler: Rc<F>,
    budget: Rc<ServeBudget>,
) where
    Req: Send + 'static,
    Resp: Send + 'static,
    F: Fn(Req) -> Fut + 'static,
    Fut: Future<Output = Resp> + 'static,
{
    let parked: ParkedWaits = Rc::new(RefCell::new(HashMap::new()));
    while let Some(msg) = rx.recv().await {
        match msg {
            ToPeer::Call(id, req) => {
                // Bound the work taken from peers; while saturated the queues fill and
                // callers wait.
                let Ok(permit) = budget.call_permits.acquire_static_permit(1).await else {
                    break; // ok: the semaphore is never closed
                };
                let fut = handler(req);
                let tx = tx.clone();
                glommio::spawn_local(async move {
                    let resp = fut.await;
                    drop(permit);
                    respond(shard, peer, &tx, FromPeer::Answer(id, resp)).await;
                })
                .detach();
            }
            ToPeer::Wait(id, req) => {
                let stats = &budget.stats;
                if stats.waits_parked.get() >= budget.waits_max {
                    // Never queue a wait: the caller goes on without it.
                    stats.waits_refused.set(stats.waits_refused.get() + 1);
                    let tx = tx.clone();
                    glommio::spawn_local(async move {
                        respond(shard, peer, &tx, FromPeer::WaitRefused(id)).await;
                    })
                    .detach();
                    continue;
                }
                let (cancel_tx, cancel_rx) = local_channel::new_bounded::<()>(1);
                parked.borrow_mut().insert(id, cancel_tx);
                let parked_wait = ParkedWait::new(stats.clone(), parked.clone(), id);
                let fut = handler(req);
                let tx = tx.clone();
                glommio::spawn_local(async move {
                    let answered = futures_lite::future::or(async { Some(fut.await) }, async {
                        // Resolves with None once `Cancel` dropped the sender.
                        let _ = cancel_rx.recv().await;
                        None
                    })
                    .await;
                    // Not parked any more, even while the answer waits for queue room.
                    drop(parked_wait);
                    if let Some(resp) = answered {
                        respond(shard, peer, &tx, FromPeer::Answer(id, resp)).await;
                    }
                })
                .detach();
            }
            ToPeer::Cancel(id) => {
                let cancelled = parked.borrow_mut().remove(&id);
                if cancelled.is_some() {
                    let stats = &budget.stats;
                    stats.waits_cancelled.set(stats.waits_cancelled.get() + 1);
                }
                // Else the wait had answered already; its answer is discarded by the caller.
            }
        }
    }
    // The peer is gone: nobody will read the answers of waits still parked.
    parked.borrow_mut().clear();
    debug!(shard, peer, "request channel closed");
}

async fn respond<Resp: Send + 'static>(
    shard: usize,
    peer: usize,
    tx: &ResponseSender<Resp>,
    msg: FromPeer<Resp>,
) {
    if tx.send(msg).await.is_err() {
        debug!(shard, peer, "caller's response channel closed");
    }
}

/// One wait counted in [`RouteStats::waits_parked`] from its arrival until its task ends
/// (answered or cancelled); its cancel entry goes with it.
struct ParkedWait {
    stats: Rc<RouteStats>,
    parked: ParkedWaits,
    id: u64,
}

impl ParkedWait {
    fn new(stats: Rc<RouteStats>, parked: ParkedWaits, id: u64) -> ParkedWait {
        stats.waits_parked.set(stats.waits_parked.get() + 1);
        ParkedWait { stats, parked, id }
    }
}

impl Drop for ParkedWait {
    fn drop(&mut self) {
        self.parked.borrow_mut().remove(&self.id);
        let n = self.stats.waits_parked.get();
        debug_assert!(n > 0, "parked wait count underflow");
        self.stats.waits_parked.set(n.saturating_sub(1));
    }
}

/// Calls waiting for an answer, keyed by call id.
struct PendingCalls<T> {
    /// call id -> (peer shard, answer slot)
    calls: RefCell<HashMap<u64, (usize, SlotRef<T>)>>,
}

impl<T> Default for PendingCalls<T> {
    fn default() -> Self {
        Self {
            calls: RefCell::new(HashMap::new()),
        }
    }
}

struct Slot<T> {
    value: Option<T>,
    closed: bool,
    waker: Option<Waker>,
}

impl<T> PendingCalls<T> {
    fn register(&self, id: u64, peer: usize) -> Answer<T> {
        let slot = Rc::new(RefCell::new(Slot {
            value: None,
            closed: false,
            waker: None,
        }));
        self.calls.borrow_mut().insert(id, (peer, slot.clone()));
        Answer { slot }
    }

    /// Delivers an answer; false when nobody waits for it any more.
    fn complete(&self, id: u64, value: T) -> bool {
        let Some((_, slot)) = self.calls.borrow_mut().remove(&id) else {
            return false;
        };
        let waker = {
            let mut s = slot.borrow_mut();
            s.value = Some(value);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Forgets a call; true when it was still waiting for its answer.
    fn remove(&self, id: u64) -> bool {
        self.calls.borrow_mut().remove(&id).is_some()
    }

    /// Fails every call waiting on `peer` (its channel closed).
    fn fail_peer(&self, peer: usize) {
        let mut failed = Vec::new();
        self.calls.borrow_mut().retain(|_, (p, slot)| {
            if *p == peer {
                failed.push(slot.clone());
                false
            } else {
                true
            }
        });
        for slot in failed {
            let waker = {
                let mut s = slot.borrow_mut();
                s.closed = true;
                s.waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

/// Forgets a call whose future is dropped, and cancels it on the peer when it is a wait
/// the peer has and has not answered yet.
struct PendingGuard<'a, Req: Send + 'static, Resp: Send + 'static> {
    inner: &'a Inner<Req, Resp>,
    id: u64,
    shard: usize,
    cancel_on_drop: bool,
}

impl<Req: Send + 'static, Resp: Send + 'static> Drop for PendingGuard<'_, Req, Resp> {
    fn drop(&mut self) {
        let unanswered = self.inner.pending.remove(self.id);
        if unanswered && self.cancel_on_drop {
            self.inner.send_cancel(self.shard, self.id);
        }
    }
}

/// The receiving end of one call: `Some(answer)`, or `None` when the peer went away.
struct Answer<T> {
    slot: Rc<RefCell<Slot<T>>>,
}

impl<T> Future for Answer<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut s = self.slot.borrow_mut();
        if let Some(v) = s.value.take() {
            return Poll::Ready(Some(v));
        }
        if s.closed {
            return Poll::Ready(None);
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
