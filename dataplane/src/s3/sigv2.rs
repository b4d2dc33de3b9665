//! AWS Signature Version 2 verification for S3: the header form
//! (`Authorization: AWS AKID:base64sig`) and the query form
//! (`?AWSAccessKeyId=..&Expires=..&Signature=..`).
//!
//! `StringToSign = VERB \n Content-MD5 \n Content-Type \n Date \n
//! CanonicalizedAmzHeaders CanonicalizedResource`, signed with
//! base64(HMAC-SHA1(secret, StringToSign)). Canonicalisation follows
//! botocore's `HmacV1Auth`/`HmacV1QueryAuth` (the v2 signer of boto and the
//! AWS CLI v1):
//! * the Date line is empty when `x-amz-date` is present (header form), and
//!   the `Expires` value in the query form;
//! * `x-amz-*` headers: names lower-cased, sorted, repeated ones joined with
//!   `,`, values trimmed; in the query form `x-amz-*` query parameters count
//!   as headers too (botocore moves them into the presigned URL);
//! * the resource is `/bucket` (virtual-hosted only) + the raw path, then the
//!   sub-resources of [`SUB_RESOURCES`] sorted by name, values decoded,
//!   `name` when sent without `=`, else `name=value` (possibly `name=`).

use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::datetime::{iso8601_millis, parse_amz_date, parse_http_date, system_time_to_unix};
use super::encoding::{ct_eq, percent_decode_lenient};
use super::error::{S3Error, S3ErrorCode};
use super::sigv4::{
    AuthOutcome, PayloadMode, SignedRequest, MAX_CLOCK_SKEW_SECS, MISSING_AUTH_MESSAGE,
};

/// Longest accepted `Authorization: AWS ...` header value.
pub const MAX_V2_AUTH_HEADER_BYTES: usize = 1024;

/// Query parameters that are part of the canonical resource: the AWS list
/// plus botocore's `QSAOfInterest` (matched on the raw, undecoded name).
#[rustfmt::skip]
pub const SUB_RESOURCES: &[&str] = &[
    "accelerate", "acl", "analytics", "cors", "defaultObjectAcl", "delete", "inventory",
    "lifecycle", "location", "logging", "metrics", "notification", "object-lock", "partNumber",
    "policy", "replication", "requestPayment", "response-cache-control",
    "response-content-disposition", "response-content-encoding", "response-content-language",
    "response-content-type", "response-expires", "restore", "select", "select-type",
    "storageClass", "tagging", "torrent", "uploadId", "uploads", "versionId", "versioning",
    "versions", "website",
];

fn header<'a>(req: &SignedRequest<'a>, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn decode(s: &str) -> String {
    String::from_utf8_lossy(&percent_decode_lenient(s.as_bytes(), false)).into_owned()
}

/// Raw query parameters: (name, value or `None` when sent without `=`).
fn params(raw_query: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (p, None),
        })
}

fn has_param(req: &SignedRequest<'_>, name: &str) -> bool {
    params(req.raw_query).any(|(n, _)| decode(n) == name)
}

fn is_query_form(req: &SignedRequest<'_>) -> bool {
    has_param(req, "AWSAccessKeyId") && has_param(req, "Signature")
}

/// Whether the request is signed with SigV2 (header `Authorization: AWS ...`
/// or query with AWSAccessKeyId+Signature).
pub fn is_v2(req: &SignedRequest<'_>) -> bool {
    header(req, "authorization").is_some_and(|a| a.trim_start().starts_with("AWS "))
        || is_query_form(req)
}

fn hmac_sha1(secret: &str, data: &str) -> [u8; 20] {
    let mut m =
        <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key");
    m.update(data.as_bytes());
    m.finalize().into_bytes().into()
}

/// Signs (for tests): base64(HMAC-SHA1(secret, string_to_sign)).
pub fn sign(secret: &str, string_to_sign: &str) -> String {
    B64.encode(hmac_sha1(secret, string_to_sign))
}

