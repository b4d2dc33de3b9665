//! TLS in userspace over a glommio TCP socket (rustls): the handshake, and
//! a stream that reads and writes through a finished session. Used by the
//! replication transports (`repl::tls`, which may hand the session to the
//! kernel) and by the S3 API's HTTPS listener (`s3api::tls`).

use std::io::{self, Read, Write};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// Bytes of ciphertext read from the socket at a time.
pub const TLS_READ_BYTES: usize = 64 << 10;

/// The PEM certificates of `path` (`what`: the config key, for errors).
pub fn load_certs(path: &std::path::Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path).map_err(|e| format!("{what} {}: {e}", path.display()))?.collect();
    let certs = certs.map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{what} {}: no PEM certificate in the file", path.display()));
    }
    Ok(certs)
}

/// Runs a handshake to its end (either side); on a protocol error the alert
/// goes to the peer before the error returns.
pub async fn handshake(s: &mut TcpStream, conn: &mut rustls::Connection) -> Result<(), String> {
    let mut buf = vec![0u8; TLS_READ_BYTES];
    while conn.is_handshaking() {
        while conn.wants_write() {
            let mut out = Vec::new();
            conn.write_tls(&mut out).map_err(|e| e.to_string())?;
            s.write_all(&out).await.map_err(|e| e.to_string())?;
        }
        if !conn.is_handshaking() {
            break;
        }
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the peer closed the connection during the TLS handshake (is tls.enabled set on both sides, with certificates from the same CA?)".into());
        }
        let mut slice = &buf[..n];
        while !slice.is_empty() {
            conn.read_tls(&mut slice).map_err(|e| e.to_string())?;
            if let Err(e) = conn.process_new_packets() {
                // Tell the peer why (the alert), then fail.
                let mut out = Vec::new();
                let _ = conn.write_tls(&mut out);
                let _ = s.write_all(&out).await;
                return Err(format!("TLS handshake failed: {e}"));
            }
        }
    }
    while conn.wants_write() {
        let mut out = Vec::new();
        conn.write_tls(&mut out).map_err(|e| e.to_string())?;
        s.write_all(&out).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A TLS session in userspace over a TCP socket.
pub struct RustlsStream {
    s: TcpStream,
    conn: rustls::Connection,
    /// Ciphertext read from the socket and not yet taken by rustls.
    rbuf: Vec<u8>,
    rpos: usize,
    rlen: usize,
}

impl RustlsStream {
    /// A connection whose handshake is done.
    pub fn new(s: TcpStream, conn: rustls::Connection) -> RustlsStream {
        RustlsStream { s, conn, rbuf: Vec::new(), rpos: 0, rlen: 0 }
    }

    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        &self.s
    }

    /// Sends close_notify and flushes (the TCP side stays open).
    pub async fn send_close_notify(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        self.flush_tls().await
    }

    async fn flush_tls(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            let mut out = Vec::with_capacity(TLS_READ_BYTES);
            self.conn.write_tls(&mut out)?;
            self.s.write_all(&out).await?;
        }
        Ok(())
    }

    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // Feed buffered ciphertext to rustls, as much as it takes (its
            // plaintext buffer is bounded; the rest waits here).
            if self.rpos < self.rlen {
                let mut slice = &self.rbuf[self.rpos..self.rlen];
                let before = slice.len();
                let took = match self.conn.read_tls(&mut slice) {
                    Ok(_) => before - slice.len(),
                    Err(e) if e.kind() == io::ErrorKind::Other => 0, // plaintext buffer full: drain it first
                    Err(e) => return Err(e),
                };
                self.rpos += took;
                self.conn.process_new_packets().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}")))?;
                self.flush_tls().await?;
                if took > 0 || self.conn.reader().read(&mut []).is_ok() {
                    continue;
                }
            }
            // Need more ciphertext. (Cancel-safe: bytes read are recorded in
            // rbuf before anything else.)
            if self.rbuf.len() < TLS_READ_BYTES {
                self.rbuf.resize(TLS_READ_BYTES, 0);
            }
            if self.rpos == self.rlen {
                self.rpos = 0;
                self.rlen = 0;
            } else if self.rlen == self.rbuf.len() {
                self.rbuf.copy_within(self.rpos..self.rlen, 0);
                self.rlen -= self.rpos;
                self.rpos = 0;
            }
            let n = self.s.read(&mut self.rbuf[self.rlen..]).await?;
            if n == 0 {
                return Ok(0);
            }
            self.rlen += n;
        }
    }

    pub async fn write_all_vectored(&mut self, slices: &[&[u8]]) -> io::Result<()> {
        for s in slices {
            let mut rest = *s;
            while !rest.is_empty() {
                let n = self.conn.writer().write(rest)?;
                rest = &rest[n..];
                self.flush_tls().await?;
            }
        }
        self.flush_tls().await
    }
}
