//! Object operations on top of the partitions: buckets, manifests, blocks,
//! multipart uploads, listings, and block reclamation.
//!
//! Invariants:
//! - a manifest is written only after all its blocks are written (and
//!   synced under `sync = always`), so a reader never sees a manifest whose
//!   blocks are missing;
//! - blocks are reclaimed only through an intent record kept next to the
//!   object's manifest, and only when neither the current manifest nor a
//!   multipart part refers to them; a crash at any point leaves at worst an
//!   intent that the next start finishes.

use std::collections::VecDeque;
use std::rc::Rc;

use storage::{AppendOutcome, ColdRecord, FileRegion, Kind, Located, Partition, PutMode, SendRecord, Version, WriteRecord, FLAG_ORDERED, FLAG_REPLICATE, FLAG_TREE};
use xxhash_rust::xxh3::xxh3_64;

use crate::model::*;
use crate::runtime::Core;
use crate::s3::error::{S3Error, S3ErrorCode};

/// Blocks of one upload being written at once (memory: this × block_size).
pub const MAX_BLOCKS_IN_FLIGHT: usize = 4;
/// Block reads one GET keeps ahead of the socket.
pub const READ_AHEAD_BLOCKS: usize = 4;
/// When reclaiming an interrupted upload, stop after this many missing
/// block indexes in a row (blocks are written at most MAX_BLOCKS_IN_FLIGHT
/// ahead of the last one that landed).
const RECLAIM_MISS_LIMIT: u32 = MAX_BLOCKS_IN_FLIGHT as u32 + 2;
/// Most objects DeleteObjects takes (S3 limit).
pub const MAX_DELETE_OBJECTS: usize = 1000;
/// Most multipart parts (S3 limit).
pub const MAX_PARTS: u32 = 10_000;

pub type S3Result<T> = Result<T, S3Error>;

pub fn storage_err(e: storage::Error) -> S3Error {
    use storage::Error as E;
    match e {
        E::NoSpace { .. } => S3Error::new(S3ErrorCode::InsufficientStorage, format!("{e}")),
        E::KeyTooLong { .. } => S3Error::new(S3ErrorCode::KeyTooLongError, e.to_string()),
        E::ValueTooLarge { .. } | E::RecordTooLarge { .. } => S3Error::new(S3ErrorCode::EntityTooLarge, e.to_string()),
        E::Closed(_) => S3Error::new(S3ErrorCode::ServiceUnavailable, "the node is shutting down; retry against another node or later"),
        other => S3Error::new(S3ErrorCode::InternalError, other.to_string()),
    }
}

fn internal(msg: impl Into<String>) -> S3Error {
    S3Error::new(S3ErrorCode::InternalError, msg)
}

pub fn no_such_bucket(bucket: &str) -> S3Error {
    S3Error::new(S3ErrorCode::NoSuchBucket, "The specified bucket does not exist").with_resource(format!("/{bucket}"))
}

pub fn no_such_key(bucket: &str, key: &str) -> S3Error {
    S3Error::new(S3ErrorCode::NoSuchKey, "The specified key does not exist.").with_resource(format!("/{bucket}/{key}"))
}

fn no_such_upload(upload: &str) -> S3Error {
    S3Error::new(S3ErrorCode::NoSuchUpload, format!("The specified upload {upload} does not exist; it may have been completed or aborted"))
}

pub fn local_version(c: &Core) -> Version {
    Version { hlc: c.node.hlc.now(), cluster: c.node.cluster_id }
}

/// Waits for what a committed write needs: written to disk (survives a
/// process crash) and synced if the sync mode says so.
pub async fn settle(part: &Partition, lsn: u64) -> Result<(), storage::Error> {
    part.wait_written(lsn).await?;
    part.wait_durable(lsn).await
}

fn rec<'a>(kind: Kind, flags: u8, key: &'a [u8], meta: &'a [u8], value: &'a [&'a [u8]], version: Version, vhash: u64) -> WriteRecord<'a> {
    WriteRecord { kind, flags, key, meta, value, version, vhash }
}

/// Appends a node-local record (not replicated) and waits for it.
async fn put_local(part: &Partition, key: &[u8], value: &[u8], version: Version) -> Result<u64, storage::Error> {
    let meta = encode_meta(&[], key.len());
    let v = [value];
    let lsn = part
        .append(&rec(Kind::Local, FLAG_ORDERED, key, &meta, &v, version, xxh3_64(value)), PutMode::Always)
        .await?
        .lsn()
        .expect("unconditional append applies");
    settle(part, lsn).await?;
    Ok(lsn)
}

async fn expunge(part: &Partition, key: &[u8]) -> Result<Option<u64>, storage::Error> {
    if part.get(key).is_none() {
        return Ok(None);
    }
    let lsn = part.append(&rec(Kind::Expunge, 0, key, &[], &[], Version::ZERO, 0), PutMode::Always).await?.lsn();
    Ok(lsn)
}

// ------------------------------------------------------------------ buckets

pub async fn get_bucket(c: &Rc<Core>, bucket: &str) -> S3Result<Option<BucketMeta>> {
    let p = bucket_partition(bucket, c.node.ring);
    let key = bucket_key(bucket);
    c.on_partition(p, move |cc| {
        Box::pin(async move {
            let part = cc.part(p);
            match part.read(&key, true).map_err(storage_err)? {
                Some(r) if r.header.kind == Kind::Bucket => BucketMeta::decode(r.value()).map(Some).map_err(internal),
                _ => Ok(None),
            }
        })
    })
    .await
}

pub async fn require_bucket(c: &Rc<Core>, bucket: &str) -> S3Result<BucketMeta> {
    get_bucket(c, bucket).await?.ok_or_else(|| no_such_bucket(bucket))
}

pub async fn create_bucket(c: &Rc<Core>, bucket: &str, owner: &str) -> S3Result<()> {
    let p = bucket_partition(bucket, c.node.ring);
    let key = bucket_key(bucket);
    let meta = BucketMeta { name: bucket.to_string(), created_ms: storage::now_ms(), owner: owner.to_string() };
    let version = local_version(c);
    let routed = vec![c.node.cluster_id];
    let name = bucket.to_string();
    c.on_partition(p, move |cc| {
        Box::pin(async move {
            let part = cc.part(p);
            if let Some(e) = part.get(&key) {
                if e.kind == Kind::Bucket {
                    return Err(S3Error::new(S3ErrorCode::BucketAlreadyOwnedByYou, "Your previous request to create the named bucket succeeded and you already own it.").with_resource(format!("/{name}")));
                }
            }
            let value = meta.encode();
            let m = encode_meta(&routed, key.len());
            let v = [&value[..]];
            let out = part
                .append(&rec(Kind::Bucket, FLAG_REPLICATE | FLAG_TREE | FLAG_ORDERED, &key, &m, &v, version, xxh3_64(&value)), PutMode::IfNewer)
                .await
                .map_err(storage_err)?;
            if let Some(lsn) = out.lsn() {
                settle(part, lsn).await.map_err(storage_err)?;
            }
            Ok(())
        })
    })
    .await
}

pub async fn list_buckets(c: &Rc<Core>) -> S3Result<Vec<BucketMeta>> {
    let per_core = c
        .on_all(|cc: Rc<Core>| {
            Box::pin(async move {
                let mut v = Vec::new();
                for part in cc.parts.values() {
                    let mut after = vec![NS_BUCKET];
                    loop {
                        let keys = part.ordered_keys(&after, &[NS_BUCKET], 1000);
                        if keys.is_empty() {
                            break;
                        }
                        for k in &keys {
                            if let Ok(Some(r)) = part.read(k, true) {
                                if r.header.kind == Kind::Bucket {
                                    if let Ok(b) = BucketMeta::decode(r.value()) {
                                        v.push(b);
                                    }
                                }
                            }
                        }
                        after = keys.last().unwrap().clone();
                    }
                }
                v
            }) as crate::runtime::LocalFuture<Vec<BucketMeta>>
        })
        .await;
    let mut all: Vec<BucketMeta> = per_core.into_iter().flatten().collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all)
}

