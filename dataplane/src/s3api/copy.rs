//! CopyObject and UploadPartCopy: server-side copies. The bytes go from the
//! source's blocks to new blocks of the destination, written under the
//! destination's own key and upload id, so a copy shares no block with its
//! source: overwriting or deleting either one reclaims only its own blocks,
//! and replication, fullsync and proxy_get see the copy as an ordinary write.

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use super::*;
use crate::s3::checksum::Checksummer;

/// Largest object CopyObject copies, and largest range UploadPartCopy
/// copies (S3: 5 GiB).
pub const MAX_COPY_BYTES: u64 = 5 << 30;

/// Parses `x-amz-copy-source` (`[/]bucket/key[?versionId=…]`, URL-encoded).
fn copy_source(req: &Req) -> S3Result<(String, String)> {
    let raw = req.head.header("x-amz-copy-source").unwrap_or("").trim();
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    if let Some(q) = query {
        let version = h::parse_query(q).into_iter().find(|(n, _)| n == "versionId").map(|(_, v)| v);
        match version.as_deref() {
            None | Some("null") => {}
            Some(v) => {
                return Err(not_implemented(&format!(
                    "x-amz-copy-source with versionId {v} (this node keeps one version of each key; copy without a versionId)"
                )))
            }
        }
    }
    let decoded = h::decode_path(path.strip_prefix('/').unwrap_or(path))?;
    let bad = || S3Error::new(S3ErrorCode::InvalidArgument, format!("Invalid copy source {raw:?}: it must be BUCKET/KEY, URL-encoded")).with_extra("ArgumentName", "x-amz-copy-source");
    let (b, k) = decoded.split_once('/').ok_or_else(bad)?;
    if b.is_empty() || k.is_empty() {
        return Err(bad());
    }
    names::validate_bucket_name(b)?;
    names::validate_key(k)?;
    Ok((b.to_string(), k.to_string()))
}

/// The `x-amz-copy-source-if-*` preconditions on the source (S3's rules:
/// a matching If-Match overrides If-Unmodified-Since, a failing
/// If-None-Match overrides If-Modified-Since).
fn check_source_conditions(req: &Req, src: &Manifest) -> S3Result<()> {
    let mtime = (src.last_modified_ms / 1000) as i64;
    let failed = || S3Error::new(S3ErrorCode::PreconditionFailed, "At least one of the pre-conditions you specified did not hold (x-amz-copy-source-if-*)");
    let date = |n: &str| req.head.header(n).and_then(datetime::parse_http_date);
    match req.head.header("x-amz-copy-source-if-match") {
        Some(v) if !etag_matches(v, &src.etag) => return Err(failed()),
        Some(_) => {}
        None => {
            if date("x-amz-copy-source-if-unmodified-since").is_some_and(|t| mtime > t) {
                return Err(failed());
            }
        }
    }
    match req.head.header("x-amz-copy-source-if-none-match") {
        Some(v) if etag_matches(v, &src.etag) => return Err(failed()),
        Some(_) => {}
        None => {
            if date("x-amz-copy-source-if-modified-since").is_some_and(|t| mtime <= t) {
                return Err(failed());
            }
        }
    }
    Ok(())
}

/// Reads the source's manifest (NoSuchBucket / NoSuchKey naming the source).
async fn source_manifest(core: &Rc<Core>, b: &str, k: &str) -> S3Result<Manifest> {
    match objects::get_manifest(core, b, k).await? {
        Some(m) => Ok(m),
        None => {
            objects::require_bucket(core, b).await?;
            Err(objects::no_such_key(b, k))
        }
    }
}

/// A copy needs no body; one that comes with a body is refused before
/// anything is read.
fn no_body(req: &Req, op: &str) -> Result<(), Failure> {
    if matches!(req.head.body_framing(), Ok(BodyFraming::None) | Ok(BodyFraming::ContentLength(0))) {
        Ok(())
    } else {
        Err(closing(S3Error::new(S3ErrorCode::InvalidRequest, format!("{op} takes no request body; the data comes from x-amz-copy-source"))))
    }
}

