//! Frames: a fixed 24-byte header, an rkyv body, then (for data frames) raw
//! payload bytes that are never re-encoded.
//!
//! ```text
//! off size field
//!   0   4  magic "DPRW"
//!   4   2  protocol version
//!   6   2  kind (the message variant, for quick dispatch and checks)
//!   8   4  body length
//!  12   4  payload length
//!  16   4  crc32c of the body
//!  20   4  crc32c of the header bytes 0..20
//! ```
//!
//! The body is validated once (bytecheck) when decoded. Payloads are made
//! of storage records, each carrying its own crc32c, which the receiver
//! checks record by record.

use crate::msg::{Msg, MsgKind};
use crate::{MAX_BODY_BYTES, MAX_FRAME_BYTES};

pub const MAGIC: [u8; 4] = *b"DPRW";
pub const HEADER_BYTES: usize = 24;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub version: u16,
    pub kind: MsgKind,
    pub body_len: u32,
    pub payload_len: u32,
    pub body_crc: u32,
}

/// What is wrong with a frame. Every variant is a protocol error that ends
/// the connection; none of them allocates what the peer asked for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("bad frame magic {0:02x?}: the peer does not speak the dataplane replication protocol (is it a dataplane repl port, and is TLS configured the same on both sides?)")]
    BadMagic([u8; 4]),
    #[error("frame header checksum mismatch")]
    BadHeaderCrc,
    #[error("unknown frame kind {0}")]
    UnknownKind(u16),
    #[error("frame body of {0} bytes exceeds MAX_BODY_BYTES ({MAX_BODY_BYTES})")]
    BodyTooLarge(u32),
    #[error("frame of {0} bytes exceeds MAX_FRAME_BYTES ({MAX_FRAME_BYTES})")]
    FrameTooLarge(u64),
    #[error("frame body checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BadBodyCrc { stored: u32, computed: u32 },
    #[error("frame body does not decode as {kind:?}: {detail}")]
    BadBody { kind: MsgKind, detail: String },
    #[error("frame kind {header:?} does not match its body {body:?}")]
    KindMismatch { header: MsgKind, body: MsgKind },
    #[error("frame carries protocol version {got} but version {agreed} was agreed on this connection")]
    VersionMismatch { got: u16, agreed: u16 },
    #[error("{kind:?} frames carry no payload, got {len} bytes")]
    UnexpectedPayload { kind: MsgKind, len: u32 },
}

impl FrameHeader {
    pub fn parse(b: &[u8; HEADER_BYTES]) -> Result<FrameHeader, FrameError> {
        let magic: [u8; 4] = b[0..4].try_into().unwrap();
        if magic != MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        let hcrc = u32::from_le_bytes(b[20..24].try_into().unwrap());
        if crc32c::crc32c(&b[0..20]) != hcrc {
            return Err(FrameError::BadHeaderCrc);
        }
        let kind_raw = u16::from_le_bytes([b[6], b[7]]);
        let kind = MsgKind::from_u16(kind_raw).ok_or(FrameError::UnknownKind(kind_raw))?;
        let body_len = u32::from_le_bytes(b[8..12].try_into().unwrap());
        let payload_len = u32::from_le_bytes(b[12..16].try_into().unwrap());
        if body_len as usize > MAX_BODY_BYTES {
            return Err(FrameError::BodyTooLarge(body_len));
        }
        let total = HEADER_BYTES as u64 + body_len as u64 + payload_len as u64;
        if total > MAX_FRAME_BYTES as u64 {
            return Err(FrameError::FrameTooLarge(total));
        }
        if payload_len > 0 && !kind.has_payload() {
            return Err(FrameError::UnexpectedPayload { kind, len: payload_len });
        }
        Ok(FrameHeader { version: u16::from_le_bytes([b[4], b[5]]), kind, body_len, payload_len, body_crc: u32::from_le_bytes(b[16..20].try_into().unwrap()) })
    }

    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut b = [0u8; HEADER_BYTES];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&self.version.to_le_bytes());
        b[6..8].copy_from_slice(&(self.kind as u16).to_le_bytes());
        b[8..12].copy_from_slice(&self.body_len.to_le_bytes());
        b[12..16].copy_from_slice(&self.payload_len.to_le_bytes());
        b[16..20].copy_from_slice(&self.body_crc.to_le_bytes());
        let c = crc32c::crc32c(&b[0..20]);
        b[20..24].copy_from_slice(&c.to_le_bytes());
        b
    }

    /// Bytes of body and payload that follow the header.
    pub fn rest_len(&self) -> usize {
        self.body_len as usize + self.payload_len as usize
    }
}

