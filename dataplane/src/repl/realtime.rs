//! Realtime replication over data connections.
//!
//! Source: every core streams its partitions to the sink core that owns the
//! same partitions (`p % sink_cores`), reading its log from the sink's
//! cursor. Records go in batches bounded by bytes and count; a byte window
//! of unacknowledged batches keeps a long link full; each cumulative ack
//! advances the durable cursor. Blocks never travel in their own
//! partition's stream: they go just ahead of the manifest that uses them.
//!
//! Sink: a listener per core takes the data connections of the partitions
//! it owns, applies each batch (newer wins) and acks once it is durable.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use glommio::net::TcpListener;
use storage::{Kind, LsnIter, RecordView, SendRecord, FLAG_REPLICATE};
use wire::cm::LiveAction;
use wire::realtime::{BatchPlan, RealtimeSink, RealtimeSource, SourceConfig, SourceEvent};
use wire::{DataHello, DataHelloReply, Msg, PURPOSE_FULLSYNC, PURPOSE_REALTIME};

use super::net::{self, Chunk, ConnError, FrameConn, ZEROS};
use super::{cursor_name, data_addr, now_ms, RtState};
use crate::config::Cascades;
use crate::model::{decode_routed, Manifest};
use crate::runtime::Core;

/// How often the supervisor reconciles connections with the configuration.
const SUPERVISE_MS: u64 = 200;
/// Tick of the sink's loop (heartbeats, dead peers).
const SINK_TICK_MS: u64 = 200;
/// Batches a sink connection applies ahead of their durability (and so of
/// their acks) before it stops reading: the disk writes one batch while the
/// next is applied. The source's byte window bounds the bytes behind them.
const MAX_UNSETTLED_BATCHES: usize = 16;

pub struct ConnHandle {
    pub stop: Rc<Cell<bool>>,
}

// ------------------------------------------------------------------ source

pub async fn supervise(c: Rc<Core>) {
    loop {
        if c.stopping.get() {
            for (_, h) in c.ext.repl.rt_conns.borrow().iter() {
                h.stop.set(true);
            }
            return;
        }
        let shared = c.node.repl.clone();
        let mut desired: BTreeSet<(u64, usize)> = BTreeSet::new();
        let peers = shared.peers.lock().unwrap().clone();
        for s in shared.sinks() {
            if s.realtime != RtState::Started {
                continue;
            }
            let Some(peer) = peers.get(&s.cluster_id) else { continue };
            let peer_cores = peer.hello.core_addrs.len().max(1);
            for p in c.parts.keys() {
                desired.insert((s.cluster_id, *p as usize % peer_cores));
            }
        }
        let running: Vec<(u64, usize)> = c.ext.repl.rt_conns.borrow().keys().copied().collect();
        for key in running {
            if !desired.contains(&key) {
                if let Some(h) = c.ext.repl.rt_conns.borrow_mut().remove(&key) {
                    h.stop.set(true);
                }
            }
        }
        for key in desired {
            if c.ext.repl.rt_conns.borrow().contains_key(&key) {
                continue;
            }
            let stop = Rc::new(Cell::new(false));
            c.ext.repl.rt_conns.borrow_mut().insert(key, ConnHandle { stop: stop.clone() });
            let c2 = c.clone();
            glommio::spawn_local(async move {
                run_source_conn(&c2, key.0, key.1, stop).await;
            })
            .detach();
        }
        let tick = futures_lite::future::or(glommio::timer::sleep(Duration::from_millis(SUPERVISE_MS)), c.ext.repl.kick.wait());
        futures_lite::future::or(tick, c.stopped()).await;
    }
}

/// Has every core's supervisor look at the sinks now rather than at its
/// next tick (`realtime start` begins streaming at once).
pub async fn kick_supervisors(c: &Rc<Core>) {
    c.on_all(|cc: Rc<Core>| {
        Box::pin(async move {
            cc.ext.repl.kick.kick();
        }) as crate::runtime::LocalFuture<()>
    })
    .await;
}