/// Copies bytes `[start, end]` of `src` into `writer`, re-cut into blocks of
/// this node's block size, feeding the hashers. Returns the bytes copied.
async fn copy_range(core: &Rc<Core>, src: &Manifest, start: u64, end: u64, writer: &mut BlockWriter, md5: &mut Option<Md5Hasher>, sum: &mut Option<Checksummer>) -> S3Result<u64> {
    let bs = core.node.cfg.s3.block_size as usize;
    let mut buf: Vec<u8> = Vec::with_capacity(bs);
    let mut total = 0u64;
    let mut it = src.blocks_for_range(start, end).into_iter();
    let mut pending = VecDeque::new();
    let spawn = |key: Vec<u8>| {
        let c = core.clone();
        glommio::spawn_local(async move { objects::read_block(&c, key).await })
    };
    for _ in 0..objects::READ_AHEAD_BLOCKS {
        if let Some((key, blen, off, n)) = it.next() {
            pending.push_back((spawn(key.clone()), key, blen, off, n));
        }
    }
    while let Some((task, key, blen, off, n)) = pending.pop_front() {
        let rec = match task.await? {
            Some(r) if r.value().len() as u64 == blen => r,
            _ => {
                return Err(S3Error::new(
                    S3ErrorCode::ServiceUnavailable,
                    format!("block {} of the copy source {}/{} is not on this cluster yet (it may still be replicating); retry shortly", hex::encode(&key[key.len() - 20..]), src.bucket, src.key),
                ))
            }
        };
        if let Some((k2, l2, o2, n2)) = it.next() {
            pending.push_back((spawn(k2.clone()), k2, l2, o2, n2));
        }
        let mut data = &rec.value()[off as usize..(off + n) as usize];
        if let Some(h) = md5 {
            h.update(data);
        }
        if let Some(c) = sum {
            c.update(data);
        }
        total += n;
        while !data.is_empty() {
            let take = (bs - buf.len()).min(data.len());
            buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if buf.len() == bs {
                writer.push(std::mem::replace(&mut buf, Vec::with_capacity(bs))).await?;
            }
        }
    }
    if !buf.is_empty() {
        writer.push(buf).await?;
    }
    writer.finish().await?;
    Ok(total)
}

