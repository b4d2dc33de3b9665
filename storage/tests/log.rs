//! Partition log: appends, reads, LSN iteration, cursors, restarts, limits.
mod common;
use common::*;
use storage::*;

#[test]
fn append_read_iterate_and_restart_from_hints_and_scan() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p0");
        let n = 3000u64;
        {
            let p = Partition::open(&path, 0, small_cfg()).await.unwrap();
            for i in 0..n {
                let v = value_for(i, 1, 100 + (i as usize * 37) % 3000);
                put(&p, format!("key-{i}").as_bytes(), 1, &v).await;
            }
            // overwrite a third
            for i in (0..n).step_by(3) {
                let v = value_for(i, 2, 500);
                put(&p, format!("key-{i}").as_bytes(), 2, &v).await;
            }
            let st = p.stats();
            assert!(st.segments > 3, "test must span several segments, got {}", st.segments);
            p.close().await.unwrap();
        }
        for round in 0..2 {
            if round == 1 {
                // Second restart without hints: full scan must give the same result.
                for e in std::fs::read_dir(&path).unwrap() {
                    let e = e.unwrap();
                    if e.path().extension().map(|x| x == "hint").unwrap_or(false) {
                        std::fs::remove_file(e.path()).unwrap();
                    }
                }
            }
            let hints = std::fs::read_dir(&path).unwrap().filter(|e| e.as_ref().unwrap().path().extension().map(|x| x == "hint").unwrap_or(false)).count() as u64;
            let p = Partition::open(&path, 0, small_cfg()).await.unwrap();
            assert_eq!(p.key_count() as u64, n);
            // Every hint written at a seal is usable: its segment loads from it.
            assert_eq!(p.stats().segments_from_hints, hints, "round {round}");
            assert!(round == 1 || hints >= 3, "round 0 must have the sealed segments' hints, found {hints}");
            for i in 0..n {
                let want = if i % 3 == 0 { value_for(i, 2, 500) } else { value_for(i, 1, 100 + (i as usize * 37) % 3000) };
                let r = p.read(format!("key-{i}").as_bytes(), true).unwrap().unwrap();
                assert_eq!(r.value(), &want[..], "key-{i} round {round}");
                assert_eq!(r.header.version, ver(if i % 3 == 0 { 2 } else { 1 }));
            }
            // LSN iteration: strictly increasing, all records (4000 puts).
            let mut it = p.iter_after(0);
            let mut last = 0;
            let mut count = 0;
            while let Some(r) = it.next(&p) {
                let r = r.unwrap();
                assert!(r.lsn() > last);
                last = r.lsn();
                count += 1;
            }
            assert_eq!(count, n + n.div_ceil(3));
            assert!(p.damage().is_empty());
            p.close().await.unwrap();
        }
    });
}

#[test]
fn iteration_resumes_from_any_lsn_and_sees_new_appends() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let p = Partition::open(dir.path(), 1, small_cfg()).await.unwrap();
        let mut lsns = Vec::new();
        for i in 0..500u64 {
            lsns.push(put(&p, format!("k{i}").as_bytes(), 1, &value_for(i, 1, 3000)).await);
        }
        for &start in &[0, lsns[0], lsns[100], lsns[499]] {
            let mut it = p.iter_after(start);
            let got: Vec<u64> = std::iter::from_fn(|| it.next(&p)).map(|r| r.unwrap().lsn()).collect();
            let want: Vec<u64> = lsns.iter().copied().filter(|&l| l > start).collect();
            assert_eq!(got, want);
        }
        // An iterator that caught up sees later appends.
        let mut it = p.iter_after(0);
        while it.next(&p).is_some() {}
        let l = put(&p, b"late", 1, b"x").await;
        assert_eq!(it.next(&p).unwrap().unwrap().lsn(), l);
        assert!(it.next(&p).is_none());
        p.close().await.unwrap();
    });
}

