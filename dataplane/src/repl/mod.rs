//! Multi-datacenter replication: cluster manager connections, realtime
//! streaming from log cursors, fullsync, proxy_get.
//!
//! A cluster that runs `repl connect HOST:PORT` is a *source* for the
//! cluster at HOST:PORT, its *sink*. The source opens the control connection
//! (hello, heartbeats, proxy_get requests flowing back from the sink) and,
//! per core, data connections to the sink cores that own the same
//! partitions.

pub mod admin;
pub mod apply;
pub mod cli;
pub mod cm;
pub mod fullsync;
pub mod net;
pub mod proxy;
pub mod realtime;
pub mod tls;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::runtime::Core;

pub const STATE_FILE: &str = "repl.json";

/// Realtime state of one sink, as the operator set it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RtState {
    /// No cursors: nothing is queued for the sink.
    Disabled,
    /// Cursors exist and writes queue up, but nothing is sent.
    Stopped,
    /// Streaming.
    Started,
}

/// What the source remembers about one sink (persisted in repl.json).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SinkCfg {
    pub name: String,
    pub cluster_id: u64,
    pub addr: String,
    pub realtime: RtState,
    pub proxy_get: bool,
    pub fullsync_enabled: bool,
    /// Minutes between fullsyncs (None: repl.fullsync_interval_min).
    pub fullsync_interval_min: Option<u64>,
    /// Realtime dropped its cursors (retention limit): a fullsync is due.
    pub dirty: bool,
    pub dirty_since_ms: u64,
    #[serde(default)]
    pub fullsync: fullsync::Progress,
    /// When the sink was added (scheduled fullsyncs count from here until a
    /// first run completes).
    #[serde(default)]
    pub created_ms: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Persisted {
    /// Sinks by cluster id (hex).
    pub sinks: BTreeMap<String, SinkCfg>,
}

/// Counters of one sink, summed over cores.
#[derive(Default, Debug)]
pub struct SinkStats {
    pub records_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub records_acked: AtomicU64,
    pub bytes_acked: AtomicU64,
    pub batches_sent: AtomicU64,
    pub reconnects: AtomicU64,
    pub data_connections: AtomicU64,
    pub cm_reconnects: AtomicU64,
    pub retention_drops: AtomicU64,
    pub proxy_get_served: AtomicU64,
    /// Why the last realtime data connection to this sink ended (ms, text).
    pub realtime_last_error: Mutex<(u64, String)>,
    /// Transport modes seen on data connections (realtime, fullsync).
    pub data_modes: Mutex<std::collections::BTreeSet<&'static str>>,
}

/// A sink as the cluster manager last saw it.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub hello: wire::Hello,
    pub version: u16,
    pub connected: bool,
    pub mode: &'static str,
    pub since_ms: u64,
    pub last_error: String,
}

/// Replication state shared by all cores of the node.
pub struct Shared {
    path: PathBuf,
    pub persisted: Mutex<Persisted>,
    /// Sinks we connected to (source side), by cluster id.
    pub peers: Mutex<BTreeMap<u64, PeerInfo>>,
    pub stats: Mutex<BTreeMap<u64, Arc<SinkStats>>>,
    /// Sources connected to us (sink side), by cluster id.
    pub sources: Mutex<BTreeMap<u64, SourceInfo>>,
    /// Sink side: highest LSN applied per (source cluster, partition), with
    /// the source incarnation it belongs to.
    pub applied: Mutex<HashMap<(u64, u32), (u64, u64)>>,
    /// Random per start of this process (see DataHello::incarnation).
    pub incarnation: u64,
    /// When this node last applied a realtime batch or a fullsync push (ms;
    /// 0 = never): the orphan-block sweep waits while replicated records are
    /// arriving, since blocks travel ahead of their manifests (realtime) or
    /// a round ahead of them (fullsync).
    pub last_replicated_apply_ms: AtomicU64,
    pub proxy: proxy::Hub,
    /// Bumped whenever the sink configuration changes.
    pub generation: AtomicU64,
    /// Calls of `save` so far; each made its change before counting itself.
    save_requests: AtomicU64,
    /// Serializes writers of the state file; holds the `save_requests`
    /// count read just before the snapshot that is on disk now.
    saved_upto: Mutex<u64>,
    /// TLS settings (None: plaintext).
    pub tls: Option<Arc<tls::TlsSetup>>,
}

#[derive(Clone, Debug)]
pub struct SourceInfo {
    pub name: String,
    pub connected: bool,
    pub mode: &'static str,
    pub since_ms: u64,
    pub records_applied: u64,
    pub bytes_applied: u64,
    /// Transport modes seen on this source's data connections.
    pub data_modes: std::collections::BTreeSet<&'static str>,
}

