//! A partition: one append-only log, its index, hash tree, cursors and the
//! flusher task that writes and syncs it.
//!
//! Write path: `append` copies a record into the open write buffer, updates
//! the index and returns its LSN; the flusher writes closed buffers in order
//! with O_DIRECT (glommio DMA file, io_uring) and fdatasyncs by the sync mode.
//! Callers wait for the level they need with `wait_written` / `wait_durable`;
//! many appends share one write and one fdatasync (group commit).
//!
//! Read path: sealed and flushed regions through the segment's mmap, the tail
//! from the write buffers; nothing is copied.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::poll_fn;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use glommio::io::DmaFile;
use memmap2::MmapOptions;

use crate::buffer::{page_ceil, page_floor, BufState, WBuf, PAGE_BYTES};
use crate::cold::{ColdReader, FileRegion, Located};
use crate::cursor::{self, CURSOR_FILE, MAX_CURSORS, MAX_CURSOR_NAME_BYTES};
use crate::error::{is_enospc, Error, Result};
use crate::hint::{self, HintWriter};
use crate::index::{Entry, Index, NewSlot, TreeEntry, DEFAULT_TREE_SEGMENTS, MAX_TREE_SEGMENTS};
use crate::notify::Notify;
use crate::record::{align_up, Header, Kind, Version, HEADER_BYTES, MAX_KEY_BYTES, MAX_META_BYTES, MAX_VALUE_BYTES};
use crate::segment::{
    Backing, DiskSpan, Mapped, RecordView, SegHeader, SegName, Segment, FORMAT_VERSION, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES,
    SEGMENT_HEADER_BYTES,
};
use crate::Lsn;

/// Bytes a seal record takes; every segment keeps room for one.
const SEAL_BYTES: u64 = HEADER_BYTES as u64;
/// Room kept for a pad record (at most a page plus a header).
const PAD_RESERVE_BYTES: u64 = PAGE_BYTES + HEADER_BYTES as u64;
/// O_DIRECT writes a partition keeps in flight at once.
pub const MAX_WRITES_IN_FLIGHT: usize = 4;
/// Largest step by which a segment file is extended at once.
pub const MAX_PREALLOC_STEP_BYTES: u64 = 128 << 20;

/// How far before the end of the preallocated space a background extension
/// starts: half of what was preallocated, so it lands well before it is needed.
fn prealloc_ahead(prealloc_end: u64) -> u64 {
    (prealloc_end / 2).min(MAX_PREALLOC_STEP_BYTES / 2)
}
/// How often dirty cursors are persisted.
pub const CURSOR_PERSIST_INTERVAL_MS: u64 = 1000;
/// How long the flusher sleeps when nothing asks for it (sync = none).
const IDLE_TICK_MS: u64 = 1000;
/// A write buffer with less room than this is closed right away.
const MIN_BUFFER_ROOM_BYTES: usize = 4096;
/// First (smallest) write buffer of a segment.
pub const MIN_WRITE_BUFFER_BYTES: usize = 64 << 10;
/// Pause before retrying a write that failed for lack of space.
const NO_SPACE_RETRY_MS: u64 = 500;
/// How often an idle partition marked out of space looks whether space is back.
const SPACE_RECHECK_MS: u64 = 2_000;
/// Free space beyond a segment's size before a partition marked out of
/// space counts the disk as having room for its next segment again.
const SPACE_MARGIN_BYTES: u64 = 4 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// Every acknowledged append is covered by an fdatasync (group commit).
    Always,
    /// Appends are acknowledged once written (O_DIRECT, survives a process
    /// crash); an fdatasync follows within the interval.
    Interval(Duration),
    /// No fdatasync (except when a segment is sealed or the partition
    /// closes): `wait_durable` returns at once, `wait_written` still waits
    /// for the O_DIRECT write.
    None,
}

#[derive(Clone, Debug)]
pub struct PartitionConfig {
    /// Capacity of one segment file.
    pub segment_bytes: u64,
    /// Size of one in-memory write buffer (one O_DIRECT write).
    pub write_buffer_bytes: usize,
    pub sync: SyncMode,
    /// Number of hash tree segments (power of two).
    pub tree_segments: u32,
    /// Tombstones are kept at least this long (and until every cursor passed them).
    pub tombstone_grace_ms: u64,
    /// Sealed segments with at least this fraction of dead bytes are compacted.
    pub compaction_garbage_ratio: f64,
    /// Appends wait when this many bytes are buffered but not yet written.
    pub max_unflushed_bytes: usize,
    /// Files are extended (fallocate) this much ahead of the write position.
    pub prealloc_step_bytes: u64,
}

impl Default for PartitionConfig {
    fn default() -> Self {
        PartitionConfig {
            segment_bytes: 64 << 20,
            write_buffer_bytes: 4 << 20,
            sync: SyncMode::Interval(Duration::from_millis(100)),
            tree_segments: DEFAULT_TREE_SEGMENTS,
            tombstone_grace_ms: 3_600_000,
            compaction_garbage_ratio: 0.5,
            max_unflushed_bytes: 64 << 20,
            prealloc_step_bytes: 8 << 20,
        }
    }
}

impl PartitionConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |s: String| Err(Error::Config(s));
        if self.segment_bytes < MIN_SEGMENT_BYTES || self.segment_bytes > MAX_SEGMENT_BYTES {
            return bad(format!(
                "segment_bytes = {} is out of range; allowed {}..={}",
                self.segment_bytes, MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES
            ));
        }
        if self.segment_bytes % PAGE_BYTES != 0 {
            return bad(format!("segment_bytes = {} must be a multiple of 4096", self.segment_bytes));
        }
        if self.write_buffer_bytes < MIN_WRITE_BUFFER_BYTES || self.write_buffer_bytes % PAGE_BYTES as usize != 0 || self.write_buffer_bytes > 256 << 20 {
            return bad(format!("write_buffer_bytes = {} must be a multiple of 4096 between 64 KiB and 256 MiB", self.write_buffer_bytes));
        }
        if !self.tree_segments.is_power_of_two() || self.tree_segments > MAX_TREE_SEGMENTS {
            return bad(format!("tree_segments = {} must be a power of two up to {}", self.tree_segments, MAX_TREE_SEGMENTS));
        }
        if !(0.05..=0.95).contains(&self.compaction_garbage_ratio) {
            return bad(format!("compaction_garbage_ratio = {} must be within 0.05..=0.95", self.compaction_garbage_ratio));
        }
        if self.max_unflushed_bytes < self.write_buffer_bytes {
            return bad("max_unflushed_bytes must be at least write_buffer_bytes".into());
        }
        if self.prealloc_step_bytes < PAGE_BYTES || self.prealloc_step_bytes % PAGE_BYTES != 0 {
            return bad("prealloc_step_bytes must be a positive multiple of 4096".into());
        }
        Ok(())
    }
}

/// One record to append. `value` may come in several parts (for example the
/// pieces of a network buffer); they are stored contiguously.
pub struct WriteRecord<'a> {
    pub kind: Kind,
    pub flags: u8,
    pub key: &'a [u8],
    pub meta: &'a [u8],
    pub value: &'a [&'a [u8]],
    pub version: Version,
    pub vhash: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutMode {
    /// Append unconditionally.
    Always,
    /// Append only if the version is newer than the key's current version
    /// (last writer wins; an equal version is an idempotent no-op).
    IfNewer,
    /// Append only if the key's current record is the one at this segment
    /// and offset (`Entry::seg`, `Entry::off`): for removing a record seen
    /// earlier without racing a newer copy of it. A missing key is stale.
    IfAt { seg: u32, off: u64 },
    /// Append only if the key's current record is still the one a caller
    /// looked at (`at`: its segment and offset; `None`: the key was absent)
    /// and the version is newer: a conditional write (S3 `If-Match`,
    /// `If-None-Match`) decided on what it read, with no other write to the
    /// key in between.
    IfUnchanged { at: Option<(u32, u64)> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    Applied { lsn: Lsn, replaced: Option<Entry> },
    /// Not appended: the key's current record (`None`: the key is absent,
    /// only with `PutMode::IfAt`) made the condition fail. `head`: the
    /// partition's last LSN then, which covers that record.
    Stale { current: Option<Entry>, head: Lsn },
}

impl AppendOutcome {
    pub fn lsn(&self) -> Option<Lsn> {
        match self {
            AppendOutcome::Applied { lsn, .. } => Some(*lsn),
            AppendOutcome::Stale { .. } => None,
        }
    }

    /// The LSN that must be durable before the write may be acknowledged:
    /// the record appended or, for a write that lost, the head when it
    /// lost. The record that beat it may still sit in a write buffer (a
    /// replicated record applied a moment ago); a crash must not take both.
    pub fn settle_lsn(&self) -> Lsn {
        match self {
            AppendOutcome::Applied { lsn, .. } => *lsn,
            AppendOutcome::Stale { head, .. } => *head,
        }
    }
}

/// A damaged region found in a sealed segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub path: PathBuf,
    pub offset: u64,
    /// The key whose record was damaged, when it could be told.
    pub key: Option<Vec<u8>>,
    pub detail: String,
}

#[derive(Clone, Debug, Default)]
pub struct PartitionStats {
    pub partition: u32,
    pub keys: u64,
    pub segments: u64,
    pub log_bytes: u64,
    pub dead_bytes: u64,
    pub head_lsn: Lsn,
    pub written_lsn: Lsn,
    pub synced_lsn: Lsn,
    pub appends: u64,
    pub appended_bytes: u64,
    pub unflushed_bytes: u64,
    pub index_heap_bytes: u64,
    pub damaged: u64,
    pub cursors: u64,
    pub compactions: u64,
    pub compacted_bytes: u64,
    pub fdatasyncs: u64,
    /// Times `cursors.dat` was written (realtime acks move cursors often;
    /// the file is written at most once per CURSOR_PERSIST_INTERVAL_MS
    /// unless a cursor is registered or dropped).
    pub cursor_writes: u64,
    /// Sealed segments whose index entries came from their hint file at open.
    pub segments_from_hints: u64,
    /// Rolls that continued in a segment prepared ahead of time.
    pub rolls_prepared: u64,
    pub no_space: bool,
}

pub(crate) struct SegList {
    /// Sorted by name (base, gen): LSN order.
    pub order: Vec<Rc<Segment>>,
    pub by_id: Vec<Option<Rc<Segment>>>,
    /// Bumped whenever `order` changes other than by appending a segment.
    pub generation: u64,
}

impl SegList {
    pub fn get(&self, id: u32) -> Option<&Rc<Segment>> {
        self.by_id.get(id as usize).and_then(|s| s.as_ref())
    }
    pub fn next_id(&self) -> u32 {
        self.by_id.len() as u32
    }
    pub fn position(&self, id: u32) -> Option<usize> {
        self.order.iter().position(|s| s.id == id)
    }
}

pub(crate) struct WriteState {
    pub seg: Rc<Segment>,
    pub file: Rc<DmaFile>,
    /// Offset of the next record.
    pub pos: u64,
    pub open: Rc<WBuf>,
    /// Closed buffers (waiting for their write) and written buffers that
    /// readers still need, oldest first.
    pub pending: VecDeque<Rc<WBuf>>,
    pub prealloc_end: u64,
    pub hint: HintWriter,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub appends: Cell<u64>,
    pub appended_bytes: Cell<u64>,
    pub fdatasyncs: Cell<u64>,
    pub cursor_writes: Cell<u64>,
    pub segments_from_hints: Cell<u64>,
    pub rolls_prepared: Cell<u64>,
    pub compactions: Cell<u64>,
    pub compacted_bytes: Cell<u64>,
}

pub(crate) struct Inner {
    pub id: u32,
    pub dir: PathBuf,
    pub cfg: PartitionConfig,
    pub index: RefCell<Index>,
    pub segs: RefCell<SegList>,
    pub w: RefCell<Option<WriteState>>,
    pub next_lsn: Cell<Lsn>,
    pub written_lsn: Cell<Lsn>,
    pub synced_lsn: Cell<Lsn>,
    want_written: Cell<Lsn>,
    want_synced: Cell<Lsn>,
    unflushed: Cell<usize>,
    flusher_signal: Cell<bool>,
    flusher_waker: RefCell<Option<std::task::Waker>>,
    pub progress: Notify,
    rolling: Cell<bool>,
    failed: RefCell<Option<String>>,
    no_space: RefCell<Option<String>>,
    closing: Cell<bool>,
    closed: Cell<bool>,
    pub cursors: RefCell<BTreeMap<String, Lsn>>,
    cursors_dirty: Cell<bool>,
    /// When the flusher last started writing `cursors.dat`.
    cursors_saved_at: Cell<Instant>,
    /// When a partition marked out of space last looked whether space is back.
    space_checked_at: Cell<Instant>,
    /// A background cursor write is under way (started by the flusher).
    cursors_saving: Cell<bool>,
    /// One `cursors.dat` writer at a time (they share a temporary file).
    cursor_writer: glommio::sync::Semaphore,
    pub damage: RefCell<Vec<Damage>>,
    last_sync: Cell<Instant>,
    pub counters: Counters,
    pub compacting: Cell<bool>,
    /// A preallocation of the open segment is under way.
    pub prealloc_running: Cell<bool>,
    /// Hint files being written in the background (close waits for them).
    pub hint_writes: Cell<usize>,
    /// The next segment, created and wholly preallocated before the roll
    /// that needs it.
    next_seg: RefCell<Option<PreparedSegment>>,
    /// A `prepare_next` task is under way (a roll waits for it).
    preparing: Cell<bool>,
    /// Base of the segment whose preparation failed: not tried again; its
    /// roll creates it inline.
    prepare_failed: Cell<Option<u64>>,
}

