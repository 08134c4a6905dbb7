//! Start-up checks: can this host run Ringtail, and what must change if not.
//!
//! Read-only except for one temporary file in the data directory (removed before returning).

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use io_uring::opcode;

use crate::cpus::{format_cpu_list, online_cpus};
use crate::memlock::{
    fmt_bytes, has_cap_ipc_lock, memlock_limit, nofile_limit, plan_io_memory_for,
    raise_memlock_soft_limit, raise_nofile_soft_limit, GLOMMIO_DEFAULT_IO_MEMORY_BYTES,
};
use crate::probe::{AlignedBuf, TempFile};
use crate::sys;
use crate::{Check, Status};

/// glommio 0.9 documents 5.8 as its minimum kernel.
pub const KERNEL_MIN: (u32, u32) = (5, 8);
/// Below this many open files a broker with many partitions and connections runs out.
pub const NOFILE_RECOMMENDED: u64 = 65_536;
/// Warn when the data directory's filesystem has less free space than this.
pub const FREE_SPACE_WARN_BYTES: u64 = 1 << 30;
/// O_DIRECT alignment Ringtail uses for every write (offset, length and buffer address).
pub const DIRECT_IO_ALIGN_BYTES: usize = 4096;

/// The io_uring opcodes glommio 0.9 probes for at start-up (`GLOMMIO_URING_OPS`); if any is
/// missing it prints the list and exits the process.
const GLOMMIO_OPCODES: &[(u8, &str)] = &[
    (opcode::Nop::CODE, "NOP"),
    (opcode::Readv::CODE, "READV"),
    (opcode::Writev::CODE, "WRITEV"),
    (opcode::Fsync::CODE, "FSYNC"),
    (opcode::ReadFixed::CODE, "READ_FIXED"),
    (opcode::WriteFixed::CODE, "WRITE_FIXED"),
    (opcode::PollAdd::CODE, "POLL_ADD"),
    (opcode::PollRemove::CODE, "POLL_REMOVE"),
    (opcode::SendMsg::CODE, "SENDMSG"),
    (opcode::RecvMsg::CODE, "RECVMSG"),
    (opcode::Timeout::CODE, "TIMEOUT"),
    (opcode::TimeoutRemove::CODE, "TIMEOUT_REMOVE"),
    (opcode::Accept::CODE, "ACCEPT"),
    (opcode::LinkTimeout::CODE, "LINK_TIMEOUT"),
    (opcode::Connect::CODE, "CONNECT"),
    (opcode::Fallocate::CODE, "FALLOCATE"),
    (opcode::OpenAt::CODE, "OPENAT"),
    (opcode::Close::CODE, "CLOSE"),
    (opcode::Statx::CODE, "STATX"),
    (opcode::Read::CODE, "READ"),
    (opcode::Write::CODE, "WRITE"),
    (opcode::Send::CODE, "SEND"),
    (opcode::Recv::CODE, "RECV"),
];

/// Run every start-up check for a broker with `shards` shards and data in `data_dir`.
///
/// First raises this process's soft `RLIMIT_MEMLOCK` and `RLIMIT_NOFILE` to their hard limits
/// (allowed without privileges), so call it before starting glommio.
///
/// Order: kernel, io_uring, memlock, nofile, cpus, data_dir, filesystem, o_direct, fallocate,
/// free_space. The broker logs each with [`Check::to_log_line`] and refuses to start if any is
/// [`Status::Fail`] (see [`crate::any_failed`]). `data_dir` need not exist yet: the nearest
/// existing ancestor is checked instead (it is on the same filesystem in all usual layouts).
pub fn startup_checks(data_dir: &Path, shards: usize) -> Vec<Check> {
    // Process-local and unprivileged, what every server does first: raise the soft limits to
    // the hard ones, so the checks below (and glommio) see the limits the broker will run with.
    // A failure leaves the soft limit as it was, which the checks then report.
    let _ = raise_memlock_soft_limit();
    let _ = raise_nofile_soft_limit();
    let mut checks = vec![
        kernel_check(),
        io_uring_check(),
        memlock_check(shards),
        nofile_check(),
        cpus_check(shards),
    ];
    checks.extend(data_dir_checks(data_dir));
    checks
}