async fn run_source_conn(c: &Rc<Core>, sink: u64, target: usize, stop: Rc<Cell<bool>>) {
    let cfg = c.node.cfg.repl.clone();
    let stats = c.node.repl.stats_for(sink);
    let mut backoff = cfg.reconnect_min_ms;
    let mut first = true;
    while !stop.get() && !c.stopping.get() {
        if !first {
            stats.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        let started = now_ms();
        match stream_once(c, sink, target, &stop).await {
            Ok(()) => break,
            Err(e) => {
                let name = c.node.repl.sink(sink).map(|s| s.name).unwrap_or_default();
                log::warn!("core {}: realtime to sink {name:?} (its core {target}): {e}; reconnecting in {backoff} ms", c.id);
                *stats.realtime_last_error.lock().unwrap() = (now_ms(), format!("core {}: {e}", c.id));
            }
        }
        if now_ms() - started > 10_000 {
            backoff = cfg.reconnect_min_ms;
        }
        futures_lite::future::or(glommio::timer::sleep(Duration::from_millis(backoff)), c.stopped()).await;
        backoff = (backoff * 2).min(cfg.reconnect_max_ms);
    }
    c.ext.repl.oldest_unacked_ms.borrow_mut().remove(&sink);
}

/// A record going out in a batch.
enum Item {
    Local(RecordView),
    Remote(SendRecord),
    /// Read from disk by this core (a block that was not in memory).
    Read(storage::ColdRecord),
}

impl Item {
    fn bytes(&self) -> &[u8] {
        match self {
            Item::Local(v) => v.bytes(),
            Item::Remote(r) => r.bytes(),
            Item::Read(r) => r.bytes(),
        }
    }

    fn region(&self) -> Option<(std::os::unix::io::RawFd, u64)> {
        match self {
            Item::Local(v) => v.file_region(),
            Item::Remote(r) => r.file_region(),
            Item::Read(_) => None,
        }
    }

    /// The record as a frame piece: a file region when it is mapped.
    fn chunk(&self) -> Chunk<'_> {
        match self.region() {
            Some((fd, off)) => Chunk::File { data: self.bytes(), fd, off },
            None => Chunk::Mem(self.bytes()),
        }
    }
}

/// Block reads a source connection keeps in flight ahead of the batch
/// being built (each up to a block, 1 MiB by default).
const BLOCK_READS_AHEAD: usize = 4;

/// A manifest whose blocks are being sent ahead of it.
struct PendingManifest {
    view: RecordView,
    lsn: u64,
    /// Blocks not asked for yet, in order.
    blocks: VecDeque<Vec<u8>>,
    /// Blocks being read, in order (at most BLOCK_READS_AHEAD).
    reads: VecDeque<glommio::Task<Option<Item>>>,
    sent_blocks: u32,
}

impl PendingManifest {
    /// Keeps BLOCK_READS_AHEAD reads in flight, so the disk works on the
    /// next blocks while this one is sent.
    fn read_ahead(&mut self, c: &Rc<Core>) {
        while self.reads.len() < BLOCK_READS_AHEAD {
            let Some(key) = self.blocks.pop_front() else { break };
            let c = c.clone();
            self.reads.push_back(glommio::spawn_local(async move { fetch_block(&c, key).await }));
        }
    }

    fn done(&self) -> bool {
        self.blocks.is_empty() && self.reads.is_empty()
    }
}

struct SourceSide<'a> {
    c: &'a Rc<Core>,
    sink: u64,
    cursor: String,
    machine: RealtimeSource,
    iters: BTreeMap<u32, LsnIter>,
    pending: BTreeMap<u32, PendingManifest>,
    /// Per partition: (upto, records, bytes) of batches in flight.
    unacked: BTreeMap<u32, VecDeque<(u64, u64, u64)>>,
}

