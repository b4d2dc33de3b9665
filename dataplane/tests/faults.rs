//! Fault suites: a link that drops, cuts, stalls and delays replication
//! connections; a sink that stays away while the source takes more than ten
//! times Riak's default realtime queue; disks that fill up on the sink and on
//! the source; hostile bytes on the replication ports; the admin token.
//!
//! `FAULT_SEED` replays the fault proxy's choices (printed at the start).

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::proxy::FaultProxy;
use common::*;
use serde_json::{json, Value};

/// Riak MDC's default realtime queue (`rtq_max_bytes`): 100 MB.
const RIAK_DEFAULT_RTQ_BYTES: u64 = 100 * 1000 * 1000;
/// Bound on the objects (2 MiB each) written to fill a small disk.
const MAX_FILL_OBJECTS: usize = 400;

/// Writes `n` objects of varied sizes (plus overwrites and deletes) and
/// returns what the bucket should hold.
fn workload(s3: &mut S3Client, bucket: &str, prefix: &str, n: usize, seed: usize, max_size: usize) -> BTreeMap<String, [u8; 16]> {
    let mut rng = Rng::new(seed as u64);
    let mut expect = BTreeMap::new();
    for i in 0..n {
        let key = format!("{prefix}obj-{:03}", rng.range(0, (n as u64 / 2).max(1)));
        if rng.chance(15) {
            ok(s3.delete(bucket, &key), "delete");
            expect.remove(&key);
        } else {
            let data = payload(seed * 100_000 + i, rng.range(0, max_size as u64 + 1) as usize);
            ok(s3.put(bucket, &key, &data), "put");
            expect.insert(key, dataplane::s3::checksum::md5(&data));
        }
    }
    expect
}

fn replicate_via(a: &Cluster, sink: &str, proxy_port: u16) {
    post(a, "/repl/connect", json!({"addr": format!("127.0.0.1:{proxy_port}")}));
    post(a, "/repl/realtime/enable", json!({"sink": sink}));
    post(a, "/repl/realtime/start", json!({"sink": sink}));
}

