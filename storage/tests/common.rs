#![allow(dead_code)]
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use storage::{AppendOutcome, Kind, Partition, PartitionConfig, PutMode, SyncMode, Version, WriteRecord, FLAG_REPLICATE, FLAG_TREE};

pub fn run<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .spawn(f)
        .expect("executor")
        .join()
        .expect("executor thread");
}

pub fn small_cfg() -> PartitionConfig {
    PartitionConfig {
        segment_bytes: 1 << 20,
        write_buffer_bytes: 64 << 10,
        prealloc_step_bytes: 64 << 10,
        tree_segments: 64,
        sync: SyncMode::Interval(Duration::from_millis(20)),
        tombstone_grace_ms: 0,
        ..PartitionConfig::default()
    }
}

pub fn ver(n: u64) -> Version {
    Version { hlc: n << 16, cluster: 1 }
}

/// Deterministic value for (key index, version).
pub fn value_for(i: u64, v: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ v.wrapping_mul(0xC2B2_AE3D_27D4_EB4F) ^ 0x1234_5678;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub async fn put(p: &Partition, key: &[u8], v: u64, value: &[u8]) -> u64 {
    let r = WriteRecord {
        kind: Kind::Block,
        flags: FLAG_REPLICATE | FLAG_TREE,
        key,
        meta: b"",
        value: &[value],
        version: ver(v),
        vhash: xxhash_rust::xxh3::xxh3_64(value),
    };
    match p.append(&r, PutMode::Always).await.expect("append") {
        AppendOutcome::Applied { lsn, .. } => lsn,
        other => panic!("unexpected {other:?}"),
    }
}

pub async fn tombstone(p: &Partition, key: &[u8], v: u64) -> u64 {
    let r = WriteRecord { kind: Kind::Tombstone, flags: FLAG_REPLICATE | FLAG_TREE, key, meta: b"", value: &[], version: ver(v), vhash: 0 };
    p.append(&r, PutMode::Always).await.unwrap().lsn().unwrap()
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}
