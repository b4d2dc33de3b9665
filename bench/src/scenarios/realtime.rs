//! Realtime drain scenarios between two real clusters on this machine:
//!
//! - `realtime-bulk`: 1 MiB objects, bytes/s, against min(iperf3 loopback,
//!   fio O_DIRECT writes);
//! - `realtime-small`: 1 KiB objects, objects/s, against a redis replica
//!   catching up the same writes;
//! - `realtime-tls`: 1 MiB objects over mutual TLS, against `openssl speed`
//!   AES-128-GCM on one core;
//! - `wan`: 1 MiB objects through a delaying proxy, against the same proxy
//!   without delay.
//!
//! Each preloads the source with realtime enabled but stopped (writes queue
//! up in the source's logs), then starts realtime and times until the
//! source has nothing queued or unacknowledged for the sink.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use dataplane::demo::{free_base_port, Cluster, PORTS_PER_CLUSTER};

use crate::proxy::ProxySet;
use crate::report::Figure;
use crate::util::{self, gbps, Res};
use crate::{anchors, Opts};

/// Realtime scenarios run fullsync only when asked.
const NO_FULLSYNC: &str = "fullsync_on_connect = false\n";
const THREADS: usize = 4;
const MIB: usize = 1 << 20;

/// Source and sink, the source connected to `sink_addr` (default: the
/// sink's own cluster manager port) with realtime enabled and stopped.
struct Pair {
    src: Cluster,
    sink: Cluster,
}

fn pair(root: &Path, names: (&str, &str), extra_src: &str, extra_sink: &str) -> Res<Pair> {
    let cores = util::cpus();
    let sink = util::start(root, util::opts(names.1, cores, &format!("{NO_FULLSYNC}{extra_sink}")))?;
    let src = util::start(root, util::opts(names.0, cores, &format!("{NO_FULLSYNC}{extra_src}")))?;
    Ok(Pair { src, sink })
}

/// GETs up to 16 objects spread over `0..n` from the sink and checks them.
pub fn verify_sample(sink: &Cluster, bucket: &str, n: usize, size: usize, key: &dyn Fn(usize) -> String) -> Res<()> {
    let mut c = util::client(sink.s3);
    let step = (n / 16).max(1);
    for i in (0..n).step_by(step).chain(std::iter::once(n - 1)) {
        let k = key(i);
        let r = c.get(bucket, &k).map_err(|e| format!("GET {bucket}/{k} from the sink: {e}"))?;
        let n8 = size.min(8);
        if r.status != 200 || r.body.len() != size || r.body[..n8] != (i as u64).to_le_bytes()[..n8] {
            return Err(format!("{bucket}/{k} on the sink: status {}, {} bytes: not the object written", r.status, r.body.len()));
        }
    }
    Ok(())
}

/// Preloads `n` objects of `size` bytes, drains them; returns (payload
/// bytes, drain).
fn load_and_drain(p: &mut Pair, sink: &str, bucket: &str, prefix: &str, n: usize, size: usize) -> Res<(u64, util::Drain)> {
    let key = |i: usize| format!("{prefix}/{i:07}");
    let w = util::put_preload(&mut p.src, bucket, n, size, THREADS, 3, &key)?;
    println!("  preloaded {n} x {} with realtime stopped: {} ({:.0} objects/s)", util::size_label(size), gbps(w.bytes_per_sec()), w.objects_per_sec());
    if std::env::var_os("BENCH_WARM_SOURCE").is_some() {
        // Experiment: take the source's cold reads out of the drain.
        let t = std::time::Instant::now();
        let st = std::process::Command::new("sh").arg("-c").arg(format!("find {} -name '*.seg' -exec cat {{}} + > /dev/null", p.src.dir.display())).status();
        println!("  (experiment) source segments read into the page cache in {:.1} s: {st:?}", t.elapsed().as_secs_f64());
    }
    let d = util::start_and_drain(&p.src, sink, Duration::from_secs(if n * size > 1 << 30 { 900 } else { 300 }))?;
    println!(
        "  drained in {:.3} s (first ack after {:.3} s): {} payload, {:.0} objects/s ({} records, {} record bytes acked; steady {}; transport {})",
        d.secs,
        d.first_ack_secs,
        gbps(w.bytes as f64 / d.secs),
        n as f64 / d.secs,
        d.records,
        d.record_bytes,
        gbps(d.steady_bytes_per_sec),
        d.tls_mode
    );
    verify_sample(&p.sink, bucket, n, size, &key)?;
    Ok((w.bytes, d))
}

