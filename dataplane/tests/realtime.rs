//! Realtime replication between real `dataplane` processes.
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use serde_json::json;

fn size_for(i: usize) -> usize {
    // 0 B to 20 MiB: mostly small, some spanning blocks, a few large.
    match i % 1000 {
        0 => 20 << 20,
        1..=4 => (1 << 20) + (i * 7919) % (6 << 20),
        5..=60 => (i * 104_729) % (1 << 20),
        _ => (i * 7919) % 16_384,
    }
}

#[test]
fn ten_thousand_objects_with_overwrites_and_deletes_arrive_byte_exact() {
    let root = tempfile::tempdir().unwrap();
    let a = start(root.path(), opts("dc1"));
    let b = start(root.path(), opts("dc2"));
    a.replicate_to(&b).unwrap();
    let mut s3 = a.client();
    ok(s3.create_bucket("bulk"), "create bucket");
    let n = 10_000;
    let mut expect: BTreeMap<String, [u8; 16]> = BTreeMap::new();
    for i in 0..n {
        let key = format!("o/{:02}/{i:05}", i % 37);
        let data = payload(i, size_for(i));
        ok(s3.put("bulk", &key, &data), &key);
        expect.insert(key, dataplane::s3::checksum::md5(&data));
    }
    // Overwrites (new content) and deletes.
    for i in (0..n).step_by(10) {
        let key = format!("o/{:02}/{i:05}", i % 37);
        let data = payload(i + 1_000_000, size_for(i + 3));
        ok(s3.put("bulk", &key, &data), &key);
        expect.insert(key, dataplane::s3::checksum::md5(&data));
    }
    for i in (5..n).step_by(20) {
        let key = format!("o/{:02}/{i:05}", i % 37);
        ok(s3.delete("bulk", &key), &key);
        expect.remove(&key);
    }
    a.wait_drained("dc2", Duration::from_secs(180)).unwrap();
    let mut s3b = b.client();
    let got = contents(&mut s3b, "bulk");
    assert_eq!(got.len(), expect.len(), "object count on the sink");
    assert!(got == expect, "sink content differs from the source");
    let st = a.sink_status("dc2").unwrap();
    assert_eq!(st["records_sent"], st["records_acked"]);
    assert_eq!(st["queued_records"], 0);
}

#[test]
fn sink_killed_and_restarted_while_the_source_takes_writes_loses_nothing() {
    let root = tempfile::tempdir().unwrap();
    let a = start(root.path(), opts("dc1"));
    let mut b = start(root.path(), opts("dc2"));
    a.replicate_to(&b).unwrap();
    eventually(Duration::from_secs(20), "realtime data connections up", || {
        a.sink_status("dc2").map(|s| s["data_connections"].as_u64().unwrap_or(0) > 0).unwrap_or(false)
    });
    let mut s3 = a.client();
    ok(s3.create_bucket("crash"), "create bucket");
    let mut expect = BTreeMap::new();
    for i in 0..600usize {
        if i == 150 {
            b.kill();
        }
        if i == 450 {
            b.start_again().unwrap();
        }
        let key = format!("k{i:04}");
        let data = payload(i, if i % 50 == 0 { 2_500_000 } else { 3000 + i });
        ok(s3.put("crash", &key, &data), &key);
        expect.insert(key, dataplane::s3::checksum::md5(&data));
    }
    a.wait_drained("dc2", Duration::from_secs(120)).unwrap();
    let got = contents(&mut b.client(), "crash");
    assert!(got == expect, "after a sink crash: {} of {} objects match", got.iter().filter(|(k, v)| expect.get(*k) == Some(v)).count(), expect.len());
    let st = a.sink_status("dc2").unwrap();
    assert!(st["reconnects"].as_u64().unwrap() > 0 && st["control_reconnects"].as_u64().unwrap() > 0, "the outage was seen as reconnects: {st}");
}

