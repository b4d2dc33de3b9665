//! Which S3 operation a request is, by an explicit table.
//!
//! A request is classified by its method, whether it names a bucket and a
//! key, the S3 sub-resource in its query (`?tagging`, `?uploads`, …) and
//! the headers that select an operation (`x-amz-copy-source`). Only the rows
//! of [`TABLE`] are served; every other combination is refused: a known S3
//! sub-resource this node does not implement answers `501 NotImplemented`
//! naming the operation, and so does a query parameter this node does not
//! know (it may select an operation of a newer API). Nothing falls through
//! to the plain object or bucket operation, so no request can change data it
//! does not name.

use crate::metrics::Op;
use crate::s3::error::S3Error;
use crate::s3::http::decode_path;

/// What a request addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Service,
    Bucket,
    Object,
}

/// The result of classification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Serve(Op),
    /// An S3 operation this node does not implement, by its S3 API name.
    NotImplemented(String),
    /// The method means nothing on this resource.
    MethodNotAllowed,
}

/// Query parameters that select an S3 operation (sub-resources), from the S3
/// API reference. A request carries at most one.
pub const SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "attributes",
    "cors",
    "delete",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "legal-hold",
    "lifecycle",
    "location",
    "logging",
    "metadataTable",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "policy",
    "policyStatus",
    "publicAccessBlock",
    "renameObject",
    "replication",
    "requestPayment",
    "restore",
    "retention",
    "select",
    "session",
    "tagging",
    "torrent",
    "uploads",
    "versioning",
    "versions",
    "website",
];

/// Ordinary parameters of the operations this node serves, which select
/// nothing by themselves. `uploadId` and `partNumber` are here: with a
/// key, `uploadId` selects the multipart operation of its method.
const PARAMETERS: &[&str] = &[
    "uploadId",
    "partNumber",
    "prefix",
    "delimiter",
    "marker",
    "max-keys",
    "list-type",
    "continuation-token",
    "start-after",
    "fetch-owner",
    "encoding-type",
    "key-marker",
    "upload-id-marker",
    "max-uploads",
    "max-parts",
    "part-number-marker",
    // SigV2 query authentication.
    "AWSAccessKeyId",
    "Signature",
    "Expires",
    // Added by the AWS SDKs for their own logging; selects nothing.
    "x-id",
];

/// Whether a query parameter is an ordinary one (never an operation).
fn is_parameter(name: &str) -> bool {
    PARAMETERS.contains(&name)
        || name.len() > 6 && name[..6].eq_ignore_ascii_case("x-amz-")
        || name.starts_with("response-")
}

/// The rows this node serves: (method, level, sub-resource, copy source
/// header present, operation). `""` is the request without a sub-resource;
/// `"uploadId"` stands for a request with `?uploadId=`.
const TABLE: &[(&str, Level, &str, bool, Op)] = &[
    ("GET", Level::Service, "", false, Op::ListBuckets),
    ("HEAD", Level::Bucket, "", false, Op::HeadBucket),
    ("PUT", Level::Bucket, "", false, Op::CreateBucket),
    ("DELETE", Level::Bucket, "", false, Op::DeleteBucket),
    ("GET", Level::Bucket, "", false, Op::ListObjects),
    ("GET", Level::Bucket, "location", false, Op::GetBucketLocation),
    ("GET", Level::Bucket, "versioning", false, Op::GetBucketVersioning),
    ("GET", Level::Bucket, "uploads", false, Op::ListMultipartUploads),
    ("POST", Level::Bucket, "delete", false, Op::DeleteObjects),
    ("GET", Level::Object, "", false, Op::GetObject),
    ("HEAD", Level::Object, "", false, Op::HeadObject),
    ("PUT", Level::Object, "", false, Op::PutObject),
    ("PUT", Level::Object, "", true, Op::CopyObject),
    ("DELETE", Level::Object, "", false, Op::DeleteObject),
    ("GET", Level::Object, "tagging", false, Op::GetObjectTagging),
    ("PUT", Level::Object, "tagging", false, Op::PutObjectTagging),
    ("DELETE", Level::Object, "tagging", false, Op::DeleteObjectTagging),
    ("GET", Level::Object, "attributes", false, Op::GetObjectAttributes),
    ("POST", Level::Object, "uploads", false, Op::CreateMultipartUpload),
    ("PUT", Level::Object, "uploadId", false, Op::UploadPart),
    ("PUT", Level::Object, "uploadId", true, Op::UploadPartCopy),
    ("GET", Level::Object, "uploadId", false, Op::ListParts),
    ("POST", Level::Object, "uploadId", false, Op::CompleteMultipartUpload),
    ("DELETE", Level::Object, "uploadId", false, Op::AbortMultipartUpload),
];

