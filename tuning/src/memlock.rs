//! Sizing glommio's `io_memory` from `RLIMIT_MEMLOCK`, and the resource limits around it.
//!
//! What glommio 0.9 actually does (`src/sys/uring.rs`, `Reactor::new`), per executor:
//!
//! 1. It reads the **soft** `RLIMIT_MEMLOCK` and returns `ReactorError::MemLockLimit` if it is
//!    below 512 KiB. This happens for every process, root included: `CAP_IPC_LOCK` does not help,
//!    only a higher limit does.
//! 2. It creates 3 rings (main, poll, latency) of depth 128. Without `CAP_IPC_LOCK` the kernel
//!    counts their memory against the limit as well: measured on Linux 6.18, 16 KiB per ring,
//!    48 KiB per executor (kernels before 5.12 also counted rings). When that does not fit, the
//!    executor fails to start with ENOMEM.
//! 3. It allocates `max(align_up(io_memory, 4 KiB), 64 KiB)` bytes as a buddy-allocator slab from
//!    which all its DMA buffers are carved (buffers that do not fit come from the heap).
//! 4. It registers that slab with `io_uring_register_buffers` on each of its 3 rings. Without
//!    `CAP_IPC_LOCK` each registration counts the slab's pages again, against the **user's**
//!    locked-memory total (shared by all processes of the same uid), limited by the soft
//!    `RLIMIT_MEMLOCK`. If any of the 3 fails, glommio logs
//!    `Error: registering buffers in the main ring. Skipping...` (or poll ring), undoes the others
//!    and keeps running: the slab is still used, only the fixed-buffer opcodes (READ_FIXED /
//!    WRITE_FIXED) are not. We measured no throughput loss without them.
//!
//! Registration is first come, first served between executors that start concurrently, and an
//! executor that registers can leave too little locked memory for a later executor's rings (which
//! then fails with ENOMEM, seen in tests). So the plan is all or nothing: either every
//! executor's slab fits (`3 x shards x (io_memory + 16 KiB) + 64 KiB headroom <= limit`) and all
//! register, or `io_memory` is chosen larger than the whole limit so that no registration can
//! succeed and every executor keeps its locked memory for its rings. The 64 KiB headroom covers
//! other io_uring users of the same uid, such as the start-up probe ring, whose teardown is
//! asynchronous.
//!
//! Measured with glommio 0.9 on Linux 6.18 (8 MiB limit, no CAP_IPC_LOCK): 2 x 1,396,736 bytes
//! (the limit / 6, rings not counted) left one executor unregistered; 2 x 1,368,064 bytes (this
//! plan) registered both; 8 executors at 8 MiB + 4 KiB all started, none registered; with a
//! 512 KiB limit, 10 executors started and the 11th failed with ENOMEM.

use serde::Serialize;

use crate::TuningError;

/// glommio refuses to start when the soft `RLIMIT_MEMLOCK` is below this (checked by glommio
/// itself, root included).
pub const GLOMMIO_MIN_MEMLOCK_BYTES: u64 = 512 * 1024;
/// glommio never allocates a smaller `io_memory` slab than this.
pub const GLOMMIO_MIN_IO_MEMORY_BYTES: usize = 64 * 1024;
/// glommio's default `io_memory` per executor.
pub const GLOMMIO_DEFAULT_IO_MEMORY_BYTES: usize = 10 << 20;
/// Rings per executor on which glommio registers the `io_memory` slab.
pub const GLOMMIO_RINGS_PER_EXECUTOR: u64 = 3;
/// Locked memory the kernel charges per glommio ring (depth 128: 8 KiB of SQEs plus the SQ/CQ
/// rings), measured on Linux 6.18 as the largest io_memory that still registers.
pub const GLOMMIO_RING_LOCKED_BYTES: u64 = 16 * 1024;
/// Kept free for other io_uring users of the same uid (e.g. the start-up probe ring, whose
/// teardown is asynchronous).
pub const MEMLOCK_HEADROOM_BYTES: u64 = 64 * 1024;
/// Smallest slab we shrink to in order to keep buffers registered. Below this, a registered slab
/// is too small for the storage layer's buffers to come from it, and an unregistered slab of
/// this size serves better than a registered tiny one (registration measured as no gain).
pub const IO_MEMORY_FLOOR_BYTES: usize = 512 * 1024;
const PAGE_BYTES: usize = 4096;

