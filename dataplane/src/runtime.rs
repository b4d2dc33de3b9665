//! Thread-per-core runtime: one glommio executor per core, partitions pinned
//! by `p % cores`, work for another core's partitions sent to it as a job
//! over a channel (`Core::call`).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use storage::{Partition, StoreDir};

use crate::config::Config;
use crate::hlc::Hlc;
use crate::metrics::CoreMetrics;

pub type LocalFuture<T> = Pin<Box<dyn Future<Output = T> + 'static>>;
pub type Job = Box<dyn FnOnce(Rc<Core>) -> LocalFuture<()> + Send + 'static>;

/// Jobs queued for one core before senders wait.
pub const CORE_QUEUE_DEPTH: usize = 4096;

/// What every core shares.
pub struct Node {
    pub cfg: Config,
    pub cores: usize,
    pub ring: u32,
    pub cluster_id: u64,
    pub cluster_name: RwLock<String>,
    pub hlc: Hlc,
    pub senders: Vec<flume::Sender<Job>>,
    pub metrics: Vec<Arc<CoreMetrics>>,
    pub started_ms: u64,
    pub shutting_down: AtomicBool,
    pub data_dir: PathBuf,
    pub repl: Arc<crate::repl::Shared>,
}

impl Node {
    pub fn owner(&self, partition: u32) -> usize {
        partition as usize % self.cores
    }

    pub fn cluster_name(&self) -> String {
        self.cluster_name.read().unwrap().clone()
    }

    pub fn partitions_of(&self, core: usize) -> impl Iterator<Item = u32> + '_ {
        (0..self.ring).filter(move |p| self.owner(*p) == core)
    }
}

/// One core's state. Lives on its executor only.
pub struct Core {
    pub id: usize,
    pub node: Arc<Node>,
    pub parts: BTreeMap<u32, Partition>,
    pub metrics: Arc<CoreMetrics>,
    pub stopping: Cell<bool>,
    /// Tasks waiting in `stopped()`, by slot: one entry per live `Stopped`
    /// future, removed when that future is dropped.
    stop_waiters: RefCell<BTreeMap<u64, std::task::Waker>>,
    next_stop_slot: Cell<u64>,
    /// Sequence number of the last S3 request this core took (request ids).
    pub request_seq: Cell<u64>,
    /// Per-core extension slots for subsystems (replication, ...).
    pub ext: crate::CoreExt,
    /// Reads records that are on disk and not cached without blocking this
    /// executor (io_uring; see `storage::cold`).
    pub cold: storage::ColdReader,
}

impl Core {
    pub fn part(&self, p: u32) -> &Partition {
        self.parts.get(&p).unwrap_or_else(|| panic!("partition {p} is not owned by core {}", self.id))
    }

    /// Runs `f` on `core` and returns its result. Runs in place when `core`
    /// is this one.
    pub async fn call<R, F>(self: &Rc<Self>, core: usize, f: F) -> R
    where
        R: Send + 'static,
        F: FnOnce(Rc<Core>) -> LocalFuture<R> + Send + 'static,
    {
        if core == self.id {
            return f(self.clone()).await;
        }
        let (tx, rx) = futures::channel::oneshot::channel();
        let job: Job = Box::new(move |c: Rc<Core>| {
            Box::pin(async move {
                let r = f(c).await;
                let _ = tx.send(r);
            })
        });
        if self.node.senders[core].send_async(job).await.is_err() {
            return self.unreachable_core(core).await;
        }
        match rx.await {
            Ok(r) => r,
            Err(_) => self.unreachable_core(core).await,
        }
    }

    /// Another core has stopped: only legitimate while shutting down, when
    /// the calling task is simply left waiting until its executor exits
    /// (work it leaves undone is finished at the next start: intents,
    /// cursors).
    async fn unreachable_core<R>(&self, core: usize) -> R {
        assert!(self.node.shutting_down.load(std::sync::atomic::Ordering::SeqCst), "core {core} stopped answering while the node is running");
        futures_lite::future::pending().await
    }

