//! Record format.
//!
//! Every record starts at a 16-byte aligned file offset with a fixed 64-byte
//! little-endian header, followed by the key, the metadata and the value, then
//! zero padding up to the next 16-byte boundary:
//!
//! ```text
//! off size field
//!   0   4  crc32c over bytes 4..len (rest of the header, key, meta, value)
//!   4   4  len: header + key + meta + value, unpadded
//!   8   1  kind
//!   9   1  flags (FLAG_*)
//!  10   2  key_len
//!  12   2  meta_len
//!  14   2  reserved, zero
//!  16   4  value_len
//!  20   4  reserved, zero
//!  24   8  lsn (per partition, strictly increasing)
//!  32   8  version.hlc (hybrid logical clock: ms << 16 | counter)
//!  40   8  version.cluster (origin cluster id)
//!  48   8  vhash (caller's hash of the value, used by the hash tree)
//!  56   8  reserved, zero
//! ```
//!
//! The same bytes travel on the wire in realtime batches, so a sink checks the
//! crc the source's storage wrote.

pub const HEADER_BYTES: usize = 64;
/// Records start at multiples of this many bytes.
pub const RECORD_ALIGN: usize = 16;
/// Longest key a record may carry.
pub const MAX_KEY_BYTES: usize = 2048;
/// Largest per-record metadata (replication routing and the like).
pub const MAX_META_BYTES: usize = 4096;
/// Largest value a record may carry (object blocks are at most this large).
pub const MAX_VALUE_BYTES: usize = 64 << 20;
/// Largest record, header and padding included.
pub const MAX_RECORD_BYTES: usize =
    align_up(HEADER_BYTES + MAX_KEY_BYTES + MAX_META_BYTES + MAX_VALUE_BYTES);

/// The record is streamed to realtime sinks.
pub const FLAG_REPLICATE: u8 = 1;
/// The record's key is part of the partition's hash tree (fullsync).
pub const FLAG_TREE: u8 = 2;
/// The record's key is kept in the partition's ordered key set (listings).
pub const FLAG_ORDERED: u8 = 4;
const KNOWN_FLAGS: u8 = FLAG_REPLICATE | FLAG_TREE | FLAG_ORDERED;

pub const fn align_up(n: usize) -> usize {
    (n + RECORD_ALIGN - 1) & !(RECORD_ALIGN - 1)
}

/// What a record is. Storage gives special meaning to `Tombstone` (the key
/// stays in the index as deleted), `Expunge` (the key leaves the index) and
/// `Seal` (end of a segment); every other kind is an ordinary value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    Manifest = 1,
    Block = 2,
    Tombstone = 3,
    Bucket = 4,
    /// Node-local metadata (multipart state, upload intents, ...).
    Local = 5,
    /// Removes a key from the index; never replicated.
    Expunge = 6,
    /// Marks the end of a segment's records.
    Seal = 7,
    /// Fills the rest of a page so that the next write buffer starts on a
    /// fresh page (writes of consecutive full buffers then never overlap).
    Pad = 8,
}

impl Kind {
    pub fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Manifest,
            2 => Kind::Block,
            3 => Kind::Tombstone,
            4 => Kind::Bucket,
            5 => Kind::Local,
            6 => Kind::Expunge,
            7 => Kind::Seal,
            8 => Kind::Pad,
            _ => return None,
        })
    }

    /// Records storage writes for itself (never visible to callers).
    pub fn is_internal(self) -> bool {
        matches!(self, Kind::Seal | Kind::Pad)
    }

    /// Deletion markers: kept by compaction until it is safe to forget them.
    pub fn is_marker(self) -> bool {
        matches!(self, Kind::Tombstone | Kind::Expunge)
    }
}

/// A version: hybrid logical clock stamp plus origin cluster id. Totally
/// ordered, larger wins; equal stamps break ties by cluster id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub hlc: u64,
    pub cluster: u64,
}

impl Version {
    pub const ZERO: Version = Version { hlc: 0, cluster: 0 };