/// How much `io_memory` each glommio executor gets, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IoMemoryPlan {
    /// Value to pass to `LocalExecutorBuilder::io_memory` (a multiple of 4 KiB, >= 64 KiB).
    pub io_memory_bytes: usize,
    /// Soft `RLIMIT_MEMLOCK`; `None` = unlimited.
    pub memlock_limit_bytes: Option<u64>,
    pub has_ipc_lock: bool,
    /// Whether every executor's slab is expected to be registered with its rings.
    pub registered_buffers: bool,
    /// One human sentence for the start-up log.
    pub explanation: String,
}

/// Plan `io_memory` for `shards` executors on this process, wanting `wanted_bytes` each
/// (glommio's default is [`GLOMMIO_DEFAULT_IO_MEMORY_BYTES`]).
///
/// Reads the soft `RLIMIT_MEMLOCK` and `CAP_IPC_LOCK`; see [`plan_io_memory_for`]. Call
/// [`raise_memlock_soft_limit`] first if the soft limit may be below the hard one.
pub fn plan_io_memory(shards: usize, wanted_bytes: usize) -> Result<IoMemoryPlan, TuningError> {
    let limit = memlock_limit().map_err(|e| TuningError::io("getrlimit(RLIMIT_MEMLOCK)", e))?;
    plan_io_memory_for(limit.soft, has_cap_ipc_lock(), shards, wanted_bytes)
}

