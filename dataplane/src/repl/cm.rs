//! Cluster manager connections (core 0).
//!
//! Sink side: `listen` accepts a source's control connection, answers its
//! hello (refusing mismatched rings with a message naming both sizes), then
//! keeps it for heartbeats and proxy_get requests sent back to the source.
//!
//! Source side: `supervise` keeps one control connection per configured
//! sink, reconnecting with backoff, and serves the sink's proxy_get
//! requests when the operator enabled them.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::{Poll, Waker};
use std::time::Duration;

use glommio::net::TcpListener;
use wire::cm::{answer_hello, ClientState, CmClient, LiveAction, Liveness};
use wire::{Msg, ProxyGetReply, ROLE_SINK, ROLE_SOURCE};

use super::net::{self, FrameConn};
use super::{local_hello, now_ms, PeerInfo, SourceInfo};
use crate::runtime::Core;

/// How long a peer has to send its hello.
pub const HELLO_TIMEOUT_MS: u64 = 10_000;
/// Control loop tick.
const TICK_MS: u64 = 200;

/// Frames queued for a connection by other tasks.
#[derive(Default)]
pub struct Outbox {
    q: RefCell<VecDeque<(Msg, Vec<u8>)>>,
    waker: RefCell<Option<Waker>>,
    closed: Cell<bool>,
}

impl Outbox {
    pub fn push(&self, m: Msg, payload: Vec<u8>) -> Result<(), String> {
        if self.closed.get() {
            return Err("connection closed".into());
        }
        self.q.borrow_mut().push_back((m, payload));
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
        Ok(())
    }

    async fn ready(&self) {
        std::future::poll_fn(|cx| {
            if !self.q.borrow().is_empty() {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    fn pop(&self) -> Option<(Msg, Vec<u8>)> {
        self.q.borrow_mut().pop_front()
    }
}

thread_local! {
    /// Sink side, core 0: the outbox of each source's control connection.
    static SOURCE_OUTBOX: RefCell<std::collections::BTreeMap<u64, Rc<Outbox>>> = RefCell::new(Default::default());
}

/// Sends a frame to a source over its control connection (core 0 only).
pub fn send_to_source(_c0: &Rc<Core>, source: u64, m: Msg) -> Result<(), String> {
    let ob = SOURCE_OUTBOX.with(|o| o.borrow().get(&source).cloned());
    match ob {
        Some(ob) => ob.push(m, Vec::new()),
        None => Err(format!("cluster {source:016x} has no control connection to this cluster")),
    }
}

enum Event {
    Frame(Result<(Msg, Vec<u8>), net::ConnError>),
    Outbox,
    Tick,
}

async fn next_event(conn: &mut FrameConn, ob: &Outbox) -> Event {
    futures_lite::future::or(
        async { Event::Frame(conn.read_frame().await) },
        futures_lite::future::or(
            async {
                ob.ready().await;
                Event::Outbox
            },
            async {
                glommio::timer::sleep(Duration::from_millis(TICK_MS)).await;
                Event::Tick
            },
        ),
    )
    .await
}

/// `f`, or None once `ms` have passed first.
pub(crate) async fn with_timeout<T>(ms: u64, f: impl std::future::Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(f.await) }, async {
        glommio::timer::sleep(Duration::from_millis(ms)).await;
        None
    })
    .await
}

// ---------------------------------------------------------------- sink side

pub async fn listen(c: Rc<Core>) {
    let addr = c.node.cfg.repl.listen;
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            log::error!("cannot listen for replication on {addr}: {e}");
            return;
        }
    };
    log::info!("cluster manager listening on {addr}");
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
            if let Err(e) = serve_control(c2, stream).await {
                log::warn!("control connection from {peer}: {e}");
            }
        })
        .detach();
    }
}