/// Encodes `msg` as header + body; the caller sends `payload_len` payload
/// bytes right after.
pub fn encode(msg: &Msg, payload_len: usize, version: u16) -> Vec<u8> {
    let body = crate::msg::encode_body(msg);
    assert!(body.len() <= MAX_BODY_BYTES, "encoded body over MAX_BODY_BYTES");
    assert!(HEADER_BYTES + body.len() + payload_len <= MAX_FRAME_BYTES, "frame over MAX_FRAME_BYTES");
    let kind = msg.kind();
    assert!(payload_len == 0 || kind.has_payload(), "{kind:?} carries no payload");
    let h = FrameHeader {
        version,
        kind,
        body_len: body.len() as u32,
        payload_len: payload_len as u32,
        body_crc: crc32c::crc32c(&body),
    };
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(&h.encode());
    out.extend_from_slice(&body);
    out
}

/// Validates and decodes a body that follows `h`.
pub fn decode_body(h: &FrameHeader, body: &[u8]) -> Result<Msg, FrameError> {
    let computed = crc32c::crc32c(body);
    if computed != h.body_crc {
        return Err(FrameError::BadBodyCrc { stored: h.body_crc, computed });
    }
    let msg = crate::msg::decode_body(body).map_err(|detail| FrameError::BadBody { kind: h.kind, detail })?;
    if msg.kind() != h.kind {
        return Err(FrameError::KindMismatch { header: h.kind, body: msg.kind() });
    }
    Ok(msg)
}

/// A whole frame as the sans-IO decoder hands it out.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub version: u16,
    pub msg: Msg,
    pub payload: Vec<u8>,
}