pub async fn delete_bucket(c: &Rc<Core>, bucket: &str) -> S3Result<()> {
    require_bucket(c, bucket).await?;
    let prefix = manifest_prefix(bucket, "");
    let any = c
        .on_all(move |cc: Rc<Core>| {
            let prefix = prefix.clone();
            Box::pin(async move { cc.parts.values().any(|p| !p.ordered_keys(&[], &prefix, 1).is_empty()) }) as crate::runtime::LocalFuture<bool>
        })
        .await
        .into_iter()
        .any(|x| x);
    if any {
        return Err(S3Error::new(S3ErrorCode::BucketNotEmpty, "The bucket you tried to delete is not empty").with_resource(format!("/{bucket}")));
    }
    let p = bucket_partition(bucket, c.node.ring);
    let key = bucket_key(bucket);
    let version = local_version(c);
    let routed = vec![c.node.cluster_id];
    c.on_partition(p, move |cc| {
        Box::pin(async move {
            let part = cc.part(p);
            let m = encode_meta(&routed, key.len());
            let out = part
                .append(&rec(Kind::Tombstone, FLAG_REPLICATE | FLAG_TREE | FLAG_ORDERED, &key, &m, &[], version, 0), PutMode::IfNewer)
                .await
                .map_err(storage_err)?;
            if let Some(lsn) = out.lsn() {
                settle(part, lsn).await.map_err(storage_err)?;
            }
            Ok(())
        })
    })
    .await
}

// ----------------------------------------------------------------- manifests

/// The current manifest of an object (None when absent or deleted).
pub async fn get_manifest(c: &Rc<Core>, bucket: &str, key: &str) -> S3Result<Option<Manifest>> {
    let p = object_partition(bucket, key, c.node.ring);
    let mk = manifest_key(bucket, key);
    c.on_partition(p, move |cc| {
        Box::pin(async move {
            // A manifest on disk and not cached is read with io_uring: a page
            // fault here would read the fault's whole read-around window
            // (megabytes of other records) with this executor waiting.
            if let Some(Located::File(region)) = cc.part(p).locate(&mk) {
                if !region.is_resident() {
                    match cc.cold.read(&region, true).await {
                        Ok(r) if r.header.kind == Kind::Manifest => return Manifest::decode(r.value()).map(Some).map_err(internal),
                        Ok(_) => return Ok(None),
                        // Through the mapping below: damage is reported there.
                        Err(e) => log::warn!("cold read of a manifest in partition {p} failed ({e}); reading it through the mapping"),
                    }
                }
            }
            read_manifest(cc.part(p), &mk)
        })
    })
    .await
}

pub fn read_manifest(part: &Partition, mk: &[u8]) -> S3Result<Option<Manifest>> {
    match part.read(mk, true).map_err(storage_err)? {
        Some(r) if r.header.kind == Kind::Manifest => Manifest::decode(r.value()).map(Some).map_err(internal),
        _ => Ok(None),
    }
}

/// A block read for a client: through the segment's mapping or from memory,
/// or read from disk by this core (see `storage::cold`).
pub enum BlockData {
    Mapped(SendRecord),
    Read(ColdRecord),
}

impl BlockData {
    pub fn value(&self) -> &[u8] {
        match self {
            BlockData::Mapped(r) => r.value(),
            BlockData::Read(r) => r.value(),
        }
    }
}

/// Reads one block (checked against its crc). The core that owns it finds
/// it; a block on disk and not in the page cache is then read by this core
/// with io_uring, so that neither executor waits on page faults and a GET
/// keeps several reads in flight. A block this cluster does not have (its
/// manifest arrived by replication, the block did not, or not yet) is
/// fetched from the cluster that sent the manifest (proxy_get), stored, and
/// returned.
pub async fn read_block(c: &Rc<Core>, key: Vec<u8>) -> S3Result<Option<BlockData>> {
    match read_block_local(c, key.clone()).await? {
        Some(r) => Ok(Some(r)),
        None => Ok(proxy_block(c, key).await?.map(BlockData::Mapped)),
    }
}

/// The cluster a replicated object came from (the last hop before us).
async fn object_source(c: &Rc<Core>, block: &[u8]) -> Option<u64> {
    let (bucket, key, _, _) = parse_block_key(block)?;
    let p = object_partition(&bucket, &key, c.node.ring);
    let mk = manifest_key(&bucket, &key);
    let me = c.node.cluster_id;
    c.on_partition(p, move |cc| {
        Box::pin(async move {
            let r = cc.part(p).read(&mk, false).ok().flatten()?;
            let routed = decode_routed(r.meta());
            let i = routed.iter().position(|&x| x == me)?;
            (i > 0).then(|| routed[i - 1])
        })
    })
    .await
}

async fn proxy_block(c: &Rc<Core>, key: Vec<u8>) -> S3Result<Option<SendRecord>> {
    let Some(source) = object_source(c, &key).await else { return Ok(None) };
    match crate::repl::proxy::fetch(c, source, vec![key]).await {
        Ok(mut v) => Ok(v.pop().flatten()),
        Err(e) => Err(S3Error::new(
            S3ErrorCode::ServiceUnavailable,
            format!("this object's data has not reached this cluster yet and cannot be fetched from its source: {e}; retry later"),
        )),
    }
}

/// What the owning core answers: the block itself, or where to read it.
enum BlockAt {
    Here(SendRecord),
    Disk(FileRegion),
}

