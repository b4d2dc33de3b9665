//! Transports for replication connections: plaintext TCP, TLS in userspace
//! (rustls), or TLS in the kernel (kTLS) after a rustls handshake.
//!
//! Every replication connection (cluster manager and data) is mutually
//! authenticated when `tls.enabled`: both sides present a certificate signed
//! by `tls.ca`, and the peer's names (CN and DNS SANs) must match
//! `tls.peer_names` (exact, or `*.` on the leftmost label). After the
//! handshake the session keys are handed to the kernel (`TCP_ULP "tls"`,
//! `TLS_TX`, `TLS_RX`); where the kernel refuses, the connection stays in
//! rustls and its mode says so. Session tickets are off (a kTLS socket
//! cannot take post-handshake messages), KeyUpdate is never sent, and a
//! connection is closed and re-established before
//! `tls.max_records_per_connection` records (the AES-GCM limit).

use std::io::{self, Read};
use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use crate::config::TlsConfig;
use crate::tls::{handshake, load_certs, RustlsStream};

/// Largest TLS record payload.
const TLS_RECORD_BYTES: u64 = 16 * 1024;
/// First byte of a TLS handshake record.
const TLS_HANDSHAKE_BYTE: u8 = 0x16;

/// What this process knows about kTLS: once the kernel refused, later
/// connections do not try again.
static KTLS_BROKEN: AtomicBool = AtomicBool::new(false);

/// TLS settings built once at start from `[tls]`.
pub struct TlsSetup {
    pub client: Arc<rustls::ClientConfig>,
    pub server: Arc<rustls::ServerConfig>,
    pub required: bool,
    pub ktls: bool,
    pub max_records: u64,
}


/// Peer names an ACL entry accepts: exact, or `*.rest` for one leftmost label.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.to_ascii_lowercase(), name.to_ascii_lowercase());
    match p.strip_prefix("*.") {
        Some(rest) => match n.split_once('.') {
            Some((first, tail)) => !first.is_empty() && !first.contains('*') && tail == rest,
            None => false,
        },
        None => p == n,
    }
}

/// CN and DNS SANs of a certificate.
pub fn cert_names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, x)) = x509_parser::parse_x509_certificate(cert.as_ref()) else { return Vec::new() };
    let mut names: Vec<String> = x.subject().iter_common_name().filter_map(|cn| cn.as_str().ok().map(|s| s.to_string())).collect();
    if let Ok(Some(san)) = x.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_string());
            }
        }
    }
    names
}

fn check_acl(acl: &[String], cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
    if acl.is_empty() {
        return Ok(());
    }
    let names = cert_names(cert);
    if names.iter().any(|n| acl.iter().any(|p| name_matches(p, n))) {
        Ok(())
    } else {
        Err(rustls::Error::General(format!("peer certificate names {names:?}, none allowed by tls.peer_names {acl:?}")))
    }
}

/// Client side: chain to our CA plus the peer-name ACL (instead of a
/// hostname check: peers are found by address).
#[derive(Debug)]
struct AclServerVerifier {
    roots: Arc<RootCertStore>,
    acl: Vec<String>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AclServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(&cert, &self.roots, intermediates, now, self.provider.signature_verification_algorithms.all)?;
        check_acl(&self.acl, end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Server side: the standard client-certificate check plus the ACL.
#[derive(Debug)]
struct AclClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    acl: Vec<String>,
}

impl ClientCertVerifier for AclClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(&self, end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>], now: UnixTime) -> Result<ClientCertVerified, rustls::Error> {
        self.inner.verify_client_cert(end_entity, intermediates, now)?;
        check_acl(&self.acl, end_entity)?;
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
    fn client_auth_mandatory(&self) -> bool {
        true
    }
}

