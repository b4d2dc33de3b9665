//! HTTP request parsing: `parse_head`, then everything the S3 front end
//! derives from the head (framing, path and query decoding, names, Range,
//! Content-MD5, checksum headers, dates) and the body decoders
//! (`ChunkedDecoder`, `AwsChunkedDecoder`) over the rest of the input.
//!
//! Invariants:
//! * the head length `parse_head` returns is at most the input length (and
//!   at most `MAX_HEAD_BYTES`), the head reparses identically from exactly
//!   those bytes, and a strict prefix of it is "incomplete", never an error
//!   (bytes arriving in pieces must not change the verdict);
//! * framing agrees with the Content-Length and Transfer-Encoding readers;
//! * a Range resolves inside the object;
//! * the body decoders give the same data, trailers and verdict whether the
//!   body arrives at once or in small pieces, and honour their `Step`
//!   contract.

use dataplane::s3::checksum::{parse_content_md5, ChecksumAlgorithm};
use dataplane::s3::chunked::{parse_trailer_header, AwsChunkedDecoder, AwsChunkedMode};
use dataplane::s3::datetime::{parse_amz_date, parse_http_date, parse_iso8601_millis};
use dataplane::s3::error::S3Error;
use dataplane::s3::http::{decode_path, parse_head, parse_query, split_path_style, BodyFraming, ChunkedDecoder, HeadError, Step, MAX_HEAD_BYTES};
use dataplane::s3::names::{validate_bucket_name, validate_key};
use dataplane::s3::range::parse_range;

use super::s3req::{chunked_next_fn, drive, request_bytes, request_seeds, te_chunked, End, h, HOST};
use crate::driver::Target;
use crate::mutate::Mutator;

pub static TARGET: Target = Target {
    name: "http",
    run,
    seeds,
    mutator: Mutator { dict: HTTP_DICT, limits: HTTP_LIMITS, max_len: 32 << 10, printable: false },
    fixup: None,
};

pub static HTTP_DICT: &[&[u8]] = &[
    b"\r\n",
    b"\r\n\r\n",
    b"\n",
    b": ",
    b" ",
    b"\t",
    b"/",
    b"?",
    b"&",
    b"=",
    b"%",
    b"%2F",
    b"%00",
    b"%ZZ",
    b"%C3%A9",
    b"+",
    b";",
    b",",
    b"*",
    b"http://h",
    b"HTTP/1.0",
    b"HTTP/1.1",
    b"HTTP/2.0",
    b"transfer-encoding: chunked\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n",
    b"content-length: ",
    b"Content-Length: 5, 5\r\n",
    b"connection: close\r\n",
    b"expect: 100-continue\r\n",
    b"range: bytes=",
    b"content-encoding: aws-chunked\r\n",
    b"x-amz-trailer: x-amz-checksum-crc32\r\n",
    b"x-amz-decoded-content-length: ",
    b"x-amz-checksum-sha256:",
    b"content-md5: ",
    b";chunk-signature=",
    b"0\r\n\r\n",
    b"ffffffffffffffff",
    b"x-amz-",
    b"chunked",
    b"identity",
    b"\xff\xfe",
    b"\x00",
    b"\x7f",
    b"\xc3\xa9",
];

pub static HTTP_LIMITS: &[u64] = &[
    MAX_HEAD_BYTES as u64,
    dataplane::s3::http::MAX_HEADERS as u64,
    dataplane::s3::http::MAX_CHUNK_LINE_BYTES as u64,
    dataplane::s3::http::MAX_TRAILER_BYTES as u64,
    dataplane::s3::http::MAX_TRAILERS as u64,
    dataplane::s3::http::MAX_HTTP_CHUNK_SIZE,
    dataplane::s3::chunked::MAX_SIGNED_CHUNK_SIZE,
    dataplane::s3::chunked::MAX_UNSIGNED_CHUNK_SIZE,
    dataplane::s3::chunked::MAX_AWS_TRAILERS as u64,
    1024,
    63,
];

fn head_err_class(e: &HeadError) -> String {
    let s = format!("{e:?}");
    s.split(|c: char| !c.is_alphanumeric()).next().unwrap_or("").to_string()
}

fn aws_next(d: &mut AwsChunkedDecoder, b: &[u8]) -> Result<Step, S3Error> {
    d.next(b)
}

/// Decodes `body` whole and in `step`-byte pieces with fresh decoders from
/// `make`; both must agree. Returns the whole-input result.
fn compare_split<D>(make: &dyn Fn() -> D, next: fn(&mut D, &[u8]) -> Result<Step, S3Error>, finish: fn(&mut D) -> End, body: &[u8], step: usize, what: &str) -> End {
    let mut a = make();
    let mut whole = drive(&mut a, next, body, body.len());
    if whole.end == End::NeedMore {
        whole.end = finish(&mut a);
    }
    let mut b = make();
    let mut split = drive(&mut b, next, body, step);
    if split.end == End::NeedMore {
        split.end = finish(&mut b);
    }
    assert_eq!(whole.end, split.end, "{what}: verdict differs between whole and {step}-byte pieces");
    // Data is handed out before a chunk's end is checked, so after an
    // error one side may have handed out more; what both gave must agree.
    if matches!(whole.end, End::Done { .. }) {
        assert_eq!(whole.data, split.data, "{what}: data differs between whole and {step}-byte pieces");
    } else {
        let n = whole.data.len().min(split.data.len());
        assert_eq!(whole.data[..n], split.data[..n], "{what}: data differs between whole and {step}-byte pieces");
    }
    if let End::Done { consumed, .. } = whole.end {
        assert!(consumed <= body.len() || consumed == usize::MAX, "decoder consumed {consumed} of {} bytes", body.len());
    }
    whole.end
}