#[test]
fn link_faults_drop_cut_stall_and_delay_yet_realtime_and_fullsync_converge() {
    let seed = Rng::seed_from_env("FAULT_SEED");
    eprintln!("link faults: FAULT_SEED={seed}");
    let mut root = tempfile::tempdir().unwrap();
    // FAULT_KEEP: the directory (node logs) survives, failure or not.
    if std::env::var("FAULT_KEEP").is_ok() {
        root.disable_cleanup(true);
        eprintln!("keeping {}", root.path().display());
    }
    let timeouts = "heartbeat_ms = 300\npeer_timeout_ms = 1500\nreconnect_min_ms = 50\nreconnect_max_ms = 1000\nfullsync_on_connect = false\nfullsync_retry_max = 50\n";
    let mut oa = opts("dc1");
    oa.extra = timeouts.into();
    let a = start(root.path(), oa);
    let proxy_port = dataplane::demo::free_base_port();
    let mut ob = opts("dc2");
    ob.extra = format!("advertise = \"127.0.0.1:{proxy_port}\"\n{timeouts}");
    let b = start(root.path(), ob);
    let proxy = FaultProxy::start(proxy_port, b.repl.port(), 3, seed, 4000);
    replicate_via(&a, "dc2", proxy_port);
    let mut s3 = a.client();
    ok(s3.create_bucket("realtime"), "bucket");
    ok(s3.create_bucket("fullsync"), "bucket");
    a.wait_drained("dc2", Duration::from_secs(60)).unwrap();

    // Realtime through a faulty link.
    proxy.set_faults(true);
    let t = Instant::now();
    let mut expect_rt = BTreeMap::new();
    let mut round = 0;
    while t.elapsed() < Duration::from_secs(15) {
        round += 1;
        expect_rt.extend(workload(&mut s3, "realtime", &format!("r{round}/"), 40, round, 2 << 20));
    }
    let rt_faults = proxy.stats.summary();
    proxy.set_faults(false);
    a.wait_drained("dc2", Duration::from_secs(180)).unwrap();
    assert_eq!(contents(&mut b.client(), "realtime"), contents(&mut a.client(), "realtime"), "realtime lost or altered objects ({rt_faults})");
    assert_eq!(contents(&mut a.client(), "realtime"), expect_rt);
    let st = a.sink_status("dc2").unwrap();
    let reconnects = st["reconnects"].as_u64().unwrap() + st["control_reconnects"].as_u64().unwrap();
    assert!(reconnects > 0, "reconnects are counted in status: {st}");
    let s = &proxy.stats;
    assert!(s.drops.load(Ordering::SeqCst) > 0 && s.cuts.load(Ordering::SeqCst) > 0 && s.stalls.load(Ordering::SeqCst) > 0, "every fault kind happened: {rt_faults}");
    eprintln!("realtime under faults: {} objects converged; {rt_faults}; status: {} realtime and {} control reconnects", expect_rt.len(), st["reconnects"], st["control_reconnects"]);

    // Fullsync through a faulty link, realtime stopped. Half the
    // connections fail: with every one failing, no partition exchange could
    // finish and the retry backoff would grow to its cap.
    post(&a, "/repl/realtime/stop", json!({"sink": "dc2"}));
    let expect_fs = workload(&mut s3, "fullsync", "", 150, 999, 1 << 20);
    proxy.set_fault_percent(50);
    let fs = fresh_fullsync(&a, "dc2", Duration::from_secs(300));
    let fs_faults = proxy.stats.summary();
    proxy.set_faults(false);
    assert_eq!(contents(&mut b.client(), "fullsync"), expect_fs, "fullsync lost or altered objects ({fs_faults})");
    let retries = fs["partition_retries"].as_u64().expect("partition_retries in the fullsync status");
    assert!(retries > 0, "with half the connections failing some partition exchange failed and was retried: {fs}");
    eprintln!("fullsync under faults converged: {} objects sent, {retries} partition retries; {fs_faults}", fs["objects_sent"]);
    post(&a, "/repl/realtime/start", json!({"sink": "dc2"}));
    a.wait_drained("dc2", Duration::from_secs(120)).unwrap();
}

