//! Storage records as they arrive from a peer: `Header::parse`,
//! `Header::parse_verified`, the batch payload splitter the sink uses
//! (`repl::apply::parse_payload`), and what the sink reads out of a record
//! (routing metadata, block keys, manifests and the other rkyv values).
//!
//! Invariants:
//! * a record that verifies has its key, meta and value ranges inside the
//!   buffer, contiguous, within `len`, and `padded_len` is aligned;
//! * `parse_verified` agrees with `parse` on everything but the crc/length;
//! * `parse_payload` returns exactly `count` records, each verified, each at
//!   an aligned offset inside the payload, and covering it to the end; it
//!   accepts exactly when walking the records by hand does;
//! * routing metadata, block keys and manifests re-encode to themselves.

use dataplane::model::{self, BucketMeta, Intent, Manifest, PartMeta, PartRef, UploadMeta};
use dataplane::repl::apply::parse_payload;
use storage::record::{align_up, encode_record, DecodeError, Header, HEADER_BYTES, MAX_KEY_BYTES, MAX_META_BYTES, MAX_RECORD_BYTES, MAX_VALUE_BYTES, RECORD_ALIGN};
use storage::{Kind, Version, FLAG_ORDERED, FLAG_REPLICATE, FLAG_TREE};

use crate::driver::Target;
use crate::mutate::Mutator;

pub static TARGET: Target = Target {
    name: "record",
    run,
    seeds,
    mutator: Mutator {
        dict: &[b"M", b"K", b"B", b"\0", &[0; 16], &[1, 0, 0, 0, 0, 0, 0, 0]],
        limits: &[
            HEADER_BYTES as u64,
            MAX_KEY_BYTES as u64,
            MAX_META_BYTES as u64,
            MAX_VALUE_BYTES as u64,
            MAX_RECORD_BYTES as u64,
            (HEADER_BYTES + MAX_KEY_BYTES + MAX_META_BYTES + MAX_VALUE_BYTES) as u64,
            model::MAX_ROUTED_CLUSTERS as u64,
            8, // last Kind
        ],
        max_len: 64 << 10,
        printable: false,
    },
    fixup: Some(fixup),
};

fn err_class(e: &DecodeError) -> String {
    match e {
        DecodeError::Short { .. } => "Short".into(),
        DecodeError::BadCrc { .. } => "BadCrc".into(),
        DecodeError::BadHeader(s) => format!("BadHeader {s}"),
    }
}

/// The invariants of one verified record at the start of `b`.
fn check_record(h: &Header, b: &[u8]) {
    let len = h.len as usize;
    assert!(len <= b.len(), "verified record of {len} bytes in a buffer of {}", b.len());
    assert!(len >= HEADER_BYTES);
    let (k, m, v) = (h.key_range(), h.meta_range(), h.value_range());
    assert_eq!(k.start, HEADER_BYTES);
    assert_eq!(k.end, m.start);
    assert_eq!(m.end, v.start);
    assert_eq!(v.end, len, "ranges do not end at the record length");
    assert!(b.get(k.clone()).is_some() && b.get(m.clone()).is_some() && b.get(v.clone()).is_some());
    assert!(h.key_len as usize <= MAX_KEY_BYTES && h.meta_len as usize <= MAX_META_BYTES && h.value_len as usize <= MAX_VALUE_BYTES);
    assert_eq!(h.padded_len() % RECORD_ALIGN, 0);
    assert!(h.padded_len() >= len && h.padded_len() - len < RECORD_ALIGN);
    assert!(h.padded_len() <= MAX_RECORD_BYTES);
    assert!(h.lsn != 0);
}