fn end_class(e: &End) -> String {
    match e {
        End::Done { trailers, .. } => format!("done{}", if trailers.is_empty() { "" } else { "+trailers" }),
        End::NeedMore => "incomplete".into(),
        End::Error(m) => m.split_whitespace().take(6).collect::<Vec<_>>().join(" "),
    }
}

pub fn run(data: &[u8]) -> String {
    let (head, n) = match parse_head(data) {
        Ok(None) => {
            assert!(data.len() < MAX_HEAD_BYTES, "no verdict on {} bytes", data.len());
            return "head incomplete".into();
        }
        Err(e) => {
            if e == HeadError::TooLarge {
                assert!(data.len() >= MAX_HEAD_BYTES);
            }
            let _ = e.to_s3_error();
            return format!("head {}", head_err_class(&e));
        }
        Ok(Some(x)) => x,
    };
    assert!(n <= data.len(), "parse_head consumed {n} of {} bytes", data.len());
    assert!(n <= MAX_HEAD_BYTES);
    assert!(head.raw_path.starts_with('/') || head.raw_path == "*", "raw path {:?}", head.raw_path);
    assert_eq!(parse_head(&data[..n]), Ok(Some((head.clone(), n))), "head does not reparse from its own bytes");
    for k in [n - 1, n / 2] {
        let r = parse_head(&data[..k]);
        assert_eq!(r, Ok(None), "a {k}-byte prefix of a {n}-byte head is not 'incomplete'");
    }
    let mut class = format!("{} v1.{}", if head.method.chars().all(|c| c.is_ascii_uppercase()) { "method" } else { "odd-method" }, head.version_minor);

    // What the front end derives from the head.
    let _ = (head.keep_alive(), head.expects_continue(), head.is_chunked_transfer());
    let cl = head.content_length();
    let framing = head.body_framing();
    match &framing {
        Ok(BodyFraming::Chunked) => assert!(head.is_chunked_transfer() && cl == Ok(None)),
        Ok(BodyFraming::ContentLength(x)) => assert_eq!(cl, Ok(Some(*x))),
        Ok(BodyFraming::None) => assert_eq!(cl, Ok(None)),
        Err(_) => {}
    }
    class.push_str(&format!(" {}", match &framing {
        Ok(f) => format!("{f:?}").split('(').next().unwrap().to_string(),
        Err(e) => head_err_class(e),
    }));
    let _ = decode_path(&head.raw_path);
    match split_path_style(&head.raw_path) {
        Ok((b, k)) => {
            if let Some(b) = b {
                let _ = validate_bucket_name(&b);
            }
            if let Some(k) = k {
                let _ = validate_key(&k);
            }
        }
        Err(e) => class.push_str(&format!(" path {}", e.code_str())),
    }
    let q = parse_query(&head.raw_query);
    assert!(q.len() <= head.raw_query.len());
    for (name, value) in &head.headers {
        match name.as_str() {
            "range" => {
                for size in [0u64, 1, 1000, u64::MAX] {
                    if let Ok(Some((s, e))) = parse_range(value, size) {
                        assert!(s <= e && e < size, "range {value:?} on {size} bytes gave {s}..={e}");
                    }
                }
            }
            "content-md5" => {
                let _ = parse_content_md5(value);
            }
            "x-amz-date" => {
                let _ = parse_amz_date(value);
            }
            "date" | "if-modified-since" | "if-unmodified-since" => {
                let _ = parse_http_date(value);
            }
            "x-amz-object-lock-retain-until-date" => {
                let _ = parse_iso8601_millis(value);
            }
            _ => {
                if let Some(alg) = ChecksumAlgorithm::from_header_name(name) {
                    let _ = alg.decode_value(value);
                }
            }
        }
    }

    // The body.
    let rest = &data[n..];
    let step = 1 + rest.len() % 7;
    let te = compare_split(&|| ChunkedDecoder::new(), chunked_next_fn(), |_| End::NeedMore, rest, step, "ChunkedDecoder");
    if framing == Ok(BodyFraming::Chunked) {
        class.push_str(&format!(" | chunked {}", end_class(&te)));
    }
    // aws-chunked on the transfer-decoded body (or the raw rest).
    let aws_input: Vec<u8> = match (&framing, &te) {
        (Ok(BodyFraming::Chunked), _) => drive(&mut ChunkedDecoder::new(), chunked_next_fn(), rest, rest.len()).data,
        (Ok(BodyFraming::ContentLength(x)), _) => rest[..(*x).min(rest.len() as u64) as usize].to_vec(),
        _ => rest.to_vec(),
    };
    let trailers = head.header("x-amz-trailer").map(parse_trailer_header).unwrap_or_default();
    let decoded_len = head.header("x-amz-decoded-content-length").and_then(|v| v.trim().parse::<u64>().ok());
    let aws_finish = |d: &mut AwsChunkedDecoder| match d.finish() {
        Ok(t) => End::Done { consumed: usize::MAX, trailers: t },
        Err(e) => End::Error(format!("{} {}", e.code_str(), e.message)),
    };
    for mode in [AwsChunkedMode::UnsignedTrailer, AwsChunkedMode::Signed] {
        let make = || {
            let d = AwsChunkedDecoder::new(mode, trailers.clone(), None);
            match decoded_len {
                Some(n) => d.with_decoded_length(n),
                None => d,
            }
        };
        let end = compare_split(&make, aws_next, aws_finish, &aws_input, 1 + aws_input.len() % 5, "AwsChunkedDecoder");
        if mode == AwsChunkedMode::UnsignedTrailer && head.header("content-encoding").is_some() {
            class.push_str(&format!(" | aws {}", end_class(&end)));
        }
    }

    // A pipelined request after a Content-Length body.
    if let Ok(BodyFraming::ContentLength(x)) = framing {
        if let Some(next) = rest.get(x as usize..).filter(|r| !r.is_empty()) {
            if let Ok(Some((_, m))) = parse_head(next) {
                assert!(m <= next.len());
                class.push_str(" | pipelined");
            }
        }
    }
    class
}

pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = request_seeds();
    let host = h("host", HOST);
    out.push(("plain-get".into(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()));
    out.push(("http10-keepalive".into(), request_bytes("GET", "/b/k", "HTTP/1.0", &[host.clone(), h("connection", "keep-alive")], b"")));
    out.push(("options-star".into(), request_bytes("OPTIONS", "*", "HTTP/1.1", &[host.clone()], b"")));
    out.push(("absolute-form".into(), request_bytes("GET", "http://s3.fuzz.test/bucket/key?versionId=1", "HTTP/1.1", &[host.clone()], b"")));
    out.push(("absolute-form-query-only".into(), request_bytes("GET", "https://s3.fuzz.test?list-type=2", "HTTP/1.1", &[host.clone()], b"")));
    out.push((
        "chunked-ext-trailers".into(),
        request_bytes("PUT", "/b/k", "HTTP/1.1", &[host.clone(), h("transfer-encoding", "chunked")], b"5;name=value\r\nhello\r\n6 \r\n world\r\n0\r\nx-trailer: one\r\nx-other:two\r\n\r\n"),
    ));
    out.push(("chunked-te-list".into(), request_bytes("PUT", "/b/k", "HTTP/1.1", &[host.clone(), h("transfer-encoding", "identity, chunked")], &te_chunked(b"abcdefghij", 3, Some("x-t: v")))));
    out.push((
        "pipelined".into(),
        [request_bytes("PUT", "/b/k", "HTTP/1.1", &[host.clone(), h("content-length", "3")], b"abc"), request_bytes("GET", "/b/k", "HTTP/1.1", &[host.clone()], b"")].concat(),
    ));
    out.push((
        "many-headers".into(),
        request_bytes(
            "GET",
            "/b/k?a=1&a=2&b&c=%41%zz+x",
            "HTTP/1.1",
            &[
                host.clone(),
                h("range", "bytes=-500"),
                h("if-modified-since", "Sunday, 06-Nov-94 08:49:37 GMT"),
                h("if-unmodified-since", "Sun Nov  6 08:49:37 1994"),
                h("content-length", "0, 0"),
                h("x-amz-checksum-sha1", "2jmj7l5rSw0yVb/vlWAYkK/YBwk="),
                h("x-amz-checksum-crc64nvme", "AAAAAAAAAAA="),
                h("user-agent", "fuzz/1.0 \u{e9}"),
            ],
            b"",
        ),
    ));
    out.push(("conflicting-framing".into(), request_bytes("PUT", "/b/k", "HTTP/1.1", &[host.clone(), h("content-length", "3"), h("transfer-encoding", "chunked")], b"3\r\nabc\r\n0\r\n\r\n")));
    out.push(("partial-head".into(), b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Le".to_vec()));
    out.push(("unsigned-aws-chunked-anonymous".into(), {
        let body = super::s3req::aws_chunked(None, b"0123456789", 4, &[("x-amz-checksum-crc32", dataplane::s3::checksum::checksum_base64(ChecksumAlgorithm::Crc32, b"0123456789"))], false);
        request_bytes(
            "PUT",
            "/b/k",
            "HTTP/1.1",
            &[host.clone(), h("content-encoding", "aws-chunked"), h("x-amz-trailer", "x-amz-checksum-crc32"), h("x-amz-decoded-content-length", "10"), h("content-length", &body.len().to_string())],
            &body,
        )
    }));
    out
}
