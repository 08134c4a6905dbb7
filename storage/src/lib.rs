//! # ringtail-storage: the partition log
//!
//! This crate owns the on-disk log of one partition replica: a directory of segments,
//! each a file of Kafka v2 record batches stored byte-for-byte as received (only the
//! base offset, and optionally the leader epoch / LogAppendTime, rewritten), with a
//! sparse offset index and a time index. It knows nothing about sockets, requests or
//! Kafka semantics beyond the record batch format.
//!
//! ## Model
//! - A [`PartitionLog`] lives on one glommio shard (it is `!Send`; `Rc`/`RefCell`
//!   inside). All appends, reads, retention and recovery for the partition run there.
//! - [`PartitionLog::append`] is synchronous: it validates sizes, assigns offsets and
//!   copies the batches (once) into aligned DMA buffers. A background writer task per
//!   partition takes everything appended while its previous write was in flight and
//!   writes it with O_DIRECT in one go (group commit); fdatasync is coalesced the same
//!   way. [`PendingAppend::wait`] tells a caller when its batch is written or durable.
//! - Reads return whole batches as [`Chunk`]s: recent data from an in-memory cache of
//!   `Bytes`, older data as ranges of a buffered read-only file descriptor that the
//!   network layer can `sendfile`. Records are never decoded.
//!
//! ## Invariants
//! - `log_start_offset <= durable_offset <= high_watermark <= log_end_offset`.
//! - Readers never see bytes beyond the high watermark (the end of completed writes).
//! - Offsets are dense and assigned in `append` call order; a batch on disk always
//!   starts at the previous batch's last offset + 1.
//! - Every acknowledged-durable batch (`Durability::Fsynced`) survives a crash;
//!   recovery truncates only bytes that were never fsynced (or are corrupt).
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
//! [`set_shard_cache_bytes`]) and [`Chunk::File`] ranges otherwise: a buffered read-only fd
//! (sendfile/splice-able) plus the O_DIRECT fd that [`Chunk::load`] reads with. The active segment's partial
//! last block is rewritten in place by later appends, so it is never handed out as a
//! file range (it is copied instead); every other file byte below the high watermark is
//! immutable until retention deletes the segment (open fds keep it readable).
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
//! offset) and `<dir>/partition.checkpoint` (log start offset, recovery point, clean
//! shutdown flag). See [`recovery`] for what happens at open.
//!
//! ## Modules
//! - [`batch`]: the v2 record batch header: layout, parsing, CRC, validation (the one
//!   definition every crate uses).
//! - [`log`]: the partition log, writer task, reads, retention.
//! - [`recovery`]: open-time validation and repair.
//! - `segment`, `index`, `checkpoint`: file formats (internal).

pub mod batch;
mod checkpoint;
mod config;
pub mod dma_alloc;
mod error;
mod event;
mod index;
pub mod iotime;
pub mod log;
mod readahead;
pub mod recovery;
mod segment;

pub use batch::{BatchError, BatchHeader, ValidatedBatches};
pub use config::{Durability, LogConfig};
pub use error::StorageError;
#[doc(hidden)]
pub use index::SegmentIndex;
pub use log::{
    set_shard_cache_bytes, shard_cache_bytes, Chunk, PartitionLog, PendingAppend, ReadResult,
    RetentionOutcome,
};
pub use readahead::{
    set_shard_read_ahead_bytes, shard_read_ahead_bytes, shard_read_ahead_hits,
    DEFAULT_SHARD_READ_AHEAD_BYTES,
};
pub use recovery::{last_recovery_stats, RecoveryStats};
