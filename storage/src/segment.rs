//! Segment files: naming, the 4 KiB file header, and read views.
//!
//! A segment file is `<base:016x>-<gen:04x>.seg`. It starts with a 4 KiB
//! header page (magic, format version, partition, base, generation, covered
//! bases, capacity, crc) and then holds records from offset 4096 on. Fresh
//! segments have generation 0 and cover only their own base; compaction
//! writes one segment covering a run of bases with a higher generation.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use memmap2::Mmap;

/// A segment's mapping and the read-only file it maps (for sendfile).
pub struct Mapped {
    pub map: Mmap,
    pub file: std::fs::File,
    /// The segment file's path when it was mapped (for messages).
    pub path: std::path::PathBuf,
}

impl std::ops::Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map
    }
}

use crate::buffer::WBuf;
use crate::error::{Error, Result};
use crate::record::{Header, HEADER_BYTES};

pub const SEGMENT_MAGIC: &[u8; 8] = b"DPLNSEG\0";
/// On-disk format version written by this build. Files with a larger
/// version are refused.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the header page at the start of every segment file.
pub const SEGMENT_HEADER_BYTES: u64 = 4096;
/// Smallest allowed segment capacity.
pub const MIN_SEGMENT_BYTES: u64 = 1 << 20;
/// Largest allowed segment capacity (index offsets are 32-bit).
pub const MAX_SEGMENT_BYTES: u64 = 4 << 30;
/// One (lsn, offset) mark is kept per this many bytes of records, for
/// seeking by LSN and for measuring how many bytes a cursor retains.
pub const MARK_INTERVAL_BYTES: u64 = 64 << 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegName {
    pub base: u64,
    pub gen: u32,
}

impl SegName {
    pub fn file_name(&self) -> String {
        format!("{:016x}-{:04x}.seg", self.base, self.gen)
    }

    pub fn hint_name(&self) -> String {
        format!("{:016x}-{:04x}.hint", self.base, self.gen)
    }