pub(super) async fn copy_object(core: &Rc<Core>, conn: &mut Conn, req: &mut Req) -> HResult {
    no_body(req, "CopyObject")?;
    let (b, k) = (req.bucket.clone().unwrap(), req.key.clone().unwrap());
    let (sb, sk) = copy_source(req)?;
    let directive = |name: &str| match req.head.header(name).map(|v| v.trim().to_ascii_uppercase()) {
        None => Ok(false),
        Some(v) if v == "COPY" => Ok(false),
        Some(v) if v == "REPLACE" => Ok(true),
        Some(v) => Err(S3Error::new(S3ErrorCode::InvalidArgument, format!("Unknown {name} {v:?}: COPY or REPLACE"))),
    };
    let replace_meta = directive("x-amz-metadata-directive")?;
    let replace_tags = directive("x-amz-tagging-directive")?;
    if sb == b && sk == k && !replace_meta && !replace_tags {
        return Err(S3Error::new(
            S3ErrorCode::InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata; use x-amz-metadata-directive: REPLACE",
        )
        .into());
    }
    let cond = write_condition(req)?;
    let new_meta = if replace_meta { Some(object_meta(req)?) } else { None };
    let new_tags = match req.head.header("x-amz-tagging") {
        Some(t) if replace_tags => Some(crate::s3::tagging::parse_header(t)?),
        _ if replace_tags => Some(Vec::new()),
        _ => None,
    };
    objects::require_bucket(core, &b).await?;
    let src = source_manifest(core, &sb, &sk).await?;
    check_source_conditions(req, &src)?;
    if src.size > MAX_COPY_BYTES.min(core.node.cfg.s3.max_put_bytes) {
        return Err(S3Error::new(
            S3ErrorCode::InvalidRequest,
            format!("The specified copy source is larger than the maximum allowable size for a copy source: {} (use UploadPartCopy)", MAX_COPY_BYTES.min(core.node.cfg.s3.max_put_bytes)),
        )
        .into());
    }
    // Metadata: the source's (COPY) or the request's (REPLACE); tags likewise.
    let mut user_meta: Vec<(String, String)> = match new_meta {
        Some(m) => m.into_iter().filter(|(n, _)| n != SYS_TAGGING).collect(),
        None => src.user_meta.iter().filter(|(n, _)| n != SYS_TAGGING && n != SYS_PART_CHECKSUMS).cloned().collect(),
    };
    let tags = match new_tags {
        Some(t) => (!t.is_empty()).then(|| crate::s3::tagging::encode(&t)),
        None => src.sys(SYS_TAGGING).map(|s| s.to_string()),
    };
    if let Some(t) = tags {
        user_meta.push((SYS_TAGGING.to_string(), t));
    }
    let content_type = if replace_meta { req.head.header("content-type").unwrap_or("binary/octet-stream").to_string() } else { src.content_type.clone() };
    // Data: inline objects are copied with their manifest; others into new
    // blocks. A whole non-multipart object keeps its MD5 ETag and checksum;
    // a multipart one gets the MD5 and checksum of its whole content.
    let multipart = src.etag.contains('-');
    let mut writer = BlockWriter::new(core, &b, &k, objects::local_version(core));
    // (an empty object written with blocks, by a chunked PUT of unknown
    // length, is copied as an inline one: there are no bytes to read)
    let (size, inline, parts, etag, checksums) = if src.parts.is_empty() || src.size == 0 {
        (src.size, src.inline.clone(), Vec::new(), src.etag.clone(), src.checksums.clone())
    } else {
        let mut md5 = multipart.then(Md5Hasher::new);
        let alg = src.checksums.first().and_then(|(n, _)| ChecksumAlgorithm::from_header_name(n));
        let mut sum = if multipart { alg.map(Checksummer::new) } else { None };
        let copied = match copy_range(core, &src, 0, src.size - 1, &mut writer, &mut md5, &mut sum).await {
            Ok(n) => n,
            Err(e) => {
                writer.abort().await;
                return Err(e.into());
            }
        };
        let etag = md5.map(|h| hex::encode(h.finish())).unwrap_or_else(|| src.etag.clone());
        let checksums = match (sum, alg) {
            (Some(c), Some(a)) => vec![(a.header_name().to_string(), c.finish_base64())],
            _ => src.checksums.clone(),
        };
        (copied, Vec::new(), vec![PartRef { uid: writer.uid, size: copied }], etag, checksums)
    };
    core.metrics.bytes_copied.fetch_add(size, Ordering::Relaxed);
    let version = objects::local_version(core);
    let manifest = Manifest {
        bucket: b.clone(),
        key: k.clone(),
        version_hlc: version.hlc,
        version_cluster: version.cluster,
        size,
        etag: etag.clone(),
        content_type,
        user_meta,
        checksums: checksums.clone(),
        last_modified_ms: storage::now_ms(),
        block_size: core.node.cfg.s3.block_size,
        parts,
        inline,
    };
    let last_modified = manifest.last_modified_ms;
    let intents = if manifest.parts.is_empty() { Vec::new() } else { vec![writer.uid] };
    if let Err(e) = objects::commit_manifest(core, manifest, vec![core.node.cluster_id], intents, cond).await {
        writer.abort().await;
        return Err(e.into());
    }
    let checks: Vec<(ChecksumAlgorithm, &str)> = checksums.iter().filter_map(|(n, v)| ChecksumAlgorithm::from_header_name(n).map(|a| (a, v.as_str()))).collect();
    send_xml(conn, 200, &req.id, xml::copy_object_result(last_modified as i64, &etag, &checks)).await
}

