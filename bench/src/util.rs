//! Helpers the scenarios share: the `dataplane` binary, cluster pairs,
//! parallel S3 writers, realtime drain timing, percentiles.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use std::process::Command;

use dataplane::client::S3Client;
use dataplane::demo::{free_base_port, Cluster, ClusterOpts, DEMO_ACCESS_KEY, DEMO_SECRET_KEY};
use serde_json::{json, Value};

pub type Res<T> = Result<T, String>;

/// The `dataplane` binary next to this benchmark binary
/// (target/release/dataplane), or `$DATAPLANE_BIN`.
pub fn dataplane_bin() -> PathBuf {
    if let Ok(p) = std::env::var("DATAPLANE_BIN") {
        return PathBuf::from(p);
    }
    let me = std::env::current_exe().expect("current exe");
    let bin = me.parent().expect("exe dir").join("dataplane");
    if !bin.exists() {
        eprintln!(
            "{} does not exist: build it first with `cargo build --release -p bench -p dataplane` \
             (cargo run -p bench does not build the dataplane binary), or set DATAPLANE_BIN",
            bin.display()
        );
        std::process::exit(2);
    }
    static STALE: std::sync::Once = std::sync::Once::new();
    STALE.call_once(|| check_stale(&me, &bin));
    bin
}

/// Warns when a source file of the node is newer than its binary.
fn check_stale(_me: &Path, bin: &Path) {
    fn newest(dir: &Path) -> Option<std::time::SystemTime> {
        let mut best = None;
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let p = e.path();
            let t = if p.is_dir() { newest(&p) } else { p.metadata().and_then(|m| m.modified()).ok() };
            best = best.max(t);
        }
        best
    }
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else { return };
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for c in ["dataplane/src", "storage/src", "wire/src"] {
        if newest(&ws.join(c)).map(|t| t > built).unwrap_or(false) {
            eprintln!("note: {c} changed after {} was built; rebuild it with `cargo build --release -p dataplane`", bin.display());
            return;
        }
    }
}

/// Cluster options for a benchmark node: the release binary, warn-level
/// logs (BENCH_LOG=info for more).
pub fn opts(name: &str, cores: usize, extra: &str) -> ClusterOpts {
    let mut o = ClusterOpts::new(name);
    o.cores = cores;
    o.bin = Some(dataplane_bin());
    o.log_level = std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".into());
    // BENCH_REPL_EXTRA: more `[repl]` keys for tuning experiments
    // (e.g. "window_bytes = 268435456").
    let more = std::env::var("BENCH_REPL_EXTRA").map(|v| v.replace("\\n", "\n") + "\n").unwrap_or_default();
    o.extra = format!("{more}{extra}");
    // BENCH_SET: `section.key=value` overrides for every node, space
    // separated (e.g. "storage.io_memory_bytes=67108864").
    o.sets = std::env::var("BENCH_SET").map(|v| v.split_whitespace().map(String::from).collect()).unwrap_or_default();
    o
}

pub fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// A fresh directory for a scenario under the work dir.
pub fn fresh_dir(work: &Path, name: &str) -> PathBuf {
    let d = work.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scenario dir");
    d
}

pub fn start(root: &Path, o: ClusterOpts) -> Res<Cluster> {
    Cluster::start(root, free_base_port(), o)
}

pub fn start_at(root: &Path, port: u16, o: ClusterOpts) -> Res<Cluster> {
    Cluster::start(root, port, o)
}

pub fn client(addr: SocketAddr) -> S3Client {
    client_as(addr, (DEMO_ACCESS_KEY, DEMO_SECRET_KEY))
}

pub fn client_as(addr: SocketAddr, (access, secret): (&str, &str)) -> S3Client {
    let mut c = S3Client::new(addr, access, secret);
    c.timeout = Duration::from_secs(120);
    c
}

/// CPU time (user + system) process `pid` has used so far, seconds.
pub fn cpu_secs_of(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) start after ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (f64, f64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / hz)
}

/// CPU time this process (the load generator) has used so far, seconds.
pub fn own_cpu_secs() -> f64 {
    cpu_secs_of(std::process::id()).unwrap_or(0.0)
}

pub fn create_bucket(c: &Cluster, bucket: &str) -> Res<()> {
    let r = c.client().create_bucket(bucket).map_err(|e| format!("create bucket {bucket}: {e}"))?;
    if r.status != 200 {
        return Err(format!("create bucket {bucket}: {} {}", r.status, r.text()));
    }
    Ok(())
}

pub fn post(c: &Cluster, path: &str, body: Value) -> Res<Value> {
    c.admin("POST", path, body).map_err(|e| format!("{} POST {path}: {e}", c.name))
}

