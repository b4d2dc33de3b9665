//! GetObjectAttributes: ETag, Checksum, ObjectParts, StorageClass and
//! ObjectSize of an object, as named by `x-amz-object-attributes`.

use std::fmt::Write as _;
use std::rc::Rc;

use super::*;

/// Attributes GetObjectAttributes can return (S3 API names).
const ATTRIBUTES: [&str; 5] = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"];

pub(super) async fn get_object_attributes(core: &Rc<Core>, conn: &mut Conn, req: &mut Req) -> HResult {
    let (b, k) = (req.bucket.clone().unwrap(), req.key.clone().unwrap());
    let wanted: Vec<String> = req.head.header_all("x-amz-object-attributes").flat_map(|v| v.split(',')).map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    if wanted.is_empty() {
        return Err(S3Error::new(S3ErrorCode::InvalidArgument, format!("x-amz-object-attributes must name at least one of {}", ATTRIBUTES.join(", "))).into());
    }
    if let Some(bad) = wanted.iter().find(|w| !ATTRIBUTES.contains(&w.as_str())) {
        return Err(S3Error::new(S3ErrorCode::InvalidArgument, format!("Invalid attribute name specified: {bad} (one of {})", ATTRIBUTES.join(", "))).into());
    }
    let max_parts: usize = match req.head.header("x-amz-max-parts") {
        Some(v) => v.trim().parse::<usize>().map_err(|_| S3Error::new(S3ErrorCode::InvalidArgument, "x-amz-max-parts must be an integer"))?.min(MAX_LIST_PARTS),
        None => MAX_LIST_PARTS,
    };
    let marker: usize = match req.head.header("x-amz-part-number-marker") {
        Some(v) => v.trim().parse::<usize>().map_err(|_| S3Error::new(S3ErrorCode::InvalidArgument, "x-amz-part-number-marker must be an integer"))?,
        None => 0,
    };
    let Some(m) = objects::get_manifest(core, &b, &k).await? else {
        objects::require_bucket(core, &b).await?;
        return Err(objects::no_such_key(&b, &k).into());
    };
    let want = |a: &str| wanted.iter().any(|w| w == a);
    let multipart = m.etag.contains('-');
    let mut out = String::from(r#"<?xml version="1.0" encoding="UTF-8"?><GetObjectAttributesResponse xmlns="http://s3.amazonaws.com/doc/2006-03-01/">"#);
    if want("ETag") {
        let _ = write!(out, "<ETag>{}</ETag>", xml::escaped(&m.etag));
    }
    let checksum = m.checksums.iter().find_map(|(n, v)| ChecksumAlgorithm::from_header_name(n).map(|a| (a, v.as_str())));
    if want("Checksum") {
        if let Some((alg, v)) = checksum {
            let kind = if v.contains('-') { "COMPOSITE" } else { "FULL_OBJECT" };
            let _ = write!(out, "<Checksum><{e}>{}</{e}><ChecksumType>{kind}</ChecksumType></Checksum>", xml::escaped(v), e = alg.xml_element());
        }
    }
    if want("ObjectParts") && multipart {
        let part_sums: Vec<&str> = m.sys(SYS_PART_CHECKSUMS).map(|s| s.split(',').collect()).unwrap_or_default();
        let total = m.parts.len();
        let shown: Vec<usize> = (marker..total).take(max_parts).collect();
        let truncated = shown.last().is_some_and(|&i| i + 1 < total);
        let _ = write!(out, "<ObjectParts><PartsCount>{total}</PartsCount><PartNumberMarker>{marker}</PartNumberMarker>");
        if let Some(&last) = shown.last() {
            let _ = write!(out, "<NextPartNumberMarker>{}</NextPartNumberMarker>", last + 1);
        }
        let _ = write!(out, "<MaxParts>{max_parts}</MaxParts><IsTruncated>{truncated}</IsTruncated>");
        for i in shown {
            let _ = write!(out, "<Part><PartNumber>{}</PartNumber><Size>{}</Size>", i + 1, m.parts[i].size);
            if let (Some((alg, _)), Some(v)) = (checksum, part_sums.get(i)) {
                let _ = write!(out, "<{e}>{}</{e}>", xml::escaped(v), e = alg.xml_element());
            }
            out.push_str("</Part>");
        }
        out.push_str("</ObjectParts>");
    }
    if want("StorageClass") {
        out.push_str("<StorageClass>STANDARD</StorageClass>");
    }
    if want("ObjectSize") {
        let _ = write!(out, "<ObjectSize>{}</ObjectSize>", m.size);
    }
    out.push_str("</GetObjectAttributesResponse>");
    let last_modified = datetime::http_date((m.last_modified_ms / 1000) as i64);
    let date = datetime::http_date(storage::now_ms() as i64 / 1000);
    let mut hs = common_headers(&req.id, &date);
    hs.push(("Content-Type", "application/xml"));
    hs.push(("Last-Modified", &last_modified));
    let mut buf = Vec::with_capacity(256 + out.len());
    h::write_response_head(&mut buf, 200, &hs, Some(out.len() as u64));
    buf.extend_from_slice(out.as_bytes());
    conn.write_all(&buf).await.map_err(|_| aborting(internal_io()))?;
    Ok((200, After::KeepAlive))
}
