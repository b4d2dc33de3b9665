//! Replication commands, status and metrics for the admin API.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};

use super::{cursor_name, now_ms, RtState, SinkCfg};
use crate::admin::AdminResponse;
use crate::metrics::Prom;
use crate::runtime::{Core, LocalFuture};

fn arg<'a>(body: &'a Value, name: &str) -> Result<&'a str, AdminResponse> {
    body.get(name).and_then(|v| v.as_str()).ok_or_else(|| AdminResponse::error(400, format!("missing \"{name}\" in the request body")))
}

fn sink_arg(c: &Core, body: &Value) -> Result<SinkCfg, AdminResponse> {
    let name = arg(body, "sink")?;
    c.node.repl.find_sink(name).ok_or_else(|| {
        let known: Vec<String> = c.node.repl.sinks().into_iter().map(|s| s.name).collect();
        AdminResponse::error(404, format!("no sink named {name:?}; known sinks: {known:?} (add one with `dataplane repl connect HOST:PORT`)"))
    })
}

async fn save(c: &Core) -> Result<(), AdminResponse> {
    let shared = c.node.repl.clone();
    glommio::executor().spawn_blocking(move || shared.save()).await.map_err(|e| AdminResponse::error(500, e))
}

async fn update(c: &Core, id: u64, f: impl FnOnce(&mut SinkCfg) + Send + 'static) -> Result<(), AdminResponse> {
    let shared = c.node.repl.clone();
    glommio::executor().spawn_blocking(move || shared.update_sink(id, f)).await.map_err(|e| AdminResponse::error(500, e))
}

/// Registers (at the head) or drops the realtime cursors of a sink on
/// every partition of every core.
pub async fn set_cursors(c: &Rc<Core>, sink: u64, register: bool) -> Result<(), String> {
    let name = cursor_name(sink);
    let res = c
        .on_all(move |cc: Rc<Core>| {
            let name = name.clone();
            Box::pin(async move {
                for part in cc.parts.values() {
                    if register {
                        if part.cursor(&name).is_none() {
                            part.register_cursor(&name, part.head_lsn()).await.map_err(|e| e.to_string())?;
                        }
                    } else {
                        part.drop_cursor(&name).await.map_err(|e| e.to_string())?;
                    }
                }
                // Restart this core's connections to the sink from the new cursors.
                let keys: Vec<(u64, usize)> = cc.ext.repl.rt_conns.borrow().keys().copied().filter(|k| k.0 == sink).collect();
                for k in keys {
                    if let Some(h) = cc.ext.repl.rt_conns.borrow_mut().remove(&k) {
                        h.stop.set(true);
                    }
                }
                Ok(())
            }) as LocalFuture<Result<(), String>>
        })
        .await;
    res.into_iter().collect::<Result<Vec<()>, String>>().map(|_| ())
}

pub async fn handle(c: &Rc<Core>, method: &str, path: &str, body: Value) -> AdminResponse {
    match handle_inner(c, method, path, &body).await {
        Ok(r) | Err(r) => r,
    }
}

