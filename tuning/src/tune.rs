//! `ringtail tune`: OS settings that matter to a thread-per-core O_DIRECT broker.
//!
//! [`tune_report`] only reads. [`tune_apply`] writes the recommended value of each item that
//! differs and is writable here, reads it back, and reports what changed and what could not.
//! Changes to procfs/sysfs do not survive a reboot; each item's `fix` shows the persistent form.
//! On VMs and in containers many knobs are missing or read-only: they are reported with
//! `can_apply: false`, never as failures.

use std::path::{Path, PathBuf};

use crate::checks::{io_uring_disabled_sysctl, memlock_check, nofile_check};
use crate::cpus::{format_cpu_list, online_cpus, parse_cpu_list};
use crate::placement::plan_placement;
use crate::sys::{self, bracketed, read_trimmed, writable};
use crate::{Check, Status};

/// One report line plus the writes that would bring it to the recommended value.
struct Item {
    check: Check,
    writes: Vec<(PathBuf, String)>,
}

impl Item {
    fn report(check: Check) -> Item {
        Item {
            check,
            writes: Vec::new(),
        }
    }

    /// A setting that should be `recommended` and can be fixed by writing `writes`.
    fn setting(mut check: Check, writes: Vec<(PathBuf, String)>) -> Item {
        check.can_apply = !writes.is_empty() && writes.iter().all(|(p, _)| writable(p));
        Item { check, writes }
    }
}

/// Report every tuning item for a broker whose data lives in `data_dir`. Read-only.
pub fn tune_report(data_dir: &Path) -> Vec<Check> {
    items(data_dir).into_iter().map(|i| i.check).collect()
}

/// Apply the recommended value of every item that is not already fine and is writable here.
/// Returns one check per item: `Ok` "changed ..." or "already ...", `Warn` for what could not be
/// changed (with the reason), and report-only items unchanged.
pub fn tune_apply(data_dir: &Path) -> Vec<Check> {
    items(data_dir).into_iter().map(apply_item).collect()
}

fn apply_item(item: Item) -> Check {
    let Item { mut check, writes } = item;
    if check.status == Status::Ok || writes.is_empty() {
        return check;
    }
    if !check.can_apply {
        check.detail = format!("not changed (not writable here): {}", check.detail);
        return check;
    }
    let mut failed = Vec::new();
    for (path, value) in &writes {
        let result = std::fs::write(path, value).and_then(|()| {
            // Read back: some knobs accept a write and keep the old value.
            let now = read_trimmed(path).unwrap_or_default();
            let now = bracketed(&now).map(str::to_string).unwrap_or(now);
            if now == *value || parse_cpu_list(&now).ok() == parse_cpu_list(value).ok() {
                Ok(())
            } else {
                Err(std::io::Error::other(format!("reads back {now:?}")))
            }
        });
        if let Err(e) = result {
            failed.push(format!("{}: {e}", path.display()));
        }
    }
    let before = check.current.clone().unwrap_or_default();
    let after = check.recommended.clone().unwrap_or_default();
    if failed.is_empty() {
        check.status = Status::Ok;
        check.detail = format!("changed from {before} to {after} (until reboot)");
        check.current = Some(after);
    } else if failed.len() < writes.len() {
        check.status = Status::Warn;
        check.detail = format!(
            "partly changed to {after}; {} of {} writes failed: {}",
            failed.len(),
            writes.len(),
            summarize(&failed)
        );
    } else {
        check.status = Status::Warn;
        check.detail = format!("could not change from {before}: {}", summarize(&failed));
    }
    check
}

fn summarize(failed: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut s = failed
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if failed.len() > SHOWN {
        s.push_str(&format!("; and {} more", failed.len() - SHOWN));
    }
    s
}

