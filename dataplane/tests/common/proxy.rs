//! A fault-injecting TCP proxy for replication links. It forwards
//! `listen_base + i` to `target_base + i` for each port, and while faults
//! are on gives each new connection one fault from its plan:
//!
//! - **drop**: after some bytes, both sockets are reset;
//! - **cut**: after some bytes, half of the next chunk is forwarded (a frame
//!   cut in the middle) and both sockets are closed;
//! - **stall**: after some bytes, nothing moves in either direction for a
//!   while (longer or shorter than the peers' dead-peer timeout), then the
//!   connection is dropped;
//!
//! and half of them also delay every chunk by a few milliseconds (a WAN
//! link). A fault fires after a random number of bytes from source to sink,
//! or after a random time for connections that carry little.
//!
//! The faults that actually happened are counted in `FaultStats`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Rng;

/// Bytes a faulty connection forwards (source to sink) before its fault.
const MAX_BYTES_BEFORE_FAULT: u64 = 512 << 10;
/// Age (ms) at which a faulty connection's fault fires at the latest.
const MAX_MS_BEFORE_FAULT: u64 = 3000;
/// Forwarding chunk.
const CHUNK_BYTES: usize = 64 << 10;

#[derive(Default, Debug)]
pub struct FaultStats {
    pub connections: AtomicUsize,
    pub drops: AtomicUsize,
    pub cuts: AtomicUsize,
    pub stalls: AtomicUsize,
    pub delayed: AtomicUsize,
    pub bytes: AtomicU64,
}

impl FaultStats {
    pub fn summary(&self) -> String {
        format!(
            "{} connections: {} dropped, {} cut mid-frame, {} stalled, {} delayed; {} bytes forwarded",
            self.connections.load(Ordering::SeqCst),
            self.drops.load(Ordering::SeqCst),
            self.cuts.load(Ordering::SeqCst),
            self.stalls.load(Ordering::SeqCst),
            self.delayed.load(Ordering::SeqCst),
            self.bytes.load(Ordering::SeqCst)
        )
    }
}

/// What happens to one connection. Under faults a connection is faulty with
/// the configured probability (100 %: every one), and a faulty one ends in
/// its fault after some bytes, or after some time for quiet control
/// connections, so that faults keep coming for as long as they are on.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// Delay of every chunk, both directions (0: none).
    delay_ms: u64,
    fault: Fault,
    /// The fault fires after this many bytes source to sink...
    after_bytes: u64,
    /// ...or once the connection is this old, whichever comes first.
    after_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    None,
    Drop,
    Cut,
    /// Nothing moves for this long, then the connection is dropped.
    Stall(u64),
}

pub struct FaultProxy {
    pub stats: Arc<FaultStats>,
    /// Percent of new connections that get a fault (0: faults off).
    faults: Arc<AtomicU64>,
    /// Sockets of the connections that are open (pruned as they close).
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl FaultProxy {
    /// `stall_max_ms` bounds a stall (make it exceed the peers'
    /// `peer_timeout_ms` so some stalls are detected as dead peers).
    pub fn start(listen_base: u16, target_base: u16, ports: u16, seed: u64, stall_max_ms: u64) -> FaultProxy {
        let stats = Arc::new(FaultStats::default());
        let faults = Arc::new(AtomicU64::new(0));
        let rng = Arc::new(Mutex::new(Rng::new(seed)));
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        for i in 0..ports {
            let l = TcpListener::bind(("127.0.0.1", listen_base + i)).unwrap_or_else(|e| panic!("proxy port {}: {e}", listen_base + i));
            let (stats, faults, rng, live) = (stats.clone(), faults.clone(), rng.clone(), live.clone());
            let to = target_base + i;
            std::thread::spawn(move || {
                for s in l.incoming() {
                    let Ok(client) = s else { continue };
                    let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    };
                    stats.connections.fetch_add(1, Ordering::SeqCst);
                    let mut r = rng.lock().unwrap();
                    let percent = faults.load(Ordering::SeqCst);
                    let plan = if percent > 0 && r.range(0, 100) < percent {
                        let fault = match r.range(0, 3) {
                            0 => Fault::Drop,
                            1 => Fault::Cut,
                            _ => Fault::Stall(r.range(200, stall_max_ms)),
                        };
                        let delay_ms = if r.chance(50) { r.range(1, 30) } else { 0 };
                        Plan { delay_ms, fault, after_bytes: r.range(0, MAX_BYTES_BEFORE_FAULT), after_ms: r.range(100, MAX_MS_BEFORE_FAULT) }
                    } else {
                        let delay_ms = if percent > 0 && r.chance(50) { r.range(1, 30) } else { 0 };
                        Plan { delay_ms, fault: Fault::None, after_bytes: u64::MAX, after_ms: u64::MAX }
                    };
                    drop(r);
                    {
                        let mut l = live.lock().unwrap();
                        l.retain(|s| s.peer_addr().is_ok());
                        l.push(client.try_clone().unwrap());
                    }
                    connection(client, server, plan, stats.clone());
                }
            });
        }
        FaultProxy { stats, faults, live }
    }

