//! Buckets and listings: ListBuckets, CreateBucket, ListObjects (v1, v2),
//! DeleteObjects.

use std::rc::Rc;

use super::*;

pub(super) async fn list_buckets(core: &Rc<Core>, conn: &mut Conn, req: &Req) -> HResult {
    let all = objects::list_buckets(core).await?;
    let owner_id = req.owner();
    let entries: Vec<xml::BucketEntry<'_>> = all.iter().map(|b| xml::BucketEntry { name: &b.name, creation_date_ms: b.created_ms as i64 }).collect();
    let owner = xml::Owner { id: &owner_id, display_name: &owner_id };
    send_xml(conn, 200, &req.id, xml::list_all_my_buckets(Some(&owner), &entries)).await
}

pub(super) async fn create_bucket(core: &Rc<Core>, conn: &mut Conn, req: &mut Req) -> HResult {
    let b = req.bucket.clone().unwrap();
    // The optional CreateBucketConfiguration body is read and ignored (one region).
    let framing = req.head.body_framing().map_err(|e| closing(e.to_s3_error()))?;
    if !matches!(framing, BodyFraming::None | BodyFraming::ContentLength(0)) {
        let mut body = Body::new(framing, None);
        let bytes = body.read_to_end(conn, MAX_XML_BODY_BYTES).await.map_err(closing)?;
        if !bytes.is_empty() {
            xml::parse_create_bucket_configuration(&bytes)?;
        }
    }
    objects::create_bucket(core, &b, &req.owner()).await?;
    let loc = format!("/{b}");
    send_empty(conn, 200, &req.id, &[("Location", &loc)]).await
}

// ------------------------------------------------------------------ listing

fn encode_token(s: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn decode_token(s: &str) -> S3Result<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .ok_or_else(|| S3Error::new(S3ErrorCode::InvalidArgument, "The continuation token provided is incorrect"))
}

struct Page {
    contents: Vec<objects::ListEntry>,
    prefixes: Vec<String>,
    truncated: bool,
    /// Where the next page starts (exclusive), as key bytes.
    next: Option<Vec<u8>>,
}

/// Builds one listing page: keys after `cursor` with `prefix`, grouped by
/// `delimiter`, at most `max` entries (keys plus common prefixes). Like S3,
/// a common prefix that does not sort after `cursor` (a v1 NextMarker or
/// start-after naming it, or a key inside it) is not returned again.
async fn list_page(core: &Rc<Core>, bucket: &str, prefix: &str, delimiter: &str, cursor: &[u8], max: usize) -> Page {
    let mut page = Page { contents: Vec::new(), prefixes: Vec::new(), truncated: false, next: None };
    let marker = cursor.to_vec();
    let mut cursor = cursor.to_vec();
    if max == 0 {
        return page;
    }
    loop {
        let want = max - (page.contents.len() + page.prefixes.len()) + 1;
        let batch = objects::list_objects(core, bucket, prefix, &cursor, want.min(MAX_LIST_KEYS + 1)).await;
        if batch.is_empty() {
            return page;
        }
        let mut refetch = false;
        for e in batch {
            if page.contents.len() + page.prefixes.len() >= max {
                page.truncated = true;
                page.next = Some(cursor.clone());
                return page;
            }
            let rest = &e.key[prefix.len()..];
            if !delimiter.is_empty() {
                if let Some(i) = rest.find(delimiter) {
                    let cp = format!("{prefix}{}", &rest[..i + delimiter.len()]);
                    // Skip every key under this common prefix: 0xFF never
                    // occurs in UTF-8, so cp ‖ 0xFF sorts after all of them.
                    cursor = cp.as_bytes().to_vec();
                    cursor.push(0xFF);
                    if cp.as_bytes() > &marker[..] {
                        page.prefixes.push(cp);
                    }
                    refetch = true;
                    break;
                }
            }
            cursor = e.key.as_bytes().to_vec();
            page.contents.push(e);
        }
        if !refetch {
            // The batch was shorter than asked for: there is nothing more.
            return page;
        }
    }
}