fn items(data_dir: &Path) -> Vec<Item> {
    let online = online_cpus();
    let placement = plan_placement(&online, None).ok();
    let shards = placement
        .as_ref()
        .map_or(online.len(), |p| p.shard_cpus.len());
    let reserved = placement
        .as_ref()
        .map(|p| p.reserved_cpus.clone())
        .unwrap_or_default();
    let mut items = vec![
        placement_item(placement.as_ref().map(|p| p.explanation.clone())),
        cpu_governor(&online),
        thp_enabled(),
        thp_defrag(),
        swappiness(),
        clocksource(),
    ];
    items.extend(disk_items(data_dir));
    items.push(irq_affinity(&reserved));
    items.push(damon(Path::new(DAMON_ADMIN), &reserved));
    items.push(io_uring_disabled());
    items.push(aio_max_nr());
    items.push(Item::report(memlock_check(shards)));
    items.push(Item::report(nofile_check()));
    items
}

fn placement_item(explanation: Option<String>) -> Item {
    Item::report(match explanation {
        Some(e) => Check::new("placement", Status::Ok, e),
        None => Check::new("placement", Status::Warn, "no usable cpus found"),
    })
}

fn cpu_governor(online: &[usize]) -> Item {
    let files: Vec<PathBuf> = online
        .iter()
        .map(|c| {
            PathBuf::from(format!(
                "/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor"
            ))
        })
        .filter(|p| p.exists())
        .collect();
    if files.is_empty() {
        return Item::report(Check::new(
            "cpu_governor",
            Status::Ok,
            "no cpufreq interface (typical on VMs: the host controls CPU frequency)",
        ));
    }
    let mut values: Vec<String> = files.iter().filter_map(read_trimmed).collect();
    values.sort();
    values.dedup();
    let current = values.join(",");
    let available =
        read_trimmed("/sys/devices/system/cpu/cpu0/cpufreq/scaling_available_governors")
            .unwrap_or_default();
    if !available.split_whitespace().any(|g| g == "performance") {
        return Item::report(
            Check::new(
                "cpu_governor",
                Status::Ok,
                format!("governor {current}; \"performance\" is not offered by this driver"),
            )
            .with_values(current, "performance"),
        );
    }
    let ok = values == ["performance"];
    let check = Check::new(
        "cpu_governor",
        if ok { Status::Ok } else { Status::Warn },
        if ok {
            "all shard cpus run the performance governor".to_string()
        } else {
            format!("governor {current}: frequency scaling adds wake-up latency to idle shards")
        },
    )
    .with_values(current, "performance");
    let check = if ok {
        check
    } else {
        check.with_fix("cpupower frequency-set -g performance (or ringtail tune --apply)")
    };
    Item::setting(
        check,
        files
            .into_iter()
            .map(|p| (p, "performance".into()))
            .collect(),
    )
}

fn sysfs_choice(
    name: &'static str,
    path: &str,
    good: &[&str],
    recommended: &str,
    why: &str,
    fix: &str,
) -> Item {
    let path = PathBuf::from(path);
    let Some(raw) = read_trimmed(&path) else {
        return Item::report(Check::new(
            name,
            Status::Ok,
            format!("{} not present on this kernel", path.display()),
        ));
    };
    let current = bracketed(&raw).unwrap_or(&raw).to_string();
    let ok = good.contains(&current.as_str());
    let check = if ok {
        Check::new(name, Status::Ok, current.clone())
    } else {
        Check::new(name, Status::Warn, format!("{current}: {why}")).with_fix(fix)
    }
    .with_values(current, recommended);
    Item::setting(check, vec![(path, recommended.to_string())])
}

fn thp_enabled() -> Item {
    sysfs_choice(
        "thp",
        "/sys/kernel/mm/transparent_hugepage/enabled",
        &["madvise", "always"],
        "madvise",
        "Ringtail asks for huge pages (madvise) for its O_DIRECT buffers only, so that a 1 MiB \
         read reaches the disk as one request; with `never` reads are split into more requests \
         (a cold read was 8-20% slower); `always` also gives them to all other memory",
        "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled (persist: \
         transparent_hugepage=madvise on the kernel command line)",
    )
}

