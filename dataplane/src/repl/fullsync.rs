//! Fullsync: hash-tree comparison per partition (see wire::fullsync).

use std::rc::Rc;

use serde::{Deserialize, Serialize};

use super::net::FrameConn;
use crate::runtime::Core;

/// Persisted progress of a sink's fullsync.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Progress {
    pub running: bool,
    pub started_ms: u64,
    pub last_completed_ms: u64,
    pub done_partitions: Vec<u32>,
}

#[derive(Default)]
pub struct CoreFs {}

pub async fn coordinate(_c: Rc<Core>) {}

pub async fn serve_sink(_c: Rc<Core>, mut conn: FrameConn, _h: wire::DataHello) -> Result<(), String> {
    let _ = conn.write_frame(&wire::Msg::error(wire::ERR_INTERNAL, "fullsync is not available yet"), &[]).await;
    Err("fullsync requested but not available".into())
}

pub async fn admin(_c: &Rc<Core>, method: &str, path: &str, _body: &serde_json::Value) -> Result<crate::admin::AdminResponse, crate::admin::AdminResponse> {
    Err(crate::admin::AdminResponse::error(404, format!("no admin endpoint {method} {path}")))
}

pub fn sink_status(_c: &Rc<Core>, _s: &super::SinkCfg) -> serde_json::Value {
    serde_json::json!({})
}

pub fn render_metrics(_c: &Rc<Core>, _sinks: &[serde_json::Value], _p: &mut crate::metrics::Prom) {}