    /// Turning faults on also drops every open connection, so that all the
    /// connections that follow get a faulty plan.
    pub fn set_faults(&self, on: bool) {
        self.set_fault_percent(if on { 100 } else { 0 });
    }

    /// Faults on `percent` of the connections opened from now on (0: off);
    /// the open connections are dropped.
    pub fn set_fault_percent(&self, percent: u64) {
        assert!(percent <= 100, "a fault rate of {percent} %");
        self.faults.store(percent, Ordering::SeqCst);
        if percent > 0 {
            for s in self.live.lock().unwrap().drain(..) {
                if s.shutdown(Shutdown::Both).is_ok() {
                    self.stats.drops.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }
}

fn connection(client: TcpStream, server: TcpStream, plan: Plan, stats: Arc<FaultStats>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    // Shared by both directions: until when nothing may move (ms since `t0`).
    let t0 = Instant::now();
    let stall_until = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicBool::new(false));
    if plan.delay_ms > 0 {
        stats.delayed.fetch_add(1, Ordering::SeqCst);
    }
    let sockets = [client.try_clone().unwrap(), server.try_clone().unwrap()];
    // Direction 0: client (replication source) to server (sink) carries the
    // fault; direction 1 only shares stalls and delays.
    for (dir, (mut r, mut w)) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)].into_iter().enumerate() {
        let (stats, stall_until, closed) = (stats.clone(), stall_until.clone(), closed.clone());
        let all: Vec<TcpStream> = sockets.iter().map(|s| s.try_clone().unwrap()).collect();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; CHUNK_BYTES];
            let mut total = 0u64;
            let mut fired = false;
            let kill = |how: Shutdown| {
                closed.store(true, Ordering::SeqCst);
                for s in &all {
                    let _ = s.shutdown(how);
                }
            };
            loop {
                let n = match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                // Honour a stall set by either direction.
                loop {
                    let now = t0.elapsed().as_millis() as u64;
                    let until = stall_until.load(Ordering::SeqCst);
                    if now >= until || closed.load(Ordering::SeqCst) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis((until - now).min(50)));
                }
                if closed.load(Ordering::SeqCst) {
                    break;
                }
                let out = &buf[..n];
                let due = total + n as u64 > plan.after_bytes || t0.elapsed().as_millis() as u64 >= plan.after_ms;
                if dir == 0 && !fired && due {
                    fired = true;
                    match plan.fault {
                        Fault::None => {}
                        Fault::Drop => {
                            stats.drops.fetch_add(1, Ordering::SeqCst);
                            kill(Shutdown::Both);
                            break;
                        }
                        Fault::Cut => {
                            stats.cuts.fetch_add(1, Ordering::SeqCst);
                            let _ = w.write_all(&out[..n / 2]);
                            kill(Shutdown::Both);
                            break;
                        }
                        Fault::Stall(ms) => {
                            stats.stalls.fetch_add(1, Ordering::SeqCst);
                            stall_until.store(t0.elapsed().as_millis() as u64 + ms, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(ms));
                            kill(Shutdown::Both);
                            break;
                        }
                    }
                }
                if plan.delay_ms > 0 {
                    std::thread::sleep(Duration::from_millis(plan.delay_ms));
                }
                if closed.load(Ordering::SeqCst) {
                    break;
                }
                if w.write_all(out).is_err() {
                    break;
                }
                stats.bytes.fetch_add(out.len() as u64, Ordering::SeqCst);
                total += out.len() as u64;
            }
            kill(Shutdown::Both);
        });
    }
}