fn thp_defrag() -> Item {
    sysfs_choice(
        "thp_defrag",
        "/sys/kernel/mm/transparent_hugepage/defrag",
        &["madvise", "defer+madvise", "defer", "never"],
        "madvise",
        "direct compaction on page faults stalls the faulting shard",
        "echo madvise > /sys/kernel/mm/transparent_hugepage/defrag",
    )
}

fn procfs_number(
    name: &'static str,
    path: &str,
    ok: impl Fn(u64) -> bool,
    recommended: u64,
    why: &str,
    fix: &str,
) -> Item {
    let path = PathBuf::from(path);
    let Some(raw) = read_trimmed(&path) else {
        return Item::report(Check::new(
            name,
            Status::Ok,
            format!("{} not present", path.display()),
        ));
    };
    let good = raw.parse::<u64>().is_ok_and(&ok);
    let check = if good {
        Check::new(name, Status::Ok, raw.clone())
    } else {
        Check::new(name, Status::Warn, format!("{raw}: {why}")).with_fix(fix)
    }
    .with_values(raw, recommended.to_string());
    Item::setting(check, vec![(path, recommended.to_string())])
}

fn swappiness() -> Item {
    procfs_number(
        "swappiness",
        "/proc/sys/vm/swappiness",
        |v| v <= 10,
        1,
        "the kernel may swap out broker memory (batch cache, indexes) under page-cache pressure",
        "sysctl -w vm.swappiness=1 (persist in /etc/sysctl.d/)",
    )
}

fn clocksource() -> Item {
    let base = "/sys/devices/system/clocksource/clocksource0";
    let Some(current) = read_trimmed(format!("{base}/current_clocksource")) else {
        return Item::report(Check::new(
            "clocksource",
            Status::Ok,
            "clocksource not exposed",
        ));
    };
    let available = read_trimmed(format!("{base}/available_clocksource")).unwrap_or_default();
    clocksource_item(base, current, &available)
}

fn clocksource_item(base: &str, current: String, available: &str) -> Item {
    // Clocksources readable from the vDSO (no syscall per timestamp).
    const FAST: &[&str] = &[
        "tsc",
        "kvm-clock",
        "arch_sys_counter",
        "hyperv_clocksource_tsc_page",
    ];
    if FAST.contains(&current.as_str()) {
        return Item::setting(
            Check::new(
                "clocksource",
                Status::Ok,
                format!("{current} (read from the vDSO, no syscall per timestamp)"),
            )
            .with_values(current.clone(), current),
            Vec::new(),
        );
    }
    let has_tsc = available.split_whitespace().any(|c| c == "tsc");
    let recommended = if has_tsc {
        "tsc"
    } else {
        "(none faster available)"
    };
    let check = Check::new(
        "clocksource",
        if has_tsc { Status::Warn } else { Status::Ok },
        format!(
            "{current}: every clock read is slow (syscall or slow device); available: {available}"
        ),
    )
    .with_values(current, recommended);
    if has_tsc {
        Item::setting(
            check.with_fix(format!(
                "echo tsc > {base}/current_clocksource (persist: clocksource=tsc on the kernel \
                 command line)"
            )),
            vec![(
                PathBuf::from(format!("{base}/current_clocksource")),
                "tsc".into(),
            )],
        )
    } else {
        Item::report(check)
    }
}

