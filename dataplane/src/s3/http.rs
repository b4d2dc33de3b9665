//! Sans-IO HTTP/1.1 pieces: request-head parsing with hard limits, path and
//! query decoding, response-head writing, and a `Transfer-Encoding: chunked`
//! body decoder.
//!
//! Nothing here performs I/O. The caller owns the buffers; the parsers only
//! look at the bytes they are given.

use std::ops::Range;

use super::encoding::{percent_decode_lenient, percent_decode_strict};
use super::error::{S3Error, S3ErrorCode};

/// Largest request head (request line + headers + blank line) accepted.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest number of header fields accepted in a request head.
pub const MAX_HEADERS: usize = 100;
/// Longest chunk-size line (`hex-size[;ext]\r\n`) of a chunked body.
pub const MAX_CHUNK_LINE_BYTES: usize = 4096;
/// Largest trailer section (all trailer lines together) of a chunked body.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Largest number of trailer fields of a chunked body.
pub const MAX_TRAILERS: usize = 32;
/// Largest single chunk of a `Transfer-Encoding: chunked` body. Data is
/// never buffered, so this is only a sanity bound (S3's largest single PUT).
pub const MAX_HTTP_CHUNK_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// Why a request head could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// The head is larger than [`MAX_HEAD_BYTES`].
    TooLarge,
    /// More than [`MAX_HEADERS`] header fields.
    TooManyHeaders,
    /// Syntax error in the request line or a header field.
    Malformed(String),
    /// Not HTTP/1.0 or HTTP/1.1.
    UnsupportedVersion,
    /// The request target is not origin-form (or absolute-form / `*`).
    BadRequestTarget,
    /// A header value is not valid UTF-8 / contains control characters.
    InvalidHeaderValue(String),
    /// Content-Length is not a number, or several disagree.
    InvalidContentLength,
    /// Both Transfer-Encoding and Content-Length are present.
    ConflictingFraming,
    /// A transfer coding other than `chunked`.
    UnsupportedTransferEncoding(String),
}

impl HeadError {
    /// The S3 error to answer with.
    pub fn to_s3_error(&self) -> S3Error {
        match self {
            HeadError::TooLarge => S3Error::new(
                S3ErrorCode::RequestHeaderSectionTooLarge,
                format!("Your request header section exceeds the maximum allowed size of {MAX_HEAD_BYTES} bytes."),
            ),
            HeadError::TooManyHeaders => S3Error::new(
                S3ErrorCode::RequestHeaderSectionTooLarge,
                format!("Your request has more than {MAX_HEADERS} header fields."),
            ),
            HeadError::Malformed(m) => {
                S3Error::new(S3ErrorCode::InvalidRequest, format!("Malformed HTTP request: {m}"))
            }
            HeadError::UnsupportedVersion => {
                S3Error::new(S3ErrorCode::InvalidRequest, "Only HTTP/1.0 and HTTP/1.1 are supported.")
            }
            HeadError::BadRequestTarget => S3Error::from_code(S3ErrorCode::InvalidURI),
            HeadError::InvalidHeaderValue(name) => S3Error::new(
                S3ErrorCode::InvalidArgument,
                format!("The value of header '{name}' is not valid UTF-8 text."),
            ),
            HeadError::InvalidContentLength => S3Error::new(
                S3ErrorCode::InvalidArgument,
                "The Content-Length header is invalid or specified more than once with different values.",
            ),
            HeadError::ConflictingFraming => S3Error::new(
                S3ErrorCode::InvalidRequest,
                "A request must not carry both Transfer-Encoding and Content-Length.",
            ),
            HeadError::UnsupportedTransferEncoding(te) => S3Error::new(
                S3ErrorCode::NotImplemented,
                format!("Transfer-Encoding '{te}' is not implemented; only 'chunked' is supported."),
            )
            .with_extra("Header", "Transfer-Encoding"),
        }
    }
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_s3_error().message)
    }
}

impl std::error::Error for HeadError {}

impl From<HeadError> for S3Error {
    fn from(e: HeadError) -> S3Error {
        e.to_s3_error()
    }
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// Path as received (still percent-encoded), without the query. Always
    /// starts with `/`, except for the `*` target of `OPTIONS *`.
    pub raw_path: String,
    /// Query as received (still percent-encoded), without the `?`.
    pub raw_query: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    /// Header fields in order: lower-cased names, values trimmed.
    pub headers: Vec<(String, String)>,
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// Exactly this many bytes follow the head.
    ContentLength(u64),
    /// `Transfer-Encoding: chunked`; use [`ChunkedDecoder`].
    Chunked,
}

