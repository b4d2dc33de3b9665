//! The S3 API: one listener per core (SO_REUSEPORT spreads connections),
//! request routing, authentication, and the operation handlers.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use glommio::net::TcpListener;

use crate::config::Anonymous;
use crate::httpconn::{Body, Conn, ReadHeadError, Stream};
use crate::metrics::Op;
use crate::model::*;
use crate::objects::{self, BlockWriter, Committed, S3Result};
use crate::runtime::Core;
use crate::s3::checksum::{ChecksumAlgorithm, Checksummer, Md5Hasher, Sha256Hasher};
use crate::s3::chunked::AwsChunkedDecoder;
use crate::s3::error::{S3Error, S3ErrorCode};
use crate::s3::http::{self as h, BodyFraming, RequestHead};
use crate::s3::sigv4::{self, AuthOutcome, PayloadMode, SignedRequest};
use crate::s3::{datetime, names, range, sigv2, xml};

mod attributes;
mod buckets;
mod copy;
mod multipart;
mod route;
mod tagging;
pub mod tls;

use buckets::{create_bucket, delete_objects, list_buckets, list_objects};
use multipart::{complete_upload, create_upload, list_parts, list_uploads, upload_part};
use route::{Level, Route};
pub use tls::S3Tls;

/// Largest XML request body (CompleteMultipartUpload, DeleteObjects).
pub const MAX_XML_BODY_BYTES: usize = 2 << 20;
/// Largest total size of user metadata headers (S3: 2 KiB).
pub const MAX_USER_META_BYTES: usize = 2048;
/// Most keys one listing page returns.
pub const MAX_LIST_KEYS: usize = 1000;
/// Most parts ListParts returns per page.
pub const MAX_LIST_PARTS: usize = 1000;

struct Req {
    head: RequestHead,
    bucket: Option<String>,
    key: Option<String>,
    query: Vec<(String, String)>,
    auth: Option<AuthOutcome>,
    id: String,
}

impl Req {
    fn q(&self, name: &str) -> Option<&str> {
        h::query_param(&self.query, name)
    }
    fn owner(&self) -> String {
        self.auth.as_ref().map(|a| a.access_key.clone()).unwrap_or_else(|| "anonymous".into())
    }
}

/// What to do with the connection after a response.
#[derive(PartialEq, Eq, Clone, Copy)]
enum After {
    KeepAlive,
    Close,
    /// The response was started (or the connection broke while sending
    /// it): send nothing more, close.
    Abort,
}

/// Serves the S3 API on this core: plain HTTP on `s3.listen`, and HTTPS on
/// `s3.tls_listen` when `tls` is set.
pub async fn serve(core: Rc<Core>, tls: Option<Arc<S3Tls>>) {
    let plain = glommio::spawn_local(accept_loop(core.clone(), core.node.cfg.s3.listen, None));
    if let (Some(tls), Some(addr)) = (tls, core.node.cfg.s3.tls_listen) {
        accept_loop(core.clone(), addr, Some(tls)).await;
    }
    plain.await;
}

async fn accept_loop(core: Rc<Core>, addr: std::net::SocketAddr, tls: Option<Arc<S3Tls>>) {
    let scheme = if tls.is_some() { "HTTPS" } else { "HTTP" };
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            log::error!("core {}: cannot listen for S3 ({scheme}) on {addr}: {e}", core.id);
            return;
        }
    };
    if core.id == 0 {
        log::info!("S3 API ({scheme}) listening on {addr}");
    }
    let idle = Duration::from_millis(core.node.cfg.s3.idle_timeout_ms);
    let max_conns = core.node.cfg.s3.max_connections_per_core as u64;
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            core.stopped().await;
            None
        })
        .await;
        let Some(res) = accepted else { break };
        let stream = match res {
            Ok(s) => s,
            Err(e) => {
                log::warn!("core {}: accept failed: {e}", core.id);
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let m = &core.metrics;
        if m.connections_open.load(Ordering::Relaxed) >= max_conns {
            m.connections_refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        }
        m.connections_open.fetch_add(1, Ordering::Relaxed);
        m.connections_total.fetch_add(1, Ordering::Relaxed);
        let c = core.clone();
        let tls = tls.clone();
        glommio::spawn_local(async move {
            let stream = match &tls {
                None => Some(Stream::Plain(stream)),
                Some(t) => {
                    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
                    match t.accept(stream).await {
                        Ok(s) => Some(Stream::Tls(Box::new(s))),
                        Err(e) => {
                            c.metrics.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
                            log::debug!("S3 HTTPS connection from {peer}: {e}");
                            None
                        }
                    }
                }
            };
            if let Some(stream) = stream {
                if let Ok(conn) = Conn::over(stream, idle) {
                    connection(c.clone(), conn).await;
                }
            }
            c.metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
        })
        .detach();
    }
}

