//! `lag`: replication lag at half the maximum write rate.
//!
//! First the maximum rate with realtime stopped (the anchor: writes are
//! queued for the sink but not sent), then with realtime running: writer
//! threads PUT 1 KiB objects as fast as they can. Then writers paced to half that rate
//! (open loop: object i is due at t0 + i / rate), and a watcher that polls
//! the sink with HEAD for a sample of the objects (a few hundred per
//! second, so that it keeps up): the lag of an object is the time from its
//! PUT's 200 at the source to the first HEAD that finds it on the sink
//! (an upper bound: the object may have landed up to one HEAD earlier).
//! The anchor of each percentile is the PUT latency at the same percentile
//! in the same phase.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::report::Figure;
use crate::util::{self, percentile, Res};
use crate::Opts;

const S: &str = "lag";
const SIZE: usize = 1024;
const THREADS: usize = 4;
/// Objects per second the watcher samples at most.
const SAMPLES_PER_SEC: f64 = 250.0;

pub fn run(o: &Opts) -> Res<Vec<Figure>> {
    let root = util::fresh_dir(&o.work_dir, S);
    let cores = util::cpus();
    let extra = "fullsync_on_connect = false\n";
    let sink = util::start(&root, util::opts("lag-sink", cores, extra))?;
    let src = util::start(&root, util::opts("lag-src", cores, extra))?;
    src.replicate_to(&sink)?;
    util::wait_for(Duration::from_secs(20), "realtime data connections up", || {
        src.sink_status("lag-sink").map(|s| s["data_connections"].as_u64().unwrap_or(0) > 0).unwrap_or(false)
    })?;
    util::create_bucket(&src, "lag")?;
    let (max_secs, paced_secs) = if o.quick { (3.0, 6.0) } else { (10.0, 30.0) };

    // 0. The anchor: the same writes with realtime stopped (the writes are
    // still queued for the sink; nothing is sent), then drained.
    util::stop_realtime(&src, "lag-sink")?;
    let base = timed_writes(src.s3, "base", max_secs, THREADS)?;
    let base_rate = base as f64 / max_secs;
    println!("maximum write rate with realtime stopped ({THREADS} clients, 1 KiB objects): {base_rate:.0} objects/s");
    util::post(&src, "/repl/realtime/start", serde_json::json!({"sink": "lag-sink"}))?;
    src.wait_drained("lag-sink", Duration::from_secs(120))?;

    // 1. Maximum write rate with realtime running.
    let max = timed_writes(src.s3, "max", max_secs, THREADS)?;
    let max_rate = max as f64 / max_secs;
    println!("maximum write rate with realtime running ({THREADS} clients, 1 KiB objects): {max_rate:.0} objects/s");
    src.wait_drained("lag-sink", Duration::from_secs(120))?;

    // 2. Half of it, paced, with the watcher on the sink.
    let rate = max_rate / 2.0;
    let n = (rate * paced_secs) as usize;
    let sample_every = ((rate / SAMPLES_PER_SEC).ceil() as usize).max(1);
    let (tx, rx) = mpsc::channel::<(String, Instant)>();
    let sink_s3 = sink.s3;
    let watcher = std::thread::spawn(move || watch(sink_s3, rx));
    let t0 = Instant::now() + Duration::from_millis(50);
    let lat: Vec<Vec<f64>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..THREADS)
            .map(|th| {
                let tx = tx.clone();
                let s3 = src.s3;
                sc.spawn(move || -> Res<Vec<f64>> {
                    let mut c = util::client(s3);
                    let mut p = util::Payload::new(th + 77, SIZE);
                    let mut lat = Vec::new();
                    let mut i = th;
                    while i < n {
                        let due = t0 + Duration::from_secs_f64(i as f64 / rate);
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                        let key = format!("paced/{i:08}");
                        let t = Instant::now();
                        let r = c.put("lag", &key, p.for_object(i)).map_err(|e| format!("PUT {key}: {e}"))?;
                        let done = Instant::now();
                        if r.status != 200 {
                            return Err(format!("PUT {key}: {}", r.status));
                        }
                        lat.push((done - t).as_secs_f64());
                        if i % sample_every == 0 {
                            let _ = tx.send((key, done));
                        }
                        i += THREADS;
                    }
                    Ok(lat)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("writer panicked".into()))).collect::<Res<Vec<_>>>()
    })?;
    drop(tx);
    let achieved = n as f64 / (Instant::now() - t0).as_secs_f64();
    let mut lags = watcher.join().map_err(|_| "watcher panicked".to_string())??;
    let mut put: Vec<f64> = lat.into_iter().flatten().collect();
    let ms = 1000.0;
    let (l50, l99, lmax) = (percentile(&mut lags, 0.5) * ms, percentile(&mut lags, 0.99) * ms, percentile(&mut lags, 1.0) * ms);
    let (p50, p99) = (percentile(&mut put, 0.5) * ms, percentile(&mut put, 0.99) * ms);
    println!(
        "paced at {rate:.0} objects/s (achieved {achieved:.0}/s) for {paced_secs} s: {n} objects, lag measured on {} of them: p50 {l50:.2} ms, p99 {l99:.2} ms, max {lmax:.2} ms; PUT latency p50 {p50:.2} ms, p99 {p99:.2} ms",
        lags.len()
    );
    src.wait_drained("lag-sink", Duration::from_secs(120))?;
    drop(src);
    drop(sink);
    util::cleanup(&root);
    Ok(vec![
        Figure::vs(S, "max_write_rate_1KiB_realtime_on", max_rate, "objects/s", "same, realtime stopped", base_rate, "").no_target(),
        Figure::vs(S, "lag_p50_at_half_max_rate", l50, "ms", "PUT latency p50, same phase", p50, "").no_target(),
        Figure::vs(S, "lag_p99_at_half_max_rate", l99, "ms", "PUT latency p99, same phase", p99, "").no_target(),
    ])
}

