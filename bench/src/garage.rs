//! Garage (https://garagehq.deuxfleurs.fr) as a real peer for the S3
//! benchmark: one node, replication factor 1, data and metadata on the same
//! filesystem as the dataplane node, loaded by the same load generator.
//! The binary comes from `scripts/peers.sh` (`cargo install garage --locked`
//! into `~/.cache/dataplane-peers`), or `$GARAGE_BIN`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::Res;

/// Access key imported into Garage for the benchmark (Garage's key format:
/// `GK` and 24 hex digits; secret: 64 hex digits).
pub const ACCESS_KEY: &str = "GK0123456789abcdef01234567";
pub const SECRET_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// Longest Garage takes to start and to settle its layout.
const START_TIMEOUT_SECS: u64 = 60;

pub fn garage_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("GARAGE_BIN") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let p = Path::new(&home).join(".cache/dataplane-peers/bin/garage");
    p.exists().then_some(p)
}

pub struct Garage {
    pub s3: SocketAddr,
    bin: PathBuf,
    config: PathBuf,
    child: Child,
}

impl Garage {
    /// Starts a single node in `dir`; `fsync`: Garage's `metadata_fsync` and
    /// `data_fsync` (what matches dataplane's `storage.sync = always`).
    pub fn start(dir: &Path, base_port: u16, fsync: bool) -> Res<Garage> {
        let bin = garage_bin().ok_or("garage is not installed: run scripts/peers.sh (cargo install garage --locked, about 12 minutes) or set GARAGE_BIN")?;
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let s3: SocketAddr = format!("127.0.0.1:{base_port}").parse().unwrap();
        let rpc = format!("127.0.0.1:{}", base_port + 1);
        let config = dir.join("garage.toml");
        let toml = format!(
            r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "lmdb"
replication_factor = 1
metadata_fsync = {fsync}
data_fsync = {fsync}
rpc_bind_addr = "{rpc}"
rpc_public_addr = "{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "us-east-1"
api_bind_addr = "{s3}"
root_domain = ".s3.garage.localhost"
"#,
            meta = dir.join("meta").display(),
            data = dir.join("data").display(),
            secret = "5c1915fa04d0b6739675c61bf5907eb0fe3d9c69850c83820f51b4d25d13868c",
        );
        std::fs::write(&config, toml).map_err(|e| format!("{}: {e}", config.display()))?;
        let log = std::fs::File::create(dir.join("garage.log")).map_err(|e| e.to_string())?;
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&config)
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start {}: {e}", bin.display()))?;
        let g = Garage { s3, bin, config, child };
        g.setup()?;
        Ok(g)
    }

    fn cli(&self, args: &[&str]) -> Res<String> {
        let out = Command::new(&self.bin).arg("-c").arg(&self.config).args(args).stdin(Stdio::null()).output().map_err(|e| format!("garage {}: {e}", args.join(" ")))?;
        if !out.status.success() {
            return Err(format!("garage {}: {}{}", args.join(" "), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Layout (one node, one zone), the benchmark's key and bucket.
    fn setup(&self) -> Res<()> {
        let t = Instant::now();
        let id = loop {
            match self.cli(&["node", "id", "-q"]) {
                Ok(s) => break s.trim().split('@').next().unwrap_or("").to_string(),
                Err(e) if t.elapsed() > Duration::from_secs(START_TIMEOUT_SECS) => return Err(format!("garage did not start: {e}")),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        };
        self.cli(&["layout", "assign", "-z", "dc1", "-c", "100G", &id])?;
        self.cli(&["layout", "apply", "--version", "1"])?;
        self.cli(&["key", "import", "--yes", "-n", "bench", ACCESS_KEY, SECRET_KEY])?;
        self.cli(&["bucket", "create", "bench"])?;
        self.cli(&["bucket", "allow", "--read", "--write", "--owner", "bench", "--key", "bench"])?;
        // The layout takes a moment to apply: wait until a PUT goes through.
        loop {
            let mut c = crate::util::client_as(self.s3, (ACCESS_KEY, SECRET_KEY));
            match c.put("bench", "probe", b"x") {
                Ok(r) if r.status == 200 => return Ok(()),
                other if t.elapsed() > Duration::from_secs(START_TIMEOUT_SECS) => return Err(format!("garage does not take PUTs: {:?}", other.map(|r| r.status))),
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        // SAFETY: signalling our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