async fn connection(core: Rc<Core>, mut conn: Conn) {
    loop {
        let head = match conn.read_head().await {
            Ok(h) => h,
            Err(ReadHeadError::Closed) => return,
            Err(ReadHeadError::Io(e)) => {
                log::debug!("S3 connection from {}: {e}", conn.peer);
                return;
            }
            Err(ReadHeadError::Bad(err)) => {
                core.metrics.bad_requests.fetch_add(1, Ordering::Relaxed);
                let id = request_id(&core);
                if send_error(&mut conn, &err, &id, After::Close).await.is_ok() {
                    conn.close_gracefully().await;
                }
                return;
            }
        };
        let started = Instant::now();
        let id = request_id(&core);
        let (op, status, after) = handle(&core, &mut conn, head, id).await;
        core.metrics.request(op, status, started.elapsed().as_secs_f64());
        if after == After::Close {
            // The request body may be partly unread: close without a reset.
            conn.close_gracefully().await;
            return;
        }
        if core.stopping.get() {
            let _ = conn.flush().await;
            return;
        }
    }
}

/// A request id: the core, a per-process random prefix and a per-core
/// sequence number. Unique within the process's life and across restarts
/// (the prefix), and costs no system call per request (a getrandom per
/// request was a tenth of the syscalls of a small GET).
fn request_id(core: &Core) -> String {
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let prefix = *PREFIX.get_or_init(|| {
        let mut b = [0u8; 4];
        let _ = getrandom::getrandom(&mut b);
        u32::from_le_bytes(b)
    });
    let n = core.request_seq.get().wrapping_add(1);
    core.request_seq.set(n);
    format!("{:02X}{prefix:08X}{n:012X}", core.id)
}

fn secret_for(core: &Core, access_key: &str) -> Option<String> {
    core.node.cfg.s3.keys.iter().find(|k| k.access_key == access_key).map(|k| k.secret_key.clone())
}

fn is_read(op: Op) -> bool {
    matches!(
        op,
        Op::ListBuckets
            | Op::HeadBucket
            | Op::ListObjects
            | Op::GetObject
            | Op::HeadObject
            | Op::ListParts
            | Op::ListMultipartUploads
            | Op::GetObjectTagging
            | Op::GetObjectAttributes
            | Op::GetBucketLocation
            | Op::GetBucketVersioning
    )
}

/// Handles one request; returns the operation, the status sent, and
/// whether the connection may be reused.
async fn handle(core: &Rc<Core>, conn: &mut Conn, head: RequestHead, id: String) -> (Op, u16, After) {
    let query = h::parse_query(&head.raw_query);
    let vhost = route::bucket_from_host(head.header("host").unwrap_or(""), &core.node.cfg.s3.domains);
    let split = match &vhost {
        Some(b) => route::split_virtual_host(b, &head.raw_path),
        None => h::split_path_style(&head.raw_path),
    };
    let (bucket, key) = match split {
        Ok(x) => x,
        Err(e) => {
            let st = e.status();
            let _ = send_error(conn, &e, &id, After::Close).await;
            return (Op::Other, st, After::Close);
        }
    };
    let level = match (&bucket, &key) {
        (None, _) => Level::Service,
        (Some(_), None) => Level::Bucket,
        (Some(_), Some(_)) => Level::Object,
    };
    let routed = route::classify(&head.method, level, &query, head.header("x-amz-copy-source").is_some());
    let op = match &routed {
        Route::Serve(op) => *op,
        Route::NotImplemented(_) => Op::NotImplemented,
        Route::MethodNotAllowed => Op::Other,
    };
    // Authenticate before reading any of the body.
    let auth = {
        let sreq = SignedRequest::from_head(&head);
        let v2 = core.node.cfg.s3.sigv2 && sigv2::is_v2(&sreq);
        if v2 || sigv4::has_auth(&sreq) {
            let verified = if v2 {
                sigv2::verify(&sreq, vhost.as_deref(), &|ak| secret_for(core, ak), SystemTime::now())
            } else {
                sigv4::verify(&sreq, &|ak| secret_for(core, ak), SystemTime::now())
            };
            match verified {
                Ok(a) => Some(a),
                Err(e) => {
                    let st = e.status();
                    let _ = send_error(conn, &e, &id, After::Close).await;
                    return (op, st, After::Close);
                }
            }
        } else {
            let allowed = match core.node.cfg.s3.anonymous {
                Anonymous::All => true,
                Anonymous::Read => is_read(op),
                Anonymous::None => false,
            };
            if !allowed {
                let e = S3Error::new(S3ErrorCode::AccessDenied, "Access Denied: the request is not signed and this node does not allow anonymous access");
                let _ = send_error(conn, &e, &id, After::Close).await;
                return (op, 403, After::Close);
            }
            None
        }
    };
    let keep = if head.keep_alive() { After::KeepAlive } else { After::Close };
    let mut req = Req { head, bucket, key, query, auth, id };
    let res = match routed {
        Route::Serve(op) => dispatch(core, conn, &mut req, op).await,
        Route::NotImplemented(what) => Err(unread_failure(&req, not_implemented(&what))),
        Route::MethodNotAllowed => Err(unread_failure(
            &req,
            S3Error::new(S3ErrorCode::MethodNotAllowed, format!("The specified method {} is not allowed against this resource", req.head.method)),
        )),
    };
    match res {
        Ok((status, after)) => (op, status, if after == After::Close { After::Close } else { keep }),
        Err(Failure { err, after }) => {
            let st = err.status();
            // (501 answers what a client asked for, not a fault of the node:
            // counted under op NotImplemented, not logged)
            if st >= 500 && st != 501 {
                log::warn!("{} {} {}: {}: {}", req.id, req.head.method, req.head.raw_path, err.code_str(), err.message);
            }
            if after == After::Abort {
                // Part of a response is already on the wire: an error
                // response now would be read as body bytes. Just close.
                return (op, st, After::Close);
            }
            let after = if after == After::Close { After::Close } else { keep };
            let _ = send_error_to(conn, &err, &req.id, after, req.head.method == "HEAD").await;
            (op, st, after)
        }
    }
}

