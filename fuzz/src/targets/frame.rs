//! Replication frames: `FrameHeader::parse` on the first 24 bytes,
//! `frame::decode_body` on the body, and the push decoder `FrameDecoder`
//! over the whole input as a byte stream.
//!
//! Invariants:
//! * a header that parses is within the limits and re-encodes to itself;
//! * a body that decodes re-encodes (`frame::encode`) to a frame that
//!   decodes to an equal message;
//! * `FrameDecoder` yields the same frames and the same final state whether
//!   the stream arrives at once or in small pieces.

use wire::frame::{self, FrameHeader, HEADER_BYTES};
use wire::msg::*;
use wire::{Frame, FrameDecoder, FrameError, FS_SUB_BUCKETS, MAX_BODY_BYTES, MAX_FRAME_BYTES};

use crate::driver::Target;
use crate::mutate::Mutator;

pub static TARGET: Target = Target {
    name: "frame",
    run,
    seeds,
    mutator: Mutator {
        dict: &[b"DPRW", &[1, 0], &[0, 0, 0, 0], &[0xff, 0xff, 0xff, 0xff], &[0; 8], &[0xff; 8]],
        limits: &[
            MAX_FRAME_BYTES as u64,
            (MAX_FRAME_BYTES - HEADER_BYTES) as u64,
            MAX_BODY_BYTES as u64,
            HEADER_BYTES as u64,
            wire::MAX_RECORDS_PER_BATCH as u64,
            wire::MAX_KEYS_PER_LIST as u64,
            wire::MAX_PROXY_GET_KEYS as u64,
            17, // last MsgKind
        ],
        max_len: 64 << 10,
        printable: false,
    },
    fixup: Some(fixup),
};

fn err_class(e: &FrameError) -> String {
    let s = format!("{e:?}");
    let variant = s.split(|c: char| !c.is_alphanumeric()).next().unwrap_or("");
    match e {
        FrameError::BadBody { kind, detail } => format!("BadBody {kind:?} {}", strip_addresses(detail).chars().take(40).collect::<String>()),
        FrameError::UnexpectedPayload { kind, .. } => format!("UnexpectedPayload {kind:?}"),
        FrameError::KindMismatch { header, body } => format!("KindMismatch {header:?} {body:?}"),
        _ => variant.to_string(),
    }
}

/// The error text without heap addresses (rkyv names the pointer it
/// refused, which differs between two buffers holding the same bytes).
fn without_addresses(e: &FrameError) -> String {
    strip_addresses(&e.to_string())
}

fn strip_addresses(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("0x") {
        out.push_str(&rest[..i + 2]);
        rest = rest[i + 2..].trim_start_matches(|c: char| c.is_ascii_hexdigit());
        out.push('_');
    }
    out.push_str(rest);
    out
}

/// Re-encodes a decoded message and checks it decodes back equal.
fn check_roundtrip(msg: &Msg, version: u16, payload_len: u32) {
    let body = wire::msg::encode_body(msg);
    let back = wire::msg::decode_body(&body).unwrap_or_else(|e| panic!("re-encoded {:?} body does not decode: {e}", msg.kind()));
    assert_eq!(&back, msg, "message changed through encode/decode of its body");
    if body.len() > MAX_BODY_BYTES {
        return;
    }
    let room = MAX_FRAME_BYTES - HEADER_BYTES - body.len();
    let payload_len = if msg.kind().has_payload() { (payload_len as usize).min(room) } else { 0 };
    let enc = frame::encode(msg, payload_len, version);
    let h = FrameHeader::parse(enc[..HEADER_BYTES].try_into().unwrap()).unwrap_or_else(|e| panic!("re-encoded {:?} header does not parse: {e}", msg.kind()));
    assert_eq!((h.kind, h.version, h.payload_len as usize), (msg.kind(), version, payload_len));
    assert_eq!(h.body_len as usize, enc.len() - HEADER_BYTES);
    let again = frame::decode_body(&h, &enc[HEADER_BYTES..]).unwrap_or_else(|e| panic!("re-encoded {:?} frame does not decode: {e}", msg.kind()));
    assert_eq!(&again, msg, "message changed through frame encode/decode");
}

