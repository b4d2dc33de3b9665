//! TLS on replication connections, between real processes: mutual
//! authentication, refusals with their reasons, TLS 1.2 and 1.3, and a
//! connection cut in the middle of a TLS record.
mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::json;

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    pem_path: PathBuf,
}

fn ca(dir: &Path, name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let cert = p.self_signed(&key).unwrap();
    let pem_path = dir.join(format!("{name}.pem"));
    std::fs::write(&pem_path, cert.pem()).unwrap();
    Ca { cert, key, pem_path }
}

/// A node certificate for `name`, valid from `from` to `to` (days from now).
fn node_cert(dir: &Path, ca: &Ca, name: &str, from: i64, to: i64) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now + time::Duration::days(from);
    p.not_after = now + time::Duration::days(to);
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let (c, k) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

fn tls_opts(name: &str, ca: &Path, cert: &(PathBuf, PathBuf), extra: &str) -> ClusterOpts {
    let mut o = opts(name);
    o.extra = format!(
        "[tls]\nenabled = true\nrequired = true\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n{extra}\n",
        cert.0.display(),
        cert.1.display(),
        ca.display()
    );
    o
}

fn assert_encrypted(a: &Cluster, b: &Cluster) {
    let s = a.sink_status(&b.name).unwrap();
    let mode = s["tls_mode"].as_str().unwrap().to_string();
    assert!(mode == "rustls" || mode == "ktls", "control connection mode {mode}");
    let data: Vec<String> = s["data_tls_modes"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_string()).collect();
    assert!(!data.is_empty() && data.iter().all(|m| m == "rustls" || m == "ktls"), "data connection modes {data:?}");
    let st = b.admin("GET", "/repl/status", serde_json::Value::Null).unwrap();
    let src = &st["sources"][0];
    assert!(src["tls_mode"] == "rustls" || src["tls_mode"] == "ktls", "sink side sees {src}");
    if std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_ulp").map(|s| !s.contains("tls")).unwrap_or(true) {
        // Without a TLS ULP the kernel refuses the handoff: userspace TLS, said plainly.
        assert_eq!(mode, "rustls");
        let log = std::fs::read_to_string(a.dir.join("node.log")).unwrap();
        assert!(log.contains("no TLS ULP"), "the fallback is logged");
    }
}

fn replicate_and_check(a: &Cluster, b: &Cluster, bucket: &str) {
    a.replicate_to(b).unwrap();
    let mut s3 = a.client();
    ok(s3.create_bucket(bucket), "bucket");
    let mut expect = std::collections::BTreeMap::new();
    for i in 0..40usize {
        let data = payload(i, if i % 8 == 0 { 2_200_000 } else { 700 + i * 31 });
        ok(s3.put(bucket, &format!("k{i}"), &data), "put");
        expect.insert(format!("k{i}"), dataplane::s3::checksum::md5(&data));
    }
    a.wait_drained(&b.name, Duration::from_secs(60)).unwrap();
    assert_eq!(contents(&mut b.client(), bucket), expect);
}

#[test]
fn mutual_tls_replicates_with_tls_1_3_and_1_2() {
    for version in ["1.3", "1.2"] {
        let root = tempfile::tempdir().unwrap();
        let ca = ca(root.path(), "ca");
        let c1 = node_cert(root.path(), &ca, "dc1.example.com", -1, 30);
        let c2 = node_cert(root.path(), &ca, "dc2.example.com", -1, 30);
        let extra = format!("peer_names = [\"*.example.com\"]\nmax_version = \"{version}\"\nmin_version = \"{version}\"");
        let a = start(root.path(), tls_opts("dc1", &ca.pem_path, &c1, &extra));
        let b = start(root.path(), tls_opts("dc2", &ca.pem_path, &c2, &extra));
        replicate_and_check(&a, &b, "tlsb");
        assert_encrypted(&a, &b);
        // Fullsync runs over TLS too.
        let st = fullsync(&a, "dc2", Duration::from_secs(60));
        assert_eq!(st["last_error"], "", "{st}");
    }
}

fn refused(a: &Cluster, b: &Cluster) -> String {
    a.admin("POST", "/repl/connect", json!({"addr": b.repl.to_string()})).unwrap_err()
}

