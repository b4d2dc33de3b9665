//! Reads of records that are on disk but not in memory.
//!
//! Segments are written with O_DIRECT, so a record that has left the write
//! buffers is in the page cache only once something read it through the
//! mapping. Touching such a record through the segment's mmap takes a major
//! page fault on the calling executor thread, which then sits idle while the
//! kernel reads the fault's whole read-around window (`read_ahead_kb`, 8 MiB
//! on the test machine) one request at a time: 0.3–0.45 GB/s here, against
//! 1.5 GB/s for O_DIRECT reads through io_uring. So a reader of whole records
//! (GET's manifests and blocks) first asks where the record is
//! ([`Partition::locate`](crate::Partition::locate)): a record whose pages
//! are all resident is read through the mapping as before (no copy), and one
//! that is not is read with an O_DIRECT io_uring read ([`ColdReader`]) into a
//! buffer of the reading executor, so that executor keeps serving while the
//! disk works and several reads are in flight at once.
//!
//! O_DIRECT reads leave the page cache as it was: a record read this way is
//! read from disk again next time. Buffered io_uring reads, which would cache
//! it, were measured too and ran at a third of the speed (0.35–0.44 GB/s for
//! GET, with the CPUs 90 % busy in page-cache work); see docs/benchmarks.md.

use std::cell::RefCell;
use std::os::unix::io::AsRawFd;
use std::rc::Rc;
use std::sync::{Arc, Weak};

use glommio::io::{DmaFile, ReadResult};

use crate::error::{Error, Result};
use crate::record::Header;
use crate::segment::{Mapped, SendRecord};

/// Segment files a [`ColdReader`] keeps open (per executor).
pub const MAX_COLD_READ_FILES: usize = 64;

/// Where a record is: ready in memory, or a region of a segment file.
pub enum Located {
    /// In a write buffer (copied out) or otherwise already in hand.
    Ready(SendRecord),
    /// On disk; read it with [`FileRegion::view`] or a [`ColdReader`].
    File(FileRegion),
}

/// A record's place in a segment file. Holds the segment's mapping (and so
/// its file) open, so the region stays readable even if compaction removes
/// the file meanwhile. It can cross to another thread.
pub struct FileRegion {
    pub(crate) map: Arc<Mapped>,
    pub(crate) off: u64,
    pub(crate) len: u32,
}

impl FileRegion {
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether every page of the record is in the page cache (`mincore`), so
    /// that reading it through the mapping takes no major fault.
    pub fn is_resident(&self) -> bool {
        let page = 4096usize;
        let start = self.off as usize & !(page - 1);
        let end = self.off as usize + self.len as usize;
        if end > self.map.len() {
            return false;
        }
        let pages = (end - start).div_ceil(page);
        let mut vec = vec![0u8; pages];
        // SAFETY: [start, end) lies inside the live mapping; `vec` has one
        // byte per page of it.
        let rc = unsafe { libc::mincore(self.map.as_ptr().add(start) as *mut libc::c_void, end - start, vec.as_mut_ptr()) };
        rc == 0 && vec.iter().all(|b| b & 1 == 1)
    }

    /// The record through the mapping (page faults if it is not resident).
    pub fn view(&self, verify: bool) -> Result<SendRecord> {
        SendRecord::from_map(self.map.clone(), self.off as usize, self.len as usize, verify).map_err(|e| self.corrupt(e.to_string()))
    }

    fn corrupt(&self, detail: String) -> Error {
        Error::Corrupt { path: self.map.path.clone(), offset: self.off, detail }
    }
}

/// A record read by a [`ColdReader`]: its bytes in an io_uring read buffer.
pub struct ColdRecord {
    pub header: Header,
    buf: ReadResult,
}

impl ColdRecord {
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.header.len as usize]
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
}

/// Reads file regions with O_DIRECT io_uring reads on the executor it lives
/// on (one per executor; `!Send`). Keeps up to [`MAX_COLD_READ_FILES`] segment files open,
/// and closes a file once its segment is gone.
#[derive(Default)]
pub struct ColdReader {
    files: RefCell<Vec<(Weak<Mapped>, Rc<DmaFile>)>>,
    /// Reads started and bytes asked for, since creation.
    reads: std::cell::Cell<u64>,
    read_bytes: std::cell::Cell<u64>,
}

impl ColdReader {
    pub fn new() -> ColdReader {
        ColdReader::default()
    }

    /// Reads started, and the bytes they asked for, since creation.
    pub fn read_counts(&self) -> (u64, u64) {
        (self.reads.get(), self.read_bytes.get())
    }

    fn count(&self, bytes: usize) {
        self.reads.set(self.reads.get() + 1);
        self.read_bytes.set(self.read_bytes.get() + bytes as u64);
    }

    /// Reads the record at `r`, checking its crc when `verify` is set.
    pub async fn read(&self, r: &FileRegion, verify: bool) -> Result<ColdRecord> {
        let file = self.file_for(&r.map).await?;
        self.count(r.len as usize);
        let buf = file
            .read_at(r.off, r.len as usize)
            .await
            .map_err(|e| Error::Io { context: format!("reading {} at offset {}", r.map.path.display(), r.off), source: crate::partition::glommio_io(e) })?;
        if buf.len() < r.len as usize {
            return Err(r.corrupt(format!("short read: {} of {} bytes", buf.len(), r.len)));
        }
        let header = if verify { Header::parse_verified(&buf[..r.len as usize]) } else { Header::parse(&buf[..r.len as usize]) }.map_err(|e| r.corrupt(e.to_string()))?;
        if header.len != r.len {
            return Err(r.corrupt(format!("record length {} where the index says {}", header.len, r.len)));
        }
        Ok(ColdRecord { header, buf })
    }

    /// Starts reading `len` bytes of a segment file at `off` (O_DIRECT; the
    /// read may return fewer bytes at the end of the file). The read runs
    /// as a task of its own, so it can be started ahead of need.
    pub(crate) async fn read_span(&self, map: &Arc<Mapped>, off: u64, len: usize) -> Result<glommio::Task<Result<ReadResult>>> {
        let file = self.file_for(map).await?;
        self.count(len);
        let path = map.path.clone();
        Ok(glommio::spawn_local(async move {
            file.read_at(off, len)
                .await
                .map_err(|e| Error::Io { context: format!("reading {} at offset {off}", path.display()), source: crate::partition::glommio_io(e) })
        }))
    }

    /// Open files held for segments that no longer exist.
    pub fn open_files(&self) -> usize {
        self.files.borrow().len()
    }

    async fn file_for(&self, map: &Arc<Mapped>) -> Result<Rc<DmaFile>> {
        {
            let mut files = self.files.borrow_mut();
            files.retain(|(w, _)| w.strong_count() > 0);
            if let Some((_, f)) = files.iter().find(|(w, _)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(map))) {
                return Ok(f.clone());
            }
        }
        // The mapping's own descriptor names the inode even after an unlink.
        let via = format!("/proc/self/fd/{}", map.file.as_raw_fd());
        let f = Rc::new(DmaFile::open(&via).await.map_err(|e| Error::Io {
            context: format!("opening {} for reading (via {via})", map.path.display()),
            source: crate::partition::glommio_io(e),
        })?);
        let mut files = self.files.borrow_mut();
        if files.len() >= MAX_COLD_READ_FILES {
            // Closed when the last read in flight on it finishes.
            files.remove(0);
        }
        files.push((Arc::downgrade(map), f.clone()));
        Ok(f)
    }
}