/// Computes the string to sign (pub for tests and for the
/// SignatureDoesNotMatch message). `date_or_expires` is the Date line.
pub fn string_to_sign(
    req: &SignedRequest<'_>,
    bucket_from_host: Option<&str>,
    date_or_expires: &str,
) -> String {
    let query_form = header(req, "authorization").is_none() && is_query_form(req);
    // Decoded query parameters (name lower-cased) that stand for headers.
    let query_headers: Vec<(String, String)> = if query_form {
        params(req.raw_query)
            .map(|(n, v)| (decode(n).to_ascii_lowercase(), decode(v.unwrap_or(""))))
            .filter(|(n, _)| n.starts_with("x-amz-") || n == "content-md5" || n == "content-type")
            .collect()
    } else {
        Vec::new()
    };
    let standard = |name: &str| -> String {
        header(req, name)
            .or_else(|| {
                query_headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str())
            })
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let mut s = String::with_capacity(128 + req.raw_path.len() + req.raw_query.len());
    s.push_str(req.method);
    s.push('\n');
    s.push_str(&standard("content-md5"));
    s.push('\n');
    s.push_str(&standard("content-type"));
    s.push('\n');
    s.push_str(date_or_expires);
    s.push('\n');

    // CanonicalizedAmzHeaders (stable sort keeps the order of repeats).
    let mut amz: Vec<(String, &str)> = req
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.as_str()))
        .chain(query_headers.iter().map(|(n, v)| (n.clone(), v.as_str())))
        .filter(|(n, _)| n.starts_with("x-amz-"))
        .collect();
    amz.sort_by(|a, b| a.0.cmp(&b.0));
    for (i, (n, v)) in amz.iter().enumerate() {
        if i > 0 && amz[i - 1].0 == *n {
            s.push(',');
        } else {
            s.push_str(n);
            s.push(':');
        }
        s.push_str(v.trim());
        if amz.get(i + 1).map(|next| &next.0) != Some(n) {
            s.push('\n');
        }
    }

    // CanonicalizedResource.
    if let Some(b) = bucket_from_host {
        s.push('/');
        s.push_str(b);
    }
    s.push_str(if req.raw_path.is_empty() {
        "/"
    } else {
        req.raw_path
    });
    let mut sub: Vec<(&str, Option<String>)> = params(req.raw_query)
        .filter(|(n, _)| SUB_RESOURCES.contains(n))
        .map(|(n, v)| (n, v.map(decode)))
        .collect();
    sub.sort_by(|a, b| a.0.cmp(b.0));
    for (i, (n, v)) in sub.iter().enumerate() {
        s.push(if i == 0 { '?' } else { '&' });
        s.push_str(n);
        if let Some(v) = v {
            s.push('=');
            s.push_str(v);
        }
    }
    s
}

fn invalid_argument(msg: impl Into<String>, name: &'static str, value: &str) -> S3Error {
    S3Error::new(S3ErrorCode::InvalidArgument, msg)
        .with_extra("ArgumentName", name)
        .with_extra("ArgumentValue", value.to_string())
}

fn lookup_secret(
    secret_for: &dyn Fn(&str) -> Option<String>,
    access_key: &str,
) -> Result<String, S3Error> {
    secret_for(access_key).ok_or_else(|| {
        S3Error::from_code(S3ErrorCode::InvalidAccessKeyId).with_extra("AWSAccessKeyId", access_key)
    })
}

/// Checks the signature over the request's resource. botocore signs a
/// path-style request that names only a bucket (`/bucket`) with a trailing
/// slash (`/bucket/`), so that form is accepted too.
fn check_request(req: &SignedRequest<'_>, bucket_from_host: Option<&str>, date_line: &str, secret: &str, provided: &str, ak: &str) -> Result<(), S3Error> {
    let first = check_signature(string_to_sign(req, bucket_from_host, date_line), secret, provided, ak);
    let bucket_only = bucket_from_host.is_none() && req.raw_path.len() > 1 && req.raw_path.starts_with('/') && !req.raw_path[1..].contains('/');
    if first.is_ok() || !bucket_only {
        return first;
    }
    let slashed = format!("{}/", req.raw_path);
    let alt = SignedRequest { raw_path: &slashed, ..*req };
    check_signature(string_to_sign(&alt, None, date_line), secret, provided, ak).or(first)
}

