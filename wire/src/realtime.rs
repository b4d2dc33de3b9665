//! Realtime replication state machines.
//!
//! ```text
//! source (per data connection)                 sink (per data connection)
//!   cursor c[p] (durable) ─ read log after c[p]
//!   ── Batch{seq, p, after, upto} + records ──▶  contiguous with the last batch of p?
//!      (window: unacked bytes <= window)          no → protocol error, reconnect
//!                                                 skip records <= applied[p] (resends)
//!                                                 apply, wait durable
//!   ◀──────────────── Ack{p, upto, seq} ───────  applied[p] = upto
//!   acked[p] = upto → advance cursor c[p]
//! ```
//!
//! A new connection starts from the durable cursors, so anything sent but
//! not acknowledged is sent again; applying is idempotent (the newer version
//! wins, an equal one is a no-op), so a resend changes nothing.

use std::collections::{BTreeMap, VecDeque};

use crate::cm::{LiveAction, Liveness};
use crate::msg::*;
use crate::ProtoError;

#[derive(Clone, Debug)]
pub struct SourceConfig {
    /// Unacknowledged payload bytes allowed in flight.
    pub window_bytes: usize,
    pub heartbeat_ms: u64,
    pub peer_timeout_ms: u64,
}

#[derive(Clone, Debug)]
struct InFlight {
    #[allow(dead_code)]
    seq: u64,
    partition: u32,
    upto_lsn: u64,
    bytes: usize,
    sent_ms: u64,
}

/// What the source must do after an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceEvent {
    /// Everything of `partition` up to `upto_lsn` is durable on the sink:
    /// advance the cursor.
    Acked { partition: u32, upto_lsn: u64 },
    SendHeartbeat,
    /// End the connection (and reconnect later) for this reason.
    Close(String),
}

/// Source side of one realtime data connection.
#[derive(Debug)]
pub struct RealtimeSource {
    cfg: SourceConfig,
    next_seq: u64,
    inflight: VecDeque<InFlight>,
    inflight_bytes: usize,
    /// Per partition: end of what was sent, and of what was acknowledged.
    sent: BTreeMap<u32, u64>,
    acked: BTreeMap<u32, u64>,
    live: Liveness,
}

impl RealtimeSource {
    /// `start` lists the partitions of this connection with their cursors.
    pub fn new(cfg: SourceConfig, start: &[(u32, u64)], now_ms: u64) -> RealtimeSource {
        let live = Liveness::new(cfg.heartbeat_ms, cfg.peer_timeout_ms, now_ms);
        RealtimeSource {
            cfg,
            next_seq: 1,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            sent: start.iter().copied().collect(),
            acked: start.iter().copied().collect(),
            live,
        }
    }

    /// Whether a batch of `bytes` fits the window (one batch is always allowed
    /// when nothing is in flight, so an oversized batch cannot wedge the link).
    pub fn can_send(&self, bytes: usize) -> bool {
        self.inflight.is_empty() || self.inflight_bytes + bytes <= self.cfg.window_bytes
    }

    pub fn inflight_bytes(&self) -> usize {
        self.inflight_bytes
    }

    pub fn inflight_batches(&self) -> usize {
        self.inflight.len()
    }

    /// LSN after which the next batch of `partition` starts.
    pub fn next_after(&self, partition: u32) -> Option<u64> {
        self.sent.get(&partition).copied()
    }

    pub fn acked(&self, partition: u32) -> Option<u64> {
        self.acked.get(&partition).copied()
    }

    /// Send time of the oldest unacknowledged batch.
    pub fn oldest_unacked_ms(&self) -> Option<u64> {
        self.inflight.front().map(|b| b.sent_ms)
    }