impl Shared {
    pub fn load(data_dir: &Path, tls_cfg: &crate::config::TlsConfig) -> Result<Shared, String> {
        let tls = tls::TlsSetup::load(tls_cfg)?;
        let path = data_dir.join(STATE_FILE);
        let persisted = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("{}: {e}; fix or remove the file (replication settings are kept there)", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Persisted::default(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Ok(Shared {
            path,
            persisted: Mutex::new(persisted),
            peers: Mutex::new(BTreeMap::new()),
            stats: Mutex::new(BTreeMap::new()),
            sources: Mutex::new(BTreeMap::new()),
            applied: Mutex::new(HashMap::new()),
            proxy: proxy::Hub::default(),
            generation: AtomicU64::new(1),
            save_requests: AtomicU64::new(0),
            saved_upto: Mutex::new(0),
            last_replicated_apply_ms: AtomicU64::new(0),
            tls,
            incarnation: {
                let mut b = [0u8; 8];
                getrandom::getrandom(&mut b).map_err(|e| e.to_string())?;
                u64::from_le_bytes(b)
            },
        })
    }

    /// Writes repl.json atomically (blocking; small file), with every change
    /// made before the call. One writer at a time (they share the temporary
    /// file), and saves that pile up while one writes are group-committed:
    /// a caller whose change was in a snapshot that is on disk by the time
    /// it gets the lock returns without writing.
    pub fn save(&self) -> Result<(), String> {
        let mine = self.save_requests.fetch_add(1, Ordering::SeqCst) + 1;
        let mut saved_upto = self.saved_upto.lock().unwrap();
        if *saved_upto >= mine {
            return Ok(());
        }
        // Every request counted up to here made its change before counting.
        let covers = self.save_requests.load(Ordering::SeqCst);
        let bytes = serde_json::to_vec_pretty(&*self.persisted.lock().unwrap()).unwrap();
        let tmp = self.path.with_extension("json.tmp");
        (|| -> std::io::Result<()> {
            std::fs::write(&tmp, &bytes)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            std::fs::File::open(self.path.parent().unwrap())?.sync_all()
        })()
        .map_err(|e| format!("saving {}: {e}", self.path.display()))?;
        *saved_upto = covers;
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    pub fn sinks(&self) -> Vec<SinkCfg> {
        self.persisted.lock().unwrap().sinks.values().cloned().collect()
    }

    pub fn sink(&self, id: u64) -> Option<SinkCfg> {
        self.persisted.lock().unwrap().sinks.get(&format!("{id:016x}")).cloned()
    }

    /// Finds a sink by name or cluster id (hex).
    pub fn find_sink(&self, name: &str) -> Option<SinkCfg> {
        let p = self.persisted.lock().unwrap();
        p.sinks.values().find(|s| s.name == name || format!("{:016x}", s.cluster_id) == name).cloned()
    }

    pub fn update_sink(&self, id: u64, f: impl FnOnce(&mut SinkCfg)) -> Result<(), String> {
        {
            let mut p = self.persisted.lock().unwrap();
            let s = p.sinks.get_mut(&format!("{id:016x}")).ok_or_else(|| format!("no sink with cluster id {id:016x}"))?;
            f(s);
        }
        self.save()
    }

    /// Changes a sink's state in memory only: the change reaches repl.json
    /// with the next `save`, whoever makes it. For state whose loss in a
    /// crash costs only repeated work (fullsync progress that is cheap to
    /// redo).
    pub fn update_sink_unsaved(&self, id: u64, f: impl FnOnce(&mut SinkCfg)) -> Result<(), String> {
        let mut p = self.persisted.lock().unwrap();
        let s = p.sinks.get_mut(&format!("{id:016x}")).ok_or_else(|| format!("no sink with cluster id {id:016x}"))?;
        f(s);
        Ok(())
    }

    pub fn stats_for(&self, id: u64) -> Arc<SinkStats> {
        self.stats.lock().unwrap().entry(id).or_default().clone()
    }
}

/// Name of the storage cursor that queues records for a sink.
pub fn cursor_name(sink_id: u64) -> String {
    format!("rt-{sink_id:016x}")
}

/// Per-core replication state (lives in `CoreExt`).
#[derive(Default)]
pub struct CoreRepl {
    /// Source side: running realtime connections, by (sink, sink core).
    pub rt_conns: RefCell<BTreeMap<(u64, usize), realtime::ConnHandle>>,
    /// Source side: per sink, send time of the oldest unacked batch.
    pub oldest_unacked_ms: RefCell<BTreeMap<u64, u64>>,
    /// Fullsync workers running on this core.
    pub fs: RefCell<fullsync::CoreFs>,
    /// Wakes this core's realtime supervisor before its next tick (a sink's
    /// realtime state changed).
    pub kick: Kick,
}

/// A wake-up for one task on this core, remembered until it is taken.
#[derive(Default)]
pub struct Kick {
    set: Cell<bool>,
    waker: RefCell<Option<std::task::Waker>>,
}

impl Kick {
    pub fn kick(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Resolves once `kick` has been called since the last time it resolved.
    pub fn wait(&self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.set.replace(false) {
                return std::task::Poll::Ready(());
            }
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            std::task::Poll::Pending
        })
    }
}

/// Starts this core's replication tasks.
pub fn start_core(c: &Rc<Core>) {
    if c.id == 0 {
        glommio::spawn_local(cm::listen(c.clone())).detach();
        glommio::spawn_local(cm::supervise(c.clone())).detach();
        glommio::spawn_local(fullsync::coordinate(c.clone())).detach();
        glommio::spawn_local(admin::monitor(c.clone())).detach();
    }
    glommio::spawn_local(realtime::listen(c.clone())).detach();
    glommio::spawn_local(realtime::supervise(c.clone())).detach();
}

/// Data address of `core` for a node whose cluster manager is at `base`.
pub fn data_addr(base: std::net::SocketAddr, core: usize) -> std::net::SocketAddr {
    std::net::SocketAddr::new(base.ip(), base.port() + 1 + core as u16)
}

/// The address peers should use to reach this node's cluster manager.
pub fn advertised(c: &Core) -> std::net::SocketAddr {
    c.node.cfg.repl.advertise.unwrap_or(c.node.cfg.repl.listen)
}

/// This node's hello. `reached_at` is the local address a peer reached us
/// on: with no `repl.advertise` and a wildcard `repl.listen`, peers are
/// told that address.
pub fn local_hello(c: &Core, role: u8, reached_at: Option<std::net::IpAddr>) -> wire::Hello {
    let adv = advertised(c);
    let adv = if adv.ip().is_unspecified() {
        std::net::SocketAddr::new(reached_at.unwrap_or([127, 0, 0, 1].into()), adv.port())
    } else {
        adv
    };
    wire::Hello {
        cluster_name: c.node.cluster_name(),
        cluster_id: c.node.cluster_id,
        versions: wire::PROTOCOL_VERSIONS.to_vec(),
        ring_size: c.node.ring,
        n_val: 1,
        tls_required: c.node.cfg.tls.required,
        node_addr: adv.to_string(),
        core_addrs: (0..c.node.cores).map(|i| data_addr(adv, i).to_string()).collect(),
        tree_segments: c.node.cfg.storage.tree_segments,
        role,
    }
}

pub fn now_ms() -> u64 {
    storage::now_ms()
}

/// The error frame a sink answers when it cannot apply `what` (a realtime
/// batch or a fullsync push): `ERR_NO_SPACE` while a partition of this node
/// is out of disk space, `ERR_INTERNAL` otherwise. Returns the frame and its
/// message (for the sink's own log).
pub async fn apply_failure(c: &Rc<Core>, what: &str, e: &apply::ApplyError) -> (wire::Msg, String) {
    let (code, msg) = if e.no_space || out_of_space(c).await {
        (
            wire::ERR_NO_SPACE,
            format!(
                "cluster {:?} is out of disk space and cannot store {what}: {e}; replication resumes by itself once space is freed in {}",
                c.node.cluster_name(),
                c.node.data_dir.display()
            ),
        )
    } else {
        (wire::ERR_INTERNAL, format!("cluster {:?} cannot apply {what}: {e}", c.node.cluster_name()))
    };
    (wire::Msg::error(code, msg.clone()), msg)
}

/// Whether any partition of this node is refusing writes for lack of disk
/// space (asks every core; used on error paths only).
pub async fn out_of_space(c: &Rc<Core>) -> bool {
    c.on_all(|cc: Rc<Core>| -> crate::runtime::LocalFuture<bool> { Box::pin(async move { cc.parts.values().any(|p| p.no_space().is_some()) }) })
        .await
        .into_iter()
        .any(|x| x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Saves from many threads at once (fullsync partitions finishing
    /// together, admin commands) share one temporary file: none may fail, and
    /// the file on disk ends with every change.
    #[test]
    fn concurrent_saves_all_succeed_and_the_last_state_is_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Arc::new(Shared::load(dir.path(), &crate::config::TlsConfig::default()).unwrap());
        const THREADS: u64 = 8;
        const UPDATES: u64 = 40;
        for t in 0..THREADS {
            let sink = SinkCfg {
                name: format!("s{t}"),
                cluster_id: t,
                addr: String::new(),
                realtime: RtState::Disabled,
                proxy_get: false,
                fullsync_enabled: false,
                fullsync_interval_min: None,
                dirty: false,
                dirty_since_ms: 0,
                fullsync: fullsync::Progress::default(),
                created_ms: 0,
            };
            shared.persisted.lock().unwrap().sinks.insert(format!("{t:016x}"), sink);
        }
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    for i in 1..=UPDATES {
                        shared.update_sink(t, |s| s.dirty_since_ms = i).expect("save");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let on_disk: Persisted = serde_json::from_slice(&std::fs::read(dir.path().join(STATE_FILE)).unwrap()).unwrap();
        for t in 0..THREADS {
            assert_eq!(on_disk.sinks[&format!("{t:016x}")].dirty_since_ms, UPDATES, "sink {t}");
        }
        assert!(!dir.path().join("repl.json.tmp").exists());
    }
}
