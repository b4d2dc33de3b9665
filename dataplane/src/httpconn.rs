//! HTTP/1.1 connections on glommio sockets: request heads, bodies
//! (Content-Length, chunked, aws-chunked on top of either), responses.
//! Parsing itself is sans-IO (`s3::http`, `s3::chunked`); this module only
//! moves bytes.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::tls::RustlsStream;

use crate::s3::chunked::AwsChunkedDecoder;
use crate::s3::error::{S3Error, S3ErrorCode};
use crate::s3::http::{self, BodyFraming, ChunkedDecoder, RequestHead, Step};

/// Bytes read from the socket at a time (and the head buffer size).
pub const READ_BUF_BYTES: usize = 64 << 10;

/// The byte stream under a connection: plain TCP, or TLS (rustls) for the
/// S3 API's HTTPS listener.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<RustlsStream>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => t.tcp(),
        }
    }

    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(t) => t.read(buf).await,
        }
    }

    async fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(b).await,
            Stream::Tls(t) => t.write_all_vectored(&[b]).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush().await,
            // (rustls output is flushed by every write)
            Stream::Tls(_) => Ok(()),
        }
    }

    /// Ends our side: close_notify first under TLS, then FIN.
    async fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.shutdown(std::net::Shutdown::Write).await.map_err(|e| io::Error::other(e.to_string())),
            Stream::Tls(t) => {
                t.send_close_notify().await?;
                t.tcp().shutdown(std::net::Shutdown::Write).await.map_err(|e| io::Error::other(e.to_string()))
            }
        }
    }
}

pub struct Conn {
    pub stream: Stream,
    pub peer: SocketAddr,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
}

#[derive(Debug)]
pub enum ReadHeadError {
    /// The peer closed the connection between requests.
    Closed,
    Io(io::Error),
    Bad(S3Error),
}

impl Conn {
    pub fn new(stream: TcpStream, idle: Duration) -> io::Result<Conn> {
        Conn::over(Stream::Plain(stream), idle)
    }

    pub fn over(stream: Stream, idle: Duration) -> io::Result<Conn> {
        let tcp = stream.tcp();
        let peer = tcp.peer_addr()?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(idle))?;
        tcp.set_write_timeout(Some(idle))?;
        Ok(Conn { stream, peer, buf: vec![0; READ_BUF_BYTES], pos: 0, len: 0 })
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..self.len]
    }

    /// Reads more bytes into the buffer; 0 means end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.pos == self.len {
            self.pos = 0;
            self.len = 0;
        } else if self.len == self.buf.len() {
            self.buf.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
        }
        if self.len == self.buf.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "read buffer full"));
        }
        let n = self.stream.read(&mut self.buf[self.len..]).await?;
        self.len += n;
        Ok(n)
    }

    pub async fn read_head(&mut self) -> Result<RequestHead, ReadHeadError> {
        loop {
            match http::parse_head(self.buffered()) {
                Ok(Some((head, used))) => {
                    self.pos += used;
                    return Ok(head);
                }
                Ok(None) => {}
                Err(e) => return Err(ReadHeadError::Bad(e.to_s3_error())),
            }
            if self.pos > 0 && self.pos == self.len {
                self.pos = 0;
                self.len = 0;
            }
            if self.len - self.pos >= http::MAX_HEAD_BYTES {
                return Err(ReadHeadError::Bad(S3Error::new(
                    S3ErrorCode::RequestHeaderSectionTooLarge,
                    format!("the request head exceeds {} bytes", http::MAX_HEAD_BYTES),
                )));
            }
            let had = self.len - self.pos;
            match self.fill().await {
                Ok(0) if had == 0 => return Err(ReadHeadError::Closed),
                Ok(0) => return Err(ReadHeadError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed inside a request head"))),
                Ok(_) => {}
                Err(e) => return Err(ReadHeadError::Io(e)),
            }
        }
    }

    pub async fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        self.stream.write_all(b).await
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        self.stream.flush().await
    }

    /// Ends the connection gracefully ("lingering close"): flushes, sends
    /// FIN, then reads and discards whatever the client still sends, for at
    /// most [`LINGER_MAX`] and [`LINGER_MAX_BYTES`]. Closing a socket that
    /// still holds unread request bytes makes the kernel answer with a TCP
    /// reset, and a client that is still sending its body then loses the
    /// error response sent before that body was read (e.g. 403 for a bad
    /// signature or 404 for a missing bucket on a multi-MiB PUT).
    pub async fn close_gracefully(&mut self) {
        if self.stream.flush().await.is_err() {
            return;
        }
        if self.stream.shutdown_write().await.is_err() {
            return;
        }
        let deadline = std::time::Instant::now() + LINGER_MAX;
        let mut discarded = 0u64;
        while discarded < LINGER_MAX_BYTES {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left < Duration::from_millis(1) || self.stream.tcp().set_read_timeout(Some(left)).is_err() {
                return;
            }
            match self.stream.read(&mut self.buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => discarded += n as u64,
            }
        }
    }
}

