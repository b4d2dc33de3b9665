//! `fullsync`: N small keys (100 bytes each; one million by default), first
//! identical on both clusters, then with 0.1 % of them changed on the
//! source only.
//!
//! The sink sits behind a counting proxy (it advertises the proxy, so the
//! cluster manager and every data connection go through it): wire bytes
//! are what really crossed between the clusters, both directions, frames
//! and all. Compared with:
//! - a full key/hash list exchange: keys × (key bytes + an 8-byte hash);
//! - `rsync -a --checksum --no-whole-file` of the source's data directory
//!   onto a mirror of it (made with rsync beforehand, as a standby kept by
//!   rsync would be), while the source is idle (no writes, realtime off);
//! - for the changed keys: twice their payload (key + value) plus the tree
//!   exchange (partitions x rounds x tree segments x an 8-byte hash).

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use dataplane::demo::{free_base_port, Cluster, PORTS_PER_CLUSTER};
use serde_json::{json, Value};

use crate::proxy::ProxySet;
use crate::report::Figure;
use crate::util::{self, Res};
use crate::{anchors, Opts};

const S: &str = "fullsync";
const SIZE: usize = 100;
const BUCKET: &str = "fsb";
const THREADS: usize = 4;
/// Bytes of a key hash in the key/hash list exchange anchor (xxh3-64).
const HASH_BYTES: u64 = 8;

fn key(i: usize) -> String {
    format!("k/{i:08}")
}

fn fs_status(src: &Cluster, sink: &str) -> Res<Value> {
    let v = src.admin("GET", "/repl/fullsync/status", Value::Null)?;
    v["sinks"].as_array().and_then(|a| a.iter().find(|s| s["sink"] == sink).cloned()).ok_or_else(|| format!("no fullsync status for {sink}: {v}"))
}

struct Run {
    secs: f64,
    wire: u64,
    /// Source to sink, sink to source, connections opened.
    up: u64,
    down: u64,
    conns: u64,
    status: Value,
}

