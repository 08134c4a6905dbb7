//! One open-loop producer: a generator that creates records at their intended send times,
//! per-partition batch accumulators, and pipelined Produce requests per leader broker.
//!
//! Coordinated omission: record `i` of a producer with rate `r` has intended send time
//! `i / r` after the start, fixed in advance. If the broker (or the harness) stalls, records
//! are generated late but keep their intended times, so the stall shows up in the latency of
//! every record that should have been sent during it. With no rate (`rate = 0`) the producer
//! is closed-loop: intended time = creation time (one clock reading shared by up to
//! `CLOSED_LOOP_GROUP` records generated back to back), bounded by `buffer_bytes`.

use crate::batch::{BatchBuilder, ProducerStamp};
use crate::client::{
    encode_produce_glue, init_producer_id, split_response, ClusterMeta, Conn, FrameReader,
    FrameWriter,
};
use crate::payload::{partition_for_key, PayloadGen};
use crate::stats::{Clock, IntendedTimes, WorkerStats};
use crate::workload::Workload;
use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use kafka_protocol::messages::{ApiKey, ProduceResponse};
use kafka_protocol::protocol::Decodable;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Upper bound on bytes of batches per Produce request.
const REQUEST_BYTES_MAX: usize = 4 << 20;
/// How long to wait for outstanding acknowledgements after the run ends.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Records generated per loop turn before the loop yields to send and receive.
const GENERATE_CHUNK: usize = 2048;
/// Closed loop: records generated back to back share one clock reading as their intended
/// send time, this many at a time. Generating 32 records takes a few µs, so the shared time is
/// at most that much earlier than each record's creation (latency errs high by as much, never
/// low); reading the clock per record cost ~8% of the harness.
const CLOSED_LOOP_GROUP: u32 = 32;
/// Request timeout sent in Produce requests.
const PRODUCE_TIMEOUT_MS: i32 = 30_000;
/// Encoded bytes of one record beyond its key and value, at most: length, attributes,
/// timestamp delta (an i64 varint), offset delta, key and value lengths, header count.
const RECORD_FRAMING_MAX: usize = 5 + 1 + 10 + 5 + 5 + 5 + 1;
/// Longest generated key (`k` and up to 20 digits, see `payload::Key`).
const KEY_BYTES_MAX: usize = 21;

/// Upper bound of one generated record's encoded size.
fn record_bytes_max(w: &Workload) -> usize {
    w.record_size.max() + KEY_BYTES_MAX + RECORD_FRAMING_MAX
}

/// Whether a batch must be sealed now: the next record might not fit in `batch_bytes`.
/// As in Kafka's producer, a batch never exceeds the batch size (unless a single record
/// does), so `--batch-size` equal to the broker's `max.message.bytes` is accepted; sealing
/// only once the size was reached left every full batch one record over it.
fn batch_full(builder: &BatchBuilder, record_max: usize, batch_bytes: usize) -> bool {
    !builder.is_empty() && builder.size_bytes() + record_max > batch_bytes
}

struct PartState {
    builder: BatchBuilder,
    intended: IntendedTimes,
    first_append_ns: u64,
    checksum: u64,
    payload_bytes: u64,
    next_sequence: i32,
    broker: i32,
}

struct Sealed {
    partition: i32,
    data: Bytes,
    intended: IntendedTimes,
    checksum: u64,
    payload_bytes: u64,
    attempts: u32,
}

/// A batch in flight: what is needed to account for its acknowledgement.
/// Kafka error codes a producer retries (the broker may succeed later):
/// UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER,
/// REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS(_AFTER_APPEND), KAFKA_STORAGE_ERROR,
/// and OUT_OF_ORDER_SEQUENCE_NUMBER (follows a retried batch when idempotent).
const RETRIABLE: &[i16] = &[3, 5, 6, 7, 19, 20, 45, 56];
/// DUPLICATE_SEQUENCE_NUMBER: the broker already has the batch; counts as success.
const DUPLICATE_SEQUENCE: i16 = 46;
const RETRIES_MAX: u32 = 20;
const RETRY_BACKOFF_NS: u64 = 20_000_000;

type Pending = Sealed;

