//! Bounded hardware probes: O_DIRECT disk bandwidth/IOPS/fdatasync latency, loopback TCP.
//!
//! These give the "physical limit" that benchmarks compare Ringtail against. Every phase stops
//! at a byte budget or a time budget, whichever comes first, so a probe never runs away on a slow
//! disk. Plain std + libc: no glommio, so the numbers do not depend on the runtime being measured.

use std::alloc::Layout;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::sys;
use crate::TuningError;

const ALIGN: usize = 4096;
const MIB: usize = 1 << 20;
/// Largest write size [`probe_loopback`] accepts.
pub const LOOPBACK_WRITE_BYTES_MAX: usize = 64 << 20;
/// Longest duration [`probe_loopback`] accepts.
pub const LOOPBACK_DURATION_MAX: Duration = Duration::from_secs(60);

/// Bounds for [`probe_disk`].
#[derive(Debug, Clone, Serialize)]
pub struct ProbeOptions {
    /// Largest file the sequential phases write (also bounds the read and random-read region).
    /// Rounded down to a multiple of 1 MiB, at least 1 MiB.
    pub file_bytes_max: u64,
    /// Time budget of each of the seven phases.
    pub phase_duration_max: Duration,
    /// Most fdatasync samples taken.
    pub fdatasync_samples_max: usize,
    /// Concurrent random readers (each at queue depth 1, so this is the queue depth).
    pub random_read_threads: usize,
}

impl Default for ProbeOptions {
    /// 256 MiB, 1 s per phase (about 7 s in all), 1000 fdatasyncs, 4 random readers.
    fn default() -> Self {
        ProbeOptions {
            file_bytes_max: 256 << 20,
            phase_duration_max: Duration::from_secs(1),
            fdatasync_samples_max: 1000,
            random_read_threads: 4,
        }
    }
}

/// What [`probe_disk`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct DiskProbe {
    pub dir: PathBuf,
    pub fs_type: String,
    /// Block device under `dir` (`vda`, `nvme0n1`), if any.
    pub device: Option<String>,
    /// Whether the probe used O_DIRECT (false: the filesystem refused it; numbers then include
    /// the page cache and are not the device's).
    pub direct_io: bool,
    /// Sequential O_DIRECT writes of 1 MiB, appending to a fresh file (no fsync in the timing).
    pub seq_write_1m_bytes_per_sec: f64,
    /// Same with 16 KiB writes (a small produce batch).
    pub seq_write_16k_bytes_per_sec: f64,
    /// Sequential O_DIRECT reads of 1 MiB of the file written by the first phase.
    pub seq_read_1m_bytes_per_sec: f64,
    /// Random aligned 4 KiB O_DIRECT reads over that file, `rand_read_threads` at a time.
    pub rand_read_4k_iops: f64,
    pub rand_read_threads: usize,
    /// fdatasync after each 4 KiB O_DIRECT write into fallocate-preallocated space (the acks=all
    /// path of a preallocated segment). On ext4 this includes a journal commit per call.
    pub fdatasync_p50_us: f64,
    pub fdatasync_p99_us: f64,
    pub fdatasync_max_us: f64,
    pub fdatasync_samples: usize,
    /// The same, overwriting blocks that were already written and synced (no metadata change:
    /// only the device cache flush).
    pub fdatasync_overwrite: SyncLatency,
    /// The same, appending past the end of the file (size change on every call).
    pub fdatasync_append: SyncLatency,
    pub bytes_written: u64,
    pub duration_secs: f64,
    /// 1-minute load average when the probe ended: other work on the host skews every number
    /// above, so keep it next to them.
    pub load_average_1m: Option<f64>,
    /// `some avg10` of /proc/pressure/io when the probe ended (% of time tasks waited on I/O).
    pub io_pressure_some_avg10: Option<f64>,
}