    /// Records a batch being sent and returns its frame body. `upto_lsn` is
    /// the log position the batch covers (records skipped included). A
    /// *carrier* batch (`upto_lsn == after`, records > 0) carries only
    /// blocks of a manifest too big for one batch; it moves no cursor.
    pub fn batch(&mut self, partition: u32, upto_lsn: u64, records: u32, bytes: usize, now_ms: u64) -> Batch {
        let after = *self.sent.get(&partition).expect("batch for a partition of this connection");
        assert!(
            upto_lsn > after || (upto_lsn == after && records > 0),
            "batch must move forward or carry records: partition {partition} upto {upto_lsn} after {after}"
        );
        assert!(records as usize <= crate::MAX_RECORDS_PER_BATCH);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.sent.insert(partition, upto_lsn);
        self.inflight.push_back(InFlight { seq, partition, upto_lsn, bytes, sent_ms: now_ms });
        self.inflight_bytes += bytes;
        self.live.sent(now_ms);
        Batch { seq, partition, after_lsn: after, upto_lsn, records }
    }

    pub fn on_msg(&mut self, m: &Msg, now_ms: u64) -> Result<Vec<SourceEvent>, ProtoError> {
        self.live.received(now_ms);
        match m {
            Msg::Ack(a) => {
                let Some(&sent) = self.sent.get(&a.partition) else {
                    return Err(ProtoError::new(format!("ack for partition {} which this connection does not carry", a.partition)));
                };
                if a.upto_lsn > sent {
                    return Err(ProtoError::new(format!(
                        "ack for partition {} up to lsn {} but only {} was sent",
                        a.partition, a.upto_lsn, sent
                    )));
                }
                // Acks are cumulative per partition: they free every batch of
                // the partition sent up to this one (carriers included).
                let mut freed = 0;
                self.inflight.retain(|b| {
                    let done = b.partition == a.partition && b.upto_lsn <= a.upto_lsn && b.seq <= a.seq;
                    if done {
                        freed += b.bytes;
                    }
                    !done
                });
                self.inflight_bytes -= freed;
                let acked = self.acked.get_mut(&a.partition).unwrap();
                if a.upto_lsn <= *acked {
                    // A duplicate, stale or carrier ack: the cursor does not move.
                    return Ok(Vec::new());
                }
                *acked = a.upto_lsn;
                Ok(vec![SourceEvent::Acked { partition: a.partition, upto_lsn: a.upto_lsn }])
            }
            Msg::Heartbeat(_) => Ok(Vec::new()),
            Msg::Error(e) => Ok(vec![SourceEvent::Close(format!("sink reported error {}: {}", e.code, e.message))]),
            other => Err(ProtoError::new(format!("unexpected {:?} frame on a realtime source connection", other.kind()))),
        }
    }

    pub fn on_tick(&mut self, now_ms: u64) -> Vec<SourceEvent> {
        match self.live.tick(now_ms) {
            LiveAction::Nothing => Vec::new(),
            LiveAction::SendHeartbeat => vec![SourceEvent::SendHeartbeat],
            LiveAction::Dead(why) => vec![SourceEvent::Close(why)],
        }
    }
}

/// What the sink must do with a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchPlan {
    /// Apply the records with LSN greater than `skip_through` (the others
    /// were applied already), then call `applied`.
    Apply { skip_through: u64 },
    /// Everything in it was applied already: send this ack right away.
    AckNow(Ack),
}

/// Sink side of one realtime data connection.
#[derive(Debug)]
pub struct RealtimeSink {
    /// Per partition: everything up to here is applied (the session starts
    /// from the source's cursor, or from what this sink applied before).
    applied: BTreeMap<u32, u64>,
    live: Liveness,
}

impl RealtimeSink {
    /// `start` pairs each partition with where the session begins: the
    /// larger of the source's cursor (from the DataHello) and what this sink
    /// remembers applying from that source.
    pub fn new(start: &[(u32, u64)], heartbeat_ms: u64, peer_timeout_ms: u64, now_ms: u64) -> RealtimeSink {
        RealtimeSink { applied: start.iter().copied().collect(), live: Liveness::new(heartbeat_ms, peer_timeout_ms, now_ms) }
    }

    pub fn applied(&self, partition: u32) -> Option<u64> {
        self.applied.get(&partition).copied()
    }