#[test]
fn bidirectional_concurrent_writes_converge() {
    let root = tempfile::tempdir().unwrap();
    let a = start(root.path(), opts("dc1"));
    let b = start(root.path(), opts("dc2"));
    a.replicate_to(&b).unwrap();
    b.replicate_to(&a).unwrap();
    ok(a.client().create_bucket("both"), "bucket");
    eventually(Duration::from_secs(20), "bucket on dc2", || b.client().request("HEAD", "/both", "", &[], &[]).map(|r| r.status == 200).unwrap_or(false));
    // Both sides write the same keys at once.
    let (aa, bb) = (a.s3, b.s3);
    let w = |addr, seed: usize| {
        std::thread::spawn(move || {
            let mut s3 = S3Client::new(addr, dataplane::demo::DEMO_ACCESS_KEY, dataplane::demo::DEMO_SECRET_KEY);
            for round in 0..4 {
                for i in 0..150usize {
                    let data = payload(seed * 1_000_000 + round * 1000 + i, 500 + i * 13);
                    ok(s3.put("both", &format!("k{i:03}"), &data), "put");
                }
                for i in (0..150usize).step_by(17) {
                    ok(s3.delete("both", &format!("k{i:03}")), "delete");
                }
            }
        })
    };
    let (t1, t2) = (w(aa, 1), w(bb, 2));
    t1.join().unwrap();
    t2.join().unwrap();
    a.wait_drained("dc2", Duration::from_secs(60)).unwrap();
    b.wait_drained("dc1", Duration::from_secs(60)).unwrap();
    let ca = contents(&mut a.client(), "both");
    let cb = contents(&mut b.client(), "both");
    assert!(!ca.is_empty());
    assert_eq!(ca, cb, "both clusters converge to the same values");
    // No loops: each side applied each other's records once, not forever.
    std::thread::sleep(Duration::from_secs(1));
    let s1 = a.sink_status("dc2").unwrap()["records_sent"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(a.sink_status("dc2").unwrap()["records_sent"].as_u64().unwrap(), s1, "records keep flowing: a replication loop");
}

#[test]
fn cascades_always_deliver_a_to_c_and_never_do_not() {
    for cascades in ["always", "never"] {
        let root = tempfile::tempdir().unwrap();
        // (Fullsync copies everything a cluster holds whatever the cascade
        // setting, so it is kept out of this test.)
        let mut ob = opts("dc2");
        ob.extra = format!("cascades = \"{cascades}\"\nfullsync_on_connect = false\n");
        let a = start(root.path(), opts("dc1"));
        let b = start(root.path(), ob);
        let c = start(root.path(), opts("dc3"));
        a.replicate_to(&b).unwrap();
        b.replicate_to(&c).unwrap();
        let mut s3 = a.client();
        ok(s3.create_bucket("chain"), "bucket");
        for i in 0..50usize {
            ok(s3.put("chain", &format!("k{i}"), &payload(i, 10_000 + i * 9000)), "put");
        }
        a.wait_drained("dc2", Duration::from_secs(60)).unwrap();
        b.wait_drained("dc3", Duration::from_secs(60)).unwrap();
        let on_b = contents(&mut b.client(), "chain");
        assert_eq!(on_b.len(), 50, "A reaches B");
        let r = c.client().get("chain", "k7").unwrap();
        if cascades == "always" {
            assert_eq!(r.status, 200, "with cascades always A's writes reach C: {}", r.text());
            assert_eq!(contents(&mut c.client(), "chain"), on_b);
        } else {
            assert_eq!(r.status, 404, "with cascades never A's writes stop at B");
            // B's own writes still go to C.
            ok(b.client().put("chain", "from-b", b"written at B"), "put on B");
            b.wait_drained("dc3", Duration::from_secs(30)).unwrap();
            assert_eq!(c.client().get("chain", "from-b").unwrap().body, b"written at B");
        }
    }
}

#[test]
fn ring_size_mismatch_is_refused_with_both_sizes() {
    let root = tempfile::tempdir().unwrap();
    let a = start(root.path(), opts("dc1"));
    let mut ob = opts("dc2");
    ob.ring_size = 32;
    let b = start(root.path(), ob);
    let err = a.admin("POST", "/repl/connect", json!({"addr": b.repl.to_string()})).unwrap_err();
    assert!(err.contains("ring size mismatch") && err.contains("16") && err.contains("32"), "{err}");
    assert!(a.admin("GET", "/repl/connections", serde_json::Value::Null).unwrap()["sinks"].as_array().unwrap().is_empty());
    eventually(Duration::from_secs(5), "the sink logs the refusal", || b.log_tail().contains("ring size mismatch"));
}

#[test]
fn proxy_get_serves_objects_whose_blocks_never_came_in_realtime() {
    let root = tempfile::tempdir().unwrap();
    let mut oa = opts("dc1");
    // (no fullsync: one that ran after the PUTs would copy the blocks)
    oa.extra = "realtime_blocks = false\nfullsync_on_connect = false\n".into();
    let a = start(root.path(), oa);
    let b = start(root.path(), opts("dc2"));
    a.replicate_to(&b).unwrap();
    let mut s3 = a.client();
    ok(s3.create_bucket("pgb"), "bucket");
    let big = payload(42, 3 * 1048576 + 77);
    ok(s3.put("pgb", "big", &big), "put big");
    ok(s3.put("pgb", "small", b"inline"), "put small");
    a.wait_drained("dc2", Duration::from_secs(30)).unwrap();
    let mut s3b = b.client();
    assert_eq!(s3b.get("pgb", "small").unwrap().body, b"inline", "inline objects need no blocks");
    // The manifest is there, the blocks are not, and proxy_get is off.
    let r = s3b.get("pgb", "big").unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("proxy_get is not enabled"), "{}", r.text());
    post(&a, "/repl/proxy-get/enable", json!({"sink": "dc2"}));
    let r = s3b.get("pgb", "big").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body == big, "proxied content is byte-exact");
    // The blocks were stored: they are served again with the source gone.
    drop(a);
    let r = s3b.get("pgb", "big").unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body == big);
    let r = s3b.request("GET", "/pgb/big", "", &[("range", "bytes=1048570-1048580")], &[]).unwrap();
    assert_eq!(r.status, 206, "{}", r.text());
    assert_eq!(r.body, big[1048570..=1048580]);
}