#[test]
fn cursors_are_durable_and_bounded_by_head() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        {
            let p = Partition::open(dir.path(), 2, small_cfg()).await.unwrap();
            let mut lsns = Vec::new();
            for i in 0..100u64 {
                lsns.push(put(&p, format!("k{i}").as_bytes(), 1, &[7u8; 4000]).await);
            }
            p.register_cursor("sink-a", 10).await.unwrap();
            p.register_cursor("sink-b", 0).await.unwrap();
            p.advance_cursor("sink-a", lsns[49]).unwrap();
            assert!(p.advance_cursor("sink-a", 10_000).is_err(), "ack past the head must fail");
            assert!(p.advance_cursor("nobody", 1).is_err());
            assert!(p.register_cursor("x", 10_000).await.is_err());
            // 100 records of ~4 KiB: a cursor at 50 retains about half.
            let (all, half) = (p.bytes_after(0), p.bytes_after(lsns[49]));
            // (accurate to one 64 KiB mark interval)
            assert!(all >= 100 * 4000 && half >= all / 2 && half <= all / 2 + (68 << 10), "all {all} half {half}");
            p.close().await.unwrap();
        }
        let p = Partition::open(dir.path(), 2, small_cfg()).await.unwrap();
        let a = p.cursor("sink-a").unwrap();
        assert!(a > 50 && a < p.head_lsn());
        assert_eq!(p.cursor("sink-b"), Some(0));
        assert_eq!(p.min_cursor(), Some(0));
        assert!(p.drop_cursor("sink-b").await.unwrap());
        p.close().await.unwrap();
        let p = Partition::open(dir.path(), 2, small_cfg()).await.unwrap();
        assert_eq!(p.cursors(), vec![("sink-a".to_string(), a)]);
        p.close().await.unwrap();
    });
}

#[test]
fn if_newer_is_last_writer_wins_and_idempotent() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let p = Partition::open(dir.path(), 3, small_cfg()).await.unwrap();
        let rec = |v: u64, val: &'static [u8]| (v, val);
        for (v, val) in [rec(5, b"five"), rec(3, b"three"), rec(5, b"five-again"), rec(7, b"seven"), rec(6, b"six")] {
            let vals = [val];
            let r = WriteRecord { kind: Kind::Manifest, flags: FLAG_TREE, key: b"obj", meta: b"", value: &vals, version: ver(v), vhash: v };
            p.append(&r, PutMode::IfNewer).await.unwrap();
        }
        assert_eq!(p.read(b"obj", true).unwrap().unwrap().value(), b"seven");
        assert_eq!(p.stats().appends, 2);
        p.close().await.unwrap();
    });
}

#[test]
fn if_unchanged_applies_only_over_the_record_that_was_read() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let p = Partition::open(dir.path(), 4, small_cfg()).await.unwrap();
        let put_mode = |v: u64, val: &'static [u8], mode: PutMode| {
            let p = &p;
            async move {
                let vals = [val];
                let r = WriteRecord { kind: Kind::Manifest, flags: FLAG_TREE, key: b"obj", meta: b"", value: &vals, version: ver(v), vhash: v };
                p.append(&r, mode).await.unwrap()
            }
        };
        // Absent key: `at: None` holds once, then no longer.
        assert!(put_mode(1, b"one", PutMode::IfUnchanged { at: None }).await.lsn().is_some());
        assert!(put_mode(2, b"two", PutMode::IfUnchanged { at: None }).await.lsn().is_none());
        let seen = p.get(b"obj").unwrap();
        let at = Some((seen.seg, seen.off));
        // Another write comes in between: the condition on what was read fails.
        put_mode(3, b"three", PutMode::IfNewer).await;
        match put_mode(4, b"four", PutMode::IfUnchanged { at }).await {
            AppendOutcome::Stale { current: Some(c), .. } => assert_ne!((c.seg, c.off), (seen.seg, seen.off)),
            other => panic!("expected Stale over the newer record, got {other:?}"),
        }
        // Over the record read: applies when newer, not when older.
        let cur = p.get(b"obj").unwrap();
        assert!(put_mode(2, b"older", PutMode::IfUnchanged { at: Some((cur.seg, cur.off)) }).await.lsn().is_none());
        assert!(put_mode(5, b"five", PutMode::IfUnchanged { at: Some((cur.seg, cur.off)) }).await.lsn().is_some());
        assert_eq!(p.read(b"obj", true).unwrap().unwrap().value(), b"five");
        p.close().await.unwrap();
    });
}