/// The S3 API name of an operation this node does not serve, for the
/// error message (`PutObjectRetention`, `DeleteBucketCors`, …).
pub fn operation_name(method: &str, level: Level, sub: &str) -> String {
    let special = match (method, sub) {
        ("GET", "versions") => Some("ListObjectVersions"),
        ("POST", "select") => Some("SelectObjectContent"),
        ("POST", "restore") => Some("RestoreObject"),
        ("POST", "renameObject") | ("PUT", "renameObject") => Some("RenameObject"),
        ("GET", "session") => Some("CreateSession"),
        ("GET", "object-lock") => Some("GetObjectLockConfiguration"),
        ("PUT", "object-lock") => Some("PutObjectLockConfiguration"),
        ("GET", "publicAccessBlock") => Some("GetPublicAccessBlock"),
        ("PUT", "publicAccessBlock") => Some("PutPublicAccessBlock"),
        ("DELETE", "publicAccessBlock") => Some("DeletePublicAccessBlock"),
        ("GET", "metadataTable") => Some("GetBucketMetadataTableConfiguration"),
        ("POST", "metadataTable") => Some("CreateBucketMetadataTableConfiguration"),
        ("DELETE", "metadataTable") => Some("DeleteBucketMetadataTableConfiguration"),
        _ => None,
    };
    if let Some(s) = special {
        return s.to_string();
    }
    let verb = match method {
        "GET" => "Get",
        "PUT" => "Put",
        "DELETE" => "Delete",
        "POST" => "Post",
        "HEAD" => "Head",
        other => other,
    };
    let what = match level {
        Level::Service => "Service",
        Level::Bucket => "Bucket",
        Level::Object => "Object",
    };
    let noun: String = match sub {
        "" => String::new(),
        "acl" => "Acl".into(),
        "cors" => "Cors".into(),
        "lifecycle" => "LifecycleConfiguration".into(),
        "object-lock" => "LockConfiguration".into(),
        "legal-hold" => "LegalHold".into(),
        "intelligent-tiering" => "IntelligentTieringConfiguration".into(),
        "analytics" | "inventory" | "metrics" => format!("{}Configuration", capitalize(sub)),
        "notification" => "NotificationConfiguration".into(),
        "accelerate" => "AccelerateConfiguration".into(),
        "uploadId" => "Multipart".into(),
        other => capitalize(other),
    };
    format!("{verb}{what}{noun}")
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Classifies a request. `query` holds the decoded query parameters;
/// `copy_source`: whether `x-amz-copy-source` is present.
pub fn classify(method: &str, level: Level, query: &[(String, String)], copy_source: bool) -> Route {
    let mut sub: Option<&str> = None;
    for (name, _) in query {
        let name = name.as_str();
        if SUBRESOURCES.contains(&name) {
            match sub {
                Some(other) if other != name => {
                    return Route::NotImplemented(format!("a request with both ?{other} and ?{name}"));
                }
                _ => sub = Some(name),
            }
        } else if !is_parameter(name) {
            return Route::NotImplemented(format!("the ?{name} query parameter"));
        }
    }
    let has_upload_id = query.iter().any(|(n, _)| n == "uploadId");
    let selector = match (sub, level) {
        (Some(s), _) => s,
        (None, Level::Object) if has_upload_id => "uploadId",
        (None, _) => "",
    };
    if sub.is_some() && has_upload_id {
        return Route::NotImplemented(format!("{} with ?uploadId", operation_name(method, level, selector)));
    }
    if let Some(&(_, _, _, _, op)) = TABLE.iter().find(|(m, l, s, c, _)| *m == method && *l == level && *s == selector && *c == copy_source) {
        return Route::Serve(op);
    }
    if copy_source && TABLE.iter().any(|(m, l, s, c, _)| *m == method && *l == level && *s == selector && !*c) {
        // The header would turn a served operation into one we do not serve.
        return Route::NotImplemented(format!("{} with x-amz-copy-source", operation_name(method, level, selector)));
    }
    if selector.is_empty() || level == Level::Service {
        // A method S3 does not define on this resource (POST /bucket
        // without ?delete, PUT /, PATCH …).
        return Route::MethodNotAllowed;
    }
    Route::NotImplemented(format!("{} ({method} ?{selector})", operation_name(method, level, selector)))
}

/// The bucket a virtual-hosted–style Host names (`BUCKET.DOMAIN[:port]`
/// for a DOMAIN of `s3.domains`); None for path style.
pub fn bucket_from_host(host: &str, domains: &[String]) -> Option<String> {
    if domains.is_empty() {
        return None;
    }
    let host = host.trim();
    // A port, but not inside an IPv6 literal.
    let name = match host.rfind(':') {
        Some(i) if !host.ends_with(']') && !host[..i].contains(':') => &host[..i],
        _ => host,
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    domains.iter().find_map(|d| {
        let d = d.trim_end_matches('.').to_ascii_lowercase();
        let b = name.strip_suffix(&d)?.strip_suffix('.')?;
        (!b.is_empty()).then(|| b.to_string())
    })
}

/// Bucket and key of a virtual-hosted–style request: the whole path is the
/// key (`/` names the bucket itself).
pub fn split_virtual_host(bucket: &str, raw_path: &str) -> Result<(Option<String>, Option<String>), S3Error> {
    let p = raw_path.strip_prefix('/').unwrap_or(raw_path);
    let key = if p.is_empty() { None } else { Some(decode_path(p)?) };
    Ok((Some(bucket.to_string()), key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(names: &[&str]) -> Vec<(String, String)> {
        names.iter().map(|n| (n.to_string(), String::new())).collect()
    }

    #[test]
    fn served_rows_classify_to_their_operation() {
        for &(m, l, s, c, op) in TABLE {
            let mut query = if s.is_empty() { vec![] } else { q(&[s]) };
            if op == Op::UploadPart || op == Op::UploadPartCopy {
                query.push(("partNumber".into(), "1".into()));
            }
            assert_eq!(classify(m, l, &query, c), Route::Serve(op), "{m} {l:?} ?{s} copy={c}");
        }
    }

    #[test]
    fn every_other_subresource_and_method_is_refused() {
        for sub in SUBRESOURCES {
            for m in ["GET", "HEAD", "PUT", "POST", "DELETE"] {
                for l in [Level::Bucket, Level::Object] {
                    let served = TABLE.iter().any(|(tm, tl, ts, tc, _)| *tm == m && *tl == l && ts == sub && !tc);
                    let r = classify(m, l, &q(&[sub]), false);
                    if served {
                        assert!(matches!(r, Route::Serve(_)));
                    } else {
                        assert!(matches!(r, Route::NotImplemented(_) | Route::MethodNotAllowed), "{m} {l:?} ?{sub}: {r:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn names_say_which_operation() {
        assert_eq!(classify("DELETE", Level::Object, &q(&["retention"]), false), Route::NotImplemented("DeleteObjectRetention (DELETE ?retention)".into()));
        assert_eq!(classify("PUT", Level::Object, &q(&["legal-hold"]), false), Route::NotImplemented("PutObjectLegalHold (PUT ?legal-hold)".into()));
        assert_eq!(classify("DELETE", Level::Bucket, &q(&["cors"]), false), Route::NotImplemented("DeleteBucketCors (DELETE ?cors)".into()));
        assert_eq!(classify("DELETE", Level::Bucket, &q(&["lifecycle"]), false), Route::NotImplemented("DeleteBucketLifecycleConfiguration (DELETE ?lifecycle)".into()));
        assert_eq!(classify("GET", Level::Bucket, &q(&["versions"]), false), Route::NotImplemented("ListObjectVersions (GET ?versions)".into()));
        assert_eq!(classify("DELETE", Level::Object, &q(&["frobnicate"]), false), Route::NotImplemented("the ?frobnicate query parameter".into()));
        assert!(matches!(classify("PUT", Level::Object, &q(&["tagging", "acl"]), false), Route::NotImplemented(_)));
        assert!(matches!(classify("PUT", Level::Object, &q(&["tagging"]), true), Route::NotImplemented(_)));
        assert!(matches!(classify("POST", Level::Object, &q(&["uploads"]), true), Route::NotImplemented(_)));
    }

    #[test]
    fn virtual_hosts_name_buckets() {
        let d = vec!["s3.example.com".to_string()];
        assert_eq!(bucket_from_host("photos.s3.example.com", &d), Some("photos".into()));
        assert_eq!(bucket_from_host("My.Bucket.S3.example.com:8080", &d), Some("my.bucket".into()));
        assert_eq!(bucket_from_host("s3.example.com:8080", &d), None);
        assert_eq!(bucket_from_host("127.0.0.1:8080", &d), None);
        assert_eq!(bucket_from_host("xs3.example.com", &d), None);
        assert_eq!(bucket_from_host("photos.s3.example.com", &[]), None);
        assert_eq!(split_virtual_host("b", "/a%2Fb/c").unwrap(), (Some("b".into()), Some("a/b/c".into())));
        assert_eq!(split_virtual_host("b", "/").unwrap(), (Some("b".into()), None));
    }

    #[test]
    fn ordinary_parameters_select_nothing() {
        let query: Vec<(String, String)> =
            [("list-type", "2"), ("prefix", "a"), ("X-Amz-Signature", "x"), ("x-id", "ListObjectsV2"), ("response-content-type", "t")].iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        assert_eq!(classify("GET", Level::Bucket, &query, false), Route::Serve(Op::ListObjects));
        assert_eq!(classify("POST", Level::Bucket, &[], false), Route::MethodNotAllowed);
        assert_eq!(classify("PUT", Level::Service, &[], false), Route::MethodNotAllowed);
        assert_eq!(classify("PATCH", Level::Object, &[], false), Route::MethodNotAllowed);
    }
}