pub fn bulk(o: &Opts) -> Res<Vec<Figure>> {
    const S: &str = "realtime-bulk";
    let root = util::fresh_dir(&o.work_dir, S);
    let n = if o.quick { 384 } else { 4096 };
    let fio = anchors::fio_write(&root, if o.quick { 512 } else { 4096 });
    println!("anchor: fio sequential 1 MiB O_DIRECT io_uring writes: {}", gbps(fio));
    let iperf = anchors::iperf3_loopback(if o.quick { 3 } else { 10 });
    println!("anchor: iperf3 single-stream loopback: {}", gbps(iperf));
    let (anchor, name) = if iperf < fio { (iperf, "min(iperf3, fio write)=iperf3") } else { (fio, "min(iperf3, fio write)=fio") };
    // Context: the source reads the queued records back from its sealed
    // segments through mmap, and they were written with O_DIRECT.
    let mmap_read = anchors::fio_read_mmap(&root, if o.quick { 512 } else { 4096 });
    println!("context: fio cold sequential mmap reads of an O_DIRECT-written file: {}", gbps(mmap_read));
    // Context: both clusters share this machine's disk, so the drain reads
    // and writes it at once; a perfect drain moves at most the lower of the two.
    let (rw_read, rw_write) = anchors::fio_read_while_write(&root, if o.quick { 512 } else { 2048 });
    let same_disk = rw_read.min(rw_write);
    println!("context: fio O_DIRECT reads while writing on the same disk: read {}, write {}", gbps(rw_read), gbps(rw_write));
    let mut p = pair(&root, ("rt-src", "rt-sink"), "", "")?;
    util::connect_enable(&p.src, &p.sink.repl.to_string(), "rt-sink")?;
    util::create_bucket(&p.src, "bulk")?;
    let (bytes, d) = load_and_drain(&mut p, "rt-sink", "bulk", "b", n, MIB)?;
    drop(p);
    util::cleanup(&root);
    let v = bytes as f64 / d.secs;
    Ok(vec![
        Figure::vs(S, "drain_1MiB_throughput", v, "B/s", name, anchor, ">= 0.9"),
        Figure::vs(S, "drain_1MiB_vs_cold_mmap_read", v, "B/s", "fio cold mmap seq read", mmap_read, "").no_target(),
        Figure::vs(S, "drain_1MiB_vs_same_disk_read_while_write", v, "B/s", "fio min(read, write) at once", same_disk, "").no_target(),
    ])
}

pub fn small(o: &Opts) -> Res<Vec<Figure>> {
    const S: &str = "realtime-small";
    let root = util::fresh_dir(&o.work_dir, S);
    let n = if o.quick { 50_000 } else { 200_000 };
    let redis = crate::redis::replica_catch_up(&root.join("redis"), n, 1024)?;
    println!(
        "anchor: redis replica catching up {n} SETs of 1 KiB: {:.3} s, {:.0} writes/s ({} replication bytes)",
        redis.secs,
        redis.per_sec(),
        redis.repl_bytes
    );
    let mut p = pair(&root, ("small-src", "small-sink"), "", "")?;
    util::connect_enable(&p.src, &p.sink.repl.to_string(), "small-sink")?;
    util::create_bucket(&p.src, "small")?;
    let (_, d) = load_and_drain(&mut p, "small-sink", "small", "s", n, 1024)?;
    drop(p);
    util::cleanup(&root);
    Ok(vec![Figure::vs(S, "drain_1KiB_objects_per_sec", n as f64 / d.secs, "objects/s", "redis replica catch-up (1KiB SETs)", redis.per_sec(), ">= 3")])
}