/// Starts a fullsync and waits for it to complete; wire bytes from the proxy.
fn fullsync(src: &Cluster, sink: &str, proxy: &ProxySet, limit: Duration) -> Res<Run> {
    let before = fs_status(src, sink)?["completed_runs"].as_u64().unwrap_or(0);
    let c = &proxy.counters;
    let (u0, d0, n0) = (c.up.load(Relaxed), c.down.load(Relaxed), c.connections.load(Relaxed));
    let t = Instant::now();
    util::post(src, "/repl/fullsync/start", json!({"sink": sink}))?;
    loop {
        let s = fs_status(src, sink)?;
        if s["state"] != "running" && s["completed_runs"].as_u64().unwrap_or(0) > before {
            let secs = t.elapsed().as_secs_f64();
            let (up, down) = (c.up.load(Relaxed) - u0, c.down.load(Relaxed) - d0);
            return Ok(Run { secs, wire: up + down, up, down, conns: c.connections.load(Relaxed) - n0, status: s });
        }
        if t.elapsed() > limit {
            return Err(format!("fullsync to {sink} did not complete within {limit:?}: {s}"));
        }
        // Polled often: a run without differences takes a few tens of ms,
        // and a coarse poll would be most of what is measured.
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Partition exchanges and retries of a run, from its status.
fn attempts(st: &Value) -> String {
    let parts = st["partitions"].as_array().cloned().unwrap_or_default();
    let tries: u64 = parts.iter().map(|p| p["attempts"].as_u64().unwrap_or(0)).sum();
    let mut errs: Vec<String> = parts.iter().filter_map(|p| p["error"].as_str()).filter(|e| !e.is_empty()).map(|e| e.to_string()).collect();
    errs.sort();
    errs.dedup();
    format!("{} partition exchanges in {tries} attempts{}", parts.len(), if errs.is_empty() { String::new() } else { format!("; errors: {}", errs.join(" | ")) })
}

fn rsync_plain(src: &std::path::Path, dst: &std::path::Path) -> Res<()> {
    let out = std::process::Command::new("rsync")
        .args(["-a", &format!("{}/", src.display()), &format!("{}/", dst.display())])
        .output()
        .map_err(|e| format!("rsync: {e}"))?;
    if !out.status.success() {
        return Err(format!("rsync: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

fn du(dir: &std::path::Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                n += du(&p);
            } else if let Ok(m) = p.metadata() {
                n += m.len();
            }
        }
    }
    n
}

pub fn run(o: &Opts) -> Res<Vec<Figure>> {
    let root = util::fresh_dir(&o.work_dir, S);
    let n = o.keys.unwrap_or(if o.quick { 20_000 } else { 1_000_000 });
    let cores = util::cpus();
    let sink_port = free_base_port();
    let proxy = ProxySet::counting(1 + cores as u16, format!("127.0.0.1:{}", sink_port + 10).parse().unwrap(), &[(sink_port, PORTS_PER_CLUSTER)]);
    let nofs = "fullsync_on_connect = false\n";
    let sink = util::start_at(&root, sink_port, util::opts("fs-sink", cores, &format!("{nofs}advertise = \"{}\"\n", proxy.addr())))?;
    let mut src = util::start(&root, util::opts("fs-src", cores, nofs))?;
    util::connect_enable(&src, &proxy.addr().to_string(), "fs-sink")?;
    util::create_bucket(&src, BUCKET)?;

    // Identical on both: written to the source (realtime enabled, stopped:
    // writes are faster so), then replicated in realtime.
    let w = util::put_preload(&mut src, BUCKET, n, SIZE, THREADS, 1, &key)?;
    println!("wrote {n} objects of {SIZE} bytes to the source ({THREADS} clients): {:.1} s, {:.0} objects/s", w.secs, w.objects_per_sec());
    let d = util::start_and_drain(&src, "fs-sink", Duration::from_secs(1800))?;
    println!("realtime carried them to the sink in {:.1} s ({:.0} objects/s)", d.secs, n as f64 / d.secs);
    util::post(&src, "/repl/realtime/disable", json!({"sink": "fs-sink"}))?;
    util::wait_for(Duration::from_secs(20), "realtime connections closed", || {
        src.sink_status("fs-sink").map(|s| s["data_connections"].as_u64() == Some(0)).unwrap_or(false)
    })?;
    let sink_st = sink.admin("GET", "/status", Value::Null)?;
    let sink_keys = sink_st["storage"]["keys"].as_u64().unwrap_or(0);
    let ring = sink_st["node"]["ring_size"].as_u64().unwrap_or(0);
    println!("the sink holds {sink_keys} keys; realtime disabled, so only fullsync can carry changes now");

    // 1. No differences.
    let r0 = fullsync(&src, "fs-sink", &proxy, Duration::from_secs(1800))?;
    let st = &r0.status;
    println!("  {}", attempts(st));
    println!(
        "fullsync, no differences: {:.3} s, {} wire bytes ({} to the sink, {} back, {} connections; segments differing {}, keys compared {}, objects sent {}, payload bytes sent {})",
        r0.secs, r0.wire, r0.up, r0.down, r0.conns, st["segments_differing"], st["keys_compared"], st["objects_sent"], st["bytes_sent"]
    );
    let key_bytes: u64 = (0..n).map(|i| (BUCKET.len() + 1 + key(i).len()) as u64).sum();
    let key_list = key_bytes + n as u64 * HASH_BYTES;
    println!("a full key/hash list exchange: {n} keys x (key + {HASH_BYTES}-byte hash) = {key_list} bytes");

    // rsync anchor, no differences. The source is idle (realtime off, no
    // fullsync, no writes; its last writes are on disk): a restart would
    // start new preallocated segment files, which rsync would then copy.
    let data = src.dir.join("data");
    let mirror = root.join("rsync-mirror");
    std::thread::sleep(Duration::from_millis(300));
    rsync_plain(&data, &mirror)?;
    let (rs0_secs, rs0_bytes) = anchors::rsync_checksum_delta(&data, &mirror);
    println!("rsync -a --checksum --no-whole-file, no differences ({} bytes of data dir): {rs0_secs:.3} s, {rs0_bytes} bytes", du(&data));

    // 2. 0.1 % of the keys changed on the source only.
    let d = (n / 1000).max(1);
    let changed: Vec<usize> = (0..d).map(|j| j * (n / d)).collect();
    {
        let mut c = util::client(src.s3);
        let mut p = util::Payload::new(424242, SIZE);
        for &i in &changed {
            let r = c.put(BUCKET, &key(i), p.for_object(i)).map_err(|e| e.to_string())?;
            if r.status != 200 {
                return Err(format!("PUT {}: {}", key(i), r.status));
            }
        }
    }
    let diff_payload: u64 = changed.iter().map(|&i| (BUCKET.len() + 1 + key(i).len() + SIZE) as u64).sum();
    let r1 = fullsync(&src, "fs-sink", &proxy, Duration::from_secs(1800))?;
    let st = &r1.status;
    println!("  {}", attempts(st));
    println!(
        "fullsync, {d} keys changed: {:.3} s, {} wire bytes ({} to the sink, {} back, {} connections; segments differing {}, keys compared {}, objects sent {}, payload bytes sent {})",
        r1.secs, r1.wire, r1.up, r1.down, r1.conns, st["segments_differing"], st["keys_compared"], st["objects_sent"], st["bytes_sent"]
    );
    // The changed keys arrived.
    let (mut a, mut b) = (util::client(src.s3), util::client(sink.s3));
    for &i in changed.iter().step_by((d / 20).max(1)) {
        let x = a.get(BUCKET, &key(i)).map_err(|e| e.to_string())?;
        let y = b.get(BUCKET, &key(i)).map_err(|e| e.to_string())?;
        if x.status != 200 || y.status != 200 || x.body != y.body {
            return Err(format!("{} differs between source and sink after the fullsync", key(i)));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let (rs1_secs, rs1_bytes) = anchors::rsync_checksum_delta(&data, &mirror);
    println!("rsync -a --checksum --no-whole-file, {d} keys changed: {rs1_secs:.3} s, {rs1_bytes} bytes");
    drop(src);
    drop(sink);
    drop(proxy);
    util::cleanup(&root);

    // The tree exchange as the protocol defines it: every node hash of
    // every partition's tree (all its levels, the segments last), once per
    // round (frame headers not counted).
    let nodes: u64 = wire::fullsync::tree_levels(storage::DEFAULT_TREE_SEGMENTS).iter().map(|&bits| 1u64 << bits).sum();
    let tree = ring * dataplane::repl::fullsync::ROUNDS as u64 * nodes * 8;
    let budget = 2 * diff_payload + tree;
    println!(
        "tree exchange: {ring} partitions x {} rounds x {nodes} node hashes ({} segments and the levels above) x 8 bytes = {tree} bytes; differing payload (key + value): {diff_payload} bytes",
        dataplane::repl::fullsync::ROUNDS,
        storage::DEFAULT_TREE_SEGMENTS
    );
    let k = if n % 1_000_000 == 0 { format!("{}M_keys", n / 1_000_000) } else { format!("{n}_keys") };
    Ok(vec![
        Figure::vs(S, &format!("nodiff_wire_bytes_{k}"), r0.wire as f64, "bytes", "key/hash list exchange", key_list as f64, "<= 0.01"),
        Figure::vs(S, &format!("nodiff_time_{k}"), r0.secs, "s", "rsync --checksum, no diff", rs0_secs, "<= 0.1"),
        Figure::vs(S, &format!("diff_0.1pct_wire_bytes_{k}"), r1.wire as f64, "bytes", "2 x diff payload + tree exch", budget as f64, "<= 1.0"),
        Figure::vs(S, &format!("diff_0.1pct_time_{k}"), r1.secs, "s", "rsync --checksum, 0.1% diff", rs1_secs, "").no_target(),
        Figure::vs(S, &format!("diff_0.1pct_wire_vs_rsync_{k}"), r1.wire as f64, "bytes", "rsync bytes, 0.1% diff", rs1_bytes as f64, "").no_target(),
    ])
}
