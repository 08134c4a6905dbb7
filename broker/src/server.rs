//! Start-up and shutdown of a broker process.
//!
//! Order: raise the soft RLIMIT_NOFILE to the hard one -> system checks (explain what is
//! missing, don't panic) -> size glommio's io_memory from RLIMIT_MEMLOCK -> budget file
//! descriptors into the partition and connection limits (`limits`) -> lock the data dir ->
//! load metadata -> one executor per configured CPU, each: connect the cross-shard router,
//! open (recover) the partitions it owns, bind the Kafka port with SO_REUSEPORT, report
//! ready.
//!
//! Shutdown (SIGTERM/SIGINT): every shard stops accepting connections and requests (a
//! request read from now on closes its connection once earlier responses are written),
//! waits up to `shutdown_drain_ms` for the requests in flight on its connections, then closes its
//! partitions `shutdown_close_concurrency` at a time (each flushes, fsyncs, seals and
//! checkpoints through `storage::PartitionLog::close`); the process exits 0 once every shard
//! is done. A watchdog exits with status 1 after `shutdown_timeout_ms`; a second signal
//! exits at once with status [`SECOND_SIGNAL_EXIT_CODE`] (what is not closed is recovered
//! at the next start, as after a crash).

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use glommio::{LocalExecutorBuilder, Placement};
use tracing::{error, info, warn};

use crate::cluster::controller::ControllerConfig;
use crate::cluster::image::NodeView;
use crate::cluster::meta::MetaSnapshot;
use crate::cluster::quorum::{QuorumConfig, QuorumHandle};
use crate::config::BrokerConfig;
use crate::coordinator::group::OFFSETS_TOPIC;
use crate::kafka::KafkaHandler;
use crate::shard::controller_shell::ControllerShell;
use crate::shard::{Shard, ShardReq, ShardResp, RETENTION_CHECK_INTERVAL_MS};

/// How long I/O buffers stay free before they are given back to the system (a burst's
/// buffers go 10-20 s after it ends; see `storage::dma_alloc::trim`).
const IO_BUFFER_TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// What glommio gets per executor when memlock is no constraint (its own default is 10 MiB).
const IO_MEMORY_WANTED_BYTES: usize = 10 << 20;
/// How often an idle shard looks at the shutdown flag. Cheap: one timer wake-up.
const SHUTDOWN_POLL_MS: u64 = 200;
/// How often a shutting-down shard looks whether its requests in flight are done.
const SHUTDOWN_DRAIN_POLL_MS: u64 = 10;

/// How long a listener found on the Kafka port may take to go away before start-up fails.
const PORT_PROBE_MS: u64 = 5_000;
/// Exit status when a second SIGTERM/SIGINT cuts a shutdown short (128 + SIGINT, what a
/// shell reports for an interrupted program).
pub const SECOND_SIGNAL_EXIT_CODE: i32 = 130;

static SHUTDOWN: AtomicBool = AtomicBool::new(false);

/// Whether the broker is shutting down (background loops stop).
pub fn shutting_down() -> bool {
    SHUTDOWN.load(Ordering::SeqCst)
}
/// Set when a shard could not start or stopped on an error: the process must exit non-zero.
static SHARD_FAILED: AtomicBool = AtomicBool::new(false);
/// Shards that bound the Kafka port (the start-up barrier).
static BOUND_SHARDS: AtomicUsize = AtomicUsize::new(0);