/// An error response, and whether the connection can still be reused (it
/// cannot when part of the request body was left unread).
struct Failure {
    err: S3Error,
    after: After,
}

impl From<S3Error> for Failure {
    fn from(err: S3Error) -> Failure {
        Failure { err, after: After::KeepAlive }
    }
}

fn closing(err: S3Error) -> Failure {
    Failure { err, after: After::Close }
}

/// A failure once (part of) the response has been written.
fn aborting(err: S3Error) -> Failure {
    Failure { err, after: After::Abort }
}

type HResult = Result<(u16, After), Failure>;

/// A failure answered without reading the request's body: the connection
/// cannot be reused when there is one.
fn unread_failure(req: &Req, e: S3Error) -> Failure {
    let has_body = !matches!(req.head.body_framing(), Ok(BodyFraming::None) | Ok(BodyFraming::ContentLength(0)));
    if has_body {
        closing(e)
    } else {
        Failure::from(e)
    }
}

async fn dispatch(core: &Rc<Core>, conn: &mut Conn, req: &mut Req, op: Op) -> HResult {
    let unread = |e: S3Error| unread_failure(req, e);
    if let Some(b) = &req.bucket {
        names::validate_bucket_name(b).map_err(unread)?;
    }
    if let Some(k) = &req.key {
        names::validate_key(k).map_err(unread)?;
    }
    match op {
        Op::ListBuckets => list_buckets(core, conn, req).await,
        Op::CreateBucket => create_bucket(core, conn, req).await,
        Op::HeadBucket => {
            let b = req.bucket.clone().unwrap();
            objects::require_bucket(core, &b).await?;
            send_empty(conn, 200, &req.id, &[]).await
        }
        Op::DeleteBucket => {
            let b = req.bucket.clone().unwrap();
            objects::delete_bucket(core, &b).await.map_err(unread)?;
            // Multipart uploads still in progress go with the bucket: their
            // parts would otherwise stay forever (and reappear, completable,
            // in a new bucket of the same name).
            for u in objects::list_uploads(core, &b, "").await {
                if let Err(e) = objects::abort_upload(core, &b, &u.key, &u.upload_id).await {
                    log::warn!("{}: DeleteBucket {b}: cannot abort upload {} of {}: {}", req.id, objects::upload_id_str(&u.upload_id), u.key, e.message);
                }
            }
            send_empty(conn, 204, &req.id, &[]).await
        }
        Op::GetBucketLocation => {
            let b = req.bucket.clone().unwrap();
            objects::require_bucket(core, &b).await?;
            let body = xml::location_constraint(&core.node.cfg.s3.region);
            send_xml(conn, 200, &req.id, body).await
        }
        Op::GetBucketVersioning => {
            // One version per key: versioning was never enabled.
            let b = req.bucket.clone().unwrap();
            objects::require_bucket(core, &b).await?;
            let body = r#"<?xml version="1.0" encoding="UTF-8"?><VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>"#.to_string();
            send_xml(conn, 200, &req.id, body).await
        }
        Op::ListObjects => list_objects(core, conn, req).await,
        Op::ListMultipartUploads => list_uploads(core, conn, req).await,
        Op::DeleteObjects => delete_objects(core, conn, req).await,
        Op::PutObject => put_object(core, conn, req).await,
        Op::CopyObject => copy::copy_object(core, conn, req).await,
        Op::GetObject | Op::HeadObject => get_object(core, conn, req, op == Op::HeadObject).await,
        Op::DeleteObject => {
            let (b, k) = (req.bucket.clone().unwrap(), req.key.clone().unwrap());
            objects::require_bucket(core, &b).await.map_err(unread)?;
            objects::delete_object(core, &b, &k).await.map_err(unread)?;
            send_empty(conn, 204, &req.id, &[]).await
        }
        Op::GetObjectTagging => tagging::get_tagging(core, conn, req).await,
        Op::PutObjectTagging => tagging::put_tagging(core, conn, req).await,
        Op::DeleteObjectTagging => tagging::delete_tagging(core, conn, req).await,
        Op::GetObjectAttributes => attributes::get_object_attributes(core, conn, req).await,
        Op::CreateMultipartUpload => create_upload(core, conn, req).await,
        Op::UploadPart => upload_part(core, conn, req).await,
        Op::UploadPartCopy => copy::upload_part_copy(core, conn, req).await,
        Op::CompleteMultipartUpload => complete_upload(core, conn, req).await,
        Op::AbortMultipartUpload => {
            let (b, k) = (req.bucket.clone().unwrap(), req.key.clone().unwrap());
            let up = objects::parse_upload_id(req.q("uploadId").unwrap_or(""))?;
            objects::abort_upload(core, &b, &k, &up).await?;
            send_empty(conn, 204, &req.id, &[]).await
        }
        Op::ListParts => list_parts(core, conn, req).await,
        Op::NotImplemented | Op::Other => unreachable!("the route table serves only implemented operations"),
    }
}