pub(super) async fn upload_part_copy(core: &Rc<Core>, conn: &mut Conn, req: &mut Req) -> HResult {
    no_body(req, "UploadPartCopy")?;
    let (b, k) = (req.bucket.clone().unwrap(), req.key.clone().unwrap());
    let n: u32 = req
        .q("partNumber")
        .and_then(|s| s.parse().ok())
        .filter(|n| (1..=objects::MAX_PARTS).contains(n))
        .ok_or_else(|| S3Error::new(S3ErrorCode::InvalidArgument, format!("Part number must be an integer between 1 and {}, inclusive", objects::MAX_PARTS)))?;
    let up = objects::parse_upload_id(req.q("uploadId").unwrap_or(""))?;
    let (sb, sk) = copy_source(req)?;
    objects::require_bucket(core, &b).await?;
    let upload = objects::get_upload(core, &b, &k, &up).await?;
    let src = source_manifest(core, &sb, &sk).await?;
    check_source_conditions(req, &src)?;
    let (start, end) = match req.head.header("x-amz-copy-source-range") {
        Some(r) => {
            let bad = || {
                S3Error::new(S3ErrorCode::InvalidArgument, format!("Range specified is not valid for source object of size: {} (x-amz-copy-source-range: {r})", src.size))
                    .with_extra("ArgumentName", "x-amz-copy-source-range")
            };
            let spec = r.trim().strip_prefix("bytes=").ok_or_else(bad)?;
            let (a, z) = spec.split_once('-').ok_or_else(bad)?;
            let (a, z): (u64, u64) = (a.trim().parse().map_err(|_| bad())?, z.trim().parse().map_err(|_| bad())?);
            if a > z || z >= src.size {
                return Err(bad().into());
            }
            (a, z)
        }
        None if src.size == 0 => (0, 0),
        None => (0, src.size - 1),
    };
    let len = if src.size == 0 { 0 } else { end - start + 1 };
    if len > MAX_COPY_BYTES {
        return Err(S3Error::new(S3ErrorCode::EntityTooLarge, format!("a part may be at most {MAX_COPY_BYTES} bytes; copy a smaller x-amz-copy-source-range")).into());
    }
    let alg = ChecksumAlgorithm::from_name(&upload.checksum_algorithm);
    let mut md5 = Some(Md5Hasher::new());
    let mut sum = alg.map(Checksummer::new);
    let mut writer = BlockWriter::new(core, &b, &k, objects::local_version(core));
    let copied = if len == 0 {
        0
    } else {
        match copy_range(core, &src, start, end, &mut writer, &mut md5, &mut sum).await {
            Ok(n) => n,
            Err(e) => {
                writer.abort().await;
                return Err(e.into());
            }
        }
    };
    core.metrics.bytes_copied.fetch_add(copied, Ordering::Relaxed);
    let etag = hex::encode(md5.expect("always hashed").finish());
    let checksums: Vec<(String, String)> = match (sum, alg) {
        (Some(c), Some(a)) => vec![(a.header_name().to_string(), c.finish_base64())],
        _ => Vec::new(),
    };
    let now = storage::now_ms();
    let pm = PartMeta { part_number: n, uid: writer.uid, size: copied, etag: etag.clone(), last_modified_ms: now, checksums: checksums.clone() };
    if let Err(e) = objects::put_part(core, &b, &k, &up, pm).await {
        writer.abort().await;
        return Err(e.into());
    }
    let checks: Vec<(ChecksumAlgorithm, &str)> = checksums.iter().filter_map(|(n, v)| ChecksumAlgorithm::from_header_name(n).map(|a| (a, v.as_str()))).collect();
    send_xml(conn, 200, &req.id, xml::copy_part_result(now as i64, &etag, &checks)).await
}