/// Feeds `data` to a fresh decoder in pieces of `step` bytes; returns the
/// frames, the final result and the bytes left buffered.
fn stream(data: &[u8], step: usize) -> (Vec<Frame>, Result<(), FrameError>, usize) {
    let mut d = FrameDecoder::new();
    let mut frames = Vec::new();
    for piece in data.chunks(step.max(1)) {
        d.feed(piece);
        loop {
            match d.next_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    // Sticky: asking again gives the same error.
                    assert_eq!(d.next_frame().err(), Some(e.clone()), "decoder error is not sticky");
                    return (frames, Err(e), 0);
                }
            }
        }
    }
    let left = d.buffered();
    (frames, Ok(()), left)
}

pub fn run(data: &[u8]) -> String {
    let mut class = String::new();
    if data.len() < HEADER_BYTES {
        class.push_str("short");
    } else {
        match FrameHeader::parse(data[..HEADER_BYTES].try_into().unwrap()) {
            Err(e) => class.push_str(&err_class(&e)),
            Ok(h) => {
                assert!(h.body_len as usize <= MAX_BODY_BYTES, "header over MAX_BODY_BYTES accepted");
                assert!(HEADER_BYTES + h.rest_len() <= MAX_FRAME_BYTES, "header over MAX_FRAME_BYTES accepted");
                assert!(h.payload_len == 0 || h.kind.has_payload(), "payload on a {:?} accepted", h.kind);
                assert_eq!(FrameHeader::parse(&h.encode()), Ok(h), "header does not re-encode to itself");
                let end = HEADER_BYTES + h.body_len as usize;
                match data.get(HEADER_BYTES..end) {
                    None => class.push_str(&format!("{:?} short body", h.kind)),
                    Some(body) => {
                        match frame::decode_body(&h, body) {
                            Ok(msg) => {
                                assert_eq!(msg.kind(), h.kind);
                                check_roundtrip(&msg, h.version, h.payload_len);
                                class.push_str(&format!("ok {:?}", h.kind));
                            }
                            Err(e) => class.push_str(&err_class(&e)),
                        }
                        // The body validation behind the crc, reached directly.
                        if let Ok(msg) = wire::msg::decode_body(body) {
                            check_roundtrip(&msg, h.version, 0);
                        }
                    }
                }
            }
        }
    }

    let whole = stream(data, data.len());
    let step = 1 + (data.len() % 13);
    let pieces = stream(data, step);
    assert_eq!(whole.0, pieces.0, "frames differ between whole and {step}-byte feeding");
    assert_eq!(
        whole.1.as_ref().map_err(without_addresses),
        pieces.1.as_ref().map_err(without_addresses),
        "final result differs between whole and {step}-byte feeding"
    );
    assert_eq!(whole.2, pieces.2, "buffered bytes differ between whole and {step}-byte feeding");
    let mut framed = 0usize;
    for f in &whole.0 {
        check_roundtrip(&f.msg, f.version, f.payload.len() as u32);
        assert!(f.payload.is_empty() || f.msg.kind().has_payload());
        framed += HEADER_BYTES + f.payload.len();
    }
    assert!(framed + whole.2 <= data.len(), "decoder handed out more bytes than it was fed");
    class.push_str(&format!(
        " | stream {} frames, {}",
        whole.0.len().min(3),
        match &whole.1 {
            Ok(()) if whole.2 == 0 => "clean".to_string(),
            Ok(()) => "partial".to_string(),
            Err(e) => err_class(e),
        }
    ));
    class
}

