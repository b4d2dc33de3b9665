//! Crash recovery: torn and corrupt tails at every byte offset, corruption
//! inside sealed segments.
mod common;
use common::*;
use storage::*;

fn seg_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().map(|x| x == "seg").unwrap_or(false))
        .collect();
    v.sort();
    v
}

struct Written {
    key: Vec<u8>,
    value: Vec<u8>,
    off: u64,
    end: u64,
}

#[test]
fn damage_at_every_offset_of_the_last_records() {
    let pristine = tempfile::tempdir().unwrap();
    let pdir = pristine.path().to_path_buf();
    let written: std::sync::Arc<std::sync::Mutex<Vec<Written>>> = Default::default();
    let w2 = written.clone();
    run(move || async move {
        let p = Partition::open(&pdir, 0, small_cfg()).await.unwrap();
        let mut out = Vec::new();
        for i in 0..40u64 {
            let len = if i >= 37 { [90usize, 40, 120][(i - 37) as usize] } else { 50 + (i as usize * 131) % 2000 };
            let key = format!("key-{i:03}").into_bytes();
            let value = value_for(i, 1, len);
            put(&p, &key, 1, &value).await;
            let e = p.get(&key).unwrap();
            out.push(Written { key, value, off: e.off, end: e.off + e.len as u64 });
        }
        p.close().await.unwrap();
        *w2.lock().unwrap() = out;
    });
    let written = std::sync::Arc::try_unwrap(written).ok().unwrap().into_inner().unwrap();
    let seg = seg_files(pristine.path()).pop().unwrap();
    let seg_name = seg.file_name().unwrap().to_owned();
    let first = written[37].off;
    let last = written[39].end;
    assert!(last - first < 600);
    let pristine_path = pristine.path().to_path_buf();
    run(move || async move {
        let mut checked = 0;
        for off in first..last {
            for mode in ["truncate", "flip"] {
                let work = tempfile::tempdir().unwrap();
                copy_dir(&pristine_path, work.path());
                let f = work.path().join(&seg_name);
                if mode == "truncate" {
                    let file = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
                    file.set_len(off).unwrap();
                } else {
                    let mut b = std::fs::read(&f).unwrap();
                    b[off as usize] ^= 1 << (off % 8);
                    std::fs::write(&f, &b).unwrap();
                }
                let p = Partition::open(work.path(), 0, small_cfg()).await.unwrap_or_else(|e| panic!("{mode} at {off}: {e}"));
                for w in &written {
                    let got = p.read(&w.key, true);
                    if w.end <= off {
                        let r = got.unwrap_or_else(|e| panic!("{mode} at {off}: {e}")).unwrap_or_else(|| panic!("{mode} at {off}: lost {:?}", String::from_utf8_lossy(&w.key)));
                        assert_eq!(r.value(), &w.value[..], "{mode} at {off}");
                    } else if let Ok(Some(r)) = got {
                        // Anything after the damage that survives must be exactly what was written.
                        assert_eq!(r.value(), &w.value[..], "{mode} at {off}: invented value");
                    }
                }
                assert!(p.key_count() <= written.len());
                let mut it = p.iter_after(0);
                let mut prev = 0;
                while let Some(r) = it.next(&p) {
                    let r = r.unwrap();
                    assert!(r.lsn() > prev);
                    prev = r.lsn();
                }
                // The log accepts writes after recovery, and they survive another restart.
                put(&p, b"after", 9, b"fresh").await;
                p.close().await.unwrap();
                let p = Partition::open(work.path(), 0, small_cfg()).await.unwrap();
                assert_eq!(p.read(b"after", true).unwrap().unwrap().value(), b"fresh", "{mode} at {off}");
                for w in written.iter().filter(|w| w.end <= off) {
                    assert_eq!(p.read(&w.key, true).unwrap().unwrap().value(), &w.value[..]);
                }
                p.close().await.unwrap();
                checked += 1;
            }
        }
        assert_eq!(checked, 2 * (last - first));
    });
}

