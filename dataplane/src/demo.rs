//! `dataplane demo`: starts local clusters in temporary directories, writes
//! objects and shows what happens.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::{admin_request, S3Client};

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Objects to write.
    #[arg(long, default_value_t = 300)]
    pub objects: usize,
    /// First port to use (each cluster takes a few consecutive ports).
    #[arg(long, default_value_t = 18080)]
    pub base_port: u16,
    /// Keep the data directories instead of deleting them.
    #[arg(long)]
    pub keep: bool,
    /// Cores per cluster.
    #[arg(long, default_value_t = 2)]
    pub cores: usize,
}

pub const DEMO_ACCESS_KEY: &str = "demo";
pub const DEMO_SECRET_KEY: &str = "demo-secret-key";

pub struct Cluster {
    pub name: String,
    pub dir: PathBuf,
    pub s3: std::net::SocketAddr,
    pub admin: String,
    pub repl: std::net::SocketAddr,
    child: Option<Child>,
}

impl Cluster {
    pub fn start(name: &str, root: &Path, port: u16, cores: usize) -> Result<Cluster, String> {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let s3: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let admin = format!("127.0.0.1:{}", port + 1);
        let repl: std::net::SocketAddr = format!("127.0.0.1:{}", port + 2).parse().unwrap();
        let cfg = format!(
            "[node]\ndata_dir = \"{}\"\ncores = {cores}\nring_size = 16\nlog_level = \"warn\"\n\n[cluster]\nname = \"{name}\"\n\n[s3]\nlisten = \"{s3}\"\n\n[[s3.keys]]\naccess_key = \"{DEMO_ACCESS_KEY}\"\nsecret_key = \"{DEMO_SECRET_KEY}\"\n\n[storage]\nsegment_bytes = 16777216\nio_memory_bytes = 16777216\n\n[admin]\nlisten = \"{admin}\"\n\n[repl]\nlisten = \"{repl}\"\n",
            dir.join("data").display()
        );
        let cfg_path = dir.join("dataplane.toml");
        std::fs::write(&cfg_path, cfg).map_err(|e| e.to_string())?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("node.log")).map_err(|e| e.to_string())?;
        let child = Command::new(exe)
            .args(["serve", "--config"])
            .arg(&cfg_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {name}: {e}"))?;
        let c = Cluster { name: name.into(), dir, s3, admin, repl, child: Some(child) };
        c.wait_ready(Duration::from_secs(30))?;
        Ok(c)
    }

    fn wait_ready(&self, limit: Duration) -> Result<(), String> {
        let t = Instant::now();
        while t.elapsed() < limit {
            if let Ok(r) = admin_request(&self.admin, "GET", "/health", "", "") {
                if r.status == 200 && std::net::TcpStream::connect(self.s3).is_ok() {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default();
        Err(format!("cluster {} did not come up within {limit:?}; its log:\n{log}", self.name))
    }

    pub fn client(&self) -> S3Client {
        S3Client::new(self.s3, DEMO_ACCESS_KEY, DEMO_SECRET_KEY)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: sending SIGTERM to our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(20) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn payload(i: usize, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
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
    match i % 10 {
        0 => 3 << 20,
        1 | 2 => 300 << 10,
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

fn run_inner(args: DemoArgs) -> Result<(), String> {
    let root = std::env::temp_dir().join(format!("dataplane-demo-{}", std::process::id()));
    std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
    println!("dataplane demo: data under {}", root.display());
    let result = (|| {
        let mut a = Cluster::start("dc1", &root, args.base_port, args.cores)?;
        println!("cluster dc1: S3 on {}, admin on {}", a.s3, a.admin);
        let mut s3 = a.client();
        let r = s3.create_bucket("demo").map_err(|e| e.to_string())?;
        if r.status != 200 {
            return Err(format!("create bucket: {} {}", r.status, r.text()));
        }
        let t = Instant::now();
        let mut bytes = 0;
        for i in 0..args.objects {
            let data = payload(i, demo_size(i));
            let r = s3.put("demo", &format!("obj-{i:05}"), &data).map_err(|e| e.to_string())?;
            if r.status != 200 {
                return Err(format!("PUT obj-{i:05}: {} {}", r.status, r.text()));
            }
            bytes += data.len();
        }
        let secs = t.elapsed().as_secs_f64();
        println!("wrote {} objects, {:.1} MiB in {:.2} s: {:.0} objects/s, {:.1} MiB/s", args.objects, bytes as f64 / 1048576.0, secs, args.objects as f64 / secs, bytes as f64 / 1048576.0 / secs);
        let t = Instant::now();
        for i in 0..args.objects {
            let r = s3.get("demo", &format!("obj-{i:05}")).map_err(|e| e.to_string())?;
            if r.status != 200 || r.body != payload(i, demo_size(i)) {
                return Err(format!("GET obj-{i:05}: status {} or content differs", r.status));
            }
        }
        let secs = t.elapsed().as_secs_f64();
        println!("read back and verified {} objects in {:.2} s: {:.1} MiB/s", args.objects, secs, bytes as f64 / 1048576.0 / secs);
        a.stop();
        Ok(())
    })();
    if !args.keep {
        let _ = std::fs::remove_dir_all(&root);
    }
    result
}
