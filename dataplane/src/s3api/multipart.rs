//! Multipart uploads: CreateMultipartUpload, UploadPart,
//! CompleteMultipartUpload, ListParts, ListMultipartUploads (UploadPartCopy
//! is in `copy.rs`, AbortMultipartUpload in the dispatcher).

use std::rc::Rc;
use std::sync::atomic::Ordering;

use super::*;

pub(super) async fn create_upload(core: &Rc<Core>, conn: &mut Conn, req: &mut Req) -> HResult {
    let (b, k) = (req.bucket.clone().unwrap(), req.key.clone().unwrap());
    let framing = req.head.body_framing().map_err(|e| closing(e.to_s3_error()))?;
    if !matches!(framing, BodyFraming::None | BodyFraming::ContentLength(0)) {
        let mut body = Body::new(framing, None);
        body.read_to_end(conn, MAX_XML_BODY_BYTES).await.map_err(closing)?;
    }
    objects::require_bucket(core, &b).await?;
    let up = random_uid();
    let meta = UploadMeta {
        bucket: b.clone(),
        key: k.clone(),
        upload_id: up,
        created_ms: storage::now_ms(),
        content_type: req.head.header("content-type").unwrap_or("binary/octet-stream").to_string(),
        user_meta: object_meta(req)?,
        checksum_algorithm: req.head.header("x-amz-checksum-algorithm").unwrap_or("").to_string(),
    };
    objects::create_upload(core, meta).await?;
    send_xml(conn, 200, &req.id, xml::initiate_multipart_upload(&b, &k, &objects::upload_id_str(&up))).await
}

pub(super) async fn upload_part(core: &Rc<Core>, conn: &mut Conn, req: &mut Req) -> HResult {
    let (b, k) = (req.bucket.clone().unwrap(), req.key.clone().unwrap());
    let n: u32 = req
        .q("partNumber")
        .and_then(|s| s.parse().ok())
        .filter(|n| (1..=objects::MAX_PARTS).contains(n))
        .ok_or_else(|| closing(S3Error::new(S3ErrorCode::InvalidArgument, format!("Part number must be an integer between 1 and {}, inclusive", objects::MAX_PARTS))))?;
    let up = objects::parse_upload_id(req.q("uploadId").unwrap_or("")).map_err(closing)?;
    let (mut body, size) = open_body(req).map_err(closing)?;
    if let Some(sz) = size {
        if sz > 5 << 30 {
            return Err(closing(S3Error::new(S3ErrorCode::EntityTooLarge, "a part may be at most 5 GiB")));
        }
    }
    let mut checks = BodyChecks::new(req).map_err(closing)?;
    // The bucket may have been deleted since the upload started.
    objects::require_bucket(core, &b).await.map_err(closing)?;
    objects::get_upload(core, &b, &k, &up).await.map_err(closing)?;
    send_continue(conn, req).await?;
    let mut writer = BlockWriter::new(core, &b, &k, objects::local_version(core));
    let (total, _) = match receive_blocks(core, conn, &mut body, &mut checks, &mut writer, None).await {
        Ok(x) => x,
        Err(e) => {
            writer.abort().await;
            return Err(closing(e));
        }
    };
    core.metrics.bytes_in.fetch_add(total, Ordering::Relaxed);
    let (md5, checksums) = match checks.finish(&body) {
        Ok(x) => x,
        Err(e) => {
            writer.abort().await;
            return Err(e.into());
        }
    };
    let etag = hex::encode(md5);
    let pm = PartMeta { part_number: n, uid: writer.uid, size: total, etag: etag.clone(), last_modified_ms: storage::now_ms(), checksums: checksums.clone() };
    if writer.blocks() == 0 {
        // An empty part has no blocks, so no intent to clear.
    }
    objects::put_part(core, &b, &k, &up, pm).await?;
    let quoted = format!("\"{etag}\"");
    let mut hs: Vec<(&str, &str)> = vec![("ETag", &quoted)];
    for (n, v) in &checksums {
        hs.push((n.as_str(), v.as_str()));
    }
    send_empty(conn, 200, &req.id, &hs).await
}

