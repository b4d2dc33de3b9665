//! Helpers for tests that run real `dataplane serve` processes.
#![allow(dead_code)]

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
