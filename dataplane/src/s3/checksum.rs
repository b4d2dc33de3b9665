//! S3 flexible checksums (CRC32, CRC32C, CRC64NVME, SHA1, SHA256), MD5 for
//! ETags and `Content-MD5`, and SHA-256 for `x-amz-content-sha256`.
//!
//! All checksum values travel base64-encoded (big-endian for the CRCs), as
//! in the `x-amz-checksum-*` headers and trailers.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use md5::{Digest as _, Md5};
use sha1::Sha1;
use sha2::Sha256;

use super::encoding::hex_lower;
use super::error::{S3Error, S3ErrorCode};

/// A flexible-checksum algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumAlgorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl ChecksumAlgorithm {
    pub const ALL: [ChecksumAlgorithm; 5] = [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32c,
        ChecksumAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
    ];

    /// From a header / trailer name such as `x-amz-checksum-crc32`
    /// (case-insensitive).
    pub fn from_header_name(name: &str) -> Option<ChecksumAlgorithm> {
        ChecksumAlgorithm::ALL
            .into_iter()
            .find(|a| a.header_name().eq_ignore_ascii_case(name))
    }

    /// From the algorithm name used by `x-amz-checksum-algorithm`,
    /// `x-amz-sdk-checksum-algorithm` and `<ChecksumAlgorithm>`
    /// (`CRC32`, `CRC32C`, `CRC64NVME`, `SHA1`, `SHA256`; case-insensitive).
    pub fn from_name(name: &str) -> Option<ChecksumAlgorithm> {
        ChecksumAlgorithm::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name.trim()))
    }

    /// `CRC32`, `CRC32C`, `CRC64NVME`, `SHA1`, `SHA256`.
    pub fn name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "CRC32",
            ChecksumAlgorithm::Crc32c => "CRC32C",
            ChecksumAlgorithm::Crc64Nvme => "CRC64NVME",
            ChecksumAlgorithm::Sha1 => "SHA1",
            ChecksumAlgorithm::Sha256 => "SHA256",
        }
    }

    /// `x-amz-checksum-crc32` etc.
    pub fn header_name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "x-amz-checksum-crc32",
            ChecksumAlgorithm::Crc32c => "x-amz-checksum-crc32c",
            ChecksumAlgorithm::Crc64Nvme => "x-amz-checksum-crc64nvme",
            ChecksumAlgorithm::Sha1 => "x-amz-checksum-sha1",
            ChecksumAlgorithm::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// XML element name (`ChecksumCRC32`, ...).
    pub fn xml_element(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "ChecksumCRC32",
            ChecksumAlgorithm::Crc32c => "ChecksumCRC32C",
            ChecksumAlgorithm::Crc64Nvme => "ChecksumCRC64NVME",
            ChecksumAlgorithm::Sha1 => "ChecksumSHA1",
            ChecksumAlgorithm::Sha256 => "ChecksumSHA256",
        }
    }

    /// Raw digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            ChecksumAlgorithm::Crc32 | ChecksumAlgorithm::Crc32c => 4,
            ChecksumAlgorithm::Crc64Nvme => 8,
            ChecksumAlgorithm::Sha1 => 20,
            ChecksumAlgorithm::Sha256 => 32,
        }
    }

    /// Decodes and length-checks a base64 checksum value for this algorithm.
    /// Errors with `InvalidRequest` ("Value for x-amz-checksum-... header is invalid.").
    pub fn decode_value(self, b64: &str) -> Result<Vec<u8>, S3Error> {
        match B64.decode(b64.trim()) {
            Ok(v) if v.len() == self.digest_len() => Ok(v),
            _ => Err(S3Error::new(
                S3ErrorCode::InvalidRequest,
                format!("Value for {} header is invalid.", self.header_name()),
            )),
        }
    }
}

#[derive(Clone)]
enum State {
    Crc32(crc32fast::Hasher),
    Crc32c(u32),
    Crc64(crc64fast_nvme::Digest),
    Sha1(Sha1),
    Sha256(Sha256),
}

/// Incremental flexible checksum.
#[derive(Clone)]
pub struct Checksummer {
    alg: ChecksumAlgorithm,
    state: State,
}

