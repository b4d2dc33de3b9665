//! Metrics: per-core atomics (no sharing on the hot path), summed when the
//! admin API renders Prometheus text.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    ListBuckets,
    CreateBucket,
    HeadBucket,
    DeleteBucket,
    PutObject,
    GetObject,
    HeadObject,
    DeleteObject,
    DeleteObjects,
    ListObjects,
    CreateMultipartUpload,
    UploadPart,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListParts,
    ListMultipartUploads,
    CopyObject,
    UploadPartCopy,
    GetObjectTagging,
    PutObjectTagging,
    DeleteObjectTagging,
    GetObjectAttributes,
    GetBucketLocation,
    GetBucketVersioning,
    NotImplemented,
    Other,
}

pub const OPS: [Op; 26] = [
    Op::ListBuckets,
    Op::CreateBucket,
    Op::HeadBucket,
    Op::DeleteBucket,
    Op::PutObject,
    Op::GetObject,
    Op::HeadObject,
    Op::DeleteObject,
    Op::DeleteObjects,
    Op::ListObjects,
    Op::CreateMultipartUpload,
    Op::UploadPart,
    Op::CompleteMultipartUpload,
    Op::AbortMultipartUpload,
    Op::ListParts,
    Op::ListMultipartUploads,
    Op::CopyObject,
    Op::UploadPartCopy,
    Op::GetObjectTagging,
    Op::PutObjectTagging,
    Op::DeleteObjectTagging,
    Op::GetObjectAttributes,
    Op::GetBucketLocation,
    Op::GetBucketVersioning,
    Op::NotImplemented,
    Op::Other,
];
const N_OPS: usize = OPS.len();

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::ListBuckets => "ListBuckets",
            Op::CreateBucket => "CreateBucket",
            Op::HeadBucket => "HeadBucket",
            Op::DeleteBucket => "DeleteBucket",
            Op::PutObject => "PutObject",
            Op::GetObject => "GetObject",
            Op::HeadObject => "HeadObject",
            Op::DeleteObject => "DeleteObject",
            Op::DeleteObjects => "DeleteObjects",
            Op::ListObjects => "ListObjects",
            Op::CreateMultipartUpload => "CreateMultipartUpload",
            Op::UploadPart => "UploadPart",
            Op::CompleteMultipartUpload => "CompleteMultipartUpload",
            Op::AbortMultipartUpload => "AbortMultipartUpload",
            Op::ListParts => "ListParts",
            Op::ListMultipartUploads => "ListMultipartUploads",
            Op::CopyObject => "CopyObject",
            Op::UploadPartCopy => "UploadPartCopy",
            Op::GetObjectTagging => "GetObjectTagging",
            Op::PutObjectTagging => "PutObjectTagging",
            Op::DeleteObjectTagging => "DeleteObjectTagging",
            Op::GetObjectAttributes => "GetObjectAttributes",
            Op::GetBucketLocation => "GetBucketLocation",
            Op::GetBucketVersioning => "GetBucketVersioning",
            Op::NotImplemented => "NotImplemented",
            Op::Other => "Other",
        }
    }
    fn index(self) -> usize {
        OPS.iter().position(|o| *o == self).unwrap()
    }
}

/// Status codes counted individually; anything else is counted as "other".
pub const STATUS_CODES: [u16; 18] = [200, 204, 206, 304, 400, 403, 404, 405, 409, 411, 412, 416, 500, 501, 503, 507, 413, 408];
const N_STATUS: usize = STATUS_CODES.len() + 1;
/// Request latency histogram bounds, seconds.
pub const LATENCY_BUCKETS_S: [f64; 15] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
const NB: usize = LATENCY_BUCKETS_S.len();

pub struct CoreMetrics {
    requests: [[AtomicU64; N_STATUS]; N_OPS],
    lat_buckets: [[AtomicU64; NB]; N_OPS],
    lat_sum_us: [AtomicU64; N_OPS],
    lat_count: [AtomicU64; N_OPS],
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// HTTPS connections whose TLS handshake failed.
    pub tls_handshake_failures: AtomicU64,
    /// Bytes copied server-side (CopyObject, UploadPartCopy).
    pub bytes_copied: AtomicU64,
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    pub connections_refused: AtomicU64,
    pub bad_requests: AtomicU64,
    /// Blocks the orphan sweep expunged.
    pub orphan_blocks_expunged: AtomicU64,
}

impl Default for CoreMetrics {
    fn default() -> Self {
        CoreMetrics {
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            lat_buckets: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            lat_sum_us: std::array::from_fn(|_| AtomicU64::new(0)),
            lat_count: std::array::from_fn(|_| AtomicU64::new(0)),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            bytes_copied: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            bad_requests: AtomicU64::new(0),
            orphan_blocks_expunged: AtomicU64::new(0),
        }
    }
}

fn status_index(s: u16) -> usize {
    STATUS_CODES.iter().position(|c| *c == s).unwrap_or(STATUS_CODES.len())
}

