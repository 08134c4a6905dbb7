//! Consumers: statically assigned partitions fetched with plain Fetch requests (no group
//! protocol, so any broker that serves Fetch can be measured). One connection per leader
//! broker, one Fetch in flight per connection, as librdkafka does.

use crate::batch::split_batches;
use crate::client::{list_offsets, ClusterMeta, Conn, CALL_TIMEOUT, EARLIEST, LATEST};
use crate::payload::{parse_intended, record_checksum};
use crate::stats::{Clock, WorkerStats};
use crate::workload::{Mode, StartFrom, Workload};
use anyhow::{Context, Result};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Bytes per partition per Fetch.
const PARTITION_FETCH_BYTES: i32 = 4 << 20;
/// Bytes per Fetch response.
const FETCH_BYTES_MAX: i32 = 64 << 20;
/// After the run, how long consumers may take to catch up with what was produced.
const CATCH_UP_GRACE: Duration = Duration::from_secs(20);

/// Progress shared by every worker thread, to decide when consumers are done.
#[derive(Default)]
pub struct Progress {
    pub produced_acked: AtomicU64,
    pub consumed: AtomicU64,
    pub producers_done: AtomicBool,
}

struct Fetcher {
    conn: Conn,
    topic: String,
    /// partition -> next offset
    offsets: BTreeMap<i32, i64>,
}

pub struct Consumer {
    w: Arc<Workload>,
    index: u32,
    fetchers: Vec<Fetcher>,
}

impl Consumer {
    /// Connects to the leaders of `partitions` and positions at the start offsets.
    pub async fn setup(
        w: Arc<Workload>,
        meta: &ClusterMeta,
        topic: &str,
        partitions: &[i32],
        index: u32,
    ) -> Result<Consumer> {
        let mut by_broker: BTreeMap<i32, (String, Vec<i32>)> = BTreeMap::new();
        for &p in partitions {
            let (b, addr) = meta.leader_addr(topic, p)?;
            by_broker
                .entry(b)
                .or_insert_with(|| (addr, Vec::new()))
                .1
                .push(p);
        }
        let mut fetchers = Vec::new();
        for (_, (addr, parts)) in by_broker {
            let mut conn = Conn::connect(&addr).await?;
            // Fetches may be held by the broker for up to their max wait.
            conn.set_call_timeout(
                CALL_TIMEOUT + Duration::from_millis(w.fetch_max_wait_ms.max(0) as u64),
            );
            let ts = match w.start_from {
                StartFrom::Earliest => EARLIEST,
                StartFrom::Latest => LATEST,
            };
            let offs = list_offsets(&mut conn, topic, &parts, ts).await?;
            fetchers.push(Fetcher {
                conn,
                topic: topic.to_string(),
                offsets: parts.into_iter().zip(offs).collect(),
            });
        }
        Ok(Consumer { w, index, fetchers })
    }

