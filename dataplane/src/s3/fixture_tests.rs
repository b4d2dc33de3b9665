//! End-to-end tests on raw requests captured from boto3 1.43 / aws-cli 1.45
//! (see `testdata/README.md`): head parsing, SigV4, body framing,
//! aws-chunked decoding and checksums, with the input split in many ways.

use super::checksum::{
    checksum_base64, verify_payload_sha256, ChecksumAlgorithm, Checksummer, Sha256Hasher,
};
use super::chunked::{is_aws_chunked, AwsChunkedDecoder, AwsChunkedMode};
use super::error::{S3Error, S3ErrorCode};
use super::http::{
    decode_path, parse_head, parse_query, BodyFraming, ChunkedDecoder, RequestHead, Step,
};
use super::sigv4::{verify, AuthOutcome, PayloadMode, SignedRequest};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const AK: &str = "AKIDEXAMPLE";
const SK: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// 20240102T030405Z, the X-Amz-Date of every capture.
const NOW: u64 = 1_704_164_645;

const BOTO3_PUT_CRC32_TRAILER: &[u8] = include_bytes!("testdata/boto3_put_crc32_trailer.http");
const BOTO3_PUT_SHA256_TRAILER: &[u8] = include_bytes!("testdata/boto3_put_sha256_trailer.http");
const BOTO3_PUT_SHA1_TRAILER: &[u8] = include_bytes!("testdata/boto3_put_sha1_trailer.http");
const BOTO3_PUT_EMPTY_TRAILER: &[u8] = include_bytes!("testdata/boto3_put_empty_trailer.http");
const BOTO3_UPLOAD_PART: &[u8] = include_bytes!("testdata/boto3_upload_part_crc32_trailer.http");
const BOTO3_PUT_SIGNED_CFG_HTTPS: &[u8] =
    include_bytes!("testdata/boto3_put_signed_payload_https.http");
const BOTO3_HTTP_SIGNED_PAYLOAD: &[u8] =
    include_bytes!("testdata/boto3_http_put_signed_payload.http");
const BOTO3_HTTP_SMALL: &[u8] = include_bytes!("testdata/boto3_http_put_small.http");
const BOTO3_HTTP_EMPTY: &[u8] = include_bytes!("testdata/boto3_http_put_empty.http");
const AWSCLI_S3_CP: &[u8] = include_bytes!("testdata/awscli_s3_cp.http");
const AWSCLI_S3API_PUT: &[u8] = include_bytes!("testdata/awscli_s3api_put_object.http");

