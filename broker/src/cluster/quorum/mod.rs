//! The controller quorum: the metadata log replicated by Raft (openraft), the active
//! controller's duties, and this node's life as a broker in the cluster.
//!
//! Owns:
//! - the Raft instance of this node (a voter when `--controller-quorum` names it, else a
//!   learner the active controller adds when the node registers; without a quorum list the
//!   node is a quorum of one), its durable state ([`store`]) and its network ([`rpc`], on the
//!   controller listener `--controller-addr`);
//! - the active controller (the Raft leader): it decides metadata requests with the I/O-free
//!   [`crate::cluster::controller::Controller`] on the current image, writes the decision to
//!   the log as [`MetaRecord`]s and answers once they are applied; it bootstraps the cluster
//!   (migrating a single-node data dir's metadata once), registers brokers, tracks their
//!   heartbeats and fences those that miss `broker.session.timeout.ms`;
//! - this node's broker lifecycle: register with the active controller, heartbeat, and on
//!   shutdown ask to be fenced (controlled shutdown) before the process exits;
//! - [`QuorumHandle`]: what the shards use — submit a controller request from any node (it is
//!   forwarded to the active controller), and receive every new image.
//!
//! Invariants: only the Raft leader decides, one request at a time, on an image that includes
//! every committed entry (`ensure_linearizable` before deciding); a decision is answered only
//! once its records are committed and applied here; a node never serves a metadata change it
//! cannot commit — without a majority, requests fail with a retriable error after
//! `controller_request_timeout_ms` while the shards keep the last image; a node whose data dir
//! belongs to another node id or another cluster, or whose quorum list disagrees with the
//! cluster's, refuses to start.
//!
//! Runs on: its own thread ("controller") with a current-thread tokio runtime — openraft 0.9
//! needs tokio — never on a shard core's executor. Shards talk to it only through
//! [`QuorumHandle`] (tokio channels, which any executor can await).

pub mod rpc;
pub mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use kafka_protocol::messages::broker_registration_request::Listener;
use kafka_protocol::messages::{
    BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerId, BrokerRegistrationRequest,
    BrokerRegistrationResponse,
};
use kafka_protocol::protocol::StrBytes;
use openraft::error::{
    ClientWriteError, InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft, ServerState};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tracing::{error, info, warn};
use uuid::Uuid;

use self::rpc::{Peer, PrivateApi, BROKER_HEARTBEAT_KEY, BROKER_REGISTRATION_KEY};
use self::store::{LogStore, StateMachine};
use crate::cluster::controller::{
    Controller, ControllerConfig, ControllerReq, ControllerResp, RequestKind,
};
use crate::cluster::image::{diff, MetaRecord, NodeView};
use crate::cluster::meta::{
    BrokerInfo, LegacyImage, LegacyMeta, MetaSnapshot, PartitionAssignment,
};

pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The controller quorum's Raft types.
    pub TypeConfig:
        D = MetaCommand,
        R = (),
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// One entry of the metadata log: records applied together.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetaCommand {
    pub records: Vec<MetaRecord>,
}

/// Kafka error codes used on the controller listener's Kafka messages.
mod code {
    pub const NONE: i16 = 0;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const NOT_CONTROLLER: i16 = 41;
    pub const STALE_BROKER_EPOCH: i16 = 77;
    pub const DUPLICATE_BROKER_REGISTRATION: i16 = 101;
    pub const INCONSISTENT_CLUSTER_ID: i16 = 104;
}

/// The node's settings for the quorum (from `BrokerConfig`).
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    pub node_id: i32,
    /// Where the controller listener binds (`--controller-addr`); none for a lone node.
    pub controller_addr: Option<SocketAddr>,
    /// The voters (`--controller-quorum`); empty: this node alone.
    pub voters: BTreeMap<i32, String>,
    /// Where clients reach this node's Kafka listener.
    pub advertised_host: String,
    pub advertised_port: i32,
    pub rack: Option<String>,
    pub data_dir: PathBuf,
    /// `broker.session.timeout.ms`: a broker silent this long is fenced.
    pub session_timeout: Duration,
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `controller_request_timeout_ms`: how long a metadata change may wait for a controller.
    pub request_timeout: Duration,
    /// Raft timing: leader heartbeat and election timeout range, in ms.
    pub raft_heartbeat_ms: u64,
    pub raft_election_timeout_ms: (u64, u64),
    /// Controller decisions' settings (partition limit, producer-id block size).
    pub controller: ControllerConfig,
}

/// Why a metadata request could not be served.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
pub enum QuorumError {
    /// No active controller could commit it in time (no majority, or elections).
    #[error("no controller committed the change within {0} ms (is a majority of the controller quorum up?)")]
    Timeout(u64),
    /// This node is not (or no longer) the leader.
    #[error("not the active controller")]
    NotLeader,
    #[error("controller failed: {0}")]
    Failed(String),
}