/// Run the broker until SIGTERM/SIGINT. Returns an error with an operator-facing explanation
/// when the machine lacks something the broker needs.
pub fn run(mut config: BrokerConfig) -> anyhow::Result<()> {
    let shards = config.shards();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create the data dir {}", config.data_dir.display()))?;
    raise_nofile_limit();
    let mut fatal = Vec::new();
    for check in tuning::startup_checks(&config.data_dir, shards) {
        match check.status {
            tuning::Status::Ok => info!(check = check.name, "{}", check.detail),
            tuning::Status::Warn => {
                warn!(check = check.name, fix = ?check.fix, "{}", check.detail)
            }
            tuning::Status::Fail => {
                error!(check = check.name, fix = ?check.fix, "{}", check.detail);
                fatal.push(format!(
                    "{}: {}{}",
                    check.name,
                    check.detail,
                    check
                        .fix
                        .map(|f| format!(" (fix: {f})"))
                        .unwrap_or_default()
                ));
            }
        }
    }
    if !fatal.is_empty() {
        bail!(
            "this machine cannot run Ringtail:\n  {}",
            fatal.join("\n  ")
        );
    }
    let io_plan = tuning::plan_io_memory(shards, IO_MEMORY_WANTED_BYTES)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    info!(
        io_memory_bytes = io_plan.io_memory_bytes,
        "{}", io_plan.explanation
    );

    apply_resource_plan(&mut config);

    let _lock = lock_data_dir(&config)?;
    check_kafka_port_free(&config)?;
    let quorum_config = QuorumConfig {
        node_id: config.node_id,
        controller_addr: config.controller_addr,
        voters: config.controller_quorum.clone(),
        advertised_host: config.advertised_host.clone(),
        advertised_port: config.advertised_port,
        rack: config.rack.clone(),
        data_dir: config.data_dir.clone(),
        session_timeout: Duration::from_millis(config.broker_session_timeout_ms),
        heartbeat_interval: Duration::from_millis(config.broker_heartbeat_interval_ms),
        request_timeout: Duration::from_millis(config.controller_request_timeout_ms),
        // A lone node elects itself quickly; a real quorum leaves room for a loaded machine.
        raft_heartbeat_ms: if config.controller_quorum.len() > 1 {
            100
        } else {
            50
        },
        raft_election_timeout_ms: if config.controller_quorum.len() > 1 {
            (1000, 2000)
        } else {
            (150, 300)
        },
        controller: ControllerConfig::new(config.partition_limit.clone()),
    };
    let view = NodeView {
        node_id: config.node_id,
        shards,
        statics: config.kafka.clone(),
    };
    // Before any thread starts (the controller thread and the admin endpoint's too): every
    // thread inherits the blocked set, so SIGTERM/SIGINT reach only the thread that waits for
    // them with `sigwait` (a thread that did not block them took a second signal and died).
    block_shutdown_signals()?;
    let (quorum, snapshot) = crate::cluster::quorum::start(quorum_config, view)?;
    info!(
        cluster_id = %snapshot.cluster_id,
        topics = snapshot.topics.len(),
        shards,
        cpus = ?config.shard_cpus,
        data_dir = %config.data_dir.display(),
        "starting"
    );

    let ready = Arc::new(AtomicUsize::new(0));
    let metrics =
        crate::ops::metrics::Metrics::with_label_sets_max(shards, config.metrics_label_sets_max);
    if let Some(addr) = config.admin_addr {
        crate::ops::admin_http::start(
            addr,
            crate::ops::admin_http::AdminState {
                ready_shards: ready.clone(),
                shards,
                metrics: metrics.clone(),
            },
        )?;
    }

    let config = Arc::new(config);
    let endpoints = net::route::build::<ShardReq, ShardResp>(shards, config.cross_shard);
    // The controller shell is built inside shard 0's executor: it holds thread-local
    // primitives and shard 0's router.
    let mut controller_parts = Some(quorum.clone());
    let mut handles = Vec::new();
    for (endpoint, cpu) in endpoints.into_iter().zip(config.shard_cpus.clone()) {
        let id = endpoint.shard_id();
        let config = config.clone();
        let snapshot = snapshot.clone();
        let ready = ready.clone();
        let metrics = metrics.clone();
        let controller_parts = if id == 0 {
            controller_parts.take()
        } else {
            None
        };
        // Several blocking threads on the shard's CPU: index and checkpoint writes wait on
        // fsync, and with one thread (glommio's default) every such wait queued behind the
        // previous one (shutdown with thousands of partitions took tens of seconds).
        let blocking_cpus = glommio::CpuSet::online()
            .map_err(|e| anyhow::anyhow!("listing online CPUs: {e}"))?
            .filter(|l| l.cpu == cpu);
        let mut builder = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("shard-{id}"))
            .io_memory(io_plan.io_memory_bytes)
            .blocking_thread_pool_placement(glommio::PoolPlacement::Custom(vec![
                blocking_cpus;
                config.blocking_threads_per_shard
            ]));
        if config.idle_poll_us > 0 {
            builder =
                builder.spin_before_park(std::time::Duration::from_micros(config.idle_poll_us));
        }
        let handle = builder
            .spawn(move || async move {
                let router = endpoint.connect().await;
                let controller = controller_parts.map(|quorum| {
                    ControllerShell::new(
                        router.clone(),
                        quorum,
                        &snapshot,
                        Duration::from_millis(config.controller_ack_timeout_ms),
                    )
                });
                if let Err(e) =
                    shard_main(id, config, router, snapshot, controller, ready, metrics).await
                {
                    error!(shard = id, "shard failed: {e:#}");
                    SHARD_FAILED.store(true, Ordering::SeqCst);
                    SHUTDOWN.store(true, Ordering::SeqCst);
                    // Wake the signal-waiting main thread so the process exits.
                    let _ =
                        nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::SIGTERM);
                }
            })
            .map_err(|e| {
                anyhow::anyhow!("starting the executor of shard {id} on CPU {cpu}: {e}")
            })?;
        // A shard whose thread dies (a panic in one of its tasks) must stop the broker:
        // otherwise the process keeps its listening socket and connections open while
        // nothing reads them, and every client hangs. The watcher joins the executor and,
        // unless a shutdown is already under way, starts one.
        let watcher = std::thread::Builder::new()
            .name(format!("shard-{id}-watch"))
            .spawn(move || {
                let result = handle.join();
                if let Err(e) = &result {
                    error!(
                        shard = id,
                        "shard thread ended abnormally: {e}; stopping the broker"
                    );
                    SHARD_FAILED.store(true, Ordering::SeqCst);
                    if !SHUTDOWN.swap(true, Ordering::SeqCst) {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::getpid(),
                            nix::sys::signal::SIGTERM,
                        );
                    }
                }
                result.map(|_| ()).map_err(|e| e.to_string())
            })
            .context("starting a shard watcher thread")?;
        handles.push(watcher);
    }

    wait_for_shutdown_signal();
    controlled_shutdown(&quorum, &config);
    let started = std::time::Instant::now();
    let timeout_ms = config.shutdown.timeout_ms;
    info!(
        timeout_ms,
        "shutting down: no new connections, finishing requests in flight, closing partitions"
    );
    SHUTDOWN.store(true, Ordering::SeqCst);
    std::thread::Builder::new()
        .name("shutdown-watchdog".into())
        .spawn(move || {
            std::thread::sleep(Duration::from_millis(timeout_ms));
            error!("shutdown did not finish within shutdown_timeout_ms = {timeout_ms}; exiting");
            std::process::exit(1);
        })
        .context("starting the shutdown watchdog")?;
    // The signals stay blocked in every thread: this one takes the next.
    std::thread::Builder::new()
        .name("second-signal".into())
        .spawn(|| {
            wait_for_shutdown_signal();
            error!("second signal during shutdown: exiting now (unclosed partitions are recovered at the next start)");
            std::process::exit(SECOND_SIGNAL_EXIT_CODE);
        })
        .context("starting the second-signal thread")?;
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("shard ended with an error: {e}"),
            Err(_) => warn!("a shard watcher thread panicked"),
        }
    }
    if SHARD_FAILED.load(Ordering::SeqCst) {
        bail!("a shard failed (see the error above); the broker stopped");
    }
    info!(took_ms = started.elapsed().as_millis() as u64, "stopped");
    Ok(())
}