fn comma_tokens(v: &str) -> impl Iterator<Item = &str> {
    v.split(',')
        .map(|t| t.trim_matches(|c| c == ' ' || c == '\t'))
        .filter(|t| !t.is_empty())
}

impl RequestHead {
    /// First value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of a header, in order.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The Content-Length, if any. Repeated fields (or a comma list) must all
    /// carry the same decimal value.
    pub fn content_length(&self) -> Result<Option<u64>, HeadError> {
        let mut result: Option<u64> = None;
        for v in self.header_all("content-length") {
            let mut any = false;
            for tok in v.split(',') {
                let tok = tok.trim_matches(|c| c == ' ' || c == '\t');
                if tok.is_empty() || tok.len() > 20 || !tok.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(HeadError::InvalidContentLength);
                }
                let n: u64 = tok.parse().map_err(|_| HeadError::InvalidContentLength)?;
                if result.is_some_and(|r| r != n) {
                    return Err(HeadError::InvalidContentLength);
                }
                result = Some(n);
                any = true;
            }
            if !any {
                return Err(HeadError::InvalidContentLength);
            }
        }
        Ok(result)
    }

    fn transfer_codings(&self) -> Vec<&str> {
        self.header_all("transfer-encoding")
            .flat_map(comma_tokens)
            .collect()
    }

    /// True when the final transfer coding is `chunked`. `identity` (a
    /// no-op, no longer registered) is skipped, as `body_framing` skips it.
    pub fn is_chunked_transfer(&self) -> bool {
        self.transfer_codings()
            .into_iter()
            .rfind(|c| !c.eq_ignore_ascii_case("identity"))
            .is_some_and(|c| c.eq_ignore_ascii_case("chunked"))
    }

    /// How the body is framed. Rejects Transfer-Encoding together with
    /// Content-Length (request smuggling) and codings other than `chunked`.
    pub fn body_framing(&self) -> Result<BodyFraming, HeadError> {
        let codings: Vec<&str> = self
            .transfer_codings()
            .into_iter()
            .filter(|c| !c.eq_ignore_ascii_case("identity"))
            .collect();
        let cl = self.content_length()?;
        if !codings.is_empty() {
            if cl.is_some() {
                return Err(HeadError::ConflictingFraming);
            }
            if codings.len() == 1 && codings[0].eq_ignore_ascii_case("chunked") {
                return Ok(BodyFraming::Chunked);
            }
            return Err(HeadError::UnsupportedTransferEncoding(codings.join(", ")));
        }
        Ok(match cl {
            Some(n) => BodyFraming::ContentLength(n),
            None => BodyFraming::None,
        })
    }

    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub fn expects_continue(&self) -> bool {
        self.version_minor >= 1
            && self
                .header_all("expect")
                .any(|v| v.trim().eq_ignore_ascii_case("100-continue"))
    }

    /// Whether the connection may be reused after this request.
    pub fn keep_alive(&self) -> bool {
        let mut close = false;
        let mut keep = false;
        for tok in self.header_all("connection").flat_map(comma_tokens) {
            if tok.eq_ignore_ascii_case("close") {
                close = true;
            } else if tok.eq_ignore_ascii_case("keep-alive") {
                keep = true;
            }
        }
        if close {
            return false;
        }
        self.version_minor >= 1 || keep
    }
}

/// Parses a request head from the start of `buf`.
///
/// * `Ok(None)`: the head is not complete yet; read more and call again with
///   the whole buffer.
/// * `Ok(Some((head, n)))`: the head occupies `buf[..n]`; the body starts at `n`.
/// * `Err(TooLarge)` once [`MAX_HEAD_BYTES`] bytes are buffered without a
///   complete head.
pub fn parse_head(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let window = &buf[..buf.len().min(MAX_HEAD_BYTES)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let consumed = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= MAX_HEAD_BYTES {
                Err(HeadError::TooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(HeadError::UnsupportedVersion),
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    };
    let method = req.method.unwrap_or_default().to_string();
    let version_minor = match req.version {
        Some(v @ (0 | 1)) => v,
        _ => return Err(HeadError::UnsupportedVersion),
    };
    let (raw_path, raw_query) = split_target(req.path.unwrap_or_default())?;
    let mut out_headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        let value = match std::str::from_utf8(h.value) {
            Ok(v) if !v.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) => v,
            _ => return Err(HeadError::InvalidHeaderValue(name)),
        };
        out_headers.push((
            name,
            value.trim_matches(|c| c == ' ' || c == '\t').to_string(),
        ));
    }
    Ok(Some((
        RequestHead {
            method,
            raw_path,
            raw_query,
            version_minor,
            headers: out_headers,
        },
        consumed,
    )))
}

