//! Sans-IO decoder for `Content-Encoding: aws-chunked` bodies.
//!
//! Wire format (all line ends CRLF):
//!
//! ```text
//! <hex size>[;chunk-signature=<64 hex>]\r\n<data>\r\n      repeated
//! 0[;chunk-signature=<64 hex>]\r\n                          final chunk
//! <trailer-name>:<value>\r\n                                 optional trailers
//! [x-amz-trailer-signature:<64 hex>\r\n]                     signed trailer mode
//! \r\n
//! ```
//!
//! boto3 / the AWS CLI (over HTTPS) send `STREAMING-UNSIGNED-PAYLOAD-TRAILER`:
//! a single unsigned chunk per MiB, `0\r\n`, then `x-amz-checksum-crc32:...\r\n\r\n`,
//! and the whole thing is itself inside `Transfer-Encoding: chunked`.
//!
//! The decoder never copies chunk data: [`AwsChunkedDecoder::next`] returns
//! ranges into the input slice. Only the short framing lines are buffered
//! (bounded by [`MAX_AWS_CHUNK_LINE_BYTES`] / [`MAX_AWS_TRAILER_BYTES`]).
//!
//! Data is handed out before the signature of its chunk (checked at the end
//! of each chunk) and before the trailer checksum are verified: the caller
//! must only commit the object after [`Step::Done`].

use sha2::{Digest, Sha256};

use super::checksum::{ChecksumAlgorithm, Checksummer};
use super::error::{S3Error, S3ErrorCode};
pub use super::http::Step;
use super::http::{parse_chunk_size, parse_field_line, LineBuf, LineStatus};
use super::sigv4::{ChunkVerifier, PayloadMode};

/// Longest chunk header or trailer line.
pub const MAX_AWS_CHUNK_LINE_BYTES: usize = 4096;
/// Largest chunk accepted in the signed modes (SDKs that sign chunks use
/// 64 KiB - 1 MiB chunks).
pub const MAX_SIGNED_CHUNK_SIZE: u64 = 16 * 1024 * 1024;
/// Largest chunk accepted in the unsigned-trailer mode. Some SDKs emit one
/// chunk per body buffer, so this is S3's largest single PUT; data is never
/// buffered, so the size costs nothing.
pub const MAX_UNSIGNED_CHUNK_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// Largest trailer section (all trailer lines together).
pub const MAX_AWS_TRAILER_BYTES: usize = 16 * 1024;
/// Most trailer fields (the signature included).
pub const MAX_AWS_TRAILERS: usize = 16;
/// Name of the trailer carrying the trailer signature.
pub const TRAILER_SIGNATURE: &str = "x-amz-trailer-signature";

