//! Model-based test: random sequences of appends (some hit injected write failures),
//! follower appends with offset gaps, truncations, reads, DeleteRecords and clean/unclean
//! reopens, checked against a plain vector of batches.

mod common;

use std::path::PathBuf;

use common::*;
use proptest::prelude::*;
use storage::{Durability, LogConfig, PartitionLog, StorageError};

#[derive(Debug, Clone)]
enum Op {
    /// Append `n` batches (count, record_len) and wait for them.
    Append(Vec<(i32, usize)>),
    /// The next write fails: the appends are lost and their offsets reused.
    AppendFailing(Vec<(i32, usize)>),
    /// Follower appends of batches (gap before it, count, record_len) keeping their offsets.
    AppendReplica(Vec<(u8, i32, usize)>),
    /// truncate_to a fraction of the log (as a follower would; the epoch moves on).
    Truncate(u16),
    /// Read from a position (fraction of the log) with a byte limit, then keep reading
    /// sequentially for `steps` more reads; from disk only (cache emptied) if `disk`.
    Read(u16, usize, bool, u8),
    /// DeleteRecords up to a fraction of the log.
    DeleteRecords(u16),
    Reopen {
        clean: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let batches = prop::collection::vec((1i32..4, 8usize..1500), 1..6);
    prop_oneof![
        6 => batches.clone().prop_map(Op::Append),
        1 => batches.prop_map(Op::AppendFailing),
        3 => prop::collection::vec((0u8..5, 1i32..4, 8usize..900), 1..4).prop_map(Op::AppendReplica),
        1 => any::<u16>().prop_map(Op::Truncate),
        4 => (any::<u16>(), 1usize..20_000, any::<bool>(), 0u8..4)
            .prop_map(|(p, m, disk, steps)| Op::Read(p, m, disk, steps)),
        1 => any::<u16>().prop_map(Op::DeleteRecords),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 12 << 10,
        index_interval_bytes: 600,
        ..LogConfig::default()
    }
}

/// (base, last, bytes after the base offset field) per batch.
type Model = Vec<(i64, i64, Vec<u8>)>;

fn check_ops(path: PathBuf, ops: Vec<Op>) {
    run(move || async move {
        let mut log = PartitionLog::open(path.clone(), cfg()).await.unwrap();
        let mut model: Model = Vec::new();
        let mut lso = 0i64;
        let mut ts = 0i64;
        let mut end = 0i64;
        let mut epoch = 1;
        for op in ops {
            match op {
                Op::Append(bs) => {
                    let mut pend = Vec::new();
                    for (c, l) in bs {
                        ts += 1;
                        let vb = batch(c, l, ts);
                        let p = log.append(&vb, None).unwrap();
                        assert_eq!(p.base_offset, end);
                        model.push((p.base_offset, p.last_offset, vb.bytes()[8..].to_vec()));
                        end = p.last_offset + 1;
                        pend.push(p);
                    }
                    for (i, p) in pend.into_iter().enumerate() {
                        let d = if i % 2 == 0 {
                            Durability::Fsynced
                        } else {
                            Durability::Written
                        };
                        p.wait(d).await.unwrap();
                    }
                }
                Op::AppendFailing(bs) => {
                    log.inject_faults(1, 0);
                    let mut pend = Vec::new();
                    for (c, l) in bs {
                        ts += 1;
                        pend.push(log.append(&batch(c, l, ts), None).unwrap());
                    }
                    for p in pend {
                        assert!(matches!(
                            p.wait(Durability::Written).await,
                            Err(StorageError::Io(_))
                        ));
                    }
                    assert_eq!(log.log_end_offset(), end);
                }
                Op::AppendReplica(bs) => {
                    let mut parts = Vec::new();
                    let mut next = end;
                    for (gap, c, l) in bs {
                        ts += 1;
                        let base = next + gap as i64;
                        let b = replica_batch(base, c, l, ts, epoch);
                        model.push((base, base + c as i64 - 1, b[8..].to_vec()));
                        next = base + c as i64;
                        parts.push(b);
                    }
                    let p = log.append_replica(&batches(&parts)).unwrap();
                    assert_eq!(p.last_offset + 1, next);
                    end = next;
                    p.wait(Durability::Written).await.unwrap();
                    assert_eq!(log.latest_epoch().map(|e| e.epoch), Some(epoch));
                }
                Op::Truncate(pos) => {
                    let off = lso + (pos as i64 * (end - lso)) / (u16::MAX as i64 + 1);
                    let new_end = log.truncate_to(off).await.unwrap();
                    model.retain(|m| m.1 < off);
                    // The last batch below `off` ends the log, unless retention deleted its
                    // segment (then the log ends at the first remaining segment's base).
                    let kept_end = model.last().map_or(0, |m| m.1 + 1);
                    assert!(
                        new_end >= kept_end && new_end <= off,
                        "{new_end} vs {kept_end}..={off}"
                    );
                    if model.last().is_some_and(|m| m.1 >= lso) {
                        assert_eq!(new_end, kept_end);
                    }
                    end = new_end;
                    lso = lso.min(end);
                    assert_eq!(log.log_end_offset(), end);
                    assert_eq!(log.log_start_offset(), lso);
                    assert!(log.leader_epochs().iter().all(|e| e.start_offset < end));
                    epoch += 1;
                }
                Op::Read(pos, max, disk, steps) => {
                    if end == lso {
                        continue;
                    }
                    if disk {
                        log.set_read_cache_bytes(0);
                    }
                    let mut off = lso + (pos as i64 * (end - lso)) / (u16::MAX as i64 + 1);
                    for _ in 0..=steps {
                        if off >= end {
                            break;
                        }
                        let r = log.read_written(off, max, true).await.unwrap();
                        assert_eq!(r.written_end_offset, end);
                        let b = r.into_bytes().await.unwrap();
                        let parts = split(&b);
                        assert!(!parts.is_empty());
                        // The batch holding `off`, or the next one after a gap.
                        let first = model.iter().position(|m| off <= m.1).unwrap();
                        for (i, (base, last, bytes)) in parts.iter().enumerate() {
                            let m = &model[first + i];
                            assert_eq!((*base, *last), (m.0, m.1));
                            assert_eq!(&bytes[8..], &m.2[..]);
                            off = last + 1;
                        }
                        assert!(parts.len() == 1 || b.len() <= max);
                    }
                    if disk {
                        log.set_read_cache_bytes(storage::log::DEFAULT_READ_CACHE_BYTES);
                    }
                }
                Op::DeleteRecords(pos) => {
                    let off = lso + (pos as i64 * (end - lso)) / (u16::MAX as i64 + 1);
                    log.delete_records_before(off).await.unwrap();
                    lso = lso.max(off);
                    assert_eq!(log.log_start_offset(), lso);
                }
                Op::Reopen { clean } => {
                    if clean {
                        log.clone().close().await.unwrap();
                    }
                    drop(log);
                    log = PartitionLog::open(path.clone(), cfg()).await.unwrap();
                    assert_eq!(log.log_end_offset(), end);
                    assert_eq!(log.log_start_offset(), lso);
                }
            }
        }
        // Everything in the model, from the log start, reads back from disk.
        log.set_read_cache_bytes(0);
        let mut off = lso;
        while off < end {
            let b = log
                .read_written(off, 1 << 16, true)
                .await
                .unwrap()
                .into_bytes()
                .await
                .unwrap();
            for (base, last, bytes) in split(&b) {
                let m = model.iter().find(|m| m.0 == base).unwrap();
                assert_eq!((last, &bytes[8..]), (m.1, &m.2[..]));
                off = last + 1;
            }
        }
        log.close().await.unwrap();
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn random_operations_match_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        check_ops(dir.path().join("m"), ops);
    }
}