/// Kafka's controlled shutdown: the active controller fences this broker, so its partitions
/// get other leaders (or go offline, for single-replica ones) before it stops serving.
/// Bounded: without a controller the broker stops anyway.
fn controlled_shutdown(quorum: &QuorumHandle, config: &BrokerConfig) {
    let bound = Duration::from_millis(config.broker_session_timeout_ms.min(5_000));
    if quorum.controlled_shutdown_blocking(bound) {
        info!("controlled shutdown: the controller moved leadership away");
    } else {
        warn!(
            waited_ms = bound.as_millis() as u64,
            "controlled shutdown: no answer from the controller; stopping anyway"
        );
    }
}

/// Every partition segment and every client connection is a descriptor: run with the hard
/// `RLIMIT_NOFILE`, not the soft one (often 1024), and say so.
fn raise_nofile_limit() {
    let fmt = |v: Option<u64>| v.map_or("unlimited".to_string(), |n| n.to_string());
    match tuning::raise_nofile_soft_limit() {
        Ok(change) if change.changed() => info!(
            "raised the soft RLIMIT_NOFILE from {} to the hard limit {}",
            fmt(change.before.soft),
            fmt(change.after.soft)
        ),
        Ok(change) => info!(
            "RLIMIT_NOFILE soft limit {} is already the hard limit",
            fmt(change.after.soft)
        ),
        Err(e) => {
            warn!(error = %e, "cannot raise the soft RLIMIT_NOFILE; running with it as it is")
        }
    }
}

