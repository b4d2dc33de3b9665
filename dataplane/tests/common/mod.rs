//! Helpers for tests that run real `dataplane serve` processes.
#![allow(dead_code)]

pub mod proxy;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use dataplane::client::S3Client;
pub use dataplane::demo::{payload, Cluster, ClusterOpts};
use serde_json::Value;

pub fn opts(name: &str) -> ClusterOpts {
    let mut o = ClusterOpts::new(name);
    o.bin = Some(env!("CARGO_BIN_EXE_dataplane").into());
    o.log_level = "info".into();
    o
}

pub fn start(root: &std::path::Path, o: ClusterOpts) -> Cluster {
    Cluster::start(root, dataplane::demo::free_base_port(), o).unwrap_or_else(|e| panic!("{e}"))
}

pub fn ok(r: std::io::Result<dataplane::client::Response>, what: &str) -> dataplane::client::Response {
    let r = r.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(r.status == 200 || r.status == 204, "{what}: {} {}", r.status, r.text());
    r
}

/// Every object of `bucket` with its ETag, through ListObjectsV2 pages.
pub fn listing(s3: &mut S3Client, bucket: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let mut q = "list-type=2&max-keys=1000".to_string();
        if let Some(t) = &token {
            q.push_str(&format!("&continuation-token={}", dataplane::s3::encoding::uri_encode(t.as_bytes(), false)));
        }
        let r = s3.request("GET", &format!("/{bucket}"), &q, &[], &[]).expect("list");
        assert_eq!(r.status, 200, "list {bucket}: {}", r.text());
        let body = r.text();
        for c in body.split("<Contents>").skip(1) {
            let key = between(c, "<Key>", "</Key>");
            let etag = between(c, "<ETag>", "</ETag>").replace("&quot;", "\"");
            out.insert(unescape(&key), etag);
        }
        if body.contains("<IsTruncated>true</IsTruncated>") {
            token = Some(between(&body, "<NextContinuationToken>", "</NextContinuationToken>"));
        } else {
            return out;
        }
    }
}

fn between(s: &str, a: &str, b: &str) -> String {
    let i = s.find(a).map(|i| i + a.len()).unwrap_or(0);
    let j = s[i..].find(b).map(|j| i + j).unwrap_or(s.len());
    s[i..j].to_string()
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

/// Waits until `f` holds, or panics with `what` after `limit`.
pub fn eventually(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {limit:?} waiting for: {what}");
}

pub fn post(c: &Cluster, path: &str, body: Value) -> Value {
    c.admin("POST", path, body).unwrap_or_else(|e| panic!("{} POST {path}: {e}", c.name))
}

/// Runs a fullsync from `src` to `sink` and waits for it to complete.
pub fn fullsync(src: &Cluster, sink: &str, limit: Duration) -> Value {
    let before = fs_status(src, sink)["completed_runs"].as_u64().unwrap_or(0);
    let t = Instant::now();
    loop {
        let s = fs_status(src, sink);
        if s["state"] != "running" {
            if s["completed_runs"].as_u64().unwrap_or(0) > before {
                return s;
            }
            let _ = src.admin("POST", "/repl/fullsync/start", serde_json::json!({"sink": sink}));
        }
        assert!(t.elapsed() < limit, "fullsync from {} to {sink} did not complete in {limit:?}: {s}", src.name);
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn fs_status(src: &Cluster, sink: &str) -> Value {
    let v = src.admin("GET", "/repl/fullsync/status", Value::Null).expect("fullsync status");
    v["sinks"].as_array().and_then(|a| a.iter().find(|s| s["sink"] == sink).cloned()).unwrap_or(Value::Null)
}

/// The content of every object in `bucket` (key -> md5 of content).
pub fn contents(s3: &mut S3Client, bucket: &str) -> BTreeMap<String, [u8; 16]> {
    let keys = listing(s3, bucket);
    let mut out = BTreeMap::new();
    for k in keys.keys() {
        let r = s3.get(bucket, k).expect("get");
        assert_eq!(r.status, 200, "GET {bucket}/{k}: {}", r.text());
        out.insert(k.clone(), dataplane::s3::checksum::md5(&r.body));
    }
    out
}

/// Small deterministic generator (xorshift64*), so that a failing run can be
/// replayed from the seed it prints.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// Seed from `var` in the environment, else from the clock.
    pub fn seed_from_env(var: &str) -> u64 {
        std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        })
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `lo..hi` (hi exclusive, hi > lo).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
    /// True with probability `pct` percent.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
}

/// Every object of `buckets` on a site: (bucket, key) -> (md5 of the content,
/// the object's version from `x-dataplane-version`).
pub fn site_objects(c: &Cluster, buckets: &[String]) -> BTreeMap<(String, String), ([u8; 16], String)> {
    let mut s3 = c.client();
    let mut out = BTreeMap::new();
    for b in buckets {
        for k in listing(&mut s3, b).keys() {
            let r = s3.get(b, k).expect("get");
            if r.status == 404 {
                continue; // deleted between the listing and the GET
            }
            assert_eq!(r.status, 200, "GET {b}/{k} on {}: {}", c.name, r.text());
            let v = r.header(dataplane::s3api::VERSION_HEADER).unwrap_or_default().to_string();
            out.insert((b.clone(), k.clone()), (dataplane::s3::checksum::md5(&r.body), v));
        }
    }
    out
}

/// Keys whose content or version differs between two sites (or that only
/// one of them has).
pub fn differences(
    a: &BTreeMap<(String, String), ([u8; 16], String)>,
    b: &BTreeMap<(String, String), ([u8; 16], String)>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => out.push(format!("{}/{}: missing on the second site", k.0, k.1)),
            Some(w) if w != v => out.push(format!("{}/{}: content or version differs ({} vs {})", k.0, k.1, v.1, w.1)),
            _ => {}
        }
    }
    for k in b.keys() {
        if !a.contains_key(k) {
            out.push(format!("{}/{}: only on the second site", k.0, k.1));
        }
    }
    out
}

/// Runs a fresh fullsync: waits for any run in progress to end, then starts
/// one and waits for it to complete.
pub fn fresh_fullsync(src: &Cluster, sink: &str, limit: Duration) -> Value {
    eventually(limit, "no fullsync in progress", || fs_status(src, sink)["state"] != "running");
    fullsync(src, sink, limit)
}
