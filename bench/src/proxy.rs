//! A TCP proxy for the benchmarks, with std threads: it counts the bytes it
//! forwards in each direction and can delay them (a WAN emulation: every
//! chunk is held until its arrival time plus half the round-trip time).
//!
//! A sink placed behind proxies advertises the proxy's address
//! (`repl.advertise`): the source then reaches the cluster manager at the
//! proxy's base port and core `i`'s data port at base + 1 + i, so
//! `ProxySet` runs one listener per port.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Bytes forwarded, both directions, over every connection of a proxy set.
#[derive(Default)]
pub struct Counters {
    /// Client (source) to server (sink).
    pub up: AtomicU64,
    /// Server (sink) to client (source).
    pub down: AtomicU64,
    pub connections: AtomicU64,
}

impl Counters {
    pub fn total(&self) -> u64 {
        self.up.load(Ordering::Relaxed) + self.down.load(Ordering::Relaxed)
    }
}

/// Most bytes a delayed direction holds before it stops reading (its
/// "network buffer"); far above bandwidth × delay on loopback.
const MAX_HELD_BYTES: usize = 512 << 20;
const CHUNK: usize = 256 << 10;

struct Shared {
    stop: AtomicBool,
    streams: Mutex<Vec<TcpStream>>,
}

/// Listeners on `count` consecutive ports from `base`, forwarding port
/// base + i to target + i.
pub struct ProxySet {
    pub base: u16,
    pub count: u16,
    pub counters: Arc<Counters>,
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Finds `count` consecutive free loopback ports outside `avoid` (ranges
/// reserved for clusters not yet started) and binds them.
fn bind_consecutive(count: u16, avoid: &[(u16, u16)]) -> (u16, Vec<TcpListener>) {
    let mut base = 40000 + (std::process::id() % 97) as u16 * 200;
    loop {
        if base > 64000 {
            base = 30000;
        }
        let clash = avoid.iter().any(|&(a, n)| base < a + n && a < base + count);
        if !clash {
            let ls: Vec<TcpListener> = (0..count).filter_map(|i| TcpListener::bind(("127.0.0.1", base + i)).ok()).collect();
            if ls.len() == count as usize {
                return (base, ls);
            }
        }
        base += count + 3;
    }
}

impl ProxySet {
    /// A counting proxy: forwards at once. `avoid`: (base, count) port
    /// ranges that must stay free.
    pub fn counting(count: u16, target: SocketAddr, avoid: &[(u16, u16)]) -> ProxySet {
        Self::start(count, target, None, avoid)
    }

    /// A delaying proxy: every chunk is forwarded at its arrival + rtt / 2
    /// (in each direction).
    pub fn delaying(count: u16, target: SocketAddr, rtt: Duration, avoid: &[(u16, u16)]) -> ProxySet {
        Self::start(count, target, Some(rtt), avoid)
    }

    fn start(count: u16, target: SocketAddr, rtt: Option<Duration>, avoid: &[(u16, u16)]) -> ProxySet {
        let (base, listeners) = bind_consecutive(count, avoid);
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared { stop: AtomicBool::new(false), streams: Mutex::new(Vec::new()) });
        let one_way_us = Arc::new(AtomicU64::new(rtt.map(|r| r.as_micros() as u64 / 2).unwrap_or(0)));
        let mut threads = Vec::new();
        for (i, l) in listeners.into_iter().enumerate() {
            let to = SocketAddr::new(target.ip(), target.port() + i as u16);
            let (counters, shared) = (counters.clone(), shared.clone());
            let delay = rtt.map(|_| one_way_us.clone());
            threads.push(std::thread::spawn(move || accept_loop(l, to, delay, counters, shared)));
        }
        ProxySet { base, count, counters, shared, threads }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.base))
    }
}