fn disk_items(data_dir: &Path) -> Vec<Item> {
    let dir = sys::existing_ancestor(data_dir).unwrap_or_else(|| data_dir.to_path_buf());
    let Some((dev, sysdir)) = sys::block_device_of(&dir) else {
        return vec![Item::report(Check::new(
            "disk",
            Status::Ok,
            format!(
                "{} is not on a local block device (tmpfs, overlay or network filesystem): no \
                 disk queue to tune",
                dir.display()
            ),
        ))];
    };
    let queue = sysdir.join("queue");
    let (kind, rotational) = disk_kind(&dev, read_trimmed(queue.join("rotational")).as_deref());
    let mut items = Vec::new();

    // Scheduler: none for SSD/NVMe/virtual disks (the device or the host schedules, and Ringtail
    // already batches and orders its writes), mq-deadline for spinning disks.
    let sched_path = queue.join("scheduler");
    if let Some(raw) = read_trimmed(&sched_path) {
        let current = bracketed(&raw).unwrap_or(&raw).to_string();
        let offered: Vec<&str> = raw
            .split_whitespace()
            .map(|s| s.trim_matches(['[', ']']))
            .collect();
        let want = if rotational { "mq-deadline" } else { "none" };
        let name = "disk_scheduler";
        if !offered.contains(&want) {
            items.push(Item::report(
                Check::new(
                    name,
                    Status::Ok,
                    format!("/dev/{dev}: {current} ({want} is not offered)"),
                )
                .with_values(current, want),
            ));
        } else {
            let ok = current == want;
            let check = Check::new(
                name,
                if ok { Status::Ok } else { Status::Warn },
                format!("/dev/{dev} ({kind}): scheduler {current}"),
            )
            .with_values(current, want);
            let check = if ok {
                check
            } else {
                check.with_fix(format!(
                    "echo {want} > {} (persist with a udev rule)",
                    sched_path.display()
                ))
            };
            items.push(Item::setting(check, vec![(sched_path, want.into())]));
        }
    }

    // nomerges=2: skip the block layer's merge attempts; Ringtail's O_DIRECT writes are already
    // large and contiguous (as Redpanda's tuner does).
    if !rotational {
        let path = queue.join("nomerges");
        if let Some(current) = read_trimmed(&path) {
            let ok = current == "2";
            let check = Check::new(
                "disk_nomerges",
                if ok { Status::Ok } else { Status::Warn },
                format!("/dev/{dev}: nomerges {current}"),
            )
            .with_values(current, "2");
            let check = if ok {
                check
            } else {
                check.with_fix(format!(
                    "echo 2 > {} (persist with a udev rule)",
                    path.display()
                ))
            };
            items.push(Item::setting(check, vec![(path, "2".into())]));
        }
    }
    items
}

/// How to treat a disk: (description, rotational). virtio-blk (`vd*`) and Xen (`xvd*`) disks
/// report rotational=1 whatever backs them, and the host schedules their I/O.
fn disk_kind(dev: &str, rotational_flag: Option<&str>) -> (&'static str, bool) {
    if dev.starts_with("vd") || dev.starts_with("xvd") {
        ("virtual disk", false)
    } else if rotational_flag == Some("1") {
        ("rotational", true)
    } else {
        ("non-rotational", false)
    }
}

