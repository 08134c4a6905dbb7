//! Kills a real appender process with SIGKILL in the middle of fsynced appends (leader
//! appends, and follower appends whose offsets have gaps) and checks that every append it
//! reported durable reads back after reopening, at its own offsets.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use storage::{LogConfig, PartitionLog};

#[test]
fn sigkill_during_fsynced_appends_loses_nothing_acknowledged() {
    sigkill_rounds("leader");
}

#[test]
fn sigkill_during_follower_appends_keeps_offsets_and_gaps() {
    sigkill_rounds("replica");
}

fn sigkill_rounds(mode: &'static str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash");
    let exe = env!("CARGO_BIN_EXE_storage-crash-appender");
    let mut total_acked = 0usize;
    for round in 0..4 {
        let mut child = Command::new(exe)
            .arg(&path)
            .arg("16")
            .arg(if round % 2 == 0 { "200" } else { "3000" })
            .arg(mode)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn appender");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Let it run until it acknowledged a few hundred appends (generous deadline for a
        // loaded machine), then kill it mid-flight.
        let want = 300 + round * 150;
        // (base offset, last offset, timestamp, leader epoch or -1)
        let mut acked: Vec<(i64, i64, i64, i32)> = Vec::new();
        let mut opened_at = None;
        let deadline = Instant::now() + Duration::from_secs(120);
        while acked.len() < want && Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => parse_line(&line, &mut acked, &mut opened_at),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                Err(_) => break,
            }
        }
        child.kill().expect("SIGKILL"); // std sends SIGKILL
        let _ = child.wait();
        // Lines already in the pipe were printed before the kill: they count too.
        for line in rx.iter() {
            parse_line(&line, &mut acked, &mut opened_at);
        }
        reader.join().unwrap();
        assert!(
            acked.len() >= 50,
            "appender made too little progress: {}",
            acked.len()
        );
        total_acked += acked.len();
        let opened_at = opened_at.expect("appender printed its start offset");
        let p = path.clone();
        run(move || async move {
            let log = PartitionLog::open(
                p,
                LogConfig {
                    segment_bytes: 256 << 10,
                    ..LogConfig::default()
                },
            )
            .await
            .unwrap();
            log.set_read_cache_bytes(0);
            let end = log.log_end_offset();
            let mut sorted = acked.clone();
            sorted.sort();
            // A read at the first offset after a durable batch returns the next batch that
            // survived: never one that overlaps, never past the next durable one.
            for w in sorted.windows(2) {
                let (prev_last, next_base) = (w[0].1, w[1].0);
                if prev_last + 1 >= end {
                    continue;
                }
                let b = log
                    .read_written(prev_last + 1, 1, true)
                    .await
                    .unwrap()
                    .into_bytes()
                    .await
                    .unwrap();
                let got = split(&b)[0].0;
                assert!(
                    got > prev_last && got <= next_base,
                    "read after {prev_last} gave {got}, next durable {next_base}"
                );
            }
            if mode == "replica" {
                // Every durable batch's epoch is known, starting at or before it.
                let epochs = log.leader_epochs();
                for (base, _, _, epoch) in &acked {
                    let e = epochs
                        .iter()
                        .rev()
                        .find(|e| e.start_offset <= *base)
                        .unwrap_or_else(|| panic!("no epoch for offset {base}: {epochs:?}"));
                    assert_eq!(e.epoch, *epoch, "epoch at {base}: {epochs:?}");
                }
            }
            for (base, last, ts, epoch) in &acked {
                assert!(*base >= opened_at);
                assert!(
                    *last < end,
                    "acknowledged offset {last} beyond recovered end {end}"
                );
                let b = log
                    .read_written(*base, 1, true)
                    .await
                    .unwrap()
                    .into_bytes()
                    .await
                    .unwrap();
                let parts = split(&b);
                let h = storage::BatchHeader::parse_and_verify(&parts[0].2).unwrap();
                assert_eq!((h.base_offset, h.last_offset()), (*base, *last));
                if mode == "replica" {
                    assert_eq!(h.partition_leader_epoch, *epoch);
                }
                assert_eq!(h.max_timestamp, *ts, "content of offset {base} differs");
            }
            log.close().await.unwrap();
        });
    }
    assert!(total_acked > 0);
}

fn parse_line(line: &str, acked: &mut Vec<(i64, i64, i64, i32)>, opened_at: &mut Option<i64>) {
    let f: Vec<&str> = line.split_whitespace().collect();
    match f.as_slice() {
        ["opened", n] => *opened_at = n.parse().ok(),
        ["durable", b, l, t] => {
            if let (Ok(b), Ok(l), Ok(t)) = (b.parse(), l.parse(), t.parse()) {
                acked.push((b, l, t, -1));
            }
        }
        ["durable", b, l, t, e] => {
            if let (Ok(b), Ok(l), Ok(t), Ok(e)) = (b.parse(), l.parse(), t.parse(), e.parse()) {
                acked.push((b, l, t, e));
            }
        }
        _ => {}
    }
}