fn not_implemented(what: &str) -> S3Error {
    S3Error::new(S3ErrorCode::NotImplemented, format!("{what} is not implemented by this node"))
}

// ---------------------------------------------------------------- responses

/// Response header carrying an object's version: `HLC-CLUSTER`, both as 16
/// hex digits.
pub const VERSION_HEADER: &str = "x-dataplane-version";

fn common_headers<'a>(id: &'a str, date: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![("x-amz-request-id", id), ("Date", date), ("Server", "dataplane")]
}

async fn send_error(conn: &mut Conn, err: &S3Error, id: &str, after: After) -> std::io::Result<()> {
    send_error_to(conn, err, id, after, false).await
}

async fn send_error_to(conn: &mut Conn, err: &S3Error, id: &str, after: After, head_only: bool) -> std::io::Result<()> {
    let body = if head_only { String::new() } else { err.to_xml(id) };
    let date = datetime::http_date(storage::now_ms() as i64 / 1000);
    let mut hs = common_headers(id, &date);
    hs.push(("Content-Type", "application/xml"));
    if after == After::Close {
        hs.push(("Connection", "close"));
    }
    let mut out = Vec::with_capacity(256 + body.len());
    h::write_response_head(&mut out, err.status(), &hs, Some(body.len() as u64));
    out.extend_from_slice(body.as_bytes());
    conn.write_all(&out).await?;
    conn.flush().await
}

async fn send_xml(conn: &mut Conn, status: u16, id: &str, body: String) -> HResult {
    let date = datetime::http_date(storage::now_ms() as i64 / 1000);
    let mut hs = common_headers(id, &date);
    hs.push(("Content-Type", "application/xml"));
    let mut out = Vec::with_capacity(256 + body.len());
    h::write_response_head(&mut out, status, &hs, Some(body.len() as u64));
    out.extend_from_slice(body.as_bytes());
    conn.write_all(&out).await.map_err(|_| aborting(internal_io()))?;
    Ok((status, After::KeepAlive))
}

async fn send_empty(conn: &mut Conn, status: u16, id: &str, extra: &[(&str, &str)]) -> HResult {
    let date = datetime::http_date(storage::now_ms() as i64 / 1000);
    let mut hs = common_headers(id, &date);
    hs.extend_from_slice(extra);
    let mut out = Vec::with_capacity(256);
    h::write_response_head(&mut out, status, &hs, Some(0));
    conn.write_all(&out).await.map_err(|_| aborting(internal_io()))?;
    Ok((status, After::KeepAlive))
}

fn internal_io() -> S3Error {
    S3Error::new(S3ErrorCode::InternalError, "connection lost while sending the response")
}

/// Reads a whole XML request body (at most MAX_XML_BODY_BYTES) and checks
/// its Content-MD5 and signed SHA-256 (DeleteObjects, PutObjectTagging).
async fn read_checked_xml_body(conn: &mut Conn, req: &Req) -> Result<Vec<u8>, Failure> {
    let framing = req.head.body_framing().map_err(|e| closing(e.to_s3_error()))?;
    let mut body = Body::new(framing, None);
    let bytes = body.read_to_end(conn, MAX_XML_BODY_BYTES).await.map_err(closing)?;
    if let Some(md5h) = req.head.header("content-md5") {
        crate::s3::checksum::verify_content_md5(md5h, &crate::s3::checksum::md5(&bytes))?;
    }
    verify_body_sha256(req, &bytes)?;
    Ok(bytes)
}

fn verify_body_sha256(req: &Req, bytes: &[u8]) -> S3Result<()> {
    if let Some(AuthOutcome { payload: PayloadMode::Sha256(want), .. }) = &req.auth {
        crate::s3::checksum::verify_payload_sha256(want, &crate::s3::checksum::sha256(bytes))?;
    }
    Ok(())
}

// ------------------------------------------------------------------ uploads

/// Everything that checks a body as it streams through.
struct BodyChecks {
    md5: Md5Hasher,
    sha256: Option<(Sha256Hasher, [u8; 32])>,
    header_checksum: Option<(Checksummer, String)>,
    content_md5: Option<String>,
}