/// Reads one block of this cluster (None: not here), as [`read_block`] does
/// but without proxy_get.
pub async fn read_block_local(c: &Rc<Core>, key: Vec<u8>) -> S3Result<Option<BlockData>> {
    let p = block_partition(&key, c.node.ring);
    let k = key.clone();
    let at = c
        .on_partition(p, move |cc| {
            Box::pin(async move {
                let part = cc.part(p);
                match part.locate(&k) {
                    None => Ok(None),
                    Some(Located::Ready(r)) => Ok((r.header.kind == Kind::Block).then_some(BlockAt::Here(r))),
                    Some(Located::File(region)) if !region.is_resident() => Ok(Some(BlockAt::Disk(region))),
                    Some(Located::File(_)) => mapped_block(part, &k).map(|r| r.map(BlockAt::Here)),
                }
            })
        })
        .await?;
    match at {
        None => Ok(None),
        Some(BlockAt::Here(r)) => Ok(Some(BlockData::Mapped(r))),
        Some(BlockAt::Disk(region)) => match c.cold.read(&region, true).await {
            Ok(r) if r.header.kind == Kind::Block => Ok(Some(BlockData::Read(r))),
            Ok(_) => Ok(None),
            Err(e) => {
                // Read it again on the owning core through the mapping: a
                // damaged record is then listed and dropped from the index
                // there (fullsync repairs it), and a passing fault goes away.
                log::warn!("cold read of a block in partition {p} failed ({e}); reading it through the mapping");
                let at = c.on_partition(p, move |cc| Box::pin(async move { mapped_block(cc.part(p), &key) })).await?;
                Ok(at.map(BlockData::Mapped))
            }
        },
    }
}