    /// Checks a batch against what is applied.
    pub fn on_batch(&mut self, b: &Batch, now_ms: u64) -> Result<BatchPlan, ProtoError> {
        self.live.received(now_ms);
        let Some(&applied) = self.applied.get(&b.partition) else {
            return Err(ProtoError::new(format!("batch for partition {} which this connection does not carry", b.partition)));
        };
        if b.records as usize > crate::MAX_RECORDS_PER_BATCH {
            return Err(ProtoError::new(format!("batch {} carries {} records, over MAX_RECORDS_PER_BATCH ({})", b.seq, b.records, crate::MAX_RECORDS_PER_BATCH)));
        }
        let carrier = b.upto_lsn == b.after_lsn && b.records > 0;
        if b.upto_lsn < b.after_lsn || (b.upto_lsn == b.after_lsn && !carrier) {
            return Err(ProtoError::new(format!("batch {} of partition {} covers an empty range ({}..{}]", b.seq, b.partition, b.after_lsn, b.upto_lsn)));
        }
        if b.after_lsn > applied {
            return Err(ProtoError::new(format!(
                "gap in partition {}: batch {} starts after lsn {} but only {} is applied; reconnecting to resend from the cursor",
                b.partition, b.seq, b.after_lsn, applied
            )));
        }
        if !carrier && b.upto_lsn <= applied {
            return Ok(BatchPlan::AckNow(Ack { partition: b.partition, upto_lsn: b.upto_lsn, seq: b.seq }));
        }
        Ok(BatchPlan::Apply { skip_through: applied })
    }

    /// The batch is applied: the ack to send once it is durable. (A driver
    /// that applies ahead of durability must send acks in the order of
    /// their batches, each once its own batch is durable: `applied` then
    /// runs ahead of what is acknowledged.)
    pub fn batch_applied(&mut self, b: &Batch) -> Ack {
        let a = self.applied.get_mut(&b.partition).expect("checked by on_batch");
        assert!(b.after_lsn <= *a, "applied a batch beyond a gap");
        *a = (*a).max(b.upto_lsn);
        Ack { partition: b.partition, upto_lsn: b.upto_lsn, seq: b.seq }
    }

    /// A frame (an ack) went to the source.
    pub fn sent(&mut self, now_ms: u64) {
        self.live.sent(now_ms);
    }

    /// The driver reads nothing from the source while it waits for its own
    /// disk; the source's silence meanwhile is not a sign of a dead peer.
    pub fn not_reading(&mut self, now_ms: u64) {
        self.live.received(now_ms);
    }

    pub fn on_other(&mut self, m: &Msg, now_ms: u64) -> Result<Option<String>, ProtoError> {
        self.live.received(now_ms);
        match m {
            Msg::Heartbeat(_) => Ok(None),
            Msg::Error(e) => Ok(Some(format!("source reported error {}: {}", e.code, e.message))),
            other => Err(ProtoError::new(format!("unexpected {:?} frame on a realtime sink connection", other.kind()))),
        }
    }

    pub fn on_tick(&mut self, now_ms: u64) -> LiveAction {
        self.live.tick(now_ms)
    }
}