#[test]
fn limits_and_bad_directories_give_clear_errors() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let p = Partition::open(dir.path(), 4, small_cfg()).await.unwrap();
        let long = vec![b'k'; MAX_KEY_BYTES + 1];
        let r = WriteRecord { kind: Kind::Block, flags: 0, key: &long, meta: b"", value: &[], version: ver(1), vhash: 0 };
        let e = p.append(&r, PutMode::Always).await.unwrap_err();
        assert!(matches!(e, Error::KeyTooLong { .. }), "{e}");
        assert!(e.to_string().contains("exceeds the limit"));
        let big = vec![0u8; 2 << 20];
        let parts = [&big[..]];
        let r = WriteRecord { kind: Kind::Block, flags: 0, key: b"big", meta: b"", value: &parts, version: ver(1), vhash: 0 };
        let e = p.append(&r, PutMode::Always).await.unwrap_err();
        assert!(matches!(e, Error::RecordTooLarge { .. }), "{e}");
        assert!(p.get(b"big").is_none(), "a refused record touches nothing");
        p.close().await.unwrap();

        let bad = PartitionConfig { segment_bytes: 1000, ..small_cfg() };
        let e = Partition::open(&dir.path().join("x"), 0, bad).await.err().unwrap();
        assert!(e.to_string().contains("segment_bytes = 1000"), "{e}");
    });
    // Store directory: lock and format version.
    let dir = tempfile::tempdir().unwrap();
    let d = StoreDir::open(dir.path()).unwrap();
    let e = StoreDir::open(dir.path()).err().unwrap();
    assert!(matches!(e, Error::Locked { .. }), "{e}");
    assert!(e.to_string().contains(&std::process::id().to_string()));
    drop(d);
    std::fs::write(dir.path().join(FORMAT_FILE), "dataplane-storage 99\n").unwrap();
    let e = StoreDir::open(dir.path()).err().unwrap();
    assert!(matches!(e, Error::NewerFormat { found: 99, .. }), "{e}");
    // A segment written by a newer format is refused too, and left alone.
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        {
            let p = Partition::open(dir.path(), 5, small_cfg()).await.unwrap();
            put(&p, b"a", 1, b"1").await;
            p.close().await.unwrap();
        }
        let seg = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().map(|x| x == "seg").unwrap_or(false))
            .min()
            .unwrap();
        let mut b = std::fs::read(&seg).unwrap();
        b[8..12].copy_from_slice(&7u32.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..64]);
        b[64..68].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&seg, &b).unwrap();
        let e = Partition::open(dir.path(), 5, small_cfg()).await.err().unwrap();
        assert!(matches!(e, Error::NewerFormat { found: 7, .. }), "{e}");
        assert_eq!(std::fs::read(&seg).unwrap(), b);
    });
}