fn split_target(target: &str) -> Result<(String, String), HeadError> {
    if target == "*" {
        return Ok(("*".to_string(), String::new()));
    }
    let mut t = target;
    // absolute-form (RFC 9112 §3.2.2): drop scheme and authority.
    for scheme in ["http://", "https://"] {
        if t.get(..scheme.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(scheme))
        {
            let rest = &t[scheme.len()..];
            t = match rest.find(['/', '?']) {
                Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
                Some(i) => return Ok(("/".to_string(), rest[i + 1..].to_string())),
                None => "/",
            };
            break;
        }
    }
    if !t.starts_with('/') {
        return Err(HeadError::BadRequestTarget);
    }
    Ok(match t.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (t.to_string(), String::new()),
    })
}

/// Percent-decodes a raw path. Malformed escapes or a result that is not
/// UTF-8 give `InvalidURI`. `+` stays a plus sign.
pub fn decode_path(raw: &str) -> Result<String, S3Error> {
    let bytes = percent_decode_strict(raw.as_bytes(), false).ok_or_else(|| {
        S3Error::new(
            S3ErrorCode::InvalidURI,
            "Couldn't parse the specified URI: malformed percent-encoding.",
        )
    })?;
    String::from_utf8(bytes).map_err(|_| {
        S3Error::new(
            S3ErrorCode::InvalidURI,
            "Couldn't parse the specified URI: the path is not valid UTF-8.",
        )
    })
}

/// Splits a path-style raw path `/bucket/key...` into decoded bucket and key.
/// The split happens before decoding, so `%2F` inside the key stays in the
/// key. `/` gives `(None, None)`, `/bucket` and `/bucket/` give no key.
pub fn split_path_style(raw_path: &str) -> Result<(Option<String>, Option<String>), S3Error> {
    let p = raw_path.strip_prefix('/').unwrap_or(raw_path);
    if p.is_empty() {
        return Ok((None, None));
    }
    let (b, k) = match p.split_once('/') {
        Some((b, k)) => (b, Some(k)),
        None => (p, None),
    };
    let bucket = decode_path(b)?;
    let key = match k {
        Some(k) if !k.is_empty() => Some(decode_path(k)?),
        _ => None,
    };
    Ok((Some(bucket), key))
}

/// Decodes a query string into (name, value) pairs in order. `+` means a
/// space (form encoding, as S3 treats it); malformed escapes are kept
/// literally and invalid UTF-8 is replaced. A name without `=` has an empty
/// value (`?uploads` -> `("uploads", "")`).
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                String::from_utf8_lossy(&percent_decode_lenient(s.as_bytes(), true)).into_owned()
            };
            (dec(n), dec(v))
        })
        .collect()
}

/// First value of a query parameter in a decoded query list.
pub fn query_param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Reason phrase for a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

fn push_sanitized(out: &mut Vec<u8>, s: &str) {
    // CR, LF and other controls would allow response splitting; replace them.
    out.extend(s.bytes().map(|b| {
        if (b < 0x20 && b != b'\t') || b == 0x7f {
            b' '
        } else {
            b
        }
    }));
}