/// Longest a closing connection keeps discarding what the client still sends.
pub const LINGER_MAX: Duration = Duration::from_secs(2);
/// Most bytes a closing connection discards before it gives up.
pub const LINGER_MAX_BYTES: u64 = 64 << 20;

enum Framing {
    Length(u64),
    Chunked(ChunkedDecoder),
}

/// Reads one request body, decoding transfer and content encodings.
pub struct Body {
    framing: Framing,
    aws: Option<AwsChunkedDecoder>,
    /// Transfer-decoded bytes waiting for the aws-chunked decoder.
    stage: Vec<u8>,
    /// Decoded bytes a decoder handed out beyond what the caller asked for.
    carry: Vec<u8>,
    carry_pos: usize,
    lower_done: bool,
    pub done: bool,
    /// Decoded body bytes handed out so far.
    pub decoded: u64,
    /// Raw bytes taken from the connection.
    pub raw: u64,
    pub trailers: Vec<(String, String)>,
}

fn incomplete(msg: &str) -> S3Error {
    S3Error::new(S3ErrorCode::IncompleteBody, msg.to_string())
}

fn io_to_s3(e: io::Error) -> S3Error {
    if e.kind() == io::ErrorKind::TimedOut {
        S3Error::new(S3ErrorCode::RequestTimeout, "Your socket connection to the server was not read from or written to within the timeout period.")
    } else {
        incomplete(&format!("the request body could not be read: {e}"))
    }
}

impl Body {
    pub fn new(framing: BodyFraming, aws: Option<AwsChunkedDecoder>) -> Body {
        let (framing, lower_done) = match framing {
            BodyFraming::None => (Framing::Length(0), true),
            BodyFraming::ContentLength(n) => (Framing::Length(n), n == 0),
            BodyFraming::Chunked => (Framing::Chunked(ChunkedDecoder::new()), false),
        };
        Body { framing, aws, stage: Vec::new(), carry: Vec::new(), carry_pos: 0, lower_done, done: false, decoded: 0, raw: 0, trailers: Vec::new() }
    }

    /// The aws-chunked decoder (for its checksum once the body is done).
    pub fn aws(&self) -> Option<&AwsChunkedDecoder> {
        self.aws.as_ref()
    }

    /// Appends up to `max` decoded bytes to `out`. Returns how many; 0 only
    /// once the body is complete.
    pub async fn read(&mut self, conn: &mut Conn, out: &mut Vec<u8>, max: usize) -> Result<usize, S3Error> {
        if max == 0 {
            return Ok(0);
        }
        loop {
            if self.carry_pos < self.carry.len() {
                let n = (self.carry.len() - self.carry_pos).min(max);
                out.extend_from_slice(&self.carry[self.carry_pos..self.carry_pos + n]);
                self.carry_pos += n;
                if self.carry_pos == self.carry.len() {
                    self.carry.clear();
                    self.carry_pos = 0;
                }
                self.decoded += n as u64;
                return Ok(n);
            }
            if self.done {
                return Ok(0);
            }
            let Body { aws, stage, carry, .. } = self;
            match aws {
                None => {
                    let mut excess = std::mem::take(carry);
                    let n = self.read_lower(conn, out, max, &mut excess).await?;
                    self.carry = excess;
                    if n == 0 && self.lower_done && self.carry.is_empty() {
                        self.done = true;
                        return Ok(0);
                    }
                    self.decoded += n as u64;
                    if n > 0 {
                        return Ok(n);
                    }
                }
                Some(dec) => {
                    if !stage.is_empty() || self.lower_done {
                        match dec.next(stage)? {
                            Step::Data { range, consumed } => {
                                carry.extend_from_slice(&stage[range]);
                                stage.drain(..consumed);
                                continue;
                            }
                            Step::NeedMore { consumed } => {
                                stage.drain(..consumed);
                                if self.lower_done {
                                    self.trailers = dec.finish()?;
                                    self.done = true;
                                    continue;
                                }
                            }
                            Step::Done { consumed, trailers } => {
                                stage.drain(..consumed);
                                self.trailers = trailers;
                                self.done = true;
                                continue;
                            }
                        }
                    }
                    let mut st = std::mem::take(&mut self.stage);
                    let mut none = Vec::new();
                    let n = self.read_lower(conn, &mut st, usize::MAX, &mut none).await?;
                    self.stage = st;
                    if n == 0 && !self.lower_done {
                        return Err(incomplete("connection closed inside the request body"));
                    }
                }
            }
        }
    }