/// Pure core of [`plan_io_memory`]: `limit` is the soft `RLIMIT_MEMLOCK` in bytes (`None` =
/// unlimited).
///
/// - `Err(MemlockTooLow)` when glommio would refuse to start (limit < 512 KiB).
/// - `Err(MemlockTooLowForRings)` when the executors' rings alone exceed the limit (glommio
///   executors would fail to start with ENOMEM).
/// - With `CAP_IPC_LOCK` or no limit: the wanted size, registered.
/// - Else if `3 x shards x (wanted + ring)` + headroom fits the limit: the wanted size.
/// - Else if at least [`IO_MEMORY_FLOOR_BYTES`] fits: the largest 4 KiB multiple that fits.
/// - Else: unregistered for every executor, with `io_memory` above the limit (see module docs).
pub fn plan_io_memory_for(
    limit: Option<u64>,
    has_ipc_lock: bool,
    shards: usize,
    wanted_bytes: usize,
) -> Result<IoMemoryPlan, TuningError> {
    if shards == 0 {
        return Err(TuningError::InvalidArgument(
            "io_memory plan needs at least one shard".into(),
        ));
    }
    if let Some(limit_bytes) = limit {
        if limit_bytes < GLOMMIO_MIN_MEMLOCK_BYTES {
            return Err(TuningError::MemlockTooLow {
                limit_bytes,
                min_bytes: GLOMMIO_MIN_MEMLOCK_BYTES,
                min_kib: GLOMMIO_MIN_MEMLOCK_BYTES / 1024,
            });
        }
    }
    // What glommio will really allocate for this request.
    let wanted = glommio_effective_io_memory(wanted_bytes);
    let per_shard_desc = format!("{shards} shard(s) x {GLOMMIO_RINGS_PER_EXECUTOR} rings");

    let plan = |io_memory_bytes: usize, registered_buffers: bool, explanation: String| {
        debug_assert!(io_memory_bytes.is_multiple_of(PAGE_BYTES));
        debug_assert!(io_memory_bytes >= GLOMMIO_MIN_IO_MEMORY_BYTES);
        IoMemoryPlan {
            io_memory_bytes,
            memlock_limit_bytes: limit,
            has_ipc_lock,
            registered_buffers,
            explanation,
        }
    };

    let limit_bytes = match limit {
        _ if has_ipc_lock => {
            return Ok(plan(
                wanted,
                true,
                format!(
                    "io_memory {} per shard, registered: the process has CAP_IPC_LOCK, so \
                     registered buffers are not counted against RLIMIT_MEMLOCK",
                    fmt_bytes(wanted as u64)
                ),
            ))
        }
        None => {
            return Ok(plan(
                wanted,
                true,
                format!(
                    "io_memory {} per shard, registered: RLIMIT_MEMLOCK is unlimited",
                    fmt_bytes(wanted as u64)
                ),
            ))
        }
        Some(l) => l,
    };

    let rings = GLOMMIO_RINGS_PER_EXECUTOR.saturating_mul(shards as u64);
    let ring_bytes = rings.saturating_mul(GLOMMIO_RING_LOCKED_BYTES);
    if ring_bytes > limit_bytes {
        let max_shards = limit_bytes / (GLOMMIO_RINGS_PER_EXECUTOR * GLOMMIO_RING_LOCKED_BYTES);
        return Err(TuningError::MemlockTooLowForRings {
            shards,
            limit_bytes,
            ring_bytes,
            max_shards,
        });
    }
    let available = limit_bytes.saturating_sub(ring_bytes + MEMLOCK_HEADROOM_BYTES);
    let budget = align_down_u64(available / rings, PAGE_BYTES as u64);
    let total = |per: usize| {
        fmt_bytes(
            (per as u64)
                .saturating_add(GLOMMIO_RING_LOCKED_BYTES)
                .saturating_mul(rings),
        )
    };
    // Release-mode invariant: a registered plan fits the limit with the rings and headroom.
    let fits = |io: usize| {
        (io as u64 + GLOMMIO_RING_LOCKED_BYTES).saturating_mul(rings) + MEMLOCK_HEADROOM_BYTES
            <= limit_bytes
    };
    if budget >= wanted as u64 {
        assert!(fits(wanted), "io_memory plan exceeds RLIMIT_MEMLOCK");
        return Ok(plan(
            wanted,
            true,
            format!(
                "io_memory {} per shard, registered: {per_shard_desc} x (io_memory + ring) = {} \
                 fits RLIMIT_MEMLOCK {}",
                fmt_bytes(wanted as u64),
                total(wanted),
                fmt_bytes(limit_bytes)
            ),
        ));
    }
    let floor = wanted.min(IO_MEMORY_FLOOR_BYTES);
    if budget >= floor as u64 {
        // budget < wanted <= usize::MAX, so the conversion cannot fail.
        let io = usize::try_from(budget).unwrap_or(floor);
        assert!(fits(io), "io_memory plan exceeds RLIMIT_MEMLOCK");
        return Ok(plan(
            io,
            true,
            format!(
                "io_memory reduced from {} to {} per shard to keep buffers registered: \
                 {per_shard_desc} x (io_memory + ring) = {} fits RLIMIT_MEMLOCK {} (no \
                 CAP_IPC_LOCK); raise `ulimit -l` or add CAP_IPC_LOCK to get the full size",
                fmt_bytes(wanted as u64),
                fmt_bytes(io as u64),
                total(io),
                fmt_bytes(limit_bytes)
            ),
        ));
    }
    // Not even the floor fits for every executor. A partial registration could starve a later
    // executor's rings (ENOMEM at start), so make registration impossible for all: a slab larger
    // than the whole limit. The slab is plain virtual memory until buffers are carved from it.
    let above_limit = usize::try_from(limit_bytes)
        .ok()
        .and_then(|l| l.checked_add(PAGE_BYTES))
        .map_or(wanted, |l| l & !(PAGE_BYTES - 1));
    let io = wanted.max(above_limit);
    Ok(plan(
        io,
        false,
        format!(
            "io_memory {} per shard, unregistered: {per_shard_desc} x (512 KiB + ring) would \
             exceed RLIMIT_MEMLOCK {} (no CAP_IPC_LOCK), so io_memory is kept above the limit \
             and every shard logs \"registering buffers ... Skipping\" once and runs without \
             registered buffers (measured: no throughput loss); raise `ulimit -l`, \
             LimitMEMLOCK= in systemd, or add CAP_IPC_LOCK (docker --cap-add IPC_LOCK) to \
             register them",
            fmt_bytes(io as u64),
            fmt_bytes(limit_bytes)
        ),
    ))
}

/// The slab size glommio 0.9 allocates for a requested `io_memory`.
pub fn glommio_effective_io_memory(requested: usize) -> usize {
    let aligned = requested
        .checked_add(PAGE_BYTES - 1)
        .map_or(usize::MAX & !(PAGE_BYTES - 1), |v| v & !(PAGE_BYTES - 1));
    aligned.max(GLOMMIO_MIN_IO_MEMORY_BYTES)
}

fn align_down_u64(v: u64, align: u64) -> u64 {
    v - v % align
}

/// `1.5 MiB`, `512 KiB`, `100 B`: for messages.
pub(crate) fn fmt_bytes(b: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    const GIB: u64 = 1024 * MIB;
    let (unit, div) = if b >= GIB {
        ("GiB", GIB)
    } else if b >= MIB {
        ("MiB", MIB)
    } else if b >= KIB {
        ("KiB", KIB)
    } else {
        return format!("{b} B");
    };
    if b.is_multiple_of(div) {
        format!("{} {unit}", b / div)
    } else {
        format!("{:.1} {unit}", b as f64 / div as f64)
    }
}

