//! Transports for replication connections: plaintext TCP, TLS in userspace
//! (rustls), or TLS in the kernel (kTLS) after a rustls handshake.

use std::io;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

pub enum Transport {
    Plain(TcpStream),
}

impl Transport {
    pub fn mode(&self) -> &'static str {
        match self {
            Transport::Plain(_) => "plaintext",
        }
    }

    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf).await,
        }
    }

    pub async fn write_all_vectored(&mut self, slices: &[&[u8]]) -> io::Result<()> {
        match self {
            Transport::Plain(s) => super::net::write_all_vectored_plain(s, slices).await,
        }
    }

    pub async fn close(&mut self) {
        match self {
            Transport::Plain(s) => {
                let _ = s.flush().await;
                let _ = s.shutdown(std::net::Shutdown::Both).await;
            }
        }
    }
}

/// Wraps an outgoing connection as the configuration says (TLS or not).
pub async fn client(c: &crate::runtime::Core, s: TcpStream, _peer: &str) -> Result<Transport, String> {
    if c.node.cfg.tls.enabled {
        return Err("TLS is not available in this build".into());
    }
    Ok(Transport::Plain(s))
}

/// Wraps an accepted connection as the configuration says (TLS or not).
pub async fn server(c: &crate::runtime::Core, s: TcpStream) -> Result<Transport, String> {
    if c.node.cfg.tls.enabled {
        return Err("TLS is not available in this build".into());
    }
    Ok(Transport::Plain(s))
}