impl BodyChecks {
    fn new(req: &Req) -> S3Result<BodyChecks> {
        let sha256 = match &req.auth {
            Some(AuthOutcome { payload: PayloadMode::Sha256(want), .. }) => Some((Sha256Hasher::new(), *want)),
            _ => None,
        };
        let mut header_checksum = None;
        for (name, value) in &req.head.headers {
            if let Some(c) = Checksummer::from_header_name(name) {
                if header_checksum.is_some() {
                    return Err(S3Error::new(S3ErrorCode::InvalidRequest, "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."));
                }
                header_checksum = Some((c, value.clone()));
            }
        }
        Ok(BodyChecks { md5: Md5Hasher::new(), sha256, header_checksum, content_md5: req.head.header("content-md5").map(|s| s.to_string()) })
    }

    fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        if let Some((h, _)) = &mut self.sha256 {
            h.update(data);
        }
        if let Some((c, _)) = &mut self.header_checksum {
            c.update(data);
        }
    }

    /// Verifies everything; returns the MD5 and the checksums to store.
    fn finish(self, body: &Body) -> S3Result<([u8; 16], Vec<(String, String)>)> {
        let md5 = self.md5.finish();
        if let Some((h, want)) = self.sha256 {
            crate::s3::checksum::verify_payload_sha256(&want, &h.finish())?;
        }
        if let Some(cm) = &self.content_md5 {
            crate::s3::checksum::verify_content_md5(cm, &md5)?;
        }
        let mut checksums = Vec::new();
        if let Some((c, want)) = self.header_checksum {
            let alg = c.algorithm();
            let got = c.verify_base64(&want)?;
            checksums.push((alg.header_name().to_string(), got));
        }
        if let Some(aws) = body.aws() {
            if let Some((alg, v)) = aws.checksum() {
                checksums.push((alg.header_name().to_string(), v.to_string()));
            }
        }
        Ok((md5, checksums))
    }
}

/// Sets up the body reader (framing, aws-chunked) and the expected size.
fn open_body(req: &Req) -> S3Result<(Body, Option<u64>)> {
    let framing = req.head.body_framing().map_err(|e| e.to_s3_error())?;
    let streaming = req.auth.as_ref().map(|a| a.payload.is_streaming()).unwrap_or(false);
    let ce_aws = req.head.header("content-encoding").map(crate::s3::chunked::is_aws_chunked).unwrap_or(false);
    let decoded_len = match req.head.header("x-amz-decoded-content-length") {
        Some(v) => Some(v.trim().parse::<u64>().map_err(|_| S3Error::new(S3ErrorCode::InvalidArgument, "x-amz-decoded-content-length is not a number"))?),
        None => None,
    };
    if streaming || (ce_aws && req.auth.is_none()) {
        let payload = req.auth.as_ref().map(|a| a.payload.clone()).unwrap_or(PayloadMode::StreamingUnsignedTrailer);
        let Some(mut dec) = AwsChunkedDecoder::for_payload(&payload, req.head.header("x-amz-trailer")) else {
            return Err(S3Error::new(S3ErrorCode::InvalidRequest, "aws-chunked body without a streaming payload mode"));
        };
        let Some(n) = decoded_len else {
            return Err(S3Error::new(S3ErrorCode::MissingContentLength, "aws-chunked uploads must send x-amz-decoded-content-length"));
        };
        dec = dec.with_decoded_length(n);
        return Ok((Body::new(framing, Some(dec)), Some(n)));
    }
    let size = match framing {
        BodyFraming::ContentLength(n) => Some(n),
        BodyFraming::None => Some(0),
        BodyFraming::Chunked => decoded_len,
    };
    Ok((Body::new(framing, None), size))
}

fn user_meta(req: &Req) -> S3Result<Vec<(String, String)>> {
    let mut v = Vec::new();
    let mut total = 0;
    for (n, val) in &req.head.headers {
        if let Some(name) = n.strip_prefix("x-amz-meta-") {
            total += name.len() + val.len();
            v.push((name.to_string(), val.clone()));
        }
    }
    if total > MAX_USER_META_BYTES {
        return Err(S3Error::new(S3ErrorCode::MetadataTooLarge, format!("Your metadata headers exceed the maximum allowed metadata size ({total} > {MAX_USER_META_BYTES} bytes)")));
    }
    Ok(v)
}

/// Everything of a write's headers that is stored with the object: user
/// metadata, the standard headers an object keeps, and its tags.
fn object_meta(req: &Req) -> S3Result<Vec<(String, String)>> {
    let mut v = user_meta(req)?;
    v.extend(stored_headers(req));
    if let Some(t) = req.head.header("x-amz-tagging") {
        let tags = crate::s3::tagging::parse_header(t)?;
        if !tags.is_empty() {
            v.push((SYS_TAGGING.to_string(), crate::s3::tagging::encode(&tags)));
        }
    }
    Ok(v)
}

/// The standard headers of a write that the object keeps and returns.
fn stored_headers(req: &Req) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for name in STORED_HEADERS {
        let Some(val) = req.head.header(name) else { continue };
        let val = if name == "content-encoding" {
            // aws-chunked is how this request's body was framed, not how
            // the object is encoded.
            val.split(',').map(|t| t.trim()).filter(|t| !t.is_empty() && !crate::s3::chunked::is_aws_chunked(t)).collect::<Vec<_>>().join(",")
        } else {
            val.to_string()
        };
        if !val.is_empty() {
            v.push((sys_meta_name(name), val));
        }
    }
    v
}