impl TlsSetup {
    /// Builds the configurations, or explains what is wrong with the files.
    pub fn load(t: &TlsConfig) -> Result<Option<Arc<TlsSetup>>, String> {
        if !t.enabled {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = load_certs(&t.cert, "tls.cert")?;
        let key = PrivateKeyDer::from_pem_file(&t.key).map_err(|e| format!("tls.key {}: {e}", t.key.display()))?;
        let mut roots = RootCertStore::empty();
        for c in load_certs(&t.ca, "tls.ca")? {
            roots.add(c).map_err(|e| format!("tls.ca {}: {e}", t.ca.display()))?;
        }
        let roots = Arc::new(roots);
        let versions: &[&rustls::SupportedProtocolVersion] = match (t.min_version.as_str(), t.max_version.as_str()) {
            ("1.3", _) => &[&rustls::version::TLS13],
            (_, "1.2") => &[&rustls::version::TLS12],
            _ => &[&rustls::version::TLS13, &rustls::version::TLS12],
        };
        let verifier = Arc::new(AclServerVerifier { roots: roots.clone(), acl: t.peer_names.clone(), provider: provider.clone() });
        let mut client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| format!("tls: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(certs.clone(), key.clone_key())
            .map_err(|e| format!("tls.cert/tls.key do not form a usable pair: {e}"))?;
        client.enable_secret_extraction = true;
        client.resumption = rustls::client::Resumption::disabled();
        let inner = WebPkiClientVerifier::builder_with_provider(roots, provider.clone()).build().map_err(|e| format!("tls.ca: {e}"))?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| format!("tls: {e}"))?
            .with_client_cert_verifier(Arc::new(AclClientVerifier { inner, acl: t.peer_names.clone() }))
            .with_single_cert(certs, key)
            .map_err(|e| format!("tls.cert/tls.key do not form a usable pair: {e}"))?;
        server.enable_secret_extraction = true;
        server.send_tls13_tickets = 0;
        Ok(Some(Arc::new(TlsSetup { client: Arc::new(client), server: Arc::new(server), required: t.required, ktls: t.ktls, max_records: t.max_records_per_connection })))
    }
}

// ------------------------------------------------------------- transports


pub struct KtlsStream {
    s: TcpStream,
    /// Plaintext rustls had decrypted before the handoff.
    prefix: Vec<u8>,
    prefix_pos: usize,
}

pub enum Transport {
    Plain(TcpStream),
    Rustls(Box<RustlsStream>, Limit),
    Ktls(KtlsStream, Limit),
}

/// Records sent on one key (AES-GCM confidentiality limit).
pub struct Limit {
    pub records: u64,
    pub max: u64,
}

impl Limit {
    fn add(&mut self, bytes: usize, writes: u64) -> io::Result<()> {
        self.records += writes + bytes as u64 / TLS_RECORD_BYTES;
        if self.records > self.max {
            return Err(io::Error::other(format!(
                "{} TLS records sent on this connection's key (tls.max_records_per_connection = {}); reconnecting for fresh keys",
                self.records, self.max
            )));
        }
        Ok(())
    }
}

impl Transport {
    pub fn mode(&self) -> &'static str {
        match self {
            Transport::Plain(_) => "plaintext",
            Transport::Rustls(..) => "rustls",
            Transport::Ktls(..) => "ktls",
        }
    }

    /// The TCP socket underneath, for watching its progress.
    pub fn raw_fd(&self) -> RawFd {
        match self {
            Transport::Plain(s) => s.as_raw_fd(),
            Transport::Rustls(r, _) => r.tcp().as_raw_fd(),
            Transport::Ktls(k, _) => k.s.as_raw_fd(),
        }
    }

    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf).await,
            Transport::Rustls(r, _) => r.read(buf).await,
            Transport::Ktls(k, _) => k.read(buf).await,
        }
    }

    pub async fn write_all_vectored(&mut self, slices: &[&[u8]]) -> io::Result<()> {
        match self {
            Transport::Plain(s) => super::net::write_all_vectored_plain(s, slices).await,
            Transport::Ktls(k, limit) => {
                limit.add(slices.iter().map(|s| s.len()).sum(), slices.len() as u64)?;
                super::net::write_all_vectored_plain(&mut k.s, slices).await
            }
            Transport::Rustls(r, limit) => {
                limit.add(slices.iter().map(|s| s.len()).sum(), 1)?;
                r.write_all_vectored(slices).await
            }
        }
    }

    /// Sends file regions; with kTLS through sendfile (page cache to socket,
    /// encrypted by the kernel), otherwise from the given mapped bytes.
    pub async fn send_regions(&mut self, parts: &[super::net::Chunk<'_>]) -> io::Result<()> {
        match self {
            Transport::Ktls(k, limit) => {
                limit.add(parts.iter().map(|p| p.len()).sum(), parts.len() as u64)?;
                for p in parts {
                    match p {
                        super::net::Chunk::Mem(b) => super::net::write_all_vectored_plain(&mut k.s, &[b]).await?,
                        super::net::Chunk::File { data, fd, off } => sendfile_all(&mut k.s, *fd, *off, data).await?,
                    }
                }
                Ok(())
            }
            other => {
                let slices: Vec<&[u8]> = parts.iter().map(|p| p.bytes()).collect();
                other.write_all_vectored(&slices).await
            }
        }
    }

    pub async fn close(&mut self) {
        match self {
            Transport::Plain(s) => {
                let _ = s.flush().await;
                let _ = s.shutdown(std::net::Shutdown::Both).await;
            }
            Transport::Rustls(r, _) => {
                let _ = r.send_close_notify().await;
                let _ = r.tcp().shutdown(std::net::Shutdown::Both).await;
            }
            Transport::Ktls(k, _) => {
                let _ = ktls_send_close_notify(k.s.as_raw_fd());
                let _ = k.s.shutdown(std::net::Shutdown::Both).await;
            }
        }
    }
}

