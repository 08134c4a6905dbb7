//! The controller quorum's durable state: the Raft log, the vote, and the metadata state
//! machine with its snapshots, under `<data_dir>/meta/raft/`.
//!
//! Owns:
//! - `log`: an append-only file of operations — an appended entry, a truncation (entries
//!   from an index on are gone), a purge (entries up to a log id are gone) — each framed as
//!   `[len u32][crc32c u32][json]`. Replaying it rebuilds the in-memory log; a torn or corrupt
//!   tail (a crash mid-write) is cut off at the first bad frame. The file is rewritten
//!   (temp file, fsync, rename, directory sync) once purges leave most of it dead, so a long
//!   history costs neither disk nor start-up time.
//! - `vote`, `committed`: small files replaced atomically.
//! - `snapshot`: the last snapshot (`[meta len u32][meta json][image json]`), replaced
//!   atomically; at start-up the state machine starts from it and openraft re-applies the
//!   committed entries after it.
//!
//! Invariants: an append is fsync'ed before openraft is told it is durable (`LogFlushed`);
//! a vote is durable before it is returned; the state machine applies entries in index order,
//! each exactly once (its `last_applied` moves forward only), and publishes every new image to
//! the node's shards through a `watch` channel.
//!
//! Runs on: the controller thread only (blocking `std::fs`: the thread serves nothing else,
//! and metadata writes are small and rare). Snapshot encoding runs on tokio's blocking pool,
//! so Raft heartbeats never wait behind it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Cursor, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    Entry, EntryPayload, LogId, LogState, OptionalSend, RaftLogReader, RaftSnapshotBuilder,
    Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{NodeId, TypeConfig};
use crate::cluster::image::{ClusterImage, NodeView};
use crate::cluster::meta::MetaSnapshot;

type Node = openraft::BasicNode;
type SError = StorageError<NodeId>;

/// Largest log frame accepted when replaying (a metadata command is far smaller).
const LOG_FRAME_BYTES_MAX: usize = 256 << 20;
/// Rewrite the log file once it holds this many dead frames and they outnumber live ones.
const LOG_DEAD_FRAMES_BEFORE_REWRITE: usize = 4096;

#[derive(Serialize, Deserialize)]
enum LogOp {
    Append(Entry<TypeConfig>),
    /// Entries with index >= this are gone.
    Truncate(u64),
    /// Entries up to and including this log id are gone.
    Purge(LogId<NodeId>),
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Write `bytes` to `path` atomically: temp file, fsync, rename, directory sync.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn read_optional(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn frame(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 8);
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&crc_fast::crc32_iscsi(bytes).to_be_bytes());
    out.extend_from_slice(bytes);
    out
}

struct LogInner {
    dir: PathBuf,
    file: File,
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    last_purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
    /// Frames in the file that no longer hold a live entry.
    dead_frames: usize,
}

impl LogInner {
    fn log_path(dir: &Path) -> PathBuf {
        dir.join("log")
    }

    fn write_ops(&mut self, ops: &[LogOp]) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for op in ops {
            buf.extend_from_slice(&frame(&serde_json::to_vec(op).map_err(io_err)?));
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()
    }

    /// Replace the file with the live entries only.
    fn rewrite(&mut self) -> std::io::Result<()> {
        let mut ops = Vec::new();
        if let Some(p) = self.last_purged {
            ops.push(LogOp::Purge(p));
        }
        let mut buf = Vec::new();
        for op in ops {
            buf.extend_from_slice(&frame(&serde_json::to_vec(&op).map_err(io_err)?));
        }
        for e in self.entries.values() {
            let op = LogOp::Append(e.clone());
            buf.extend_from_slice(&frame(&serde_json::to_vec(&op).map_err(io_err)?));
        }
        let path = Self::log_path(&self.dir);
        write_atomic(&path, &buf)?;
        self.file = OpenOptions::new().append(true).open(&path)?;
        self.dead_frames = 0;
        Ok(())
    }

    fn maybe_rewrite(&mut self) -> std::io::Result<()> {
        if self.dead_frames >= LOG_DEAD_FRAMES_BEFORE_REWRITE
            && self.dead_frames > self.entries.len()
        {
            self.rewrite()?;
        }
        Ok(())
    }
}