fn check_signature(sts: String, secret: &str, provided: &str, ak: &str) -> Result<(), S3Error> {
    let expected = hmac_sha1(secret, &sts);
    let ok = B64
        .decode(provided.trim())
        .is_ok_and(|p| ct_eq(&p, &expected));
    if ok {
        return Ok(());
    }
    let message = format!(
        "{} StringToSign: \"{}\"",
        S3ErrorCode::SignatureDoesNotMatch.default_message(),
        sts.replace('\n', "\\n")
    );
    Err(S3Error::new(S3ErrorCode::SignatureDoesNotMatch, message)
        .with_extra("AWSAccessKeyId", ak)
        .with_extra("StringToSign", sts)
        .with_extra("SignatureProvided", provided))
}

/// An HTTP date, also accepting a numeric zone (`+0000`, as in the AWS
/// examples and Python's `formatdate()`) or `UTC` instead of `GMT`.
fn parse_v2_date(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Some(t) = parse_http_date(s).or_else(|| parse_amz_date(s)) {
        return Some(t);
    }
    let (head, zone) = s.rsplit_once(' ')?;
    let offset = match zone.as_bytes() {
        b"UTC" | b"UT" | b"Z" => 0,
        [sign @ (b'+' | b'-'), d @ ..] if d.len() == 4 && d.iter().all(u8::is_ascii_digit) => {
            let n = |i: usize| i64::from(d[i] - b'0');
            let secs = (n(0) * 10 + n(1)) * 3600 + (n(2) * 10 + n(3)) * 60;
            if *sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    Some(parse_http_date(&format!("{head} GMT"))? - offset)
}

/// Verifies a SigV2 request. `bucket_from_host`: Some(bucket) when the
/// bucket was named by a virtual-hosted Host header (then the canonical
/// resource starts with "/bucket"); None for path-style.
pub fn verify(
    req: &SignedRequest<'_>,
    bucket_from_host: Option<&str>,
    secret_for: &dyn Fn(&str) -> Option<String>,
    now: SystemTime,
) -> Result<AuthOutcome, S3Error> {
    let now = system_time_to_unix(now);
    let mut auths = req.headers.iter().filter(|(n, _)| n == "authorization");
    let auth = auths.next().map(|(_, v)| v.as_str());
    if auth.is_some() && auths.next().is_some() {
        return Err(S3Error::new(
            S3ErrorCode::InvalidArgument,
            "Only one Authorization header may be specified.",
        ));
    }
    let query_form = is_query_form(req);
    let v4_query = ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"]
        .iter()
        .any(|n| has_param(req, n));
    if (auth.is_some() && (query_form || v4_query)) || (query_form && v4_query) {
        return Err(S3Error::new(
            S3ErrorCode::InvalidArgument,
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
        )
        .with_extra("ArgumentName", "Authorization"));
    }
    match auth {
        Some(a) => verify_header(req, bucket_from_host, a, secret_for, now),
        None if query_form => verify_query(req, bucket_from_host, secret_for, now),
        None => Err(S3Error::new(
            S3ErrorCode::AccessDenied,
            MISSING_AUTH_MESSAGE,
        )),
    }
}

fn verify_header(
    req: &SignedRequest<'_>,
    bucket_from_host: Option<&str>,
    auth: &str,
    secret_for: &dyn Fn(&str) -> Option<String>,
    now: i64,
) -> Result<AuthOutcome, S3Error> {
    if auth.len() > MAX_V2_AUTH_HEADER_BYTES {
        return Err(S3Error::new(
            S3ErrorCode::InvalidArgument,
            format!("The Authorization header is longer than {MAX_V2_AUTH_HEADER_BYTES} bytes."),
        )
        .with_extra("ArgumentName", "Authorization"));
    }
    let Some(rest) = auth.trim().strip_prefix("AWS ") else {
        return Err(invalid_argument(
            "Unsupported Authorization Type",
            "Authorization",
            auth,
        ));
    };
    let (ak, sig) = match rest.trim().rsplit_once(':') {
        Some((ak, sig)) if !ak.is_empty() && !sig.is_empty() => (ak, sig),
        _ => {
            return Err(invalid_argument(
                "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature",
                "Authorization",
                auth,
            ))
        }
    };
    // x-amz-date wins over Date and blanks the Date line.
    let (date_line, time_str) = match (header(req, "x-amz-date"), header(req, "date")) {
        (Some(d), _) => ("", Some(d)),
        (None, Some(d)) => (d.trim(), Some(d)),
        (None, None) => ("", None),
    };
    let Some(t) = time_str.and_then(parse_v2_date) else {
        return Err(S3Error::new(
            S3ErrorCode::AccessDenied,
            "AWS authentication requires a valid Date or x-amz-date header",
        ));
    };
    let secret = lookup_secret(secret_for, ak)?;
    if (now - t).abs() > MAX_CLOCK_SKEW_SECS {
        return Err(S3Error::from_code(S3ErrorCode::RequestTimeTooSkewed)
            .with_extra("RequestTime", time_str.unwrap_or("").trim().to_string())
            .with_extra("ServerTime", iso8601_millis(now * 1000))
            .with_extra(
                "MaxAllowedSkewMilliseconds",
                (MAX_CLOCK_SKEW_SECS * 1000).to_string(),
            ));
    }
    check_request(req, bucket_from_host, date_line, &secret, sig, ak)?;
    Ok(AuthOutcome {
        access_key: ak.to_string(),
        region: String::new(),
        presigned: false,
        payload: PayloadMode::Unsigned,
    })
}

fn verify_query(
    req: &SignedRequest<'_>,
    bucket_from_host: Option<&str>,
    secret_for: &dyn Fn(&str) -> Option<String>,
    now: i64,
) -> Result<AuthOutcome, S3Error> {
    let (mut ak, mut sig, mut expires) = (None, None, None);
    for (n, v) in params(req.raw_query) {
        let n = decode(n);
        let slot = match n.as_str() {
            "AWSAccessKeyId" => &mut ak,
            "Signature" => &mut sig,
            "Expires" => &mut expires,
            _ => continue,
        };
        if slot.replace(decode(v.unwrap_or(""))).is_some() {
            return Err(S3Error::new(
                S3ErrorCode::InvalidArgument,
                format!("The {n} query parameter is specified more than once."),
            ));
        }
    }
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    let (Some(ak), Some(sig), Some(expires)) = (non_empty(ak), non_empty(sig), expires) else {
        return Err(S3Error::new(
            S3ErrorCode::AccessDenied,
            "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters",
        ));
    };
    if expires.is_empty() || !expires.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid_argument(
            format!("Invalid date (should be seconds since epoch): {expires}"),
            "Expires",
            &expires,
        ));
    }
    let exp: i64 = expires.parse().unwrap_or(i64::MAX);
    let secret = lookup_secret(secret_for, &ak)?;
    if now > exp {
        return Err(
            S3Error::new(S3ErrorCode::AccessDenied, "Request has expired")
                .with_extra("Expires", iso8601_millis(exp * 1000))
                .with_extra("ServerTime", iso8601_millis(now * 1000)),
        );
    }
    check_request(req, bucket_from_host, &expires, &secret, &sig, &ak)?;
    Ok(AuthOutcome {
        access_key: ak,
        region: String::new(),
        presigned: true,
        payload: PayloadMode::Unsigned,
    })
}

