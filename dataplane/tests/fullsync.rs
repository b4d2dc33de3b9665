//! Fullsync between real `dataplane` processes.
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn connect_without_realtime(a: &Cluster, b: &Cluster) {
    post(a, "/repl/connect", json!({"addr": b.repl.to_string()}));
}

fn write_set(s3: &mut S3Client, bucket: &str, n: usize, seed: usize) -> BTreeMap<String, [u8; 16]> {
    let mut m = BTreeMap::new();
    for i in 0..n {
        let key = format!("k{i:04}");
        let data = payload(seed * 100_000 + i, if i % 25 == 0 { 1_500_000 + i } else { 100 + (i * 37) % 9000 });
        ok(s3.put(bucket, &key, &data), &key);
        m.insert(key, dataplane::s3::checksum::md5(&data));
    }
    m
}

#[test]
fn an_empty_sink_converges_and_deletes_reach_it() {
    let root = tempfile::tempdir().unwrap();
    let a = start(root.path(), opts("dc1"));
    let b = start(root.path(), opts("dc2"));
    let mut s3 = a.client();
    ok(s3.create_bucket("fsb"), "bucket");
    let mut expect = write_set(&mut s3, "fsb", 400, 1);
    connect_without_realtime(&a, &b);
    let st = fullsync(&a, "dc2", Duration::from_secs(120));
    assert!(st["objects_sent"].as_u64().unwrap() >= 400, "{st}");
    assert_eq!(contents(&mut b.client(), "fsb"), expect);
    // Deletes on the source reach the sink by fullsync too.
    for i in (0..400).step_by(9) {
        let k = format!("k{i:04}");
        ok(s3.delete("fsb", &k), "delete");
        expect.remove(&k);
    }
    fullsync(&a, "dc2", Duration::from_secs(120));
    assert_eq!(contents(&mut b.client(), "fsb"), expect);
    // Nothing differs any more: a further run sends nothing.
    let st = fullsync(&a, "dc2", Duration::from_secs(60));
    assert_eq!(st["objects_sent"], 0, "{st}");
    assert_eq!(st["segments_differing"], 0, "{st}");
}

#[test]
fn a_damaged_sink_converges() {
    let root = tempfile::tempdir().unwrap();
    let mut oa = opts("dc1");
    // The repair below must be the run this test starts: a run started by
    // the reconnect after the sink's restart could finish first and leave
    // nothing differing for it (seen once in CI).
    oa.extra = "fullsync_on_connect = false\n".into();
    let a = start(root.path(), oa);
    let mut b = start(root.path(), opts("dc2"));
    a.replicate_to(&b).unwrap();
    let mut s3 = a.client();
    ok(s3.create_bucket("dmg"), "bucket");
    let mut expect = write_set(&mut s3, "dmg", 300, 1);
    a.wait_drained("dc2", Duration::from_secs(60)).unwrap();
    // Realtime off: the source moves on without the sink.
    post(&a, "/repl/realtime/disable", json!({"sink": "dc2"}));
    for i in (0..300).step_by(7) {
        // stale versions on the sink
        let k = format!("k{i:04}");
        let data = payload(777_000 + i, 2000 + i);
        ok(s3.put("dmg", &k, &data), "overwrite");
        expect.insert(k, dataplane::s3::checksum::md5(&data));
    }
    for i in 300..340usize {
        // keys the sink never got
        let k = format!("k{i:04}");
        let data = payload(i, 5000);
        ok(s3.put("dmg", &k, &data), "put");
        expect.insert(k, dataplane::s3::checksum::md5(&data));
    }
    for i in (1..300).step_by(11) {
        let k = format!("k{i:04}");
        ok(s3.delete("dmg", &k), "delete");
        expect.remove(&k);
    }
    // Extra keys only on the sink: left alone.
    ok(b.client().put("dmg", "only-on-sink", b"extra"), "extra");
    // Corrupt records on the sink's disk, reported by storage at startup.
    b.stop();
    let mut corrupted = 0;
    let data_dir = b.dir.join("data");
    for e in walk(&data_dir) {
        if e.extension().map(|x| x == "hint").unwrap_or(false) {
            std::fs::remove_file(&e).unwrap();
        }
    }
    for e in walk(&data_dir) {
        if e.extension().map(|x| x == "seg").unwrap_or(false) && corrupted < 3 {
            let mut bytes = std::fs::read(&e).unwrap();
            // Flip a byte well inside the first record's value.
            if bytes.len() > 4096 + 400 {
                bytes[4096 + 300] ^= 0x5a;
                std::fs::write(&e, &bytes).unwrap();
                corrupted += 1;
            }
        }
    }
    assert!(corrupted > 0);
    b.start_again().unwrap();
    let damage = b.admin("GET", "/status", Value::Null).unwrap()["storage"]["damaged_records"].as_u64().unwrap();
    assert!(damage > 0, "storage reports the corrupted records");
    let st = fullsync(&a, "dc2", Duration::from_secs(120));
    assert!(st["segments_differing"].as_u64().unwrap() > 0);
    let mut got = contents(&mut b.client(), "dmg");
    assert_eq!(got.remove("only-on-sink"), Some(dataplane::s3::checksum::md5(b"extra")), "extra keys are left alone");
    assert_eq!(got, expect, "every key of the source has the same content on the sink");
}

