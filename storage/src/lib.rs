//! `storage`: the per-partition log-structured store of a dataplane node.
//!
//! One [`Partition`] is one append-only log made of preallocated segment
//! files, an in-memory index (key → location, version, value hash), a hash
//! tree for fullsync, durable cursors for realtime replication, and
//! compaction. A partition is owned by one glommio executor (it is `!Send`);
//! sealed segments are read through shared `mmap`s that any thread may read.
//!
//! The on-disk format is described in `docs/architecture.md` ("Storage").

mod buffer;
pub mod cold;
mod compaction;
mod cursor;
mod dir;
mod error;
mod hint;
mod index;
mod notify;
mod partition;
pub mod record;
mod segment;

pub use cold::{ColdReader, ColdRecord, FileRegion, Located, MAX_COLD_READ_FILES};
pub use compaction::CompactionStats;
pub use cursor::CURSOR_FILE;
pub use dir::{free_bytes, StoreDir, FORMAT_FILE};
pub use error::{Error, Result};
pub use index::{key_hash, tree_contribution, tree_sub_bucket, Entry, TreeEntry, DEFAULT_TREE_SEGMENTS, MAX_TREE_SEGMENTS};
pub use partition::{
    AppendOutcome, Damage, LsnIter, Partition, PartitionConfig, PartitionStats, PutMode,
    SyncMode, WriteRecord, CURSOR_PERSIST_INTERVAL_MS, ITER_SPAN_BYTES,
};
pub use record::{
    Header, Kind, Version, FLAG_ORDERED, FLAG_REPLICATE, FLAG_TREE, HEADER_BYTES,
    MAX_KEY_BYTES, MAX_META_BYTES, MAX_RECORD_BYTES, MAX_VALUE_BYTES, RECORD_ALIGN,
};
pub use segment::{
    RecordView, SendRecord, FORMAT_VERSION, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES,
    SEGMENT_HEADER_BYTES,
};

/// Per-partition log sequence number. Strictly increasing; 0 means "before
/// the first record".
pub type Lsn = u64;

/// Current wall-clock time in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// io_uring buffer memory to give each executor (glommio `io_memory`): write
/// buffers come from this registered, pre-faulted pool while it has room.
pub const RECOMMENDED_IO_MEMORY_BYTES: usize = 64 << 20;

/// Preemption timer to give each executor (glommio's default is 100 ms).
/// Write buffers are submitted to the disk only when the executor gets back
/// to its reactor, which a busy task does when this timer fires, so it
/// bounds how long a closed buffer waits: with 100 ms an appending task
/// filled every buffer before the first write went out.
pub const RECOMMENDED_PREEMPT_TIMER: std::time::Duration = std::time::Duration::from_millis(2);

/// Keeps large aligned allocations (write buffers beyond the io_uring pool)
/// in malloc's arenas instead of fresh mmaps, so that reusing them does not
/// fault in and zero new pages every time. Call once at process start.
pub fn tune_malloc() {
    // SAFETY: mallopt only adjusts allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}