/// A request decided by the active controller.
#[derive(Debug, Serialize, Deserialize)]
pub struct Submitted {
    pub kind: RequestKind,
    pub response: ControllerResp,
    /// The log index of the change, if it changed anything.
    pub index: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct ForwardReq {
    from: i32,
    req: ControllerReq,
}

static ACTIVE_CONTROLLER: AtomicI32 = AtomicI32::new(-1);
/// For `/metrics`: whether this node is the active controller, the metadata log offset it
/// applied, the registered and the fenced brokers in its image, leader changes it saw.
static IS_ACTIVE_CONTROLLER: AtomicBool = AtomicBool::new(false);
static METADATA_OFFSET: AtomicU64 = AtomicU64::new(0);
static REGISTERED_BROKERS: AtomicU64 = AtomicU64::new(0);
static FENCED_BROKERS: AtomicU64 = AtomicU64::new(0);
static OFFLINE_PARTITIONS: AtomicU64 = AtomicU64::new(0);
static CONTROLLER_CHANGES: AtomicU64 = AtomicU64::new(0);

/// The quorum's Prometheus lines (appended to `/metrics`).
pub fn render_metrics() -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        ));
    };
    gauge(
        "ringtail_controller_active",
        "1 if this node is the active controller (the Raft leader of the controller quorum)",
        u8::from(IS_ACTIVE_CONTROLLER.load(Ordering::Relaxed)).to_string(),
    );
    gauge(
        "ringtail_controller_id",
        "Broker id of the active controller as this node sees it, -1 if none",
        ACTIVE_CONTROLLER.load(Ordering::Relaxed).to_string(),
    );
    gauge(
        "ringtail_metadata_offset",
        "Index of the last metadata log entry applied on this node",
        METADATA_OFFSET.load(Ordering::Relaxed).to_string(),
    );
    gauge(
        "ringtail_brokers_registered",
        "Brokers registered in the cluster metadata",
        REGISTERED_BROKERS.load(Ordering::Relaxed).to_string(),
    );
    gauge(
        "ringtail_brokers_fenced",
        "Registered brokers that are fenced (missed their session or shut down)",
        FENCED_BROKERS.load(Ordering::Relaxed).to_string(),
    );
    gauge(
        "ringtail_partitions_offline",
        "Partitions of the cluster without a live leader",
        OFFLINE_PARTITIONS.load(Ordering::Relaxed).to_string(),
    );
    out.push_str("# HELP ringtail_controller_changes_total Active controller changes seen by this node\n# TYPE ringtail_controller_changes_total counter\n");
    out.push_str(&format!(
        "ringtail_controller_changes_total {}\n",
        CONTROLLER_CHANGES.load(Ordering::Relaxed)
    ));
    out
}

/// The broker id of the active controller as this node last saw it, or -1.
pub fn active_controller() -> i32 {
    ACTIVE_CONTROLLER.load(Ordering::Relaxed)
}

/// When this broker's last heartbeat was accepted (ms since the epoch; 0: never), and its
/// session timeout: see [`controller_session_alive`].
static LAST_HEARTBEAT_OK_MS: AtomicU64 = AtomicU64::new(0);
static SESSION_TIMEOUT_MS: AtomicU64 = AtomicU64::new(u64::MAX);

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Whether the active controller heard from this broker within its session timeout. When
/// not, the controller has probably fenced it and moved its leaderships elsewhere: a leader
/// that cannot get its writes replicated then answers NOT_LEADER_OR_FOLLOWER (clients look
/// for the new leader) rather than REQUEST_TIMED_OUT (clients retry here).
pub fn controller_session_alive() -> bool {
    let timeout = SESSION_TIMEOUT_MS.load(Ordering::Relaxed);
    timeout == u64::MAX
        || wall_ms().saturating_sub(LAST_HEARTBEAT_OK_MS.load(Ordering::Relaxed)) < timeout
}

#[derive(Default)]
struct Sessions {
    /// Last heartbeat per broker, as seen by this node while leader.
    last_seen: HashMap<i32, Instant>,
    /// When this node last became leader (every broker gets a full session from then).
    leader_since: Option<Instant>,
}

struct Shared {
    cfg: QuorumConfig,
    me: NodeId,
    raft: Raft<TypeConfig>,
    sm: StateMachine,
    controller: tokio::sync::Mutex<Controller>,
    sessions: Mutex<Sessions>,
    peers: Mutex<HashMap<String, Arc<Peer>>>,
    incarnation: Uuid,
    legacy: Mutex<Option<LegacyImage>>,
    legacy_store: LegacyMeta,
    fatal: watch::Sender<Option<String>>,
    shutting_down: AtomicBool,
    shut_down_acked: watch::Sender<bool>,
}

/// What shards hold to reach the quorum (cheap to clone, `Send`).
#[derive(Clone)]
pub struct QuorumHandle {
    shared: Arc<Shared>,
    rt: tokio::runtime::Handle,
    images: watch::Receiver<Arc<MetaSnapshot>>,
}

impl QuorumHandle {
    /// Every new image of this node (the current one first).
    pub fn images(&self) -> watch::Receiver<Arc<MetaSnapshot>> {
        self.images.clone()
    }

    /// Have the active controller decide `req`; await it from any executor.
    pub async fn submit(&self, req: ControllerReq) -> Result<Submitted, QuorumError> {
        let (tx, rx) = oneshot::channel();
        let shared = self.shared.clone();
        self.rt.spawn(async move {
            let from = shared.cfg.node_id;
            let _ = tx.send(shared.submit(from, req).await);
        });
        rx.await
            .unwrap_or_else(|_| Err(QuorumError::Failed("the controller thread stopped".into())))
    }

    /// Controlled shutdown: ask the active controller to fence this broker (it leads nothing
    /// from then on) and wait for the acknowledgement, at most `timeout`.
    pub fn controlled_shutdown_blocking(&self, timeout: Duration) -> bool {
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        let mut acked = self.shared.shut_down_acked.subscribe();
        self.rt.block_on(async move {
            matches!(
                tokio::time::timeout(timeout, acked.wait_for(|a| *a)).await,
                Ok(Ok(_))
            )
        })
    }
}