    /// Runs `f` on the core that owns partition `p`.
    pub async fn on_partition<R, F>(self: &Rc<Self>, p: u32, f: F) -> R
    where
        R: Send + 'static,
        F: FnOnce(Rc<Core>) -> LocalFuture<R> + Send + 'static,
    {
        let core = self.node.owner(p);
        self.call(core, f).await
    }

    /// Runs `f` on every core, results in core order.
    pub async fn on_all<R, F>(self: &Rc<Self>, f: F) -> Vec<R>
    where
        R: Send + 'static,
        F: Fn(Rc<Core>) -> LocalFuture<R> + Send + Sync + Clone + 'static,
    {
        let mut tasks = Vec::new();
        for c in 0..self.node.cores {
            let me = self.clone();
            let f = f.clone();
            tasks.push(glommio::spawn_local(async move { me.call(c, f).await }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await);
        }
        out
    }

    /// Resolves when the node starts shutting down.
    ///
    /// The future keeps at most one waker in `stop_waiters` and takes it
    /// out when dropped: long-lived loops race it against other futures
    /// (`or(accept, stopped())`, `or(recv_async, stopped())`) once per
    /// iteration, and a waker left behind by each lost race would pile up
    /// clones of the loop's task waker until glommio's i16 task reference
    /// count overflows.
    pub fn stopped(&self) -> Stopped<'_> {
        Stopped { core: self, slot: None }
    }

    fn stop(&self) {
        self.stopping.set(true);
        let ws = std::mem::take(&mut *self.stop_waiters.borrow_mut());
        for w in ws.into_values() {
            w.wake();
        }
    }
}

/// The future of [`Core::stopped`].
pub struct Stopped<'a> {
    core: &'a Core,
    slot: Option<u64>,
}

impl Future for Stopped<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        let core = self.core;
        if core.stopping.get() {
            return std::task::Poll::Ready(());
        }
        let mut ws = core.stop_waiters.borrow_mut();
        match self.slot {
            Some(k) if ws.get(&k).map(|w| w.will_wake(cx.waker())).unwrap_or(false) => {}
            Some(k) => {
                ws.insert(k, cx.waker().clone());
            }
            None => {
                let k = core.next_stop_slot.get();
                core.next_stop_slot.set(k + 1);
                ws.insert(k, cx.waker().clone());
                drop(ws);
                self.slot = Some(k);
            }
        }
        std::task::Poll::Pending
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.slot.take() {
            // Dropping the removed waker may run arbitrary code: not under the borrow.
            let w = self.core.stop_waiters.borrow_mut().remove(&k);
            drop(w);
        }
    }
}

/// Loads or creates the cluster identity kept in the data directory.
/// Reads (or creates) the `CLUSTER` file: the cluster's random id, its name
/// and the ring size the data directory was laid out with. Objects are placed
/// by `hash % ring_size`, so reopening a directory with another ring size
/// would hide every object; that is refused.
fn cluster_identity(dir: &std::path::Path, default_name: &str, ring: u32) -> Result<(u64, String), String> {
    let path = dir.join("CLUSTER");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let mut id = None;
        let mut name = None;
        let mut stored_ring = None;
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("id=") {
                id = u64::from_str_radix(v.trim(), 16).ok();
            } else if let Some(v) = line.strip_prefix("name=") {
                name = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("ring=") {
                stored_ring = v.trim().parse::<u32>().ok();
            }
        }
        if let (Some(id), Some(name)) = (id, name) {
            match stored_ring {
                Some(r) if r != ring => {
                    return Err(format!(
                        "{} was created with node.ring_size = {r} but the configuration says {ring}; objects are placed by \
                         hash modulo the ring size, so set node.ring_size = {r} (changing the ring size of existing data is not supported)",
                        path.display()
                    ))
                }
                Some(_) => {}
                None => save_cluster_identity_ring(dir, id, &name, ring).map_err(|e| e.to_string())?,
            }
            if name != default_name {
                log::warn!(
                    "cluster.name in the configuration is {default_name:?} but this cluster is named {name:?} \
                     (set with `dataplane repl clustername`); using {name:?}"
                );
            }
            return Ok((id, name));
        }
    }
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).map_err(|e| e.to_string())?;
    let id = u64::from_le_bytes(b) | 1;
    save_cluster_identity_ring(dir, id, default_name, ring).map_err(|e| e.to_string())?;
    Ok((id, default_name.to_string()))
}