#[test]
fn an_absent_sink_gets_ten_times_riaks_default_queue_then_the_dirty_path_converges() {
    /// Objects of 3 MiB written at most while waiting for the dirty mark.
    const MAX_DIRTY_OBJECTS: usize = 200;
    let root = tempfile::tempdir().unwrap();
    let mut oa = opts("dc1");
    oa.extra = "reconnect_max_ms = 1000\n".into();
    let mut a = start(root.path(), oa);
    let mut b = start(root.path(), opts("dc2"));
    a.replicate_to(&b).unwrap();
    let mut s3 = a.client();
    ok(s3.create_bucket("big"), "bucket");
    a.wait_drained("dc2", Duration::from_secs(60)).unwrap();

    // 1. The sink is down while the source takes 10 x 100 MB: nothing is
    // dropped, and the sink catches up when it returns.
    b.stop();
    let target = 10 * RIAK_DEFAULT_RTQ_BYTES + (64 << 20);
    let mut written = 0u64;
    let mut expect = BTreeMap::new();
    let mut i = 0;
    while written < target {
        let data = payload(i, (4 << 20) + i * 4099 % 65536);
        ok(s3.put("big", &format!("o{i:05}"), &data), "put");
        expect.insert(format!("o{i:05}"), dataplane::s3::checksum::md5(&data));
        written += data.len() as u64;
        i += 1;
    }
    let st = a.sink_status("dc2").unwrap();
    let queued = st["queued_bytes"].as_u64().unwrap();
    assert!(queued >= 10 * RIAK_DEFAULT_RTQ_BYTES, "the queue holds everything written while the sink is away: {st}");
    assert_eq!(st["retention_drops"], 0, "{st}");
    assert_eq!(st["dirty"], false, "{st}");
    let t = Instant::now();
    b.start_again().unwrap();
    a.wait_drained("dc2", Duration::from_secs(600)).unwrap();
    let catch_up = t.elapsed();
    assert_eq!(contents(&mut b.client(), "big"), expect, "the sink caught up with everything");
    eprintln!("absent sink: {:.0} MiB queued while away ({} objects), caught up in {:.1} s", queued as f64 / (1 << 20) as f64, expect.len(), catch_up.as_secs_f64());

    // 2. Past repl.max_retained_bytes the cursors are dropped, the sink is
    // marked dirty, and a fullsync brings it back in line.
    a.stop();
    a.start_again_with(&["repl.max_retained_bytes=67108864"]).unwrap();
    b.stop();
    ok(a.client().create_bucket("dirty"), "bucket");
    let mut s3 = a.client();
    let mut expect2 = BTreeMap::new();
    // Write until the drop happens (it is checked every second), then stop:
    // what is queued afterwards is only what came after the drop.
    let is_dirty = |a: &Cluster| a.sink_status("dc2").map(|s| s["dirty"] == true && s["retention_drops"].as_u64().unwrap_or(0) > 0).unwrap_or(false);
    let mut i = 0;
    while !is_dirty(&a) {
        assert!(i < MAX_DIRTY_OBJECTS, "the sink was never marked dirty after {} MiB past a 64 MiB max_retained_bytes", i * 3);
        let data = payload(10_000 + i, 3 << 20);
        ok(s3.put("dirty", &format!("d{i:03}"), &data), "put");
        expect2.insert(format!("d{i:03}"), dataplane::s3::checksum::md5(&data));
        i += 1;
    }
    let st = a.sink_status("dc2").unwrap();
    assert!(i * (3 << 20) > 64 << 20, "dirty only past max_retained_bytes ({i} objects of 3 MiB): {st}");
    assert!(st["queued_bytes"].as_u64().unwrap() < 64 << 20, "the dropped queue no longer holds log segments: {st}");
    b.start_again().unwrap();
    // The fullsync is scheduled by itself (dirty sink, connection up).
    eventually(Duration::from_secs(300), "a fullsync repairs the dirty sink", || {
        let s = fs_status(&a, "dc2");
        s["completed_runs"].as_u64().unwrap_or(0) > 0 && s["dirty"] == false && s["state"] != "running"
    });
    a.wait_drained("dc2", Duration::from_secs(120)).unwrap();
    assert_eq!(contents(&mut b.client(), "dirty"), expect2);
    assert_eq!(contents(&mut b.client(), "big"), expect);
}

/// A small ext4 filesystem on a loop device, mounted at `dir`, with a ballast
/// file that can be deleted to give space back.
struct SmallDisk {
    dir: std::path::PathBuf,
    image: std::path::PathBuf,
}

impl SmallDisk {
    fn new(image: &Path, dir: &Path, mib: u64) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let f = std::fs::File::create(image).unwrap();
        f.set_len(mib << 20).unwrap();
        run("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]);
        run("mount", &["-o", "loop", image.to_str().unwrap(), dir.to_str().unwrap()]);
        SmallDisk { dir: dir.to_path_buf(), image: image.to_path_buf() }
    }

    /// Fills the filesystem so that only about `leave` bytes stay free.
    fn ballast(&self, leave: u64) {
        let free = storage::free_bytes(&self.dir).expect("statvfs of the small disk");
        let size = free.saturating_sub(leave);
        let p = self.dir.join("ballast");
        let mut f = std::fs::File::create(&p).unwrap();
        let chunk = vec![0x5au8; 1 << 20];
        let mut done = 0;
        while done < size {
            let n = chunk.len().min((size - done) as usize);
            f.write_all(&chunk[..n]).unwrap();
            done += n as u64;
        }
        f.sync_all().unwrap();
    }