fn openssl(dir: &Path, args: &[&str]) -> Res<()> {
    let out = Command::new("openssl").args(args).current_dir(dir).output().map_err(|e| format!("running openssl: {e}"))?;
    if !out.status.success() {
        return Err(format!("openssl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

/// A CA and one certificate per name (EC P-256, SANs: the name, localhost,
/// 127.0.0.1), written into `dir` as ca.crt, NAME.crt, NAME.key.
pub fn make_certs(dir: &Path, names: &[&str]) -> Res<()> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut a = vec!["req", "-x509"];
    a.extend(ec);
    a.extend(["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=dataplane-bench-ca", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    openssl(dir, &a)?;
    for n in names {
        let (key, csr, crt, ext) = (format!("{n}.key"), format!("{n}.csr"), format!("{n}.crt"), format!("{n}.ext"));
        let mut a = vec!["req"];
        a.extend(ec);
        let subj = format!("/CN={n}");
        a.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(dir, &a)?;
        std::fs::write(
            dir.join(&ext),
            format!("subjectAltName=DNS:{n},DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n"),
        )
        .map_err(|e| e.to_string())?;
        openssl(dir, &["x509", "-req", "-in", &csr, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", &crt, "-days", "2", "-extfile", &ext])?;
    }
    Ok(())
}

fn tls_section(dir: &Path, name: &str, peers: &[&str]) -> String {
    let peers: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        "\n[tls]\nenabled = true\nrequired = true\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\npeer_names = [{}]\nktls = true\nmin_version = \"1.2\"\n",
        dir.join(format!("{name}.crt")).display(),
        dir.join(format!("{name}.key")).display(),
        dir.join("ca.crt").display(),
        peers.join(", ")
    )
}

pub fn tls(o: &Opts) -> Res<Vec<Figure>> {
    const S: &str = "realtime-tls";
    let root = util::fresh_dir(&o.work_dir, S);
    let n = if o.quick { 256 } else { 2048 };
    let certs = root.join("certs");
    make_certs(&certs, &["tls-src", "tls-sink"])?;
    println!("generated a CA and certificates for tls-src and tls-sink in {}", certs.display());
    let aes = anchors::openssl_aes128gcm_16k();
    println!("anchor: openssl speed -evp aes-128-gcm, 16 KiB blocks, one core: {}", gbps(aes));
    let not_there = |what: &str, e: &str| -> Res<Vec<Figure>> {
        println!("\nrealtime-tls: NO FIGURE. {what}: {e}");
        println!("TLS replication does not work in this build of dataplane yet, so there is nothing to measure (no figure is emitted).");
        Ok(Vec::new())
    };
    let mut p = match pair(&root, ("tls-src", "tls-sink"), &tls_section(&certs, "tls-src", &["tls-sink"]), &tls_section(&certs, "tls-sink", &["tls-src"])) {
        Ok(p) => p,
        Err(e) => return not_there("the clusters did not start with [tls] enabled = true", &e),
    };
    if let Err(e) = util::connect_enable(&p.src, &p.sink.repl.to_string(), "tls-sink") {
        return not_there("the source could not connect to the sink over TLS", &e);
    }
    util::create_bucket(&p.src, "tls")?;
    let (bytes, d) = match load_and_drain(&mut p, "tls-sink", "tls", "t", n, MIB) {
        Ok(x) => x,
        Err(e) => return not_there("realtime over TLS did not drain", &e),
    };
    if d.tls_mode == "plaintext" || d.tls_mode == "none" {
        return not_there("the replication connection is not encrypted", &format!("transport mode {:?}", d.tls_mode));
    }
    drop(p);
    util::cleanup(&root);
    Ok(vec![Figure::vs(S, &format!("drain_1MiB_throughput_{}", d.tls_mode), bytes as f64 / d.secs, "B/s", "openssl aes-128-gcm 16KiB 1 core", aes, ">= 0.7")])
}

pub fn wan(o: &Opts) -> Res<Vec<Figure>> {
    const S: &str = "wan";
    let root = util::fresh_dir(&o.work_dir, S);
    let rtt = Duration::from_millis(o.rtt_ms);
    let n = if o.quick { 512 } else { 4096 };
    // Each phase gets fresh clusters and data directories: a second drain
    // into the same pair runs slower whatever the delay (measured: with the
    // proxy at rtt 0 in both phases, the second drained at 0.66 x the
    // first), which would be charged to the delay.
    println!("without delay (the same proxy, rtt 0):");
    let (b0, d0) = wan_phase(&root.join("lan"), Duration::ZERO, n)?;
    println!("with a {} ms round-trip time:", o.rtt_ms);
    let (b1, d1) = wan_phase(&root.join("wan"), rtt, n)?;
    util::cleanup(&root);
    let r = o.rtt_ms;
    Ok(vec![
        Figure::vs(S, &format!("drain_1MiB_steady_rtt_{r}ms"), d1.steady_bytes_per_sec, "B/s", "same, proxy without delay", d0.steady_bytes_per_sec, ">= 0.8"),
        Figure::vs(S, &format!("drain_1MiB_end_to_end_rtt_{r}ms"), b1 as f64 / d1.secs, "B/s", "same, proxy without delay", b0 as f64 / d0.secs, ">= 0.8"),
    ])
}

/// A source and a sink behind a delaying proxy (`rtt`), `n` x 1 MiB
/// preloaded and drained; returns (payload bytes, drain).
fn wan_phase(root: &Path, rtt: Duration, n: usize) -> Res<(u64, util::Drain)> {
    std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let cores = util::cpus();
    // The sink advertises the proxy; the proxy forwards to the sink's real
    // cluster manager and data ports.
    let sink_port = free_base_port();
    let proxy = ProxySet::delaying(1 + cores as u16, format!("127.0.0.1:{}", sink_port + 10).parse().unwrap(), rtt, &[(sink_port, PORTS_PER_CLUSTER)]);
    let sink = util::start_at(root, sink_port, util::opts("wan-sink", cores, &format!("{NO_FULLSYNC}advertise = \"{}\"\n", proxy.addr())))?;
    let src = util::start(root, util::opts("wan-src", cores, NO_FULLSYNC))?;
    let mut p = Pair { src, sink };
    util::connect_enable(&p.src, &proxy.addr().to_string(), "wan-sink")?;
    util::create_bucket(&p.src, "wan")?;
    let r = load_and_drain(&mut p, "wan-sink", "wan", "wan", n, MIB)?;
    let conns = proxy.counters.connections.load(std::sync::atomic::Ordering::Relaxed);
    println!("  (the proxy forwarded {} bytes over {conns} connections)", proxy.counters.total());
    drop(p);
    drop(proxy);
    util::cleanup(root);
    Ok(r)
}
