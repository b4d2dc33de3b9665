//! `dataplane demo`: two clusters in temporary directories, one replicating
//! to the other; objects written to the first are shown arriving at the
//! second. `Cluster` is also the launcher the integration tests and the
//! benchmarks use: it runs real `dataplane serve` processes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::{admin_request, S3Client};

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Objects to write.
    #[arg(long, default_value_t = 400)]
    pub objects: usize,
    /// First port to use (each cluster takes a few consecutive ports).
    #[arg(long, default_value_t = 18080)]
    pub base_port: u16,
    /// Keep the data directories instead of deleting them.
    #[arg(long)]
    pub keep: bool,
    /// Cores per cluster.
    #[arg(long, default_value_t = 1)]
    pub cores: usize,
    /// Replicate over mutual TLS with the certificates in DIR: ca.pem,
    /// dc1.crt, dc1.key, dc2.crt, dc2.key.
    #[arg(long)]
    pub tls_dir: Option<PathBuf>,
    /// With --tls-dir: keep TLS in userspace (no kTLS handoff).
    #[arg(long)]
    pub no_ktls: bool,
    /// Also write objects with realtime stopped and repair them by fullsync.
    #[arg(long)]
    pub fullsync: bool,
    /// Fail unless every replication connection, both ends, runs in this
    /// mode (plaintext, rustls or ktls).
    #[arg(long)]
    pub expect_mode: Option<String>,
    /// Where to put the clusters' data (default: a temporary directory).
    #[arg(long)]
    pub data_root: Option<PathBuf>,
    /// Object size cap in bytes (the default workload goes up to 3 MiB).
    #[arg(long)]
    pub max_size: Option<usize>,
    /// Also measure realtime drain throughput: write this many MiB (1 MiB
    /// objects) with realtime stopped, start it, time until dc2 has them.
    #[arg(long)]
    pub drain_mib: Option<usize>,
}

pub const DEMO_ACCESS_KEY: &str = "demo";
pub const DEMO_SECRET_KEY: &str = "demo-secret-key";

/// Ports a cluster takes from its base: S3, admin, then the cluster manager
/// at +10 and one data port per core after it.
pub const PORTS_PER_CLUSTER: u16 = 32;

#[derive(Clone, Debug)]
pub struct ClusterOpts {
    pub name: String,
    pub cores: usize,
    pub ring_size: u32,
    /// Extra TOML appended to the configuration, right after the `[repl]`
    /// keys: bare keys land in `[repl]`, other sections need their own
    /// `[section]` header (and must not be one written here already; use
    /// `sets` for those).
    pub extra: String,
    /// `section.key=value` overrides passed as `--set` (any section).
    pub sets: Vec<String>,
    pub log_level: String,
    /// The binary to run (default: this executable).
    pub bin: Option<PathBuf>,
}

impl ClusterOpts {
    pub fn new(name: &str) -> ClusterOpts {
        ClusterOpts { name: name.into(), cores: 2, ring_size: 16, extra: String::new(), sets: Vec::new(), log_level: "info".into(), bin: None }
    }
}

pub struct Cluster {
    pub name: String,
    pub dir: PathBuf,
    pub s3: std::net::SocketAddr,
    pub admin: String,
    pub repl: std::net::SocketAddr,
    opts: ClusterOpts,
    child: Option<Child>,
}

/// Cluster ports are taken from `FIRST_CLUSTER_PORT .. EPHEMERAL_PORTS_START`,
/// below Linux's ephemeral range (32768 and up by default): a client polling
/// a port that is not listening yet could otherwise be handed that very port
/// as its own source port and connect to itself (TCP simultaneous open),
/// which then keeps the node from binding it.
const FIRST_CLUSTER_PORT: u16 = 10000;
const EPHEMERAL_PORTS_START: u16 = 32768;