/// The precondition of a write (`If-None-Match: *`, `If-Match: ETAG`).
fn write_condition(req: &Req) -> S3Result<objects::WriteCondition> {
    match (req.head.header("if-none-match"), req.head.header("if-match")) {
        (None, None) => Ok(objects::WriteCondition::None),
        (Some(v), None) if v.trim() == "*" => Ok(objects::WriteCondition::IfNoneMatch),
        (Some(v), None) => Err(not_implemented(&format!("If-None-Match: {v} on a write (only If-None-Match: * is)"))),
        (None, Some(v)) => Ok(objects::WriteCondition::IfMatch(v.split(',').map(|t| xml::normalize_etag(t.trim()).to_string()).filter(|t| !t.is_empty()).collect())),
        (Some(_), Some(_)) => Err(S3Error::new(S3ErrorCode::InvalidRequest, "If-Match and If-None-Match cannot both be given on a write")),
    }
}

async fn send_continue(conn: &mut Conn, req: &Req) -> Result<(), Failure> {
    if req.head.expects_continue() {
        conn.write_all(h::CONTINUE_RESPONSE).await.map_err(|_| aborting(internal_io()))?;
    }
    Ok(())
}

/// Streams a body into blocks. Small bodies (known size up to inline_max)
/// come back inline instead.
async fn receive_blocks(
    core: &Rc<Core>,
    conn: &mut Conn,
    body: &mut Body,
    checks: &mut BodyChecks,
    writer: &mut BlockWriter,
    allow_inline: Option<u64>,
) -> Result<(u64, Option<Vec<u8>>), S3Error> {
    let bs = core.node.cfg.s3.block_size as usize;
    let inline_max = core.node.cfg.s3.inline_max as u64;
    if let Some(n) = allow_inline {
        if n <= inline_max {
            let mut data = Vec::with_capacity(n as usize);
            loop {
                let room = (inline_max as usize + 1).saturating_sub(data.len()).max(1);
                let got = body.read(conn, &mut data, room).await?;
                if got == 0 {
                    break;
                }
                if data.len() as u64 > inline_max {
                    return Err(S3Error::new(S3ErrorCode::IncompleteBody, "the body is longer than its declared length"));
                }
            }
            checks.update(&data);
            return Ok((data.len() as u64, Some(data)));
        }
    }
    let mut total = 0u64;
    loop {
        let mut block = Vec::with_capacity(bs);
        while block.len() < bs {
            let room = bs - block.len();
            let got = body.read(conn, &mut block, room).await?;
            if got == 0 {
                break;
            }
        }
        if block.is_empty() {
            break;
        }
        checks.update(&block);
        total += block.len() as u64;
        let last = block.len() < bs;
        writer.push(block).await?;
        if last {
            // A short block ends the body; make sure nothing follows.
            let mut probe = Vec::new();
            if body.read(conn, &mut probe, 1).await? != 0 {
                return Err(S3Error::new(S3ErrorCode::InternalError, "body continued after a short read"));
            }
            break;
        }
    }
    writer.finish().await?;
    Ok((total, None))
}

async fn put_object(core: &Rc<Core>, conn: &mut Conn, req: &mut Req) -> HResult {
    let (b, k) = (req.bucket.clone().unwrap(), req.key.clone().unwrap());
    let (mut body, size) = open_body(req).map_err(closing)?;
    if let Some(n) = size {
        if n > core.node.cfg.s3.max_put_bytes {
            return Err(closing(S3Error::new(
                S3ErrorCode::EntityTooLarge,
                format!("Your proposed upload of {n} bytes exceeds the maximum allowed object size ({} bytes); use a multipart upload", core.node.cfg.s3.max_put_bytes),
            )));
        }
    } else if !matches!(req.head.body_framing(), Ok(BodyFraming::Chunked)) {
        return Err(closing(S3Error::new(S3ErrorCode::MissingContentLength, "You must provide the Content-Length HTTP header.")));
    }
    let meta = object_meta(req).map_err(closing)?;
    let cond = write_condition(req).map_err(closing)?;
    let mut checks = BodyChecks::new(req).map_err(closing)?;
    objects::require_bucket(core, &b).await.map_err(closing)?;
    send_continue(conn, req).await?;
    let started = objects::local_version(core);
    let mut writer = BlockWriter::new(core, &b, &k, started);
    let res = receive_blocks(core, conn, &mut body, &mut checks, &mut writer, size).await;
    let (total, inline) = match res {
        Ok(x) => x,
        Err(e) => {
            writer.abort().await;
            return Err(closing(e));
        }
    };
    core.metrics.bytes_in.fetch_add(total, Ordering::Relaxed);
    let (md5, checksums) = match checks.finish(&body) {
        Ok(x) => x,
        Err(e) => {
            writer.abort().await;
            return Err(e.into());
        }
    };
    let version = objects::local_version(core);
    let etag = hex::encode(md5);
    let manifest = Manifest {
        bucket: b.clone(),
        key: k.clone(),
        version_hlc: version.hlc,
        version_cluster: version.cluster,
        size: total,
        etag: etag.clone(),
        content_type: req.head.header("content-type").unwrap_or("binary/octet-stream").to_string(),
        user_meta: meta,
        checksums: checksums.clone(),
        last_modified_ms: storage::now_ms(),
        block_size: core.node.cfg.s3.block_size,
        parts: if inline.is_some() { Vec::new() } else { vec![PartRef { uid: writer.uid, size: total }] },
        inline: inline.unwrap_or_default(),
    };
    let intents = if manifest.parts.is_empty() { Vec::new() } else { vec![writer.uid] };
    match objects::commit_manifest(core, manifest, vec![core.node.cluster_id], intents, cond).await {
        Ok(Committed::Current) | Ok(Committed::Superseded) => {}
        Err(e) => {
            writer.abort().await;
            return Err(e.into());
        }
    }
    let quoted = format!("\"{etag}\"");
    let mut hs: Vec<(&str, &str)> = vec![("ETag", &quoted)];
    for (n, v) in &checksums {
        hs.push((n.as_str(), v.as_str()));
    }
    send_empty(conn, 200, &req.id, &hs).await
}

