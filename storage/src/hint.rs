//! Hint files: a sealed segment's record headers and keys, without values,
//! so that startup rebuilds the index without reading the segment.
//!
//! ```text
//! magic "DPLNHNT\0" | format u32 | 0 u32 | base u64 | gen u32 | 0 u32 | end u64 | count u64
//! count × entry: off u32 | len u32 | lsn u64 | kind u8 | flags u8 | key_len u16 |
//!                hlc u64 | cluster u64 | vhash u64 | key bytes
//! crc32c u32 over everything before it
//! ```

use crate::record::{Header, Kind, Version, MAX_KEY_BYTES};
use crate::segment::{SegName, FORMAT_VERSION};

pub const HINT_MAGIC: &[u8; 8] = b"DPLNHNT\0";
const FIXED: usize = 8 + 4 + 4 + 8 + 4 + 4 + 8 + 8;
const ENTRY_FIXED: usize = 4 + 4 + 8 + 1 + 1 + 2 + 8 + 8 + 8;

pub(crate) struct HintEntry<'a> {
    pub off: u64,
    pub len: u32,
    pub lsn: u64,
    pub kind: Kind,
    pub flags: u8,
    pub version: Version,
    pub vhash: u64,
    pub key: &'a [u8],
}

#[derive(Default)]
pub(crate) struct HintWriter {
    body: Vec<u8>,
    count: u64,
}

impl HintWriter {
    pub fn push(&mut self, off: u64, h: &Header, key: &[u8]) {
        let b = &mut self.body;
        b.extend_from_slice(&(off as u32).to_le_bytes());
        b.extend_from_slice(&h.len.to_le_bytes());
        b.extend_from_slice(&h.lsn.to_le_bytes());
        b.push(h.kind as u8);
        b.push(h.flags);
        b.extend_from_slice(&(key.len() as u16).to_le_bytes());
        b.extend_from_slice(&h.version.hlc.to_le_bytes());
        b.extend_from_slice(&h.version.cluster.to_le_bytes());
        b.extend_from_slice(&h.vhash.to_le_bytes());
        b.extend_from_slice(key);
        self.count += 1;
    }

    pub fn finish(self, name: SegName, end: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED + self.body.len() + 4);
        out.extend_from_slice(HINT_MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&name.base.to_le_bytes());
        out.extend_from_slice(&name.gen.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&end.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.body);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

/// Parses a hint file; calls `f` per entry in order. Returns the segment's
/// end offset, or an explanation of why the hint cannot be used.
pub(crate) fn parse(b: &[u8], name: SegName, mut f: impl FnMut(HintEntry<'_>)) -> Result<u64, String> {
    if b.len() < FIXED + 4 {
        return Err("hint file too short".into());
    }
    let (body, crc) = b.split_at(b.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().unwrap()) {
        return Err("hint file checksum mismatch".into());
    }
    if &body[0..8] != HINT_MAGIC {
        return Err("bad hint magic".into());
    }
    let u32_at = |o: usize| u32::from_le_bytes(body[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(body[o..o + 8].try_into().unwrap());
    if u32_at(8) > FORMAT_VERSION {
        return Err(format!("hint format {} is newer than {}", u32_at(8), FORMAT_VERSION));
    }
    if u64_at(16) != name.base || u32_at(24) != name.gen {
        return Err("hint belongs to another segment".into());
    }
    let end = u64_at(32);
    let count = u64_at(40);
    let mut o = FIXED;
    for _ in 0..count {
        if o + ENTRY_FIXED > body.len() {
            return Err("hint entry truncated".into());
        }
        let kind = Kind::from_u8(body[o + 16]).ok_or("bad kind in hint")?;
        let key_len = u16::from_le_bytes([body[o + 18], body[o + 19]]) as usize;
        if key_len > MAX_KEY_BYTES || o + ENTRY_FIXED + key_len > body.len() {
            return Err("hint key out of bounds".into());
        }
        f(HintEntry {
            off: u32_at(o) as u64,
            len: u32_at(o + 4),
            lsn: u64_at(o + 8),
            kind,
            flags: body[o + 17],
            version: Version { hlc: u64_at(o + 20), cluster: u64_at(o + 28) },
            vhash: u64_at(o + 36),
            key: &body[o + ENTRY_FIXED..o + ENTRY_FIXED + key_len],
        });
        o += ENTRY_FIXED + key_len;
    }
    if o != body.len() {
        return Err("trailing bytes in hint file".into());
    }
    Ok(end)
}
