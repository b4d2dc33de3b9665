//! The in-memory index of a partition and its hash tree.
//!
//! The key space is split into `tree_segments` buckets by the top bits of
//! `xxh3_64(key)`. Each bucket is its own small hash table, so the keys of
//! one tree segment are listed without touching the others, tables grow in
//! small steps, and the tree segment's hash (XOR of
//! `xxh3(key, version, vhash)` over its keys) is kept up to date in O(1).
//!
//! Keys live in an append-only arena; a slot is 32 bytes (see `Slot`) and
//! holds 20 bits of its key's hash, so that growing a table never reads the
//! arena (a cache miss per key) and most probes reject a wrong key without
//! it.

use std::collections::{BTreeSet, HashMap};

use hashbrown::HashTable;
use xxhash_rust::xxh3::xxh3_64;

use crate::record::{Kind, Version, FLAG_ORDERED, FLAG_TREE, MAX_KEY_BYTES};

pub const DEFAULT_TREE_SEGMENTS: u32 = 4096;
pub const MAX_TREE_SEGMENTS: u32 = 1 << 16;
/// Keys are packed into arena chunks of at most this many bytes.
const ARENA_CHUNK_BYTES: usize = 1 << 20;
/// Distinct origin clusters a partition can tell apart (slots store an index).
pub const MAX_CLUSTERS: usize = 1 << 12;

/// What the index knows about a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub seg: u32,
    pub off: u64,
    pub len: u32,
    pub kind: Kind,
    pub flags: u8,
    pub version: Version,
    pub vhash: u64,
}

impl Entry {
    pub fn is_tombstone(&self) -> bool {
        self.kind == Kind::Tombstone
    }
}

/// One key of a tree segment, as fullsync compares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeEntry {
    pub key: Vec<u8>,
    pub version: Version,
    pub vhash: u64,
    pub kind: Kind,
}

// A slot is 32 bytes:
//   w0: arena index (32 bits, in 4-byte units) | key-hash fragment (20) | kind (4) | flags (8)
//   w1: segment id (24 bits) | record offset / 16 (28) | cluster index (12)
//   hlc, vhash
// The record length and the key length live in the arena, before the key.
const AIDX_BITS: u32 = 32;
const FRAG_BITS: u32 = 20;
const SEG_BITS: u32 = 24;
const OFF16_BITS: u32 = 28;
const CLUSTER_BITS: u32 = 12;
const _: () = assert!(AIDX_BITS + FRAG_BITS + 4 + 8 == 64);
const _: () = assert!(SEG_BITS + OFF16_BITS + CLUSTER_BITS == 64);
/// Arena entries start on this alignment (the slot stores offset / 4).
const ARENA_ALIGN: usize = 4;
/// Key bytes a partition's arena can hold (live and not yet rebuilt).
pub const MAX_ARENA_BYTES: u64 = (1u64 << AIDX_BITS) * ARENA_ALIGN as u64;
/// Segment ids a partition can hand out in one process lifetime.
pub const MAX_SEGMENT_IDS: u32 = 1 << SEG_BITS;

#[derive(Clone, Copy)]
#[repr(C)]
struct Slot {
    w0: u64,
    w1: u64,
    hlc: u64,
    vhash: u64,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 32);