/// Per-link state shared with the link's acknowledgement task.
#[derive(Clone)]
struct LinkShared {
    inflight: Rc<RefCell<VecDeque<InFlight>>>,
    failed: Rc<Cell<bool>>,
    /// Batches to send again (retriable errors), in the order they failed.
    retry: Rc<RefCell<VecDeque<Sealed>>>,
    backoff_until_ns: Rc<Cell<u64>>,
}

struct InFlight {
    correlation_id: i32,
    batches: Vec<Pending>,
    /// Whether the send lag of its records is recorded (by the sender once the write
    /// returns, or by the acknowledgement if that came first).
    sent_recorded: bool,
    /// When the write of the request returned (clock ns), once `sent_recorded`.
    written_ns: u64,
}

struct Link {
    writer: FrameWriter,
    version: i16,
    next_correlation_id: i32,
    ready: VecDeque<Sealed>,
    shared: LinkShared,
    _reader_task: Option<glommio::Task<()>>,
}

/// Everything a producer needs, prepared before the start barrier.
pub struct Producer {
    w: Arc<Workload>,
    topic: String,
    index: u32,
    rate_per_sec: f64,
    links: HashMap<i32, Link>,
    parts: Vec<PartState>,
    stamp: Option<(i64, i16)>,
    gen: PayloadGen,
    signal_tx: Rc<LocalSender<()>>,
    signal_rx: LocalReceiver<()>,
    readers: Vec<(i32, FrameReader)>,
}

impl Producer {
    /// Connects to every leader of `topic` and gets a producer id if idempotent.
    pub async fn setup(
        w: Arc<Workload>,
        meta: &ClusterMeta,
        topic: &str,
        index: u32,
        rate_per_sec: f64,
    ) -> Result<Producer> {
        let partitions = meta
            .leaders
            .get(topic)
            .ok_or_else(|| anyhow!("no metadata for {topic}"))?
            .len() as i32;
        let mut links = HashMap::new();
        let mut readers = Vec::new();
        let mut parts = Vec::with_capacity(partitions as usize);
        let mut stamp = None;
        for p in 0..partitions {
            let (broker, addr) = meta.leader_addr(topic, p)?;
            if let std::collections::hash_map::Entry::Vacant(e) = links.entry(broker) {
                let mut conn = Conn::connect(&addr).await?;
                if w.idempotence && stamp.is_none() {
                    stamp = Some(
                        init_producer_id(&mut conn)
                            .await
                            .context("idempotent producer")?,
                    );
                }
                let version = conn.versions.get(ApiKey::Produce)?;
                let next_correlation_id = conn.next_correlation_id();
                let (reader, writer, _) = conn.into_split();
                readers.push((broker, reader));
                e.insert(Link {
                    writer,
                    version,
                    next_correlation_id,
                    ready: VecDeque::new(),
                    shared: LinkShared {
                        inflight: Rc::new(RefCell::new(VecDeque::new())),
                        failed: Rc::new(Cell::new(false)),
                        retry: Rc::new(RefCell::new(VecDeque::new())),
                        backoff_until_ns: Rc::new(Cell::new(0)),
                    },
                    _reader_task: None,
                });
            }
            parts.push(PartState {
                builder: BatchBuilder::new(w.batch_bytes + w.record_size.max() + 64),
                intended: IntendedTimes::default(),
                first_append_ns: 0,
                checksum: 0,
                payload_bytes: 0,
                next_sequence: 0,
                broker,
            });
        }
        let (signal_tx, signal_rx) = local_channel::new_unbounded();
        let signal_tx = Rc::new(signal_tx);
        let seed = w.seed.wrapping_mul(1_000_003).wrapping_add(index as u64);
        let gen = PayloadGen::new(seed, w.record_size, w.key_mode, w.key_cardinality);
        Ok(Producer {
            topic: topic.to_string(),
            index,
            rate_per_sec,
            links,
            parts,
            stamp,
            gen,
            signal_tx,
            signal_rx,
            readers,
            w,
        })
    }

