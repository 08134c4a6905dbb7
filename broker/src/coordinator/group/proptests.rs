//! Random interleavings of clients, timers, append completions and restarts, checked
//! against the coordinator's invariants.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use proptest::prelude::*;

use super::tests::{s, Harness};
use super::*;

const CLIENTS: usize = 5;

#[derive(Debug, Clone)]
enum Op {
    Join {
        client: usize,
        version: i16,
        alt_protocols: bool,
    },
    Sync {
        client: usize,
    },
    Heartbeat {
        client: usize,
    },
    Leave {
        client: usize,
    },
    Commit {
        client: usize,
        offset: i64,
    },
    Advance {
        ms: i64,
    },
    Complete {
        ok: bool,
    },
    Restart,
    /// The client's natural next request, like a real consumer's poll loop.
    Step {
        client: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..CLIENTS, prop_oneof![Just(3i16), Just(4), Just(5), Just(7), Just(9)], any::<bool>())
            .prop_map(|(client, version, alt_protocols)| Op::Join { client, version, alt_protocols: alt_protocols && client == 2 }),
        4 => (0..CLIENTS).prop_map(|client| Op::Sync { client }),
        3 => (0..CLIENTS).prop_map(|client| Op::Heartbeat { client }),
        1 => (0..CLIENTS).prop_map(|client| Op::Leave { client }),
        2 => (0..CLIENTS, 0i64..1000).prop_map(|(client, offset)| Op::Commit { client, offset }),
        3 => (0i64..15_000).prop_map(|ms| Op::Advance { ms }),
        6 => prop_oneof![9 => Just(true), 1 => Just(false)].prop_map(|ok| Op::Complete { ok }),
        1 => Just(Op::Restart),
        12 => (0..CLIENTS).prop_map(|client| Op::Step { client }),
    ]
}

/// What a client believes (a simplified Kafka consumer).
#[derive(Debug, Clone, Default)]
struct Client {
    member_id: String,
    generation: i32,
    leader: bool,
    members: Vec<String>,
    /// Joined `generation` and got its assignment.
    synced: bool,
    /// Told to rejoin (REBALANCE_IN_PROGRESS / ILLEGAL_GENERATION).
    rejoin: bool,
}

fn group_of(client: usize) -> String {
    format!("g{}", client % 2)
}

fn instance_of(client: usize) -> Option<String> {
    (client == 0 || client == 3).then(|| format!("i{client}"))
}

fn assignment_for(generation: i32, member: &str) -> Vec<u8> {
    format!("{generation}:{member}").into_bytes()
}

/// What each request was, to judge its answer.
#[derive(Debug, Clone)]
enum Sent {
    Join {
        client: usize,
    },
    Sync {
        client: usize,
        member: String,
        generation: i32,
    },
    Other {
        client: usize,
    },
}

struct World {
    h: Harness,
    clients: Vec<Client>,
    sent: BTreeMap<u64, Sent>,
    seen: BTreeSet<u64>,
    /// Restarts so far. A group whose metadata was never persisted restarts its generations
    /// at 1 after a restart (as in Kafka), so facts are keyed by epoch.
    epoch: u32,
    /// (epoch, group, generation) -> members and their instance ids, from the leader's
    /// JoinGroup.
    generations: BTreeMap<(u32, String, i32), BTreeMap<String, Option<String>>>,
    /// Join successes to check once the generation's member list is known.
    join_successes: Vec<(u32, String, i32, String, Option<String>)>,
    last_generation: BTreeMap<String, i32>,
    failures: bool,
}

impl World {
    fn new() -> Self {
        let mut h = Harness::new();
        h.auto_persist = false;
        World {
            h,
            clients: vec![Client::default(); CLIENTS],
            sent: BTreeMap::new(),
            seen: BTreeSet::new(),
            epoch: 0,
            generations: BTreeMap::new(),
            join_successes: Vec::new(),
            last_generation: BTreeMap::new(),
            failures: false,
        }
    }