pub(crate) fn kernel_check() -> Check {
    let release = sys::kernel_release().unwrap_or_else(|| "unknown".into());
    let (min_major, min_minor) = KERNEL_MIN;
    match sys::parse_kernel_version(&release) {
        Some(v) if v >= KERNEL_MIN => Check::new(
            "kernel",
            Status::Ok,
            format!("Linux {release} (glommio needs >= {min_major}.{min_minor})"),
        ),
        Some(_) => Check::new(
            "kernel",
            Status::Fail,
            format!("Linux {release} is older than {min_major}.{min_minor}, the minimum glommio supports"),
        )
        .with_fix(format!("run on Linux {min_major}.{min_minor} or newer (5.15+ recommended)")),
        None => Check::new(
            "kernel",
            Status::Warn,
            format!("could not read the kernel version ({release:?}); the io_uring check decides"),
        ),
    }
}

pub(crate) fn io_uring_disabled_sysctl() -> Option<String> {
    sys::read_trimmed("/proc/sys/kernel/io_uring_disabled")
}

pub(crate) fn io_uring_check() -> Check {
    let disabled = io_uring_disabled_sysctl();
    let ring = match io_uring::IoUring::new(8) {
        Ok(ring) => ring,
        Err(e) => return io_uring_setup_failed(&e, disabled.as_deref()),
    };
    let mut probe = io_uring::Probe::new();
    if let Err(e) = ring.submitter().register_probe(&mut probe) {
        return Check::new(
            "io_uring",
            Status::Fail,
            format!(
                "io_uring works but cannot probe opcodes ({e}); the kernel is too old for glommio"
            ),
        )
        .with_fix("run on Linux 5.8 or newer");
    }
    let missing: Vec<&str> = GLOMMIO_OPCODES
        .iter()
        .filter(|(code, _)| !probe.is_supported(*code))
        .map(|(_, name)| *name)
        .collect();
    if missing.is_empty() {
        Check::new(
            "io_uring",
            Status::Ok,
            format!(
                "io_uring available with all {} opcodes glommio needs",
                GLOMMIO_OPCODES.len()
            ),
        )
    } else {
        Check::new(
            "io_uring",
            Status::Fail,
            format!(
                "io_uring lacks opcodes glommio needs: {} (glommio would exit at start-up)",
                missing.join(", ")
            ),
        )
        .with_fix("run on Linux 5.8 or newer")
    }
}

fn io_uring_setup_failed(e: &io::Error, disabled: Option<&str>) -> Check {
    let (detail, fix) = match (e.raw_os_error(), disabled) {
        (Some(libc::EPERM), Some("2")) => (
            "io_uring_setup failed with EPERM: io_uring is disabled by sysctl kernel.io_uring_disabled=2".to_string(),
            "sysctl -w kernel.io_uring_disabled=0 (persist in /etc/sysctl.d/)".to_string(),
        ),
        (Some(libc::EPERM), Some("1")) => (
            "io_uring_setup failed with EPERM: kernel.io_uring_disabled=1 allows io_uring only \
             for CAP_SYS_ADMIN or members of kernel.io_uring_group"
                .to_string(),
            "sysctl -w kernel.io_uring_disabled=0, or add the ringtail user to the group \
             named by kernel.io_uring_group"
                .to_string(),
        ),
        (Some(libc::EPERM), _) | (Some(libc::ENOSYS), _) => (
            format!(
                "io_uring_setup failed ({e}): the syscall is blocked, typically by a seccomp \
                 profile (Docker's and containerd's default profiles block io_uring), or the \
                 kernel/sandbox lacks io_uring (CONFIG_IO_URING=n, gVisor)"
            ),
            "run the container with a seccomp profile that allows io_uring_setup, io_uring_enter \
             and io_uring_register (e.g. docker run --security-opt seccomp=unconfined, or a \
             custom profile), or run on a kernel with io_uring enabled"
                .to_string(),
        ),
        (Some(libc::ENOMEM), _) => (
            format!("io_uring_setup failed ({e}): kernels before 5.12 count ring memory against RLIMIT_MEMLOCK"),
            "raise RLIMIT_MEMLOCK (ulimit -l, LimitMEMLOCK= in systemd, docker --ulimit memlock=-1:-1) or upgrade the kernel".to_string(),
        ),
        _ => (
            format!("io_uring_setup failed: {e}"),
            "run on Linux 5.8+ with io_uring enabled and not blocked by seccomp".to_string(),
        ),
    };
    Check::new("io_uring", Status::Fail, detail).with_fix(fix)
}