#[test]
fn group_commit_shares_fdatasyncs() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let cfg = PartitionConfig { sync: SyncMode::Always, ..small_cfg() };
        let p = Partition::open(dir.path(), 6, cfg).await.unwrap();
        let before = p.stats().fdatasyncs;
        let mut tasks = Vec::new();
        for t in 0..32u64 {
            let p = p.clone();
            tasks.push(glommio::spawn_local(async move {
                for i in 0..20u64 {
                    let lsn = put(&p, format!("t{t}-{i}").as_bytes(), 1, &value_for(t, i, 200)).await;
                    p.wait_durable(lsn).await.unwrap();
                    assert!(p.synced_lsn() >= lsn);
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        let syncs = p.stats().fdatasyncs - before;
        assert!(syncs < 640 / 4, "640 durable appends took {syncs} fdatasyncs; group commit should share them");
        p.close().await.unwrap();
    });
}

#[test]
fn an_append_dropped_while_it_rolls_the_segment_leaves_the_partition_writable() {
    // A request whose client goes away drops its append at whatever await it
    // sits; when that append was rolling to a new segment, later appends must
    // not wait for a roll that nobody finishes.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(move || async move {
        let cfg = PartitionConfig { prealloc_step_bytes: 1 << 20, ..small_cfg() };
        let p = Partition::open(&d, 0, cfg).await.unwrap();
        let value = value_for(0, 1, 60 << 10);
        let mut written = Vec::new();
        let mut dropped_in_roll = 0;
        let mut i = 0u64;
        while dropped_in_roll < 3 {
            assert!(i < 1000, "no append ever had to roll");
            let key = format!("k{i:05}").into_bytes();
            let segs = p.stats().segments;
            let r = WriteRecord { kind: Kind::Block, flags: FLAG_TREE, key: &key, meta: b"", value: &[&value], version: ver(1), vhash: 1 };
            match futures_lite::future::poll_once(p.append(&r, PutMode::Always)).await {
                Some(out) => {
                    out.unwrap();
                    written.push(key);
                }
                // Pending on the first poll: the segment is full and the
                // append is creating the next one. Drop it there.
                None => {
                    dropped_in_roll += 1;
                    let later = glommio::timer::timeout(std::time::Duration::from_secs(10), async {
                        Ok(put(&p, &key, 2, &value).await)
                    })
                    .await;
                    assert!(later.is_ok(), "an append after a dropped roll still waits after 10 s");
                    assert!(p.stats().segments > segs, "the dropped roll was finished");
                    written.push(key);
                }
            }
            i += 1;
        }
        let last = put(&p, b"last", 1, b"x").await;
        p.wait_durable(last).await.unwrap();
        for k in &written {
            assert_eq!(p.read(k, true).unwrap().expect("present").value(), &value[..]);
        }
        p.close().await.unwrap();
        let p = Partition::open(&d, 0, small_cfg()).await.unwrap();
        for k in &written {
            assert_eq!(p.read(k, true).unwrap().expect("present after a restart").value(), &value[..]);
        }
        p.close().await.unwrap();
    });
}

#[test]
fn cursor_moves_are_written_in_the_background_at_most_once_per_interval() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let p = Partition::open(dir.path(), 4, small_cfg()).await.unwrap();
        put(&p, b"first", 1, b"v").await;
        p.register_cursor("sink", 0).await.unwrap();
        let registered = p.stats().cursor_writes;
        assert_eq!(registered, 1, "registering a cursor writes the file at once");
        // Realtime acks: many records, a cursor move after each, for ~1.6 s.
        let t = std::time::Instant::now();
        let mut i = 0u64;
        let mut last = 0;
        while t.elapsed() < std::time::Duration::from_millis(1600) {
            last = put(&p, format!("k{i}").as_bytes(), 1, &[3u8; 100]).await;
            p.advance_cursor("sink", last).unwrap();
            i += 1;
            glommio::timer::sleep(std::time::Duration::from_millis(2)).await;
        }
        assert!(i > 100, "only {i} moves");
        // Let a flusher tick write what is left of the interval.
        glommio::timer::sleep(std::time::Duration::from_millis(CURSOR_PERSIST_INTERVAL_MS + 300)).await;
        let writes = p.stats().cursor_writes - registered;
        assert!((1..=3).contains(&writes), "{i} cursor moves in ~1.6 s gave {writes} cursor file writes; want 1 to 3");
        // Without a close, the file on disk already holds a recent position.
        let p2 = dir.path().join(CURSOR_FILE);
        let on_disk = std::fs::read(&p2).unwrap();
        assert!(on_disk.windows(4).any(|w| w == b"sink"), "cursor file names the cursor");
        let lsn_on_disk = u64::from_le_bytes(on_disk[on_disk.len() - 12..on_disk.len() - 4].try_into().unwrap());
        assert_eq!(lsn_on_disk, last, "the background write holds the last move");
        p.close().await.unwrap();
        let p = Partition::open(dir.path(), 4, small_cfg()).await.unwrap();
        assert_eq!(p.cursor("sink"), Some(last));
        p.close().await.unwrap();
    });
}

