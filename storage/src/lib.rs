//! # ringtail-storage: the partition log
//!
//! This crate owns the on-disk log of one partition replica: a directory of segments,
//! each a file of Kafka v2 record batches stored byte-for-byte as received (a leader's
//! appends get the base offset, and optionally the leader epoch / LogAppendTime,
//! rewritten; a follower's are stored unchanged), with a sparse offset index and a time
//! index, plus the partition's leader-epoch file. It knows nothing about sockets,
//! requests, replication or Kafka semantics beyond the record batch format.
//!
//! ## Model
//! - A [`PartitionLog`] lives on one glommio shard (it is `!Send`; `Rc`/`RefCell`
//!   inside). All appends, reads, retention, truncation and recovery for the partition
//!   run there.
//! - [`PartitionLog::append`] (a leader) is synchronous: it validates sizes, assigns
//!   offsets from the log end and copies the batches (once) into aligned DMA buffers.
//!   [`PartitionLog::append_replica`] (a follower copying its leader) does the same but
//!   keeps the offsets and leader epochs the batches carry, refusing offsets that do not
//!   strictly increase from the log end. A background writer task per partition takes
//!   everything appended while its previous write was in flight and writes it with
//!   O_DIRECT in one go (group commit); fdatasync is coalesced the same way.
//!   [`PendingAppend::wait`] tells a caller when its batch is written or durable.
//! - Reads return whole batches as [`Chunk`]s: recent data from an in-memory cache of
//!   `Bytes`, older data as ranges of the segment's O_DIRECT file that [`Chunk::load`]
//!   reads. Records are never decoded. The caller bounds every read with the end readers
//!   may see ([`PartitionLog::read`]'s `visible_end`: a high watermark, a last stable
//!   offset); storage itself only knows the end of completed writes
//!   ([`PartitionLog::written_end_offset`]).
//! - [`PartitionLog::replace_segments`] swaps a run of sealed segments for one cleaned
//!   (compacted) file, crash-safely (see `log::replace`); the broker's cleaner decides
//!   what the file holds.
//! - [`PartitionLog::truncate_to`] removes a suffix (a follower that diverged);
//!   [`PartitionLog::assign_epoch`] / [`PartitionLog::end_offset_for_epoch`] keep and
//!   answer the leader-epoch history (see [`epoch`]).
//!
//! ## Invariants
//! - `log_start_offset <= durable_offset <= written_end_offset <= log_end_offset`.
//! - Readers never get a batch holding an offset at or past the caller's visible end,
//!   which is at most the written end (the end of completed writes).
//! - Offsets strictly increase from batch to batch: a batch's base offset is greater than
//!   the previous batch's last offset. They need not be dense (gaps come from follower
//!   appends of a compacted leader's log, later from compaction); a leader's appends are
//!   dense. A read at an offset inside a gap returns the next batch; the log end offset is
//!   the last batch's last offset + 1. Segments abut: a new segment starts at the log end
//!   offset when it is rolled (so a gap may open a segment), unless a follower's offsets
//!   jump further than a segment can index (2^31 offsets): then at its first batch.
//! - The leader-epoch entries' epochs and start offsets strictly increase, start at or
//!   below the log end offset, and none precedes the log start offset.
//! - Every acknowledged-durable batch (`Durability::Fsynced`) survives a crash;
//!   recovery truncates only bytes that were never fsynced (or are corrupt), and
//!   completes an interrupted [`PartitionLog::truncate_to`] (recorded in the checkpoint
//!   before any file changes), so a crash never leaves half a truncation.
//! - Data read back from disk is checked against what the index or the read's header
//!   scan promised (base offset, batch boundaries); a mismatch is
//!   [`StorageError::CorruptLog`], never a panic.
//! - A failed fdatasync poisons the partition ([`StorageError::Poisoned`]); it is never
//!   retried. A failed write rolls back the unwritten appends and reports the error to
//!   each of them; the log stays readable.
//! - Bad input (bad CRC, magic, length, counts) is rejected by
//!   [`ValidatedBatches::parse`] before anything is queued; every [`BatchError`] maps to
//!   Kafka's `CORRUPT_MESSAGE`.
//!
//! ## Durability, precisely
//! - `Durability::Written`: the O_DIRECT write completed (device queue / write-back
//!   cache). Survives a process crash (`kill -9`), not necessarily a power loss.
//! - `Durability::Fsynced`: an fdatasync of the segment, started after the write
//!   completed, returned. When a segment rolls, the directory fsync and the sealing of
//!   the previous segment (truncate, fdatasync, index files, checkpoint) run in the
//!   background, in roll order; an fsync for durability waits for them first, so
//!   `Fsynced` still covers every earlier segment.
//! - `flush.messages` / `flush.ms` trigger fsyncs without waiters; `None` = never.
//!
//! ## Reads and zero copy
//! A read returns [`Chunk::Cached`] for batches still in the per-partition cache
//! (default 8 MiB, [`PartitionLog::set_read_cache_bytes`], and a shard-wide budget,
//! [`set_shard_cache_bytes`]) and [`Chunk::File`] ranges otherwise: a range of the
//! segment's O_DIRECT fd, which [`Chunk::load`] reads (the network layer sends loaded
//! bytes; a segment keeps no second, buffered fd for sendfile, so each open segment holds
//! exactly one descriptor). The active segment's partial last block is rewritten in place
//! by later appends, so it is never handed out as a file range (it is copied instead);
//! every other file byte below the written end is immutable until retention deletes the
//! segment (open fds keep it readable) or a truncation cuts it.
//!
//! ## glommio notes
//! - glommio probes poll-ring support with the first DMA file a thread opens; an empty
//!   file makes the probe lie and later O_DIRECT reads fail with EOPNOTSUPP on virtio.
//!   `open` first opens a non-empty scratch file to avoid that.
//! - Tests use `LocalExecutorBuilder::new(Placement::Unbound).io_memory(512 << 10)`,
//!   which also works without CAP_IPC_LOCK under RLIMIT_MEMLOCK = 8 MiB.
//!
//! ## Files
//! `<dir>/00000000000000000000.log|.index|.timeindex` per segment (named by base
//! offset: the log end offset when it was rolled, so its first batch may start later),
//! `<dir>/partition.checkpoint` (log start offset, recovery point, clean shutdown flag, a
//! truncation in progress, a segment replacement in progress, the cleaner offset), a
//! compacted segment being written as `<base>.log.cleaned` and `<dir>/leader-epoch-checkpoint` (Kafka's layout: version,
//! count, `epoch start_offset` lines). Both checkpoint files are replaced atomically
//! (write temporary, fsync, rename, fsync the directory). See [`recovery`] for what
//! happens at open.
//!
//! ## Modules
//! - [`batch`]: the v2 record batch header: layout, parsing, CRC, validation (the one
//!   definition every crate uses).
//! - [`log`]: the partition log, writer task, reads, retention, truncation.
//! - [`epoch`]: the leader-epoch list and its file.
//! - [`recovery`]: open-time validation and repair.
//! - `segment`, `index`, `checkpoint`: file formats (internal).

pub mod batch;
mod checkpoint;
mod config;
pub mod dma_alloc;
pub mod epoch;
mod error;
pub mod event;
mod index;
pub mod iotime;
pub mod log;
mod readahead;
pub mod recovery;
mod segment;

pub use batch::{BatchError, BatchHeader, ValidatedBatches};
pub use config::{Durability, LogConfig};
pub use epoch::{EpochEntry, EpochError};
pub use error::StorageError;
#[doc(hidden)]
pub use index::SegmentIndex;
pub use log::{
    set_shard_cache_bytes, shard_cache_bytes, Chunk, CleanedSegment, PartitionLog, PendingAppend,
    ReadResult, RetentionOutcome, SegmentInfo,
};
pub use readahead::{
    set_shard_read_ahead_bytes, shard_read_ahead_bytes, shard_read_ahead_hits,
    DEFAULT_SHARD_READ_AHEAD_BYTES,
};
pub use recovery::{last_recovery_stats, RecoveryStats};
pub use segment::FDS_PER_SEGMENT;