    fn free_ballast(&self) {
        std::fs::remove_file(self.dir.join("ballast")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_file(&self.image);
    }
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e} (the full-disk tests need root, e2fsprogs and loop devices)"));
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_full_sink_disk_pauses_replication_and_it_resumes_when_space_returns() {
    let root = tempfile::tempdir().unwrap();
    let disk = SmallDisk::new(&root.path().join("dc2.img"), &root.path().join("dc2").join("data"), 1024);
    let mut oa = opts("dc1");
    oa.extra = "reconnect_max_ms = 1000\nfullsync_on_connect = false\n".into();
    let a = start(root.path(), oa);
    let b = start(root.path(), opts("dc2"));
    a.replicate_to(&b).unwrap();
    let mut s3 = a.client();
    ok(s3.create_bucket("fill"), "bucket");
    a.wait_drained("dc2", Duration::from_secs(60)).unwrap();
    disk.ballast(96 << 20);

    // Write until the sink has no room left (segments preallocated before
    // the ballast still take some) and records wait on the source; the
    // source must then say why (the sink's error, not a bare I/O error).
    let mut expect = BTreeMap::new();
    let full = |b: &Cluster| b.admin("GET", "/status", Value::Null).map(|s| !s["storage"]["partitions_out_of_space"].as_array().unwrap().is_empty()).unwrap_or(false);
    let mut i = 0;
    let t = std::time::Instant::now();
    loop {
        let st = a.sink_status("dc2").unwrap_or(Value::Null);
        let last_error = st["realtime_last_error"].as_str().unwrap_or("").to_string();
        let queued = st["queued_records"].as_u64().unwrap_or(0) > 0;
        let sink_full = full(&b);
        if sink_full && queued && last_error.contains("out of disk space") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "within 90 s the sink must fill up (full: {sink_full}), records wait on the source (queued: {queued}) and the source shows why; its last realtime error: {last_error:?}\nsink log:\n{}\nsource log:\n{}",
            b.log_tail(),
            a.log_tail()
        );
        if !sink_full || !queued {
            // (a partition can be marked out of space while what is written
            // still fits the space it reserved before: write more)
            assert!(i < MAX_FILL_OBJECTS, "the sink never ran out of space");
            for _ in 0..8 {
                let data = payload(i, 2 << 20);
                ok(s3.put("fill", &format!("f{i:03}"), &data), "put");
                expect.insert(format!("f{i:03}"), dataplane::s3::checksum::md5(&data));
                i += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let st = a.sink_status("dc2").unwrap();
    assert!(st["queued_records"].as_u64().unwrap() > 0, "records wait in the queue: {st}");
    eprintln!("sink disk full: {}", st["realtime_last_error"]);
    // Whatever the sink holds of the bucket is intact (it never acknowledged
    // what it could not store, and never stored half an object).
    let mut sink = b.client();
    for (k, etag) in listing(&mut sink, "fill") {
        let r = ok(sink.get("fill", &k), "get from the full sink");
        assert_eq!(Some(&dataplane::s3::checksum::md5(&r.body)), expect.get(&k), "{k} ({etag})");
    }

    // Space returns: replication resumes by itself.
    disk.free_ballast();
    if let Err(e) = a.wait_drained("dc2", Duration::from_secs(180)) {
        let _ = std::fs::copy(root.path().join("dc1").join("node.log"), "/tmp/fullsink-dc1.log");
        let _ = std::fs::copy(root.path().join("dc2").join("node.log"), "/tmp/fullsink-dc2.log");
        panic!("{e}\nsink log:\n{}\nsource log:\n{}", b.log_tail(), a.log_tail());
    }
    assert_eq!(contents(&mut b.client(), "fill"), expect);
    eventually(Duration::from_secs(30), "the sink reports no partition out of space", || {
        b.admin("GET", "/status", Value::Null).map(|s| s["storage"]["partitions_out_of_space"].as_array().unwrap().is_empty()).unwrap_or(false)
    });
}

#[test]
fn a_full_source_disk_answers_507_keeps_what_it_acknowledged_and_recovers() {
    let root = tempfile::tempdir().unwrap();
    let disk = SmallDisk::new(&root.path().join("dc1.img"), &root.path().join("dc1").join("data"), 1024);
    let a = start(root.path(), opts("dc1"));
    let mut s3 = a.client();
    ok(s3.create_bucket("full"), "bucket");
    disk.ballast(32 << 20);
    let mut acked = BTreeMap::new();
    let mut refused = 0;
    let mut message = String::new();
    for i in 0..2 * MAX_FILL_OBJECTS {
        if refused >= 20 {
            break;
        }
        let data = payload(i, 1 << 20);
        let r = s3.put("full", &format!("k{i:03}"), &data).expect("an answer, not a dropped connection");
        match r.status {
            200 => {
                acked.insert(format!("k{i:03}"), dataplane::s3::checksum::md5(&data));
            }
            507 | 503 => {
                refused += 1;
                message = r.text();
            }
            s => panic!("PUT on a full disk: {s} {}", r.text()),
        }
    }
    assert!(refused > 0, "a full disk refuses writes");
    assert!(message.contains("InsufficientStorage") && message.contains("no space left"), "the error says what happened and what to do: {message}");
    eprintln!("source disk full: {} PUTs acknowledged, {refused} refused: {message}", acked.len());
    let all = contents(&mut s3, "full");
    for (k, md5) in &acked {
        assert_eq!(all.get(k), Some(md5), "acknowledged {k} is readable");
    }
    // Reads keep working while full; writes resume once space returns.
    disk.free_ballast();
    let mut recovered = false;
    for _ in 0..50 {
        if s3.put("full", "after", b"space is back").map(|r| r.status == 200).unwrap_or(false) {
            recovered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(recovered, "writes resume by themselves when space returns");
    // Everything acknowledged survives a restart too (the log holds no
    // record after a seal, nothing half-written is taken for data).
    let mut a = a;
    a.restart().unwrap();
    let all = contents(&mut a.client(), "full");
    for (k, md5) in &acked {
        assert_eq!(all.get(k), Some(md5), "acknowledged {k} after a restart");
    }
}

/// Sends `bytes` to `addr`; returns whether the node closed the connection
/// (within 10 s) without answering more than an error frame.
fn closed_after(addr: std::net::SocketAddr, bytes: &[u8]) -> bool {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // an Error frame explaining the refusal
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

fn header(kind: u16, version: u16, body_len: u32, payload_len: u32, body: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; wire::HEADER_BYTES];
    h[0..4].copy_from_slice(b"DPRW");
    h[4..6].copy_from_slice(&version.to_le_bytes());
    h[6..8].copy_from_slice(&kind.to_le_bytes());
    h[8..12].copy_from_slice(&body_len.to_le_bytes());
    h[12..16].copy_from_slice(&payload_len.to_le_bytes());
    h[16..20].copy_from_slice(&crc32c::crc32c(body).to_le_bytes());
    let crc = crc32c::crc32c(&h[0..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h.extend_from_slice(body);
    h
}

#[test]
fn malformed_and_oversized_frames_close_the_connection_and_the_node_keeps_serving() {
    let root = tempfile::tempdir().unwrap();
    let a = start(root.path(), opts("dc1"));
    let b = start(root.path(), opts("dc2"));
    a.replicate_to(&b).unwrap();
    let good_body = wire::frame::encode(&wire::Msg::Heartbeat(wire::Heartbeat { now_ms: 1 }), 0, 1)[wire::HEADER_BYTES..].to_vec();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not the protocol at all", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("random bytes", (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect()),
        ("header checksum wrong", {
            let mut f = header(7, 1, good_body.len() as u32, 0, &good_body);
            f[21] ^= 0xff;
            f
        }),
        ("body larger than MAX_BODY_BYTES", header(7, 1, wire::MAX_BODY_BYTES as u32 + 1, 0, &[])),
        ("frame larger than MAX_FRAME_BYTES", header(5, 1, 64, u32::MAX - 100, &[0u8; 64])),
        ("unknown frame kind", header(999, 1, good_body.len() as u32, 0, &good_body)),
        ("body that does not decode", header(7, 1, 64, 0, &[0xabu8; 64])),
        ("body checksum wrong", {
            let mut f = header(7, 1, good_body.len() as u32, 0, &good_body);
            let n = f.len();
            f[n - 1] ^= 1;
            f
        }),
        ("payload on a frame kind without one", header(7, 1, good_body.len() as u32, 8, &good_body)),
        ("truncated frame, then silence", header(7, 1, 4096, 0, &[1u8; 100])),
        ("a heartbeat before any hello", header(7, 1, good_body.len() as u32, 0, &good_body)),
    ];
    let data_port = std::net::SocketAddr::new(b.repl.ip(), b.repl.port() + 1);
    for (what, bytes) in &cases {
        for addr in [b.repl, data_port] {
            assert!(closed_after(addr, bytes), "{what}: the node closes the connection on {addr}");
        }
    }
    // The node did not panic, says why it closed, and keeps replicating.
    let mut s3 = a.client();
    ok(s3.create_bucket("after"), "bucket");
    ok(s3.put("after", "k", b"still replicating"), "put");
    a.wait_drained("dc2", Duration::from_secs(60)).unwrap();
    assert_eq!(ok(b.client().get("after", "k"), "get").body, b"still replicating");
    let log = std::fs::read_to_string(b.dir.join("node.log")).unwrap();
    for needle in ["bad frame magic", "checksum", "exceeds MAX_BODY_BYTES", "exceeds MAX_FRAME_BYTES", "unknown frame kind"] {
        assert!(log.contains(needle), "the log gives the reason ({needle:?}):\n{}", b.log_tail());
    }
    assert!(!log.contains("panicked"), "{}", b.log_tail());
}

#[test]
fn the_admin_api_takes_a_token_when_it_listens_beyond_loopback() {
    let root = tempfile::tempdir().unwrap();
    // Refused without a token.
    let port = dataplane::demo::free_base_port();
    let cfg = root.path().join("open.toml");
    std::fs::write(
        &cfg,
        format!(
            "[node]\ndata_dir = \"{}\"\ncores = 1\nring_size = 16\n[s3]\nlisten = \"127.0.0.1:{port}\"\n[[s3.keys]]\naccess_key = \"a\"\nsecret_key = \"b\"\n[admin]\nlisten = \"0.0.0.0:{}\"\n[repl]\nlisten = \"127.0.0.1:{}\"\n",
            root.path().join("d").display(),
            port + 1,
            port + 10
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dataplane")).args(["serve", "--config"]).arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("admin.token") && err.contains("not a loopback address"), "{err}");

    // With a token: requests without it are refused, with it answered.
    let mut o = opts("tok");
    o.sets = vec![format!("admin.listen=\"0.0.0.0:{}\"", port + 1), "admin.token=\"s3cr3t\"".into()];
    let c = Cluster::start(root.path(), port, o).unwrap();
    let addr = format!("127.0.0.1:{}", port + 1);
    let r = dataplane::client::admin_request(&addr, "GET", "/status", "", "").unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("admin.token"));
    let r = dataplane::client::admin_request(&addr, "GET", "/status", "", "wrong").unwrap();
    assert_eq!(r.status, 401);
    let r = dataplane::client::admin_request(&addr, "GET", "/status", "", "s3cr3t").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = dataplane::client::admin_request(&addr, "POST", "/repl/clustername", "{\"name\":\"x\"}", "").unwrap();
    assert_eq!(r.status, 401, "changes need the token too");
    assert_eq!(dataplane::client::admin_request(&addr, "GET", "/health", "", "").unwrap().status, 200, "health checks need no token");
    // The CLI passes the token.
    let out = Command::new(env!("CARGO_BIN_EXE_dataplane")).args(["status", "--admin", &addr, "--token", "s3cr3t"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    drop(c);
}
