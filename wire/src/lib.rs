//! `wire`: replication frames and the sans-IO protocol state machines.

/// Largest frame (header, body and payload).
pub const MAX_FRAME_BYTES: usize = 64 << 20;
/// Most records in one realtime batch.
pub const MAX_RECORDS_PER_BATCH: usize = 65536;