async fn stream_once(c: &Rc<Core>, sink: u64, target: usize, stop: &Rc<Cell<bool>>) -> Result<(), String> {
    let shared = c.node.repl.clone();
    let cfg = c.node.cfg.repl.clone();
    let stats = shared.stats_for(sink);
    let peer = shared.peers.lock().unwrap().get(&sink).cloned().ok_or("the sink's addresses are not known yet")?;
    let peer_cores = peer.hello.core_addrs.len().max(1);
    let parts: Vec<u32> = c.parts.keys().copied().filter(|p| *p as usize % peer_cores == target).collect();
    let cursor = cursor_name(sink);
    let mut starts = Vec::new();
    for &p in &parts {
        let cur = c.part(p).cursor(&cursor).ok_or_else(|| format!("partition {p} has no cursor for this sink (realtime not enabled?)"))?;
        starts.push((p, cur));
    }
    let addr = peer.hello.core_addrs[target].clone();
    let (stream, sa) = net::connect(&addr, Duration::from_secs(5)).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let t = super::tls::client(c, stream, &addr).await?;
    let mut conn = FrameConn::new(t, sa, c.node.cfg.repl.peer_timeout_ms);
    conn.agree_version(peer.version);
    let hello = Msg::DataHello(DataHello {
        cluster_id: c.node.cluster_id,
        cluster_name: c.node.cluster_name(),
        version: peer.version,
        source_core: c.id as u32,
        partitions: parts.clone(),
        cursors: starts.iter().map(|s| s.1).collect(),
        incarnation: shared.incarnation,
        purpose: PURPOSE_REALTIME,
    });
    conn.write_frame(&hello, &[]).await.map_err(|e| e.to_string())?;
    let reply = futures_lite::future::or(async { Some(conn.read_frame().await) }, async {
        glommio::timer::sleep(Duration::from_millis(super::cm::HELLO_TIMEOUT_MS)).await;
        None
    })
    .await
    .ok_or("no answer to the data hello")?;
    match reply.map_err(|e| e.to_string())? {
        (Msg::DataHelloReply(_), _) => {}
        (Msg::Error(e), _) => return Err(format!("sink refused the data connection: {}", e.message)),
        (m, _) => return Err(format!("unexpected {:?} in answer to the data hello", m.kind())),
    }
    stats.data_connections.fetch_add(1, Ordering::Relaxed);
    stats.data_modes.lock().unwrap().insert(conn.mode());
    let scfg = SourceConfig { window_bytes: cfg.window_bytes, heartbeat_ms: cfg.heartbeat_ms, peer_timeout_ms: cfg.peer_timeout_ms };
    let mut side = SourceSide {
        c,
        sink,
        cursor: cursor.clone(),
        machine: RealtimeSource::new(scfg, &starts, now_ms()),
        iters: starts
            .iter()
            .map(|&(p, cur)| {
                let mut it = c.part(p).iter_after(cur);
                // Blocks go out ahead of their manifests, never from here.
                it.pass_over(Kind::Block);
                (p, it)
            })
            .collect(),
        pending: BTreeMap::new(),
        unacked: BTreeMap::new(),
    };
    let mut result = side.run(&mut conn, &parts, stop).await;
    if result.is_err() {
        // A sink that refuses a batch sends an Error frame and closes; when
        // our write fails on the closed socket first, the sink's reason is
        // likely still waiting to be read, and it says more than
        // "Broken pipe".
        if let Some(why) = sink_reason(&mut conn).await {
            result = Err(why);
        }
    }
    stats.data_connections.fetch_sub(1, Ordering::Relaxed);
    c.ext.repl.oldest_unacked_ms.borrow_mut().remove(&sink);
    conn.close().await;
    result
}

/// How long a failed source connection looks for the sink's Error frame.
const SINK_REASON_WAIT_MS: u64 = 100;