/// Object content for benchmarks: a per-writer random base with the object
/// number stamped at the start of every 64 KiB, so every block differs.
pub struct Payload {
    buf: Vec<u8>,
}

impl Payload {
    pub fn new(seed: usize, size: usize) -> Payload {
        Payload { buf: dataplane::demo::payload(seed, size) }
    }

    pub fn for_object(&mut self, i: usize) -> &[u8] {
        let stamp = (i as u64).to_le_bytes();
        let mut at = 0;
        while at < self.buf.len() {
            let n = (self.buf.len() - at).min(8);
            self.buf[at..at + n].copy_from_slice(&stamp[..n]);
            at += 64 << 10;
        }
        &self.buf
    }
}

/// What a parallel write did.
pub struct WriteStats {
    pub secs: f64,
    pub objects: u64,
    pub bytes: u64,
}

impl WriteStats {
    pub fn bytes_per_sec(&self) -> f64 {
        self.bytes as f64 / self.secs
    }
    pub fn objects_per_sec(&self) -> f64 {
        self.objects as f64 / self.secs
    }
}

/// PUTs objects `0..n` (key from `key(i)`, `size` bytes each) with `threads`
/// clients, each its own connection; thread t writes i = t, t+threads, ...
pub fn put_parallel(addr: SocketAddr, bucket: &str, n: usize, size: usize, threads: usize, seed: usize, key: &(dyn Fn(usize) -> String + Sync)) -> Res<WriteStats> {
    put_range(addr, bucket, 0..n, size, threads, seed, key)
}

/// PUTs objects `range` (see `put_parallel`).
pub fn put_range(addr: SocketAddr, bucket: &str, range: std::ops::Range<usize>, size: usize, threads: usize, seed: usize, key: &(dyn Fn(usize) -> String + Sync)) -> Res<WriteStats> {
    put_range_as(addr, (DEMO_ACCESS_KEY, DEMO_SECRET_KEY), bucket, range, size, threads, seed, key)
}

/// `put_range` with other credentials (another S3 server).
#[allow(clippy::too_many_arguments)]
pub fn put_range_as(addr: SocketAddr, creds: (&str, &str), bucket: &str, range: std::ops::Range<usize>, size: usize, threads: usize, seed: usize, key: &(dyn Fn(usize) -> String + Sync)) -> Res<WriteStats> {
    let (first, n) = (range.start, range.end);
    let bytes = AtomicU64::new(0);
    let t = Instant::now();
    std::thread::scope(|sc| {
        let mut hs = Vec::new();
        for th in 0..threads {
            let bytes = &bytes;
            hs.push(sc.spawn(move || -> Res<()> {
                let mut c = client_as(addr, creds);
                let mut p = Payload::new(seed * 1000 + th, size);
                let mut i = first + th;
                while i < n {
                    let k = key(i);
                    let data = p.for_object(i);
                    let r = c.put(bucket, &k, data).map_err(|e| format!("PUT {bucket}/{k}: {e}"))?;
                    if r.status != 200 {
                        return Err(format!("PUT {bucket}/{k}: {} {}", r.status, r.text()));
                    }
                    bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                    i += threads;
                }
                Ok(())
            }));
        }
        hs.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("writer panicked".into()))).collect::<Res<Vec<()>>>()
    })?;
    Ok(WriteStats { secs: t.elapsed().as_secs_f64(), objects: (n - first) as u64, bytes: bytes.load(Ordering::Relaxed) })
}