    /// Runs until the workload's duration has passed and every batch is acknowledged.
    pub async fn run(
        mut self,
        clock: Clock,
        stats: Rc<RefCell<WorkerStats>>,
        acked_global: Arc<AtomicU64>,
    ) -> Result<()> {
        let acks = self.w.acks;
        for (broker, reader) in std::mem::take(&mut self.readers) {
            let link = self
                .links
                .get_mut(&broker)
                .ok_or_else(|| anyhow!("link {broker}"))?;
            let task = if acks != 0 {
                glommio::spawn_local(ack_loop(
                    reader,
                    link.version,
                    link.shared.clone(),
                    self.signal_tx.clone(),
                    clock,
                    stats.clone(),
                    acked_global.clone(),
                ))
            } else {
                glommio::spawn_local(watch_unacked(
                    reader,
                    link.shared.failed.clone(),
                    self.signal_tx.clone(),
                    stats.clone(),
                ))
            };
            link._reader_task = Some(task);
        }
        let end_ns = (self.w.duration_s * 1e9) as u64;
        let interval_ns = if self.rate_per_sec > 0.0 {
            1e9 / self.rate_per_sec
        } else {
            0.0
        };
        // Producers start staggered by a fraction of the interval so they do not fire in
        // lockstep.
        let offset_ns = interval_ns * (self.index as f64 % 16.0) / 16.0;
        let linger_ns = (self.w.linger_ms * 1e6) as u64;
        let record_max = record_bytes_max(&self.w);
        let npart = self.parts.len() as i32;
        let mut sticky: i32 = (self.index as i32) % npart;
        let mut seq: u64 = 0;
        let mut buffered_bytes: usize = 0;
        let result: Result<()> = async {
            loop {
                let now = clock.elapsed_ns();
                if now >= end_ns {
                    break;
                }
                // 1. Generate every record that is due (bounded per turn and by the buffer).
                let mut generated = 0;
                // Closed loop: a fresh clock reading for the first group of every turn.
                let mut group_left: u32 = 0;
                let mut group_ns: u64 = 0;
                while generated < GENERATE_CHUNK && buffered_bytes < self.w.buffer_bytes {
                    let intended = if interval_ns > 0.0 {
                        // Open loop: the schedule fixes each record's time; no clock read.
                        let t = (offset_ns + seq as f64 * interval_ns) as u64;
                        if t > now {
                            break;
                        }
                        t
                    } else {
                        if group_left == 0 {
                            group_ns = clock.elapsed_ns();
                            group_left = CLOSED_LOOP_GROUP;
                        }
                        group_left -= 1;
                        group_ns
                    };
                    if intended >= end_ns {
                        break;
                    }
                    // The key (if any) picks the partition; without keys the sticky
                    // partitioner fills one partition's batch at a time.
                    let key = self.gen.next_key();
                    let p = match &key {
                        Some(k) => partition_for_key(k.as_bytes(), npart),
                        None => sticky,
                    };
                    let ps = &mut self.parts[p as usize];
                    if ps.builder.is_empty() {
                        ps.first_append_ns = clock.elapsed_ns();
                    }
                    let intended_unix = clock.t0_unix_ns + intended;
                    let ts_ms = (intended_unix / 1_000_000) as i64;
                    let rec =
                        self.gen
                            .append_record(&mut ps.builder, ts_ms, intended_unix, key.as_ref());
                    ps.intended.push(intended);
                    ps.checksum = ps.checksum.wrapping_add(rec.checksum);
                    ps.payload_bytes += rec.value_len as u64;
                    // Same measure as released in dispatch(): value bytes + 16 per record.
                    buffered_bytes += rec.value_len + 16;
                    seq += 1;
                    generated += 1;
                    if batch_full(&ps.builder, record_max, self.w.batch_bytes) {
                        self.seal(p)?;
                        if p == sticky {
                            sticky = (sticky + 1) % npart;
                        }
                    }
                }
                // 2. Seal batches whose linger expired, but only when their broker can take a
                //    request now: while every in-flight slot is busy the batch stays open and
                //    keeps growing (as in Kafka's RecordAccumulator), instead of queueing many
                //    tiny batches that each need their own request.
                let now = clock.elapsed_ns();
                for p in 0..npart {
                    let ps = &self.parts[p as usize];
                    if !ps.builder.is_empty()
                        && now >= ps.first_append_ns + linger_ns
                        && self.can_send(ps.broker)
                    {
                        self.seal(p)?;
                        if p == sticky {
                            sticky = (sticky + 1) % npart;
                        }
                    }
                }
                // 3. Send what the in-flight limits allow.
                buffered_bytes -= self
                    .dispatch(&clock, &stats, &acked_global)
                    .await?
                    .min(buffered_bytes);
                // 4. Wait for the next due record, linger deadline or acknowledgement.
                if generated == GENERATE_CHUNK {
                    glommio::yield_if_needed().await;
                    continue;
                }
                let now = clock.elapsed_ns();
                let mut wake = end_ns;
                if interval_ns > 0.0 && buffered_bytes < self.w.buffer_bytes {
                    wake = wake.min((offset_ns + seq as f64 * interval_ns) as u64);
                } else if interval_ns == 0.0 && buffered_bytes < self.w.buffer_bytes {
                    wake = now; // closed loop: generate more right away
                }
                for ps in &self.parts {
                    // A blocked partition waits for an acknowledgement (the signal), not a timer.
                    if !ps.builder.is_empty() && self.can_send(ps.broker) {
                        wake = wake.min(ps.first_append_ns + linger_ns);
                    }
                }
                if wake > now {
                    let d = Duration::from_nanos((wake - now).max(20_000));
                    let rx = &self.signal_rx;
                    futures_lite::future::or(
                        async {
                            glommio::timer::sleep(d).await;
                        },
                        async {
                            let _ = rx.recv().await;
                        },
                    )
                    .await;
                } else {
                    glommio::yield_if_needed().await;
                }
            }
            // Flush: seal everything and send until nothing is left, then wait for acks.
            for p in 0..npart {
                if !self.parts[p as usize].builder.is_empty() {
                    self.seal(p)?;
                }
            }
            let deadline = clock.elapsed_ns() + DRAIN_TIMEOUT.as_nanos() as u64;
            loop {
                self.dispatch(&clock, &stats, &acked_global).await?;
                let idle = self.links.values().all(|l| {
                    l.ready.is_empty()
                        && l.shared.retry.borrow().is_empty()
                        && l.shared.inflight.borrow().is_empty()
                });
                if idle {
                    break;
                }
                if clock.elapsed_ns() > deadline {
                    bail!(
                        "producer {}: acknowledgements still missing {:?} after the run",
                        self.index,
                        DRAIN_TIMEOUT
                    );
                }
                let rx = &self.signal_rx;
                futures_lite::future::or(
                    async {
                        glommio::timer::sleep(Duration::from_millis(50)).await;
                    },
                    async {
                        let _ = rx.recv().await;
                    },
                )
                .await;
            }
            Ok(())
        }
        .await;
        if let Err(e) = &result {
            // Records generated but never acknowledged are failures, so the run reports them
            // (and exits non-zero) instead of only noting the cause.
            let lost = if acks == 0 {
                // Nothing else counts errors at acks=0; the batches of a failed write were
                // dropped with it.
                seq.saturating_sub(acked_global.load(Ordering::Relaxed))
            } else {
                // What the acknowledgement task has not accounted for (it empties `inflight`
                // itself when its connection fails).
                let queued: u64 = self
                    .links
                    .values()
                    .map(|l| {
                        let batches = |q: &VecDeque<Sealed>| -> u64 {
                            q.iter().map(|b| b.intended.records()).sum()
                        };
                        batches(&l.ready)
                            + batches(&l.shared.retry.borrow())
                            + l.shared
                                .inflight
                                .borrow()
                                .iter()
                                .flat_map(|f| f.batches.iter())
                                .map(|b| b.intended.records())
                                .sum::<u64>()
                    })
                    .sum();
                queued + self.parts.iter().map(|p| p.intended.records()).sum::<u64>()
            };
            let mut st = stats.borrow_mut();
            st.produce_errors += lost;
            st.note_error(format!("producer {} ({}): {e:#}", self.index, self.topic));
        }
        result
    }