    /// Milliseconds since the epoch encoded in the hybrid clock stamp.
    pub fn millis(&self) -> u64 {
        self.hlc >> 16
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub crc: u32,
    pub len: u32,
    pub kind: Kind,
    pub flags: u8,
    pub key_len: u16,
    pub meta_len: u16,
    pub value_len: u32,
    pub lsn: u64,
    pub version: Version,
    pub vhash: u64,
}

/// Why bytes do not hold a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the header or than the record's length.
    Short { have: usize, need: usize },
    /// The header fields are inconsistent.
    BadHeader(String),
    /// The checksum does not match the contents.
    BadCrc { stored: u32, computed: u32 },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Short { have, need } => write!(f, "short record: {have} of {need} bytes"),
            DecodeError::BadHeader(s) => write!(f, "bad record header: {s}"),
            DecodeError::BadCrc { stored, computed } => {
                write!(f, "crc mismatch: stored {stored:#010x}, computed {computed:#010x}")
            }
        }
    }
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

impl Header {
    /// Total bytes the record occupies in the log, padding included.
    pub fn padded_len(&self) -> usize {
        align_up(self.len as usize)
    }

    pub fn key_range(&self) -> std::ops::Range<usize> {
        HEADER_BYTES..HEADER_BYTES + self.key_len as usize
    }

    pub fn meta_range(&self) -> std::ops::Range<usize> {
        let s = HEADER_BYTES + self.key_len as usize;
        s..s + self.meta_len as usize
    }

    pub fn value_range(&self) -> std::ops::Range<usize> {
        let s = HEADER_BYTES + self.key_len as usize + self.meta_len as usize;
        s..s + self.value_len as usize
    }

    /// Parses and sanity-checks the fixed header (not the crc).
    pub fn parse(b: &[u8]) -> Result<Header, DecodeError> {
        if b.len() < HEADER_BYTES {
            return Err(DecodeError::Short { have: b.len(), need: HEADER_BYTES });
        }
        let len = u32_at(b, 4);
        let kind_raw = b[8];
        let kind = Kind::from_u8(kind_raw)
            .ok_or_else(|| DecodeError::BadHeader(format!("unknown kind {kind_raw}")))?;
        let flags = b[9];
        if flags & !KNOWN_FLAGS != 0 {
            return Err(DecodeError::BadHeader(format!("unknown flags {flags:#x}")));
        }
        let key_len = u16_at(b, 10);
        let meta_len = u16_at(b, 12);
        let value_len = u32_at(b, 16);
        if u16_at(b, 14) != 0 || u32_at(b, 20) != 0 || u64_at(b, 56) != 0 {
            return Err(DecodeError::BadHeader("reserved bytes are not zero".into()));
        }
        if key_len as usize > MAX_KEY_BYTES
            || meta_len as usize > MAX_META_BYTES
            || value_len as usize > MAX_VALUE_BYTES
        {
            return Err(DecodeError::BadHeader(format!(
                "lengths over limits: key {key_len}, meta {meta_len}, value {value_len}"
            )));
        }
        let expect = HEADER_BYTES as u64 + key_len as u64 + meta_len as u64 + value_len as u64;
        if len as u64 != expect {
            return Err(DecodeError::BadHeader(format!(
                "length {len} does not match header+key+meta+value = {expect}"
            )));
        }
        let lsn = u64_at(b, 24);
        if lsn == 0 {
            return Err(DecodeError::BadHeader("lsn 0".into()));
        }
        Ok(Header {
            crc: u32_at(b, 0),
            len,
            kind,
            flags,
            key_len,
            meta_len,
            value_len,
            lsn,
            version: Version { hlc: u64_at(b, 32), cluster: u64_at(b, 40) },
            vhash: u64_at(b, 48),
        })
    }

    /// Parses the header and verifies the crc over the whole record.
    /// `b` must hold at least the record's `len` bytes.
    pub fn parse_verified(b: &[u8]) -> Result<Header, DecodeError> {
        let h = Header::parse(b)?;
        let len = h.len as usize;
        if b.len() < len {
            return Err(DecodeError::Short { have: b.len(), need: len });
        }
        let computed = crc32c::crc32c(&b[4..len]);
        if computed != h.crc {
            return Err(DecodeError::BadCrc { stored: h.crc, computed });
        }
        Ok(h)
    }