/// What the sink reads out of a record; each must not panic, and what
/// decodes must re-encode to the same thing.
fn read_contents(h: &Header, b: &[u8]) -> &'static str {
    let key = &b[h.key_range()];
    let meta = &b[h.meta_range()];
    let value = &b[h.value_range()];
    let routed = model::decode_routed(meta);
    assert!(routed.len() <= model::MAX_ROUTED_CLUSTERS);
    if !routed.is_empty() {
        assert_eq!(model::decode_routed(&model::encode_meta(&routed, key.len())), routed);
    }
    if let Some((bucket, k, uid, index)) = model::parse_block_key(key) {
        assert_eq!(model::block_key(&bucket, &k, &uid, index), key, "block key does not re-encode to itself");
    }
    if key.first() == Some(&model::NS_MANIFEST) {
        if let Some((bucket, k)) = model::split_object_id(&key[1..]) {
            assert_eq!(model::manifest_key(bucket, k), key);
        }
    }
    match h.kind {
        Kind::Manifest => match Manifest::decode(value) {
            Ok(m) => {
                assert_eq!(Manifest::decode(&m.encode()).as_ref(), Ok(&m));
                // Not block_keys()/blocks_for_range(): a manifest with
                // block_size 0 makes them divide by zero (reported, see
                // fuzz/README.md), and a huge part size makes them loop.
                "manifest ok"
            }
            Err(_) => "manifest bad",
        },
        _ => {
            // Other values: whichever rkyv type the key namespace names.
            let ok = match key.first().copied() {
                Some(model::NS_BUCKET) => BucketMeta::decode(value).map(|x| assert_eq!(BucketMeta::decode(&x.encode()).as_ref(), Ok(&x))).is_ok(),
                Some(model::NS_UPLOAD) => UploadMeta::decode(value).map(|x| assert_eq!(UploadMeta::decode(&x.encode()).as_ref(), Ok(&x))).is_ok(),
                Some(model::NS_PART) => PartMeta::decode(value).map(|x| assert_eq!(PartMeta::decode(&x.encode()).as_ref(), Ok(&x))).is_ok(),
                Some(model::NS_INTENT) => Intent::decode(value).map(|x| assert_eq!(Intent::decode(&x.encode()).as_ref(), Ok(&x))).is_ok(),
                _ => return "value",
            };
            if ok {
                "meta value ok"
            } else {
                "meta value bad"
            }
        }
    }
}

pub fn run(data: &[u8]) -> String {
    let parsed = Header::parse(data);
    let verified = Header::parse_verified(data);
    let mut class = match (&parsed, &verified) {
        (_, Ok(v)) => {
            assert_eq!(parsed.as_ref(), Ok(v), "parse and parse_verified disagree");
            check_record(v, data);
            format!("verified {:?}", v.kind)
        }
        (Err(e), Err(e2)) => {
            assert_eq!(e, e2, "parse_verified fails differently from parse");
            err_class(e)
        }
        (Ok(h), Err(e)) => {
            assert!(matches!(e, DecodeError::Short { .. } | DecodeError::BadCrc { .. }), "parse_verified: {e} after parse accepted");
            if let DecodeError::Short { need, .. } = e {
                assert_eq!(*need, h.len as usize);
            }
            err_class(e)
        }
    };

    // Walk the records back to back, as the sink and the segment scanner do.
    let mut off = 0usize;
    let mut n = 0u32;
    let mut replicable = true;
    while off < data.len() {
        let rest = &data[off..];
        match Header::parse_verified(rest) {
            Ok(h) => {
                check_record(&h, rest);
                let what = read_contents(&h, rest);
                if n == 0 {
                    class.push_str(&format!(" {what}"));
                }
                replicable &= !(h.kind.is_internal() || h.kind == Kind::Expunge || h.kind == Kind::Local || h.key_len == 0);
                off += h.padded_len();
                n += 1;
            }
            Err(_) => break,
        }
    }
    let walked_to_end = off == data.len();

    // The payload splitter, with the right count and wrong ones. (Counts
    // stay near the real one: parse_payload reserves `count` entries up
    // front, see fuzz/README.md.)
    for count in [n, n + 1, n.saturating_sub(1)] {
        match parse_payload(data, count) {
            Ok(recs) => {
                assert_eq!(recs.len(), count as usize);
                let mut expect = 0usize;
                for (o, h) in &recs {
                    assert_eq!(*o, expect, "records are not back to back");
                    assert_eq!(o % RECORD_ALIGN, 0);
                    assert_eq!(Header::parse_verified(&data[*o..]).as_ref(), Ok(h));
                    check_record(h, &data[*o..]);
                    assert!(!h.kind.is_internal() && h.key_len > 0);
                    expect = o + h.padded_len();
                }
                assert_eq!(expect, data.len(), "payload accepted but its records do not cover it exactly");
                if count == n {
                    class.push_str(&format!(" | payload ok {}", n.min(3)));
                }
            }
            Err(e) => {
                if count == n {
                    assert!(!(walked_to_end && replicable), "parse_payload refused {n} well-formed records: {e}");
                    let why = e.split(": ").nth(1).unwrap_or(&e);
                    class.push_str(&format!(" | payload {}", why.split_whitespace().take(6).collect::<Vec<_>>().join(" ")));
                }
            }
        }
    }
    class
}