/// sendfile of a whole region; when the socket is full, waits through
/// glommio by writing the next bytes of the same region from its mapping.
/// sendfile takes no flags, and glommio's sockets are blocking, so the
/// socket is made non-blocking for the call (a blocked syscall would stall
/// the whole core).
async fn sendfile_all(s: &mut TcpStream, fd: RawFd, off: u64, data: &[u8]) -> io::Result<()> {
    let sock = s.as_raw_fd();
    let mut done = 0usize;
    while done < data.len() {
        let mut o = (off + done as u64) as libc::off_t;
        // SAFETY: valid fds; the kernel reads the file region into the
        // socket; the socket's flags are restored right after.
        let r = unsafe {
            let flags = libc::fcntl(sock, libc::F_GETFL);
            libc::fcntl(sock, libc::F_SETFL, flags | libc::O_NONBLOCK);
            let r = libc::sendfile(sock, fd, &mut o, data.len() - done);
            let e = *libc::__errno_location();
            libc::fcntl(sock, libc::F_SETFL, flags);
            *libc::__errno_location() = e;
            r
        };
        if r > 0 {
            done += r as usize;
            continue;
        }
        let e = io::Error::last_os_error();
        if r == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "sendfile: the file region ended early"));
        }
        if e.kind() != io::ErrorKind::WouldBlock && e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
        done += s.write(&data[done..]).await?;
    }
    Ok(())
}


impl KtlsStream {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.prefix_pos < self.prefix.len() {
            let n = (self.prefix.len() - self.prefix_pos).min(buf.len());
            buf[..n].copy_from_slice(&self.prefix[self.prefix_pos..self.prefix_pos + n]);
            self.prefix_pos += n;
            return Ok(n);
        }
        match self.s.read(buf).await {
            Ok(n) => Ok(n),
            // A record that is not application data (an alert): read it
            // with its record type.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => ktls_read_control(self.s.as_raw_fd()),
            Err(e) => Err(e),
        }
    }
}

/// Reads a non-data TLS record from a kTLS socket: close_notify is the end
/// of the stream, other alerts are errors.
fn ktls_read_control(fd: RawFd) -> io::Result<usize> {
    const TLS_GET_RECORD_TYPE: libc::c_int = 2;
    const SOL_TLS: libc::c_int = 282;
    let mut data = [0u8; 64];
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr() as *mut _, iov_len: data.len() };
    let mut cbuf = [0u8; 64];
    // SAFETY: a zeroed msghdr pointing at local buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr() as *mut _;
    msg.msg_controllen = cbuf.len();
    // SAFETY: valid fd and msghdr.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut record_type = 0u8;
    // SAFETY: walking the control messages the kernel filled in.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == SOL_TLS && (*c).cmsg_type == TLS_GET_RECORD_TYPE {
                record_type = *libc::CMSG_DATA(c);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    match (record_type, n) {
        (21, 2) if data[1] == 0 => Ok(0), // close_notify
        (21, _) => Err(io::Error::new(io::ErrorKind::ConnectionAborted, format!("TLS alert from the peer (level {}, description {})", data[0], data[1]))),
        (22, _) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the peer sent a TLS handshake message (key update or session ticket) after the kTLS handoff; reconnecting",
        )),
        (t, _) => Err(io::Error::new(io::ErrorKind::InvalidData, format!("unexpected TLS record type {t} on a kTLS socket"))),
    }
}

fn ktls_send_close_notify(fd: RawFd) -> io::Result<()> {
    const TLS_SET_RECORD_TYPE: libc::c_int = 1;
    const SOL_TLS: libc::c_int = 282;
    let mut data = [1u8, 0u8];
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr() as *mut _, iov_len: 2 };
    let mut cbuf = [0u8; 32];
    // SAFETY: building a control message in a local buffer.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr() as *mut _;
        msg.msg_controllen = libc::CMSG_SPACE(1) as usize;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = SOL_TLS;
        (*c).cmsg_type = TLS_SET_RECORD_TYPE;
        (*c).cmsg_len = libc::CMSG_LEN(1) as usize;
        *libc::CMSG_DATA(c) = 21; // alert
        // Best effort at close: never wait for a full socket.
        if libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

