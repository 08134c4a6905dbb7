//! The log cleaner of one shard: compacts the `cleanup.policy=compact` partitions this shard
//! owns, as background work.
//!
//! Owns: the cleaning loop (a pass every `log.cleaner.backoff.ms`), its I/O throttle
//! (`log.cleaner.io.max.bytes.per.second`, reads plus writes, per shard), and the per-partition
//! cleaner state kept in memory (last clean time, when a kept tombstone may go). It runs in a
//! glommio task queue of its own with few shares ([`CLEANER_SHARES`]) and pauses every
//! [`CLEANER_YIELD_BYTES`] of work ([`CLEANER_PAUSE`]), so produce and fetch win the CPU
//! whenever they want it. What survives is decided by `log::compaction` (I/O-free); the
//! crash-safe swap of segments is `storage::PartitionLog::replace_segments`; the aborted
//! transactions whose data and markers a pass removed leave the partition's aborted list in
//! the same step as the swap.
//!
//! Invariants: only the owning shard cleans a partition (this module runs on it; the partition
//! is looked up again for every pass, so a deleted or moved partition is never touched after it
//! left the table); the active segment, segments younger than `min.compaction.lag.ms` and
//! segments reaching the last stable offset are never read for rewriting; a pass reads the
//! cleanable segments in log order from the log start (the transaction rules need it);
//! offsets never change (gaps appear).
//!
//! Runs on: every shard, in the shard's cleaner task queue.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use storage::batch::BatchHeader;
use storage::SegmentInfo;
use tracing::{debug, info, warn};

use super::{now_ms, Partition, Shard};
use crate::log::compaction::{
    self, AbortedIndex, BatchOutcome, CleanContext, CleanParams, CleanStats, OffsetMap,
    ProducerRetention, TxnTracker,
};
use crate::log::compression::DEFAULT_MAX_DECOMPRESSED_BYTES;

/// Shares of the cleaner's task queue (glommio's default queue has 1000): background work.
pub const CLEANER_SHARES: usize = 10;

/// Test-only: the step of a segment replacement at which a cleaning pauses (an hour), so a
/// test can `kill -9` the broker there (see `storage::PartitionLog::set_replace_pause`).
pub const TEST_PAUSE_ENV: &str = "RINGTAIL_TEST_COMPACTION_PAUSE_STEP";

/// The cleaner's settings (broker configs, read once at start).
#[derive(Debug, Clone, Copy)]
pub struct CleanerConfig {
    pub enabled: bool,
    pub backoff: Duration,
    pub io_max_bytes_per_second: u64,
    pub dedupe_buffer_bytes: usize,
    pub io_buffer_bytes: usize,
    pub test_pause_step: Option<u32>,
}

impl CleanerConfig {
    pub fn from_broker(kafka: &crate::log::topic_config::BrokerDefaults) -> CleanerConfig {
        CleanerConfig {
            enabled: kafka.log_cleaner_enable(),
            backoff: Duration::from_millis(kafka.log_cleaner_backoff_ms().max(10)),
            io_max_bytes_per_second: kafka.log_cleaner_io_max_bytes_per_second(),
            dedupe_buffer_bytes: kafka.log_cleaner_dedupe_buffer_bytes(),
            io_buffer_bytes: kafka.log_cleaner_io_buffer_bytes().max(64 << 10),
            test_pause_step: std::env::var(TEST_PAUSE_ENV)
                .ok()
                .and_then(|v| v.trim().parse().ok()),
        }
    }
}

/// What the cleaner remembers of one partition (in memory; lost on restart, which only means
/// the next pass decides from the log's persisted cleaner offset again).
#[derive(Debug, Clone, Copy, Default)]
pub struct PartitionCleanerState {
    /// Wall-clock ms of the last completed cleaning (0: never since start).
    pub last_clean_ms: i64,
    /// When a tombstone kept by the last cleaning may be removed (`i64::MAX`: none).
    pub tombstone_expiry_ms: i64,
    pub dirty_ratio: f64,
}

/// Cleaner counters and per-partition state of one shard.
#[derive(Debug, Default)]
pub struct CleanerState {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub cleanings: u64,
    pub partitions: HashMap<(String, i32), PartitionCleanerState>,
}

/// Keeps reads plus writes at or below a rate, on average since the start of a cleaning.
struct Throttle {
    bytes_per_second: u64,
    started: Instant,
    bytes: u64,
}

impl Throttle {
    fn new(bytes_per_second: u64) -> Throttle {
        Throttle {
            bytes_per_second: bytes_per_second.max(1),
            started: Instant::now(),
            bytes: 0,
        }
    }