async fn get_object(core: &Rc<Core>, conn: &mut Conn, req: &Req, head_only: bool) -> HResult {
    let (b, k) = (req.bucket.clone().unwrap(), req.key.clone().unwrap());
    let Some(m) = objects::get_manifest(core, &b, &k).await? else {
        objects::require_bucket(core, &b).await?;
        return Err(objects::no_such_key(&b, &k).into());
    };
    let etag_q = format!("\"{}\"", m.etag);
    let mtime = (m.last_modified_ms / 1000) as i64;
    // Conditional requests.
    if let Some(v) = req.head.header("if-match") {
        if !etag_matches(v, &m.etag) {
            return Err(S3Error::new(S3ErrorCode::PreconditionFailed, "At least one of the pre-conditions you specified did not hold").into());
        }
    } else if let Some(t) = req.head.header("if-unmodified-since").and_then(datetime::parse_http_date) {
        if mtime > t {
            return Err(S3Error::new(S3ErrorCode::PreconditionFailed, "At least one of the pre-conditions you specified did not hold").into());
        }
    }
    let not_modified = match req.head.header("if-none-match") {
        Some(v) => etag_matches(v, &m.etag),
        None => req.head.header("if-modified-since").and_then(datetime::parse_http_date).map(|t| mtime <= t).unwrap_or(false),
    };
    let last_modified = datetime::http_date(mtime);
    if not_modified {
        return send_empty(conn, 304, &req.id, &[("ETag", &etag_q), ("Last-Modified", &last_modified)]).await;
    }
    let part_number = match req.q("partNumber") {
        None => None,
        Some(n) => Some(n.parse::<u32>().ok().filter(|n| (1..=objects::MAX_PARTS).contains(n)).ok_or_else(|| {
            S3Error::new(S3ErrorCode::InvalidArgument, format!("Part number must be an integer between 1 and {}, inclusive", objects::MAX_PARTS))
        })?),
    };
    let multipart = m.etag.contains('-');
    let range = match (part_number, req.head.header("range")) {
        (Some(_), Some(_)) => return Err(S3Error::new(S3ErrorCode::InvalidRequest, "Cannot specify both Range header and partNumber query parameter").into()),
        (Some(n), None) => Some(part_range(&m, n)?),
        (None, Some(r)) => range::parse_range(r, m.size)?,
        (None, None) => None,
    };
    let (status, start, end) = match range {
        Some((s, e)) if part_number.is_none() || multipart => (206u16, s, e),
        Some((s, e)) => (200u16, s, e),
        None => (200u16, 0, m.size.saturating_sub(1)),
    };
    let len = if m.size == 0 { 0 } else { end - start + 1 };
    let date = datetime::http_date(storage::now_ms() as i64 / 1000);
    let mut hs = common_headers(&req.id, &date);
    hs.push(("ETag", &etag_q));
    hs.push(("Last-Modified", &last_modified));
    hs.push(("Accept-Ranges", "bytes"));
    // The object's version (hybrid logical clock and originating cluster):
    // equal on every site that holds the same version of the object.
    let version = format!("{:016x}-{:016x}", m.version_hlc, m.version_cluster);
    hs.push((VERSION_HEADER, &version));
    let cr = range::content_range(start, end, m.size);
    if status == 206 {
        hs.push(("Content-Range", &cr));
    }
    let parts_count = m.parts.len().to_string();
    if part_number.is_some() && multipart {
        hs.push(("x-amz-mp-parts-count", &parts_count));
    }
    // Stored standard headers, each overridden by its response-* parameter.
    for (param, header, name) in RESPONSE_OVERRIDES {
        let v = req.q(param).or_else(|| match header {
            "content-type" => Some(m.content_type.as_str()),
            h => m.sys_header(h),
        });
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            hs.push((name, v));
        }
    }
    if let Some(r) = m.sys_header("x-amz-website-redirect-location") {
        hs.push(("x-amz-website-redirect-location", r));
    }
    let tag_count = m.sys(SYS_TAGGING).map(|t| crate::s3::tagging::count(t).to_string());
    if let Some(n) = &tag_count {
        hs.push(("x-amz-tagging-count", n));
    }
    let meta_names: Vec<(String, &str)> = m.user_metadata().map(|(n, v)| (format!("x-amz-meta-{n}"), v.as_str())).collect();
    for (n, v) in &meta_names {
        hs.push((n, v));
    }
    if req.head.header("x-amz-checksum-mode").map(|v| v.eq_ignore_ascii_case("enabled")).unwrap_or(false) && (status == 200 || part_number.is_some()) {
        for (n, v) in &m.checksums {
            hs.push((n.as_str(), v.as_str()));
        }
    }
    let mut out = Vec::with_capacity(512);
    h::write_response_head(&mut out, status, &hs, Some(len));
    if head_only || len == 0 {
        conn.write_all(&out).await.map_err(|_| aborting(internal_io()))?;
        return Ok((status, After::KeepAlive));
    }
    if !m.inline.is_empty() || m.parts.is_empty() {
        out.extend_from_slice(&m.inline[start as usize..=end as usize]);
        conn.write_all(&out).await.map_err(|_| aborting(internal_io()))?;
        core.metrics.bytes_out.fetch_add(len, Ordering::Relaxed);
        return Ok((status, After::KeepAlive));
    }
    let blocks = m.blocks_for_range(start, end);
    // Fetch ahead; the first block is fetched before the headers go out so
    // that a missing block can still be reported as an error.
    let mut pending = std::collections::VecDeque::new();
    let mut it = blocks.into_iter();
    let spawn = |key: Vec<u8>| {
        let c = core.clone();
        glommio::spawn_local(async move { objects::read_block(&c, key).await })
    };
    for _ in 0..objects::READ_AHEAD_BLOCKS {
        if let Some((key, blen, off, n)) = it.next() {
            pending.push_back((spawn(key.clone()), key, blen, off, n));
        }
    }
    let mut first = true;
    let mut sent = 0u64;
    while let Some((task, key, blen, off, n)) = pending.pop_front() {
        let rec = task.await;
        let rec = match rec {
            Ok(Some(r)) if r.value().len() as u64 == blen => r,
            other => {
                let err = match other {
                    Err(e) => e,
                    _ => S3Error::new(
                        S3ErrorCode::ServiceUnavailable,
                        format!("block {} of {b}/{k} is not on this cluster yet (it may still be replicating); retry shortly", hex::encode(&key[key.len() - 20..])),
                    ),
                };
                if first {
                    return Err(err.into());
                }
                log::error!("{}: GET {b}/{k} broke off after {sent} bytes: {}", req.id, err.message);
                return Err(aborting(err));
            }
        };
        if let Some((key2, blen2, off2, n2)) = it.next() {
            pending.push_back((spawn(key2.clone()), key2, blen2, off2, n2));
        }
        if first {
            conn.write_all(&out).await.map_err(|_| aborting(internal_io()))?;
            first = false;
        }
        let data = &rec.value()[off as usize..(off + n) as usize];
        conn.write_all(data).await.map_err(|_| aborting(internal_io()))?;
        sent += n;
    }
    core.metrics.bytes_out.fetch_add(sent, Ordering::Relaxed);
    Ok((status, After::KeepAlive))
}