/// Appends an HTTP/1.1 response head. `Content-Length` is written from
/// `content_length` (never for 1xx and 204), so `headers` should not contain
/// it. Control characters in names/values are replaced by spaces.
pub fn write_response_head(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&str, &str)],
    content_length: Option<u64>,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        push_sanitized(out, name);
        out.extend_from_slice(b": ");
        push_sanitized(out, value);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(n) = content_length {
        if status >= 200 && status != 204 {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// The interim response for `Expect: 100-continue`.
pub const CONTINUE_RESPONSE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// One step of a streaming body decoder. Ranges index into the `input`
/// slice passed to `next`; `consumed` counts bytes of that slice the decoder
/// is done with (the caller drops them and passes the rest next time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `input[range]` is decoded body data. `consumed == range.end`.
    Data {
        range: Range<usize>,
        consumed: usize,
    },
    /// All of the input up to `consumed` (always the whole input) was
    /// absorbed; call again with more bytes.
    NeedMore { consumed: usize },
    /// The body ended after `consumed` bytes; anything after belongs to the
    /// next request. `trailers` have lower-cased names.
    Done {
        consumed: usize,
        trailers: Vec<(String, String)>,
    },
}

/// Accumulates one CRLF-terminated line across input splits, with a limit.
#[derive(Debug, Clone)]
pub(super) struct LineBuf {
    buf: Vec<u8>,
    max: usize,
}

pub(super) enum LineStatus {
    /// A complete line is ready (without its CRLF) after consuming `usize`.
    Complete(usize),
    /// Everything was consumed, the line is not finished.
    Partial,
}

impl LineBuf {
    pub(super) fn new(max: usize) -> LineBuf {
        LineBuf {
            buf: Vec::new(),
            max,
        }
    }

    /// Feeds input. Errors with `Err(true)` when the line exceeds the limit
    /// and `Err(false)` on a bare LF.
    pub(super) fn feed(&mut self, input: &[u8]) -> Result<LineStatus, bool> {
        match input.iter().position(|&b| b == b'\n') {
            Some(i) => {
                if self.buf.len() + i + 1 > self.max {
                    return Err(true);
                }
                self.buf.extend_from_slice(&input[..=i]);
                let n = self.buf.len();
                if n < 2 || self.buf[n - 2] != b'\r' {
                    return Err(false);
                }
                self.buf.truncate(n - 2);
                Ok(LineStatus::Complete(i + 1))
            }
            None => {
                if self.buf.len() + input.len() > self.max {
                    return Err(true);
                }
                self.buf.extend_from_slice(input);
                Ok(LineStatus::Partial)
            }
        }
    }

    pub(super) fn line(&self) -> &[u8] {
        &self.buf
    }

    pub(super) fn clear(&mut self) {
        self.buf.clear();
    }

    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Parses a `name: value` header/trailer line; the name is lower-cased.
pub(super) fn parse_field_line(line: &[u8]) -> Option<(String, String)> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = &line[..colon];
    let is_tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    if name.is_empty() || !name.iter().all(is_tchar) {
        return None;
    }
    let value = std::str::from_utf8(&line[colon + 1..]).ok()?;
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return None;
    }
    Some((
        String::from_utf8_lossy(name).to_ascii_lowercase(),
        value.trim_matches(|c| c == ' ' || c == '\t').to_string(),
    ))
}

/// Parses the hex chunk size at the start of a chunk line; returns the size
/// and the rest of the line (extensions). Limits the number of digits so the
/// value cannot overflow.
pub(super) fn parse_chunk_size(line: &[u8]) -> Option<(u64, &[u8])> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in &line[..digits] {
        let v = (b as char).to_digit(16)? as u64;
        n = n.checked_mul(16)?.checked_add(v)?;
    }
    Some((n, &line[digits..]))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

/// Sans-IO decoder of a `Transfer-Encoding: chunked` request body.
///
/// ```text
/// loop {
///     match dec.next(&buf[pos..])? {
///         Step::Data { range, consumed } => { use(&buf[pos..][range]); pos += consumed }
///         Step::NeedMore { consumed } => { pos += consumed; /* read more */ }
///         Step::Done { consumed, trailers } => { pos += consumed; break }
///     }
/// }
/// ```
/// Chunk data is never copied; only the short size/trailer lines are
/// buffered internally (bounded by [`MAX_CHUNK_LINE_BYTES`] and
/// [`MAX_TRAILER_BYTES`]).
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: ChunkState,
    line: LineBuf,
    trailers: Vec<(String, String)>,
    trailer_bytes: usize,
    decoded: u64,
    max_chunk_size: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

fn chunk_err(msg: impl Into<String>) -> S3Error {
    S3Error::new(
        S3ErrorCode::InvalidRequest,
        format!("Malformed chunked transfer encoding: {}", msg.into()),
    )
}