// ------------------------------------------------------------ handshakes


fn setsockopt_raw(fd: RawFd, level: libc::c_int, opt: libc::c_int, val: *const libc::c_void, len: usize) -> io::Result<()> {
    // SAFETY: caller passes a valid pointer/length for the option.
    if unsafe { libc::setsockopt(fd, level, opt, val, len as libc::socklen_t) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Hands the session to the kernel. On failure returns the stream, and the
/// rustls connection when it is still usable (the kernel has no TLS ULP:
/// the connection continues in rustls); without it the connection is lost.
fn to_ktls(s: TcpStream, mut conn: rustls::Connection) -> Result<KtlsStream, (TcpStream, Option<rustls::Connection>, String)> {
    const SOL_TCP: libc::c_int = 6;
    const TCP_ULP: libc::c_int = 31;
    const SOL_TLS: libc::c_int = 282;
    const TLS_TX: libc::c_int = 1;
    const TLS_RX: libc::c_int = 2;
    let fd = s.as_raw_fd();
    if let Err(e) = setsockopt_raw(fd, SOL_TCP, TCP_ULP, b"tls".as_ptr() as *const _, 3) {
        KTLS_BROKEN.store(true, Ordering::Relaxed);
        return Err((s, Some(conn), format!("the kernel has no TLS ULP (setsockopt TCP_ULP \"tls\": {e}); staying in userspace rustls")));
    }
    let Some(suite) = conn.negotiated_cipher_suite() else {
        return Err((s, None, "no cipher suite after the handshake".into()));
    };
    // Plaintext rustls already decrypted stays ours.
    let mut prefix = Vec::new();
    let _ = conn.reader().read_to_end(&mut prefix);
    let secrets = match conn.dangerous_extract_secrets() {
        Ok(x) => x,
        Err(e) => return Err((s, None, format!("extracting TLS secrets: {e}"))),
    };
    for (dir, name, secret) in [(TLS_TX, "TLS_TX", secrets.tx), (TLS_RX, "TLS_RX", secrets.rx)] {
        let info = match ktls::CryptoInfo::from_rustls(suite, secret) {
            Ok(i) => i,
            Err(e) => return Err((s, None, format!("{name}: {e}"))),
        };
        if let Err(e) = setsockopt_raw(fd, SOL_TLS, dir, info.as_ptr(), info.size()) {
            KTLS_BROKEN.store(true, Ordering::Relaxed);
            return Err((s, None, format!("setsockopt {name} for {:?}: {e}", suite.suite())));
        }
    }
    Ok(KtlsStream { s, prefix, prefix_pos: 0 })
}

fn finish(setup: &TlsSetup, s: TcpStream, conn: rustls::Connection, peer: &str) -> Result<Transport, String> {
    let limit = Limit { records: 0, max: setup.max_records };
    if !setup.ktls || KTLS_BROKEN.load(Ordering::Relaxed) {
        return Ok(Transport::Rustls(Box::new(RustlsStream::new(s, conn)), limit));
    }
    match to_ktls(s, conn) {
        Ok(k) => Ok(Transport::Ktls(k, limit)),
        Err((s, Some(conn), why)) => {
            log::warn!("TLS with {peer}: {why} (this and later connections of this process use userspace TLS, mode \"rustls\")");
            Ok(Transport::Rustls(Box::new(RustlsStream::new(s, conn)), limit))
        }
        Err((_s, None, why)) => Err(format!("kTLS handoff with {peer} failed: {why}; later connections use userspace TLS")),
    }
}

/// After the handshake the server sends this one byte (through whatever it
/// chose: kTLS or rustls) and the client reads it before anything else, so
/// that neither side holds buffered application data when it hands its
/// session to the kernel.
const READY_BYTE: u8 = 0x01;

/// Client: reads the server's ready byte through rustls.
async fn read_ready(s: &mut TcpStream, conn: &mut rustls::Connection) -> Result<(), String> {
    let mut buf = vec![0u8; 4096];
    loop {
        let mut one = [0u8; 1];
        match conn.reader().read(&mut one) {
            Ok(1) if one[0] == READY_BYTE => return Ok(()),
            Ok(1) => return Err(format!("expected the ready byte after the TLS handshake, got {:#04x}", one[0])),
            Ok(_) => return Err("the peer closed the connection right after the TLS handshake".into()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.to_string()),
        }
        // Read exactly what the server sent so far: it sends nothing more
        // until we speak, so nothing beyond the ready byte is taken.
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the peer closed the connection right after the TLS handshake (did it refuse our certificate?)".into());
        }
        let mut slice = &buf[..n];
        while !slice.is_empty() {
            conn.read_tls(&mut slice).map_err(|e| e.to_string())?;
            conn.process_new_packets().map_err(|e| format!("TLS: {e}"))?;
        }
    }
}

/// Bounds a handshake step: a peer that goes silent in the middle of a
/// handshake must not hold the connection (and its task) forever.
async fn within_handshake_time<T, E: ToString>(f: impl std::future::Future<Output = Result<T, E>>) -> Result<T, String> {
    let ms = super::cm::HELLO_TIMEOUT_MS;
    match super::cm::with_timeout(ms, f).await {
        Some(r) => r.map_err(|e| e.to_string()),
        None => Err(format!("the handshake did not finish within {ms} ms (the peer went silent)")),
    }
}

/// Wraps an outgoing connection as the configuration says (TLS or not).
pub async fn client(c: &crate::runtime::Core, s: TcpStream, peer: &str) -> Result<Transport, String> {
    let Some(setup) = c.node.repl.tls.clone() else { return Ok(Transport::Plain(s)) };
    let mut s = s;
    let host = peer.rsplit_once(':').map(|(h, _)| h.trim_matches(['[', ']'])).unwrap_or(peer);
    let name = ServerName::try_from(host.to_string()).unwrap_or_else(|_| ServerName::try_from("dataplane-peer".to_string()).unwrap());
    let mut conn: rustls::Connection = rustls::ClientConnection::new(setup.client.clone(), name).map_err(|e| e.to_string())?.into();
    within_handshake_time(async {
        handshake(&mut s, &mut conn).await?;
        read_ready(&mut s, &mut conn).await
    })
    .await
    .map_err(|e| format!("TLS with {peer}: {e}"))?;
    finish(&setup, s, conn, peer)
}

/// Wraps an accepted connection as the configuration says: TLS when the
/// peer starts a TLS handshake, plaintext otherwise (refused when
/// `tls.required`).
pub async fn server(c: &crate::runtime::Core, mut s: TcpStream) -> Result<Transport, String> {
    let peer = s.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let mut first = [0u8; 1];
    let n = futures_lite::future::or(async { s.peek(&mut first).await.map_err(|e| e.to_string()) }, async {
        glommio::timer::sleep(std::time::Duration::from_millis(super::cm::HELLO_TIMEOUT_MS)).await;
        Err("sent nothing".into())
    })
    .await?;
    if n == 0 {
        return Err("closed before sending anything".into());
    }
    let is_tls = first[0] == TLS_HANDSHAKE_BYTE;
    match (&c.node.repl.tls, is_tls) {
        (None, false) => Ok(Transport::Plain(s)),
        (None, true) => Err(format!(
            "{peer} started a TLS handshake but TLS is not enabled on cluster {:?} (tls.enabled = false); enable TLS here or disable it there",
            c.node.cluster_name()
        )),
        (Some(setup), false) => {
            if setup.required {
                let msg = format!(
                    "cluster {:?} requires TLS (tls.required = true) and {peer} connected in plaintext; set tls.enabled on the peer",
                    c.node.cluster_name()
                );
                let frame = wire::frame::encode(&wire::Msg::error(wire::ERR_TLS_REQUIRED, msg.clone()), 0, *wire::PROTOCOL_VERSIONS.last().unwrap());
                let _ = s.write_all(&frame).await;
                let _ = s.shutdown(std::net::Shutdown::Both).await;
                return Err(msg);
            }
            Ok(Transport::Plain(s))
        }
        (Some(setup), true) => {
            let setup = setup.clone();
            let mut conn: rustls::Connection = rustls::ServerConnection::new(setup.server.clone()).map_err(|e| e.to_string())?.into();
            within_handshake_time(handshake(&mut s, &mut conn)).await.map_err(|e| format!("TLS with {peer}: {e}"))?;
            let mut t = finish(&setup, s, conn, &peer)?;
            within_handshake_time(async { t.write_all_vectored(&[&[READY_BYTE]]).await.map_err(|e| e.to_string()) })
                .await
                .map_err(|e| format!("TLS with {peer}: {e}"))?;
            Ok(t)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_matches_exact_names_and_one_leftmost_wildcard_label() {
        assert!(name_matches("dc2.example.com", "DC2.example.com"));
        assert!(name_matches("*.example.com", "dc2.example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("dc2.example.com", "dc3.example.com"));
    }
}