    fn protocols(alt: bool) -> Vec<(&'static str, Bytes)> {
        let sub = encode_subscription_v0(&["t"]);
        if alt {
            vec![("roundrobin", sub)]
        } else {
            vec![("range", sub.clone()), ("roundrobin", sub)]
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Join {
                client,
                version,
                alt_protocols,
            } => {
                let c = self.clients[client].clone();
                let instance = if version >= 5 {
                    instance_of(client)
                } else {
                    None
                };
                let id = self.h.join_full(
                    version,
                    &group_of(client),
                    &c.member_id,
                    instance.as_deref(),
                    &Self::protocols(alt_protocols),
                    10_000,
                    20_000,
                );
                self.sent.insert(id, Sent::Join { client });
            }
            Op::Sync { client } => {
                let c = self.clients[client].clone();
                let assignments: Vec<(String, Vec<u8>)> = if c.leader {
                    c.members
                        .iter()
                        .map(|m| (m.clone(), assignment_for(c.generation, m)))
                        .collect()
                } else {
                    Vec::new()
                };
                let refs: Vec<(&str, &[u8])> = assignments
                    .iter()
                    .map(|(m, a)| (m.as_str(), a.as_slice()))
                    .collect();
                let id = self
                    .h
                    .sync(&group_of(client), &c.member_id, c.generation, &refs);
                self.sent.insert(
                    id,
                    Sent::Sync {
                        client,
                        member: c.member_id.clone(),
                        generation: c.generation,
                    },
                );
            }
            Op::Heartbeat { client } => {
                let c = self.clients[client].clone();
                let mut r = kafka_protocol::messages::HeartbeatRequest::default();
                r.group_id = super::tests::gid(&group_of(client));
                r.member_id = s(&c.member_id);
                r.generation_id = c.generation;
                r.group_instance_id = instance_of(client).map(|i| s(&i));
                let id = self.h.send(Input::Heartbeat {
                    api_version: 4,
                    request: r,
                });
                self.sent.insert(id, Sent::Other { client });
            }
            Op::Leave { client } => {
                let c = self.clients[client].clone();
                let instance = instance_of(client);
                let id = self
                    .h
                    .leave(&group_of(client), &[(&c.member_id, instance.as_deref())]);
                self.sent.insert(id, Sent::Other { client });
                self.clients[client] = Client::default();
            }
            Op::Commit { client, offset } => {
                let c = self.clients[client].clone();
                let generation = if c.member_id.is_empty() {
                    -1
                } else {
                    c.generation
                };
                let mut r = kafka_protocol::messages::OffsetCommitRequest::default();
                r.group_id = super::tests::gid(&group_of(client));
                r.member_id = s(&c.member_id);
                r.generation_id_or_member_epoch = generation;
                let mut t = kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic::default();
                t.name = kafka_protocol::messages::TopicName(s("t"));
                let mut p = kafka_protocol::messages::offset_commit_request::OffsetCommitRequestPartition::default();
                p.committed_offset = offset;
                t.partitions.push(p);
                r.topics.push(t);
                let id = self.h.send(Input::OffsetCommit {
                    api_version: 8,
                    request: r,
                    unknown_partitions: Vec::new(),
                });
                self.sent.insert(id, Sent::Other { client });
            }
            Op::Advance { ms } => self.h.advance(ms),
            Op::Complete { ok } => {
                if !ok {
                    self.failures = true;
                }
                let r = if ok {
                    Ok(())
                } else {
                    Err(PersistError::CoordinatorNotAvailable)
                };
                self.h.complete_one(r);
            }
            // After a failed append the log may roll a group back to an older generation
            // on restart (as in Kafka); generation bookkeeping here assumes it does not.
            Op::Restart if !self.failures => self.restart(),
            Op::Restart => {}
            Op::Step { client } => {
                let c = &self.clients[client];
                let next = if c.member_id.is_empty() || c.generation == 0 || c.rejoin {
                    Op::Join {
                        client,
                        version: 5,
                        alt_protocols: false,
                    }
                } else if !c.synced {
                    Op::Sync { client }
                } else {
                    Op::Heartbeat { client }
                };
                return self.apply(next);
            }
        }
        self.observe();
    }

    fn restart(&mut self) {
        self.h.complete_all(Ok(()));
        let offsets_before: BTreeMap<String, Vec<(String, i32, CommittedOffset)>> = self
            .h
            .c
            .group_ids()
            .into_iter()
            .map(|g| (g.clone(), self.h.c.committed_offsets(&g)))
            .filter(|(_, o)| !o.is_empty())
            .collect();
        let actions = self.h.c.shutdown();
        self.h.absorb(actions);
        let mut fresh = GroupCoordinator::new(GroupConfig {
            member_id_seed: 77, // the same seed every restart: ids must still be unique
            ..GroupConfig::default()
        });
        for r in &self.h.log {
            fresh.load(r.clone());
        }
        let actions = fresh.finish_load(self.h.now);
        // Groups loaded from the log keep their generation and its members.
        let next = self.epoch + 1;
        for g in fresh.group_ids() {
            if let Some(generation) = fresh.group_generation(&g) {
                if let Some(m) = self
                    .generations
                    .get(&(self.epoch, g.clone(), generation))
                    .cloned()
                {
                    self.generations.insert((next, g, generation), m);
                }
            }
        }
        self.epoch = next;
        self.last_generation.clear();
        self.h.c = fresh;
        self.h.absorb(actions);
        if !self.failures {
            let offsets_after: BTreeMap<String, Vec<(String, i32, CommittedOffset)>> = self
                .h
                .c
                .group_ids()
                .into_iter()
                .map(|g| (g.clone(), self.h.c.committed_offsets(&g)))
                .filter(|(_, o)| !o.is_empty())
                .collect();
            assert_eq!(offsets_before, offsets_after, "replay differs from memory");
        }
    }

