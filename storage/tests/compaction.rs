//! Compaction: space reclaimed, reads and LSN iteration correct during and
//! after it, cursors honoured, tombstones kept until safe.
mod common;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use common::*;
use storage::*;

#[test]
fn compaction_reclaims_space_and_keeps_the_latest_versions() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let p = Partition::open(dir.path(), 0, small_cfg()).await.unwrap();
        let keys = 50u64;
        for round in 1..=10u64 {
            for i in 0..keys {
                put(&p, format!("k{i}").as_bytes(), round, &value_for(i, round, 8000)).await;
            }
        }
        let before = p.stats();
        let tree = p.tree_hashes();
        let mut total = CompactionStats::default();
        while let Some(s) = p.compact().await.unwrap() {
            total.records_dropped += s.records_dropped;
            total.bytes_in += s.bytes_in;
            total.bytes_out += s.bytes_out;
        }
        let after = p.stats();
        assert!(total.records_dropped > 0);
        assert!(after.log_bytes < before.log_bytes, "{} -> {}", before.log_bytes, after.log_bytes);
        assert_eq!(p.tree_hashes(), tree, "compaction does not change content");
        for i in 0..keys {
            assert_eq!(p.read(format!("k{i}").as_bytes(), true).unwrap().unwrap().value(), &value_for(i, 10, 8000)[..]);
        }
        p.close().await.unwrap();
        let p = Partition::open(dir.path(), 0, small_cfg()).await.unwrap();
        assert_eq!(p.tree_hashes(), tree);
        for i in 0..keys {
            assert_eq!(p.read(format!("k{i}").as_bytes(), true).unwrap().unwrap().value(), &value_for(i, 10, 8000)[..]);
        }
        p.close().await.unwrap();
    });
}

#[test]
fn cursors_keep_what_they_need_and_tombstones_wait_for_them() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let p = Partition::open(dir.path(), 0, small_cfg()).await.unwrap();
        for i in 0..100u64 {
            put(&p, format!("k{i}").as_bytes(), 1, &value_for(i, 1, 6000)).await;
        }
        let c = p.head_lsn();
        p.register_cursor("sink", c).await.unwrap();
        // After the cursor: overwrite some keys twice, delete others.
        let mut expect: BTreeMap<Vec<u8>, Option<u64>> = BTreeMap::new();
        for i in 0..30u64 {
            put(&p, format!("k{i}").as_bytes(), 2, &value_for(i, 2, 6000)).await;
            put(&p, format!("k{i}").as_bytes(), 3, &value_for(i, 3, 6000)).await;
            expect.insert(format!("k{i}").into_bytes(), Some(3));
        }
        for i in 30..60u64 {
            tombstone(&p, format!("k{i}").as_bytes(), 4).await;
            expect.insert(format!("k{i}").into_bytes(), None);
        }
        // Filler so the records above end up in sealed segments.
        for i in 0..200u64 {
            put(&p, format!("filler{}", i % 20).as_bytes(), 5 + i, &value_for(i, 5, 6000)).await;
        }
        // (a segment counts as sealed once its seal record is synced)
        p.wait_durable(p.head_lsn()).await.unwrap();
        let stats = p.compact_all().await.unwrap();
        assert!(!stats.is_empty());
        assert_eq!(stats.iter().map(|s| s.tombstones_dropped).sum::<u64>(), 0, "the cursor has not passed the tombstones");
        // The cursor still sees, for each key changed after it, its latest record.
        let mut it = p.iter_after(c);
        let mut seen: BTreeMap<Vec<u8>, Option<u64>> = BTreeMap::new();
        while let Some(r) = it.next(&p) {
            let r = r.unwrap();
            if r.key().starts_with(b"filler") {
                continue;
            }
            let v = (r.header.kind != Kind::Tombstone).then(|| r.header.version.hlc >> 16);
            if let Some(Some(ver)) = v.map(Some) {
                assert_eq!(r.value(), &value_for(r.key()[1..].iter().fold(0, |a, &d| a * 10 + (d - b'0') as u64), ver, 6000)[..]);
            }
            seen.insert(r.key().to_vec(), v);
        }
        assert_eq!(seen, expect);
        for i in 30..60u64 {
            assert!(p.get(format!("k{i}").as_bytes()).unwrap().is_tombstone());
        }
        // Once the cursor passes them (grace is 0 here), tombstones go.
        p.advance_cursor("sink", p.head_lsn()).unwrap();
        let stats = p.compact_all().await.unwrap();
        assert_eq!(stats.iter().map(|s| s.tombstones_dropped).sum::<u64>(), 30);
        for i in 30..60u64 {
            assert!(p.get(format!("k{i}").as_bytes()).is_none());
        }
        p.close().await.unwrap();
        // And they do not come back after a restart.
        let p = Partition::open(dir.path(), 0, small_cfg()).await.unwrap();
        for i in 30..60u64 {
            assert!(p.get(format!("k{i}").as_bytes()).is_none(), "k{i} resurrected");
        }
        for i in 0..30u64 {
            assert_eq!(p.read(format!("k{i}").as_bytes(), true).unwrap().unwrap().value(), &value_for(i, 3, 6000)[..]);
        }
        p.close().await.unwrap();
    });
}

