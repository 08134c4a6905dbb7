//! Runs a workload: one glommio executor per worker core, producers and consumers spread
//! over them round-robin, a common start (two barriers), and merged statistics.

use crate::client::{resolve_topics, ClusterMeta, Conn, TopicSetup};
use crate::consume::{assign, Consumer, Progress};
use crate::procstat::{find_listener_pid, Sampler};
use crate::produce::Producer;
use crate::stats::{BenchResult, Clock, WorkerStats};
use crate::workload::{Mode, Workload};
use anyhow::{anyhow, bail, Context, Result};
use glommio::{LocalExecutorBuilder, Placement};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::Duration;

#[derive(Clone, Debug)]
enum Role {
    Producer {
        topic: String,
        index: u32,
        rate: f64,
    },
    Consumer {
        topic: String,
        partitions: Vec<i32>,
        index: u32,
    },
}

/// How often each worker's stall probe wakes.
const PROBE_INTERVAL: Duration = Duration::from_millis(1);

fn executor(core: Option<usize>, name: &str, spin_us: u64) -> LocalExecutorBuilder {
    let placement = match core {
        Some(c) => Placement::Fixed(c),
        None => Placement::Unbound,
    };
    let mut b = LocalExecutorBuilder::new(placement).name(name);
    if spin_us > 0 {
        b = b.spin_before_park(Duration::from_micros(spin_us));
    }
    b
}

/// Resolves (and creates) the workload's topics from the bootstrap address.
pub fn fetch_metadata(w: &Workload) -> Result<ClusterMeta> {
    let w2 = w.clone();
    executor(None, "bench-meta", 0)
        .spawn(move || async move {
            let mut conn = Conn::connect(&w2.bootstrap).await?;
            let setup = TopicSetup {
                partitions: w2.partitions,
                replication_factor: w2.replication_factor,
                create: w2.create_topics,
                broker_override: w2.broker_override.clone(),
            };
            resolve_topics(&mut conn, &w2.topics, &setup).await
        })
        .map_err(|e| anyhow!("starting executor: {e}"))?
        .join()
        .map_err(|e| anyhow!("metadata executor: {e:?}"))?
}

