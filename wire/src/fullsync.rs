//! Fullsync exchange of one partition: its cost follows the number of
//! differences, not the number of keys.
//!
//! ```text
//! source                                      sink
//!   ── FsStart{p, tree_segments, digest} ─────▶
//!   ◀──────────── FsSegmentHashes{p, hashes} ──  (one u64 per tree segment,
//!                                                 none if the digests match:
//!                                                 skip to FsDone)
//!   compare with local hashes
//!   ── FsDiff{p, segments that differ} ───────▶  (empty: skip to FsDone)
//!   ◀─── FsKeyList{p, seg, entries, last} ─────  per differing segment, in
//!                                                 lists of at most
//!                                                 MAX_KEYS_PER_LIST keys
//!   per list: keys the sink lacks, holds older,
//!   or holds with different content
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
use crate::{ProtoError, MAX_KEYS_PER_LIST, MAX_KEY_LIST_BYTES};

/// Most keys one tree segment may list (all its key lists together).
pub const MAX_KEYS_PER_SEGMENT: usize = 4 << 20;

/// Segments whose hashes differ.
pub fn diff_segments(local: &[u64], remote: &[u64]) -> Vec<u32> {
    assert_eq!(local.len(), remote.len());
    local.iter().zip(remote).enumerate().filter(|(_, (a, b))| a != b).map(|(i, _)| i as u32).collect()
}

/// A local entry as the source sees it: key, version (hlc, cluster), hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalEntry {
    pub key: Vec<u8>,
    pub hlc: u64,
    pub cluster: u64,
    pub vhash: u64,
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

