//! Shared by the `http` and `sigv4` targets: a fixed credential and clock,
//! request builders that sign with dataplane's own client-side functions,
//! the streaming-body driver, and an independent re-computation of the
//! signature a request should carry.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dataplane::s3::checksum::{checksum_base64, sha256, ChecksumAlgorithm};
use dataplane::s3::datetime::{amz_date, parse_amz_date, parse_http_date, unix_from_parts};
use dataplane::s3::encoding::{hex_decode_array, hex_lower, percent_decode_lenient, uri_encode};
use dataplane::s3::error::S3Error;
use dataplane::s3::http::{parse_head, BodyFraming, ChunkedDecoder, RequestHead, Step};
use dataplane::s3::sigv4::{
    canonical_query_string, canonical_request, sign_authorization, signing_key, string_to_sign, ChunkVerifier, SignedRequest, ALGORITHM, UNSIGNED_PAYLOAD,
};
use hmac::{Hmac, Mac};

pub const AK: &str = "AKIAFUZZFUZZFUZZ0001";
pub const SK: &str = "fuzz/secret+key/0123456789abcdefghijKLMN";
pub const REGION: &str = "us-east-1";
/// The clock every request is signed at and verified against.
pub const AMZ_DATE: &str = "20240501T120000Z";
pub const HOST: &str = "s3.fuzz.test:9000";

pub fn now_secs() -> i64 {
    unix_from_parts(2024, 5, 1, 12, 0, 0).unwrap()
}

pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(now_secs() as u64)
}

pub fn secret_for(ak: &str) -> Option<String> {
    (ak == AK).then(|| SK.to_string())
}

pub fn hmac256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().into()
}

/// Serialises a request: request line, headers as given, blank line, body.
pub fn request_bytes(method: &str, target: &str, version: &str, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut s = format!("{method} {target} {version}\r\n");
    for (n, v) in headers {
        s.push_str(&format!("{n}: {v}\r\n"));
    }
    s.push_str("\r\n");
    let mut out = s.into_bytes();
    out.extend_from_slice(body);
    out
}

pub fn h(n: &str, v: &str) -> (String, String) {
    (n.to_string(), v.to_string())
}

/// A header-signed request (`Authorization`), signed by
/// `sigv4::sign_authorization` (host, x-amz-* and content-type/md5 signed).
/// Returns the request and the hex signature (the aws-chunked seed).
pub fn signed(method: &str, raw_path: &str, raw_query: &str, payload_hash: &str, extra: &[(String, String)], body: &[u8]) -> (Vec<u8>, String) {
    let mut headers = vec![h("host", HOST), h("x-amz-date", AMZ_DATE), h("x-amz-content-sha256", payload_hash)];
    headers.extend_from_slice(extra);
    let req = SignedRequest { method, raw_path, raw_query, headers: &headers };
    let auth = sign_authorization(&req, AK, SK, REGION).expect("signs");
    let sig = auth.rsplit("Signature=").next().unwrap().to_string();
    headers.push(h("authorization", &auth));
    let target = if raw_query.is_empty() { raw_path.to_string() } else { format!("{raw_path}?{raw_query}") };
    (request_bytes(method, &target, "HTTP/1.1", &headers, body), sig)
}

/// A presigned-URL request: the signature is in `X-Amz-Signature`.
pub fn presigned(date: &str, method: &str, raw_path: &str, extra_query: &str, expires: u32, headers: &[(String, String)], signed_headers: &[&str], payload_hash: Option<&str>, body: &[u8]) -> Vec<u8> {
    let cred = uri_encode(format!("{AK}/{}/{REGION}/s3/aws4_request", &date[..8]).as_bytes(), false);
    let mut q = format!(
        "X-Amz-Algorithm={ALGORITHM}&X-Amz-Credential={cred}&X-Amz-Date={date}&X-Amz-Expires={expires}&X-Amz-SignedHeaders={}",
        uri_encode(signed_headers.join(";").as_bytes(), false)
    );
    if let Some(p) = payload_hash {
        q.push_str(&format!("&X-Amz-Content-Sha256={p}"));
    }
    if !extra_query.is_empty() {
        q = format!("{extra_query}&{q}");
    }
    let cq = canonical_query_string(&q, true);
    let cr = canonical_request(method, raw_path, &cq, headers, signed_headers, payload_hash.unwrap_or(UNSIGNED_PAYLOAD));
    let scope = format!("{}/{REGION}/s3/aws4_request", &date[..8]);
    let sig = hmac256(&signing_key(SK, &date[..8], REGION), string_to_sign(date, &scope, &cr).as_bytes());
    q.push_str(&format!("&X-Amz-Signature={}", hex_lower(&sig)));
    request_bytes(method, &format!("{raw_path}?{q}"), "HTTP/1.1", headers, body)
}

