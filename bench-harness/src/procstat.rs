//! Samples a local broker's CPU and RSS from /proc once per second.

use crate::stats::{BrokerSample, BrokerUsage};
use anyhow::{anyhow, Context, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading /proc/PID/stat")?;
    // The command name may contain spaces; fields resume after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|x| x.1)
        .ok_or_else(|| anyhow!("malformed stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 (index 0); utime is field 14 (index 11), stime 15 (index 12).
    let utime: u64 = f.get(11).ok_or_else(|| anyhow!("no utime"))?.parse()?;
    let stime: u64 = f.get(12).ok_or_else(|| anyhow!("no stime"))?.parse()?;
    Ok(utime + stime)
}

fn rss_mb(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("VmRSS:") {
            let kb: f64 = v.trim().trim_end_matches("kB").trim().parse()?;
            return Ok(kb / 1024.0);
        }
    }
    Err(anyhow!("no VmRSS"))
}

/// Bytes written to disk by process `pid` so far (`write_bytes` of /proc/PID/io: what it
/// sent to the block layer, O_DIRECT writes included). Needs the same user or root.
pub fn process_disk_written_bytes(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The machine's physical disks: block devices with a `device` link in /sys/block (loop,
/// ram, zram, device-mapper and md devices have none, so nothing is counted twice).
pub fn physical_disks() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut out: Vec<String> = dir
        .flatten()
        .filter(|e| e.path().join("device").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// Bytes written to `disks` according to a /proc/diskstats text (sectors written, in the
/// kernel's fixed 512-byte units). `None` when none of the disks is listed.
pub fn diskstats_written_bytes(diskstats: &str, disks: &[String]) -> Option<u64> {
    let mut total = None;
    for line in diskstats.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // major minor name, then reads (4 fields), then writes: completed, merged, sectors.
        if f.len() < 10 || !disks.iter().any(|d| d == f[2]) {
            continue;
        }
        if let Ok(sectors) = f[9].parse::<u64>() {
            total = Some(total.unwrap_or(0) + sectors * 512);
        }
    }
    total
}

/// Bytes written by anything but `pid` to the machine's disks so far (see
/// [`diskstats_written_bytes`], [`process_disk_written_bytes`]); a difference of two
/// readings is what other processes wrote in between (plus file system journal writes).
fn others_disk_written_bytes(pid: u32, disks: &[String]) -> Option<u64> {
    let all = diskstats_written_bytes(&std::fs::read_to_string("/proc/diskstats").ok()?, disks)?;
    Some(all.saturating_sub(process_disk_written_bytes(pid)?))
}

/// Finds the PID of the local process listening on TCP `port` (needs permission to read
/// other processes' fds, i.e. same user or root).
pub fn find_listener_pid(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" {
                continue; // 0A = LISTEN
            }
            let Some(p) = f[1]
                .rsplit(':')
                .next()
                .and_then(|h| u16::from_str_radix(h, 16).ok())
            else {
                continue;
            };
            if p == port {
                inodes.push(format!("socket:[{}]", f[9]));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if inodes.iter().any(|i| target.as_os_str() == i.as_str()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

/// Nanoseconds the threads of `pid` have spent runnable but waiting for a CPU (sum over
/// threads of the second field of /proc/PID/task/TID/schedstat). On a shared machine this
/// shows how much of a run was lost to other processes.
pub fn runq_wait_ns(pid: u32) -> Result<u64> {
    let mut total = 0u64;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .context("reading task list")?
        .flatten()
    {
        let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) else {
            continue;
        };
        if let Some(w) = s
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
        {
            total += w;
        }
    }
    Ok(total)
}

/// Run-queue wait of the calling thread, in ns.
pub fn thread_runq_wait_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().nth(1)?.parse().ok()
}

/// CPU use of this process (all threads) between two calls, as % of one core.
pub fn own_cpu_pct(ticks_before: u64, secs: f64) -> Option<f64> {
    let now = cpu_ticks(std::process::id()).ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(now.saturating_sub(ticks_before) as f64 / hz / secs.max(1e-3) * 100.0)
}

/// Background sampler of a local broker (and of the disk writes of everything else);
/// `finish` returns the usage summary and the per-second samples.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Vec<BrokerSample>>,
    pid: u32,
}

impl Sampler {
    /// `t0`: the run's origin, so sample `i` covers second `i` of the run.
    pub fn start(pid: u32, t0: Instant) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            // SAFETY: sysconf has no memory-safety preconditions.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
            let mut out = Vec::new();
            let mut last = cpu_ticks(pid).ok();
            let mut last_wait = runq_wait_ns(pid).ok();
            let disks = physical_disks();
            let mut last_others = others_disk_written_bytes(pid, &disks);
            let mut last_t = Instant::now();
            let mut i = 1u32;
            while !s.load(Ordering::Relaxed) {
                let next = t0 + Duration::from_secs(i as u64);
                let now = Instant::now();
                if next > now {
                    std::thread::sleep((next - now).min(Duration::from_millis(100)));
                    continue;
                }
                i += 1;
                let (Ok(t), Ok(rss)) = (cpu_ticks(pid), rss_mb(pid)) else {
                    break;
                };
                let dt = last_t.elapsed().as_secs_f64().max(1e-3);
                let cpu = last
                    .map(|l| (t.saturating_sub(l)) as f64 / hz / dt * 100.0)
                    .unwrap_or(0.0);
                let wait = runq_wait_ns(pid).ok();
                let wait_pct = match (last_wait, wait) {
                    (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e9 / dt * 100.0,
                    _ => 0.0,
                };
                let others = others_disk_written_bytes(pid, &disks);
                // The two counters are read a moment apart, so a second's difference can be
                // a little off, never negative.
                let other_disk = match (last_others, others) {
                    (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1e6 / dt),
                    _ => None,
                };
                out.push(BrokerSample {
                    cpu_pct: cpu,
                    rss_mb: rss,
                    runq_wait_pct: wait_pct,
                    other_disk_write_mb_per_sec: other_disk,
                });
                last = Some(t);
                last_wait = wait;
                last_others = others;
                last_t = Instant::now();
            }
            out
        });
        Sampler { stop, handle, pid }
    }

    pub fn finish(self) -> Option<(BrokerUsage, Vec<BrokerSample>)> {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.handle.join().ok()?;
        if samples.is_empty() {
            return None;
        }
        let n = samples.len() as f64;
        let disk: Vec<f64> = samples
            .iter()
            .filter_map(|s| s.other_disk_write_mb_per_sec)
            .collect();
        Some((
            BrokerUsage {
                pid: self.pid,
                cpu_pct_mean: samples.iter().map(|s| s.cpu_pct).sum::<f64>() / n,
                cpu_pct_max: samples.iter().map(|s| s.cpu_pct).fold(0.0, f64::max),
                rss_mb_max: samples.iter().map(|s| s.rss_mb).fold(0.0, f64::max),
                runq_wait_pct_mean: samples.iter().map(|s| s.runq_wait_pct).sum::<f64>() / n,
                other_disk_write_mb_per_sec_mean: (!disk.is_empty())
                    .then(|| disk.iter().sum::<f64>() / disk.len() as f64),
                other_disk_write_mb_per_sec_max: (!disk.is_empty())
                    .then(|| disk.iter().copied().fold(0.0, f64::max)),
            },
            samples,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(cpu_ticks(me).is_ok());
        assert!(rss_mb(me).expect("rss") > 0.0);
    }

    #[test]
    fn counts_sectors_written_of_the_given_disks_only() {
        let text = "   7       0 loop0 5 0 40 1 9 0 800 3 0 4 4 0 0 0 0 0 0\n \
                    253       0 vda 100 2 3000 50 200 7 4096 90 0 120 140 0 0 0 0 0 0\n \
                    253       1 vda1 90 2 2900 50 190 7 4000 90 0 120 140\n \
                    259       0 nvme0n1 1 0 8 1 3 0 16 1 0 1 1\n";
        let disks = vec!["vda".to_string(), "nvme0n1".to_string()];
        // vda: 4096 sectors, nvme0n1: 16; loop0 and the partition vda1 are not counted.
        assert_eq!(
            diskstats_written_bytes(text, &disks),
            Some((4096 + 16) * 512)
        );
        assert_eq!(diskstats_written_bytes(text, &["sdz".to_string()]), None);
        assert_eq!(diskstats_written_bytes("garbage\n", &disks), None);
    }

    #[test]
    fn reads_disk_counters_of_this_machine() {
        // Whatever the machine has, reading must not fail for our own process, and the
        // disks found are real block devices.
        assert!(process_disk_written_bytes(std::process::id()).is_some());
        for d in physical_disks() {
            assert!(std::path::Path::new("/sys/block").join(&d).exists(), "{d}");
        }
    }

    #[test]
    fn finds_a_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        // Our own process is skipped on purpose (the harness is never the broker).
        assert_eq!(find_listener_pid(port), None);
    }
}