fn walk(d: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            v.extend(walk(&p));
        } else {
            v.push(p);
        }
    }
    v.sort();
    v
}

#[test]
fn writes_during_a_fullsync_are_neither_lost_nor_reverted() {
    let root = tempfile::tempdir().unwrap();
    let mut oa = opts("dc1");
    // About 13 MB to push at 1 MB/s: the run outlasts the writes below.
    oa.extra = "fullsync_max_bytes_per_sec = 1000000\n".into();
    let a = start(root.path(), oa);
    let b = start(root.path(), opts("dc2"));
    let mut s3 = a.client();
    ok(s3.create_bucket("live"), "bucket");
    let mut expect = write_set(&mut s3, "live", 200, 1);
    a.replicate_to(&b).unwrap(); // also starts a fullsync (on connect)
    eventually(Duration::from_secs(30), "the fullsync on connect runs", || fs_status(&a, "dc2")["state"] == "running");
    // Keep writing (overwrites and new keys) while the fullsync runs.
    for round in 0..3usize {
        for i in (0..260).step_by(3) {
            let k = format!("k{i:04}");
            let data = payload(round * 10_000 + i, 700 + i);
            ok(s3.put("live", &k, &data), "put during fullsync");
            expect.insert(k, dataplane::s3::checksum::md5(&data));
        }
    }
    assert_eq!(fs_status(&a, "dc2")["state"], "running", "the writes overlapped a running fullsync");
    fullsync(&a, "dc2", Duration::from_secs(180));
    a.wait_drained("dc2", Duration::from_secs(60)).unwrap();
    assert_eq!(contents(&mut b.client(), "live"), expect);
}

/// Two clusters, 250 objects in `bucket` on the source only, and a fullsync
/// slow enough to be caught mid-run (2 MB/s, one partition at a time),
/// started by hand and waited for until round 1 has `done` partitions done.
fn slow_run_caught_in_round1(root: &std::path::Path, bucket: &str, seed: usize, done: u64) -> (Cluster, Cluster, BTreeMap<String, [u8; 16]>) {
    let mut oa = opts("dc1");
    oa.extra = "fullsync_max_bytes_per_sec = 2000000\nmax_fssource_node = 1\nmax_fssource_cluster = 1\nfullsync_on_connect = false\n".into();
    let a = start(root, oa);
    let b = start(root, opts("dc2"));
    let mut s3 = a.client();
    ok(s3.create_bucket(bucket), "bucket");
    let expect = write_set(&mut s3, bucket, 250, seed);
    connect_without_realtime(&a, &b);
    post(&a, "/repl/fullsync/start", json!({"sink": "dc2"}));
    eventually(Duration::from_secs(120), "a few partitions done", || {
        let s = fs_status(&a, "dc2");
        s["round"] == 1 && s["partitions_done"].as_u64().unwrap_or(0) >= done
    });
    (a, b, expect)
}

