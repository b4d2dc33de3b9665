//! Fullsync: compares hash trees partition by partition and pushes what the
//! sink lacks or holds older (see `wire::fullsync` for the exchange).
//!
//! A coordinator per sink (core 0) schedules partitions under concurrency
//! limits (`max_fssource_node`, `max_fssource_cluster` here,
//! `max_fssink_node` on the sink), retries a failed partition alone with
//! backoff, and persists which partitions are done so that a restart
//! resumes where it stopped. Each run has two rounds over every partition:
//! the first pushes everything but manifests (blocks and buckets land
//! first), the second the manifests and tombstones, so a manifest never
//! lands before its blocks.
//!
//! Workers run in a low-share task queue: realtime goes first when both
//! compete for a core, and `fullsync_max_bytes_per_sec` caps the traffic.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use wire::fullsync::{FsSource, LocalEntry, PartStats, SrcStep};
use wire::{DataHello, DataHelloReply, Msg, PURPOSE_FULLSYNC};

use super::net::{self, Chunk, ConnError, FrameConn, ZEROS};
use super::{now_ms, SinkCfg};
use crate::admin::AdminResponse;
use crate::model::{parse_block_key, Manifest, NS_MANIFEST};
use crate::runtime::Core;

/// Push frames a partition worker keeps unacknowledged.
pub const MAX_PUSHES_IN_FLIGHT: u64 = 4;
/// Largest retry backoff for a failed partition.
const MAX_RETRY_BACKOFF_MS: u64 = 60_000;
/// Coordinator tick.
const TICK_MS: u64 = 250;
/// A run that failed or was stopped is not restarted by a schedule trigger
/// sooner than this after it started.
const FAILED_RUN_COOLDOWN_MS: u64 = 60_000;
/// Rounds of a run (1: all but manifests, 2: everything).
pub const ROUNDS: u8 = 2;

/// Persisted progress of a sink's fullsync (in repl.json).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Progress {
    pub running: bool,
    pub started_ms: u64,
    pub round: u8,
    pub done_partitions: Vec<u32>,
    pub last_completed_ms: u64,
    pub last_duration_ms: u64,
    pub last_error: String,
    #[serde(default)]
    pub totals: Totals,
    /// Number of completed runs.
    #[serde(default)]
    pub completed_runs: u64,
    /// Stopped by the operator: the next `start` resumes this run, and
    /// scheduled triggers leave it alone.
    #[serde(default)]
    pub paused: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Totals {
    pub segments_differing: u64,
    pub keys_compared: u64,
    pub objects_sent: u64,
    pub bytes_sent: u64,
}

#[derive(Default)]
pub struct CoreFs {}

/// State of one partition within the current run (core 0 memory).
#[derive(Clone, Debug, Default)]
struct PartState {
    state: &'static str,
    attempts: u32,
    retry_at_ms: u64,
    error: String,
    stats: PartStats,
    duration_ms: u64,
}

#[derive(Default)]
struct SinkRun {
    parts: BTreeMap<u32, PartState>,
    in_flight: BTreeSet<u32>,
    /// The control connection's state last tick (to see reconnections).
    was_connected: Option<bool>,
    start_requested: bool,
    failed_partitions: BTreeSet<u32>,
    /// Failed partition attempts that were retried, this run (both rounds).
    retries: u64,
    /// Partitions whose trees were identical in round 1 of this run: round 2
    /// has nothing to carry for them (writes since go by realtime and the
    /// next run), so it skips them. Each with the time its exchange ended:
    /// only exchanges over the current control connection count (a sink
    /// that restarted since, e.g. after its disk was repaired or damaged,
    /// gets round 2 in full). Emptied whenever a run starts or resumes.
    identical_in_round1: BTreeMap<u32, u64>,
}

thread_local! {
    /// Core 0: per sink, the current run's partition states.
    static RUNS: RefCell<BTreeMap<u64, SinkRun>> = Default::default();
    /// Core 0: wakes the coordinator early (a partition finished, a start
    /// was requested).
    static KICK: RefCell<(bool, Option<std::task::Waker>)> = const { RefCell::new((false, None)) };
}

fn kick() {
    KICK.with(|k| {
        let mut k = k.borrow_mut();
        k.0 = true;
        if let Some(w) = k.1.take() {
            w.wake();
        }
    });
}