pub(crate) fn memlock_check(shards: usize) -> Check {
    let limit = match memlock_limit() {
        Ok(l) => l,
        Err(e) => {
            return Check::new(
                "memlock",
                Status::Warn,
                format!("cannot read RLIMIT_MEMLOCK: {e}"),
            )
        }
    };
    let current = format!(
        "soft {} / hard {}",
        fmt_limit_bytes(limit.soft),
        fmt_limit_bytes(limit.hard)
    );
    // The broker raises the soft limit to the hard one first (`startup_checks` does), so plan
    // with the hard limit: that is what glommio will see.
    let raise_note = if limit.soft != limit.hard {
        format!(
            " (soft limit {} is raised to the hard limit at start-up)",
            fmt_limit_bytes(limit.soft)
        )
    } else {
        String::new()
    };
    let recommended = "unlimited, or CAP_IPC_LOCK";
    let plan = plan_io_memory_for(
        limit.hard,
        has_cap_ipc_lock(),
        shards.max(1),
        GLOMMIO_DEFAULT_IO_MEMORY_BYTES,
    );
    match plan {
        Ok(plan) if plan.registered_buffers => Check::new(
            "memlock",
            Status::Ok,
            format!("{}{raise_note}", plan.explanation),
        )
        .with_values(current, recommended),
        Ok(plan) => Check::new(
            "memlock",
            Status::Warn,
            format!("{}{raise_note}", plan.explanation),
        )
        .with_values(current, recommended)
        .with_fix(
            "ulimit -l unlimited; systemd: LimitMEMLOCK=infinity; docker: --ulimit \
             memlock=-1:-1 or --cap-add IPC_LOCK",
        ),
        Err(e) => {
            let msg = e.to_string();
            let (detail, fix) = msg.split_once(" Fix: ").unwrap_or((msg.as_str(), ""));
            let detail = detail.trim_end_matches('.');
            Check::new("memlock", Status::Fail, format!("{detail}{raise_note}"))
                .with_values(current, recommended)
                .with_fix(fix)
        }
    }
}

fn fmt_limit_bytes(v: Option<u64>) -> String {
    v.map_or("unlimited".to_string(), fmt_bytes)
}

pub(crate) fn nofile_check() -> Check {
    let limit = match nofile_limit() {
        Ok(l) => l,
        Err(e) => {
            return Check::new(
                "nofile",
                Status::Warn,
                format!("cannot read RLIMIT_NOFILE: {e}"),
            )
        }
    };
    let fmt = |v: Option<u64>| v.map_or("unlimited".to_string(), |n| n.to_string());
    let current = format!("soft {} / hard {}", fmt(limit.soft), fmt(limit.hard));
    let effective = limit.hard.unwrap_or(u64::MAX); // ringtail raises soft to hard at start-up
    let check = if effective >= NOFILE_RECOMMENDED {
        Check::new(
            "nofile",
            Status::Ok,
            format!(
                "RLIMIT_NOFILE {current}; ringtail raises the soft limit to the hard one at start-up"
            ),
        )
    } else {
        Check::new(
            "nofile",
            Status::Warn,
            format!(
                "RLIMIT_NOFILE {current} is below {NOFILE_RECOMMENDED}: every open segment \
                 holds descriptors and every client connection is one, so the broker lowers \
                 its partition and connection limits to fit (see the start-up log)"
            ),
        )
        .with_fix(
            "ulimit -n 1048576; systemd: LimitNOFILE=1048576; docker: --ulimit \
             nofile=1048576:1048576",
        )
    };
    check.with_values(current, format!(">= {NOFILE_RECOMMENDED}"))
}

fn cpus_check(shards: usize) -> Check {
    let online = online_cpus();
    let list = format_cpu_list(&online);
    if shards > online.len() {
        Check::new(
            "cpus",
            Status::Fail,
            format!(
                "{shards} shards requested but this process may use only {} cpu(s) ({list}): \
                 shards would share cores",
                online.len()
            ),
        )
        .with_fix(format!(
            "use at most {} shards, or widen the cpuset (taskset, docker --cpuset-cpus, \
             systemd AllowedCPUs=)",
            online.len()
        ))
    } else {
        Check::new(
            "cpus",
            Status::Ok,
            format!(
                "{shards} shard(s) on {} usable cpu(s) ({list})",
                online.len()
            ),
        )
    }
}

