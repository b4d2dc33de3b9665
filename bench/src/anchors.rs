//! Anchors measured in the same run: fio, iperf3, openssl speed, redis
//! replication catch-up, rsync.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn have(cmd: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {cmd}")).stdout(Stdio::null()).status().map(|s| s.success()).unwrap_or(false)
}

fn need(cmd: &str) {
    if !have(cmd) {
        panic!("{cmd} is not installed; run scripts/peers.sh to install the anchors");
    }
}

/// fio sequential 1 MiB O_DIRECT writes through io_uring into `dir`;
/// returns bytes per second.
pub fn fio_write(dir: &Path, size_mb: u64) -> f64 {
    need("fio");
    let file = dir.join("fio-anchor.dat");
    let out = Command::new("fio")
        .args([
            "--name=anchor",
            &format!("--filename={}", file.display()),
            "--rw=write",
            "--bs=1M",
            &format!("--size={size_mb}M"),
            "--ioengine=io_uring",
            "--direct=1",
            "--end_fsync=1",
            "--output-format=json",
        ])
        .output()
        .expect("run fio");
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "fio failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("fio json");
    v["jobs"][0]["write"]["bw_bytes"].as_f64().expect("fio bw_bytes")
}

/// Cold sequential reads through mmap of a file written with O_DIRECT
/// (so not in the page cache), as the nodes read sealed log segments;
/// bytes per second. Context for figures that read what was just written.
pub fn fio_read_mmap(dir: &Path, size_mb: u64) -> f64 {
    need("fio");
    let file = dir.join("fio-read-anchor.dat");
    let f = format!("--filename={}", file.display());
    let size = format!("--size={size_mb}M");
    let w = Command::new("fio")
        .args(["--name=prep", &f, "--rw=write", "--bs=1M", &size, "--ioengine=io_uring", "--direct=1", "--end_fsync=1", "--output-format=terse"])
        .output()
        .expect("run fio");
    assert!(w.status.success(), "fio failed: {}", String::from_utf8_lossy(&w.stderr));
    let out = Command::new("fio").args(["--name=anchor", &f, "--rw=read", "--bs=1M", &size, "--ioengine=mmap", "--output-format=json"]).output().expect("run fio");
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "fio failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("fio json");
    v["jobs"][0]["read"]["bw_bytes"].as_f64().expect("fio bw_bytes")
}

/// iperf3 single-stream loopback throughput in bytes per second.
/// What one disk gives a realtime drain between two clusters that share it:
/// fio reading an O_DIRECT-written file (the source's sealed segments) while
/// a second job writes another (the sink's log), both O_DIRECT io_uring 1 MiB,
/// queue depth 4. Returns (read B/s, write B/s) measured at the same time.
pub fn fio_read_while_write(dir: &Path, size_mb: u64) -> (f64, f64) {
    need("fio");
    let rfile = dir.join("fio-rw-read.dat");
    let wfile = dir.join("fio-rw-write.dat");
    let size = format!("--size={size_mb}M");
    let prep = Command::new("fio")
        .args(["--name=prep", &format!("--filename={}", rfile.display()), "--rw=write", "--bs=1M", &size, "--ioengine=io_uring", "--direct=1", "--end_fsync=1", "--output-format=terse"])
        .output()
        .expect("run fio");
    assert!(prep.status.success(), "fio failed: {}", String::from_utf8_lossy(&prep.stderr));
    let common = ["--bs=1M", "--ioengine=io_uring", "--direct=1", "--iodepth=4"];
    let mut args: Vec<String> = vec!["--output-format=json".into(), "--name=read".into(), format!("--filename={}", rfile.display()), "--rw=read".into(), size.clone()];
    args.extend(common.iter().map(|s| s.to_string()));
    args.extend(["--name=write".to_string(), format!("--filename={}", wfile.display()), "--rw=write".into(), size.clone(), "--end_fsync=1".into()]);
    args.extend(common.iter().map(|s| s.to_string()));
    let out = Command::new("fio").args(&args).output().expect("run fio");
    let _ = std::fs::remove_file(&rfile);
    let _ = std::fs::remove_file(&wfile);
    assert!(out.status.success(), "fio failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("fio json");
    let jobs = v["jobs"].as_array().expect("fio jobs");
    let bw = |name: &str, dir: &str| jobs.iter().find(|j| j["jobname"] == name).and_then(|j| j[dir]["bw_bytes"].as_f64()).expect("fio bw_bytes");
    (bw("read", "read"), bw("write", "write"))
}

pub fn iperf3_loopback(seconds: u32) -> f64 {
    need("iperf3");
    let port = 15201 + (std::process::id() % 500) as u16;
    let mut server = Command::new("iperf3")
        .args(["-s", "-1", "-p", &port.to_string(), "-B", "127.0.0.1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start iperf3 server");
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new("iperf3")
        .args(["-c", "127.0.0.1", "-p", &port.to_string(), "-t", &seconds.to_string(), "-J"])
        .output()
        .expect("run iperf3");
    let _ = server.wait();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 json");
    v["end"]["sum_received"]["bits_per_second"].as_f64().expect("iperf3 bits_per_second") / 8.0
}

/// `openssl speed -evp aes-128-gcm` at 16 KiB blocks, one core: bytes/s.
pub fn openssl_aes128gcm_16k() -> f64 {
    need("openssl");
    let out = Command::new("openssl")
        .args(["speed", "-evp", "aes-128-gcm", "-bytes", "16384", "-seconds", "3"])
        .output()
        .expect("run openssl speed");
    let text = String::from_utf8_lossy(&out.stdout);
    // Last line: "AES-128-GCM   1234567.89k"
    let line = text.lines().rev().find(|l| l.to_lowercase().contains("aes-128-gcm")).expect("openssl speed output");
    let k: f64 = line.split_whitespace().last().unwrap().trim_end_matches('k').parse().expect("openssl number");
    k * 1000.0
}

/// rsync -a --checksum between two directories on this machine; returns
/// (seconds, bytes sent on the wire as rsync reports them).
#[allow(dead_code)]
pub fn rsync_checksum(src: &Path, dst: &Path) -> (f64, u64) {
    rsync_with(src, dst, &[])
}

/// As `rsync_checksum`, with `--no-whole-file`: rsync's delta transfer, as
/// it works between two machines (between local directories rsync copies
/// whole files by default).
pub fn rsync_checksum_delta(src: &Path, dst: &Path) -> (f64, u64) {
    rsync_with(src, dst, &["--no-whole-file"])
}

fn rsync_with(src: &Path, dst: &Path, extra: &[&str]) -> (f64, u64) {
    need("rsync");
    let t = Instant::now();
    let out = Command::new("rsync")
        .args(["-a", "--checksum", "--stats"])
        .args(extra)
        .args([&format!("{}/", src.display()), &format!("{}/", dst.display())])
        .output()
        .expect("run rsync");
    let secs = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "rsync failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut bytes = 0;
    for l in text.lines() {
        for key in ["Total bytes sent:", "Total bytes received:"] {
            if let Some(rest) = l.strip_prefix(key) {
                bytes += rest.trim().replace(',', "").parse::<u64>().unwrap_or(0);
            }
        }
    }
    (secs, bytes)
}