/// Makes the frames in `b` self-consistent: body crc over the body actually
/// present, then the header crc. Walks frame by frame.
pub fn fixup(b: &mut Vec<u8>) {
    let mut off = 0usize;
    while b.len() >= off + HEADER_BYTES {
        let h = &mut b[off..];
        let body_len = u32::from_le_bytes(h[8..12].try_into().unwrap()) as usize;
        let payload_len = u32::from_le_bytes(h[12..16].try_into().unwrap()) as usize;
        if let Some(body) = h.get(HEADER_BYTES..HEADER_BYTES + body_len) {
            let c = crc32c::crc32c(body);
            h[16..20].copy_from_slice(&c.to_le_bytes());
        }
        let c = crc32c::crc32c(&h[0..20]);
        h[20..24].copy_from_slice(&c.to_le_bytes());
        off = match off.checked_add(HEADER_BYTES + body_len + payload_len) {
            Some(n) => n,
            None => break,
        };
    }
}

fn hello(role: u8) -> Hello {
    Hello {
        cluster_name: "dc-east".into(),
        cluster_id: 0x1234_5678_9abc_def0,
        versions: PROTOCOL_VERSIONS.to_vec(),
        ring_size: 64,
        n_val: 1,
        tls_required: role == ROLE_SINK,
        node_addr: "10.0.0.1:9001".into(),
        core_addrs: vec!["10.0.0.1:9100".into(), "10.0.0.1:9101".into()],
        tree_segments: 4096,
        role,
    }
}

/// Records as they travel in a batch payload.
fn records(n: usize) -> Vec<u8> {
    let mut p = Vec::new();
    for i in 0..n {
        let key = format!("Mbucket\0key-{i}");
        let meta = dataplane::model::encode_meta(&[7], key.len());
        p.extend(storage::record::encode_record(
            if i % 2 == 0 { storage::Kind::Block } else { storage::Kind::Manifest },
            storage::FLAG_REPLICATE | storage::FLAG_TREE,
            100 + i as u64,
            storage::Version { hlc: (1_700_000_000_000 << 16) | i as u64, cluster: 7 },
            i as u64 * 31,
            key.as_bytes(),
            &meta,
            &vec![b'v'; 10 + i * 7],
        ));
    }
    p
}