#[test]
fn a_coordinator_killed_mid_run_resumes_without_redoing_finished_partitions() {
    let root = tempfile::tempdir().unwrap();
    let (mut a, b, expect) = slow_run_caught_in_round1(root.path(), "resume", 3, 4);
    a.kill();
    let state: Value = serde_json::from_slice(&std::fs::read(a.dir.join("data/repl.json")).unwrap()).unwrap();
    let sink = state["sinks"].as_object().unwrap().values().next().unwrap().clone();
    let done_before: Vec<u64> = sink["fullsync"]["done_partitions"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert!(sink["fullsync"]["running"].as_bool().unwrap());
    assert!(!done_before.is_empty());
    a.start_again().unwrap();
    fullsync(&a, "dc2", Duration::from_secs(300));
    let mut s3b = b.client();
    assert_eq!(contents(&mut s3b, "resume"), expect);
    // Partitions that ran in round 1 after the restart (from the log) are
    // exactly those not done before it.
    let total = 16u64;
    let after = resumed_round1(&a);
    for p in &done_before {
        assert!(!after.contains(p), "partition {p} finished before the crash was redone after it (done before {done_before:?}, after {after:?})");
    }
    assert_eq!(after.len() as u64 + done_before.len() as u64, total, "every other partition ran after the restart");
}

/// Partitions the restarted coordinator ran in round 1 (from its log).
fn resumed_round1(a: &Cluster) -> Vec<u64> {
    let log = std::fs::read_to_string(a.dir.join("node.log")).unwrap();
    let since = log.rfind("starting dataplane").unwrap();
    let mut v = Vec::new();
    for line in log[since..].lines() {
        if let Some(rest) = line.split("fullsync partition ").nth(1) {
            if rest.contains("(round 1) done") {
                v.push(rest.split_whitespace().next().unwrap().parse().unwrap());
            }
        }
    }
    v.sort();
    v.dedup();
    v
}

#[test]
fn stop_pauses_a_run_and_start_resumes_it_where_it_was() {
    let root = tempfile::tempdir().unwrap();
    let (a, b, expect) = slow_run_caught_in_round1(root.path(), "pause", 4, 3);
    post(&a, "/repl/fullsync/stop", json!({"sink": "dc2"}));
    let paused = fs_status(&a, "dc2");
    assert_eq!(paused["state"], "paused", "{paused}");
    assert!(paused["last_error"].as_str().unwrap().contains("stopped by the operator"), "{paused}");
    // It stays paused: the coordinator neither resumes it nor records
    // more partitions (exchanges in flight finish unrecorded).
    std::thread::sleep(Duration::from_secs(3));
    let later = fs_status(&a, "dc2");
    assert_eq!(later["state"], "paused", "{later}");
    assert_eq!(later["partitions_done"], paused["partitions_done"], "{later}");
    assert_eq!(later["completed_runs"], 0, "{later}");
    // start resumes it in its round with its done partitions.
    post(&a, "/repl/fullsync/start", json!({"sink": "dc2"}));
    eventually(Duration::from_secs(10), "the run resumes", || fs_status(&a, "dc2")["state"] == "running");
    let resumed = fs_status(&a, "dc2");
    assert_eq!(resumed["round"], paused["round"], "{resumed}");
    assert!(resumed["partitions_done"].as_u64() >= paused["partitions_done"].as_u64(), "{resumed}");
    let st = fullsync(&a, "dc2", Duration::from_secs(300));
    assert_eq!(st["completed_runs"], 1, "{st}");
    assert_eq!(contents(&mut b.client(), "pause"), expect);
}

#[test]
fn after_realtime_delivered_everything_a_fullsync_sends_nothing() {
    let root = tempfile::tempdir().unwrap();
    let mut oa = opts("dc1");
    oa.extra = "fullsync_on_connect = false\n".into();
    let a = start(root.path(), oa);
    let b = start(root.path(), opts("dc2"));
    a.replicate_to(&b).unwrap();
    let mut s3 = a.client();
    ok(s3.create_bucket("rtb"), "bucket");
    // Objects of one to several blocks, overwritten and deleted, so that the
    // source and the sink both reclaim replaced blocks.
    let mut rng = Rng::new(7);
    let mut expect = BTreeMap::new();
    for i in 0..300usize {
        let key = format!("o{:03}", rng.range(0, 120));
        if rng.chance(15) {
            ok(s3.delete("rtb", &key), "delete");
            expect.remove(&key);
        } else {
            let data = payload(i, rng.range(0, 3 << 20) as usize);
            ok(s3.put("rtb", &key, &data), "put");
            expect.insert(key, dataplane::s3::checksum::md5(&data));
        }
    }
    a.wait_drained("dc2", Duration::from_secs(120)).unwrap();
    assert_eq!(contents(&mut b.client(), "rtb"), expect);
    let st = fullsync(&a, "dc2", Duration::from_secs(120));
    // Replaced blocks still wait out their reclaim leeway at the source
    // (trees may differ), but they are garbage: nothing is sent.
    assert_eq!(st["objects_sent"], 0, "realtime left nothing for fullsync to repair: {st}");
    assert_eq!(st["bytes_sent"], 0, "{st}");
}
