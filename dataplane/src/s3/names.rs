//! Bucket-name and object-key validation.
//!
//! Bucket names follow the current S3 general-purpose bucket rules. Object
//! keys are any UTF-8 string of 1 to 1024 bytes without NUL (the storage
//! layer uses NUL as a separator). Keys are opaque: `../../etc/passwd` is a
//! valid key and must never be interpreted as a file path.

use super::error::{S3Error, S3ErrorCode};

pub const MIN_BUCKET_NAME_LEN: usize = 3;
pub const MAX_BUCKET_NAME_LEN: usize = 63;
/// Longest object key in bytes (UTF-8).
pub const MAX_KEY_BYTES: usize = 1024;

/// Prefixes S3 reserves.
pub const RESERVED_BUCKET_PREFIXES: &[&str] = &["xn--", "sthree-", "amzn-s3-demo-"];
/// Suffixes S3 reserves (access-point aliases, directory buckets, ...).
pub const RESERVED_BUCKET_SUFFIXES: &[&str] =
    &["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"];

fn bad_bucket(name: &str, why: &str) -> S3Error {
    S3Error::new(
        S3ErrorCode::InvalidBucketName,
        format!("The specified bucket is not valid: {why}."),
    )
    .with_extra("BucketName", name)
}

/// True when `name` looks like an IPv4 address (four dot-separated groups of
/// digits), which S3 forbids as a bucket name.
fn looks_like_ipv4(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Validates a bucket name; `InvalidBucketName` (400) with a message saying
/// which rule failed.
pub fn validate_bucket_name(name: &str) -> Result<(), S3Error> {
    let len = name.len();
    if !(MIN_BUCKET_NAME_LEN..=MAX_BUCKET_NAME_LEN).contains(&len) {
        return Err(bad_bucket(
            name,
            "bucket names must be between 3 and 63 characters long",
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        return Err(bad_bucket(
            name,
            &format!("bucket names can consist only of lowercase letters, numbers, dots and hyphens (found {c:?})"),
        ));
    }
    let b = name.as_bytes();
    if !b[0].is_ascii_alphanumeric() || !b[len - 1].is_ascii_alphanumeric() {
        return Err(bad_bucket(
            name,
            "bucket names must begin and end with a letter or number",
        ));
    }
    if name.contains("..") {
        return Err(bad_bucket(
            name,
            "bucket names must not contain two adjacent periods",
        ));
    }
    if name.contains(".-") || name.contains("-.") {
        return Err(bad_bucket(
            name,
            "a hyphen must not be adjacent to a period",
        ));
    }
    if looks_like_ipv4(name) {
        return Err(bad_bucket(
            name,
            "bucket names must not be formatted as an IP address",
        ));
    }
    if let Some(p) = RESERVED_BUCKET_PREFIXES
        .iter()
        .find(|p| name.starts_with(*p))
    {
        return Err(bad_bucket(
            name,
            &format!("bucket names must not start with the reserved prefix \"{p}\""),
        ));
    }
    if let Some(s) = RESERVED_BUCKET_SUFFIXES.iter().find(|s| name.ends_with(*s)) {
        return Err(bad_bucket(
            name,
            &format!("bucket names must not end with the reserved suffix \"{s}\""),
        ));
    }
    Ok(())
}

/// Validates an object key: 1..=1024 bytes (`KeyTooLongError` beyond), no
/// NUL byte (`InvalidArgument`). An empty key is `InvalidArgument` too.
pub fn validate_key(key: &str) -> Result<(), S3Error> {
    if key.is_empty() {
        return Err(S3Error::new(
            S3ErrorCode::InvalidArgument,
            "The object key must not be empty.",
        )
        .with_extra("ArgumentName", "key"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(S3Error::new(
            S3ErrorCode::KeyTooLongError,
            format!(
                "Your key is too long: {} bytes, the maximum is {MAX_KEY_BYTES} bytes.",
                key.len()
            ),
        )
        .with_extra("Size", key.len().to_string())
        .with_extra("MaxSizeAllowed", MAX_KEY_BYTES.to_string()));
    }
    if key.as_bytes().contains(&0) {
        return Err(S3Error::new(
            S3ErrorCode::InvalidArgument,
            "Object keys must not contain the NUL character (U+0000).",
        )
        .with_extra("ArgumentName", "key"));
    }
    Ok(())
}

/// [`validate_key`] for raw bytes: also rejects invalid UTF-8.
pub fn validate_key_bytes(key: &[u8]) -> Result<&str, S3Error> {
    let s = std::str::from_utf8(key).map_err(|_| {
        S3Error::new(
            S3ErrorCode::InvalidArgument,
            "Object keys must be valid UTF-8.",
        )
        .with_extra("ArgumentName", "key")
    })?;
    validate_key(s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_bucket_names() {
        for n in [
            "abc",
            "my-bucket",
            "my.bucket.name",
            "a1b2c3",
            "123",
            "docexamplebucket1",
            "log-delivery-march-2020",
            "1.2.3",
            "1.2.3.4.5",
            "a-b.c-d",
            &"a".repeat(63),
            "xn-a",
            "s3alias",
        ] {
            assert!(validate_bucket_name(n).is_ok(), "{n} should be valid");
        }
    }

    #[test]
    fn invalid_bucket_names() {
        for (n, why) in [
            ("ab", "between 3 and 63"),
            ("", "between 3 and 63"),
            (&"a".repeat(64) as &str, "between 3 and 63"),
            ("MyBucket", "lowercase"),
            ("my_bucket", "lowercase"),
            ("my bucket", "lowercase"),
            ("bücket", "lowercase"),
            ("-bucket", "begin and end"),
            ("bucket-", "begin and end"),
            (".bucket", "begin and end"),
            ("bucket.", "begin and end"),
            ("my..bucket", "adjacent periods"),
            ("my.-bucket", "hyphen"),
            ("my-.bucket", "hyphen"),
            ("192.168.5.4", "IP address"),
            ("10.0.0.1", "IP address"),
            ("xn--bucket", "reserved prefix"),
            ("sthree-bucket", "reserved prefix"),
            ("amzn-s3-demo-bucket", "reserved prefix"),
            ("bucket-s3alias", "reserved suffix"),
            ("bucket--ol-s3", "reserved suffix"),
            ("bucket.mrap", "reserved suffix"),
            ("bucket--x-s3", "reserved suffix"),
        ] {
            let e = validate_bucket_name(n).unwrap_err();
            assert_eq!(
                (e.code, e.status()),
                (S3ErrorCode::InvalidBucketName, 400),
                "{n}"
            );
            assert!(e.message.contains(why), "{n}: {}", e.message);
            assert_eq!(e.extra("BucketName"), Some(n));
        }
    }

    #[test]
    fn object_keys() {
        for k in [
            "a",
            "../../etc/passwd",
            "dir/sub/",
            " leading space",
            "ü日本語 +%",
            "/",
            "a\u{1}b",
            &"k".repeat(1024),
        ] {
            assert!(validate_key(k).is_ok(), "{k:?}");
        }
        // 1024 bytes made of multi-byte characters is fine; 1025 bytes is not.
        let multibyte = "é".repeat(512);
        assert_eq!(multibyte.len(), 1024);
        assert!(validate_key(&multibyte).is_ok());
        let e = validate_key(&"k".repeat(1025)).unwrap_err();
        assert_eq!((e.code, e.status()), (S3ErrorCode::KeyTooLongError, 400));
        assert!(e.message.contains("1025"));
        let e = validate_key("a\0b").unwrap_err();
        assert_eq!((e.code, e.status()), (S3ErrorCode::InvalidArgument, 400));
        assert!(e.message.contains("NUL"));
        assert_eq!(
            validate_key("").unwrap_err().code,
            S3ErrorCode::InvalidArgument
        );
        assert_eq!(validate_key_bytes(b"ok/key").unwrap(), "ok/key");
        assert_eq!(
            validate_key_bytes(b"\xff").unwrap_err().code,
            S3ErrorCode::InvalidArgument
        );
        assert_eq!(
            validate_key_bytes(b"a\0").unwrap_err().code,
            S3ErrorCode::InvalidArgument
        );
    }
}