async fn handle_inner(c: &Rc<Core>, method: &str, path: &str, body: &Value) -> Result<AdminResponse, AdminResponse> {
    let shared = c.node.repl.clone();
    match (method, path) {
        ("GET", "/repl/status") => Ok(AdminResponse::json(200, status_json(c).await)),
        ("GET", "/repl/clustername") => Ok(AdminResponse::json(200, json!({"name": c.node.cluster_name(), "cluster_id": format!("{:016x}", c.node.cluster_id)}))),
        ("POST", "/repl/clustername") => {
            let name = arg(body, "name")?.to_string();
            if name.is_empty() || name.len() > 64 || !name.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' || ch == '.') {
                return Err(AdminResponse::error(400, format!("cluster name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.'")));
            }
            *c.node.cluster_name.write().unwrap() = name.clone();
            let (dir, id, n2, ring) = (c.node.data_dir.clone(), c.node.cluster_id, name.clone(), c.node.ring);
            glommio::executor()
                .spawn_blocking(move || crate::runtime::save_cluster_identity_ring(&dir, id, &n2, ring))
                .await
                .map_err(|e| AdminResponse::error(500, format!("saving the cluster name: {e}")))?;
            log::info!("cluster renamed to {name:?}");
            Ok(AdminResponse::json(200, json!({"name": name})))
        }
        ("POST", "/repl/connect") => {
            let addr = arg(body, "addr")?.to_string();
            let (mut conn, hello, _v) = super::cm::open(c, &addr).await.map_err(|e| AdminResponse::error(409, e))?;
            conn.close().await;
            let existing = shared.sink(hello.cluster_id);
            {
                let mut p = shared.persisted.lock().unwrap();
                let e = p.sinks.entry(format!("{:016x}", hello.cluster_id)).or_insert_with(|| SinkCfg {
                    name: hello.cluster_name.clone(),
                    cluster_id: hello.cluster_id,
                    addr: addr.clone(),
                    realtime: RtState::Disabled,
                    proxy_get: false,
                    fullsync_enabled: true,
                    fullsync_interval_min: None,
                    dirty: false,
                    dirty_since_ms: 0,
                    fullsync: Default::default(),
                    created_ms: now_ms(),
                });
                e.addr = addr.clone();
                e.name = hello.cluster_name.clone();
            }
            save(c).await?;
            log::info!("connected to sink {:?} at {addr}", hello.cluster_name);
            Ok(AdminResponse::json(
                200,
                json!({"sink": hello.cluster_name, "cluster_id": format!("{:016x}", hello.cluster_id), "addr": addr, "already_connected": existing.is_some()}),
            ))
        }
        ("POST", "/repl/disconnect") => {
            let s = sink_arg(c, body)?;
            set_cursors(c, s.cluster_id, false).await.map_err(|e| AdminResponse::error(500, e))?;
            shared.persisted.lock().unwrap().sinks.remove(&format!("{:016x}", s.cluster_id));
            save(c).await?;
            log::info!("disconnected from sink {:?}", s.name);
            Ok(AdminResponse::json(200, json!({"disconnected": s.name})))
        }
        ("GET", "/repl/connections") => Ok(AdminResponse::json(200, connections(c))),
        ("POST", p) if p.starts_with("/repl/realtime/") => {
            let s = sink_arg(c, body)?;
            let verb = &p["/repl/realtime/".len()..];
            let new = match (verb, s.realtime) {
                ("enable", RtState::Disabled) => {
                    set_cursors(c, s.cluster_id, true).await.map_err(|e| AdminResponse::error(500, e))?;
                    RtState::Stopped
                }
                ("enable", st) => st,
                ("start", RtState::Disabled) => {
                    return Err(AdminResponse::error(409, format!("realtime to {:?} is disabled; run `dataplane repl realtime enable {}` first", s.name, s.name)))
                }
                ("start", _) => RtState::Started,
                ("stop", RtState::Disabled) => RtState::Disabled,
                ("stop", _) => RtState::Stopped,
                ("disable", _) => {
                    set_cursors(c, s.cluster_id, false).await.map_err(|e| AdminResponse::error(500, e))?;
                    RtState::Disabled
                }
                _ => return Err(AdminResponse::error(404, format!("unknown realtime command {verb:?}; use enable, disable, start or stop"))),
            };
            update(c, s.cluster_id, move |x| x.realtime = new).await?;
            super::realtime::kick_supervisors(c).await;
            log::info!("realtime to sink {:?}: {verb} (now {new:?})", s.name);
            Ok(AdminResponse::json(200, json!({"sink": s.name, "realtime": new})))
        }
        ("POST", p) if p.starts_with("/repl/proxy-get/") => {
            let s = sink_arg(c, body)?;
            let on = match &p["/repl/proxy-get/".len()..] {
                "enable" => true,
                "disable" => false,
                v => return Err(AdminResponse::error(404, format!("unknown proxy-get command {v:?}; use enable or disable"))),
            };
            update(c, s.cluster_id, move |x| x.proxy_get = on).await?;
            Ok(AdminResponse::json(200, json!({"sink": s.name, "proxy_get": on})))
        }
        (m, p) if p.starts_with("/repl/fullsync") => super::fullsync::admin(c, m, p, body).await,
        _ => Err(AdminResponse::error(404, format!("no admin endpoint {method} {path}"))),
    }
}

