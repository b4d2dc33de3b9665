//! Compaction: rewrites the live records of a run of mostly-garbage sealed
//! segments into one new segment that takes the run's place.
//!
//! Records keep their bytes (header, LSN and crc included), so the output
//! stays in LSN order and LSN iteration resumes by seeking. Rules:
//! - a value record is kept iff the index still points at it (a superseded
//!   record is dropped only because the record that supersedes it is kept);
//! - a tombstone is dropped only when every cursor has passed it, the grace
//!   period is over, and no older segment remains that could hold an older
//!   value of its key (the run starts at the oldest segment);
//! - an expunge marker is dropped only when the run starts at the oldest
//!   segment, for the same reason.
//!
//! The output is written to `<name>.seg.tmp`, fsynced, its hint written, then
//! renamed into place (the commit point); recovery deletes segments that a
//! finished output covers and leftover `.tmp` files.

use std::rc::Rc;

use glommio::io::DmaFile;

use crate::buffer::{page_ceil, PAGE_BYTES};
use crate::error::{is_enospc, Error, Result};
use crate::hint::HintWriter;
use crate::partition::{map_file, Partition};
use crate::record::{Header, Kind};
use crate::segment::{SegHeader, SegName, Segment, FORMAT_VERSION, MAX_SEGMENT_BYTES, SEGMENT_HEADER_BYTES};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionStats {
    pub segments_in: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub records_kept: u64,
    pub records_dropped: u64,
    pub tombstones_dropped: u64,
    pub markers_kept: u64,
}

struct Kept {
    seg: u32,
    off: u64,
    len: u32,
    padded: u64,
    drop_tombstone: bool,
}

impl Partition {
    /// Compacts the first run of sealed segments whose garbage ratio reaches
    /// the configured threshold. Returns None when there is nothing to do.
    pub async fn compact(&self) -> Result<Option<CompactionStats>> {
        let ratio = self.0.cfg.compaction_garbage_ratio;
        let run = self.pick_run(|s| s.garbage_ratio() >= ratio);
        match run {
            Some(run) => self.compact_run(run).await.map(Some),
            None => Ok(None),
        }
    }

    /// Compacts every sealed segment (in runs), whatever its garbage ratio.
    pub async fn compact_all(&self) -> Result<Vec<CompactionStats>> {
        let mut out = Vec::new();
        let mut done_upto: Option<u64> = None;
        loop {
            let run = self.pick_run(|s| done_upto.map(|d| s.name.base > d).unwrap_or(true));
            let Some(run) = run else { break };
            done_upto = Some(run.last().unwrap().cover_to);
            out.push(self.compact_run(run).await?);
        }
        Ok(out)
    }

    fn pick_run(&self, want: impl Fn(&Segment) -> bool) -> Option<Vec<Rc<Segment>>> {
        let inner = &self.0;
        if inner.compacting.get() {
            return None;
        }
        let segs = inner.segs.borrow();
        let active = inner.w.borrow().as_ref().map(|w| w.seg.id);
        let budget = inner.cfg.segment_bytes.saturating_sub(2 * SEGMENT_HEADER_BYTES);
        let mut run: Vec<Rc<Segment>> = Vec::new();
        let mut live = 0;
        for s in segs.order.iter() {
            let eligible = s.sealed.get() && Some(s.id) != active && want(s);
            if eligible && (run.is_empty() || live + s.live_bytes() <= budget) {
                live += s.live_bytes();
                run.push(s.clone());
            } else if !run.is_empty() {
                break;
            }
        }
        // A single segment with nothing to drop is not worth rewriting.
        if run.len() == 1 && run[0].dead_bytes.get() == 0 && run[0].markers.get() == 0 {
            return None;
        }
        (!run.is_empty()).then_some(run)
    }

