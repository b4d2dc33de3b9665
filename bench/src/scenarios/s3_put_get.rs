//! `s3-put-get`: PUT and GET of 1 MiB and 64 MiB objects through the S3 API
//! of one `dataplane` node, several clients at once (threads, one
//! connection each, UNSIGNED-PAYLOAD). PUT is compared with the storage
//! layer's own append throughput (1 MiB records, in process, same
//! filesystem, same run); GET with iperf3 single-stream loopback. Then
//! 1 KiB and 1 MiB objects against Garage (`versus_garage`).

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
    versus_garage(o, &root, &mut figs)?;
    util::cleanup(&root);
    Ok(figs)
}

/// Load generator threads for the comparison with Garage.
const GARAGE_CLIENTS: usize = 16;

/// One phase's cost: wall time, server CPU, load generator CPU.
struct Cost {
    stats: util::WriteStats,
    server_cpu_secs: f64,
    client_cpu_secs: f64,
}

impl Cost {
    fn cpu_us_per_request(&self) -> f64 {
        self.server_cpu_secs * 1e6 / self.stats.objects as f64
    }
    fn cpu_secs_per_gb(&self) -> f64 {
        self.server_cpu_secs / (self.stats.bytes as f64 / 1e9)
    }
}

fn measured(pid: u32, f: impl FnOnce() -> Res<util::WriteStats>) -> Res<Cost> {
    let (s0, c0) = (util::cpu_secs_of(pid).ok_or("server process gone")?, util::own_cpu_secs());
    let stats = f()?;
    let (s1, c1) = (util::cpu_secs_of(pid).ok_or("server process gone")?, util::own_cpu_secs());
    Ok(Cost { stats, server_cpu_secs: s1 - s0, client_cpu_secs: c1 - c0 })
}

/// PUT then GET of every size of `plan` against one server.
fn phases(addr: std::net::SocketAddr, creds: (&str, &str), pid: u32, plan: &[(usize, usize)]) -> Res<Vec<(usize, Cost, Cost)>> {
    let mut out = Vec::new();
    for &(size, n) in plan {
        let label = size_label(size);
        let key = move |i: usize| format!("g{label}/{i:06}");
        let put = measured(pid, || util::put_range_as(addr, creds, "bench", 0..n, size, GARAGE_CLIENTS, 7, &key))?;
        let get = measured(pid, || util::get_parallel_as(addr, creds, "bench", n, size, GARAGE_CLIENTS, &key))?;
        out.push((size, put, get));
    }
    Ok(out)
}

fn show(server: &str, size: usize, op: &str, c: &Cost) {
    println!(
        "  {server:<9} {op} {:>6}: {:>8.0} req/s {:>6.3} GB/s | server CPU {:>7.1} us/req {:>6.2} s/GB | load generator CPU {:>7.1} us/req",
        size_label(size),
        c.stats.objects_per_sec(),
        c.stats.bytes_per_sec() / 1e9,
        c.cpu_us_per_request(),
        c.cpu_secs_per_gb(),
        c.client_cpu_secs * 1e6 / c.stats.objects as f64
    );
}

/// The same PUT/GET load on one dataplane node and on Garage (single node,
/// replication factor 1, same disk, same load generator), at equal
/// durability both ways. The target is on server CPU per request (and per
/// GB): on two shared cores the load generator can cap both servers'
/// throughput, which is reported beside it.
fn versus_garage(o: &Opts, root: &std::path::Path, figs: &mut Vec<Figure>) -> Res<()> {
    if crate::garage::garage_bin().is_none() {
        println!("SKIP comparison with Garage: not installed (scripts/peers.sh installs it into ~/.cache/dataplane-peers, or set GARAGE_BIN)");
        return Ok(());
    }
    let plan: [(usize, usize); 2] = if o.quick { [(1 << 10, 3000), (1 << 20, 300)] } else { [(1 << 10, 20_000), (1 << 20, 2000)] };
    let modes = [("sync_interval_vs_garage_default", "interval", false), ("sync_always_vs_garage_fsync", "always", true)];
    for (mode, sync, fsync) in modes {
        println!("dataplane storage.sync = {sync} against Garage with metadata_fsync = data_fsync = {fsync}, {GARAGE_CLIENTS} clients:");
        let mut opts = util::opts(&format!("dp-{sync}"), util::cpus(), "");
        opts.sets.push(format!("storage.sync=\"{sync}\""));
        let node = util::start(root, opts)?;
        util::create_bucket(&node, "bench")?;
        let pid = util::node_pid(&node.dir).ok_or("dataplane node pid not found")?;
        let dp = phases(node.s3, (dataplane::demo::DEMO_ACCESS_KEY, dataplane::demo::DEMO_SECRET_KEY), pid, &plan)?;
        drop(node);
        let g = crate::garage::Garage::start(&root.join(format!("garage-{sync}")), dataplane::demo::free_base_port(), fsync)?;
        let ga = phases(g.s3, (crate::garage::ACCESS_KEY, crate::garage::SECRET_KEY), g.pid(), &plan)?;
        drop(g);
        for ((size, dput, dget), (_, gput, gget)) in dp.iter().zip(ga.iter()) {
            let label = size_label(*size);
            for (op, d, gc) in [("put", dput, gput), ("get", dget, gget)] {
                show("dataplane", *size, op, d);
                show("garage", *size, op, gc);
                let m = |what: &str| format!("{mode}_{op}_{label}_{what}");
                figs.push(Figure::vs(S, &m("server_cpu_us_per_req"), d.cpu_us_per_request(), "us", "Garage server CPU per request", gc.cpu_us_per_request(), "<= 0.333"));
                figs.push(Figure::vs(S, &m("server_cpu_s_per_gb"), d.cpu_secs_per_gb(), "s/GB", "Garage server CPU per GB", gc.cpu_secs_per_gb(), "<= 0.333"));
                figs.push(Figure::vs(S, &m("req_per_s"), d.stats.objects_per_sec(), "req/s", "Garage req/s", gc.stats.objects_per_sec(), "").no_target());
                figs.push(Figure::plain(S, &m("loadgen_cpu_us_per_req_dataplane"), d.client_cpu_secs * 1e6 / d.stats.objects as f64, "us"));
                figs.push(Figure::plain(S, &m("loadgen_cpu_us_per_req_garage"), gc.client_cpu_secs * 1e6 / gc.stats.objects as f64, "us"));
            }
        }
    }
    Ok(())
}