fn irq_affinity(reserved: &[usize]) -> Item {
    let Ok(entries) = std::fs::read_dir("/proc/irq") else {
        return Item::report(Check::new(
            "irq_affinity",
            Status::Ok,
            "/proc/irq not readable",
        ));
    };
    let mut irqs: Vec<(u32, PathBuf, String)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let irq: u32 = e.file_name().to_str()?.parse().ok()?;
            // Only IRQs with a handler have subdirectories (named after the device).
            let has_handler = std::fs::read_dir(e.path())
                .ok()?
                .filter_map(Result::ok)
                .any(|f| f.path().is_dir());
            if !has_handler {
                return None;
            }
            let path = e.path().join("smp_affinity_list");
            let aff = read_trimmed(&path)?;
            Some((irq, path, aff))
        })
        .collect();
    irqs.sort_by_key(|(irq, _, _)| *irq);
    let irqbalance = irqbalance_running();
    let mut by_affinity: std::collections::BTreeMap<String, usize> = Default::default();
    for (_, _, aff) in &irqs {
        *by_affinity.entry(aff.clone()).or_default() += 1;
    }
    let current = by_affinity
        .iter()
        .map(|(aff, n)| format!("{n} on cpus {aff}"))
        .collect::<Vec<_>>()
        .join(", ");
    let summary = format!(
        "{} device IRQs: {}{}",
        irqs.len(),
        if current.is_empty() { "none" } else { &current },
        if irqbalance {
            "; irqbalance is running"
        } else {
            ""
        }
    );
    if reserved.is_empty() {
        return Item::report(
            Check::new(
                "irq_affinity",
                Status::Ok,
                format!(
                    "{summary}; no cpu is reserved for IRQs (fewer than 4 cpus), nothing to steer"
                ),
            )
            .with_values(current, "unchanged"),
        );
    }
    let want = format_cpu_list(reserved);
    let want_set = parse_cpu_list(&want).ok();
    let off_target: Vec<&(u32, PathBuf, String)> = irqs
        .iter()
        .filter(|(_, _, aff)| parse_cpu_list(aff).ok() != want_set)
        .collect();
    if off_target.is_empty() {
        return Item::report(
            Check::new(
                "irq_affinity",
                Status::Ok,
                format!("{summary}; all on reserved cpus"),
            )
            .with_values(current, want),
        );
    }
    let mut fix = format!(
        "write {want} to /proc/irq/<n>/smp_affinity_list for device IRQs (ringtail tune --apply); \
         per-queue IRQs of NVMe/virtio are kernel-managed and stay spread"
    );
    if irqbalance {
        fix.push_str("; stop irqbalance first or it will move them back (systemctl disable --now irqbalance)");
    }
    let check = Check::new(
        "irq_affinity",
        Status::Warn,
        format!(
            "{summary}; {} IRQ(s) can interrupt shard cpus, reserved cpus are {want}",
            off_target.len()
        ),
    )
    .with_values(current, want.clone())
    .with_fix(fix);
    let writes: Vec<(PathBuf, String)> = off_target
        .into_iter()
        .map(|(_, p, _)| (p.clone(), want.clone()))
        .collect();
    let mut item = Item::setting(check, writes);
    // Moving IRQs under a running irqbalance is undone within seconds: do not claim we can.
    item.check.can_apply &= !irqbalance;
    item
}

/// The DAMON sysfs admin interface: one directory per monitoring thread (`kdamond.N`).
const DAMON_ADMIN: &str = "/sys/kernel/mm/damon/admin/kdamonds";