/// A block through the segment's mapping, crc checked (damage is reported).
fn mapped_block(part: &Partition, key: &[u8]) -> S3Result<Option<SendRecord>> {
    match part.read(key, true) {
        Ok(Some(r)) if r.header.kind == Kind::Block => Ok(Some(r.into_send())),
        Ok(_) => Ok(None),
        Err(e) => Err(storage_err(e)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// The manifest is the object's current version.
    Current,
    /// A newer version already existed; this write lost (last writer wins).
    Superseded,
}

/// Uids of the blocks an object's manifest (or tombstone) refers to.
fn uids_of(m: &Manifest) -> Vec<Uid> {
    m.parts.iter().map(|p| p.uid).collect()
}

/// A precondition on a write (S3 conditional writes), decided on the core
/// that owns the object, against the version there at the moment of the
/// append.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum WriteCondition {
    #[default]
    None,
    /// `If-None-Match: *`: only if the object does not exist.
    IfNoneMatch,
    /// `If-Match: ETAG[, ETAG…]` (or `*`): only if the object exists with
    /// one of these ETags.
    IfMatch(Vec<String>),
    /// Only if the object's current version is this one: a change of an
    /// object read a moment before (its tags), made on what was read.
    IfVersion(Version),
}

/// Times a conditional write reads the current version again after another
/// write to the same key came between its check and its append.
const MAX_CONDITIONAL_RETRIES: u32 = 16;

fn precondition_failed() -> S3Error {
    S3Error::new(S3ErrorCode::PreconditionFailed, "At least one of the pre-conditions you specified did not hold")
}

/// Checks `cond` against the key's current record (`cur`).
fn check_condition(part: &Partition, mk: &[u8], cur: Option<storage::Entry>, cond: &WriteCondition, bucket: &str, key: &str) -> S3Result<()> {
    let live = cur.filter(|e| e.kind == Kind::Manifest);
    match cond {
        WriteCondition::None => Ok(()),
        WriteCondition::IfNoneMatch => match live {
            None => Ok(()),
            Some(_) => Err(precondition_failed()),
        },
        WriteCondition::IfVersion(v) => match live {
            Some(e) if e.version == *v => Ok(()),
            Some(_) => Err(precondition_failed()),
            None => Err(no_such_key(bucket, key)),
        },
        WriteCondition::IfMatch(etags) => {
            let Some(e) = live else { return Err(no_such_key(bucket, key)) };
            let r = part.read_entry(mk, &e, true).map_err(storage_err)?;
            let m = Manifest::decode(r.value()).map_err(internal)?;
            if etags.iter().any(|t| t == "*" || *t == m.etag) {
                Ok(())
            } else {
                Err(precondition_failed())
            }
        }
    }
}

/// Writes a manifest (last writer wins) on the object's core. Blocks of the
/// version it replaces, or of this one if it lost, are reclaimed.
pub async fn commit_manifest(c: &Rc<Core>, m: Manifest, routed: Vec<u64>, drop_intents: Vec<Uid>, cond: WriteCondition) -> S3Result<Committed> {
    let p = object_partition(&m.bucket, &m.key, c.node.ring);
    c.on_partition(p, move |cc| Box::pin(async move { commit_manifest_local(&cc, p, m, routed, drop_intents, &cond).await })).await
}

pub async fn commit_manifest_local(cc: &Rc<Core>, p: u32, m: Manifest, routed: Vec<u64>, drop_intents: Vec<Uid>, cond: &WriteCondition) -> S3Result<Committed> {
    let part = cc.part(p).clone();
    let mk = manifest_key(&m.bucket, &m.key);
    let value = m.encode();
    let meta = encode_meta(&routed, mk.len());
    let v = [&value[..]];
    let record = rec(Kind::Manifest, FLAG_REPLICATE | FLAG_TREE | FLAG_ORDERED, &mk, &meta, &v, m.version(), xxh3_64(&value));
    let mut retries = 0;
    let out = loop {
        let mode = if *cond == WriteCondition::None {
            PutMode::IfNewer
        } else {
            let cur = part.get(&mk);
            check_condition(&part, &mk, cur, cond, &m.bucket, &m.key)?;
            PutMode::IfUnchanged { at: cur.map(|e| (e.seg, e.off)) }
        };
        let out = part.append(&record, mode).await.map_err(storage_err)?;
        if let (PutMode::IfUnchanged { at }, AppendOutcome::Stale { current, .. }) = (mode, out) {
            if current.map(|e| (e.seg, e.off)) != at {
                // Another write to the key came between the check and the
                // append: decide again on what is there now.
                retries += 1;
                if retries > MAX_CONDITIONAL_RETRIES {
                    return Err(S3Error::new(S3ErrorCode::SlowDown, format!("{}/{}: the conditional write kept racing other writes to the key; retry", m.bucket, m.key)));
                }
                continue;
            }
        }
        break out;
    };
    let (committed, lsn, reclaim) = match out {
        AppendOutcome::Applied { lsn, replaced } => {
            let old = replaced.and_then(|e| part.read_entry(&mk, &e, false).ok()).filter(|r| r.header.kind == Kind::Manifest);
            // A version that keeps the blocks of the one it replaces (a tag
            // change, a copy onto itself) must not reclaim them.
            let kept = uids_of(&m);
            let old_uids = old.and_then(|r| Manifest::decode(r.value()).ok()).map(|o| uids_of(&o)).unwrap_or_default();
            (Committed::Current, Some(lsn), old_uids.into_iter().filter(|u| !kept.contains(u)).collect())
        }
        AppendOutcome::Stale { .. } => (Committed::Superseded, None, uids_of(&m)),
    };
    settle(&part, out.settle_lsn()).await.map_err(storage_err)?;
    let intents_to_drop: Vec<Uid> = if committed == Committed::Current { drop_intents } else { Vec::new() };
    if committed == Committed::Current {
        after_replace(cc, p, &m.bucket, &m.key, lsn, reclaim, intents_to_drop).await;
    } else {
        after_commit(cc, p, &m.bucket, &m.key, lsn, reclaim, intents_to_drop).await;
    }
    Ok(committed)
}

/// Records intents for `reclaim` uids, drops the `done` intents, and starts
/// the background reclamation (after the new state is synced, and after
/// `s3.reclaim_leeway_ms` when the blocks belonged to a version readers
/// could be streaming).
async fn after_commit(cc: &Rc<Core>, p: u32, bucket: &str, key: &str, lsn: Option<u64>, reclaim: Vec<Uid>, done: Vec<Uid>) {
    after_commit_with(cc, p, bucket, key, lsn, reclaim, done, false).await
}

/// Like `after_commit`, for blocks of a version that was visible.
async fn after_replace(cc: &Rc<Core>, p: u32, bucket: &str, key: &str, lsn: Option<u64>, reclaim: Vec<Uid>, done: Vec<Uid>) {
    after_commit_with(cc, p, bucket, key, lsn, reclaim, done, true).await
}

#[allow(clippy::too_many_arguments)]
async fn after_commit_with(cc: &Rc<Core>, p: u32, bucket: &str, key: &str, lsn: Option<u64>, reclaim: Vec<Uid>, done: Vec<Uid>, leeway: bool) {
    let part = cc.part(p).clone();
    for uid in &reclaim {
        let intent = Intent { bucket: bucket.to_string(), key: key.to_string(), uid: *uid, created_ms: storage::now_ms() };
        if let Err(e) = put_local(&part, &intent_key(uid), &intent.encode(), Version::ZERO).await {
            log::warn!("partition {p}: cannot record reclaim intent for {bucket}/{key}: {e}; the blocks stay until the next start");
            return;
        }
    }
    for uid in &done {
        if !reclaim.contains(uid) {
            let _ = expunge(&part, &intent_key(uid)).await;
        }
    }
    if reclaim.is_empty() {
        return;
    }
    let cc = cc.clone();
    let (bucket, key) = (bucket.to_string(), key.to_string());
    glommio::spawn_local(async move {
        // Only reclaim once the state that no longer needs the blocks is on disk for good.
        if let Some(lsn) = lsn {
            if let Err(e) = part.wait_synced(lsn, false).await {
                log::warn!("reclaim for {bucket}/{key} postponed: {e}");
                return;
            }
        }
        if leeway {
            let wait = std::time::Duration::from_millis(cc.node.cfg.s3.reclaim_leeway_ms);
            futures_lite::future::or(glommio::timer::sleep(wait), cc.stopped()).await;
            if cc.stopping.get() {
                // The intents finish the job at the next start.
                return;
            }
        }
        for uid in reclaim {
            reclaim_uid(&cc, p, &bucket, &key, uid).await;
        }
    })
    .detach();
}

/// Whether the current manifest or a multipart part of the object refers to `uid`.
fn uid_in_use(part: &Partition, bucket: &str, key: &str, uid: &Uid) -> bool {
    if let Ok(Some(m)) = read_manifest(part, &manifest_key(bucket, key)) {
        if m.parts.iter().any(|p| &p.uid == uid) {
            return true;
        }
    }
    let mut prefix = vec![NS_PART];
    prefix.extend_from_slice(&object_id(bucket, key));
    prefix.push(0);
    let mut after = prefix.clone();
    loop {
        let keys = part.ordered_keys(&after, &prefix, 256);
        if keys.is_empty() {
            return false;
        }
        for k in &keys {
            if let Ok(Some(r)) = part.read(k, false) {
                if let Ok(pm) = PartMeta::decode(r.value()) {
                    if &pm.uid == uid {
                        return true;
                    }
                }
            }
        }
        after = keys.last().unwrap().clone();
    }
}

/// Expunges the blocks of `uid` unless something still refers to them, then
/// drops its intent. Runs on the object's core.
pub async fn reclaim_uid(cc: &Rc<Core>, p: u32, bucket: &str, key: &str, uid: Uid) {
    let part = cc.part(p).clone();
    if !uid_in_use(&part, bucket, key, &uid) {
        let mut index = 0u32;
        let mut misses = 0u32;
        let mut batch: Vec<Vec<u8>> = Vec::new();
        while misses < RECLAIM_MISS_LIMIT {
            let bk = block_key(bucket, key, &uid, index);
            batch.push(bk);
            index += 1;
            if batch.len() == 64 {
                let found = expunge_blocks(cc, std::mem::take(&mut batch)).await;
                misses = if found == 0 { misses + 64 } else { 0 };
            }
        }
        if !batch.is_empty() {
            expunge_blocks(cc, batch).await;
        }
    }
    let _ = expunge(&part, &intent_key(&uid)).await;
}

/// Expunges block keys on their cores; returns how many existed.
pub async fn expunge_blocks(c: &Rc<Core>, keys: Vec<Vec<u8>>) -> usize {
    let ring = c.node.ring;
    let mut by_core: Vec<Vec<Vec<u8>>> = vec![Vec::new(); c.node.cores];
    for k in keys {
        let core = c.node.owner(block_partition(&k, ring));
        by_core[core].push(k);
    }
    let mut found = 0;
    for (core, keys) in by_core.into_iter().enumerate() {
        if keys.is_empty() {
            continue;
        }
        found += c
            .call(core, move |cc| {
                Box::pin(async move {
                    let mut n = 0;
                    for k in keys {
                        let p = block_partition(&k, cc.node.ring);
                        if let Ok(Some(_)) = expunge(cc.part(p), &k).await {
                            n += 1;
                        }
                    }
                    n
                })
            })
            .await;
    }
    found
}

/// Most blocks one sweep pass looks at per partition (bounds its memory).
/// A partition with more blocks is swept in windows of this many (in index
/// order), each window looked at in two passes in a row (mark, confirm)
/// before the next one; after the last window the sweep starts over.
const MAX_SWEEP_BLOCKS_PER_PARTITION: usize = 1 << 20;

/// Where the sweep window of a partition starts next, after a confirming
/// pass over `start .. start + max` of `total` blocks.
fn next_sweep_window(start: usize, total: usize, max: usize) -> usize {
    if start + max >= total {
        0
    } else {
        start + max
    }
}

/// Blocks that no current manifest, multipart part or intent refers to are
/// *orphans*. They appear on sinks: blocks that arrived ahead of a manifest
/// that never came (the connection broke and the source then skipped the
/// superseded manifest), and blocks of an upload in progress that a
/// fullsync copied and that then lost to another write. Every `orphan_sweep_interval_ms`
/// each core lists the blocks of its partitions and asks the object's core
/// whether anything refers to them; a block found orphaned in two
/// consecutive passes, unchanged in between, is expunged. Nothing is
/// expunged while replicated records arrive: realtime sends a manifest's
/// blocks in batches ahead of it, and fullsync round 1 sends blocks whose
/// manifest comes in round 2; a pass runs only after 2 intervals without
/// a realtime batch or fullsync push applied. A block removed this way that turns out to
/// be needed is sent again: realtime resends every unacknowledged manifest
/// with its blocks, and fullsync round 1 pushes missing blocks.
pub async fn orphan_sweep_loop(c: Rc<Core>) {
    let interval = std::time::Duration::from_millis(c.node.cfg.s3.orphan_sweep_interval_ms);
    let mut marked: std::collections::HashMap<Vec<u8>, (u32, u64)> = std::collections::HashMap::new();
    // Per partition: first block (in index order) of the current window.
    let mut window: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    // Whether this pass confirms the marks of the one before (same windows).
    let mut confirming = false;
    loop {
        futures_lite::future::or(glommio::timer::sleep(interval), c.stopped()).await;
        if c.stopping.get() {
            return;
        }
        let last_push = c.node.repl.last_replicated_apply_ms.load(std::sync::atomic::Ordering::Relaxed);
        if storage::now_ms().saturating_sub(last_push) < 2 * interval.as_millis() as u64 {
            marked.clear();
            confirming = false;
            continue;
        }
        let mut next = std::collections::HashMap::new();
        let mut swept = 0u64;
        let ps: Vec<u32> = c.parts.keys().copied().collect();
        for p in ps {
            if c.stopping.get() {
                return;
            }
            let part = c.part(p).clone();
            let mut groups: std::collections::BTreeMap<(String, String, Uid), Vec<(Vec<u8>, u32, u64)>> = Default::default();
            let start = window.get(&p).copied().unwrap_or(0);
            let end = start + MAX_SWEEP_BLOCKS_PER_PARTITION;
            let mut n = 0usize;
            part.for_each_key(|k, e| {
                if e.kind == Kind::Block {
                    if let Some((b, key, uid, _)) = parse_block_key(k) {
                        if (start..end).contains(&n) {
                            groups.entry((b, key, uid)).or_default().push((k.to_vec(), e.seg, e.off));
                        }
                        n += 1;
                    }
                }
            });
            if confirming {
                window.insert(p, next_sweep_window(start, n, MAX_SWEEP_BLOCKS_PER_PARTITION));
            }
            if groups.is_empty() {
                continue;
            }
            let orphans = unreferenced(&c, groups.keys().cloned().collect()).await;
            for id in orphans {
                for (k, seg, off) in groups.remove(&id).unwrap_or_default() {
                    if marked.get(&k) == Some(&(seg, off)) {
                        let r = part.append(&rec(Kind::Expunge, 0, &k, &[], &[], Version::ZERO, 0), PutMode::IfAt { seg, off }).await;
                        match r {
                            Ok(AppendOutcome::Applied { .. }) => swept += 1,
                            Ok(AppendOutcome::Stale { .. }) => {}
                            Err(e) => log::warn!("partition {p}: cannot expunge an orphan block: {e}"),
                        }
                    } else {
                        next.insert(k, (seg, off));
                    }
                }
            }
            glommio::yield_if_needed().await;
        }
        marked = next;
        confirming = !confirming;
        if swept > 0 {
            log::info!("core {}: expunged {swept} orphan blocks (no manifest, part or intent refers to them)", c.id);
            c.node.metrics[c.id].orphan_blocks_expunged.fetch_add(swept, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// An upload of an object: (bucket, key, uid), with the version of its
/// blocks where the question needs it.
pub type UploadId = (String, String, Uid);

/// Of the uploads given, those for which `test(object's partition, bucket,
/// key, uid, blocks' version)` holds, asked on the objects' cores. Each test
/// may read a cold manifest (a page fault on that thread): the core serves
/// others in between.
async fn uploads_where(c: &Rc<Core>, ids: Vec<(UploadId, Version)>, test: fn(&Partition, &str, &str, &Uid, Version) -> bool) -> Vec<UploadId> {
    let ring = c.node.ring;
    let mut by_core: Vec<Vec<(UploadId, Version)>> = vec![Vec::new(); c.node.cores];
    for id in ids {
        by_core[c.node.owner(object_partition(&id.0 .0, &id.0 .1, ring))].push(id);
    }
    let mut out = Vec::new();
    for (core, ids) in by_core.into_iter().enumerate() {
        if ids.is_empty() {
            continue;
        }
        let found = c
            .call(core, move |cc| {
                Box::pin(async move {
                    let mut hits = Vec::new();
                    for ((b, k, uid), v) in ids {
                        if test(cc.part(object_partition(&b, &k, cc.node.ring)), &b, &k, &uid, v) {
                            hits.push((b, k, uid));
                        }
                        glommio::yield_if_needed().await;
                    }
                    hits
                }) as crate::runtime::LocalFuture<Vec<UploadId>>
            })
            .await;
        out.extend(found);
    }
    out
}

/// Of the uploads given (with the version of their blocks), those
/// that lost for good: no manifest or multipart part refers to the uid and
/// the object's current manifest or tombstone is newer than the blocks, so
/// no manifest naming them can ever win. Their blocks wait out
/// `reclaim_leeway_ms` before they go; meanwhile fullsync leaves them alone
/// (realtime never sends them either: it sends blocks ahead of the manifest
/// that names them, and skips superseded manifests).
pub async fn superseded_uploads(c: &Rc<Core>, ids: Vec<(UploadId, Version)>) -> std::collections::HashSet<UploadId> {
    let lost = uploads_where(c, ids, |part, b, k, uid, v| {
        part.get(&manifest_key(b, k)).is_some_and(|e| e.version > v) && !uid_in_use(part, b, k, uid)
    });
    lost.await.into_iter().collect()
}

/// Of the (bucket, key, uid) given, those that nothing refers to: not the
/// object's current manifest, not a multipart part, not an intent (an
/// upload in progress or a reclamation under way).
async fn unreferenced(c: &Rc<Core>, ids: Vec<UploadId>) -> Vec<UploadId> {
    let ids = ids.into_iter().map(|id| (id, Version::ZERO)).collect();
    uploads_where(c, ids, |part, b, k, uid, _| part.get(&intent_key(uid)).is_none() && !uid_in_use(part, b, k, uid)).await
}

/// Finishes intents left by a previous run (called once per core at start).
pub async fn recover_intents(cc: &Rc<Core>) {
    for (&p, part) in cc.parts.iter() {
        let prefix = vec![NS_INTENT];
        let keys = part.ordered_keys(&[], &prefix, usize::MAX);
        for k in keys {
            let Ok(Some(r)) = part.read(&k, false) else { continue };
            let Ok(intent) = Intent::decode(r.value()) else {
                let _ = expunge(part, &k).await;
                continue;
            };
            log::info!("partition {p}: finishing interrupted upload/reclaim of {}/{} ({})", intent.bucket, intent.key, hex::encode(intent.uid));
            reclaim_uid(cc, p, &intent.bucket, &intent.key, intent.uid).await;
        }
    }
}

/// Deletes an object (writes a tombstone). Deleting a missing key succeeds.
pub async fn delete_object(c: &Rc<Core>, bucket: &str, key: &str) -> S3Result<()> {
    let p = object_partition(bucket, key, c.node.ring);
    let mk = manifest_key(bucket, key);
    let version = local_version(c);
    let routed = vec![c.node.cluster_id];
    let (b, k) = (bucket.to_string(), key.to_string());
    c.on_partition(p, move |cc| {
        Box::pin(async move {
            let part = cc.part(p).clone();
            let Some(cur) = part.get(&mk) else { return Ok(()) };
            if cur.kind != Kind::Manifest {
                // Already deleted: acknowledged once that tombstone is durable.
                settle(&part, part.head_lsn()).await.map_err(storage_err)?;
                return Ok(());
            }
            let old = part.read_entry(&mk, &cur, false).ok().and_then(|r| Manifest::decode(r.value()).ok());
            let meta = encode_meta(&routed, mk.len());
            let out = part
                .append(&rec(Kind::Tombstone, FLAG_REPLICATE | FLAG_TREE | FLAG_ORDERED, &mk, &meta, &[], version, 0), PutMode::IfNewer)
                .await
                .map_err(storage_err)?;
            settle(&part, out.settle_lsn()).await.map_err(storage_err)?;
            if let Some(lsn) = out.lsn() {
                let reclaim = old.map(|o| uids_of(&o)).unwrap_or_default();
                after_replace(&cc, p, &b, &k, Some(lsn), reclaim, Vec::new()).await;
            }
            Ok(())
        })
    })
    .await
}

// -------------------------------------------------------------- block writer

/// Streams the blocks of one upload (a PUT or one multipart part) to the
/// cores that own them, a few at a time, behind an intent record.
pub struct BlockWriter {
    c: Rc<Core>,
    pub bucket: String,
    pub key: String,
    pub uid: Uid,
    version: Version,
    routed: Vec<u64>,
    next_index: u32,
    inflight: VecDeque<glommio::Task<S3Result<()>>>,
    intent_written: bool,
}

impl BlockWriter {
    pub fn new(c: &Rc<Core>, bucket: &str, key: &str, version: Version) -> BlockWriter {
        BlockWriter {
            c: c.clone(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            uid: random_uid(),
            version,
            routed: vec![c.node.cluster_id],
            next_index: 0,
            inflight: VecDeque::new(),
            intent_written: false,
        }
    }

    pub fn blocks(&self) -> u32 {
        self.next_index
    }

    async fn write_intent(&mut self) -> S3Result<()> {
        let p = object_partition(&self.bucket, &self.key, self.c.node.ring);
        let intent = Intent { bucket: self.bucket.clone(), key: self.key.clone(), uid: self.uid, created_ms: storage::now_ms() };
        let ik = intent_key(&self.uid);
        self.c
            .on_partition(p, move |cc| Box::pin(async move { put_local(cc.part(p), &ik, &intent.encode(), Version::ZERO).await.map(|_| ()).map_err(storage_err) }))
            .await?;
        self.intent_written = true;
        Ok(())
    }

    /// Sends the next block; waits while MAX_BLOCKS_IN_FLIGHT are in flight.
    pub async fn push(&mut self, data: Vec<u8>) -> S3Result<()> {
        if !self.intent_written {
            self.write_intent().await?;
        }
        while self.inflight.len() >= MAX_BLOCKS_IN_FLIGHT {
            self.inflight.pop_front().unwrap().await?;
        }
        let key = block_key(&self.bucket, &self.key, &self.uid, self.next_index);
        self.next_index += 1;
        let p = block_partition(&key, self.c.node.ring);
        let version = self.version;
        let routed = self.routed.clone();
        let c = self.c.clone();
        let task = glommio::spawn_local(async move {
            c.on_partition(p, move |cc| {
                Box::pin(async move {
                    let part = cc.part(p);
                    let meta = encode_meta(&routed, key.len());
                    let vhash = xxh3_64(&data);
                    let v = [&data[..]];
                    let lsn = part
                        .append(&rec(Kind::Block, FLAG_REPLICATE | FLAG_TREE, &key, &meta, &v, version, vhash), PutMode::Always)
                        .await
                        .map_err(storage_err)?
                        .lsn()
                        .expect("unconditional append applies");
                    settle(part, lsn).await.map_err(storage_err)
                })
            })
            .await
        });
        self.inflight.push_back(task);
        Ok(())
    }

    /// Waits until every block is stored.
    pub async fn finish(&mut self) -> S3Result<()> {
        while let Some(t) = self.inflight.pop_front() {
            t.await?;
        }
        Ok(())
    }

    /// Gives up: waits for writes in flight, then reclaims what was written.
    pub async fn abort(mut self) {
        while let Some(t) = self.inflight.pop_front() {
            let _ = t.await;
        }
        if !self.intent_written {
            return;
        }
        let p = object_partition(&self.bucket, &self.key, self.c.node.ring);
        let (b, k, uid) = (self.bucket.clone(), self.key.clone(), self.uid);
        self.c.on_partition(p, move |cc| Box::pin(async move { reclaim_uid(&cc, p, &b, &k, uid).await })).await;
    }
}

// ------------------------------------------------------------------ listing

#[derive(Clone, Debug)]
pub struct ListEntry {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub last_modified_ms: u64,
}

/// Up to `limit` objects of `bucket` with `prefix`, after `start_after`, in
/// key order, merged from every partition.
pub async fn list_objects(c: &Rc<Core>, bucket: &str, prefix: &str, start_after: &[u8], limit: usize) -> Vec<ListEntry> {
    let pfx = manifest_prefix(bucket, prefix);
    let after = if start_after.is_empty() {
        Vec::new()
    } else {
        let mut k = manifest_key(bucket, "");
        k.extend_from_slice(start_after);
        k
    };
    let skip = 2 + bucket.len();
    let per_core = c
        .on_all(move |cc: Rc<Core>| {
            let (pfx, after) = (pfx.clone(), after.clone());
            Box::pin(async move {
                let mut keys: Vec<Vec<u8>> = Vec::new();
                for part in cc.parts.values() {
                    keys.extend(part.ordered_keys(&after, &pfx, limit));
                }
                keys.sort();
                keys.truncate(limit);
                let mut out = Vec::with_capacity(keys.len());
                for k in keys {
                    let p = crate::model::partition_of(xxh3_64(&k[1..]), cc.node.ring);
                    if let Ok(Some(m)) = read_manifest(cc.part(p), &k) {
                        out.push(ListEntry { key: String::from_utf8_lossy(&k[skip..]).into_owned(), size: m.size, etag: m.etag, last_modified_ms: m.last_modified_ms });
                    }
                }
                out
            }) as crate::runtime::LocalFuture<Vec<ListEntry>>
        })
        .await;
    let mut all: Vec<ListEntry> = per_core.into_iter().flatten().collect();
    all.sort_by(|a, b| a.key.cmp(&b.key));
    all.truncate(limit);
    all
}

// ---------------------------------------------------------------- multipart

pub fn upload_id_str(u: &Uid) -> String {
    hex::encode(u)
}

pub fn parse_upload_id(s: &str) -> S3Result<Uid> {
    let mut u = [0u8; 16];
    match hex::decode_to_slice(s, &mut u) {
        Ok(()) => Ok(u),
        Err(_) => Err(no_such_upload(s)),
    }
}

pub async fn create_upload(c: &Rc<Core>, meta: UploadMeta) -> S3Result<()> {
    let p = object_partition(&meta.bucket, &meta.key, c.node.ring);
    let uk = upload_key(&meta.bucket, &meta.key, &meta.upload_id);
    c.on_partition(p, move |cc| Box::pin(async move { put_local(cc.part(p), &uk, &meta.encode(), Version::ZERO).await.map(|_| ()).map_err(storage_err) }))
        .await
}

pub async fn get_upload(c: &Rc<Core>, bucket: &str, key: &str, upload: &Uid) -> S3Result<UploadMeta> {
    let p = object_partition(bucket, key, c.node.ring);
    let uk = upload_key(bucket, key, upload);
    let id = upload_id_str(upload);
    c.on_partition(p, move |cc| {
        Box::pin(async move {
            match cc.part(p).read(&uk, true).map_err(storage_err)? {
                Some(r) if r.header.kind == Kind::Local => UploadMeta::decode(r.value()).map_err(internal),
                _ => Err(no_such_upload(&id)),
            }
        })
    })
    .await
}

/// Records an uploaded part (its blocks are stored); replaces an earlier
/// upload of the same part number and reclaims that one's blocks.
pub async fn put_part(c: &Rc<Core>, bucket: &str, key: &str, upload: &Uid, pm: PartMeta) -> S3Result<()> {
    let p = object_partition(bucket, key, c.node.ring);
    let uk = upload_key(bucket, key, upload);
    let pk = part_key(bucket, key, upload, pm.part_number);
    let (b, k) = (bucket.to_string(), key.to_string());
    let id = upload_id_str(upload);
    c.on_partition(p, move |cc| {
        Box::pin(async move {
            let part = cc.part(p).clone();
            if part.get(&uk).is_none() {
                // The upload was completed or aborted meanwhile: drop the blocks.
                after_commit(&cc, p, &b, &k, None, vec![pm.uid], Vec::new()).await;
                return Err(no_such_upload(&id));
            }
            let old = part.read(&pk, false).ok().flatten().and_then(|r| PartMeta::decode(r.value()).ok());
            let lsn = put_local(&part, &pk, &pm.encode(), Version::ZERO).await.map_err(storage_err)?;
            let reclaim = old.map(|o| vec![o.uid]).unwrap_or_default();
            after_commit(&cc, p, &b, &k, Some(lsn), reclaim, vec![pm.uid]).await;
            Ok(())
        })
    })
    .await
}

pub async fn list_parts(c: &Rc<Core>, bucket: &str, key: &str, upload: &Uid) -> S3Result<Vec<PartMeta>> {
    get_upload(c, bucket, key, upload).await?;
    let p = object_partition(bucket, key, c.node.ring);
    let prefix = part_prefix(bucket, key, upload);
    c.on_partition(p, move |cc| {
        Box::pin(async move {
            let part = cc.part(p);
            let mut out = Vec::new();
            for k in part.ordered_keys(&[], &prefix, MAX_PARTS as usize) {
                if let Some(r) = part.read(&k, true).map_err(storage_err)? {
                    out.push(PartMeta::decode(r.value()).map_err(internal)?);
                }
            }
            Ok(out)
        })
    })
    .await
}

/// Lists multipart uploads in progress for a bucket (all partitions).
pub async fn list_uploads(c: &Rc<Core>, bucket: &str, prefix: &str) -> Vec<UploadMeta> {
    let mut pfx = vec![NS_UPLOAD];
    pfx.extend_from_slice(&object_id(bucket, prefix));
    let per_core = c
        .on_all(move |cc: Rc<Core>| {
            let pfx = pfx.clone();
            Box::pin(async move {
                let mut v = Vec::new();
                for part in cc.parts.values() {
                    for k in part.ordered_keys(&[], &pfx, 10_000) {
                        if let Ok(Some(r)) = part.read(&k, true) {
                            if let Ok(u) = UploadMeta::decode(r.value()) {
                                v.push(u);
                            }
                        }
                    }
                }
                v
            }) as crate::runtime::LocalFuture<Vec<UploadMeta>>
        })
        .await;
    let mut all: Vec<UploadMeta> = per_core.into_iter().flatten().collect();
    all.sort_by(|a, b| (&a.key, a.created_ms).cmp(&(&b.key, b.created_ms)));
    all
}

/// Completes a multipart upload from the client's part list.
pub async fn complete_upload(
    c: &Rc<Core>,
    bucket: &str,
    key: &str,
    upload: &Uid,
    wanted: Vec<(u32, String)>,
    min_part_bytes: u64,
    block_size: u32,
    cond: WriteCondition,
) -> S3Result<Manifest> {
    let meta = get_upload(c, bucket, key, upload).await?;
    let parts = list_parts(c, bucket, key, upload).await?;
    if wanted.is_empty() {
        return Err(S3Error::new(S3ErrorCode::MalformedXML, "CompleteMultipartUpload needs at least one part"));
    }
    let mut chosen = Vec::new();
    let mut prev = 0u32;
    for (i, (n, etag)) in wanted.iter().enumerate() {
        if *n <= prev {
            return Err(S3Error::new(S3ErrorCode::InvalidPartOrder, format!("part {n} follows part {prev}; the list of parts must be in ascending order")));
        }
        prev = *n;
        let Some(pm) = parts.iter().find(|p| p.part_number == *n) else {
            return Err(S3Error::new(S3ErrorCode::InvalidPart, format!("part {n} was not uploaded")));
        };
        let want = etag.trim().trim_matches('"');
        if !want.is_empty() && want != pm.etag {
            return Err(S3Error::new(S3ErrorCode::InvalidPart, format!("part {n} has ETag {}, not {want}", pm.etag)));
        }
        if i + 1 < wanted.len() && pm.size < min_part_bytes {
            return Err(S3Error::new(S3ErrorCode::EntityTooSmall, format!("part {n} is {} bytes; every part but the last must be at least {min_part_bytes} bytes", pm.size))
                .with_extra("PartNumber", n.to_string()));
        }
        chosen.push(pm.clone());
    }
    let md5s: Vec<[u8; 16]> = chosen.iter().map(|p| {
        let mut m = [0u8; 16];
        let _ = hex::decode_to_slice(&p.etag, &mut m);
        m
    }).collect();
    let etag = crate::s3::checksum::multipart_etag(&md5s);
    let etag = etag.trim_matches('"').to_string();
    let (checksums, part_checksums) = composite_of(&meta, &chosen)?;
    let mut user_meta = meta.user_meta.clone();
    if let Some(pc) = part_checksums {
        user_meta.push((SYS_PART_CHECKSUMS.to_string(), pc));
    }
    let version = local_version(c);
    let manifest = Manifest {
        bucket: bucket.to_string(),
        key: key.to_string(),
        version_hlc: version.hlc,
        version_cluster: version.cluster,
        size: chosen.iter().map(|p| p.size).sum(),
        etag,
        content_type: meta.content_type.clone(),
        user_meta,
        checksums,
        last_modified_ms: storage::now_ms(),
        block_size,
        parts: chosen.iter().map(|p| PartRef { uid: p.uid, size: p.size }).collect(),
        inline: Vec::new(),
    };
    let unused: Vec<Uid> = parts.iter().filter(|p| !chosen.iter().any(|c| c.uid == p.uid)).map(|p| p.uid).collect();
    let p = object_partition(bucket, key, c.node.ring);
    let routed = vec![c.node.cluster_id];
    let m2 = manifest.clone();
    let (b, k, up) = (bucket.to_string(), key.to_string(), *upload);
    let all_parts: Vec<u32> = parts.iter().map(|p| p.part_number).collect();
    c.on_partition(p, move |cc| {
        Box::pin(async move {
            let part = cc.part(p).clone();
            if part.get(&upload_key(&b, &k, &up)).is_none() {
                return Err(no_such_upload(&upload_id_str(&up)));
            }
            commit_manifest_local(&cc, p, m2, routed, Vec::new(), &cond).await?;
            // The part records go; their blocks now belong to the manifest
            // (unused parts are reclaimed through intents).
            after_commit(&cc, p, &b, &k, None, unused, Vec::new()).await;
            for n in all_parts {
                let _ = expunge(&part, &part_key(&b, &k, &up, n)).await;
            }
            let _ = expunge(&part, &upload_key(&b, &k, &up)).await;
            Ok(())
        })
    })
    .await?;
    Ok(manifest)
}

/// The composite checksum of a completed multipart object (S3's "checksum
/// of checksums", `BASE64-N`) and its parts' checksums, when every chosen
/// part has a checksum of one algorithm (the upload's, if it named one).
fn composite_of(meta: &UploadMeta, chosen: &[PartMeta]) -> S3Result<(Vec<(String, String)>, Option<String>)> {
    use crate::s3::checksum::{composite_checksum, ChecksumAlgorithm};
    let named = ChecksumAlgorithm::from_name(&meta.checksum_algorithm);
    let first = chosen.first().and_then(|p| p.checksums.first()).and_then(|(n, _)| ChecksumAlgorithm::from_header_name(n));
    let Some(alg) = named.or(first) else { return Ok((Vec::new(), None)) };
    let mut values = Vec::with_capacity(chosen.len());
    for p in chosen {
        match p.checksums.iter().find(|(n, _)| ChecksumAlgorithm::from_header_name(n) == Some(alg)) {
            Some((_, v)) => values.push(v.as_str()),
            None if named.is_some() => {
                return Err(S3Error::new(
                    S3ErrorCode::InvalidRequest,
                    format!("part {} was uploaded without the {} checksum this multipart upload was created with", p.part_number, alg.name()),
                ))
            }
            None => return Ok((Vec::new(), None)),
        }
    }
    let composite = composite_checksum(alg, &values)?;
    Ok((vec![(alg.header_name().to_string(), composite)], Some(values.join(","))))
}

pub async fn abort_upload(c: &Rc<Core>, bucket: &str, key: &str, upload: &Uid) -> S3Result<()> {
    let parts = list_parts(c, bucket, key, upload).await?;
    let p = object_partition(bucket, key, c.node.ring);
    let (b, k, up) = (bucket.to_string(), key.to_string(), *upload);
    c.on_partition(p, move |cc| {
        Box::pin(async move {
            let part = cc.part(p).clone();
            let _ = expunge(&part, &upload_key(&b, &k, &up)).await;
            let mut uids = Vec::new();
            for pm in parts {
                let _ = expunge(&part, &part_key(&b, &k, &up, pm.part_number)).await;
                uids.push(pm.uid);
            }
            after_commit(&cc, p, &b, &k, None, uids, Vec::new()).await;
            Ok(())
        })
    })
    .await
}

// -------------------------------------------------------------- replication

/// Applies a record received from another cluster, on the core that owns
/// partition `p` (last writer wins). Does not wait for durability: the
/// caller waits once per partition for a whole batch. Returns the LSN to
/// wait for before the record may be acknowledged
/// (`AppendOutcome::settle_lsn`: when the local copy is as new or newer, it
/// may have been appended a moment ago, by an earlier connection, and not
/// be durable yet).
///
/// With `repair`, a local record with the same version but other content
/// (a damaged copy) is replaced too: fullsync uses it.
pub async fn apply_replicated(cc: &Rc<Core>, p: u32, h: &storage::Header, key: &[u8], routed: &[u64], value: &[u8], repair: bool) -> S3Result<u64> {
    let part = cc.part(p).clone();
    let meta = encode_meta(routed, key.len());
    let v = [value];
    // (only a repair looks at what is there first: realtime's IfNewer does
    // its own lookup)
    let mode = match repair.then(|| part.get(key)).flatten() {
        Some(e) if e.version == h.version && e.vhash != h.vhash => PutMode::Always,
        _ => PutMode::IfNewer,
    };
    let out = part.append(&rec(h.kind, h.flags, key, &meta, &v, h.version, h.vhash), mode).await.map_err(storage_err)?;
    let is_object = key.first() == Some(&NS_MANIFEST);
    let ids = || if is_object { split_object_id(&key[1..]).map(|(b, k)| (b.to_string(), k.to_string())) } else { None };
    match out {
        AppendOutcome::Applied { lsn, replaced } => {
            if let (Some(e), Some((b, k))) = (replaced, replaced.and_then(|_| ids())) {
                let old = part.read_entry(key, &e, false).ok().filter(|r| r.header.kind == Kind::Manifest).and_then(|r| Manifest::decode(r.value()).ok());
                if let Some(old) = old {
                    // Blocks the new version names too (a tag change) stay.
                    let kept = if h.kind == Kind::Manifest { Manifest::decode(value).map(|m| uids_of(&m)).unwrap_or_default() } else { Vec::new() };
                    let uids: Vec<Uid> = uids_of(&old).into_iter().filter(|u| !kept.contains(u)).collect();
                    if !uids.is_empty() {
                        after_replace(cc, p, &b, &k, Some(lsn), uids, Vec::new()).await;
                    }
                }
            }
            Ok(lsn)
        }
        AppendOutcome::Stale { head, .. } => {
            // A manifest that lost: the blocks that came with it are garbage.
            if let (Kind::Manifest, Some((b, k))) = (h.kind, ids()) {
                if let Ok(m) = Manifest::decode(value) {
                    let uids = uids_of(&m);
                    if !uids.is_empty() {
                        after_commit(cc, p, &b, &k, None, uids, Vec::new()).await;
                    }
                }
            }
            Ok(head)
        }
    }
}

#[cfg(test)]
mod sweep_tests {
    use super::next_sweep_window;

    #[test]
    fn sweep_windows_cover_every_block_then_start_over() {
        // 2.5 windows of blocks: windows at 0, 4, 8, then back to 0.
        let (max, total) = (4, 10);
        let mut starts = vec![0];
        for _ in 0..3 {
            starts.push(next_sweep_window(*starts.last().unwrap(), total, max));
        }
        assert_eq!(starts, vec![0, 4, 8, 0]);
        // Fewer blocks than one window: always the whole partition.
        assert_eq!(next_sweep_window(0, 3, max), 0);
        // The partition shrank below the window's start: start over.
        assert_eq!(next_sweep_window(8, 5, max), 0);
    }
}