/// Which aws-chunked variant the `x-amz-content-sha256` header announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsChunkedMode {
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`
    Signed,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`
    SignedTrailer,
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`
    UnsignedTrailer,
}

impl AwsChunkedMode {
    pub fn is_signed(self) -> bool {
        !matches!(self, AwsChunkedMode::UnsignedTrailer)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Data(u64),
    DataEnd,
    Trailers,
    AfterTrailerSignature,
    Done,
}

/// Streaming aws-chunked decoder; see the module docs and [`Step`].
#[derive(Debug, Clone)]
pub struct AwsChunkedDecoder {
    mode: AwsChunkedMode,
    expected_trailers: Vec<String>,
    verifier: Option<ChunkVerifier>,
    state: State,
    line: LineBuf,
    chunk_hash: Option<Sha256>,
    chunk_signature: Vec<u8>,
    checksum: Option<Checksummer>,
    checksum_value: Option<String>,
    trailers: Vec<(String, String)>,
    canonical_trailers: Vec<u8>,
    trailer_bytes: usize,
    trailer_signed: bool,
    skipped_blank: bool,
    decoded: u64,
    expected_len: Option<u64>,
    max_chunk: u64,
}

fn framing(msg: impl std::fmt::Display) -> S3Error {
    S3Error::new(
        S3ErrorCode::InvalidRequest,
        format!("Malformed aws-chunked body: {msg}"),
    )
}

fn trailer_err(msg: impl std::fmt::Display) -> S3Error {
    S3Error::new(
        S3ErrorCode::MalformedTrailerError,
        format!("Malformed aws-chunked trailer: {msg}"),
    )
}

/// Splits an `x-amz-trailer` header value into lower-cased names.
pub fn parse_trailer_header(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// True when a `Content-Encoding` value lists `aws-chunked`.
pub fn is_aws_chunked(content_encoding: &str) -> bool {
    content_encoding
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case("aws-chunked"))
}

/// The `Content-Encoding` to store with the object: the header without
/// `aws-chunked` (S3 strips it), or `None` if nothing remains.
pub fn strip_aws_chunked(content_encoding: &str) -> Option<String> {
    let rest: Vec<&str> = content_encoding
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!rest.is_empty()).then(|| rest.join(","))
}

impl AwsChunkedDecoder {
    /// `expected_trailer_names` is the `x-amz-trailer` header (lower-cased
    /// names; see [`parse_trailer_header`]). Every declared trailer must be
    /// sent and no other may be; a declared `x-amz-checksum-*` trailer is
    /// checked against the decoded data automatically (`BadDigest`).
    /// With a `verifier`, chunk signatures (signed modes) and the trailer
    /// signature (`SignedTrailer`) are verified.
    pub fn new(
        mode: AwsChunkedMode,
        expected_trailer_names: Vec<String>,
        verifier: Option<ChunkVerifier>,
    ) -> AwsChunkedDecoder {
        let expected: Vec<String> = expected_trailer_names
            .into_iter()
            .map(|n| n.trim().to_ascii_lowercase())
            .collect();
        let checksum = expected
            .iter()
            .find_map(|n| Checksummer::from_header_name(n));
        AwsChunkedDecoder {
            mode,
            expected_trailers: expected,
            verifier: if mode.is_signed() { verifier } else { None },
            state: State::Header,
            line: LineBuf::new(MAX_AWS_CHUNK_LINE_BYTES),
            chunk_hash: None,
            chunk_signature: Vec::new(),
            checksum,
            checksum_value: None,
            trailers: Vec::new(),
            canonical_trailers: Vec::new(),
            trailer_bytes: 0,
            trailer_signed: false,
            skipped_blank: false,
            decoded: 0,
            expected_len: None,
            max_chunk: if mode.is_signed() {
                MAX_SIGNED_CHUNK_SIZE
            } else {
                MAX_UNSIGNED_CHUNK_SIZE
            },
        }
    }

    /// Decoder for an authenticated request, or `None` if its payload mode is
    /// not aws-chunked. `x_amz_trailer` is the `x-amz-trailer` header value.
    pub fn for_payload(
        payload: &PayloadMode,
        x_amz_trailer: Option<&str>,
    ) -> Option<AwsChunkedDecoder> {
        let trailers = x_amz_trailer.map(parse_trailer_header).unwrap_or_default();
        Some(match payload {
            PayloadMode::StreamingSigned(v) => {
                AwsChunkedDecoder::new(AwsChunkedMode::Signed, trailers, Some(v.clone()))
            }
            PayloadMode::StreamingSignedTrailer(v) => {
                AwsChunkedDecoder::new(AwsChunkedMode::SignedTrailer, trailers, Some(v.clone()))
            }
            PayloadMode::StreamingUnsignedTrailer => {
                AwsChunkedDecoder::new(AwsChunkedMode::UnsignedTrailer, trailers, None)
            }
            PayloadMode::Unsigned | PayloadMode::Sha256(_) => return None,
        })
    }

    /// Requires exactly `n` decoded bytes (`x-amz-decoded-content-length`);
    /// more or fewer is `IncompleteBody`.
    pub fn with_decoded_length(mut self, n: u64) -> AwsChunkedDecoder {
        self.expected_len = Some(n);
        self
    }

    /// Overrides the per-chunk size limit.
    pub fn with_max_chunk_size(mut self, n: u64) -> AwsChunkedDecoder {
        self.max_chunk = n;
        self
    }

    pub fn mode(&self) -> AwsChunkedMode {
        self.mode
    }

    /// Decoded bytes produced so far.
    pub fn decoded_len(&self) -> u64 {
        self.decoded
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// After `Done`: the verified trailer checksum (algorithm and base64).
    pub fn checksum(&self) -> Option<(ChecksumAlgorithm, &str)> {
        match (&self.checksum, &self.checksum_value) {
            (Some(c), Some(v)) => Some((c.algorithm(), v.as_str())),
            _ => None,
        }
    }

    /// Advances over `input`. Ranges in the result index into `input`.
    pub fn next(&mut self, input: &[u8]) -> Result<Step, S3Error> {
        let mut pos = 0usize;
        loop {
            match self.state {
                State::Done => {
                    return Ok(Step::Done {
                        consumed: 0,
                        trailers: Vec::new(),
                    })
                }
                State::Data(remaining) => {
                    if pos == input.len() {
                        return Ok(Step::NeedMore { consumed: pos });
                    }
                    let take = remaining.min((input.len() - pos) as u64) as usize;
                    let data = &input[pos..pos + take];
                    if let Some(h) = &mut self.chunk_hash {
                        h.update(data);
                    }
                    if let Some(c) = &mut self.checksum {
                        c.update(data);
                    }
                    self.add_decoded(take as u64)?;
                    let left = remaining - take as u64;
                    if left == 0 {
                        self.end_of_chunk_data()?;
                        self.state = State::DataEnd;
                    } else {
                        self.state = State::Data(left);
                    }
                    return Ok(Step::Data {
                        range: pos..pos + take,
                        consumed: pos + take,
                    });
                }
                State::Header | State::DataEnd | State::Trailers | State::AfterTrailerSignature => {
                    let status = self.line.feed(&input[pos..]).map_err(|too_long| {
                        if too_long {
                            framing(format!("line longer than {MAX_AWS_CHUNK_LINE_BYTES} bytes"))
                        } else {
                            framing("line not terminated by CRLF")
                        }
                    })?;
                    match status {
                        LineStatus::Partial => {
                            return Ok(Step::NeedMore {
                                consumed: input.len(),
                            })
                        }
                        LineStatus::Complete(n) => pos += n,
                    }
                    let done = self.on_line()?;
                    self.line.clear();
                    if done {
                        self.state = State::Done;
                        return Ok(Step::Done {
                            consumed: pos,
                            trailers: std::mem::take(&mut self.trailers),
                        });
                    }
                }
            }
        }
    }

    /// Call when the enclosing body has ended while [`next`](Self::next)
    /// still wanted more. Accepts bodies whose final CRLF is missing after
    /// the trailers (as in AWS's documented signed-trailer example); any
    /// other truncation is `IncompleteBody`. Returns the trailers.
    pub fn finish(&mut self) -> Result<Vec<(String, String)>, S3Error> {
        match self.state {
            State::Done => Ok(Vec::new()),
            State::AfterTrailerSignature if self.line.is_empty() => {
                self.complete()?;
                self.state = State::Done;
                Ok(std::mem::take(&mut self.trailers))
            }
            State::Trailers
                if self.line.is_empty()
                    && !self.trailers.is_empty()
                    && !(self.mode == AwsChunkedMode::SignedTrailer && self.verifier.is_some()) =>
            {
                self.complete()?;
                self.state = State::Done;
                Ok(std::mem::take(&mut self.trailers))
            }
            _ => Err(S3Error::new(
                S3ErrorCode::IncompleteBody,
                format!(
                    "The aws-chunked body ended early after {} decoded bytes.",
                    self.decoded
                ),
            )),
        }
    }

    fn add_decoded(&mut self, n: u64) -> Result<(), S3Error> {
        self.decoded += n;
        if let Some(max) = self.expected_len {
            if self.decoded > max {
                return Err(S3Error::new(
                    S3ErrorCode::IncompleteBody,
                    format!("The aws-chunked body carries more than the {max} bytes announced by x-amz-decoded-content-length."),
                ));
            }
        }
        Ok(())
    }

    fn end_of_chunk_data(&mut self) -> Result<(), S3Error> {
        if let (Some(v), Some(h)) = (&mut self.verifier, self.chunk_hash.take()) {
            let digest: [u8; 32] = h.finalize().into();
            v.verify_chunk(&digest, &self.chunk_signature)?;
        }
        Ok(())
    }

    /// Handles one complete line; returns true when the body is complete.
    fn on_line(&mut self) -> Result<bool, S3Error> {
        match self.state {
            State::Header => {
                self.on_chunk_header()?;
                Ok(false)
            }
            State::DataEnd => {
                if !self.line.is_empty() {
                    return Err(framing("chunk data not followed by CRLF"));
                }
                self.state = State::Header;
                Ok(false)
            }
            State::Trailers => {
                if self.line.is_empty() {
                    let expecting = !self.expected_trailers.is_empty()
                        || self.mode == AwsChunkedMode::SignedTrailer;
                    if self.trailers.is_empty()
                        && !self.trailer_signed
                        && expecting
                        && !self.skipped_blank
                    {
                        // Some encoders put a blank line between the final
                        // chunk and the trailers; tolerate one.
                        self.skipped_blank = true;
                        return Ok(false);
                    }
                    self.complete()?;
                    return Ok(true);
                }
                self.on_trailer_line()?;
                Ok(false)
            }
            State::AfterTrailerSignature => {
                if !self.line.is_empty() {
                    return Err(trailer_err("no trailer may follow x-amz-trailer-signature"));
                }
                self.complete()?;
                Ok(true)
            }
            State::Data(_) | State::Done => unreachable!(),
        }
    }

    fn on_chunk_header(&mut self) -> Result<(), S3Error> {
        let line = self.line.line();
        let (size, rest) = parse_chunk_size(line).ok_or_else(|| framing("invalid chunk size"))?;
        if size > self.max_chunk {
            return Err(framing(format!(
                "chunk of {size} bytes exceeds the limit of {} bytes",
                self.max_chunk
            )));
        }
        let signature = match rest {
            [] => None,
            [b';', ext @ ..] => {
                let (name, value) = match ext.iter().position(|&b| b == b'=') {
                    Some(i) => (&ext[..i], &ext[i + 1..]),
                    None => (ext, &[][..]),
                };
                if name.is_empty() {
                    return Err(framing("empty chunk extension"));
                } else if name == b"chunk-signature" {
                    Some(value.to_vec())
                } else if self.mode.is_signed() {
                    return Err(framing("expected ;chunk-signature="));
                } else {
                    None // unknown extension on an unsigned chunk: ignore
                }
            }
            _ => return Err(framing("invalid chunk size")),
        };
        if self.mode.is_signed() {
            let sig = signature.ok_or_else(|| {
                S3Error::new(
                    S3ErrorCode::SignatureDoesNotMatch,
                    "A signed aws-chunked chunk carries no chunk-signature.",
                )
            })?;
            self.chunk_signature = sig;
            if self.verifier.is_some() {
                self.chunk_hash = Some(Sha256::new());
            }
        }
        if size == 0 {
            self.end_of_chunk_data()?;
            if let Some(n) = self.expected_len {
                if self.decoded != n {
                    return Err(S3Error::new(
                        S3ErrorCode::IncompleteBody,
                        format!("The aws-chunked body carries {} bytes, but x-amz-decoded-content-length is {n}.", self.decoded),
                    ));
                }
            }
            self.state = State::Trailers;
        } else {
            self.state = State::Data(size);
        }
        Ok(())
    }

    fn on_trailer_line(&mut self) -> Result<(), S3Error> {
        let line = self.line.line();
        self.trailer_bytes += line.len() + 2;
        if self.trailer_bytes > MAX_AWS_TRAILER_BYTES || self.trailers.len() >= MAX_AWS_TRAILERS {
            return Err(trailer_err("trailer section too large"));
        }
        let (name, value) =
            parse_field_line(line).ok_or_else(|| trailer_err("invalid trailer line"))?;
        if name == TRAILER_SIGNATURE {
            if self.mode != AwsChunkedMode::SignedTrailer {
                return Err(trailer_err("x-amz-trailer-signature is only allowed with STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"));
            }
            if let Some(v) = &mut self.verifier {
                v.verify_trailer(&self.canonical_trailers, value.as_bytes())?;
            }
            self.trailer_signed = true;
            self.state = State::AfterTrailerSignature;
            return Ok(());
        }
        if !self.expected_trailers.contains(&name) {
            return Err(trailer_err(format!(
                "trailer \"{name}\" was not declared in x-amz-trailer"
            )));
        }
        if self.trailers.iter().any(|(n, _)| *n == name) {
            return Err(trailer_err(format!("trailer \"{name}\" is repeated")));
        }
        self.canonical_trailers.extend_from_slice(name.as_bytes());
        self.canonical_trailers.push(b':');
        self.canonical_trailers.extend_from_slice(value.as_bytes());
        self.canonical_trailers.push(b'\n');
        self.trailers.push((name, value));
        Ok(())
    }

    /// End-of-body checks: declared trailers present, trailer signed when
    /// required, trailer checksum matches.
    fn complete(&mut self) -> Result<(), S3Error> {
        for e in &self.expected_trailers {
            if !self.trailers.iter().any(|(n, _)| n == e) {
                return Err(trailer_err(format!("declared trailer \"{e}\" is missing")));
            }
        }
        if self.mode == AwsChunkedMode::SignedTrailer
            && self.verifier.is_some()
            && !self.trailer_signed
        {
            return Err(trailer_err("x-amz-trailer-signature is missing"));
        }
        if let Some(c) = &self.checksum {
            let name = c.algorithm().header_name();
            let value = self
                .trailers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone());
            if let Some(v) = value {
                let computed = c.clone().verify_base64(&v)?;
                self.checksum_value = Some(computed);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::checksum::checksum_base64;
    use super::super::encoding::hex_lower;
    use super::*;

    fn sha(d: &[u8]) -> [u8; 32] {
        Sha256::digest(d).into()
    }

    /// Feeds `body` in pieces of `piece` bytes, keeping unconsumed bytes.
    /// Calls `finish()` when the input runs out.
    type Decoded = (Vec<u8>, Vec<(String, String)>, AwsChunkedDecoder);

    fn run(mut dec: AwsChunkedDecoder, body: &[u8], piece: usize) -> Result<Decoded, S3Error> {
        let mut out = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut fed = 0;
        loop {
            match dec.next(&buf)? {
                Step::Data { range, consumed } => {
                    assert!(!range.is_empty());
                    out.extend_from_slice(&buf[range]);
                    buf.drain(..consumed);
                }
                Step::NeedMore { consumed } => {
                    assert_eq!(consumed, buf.len());
                    buf.clear();
                    if fed == body.len() {
                        let t = dec.finish()?;
                        return Ok((out, t, dec));
                    }
                    let end = (fed + piece).min(body.len());
                    buf.extend_from_slice(&body[fed..end]);
                    fed = end;
                }
                Step::Done { consumed, trailers } => {
                    buf.drain(..consumed);
                    assert!(buf.is_empty() && fed == body.len(), "bytes left after Done");
                    return Ok((out, trailers, dec));
                }
            }
        }
    }

    const AWS_SK: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn aws_verifier(seed: &str) -> ChunkVerifier {
        let mut s = [0u8; 32];
        s.copy_from_slice(&hex::decode(seed));
        ChunkVerifier::from_secret(AWS_SK, "20130524T000000Z", "us-east-1", s)
    }

    mod hex {
        pub fn decode(s: &str) -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        }
    }

    /// The body of AWS's "Transferring Payload in Multiple Chunks" example.
    fn aws_signed_body() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n");
        b.extend_from_slice(&[b'a'; 65536]);
        b.extend_from_slice(b"\r\n400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n");
        b.extend_from_slice(&[b'a'; 1024]);
        b.extend_from_slice(b"\r\n0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n");
        b
    }

    /// The body of AWS's trailing-header example (with the final CRLF).
    fn aws_trailer_body(final_crlf: bool) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"10000;chunk-signature=b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2\r\n");
        b.extend_from_slice(&[b'a'; 65536]);
        b.extend_from_slice(b"\r\n400;chunk-signature=1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7\r\n");
        b.extend_from_slice(&[b'a'; 1024]);
        b.extend_from_slice(b"\r\n0;chunk-signature=2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992\r\n");
        b.extend_from_slice(b"x-amz-checksum-crc32c:sOO8/Q==\r\n");
        b.extend_from_slice(b"x-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n");
        if final_crlf {
            b.extend_from_slice(b"\r\n");
        }
        b
    }

    fn signed_decoder() -> AwsChunkedDecoder {
        AwsChunkedDecoder::new(
            AwsChunkedMode::Signed,
            vec![],
            Some(aws_verifier(
                "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
            )),
        )
        .with_decoded_length(66560)
    }

    fn trailer_decoder() -> AwsChunkedDecoder {
        AwsChunkedDecoder::new(
            AwsChunkedMode::SignedTrailer,
            parse_trailer_header("x-amz-checksum-crc32c"),
            Some(aws_verifier(
                "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
            )),
        )
        .with_decoded_length(66560)
    }

    #[test]
    fn aws_signed_example_decodes_at_various_piece_sizes() {
        let body = aws_signed_body();
        assert_eq!(body.len(), 66824); // the documented Content-Length
        for piece in [1, 2, 3, 64, 85, 86, 87, 1000, 65536, 65621, body.len()] {
            let (data, trailers, dec) = run(signed_decoder(), &body, piece).unwrap();
            assert_eq!(data.len(), 66560, "piece {piece}");
            assert!(data.iter().all(|&b| b == b'a'));
            assert!(trailers.is_empty());
            assert!(dec.is_done());
            assert_eq!(dec.decoded_len(), 66560);
        }
    }

    #[test]
    fn aws_signed_example_every_two_way_split() {
        let body = aws_signed_body();
        // Every split point (a representative stride over the big chunk,
        // every byte around the framing).
        let mut points: Vec<usize> = (0..200).collect();
        points.extend((200..body.len() - 200).step_by(997));
        points.extend(65536 + 80..65536 + 200);
        points.extend(body.len() - 200..=body.len());
        for split in points {
            let mut dec = signed_decoder();
            let mut out = 0usize;
            let mut done = false;
            for part in [&body[..split], &body[split..]] {
                let mut pos = 0;
                while !done {
                    match dec.next(&part[pos..]).unwrap() {
                        Step::Data { range, consumed } => {
                            out += range.len();
                            pos += consumed;
                        }
                        Step::NeedMore { .. } => break,
                        Step::Done { consumed, .. } => {
                            pos += consumed;
                            assert_eq!(pos, part.len());
                            done = true;
                        }
                    }
                }
            }
            assert!(done, "split {split}");
            assert_eq!(out, 66560);
        }
    }

    #[test]
    fn aws_trailer_example_decodes_with_and_without_final_crlf() {
        for final_crlf in [true, false] {
            let body = aws_trailer_body(final_crlf);
            for piece in [1, 7, 4096, body.len()] {
                let (data, trailers, dec) = run(trailer_decoder(), &body, piece).unwrap();
                assert_eq!(data.len(), 66560);
                assert_eq!(
                    trailers,
                    vec![("x-amz-checksum-crc32c".to_string(), "sOO8/Q==".to_string())]
                );
                assert_eq!(
                    dec.checksum(),
                    Some((ChecksumAlgorithm::Crc32c, "sOO8/Q=="))
                );
            }
        }
    }

    #[test]
    fn bad_chunk_signature_is_rejected() {
        let mut body = aws_signed_body();
        // Flip one data byte of the second chunk.
        body[65536 + 200] = b'b';
        let e = run(signed_decoder(), &body, 4096).unwrap_err();
        assert_eq!(
            (e.code, e.status()),
            (S3ErrorCode::SignatureDoesNotMatch, 403)
        );
        // Wrong signature text on the final chunk.
        let body = aws_signed_body();
        let s = String::from_utf8_lossy(&body)
            .replace("b6c6ea8a", "b6c6ea8b")
            .into_bytes();
        assert_eq!(
            run(signed_decoder(), &s, 100).unwrap_err().code,
            S3ErrorCode::SignatureDoesNotMatch
        );
        // Chunks re-ordered (signature chain broken).
        let mut swapped = Vec::new();
        swapped.extend_from_slice(b"400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n");
        swapped.extend_from_slice(&[b'a'; 1024]);
        swapped.extend_from_slice(b"\r\n");
        assert_eq!(
            run(signed_decoder(), &swapped, 100).unwrap_err().code,
            S3ErrorCode::SignatureDoesNotMatch
        );
        // Missing signature on a signed chunk.
        assert_eq!(
            run(signed_decoder(), b"3\r\nabc\r\n", 100)
                .unwrap_err()
                .code,
            S3ErrorCode::SignatureDoesNotMatch
        );
        // Without a verifier signatures are parsed but not checked.
        let dec = AwsChunkedDecoder::new(AwsChunkedMode::Signed, vec![], None);
        let body = String::from_utf8_lossy(&aws_signed_body())
            .replace("b6c6ea8a", "b6c6ea8b")
            .into_bytes();
        assert_eq!(run(dec, &body, 999).unwrap().0.len(), 66560);
    }

    #[test]
    fn bad_trailer_signature_and_checksum() {
        let body = aws_trailer_body(true);
        let tampered = String::from_utf8_lossy(&body)
            .replace("d81f82fc", "d81f82fd")
            .into_bytes();
        let e = run(trailer_decoder(), &tampered, 333).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::SignatureDoesNotMatch);
        // A changed checksum breaks the trailer signature first.
        let tampered = String::from_utf8_lossy(&body)
            .replace("sOO8/Q==", "AAAAAA==")
            .into_bytes();
        assert_eq!(
            run(trailer_decoder(), &tampered, 333).unwrap_err().code,
            S3ErrorCode::SignatureDoesNotMatch
        );
        // Missing trailer signature.
        let no_sig: Vec<u8> = {
            let s = String::from_utf8_lossy(&body).into_owned();
            let i = s.find("x-amz-trailer-signature").unwrap();
            let mut v = s.as_bytes()[..i].to_vec();
            v.extend_from_slice(b"\r\n");
            v
        };
        assert_eq!(
            run(trailer_decoder(), &no_sig, 512).unwrap_err().code,
            S3ErrorCode::MalformedTrailerError
        );
    }

    fn unsigned_body(data: &[u8], chunk: usize, trailer: &str) -> Vec<u8> {
        let mut b = Vec::new();
        for c in data.chunks(chunk) {
            b.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            b.extend_from_slice(c);
            b.extend_from_slice(b"\r\n");
        }
        b.extend_from_slice(b"0\r\n");
        b.extend_from_slice(trailer.as_bytes());
        b.extend_from_slice(b"\r\n");
        b
    }

    fn unsigned_decoder(trailer: &str) -> AwsChunkedDecoder {
        AwsChunkedDecoder::new(
            AwsChunkedMode::UnsignedTrailer,
            parse_trailer_header(trailer),
            None,
        )
    }

    #[test]
    fn unsigned_trailer_checksums_all_algorithms_every_split() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 31) as u8).collect();
        for alg in ChecksumAlgorithm::ALL {
            let value = checksum_base64(alg, &data);
            let body = unsigned_body(&data, 128, &format!("{}:{value}\r\n", alg.header_name()));
            for split in 0..=body.len() {
                let mut dec = unsigned_decoder(alg.header_name()).with_decoded_length(300);
                let mut out = Vec::new();
                let mut result = None;
                for part in [&body[..split], &body[split..]] {
                    let mut pos = 0;
                    while result.is_none() {
                        match dec.next(&part[pos..]).unwrap() {
                            Step::Data { range, consumed } => {
                                out.extend_from_slice(&part[pos..][range]);
                                pos += consumed;
                            }
                            Step::NeedMore { .. } => break,
                            Step::Done { consumed, trailers } => {
                                pos += consumed;
                                assert_eq!(pos, part.len());
                                result = Some(trailers);
                            }
                        }
                    }
                }
                assert_eq!(out, data, "{alg:?} split {split}");
                assert_eq!(
                    result.unwrap(),
                    vec![(alg.header_name().to_string(), value.clone())]
                );
                assert_eq!(dec.checksum(), Some((alg, value.as_str())));
            }
            // Wrong checksum value -> BadDigest naming the algorithm.
            let wrong = checksum_base64(alg, b"other");
            let body = unsigned_body(&data, 100, &format!("{}:{wrong}\r\n", alg.header_name()));
            let e = run(unsigned_decoder(alg.header_name()), &body, 1).unwrap_err();
            assert_eq!((e.code, e.status()), (S3ErrorCode::BadDigest, 400));
            assert!(
                e.message.contains(alg.name())
                    && e.message.contains(&wrong)
                    && e.message.contains(&value),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn trailer_rules() {
        let data = b"hello";
        let crc = checksum_base64(ChecksumAlgorithm::Crc32, data);
        let good = format!("x-amz-checksum-crc32:{crc}\r\n");
        // Undeclared trailer.
        let body = unsigned_body(data, 5, &format!("{good}x-amz-meta-evil:1\r\n"));
        assert_eq!(
            run(unsigned_decoder("x-amz-checksum-crc32"), &body, 3)
                .unwrap_err()
                .code,
            S3ErrorCode::MalformedTrailerError
        );
        // Declared but missing: after the tolerated blank line the decoder
        // still waits for the trailer, so the body is incomplete...
        let body = unsigned_body(data, 5, "");
        assert_eq!(
            run(unsigned_decoder("x-amz-checksum-crc32"), &body, 3)
                .unwrap_err()
                .code,
            S3ErrorCode::IncompleteBody
        );
        // ...and a second blank line ends it with the trailer missing.
        let body = unsigned_body(data, 5, "\r\n");
        assert_eq!(
            run(unsigned_decoder("x-amz-checksum-crc32"), &body, 3)
                .unwrap_err()
                .code,
            S3ErrorCode::MalformedTrailerError
        );
        // Another declared trailer is sent instead.
        let body = unsigned_body(
            data,
            5,
            "x-amz-checksum-sha1:Hky2IliKJhuuGr3WmY3uFFqiC8s=\r\n",
        );
        assert_eq!(
            run(unsigned_decoder("x-amz-checksum-crc32"), &body, 3)
                .unwrap_err()
                .code,
            S3ErrorCode::MalformedTrailerError
        );
        // Repeated.
        let body = unsigned_body(data, 5, &format!("{good}{good}"));
        assert_eq!(
            run(unsigned_decoder("x-amz-checksum-crc32"), &body, 3)
                .unwrap_err()
                .code,
            S3ErrorCode::MalformedTrailerError
        );
        // Trailer signature in unsigned mode.
        let body = unsigned_body(
            data,
            5,
            &format!("{good}x-amz-trailer-signature:{}\r\n", "0".repeat(64)),
        );
        assert_eq!(
            run(unsigned_decoder("x-amz-checksum-crc32"), &body, 3)
                .unwrap_err()
                .code,
            S3ErrorCode::MalformedTrailerError
        );
        // Malformed checksum value.
        let body = unsigned_body(data, 5, "x-amz-checksum-crc32:!!\r\n");
        assert_eq!(
            run(unsigned_decoder("x-amz-checksum-crc32"), &body, 3)
                .unwrap_err()
                .code,
            S3ErrorCode::InvalidRequest
        );
        // Blank line between the final chunk and the trailers is tolerated.
        let mut body = b"5\r\nhello\r\n0\r\n\r\n".to_vec();
        body.extend_from_slice(good.as_bytes());
        body.extend_from_slice(b"\r\n");
        let (d, t, _) = run(unsigned_decoder("x-amz-checksum-crc32"), &body, 2).unwrap();
        assert_eq!((d.as_slice(), t.len()), (&data[..], 1));
        // No trailers at all in unsigned mode without x-amz-trailer.
        let (d, t, _) = run(unsigned_decoder(""), b"5\r\nhello\r\n0\r\n\r\n", 4).unwrap();
        assert_eq!((d.as_slice(), t.len()), (&data[..], 0));
        // Missing final CRLF after the trailers: accepted at finish().
        let body = format!("5\r\nhello\r\n0\r\n{good}");
        let (d, t, _) = run(unsigned_decoder("x-amz-checksum-crc32"), body.as_bytes(), 4).unwrap();
        assert_eq!((d.as_slice(), t.len()), (&data[..], 1));
        // Oversized trailer section.
        let mut big = String::new();
        for i in 0..20 {
            big.push_str(&format!("x-t{i}:v\r\n"));
        }
        let names: Vec<String> = (0..20).map(|i| format!("x-t{i}")).collect();
        let body = unsigned_body(data, 5, &big);
        let dec = AwsChunkedDecoder::new(AwsChunkedMode::UnsignedTrailer, names, None);
        assert_eq!(
            run(dec, &body, 64).unwrap_err().code,
            S3ErrorCode::MalformedTrailerError
        );
    }

    #[test]
    fn framing_errors_and_limits() {
        let dec = || unsigned_decoder("");
        for bad in [
            &b"zz\r\n"[..],
            b"5;\r\nhello\r\n",
            b"5 \r\nhello\r\n",
            b"5\r\nhelloXX\r\n0\r\n\r\n",
            b"5\nhello\r\n",
            b"11111111111111111\r\n",
        ] {
            let e = run(dec(), bad, 1).unwrap_err();
            assert_eq!(
                e.code,
                S3ErrorCode::InvalidRequest,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Oversized chunk-size line, byte by byte: rejected once the limit
        // is crossed, without buffering more.
        let mut long = b"5;".to_vec();
        long.resize(MAX_AWS_CHUNK_LINE_BYTES + 100, b'x');
        let e = run(dec(), &long, 1).unwrap_err();
        assert!(e.message.contains("longer than"), "{}", e.message);
        // Chunk above the size limit.
        let e = run(
            dec().with_max_chunk_size(4),
            b"5\r\nhello\r\n0\r\n\r\n",
            100,
        )
        .unwrap_err();
        assert!(e.message.contains("exceeds the limit"), "{}", e.message);
        assert_eq!(MAX_SIGNED_CHUNK_SIZE, 16 * 1024 * 1024);
        let e = run(
            signed_decoder(),
            format!("1000001;chunk-signature={}\r\n", "0".repeat(64)).as_bytes(),
            100,
        )
        .unwrap_err();
        assert!(e.message.contains("exceeds the limit"), "{}", e.message);
        // Decoded length mismatch, both directions.
        let e = run(
            dec().with_decoded_length(4),
            b"5\r\nhello\r\n0\r\n\r\n",
            100,
        )
        .unwrap_err();
        assert_eq!(e.code, S3ErrorCode::IncompleteBody);
        let e = run(
            dec().with_decoded_length(6),
            b"5\r\nhello\r\n0\r\n\r\n",
            100,
        )
        .unwrap_err();
        assert_eq!(e.code, S3ErrorCode::IncompleteBody);
    }

    #[test]
    fn truncated_bodies_are_incomplete() {
        let body = aws_signed_body();
        for cut in [1, 2, 3, 50, 1000, 66000, body.len() - 1] {
            let e = run(signed_decoder(), &body[..cut], 4096).unwrap_err();
            assert_eq!(
                (e.code, e.status()),
                (S3ErrorCode::IncompleteBody, 400),
                "cut {cut}"
            );
        }
        let body = unsigned_body(b"hello", 5, "x-amz-checksum-crc32:NhCmhg==\r\n");
        for cut in 0..body.len() - 2 {
            assert!(
                run(unsigned_decoder("x-amz-checksum-crc32"), &body[..cut], 3).is_err(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn content_encoding_helpers() {
        assert!(is_aws_chunked("aws-chunked"));
        assert!(is_aws_chunked("gzip, AWS-Chunked"));
        assert!(!is_aws_chunked("gzip"));
        assert_eq!(strip_aws_chunked("aws-chunked"), None);
        assert_eq!(
            strip_aws_chunked("gzip,aws-chunked"),
            Some("gzip".to_string())
        );
        assert_eq!(
            strip_aws_chunked("aws-chunked, gzip, br"),
            Some("gzip,br".to_string())
        );
    }

    #[test]
    fn for_payload_modes() {
        assert!(AwsChunkedDecoder::for_payload(&PayloadMode::Unsigned, None).is_none());
        assert!(AwsChunkedDecoder::for_payload(&PayloadMode::Sha256([0; 32]), None).is_none());
        let d = AwsChunkedDecoder::for_payload(
            &PayloadMode::StreamingUnsignedTrailer,
            Some("x-amz-checksum-crc32"),
        )
        .unwrap();
        assert_eq!(d.mode(), AwsChunkedMode::UnsignedTrailer);
        let v = aws_verifier("4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9");
        let d =
            AwsChunkedDecoder::for_payload(&PayloadMode::StreamingSigned(v.clone()), None).unwrap();
        assert_eq!(d.mode(), AwsChunkedMode::Signed);
        let (data, _, _) = run(d, &aws_signed_body(), 5000).unwrap();
        assert_eq!(data.len(), 66560);
        let d = AwsChunkedDecoder::for_payload(
            &PayloadMode::StreamingSignedTrailer(v),
            Some("X-Amz-Checksum-CRC32C"),
        )
        .unwrap();
        assert_eq!(d.mode(), AwsChunkedMode::SignedTrailer);
        assert_eq!(
            parse_trailer_header(" X-Amz-Checksum-Crc32 , x-amz-foo,"),
            vec!["x-amz-checksum-crc32", "x-amz-foo"]
        );
    }

    #[test]
    fn client_side_signing_round_trip() {
        // Build a signed-trailer body with our own signer and decode it.
        let seed = sha(b"seed");
        let mut signer = ChunkVerifier::from_secret("secret", "20240102T030405Z", "auto", seed);
        let data: Vec<u8> = (0..20000u32).map(|i| i as u8).collect();
        let mut body = Vec::new();
        for c in data.chunks(8192).chain(std::iter::once(&[][..])) {
            let sig = signer.sign_chunk(&sha(c));
            body.extend_from_slice(
                format!("{:x};chunk-signature={}\r\n", c.len(), hex_lower(&sig)).as_bytes(),
            );
            body.extend_from_slice(c);
            if !c.is_empty() {
                body.extend_from_slice(b"\r\n");
            }
        }
        let crc = checksum_base64(ChecksumAlgorithm::Crc64Nvme, &data);
        let canonical = format!("x-amz-checksum-crc64nvme:{crc}\n");
        let tsig = signer.sign_trailer(canonical.as_bytes());
        body.extend_from_slice(
            format!(
                "x-amz-checksum-crc64nvme:{crc}\r\nx-amz-trailer-signature:{}\r\n\r\n",
                hex_lower(&tsig)
            )
            .as_bytes(),
        );
        let make = || {
            AwsChunkedDecoder::new(
                AwsChunkedMode::SignedTrailer,
                vec!["x-amz-checksum-crc64nvme".into()],
                Some(ChunkVerifier::from_secret(
                    "secret",
                    "20240102T030405Z",
                    "auto",
                    seed,
                )),
            )
        };
        for piece in [1, 13, 8192, body.len()] {
            let (out, t, dec) = run(make(), &body, piece).unwrap();
            assert_eq!(out, data);
            assert_eq!(t.len(), 1);
            assert_eq!(dec.checksum().unwrap().1, crc);
        }
        // Wrong secret fails on the first chunk.
        let dec = AwsChunkedDecoder::new(
            AwsChunkedMode::SignedTrailer,
            vec!["x-amz-checksum-crc64nvme".into()],
            Some(ChunkVerifier::from_secret(
                "other",
                "20240102T030405Z",
                "auto",
                seed,
            )),
        );
        assert_eq!(
            run(dec, &body, 100).unwrap_err().code,
            S3ErrorCode::SignatureDoesNotMatch
        );
    }
}
