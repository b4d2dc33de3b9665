//! `scale`: tables rather than single figures.
//!
//! - Throughput by object size (1 KiB to 64 MiB): PUT into the source, then
//!   realtime drain to the sink, both against fio's O_DIRECT write
//!   throughput measured in the same run.
//! - Throughput by cores (1 to all): the same with 1 MiB objects, clusters
//!   of 1..=cores executors, against the 1-core figures.
//! - Index memory per million keys and restart time by key count: one node
//!   filled with 100-byte objects step by step; after each step the node's
//!   `index_bytes` and, after a restart, its resident memory.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::report::Figure;
use crate::util::{self, gbps, size_label, Res};
use crate::{anchors, Opts};

const S: &str = "scale";
const THREADS: usize = 4;
const NO_FULLSYNC: &str = "fullsync_on_connect = false\n";

pub fn run(o: &Opts) -> Res<Vec<Figure>> {
    let root = util::fresh_dir(&o.work_dir, S);
    let mut figs = Vec::new();
    let fio = anchors::fio_write(&root, if o.quick { 512 } else { 2048 });
    println!("anchor: fio sequential 1 MiB O_DIRECT io_uring writes: {}", gbps(fio));
    let fio_name = "fio seq 1MiB O_DIRECT";

    // 1. By object size.
    let volume: usize = if o.quick { 96 << 20 } else { 1 << 30 };
    let small_cap = if o.quick { 10_000 } else { 100_000 };
    let cores = util::cpus();
    {
        let dir = root.join("by-size");
        let sink = util::start(&dir, util::opts("size-sink", cores, NO_FULLSYNC))?;
        let mut src = util::start(&dir, util::opts("size-src", cores, NO_FULLSYNC))?;
        util::connect_enable(&src, &sink.repl.to_string(), "size-sink")?;
        util::create_bucket(&src, "bysize")?;
        println!("\n{:>8} {:>8} {:>12} {:>12} {:>14} {:>12} {:>12}", "size", "objects", "PUT", "PUT obj/s", "drain", "drain obj/s", "drain s");
        for size in [1 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20] {
            let n = (volume / size).clamp(4, small_cap);
            let label = size_label(size);
            let key = |i: usize| format!("{}/{i:07}", size_label(size));
            if util::restart_every() > 0 {
                // A fresh process for each size (see util::restart_every).
                src.restart()?;
            }
            let w = util::put_preload(&mut src, "bysize", n, size, THREADS, 5, &key)?;
            let d = util::start_and_drain(&src, "size-sink", Duration::from_secs(600))?;
            crate::scenarios::realtime::verify_sample(&sink, "bysize", n, size, &key)?;
            util::stop_realtime(&src, "size-sink")?;
            let drain = w.bytes as f64 / d.secs;
            println!("{label:>8} {n:>8} {:>12} {:>12.0} {:>14} {:>12.0} {:>12.3}", gbps(w.bytes_per_sec()), w.objects_per_sec(), gbps(drain), n as f64 / d.secs, d.secs);
            figs.push(Figure::vs(S, &format!("put_{label}"), w.bytes_per_sec(), "B/s", fio_name, fio, "").no_target());
            figs.push(Figure::vs(S, &format!("drain_{label}"), drain, "B/s", fio_name, fio, "").no_target());
        }
    }
    let _ = std::fs::remove_dir_all(root.join("by-size"));

    // 2. By cores.
    let n = if o.quick { 128 } else { 1024 };
    let mut base: Option<(f64, f64)> = None;
    println!("\n{:>6} {:>12} {:>14}", "cores", "PUT 1MiB", "drain 1MiB");
    for c in 1..=cores {
        let dir = root.join(format!("cores-{c}"));
        let sink = util::start(&dir, util::opts("cores-sink", c, NO_FULLSYNC))?;
        let src = util::start(&dir, util::opts("cores-src", c, NO_FULLSYNC))?;
        util::connect_enable(&src, &sink.repl.to_string(), "cores-sink")?;
        util::create_bucket(&src, "bycores")?;
        let key = |i: usize| format!("o/{i:07}");
        let w = util::put_parallel(src.s3, "bycores", n, 1 << 20, THREADS, 9, &key)?;
        let d = util::start_and_drain(&src, "cores-sink", Duration::from_secs(600))?;
        let drain = w.bytes as f64 / d.secs;
        println!("{c:>6} {:>12} {:>14}", gbps(w.bytes_per_sec()), gbps(drain));
        let (p1, d1) = *base.get_or_insert((w.bytes_per_sec(), drain));
        figs.push(Figure::vs(S, &format!("put_1MiB_{c}_cores"), w.bytes_per_sec(), "B/s", "same, 1 core", p1, "").no_target());
        figs.push(Figure::vs(S, &format!("drain_1MiB_{c}_cores"), drain, "B/s", "same, 1 core", d1, "").no_target());
        drop(src);
        drop(sink);
        let _ = std::fs::remove_dir_all(&dir);
    }

    // 3. Index memory and restart time by key count.
    let steps: Vec<usize> = if o.quick { vec![0, 20_000, 50_000] } else { vec![0, 100_000, 300_000, 1_000_000] };
    let dir = root.join("keys");
    let mut node = util::start(&dir, util::opts("keys", cores, ""))?;
    util::create_bucket(&node, "keys")?;
    let mut written = 0;
    let mut first: Option<(u64, u64, u64)> = None; // keys, index bytes, RSS
    println!("\n{:>9} {:>12} {:>14} {:>10} {:>14}", "keys", "index bytes", "bytes/key", "restart s", "RSS after");
    for &target in &steps {
        if target > written {
            let from = written;
            let key = move |i: usize| format!("key/{:010}", from + i);
            util::put_preload(&mut node, "keys", target - written, 100, THREADS, 13, &key)?;
            written = target;
        }
        let st = node.admin("GET", "/status", Value::Null)?;
        let keys = st["storage"]["keys"].as_u64().unwrap_or(0);
        let index = st["storage"]["index_bytes"].as_u64().unwrap_or(0);
        node.stop();
        let t = Instant::now();
        node.start_again()?;
        let restart = t.elapsed().as_secs_f64();
        let rss = util::node_pid(&node.dir).and_then(util::rss_of).unwrap_or(0);
        let (k0, i0, r0) = *first.get_or_insert((keys, index, rss));
        println!("{keys:>9} {index:>12} {:>14.1} {restart:>10.2} {:>14}", index as f64 / keys.max(1) as f64, rss);
        if target > 0 {
            figs.push(Figure::plain(S, &format!("restart_s_{target}_keys"), restart, "s"));
        }
        if target == *steps.last().unwrap() && target > 0 {
            // Growth from the empty node, so that fixed costs (hash trees,
            // buffers) do not count as per-key memory.
            let dk = keys.saturating_sub(k0).max(1) as f64;
            figs.push(Figure::plain(S, &format!("index_bytes_per_million_keys_at_{target}"), index.saturating_sub(i0) as f64 / dk * 1e6, "bytes"));
            figs.push(Figure::plain(S, &format!("rss_growth_per_million_keys_at_{target}"), rss.saturating_sub(r0) as f64 / dk * 1e6, "bytes"));
        }
    }
    drop(node);
    util::cleanup(&root);
    Ok(figs)
}