/// Rewrites the `CLUSTER` file atomically (temp file, fsync, rename, fsync dir).
pub fn save_cluster_identity_ring(dir: &std::path::Path, id: u64, name: &str, ring: u32) -> std::io::Result<()> {
    let tmp = dir.join("CLUSTER.tmp");
    std::fs::write(&tmp, format!("id={id:016x}\nname={name}\nring={ring}\n"))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join("CLUSTER"))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Raises the locked-memory limit so io_uring can register buffers.
fn raise_memlock() {
    let want = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: plain syscall with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &want) } != 0 {
        log::debug!("could not raise RLIMIT_MEMLOCK; io_uring buffer registration may be limited");
    }
}

pub type StartHook = Arc<dyn Fn(Rc<Core>) -> LocalFuture<()> + Send + Sync>;

/// A running node: its executors and a way to stop them.
pub struct Running {
    pub node: Arc<Node>,
    threads: Vec<glommio::ExecutorJoinHandle<Result<(), String>>>,
    _dir: StoreDir,
}

impl Running {
    pub fn shutdown(self) -> Result<(), String> {
        self.node.shutting_down.store(true, Ordering::SeqCst);
        for s in &self.node.senders {
            let _ = s.send(Box::new(|c: Rc<Core>| {
                Box::pin(async move {
                    c.stop();
                })
            }));
        }
        let mut errs = Vec::new();
        for t in self.threads {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errs.push(e),
                Err(e) => errs.push(format!("executor panicked: {e:?}")),
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    }
}

/// Opens the data directory, starts one executor per core, opens each
/// core's partitions, then runs `on_start` on every core.
pub fn start(cfg: Config, on_start: StartHook) -> Result<Running, String> {
    storage::tune_malloc();
    raise_memlock();
    let dir = StoreDir::open(&cfg.node.data_dir).map_err(|e| e.to_string())?;
    let (cluster_id, cluster_name) =
        cluster_identity(dir.path(), &cfg.cluster.name, cfg.node.ring_size)
            .map_err(|e| format!("cluster identity in {}: {e}", dir.path().display()))?;
    let repl = Arc::new(crate::repl::Shared::load(dir.path(), &cfg.tls)?);
    let cores = cfg.cores();
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..cores {
        let (tx, rx) = flume::bounded::<Job>(CORE_QUEUE_DEPTH);
        senders.push(tx);
        receivers.push(rx);
    }
    let node = Arc::new(Node {
        ring: cfg.node.ring_size,
        cores,
        cluster_id,
        cluster_name: RwLock::new(cluster_name),
        hlc: Hlc::default(),
        senders,
        metrics: (0..cores).map(|_| Arc::new(CoreMetrics::default())).collect(),
        started_ms: storage::now_ms(),
        shutting_down: AtomicBool::new(false),
        data_dir: dir.path().to_path_buf(),
        repl,
        cfg,
    });
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<usize, String>>();
    let mut threads = Vec::new();
    for (core, rx) in receivers.into_iter().enumerate() {
        let node = node.clone();
        let ready = ready_tx.clone();
        let placement = if cores <= cpus { glommio::Placement::Fixed(core) } else { glommio::Placement::Unbound };
        let h = glommio::LocalExecutorBuilder::new(placement)
            .name(&format!("core-{core}"))
            .io_memory(node.cfg.storage.io_memory_bytes)
            // glommio's handler logs a warning with a backtrace when a task
            // runs past its budget without yielding.
            .detect_stalls(Some(Box::new(glommio::DefaultStallDetectionHandler {})))
            .spawn(move || core_main(node, core, rx, ready))
            .map_err(|e| format!("starting executor for core {core}: {e}"))?;
        threads.push(h);
    }
    drop(ready_tx);
    for _ in 0..cores {
        match ready_rx.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                let r = Running { node, threads, _dir: dir };
                let _ = r.shutdown();
                return Err(e);
            }
            Err(_) => return Err("an executor exited during startup".into()),
        }
    }
    for s in &node.senders {
        let hook = on_start.clone();
        s.send(Box::new(move |c: Rc<Core>| hook(c))).map_err(|_| "core channel closed".to_string())?;
    }
    Ok(Running { node, threads, _dir: dir })
}