/// A resource limit pair in bytes (or count); `None` = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// Soft and hard `RLIMIT_MEMLOCK` of this process.
pub fn memlock_limit() -> std::io::Result<Limit> {
    get_limit(nix::sys::resource::Resource::RLIMIT_MEMLOCK)
}

/// Soft and hard `RLIMIT_NOFILE` of this process.
pub fn nofile_limit() -> std::io::Result<Limit> {
    get_limit(nix::sys::resource::Resource::RLIMIT_NOFILE)
}

fn get_limit(resource: nix::sys::resource::Resource) -> std::io::Result<Limit> {
    let (soft, hard) = nix::sys::resource::getrlimit(resource).map_err(std::io::Error::from)?;
    let finite = |v: u64| (v != libc::RLIM_INFINITY).then_some(v);
    Ok(Limit {
        soft: finite(soft),
        hard: finite(hard),
    })
}

/// What a `raise_*` call changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LimitChange {
    pub before: Limit,
    pub after: Limit,
}

impl LimitChange {
    pub fn changed(&self) -> bool {
        self.before != self.after
    }
}

/// Raise the soft `RLIMIT_MEMLOCK` to the hard limit (allowed without privileges). Call it before
/// [`plan_io_memory`] and before starting glommio; it affects this process and its children.
pub fn raise_memlock_soft_limit() -> Result<LimitChange, TuningError> {
    raise_soft_to_hard(
        nix::sys::resource::Resource::RLIMIT_MEMLOCK,
        "RLIMIT_MEMLOCK",
    )
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit (each partition keeps a few files open per
/// segment, and every client connection is a descriptor).
pub fn raise_nofile_soft_limit() -> Result<LimitChange, TuningError> {
    raise_soft_to_hard(nix::sys::resource::Resource::RLIMIT_NOFILE, "RLIMIT_NOFILE")
}

fn raise_soft_to_hard(
    resource: nix::sys::resource::Resource,
    name: &str,
) -> Result<LimitChange, TuningError> {
    let before =
        get_limit(resource).map_err(|e| TuningError::io(format!("getrlimit({name})"), e))?;
    if before.soft != before.hard {
        let (_, hard) = nix::sys::resource::getrlimit(resource)
            .map_err(|e| TuningError::io(format!("getrlimit({name})"), e.into()))?;
        nix::sys::resource::setrlimit(resource, hard, hard)
            .map_err(|e| TuningError::io(format!("setrlimit({name})"), e.into()))?;
    }
    let after =
        get_limit(resource).map_err(|e| TuningError::io(format!("getrlimit({name})"), e))?;
    Ok(LimitChange { before, after })
}

/// Bit of `CAP_IPC_LOCK` in the capability masks of `/proc/<pid>/status`.
const CAP_IPC_LOCK_BIT: u32 = 14;

/// Whether this process has `CAP_IPC_LOCK` as io_uring's memory accounting sees it: the bit is
/// in the effective set (`CapEff` in `/proc/self/status`) **and** the process is in the initial
/// user namespace. The kernel asks `capable(CAP_IPC_LOCK)`, which is about the initial
/// namespace, so "root" inside a rootless container (podman, user-namespaced Docker) is still
/// charged. Root on the host normally has it; default Docker containers do not.
pub fn has_cap_ipc_lock() -> bool {
    let cap = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| cap_eff_from_status(&s))
        .is_some_and(|mask| mask & (1u64 << CAP_IPC_LOCK_BIT) != 0);
    // Without /proc/self/uid_map (no user namespace support) we are in the initial namespace.
    let initial_ns =
        std::fs::read_to_string("/proc/self/uid_map").map_or(true, |m| is_initial_uid_map(&m));
    cap && initial_ns
}

/// The initial user namespace maps all 2^32 - 1 ids onto themselves: `0 0 4294967295`.
fn is_initial_uid_map(map: &str) -> bool {
    let fields: Vec<&str> = map.split_whitespace().collect();
    fields == ["0", "0", "4294967295"]
}

fn cap_eff_from_status(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;

    #[test]
    fn refuses_only_below_glommio_minimum() {
        for cap in [false, true] {
            let err = plan_io_memory_for(Some(511 * KIB), cap, 1, 10 << 20).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, TuningError::MemlockTooLow { .. }));
            assert!(msg.contains("ulimit -l"), "{msg}");
            assert!(msg.contains("LimitMEMLOCK="), "{msg}");
            assert!(msg.contains("--ulimit memlock"), "{msg}");
        }
        assert!(plan_io_memory_for(Some(0), false, 4, 1).is_err());
        // Exactly the minimum starts.
        assert!(plan_io_memory_for(Some(512 * KIB), false, 1, 10 << 20).is_ok());
    }

    #[test]
    fn zero_shards_is_invalid() {
        assert!(matches!(
            plan_io_memory_for(None, true, 0, 1 << 20),
            Err(TuningError::InvalidArgument(_))
        ));
    }

    #[test]
    fn unlimited_or_cap_gets_wanted() {
        let p = plan_io_memory_for(None, false, 64, 10 << 20).unwrap();
        assert_eq!(p.io_memory_bytes, 10 << 20);
        assert!(p.registered_buffers);
        assert!(p.explanation.contains("unlimited"));
        let p = plan_io_memory_for(Some(8 * MIB), true, 64, 10 << 20).unwrap();
        assert_eq!(p.io_memory_bytes, 10 << 20);
        assert!(p.registered_buffers);
        assert!(p.explanation.contains("CAP_IPC_LOCK"));
    }

    #[test]
    fn wanted_is_rounded_like_glommio() {
        let p = plan_io_memory_for(None, false, 1, 1).unwrap();
        assert_eq!(p.io_memory_bytes, 64 * 1024);
        let p = plan_io_memory_for(None, false, 1, 100_001).unwrap();
        assert_eq!(p.io_memory_bytes, 102_400);
        assert_eq!(glommio_effective_io_memory(usize::MAX) % 4096, 0);
    }

    #[test]
    fn fits_without_change() {
        // 2 shards x 3 rings x (1 MiB + 16 KiB) + 64 KiB = 6.16 MiB <= 8 MiB.
        let p = plan_io_memory_for(Some(8 * MIB), false, 2, 1 << 20).unwrap();
        assert_eq!(p.io_memory_bytes, 1 << 20);
        assert!(p.registered_buffers);
        assert!(p.explanation.contains("fits"), "{}", p.explanation);
        // Exactly at the limit still fits.
        let exact = 6 * (MIB + 16 * KIB) + 64 * KIB;
        let p = plan_io_memory_for(Some(exact), false, 2, 1 << 20).unwrap();
        assert_eq!(p.io_memory_bytes, 1 << 20);
        assert!(p.registered_buffers);
        // One page less does not.
        let p = plan_io_memory_for(Some(exact - 4096), false, 2, 1 << 20).unwrap();
        assert!(p.io_memory_bytes < 1 << 20);
    }

    #[test]
    fn shrinks_to_fit_measured_values() {
        // The VM: 8 MiB limit, 2 shards, glommio default 10 MiB. Measured with glommio 0.9 on
        // Linux 6.18 without CAP_IPC_LOCK: 1,396,736 (limit / 6) left one executor
        // unregistered, 1,368,064 registered both.
        let p = plan_io_memory_for(Some(8 * MIB), false, 2, 10 << 20).unwrap();
        assert!(p.registered_buffers);
        assert_eq!(p.io_memory_bytes, 1_368_064);
        assert!(p.explanation.contains("reduced"), "{}", p.explanation);
        assert_eq!(p.memlock_limit_bytes, Some(8 * MIB));
        assert!(!p.has_ipc_lock);
        // Measured for 1 shard: 678 pages registered, 680 did not.
        let p = plan_io_memory_for(Some(8 * MIB), false, 1, 10 << 20).unwrap();
        assert!(p.io_memory_bytes <= 678 * 4096, "{p:?}");
    }

    #[test]
    fn never_exceeds_limit_when_registered() {
        for limit_kib in [512u64, 600, 1024, 3000, 8192, 65536] {
            for shards in 1..=64usize {
                for wanted in [1usize, 64 << 10, 512 << 10, 1 << 20, 10 << 20] {
                    let limit = limit_kib * KIB;
                    let p = match plan_io_memory_for(Some(limit), false, shards, wanted) {
                        Ok(p) => p,
                        Err(TuningError::MemlockTooLowForRings { max_shards, .. }) => {
                            assert!(shards as u64 > max_shards);
                            assert!(3 * 16 * KIB * shards as u64 > limit);
                            continue;
                        }
                        Err(e) => panic!("{e}"),
                    };
                    assert_eq!(p.io_memory_bytes % 4096, 0);
                    assert!(p.io_memory_bytes >= 64 << 10);
                    let locked = |io: u64| 3 * shards as u64 * (io + 16 * KIB);
                    if p.registered_buffers {
                        assert!(p.io_memory_bytes <= glommio_effective_io_memory(wanted));
                        assert!(
                            locked(p.io_memory_bytes as u64) + 64 * KIB <= limit,
                            "{limit_kib} KiB, {shards} shards, {wanted}: {p:?}"
                        );
                    } else {
                        // No executor can register: the slab alone exceeds the limit.
                        assert!(p.io_memory_bytes as u64 > limit, "{p:?}");
                        assert!(3 * 16 * KIB * shards as u64 <= limit);
                    }
                }
            }
        }
    }

    #[test]
    fn too_many_shards_runs_unregistered() {
        // 8 MiB, 8 shards: 3 x 8 x (512 KiB + 16 KiB) > 8 MiB.
        let p = plan_io_memory_for(Some(8 * MIB), false, 8, 10 << 20).unwrap();
        assert!(!p.registered_buffers);
        assert_eq!(p.io_memory_bytes, 10 << 20);
        assert!(p.explanation.contains("unregistered"), "{}", p.explanation);
        assert!(p.explanation.contains("CAP_IPC_LOCK"));
        // A small wanted size is raised above the limit so that no registration succeeds.
        let p = plan_io_memory_for(Some(512 * KIB), false, 8, 64 << 10).unwrap();
        assert!(!p.registered_buffers);
        assert_eq!(p.io_memory_bytes, 516 << 10);
        // ... while a small wanted size that fits stays small and registered.
        let p = plan_io_memory_for(Some(8 * MIB), false, 8, 64 << 10).unwrap();
        assert!(p.registered_buffers);
        assert_eq!(p.io_memory_bytes, 64 << 10);
    }

    #[test]
    fn rings_alone_can_exceed_the_limit() {
        // Measured: with a 512 KiB limit, 10 executors started and the 11th failed (ENOMEM).
        assert!(plan_io_memory_for(Some(512 * KIB), false, 10, 1 << 20).is_ok());
        let err = plan_io_memory_for(Some(512 * KIB), false, 11, 1 << 20).unwrap_err();
        assert!(
            matches!(
                err,
                TuningError::MemlockTooLowForRings { max_shards: 10, .. }
            ),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("IPC_LOCK") && msg.contains("ulimit -l"),
            "{msg}"
        );
        // CAP_IPC_LOCK makes the same host fine.
        assert!(plan_io_memory_for(Some(512 * KIB), true, 11, 1 << 20).is_ok());
    }

    #[test]
    fn parses_cap_eff() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001fffeffffff\n";
        let mask = cap_eff_from_status(status).unwrap();
        assert_ne!(mask & (1 << CAP_IPC_LOCK_BIT), 0);
        assert_eq!(
            cap_eff_from_status("CapEff:\t00000000a80425fb\n").map(|m| m & (1 << 14)),
            Some(0) // Docker's default set: no IPC_LOCK
        );
        assert_eq!(cap_eff_from_status("Name: x\n"), None);
        assert_eq!(cap_eff_from_status("CapEff:\tzz\n"), None);
    }

    #[test]
    fn initial_user_namespace() {
        assert!(is_initial_uid_map("         0          0 4294967295\n"));
        // Rootless podman: root inside maps to an unprivileged uid outside.
        assert!(!is_initial_uid_map(
            "         0       1000          1\n         1     100000      65536\n"
        ));
        assert!(!is_initial_uid_map(""));
    }

    #[test]
    fn fmt_bytes_is_readable() {
        assert_eq!(fmt_bytes(100), "100 B");
        assert_eq!(fmt_bytes(512 * KIB), "512 KiB");
        assert_eq!(fmt_bytes(8 * MIB), "8 MiB");
        assert_eq!(fmt_bytes(1_396_736), "1.3 MiB");
    }

    #[test]
    fn real_limits_are_readable() {
        let l = memlock_limit().unwrap();
        if let (Some(s), Some(h)) = (l.soft, l.hard) {
            assert!(s <= h);
        }
        assert!(nofile_limit().unwrap().soft.is_some_and(|n| n > 0));
        // Whatever the host, planning one small shard either works or names the fix.
        match plan_io_memory(1, 1 << 20) {
            Ok(p) => assert!(!p.explanation.is_empty()),
            Err(e) => assert!(e.to_string().contains("ulimit -l")),
        }
    }
}
