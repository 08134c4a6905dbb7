//! Consumers: statically assigned partitions fetched with plain Fetch requests (no group
//! protocol, so any broker that serves Fetch can be measured). One connection per leader
//! broker, one Fetch in flight per connection, as librdkafka does.
//!
//! Like librdkafka and the Java consumer, a connection prefetches: as soon as a response
//! arrives, the next fetch offsets are read off its batch headers and the next Fetch is sent;
//! only then are the response's records processed (CRCs, every record, checksums, latency).
//! The broker thus works on the next Fetch while the harness processes the previous one,
//! instead of idling through every processing step. Exactly one Fetch is ahead: the offsets
//! of a Fetch depend on the response before it, so a second one could only repeat data.
//!
//! How much of a response is processed is the workload's [`ConsumeCheck`]: `full` (default)
//! as above; `headers` counts records and wire bytes from the batch headers alone, for
//! measuring a broker that serves faster than one verifying consumer core can check (the
//! receive copy, batch CRCs and record checksums then cost the harness most of a core).

use crate::batch::{walk_batches, DecodedBatch};
use crate::client::{list_offsets, ClusterMeta, Conn, CALL_TIMEOUT, EARLIEST, LATEST};
use crate::payload::{parse_intended, record_checksum};
use crate::stats::{Clock, WorkerStats};
use crate::workload::{ConsumeCheck, Mode, StartFrom, Workload};
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

/// Bytes per partition per Fetch: 1 MiB, the default of librdkafka
/// (`fetch.message.max.bytes`) and of the Java consumer (`max.partition.fetch.bytes`).
pub const PARTITION_FETCH_BYTES: i32 = 1 << 20;
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

fn fetch_request(w: &Workload, topic: &TopicName, offsets: &BTreeMap<i32, i64>) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(w.fetch_max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_BYTES_MAX)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic.clone())
            .with_partitions(
                offsets
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
            )])
}

/// A Fetch on the wire: its correlation id and the offsets it asked for, which the accounting
/// of its response starts from.
struct InFlightFetch {
    correlation_id: i32,
    offsets: BTreeMap<i32, i64>,
}

async fn send_fetch(f: &mut Fetcher, w: &Workload, topic: &TopicName) -> Result<InFlightFetch> {
    let req = fetch_request(w, topic, &f.offsets);
    let correlation_id = f.conn.send(&req).await.context("Fetch")?;
    Ok(InFlightFetch {
        correlation_id,
        offsets: f.offsets.clone(),
    })
}

async fn fetch_loop(
    mut f: Fetcher,
    w: Arc<Workload>,
    clock: Clock,
    stats: Rc<RefCell<WorkerStats>>,
    progress: Arc<Progress>,
) -> Result<()> {
    let topic_name = TopicName(StrBytes::from_string(f.topic.clone()));
    // The Fetch whose response is next; `None` when nothing is on the wire.
    let mut ahead: Option<InFlightFetch> = None;
    loop {
        let current = match ahead.take() {
            Some(a) => a,
            None => {
                if should_stop(&w, &clock, &progress) {
                    break;
                }
                send_fetch(&mut f, &w, &topic_name).await?
            }
        };
        let resp = f
            .conn
            .receive::<FetchRequest>(current.correlation_id)
            .await
            .context("Fetch")?;
        let now_ns = clock.elapsed_ns();
        let now_unix = clock.t0_unix_ns + now_ns;
        if resp.error_code != 0 {
            stats
                .borrow_mut()
                .note_error(format!("Fetch error {}", resp.error_code));
            glommio::timer::sleep(Duration::from_millis(100)).await;
            continue; // nothing is ahead: the same offsets are fetched again
        }
        // Prefetch: the next offsets from the batch headers alone, then the next Fetch out
        // before the expensive part. A throttled client must wait before asking again.
        let mut next = current.offsets.clone();
        next_offsets_from_headers(&mut next, &resp)
            .with_context(|| format!("Fetch response for {}", f.topic))?;
        f.offsets = next;
        if resp.throttle_time_ms > 0 {
            glommio::timer::sleep(Duration::from_millis(resp.throttle_time_ms as u64)).await;
        }
        if !should_stop(&w, &clock, &progress) {
            ahead = Some(send_fetch(&mut f, &w, &topic_name).await?);
        }
        // Accounting is synchronous so the stats borrow can never live across an await.
        let mut accounted = current.offsets;
        let consumed = {
            let mut st = stats.borrow_mut();
            let consumed = account(
                &f.topic,
                w.consume_check,
                &mut accounted,
                &resp,
                &clock,
                now_ns,
                now_unix,
                &mut st,
            )?;
            if accounted != f.offsets {
                // The Fetch ahead already asked for `f.offsets`; keep them, say so loudly.
                st.note_error(format!(
                    "{}: next offsets from batch headers {:?} differ from the accounting's {:?} \
                     (prefetch bug)",
                    f.topic, f.offsets, accounted
                ));
            }
            consumed
        };
        progress.consumed.fetch_add(consumed, Ordering::Relaxed);
        // Without prefetch the next Fetch would be sent only now, after this check; a
        // prefetched one the check would not have sent is received (so the connection closes
        // with nothing unread) but not counted, which keeps --records and --duration exact.
        if ahead.is_some() && should_stop(&w, &clock, &progress) {
            if let Some(a) = ahead.take() {
                f.conn
                    .receive::<FetchRequest>(a.correlation_id)
                    .await
                    .context("Fetch sent ahead, received uncounted at the end of the run")?;
            }
            break;
        }
    }
    f.conn.close().await
}