/// Probe the disk under `dir` with temporary files (removed before returning, also on error).
pub fn probe_disk(dir: &Path, opts: ProbeOptions) -> Result<DiskProbe, TuningError> {
    if opts.phase_duration_max.is_zero() || opts.fdatasync_samples_max == 0 {
        return Err(TuningError::InvalidArgument(
            "probe phase duration and fdatasync samples must be positive".into(),
        ));
    }
    let threads = opts.random_read_threads.clamp(1, 64);
    let file_bytes = (opts.file_bytes_max / MIB as u64).max(1) * MIB as u64;
    let started = Instant::now();
    let (fs_type, _) = sys::fs_type(dir).map_err(|e| TuningError::io("statfs", e))?;
    let device = sys::block_device_of(dir).map(|(name, _)| name);

    // Phase 1: 1 MiB sequential writes. Also creates the file the read phases use.
    let (data, direct_io) = match TempFile::create_in(dir, true) {
        Ok(f) => (f, true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (
            TempFile::create_in(dir, false).map_err(|e| TuningError::io("create probe file", e))?,
            false,
        ),
        Err(e) => return Err(TuningError::io("create O_DIRECT probe file", e)),
    };
    let mut bytes_written = 0u64;
    let (w1m, n1m) = seq_write(&data.file, MIB, file_bytes, opts.phase_duration_max)?;
    bytes_written += n1m;
    data.file
        .sync_data()
        .map_err(|e| TuningError::io("fdatasync probe file", e))?;

    // Phase 2: 16 KiB sequential writes on a fresh file, so both phases allocate blocks alike.
    let w16k = {
        let small = TempFile::create_in(dir, direct_io)
            .map_err(|e| TuningError::io("create probe file", e))?;
        let (rate, n) = seq_write(&small.file, 16 << 10, file_bytes, opts.phase_duration_max)?;
        bytes_written += n;
        rate
    };

    // Phase 3 and 4: reads of what phase 1 wrote.
    let r1m = seq_read(&data.file, MIB, n1m, opts.phase_duration_max)?;
    let iops = random_reads(&data.file, n1m, threads, opts.phase_duration_max)?;

    // Phases 5-7: fdatasync latency, on the three kinds of blocks a segment write can hit.
    let (fsync_us, n) = fdatasync_latencies(dir, direct_io, &opts, SyncTarget::Preallocated)?;
    bytes_written += n;
    let (overwrite_us, n) = fdatasync_latencies(dir, direct_io, &opts, SyncTarget::Overwrite)?;
    bytes_written += n;
    let (append_us, n) = fdatasync_latencies(dir, direct_io, &opts, SyncTarget::Append)?;
    bytes_written += n;
    drop(data);

    let p = |q: f64| percentile(&fsync_us, q);
    let probe = DiskProbe {
        dir: dir.to_path_buf(),
        fs_type: fs_type.to_string(),
        device,
        direct_io,
        seq_write_1m_bytes_per_sec: w1m,
        seq_write_16k_bytes_per_sec: w16k,
        seq_read_1m_bytes_per_sec: r1m,
        rand_read_4k_iops: iops,
        rand_read_threads: threads,
        fdatasync_p50_us: p(0.50),
        fdatasync_p99_us: p(0.99),
        fdatasync_max_us: p(1.0),
        fdatasync_samples: fsync_us.len(),
        fdatasync_overwrite: SyncLatency::from_sorted(&overwrite_us),
        fdatasync_append: SyncLatency::from_sorted(&append_us),
        bytes_written,
        duration_secs: started.elapsed().as_secs_f64(),
        load_average_1m: sys::read_trimmed("/proc/loadavg")
            .and_then(|s| s.split_whitespace().next()?.parse().ok()),
        io_pressure_some_avg10: sys::read_trimmed("/proc/pressure/io")
            .as_deref()
            .and_then(parse_pressure_some_avg10),
    };
    debug_assert!(probe.seq_write_1m_bytes_per_sec.is_finite());
    Ok(probe)
}

/// Append `chunk`-sized writes until `bytes_max` or `duration` is reached.
/// Returns (bytes/s, bytes written).
fn seq_write(
    file: &File,
    chunk: usize,
    bytes_max: u64,
    duration: Duration,
) -> Result<(f64, u64), TuningError> {
    let mut buf = AlignedBuf::new(chunk, ALIGN).map_err(|e| TuningError::io("allocate", e))?;
    fill_pseudo_random(buf.as_mut_slice(), chunk as u64);
    let start = Instant::now();
    let mut offset = 0u64;
    while offset + chunk as u64 <= bytes_max && (offset == 0 || start.elapsed() < duration) {
        file.write_all_at(buf.as_slice(), offset)
            .map_err(|e| TuningError::io(format!("write {chunk} bytes at {offset}"), e))?;
        offset += chunk as u64;
    }
    Ok((rate(offset, start.elapsed()), offset))
}

fn seq_read(file: &File, chunk: usize, len: u64, duration: Duration) -> Result<f64, TuningError> {
    let mut buf = AlignedBuf::new(chunk, ALIGN).map_err(|e| TuningError::io("allocate", e))?;
    let start = Instant::now();
    let mut offset = 0u64;
    while offset + chunk as u64 <= len && (offset == 0 || start.elapsed() < duration) {
        file.read_exact_at(buf.as_mut_slice(), offset)
            .map_err(|e| TuningError::io(format!("read {chunk} bytes at {offset}"), e))?;
        offset += chunk as u64;
    }
    Ok(rate(offset, start.elapsed()))
}

fn random_reads(
    file: &File,
    len: u64,
    threads: usize,
    duration: Duration,
) -> Result<f64, TuningError> {
    let blocks = (len / ALIGN as u64).max(1);
    let file = Arc::new(
        file.try_clone()
            .map_err(|e| TuningError::io("dup probe file", e))?,
    );
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let file = Arc::clone(&file);
            std::thread::spawn(move || -> io::Result<u64> {
                let mut buf = AlignedBuf::new(ALIGN, ALIGN)?;
                let mut rng = XorShift::new(0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1));
                let mut done = 0u64;
                // At least one read each, so a slow disk still gives a number.
                while done == 0 || start.elapsed() < duration {
                    let offset = (rng.next() % blocks) * ALIGN as u64;
                    file.read_exact_at(buf.as_mut_slice(), offset)?;
                    done += 1;
                }
                Ok(done)
            })
        })
        .collect();
    let mut total = 0u64;
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(n)) => total += n,
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(_) => first_err = first_err.or(Some(io::Error::other("reader thread panicked"))),
        }
    }
    let elapsed = start.elapsed();
    if let Some(e) = first_err {
        return Err(TuningError::io("random 4 KiB read", e));
    }
    Ok(total as f64 / elapsed.as_secs_f64().max(1e-9))
}