#[test]
fn wrong_ca_wrong_name_expired_and_plaintext_are_refused_with_their_reason() {
    let root = tempfile::tempdir().unwrap();
    let good = ca(root.path(), "ca");
    let other = ca(root.path(), "other-ca");
    let c1 = node_cert(root.path(), &good, "dc1.example.com", -1, 30);
    let c2 = node_cert(root.path(), &good, "dc2.example.com", -1, 30);
    let rogue = node_cert(root.path(), &other, "rogue.example.com", -1, 30);
    let expired = node_cert(root.path(), &good, "old.example.com", -30, -1);
    let b = start(root.path(), tls_opts("dc2", &good.pem_path, &c2, "peer_names = [\"*.example.com\"]"));

    // A source whose certificate comes from another CA.
    let a = start(root.path(), tls_opts("rogue", &good.pem_path, &rogue, ""));
    let e = refused(&a, &b);
    assert!(e.to_lowercase().contains("tls") && (e.contains("alert") || e.contains("closed")), "{e}");
    eventually(Duration::from_secs(5), "sink names the peer and the reason", || {
        let l = b.log_tail();
        l.contains("TLS with 127.0.0.1") && (l.contains("UnknownIssuer") || l.contains("unknown issuer"))
    });
    drop(a);

    // A sink whose name the source's ACL does not allow.
    let a = start(root.path(), tls_opts("dc1", &good.pem_path, &c1, "peer_names = [\"dc9.example.com\"]"));
    let e = refused(&a, &b);
    assert!(e.contains("none allowed by tls.peer_names") && e.contains("dc2.example.com"), "{e}");
    drop(a);

    // An expired certificate.
    let a = start(root.path(), tls_opts("old", &good.pem_path, &expired, ""));
    let e = refused(&a, &b);
    assert!(e.to_lowercase().contains("tls"), "{e}");
    eventually(Duration::from_secs(5), "sink says the certificate expired", || b.log_tail().to_lowercase().contains("expired"));
    drop(a);

    // A plaintext source against a sink that requires TLS.
    let a = start(root.path(), opts("plain"));
    let e = refused(&a, &b);
    assert!(e.contains("requires TLS") && e.contains("dc2"), "{e}");
    eventually(Duration::from_secs(5), "sink logs the plaintext refusal", || b.log_tail().contains("connected in plaintext"));
    drop(a);

    // A TLS source against a plaintext sink.
    let p = start(root.path(), opts("plainsink"));
    let a = start(root.path(), tls_opts("dc1b", &good.pem_path, &c1, ""));
    let e = refused(&a, &p);
    assert!(e.contains("TLS"), "{e}");
    eventually(Duration::from_secs(5), "the plaintext sink explains", || p.log_tail().contains("TLS is not enabled"));
}

/// Forwards localhost connections, cutting each of the first `cuts`
/// connections after `after` bytes (in the middle of a TLS record).
fn cutting_proxy(listen: u16, to: u16, after: usize, cuts: Arc<AtomicUsize>) {
    let l = TcpListener::bind(("127.0.0.1", listen)).unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(client) = s else { continue };
            let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else { continue };
            let cut = cuts.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1)).is_ok();
            let limit = if cut { after } else { usize::MAX };
            for (mut r, mut w, lim) in [(client.try_clone().unwrap(), server.try_clone().unwrap(), limit), (server, client, usize::MAX)] {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    let mut total = 0usize;
                    loop {
                        let n = match r.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let n = n.min(lim - total.min(lim));
                        if w.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        total += n;
                        if total >= lim {
                            break;
                        }
                    }
                    let _ = r.shutdown(std::net::Shutdown::Both);
                    let _ = w.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
}

#[test]
fn a_connection_cut_mid_record_recovers() {
    let root = tempfile::tempdir().unwrap();
    let ca = ca(root.path(), "ca");
    let c1 = node_cert(root.path(), &ca, "dc1.example.com", -1, 30);
    let c2 = node_cert(root.path(), &ca, "dc2.example.com", -1, 30);
    let a = start(root.path(), tls_opts("dc1", &ca.pem_path, &c1, ""));
    // The sink advertises a proxy in front of its replication ports.
    let proxy = dataplane::demo::free_base_port();
    let mut ob = tls_opts("dc2", &ca.pem_path, &c2, "");
    ob.extra = format!("advertise = \"127.0.0.1:{proxy}\"\n{}", ob.extra);
    let b = start(root.path(), ob);
    let cuts = Arc::new(AtomicUsize::new(6));
    for i in 0..=2u16 {
        cutting_proxy(proxy + i, b.repl.port() + i, 300_000 + i as usize * 7_919, cuts.clone());
    }
    post(&a, "/repl/connect", json!({"addr": format!("127.0.0.1:{proxy}")}));
    post(&a, "/repl/realtime/enable", json!({"sink": "dc2"}));
    post(&a, "/repl/realtime/start", json!({"sink": "dc2"}));
    let mut s3 = a.client();
    ok(s3.create_bucket("cut"), "bucket");
    let mut expect = std::collections::BTreeMap::new();
    for i in 0..30usize {
        let data = payload(i, 1_000_000 + i);
        ok(s3.put("cut", &format!("k{i}"), &data), "put");
        expect.insert(format!("k{i}"), dataplane::s3::checksum::md5(&data));
    }
    a.wait_drained("dc2", Duration::from_secs(120)).unwrap();
    assert_eq!(contents(&mut b.client(), "cut"), expect);
    assert_eq!(cuts.load(Ordering::SeqCst), 0, "every planned cut happened");
    let s = a.sink_status("dc2").unwrap();
    assert!(s["reconnects"].as_u64().unwrap() + s["control_reconnects"].as_u64().unwrap() > 0, "{s}");
}