    async fn consume(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
        let due = Duration::from_secs_f64(self.bytes as f64 / self.bytes_per_second as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            glommio::timer::sleep(due - elapsed).await;
        }
    }
}

/// Why a cleaning stopped.
#[derive(Debug, thiserror::Error)]
pub enum CleanError {
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    #[error(transparent)]
    Records(#[from] crate::log::records::RecordsError),
}

/// Runs the cleaner of `shard` until the process ends. Spawn it into its own task queue.
pub async fn run(shard: Rc<Shard>, config: CleanerConfig) {
    if !config.enabled {
        return;
    }
    loop {
        glommio::timer::sleep(config.backoff).await;
        let partitions: Vec<Rc<Partition>> = shard
            .partitions
            .borrow()
            .values()
            .filter(|p| p.topic.config.settings().cleanup_compact)
            .cloned()
            .collect();
        for p in partitions {
            // Still ours, and the same incarnation? (A metadata change may have closed or
            // deleted it meanwhile; a config change replaces the entry: use the new one.)
            let Some(p) = shard
                .partition(&p.topic.name, p.index)
                .filter(|c| c.topic.id == p.topic.id)
            else {
                continue;
            };
            if let Err(e) = clean_partition(&shard, &p, &config).await {
                warn!(topic = %p.topic.name, partition = p.index, error = %e, "log cleaning failed");
            }
        }
        publish(&shard);
    }
}

/// Hands this shard's cleaner figures to `/metrics` (partitions no longer owned are dropped).
fn publish(shard: &Shard) {
    let mut cleaner = shard.cleaner.borrow_mut();
    cleaner
        .partitions
        .retain(|(topic, index), _| shard.partition(topic, *index).is_some());
    let mut partitions: Vec<(String, i32, f64, i64)> = cleaner
        .partitions
        .iter()
        .map(|((t, i), s)| (t.clone(), *i, s.dirty_ratio, s.last_clean_ms))
        .collect();
    partitions.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let view = crate::ops::metrics::CleanerShardView {
        bytes_read: cleaner.bytes_read,
        bytes_written: cleaner.bytes_written,
        partitions,
    };
    drop(cleaner);
    shard.metrics_registry().cleaner.publish(shard.id, view);
}

/// Bytes of batches the cleaner decodes or rewrites between two pauses.
/// A task is never preempted: without pauses, a produce request arriving while the cleaner
/// works through a read chunk (`log.cleaner.io.buffer.size`) would wait for the whole chunk.
pub const CLEANER_YIELD_BYTES: usize = 64 << 10;

/// How long the cleaner sleeps at each pause. A sleep, not `yield_task_queue_now`: glommio
/// reaps I/O completions (new requests, socket writes) only once no task queue is runnable
/// or its preempt timer fires (100 ms by default), so a queue that only yields stays
/// runnable and keeps the shard from seeing the network; a pending timer lets the executor
/// poll, and the default queue (1000 shares against [`CLEANER_SHARES`]) runs first.
pub const CLEANER_PAUSE: Duration = Duration::from_micros(50);

/// Hands the shard back to its other task queues (produce, fetch) every
/// [`CLEANER_YIELD_BYTES`] of work.
#[derive(Default)]
struct Yielder {
    since_bytes: usize,
}

impl Yielder {
    async fn worked(&mut self, bytes: usize) {
        self.since_bytes += bytes;
        if self.since_bytes >= CLEANER_YIELD_BYTES {
            self.since_bytes = 0;
            glommio::timer::sleep(CLEANER_PAUSE).await;
        }
    }
}

/// Builds the key map over the dirty `segments` (aborted transactions left out), as far as
/// it fits. Returns the map and the end of what it covers (the base of the first segment
/// whose keys did not all fit, else `end`).
#[allow(clippy::too_many_arguments)]
async fn build_map(
    shard: &Shard,
    p: &Partition,
    segments: &[SegmentInfo],
    end: i64,
    aborted: &AbortedIndex,
    config: &CleanerConfig,
    throttle: &mut Throttle,
    yielder: &mut Yielder,
) -> Result<(OffsetMap, i64), CleanError> {
    let mut map = OffsetMap::new(config.dedupe_buffer_bytes);
    for seg in segments {
        let mut pos = 0;
        while let Some((bytes, next)) = p
            .log
            .read_segment(seg.base_offset, pos, config.io_buffer_bytes)
            .await?
        {
            pos = next;
            shard.cleaner.borrow_mut().bytes_read += bytes.len() as u64;
            throttle.consume(bytes.len()).await;
            for b in batches_of(&bytes)? {
                let h = BatchHeader::parse(&b).map_err(storage::StorageError::from)?;
                if h.is_control() || aborted.is_aborted(&h) {
                    continue;
                }
                let decoded =
                    crate::log::records::decode_batch(&b, DEFAULT_MAX_DECOMPRESSED_BYTES)?;
                if !map.add_batch(&decoded) {
                    // This segment's keys did not all fit: it stays dirty for the next pass.
                    debug!(topic = %p.topic.name, partition = p.index, keys = map.len(), "cleaner key map full");
                    return Ok((map, seg.base_offset));
                }
                yielder.worked(b.len()).await;
            }
        }
    }
    Ok((map, end))
}

/// Splits whole stored batches (already checked by storage) into per-batch slices.
fn batches_of(bytes: &Bytes) -> Result<Vec<Bytes>, CleanError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let h = BatchHeader::parse(&bytes[pos..]).map_err(storage::StorageError::from)?;
        out.push(bytes.slice(pos..pos + h.total_len()));
        pos += h.total_len();
    }
    Ok(out)
}

