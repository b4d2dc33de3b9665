//! Fullsync exchange of one partition: its cost follows the number of
//! differences, not the number of keys.
//!
//! ```text
//! source                                      sink
//!   ── FsStart{p, tree_segments, digest} ─────▶
//!   ◀────── FsSegmentHashes{p, 0, hashes} ─────  (level 0 of the tree, 16
//!                                                 nodes; none if the digests
//!                                                 match: skip to FsDone)
//!   per level, while not at the segments:
//!   ── FsTreeAsk{p, level, differing nodes} ──▶
//!   ◀────── FsSegmentHashes{p, level, hashes} ─  (their children)
//!   compare with local hashes
//!   ── FsDiff{p, segments that differ, ───────▶  (none differ: skip to FsDone)
//!            their sub-bucket hashes}            compare with local sub-hashes
//!   ◀─── FsKeyList{p, seg, mask, entries, last}  per differing segment, the
//!                                                 keys of the differing
//!                                                 sub-buckets (mask), in lists
//!                                                 of at most MAX_KEYS_PER_LIST
//!   per segment: keys of those sub-buckets the
//!   sink lacks, holds older, or holds with
//!   different content; pushed once every
//!   segment of the diff frame is listed (then
//!   the next diff frame, if any)
//!   ── FsPush{p, seq} + records ──────────────▶  apply (newer wins)
//!   ◀──────────────── FsPushAck{p, seq} ───────
//!   ── FsDone{p, stats} ──────────────────────▶  wait until durable
//!   ◀──────────────── FsDone{p, stats} ────────
//! ```
//!
//! Keys newer on the sink are left alone (with replication both ways, the
//! other direction repairs this side). Keys only on the sink are left alone
//! too: deletes travel as tombstones.

use std::collections::BTreeSet;

use crate::msg::*;
use crate::{ProtoError, FS_SUB_BUCKETS, FS_SUB_MIN_KEYS, MAX_DIFF_SEGMENTS_PER_FRAME, MAX_KEYS_PER_LIST, MAX_KEY_LIST_BYTES};

/// Most keys one tree segment may list (all its key lists together).
pub const MAX_KEYS_PER_SEGMENT: usize = 4 << 20;

/// The segments a diff frame names (with sub-hashes or whole).
fn diff_segments(d: &FsDiff) -> BTreeSet<u32> {
    d.segments.iter().chain(&d.whole_segments).copied().collect()
}

/// Bits of the segment index each level of the tree adds: a node has up to
/// 16 children.
pub const TREE_FANOUT_BITS: u32 = 4;

/// The levels of the tree over `tree_segments` segments (a power of two),
/// top first, as the number of leading bits of a segment index that name a
/// node: 4096 segments give [4, 8, 12] (16, 256 and 4096 nodes); the last
/// level's nodes are the segments.
pub fn tree_levels(tree_segments: u32) -> Vec<u32> {
    assert!(tree_segments.is_power_of_two(), "tree segments {tree_segments} not a power of two");
    let all = tree_segments.trailing_zeros();
    let mut levels = Vec::new();
    let mut bits = 0;
    loop {
        bits = (bits + TREE_FANOUT_BITS).min(all);
        levels.push(bits);
        if bits == all {
            return levels;
        }
    }
}

/// The hashes of the nodes of the level with `bits` prefix bits: the XOR
/// of the hashes of the segments under each node.
pub fn level_hashes(segment_hashes: &[u64], bits: u32) -> Vec<u64> {
    let all = segment_hashes.len().trailing_zeros();
    assert!(segment_hashes.len().is_power_of_two() && bits <= all);
    let mut out = vec![0u64; 1 << bits];
    for (s, h) in segment_hashes.iter().enumerate() {
        out[s >> (all - bits)] ^= h;
    }
    out
}

/// Nodes of level `level` under `parents` (nodes of level `level - 1`, in
/// order); all nodes of level 0.
fn children(levels: &[u32], level: usize, parents: &[u32]) -> Vec<u32> {
    if level == 0 {
        return (0..1u32 << levels[0]).collect();
    }
    let step = levels[level] - levels[level - 1];
    parents.iter().flat_map(|&n| (n << step)..((n + 1) << step)).collect()
}

/// The sink's answer to `FsStart` when the digests differ: all of level 0.
pub fn tree_top(partition: u32, segment_hashes: &[u64]) -> FsSegmentHashes {
    let levels = tree_levels(segment_hashes.len() as u32);
    FsSegmentHashes { partition, level: 0, hashes: level_hashes(segment_hashes, levels[0]) }
}