impl Slot {
    fn arena_idx(&self) -> u32 {
        self.w0 as u32
    }
    fn frag(&self) -> u32 {
        ((self.w0 >> AIDX_BITS) & ((1 << FRAG_BITS) - 1)) as u32
    }
    fn kind(&self) -> Kind {
        Kind::from_u8(((self.w0 >> (AIDX_BITS + FRAG_BITS)) & 0xf) as u8).expect("valid kind in slot")
    }
    fn flags(&self) -> u8 {
        (self.w0 >> (AIDX_BITS + FRAG_BITS + 4)) as u8
    }
    fn seg(&self) -> u32 {
        (self.w1 & ((1 << SEG_BITS) - 1)) as u32
    }
    fn off(&self) -> u64 {
        ((self.w1 >> SEG_BITS) & ((1 << OFF16_BITS) - 1)) << 4
    }
    fn cluster_idx(&self) -> usize {
        (self.w1 >> (SEG_BITS + OFF16_BITS)) as usize
    }
    fn pack0(arena_idx: u32, frag: u32, kind: Kind, flags: u8) -> u64 {
        debug_assert!(frag < (1 << FRAG_BITS));
        arena_idx as u64 | (frag as u64) << AIDX_BITS | (kind as u64) << (AIDX_BITS + FRAG_BITS) | (flags as u64) << (AIDX_BITS + FRAG_BITS + 4)
    }
    fn pack1(seg: u32, off: u64, cluster_idx: u16) -> u64 {
        assert!(seg < MAX_SEGMENT_IDS, "partition ran out of segment ids; restart the node");
        assert!(off % 16 == 0 && (off >> 4) < (1 << OFF16_BITS), "record offset {off} not representable");
        assert!((cluster_idx as usize) < MAX_CLUSTERS);
        seg as u64 | (off >> 4) << SEG_BITS | (cluster_idx as u64) << (SEG_BITS + OFF16_BITS)
    }
}

/// An arena entry at a 4-byte aligned offset:
/// `record length u32 | key length (u8, or 0xFF then u16) | key | zeros to 4`.
struct KeyArena {
    chunks: Vec<Vec<u8>>,
    live_bytes: u64,
    garbage_bytes: u64,
}

/// Key lengths below this take one byte in the arena, longer ones three.
const SHORT_KEY: usize = 0xff;
const _: () = assert!(MAX_KEY_BYTES <= u16::MAX as usize);

fn arena_entry_bytes(key_len: usize) -> usize {
    let head = 4 + if key_len < SHORT_KEY { 1 } else { 3 };
    (head + key_len).next_multiple_of(ARENA_ALIGN)
}

impl KeyArena {
    fn new() -> KeyArena {
        KeyArena { chunks: Vec::new(), live_bytes: 0, garbage_bytes: 0 }
    }

    fn locate(idx: u32) -> (usize, usize) {
        let off = idx as usize * ARENA_ALIGN;
        (off / ARENA_CHUNK_BYTES, off % ARENA_CHUNK_BYTES)
    }

    /// Stores `rec_len` and `key`; returns the entry's index (offset / 4).
    fn push(&mut self, key: &[u8], rec_len: u32) -> u32 {
        assert!(key.len() <= MAX_KEY_BYTES);
        let need = arena_entry_bytes(key.len());
        let need_new = match self.chunks.last() {
            None => true,
            Some(c) => c.len() + need > ARENA_CHUNK_BYTES,
        };
        if need_new {
            self.chunks.push(Vec::with_capacity(4096));
        }
        let ci = self.chunks.len() - 1;
        let c = &mut self.chunks[ci];
        if c.len() + need > c.capacity() {
            let want = (c.capacity() * 2).clamp(4096, ARENA_CHUNK_BYTES).max(c.len() + need);
            c.reserve_exact(want - c.len());
        }
        let off = ci as u64 * ARENA_CHUNK_BYTES as u64 + c.len() as u64;
        assert!(off < MAX_ARENA_BYTES, "key arena of a partition exhausted ({MAX_ARENA_BYTES} bytes)");
        debug_assert_eq!(off % ARENA_ALIGN as u64, 0);
        let at = c.len();
        c.extend_from_slice(&rec_len.to_le_bytes());
        if key.len() < SHORT_KEY {
            c.push(key.len() as u8);
        } else {
            c.push(SHORT_KEY as u8);
            c.extend_from_slice(&(key.len() as u16).to_le_bytes());
        }
        c.extend_from_slice(key);
        c.resize(at + need, 0);
        self.live_bytes += need as u64;
        (off / ARENA_ALIGN as u64) as u32
    }