    pub fn parse(name: &str) -> Option<SegName> {
        let stem = name.strip_suffix(".seg")?;
        let (b, g) = stem.split_once('-')?;
        if b.len() != 16 || g.len() != 4 {
            return None;
        }
        Some(SegName { base: u64::from_str_radix(b, 16).ok()?, gen: u32::from_str_radix(g, 16).ok()? })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegHeader {
    pub format: u32,
    pub partition: u32,
    pub name: SegName,
    pub cover_to: u64,
    pub created_ms: u64,
    pub capacity: u64,
}

impl SegHeader {
    pub fn encode(&self, out: &mut [u8]) {
        assert!(out.len() >= SEGMENT_HEADER_BYTES as usize);
        out[..SEGMENT_HEADER_BYTES as usize].fill(0);
        out[0..8].copy_from_slice(SEGMENT_MAGIC);
        out[8..12].copy_from_slice(&self.format.to_le_bytes());
        out[12..16].copy_from_slice(&(SEGMENT_HEADER_BYTES as u32).to_le_bytes());
        out[16..20].copy_from_slice(&self.partition.to_le_bytes());
        out[20..24].copy_from_slice(&self.name.gen.to_le_bytes());
        out[24..32].copy_from_slice(&self.name.base.to_le_bytes());
        out[32..40].copy_from_slice(&self.name.base.to_le_bytes());
        out[40..48].copy_from_slice(&self.cover_to.to_le_bytes());
        out[48..56].copy_from_slice(&self.created_ms.to_le_bytes());
        out[56..64].copy_from_slice(&self.capacity.to_le_bytes());
        let crc = crc32c::crc32c(&out[0..64]);
        out[64..68].copy_from_slice(&crc.to_le_bytes());
    }

    pub fn decode(path: &Path, b: &[u8]) -> Result<SegHeader> {
        let bad = |what: String| Error::BadFile { path: path.to_path_buf(), what };
        if b.len() < 68 {
            return Err(bad(format!("segment header is {} bytes, expected 4096", b.len())));
        }
        if &b[0..8] != SEGMENT_MAGIC {
            return Err(bad("not a dataplane segment file (bad magic)".into()));
        }
        let crc = u32::from_le_bytes(b[64..68].try_into().unwrap());
        if crc32c::crc32c(&b[0..64]) != crc {
            return Err(bad("segment header checksum mismatch".into()));
        }
        let format = u32::from_le_bytes(b[8..12].try_into().unwrap());
        let h = SegHeader {
            format,
            partition: u32::from_le_bytes(b[16..20].try_into().unwrap()),
            name: SegName {
                base: u64::from_le_bytes(b[24..32].try_into().unwrap()),
                gen: u32::from_le_bytes(b[20..24].try_into().unwrap()),
            },
            cover_to: u64::from_le_bytes(b[40..48].try_into().unwrap()),
            created_ms: u64::from_le_bytes(b[48..56].try_into().unwrap()),
            capacity: u64::from_le_bytes(b[56..64].try_into().unwrap()),
        };
        if h.capacity < MIN_SEGMENT_BYTES || h.capacity > MAX_SEGMENT_BYTES {
            return Err(bad(format!("segment capacity {} out of range", h.capacity)));
        }
        Ok(h)
    }
}

/// One segment of a partition's log, sealed or active.
pub(crate) struct Segment {
    /// In-memory id used by index entries; never reused within a process.
    pub id: u32,
    pub name: SegName,
    pub path: PathBuf,
    pub cover_to: u64,
    pub capacity: u64,
    pub map: Arc<Mapped>,
    /// Offset just past the last record (padding included).
    pub end: Cell<u64>,
    pub first_lsn: Cell<u64>,
    pub last_lsn: Cell<u64>,
    /// Bytes of records in the file, and how many of them are superseded.
    pub total_bytes: Cell<u64>,
    pub dead_bytes: Cell<u64>,
    /// Records here that are not their key's current record (superseded,
    /// removed, or markers that never are). While it is 0, every keyed
    /// record of the segment is current without asking the index.
    pub stale_records: Cell<u64>,
    pub markers: Cell<u64>,
    pub sealed: Cell<bool>,
    /// Sparse (lsn, offset) marks, one per MARK_INTERVAL_BYTES.
    pub marks: RefCell<Vec<(u64, u64)>>,
}

impl Segment {
    pub fn new(id: u32, name: SegName, path: PathBuf, cover_to: u64, capacity: u64, map: Arc<Mapped>) -> Segment {
        Segment {
            id,
            name,
            path,
            cover_to,
            capacity,
            map,
            end: Cell::new(SEGMENT_HEADER_BYTES),
            first_lsn: Cell::new(0),
            last_lsn: Cell::new(0),
            total_bytes: Cell::new(0),
            dead_bytes: Cell::new(0),
            stale_records: Cell::new(0),
            markers: Cell::new(0),
            sealed: Cell::new(false),
            marks: RefCell::new(Vec::new()),
        }
    }

    /// Accounts a record placed at `off` (called in LSN order).
    pub fn note_record(&self, lsn: u64, off: u64, padded: u64, marker: bool) {
        if self.first_lsn.get() == 0 {
            self.first_lsn.set(lsn);
        }
        debug_assert!(lsn > self.last_lsn.get(), "lsn must increase within a segment");
        self.last_lsn.set(lsn);
        self.total_bytes.set(self.total_bytes.get() + padded);
        if marker {
            self.markers.set(self.markers.get() + 1);
        }
        let mut marks = self.marks.borrow_mut();
        let due = match marks.last() {
            None => true,
            Some(&(_, last_off)) => off >= last_off + MARK_INTERVAL_BYTES,
        };
        if due {
            marks.push((lsn, off));
        }
        self.end.set(off + padded);
    }

    /// Largest marked offset whose record has an LSN <= `lsn` (a safe place
    /// to start scanning for the first record after `lsn`).
    pub fn seek_offset(&self, lsn: u64) -> u64 {
        let marks = self.marks.borrow();
        let i = marks.partition_point(|&(l, _)| l <= lsn);
        if i == 0 {
            SEGMENT_HEADER_BYTES
        } else {
            marks[i - 1].1
        }
    }

    pub fn garbage_ratio(&self) -> f64 {
        let t = self.total_bytes.get();
        if t == 0 {
            0.0
        } else {
            self.dead_bytes.get() as f64 / t as f64
        }
    }

    pub fn live_bytes(&self) -> u64 {
        self.total_bytes.get().saturating_sub(self.dead_bytes.get())
    }

    /// Reads the record at `off` from the mapping, checking its crc when asked.
    pub fn view(&self, off: u64, verify: bool) -> std::result::Result<RecordView, crate::record::DecodeError> {
        let o = off as usize;
        let end = (self.end.get() as usize).min(self.map.len());
        let avail = end.saturating_sub(o);
        let b = &self.map[o..o + avail];
        let header = if verify { Header::parse_verified(b)? } else { Header::parse(b)? };
        if !verify && (header.len as usize) > avail {
            return Err(crate::record::DecodeError::Short { have: avail, need: header.len as usize });
        }
        Ok(RecordView { backing: Backing::Map(self.map.clone()), off: o, header, seg: self.id, file_off: off })
    }
}

pub(crate) enum Backing {
    Buf(Rc<WBuf>),
    Map(Arc<Mapped>),
    /// A span of the segment file read from disk by an iterator
    /// (`LsnIter::fill`); `off` is relative to the span.
    Disk(Rc<DiskSpan>),
}

/// Bytes `[start, start + buf.len())` of a segment file, read with one
/// O_DIRECT io_uring read.
pub(crate) struct DiskSpan {
    pub seg: u32,
    pub start: u64,
    pub buf: glommio::io::ReadResult,
}

impl DiskSpan {
    pub fn end(&self) -> u64 {
        self.start + self.buf.len() as u64
    }
}

/// A record read from the log without copying it: it points into the
/// segment's mmap or into the in-memory write buffer that holds the tail.
pub struct RecordView {
    pub(crate) backing: Backing,
    pub(crate) off: usize,
    pub header: Header,
    pub(crate) seg: u32,
    pub file_off: u64,
}

impl RecordView {
    /// The whole record as stored (header, key, meta, value; no padding).
    pub fn bytes(&self) -> &[u8] {
        let len = self.header.len as usize;
        match &self.backing {
            Backing::Map(m) => &m[self.off..self.off + len],
            Backing::Buf(b) => b.slice(self.off, len),
            Backing::Disk(d) => &d.buf[self.off..self.off + len],
        }
    }

    pub fn key(&self) -> &[u8] {
        &self.bytes()[self.header.key_range()]
    }

    pub fn meta(&self) -> &[u8] {
        &self.bytes()[self.header.meta_range()]
    }

    pub fn value(&self) -> &[u8] {
        &self.bytes()[self.header.value_range()]
    }

    pub fn lsn(&self) -> u64 {
        self.header.lsn
    }

    /// Id of the segment holding the record (as in the index's `Entry::seg`).
    pub fn seg_id(&self) -> u32 {
        self.seg
    }

    /// True when the record is served from a sealed or flushed region of a
    /// segment file through the mmap; false when it is still in a write
    /// buffer or was read from disk into memory by an iterator.
    pub fn is_mapped(&self) -> bool {
        matches!(self.backing, Backing::Map(_))
    }

    /// The segment file and offset holding the record, when it is mapped
    /// (for sendfile).
    pub fn file_region(&self) -> Option<(std::os::unix::io::RawFd, u64)> {
        use std::os::unix::io::AsRawFd;
        match &self.backing {
            Backing::Map(m) => Some((m.file.as_raw_fd(), self.off as u64)),
            Backing::Buf(_) | Backing::Disk(_) => None,
        }
    }

    /// A `Send` handle to the same bytes, for another core: shares the mmap
    /// when the record is mapped, copies it when it is still in a buffer.
    pub fn into_send(self) -> SendRecord {
        match self.backing {
            Backing::Map(m) => SendRecord { header: self.header, inner: SendInner::Map(m, self.off) },
            Backing::Buf(_) | Backing::Disk(_) => {
                let v = self.bytes().to_vec();
                SendRecord { header: self.header, inner: SendInner::Owned(v) }
            }
        }
    }
}

enum SendInner {
    Map(Arc<Mapped>, usize),
    Owned(Vec<u8>),
}

/// A record that can cross to another thread.
pub struct SendRecord {
    pub header: Header,
    inner: SendInner,
}

impl SendRecord {
    pub fn bytes(&self) -> &[u8] {
        let len = self.header.len as usize;
        match &self.inner {
            SendInner::Map(m, off) => &m[*off..*off + len],
            SendInner::Owned(v) => &v[..len],
        }
    }
    pub fn key(&self) -> &[u8] {
        &self.bytes()[self.header.key_range()]
    }
    pub fn meta(&self) -> &[u8] {
        &self.bytes()[self.header.meta_range()]
    }
    pub fn value(&self) -> &[u8] {
        &self.bytes()[self.header.value_range()]
    }
    /// The segment file and offset holding the record, when it is mapped.
    pub fn file_region(&self) -> Option<(std::os::unix::io::RawFd, u64)> {
        use std::os::unix::io::AsRawFd;
        match &self.inner {
            SendInner::Map(m, off) => Some((m.file.as_raw_fd(), *off as u64)),
            SendInner::Owned(_) => None,
        }
    }
    /// The record at `off` in a mapping, checking its crc when asked.
    pub(crate) fn from_map(map: Arc<Mapped>, off: usize, len: usize, verify: bool) -> std::result::Result<SendRecord, crate::record::DecodeError> {
        let end = (off + len).min(map.len());
        let b = &map[off.min(end)..end];
        let header = if verify { Header::parse_verified(b)? } else { Header::parse(b)? };
        if header.len as usize > b.len() {
            return Err(crate::record::DecodeError::Short { have: b.len(), need: header.len as usize });
        }
        Ok(SendRecord { header, inner: SendInner::Map(map, off) })
    }
    /// Owns a copy of a record's bytes (tests and slow paths).
    pub fn from_bytes(bytes: Vec<u8>) -> std::result::Result<SendRecord, crate::record::DecodeError> {
        let header = Header::parse_verified(&bytes)?;
        Ok(SendRecord { header, inner: SendInner::Owned(bytes) })
    }
}

impl std::fmt::Debug for SendRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendRecord").field("header", &self.header).finish()
    }
}

pub(crate) const _ASSERT_HEADER_FITS: () = assert!(HEADER_BYTES as u64 <= SEGMENT_HEADER_BYTES);

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn names_roundtrip_and_sort() {
        let a = SegName { base: 3, gen: 0 };
        let b = SegName { base: 3, gen: 1 };
        let c = SegName { base: 10, gen: 0 };
        for n in [a, b, c] {
            assert_eq!(SegName::parse(&n.file_name()), Some(n));
        }
        let mut names = vec![c.file_name(), b.file_name(), a.file_name()];
        names.sort();
        assert_eq!(names, vec![a.file_name(), b.file_name(), c.file_name()]);
        assert_eq!(SegName::parse("garbage.seg"), None);
    }
}