/// The sink's Error frame among what is left to read, if any.
async fn sink_reason(conn: &mut FrameConn) -> Option<String> {
    let deadline = std::time::Instant::now() + Duration::from_millis(SINK_REASON_WAIT_MS);
    loop {
        let left = deadline.checked_duration_since(std::time::Instant::now())?;
        let r = futures_lite::future::or(async { Some(conn.read_frame().await) }, async {
            glommio::timer::sleep(left).await;
            None
        })
        .await?;
        match r {
            Ok((Msg::Error(e), _)) => return Some(format!("sink reported error {}: {}", e.code, e.message)),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

impl SourceSide<'_> {
    fn still_started(&self) -> bool {
        self.c.node.repl.sink(self.sink).map(|s| s.realtime == RtState::Started).unwrap_or(false)
    }

    fn handle_frame(&mut self, r: Result<(Msg, Vec<u8>), ConnError>) -> Result<(), String> {
        let (m, _) = r.map_err(|e| e.to_string())?;
        let evs = self.machine.on_msg(&m, now_ms()).map_err(|e| e.to_string())?;
        let stats = self.c.node.repl.stats_for(self.sink);
        for ev in evs {
            match ev {
                SourceEvent::Acked { partition, upto_lsn } => {
                    self.c.part(partition).advance_cursor(&self.cursor, upto_lsn).map_err(|e| e.to_string())?;
                    if let Some(q) = self.unacked.get_mut(&partition) {
                        while q.front().map(|x| x.0 <= upto_lsn).unwrap_or(false) {
                            let (_, recs, bytes) = q.pop_front().unwrap();
                            stats.records_acked.fetch_add(recs, Ordering::Relaxed);
                            stats.bytes_acked.fetch_add(bytes, Ordering::Relaxed);
                        }
                    }
                }
                SourceEvent::Close(why) => return Err(why),
                SourceEvent::SendHeartbeat => {}
            }
        }
        Ok(())
    }

    async fn run(&mut self, conn: &mut FrameConn, parts: &[u32], stop: &Rc<Cell<bool>>) -> Result<(), String> {
        let cfg = self.c.node.cfg.repl.clone();
        let mut rr = 0usize;
        loop {
            if stop.get() || self.c.stopping.get() || !self.still_started() {
                return Ok(());
            }
            // Take whatever the sink sent, without waiting.
            while let Some(r) = futures_lite::future::poll_once(conn.read_frame()).await {
                self.handle_frame(r)?;
            }
            for ev in self.machine.on_tick(now_ms()) {
                match ev {
                    SourceEvent::SendHeartbeat => conn.write_frame(&Msg::Heartbeat(wire::Heartbeat { now_ms: now_ms() }), &[]).await.map_err(|e| e.to_string())?,
                    SourceEvent::Close(why) => return Err(why),
                    SourceEvent::Acked { .. } => {}
                }
            }
            let mut sent_any = false;
            for i in 0..parts.len() {
                let p = parts[(rr + i) % parts.len()];
                if !self.machine.can_send(cfg.batch_max_bytes) {
                    break;
                }
                if self.send_batch(conn, p).await? {
                    sent_any = true;
                    // Acks that came in meanwhile free the window and move
                    // the cursors now, not after the whole round.
                    while let Some(r) = futures_lite::future::poll_once(conn.read_frame()).await {
                        self.handle_frame(r)?;
                    }
                }
            }
            rr = rr.wrapping_add(1);
            match self.machine.oldest_unacked_ms() {
                Some(t) => {
                    self.c.ext.repl.oldest_unacked_ms.borrow_mut().insert(self.sink, t);
                }
                None => {
                    self.c.ext.repl.oldest_unacked_ms.borrow_mut().remove(&self.sink);
                }
            }
            if !sent_any {
                // Idle or window full: wait for the sink or for new records.
                let wait = Duration::from_millis(cfg.batch_linger_ms.max(1));
                let r = futures_lite::future::or(async { Some(conn.read_frame().await) }, async {
                    glommio::timer::sleep(wait).await;
                    None
                })
                .await;
                if let Some(r) = r {
                    self.handle_frame(r)?;
                }
            }
        }
    }

    /// Builds and sends one batch of partition `p`. Returns whether one went.
    async fn send_batch(&mut self, conn: &mut FrameConn, p: u32) -> Result<bool, String> {
        let c = self.c;
        let cfg = &c.node.cfg.repl;
        let part = c.part(p).clone();
        let me = c.node.cluster_id;
        let after = self.machine.next_after(p).expect("partition of this connection");
        let mut items: Vec<Item> = Vec::new();
        let mut bytes = 0usize;
        let mut upto = after;
        let full = |items: &Vec<Item>, bytes: usize| items.len() >= cfg.batch_max_records || (bytes >= cfg.batch_max_bytes && !items.is_empty());
        'outer: loop {
            // Blocks of a manifest in progress, then the manifest.
            if let Some(pm) = self.pending.get_mut(&p) {
                pm.read_ahead(c);
                while !pm.done() {
                    if full(&items, bytes) {
                        break 'outer;
                    }
                    let read = pm.reads.pop_front().expect("reads are topped up while blocks remain");
                    let got = read.await;
                    pm.read_ahead(c);
                    match got {
                        Some(item) => {
                            bytes += storage::record::align_up(item.bytes().len());
                            items.push(item);
                            pm.sent_blocks += 1;
                        }
                        None if !part.is_current(&pm.view) && pm.sent_blocks == 0 => {
                            // Superseded (its blocks reclaimed) before any of
                            // them went out: the newer version follows.
                            self.pending.remove(&p);
                            continue 'outer;
                        }
                        None if !part.is_current(&pm.view) => {
                            // Superseded after some of its blocks went out:
                            // the manifest still goes, so that the sink can
                            // tell those blocks are garbage and reclaim them.
                        }
                        None => log::warn!(
                            "partition {p}: a block of a manifest at lsn {} is missing here; the sink will need proxy_get or fullsync for it",
                            pm.lsn
                        ),
                    }
                }
                let pm = self.pending.remove(&p).unwrap();
                bytes += pm.view.header.padded_len();
                upto = pm.lsn;
                items.push(Item::Local(pm.view));
            }
            if full(&items, bytes) {
                break;
            }
            // Only records already written to disk go out: a record this
            // process could still lose in a crash must not reach a sink.
            let written = part.written_lsn();
            // (a backlog on disk is read in big O_DIRECT spans, ahead of need)
            let Some(next) = self.iters.get_mut(&p).unwrap().next_read(&part, written, &c.cold).await else {
                // Caught up; the position may have moved past records the
                // iterator consumed without handing out (seals, pads).
                if self.pending.get(&p).is_none() {
                    upto = upto.max(self.iters[&p].position());
                }
                break;
            };
            let view = match next {
                Ok(v) => v,
                Err(e) => {
                    log::error!("partition {p}: cannot read the log for realtime: {e}");
                    upto = upto.max(self.iters[&p].position());
                    continue;
                }
            };
            let lsn = view.lsn();
            let h = view.header;
            let skip = h.kind == Kind::Block || h.flags & FLAG_REPLICATE == 0 || !part.is_current(&view) || {
                let routed = decode_routed(view.meta());
                routed.contains(&self.sink) || (cfg.cascades == Cascades::Never && routed.first() != Some(&me))
            };
            if skip {
                upto = lsn;
                continue;
            }
            // (names_blocks reads the archive in place: most manifests are
            // of inline objects and need no full decode)
            if h.kind == Kind::Manifest && cfg.realtime_blocks && Manifest::names_blocks(view.value()) {
                if let Ok(m) = Manifest::decode(view.value()) {
                    if !m.parts.is_empty() {
                        let blocks: VecDeque<Vec<u8>> = m.block_keys().into_iter().map(|(k, _)| k).collect();
                        self.pending.insert(p, PendingManifest { view, lsn, blocks, reads: VecDeque::new(), sent_blocks: 0 });
                        continue;
                    }
                }
            }
            bytes += h.padded_len();
            upto = lsn;
            items.push(Item::Local(view));
        }
        if items.is_empty() && upto == after {
            return Ok(false);
        }
        let records = items.len() as u32;
        let batch = self.machine.batch(p, upto, records, bytes, now_ms());
        let mut chunks: Vec<Chunk<'_>> = Vec::with_capacity(items.len() * 2);
        for it in &items {
            let n = it.bytes().len();
            chunks.push(it.chunk());
            let pad = storage::record::align_up(n) - n;
            if pad > 0 {
                chunks.push(Chunk::Mem(&ZEROS[..pad]));
            }
        }
        conn.write_frame_chunks(&Msg::Batch(batch), &chunks).await.map_err(|e| e.to_string())?;
        let stats = c.node.repl.stats_for(self.sink);
        stats.records_sent.fetch_add(records as u64, Ordering::Relaxed);
        stats.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
        stats.batches_sent.fetch_add(1, Ordering::Relaxed);
        self.unacked.entry(p).or_default().push_back((upto, records as u64, bytes as u64));
        Ok(true)
    }
}

/// Reads a block for sending, whichever core owns it: from memory or the
/// page cache when it is there, else read from disk by this core with
/// io_uring (no page faults on either executor). Checked against its crc.
async fn fetch_block(c: &Rc<Core>, key: Vec<u8>) -> Option<Item> {
    match crate::objects::read_block_local(c, key).await {
        Ok(Some(crate::objects::BlockData::Mapped(r))) => Some(Item::Remote(r)),
        Ok(Some(crate::objects::BlockData::Read(r))) => Some(Item::Read(r)),
        Ok(None) => None,
        Err(e) => {
            log::warn!("reading a block for realtime: {}", e.message);
            None
        }
    }
}

// -------------------------------------------------------------------- sink

pub async fn listen(c: Rc<Core>) {
    let addr = data_addr(c.node.cfg.repl.listen, c.id);
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            log::error!("core {}: cannot listen for replication data on {addr}: {e}", c.id);
            return;
        }
    };
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            c.stopped().await;
            None
        })
        .await;
        let Some(res) = accepted else { return };
        let Ok(stream) = res else { continue };
        net::tune(&stream);
        let c2 = c.clone();
        glommio::spawn_local(async move {
            let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            if let Err(e) = serve_data(c2, stream).await {
                log::warn!("data connection from {peer}: {e}");
            }
        })
        .detach();
    }
}