#[test]
fn connections_and_realtime_state_survive_restarts() {
    let root = tempfile::tempdir().unwrap();
    let mut oa = opts("dc1");
    // Fullsync would copy what realtime skips; this test is about realtime.
    oa.extra = "fullsync_on_connect = false\n".into();
    let mut a = start(root.path(), oa);
    let b = start(root.path(), opts("dc2"));
    a.replicate_to(&b).unwrap();
    ok(a.client().create_bucket("persist"), "bucket");
    post(&a, "/repl/realtime/stop", json!({"sink": "dc2"}));
    // Stopped: writes queue up.
    for i in 0..20usize {
        ok(a.client().put("persist", &format!("k{i}"), &payload(i, 2000)), "put");
    }
    let st = a.sink_status("dc2").unwrap();
    assert_eq!(st["realtime"], "stopped");
    assert!(st["queued_records"].as_u64().unwrap() > 0);
    a.restart().unwrap();
    let st = a.sink_status("dc2").unwrap();
    assert_eq!(st["realtime"], "stopped", "state persisted");
    assert!(st["queued_records"].as_u64().unwrap() > 0, "queue persisted: {st}");
    post(&a, "/repl/realtime/start", json!({"sink": "dc2"}));
    a.wait_drained("dc2", Duration::from_secs(30)).unwrap();
    assert_eq!(contents(&mut b.client(), "persist").len(), 20);
    // Disable drops the queue; a later enable starts from the head.
    post(&a, "/repl/realtime/disable", json!({"sink": "dc2"}));
    ok(a.client().put("persist", "while-disabled", b"x"), "put");
    post(&a, "/repl/realtime/enable", json!({"sink": "dc2"}));
    post(&a, "/repl/realtime/start", json!({"sink": "dc2"}));
    ok(a.client().put("persist", "after", b"y"), "put");
    a.wait_drained("dc2", Duration::from_secs(30)).unwrap();
    assert_eq!(b.client().get("persist", "after").unwrap().status, 200);
    assert_eq!(b.client().get("persist", "while-disabled").unwrap().status, 404, "nothing is queued while disabled");
}
