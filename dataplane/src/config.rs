//! Configuration: a TOML file, overridden by `--set section.key=value` flags.
//! Every key and its default is listed in docs/operations.md; `validate`
//! refuses bad values with the key, the value and what is allowed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Largest ring the node supports.
pub const MAX_RING_SIZE: u32 = 4096;
/// Largest block size.
pub const MAX_BLOCK_BYTES: u32 = 16 << 20;
/// Smallest block size.
pub const MIN_BLOCK_BYTES: u32 = 4 << 10;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub node: NodeConfig,
    pub cluster: ClusterConfig,
    pub s3: S3Config,
    pub storage: StorageConfig,
    pub admin: AdminConfig,
    pub repl: ReplConfig,
    pub tls: TlsConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    /// Executors (one per core); 0 = every core of the machine.
    pub cores: usize,
    /// Partitions in the ring (power of two). Must match between clusters.
    pub ring_size: u32,
    /// Log level: error, warn, info, debug, trace.
    pub log_level: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Name of this cluster (site). `dataplane repl clustername NAME` changes it.
    pub name: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKey {
    pub access_key: String,
    pub secret_key: String,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Anonymous {
    /// Every request must be signed.
    None,
    /// Unsigned GET/HEAD/list requests are allowed.
    Read,
    /// Unsigned requests of every kind are allowed.
    All,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    pub listen: SocketAddr,
    pub region: String,
    pub keys: Vec<AccessKey>,
    pub anonymous: Anonymous,
    /// Objects are cut into blocks of this size.
    pub block_size: u32,
    /// Objects up to this size are stored inline in their manifest.
    pub inline_max: u32,
    /// Largest single PUT (S3: 5 GiB).
    pub max_put_bytes: u64,
    /// Smallest multipart part except the last (S3: 5 MiB).
    pub min_part_bytes: u64,
    /// Close a connection idle for this long.
    pub idle_timeout_ms: u64,
    /// Most connections one core serves at once.
    pub max_connections_per_core: usize,
    /// Blocks of an overwritten or deleted object are kept this long before
    /// they are reclaimed, so that GETs still streaming the old version
    /// finish.
    pub reclaim_leeway_ms: u64,
    /// Period of the orphan-block sweep (blocks nothing refers to are
    /// expunged after two consecutive passes find them).
    pub orphan_sweep_interval_ms: u64,
    /// Accept AWS Signature Version 2 (header and presigned query), as older
    /// clients and aws CLI v1 `s3 presign` send it.
    pub sigv2: bool,
    /// Domains for virtual-hosted–style requests: a Host of
    /// `BUCKET.DOMAIN` names the bucket. Empty: path style only.
    pub domains: Vec<String>,
    /// Address of the HTTPS listener (none: plain HTTP only, on `listen`).
    pub tls_listen: Option<SocketAddr>,
    /// PEM certificate chain of the HTTPS listener.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the HTTPS listener (mode 0600).
    pub tls_key: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SyncSetting {
    Always,
    Interval,
    None,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub sync: SyncSetting,
    pub sync_interval_ms: u64,
    pub segment_bytes: u64,
    pub write_buffer_bytes: usize,
    pub max_unflushed_bytes: usize,
    pub tree_segments: u32,
    pub tombstone_grace_ms: u64,
    pub compaction_garbage_ratio: f64,
    pub compaction_interval_ms: u64,
    /// io_uring buffer pool per core (glommio io_memory).
    pub io_memory_bytes: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Bearer token required by the admin API; mandatory when `listen` is
    /// not a loopback address.
    pub token: String,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Cascades {
    Always,
    Never,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplConfig {
    /// Cluster manager address; data connections use the next `cores` ports.
    pub listen: SocketAddr,
    /// Address peers should use to reach this node (defaults to `listen`).
    pub advertise: Option<SocketAddr>,
    /// Replicate blocks in realtime (false: manifests only, proxy_get fills in).
    pub realtime_blocks: bool,
    pub cascades: Cascades,
    /// Per sink: past this many bytes retained for it, its cursors are dropped
    /// and it is marked for fullsync.
    pub max_retained_bytes: u64,
    /// Realtime batch limits.
    pub batch_max_bytes: usize,
    pub batch_max_records: usize,
    /// How long an idle realtime sender waits for new records or an ack
    /// before polling the log again (a batch is sent as soon as records are
    /// there; this bounds the added latency when the log was empty).
    pub batch_linger_ms: u64,
    /// Unacknowledged bytes in flight per (sink, core) connection.
    pub window_bytes: usize,
    pub heartbeat_ms: u64,
    /// A peer silent for this long is considered dead.
    pub peer_timeout_ms: u64,
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    pub proxy_get_timeout_ms: u64,
    pub fullsync_on_connect: bool,
    pub fullsync_interval_min: u64,
    pub max_fssource_node: usize,
    pub max_fssink_node: usize,
    pub max_fssource_cluster: usize,
    /// Cap on fullsync traffic per sink (0 = unlimited).
    pub fullsync_max_bytes_per_sec: u64,
    pub fullsync_retry_max: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub enabled: bool,
    /// Refuse peers that do not speak TLS.
    pub required: bool,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// Peer certificate names allowed (exact, or `*.example.com`); empty = any
    /// certificate signed by the CA.
    pub peer_names: Vec<String>,
    /// Hand session keys to the kernel (kTLS) when it supports it.
    pub ktls: bool,
    /// Lowest TLS version: "1.2" or "1.3".
    pub min_version: String,
    /// Highest TLS version: "1.2" or "1.3".
    pub max_version: String,
    /// Re-establish a connection after this many encrypted records (AES-GCM
    /// confidentiality limit; KeyUpdate is never sent after a kTLS handoff).
    pub max_records_per_connection: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig { data_dir: PathBuf::from("/var/lib/dataplane"), cores: 0, ring_size: 64, log_level: "info".into() }
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig { name: "dataplane".into() }
    }
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            listen: "0.0.0.0:8080".parse().unwrap(),
            region: "us-east-1".into(),
            keys: Vec::new(),
            anonymous: Anonymous::None,
            block_size: 1 << 20,
            inline_max: 4096,
            max_put_bytes: 5 << 30,
            min_part_bytes: 5 << 20,
            idle_timeout_ms: 60_000,
            max_connections_per_core: 4096,
            reclaim_leeway_ms: 30_000,
            orphan_sweep_interval_ms: 600_000,
            sigv2: true,
            domains: Vec::new(),
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        let p = storage::PartitionConfig::default();
        StorageConfig {
            sync: SyncSetting::Interval,
            sync_interval_ms: 100,
            segment_bytes: p.segment_bytes,
            write_buffer_bytes: p.write_buffer_bytes,
            max_unflushed_bytes: p.max_unflushed_bytes,
            tree_segments: p.tree_segments,
            tombstone_grace_ms: p.tombstone_grace_ms,
            compaction_garbage_ratio: p.compaction_garbage_ratio,
            compaction_interval_ms: 10_000,
            io_memory_bytes: storage::RECOMMENDED_IO_MEMORY_BYTES,
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { listen: "127.0.0.1:8098".parse().unwrap(), token: String::new() }
    }
}

impl Default for ReplConfig {
    fn default() -> Self {
        ReplConfig {
            listen: "0.0.0.0:9080".parse().unwrap(),
            advertise: None,
            realtime_blocks: true,
            cascades: Cascades::Always,
            max_retained_bytes: 100 << 30,
            batch_max_bytes: 4 << 20,
            batch_max_records: 4096,
            batch_linger_ms: 2,
            window_bytes: 64 << 20,
            heartbeat_ms: 1000,
            peer_timeout_ms: 10_000,
            reconnect_min_ms: 100,
            reconnect_max_ms: 10_000,
            proxy_get_timeout_ms: 10_000,
            fullsync_on_connect: true,
            fullsync_interval_min: 360,
            max_fssource_node: 4,
            max_fssink_node: 4,
            max_fssource_cluster: 8,
            fullsync_max_bytes_per_sec: 0,
            fullsync_retry_max: 10,
        }
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            enabled: false,
            required: false,
            cert: PathBuf::new(),
            key: PathBuf::new(),
            ca: PathBuf::new(),
            peer_names: Vec::new(),
            ktls: true,
            min_version: "1.2".into(),
            max_version: "1.3".into(),
            max_records_per_connection: 1 << 24,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node: NodeConfig::default(),
            cluster: ClusterConfig::default(),
            s3: S3Config::default(),
            storage: StorageConfig::default(),
            admin: AdminConfig::default(),
            repl: ReplConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

/// A configuration error: which key, which value, what is allowed.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid configuration: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Upper bound for `s3.min_part_bytes`: S3's largest part.
const MAX_MIN_PART_BYTES: u64 = 5 << 30;
/// Upper bound for delays and periods that are plain waits: one day.
const MAX_DELAY_MS: u64 = 86_400_000;
/// Upper bound for `storage.tombstone_grace_ms`: 30 days.
const MAX_TOMBSTONE_GRACE_MS: u64 = 30 * MAX_DELAY_MS;
/// Smallest non-zero `repl.fullsync_max_bytes_per_sec` (one smallest batch a second).
const MIN_FULLSYNC_RATE_BYTES: u64 = 64 << 10;

fn bad<T>(key: &str, value: impl std::fmt::Display, allowed: &str) -> Result<T, ConfigError> {
    Err(ConfigError(format!("{key} = {value}: {allowed}")))
}

impl Config {
    /// Reads `path` (if given), applies `key=value` overrides, validates.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Config, ConfigError> {
        let mut doc: toml::Table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError(format!("cannot read {}: {e}", p.display())))?;
                text.parse::<toml::Table>().map_err(|e| ConfigError(format!("{}: {e}", p.display())))?
            }
            None => toml::Table::new(),
        };
        for o in overrides {
            apply_override(&mut doc, o)?;
        }
        let cfg: Config = toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError(e.to_string().trim().to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let n = &self.node;
        if !n.ring_size.is_power_of_two() || n.ring_size < 1 || n.ring_size > MAX_RING_SIZE {
            return bad("node.ring_size", n.ring_size, &format!("must be a power of two between 1 and {MAX_RING_SIZE}"));
        }
        if n.data_dir.as_os_str().is_empty() {
            return bad("node.data_dir", "\"\"", "a directory path is required");
        }
        if !["error", "warn", "info", "debug", "trace"].contains(&n.log_level.as_str()) {
            return bad("node.log_level", format!("{:?}", n.log_level), "allowed: error, warn, info, debug, trace");
        }
        let cores = self.cores();
        if cores as u32 > n.ring_size {
            return bad("node.cores", cores, &format!("at most node.ring_size ({}) cores can own partitions", n.ring_size));
        }
        if self.cluster.name.is_empty() || self.cluster.name.len() > 64 || !self.cluster.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') {
            return bad("cluster.name", format!("{:?}", self.cluster.name), "1 to 64 characters of letters, digits, '-', '_' or '.'");
        }
        let s = &self.s3;
        if s.block_size < MIN_BLOCK_BYTES || s.block_size > MAX_BLOCK_BYTES || s.block_size % 4096 != 0 {
            return bad("s3.block_size", s.block_size, &format!("a multiple of 4096 between {MIN_BLOCK_BYTES} and {MAX_BLOCK_BYTES}"));
        }
        if s.inline_max > 64 << 10 {
            return bad("s3.inline_max", s.inline_max, "at most 65536");
        }
        if s.max_put_bytes == 0 || s.max_put_bytes > 5 << 40 {
            return bad("s3.max_put_bytes", s.max_put_bytes, "between 1 and 5 TiB");
        }
        for k in &s.keys {
            if k.access_key.is_empty() || k.secret_key.is_empty() {
                return bad("s3.keys", format!("{:?}", k.access_key), "every key needs a non-empty access_key and secret_key");
            }
        }
        if s.keys.is_empty() && s.anonymous == Anonymous::None {
            return bad("s3.keys", "[]", "configure at least one access key, or allow anonymous access with s3.anonymous = \"read\" or \"all\"");
        }
        if s.orphan_sweep_interval_ms < 1000 {
            return bad("s3.orphan_sweep_interval_ms", s.orphan_sweep_interval_ms, "at least 1000");
        }
        if s.min_part_bytes == 0 || s.min_part_bytes > MAX_MIN_PART_BYTES {
            return bad("s3.min_part_bytes", s.min_part_bytes, &format!("between 1 and {MAX_MIN_PART_BYTES} (S3's largest part, 5 GiB)"));
        }
        if s.reclaim_leeway_ms > MAX_DELAY_MS {
            return bad("s3.reclaim_leeway_ms", s.reclaim_leeway_ms, &format!("at most {MAX_DELAY_MS} (one day)"));
        }
        if s.max_connections_per_core == 0 {
            return bad("s3.max_connections_per_core", s.max_connections_per_core, "at least 1");
        }
        if s.idle_timeout_ms < 100 {
            return bad("s3.idle_timeout_ms", s.idle_timeout_ms, "at least 100");
        }
        let st = &self.storage;
        if let Err(e) = self.partition_config().validate() {
            return Err(ConfigError(format!("storage: {e}")));
        }
        if st.sync_interval_ms == 0 || st.sync_interval_ms > 60_000 {
            return bad("storage.sync_interval_ms", st.sync_interval_ms, "between 1 and 60000");
        }
        if (st.segment_bytes as u128) < (s.block_size as u128) * 4 {
            return bad("storage.segment_bytes", st.segment_bytes, "must hold at least 4 blocks (s3.block_size)");
        }
        if st.tombstone_grace_ms > MAX_TOMBSTONE_GRACE_MS {
            return bad("storage.tombstone_grace_ms", st.tombstone_grace_ms, &format!("at most {MAX_TOMBSTONE_GRACE_MS} (30 days)"));
        }
        if st.compaction_interval_ms < 100 || st.compaction_interval_ms > MAX_DELAY_MS {
            return bad("storage.compaction_interval_ms", st.compaction_interval_ms, &format!("between 100 and {MAX_DELAY_MS} (one day)"));
        }
        if st.io_memory_bytes < 1 << 20 {
            return bad("storage.io_memory_bytes", st.io_memory_bytes, "at least 1048576");
        }
        if !self.admin.listen.ip().is_loopback() && self.admin.token.is_empty() {
            return bad("admin.token", "\"\"", &format!("a token is required when admin.listen ({}) is not a loopback address", self.admin.listen));
        }
        let r = &self.repl;
        if r.batch_max_bytes < 64 << 10 || r.batch_max_bytes > wire::MAX_FRAME_BYTES / 2 {
            return bad("repl.batch_max_bytes", r.batch_max_bytes, &format!("between 65536 and {}", wire::MAX_FRAME_BYTES / 2));
        }
        if r.batch_max_records == 0 || r.batch_max_records > wire::MAX_RECORDS_PER_BATCH {
            return bad("repl.batch_max_records", r.batch_max_records, &format!("between 1 and {}", wire::MAX_RECORDS_PER_BATCH));
        }
        if r.window_bytes < r.batch_max_bytes {
            return bad("repl.window_bytes", r.window_bytes, "at least repl.batch_max_bytes");
        }
        if r.batch_linger_ms == 0 || r.batch_linger_ms > 1000 {
            return bad("repl.batch_linger_ms", r.batch_linger_ms, "between 1 and 1000");
        }
        if r.heartbeat_ms == 0 {
            return bad("repl.heartbeat_ms", r.heartbeat_ms, "at least 1");
        }
        if r.peer_timeout_ms < 2 * r.heartbeat_ms {
            return bad("repl.peer_timeout_ms", r.peer_timeout_ms, &format!("at least twice repl.heartbeat_ms ({})", r.heartbeat_ms));
        }
        if r.reconnect_min_ms == 0 {
            return bad("repl.reconnect_min_ms", r.reconnect_min_ms, "at least 1");
        }
        if r.reconnect_max_ms < r.reconnect_min_ms {
            return bad("repl.reconnect_max_ms", r.reconnect_max_ms, &format!("at least repl.reconnect_min_ms ({})", r.reconnect_min_ms));
        }
        for (k, v) in [("repl.max_fssource_node", r.max_fssource_node), ("repl.max_fssink_node", r.max_fssink_node), ("repl.max_fssource_cluster", r.max_fssource_cluster)] {
            if v == 0 {
                return bad(k, v, "fullsync concurrency limits must be at least 1");
            }
        }
        if r.fullsync_interval_min == 0 {
            return bad("repl.fullsync_interval_min", r.fullsync_interval_min, "at least 1 (minutes)");
        }
        if r.fullsync_retry_max == 0 {
            return bad("repl.fullsync_retry_max", r.fullsync_retry_max, "at least 1");
        }
        if r.proxy_get_timeout_ms < 100 {
            return bad("repl.proxy_get_timeout_ms", r.proxy_get_timeout_ms, "at least 100");
        }
        if r.fullsync_max_bytes_per_sec != 0 && r.fullsync_max_bytes_per_sec < MIN_FULLSYNC_RATE_BYTES {
            return bad("repl.fullsync_max_bytes_per_sec", r.fullsync_max_bytes_per_sec, &format!("0 (unlimited) or at least {MIN_FULLSYNC_RATE_BYTES}"));
        }
        if r.max_retained_bytes < 1 << 20 {
            return bad("repl.max_retained_bytes", r.max_retained_bytes, "at least 1048576");
        }
        let t = &self.tls;
        if t.enabled {
            for (k, p) in [("tls.cert", &t.cert), ("tls.key", &t.key), ("tls.ca", &t.ca)] {
                if p.as_os_str().is_empty() {
                    return bad(k, "\"\"", "required when tls.enabled = true");
                }
            }
            for (k, v) in [("tls.min_version", &t.min_version), ("tls.max_version", &t.max_version)] {
                if v != "1.2" && v != "1.3" {
                    return bad(k, format!("{v:?}"), "\"1.2\" or \"1.3\"");
                }
            }
            if t.min_version > t.max_version {
                return bad("tls.min_version", format!("{:?}", t.min_version), "must not be above tls.max_version");
            }
            if t.max_records_per_connection == 0 || t.max_records_per_connection > 1 << 24 {
                return bad("tls.max_records_per_connection", t.max_records_per_connection, "between 1 and 16777216 (2^24, below the AES-GCM limit)");
            }
        } else if t.required {
            return bad("tls.required", true, "needs tls.enabled = true");
        }
        Ok(())
    }

    pub fn cores(&self) -> usize {
        if self.node.cores == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            self.node.cores
        }
    }

    pub fn sync_mode(&self) -> storage::SyncMode {
        match self.storage.sync {
            SyncSetting::Always => storage::SyncMode::Always,
            SyncSetting::Interval => storage::SyncMode::Interval(Duration::from_millis(self.storage.sync_interval_ms)),
            SyncSetting::None => storage::SyncMode::None,
        }
    }

    pub fn partition_config(&self) -> storage::PartitionConfig {
        let st = &self.storage;
        storage::PartitionConfig {
            segment_bytes: st.segment_bytes,
            write_buffer_bytes: st.write_buffer_bytes,
            sync: self.sync_mode(),
            tree_segments: st.tree_segments,
            tombstone_grace_ms: st.tombstone_grace_ms,
            compaction_garbage_ratio: st.compaction_garbage_ratio,
            max_unflushed_bytes: st.max_unflushed_bytes,
            prealloc_step_bytes: storage::PartitionConfig::default().prealloc_step_bytes,
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }
}

/// Applies `section.key=value`; the value is parsed as TOML (so numbers,
/// booleans and arrays work) and taken as a string when that fails.
fn apply_override(doc: &mut toml::Table, o: &str) -> Result<(), ConfigError> {
    let (path, raw) = o.split_once('=').ok_or_else(|| ConfigError(format!("override {o:?} is not of the form section.key=value")))?;
    let parts: Vec<&str> = path.trim().split('.').collect();
    if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
        return Err(ConfigError(format!("override {o:?}: the key must be section.key")));
    }
    let raw = raw.trim();
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let mut t = doc;
    for p in &parts[..parts.len() - 1] {
        t = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| ConfigError(format!("override {o:?}: {p} is not a section")))?;
    }
    t.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(o: &[&str]) -> Result<Config, ConfigError> {
        let mut v: Vec<String> = vec!["s3.anonymous=\"all\"".into()];
        v.extend(o.iter().map(|s| s.to_string()));
        Config::load(None, &v)
    }

    #[test]
    fn defaults_validate_and_overrides_apply() {
        let c = with(&["node.ring_size=128", "storage.sync=always", "s3.listen=127.0.0.1:9999"]).unwrap();
        assert_eq!(c.node.ring_size, 128);
        assert_eq!(c.storage.sync, SyncSetting::Always);
        assert_eq!(c.s3.listen.port(), 9999);
    }

    #[test]
    fn errors_name_key_value_and_what_is_allowed() {
        let e = with(&["node.ring_size=100"]).unwrap_err().to_string();
        assert!(e.contains("node.ring_size = 100") && e.contains("power of two"), "{e}");
        let e = with(&["storage.sync=\"sometimes\""]).unwrap_err().to_string();
        assert!(e.contains("sometimes") && e.contains("always"), "{e}");
        let e = with(&["storage.bogus=1"]).unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = with(&["admin.listen=0.0.0.0:8098"]).unwrap_err().to_string();
        assert!(e.contains("admin.token"), "{e}");
        let e = Config::load(None, &[]).unwrap_err().to_string();
        assert!(e.contains("s3.keys"), "{e}");
        for (set, key) in [
            ("s3.min_part_bytes=0", "s3.min_part_bytes = 0"),
            ("s3.reclaim_leeway_ms=999999999999", "s3.reclaim_leeway_ms = 999999999999"),
            ("storage.tombstone_grace_ms=999999999999", "storage.tombstone_grace_ms = 999999999999"),
            ("storage.compaction_interval_ms=10", "storage.compaction_interval_ms = 10"),
            ("repl.fullsync_max_bytes_per_sec=1000", "repl.fullsync_max_bytes_per_sec = 1000"),
        ] {
            let e = with(&[set]).unwrap_err().to_string();
            assert!(e.contains(key) && (e.contains("between") || e.contains("at most") || e.contains("at least")), "{set}: {e}");
        }
        with(&["s3.min_part_bytes=1", "s3.reclaim_leeway_ms=0", "storage.tombstone_grace_ms=0", "storage.compaction_interval_ms=100", "repl.fullsync_max_bytes_per_sec=0"]).unwrap();
    }
}