/// `response-*` query parameters of GetObject and the header each overrides.
/// (parameter, stored header, header as sent).
const RESPONSE_OVERRIDES: [(&str, &str, &str); 6] = [
    ("response-content-type", "content-type", "Content-Type"),
    ("response-content-language", "content-language", "Content-Language"),
    ("response-expires", "expires", "Expires"),
    ("response-cache-control", "cache-control", "Cache-Control"),
    ("response-content-disposition", "content-disposition", "Content-Disposition"),
    ("response-content-encoding", "content-encoding", "Content-Encoding"),
];

/// Bytes `[start, end]` of part `n` of an object (`GET ?partNumber=N`); an
/// object from a single PUT has one part, the whole object.
fn part_range(m: &Manifest, n: u32) -> S3Result<(u64, u64)> {
    let multipart = m.etag.contains('-');
    if !multipart || m.parts.is_empty() {
        if n != 1 {
            return Err(S3Error::new(S3ErrorCode::InvalidPartNumber, format!("part {n} requested; this object has 1 part")));
        }
        return Ok((0, m.size.saturating_sub(1)));
    }
    let i = n as usize - 1;
    let Some(p) = m.parts.get(i) else {
        return Err(S3Error::new(S3ErrorCode::InvalidPartNumber, format!("part {n} requested; this object has {} parts", m.parts.len())));
    };
    if p.size == 0 {
        return Err(S3Error::new(S3ErrorCode::InvalidPartNumber, format!("part {n} of this object is empty")));
    }
    let start: u64 = m.parts[..i].iter().map(|p| p.size).sum();
    Ok((start, start + p.size - 1))
}

fn etag_matches(header: &str, etag: &str) -> bool {
    header.split(',').map(|s| s.trim()).any(|t| t == "*" || xml::normalize_etag(t) == etag)
}
