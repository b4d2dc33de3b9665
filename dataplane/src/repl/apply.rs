//! Applying records received from another cluster (realtime batches,
//! fullsync pushes, proxy_get answers).
//!
//! Records arrive as stored at the source (header, key, meta, value), each
//! checked against its own crc. Blocks travel just ahead of the manifest
//! that uses them and are written first, so a manifest never lands before
//! its blocks. Every applied record gets this cluster added to its routing
//! list; a record that already passed through here is dropped (no loops).

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use storage::{Header, Kind};
use xxhash_rust::xxh3::xxh3_64;

use crate::model::{decode_routed, partition_of, MAX_ROUTED_CLUSTERS};
use crate::objects;
use crate::runtime::Core;

/// Parses `count` records laid out back to back (16-byte aligned), checking
/// each one's crc.
pub fn parse_payload(payload: &[u8], count: u32) -> Result<Vec<(usize, Header)>, String> {
    let mut out = Vec::with_capacity(count as usize);
    let mut off = 0usize;
    for i in 0..count {
        let h = Header::parse_verified(payload.get(off..).unwrap_or(&[])).map_err(|e| format!("record {i} of the payload at byte {off}: {e}"))?;
        if h.kind.is_internal() || h.kind == Kind::Expunge || h.kind == Kind::Local {
            return Err(format!("record {i} of the payload has kind {:?}, which never replicates", h.kind));
        }
        if h.key_len == 0 {
            return Err(format!("record {i} of the payload has an empty key"));
        }
        out.push((off, h));
        off += h.padded_len();
    }
    if off != payload.len() {
        return Err(format!("payload has {} bytes after its {count} records", payload.len().saturating_sub(off)));
    }
    Ok(out)
}