fn secret(ak: &str) -> Option<String> {
    (ak == AK).then(|| SK.to_string())
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[derive(Debug)]
struct Processed {
    head: RequestHead,
    auth: AuthOutcome,
    data: Vec<u8>,
    trailers: Vec<(String, String)>,
    /// Verified flexible checksum (from a header or a trailer).
    checksum: Option<(ChecksumAlgorithm, String)>,
    /// Bytes of the raw request used (head + body).
    used: usize,
}

/// Body sink: stores data and feeds the hashers.
struct Sink {
    data: Vec<u8>,
    sha: Option<Sha256Hasher>,
    header_checksum: Option<Checksummer>,
}

impl Sink {
    fn put(&mut self, d: &[u8]) {
        self.data.extend_from_slice(d);
        if let Some(h) = &mut self.sha {
            h.update(d);
        }
        if let Some(c) = &mut self.header_checksum {
            c.update(d);
        }
    }
}

enum Outer {
    Chunked(ChunkedDecoder),
    Length(u64),
}

/// The whole server-side pipeline, fed with `raw` cut at `cuts` (sorted
/// positions). Mirrors what the dataplane connection loop does.
fn process(raw: &[u8], cuts: &[usize], now: u64) -> Result<Processed, S3Error> {
    let mut pieces: Vec<&[u8]> = Vec::new();
    let mut last = 0;
    for &c in cuts.iter().chain(std::iter::once(&raw.len())) {
        let c = c.min(raw.len());
        if c > last {
            pieces.push(&raw[last..c]);
            last = c;
        }
    }
    let mut pieces = pieces.into_iter();
    let mut buf: Vec<u8> = Vec::new();
    let mut used = 0usize;

    // 1. Head.
    let (head, n) = loop {
        if let Some(h) = parse_head(&buf)? {
            break h;
        }
        buf.extend_from_slice(
            pieces
                .next()
                .ok_or_else(|| S3Error::from_code(S3ErrorCode::IncompleteBody))?,
        );
    };
    buf.drain(..n);
    used += n;

    // 2. Auth.
    let auth = verify(&SignedRequest::from_head(&head), &secret, at(now))?;

    // 3. Body framing and decoders.
    let mut outer = match head.body_framing()? {
        BodyFraming::Chunked => Outer::Chunked(ChunkedDecoder::new()),
        BodyFraming::ContentLength(n) => Outer::Length(n),
        BodyFraming::None => Outer::Length(0),
    };
    let aws_chunked = head.header("content-encoding").is_some_and(is_aws_chunked);
    let mut inner = if aws_chunked {
        let mut d = AwsChunkedDecoder::for_payload(&auth.payload, head.header("x-amz-trailer"))
            .ok_or_else(|| {
                S3Error::new(
                    S3ErrorCode::InvalidRequest,
                    "aws-chunked without streaming payload",
                )
            })?;
        if let Some(n) = head.header("x-amz-decoded-content-length") {
            d = d.with_decoded_length(n.parse().unwrap());
        }
        Some(d)
    } else {
        None
    };
    // A checksum sent as a header (not a trailer) is checked by the caller.
    let header_checksum = head
        .headers
        .iter()
        .find(|(n, _)| {
            n.starts_with("x-amz-checksum-") && ChecksumAlgorithm::from_header_name(n).is_some()
        })
        .map(|(n, v)| (Checksummer::from_header_name(n).unwrap(), v.clone()));
    let mut sink = Sink {
        data: Vec::new(),
        sha: matches!(auth.payload, PayloadMode::Sha256(_)).then(Sha256Hasher::new),
        header_checksum: header_checksum.as_ref().map(|(c, _)| c.clone()),
    };
    let mut trailers = Vec::new();
    let mut inner_done = false;

    // Feeds decoded outer data through the aws-chunked decoder (if any).
    let mut feed_inner = |slice: &[u8],
                          sink: &mut Sink,
                          trailers: &mut Vec<(String, String)>,
                          inner_done: &mut bool|
     -> Result<(), S3Error> {
        match &mut inner {
            None => {
                sink.put(slice);
                Ok(())
            }
            Some(dec) => {
                let mut pos = 0;
                while pos < slice.len() {
                    if *inner_done {
                        return Err(S3Error::new(
                            S3ErrorCode::InvalidRequest,
                            "data after the end of the aws-chunked body",
                        ));
                    }
                    match dec.next(&slice[pos..])? {
                        Step::Data { range, consumed } => {
                            sink.put(&slice[pos..][range]);
                            pos += consumed;
                        }
                        Step::NeedMore { consumed } => pos += consumed,
                        Step::Done {
                            consumed,
                            trailers: t,
                        } => {
                            pos += consumed;
                            *trailers = t;
                            *inner_done = true;
                        }
                    }
                }
                Ok(())
            }
        }
    };

    // 4. Body loop.
    'body: loop {
        match &mut outer {
            Outer::Length(remaining) => {
                if *remaining == 0 {
                    break 'body;
                }
                if buf.is_empty() {
                    buf.extend_from_slice(
                        pieces
                            .next()
                            .ok_or_else(|| S3Error::from_code(S3ErrorCode::IncompleteBody))?,
                    );
                }
                let take = (*remaining).min(buf.len() as u64) as usize;
                feed_inner(&buf[..take], &mut sink, &mut trailers, &mut inner_done)?;
                buf.drain(..take);
                used += take;
                *remaining -= take as u64;
            }
            Outer::Chunked(dec) => match dec.next(&buf)? {
                Step::Data { range, consumed } => {
                    feed_inner(&buf[range], &mut sink, &mut trailers, &mut inner_done)?;
                    buf.drain(..consumed);
                    used += consumed;
                }
                Step::NeedMore { consumed } => {
                    buf.drain(..consumed);
                    used += consumed;
                    buf.extend_from_slice(
                        pieces
                            .next()
                            .ok_or_else(|| S3Error::from_code(S3ErrorCode::IncompleteBody))?,
                    );
                }
                Step::Done {
                    consumed,
                    trailers: outer_trailers,
                } => {
                    assert!(outer_trailers.is_empty());
                    used += consumed;
                    break 'body;
                }
            },
        }
    }
    let mut checksum = None;
    if let Some(dec) = &mut inner {
        if !inner_done {
            trailers = dec.finish()?;
        }
        checksum = dec.checksum().map(|(a, v)| (a, v.to_string()));
    }
    // 5. Whole-body checks.
    if let (PayloadMode::Sha256(expected), Some(h)) = (&auth.payload, sink.sha.take()) {
        verify_payload_sha256(expected, &h.finish())?;
    }
    if let (Some((_, expected)), Some(c)) = (header_checksum, sink.header_checksum.take()) {
        let alg = c.algorithm();
        checksum = Some((alg, c.verify_base64(&expected)?));
    }
    Ok(Processed {
        head,
        auth,
        data: sink.data,
        trailers,
        checksum,
        used,
    })
}