#[test]
fn reads_and_iteration_stay_correct_under_concurrent_writes_and_compaction() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let p = Partition::open(dir.path(), 0, small_cfg()).await.unwrap();
        let latest: Rc<RefCell<BTreeMap<u64, u64>>> = Default::default();
        let keys = 64u64;
        let writer = {
            let (p, latest) = (p.clone(), latest.clone());
            glommio::spawn_local(async move {
                for round in 1..=40u64 {
                    for i in 0..keys {
                        put(&p, format!("k{i}").as_bytes(), round, &value_for(i, round, 3000 + (i as usize % 7) * 500)).await;
                        latest.borrow_mut().insert(i, round);
                        if i % 16 == 0 {
                            glommio::yield_if_needed().await;
                            glommio::executor().yield_task_queue_now().await;
                        }
                    }
                }
            })
        };
        let compactor = {
            let p = p.clone();
            glommio::spawn_local(async move {
                let mut n = 0;
                for _ in 0..200 {
                    if p.compact().await.unwrap().is_some() {
                        n += 1;
                    }
                    glommio::timer::sleep(std::time::Duration::from_millis(2)).await;
                }
                n
            })
        };
        let reader = {
            let (p, latest) = (p.clone(), latest.clone());
            glommio::spawn_local(async move {
                let mut it = p.iter_after(0);
                let mut last = 0;
                let mut iterated = 0u64;
                for step in 0..3000u64 {
                    let i = step % keys;
                    let want = latest.borrow().get(&i).copied();
                    if let Some(v) = want {
                        let r = p.read(format!("k{i}").as_bytes(), true).unwrap().unwrap();
                        assert_eq!(r.header.version, ver(v));
                        assert_eq!(r.value(), &value_for(i, v, 3000 + (i as usize % 7) * 500)[..]);
                    }
                    for _ in 0..4 {
                        match it.next(&p) {
                            Some(r) => {
                                let r = r.unwrap();
                                assert!(r.lsn() > last, "lsn order broken: {} after {last}", r.lsn());
                                last = r.lsn();
                                iterated += 1;
                            }
                            None => break,
                        }
                    }
                    glommio::executor().yield_task_queue_now().await;
                }
                iterated
            })
        };
        writer.await;
        let compactions = compactor.await;
        let iterated = reader.await;
        assert!(compactions > 0, "no compaction ran");
        assert!(iterated > 0);
        for i in 0..keys {
            let r = p.read(format!("k{i}").as_bytes(), true).unwrap().unwrap();
            assert_eq!(r.header.version, ver(40));
        }
        // A full iteration after everything: strictly increasing and it ends
        // with the latest version of every key.
        let mut it = p.iter_after(0);
        let mut last = 0;
        let mut final_versions = BTreeMap::new();
        while let Some(r) = it.next(&p) {
            let r = r.unwrap();
            assert!(r.lsn() > last);
            last = r.lsn();
            final_versions.insert(r.key().to_vec(), r.header.version);
        }
        assert_eq!(final_versions.len() as u64, keys);
        assert!(final_versions.values().all(|v| *v == ver(40)));
        p.close().await.unwrap();
    });
}

