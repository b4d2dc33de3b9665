//! HTTPS on the S3 API: a second listener (`s3.tls_listen`) that serves the
//! same API through rustls with `s3.tls_cert` and `s3.tls_key`. The plain
//! listener (`s3.listen`) keeps running beside it. The certificate and key
//! are read again on SIGHUP: connections accepted afterwards use the new
//! pair, established ones keep theirs; a pair that does not load is
//! reported and the old one stays in use.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use glommio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;

use crate::config::S3Config;
use crate::tls::{handshake, load_certs, RustlsStream};

/// Longest a client may take over its TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

pub struct S3Tls {
    cert: PathBuf,
    key: PathBuf,
    config: RwLock<Arc<rustls::ServerConfig>>,
}

fn build(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs = load_certs(cert, "s3.tls_cert")?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("s3.tls_key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("s3 TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("s3.tls_cert/s3.tls_key do not form a usable pair: {e}"))?;
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}

impl S3Tls {
    /// The HTTPS setup, when `s3.tls_listen` is set; an error says which
    /// file is wrong and why.
    pub fn load(cfg: &S3Config) -> Result<Option<Arc<S3Tls>>, String> {
        if cfg.tls_listen.is_none() {
            return Ok(None);
        }
        let (Some(cert), Some(key)) = (&cfg.tls_cert, &cfg.tls_key) else {
            return Err("s3.tls_listen is set but s3.tls_cert or s3.tls_key is not: HTTPS needs both (PEM files)".into());
        };
        let config = build(cert, key)?;
        Ok(Some(Arc::new(S3Tls { cert: cert.clone(), key: key.clone(), config: RwLock::new(config) })))
    }

    /// Reads the certificate and key again (SIGHUP).
    pub fn reload(&self) -> Result<(), String> {
        let c = build(&self.cert, &self.key)?;
        *self.config.write().unwrap() = c;
        Ok(())
    }

    /// Runs the server side of a handshake on an accepted connection.
    pub async fn accept(&self, mut s: TcpStream) -> Result<RustlsStream, String> {
        let config = self.config.read().unwrap().clone();
        let mut conn: rustls::Connection = rustls::ServerConnection::new(config).map_err(|e| e.to_string())?.into();
        let done = futures_lite::future::or(async { Some(handshake(&mut s, &mut conn).await) }, async {
            glommio::timer::sleep(Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS)).await;
            None
        })
        .await;
        match done {
            Some(Ok(())) => Ok(RustlsStream::new(s, conn)),
            Some(Err(e)) => Err(e),
            None => Err(format!("the TLS handshake did not finish within {TLS_HANDSHAKE_TIMEOUT_MS} ms")),
        }
    }
}
