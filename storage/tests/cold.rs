//! Records read where they are: in a write buffer, through the mapping, or
//! with an io_uring read when they are on disk and not cached.

mod common;

use std::io::{Seek, SeekFrom, Write};

use common::*;
use storage::{ColdReader, Error, Located, Partition};

#[test]
fn locate_then_read_cold_resident_and_buffered_records() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p0");
        let n = 400u64;
        let len = |i: u64| 3000 + (i as usize * 131) % 20_000;
        {
            let p = Partition::open(&path, 0, small_cfg()).await.unwrap();
            for i in 0..n {
                put(&p, format!("k{i}").as_bytes(), 1, &value_for(i, 1, len(i))).await;
            }
            assert!(p.stats().segments > 3);
            p.close().await.unwrap();
        }
        let p = Partition::open(&path, 0, small_cfg()).await.unwrap();
        let reader = ColdReader::new();
        let mut cold = 0;
        for i in 0..n {
            let key = format!("k{i}");
            let Some(Located::File(region)) = p.locate(key.as_bytes()) else { panic!("{key}: a reopened partition has nothing in its write buffers") };
            let was_resident = region.is_resident();
            let r = reader.read(&region, true).await.unwrap();
            assert_eq!(r.value(), &value_for(i, 1, len(i))[..], "{key}");
            assert_eq!(r.key(), key.as_bytes());
            if !was_resident {
                cold += 1;
            }
            // The mapping reads the same record (and faults its pages in).
            assert_eq!(region.view(true).unwrap().value(), r.value(), "{key} through the mapping");
            assert!(region.is_resident(), "{key} after a read through the mapping");
        }
        assert!(cold > 0, "segments written with O_DIRECT start out of the page cache");
        assert!(reader.open_files() <= storage::MAX_COLD_READ_FILES);
        // A fresh record is still in its write buffer.
        put(&p, b"fresh", 1, b"new value").await;
        match p.locate(b"fresh") {
            Some(Located::Ready(r)) => assert_eq!(r.value(), b"new value"),
            _ => panic!("a record in a write buffer is ready in memory"),
        }
        assert!(p.locate(b"absent").is_none());
        p.close().await.unwrap();
    });
}

#[test]
fn a_cold_read_finds_a_damaged_record() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p0");
        {
            let p = Partition::open(&path, 0, small_cfg()).await.unwrap();
            for i in 0..200u64 {
                put(&p, format!("k{i}").as_bytes(), 1, &value_for(i, 1, 8000)).await;
            }
            p.close().await.unwrap();
        }
        let p = Partition::open(&path, 0, small_cfg()).await.unwrap();
        let Some(Located::File(region)) = p.locate(b"k3") else { panic!("k3 on disk") };
        let (file, off) = {
            let e = p.get(b"k3").unwrap();
            let name = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|x| x.extension().map(|e| e == "seg").unwrap_or(false))
                .min()
                .unwrap();
            (name, e.off)
        };
        let mut f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        f.seek(SeekFrom::Start(off + 4000)).unwrap();
        f.write_all(b"\xff\xfe\xfd").unwrap();
        f.sync_all().unwrap();
        drop(f);
        let reader = ColdReader::new();
        match reader.read(&region, true).await {
            Err(Error::Corrupt { offset, .. }) => assert_eq!(offset, off),
            Err(e) => panic!("wrong error for a damaged record: {e}"),
            Ok(_) => panic!("a damaged record read back as good"),
        }
        // Unverified, the bytes come back as they are on disk.
        assert!(reader.read(&region, false).await.is_ok());
        p.close().await.unwrap();
    });
}
