//! `Range` header handling for GetObject / HeadObject.
//!
//! S3 supports a single byte range. Like S3 (and RFC 9110), a header that is
//! syntactically invalid, uses another unit, or asks for several ranges is
//! ignored and the whole object is served. A well-formed but unsatisfiable
//! range is `InvalidRange` (416); answer it with
//! `Content-Range: bytes */<size>` ([`unsatisfied_content_range`]).

use super::error::{S3Error, S3ErrorCode};

/// Parses a decimal position; `None` if not all digits. Values that do not
/// fit in a u64 saturate (they are beyond any object anyway).
fn pos(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u64>().unwrap_or(u64::MAX))
}

fn unsatisfiable(header: &str, size: u64) -> S3Error {
    S3Error::new(
        S3ErrorCode::InvalidRange,
        format!(
            "The requested range \"{header}\" is not satisfiable for an object of {size} bytes"
        ),
    )
    .with_extra("RangeRequested", header)
    .with_extra("ActualObjectSize", size.to_string())
}

/// Resolves a `Range` header against an object of `object_size` bytes.
///
/// * `Ok(Some((start, end_inclusive)))`: serve 206 with that slice.
/// * `Ok(None)`: ignore the header and serve the whole object (200).
/// * `Err(InvalidRange)`: 416; the message and extras carry the size.
///
/// Forms: `bytes=a-b` (end clamped to the last byte), `bytes=a-`,
/// `bytes=-n` (last n bytes, or all if n > size).
pub fn parse_range(header: &str, object_size: u64) -> Result<Option<(u64, u64)>, S3Error> {
    let h = header.trim();
    let Some(spec) = h
        .get(..6)
        .filter(|u| u.eq_ignore_ascii_case("bytes="))
        .map(|_| &h[6..])
    else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let spec = spec.trim();
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix range: the last n bytes.
        let Some(n) = pos(b) else { return Ok(None) };
        if n == 0 || object_size == 0 {
            return Err(unsatisfiable(h, object_size));
        }
        return Ok(Some((object_size.saturating_sub(n), object_size - 1)));
    }
    let Some(start) = pos(a) else { return Ok(None) };
    let end = if b.is_empty() {
        None
    } else {
        match pos(b) {
            Some(e) if e >= start => Some(e),
            _ => return Ok(None),
        }
    };
    if start >= object_size {
        return Err(unsatisfiable(h, object_size));
    }
    let last = object_size - 1;
    Ok(Some((start, end.map_or(last, |e| e.min(last)))))
}

/// `Content-Range` of a 206 response: `bytes start-end/size`.
pub fn content_range(start: u64, end_inclusive: u64, object_size: u64) -> String {
    format!("bytes {start}-{end_inclusive}/{object_size}")
}

/// `Content-Range` of a 416 response: `bytes */size`.
pub fn unsatisfied_content_range(object_size: u64) -> String {
    format!("bytes */{object_size}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn satisfiable_ranges() {
        let size = 100;
        for (h, want) in [
            ("bytes=0-9", (0, 9)),
            ("bytes=0-0", (0, 0)),
            ("bytes=10-", (10, 99)),
            ("bytes=-10", (90, 99)),
            ("bytes=-1000", (0, 99)),
            ("bytes=50-1000", (50, 99)),
            ("bytes=99-99", (99, 99)),
            ("bytes=99-", (99, 99)),
            ("BYTES=1-2", (1, 2)),
            (" bytes= 5 - 6 ", (5, 6)),
            ("bytes=0-99999999999999999999999", (0, 99)),
        ] {
            assert_eq!(parse_range(h, size).unwrap(), Some(want), "{h}");
        }
        assert_eq!(content_range(0, 9, 100), "bytes 0-9/100");
    }

    #[test]
    fn ignored_headers() {
        for h in [
            "",
            "bytes",
            "bytes=",
            "bytes=-",
            "items=0-1",
            "bytes=a-b",
            "bytes=5-2",
            "bytes=0-1,3-4",
            "bytes=0-1, 5-",
            "bytes=1",
            "bytes=--1",
            "bytes=1-2-3",
            "bytes=+1-2",
        ] {
            assert_eq!(parse_range(h, 100).unwrap(), None, "{h:?}");
        }
    }

    #[test]
    fn unsatisfiable_ranges() {
        for (h, size) in [
            ("bytes=100-", 100u64),
            ("bytes=100-200", 100),
            ("bytes=-0", 100),
            ("bytes=0-", 0),
            ("bytes=-5", 0),
            ("bytes=99999999999999999999999-", 100),
        ] {
            let e = parse_range(h, size).unwrap_err();
            assert_eq!(
                (e.code, e.status()),
                (S3ErrorCode::InvalidRange, 416),
                "{h}"
            );
            assert!(
                e.message.contains(&format!("{size} bytes")),
                "{}",
                e.message
            );
            assert_eq!(e.extra("ActualObjectSize"), Some(size.to_string().as_str()));
            assert_eq!(e.extra("RangeRequested"), Some(h));
        }
        assert_eq!(unsatisfied_content_range(100), "bytes */100");
    }
}
