//! Small blocking HTTP clients: an S3 client (SigV4, keep-alive) used by the
//! demo, the benchmarks and tests, and the admin API client used by the CLI.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::s3::datetime;
use crate::s3::encoding::uri_encode;
use crate::s3::sigv4::{sign_authorization, SignedRequest};

/// Longest response head a client accepts.
const MAX_RESPONSE_HEAD_BYTES: usize = 64 << 10;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn read_response(r: &mut BufReader<TcpStream>, head_only: bool) -> io::Result<Response> {
    let mut status_line = String::new();
    if r.read_line(&mut status_line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed before the response"));
    }
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    let mut total = status_line.len();
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line)?;
        total += n;
        if n == 0 || total > MAX_RESPONSE_HEAD_BYTES {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bad response head"));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let mut resp = Response { status, headers, body: Vec::new() };
    if status == 100 {
        return read_response(r, head_only);
    }
    if head_only || status == 204 || status == 304 {
        return Ok(resp);
    }
    if let Some(n) = resp.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        resp.body.resize(n, 0);
        r.read_exact(&mut resp.body)?;
    } else if resp.header("transfer-encoding").map(|v| v.contains("chunked")).unwrap_or(false) {
        loop {
            let mut line = String::new();
            r.read_line(&mut line)?;
            let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if n == 0 {
                let mut end = String::new();
                r.read_line(&mut end)?;
                break;
            }
            let at = resp.body.len();
            resp.body.resize(at + n, 0);
            r.read_exact(&mut resp.body[at..])?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    } else {
        r.read_to_end(&mut resp.body)?;
    }
    Ok(resp)
}

/// A blocking S3 client with one keep-alive connection.
pub struct S3Client {
    addr: SocketAddr,
    host: String,
    access_key: String,
    secret_key: String,
    region: String,
    conn: Option<BufReader<TcpStream>>,
    pub timeout: Duration,
}

impl S3Client {
    pub fn new(addr: SocketAddr, access_key: &str, secret_key: &str) -> S3Client {
        S3Client {
            addr,
            host: addr.to_string(),
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            region: "us-east-1".into(),
            conn: None,
            timeout: Duration::from_secs(60),
        }
    }

    fn stream(&mut self) -> io::Result<&mut BufReader<TcpStream>> {
        if self.conn.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, self.timeout)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(self.timeout))?;
            s.set_write_timeout(Some(self.timeout))?;
            self.conn = Some(BufReader::with_capacity(256 << 10, s));
        }
        Ok(self.conn.as_mut().unwrap())
    }

    /// Sends a signed request. `path` is unencoded (`/bucket/key`), `query`
    /// already encoded. The payload is sent as UNSIGNED-PAYLOAD.
    pub fn request(&mut self, method: &str, path: &str, query: &str, extra: &[(&str, &str)], body: &[u8]) -> io::Result<Response> {
        let raw_path = uri_encode(path.as_bytes(), true);
        let amz_date = datetime::amz_date(storage::now_ms() as i64 / 1000);
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), self.host.clone()),
            ("x-amz-date".into(), amz_date),
            ("x-amz-content-sha256".into(), "UNSIGNED-PAYLOAD".into()),
        ];
        for (n, v) in extra {
            headers.push((n.to_ascii_lowercase(), v.to_string()));
        }
        let sreq = SignedRequest { method, raw_path: &raw_path, raw_query: query, headers: &headers };
        let auth = sign_authorization(&sreq, &self.access_key, &self.secret_key, &self.region).expect("request signs");
        let mut head = format!("{method} {raw_path}{}{query} HTTP/1.1\r\n", if query.is_empty() { "" } else { "?" });
        for (n, v) in &headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str(&format!("authorization: {auth}\r\ncontent-length: {}\r\n\r\n", body.len()));
        let head_only = method == "HEAD";
        let attempt = |s: &mut BufReader<TcpStream>| -> io::Result<Response> {
            let w = s.get_mut();
            w.write_all(head.as_bytes())?;
            w.write_all(body)?;
            read_response(s, head_only)
        };
        let res = attempt(self.stream()?);
        let res = match res {
            // A kept-alive connection the server closed: retry once on a new one.
            Err(e) if matches!(e.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) => {
                self.conn = None;
                attempt(self.stream()?)
            }
            other => other,
        };
        match &res {
            Ok(r) if r.header("connection").map(|v| v.eq_ignore_ascii_case("close")).unwrap_or(false) => self.conn = None,
            Err(_) => self.conn = None,
            _ => {}
        }
        res
    }

    pub fn create_bucket(&mut self, bucket: &str) -> io::Result<Response> {
        self.request("PUT", &format!("/{bucket}"), "", &[], &[])
    }

    pub fn put(&mut self, bucket: &str, key: &str, data: &[u8]) -> io::Result<Response> {
        self.request("PUT", &format!("/{bucket}/{key}"), "", &[], data)
    }

    pub fn get(&mut self, bucket: &str, key: &str) -> io::Result<Response> {
        self.request("GET", &format!("/{bucket}/{key}"), "", &[], &[])
    }

    pub fn head(&mut self, bucket: &str, key: &str) -> io::Result<Response> {
        self.request("HEAD", &format!("/{bucket}/{key}"), "", &[], &[])
    }

    pub fn delete(&mut self, bucket: &str, key: &str) -> io::Result<Response> {
        self.request("DELETE", &format!("/{bucket}/{key}"), "", &[], &[])
    }
}

/// Admin API client: one request per connection.
pub fn admin_request(addr: &str, method: &str, path: &str, body: &str, token: &str) -> io::Result<Response> {
    let sa = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("cannot resolve {addr}")))?;
    let s = TcpStream::connect_timeout(&sa, Duration::from_secs(5)).map_err(|e| {
        io::Error::new(e.kind(), format!("cannot reach the admin API at {addr}: {e} (is `dataplane serve` running, and is --admin right?)"))
    })?;
    s.set_read_timeout(Some(Duration::from_secs(600)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n", body.len());
    if !token.is_empty() {
        req.push_str(&format!("authorization: Bearer {token}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let mut r = BufReader::new(s);
    r.get_mut().write_all(req.as_bytes())?;
    read_response(&mut r, method == "HEAD")
}