fn process_whole(raw: &[u8]) -> Processed {
    process(raw, &[], NOW).unwrap()
}

fn piece_cuts(len: usize, piece: usize) -> Vec<usize> {
    (1..).map(|i| i * piece).take_while(|&c| c < len).collect()
}

fn body_offset(raw: &[u8]) -> usize {
    parse_head(raw).unwrap().unwrap().1
}

fn boto3_lines() -> Vec<u8> {
    (0..2000)
        .flat_map(|i| format!("line {i:05} of the boto3 aws-chunked fixture\n").into_bytes())
        .collect()
}

fn cli_lines() -> Vec<u8> {
    (0..500)
        .flat_map(|i| format!("aws cli line {i:04}\n").into_bytes())
        .collect()
}

#[test]
fn boto3_put_object_sends_unsigned_trailer_aws_chunked_inside_http_chunked() {
    let p = process_whole(BOTO3_PUT_CRC32_TRAILER);
    let h = &p.head;
    assert_eq!(h.method, "PUT");
    assert_eq!(h.raw_path, "/test-bucket/dir/my%20file%2B%C3%BC.txt");
    assert_eq!(
        decode_path(&h.raw_path).unwrap(),
        "/test-bucket/dir/my file+ü.txt"
    );
    assert_eq!(h.header("transfer-encoding"), Some("chunked"));
    assert_eq!(h.header("content-encoding"), Some("aws-chunked"));
    assert_eq!(
        h.header("x-amz-content-sha256"),
        Some("STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    );
    assert_eq!(h.header("x-amz-trailer"), Some("x-amz-checksum-crc32"));
    assert_eq!(h.header("x-amz-decoded-content-length"), Some("88000"));
    assert_eq!(h.header("x-amz-sdk-checksum-algorithm"), Some("CRC32"));
    assert_eq!(h.header("content-length"), None);
    assert!(h.expects_continue());
    assert!(h.is_chunked_transfer());
    assert!(matches!(
        p.auth.payload,
        PayloadMode::StreamingUnsignedTrailer
    ));
    assert_eq!(p.auth.access_key, AK);
    assert_eq!(p.data, boto3_lines());
    assert_eq!(
        p.trailers,
        vec![("x-amz-checksum-crc32".to_string(), "CHuMtA==".to_string())]
    );
    assert_eq!(
        p.checksum,
        Some((ChecksumAlgorithm::Crc32, "CHuMtA==".to_string()))
    );
    assert_eq!(
        checksum_base64(ChecksumAlgorithm::Crc32, &p.data),
        "CHuMtA=="
    );
    assert_eq!(p.used, BOTO3_PUT_CRC32_TRAILER.len());
    // The body itself: outer chunk of 0x157ed bytes holding one aws chunk.
    let body = &BOTO3_PUT_CRC32_TRAILER[body_offset(BOTO3_PUT_CRC32_TRAILER)..];
    assert!(body.starts_with(b"157ed\r\n157c0\r\nline 00000"));
    assert!(body.ends_with(b"\r\n0\r\nx-amz-checksum-crc32:CHuMtA==\r\n\r\n\r\n0\r\n\r\n"));
}

#[test]
fn every_capture_decodes_at_many_piece_sizes() {
    let cases: &[(&str, &[u8], usize)] = &[
        ("crc32 trailer", BOTO3_PUT_CRC32_TRAILER, 88000),
        ("sha256 trailer", BOTO3_PUT_SHA256_TRAILER, 30),
        ("sha1 trailer", BOTO3_PUT_SHA1_TRAILER, 21),
        ("empty trailer", BOTO3_PUT_EMPTY_TRAILER, 0),
        ("upload part", BOTO3_UPLOAD_PART, 100_000),
        (
            "payload_signing_enabled over https",
            BOTO3_PUT_SIGNED_CFG_HTTPS,
            11,
        ),
        ("http signed payload", BOTO3_HTTP_SIGNED_PAYLOAD, 72000),
        ("http small", BOTO3_HTTP_SMALL, 2),
        ("http empty", BOTO3_HTTP_EMPTY, 0),
        ("aws s3 cp", AWSCLI_S3_CP, 9000),
        ("aws s3api put-object", AWSCLI_S3API_PUT, 9000),
    ];
    for (name, raw, len) in cases {
        let whole = process(raw, &[], NOW).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(whole.data.len(), *len, "{name}");
        assert_eq!(whole.used, raw.len(), "{name}");
        assert!(
            whole.checksum.is_some(),
            "{name}: every capture carries a flexible checksum"
        );
        for piece in [1, 2, 3, 7, 100, 1460, 16384, 65536] {
            let p = process(raw, &piece_cuts(raw.len(), piece), NOW)
                .unwrap_or_else(|e| panic!("{name} piece {piece}: {e:?}"));
            assert_eq!(p.data, whole.data, "{name} piece {piece}");
            assert_eq!(p.trailers, whole.trailers, "{name} piece {piece}");
            assert_eq!(p.checksum, whole.checksum, "{name} piece {piece}");
        }
    }
}

#[test]
fn small_captures_every_two_way_split() {
    for raw in [
        BOTO3_PUT_SHA256_TRAILER,
        BOTO3_PUT_SHA1_TRAILER,
        BOTO3_PUT_EMPTY_TRAILER,
        BOTO3_PUT_SIGNED_CFG_HTTPS,
        BOTO3_HTTP_SMALL,
    ] {
        let whole = process_whole(raw);
        for split in 0..=raw.len() {
            let p = process(raw, &[split], NOW).unwrap_or_else(|e| panic!("split {split}: {e:?}"));
            assert_eq!(p.data, whole.data);
            assert_eq!(p.trailers, whole.trailers);
        }
    }
}

#[test]
fn large_capture_every_split_around_framing() {
    let raw = BOTO3_PUT_CRC32_TRAILER;
    let body = body_offset(raw);
    let whole = process_whole(raw);
    let mut splits: Vec<usize> = (body - 40..body + 40).collect();
    splits.extend(raw.len() - 80..=raw.len());
    for split in splits {
        let p = process(raw, &[split], NOW).unwrap_or_else(|e| panic!("split {split}: {e:?}"));
        assert_eq!(p.data, whole.data);
        assert_eq!(p.trailers, whole.trailers);
    }
}

#[test]
fn capture_contents() {
    let p = process_whole(BOTO3_PUT_SHA256_TRAILER);
    assert_eq!(p.data, b"abc".repeat(10));
    assert_eq!(
        p.checksum.unwrap().1,
        "665ni80UHMm51TKyZPhUCWtkWvQUkMeHIYKZ4bvGUQ4="
    );
    let p = process_whole(BOTO3_PUT_SHA1_TRAILER);
    assert_eq!(p.data, b"xyz".repeat(7));
    assert_eq!(p.trailers[0].0, "x-amz-checksum-sha1");
    let p = process_whole(BOTO3_PUT_EMPTY_TRAILER);
    assert_eq!(
        p.trailers,
        vec![("x-amz-checksum-crc32".to_string(), "AAAAAA==".to_string())]
    );

    let p = process_whole(BOTO3_UPLOAD_PART);
    assert_eq!(p.data, vec![b'P'; 100_000]);
    let q = parse_query(&p.head.raw_query);
    assert_eq!(
        q,
        vec![
            ("uploadId".to_string(), "UPID".to_string()),
            ("partNumber".to_string(), "3".to_string())
        ]
    );
    assert_eq!(p.checksum.unwrap().1, "5/VtdQ==");

    // payload_signing_enabled=True over HTTPS still sends the unsigned trailer form.
    let p = process_whole(BOTO3_PUT_SIGNED_CFG_HTTPS);
    assert!(matches!(
        p.auth.payload,
        PayloadMode::StreamingUnsignedTrailer
    ));
    assert_eq!(p.data, b"signed body");

    for raw in [AWSCLI_S3_CP, AWSCLI_S3API_PUT] {
        let p = process_whole(raw);
        assert_eq!(p.data, cli_lines());
        assert_eq!(p.checksum.clone().unwrap().1, "z+UggQ==");
    }
    let p = process_whole(AWSCLI_S3_CP);
    assert_eq!(
        decode_path(&p.head.raw_path).unwrap(),
        "/test-bucket/cli/a b.txt"
    );
    assert_eq!(p.head.header("content-type"), Some("text/plain"));

    // Plain HTTP: boto3 signs the payload and sends the checksum as a header.
    let p = process_whole(BOTO3_HTTP_SIGNED_PAYLOAD);
    assert_eq!(p.head.content_length(), Ok(Some(72000)));
    assert_eq!(p.head.header("content-encoding"), None);
    assert!(matches!(p.auth.payload, PayloadMode::Sha256(_)));
    assert_eq!(p.data, b"hello aws-chunked world\n".repeat(3000));
    assert_eq!(
        p.checksum,
        Some((ChecksumAlgorithm::Crc32, "a+LX5A==".to_string()))
    );
    let p = process_whole(BOTO3_HTTP_EMPTY);
    assert!(matches!(p.auth.payload, PayloadMode::Sha256(d) if d == super::checksum::sha256(b"")));
}

fn replace(raw: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len(), "keep the framing lengths");
    let i = raw
        .windows(from.len())
        .rposition(|w| w == from)
        .expect("pattern present");
    let mut v = raw.to_vec();
    v[i..i + from.len()].copy_from_slice(to);
    v
}

#[test]
fn tampered_captures_are_rejected() {
    // Flipped data byte: trailer checksum no longer matches.
    let mut raw = BOTO3_PUT_CRC32_TRAILER.to_vec();
    let off = body_offset(&raw) + 5000;
    raw[off] ^= 1;
    let e = process(&raw, &piece_cuts(raw.len(), 1000), NOW).unwrap_err();
    assert_eq!((e.code, e.status()), (S3ErrorCode::BadDigest, 400), "{e:?}");
    assert!(
        e.message.contains("CRC32") && e.message.contains("CHuMtA=="),
        "{}",
        e.message
    );

    // Wrong trailer value.
    let raw = replace(BOTO3_PUT_CRC32_TRAILER, b"CHuMtA==", b"DHuMtA==");
    assert_eq!(
        process(&raw, &[], NOW).unwrap_err().code,
        S3ErrorCode::BadDigest
    );

    // Undeclared trailer name.
    let raw = replace(
        BOTO3_PUT_SHA256_TRAILER,
        b"x-amz-checksum-sha256:",
        b"x-amz-checksum-sha257:",
    );
    assert_eq!(
        process(&raw, &[], NOW).unwrap_err().code,
        S3ErrorCode::MalformedTrailerError
    );

    // Signed header changed.
    let raw = replace(
        BOTO3_PUT_CRC32_TRAILER,
        b"X-Amz-Decoded-Content-Length: 88000",
        b"X-Amz-Decoded-Content-Length: 88001",
    );
    assert_eq!(
        process(&raw, &[], NOW).unwrap_err().code,
        S3ErrorCode::SignatureDoesNotMatch
    );

    // Signed payload hash no longer matches the body.
    let mut raw = BOTO3_HTTP_SIGNED_PAYLOAD.to_vec();
    let off = body_offset(&raw) + 10;
    raw[off] ^= 0x20;
    let e = process(&raw, &[], NOW).unwrap_err();
    assert_eq!(
        (e.code, e.status()),
        (S3ErrorCode::XAmzContentSHA256Mismatch, 400)
    );

    // The checksum header is signed: changing it breaks the signature.
    let raw = replace(BOTO3_HTTP_SMALL, b"2JMqrA==", b"2JMqrB==");
    assert_eq!(
        process(&raw, &[], NOW).unwrap_err().code,
        S3ErrorCode::SignatureDoesNotMatch
    );

    // Clock skew and wrong credentials.
    let e = process(BOTO3_PUT_CRC32_TRAILER, &[], NOW + 16 * 60).unwrap_err();
    assert_eq!(e.code, S3ErrorCode::RequestTimeTooSkewed);
    let raw = replace(
        BOTO3_PUT_CRC32_TRAILER,
        b"Credential=AKIDEXAMPLE",
        b"Credential=AKIDEXAMPLF",
    );
    assert_eq!(
        process(&raw, &[], NOW).unwrap_err().code,
        S3ErrorCode::InvalidAccessKeyId
    );
}

#[test]
fn truncated_captures_are_incomplete() {
    for raw in [
        BOTO3_PUT_CRC32_TRAILER,
        BOTO3_PUT_SHA256_TRAILER,
        BOTO3_HTTP_SMALL,
        AWSCLI_S3_CP,
    ] {
        let body = body_offset(raw);
        for cut in [
            body + 1,
            body + 5,
            raw.len() - 20,
            raw.len() - 7,
            raw.len() - 3,
            raw.len() - 1,
        ] {
            if cut <= body || cut >= raw.len() {
                continue;
            }
            let e = process(&raw[..cut], &piece_cuts(cut, 512), NOW).unwrap_err();
            assert_eq!(
                e.code,
                S3ErrorCode::IncompleteBody,
                "cut {cut} of {}",
                raw.len()
            );
        }
    }
}

#[test]
fn inner_decoder_alone_on_boto3_body() {
    // Strip the HTTP chunked framing by hand and run only the aws-chunked
    // decoder, byte by byte.
    let raw = BOTO3_PUT_CRC32_TRAILER;
    let body = &raw[body_offset(raw)..];
    let mut outer = ChunkedDecoder::new();
    let mut inner_bytes = Vec::new();
    let mut pos = 0;
    loop {
        match outer.next(&body[pos..]).unwrap() {
            Step::Data { range, consumed } => {
                inner_bytes.extend_from_slice(&body[pos..][range]);
                pos += consumed;
            }
            Step::NeedMore { .. } => panic!("complete body"),
            Step::Done { consumed, .. } => {
                assert_eq!(pos + consumed, body.len());
                break;
            }
        }
    }
    assert_eq!(inner_bytes.len(), 0x157ed);
    let mut dec = AwsChunkedDecoder::new(
        AwsChunkedMode::UnsignedTrailer,
        vec!["x-amz-checksum-crc32".into()],
        None,
    )
    .with_decoded_length(88000);
    let mut data = Vec::new();
    let mut done = None;
    for i in 0..inner_bytes.len() {
        match dec.next(&inner_bytes[i..i + 1]).unwrap() {
            Step::Data { range, consumed } => {
                assert_eq!((range.clone(), consumed), (0..1, 1));
                data.push(inner_bytes[i]);
            }
            Step::NeedMore { consumed } => assert_eq!(consumed, 1),
            Step::Done { consumed, trailers } => {
                assert_eq!((consumed, i), (1, inner_bytes.len() - 1));
                done = Some(trailers);
            }
        }
    }
    assert_eq!(data, boto3_lines());
    assert_eq!(done.unwrap()[0].1, "CHuMtA==");
}

/// Builds a signed plain-HTTP PUT with our own signer.
fn signed_put(body: &[u8], extra: &[(&str, &str)]) -> Vec<u8> {
    use super::encoding::hex_lower;
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), "127.0.0.1:9000".into()),
        ("x-amz-date".into(), "20240102T030405Z".into()),
        (
            "x-amz-content-sha256".into(),
            hex_lower(&super::checksum::sha256(body)),
        ),
        ("content-length".into(), body.len().to_string()),
    ];
    for (n, v) in extra {
        headers.push((n.to_string(), v.to_string()));
    }
    let req = SignedRequest {
        method: "PUT",
        raw_path: "/b/k",
        raw_query: "",
        headers: &headers,
    };
    let auth = super::sigv4::sign_authorization(&req, AK, SK, "us-east-1").unwrap();
    let mut raw = b"PUT /b/k HTTP/1.1\r\n".to_vec();
    for (n, v) in headers
        .iter()
        .chain(std::iter::once(&("authorization".to_string(), auth)))
    {
        raw.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(body);
    raw
}