/// Picks a base port with PORTS_PER_CLUSTER free ports after it.
pub fn free_base_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let slots = (EPHEMERAL_PORTS_START - FIRST_CLUSTER_PORT) / PORTS_PER_CLUSTER;
    let start = (std::process::id() % slots as u32) as u16;
    for _ in 0..slots {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let base = FIRST_CLUSTER_PORT + (start.wrapping_add(n) % slots) * PORTS_PER_CLUSTER;
        if (0..PORTS_PER_CLUSTER).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no {PORTS_PER_CLUSTER} consecutive free loopback ports between {FIRST_CLUSTER_PORT} and {EPHEMERAL_PORTS_START}");
}

impl Cluster {
    pub fn start(root: &Path, port: u16, opts: ClusterOpts) -> Result<Cluster, String> {
        let dir = root.join(&opts.name);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let s3: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let admin = format!("127.0.0.1:{}", port + 1);
        let repl: std::net::SocketAddr = format!("127.0.0.1:{}", port + 10).parse().unwrap();
        let cfg = format!(
            "[node]\ndata_dir = \"{}\"\ncores = {}\nring_size = {}\nlog_level = \"{}\"\n\n[cluster]\nname = \"{}\"\n\n[s3]\nlisten = \"{s3}\"\n\n[[s3.keys]]\naccess_key = \"{DEMO_ACCESS_KEY}\"\nsecret_key = \"{DEMO_SECRET_KEY}\"\n\n[storage]\nsegment_bytes = 16777216\nio_memory_bytes = 16777216\n\n[admin]\nlisten = \"{admin}\"\n\n[repl]\nlisten = \"{repl}\"\n{}\n",
            dir.join("data").display(),
            opts.cores,
            opts.ring_size,
            opts.log_level,
            opts.name,
            opts.extra
        );
        std::fs::write(dir.join("dataplane.toml"), cfg).map_err(|e| e.to_string())?;
        let mut c = Cluster { name: opts.name.clone(), dir, s3, admin, repl, opts, child: None };
        c.spawn()?;
        Ok(c)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let exe = match &self.opts.bin {
            Some(b) => b.clone(),
            None => std::env::current_exe().map_err(|e| e.to_string())?,
        };
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("node.log")).map_err(|e| e.to_string())?;
        let child = Command::new(exe)
            .args(["serve", "--config"])
            .arg(self.dir.join("dataplane.toml"))
            .args(self.opts.sets.iter().flat_map(|s| ["--set".to_string(), s.clone()]))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.name))?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(60))
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let t = Instant::now();
        while t.elapsed() < limit {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    return Err(format!("cluster {} exited ({st}) during startup; its log:\n{}", self.name, self.log_tail()));
                }
            }
            if let Ok(r) = admin_request(&self.admin, "GET", "/health", "", "") {
                if r.status == 200 && std::net::TcpStream::connect(self.s3).is_ok() {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("cluster {} did not come up within {limit:?}; its log:\n{}", self.name, self.log_tail()))
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    pub fn client(&self) -> S3Client {
        S3Client::new(self.s3, DEMO_ACCESS_KEY, DEMO_SECRET_KEY)
    }

    /// Calls the admin API; returns the JSON answer or the error message.
    pub fn admin(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let b = if body.is_null() { String::new() } else { body.to_string() };
        let r = admin_request(&self.admin, method, path, &b, "").map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        if r.status != 200 {
            return Err(v["error"].as_str().map(|s| s.to_string()).unwrap_or_else(|| r.text()));
        }
        Ok(v)
    }

    /// Makes `sink` a sink of this cluster and starts realtime to it.
    pub fn replicate_to(&self, sink: &Cluster) -> Result<(), String> {
        self.admin("POST", "/repl/connect", serde_json::json!({"addr": sink.repl.to_string()}))?;
        self.admin("POST", "/repl/realtime/enable", serde_json::json!({"sink": sink.name}))?;
        self.admin("POST", "/repl/realtime/start", serde_json::json!({"sink": sink.name}))?;
        Ok(())
    }

    /// Status of the sink named `sink` in this cluster's repl status.
    pub fn sink_status(&self, sink: &str) -> Option<Value> {
        let v = self.admin("GET", "/repl/status", Value::Null).ok()?;
        v["sinks"].as_array()?.iter().find(|s| s["sink"] == sink).cloned()
    }

    /// Waits until realtime to `sink` has nothing queued and nothing unacked.
    pub fn wait_drained(&self, sink: &str, limit: Duration) -> Result<(), String> {
        let t = Instant::now();
        while t.elapsed() < limit {
            if let Some(s) = self.sink_status(sink) {
                if s["queued_records"].as_u64() == Some(0) && s["oldest_unacked_age_ms"].is_null() && s["data_connections"].as_u64().unwrap_or(0) > 0 {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("realtime from {} to {sink} did not drain within {limit:?}: {:?}", self.name, self.sink_status(sink)))
    }

    /// SIGTERM and wait (graceful).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if !matches!(c.try_wait(), Ok(None)) {
                return; // already exited (and reaped): its pid may be reused
            }
            // SAFETY: signalling our own child, known to be alive and unreaped.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(30) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL (crash).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.spawn()
    }

    /// Starts a stopped cluster again with more `--set` overrides.
    pub fn start_again_with(&mut self, sets: &[&str]) -> Result<(), String> {
        self.opts.sets.extend(sets.iter().map(|s| s.to_string()));
        self.start_again()
    }

    pub fn start_again(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "cluster {} is running", self.name);
        self.spawn()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().map(|c| matches!(c.try_wait(), Ok(None))).unwrap_or(false)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Deterministic payload for object `i`.
pub fn payload(i: usize, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Object sizes of the demo workload: mostly small, some spanning blocks.
pub fn demo_size(i: usize) -> usize {
    match i % 20 {
        0 => 3 << 20,
        1..=3 => 300 << 10,
        _ => 1000 + (i * 7919) % 30_000,
    }
}

pub fn run(args: DemoArgs) -> i32 {
    match run_inner(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("demo failed: {e}");
            1
        }
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn tls_section(dir: &Path, name: &str, ktls: bool) -> String {
    format!(
        "[tls]\nenabled = true\nrequired = true\nktls = {ktls}\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n",
        dir.join(format!("{name}.crt")).display(),
        dir.join(format!("{name}.key")).display(),
        dir.join("ca.pem").display()
    )
}

/// Checks that every replication connection, on both clusters, runs in `mode`.
fn check_modes(a: &Cluster, b: &Cluster, mode: &str) -> Result<(), String> {
    let s = a.sink_status(&b.name).ok_or("no sink status")?;
    let v = b.admin("GET", "/repl/status", Value::Null)?;
    let src = v["sources"].as_array().and_then(|x| x.first().cloned()).ok_or("the sink sees no source")?;
    let mut seen = vec![
        ("source control", s["tls_mode"].as_str().unwrap_or("").to_string()),
        ("sink control", src["tls_mode"].as_str().unwrap_or("").to_string()),
    ];
    for (side, list) in [("source data", &s["data_tls_modes"]), ("sink data", &src["data_tls_modes"])] {
        let l = list.as_array().cloned().unwrap_or_default();
        if l.is_empty() {
            seen.push((side, "none".into()));
        }
        for m in l {
            seen.push((side, m.as_str().unwrap_or("").to_string()));
        }
    }
    println!("connection modes: {}", seen.iter().map(|(s, m)| format!("{s}={m}")).collect::<Vec<_>>().join(" "));
    match seen.iter().find(|(_, m)| m != mode) {
        Some((side, m)) => Err(format!("{side} connection runs in mode {m}, expected {mode}")),
        None => Ok(()),
    }
}

fn run_inner(args: DemoArgs) -> Result<(), String> {
    let root = args.data_root.clone().unwrap_or_else(|| std::env::temp_dir()).join(format!("dataplane-demo-{}", std::process::id()));
    std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
    println!("dataplane demo: two clusters under {}", root.display());
    let cap = args.max_size.unwrap_or(usize::MAX);
    let size = |i: usize| demo_size(i).min(cap);
    let result = (|| {
        let mut o1 = ClusterOpts::new("dc1");
        o1.cores = args.cores;
        o1.log_level = "warn".into();
        let mut o2 = o1.clone();
        o2.name = "dc2".into();
        if let Some(dir) = &args.tls_dir {
            o1.extra = tls_section(dir, "dc1", !args.no_ktls);
            o2.extra = tls_section(dir, "dc2", !args.no_ktls);
        }
        let a = Cluster::start(&root, args.base_port, o1)?;
        let b = Cluster::start(&root, args.base_port + PORTS_PER_CLUSTER, o2)?;
        println!("  dc1: S3 {}  admin {}  repl {}", a.s3, a.admin, a.repl);
        println!("  dc2: S3 {}  admin {}  repl {}", b.s3, b.admin, b.repl);
        a.replicate_to(&b)?;
        println!("dc1 replicates to dc2 in realtime (repl connect, realtime enable, realtime start)");
        let mut s3a = a.client();
        let r = s3a.create_bucket("demo").map_err(|e| e.to_string())?;
        if r.status != 200 {
            return Err(format!("create bucket: {} {}", r.status, r.text()));
        }
        // Writer on dc1, watcher on dc2 measuring when each object arrives.
        let n = args.objects;
        let (tx, rx) = std::sync::mpsc::channel::<(usize, Instant)>();
        let bs3 = b.s3;
        let watcher = std::thread::spawn(move || -> Result<Vec<f64>, String> {
            let mut s3b = S3Client::new(bs3, DEMO_ACCESS_KEY, DEMO_SECRET_KEY);
            let mut lags = Vec::new();
            while let Ok((i, written)) = rx.recv() {
                let key = format!("obj-{i:05}");
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let r = s3b.head("demo", &key).map_err(|e| e.to_string())?;
                    if r.status == 200 {
                        lags.push(written.elapsed().as_secs_f64() * 1000.0);
                        break;
                    }
                    if Instant::now() > deadline {
                        return Err(format!("{key} did not reach dc2 within 60 s"));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Ok(lags)
        });
        let t = Instant::now();
        let mut bytes = 0;
        for i in 0..n {
            let data = payload(i, size(i));
            let r = s3a.put("demo", &format!("obj-{i:05}"), &data).map_err(|e| e.to_string())?;
            if r.status != 200 {
                return Err(format!("PUT obj-{i:05}: {} {}", r.status, r.text()));
            }
            bytes += data.len();
            let _ = tx.send((i, Instant::now()));
        }
        drop(tx);
        let secs = t.elapsed().as_secs_f64();
        println!("wrote {n} objects ({:.1} MiB) to dc1 in {secs:.2} s: {:.0} objects/s, {:.1} MiB/s", bytes as f64 / 1048576.0, n as f64 / secs, bytes as f64 / 1048576.0 / secs);
        let mut lags = watcher.join().map_err(|_| "watcher panicked".to_string())??;
        let total = t.elapsed().as_secs_f64();
        println!(
            "all {n} objects visible on dc2 after {total:.2} s: replication lag p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(&mut lags, 0.5),
            percentile(&mut lags, 0.99),
            percentile(&mut lags, 1.0)
        );
        a.wait_drained("dc2", Duration::from_secs(300))?;
        let mut s3b = b.client();
        for i in 0..n {
            let r = s3b.get("demo", &format!("obj-{i:05}")).map_err(|e| e.to_string())?;
            if r.status != 200 || r.body != payload(i, size(i)) {
                return Err(format!("obj-{i:05} on dc2: status {} or content differs", r.status));
            }
        }
        println!("verified: every object on dc2 is byte-identical to dc1");
        let mut total = n;
        if args.fullsync {
            a.admin("POST", "/repl/realtime/stop", serde_json::json!({"sink": "dc2"}))?;
            for i in n..n + n / 2 + 1 {
                let r = s3a.put("demo", &format!("obj-{i:05}"), &payload(i, size(i))).map_err(|e| e.to_string())?;
                if r.status != 200 {
                    return Err(format!("PUT obj-{i:05}: {}", r.status));
                }
            }
            total = n + n / 2 + 1;
            let before = a.admin("GET", "/repl/fullsync/status", Value::Null)?["sinks"][0]["completed_runs"].as_u64().unwrap_or(0);
            a.admin("POST", "/repl/fullsync/start", serde_json::json!({"sink": "dc2"}))?;
            let t = Instant::now();
            loop {
                let s = a.admin("GET", "/repl/fullsync/status", Value::Null)?["sinks"][0].clone();
                if s["state"] != "running" && s["completed_runs"].as_u64().unwrap_or(0) > before {
                    println!(
                        "fullsync repaired dc2 in {:.2} s: {} segments differed, {} objects / {} bytes sent",
                        t.elapsed().as_secs_f64(),
                        s["segments_differing"],
                        s["objects_sent"],
                        s["bytes_sent"]
                    );
                    break;
                }
                if t.elapsed() > Duration::from_secs(600) {
                    return Err(format!("fullsync did not finish: {s}"));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            for i in n..total {
                let r = s3b.get("demo", &format!("obj-{i:05}")).map_err(|e| e.to_string())?;
                if r.status != 200 || r.body != payload(i, size(i)) {
                    return Err(format!("obj-{i:05} on dc2 after fullsync: status {} or content differs", r.status));
                }
            }
            println!("verified: the {} objects written with realtime stopped reached dc2 by fullsync", total - n);
        }
        if let Some(mib) = args.drain_mib {
            a.admin("POST", "/repl/realtime/stop", serde_json::json!({"sink": "dc2"}))?;
            for i in 0..mib {
                let r = s3a.put("drain", &format!("d-{i:05}"), &payload(1_000_000 + i, 1 << 20)).map_err(|e| e.to_string());
                match r {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) if r.status == 404 && i == 0 => {
                        s3a.create_bucket("drain").map_err(|e| e.to_string())?;
                        std::thread::sleep(Duration::from_millis(500));
                        let r = s3a.put("drain", &format!("d-{i:05}"), &payload(1_000_000 + i, 1 << 20)).map_err(|e| e.to_string())?;
                        if r.status != 200 {
                            return Err(format!("PUT drain object: {}", r.status));
                        }
                    }
                    Ok(r) => return Err(format!("PUT drain object: {}", r.status)),
                    Err(e) => return Err(e),
                }
            }
            let t = Instant::now();
            a.admin("POST", "/repl/realtime/start", serde_json::json!({"sink": "dc2"}))?;
            a.wait_drained("dc2", Duration::from_secs(900))?;
            let secs = t.elapsed().as_secs_f64();
            println!("realtime drain: {mib} MiB in {secs:.2} s = {:.1} MiB/s", mib as f64 / secs);
        }
        if let Some(mode) = &args.expect_mode {
            check_modes(&a, &b, mode)?;
            println!("every replication connection runs in mode {mode}");
        }
        let _ = total;
        if let Some(s) = a.sink_status("dc2") {
            println!(
                "dc1 -> dc2: {} records / {} bytes sent and acknowledged, {} reconnects, mode {}",
                s["records_acked"], s["bytes_acked"], s["reconnects"], s["tls_mode"].as_str().unwrap_or("?")
            );
        }
        Ok(())
    })();
    if !args.keep {
        let _ = std::fs::remove_dir_all(&root);
    }
    result
}