/// Folds the descriptor budget into the partition and connection limits (see
/// [`crate::cluster::limits::plan`]) and logs the outcome.
fn apply_resource_plan(config: &mut BrokerConfig) {
    let nofile = match tuning::nofile_limit() {
        Ok(limit) => limit.soft,
        Err(e) => {
            warn!(error = %e, "cannot read RLIMIT_NOFILE; partition and connection limits are the configured ones");
            return;
        }
    };
    let plan = crate::cluster::limits::plan(
        nofile,
        config.shards(),
        config.partition_limit.configured,
        config.max_connections_per_shard,
    );
    if plan.partitions.max_per_shard() < config.partition_limit.configured
        || plan.connections_per_shard < config.max_connections_per_shard
    {
        warn!(
            partitions_per_shard = plan.partitions.max_per_shard(),
            connections_per_shard = plan.connections_per_shard,
            "{} (raise the hard RLIMIT_NOFILE to allow more)",
            plan.explanation
        );
    } else {
        info!(
            partitions_per_shard = plan.partitions.max_per_shard(),
            connections_per_shard = plan.connections_per_shard,
            "{}",
            plan.explanation
        );
    }
    config.partition_limit = plan.partitions;
    config.max_connections_per_shard = plan.connections_per_shard;
}

async fn shard_main(
    id: usize,
    config: Arc<BrokerConfig>,
    router: crate::shard::Router,
    snapshot: Arc<MetaSnapshot>,
    controller: Option<ControllerShell>,
    ready: Arc<AtomicUsize>,
    metrics: Arc<crate::ops::metrics::Metrics>,
) -> anyhow::Result<()> {
    storage::set_shard_cache_bytes(config.batch_cache_bytes_per_shard);
    storage::set_shard_read_ahead_bytes(config.read_ahead_bytes_per_shard);
    let shard = Rc::new(Shard::new(
        id,
        config.clone(),
        router,
        snapshot.clone(),
        controller,
        ready,
        metrics,
    ));
    let serving = shard.clone();
    glommio::spawn_local(async move {
        let handler_shard = serving.clone();
        serving
            .router
            .serve(move |req| {
                let shard = handler_shard.clone();
                async move { shard.serve(req).await }
            })
            .await;
    })
    .detach();

    let listener = net::conn::Listener::bind(config.kafka_addr, id)
        .with_context(|| {
            format!(
                "cannot listen on --kafka-addr {} (shard {id})",
                config.kafka_addr
            )
        })?
        .with_idle_timeout(Some(config.kafka.connections_max_idle()));
    // Start-up barrier: no shard talks to another before every shard is up, so a shard
    // that failed to start cannot leave the others waiting on it forever.
    BOUND_SHARDS.fetch_add(1, Ordering::SeqCst);
    while BOUND_SHARDS.load(Ordering::SeqCst) < config.shards() {
        if SHARD_FAILED.load(Ordering::SeqCst) {
            return Ok(());
        }
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    shard.apply_meta(snapshot).await;
    if id == 0 {
        let publisher = shard.clone();
        glommio::spawn_local(async move {
            if let Some(controller) = &publisher.controller {
                controller.run_publisher().await;
            }
        })
        .detach();
    }
    info!(
        shard = id,
        partitions = shard.partition_count(),
        "partitions recovered"
    );
    if shard.controller.is_some() {
        if config.controller_quorum.len() > 1 {
            // It may wait for the other nodes: do not hold the listener back meanwhile.
            let s = shard.clone();
            glommio::spawn_local(async move { ensure_offsets_topic(&s).await }).detach();
        } else {
            ensure_offsets_topic(&shard).await;
        }
    }

    let handler = Rc::new(KafkaHandler::new(shard.clone()));
    let limits = net::conn::ConnLimits {
        max_frame_bytes: config.kafka.socket_request_max_bytes(),
        max_in_flight: config.max_in_flight_per_connection,
    };
    let max_connections = config.max_connections_per_shard;
    // Shard-local state for `/metrics`, refreshed once a second.
    let stats = listener.stats();
    let reporter = shard.clone();
    let route_stats = shard.router.stats();
    glommio::spawn_local(async move {
        loop {
            reporter
                .metrics()
                .record_shard_state(crate::ops::metrics::ShardState {
                    connections_active: stats.active.get() as u64,
                    connections_accepted: stats.accepted_total.get(),
                    connections_rejected: stats.rejected_total.get(),
                    connections_moved_in: stats.moved_in_total.get(),
                    batch_cache_bytes: storage::shard_cache_bytes() as u64,
                    read_ahead_bytes: storage::shard_read_ahead_bytes() as u64,
                    read_ahead_hits: storage::shard_read_ahead_hits(),
                    cross_shard_waits_parked: route_stats.waits_parked(),
                    cross_shard_waits_refused: route_stats.waits_refused_total(),
                    cross_shard_waits_cancelled: route_stats.waits_cancelled_total(),
                    log_write_times: storage::iotime::shard_write_times(),
                    log_fsync_times: storage::iotime::shard_fsync_times(),
                });
            reporter.metrics().publish_sample(reporter.metrics_sample());
            glommio::timer::sleep(Duration::from_secs(1)).await;
        }
    })
    .detach();
    if id == 0 {
        // The I/O buffer allocator is process-wide: one shard gives back what stayed idle.
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(IO_BUFFER_TRIM_INTERVAL).await;
                let released = storage::dma_alloc::trim();
                if released > 0 {
                    info!(
                        released_mib = released >> 20,
                        "gave back I/O buffers idle for {}s",
                        IO_BUFFER_TRIM_INTERVAL.as_secs()
                    );
                }
            }
        })
        .detach();
    }
    let home = Rc::new(listener.home(handler.clone(), limits, max_connections));
    let adopter = Rc::downgrade(&home);
    shard.set_conn_home(Box::new(move |conn| match adopter.upgrade() {
        Some(home) => home.adopt(conn),
        None => Err(conn),
    }));
    let accepting = glommio::spawn_local(async move {
        if let Err(e) = listener.serve_home(home).await {
            error!(shard = id, error = %e, "listener stopped");
        }
    })
    .detach();
    shard.mark_ready();

    // Replication: ISR checks, role retries, the high-watermark checkpoint.
    glommio::spawn_local(shard.clone().run_replication()).detach();

    let retention_shard = shard.clone();
    // `log.retention.check.interval.ms` (read-only in Kafka too).
    let retention_check_interval = Duration::from_millis(
        u64::try_from(config.kafka.log_retention_check_interval_ms())
            .unwrap_or(RETENTION_CHECK_INTERVAL_MS), // ok: validated >= 1
    );
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(retention_check_interval).await;
            retention_shard.retention_pass().await;
        }
    })
    .detach();

    // Transactions nobody completes (a failed marker write, a restart, a timeout) and idle
    // transactional ids: `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    let txn_shard = shard.clone();
    let txn_interval = Duration::from_millis(
        u64::try_from(config.kafka.transaction_cleanup_interval_ms()).unwrap_or(10_000), // ok: validated >= 1
    );
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(txn_interval).await;
            crate::kafka::txn::pending_work_pass(&txn_shard).await;
        }
    })
    .detach();

    // The log cleaner: background work in a task queue of its own with few shares.
    let cleaner_queue = glommio::executor().create_task_queue(
        glommio::Shares::Static(crate::shard::cleaner::CLEANER_SHARES),
        glommio::Latency::NotImportant,
        "log-cleaner",
    );
    let cleaner_config = crate::shard::cleaner::CleanerConfig::from_broker(&config.kafka);
    let cleaner_shard = shard.clone();
    match glommio::spawn_local_into(
        crate::shard::cleaner::run(cleaner_shard, cleaner_config),
        cleaner_queue,
    ) {
        Ok(task) => {
            task.detach();
        }
        Err(e) => error!(shard = id, error = %e, "cannot start the log cleaner"),
    };

    while !SHUTDOWN.load(Ordering::SeqCst) {
        glommio::timer::sleep(Duration::from_millis(SHUTDOWN_POLL_MS)).await;
    }
    // Stop accepting: dropping the listener closes this shard's listening socket.
    accepting.cancel();
    handler.start_draining();
    let drain_deadline =
        std::time::Instant::now() + Duration::from_millis(config.shutdown.drain_ms);
    while handler.in_flight() > 0 && std::time::Instant::now() < drain_deadline {
        glommio::timer::sleep(Duration::from_millis(SHUTDOWN_DRAIN_POLL_MS)).await;
    }
    if handler.in_flight() > 0 {
        warn!(
            shard = id,
            in_flight = handler.in_flight(),
            "requests still in flight after shutdown_drain_ms; closing partitions under them"
        );
    }
    if let Some(ms) = config.test_shutdown_stall_ms {
        glommio::timer::sleep(Duration::from_millis(ms)).await;
    }
    let partitions = shard.partition_count();
    let closing = std::time::Instant::now();
    shard.close_all(config.shutdown.close_concurrency).await;
    info!(
        shard = id,
        partitions,
        took_ms = closing.elapsed().as_millis() as u64,
        "shard stopped: partitions closed"
    );
    Ok(())
}

