//! Replication commands and status for the admin API.

use std::rc::Rc;

use serde_json::{json, Value};

use crate::admin::AdminResponse;
use crate::metrics::Prom;
use crate::runtime::Core;

pub async fn handle(_core: &Rc<Core>, method: &str, path: &str, _body: Value) -> AdminResponse {
    AdminResponse::error(404, format!("no admin endpoint {method} {path}"))
}

pub async fn status_json(_core: &Rc<Core>) -> Value {
    json!({})
}

pub async fn render_metrics(_core: &Rc<Core>, _p: &mut Prom) {}
