//! The data model: storage keys, partitioning, manifests, routing metadata.
//!
//! Storage keys start with a one-byte namespace:
//!
//! ```text
//! B bucket                                     bucket record (replicated)
//! M bucket 0x00 key                            manifest or tombstone (replicated, listed)
//! K bucket 0x00 key 0x00 uid[16] index[u32be]  block (replicated)
//! U bucket 0x00 key 0x00 upload_id[16]         multipart upload (local, listed)
//! P bucket 0x00 key 0x00 upload_id[16] part[u32be]   uploaded part (local, listed)
//! I uid[16]                                    upload intent: blocks being written (local, listed)
//! ```
//!
//! Partition of an object: `xxh3_64(bucket ‖ 0x00 ‖ key) % ring_size`; of a
//! block: `xxh3_64(block id)` where the block id is the key without its
//! namespace byte; uploads, parts and intents live on their object's
//! partition; a bucket record on `xxh3_64(bucket) % ring_size`.

use rkyv::{Archive, Deserialize, Serialize};
use storage::{Version, HEADER_BYTES};
use xxhash_rust::xxh3::xxh3_64;

pub const NS_BUCKET: u8 = b'B';
pub const NS_MANIFEST: u8 = b'M';
pub const NS_BLOCK: u8 = b'K';
pub const NS_UPLOAD: u8 = b'U';
pub const NS_PART: u8 = b'P';
pub const NS_INTENT: u8 = b'I';

/// Most clusters a record's routing list may name.
pub const MAX_ROUTED_CLUSTERS: usize = 32;

pub type Uid = [u8; 16];

pub fn random_uid() -> Uid {
    let mut u = [0u8; 16];
    getrandom::getrandom(&mut u).expect("system randomness");
    u
}

pub fn partition_of(hash: u64, ring_size: u32) -> u32 {
    debug_assert!(ring_size.is_power_of_two());
    (hash & (ring_size as u64 - 1)) as u32
}

pub fn bucket_key(bucket: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + bucket.len());
    k.push(NS_BUCKET);
    k.extend_from_slice(bucket.as_bytes());
    k
}

pub fn bucket_partition(bucket: &str, ring: u32) -> u32 {
    partition_of(xxh3_64(bucket.as_bytes()), ring)
}

