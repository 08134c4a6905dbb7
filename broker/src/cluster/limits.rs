//! Resource limits of a broker: how many partition replicas a shard may own and how many client
//! connections it may serve, from the configuration and from `RLIMIT_NOFILE`.
//!
//! Owns the arithmetic only (no I/O): [`plan`] runs once at start-up on the main thread, after
//! the soft `RLIMIT_NOFILE` was raised to the hard one, and its result is stored in the
//! [`crate::config::BrokerConfig`] every shard shares. The controller (shard 0) checks every
//! change that adds partitions (CreateTopics, also `validate_only`, auto-creation by Metadata,
//! CreatePartitions) with [`PartitionLimit::check`] before anything is persisted; each shard
//! also refuses to open more partitions than the limit (see `Shard::open_new_partitions`), so
//! metadata written before a limit was lowered cannot exhaust the descriptors either.
//!
//! Descriptors are budgeted in this order: a fixed reserve for the process (stdio, io_uring
//! rings and eventfds, listeners, metadata files, the admin endpoint), then at most
//! [`CONNECTION_FD_SHARE_PERCENT`] of the rest for client connections (one descriptor each),
//! then what is left for partitions at [`FDS_PER_PARTITION`] each.
//!
//! Invariants: every partition replica counts, internal topics included; a change that makes
//! some shard own more than [`PartitionLimit::max_per_shard`] partitions is refused as a whole
//! (per topic), except for the broker's own internal topics, which it needs to work at all.

use crate::cluster::meta::topic_hash;

/// Partition replicas one shard may own unless the configuration says otherwise
/// (`max_partitions_per_shard`). Redpanda, the other thread-per-core Kafka broker, caps
/// `topic_partitions_per_shard` at 1000 in its early releases and 5000 today; Confluent's
/// guidance for Kafka is about 4000 per broker. Measured on the 2-core development VM with one
/// shard: 4000 partitions take 31 MiB RSS empty and 46 MiB after a write to each, 8000
/// descriptors, 0.1 % idle CPU; creating 3950 in one CreateTopics took 22 s, so much larger
/// requests would run into clients' 30 s admin timeouts. The file descriptor budget usually
/// lowers it (see [`plan`]).
pub const MAX_PARTITIONS_PER_SHARD_DEFAULT: usize = 4000;
/// Upper bound of `max_partitions_per_shard`: each metadata change walks every partition, and
/// the limit is meant to be tuned down, not up.
pub const MAX_PARTITIONS_PER_SHARD_CEILING: usize = 131_072;
/// Segments per partition the descriptor budget counts on: the active one and one sealed
/// segment. Partitions with more segments (long retention, small `segment.bytes`) hold more.
pub const SEGMENTS_PER_PARTITION_FD_BUDGET: usize = 2;
/// Descriptors budgeted per partition replica.
pub const FDS_PER_PARTITION: usize = storage::FDS_PER_SEGMENT * SEGMENTS_PER_PARTITION_FD_BUDGET;
/// Descriptors kept for the process itself, whatever the shard count.
pub const FDS_RESERVED_PROCESS: u64 = 256;
/// Descriptors kept per shard: glommio's 3 rings and their eventfds, the listener, the
/// cross-shard channels, files opened briefly (checkpoints, index files of a sealed segment).
pub const FDS_RESERVED_PER_SHARD: u64 = 64;
/// Most of the descriptors left after the reserves that client connections may take.
pub const CONNECTION_FD_SHARE_PERCENT: u64 = 50;

const _: () = assert!(FDS_PER_PARTITION >= 1);
const _: () = assert!(CONNECTION_FD_SHARE_PERCENT < 100);
const _: () = assert!(MAX_PARTITIONS_PER_SHARD_DEFAULT <= MAX_PARTITIONS_PER_SHARD_CEILING);

/// The partition-replica limit of every shard, with where it comes from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLimit {
    /// `max_partitions_per_shard` as configured.
    pub configured: usize,
    /// What the descriptor budget allows per shard; `None` when it allows any number (no
    /// finite `RLIMIT_NOFILE`, or not computed yet).
    pub fd_budget: Option<usize>,
    /// `RLIMIT_NOFILE` the budget was computed from.
    pub nofile: Option<u64>,
    pub shards: usize,
}

impl PartitionLimit {
    pub fn new(configured: usize, shards: usize) -> PartitionLimit {
        PartitionLimit {
            configured,
            fd_budget: None,
            nofile: None,
            shards,
        }
    }

    /// The effective limit: partition replicas one shard may own.
    pub fn max_per_shard(&self) -> usize {
        self.fd_budget
            .map_or(self.configured, |fds| fds.min(self.configured))
    }

