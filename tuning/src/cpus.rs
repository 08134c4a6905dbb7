//! CPU lists in taskset/cpuset syntax, and the CPUs this process may run on.

use std::collections::BTreeSet;

/// Largest CPU number accepted in a list. Linux's `NR_CPUS` tops out at 8192; a larger number is
/// a typo, and refusing it keeps `"0-99999999"` from allocating a huge vector.
pub const CPU_ID_MAX: usize = 8191;

/// Why a CPU list did not parse. Positions are byte offsets of the offending item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpuListError {
    #[error("empty cpu list")]
    Empty,
    #[error("empty item at byte {at} in cpu list {list:?}")]
    EmptyItem { list: String, at: usize },
    #[error("{item:?} in cpu list {list:?} is not a cpu number or a range like 0-3")]
    NotANumber { list: String, item: String },
    #[error("range {item:?} in cpu list {list:?} is reversed (write {hi}-{lo} as {lo}-{hi})")]
    Reversed {
        list: String,
        item: String,
        lo: usize,
        hi: usize,
    },
    #[error("cpu {cpu} in cpu list {list:?} is above the maximum {CPU_ID_MAX}")]
    TooLarge { list: String, cpu: usize },
}

/// Parse a CPU list in taskset/cpuset syntax: `"1"`, `"0,1"`, `"0-3"`, `"0-3,6,8-9"`.
///
/// Whitespace around items is ignored (sysfs files end in a newline). The result is sorted and
/// duplicates are merged (`"0-2,1"` is `[0, 1, 2]`). Errors on an empty list, empty items
/// (`"0,,1"`, trailing comma), anything that is not a number or range, reversed ranges and
/// numbers above [`CPU_ID_MAX`]. The stride syntax of `cpuset(7)` (`0-8:2`) is not accepted.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, CpuListError> {
    let list = s.trim();
    if list.is_empty() {
        return Err(CpuListError::Empty);
    }
    let mut cpus = BTreeSet::new();
    let mut at = 0usize;
    for raw in list.split(',') {
        let item = raw.trim();
        if item.is_empty() {
            return Err(CpuListError::EmptyItem {
                list: list.to_string(),
                at,
            });
        }
        at += raw.len() + 1;
        let (lo, hi) = match item.split_once('-') {
            Some((a, b)) => (parse_cpu(list, item, a)?, parse_cpu(list, item, b)?),
            None => {
                let c = parse_cpu(list, item, item)?;
                (c, c)
            }
        };
        if lo > hi {
            return Err(CpuListError::Reversed {
                list: list.to_string(),
                item: item.to_string(),
                lo: hi,
                hi: lo,
            });
        }
        cpus.extend(lo..=hi);
    }
    let out: Vec<usize> = cpus.into_iter().collect();
    debug_assert!(!out.is_empty() && out.windows(2).all(|w| w[0] < w[1]));
    Ok(out)
}

fn parse_cpu(list: &str, item: &str, num: &str) -> Result<usize, CpuListError> {
    let num = num.trim();
    // `usize::from_str` accepts a leading '+'; cpu lists never contain one.
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CpuListError::NotANumber {
            list: list.to_string(),
            item: item.to_string(),
        });
    }
    match num.parse::<usize>() {
        Ok(cpu) if cpu <= CPU_ID_MAX => Ok(cpu),
        // Overflow is also "too large".
        _ => Err(CpuListError::TooLarge {
            list: list.to_string(),
            cpu: num.parse::<usize>().unwrap_or(usize::MAX),
        }),
    }
}

/// Format CPUs back into the compact list syntax: `[0,1,2,3,6,8,9]` -> `"0-3,6,8-9"`.
/// Input need not be sorted; duplicates are merged. Empty input gives `""`.
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let set: BTreeSet<usize> = cpus.iter().copied().collect();
    let mut parts: Vec<String> = Vec::new();
    let mut iter = set.into_iter().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