/// The sink's answer to `FsTreeAsk`: the hashes of the children of the
/// nodes asked for, in order. The error text names what is wrong.
pub fn tree_answer(segment_hashes: &[u64], ask: &FsTreeAsk) -> Result<FsSegmentHashes, String> {
    let levels = tree_levels(segment_hashes.len() as u32);
    let level = ask.level as usize;
    if level == 0 || level >= levels.len() {
        return Err(format!("fullsync tree ask for level {level} of partition {}, whose tree has levels 0 to {}", ask.partition, levels.len() - 1));
    }
    let parents = 1u64 << levels[level - 1];
    if ask.nodes.iter().any(|&n| n as u64 >= parents) || ask.nodes.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("fullsync tree ask for level {level} of partition {}: nodes must be ascending and below {parents}", ask.partition));
    }
    let here = level_hashes(segment_hashes, levels[level]);
    let hashes = children(&levels, level, &ask.nodes).into_iter().map(|n| here[n as usize]).collect();
    Ok(FsSegmentHashes { partition: ask.partition, level: ask.level, hashes })
}

/// A key of a tree segment as this side holds it: key, version (hlc,
/// cluster), content hash; its sub-bucket in the segment and its
/// contribution to the tree (the segment hash is the XOR of the
/// contributions, a sub-bucket hash the XOR over the sub-bucket's keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalEntry {
    pub key: Vec<u8>,
    pub hlc: u64,
    pub cluster: u64,
    pub vhash: u64,
    pub sub: u32,
    pub contrib: u64,
}

/// The `FS_SUB_BUCKETS` sub-bucket hashes of one segment's entries.
pub fn sub_hashes(entries: &[LocalEntry]) -> Vec<u64> {
    let mut h = vec![0u64; FS_SUB_BUCKETS];
    for e in entries {
        h[e.sub as usize] ^= e.contrib;
    }
    h
}

/// Bit i set when sub-bucket i differs.
pub fn sub_mask(local: &[u64], remote: &[u64]) -> u32 {
    assert!(local.len() == FS_SUB_BUCKETS && remote.len() == FS_SUB_BUCKETS);
    local.iter().zip(remote).enumerate().filter(|(_, (a, b))| a != b).fold(0, |m, (i, _)| m | 1 << i)
}

/// The mask naming every sub-bucket (a segment listed whole).
pub const ALL_SUB_BUCKETS: u32 = u32::MAX >> (32 - FS_SUB_BUCKETS);

fn in_mask(mask: u32, sub: u32) -> bool {
    sub < 32 && mask & (1 << sub) != 0
}

/// Checks a diff frame the sink received; the error text names what is
/// wrong.
pub fn check_diff(d: &FsDiff, tree_segments: u32) -> Result<(), String> {
    let named = d.segments.len() + d.whole_segments.len();
    if named > MAX_DIFF_SEGMENTS_PER_FRAME {
        return Err(format!("fullsync diff names {named} segments, more than MAX_DIFF_SEGMENTS_PER_FRAME ({MAX_DIFF_SEGMENTS_PER_FRAME})"));
    }
    if let Some(seg) = d.segments.iter().chain(&d.whole_segments).find(|&&s| s >= tree_segments) {
        return Err(format!("fullsync diff names segment {seg}, but partition {} has {tree_segments} tree segments", d.partition));
    }
    if d.sub_hashes.len() != d.segments.len() * FS_SUB_BUCKETS {
        return Err(format!(
            "fullsync diff of partition {} carries {} sub-bucket hashes for {} segments; expected {} per segment",
            d.partition,
            d.sub_hashes.len(),
            d.segments.len(),
            FS_SUB_BUCKETS
        ));
    }
    Ok(())
}

/// The sink's answer to one segment of a diff: its entries in the
/// sub-buckets whose hashes differ from the source's (`remote_sub`; None: a
/// segment to list whole), as key lists carrying that mask. `local` is the
/// sink's entries of the segment.
pub fn sink_key_lists(partition: u32, segment: u32, remote_sub: Option<&[u64]>, local: Vec<LocalEntry>) -> Vec<FsKeyList> {
    let mask = match remote_sub {
        Some(theirs) => sub_mask(&sub_hashes(&local), theirs),
        None => ALL_SUB_BUCKETS,
    };
    let entries = local.into_iter().filter(|e| in_mask(mask, e.sub)).map(|e| FsEntry { key: e.key, hlc: e.hlc, cluster: e.cluster, vhash: e.vhash }).collect();
    key_lists(partition, segment, mask, entries)
}

/// Keys of one segment the source must push. Both lists sorted by key.
pub fn keys_to_push(local: &[LocalEntry], remote: &[FsEntry]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut r = remote.iter().peekable();
    for l in local {
        while r.peek().map(|e| e.key < l.key).unwrap_or(false) {
            r.next();
        }
        match r.peek() {
            Some(e) if e.key == l.key => {
                let newer = (l.hlc, l.cluster) > (e.hlc, e.cluster);
                let same_version_other_content = (l.hlc, l.cluster) == (e.hlc, e.cluster) && l.vhash != e.vhash;
                if newer || same_version_other_content {
                    out.push(l.key.clone());
                }
                r.next();
            }
            _ => out.push(l.key.clone()),
        }
    }
    out
}