/// Appends what `out` holds to the cleaned segment, within the throttle.
async fn write_out(
    shard: &Rc<Shard>,
    cleaned: &mut storage::CleanedSegment,
    out: &mut BytesMut,
    throttle: &mut Throttle,
) -> Result<(), CleanError> {
    if out.is_empty() {
        return Ok(());
    }
    let chunk = out.split().freeze();
    throttle.consume(chunk.len()).await;
    shard.cleaner.borrow_mut().bytes_written += chunk.len() as u64;
    cleaned.append(chunk).await?;
    Ok(())
}

/// The sealed segments wholly below the last stable offset (itself at most the high
/// watermark): a transaction still open is never cleaned (its fate decides what survives),
/// nor is data the replicas do not all have yet, as in Kafka.
fn stable_sealed_segments(p: &Partition) -> Vec<SegmentInfo> {
    let high_watermark = p.high_watermark();
    let lso = p.txns.borrow().last_stable_offset(high_watermark);
    p.log
        .sealed_segments()
        .into_iter()
        .take_while(|s| s.next_offset <= lso)
        .collect()
}

/// Drops from the partition's aborted list the transactions of ABORT markers below `end`
/// that the pass found with no data left (Kafka's cleaned transaction index).
fn forget_emptied_aborts(p: &Partition, txns: &mut TxnTracker, end: i64) {
    let done = txns.emptied_aborts.partition_point(|o| *o < end);
    let emptied: Vec<i64> = txns.emptied_aborts.drain(..done).collect();
    p.txns.borrow_mut().forget_aborted(&emptied);
}

