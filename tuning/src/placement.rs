//! Which CPUs run shards, and which are left to interrupts and the OS.
//!
//! One glommio executor is pinned per shard CPU. On a machine with 4 or more usable CPUs the
//! lowest one (usually CPU 0, where most device interrupts, timers and housekeeping land) is left
//! free so that interrupt handling and background daemons do not preempt a shard in the middle
//! of a request. On smaller machines a reserved core would cost too large a share of capacity, so
//! every CPU runs a shard.

use serde::Serialize;

use crate::cpus::format_cpu_list;
use crate::TuningError;

/// Fewest usable CPUs at which one is reserved for IRQs/OS by default.
pub const RESERVE_FROM_CPUS: usize = 4;

/// The chosen CPUs for shards, in shard order (shard `i` runs on `shard_cpus[i]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placement {
    pub shard_cpus: Vec<usize>,
    /// Usable CPUs that run no shard (left to IRQs, the OS and blocking helper threads).
    pub reserved_cpus: Vec<usize>,
    /// One human sentence for the start-up log.
    pub explanation: String,
}

/// Plan placement on `online` (the CPUs this process may use, see
/// [`crate::online_cpus`]), optionally for an explicit CPU list.
///
/// - `requested = Some(list)`: exactly those CPUs, in that order (repeats dropped); every one must
///   be in `online`, otherwise `Err(CpuNotAvailable)` naming it. The rest of `online` is reserved.
/// - `requested = None`: with >= 4 usable CPUs, all but the lowest; otherwise all of them.
pub fn plan_placement(
    online: &[usize],
    requested: Option<&[usize]>,
) -> Result<Placement, TuningError> {
    let online = normalise(online)?;
    let placement = match requested {
        Some(list) => {
            let mut shard_cpus: Vec<usize> = Vec::with_capacity(list.len());
            for &cpu in list {
                if !online.contains(&cpu) {
                    return Err(TuningError::CpuNotAvailable {
                        cpu,
                        available: format_cpu_list(&online),
                    });
                }
                if !shard_cpus.contains(&cpu) {
                    shard_cpus.push(cpu);
                }
            }
            if shard_cpus.is_empty() {
                return Err(TuningError::InvalidArgument(
                    "the requested cpu list is empty".into(),
                ));
            }
            let reserved: Vec<usize> = online
                .iter()
                .copied()
                .filter(|c| !shard_cpus.contains(c))
                .collect();
            let explanation = if reserved.is_empty() {
                format!(
                    "{} shard(s) on the requested cpus {}; no cpu left for IRQs/OS",
                    shard_cpus.len(),
                    format_cpu_list(&shard_cpus)
                )
            } else {
                format!(
                    "{} shard(s) on the requested cpus {}; cpus {} left to IRQs/OS",
                    shard_cpus.len(),
                    format_cpu_list(&shard_cpus),
                    format_cpu_list(&reserved)
                )
            };
            Placement {
                shard_cpus,
                reserved_cpus: reserved,
                explanation,
            }
        }
        None => default_placement(&online),
    };
    debug_assert!(!placement.shard_cpus.is_empty());
    debug_assert!(placement
        .reserved_cpus
        .iter()
        .all(|c| !placement.shard_cpus.contains(c)));
    Ok(placement)
}

/// Plan `count` shards on `online`: the default placement's shard CPUs first, then the reserved
/// ones if more shards are asked for. More shards than usable CPUs is an error (two executors on
/// one core would preempt each other, which defeats thread-per-core).
pub fn plan_placement_for_count(online: &[usize], count: usize) -> Result<Placement, TuningError> {
    let online = normalise(online)?;
    if count == 0 {
        return Err(TuningError::InvalidArgument(
            "shard count must be at least 1".into(),
        ));
    }
    if count > online.len() {
        return Err(TuningError::InvalidArgument(format!(
            "{count} shards requested but only {} cpu(s) are usable ({}); use at most one shard \
             per cpu",
            online.len(),
            format_cpu_list(&online)
        )));
    }
    let default = default_placement(&online);
    if count <= default.shard_cpus.len() {
        let shard_cpus: Vec<usize> = default.shard_cpus[..count].to_vec();
        let reserved: Vec<usize> = online
            .iter()
            .copied()
            .filter(|c| !shard_cpus.contains(c))
            .collect();
        let explanation = format!(
            "{count} shard(s) on cpus {}; cpus {} left to IRQs/OS",
            format_cpu_list(&shard_cpus),
            if reserved.is_empty() {
                "none".to_string()
            } else {
                format_cpu_list(&reserved)
            }
        );
        return Ok(Placement {
            shard_cpus,
            reserved_cpus: reserved,
            explanation,
        });
    }
    // Using the reserved CPUs as well: shards take every CPU.
    Ok(Placement {
        shard_cpus: online.clone(),
        reserved_cpus: Vec::new(),
        explanation: format!(
            "{count} shard(s) on all usable cpus {}; no cpu left for IRQs/OS (ask for {} shards \
             to keep cpu {} free)",
            format_cpu_list(&online),
            default.shard_cpus.len(),
            format_cpu_list(&default.reserved_cpus)
        ),
    })
}