    /// Whether a request to `broker` could be written now.
    fn can_send(&self, broker: i32) -> bool {
        match self.links.get(&broker) {
            Some(l) => {
                l.ready.is_empty()
                    && l.shared.retry.borrow().is_empty()
                    && (self.w.acks == 0 || l.shared.inflight.borrow().len() < self.w.max_in_flight)
            }
            None => false,
        }
    }

    fn seal(&mut self, p: i32) -> Result<()> {
        let stamp = match self.stamp {
            Some((producer_id, producer_epoch)) => {
                let ps = &self.parts[p as usize];
                ProducerStamp {
                    producer_id,
                    producer_epoch,
                    base_sequence: ps.next_sequence,
                }
            }
            None => ProducerStamp::NONE,
        };
        let ps = &mut self.parts[p as usize];
        let n = ps.builder.record_count();
        let data = ps.builder.seal(self.w.compression, stamp)?;
        ps.next_sequence = ps.next_sequence.wrapping_add(n) & i32::MAX;
        debug_assert_eq!(ps.intended.records(), n as u64);
        let runs_hint = ps.intended.runs().len();
        let sealed = Sealed {
            partition: p,
            data,
            intended: std::mem::replace(&mut ps.intended, IntendedTimes::with_capacity(runs_hint)),
            checksum: std::mem::take(&mut ps.checksum),
            payload_bytes: std::mem::take(&mut ps.payload_bytes),
            attempts: 0,
        };
        let broker = ps.broker;
        self.links
            .get_mut(&broker)
            .ok_or_else(|| anyhow!("no link to broker {broker}"))?
            .ready
            .push_back(sealed);
        Ok(())
    }