async fn core_main(
    node: Arc<Node>,
    core: usize,
    rx: flume::Receiver<Job>,
    ready: std::sync::mpsc::Sender<Result<usize, String>>,
) -> Result<(), String> {
    let pcfg = node.cfg.partition_config();
    let mut parts = BTreeMap::new();
    for p in node.partitions_of(core) {
        let dir = node.data_dir.join(format!("p{p:05}"));
        match Partition::open(&dir, p, pcfg.clone()).await {
            Ok(part) => {
                // New writes must get versions above every stored one, even
                // when the wall clock went backwards across the restart or
                // stored versions came from a peer whose clock runs ahead.
                node.hlc.observe(part.max_hlc());
                parts.insert(p, part);
            }
            Err(e) => {
                let msg = format!("opening partition {p} in {}: {e}", dir.display());
                let _ = ready.send(Err(msg.clone()));
                return Err(msg);
            }
        }
    }
    let c = Rc::new(Core {
        id: core,
        metrics: node.metrics[core].clone(),
        node: node.clone(),
        parts,
        stopping: Cell::new(false),
        stop_waiters: RefCell::new(BTreeMap::new()),
        cold: storage::ColdReader::new(),
        next_stop_slot: Cell::new(0),
        request_seq: Cell::new(0),
        ext: Default::default(),
    });
    let _ = ready.send(Ok(core));
    drop(ready);
    // Background maintenance: compaction.
    glommio::spawn_local(compaction_loop(c.clone())).detach();
    glommio::spawn_local(crate::objects::orphan_sweep_loop(c.clone())).detach();
    while !c.stopping.get() {
        let job = futures_lite::future::or(async { rx.recv_async().await.ok() }, async {
            c.stopped().await;
            None
        })
        .await;
        match job {
            Some(job) => {
                glommio::spawn_local(job(c.clone())).detach();
            }
            None => break,
        }
    }
    // Let in-flight jobs from other cores finish, then close the partitions.
    glommio::timer::sleep(Duration::from_millis(50)).await;
    while let Ok(job) = rx.try_recv() {
        job(c.clone()).await;
    }
    let mut first_err = None;
    for (p, part) in c.parts.iter() {
        if let Err(e) = part.close().await {
            log::error!("closing partition {p}: {e}");
            first_err.get_or_insert(e.to_string());
        }
    }
    match first_err {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

async fn compaction_loop(c: Rc<Core>) {
    let every = Duration::from_millis(c.node.cfg.storage.compaction_interval_ms);
    loop {
        futures_lite::future::or(glommio::timer::sleep(every), c.stopped()).await;
        if c.stopping.get() {
            return;
        }
        for part in c.parts.values() {
            match part.compact().await {
                Ok(Some(s)) => log::debug!("partition {}: compacted {} segments", part.id(), s.segments_in),
                Ok(None) => {}
                Err(e) => log::warn!("partition {}: compaction failed: {e}", part.id()),
            }
            if c.stopping.get() {
                return;
            }
        }
    }
}