async fn serve_data(c: Rc<Core>, stream: glommio::net::TcpStream) -> Result<(), String> {
    let peer_addr = stream.peer_addr().map_err(|e| e.to_string())?;
    let t = super::tls::server(&c, stream).await.map_err(|e| format!("refused {peer_addr}: {e}"))?;
    let mut conn = FrameConn::new(t, peer_addr, c.node.cfg.repl.peer_timeout_ms);
    let first = futures_lite::future::or(async { Some(conn.read_frame().await) }, async {
        glommio::timer::sleep(Duration::from_millis(super::cm::HELLO_TIMEOUT_MS)).await;
        None
    })
    .await
    .ok_or("no data hello within the timeout")?;
    let (m, _) = first.map_err(|e| e.to_string())?;
    let Msg::DataHello(h) = m else {
        let _ = conn.write_frame(&Msg::error(wire::ERR_PROTOCOL, "expected a data hello"), &[]).await;
        return Err(format!("expected a data hello, got {:?}", m.kind()));
    };
    if !wire::PROTOCOL_VERSIONS.contains(&h.version) {
        let _ = conn.write_frame(&Msg::error(wire::ERR_VERSION, format!("protocol version {} is not spoken here", h.version)), &[]).await;
        return Err(format!("data hello with unknown version {}", h.version));
    }
    conn.agree_version(h.version);
    let known = c.node.repl.sources.lock().unwrap().get(&h.cluster_id).map(|s| s.connected).unwrap_or(false);
    if !known {
        let msg = format!(
            "cluster {:?} ({:016x}) has no control connection to cluster {:?}; data connections follow a `repl connect`",
            h.cluster_name,
            h.cluster_id,
            c.node.cluster_name()
        );
        let _ = conn.write_frame(&Msg::error(wire::ERR_PROTOCOL, msg.clone()), &[]).await;
        return Err(msg);
    }
    if h.purpose == PURPOSE_FULLSYNC {
        return super::fullsync::serve_sink(c, conn, h).await;
    }
    if h.purpose != PURPOSE_REALTIME || h.partitions.len() != h.cursors.len() {
        let _ = conn.write_frame(&Msg::error(wire::ERR_PROTOCOL, "malformed data hello"), &[]).await;
        return Err("malformed data hello".into());
    }
    for &p in &h.partitions {
        if p >= c.node.ring || c.node.owner(p) != c.id {
            let msg = format!(
                "partition {p} is not owned by core {} of cluster {:?} (ring {}, {} cores)",
                c.id,
                c.node.cluster_name(),
                c.node.ring,
                c.node.cores
            );
            let _ = conn.write_frame(&Msg::error(wire::ERR_PROTOCOL, msg.clone()), &[]).await;
            return Err(msg);
        }
    }
    let shared = c.node.repl.clone();
    let source = h.cluster_id;
    // What this sink remembers applying from the source only holds for the
    // same incarnation of the source (after a restart the source may reuse
    // LSNs it never wrote).
    let starts: Vec<(u32, u64)> = {
        let applied = shared.applied.lock().unwrap();
        h.partitions
            .iter()
            .zip(&h.cursors)
            .map(|(&p, &cur)| {
                let mem = match applied.get(&(source, p)) {
                    Some(&(inc, lsn)) if inc == h.incarnation => lsn,
                    _ => 0,
                };
                (p, cur.max(mem))
            })
            .collect()
    };
    conn.write_frame(&Msg::DataHelloReply(DataHelloReply { sink_core: c.id as u32 }), &[]).await.map_err(|e| e.to_string())?;
    if let Some(s) = shared.sources.lock().unwrap().get_mut(&source) {
        s.data_modes.insert(conn.mode());
    }
    let cfg = c.node.cfg.repl.clone();
    let mut machine = RealtimeSink::new(&starts, cfg.heartbeat_ms, cfg.peer_timeout_ms, now_ms());
    log::debug!("core {}: realtime from {:?} for partitions {:?}", c.id, h.cluster_name, h.partitions);
    // Batches applied (appended) but not yet acknowledged, oldest first. A
    // batch is acknowledged once it is durable and every batch before it
    // has been acknowledged, so acks leave in the order batches came in
    // (an ack is cumulative: it must never cover an earlier batch that is
    // not durable yet).
    let mut unsettled: VecDeque<Unacked> = VecDeque::new();
    loop {
        if c.stopping.get() {
            return Ok(());
        }
        let full = unsettled.len() >= MAX_UNSETTLED_BATCHES;
        let ev = {
            let front = async {
                match unsettled.front_mut() {
                    Some(u) => match u.settle.as_mut() {
                        Some(t) => SinkEvent::Settled(t.await),
                        None => SinkEvent::Settled(Ok(())),
                    },
                    None => futures_lite::future::pending().await,
                }
            };
            if full {
                // Take in nothing more until the oldest batch is durable.
                futures_lite::future::or(front, async {
                    glommio::timer::sleep(Duration::from_millis(SINK_TICK_MS)).await;
                    SinkEvent::Tick
                })
                .await
            } else {
                let frame = async { SinkEvent::Frame(conn.read_frame().await) };
                let tick = async {
                    glommio::timer::sleep(Duration::from_millis(SINK_TICK_MS)).await;
                    SinkEvent::Tick
                };
                // Acks first: they free the source's window.
                futures_lite::future::or(front, futures_lite::future::or(frame, tick)).await
            }
        };
        if full {
            machine.not_reading(now_ms());
        }
        match ev {
            SinkEvent::Tick => {}
            SinkEvent::Settled(res) => {
                let u = unsettled.pop_front().expect("a settled batch is at the front");
                if let Err(e) = res {
                    let (frame, msg) = super::apply_failure(&c, &format!("batch {} of partition {}", u.ack.seq, u.ack.partition), &e).await;
                    let _ = conn.write_frame(&frame, &[]).await;
                    return Err(msg);
                }
                {
                    let mut a = shared.applied.lock().unwrap();
                    let e = a.entry((source, u.ack.partition)).or_insert((h.incarnation, 0));
                    if e.0 != h.incarnation {
                        *e = (h.incarnation, 0);
                    }
                    e.1 = e.1.max(u.durable_lsn);
                }
                conn.write_frame(&Msg::Ack(u.ack), &[]).await.map_err(|e| e.to_string())?;
                machine.sent(now_ms());
            }
            SinkEvent::Frame(Err(ConnError::Closed)) => return Ok(()),
            SinkEvent::Frame(Err(e)) => return Err(format!("source {:?}: {e}", h.cluster_name)),
            SinkEvent::Frame(Ok((Msg::Batch(b), payload))) => {
                let plan = match machine.on_batch(&b, now_ms()) {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = conn.write_frame(&Msg::error(wire::ERR_PROTOCOL, e.to_string()), &[]).await;
                        return Err(format!("source {:?}: {e}", h.cluster_name));
                    }
                };
                let u = match plan {
                    // Already applied; it is durable once the batches before
                    // it are, so it waits its turn in the queue.
                    BatchPlan::AckNow(a) => Unacked { ack: a, durable_lsn: machine.applied(b.partition).unwrap_or(0), settle: None },
                    BatchPlan::Apply { skip_through } => {
                        let recs = match super::apply::parse_payload(&payload, b.records) {
                            Ok(r) => r,
                            Err(e) => {
                                let msg = format!("corrupt batch {} of partition {}: {e}", b.seq, b.partition);
                                let _ = conn.write_frame(&Msg::error(wire::ERR_PROTOCOL, msg.clone()), &[]).await;
                                return Err(msg);
                            }
                        };
                        let (applied, waits) = match super::apply::apply_records_unsettled(&c, source, Arc::new(payload), recs, Some(skip_through), false).await {
                            Ok(a) => a,
                            Err(e) => {
                                // Nothing of this batch is acknowledged; the
                                // source sends it again after reconnecting.
                                let (frame, msg) = super::apply_failure(&c, &format!("batch {} of partition {}", b.seq, b.partition), &e).await;
                                let _ = conn.write_frame(&frame, &[]).await;
                                return Err(msg);
                            }
                        };
                        if applied.records > 0 {
                            shared.last_replicated_apply_ms.store(now_ms(), Ordering::Relaxed);
                        }
                        if let Some(s) = shared.sources.lock().unwrap().get_mut(&source) {
                            s.records_applied += applied.records;
                            s.bytes_applied += applied.bytes;
                        }
                        let settle = if waits.is_empty() {
                            None
                        } else {
                            let c2 = c.clone();
                            Some(glommio::spawn_local(async move { super::apply::settle_local(&c2, &waits).await }))
                        };
                        let ack = machine.batch_applied(&b);
                        Unacked { ack, durable_lsn: machine.applied(b.partition).unwrap_or(0), settle }
                    }
                };
                unsettled.push_back(u);
            }
            SinkEvent::Frame(Ok((other, _))) => match machine.on_other(&other, now_ms()) {
                Ok(None) => {}
                Ok(Some(why)) => return Err(why),
                Err(e) => {
                    let _ = conn.write_frame(&Msg::error(wire::ERR_PROTOCOL, e.to_string()), &[]).await;
                    return Err(e.to_string());
                }
            },
        }
        match machine.on_tick(now_ms()) {
            LiveAction::Nothing => {}
            LiveAction::SendHeartbeat => conn.write_frame(&Msg::Heartbeat(wire::Heartbeat { now_ms: now_ms() }), &[]).await.map_err(|e| e.to_string())?,
            LiveAction::Dead(why) => return Err(format!("source {:?}: {why}", h.cluster_name)),
        }
    }
}

/// A batch a sink has applied and not yet acknowledged.
struct Unacked {
    ack: wire::Ack,
    /// What the sink may remember as applied from the source once the ack goes.
    durable_lsn: u64,
    /// Resolves when the batch's records are durable (None: nothing to wait for).
    settle: Option<glommio::Task<Result<(), super::apply::ApplyError>>>,
}

enum SinkEvent {
    Frame(Result<(Msg, Vec<u8>), ConnError>),
    Settled(Result<(), super::apply::ApplyError>),
    Tick,
}