/// One cleaning of one partition, when its plan says so.
pub async fn clean_partition(
    shard: &Rc<Shard>,
    p: &Rc<Partition>,
    config: &CleanerConfig,
) -> Result<(), CleanError> {
    let settings = p.topic.config.settings().clone();
    let log = p.log.clone();
    log.set_replace_pause(config.test_pause_step);
    let key = (p.topic.name.clone(), p.index);
    let now = now_ms();
    let sealed = stable_sealed_segments(p);
    let cleaner_offset = log.cleaner_offset();
    let prior = shard
        .cleaner
        .borrow()
        .partitions
        .get(&key)
        .copied()
        .unwrap_or(PartitionCleanerState {
            tombstone_expiry_ms: i64::MAX,
            ..Default::default()
        });
    let ratio = compaction::dirty_ratio(&sealed, cleaner_offset);
    shard.cleaner.borrow_mut().partitions.insert(
        key.clone(),
        PartitionCleanerState {
            dirty_ratio: ratio,
            ..prior
        },
    );
    let cs = compaction::CompactionSettings {
        min_cleanable_dirty_ratio: settings.min_cleanable_dirty_ratio,
        min_compaction_lag_ms: settings.min_compaction_lag_ms,
        max_compaction_lag_ms: settings.max_compaction_lag_ms,
    };
    let Some(plan) = compaction::plan(&sealed, cleaner_offset, &cs, prior.tombstone_expiry_ms, now)
    else {
        return Ok(());
    };
    let mut throttle = Throttle::new(config.io_max_bytes_per_second);
    let started = Instant::now();
    // Aborted transactions' data neither enters the map nor survives.
    let aborted = AbortedIndex::new(&p.txns.borrow().aborted_between(0, plan.end));
    // 1. The key map over the dirty section, as far as it fits.
    let mut yielder = Yielder::default();
    let dirty: Vec<SegmentInfo> = plan
        .segments
        .iter()
        .filter(|s| s.base_offset >= plan.dirty_from)
        .copied()
        .collect();
    let (map, end) = build_map(
        shard,
        p,
        &dirty,
        plan.end,
        &aborted,
        config,
        &mut throttle,
        &mut yielder,
    )
    .await?;
    let segments: Vec<SegmentInfo> = plan
        .segments
        .iter()
        .filter(|s| s.base_offset < end)
        .copied()
        .collect();
    if segments.is_empty() {
        return Ok(());
    }
    // 2. Rewrite, group by group (each group becomes one segment).
    let producers = ProducerRetention {
        last_data_offsets: p.producers.borrow().last_batch_offsets(),
        newest_marker_offsets: p.txns.borrow().newest_marker_offsets(),
    };
    let ctx = CleanContext {
        map: &map,
        producers: &producers,
        aborted: &aborted,
        params: CleanParams {
            now_ms: now,
            delete_retention_ms: settings.delete_retention_ms,
            compression: settings.compression.into(),
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
        },
    };
    let mut txns = TxnTracker::default();
    let mut stats = CleanStats::new();
    let segment_bytes = log.config().segment_bytes;
    let (mut bytes_before, mut bytes_after) = (0u64, 0u64);
    for group in compaction::group_segments(&segments, segment_bytes) {
        let mut cleaned = log.begin_cleaned_segment(group[0].base_offset).await?; // ok: groups are never empty
        let mut changed = group.len() > 1;
        for seg in &group {
            bytes_before += seg.size_bytes;
            let mut out = BytesMut::new();
            let mut pos = 0;
            loop {
                let read = log
                    .read_segment(seg.base_offset, pos, config.io_buffer_bytes)
                    .await?;
                let Some((bytes, next)) = read else { break };
                pos = next;
                shard.cleaner.borrow_mut().bytes_read += bytes.len() as u64;
                throttle.consume(bytes.len()).await;
                for b in batches_of(&bytes)? {
                    match compaction::clean_batch(&b, &ctx, &mut txns, &mut stats)? {
                        BatchOutcome::Keep => out.extend_from_slice(&b),
                        BatchOutcome::Drop => changed = true,
                        BatchOutcome::Rewrite(new) => {
                            changed = true;
                            out.extend_from_slice(&new);
                        }
                    }
                    yielder.worked(b.len()).await;
                }
                if out.len() >= config.io_buffer_bytes {
                    write_out(shard, &mut cleaned, &mut out, &mut throttle).await?;
                }
            }
            write_out(shard, &mut cleaned, &mut out, &mut throttle).await?;
        }
        bytes_after += cleaned.size_bytes();
        let bases: Vec<i64> = group.iter().map(|s| s.base_offset).collect();
        let group_end = segments
            .iter()
            .find(|s| s.base_offset > bases[bases.len() - 1]) // ok: not empty
            .map_or(end, |s| s.base_offset);
        if !changed {
            // Nothing to remove here: keep the files, only the cleaner offset moves.
            drop(cleaned);
            log.set_cleaner_offset(group_end).await?;
            forget_emptied_aborts(p, &mut txns, group_end);
            continue;
        }
        if !log.replace_segments(&bases, cleaned, group_end).await? {
            debug!(topic = %p.topic.name, partition = p.index, "log changed during cleaning; trying again later");
            return Ok(());
        }
        // In the same step as the swap: no fetch may learn of an aborted transaction whose
        // data and marker may be gone (its consumer would skip the producer's later data).
        forget_emptied_aborts(p, &mut txns, group_end);
    }
    log.set_cleaner_offset(end).await?;
    let after = log.sealed_segments();
    let mut cleaner = shard.cleaner.borrow_mut();
    cleaner.cleanings += 1;
    cleaner.partitions.insert(
        key,
        PartitionCleanerState {
            last_clean_ms: now_ms(),
            tombstone_expiry_ms: stats.next_tombstone_expiry_ms,
            dirty_ratio: compaction::dirty_ratio(&after, log.cleaner_offset()),
        },
    );
    drop(cleaner);
    info!(
        topic = %p.topic.name,
        partition = p.index,
        dirty_ratio = plan.dirty_ratio,
        keys = map.len(),
        records_kept = stats.records_kept,
        records_removed = stats.records_removed,
        tombstones_removed = stats.tombstones_removed,
        aborted_records_removed = stats.aborted_records_removed,
        markers_removed = stats.markers_removed,
        bytes_before,
        bytes_after,
        seconds = started.elapsed().as_secs_f64(),
        "log cleaned"
    );
    Ok(())
}
