//! Durable cursors: `cursors.dat` in the partition directory, replaced
//! atomically (write a temporary file, fsync, rename, fsync the directory).
//!
//! ```text
//! magic "DPLNCUR\0" | count u32 | count × (name_len u16 | name | lsn u64) | crc32c u32
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

pub const CURSOR_FILE: &str = "cursors.dat";
const MAGIC: &[u8; 8] = b"DPLNCUR\0";
/// Longest cursor name.
pub const MAX_CURSOR_NAME_BYTES: usize = 255;
/// Most cursors a partition holds (one per sink, plus tools).
pub const MAX_CURSORS: usize = 1024;

pub(crate) fn encode(c: &BTreeMap<String, u64>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(c.len() as u32).to_le_bytes());
    for (name, lsn) in c {
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&lsn.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

pub(crate) fn decode(path: &Path, b: &[u8]) -> Result<BTreeMap<String, u64>> {
    let bad = |w: &str| Error::BadFile { path: path.to_path_buf(), what: w.to_string() };
    if b.len() < 16 {
        return Err(bad("cursor file too short"));
    }
    let (body, crc) = b.split_at(b.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().unwrap()) {
        return Err(bad("cursor file checksum mismatch"));
    }
    if &body[..8] != MAGIC {
        return Err(bad("bad cursor file magic"));
    }
    let n = u32::from_le_bytes(body[8..12].try_into().unwrap()) as usize;
    let mut o = 12;
    let mut m = BTreeMap::new();
    for _ in 0..n {
        if o + 2 > body.len() {
            return Err(bad("cursor file truncated"));
        }
        let l = u16::from_le_bytes([body[o], body[o + 1]]) as usize;
        o += 2;
        if o + l + 8 > body.len() {
            return Err(bad("cursor file truncated"));
        }
        let name = std::str::from_utf8(&body[o..o + l]).map_err(|_| bad("cursor name is not UTF-8"))?;
        o += l;
        let lsn = u64::from_le_bytes(body[o..o + 8].try_into().unwrap());
        o += 8;
        m.insert(name.to_string(), lsn);
    }
    Ok(m)
}

/// Blocking: runs on glommio's blocking pool.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}