impl std::fmt::Debug for Checksummer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checksummer")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl Checksummer {
    pub fn new(alg: ChecksumAlgorithm) -> Checksummer {
        let state = match alg {
            ChecksumAlgorithm::Crc32 => State::Crc32(crc32fast::Hasher::new()),
            ChecksumAlgorithm::Crc32c => State::Crc32c(0),
            ChecksumAlgorithm::Crc64Nvme => State::Crc64(crc64fast_nvme::Digest::new()),
            ChecksumAlgorithm::Sha1 => State::Sha1(Sha1::new()),
            ChecksumAlgorithm::Sha256 => State::Sha256(Sha256::new()),
        };
        Checksummer { alg, state }
    }

    /// From `x-amz-checksum-crc32` etc.
    pub fn from_header_name(name: &str) -> Option<Checksummer> {
        ChecksumAlgorithm::from_header_name(name).map(Checksummer::new)
    }

    pub fn algorithm(&self) -> ChecksumAlgorithm {
        self.alg
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Crc32(h) => h.update(data),
            State::Crc32c(c) => *c = crc32c::crc32c_append(*c, data),
            State::Crc64(d) => d.write(data),
            State::Sha1(h) => h.update(data),
            State::Sha256(h) => h.update(data),
        }
    }

    /// The raw digest (big-endian for CRCs).
    pub fn finish_bytes(self) -> Vec<u8> {
        match self.state {
            State::Crc32(h) => h.finalize().to_be_bytes().to_vec(),
            State::Crc32c(c) => c.to_be_bytes().to_vec(),
            State::Crc64(d) => d.sum64().to_be_bytes().to_vec(),
            State::Sha1(h) => h.finalize().to_vec(),
            State::Sha256(h) => h.finalize().to_vec(),
        }
    }

    /// The digest base64-encoded, as S3 sends it.
    pub fn finish_base64(self) -> String {
        B64.encode(self.finish_bytes())
    }

    /// Finishes and compares with the client's base64 value. Returns the
    /// computed base64 value on success; `InvalidRequest` if the value is
    /// not valid base64 of the right length; `BadDigest` on mismatch (the
    /// message names the algorithm, expected and computed values).
    pub fn verify_base64(self, expected_b64: &str) -> Result<String, S3Error> {
        let alg = self.alg;
        let expected = alg.decode_value(expected_b64)?;
        let computed = self.finish_bytes();
        let computed_b64 = B64.encode(&computed);
        if computed != expected {
            return Err(checksum_mismatch(alg, expected_b64.trim(), &computed_b64));
        }
        Ok(computed_b64)
    }
}

/// The `BadDigest` error for a flexible-checksum mismatch.
pub fn checksum_mismatch(
    alg: ChecksumAlgorithm,
    expected_b64: &str,
    computed_b64: &str,
) -> S3Error {
    S3Error::new(
        S3ErrorCode::BadDigest,
        format!(
            "The {} you specified did not match the calculated checksum (expected {}, computed {}).",
            alg.name(),
            expected_b64,
            computed_b64
        ),
    )
    .with_extra("Algorithm", alg.name())
    .with_extra("ExpectedChecksum", expected_b64)
    .with_extra("CalculatedChecksum", computed_b64)
}

/// One-shot flexible checksum, base64.
pub fn checksum_base64(alg: ChecksumAlgorithm, data: &[u8]) -> String {
    let mut c = Checksummer::new(alg);
    c.update(data);
    c.finish_base64()
}

/// The multipart "checksum of checksums" S3 reports for composite objects:
/// `base64(alg(concat(raw part checksums)))-N`.
pub fn composite_checksum(
    alg: ChecksumAlgorithm,
    part_checksums_b64: &[&str],
) -> Result<String, S3Error> {
    let mut c = Checksummer::new(alg);
    for p in part_checksums_b64 {
        c.update(&alg.decode_value(p)?);
    }
    Ok(format!(
        "{}-{}",
        c.finish_base64(),
        part_checksums_b64.len()
    ))
}

/// Incremental MD5 (ETags, `Content-MD5`).
#[derive(Clone, Default)]
pub struct Md5Hasher(Md5);