/// Splits a segment's entries (those of the sub-buckets in `sub_mask`) into
/// key lists within the limits.
pub fn key_lists(partition: u32, segment: u32, sub_mask: u32, entries: Vec<FsEntry>) -> Vec<FsKeyList> {
    let mut lists = Vec::new();
    let mut cur = Vec::new();
    let mut bytes = 0;
    for e in entries {
        let sz = e.key.len() + 32;
        if !cur.is_empty() && (cur.len() >= MAX_KEYS_PER_LIST || bytes + sz > MAX_KEY_LIST_BYTES) {
            lists.push(FsKeyList { partition, segment, sub_mask, entries: std::mem::take(&mut cur), last: false });
            bytes = 0;
        }
        bytes += sz;
        cur.push(e);
    }
    lists.push(FsKeyList { partition, segment, sub_mask, entries: cur, last: true });
    lists
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartStats {
    pub segments_differing: u32,
    pub keys_compared: u64,
    pub objects_sent: u64,
    pub bytes_sent: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum SrcState {
    /// Waiting for the hashes of `level`: the children of `parents`.
    AwaitHashes { level: usize, parents: Vec<u32> },
    /// Waiting for the key lists of the diff frame sent last (`pending`);
    /// `ready`: keys to push found so far for it; `queued`: diff frames
    /// still to send, each once the one before is listed and pushed.
    AwaitLists { pending: BTreeSet<u32>, partial: Option<(u32, Vec<FsEntry>)>, ready: Vec<(u32, Vec<Vec<u8>>)>, queued: std::collections::VecDeque<FsDiff> },
    AwaitDone,
    Done,
}

/// What the source driver must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SrcStep {
    /// Send this frame.
    Send(Msg),
    /// Push these keys of `segment` (read them, send FsPush frames).
    Push { segment: u32, keys: Vec<Vec<u8>> },
    /// Every differing segment is handled: send FsDone once pushes are acked.
    AllListed,
    /// The sink confirmed the partition.
    Finished(PartStats),
}

/// Digest of a partition's whole hash tree: xxh3-64 over its segment
/// hashes as little-endian u64s, in order. Equal digests mean equal trees
/// (up to a 2^-64 chance), so identical partitions cost one small frame
/// each way instead of every segment hash.
pub fn tree_digest(hashes: &[u64]) -> u64 {
    let mut bytes = Vec::with_capacity(hashes.len() * 8);
    for h in hashes {
        bytes.extend_from_slice(&h.to_le_bytes());
    }
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

/// Source side of one partition's exchange.
#[derive(Debug)]
pub struct FsSource {
    pub partition: u32,
    tree_segments: u32,
    state: SrcState,
    pub stats: PartStats,
    next_push_seq: u64,
    acked_push_seq: u64,
}

impl FsSource {
    /// `local_hashes`: this side's segment hashes now (their digest goes in
    /// the start frame).
    pub fn start(partition: u32, tree_segments: u32, local_hashes: &[u64]) -> (FsSource, Msg) {
        let digest = tree_digest(local_hashes);
        (
            FsSource { partition, tree_segments, state: SrcState::AwaitHashes { level: 0, parents: Vec::new() }, stats: PartStats::default(), next_push_seq: 1, acked_push_seq: 0 },
            Msg::FsStart(FsStart { partition, tree_segments, digest }),
        )
    }

    pub fn is_done(&self) -> bool {
        self.state == SrcState::Done
    }

    /// Pushes sent but not yet acknowledged.
    pub fn pushes_in_flight(&self) -> u64 {
        self.next_push_seq - 1 - self.acked_push_seq
    }

    /// Records a push frame being sent; returns its body.
    pub fn push(&mut self, records: u32, bytes: u64) -> FsPush {
        let seq = self.next_push_seq;
        self.next_push_seq += 1;
        self.stats.objects_sent += records as u64;
        self.stats.bytes_sent += bytes;
        FsPush { partition: self.partition, seq, records }
    }

    /// Handles a frame; `local_hashes` / `local_segment` read this side's tree.
    pub fn on_msg(
        &mut self,
        m: Msg,
        local_hashes: &dyn Fn() -> Vec<u64>,
        local_segment: &dyn Fn(u32) -> Vec<LocalEntry>,
    ) -> Result<Vec<SrcStep>, ProtoError> {
        let p = self.partition;
        match (&mut self.state, m) {
            (SrcState::AwaitHashes { level: 0, .. }, Msg::FsSegmentHashes(h)) if h.partition == p && h.level == 0 && h.hashes.is_empty() => {
                // The sink's digest matched ours: nothing differs.
                self.state = SrcState::AwaitDone;
                Ok(vec![SrcStep::Send(self.done_msg())])
            }
            (SrcState::AwaitHashes { level, parents }, Msg::FsSegmentHashes(h)) if h.partition == p && h.level as usize == *level => {
                let levels = tree_levels(self.tree_segments);
                let level = *level;
                let nodes = children(&levels, level, parents);
                if h.hashes.len() != nodes.len() {
                    return Err(ProtoError::new(format!(
                        "sink sent {} hashes for level {level} of partition {p}, expected {}",
                        h.hashes.len(),
                        nodes.len()
                    )));
                }
                let local = level_hashes(&local_hashes(), levels[level]);
                let differ: Vec<(u32, u64)> = nodes.iter().zip(&h.hashes).filter(|(&n, &theirs)| local[n as usize] != theirs).map(|(&n, &theirs)| (n, theirs)).collect();
                if differ.is_empty() {
                    self.state = SrcState::AwaitDone;
                    return Ok(vec![SrcStep::Send(self.done_msg())]);
                }
                if level + 1 < levels.len() {
                    // Descend: only under the nodes that differ.
                    let nodes: Vec<u32> = differ.iter().map(|&(n, _)| n).collect();
                    self.state = SrcState::AwaitHashes { level: level + 1, parents: nodes.clone() };
                    return Ok(vec![SrcStep::Send(Msg::FsTreeAsk(FsTreeAsk { partition: p, level: (level + 1) as u8, nodes }))]);
                }
                // The last level: these nodes are the differing segments.
                self.stats.segments_differing = differ.len() as u32;
                let mut frames: std::collections::VecDeque<FsDiff> = differ
                    .chunks(MAX_DIFF_SEGMENTS_PER_FRAME)
                    .map(|segs| {
                        let mut d = FsDiff { partition: p, segments: Vec::new(), sub_hashes: Vec::new(), whole_segments: Vec::new() };
                        for &(s, theirs) in segs {
                            let entries = local_segment(s);
                            // An empty segment on the sink lists nothing
                            // anyway; a near-empty one here lists about as
                            // little as its sub-hashes would cost.
                            if theirs == 0 || entries.len() < FS_SUB_MIN_KEYS {
                                d.whole_segments.push(s);
                            } else {
                                d.segments.push(s);
                                d.sub_hashes.extend(sub_hashes(&entries));
                            }
                        }
                        d
                    })
                    .collect();
                // One diff frame at a time: the sink writes all the key
                // lists of a frame before it reads again, and the pushes
                // for a frame go only once all its lists are in, so the two
                // sides never both write bulk at each other (which could
                // fill both sockets and stall both).
                let first = frames.pop_front().expect("at least one differing segment");
                self.state = SrcState::AwaitLists { pending: diff_segments(&first), partial: None, ready: Vec::new(), queued: frames };
                Ok(vec![SrcStep::Send(Msg::FsDiff(first))])
            }
            (SrcState::AwaitLists { pending, partial, ready, queued }, Msg::FsKeyList(l)) if l.partition == p => {
                if !pending.contains(&l.segment) {
                    return Err(ProtoError::new(format!("key list for segment {} of partition {p}, which was not asked for", l.segment)));
                }
                if l.entries.len() > MAX_KEYS_PER_LIST {
                    return Err(ProtoError::new(format!("key list of {} keys exceeds MAX_KEYS_PER_LIST", l.entries.len())));
                }
                let mut entries = match partial.take() {
                    Some((seg, mut acc)) if seg == l.segment => {
                        if acc.len() + l.entries.len() > MAX_KEYS_PER_SEGMENT {
                            return Err(ProtoError::new(format!("segment {seg} of partition {p} lists more than {MAX_KEYS_PER_SEGMENT} keys")));
                        }
                        acc.extend(l.entries);
                        acc
                    }
                    Some((seg, _)) => return Err(ProtoError::new(format!("key list for segment {} interleaved with segment {seg}", l.segment))),
                    None => l.entries,
                };
                if !l.last {
                    *partial = Some((l.segment, entries));
                    return Ok(Vec::new());
                }
                entries.sort_by(|a, b| a.key.cmp(&b.key));
                pending.remove(&l.segment);
                let mut local = local_segment(l.segment);
                local.retain(|e| in_mask(l.sub_mask, e.sub));
                self.stats.keys_compared += local.len().max(entries.len()) as u64;
                let keys = keys_to_push(&local, &entries);
                if !keys.is_empty() {
                    ready.push((l.segment, keys));
                }
                if !pending.is_empty() {
                    return Ok(Vec::new());
                }
                // Every segment of this diff frame is listed: its pushes,
                // then the next frame, or the end.
                let mut steps: Vec<SrcStep> = std::mem::take(ready).into_iter().map(|(segment, keys)| SrcStep::Push { segment, keys }).collect();
                match queued.pop_front() {
                    Some(next) => {
                        *pending = diff_segments(&next);
                        steps.push(SrcStep::Send(Msg::FsDiff(next)));
                    }
                    None => {
                        self.state = SrcState::AwaitDone;
                        steps.push(SrcStep::AllListed);
                    }
                }
                Ok(steps)
            }
            (_, Msg::FsPushAck(a)) if a.partition == p => {
                if a.seq >= self.next_push_seq {
                    return Err(ProtoError::new(format!("push ack {} for partition {p} beyond the last push {}", a.seq, self.next_push_seq - 1)));
                }
                self.acked_push_seq = self.acked_push_seq.max(a.seq);
                Ok(Vec::new())
            }
            (SrcState::AwaitDone, Msg::FsDone(d)) if d.partition == p => {
                self.state = SrcState::Done;
                Ok(vec![SrcStep::Finished(self.stats.clone())])
            }
            (_, Msg::Error(e)) => Err(ProtoError::new(format!("sink reported error {} for partition {p}: {}", e.code, e.message))),
            (s, other) => Err(ProtoError::new(format!("unexpected {:?} frame for partition {p} in state {s:?}", other.kind()))),
        }
    }

    /// The FsDone frame to send once every push is acknowledged.
    pub fn done_msg(&self) -> Msg {
        Msg::FsDone(FsDone {
            partition: self.partition,
            segments_differing: self.stats.segments_differing,
            keys_compared: self.stats.keys_compared,
            objects_sent: self.stats.objects_sent,
            bytes_sent: self.stats.bytes_sent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn le(k: &str, v: u64) -> LocalEntry {
        LocalEntry { key: k.as_bytes().to_vec(), hlc: v, cluster: 1, vhash: v * 7, sub: 0, contrib: 0 }
    }
    fn fe(k: &str, v: u64) -> FsEntry {
        FsEntry { key: k.as_bytes().to_vec(), hlc: v, cluster: 1, vhash: v * 7 }
    }

    #[test]
    fn pushes_missing_and_older_never_newer() {
        let local = vec![le("a", 2), le("b", 2), le("c", 2), le("d", 2)];
        let remote = vec![fe("a", 2), fe("b", 1), fe("c", 3), fe("e", 1)];
        let keys = keys_to_push(&local, &remote);
        assert_eq!(keys, vec![b"b".to_vec(), b"d".to_vec()]);
        // Same version, different content (a damaged copy): pushed.
        let mut bad = fe("a", 2);
        bad.vhash = 0;
        assert_eq!(keys_to_push(&local[..1], &[bad]), vec![b"a".to_vec()]);
    }

    #[test]
    fn key_lists_respect_limits_and_end_with_last() {
        let entries: Vec<FsEntry> = (0..10_000).map(|i| fe(&format!("key-{i:06}"), 1)).collect();
        let lists = key_lists(3, 9, 0xffff, entries);
        assert!(lists.len() >= 3);
        assert!(lists.iter().all(|l| l.entries.len() <= MAX_KEYS_PER_LIST));
        assert!(lists[..lists.len() - 1].iter().all(|l| !l.last) && lists.last().unwrap().last);
        assert_eq!(lists.iter().map(|l| l.entries.len()).sum::<usize>(), 10_000);
        assert!(lists.iter().all(|l| l.sub_mask == 0xffff));
        assert!(key_lists(0, 0, 0, vec![]).len() == 1);
    }

    /// A toy tree for the tests: segment and sub-bucket from a crc of the
    /// key, contribution from a crc of key and version.
    const SEGS: u32 = 64;
    type Store = BTreeMap<Vec<u8>, (u64, u64)>;
    fn seg_of(k: &[u8]) -> u32 {
        crc32c::crc32c(k) % SEGS
    }
    fn entry(k: &[u8], v: u64, vh: u64) -> LocalEntry {
        let contrib = crc32c::crc32c(&[k, &v.to_le_bytes(), &vh.to_le_bytes()].concat()) as u64 + 1;
        LocalEntry { key: k.to_vec(), hlc: v, cluster: 1, vhash: vh, sub: (crc32c::crc32c(k) / SEGS) % FS_SUB_BUCKETS as u32, contrib }
    }
    fn seg_entries(m: &Store, s: u32) -> Vec<LocalEntry> {
        m.iter().filter(|(k, _)| seg_of(k) == s).map(|(k, (v, vh))| entry(k, *v, *vh)).collect()
    }
    fn hashes(m: &Store) -> Vec<u64> {
        let mut h = vec![0u64; SEGS as usize];
        for (k, (v, vh)) in m {
            h[seg_of(k) as usize] ^= entry(k, *v, *vh).contrib;
        }
        h
    }

    /// What crossed the wire in one exchange.
    #[derive(Default, Debug)]
    struct Seen {
        pushed: Vec<Vec<u8>>,
        listed: usize,
        subs_sent: usize,
        hashes_sent: usize,
        asks: usize,
        diffs: Vec<FsDiff>,
        /// "diff" and "push" steps in the order the source produced them.
        order: Vec<&'static str>,
    }

    /// Runs one partition's exchange, the sink played by the functions
    /// its driver uses (`tree_top`, `tree_answer`, `check_diff`,
    /// `sink_key_lists`).
    fn drive(
        segs: u32,
        src_hashes: &dyn Fn() -> Vec<u64>,
        src_seg: &dyn Fn(u32) -> Vec<LocalEntry>,
        sink_hashes: &dyn Fn() -> Vec<u64>,
        sink_seg: &dyn Fn(u32) -> Vec<LocalEntry>,
    ) -> (Seen, PartStats) {
        let (mut src, start) = FsSource::start(7, segs, &src_hashes());
        let Msg::FsStart(st) = start else { panic!("{start:?}") };
        let theirs = sink_hashes();
        let first = if tree_digest(&theirs) == st.digest { FsSegmentHashes { partition: 7, level: 0, hashes: vec![] } } else { tree_top(7, &theirs) };
        let mut seen = Seen::default();
        let mut inbox = std::collections::VecDeque::from([Msg::FsSegmentHashes(first)]);
        let mut stats = None;
        while let Some(m) = inbox.pop_front() {
            if let Msg::FsSegmentHashes(h) = &m {
                seen.hashes_sent += h.hashes.len();
            }
            for step in src.on_msg(m, src_hashes, src_seg).unwrap() {
                match step {
                    SrcStep::Send(Msg::FsTreeAsk(a)) => {
                        seen.asks += 1;
                        inbox.push_back(Msg::FsSegmentHashes(tree_answer(&sink_hashes(), &a).unwrap()));
                    }
                    SrcStep::Send(Msg::FsDiff(d)) => {
                        check_diff(&d, segs).unwrap();
                        seen.subs_sent += d.sub_hashes.len();
                        let with_subs = d.segments.iter().enumerate().map(|(i, &s)| (s, Some(&d.sub_hashes[i * FS_SUB_BUCKETS..(i + 1) * FS_SUB_BUCKETS])));
                        for (s, remote_sub) in with_subs.chain(d.whole_segments.iter().map(|&s| (s, None))) {
                            for l in sink_key_lists(7, s, remote_sub, sink_seg(s)) {
                                seen.listed += l.entries.len();
                                inbox.push_back(Msg::FsKeyList(l));
                            }
                        }
                        seen.diffs.push(d);
                        seen.order.push("diff");
                    }
                    // The sink echoes FsDone.
                    SrcStep::Send(Msg::FsDone(d)) => inbox.push_back(Msg::FsDone(d)),
                    SrcStep::Push { keys, .. } => {
                        seen.pushed.extend(keys);
                        seen.order.push("push");
                    }
                    SrcStep::AllListed => inbox.push_back(src.done_msg()),
                    SrcStep::Finished(s) => stats = Some(s),
                    other => panic!("unexpected step {other:?}"),
                }
            }
        }
        assert!(src.is_done());
        seen.pushed.sort();
        (seen, stats.expect("the exchange finished"))
    }

    fn exchange(source: &Store, sink: &Store) -> (Seen, PartStats) {
        drive(SEGS, &|| hashes(source), &|s| seg_entries(source, s), &|| hashes(sink), &|s| seg_entries(sink, s))
    }

    /// Drives both sides over a whole partition and checks the sink ends up
    /// with everything it lacked, and that only keys of differing
    /// sub-buckets of differing segments are listed.
    #[test]
    fn exchange_lists_only_differing_sub_buckets() {
        let mut source = Store::new();
        for i in 0..5000u64 {
            source.insert(format!("k{i}").into_bytes(), (1, i));
        }
        let mut sink = source.clone();
        sink.remove(&b"k10"[..]);
        sink.insert(b"k20".to_vec(), (0, 5)); // older on the sink
        sink.insert(b"k30".to_vec(), (9, 5)); // newer on the sink: left alone
        sink.insert(b"k40".to_vec(), (1, 0)); // same version, other content
        sink.insert(b"only-on-sink".to_vec(), (1, 1));
        let (seen, stats) = exchange(&source, &sink);
        let (pushed, listed) = (seen.pushed, seen.listed);
        assert_eq!(pushed, vec![b"k10".to_vec(), b"k20".to_vec(), b"k40".to_vec()]);
        let changed: BTreeSet<u32> = ["k10", "k20", "k30", "k40", "only-on-sink"].iter().map(|k| seg_of(k.as_bytes())).collect();
        assert_eq!(stats.segments_differing as usize, changed.len(), "{stats:?}");
        // 5000 keys in 64 segments × 16 sub-buckets: about 5 keys per
        // sub-bucket, so about 5 listed per difference (not ~80, a segment).
        assert!(listed <= 5 * 16, "only keys of differing sub-buckets are listed ({listed})");
        // Once the pushes are applied nothing differs.
        let mut repaired = sink.clone();
        for k in &pushed {
            repaired.insert(k.clone(), source[k]);
        }
        let (seen, _) = exchange(&source, &repaired);
        assert!(seen.pushed.is_empty(), "{seen:?}");
        assert!(seen.listed <= 16, "only the sub-bucket of the sink-only key ({})", seen.listed);
    }

    #[test]
    fn an_empty_sink_gets_no_sub_hashes_and_everything() {
        let mut source = Store::new();
        for i in 0..3000u64 {
            source.insert(format!("k{i}").into_bytes(), (1, i));
        }
        let (seen, stats) = exchange(&source, &Store::new());
        assert_eq!(seen.pushed.len(), 3000);
        assert_eq!(seen.listed, 0);
        assert_eq!(seen.subs_sent, 0, "every segment of an empty sink is listed whole");
        assert_eq!(stats.segments_differing, SEGS);
        // A segment with fewer than FS_SUB_MIN_KEYS keys here is listed
        // whole, whatever the sink holds.
        let few: Store = source.iter().filter(|(k, _)| seg_of(k) == 3).take(FS_SUB_MIN_KEYS - 1).map(|(k, v)| (k.clone(), *v)).collect();
        let mut sink = few.clone();
        let older = few.keys().next().unwrap().clone();
        sink.insert(older.clone(), (0, 1));
        let (seen, _) = exchange(&few, &sink);
        assert_eq!(seen.pushed, vec![older]);
        assert_eq!((seen.listed, seen.subs_sent), (FS_SUB_MIN_KEYS - 1, 0));
    }

    #[test]
    fn a_diff_of_many_segments_takes_several_frames() {
        let segs = 2 * MAX_DIFF_SEGMENTS_PER_FRAME as u32;
        // Enough keys per segment for sub-hashes to be sent.
        let ls = |s: u32| (0..FS_SUB_MIN_KEYS as u64).map(|i| entry(format!("{s}/{i}").as_bytes(), 1, i)).collect::<Vec<_>>();
        // Unrelated hashes on the two sides (equal constants would XOR to
        // the same node hashes).
        let mix = |seed: u64| move || (0..segs as u64).map(|i| xxhash_rust::xxh3::xxh3_64_with_seed(&i.to_le_bytes(), seed)).collect::<Vec<u64>>();
        let (seen, stats) = drive(segs, &mix(1), &ls, &mix(2), &|_| Vec::new());
        assert_eq!(stats.segments_differing, segs);
        assert_eq!(seen.diffs.len(), 2);
        assert_eq!(seen.diffs.iter().map(|d| d.segments.len()).sum::<usize>(), segs as usize);
        // One frame at a time: the first frame's pushes, all of them,
        // before the second frame goes out.
        let per_frame = MAX_DIFF_SEGMENTS_PER_FRAME;
        let mut expect = vec!["diff"];
        expect.extend(std::iter::repeat_n("push", per_frame));
        expect.push("diff");
        expect.extend(std::iter::repeat_n("push", per_frame));
        assert_eq!(seen.order, expect);
        assert_eq!(seen.pushed.len(), segs as usize * FS_SUB_MIN_KEYS);
        for d in &seen.diffs {
            // Every frame fits the body limit.
            assert!(crate::frame::encode(&Msg::FsDiff(d.clone()), 0, 2).len() <= crate::MAX_BODY_BYTES + crate::HEADER_BYTES);
        }
        let mut bad = seen.diffs[0].clone();
        bad.sub_hashes.pop();
        assert!(check_diff(&bad, segs).unwrap_err().contains("sub-bucket hashes"));
        let mut bad = seen.diffs[1].clone();
        bad.segments[0] = segs;
        assert!(check_diff(&bad, segs).unwrap_err().contains(&format!("names segment {segs}")));
    }

    #[test]
    fn the_tree_is_walked_only_under_differing_nodes() {
        assert_eq!(tree_levels(4096), vec![4, 8, 12]);
        assert_eq!(tree_levels(64), vec![4, 6]);
        assert_eq!(tree_levels(1), vec![0]);
        assert_eq!(tree_levels(1 << 16), vec![4, 8, 12, 16]);
        let segs = 4096u32;
        let ours: Vec<u64> = (0..segs as u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1).collect();
        let mut theirs = ours.clone();
        theirs[2049] ^= 0xff;
        let (ours2, theirs2) = (ours.clone(), theirs.clone());
        let (seen, stats) = drive(segs, &move || ours2.clone(), &|_| Vec::new(), &move || theirs2.clone(), &|_| Vec::new());
        assert_eq!(stats.segments_differing, 1);
        assert_eq!(seen.diffs[0].whole_segments, vec![2049]);
        // 16 top nodes, then 16 under the one differing, then its 16
        // segments: 48 hashes instead of 4096.
        assert_eq!((seen.hashes_sent, seen.asks), (48, 2));
        // The level hashes of a level are the XOR of the segments below.
        let top = level_hashes(&ours, 4);
        assert_eq!(top[0], ours[..256].iter().fold(0, |a, b| a ^ b));
        // A wholly different tree: every level in full.
        let (seen, stats) = drive(segs, &move || ours.clone(), &|_| Vec::new(), &|| vec![0; 4096], &|_| Vec::new());
        assert_eq!(stats.segments_differing, segs);
        assert_eq!(seen.hashes_sent, 16 + 256 + 4096);
    }

    #[test]
    fn identical_partitions_finish_after_one_round_trip() {
        let (mut src, _) = FsSource::start(1, 4, &[9, 9, 9, 9]);
        let lh = || vec![1, 2, 3, 4];
        let ls = |_s: u32| Vec::new();
        // Four segments: level 0 is the segments themselves.
        let steps = src.on_msg(Msg::FsSegmentHashes(FsSegmentHashes { partition: 1, level: 0, hashes: vec![1, 2, 3, 4] }), &lh, &ls).unwrap();
        assert!(matches!(&steps[0], SrcStep::Send(Msg::FsDone(d)) if d.segments_differing == 0));
    }

    #[test]
    fn matching_digests_skip_the_segment_hashes() {
        let local = vec![1u64, 2, 3, 4];
        let (mut src, start) = FsSource::start(1, 4, &local);
        let Msg::FsStart(st) = start else { panic!() };
        assert_eq!(st.digest, tree_digest(&[1, 2, 3, 4]));
        assert_ne!(st.digest, tree_digest(&[1, 2, 4, 3]), "the digest depends on the order of the segments");
        assert_ne!(st.digest, tree_digest(&[1, 2, 3, 5]));
        let lh = || vec![1, 2, 3, 4];
        let ls = |_s: u32| Vec::new();
        // The sink found the same digest and sent no hashes.
        let steps = src.on_msg(Msg::FsSegmentHashes(FsSegmentHashes { partition: 1, level: 0, hashes: vec![] }), &lh, &ls).unwrap();
        assert!(matches!(&steps[0], SrcStep::Send(Msg::FsDone(d)) if d.segments_differing == 0));
        let steps = src.on_msg(src.done_msg(), &lh, &ls).unwrap();
        assert!(matches!(steps[0], SrcStep::Finished(_)));
    }

    #[test]
    fn bad_frames_are_protocol_errors() {
        let (mut src, _) = FsSource::start(1, 4, &[0; 4]);
        let lh = || vec![0; 4];
        let ls = |_s: u32| Vec::new();
        assert!(src.on_msg(Msg::FsSegmentHashes(FsSegmentHashes { partition: 1, level: 0, hashes: vec![0; 3] }), &lh, &ls).is_err());
        let (mut src, _) = FsSource::start(1, 4, &[0; 4]);
        assert!(src.on_msg(Msg::FsSegmentHashes(FsSegmentHashes { partition: 1, level: 1, hashes: vec![0; 4] }), &lh, &ls).is_err(), "a level not asked for");
        // The sink's checks of a tree ask.
        let hs = vec![1u64; 4096];
        let ask = |level: u8, nodes: Vec<u32>| tree_answer(&hs, &FsTreeAsk { partition: 3, level, nodes });
        assert_eq!(ask(1, vec![0, 15]).unwrap().hashes.len(), 32);
        assert!(ask(0, vec![]).unwrap_err().contains("level 0"));
        assert!(ask(3, vec![0]).unwrap_err().contains("levels 0 to 2"));
        assert!(ask(2, vec![5, 5]).unwrap_err().contains("ascending"));
        assert!(ask(1, vec![16]).unwrap_err().contains("below 16"));
        let (mut src, _) = FsSource::start(1, 4, &[0; 4]);
        assert!(src.on_msg(Msg::FsKeyList(FsKeyList { partition: 1, segment: 0, sub_mask: 0, entries: vec![], last: true }), &lh, &ls).is_err());
        let (mut src, _) = FsSource::start(1, 4, &[0; 4]);
        assert!(src.on_msg(Msg::FsPushAck(FsPushAck { partition: 1, seq: 5 }), &lh, &ls).is_err());
    }
}