/// What the 4 KiB writes before each fdatasync land on. On ext4 the three differ by an order of
/// magnitude: writing into unwritten (fallocated) extents or extending the file changes metadata,
/// so fdatasync must commit the journal; overwriting written blocks only flushes the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SyncTarget {
    /// Space reserved with fallocate(mode 0) (unwritten extents), like a preallocated segment.
    Preallocated,
    /// Blocks already written and synced (e.g. a segment pre-zeroed or recycled).
    Overwrite,
    /// Appending past the end of the file (no preallocation).
    Append,
}

/// fdatasync latency in µs after each 4 KiB write (sorted), and the bytes written.
fn fdatasync_latencies(
    dir: &Path,
    direct_io: bool,
    opts: &ProbeOptions,
    target: SyncTarget,
) -> Result<(Vec<f64>, u64), TuningError> {
    let tmp =
        TempFile::create_in(dir, direct_io).map_err(|e| TuningError::io("create probe file", e))?;
    let samples = opts.fdatasync_samples_max.min(1 << 20);
    let span = samples * ALIGN;
    let mut buf = AlignedBuf::new(ALIGN, ALIGN).map_err(|e| TuningError::io("allocate", e))?;
    fill_pseudo_random(buf.as_mut_slice(), 7);
    let mut written = 0u64;
    match target {
        SyncTarget::Preallocated => {
            // If fallocate is unsupported here, the writes below extend the file instead, which
            // is what a segment on this filesystem would do too: the result is ignored.
            // SAFETY: fallocate on an fd we own; no memory is passed.
            let _ = unsafe { libc::fallocate(tmp.file.as_raw_fd(), 0, 0, span as libc::off_t) };
        }
        SyncTarget::Overwrite => {
            let mut offset = 0u64;
            while offset < span as u64 {
                tmp.file
                    .write_all_at(buf.as_slice(), offset)
                    .map_err(|e| TuningError::io("pre-write 4 KiB", e))?;
                offset += ALIGN as u64;
            }
            written += offset;
        }
        SyncTarget::Append => {}
    }
    tmp.file
        .sync_all()
        .map_err(|e| TuningError::io("fsync probe file", e))?;
    let start = Instant::now();
    let mut lat_us = Vec::with_capacity(samples);
    while lat_us.len() < samples && (lat_us.is_empty() || start.elapsed() < opts.phase_duration_max)
    {
        let offset = (lat_us.len() * ALIGN) as u64;
        tmp.file
            .write_all_at(buf.as_slice(), offset)
            .map_err(|e| TuningError::io("write 4 KiB", e))?;
        let t = Instant::now();
        tmp.file
            .sync_data()
            .map_err(|e| TuningError::io("fdatasync", e))?;
        lat_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    lat_us.sort_by(f64::total_cmp);
    written += (lat_us.len() * ALIGN) as u64;
    Ok((lat_us, written))
}

/// Latency distribution of one fdatasync variant, in µs.
#[derive(Debug, Clone, Serialize)]
pub struct SyncLatency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub samples: usize,
}