impl ChunkedDecoder {
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder {
            state: ChunkState::Size,
            line: LineBuf::new(MAX_CHUNK_LINE_BYTES),
            trailers: Vec::new(),
            trailer_bytes: 0,
            decoded: 0,
            max_chunk_size: MAX_HTTP_CHUNK_SIZE,
        }
    }

    /// Lowers the per-chunk size limit (default [`MAX_HTTP_CHUNK_SIZE`]).
    pub fn with_max_chunk_size(mut self, max: u64) -> ChunkedDecoder {
        self.max_chunk_size = max;
        self
    }

    /// Data bytes produced so far.
    pub fn decoded_len(&self) -> u64 {
        self.decoded
    }

    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Advances over `input`; see [`Step`].
    pub fn next(&mut self, input: &[u8]) -> Result<Step, S3Error> {
        let mut pos = 0usize;
        loop {
            match self.state {
                ChunkState::Done => {
                    return Ok(Step::Done {
                        consumed: 0,
                        trailers: Vec::new(),
                    })
                }
                ChunkState::Data(remaining) => {
                    if pos == input.len() {
                        return Ok(Step::NeedMore { consumed: pos });
                    }
                    let take = remaining.min((input.len() - pos) as u64) as usize;
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                    self.decoded += take as u64;
                    return Ok(Step::Data {
                        range: pos..pos + take,
                        consumed: pos + take,
                    });
                }
                ChunkState::Size | ChunkState::DataEnd | ChunkState::Trailers => {
                    let status = self.line.feed(&input[pos..]).map_err(|too_long| {
                        if too_long {
                            if self.state == ChunkState::Trailers {
                                S3Error::new(
                                    S3ErrorCode::RequestHeaderSectionTooLarge,
                                    "Your request trailer section exceeds the maximum allowed size.",
                                )
                            } else {
                                chunk_err(format!("chunk line longer than {MAX_CHUNK_LINE_BYTES} bytes"))
                            }
                        } else {
                            chunk_err("line not terminated by CRLF")
                        }
                    })?;
                    let n = match status {
                        LineStatus::Partial => {
                            return Ok(Step::NeedMore {
                                consumed: input.len(),
                            })
                        }
                        LineStatus::Complete(n) => n,
                    };
                    pos += n;
                    match self.state {
                        ChunkState::Size => {
                            let (size, rest) = parse_chunk_size(self.line.line())
                                .ok_or_else(|| chunk_err("invalid chunk size"))?;
                            // Allow optional whitespace and extensions after the size.
                            let rest_ok = rest.iter().all(|&b| b == b' ' || b == b'\t')
                                || rest.iter().find(|&&b| b != b' ' && b != b'\t') == Some(&b';');
                            if !rest_ok {
                                return Err(chunk_err("invalid chunk size"));
                            }
                            if size > self.max_chunk_size {
                                return Err(chunk_err(format!(
                                    "chunk of {size} bytes exceeds the limit of {} bytes",
                                    self.max_chunk_size
                                )));
                            }
                            self.state = if size == 0 {
                                ChunkState::Trailers
                            } else {
                                ChunkState::Data(size)
                            };
                        }
                        ChunkState::DataEnd => {
                            if !self.line.is_empty() {
                                return Err(chunk_err("chunk data not followed by CRLF"));
                            }
                            self.state = ChunkState::Size;
                        }
                        ChunkState::Trailers => {
                            if self.line.is_empty() {
                                self.line.clear();
                                self.state = ChunkState::Done;
                                return Ok(Step::Done {
                                    consumed: pos,
                                    trailers: std::mem::take(&mut self.trailers),
                                });
                            }
                            self.trailer_bytes += self.line.line().len() + 2;
                            if self.trailer_bytes > MAX_TRAILER_BYTES
                                || self.trailers.len() >= MAX_TRAILERS
                            {
                                return Err(S3Error::new(
                                    S3ErrorCode::RequestHeaderSectionTooLarge,
                                    "Your request trailer section exceeds the maximum allowed size.",
                                ));
                            }
                            let field = parse_field_line(self.line.line())
                                .ok_or_else(|| chunk_err("malformed trailer field"))?;
                            self.trailers.push(field);
                        }
                        _ => unreachable!(),
                    }
                    self.line.clear();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(s: &str) -> RequestHead {
        let (h, n) = parse_head(s.as_bytes()).unwrap().unwrap();
        assert_eq!(n, s.len());
        h
    }

    #[test]
    fn parses_a_typical_s3_request() {
        let raw = "PUT /bucket/my%20key%2Bx?partNumber=1&uploadId=abc HTTP/1.1\r\n\
                   Host: localhost:9000\r\n\
                   X-Amz-Date:   20240101T000000Z  \r\n\
                   Content-Length: 5\r\n\
                   Expect: 100-continue\r\n\r\nhello";
        let (h, n) = parse_head(raw.as_bytes()).unwrap().unwrap();
        assert_eq!(&raw.as_bytes()[n..], b"hello");
        assert_eq!(h.method, "PUT");
        assert_eq!(h.raw_path, "/bucket/my%20key%2Bx");
        assert_eq!(h.raw_query, "partNumber=1&uploadId=abc");
        assert_eq!(h.version_minor, 1);
        assert_eq!(h.header("x-amz-date"), Some("20240101T000000Z"));
        assert_eq!(h.header("X-AMZ-DATE"), Some("20240101T000000Z"));
        assert_eq!(
            h.headers[0],
            ("host".to_string(), "localhost:9000".to_string())
        );
        assert_eq!(h.content_length(), Ok(Some(5)));
        assert_eq!(h.body_framing(), Ok(BodyFraming::ContentLength(5)));
        assert!(h.expects_continue());
        assert!(h.keep_alive());
        assert!(!h.is_chunked_transfer());
    }

    #[test]
    fn incomplete_heads_need_more_at_every_split() {
        let raw = b"GET /b/k?x=1 HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1\r\n\r\n";
        for i in 0..raw.len() {
            assert_eq!(parse_head(&raw[..i]), Ok(None), "split at {i}");
        }
        assert!(parse_head(raw).unwrap().is_some());
    }

    #[test]
    fn head_size_and_header_count_limits() {
        let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        big.resize(MAX_HEAD_BYTES + 10, b'a');
        assert_eq!(parse_head(&big), Err(HeadError::TooLarge));
        // Just under the limit but incomplete is still "need more".
        assert_eq!(parse_head(&big[..MAX_HEAD_BYTES - 1]), Ok(None));
        // A complete head that ends beyond the limit is rejected too.
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_head(&big), Err(HeadError::TooLarge));

        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("x-h{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(parse_head(many.as_bytes()), Err(HeadError::TooManyHeaders));
        let e: S3Error = HeadError::TooManyHeaders.into();
        assert_eq!(e.code, S3ErrorCode::RequestHeaderSectionTooLarge);
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn malformed_heads() {
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        assert_eq!(
            parse_head(b"GET / HTTP/2.0\r\n\r\n"),
            Err(HeadError::UnsupportedVersion)
        );
        assert_eq!(
            parse_head(b"GET foo HTTP/1.1\r\n\r\n"),
            Err(HeadError::BadRequestTarget)
        );
        assert_eq!(
            parse_head("GET / HTTP/1.1\r\nX-A: caf\u{e9}\r\n\r\n".as_bytes()).map(|o| o.is_some()),
            Ok(true)
        );
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nX-A: \xff\xfe\r\n\r\n"),
            Err(HeadError::InvalidHeaderValue(n)) if n == "x-a"
        ));
    }

    #[test]
    fn request_targets() {
        let h = head("GET http://example.com:9000/b/k?a=1 HTTP/1.1\r\n\r\n");
        assert_eq!((h.raw_path.as_str(), h.raw_query.as_str()), ("/b/k", "a=1"));
        let h = head("GET https://example.com HTTP/1.1\r\n\r\n");
        assert_eq!((h.raw_path.as_str(), h.raw_query.as_str()), ("/", ""));
        // Non-ASCII bytes in the target never panic.
        for t in ["ht\u{fc}p://x/", "h\u{fc}", "/\u{fc}", "http\u{fc}//"] {
            let _ = parse_head(format!("GET {t} HTTP/1.1\r\n\r\n").as_bytes());
        }
        let h = head("OPTIONS * HTTP/1.1\r\n\r\n");
        assert_eq!(h.raw_path, "*");
        let h = head("GET /b? HTTP/1.0\r\n\r\n");
        assert_eq!(
            (h.raw_path.as_str(), h.raw_query.as_str(), h.version_minor),
            ("/b", "", 0)
        );
        assert!(!h.keep_alive());
    }

    #[test]
    fn content_length_rules() {
        let h = head("PUT / HTTP/1.1\r\nContent-Length: 10\r\nContent-Length: 10\r\n\r\n");
        assert_eq!(h.content_length(), Ok(Some(10)));
        let h = head("PUT / HTTP/1.1\r\nContent-Length: 10, 10\r\n\r\n");
        assert_eq!(h.content_length(), Ok(Some(10)));
        for bad in [
            "10\r\nContent-Length: 11",
            "abc",
            "-1",
            "+5",
            "1 0",
            "",
            "99999999999999999999",
            "10,",
        ] {
            let h = head(&format!("PUT / HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n"));
            assert_eq!(
                h.content_length(),
                Err(HeadError::InvalidContentLength),
                "{bad:?}"
            );
        }
        let h = head("GET / HTTP/1.1\r\n\r\n");
        assert_eq!(h.content_length(), Ok(None));
        assert_eq!(h.body_framing(), Ok(BodyFraming::None));
        let h = head("PUT / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n");
        assert_eq!(h.content_length(), Ok(Some(u64::MAX)));
    }

    #[test]
    fn transfer_encoding_rules() {
        let h = head("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(h.is_chunked_transfer());
        assert_eq!(h.body_framing(), Ok(BodyFraming::Chunked));
        let h = head("PUT / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(h.body_framing(), Err(HeadError::ConflictingFraming));
        let h = head("PUT / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert!(h.is_chunked_transfer());
        let e = h.body_framing().unwrap_err();
        assert_eq!(
            e,
            HeadError::UnsupportedTransferEncoding("gzip, chunked".into())
        );
        assert_eq!(e.to_s3_error().status(), 501);
        let h = head("PUT / HTTP/1.1\r\nTransfer-Encoding: identity\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(h.body_framing(), Ok(BodyFraming::ContentLength(3)));
        assert!(!h.is_chunked_transfer());
        // `identity` after `chunked` changes nothing (found by the http fuzz
        // target: the two used to disagree).
        for te in ["chunked\r\nTransfer-Encoding: identity", "chunked, identity", "identity, chunked"] {
            let h = head(&format!("PUT / HTTP/1.1\r\nTransfer-Encoding: {te}\r\n\r\n"));
            assert_eq!(h.body_framing(), Ok(BodyFraming::Chunked), "{te}");
            assert!(h.is_chunked_transfer(), "{te}");
        }
    }

    #[test]
    fn connection_semantics() {
        assert!(!head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive());
        assert!(!head("GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n").keep_alive());
        assert!(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive());
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive());
        assert!(!head("PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expects_continue());
        assert!(head("PUT / HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n").expects_continue());
        assert!(!head("PUT / HTTP/1.1\r\n\r\n").expects_continue());
    }

    #[test]
    fn path_decoding() {
        assert_eq!(
            decode_path("/b/my%20file%2B%C3%BC.txt").unwrap(),
            "/b/my file+ü.txt"
        );
        assert_eq!(decode_path("/b/a+b").unwrap(), "/b/a+b");
        assert_eq!(
            decode_path("/b/..%2F..%2Fetc%2Fpasswd").unwrap(),
            "/b/../../etc/passwd"
        );
        assert_eq!(
            decode_path("/b/%zz").unwrap_err().code,
            S3ErrorCode::InvalidURI
        );
        assert_eq!(
            decode_path("/b/%C3").unwrap_err().code,
            S3ErrorCode::InvalidURI
        );
        assert_eq!(decode_path("/b/%00").unwrap(), "/b/\0");
    }

    #[test]
    fn path_style_split() {
        assert_eq!(split_path_style("/").unwrap(), (None, None));
        assert_eq!(
            split_path_style("/bucket").unwrap(),
            (Some("bucket".into()), None)
        );
        assert_eq!(
            split_path_style("/bucket/").unwrap(),
            (Some("bucket".into()), None)
        );
        assert_eq!(
            split_path_style("/bucket/dir/a%2Fb%20c").unwrap(),
            (Some("bucket".into()), Some("dir/a/b c".into()))
        );
        assert_eq!(
            split_path_style("/bucket//x").unwrap(),
            (Some("bucket".into()), Some("/x".into()))
        );
        assert!(split_path_style("/bucket/%").is_err());
    }

    #[test]
    fn query_parsing() {
        let q = parse_query("list-type=2&prefix=a%2Fb+c&uploads&empty=&=v&&x=%zz&u=%C3%BC");
        let want: Vec<(String, String)> = [
            ("list-type", "2"),
            ("prefix", "a/b c"),
            ("uploads", ""),
            ("empty", ""),
            ("", "v"),
            ("x", "%zz"),
            ("u", "ü"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(q, want);
        assert_eq!(query_param(&q, "prefix"), Some("a/b c"));
        assert_eq!(query_param(&q, "nope"), None);
        assert!(parse_query("").is_empty());
        assert_eq!(
            parse_query("a=1=2"),
            vec![("a".to_string(), "1=2".to_string())]
        );
    }

    #[test]
    fn response_heads() {
        let mut out = Vec::new();
        write_response_head(
            &mut out,
            200,
            &[("ETag", "\"abc\""), ("x-amz-request-id", "1")],
            Some(12),
        );
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nETag: \"abc\"\r\nx-amz-request-id: 1\r\nContent-Length: 12\r\n\r\n"
        );
        out.clear();
        write_response_head(&mut out, 204, &[], Some(0));
        assert_eq!(out, b"HTTP/1.1 204 No Content\r\n\r\n");
        out.clear();
        write_response_head(&mut out, 416, &[("X-Evil", "a\r\nSet-Cookie: x")], None);
        assert_eq!(
            out,
            b"HTTP/1.1 416 Range Not Satisfiable\r\nX-Evil: a  Set-Cookie: x\r\n\r\n"
        );
        for (code, phrase) in [
            (206, "Partial Content"),
            (304, "Not Modified"),
            (403, "Forbidden"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (409, "Conflict"),
            (411, "Length Required"),
            (412, "Precondition Failed"),
            (501, "Not Implemented"),
            (503, "Service Unavailable"),
            (507, "Insufficient Storage"),
        ] {
            assert_eq!(reason_phrase(code), phrase);
        }
        assert_eq!(CONTINUE_RESPONSE, b"HTTP/1.1 100 Continue\r\n\r\n");
    }

    /// Runs the decoder over `input` split into pieces of `piece` bytes
    /// (keeping unconsumed bytes like a real caller would).
    type Decoded = (Vec<u8>, Vec<(String, String)>, usize);

    fn decode_chunked(input: &[u8], piece: usize) -> Result<Decoded, S3Error> {
        let mut dec = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut fed = 0;
        let mut total_consumed = 0;
        loop {
            match dec.next(&buf)? {
                Step::Data { range, consumed } => {
                    out.extend_from_slice(&buf[range]);
                    buf.drain(..consumed);
                    total_consumed += consumed;
                }
                Step::NeedMore { consumed } => {
                    buf.drain(..consumed);
                    total_consumed += consumed;
                    if fed >= input.len() {
                        return Err(S3Error::from_code(S3ErrorCode::IncompleteBody));
                    }
                    let end = (fed + piece).min(input.len());
                    buf.extend_from_slice(&input[fed..end]);
                    fed = end;
                }
                Step::Done { consumed, trailers } => {
                    total_consumed += consumed;
                    assert!(dec.is_done());
                    assert_eq!(dec.decoded_len(), out.len() as u64);
                    return Ok((out, trailers, total_consumed));
                }
            }
        }
    }

    #[test]
    fn chunked_body_at_every_piece_size() {
        let body =
            b"5\r\nhello\r\n1;ext=1\r\n \r\nA \r\n0123456789\r\n0\r\nX-Checksum: abc \r\n\r\nNEXT";
        for piece in 1..=body.len() {
            let (data, trailers, consumed) = decode_chunked(body, piece).unwrap();
            assert_eq!(data, b"hello 0123456789");
            assert_eq!(
                trailers,
                vec![("x-checksum".to_string(), "abc".to_string())]
            );
            assert_eq!(consumed, body.len() - 4, "piece {piece}");
        }
    }

    #[test]
    fn chunked_every_split_point() {
        let body = b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";
        for split in 0..=body.len() {
            let mut dec = ChunkedDecoder::new();
            let mut out = Vec::new();
            let mut done = false;
            for part in [&body[..split], &body[split..]] {
                let mut pos = 0;
                loop {
                    match dec.next(&part[pos..]).unwrap() {
                        Step::Data { range, consumed } => {
                            out.extend_from_slice(&part[pos..][range]);
                            pos += consumed;
                        }
                        Step::NeedMore { consumed } => {
                            assert_eq!(pos + consumed, part.len());
                            break;
                        }
                        Step::Done { consumed, .. } => {
                            assert_eq!(pos + consumed, part.len());
                            done = true;
                            break;
                        }
                    }
                }
            }
            assert!(done, "split {split}");
            assert_eq!(out, b"abc0123456789abcdef");
        }
    }

    #[test]
    fn chunked_errors() {
        let cases: &[&[u8]] = &[
            b"zz\r\n",
            b"5\r\nhelloXX\r\n",
            b"5\nhello",
            b"5 x\r\n",
            b"11111111111111111\r\n",
            b"-1\r\n",
            b"0\r\nbad trailer\r\n\r\n",
        ];
        for c in cases {
            let r = decode_chunked(c, c.len());
            let e = r.unwrap_err();
            assert_eq!(
                e.code,
                S3ErrorCode::InvalidRequest,
                "{:?}",
                String::from_utf8_lossy(c)
            );
        }
        // Oversized chunk line (very long extension), fed byte by byte.
        let mut long = b"1;".to_vec();
        long.resize(MAX_CHUNK_LINE_BYTES + 5, b'x');
        let e = decode_chunked(&long, 1).unwrap_err();
        assert!(e.message.contains("chunk line longer"), "{}", e.message);
        // Chunk larger than the configured limit.
        let mut dec = ChunkedDecoder::new().with_max_chunk_size(10);
        assert!(dec.next(b"b\r\n").is_err());
        // Truncated body: decoder keeps asking for more.
        assert_eq!(
            decode_chunked(b"5\r\nhel", 2).unwrap_err().code,
            S3ErrorCode::IncompleteBody
        );
        // Trailer section too large.
        let mut t = b"0\r\n".to_vec();
        for i in 0..(MAX_TRAILERS + 1) {
            t.extend_from_slice(format!("x-t{i}: v\r\n").as_bytes());
        }
        t.extend_from_slice(b"\r\n");
        assert_eq!(
            decode_chunked(&t, 7).unwrap_err().code,
            S3ErrorCode::RequestHeaderSectionTooLarge
        );
    }
}