impl Drop for ProxySet {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for i in 0..self.count {
            // Wakes the accept loop.
            let _ = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], self.base + i)), Duration::from_millis(200));
        }
        for s in self.shared.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn accept_loop(l: TcpListener, to: SocketAddr, one_way: Option<Arc<AtomicU64>>, counters: Arc<Counters>, shared: Arc<Shared>) {
    for conn in l.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = conn else { continue };
        let Ok(server) = TcpStream::connect(to) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        counters.connections.fetch_add(1, Ordering::Relaxed);
        {
            let mut st = shared.streams.lock().unwrap();
            st.retain(|s| s.peer_addr().is_ok());
            st.push(client.try_clone().unwrap());
            st.push(server.try_clone().unwrap());
        }
        let pump = |from: &TcpStream, to: &TcpStream, counter: usize| {
            let (from, to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
            let counters = counters.clone();
            let one_way = one_way.clone();
            std::thread::spawn(move || {
                let c = if counter == 0 { &counters.up } else { &counters.down };
                match one_way {
                    None => copy(from, to, c),
                    Some(d) => delayed_copy(from, to, c, &d),
                }
            })
        };
        pump(&client, &server, 0);
        pump(&server, &client, 1);
    }
}

fn copy(mut from: TcpStream, mut to: TcpStream, count: &AtomicU64) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    let _ = from.shutdown(Shutdown::Both);
                    break;
                }
                count.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Chunks held for a direction: (arrival, bytes); None = end of stream.
struct Held {
    q: Mutex<(VecDeque<(Instant, Option<Vec<u8>>)>, usize)>,
    cv: Condvar,
}

/// A reader thread timestamps chunks as they arrive; this thread forwards
/// each one at arrival + `one_way`.
fn delayed_copy(mut from: TcpStream, mut to: TcpStream, count: &AtomicU64, one_way_us: &AtomicU64) {
    let held = Arc::new(Held { q: Mutex::new((VecDeque::new(), 0)), cv: Condvar::new() });
    let h2 = held.clone();
    let from2 = from.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let r = from.read(&mut buf);
            let now = Instant::now();
            let item = match r {
                Ok(0) | Err(_) => None,
                Ok(n) => Some(buf[..n].to_vec()),
            };
            let end = item.is_none();
            let mut q = h2.q.lock().unwrap();
            while q.1 > MAX_HELD_BYTES {
                q = h2.cv.wait(q).unwrap();
            }
            q.1 += item.as_ref().map(|v| v.len()).unwrap_or(0);
            q.0.push_back((now, item));
            drop(q);
            h2.cv.notify_all();
            if end {
                return;
            }
        }
    });
    loop {
        let (at, item) = {
            let mut q = held.q.lock().unwrap();
            while q.0.is_empty() {
                q = held.cv.wait(q).unwrap();
            }
            q.0.pop_front().unwrap()
        };
        let due = at + Duration::from_micros(one_way_us.load(Ordering::Relaxed));
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let Some(bytes) = item else { break };
        {
            let mut q = held.q.lock().unwrap();
            q.1 -= bytes.len();
        }
        held.cv.notify_all();
        if to.write_all(&bytes).is_err() {
            let _ = from2.shutdown(Shutdown::Both);
            // Let the reader finish: drain until its end marker.
            loop {
                let mut q = held.q.lock().unwrap();
                let done = q.0.iter().any(|(_, i)| i.is_none());
                q.0.clear();
                q.1 = 0;
                drop(q);
                held.cv.notify_all();
                if done || reader.is_finished() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = reader.join();
            return;
        }
        count.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = reader.join();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { continue };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 || c.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        a
    }

    #[test]
    fn delays_by_the_round_trip_and_counts_bytes() {
        let target = echo_server();
        let p = ProxySet::delaying(1, target, Duration::from_millis(40), &[]);
        let mut s = TcpStream::connect(p.addr()).unwrap();
        let t = Instant::now();
        s.write_all(b"hello").unwrap();
        let mut got = [0u8; 5];
        s.read_exact(&mut got).unwrap();
        let rtt = t.elapsed();
        assert_eq!(&got, b"hello");
        assert!(rtt >= Duration::from_millis(40) && rtt < Duration::from_millis(200), "{rtt:?}");
        drop(s);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(p.counters.up.load(Ordering::Relaxed), 5);
        assert_eq!(p.counters.down.load(Ordering::Relaxed), 5);
    }
}