    /// Reads new answers, updates the clients, records facts for the invariants.
    fn observe(&mut self) {
        let new: Vec<u64> = self
            .h
            .answers
            .keys()
            .filter(|id| !self.seen.contains(id))
            .copied()
            .collect();
        for id in new {
            self.seen.insert(id);
            let Some(sent) = self.sent.get(&id).cloned() else {
                continue; // commit requests are not tracked
            };
            let response = self.h.answers[&id].clone();
            match (sent, response) {
                (Sent::Join { client }, Response::Join(r)) => {
                    let group = group_of(client);
                    let c = &mut self.clients[client];
                    if r.error_code == 0 {
                        let last = self.last_generation.entry(group.clone()).or_insert(0);
                        assert!(r.generation_id >= *last, "generation went backwards");
                        *last = r.generation_id;
                        c.member_id = r.member_id.as_str().to_owned();
                        c.generation = r.generation_id;
                        c.synced = false;
                        c.rejoin = false;
                        // A client runs the assignor only when handed the member list.
                        c.leader = r.leader.as_str() == c.member_id
                            && !r.members.is_empty()
                            && !r.skip_assignment;
                        if !r.members.is_empty() {
                            let members: BTreeMap<String, Option<String>> = r
                                .members
                                .iter()
                                .map(|m| {
                                    (
                                        m.member_id.as_str().to_owned(),
                                        m.group_instance_id.as_ref().map(|i| i.as_str().to_owned()),
                                    )
                                })
                                .collect();
                            assert!(
                                members.contains_key(&c.member_id),
                                "leader not in its member list"
                            );
                            // Union: a static member that replaced its id in this
                            // generation appears under both ids (same instance id).
                            let known = self
                                .generations
                                .entry((self.epoch, group.clone(), r.generation_id))
                                .or_default();
                            for (m, i) in &members {
                                if let Some(instance) = i {
                                    let same_slot = known
                                        .values()
                                        .filter(|x| x.as_ref() == Some(instance))
                                        .count();
                                    assert!(
                                        same_slot <= 1 || known.contains_key(m),
                                        "instance listed twice"
                                    );
                                }
                                known.insert(m.clone(), i.clone());
                            }
                            c.members = members.keys().cloned().collect();
                        } else {
                            c.members.clear();
                        }
                        self.join_successes.push((
                            self.epoch,
                            group,
                            r.generation_id,
                            c.member_id.clone(),
                            instance_of(client),
                        ));
                    } else if r.error_code == ResponseError::MemberIdRequired.code() {
                        c.member_id = r.member_id.as_str().to_owned();
                    } else if r.error_code == ResponseError::UnknownMemberId.code()
                        || r.error_code == ResponseError::FencedInstanceId.code()
                    {
                        *c = Client::default();
                    }
                }
                (
                    Sent::Sync {
                        client,
                        member,
                        generation,
                    },
                    Response::Sync(r),
                ) => {
                    if r.error_code == 0 && self.clients[client].generation == generation {
                        self.clients[client].synced = true;
                    }
                    if r.error_code == ResponseError::RebalanceInProgress.code()
                        || r.error_code == ResponseError::IllegalGeneration.code()
                    {
                        self.clients[client].rejoin = true;
                    }
                    if r.error_code == 0 {
                        let group = group_of(client);
                        let members = self
                            .generations
                            .get(&(self.epoch, group.clone(), generation))
                            .expect("sync success for a generation nobody led");
                        let instance = instance_of(client);
                        let member_ok = members.contains_key(&member)
                            || members.values().any(|i| i.is_some() && *i == instance);
                        assert!(
                            member_ok,
                            "sync success for {member} not in generation {generation}"
                        );
                        if !r.assignment.is_empty() {
                            let text = String::from_utf8(r.assignment.to_vec()).unwrap();
                            let (g, m) = text.split_once(':').unwrap();
                            assert_eq!(
                                g.parse::<i32>().unwrap(),
                                generation,
                                "assignment of another generation"
                            );
                            let same_instance = members
                                .get(m)
                                .is_some_and(|i| i.is_some() && *i == instance);
                            assert!(
                                m == member || same_instance,
                                "{member} got {m}'s assignment"
                            );
                        }
                    } else if r.error_code == ResponseError::UnknownMemberId.code()
                        || r.error_code == ResponseError::FencedInstanceId.code()
                    {
                        self.clients[client] = Client::default();
                    }
                }
                (Sent::Other { client }, Response::Heartbeat(r)) => {
                    if r.error_code == ResponseError::RebalanceInProgress.code()
                        || r.error_code == ResponseError::IllegalGeneration.code()
                    {
                        self.clients[client].rejoin = true;
                    }
                    if r.error_code == ResponseError::UnknownMemberId.code()
                        || r.error_code == ResponseError::FencedInstanceId.code()
                    {
                        self.clients[client] = Client::default();
                    }
                }
                _ => {}
            }
        }
    }