/// `bucket ‖ 0x00 ‖ key`: the object id that picks the object's partition.
pub fn object_id(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(bucket.len() + 1 + key.len());
    k.extend_from_slice(bucket.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

pub fn object_partition(bucket: &str, key: &str, ring: u32) -> u32 {
    partition_of(xxh3_64(&object_id(bucket, key)), ring)
}

pub fn manifest_key(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + bucket.len() + key.len());
    k.push(NS_MANIFEST);
    k.extend_from_slice(&object_id(bucket, key));
    k
}

/// Prefix of every manifest key of `bucket` whose object key starts with `prefix`.
pub fn manifest_prefix(bucket: &str, prefix: &str) -> Vec<u8> {
    manifest_key(bucket, prefix)
}

pub fn block_key(bucket: &str, key: &str, uid: &Uid, index: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(3 + bucket.len() + key.len() + 20);
    k.push(NS_BLOCK);
    k.extend_from_slice(&object_id(bucket, key));
    k.push(0);
    k.extend_from_slice(uid);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// Partition of a block, from its storage key.
pub fn block_partition(block_key: &[u8], ring: u32) -> u32 {
    partition_of(xxh3_64(&block_key[1..]), ring)
}

pub fn upload_key(bucket: &str, key: &str, upload: &Uid) -> Vec<u8> {
    let mut k = vec![NS_UPLOAD];
    k.extend_from_slice(&object_id(bucket, key));
    k.push(0);
    k.extend_from_slice(upload);
    k
}

pub fn part_prefix(bucket: &str, key: &str, upload: &Uid) -> Vec<u8> {
    let mut k = vec![NS_PART];
    k.extend_from_slice(&object_id(bucket, key));
    k.push(0);
    k.extend_from_slice(upload);
    k
}

pub fn part_key(bucket: &str, key: &str, upload: &Uid, part: u32) -> Vec<u8> {
    let mut k = part_prefix(bucket, key, upload);
    k.extend_from_slice(&part.to_be_bytes());
    k
}

pub fn intent_key(uid: &Uid) -> Vec<u8> {
    let mut k = vec![NS_INTENT];
    k.extend_from_slice(uid);
    k
}

/// Splits `bucket ‖ 0 ‖ key` (a manifest key without its namespace byte).
pub fn split_object_id(id: &[u8]) -> Option<(&str, &str)> {
    let i = id.iter().position(|&b| b == 0)?;
    Some((std::str::from_utf8(&id[..i]).ok()?, std::str::from_utf8(&id[i + 1..]).ok()?))
}

/// Parses a block storage key into (bucket, key, uid, index).
pub fn parse_block_key(k: &[u8]) -> Option<(String, String, Uid, u32)> {
    if k.first() != Some(&NS_BLOCK) || k.len() < 1 + 1 + 1 + 20 {
        return None;
    }
    let tail = &k[k.len() - 20..];
    let uid: Uid = tail[..16].try_into().ok()?;
    let index = u32::from_be_bytes(tail[16..].try_into().ok()?);
    let id = &k[1..k.len() - 21];
    if k[k.len() - 21] != 0 {
        return None;
    }
    let (b, key) = split_object_id(id)?;
    Some((b.to_string(), key.to_string(), uid, index))
}

// ------------------------------------------------------------------ routing

/// Record metadata: the clusters the record has passed through, padded with
/// zeros so that the value starts on a 16-byte boundary (rkyv reads it in
/// place).
///
/// ```text
/// count u8 | count × cluster id u64le | zero padding
/// ```
pub fn encode_meta(routed: &[u64], key_len: usize) -> Vec<u8> {
    assert!(routed.len() <= MAX_ROUTED_CLUSTERS, "routing list over MAX_ROUTED_CLUSTERS");
    let mut m = Vec::with_capacity(1 + routed.len() * 8 + 16);
    m.push(routed.len() as u8);
    for c in routed {
        m.extend_from_slice(&c.to_le_bytes());
    }
    while (HEADER_BYTES + key_len + m.len()) % 16 != 0 {
        m.push(0);
    }
    m
}

/// Cluster ids in a record's metadata (empty for malformed metadata).
pub fn decode_routed(meta: &[u8]) -> Vec<u64> {
    let Some(&n) = meta.first() else { return Vec::new() };
    let n = n as usize;
    if n > MAX_ROUTED_CLUSTERS || meta.len() < 1 + n * 8 {
        return Vec::new();
    }
    (0..n).map(|i| u64::from_le_bytes(meta[1 + i * 8..9 + i * 8].try_into().unwrap())).collect()
}

// ---------------------------------------------------------------- manifests

/// One uploaded piece of an object: a single PUT has one part, a multipart
/// upload one per part. Blocks of a part are `block_size` bytes, the last
/// one shorter.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PartRef {
    pub uid: [u8; 16],
    pub size: u64,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub bucket: String,
    pub key: String,
    pub version_hlc: u64,
    pub version_cluster: u64,
    pub size: u64,
    /// S3 ETag without quotes: MD5 hex, or `md5-of-md5s-N` for multipart.
    pub etag: String,
    pub content_type: String,
    pub user_meta: Vec<(String, String)>,
    /// Flexible checksums given at upload: (header name, base64 value).
    pub checksums: Vec<(String, String)>,
    pub last_modified_ms: u64,
    pub block_size: u32,
    pub parts: Vec<PartRef>,
    /// Content of small objects (then `parts` is empty).
    pub inline: Vec<u8>,
}

/// Prefix of the `Manifest::user_meta` entries that are not user metadata:
/// standard headers and tags stored with the object's version. No
/// `x-amz-meta-` header name can start with it (':' is not a token
/// character in HTTP), so the manifest's encoding did not change for them.
pub const SYS_META_PREFIX: char = ':';
/// Standard headers an object keeps and returns (`:` + header name).
pub const STORED_HEADERS: [&str; 6] = ["cache-control", "content-disposition", "content-encoding", "content-language", "expires", "x-amz-website-redirect-location"];
/// The object's tag set, URL-encoded as in `x-amz-tagging` (`k1=v1&k2=v2`).
pub const SYS_TAGGING: &str = ":tagging";
/// A multipart object's part checksums (base64, comma-separated, in part
/// order), when its parts had them; the algorithm is the one of the
/// object's composite checksum in `Manifest::checksums`.
pub const SYS_PART_CHECKSUMS: &str = ":part-checksums";

pub fn sys_meta_name(header: &str) -> String {
    format!("{SYS_META_PREFIX}{header}")
}

impl Manifest {
    /// User metadata (`x-amz-meta-*`), without the stored system entries.
    pub fn user_metadata(&self) -> impl Iterator<Item = &(String, String)> {
        self.user_meta.iter().filter(|(n, _)| !n.starts_with(SYS_META_PREFIX))
    }

    /// A stored system entry (`SYS_TAGGING`, or `sys_meta_name(header)`).
    pub fn sys(&self, name: &str) -> Option<&str> {
        self.user_meta.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// A stored standard header (`header` lower-case, as in
    /// `STORED_HEADERS`), found without allocating.
    pub fn sys_header(&self, header: &str) -> Option<&str> {
        self.user_meta.iter().find(|(n, _)| n.strip_prefix(SYS_META_PREFIX) == Some(header)).map(|(_, v)| v.as_str())
    }

    /// Sets (or with `None` removes) a system entry.
    pub fn set_sys(&mut self, name: &str, value: Option<String>) {
        self.user_meta.retain(|(n, _)| n != name);
        if let Some(v) = value {
            self.user_meta.push((name.to_string(), v));
        }
    }

    pub fn version(&self) -> Version {
        Version { hlc: self.version_hlc, cluster: self.version_cluster }
    }

    pub fn encode(&self) -> Vec<u8> {
        rkyv::to_bytes::<rkyv::rancor::Error>(self).expect("manifest encodes").into_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Manifest, String> {
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
        aligned.extend_from_slice(bytes);
        rkyv::from_bytes::<Manifest, rkyv::rancor::Error>(&aligned).map_err(|e| format!("bad manifest: {e}"))
    }

    /// Whether a stored manifest value names blocks (its object is not
    /// inline). Reads the archive in place; a value that does not parse
    /// counts as naming blocks, the cautious answer for whoever asks
    /// (fullsync holds such manifests back until the blocks have had their
    /// round).
    pub fn names_blocks(bytes: &[u8]) -> bool {
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
        aligned.extend_from_slice(bytes);
        rkyv::access::<ArchivedManifest, rkyv::rancor::Error>(&aligned).map(|m| !m.parts.is_empty()).unwrap_or(true)
    }

    /// Number of blocks of a part of `size` bytes.
    pub fn blocks_in(&self, size: u64) -> u32 {
        size.div_ceil(self.block_size as u64) as u32
    }

    /// Every block key of the object, with its length, in content order.
    pub fn block_keys(&self) -> Vec<(Vec<u8>, u64)> {
        let mut out = Vec::new();
        for p in &self.parts {
            let n = self.blocks_in(p.size);
            for i in 0..n {
                let len = (p.size - i as u64 * self.block_size as u64).min(self.block_size as u64);
                out.push((block_key(&self.bucket, &self.key, &p.uid, i), len));
            }
        }
        out
    }

    /// Blocks covering bytes `[start, end]` (inclusive): (key, block length,
    /// offset in block, bytes from it).
    pub fn blocks_for_range(&self, start: u64, end: u64) -> Vec<(Vec<u8>, u64, u64, u64)> {
        let mut out = Vec::new();
        let mut base = 0u64;
        let bs = self.block_size as u64;
        for p in &self.parts {
            let pend = base + p.size;
            if pend > start && base <= end {
                let n = self.blocks_in(p.size);
                for i in 0..n {
                    let bstart = base + i as u64 * bs;
                    let blen = (p.size - i as u64 * bs).min(bs);
                    let bend = bstart + blen;
                    if bend <= start || bstart > end {
                        continue;
                    }
                    let from = start.saturating_sub(bstart);
                    let to = (end + 1).min(bend) - bstart;
                    out.push((block_key(&self.bucket, &self.key, &p.uid, i), blen, from, to - from));
                }
            }
            base = pend;
        }
        out
    }
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BucketMeta {
    pub name: String,
    pub created_ms: u64,
    pub owner: String,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct UploadMeta {
    pub bucket: String,
    pub key: String,
    pub upload_id: [u8; 16],
    pub created_ms: u64,
    pub content_type: String,
    pub user_meta: Vec<(String, String)>,
    pub checksum_algorithm: String,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PartMeta {
    pub part_number: u32,
    pub uid: [u8; 16],
    pub size: u64,
    pub etag: String,
    pub last_modified_ms: u64,
    pub checksums: Vec<(String, String)>,
}

/// Intent: blocks with this uid are being written for (bucket, key); if the
/// node stops before the manifest or part that uses them is written, they
/// are reclaimed at the next start.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    pub bucket: String,
    pub key: String,
    pub uid: [u8; 16],
    pub created_ms: u64,
}

macro_rules! codec {
    ($t:ty) => {
        impl $t {
            pub fn encode(&self) -> Vec<u8> {
                rkyv::to_bytes::<rkyv::rancor::Error>(self).expect("encodes").into_vec()
            }
            pub fn decode(bytes: &[u8]) -> Result<$t, String> {
                let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
                aligned.extend_from_slice(bytes);
                rkyv::from_bytes::<$t, rkyv::rancor::Error>(&aligned).map_err(|e| format!("bad {}: {e}", stringify!($t)))
            }
        }
    };
}
codec!(BucketMeta);
codec!(UploadMeta);
codec!(PartMeta);
codec!(Intent);

#[cfg(test)]
mod tests {
    use super::*;

    fn m(parts: Vec<u64>, bs: u32) -> Manifest {
        Manifest {
            bucket: "b".into(),
            key: "k".into(),
            version_hlc: 1,
            version_cluster: 2,
            size: parts.iter().sum(),
            etag: "x".into(),
            content_type: "t".into(),
            user_meta: vec![("a".into(), "b".into())],
            checksums: vec![],
            last_modified_ms: 0,
            block_size: bs,
            parts: parts.into_iter().enumerate().map(|(i, s)| PartRef { uid: [i as u8; 16], size: s }).collect(),
            inline: vec![],
        }
    }

    #[test]
    fn manifest_roundtrip() {
        let x = m(vec![10, 20], 4);
        assert_eq!(Manifest::decode(&x.encode()).unwrap(), x);
        assert!(Manifest::decode(b"garbage").is_err());
        assert!(Manifest::names_blocks(&x.encode()), "a manifest with parts names blocks");
        let inline = Manifest { parts: vec![], inline: b"small".to_vec(), ..x.clone() };
        assert!(!Manifest::names_blocks(&inline.encode()));
        assert!(Manifest::names_blocks(b"garbage"), "what does not parse counts as naming blocks");
    }

    #[test]
    fn ranges_map_to_blocks_across_parts() {
        let x = m(vec![10, 7], 4); // part0: 4,4,2  part1: 4,3
        assert_eq!(x.block_keys().iter().map(|(_, l)| *l).collect::<Vec<_>>(), vec![4, 4, 2, 4, 3]);
        let r = x.blocks_for_range(0, 16);
        assert_eq!(r.iter().map(|b| b.3).sum::<u64>(), 17);
        let r = x.blocks_for_range(3, 11);
        // bytes 3..=11: block0 [3], block1 [4..8), block2 [8..10), part1 block0 [10..12)
        assert_eq!(r.iter().map(|b| (b.2, b.3)).collect::<Vec<_>>(), vec![(3, 1), (0, 4), (0, 2), (0, 2)]);
    }

    #[test]
    fn block_keys_parse_back() {
        let uid = [7u8; 16];
        let k = block_key("bucket", "a/b\u{e9}", &uid, 42);
        assert_eq!(parse_block_key(&k), Some(("bucket".into(), "a/b\u{e9}".into(), uid, 42)));
    }

    #[test]
    fn meta_pads_value_to_16_bytes() {
        for key_len in 0..40 {
            let meta = encode_meta(&[1, 2, 3], key_len);
            assert_eq!((HEADER_BYTES + key_len + meta.len()) % 16, 0);
            assert_eq!(decode_routed(&meta), vec![1, 2, 3]);
        }
    }
}