/// The Raft log and vote (see the module docs). Cloned handles share one state.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

impl LogStore {
    /// Open (or create) the log under `dir`, replaying it.
    pub fn open(dir: &Path) -> anyhow::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let path = LogInner::log_path(dir);
        let bytes = read_optional(&path)?.unwrap_or_default();
        let mut entries = BTreeMap::new();
        let mut last_purged = None;
        let mut pos = 0;
        let mut frames = 0usize;
        while bytes.len() - pos >= 8 {
            let len =
                u32::from_be_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]])
                    as usize;
            let crc = u32::from_be_bytes([
                bytes[pos + 4],
                bytes[pos + 5],
                bytes[pos + 6],
                bytes[pos + 7],
            ]);
            if len > LOG_FRAME_BYTES_MAX || bytes.len() - pos - 8 < len {
                break;
            }
            let body = &bytes[pos + 8..pos + 8 + len];
            if crc_fast::crc32_iscsi(body) != crc {
                break;
            }
            let Ok(op) = serde_json::from_slice::<LogOp>(body) else {
                break;
            };
            match op {
                LogOp::Append(e) => {
                    entries.insert(e.log_id.index, e);
                }
                LogOp::Truncate(index) => {
                    entries.split_off(&index);
                }
                LogOp::Purge(id) => {
                    entries = entries.split_off(&(id.index + 1));
                    last_purged = Some(id);
                }
            }
            frames += 1;
            pos += 8 + len;
        }
        if pos < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                valid_bytes = pos,
                dropped_bytes = bytes.len() - pos,
                "cutting a torn or corrupt tail off the metadata log"
            );
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?;
            f.set_len(pos as u64)?;
            f.sync_all()?;
        }
        let file = OpenOptions::new().append(true).create(true).open(&path)?;
        let vote = read_optional(&dir.join("vote"))?
            .map(|b| serde_json::from_slice(&b))
            .transpose()?;
        let committed = read_optional(&dir.join("committed"))?
            .map(|b| serde_json::from_slice(&b))
            .transpose()?;
        let dead_frames = frames.saturating_sub(entries.len());
        Ok(LogStore {
            inner: Arc::new(Mutex::new(LogInner {
                dir: dir.to_path_buf(),
                file,
                entries,
                last_purged,
                vote,
                committed,
                dead_frames,
            })),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        // A panic while holding it would have stopped the controller thread anyway.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, SError> {
        let inner = self.lock();
        Ok(inner.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, SError> {
        let inner = self.lock();
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(inner.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), SError> {
        let mut inner = self.lock();
        let bytes = serde_json::to_vec(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        write_atomic(&inner.dir.join("vote"), &bytes)
            .map_err(|e| StorageIOError::write_vote(&e))?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, SError> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), SError> {
        let mut inner = self.lock();
        let bytes = serde_json::to_vec(&committed).map_err(|e| StorageIOError::write(&e))?;
        // Not fsync'ed on purpose: losing it only means re-learning the commit point from the
        // leader; it lets a restart apply what was committed without waiting for one.
        let path = inner.dir.join("committed");
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| StorageIOError::write(&e))?;
        inner.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, SError> {
        Ok(self.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), SError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.lock();
        let entries: Vec<_> = entries.into_iter().collect();
        let ops: Vec<LogOp> = entries.iter().cloned().map(LogOp::Append).collect();
        let result = inner.write_ops(&ops);
        if result.is_ok() {
            for e in entries {
                if inner.entries.insert(e.log_id.index, e).is_some() {
                    inner.dead_frames += 1;
                }
            }
        }
        let failed = result.as_ref().err().map(StorageIOError::write_logs);
        callback.log_io_completed(result);
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), SError> {
        let mut inner = self.lock();
        inner
            .write_ops(&[LogOp::Truncate(log_id.index)])
            .map_err(|e| StorageIOError::write_logs(&e))?;
        let gone = inner.entries.split_off(&log_id.index);
        inner.dead_frames += gone.len() + 1;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), SError> {
        let mut inner = self.lock();
        inner
            .write_ops(&[LogOp::Purge(log_id)])
            .map_err(|e| StorageIOError::write_logs(&e))?;
        let kept = inner.entries.split_off(&(log_id.index + 1));
        let gone = std::mem::replace(&mut inner.entries, kept);
        inner.dead_frames += gone.len() + 1;
        inner.last_purged = Some(log_id);
        inner
            .maybe_rewrite()
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}

/// The stored snapshot: its meta and the encoded image.
#[derive(Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Node>,
    data: Vec<u8>,
}

impl StoredSnapshot {
    fn encode(&self) -> std::io::Result<Vec<u8>> {
        let meta = serde_json::to_vec(&self.meta).map_err(io_err)?;
        let mut out = Vec::with_capacity(4 + meta.len() + self.data.len());
        out.extend_from_slice(&u32::try_from(meta.len()).map_err(io_err)?.to_be_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&self.data);
        Ok(out)
    }

    fn decode(bytes: &[u8]) -> anyhow::Result<StoredSnapshot> {
        anyhow::ensure!(bytes.len() >= 4, "snapshot file too short");
        let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        anyhow::ensure!(bytes.len() >= 4 + len, "snapshot file truncated");
        Ok(StoredSnapshot {
            meta: serde_json::from_slice(&bytes[4..4 + len])?,
            data: bytes[4 + len..].to_vec(),
        })
    }
}

struct SmInner {
    dir: PathBuf,
    image: ClusterImage,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Node>,
    snapshot: Option<StoredSnapshot>,
    snapshot_seq: u64,
}

/// The metadata state machine (see the module docs). Cloned handles share one state.
#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<Mutex<SmInner>>,
    images: Arc<watch::Sender<Arc<MetaSnapshot>>>,
}

impl StateMachine {
    /// Open the state machine under `dir`: the last snapshot, if any, else an empty image.
    pub fn open(dir: &Path, view: NodeView) -> anyhow::Result<StateMachine> {
        std::fs::create_dir_all(dir)?;
        let (image, last_applied, membership, snapshot) =
            match read_optional(&dir.join("snapshot"))? {
                Some(bytes) => {
                    let stored = StoredSnapshot::decode(&bytes)?;
                    let image = ClusterImage::decode(view, &stored.data)?;
                    (
                        image,
                        stored.meta.last_log_id,
                        stored.meta.last_membership.clone(),
                        Some(stored),
                    )
                }
                None => (
                    ClusterImage::empty(view),
                    None,
                    StoredMembership::default(),
                    None,
                ),
            };
        let (tx, _) = watch::channel(Arc::new(image.snapshot()));
        Ok(StateMachine {
            inner: Arc::new(Mutex::new(SmInner {
                dir: dir.to_path_buf(),
                image,
                last_applied,
                membership,
                snapshot,
                snapshot_seq: 0,
            })),
            images: Arc::new(tx),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SmInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every image the state machine reaches, newest first.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetaSnapshot>> {
        self.images.subscribe()
    }

    /// The current image as this node sees it.
    pub fn snapshot(&self) -> Arc<MetaSnapshot> {
        self.images.borrow().clone()
    }

    /// The current image as broker `node_id` sees it.
    pub fn snapshot_for(&self, node_id: i32) -> MetaSnapshot {
        self.lock().image.snapshot_for(node_id)
    }

    pub fn applied_index(&self) -> u64 {
        self.lock().last_applied.map_or(0, |l| l.index)
    }

    pub fn is_bootstrapped(&self) -> bool {
        self.lock().image.is_bootstrapped()
    }

    fn publish(&self, inner: &SmInner) {
        self.images.send_replace(Arc::new(inner.image.snapshot()));
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>), SError> {
        let inner = self.lock();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, SError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.lock();
        let mut out = Vec::new();
        for entry in entries {
            if inner
                .last_applied
                .is_some_and(|l| l.index >= entry.log_id.index)
            {
                // Already in the image (a snapshot covered it).
                out.push(());
                continue;
            }
            match &entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(cmd) => inner.image.apply(entry.log_id.index, &cmd.records),
                EntryPayload::Membership(m) => {
                    inner.membership = StoredMembership::new(Some(entry.log_id), m.clone())
                }
            }
            inner.image.applied = entry.log_id.index;
            inner.last_applied = Some(entry.log_id);
            out.push(());
        }
        self.publish(&inner);
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, SError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), SError> {
        let data = snapshot.into_inner();
        let mut inner = self.lock();
        let image = ClusterImage::decode(inner.image.view().clone(), &data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        let bytes = stored
            .encode()
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        write_atomic(&inner.dir.join("snapshot"), &bytes)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        inner.image = image;
        inner.image.applied = meta.last_log_id.map_or(0, |l| l.index);
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        inner.snapshot = Some(stored);
        self.publish(&inner);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SError> {
        let inner = self.lock();
        Ok(inner.snapshot.as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.clone())),
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SError> {
        // Copy the image under the lock (cheap: topics are shared), encode it off the
        // controller thread so heartbeats keep flowing.
        let (image, last_applied, membership, dir, seq) = {
            let mut inner = self.lock();
            inner.snapshot_seq += 1;
            (
                inner.image.clone(),
                inner.last_applied,
                inner.membership.clone(),
                inner.dir.clone(),
                inner.snapshot_seq,
            )
        };
        let snapshot_id = format!(
            "{}-{}-{seq}",
            last_applied.map_or(0, |l| l.leader_id.term),
            last_applied.map_or(0, |l| l.index)
        );
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        let meta_for_encode = meta.clone();
        let stored = tokio::task::spawn_blocking(move || -> std::io::Result<StoredSnapshot> {
            let data = image.encode().map_err(io_err)?;
            let stored = StoredSnapshot {
                meta: meta_for_encode,
                data,
            };
            write_atomic(&dir.join("snapshot"), &stored.encode()?)?;
            Ok(stored)
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &io_err(e)))?
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        let snapshot = Snapshot {
            meta: stored.meta.clone(),
            snapshot: Box::new(Cursor::new(stored.data.clone())),
        };
        self.lock().snapshot = Some(stored);
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::topic_config::BrokerDefaults;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn log_replays_appends_truncations_purges_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        rt().block_on(async {
            let mut log = LogStore::open(dir.path()).unwrap();
            {
                let mut inner = log.lock();
                let ops: Vec<_> = (1..=5).map(|i| LogOp::Append(entry(1, i))).collect();
                inner.write_ops(&ops).unwrap();
                for i in 1..=5 {
                    inner.entries.insert(i, entry(1, i));
                }
            }
            log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 4))
                .await
                .unwrap();
            log.purge(LogId::new(CommittedLeaderId::new(1, 1), 1))
                .await
                .unwrap();
            log.save_vote(&Vote::new(3, 1)).await.unwrap();
        });
        // A torn frame at the end.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("log"))
            .unwrap();
        f.write_all(&[0, 0, 0, 50, 1, 2, 3]).unwrap();
        drop(f);
        rt().block_on(async {
            let mut log = LogStore::open(dir.path()).unwrap();
            let got: Vec<u64> = log
                .try_get_log_entries(0..100)
                .await
                .unwrap()
                .iter()
                .map(|e| e.log_id.index)
                .collect();
            assert_eq!(got, vec![2, 3]);
            let state = log.get_log_state().await.unwrap();
            assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(1));
            assert_eq!(state.last_log_id.map(|l| l.index), Some(3));
            assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 1)));
            // The torn tail was cut: appending again leaves a clean file.
            log.lock().rewrite().unwrap();
        });
        let again = LogStore::open(dir.path()).unwrap();
        assert_eq!(again.lock().entries.len(), 2);
    }

    #[test]
    fn snapshots_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let view = NodeView {
            node_id: 1,
            shards: 1,
            statics: BrokerDefaults::default(),
        };
        rt().block_on(async {
            let mut sm = StateMachine::open(dir.path(), view.clone()).unwrap();
            let cmd = super::super::MetaCommand {
                records: vec![crate::cluster::image::MetaRecord::ProducerIds { reserved_end: 77 }],
            };
            sm.apply(vec![Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), 1),
                payload: EntryPayload::Normal(cmd),
            }])
            .await
            .unwrap();
            assert_eq!(sm.snapshot().producer_ids_reserved_end, 77);
            sm.build_snapshot().await.unwrap();
        });
        let sm = StateMachine::open(dir.path(), view).unwrap();
        assert_eq!(sm.applied_index(), 1);
        assert_eq!(sm.snapshot().producer_ids_reserved_end, 77);
    }
}