#[test]
fn header_checksum_and_content_md5_mismatches() {
    let body = b"some object body";
    let good = checksum_base64(ChecksumAlgorithm::Crc32c, body);
    let raw = signed_put(body, &[("x-amz-checksum-crc32c", &good)]);
    let p = process(&raw, &piece_cuts(raw.len(), 3), NOW).unwrap();
    assert_eq!(p.checksum, Some((ChecksumAlgorithm::Crc32c, good.clone())));

    let wrong = checksum_base64(ChecksumAlgorithm::Crc32c, b"other body");
    let raw = signed_put(body, &[("x-amz-checksum-crc32c", &wrong)]);
    let e = process(&raw, &[], NOW).unwrap_err();
    assert_eq!((e.code, e.status()), (S3ErrorCode::BadDigest, 400));
    assert!(
        e.message.contains("CRC32C") && e.message.contains(&good) && e.message.contains(&wrong),
        "{}",
        e.message
    );

    // Content-MD5 is checked by the caller with the MD5 of the body.
    use super::checksum::{md5, verify_content_md5};
    assert!(verify_content_md5("aGVsbG8gd29ybGQgMTIzNA==", &md5(body)).is_err());
}

/// Random byte mutations of the captures: every layer must fail cleanly
/// (an `S3Error`) and never panic; whatever is still accepted must decode to
/// data that matches its verified checksum.
#[test]
fn mutated_captures_never_panic() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let sources = [
        BOTO3_PUT_SHA256_TRAILER,
        BOTO3_PUT_SHA1_TRAILER,
        BOTO3_PUT_EMPTY_TRAILER,
        BOTO3_HTTP_SMALL,
        BOTO3_PUT_SIGNED_CFG_HTTPS,
    ];
    let interesting = b"\r\n:;=0123456789abcdefxyzXYZ-% \t\x00\xff";
    for i in 0..3000 {
        let src = sources[i % sources.len()];
        let mut raw = src.to_vec();
        for _ in 0..1 + rnd() % 3 {
            let pos = (rnd() % raw.len() as u64) as usize;
            match rnd() % 3 {
                0 => raw[pos] = interesting[(rnd() % interesting.len() as u64) as usize],
                1 => {
                    raw.remove(pos);
                }
                _ => raw.insert(
                    pos,
                    interesting[(rnd() % interesting.len() as u64) as usize],
                ),
            }
        }
        let piece = 1 + (rnd() % 64) as usize;
        if let Ok(p) = process(&raw, &piece_cuts(raw.len(), piece), NOW) {
            // Accepted mutations may only touch unsigned parts (e.g. the
            // user-agent or an HTTP chunk extension); the decoded data must
            // then still carry a valid checksum.
            let (alg, value) = p.checksum.expect("checksum verified");
            assert_eq!(checksum_base64(alg, &p.data), value);
        }
    }
}
