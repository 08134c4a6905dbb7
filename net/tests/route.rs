//! Cross-shard routing between two real glommio executors, plus a round-trip measurement
//! (printed, not asserted: timing depends on the machine and its load).

use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use net::route::{build, RouteConfig, RouteError};

#[derive(Debug)]
enum Req {
    Double(u64),
    Slow(u64),
}

#[test]
fn calls_broadcast_and_round_trip_cost() {
    let config = RouteConfig {
        queue_depth: 8,
        max_concurrent_served: 64,
        ..RouteConfig::default()
    };
    let mut endpoints = build::<Req, u64>(3, config).into_iter();
    let (e0, e1, e2) = (
        endpoints.next().unwrap(),
        endpoints.next().unwrap(),
        endpoints.next().unwrap(),
    );
    assert_eq!((e0.shard_id(), e1.shard_id(), e2.shard_id()), (0, 1, 2));

    let serve_only = |e: net::route::ShardEndpoints<Req, u64>| {
        LocalExecutorBuilder::new(Placement::Unbound)
            .name("route-peer")
            .spawn(move || async move {
                let router = e.connect().await;
                let shard = router.shard_id() as u64;
                let serving = router.serve(move |req| async move {
                    match req {
                        Req::Double(x) => x * 2 + shard * 1_000_000,
                        Req::Slow(x) => {
                            glommio::timer::sleep(Duration::from_millis(50)).await;
                            x
                        }
                    }
                });
                // Drop our own handle so shard 0 can shut down; serving ends when every
                // peer has dropped its router.
                drop(router);
                serving.await;
            })
            .unwrap()
    };
    let p1 = serve_only(e1);
    let p2 = serve_only(e2);

    let main = LocalExecutorBuilder::new(Placement::Unbound)
        .name("route-main")
        .spawn(move || async move {
            let router = e0.connect().await;
            assert_eq!(router.nr_shards(), 3);
            // Before serve: a call to ourselves has nobody to answer it.
            assert!(matches!(
                router.call(0, Req::Double(1)).await,
                Err(RouteError::NotServing { shard: 0 })
            ));
            glommio::spawn_local(router.serve(|req| async move {
                match req {
                    Req::Double(x) | Req::Slow(x) => x * 2,
                }
            }))
            .detach();
            assert_eq!(router.call(0, Req::Double(4)).await.unwrap(), 8);
            assert_eq!(router.call(1, Req::Double(4)).await.unwrap(), 1_000_008);
            assert_eq!(router.call(2, Req::Double(5)).await.unwrap(), 2_000_010);
            assert!(matches!(
                router.call(3, Req::Double(1)).await,
                Err(RouteError::NoSuchShard {
                    shard: 3,
                    nr_shards: 3
                })
            ));

            let replies = router.broadcast(|s| Req::Double(s as u64)).await;
            let replies: Vec<_> = replies.into_iter().map(|(s, r)| (s, r.unwrap())).collect();
            assert_eq!(replies, vec![(1, 1_000_002), (2, 2_000_004)]);

            // A slow request does not block quick ones behind it on the same peer.
            let slow = {
                let r = router.clone();
                glommio::spawn_local(async move { r.call(1, Req::Slow(9)).await })
            };
            let quick_started = Instant::now();
            for i in 0..20 {
                assert_eq!(
                    router.call(1, Req::Double(i)).await.unwrap(),
                    1_000_000 + i * 2
                );
            }
            let quick_elapsed = quick_started.elapsed();
            assert_eq!(slow.await.unwrap(), 9);

            // More concurrent calls than the queue depth: back-pressure, not loss.
            let mut tasks = Vec::new();
            for i in 0..100u64 {
                let r = router.clone();
                tasks.push(glommio::spawn_local(async move {
                    r.call(2, Req::Double(i)).await
                }));
            }
            for (i, t) in tasks.into_iter().enumerate() {
                assert_eq!(t.await.unwrap(), 2_000_000 + 2 * i as u64);
            }

            // Round-trip cost, sequential calls.
            let n = 2_000;
            let mut samples = Vec::with_capacity(n);
            for i in 0..n as u64 {
                let t = Instant::now();
                router.call(1, Req::Double(i)).await.unwrap();
                samples.push(t.elapsed());
            }
            samples.sort();
            eprintln!(
                "route round trip over {n} calls: p50 {:?}, p90 {:?}, p99 {:?}, max {:?} \
                 (20 quick calls behind a 50 ms slow one took {:?})",
                samples[n / 2],
                samples[n * 9 / 10],
                samples[n * 99 / 100],
                samples[n - 1],
                quick_elapsed
            );
        })
        .unwrap();
    main.join().unwrap();
    p1.join().unwrap();
    p2.join().unwrap();
}