/// data_dir, filesystem, o_direct, fallocate and free_space checks.
fn data_dir_checks(data_dir: &Path) -> Vec<Check> {
    let mut out = Vec::new();
    let Some(dir) = sys::existing_ancestor(data_dir) else {
        out.push(
            Check::new(
                "data_dir",
                Status::Fail,
                format!("{} and none of its parents exist", data_dir.display()),
            )
            .with_fix("create the data directory"),
        );
        return out;
    };
    let writable = nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK).is_ok();
    let exists = dir.as_path() == data_dir || data_dir.exists();
    let where_ = if exists {
        format!("{}", data_dir.display())
    } else {
        format!(
            "{} (does not exist yet; checked {})",
            data_dir.display(),
            dir.display()
        )
    };
    if !dir.is_dir() || !writable {
        out.push(
            Check::new(
                "data_dir",
                Status::Fail,
                format!("{where_} is not a writable directory"),
            )
            .with_fix("point --data-dir at a writable directory on ext4 or xfs"),
        );
        return out;
    }
    out.push(Check::new(
        "data_dir",
        Status::Ok,
        format!("{where_} is writable"),
    ));
    out.push(filesystem_check(&dir));
    out.extend(direct_io_checks(&dir));
    out.push(free_space_check(&dir));
    out
}

fn filesystem_check(dir: &Path) -> Check {
    let (name, magic) = match sys::fs_type(dir) {
        Ok(t) => t,
        Err(e) => {
            return Check::new("filesystem", Status::Warn, format!("statfs failed: {e}"));
        }
    };
    let device = sys::block_device_of(dir).map(|(n, _)| n);
    let on = device.map_or(String::new(), |d| format!(" on /dev/{d}"));
    match name {
        "ext4" | "xfs" => Check::new("filesystem", Status::Ok, format!("{name}{on}")),
        "tmpfs" | "ramfs" => Check::new(
            "filesystem",
            Status::Fail,
            format!(
                "{name}: data lives in memory and is lost at reboot; fdatasync promises nothing"
            ),
        )
        .with_fix("put the data directory on ext4 or xfs"),
        _ => Check::new(
            "filesystem",
            Status::Warn,
            format!(
                "{name} (magic {magic:#x}){on}: Ringtail is tested on ext4 and xfs; O_DIRECT, \
                 fallocate and fdatasync behaviour elsewhere (overlayfs, NFS, FUSE, btrfs COW) may \
                 be slower or unsupported"
            ),
        )
        .with_fix(
            "put the data directory on ext4 or xfs (in containers: a volume, not the overlay root)",
        ),
    }
}

/// Write one aligned 4 KiB block with O_DIRECT and preallocate 1 MiB with fallocate, in a
/// temporary file inside `dir`.
fn direct_io_checks(dir: &Path) -> Vec<Check> {
    let block_size = sys::block_device_of(dir)
        .and_then(|(_, p)| sys::read_trimmed(p.join("queue/logical_block_size")))
        .map_or(String::new(), |b| {
            format!(" (device logical block size {b})")
        });
    let (tmp, mut out) = match TempFile::create_in(dir, true) {
        Ok(t) => (t, Vec::new()),
        Err(e) => {
            let failed = direct_io_failed(dir, &e, "open(O_DIRECT)");
            // Still say whether fallocate works, on a buffered file.
            match TempFile::create_in(dir, false) {
                Ok(t) => {
                    let mut out = vec![failed];
                    out.push(fallocate_check(&t));
                    return out;
                }
                Err(_) => return vec![failed],
            }
        }
    };
    let write_result =
        AlignedBuf::new(DIRECT_IO_ALIGN_BYTES, DIRECT_IO_ALIGN_BYTES).and_then(|mut buf| {
            buf.as_mut_slice().fill(0x5A);
            tmp.file.write_all_at(buf.as_slice(), 0)?;
            tmp.file.sync_data()
        });
    out.push(match write_result {
        Ok(()) => Check::new(
            "o_direct",
            Status::Ok,
            format!(
                "O_DIRECT write of {DIRECT_IO_ALIGN_BYTES} aligned bytes + fdatasync works in \
                 {}{block_size}",
                dir.display()
            ),
        ),
        Err(e) => direct_io_failed(dir, &e, "O_DIRECT write"),
    });
    out.push(fallocate_check(&tmp));
    out
}