    /// Where the limit comes from, for error messages and the start-up log.
    pub fn describe(&self) -> String {
        let max = self.max_per_shard();
        match (self.fd_budget, self.nofile) {
            (Some(fds), Some(nofile)) if fds < self.configured => format!(
                "{max} partition replicas per shard (max_partitions_per_shard = {}, lowered by \
                 the file descriptor budget: RLIMIT_NOFILE {nofile}, {FDS_PER_PARTITION} \
                 descriptors per partition)",
                self.configured
            ),
            _ => format!("{max} partition replicas per shard (max_partitions_per_shard)"),
        }
    }

    /// Checks that adding partitions `from..to` of `topic` keeps every shard that gains one
    /// within the limit. `owned` is what each shard owns now; on success it is updated to
    /// include the new partitions. A shard already above the limit (a lowered limit) only
    /// refuses to gain more.
    pub fn check(
        &self,
        owned: &mut [usize],
        topic: &str,
        from: i32,
        to: i32,
    ) -> Result<(), String> {
        assert_eq!(owned.len(), self.shards.max(1), "one count per shard");
        let mut after = owned.to_vec();
        add_partitions(&mut after, topic, from, to);
        let max = self.max_per_shard();
        // The shard that exceeds the limit the most names the numbers in the message.
        let worst = (0..after.len())
            .filter(|&s| after[s] > owned[s] && after[s] > max)
            .max_by_key(|&s| after[s] - max);
        if let Some(s) = worst {
            let new = to.saturating_sub(from).max(0);
            return Err(format!(
                "Refusing to add {new} partition(s) to topic '{topic}': shard {s} would own {} \
                 partition replicas ({} now + {} new), above the limit of {}. This broker has \
                 {} shard(s), so at most {} partition replicas in all (counting internal topics). \
                 Use fewer partitions, delete topics, or raise the limit.",
                after[s],
                owned[s],
                after[s] - owned[s],
                self.describe(),
                self.shards,
                max.saturating_mul(self.shards),
            ));
        }
        owned.copy_from_slice(&after);
        Ok(())
    }
}

/// Partition replicas each of `shards` shards owns for the given (topic, partition count)s.
pub fn owned_per_shard<'a>(
    topics: impl IntoIterator<Item = (&'a str, i32)>,
    shards: usize,
) -> Vec<usize> {
    let mut counts = vec![0; shards.max(1)];
    for (topic, partitions) in topics {
        add_partitions(&mut counts, topic, 0, partitions);
    }
    counts
}

/// Counts partitions `from..to` of `topic` on their owning shards (`counts.len()` shards), as
/// [`crate::cluster::meta::owner_of`] places them. O(shards), whatever the partition count: a request
/// naming huge counts costs no more to refuse than a small one.
pub fn add_partitions(counts: &mut [usize], topic: &str, from: i32, to: i32) {
    add_partitions_from_hash(counts, topic_hash(topic), from, to);
}

fn add_partitions_from_hash(counts: &mut [usize], hash: u64, from: i32, to: i32) {
    let from = u64::try_from(from).unwrap_or(0);
    let to = u64::try_from(to).unwrap_or(0);
    if to <= from {
        return;
    }
    // owner_of: (hash + partition) wrapping at 2^64, modulo the shard count. The values are
    // consecutive up to the wrap and again after it.
    let until_wrap = (u64::MAX - hash).saturating_add(1); // partitions before the wrap
    let first_len = (to - from).min(until_wrap.saturating_sub(from));
    if first_len > 0 {
        add_run(counts, hash.wrapping_add(from), first_len);
    }
    let rest = (to - from) - first_len;
    if rest > 0 {
        add_run(counts, hash.wrapping_add(from + first_len), rest);
    }
}

/// Counts `len` consecutive (non-wrapping) values starting at `start` by their residue
/// modulo `counts.len()`.
fn add_run(counts: &mut [usize], start: u64, len: u64) {
    let shards = counts.len() as u64;
    let per_shard = len / shards;
    let extra = len % shards;
    let first = start % shards;
    for (s, count) in counts.iter_mut().enumerate() {
        // How far shard s is after the first value's shard, going round.
        let distance = (s as u64 + shards - first) % shards;
        let n = per_shard + u64::from(distance < extra);
        *count = count.saturating_add(usize::try_from(n).unwrap_or(usize::MAX));
    }
}

/// The limits a broker runs with, and one sentence for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePlan {
    pub partitions: PartitionLimit,
    /// Effective `max_connections_per_shard`.
    pub connections_per_shard: usize,
    pub explanation: String,
}

