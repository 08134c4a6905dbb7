//! Host checks, OS tuning, core placement and hardware probes for Ringtail.
//!
//! This crate owns everything Ringtail needs to know about the machine it runs on, and nothing
//! about Kafka, storage formats or sockets beyond a loopback probe. It depends on no other
//! Ringtail crate, so the broker, the bench harness and scripts can all use it.
//!
//! What it owns, in the order the broker uses it at start-up:
//!
//! 1. [`startup_checks`]: can this host run Ringtail at all? Kernel version, io_uring
//!    availability (the same opcode probe glommio runs, but reported instead of panicking),
//!    `RLIMIT_MEMLOCK`, `RLIMIT_NOFILE`, and whether the data directory's filesystem takes
//!    `O_DIRECT` writes and `fallocate`. Each [`Check`] says what it found and, when it is not
//!    fine, exactly what to change.
//! 2. [`plan_io_memory`]: how much `io_memory` each glommio executor may register without
//!    exceeding `RLIMIT_MEMLOCK` (glommio registers it on 3 rings per executor, and the kernel
//!    also charges the rings). The plan mirrors what glommio 0.9 and the kernel were measured to
//!    do, and never leaves executors half-registered; see the [`memlock`] module docs.
//! 3. [`plan_placement`]: which CPUs run shards and which are left to IRQs and the OS.
//! 4. [`tune_report`] / [`tune_apply`] (`ringtail tune`): OS settings that matter for a
//!    thread-per-core, O_DIRECT broker, with current and recommended values. Nothing is written
//!    unless [`tune_apply`] is called; on a VM many knobs are absent or read-only and are reported,
//!    never treated as failures.
//! 5. [`probe_disk`] and [`probe_loopback`]: bounded measurements of the physical limits the
//!    benchmarks compare against (O_DIRECT bandwidth, random-read IOPS, fdatasync latency,
//!    loopback TCP bandwidth).
//!
//! Invariants: the check and report functions never modify the system (the only writes are
//! temporary files inside the given directory, removed before returning; [`startup_checks`]
//! raises this process's own soft rlimits to the hard ones). Only [`tune_apply`] and the explicit
//! `raise_*` functions change settings. Every probe is bounded in bytes and time.
//!
//! Linux only: everything here reads procfs/sysfs or issues Linux syscalls. See
//! `linux-only.md` at the repository root for the requirements and the exact messages.

pub mod checks;
pub mod cpus;
pub mod memlock;
pub mod placement;
pub mod probe;
mod sys;
pub mod tune;

use serde::Serialize;

pub use checks::startup_checks;
pub use cpus::{format_cpu_list, online_cpus, parse_cpu_list, CpuListError};
pub use memlock::{
    glommio_effective_io_memory, has_cap_ipc_lock, memlock_limit, nofile_limit, plan_io_memory,
    plan_io_memory_for, raise_memlock_soft_limit, raise_nofile_soft_limit, IoMemoryPlan, Limit,
    LimitChange, GLOMMIO_DEFAULT_IO_MEMORY_BYTES, GLOMMIO_MIN_MEMLOCK_BYTES,
    GLOMMIO_RINGS_PER_EXECUTOR, GLOMMIO_RING_LOCKED_BYTES, IO_MEMORY_FLOOR_BYTES,
    MEMLOCK_HEADROOM_BYTES,
};
pub use placement::{plan_placement, plan_placement_for_count, Placement};
pub use probe::{probe_disk, probe_loopback, DiskProbe, ProbeOptions, SyncLatency};
pub use tune::{tune_apply, tune_report};

/// Outcome of one check or tuning item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As recommended, or not applicable on this host.
    Ok,
    /// Ringtail runs, but slower or less safely than it could; `fix` says how to improve it.
    Warn,
    /// Ringtail cannot run (or cannot run correctly) until `fix` is applied.
    Fail,
}