impl CoreMetrics {
    pub fn request(&self, op: Op, status: u16, secs: f64) {
        let o = op.index();
        self.requests[o][status_index(status)].fetch_add(1, Ordering::Relaxed);
        let b = LATENCY_BUCKETS_S.iter().position(|&x| secs <= x).unwrap_or(NB);
        if b < NB {
            self.lat_buckets[o][b].fetch_add(1, Ordering::Relaxed);
        }
        self.lat_sum_us[o].fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
        self.lat_count[o].fetch_add(1, Ordering::Relaxed);
    }
}

/// Sums of all cores, for status and rendering.
#[derive(Default, Clone, Debug)]
pub struct Totals {
    pub requests: Vec<(Op, String, u64)>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub bytes_copied: u64,
    pub tls_handshake_failures: u64,
    pub connections_open: u64,
    pub connections_total: u64,
    pub connections_refused: u64,
    pub bad_requests: u64,
}

pub fn totals(all: &[std::sync::Arc<CoreMetrics>]) -> Totals {
    let mut t = Totals::default();
    for op in OPS {
        for si in 0..N_STATUS {
            let n: u64 = all.iter().map(|m| m.requests[op.index()][si].load(Ordering::Relaxed)).sum();
            if n > 0 {
                let st = if si < STATUS_CODES.len() { STATUS_CODES[si].to_string() } else { "other".into() };
                t.requests.push((op, st, n));
            }
        }
    }
    let sum = |f: &dyn Fn(&CoreMetrics) -> &AtomicU64| all.iter().map(|m| f(m).load(Ordering::Relaxed)).sum::<u64>();
    t.bytes_in = sum(&|m| &m.bytes_in);
    t.bytes_out = sum(&|m| &m.bytes_out);
    t.bytes_copied = sum(&|m| &m.bytes_copied);
    t.tls_handshake_failures = sum(&|m| &m.tls_handshake_failures);
    t.connections_open = sum(&|m| &m.connections_open);
    t.connections_total = sum(&|m| &m.connections_total);
    t.connections_refused = sum(&|m| &m.connections_refused);
    t.bad_requests = sum(&|m| &m.bad_requests);
    t
}

/// Prometheus text exposition helpers.
pub struct Prom {
    pub out: String,
}

impl Prom {
    pub fn new() -> Prom {
        Prom { out: String::with_capacity(64 << 10) }
    }

    pub fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let _ = write!(self.out, "{k}=\"{v}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", fmt_value(value));
    }

    pub fn metric(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.header(name, kind, help);
        self.sample(name, &[], value);
    }
}

impl Default for Prom {
    fn default() -> Self {
        Prom::new()
    }
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Renders the S3 request metrics of all cores.
pub fn render_s3(p: &mut Prom, all: &[std::sync::Arc<CoreMetrics>]) {
    let t = totals(all);
    p.header("dataplane_s3_requests_total", "counter", "S3 requests by operation and HTTP status.");
    for (op, st, n) in &t.requests {
        p.sample("dataplane_s3_requests_total", &[("op", op.name()), ("status", st)], *n as f64);
    }
    p.header("dataplane_s3_request_duration_seconds", "histogram", "S3 request latency by operation.");
    for op in OPS {
        let o = op.index();
        let count: u64 = all.iter().map(|m| m.lat_count[o].load(Ordering::Relaxed)).sum();
        if count == 0 {
            continue;
        }
        let mut cum = 0;
        for (b, le) in LATENCY_BUCKETS_S.iter().enumerate() {
            cum += all.iter().map(|m| m.lat_buckets[o][b].load(Ordering::Relaxed)).sum::<u64>();
            p.sample("dataplane_s3_request_duration_seconds_bucket", &[("op", op.name()), ("le", &le.to_string())], cum as f64);
        }
        p.sample("dataplane_s3_request_duration_seconds_bucket", &[("op", op.name()), ("le", "+Inf")], count as f64);
        let sum: u64 = all.iter().map(|m| m.lat_sum_us[o].load(Ordering::Relaxed)).sum();
        p.sample("dataplane_s3_request_duration_seconds_sum", &[("op", op.name())], sum as f64 / 1e6);
        p.sample("dataplane_s3_request_duration_seconds_count", &[("op", op.name())], count as f64);
    }
    p.metric("dataplane_s3_bytes_in_total", "counter", "Bytes of S3 request bodies received.", t.bytes_in as f64);
    p.metric("dataplane_s3_bytes_out_total", "counter", "Bytes of S3 response bodies sent.", t.bytes_out as f64);
    p.metric("dataplane_s3_tls_handshake_failures_total", "counter", "HTTPS connections to the S3 API whose TLS handshake failed.", t.tls_handshake_failures as f64);
    p.metric("dataplane_s3_bytes_copied_total", "counter", "Bytes copied server-side by CopyObject and UploadPartCopy.", t.bytes_copied as f64);
    p.metric("dataplane_s3_connections_open", "gauge", "Open S3 client connections.", t.connections_open as f64);
    p.metric("dataplane_s3_connections_total", "counter", "S3 client connections accepted.", t.connections_total as f64);
    p.metric("dataplane_s3_connections_refused_total", "counter", "Connections refused over the per-core limit.", t.connections_refused as f64);
    p.metric("dataplane_s3_malformed_requests_total", "counter", "Requests that could not be parsed.", t.bad_requests as f64);
}