/// Advances `offsets` (the ones the Fetch asked for) past the complete batches of `resp`,
/// reading batch headers only: no CRC, no decompression, no records. Must agree with
/// [`account`] at every check level, which checks it.
fn next_offsets_from_headers(
    offsets: &mut BTreeMap<i32, i64>,
    resp: &kafka_protocol::messages::FetchResponse,
) -> Result<()> {
    for t in &resp.responses {
        for pd in &t.partitions {
            let Some(next) = offsets.get_mut(&pd.partition_index) else {
                continue;
            };
            if pd.error_code != 0 {
                // OFFSET_OUT_OF_RANGE: restart from the log start the broker reports.
                if pd.error_code == 1 && pd.log_start_offset >= 0 {
                    *next = pd.log_start_offset;
                }
                continue;
            }
            let Some(records) = pd.records.as_ref() else {
                continue;
            };
            for item in walk_batches(records) {
                let (header, _) =
                    item.with_context(|| format!("partition {}", pd.partition_index))?;
                if header.last_offset >= *next {
                    *next = header.last_offset + 1;
                }
            }
        }
    }
    Ok(())
}

/// Counts the records of one Fetch response and advances `offsets` (on entry the offsets the
/// Fetch asked for) past them.
///
/// Both check levels walk the same batch headers and advance the same way; `full` adds, per
/// batch, the CRC32C and decompression (of every complete batch, also one wholly before the
/// fetch position, as the Java consumer validates every batch it receives) and, per record,
/// the checksum and end-to-end latency. `headers` counts records from the header
/// ([`crate::batch::BatchHeader::records_from`]) and bytes as the batch's wire bytes.
#[allow(clippy::too_many_arguments)] // the accounting context; grouping it would only move names
fn account(
    topic: &str,
    check: ConsumeCheck,
    offsets: &mut BTreeMap<i32, i64>,
    resp: &kafka_protocol::messages::FetchResponse,
    clock: &Clock,
    now_ns: u64,
    now_unix: u64,
    st: &mut WorkerStats,
) -> Result<u64> {
    let mut consumed = 0u64;
    for t in &resp.responses {
        for pd in &t.partitions {
            let Some(next) = offsets.get_mut(&pd.partition_index) else {
                continue;
            };
            if pd.error_code != 0 {
                st.note_error(format!(
                    "fetch {}/{}: error {}",
                    topic, pd.partition_index, pd.error_code
                ));
                // OFFSET_OUT_OF_RANGE: restart from the log start the broker reports.
                if pd.error_code == 1 && pd.log_start_offset >= 0 {
                    *next = pd.log_start_offset;
                }
                continue;
            }
            let Some(records) = pd.records.as_ref() else {
                continue;
            };
            let context = || format!("{}/{}", topic, pd.partition_index);
            for item in walk_batches(records) {
                let (header, raw) = item.with_context(context)?;
                let decoded = match check {
                    ConsumeCheck::Full => Some(
                        DecodedBatch::decode(&header, records.slice_ref(raw), true)
                            .with_context(context)?,
                    ),
                    ConsumeCheck::Headers => None,
                };
                if header.last_offset < *next {
                    continue;
                }
                if !header.is_control() {
                    consumed += match &decoded {
                        Some(batch) => account_records(batch, *next, clock, now_ns, now_unix, st)
                            .with_context(context)?,
                        None => {
                            let n = header.records_from(*next);
                            st.on_consumed_batch(now_ns, n, header.wire_bytes as u64);
                            n
                        }
                    };
                }
                *next = header.last_offset + 1;
            }
        }
    }
    Ok(consumed)
}

