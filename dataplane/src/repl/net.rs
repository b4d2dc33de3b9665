//! Frame I/O on glommio sockets. Reads are cancel-safe (every await is one
//! read into buffers that persist in the connection), so a read can race a
//! timer; writes run to completion and send payload slices straight from
//! where they live (mmap'd log, write buffers) with writev.

use std::io;
use std::net::SocketAddr;
use std::os::unix::io::{AsRawFd, RawFd};
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use wire::{FrameError, FrameHeader, Msg, HEADER_BYTES};

use crate::repl::tls::Transport;

/// Bytes read from a socket at a time (headers and bodies).
const READ_CHUNK_BYTES: usize = 256 << 10;
/// iovecs per writev call.
const MAX_IOVECS: usize = 512;
/// Zero padding for records in payloads.
pub static ZEROS: [u8; 16] = [0; 16];

/// A piece of a frame: bytes in memory, or a region of a segment file that
/// is also mapped (`data`), which a kTLS transport sends with sendfile.
pub enum Chunk<'a> {
    Mem(&'a [u8]),
    File { data: &'a [u8], fd: std::os::unix::io::RawFd, off: u64 },
}

impl Chunk<'_> {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Mem(b) => b,
            Chunk::File { data, .. } => data,
        }
    }
    pub fn len(&self) -> usize {
        self.bytes().len()
    }
}

#[derive(Debug)]
pub enum ConnError {
    Io(io::Error),
    Frame(FrameError),
    Closed,
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Io(e) => write!(f, "{e}"),
            ConnError::Frame(e) => write!(f, "protocol error: {e}"),
            ConnError::Closed => write!(f, "connection closed by the peer"),
        }
    }
}

impl From<io::Error> for ConnError {
    fn from(e: io::Error) -> Self {
        ConnError::Io(e)
    }
}

enum ReadState {
    Header,
    Body { h: FrameHeader },
    Payload { msg: Msg, filled: usize },
}

/// A framed connection.
pub struct FrameConn {
    pub t: Transport,
    pub peer: SocketAddr,
    buf: Vec<u8>,
    len: usize,
    state: ReadState,
    /// Payload being read straight into its own buffer.
    payload: Vec<u8>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Protocol version frames are written with: the highest spoken until
    /// the hello agrees one, then the agreed one.
    pub version: u16,
    /// Set once the hello has agreed a version; from then on every frame
    /// read must carry it.
    version_agreed: bool,
    /// A write (or close) fails once the peer has acknowledged no byte of
    /// this stream for this long: a peer that stopped reading, or a link
    /// that went silent, must not hold a sender forever.
    pub write_stall_ms: u64,
}

impl FrameConn {
    /// `write_stall_ms`: see the field (normally `repl.peer_timeout_ms`).
    pub fn new(t: Transport, peer: SocketAddr, write_stall_ms: u64) -> FrameConn {
        assert!(write_stall_ms > 0, "a write stall limit of 0 ms would fail every blocked write");
        FrameConn {
            t,
            peer,
            buf: vec![0; READ_CHUNK_BYTES],
            len: 0,
            state: ReadState::Header,
            payload: Vec::new(),
            bytes_in: 0,
            bytes_out: 0,
            version: *wire::PROTOCOL_VERSIONS.last().unwrap(),
            version_agreed: false,
            write_stall_ms,
        }
    }

    /// Records the version the hello agreed; frames read afterwards that
    /// carry another version are protocol errors.
    pub fn agree_version(&mut self, v: u16) {
        debug_assert!(wire::PROTOCOL_VERSIONS.contains(&v), "agreed version {v} is not spoken here");
        self.version = v;
        self.version_agreed = true;
    }