/// Why applying failed, and whether it was for lack of disk space (which
/// the sink reports as such: the source then waits and retries).
#[derive(Debug, Clone)]
pub struct ApplyError {
    pub no_space: bool,
    pub message: String,
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<crate::s3::error::S3Error> for ApplyError {
    fn from(e: crate::s3::error::S3Error) -> Self {
        ApplyError { no_space: e.code == crate::s3::error::S3ErrorCode::InsufficientStorage, message: e.message }
    }
}

impl From<storage::Error> for ApplyError {
    fn from(e: storage::Error) -> Self {
        ApplyError { no_space: matches!(e, storage::Error::NoSpace { .. }), message: e.to_string() }
    }
}

impl From<ApplyError> for String {
    fn from(e: ApplyError) -> String {
        e.message
    }
}

#[derive(Default, Debug, Clone, Copy)]
pub struct Applied {
    pub records: u64,
    pub bytes: u64,
}

/// Applies one record on its owner core and waits until it is durable.
async fn apply_on_owner(c: &Rc<Core>, payload: Arc<Vec<u8>>, off: usize, h: Header, routed: Vec<u64>, repair: bool) -> Result<(), ApplyError> {
    let bytes = &payload[off..off + h.len as usize];
    let key = &bytes[h.key_range()];
    let p = partition_of(xxh3_64(&key[1..]), c.node.ring);
    let core = c.node.owner(p);
    let run = move |cc: Rc<Core>| -> crate::runtime::LocalFuture<Result<(), ApplyError>> {
        Box::pin(async move {
            let bytes = &payload[off..off + h.len as usize];
            let key = &bytes[h.key_range()];
            let value = &bytes[h.value_range()];
            let lsn = objects::apply_replicated(&cc, p, &h, key, &routed, value, repair).await?;
            Ok(objects::settle(cc.part(p), lsn).await?)
        })
    };
    c.call(core, run).await
}

type BlockTask = glommio::Task<Result<(), ApplyError>>;

/// Waits for every block write in flight, even after one has failed:
/// dropping a task cancels it at whatever await it sits, and storage work
/// cut short mid-way is not something to leave behind. Returns the first
/// error.
async fn settle_blocks(blocks: &mut Vec<BlockTask>) -> Result<(), ApplyError> {
    let mut first_err = None;
    for t in blocks.drain(..) {
        if let Err(e) = t.await {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Applies records in order. Non-block records with an LSN up to
/// `skip_through` were applied before and are skipped. Returns once every
/// applied record is durable (as the sync mode defines it).
pub async fn apply_records(
    c: &Rc<Core>,
    source: u64,
    payload: Arc<Vec<u8>>,
    recs: Vec<(usize, Header)>,
    skip_through: Option<u64>,
    repair: bool,
) -> Result<Applied, ApplyError> {
    let (stats, waits) = apply_records_unsettled(c, source, payload, recs, skip_through, repair).await?;
    settle_local(c, &waits).await?;
    Ok(stats)
}

/// Waits until the records `apply_records_unsettled` appended on this core
/// are durable.
pub async fn settle_local(c: &Rc<Core>, waits: &Unsettled) -> Result<(), ApplyError> {
    for &(p, lsn) in waits {
        objects::settle(c.part(p), lsn).await?;
    }
    Ok(())
}

/// Per partition of this core, the LSN that must be durable there before
/// the records applied can be acknowledged.
pub type Unsettled = Vec<(u32, u64)>;

/// Like [`apply_records`], but returns as soon as every record is appended:
/// blocks (and records owned by other cores) are durable, and the records
/// appended on this core are durable once [`settle_local`] says so. That
/// lets a sink take in the next batch while the disk writes this one.
pub async fn apply_records_unsettled(
    c: &Rc<Core>,
    source: u64,
    payload: Arc<Vec<u8>>,
    recs: Vec<(usize, Header)>,
    skip_through: Option<u64>,
    repair: bool,
) -> Result<(Applied, Unsettled), ApplyError> {
    let me = c.node.cluster_id;
    let mut stats = Applied::default();
    // The routing list each record is stored with (this cluster added), or
    // None for a record that is dropped.
    let routes: Vec<Option<Vec<u64>>> = recs
        .iter()
        .map(|&(off, h)| {
            let bytes = &payload[off..off + h.len as usize];
            let mut routed = decode_routed(&bytes[h.meta_range()]);
            if routed.contains(&me) {
                // Realtime: a record that passed through here already is a
                // loop. Fullsync (repair): it is this cluster's own record
                // coming back to repair a lost or damaged copy.
                return repair.then_some(routed);
            }
            if routed.len() >= MAX_ROUTED_CLUSTERS {
                log::warn!("dropping a record from cluster {source:016x} that passed through {} clusters already", routed.len());
                return None;
            }
            routed.push(me);
            Some(routed)
        })
        .collect();
    // Every block of the batch starts at once, each on its own core; a
    // manifest (or any other record) is written only once the blocks that
    // came before it in the batch are durable.
    let mut blocks: VecDeque<(usize, BlockTask)> = VecDeque::new();
    for (i, (&(off, h), routed)) in recs.iter().zip(&routes).enumerate() {
        let Some(routed) = routed else { continue };
        if h.kind != Kind::Block {
            continue;
        }
        c.node.hlc.observe(h.version.hlc);
        stats.records += 1;
        stats.bytes += h.len as u64;
        let (c2, pl, routed) = (c.clone(), payload.clone(), routed.clone());
        blocks.push_back((i, glommio::spawn_local(async move { apply_on_owner(&c2, pl, off, h, routed, repair).await })));
    }
    let mut local_waits: Unsettled = Vec::new();
    let mut failed: Option<ApplyError> = None;
    for (i, (&(off, h), routed)) in recs.iter().zip(routes).enumerate() {
        let Some(routed) = routed else { continue };
        if h.kind == Kind::Block {
            continue;
        }
        c.node.hlc.observe(h.version.hlc);
        if skip_through.map(|s| h.lsn <= s).unwrap_or(false) {
            continue;
        }
        while blocks.front().map(|b| b.0 < i).unwrap_or(false) {
            if let Err(e) = blocks.pop_front().expect("checked").1.await {
                failed = Some(e);
                break;
            }
        }
        if failed.is_some() {
            break;
        }
        stats.records += 1;
        stats.bytes += h.len as u64;
        let bytes = &payload[off..off + h.len as usize];
        let key = &bytes[h.key_range()];
        let p = partition_of(xxh3_64(&key[1..]), c.node.ring);
        let res = if c.node.owner(p) == c.id {
            let value = &bytes[h.value_range()];
            objects::apply_replicated(c, p, &h, key, &routed, value, repair).await.map_err(ApplyError::from).map(|lsn| {
                // LSNs only grow, so the last one per partition covers the rest.
                match local_waits.iter_mut().find(|w| w.0 == p) {
                    Some(w) => w.1 = lsn,
                    None => local_waits.push((p, lsn)),
                }
            })
        } else {
            apply_on_owner(c, payload.clone(), off, h, routed, repair).await
        };
        if let Err(e) = res {
            failed = Some(e);
            break;
        }
    }
    // Block writes in flight are waited for even after a failure (see
    // settle_blocks).
    let mut rest: Vec<BlockTask> = blocks.into_iter().map(|b| b.1).collect();
    let settled = settle_blocks(&mut rest).await;
    match failed {
        Some(e) => Err(e),
        None => settled.map(|()| (stats, local_waits)),
    }
}
