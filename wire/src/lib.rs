//! `wire`: replication frames and the sans-IO protocol state machines.
//!
//! Nothing here touches a socket, a file or a clock: bytes and millisecond
//! timestamps go in, frames and actions come out. `dataplane` drives these
//! machines over glommio sockets; the tests here drive the realtime machines
//! by the thousand through lossy, duplicating and reordering channels, and
//! the fullsync machine against a simulated sink.

pub mod cm;
pub mod frame;
pub mod fullsync;
pub mod msg;
pub mod realtime;

pub use frame::{Frame, FrameDecoder, FrameError, FrameHeader, HEADER_BYTES};
pub use msg::*;

/// Largest frame (header, body and payload).
pub const MAX_FRAME_BYTES: usize = 64 << 20;
/// Largest frame body (the rkyv-encoded message).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Most records in one realtime batch.
pub const MAX_RECORDS_PER_BATCH: usize = 65536;
/// Most keys one fullsync key list carries.
pub const MAX_KEYS_PER_LIST: usize = 4096;
/// Most bytes of keys one fullsync key list carries.
pub const MAX_KEY_LIST_BYTES: usize = 512 << 10;
/// Most segments one fullsync diff frame names (with their sub-bucket
/// hashes: 4096 × (4 + 16 × 8) bytes, about half of MAX_BODY_BYTES).
pub const MAX_DIFF_SEGMENTS_PER_FRAME: usize = 4096;
/// Bits of the key hash, below the tree segment bits, that pick a key's
/// sub-bucket inside its segment.
pub const FS_SUB_BITS: u32 = 4;
/// Sub-buckets per tree segment: fullsync lists only the keys of the
/// sub-buckets whose hashes differ.
pub const FS_SUB_BUCKETS: usize = 1 << FS_SUB_BITS;
/// Fewest keys a source's segment needs for its sub-bucket hashes to be
/// sent; below this (or when the sink's segment is empty) the segment is
/// listed whole, which costs about as little.
pub const FS_SUB_MIN_KEYS: usize = 4;
/// Most records one proxy_get request asks for.
pub const MAX_PROXY_GET_KEYS: usize = 64;
const _: () = assert!(MAX_DIFF_SEGMENTS_PER_FRAME * (4 + FS_SUB_BUCKETS * 8) + 4096 <= MAX_BODY_BYTES);
const _: () = assert!(FS_SUB_BUCKETS <= 32, "sub-bucket masks are u32");

/// A protocol violation by the peer: the connection ends with this reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtoError(pub String);

impl ProtoError {
    pub fn new(s: impl Into<String>) -> ProtoError {
        ProtoError(s.into())
    }
}