/// PUTs 1 KiB objects with `threads` clients for `secs`; returns the count.
fn timed_writes(s3: std::net::SocketAddr, prefix: &str, secs: f64, threads: usize) -> Res<usize> {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let counts = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..threads)
            .map(|th| {
                sc.spawn(move || -> Res<usize> {
                    let mut c = util::client(s3);
                    let mut p = util::Payload::new(th + 11, SIZE);
                    let mut k = 0;
                    while Instant::now() < end {
                        let i = k * threads + th;
                        let key = format!("{prefix}/{i:08}");
                        let r = c.put("lag", &key, p.for_object(i)).map_err(|e| format!("PUT {key}: {e}"))?;
                        if r.status != 200 {
                            return Err(format!("PUT {key}: {}", r.status));
                        }
                        k += 1;
                    }
                    Ok(k)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("writer panicked".into()))).collect::<Res<Vec<usize>>>()
    })?;
    Ok(counts.into_iter().sum())
}

/// Polls the sink for every sampled key until it is there; returns the lags
/// in seconds.
fn watch(s3: std::net::SocketAddr, rx: mpsc::Receiver<(String, Instant)>) -> Res<Vec<f64>> {
    let mut c = util::client(s3);
    let mut pending: Vec<(String, Instant)> = Vec::new();
    let mut lags = Vec::new();
    let mut open = true;
    while open || !pending.is_empty() {
        if pending.is_empty() {
            match rx.recv() {
                Ok(x) => pending.push(x),
                Err(_) => break,
            }
        }
        loop {
            match rx.try_recv() {
                Ok(x) => pending.push(x),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let mut i = 0;
        while i < pending.len() {
            let r = c.head("lag", &pending[i].0).map_err(|e| format!("HEAD on the sink: {e}"))?;
            if r.status == 200 {
                let (_, written) = pending.swap_remove(i);
                lags.push(written.elapsed().as_secs_f64());
            } else {
                if pending[i].1.elapsed() > Duration::from_secs(60) {
                    return Err(format!("{} did not reach the sink within 60 s", pending[i].0));
                }
                i += 1;
            }
        }
        if !pending.is_empty() {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    Ok(lags)
}