/// `next_read` (spans read from disk through a ColdReader) hands out exactly
/// what `next_upto` (the mapping) does, from sealed segments, the active one
/// and the write buffers; with `pass_over(Block)` it skips the blocks and
/// reads little more than the records it hands out.
#[test]
fn reading_ahead_from_disk_matches_the_mapping_and_passes_over_blocks() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let cfg = PartitionConfig { segment_bytes: 4 << 20, ..small_cfg() };
        let small = |p: Partition, i: u64| async move {
            let key = format!("m{i}");
            let v = value_for(i, 7, 300 + (i as usize % 5) * 200);
            let r = WriteRecord { kind: Kind::Manifest, flags: FLAG_REPLICATE, key: key.as_bytes(), meta: b"", value: &[&v], version: ver(1), vhash: 1 };
            p.append(&r, PutMode::Always).await.unwrap();
        };
        {
            let p = Partition::open(dir.path(), 0, cfg.clone()).await.unwrap();
            for i in 0..120u64 {
                // A block of 200 KiB, then a few small records.
                put(&p, format!("b{i}").as_bytes(), 1, &value_for(i, 1, 200 << 10)).await;
                for j in 0..3 {
                    small(p.clone(), i * 3 + j).await;
                }
            }
            assert!(p.stats().segments >= 4, "the log must span several segments");
            p.close().await.unwrap();
        }
        let p = Partition::open(dir.path(), 0, cfg).await.unwrap();
        // More records after the restart: in write buffers, or written and
        // released from them, in the active segment.
        for i in 360..400u64 {
            small(p.clone(), i).await;
        }
        let sig = |r: &RecordView| (r.lsn(), r.header.kind, r.key().to_vec(), xxhash_rust::xxh3::xxh3_64(r.bytes()));
        let mut want = Vec::new();
        let mut it = p.iter_after(0);
        while let Some(r) = it.next_upto(&p, u64::MAX) {
            want.push(sig(&r.unwrap()));
        }
        assert_eq!(want.len(), 120 + 400);
        let total_bytes: u64 = p.stats().segments as u64 * (4 << 20);

        let cold = ColdReader::new();
        let mut got = Vec::new();
        let mut it = p.iter_after(0);
        while let Some(r) = it.next_read(&p, u64::MAX, &cold).await {
            got.push(sig(&r.unwrap()));
        }
        assert_eq!(got, want, "next_read and next_upto disagree");
        assert_eq!(it.mapped_reads(), 0, "next_read read records through the mapping");
        let (reads, bytes) = cold.read_counts();
        assert!(reads > 0, "nothing was read from disk");

        let cold = ColdReader::new();
        let mut got = Vec::new();
        let mut it = p.iter_after(0);
        it.pass_over(Kind::Block);
        while let Some(r) = it.next_read(&p, u64::MAX, &cold).await {
            got.push(sig(&r.unwrap()));
        }
        let no_blocks: Vec<_> = want.iter().filter(|w| w.1 != Kind::Block).cloned().collect();
        assert_eq!(got, no_blocks, "pass_over(Block) must hand out everything else, in order");
        assert_eq!(it.mapped_reads(), 0, "passing over blocks read records through the mapping");
        let (_, passed_bytes) = cold.read_counts();
        let blocks_bytes = 120u64 * (200 << 10);
        println!("read ahead: {reads} reads, {bytes} bytes; passing over blocks: {passed_bytes} bytes (blocks: {blocks_bytes})");
        assert!(passed_bytes < blocks_bytes / 2, "passing over blocks read {passed_bytes} bytes (all reads without: {bytes}; blocks hold {blocks_bytes}; log {total_bytes})");

        // Resuming from the middle gives the tail.
        let mid = want[want.len() / 2].0;
        let mut it = p.iter_after(mid);
        let mut tail = Vec::new();
        while let Some(r) = it.next_read(&p, u64::MAX, &cold).await {
            tail.push(sig(&r.unwrap()));
        }
        assert_eq!(tail, want[want.len() / 2 + 1..].to_vec());
        p.close().await.unwrap();
    });
}