#[test]
fn calls_fail_cleanly_when_a_peer_is_gone_or_stuck() {
    let mut endpoints = build::<u64, u64>(3, RouteConfig::default()).into_iter();
    let (e0, e1, e2) = (
        endpoints.next().unwrap(),
        endpoints.next().unwrap(),
        endpoints.next().unwrap(),
    );
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let stop_rx = std::sync::Mutex::new(stop_rx);
    // Shard 1 connects and drops its router without serving: its request queues close.
    let gone = LocalExecutorBuilder::new(Placement::Unbound)
        .name("route-gone")
        .spawn(move || async move {
            drop(e1.connect().await);
        })
        .unwrap();
    // Shard 2 takes requests but never answers them.
    let stuck = LocalExecutorBuilder::new(Placement::Unbound)
        .name("route-stuck")
        .spawn(move || async move {
            let router = e2.connect().await;
            glommio::spawn_local(router.serve(|_req| std::future::pending::<u64>())).detach();
            loop {
                if stop_rx.lock().unwrap().try_recv().is_ok() {
                    break;
                }
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
        })
        .unwrap();
    let main = LocalExecutorBuilder::new(Placement::Unbound)
        .name("route-caller")
        .spawn(move || async move {
            let router = e0.connect().await;
            gone.join().unwrap();
            assert_eq!(
                router.call(1, 8).await,
                Err(RouteError::Disconnected { shard: 1 })
            );
            let timeout = Duration::from_millis(100);
            assert_eq!(
                router.call_timeout(2, 7, timeout).await,
                Err(RouteError::TimedOut { shard: 2, timeout })
            );
            stop_tx.send(()).unwrap();
        })
        .unwrap();
    main.join().unwrap();
    stuck.join().unwrap();
}

/// Requests of the wait tests.
#[derive(Debug)]
enum WaitReq {
    /// A long poll: answers after `ms`.
    Park(u64),
    Echo(u64),
    /// The serving shard's counters.
    Stats,
}

#[derive(Debug, PartialEq, Eq)]
enum WaitResp {
    Value(u64),
    Stats {
        parked: u64,
        refused: u64,
        cancelled: u64,
        /// `Park` handler futures dropped before they finished.
        dropped: u64,
    },
}

/// Counts a `Park` future dropped before it finished.
struct DropCount {
    dropped: std::rc::Rc<std::cell::Cell<u64>>,
    finished: bool,
}

impl Drop for DropCount {
    fn drop(&mut self) {
        if !self.finished {
            self.dropped.set(self.dropped.get() + 1);
        }
    }
}

/// Waits (long polls) hold none of the permits calls need, are refused beyond their own
/// limit, and are cancelled on the serving shard when the caller drops them.
#[test]
fn waits_hold_no_call_permits_and_are_cancelled_when_dropped() {
    const WAITS_MAX: usize = 8;
    let config = RouteConfig {
        queue_depth: 4,
        max_concurrent_served: 1,
        max_parked_waits: WAITS_MAX,
    };
    let mut endpoints = build::<WaitReq, WaitResp>(2, config).into_iter();
    let (e0, e1) = (endpoints.next().unwrap(), endpoints.next().unwrap());
    let server = LocalExecutorBuilder::new(Placement::Unbound)
        .name("route-waits-server")
        .spawn(move || async move {
            let router = e1.connect().await;
            let stats = router.stats();
            let dropped = std::rc::Rc::new(std::cell::Cell::new(0u64));
            let serving = router.serve(move |req| {
                let stats = stats.clone();
                let dropped = dropped.clone();
                async move {
                    match req {
                        WaitReq::Park(ms) => {
                            let mut count = DropCount {
                                dropped,
                                finished: false,
                            };
                            glommio::timer::sleep(Duration::from_millis(ms)).await;
                            count.finished = true;
                            WaitResp::Value(ms)
                        }
                        WaitReq::Echo(x) => WaitResp::Value(x),
                        WaitReq::Stats => WaitResp::Stats {
                            parked: stats.waits_parked(),
                            refused: stats.waits_refused_total(),
                            cancelled: stats.waits_cancelled_total(),
                            dropped: dropped.get(),
                        },
                    }
                }
            });
            drop(router);
            serving.await;
        })
        .unwrap();
    let client = LocalExecutorBuilder::new(Placement::Unbound)
        .name("route-waits-client")
        .spawn(move || async move {
            let router = e0.connect().await;
            let generous = Duration::from_secs(30);
            let stats = |router: net::route::ShardRouter<WaitReq, WaitResp>| async move {
                match router.call_timeout(1, WaitReq::Stats, generous).await {
                    Ok(WaitResp::Stats {
                        parked,
                        refused,
                        cancelled,
                        dropped,
                    }) => (parked, refused, cancelled, dropped),
                    other => panic!("stats call failed: {other:?}"),
                }
            };
            let until = |router: net::route::ShardRouter<WaitReq, WaitResp>,
                         what: &'static str,
                         ok: fn((u64, u64, u64, u64)) -> bool| async move {
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let s = stats(router.clone()).await;
                    if ok(s) {
                        return s;
                    }
                    assert!(Instant::now() < deadline, "{what}: stats still {s:?}");
                    glommio::timer::sleep(Duration::from_millis(5)).await;
                }
            };

            // Park as many waits as shard 1 allows: far more than its single call permit
            // and its queue depth.
            let parked: Vec<_> = (0..WAITS_MAX)
                .map(|_| {
                    let r = router.clone();
                    glommio::spawn_local(async move { r.wait(1, WaitReq::Park(600_000)).await })
                })
                .collect();
            until(router.clone(), "all waits parked", |s| {
                s.0 == WAITS_MAX as u64
            })
            .await;

            // One more is refused at once instead of queued behind them.
            assert_eq!(
                router.wait(1, WaitReq::Park(600_000)).await,
                Err(RouteError::WaitsFull { shard: 1 })
            );
            // Calls are still served, one at a time under the one permit and many at once.
            for i in 0..20 {
                assert_eq!(
                    router.call_timeout(1, WaitReq::Echo(i), generous).await,
                    Ok(WaitResp::Value(i))
                );
            }
            let calls: Vec<_> = (0..10u64)
                .map(|i| {
                    let r = router.clone();
                    glommio::spawn_local(async move {
                        r.call_timeout(1, WaitReq::Echo(i), generous).await
                    })
                })
                .collect();
            for (i, c) in calls.into_iter().enumerate() {
                assert_eq!(c.await, Ok(WaitResp::Value(i as u64)));
            }
            let (parked_now, refused, cancelled, dropped) = stats(router.clone()).await;
            assert_eq!(
                (parked_now, refused, cancelled, dropped),
                (WAITS_MAX as u64, 1, 0, 0)
            );

            // Dropping the callers' futures cancels the waits on shard 1: its handler
            // futures are dropped and nothing stays parked.
            drop(parked);
            let s = until(router.clone(), "waits cancelled", |s| s.0 == 0).await;
            assert_eq!(s, (0, 1, WAITS_MAX as u64, WAITS_MAX as u64));

            // A wait that answers by itself is not cancelled, and leaves nothing parked.
            assert_eq!(
                router.wait(1, WaitReq::Park(1)).await,
                Ok(WaitResp::Value(1))
            );
            // Waits to our own shard are local calls: before serve, nobody answers them.
            assert_eq!(
                router.wait(0, WaitReq::Park(1)).await,
                Err(RouteError::NotServing { shard: 0 })
            );
            let s = until(router.clone(), "answered wait gone", |s| s.0 == 0).await;
            assert_eq!(s, (0, 1, WAITS_MAX as u64, WAITS_MAX as u64));
        })
        .unwrap();
    client.join().unwrap();
    server.join().unwrap();
}