/// An aws-chunked body with chunk signatures chained from `seed_hex`
/// (`verifier = None`: unsigned chunks). Trailers are appended after the
/// final chunk; in signed mode with `sign_trailer` the trailer signature too.
pub fn aws_chunked(seed_hex: Option<&str>, data: &[u8], chunk: usize, trailers: &[(&str, String)], sign_trailer: bool) -> Vec<u8> {
    let mut v = seed_hex.map(|s| ChunkVerifier::from_secret(SK, AMZ_DATE, REGION, hex_decode_array::<32>(s.as_bytes()).unwrap()));
    let mut out = Vec::new();
    let mut pieces: Vec<&[u8]> = data.chunks(chunk.max(1)).collect();
    pieces.push(&[]);
    for p in pieces {
        out.extend_from_slice(format!("{:x}", p.len()).as_bytes());
        if let Some(v) = &mut v {
            out.extend_from_slice(format!(";chunk-signature={}", hex_lower(&v.sign_chunk(&sha256(p)))).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if !p.is_empty() {
            out.extend_from_slice(p);
            out.extend_from_slice(b"\r\n");
        }
    }
    let mut canonical = Vec::new();
    for (n, val) in trailers {
        out.extend_from_slice(format!("{n}:{val}\r\n").as_bytes());
        canonical.extend_from_slice(format!("{n}:{val}\n").as_bytes());
    }
    if let (Some(v), true) = (&mut v, sign_trailer) {
        out.extend_from_slice(format!("x-amz-trailer-signature:{}\r\n", hex_lower(&v.sign_trailer(&canonical))).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Wraps `body` in `Transfer-Encoding: chunked` framing.
pub fn te_chunked(body: &[u8], chunk: usize, trailer: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    for p in body.chunks(chunk.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n");
    if let Some(t) = trailer {
        out.extend_from_slice(t.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// How a streaming decode ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    Done { consumed: usize, trailers: Vec<(String, String)> },
    /// Input ran out with the body unfinished.
    NeedMore,
    Error(String),
}

pub fn s3_class(e: &S3Error) -> String {
    let m = e.message.strip_prefix("The authorization header is malformed; ").unwrap_or(&e.message);
    let words: Vec<&str> = m.split_whitespace().take(5).collect();
    format!("{} {}", e.code_str(), words.join(" "))
}

/// The decoded data, the end state, and where in `input` the first data
/// byte was.
pub struct Decoded {
    pub data: Vec<u8>,
    pub end: End,
    pub first_data_at: Option<usize>,
}

/// Drives a sans-IO body decoder over `input`, offering it `step` more
/// bytes each time it asks for more (`step >= input.len()`: all at once),
/// and checks the `Step` contract on the way.
pub fn drive<D>(dec: &mut D, next: fn(&mut D, &[u8]) -> Result<Step, S3Error>, input: &[u8], step: usize) -> Decoded {
    let step = step.max(1);
    let mut pos = 0usize;
    let mut limit = step.min(input.len());
    let mut out = Decoded { data: Vec::new(), end: End::NeedMore, first_data_at: None };
    let mut rounds = 0usize;
    loop {
        rounds += 1;
        assert!(rounds <= 2 * input.len() + 16, "decoder makes no progress ({} bytes, step {step})", input.len());
        let win = &input[pos..limit];
        match next(dec, win) {
            Err(e) => {
                out.end = End::Error(format!("{} {}", e.code_str(), e.message));
                return out;
            }
            Ok(Step::Data { range, consumed }) => {
                assert!(range.start < range.end && range.end <= win.len(), "data range {range:?} outside a window of {}", win.len());
                assert_eq!(consumed, range.end, "Data: consumed != range.end");
                out.first_data_at.get_or_insert(pos + range.start);
                out.data.extend_from_slice(&win[range]);
                pos += consumed;
            }
            Ok(Step::NeedMore { consumed }) => {
                assert_eq!(consumed, win.len(), "NeedMore must absorb the whole window");
                pos += consumed;
                if limit == input.len() {
                    return out;
                }
                limit = (limit + step).min(input.len());
            }
            Ok(Step::Done { consumed, trailers }) => {
                assert!(consumed <= win.len());
                out.end = End::Done { consumed: pos + consumed, trailers };
                return out;
            }
        }
    }
}

fn chunked_next(d: &mut ChunkedDecoder, b: &[u8]) -> Result<Step, S3Error> {
    d.next(b)
}

/// The transfer-decoded body of a request: (body bytes, how it ended).
pub fn transfer_decode(head: &RequestHead, rest: &[u8]) -> Option<(Vec<u8>, End)> {
    match head.body_framing() {
        Ok(BodyFraming::ContentLength(n)) => {
            let n = (n.min(rest.len() as u64)) as usize;
            Some((rest[..n].to_vec(), End::Done { consumed: n, trailers: vec![] }))
        }
        Ok(BodyFraming::None) => Some((Vec::new(), End::Done { consumed: 0, trailers: vec![] })),
        Ok(BodyFraming::Chunked) => {
            let d = drive(&mut ChunkedDecoder::new(), chunked_next, rest, rest.len());
            Some((d.data, d.end))
        }
        Err(_) => None,
    }
}

pub fn chunked_next_fn() -> fn(&mut ChunkedDecoder, &[u8]) -> Result<Step, S3Error> {
    chunked_next
}

/// What the signature of a request covers, extracted independently of
/// `sigv4::verify` (mirroring its rules).
#[derive(Debug, Clone)]
pub struct SigParts {
    pub presigned: bool,
    pub access_key: String,
    pub date8: String,
    pub region: String,
    pub signed_headers: Vec<String>,
    pub amz_date: String,
    pub payload_hash: String,
    pub provided: String,
}

fn header<'a>(head: &'a RequestHead, name: &str) -> Option<&'a str> {
    head.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn split_credential(cred: &str) -> Option<(String, String, String)> {
    let parts: Vec<&str> = cred.rsplitn(5, '/').collect();
    if parts.len() != 5 || parts[0] != "aws4_request" || parts[1] != "s3" {
        return None;
    }
    Some((parts[4].to_string(), parts[3].to_string(), parts[2].to_string()))
}

pub fn sig_parts(head: &RequestHead) -> Option<SigParts> {
    let auths: Vec<&str> = head.headers.iter().filter(|(n, _)| n == "authorization").map(|(_, v)| v.as_str()).collect();
    if auths.len() == 1 {
        let auth = auths[0].trim();
        let (alg, rest) = auth.split_once([' ', '\t'])?;
        if alg != ALGORITHM {
            return None;
        }
        let (mut cred, mut sh, mut sig) = (None, None, None);
        for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=')?;
            match k.trim() {
                "Credential" => cred = Some(v.trim()),
                "SignedHeaders" => sh = Some(v.trim()),
                "Signature" => sig = Some(v.trim()),
                _ => return None,
            }
        }
        let (ak, date8, region) = split_credential(cred?)?;
        let amz = match header(head, "x-amz-date") {
            Some(d) => d.to_string(),
            None => amz_date(parse_http_date(header(head, "date")?)?),
        };
        return Some(SigParts {
            presigned: false,
            access_key: ak,
            date8,
            region,
            signed_headers: sh?.split(';').map(str::to_string).collect(),
            amz_date: amz,
            payload_hash: header(head, "x-amz-content-sha256")?.to_string(),
            provided: sig?.to_string(),
        });
    }
    if !auths.is_empty() {
        return None;
    }
    let dec = |s: &str| String::from_utf8_lossy(&percent_decode_lenient(s.as_bytes(), false)).into_owned();
    let params: Vec<(String, String)> = head
        .raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            (dec(n), dec(v))
        })
        .collect();
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let (ak, date8, region) = split_credential(&get("X-Amz-Credential")?)?;
    let signed_headers: Vec<String> = get("X-Amz-SignedHeaders")?.split(';').map(str::to_string).collect();
    let payload_hash = get("X-Amz-Content-Sha256")
        .or_else(|| if signed_headers.iter().any(|s| s == "x-amz-content-sha256") { header(head, "x-amz-content-sha256").map(str::to_string) } else { None })
        .unwrap_or_else(|| UNSIGNED_PAYLOAD.to_string());
    Some(SigParts {
        presigned: true,
        access_key: ak,
        date8,
        region,
        signed_headers,
        amz_date: get("X-Amz-Date")?,
        payload_hash,
        provided: get("X-Amz-Signature")?,
    })
}

/// The signature the request should carry, computed with the fuzz secret
/// and this crate's own HMAC.
pub fn expected_signature(head: &RequestHead, p: &SigParts) -> [u8; 32] {
    let cq = canonical_query_string(&head.raw_query, p.presigned);
    let signed: Vec<&str> = p.signed_headers.iter().map(String::as_str).collect();
    let cr = canonical_request(&head.method, &head.raw_path, &cq, &head.headers, &signed, &p.payload_hash);
    let scope = format!("{}/{}/s3/aws4_request", p.date8, p.region);
    hmac256(&signing_key(SK, &p.date8, &p.region), string_to_sign(&p.amz_date, &scope, &cr).as_bytes())
}

/// Re-signs a (mutated) request so that mutants get past the signature
/// check: the request signature, then the chunk and trailer signatures of
/// a signed aws-chunked body sent with Content-Length.
pub fn resign(b: &mut Vec<u8>) {
    let Ok(Some((head, n))) = parse_head(b) else { return };
    let Some(p) = sig_parts(&head) else { return };
    if parse_amz_date(&p.amz_date).is_none() {
        return;
    }
    let sig = expected_signature(&head, &p);
    let hex = hex_lower(&sig);
    let old_head_len = n;
    let marker: &[u8] = if p.presigned { b"X-Amz-Signature=" } else { b"Signature=" };
    let Some(m) = b[..n].windows(marker.len()).rposition(|w| w == marker) else { return };
    let start = m + marker.len();
    let end = b[start..n].iter().position(|&c| matches!(c, b'&' | b' ' | b',' | b'\r' | b'\n')).map_or(n, |i| start + i);
    b.splice(start..end, hex.bytes());
    let n = old_head_len + hex.len() - (end - start);
    if p.presigned || !p.payload_hash.starts_with("STREAMING-AWS4-HMAC-SHA256-PAYLOAD") || !matches!(head.body_framing(), Ok(BodyFraming::ContentLength(_))) {
        return;
    }
    // Chunk signatures, chained from the request signature.
    let mut v = ChunkVerifier::from_secret(SK, &p.amz_date, &p.region, sig);
    let mut pos = n;
    loop {
        let Some(eol) = b[pos..].windows(2).position(|w| w == b"\r\n").map(|i| pos + i) else { return };
        let line = b[pos..eol].to_vec();
        let digits = line.iter().take_while(|c| c.is_ascii_hexdigit()).count();
        if digits == 0 || digits > 8 {
            return;
        }
        let size = usize::from_str_radix(std::str::from_utf8(&line[..digits]).unwrap(), 16).unwrap();
        let data_start = eol + 2;
        let Some(data) = b.get(data_start..data_start + size) else { return };
        let new_sig = hex_lower(&v.sign_chunk(&sha256(data)));
        let marker = b";chunk-signature=";
        let Some(si) = line.windows(marker.len()).position(|w| w == marker) else { return };
        let sig_start = pos + si + marker.len();
        let shift = new_sig.len() as isize - (eol - sig_start) as isize;
        b.splice(sig_start..eol, new_sig.bytes());
        let data_start = (data_start as isize + shift) as usize;
        if size == 0 {
            pos = data_start;
            break;
        }
        pos = data_start + size + 2;
        if pos > b.len() {
            return;
        }
    }
    // Trailers, then the trailer signature over them.
    let mut canonical = Vec::new();
    loop {
        let Some(eol) = b[pos..].windows(2).position(|w| w == b"\r\n").map(|i| pos + i) else { return };
        let line = b[pos..eol].to_vec();
        if line.is_empty() {
            return;
        }
        let Some(colon) = line.iter().position(|&c| c == b':') else { return };
        let name = String::from_utf8_lossy(&line[..colon]).to_ascii_lowercase();
        if name == "x-amz-trailer-signature" {
            let new_sig = hex_lower(&v.sign_trailer(&canonical));
            b.splice(pos + colon + 1..eol, new_sig.bytes());
            return;
        }
        let value = String::from_utf8_lossy(&line[colon + 1..]).trim_matches([' ', '\t']).to_string();
        canonical.extend_from_slice(format!("{name}:{value}\n").as_bytes());
        pos = eol + 2;
    }
}

/// Requests for both S3 targets: real heads signed by dataplane's signer,
/// presigned URLs, and every body framing the server accepts.
pub fn request_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let body = b"hello, fuzzer! ".repeat(9);
    let sha = hex_lower(&sha256(&body));
    let cl = body.len().to_string();

    out.push(("get-header-auth".into(), signed("GET", "/photos/2024/cat.jpg", "", UNSIGNED_PAYLOAD, &[h("range", "bytes=0-99")], b"").0));
    out.push((
        "get-list-v2".into(),
        signed("GET", "/photos", "list-type=2&prefix=2024%2F&delimiter=%2F&max-keys=10&continuation-token=YWJj", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", &[], b"").0,
    ));
    out.push(("put-unsigned-payload".into(), signed("PUT", "/photos/a%20b%2Bc%2Fd.txt", "", UNSIGNED_PAYLOAD, &[h("content-length", &cl), h("content-type", "text/plain"), h("x-amz-meta-owner", "fuzz")], &body).0));
    out.push((
        "put-sha256-md5".into(),
        signed(
            "PUT",
            "/photos/key",
            "",
            &sha,
            &[h("content-length", &cl), h("content-md5", "1B2M2Y8AsgTpgAmY7PhCfg=="), h("x-amz-checksum-crc32c", &checksum_base64(ChecksumAlgorithm::Crc32c, &body))],
            &body,
        )
        .0,
    ));
    out.push(("put-part".into(), signed("PUT", "/photos/big.iso", "partNumber=3&uploadId=AAAAAAAAAAAAAAAAAAAAAA", UNSIGNED_PAYLOAD, &[h("content-length", "5"), h("expect", "100-continue")], b"12345").0));
    out.push(("post-uploads".into(), signed("POST", "/photos/big.iso", "uploads", UNSIGNED_PAYLOAD, &[h("content-length", "0")], b"").0));
    out.push(("delete-unicode-key".into(), signed("DELETE", "/photos/%E2%82%AC%20%C3%A9t%C3%A9~%21%24", "", UNSIGNED_PAYLOAD, &[], b"").0));
    out.push(("head-bucket-list".into(), signed("GET", "/", "", UNSIGNED_PAYLOAD, &[h("connection", "close")], b"").0));

    // Signed aws-chunked bodies (Content-Length framing).
    for (name, mode, trailer, chunk) in [
        ("put-streaming-signed", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", false, 64),
        ("put-streaming-signed-trailer", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", true, 50),
    ] {
        let crc = checksum_base64(ChecksumAlgorithm::Crc32c, &body);
        let mut extra = vec![h("content-encoding", "aws-chunked"), h("x-amz-decoded-content-length", &body.len().to_string())];
        if trailer {
            extra.push(h("x-amz-trailer", "x-amz-checksum-crc32c"));
        }
        // The body length goes into content-length, which is not signed by
        // sign_authorization: sign first, then build the body.
        let (_, seed) = signed("PUT", "/photos/streamed", "", mode, &extra, b"");
        let trailers: Vec<(&str, String)> = if trailer { vec![("x-amz-checksum-crc32c", crc)] } else { vec![] };
        let aws = aws_chunked(Some(&seed), &body, chunk, &trailers, trailer);
        let mut extra2 = extra.clone();
        extra2.push(h("content-length", &aws.len().to_string()));
        let (req, seed2) = signed("PUT", "/photos/streamed", "", mode, &extra2, b"");
        // content-length is not signed, so the seed signature is the same.
        assert_eq!(seed, seed2);
        let mut req = req;
        req.extend_from_slice(&aws);
        out.push((name.into(), req));
    }

    // boto3 style: unsigned aws-chunked inside Transfer-Encoding: chunked.
    let crc = checksum_base64(ChecksumAlgorithm::Crc32, &body);
    let aws = aws_chunked(None, &body, 1 << 20, &[("x-amz-checksum-crc32", crc)], false);
    let (mut req, _) = signed(
        "PUT",
        "/photos/boto",
        "",
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        &[
            h("transfer-encoding", "chunked"),
            h("content-encoding", "aws-chunked"),
            h("x-amz-trailer", "x-amz-checksum-crc32"),
            h("x-amz-decoded-content-length", &body.len().to_string()),
            h("x-amz-sdk-checksum-algorithm", "CRC32"),
        ],
        b"",
    );
    req.extend(te_chunked(&aws, 40, None));
    out.push(("put-boto-unsigned-trailer".into(), req));

    // Presigned URLs.
    out.push(("presigned-get".into(), presigned(AMZ_DATE, "GET", "/photos/2024/cat.jpg", "", 3600, &[h("host", HOST)], &["host"], None, b"")));
    out.push((
        "presigned-put-sha".into(),
        presigned(AMZ_DATE, "PUT", "/photos/up", "x-id=PutObject", 604800, &[h("host", HOST), h("content-length", &cl), h("x-amz-acl", "private")], &["host", "x-amz-acl"], Some(&sha), &body),
    ));
    out.push(("presigned-expired".into(), presigned("20240430T120000Z", "GET", "/photos/old", "", 3600, &[h("host", HOST)], &["host"], None, b"")));

    // Date header instead of x-amz-date.
    let mut headers = vec![h("host", HOST), h("date", "Wed, 01 May 2024 12:00:00 GMT"), h("x-amz-content-sha256", UNSIGNED_PAYLOAD)];
    let cr = canonical_request("GET", "/photos/dated", "", &headers, &["date", "host", "x-amz-content-sha256"], UNSIGNED_PAYLOAD);
    let scope = format!("{}/{REGION}/s3/aws4_request", &AMZ_DATE[..8]);
    let sig = hmac256(&signing_key(SK, &AMZ_DATE[..8], REGION), string_to_sign(AMZ_DATE, &scope, &cr).as_bytes());
    headers.push(h("authorization", &format!("{ALGORITHM} Credential={AK}/{scope},SignedHeaders=date;host;x-amz-content-sha256,Signature={}", hex_lower(&sig))));
    out.push(("get-date-header".into(), request_bytes("GET", "/photos/dated", "HTTP/1.1", &headers, b"")));

    // Refusals worth starting from: SigV2, no auth, unknown key.
    out.push(("sigv2".into(), request_bytes("GET", "/photos/a?AWSAccessKeyId=AKIA&Signature=abc%3D&Expires=1", "HTTP/1.1", &[h("host", HOST)], b"")));
    out.push(("anonymous".into(), request_bytes("GET", "/photos/a", "HTTP/1.1", &[h("host", HOST)], b"")));
    let (req, _) = signed("GET", "/photos/a", "", UNSIGNED_PAYLOAD, &[], b"");
    out.push(("unknown-key".into(), String::from_utf8(req).unwrap().replace(AK, "AKIANOTKNOWN0000").into_bytes()));
    out
}