    async fn compact_run(&self, run: Vec<Rc<Segment>>) -> Result<CompactionStats> {
        let inner = &self.0;
        // Reset on drop too: a caller that abandons a compaction must not
        // leave the partition marked as compacting for ever.
        struct Compacting<'a>(&'a std::cell::Cell<bool>);
        impl Drop for Compacting<'_> {
            fn drop(&mut self) {
                self.0.set(false);
            }
        }
        inner.compacting.set(true);
        let _flag = Compacting(&inner.compacting);
        self.compact_run_inner(run).await
    }

    async fn compact_run_inner(&self, run: Vec<Rc<Segment>>) -> Result<CompactionStats> {
        let inner = &self.0;
        let oldest = inner.segs.borrow().order.first().map(|s| s.id) == Some(run[0].id);
        let min_cursor = self.min_cursor().unwrap_or(u64::MAX);
        let now = crate::now_ms();
        let grace = inner.cfg.tombstone_grace_ms;
        let mut stats = CompactionStats { segments_in: run.len(), ..Default::default() };

        // Pass 1: decide what to keep (headers only).
        let mut kept: Vec<Kept> = Vec::new();
        for seg in &run {
            stats.bytes_in += seg.total_bytes.get();
            let end = seg.end.get();
            let mut off = SEGMENT_HEADER_BYTES;
            let mut n = 0u32;
            while off < end {
                let h = match Header::parse_verified(&seg.map[off as usize..end as usize]) {
                    Ok(h) => h,
                    Err(e) => {
                        // Listed as damage; the rest of this segment is kept as
                        // it is by leaving the run uncompacted.
                        let detail = format!("{e} (found by compaction)");
                        inner.damage.borrow_mut().push(crate::Damage { path: seg.path.clone(), offset: off, key: None, detail: detail.clone() });
                        return Err(Error::Corrupt { path: seg.path.clone(), offset: off, detail });
                    }
                };
                let padded = h.padded_len() as u64;
                let rec = &seg.map[off as usize..(off as usize + h.len as usize)];
                let key = &rec[h.key_range()];
                let current = self.get(key).map(|e| e.seg == seg.id && e.off == off).unwrap_or(false);
                let keep = match h.kind {
                    Kind::Seal | Kind::Pad => None,
                    Kind::Expunge => (!oldest).then_some(false),
                    Kind::Tombstone if current => {
                        let reap = oldest && h.lsn <= min_cursor && now.saturating_sub(h.version.millis()) >= grace;
                        if reap {
                            Some(true)
                        } else {
                            Some(false)
                        }
                    }
                    _ => current.then_some(false),
                };
                match keep {
                    Some(drop_tombstone) => {
                        if drop_tombstone {
                            stats.tombstones_dropped += 1;
                        } else if h.kind.is_marker() {
                            stats.markers_kept += 1;
                        }
                        kept.push(Kept { seg: seg.id, off, len: h.len, padded, drop_tombstone });
                    }
                    None => stats.records_dropped += 1,
                }
                off += padded;
                n += 1;
                if n % 256 == 0 {
                    glommio::yield_if_needed().await;
                }
            }
        }

        // Pass 2: write the output.
        let out_bytes: u64 = kept.iter().filter(|k| !k.drop_tombstone).map(|k| k.padded).sum();
        let capacity = page_ceil(SEGMENT_HEADER_BYTES + out_bytes + PAGE_BYTES).max(inner.cfg.segment_bytes).min(MAX_SEGMENT_BYTES);
        if SEGMENT_HEADER_BYTES + out_bytes > capacity {
            return Err(Error::Config(format!("compaction output of {out_bytes} bytes exceeds the largest segment")));
        }
        let name = SegName { base: run[0].name.base, gen: run.iter().map(|s| s.name.gen).max().unwrap() + 1 };
        let cover_to = run.iter().map(|s| s.cover_to).max().unwrap();
        let final_path = inner.dir.join(name.file_name());
        let tmp_path = inner.dir.join(format!("{}.tmp", name.file_name()));
        let file = DmaFile::create(&tmp_path)
            .await
            .map_err(|e| Error::io(format!("creating {}", tmp_path.display()), crate::partition::glommio_io(e)))?;
        let res = self.write_output(&file, &tmp_path, name, cover_to, capacity, &run, &kept).await;
        let (hint, new_offsets) = match res {
            Ok(v) => v,
            Err(e) => {
                let _ = file.remove().await;
                return Err(e);
            }
        };
        file.close().await.map_err(|e| Error::io("closing compaction output", crate::partition::glommio_io(e)))?;
        let end = new_offsets.last().map(|&(o, p)| o + p).unwrap_or(SEGMENT_HEADER_BYTES);
        let hint_bytes = hint.finish(name, end);
        {
            let dir = inner.dir.clone();
            let (tmp, fin) = (tmp_path.clone(), final_path.clone());
            let hname = name.hint_name();
            glommio::executor()
                .spawn_blocking(move || -> std::io::Result<()> {
                    crate::cursor::write_atomic(&dir, &hname, &hint_bytes)?;
                    std::fs::rename(&tmp, &fin)?;
                    std::fs::File::open(&dir)?.sync_all()
                })
                .await
                .map_err(|e| Error::io(format!("installing {}", final_path.display()), e))?;
        }
        let map = map_file(&final_path, capacity)?;

        // Commit: no await from here until the old files are removed from the
        // segment list, so readers see either the old or the new layout.
        let new_id = inner.segs.borrow().next_id();
        let seg = Rc::new(Segment::new(new_id, name, final_path, cover_to, capacity, map));
        seg.sealed.set(true);
        {
            let mut ix = inner.index.borrow_mut();
            let mut wi = 0;
            for k in &kept {
                let key_of = |s: &Rc<Segment>| {
                    let rec = &s.map[k.off as usize..k.off as usize + k.len as usize];
                    let h = Header::parse(rec).expect("header verified in pass 1");
                    (h, rec[h.key_range()].to_vec())
                };
                let src = run.iter().find(|s| s.id == k.seg).unwrap();
                let (h, key) = key_of(src);
                if k.drop_tombstone {
                    ix.remove(&key, Some((k.seg, k.off)));
                    continue;
                }
                let (new_off, padded) = new_offsets[wi];
                wi += 1;
                seg.note_record(h.lsn, new_off, padded, h.kind.is_marker());
                let moved = h.kind == Kind::Expunge || ix.relocate(&key, (k.seg, k.off), (new_id, new_off));
                if !moved || h.kind == Kind::Expunge {
                    // Overwritten while we copied it (or a marker): garbage.
                    seg.dead_bytes.set(seg.dead_bytes.get() + padded);
                    seg.stale_records.set(seg.stale_records.get() + 1);
                }
            }
        }
        {
            let mut sl = inner.segs.borrow_mut();
            let first = sl.position(run[0].id).expect("run still listed");
            for s in &run {
                let i = sl.position(s.id).expect("run still listed");
                sl.order.remove(i);
                sl.by_id[s.id as usize] = None;
            }
            sl.order.insert(first, seg.clone());
            sl.by_id.push(Some(seg.clone()));
            sl.generation += 1;
        }
        stats.records_kept = kept.iter().filter(|k| !k.drop_tombstone).count() as u64;
        stats.bytes_out = seg.total_bytes.get();
        inner.counters.compactions.set(inner.counters.compactions.get() + 1);
        inner.counters.compacted_bytes.set(inner.counters.compacted_bytes.get() + stats.bytes_in);

        let old: Vec<std::path::PathBuf> = run.iter().flat_map(|s| [s.path.clone(), s.path.with_extension("hint")]).collect();
        glommio::executor()
            .spawn_blocking(move || {
                for p in old {
                    let _ = std::fs::remove_file(p);
                }
            })
            .await;
        log::info!(
            "partition {}: compacted {} segments ({} bytes) into {} ({} bytes), dropped {} records and {} tombstones",
            inner.id,
            stats.segments_in,
            stats.bytes_in,
            name.file_name(),
            stats.bytes_out,
            stats.records_dropped,
            stats.tombstones_dropped
        );
        Ok(stats)
    }

    /// Writes header and kept records; returns the hint and each kept
    /// record's (new offset, padded length).
    #[allow(clippy::too_many_arguments)]
    async fn write_output(
        &self,
        file: &DmaFile,
        path: &std::path::Path,
        name: SegName,
        cover_to: u64,
        capacity: u64,
        run: &[Rc<Segment>],
        kept: &[Kept],
    ) -> Result<(HintWriter, Vec<(u64, u64)>)> {
        let inner = &self.0;
        let io = |what: &str, e: glommio::GlommioError<()>| {
            let e = crate::partition::glommio_io(e);
            if is_enospc(&e) {
                Error::NoSpace { partition: inner.id, dir: inner.dir.clone(), detail: format!("compaction {what} {}: {e}", path.display()) }
            } else {
                Error::io(format!("compaction {what} {}", path.display()), e)
            }
        };
        let out_bytes: u64 = kept.iter().filter(|k| !k.drop_tombstone).map(|k| k.padded).sum();
        file.pre_allocate(page_ceil(SEGMENT_HEADER_BYTES + out_bytes), false).await.map_err(|e| io("preallocating", e))?;
        let chunk = inner.cfg.write_buffer_bytes;
        let mut buf = file.alloc_dma_buffer(chunk);
        SegHeader { format: FORMAT_VERSION, partition: inner.id, name, cover_to, created_ms: crate::now_ms(), capacity }
            .encode(buf.as_bytes_mut());
        let mut used = SEGMENT_HEADER_BYTES as usize;
        let mut file_pos = 0u64;
        let mut hint = HintWriter::default();
        let mut offsets = Vec::with_capacity(kept.len());
        let mut at = SEGMENT_HEADER_BYTES;
        for (i, k) in kept.iter().enumerate() {
            if k.drop_tombstone {
                continue;
            }
            let src = run.iter().find(|s| s.id == k.seg).unwrap();
            let rec = &src.map[k.off as usize..k.off as usize + k.padded as usize];
            let h = Header::parse(rec).expect("verified");
            hint.push(at, &h, &rec[h.key_range()]);
            offsets.push((at, k.padded));
            at += k.padded;
            let mut rest = rec;
            while !rest.is_empty() {
                let n = rest.len().min(chunk - used);
                buf.as_bytes_mut()[used..used + n].copy_from_slice(&rest[..n]);
                used += n;
                rest = &rest[n..];
                if used == chunk {
                    let full = std::mem::replace(&mut buf, file.alloc_dma_buffer(chunk));
                    file.write_at(full, file_pos).await.map_err(|e| io("writing", e))?;
                    file_pos += chunk as u64;
                    used = 0;
                }
            }
            if i % 64 == 0 {
                glommio::yield_if_needed().await;
            }
        }
        if used > 0 {
            let whole = page_ceil(used as u64) as usize;
            buf.as_bytes_mut()[used..whole].fill(0);
            buf.trim_to_size(whole);
            file.write_at(buf, file_pos).await.map_err(|e| io("writing", e))?;
        }
        file.fdatasync().await.map_err(|e| io("syncing", e))?;
        Ok((hint, offsets))
    }
}