impl SyncLatency {
    fn from_sorted(v: &[f64]) -> SyncLatency {
        SyncLatency {
            p50_us: percentile(v, 0.50),
            p99_us: percentile(v, 0.99),
            max_us: percentile(v, 1.0),
            samples: v.len(),
        }
    }
}

/// `some avg10=50.99 avg60=...` -> 50.99.
fn parse_pressure_some_avg10(s: &str) -> Option<f64> {
    let line = s.lines().find(|l| l.starts_with("some "))?;
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix("avg10="))?
        .parse()
        .ok()
}

/// Nearest-rank percentile of sorted values; 0 for none.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn rate(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Loopback TCP bandwidth: one writer (this thread) and one reader thread on 127.0.0.1,
/// `write_size` bytes per `write` call, for about `duration`. Returns bytes/s as seen by the
/// reader (first write to end of stream).
pub fn probe_loopback(write_size: usize, duration: Duration) -> Result<f64, TuningError> {
    if write_size == 0 || write_size > LOOPBACK_WRITE_BYTES_MAX {
        return Err(TuningError::InvalidArgument(format!(
            "loopback write size {write_size} must be in 1..={LOOPBACK_WRITE_BYTES_MAX}"
        )));
    }
    if duration.is_zero() || duration > LOOPBACK_DURATION_MAX {
        return Err(TuningError::InvalidArgument(format!(
            "loopback duration {duration:?} must be in (0, {LOOPBACK_DURATION_MAX:?}]"
        )));
    }
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| TuningError::io("bind 127.0.0.1", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| TuningError::io("local_addr", e))?;
    // Connect before accepting: the kernel completes the handshake into the backlog, so neither
    // side can block forever waiting for the other.
    let mut writer = TcpStream::connect(addr).map_err(|e| TuningError::io("connect", e))?;
    let (mut reader, _) = listener
        .accept()
        .map_err(|e| TuningError::io("accept", e))?;
    let idle_limit = Duration::from_secs(30);
    reader
        .set_read_timeout(Some(idle_limit))
        .map_err(|e| TuningError::io("set_read_timeout", e))?;
    writer
        .set_write_timeout(Some(idle_limit))
        .map_err(|e| TuningError::io("set_write_timeout", e))?;

    let read_size = write_size.clamp(64 << 10, 4 << 20);
    let reader_thread = std::thread::spawn(move || -> io::Result<(u64, Instant)> {
        let mut buf = vec![0u8; read_size];
        let mut total = 0u64;
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return Ok((total, Instant::now())),
                Ok(n) => total += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    });

    let mut payload = vec![0u8; write_size];
    fill_pseudo_random(&mut payload, 3);
    let start = Instant::now();
    let mut write_err = None;
    while start.elapsed() < duration {
        if let Err(e) = writer.write_all(&payload) {
            write_err = Some(e);
            break;
        }
    }
    // Closing our side ends the reader's loop even after a write error.
    let _ = writer.shutdown(Shutdown::Write);
    let joined = reader_thread.join();
    if let Some(e) = write_err {
        return Err(TuningError::io("loopback write", e));
    }
    let (bytes, end) = match joined {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return Err(TuningError::io("loopback read", e)),
        Err(_) => {
            return Err(TuningError::io(
                "loopback read",
                io::Error::other("reader thread panicked"),
            ))
        }
    };
    Ok(rate(bytes, end.saturating_duration_since(start)))
}

/// A heap buffer with a given alignment (O_DIRECT needs the address aligned too).
pub(crate) struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl AlignedBuf {
    /// A zeroed buffer of `len` (> 0) bytes aligned to `align` (a power of two).
    pub(crate) fn new(len: usize, align: usize) -> io::Result<AlignedBuf> {
        let layout = Layout::from_size_align(len, align)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "zero-length buffer",
            ));
        }
        // SAFETY: `layout` has a non-zero size (checked above).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        Ok(AlignedBuf { ptr, layout })
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points to `layout.size()` initialised (zeroed) bytes owned by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout, freed once.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

// SAFETY: AlignedBuf owns its allocation exclusively, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}

/// A uniquely named file in a directory, removed on drop.
pub(crate) struct TempFile {
    pub(crate) file: File,
    path: PathBuf,
}