pub fn run(w: Workload, spin_us: u64) -> Result<BenchResult> {
    w.validate()?;
    let started_at_unix_s = Clock::unix_ns() / 1_000_000_000;
    let meta = fetch_metadata(&w)?;
    let w = Arc::new(w);
    let mut roles = Vec::new();
    let producers = w.total_producers().max(1);
    for t in &w.topics {
        if w.mode != Mode::Consume {
            for _ in 0..w.producers_per_topic {
                let index = roles
                    .iter()
                    .filter(|r| matches!(r, Role::Producer { .. }))
                    .count() as u32;
                roles.push(Role::Producer {
                    topic: t.clone(),
                    index,
                    rate: w.rate / producers as f64,
                });
            }
        }
        if w.mode != Mode::Produce {
            let npart = meta.leaders.get(t).map_or(0, |l| l.len()) as i32;
            for _sub in 0..w.subscriptions_per_topic {
                for c in 0..w.consumers_per_subscription {
                    let partitions = assign(npart, w.consumers_per_subscription, c);
                    if partitions.is_empty() {
                        continue; // more consumers than partitions: idle, as in Kafka
                    }
                    let index = roles
                        .iter()
                        .filter(|r| matches!(r, Role::Consumer { .. }))
                        .count() as u32;
                    roles.push(Role::Consumer {
                        topic: t.clone(),
                        partitions,
                        index,
                    });
                }
            }
        }
    }
    let workers = w.cores.len();
    let mut per_worker: Vec<Vec<Role>> = vec![Vec::new(); workers];
    for (i, r) in roles.into_iter().enumerate() {
        per_worker[i % workers].push(r);
    }
    let ready = Arc::new(Barrier::new(workers + 1));
    let go = Arc::new(Barrier::new(workers + 1));
    let clock_cell = Arc::new(OnceLock::<Clock>::new());
    let abort = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(Progress::default());
    if w.mode == Mode::Consume {
        progress.producers_done.store(true, Ordering::Release);
    }
    let producers_left = Arc::new(AtomicU32::new(
        per_worker
            .iter()
            .flatten()
            .filter(|r| matches!(r, Role::Producer { .. }))
            .count() as u32,
    ));
    let mut handles = Vec::new();
    for (wi, roles) in per_worker.into_iter().enumerate() {
        let (w, meta, ready, go, clock_cell, abort, progress, producers_left) = (
            w.clone(),
            meta.clone(),
            ready.clone(),
            go.clone(),
            clock_cell.clone(),
            abort.clone(),
            progress.clone(),
            producers_left.clone(),
        );
        let core = w.cores[wi];
        let h = executor(Some(core), &format!("bench-w{wi}"), spin_us)
            .spawn(move || async move {
                let stats = Rc::new(RefCell::new(WorkerStats::new(&w)));
                // Setup: connect everything before the common start.
                let mut prods = Vec::new();
                let mut cons = Vec::new();
                let mut setup_err = None;
                for r in roles {
                    let res = match r {
                        Role::Producer { topic, index, rate } => {
                            Producer::setup(w.clone(), &meta, &topic, index, rate)
                                .await
                                .map(|p| prods.push(p))
                        }
                        Role::Consumer {
                            topic,
                            partitions,
                            index,
                        } => Consumer::setup(w.clone(), &meta, &topic, &partitions, index)
                            .await
                            .map(|c| cons.push(c)),
                    };
                    if let Err(e) = res {
                        abort.store(true, Ordering::SeqCst);
                        setup_err = Some(e);
                        break;
                    }
                }
                ready.wait();
                go.wait();
                // Per-thread scheduler stats vanish when the thread exits, so each worker
                // measures its own run-queue wait.
                let wait_start = crate::procstat::thread_runq_wait_ns();
                if let Some(e) = setup_err {
                    return Err(e.context("setup"));
                }
                if abort.load(Ordering::SeqCst) {
                    bail!("another worker failed during setup");
                }
                let clock = *clock_cell.get().ok_or_else(|| anyhow!("clock not set"))?;
                let mut tasks = Vec::new();
                for c in cons {
                    let (stats, progress) = (stats.clone(), progress.clone());
                    tasks.push(glommio::spawn_local(async move {
                        let _ = c.run(clock, stats, progress).await;
                    }));
                }
                for p in prods {
                    let (stats, progress, left) =
                        (stats.clone(), progress.clone(), producers_left.clone());
                    tasks.push(glommio::spawn_local(async move {
                        let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
                        let _ = p.run(clock, stats, acked.clone()).await;
                        progress
                            .produced_acked
                            .fetch_add(acked.load(Ordering::Relaxed), Ordering::Relaxed);
                        if left.fetch_sub(1, Ordering::AcqRel) == 1 {
                            progress.producers_done.store(true, Ordering::Release);
                        }
                    }));
                }
                // The stall probe: a timer every PROBE_INTERVAL whose lateness is how long
                // this executor kept its tasks from running (charted per second).
                let probing = Rc::new(std::cell::Cell::new(true));
                let probe = {
                    let (stats, probing) = (stats.clone(), probing.clone());
                    glommio::spawn_local(async move {
                        while probing.get() {
                            let due = clock.elapsed_ns() + PROBE_INTERVAL.as_nanos() as u64;
                            glommio::timer::sleep(PROBE_INTERVAL).await;
                            stats.borrow_mut().on_probe(due, clock.elapsed_ns());
                        }
                    })
                };
                for t in tasks {
                    t.await;
                }
                probing.set(false);
                probe.await;
                let mut stats = Rc::try_unwrap(stats)
                    .map_err(|_| anyhow!("stats still shared"))?
                    .into_inner();
                if let (Some(a), Some(b)) = (wait_start, crate::procstat::thread_runq_wait_ns()) {
                    stats.runq_wait_ns = b.saturating_sub(a);
                }
                Ok(stats)
            })
            .map_err(|e| anyhow!("starting worker on core {core}: {e}"))?;
        handles.push(h);
    }
    ready.wait();
    let clock = Clock::now();
    let _ = clock_cell.set(clock);
    let broker_pid = w
        .broker_pid
        .or_else(|| local_port(&w.bootstrap).and_then(find_listener_pid));
    let sampler = broker_pid.map(|pid| Sampler::start(pid, clock.t0));
    let own_ticks = crate::procstat::cpu_ticks(std::process::id()).ok();
    let own_wait = crate::procstat::runq_wait_ns(std::process::id()).ok();
    go.wait();
    let mut total = WorkerStats::new(&w);
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(s)) => total.merge(&s)?,
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(anyhow!("worker panicked: {e:?}"));
            }
        }
    }
    let broker = sampler.and_then(|s| s.finish());
    if let Some(e) = first_err {
        return Err(e);
    }
    let mut result = BenchResult::build(&w, &total, started_at_unix_s, broker);
    let elapsed_s = clock.t0.elapsed().as_secs_f64().max(1e-3);
    // Worker threads (measured by themselves) plus the rest of the process.
    let rest_wait = own_wait.and_then(|a| {
        let b = crate::procstat::runq_wait_ns(std::process::id()).ok()?;
        Some(b.saturating_sub(a))
    });
    result.harness_runq_wait_pct =
        Some((total.runq_wait_ns + rest_wait.unwrap_or(0)) as f64 / 1e9 / elapsed_s * 100.0);
    result.harness_cpu_pct =
        own_ticks.and_then(|t| crate::procstat::own_cpu_pct(t, clock.t0.elapsed().as_secs_f64()));
    result.contention = result.contention_warnings();
    Ok(result)
}

/// The port of a loopback bootstrap address, for /proc sampling of a local broker.
fn local_port(bootstrap: &str) -> Option<u16> {
    let (host, port) = bootstrap.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let local =
        matches!(host, "127.0.0.1" | "localhost" | "::1" | "0.0.0.0") || host.starts_with("127.");
    if local {
        port.parse().ok()
    } else {
        None
    }
}

/// Convenience for callers that want a context-rich error.
pub fn run_checked(w: Workload, spin_us: u64) -> Result<BenchResult> {
    let name = w.name.clone();
    run(w, spin_us).with_context(|| format!("workload {name}"))
}
