//! proxy_get: a sink that has a manifest but not its blocks asks the source
//! that sent it, over the control connection the source opened.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use storage::{Header, SendRecord};

use crate::runtime::Core;

type Reply = Result<(Vec<bool>, Vec<u8>), String>;

/// Requests waiting for their answer, by request id.
#[derive(Default)]
pub struct Hub {
    next: AtomicU64,
    pending: Mutex<HashMap<u64, (u64, futures::channel::oneshot::Sender<Reply>)>>,
}

impl Hub {
    pub fn complete(&self, req_id: u64, r: Reply) {
        if let Some((_, tx)) = self.pending.lock().unwrap().remove(&req_id) {
            let _ = tx.send(r);
        }
    }

    /// Fails every request waiting on `source` (its connection ended).
    pub fn fail_source(&self, source: u64, why: &str) {
        let mut p = self.pending.lock().unwrap();
        let ids: Vec<u64> = p.iter().filter(|(_, (s, _))| *s == source).map(|(id, _)| *id).collect();
        for id in ids {
            if let Some((_, tx)) = p.remove(&id) {
                let _ = tx.send(Err(why.to_string()));
            }
        }
    }
}

/// Fetches records by key from `source`, stores them locally and returns
/// them. Errors say why the source could not be asked or did not answer.
pub async fn fetch(c: &Rc<Core>, source: u64, keys: Vec<Vec<u8>>) -> Result<Vec<Option<SendRecord>>, String> {
    let shared = c.node.repl.clone();
    let name = shared.sources.lock().unwrap().get(&source).map(|s| s.name.clone()).unwrap_or_else(|| format!("{source:016x}"));
    let req_id = shared.proxy.next.fetch_add(1, Ordering::Relaxed) + 1;
    let (tx, rx) = futures::channel::oneshot::channel();
    shared.proxy.pending.lock().unwrap().insert(req_id, (source, tx));
    let msg = wire::Msg::ProxyGet(wire::ProxyGet { req_id, keys: keys.clone() });
    let queued = c.call(0, move |c0| Box::pin(async move { super::cm::send_to_source(&c0, source, msg) })).await;
    if let Err(e) = queued {
        shared.proxy.complete(req_id, Err(String::new()));
        return Err(format!("cannot ask cluster {name:?} for the blocks: {e}"));
    }
    let timeout = Duration::from_millis(c.node.cfg.repl.proxy_get_timeout_ms);
    let answer = futures_lite::future::or(async { rx.await.map_err(|_| "request dropped".to_string()) }, async {
        glommio::timer::sleep(timeout).await;
        Err(format!("no answer within {} ms", timeout.as_millis()))
    })
    .await;
    let (found, payload) = match answer {
        Ok(Ok(x)) => x,
        Ok(Err(e)) | Err(e) => {
            shared.proxy.pending.lock().unwrap().remove(&req_id);
            return Err(format!("proxy_get from cluster {name:?} failed: {e}"));
        }
    };
    // Store what came back, then hand it out.
    let payload = std::sync::Arc::new(payload);
    let mut out = Vec::with_capacity(keys.len());
    let mut off = 0usize;
    for (i, f) in found.iter().enumerate() {
        if !f {
            out.push(None);
            continue;
        }
        let h = Header::parse_verified(&payload[off..]).map_err(|e| format!("proxy_get answer from {name:?} is corrupt: {e}"))?;
        let end = off + h.len as usize;
        let bytes = payload[off..end].to_vec();
        off += h.padded_len();
        if h.key_range().len() != keys[i].len() || bytes[h.key_range()] != keys[i][..] {
            return Err(format!("proxy_get answer from {name:?} does not match the request"));
        }
        super::apply::apply_records(c, source, payload.clone(), vec![(off - h.padded_len(), h)], None, false).await?;
        out.push(Some(SendRecord::from_bytes(bytes).map_err(|e| e.to_string())?));
    }
    Ok(out)
}