/// One message of every kind, each with the payload it may carry.
pub fn messages() -> Vec<(&'static str, Msg, Vec<u8>)> {
    vec![
        ("hello", Msg::Hello(hello(ROLE_SOURCE)), vec![]),
        ("hello-sink", Msg::Hello(hello(ROLE_SINK)), vec![]),
        ("hello-reply", Msg::HelloReply(HelloReply { hello: hello(ROLE_SINK), version: *PROTOCOL_VERSIONS.last().unwrap() }), vec![]),
        (
            "data-hello",
            Msg::DataHello(DataHello {
                cluster_id: 9,
                cluster_name: "dc-west".into(),
                version: *PROTOCOL_VERSIONS.last().unwrap(),
                source_core: 1,
                partitions: vec![0, 5, 63],
                cursors: vec![0, 17, 1 << 40],
                incarnation: 0xfeed,
                purpose: PURPOSE_REALTIME,
            }),
            vec![],
        ),
        (
            "data-hello-fullsync",
            Msg::DataHello(DataHello { cluster_id: 9, cluster_name: String::new(), version: *PROTOCOL_VERSIONS.last().unwrap(), source_core: 0, partitions: vec![], cursors: vec![], incarnation: 1, purpose: PURPOSE_FULLSYNC }),
            vec![],
        ),
        ("data-hello-reply", Msg::DataHelloReply(DataHelloReply { sink_core: 3 }), vec![]),
        ("batch", Msg::Batch(Batch { seq: 9, partition: 3, after_lsn: 99, upto_lsn: 103, records: 4 }), records(4)),
        ("batch-empty", Msg::Batch(Batch { seq: 1, partition: 0, after_lsn: 0, upto_lsn: 5, records: 0 }), vec![]),
        ("ack", Msg::Ack(Ack { partition: 3, upto_lsn: 103, seq: 9 }), vec![]),
        ("heartbeat", Msg::Heartbeat(Heartbeat { now_ms: 1_700_000_000_000 }), vec![]),
        ("error", Msg::error(ERR_RING_SIZE, "ring size mismatch: 64 here, 128 there"), vec![]),
        ("error-empty", Msg::error(ERR_PROTOCOL, ""), vec![]),
        ("proxy-get", Msg::ProxyGet(ProxyGet { req_id: 42, keys: vec![b"Kbucket\0key\0uid-uid-uid-uid-\0\0\0\x01".to_vec(), vec![], vec![0xff; 40]] }), vec![]),
        ("proxy-get-reply", Msg::ProxyGetReply(ProxyGetReply { req_id: 42, found: vec![true, false, true], error: String::new() }), records(2)),
        ("proxy-get-reply-err", Msg::ProxyGetReply(ProxyGetReply { req_id: 43, found: vec![], error: "at most 64 keys per proxy_get".into() }), vec![]),
        ("fs-start", Msg::FsStart(FsStart { partition: 5, tree_segments: 4096, digest: 0x1234_5678_9abc_def0 }), vec![]),
        ("fs-segment-hashes", Msg::FsSegmentHashes(FsSegmentHashes { partition: 5, level: 0, hashes: (0..16u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect() }), vec![]),
        ("fs-tree-ask", Msg::FsTreeAsk(FsTreeAsk { partition: 5, level: 1, nodes: vec![0, 3, 15] }), vec![]),
        ("fs-segment-hashes-level", Msg::FsSegmentHashes(FsSegmentHashes { partition: 5, level: 1, hashes: (0..48u64).collect() }), vec![]),
        (
            "fs-diff",
            Msg::FsDiff(FsDiff { partition: 5, segments: vec![0, 7, 4095], sub_hashes: (0..3 * FS_SUB_BUCKETS as u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect(), whole_segments: vec![12, 13] }),
            vec![],
        ),
        (
            "fs-key-list",
            Msg::FsKeyList(FsKeyList {
                partition: 5,
                segment: 7,
                sub_mask: 0b1001,
                entries: vec![
                    FsEntry { key: b"Mbucket\0a".to_vec(), hlc: 1, cluster: 2, vhash: 3 },
                    FsEntry { key: b"Mbucket\0a longer key that is stored out of line".to_vec(), hlc: u64::MAX, cluster: 0, vhash: 1 },
                ],
                last: true,
            }),
            vec![],
        ),
        ("fs-push", Msg::FsPush(FsPush { partition: 5, seq: 2, records: 3 }), records(3)),
        ("fs-push-ack", Msg::FsPushAck(FsPushAck { partition: 5, seq: 2 }), vec![]),
        ("fs-done", Msg::FsDone(FsDone { partition: 5, segments_differing: 2, keys_compared: 10, objects_sent: 3, bytes_sent: 4096 }), vec![]),
    ]
}

fn encoded(m: &Msg, payload: &[u8], version: u16) -> Vec<u8> {
    let mut f = frame::encode(m, payload.len(), version);
    f.extend_from_slice(payload);
    f
}

pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let msgs = messages();
    let current = *PROTOCOL_VERSIONS.last().unwrap();
    let mut out: Vec<(String, Vec<u8>)> = msgs.iter().map(|(n, m, p)| (n.to_string(), encoded(m, p, current))).collect();
    // A realtime conversation as one stream, and one in a future version.
    let mut conv = Vec::new();
    for name in ["data-hello", "batch", "heartbeat", "batch-empty"] {
        let (_, m, p) = msgs.iter().find(|(n, _, _)| *n == name).unwrap();
        conv.extend(encoded(m, p, current));
    }
    out.push(("stream-realtime".into(), conv));
    let mut conv = Vec::new();
    for name in ["fs-start", "fs-segment-hashes", "fs-tree-ask", "fs-segment-hashes-level", "fs-diff", "fs-key-list", "fs-push", "fs-done"] {
        let (_, m, p) = msgs.iter().find(|(n, _, _)| *n == name).unwrap();
        conv.extend(encoded(m, p, current));
    }
    out.push(("stream-fullsync".into(), conv));
    out.push(("version-next".into(), encoded(&Msg::Ack(Ack { partition: 0, upto_lsn: 1, seq: 1 }), &[], current + 1)));
    // A header alone (body and payload still to come).
    let f = encoded(&msgs[6].1, &msgs[6].2, 1);
    out.push(("header-only".into(), f[..HEADER_BYTES].to_vec()));
    out
}