#[cfg(test)]
mod tests {
    use super::super::error::S3ErrorCode as C;
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    const AWS_AK: &str = "AKIAIOSFODNN7EXAMPLE";
    const AWS_SK: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    // The BOTO_* vectors were produced by botocore 1.43 HmacV1Auth / HmacV1QueryAuth.
    const BOTO_AK: &str = "AKIDV2BOTOEXAMPLE";
    const BOTO_SK: &str = "s3cr3t/V2+boto/EXAMPLEKEY";
    const BOTO_DATE: &str = "Tue, 02 Jan 2024 03:04:05 GMT";
    const BOTO_NOW: u64 = 1_704_164_645;
    const AUTH: &str = "authorization";
    const PART_PATH: &str = "/bucket/my%20key.txt";
    const PART_QUERY: &str = "uploadId=abc%2Fdef%3D&partNumber=2";

    fn secrets(ak: &str) -> Option<String> {
        match ak {
            AWS_AK => Some(AWS_SK.into()),
            BOTO_AK => Some(BOTO_SK.into()),
            _ => None,
        }
    }
    fn hdrs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn req<'a>(m: &'a str, p: &'a str, q: &'a str, h: &'a [(String, String)]) -> SignedRequest<'a> {
        let (method, raw_path, raw_query, headers) = (m, p, q, h);
        SignedRequest {
            method,
            raw_path,
            raw_query,
            headers,
        }
    }
    fn check(
        r: &SignedRequest<'_>,
        bucket: Option<&str>,
        now: u64,
    ) -> Result<AuthOutcome, S3Error> {
        verify(r, bucket, &secrets, UNIX_EPOCH + Duration::from_secs(now))
    }
    fn code(r: &SignedRequest<'_>, bucket: Option<&str>, now: u64) -> S3ErrorCode {
        check(r, bucket, now).unwrap_err().code
    }
    fn part_headers() -> Vec<(String, String)> {
        hdrs(&[
            ("host", "127.0.0.1:9000"),
            ("content-md5", "1B2M2Y8AsgTpgAmY7PhCfg=="),
            ("content-type", "text/plain"),
            ("x-amz-meta-color", "  blue "),
            ("x-amz-meta-dup", "one"),
            ("x-amz-meta-dup", "two"),
            ("x-amz-acl", "private"),
            ("date", BOTO_DATE),
            (AUTH, "AWS AKIDV2BOTOEXAMPLE:yz/tNHyXW9TpKIVB5HRuG0T1MtQ="),
        ])
    }

