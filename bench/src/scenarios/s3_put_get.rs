//! `s3-put-get`: PUT and GET of 1 MiB and 64 MiB objects through the S3 API
//! of one `dataplane` node, several clients at once (threads, one
//! connection each, UNSIGNED-PAYLOAD). PUT is compared with the storage
//! layer's own append throughput (1 MiB records, in process, same
//! filesystem, same run); GET with iperf3 single-stream loopback.

use crate::report::Figure;
use crate::scenarios::storage_append;
use crate::util::{self, gbps, size_label, Res};
use crate::{anchors, Opts};

const S: &str = "s3-put-get";

pub fn run(o: &Opts) -> Res<Vec<Figure>> {
    let root = util::fresh_dir(&o.work_dir, "s3-put-get");
    let threads = 4;
    // (object size, objects)
    let plan: [(usize, usize); 2] = if o.quick { [(1 << 20, 384), (64 << 20, 8)] } else { [(1 << 20, 4096), (64 << 20, 64)] };

    // Anchors, measured first, on the same filesystem.
    let append_mb: u64 = if o.quick { 512 } else { 4096 };
    let (secs, bytes) = storage_append::on_one_core({
        let d = root.join("append-anchor");
        move || storage_append::append_run(d, append_mb, 1 << 20, "blk")
    });
    let _ = std::fs::remove_dir_all(root.join("append-anchor"));
    let append = bytes as f64 / secs;
    println!("anchor: storage append of 1 MiB records (one core, in process): {}", gbps(append));
    let iperf = anchors::iperf3_loopback(if o.quick { 3 } else { 10 });
    println!("anchor: iperf3 single-stream loopback: {}", gbps(iperf));

    // Context: GETs right after PUTs read sealed segments written with
    // O_DIRECT (not in the page cache) through mmap.
    let mmap_read = anchors::fio_read_mmap(&root, append_mb);
    println!("context: fio cold sequential mmap reads of an O_DIRECT-written file: {}", gbps(mmap_read));

    let node = util::start(&root, util::opts("s3", util::cpus(), ""))?;
    util::create_bucket(&node, "bench")?;
    let mut figs = Vec::new();
    for (size, n) in plan {
        let label = size_label(size);
        let key = move |i: usize| format!("{label}/{i:06}");
        let label = size_label(size);
        let w = util::put_parallel(node.s3, "bench", n, size, threads, 1, &key)?;
        println!("PUT {n} x {label} with {threads} clients: {} ({:.0} objects/s)", gbps(w.bytes_per_sec()), w.objects_per_sec());
        let r = util::get_parallel(node.s3, "bench", n, size, threads, &key)?;
        println!("GET {n} x {label} with {threads} clients: {} ({:.0} objects/s)", gbps(r.bytes_per_sec()), r.objects_per_sec());
        figs.push(Figure::vs(S, &format!("put_{label}_{threads}_clients"), w.bytes_per_sec(), "B/s", "storage append 1MiB (1 core)", append, ">= 0.7"));
        figs.push(Figure::vs(S, &format!("get_{label}_{threads}_clients"), r.bytes_per_sec(), "B/s", "iperf3 1-stream loopback", iperf, ">= 0.8"));
        figs.push(Figure::vs(S, &format!("get_{label}_vs_cold_mmap_read"), r.bytes_per_sec(), "B/s", "fio cold mmap seq read", mmap_read, "").no_target());
    }
    drop(node);
    util::cleanup(&root);
    Ok(figs)
}