/// Push-based frame decoder: feed bytes as they arrive, take frames out.
/// Buffers at most one frame (bounded by MAX_FRAME_BYTES, checked from the
/// header before anything is reserved for the rest).
#[derive(Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    header: Option<FrameHeader>,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, None if more bytes are needed, or the
    /// protocol error (sticky: the stream cannot be resynchronised).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.next_inner();
        if let Err(e) = &r {
            self.failed = Some(e.clone());
            self.buf = Vec::new();
        }
        r
    }

    fn next_inner(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.header.is_none() {
            if self.buf.len() < HEADER_BYTES {
                return Ok(None);
            }
            let h = FrameHeader::parse(self.buf[..HEADER_BYTES].try_into().unwrap())?;
            self.header = Some(h);
        }
        let h = self.header.unwrap();
        let need = HEADER_BYTES + h.rest_len();
        if self.buf.len() < need {
            return Ok(None);
        }
        let body = &self.buf[HEADER_BYTES..HEADER_BYTES + h.body_len as usize];
        let msg = decode_body(&h, body)?;
        let payload = self.buf[HEADER_BYTES + h.body_len as usize..need].to_vec();
        self.buf.drain(..need);
        self.header = None;
        Ok(Some(Frame { version: h.version, msg, payload }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::*;

    fn sample() -> Vec<(Msg, Vec<u8>)> {
        vec![
            (
                Msg::Hello(Hello {
                    cluster_name: "dc1".into(),
                    cluster_id: 7,
                    versions: vec![1],
                    ring_size: 64,
                    n_val: 1,
                    tls_required: true,
                    node_addr: "a:1".into(),
                    core_addrs: vec!["a:2".into(), "a:3".into()],
                    tree_segments: 4096,
                    role: ROLE_SOURCE,
                }),
                vec![],
            ),
            (Msg::Batch(Batch { seq: 9, partition: 3, after_lsn: 10, upto_lsn: 20, records: 2 }), vec![7u8; 100]),
            (Msg::Ack(Ack { partition: 3, upto_lsn: 20, seq: 9 }), vec![]),
            (Msg::error(ERR_RING_SIZE, "ring size mismatch"), vec![]),
            (Msg::FsKeyList(FsKeyList { partition: 1, segment: 2, sub_mask: 0b101, entries: vec![FsEntry { key: b"k".to_vec(), hlc: 1, cluster: 2, vhash: 3 }], last: true }), vec![]),
        ]
    }

    #[test]
    fn frames_roundtrip_through_any_split() {
        let mut wire_bytes = Vec::new();
        for (m, p) in sample() {
            wire_bytes.extend(encode(&m, p.len(), 1));
            wire_bytes.extend(&p);
        }
        for step in [1usize, 3, 7, 24, 1000] {
            let mut d = FrameDecoder::new();
            let mut got = Vec::new();
            for chunk in wire_bytes.chunks(step) {
                d.feed(chunk);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push((f.msg, f.payload));
                }
            }
            assert_eq!(got, sample());
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn every_corrupt_byte_is_an_error_not_a_panic_or_a_wrong_frame() {
        let (m, p) = sample().remove(1);
        let mut f = encode(&m, p.len(), 1);
        f.extend(&p);
        let body_end = f.len() - p.len();
        for i in 0..body_end {
            for bit in [0x01u8, 0x80] {
                let mut bad = f.clone();
                bad[i] ^= bit;
                let mut d = FrameDecoder::new();
                d.feed(&bad);
                match d.next_frame() {
                    Err(_) | Ok(None) => {}
                    Ok(Some(fr)) => assert_eq!((fr.msg, fr.payload), (m.clone(), p.clone()), "corruption at {i} produced a different frame"),
                }
            }
        }
    }

    #[test]
    fn oversized_frames_are_refused_before_allocation() {
        let h = FrameHeader { version: 1, kind: MsgKind::Batch, body_len: 10, payload_len: (MAX_FRAME_BYTES) as u32, body_crc: 0 };
        let mut d = FrameDecoder::new();
        d.feed(&h.encode());
        assert!(matches!(d.next_frame(), Err(FrameError::FrameTooLarge(_))));
        let h = FrameHeader { version: 1, kind: MsgKind::Ack, body_len: (MAX_BODY_BYTES + 1) as u32, payload_len: 0, body_crc: 0 };
        assert!(matches!(FrameHeader::parse(&h.encode()), Err(FrameError::BodyTooLarge(_))));
        let h = FrameHeader { version: 1, kind: MsgKind::Ack, body_len: 4, payload_len: 4, body_crc: 0 };
        assert!(matches!(FrameHeader::parse(&h.encode()), Err(FrameError::UnexpectedPayload { .. })));
        let mut junk = *b"GET / HTTP/1.1\r\nHost: x\r\n";
        assert!(matches!(FrameHeader::parse(junk[..24].try_into().unwrap()), Err(FrameError::BadMagic(_))));
        junk[0] = b'D';
        let _ = junk;
    }

    #[test]
    fn body_that_lies_about_its_kind_is_refused() {
        let ack = encode(&Msg::Ack(Ack { partition: 1, upto_lsn: 2, seq: 3 }), 0, 1);
        let mut h = FrameHeader::parse(ack[..24].try_into().unwrap()).unwrap();
        h.kind = MsgKind::Heartbeat;
        let mut bad = h.encode().to_vec();
        bad.extend(&ack[24..]);
        let mut d = FrameDecoder::new();
        d.feed(&bad);
        assert!(matches!(d.next_frame(), Err(FrameError::KindMismatch { .. })));
    }
}