    #[test]
    fn aws_doc_example() {
        let date = "Tue, 27 Mar 2007 19:36:42 +0000";
        let h = hdrs(&[
            ("host", "johnsmith.s3.amazonaws.com"),
            ("date", date),
            (
                AUTH,
                "AWS AKIAIOSFODNN7EXAMPLE:bWq2s1WEIj+Ydj0vQ697zp+IXMU=",
            ),
        ]);
        let r = req("GET", "/photos/puppy.jpg", "", &h);
        let sts = string_to_sign(&r, Some("johnsmith"), date);
        assert_eq!(sts, format!("GET\n\n\n{date}\n/johnsmith/photos/puppy.jpg"));
        assert_eq!(sign(AWS_SK, &sts), "bWq2s1WEIj+Ydj0vQ697zp+IXMU=");
        assert!(is_v2(&r));
        let out = check(&r, Some("johnsmith"), 1_175_024_202).unwrap();
        assert_eq!((out.access_key.as_str(), out.region.as_str()), (AWS_AK, ""));
        assert!(!out.presigned && matches!(out.payload, PayloadMode::Unsigned));
        // Path-style: the resource no longer matches.
        assert_eq!(code(&r, None, 1_175_024_202), C::SignatureDoesNotMatch);
    }

    #[test]
    fn botocore_header_vectors() {
        let h = part_headers();
        let r = req("PUT", PART_PATH, PART_QUERY, &h);
        assert_eq!(
            string_to_sign(&r, None, BOTO_DATE),
            "PUT\n1B2M2Y8AsgTpgAmY7PhCfg==\ntext/plain\nTue, 02 Jan 2024 03:04:05 GMT\nx-amz-acl:private\nx-amz-meta-color:blue\nx-amz-meta-dup:one,two\n/bucket/my%20key.txt?partNumber=2&uploadId=abc/def="
        );
        check(&r, None, BOTO_NOW).unwrap();
        // Tampering with a meta header, the sub-resources or the path fails.
        let mut h2 = h.clone();
        h2[3].1 = "red".into();
        for r in [
            req("PUT", PART_PATH, PART_QUERY, &h2),
            req("PUT", PART_PATH, "uploadId=abc&partNumber=2", &h),
            req("PUT", "/bucket/my key.txt", PART_QUERY, &h),
        ] {
            assert_eq!(code(&r, None, BOTO_NOW), C::SignatureDoesNotMatch);
        }
        // Virtual-hosted GET: sub-resources, a bare `acl`, an ignored `foo`.
        let h = hdrs(&[
            ("host", "bucket.s3.example.com"),
            ("date", BOTO_DATE),
            (AUTH, "AWS AKIDV2BOTOEXAMPLE:/whee0Kv6iqloNQZPZZruRLgSJY="),
        ]);
        let q = "versionId=3%2F4&response-content-type=text%2Fplain&foo=bar&acl";
        let r = req("GET", "/photos/a+b%21.jpg", q, &h);
        assert_eq!(
            string_to_sign(&r, Some("bucket"), BOTO_DATE),
            "GET\n\n\nTue, 02 Jan 2024 03:04:05 GMT\n/bucket/photos/a+b%21.jpg?acl&response-content-type=text/plain&versionId=3/4"
        );
        check(&r, Some("bucket"), BOTO_NOW).unwrap();
    }