async fn kicked() {
    std::future::poll_fn(|cx| {
        KICK.with(|k| {
            let mut k = k.borrow_mut();
            if std::mem::take(&mut k.0) {
                std::task::Poll::Ready(())
            } else {
                k.1 = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        })
    })
    .await
}

/// Fullsync byte budget of one sink on one core: a virtual clock that
/// advances by each send's cost at the configured rate.
#[derive(Default)]
pub struct RateLimit {
    /// Microsecond timestamp at which the budget is free again.
    next_free_us: AtomicU64,
}

impl RateLimit {
    /// Reserves `bytes` at `rate` bytes/s (0 = unlimited) and returns how
    /// long to wait before sending them.
    pub fn reserve(&self, bytes: u64, rate: u64) -> Duration {
        if rate == 0 {
            return Duration::ZERO;
        }
        let now = now_ms() * 1000;
        let cost = bytes.saturating_mul(1_000_000) / rate;
        let mut cur = self.next_free_us.load(Ordering::Relaxed);
        let start = loop {
            let start = cur.max(now);
            match self.next_free_us.compare_exchange_weak(cur, start + cost, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break start,
                Err(x) => cur = x,
            }
        };
        Duration::from_micros(start.saturating_sub(now))
    }
}

thread_local! {
    static RATES: RefCell<BTreeMap<u64, Arc<RateLimit>>> = Default::default();
}

/// One limiter per sink per core; the configured rate is split evenly
/// across the cores of the node.
fn rate_limit(sink: u64) -> Arc<RateLimit> {
    RATES.with(|r| r.borrow_mut().entry(sink).or_default().clone())
}

// ------------------------------------------------------------ coordinator

fn interval_ms(c: &Core, s: &SinkCfg) -> u64 {
    s.fullsync_interval_min.unwrap_or(c.node.cfg.repl.fullsync_interval_min) * 60_000
}

pub async fn coordinate(c: Rc<Core>) {
    loop {
        futures_lite::future::or(glommio::timer::sleep(Duration::from_millis(TICK_MS)), futures_lite::future::or(kicked(), c.stopped())).await;
        if c.stopping.get() {
            return;
        }
        let shared = c.node.repl.clone();
        let peers = shared.peers.lock().unwrap().clone();
        let sinks = shared.sinks();
        let cfg = c.node.cfg.repl.clone();
        // Drop runs of removed sinks.
        RUNS.with(|r| r.borrow_mut().retain(|id, _| sinks.iter().any(|s| s.cluster_id == *id)));
        let mut node_in_flight: usize = RUNS.with(|r| r.borrow().values().map(|s| s.in_flight.len()).sum());
        for s in sinks {
            let id = s.cluster_id;
            let connected = peers.get(&id).map(|p| p.connected).unwrap_or(false);
            let mut progress = s.fullsync.clone();
            let (reconnected, requested) = RUNS.with(|r| {
                let mut r = r.borrow_mut();
                let run = r.entry(id).or_default();
                let rec = connected && run.was_connected != Some(true);
                run.was_connected = Some(connected);
                (rec, std::mem::take(&mut run.start_requested))
            });
            if !progress.running {
                let now = now_ms();
                // Never two runs back to back: a failed or stopped run is
                // retried by schedule no sooner than this after it started.
                let cooled = now >= progress.started_ms + FAILED_RUN_COOLDOWN_MS;
                let since = progress.last_completed_ms.max(s.created_ms);
                let due_interval = s.fullsync_enabled && since > 0 && now >= since + interval_ms(&c, &s) && now >= progress.started_ms + interval_ms(&c, &s);
                let due_connect = s.fullsync_enabled && reconnected && cfg.fullsync_on_connect;
                let due_dirty = s.fullsync_enabled && s.dirty && connected && cooled;
                let automatic = !progress.paused && (due_interval || due_connect || due_dirty);
                if requested || automatic {
                    let why = if requested {
                        "requested"
                    } else if due_dirty {
                        "sink is dirty (realtime dropped records)"
                    } else if due_connect {
                        "connection (re)established"
                    } else {
                        "interval elapsed"
                    };
                    let resume = requested && progress.paused;
                    progress.running = true;
                    progress.paused = false;
                    progress.last_error.clear();
                    if resume {
                        log::info!("fullsync to sink {:?} resuming at round {} with {} partitions done", s.name, progress.round, progress.done_partitions.len());
                    } else {
                        log::info!("fullsync to sink {:?} starting: {why}", s.name);
                        progress.started_ms = now;
                        progress.round = 1;
                        progress.done_partitions.clear();
                        progress.totals = Totals::default();
                    }
                    RUNS.with(|r| {
                        let mut r = r.borrow_mut();
                        let run = r.get_mut(&id).unwrap();
                        run.parts.clear();
                        run.failed_partitions.clear();
                        run.retries = 0;
                        // Also on resume: what round 1 saw before a pause
                        // may no longer hold (the sink may have been
                        // restarted, repaired or damaged meanwhile), and
                        // round 2 is what catches it.
                        run.identical_in_round1.clear();
                    });
                    let p2 = progress.clone();
                    let _ = persist_soon(&c, id, move |x| x.fullsync = p2);
                } else {
                    continue;
                }
            }
            if !connected {
                continue;
            }
            // Schedule partitions.
            let ring = c.node.ring;
            let done: BTreeSet<u32> = progress.done_partitions.iter().copied().collect();
            let now = now_ms();
            let mut to_start = Vec::new();
            RUNS.with(|r| {
                let mut r = r.borrow_mut();
                let run = r.entry(id).or_default();
                for p in 0..ring {
                    if done.contains(&p) || run.in_flight.contains(&p) || run.failed_partitions.contains(&p) {
                        continue;
                    }
                    let st = run.parts.entry(p).or_insert_with(|| PartState { state: "pending", ..Default::default() });
                    // "done" before `done_partitions` says so: its result is
                    // being persisted (scheduling it again would repeat the
                    // whole exchange).
                    if st.retry_at_ms > now || st.state == "done" {
                        continue;
                    }
                    if node_in_flight >= cfg.max_fssource_node || run.in_flight.len() >= cfg.max_fssource_cluster {
                        break;
                    }
                    st.state = "running";
                    run.in_flight.insert(p);
                    node_in_flight += 1;
                    to_start.push(p);
                }
            });
            let round = progress.round.max(1);
            for p in to_start {
                let c2 = c.clone();
                glommio::spawn_local(async move {
                    let started = now_ms();
                    let owner = c2.node.owner(p);
                    let res = c2.call(owner, move |cc| Box::pin(async move { run_partition_low_priority(cc, id, p, round).await })).await;
                    partition_finished(&c2, id, p, round, res, now_ms() - started).await;
                    kick();
                })
                .detach();
            }
            // Round or run complete?
            let all_done = RUNS.with(|r| {
                let r = r.borrow();
                let run = &r[&id];
                run.in_flight.is_empty() && (0..ring).all(|p| done.contains(&p) || run.failed_partitions.contains(&p))
            });
            if all_done {
                let failed: Vec<u32> = RUNS.with(|r| r.borrow()[&id].failed_partitions.iter().copied().collect());
                let mut p2 = progress.clone();
                if !failed.is_empty() {
                    p2.running = false;
                    p2.last_error = format!("partitions {failed:?} failed after {} attempts; the next run retries them", cfg.fullsync_retry_max);
                    log::error!("fullsync to sink {:?} ended with failures: {}", s.name, p2.last_error);
                    let _ = persist(&c, id, move |x| {
                        if still_this_round(x, round) {
                            x.fullsync = p2
                        }
                    })
                    .await;
                } else if round < ROUNDS {
                    p2.round = round + 1;
                    // Partitions found identical in round 1 count as done in
                    // round 2 without another exchange.
                    let conn_since = peers.get(&id).map(|p| p.since_ms).unwrap_or(u64::MAX);
                    let same: Vec<u32> = RUNS.with(|r| {
                        let mut r = r.borrow_mut();
                        let run = r.get_mut(&id).unwrap();
                        run.parts.clear();
                        let same: Vec<u32> = run.identical_in_round1.iter().filter(|&(_, &at)| at >= conn_since).map(|(&p, _)| p).collect();
                        for &p in &same {
                            run.parts.insert(p, PartState { state: "done", ..PartState::default() });
                        }
                        same
                    });
                    p2.done_partitions = same;
                    let _ = persist_soon(&c, id, move |x| {
                        if still_this_round(x, round) {
                            x.fullsync = p2
                        }
                    });
                    // Round 2 is scheduled at once, not a tick later.
                    kick();
                } else {
                    p2.running = false;
                    p2.last_completed_ms = now_ms();
                    p2.last_duration_ms = p2.last_completed_ms - p2.started_ms;
                    p2.completed_runs += 1;
                    let started = p2.started_ms;
                    log::info!(
                        "fullsync to sink {:?} done in {} ms: {} segments differed, {} keys compared, {} objects / {} bytes sent",
                        s.name,
                        p2.last_duration_ms,
                        p2.totals.segments_differing,
                        p2.totals.keys_compared,
                        p2.totals.objects_sent,
                        p2.totals.bytes_sent
                    );
                    // In the background: every costly step of the run is
                    // on disk already, so a crash before this write lands
                    // only finishes the run again (round 2, all done).
                    let _ = persist_soon(&c, id, move |x| {
                        if !still_this_round(x, round) {
                            return;
                        }
                        x.fullsync = p2;
                        // Everything dropped before this run started is repaired now.
                        if x.dirty && x.dirty_since_ms <= started {
                            x.dirty = false;
                        }
                    });
                }
            }
        }
    }
}

/// Whether the run the coordinator looked at at the top of its tick is
/// still the one in the state: an operator's `fullsync stop` may have
/// paused it since, and writing the tick's copy would undo the stop.
fn still_this_round(x: &SinkCfg, round: u8) -> bool {
    x.fullsync.running && x.fullsync.round.max(1) == round
}

/// Changes the sink's state at once (in memory) and writes repl.json in the
/// background, without holding up the caller: for progress that is cheap
/// to redo if a crash comes before the write lands (a run start, a round
/// change, a partition found identical, the end of a run). Background
/// writes that pile up are group-committed by `Shared::save`.
fn persist_soon(c: &Core, id: u64, f: impl FnOnce(&mut SinkCfg)) -> Result<(), String> {
    c.node.repl.update_sink_unsaved(id, f)?;
    let shared = c.node.repl.clone();
    glommio::spawn_local(async move {
        if let Err(e) = glommio::executor().spawn_blocking(move || shared.save()).await {
            log::error!("fullsync progress not saved: {e}; after a restart the coordinator redoes what it lost");
        }
    })
    .detach();
    Ok(())
}

async fn persist(c: &Core, id: u64, f: impl FnOnce(&mut SinkCfg) + Send + 'static) -> Result<(), String> {
    let shared = c.node.repl.clone();
    glommio::executor().spawn_blocking(move || shared.update_sink(id, f)).await
}

async fn partition_finished(c: &Rc<Core>, sink: u64, p: u32, round: u8, res: Result<PartStats, FsError>, took: u64) {
    let cfg = c.node.cfg.repl.clone();
    let still_running = c.node.repl.sink(sink).map(|s| s.fullsync.running && s.fullsync.round == round).unwrap_or(false);
    let mut record: Option<PartStats> = None;
    RUNS.with(|r| {
        let mut r = r.borrow_mut();
        let Some(run) = r.get_mut(&sink) else { return };
        run.in_flight.remove(&p);
        let st = run.parts.entry(p).or_default();
        st.duration_ms = took;
        match &res {
            Ok(stats) => {
                log::info!(
                    "fullsync partition {p} (round {round}) done: {} segments differed, {} keys compared, {} objects / {} bytes sent",
                    stats.segments_differing,
                    stats.keys_compared,
                    stats.objects_sent,
                    stats.bytes_sent
                );
                st.state = "done";
                st.error.clear();
                st.stats = stats.clone();
                record = Some(stats.clone());
                if round == 1 && stats.segments_differing == 0 && still_running {
                    run.identical_in_round1.insert(p, now_ms());
                }
            }
            Err(FsError::Wait(why, ms)) => {
                st.state = "waiting";
                st.error = why.clone();
                st.retry_at_ms = now_ms() + ms;
                if *ms >= NO_SPACE_RETRY_MS {
                    log::warn!("fullsync partition {p} (round {round}) waits {ms} ms: {why}");
                }
            }
            Err(FsError::Failed(why)) => {
                st.attempts += 1;
                st.error = why.clone();
                run.retries += 1;
                let backoff = (1000u64 << st.attempts.min(16)).min(MAX_RETRY_BACKOFF_MS);
                st.retry_at_ms = now_ms() + backoff;
                if st.attempts >= cfg.fullsync_retry_max {
                    st.state = "failed";
                    run.failed_partitions.insert(p);
                } else {
                    st.state = "retrying";
                }
                log::warn!("fullsync partition {p} (round {round}) failed (attempt {}): {why}", st.attempts);
            }
        }
    });
    if let (Some(stats), true) = (record, still_running) {
        // An identical partition is cheap to redo after a crash: written in
        // the background. One that found differences is written before the
        // coordinator goes on.
        let cheap = stats.segments_differing == 0 && stats.objects_sent == 0;
        let done = move |x: &mut SinkCfg| {
            if x.fullsync.running && x.fullsync.round == round && !x.fullsync.done_partitions.contains(&p) {
                x.fullsync.done_partitions.push(p);
                x.fullsync.totals.segments_differing += stats.segments_differing as u64;
                x.fullsync.totals.keys_compared += stats.keys_compared;
                x.fullsync.totals.objects_sent += stats.objects_sent;
                x.fullsync.totals.bytes_sent += stats.bytes_sent;
            }
        };
        let saved = if cheap { persist_soon(c, sink, done) } else { persist(c, sink, done).await };
        if let Err(e) = saved {
            // The completion is in memory (the run goes on without this
            // partition) and reaches repl.json with the next save that
            // works; a restart before then runs the partition again.
            log::warn!("fullsync partition {p} (round {round}): done, but its completion could not be saved ({e}); a restart before the next successful save runs it again");
            RUNS.with(|r| {
                if let Some(st) = r.borrow_mut().get_mut(&sink).and_then(|run| run.parts.get_mut(&p)) {
                    st.error = format!("done, but not saved yet: {e}");
                }
            });
        }
    }
}

// ---------------------------------------------------------- source worker

#[derive(Debug)]
enum FsError {
    /// The sink cannot take the partition now (at its concurrency limit, or
    /// out of disk space): try again after this many ms, no attempt counted.
    Wait(String, u64),
    Failed(String),
}

/// Retry delay after the sink said it is busy.
const BUSY_RETRY_MS: u64 = 1000;
/// Retry delay after the sink said it is out of disk space (it keeps
/// waiting, like realtime, until space returns).
const NO_SPACE_RETRY_MS: u64 = 10_000;

/// Reads the next frame; an error frame saying the sink is out of disk
/// space becomes a wait rather than a failed attempt.
async fn next_frame(conn: &mut FrameConn, ms: u64) -> Result<Msg, FsError> {
    let (m, _) = read_timeout(conn, ms).await?;
    match m {
        Msg::Error(e) if e.code == wire::ERR_NO_SPACE => Err(FsError::Wait(format!("sink reported: {}", e.message), NO_SPACE_RETRY_MS)),
        m => Ok(m),
    }
}

impl From<String> for FsError {
    fn from(s: String) -> FsError {
        FsError::Failed(s)
    }
}

thread_local! {
    static LOW_QUEUE: RefCell<Option<glommio::TaskQueueHandle>> = const { RefCell::new(None) };
}

/// Runs a partition worker in this core's low-priority task queue.
async fn run_partition_low_priority(c: Rc<Core>, sink: u64, p: u32, round: u8) -> Result<PartStats, FsError> {
    let tq = LOW_QUEUE.with(|q| {
        *q.borrow_mut().get_or_insert_with(|| glommio::executor().create_task_queue(glommio::Shares::Static(100), glommio::Latency::NotImportant, "fullsync"))
    });
    match glommio::spawn_local_into(run_partition(c.clone(), sink, p, round), tq) {
        Ok(t) => t.await,
        Err(_) => run_partition(c, sink, p, round).await,
    }
}

async fn read_timeout(conn: &mut FrameConn, ms: u64) -> Result<(Msg, Vec<u8>), String> {
    futures_lite::future::or(async { conn.read_frame().await.map_err(|e| e.to_string()) }, async {
        glommio::timer::sleep(Duration::from_millis(ms)).await;
        Err(format!("the sink sent nothing for {ms} ms"))
    })
    .await
}

async fn run_partition(c: Rc<Core>, sink: u64, p: u32, round: u8) -> Result<PartStats, FsError> {
    let shared = c.node.repl.clone();
    let cfg = c.node.cfg.repl.clone();
    let peer = shared.peers.lock().unwrap().get(&sink).cloned().ok_or_else(|| "the sink is not connected".to_string())?;
    let peer_cores = peer.hello.core_addrs.len().max(1);
    let addr = peer.hello.core_addrs[p as usize % peer_cores].clone();
    let (stream, sa) = net::connect(&addr, Duration::from_secs(5)).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let t = super::tls::client(&c, stream, &addr).await?;
    let mut conn = FrameConn::new(t, sa, c.node.cfg.repl.peer_timeout_ms);
    conn.agree_version(peer.version);
    let hello = Msg::DataHello(DataHello {
        cluster_id: c.node.cluster_id,
        cluster_name: c.node.cluster_name(),
        version: peer.version,
        source_core: c.id as u32,
        partitions: vec![p],
        cursors: vec![0],
        incarnation: shared.incarnation,
        purpose: PURPOSE_FULLSYNC,
    });
    conn.write_frame(&hello, &[]).await.map_err(|e| e.to_string())?;
    match read_timeout(&mut conn, cfg.peer_timeout_ms).await? {
        (Msg::DataHelloReply(_), _) => {}
        (Msg::Error(e), _) if e.code == wire::ERR_BUSY => return Err(FsError::Wait(e.message, BUSY_RETRY_MS)),
        (Msg::Error(e), _) if e.code == wire::ERR_NO_SPACE => return Err(FsError::Wait(e.message, NO_SPACE_RETRY_MS)),
        (Msg::Error(e), _) => return Err(FsError::Failed(format!("sink refused: {}", e.message))),
        (m, _) => return Err(FsError::Failed(format!("unexpected {:?} in answer to the data hello", m.kind()))),
    }
    shared.stats_for(sink).data_modes.lock().unwrap().insert(conn.mode());
    let part = c.part(p).clone();
    let tree_segments = part.tree_segments();
    let (mut machine, start) = FsSource::start(p, tree_segments, &part.tree_hashes());
    conn.write_frame(&start, &[]).await.map_err(|e| e.to_string())?;
    let lh = || part.tree_hashes();
    let ls = |s: u32| tree_entries(&part, s);
    let limiter = rate_limit(sink);
    // The per-sink cap is split evenly across this node's cores (each has
    // its own budget); a tiny cap still limits (at least 1 byte/s a core).
    let rate = match cfg.fullsync_max_bytes_per_sec {
        0 => 0,
        r => (r / c.node.cores.max(1) as u64).max(1),
    };
    // Steps produced by frames, handled in order. Frames read while waiting
    // for push acks may produce more steps (key lists of later segments);
    // they join the queue.
    let mut steps: std::collections::VecDeque<SrcStep> = std::collections::VecDeque::new();
    loop {
        let Some(step) = steps.pop_front() else {
            let m = next_frame(&mut conn, cfg.peer_timeout_ms).await?;
            if !matches!(m, Msg::Heartbeat(_)) {
                steps.extend(machine.on_msg(m, &lh, &ls).map_err(|e| e.to_string())?);
            }
            continue;
        };
        match step {
            SrcStep::Send(msg) => conn.write_frame(&msg, &[]).await.map_err(|e| e.to_string())?,
            SrcStep::Push { keys, .. } => {
                // Before the last round, manifests that name blocks wait:
                // their blocks live on other partitions, which may not have
                // had this round yet. Inline objects and tombstones stand
                // alone and go now.
                let hold_back = round < ROUNDS;
                push_keys(&c, &mut conn, &mut machine, &part, &keys, hold_back, &limiter, rate, &lh, &ls, &mut steps).await?;
            }
            SrcStep::AllListed => {
                // Every push acknowledged, then finish.
                while machine.pushes_in_flight() > 0 {
                    let m = next_frame(&mut conn, cfg.peer_timeout_ms).await?;
                    if !matches!(m, Msg::Heartbeat(_)) {
                        steps.extend(machine.on_msg(m, &lh, &ls).map_err(|e| e.to_string())?);
                    }
                }
                conn.write_frame(&machine.done_msg(), &[]).await.map_err(|e| e.to_string())?;
            }
            SrcStep::Finished(stats) => {
                conn.close().await;
                return Ok(stats);
            }
        }
    }
}

/// A partition's keys of one tree segment as both fullsync machines compare
/// them: with their sub-bucket and tree contribution.
fn tree_entries(part: &storage::Partition, seg: u32) -> Vec<LocalEntry> {
    let segments = part.tree_segments();
    part.tree_segment_entries(seg)
        .into_iter()
        .map(|e| {
            let h = storage::key_hash(&e.key);
            LocalEntry {
                sub: storage::tree_sub_bucket(h, segments, wire::FS_SUB_BITS),
                contrib: storage::tree_contribution(h, e.version, e.vhash),
                key: e.key,
                hlc: e.version.hlc,
                cluster: e.version.cluster,
                vhash: e.vhash,
            }
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn push_keys(
    c: &Rc<Core>,
    conn: &mut FrameConn,
    machine: &mut FsSource,
    part: &storage::Partition,
    keys: &[Vec<u8>],
    hold_back_manifests_with_blocks: bool,
    limiter: &RateLimit,
    rate: u64,
    lh: &dyn Fn() -> Vec<u64>,
    ls: &dyn Fn(u32) -> Vec<LocalEntry>,
    steps: &mut std::collections::VecDeque<SrcStep>,
) -> Result<(), FsError> {
    let cfg = c.node.cfg.repl.clone();
    // Blocks of uploads that lost (to a newer write or a delete) are
    // garbage waiting for their reclaim leeway: not worth a byte of link.
    let mut uploads: BTreeMap<crate::objects::UploadId, storage::Version> = BTreeMap::new();
    for k in keys {
        if let (Some((b, key, uid, _)), Some(e)) = (parse_block_key(k), part.get(k)) {
            let v = uploads.entry((b, key, uid)).or_insert(e.version);
            *v = (*v).max(e.version);
        }
    }
    let lost = if uploads.is_empty() {
        Default::default()
    } else {
        crate::objects::superseded_uploads(c, uploads.into_iter().collect()).await
    };
    let is_lost = |k: &[u8]| !lost.is_empty() && parse_block_key(k).is_some_and(|(b, key, uid, _)| lost.contains(&(b, key, uid)));
    let mut i = 0;
    while i < keys.len() {
        // Gather one push frame's worth of records.
        let mut views = Vec::new();
        let mut bytes = 0usize;
        while i < keys.len() && (views.is_empty() || (bytes < cfg.batch_max_bytes && views.len() < cfg.batch_max_records)) {
            if is_lost(&keys[i]) {
                i += 1;
                continue;
            }
            if let Ok(Some(v)) = part.read(&keys[i], true) {
                let held_back = hold_back_manifests_with_blocks && v.header.kind == storage::Kind::Manifest && keys[i].first() == Some(&NS_MANIFEST) && Manifest::names_blocks(v.value());
                if !held_back && !v.header.kind.is_internal() && v.header.flags & storage::FLAG_REPLICATE != 0 {
                    bytes += v.header.padded_len();
                    views.push(v);
                }
            }
            i += 1;
        }
        if views.is_empty() {
            continue;
        }
        while machine.pushes_in_flight() >= MAX_PUSHES_IN_FLIGHT {
            let m = next_frame(conn, cfg.peer_timeout_ms).await?;
            if !matches!(m, Msg::Heartbeat(_)) {
                steps.extend(machine.on_msg(m, lh, ls).map_err(|e| e.to_string())?);
            }
        }
        // Throttled: wait, with heartbeats so that the sink does not take
        // the pause for a dead peer.
        let mut wait = limiter.reserve(bytes as u64, rate);
        let beat = Duration::from_millis(cfg.heartbeat_ms);
        while !wait.is_zero() {
            let step = wait.min(beat);
            glommio::timer::sleep(step).await;
            wait -= step;
            if !wait.is_zero() {
                conn.write_frame(&Msg::Heartbeat(wire::Heartbeat { now_ms: now_ms() }), &[]).await.map_err(|e| e.to_string())?;
            }
        }
        let push = machine.push(views.len() as u32, bytes as u64);
        let mut chunks: Vec<Chunk<'_>> = Vec::with_capacity(views.len() * 2);
        for v in &views {
            let b = v.bytes();
            chunks.push(match v.file_region() {
                Some((fd, off)) => Chunk::File { data: b, fd, off },
                None => Chunk::Mem(b),
            });
            let pad = v.header.padded_len() - b.len();
            if pad > 0 {
                chunks.push(Chunk::Mem(&ZEROS[..pad]));
            }
        }
        conn.write_frame_chunks(&Msg::FsPush(push), &chunks).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

// -------------------------------------------------------------- sink side

/// Partition exchanges this node serves as a sink right now.
static SINK_ACTIVE: AtomicU64 = AtomicU64::new(0);

pub async fn serve_sink(c: Rc<Core>, mut conn: FrameConn, h: DataHello) -> Result<(), String> {
    let max = c.node.cfg.repl.max_fssink_node as u64;
    if SINK_ACTIVE.fetch_add(1, Ordering::SeqCst) >= max {
        SINK_ACTIVE.fetch_sub(1, Ordering::SeqCst);
        let _ = conn
            .write_frame(&Msg::error(wire::ERR_BUSY, format!("cluster {:?} is at max_fssink_node = {max} fullsync partitions; retry shortly", c.node.cluster_name())), &[])
            .await;
        return Ok(());
    }
    let r = serve_sink_inner(&c, &mut conn, &h).await;
    SINK_ACTIVE.fetch_sub(1, Ordering::SeqCst);
    conn.close().await;
    r
}

async fn serve_sink_inner(c: &Rc<Core>, conn: &mut FrameConn, h: &DataHello) -> Result<(), String> {
    let [p] = h.partitions[..] else {
        return Err("a fullsync connection carries exactly one partition".into());
    };
    if p >= c.node.ring || c.node.owner(p) != c.id {
        let msg = format!("partition {p} is not owned by core {} of cluster {:?} (ring {}, {} cores)", c.id, c.node.cluster_name(), c.node.ring, c.node.cores);
        let _ = conn.write_frame(&Msg::error(wire::ERR_PROTOCOL, msg.clone()), &[]).await;
        return Err(msg);
    }
    conn.write_frame(&Msg::DataHelloReply(DataHelloReply { sink_core: c.id as u32 }), &[]).await.map_err(|e| e.to_string())?;
    if let Some(s) = c.node.repl.sources.lock().unwrap().get_mut(&h.cluster_id) {
        s.data_modes.insert(conn.mode());
    }
    let part = c.part(p).clone();
    let timeout = c.node.cfg.repl.peer_timeout_ms * 3;
    loop {
        let (m, payload) = futures_lite::future::or(async { Some(conn.read_frame().await) }, async {
            glommio::timer::sleep(Duration::from_millis(timeout)).await;
            None
        })
        .await
        .ok_or_else(|| format!("fullsync of partition {p}: the source sent nothing for {timeout} ms"))?
        .map_err(|e| match e {
            ConnError::Closed => format!("fullsync of partition {p}: the source closed the connection"),
            e => e.to_string(),
        })?;
        match m {
            Msg::FsStart(s) => {
                if s.partition != p || s.tree_segments != part.tree_segments() {
                    let msg = format!("fullsync start for partition {} with {} tree segments; this side has partition {p} with {}", s.partition, s.tree_segments, part.tree_segments());
                    let _ = conn.write_frame(&Msg::error(wire::ERR_TREE, msg.clone()), &[]).await;
                    return Err(msg);
                }
                let hashes = part.tree_hashes();
                let answer = if wire::fullsync::tree_digest(&hashes) == s.digest {
                    wire::FsSegmentHashes { partition: p, level: 0, hashes: Vec::new() }
                } else {
                    wire::fullsync::tree_top(p, &hashes)
                };
                conn.write_frame(&Msg::FsSegmentHashes(answer), &[]).await.map_err(|e| e.to_string())?;
            }
            Msg::FsTreeAsk(a) if a.partition == p => {
                let answer = match wire::fullsync::tree_answer(&part.tree_hashes(), &a) {
                    Ok(x) => x,
                    Err(msg) => {
                        let _ = conn.write_frame(&Msg::error(wire::ERR_PROTOCOL, msg.clone()), &[]).await;
                        return Err(msg);
                    }
                };
                conn.write_frame(&Msg::FsSegmentHashes(answer), &[]).await.map_err(|e| e.to_string())?;
            }
            Msg::FsDiff(d) if d.partition == p => {
                if let Err(msg) = wire::fullsync::check_diff(&d, part.tree_segments()) {
                    let _ = conn.write_frame(&Msg::error(wire::ERR_PROTOCOL, msg.clone()), &[]).await;
                    return Err(msg);
                }
                let with_subs = d.segments.iter().enumerate().map(|(i, &seg)| (seg, Some(&d.sub_hashes[i * wire::FS_SUB_BUCKETS..(i + 1) * wire::FS_SUB_BUCKETS])));
                for (seg, theirs) in with_subs.chain(d.whole_segments.iter().map(|&seg| (seg, None))) {
                    for list in wire::fullsync::sink_key_lists(p, seg, theirs, tree_entries(&part, seg)) {
                        conn.write_frame(&Msg::FsKeyList(list), &[]).await.map_err(|e| e.to_string())?;
                    }
                }
            }
            Msg::FsPush(push) if push.partition == p => {
                let recs = match super::apply::parse_payload(&payload, push.records) {
                    Ok(r) => r,
                    Err(e) => {
                        let msg = format!("corrupt fullsync push {} of partition {p}: {e}", push.seq);
                        let _ = conn.write_frame(&Msg::error(wire::ERR_PROTOCOL, msg.clone()), &[]).await;
                        return Err(msg);
                    }
                };
                c.node.repl.last_replicated_apply_ms.store(now_ms(), Ordering::Relaxed);
                if let Err(e) = super::apply::apply_records(c, h.cluster_id, Arc::new(payload), recs, None, true).await {
                    // Not acknowledged: the partition is retried by the source.
                    let (frame, msg) = super::apply_failure(c, &format!("fullsync push {} of partition {p}", push.seq), &e).await;
                    let _ = conn.write_frame(&frame, &[]).await;
                    return Err(msg);
                }
                conn.write_frame(&Msg::FsPushAck(wire::FsPushAck { partition: p, seq: push.seq }), &[]).await.map_err(|e| e.to_string())?;
            }
            Msg::FsDone(d) if d.partition == p => {
                // Every push was applied and settled before its ack.
                conn.write_frame(&Msg::FsDone(d), &[]).await.map_err(|e| e.to_string())?;
                return Ok(());
            }
            Msg::Heartbeat(_) => {}
            Msg::Error(e) => return Err(format!("source reported: {}", e.message)),
            other => {
                let msg = format!("unexpected {:?} frame in a fullsync of partition {p}", other.kind());
                let _ = conn.write_frame(&Msg::error(wire::ERR_PROTOCOL, msg.clone()), &[]).await;
                return Err(msg);
            }
        }
    }
}

// ------------------------------------------------------------------ admin

pub async fn admin(c: &Rc<Core>, method: &str, path: &str, body: &Value) -> Result<AdminResponse, AdminResponse> {
    if method == "GET" && path == "/repl/fullsync/status" {
        let sinks: Vec<Value> = c.node.repl.sinks().iter().map(|s| sink_status(c, s)).collect();
        return Ok(AdminResponse::json(200, json!({"sinks": sinks})));
    }
    let name = body.get("sink").and_then(|v| v.as_str()).ok_or_else(|| AdminResponse::error(400, "missing \"sink\" in the request body"))?;
    let s = c.node.repl.find_sink(name).ok_or_else(|| AdminResponse::error(404, format!("no sink named {name:?}")))?;
    let id = s.cluster_id;
    let verb = path.strip_prefix("/repl/fullsync/").unwrap_or("");
    match (method, verb) {
        ("POST", "enable") => persist(c, id, |x| x.fullsync_enabled = true).await.map_err(|e| AdminResponse::error(500, e))?,
        ("POST", "disable") => persist(c, id, |x| x.fullsync_enabled = false).await.map_err(|e| AdminResponse::error(500, e))?,
        ("POST", "start") => {
            if s.fullsync.running {
                return Ok(AdminResponse::json(200, json!({"sink": s.name, "fullsync": "already running", "completed_runs": s.fullsync.completed_runs})));
            }
            RUNS.with(|r| r.borrow_mut().entry(id).or_default().start_requested = true);
            kick();
            let mode = if s.fullsync.paused { "resuming" } else { "starting" };
            return Ok(AdminResponse::json(200, json!({"sink": s.name, "fullsync": mode, "completed_runs": s.fullsync.completed_runs})));
        }
        ("POST", "stop") => {
            persist(c, id, |x| {
                if x.fullsync.running {
                    x.fullsync.running = false;
                    x.fullsync.paused = true;
                    x.fullsync.last_error = "stopped by the operator; `fullsync start` resumes it".into();
                }
            })
            .await
            .map_err(|e| AdminResponse::error(500, e))?;
        }
        _ => return Err(AdminResponse::error(404, format!("no admin endpoint {method} {path}; fullsync commands are enable, disable, start, stop, status"))),
    }
    Ok(AdminResponse::json(200, json!({"sink": s.name, "fullsync": verb})))
}

pub fn sink_status(c: &Rc<Core>, s: &SinkCfg) -> Value {
    let p = &s.fullsync;
    let ring = c.node.ring as u64;
    let (parts, in_flight, retries): (Vec<Value>, usize, u64) = RUNS.with(|r| {
        let r = r.borrow();
        match r.get(&s.cluster_id) {
            Some(run) => (
                run.parts
                    .iter()
                    .filter(|(_, st)| st.state != "pending")
                    .map(|(pn, st)| {
                        json!({"partition": pn, "state": st.state, "attempts": st.attempts, "error": st.error,
                           "segments_differing": st.stats.segments_differing, "keys_compared": st.stats.keys_compared,
                           "objects_sent": st.stats.objects_sent, "bytes_sent": st.stats.bytes_sent, "duration_ms": st.duration_ms})
                    })
                    .collect(),
                run.in_flight.len(),
                run.retries,
            ),
            None => (Vec::new(), 0, 0),
        }
    });
    let unfinished = p.running || p.paused || !p.last_error.is_empty();
    let done = if unfinished {
        (p.round.max(1) as u64 - 1) * ring + p.done_partitions.len() as u64
    } else if p.last_completed_ms > 0 {
        ring * ROUNDS as u64
    } else {
        0
    };
    let since = p.last_completed_ms.max(s.created_ms);
    let next = if s.fullsync_enabled && since > 0 { Some((since + interval_ms(c, s)).max(p.started_ms + interval_ms(c, s))) } else { None };
    json!({
        "sink": s.name,
        "enabled": s.fullsync_enabled,
        "state": if p.running { "running" } else if p.paused { "paused" } else { "idle" },
        "round": p.round,
        "partitions_total": ring * ROUNDS as u64,
        "partitions_done": done,
        "in_flight": in_flight,
        "partition_retries": retries,
        "segments_differing": p.totals.segments_differing,
        "keys_compared": p.totals.keys_compared,
        "objects_sent": p.totals.objects_sent,
        "bytes_sent": p.totals.bytes_sent,
        "started_ms": p.started_ms,
        "elapsed_ms": if p.running { now_ms().saturating_sub(p.started_ms) } else { p.last_duration_ms },
        "last_completed_ms": p.last_completed_ms,
        "last_duration_ms": p.last_duration_ms,
        "completed_runs": p.completed_runs,
        "next_run_ms": next,
        "last_error": p.last_error,
        "dirty": s.dirty,
        "partitions": parts,
    })
}

pub fn render_metrics(_c: &Rc<Core>, sinks: &[Value], p: &mut crate::metrics::Prom) {
    let fields: [(&str, &str, &str, &str); 8] = [
        ("dataplane_fullsync_running", "gauge", "1 while a fullsync to the sink runs.", "running"),
        ("dataplane_fullsync_partitions_done", "gauge", "Partition exchanges done in the current or last run (two rounds per partition).", "partitions_done"),
        ("dataplane_fullsync_segments_differing", "gauge", "Tree segments that differed in the current or last run.", "segments_differing"),
        ("dataplane_fullsync_keys_compared", "gauge", "Keys compared in the current or last run.", "keys_compared"),
        ("dataplane_fullsync_objects_sent", "gauge", "Records pushed in the current or last run.", "objects_sent"),
        ("dataplane_fullsync_bytes_sent", "gauge", "Record bytes pushed in the current or last run.", "bytes_sent"),
        ("dataplane_fullsync_last_completed_timestamp_seconds", "gauge", "When the last fullsync to the sink completed.", "last_completed_ms"),
        ("dataplane_fullsync_last_duration_seconds", "gauge", "How long the last completed fullsync took.", "last_duration_ms"),
    ];
    for (name, kind, help, field) in fields {
        p.header(name, kind, help);
        for s in sinks {
            let f = &s["fullsync"];
            let v = match field {
                "running" => (f["state"].as_str() == Some("running")) as u8 as f64,
                "last_completed_ms" | "last_duration_ms" => f[field].as_f64().unwrap_or(0.0) / 1000.0,
                _ => f[field].as_f64().unwrap_or(0.0),
            };
            p.sample(name, &[("sink", s["sink"].as_str().unwrap_or(""))], v);
        }
    }
}