pub(super) async fn list_objects(core: &Rc<Core>, conn: &mut Conn, req: &Req) -> HResult {
    let b = req.bucket.clone().unwrap();
    objects::require_bucket(core, &b).await?;
    let v2 = req.q("list-type") == Some("2");
    let prefix = req.q("prefix").unwrap_or("").to_string();
    let delimiter = req.q("delimiter").unwrap_or("").to_string();
    let max_keys: usize = match req.q("max-keys") {
        Some(s) => s.parse::<i64>().map_err(|_| S3Error::new(S3ErrorCode::InvalidArgument, "max-keys must be an integer"))?.clamp(0, MAX_LIST_KEYS as i64) as usize,
        None => MAX_LIST_KEYS,
    };
    let encoding_url = match req.q("encoding-type") {
        None => false,
        Some("url") => true,
        Some(other) => return Err(S3Error::new(S3ErrorCode::InvalidArgument, format!("Invalid Encoding Method specified in Request: {other}")).into()),
    };
    let token = req.q("continuation-token").map(|s| s.to_string());
    let start_after = if v2 { req.q("start-after") } else { req.q("marker") }.unwrap_or("").to_string();
    let cursor = match &token {
        Some(t) => decode_token(t)?,
        None => start_after.as_bytes().to_vec(),
    };
    let page = list_page(core, &b, &prefix, &delimiter, &cursor, max_keys).await;
    let etags: Vec<String> = page.contents.iter().map(|e| e.etag.clone()).collect();
    let owner = req.owner();
    let fetch_owner = req.q("fetch-owner") == Some("true") || !v2;
    let entries: Vec<xml::ObjectEntry<'_>> = page
        .contents
        .iter()
        .zip(etags.iter())
        .map(|(e, etag)| xml::ObjectEntry {
            key: &e.key,
            last_modified_ms: e.last_modified_ms as i64,
            etag,
            size: e.size,
            storage_class: "STANDARD",
            owner: if fetch_owner { Some(xml::Owner { id: &owner, display_name: &owner }) } else { None },
        })
        .collect();
    let cps: Vec<&str> = page.prefixes.iter().map(|s| s.as_str()).collect();
    let next_token = page.next.as_ref().map(|n| encode_token(n));
    let body = if v2 {
        xml::list_objects_v2(&xml::ListObjectsV2 {
            name: &b,
            prefix: &prefix,
            delimiter: if delimiter.is_empty() { None } else { Some(&delimiter) },
            max_keys: max_keys as u32,
            is_truncated: page.truncated,
            continuation_token: token.as_deref(),
            next_continuation_token: next_token.as_deref(),
            start_after: if start_after.is_empty() { None } else { Some(&start_after) },
            encoding_url,
            contents: &entries,
            common_prefixes: &cps,
        })
    } else {
        let next_marker = if page.truncated && !delimiter.is_empty() {
            page.contents.last().map(|e| e.key.clone()).into_iter().chain(page.prefixes.last().cloned()).max()
        } else {
            None
        };
        xml::list_objects_v1(&xml::ListObjectsV1 {
            name: &b,
            prefix: &prefix,
            marker: &start_after,
            next_marker: next_marker.as_deref(),
            delimiter: if delimiter.is_empty() { None } else { Some(&delimiter) },
            max_keys: max_keys as u32,
            is_truncated: page.truncated,
            encoding_url,
            contents: &entries,
            common_prefixes: &cps,
        })
    };
    send_xml(conn, 200, &req.id, body).await
}

pub(super) async fn delete_objects(core: &Rc<Core>, conn: &mut Conn, req: &mut Req) -> HResult {
    let b = req.bucket.clone().unwrap();
    let bytes = read_checked_xml_body(conn, req).await?;
    objects::require_bucket(core, &b).await?;
    let dr = xml::parse_delete(&bytes)?;
    let mut deleted = Vec::new();
    let mut errors: Vec<(String, S3Error)> = Vec::new();
    for o in &dr.objects {
        if let Err(e) = names::validate_key(&o.key) {
            errors.push((o.key.clone(), e));
            continue;
        }
        match objects::delete_object(core, &b, &o.key).await {
            Ok(()) => deleted.push(o.key.clone()),
            Err(e) => errors.push((o.key.clone(), e)),
        }
    }
    let d: Vec<xml::DeletedEntry<'_>> = deleted.iter().map(|k| xml::DeletedEntry { key: k, version_id: None }).collect();
    let e: Vec<xml::DeleteErrorEntry<'_>> =
        errors.iter().map(|(k, e)| xml::DeleteErrorEntry { key: k, version_id: None, code: e.code_str(), message: &e.message }).collect();
    send_xml(conn, 200, &req.id, xml::delete_result(&d, &e, dr.quiet)).await
}