    #[test]
    fn botocore_presigned_vector() {
        // HmacV1QueryAuth moved the x-amz-acl header into the query.
        let q = "partNumber=2&uploadId=u%2B1&AWSAccessKeyId=AKIDV2BOTOEXAMPLE&Signature=w8U8ed%2BAO1ksIUTAaXrdkpJ4%2Fps%3D&x-amz-acl=public-read&Expires=1704168245";
        let h = hdrs(&[("host", "127.0.0.1:9000")]);
        let r = req("PUT", "/bucket/obj", q, &h);
        assert!(is_v2(&r));
        assert_eq!(
            string_to_sign(&r, None, "1704168245"),
            "PUT\n\n\n1704168245\nx-amz-acl:public-read\n/bucket/obj?partNumber=2&uploadId=u+1"
        );
        for now in [BOTO_NOW, 1_704_168_245] {
            let out = check(&r, None, now).unwrap();
            assert!(out.presigned && matches!(out.payload, PayloadMode::Unsigned));
            assert_eq!(
                (out.access_key.as_str(), out.region.as_str()),
                (BOTO_AK, "")
            );
        }
        let e = check(&r, None, 1_704_168_246).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (C::AccessDenied, "Request has expired")
        );
        let bad_sig = q.replace("w8U8ed", "x8U8ed");
        let unknown = q.replace("AKIDV2BOTOEXAMPLE", "AKIDUNKNOWN");
        let s = "AWSAccessKeyId=AKIDV2BOTOEXAMPLE&Signature=x";
        for (q, c) in [
            (bad_sig, C::SignatureDoesNotMatch),
            (unknown, C::InvalidAccessKeyId),
            (format!("{s}&Expires=soon"), C::InvalidArgument),
            (format!("{s}&Expires=-1"), C::InvalidArgument),
            (s.to_string(), C::AccessDenied),
            (format!("{s}&Expires=1&Expires=2"), C::InvalidArgument),
            (
                format!("{s}&Expires=1&X-Amz-Algorithm=AWS4-HMAC-SHA256"),
                C::InvalidArgument,
            ),
        ] {
            assert_eq!(
                code(&req("PUT", "/bucket/obj", &q, &h), None, BOTO_NOW),
                c,
                "{q}"
            );
        }
    }

    #[test]
    fn x_amz_date_blanks_date_line() {
        // Signature computed with Python's hmac over the asserted StringToSign.
        let h = hdrs(&[
            ("date", "Thu, 01 Jan 1970 00:00:00 GMT"),
            ("x-amz-date", BOTO_DATE),
            (AUTH, "AWS AKIDV2BOTOEXAMPLE:4qw5hQ5qr0BkDIPIk8pJw1zYvQc="),
        ]);
        let r = req("GET", "/bucket/k", "", &h);
        let want = "GET\n\n\n\nx-amz-date:Tue, 02 Jan 2024 03:04:05 GMT\n/bucket/k";
        assert_eq!(string_to_sign(&r, None, ""), want);
        check(&r, None, BOTO_NOW).unwrap();
    }

    #[test]
    fn header_errors() {
        let h = part_headers();
        let r = req("PUT", PART_PATH, PART_QUERY, &h);
        let wrong = |_: &str| Some("not-the-secret".to_string());
        let e = verify(&r, None, &wrong, UNIX_EPOCH + Duration::from_secs(BOTO_NOW)).unwrap_err();
        assert_eq!((e.code, e.status()), (C::SignatureDoesNotMatch, 403));
        assert!(
            e.message
                .contains("\"PUT\\n1B2M2Y8AsgTpgAmY7PhCfg==\\ntext/plain\\n"),
            "{}",
            e.message
        );
        assert!(e.extra("StringToSign").unwrap().starts_with("PUT\n1B2M2Y8"));
        let mut h2 = h.clone();
        h2[8].1 = "AWS AKIDUNKNOWN:yz/tNHyXW9TpKIVB5HRuG0T1MtQ=".into();
        let r2 = req("PUT", PART_PATH, PART_QUERY, &h2);
        assert_eq!(code(&r2, None, BOTO_NOW), C::InvalidAccessKeyId);
        // Clock skew: 15 minutes either way is fine, one more second is not.
        let skew = MAX_CLOCK_SKEW_SECS as u64;
        check(&r, None, BOTO_NOW + skew).unwrap();
        check(&r, None, BOTO_NOW - skew).unwrap();
        for now in [BOTO_NOW + skew + 1, BOTO_NOW - skew - 1] {
            let e = check(&r, None, now).unwrap_err();
            assert_eq!(e.code, C::RequestTimeTooSkewed);
            assert_eq!(e.extra("RequestTime"), Some(BOTO_DATE));
        }
        // Missing or unparseable date.
        let mut h2: Vec<_> = h.iter().filter(|(n, _)| n != "date").cloned().collect();
        assert_eq!(
            code(&req("PUT", PART_PATH, PART_QUERY, &h2), None, BOTO_NOW),
            C::AccessDenied
        );
        h2.push(("date".into(), "yesterday".into()));
        assert_eq!(
            code(&req("PUT", PART_PATH, PART_QUERY, &h2), None, BOTO_NOW),
            C::AccessDenied
        );
        // Malformed or oversized values, conflicting mechanisms, bad base64.
        let long = format!("AWS {BOTO_AK}:{}", "A".repeat(MAX_V2_AUTH_HEADER_BYTES));
        for (auth, q, c) in [
            ("AWS AKIDV2BOTOEXAMPLE", "", C::InvalidArgument),
            ("AWS :sig", "", C::InvalidArgument),
            ("AWS AKIDV2BOTOEXAMPLE:", "", C::InvalidArgument),
            (long.as_str(), "", C::InvalidArgument),
            (
                "AWS AKIDV2BOTOEXAMPLE:x",
                "AWSAccessKeyId=a&Signature=b",
                C::InvalidArgument,
            ),
            ("AWS AKIDV2BOTOEXAMPLE:%%%", "", C::SignatureDoesNotMatch),
        ] {
            let h2 = hdrs(&[("date", BOTO_DATE), (AUTH, auth)]);
            assert_eq!(code(&req("GET", "/", q, &h2), None, BOTO_NOW), c, "{auth}");
        }
    }

    #[test]
    fn detection_and_canonical_details() {
        let v4 = hdrs(&[(AUTH, "AWS4-HMAC-SHA256 Credential=a/b/c/s3/aws4_request")]);
        assert!(!is_v2(&req("GET", "/", "", &v4)));
        assert!(!is_v2(&req("GET", "/", "Signature=x", &[])));
        assert!(is_v2(&req("GET", "/", "AWSAccessKeyId=a&Signature=x", &[])));
        assert_eq!(code(&req("GET", "/", "", &[]), None, 0), C::AccessDenied);
        // `?uploads` stays bare, `acl=` keeps its `=`, unknown names are
        // dropped, sub-resource names are matched undecoded.
        let r = req("POST", "", "uploads&x=1&acl=&tagging&upload%49d=z", &[]);
        assert_eq!(
            string_to_sign(&r, Some("b"), "D"),
            "POST\n\n\nD\n/b/?acl=&tagging&uploads"
        );
        // Numeric time zones as in the AWS examples and Python's formatdate().
        assert_eq!(
            parse_v2_date("Tue, 02 Jan 2024 05:04:05 +0200"),
            Some(1_704_164_645)
        );
        assert_eq!(
            parse_v2_date("Tue, 02 Jan 2024 03:04:05 -0000"),
            Some(1_704_164_645)
        );
        assert_eq!(parse_v2_date("Tue, 02 Jan 2024 03:04:05 +02"), None);
    }
}
