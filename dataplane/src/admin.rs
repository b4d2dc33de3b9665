//! Admin API on `admin.listen` (default 127.0.0.1:8098), served by core 0:
//! `GET /status` (JSON), `GET /metrics` (Prometheus), `GET /health`, and the
//! replication commands under `/repl/...`.

use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpListener;
use serde_json::{json, Value};

use crate::httpconn::{Body, Conn};
use crate::metrics::{self, Prom};
use crate::runtime::{Core, LocalFuture};
use crate::s3::http::{self as h, RequestHead};

/// Largest admin request body.
const MAX_ADMIN_BODY_BYTES: usize = 1 << 20;

pub struct AdminResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl AdminResponse {
    pub fn json(status: u16, v: Value) -> AdminResponse {
        AdminResponse { status, content_type: "application/json", body: serde_json::to_string_pretty(&v).unwrap() + "\n" }
    }
    pub fn error(status: u16, msg: impl Into<String>) -> AdminResponse {
        AdminResponse::json(status, json!({ "error": msg.into() }))
    }
}

pub async fn serve(core: Rc<Core>) {
    let addr = core.node.cfg.admin.listen;
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            log::error!("cannot listen for the admin API on {addr}: {e}");
            return;
        }
    };
    log::info!("admin API listening on {addr}");
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            core.stopped().await;
            None
        })
        .await;
        let Some(Ok(stream)) = accepted else {
            if core.stopping.get() {
                return;
            }
            continue;
        };
        let c = core.clone();
        glommio::spawn_local(async move {
            if let Ok(mut conn) = Conn::new(stream, Duration::from_secs(600)) {
                while let Ok(head) = conn.read_head().await {
                    let keep = head.keep_alive();
                    let framing = match head.body_framing() {
                        Ok(f) => f,
                        Err(_) => break,
                    };
                    let mut body = Body::new(framing, None);
                    let Ok(bytes) = body.read_to_end(&mut conn, MAX_ADMIN_BODY_BYTES).await else { break };
                    let resp = handle(&c, &head, &bytes).await;
                    let mut out = Vec::new();
                    let hs = [("Content-Type", resp.content_type), ("Connection", if keep { "keep-alive" } else { "close" })];
                    h::write_response_head(&mut out, resp.status, &hs, Some(resp.body.len() as u64));
                    out.extend_from_slice(resp.body.as_bytes());
                    if conn.write_all(&out).await.is_err() || !keep {
                        break;
                    }
                }
                let _ = conn.flush().await;
            }
        })
        .detach();
    }
}

fn authorized(core: &Core, head: &RequestHead) -> bool {
    let token = &core.node.cfg.admin.token;
    if token.is_empty() {
        return true;
    }
    let want = format!("Bearer {token}");
    head.header("authorization").map(|v| crate::s3::encoding::ct_eq(v.as_bytes(), want.as_bytes())).unwrap_or(false)
}

async fn handle(core: &Rc<Core>, head: &RequestHead, body: &[u8]) -> AdminResponse {
    // Health checks (load balancers, orchestrators) need no token: the
    // answer says only whether the node is up.
    let health = head.method == "GET" && head.raw_path == "/health";
    if !health && !authorized(core, head) {
        return AdminResponse::error(401, "the admin API needs `Authorization: Bearer <admin.token>`");
    }
    let path = head.raw_path.as_str();
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return AdminResponse::error(400, format!("request body is not JSON: {e}")),
        }
    };
    match (head.method.as_str(), path) {
        ("GET", "/health") => AdminResponse { status: 200, content_type: "text/plain", body: "ok\n".into() },
        ("GET", "/status") => AdminResponse::json(200, status(core).await),
        ("GET", "/metrics") => AdminResponse { status: 200, content_type: "text/plain; version=0.0.4", body: render_metrics(core).await },
        (m, p) if p.starts_with("/repl/") => crate::repl::admin::handle(core, m, p, body).await,
        _ => AdminResponse::error(404, format!("no admin endpoint {} {path}", head.method)),
    }
}

async fn partition_stats(core: &Rc<Core>) -> Vec<storage::PartitionStats> {
    let per_core = core
        .on_all(|c: Rc<Core>| Box::pin(async move { c.parts.values().map(|p| p.stats()).collect::<Vec<_>>() }) as LocalFuture<Vec<storage::PartitionStats>>)
        .await;
    let mut v: Vec<storage::PartitionStats> = per_core.into_iter().flatten().collect();
    v.sort_by_key(|s| s.partition);
    v
}

async fn damage(core: &Rc<Core>) -> Vec<Value> {
    let per_core = core
        .on_all(|c: Rc<Core>| {
            Box::pin(async move {
                let mut v = Vec::new();
                for p in c.parts.values() {
                    for d in p.damage() {
                        v.push((p.id(), d.path.display().to_string(), d.offset, d.key.map(|k| String::from_utf8_lossy(&k).into_owned()), d.detail));
                    }
                }
                v
            }) as LocalFuture<Vec<(u32, String, u64, Option<String>, String)>>
        })
        .await;
    per_core
        .into_iter()
        .flatten()
        .map(|(p, path, off, key, detail)| json!({"partition": p, "file": path, "offset": off, "key": key, "detail": detail}))
        .collect()
}