impl TempFile {
    pub(crate) fn create_in(dir: &Path, direct: bool) -> io::Result<TempFile> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".ringtail-probe-{}-{seq}.tmp", std::process::id()));
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create_new(true);
        if direct {
            opts.custom_flags(libc::O_DIRECT);
        }
        match opts.open(&path) {
            Ok(file) => Ok(TempFile { file, path }),
            Err(e) => {
                // The kernel creates the file before it rejects O_DIRECT (EINVAL on ramfs, old
                // tmpfs): remove what we created. AlreadyExists means it is not ours.
                if e.kind() != io::ErrorKind::AlreadyExists {
                    let _ = std::fs::remove_file(&path);
                }
                Err(e)
            }
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Incompressible filler, so a compressing or deduplicating layer cannot flatter the numbers.
fn fill_pseudo_random(buf: &mut [u8], seed: u64) {
    let mut rng = XorShift::new(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
    for chunk in buf.chunks_mut(8) {
        let v = rng.next().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_opts() -> ProbeOptions {
        ProbeOptions {
            file_bytes_max: 8 << 20,
            phase_duration_max: Duration::from_millis(200),
            fdatasync_samples_max: 20,
            random_read_threads: 2,
        }
    }

    #[test]
    fn disk_probe_is_sane_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let p = probe_disk(dir.path(), small_opts()).unwrap();
        for v in [
            p.seq_write_1m_bytes_per_sec,
            p.seq_write_16k_bytes_per_sec,
            p.seq_read_1m_bytes_per_sec,
            p.rand_read_4k_iops,
            p.fdatasync_p50_us,
            p.fdatasync_p99_us,
        ] {
            assert!(v.is_finite() && v > 0.0, "{p:?}");
        }
        assert!(p.fdatasync_p50_us <= p.fdatasync_p99_us);
        assert!(p.fdatasync_p99_us <= p.fdatasync_max_us);
        assert!(p.fdatasync_samples >= 1 && p.fdatasync_samples <= 20);
        for l in [&p.fdatasync_overwrite, &p.fdatasync_append] {
            assert!(l.samples >= 1 && l.samples <= 20);
            assert!(l.p50_us > 0.0 && l.p50_us <= l.p99_us && l.p99_us <= l.max_us);
        }
        assert!(p.bytes_written >= (1 << 20) && p.bytes_written <= 2 * (8 << 20) + 4 * 20 * 4096);
        if p.fs_type == "ext4" || p.fs_type == "xfs" {
            assert!(p.direct_io);
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(serde_json::to_string(&p)
            .unwrap()
            .contains("seq_write_1m_bytes_per_sec"));
    }

    #[test]
    fn disk_probe_errors_on_missing_dir() {
        assert!(probe_disk(Path::new("/nonexistent/ringtail"), small_opts()).is_err());
        let mut o = small_opts();
        o.fdatasync_samples_max = 0;
        assert!(probe_disk(Path::new("/tmp"), o).is_err());
    }

    #[test]
    fn loopback_is_sane() {
        for size in [64 << 10, 1 << 20] {
            let bps = probe_loopback(size, Duration::from_millis(200)).unwrap();
            assert!(bps.is_finite() && bps > 0.0, "{size}: {bps}");
        }
        assert!(probe_loopback(0, Duration::from_millis(1)).is_err());
        assert!(probe_loopback(1024, Duration::ZERO).is_err());
        assert!(probe_loopback(LOOPBACK_WRITE_BYTES_MAX + 1, Duration::from_millis(1)).is_err());
    }

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
    }

    #[test]
    fn pressure_line() {
        let s = "some avg10=50.99 avg60=50.15 avg300=32.94 total=171001092\n\
                 full avg10=0.00 avg60=0.00 avg300=0.00 total=6440350\n";
        assert_eq!(parse_pressure_some_avg10(s), Some(50.99));
        assert_eq!(parse_pressure_some_avg10("full avg10=1.0"), None);
        assert_eq!(parse_pressure_some_avg10(""), None);
    }

    #[test]
    fn aligned_buf() {
        let mut b = AlignedBuf::new(8192, 4096).unwrap();
        assert_eq!(b.as_slice().as_ptr() as usize % 4096, 0);
        assert!(b.as_slice().iter().all(|&x| x == 0));
        b.as_mut_slice()[8191] = 1;
        assert_eq!(b.as_slice().len(), 8192);
        assert!(AlignedBuf::new(0, 4096).is_err());
        assert!(AlignedBuf::new(10, 3).is_err());
    }
}
