//! Crash suite: a source and a sink under a random S3 workload (objects of
//! 0 B to 8 MiB, overwrites, deletes, several buckets), one of them killed
//! with SIGKILL at random moments and restarted. At the end every write that
//! a client saw acknowledged is on the source, and once realtime has drained
//! and a fullsync has run the sink equals the source: same keys, versions and
//! content hashes.
//!
//! `CRASH_KILLS` sets the number of kills (default 5, the short mode run by
//! `scripts/test.sh`); `scripts/reliability.sh --long` runs 100.
//! `CRASH_SEED` replays a run (the seed is printed at the start).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const BUCKETS: usize = 3;
const WRITERS: usize = 2;
/// Keys per writer and bucket: small enough that overwrites and deletes of
/// existing keys are frequent.
const KEYS_PER_WRITER: u64 = 24;
const MAX_OBJECT_BYTES: u64 = 8 << 20;
/// Blocks of overwritten objects are reclaimed after this long (short, so
/// that the storage of both sites converges within the test).
const RECLAIM_LEEWAY_MS: u64 = 1000;
/// Orphan-block sweep period on both sites (short, for the same reason).
const ORPHAN_SWEEP_MS: u64 = 1000;
const STORAGE_CONVERGENCE_ATTEMPTS: usize = 3;

/// What a client may find under a key: the last acknowledged state, or the
/// state of any write made after it whose answer never came.
#[derive(Default, Clone)]
struct KeyState {
    /// `None`: absent (never written, or deleted).
    acked: Option<[u8; 16]>,
    uncertain: Vec<Option<[u8; 16]>>,
}

#[derive(Default)]
struct Totals {
    acked: AtomicU64,
    uncertain: AtomicU64,
    bytes_acked: AtomicU64,
}

fn object_size(rng: &mut Rng) -> u64 {
    match rng.range(0, 100) {
        0..=4 => 0,
        5..=44 => rng.range(1, 16 << 10),
        45..=79 => rng.range(16 << 10, 512 << 10),
        80..=94 => rng.range(512 << 10, 3 << 20),
        _ => rng.range(3 << 20, MAX_OBJECT_BYTES + 1),
    }
}

fn writer(
    w: usize,
    seed: u64,
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    model: Arc<Mutex<BTreeMap<(String, String), KeyState>>>,
    totals: Arc<Totals>,
) {
    let mut rng = Rng::new(seed ^ (w as u64 + 1) * 0x1234_5678);
    let mut s3 = S3Client::new(addr, dataplane::demo::DEMO_ACCESS_KEY, dataplane::demo::DEMO_SECRET_KEY);
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let bucket = format!("crash{}", rng.range(0, BUCKETS as u64));
        let key = format!("w{w}/obj-{:02}", rng.range(0, KEYS_PER_WRITER));
        let delete = rng.chance(20);
        let (value, r) = if delete {
            (None, s3.delete(&bucket, &key))
        } else {
            let data = payload(w * 1_000_000 + n, object_size(&mut rng) as usize);
            (Some(dataplane::s3::checksum::md5(&data)), s3.put(&bucket, &key, &data).map(|r| (r, data.len())).map(|(r, len)| {
                if r.status == 200 {
                    totals.bytes_acked.fetch_add(len as u64, Ordering::Relaxed);
                }
                r
            }))
        };
        let mut m = model.lock().unwrap();
        let st = m.entry((bucket.clone(), key.clone())).or_default();
        match r {
            Ok(resp) if resp.status == 200 || resp.status == 204 => {
                st.acked = value;
                st.uncertain.clear();
                totals.acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(resp) => {
                // A node that is going down may answer 503; nothing else is
                // expected from a correct request.
                assert!(resp.status >= 500, "{} {bucket}/{key}: {} {}", if delete { "DELETE" } else { "PUT" }, resp.status, resp.text());
                st.uncertain.push(value);
                totals.uncertain.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                st.uncertain.push(value);
                totals.uncertain.fetch_add(1, Ordering::Relaxed);
                drop(m);
                // The source is down or restarting: back off, reconnect.
                std::thread::sleep(Duration::from_millis(100));
                s3 = S3Client::new(addr, dataplane::demo::DEMO_ACCESS_KEY, dataplane::demo::DEMO_SECRET_KEY);
            }
        }
    }
}