/// DAMON monitors that are running. Each is a kernel thread (`kdamond.N`) that may run on any
/// cpu, shard cpus included, for milliseconds at a time: on the benchmark VM it held the
/// broker's cpu for up to 3.7 ms in a row during the e2e latency run. Report-only: something
/// on the machine turned it on (proactive reclaim, memory tiering), and stopping it is the
/// operator's call.
fn damon(admin: &Path, reserved: &[usize]) -> Item {
    let Some(n) = read_trimmed(admin.join("nr_kdamonds")).and_then(|v| v.parse::<u32>().ok())
    else {
        return Item::report(Check::new("damon", Status::Ok, "DAMON not present"));
    };
    let running: Vec<(u32, Option<String>)> = (0..n)
        .filter(|i| read_trimmed(admin.join(format!("{i}/state"))).as_deref() == Some("on"))
        .map(|i| (i, read_trimmed(admin.join(format!("{i}/pid")))))
        .collect();
    if running.is_empty() {
        return Item::report(
            Check::new("damon", Status::Ok, format!("{n} monitor(s), none running"))
                .with_values("off", "off"),
        );
    }
    let names = running
        .iter()
        .map(|(i, pid)| match pid {
            Some(pid) => format!("kdamond.{i} (pid {pid})"),
            None => format!("kdamond.{i}"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let stop = running
        .iter()
        .map(|(i, _)| format!("echo off > {}", admin.join(format!("{i}/state")).display()))
        .collect::<Vec<_>>()
        .join("; ");
    let mut fix = format!("on a dedicated broker, stop it if nothing relies on it: {stop}");
    if !reserved.is_empty() {
        let pids = running
            .iter()
            .filter_map(|(_, pid)| pid.clone())
            .collect::<Vec<_>>()
            .join(" ");
        fix.push_str(&format!(
            "; or keep it off shard cpus: for p in {pids}; do taskset -pc {} $p; done",
            format_cpu_list(reserved)
        ));
    }
    Item::report(
        Check::new(
            "damon",
            Status::Warn,
            format!(
                "DAMON is running: {names}; its thread can take a shard's cpu for milliseconds \
                 at a time (tail latency); not changed by --apply"
            ),
        )
        .with_values("on", "off")
        .with_fix(fix),
    )
}

fn irqbalance_running() -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.filter_map(Result::ok).any(|e| {
        e.file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            && read_trimmed(e.path().join("comm")).as_deref() == Some("irqbalance")
    })
}

fn io_uring_disabled() -> Item {
    let path = PathBuf::from("/proc/sys/kernel/io_uring_disabled");
    let Some(current) = io_uring_disabled_sysctl() else {
        return Item::report(Check::new(
            "io_uring_disabled",
            Status::Ok,
            "kernel.io_uring_disabled not present (kernels before 6.6 have no such switch)",
        ));
    };
    let (status, detail) = match current.as_str() {
        "0" => (Status::Ok, "io_uring enabled for all processes".to_string()),
        "1" => (
            Status::Warn,
            "io_uring only for CAP_SYS_ADMIN or members of kernel.io_uring_group".to_string(),
        ),
        _ => (
            Status::Fail,
            "io_uring disabled for every process: Ringtail cannot run".to_string(),
        ),
    };
    let check = Check::new("io_uring_disabled", status, detail).with_values(current, "0");
    let check = if status == Status::Ok {
        check
    } else {
        check.with_fix("sysctl -w kernel.io_uring_disabled=0 (persist in /etc/sysctl.d/)")
    };
    Item::setting(check, vec![(path, "0".into())])
}

fn aio_max_nr() -> Item {
    let current = read_trimmed("/proc/sys/fs/aio-max-nr").unwrap_or_else(|| "absent".into());
    let nr = read_trimmed("/proc/sys/fs/aio-nr").unwrap_or_else(|| "?".into());
    Item::report(
        Check::new(
            "aio_max_nr",
            Status::Ok,
            format!(
                "fs.aio-max-nr {current} (in use {nr}): not used by Ringtail, whose I/O goes \
                 through io_uring; Seastar-based brokers (Redpanda) need it raised"
            ),
        )
        .with_values(current.clone(), current),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_is_complete_and_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let before = tune_report(dir.path());
        for name in [
            "placement",
            "cpu_governor",
            "thp",
            "swappiness",
            "clocksource",
            "irq_affinity",
            "damon",
            "io_uring_disabled",
            "aio_max_nr",
            "memlock",
            "nofile",
        ] {
            assert!(
                before.iter().any(|c| c.name == name),
                "missing {name}: {before:#?}"
            );
        }
        for c in &before {
            assert!(!c.detail.is_empty(), "{c:?}");
            if c.status == Status::Warn && c.name != "memlock" && c.name != "nofile" {
                assert!(c.fix.is_some(), "{c:?}");
            }
        }
        // Reporting twice gives the same settings: nothing was written.
        let again = tune_report(dir.path());
        let values = |v: &[Check]| {
            v.iter()
                // Counters and IRQ placement may move on their own (aio-nr, irqbalance).
                .filter(|c| c.name != "aio_max_nr" && c.name != "irq_affinity")
                .map(|c| (c.name, c.current.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(values(&before), values(&again));
        assert!(serde_json::to_string(&before)
            .unwrap()
            .contains("can_apply"));
    }

    #[test]
    fn clocksources() {
        let base = "/nonexistent/clocksource0";
        for fast in ["tsc", "kvm-clock", "arch_sys_counter"] {
            let item = clocksource_item(base, fast.into(), "tsc hpet acpi_pm");
            assert_eq!(item.check.status, Status::Ok);
            assert!(item.writes.is_empty());
        }
        let item = clocksource_item(base, "hpet".into(), "tsc hpet acpi_pm");
        assert_eq!(item.check.status, Status::Warn);
        assert_eq!(item.check.recommended.as_deref(), Some("tsc"));
        assert_eq!(item.writes.len(), 1);
        assert!(!item.check.can_apply); // the file does not exist
        let item = clocksource_item(base, "xen".into(), "xen");
        assert_eq!(item.check.status, Status::Ok); // nothing better to offer
        assert!(item.writes.is_empty());
    }

    #[test]
    fn damon_monitors() {
        let dir = tempfile::tempdir().unwrap();
        let admin = dir.path();
        assert_eq!(damon(&admin.join("missing"), &[]).check.status, Status::Ok);
        std::fs::write(admin.join("nr_kdamonds"), "2\n").unwrap();
        for (i, state, pid) in [(0, "off", "-1"), (1, "on", "77")] {
            std::fs::create_dir(admin.join(i.to_string())).unwrap();
            std::fs::write(admin.join(format!("{i}/state")), format!("{state}\n")).unwrap();
            std::fs::write(admin.join(format!("{i}/pid")), format!("{pid}\n")).unwrap();
        }
        let item = damon(admin, &[0]);
        assert_eq!(item.check.status, Status::Warn);
        assert!(
            item.check.detail.contains("kdamond.1 (pid 77)"),
            "{}",
            item.check.detail
        );
        assert!(!item.check.detail.contains("kdamond.0"));
        let fix = item.check.fix.clone().unwrap();
        assert!(
            fix.contains("1/state") && fix.contains("taskset -pc 0 $p"),
            "{fix}"
        );
        // Report-only: --apply never stops it.
        assert!(item.writes.is_empty() && !item.check.can_apply);
        std::fs::write(admin.join("1/state"), "off\n").unwrap();
        assert_eq!(damon(admin, &[]).check.status, Status::Ok);
    }

    #[test]
    fn disk_kinds() {
        assert_eq!(disk_kind("vda", Some("1")), ("virtual disk", false));
        assert_eq!(disk_kind("xvdb", Some("1")), ("virtual disk", false));
        assert_eq!(disk_kind("sda", Some("1")), ("rotational", true));
        assert_eq!(disk_kind("nvme0n1", Some("0")), ("non-rotational", false));
        assert_eq!(disk_kind("sdb", None), ("non-rotational", false));
    }

    #[test]
    fn apply_reports_unwritable_without_writing() {
        let check = Check::new("x", Status::Warn, "bad").with_values("a", "b");
        let item = Item::setting(
            check,
            vec![(PathBuf::from("/nonexistent/knob"), "b".into())],
        );
        assert!(!item.check.can_apply);
        let out = apply_item(item);
        assert_eq!(out.status, Status::Warn);
        assert!(out.detail.starts_with("not changed"), "{}", out.detail);
    }

    #[test]
    fn apply_writes_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let knob = dir.path().join("knob");
        std::fs::write(&knob, "[always] madvise never\n").unwrap();
        let check = Check::new("knob", Status::Warn, "always").with_values("always", "madvise");
        let item = Item::setting(check, vec![(knob.clone(), "madvise".into())]);
        assert!(item.check.can_apply);
        let out = apply_item(item);
        assert_eq!(out.status, Status::Ok, "{out:?}");
        assert!(out.detail.contains("changed from always to madvise"));
        assert_eq!(std::fs::read_to_string(&knob).unwrap(), "madvise");
    }
}