async fn serve_control(c: Rc<Core>, stream: glommio::net::TcpStream) -> Result<(), String> {
    let peer_addr = stream.peer_addr().map_err(|e| e.to_string())?;
    let local_ip = stream.local_addr().ok().map(|a| a.ip());
    let t = super::tls::server(&c, stream).await.map_err(|e| format!("refused {peer_addr}: {e}"))?;
    let mut conn = FrameConn::new(t, peer_addr, c.node.cfg.repl.peer_timeout_ms);
    let first = with_timeout(HELLO_TIMEOUT_MS, conn.read_frame()).await.ok_or("no hello within the timeout")?;
    let (msg, _) = first.map_err(|e| e.to_string())?;
    let Msg::Hello(peer) = msg else {
        let _ = conn.write_frame(&Msg::error(wire::ERR_PROTOCOL, "expected a hello"), &[]).await;
        return Err(format!("expected a hello, got {:?}", msg.kind()));
    };
    let local = local_hello(&c, ROLE_SINK, local_ip);
    let (reply, version) = answer_hello(&local, &peer);
    conn.write_frame(&reply, &[]).await.map_err(|e| e.to_string())?;
    let Some(version) = version else {
        if let Msg::Error(e) = &reply {
            log::error!("refused replication from cluster {:?} at {peer_addr}: {}", peer.cluster_name, e.message);
        }
        conn.close().await;
        return Ok(());
    };
    conn.agree_version(version);
    let shared = c.node.repl.clone();
    log::info!("cluster {:?} ({}) connected as a source from {peer_addr} ({}, protocol v{version})", peer.cluster_name, peer.node_addr, conn.mode());
    let prev = shared.sources.lock().unwrap().get(&peer.cluster_id).cloned();
    shared.sources.lock().unwrap().insert(
        peer.cluster_id,
        SourceInfo {
            name: peer.cluster_name.clone(),
            connected: true,
            mode: conn.mode(),
            since_ms: now_ms(),
            records_applied: prev.as_ref().map(|p| p.records_applied).unwrap_or(0),
            bytes_applied: prev.as_ref().map(|p| p.bytes_applied).unwrap_or(0),
            data_modes: prev.map(|p| p.data_modes).unwrap_or_default(),
        },
    );
    let ob = Rc::new(Outbox::default());
    SOURCE_OUTBOX.with(|o| o.borrow_mut().insert(peer.cluster_id, ob.clone()));
    let cfg = &c.node.cfg.repl;
    let mut live = Liveness::new(cfg.heartbeat_ms, cfg.peer_timeout_ms, now_ms());
    let result: Result<(), String> = loop {
        if c.stopping.get() {
            break Ok(());
        }
        match next_event(&mut conn, &ob).await {
            Event::Frame(Ok((m, payload))) => {
                live.received(now_ms());
                match m {
                    Msg::Heartbeat(_) => {}
                    Msg::ProxyGetReply(r) => {
                        let res = if r.error.is_empty() { Ok((r.found, payload)) } else { Err(r.error) };
                        shared.proxy.complete(r.req_id, res);
                    }
                    Msg::Error(e) => break Err(format!("source {:?} reported: {}", peer.cluster_name, e.message)),
                    other => {
                        let _ = conn.write_frame(&Msg::error(wire::ERR_PROTOCOL, format!("unexpected {:?}", other.kind())), &[]).await;
                        break Err(format!("unexpected {:?} frame from source {:?}", other.kind(), peer.cluster_name));
                    }
                }
            }
            Event::Frame(Err(e)) => break Err(format!("source {:?}: {e}", peer.cluster_name)),
            Event::Outbox => {
                let mut failed = None;
                while let Some((m, p)) = ob.pop() {
                    if let Err(e) = conn.write_frame(&m, &[&p]).await {
                        failed = Some(e.to_string());
                        break;
                    }
                    live.sent(now_ms());
                }
                if let Some(e) = failed {
                    break Err(e);
                }
            }
            Event::Tick => match live.tick(now_ms()) {
                LiveAction::Nothing => {}
                LiveAction::SendHeartbeat => {
                    if let Err(e) = conn.write_frame(&Msg::Heartbeat(wire::Heartbeat { now_ms: now_ms() }), &[]).await {
                        break Err(e.to_string());
                    }
                }
                LiveAction::Dead(why) => break Err(format!("source {:?}: {why}", peer.cluster_name)),
            },
        }
    };
    ob.closed.set(true);
    SOURCE_OUTBOX.with(|o| {
        let mut o = o.borrow_mut();
        if o.get(&peer.cluster_id).map(|x| Rc::ptr_eq(x, &ob)).unwrap_or(false) {
            o.remove(&peer.cluster_id);
        }
    });
    if let Some(s) = shared.sources.lock().unwrap().get_mut(&peer.cluster_id) {
        s.connected = false;
    }
    shared.proxy.fail_source(peer.cluster_id, "the source's control connection closed");
    conn.close().await;
    result
}

// -------------------------------------------------------------- source side