/// The CPUs this process may run on, sorted.
///
/// This is the `sched_getaffinity` mask (which already reflects cgroup cpusets, `taskset` and
/// container `--cpuset-cpus`), intersected with `/sys/devices/system/cpu/online`. When the
/// affinity call fails, the sysfs list is used; when both fail, `0..available_parallelism`.
pub fn online_cpus() -> Vec<usize> {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| parse_cpu_list(&s).ok());
    let affinity = affinity_cpus();
    let cpus = match (affinity, online) {
        (Some(aff), Some(on)) => {
            let both: Vec<usize> = aff.iter().copied().filter(|c| on.contains(c)).collect();
            // A mask with no online CPU cannot happen for a running process; trust the mask.
            if both.is_empty() {
                aff
            } else {
                both
            }
        }
        (Some(aff), None) => aff,
        (None, Some(on)) => on,
        (None, None) => {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            (0..n).collect()
        }
    };
    debug_assert!(cpus.windows(2).all(|w| w[0] < w[1]));
    cpus
}

fn affinity_cpus() -> Option<Vec<usize>> {
    use nix::sched::{sched_getaffinity, CpuSet};
    use nix::unistd::Pid;
    let set = sched_getaffinity(Pid::from_raw(0)).ok()?;
    let cpus: Vec<usize> = (0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect();
    if cpus.is_empty() {
        None
    } else {
        Some(cpus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_lists() {
        assert_eq!(parse_cpu_list("1").unwrap(), vec![1]);
        assert_eq!(parse_cpu_list("0,1").unwrap(), vec![0, 1]);
        assert_eq!(parse_cpu_list("0-3").unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(
            parse_cpu_list("0-3,6,8-9").unwrap(),
            vec![0, 1, 2, 3, 6, 8, 9]
        );
        assert_eq!(parse_cpu_list("5-5").unwrap(), vec![5]);
        assert_eq!(parse_cpu_list("0-1\n").unwrap(), vec![0, 1]);
        assert_eq!(parse_cpu_list(" 2 , 0 - 1 ").unwrap(), vec![0, 1, 2]);
        assert_eq!(parse_cpu_list("8191").unwrap(), vec![8191]);
    }

    #[test]
    fn merges_duplicates_and_sorts() {
        assert_eq!(parse_cpu_list("3,1,1,0-2").unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(
            parse_cpu_list("0-4,2-6").unwrap(),
            (0..=6).collect::<Vec<_>>()
        );
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse_cpu_list(""), Err(CpuListError::Empty));
        assert_eq!(parse_cpu_list("  \n"), Err(CpuListError::Empty));
        for bad in [
            "a", "1,a", "-1", "1-", "-", "1-2-3", "+1", "0x1", "1.5", "1;2", "0-3:2", "１",
        ] {
            assert!(
                matches!(parse_cpu_list(bad), Err(CpuListError::NotANumber { .. })),
                "{bad:?} -> {:?}",
                parse_cpu_list(bad)
            );
        }
        assert!(matches!(
            parse_cpu_list("0,,1"),
            Err(CpuListError::EmptyItem { at: 2, .. })
        ));
        assert!(matches!(
            parse_cpu_list("0,"),
            Err(CpuListError::EmptyItem { .. })
        ));
        assert!(matches!(
            parse_cpu_list(",0"),
            Err(CpuListError::EmptyItem { at: 0, .. })
        ));
    }

    #[test]
    fn rejects_reversed_and_huge() {
        assert_eq!(
            parse_cpu_list("3-1"),
            Err(CpuListError::Reversed {
                list: "3-1".into(),
                item: "3-1".into(),
                lo: 1,
                hi: 3
            })
        );
        assert!(matches!(
            parse_cpu_list("0-8192"),
            Err(CpuListError::TooLarge { cpu: 8192, .. })
        ));
        assert!(matches!(
            parse_cpu_list("99999999999999999999999"),
            Err(CpuListError::TooLarge { .. })
        ));
        // The message tells the user how to write it instead.
        let msg = parse_cpu_list("3-1").unwrap_err().to_string();
        assert!(msg.contains("1-3"), "{msg}");
    }

    #[test]
    fn format_round_trips() {
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 6, 8, 9]), "0-3,6,8-9");
        assert_eq!(format_cpu_list(&[9, 8, 1, 1]), "1,8-9");
        assert_eq!(format_cpu_list(&[]), "");
        for s in ["0", "0-3,6,8-9", "1,3,5", "0-63"] {
            assert_eq!(format_cpu_list(&parse_cpu_list(s).unwrap()), s);
        }
    }

    #[test]
    fn online_cpus_is_sane() {
        let cpus = online_cpus();
        assert!(!cpus.is_empty());
        assert!(cpus.windows(2).all(|w| w[0] < w[1]));
        assert!(cpus.len() <= CPU_ID_MAX + 1);
    }
}