pub async fn status(core: &Rc<Core>) -> Value {
    let n = &core.node;
    let parts = partition_stats(core).await;
    let t = metrics::totals(&n.metrics);
    let sum = |f: fn(&storage::PartitionStats) -> u64| parts.iter().map(f).sum::<u64>();
    let no_space: Vec<u32> = parts.iter().filter(|p| p.no_space).map(|p| p.partition).collect();
    json!({
        "node": {
            "version": env!("CARGO_PKG_VERSION"),
            "cluster_name": n.cluster_name(),
            "cluster_id": format!("{:016x}", n.cluster_id),
            "uptime_s": (storage::now_ms() - n.started_ms) / 1000,
            "cores": n.cores,
            "ring_size": n.ring,
            "data_dir": n.data_dir.display().to_string(),
            "s3_listen": n.cfg.s3.listen.to_string(),
            "repl_listen": n.cfg.repl.listen.to_string(),
            "sync": format!("{:?}", n.cfg.storage.sync).to_lowercase(),
        },
        "storage": {
            "partitions": parts.len(),
            "keys": sum(|p| p.keys),
            "segments": sum(|p| p.segments),
            "log_bytes": sum(|p| p.log_bytes),
            "dead_bytes": sum(|p| p.dead_bytes),
            "index_bytes": sum(|p| p.index_heap_bytes),
            "compactions": sum(|p| p.compactions),
            "fdatasyncs": sum(|p| p.fdatasyncs),
            "cursor_writes": sum(|p| p.cursor_writes),
            "damaged_records": sum(|p| p.damaged),
            "orphan_blocks_expunged": n.metrics.iter().map(|m| m.orphan_blocks_expunged.load(std::sync::atomic::Ordering::Relaxed)).sum::<u64>(),
            "damage": damage(core).await,
            "partitions_out_of_space": no_space,
            "free_bytes": storage::free_bytes(&n.data_dir),
        },
        "s3": {
            "requests": t.requests.iter().map(|(op, st, c)| json!({"op": op.name(), "status": st, "count": c})).collect::<Vec<_>>(),
            "bytes_in": t.bytes_in,
            "bytes_out": t.bytes_out,
            "bytes_copied": t.bytes_copied,
            "connections_open": t.connections_open,
        },
        "repl": crate::repl::admin::status_json(core).await,
    })
}

async fn render_metrics(core: &Rc<Core>) -> String {
    let n = &core.node;
    let mut p = Prom::new();
    metrics::render_s3(&mut p, &n.metrics);
    let parts = partition_stats(core).await;
    type F = fn(&storage::PartitionStats) -> u64;
    let per_part: [(&str, &str, &str, F); 10] = [
        ("dataplane_partition_keys", "gauge", "Keys in the partition index.", |s| s.keys),
        ("dataplane_partition_log_bytes", "gauge", "Bytes of records in the partition's log.", |s| s.log_bytes),
        ("dataplane_partition_dead_bytes", "gauge", "Bytes of superseded records awaiting compaction.", |s| s.dead_bytes),
        ("dataplane_partition_segments", "gauge", "Segment files of the partition.", |s| s.segments),
        ("dataplane_partition_head_lsn", "gauge", "Newest LSN of the partition.", |s| s.head_lsn),
        ("dataplane_partition_index_bytes", "gauge", "Heap bytes of the partition index.", |s| s.index_heap_bytes),
        ("dataplane_partition_appends_total", "counter", "Records appended since start.", |s| s.appends),
        ("dataplane_partition_appended_bytes_total", "counter", "Bytes appended since start.", |s| s.appended_bytes),
        ("dataplane_partition_damaged_records", "gauge", "Corrupt records found in the partition.", |s| s.damaged),
        ("dataplane_partition_cursor_writes_total", "counter", "Writes of the partition's cursor file since start.", |s| s.cursor_writes),
    ];
    for (name, kind, help, f) in per_part {
        p.header(name, kind, help);
        for s in &parts {
            p.sample(name, &[("partition", &s.partition.to_string())], f(s) as f64);
        }
    }
    p.header("dataplane_partition_out_of_space", "gauge", "1 when the partition cannot extend its log (disk full).");
    for s in &parts {
        p.sample("dataplane_partition_out_of_space", &[("partition", &s.partition.to_string())], if s.no_space { 1.0 } else { 0.0 });
    }
    p.metric(
        "dataplane_orphan_blocks_expunged_total",
        "counter",
        "Blocks no manifest, part or intent referred to, expunged by the orphan sweep.",
        n.metrics.iter().map(|m| m.orphan_blocks_expunged.load(std::sync::atomic::Ordering::Relaxed)).sum::<u64>() as f64,
    );
    p.metric("dataplane_uptime_seconds", "gauge", "Seconds since the node started.", ((storage::now_ms() - n.started_ms) / 1000) as f64);
    crate::repl::admin::render_metrics(core, &mut p).await;
    p.out
}