#[test]
fn corruption_in_a_sealed_segment_is_reported_and_the_rest_serves() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let n = 600u64;
        {
            let p = Partition::open(dir.path(), 0, small_cfg()).await.unwrap();
            for i in 0..n {
                put(&p, format!("k{i}").as_bytes(), 1, &value_for(i, 1, 5000)).await;
            }
            p.close().await.unwrap();
        }
        let segs = seg_files(dir.path());
        assert!(segs.len() >= 3);
        // k10 lives in the first (sealed) segment: flip a byte in its value.
        let victim_off = {
            let p = Partition::open(dir.path(), 0, small_cfg()).await.unwrap();
            let e = p.get(b"k10").unwrap();
            let seg0 = p.read(b"k0", false).unwrap().unwrap().file_off;
            assert!(e.off > seg0);
            p.close().await.unwrap();
            e.off
        };
        let mut b = std::fs::read(&segs[0]).unwrap();
        b[victim_off as usize + 64 + 3 + 100] ^= 0xff;
        std::fs::write(&segs[0], &b).unwrap();
        let scan_copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), scan_copy.path());

        // With hints, the damage is found on read.
        let p = Partition::open(dir.path(), 0, small_cfg()).await.unwrap();
        let tree_before = p.tree_hashes();
        let err = p.read(b"k10", true).err().expect("corrupt read must fail");
        match &err {
            Error::Corrupt { path, offset, .. } => {
                assert_eq!(path, &segs[0]);
                assert_eq!(*offset, victim_off);
            }
            other => panic!("unexpected {other}"),
        }
        assert!(err.to_string().contains("fullsync will repair"));
        let d = p.damage();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].key.as_deref(), Some(&b"k10"[..]));
        assert!(p.get(b"k10").is_none(), "damaged key leaves the index so fullsync sees it missing");
        assert_ne!(p.tree_hashes(), tree_before);
        for i in (0..n).filter(|&i| i != 10) {
            assert_eq!(p.read(format!("k{i}").as_bytes(), true).unwrap().unwrap().value(), &value_for(i, 1, 5000)[..]);
        }
        p.close().await.unwrap();

        // Without hints, the scan finds it at startup.
        for e in std::fs::read_dir(scan_copy.path()).unwrap() {
            let e = e.unwrap();
            if e.path().extension().map(|x| x == "hint").unwrap_or(false) {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
        let p = Partition::open(scan_copy.path(), 0, small_cfg()).await.unwrap();
        let d = p.damage();
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].offset, victim_off);
        assert_eq!(d[0].key.as_deref(), Some(&b"k10"[..]));
        assert!(p.get(b"k10").is_none());
        assert_eq!(p.key_count() as u64, n - 1);
        p.close().await.unwrap();
    });
}