    /// Sends ready batches on every link with a free in-flight slot. Returns the buffered
    /// bytes released.
    async fn dispatch(
        &mut self,
        clock: &Clock,
        stats: &Rc<RefCell<WorkerStats>>,
        acked_global: &Arc<AtomicU64>,
    ) -> Result<usize> {
        let mut released = 0;
        let mut glue = Vec::with_capacity(256);
        let mut cuts = Vec::new();
        for (broker, link) in self.links.iter_mut() {
            if link.shared.failed.get() {
                bail!("connection to broker {broker} failed");
            }
            // Retried batches go first, in their original order.
            while let Some(b) = link.shared.retry.borrow_mut().pop_back() {
                link.ready.push_front(b);
            }
            if clock.elapsed_ns() < link.shared.backoff_until_ns.get() {
                continue;
            }
            while !link.ready.is_empty()
                && (self.w.acks == 0 || link.shared.inflight.borrow().len() < self.w.max_in_flight)
            {
                // One batch per partition per request (Kafka's rule), in queue order so
                // sequences stay ordered.
                let mut taken: Vec<Sealed> = Vec::new();
                let mut bytes = 0;
                let mut i = 0;
                while i < link.ready.len() {
                    let dup = taken.iter().any(|s| s.partition == link.ready[i].partition);
                    let earlier_same = link
                        .ready
                        .iter()
                        .take(i)
                        .any(|s| s.partition == link.ready[i].partition);
                    if !dup
                        && !earlier_same
                        && (taken.is_empty()
                            || bytes + link.ready[i].data.len() <= REQUEST_BYTES_MAX)
                    {
                        bytes += link.ready[i].data.len();
                        if let Some(s) = link.ready.remove(i) {
                            taken.push(s);
                        }
                    } else {
                        i += 1;
                    }
                }
                let corr = link.next_correlation_id;
                link.next_correlation_id = link.next_correlation_id.wrapping_add(1);
                // The batches go to the socket as they are (vectored write), framed by `glue`.
                // `Bytes` handles (not copies) keep them alive while `taken` is in flight.
                let datas: Vec<(i32, Bytes)> = taken
                    .iter()
                    .map(|s| (s.partition, s.data.clone()))
                    .collect();
                let refs: Vec<(i32, &[u8])> = datas.iter().map(|(p, d)| (*p, &d[..])).collect();
                encode_produce_glue(
                    link.version,
                    corr,
                    self.w.acks,
                    PRODUCE_TIMEOUT_MS,
                    &self.topic,
                    &refs,
                    &mut glue,
                    &mut cuts,
                )?;
                let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * refs.len() + 1);
                let mut at = 0;
                for (cut, (_, data)) in cuts.iter().zip(&refs) {
                    parts.push(&glue[at..*cut]);
                    parts.push(data);
                    at = *cut;
                }
                parts.push(&glue[at..]);
                let frame_bytes: usize = parts.iter().map(|p| p.len()).sum();
                // Buffer space is released on the first send; retries were already counted.
                released += taken
                    .iter()
                    .filter(|s| s.attempts == 0)
                    .map(|s| s.payload_bytes as usize + s.intended.records() as usize * 16)
                    .sum::<usize>();
                if self.w.acks != 0 {
                    // Registered before writing: the response may be read while the write
                    // waits for socket room.
                    link.shared.inflight.borrow_mut().push_back(InFlight {
                        correlation_id: corr,
                        batches: taken,
                        sent_recorded: false,
                        written_ns: 0,
                    });
                    stats
                        .borrow_mut()
                        .on_request(clock.elapsed_ns(), frame_bytes);
                    link.writer.write_parts(&parts).await?;
                    let now = clock.elapsed_ns();
                    let mut inflight = link.shared.inflight.borrow_mut();
                    // Normally the last entry; gone only if its response was already handled
                    // (the acknowledgement then recorded the send lag).
                    if let Some(entry) =
                        inflight.iter_mut().rev().find(|f| f.correlation_id == corr)
                    {
                        let mut st = stats.borrow_mut();
                        for b in &entry.batches {
                            st.on_sent(now, &b.intended);
                        }
                        entry.sent_recorded = true;
                        entry.written_ns = now;
                    }
                } else {
                    link.writer.write_parts(&parts).await?;
                    // acks=0: no response exists; "acknowledged" = written to the socket.
                    let now = clock.elapsed_ns();
                    let mut st = stats.borrow_mut();
                    st.on_request(now, frame_bytes);
                    for b in &taken {
                        st.on_sent(now, &b.intended);
                        st.on_acked(now, &b.intended, b.payload_bytes, b.checksum);
                        acked_global.fetch_add(b.intended.records(), Ordering::Relaxed);
                    }
                }
            }
        }
        Ok(released)
    }
}