    /// Writes the 64 header bytes. The crc field is computed from `key`,
    /// `meta` and the value parts, which must match the lengths given.
    pub fn encode(
        out: &mut [u8; HEADER_BYTES],
        kind: Kind,
        flags: u8,
        lsn: u64,
        version: Version,
        vhash: u64,
        key: &[u8],
        meta: &[u8],
        value: &[&[u8]],
    ) -> Header {
        let value_len: usize = value.iter().map(|p| p.len()).sum();
        debug_assert!(key.len() <= MAX_KEY_BYTES && meta.len() <= MAX_META_BYTES);
        debug_assert!(value_len <= MAX_VALUE_BYTES);
        let len = (HEADER_BYTES + key.len() + meta.len() + value_len) as u32;
        out.fill(0);
        out[4..8].copy_from_slice(&len.to_le_bytes());
        out[8] = kind as u8;
        out[9] = flags;
        out[10..12].copy_from_slice(&(key.len() as u16).to_le_bytes());
        out[12..14].copy_from_slice(&(meta.len() as u16).to_le_bytes());
        out[16..20].copy_from_slice(&(value_len as u32).to_le_bytes());
        out[24..32].copy_from_slice(&lsn.to_le_bytes());
        out[32..40].copy_from_slice(&version.hlc.to_le_bytes());
        out[40..48].copy_from_slice(&version.cluster.to_le_bytes());
        out[48..56].copy_from_slice(&vhash.to_le_bytes());
        let mut crc = crc32c::crc32c(&out[4..]);
        crc = crc32c::crc32c_append(crc, key);
        crc = crc32c::crc32c_append(crc, meta);
        for p in value {
            crc = crc32c::crc32c_append(crc, p);
        }
        out[0..4].copy_from_slice(&crc.to_le_bytes());
        Header {
            crc,
            len,
            kind,
            flags,
            key_len: key.len() as u16,
            meta_len: meta.len() as u16,
            value_len: value_len as u32,
            lsn,
            version,
            vhash,
        }
    }
}

/// Encodes a whole record into a fresh vector (padded to RECORD_ALIGN).
/// Used by tests and by callers that ship records outside the log.
pub fn encode_record(
    kind: Kind,
    flags: u8,
    lsn: u64,
    version: Version,
    vhash: u64,
    key: &[u8],
    meta: &[u8],
    value: &[u8],
) -> Vec<u8> {
    let mut hdr = [0u8; HEADER_BYTES];
    let h = Header::encode(&mut hdr, kind, flags, lsn, version, vhash, key, meta, &[value]);
    let mut v = Vec::with_capacity(h.padded_len());
    v.extend_from_slice(&hdr);
    v.extend_from_slice(key);
    v.extend_from_slice(meta);
    v.extend_from_slice(value);
    v.resize(h.padded_len(), 0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_crc() {
        let v = Version { hlc: 7 << 16, cluster: 9 };
        let rec = encode_record(Kind::Block, FLAG_TREE, 42, v, 1234, b"key", b"m", b"hello world");
        assert_eq!(rec.len() % RECORD_ALIGN, 0);
        let h = Header::parse_verified(&rec).unwrap();
        assert_eq!(h.kind, Kind::Block);
        assert_eq!(h.lsn, 42);
        assert_eq!(h.version, v);
        assert_eq!(&rec[h.key_range()], b"key");
        assert_eq!(&rec[h.meta_range()], b"m");
        assert_eq!(&rec[h.value_range()], b"hello world");
        for i in 0..h.len as usize {
            let mut bad = rec.clone();
            bad[i] ^= 0x10;
            assert!(Header::parse_verified(&bad).is_err(), "flip at {i} undetected");
        }
    }

    #[test]
    fn short_input_is_an_error_not_a_panic() {
        let rec = encode_record(Kind::Manifest, 0, 1, Version::ZERO, 0, b"k", b"", b"v");
        for n in 0..rec.len() {
            let _ = Header::parse_verified(&rec[..n]);
        }
        assert!(matches!(Header::parse(&rec[..10]), Err(DecodeError::Short { .. })));
    }

    #[test]
    fn versions_order_by_stamp_then_cluster() {
        let a = Version { hlc: 5, cluster: 9 };
        let b = Version { hlc: 6, cluster: 1 };
        let c = Version { hlc: 6, cluster: 2 };
        assert!(a < b && b < c);
    }
}