    fn finish(&mut self) {
        self.h.complete_all(Ok(()));
        let actions = self.h.c.shutdown();
        self.h.absorb(actions);
        self.observe();
        // Every request got exactly one answer (duplicates are caught by the harness).
        for id in &self.h.sent {
            assert!(
                self.h.answers.contains_key(id),
                "request {id} never answered"
            );
        }
        if std::env::var("GROUP_PROPTEST_STATS").is_ok() {
            let syncs = self.h.answers.values().filter(|r| matches!(r, Response::Sync(x) if x.error_code == 0 && !x.assignment.is_empty())).count();
            let commits = self.h.c.group_ids().len();
            eprintln!(
                "STATS joins={} syncs={} epochs={} groups={}",
                self.join_successes.len(),
                syncs,
                self.epoch,
                commits
            );
        }
        for (epoch, group, generation, member, instance) in &self.join_successes {
            let Some(members) = self.generations.get(&(*epoch, group.clone(), *generation)) else {
                panic!(
                    "join success for generation {generation} of {group} without a leader response"
                );
            };
            let ok = members.contains_key(member)
                || members.values().any(|i| i.is_some() && i == instance);
            assert!(
                ok,
                "{member} told it is in generation {generation} but was not listed"
            );
        }
    }
}

proptest! {
    // PROPTEST_CASES overrides the default of 300 for longer bug hunts.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300)
    ))]

    #[test]
    fn random_interleavings_keep_invariants(ops in proptest::collection::vec(op(), 1..120)) {
        let mut w = World::new();
        for op in ops {
            w.apply(op);
        }
        w.finish();
    }
}

/// Found by the proptest: a coordinator restarted with the same member-id seed handed out
/// an id that was still in use, silently replacing that member and losing its parked join.
#[test]
fn regression_member_id_collision_after_restart() {
    use Op::*;
    let ops = vec![
        Restart,
        Join {
            client: 0,
            version: 3,
            alt_protocols: false,
        },
        Step { client: 3 },
        Step { client: 0 },
        Sync { client: 0 },
        Join {
            client: 2,
            version: 4,
            alt_protocols: false,
        },
        Join {
            client: 0,
            version: 3,
            alt_protocols: false,
        },
        Advance { ms: 6000 },
        Step { client: 0 },
        Join {
            client: 0,
            version: 3,
            alt_protocols: false,
        },
        Step { client: 0 },
        Join {
            client: 2,
            version: 3,
            alt_protocols: false,
        },
        Step { client: 0 },
        Advance { ms: 10000 },
        Step { client: 1 },
        Join {
            client: 1,
            version: 3,
            alt_protocols: false,
        },
        Sync { client: 2 },
        Restart,
        Step { client: 4 },
        Join {
            client: 0,
            version: 5,
            alt_protocols: false,
        },
        Sync { client: 2 },
        Step { client: 2 },
        Heartbeat { client: 4 },
        Step { client: 4 },
        Sync { client: 4 },
        Join {
            client: 4,
            version: 3,
            alt_protocols: false,
        },
        Join {
            client: 0,
            version: 3,
            alt_protocols: false,
        },
    ];
    let mut w = World::new();
    for op in ops {
        w.apply(op);
    }
    w.finish();
}
