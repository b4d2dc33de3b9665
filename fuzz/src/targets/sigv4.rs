//! SigV4: `SignedRequest::from_head` on a parsed head, `sigv4::verify`
//! (Authorization header and presigned query parsing, credential scope,
//! x-amz-date / Date, expiry, payload hash modes) with a fixed secret and
//! clock, then the aws-chunked body with its chunk-signature chain.
//!
//! Invariants:
//! * a request without credentials is refused as anonymous;
//! * verification accepts exactly when the signature the request carries
//!   equals the one this crate computes independently with the secret
//!   (so a mutated signature, or a mutated signed part, is refused);
//! * an accepted request is refused again once its signature, its method or
//!   its host header is changed;
//! * the client signer (`sign_authorization`) and the verifier agree;
//! * a signed aws-chunked body decodes the same whole and in pieces, and
//!   a flipped data byte is caught by the chunk signature.

use dataplane::s3::chunked::AwsChunkedDecoder;
use dataplane::s3::datetime::{parse_amz_date, parse_http_date};
use dataplane::s3::encoding::{hex_decode_array, hex_lower};
use dataplane::s3::error::{S3Error, S3ErrorCode};
use dataplane::s3::http::{parse_head, RequestHead, Step};
use dataplane::s3::sigv4::{
    canonical_query_string, canonical_uri, has_auth, is_missing_auth, sign_authorization, verify, AuthOutcome, PayloadMode, SignedRequest,
};

use super::s3req::{drive, expected_signature, now, request_seeds, resign, s3_class, secret_for, sig_parts, transfer_decode, End, AK, REGION, SK};
use crate::driver::Target;
use crate::mutate::Mutator;

pub static TARGET: Target = Target {
    name: "sigv4",
    run,
    seeds,
    mutator: Mutator { dict: SIGV4_DICT, limits: SIGV4_LIMITS, max_len: 32 << 10, printable: true },
    fixup: Some(resign),
};

static SIGV4_DICT: &[&[u8]] = &[
    b"AWS4-HMAC-SHA256 ",
    b"AWS4-ECDSA-P256-SHA256",
    b"AWS ",
    b"Credential=",
    b"SignedHeaders=",
    b"Signature=",
    b"/aws4_request",
    b"/s3/",
    b"/us-east-1/",
    b";host;",
    b"x-amz-content-sha256",
    b"UNSIGNED-PAYLOAD",
    b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
    b"STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    b"STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
    b"X-Amz-Algorithm=",
    b"X-Amz-Credential=",
    b"X-Amz-Signature=",
    b"X-Amz-Date=",
    b"X-Amz-Expires=",
    b"X-Amz-SignedHeaders=",
    b"X-Amz-Content-Sha256=",
    b"X-Amz-Security-Token=",
    b"AWSAccessKeyId=",
    b"authorization: ",
    b"x-amz-date: ",
    b"date: ",
    b"20240501T120000Z",
    b"99991231T235959Z",
    b"00000229T000000Z",
    b"Wed, 01 May 2024 12:00:00 GMT",
    b"x-amz-trailer-signature:",
    b"x-amz-checksum-crc32c:",
    b";chunk-signature=",
    b"0000000000000000000000000000000000000000000000000000000000000000",
    b"%2F",
    b"%3D",
    b",",
    b"=",
    b"/",
    b"\r\n",
];

static SIGV4_LIMITS: &[u64] = &[
    dataplane::s3::sigv4::MAX_CLOCK_SKEW_SECS as u64,
    dataplane::s3::sigv4::MAX_PRESIGN_EXPIRES_SECS as u64,
    dataplane::s3::chunked::MAX_SIGNED_CHUNK_SIZE,
    dataplane::s3::http::MAX_HEAD_BYTES as u64,
    64,
    32,
    16,
    8,
];

fn verify_head(head: &RequestHead) -> Result<AuthOutcome, S3Error> {
    verify(&SignedRequest::from_head(head), &secret_for, now())
}

fn must_refuse(head: &RequestHead, what: &str) {
    if let Ok(o) = verify_head(head) {
        panic!("request still verifies after {what}: {o:?}");
    }
}

fn payload_name(p: &PayloadMode) -> &'static str {
    match p {
        PayloadMode::Unsigned => "unsigned",
        PayloadMode::Sha256(_) => "sha256",
        PayloadMode::StreamingSigned(_) => "streaming-signed",
        PayloadMode::StreamingSignedTrailer(_) => "streaming-signed-trailer",
        PayloadMode::StreamingUnsignedTrailer => "streaming-unsigned-trailer",
    }
}

fn aws_next(d: &mut AwsChunkedDecoder, b: &[u8]) -> Result<Step, S3Error> {
    d.next(b)
}

fn aws_decode(make: &dyn Fn() -> AwsChunkedDecoder, body: &[u8], step: usize) -> (Vec<u8>, End, Option<usize>) {
    let mut d = make();
    let r = drive(&mut d, aws_next, body, step);
    let end = match r.end {
        End::NeedMore => match d.finish() {
            Ok(t) => End::Done { consumed: usize::MAX, trailers: t },
            Err(e) => End::Error(format!("{} {}", e.code_str(), e.message)),
        },
        e => e,
    };
    (r.data, end, r.first_data_at)
}