    pub fn mode(&self) -> &'static str {
        self.t.mode()
    }

    fn consume(&mut self, n: usize) {
        self.buf.copy_within(n..self.len, 0);
        self.len -= n;
    }

    /// Reads the next frame (message and payload). Cancel-safe: the only
    /// await is a single read whose bytes are recorded before anything else.
    pub async fn read_frame(&mut self) -> Result<(Msg, Vec<u8>), ConnError> {
        loop {
            match &mut self.state {
                ReadState::Header => {
                    if self.len >= HEADER_BYTES {
                        let h = FrameHeader::parse(self.buf[..HEADER_BYTES].try_into().unwrap()).map_err(ConnError::Frame)?;
                        if self.version_agreed && h.version != self.version {
                            return Err(ConnError::Frame(FrameError::VersionMismatch { got: h.version, agreed: self.version }));
                        }
                        let need = HEADER_BYTES + h.body_len as usize;
                        if self.buf.len() < need {
                            self.buf.resize(need, 0);
                        }
                        self.state = ReadState::Body { h };
                        continue;
                    }
                }
                ReadState::Body { h } => {
                    let h = *h;
                    let body_end = HEADER_BYTES + h.body_len as usize;
                    if self.len >= body_end {
                        let msg = wire::frame::decode_body(&h, &self.buf[HEADER_BYTES..body_end]).map_err(ConnError::Frame)?;
                        self.consume(body_end);
                        self.bytes_in += body_end as u64;
                        let plen = h.payload_len as usize;
                        if plen == 0 {
                            self.state = ReadState::Header;
                            return Ok((msg, Vec::new()));
                        }
                        self.payload = vec![0; plen];
                        let have = self.len.min(plen);
                        self.payload[..have].copy_from_slice(&self.buf[..have]);
                        self.consume(have);
                        self.state = ReadState::Payload { msg, filled: have };
                        continue;
                    }
                }
                ReadState::Payload { filled, .. } => {
                    if *filled == self.payload.len() {
                        self.bytes_in += self.payload.len() as u64;
                        let ReadState::Payload { msg, .. } = std::mem::replace(&mut self.state, ReadState::Header) else { unreachable!() };
                        return Ok((msg, std::mem::take(&mut self.payload)));
                    }
                    let at = *filled;
                    let n = self.t.read(&mut self.payload[at..]).await?;
                    if n == 0 {
                        return Err(ConnError::Closed);
                    }
                    if let ReadState::Payload { filled, .. } = &mut self.state {
                        *filled += n;
                    }
                    continue;
                }
            }
            if self.len == self.buf.len() {
                let n = self.buf.len() * 2;
                self.buf.resize(n, 0);
            }
            let n = self.t.read(&mut self.buf[self.len..]).await?;
            if n == 0 {
                return Err(ConnError::Closed);
            }
            self.len += n;
        }
    }

    /// Sends one frame: header and body, then the payload slices.
    pub async fn write_frame(&mut self, msg: &Msg, payload: &[&[u8]]) -> io::Result<()> {
        let plen: usize = payload.iter().map(|p| p.len()).sum();
        let head = wire::frame::encode(msg, plen, self.version);
        let mut slices: Vec<&[u8]> = Vec::with_capacity(1 + payload.len());
        slices.push(&head);
        slices.extend(payload.iter().filter(|p| !p.is_empty()));
        let (fd, stall) = (self.t.raw_fd(), self.write_stall_ms);
        unless_stalled(fd, stall, self.t.write_all_vectored(&slices)).await?;
        self.bytes_out += (head.len() + plen) as u64;
        Ok(())
    }

    /// Sends one frame whose payload pieces may be file regions.
    pub async fn write_frame_chunks(&mut self, msg: &Msg, payload: &[Chunk<'_>]) -> io::Result<()> {
        let plen: usize = payload.iter().map(|p| p.len()).sum();
        let head = wire::frame::encode(msg, plen, self.version);
        let mut parts: Vec<Chunk<'_>> = Vec::with_capacity(1 + payload.len());
        parts.push(Chunk::Mem(&head));
        for p in payload {
            match p {
                Chunk::Mem(b) if b.is_empty() => {}
                Chunk::Mem(b) => parts.push(Chunk::Mem(b)),
                Chunk::File { data, fd, off } => parts.push(Chunk::File { data, fd: *fd, off: *off }),
            }
        }
        let (fd, stall) = (self.t.raw_fd(), self.write_stall_ms);
        unless_stalled(fd, stall, self.t.send_regions(&parts)).await?;
        self.bytes_out += (head.len() + plen) as u64;
        Ok(())
    }

    /// Closes politely (TLS close_notify), giving up on a peer that does
    /// not read.
    pub async fn close(&mut self) {
        let (fd, stall) = (self.t.raw_fd(), self.write_stall_ms);
        let _ = unless_stalled(fd, stall, async {
            self.t.close().await;
            Ok(())
        })
        .await;
    }
}