/// Start the quorum on its own thread; returns once this node has an image it can serve
/// (the cluster bootstrapped and this broker registered in it), or why it cannot start.
pub fn start(
    cfg: QuorumConfig,
    view: NodeView,
) -> anyhow::Result<(QuorumHandle, Arc<MetaSnapshot>)> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("controller".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(anyhow::anyhow!("starting the controller runtime: {e}")));
                    return;
                }
            };
            let handle = rt.handle().clone();
            rt.block_on(async move {
                match boot(cfg, view, handle).await {
                    Ok(started) => {
                        let _ = tx.send(Ok(started));
                        // Serve until the process exits.
                        std::future::pending::<()>().await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        })
        .context("starting the controller thread")?;
    let (handle, mut fatal) = rx
        .recv()
        .context("the controller thread stopped during start-up")??;
    // Wait for an image to serve, or a reason to give up.
    let started = Instant::now();
    let mut last_note = Instant::now();
    let mut images = handle.images();
    loop {
        if let Some(reason) = fatal.borrow_and_update().clone() {
            bail!("{reason}");
        }
        let image = images.borrow_and_update().clone();
        let me = image.brokers.get(&handle.shared.cfg.node_id);
        // Registered by this process: serve. Registered by an earlier run only, and no
        // controller answers: serve the last known image (a lost quorum must not keep a
        // restarted node's data offline) once the request timeout passed.
        let registered_now =
            me.is_some_and(|b| b.incarnation == handle.shared.incarnation && !b.fenced);
        let known_before = me.is_some() && started.elapsed() >= handle.shared.cfg.request_timeout;
        if !image.cluster_id.is_empty() && (registered_now || known_before) {
            info!(
                node_id = handle.shared.cfg.node_id,
                metadata_offset = image.version,
                brokers = image.brokers.len(),
                cluster_id = %image.cluster_id,
                "joined the cluster"
            );
            return Ok((handle, image));
        }
        if last_note.elapsed() >= Duration::from_secs(5) {
            last_note = Instant::now();
            info!(
                waited_s = started.elapsed().as_secs(),
                "waiting for the controller quorum (a majority of the voters must be up) to register this broker"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The node identity stored in the data dir.
#[derive(Debug, Serialize, Deserialize)]
struct NodeFile {
    node_id: i32,
    #[serde(default)]
    cluster_id: Option<String>,
}

fn node_file_path(cfg: &QuorumConfig) -> PathBuf {
    cfg.data_dir.join("meta").join("node.json")
}

fn check_node_file(cfg: &QuorumConfig) -> anyhow::Result<Option<String>> {
    let path = node_file_path(cfg);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let file: NodeFile = serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", path.display()))?;
            if file.node_id != cfg.node_id {
                bail!(
                    "the data dir {} belongs to node {}, but this node was started as node {}; start it with --node-id {} or use another data dir",
                    cfg.data_dir.display(),
                    file.node_id,
                    cfg.node_id,
                    file.node_id
                );
            }
            Ok(file.cluster_id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_node_file(cfg, None)?;
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_node_file(cfg: &QuorumConfig, cluster_id: Option<String>) -> anyhow::Result<()> {
    let path = node_file_path(cfg);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let bytes = serde_json::to_vec_pretty(&NodeFile {
        node_id: cfg.node_id,
        cluster_id,
    })?;
    store::write_atomic(&path, &bytes).with_context(|| format!("writing {}", path.display()))
}

fn node_id_of(id: i32) -> anyhow::Result<NodeId> {
    NodeId::try_from(id).map_err(|_| anyhow::anyhow!("node id {id} must not be negative"))
}

/// The voters as openraft nodes; a lone node is its own quorum.
fn voter_nodes(cfg: &QuorumConfig) -> anyhow::Result<BTreeMap<NodeId, BasicNode>> {
    if cfg.voters.is_empty() {
        let addr = cfg
            .controller_addr
            .map(|a| a.to_string())
            .unwrap_or_default();
        return Ok([(node_id_of(cfg.node_id)?, BasicNode { addr })].into());
    }
    cfg.voters
        .iter()
        .map(|(id, addr)| Ok((node_id_of(*id)?, BasicNode { addr: addr.clone() })))
        .collect()
}

async fn boot(
    cfg: QuorumConfig,
    view: NodeView,
    rt: tokio::runtime::Handle,
) -> anyhow::Result<(QuorumHandle, watch::Receiver<Option<String>>)> {
    let me = node_id_of(cfg.node_id)?;
    if !cfg.voters.is_empty()
        && !cfg.voters.contains_key(&cfg.node_id)
        && cfg.controller_addr.is_none()
    {
        bail!("node {} is not a voter of --controller-quorum, so it needs --controller-addr (the quorum reaches its learners there)", cfg.node_id);
    }
    if let Some(addr) = cfg.voters.get(&cfg.node_id) {
        if let Some(own) = cfg.controller_addr {
            if addr.parse::<SocketAddr>().ok() != Some(own) {
                bail!(
                    "--controller-quorum lists node {} at {addr}, but --controller-addr is {own}",
                    cfg.node_id
                );
            }
        } else {
            bail!(
                "node {} is a voter of --controller-quorum ({addr}) but has no --controller-addr",
                cfg.node_id
            );
        }
    }
    let stored_cluster_id = check_node_file(&cfg)?;
    let raft_dir = cfg.data_dir.join("meta").join("raft");
    let log = LogStore::open(&raft_dir).context("opening the metadata log")?;
    let sm = StateMachine::open(&raft_dir, view).context("opening the metadata snapshot")?;
    let raft_config = openraft::Config {
        cluster_name: "ringtail".into(),
        heartbeat_interval: cfg.raft_heartbeat_ms,
        election_timeout_min: cfg.raft_election_timeout_ms.0,
        election_timeout_max: cfg.raft_election_timeout_ms.1,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(1000),
        max_in_snapshot_log_to_keep: 200,
        ..Default::default()
    }
    .validate()
    .context("controller quorum timing")?;
    let network = Network {
        peers: Arc::new(Mutex::new(HashMap::new())),
        timeout: Duration::from_millis(cfg.raft_election_timeout_ms.0.max(500)),
    };
    let raft = Raft::new(me, Arc::new(raft_config), network, log, sm.clone())
        .await
        .context("starting Raft")?;

    // The quorum list must agree with the one the cluster was formed with.
    let wanted = voter_nodes(&cfg)?;
    let initialized = raft.is_initialized().await.context("starting Raft")?;
    let mut metrics = raft.metrics();
    if initialized {
        // The stored membership shows in the metrics once the core has loaded it.
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            metrics.wait_for(|m| m.membership_config.voter_ids().next().is_some()),
        )
        .await;
    }
    let membership = metrics.borrow().membership_config.clone();
    let stored_voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    if !initialized {
        if wanted.contains_key(&me) {
            match raft.initialize(wanted.clone()).await {
                Ok(()) => {
                    info!(voters = ?wanted.keys().collect::<Vec<_>>(), "formed the controller quorum")
                }
                Err(e) => info!(error = %e, "controller quorum already formed elsewhere"),
            }
        }
    } else if !cfg.voters.is_empty() || stored_voters.len() > 1 {
        let stored: BTreeMap<NodeId, String> = membership
            .membership()
            .nodes()
            .filter(|(id, _)| stored_voters.contains(id))
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        let flags: BTreeMap<NodeId, String> =
            wanted.iter().map(|(id, n)| (*id, n.addr.clone())).collect();
        if stored != flags {
            bail!(
                "--controller-quorum disagrees with the cluster's quorum: the cluster has {}, the flags say {}",
                fmt_voters(&stored),
                fmt_voters(&flags)
            );
        }
    }

    let (fatal_tx, fatal_rx) = watch::channel(None);
    let (acked_tx, _) = watch::channel(false);
    let legacy_store = LegacyMeta::new(&cfg.data_dir);
    let legacy = legacy_store.read()?;
    let images = sm.subscribe();
    let shared = Arc::new(Shared {
        controller: tokio::sync::Mutex::new(Controller::new(cfg.controller.clone())),
        cfg,
        me,
        raft,
        sm,
        sessions: Mutex::new(Sessions::default()),
        peers: Mutex::new(HashMap::new()),
        incarnation: Uuid::new_v4(),
        legacy: Mutex::new(legacy),
        legacy_store,
        fatal: fatal_tx,
        shutting_down: AtomicBool::new(false),
        shut_down_acked: acked_tx,
    });
    if let Some(addr) = shared.cfg.controller_addr {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on the controller address {addr}"))?;
        info!(%addr, "controller listener up");
        tokio::spawn(serve(listener, shared.clone()));
    }
    tokio::spawn(watch_leadership(shared.clone()));
    tokio::spawn(leader_duties(shared.clone()));
    tokio::spawn(lifecycle(shared.clone()));
    tokio::spawn(watch_cluster_id(shared.clone(), stored_cluster_id));
    Ok((QuorumHandle { shared, rt, images }, fatal_rx))
}

fn fmt_voters(v: &BTreeMap<NodeId, String>) -> String {
    v.iter()
        .map(|(id, addr)| format!("{id}@{addr}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Records the cluster id in the data dir once known, and stops the node if the cluster it
/// follows is not the one its data belongs to.
async fn watch_cluster_id(shared: Arc<Shared>, mut stored: Option<String>) {
    let mut images = shared.sm.subscribe();
    loop {
        let cluster_id = {
            let image = images.borrow_and_update();
            METADATA_OFFSET.store(image.version, Ordering::Relaxed);
            REGISTERED_BROKERS.store(image.brokers.len() as u64, Ordering::Relaxed);
            FENCED_BROKERS.store(
                image.brokers.values().filter(|b| b.fenced).count() as u64,
                Ordering::Relaxed,
            );
            let offline = image
                .topics
                .values()
                .flat_map(|t| t.assignments.iter())
                .filter(|a| image.live_broker(a.leader).is_none())
                .count();
            OFFLINE_PARTITIONS.store(offline as u64, Ordering::Relaxed);
            image.cluster_id.clone()
        };
        if !cluster_id.is_empty() {
            match &stored {
                Some(s) if *s != cluster_id => {
                    let _ = shared.fatal.send(Some(format!(
                        "the data dir {} belongs to cluster {s}, but the controller quorum is cluster {cluster_id}; use an empty data dir to join this cluster",
                        shared.cfg.data_dir.display()
                    )));
                    error!(stored = %s, cluster = %cluster_id, "data dir from another cluster; stopping");
                    let _ =
                        nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::SIGTERM);
                    return;
                }
                Some(_) => {}
                None => {
                    if let Err(e) = write_node_file(&shared.cfg, Some(cluster_id.clone())) {
                        warn!(error = %e, "cannot record the cluster id in the data dir");
                    }
                    stored = Some(cluster_id);
                }
            }
        }
        if images.changed().await.is_err() {
            return;
        }
    }
}

/// Tracks who leads: the active controller id for Metadata responses, and a fresh session
/// for every broker when this node becomes leader.
async fn watch_leadership(shared: Arc<Shared>) {
    let mut metrics = shared.raft.metrics();
    let mut was_leader = false;
    loop {
        let (leader, is_leader, fatal) = {
            let m = metrics.borrow_and_update();
            (
                m.current_leader,
                m.state == ServerState::Leader,
                m.running_state.as_ref().err().map(|e| e.to_string()),
            )
        };
        if let Some(fatal) = fatal {
            // The Raft core stopped (a metadata log write failed: a full or broken disk) and
            // does not restart: this node would serve a frozen image and the quorum would run
            // a voter short without saying so. Stop the broker instead; a supervisor (the
            // systemd unit) restarts it once the disk is fixed, and it recovers from its log.
            let reason = format!("the controller quorum member stopped: {fatal}");
            error!("{reason}; shutting down");
            let _ = shared.fatal.send(Some(reason));
            let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::SIGTERM);
            return;
        }
        let id = leader.and_then(|l| i32::try_from(l).ok()).unwrap_or(-1);
        if ACTIVE_CONTROLLER.swap(id, Ordering::Relaxed) != id && id >= 0 {
            CONTROLLER_CHANGES.fetch_add(1, Ordering::Relaxed);
        }
        IS_ACTIVE_CONTROLLER.store(is_leader, Ordering::Relaxed);
        if is_leader && !was_leader {
            info!(node_id = shared.me, "became the active controller");
            let mut s = shared.sessions.lock().unwrap_or_else(|p| p.into_inner());
            s.last_seen.clear();
            s.leader_since = Some(Instant::now());
        }
        was_leader = is_leader;
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

impl Shared {
    fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.me)
    }

    fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// The controller address of node `id`, from the quorum membership or the flags.
    fn addr_of(&self, id: NodeId) -> Option<String> {
        let m = self.raft.metrics();
        let from_membership = m
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
            .filter(|a| !a.is_empty());
        from_membership.or_else(|| {
            i32::try_from(id)
                .ok()
                .and_then(|i| self.cfg.voters.get(&i).cloned())
        })
    }

    fn peer(&self, addr: &str) -> Arc<Peer> {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers
            .entry(addr.to_string())
            .or_insert_with(|| Arc::new(Peer::new(addr.to_string())))
            .clone()
    }

    /// Wait until this node's state machine has applied `index`, at most `timeout`.
    async fn wait_applied(&self, index: u64, timeout: Duration) -> bool {
        let mut images = self.sm.subscribe();
        tokio::time::timeout(timeout, images.wait_for(|i| i.version >= index))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Write records through Raft (leader only) and wait until they are applied here.
    async fn write(&self, records: Vec<MetaRecord>) -> Result<u64, QuorumError> {
        let written = tokio::time::timeout(
            self.cfg.request_timeout,
            self.raft.client_write(MetaCommand { records }),
        )
        .await
        .map_err(|_| QuorumError::Timeout(self.cfg.request_timeout.as_millis() as u64))?;
        match written {
            Ok(resp) => {
                let index = resp.log_id.index;
                if !self.wait_applied(index, self.cfg.request_timeout).await {
                    return Err(QuorumError::Timeout(
                        self.cfg.request_timeout.as_millis() as u64
                    ));
                }
                Ok(index)
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(QuorumError::NotLeader)
            }
            Err(e) => Err(QuorumError::Failed(e.to_string())),
        }
    }

    /// Decide `req` (from broker `from`) here, as the active controller.
    async fn decide_local(&self, from: i32, req: ControllerReq) -> Result<Submitted, QuorumError> {
        let mut controller = self.controller.lock().await;
        if !self.is_leader() {
            return Err(QuorumError::NotLeader);
        }
        // Decide on an image with everything committed so far.
        match tokio::time::timeout(self.cfg.request_timeout, self.raft.ensure_linearizable()).await
        {
            Ok(Ok(Some(log_id))) => {
                if !self
                    .wait_applied(log_id.index, self.cfg.request_timeout)
                    .await
                {
                    return Err(QuorumError::Timeout(
                        self.cfg.request_timeout.as_millis() as u64
                    ));
                }
            }
            Ok(Ok(None)) => {}
            Ok(Err(_)) => return Err(QuorumError::NotLeader),
            Err(_) => {
                return Err(QuorumError::Timeout(
                    self.cfg.request_timeout.as_millis() as u64
                ))
            }
        }
        if !self.sm.is_bootstrapped() {
            return Err(QuorumError::NotLeader);
        }
        let image = if from == self.cfg.node_id {
            (*self.sm.snapshot()).clone()
        } else {
            self.sm.snapshot_for(from)
        };
        let mut decision = controller.decide(&image, req);
        let kind = decision.kind;
        let Some(next) = decision.publish.take() else {
            controller.commit(&decision, &image);
            return Ok(Submitted {
                kind,
                response: decision.response,
                index: None,
            });
        };
        let records = diff(&image, &next);
        let index = if records.is_empty() {
            None
        } else {
            Some(self.write(records).await?)
        };
        let durable = self.sm.snapshot_for(from);
        controller.commit(&decision, &durable);
        Ok(Submitted {
            kind,
            response: decision.response,
            index,
        })
    }

    /// Serve `req` from any node: decide it here when leading, else forward it to the leader;
    /// retry through elections until `request_timeout`.
    async fn submit(
        self: &Arc<Self>,
        from: i32,
        req: ControllerReq,
    ) -> Result<Submitted, QuorumError> {
        let deadline = Instant::now() + self.cfg.request_timeout;
        let timeout_ms = self.cfg.request_timeout.as_millis() as u64;
        loop {
            let attempt = match self.leader() {
                Some(l) if l == self.me => self.decide_local(from, req.clone()).await,
                Some(l) => self.forward(l, from, &req, deadline).await,
                None => Err(QuorumError::NotLeader),
            };
            match attempt {
                Ok(mut submitted) => {
                    if let Some(index) = submitted.index {
                        // Answer with this node's view of the change.
                        let left = deadline.saturating_duration_since(Instant::now());
                        if !self
                            .wait_applied(index, left.max(Duration::from_millis(100)))
                            .await
                        {
                            return Err(QuorumError::Timeout(timeout_ms));
                        }
                        let image = self.sm.snapshot();
                        if let ControllerResp::Topics(results) = &mut submitted.response {
                            for topic in results.iter_mut().flatten() {
                                if let Some(local) = image.topic(&topic.name) {
                                    if local.id == topic.id {
                                        *topic = local.clone();
                                    }
                                }
                            }
                        }
                    }
                    return Ok(submitted);
                }
                Err(QuorumError::Failed(e)) => return Err(QuorumError::Failed(e)),
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(_) => return Err(QuorumError::Timeout(timeout_ms)),
            }
        }
    }

    async fn forward(
        &self,
        leader: NodeId,
        from: i32,
        req: &ControllerReq,
        deadline: Instant,
    ) -> Result<Submitted, QuorumError> {
        let Some(addr) = self.addr_of(leader) else {
            return Err(QuorumError::NotLeader);
        };
        let body = serde_json::to_vec(&ForwardReq {
            from,
            req: req.clone(),
        })
        .map_err(|e| QuorumError::Failed(e.to_string()))?;
        let left = deadline.saturating_duration_since(Instant::now());
        let reply = self
            .peer(&addr)
            .call(PrivateApi::Forward as i16, 0, &body, left.max(Duration::from_millis(100)))
            .await
            .map_err(|e| {
                warn!(leader, error = %e, "forwarding a metadata request to the active controller failed");
                QuorumError::NotLeader
            })?;
        serde_json::from_slice::<Result<Submitted, QuorumError>>(&reply)
            .map_err(|e| QuorumError::Failed(format!("bad answer from the controller: {e}")))?
    }

    /// Bootstrap the cluster (leader only): its id, and the single-node data dir's metadata
    /// when this node has one.
    async fn bootstrap(&self) -> Result<(), QuorumError> {
        let _controller = self.controller.lock().await;
        if self.sm.is_bootstrapped() || !self.is_leader() {
            return Ok(());
        }
        let legacy = self
            .legacy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let node = self.cfg.node_id;
        let record = match &legacy {
            Some(l) => {
                info!(topics = l.topics.len(), cluster_id = %l.cluster_id, "migrating the single-node metadata into the metadata log");
                MetaRecord::Bootstrap {
                    cluster_id: l.cluster_id.clone(),
                    topics: l
                        .topics
                        .iter()
                        .map(|t| {
                            let mut t = t.clone();
                            if t.assignments.len() != usize::try_from(t.partitions).unwrap_or(0) {
                                t.assignments = (0..t.partitions)
                                    .map(|_| PartitionAssignment::new(vec![node]))
                                    .collect();
                            }
                            t
                        })
                        .collect(),
                    producer_ids_reserved_end: l.producer_ids_reserved_end,
                    cluster_configs: l.cluster_configs.clone(),
                    broker_configs: if l.this_broker_configs.is_empty() {
                        BTreeMap::new()
                    } else {
                        [(node, l.this_broker_configs.clone())].into()
                    },
                }
            }
            None => MetaRecord::Bootstrap {
                cluster_id: crate::cluster::meta::new_cluster_id(),
                topics: Vec::new(),
                producer_ids_reserved_end: 0,
                cluster_configs: BTreeMap::new(),
                broker_configs: BTreeMap::new(),
            },
        };
        self.write(vec![record]).await?;
        if legacy.is_some() {
            if let Err(e) = self.legacy_store.retire() {
                warn!(error = %e, "cannot move the migrated metadata file aside");
            }
            *self.legacy.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        info!(cluster_id = %self.sm.snapshot().cluster_id, "cluster bootstrapped");
        Ok(())
    }

    fn touch_session(&self, id: i32) {
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        s.last_seen.insert(id, Instant::now());
    }

    /// Whether broker `id` heartbeated within its session (as seen by this leader).
    fn session_alive(&self, id: i32) -> bool {
        let s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let last = s.last_seen.get(&id).copied().or(s.leader_since);
        last.is_some_and(|t| t.elapsed() < self.cfg.session_timeout)
    }

    async fn handle_registration(
        &self,
        req: BrokerRegistrationRequest,
    ) -> BrokerRegistrationResponse {
        let mut resp = BrokerRegistrationResponse::default();
        let id = req.broker_id.0;
        if !self.is_leader() {
            resp.error_code = code::NOT_CONTROLLER;
            return resp;
        }
        if !self.sm.is_bootstrapped() {
            resp.error_code = code::REQUEST_TIMED_OUT;
            return resp;
        }
        let image = self.sm.snapshot();
        if !req.cluster_id.is_empty() && req.cluster_id.as_str() != image.cluster_id {
            resp.error_code = code::INCONSISTENT_CLUSTER_ID;
            return resp;
        }
        let incarnation = req.incarnation_id;
        if let Some(b) = image.brokers.get(&id) {
            if b.incarnation == incarnation {
                resp.broker_epoch = b.epoch;
                self.touch_session(id);
                return resp;
            }
            if !b.fenced && self.session_alive(id) {
                resp.error_code = code::DUPLICATE_BROKER_REGISTRATION;
                return resp;
            }
        }
        let Some(listener) = req.listeners.first() else {
            resp.error_code = code::REQUEST_TIMED_OUT;
            return resp;
        };
        let controller_addr = req
            .listeners
            .iter()
            .find(|l| l.name.as_str() == "CONTROLLER")
            .map(|l| format!("{}:{}", l.host.as_str(), l.port));
        let info = BrokerInfo {
            id,
            host: listener.host.to_string(),
            port: i32::from(listener.port),
            rack: req.rack.as_ref().map(|r| r.to_string()),
            controller_addr: controller_addr.clone(),
            incarnation,
            epoch: 0,
            fenced: false,
        };
        let _controller = self.controller.lock().await;
        match self.write(vec![MetaRecord::RegisterBroker(info)]).await {
            Ok(index) => {
                self.touch_session(id);
                resp.broker_epoch = i64::try_from(index).unwrap_or(i64::MAX);
                info!(broker = id, epoch = resp.broker_epoch, "broker registered");
            }
            Err(e) => {
                warn!(broker = id, error = %e, "registering a broker failed");
                resp.error_code = code::REQUEST_TIMED_OUT;
                return resp;
            }
        }
        // A broker outside the voters follows the metadata log as a learner.
        if let (Some(addr), Ok(node)) = (controller_addr, NodeId::try_from(id)) {
            let known = self
                .raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .get_node(&node)
                .is_some();
            if !known {
                let raft = self.raft.clone();
                tokio::spawn(async move {
                    if let Err(e) = raft.add_learner(node, BasicNode { addr }, false).await {
                        warn!(broker = id, error = %e, "adding the broker as a metadata learner failed");
                    }
                });
            }
        }
        resp
    }

    async fn handle_heartbeat(&self, req: BrokerHeartbeatRequest) -> BrokerHeartbeatResponse {
        let mut resp = BrokerHeartbeatResponse::default();
        let id = req.broker_id.0;
        if !self.is_leader() {
            resp.error_code = code::NOT_CONTROLLER;
            return resp;
        }
        let image = self.sm.snapshot();
        let Some(b) = image
            .brokers
            .get(&id)
            .filter(|b| b.epoch == req.broker_epoch)
        else {
            resp.error_code = code::STALE_BROKER_EPOCH;
            return resp;
        };
        self.touch_session(id);
        resp.is_caught_up = true;
        if req.want_shut_down {
            if !b.fenced {
                let _controller = self.controller.lock().await;
                if let Err(e) = self
                    .write(vec![MetaRecord::FenceBroker { id, epoch: b.epoch }])
                    .await
                {
                    warn!(broker = id, error = %e, "controlled shutdown: fencing failed");
                    resp.error_code = code::REQUEST_TIMED_OUT;
                    return resp;
                }
                info!(broker = id, "controlled shutdown: broker fenced");
            }
            resp.is_fenced = true;
            resp.should_shut_down = true;
        } else if b.fenced {
            let _controller = self.controller.lock().await;
            if let Err(e) = self
                .write(vec![MetaRecord::UnfenceBroker { id, epoch: b.epoch }])
                .await
            {
                warn!(broker = id, error = %e, "unfencing failed");
                resp.is_fenced = true;
                return resp;
            }
            info!(broker = id, "broker unfenced");
        }
        resp
    }

    /// Fence every broker whose session expired (leader only).
    async fn expire_sessions(&self) {
        let image = self.sm.snapshot();
        for b in image.brokers.values().filter(|b| !b.fenced) {
            if self.session_alive(b.id) || !self.is_leader() {
                continue;
            }
            let _controller = self.controller.lock().await;
            match self
                .write(vec![MetaRecord::FenceBroker {
                    id: b.id,
                    epoch: b.epoch,
                }])
                .await
            {
                Ok(_) => warn!(
                    broker = b.id,
                    session_timeout_ms = self.cfg.session_timeout.as_millis() as u64,
                    "broker missed its session; fenced"
                ),
                Err(e) => warn!(broker = b.id, error = %e, "fencing an expired broker failed"),
            }
        }
    }

    /// Answer one request of the controller listener (or of this node to itself).
    async fn dispatch(
        self: &Arc<Self>,
        api_key: i16,
        version: i16,
        body: Bytes,
    ) -> Result<Vec<u8>, String> {
        let json = |v: &dyn erased::Json| v.to_json();
        match api_key {
            BROKER_REGISTRATION_KEY => {
                let req: BrokerRegistrationRequest = rpc::decode_message(body, version)?;
                let resp = self.handle_registration(req).await;
                Ok(rpc::encode_message(&resp, version)?.to_vec())
            }
            BROKER_HEARTBEAT_KEY => {
                let req: BrokerHeartbeatRequest = rpc::decode_message(body, version)?;
                let resp = self.handle_heartbeat(req).await;
                Ok(rpc::encode_message(&resp, version)?.to_vec())
            }
            key => match PrivateApi::from_key(key) {
                Some(PrivateApi::RaftAppend) => {
                    let req: AppendEntriesRequest<TypeConfig> = from_json(&body)?;
                    json(&self.raft.append_entries(req).await)
                }
                Some(PrivateApi::RaftVote) => {
                    let req: VoteRequest<NodeId> = from_json(&body)?;
                    json(&self.raft.vote(req).await)
                }
                Some(PrivateApi::RaftSnapshot) => {
                    let req: InstallSnapshotRequest<TypeConfig> = from_json(&body)?;
                    json(&self.raft.install_snapshot(req).await)
                }
                Some(PrivateApi::Forward) => {
                    let fwd: ForwardReq = from_json(&body)?;
                    let result = if self.is_leader() {
                        self.decide_local(fwd.from, fwd.req).await
                    } else {
                        Err(QuorumError::NotLeader)
                    };
                    json(&result)
                }
                None => Err(format!("unknown api key {key} on the controller listener")),
            },
        }
    }

    /// Send a Kafka message to the active controller (this node included), trying the known
    /// leader first, then every voter.
    async fn call_controller(self: &Arc<Self>, api_key: i16, body: Bytes) -> Result<Bytes, String> {
        let mut candidates: Vec<NodeId> = Vec::new();
        if let Some(l) = self.leader() {
            candidates.push(l);
        }
        for id in voter_nodes(&self.cfg).map_err(|e| e.to_string())?.keys() {
            if !candidates.contains(id) {
                candidates.push(*id);
            }
        }
        let mut last_error = String::from("no controller known");
        for id in candidates {
            let reply = if id == self.me {
                self.dispatch(api_key, 0, body.clone())
                    .await
                    .map(Bytes::from)
            } else {
                let Some(addr) = self.addr_of(id) else {
                    continue;
                };
                self.peer(&addr)
                    .call(
                        api_key,
                        0,
                        &body,
                        self.cfg.heartbeat_interval.max(Duration::from_secs(1)),
                    )
                    .await
                    .map_err(|e| e.to_string())
            };
            match reply {
                Ok(bytes) => {
                    // The error code is the first field after throttle_time_ms in both
                    // answers; NOT_CONTROLLER means "ask another".
                    if bytes.len() >= 6
                        && i16::from_be_bytes([bytes[4], bytes[5]]) == code::NOT_CONTROLLER
                    {
                        last_error = format!("node {id} is not the controller");
                        continue;
                    }
                    return Ok(bytes);
                }
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    async fn register(self: &Arc<Self>) -> Result<i64, (bool, String)> {
        let mut req = BrokerRegistrationRequest::default();
        req.broker_id = BrokerId(self.cfg.node_id);
        req.cluster_id = StrBytes::from_string(self.sm.snapshot().cluster_id.clone());
        req.incarnation_id = self.incarnation;
        let mut kafka = Listener::default();
        kafka.name = StrBytes::from_static_str("PLAINTEXT");
        kafka.host = StrBytes::from_string(self.cfg.advertised_host.clone());
        kafka.port = u16::try_from(self.cfg.advertised_port).unwrap_or(0);
        req.listeners.push(kafka);
        if let Some(addr) = self.cfg.controller_addr {
            let mut l = Listener::default();
            l.name = StrBytes::from_static_str("CONTROLLER");
            l.host = StrBytes::from_string(addr.ip().to_string());
            l.port = addr.port();
            req.listeners.push(l);
        }
        req.rack = self.cfg.rack.clone().map(StrBytes::from_string);
        let body = rpc::encode_message(&req, 0).map_err(|e| (false, e))?;
        let reply = self
            .call_controller(BROKER_REGISTRATION_KEY, body)
            .await
            .map_err(|e| (false, e))?;
        let resp: BrokerRegistrationResponse =
            rpc::decode_message(reply, 0).map_err(|e| (false, e))?;
        match resp.error_code {
            code::NONE => Ok(resp.broker_epoch),
            code::DUPLICATE_BROKER_REGISTRATION => Err((true, format!(
                "node id {} is registered by another live broker; a node id must be unique in the cluster",
                self.cfg.node_id
            ))),
            code::INCONSISTENT_CLUSTER_ID => Err((true, format!(
                "the data dir {} belongs to another cluster than the controller quorum's",
                self.cfg.data_dir.display()
            ))),
            other => Err((false, format!("registration refused with error code {other}"))),
        }
    }

    async fn heartbeat(self: &Arc<Self>, epoch: i64) -> Result<BrokerHeartbeatResponse, String> {
        let mut req = BrokerHeartbeatRequest::default();
        req.broker_id = BrokerId(self.cfg.node_id);
        req.broker_epoch = epoch;
        req.current_metadata_offset = i64::try_from(self.sm.applied_index()).unwrap_or(i64::MAX);
        req.want_shut_down = self.shutting_down.load(Ordering::SeqCst);
        let body = rpc::encode_message(&req, 0)?;
        let reply = self.call_controller(BROKER_HEARTBEAT_KEY, body).await?;
        rpc::decode_message(reply, 0)
    }
}

/// Tiny helper so `dispatch` can serialize any serde answer through one closure.
mod erased {
    pub trait Json {
        fn to_json(&self) -> Result<Vec<u8>, String>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Result<Vec<u8>, String> {
            serde_json::to_vec(self).map_err(|e| e.to_string())
        }
    }
}

fn from_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("bad request body: {e}"))
}

/// The leader's periodic work: bootstrap a new cluster, fence expired sessions.
async fn leader_duties(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut last_rebalance = Instant::now();
    loop {
        tick.tick().await;
        if !shared.is_leader() {
            last_rebalance = Instant::now();
            continue;
        }
        if !shared.sm.is_bootstrapped() {
            if let Err(e) = shared.bootstrap().await {
                warn!(error = %e, "bootstrapping the cluster failed; retrying");
            }
            continue;
        }
        shared.expire_sessions().await;
        // `auto.leader.rebalance.enable`: every `leader.imbalance.check.interval.seconds`,
        // leadership goes back to preferred replicas that are live and in sync.
        let broker = shared.sm.snapshot().broker.clone();
        let interval = Duration::from_secs(
            u64::try_from(broker.leader_imbalance_check_interval_seconds()).unwrap_or(300),
        );
        if broker.auto_leader_rebalance_enable() && last_rebalance.elapsed() >= interval {
            last_rebalance = Instant::now();
            let req = ControllerReq::ElectLeaders {
                unclean: false,
                partitions: None,
            };
            match shared.decide_local(shared.cfg.node_id, req).await {
                Ok(Submitted {
                    response: ControllerResp::Elected(results),
                    ..
                }) if !results.is_empty() => {
                    info!(
                        partitions = results.len(),
                        "leadership moved back to preferred replicas"
                    )
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "preferred leader election failed"),
            }
        }
    }
}

/// This node as a broker: register, heartbeat, controlled shutdown.
async fn lifecycle(shared: Arc<Shared>) {
    let mut epoch: Option<i64> = None;
    let mut duplicate_since: Option<Instant> = None;
    loop {
        let shutting_down = shared.shutting_down.load(Ordering::SeqCst);
        let Some(current) = epoch else {
            match shared.register().await {
                Ok(e) => {
                    info!(broker_epoch = e, "registered with the active controller");
                    epoch = Some(e);
                    duplicate_since = None;
                }
                Err((fatal, reason)) => {
                    // A restarted node waits out its previous incarnation's session before
                    // calling the id a duplicate.
                    let duplicate = fatal && reason.contains("registered by another live broker");
                    let since = *duplicate_since.get_or_insert_with(Instant::now);
                    let waited_out = since.elapsed() > shared.cfg.session_timeout * 2;
                    if fatal && (!duplicate || waited_out) {
                        error!("{reason}");
                        let _ = shared.fatal.send(Some(reason));
                        let _ = nix::sys::signal::kill(
                            nix::unistd::getpid(),
                            nix::sys::signal::SIGTERM,
                        );
                        return;
                    }
                    if !duplicate {
                        duplicate_since = None;
                    }
                    tracing::debug!(%reason, "registration not done yet; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
            continue;
        };
        match shared.heartbeat(current).await {
            Ok(resp) if resp.error_code == code::STALE_BROKER_EPOCH => epoch = None,
            Ok(resp) if resp.error_code == code::NONE => {
                SESSION_TIMEOUT_MS.store(
                    shared.cfg.session_timeout.as_millis() as u64,
                    Ordering::Relaxed,
                );
                LAST_HEARTBEAT_OK_MS.store(wall_ms(), Ordering::Relaxed);
                if shutting_down && resp.should_shut_down {
                    shared.shut_down_acked.send_replace(true);
                }
            }
            Ok(resp) => tracing::debug!(code = resp.error_code, "heartbeat refused"),
            Err(e) => tracing::debug!(error = %e, "heartbeat failed"),
        }
        let pause = if shared.shutting_down.load(Ordering::SeqCst) {
            Duration::from_millis(100)
        } else {
            shared.cfg.heartbeat_interval
        };
        tokio::time::sleep(pause).await;
    }
}

/// Serve the controller listener.
async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (mut stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "controller listener accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            loop {
                let frame = match rpc::read_frame(&mut stream).await {
                    Ok(f) => f,
                    Err(_) => return,
                };
                let header = match net::codec::parse_request_header(frame) {
                    Ok(h) => h,
                    Err(e) => {
                        warn!(%peer, error = %e, "bad frame on the controller listener; closing");
                        return;
                    }
                };
                match shared
                    .dispatch(header.api_key, header.api_version, header.body)
                    .await
                {
                    Ok(body) => {
                        let out =
                            rpc::encode_response(header.api_key, header.correlation_id, &body);
                        if stream.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        warn!(%peer, api_key = header.api_key, error = %e, "bad request on the controller listener; closing");
                        return;
                    }
                }
            }
        });
    }
}

/// openraft's network: one [`Peer`] per target node, for Raft messages only.
struct Network {
    peers: Arc<Mutex<HashMap<NodeId, Arc<Peer>>>>,
    timeout: Duration,
}

struct NetClient {
    target: NodeId,
    peer: Arc<Peer>,
    timeout: Duration,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = NetClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> NetClient {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let peer = match peers.get(&target) {
            Some(p) if p.addr() == node.addr => p.clone(),
            _ => {
                let p = Arc::new(Peer::new(node.addr.clone()));
                peers.insert(target, p.clone());
                p
            }
        };
        NetClient {
            target,
            peer,
            timeout: self.timeout,
        }
    }
}

impl NetClient {
    async fn call<Req, Resp, E>(
        &self,
        api: PrivateApi,
        req: &Req,
        option_ttl: Duration,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let body =
            serde_json::to_vec(req).map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let timeout = option_ttl.min(self.timeout.max(Duration::from_millis(200)));
        let reply = self
            .peer
            .call(api as i16, 0, &body, timeout)
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let result: Result<Resp, RaftError<NodeId, E>> = serde_json::from_slice(&reply)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for NetClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(PrivateApi::RaftAppend, &rpc, option.hard_ttl())
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(PrivateApi::RaftSnapshot, &rpc, option.hard_ttl())
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(PrivateApi::RaftVote, &rpc, option.hard_ttl())
            .await
    }
}
