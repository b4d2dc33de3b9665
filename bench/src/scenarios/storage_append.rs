//! `storage-append`: partition append throughput against fio, index memory
//! per key, restart time from hints vs a full scan.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use storage::{Kind, Partition, PartitionConfig, PutMode, SyncMode, Version, WriteRecord, FLAG_REPLICATE, FLAG_TREE};

use crate::anchors;
use crate::report::Figure;
use crate::Opts;

const S: &str = "storage-append";

pub fn on_one_core<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f).join().unwrap()
}

fn exec<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(0))
        .io_memory(storage::RECOMMENDED_IO_MEMORY_BYTES)
        .preempt_timer(storage::RECOMMENDED_PREEMPT_TIMER)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

fn cfg() -> PartitionConfig {
    PartitionConfig { sync: SyncMode::Interval(Duration::from_millis(100)), segment_bytes: 256 << 20, ..PartitionConfig::default() }
}

/// Appends `count` records of `size` bytes; returns (seconds, bytes).
pub fn append_run(dir: PathBuf, count: u64, size: usize, key_prefix: &'static str) -> (f64, u64) {
    exec(move || async move {
        let p = Partition::open(&dir, 0, cfg()).await.unwrap();
        let value = vec![0xabu8; size];
        let vhash = xxhash_rust::xxh3::xxh3_64(&value);
        let mut key = Vec::with_capacity(32);
        let t = Instant::now();
        let mut last = 0;
        for i in 0..count {
            key.clear();
            key.extend_from_slice(key_prefix.as_bytes());
            key.extend_from_slice(&i.to_be_bytes());
            let parts = [&value[..]];
            let r = WriteRecord { kind: Kind::Block, flags: FLAG_REPLICATE | FLAG_TREE, key: &key, meta: b"", value: &parts, version: Version { hlc: i + 1, cluster: 1 }, vhash };
            last = p.append(&r, PutMode::Always).await.unwrap().lsn().unwrap();
        }
        p.wait_durable(last).await.unwrap();
        p.sync().await.unwrap();
        let secs = t.elapsed().as_secs_f64();
        let bytes = p.stats().appended_bytes;
        p.close().await.unwrap();
        (secs, bytes)
    })
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) * 4096
}

pub fn run(o: &Opts) -> Vec<Figure> {
    let base = o.work_dir.join("storage-append");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let mut figs = Vec::new();
    let big_mb: u64 = if o.quick { 512 } else { 4096 };
    // BENCH_APPEND_1KIB_ONLY=1: only the 1 KiB append figure (a profiling aid).
    let only_small = std::env::var_os("BENCH_APPEND_1KIB_ONLY").is_some();

    if !only_small {
        big_append(&base, big_mb, &mut figs);
    }
    let small: u64 = if o.quick { 1_000_000 } else { 4_000_000 };
    let (secs, _) = on_one_core({
        let d = base.join("small");
        move || append_run(d, small, 1024, "k")
    });
    let _ = std::fs::remove_dir_all(base.join("small"));
    let rate = small as f64 / secs;
    println!("storage 1 KiB appends: {:.0}/s on one core", rate);
    figs.push(Figure::plain(S, "append_1KiB_per_sec_one_core", rate, "records/s").with_target(">= 1000000"));
    if only_small {
        let _ = std::fs::remove_dir_all(&base);
        return figs;
    }

    // Index memory per key and restart times.
    let keys: u64 = if o.quick { 1_000_000 } else { 10_000_000 };
    let dir = base.join("index");
    let (per_key, key_len, rss_per_key) = exec({
        let dir = dir.clone();
        move || async move {
            let rss0 = rss_bytes();
            let p = Partition::open(&dir, 0, cfg()).await.unwrap();
            let mut key = Vec::with_capacity(32);
            let mut last = 0;
            for i in 0..keys {
                key.clear();
                key.extend_from_slice(b"object/");
                key.extend_from_slice(format!("{i:012}").as_bytes());
                let r = WriteRecord { kind: Kind::Manifest, flags: FLAG_TREE, key: &key, meta: b"", value: &[b"v"], version: Version { hlc: i + 1, cluster: 1 }, vhash: i };
                last = p.append(&r, PutMode::Always).await.unwrap().lsn().unwrap();
            }
            p.wait_durable(last).await.unwrap();
            let st = p.stats();
            let rss = rss_bytes().saturating_sub(rss0);
            p.close().await.unwrap();
            (st.index_heap_bytes as f64 / keys as f64, key.len() as f64, rss as f64 / keys as f64)
        }
    });
    println!("index: {per_key:.1} bytes/key (keys of {key_len} bytes); process RSS growth {rss_per_key:.1} bytes/key");
    figs.push(Figure {
        target: Some(format!("<= {}", 64.0 + key_len)),
        ..Figure::plain(S, &format!("index_bytes_per_key_{}M_keys", keys / 1_000_000), per_key, "bytes")
    });
    let reopen = |dir: PathBuf| {
        exec(move || async move {
            let t = Instant::now();
            let p = Partition::open(&dir, 0, cfg()).await.unwrap();
            let secs = t.elapsed().as_secs_f64();
            assert_eq!(p.key_count() as u64, keys);
            p.close().await.unwrap();
            secs
        })
    };
    let from_hints = reopen(dir.clone());
    remove_hints(&dir);
    let from_scan = reopen(dir.clone());
    println!("restart with {keys} keys: {from_hints:.2} s from hints, {from_scan:.2} s from a full scan");
    figs.push(Figure::vs(S, &format!("restart_from_hints_{}M_keys", keys / 1_000_000), from_hints, "s", "restart from full scan", from_scan, "<= 1.0"));
    let _ = std::fs::remove_dir_all(&base);
    figs
}

/// fio's sequential 1 MiB writes (the anchor, first, on the same
/// filesystem), then the partition's 1 MiB appends against it.
fn big_append(base: &Path, big_mb: u64, figs: &mut Vec<Figure>) {
    let fio = anchors::fio_write(base, big_mb);
    println!("fio sequential 1 MiB O_DIRECT io_uring writes: {:.2} GB/s", fio / 1e9);
    let (secs, bytes) = on_one_core({
        let d = base.join("big");
        move || append_run(d, big_mb, 1 << 20, "blk")
    });
    let _ = std::fs::remove_dir_all(base.join("big"));
    let bw = bytes as f64 / secs;
    println!("storage 1 MiB appends: {:.2} GB/s", bw / 1e9);
    figs.push(Figure::vs(S, "append_1MiB_throughput", bw, "B/s", "fio seq 1MiB O_DIRECT io_uring", fio, ">= 0.8"));
}

fn remove_hints(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().map(|x| x == "hint").unwrap_or(false) {
            std::fs::remove_file(p).unwrap();
        }
    }
}