/// Reads Produce responses in order and accounts for each batch.
#[allow(clippy::too_many_arguments)]
async fn ack_loop(
    mut reader: FrameReader,
    version: i16,
    shared: LinkShared,
    signal: Rc<LocalSender<()>>,
    clock: Clock,
    stats: Rc<RefCell<WorkerStats>>,
    acked_global: Arc<AtomicU64>,
) {
    let LinkShared {
        inflight,
        failed,
        retry,
        backoff_until_ns,
    } = shared;
    let res: Result<()> = async {
        loop {
            let frame = reader.read_frame().await?;
            let now = clock.elapsed_ns();
            let entry = inflight
                .borrow_mut()
                .pop_front()
                .ok_or_else(|| anyhow!("response without a request in flight"))?;
            let (corr, mut body) = split_response(ApiKey::Produce, version, frame)?;
            if corr != entry.correlation_id {
                bail!("correlation id {corr}, expected {}", entry.correlation_id);
            }
            let resp =
                ProduceResponse::decode(&mut body, version).context("decoding Produce response")?;
            let mut st = stats.borrow_mut();
            if !entry.sent_recorded {
                // The response overtook the sender's bookkeeping: the request was written by now.
                for b in &entry.batches {
                    st.on_sent(now, &b.intended);
                }
            }
            // Written to acknowledged: the broker's and the network's share, without the
            // harness's batching and in-flight wait (a response that overtook the sender's
            // bookkeeping counts as an immediate one).
            let written = if entry.sent_recorded {
                entry.written_ns
            } else {
                now
            };
            st.on_round_trip(now, now.saturating_sub(written));
            for b in entry.batches {
                let pr = resp
                    .responses
                    .iter()
                    .flat_map(|t| t.partition_responses.iter())
                    .find(|p| p.index == b.partition);
                match pr {
                    Some(p) if p.error_code == 0 || p.error_code == DUPLICATE_SEQUENCE => {
                        st.on_acked(now, &b.intended, b.payload_bytes, b.checksum);
                        acked_global.fetch_add(b.intended.records(), Ordering::Relaxed);
                    }
                    Some(p) if RETRIABLE.contains(&p.error_code) && b.attempts < RETRIES_MAX => {
                        st.produce_retries += b.intended.records();
                        backoff_until_ns.set(now + RETRY_BACKOFF_NS);
                        let mut b = b;
                        b.attempts += 1;
                        retry.borrow_mut().push_back(b);
                    }
                    Some(p) => {
                        st.produce_errors += b.intended.records();
                        let msg = p
                            .error_message
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default();
                        st.note_error(format!(
                            "partition {}: error code {} {msg}",
                            b.partition, p.error_code
                        ));
                    }
                    None => {
                        st.produce_errors += b.intended.records();
                        st.note_error(format!(
                            "partition {}: missing in Produce response",
                            b.partition
                        ));
                    }
                }
            }
            drop(st);
            let _ = signal.try_send(());
        }
    }
    .await;
    if let Err(e) = res {
        failed.set(true);
        let lost: u64 = inflight
            .borrow_mut()
            .drain(..)
            .flat_map(|f| f.batches.into_iter())
            .map(|b| b.intended.records())
            .sum();
        let mut st = stats.borrow_mut();
        st.produce_errors += lost;
        st.note_error(format!("produce connection: {e:#}"));
        drop(st);
        let _ = signal.try_send(());
    }
}