/// `--check full` for one batch: every record at or after `next` is decoded, checksummed and
/// its end-to-end latency recorded.
fn account_records(
    batch: &DecodedBatch,
    next: i64,
    clock: &Clock,
    now_ns: u64,
    now_unix: u64,
    st: &mut WorkerStats,
) -> Result<u64> {
    let mut consumed = 0u64;
    for r in batch.iter() {
        let r = r?;
        if r.offset < next {
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
    Ok(consumed)
}

/// Splits partitions `0..n` over `consumers` consumers (round-robin, like Kafka's
/// round-robin assignor for one topic).
pub fn assign(partitions: i32, consumers: u32, index: u32) -> Vec<i32> {
    (0..partitions)
        .filter(|p| (*p as u32) % consumers.max(1) == index)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, Codec, ProducerStamp};
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::FetchResponse;
    use storage::batch::{field, write_crc, ATTR_CONTROL, ATTR_TRANSACTIONAL};

    /// One batch of `n` records at offsets `base..base+n`; returns it and the checksums of
    /// its records by offset.
    fn batch(codec: Codec, base: i64, n: usize) -> (Bytes, Vec<(i64, u64)>) {
        let mut b = BatchBuilder::new(1024);
        let mut sums = Vec::new();
        for i in 0..n {
            let key = format!("k{base}-{i}").into_bytes();
            let value = format!("v{base}-{i}-{}", "x".repeat(i % 50)).into_bytes();
            b.append(1_700_000_000_000, Some(&key), &value);
            sums.push((base + i as i64, record_checksum(Some(&key), &value)));
        }
        let sealed = b.seal(codec, ProducerStamp::NONE).expect("seal");
        // The base offset is outside the CRC: a broker assigns it the same way.
        let mut out = BytesMut::from(&sealed[..]);
        out[..8].copy_from_slice(&base.to_be_bytes());
        (out.freeze(), sums)
    }

    fn partition(index: i32, records: Option<Bytes>) -> PartitionData {
        PartitionData::default()
            .with_partition_index(index)
            .with_high_watermark(1_000)
            .with_records(records)
    }

    /// The header-only offsets the prefetch sends must be exactly where the full accounting
    /// ends, over every case the accounting handles: whole batches before the fetch offset, a
    /// batch (compressed or not) that starts before it, a partial trailing batch, a partition
    /// error with and without a log start, no records, and a partition not asked for.
    #[test]
    fn header_offsets_agree_with_accounting() {
        let (a0, _) = batch(Codec::None, 0, 10);
        let (a1, s1) = batch(Codec::None, 10, 10);
        let (a2, _) = batch(Codec::None, 20, 10);
        let mut p0 = BytesMut::new();
        p0.extend_from_slice(&a0);
        p0.extend_from_slice(&a1);
        p0.extend_from_slice(&a2[..a2.len() - 5]); // cut by partition_max_bytes
        let (z, sz) = batch(Codec::Zstd, 100, 50);
        let sz_wire = z.len();
        let (other, _) = batch(Codec::None, 0, 3);
        let resp = FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_partitions(vec![
                partition(0, Some(p0.freeze())),
                partition(1, Some(z)),
                partition(2, None)
                    .with_error_code(1)
                    .with_log_start_offset(7),
                partition(3, None).with_error_code(6),
                partition(4, Some(Bytes::new())),
                partition(9, Some(other)),
            ])]);
        let asked: BTreeMap<i32, i64> = [(0, 15), (1, 120), (2, 50), (3, 4), (4, 33)].into();

        let mut from_headers = asked.clone();
        next_offsets_from_headers(&mut from_headers, &resp).expect("headers");
        let want: BTreeMap<i32, i64> = [(0, 20), (1, 150), (2, 7), (3, 4), (4, 33)].into();
        assert_eq!(from_headers, want);

        // Offsets 15..19 of partition 0 and 120..149 of partition 1, each once.
        let counted_wire_bytes = (a1.len() + sz_wire) as u64;
        for check in [ConsumeCheck::Full, ConsumeCheck::Headers] {
            let (accounted, consumed, st) = run_account(check, &asked, &resp).expect("account");
            assert_eq!(accounted, from_headers, "{check:?}");
            assert_eq!(consumed, 5 + 30, "{check:?}");
            assert_eq!(st.consumed_all, 35, "{check:?}");
            assert_eq!(
                st.errors.len(),
                2,
                "{check:?}: partition errors noted: {:?}",
                st.errors
            );
            match check {
                ConsumeCheck::Full => {
                    let want_sum = s1
                        .iter()
                        .filter(|(o, _)| *o >= 15)
                        .chain(sz.iter().filter(|(o, _)| *o >= 120))
                        .fold(0u64, |acc, (_, c)| acc.wrapping_add(*c));
                    assert_eq!(st.consume_checksum, want_sum);
                }
                ConsumeCheck::Headers => {
                    assert_eq!(st.consume_checksum, 0, "records were not read");
                    assert_eq!(st.consumed_bytes_in_window, counted_wire_bytes);
                }
            }
        }
    }

    /// Runs [`account`] at `check` from the offsets `asked`; returns the offsets it ends at,
    /// its count and the stats it filled.
    fn run_account(
        check: ConsumeCheck,
        asked: &BTreeMap<i32, i64>,
        resp: &FetchResponse,
    ) -> Result<(BTreeMap<i32, i64>, u64, WorkerStats)> {
        let w = Workload {
            mode: Mode::Consume,
            consume_check: check,
            ..Workload::default()
        };
        let mut st = WorkerStats::new(&w);
        let clock = Clock::now();
        let mut offsets = asked.clone();
        let consumed = account(
            "t",
            check,
            &mut offsets,
            resp,
            &clock,
            1,
            clock.t0_unix_ns,
            &mut st,
        )?;
        Ok((offsets, consumed, st))
    }

    /// A transaction marker at `base`: one control record, control and transactional
    /// attribute bits set, CRC recomputed over the changed attributes.
    fn control_batch(base: i64) -> Bytes {
        let mut b = BatchBuilder::new(256);
        // Control record key: version 0, type 1 (COMMIT); value: version 0, coordinator epoch.
        b.append(1_700_000_000_000, Some(&[0, 0, 0, 1]), &[0, 0, 0, 0, 0, 0]);
        let sealed = b.seal(Codec::None, ProducerStamp::NONE).expect("seal");
        let mut out = BytesMut::from(&sealed[..]);
        out[field::BASE_OFFSET].copy_from_slice(&base.to_be_bytes());
        let attributes = ATTR_CONTROL | ATTR_TRANSACTIONAL;
        out[field::ATTRIBUTES].copy_from_slice(&attributes.to_be_bytes());
        write_crc(&mut out);
        out.freeze()
    }

    fn one_partition(records: Bytes) -> FetchResponse {
        FetchResponse::default()
            .with_responses(vec![FetchableTopicResponse::default()
                .with_partitions(vec![partition(0, Some(records))])])
    }

    /// `headers` counts the records `full` counts and ends at the same offsets: a batch that
    /// starts before the fetch position (uncompressed and compressed), a control batch (no
    /// records counted, offset advanced past it), whole batches after it.
    #[test]
    fn headers_check_counts_and_advances_like_full() {
        let mut p0 = BytesMut::new();
        let (first, _) = batch(Codec::None, 0, 10);
        let marker = control_batch(10);
        let (after, _) = batch(Codec::None, 11, 7);
        let (zstd, _) = batch(Codec::Zstd, 18, 40);
        p0.extend_from_slice(&first);
        p0.extend_from_slice(&marker);
        p0.extend_from_slice(&after);
        p0.extend_from_slice(&zstd);
        let resp = one_partition(p0.freeze());
        // From 4: 6 of the first batch, none of the marker, 7, then 40.
        let asked: BTreeMap<i32, i64> = [(0, 4)].into();
        let (full_offsets, full_n, full_st) =
            run_account(ConsumeCheck::Full, &asked, &resp).expect("full");
        let (head_offsets, head_n, head_st) =
            run_account(ConsumeCheck::Headers, &asked, &resp).expect("headers");
        assert_eq!(full_n, 6 + 7 + 40);
        assert_eq!(head_n, full_n);
        assert_eq!(head_st.consumed_all, full_st.consumed_all);
        assert_eq!(head_offsets, full_offsets);
        assert_eq!(full_offsets, [(0, 58)].into());
        // Headers: wire bytes of the batches holding new records, the marker excluded.
        let wire = (first.len() + after.len() + zstd.len()) as u64;
        assert_eq!(head_st.consumed_bytes_in_window, wire);
        assert!(head_st.e2e_latency_us.is_empty());

        // A fetch position inside the compressed batch: only its tail counts, in both.
        let asked: BTreeMap<i32, i64> = [(0, 50)].into();
        for check in [ConsumeCheck::Full, ConsumeCheck::Headers] {
            let (offsets, n, _) = run_account(check, &asked, &resp).expect("account");
            assert_eq!((n, offsets.clone()), (8, [(0, 58)].into()), "{check:?}");
        }
    }

    /// A batch whose CRC is wrong fails `full`; `headers` never computes it.
    #[test]
    fn corrupt_crc_fails_full_only() {
        let (good, _) = batch(Codec::None, 0, 5);
        let mut bad = BytesMut::from(&good[..]);
        let last = bad.len() - 2;
        bad[last] ^= 0xff;
        let resp = one_partition(bad.freeze());
        let asked: BTreeMap<i32, i64> = [(0, 0)].into();
        let err = run_account(ConsumeCheck::Full, &asked, &resp)
            .err()
            .expect("full must reject a bad CRC");
        assert!(format!("{err:#}").contains("CRC"), "{err:#}");
        let (offsets, n, _) = run_account(ConsumeCheck::Headers, &asked, &resp).expect("headers");
        assert_eq!((n, offsets), (5, [(0, 5)].into()));
    }

    /// Framing errors fail both levels: a wrong magic, a negative length, a length too short
    /// for a batch header.
    #[test]
    fn bad_magic_or_length_fails_both_checks() {
        let (good, _) = batch(Codec::None, 0, 3);
        let mut magic = BytesMut::from(&good[..]);
        magic[field::MAGIC.start] = 1;
        let mut negative = BytesMut::from(&good[..]);
        negative[field::LENGTH].copy_from_slice(&(-1i32).to_be_bytes());
        let mut short = BytesMut::from(&[0u8; 30][..]);
        short[field::LENGTH].copy_from_slice(&18i32.to_be_bytes());
        let asked: BTreeMap<i32, i64> = [(0, 0)].into();
        for (what, bytes) in [("magic", magic), ("negative", negative), ("short", short)] {
            let resp = one_partition(bytes.freeze());
            for check in [ConsumeCheck::Full, ConsumeCheck::Headers] {
                assert!(
                    run_account(check, &asked, &resp).is_err(),
                    "{what}: {check:?} accepted a malformed batch"
                );
            }
            let mut offs = asked.clone();
            assert!(
                next_offsets_from_headers(&mut offs, &resp).is_err(),
                "{what}"
            );
        }
    }

    #[test]
    fn header_scan_rejects_what_the_accounting_rejects() {
        let (mut bad, _) = {
            let (b, s) = batch(Codec::None, 0, 2);
            (BytesMut::from(&b[..]), s)
        };
        bad[field::LENGTH].copy_from_slice(&(-1i32).to_be_bytes());
        let resp = FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_partitions(vec![partition(0, Some(bad.freeze()))])]);
        let mut offs: BTreeMap<i32, i64> = [(0, 0)].into();
        assert!(next_offsets_from_headers(&mut offs, &resp).is_err());
        // A header too short for a batch, yet complete by its length field.
        let mut short = BytesMut::from(&[0u8; 30][..]);
        short[field::LENGTH].copy_from_slice(&18i32.to_be_bytes());
        let resp = FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_partitions(vec![partition(0, Some(short.freeze()))])]);
        assert!(next_offsets_from_headers(&mut offs, &resp).is_err());
    }
}