fn fallocate_check(tmp: &TempFile) -> Check {
    // SAFETY: fallocate on an fd we own, with constant valid arguments; no memory is passed.
    let rc = unsafe { libc::fallocate(tmp.file.as_raw_fd(), 0, 0, 1 << 20) };
    if rc == 0 {
        Check::new(
            "fallocate",
            Status::Ok,
            "fallocate preallocates segment space",
        )
    } else {
        let e = io::Error::last_os_error();
        Check::new(
            "fallocate",
            Status::Warn,
            format!(
                "fallocate failed ({e}): segments cannot be preallocated, so appends update \
                 file metadata more often"
            ),
        )
        .with_fix("put the data directory on ext4 or xfs")
    }
}

fn direct_io_failed(dir: &Path, e: &io::Error, what: &str) -> Check {
    let why = if e.raw_os_error() == Some(libc::EINVAL) {
        "the filesystem does not support O_DIRECT or needs a larger alignment than 4096"
    } else {
        "unexpected error"
    };
    Check::new(
        "o_direct",
        Status::Fail,
        format!("{what} in {} failed: {e} ({why})", dir.display()),
    )
    .with_fix(
        "put the data directory on ext4 or xfs (not tmpfs, overlayfs or a network filesystem)",
    )
}

fn free_space_check(dir: &Path) -> Check {
    match sys::free_space(dir) {
        Ok((avail, total)) => {
            let detail = format!(
                "{} free of {} in {}",
                fmt_bytes(avail),
                fmt_bytes(total),
                dir.display()
            );
            if avail < FREE_SPACE_WARN_BYTES {
                Check::new("free_space", Status::Warn, detail)
                    .with_fix("free space or lower retention.bytes / segment.bytes")
            } else {
                Check::new("free_space", Status::Ok, detail)
            }
        }
        Err(e) => Check::new("free_space", Status::Warn, format!("statvfs failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no {name} check in {checks:#?}"))
    }

    #[test]
    fn startup_checks_on_tempdir() {
        let dir = tempfile::tempdir().unwrap();
        let checks = startup_checks(dir.path(), 1);
        for name in [
            "kernel",
            "io_uring",
            "memlock",
            "nofile",
            "cpus",
            "data_dir",
            "filesystem",
            "o_direct",
            "fallocate",
            "free_space",
        ] {
            let c = find(&checks, name);
            assert!(!c.detail.is_empty());
            if c.status != Status::Ok {
                assert!(c.fix.is_some() || c.name == "kernel", "{c:?}");
            }
        }
        // The temp file is gone.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let fs = sys::fs_type(dir.path()).unwrap().0;
        if fs == "ext4" || fs == "xfs" {
            assert_eq!(find(&checks, "o_direct").status, Status::Ok);
            assert_eq!(find(&checks, "fallocate").status, Status::Ok);
            assert_eq!(find(&checks, "filesystem").status, Status::Ok);
        }
        let json = serde_json::to_string(&checks).unwrap();
        assert!(json.contains("\"status\":\"ok\""));
    }

    #[test]
    fn missing_data_dir_checks_parent() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("a/b");
        let checks = data_dir_checks(&missing);
        let c = find(&checks, "data_dir");
        assert_eq!(c.status, Status::Ok);
        assert!(c.detail.contains("does not exist yet"), "{}", c.detail);
        assert!(!missing.exists());
    }

    #[test]
    fn too_many_shards_fails() {
        let c = cpus_check(100_000);
        assert_eq!(c.status, Status::Fail);
        assert!(c.fix.unwrap().contains("at most"));
    }

    #[test]
    fn setup_errors_name_the_fix() {
        let eperm = io::Error::from_raw_os_error(libc::EPERM);
        let c = io_uring_setup_failed(&eperm, Some("2"));
        assert!(c.fix.unwrap().contains("io_uring_disabled=0"));
        let c = io_uring_setup_failed(&eperm, Some("0"));
        assert!(c.detail.contains("seccomp"));
        assert!(c.fix.unwrap().contains("seccomp"));
        let c = io_uring_setup_failed(&io::Error::from_raw_os_error(libc::ENOSYS), None);
        assert_eq!(c.status, Status::Fail);
    }

    #[test]
    fn io_uring_and_kernel_pass_here() {
        // The project requires io_uring; the build/test hosts have it.
        assert_eq!(kernel_check().status, Status::Ok, "{:?}", kernel_check());
        assert_eq!(
            io_uring_check().status,
            Status::Ok,
            "{:?}",
            io_uring_check()
        );
    }
}