/// Shards bind with SO_REUSEPORT, which would let a second broker silently share a port that
/// another SO_REUSEPORT process (e.g. another Ringtail) listens on. Refuse to start when
/// something already accepts connections there, as Kafka's "address in use" would. (A trial
/// bind is no good: sockets of a just-killed broker linger on the port and fail it.)
fn check_kafka_port_free(config: &BrokerConfig) -> anyhow::Result<()> {
    let mut probe = config.kafka_addr;
    if probe.port() == 0 {
        return Ok(());
    }
    if probe.ip().is_unspecified() {
        probe.set_ip(if probe.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    // The listening socket of a broker that was just killed can outlive it briefly (io_uring
    // tears its requests down asynchronously): only a listener that stays counts.
    let deadline = std::time::Instant::now() + Duration::from_millis(PORT_PROBE_MS);
    while std::net::TcpStream::connect_timeout(&probe, Duration::from_secs(1)).is_ok() {
        if std::time::Instant::now() >= deadline {
            bail!(
                "cannot listen on --kafka-addr {}: Address already in use (another process is listening there; is another broker running?)",
                config.kafka_addr
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Two brokers on one data dir would corrupt it: hold an exclusive flock for our lifetime.
fn lock_data_dir(config: &BrokerConfig) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    let path = config.data_dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| {
        anyhow::anyhow!(
            "the data dir {} is in use by another Ringtail process (lock {} is held)",
            config.data_dir.display(),
            path.display()
        )
    })
}

fn shutdown_sigset() -> nix::sys::signal::SigSet {
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(nix::sys::signal::SIGTERM);
    set.add(nix::sys::signal::SIGINT);
    set
}

/// Block the shutdown signals before any thread starts, so every thread inherits the mask and
/// only the main thread receives them (in `sigwait`).
fn block_shutdown_signals() -> anyhow::Result<()> {
    shutdown_sigset()
        .thread_block()
        .context("blocking SIGTERM/SIGINT")?;
    Ok(())
}

fn wait_for_shutdown_signal() {
    match shutdown_sigset().wait() {
        Ok(sig) => info!(signal = ?sig, "signal received"),
        Err(e) => warn!(error = %e, "sigwait failed; shutting down"),
    }
}

/// Creates `__consumer_offsets` through the controller if it does not exist yet (Kafka
/// creates it on first use; we do it at start-up so the first consumer finds it): Kafka's
/// `offsets.topic.num.partitions`, compacted, `offsets.topic.segment.bytes`; replication
/// factor 1 whatever `offsets.topic.replication.factor` says, as this is a single broker.
/// Runs on shard 0. Lives here, not in `coordinator`, because it calls the controller through
/// the shard: a `ShardReq::Controller` like any client's CreateTopics, so it goes through the
/// same controller shell (persisted, published to every shard, acknowledged) before it returns.
async fn ensure_offsets_topic(shard: &Rc<Shard>) {
    // In a cluster, wait (a while) for the other voters to register, so the offsets
    // partitions, and with them the group coordinators, spread over every node.
    let expected = shard.config.controller_quorum.len().max(1);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let meta = shard.meta();
        if meta.topic(OFFSETS_TOPIC).is_some() {
            return;
        }
        if meta.live_brokers().count() >= expected || std::time::Instant::now() >= deadline {
            break;
        }
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
    let k = &shard.config.kafka;
    shard
        .create_internal_topic(
            OFFSETS_TOPIC,
            k.offsets_topic_num_partitions(),
            k.offsets_topic_segment_bytes(),
        )
        .await;
}
