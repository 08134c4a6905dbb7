//! Crash-test helper: appends batches with `Durability::Fsynced` from several
//! concurrent tasks and prints one line per durable append:
//! `durable <base_offset> <last_offset> <timestamp>`. The `crash` integration test
//! kills it with SIGKILL and checks that every printed append survives.
//!
//! In `replica` mode the appends are follower appends ([`PartitionLog::append_replica`])
//! of batches that carry their own offsets, with gaps of 0-3 offsets before each one and
//! a leader epoch that grows every 64 appends (from the latest one the log knows); the
//! lines then end with the batch's epoch: `durable <base> <last> <timestamp> <epoch>`.
//!
//! Usage: `storage-crash-appender DIR [APPENDERS] [RECORD_BYTES] [leader|replica]`

use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;

use glommio::{LocalExecutorBuilder, Placement};
use storage::batch::build_test_batch;
use storage::{Durability, LogConfig, PartitionLog, ValidatedBatches};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: storage-crash-appender <dir> [appenders] [record_bytes]");
        std::process::exit(2);
    };
    let appenders: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(8);
    let record_bytes: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(200);
    let replica = args.next().is_some_and(|m| m == "replica");
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(512 << 10)
        .spawn(move || async move {
            let cfg = LogConfig {
                segment_bytes: 256 << 10,
                ..LogConfig::default()
            };
            let log = match PartitionLog::open(PathBuf::from(dir), cfg).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("open failed: {e}");
                    std::process::exit(1);
                }
            };
            println!("opened {}", log.log_end_offset());
            let epoch0 = log.latest_epoch().map_or(0, |e| e.epoch);
            let counter = Rc::new(std::cell::Cell::new(0i64));
            let mut tasks = Vec::new();
            for a in 0..appenders {
                let log = log.clone();
                let counter = counter.clone();
                tasks.push(glommio::spawn_local(async move {
                    loop {
                        let n = counter.get();
                        counter.set(n + 1);
                        // The timestamp identifies the append so the test can check content.
                        let ts = 1_000_000 + n;
                        let count = 1 + (n % 5) as i32;
                        let bytes = build_test_batch(count, record_bytes + (a * 13) % 97, ts);
                        let appended = if replica {
                            // No await between reading the log end and appending: the
                            // offsets stay increasing across the tasks.
                            let mut b = bytes.to_vec();
                            let base = log.log_end_offset() + n % 4;
                            b[0..8].copy_from_slice(&base.to_be_bytes());
                            let epoch = epoch0 + 1 + (n / 64) as i32;
                            b[12..16].copy_from_slice(&epoch.to_be_bytes());
                            let vb = ValidatedBatches::parse(b.into()).expect("ok: built valid");
                            log.append_replica(&vb)
                        } else {
                            let vb = ValidatedBatches::parse(bytes).expect("ok: built valid");
                            log.append(&vb, None)
                        };
                        let p = match appended {
                            Ok(p) => p,
                            Err(e) => {
                                eprintln!("append failed: {e}");
                                std::process::exit(1);
                            }
                        };
                        let (base, last) = (p.base_offset, p.last_offset);
                        let epoch = if replica {
                            format!(" {}", epoch0 + 1 + (n / 64) as i32)
                        } else {
                            String::new()
                        };
                        if let Err(e) = p.wait(Durability::Fsynced).await {
                            eprintln!("wait failed: {e}");
                            std::process::exit(1);
                        }
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "durable {base} {last} {ts}{epoch}");
                        let _ = out.flush();
                    }
                }));
            }
            for t in tasks {
                t.await;
            }
        })
        .expect("spawn executor");
    let _ = ex.join();
}