/// Splits a segment's entries into key lists within the limits.
pub fn key_lists(partition: u32, segment: u32, entries: Vec<FsEntry>) -> Vec<FsKeyList> {
    let mut lists = Vec::new();
    let mut cur = Vec::new();
    let mut bytes = 0;
    for e in entries {
        let sz = e.key.len() + 32;
        if !cur.is_empty() && (cur.len() >= MAX_KEYS_PER_LIST || bytes + sz > MAX_KEY_LIST_BYTES) {
            lists.push(FsKeyList { partition, segment, entries: std::mem::take(&mut cur), last: false });
            bytes = 0;
        }
        bytes += sz;
        cur.push(e);
    }
    lists.push(FsKeyList { partition, segment, entries: cur, last: true });
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
    AwaitHashes,
    AwaitLists { pending: BTreeSet<u32>, partial: Option<(u32, Vec<FsEntry>)> },
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
            FsSource { partition, tree_segments, state: SrcState::AwaitHashes, stats: PartStats::default(), next_push_seq: 1, acked_push_seq: 0 },
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
            (SrcState::AwaitHashes, Msg::FsSegmentHashes(h)) if h.partition == p && h.hashes.is_empty() => {
                // The sink's digest matched ours: nothing differs.
                self.state = SrcState::AwaitDone;
                Ok(vec![SrcStep::Send(self.done_msg())])
            }
            (SrcState::AwaitHashes, Msg::FsSegmentHashes(h)) if h.partition == p => {
                if h.hashes.len() != self.tree_segments as usize {
                    return Err(ProtoError::new(format!("sink sent {} segment hashes for partition {p}, expected {}", h.hashes.len(), self.tree_segments)));
                }
                let local = local_hashes();
                let diff = diff_segments(&local, &h.hashes);
                self.stats.segments_differing = diff.len() as u32;
                if diff.is_empty() {
                    self.state = SrcState::AwaitDone;
                    return Ok(vec![SrcStep::Send(self.done_msg())]);
                }
                self.state = SrcState::AwaitLists { pending: diff.iter().copied().collect(), partial: None };
                Ok(vec![SrcStep::Send(Msg::FsDiff(FsDiff { partition: p, segments: diff }))])
            }
            (SrcState::AwaitLists { pending, partial }, Msg::FsKeyList(l)) if l.partition == p => {
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
                let local = local_segment(l.segment);
                self.stats.keys_compared += local.len().max(entries.len()) as u64;
                let keys = keys_to_push(&local, &entries);
                let mut steps = Vec::new();
                if !keys.is_empty() {
                    steps.push(SrcStep::Push { segment: l.segment, keys });
                }
                if pending.is_empty() {
                    self.state = SrcState::AwaitDone;
                    steps.push(SrcStep::AllListed);
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
        LocalEntry { key: k.as_bytes().to_vec(), hlc: v, cluster: 1, vhash: v * 7 }
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
        let lists = key_lists(3, 9, entries);
        assert!(lists.len() >= 3);
        assert!(lists.iter().all(|l| l.entries.len() <= MAX_KEYS_PER_LIST));
        assert!(lists[..lists.len() - 1].iter().all(|l| !l.last) && lists.last().unwrap().last);
        assert_eq!(lists.iter().map(|l| l.entries.len()).sum::<usize>(), 10_000);
        assert!(key_lists(0, 0, vec![]).len() == 1);
    }

    /// Drives both sides over a whole partition and checks the sink ends up
    /// with everything it lacked, and that keys in matching segments are
    /// never listed.
    #[test]
    fn exchange_touches_only_differing_segments() {
        const SEGS: u32 = 64;
        let seg_of = |k: &[u8]| (crc32c::crc32c(k) % SEGS) as u32;
        let mut source: BTreeMap<Vec<u8>, (u64, u64)> = BTreeMap::new();
        for i in 0..5000u64 {
            source.insert(format!("k{i}").into_bytes(), (1, i));
        }
        let mut sink = source.clone();
        sink.remove(&b"k10"[..]);
        sink.insert(b"k20".to_vec(), (0, 5)); // older on the sink
        sink.insert(b"k30".to_vec(), (9, 5)); // newer on the sink: left alone
        let hashes = |m: &BTreeMap<Vec<u8>, (u64, u64)>| {
            let mut h = vec![0u64; SEGS as usize];
            for (k, (v, vh)) in m {
                h[seg_of(k) as usize] ^= crc32c::crc32c(&[k.as_slice(), &v.to_le_bytes(), &vh.to_le_bytes()].concat()) as u64 + 1;
            }
            h
        };
        let seg_entries = |m: &BTreeMap<Vec<u8>, (u64, u64)>, s: u32| -> Vec<LocalEntry> {
            m.iter().filter(|(k, _)| seg_of(k) == s).map(|(k, (v, vh))| LocalEntry { key: k.clone(), hlc: *v, cluster: 1, vhash: *vh }).collect()
        };
        let (mut src, start) = FsSource::start(7, SEGS, &hashes(&source));
        assert!(matches!(start, Msg::FsStart(_)));
        let sink_hashes = Msg::FsSegmentHashes(FsSegmentHashes { partition: 7, hashes: hashes(&sink) });
        let src_map = source.clone();
        let lh = || hashes(&src_map);
        let ls = |s: u32| seg_entries(&src_map, s);
        let steps = src.on_msg(sink_hashes, &lh, &ls).unwrap();
        let SrcStep::Send(Msg::FsDiff(diff)) = &steps[0] else { panic!("{steps:?}") };
        assert_eq!(diff.segments.len(), 3, "exactly the three segments with a difference");
        let mut pushed = Vec::new();
        let mut listed = 0;
        for &s in &diff.segments {
            let entries: Vec<FsEntry> = seg_entries(&sink, s).into_iter().map(|e| FsEntry { key: e.key, hlc: e.hlc, cluster: e.cluster, vhash: e.vhash }).collect();
            listed += entries.len();
            for l in key_lists(7, s, entries) {
                for st in src.on_msg(Msg::FsKeyList(l), &lh, &ls).unwrap() {
                    if let SrcStep::Push { keys, .. } = st {
                        pushed.extend(keys);
                    }
                }
            }
        }
        assert!(listed < 5000 / 10, "only keys of differing segments are listed ({listed})");
        pushed.sort();
        assert_eq!(pushed, vec![b"k10".to_vec(), b"k20".to_vec()]);
        let done = src.done_msg();
        let steps = src.on_msg(done, &lh, &ls).unwrap();
        assert!(matches!(steps[0], SrcStep::Finished(_)));
        assert!(src.is_done());
    }

    #[test]
    fn identical_partitions_finish_after_one_round_trip() {
        let (mut src, _) = FsSource::start(1, 4, &[9, 9, 9, 9]);
        let h = vec![1, 2, 3, 4];
        let lh = || vec![1, 2, 3, 4];
        let ls = |_s: u32| Vec::new();
        let steps = src.on_msg(Msg::FsSegmentHashes(FsSegmentHashes { partition: 1, hashes: h }), &lh, &ls).unwrap();
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
        let steps = src.on_msg(Msg::FsSegmentHashes(FsSegmentHashes { partition: 1, hashes: vec![] }), &lh, &ls).unwrap();
        assert!(matches!(&steps[0], SrcStep::Send(Msg::FsDone(d)) if d.segments_differing == 0));
        let steps = src.on_msg(src.done_msg(), &lh, &ls).unwrap();
        assert!(matches!(steps[0], SrcStep::Finished(_)));
    }

    #[test]
    fn bad_frames_are_protocol_errors() {
        let (mut src, _) = FsSource::start(1, 4, &[0; 4]);
        let lh = || vec![0; 4];
        let ls = |_s: u32| Vec::new();
        assert!(src.on_msg(Msg::FsSegmentHashes(FsSegmentHashes { partition: 1, hashes: vec![0; 3] }), &lh, &ls).is_err());
        let (mut src, _) = FsSource::start(1, 4, &[0; 4]);
        assert!(src.on_msg(Msg::FsKeyList(FsKeyList { partition: 1, segment: 0, entries: vec![], last: true }), &lh, &ls).is_err());
        let (mut src, _) = FsSource::start(1, 4, &[0; 4]);
        assert!(src.on_msg(Msg::FsPushAck(FsPushAck { partition: 1, seq: 5 }), &lh, &ls).is_err());
    }
}
