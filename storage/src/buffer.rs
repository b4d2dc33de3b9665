//! In-memory write buffers: the unsealed tail of the active segment.
//!
//! Records are appended into a page-aligned DMA buffer that covers a range
//! of the segment file starting at `start`. When the buffer is submitted it
//! is trimmed to whole pages and written with one O_DIRECT write; the next
//! buffer starts at the page that holds the write position, with that
//! partial page copied in, so the only bytes ever written twice are the
//! tail page. Readers of the freshest records read straight from these
//! buffers through `slice`, which stays valid until the last `Rc<WBuf>` is
//! dropped.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile};

use crate::segment::Segment;

/// O_DIRECT alignment for file offsets, lengths and buffers.
pub const PAGE_BYTES: u64 = 4096;

pub fn page_floor(x: u64) -> u64 {
    x & !(PAGE_BYTES - 1)
}

pub fn page_ceil(x: u64) -> u64 {
    (x + PAGE_BYTES - 1) & !(PAGE_BYTES - 1)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufState {
    /// Accepting appends.
    Open,
    /// No more appends; waiting for the flusher to write it.
    Closed,
    /// Its write was submitted.
    InFlight,
    /// Its write completed.
    Written,
}

pub(crate) struct WBuf {
    /// File offset of byte 0 (page aligned).
    pub start: u64,
    cap: usize,
    ptr: *mut u8,
    len: Cell<usize>,
    dma: RefCell<Option<DmaBuffer>>,
    sent: RefCell<Option<Rc<DmaBuffer>>>,
    /// Highest LSN whose record lies in this buffer (0 if none).
    pub last_lsn: Cell<u64>,
    pub state: Cell<BufState>,
    /// The buffer ends its segment: after writing it the flusher syncs the
    /// file and writes the segment's hint file.
    pub seals: Cell<bool>,
    /// The sealed segment's hint, written by the flusher after the seal.
    pub seal_hint: RefCell<Option<crate::hint::HintWriter>>,
    /// Bytes at the start that an earlier buffer already counted.
    pub prefix_len: Cell<usize>,
    pub seg: Rc<Segment>,
    pub file: Rc<DmaFile>,
}

impl WBuf {
    /// A buffer covering `[start, start + cap)`, beginning with `prefix`
    /// (the bytes already in the first page).
    pub fn new(file: Rc<DmaFile>, seg: Rc<Segment>, start: u64, cap: usize, prefix: &[u8]) -> WBuf {
        assert_eq!(start % PAGE_BYTES, 0, "write buffers start on a page");
        assert!(cap as u64 % PAGE_BYTES == 0 && prefix.len() < cap);
        let mut dma = file.alloc_dma_buffer(cap);
        let ptr = dma.as_mut_ptr();
        // SAFETY: prefix.len() < cap, and nobody else sees the buffer yet.
        unsafe { std::ptr::copy_nonoverlapping(prefix.as_ptr(), ptr, prefix.len()) };
        WBuf {
            start,
            cap,
            ptr,
            len: Cell::new(prefix.len()),
            dma: RefCell::new(Some(dma)),
            sent: RefCell::new(None),
            last_lsn: Cell::new(0),
            state: Cell::new(BufState::Open),
            seals: Cell::new(false),
            seal_hint: RefCell::new(None),
            prefix_len: Cell::new(prefix.len()),
            seg,
            file,
        }
    }

    pub fn len(&self) -> usize {
        self.len.get()
    }

    pub fn end(&self) -> u64 {
        self.start + self.len.get() as u64
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    pub fn remaining(&self) -> usize {
        self.cap - self.len.get()
    }

    /// Appends the parts contiguously; the caller checked `remaining`.
    pub fn append(&self, parts: &[&[u8]]) {
        assert_eq!(self.state.get(), BufState::Open, "append to a closed buffer");
        let mut at = self.len.get();
        for p in parts {
            assert!(at + p.len() <= self.cap, "write buffer overflow");
            // SAFETY: [at, at+len) lies inside the allocation and beyond `len`,
            // a region no reader slices (readers only see [0, len)).
            unsafe { std::ptr::copy_nonoverlapping(p.as_ptr(), self.ptr.add(at), p.len()) };
            at += p.len();
        }
        self.len.set(at);
    }

    pub fn append_zeros(&self, n: usize) {
        assert_eq!(self.state.get(), BufState::Open);
        let at = self.len.get();
        assert!(at + n <= self.cap, "write buffer overflow");
        // SAFETY: as in `append`.
        unsafe { std::ptr::write_bytes(self.ptr.add(at), 0, n) };
        self.len.set(at + n);
    }

    /// Bytes `[off, off+len)` relative to `start`; must lie in `[0, len())`.
    pub fn slice(&self, off: usize, len: usize) -> &[u8] {
        assert!(off + len <= self.len.get(), "read past the written part of a buffer");
        // SAFETY: the allocation lives as long as self (owned by `dma` or
        // `sent`), and bytes below `len` are never written again.
        unsafe { std::slice::from_raw_parts(self.ptr.add(off), len) }
    }

    /// The partial last page, to seed the next buffer.
    pub fn tail_page(&self) -> &[u8] {
        let end = self.len.get();
        let from = (page_floor(self.start + end as u64) - self.start) as usize;
        self.slice(from, end - from)
    }

    /// Closes the buffer and hands out the DMA buffer to write: trimmed to
    /// whole pages, with the bytes past `len` in the last page zeroed.
    pub fn take_for_write(&self) -> Rc<DmaBuffer> {
        let mut dma = self.dma.borrow_mut().take().expect("buffer submitted twice");
        self.state.set(BufState::Closed);
        let len = self.len.get();
        let whole = page_ceil(len as u64) as usize;
        // SAFETY: [len, whole) is inside the allocation and outside anything a
        // reader may be looking at; write through the raw pointer so that no
        // `&mut [u8]` overlaps readers' slices of [0, len).
        unsafe { std::ptr::write_bytes(self.ptr.add(len), 0, whole - len) };
        dma.trim_to_size(whole);
        let rc = Rc::new(dma);
        *self.sent.borrow_mut() = Some(rc.clone());
        rc
    }

    /// Whether the DMA buffer is still here (not yet handed to a write).
    pub fn has_dma(&self) -> bool {
        self.dma.borrow().is_some()
    }

    pub fn close(&self) {
        if self.state.get() == BufState::Open {
            self.state.set(BufState::Closed);
        }
    }
}