#[test]
fn hash_tree_is_order_independent_and_survives_restarts() {
    run(|| async {
        let a_dir = tempfile::tempdir().unwrap();
        let b_dir = tempfile::tempdir().unwrap();
        let a = Partition::open(a_dir.path(), 0, small_cfg()).await.unwrap();
        let b = Partition::open(b_dir.path(), 0, small_cfg()).await.unwrap();
        for i in 0..300u64 {
            put(&a, format!("k{i}").as_bytes(), 1, &value_for(i, 1, 100)).await;
        }
        for i in (0..300u64).rev() {
            put(&b, format!("k{i}").as_bytes(), 1, &value_for(i, 1, 100)).await;
        }
        assert_eq!(a.tree_hashes(), b.tree_hashes());
        tombstone(&a, b"k7", 2).await;
        assert_ne!(a.tree_hashes(), b.tree_hashes());
        let seg = a.tree_segment_of(b"k7");
        let diff: Vec<u32> = (0..a.tree_segments()).filter(|&s| a.tree_hashes()[s as usize] != b.tree_hashes()[s as usize]).collect();
        assert_eq!(diff, vec![seg], "exactly the segment holding k7 differs");
        let ea = a.tree_segment_entries(seg);
        let eb = b.tree_segment_entries(seg);
        assert_eq!(ea.len(), eb.len());
        let k7a = ea.iter().find(|e| e.key == b"k7").unwrap();
        assert_eq!(k7a.kind, Kind::Tombstone);
        tombstone(&b, b"k7", 2).await;
        assert_eq!(a.tree_hashes(), b.tree_hashes());
        let tree = a.tree_hashes();
        a.close().await.unwrap();
        b.close().await.unwrap();
        let a = Partition::open(a_dir.path(), 0, small_cfg()).await.unwrap();
        assert_eq!(a.tree_hashes(), tree);
        a.close().await.unwrap();
    });
}

/// `is_current` answers without the index for segments none of whose
/// records went stale; check it against the index under overwrites,
/// tombstones, expunges, compactions and restarts (from hints and scans).
#[test]
fn is_current_agrees_with_the_index_through_overwrites_expunges_compactions_and_restarts() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let check = |p: &Partition, what: &str| {
            let mut it = p.iter_after(0);
            let (mut current, mut stale) = (0, 0);
            while let Some(r) = it.next(p) {
                let r = r.unwrap();
                let want = match r.header.kind {
                    Kind::Expunge => false,
                    _ => p.get(r.key()).map(|e| e.seg == r.seg_id() && e.off == r.file_off).unwrap_or(false),
                };
                assert_eq!(p.is_current(&r), want, "{what}: record at lsn {} ({:?}, key {:?})", r.lsn(), r.header.kind, String::from_utf8_lossy(r.key()));
                if want {
                    current += 1;
                } else {
                    stale += 1;
                }
            }
            (current, stale)
        };
        let expunge = |p: Partition, key: Vec<u8>, v: u64| async move {
            let r = WriteRecord { kind: Kind::Expunge, flags: 0, key: &key, meta: b"", value: &[], version: ver(v), vhash: 0 };
            p.append(&r, PutMode::Always).await.unwrap();
        };
        {
            let p = Partition::open(dir.path(), 0, small_cfg()).await.unwrap();
            // Segments of fresh keys only: every record current.
            for i in 0..600u64 {
                put(&p, format!("k{i}").as_bytes(), 1, &value_for(i, 1, 2000)).await;
            }
            let (cur, stale) = check(&p, "fresh keys");
            assert_eq!((cur, stale), (600, 0));
            // Overwrites of early keys land in later segments; tombstones
            // and expunges of others.
            for i in (0..600u64).step_by(5) {
                put(&p, format!("k{i}").as_bytes(), 2, &value_for(i, 2, 1500)).await;
            }
            for i in (1..600u64).step_by(7) {
                tombstone(&p, format!("k{i}").as_bytes(), 3).await;
            }
            for i in (2..600u64).step_by(11) {
                expunge(p.clone(), format!("k{i}").into_bytes(), 4).await;
            }
            let (cur, stale) = check(&p, "after overwrites");
            assert!(cur > 0 && stale > 0, "the workload must leave both kinds ({cur} current, {stale} stale)");
            while p.compact().await.unwrap().is_some() {}
            check(&p, "after compaction");
            for i in (3..600u64).step_by(13) {
                put(&p, format!("k{i}").as_bytes(), 5, &value_for(i, 5, 900)).await;
            }
            check(&p, "after writes over compacted segments");
            p.close().await.unwrap();
        }
        let p = Partition::open(dir.path(), 0, small_cfg()).await.unwrap();
        check(&p, "after a restart from hints");
        p.close().await.unwrap();
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let e = e.unwrap();
            if e.path().extension().map(|x| x == "hint").unwrap_or(false) {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
        let p = Partition::open(dir.path(), 0, small_cfg()).await.unwrap();
        check(&p, "after a restart from a scan");
        p.close().await.unwrap();
    });
}
