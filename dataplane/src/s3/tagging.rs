//! Object tags: the `x-amz-tagging` header (URL-encoded `k=v&k2=v2`), the
//! `<Tagging>` document of Put/GetObjectTagging, and S3's limits on both.
//!
//! A tag set is stored with the object's version in the URL-encoded form
//! (`model::SYS_TAGGING`), the same form the header carries.

use super::encoding::{percent_decode_strict, uri_encode};
use super::error::{S3Error, S3ErrorCode};
use super::xml::{escape, parse_document};

/// Most tags on one object (S3 limit).
pub const MAX_TAGS_PER_OBJECT: usize = 10;
/// Longest tag key, in Unicode characters (S3 limit).
pub const MAX_TAG_KEY_CHARS: usize = 128;
/// Longest tag value, in Unicode characters (S3 limit).
pub const MAX_TAG_VALUE_CHARS: usize = 256;

pub type TagSet = Vec<(String, String)>;

fn invalid(msg: impl Into<String>) -> S3Error {
    S3Error::new(S3ErrorCode::InvalidTag, msg)
}

/// Checks S3's limits: at most 10 tags, keys 1–128 characters and unique,
/// values up to 256 characters, no `aws:` prefix.
pub fn validate(tags: &TagSet) -> Result<(), S3Error> {
    if tags.len() > MAX_TAGS_PER_OBJECT {
        return Err(S3Error::new(S3ErrorCode::InvalidTag, format!("Object tags cannot be greater than {MAX_TAGS_PER_OBJECT} (got {})", tags.len())));
    }
    for (i, (k, v)) in tags.iter().enumerate() {
        let kc = k.chars().count();
        if kc == 0 || kc > MAX_TAG_KEY_CHARS {
            return Err(invalid(format!("The TagKey you have provided is invalid: a key has 1 to {MAX_TAG_KEY_CHARS} characters (got {kc})")));
        }
        if v.chars().count() > MAX_TAG_VALUE_CHARS {
            return Err(invalid(format!("The TagValue you have provided is invalid: a value has at most {MAX_TAG_VALUE_CHARS} characters (key {k:?})")));
        }
        if k.starts_with("aws:") {
            return Err(invalid(format!("Your TagKey cannot be prefixed with aws: ({k:?})")));
        }
        if tags[..i].iter().any(|(k2, _)| k2 == k) {
            return Err(invalid(format!("Cannot provide multiple Tags with the same key ({k:?})")));
        }
    }
    Ok(())
}

/// Parses and validates an `x-amz-tagging` header value.
pub fn parse_header(value: &str) -> Result<TagSet, S3Error> {
    let mut tags = TagSet::new();
    for pair in value.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec = |s: &str| {
            percent_decode_strict(s.as_bytes(), true)
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| S3Error::new(S3ErrorCode::InvalidArgument, "The x-amz-tagging header is not a valid URL-encoded query string"))
        };
        tags.push((dec(k)?, dec(v)?));
    }
    validate(&tags)?;
    Ok(tags)
}

/// The stored (and `x-amz-tagging`) form of a tag set.
pub fn encode(tags: &TagSet) -> String {
    let mut out = String::new();
    for (i, (k, v)) in tags.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&uri_encode(k.as_bytes(), false));
        out.push('=');
        out.push_str(&uri_encode(v.as_bytes(), false));
    }
    out
}

/// A stored tag set (as written by [`encode`]).
pub fn decode(stored: &str) -> TagSet {
    parse_header(stored).unwrap_or_default()
}

/// How many tags a stored tag set holds, without decoding it.
pub fn count(stored: &str) -> usize {
    stored.split('&').filter(|p| !p.is_empty()).count()
}

/// Parses and validates a `<Tagging><TagSet><Tag><Key/><Value/></Tag>…` body.
pub fn parse_xml(body: &[u8]) -> Result<TagSet, S3Error> {
    let root = parse_document(body)?;
    let malformed = |d: &str| S3Error::from_code(S3ErrorCode::MalformedXML).with_extra("Detail", d.to_string());
    if root.name != "Tagging" {
        return Err(malformed("the root element must be Tagging"));
    }
    let set = root.child("TagSet").ok_or_else(|| malformed("Tagging without TagSet"))?;
    let mut tags = TagSet::new();
    for t in &set.children {
        if t.name != "Tag" {
            return Err(malformed("TagSet may hold only Tag elements"));
        }
        if tags.len() > MAX_TAGS_PER_OBJECT {
            break;
        }
        let k = t.child("Key").ok_or_else(|| malformed("Tag without Key"))?.text.clone();
        let v = t.child("Value").map(|v| v.text.clone()).unwrap_or_default();
        tags.push((k, v));
    }
    validate(&tags)?;
    Ok(tags)
}

/// The `<Tagging>` document of GetObjectTagging.
pub fn to_xml(tags: &TagSet) -> String {
    let mut out = String::from(r#"<?xml version="1.0" encoding="UTF-8"?><Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet>"#);
    for (k, v) in tags {
        out.push_str("<Tag><Key>");
        escape(&mut out, k);
        out.push_str("</Key><Value>");
        escape(&mut out, v);
        out.push_str("</Value></Tag>");
    }
    out.push_str("</TagSet></Tagging>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrips_and_limits_hold() {
        let t = parse_header("a=1&b%20c=x%2Fy&empty=").unwrap();
        assert_eq!(t, vec![("a".into(), "1".into()), ("b c".into(), "x/y".into()), ("empty".into(), "".into())]);
        assert_eq!(decode(&encode(&t)), t);
        assert_eq!(count(&encode(&t)), 3);
        let eleven: String = (0..11).map(|i| format!("k{i}=v&")).collect();
        assert_eq!(parse_header(&eleven).unwrap_err().code, S3ErrorCode::InvalidTag);
        assert_eq!(parse_header("a=1&a=2").unwrap_err().code, S3ErrorCode::InvalidTag);
        let long_key = "k".repeat(129);
        assert_eq!(parse_header(&format!("{long_key}=v")).unwrap_err().code, S3ErrorCode::InvalidTag);
        let long_value = "v".repeat(257);
        assert_eq!(parse_header(&format!("k={long_value}")).unwrap_err().code, S3ErrorCode::InvalidTag);
        assert!(parse_header(&format!("{}={}", "k".repeat(128), "v".repeat(256))).is_ok());
        assert_eq!(parse_header("aws:x=1").unwrap_err().code, S3ErrorCode::InvalidTag);
    }

    #[test]
    fn xml_roundtrips() {
        let t: TagSet = vec![("k<&>".into(), "v\"'".into()), ("z".into(), "".into())];
        assert_eq!(parse_xml(to_xml(&t).as_bytes()).unwrap(), t);
        assert_eq!(parse_xml(b"<Tagging><TagSet></TagSet></Tagging>").unwrap(), TagSet::new());
        assert_eq!(parse_xml(b"<Other/>").unwrap_err().code, S3ErrorCode::MalformedXML);
        assert_eq!(parse_xml(b"<Tagging><TagSet><Tag><Value>v</Value></Tag></TagSet></Tagging>").unwrap_err().code, S3ErrorCode::MalformedXML);
    }
}