/// A crash while a segment file was being created leaves it empty, or
/// preallocated with its header page never written: such a file holds no
/// record, so opening removes it and everything before it still reads. A
/// header that is present but wrong is still refused.
#[test]
fn an_interrupted_segment_creation_is_removed_and_a_bad_header_refused() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let n = 200u64;
        {
            let p = Partition::open(dir.path(), 0, small_cfg()).await.unwrap();
            for i in 0..n {
                put(&p, format!("k{i}").as_bytes(), 1, &value_for(i, 1, 3000)).await;
            }
            p.close().await.unwrap();
        }
        let before = seg_files(dir.path());
        let empty = dir.path().join("00000000000f0000-0000.seg");
        let zeroed = dir.path().join("00000000000f0001-0000.seg");
        std::fs::write(&empty, b"").unwrap();
        std::fs::write(&zeroed, vec![0u8; 64 << 10]).unwrap();
        let p = Partition::open(dir.path(), 0, small_cfg()).await.unwrap();
        for i in 0..n {
            assert_eq!(p.read(format!("k{i}").as_bytes(), true).unwrap().unwrap().value(), &value_for(i, 1, 3000)[..]);
        }
        put(&p, b"after", 2, b"still writable").await;
        p.close().await.unwrap();
        assert!(!empty.exists() && !zeroed.exists(), "the unfinished files are gone");
        assert!(seg_files(dir.path()).len() >= before.len());

        // A header page with something in it that is not a segment header.
        let junk = dir.path().join("00000000000f0002-0000.seg");
        let mut b = vec![0u8; 64 << 10];
        b[..8].copy_from_slice(b"NOTASEG\0");
        std::fs::write(&junk, b).unwrap();
        let err = Partition::open(dir.path(), 0, small_cfg()).await.err().expect("a bad header is refused");
        let msg = err.to_string();
        assert!(msg.contains("bad magic") && msg.contains("00000000000f0002-0000.seg"), "{msg}");
        assert!(junk.exists(), "a refused file is left for the operator");

        // A zeroed header page with records after it is damage, not an
        // unfinished creation: refused, and the file is kept.
        std::fs::remove_file(&junk).unwrap();
        let damaged = dir.path().join("00000000000f0003-0000.seg");
        let mut b = vec![0u8; 64 << 10];
        b[8192] = 0x5a;
        std::fs::write(&damaged, b).unwrap();
        let err = Partition::open(dir.path(), 0, small_cfg()).await.err().expect("a zeroed header before data is refused");
        assert!(err.to_string().contains("bad magic"), "{err}");
        assert!(damaged.exists());
    });
}