/// Splits the descriptors of `nofile` (the soft `RLIMIT_NOFILE`, `None` = unlimited) between
/// the process, client connections and partitions (see the module docs).
pub fn plan(
    nofile: Option<u64>,
    shards: usize,
    partitions_configured: usize,
    connections_configured: usize,
) -> ResourcePlan {
    let shards = shards.max(1);
    let mut partitions = PartitionLimit::new(partitions_configured, shards);
    let Some(limit) = nofile else {
        return ResourcePlan {
            explanation: format!(
                "RLIMIT_NOFILE is unlimited: partition limit {}, {connections_configured} \
                 connections per shard",
                partitions.describe()
            ),
            partitions,
            connections_per_shard: connections_configured,
        };
    };
    let n = shards as u64;
    let reserved = FDS_RESERVED_PROCESS + FDS_RESERVED_PER_SHARD * n;
    let available = limit.saturating_sub(reserved);
    let wanted_for_connections = (connections_configured as u64).saturating_mul(n);
    let for_connections = wanted_for_connections.min(available * CONNECTION_FD_SHARE_PERCENT / 100);
    // At least one connection per shard, or the broker could not be reached at all.
    let connections_per_shard = usize::try_from(for_connections / n)
        .unwrap_or(usize::MAX)
        .max(1);
    let for_partitions = available - for_connections;
    let fd_budget =
        usize::try_from(for_partitions / n / FDS_PER_PARTITION as u64).unwrap_or(usize::MAX);
    partitions.fd_budget = Some(fd_budget);
    partitions.nofile = Some(limit);
    let explanation = format!(
        "RLIMIT_NOFILE {limit}: {reserved} descriptors kept for the process, {for_connections} \
         for client connections ({connections_per_shard} per shard{}), {for_partitions} for \
         partitions ({FDS_PER_PARTITION} each: {SEGMENTS_PER_PARTITION_FD_BUDGET} segments of \
         {} descriptors) = {fd_budget} partition replicas per shard; partition limit {}",
        if connections_per_shard < connections_configured {
            format!(", lowered from max_connections_per_shard = {connections_configured}")
        } else {
            String::new()
        },
        storage::FDS_PER_SEGMENT,
        partitions.describe(),
    );
    ResourcePlan {
        partitions,
        connections_per_shard,
        explanation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::meta::owner_of;

    #[test]
    fn counts_match_owner_of() {
        let counts = owned_per_shard([("a", 10), ("bb", 7), ("c", 0)], 3);
        assert_eq!(counts.iter().sum::<usize>(), 17);
        for (s, &count) in counts.iter().enumerate() {
            let brute = (0..10).filter(|&p| owner_of("a", p, 3) == s).count()
                + (0..7).filter(|&p| owner_of("bb", p, 3) == s).count();
            assert_eq!(count, brute);
        }
        assert_eq!(owned_per_shard([("a", 5)], 1), vec![5]);
        // Growing a topic counts only the added partitions.
        let mut grown = owned_per_shard([("a", 4)], 2);
        add_partitions(&mut grown, "a", 4, 9);
        assert_eq!(grown, owned_per_shard([("a", 9)], 2));
    }

    /// The arithmetic count agrees with placing every partition by `owner_of`, also where
    /// the hash wraps around 2^64.
    #[test]
    fn counting_matches_placing_each_partition() {
        for shards in 1..=7usize {
            for topic in ["a", "orders", "__consumer_offsets", "t-1234"] {
                for (from, to) in [(0, 0), (0, 1), (0, 13), (5, 40), (3, 2), (-4, 9)] {
                    let mut counted = vec![0; shards];
                    add_partitions(&mut counted, topic, from, to);
                    let mut placed = vec![0; shards];
                    for p in from.max(0)..to {
                        placed[owner_of(topic, p, shards)] += 1;
                    }
                    assert_eq!(counted, placed, "{topic} {from}..{to} on {shards}");
                }
            }
            for hash in [u64::MAX, u64::MAX - 3, u64::MAX - 100] {
                let mut counted = vec![0; shards];
                add_partitions_from_hash(&mut counted, hash, 0, 50);
                let mut placed = vec![0; shards];
                for p in 0..50u64 {
                    placed[(hash.wrapping_add(p) % shards as u64) as usize] += 1;
                }
                assert_eq!(counted, placed, "hash {hash} on {shards}");
            }
        }
        // Huge counts cost nothing to count.
        let mut counts = vec![0; 3];
        add_partitions(&mut counts, "big", 0, i32::MAX);
        assert_eq!(counts.iter().sum::<usize>(), i32::MAX as usize);
    }

    #[test]
    fn check_refuses_beyond_the_limit_and_names_the_numbers() {
        let limit = PartitionLimit::new(100, 1);
        let mut owned = vec![50];
        assert!(limit.check(&mut owned, "t", 0, 50).is_ok());
        assert_eq!(owned, vec![100]);
        let err = limit.check(&mut owned, "u", 0, 1).unwrap_err();
        assert!(err.contains("shard 0 would own 101"), "{err}");
        assert!(err.contains("(100 now + 1 new)"), "{err}");
        assert!(err.contains("limit of 100"), "{err}");
        assert!(err.contains("max_partitions_per_shard"), "{err}");
        assert_eq!(owned, vec![100], "a refused change counts nothing");
    }

    #[test]
    fn check_spreads_over_shards() {
        // 2 shards of 10: 20 partitions fit, 21 do not.
        let limit = PartitionLimit::new(10, 2);
        let mut owned = vec![0, 0];
        assert!(limit.check(&mut owned, "t", 0, 20).is_ok());
        assert_eq!(owned, vec![10, 10]);
        let mut owned = vec![0, 0];
        let err = limit.check(&mut owned, "t", 0, 21).unwrap_err();
        assert!(err.contains("would own 11"), "{err}");
        assert!(err.contains("at most 20 partition replicas"), "{err}");
        // A huge request is refused without overflow.
        let err = limit
            .check(&mut owned, "t", 0, i32::MAX / 1000)
            .unwrap_err();
        assert!(
            err.contains("Refusing to add 2147483 partition(s)"),
            "{err}"
        );
    }

    #[test]
    fn a_shard_over_a_lowered_limit_only_refuses_growth() {
        let limit = PartitionLimit::new(3, 2);
        // Shard 0 owns 5 (the limit was lowered); a topic landing only on shard 1 fits.
        let mut owned = vec![5, 0];
        let one_on_1 = (0..100)
            .map(|i| format!("t{i}"))
            .find(|t| owner_of(t, 0, 2) == 1)
            .unwrap();
        assert!(limit.check(&mut owned, &one_on_1, 0, 1).is_ok());
        assert_eq!(owned, vec![5, 1]);
        let one_on_0 = (0..100)
            .map(|i| format!("t{i}"))
            .find(|t| owner_of(t, 0, 2) == 0)
            .unwrap();
        assert!(limit.check(&mut owned, &one_on_0, 0, 1).is_err());
    }

    #[test]
    fn fd_budget_lowers_the_limit() {
        // 20 000 descriptors, 2 shards, 10 000 connections per shard wanted.
        let p = plan(Some(20_000), 2, 4000, 10_000);
        let reserved = FDS_RESERVED_PROCESS + 2 * FDS_RESERVED_PER_SHARD;
        let available = 20_000 - reserved;
        let for_connections = available * CONNECTION_FD_SHARE_PERCENT / 100;
        assert_eq!(p.connections_per_shard as u64, for_connections / 2);
        let per_shard = ((available - for_connections) / 2) as usize / FDS_PER_PARTITION;
        assert_eq!(p.partitions.fd_budget, Some(per_shard));
        assert_eq!(p.partitions.max_per_shard(), per_shard.min(4000));
        // Budgeted descriptors never exceed the limit.
        let used = reserved
            + (p.connections_per_shard * 2) as u64
            + (p.partitions.max_per_shard() * 2 * FDS_PER_PARTITION) as u64;
        assert!(used <= 20_000, "{used}");
        if per_shard < 4000 {
            assert!(p.partitions.describe().contains("RLIMIT_NOFILE 20000"));
        }
        assert!(
            p.explanation.contains("RLIMIT_NOFILE 20000"),
            "{}",
            p.explanation
        );
    }

    #[test]
    fn plenty_of_descriptors_keep_the_configured_limits() {
        let p = plan(Some(1 << 20), 2, 4000, 10_000);
        assert_eq!(p.partitions.max_per_shard(), 4000);
        assert_eq!(p.connections_per_shard, 10_000);
        assert!(!p.partitions.describe().contains("lowered"));
        let p = plan(None, 4, 4000, 10_000);
        assert_eq!(p.partitions.max_per_shard(), 4000);
        assert_eq!(p.partitions.fd_budget, None);
    }

    #[test]
    fn tiny_descriptor_limits_still_leave_a_connection() {
        let p = plan(Some(100), 2, 4000, 10_000);
        assert_eq!(p.connections_per_shard, 1);
        assert_eq!(p.partitions.max_per_shard(), 0);
        let err = p.partitions.check(&mut [0, 0], "t", 0, 1).unwrap_err();
        assert!(err.contains("RLIMIT_NOFILE 100"), "{err}");
    }
}