/// Connects to `addr`, exchanges hellos and returns the sink's hello and
/// the agreed version with the open connection.
pub async fn open(c: &Rc<Core>, addr: &str) -> Result<(FrameConn, wire::Hello, u16), String> {
    let (stream, sa) = net::connect(addr, Duration::from_secs(5)).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let t = super::tls::client(c, stream, addr).await?;
    let mut conn = FrameConn::new(t, sa, c.node.cfg.repl.peer_timeout_ms);
    let (mut client, hello) = CmClient::start(local_hello(c, ROLE_SOURCE, None));
    conn.write_frame(&hello, &[]).await.map_err(|e| format!("{addr}: {e}"))?;
    let answer = with_timeout(HELLO_TIMEOUT_MS, conn.read_frame()).await.ok_or_else(|| format!("{addr} did not answer the hello"))?;
    let (m, _) = answer.map_err(|e| format!("{addr}: {e}"))?;
    let reply = client.on_msg(m).map_err(|e| format!("{addr}: {e}"))?;
    if let Some(r) = reply {
        let _ = conn.write_frame(&r, &[]).await;
    }
    match client.state().clone() {
        ClientState::Established { version, peer } => {
            conn.agree_version(version);
            Ok((conn, peer, version))
        }
        ClientState::Refused(why) => {
            conn.close().await;
            Err(format!("{addr} refused the connection: {why}"))
        }
        ClientState::SentHello => Err(format!("{addr}: no answer to the hello")),
    }
}

/// Keeps a control connection to every configured sink.
pub async fn supervise(c: Rc<Core>) {
    let running: Rc<RefCell<std::collections::BTreeSet<u64>>> = Default::default();
    loop {
        if c.stopping.get() {
            return;
        }
        for s in c.node.repl.sinks() {
            if running.borrow().contains(&s.cluster_id) {
                continue;
            }
            running.borrow_mut().insert(s.cluster_id);
            let (c2, r2) = (c.clone(), running.clone());
            glommio::spawn_local(async move {
                run_control(c2, s.cluster_id).await;
                r2.borrow_mut().remove(&s.cluster_id);
            })
            .detach();
        }
        futures_lite::future::or(glommio::timer::sleep(Duration::from_millis(300)), c.stopped()).await;
    }
}

async fn run_control(c: Rc<Core>, sink: u64) {
    let shared = c.node.repl.clone();
    let stats = shared.stats_for(sink);
    let cfg = c.node.cfg.repl.clone();
    let mut backoff = cfg.reconnect_min_ms;
    let mut attempt = 0u64;
    loop {
        let Some(s) = shared.sink(sink) else {
            shared.peers.lock().unwrap().remove(&sink);
            return;
        };
        if c.stopping.get() {
            return;
        }
        if attempt > 0 {
            stats.cm_reconnects.fetch_add(1, Ordering::Relaxed);
        }
        attempt += 1;
        match open(&c, &s.addr).await {
            Ok((conn, hello, version)) => {
                if hello.cluster_id != sink {
                    let msg = format!(
                        "{} is now cluster {:?} ({:016x}), not the sink {:?} ({sink:016x}) configured there; run `dataplane repl disconnect {}` and connect again",
                        s.addr, hello.cluster_name, hello.cluster_id, s.name, s.name
                    );
                    log::error!("{msg}");
                    mark_peer(&c, sink, None, false, &msg);
                } else {
                    backoff = cfg.reconnect_min_ms;
                    if hello.cluster_name != s.name {
                        let _ = shared.update_sink(sink, |x| x.name = hello.cluster_name.clone());
                    }
                    log::info!("connected to sink {:?} at {} ({}, protocol v{version})", hello.cluster_name, s.addr, conn.mode());
                    mark_peer(&c, sink, Some((hello, version, conn.mode())), true, "");
                    let why = control_loop(&c, sink, conn).await;
                    log::warn!("control connection to sink {:?} ended: {why}; reconnecting", s.name);
                    mark_peer(&c, sink, None, false, &why);
                }
            }
            Err(e) => {
                log::warn!("sink {:?}: {e}; retrying in {backoff} ms", s.name);
                mark_peer(&c, sink, None, false, &e);
            }
        }
        futures_lite::future::or(glommio::timer::sleep(Duration::from_millis(backoff)), c.stopped()).await;
        backoff = (backoff * 2).min(cfg.reconnect_max_ms);
    }
}