fn default_placement(online: &[usize]) -> Placement {
    debug_assert!(!online.is_empty());
    if online.len() >= RESERVE_FROM_CPUS {
        let reserved = vec![online[0]];
        let shard_cpus = online[1..].to_vec();
        let explanation = format!(
            "{} shard(s) on cpus {}; cpu {} left to IRQs/OS ({} usable cpus)",
            shard_cpus.len(),
            format_cpu_list(&shard_cpus),
            online[0],
            online.len()
        );
        Placement {
            shard_cpus,
            reserved_cpus: reserved,
            explanation,
        }
    } else {
        Placement {
            shard_cpus: online.to_vec(),
            reserved_cpus: Vec::new(),
            explanation: format!(
                "{} shard(s) on cpus {}; no cpu reserved for IRQs/OS (fewer than \
                 {RESERVE_FROM_CPUS} usable cpus)",
                online.len(),
                format_cpu_list(online)
            ),
        }
    }
}

fn normalise(online: &[usize]) -> Result<Vec<usize>, TuningError> {
    let mut v = online.to_vec();
    v.sort_unstable();
    v.dedup();
    if v.is_empty() {
        return Err(TuningError::NoCpus);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_machines_use_every_cpu() {
        for online in [vec![0], vec![0, 1], vec![0, 1, 2]] {
            let p = plan_placement(&online, None).unwrap();
            assert_eq!(p.shard_cpus, online);
            assert!(p.reserved_cpus.is_empty());
            assert!(
                p.explanation.contains("no cpu reserved"),
                "{}",
                p.explanation
            );
        }
    }

    #[test]
    fn four_or_more_reserve_the_lowest() {
        let p = plan_placement(&[0, 1, 2, 3], None).unwrap();
        assert_eq!(p.shard_cpus, vec![1, 2, 3]);
        assert_eq!(p.reserved_cpus, vec![0]);
        assert!(
            p.explanation.contains("cpu 0 left to IRQs/OS"),
            "{}",
            p.explanation
        );
        // A cpuset that does not contain cpu 0 reserves its own lowest.
        let p = plan_placement(&[9, 4, 5, 6, 4], None).unwrap();
        assert_eq!(p.shard_cpus, vec![5, 6, 9]);
        assert_eq!(p.reserved_cpus, vec![4]);
    }

    #[test]
    fn explicit_list_is_honoured_in_order() {
        let p = plan_placement(&[0, 1, 2, 3], Some(&[3, 1, 3])).unwrap();
        assert_eq!(p.shard_cpus, vec![3, 1]);
        assert_eq!(p.reserved_cpus, vec![0, 2]);
        let p = plan_placement(&[0, 1], Some(&[0, 1])).unwrap();
        assert!(p.reserved_cpus.is_empty());
        assert!(p.explanation.contains("no cpu left"));
    }

    #[test]
    fn explicit_list_must_be_usable() {
        let err = plan_placement(&[0, 1], Some(&[2])).unwrap_err();
        assert!(matches!(err, TuningError::CpuNotAvailable { cpu: 2, .. }));
        assert!(err.to_string().contains("0-1"), "{err}");
        assert!(plan_placement(&[0, 1], Some(&[])).is_err());
        assert!(matches!(
            plan_placement(&[], None),
            Err(TuningError::NoCpus)
        ));
    }

    #[test]
    fn by_count() {
        let online: Vec<usize> = (0..8).collect();
        let p = plan_placement_for_count(&online, 3).unwrap();
        assert_eq!(p.shard_cpus, vec![1, 2, 3]);
        assert_eq!(p.reserved_cpus, vec![0, 4, 5, 6, 7]);
        let p = plan_placement_for_count(&online, 7).unwrap();
        assert_eq!(p.reserved_cpus, vec![0]);
        let p = plan_placement_for_count(&online, 8).unwrap();
        assert_eq!(p.shard_cpus, online);
        assert!(p.reserved_cpus.is_empty());
        assert!(p.explanation.contains("ask for 7"), "{}", p.explanation);
        assert!(plan_placement_for_count(&online, 9).is_err());
        assert!(plan_placement_for_count(&online, 0).is_err());
        let p = plan_placement_for_count(&[0, 1], 2).unwrap();
        assert_eq!(p.shard_cpus, vec![0, 1]);
    }
}