    fn rec_len(&self, idx: u32) -> u32 {
        let (ci, o) = Self::locate(idx);
        u32::from_le_bytes(self.chunks[ci][o..o + 4].try_into().unwrap())
    }

    fn set_rec_len(&mut self, idx: u32, len: u32) {
        let (ci, o) = Self::locate(idx);
        self.chunks[ci][o..o + 4].copy_from_slice(&len.to_le_bytes());
    }

    fn key(&self, idx: u32) -> &[u8] {
        let (ci, o) = Self::locate(idx);
        let c = &self.chunks[ci];
        let short = c[o + 4] as usize;
        if short < SHORT_KEY {
            &c[o + 5..o + 5 + short]
        } else {
            let len = u16::from_le_bytes([c[o + 5], c[o + 6]]) as usize;
            &c[o + 7..o + 7 + len]
        }
    }

    fn release(&mut self, key_len: usize) {
        let n = arena_entry_bytes(key_len) as u64;
        self.live_bytes -= n;
        self.garbage_bytes += n;
    }

    fn heap_bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.capacity()).sum::<usize>() + self.chunks.capacity() * 24
    }
}

pub(crate) struct Index {
    tables: Vec<HashTable<Slot>>,
    tree: Vec<u64>,
    shift: u32,
    arena: KeyArena,
    clusters: Vec<u64>,
    cluster_idx: HashMap<u64, u16>,
    ordered: BTreeSet<Box<[u8]>>,
    count: usize,
    /// Largest version stamp ever put in the index (never lowered).
    max_hlc: u64,
}

/// Hash of a key as the index and the tree use it.
pub fn key_hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// A key's contribution to its tree segment's hash:
/// `xxh3_64(xxh3_64(key) ‖ hlc ‖ cluster ‖ vhash)`, all little-endian.
pub fn tree_contribution(key_hash: u64, version: Version, vhash: u64) -> u64 {
    let mut buf = [0u8; 32];
    buf[0..8].copy_from_slice(&key_hash.to_le_bytes());
    buf[8..16].copy_from_slice(&version.hlc.to_le_bytes());
    buf[16..24].copy_from_slice(&version.cluster.to_le_bytes());
    buf[24..32].copy_from_slice(&vhash.to_le_bytes());
    xxh3_64(&buf)
}

/// The sub-bucket of a key inside its tree segment: the `sub_bits` bits of
/// `key_hash` just below the bits that pick the segment (of
/// `tree_segments`, a power of two). Fullsync compares sub-bucket hashes of
/// differing segments and lists only the keys of differing sub-buckets.
pub fn tree_sub_bucket(key_hash: u64, tree_segments: u32, sub_bits: u32) -> u32 {
    assert!((1..=16).contains(&sub_bits), "sub-bucket bits {sub_bits} outside 1..=16");
    debug_assert!(tree_segments.is_power_of_two() && tree_segments <= MAX_TREE_SEGMENTS);
    ((key_hash << tree_segments.trailing_zeros()) >> (64 - sub_bits)) as u32
}

/// The part of a key's hash a slot keeps: its low bits (the top bits pick
/// the table and the sub-bucket, so they are the same for a whole table).
fn frag_of(key_hash: u64) -> u32 {
    (key_hash & ((1 << FRAG_BITS) - 1)) as u32
}