/// One finding about the host, printable as one log line or as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable, short identifier (`"io_uring"`, `"memlock"`, `"cpu_governor"`...).
    pub name: &'static str,
    pub status: Status,
    /// What was found, as one human sentence.
    pub detail: String,
    /// What to change, when `status` is not `Ok` (a command, a config line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Current value, when the item is a setting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// Recommended value, when the item is a setting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recommended: Option<String>,
    /// Whether [`tune_apply`] could change this setting from this process (the file exists and
    /// is writable, not on a read-only mount). `false` for pure checks.
    pub can_apply: bool,
}

impl Check {
    pub(crate) fn new(name: &'static str, status: Status, detail: impl Into<String>) -> Check {
        Check {
            name,
            status,
            detail: detail.into(),
            fix: None,
            current: None,
            recommended: None,
            can_apply: false,
        }
    }

    pub(crate) fn with_fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }

    pub(crate) fn with_values(
        mut self,
        current: impl Into<String>,
        recommended: impl Into<String>,
    ) -> Check {
        self.current = Some(current.into());
        self.recommended = Some(recommended.into());
        self
    }

    /// One log line: `[warn] memlock: ... (fix: ...)`.
    pub fn to_log_line(&self) -> String {
        let status = match self.status {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        match &self.fix {
            Some(fix) => format!("[{status}] {}: {} (fix: {fix})", self.name, self.detail),
            None => format!("[{status}] {}: {}", self.name, self.detail),
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_log_line())
    }
}

/// Whether any check failed (the broker refuses to start when this is true).
pub fn any_failed(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.status == Status::Fail)
}

/// Errors of the planning and probing functions.
#[derive(Debug, thiserror::Error)]
pub enum TuningError {
    /// glommio would refuse to start: its reactor checks the soft `RLIMIT_MEMLOCK` itself.
    #[error(
        "RLIMIT_MEMLOCK is {}; glommio refuses to start below {} (it checks the limit itself, \
         even for root). Fix: raise it: `ulimit -l unlimited` (at least `ulimit -l {min_kib}`) \
         in the shell that starts ringtail, `LimitMEMLOCK=infinity` in the systemd unit, or \
         `docker run --ulimit memlock=-1:-1`; `--cap-add IPC_LOCK` alone does not help here",
        memlock::fmt_bytes(*.limit_bytes),
        memlock::fmt_bytes(*.min_bytes)
    )]
    MemlockTooLow {
        limit_bytes: u64,
        min_bytes: u64,
        min_kib: u64,
    },
    /// Without CAP_IPC_LOCK the executors' rings alone need more locked memory than the limit:
    /// the executors past the limit would fail to start with ENOMEM.
    #[error(
        "RLIMIT_MEMLOCK is {} but {shards} shards need {} of locked memory for their io_uring \
         rings alone (3 rings x 16 KiB per shard, counted because the process lacks \
         CAP_IPC_LOCK): only {max_shards} shards could start, the others would fail with ENOMEM. \
         Fix: raise it (`ulimit -l unlimited`, `LimitMEMLOCK=infinity` in the systemd unit, \
         `docker run --ulimit memlock=-1:-1`), add CAP_IPC_LOCK (`docker run --cap-add \
         IPC_LOCK`), or use at most {max_shards} shards",
        memlock::fmt_bytes(*.limit_bytes),
        memlock::fmt_bytes(*.ring_bytes)
    )]
    MemlockTooLowForRings {
        shards: usize,
        limit_bytes: u64,
        ring_bytes: u64,
        max_shards: u64,
    },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A requested CPU is not online or not in this process's affinity mask.
    #[error("cpu {cpu} is not available to this process (available: {available})")]
    CpuNotAvailable { cpu: usize, available: String },
    #[error("no CPUs available to this process")]
    NoCpus,
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl TuningError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> TuningError {
        TuningError::Io {
            what: what.into(),
            source,
        }
    }
}