/// PUTs a node takes before the bench restarts it during long preloads
/// (BENCH_RESTART_EVERY, default 0 = never). It worked around a node bug,
/// fixed since (a waker left behind by every lost race against
/// `Core::stopped()` overflowed glommio's i16 task reference count after
/// ~32k cross-core jobs); kept to compare runs with the figures recorded
/// before the fix.
pub fn restart_every() -> usize {
    std::env::var("BENCH_RESTART_EVERY").ok().and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// `put_parallel` for long preloads: restarts the node every
/// `restart_every()` PUTs (gracefully; queued records stay queued); the
/// time reported is the writing time only.
pub fn put_preload(c: &mut Cluster, bucket: &str, n: usize, size: usize, threads: usize, seed: usize, key: &(dyn Fn(usize) -> String + Sync)) -> Res<WriteStats> {
    let every = restart_every();
    if every == 0 || n <= every {
        return put_parallel(c.s3, bucket, n, size, threads, seed, key);
    }
    println!("  NOTE: restarting {} every {every} PUTs of this preload (BENCH_RESTART_EVERY; 0 disables)", c.name);
    let mut total = WriteStats { secs: 0.0, objects: 0, bytes: 0 };
    let mut at = 0;
    while at < n {
        let end = (at + every).min(n);
        let w = put_range(c.s3, bucket, at..end, size, threads, seed, key)?;
        total.secs += w.secs;
        total.objects += w.objects;
        total.bytes += w.bytes;
        at = end;
        if at < n {
            c.restart()?;
        }
    }
    Ok(total)
}

/// GETs objects `0..n` with `threads` clients; checks the length (and the
/// stamp of the first bytes) of every object.
pub fn get_parallel(addr: SocketAddr, bucket: &str, n: usize, size: usize, threads: usize, key: &(dyn Fn(usize) -> String + Sync)) -> Res<WriteStats> {
    get_parallel_as(addr, (DEMO_ACCESS_KEY, DEMO_SECRET_KEY), bucket, n, size, threads, key)
}

/// `get_parallel` with other credentials (another S3 server).
pub fn get_parallel_as(addr: SocketAddr, creds: (&str, &str), bucket: &str, n: usize, size: usize, threads: usize, key: &(dyn Fn(usize) -> String + Sync)) -> Res<WriteStats> {
    let bytes = AtomicU64::new(0);
    let t = Instant::now();
    std::thread::scope(|sc| {
        let mut hs = Vec::new();
        for th in 0..threads {
            let bytes = &bytes;
            hs.push(sc.spawn(move || -> Res<()> {
                let mut c = client_as(addr, creds);
                let mut i = th;
                while i < n {
                    let k = key(i);
                    let r = c.get(bucket, &k).map_err(|e| format!("GET {bucket}/{k}: {e}"))?;
                    if r.status != 200 || r.body.len() != size {
                        return Err(format!("GET {bucket}/{k}: status {} length {} (expected {size})", r.status, r.body.len()));
                    }
                    let n8 = size.min(8);
                    if r.body[..n8] != (i as u64).to_le_bytes()[..n8] {
                        return Err(format!("GET {bucket}/{k}: content is not the object written"));
                    }
                    bytes.fetch_add(r.body.len() as u64, Ordering::Relaxed);
                    i += threads;
                }
                Ok(())
            }));
        }
        hs.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("reader panicked".into()))).collect::<Res<Vec<()>>>()
    })?;
    Ok(WriteStats { secs: t.elapsed().as_secs_f64(), objects: n as u64, bytes: bytes.load(Ordering::Relaxed) })
}

/// Connects `src` to a sink whose cluster manager is reached at `addr`
/// (the sink's own port, or a proxy in front of it) and enables realtime
/// (stopped: writes queue up until `start`).
pub fn connect_enable(src: &Cluster, addr: &str, sink: &str) -> Res<()> {
    let v = post(src, "/repl/connect", json!({"addr": addr}))?;
    if v["sink"].as_str() != Some(sink) {
        return Err(format!("connected to {addr} but the peer calls itself {:?}, not {sink:?}", v["sink"]));
    }
    post(src, "/repl/realtime/enable", json!({"sink": sink}))?;
    Ok(())
}

/// A realtime drain, timed from `realtime/start` until the source has
/// nothing queued or unacked for the sink.
pub struct Drain {
    pub secs: f64,
    /// Record bytes acked during the drain (blocks + manifests).
    pub record_bytes: u64,
    pub records: u64,
    /// Acked-bytes rate between 10 % and 90 % of the drain (steady state).
    pub steady_bytes_per_sec: f64,
    /// Seconds from `realtime start` to the first acknowledged byte.
    pub first_ack_secs: f64,
    pub tls_mode: String,
}

/// How often a drain polls the source's status (the drain's time is known
/// to within this).
const DRAIN_POLL_MS: u64 = 2;

/// BENCH_PERF_DRAIN=FILE (a profiling aid): `perf record -g` of every
/// running `dataplane serve` process during the drain only, into FILE;
/// BENCH_PERF_CALLGRAPH=dwarf unwinds with the debug info instead;
/// BENCH_PERF_EVENTS="-e EVENT" records other events than CPU samples.
fn perf_during_drain() -> Option<std::process::Child> {
    let out = std::env::var("BENCH_PERF_DRAIN").ok()?;
    let pids = Command::new("pgrep").args(["-d,", "-f", "dataplane serve"]).output().ok()?;
    let pids = String::from_utf8_lossy(&pids.stdout).trim().to_string();
    let cg: &[&str] = if std::env::var("BENCH_PERF_CALLGRAPH").as_deref() == Ok("dwarf") { &["--call-graph", "dwarf,16384"] } else { &["-g"] };
    // BENCH_PERF_EVENTS: other events than CPU samples (e.g. "-e sched:sched_switch").
    let events: Vec<String> = std::env::var("BENCH_PERF_EVENTS").map(|v| v.split_whitespace().map(String::from).collect()).unwrap_or_else(|_| vec!["-F".into(), "1999".into()]);
    let child = Command::new("perf")
        .arg("record")
        .args(&events)
        .args(cg)
        .args(["-o", &out, "-p", &pids])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    // perf needs a moment to attach before the drain starts.
    std::thread::sleep(Duration::from_millis(500));
    println!("  (BENCH_PERF_DRAIN: perf record of pids {pids} into {out})");
    Some(child)
}