#[cfg(test)]
mod tests {
    //! A whole realtime pipeline in memory: a source log, the two state
    //! machines, and a channel that loses, duplicates, reorders and cuts.
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn chance(&mut self, pct: u64) -> bool {
            self.next() % 100 < pct
        }
    }

    /// One log record: partition, lsn, key, version.
    #[derive(Clone, Debug)]
    struct Rec {
        lsn: u64,
        key: u32,
        version: u64,
    }

    #[derive(Default)]
    struct SinkStore {
        /// key -> newest version applied (idempotent LWW).
        kv: BTreeMap<(u32, u32), u64>,
        applied: BTreeMap<u32, u64>,
    }

    struct Sim {
        rng: Rng,
        logs: BTreeMap<u32, Vec<Rec>>,
        cursors: BTreeMap<u32, u64>,
        now: u64,
    }

    const PARTS: [u32; 3] = [0, 5, 9];

    fn cfg() -> SourceConfig {
        SourceConfig { window_bytes: 4000, heartbeat_ms: 100, peer_timeout_ms: 1000 }
    }

    impl Sim {
        fn new(seed: u64, records: usize) -> Sim {
            let mut rng = Rng(seed | 1);
            let mut logs: BTreeMap<u32, Vec<Rec>> = BTreeMap::new();
            let mut lsn: BTreeMap<u32, u64> = BTreeMap::new();
            for v in 0..records as u64 {
                let p = PARTS[(rng.next() % 3) as usize];
                let l = lsn.entry(p).or_insert(0);
                // LSNs have gaps (records the source skips, seals, pads).
                *l += 1 + rng.next() % 3;
                logs.entry(p).or_default().push(Rec { lsn: *l, key: (rng.next() % 20) as u32, version: v + 1 });
            }
            Sim { rng, logs, cursors: PARTS.iter().map(|&p| (p, 0)).collect(), now: 0 }
        }

        /// What the sink must end with: the newest version of every key.
        fn expected(&self) -> BTreeMap<(u32, u32), u64> {
            let mut m = BTreeMap::new();
            for (&p, recs) in &self.logs {
                for r in recs {
                    let e = m.entry((p, r.key)).or_insert(0);
                    *e = (*e).max(r.version);
                }
            }
            m
        }

        fn head(&self, p: u32) -> u64 {
            self.logs.get(&p).and_then(|v| v.last()).map(|r| r.lsn).unwrap_or(0)
        }

        /// Runs connections until everything is acknowledged. Faults:
        /// frames lost, duplicated, delayed (reordered), connections cut.
        fn run(&mut self, sink: &mut SinkStore, fault_pct: u64) -> usize {
            let mut connections = 0;
            for _round in 0..200 {
                if PARTS.iter().all(|&p| self.cursors[&p] == self.head(p)) {
                    return connections;
                }
                connections += 1;
                let start: Vec<(u32, u64)> = PARTS.iter().map(|&p| (p, self.cursors[&p])).collect();
                let mut src = RealtimeSource::new(cfg(), &start, self.now);
                // The session starts from the source's cursors (sent in the
                // DataHello) or what the sink applied, whichever is larger.
                let sink_start: Vec<(u32, u64)> =
                    start.iter().map(|&(p, c)| (p, c.max(sink.applied.get(&p).copied().unwrap_or(0)))).collect();
                let mut snk = RealtimeSink::new(&sink_start, 100, 1000, self.now);
                let mut to_sink: VecDeque<(Batch, Vec<Rec>)> = VecDeque::new();
                let mut to_source: VecDeque<Msg> = VecDeque::new();
                let mut alive = true;
                for _step in 0..400 {
                    self.now += 7;
                    // Source: fill the window, one batch per partition per step.
                    for &p in &PARTS {
                        let after = src.next_after(p).unwrap();
                        let recs: Vec<Rec> = self.logs.get(&p).map(|v| v.iter().filter(|r| r.lsn > after).take(5).cloned().collect()).unwrap_or_default();
                        if recs.is_empty() {
                            continue;
                        }
                        let bytes = recs.len() * 100;
                        if !src.can_send(bytes) {
                            continue;
                        }
                        let upto = recs.last().unwrap().lsn;
                        let b = src.batch(p, upto, recs.len() as u32, bytes, self.now);
                        assert!(src.inflight_bytes() <= cfg().window_bytes || src.inflight_batches() == 1);
                        if self.rng.chance(fault_pct) {
                            continue; // lost
                        }
                        if self.rng.chance(fault_pct) {
                            to_sink.push_back((b.clone(), recs.clone())); // duplicated
                        }
                        if self.rng.chance(fault_pct) && !to_sink.is_empty() {
                            to_sink.push_front((b, recs)); // reordered
                        } else {
                            to_sink.push_back((b, recs));
                        }
                    }
                    // Sink: take a few frames.
                    for _ in 0..3 {
                        let Some((b, recs)) = to_sink.pop_front() else { break };
                        match snk.on_batch(&b, self.now) {
                            Ok(BatchPlan::AckNow(a)) => to_source.push_back(Msg::Ack(a)),
                            Ok(BatchPlan::Apply { skip_through }) => {
                                for r in recs.iter().filter(|r| r.lsn > skip_through) {
                                    let e = sink.kv.entry((b.partition, r.key)).or_insert(0);
                                    *e = (*e).max(r.version);
                                }
                                let ack = snk.batch_applied(&b);
                                sink.applied.insert(b.partition, snk.applied(b.partition).unwrap());
                                if !self.rng.chance(fault_pct) {
                                    to_source.push_back(Msg::Ack(ack));
                                }
                            }
                            Err(_) => {
                                alive = false; // protocol error: connection ends
                                break;
                            }
                        }
                    }
                    // Source: take acks (sometimes delivered twice).
                    while let Some(m) = to_source.pop_front() {
                        if self.rng.chance(fault_pct) {
                            let _ = src.on_msg(&m, self.now);
                        }
                        match src.on_msg(&m, self.now) {
                            Ok(evs) => {
                                for e in evs {
                                    if let SourceEvent::Acked { partition, upto_lsn } = e {
                                        let head = self.head(partition);
                                        let c = self.cursors.get_mut(&partition).unwrap();
                                        assert!(upto_lsn > *c, "cursor must only move forward");
                                        assert!(upto_lsn <= head, "a cursor never passes the log head");
                                        *c = upto_lsn;
                                        // Everything up to the cursor really is on the sink.
                                        for r in self.logs[&partition].iter().filter(|r| r.lsn <= upto_lsn) {
                                            assert!(sink.kv[&(partition, r.key)] >= r.version, "acked record missing on the sink");
                                        }
                                    }
                                }
                            }
                            Err(e) => panic!("source rejected a valid ack: {e}"),
                        }
                    }
                    if !alive || (self.rng.chance(fault_pct / 2)) {
                        break; // connection cut mid-stream
                    }
                }
            }
            panic!("did not converge");
        }
    }

    #[test]
    fn converges_without_faults() {
        let mut sim = Sim::new(42, 500);
        let mut sink = SinkStore::default();
        let conns = sim.run(&mut sink, 0);
        assert_eq!(conns, 1);
        assert_eq!(sink.kv, sim.expected());
    }

    #[test]
    fn converges_through_loss_duplication_reordering_and_cuts_by_the_thousand() {
        for seed in 0..1000u64 {
            let mut sim = Sim::new(seed * 7919 + 1, 120);
            let mut sink = SinkStore::default();
            sim.run(&mut sink, 15);
            assert_eq!(sink.kv, sim.expected(), "seed {seed}");
        }
    }

    #[test]
    fn sink_that_restarts_with_older_state_gets_everything_again() {
        let mut sim = Sim::new(7, 300);
        let mut sink = SinkStore::default();
        sim.run(&mut sink, 5);
        // The sink loses recent state (restart from an older disk image, and
        // nothing remembered about what it applied)...
        let mut old = SinkStore::default();
        for (k, v) in &sink.kv {
            if v % 3 != 0 {
                old.kv.insert(*k, *v / 2);
            }
        }
        // ...and the source, told to resend (cursor rewound by fullsync or
        // operator), converges it again.
        for c in sim.cursors.values_mut() {
            *c = 0;
        }
        sim.run(&mut old, 5);
        assert_eq!(old.kv, sim.expected());
    }

    #[test]
    fn acks_beyond_what_was_sent_or_for_unknown_partitions_are_protocol_errors() {
        let mut src = RealtimeSource::new(cfg(), &[(1, 10)], 0);
        let b = src.batch(1, 20, 3, 300, 0);
        assert_eq!(b.after_lsn, 10);
        assert!(src.on_msg(&Msg::Ack(Ack { partition: 1, upto_lsn: 21, seq: 1 }), 1).is_err());
        assert!(src.on_msg(&Msg::Ack(Ack { partition: 2, upto_lsn: 5, seq: 1 }), 1).is_err());
        // An ack for a batch we no longer track (already acked) changes nothing.
        assert_eq!(src.on_msg(&Msg::Ack(Ack { partition: 1, upto_lsn: 20, seq: 1 }), 1).unwrap().len(), 1);
        assert!(src.on_msg(&Msg::Ack(Ack { partition: 1, upto_lsn: 15, seq: 99 }), 2).unwrap().is_empty());
        assert_eq!(src.inflight_bytes(), 0);
    }

    #[test]
    fn sink_detects_a_gap_and_a_foreign_partition() {
        let mut s = RealtimeSink::new(&[(3, 0)], 100, 1000, 0);
        let b1 = Batch { seq: 1, partition: 3, after_lsn: 0, upto_lsn: 10, records: 2 };
        assert_eq!(s.on_batch(&b1, 0).unwrap(), BatchPlan::Apply { skip_through: 0 });
        s.batch_applied(&b1);
        let gap = Batch { seq: 2, partition: 3, after_lsn: 15, upto_lsn: 20, records: 1 };
        let e = s.on_batch(&gap, 0).unwrap_err();
        assert!(e.0.contains("gap"), "{e}");
        let other = Batch { seq: 3, partition: 4, after_lsn: 0, upto_lsn: 1, records: 1 };
        assert!(s.on_batch(&other, 0).is_err());
        // A resend of what was applied is acknowledged without applying.
        assert!(matches!(s.on_batch(&b1, 0).unwrap(), BatchPlan::AckNow(_)));
        // A batch arriving before the one it follows (reordered) is a gap,
        // never applied: nothing is acknowledged past a hole.
        let mut s = RealtimeSink::new(&[(3, 0)], 100, 1000, 0);
        let b2 = Batch { seq: 2, partition: 3, after_lsn: 10, upto_lsn: 20, records: 2 };
        assert!(s.on_batch(&b2, 0).is_err());
    }

    #[test]
    fn window_bounds_bytes_in_flight_but_never_wedges() {
        let mut src = RealtimeSource::new(cfg(), &[(1, 0)], 0);
        assert!(src.can_send(10_000), "a single oversized batch may go when nothing is in flight");
        src.batch(1, 5, 1, 10_000, 0);
        assert!(!src.can_send(1));
        src.on_msg(&Msg::Ack(Ack { partition: 1, upto_lsn: 5, seq: 1 }), 1).unwrap();
        assert!(src.can_send(4000));
    }

    #[test]
    fn carrier_batches_free_the_window_without_moving_cursors() {
        let mut src = RealtimeSource::new(cfg(), &[(1, 10)], 0);
        let carrier = src.batch(1, 10, 4, 3000, 0);
        assert_eq!((carrier.after_lsn, carrier.upto_lsn), (10, 10));
        let mut snk = RealtimeSink::new(&[(1, 10)], 100, 1000, 0);
        assert_eq!(snk.on_batch(&carrier, 0).unwrap(), BatchPlan::Apply { skip_through: 10 });
        let ack = snk.batch_applied(&carrier);
        assert!(src.on_msg(&Msg::Ack(ack), 1).unwrap().is_empty(), "a carrier moves no cursor");
        assert_eq!(src.inflight_bytes(), 0, "but frees the window");
        let last = src.batch(1, 12, 1, 100, 1);
        assert_eq!(snk.on_batch(&last, 1).unwrap(), BatchPlan::Apply { skip_through: 10 });
        let ack = snk.batch_applied(&last);
        assert_eq!(src.on_msg(&Msg::Ack(ack), 2).unwrap(), vec![SourceEvent::Acked { partition: 1, upto_lsn: 12 }]);
    }

    #[test]
    fn dead_peer_closes_the_source() {
        let mut src = RealtimeSource::new(cfg(), &[(1, 0)], 0);
        assert_eq!(src.on_tick(100), vec![SourceEvent::SendHeartbeat]);
        assert!(matches!(src.on_tick(1000).as_slice(), [SourceEvent::Close(_)]));
    }
}