/// Makes each record self-consistent: `len` from the field lengths, reserved
/// bytes zero, crc over what is there.
pub fn fixup(b: &mut Vec<u8>) {
    let mut off = 0usize;
    while b.len() >= off + HEADER_BYTES {
        let r = &mut b[off..];
        let key_len = u16::from_le_bytes([r[10], r[11]]) as u64;
        let meta_len = u16::from_le_bytes([r[12], r[13]]) as u64;
        let value_len = u32::from_le_bytes(r[16..20].try_into().unwrap()) as u64;
        let len = HEADER_BYTES as u64 + key_len + meta_len + value_len;
        r[4..8].copy_from_slice(&(len as u32).to_le_bytes());
        r[14..16].fill(0);
        r[20..24].fill(0);
        r[56..64].fill(0);
        let end = (len as usize).min(r.len());
        let c = crc32c::crc32c(&r[4..end]);
        r[0..4].copy_from_slice(&c.to_le_bytes());
        off += align_up(len as usize);
    }
}

fn version(i: u64) -> Version {
    Version { hlc: (1_700_000_000_000 << 16) | i, cluster: 0x00c0_ffee }
}

fn manifest(parts: Vec<u64>, inline: Vec<u8>) -> Manifest {
    Manifest {
        bucket: "photos".into(),
        key: "2024/cat.jpg".into(),
        version_hlc: version(1).hlc,
        version_cluster: 7,
        size: parts.iter().sum::<u64>() + inline.len() as u64,
        etag: "9e107d9d372bb6826bd81d3542a419d6".into(),
        content_type: "image/jpeg".into(),
        user_meta: vec![("camera".into(), "x100".into())],
        checksums: vec![("x-amz-checksum-crc32c".into(), "yZRlqg==".into())],
        last_modified_ms: 1_700_000_000_000,
        block_size: 1 << 20,
        parts: parts.into_iter().enumerate().map(|(i, size)| PartRef { uid: [i as u8 + 1; 16], size }).collect(),
        inline,
    }
}

fn rec(kind: Kind, flags: u8, lsn: u64, key: &[u8], routed: &[u64], value: &[u8]) -> Vec<u8> {
    let meta = if routed.is_empty() { Vec::new() } else { model::encode_meta(routed, key.len()) };
    encode_record(kind, flags, lsn, version(lsn), lsn.wrapping_mul(0x9e37_79b9), key, &meta, value)
}

pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let repl = FLAG_REPLICATE | FLAG_TREE | FLAG_ORDERED;
    let uid = [0xab; 16];
    let mk = model::manifest_key("photos", "2024/cat.jpg");
    let bk0 = model::block_key("photos", "2024/cat.jpg", &uid, 0);
    let bk1 = model::block_key("photos", "2024/cat.jpg", &uid, 1);
    let big = manifest(vec![(1 << 20) + 5], vec![]);
    let small = manifest(vec![], b"tiny object".to_vec());
    let bucket = BucketMeta { name: "photos".into(), created_ms: 1_700_000_000_000, owner: "admin".into() };
    let upload = UploadMeta {
        bucket: "photos".into(),
        key: "big.iso".into(),
        upload_id: uid,
        created_ms: 1,
        content_type: "application/octet-stream".into(),
        user_meta: vec![],
        checksum_algorithm: "CRC32".into(),
    };
    let part = PartMeta { part_number: 3, uid, size: 5 << 20, etag: "abc".into(), last_modified_ms: 2, checksums: vec![] };
    let intent = Intent { bucket: "photos".into(), key: "big.iso".into(), uid, created_ms: 3 };

    let one: Vec<(&str, Vec<u8>)> = vec![
        ("manifest-inline", rec(Kind::Manifest, repl, 1, &mk, &[7], &small.encode())),
        ("manifest-parts", rec(Kind::Manifest, repl, 2, &mk, &[7, 9], &big.encode())),
        ("block", rec(Kind::Block, FLAG_REPLICATE, 3, &bk0, &[7], &[0x5a; 100])),
        ("block-empty-meta", rec(Kind::Block, FLAG_REPLICATE, 4, &bk1, &[], b"0123456789abcdef")),
        ("tombstone", rec(Kind::Tombstone, repl, 5, &mk, &[7], b"")),
        ("bucket", rec(Kind::Bucket, repl, 6, &model::bucket_key("photos"), &[7], &bucket.encode())),
        ("local-upload", rec(Kind::Local, 0, 7, &model::upload_key("photos", "big.iso", &uid), &[], &upload.encode())),
        ("local-part", rec(Kind::Local, 0, 8, &model::part_key("photos", "big.iso", &uid, 3), &[], &part.encode())),
        ("local-intent", rec(Kind::Local, 0, 9, &model::intent_key(&uid), &[], &intent.encode())),
        ("expunge", rec(Kind::Expunge, 0, 10, &mk, &[], b"")),
        ("seal", rec(Kind::Seal, 0, 11, b"", &[], b"")),
        ("pad", rec(Kind::Pad, 0, 12, b"", &[], &[0; 200])),
        ("routed-max", rec(Kind::Manifest, repl, 13, &mk, &(1..=model::MAX_ROUTED_CLUSTERS as u64).collect::<Vec<_>>(), &small.encode())),
        ("key-max", rec(Kind::Block, FLAG_REPLICATE, 14, &[b'K'; MAX_KEY_BYTES], &[7], b"v")),
        ("lsn-max", rec(Kind::Block, FLAG_REPLICATE, u64::MAX, &bk0, &[7], b"v")),
    ];
    let mut out: Vec<(String, Vec<u8>)> = one.iter().map(|(n, b)| (format!("one-{n}"), b.clone())).collect();
    let by = |n: &str| one.iter().find(|(x, _)| *x == n).unwrap().1.clone();
    // Payloads as a batch carries them: blocks ahead of their manifest.
    let batches: Vec<(&str, Vec<&str>)> = vec![
        ("batch-object", vec!["block", "block-empty-meta", "manifest-parts"]),
        ("batch-mixed", vec!["bucket", "manifest-inline", "tombstone", "routed-max"]),
        ("batch-with-local", vec!["block", "local-upload"]),
        ("batch-with-seal", vec!["manifest-inline", "seal"]),
    ];
    for (name, parts) in batches {
        out.push((name.to_string(), parts.iter().flat_map(|p| by(p)).collect()));
    }
    // Unpadded last record (the sink must refuse it), trailing garbage.
    let mut unpadded = by("block");
    let h = Header::parse(&unpadded).unwrap();
    unpadded.truncate(h.len as usize);
    out.push(("unpadded".into(), unpadded));
    let mut trailing = by("tombstone");
    trailing.extend_from_slice(&[0; 16]);
    out.push(("trailing-zeros".into(), trailing));
    out
}
