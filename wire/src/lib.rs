//! `wire`: replication frames and the sans-IO protocol state machines.
//!
//! Nothing here touches a socket, a file or a clock: bytes and millisecond
//! timestamps go in, frames and actions come out. `dataplane` drives these
//! machines over glommio sockets; the tests here drive them by the thousand
//! through lossy, duplicating and reordering channels.

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
/// Most records one proxy_get request asks for.
pub const MAX_PROXY_GET_KEYS: usize = 64;

/// A protocol violation by the peer: the connection ends with this reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtoError(pub String);

impl ProtoError {
    pub fn new(s: impl Into<String>) -> ProtoError {
        ProtoError(s.into())
    }
}