/// Starts realtime to `sink` and waits until it has drained.
pub fn start_and_drain(src: &Cluster, sink: &str, limit: Duration) -> Res<Drain> {
    let before = src.sink_status(sink).ok_or("no sink status")?;
    let acked0 = before["bytes_acked"].as_u64().unwrap_or(0);
    let rec0 = before["records_acked"].as_u64().unwrap_or(0);
    let queued = before["queued_bytes"].as_u64().unwrap_or(0);
    let perf = perf_during_drain();
    let t = Instant::now();
    post(src, "/repl/realtime/start", json!({"sink": sink}))?;
    let mut samples: Vec<(f64, u64)> = Vec::new();
    loop {
        let s = src.sink_status(sink).ok_or("no sink status")?;
        let el = t.elapsed().as_secs_f64();
        let acked = s["bytes_acked"].as_u64().unwrap_or(0) - acked0;
        samples.push((el, acked));
        if s["queued_records"].as_u64() == Some(0) && s["oldest_unacked_age_ms"].is_null() && s["data_connections"].as_u64().unwrap_or(0) > 0 {
            let total = acked.max(1);
            let at = |frac: f64| -> (f64, u64) {
                let goal = (total as f64 * frac) as u64;
                *samples.iter().find(|(_, b)| *b >= goal).unwrap_or(samples.last().unwrap())
            };
            let (t1, b1) = at(0.1);
            let (t9, b9) = at(0.9);
            let steady = if t9 > t1 && b9 > b1 { (b9 - b1) as f64 / (t9 - t1) } else { total as f64 / el };
            let first_ack_secs = samples.iter().find(|(_, b)| *b > 0).map(|s| s.0).unwrap_or(el);
            if let Some(mut p) = perf {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(p.id() as i32, libc::SIGINT) };
                let _ = p.wait();
            }
            return Ok(Drain {
                first_ack_secs,
                secs: el,
                record_bytes: acked,
                records: s["records_acked"].as_u64().unwrap_or(0) - rec0,
                steady_bytes_per_sec: steady,
                tls_mode: s["tls_mode"].as_str().unwrap_or("?").to_string(),
            });
        }
        if t.elapsed() > limit {
            return Err(format!("realtime from {} to {sink} did not drain {queued} queued bytes within {limit:?}: {s}", src.name));
        }
        std::thread::sleep(Duration::from_millis(DRAIN_POLL_MS));
    }
}

/// Stops realtime to `sink` and waits until its data connections are closed.
pub fn stop_realtime(src: &Cluster, sink: &str) -> Res<()> {
    post(src, "/repl/realtime/stop", json!({"sink": sink}))?;
    wait_for(Duration::from_secs(20), "realtime data connections closed", || {
        src.sink_status(sink).map(|s| s["data_connections"].as_u64() == Some(0)).unwrap_or(false)
    })
}

pub fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Res<()> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("timed out after {limit:?} waiting for: {what}"))
}

/// Percentile `p` (0..=1) of `v` (sorted in place), nearest rank.
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Pid of the `dataplane serve` process whose config lives in `dir`.
pub fn node_pid(dir: &Path) -> Option<u32> {
    let cfg = dir.join("dataplane.toml");
    let want = cfg.to_string_lossy().into_owned();
    for e in std::fs::read_dir("/proc").ok()? {
        let e = e.ok()?;
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let args: Vec<String> = cmd.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            if args.iter().any(|a| a == "serve") && args.iter().any(|a| *a == want) {
                return Some(pid);
            }
        }
    }
    None
}

/// Resident set size of process `pid`, bytes.
pub fn rss_of(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    l.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

pub fn gbps(bytes_per_sec: f64) -> String {
    format!("{:.2} GB/s", bytes_per_sec / 1e9)
}

/// Size label: 1KiB, 64KiB, 1MiB, ...
pub fn size_label(size: usize) -> String {
    if size >= 1 << 20 && size % (1 << 20) == 0 {
        format!("{}MiB", size >> 20)
    } else if size >= 1 << 10 && size % (1 << 10) == 0 {
        format!("{}KiB", size >> 10)
    } else {
        format!("{size}B")
    }
}

/// Removes a scenario's directory, unless BENCH_KEEP is set (to look at
/// the nodes' logs and data afterwards).
pub fn cleanup(dir: &Path) {
    if std::env::var_os("BENCH_KEEP").is_some() {
        println!("(BENCH_KEEP: leaving {})", dir.display());
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
}