/// acks=0: the broker sends no Produce responses, and on an error it closes the connection
/// instead of answering. Reads the connection only to notice that (or a stray response),
/// so the producer fails fast rather than writing into a dead socket.
async fn watch_unacked(
    mut reader: FrameReader,
    failed: Rc<Cell<bool>>,
    signal: Rc<LocalSender<()>>,
    stats: Rc<RefCell<WorkerStats>>,
) {
    let msg = match reader.read_frame().await {
        Ok(frame) => format!(
            "produce connection: unexpected {}-byte response to acks=0 requests",
            frame.len()
        ),
        Err(e) => format!("produce connection (acks=0): {e:#}"),
    };
    failed.set(true);
    stats.borrow_mut().note_error(msg);
    let _ = signal.try_send(());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{split_batches, Codec};
    use crate::workload::{KeyMode, SizeDist};
    use storage::batch::BATCH_HEADER_LEN;

    /// Fills batches the way the producer does and checks none exceeds the batch size.
    fn fill(size: SizeDist, key_mode: KeyMode, batch_bytes: usize) {
        let w = Workload {
            record_size: size,
            key_mode,
            key_cardinality: if key_mode == KeyMode::None {
                0
            } else {
                u64::MAX
            },
            batch_bytes,
            ..Workload::default()
        };
        let max = record_bytes_max(&w);
        let mut gen = PayloadGen::new(7, w.record_size, w.key_mode, w.key_cardinality);
        let mut b = BatchBuilder::new(batch_bytes + max);
        for round in 0..3 {
            let mut n = 0;
            loop {
                let key = gen.next_key();
                gen.append_record(&mut b, 1_700_000_000_000 + n, 1, key.as_ref());
                n += 1;
                if batch_full(&b, max, batch_bytes) {
                    break;
                }
            }
            let size = b.size_bytes();
            let sealed = b.seal(Codec::None, ProducerStamp::NONE).expect("seal");
            assert_eq!(sealed.len(), size);
            assert!(
                sealed.len() <= batch_bytes,
                "round {round}: batch of {} bytes over the batch size {batch_bytes}",
                sealed.len()
            );
            // Full: one more record of the largest size would not have fitted.
            assert!(sealed.len() + max > batch_bytes);
            let batches = split_batches(sealed, true).expect("valid batch");
            assert_eq!(batches.len(), 1);
            assert!(b.is_empty());
        }
    }

    #[test]
    fn batches_never_exceed_the_batch_size() {
        // 1 MiB = the broker's default max.message.bytes (1048588): a batch one record over
        // it was rejected with MESSAGE_TOO_LARGE.
        fill(SizeDist::Fixed { bytes: 1024 }, KeyMode::None, 1 << 20);
        fill(SizeDist::Fixed { bytes: 100 }, KeyMode::None, 16 << 10);
        fill(
            SizeDist::Uniform { min: 10, max: 5000 },
            KeyMode::Random,
            64 << 10,
        );
    }

    #[test]
    fn a_record_larger_than_the_batch_size_gets_a_batch_of_its_own() {
        let b = BatchBuilder::new(4096);
        assert!(
            !batch_full(&b, 10_000, 2048),
            "an empty batch takes any record"
        );
        let mut b = BatchBuilder::new(4096);
        b.append(1, None, &[7u8; 3000]);
        assert!(b.size_bytes() > BATCH_HEADER_LEN);
        assert!(batch_full(&b, 3000 + RECORD_FRAMING_MAX, 2048));
    }
}