    pub async fn run(
        self,
        clock: Clock,
        stats: Rc<RefCell<WorkerStats>>,
        progress: Arc<Progress>,
    ) -> Result<()> {
        let mut tasks = Vec::new();
        for f in self.fetchers {
            tasks.push(glommio::spawn_local(fetch_loop(
                f,
                self.w.clone(),
                clock,
                stats.clone(),
                progress.clone(),
            )));
        }
        let mut first_err = None;
        for t in tasks {
            if let Err(e) = t.await {
                stats
                    .borrow_mut()
                    .note_error(format!("consumer {}: {e:#}", self.index));
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn should_stop(w: &Workload, clock: &Clock, progress: &Progress) -> bool {
    let now = clock.elapsed_ns();
    let end = (w.duration_s * 1e9) as u64;
    match w.mode {
        Mode::Consume => {
            (w.consume_records > 0
                && progress.consumed.load(Ordering::Relaxed) >= w.consume_records)
                || (w.consume_records == 0 && now >= end)
                || now >= end + CATCH_UP_GRACE.as_nanos() as u64
        }
        _ => {
            if now < end {
                return false;
            }
            let caught_up = progress.producers_done.load(Ordering::Acquire)
                && progress.consumed.load(Ordering::Relaxed)
                    >= progress.produced_acked.load(Ordering::Relaxed) * consumer_fanout(w);
            caught_up || now >= end + CATCH_UP_GRACE.as_nanos() as u64
        }
    }
}

/// Every subscription reads every record once.
fn consumer_fanout(w: &Workload) -> u64 {
    w.subscriptions_per_topic.max(1) as u64
}

async fn fetch_loop(
    mut f: Fetcher,
    w: Arc<Workload>,
    clock: Clock,
    stats: Rc<RefCell<WorkerStats>>,
    progress: Arc<Progress>,
) -> Result<()> {
    let topic_name = TopicName(StrBytes::from_string(f.topic.clone()));
    while !should_stop(&w, &clock, &progress) {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(w.fetch_max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(FETCH_BYTES_MAX)
            .with_isolation_level(0)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name.clone())
                .with_partitions(
                    f.offsets
                        .iter()
                        .map(|(&p, &o)| {
                            FetchPartition::default()
                                .with_partition(p)
                                .with_current_leader_epoch(-1)
                                .with_fetch_offset(o)
                                .with_last_fetched_epoch(-1)
                                .with_log_start_offset(-1)
                                .with_partition_max_bytes(PARTITION_FETCH_BYTES)
                        })
                        .collect(),
                )]);
        let resp = f.conn.call(&req).await.context("Fetch")?;
        let now_ns = clock.elapsed_ns();
        let now_unix = clock.t0_unix_ns + now_ns;
        if resp.error_code != 0 {
            stats
                .borrow_mut()
                .note_error(format!("Fetch error {}", resp.error_code));
            glommio::timer::sleep(Duration::from_millis(100)).await;
            continue;
        }
        // Accounting is synchronous so the stats borrow can never live across an await.
        let consumed = account(
            &mut f,
            &resp,
            &clock,
            now_ns,
            now_unix,
            &mut stats.borrow_mut(),
        )?;
        progress.consumed.fetch_add(consumed, Ordering::Relaxed);
        if resp.throttle_time_ms > 0 {
            glommio::timer::sleep(Duration::from_millis(resp.throttle_time_ms as u64)).await;
        }
    }
    Ok(())
}

/// Counts the records of one Fetch response and advances the fetch offsets.
fn account(
    f: &mut Fetcher,
    resp: &kafka_protocol::messages::FetchResponse,
    clock: &Clock,
    now_ns: u64,
    now_unix: u64,
    st: &mut WorkerStats,
) -> Result<u64> {
    let mut consumed = 0u64;
    for t in &resp.responses {
        for pd in &t.partitions {
            let Some(next) = f.offsets.get_mut(&pd.partition_index) else {
                continue;
            };
            if pd.error_code != 0 {
                st.note_error(format!(
                    "fetch {}/{}: error {}",
                    f.topic, pd.partition_index, pd.error_code
                ));
                // OFFSET_OUT_OF_RANGE: restart from the log start the broker reports.
                if pd.error_code == 1 && pd.log_start_offset >= 0 {
                    *next = pd.log_start_offset;
                }
                continue;
            }
            let Some(records) = pd.records.clone() else {
                continue;
            };
            for batch in split_batches(records, true)
                .with_context(|| format!("{}/{}", f.topic, pd.partition_index))?
            {
                if batch.last_offset < *next {
                    continue;
                }
                if !batch.is_control {
                    for r in batch.iter() {
                        let r = r?;
                        if r.offset < *next {
                            continue; // compressed batches may start before our offset
                        }
                        let value = r.value.unwrap_or(&[]);
                        let intended_unix = parse_intended(value);
                        let (intended_rel, e2e_us) = match intended_unix {
                            Some(t) if t >= clock.t0_unix_ns => (
                                Some(t - clock.t0_unix_ns),
                                Some(now_unix.saturating_sub(t) / 1000),
                            ),
                            _ => (None, None),
                        };
                        st.on_consumed(now_ns, value.len() as u64, intended_rel, e2e_us);
                        st.consume_checksum = st
                            .consume_checksum
                            .wrapping_add(record_checksum(r.key, value));
                        consumed += 1;
                    }
                }
                *next = batch.last_offset + 1;
            }
        }
    }
    Ok(consumed)
}

/// Splits partitions `0..n` over `consumers` consumers (round-robin, like Kafka's
/// round-robin assignor for one topic).
pub fn assign(partitions: i32, consumers: u32, index: u32) -> Vec<i32> {
    (0..partitions)
        .filter(|p| (*p as u32) % consumers.max(1) == index)
        .collect()
}