fn connections(c: &Core) -> Value {
    let shared = &c.node.repl;
    let peers = shared.peers.lock().unwrap().clone();
    let sinks: Vec<Value> = shared
        .sinks()
        .into_iter()
        .map(|s| {
            let p = peers.get(&s.cluster_id);
            json!({
                "sink": s.name,
                "cluster_id": format!("{:016x}", s.cluster_id),
                "addr": s.addr,
                "connected": p.map(|p| p.connected).unwrap_or(false),
                "mode": p.map(|p| p.mode).unwrap_or("none"),
                "protocol_version": p.map(|p| p.version),
                "last_error": p.map(|p| p.last_error.clone()).unwrap_or_default(),
            })
        })
        .collect();
    let sources: Vec<Value> = shared
        .sources
        .lock()
        .unwrap()
        .iter()
        .map(|(id, s)| json!({"source": s.name, "cluster_id": format!("{id:016x}"), "connected": s.connected, "mode": s.mode}))
        .collect();
    json!({"sinks": sinks, "sources": sources})
}

#[derive(Default, Clone, Copy)]
struct Queue {
    records: u64,
    bytes: u64,
    oldest_unacked_ms: Option<u64>,
}

/// Per sink: records and bytes queued (head LSN − cursor), oldest unacked.
async fn queues(c: &Rc<Core>, sinks: Vec<u64>) -> BTreeMap<u64, Queue> {
    let per_core = c
        .on_all(move |cc: Rc<Core>| {
            let sinks = sinks.clone();
            Box::pin(async move {
                let mut out: Vec<(u64, Queue)> = Vec::new();
                for s in sinks {
                    let name = cursor_name(s);
                    let mut q = Queue::default();
                    for part in cc.parts.values() {
                        if let Some(cur) = part.cursor(&name) {
                            q.records += part.head_lsn().saturating_sub(cur);
                            q.bytes += part.bytes_after(cur);
                        }
                    }
                    q.oldest_unacked_ms = cc.ext.repl.oldest_unacked_ms.borrow().get(&s).copied();
                    out.push((s, q));
                }
                out
            }) as LocalFuture<Vec<(u64, Queue)>>
        })
        .await;
    let mut m: BTreeMap<u64, Queue> = BTreeMap::new();
    for (s, q) in per_core.into_iter().flatten() {
        let e = m.entry(s).or_default();
        e.records += q.records;
        e.bytes += q.bytes;
        e.oldest_unacked_ms = match (e.oldest_unacked_ms, q.oldest_unacked_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    m
}

thread_local! {
    /// Core 0: recent (time, bytes sent) samples per sink, for send rates.
    static RATE: std::cell::RefCell<BTreeMap<u64, std::collections::VecDeque<(u64, u64)>>> = Default::default();
}

/// Samples send counters (for rates) and enforces the retention limit.
pub async fn monitor(c: Rc<Core>) {
    loop {
        futures_lite::future::or(glommio::timer::sleep(Duration::from_millis(1000)), c.stopped()).await;
        if c.stopping.get() {
            return;
        }
        let shared = c.node.repl.clone();
        let sinks = shared.sinks();
        RATE.with(|r| {
            let mut r = r.borrow_mut();
            for s in &sinks {
                let q = r.entry(s.cluster_id).or_default();
                q.push_back((now_ms(), shared.stats_for(s.cluster_id).bytes_sent.load(Ordering::Relaxed)));
                while q.len() > 6 {
                    q.pop_front();
                }
            }
        });
        let enabled: Vec<u64> = sinks.iter().filter(|s| s.realtime != RtState::Disabled).map(|s| s.cluster_id).collect();
        if enabled.is_empty() {
            continue;
        }
        let limit = c.node.cfg.repl.max_retained_bytes;
        for (sink, q) in queues(&c, enabled).await {
            if q.bytes <= limit {
                continue;
            }
            let Some(s) = shared.sink(sink) else { continue };
            log::error!(
                "REALTIME QUEUE OVERFLOW: sink {:?} retains {} bytes, over repl.max_retained_bytes = {limit}; dropping its cursors and marking it dirty. \
                 Writes since the sink fell behind will reach it by fullsync as soon as it is reachable.",
                s.name,
                q.bytes
            );
            if let Err(e) = set_cursors(&c, sink, false).await {
                log::error!("dropping cursors of sink {:?}: {e}", s.name);
                continue;
            }
            if let Err(e) = set_cursors(&c, sink, true).await {
                log::error!("re-registering cursors of sink {:?}: {e}", s.name);
            }
            shared.stats_for(sink).retention_drops.fetch_add(1, Ordering::Relaxed);
            let _ = update(&c, sink, |x| {
                x.dirty = true;
                x.dirty_since_ms = now_ms();
            })
            .await;
        }
    }
}

fn send_rate(sink: u64) -> f64 {
    RATE.with(|r| {
        let r = r.borrow();
        let Some(q) = r.get(&sink) else { return 0.0 };
        match (q.front(), q.back()) {
            (Some(a), Some(b)) if b.0 > a.0 => (b.1 - a.1) as f64 * 1000.0 / (b.0 - a.0) as f64,
            _ => 0.0,
        }
    })
}

pub async fn status_json(c: &Rc<Core>) -> Value {
    let shared = c.node.repl.clone();
    let sinks = shared.sinks();
    let q = queues(c, sinks.iter().map(|s| s.cluster_id).collect()).await;
    let peers = shared.peers.lock().unwrap().clone();
    let now = now_ms();
    let sink_list: Vec<Value> = sinks
        .iter()
        .map(|s| {
            let st = shared.stats_for(s.cluster_id);
            let p = peers.get(&s.cluster_id);
            let qq = q.get(&s.cluster_id).copied().unwrap_or_default();
            let rt_err = st.realtime_last_error.lock().unwrap().clone();
            json!({
                "sink": s.name,
                "cluster_id": format!("{:016x}", s.cluster_id),
                "addr": s.addr,
                "connected": p.map(|p| p.connected).unwrap_or(false),
                "tls_mode": p.map(|p| p.mode).unwrap_or("none"),
                "data_tls_modes": st.data_modes.lock().unwrap().iter().copied().collect::<Vec<_>>(),
                "last_error": p.map(|p| p.last_error.clone()).unwrap_or_default(),
                "realtime": s.realtime,
                "proxy_get": s.proxy_get,
                "dirty": s.dirty,
                "data_connections": st.data_connections.load(Ordering::Relaxed),
                "queued_records": qq.records,
                "queued_bytes": qq.bytes,
                "oldest_unacked_age_ms": qq.oldest_unacked_ms.map(|t| now.saturating_sub(t)),
                "records_sent": st.records_sent.load(Ordering::Relaxed),
                "bytes_sent": st.bytes_sent.load(Ordering::Relaxed),
                "records_acked": st.records_acked.load(Ordering::Relaxed),
                "bytes_acked": st.bytes_acked.load(Ordering::Relaxed),
                "batches_sent": st.batches_sent.load(Ordering::Relaxed),
                "send_rate_bytes_per_s": send_rate(s.cluster_id),
                "reconnects": st.reconnects.load(Ordering::Relaxed),
                "realtime_last_error": rt_err.1,
                "realtime_last_error_age_ms": (rt_err.0 > 0).then(|| now.saturating_sub(rt_err.0)),
                "control_reconnects": st.cm_reconnects.load(Ordering::Relaxed),
                "retention_drops": st.retention_drops.load(Ordering::Relaxed),
                "proxy_get_served": st.proxy_get_served.load(Ordering::Relaxed),
                "fullsync": super::fullsync::sink_status(c, s),
            })
        })
        .collect();
    let sources: Vec<Value> = shared
        .sources
        .lock()
        .unwrap()
        .iter()
        .map(|(id, s)| {
            json!({"source": s.name, "cluster_id": format!("{id:016x}"), "connected": s.connected, "tls_mode": s.mode,
                   "data_tls_modes": s.data_modes.iter().copied().collect::<Vec<_>>(),
                   "records_applied": s.records_applied, "bytes_applied": s.bytes_applied})
        })
        .collect();
    json!({
        "cluster": c.node.cluster_name(),
        "cluster_id": format!("{:016x}", c.node.cluster_id),
        "sinks": sink_list,
        "sources": sources,
    })
}

pub async fn render_metrics(c: &Rc<Core>, p: &mut Prom) {
    let v = status_json(c).await;
    let empty = vec![];
    let sinks = v["sinks"].as_array().unwrap_or(&empty);
    let gauges: [(&str, &str, &str, &str); 16] = [
        ("dataplane_repl_connected", "gauge", "1 when the control connection to the sink is up.", "connected"),
        ("dataplane_repl_data_connections", "gauge", "Realtime data connections open to the sink.", "data_connections"),
        ("dataplane_repl_queue_records", "gauge", "Records queued for the sink (head LSN minus cursor, summed over partitions).", "queued_records"),
        ("dataplane_repl_queue_bytes", "gauge", "Bytes of log retained for the sink.", "queued_bytes"),
        ("dataplane_repl_records_sent_total", "counter", "Records sent to the sink in realtime.", "records_sent"),
        ("dataplane_repl_bytes_sent_total", "counter", "Record bytes sent to the sink in realtime.", "bytes_sent"),
        ("dataplane_repl_records_acked_total", "counter", "Records the sink acknowledged.", "records_acked"),
        ("dataplane_repl_bytes_acked_total", "counter", "Record bytes the sink acknowledged.", "bytes_acked"),
        ("dataplane_repl_batches_sent_total", "counter", "Realtime batches sent.", "batches_sent"),
        ("dataplane_repl_send_rate_bytes", "gauge", "Realtime send rate over the last seconds.", "send_rate_bytes_per_s"),
        ("dataplane_repl_reconnects_total", "counter", "Realtime data connection reconnects.", "reconnects"),
        ("dataplane_repl_control_reconnects_total", "counter", "Control connection reconnects.", "control_reconnects"),
        ("dataplane_repl_retention_drops_total", "counter", "Times the sink's cursors were dropped at repl.max_retained_bytes.", "retention_drops"),
        ("dataplane_repl_dirty", "gauge", "1 when realtime dropped records for the sink and a fullsync is due.", "dirty"),
        ("dataplane_repl_proxy_get_served_total", "counter", "Blocks served to the sink by proxy_get.", "proxy_get_served"),
        ("dataplane_repl_oldest_unacked_seconds", "gauge", "Age of the oldest unacknowledged realtime batch.", "oldest_unacked_age_ms"),
    ];
    for (name, kind, help, field) in gauges {
        p.header(name, kind, help);
        for s in sinks {
            let sink = s["sink"].as_str().unwrap_or("");
            let val = match &s[field] {
                Value::Bool(b) => *b as u8 as f64,
                Value::Number(n) => n.as_f64().unwrap_or(0.0) / if field == "oldest_unacked_age_ms" { 1000.0 } else { 1.0 },
                _ => 0.0,
            };
            p.sample(name, &[("sink", sink)], val);
        }
    }
    p.header("dataplane_repl_realtime_state", "gauge", "Realtime state of the sink: 0 disabled, 1 stopped (queueing), 2 started.");
    for s in sinks {
        let st = match s["realtime"].as_str() {
            Some("started") => 2.0,
            Some("stopped") => 1.0,
            _ => 0.0,
        };
        p.sample("dataplane_repl_realtime_state", &[("sink", s["sink"].as_str().unwrap_or(""))], st);
    }
    p.header("dataplane_repl_connection_mode", "gauge", "1 for the transport mode of the connection to the sink (plaintext, rustls, ktls).");
    for s in sinks {
        p.sample("dataplane_repl_connection_mode", &[("sink", s["sink"].as_str().unwrap_or("")), ("mode", s["tls_mode"].as_str().unwrap_or("none"))], 1.0);
    }
    let sources = v["sources"].as_array().unwrap_or(&empty);
    p.header("dataplane_repl_source_connected", "gauge", "1 when the source's control connection is up.");
    for s in sources {
        p.sample("dataplane_repl_source_connected", &[("source", s["source"].as_str().unwrap_or(""))], s["connected"].as_bool().unwrap_or(false) as u8 as f64);
    }
    p.header("dataplane_repl_applied_records_total", "counter", "Records applied from the source.");
    for s in sources {
        p.sample("dataplane_repl_applied_records_total", &[("source", s["source"].as_str().unwrap_or(""))], s["records_applied"].as_f64().unwrap_or(0.0));
    }
    p.header("dataplane_repl_applied_bytes_total", "counter", "Record bytes applied from the source.");
    for s in sources {
        p.sample("dataplane_repl_applied_bytes_total", &[("source", s["source"].as_str().unwrap_or(""))], s["bytes_applied"].as_f64().unwrap_or(0.0));
    }
    super::fullsync::render_metrics(c, sinks, p);
}