/// The hash hashbrown sees, made from the fragment alone so that a table
/// grows without reading keys. hashbrown takes the bucket from the low bits
/// and a 7-bit tag from the top ones; the odd multiplier keeps the low bits
/// a bijection of the fragment's and spreads all of it into the top. Tables
/// past 2^20 buckets (a billion keys with 4096 tree segments) only see 2^20
/// distinct hashes; probes stay correct and get longer.
fn table_hash(frag: u32) -> u64 {
    (frag as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

pub(crate) struct NewSlot {
    pub seg: u32,
    pub off: u64,
    pub len: u32,
    pub kind: Kind,
    pub flags: u8,
    pub version: Version,
    pub vhash: u64,
}

impl Index {
    pub fn new(tree_segments: u32) -> Index {
        assert!(tree_segments.is_power_of_two() && tree_segments >= 1 && tree_segments <= MAX_TREE_SEGMENTS);
        let bits = tree_segments.trailing_zeros();
        Index {
            tables: (0..tree_segments).map(|_| HashTable::new()).collect(),
            tree: vec![0; tree_segments as usize],
            shift: 64 - bits,
            arena: KeyArena::new(),
            clusters: Vec::new(),
            cluster_idx: HashMap::new(),
            ordered: BTreeSet::new(),
            count: 0,
            max_hlc: 0,
        }
    }

    pub fn tree_segment_of(&self, h: u64) -> usize {
        if self.shift == 64 {
            0
        } else {
            (h >> self.shift) as usize
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    /// The largest version stamp any key has had since the index was built.
    pub fn max_hlc(&self) -> u64 {
        self.max_hlc
    }

    fn entry_of(&self, s: &Slot) -> Entry {
        Entry {
            seg: s.seg(),
            off: s.off(),
            len: self.arena.rec_len(s.arena_idx()),
            kind: s.kind(),
            flags: s.flags(),
            version: Version { hlc: s.hlc, cluster: self.clusters[s.cluster_idx()] },
            vhash: s.vhash,
        }
    }

    fn cluster_index(&mut self, cluster: u64) -> u16 {
        // Few clusters in practice: a short scan beats hashing.
        if let Some(i) = self.clusters.iter().take(8).position(|&c| c == cluster) {
            return i as u16;
        }
        if let Some(&i) = self.cluster_idx.get(&cluster) {
            return i;
        }
        assert!(self.clusters.len() < MAX_CLUSTERS, "more than {MAX_CLUSTERS} origin clusters in one partition");
        let i = self.clusters.len() as u16;
        self.clusters.push(cluster);
        self.cluster_idx.insert(cluster, i);
        i
    }

    pub fn get(&self, key: &[u8]) -> Option<Entry> {
        let h = key_hash(key);
        let t = &self.tables[self.tree_segment_of(h)];
        let (arena, frag) = (&self.arena, frag_of(h));
        t.find(table_hash(frag), |s| s.frag() == frag && arena.key(s.arena_idx()) == key).map(|s| self.entry_of(s))
    }

    fn xor_tree(&mut self, seg: usize, key_hash: u64, version: Version, vhash: u64) {
        self.tree[seg] ^= tree_contribution(key_hash, version, vhash);
    }

    /// Points `key` at a new record. Returns the entry it replaced.
    pub fn upsert(&mut self, key: &[u8], n: NewSlot) -> Option<Entry> {
        debug_assert!(!matches!(n.kind, Kind::Expunge | Kind::Seal));
        self.max_hlc = self.max_hlc.max(n.version.hlc);
        let h = key_hash(key);
        let ts = self.tree_segment_of(h);
        let cidx = self.cluster_index(n.version.cluster);
        let frag = frag_of(h);
        let w1 = Slot::pack1(n.seg, n.off, cidx);
        // One probe finds the key or the slot it goes into.
        let arena = &self.arena;
        let found = match self.tables[ts].entry(
            table_hash(frag),
            |s| s.frag() == frag && arena.key(s.arena_idx()) == key,
            |s| table_hash(s.frag()),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut o) => {
                let s = o.get_mut();
                let old = *s;
                s.w0 = Slot::pack0(old.arena_idx(), frag, n.kind, n.flags);
                s.w1 = w1;
                s.hlc = n.version.hlc;
                s.vhash = n.vhash;
                Some(old)
            }
            hashbrown::hash_table::Entry::Vacant(v) => {
                let aidx = self.arena.push(key, n.len);
                v.insert(Slot { w0: Slot::pack0(aidx, frag, n.kind, n.flags), w1, hlc: n.version.hlc, vhash: n.vhash });
                None
            }
        };
        let old = match found {
            Some(s) => {
                let e = self.entry_of(&s);
                self.arena.set_rec_len(s.arena_idx(), n.len);
                if e.flags & FLAG_TREE != 0 {
                    self.xor_tree(ts, h, e.version, e.vhash);
                }
                Some(e)
            }
            None => {
                self.count += 1;
                None
            }
        };
        if n.flags & FLAG_TREE != 0 {
            self.xor_tree(ts, h, n.version, n.vhash);
        }
        let want_ordered = n.flags & FLAG_ORDERED != 0 && n.kind != Kind::Tombstone;
        let was_ordered = old.map(|o| o.flags & FLAG_ORDERED != 0 && o.kind != Kind::Tombstone).unwrap_or(false);
        if want_ordered && !was_ordered {
            self.ordered.insert(key.into());
        } else if !want_ordered && was_ordered {
            self.ordered.remove(key);
        }
        old
    }

    /// Removes `key` (when `at` is given, only if it still points there).
    pub fn remove(&mut self, key: &[u8], at: Option<(u32, u64)>) -> Option<Entry> {
        let h = key_hash(key);
        let ts = self.tree_segment_of(h);
        let (arena, frag) = (&self.arena, frag_of(h));
        let entry = self.tables[ts].find_entry(table_hash(frag), |s| s.frag() == frag && arena.key(s.arena_idx()) == key).ok()?;
        let s = *entry.get();
        if let Some((seg, off)) = at {
            if s.seg() != seg || s.off() != off {
                return None;
            }
        }
        entry.remove();
        self.count -= 1;
        let e = self.entry_of(&s);
        self.arena.release(key.len());
        if e.flags & FLAG_TREE != 0 {
            self.xor_tree(ts, h, e.version, e.vhash);
        }
        if e.flags & FLAG_ORDERED != 0 && e.kind != Kind::Tombstone {
            self.ordered.remove(key);
        }
        self.maybe_rebuild_arena();
        Some(e)
    }

    /// Moves `key` from one location to another if it is still at `from`.
    pub fn relocate(&mut self, key: &[u8], from: (u32, u64), to: (u32, u64)) -> bool {
        let h = key_hash(key);
        let ts = self.tree_segment_of(h);
        let (arena, frag) = (&self.arena, frag_of(h));
        match self.tables[ts].find_mut(table_hash(frag), |s| s.frag() == frag && arena.key(s.arena_idx()) == key) {
            Some(s) if s.seg() == from.0 && s.off() == from.1 => {
                s.w1 = Slot::pack1(to.0, to.1, s.cluster_idx() as u16);
                true
            }
            _ => false,
        }
    }

    pub fn tree_hashes(&self) -> &[u64] {
        &self.tree
    }

    pub fn tree_segment_entries(&self, seg: usize) -> Vec<TreeEntry> {
        let Some(t) = self.tables.get(seg) else { return Vec::new() };
        let mut v: Vec<TreeEntry> = t
            .iter()
            .filter(|s| s.flags() & FLAG_TREE != 0)
            .map(|s| {
                let e = self.entry_of(s);
                TreeEntry {
                    key: self.arena.key(s.arena_idx()).to_vec(),
                    version: e.version,
                    vhash: e.vhash,
                    kind: e.kind,
                }
            })
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }

    /// Ordered keys after `start_after` that begin with `prefix`.
    pub fn ordered_after(&self, start_after: &[u8], prefix: &[u8], limit: usize) -> Vec<Vec<u8>> {
        use std::ops::Bound;
        let lower: &[u8] = if start_after >= prefix { start_after } else { prefix };
        let lb = if start_after >= prefix { Bound::Excluded(lower) } else { Bound::Included(lower) };
        self.ordered
            .range::<[u8], _>((lb, Bound::Unbounded))
            .take_while(|k| k.starts_with(prefix))
            .take(limit)
            .map(|k| k.to_vec())
            .collect()
    }

    #[cfg(test)]
    pub fn ordered_len(&self) -> usize {
        self.ordered.len()
    }

    /// Calls `f` for every key (used by compaction bookkeeping and tests).
    pub fn for_each(&self, mut f: impl FnMut(&[u8], Entry)) {
        for t in &self.tables {
            for s in t.iter() {
                f(self.arena.key(s.arena_idx()), self.entry_of(s));
            }
        }
    }

    /// Approximate heap bytes held by the index (tables, arena, tree).
    pub fn heap_bytes(&self) -> usize {
        // hashbrown: one slot and one control byte per bucket, buckets = a
        // power of two >= capacity * 8/7.
        let tables: usize = self
            .tables
            .iter()
            .map(|t| if t.capacity() == 0 { 0 } else { ((t.capacity() * 8 / 7).next_power_of_two()) * (std::mem::size_of::<Slot>() + 1) + 16 })
            .sum();
        let ordered: usize = self.ordered.iter().map(|k| k.len() + 40).sum();
        tables
            + self.tables.capacity() * std::mem::size_of::<HashTable<Slot>>()
            + self.arena.heap_bytes()
            + self.tree.len() * 8
            + ordered
    }

    fn maybe_rebuild_arena(&mut self) {
        let a = &self.arena;
        if a.garbage_bytes < (8 << 20) || a.garbage_bytes < a.live_bytes {
            return;
        }
        let mut fresh = KeyArena::new();
        for t in self.tables.iter_mut() {
            for s in t.iter_mut() {
                let k = self.arena.key(s.arena_idx());
                let idx = fresh.push(k, self.arena.rec_len(s.arena_idx()));
                s.w0 = Slot::pack0(idx, s.frag(), s.kind(), s.flags());
            }
        }
        self.arena = fresh;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(seg: u32, off: u64, v: u64, kind: Kind, flags: u8) -> NewSlot {
        NewSlot { seg, off, len: 100, kind, flags, version: Version { hlc: v, cluster: 7 }, vhash: v * 31 }
    }

    #[test]
    fn max_hlc_is_the_largest_stamp_ever_put() {
        let mut ix = Index::new(16);
        assert_eq!(ix.max_hlc(), 0);
        ix.upsert(b"a", slot(1, 0, 40, Kind::Manifest, FLAG_TREE));
        ix.upsert(b"b", slot(1, 16, 7, Kind::Manifest, FLAG_TREE));
        assert_eq!(ix.max_hlc(), 40);
        // Overwritten or removed, the stamp still bounds new versions.
        ix.upsert(b"a", slot(1, 32, 3, Kind::Tombstone, FLAG_TREE));
        ix.remove(b"a", None);
        assert_eq!(ix.max_hlc(), 40);
    }

    #[test]
    fn upsert_get_remove_and_tree_xor() {
        let mut ix = Index::new(16);
        let empty = ix.tree_hashes().to_vec();
        for i in 0..1000u64 {
            ix.upsert(format!("k{i}").as_bytes(), slot(1, i * 16, i, Kind::Manifest, FLAG_TREE | FLAG_ORDERED));
        }
        assert_eq!(ix.len(), 1000);
        let e = ix.get(b"k5").unwrap();
        assert_eq!(e.off, 80);
        assert_eq!(e.version.hlc, 5);
        // overwrite then restore leaves the same tree
        let before = ix.tree_hashes().to_vec();
        ix.upsert(b"k5", slot(2, 0, 99, Kind::Manifest, FLAG_TREE | FLAG_ORDERED));
        assert_ne!(ix.tree_hashes(), &before[..]);
        ix.upsert(b"k5", slot(1, 80, 5, Kind::Manifest, FLAG_TREE | FLAG_ORDERED));
        assert_eq!(ix.tree_hashes(), &before[..]);
        for i in 0..1000u64 {
            assert!(ix.remove(format!("k{i}").as_bytes(), None).is_some());
        }
        assert_eq!(ix.tree_hashes(), &empty[..]);
        assert_eq!(ix.len(), 0);
        assert_eq!(ix.ordered_len(), 0);
    }

    #[test]
    fn segment_entries_list_only_that_segment() {
        let mut ix = Index::new(64);
        for i in 0..5000u64 {
            ix.upsert(format!("key-{i}").as_bytes(), slot(1, i * 16, i + 1, Kind::Block, FLAG_TREE));
        }
        let mut total = 0;
        for s in 0..64 {
            for e in ix.tree_segment_entries(s) {
                assert_eq!(ix.tree_segment_of(key_hash(&e.key)), s);
                total += 1;
            }
        }
        assert_eq!(total, 5000);
    }

    #[test]
    fn sub_buckets_split_a_segment_and_their_hashes_make_its_hash() {
        for segments in [1u32, 64, 4096] {
            let mut ix = Index::new(segments);
            for i in 0..20_000u64 {
                ix.upsert(format!("key-{i}").as_bytes(), slot(1, i * 16, i + 1, Kind::Block, FLAG_TREE));
            }
            let mut used = vec![0u32; 16];
            for s in 0..segments.min(64) as usize {
                let mut subs = [0u64; 16];
                for e in ix.tree_segment_entries(s) {
                    let h = key_hash(&e.key);
                    let b = tree_sub_bucket(h, segments, 4);
                    assert!(b < 16);
                    used[b as usize] += 1;
                    subs[b as usize] ^= tree_contribution(h, e.version, e.vhash);
                }
                assert_eq!(subs.iter().fold(0, |a, b| a ^ b), ix.tree_hashes()[s], "{segments} segments, segment {s}");
            }
            // The sub-bucket bits are not the segment bits: every sub-bucket is used.
            assert!(used.iter().all(|&n| n > 0), "{segments} segments: {used:?}");
        }
    }

    #[test]
    fn ordered_listing_with_prefix_and_start_after() {
        let mut ix = Index::new(16);
        for k in ["a/1", "a/2", "b/1", "b/2", "c"] {
            ix.upsert(k.as_bytes(), slot(1, 0, 1, Kind::Manifest, FLAG_ORDERED));
        }
        ix.upsert(b"b/1", slot(1, 0, 2, Kind::Tombstone, FLAG_ORDERED));
        let got = ix.ordered_after(b"", b"b/", 10);
        assert_eq!(got, vec![b"b/2".to_vec()]);
        let got = ix.ordered_after(b"a/1", b"", 2);
        assert_eq!(got, vec![b"a/2".to_vec(), b"b/2".to_vec()]);
    }

    #[test]
    fn arena_rebuild_keeps_keys() {
        let mut ix = Index::new(4);
        let big = vec![b'x'; 1500];
        for i in 0..20000u32 {
            let mut k = big.clone();
            k.extend_from_slice(&i.to_le_bytes());
            ix.upsert(&k, slot(1, 0, 1, Kind::Block, 0));
        }
        for i in 0..19000u32 {
            let mut k = big.clone();
            k.extend_from_slice(&i.to_le_bytes());
            ix.remove(&k, None).unwrap();
        }
        for i in 19000..20000u32 {
            let mut k = big.clone();
            k.extend_from_slice(&i.to_le_bytes());
            assert!(ix.get(&k).is_some());
        }
        assert!(ix.arena.garbage_bytes < 8 << 20);
    }

    #[test]
    fn keys_of_every_length_class_round_trip_through_the_arena() {
        let mut ix = Index::new(16);
        let lens = [0usize, 1, 2, 3, 4, 5, 253, 254, 255, 256, 257, 1000, MAX_KEY_BYTES];
        let key = |l: usize, tag: u8| -> Vec<u8> { (0..l).map(|i| (i as u8).wrapping_mul(31) ^ tag).collect() };
        for (i, &l) in lens.iter().enumerate() {
            ix.upsert(&key(l, 1), NewSlot { seg: 1, off: 16 * i as u64, len: 1000 + i as u32, kind: Kind::Block, flags: FLAG_TREE, version: Version { hlc: 5, cluster: 7 }, vhash: l as u64 });
        }
        for (i, &l) in lens.iter().enumerate() {
            let e = ix.get(&key(l, 1)).unwrap_or_else(|| panic!("key of {l} bytes lost"));
            assert_eq!((e.off, e.len, e.vhash), (16 * i as u64, 1000 + i as u32, l as u64));
            assert!(ix.get(&key(l, 2)).is_none() || l == 0);
        }
        let mut seen = Vec::new();
        ix.for_each(|k, _| seen.push(k.len()));
        seen.sort();
        assert_eq!(seen, lens.to_vec());
        for &l in &lens {
            assert!(ix.remove(&key(l, 1), None).is_some());
        }
        assert_eq!(ix.len(), 0);
        assert_eq!(ix.arena.live_bytes, 0);
    }

    #[test]
    fn keys_sharing_a_hash_fragment_stay_apart_through_growth() {
        // One table, so every key competes; find keys whose 20-bit fragments
        // collide and check that each still finds its own slot.
        let mut ix = Index::new(1);
        let mut by_frag: HashMap<u32, Vec<Vec<u8>>> = HashMap::new();
        for i in 0..20_000u32 {
            let k = format!("key-{i}").into_bytes();
            by_frag.entry(frag_of(key_hash(&k))).or_default().push(k);
        }
        let twins: Vec<Vec<u8>> = by_frag.values().filter(|v| v.len() > 1).flatten().cloned().collect();
        assert!(twins.len() >= 4, "20,000 keys should give some 20-bit fragment collisions");
        let mut all: Vec<Vec<u8>> = by_frag.into_values().flatten().collect();
        all.sort();
        for (i, k) in all.iter().enumerate() {
            ix.upsert(k, NewSlot { seg: 1, off: 16 * i as u64, len: 100, kind: Kind::Manifest, flags: FLAG_TREE, version: Version { hlc: i as u64 + 1, cluster: 7 }, vhash: i as u64 });
        }
        for (i, k) in all.iter().enumerate() {
            assert_eq!(ix.get(k).map(|e| e.off), Some(16 * i as u64), "key {:?}", String::from_utf8_lossy(k));
        }
        for k in &twins {
            assert!(ix.relocate(k, (1, ix.get(k).unwrap().off), (2, 0)));
        }
        for k in &twins {
            assert_eq!(ix.get(k).unwrap().seg, 2);
            ix.remove(k, None).unwrap();
            assert!(ix.get(k).is_none());
        }
        assert_eq!(ix.len(), all.len() - twins.len());
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    /// `cargo test --release -p storage --lib index::speed -- --ignored --nocapture`:
    /// the cost of inserting fresh keys (what 1 KiB appends pay per record).
    #[test]
    #[ignore]
    fn insert_speed() {
        let n = 1_000_000u64;
        let mut ix = Index::new(DEFAULT_TREE_SEGMENTS);
        let mut key = Vec::new();
        let t = std::time::Instant::now();
        for i in 0..n {
            key.clear();
            key.extend_from_slice(b"k");
            key.extend_from_slice(&i.to_be_bytes());
            ix.upsert(&key, NewSlot { seg: 1, off: i * 1088 % (1 << 30), len: 1081, kind: Kind::Block, flags: FLAG_TREE, version: Version { hlc: i + 1, cluster: 1 }, vhash: 5 });
        }
        eprintln!("{n} fresh keys: {:.1} ns per insert, index {:.1} B per key", t.elapsed().as_nanos() as f64 / n as f64, ix.heap_bytes() as f64 / n as f64);
    }
}