pub(super) async fn complete_upload(core: &Rc<Core>, conn: &mut Conn, req: &mut Req) -> HResult {
    let (b, k) = (req.bucket.clone().unwrap(), req.key.clone().unwrap());
    let up = objects::parse_upload_id(req.q("uploadId").unwrap_or("")).map_err(closing)?;
    let framing = req.head.body_framing().map_err(|e| closing(e.to_s3_error()))?;
    let mut body = Body::new(framing, None);
    let bytes = body.read_to_end(conn, MAX_XML_BODY_BYTES).await.map_err(closing)?;
    verify_body_sha256(req, &bytes)?;
    let parts = xml::parse_complete_multipart_upload(&bytes)?;
    let wanted: Vec<(u32, String)> = parts.iter().map(|p| (p.part_number, xml::normalize_etag(&p.etag).to_string())).collect();
    let cfg = &core.node.cfg.s3;
    // Never create an object in a bucket deleted since the upload started.
    objects::require_bucket(core, &b).await?;
    let cond = write_condition(req)?;
    let m = objects::complete_upload(core, &b, &k, &up, wanted, cfg.min_part_bytes, cfg.block_size, cond).await?;
    let location = format!("/{b}/{k}");
    let checks: Vec<(ChecksumAlgorithm, &str)> = m.checksums.iter().filter_map(|(n, v)| ChecksumAlgorithm::from_header_name(n).map(|a| (a, v.as_str()))).collect();
    send_xml(conn, 200, &req.id, xml::complete_multipart_upload(&location, &b, &k, &m.etag, &checks)).await
}

pub(super) async fn list_parts(core: &Rc<Core>, conn: &mut Conn, req: &Req) -> HResult {
    let (b, k) = (req.bucket.clone().unwrap(), req.key.clone().unwrap());
    let up = objects::parse_upload_id(req.q("uploadId").unwrap_or(""))?;
    let marker: u32 = req.q("part-number-marker").and_then(|s| s.parse().ok()).unwrap_or(0);
    let max: usize = req.q("max-parts").and_then(|s| s.parse().ok()).unwrap_or(MAX_LIST_PARTS).min(MAX_LIST_PARTS);
    let all = objects::list_parts(core, &b, &k, &up).await?;
    let after: Vec<&PartMeta> = all.iter().filter(|p| p.part_number > marker).collect();
    let truncated = after.len() > max;
    let shown: Vec<&PartMeta> = after.into_iter().take(max).collect();
    let checks: Vec<Vec<(ChecksumAlgorithm, &str)>> = shown
        .iter()
        .map(|p| p.checksums.iter().filter_map(|(n, v)| ChecksumAlgorithm::from_header_name(n).map(|a| (a, v.as_str()))).collect())
        .collect();
    let entries: Vec<xml::PartEntry<'_>> = shown
        .iter()
        .zip(checks.iter())
        .map(|(p, c)| xml::PartEntry { part_number: p.part_number, last_modified_ms: p.last_modified_ms as i64, etag: &p.etag, size: p.size, checksums: c })
        .collect();
    let upid = objects::upload_id_str(&up);
    let owner = req.owner();
    let body = xml::list_parts(&xml::ListParts {
        bucket: &b,
        key: &k,
        upload_id: &upid,
        part_number_marker: marker,
        next_part_number_marker: if truncated { shown.last().map(|p| p.part_number) } else { None },
        max_parts: max as u32,
        is_truncated: truncated,
        storage_class: "STANDARD",
        owner: Some(xml::Owner { id: &owner, display_name: &owner }),
        parts: &entries,
    });
    send_xml(conn, 200, &req.id, body).await
}

pub(super) async fn list_uploads(core: &Rc<Core>, conn: &mut Conn, req: &Req) -> HResult {
    let b = req.bucket.clone().unwrap();
    objects::require_bucket(core, &b).await?;
    let prefix = req.q("prefix").unwrap_or("").to_string();
    let all = objects::list_uploads(core, &b, &prefix).await;
    let ids: Vec<String> = all.iter().map(|u| objects::upload_id_str(&u.upload_id)).collect();
    let owner = req.owner();
    let entries: Vec<xml::UploadEntry<'_>> = all
        .iter()
        .zip(ids.iter())
        .map(|(u, id)| xml::UploadEntry { key: &u.key, upload_id: id, initiated_ms: u.created_ms as i64, storage_class: "STANDARD", owner: Some(xml::Owner { id: &owner, display_name: &owner }) })
        .collect();
    let body = xml::list_multipart_uploads(&xml::ListMultipartUploads {
        bucket: &b,
        key_marker: "",
        upload_id_marker: "",
        next_key_marker: None,
        next_upload_id_marker: None,
        prefix: &prefix,
        delimiter: None,
        max_uploads: 1000,
        is_truncated: false,
        encoding_url: false,
        uploads: &entries,
        common_prefixes: &[],
    });
    send_xml(conn, 200, &req.id, body).await
}