/// Waits until the partition's next segment file is there with its header
/// written (made ahead of the roll in the background); returns its path.
async fn wait_prepared(dir: &std::path::Path, segments: u64, capacity: u64) -> std::path::PathBuf {
    let t = std::time::Instant::now();
    loop {
        let files = seg_files(dir);
        if files.len() as u64 == segments + 1 {
            let last = files.last().unwrap().clone();
            let len = std::fs::metadata(&last).unwrap().len();
            let head = std::fs::read(&last).map(|b| b.len() >= 8 && b[..8].iter().any(|&x| x != 0)).unwrap_or(false);
            if len == capacity && head {
                return last;
            }
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(10), "no segment was prepared ahead of the roll: {files:?}");
        glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// A partition that fills segments gets its next one made ahead of the roll
/// (created, wholly preallocated, header synced), and the roll continues in
/// it. A crash while one waits leaves a file with a header and no record:
/// opening removes it, the segment before it is the tail again, its torn
/// last record is cut, and everything before reads back. Closing removes an
/// unused prepared segment.
#[test]
fn a_segment_made_ahead_of_its_roll_is_used_and_a_crash_with_one_waiting_loses_nothing() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let crash = tempfile::tempdir().unwrap();
        let cfg = small_cfg();
        let cap = cfg.segment_bytes;
        let value = |i: u64| value_for(i, 1, 3000);
        let p = Partition::open(dir.path(), 0, cfg.clone()).await.unwrap();
        let mut i = 0u64;
        let mut lsn = 0;
        // About three and a half segments.
        while i < 1200 {
            lsn = put(&p, format!("k{i}").as_bytes(), 1, &value(i)).await;
            i += 1;
        }
        p.wait_durable(lsn).await.unwrap();
        let st = p.stats();
        assert!(st.segments >= 4, "{st:?}");
        assert_eq!(st.rolls_prepared, st.segments - 1, "every roll used a prepared segment: {st:?}");

        // Fill the active segment past half: its successor is made.
        let prepared = loop {
            lsn = put(&p, format!("k{i}").as_bytes(), 1, &value(i)).await;
            i += 1;
            let files = seg_files(dir.path());
            if files.len() as u64 > p.stats().segments {
                break wait_prepared(dir.path(), p.stats().segments, cap).await;
            }
            assert!(i < 2000, "no segment prepared while filling");
        };
        // A few more records in the active segment, then the crash (a copy
        // of the directory while the partition runs).
        for _ in 0..3 {
            lsn = put(&p, format!("k{i}").as_bytes(), 1, &value(i)).await;
            i += 1;
        }
        p.wait_written(lsn).await.unwrap();
        copy_dir(dir.path(), crash.path());
        let last_key = format!("k{}", i - 1);
        let torn_at = {
            let e = p.get(last_key.as_bytes()).unwrap();
            e.off + e.len as u64 / 2
        };
        let n = i;

        // The live partition rolls into the prepared segment, and closing
        // removes the next prepared one.
        let segs_before = p.stats().segments;
        let prepared_before = p.stats().rolls_prepared;
        while p.stats().segments == segs_before {
            put(&p, format!("k{i}").as_bytes(), 1, &value(i)).await;
            i += 1;
        }
        assert!(seg_files(dir.path()).contains(&prepared));
        assert_eq!(p.stats().rolls_prepared, prepared_before + 1, "the roll continued in the prepared segment");
        loop {
            lsn = put(&p, format!("k{i}").as_bytes(), 1, &value(i)).await;
            i += 1;
            if seg_files(dir.path()).len() as u64 > p.stats().segments {
                wait_prepared(dir.path(), p.stats().segments, cap).await;
                break;
            }
        }
        p.wait_durable(lsn).await.unwrap();
        let segments = p.stats().segments;
        p.close().await.unwrap();
        assert_eq!(seg_files(dir.path()).len() as u64, segments, "close removed the unused prepared segment");
        let p = Partition::open(dir.path(), 0, cfg.clone()).await.unwrap();
        assert_eq!(p.key_count() as u64, i);
        p.close().await.unwrap();

        // The crash copy: tear the active segment's last record.
        let files = seg_files(crash.path());
        let prepared_copy = crash.path().join(prepared.file_name().unwrap());
        assert_eq!(files.last(), Some(&prepared_copy), "the copy holds the prepared segment");
        let active = &files[files.len() - 2];
        std::fs::OpenOptions::new().write(true).open(active).unwrap().set_len(torn_at).unwrap();
        let p = Partition::open(crash.path(), 0, cfg.clone()).await.unwrap();
        assert!(p.damage().is_empty(), "a torn tail is not damage: {:?}", p.damage());
        // (every start continues in a fresh segment: the prepared file's name
        // is taken again, by a file made with the first preallocation step)
        assert_eq!(std::fs::metadata(&prepared_copy).unwrap().len(), cfg.prealloc_step_bytes, "the header-only segment was removed");
        assert_eq!(seg_files(crash.path()).len() as u64, p.stats().segments);
        for k in 0..n - 1 {
            let r = p.read(format!("k{k}").as_bytes(), true).unwrap().unwrap_or_else(|| panic!("lost k{k}"));
            assert_eq!(r.value(), &value(k)[..], "k{k}");
        }
        assert!(p.get(last_key.as_bytes()).is_none(), "the torn record is cut, not invented");
        assert_eq!(p.key_count() as u64, n - 1);
        // Writable, through more rolls, and it survives another restart.
        let mut k = n;
        while k < n + 700 {
            lsn = put(&p, format!("k{k}").as_bytes(), 1, &value(k)).await;
            k += 1;
        }
        p.wait_durable(lsn).await.unwrap();
        p.close().await.unwrap();
        let p = Partition::open(crash.path(), 0, cfg).await.unwrap();
        assert!(p.damage().is_empty());
        assert_eq!(p.key_count() as u64, n - 1 + 700);
        for k in (0..n - 1).chain(n..n + 700) {
            assert_eq!(p.read(format!("k{k}").as_bytes(), true).unwrap().unwrap().value(), &value(k)[..], "k{k}");
        }
        p.close().await.unwrap();
    });
}