/// Bytes of the socket's outgoing stream the peer has acknowledged
/// (`tcpi_bytes_acked` of `TCP_INFO`, Linux 4.1 and later).
pub fn bytes_acked(fd: RawFd) -> Option<u64> {
    // The field's offset in the kernel's `struct tcp_info` (uapi), stable
    // since it was added; the libc crate exposes the struct only for musl.
    const TCPI_BYTES_ACKED_OFFSET: usize = 120;
    let mut info = [0u8; 256];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`.
    let r = unsafe { libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, info.as_mut_ptr() as *mut libc::c_void, &mut len) };
    if r != 0 || (len as usize) < TCPI_BYTES_ACKED_OFFSET + 8 {
        return None;
    }
    Some(u64::from_ne_bytes(info[TCPI_BYTES_ACKED_OFFSET..TCPI_BYTES_ACKED_OFFSET + 8].try_into().unwrap()))
}

/// Runs a write, failing it when the peer acknowledges nothing for
/// `stall_ms` while it is under way. Progress is the peer's TCP
/// acknowledgements, not our syscalls: a slow link that still moves bytes
/// is not a stall, a peer whose receive window stays shut is.
pub async fn unless_stalled<F: std::future::Future<Output = io::Result<()>>>(fd: RawFd, stall_ms: u64, write: F) -> io::Result<()> {
    let watchdog = async move {
        let mut last = bytes_acked(fd);
        loop {
            glommio::timer::sleep(std::time::Duration::from_millis(stall_ms)).await;
            let now = bytes_acked(fd);
            // No TCP_INFO (not a TCP socket?): no stall detection.
            if now.is_some() && now == last {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the peer acknowledged nothing for {stall_ms} ms while we were sending (it stopped reading, or the link is down); the connection is dropped and will be retried"),
                ));
            }
            last = now;
        }
    };
    futures_lite::future::or(write, watchdog).await
}

/// Writes every slice with one `sendmsg` per batch of iovecs; when the socket
/// is full, waits for it through glommio (a plain write of the next slice).
///
/// glommio keeps its sockets in blocking mode (io_uring does the waiting),
/// so a raw syscall on one must never block: it would stall every task of
/// this core (S3 requests included) until a slow or stalled peer reads.
/// Hence `MSG_DONTWAIT`.
pub async fn write_all_vectored_plain(s: &mut TcpStream, slices: &[&[u8]]) -> io::Result<()> {
    let fd = s.as_raw_fd();
    let mut idx = 0;
    let mut off = 0;
    while idx < slices.len() {
        let mut iov: Vec<libc::iovec> = Vec::with_capacity(MAX_IOVECS.min(slices.len() - idx));
        for (i, sl) in slices[idx..].iter().take(MAX_IOVECS).enumerate() {
            let start = if i == 0 { off } else { 0 };
            iov.push(libc::iovec { iov_base: sl[start..].as_ptr() as *mut libc::c_void, iov_len: sl.len() - start });
        }
        // SAFETY: a zeroed msghdr whose iovecs point into slices that outlive
        // the call.
        let r = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = iov.len() as _;
            libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        let mut n = if r >= 0 {
            r as usize
        } else {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock && e.raw_os_error() != Some(libc::EINTR) {
                return Err(e);
            }
            // Full: let glommio wait until writable and take what it can.
            s.write(&slices[idx][off..]).await?
        };
        while n > 0 && idx < slices.len() {
            let left = slices[idx].len() - off;
            if n >= left {
                n -= left;
                idx += 1;
                off = 0;
            } else {
                off += n;
                n = 0;
            }
        }
    }
    Ok(())
}

/// Connects with a timeout and the socket options replication wants.
pub async fn connect(addr: &str, timeout: Duration) -> io::Result<(TcpStream, SocketAddr)> {
    use std::net::ToSocketAddrs;
    let sa = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("cannot resolve {addr}")))?;
    let s = TcpStream::connect_timeout(sa, timeout).await.map_err(io::Error::from)?;
    tune(&s);
    Ok((s, sa))
}

/// Socket options for replication streams.
pub fn tune(s: &TcpStream) {
    let _ = s.set_nodelay(true);
    let fd = s.as_raw_fd();
    let big: libc::c_int = 8 << 20;
    // SAFETY: setsockopt on a valid socket fd with a c_int value.
    unsafe {
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, &big as *const _ as *const libc::c_void, 4);
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &big as *const _ as *const libc::c_void, 4);
    }
}

/// Reads exactly `buf.len()` bytes.
pub async fn read_exact(s: &mut TcpStream, buf: &mut [u8]) -> io::Result<()> {
    s.read_exact(buf).await
}

pub async fn write_all(s: &mut TcpStream, buf: &[u8]) -> io::Result<()> {
    s.write_all(buf).await
}