/// After a successful verification: tampering must be caught, and the
/// streaming body must decode consistently.
fn accepted(head: &RequestHead, rest: &[u8], outcome: &AuthOutcome) -> String {
    assert_eq!(outcome.access_key, AK);
    let parts = sig_parts(head).expect("an accepted request has signature parts");
    assert_eq!(outcome.presigned, parts.presigned);
    assert_eq!(outcome.region, parts.region);
    let expected = expected_signature(head, &parts);
    let provided = hex_decode_array::<32>(parts.provided.as_bytes()).expect("accepted signature is hex");
    assert_eq!(provided, expected, "verify accepted a signature that is not the one the secret gives");

    // Tampering: the signature, the method, the host.
    let mut t = head.clone();
    let mut bad = expected;
    bad[0] ^= 1;
    let (old, new) = (parts.provided.clone(), hex_lower(&bad));
    if parts.presigned {
        t.raw_query = t.raw_query.replacen(&old, &new, 1);
    } else {
        let auth = t.headers.iter_mut().find(|(n, _)| n == "authorization").unwrap();
        auth.1 = auth.1.replacen(&old, &new, 1);
    }
    if t != *head {
        must_refuse(&t, "changing its signature");
    }
    let mut t = head.clone();
    t.method.push('X');
    must_refuse(&t, "changing its method");
    let mut t = head.clone();
    match t.headers.iter_mut().find(|(n, _)| n == "host") {
        Some(h) => h.1.push('x'),
        None => t.headers.push(("host".into(), "x".into())),
    }
    must_refuse(&t, "changing its host header");

    let mut class = format!("ok {} {}", if outcome.presigned { "presigned" } else { "header" }, payload_name(&outcome.payload));
    let Some(mut dec) = AwsChunkedDecoder::for_payload(&outcome.payload, head.header("x-amz-trailer")) else {
        return class;
    };
    if let Some(n) = head.header("x-amz-decoded-content-length").and_then(|v| v.trim().parse::<u64>().ok()) {
        dec = dec.with_decoded_length(n);
    }
    let Some((body, _)) = transfer_decode(head, rest) else { return class };
    let make = || dec.clone();
    let whole = aws_decode(&make, &body, body.len());
    let split = aws_decode(&make, &body, 1 + body.len() % 9);
    assert_eq!(whole.1, split.1, "aws-chunked verdict differs between whole and pieces");
    // Data is handed out before its chunk signature is checked: after an
    // error one side may have handed out more.
    let n = if matches!(whole.1, End::Done { .. }) { usize::MAX } else { whole.0.len().min(split.0.len()) };
    assert_eq!(whole.0.get(..n).unwrap_or(&whole.0), split.0.get(..n).unwrap_or(&split.0), "aws-chunked data differs between whole and pieces");
    class.push_str(&format!(
        " | {}",
        match &whole.1 {
            End::Done { .. } => "body done".to_string(),
            End::NeedMore => "body incomplete".to_string(),
            End::Error(m) => m.split_whitespace().take(6).collect::<Vec<_>>().join(" "),
        }
    ));
    let signed = matches!(outcome.payload, PayloadMode::StreamingSigned(_) | PayloadMode::StreamingSignedTrailer(_));
    if let (true, End::Done { .. }, Some(at)) = (signed, &whole.1, whole.2) {
        let mut flipped = body.clone();
        flipped[at] ^= 0x01;
        let again = aws_decode(&make, &flipped, flipped.len());
        assert!(
            matches!(&again.1, End::Error(m) if m.starts_with("SignatureDoesNotMatch")),
            "a flipped data byte in a signed chunk was not caught: {:?}",
            again.1
        );
    }
    class
}

pub fn run(data: &[u8]) -> String {
    let head = match parse_head(data) {
        Ok(Some((head, n))) => (head, n),
        _ => {
            // Still exercise the date parsers on the raw text.
            let s = String::from_utf8_lossy(&data[..data.len().min(64)]);
            let _ = (parse_amz_date(&s), parse_http_date(&s));
            return "no head".into();
        }
    };
    let (head, n) = head;
    let rest = &data[n..];
    let req = SignedRequest::from_head(&head);
    let _ = (canonical_query_string(&head.raw_query, true), canonical_uri(&head.raw_path));
    let with_auth = has_auth(&req);
    let result = verify(&req, &secret_for, now());
    if !with_auth {
        let e = result.as_ref().err().expect("a request without credentials verified");
        assert!(is_missing_auth(e), "a request without credentials refused otherwise: {e:?}");
    }

    // The verdict agrees with the independently computed signature.
    let parts = sig_parts(&head);
    if let (Some(p), Err(e)) = (&parts, &result) {
        if e.code == S3ErrorCode::SignatureDoesNotMatch {
            let exp = expected_signature(&head, p);
            assert_ne!(
                hex_decode_array::<32>(p.provided.as_bytes()),
                Some(exp),
                "verify refused the signature the secret gives: {}",
                e.message
            );
        }
    }
    // The client signer and our computation agree when they sign the same headers.
    if let Some(p) = parts.as_ref().filter(|p| !p.presigned && p.access_key == AK && p.region == REGION) {
        if let Some(auth) = sign_authorization(&req, AK, SK, REGION) {
            let signed = auth.split("SignedHeaders=").nth(1).and_then(|s| s.split(',').next()).unwrap_or("");
            let same_date = head.header("x-amz-date").is_some_and(|d| d.get(..8) == Some(p.date8.as_str()));
            if signed.split(';').eq(p.signed_headers.iter().map(String::as_str)) && same_date {
                let sig = auth.rsplit("Signature=").next().unwrap();
                assert_eq!(sig, hex_lower(&expected_signature(&head, p)), "sign_authorization and the verifier's rules disagree");
            }
        }
    }

    match &result {
        Ok(o) => accepted(&head, rest, o),
        Err(e) => s3_class(e),
    }
}

pub fn seeds() -> Vec<(String, Vec<u8>)> {
    request_seeds()
}