#[test]
fn random_sigkills_of_source_and_sink_lose_no_acknowledged_write_and_sites_converge() {
    let kills: usize = std::env::var("CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let seed = Rng::seed_from_env("CRASH_SEED");
    eprintln!("crash suite: {kills} kills, CRASH_SEED={seed}");
    let mut rng = Rng::new(seed);
    let mut root = tempfile::tempdir().unwrap();
    // CRASH_KEEP: the directory survives a failure too (node logs).
    if std::env::var("CRASH_KEEP").is_ok() {
        root.disable_cleanup(true);
        eprintln!("keeping {}", root.path().display());
    }
    let mut oa = opts("src");
    oa.extra = "reconnect_max_ms = 2000\n".into();
    oa.sets = vec![format!("s3.reclaim_leeway_ms={RECLAIM_LEEWAY_MS}"), format!("s3.orphan_sweep_interval_ms={ORPHAN_SWEEP_MS}")];
    let mut ob = oa.clone();
    ob.name = "snk".into();
    let mut a = start(root.path(), oa);
    let mut b = start(root.path(), ob);
    a.replicate_to(&b).unwrap();
    let buckets: Vec<String> = (0..BUCKETS).map(|i| format!("crash{i}")).collect();
    {
        let mut s3 = a.client();
        for bk in &buckets {
            ok(s3.create_bucket(bk), "create bucket");
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let model = Arc::new(Mutex::new(BTreeMap::new()));
    let totals = Arc::new(Totals::default());
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (stop, model, totals, addr) = (stop.clone(), model.clone(), totals.clone(), a.s3);
            std::thread::spawn(move || writer(w, seed, addr, stop, model, totals))
        })
        .collect();

    let t0 = Instant::now();
    let (mut source_kills, mut sink_kills) = (0, 0);
    for i in 0..kills {
        std::thread::sleep(Duration::from_millis(rng.range(300, 2500)));
        let victim = if rng.chance(50) { &mut a } else { &mut b };
        if victim.name == "src" {
            source_kills += 1;
        } else {
            sink_kills += 1;
        }
        eprintln!("kill {}/{kills}: {} at {:.1} s ({} writes acknowledged so far)", i + 1, victim.name, t0.elapsed().as_secs_f64(), totals.acked.load(Ordering::Relaxed));
        victim.kill();
        std::thread::sleep(Duration::from_millis(rng.range(0, 800)));
        victim.start_again().unwrap_or_else(|e| panic!("restart after SIGKILL: {e}"));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().expect("writer thread");
    }
    let model = model.lock().unwrap().clone();

    // 1. Every acknowledged write is on the source.
    let mut s3 = a.client();
    let mut lost = Vec::new();
    for ((bk, key), st) in &model {
        let r = s3.get(bk, key).expect("GET from the source");
        let found = match r.status {
            200 => Some(dataplane::s3::checksum::md5(&r.body)),
            404 => None,
            s => panic!("GET {bk}/{key}: {s} {}", r.text()),
        };
        if found != st.acked && !st.uncertain.contains(&found) {
            lost.push(format!("{bk}/{key}: found {:?}, acknowledged {:?} ({} unacknowledged attempts after it)", found.map(hex), st.acked.map(hex), st.uncertain.len()));
        }
    }
    assert!(lost.is_empty(), "acknowledged writes lost or corrupted on the source (CRASH_SEED={seed}):\n{}", lost.join("\n"));
    let src_objects = site_objects(&a, &buckets);
    for (bk, key) in src_objects.keys() {
        assert!(model.contains_key(&(bk.clone(), key.clone())), "{bk}/{key} on the source was never written");
    }

    // 2. Realtime drains; then a fullsync leaves the sink equal to the source.
    a.wait_drained("snk", Duration::from_secs(300)).unwrap();
    let before_fullsync = differences(&src_objects, &site_objects(&b, &buckets));
    let fs = fresh_fullsync(&a, "snk", Duration::from_secs(300));
    let diffs = differences(&src_objects, &site_objects(&b, &buckets));
    assert!(diffs.is_empty(), "sink differs from the source after a fullsync (CRASH_SEED={seed}):\n{}", diffs.join("\n"));
    // 3. Storage converges too: once overwritten blocks are reclaimed on the
    // source and orphan blocks swept on the sink, both hold the same records
    // and a fullsync finds no differing hash-tree segment.
    let mut fs2 = Value::Null;
    for _ in 0..STORAGE_CONVERGENCE_ATTEMPTS {
        std::thread::sleep(Duration::from_millis(6 * ORPHAN_SWEEP_MS));
        fs2 = fresh_fullsync(&a, "snk", Duration::from_secs(300));
        if fs2["segments_differing"] == 0 {
            break;
        }
    }
    assert_eq!(fs2["segments_differing"], 0, "the stores of source and sink still differ (CRASH_SEED={seed}): {fs2}");
    let s = a.sink_status("snk").unwrap();
    eprintln!(
        "crash suite passed: {kills} kills ({source_kills} source, {sink_kills} sink) in {:.1} s; {} writes acknowledged ({:.1} MiB), {} unanswered; \
         {} objects on both sites; {} differed after realtime alone; fullsync found {} differing tree segments and pushed {} records; realtime reconnects {}; orphan blocks swept on the sink {}",
        t0.elapsed().as_secs_f64(),
        totals.acked.load(Ordering::Relaxed),
        totals.bytes_acked.load(Ordering::Relaxed) as f64 / (1 << 20) as f64,
        totals.uncertain.load(Ordering::Relaxed),
        src_objects.len(),
        before_fullsync.len(),
        fs["segments_differing"],
        fs["objects_sent"],
        s["reconnects"],
        b.admin("GET", "/status", Value::Null).unwrap()["storage"]["orphan_blocks_expunged"],
    );
    if !before_fullsync.is_empty() {
        eprintln!("differences before the fullsync:\n{}", before_fullsync.join("\n"));
    }
}

fn hex(d: [u8; 16]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}
