//! Get/Put/DeleteObjectTagging. Tags live with the object's version: a tag
//! change writes a new version of the manifest (same data and blocks, a new
//! hybrid-clock version), which replicates like any write. Under
//! last-writer-wins a concurrent write of the object at another site can
//! therefore drop a tag change, as it would drop any other change.

use std::rc::Rc;

use super::*;
use crate::s3::tagging as tags;

/// Times a tag change reads the object again when another write to it came
/// between its read and its write.
const MAX_TAGGING_RETRIES: u32 = 8;

async fn current(core: &Rc<Core>, b: &str, k: &str) -> S3Result<Manifest> {
    match objects::get_manifest(core, b, k).await? {
        Some(m) => Ok(m),
        None => {
            objects::require_bucket(core, b).await?;
            Err(objects::no_such_key(b, k))
        }
    }
}

pub(super) async fn get_tagging(core: &Rc<Core>, conn: &mut Conn, req: &mut Req) -> HResult {
    let (b, k) = (req.bucket.clone().unwrap(), req.key.clone().unwrap());
    let m = current(core, &b, &k).await?;
    let set = m.sys(SYS_TAGGING).map(tags::decode).unwrap_or_default();
    send_xml(conn, 200, &req.id, tags::to_xml(&set)).await
}

pub(super) async fn put_tagging(core: &Rc<Core>, conn: &mut Conn, req: &mut Req) -> HResult {
    let bytes = read_checked_xml_body(conn, req).await?;
    let set = tags::parse_xml(&bytes)?;
    set_tags(core, conn, req, set).await
}

pub(super) async fn delete_tagging(core: &Rc<Core>, conn: &mut Conn, req: &mut Req) -> HResult {
    set_tags(core, conn, req, Vec::new()).await
}

/// Writes the object's current version again with `set` as its tags,
/// decided against the version read (no other write comes in between).
async fn set_tags(core: &Rc<Core>, conn: &mut Conn, req: &Req, set: tags::TagSet) -> HResult {
    let (b, k) = (req.bucket.clone().unwrap(), req.key.clone().unwrap());
    let encoded = (!set.is_empty()).then(|| tags::encode(&set));
    let mut attempt = 0;
    loop {
        let old = current(core, &b, &k).await?;
        let read = old.version();
        let mut m = old;
        m.set_sys(SYS_TAGGING, encoded.clone());
        let v = objects::local_version(core);
        m.version_hlc = v.hlc;
        m.version_cluster = v.cluster;
        match objects::commit_manifest(core, m, vec![core.node.cluster_id], Vec::new(), objects::WriteCondition::IfVersion(read)).await {
            Ok(objects::Committed::Current) => break,
            // Lost to a newer version (the clock had not yet passed it), or
            // another write came first: read again.
            Ok(objects::Committed::Superseded) if attempt < MAX_TAGGING_RETRIES => attempt += 1,
            Err(e) if e.code == S3ErrorCode::PreconditionFailed && attempt < MAX_TAGGING_RETRIES => attempt += 1,
            Ok(objects::Committed::Superseded) => return Err(S3Error::new(S3ErrorCode::SlowDown, format!("{b}/{k}: the tag change kept losing to newer versions; retry")).into()),
            Err(e) if e.code == S3ErrorCode::PreconditionFailed => {
                return Err(S3Error::new(S3ErrorCode::SlowDown, format!("{b}/{k} kept changing while its tags were written; retry")).into())
            }
            Err(e) => return Err(e.into()),
        }
    }
    let status = if req.head.method == "DELETE" { 204 } else { 200 };
    send_empty(conn, status, &req.id, &[]).await
}