impl Md5Hasher {
    pub fn new() -> Md5Hasher {
        Md5Hasher(Md5::new())
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> [u8; 16] {
        self.0.finalize().into()
    }
}

/// MD5 of `data`.
pub fn md5(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

/// The quoted ETag S3 gives a single-part object: `"<hex md5>"`.
pub fn etag_from_md5(md5: &[u8; 16]) -> String {
    format!("\"{}\"", hex_lower(md5))
}

/// The quoted ETag of a multipart object: `"<hex md5(concat(part md5s))>-N"`.
pub fn multipart_etag(part_md5s: &[[u8; 16]]) -> String {
    let mut h = Md5::new();
    for p in part_md5s {
        h.update(p);
    }
    let d: [u8; 16] = h.finalize().into();
    format!("\"{}-{}\"", hex_lower(&d), part_md5s.len())
}

/// Parses a `Content-MD5` header (base64 of 16 bytes) or fails with
/// `InvalidDigest`.
pub fn parse_content_md5(header: &str) -> Result<[u8; 16], S3Error> {
    match B64.decode(header.trim()) {
        Ok(v) if v.len() == 16 => {
            let mut out = [0u8; 16];
            out.copy_from_slice(&v);
            Ok(out)
        }
        _ => Err(S3Error::new(
            S3ErrorCode::InvalidDigest,
            "The Content-MD5 you specified is not valid.",
        )),
    }
}

/// Checks a body's MD5 against the `Content-MD5` header: `InvalidDigest` if
/// the header is malformed, `BadDigest` on mismatch.
pub fn verify_content_md5(header: &str, computed: &[u8; 16]) -> Result<(), S3Error> {
    let expected = parse_content_md5(header)?;
    if &expected != computed {
        let computed_b64 = B64.encode(computed);
        return Err(S3Error::new(
            S3ErrorCode::BadDigest,
            format!(
                "The Content-MD5 you specified did not match what we received (expected {}, computed {}).",
                header.trim(),
                computed_b64
            ),
        )
        .with_extra("ExpectedDigest", header.trim())
        .with_extra("CalculatedDigest", computed_b64));
    }
    Ok(())
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Incremental SHA-256 (for `x-amz-content-sha256` payload checks).
#[derive(Clone, Default)]
pub struct Sha256Hasher(Sha256);

impl Sha256Hasher {
    pub fn new() -> Sha256Hasher {
        Sha256Hasher(Sha256::new())
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// Compares the body hash with the signed `x-amz-content-sha256` value:
/// `XAmzContentSHA256Mismatch` (400) on mismatch.
pub fn verify_payload_sha256(expected: &[u8; 32], computed: &[u8; 32]) -> Result<(), S3Error> {
    if expected != computed {
        return Err(S3Error::new(
            S3ErrorCode::XAmzContentSHA256Mismatch,
            format!(
                "The provided 'x-amz-content-sha256' header does not match what was computed (expected {}, computed {}).",
                hex_lower(expected),
                hex_lower(computed)
            ),
        )
        .with_extra("ClientComputedContentSHA256", hex_lower(expected))
        .with_extra("S3ComputedContentSHA256", hex_lower(computed)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_value(alg: ChecksumAlgorithm) -> Vec<u8> {
        let mut c = Checksummer::new(alg);
        c.update(b"123456789");
        c.finish_bytes()
    }

    #[test]
    fn catalogue_check_values() {
        // The standard "123456789" check values of each algorithm.
        assert_eq!(
            check_value(ChecksumAlgorithm::Crc32),
            0xCBF43926u32.to_be_bytes()
        );
        assert_eq!(
            check_value(ChecksumAlgorithm::Crc32c),
            0xE3069283u32.to_be_bytes()
        );
        assert_eq!(
            check_value(ChecksumAlgorithm::Crc64Nvme),
            0xAE8B14860A799888u64.to_be_bytes()
        );
        assert_eq!(
            hex_lower(&check_value(ChecksumAlgorithm::Sha1)),
            "f7c3bc1d808e04732adf679965ccc34ca7ae3441"
        );
        assert_eq!(
            hex_lower(&check_value(ChecksumAlgorithm::Sha256)),
            "15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225"
        );
    }

    #[test]
    fn known_s3_values() {
        // Values captured from boto3 / the AWS docs.
        assert_eq!(checksum_base64(ChecksumAlgorithm::Crc32, b"hi"), "2JMqrA==");
        assert_eq!(checksum_base64(ChecksumAlgorithm::Crc32, b""), "AAAAAA==");
        assert_eq!(
            checksum_base64(ChecksumAlgorithm::Crc32, b"signed body"),
            "rRAh5A=="
        );
        assert_eq!(
            checksum_base64(ChecksumAlgorithm::Sha256, &b"abc".repeat(10)),
            "665ni80UHMm51TKyZPhUCWtkWvQUkMeHIYKZ4bvGUQ4="
        );
        assert_eq!(
            checksum_base64(ChecksumAlgorithm::Sha1, &b"xyz".repeat(7)),
            "Hky2IliKJhuuGr3WmY3uFFqiC8s="
        );
        assert_eq!(
            checksum_base64(ChecksumAlgorithm::Crc32c, &[b'a'; 66560]),
            "sOO8/Q=="
        );
        assert_eq!(
            checksum_base64(ChecksumAlgorithm::Crc64Nvme, b""),
            "AAAAAAAAAAA="
        );
    }

    #[test]
    fn incremental_equals_one_shot_for_all_splits() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        for alg in ChecksumAlgorithm::ALL {
            let whole = checksum_base64(alg, &data);
            for split in [0, 1, 3, 64, 500, 999, 1000] {
                let mut c = Checksummer::new(alg);
                c.update(&data[..split]);
                c.update(&data[split..]);
                assert_eq!(c.finish_base64(), whole, "{alg:?} split {split}");
            }
        }
    }

    #[test]
    fn names_and_lookup() {
        for alg in ChecksumAlgorithm::ALL {
            assert_eq!(
                ChecksumAlgorithm::from_header_name(alg.header_name()),
                Some(alg)
            );
            assert_eq!(ChecksumAlgorithm::from_name(alg.name()), Some(alg));
            assert_eq!(
                ChecksumAlgorithm::from_name(&alg.name().to_lowercase()),
                Some(alg)
            );
            assert_eq!(Checksummer::new(alg).finish_bytes().len(), alg.digest_len());
            assert!(alg.xml_element().starts_with("Checksum"));
        }
        assert_eq!(
            ChecksumAlgorithm::from_header_name("X-Amz-Checksum-CRC32C"),
            Some(ChecksumAlgorithm::Crc32c)
        );
        assert!(Checksummer::from_header_name("x-amz-checksum-md5").is_none());
        assert_eq!(
            Checksummer::from_header_name("x-amz-checksum-sha256")
                .unwrap()
                .algorithm(),
            ChecksumAlgorithm::Sha256
        );
    }

    #[test]
    fn verify_reports_mismatch_with_details() {
        let mut c = Checksummer::new(ChecksumAlgorithm::Crc32);
        c.update(b"hi");
        assert_eq!(c.clone().verify_base64("2JMqrA==").unwrap(), "2JMqrA==");
        let e = c.clone().verify_base64("AAAAAA==").unwrap_err();
        assert_eq!(e.code, S3ErrorCode::BadDigest);
        assert_eq!(e.status(), 400);
        assert!(e.message.contains("CRC32"), "{}", e.message);
        assert!(e.message.contains("AAAAAA=="), "{}", e.message);
        assert!(e.message.contains("2JMqrA=="), "{}", e.message);
        assert_eq!(e.extra("CalculatedChecksum"), Some("2JMqrA=="));
        let e = c.clone().verify_base64("not base64!").unwrap_err();
        assert_eq!(e.code, S3ErrorCode::InvalidRequest);
        assert!(e.message.contains("x-amz-checksum-crc32"));
        // Right base64 but wrong length for the algorithm.
        let e = c.verify_base64("AAAAAAAAAAA=").unwrap_err();
        assert_eq!(e.code, S3ErrorCode::InvalidRequest);
    }

    #[test]
    fn md5_etags_and_content_md5() {
        let d = md5(b"");
        assert_eq!(etag_from_md5(&d), "\"d41d8cd98f00b204e9800998ecf8427e\"");
        let mut h = Md5Hasher::new();
        h.update(b"hello ");
        h.update(b"world");
        assert_eq!(h.finish(), md5(b"hello world"));
        // Multipart ETag: md5 of the concatenated binary part digests.
        let parts = [md5(b"part one"), md5(b"part two")];
        let mut cat = Vec::new();
        cat.extend_from_slice(&parts[0]);
        cat.extend_from_slice(&parts[1]);
        assert_eq!(
            multipart_etag(&parts),
            format!("\"{}-2\"", hex_lower(&md5(&cat)))
        );

        let good = B64.encode(md5(b"payload!"));
        assert_eq!(good, "11IM9p9tSnORpO9hvAtijw==");
        assert!(verify_content_md5(&good, &md5(b"payload!")).is_ok());
        let e = verify_content_md5(&good, &md5(b"other")).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::BadDigest);
        assert!(e.message.contains(&good));
        assert_eq!(
            verify_content_md5("xyz", &d).unwrap_err().code,
            S3ErrorCode::InvalidDigest
        );
        assert_eq!(
            verify_content_md5("AAAA", &d).unwrap_err().code,
            S3ErrorCode::InvalidDigest
        );
    }

    #[test]
    fn composite_checksums() {
        let a = checksum_base64(ChecksumAlgorithm::Sha256, b"a");
        let b = checksum_base64(ChecksumAlgorithm::Sha256, b"b");
        let mut raw = B64.decode(&a).unwrap();
        raw.extend(B64.decode(&b).unwrap());
        let want = format!("{}-2", checksum_base64(ChecksumAlgorithm::Sha256, &raw));
        assert_eq!(
            composite_checksum(ChecksumAlgorithm::Sha256, &[&a, &b]).unwrap(),
            want
        );
        assert!(composite_checksum(ChecksumAlgorithm::Crc32, &[&a]).is_err());
    }

    #[test]
    fn payload_sha256() {
        let h = sha256(b"Welcome to Amazon S3.");
        assert_eq!(
            hex_lower(&h),
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
        );
        let mut inc = Sha256Hasher::new();
        inc.update(b"Welcome to ");
        inc.update(b"Amazon S3.");
        assert_eq!(inc.finish(), h);
        assert!(verify_payload_sha256(&h, &h).is_ok());
        let e = verify_payload_sha256(&h, &sha256(b"")).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::XAmzContentSHA256Mismatch);
        assert_eq!(e.status(), 400);
    }
}