    /// Reads transfer-decoded bytes: up to `max` into `out`, anything a
    /// decoder produced beyond that into `excess`. 0 at the end of the body.
    async fn read_lower(&mut self, conn: &mut Conn, out: &mut Vec<u8>, max: usize, excess: &mut Vec<u8>) -> Result<usize, S3Error> {
        loop {
            match &mut self.framing {
                Framing::Length(remaining) => {
                    if *remaining == 0 {
                        self.lower_done = true;
                        return Ok(0);
                    }
                    let want = (*remaining).min(max.min(READ_BUF_BYTES * 16) as u64) as usize;
                    let have = conn.len - conn.pos;
                    if have > 0 {
                        let n = have.min(want);
                        out.extend_from_slice(&conn.buf[conn.pos..conn.pos + n]);
                        conn.pos += n;
                        *remaining -= n as u64;
                        self.raw += n as u64;
                        if *remaining == 0 {
                            self.lower_done = true;
                        }
                        return Ok(n);
                    }
                    // Nothing buffered: read straight into the destination.
                    let start = out.len();
                    out.resize(start + want, 0);
                    let n = match conn.stream.read(&mut out[start..]).await {
                        Ok(n) => n,
                        Err(e) => {
                            out.truncate(start);
                            return Err(io_to_s3(e));
                        }
                    };
                    out.truncate(start + n);
                    if n == 0 {
                        return Err(incomplete(&format!("the connection closed with {remaining} bytes of the body still expected (Content-Length)")));
                    }
                    *remaining -= n as u64;
                    self.raw += n as u64;
                    if *remaining == 0 {
                        self.lower_done = true;
                    }
                    return Ok(n);
                }
                Framing::Chunked(dec) => {
                    if self.lower_done {
                        return Ok(0);
                    }
                    if conn.pos < conn.len {
                        let input = &conn.buf[conn.pos..conn.len];
                        match dec.next(input)? {
                            Step::Data { range, consumed } => {
                                let take = range.len().min(max);
                                out.extend_from_slice(&input[range.start..range.start + take]);
                                excess.extend_from_slice(&input[range.start + take..range.end]);
                                conn.pos += consumed;
                                self.raw += consumed as u64;
                                return Ok(take);
                            }
                            Step::NeedMore { consumed } => {
                                conn.pos += consumed;
                                self.raw += consumed as u64;
                            }
                            Step::Done { consumed, trailers } => {
                                conn.pos += consumed;
                                self.raw += consumed as u64;
                                if !trailers.is_empty() {
                                    self.trailers = trailers;
                                }
                                self.lower_done = true;
                                return Ok(0);
                            }
                        }
                    }
                    match conn.fill().await {
                        Ok(0) => return Err(incomplete("connection closed inside a chunked request body")),
                        Ok(_) => {}
                        Err(e) => return Err(io_to_s3(e)),
                    }
                }
            }
        }
    }

    /// Reads the whole body (for small XML requests), refusing more than `limit`.
    pub async fn read_to_end(&mut self, conn: &mut Conn, limit: usize) -> Result<Vec<u8>, S3Error> {
        let mut v = Vec::new();
        loop {
            let n = self.read(conn, &mut v, READ_BUF_BYTES).await?;
            if n == 0 {
                return Ok(v);
            }
            if v.len() > limit {
                return Err(S3Error::new(S3ErrorCode::InvalidRequest, format!("the request body exceeds {limit} bytes")));
            }
        }
    }
}