fn mark_peer(c: &Core, sink: u64, hello: Option<(wire::Hello, u16, &'static str)>, connected: bool, err: &str) {
    let mut peers = c.node.repl.peers.lock().unwrap();
    match hello {
        Some((h, v, mode)) => {
            peers.insert(sink, PeerInfo { hello: h, version: v, connected, mode, since_ms: now_ms(), last_error: String::new() });
        }
        None => {
            if let Some(p) = peers.get_mut(&sink) {
                p.connected = connected;
                p.last_error = err.to_string();
            }
        }
    }
}

async fn control_loop(c: &Rc<Core>, sink: u64, mut conn: FrameConn) -> String {
    let cfg = c.node.cfg.repl.clone();
    let shared = c.node.repl.clone();
    let ob = Rc::new(Outbox::default());
    let mut live = Liveness::new(cfg.heartbeat_ms, cfg.peer_timeout_ms, now_ms());
    let why = loop {
        if c.stopping.get() {
            break "node shutting down".to_string();
        }
        if shared.sink(sink).is_none() {
            break "sink disconnected by the operator".to_string();
        }
        match next_event(&mut conn, &ob).await {
            Event::Frame(Ok((m, _))) => {
                live.received(now_ms());
                match m {
                    Msg::Heartbeat(_) => {}
                    Msg::ProxyGet(req) => {
                        let (c2, ob2) = (c.clone(), ob.clone());
                        glommio::spawn_local(async move {
                            let (reply, payload) = serve_proxy_get(&c2, sink, req).await;
                            let _ = ob2.push(reply, payload);
                        })
                        .detach();
                    }
                    Msg::Error(e) => break format!("sink reported: {}", e.message),
                    other => {
                        let why = format!("unexpected {:?} frame on the control connection", other.kind());
                        let _ = conn.write_frame(&Msg::error(wire::ERR_PROTOCOL, why.clone()), &[]).await;
                        break why;
                    }
                }
            }
            Event::Frame(Err(e)) => break e.to_string(),
            Event::Outbox => {
                let mut failed = None;
                while let Some((m, p)) = ob.pop() {
                    if let Err(e) = conn.write_frame(&m, &[&p]).await {
                        failed = Some(e.to_string());
                        break;
                    }
                    live.sent(now_ms());
                }
                if let Some(e) = failed {
                    break e;
                }
            }
            Event::Tick => match live.tick(now_ms()) {
                LiveAction::Nothing => {}
                LiveAction::SendHeartbeat => {
                    if let Err(e) = conn.write_frame(&Msg::Heartbeat(wire::Heartbeat { now_ms: now_ms() }), &[]).await {
                        break e.to_string();
                    }
                }
                LiveAction::Dead(why) => break why,
            },
        }
    };
    ob.closed.set(true);
    conn.close().await;
    why
}

/// Answers a sink's proxy_get: the records by key, read on their cores.
async fn serve_proxy_get(c: &Rc<Core>, sink: u64, req: wire::ProxyGet) -> (Msg, Vec<u8>) {
    let shared = c.node.repl.clone();
    let cfg = shared.sink(sink);
    let allowed = cfg.as_ref().map(|s| s.proxy_get).unwrap_or(false);
    if !allowed {
        let name = cfg.map(|s| s.name).unwrap_or_default();
        let msg = format!(
            "proxy_get is not enabled for sink {name:?} on cluster {:?}; run `dataplane repl proxy-get enable {name}` there",
            c.node.cluster_name()
        );
        return (Msg::ProxyGetReply(ProxyGetReply { req_id: req.req_id, found: vec![], error: msg }), Vec::new());
    }
    if req.keys.len() > wire::MAX_PROXY_GET_KEYS {
        return (Msg::ProxyGetReply(ProxyGetReply { req_id: req.req_id, found: vec![], error: format!("at most {} keys per proxy_get", wire::MAX_PROXY_GET_KEYS) }), Vec::new());
    }
    let mut found = Vec::new();
    let mut payload = Vec::new();
    for k in req.keys {
        if k.len() < 2 {
            found.push(false);
            continue;
        }
        let p = crate::model::partition_of(xxhash_rust::xxh3::xxh3_64(&k[1..]), c.node.ring);
        let rec = c
            .on_partition(p, move |cc| Box::pin(async move { cc.part(p).read(&k, true).ok().flatten().filter(|r| r.header.kind == storage::Kind::Block).map(|r| r.into_send()) }))
            .await;
        match rec {
            Some(r) if payload.len() + r.header.padded_len() <= wire::MAX_FRAME_BYTES / 2 => {
                payload.extend_from_slice(r.bytes());
                payload.resize(payload.len() + (r.header.padded_len() - r.header.len as usize), 0);
                found.push(true);
            }
            _ => found.push(false),
        }
    }
    shared.stats_for(sink).proxy_get_served.fetch_add(found.iter().filter(|f| **f).count() as u64, Ordering::Relaxed);
    (Msg::ProxyGetReply(ProxyGetReply { req_id: req.req_id, found, error: String::new() }), payload)
}