/// A segment file made ahead of its roll: header written and synced, the
/// whole capacity preallocated, not yet in the segment list.
struct PreparedSegment {
    name: SegName,
    path: PathBuf,
    file: Rc<DmaFile>,
}

/// A partition handle. Cheap to clone; all clones share one partition.
/// Must stay on the executor that opened it.
#[derive(Clone)]
pub struct Partition(pub(crate) Rc<Inner>);

/// True when a segment file has nothing but zeros after its header page (on
/// ext4 the preallocated, never written space reads as a hole).
fn holds_no_record(path: &Path) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len <= SEGMENT_HEADER_BYTES {
        return Ok(true);
    }
    // SAFETY: lseek on a descriptor we own; no memory is passed.
    let data = unsafe { libc::lseek(f.as_raw_fd(), SEGMENT_HEADER_BYTES as libc::off_t, libc::SEEK_DATA) };
    let mut at = if data < 0 {
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENXIO) => return Ok(true),
            // (a filesystem without SEEK_DATA: read it all)
            Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => SEGMENT_HEADER_BYTES,
            _ => return Err(e),
        }
    } else {
        data as u64
    };
    let mut buf = vec![0u8; 1 << 20];
    while at < len {
        let n = f.read_at(&mut buf[..((len - at) as usize).min(1 << 20)], at)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

fn io_err(ctx: impl Into<String>, e: std::io::Error) -> Error {
    Error::io(ctx, e)
}

/// glommio's own conversion turns its detailed I/O errors into a new
/// `io::Error` that has lost the OS error code (so ENOSPC would no longer be
/// recognised); keep the original error instead. The callers add the path
/// and the operation.
pub(crate) fn glommio_io(e: glommio::GlommioError<()>) -> std::io::Error {
    match e {
        glommio::GlommioError::EnhancedIoError { source, .. } => source,
        other => other.into(),
    }
}

pub(crate) fn map_file(path: &Path, len: u64) -> Result<Arc<Mapped>> {
    let f = std::fs::File::open(path).map_err(|e| io_err(format!("opening {} for reading", path.display()), e))?;
    // SAFETY: the log is append-only; mapped regions are only read after
    // their writes completed, and files are unlinked (never truncated below a
    // region a reader may hold) while mapped.
    let m = unsafe { MmapOptions::new().len(len as usize).map(&f) }
        .map_err(|e| io_err(format!("mapping {}", path.display()), e))?;
    Ok(Arc::new(Mapped { map: m, file: f, path: path.to_path_buf() }))
}

enum ScanEnd {
    /// A seal record ends the segment.
    Sealed,
    /// Clean end (zeros) or a torn/corrupt tail at this offset.
    Tail { torn: bool },
}

impl Partition {
    /// Opens (or creates) partition `id` in `dir`, recovering its log.
    /// Must run inside a glommio executor.
    pub async fn open(dir: &Path, id: u32, cfg: PartitionConfig) -> Result<Partition> {
        cfg.validate()?;
        let dir = dir.to_path_buf();
        {
            let d = dir.clone();
            glommio::executor()
                .spawn_blocking(move || std::fs::create_dir_all(&d))
                .await
                .map_err(|e| io_err(format!("creating {}", dir.display()), e))?;
        }
        let inner = Rc::new(Inner {
            id,
            dir: dir.clone(),
            index: RefCell::new(Index::new(cfg.tree_segments)),
            cfg,
            segs: RefCell::new(SegList { order: Vec::new(), by_id: Vec::new(), generation: 0 }),
            w: RefCell::new(None),
            next_lsn: Cell::new(1),
            written_lsn: Cell::new(0),
            synced_lsn: Cell::new(0),
            want_written: Cell::new(0),
            want_synced: Cell::new(0),
            unflushed: Cell::new(0),
            flusher_signal: Cell::new(false),
            flusher_waker: RefCell::new(None),
            progress: Notify::default(),
            rolling: Cell::new(false),
            failed: RefCell::new(None),
            no_space: RefCell::new(None),
            closing: Cell::new(false),
            closed: Cell::new(false),
            cursors: RefCell::new(BTreeMap::new()),
            cursors_dirty: Cell::new(false),
            cursors_saved_at: Cell::new(Instant::now()),
            space_checked_at: Cell::new(Instant::now()),
            cursors_saving: Cell::new(false),
            cursor_writer: glommio::sync::Semaphore::new(1),
            damage: RefCell::new(Vec::new()),
            last_sync: Cell::new(Instant::now()),
            counters: Counters::default(),
            compacting: Cell::new(false),
            hint_writes: Cell::new(0),
            prealloc_running: Cell::new(false),
            next_seg: RefCell::new(None),
            preparing: Cell::new(false),
            prepare_failed: Cell::new(None),
        });
        let p = Partition(inner);
        let resumed_tail = p.recover().await?;
        glommio::spawn_local(flusher(p.0.clone())).detach();
        if resumed_tail {
            // Every start seals the previous tail at its last valid record
            // and continues in a fresh segment, so bytes beyond a torn tail
            // are never scanned again.
            p.roll().await?;
        }
        Ok(p)
    }

    pub fn id(&self) -> u32 {
        self.0.id
    }

    pub fn dir(&self) -> &Path {
        &self.0.dir
    }

    pub fn config(&self) -> &PartitionConfig {
        &self.0.cfg
    }

    /// LSN of the newest record (0 when empty).
    pub fn head_lsn(&self) -> Lsn {
        self.0.next_lsn.get() - 1
    }

    pub fn written_lsn(&self) -> Lsn {
        self.0.written_lsn.get()
    }

    pub fn synced_lsn(&self) -> Lsn {
        self.0.synced_lsn.get()
    }

    // ---------------------------------------------------------------- recovery

    /// Rebuilds the index from the segments. Returns true when the write
    /// state resumes the tail of an existing segment (which must be sealed).
    async fn recover(&self) -> Result<bool> {
        let inner = &self.0;
        let dir = inner.dir.clone();
        let listing = glommio::executor()
            .spawn_blocking(move || -> std::io::Result<Vec<String>> {
                let mut v = Vec::new();
                for e in std::fs::read_dir(&dir)? {
                    v.push(e?.file_name().to_string_lossy().into_owned());
                }
                Ok(v)
            })
            .await
            .map_err(|e| io_err(format!("listing {}", inner.dir.display()), e))?;
        let mut names: Vec<SegName> = Vec::new();
        let mut stale: Vec<PathBuf> = Vec::new();
        for f in &listing {
            if f.ends_with(".tmp") {
                stale.push(inner.dir.join(f));
            } else if let Some(n) = SegName::parse(f) {
                names.push(n);
            }
        }
        names.sort();
        // Read headers; drop segments that a compaction output covers.
        let mut headers: Vec<(SegHeader, PathBuf)> = Vec::new();
        for n in &names {
            let path = inner.dir.join(n.file_name());
            // A crash while a segment was being created can leave its file
            // empty, or preallocated with the header page never written.
            // Such a file holds no record (records go in only after the
            // header is written and synced), so it is removed rather than
            // reported. Only an all-zero file qualifies: a real segment whose
            // header page was damaged still has records after it, and its
            // bad header is refused below.
            let len = std::fs::metadata(&path).map_err(|e| io_err(format!("reading {}", path.display()), e))?.len();
            let map = if len == 0 { None } else { Some(map_file(&path, len)?) };
            if map.as_ref().map(|m| m[..len as usize].iter().all(|&b| b == 0)).unwrap_or(true) {
                log::warn!("partition {}: removing {} (its creation was interrupted: no header, no records)", inner.id, path.display());
                stale.push(path);
                continue;
            }
            let map = map.expect("a non-empty file is mapped");
            let h = SegHeader::decode(&path, &map[..])?;
            if h.format > FORMAT_VERSION {
                return Err(Error::NewerFormat { dir: inner.dir.clone(), found: h.format, supported: FORMAT_VERSION });
            }
            if h.partition != inner.id || h.name != *n {
                return Err(Error::BadFile {
                    path,
                    what: format!("header says partition {} segment {:?}; expected partition {} segment {:?}", h.partition, h.name, inner.id, n),
                });
            }
            headers.push((h, path));
        }
        let covered = |h: &SegHeader| {
            headers.iter().any(|(o, _)| {
                o.name.gen > h.name.gen && o.name.base <= h.name.base && h.name.base <= o.cover_to && o.name != h.name
            })
        };
        let mut keep = Vec::new();
        for (h, path) in &headers {
            if covered(h) {
                log::warn!("partition {}: removing {} (superseded by a finished compaction)", inner.id, path.display());
                stale.push(path.clone());
                stale.push(path.with_extension("hint"));
            } else {
                keep.push((*h, path.clone()));
            }
        }
        // A segment prepared ahead of a roll that never came (the process
        // stopped first), or a roll that stopped before its first record:
        // a header and nothing after it. The segment before it is the tail.
        if keep.len() >= 2 {
            let (h, path) = keep.last().expect("two or more");
            if h.name.gen == 0 && holds_no_record(path).map_err(|e| io_err(format!("reading {}", path.display()), e))? {
                log::info!("partition {}: removing {} (made ahead of a roll that never came: a header, no records)", inner.id, path.display());
                stale.push(path.clone());
                keep.pop();
            }
        }
        if !stale.is_empty() {
            glommio::executor()
                .spawn_blocking(move || {
                    for p in stale {
                        let _ = std::fs::remove_file(p);
                    }
                })
                .await;
        }
        // Cursors.
        let cpath = inner.dir.join(CURSOR_FILE);
        let cbytes = {
            let c = cpath.clone();
            glommio::executor().spawn_blocking(move || std::fs::read(c)).await
        };
        match cbytes {
            Ok(b) => *inner.cursors.borrow_mut() = cursor::decode(&cpath, &b)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("reading {}", cpath.display()), e)),
        }

        let n = keep.len();
        let mut last_tail: Option<(Rc<Segment>, u64, HintWriter, bool)> = None;
        for (i, (h, path)) in keep.into_iter().enumerate() {
            let is_last = i + 1 == n;
            let map = map_file(&path, h.capacity)?;
            let id = inner.segs.borrow().next_id();
            let seg = Rc::new(Segment::new(id, h.name, path.clone(), h.cover_to, h.capacity, map));
            {
                let mut sl = inner.segs.borrow_mut();
                sl.by_id.push(Some(seg.clone()));
                sl.order.push(seg.clone());
            }
            // Sealed segments with a valid hint load from it.
            if !is_last {
                if let Some(()) = self.load_hint(&seg).await {
                    seg.sealed.set(true);
                    inner.counters.segments_from_hints.set(inner.counters.segments_from_hints.get() + 1);
                    continue;
                }
            }
            let file_len = {
                let p = path.clone();
                glommio::executor().spawn_blocking(move || std::fs::metadata(p).map(|m| m.len())).await.unwrap_or(0)
            };
            let mut hw = HintWriter::default();
            let end = self.scan_segment(&seg, is_last, file_len, &mut hw);
            match end {
                ScanEnd::Sealed => {
                    seg.sealed.set(true);
                    // The hint was missing or unusable: write it now.
                    self.write_hint(&seg, hw).await?;
                }
                ScanEnd::Tail { torn } => {
                    if is_last {
                        last_tail = Some((seg.clone(), seg.end.get(), hw, torn));
                    } else {
                        // Not the last segment, so nothing more is written to
                        // it: either a compaction output (which ends in
                        // zeros), a segment whose seal never landed, or a
                        // damaged one (the scan listed the damage).
                        seg.sealed.set(true);
                        if !torn {
                            self.write_hint(&seg, hw).await?;
                        }
                    }
                }
            }
        }
        // Never let a cursor sit past the head (records lost to a torn tail).
        let head = inner.next_lsn.get() - 1;
        for (name, c) in inner.cursors.borrow_mut().iter_mut() {
            if *c > head {
                log::warn!("partition {}: cursor {name:?} at lsn {c} is past the recovered head {head}; moving it back", inner.id);
                *c = head;
                inner.cursors_dirty.set(true);
            }
        }
        inner.written_lsn.set(head);
        inner.synced_lsn.set(head);

        // Install the write state: the tail of the last segment, or a fresh
        // segment when there is none or it was sealed.
        let resumed = last_tail.is_some();
        match last_tail {
            Some((seg, end, hw, torn)) => {
                if torn {
                    log::warn!(
                        "partition {}: truncated a torn tail of {} at offset {end}",
                        inner.id,
                        seg.path.display()
                    );
                }
                let file = Rc::new(
                    glommio::io::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .dma_open(&seg.path)
                        .await
                        .map_err(|e| io_err(format!("opening {}", seg.path.display()), glommio_io(e)))?,
                );
                let start = page_floor(end);
                let prefix = seg.map[start as usize..end as usize].to_vec();
                let open = Rc::new(WBuf::new(file.clone(), seg.clone(), start, MIN_WRITE_BUFFER_BYTES.max(page_ceil(prefix.len() as u64 + PAGE_BYTES) as usize), &prefix));
                let file_len = file.file_size().await.map_err(|e| io_err("stat", glommio_io(e)))?;
                *inner.w.borrow_mut() = Some(WriteState { seg, file, pos: end, open, pending: VecDeque::new(), prealloc_end: file_len, hint: hw });
            }
            None => {
                let base = inner.segs.borrow().order.last().map(|s| s.name.base + 1).unwrap_or(0);
                let (file, seg) = self.create_segment(SegName { base, gen: 0 }, base, inner.cfg.segment_bytes).await?;
                self.register_segment(&seg);
                let open = Rc::new(WBuf::new(file.clone(), seg.clone(), SEGMENT_HEADER_BYTES, MIN_WRITE_BUFFER_BYTES, &[]));
                let prealloc_end = inner.cfg.prealloc_step_bytes.min(inner.cfg.segment_bytes).max(SEGMENT_HEADER_BYTES);
                *inner.w.borrow_mut() =
                    Some(WriteState { seg, file, pos: SEGMENT_HEADER_BYTES, open, pending: VecDeque::new(), prealloc_end, hint: HintWriter::default() });
            }
        }
        Ok(resumed)
    }

    async fn load_hint(&self, seg: &Rc<Segment>) -> Option<()> {
        let path = seg.path.with_extension("hint");
        let bytes = glommio::executor().spawn_blocking(move || std::fs::read(path)).await.ok()?;
        // Validate fully before touching the index.
        let mut ok = true;
        let mut last = self.0.next_lsn.get() - 1;
        let res = hint::parse(&bytes, seg.name, |e| {
            if e.lsn <= last || e.off < SEGMENT_HEADER_BYTES || e.off + e.len as u64 > seg.capacity {
                ok = false;
            }
            last = e.lsn;
        });
        if res.is_err() || !ok {
            log::warn!(
                "partition {}: hint for {} unusable ({}); scanning the segment",
                self.0.id,
                seg.path.display(),
                res.err().unwrap_or_else(|| "lsn or offsets out of order".into())
            );
            return None;
        }
        let end = hint::parse(&bytes, seg.name, |e| {
            let h = Header {
                crc: 0,
                len: e.len,
                kind: e.kind,
                flags: e.flags,
                key_len: e.key.len() as u16,
                meta_len: 0,
                value_len: 0,
                lsn: e.lsn,
                version: e.version,
                vhash: e.vhash,
            };
            self.apply_loaded(seg, e.off, &h, e.key);
        })
        .ok()?;
        seg.end.set(end);
        Some(())
    }

    /// Scans a segment's records from the start, applying each to the index.
    fn scan_segment(&self, seg: &Rc<Segment>, is_last: bool, file_len: u64, hw: &mut HintWriter) -> ScanEnd {
        let map = seg.map.clone();
        let limit = file_len.min(seg.capacity) as usize;
        let mut off = SEGMENT_HEADER_BYTES as usize;
        let mut last_lsn = self.0.next_lsn.get() - 1;
        loop {
            if off + HEADER_BYTES > limit {
                seg.end.set(off as u64);
                return ScanEnd::Tail { torn: false };
            }
            let b = &map[off..limit];
            match Header::parse_verified(b) {
                Ok(h) if h.lsn > last_lsn => {
                    if h.kind == Kind::Seal {
                        hw.push(off as u64, &h, &[]);
                        seg.note_record(h.lsn, off as u64, h.padded_len() as u64, false);
                        self.0.next_lsn.set(h.lsn + 1);
                        return ScanEnd::Sealed;
                    }
                    let key = &b[h.key_range()];
                    hw.push(off as u64, &h, key);
                    self.apply_loaded(seg, off as u64, &h, key);
                    // (pad records only take their LSN and space)
                    last_lsn = h.lsn;
                    off += h.padded_len();
                }
                res => {
                    // Zeros: nothing was ever written here. (A segment whose
                    // seal never landed ends like this too.)
                    let all_zero = b[..HEADER_BYTES].iter().all(|&x| x == 0);
                    if all_zero {
                        seg.end.set(off as u64);
                        return ScanEnd::Tail { torn: false };
                    }
                    let detail = match res {
                        Ok(h) => format!("lsn {} does not follow {}", h.lsn, last_lsn),
                        Err(e) => e.to_string(),
                    };
                    // Is this one damaged record inside the log rather than
                    // the end of it? Only if its header is intact enough to
                    // find the next record and that record continues the
                    // LSN chain exactly.
                    let skip = Header::parse(b).ok().and_then(|h| {
                        let next = off + h.padded_len();
                        if next + HEADER_BYTES > limit {
                            return None;
                        }
                        let n = Header::parse_verified(&map[next..limit]).ok()?;
                        (n.lsn == h.lsn + 1 && h.lsn > last_lsn).then_some((h, next))
                    });
                    if let Some((h, next)) = skip {
                        let key = b.get(h.key_range()).map(|k| k.to_vec());
                        self.record_damage(&seg.path, off as u64, key, detail);
                        // The damaged record still took its LSN.
                        last_lsn = h.lsn;
                        self.0.next_lsn.set(h.lsn + 1);
                        seg.note_record(h.lsn, off as u64, h.padded_len() as u64, false);
                        seg.dead_bytes.set(seg.dead_bytes.get() + h.padded_len() as u64);
                        // (never indexed: an iterator that meets it must not
                        // take it for its key's current record)
                        seg.stale_records.set(seg.stale_records.get() + 1);
                        off = next;
                        continue;
                    }
                    if is_last {
                        seg.end.set(off as u64);
                        return ScanEnd::Tail { torn: true };
                    }
                    // A sealed segment: look for the next valid record.
                    let mut probe = off + 16;
                    let mut resumed = false;
                    while probe + HEADER_BYTES <= limit {
                        if let Ok(h) = Header::parse_verified(&map[probe..limit]) {
                            if h.lsn > last_lsn {
                                resumed = true;
                                break;
                            }
                        }
                        probe += 16;
                    }
                    self.record_damage(
                        &seg.path,
                        off as u64,
                        None,
                        format!("{detail}; {} bytes unreadable", probe - off),
                    );
                    if !resumed {
                        seg.end.set(off as u64);
                        return ScanEnd::Tail { torn: true };
                    }
                    off = probe;
                }
            }
        }
    }

    fn record_damage(&self, path: &Path, offset: u64, key: Option<Vec<u8>>, detail: String) {
        log::error!(
            "partition {}: corrupt record in {} at offset {offset}{}: {detail}",
            self.0.id,
            path.display(),
            key.as_ref().map(|k| format!(" (key {:?})", String::from_utf8_lossy(k))).unwrap_or_default()
        );
        let mut d = self.0.damage.borrow_mut();
        if !d.iter().any(|x| x.path == path && x.offset == offset) {
            d.push(Damage { path: path.to_path_buf(), offset, key, detail });
        }
    }

    /// Applies a record found during recovery to the index and stats.
    fn apply_loaded(&self, seg: &Rc<Segment>, off: u64, h: &Header, key: &[u8]) {
        let inner = &self.0;
        let padded = align_up(h.len as usize) as u64;
        seg.note_record(h.lsn, off, padded, h.kind.is_marker());
        inner.next_lsn.set(h.lsn + 1);
        self.index_apply(seg.id, off, h, key, padded);
    }

    /// Index bookkeeping shared by appends and recovery.
    fn index_apply(&self, seg_id: u32, off: u64, h: &Header, key: &[u8], padded: u64) -> Option<Entry> {
        let inner = &self.0;
        let old = match h.kind {
            Kind::Seal => return None,
            Kind::Pad => {
                self.mark_dead_at(seg_id, padded);
                return None;
            }
            Kind::Expunge => {
                // The marker itself is garbage as far as reads go.
                self.mark_superseded(seg_id, padded);
                inner.index.borrow_mut().remove(key, None)
            }
            _ => inner.index.borrow_mut().upsert(
                key,
                NewSlot { seg: seg_id, off, len: h.len, kind: h.kind, flags: h.flags, version: h.version, vhash: h.vhash },
            ),
        };
        if let Some(o) = &old {
            self.mark_superseded(o.seg, align_up(o.len as usize) as u64);
        }
        old
    }

    fn mark_dead_at(&self, seg_id: u32, bytes: u64) {
        if let Some(s) = self.0.segs.borrow().get(seg_id) {
            s.dead_bytes.set(s.dead_bytes.get() + bytes);
        }
    }

    /// A record of `bytes` in segment `seg_id` is no longer its key's
    /// current one: garbage, and the segment loses its all-current shortcut.
    fn mark_superseded(&self, seg_id: u32, bytes: u64) {
        if let Some(s) = self.0.segs.borrow().get(seg_id) {
            s.dead_bytes.set(s.dead_bytes.get() + bytes);
            s.stale_records.set(s.stale_records.get() + 1);
        }
    }

    async fn write_hint(&self, seg: &Rc<Segment>, hw: HintWriter) -> Result<()> {
        let bytes = hw.finish(seg.name, seg.end.get());
        let dir = self.0.dir.clone();
        let name = seg.name.hint_name();
        let seg_path = seg.path.clone();
        let end = page_ceil(seg.end.get());
        let ctx = || format!("writing hint for {}", seg.path.display());
        // Give back the preallocated space past the last record.
        glommio::executor()
            .spawn_blocking(move || -> std::io::Result<()> {
                let f = std::fs::OpenOptions::new().write(true).open(&seg_path)?;
                if f.metadata()?.len() > end {
                    f.set_len(end)?;
                    f.sync_all()?;
                }
                Ok(())
            })
            .await
            .map_err(|e| io_err(ctx(), e))?;
        // The hint itself goes out with one O_DIRECT write from this core: a
        // buffered write of tens of MiB spent more CPU in the page cache than
        // the appends that made the hint (1 KiB records: 53 bytes of hint each).
        let tmp = dir.join(format!("{name}.tmp"));
        let io = |e: glommio::GlommioError<()>| io_err(ctx(), glommio_io(e));
        let f = DmaFile::create(&tmp).await.map_err(io)?;
        let whole = page_ceil(bytes.len() as u64) as usize;
        let mut buf = f.alloc_dma_buffer(whole);
        buf.as_bytes_mut()[..bytes.len()].copy_from_slice(&bytes);
        buf.as_bytes_mut()[bytes.len()..].fill(0);
        let real = bytes.len() as u64;
        drop(bytes);
        let wrote = f.write_at(buf, 0).await.map_err(io)?;
        if wrote != whole {
            let _ = f.close().await;
            return Err(io_err(ctx(), std::io::Error::other(format!("short write: {wrote} of {whole} bytes"))));
        }
        // O_DIRECT wrote whole pages; the hint ends at its crc.
        f.truncate(real).await.map_err(io)?;
        f.fdatasync().await.map_err(io)?;
        f.close().await.map_err(io)?;
        glommio::io::rename(&tmp, dir.join(&name)).await.map_err(io)?;
        glommio::executor()
            .spawn_blocking(move || std::fs::File::open(&dir).and_then(|d| d.sync_all()))
            .await
            .map_err(|e| io_err(ctx(), e))
    }

    async fn create_segment(&self, name: SegName, cover_to: u64, capacity: u64) -> Result<(Rc<DmaFile>, Rc<Segment>)> {
        let first = self.0.cfg.prealloc_step_bytes.min(capacity);
        let (file, path) = self.create_segment_file(name, cover_to, capacity, first).await?;
        let seg = self.segment_for(name, path, cover_to, capacity)?;
        Ok((Rc::new(file), seg))
    }

    /// Creates a segment file with `prealloc` bytes preallocated and its
    /// header written and synced (file and directory). On failure nothing is
    /// left behind.
    async fn create_segment_file(&self, name: SegName, cover_to: u64, capacity: u64, prealloc: u64) -> Result<(DmaFile, PathBuf)> {
        let inner = &self.0;
        let path = inner.dir.join(name.file_name());
        // Every step can meet a full disk (a new inode, the header block,
        // the journal on sync); each says so rather than passing for an
        // I/O failure.
        let fail = |what: String, e: std::io::Error| {
            if is_enospc(&e) {
                Error::NoSpace { partition: inner.id, dir: inner.dir.clone(), detail: format!("{what}: {e}") }
            } else {
                io_err(what, e)
            }
        };
        let file = DmaFile::create(&path).await.map_err(|e| fail(format!("creating {}", path.display()), glommio_io(e)))?;
        let made = async {
            file.pre_allocate(prealloc, false).await.map_err(|e| fail(format!("cannot preallocate {}", path.display()), glommio_io(e)))?;
            let mut hdr = file.alloc_dma_buffer(SEGMENT_HEADER_BYTES as usize);
            SegHeader { format: FORMAT_VERSION, partition: inner.id, name, cover_to, created_ms: crate::now_ms(), capacity }
                .encode(hdr.as_bytes_mut());
            file.write_at(hdr, 0).await.map_err(|e| fail(format!("writing header of {}", path.display()), glommio_io(e)))?;
            file.fdatasync().await.map_err(|e| fail(format!("syncing {}", path.display()), glommio_io(e)))?;
            let d = inner.dir.clone();
            glommio::executor()
                .spawn_blocking(move || std::fs::File::open(d).and_then(|f| f.sync_all()))
                .await
                .map_err(|e| fail(format!("syncing directory {}", inner.dir.display()), e))
        }
        .await;
        match made {
            Ok(()) => Ok((file, path)),
            Err(e) => {
                let _ = file.remove().await;
                let _ = file.close().await;
                Err(e)
            }
        }
    }

    /// Maps a segment file made by `create_segment_file` and gives it the
    /// next id. Call right before `register_segment`, with no await between.
    fn segment_for(&self, name: SegName, path: PathBuf, cover_to: u64, capacity: u64) -> Result<Rc<Segment>> {
        let map = map_file(&path, capacity)?;
        let id = self.0.segs.borrow().next_id();
        Ok(Rc::new(Segment::new(id, name, path, cover_to, capacity, map)))
    }

    /// Starts preparing the segment after the active one in the background,
    /// unless it is there, under way, or failed already. Called by appends
    /// once the active segment is half full and wholly preallocated.
    fn prepare_next_soon(&self, active_base: u64) {
        let inner = &self.0;
        let base = active_base + 1;
        if inner.preparing.get() || inner.next_seg.borrow().is_some() || inner.prepare_failed.get() == Some(base) {
            return;
        }
        inner.preparing.set(true);
        let p = self.clone();
        glommio::spawn_local(async move { p.prepare_next(SegName { base, gen: 0 }).await }).detach();
    }

    /// Creates the next segment with its whole capacity preallocated, so that
    /// neither its roll nor its appends wait for a file to be created or
    /// extended (ext4's fallocate waits for every O_DIRECT write in flight
    /// on the file; this file has none yet). A crash leaves it with a header
    /// and no record, which opening removes. Failure (a full disk) is not an
    /// error of the partition: the roll creates the segment as before.
    async fn prepare_next(&self, name: SegName) {
        let inner = &self.0;
        let cap = inner.cfg.segment_bytes;
        let res = self.create_segment_file(name, name.base, cap, cap).await;
        let wanted = !inner.closing.get()
            && !inner.closed.get()
            && inner.w.borrow().as_ref().map(|w| w.seg.name.base + 1) == Some(name.base);
        match res {
            Ok((file, path)) if wanted => {
                *inner.next_seg.borrow_mut() = Some(PreparedSegment { name, path, file: Rc::new(file) });
            }
            Ok((file, _)) => {
                let _ = file.remove().await;
                let _ = file.close().await;
            }
            Err(e) => {
                inner.prepare_failed.set(Some(name.base));
                log::info!("partition {}: could not prepare the next segment ahead of its roll ({e}); the roll will create it", inner.id);
            }
        }
        inner.preparing.set(false);
        inner.progress.wake_all();
    }

    /// Makes a segment from `create_segment` part of the partition's list
    /// (readers and compaction see it from now on).
    fn register_segment(&self, seg: &Rc<Segment>) {
        let mut sl = self.0.segs.borrow_mut();
        debug_assert_eq!(sl.next_id(), seg.id, "segments are registered in creation order");
        sl.by_id.push(Some(seg.clone()));
        sl.order.push(seg.clone());
    }

    // ------------------------------------------------------------------ writes

    fn check_usable(&self) -> Result<()> {
        let inner = &self.0;
        if let Some(f) = inner.failed.borrow().as_ref() {
            return Err(Error::Failed { partition: inner.id, path: inner.dir.clone(), detail: f.clone() });
        }
        if inner.closing.get() || inner.closed.get() {
            return Err(Error::Closed(inner.id));
        }
        Ok(())
    }

    /// Appends a record. Returns once it is in the log's memory (readable and
    /// in LSN order); use `wait_written` / `wait_durable` for durability.
    pub async fn append(&self, r: &WriteRecord<'_>, mode: PutMode) -> Result<AppendOutcome> {
        let inner = &self.0;
        if r.key.len() > MAX_KEY_BYTES {
            return Err(Error::KeyTooLong { len: r.key.len(), max: MAX_KEY_BYTES });
        }
        if r.meta.len() > MAX_META_BYTES {
            return Err(Error::MetaTooLarge { len: r.meta.len(), max: MAX_META_BYTES });
        }
        let vlen: usize = r.value.iter().map(|p| p.len()).sum();
        if vlen > MAX_VALUE_BYTES {
            return Err(Error::ValueTooLarge { len: vlen, max: MAX_VALUE_BYTES });
        }
        assert!(!r.kind.is_internal(), "seal and pad records are written by storage only");
        let need = align_up(HEADER_BYTES + r.key.len() + r.meta.len() + vlen) as u64;
        if SEGMENT_HEADER_BYTES + need + SEAL_BYTES + PAD_RESERVE_BYTES > inner.cfg.segment_bytes {
            return Err(Error::RecordTooLarge { len: need as usize, segment_bytes: inner.cfg.segment_bytes });
        }
        loop {
            self.check_usable()?;
            if inner.unflushed.get() + need as usize > inner.cfg.max_unflushed_bytes && inner.unflushed.get() > 0 {
                if let Some(ns) = inner.no_space.borrow().clone() {
                    return Err(Error::NoSpace { partition: inner.id, dir: inner.dir.clone(), detail: ns });
                }
                self.wake_flusher();
                self.wait_progress().await;
                continue;
            }
            if inner.rolling.get() {
                self.wait_progress().await;
                continue;
            }
            let (pos, cap, prealloc_end, base) = {
                let w = inner.w.borrow();
                let w = w.as_ref().ok_or(Error::Closed(inner.id))?;
                (w.pos, w.seg.capacity, w.prealloc_end, w.seg.name.base)
            };
            if pos + need + SEAL_BYTES + PAD_RESERVE_BYTES > cap {
                self.roll().await?;
                continue;
            }
            if pos + need + SEAL_BYTES + PAD_RESERVE_BYTES > prealloc_end {
                if inner.prealloc_running.get() {
                    self.wait_progress().await;
                } else {
                    self.prealloc(pos + need + SEAL_BYTES + PAD_RESERVE_BYTES).await?;
                }
                continue;
            }
            // Extend the file ahead of need, in the background: ext4's
            // fallocate waits for every O_DIRECT write in flight on the file,
            // so an append that waited for it waited for the disk too.
            if prealloc_end < cap && pos + need + prealloc_ahead(prealloc_end) > prealloc_end && !inner.prealloc_running.get() {
                let bg = self.clone();
                let upto = (prealloc_end + 1).min(cap);
                glommio::spawn_local(async move {
                    if let Err(e) = bg.prealloc(upto).await {
                        log::warn!("partition {}: {e}", bg.0.id);
                    }
                })
                .detach();
            }
            // A partition that fills segments gets its next one made ahead
            // of the roll, once the active one needs no more extending.
            if prealloc_end >= cap && pos * 2 >= cap {
                self.prepare_next_soon(base);
            }
            break;
        }
        let out = self.append_now(r, mode, need);
        // An append that needs no I/O completes without yielding, so a task
        // that appends in a loop would hold the executor until its buffers
        // are full: closed write buffers would not reach the disk (glommio
        // submits I/O only between task runs) and the disk would idle while
        // the CPU appends, then the other way round. Yield when the
        // executor's preemption timer says so.
        glommio::yield_if_needed().await;
        Ok(out)
    }

    fn append_now(&self, r: &WriteRecord<'_>, mode: PutMode, need: u64) -> AppendOutcome {
        let inner = &self.0;
        match mode {
            PutMode::Always => {}
            PutMode::IfNewer => {
                if let Some(cur) = inner.index.borrow().get(r.key) {
                    if r.version <= cur.version {
                        return AppendOutcome::Stale { current: Some(cur), head: self.head_lsn() };
                    }
                }
            }
            PutMode::IfAt { seg, off } => match inner.index.borrow().get(r.key) {
                Some(cur) if cur.seg == seg && cur.off == off => {}
                cur => return AppendOutcome::Stale { current: cur, head: self.head_lsn() },
            },
            PutMode::IfUnchanged { at } => {
                let cur = inner.index.borrow().get(r.key);
                let same = match (cur, at) {
                    (None, None) => true,
                    (Some(c), Some((seg, off))) => c.seg == seg && c.off == off && r.version > c.version,
                    _ => false,
                };
                if !same {
                    return AppendOutcome::Stale { current: cur, head: self.head_lsn() };
                }
            }
        }
        let mut ws = inner.w.borrow_mut();
        let w = ws.as_mut().expect("write state present while open");
        if w.open.remaining() < need as usize {
            // (may write a pad record, which takes an LSN of its own)
            self.rotate_buffer(w, need as usize);
        }
        let lsn = inner.next_lsn.get();
        inner.next_lsn.set(lsn + 1);
        let mut hdr = [0u8; HEADER_BYTES];
        let h = Header::encode(&mut hdr, r.kind, r.flags, lsn, r.version, r.vhash, r.key, r.meta, r.value);
        let (seg_id, off) = {
            let off = w.pos;
            debug_assert_eq!(off, w.open.end());
            w.open.append(&[&hdr, r.key, r.meta]);
            for part in r.value {
                w.open.append(&[part]);
            }
            let pad = need as usize - h.len as usize;
            if pad > 0 {
                w.open.append_zeros(pad);
            }
            w.open.last_lsn.set(lsn);
            w.pos += need;
            w.seg.note_record(lsn, off, need, r.kind.is_marker());
            w.hint.push(off, &h, r.key);
            if w.open.remaining() < MIN_BUFFER_ROOM_BYTES {
                self.rotate_buffer(w, 0);
            }
            (w.seg.id, off)
        };
        drop(ws);
        inner.unflushed.set(inner.unflushed.get() + need as usize);
        inner.counters.appends.set(inner.counters.appends.get() + 1);
        inner.counters.appended_bytes.set(inner.counters.appended_bytes.get() + need);
        let replaced = self.index_apply(seg_id, off, &h, r.key, need);
        AppendOutcome::Applied { lsn, replaced }
    }

    /// Closes the open buffer and starts the next one at the page holding the
    /// write position, big enough for `need` bytes. Buffers grow (doubling up
    /// to `write_buffer_bytes`) while they fill up, so idle partitions keep
    /// small buffers and streaming ones write in big chunks.
    fn rotate_buffer(&self, w: &mut WriteState, need: usize) {
        let old = w.open.clone();
        let filled = need > 0 || old.remaining() < MIN_BUFFER_ROOM_BYTES;
        if filled {
            self.pad_to_page(w);
        }
        let start = page_floor(w.pos);
        let prefix = old.tail_page().to_vec();
        debug_assert_eq!(start + prefix.len() as u64, w.pos);
        let grown = if filled { (old.capacity() * 2).min(self.0.cfg.write_buffer_bytes) } else { old.capacity() };
        let cap = grown.max(page_ceil((need + prefix.len()) as u64 + PAGE_BYTES) as usize);
        let fresh = Rc::new(WBuf::new(w.file.clone(), w.seg.clone(), start, cap, &prefix));
        old.close();
        w.pending.push_back(old);
        w.open = fresh;
        self.wake_flusher();
    }

    /// Ends the open buffer on a page boundary with a pad record, when it
    /// fits, so that the next buffer shares no page with it.
    fn pad_to_page(&self, w: &mut WriteState) {
        let inner = &self.0;
        let to_page = (page_ceil(w.pos) - w.pos) as usize;
        if to_page == 0 {
            return;
        }
        let pad = if to_page >= HEADER_BYTES { to_page } else { to_page + PAGE_BYTES as usize };
        if w.open.remaining() < pad || w.pos + pad as u64 + SEAL_BYTES > w.seg.capacity || w.pos + pad as u64 > w.prealloc_end {
            return;
        }
        let lsn = inner.next_lsn.get();
        inner.next_lsn.set(lsn + 1);
        let zeros = vec![0u8; pad - HEADER_BYTES];
        let mut hdr = [0u8; HEADER_BYTES];
        let h = Header::encode(&mut hdr, Kind::Pad, 0, lsn, Version::ZERO, 0, &[], &[], &[&zeros]);
        debug_assert_eq!(h.padded_len(), pad);
        let off = w.pos;
        w.open.append(&[&hdr, &zeros]);
        w.open.last_lsn.set(lsn);
        w.pos += pad as u64;
        w.seg.note_record(lsn, off, pad as u64, false);
        w.seg.dead_bytes.set(w.seg.dead_bytes.get() + pad as u64);
        w.hint.push(off, &h, &[]);
        inner.unflushed.set(inner.unflushed.get() + pad);
        debug_assert_eq!(w.pos % PAGE_BYTES, 0);
    }

    /// Clears the out-of-space mark once space is back: by extending the
    /// active segment a little further when that is what its next records
    /// need (an extension that fails keeps the mark), or, when the next
    /// thing it needs is a new segment, once the file system reports room
    /// for one (with a margin for its metadata). A wrong guess only shows in
    /// status: the next write that fails for lack of space marks the
    /// partition again.
    async fn recheck_space(&self) {
        let inner = &self.0;
        let Some((have, cap, pos)) = inner.w.borrow().as_ref().map(|w| (w.prealloc_end, w.seg.capacity, w.pos)) else { return };
        let room_in_segment = pos + SEAL_BYTES + PAD_RESERVE_BYTES + PAGE_BYTES <= cap;
        if have < cap && room_in_segment {
            let _ = self.prealloc(have + 1).await;
            return;
        }
        let dir = inner.dir.clone();
        let free = glommio::executor().spawn_blocking(move || crate::dir::free_bytes(&dir)).await;
        if free.map(|f| f >= inner.cfg.segment_bytes + SPACE_MARGIN_BYTES).unwrap_or(false) && inner.no_space.borrow_mut().take().is_some() {
            log::info!("partition {}: disk space available again", inner.id);
            inner.progress.wake_all();
        }
    }

    async fn prealloc(&self, upto: u64) -> Result<()> {
        let inner = &self.0;
        let (file, cap, have) = {
            let w = inner.w.borrow();
            let w = w.as_ref().ok_or(Error::Closed(inner.id))?;
            (w.file.clone(), w.seg.capacity, w.prealloc_end)
        };
        if have >= upto || inner.prealloc_running.get() {
            return Ok(());
        }
        // Steps grow with the file (a streaming partition extends its segment
        // a few times, an idle one holds little unused space).
        let step = inner.cfg.prealloc_step_bytes.max(have.min(MAX_PREALLOC_STEP_BYTES));
        let target = (page_ceil(upto) + step).min(cap);
        inner.prealloc_running.set(true);
        let res = file.pre_allocate(target, false).await;
        inner.prealloc_running.set(false);
        inner.progress.wake_all();
        match res {
            Ok(()) => {
                if let Some(w) = inner.w.borrow_mut().as_mut() {
                    if Rc::ptr_eq(&w.file, &file) {
                        w.prealloc_end = w.prealloc_end.max(target);
                    }
                }
                if inner.no_space.borrow_mut().take().is_some() {
                    log::info!("partition {}: disk space available again", inner.id);
                }
                Ok(())
            }
            Err(e) => {
                let e = glommio_io(e);
                if is_enospc(&e) {
                    let detail = format!("cannot extend the log to {target} bytes: {e}");
                    if inner.no_space.borrow().is_none() {
                        log::error!("partition {}: disk full in {}: {detail}", inner.id, inner.dir.display());
                    }
                    *inner.no_space.borrow_mut() = Some(detail.clone());
                    Err(Error::NoSpace { partition: inner.id, dir: inner.dir.clone(), detail })
                } else {
                    Err(io_err(format!("preallocating partition {} log", inner.id), e))
                }
            }
        }
    }

    /// Seals the active segment and continues in a new one.
    ///
    /// The roll runs as a task of its own: the append that asked for it may
    /// be dropped at any await (a request whose client went away, a batch
    /// abandoned after another record of it failed), and a roll cut short
    /// would leave `rolling` set and every later append waiting forever.
    async fn roll(&self) -> Result<()> {
        let inner = &self.0;
        while inner.rolling.get() {
            self.wait_progress().await;
        }
        inner.rolling.set(true);
        let p = self.clone();
        let done = glommio::spawn_local(async move {
            let res = p.roll_inner().await;
            let inner = &p.0;
            match &res {
                Ok(()) => {
                    if inner.no_space.borrow_mut().take().is_some() {
                        log::info!("partition {}: disk space available again", inner.id);
                    }
                }
                Err(Error::NoSpace { detail, .. }) => {
                    if inner.no_space.borrow().is_none() {
                        log::error!("partition {}: disk full in {}: {detail}", inner.id, inner.dir.display());
                    }
                    *inner.no_space.borrow_mut() = Some(detail.clone());
                }
                Err(_) => {}
            }
            inner.rolling.set(false);
            inner.progress.wake_all();
            res
        })
        .detach();
        // `None` only when the executor itself is going away.
        done.await.unwrap_or(Err(Error::Closed(inner.id)))
    }

    async fn roll_inner(&self) -> Result<()> {
        let inner = &self.0;
        // The next segment is created (and its space preallocated) before the
        // active one is sealed: if that fails (disk full), nothing changed and
        // the append that needed the roll fails cleanly; no record can ever
        // land after a seal.
        let base = inner.w.borrow().as_ref().ok_or(Error::Closed(inner.id))?.seg.name.base + 1;
        let cap = inner.cfg.segment_bytes;
        // A preparation under way is for this very file: wait for it rather
        // than create the same name twice.
        while inner.preparing.get() {
            self.wait_progress().await;
        }
        let name = SegName { base, gen: 0 };
        let prepared = inner.next_seg.borrow_mut().take();
        let (file, path, prealloc_end) = match prepared {
            Some(p) => {
                assert_eq!(p.name, name, "a prepared segment is always the one after the active one");
                inner.counters.rolls_prepared.set(inner.counters.rolls_prepared.get() + 1);
                (p.file, p.path, cap)
            }
            None => {
                let step = inner.cfg.prealloc_step_bytes.min(cap);
                let (file, path) = self.create_segment_file(name, base, cap, step).await?;
                (Rc::new(file), path, step)
            }
        };
        // (no await from here to the registration: ids go in creation order)
        let seg = match self.segment_for(name, path, base, cap) {
            Ok(seg) => seg,
            Err(e) => {
                let _ = file.remove().await;
                return Err(e);
            }
        };
        {
            let mut ws = inner.w.borrow_mut();
            let w = ws.as_mut().ok_or(Error::Closed(inner.id))?;
            debug_assert_eq!(w.seg.name.base + 1, base, "appends wait while a roll is in progress");
            let lsn = inner.next_lsn.get();
            inner.next_lsn.set(lsn + 1);
            let mut hdr = [0u8; HEADER_BYTES];
            let h = Header::encode(&mut hdr, Kind::Seal, 0, lsn, Version::ZERO, 0, &[], &[], &[]);
            let need = h.padded_len();
            if w.open.remaining() < need {
                self.rotate_buffer(w, need);
            }
            let off = w.pos;
            w.open.append(&[&hdr]);
            w.open.last_lsn.set(lsn);
            w.pos += need as u64;
            w.seg.note_record(lsn, off, need as u64, false);
            w.hint.push(off, &h, &[]);
            w.open.seals.set(true);
            *w.open.seal_hint.borrow_mut() = Some(std::mem::take(&mut w.hint));
            let old = w.open.clone();
            old.close();
            w.pending.push_back(old);
            inner.unflushed.set(inner.unflushed.get() + need);
        }
        self.wake_flusher();
        self.register_segment(&seg);
        let mut ws = inner.w.borrow_mut();
        let w = ws.as_mut().ok_or(Error::Closed(inner.id))?;
        w.open = Rc::new(WBuf::new(file.clone(), seg.clone(), SEGMENT_HEADER_BYTES, w.open.capacity().max(MIN_WRITE_BUFFER_BYTES), &[]));
        w.seg = seg;
        w.file = file;
        w.pos = SEGMENT_HEADER_BYTES;
        w.prealloc_end = prealloc_end;
        w.hint = HintWriter::default();
        Ok(())
    }

    // ------------------------------------------------------------- durability

    fn wake_flusher(&self) {
        wake_flusher(&self.0);
    }

    async fn wait_progress(&self) {
        let mut first = true;
        poll_fn(|cx| {
            if first {
                first = false;
                self.0.progress.register(cx.waker());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await
    }

    /// Waits until the record with `lsn` has been written to its file
    /// (O_DIRECT; it survives a crash of this process).
    pub async fn wait_written(&self, lsn: Lsn) -> Result<()> {
        self.wait_level(lsn, false).await
    }

    /// Waits until `lsn` is durable as the sync mode defines it: synced
    /// (always), written (interval), or appended (none).
    pub async fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        match self.0.cfg.sync {
            SyncMode::Always => self.wait_level(lsn, true).await,
            SyncMode::Interval(_) => self.wait_level(lsn, false).await,
            SyncMode::None => self.check_usable(),
        }
    }

    /// Waits until `lsn` is covered by an fdatasync. With `force`, asks for
    /// one now; without, waits for the next sync the mode makes anyway
    /// (under `sync = none` that is only at a seal or close, so it forces).
    pub async fn wait_synced(&self, lsn: Lsn, force: bool) -> Result<()> {
        let force = force || matches!(self.0.cfg.sync, SyncMode::None);
        if force {
            return self.wait_level(lsn, true).await;
        }
        let inner = &self.0;
        poll_fn(|cx| {
            if inner.synced_lsn.get() >= lsn {
                return Poll::Ready(Ok(()));
            }
            if let Some(f) = inner.failed.borrow().as_ref() {
                return Poll::Ready(Err(Error::Failed { partition: inner.id, path: inner.dir.clone(), detail: f.clone() }));
            }
            if inner.closed.get() {
                return Poll::Ready(Err(Error::Closed(inner.id)));
            }
            inner.want_written.set(inner.want_written.get().max(lsn));
            inner.progress.register(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Writes and fdatasyncs everything appended so far.
    pub async fn sync(&self) -> Result<()> {
        self.wait_level(self.head_lsn(), true).await
    }

    async fn wait_level(&self, lsn: Lsn, synced: bool) -> Result<()> {
        let inner = &self.0;
        assert!(lsn < inner.next_lsn.get(), "waiting for lsn {lsn} past the head {}", inner.next_lsn.get() - 1);
        poll_fn(|cx| {
            let mark = if synced { inner.synced_lsn.get() } else { inner.written_lsn.get() };
            if mark >= lsn {
                return Poll::Ready(Ok(()));
            }
            if let Some(f) = inner.failed.borrow().as_ref() {
                return Poll::Ready(Err(Error::Failed { partition: inner.id, path: inner.dir.clone(), detail: f.clone() }));
            }
            if let Some(ns) = inner.no_space.borrow().as_ref() {
                return Poll::Ready(Err(Error::NoSpace { partition: inner.id, dir: inner.dir.clone(), detail: ns.clone() }));
            }
            if inner.closed.get() {
                return Poll::Ready(Err(Error::Closed(inner.id)));
            }
            if synced {
                inner.want_synced.set(inner.want_synced.get().max(lsn));
            }
            inner.want_written.set(inner.want_written.get().max(lsn));
            inner.progress.register(cx.waker());
            wake_flusher(inner);
            Poll::Pending
        })
        .await
    }

    // ------------------------------------------------------------------ reads

    /// Index entry of `key`, if present (tombstones included).
    pub fn get(&self, key: &[u8]) -> Option<Entry> {
        self.0.index.borrow().get(key)
    }

    /// Reads the current record of `key` (tombstones included), verifying
    /// its checksum when `verify` is set.
    pub fn read(&self, key: &[u8], verify: bool) -> Result<Option<RecordView>> {
        let Some(e) = self.get(key) else { return Ok(None) };
        self.read_entry(key, &e, verify).map(Some)
    }

    /// Reads the record an entry points to.
    pub fn read_entry(&self, key: &[u8], e: &Entry, verify: bool) -> Result<RecordView> {
        match self.view_at(e.seg, e.off, verify) {
            Ok(v) => Ok(v),
            Err(Error::Corrupt { path, offset, detail }) => {
                self.report_corrupt_key(key, e, &path, offset, &detail);
                Err(Error::Corrupt { path, offset, detail })
            }
            Err(e) => Err(e),
        }
    }

    /// A record found damaged on read: listed, and dropped from the index and
    /// tree so that fullsync sees the difference and repairs it.
    fn report_corrupt_key(&self, key: &[u8], e: &Entry, path: &Path, offset: u64, detail: &str) {
        self.record_damage(path, offset, Some(key.to_vec()), detail.to_string());
        if let Some(old) = self.0.index.borrow_mut().remove(key, Some((e.seg, e.off))) {
            self.mark_superseded(old.seg, align_up(old.len as usize) as u64);
        }
    }

    /// Where the current record of `key` is (tombstones included), without
    /// touching it when it is on disk: see [`crate::cold`].
    pub fn locate(&self, key: &[u8]) -> Option<Located> {
        let e = self.get(key)?;
        if let Some(v) = self.buffered_view(e.seg, e.off) {
            if let Ok(v) = v {
                return Some(Located::Ready(v.into_send()));
            }
        }
        let seg = self.0.segs.borrow().get(e.seg).cloned()?;
        Some(Located::File(FileRegion { map: seg.map.clone(), off: e.off, len: e.len }))
    }

    /// The record at (seg, off) when it is still in a write buffer.
    fn buffered_view(&self, seg_id: u32, off: u64) -> Option<Result<RecordView>> {
        let inner = &self.0;
        let w = inner.w.borrow();
        let w = w.as_ref()?;
        let bufs = w.pending.iter().chain(std::iter::once(&w.open));
        for b in bufs.rev() {
            if b.seg.id == seg_id && b.start <= off && off < b.end() {
                let rel = (off - b.start) as usize;
                let avail = b.len() - rel;
                let h = match Header::parse(b.slice(rel, avail.min(HEADER_BYTES))) {
                    Ok(h) => h,
                    Err(e) => return Some(Err(Error::Corrupt { path: b.seg.path.clone(), offset: off, detail: e.to_string() })),
                };
                if (h.len as usize) <= avail {
                    return Some(Ok(RecordView { backing: Backing::Buf(b.clone()), off: rel, header: h, seg: seg_id, file_off: off }));
                }
            }
        }
        None
    }

    pub(crate) fn view_at(&self, seg_id: u32, off: u64, verify: bool) -> Result<RecordView> {
        let inner = &self.0;
        if let Some(v) = self.buffered_view(seg_id, off) {
            return v;
        }
        let seg = inner.segs.borrow().get(seg_id).cloned();
        let Some(seg) = seg else {
            return Err(Error::Corrupt { path: inner.dir.clone(), offset: off, detail: format!("segment id {seg_id} is gone") });
        };
        seg.view(off, verify).map_err(|e| Error::Corrupt { path: seg.path.clone(), offset: off, detail: e.to_string() })
    }

    /// Iterator over records with LSN greater than `after`, in LSN order.
    pub fn iter_after(&self, after: Lsn) -> LsnIter {
        LsnIter { after, pos: None, generation: u64::MAX, span: None, ahead: None, ahead_done: false, pass_over: None, probe: false, mapped_reads: 0, warned: false }
    }

    /// The mapping of segment `seg_id` and the offset below which its bytes
    /// are all on disk and no write will touch them again (every buffer
    /// not yet written starts at or above it, on a page boundary): what an
    /// iterator may read from the file. Buffers already written may still
    /// be held; their bytes are on disk as they are in memory.
    fn disk_region(&self, seg_id: u32) -> Option<(Arc<Mapped>, u64)> {
        let inner = &self.0;
        let seg = inner.segs.borrow().get(seg_id).cloned()?;
        let w = inner.w.borrow();
        let mut end = seg.end.get();
        if let Some(w) = w.as_ref() {
            if w.seg.id == seg_id {
                end = w.pos;
            }
            for b in w.pending.iter().chain(std::iter::once(&w.open)) {
                if b.seg.id == seg_id && b.state.get() != BufState::Written {
                    end = end.min(b.start);
                }
            }
        }
        Some((seg.map.clone(), end))
    }

    /// Damaged regions found so far (recovery and reads). A damaged key
    /// that is back in the index (fullsync repaired it) is no longer listed.
    pub fn damage(&self) -> Vec<Damage> {
        prune_repaired_damage(&self.0);
        self.0.damage.borrow().clone()
    }

    /// Forgets listed damage (after fullsync repaired it).
    pub fn clear_damage(&self) {
        self.0.damage.borrow_mut().clear();
    }

    // -------------------------------------------------------------- hash tree

    pub fn tree_hashes(&self) -> Vec<u64> {
        self.0.index.borrow().tree_hashes().to_vec()
    }

    /// Combined hash of the whole tree (XOR of all segment hashes).
    pub fn tree_root(&self) -> u64 {
        self.0.index.borrow().tree_hashes().iter().fold(0, |a, b| a ^ b)
    }

    pub fn tree_segments(&self) -> u32 {
        self.0.cfg.tree_segments
    }

    /// Entries of one tree segment, sorted by key; does not scan the partition.
    pub fn tree_segment_entries(&self, seg: u32) -> Vec<TreeEntry> {
        self.0.index.borrow().tree_segment_entries(seg as usize)
    }

    /// Tree segment that holds `key`.
    pub fn tree_segment_of(&self, key: &[u8]) -> u32 {
        let ix = self.0.index.borrow();
        ix.tree_segment_of(crate::index::key_hash(key)) as u32
    }

    /// Keys with FLAG_ORDERED (not deleted) after `start_after`, with `prefix`.
    pub fn ordered_keys(&self, start_after: &[u8], prefix: &[u8], limit: usize) -> Vec<Vec<u8>> {
        self.0.index.borrow().ordered_after(start_after, prefix, limit)
    }

    pub fn for_each_key(&self, f: impl FnMut(&[u8], Entry)) {
        self.0.index.borrow().for_each(f)
    }

    pub fn key_count(&self) -> usize {
        self.0.index.borrow().len()
    }

    /// The largest version stamp (`Version::hlc`) stored in this partition
    /// since it was opened, recovery included: new local versions must be
    /// above it.
    pub fn max_hlc(&self) -> u64 {
        self.0.index.borrow().max_hlc()
    }

    // ---------------------------------------------------------------- cursors

    /// Registers a durable cursor at `lsn` (records after it are retained for
    /// it). Replaces an existing cursor of the same name.
    pub async fn register_cursor(&self, name: &str, lsn: Lsn) -> Result<()> {
        let inner = &self.0;
        if name.is_empty() || name.len() > MAX_CURSOR_NAME_BYTES {
            return Err(Error::BadCursor { partition: inner.id, name: name.into(), detail: format!("name must be 1..={MAX_CURSOR_NAME_BYTES} bytes") });
        }
        if lsn > self.head_lsn() {
            return Err(Error::BadCursor { partition: inner.id, name: name.into(), detail: format!("lsn {lsn} is past the head {}", self.head_lsn()) });
        }
        {
            let mut c = inner.cursors.borrow_mut();
            if !c.contains_key(name) && c.len() >= MAX_CURSORS {
                return Err(Error::BadCursor { partition: inner.id, name: name.into(), detail: format!("at most {MAX_CURSORS} cursors") });
            }
            c.insert(name.to_string(), lsn);
        }
        inner.cursors_dirty.set(true);
        self.persist_cursors().await
    }

    /// Moves a cursor forward (acknowledged up to `lsn`). Persisted lazily:
    /// after a crash a cursor may be a little behind, never ahead.
    pub fn advance_cursor(&self, name: &str, lsn: Lsn) -> Result<()> {
        let inner = &self.0;
        let head = self.head_lsn();
        let mut c = inner.cursors.borrow_mut();
        let cur = c.get_mut(name).ok_or_else(|| Error::NoSuchCursor { partition: inner.id, name: name.into() })?;
        if lsn > head {
            return Err(Error::BadCursor { partition: inner.id, name: name.into(), detail: format!("ack for lsn {lsn} past the head {head}") });
        }
        if lsn > *cur {
            *cur = lsn;
            inner.cursors_dirty.set(true);
        }
        Ok(())
    }

    pub async fn drop_cursor(&self, name: &str) -> Result<bool> {
        let removed = self.0.cursors.borrow_mut().remove(name).is_some();
        if removed {
            self.0.cursors_dirty.set(true);
            self.persist_cursors().await?;
        }
        Ok(removed)
    }

    pub fn cursor(&self, name: &str) -> Option<Lsn> {
        self.0.cursors.borrow().get(name).copied()
    }

    pub fn cursors(&self) -> Vec<(String, Lsn)> {
        self.0.cursors.borrow().iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Lowest cursor position, if any cursor exists.
    pub fn min_cursor(&self) -> Option<Lsn> {
        self.0.cursors.borrow().values().copied().min()
    }

    /// Bytes of log after `lsn` (what a cursor at `lsn` keeps on disk),
    /// accurate to one mark interval.
    pub fn bytes_after(&self, lsn: Lsn) -> u64 {
        let segs = self.0.segs.borrow();
        let mut total = 0;
        for s in segs.order.iter() {
            let (first, last) = (s.first_lsn.get(), s.last_lsn.get());
            if last <= lsn || last == 0 {
                continue;
            }
            if first > lsn {
                total += s.total_bytes.get();
            } else {
                total += s.end.get().saturating_sub(s.seek_offset(lsn));
            }
        }
        total
    }

    /// Writes the cursors to `cursors.dat` if they changed since the last
    /// write, and waits for a write already under way: when this returns Ok,
    /// every cursor move made before the call is durable.
    pub async fn persist_cursors(&self) -> Result<()> {
        let inner = &self.0;
        let _permit = inner.cursor_writer.acquire_permit(1).await.map_err(|e| io_err(format!("cursors of partition {}", inner.id), std::io::Error::other(e.to_string())))?;
        if !inner.cursors_dirty.get() {
            return Ok(());
        }
        inner.cursors_dirty.set(false);
        inner.counters.cursor_writes.set(inner.counters.cursor_writes.get() + 1);
        let bytes = cursor::encode(&inner.cursors.borrow());
        let dir = inner.dir.clone();
        glommio::executor()
            .spawn_blocking(move || cursor::write_atomic(&dir, CURSOR_FILE, &bytes))
            .await
            .map_err(|e| {
                inner.cursors_dirty.set(true);
                io_err(format!("writing cursors of partition {}", inner.id), e)
            })
    }

    // ------------------------------------------------------------------ misc

    pub fn stats(&self) -> PartitionStats {
        let inner = &self.0;
        let segs = inner.segs.borrow();
        let ix = inner.index.borrow();
        PartitionStats {
            partition: inner.id,
            keys: ix.len() as u64,
            segments: segs.order.len() as u64,
            log_bytes: segs.order.iter().map(|s| s.total_bytes.get()).sum(),
            dead_bytes: segs.order.iter().map(|s| s.dead_bytes.get()).sum(),
            head_lsn: inner.next_lsn.get() - 1,
            written_lsn: inner.written_lsn.get(),
            synced_lsn: inner.synced_lsn.get(),
            appends: inner.counters.appends.get(),
            appended_bytes: inner.counters.appended_bytes.get(),
            unflushed_bytes: inner.unflushed.get() as u64,
            index_heap_bytes: ix.heap_bytes() as u64,
            damaged: {
                prune_repaired_damage(inner);
                inner.damage.borrow().len() as u64
            },
            cursors: inner.cursors.borrow().len() as u64,
            compactions: inner.counters.compactions.get(),
            compacted_bytes: inner.counters.compacted_bytes.get(),
            fdatasyncs: inner.counters.fdatasyncs.get(),
            cursor_writes: inner.counters.cursor_writes.get(),
            segments_from_hints: inner.counters.segments_from_hints.get(),
            rolls_prepared: inner.counters.rolls_prepared.get(),
            no_space: inner.no_space.borrow().is_some(),
        }
    }

    /// Error text when the partition is out of space, else None.
    pub fn no_space(&self) -> Option<String> {
        self.0.no_space.borrow().clone()
    }

    /// Flushes, syncs, persists cursors and stops the flusher.
    pub async fn close(&self) -> Result<()> {
        let inner = &self.0;
        if inner.closed.get() {
            return Ok(());
        }
        let head = self.head_lsn();
        let r = if head > 0 { self.wait_level(head, true).await } else { Ok(()) };
        // (also waits for a background cursor write under way)
        self.persist_cursors().await?;
        inner.closing.set(true);
        self.wake_flusher();
        while !inner.closed.get() {
            self.wait_progress().await;
        }
        while inner.hint_writes.get() > 0 || inner.preparing.get() {
            self.wait_progress().await;
        }
        let prepared = inner.next_seg.borrow_mut().take();
        if let Some(p) = prepared {
            let file = Rc::try_unwrap(p.file).ok().expect("a prepared segment's file has one owner");
            if let Err(e) = file.remove().await {
                log::warn!("partition {}: removing the unused prepared segment {}: {}", inner.id, p.path.display(), glommio_io(e));
            }
            let _ = file.close().await;
        }
        r
    }
}

fn wake_flusher(inner: &Inner) {
    inner.flusher_signal.set(true);
    if let Some(w) = inner.flusher_waker.borrow_mut().take() {
        w.wake();
    }
}

/// Position of an LSN iterator: a record offset in a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct IterPos {
    seg: u32,
    off: u64,
}

/// Bytes an iterator reads from disk at once when the records it walks are
/// on disk (see [`LsnIter::fill`]); it holds at most two such spans (the
/// one it reads from and the next, read ahead), plus one span as long as a
/// record that is larger.
pub const ITER_SPAN_BYTES: usize = 1 << 20;
/// Span size while most of what the spans hold is bodies of records the
/// iterator passes over (`LsnIter::pass_over`): enough for the records
/// between two big ones, without reading the big ones.
pub const ITER_PROBE_BYTES: usize = 64 << 10;

/// Iterates records with LSN greater than a starting point. Holds no borrow
/// of the partition between calls, so it survives appends and compactions
/// (after a compaction it seeks again by LSN).
pub struct LsnIter {
    after: Lsn,
    pos: Option<IterPos>,
    generation: u64,
    /// The span of a segment file read from disk that records are handed
    /// out from, and the next one, being read ahead.
    span: Option<Rc<DiskSpan>>,
    ahead: Option<Ahead>,
    /// The read after `span` was looked at (started, or nothing to read).
    ahead_done: bool,
    /// Records of this kind are consumed without being handed out, and
    /// without reading more of them than their header.
    pass_over: Option<Kind>,
    /// The last span was mostly bodies passed over: read small spans.
    probe: bool,
    /// Records read through the mapping (not from memory or a span).
    mapped_reads: u64,
    /// A failed read ahead was logged.
    warned: bool,
}

/// A span read started ahead of need.
struct Ahead {
    seg: u32,
    start: u64,
    len: usize,
    read: glommio::Task<Result<glommio::io::ReadResult>>,
}

/// Whether a span holds the record at an offset.
enum Cover {
    Whole,
    /// The header is there but the record ends this many bytes after the
    /// offset, past the span.
    Short(usize),
    No,
}

impl LsnIter {
    /// LSN of the last record returned (or the starting point).
    pub fn position(&self) -> Lsn {
        self.after
    }

    /// Records this iterator read through the segment mappings (page
    /// faults when they are not cached) rather than from write buffers or
    /// spans read from disk.
    pub fn mapped_reads(&self) -> u64 {
        self.mapped_reads
    }

    /// Restarts the iteration after `lsn`.
    pub fn reset(&mut self, lsn: Lsn) {
        self.after = lsn;
        self.pos = None;
    }

    /// Consumes records of `kind` without handing them out or reading
    /// their bodies (the realtime source sends blocks along with their
    /// manifests, not where they sit in the log).
    pub fn pass_over(&mut self, kind: Kind) {
        self.pass_over = Some(kind);
    }

    /// Whether `span` holds the record at `off`; a record of the `pass`
    /// kind needs only its header there.
    fn covers(span: &DiskSpan, seg: u32, off: u64, pass: Option<Kind>) -> Cover {
        if span.seg != seg || off < span.start || off >= span.end() {
            return Cover::No;
        }
        let rel = (off - span.start) as usize;
        match Header::parse(&span.buf[rel..]) {
            Ok(h) if rel + h.len as usize <= span.buf.len() || Some(h.kind) == pass => Cover::Whole,
            Ok(h) => Cover::Short(h.padded_len()),
            // (a header cut by the span's end, or damage: the mapping path
            // sorts it out or reports it)
            Err(_) => Cover::Short(HEADER_BYTES),
        }
    }

    /// Makes the next record readable from memory when it is on disk, with
    /// big O_DIRECT reads through `cold` instead of page faults on the
    /// mapping (which would stall the executor on the disk one read-around
    /// window at a time), and starts reading the span after it. Call before
    /// `next_upto` when walking a backlog; without it the iterator reads
    /// through the mapping. Records still in write buffers need nothing.
    pub async fn fill(&mut self, p: &Partition, cold: &ColdReader) -> Result<()> {
        if self.after >= p.head_lsn() {
            return Ok(());
        }
        if self.pos.is_none() || p.0.segs.borrow().generation != self.generation {
            self.seek(p);
        }
        let Some(pos) = self.pos else { return Ok(()) };
        let Some((map, disk_end)) = p.disk_region(pos.seg) else {
            self.span = None;
            self.ahead = None;
            return Ok(());
        };
        if pos.off >= disk_end {
            // In the write buffers (or past the end): nothing to read.
            self.span = None;
            self.ahead = None;
            return Ok(());
        }
        // Read limit: whole pages up to the end of what is on disk (the
        // last page of a sealed segment is complete; in the active one
        // `disk_end` is a page boundary).
        let read_end = page_ceil(disk_end);
        for _ in 0..3 {
            let need = match self.span.as_deref().map(|sp| Self::covers(sp, pos.seg, pos.off, self.pass_over)).unwrap_or(Cover::No) {
                Cover::Whole => {
                    self.read_ahead(cold, &map, read_end).await?;
                    return Ok(());
                }
                Cover::Short(n) if pos.off + n as u64 > read_end || self.span.as_ref().map(|sp| sp.end() >= pos.off + n as u64).unwrap_or(false) => {
                    // It runs past what is on disk, or the span holds the
                    // bytes it says it needs and still not the record (a
                    // damaged header): no read can make it whole.
                    return Ok(());
                }
                Cover::Short(n) => n,
                Cover::No => 0,
            };
            if let Some(a) = self.ahead.take() {
                if a.seg == pos.seg && a.start <= pos.off && pos.off < a.start + a.len as u64 {
                    let buf = a.read.await?;
                    self.span = Some(Rc::new(DiskSpan { seg: a.seg, start: a.start, buf }));
                    self.ahead_done = false;
                    continue;
                }
            }
            let (start, len) = self.span_for(pos.off, need, read_end);
            let buf = cold.read_span(&map, start, len).await?.await?;
            self.span = Some(Rc::new(DiskSpan { seg: pos.seg, start, buf }));
            self.ahead_done = false;
        }
        // Still not whole (a damaged header): `next_upto` reads through the
        // mapping and reports what it finds.
        Ok(())
    }

    /// Starts reading the span after the current one, from the page of the
    /// first record that the current one does not hold whole.
    async fn read_ahead(&mut self, cold: &ColdReader, map: &Arc<Mapped>, read_end: u64) -> Result<()> {
        let Some(span) = self.span.clone() else { return Ok(()) };
        if self.ahead_done {
            return Ok(());
        }
        self.ahead_done = true;
        if span.end() >= read_end {
            return Ok(());
        }
        let pos = self.pos.expect("a span is read only at a position");
        let mut off = pos.off;
        let mut next_need = 0usize;
        let mut passed = 0u64;
        loop {
            match Self::covers(&span, span.seg, off, self.pass_over) {
                Cover::Whole => {
                    let h = Header::parse(&span.buf[(off - span.start) as usize..]).expect("covered");
                    let next = off + h.padded_len() as u64;
                    if Some(h.kind) == self.pass_over {
                        passed += next.min(span.end()) - off;
                    }
                    off = next;
                }
                Cover::Short(n) => {
                    next_need = n;
                    break;
                }
                Cover::No => break,
            }
        }
        // Spans made mostly of bodies passed over are followed by small ones.
        self.probe = passed * 2 > span.buf.len() as u64;
        if off >= read_end {
            return Ok(());
        }
        let (start, len) = self.span_for(off, next_need, read_end);
        let read = cold.read_span(map, start, len).await?;
        self.ahead = Some(Ahead { seg: span.seg, start, len, read });
        Ok(())
    }

    /// The span to read for the record at `off` (of which at least `need`
    /// bytes are wanted): from its page, a span's worth or the record's
    /// length if longer, not past `read_end`.
    fn span_for(&self, off: u64, need: usize, read_end: u64) -> (u64, usize) {
        let span_len = if self.probe { ITER_PROBE_BYTES } else { ITER_SPAN_BYTES };
        let start = page_floor(off);
        let len = span_len.max(page_ceil(off - start + need as u64) as usize).min((read_end - start) as usize);
        (start, len)
    }

    /// The header of the record at `pos`, when the span read from disk
    /// holds it.
    fn span_header(&self, pos: IterPos) -> Option<Header> {
        let span = self.span.as_ref()?;
        if span.seg != pos.seg || pos.off < span.start || pos.off >= span.end() {
            return None;
        }
        Header::parse(&span.buf[(pos.off - span.start) as usize..]).ok()
    }

    /// The record at `pos` from the span read from disk, if it holds it.
    fn span_view(&self, pos: IterPos) -> Option<RecordView> {
        let span = self.span.as_ref()?;
        if !matches!(Self::covers(span, pos.seg, pos.off, None), Cover::Whole) {
            return None;
        }
        let rel = (pos.off - span.start) as usize;
        let header = Header::parse(&span.buf[rel..]).ok()?;
        Some(RecordView { backing: Backing::Disk(span.clone()), off: rel, header, seg: pos.seg, file_off: pos.off })
    }

    fn seek(&mut self, p: &Partition) {
        let segs = p.0.segs.borrow();
        self.generation = segs.generation;
        let i = segs.order.partition_point(|s| s.last_lsn.get() != 0 && s.last_lsn.get() <= self.after);
        self.pos = segs.order.get(i).map(|s| IterPos { seg: s.id, off: s.seek_offset(self.after) });
    }

    /// The next record, or None when caught up with the head.
    pub fn next(&mut self, p: &Partition) -> Option<Result<RecordView>> {
        self.next_upto(p, u64::MAX)
    }

    /// The next record with an LSN up to `limit` (for example the written
    /// LSN: realtime ships only records that survive a crash of this
    /// process, so an LSN is never handed out twice to a sink).
    pub fn next_upto(&mut self, p: &Partition, limit: Lsn) -> Option<Result<RecordView>> {
        match self.step(p, limit, Fault::Always) {
            Next::Record(r) => Some(r),
            Next::End | Next::OnDisk => None,
        }
    }

    /// Like [`next_upto`](Self::next_upto), but records on disk are read in
    /// big O_DIRECT spans through `cold`, ahead of need (see
    /// [`fill`](Self::fill)), instead of through the mapping: the executor
    /// never waits on a page fault, and the disk reads while the records
    /// already read are used. For walking a backlog.
    pub async fn next_read(&mut self, p: &Partition, limit: Lsn, cold: &ColdReader) -> Option<Result<RecordView>> {
        let mut filled_at: Option<IterPos> = None;
        loop {
            // Through the mapping only if a fill at this very position did
            // not make the record readable (damage: the mapping path
            // reports it).
            let fault = match filled_at {
                Some(at) => Fault::At(at),
                None => Fault::Never,
            };
            match self.step(p, limit, fault) {
                Next::Record(r) => return Some(r),
                Next::End => return None,
                Next::OnDisk => {
                    if let Err(e) = self.fill(p, cold).await {
                        // (once per iterator: a disk that fails every read
                        // would otherwise log once per record)
                        if !self.warned {
                            self.warned = true;
                            log::warn!("partition {}: reading the log ahead: {e}; reading through the mapping instead", p.0.id);
                        }
                    }
                    filled_at = self.pos;
                }
            }
        }
    }

    /// One step of the iteration. A record that is neither in memory nor in
    /// the span read from disk is read through the mapping only where
    /// `fault` allows; elsewhere the step answers `OnDisk` with the position
    /// on it.
    fn step(&mut self, p: &Partition, limit: Lsn, fault: Fault) -> Next {
        let limit = limit.min(p.head_lsn());
        loop {
            if self.after >= limit {
                return Next::End;
            }
            if self.pos.is_none() || p.0.segs.borrow().generation != self.generation {
                self.seek(p);
            }
            let Some(pos) = self.pos else { return Next::End };
            let (end, next_seg) = {
                let segs = p.0.segs.borrow();
                let Some(seg) = segs.get(pos.seg) else {
                    drop(segs);
                    self.pos = None;
                    continue;
                };
                let active = p.0.w.borrow().as_ref().map(|w| w.seg.id == pos.seg).unwrap_or(false);
                let end = if active { p.0.w.borrow().as_ref().map(|w| w.pos).unwrap_or(0) } else { seg.end.get() };
                let next = segs.position(pos.seg).and_then(|i| segs.order.get(i + 1)).map(|s| s.id);
                (end, next)
            };
            if pos.off >= end {
                match next_seg {
                    Some(n) => {
                        self.pos = Some(IterPos { seg: n, off: SEGMENT_HEADER_BYTES });
                        continue;
                    }
                    None => return Next::End,
                }
            }
            if let (Some(kind), Some(h)) = (self.pass_over, self.span_header(pos)) {
                if h.kind == kind {
                    // Passed over on its header alone.
                    if h.lsn > limit {
                        return Next::End;
                    }
                    self.pos = Some(IterPos { seg: pos.seg, off: pos.off + h.padded_len() as u64 });
                    self.after = self.after.max(h.lsn);
                    continue;
                }
            }
            let got = match self.span_view(pos) {
                Some(v) => Ok(v),
                None if fault == Fault::Always || fault == Fault::At(pos) => match p.buffered_view(pos.seg, pos.off) {
                    Some(v) => v,
                    None => {
                        self.mapped_reads += 1;
                        p.view_at(pos.seg, pos.off, false)
                    }
                },
                None => match p.buffered_view(pos.seg, pos.off) {
                    Some(v) => v,
                    None => return Next::OnDisk,
                },
            };
            let view = match got {
                Ok(v) => v,
                Err(e) => {
                    // Skip past damage: find the next segment.
                    self.pos = next_seg.map(|n| IterPos { seg: n, off: SEGMENT_HEADER_BYTES });
                    return Next::Record(Err(e));
                }
            };
            self.pos = Some(IterPos { seg: pos.seg, off: pos.off + view.header.padded_len() as u64 });
            if view.header.lsn <= self.after {
                continue;
            }
            if view.header.lsn > limit {
                // Not yet: come back to this record later.
                self.pos = Some(pos);
                return Next::End;
            }
            if view.header.kind.is_internal() || Some(view.header.kind) == self.pass_over {
                // Seals and pads (and the kind passed over) are consumed (the
                // position moves past them) but never handed out.
                self.after = view.header.lsn;
                continue;
            }
            self.after = view.header.lsn;
            return Next::Record(Ok(view));
        }
    }
}

/// Where an iterator step may read a record through the mapping.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    Always,
    Never,
    /// Only at this position (a fill there did not make it readable).
    At(IterPos),
}

/// What one iterator step found.
enum Next {
    Record(Result<RecordView>),
    /// Caught up (with the head or the limit), for now.
    End,
    /// The next record is on disk and not read yet.
    OnDisk,
}

/// Whether a record returned by an iterator is still the key's current one.
impl Partition {
    pub fn is_current(&self, v: &RecordView) -> bool {
        // A segment none of whose records was ever superseded or removed
        // holds only current records: no index lookup (a cache miss or
        // more per record) needed.
        if !v.header.kind.is_internal() && v.header.kind != Kind::Expunge {
            if let Some(s) = self.0.segs.borrow().get(v.seg) {
                if s.stale_records.get() == 0 {
                    debug_assert!(self.get(v.key()).map(|e| e.seg == v.seg && e.off == v.file_off).unwrap_or(false), "a record of a segment with no stale records is current");
                    return true;
                }
            }
        }
        match self.get(v.key()) {
            Some(e) => e.seg == v.seg && e.off == v.file_off,
            None => false,
        }
    }
}

/// Forgets damage whose key is back in the index (fullsync repaired it).
fn prune_repaired_damage(inner: &Inner) {
    let ix = inner.index.borrow();
    inner.damage.borrow_mut().retain(|d| match &d.key {
        Some(k) => ix.get(k).is_none(),
        None => true,
    });
}

// ----------------------------------------------------------------- flusher

async fn flusher(inner: Rc<Inner>) {
    let p = Partition(inner);
    loop {
        if let Err(e) = flush_round(&p).await {
            let inner = &p.0;
            match e {
                Error::NoSpace { detail, .. } => {
                    if inner.no_space.borrow().is_none() {
                        log::error!("partition {}: disk full while writing: {detail}", inner.id);
                    }
                    *inner.no_space.borrow_mut() = Some(detail);
                    inner.progress.wake_all();
                    glommio::timer::sleep(Duration::from_millis(NO_SPACE_RETRY_MS)).await;
                    continue;
                }
                other => {
                    log::error!("partition {}: flusher stopped: {other}", inner.id);
                    *inner.failed.borrow_mut() = Some(other.to_string());
                    inner.progress.wake_all();
                }
            }
        }
        let inner = &p.0;
        if inner.failed.borrow().is_some() || (inner.closing.get() && nothing_pending(inner)) {
            inner.closed.set(true);
            *inner.w.borrow_mut() = None;
            inner.progress.wake_all();
            return;
        }
        let tick = match inner.cfg.sync {
            SyncMode::Interval(d) => d.min(Duration::from_millis(CURSOR_PERSIST_INTERVAL_MS)),
            _ => Duration::from_millis(IDLE_TICK_MS.min(CURSOR_PERSIST_INTERVAL_MS)),
        };
        let signal = poll_fn(|cx| {
            if inner.flusher_signal.replace(false) {
                Poll::Ready(())
            } else {
                *inner.flusher_waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        });
        futures_lite::future::or(signal, glommio::timer::sleep(tick)).await;
        // Marked out of space with everything written: nothing would clear
        // the mark until the partition's next write needs the space, so look
        // now and then (a status that says "out of space" after space is
        // back misleads the operator).
        if inner.no_space.borrow().is_some()
            && !inner.closing.get()
            && inner.written_lsn.get() == inner.next_lsn.get() - 1
            && inner.space_checked_at.get().elapsed() >= Duration::from_millis(SPACE_RECHECK_MS)
        {
            inner.space_checked_at.set(Instant::now());
            p.recheck_space().await;
        }
        // Cursors move on every realtime ack; write them at most once per
        // CURSOR_PERSIST_INTERVAL_MS (a lost move only means a resend, which
        // the sink applies idempotently), in the background so that data
        // flushes never wait for a cursor file's fsyncs.
        if inner.cursors_dirty.get()
            && !inner.closing.get()
            && !inner.cursors_saving.get()
            && inner.cursors_saved_at.get().elapsed() >= Duration::from_millis(CURSOR_PERSIST_INTERVAL_MS)
        {
            inner.cursors_saving.set(true);
            inner.cursors_saved_at.set(Instant::now());
            let bg = p.clone();
            glommio::spawn_local(async move {
                if let Err(e) = bg.persist_cursors().await {
                    log::warn!("partition {}: {e}", bg.0.id);
                }
                bg.0.cursors_saving.set(false);
            })
            .detach();
        }
    }
}

fn nothing_pending(inner: &Inner) -> bool {
    inner.w.borrow().as_ref().map(|w| w.pending.iter().all(|b| b.state.get() == BufState::Written) && w.open.len() as u64 + w.open.start == w.pos && w.open.last_lsn.get() == 0).unwrap_or(true)
        && inner.written_lsn.get() == inner.next_lsn.get() - 1
}

async fn flush_round(p: &Partition) -> Result<()> {
    let inner = &p.0;
    let interval_due = match inner.cfg.sync {
        SyncMode::Interval(d) => inner.last_sync.get().elapsed() >= d,
        _ => false,
    };
    let head = inner.next_lsn.get() - 1;
    // Close the open buffer when someone waits for what it holds, on the
    // interval tick, or on close.
    {
        let mut ws = inner.w.borrow_mut();
        if let Some(w) = ws.as_mut() {
            let open_first_unwritten = inner.written_lsn.get() < head && w.open.last_lsn.get() > 0;
            let wanted = inner.want_written.get() > inner.written_lsn.get() || inner.want_synced.get() > inner.synced_lsn.get();
            if open_first_unwritten && (wanted || interval_due || inner.closing.get()) {
                p.rotate_buffer(w, 0);
            }
        }
    }
    // Write closed buffers, several at a time, completing them in order. A
    // buffer that shares its first page with the one before it (a partial
    // flush) waits until that one has landed.
    let mut dirty: Vec<Rc<DmaFile>> = Vec::new();
    let mut inflight: VecDeque<(Rc<WBuf>, glommio::Task<std::io::Result<usize>>)> = VecDeque::new();
    let mut failure: Option<Error> = None;
    loop {
        while failure.is_none() && inflight.len() < MAX_WRITES_IN_FLIGHT {
            let next = inner
                .w
                .borrow()
                .as_ref()
                .and_then(|w| w.pending.iter().find(|b| b.state.get() == BufState::Closed).cloned());
            let Some(buf) = next else { break };
            if let Some((prev, _)) = inflight.back() {
                if Rc::ptr_eq(&prev.file, &buf.file) && buf.start < prev.end() {
                    break;
                }
            }
            let dma = buf.take_for_write();
            buf.state.set(BufState::InFlight);
            let (file, pos) = (buf.file.clone(), buf.start);
            let task = glommio::spawn_local(async move { file.write_rc_at(dma, pos).await.map_err(glommio_io) });
            inflight.push_back((buf, task));
        }
        let Some((buf, task)) = inflight.pop_front() else { break };
        let res = task.await;
        if failure.is_some() {
            continue;
        }
        if let Err(e) = res {
            let detail = format!("writing {} at {}: {e}", buf.seg.path.display(), buf.start);
            failure = Some(if is_enospc(&e) {
                Error::NoSpace { partition: inner.id, dir: inner.dir.clone(), detail }
            } else {
                Error::Failed { partition: inner.id, path: buf.seg.path.clone(), detail }
            });
            // From here on nothing is marked written; the failed buffer and
            // every later one are written again on the next round.
            buf.state.set(BufState::Closed);
            continue;
        }
        let fresh = buf.len() - buf.prefix_len.get();
        buf.state.set(BufState::Written);
        if inner.no_space.borrow_mut().take().is_some() {
            log::info!("partition {}: writes resumed", inner.id);
        }
        inner.unflushed.set(inner.unflushed.get().saturating_sub(fresh));
        if buf.last_lsn.get() > inner.written_lsn.get() {
            inner.written_lsn.set(buf.last_lsn.get());
        }
        if !dirty.iter().any(|f| Rc::ptr_eq(f, &buf.file)) {
            dirty.push(buf.file.clone());
        }
        if buf.seals.get() {
            buf.file.fdatasync().await.map_err(|e| Error::Failed { partition: inner.id, path: buf.seg.path.clone(), detail: format!("fdatasync: {}", glommio_io(e)) })?;
            inner.counters.fdatasyncs.set(inner.counters.fdatasyncs.get() + 1);
            dirty.retain(|f| !Rc::ptr_eq(f, &buf.file));
            let hw = buf.seal_hint.borrow_mut().take();
            buf.seg.sealed.set(true);
            if let Some(hw) = hw {
                // In the background: the hint is only a startup shortcut
                // (without it the segment is scanned), and its writes and
                // syncs must not hold back the next buffers' writes.
                let (bg, seg) = (p.clone(), buf.seg.clone());
                inner.hint_writes.set(inner.hint_writes.get() + 1);
                glommio::spawn_local(async move {
                    if let Err(e) = bg.write_hint(&seg, hw).await {
                        log::warn!("partition {}: {e}; the segment will be scanned at the next start instead", bg.0.id);
                    }
                    bg.0.hint_writes.set(bg.0.hint_writes.get() - 1);
                    bg.0.progress.wake_all();
                })
                .detach();
            }
        }
        release_stable_buffers(inner);
        inner.progress.wake_all();
    }
    if let Some(e) = failure {
        requeue_after_failure(inner);
        return Err(e);
    }
    let need_sync = inner.written_lsn.get() > inner.synced_lsn.get()
        && (inner.want_synced.get() > inner.synced_lsn.get() || interval_due || inner.closing.get());
    if need_sync {
        let upto = inner.written_lsn.get();
        let files: Vec<Rc<DmaFile>> = if dirty.is_empty() {
            inner.w.borrow().as_ref().map(|w| vec![w.file.clone()]).unwrap_or_default()
        } else {
            dirty
        };
        for f in files {
            f.fdatasync().await.map_err(|e| Error::Failed { partition: inner.id, path: inner.dir.clone(), detail: format!("fdatasync: {}", glommio_io(e)) })?;
            inner.counters.fdatasyncs.set(inner.counters.fdatasyncs.get() + 1);
        }
        inner.synced_lsn.set(upto.max(inner.synced_lsn.get()));
        inner.last_sync.set(Instant::now());
    } else if interval_due {
        inner.last_sync.set(Instant::now());
    }
    release_stable_buffers(inner);
    inner.progress.wake_all();
    Ok(())
}

/// Drops written buffers whose bytes all lie on pages that no later write
/// touches: from then on those records are read through the mmap.
fn release_stable_buffers(inner: &Inner) {
    let mut ws = inner.w.borrow_mut();
    let Some(w) = ws.as_mut() else { return };
    let active = w.seg.id;
    let stable = w
        .pending
        .iter()
        .filter(|b| b.seg.id == active && b.state.get() != BufState::Written)
        .map(|b| b.start)
        .chain(std::iter::once(w.open.start))
        .min()
        .unwrap_or(w.open.start);
    w.pending.retain(|b| {
        b.state.get() != BufState::Written || (b.seg.id == active && b.end() > stable) || (b.seg.id != active && !b.seg.sealed.get())
    });
}

/// After a failed write the DMA buffers of the failed and later writes were
/// consumed; copy their bytes into fresh buffers so that they are written
/// again, in order, on the next round.
fn requeue_after_failure(inner: &Inner) {
    let mut ws = inner.w.borrow_mut();
    let Some(w) = ws.as_mut() else { return };
    for slot in w.pending.iter_mut() {
        let buf = slot.clone();
        if !matches!(buf.state.get(), BufState::Closed | BufState::InFlight) || buf.has_dma() {
            continue;
        }
        let bytes = buf.slice(0, buf.len()).to_vec();
        let cap = page_ceil(bytes.len() as u64 + PAGE_BYTES) as usize;
        let copy = Rc::new(WBuf::new(buf.file.clone(), buf.seg.clone(), buf.start, cap, &bytes));
        copy.last_lsn.set(buf.last_lsn.get());
        copy.seals.set(buf.seals.get());
        copy.prefix_len.set(buf.prefix_len.get());
        *copy.seal_hint.borrow_mut() = buf.seal_hint.borrow_mut().take();
        copy.close();
        *slot = copy;
    }
}
