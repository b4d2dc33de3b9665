//! XML response renderers and request-body parsers.
//!
//! Renderers write the `http://s3.amazonaws.com/doc/2006-03-01/` namespace,
//! escape all text, and format timestamps as `2024-01-01T00:00:00.000Z`.
//! ETags are written quoted (`"abc"`, escaped to `&quot;abc&quot;` as S3
//! does); unquoted input is quoted.
//!
//! Parsers accept documents with or without the namespace, reject DTDs, and
//! enforce [`MAX_XML_BODY_BYTES`], [`MAX_XML_DEPTH`] and
//! [`MAX_XML_ELEMENTS`]. Any syntax or schema problem is `MalformedXML`.

use quick_xml::events::Event;
use quick_xml::Reader;

use super::checksum::ChecksumAlgorithm;
use super::datetime::iso8601_millis;
use super::encoding::uri_encode;
use super::error::{S3Error, S3ErrorCode};

/// The S3 XML namespace.
pub const S3_XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";
/// Largest XML request body the parsers accept (callers should stop
/// reading the body at this size).
pub const MAX_XML_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Deepest element nesting accepted.
pub const MAX_XML_DEPTH: usize = 16;
/// Most elements accepted in one document.
pub const MAX_XML_ELEMENTS: usize = 100_000;
/// Most objects in one DeleteObjects request.
pub const MAX_DELETE_OBJECTS: usize = 1000;
/// Most parts in one multipart upload.
pub const MAX_PARTS: u32 = 10_000;

const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// Appends `s` with XML escaping. Besides `& < > " '`, control characters
/// (and CR/LF/TAB, so they survive attribute-value and line-end
/// normalisation) are written as character references, as S3 does.
pub fn escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str("&#x");
                out.push_str(&format!("{:X}", c as u32));
                out.push(';');
            }
            c => out.push(c),
        }
    }
}

/// Escaped copy of `s`.
pub fn escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape(&mut out, s);
    out
}

/// `"etag"`: adds the quotes when missing.
pub fn quote_etag(etag: &str) -> String {
    if etag.len() >= 2 && etag.starts_with('"') && etag.ends_with('"') {
        etag.to_string()
    } else {
        format!("\"{etag}\"")
    }
}

/// Strips surrounding whitespace and double quotes (also `&quot;` already
/// decoded) from an ETag sent by a client.
pub fn normalize_etag(etag: &str) -> &str {
    let t = etag.trim();
    let t = t.strip_prefix('"').unwrap_or(t);
    t.strip_suffix('"').unwrap_or(t)
}

/// Small writer that keeps element bookkeeping out of the renderers.
struct W {
    s: String,
}

impl W {
    fn new(root: &str) -> W {
        let mut s = String::with_capacity(512);
        s.push_str(XML_DECL);
        s.push('<');
        s.push_str(root);
        s.push_str(" xmlns=\"");
        s.push_str(S3_XMLNS);
        s.push_str("\">");
        W { s }
    }
    fn open(&mut self, name: &str) {
        self.s.push('<');
        self.s.push_str(name);
        self.s.push('>');
    }
    fn close(&mut self, name: &str) {
        self.s.push_str("</");
        self.s.push_str(name);
        self.s.push('>');
    }
    fn text(&mut self, name: &str, value: &str) {
        self.open(name);
        escape(&mut self.s, value);
        self.close(name);
    }
    fn opt(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.text(name, v);
        }
    }
    fn num(&mut self, name: &str, value: impl std::fmt::Display) {
        self.open(name);
        self.s.push_str(&value.to_string());
        self.close(name);
    }
    fn bool(&mut self, name: &str, value: bool) {
        self.text(name, if value { "true" } else { "false" });
    }
    fn time(&mut self, name: &str, unix_millis: i64) {
        self.text(name, &iso8601_millis(unix_millis));
    }
    fn etag(&mut self, etag: &str) {
        self.text("ETag", &quote_etag(etag));
    }
    fn checksums(&mut self, checksums: &[(ChecksumAlgorithm, &str)]) {
        for (alg, v) in checksums {
            self.text(alg.xml_element(), v);
        }
    }
    fn owner(&mut self, tag: &str, owner: &Owner<'_>) {
        self.open(tag);
        self.text("ID", owner.id);
        self.text("DisplayName", owner.display_name);
        self.close(tag);
    }
    fn finish(mut self, root: &str) -> String {
        self.close(root);
        self.s
    }
}

/// Encodes a key/prefix for `EncodingType=url` responses.
fn url_enc(v: &str, encode: bool) -> std::borrow::Cow<'_, str> {
    if encode {
        std::borrow::Cow::Owned(uri_encode(v.as_bytes(), true))
    } else {
        std::borrow::Cow::Borrowed(v)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner<'a> {
    pub id: &'a str,
    pub display_name: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketEntry<'a> {
    pub name: &'a str,
    pub creation_date_ms: i64,
}

/// `ListAllMyBucketsResult` (ListBuckets).
pub fn list_all_my_buckets(owner: Option<&Owner<'_>>, buckets: &[BucketEntry<'_>]) -> String {
    const ROOT: &str = "ListAllMyBucketsResult";
    let mut w = W::new(ROOT);
    if let Some(o) = owner {
        w.owner("Owner", o);
    }
    w.open("Buckets");
    for b in buckets {
        w.open("Bucket");
        w.text("Name", b.name);
        w.time("CreationDate", b.creation_date_ms);
        w.close("Bucket");
    }
    w.close("Buckets");
    w.finish(ROOT)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectEntry<'a> {
    pub key: &'a str,
    pub last_modified_ms: i64,
    /// Quoted or not; rendered quoted.
    pub etag: &'a str,
    pub size: u64,
    pub storage_class: &'a str,
    /// Rendered when present (`fetch-owner=true`, ListObjects v1).
    pub owner: Option<Owner<'a>>,
}

fn contents(w: &mut W, objects: &[ObjectEntry<'_>], encode: bool) {
    for o in objects {
        w.open("Contents");
        w.text("Key", &url_enc(o.key, encode));
        w.time("LastModified", o.last_modified_ms);
        w.etag(o.etag);
        w.num("Size", o.size);
        if let Some(owner) = &o.owner {
            w.owner("Owner", owner);
        }
        w.text("StorageClass", o.storage_class);
        w.close("Contents");
    }
}

fn common_prefixes(w: &mut W, prefixes: &[&str], encode: bool) {
    for p in prefixes {
        w.open("CommonPrefixes");
        w.text("Prefix", &url_enc(p, encode));
        w.close("CommonPrefixes");
    }
}

/// Input of [`list_objects_v2`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListObjectsV2<'a> {
    pub name: &'a str,
    pub prefix: &'a str,
    pub delimiter: Option<&'a str>,
    pub max_keys: u32,
    pub is_truncated: bool,
    pub continuation_token: Option<&'a str>,
    pub next_continuation_token: Option<&'a str>,
    pub start_after: Option<&'a str>,
    /// `encoding-type=url`: Key, Prefix, Delimiter, StartAfter and
    /// CommonPrefixes are URL-encoded and `<EncodingType>url` is added.
    pub encoding_url: bool,
    pub contents: &'a [ObjectEntry<'a>],
    pub common_prefixes: &'a [&'a str],
}

/// `ListBucketResult` for ListObjectsV2. `KeyCount` is the number of
/// contents plus common prefixes.
pub fn list_objects_v2(r: &ListObjectsV2<'_>) -> String {
    const ROOT: &str = "ListBucketResult";
    let enc = r.encoding_url;
    let mut w = W::new(ROOT);
    w.text("Name", r.name);
    w.text("Prefix", &url_enc(r.prefix, enc));
    if let Some(d) = r.delimiter {
        w.text("Delimiter", &url_enc(d, enc));
    }
    w.num("MaxKeys", r.max_keys);
    if enc {
        w.text("EncodingType", "url");
    }
    w.num("KeyCount", r.contents.len() + r.common_prefixes.len());
    w.bool("IsTruncated", r.is_truncated);
    w.opt("ContinuationToken", r.continuation_token);
    w.opt("NextContinuationToken", r.next_continuation_token);
    if let Some(s) = r.start_after {
        w.text("StartAfter", &url_enc(s, enc));
    }
    contents(&mut w, r.contents, enc);
    common_prefixes(&mut w, r.common_prefixes, enc);
    w.finish(ROOT)
}

/// Input of [`list_objects_v1`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListObjectsV1<'a> {
    pub name: &'a str,
    pub prefix: &'a str,
    pub marker: &'a str,
    /// Only sent when a delimiter was given and the result is truncated.
    pub next_marker: Option<&'a str>,
    pub delimiter: Option<&'a str>,
    pub max_keys: u32,
    pub is_truncated: bool,
    pub encoding_url: bool,
    pub contents: &'a [ObjectEntry<'a>],
    pub common_prefixes: &'a [&'a str],
}

/// `ListBucketResult` for the original ListObjects (v1).
pub fn list_objects_v1(r: &ListObjectsV1<'_>) -> String {
    const ROOT: &str = "ListBucketResult";
    let enc = r.encoding_url;
    let mut w = W::new(ROOT);
    w.text("Name", r.name);
    w.text("Prefix", &url_enc(r.prefix, enc));
    w.text("Marker", &url_enc(r.marker, enc));
    if let Some(m) = r.next_marker {
        w.text("NextMarker", &url_enc(m, enc));
    }
    if let Some(d) = r.delimiter {
        w.text("Delimiter", &url_enc(d, enc));
    }
    w.num("MaxKeys", r.max_keys);
    if enc {
        w.text("EncodingType", "url");
    }
    w.bool("IsTruncated", r.is_truncated);
    contents(&mut w, r.contents, enc);
    common_prefixes(&mut w, r.common_prefixes, enc);
    w.finish(ROOT)
}

/// `InitiateMultipartUploadResult` (CreateMultipartUpload).
pub fn initiate_multipart_upload(bucket: &str, key: &str, upload_id: &str) -> String {
    const ROOT: &str = "InitiateMultipartUploadResult";
    let mut w = W::new(ROOT);
    w.text("Bucket", bucket);
    w.text("Key", key);
    w.text("UploadId", upload_id);
    w.finish(ROOT)
}

/// `CompleteMultipartUploadResult`. `checksums` are e.g. composite
/// `(Crc32, "xxxx==-3")` values.
pub fn complete_multipart_upload(
    location: &str,
    bucket: &str,
    key: &str,
    etag: &str,
    checksums: &[(ChecksumAlgorithm, &str)],
) -> String {
    const ROOT: &str = "CompleteMultipartUploadResult";
    let mut w = W::new(ROOT);
    w.text("Location", location);
    w.text("Bucket", bucket);
    w.text("Key", key);
    w.etag(etag);
    w.checksums(checksums);
    w.finish(ROOT)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartEntry<'a> {
    pub part_number: u32,
    pub last_modified_ms: i64,
    pub etag: &'a str,
    pub size: u64,
    pub checksums: &'a [(ChecksumAlgorithm, &'a str)],
}

/// Input of [`list_parts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListParts<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub upload_id: &'a str,
    pub part_number_marker: u32,
    pub next_part_number_marker: Option<u32>,
    pub max_parts: u32,
    pub is_truncated: bool,
    pub storage_class: &'a str,
    pub owner: Option<Owner<'a>>,
    pub parts: &'a [PartEntry<'a>],
}

/// `ListPartsResult`.
pub fn list_parts(r: &ListParts<'_>) -> String {
    const ROOT: &str = "ListPartsResult";
    let mut w = W::new(ROOT);
    w.text("Bucket", r.bucket);
    w.text("Key", r.key);
    w.text("UploadId", r.upload_id);
    if let Some(o) = &r.owner {
        w.owner("Initiator", o);
        w.owner("Owner", o);
    }
    w.text("StorageClass", r.storage_class);
    w.num("PartNumberMarker", r.part_number_marker);
    if let Some(n) = r.next_part_number_marker {
        w.num("NextPartNumberMarker", n);
    }
    w.num("MaxParts", r.max_parts);
    w.bool("IsTruncated", r.is_truncated);
    for p in r.parts {
        w.open("Part");
        w.num("PartNumber", p.part_number);
        w.time("LastModified", p.last_modified_ms);
        w.etag(p.etag);
        w.num("Size", p.size);
        w.checksums(p.checksums);
        w.close("Part");
    }
    w.finish(ROOT)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadEntry<'a> {
    pub key: &'a str,
    pub upload_id: &'a str,
    pub initiated_ms: i64,
    pub storage_class: &'a str,
    pub owner: Option<Owner<'a>>,
}

/// Input of [`list_multipart_uploads`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListMultipartUploads<'a> {
    pub bucket: &'a str,
    pub key_marker: &'a str,
    pub upload_id_marker: &'a str,
    pub next_key_marker: Option<&'a str>,
    pub next_upload_id_marker: Option<&'a str>,
    pub prefix: &'a str,
    pub delimiter: Option<&'a str>,
    pub max_uploads: u32,
    pub is_truncated: bool,
    pub encoding_url: bool,
    pub uploads: &'a [UploadEntry<'a>],
    pub common_prefixes: &'a [&'a str],
}

/// `ListMultipartUploadsResult`.
pub fn list_multipart_uploads(r: &ListMultipartUploads<'_>) -> String {
    const ROOT: &str = "ListMultipartUploadsResult";
    let enc = r.encoding_url;
    let mut w = W::new(ROOT);
    w.text("Bucket", r.bucket);
    w.text("KeyMarker", &url_enc(r.key_marker, enc));
    w.text("UploadIdMarker", r.upload_id_marker);
    if let Some(k) = r.next_key_marker {
        w.text("NextKeyMarker", &url_enc(k, enc));
    }
    w.opt("NextUploadIdMarker", r.next_upload_id_marker);
    w.text("Prefix", &url_enc(r.prefix, enc));
    if let Some(d) = r.delimiter {
        w.text("Delimiter", &url_enc(d, enc));
    }
    w.num("MaxUploads", r.max_uploads);
    if enc {
        w.text("EncodingType", "url");
    }
    w.bool("IsTruncated", r.is_truncated);
    for u in r.uploads {
        w.open("Upload");
        w.text("Key", &url_enc(u.key, enc));
        w.text("UploadId", u.upload_id);
        if let Some(o) = &u.owner {
            w.owner("Initiator", o);
            w.owner("Owner", o);
        }
        w.text("StorageClass", u.storage_class);
        w.time("Initiated", u.initiated_ms);
        w.close("Upload");
    }
    common_prefixes(&mut w, r.common_prefixes, enc);
    w.finish(ROOT)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletedEntry<'a> {
    pub key: &'a str,
    pub version_id: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteErrorEntry<'a> {
    pub key: &'a str,
    pub version_id: Option<&'a str>,
    pub code: &'a str,
    pub message: &'a str,
}

/// `DeleteResult` (DeleteObjects). In quiet mode only errors are listed.
pub fn delete_result(
    deleted: &[DeletedEntry<'_>],
    errors: &[DeleteErrorEntry<'_>],
    quiet: bool,
) -> String {
    const ROOT: &str = "DeleteResult";
    let mut w = W::new(ROOT);
    if !quiet {
        for d in deleted {
            w.open("Deleted");
            w.text("Key", d.key);
            w.opt("VersionId", d.version_id);
            w.close("Deleted");
        }
    }
    for e in errors {
        w.open("Error");
        w.text("Key", e.key);
        w.opt("VersionId", e.version_id);
        w.text("Code", e.code);
        w.text("Message", e.message);
        w.close("Error");
    }
    w.finish(ROOT)
}

/// `CopyObjectResult` (CopyObject).
pub fn copy_object_result(
    last_modified_ms: i64,
    etag: &str,
    checksums: &[(ChecksumAlgorithm, &str)],
) -> String {
    copy_result("CopyObjectResult", last_modified_ms, etag, checksums)
}

/// `CopyPartResult` (UploadPartCopy).
pub fn copy_part_result(
    last_modified_ms: i64,
    etag: &str,
    checksums: &[(ChecksumAlgorithm, &str)],
) -> String {
    copy_result("CopyPartResult", last_modified_ms, etag, checksums)
}

fn copy_result(
    root: &str,
    last_modified_ms: i64,
    etag: &str,
    checksums: &[(ChecksumAlgorithm, &str)],
) -> String {
    let mut w = W::new(root);
    w.time("LastModified", last_modified_ms);
    w.etag(etag);
    w.checksums(checksums);
    w.finish(root)
}

/// `LocationConstraint` (GetBucketLocation). `us-east-1` (or empty) is an
/// empty element, as S3 returns it.
pub fn location_constraint(region: &str) -> String {
    if region.is_empty() || region == "us-east-1" {
        format!("{XML_DECL}<LocationConstraint xmlns=\"{S3_XMLNS}\"/>")
    } else {
        format!(
            "{XML_DECL}<LocationConstraint xmlns=\"{S3_XMLNS}\">{}</LocationConstraint>",
            escaped(region)
        )
    }
}

// ---------------------------------------------------------------- parsing

/// Minimal element tree produced by [`parse_document`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    /// Local name (namespace prefix dropped).
    pub name: String,
    /// Concatenated text and CDATA directly inside this element, unescaped
    /// and untrimmed.
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
}

fn malformed(detail: impl std::fmt::Display) -> S3Error {
    S3Error::from_code(S3ErrorCode::MalformedXML).with_extra("Detail", detail.to_string())
}

/// Parses a whole XML document into an [`Element`] tree with the limits of
/// this module. Rejects DTDs, multiple roots and text outside the root.
pub fn parse_document(input: &[u8]) -> Result<Element, S3Error> {
    if input.len() > MAX_XML_BODY_BYTES {
        return Err(malformed(format!(
            "document larger than {MAX_XML_BODY_BYTES} bytes"
        )));
    }
    let text = std::str::from_utf8(input).map_err(|_| malformed("document is not UTF-8"))?;
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(false);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let ev = reader.read_event().map_err(malformed)?;
        match ev {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(malformed("content after the root element"));
            }
            Event::Start(ref e) | Event::Empty(ref e) => {
                count += 1;
                if count > MAX_XML_ELEMENTS {
                    return Err(malformed("too many elements"));
                }
                if stack.len() >= MAX_XML_DEPTH {
                    return Err(malformed("elements nested too deeply"));
                }
                let name = std::str::from_utf8(e.local_name().as_ref())
                    .map_err(malformed)?
                    .to_string();
                let el = Element {
                    name,
                    ..Element::default()
                };
                if matches!(ev, Event::Empty(_)) {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => root = Some(el),
                    }
                } else {
                    stack.push(el);
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or_else(|| malformed("unbalanced end tag"))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let s = t.unescape().map_err(malformed)?;
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => return Err(malformed("text outside the root element")),
                }
            }
            Event::CData(c) => {
                let raw = c.into_inner();
                let s = std::str::from_utf8(&raw).map_err(malformed)?;
                match stack.last_mut() {
                    Some(el) => el.text.push_str(s),
                    None => return Err(malformed("CDATA outside the root element")),
                }
            }
            Event::DocType(_) => return Err(malformed("DTDs are not allowed")),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(malformed("unexpected end of document"));
    }
    root.ok_or_else(|| malformed("empty document"))
}

fn expect_root(el: &Element, name: &str) -> Result<(), S3Error> {
    if el.name != name {
        return Err(malformed(format!(
            "expected root element {name}, found {}",
            el.name
        )));
    }
    Ok(())
}

fn parse_bool(el: &Element) -> Result<bool, S3Error> {
    match el.text.trim() {
        t if t.eq_ignore_ascii_case("true") => Ok(true),
        t if t.eq_ignore_ascii_case("false") || t.is_empty() => Ok(false),
        t => Err(malformed(format!("invalid boolean {t:?} in {}", el.name))),
    }
}

/// One `<Object>` of a DeleteObjects request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectIdentifier {
    /// Exactly as sent (not trimmed); validate with `names::validate_key`.
    pub key: String,
    pub version_id: Option<String>,
}

/// A parsed DeleteObjects body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRequest {
    pub quiet: bool,
    pub objects: Vec<ObjectIdentifier>,
}

/// Parses `<Delete><Quiet>..</Quiet><Object><Key>..</Key><VersionId>..</VersionId></Object>..</Delete>`.
/// 1 to [`MAX_DELETE_OBJECTS`] objects, each with a Key; else `MalformedXML`.
pub fn parse_delete(input: &[u8]) -> Result<DeleteRequest, S3Error> {
    let root = parse_document(input)?;
    expect_root(&root, "Delete")?;
    let mut quiet = false;
    let mut objects = Vec::new();
    for c in &root.children {
        match c.name.as_str() {
            "Quiet" => quiet = parse_bool(c)?,
            "Object" => {
                if objects.len() == MAX_DELETE_OBJECTS {
                    return Err(malformed(format!("more than {MAX_DELETE_OBJECTS} objects")));
                }
                let key = c
                    .child("Key")
                    .ok_or_else(|| malformed("Object without Key"))?
                    .text
                    .clone();
                let version_id = c.child("VersionId").map(|v| v.text.trim().to_string());
                objects.push(ObjectIdentifier { key, version_id });
            }
            other => return Err(malformed(format!("unexpected element {other} in Delete"))),
        }
    }
    if objects.is_empty() {
        return Err(malformed("Delete without Object elements"));
    }
    Ok(DeleteRequest { quiet, objects })
}

/// One `<Part>` of a CompleteMultipartUpload request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    pub part_number: u32,
    /// As sent, trimmed (usually quoted); compare with [`normalize_etag`].
    pub etag: String,
    pub checksums: Vec<(ChecksumAlgorithm, String)>,
}

impl CompletedPart {
    /// The ETag without quotes.
    pub fn normalized_etag(&self) -> &str {
        normalize_etag(&self.etag)
    }
}

/// Parses `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"..."</ETag>..</Part>..</CompleteMultipartUpload>`.
///
/// Errors: `MalformedXML` (syntax, no parts, missing PartNumber/ETag, more
/// than [`MAX_PARTS`] parts), `InvalidArgument` (part number outside
/// 1..=10000), `InvalidPartOrder` (not strictly ascending).
pub fn parse_complete_multipart_upload(input: &[u8]) -> Result<Vec<CompletedPart>, S3Error> {
    let root = parse_document(input)?;
    expect_root(&root, "CompleteMultipartUpload")?;
    let mut parts: Vec<CompletedPart> = Vec::new();
    for c in &root.children {
        if c.name != "Part" {
            return Err(malformed(format!(
                "unexpected element {} in CompleteMultipartUpload",
                c.name
            )));
        }
        if parts.len() as u32 == MAX_PARTS {
            return Err(malformed(format!("more than {MAX_PARTS} parts")));
        }
        let pn = c
            .child("PartNumber")
            .ok_or_else(|| malformed("Part without PartNumber"))?;
        let pn_text = pn.text.trim();
        let part_number: u32 = match pn_text.parse::<u64>() {
            Ok(n) if (1..=MAX_PARTS as u64).contains(&n) => n as u32,
            Ok(_) => {
                return Err(S3Error::new(
                    S3ErrorCode::InvalidArgument,
                    "Part number must be an integer between 1 and 10000, inclusive",
                )
                .with_extra("ArgumentName", "PartNumber")
                .with_extra("ArgumentValue", pn_text))
            }
            Err(_) => return Err(malformed(format!("invalid PartNumber {pn_text:?}"))),
        };
        let etag = c
            .child("ETag")
            .ok_or_else(|| malformed("Part without ETag"))?
            .text
            .trim()
            .to_string();
        let mut checksums = Vec::new();
        for alg in ChecksumAlgorithm::ALL {
            if let Some(v) = c.child(alg.xml_element()) {
                checksums.push((alg, v.text.trim().to_string()));
            }
        }
        if let Some(prev) = parts.last() {
            if part_number <= prev.part_number {
                return Err(S3Error::from_code(S3ErrorCode::InvalidPartOrder));
            }
        }
        parts.push(CompletedPart {
            part_number,
            etag,
            checksums,
        });
    }
    if parts.is_empty() {
        return Err(malformed("CompleteMultipartUpload without Part elements"));
    }
    Ok(parts)
}

/// Parses an optional CreateBucket body and returns its LocationConstraint.
/// An empty (or whitespace-only) body is `Ok(None)`; other children (e.g.
/// `Location`, `Bucket` of directory buckets) are ignored.
pub fn parse_create_bucket_configuration(input: &[u8]) -> Result<Option<String>, S3Error> {
    if input.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(None);
    }
    let root = parse_document(input)?;
    expect_root(&root, "CreateBucketConfiguration")?;
    Ok(root
        .child("LocationConstraint")
        .map(|l| l.text.trim().to_string())
        .filter(|s| !s.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Structural check with quick-xml: the output is a well-formed
    /// document whose text round-trips.
    fn roundtrip_text(xml: &str, element: &str) -> Vec<String> {
        let doc = parse_document(xml.as_bytes()).expect("renderer output must parse");
        fn walk(e: &Element, name: &str, out: &mut Vec<String>) {
            if e.name == name {
                out.push(e.text.clone());
            }
            for c in &e.children {
                walk(c, name, out);
            }
        }
        let mut out = Vec::new();
        walk(&doc, element, &mut out);
        out
    }

    #[test]
    fn escaping() {
        assert_eq!(escaped("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d&quot;e&apos;f");
        assert_eq!(escaped("tab\there\r\n\u{1}"), "tab&#x9;here&#xD;&#xA;&#x1;");
        assert_eq!(escaped("ünicode 日本"), "ünicode 日本");
        // Control characters survive a parse round trip.
        let xml = format!(
            "<Delete><Object><Key>{}</Key></Object></Delete>",
            escaped("a\r\nb\tc")
        );
        assert_eq!(
            parse_delete(xml.as_bytes()).unwrap().objects[0].key,
            "a\r\nb\tc"
        );
    }

    #[test]
    fn list_buckets_document() {
        let xml = list_all_my_buckets(
            Some(&Owner {
                id: "id1",
                display_name: "me",
            }),
            &[
                BucketEntry {
                    name: "alpha",
                    creation_date_ms: 1_704_067_200_000,
                },
                BucketEntry {
                    name: "beta",
                    creation_date_ms: 1_704_067_200_123,
                },
            ],
        );
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListAllMyBucketsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <Owner><ID>id1</ID><DisplayName>me</DisplayName></Owner><Buckets>\
             <Bucket><Name>alpha</Name><CreationDate>2024-01-01T00:00:00.000Z</CreationDate></Bucket>\
             <Bucket><Name>beta</Name><CreationDate>2024-01-01T00:00:00.123Z</CreationDate></Bucket>\
             </Buckets></ListAllMyBucketsResult>"
        );
        assert!(list_all_my_buckets(None, &[]).contains("<Buckets></Buckets>"));
    }

    fn sample_objects() -> Vec<ObjectEntry<'static>> {
        vec![
            ObjectEntry {
                key: "photos/a&b <1>.jpg",
                last_modified_ms: 1_704_067_200_000,
                etag: "\"d41d8cd98f00b204e9800998ecf8427e\"",
                size: 0,
                storage_class: "STANDARD",
                owner: None,
            },
            ObjectEntry {
                key: "photos/ü +x",
                last_modified_ms: 0,
                etag: "0123abcd-2",
                size: 12345678901,
                storage_class: "STANDARD",
                owner: Some(Owner {
                    id: "o",
                    display_name: "d",
                }),
            },
        ]
    }

    #[test]
    fn list_objects_v2_document() {
        let objects = sample_objects();
        let xml = list_objects_v2(&ListObjectsV2 {
            name: "bucket",
            prefix: "photos/",
            delimiter: Some("/"),
            max_keys: 1000,
            is_truncated: true,
            continuation_token: Some("tok&1"),
            next_continuation_token: Some("tok2"),
            start_after: Some("photos/0"),
            encoding_url: false,
            contents: &objects,
            common_prefixes: &["photos/2024/"],
        });
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"));
        for needle in [
            "<Name>bucket</Name>",
            "<Prefix>photos/</Prefix>",
            "<Delimiter>/</Delimiter>",
            "<MaxKeys>1000</MaxKeys>",
            "<KeyCount>3</KeyCount>",
            "<IsTruncated>true</IsTruncated>",
            "<ContinuationToken>tok&amp;1</ContinuationToken>",
            "<NextContinuationToken>tok2</NextContinuationToken>",
            "<StartAfter>photos/0</StartAfter>",
            "<Contents><Key>photos/a&amp;b &lt;1&gt;.jpg</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified><ETag>&quot;d41d8cd98f00b204e9800998ecf8427e&quot;</ETag><Size>0</Size><StorageClass>STANDARD</StorageClass></Contents>",
            "<ETag>&quot;0123abcd-2&quot;</ETag><Size>12345678901</Size><Owner><ID>o</ID><DisplayName>d</DisplayName></Owner>",
            "<CommonPrefixes><Prefix>photos/2024/</Prefix></CommonPrefixes>",
        ] {
            assert!(xml.contains(needle), "missing {needle} in {xml}");
        }
        assert!(!xml.contains("EncodingType"));
        assert_eq!(
            roundtrip_text(&xml, "Key"),
            vec!["photos/a&b <1>.jpg", "photos/ü +x"]
        );
        assert_eq!(
            roundtrip_text(&xml, "ETag")[0],
            "\"d41d8cd98f00b204e9800998ecf8427e\""
        );
    }

    #[test]
    fn list_objects_v2_url_encoding() {
        let objects = sample_objects();
        let xml = list_objects_v2(&ListObjectsV2 {
            name: "bucket",
            prefix: "photos/ü",
            delimiter: Some("/"),
            max_keys: 2,
            start_after: Some("a b"),
            encoding_url: true,
            contents: &objects,
            common_prefixes: &["photos/x y+z/"],
            ..Default::default()
        });
        assert!(xml.contains("<EncodingType>url</EncodingType>"));
        assert!(xml.contains("<Prefix>photos/%C3%BC</Prefix>"));
        assert!(xml.contains("<StartAfter>a%20b</StartAfter>"));
        assert!(xml.contains("<Delimiter>/</Delimiter>"));
        assert!(xml.contains("<IsTruncated>false</IsTruncated>"));
        assert!(!xml.contains("ContinuationToken"));
        assert_eq!(
            roundtrip_text(&xml, "Key"),
            vec!["photos/a%26b%20%3C1%3E.jpg", "photos/%C3%BC%20%2Bx"]
        );
        assert!(xml.contains("<CommonPrefixes><Prefix>photos/x%20y%2Bz/</Prefix></CommonPrefixes>"));
        // Decoding (as botocore does with unquote_plus/unquote) restores the key.
        let k = &roundtrip_text(&xml, "Key")[1];
        let dec = super::super::encoding::percent_decode_strict(k.as_bytes(), true).unwrap();
        assert_eq!(String::from_utf8(dec).unwrap(), "photos/ü +x");
    }

    #[test]
    fn list_objects_v1_document() {
        let objects = sample_objects();
        let xml = list_objects_v1(&ListObjectsV1 {
            name: "b",
            prefix: "",
            marker: "m",
            next_marker: Some("photos/ü +x"),
            delimiter: Some("/"),
            max_keys: 2,
            is_truncated: true,
            encoding_url: false,
            contents: &objects,
            common_prefixes: &[],
        });
        for needle in [
            "<Prefix></Prefix>",
            "<Marker>m</Marker>",
            "<NextMarker>photos/ü +x</NextMarker>",
            "<MaxKeys>2</MaxKeys>",
        ] {
            assert!(xml.contains(needle), "missing {needle}");
        }
        assert!(!xml.contains("KeyCount"));
        parse_document(xml.as_bytes()).unwrap();
    }

    #[test]
    fn multipart_documents() {
        let xml = initiate_multipart_upload("b", "dir/k&1", "UP<ID>");
        assert!(xml.ends_with("<InitiateMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>b</Bucket><Key>dir/k&amp;1</Key><UploadId>UP&lt;ID&gt;</UploadId></InitiateMultipartUploadResult>"));

        let xml = complete_multipart_upload(
            "http://h/b/k",
            "b",
            "k",
            "abc-3",
            &[(ChecksumAlgorithm::Crc32, "AAAAAA==-3")],
        );
        assert!(xml.contains("<Location>http://h/b/k</Location><Bucket>b</Bucket><Key>k</Key><ETag>&quot;abc-3&quot;</ETag><ChecksumCRC32>AAAAAA==-3</ChecksumCRC32>"));

        let parts = [
            PartEntry {
                part_number: 1,
                last_modified_ms: 1000,
                etag: "\"e1\"",
                size: 5 << 20,
                checksums: &[],
            },
            PartEntry {
                part_number: 2,
                last_modified_ms: 2000,
                etag: "e2",
                size: 7,
                checksums: &[(ChecksumAlgorithm::Sha256, "x")],
            },
        ];
        let xml = list_parts(&ListParts {
            bucket: "b",
            key: "k",
            upload_id: "u",
            part_number_marker: 0,
            next_part_number_marker: Some(2),
            max_parts: 1000,
            is_truncated: false,
            storage_class: "STANDARD",
            owner: Some(Owner {
                id: "i",
                display_name: "n",
            }),
            parts: &parts,
        });
        for needle in [
            "<UploadId>u</UploadId>",
            "<Initiator><ID>i</ID><DisplayName>n</DisplayName></Initiator>",
            "<PartNumberMarker>0</PartNumberMarker>",
            "<NextPartNumberMarker>2</NextPartNumberMarker>",
            "<MaxParts>1000</MaxParts>",
            "<Part><PartNumber>1</PartNumber><LastModified>1970-01-01T00:00:01.000Z</LastModified><ETag>&quot;e1&quot;</ETag><Size>5242880</Size></Part>",
            "<ETag>&quot;e2&quot;</ETag><Size>7</Size><ChecksumSHA256>x</ChecksumSHA256></Part>",
        ] {
            assert!(xml.contains(needle), "missing {needle} in {xml}");
        }

        let uploads = [UploadEntry {
            key: "a b",
            upload_id: "u1",
            initiated_ms: 0,
            storage_class: "STANDARD",
            owner: None,
        }];
        let xml = list_multipart_uploads(&ListMultipartUploads {
            bucket: "b",
            max_uploads: 1000,
            uploads: &uploads,
            common_prefixes: &["p/"],
            ..Default::default()
        });
        assert!(xml.contains("<Upload><Key>a b</Key><UploadId>u1</UploadId><StorageClass>STANDARD</StorageClass><Initiated>1970-01-01T00:00:00.000Z</Initiated></Upload>"));
        assert!(xml.contains("<CommonPrefixes><Prefix>p/</Prefix></CommonPrefixes>"));
        parse_document(xml.as_bytes()).unwrap();
    }

    #[test]
    fn delete_result_documents() {
        let deleted = [
            DeletedEntry {
                key: "a&b",
                version_id: None,
            },
            DeletedEntry {
                key: "c",
                version_id: Some("v1"),
            },
        ];
        let errors = [DeleteErrorEntry {
            key: "d",
            version_id: None,
            code: "AccessDenied",
            message: "Access Denied",
        }];
        let xml = delete_result(&deleted, &errors, false);
        assert!(xml.contains("<DeleteResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Deleted><Key>a&amp;b</Key></Deleted><Deleted><Key>c</Key><VersionId>v1</VersionId></Deleted><Error><Key>d</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error></DeleteResult>"));
        let quiet = delete_result(&deleted, &errors, true);
        assert!(!quiet.contains("<Deleted>"));
        assert!(quiet.contains("<Error><Key>d</Key>"));
        assert!(delete_result(&deleted, &[], true).ends_with(
            "<DeleteResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"></DeleteResult>"
        ));
    }

    #[test]
    fn copy_and_location_documents() {
        let xml = copy_object_result(1_704_067_200_000, "abc", &[]);
        assert!(xml.ends_with("<CopyObjectResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LastModified>2024-01-01T00:00:00.000Z</LastModified><ETag>&quot;abc&quot;</ETag></CopyObjectResult>"));
        assert!(copy_part_result(0, "\"x\"", &[(ChecksumAlgorithm::Crc32c, "AAAAAA==")]).contains("<CopyPartResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LastModified>1970-01-01T00:00:00.000Z</LastModified><ETag>&quot;x&quot;</ETag><ChecksumCRC32C>AAAAAA==</ChecksumCRC32C></CopyPartResult>"));
        assert!(location_constraint("us-east-1")
            .ends_with("<LocationConstraint xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"/>"));
        assert!(location_constraint("eu-west-3").ends_with(">eu-west-3</LocationConstraint>"));
    }

    #[test]
    fn etag_helpers() {
        assert_eq!(quote_etag("abc"), "\"abc\"");
        assert_eq!(quote_etag("\"abc\""), "\"abc\"");
        assert_eq!(quote_etag("\""), "\"\"\"");
        assert_eq!(normalize_etag(" \"abc-2\" "), "abc-2");
        assert_eq!(normalize_etag("abc"), "abc");
    }

    #[test]
    fn parse_complete_multipart_upload_bodies() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Part>
    <ETag>"a54357aff0632cce46d942af68356b38"</ETag>
    <PartNumber>1</PartNumber>
  </Part>
  <Part>
    <PartNumber> 2 </PartNumber>
    <ETag>&quot;0c78aef83f66abc1fa1e8477f296d394&quot;</ETag>
    <ChecksumCRC32>AAAAAA==</ChecksumCRC32>
  </Part>
  <Part><PartNumber>10000</PartNumber><ETag><![CDATA["cd"]]></ETag></Part>
</CompleteMultipartUpload>"#;
        let parts = parse_complete_multipart_upload(body).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].part_number, 1);
        assert_eq!(parts[0].etag, "\"a54357aff0632cce46d942af68356b38\"");
        assert_eq!(
            parts[0].normalized_etag(),
            "a54357aff0632cce46d942af68356b38"
        );
        assert_eq!(parts[1].part_number, 2);
        assert_eq!(
            parts[1].normalized_etag(),
            "0c78aef83f66abc1fa1e8477f296d394"
        );
        assert_eq!(
            parts[1].checksums,
            vec![(ChecksumAlgorithm::Crc32, "AAAAAA==".to_string())]
        );
        assert_eq!(parts[2].normalized_etag(), "cd");
        // Without namespace, compact.
        let p = parse_complete_multipart_upload(b"<CompleteMultipartUpload><Part><PartNumber>3</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>").unwrap();
        assert_eq!(p[0].part_number, 3);

        let err = |b: &[u8]| parse_complete_multipart_upload(b).unwrap_err().code;
        assert_eq!(
            err(b"<CompleteMultipartUpload></CompleteMultipartUpload>"),
            S3ErrorCode::MalformedXML
        );
        assert_eq!(
            err(b"<CompleteMultipartUpload><Part><ETag>x</ETag></Part></CompleteMultipartUpload>"),
            S3ErrorCode::MalformedXML
        );
        assert_eq!(err(b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>"), S3ErrorCode::MalformedXML);
        assert_eq!(err(b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>"), S3ErrorCode::MalformedXML);
        assert_eq!(err(b"<CompleteMultipartUpload><Part><PartNumber>0</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>"), S3ErrorCode::InvalidArgument);
        assert_eq!(err(b"<CompleteMultipartUpload><Part><PartNumber>10001</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>"), S3ErrorCode::InvalidArgument);
        assert_eq!(
            err(b"<CompleteMultipartUpload><Part><PartNumber>2</PartNumber><ETag>x</ETag></Part><Part><PartNumber>1</PartNumber><ETag>y</ETag></Part></CompleteMultipartUpload>"),
            S3ErrorCode::InvalidPartOrder
        );
        assert_eq!(
            err(b"<CompleteMultipartUpload><Part><PartNumber>2</PartNumber><ETag>x</ETag></Part><Part><PartNumber>2</PartNumber><ETag>y</ETag></Part></CompleteMultipartUpload>"),
            S3ErrorCode::InvalidPartOrder
        );
        assert_eq!(err(b"<Delete><Part/></Delete>"), S3ErrorCode::MalformedXML);
        assert_eq!(
            err(b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part>"),
            S3ErrorCode::MalformedXML
        );
        assert_eq!(
            err(b"<CompleteMultipartUpload><Bogus/></CompleteMultipartUpload>"),
            S3ErrorCode::MalformedXML
        );
        assert_eq!(err(b""), S3ErrorCode::MalformedXML);
        assert_eq!(err(b"not xml"), S3ErrorCode::MalformedXML);
        // More than 10000 parts.
        let mut big = String::from("<CompleteMultipartUpload>");
        for i in 1..=10_001 {
            big.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>e</ETag></Part>",
                i.min(10_000)
            ));
        }
        big.push_str("</CompleteMultipartUpload>");
        assert_eq!(err(big.as_bytes()), S3ErrorCode::MalformedXML);
    }

    #[test]
    fn parse_delete_bodies() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
    <Quiet>true</Quiet>
    <Object><Key> spaced key </Key></Object>
    <Object><Key>a&amp;b&lt;c&#x1;</Key><VersionId>v1</VersionId></Object>
    <Object><Key>../../etc/passwd</Key></Object>
</Delete>"#;
        let d = parse_delete(body).unwrap();
        assert!(d.quiet);
        assert_eq!(d.objects.len(), 3);
        assert_eq!(
            d.objects[0],
            ObjectIdentifier {
                key: " spaced key ".into(),
                version_id: None
            }
        );
        assert_eq!(
            d.objects[1],
            ObjectIdentifier {
                key: "a&b<c\u{1}".into(),
                version_id: Some("v1".into())
            }
        );
        assert_eq!(d.objects[2].key, "../../etc/passwd");
        assert!(
            !parse_delete(b"<Delete><Object><Key>k</Key></Object></Delete>")
                .unwrap()
                .quiet
        );

        let err = |b: &[u8]| parse_delete(b).unwrap_err().code;
        assert_eq!(err(b"<Delete></Delete>"), S3ErrorCode::MalformedXML);
        assert_eq!(
            err(b"<Delete><Object></Object></Delete>"),
            S3ErrorCode::MalformedXML
        );
        assert_eq!(
            err(b"<Delete><Quiet>maybe</Quiet><Object><Key>k</Key></Object></Delete>"),
            S3ErrorCode::MalformedXML
        );
        assert_eq!(
            err(b"<Delete><Object><Key>k</Key></Object></Delete><Delete/>"),
            S3ErrorCode::MalformedXML
        );
        assert_eq!(
            err(b"<Delete><Object><Key>k</Key></Object></Delete>trailing"),
            S3ErrorCode::MalformedXML
        );
        assert_eq!(
            err(b"<Delete><Object><Key>k</Key></Objekt></Delete>"),
            S3ErrorCode::MalformedXML
        );
        assert_eq!(
            err(b"<Delete><Object><Key>&bogus;</Key></Object></Delete>"),
            S3ErrorCode::MalformedXML
        );
        assert_eq!(
            err(b"<?xml version=\"1.0\"?><!DOCTYPE d [<!ENTITY x \"y\">]><Delete><Object><Key>&x;</Key></Object></Delete>"),
            S3ErrorCode::MalformedXML
        );
        assert_eq!(
            err(b"<Delete><Object><Key>\xff</Key></Object></Delete>"),
            S3ErrorCode::MalformedXML
        );

        let mut body = String::from("<Delete>");
        for i in 0..MAX_DELETE_OBJECTS {
            body.push_str(&format!("<Object><Key>k{i}</Key></Object>"));
        }
        let ok = format!("{body}</Delete>");
        assert_eq!(parse_delete(ok.as_bytes()).unwrap().objects.len(), 1000);
        let over = format!("{body}<Object><Key>one-too-many</Key></Object></Delete>");
        let e = parse_delete(over.as_bytes()).unwrap_err();
        assert_eq!((e.code, e.status()), (S3ErrorCode::MalformedXML, 400));
    }

    #[test]
    fn parse_create_bucket_configuration_bodies() {
        assert_eq!(parse_create_bucket_configuration(b"").unwrap(), None);
        assert_eq!(parse_create_bucket_configuration(b"  \n").unwrap(), None);
        assert_eq!(
            parse_create_bucket_configuration(
                br#"<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><LocationConstraint>eu-west-3</LocationConstraint></CreateBucketConfiguration>"#
            )
            .unwrap(),
            Some("eu-west-3".to_string())
        );
        assert_eq!(
            parse_create_bucket_configuration(b"<CreateBucketConfiguration><Location><Type>AvailabilityZone</Type></Location></CreateBucketConfiguration>").unwrap(),
            None
        );
        assert_eq!(
            parse_create_bucket_configuration(
                b"<CreateBucketConfiguration><LocationConstraint/></CreateBucketConfiguration>"
            )
            .unwrap(),
            None
        );
        assert_eq!(
            parse_create_bucket_configuration(b"<Other/>")
                .unwrap_err()
                .code,
            S3ErrorCode::MalformedXML
        );
        assert_eq!(
            parse_create_bucket_configuration(b"<CreateBucketConfiguration>")
                .unwrap_err()
                .code,
            S3ErrorCode::MalformedXML
        );
    }

    #[test]
    fn document_limits() {
        let deep = format!(
            "{}{}",
            "<a>".repeat(MAX_XML_DEPTH + 1),
            "</a>".repeat(MAX_XML_DEPTH + 1)
        );
        assert_eq!(
            parse_document(deep.as_bytes()).unwrap_err().code,
            S3ErrorCode::MalformedXML
        );
        let ok = format!(
            "{}{}",
            "<a>".repeat(MAX_XML_DEPTH),
            "</a>".repeat(MAX_XML_DEPTH)
        );
        parse_document(ok.as_bytes()).unwrap();
        let big = vec![b' '; MAX_XML_BODY_BYTES + 1];
        assert_eq!(
            parse_document(&big).unwrap_err().code,
            S3ErrorCode::MalformedXML
        );
        let many = format!("<r>{}</r>", "<x/>".repeat(MAX_XML_ELEMENTS));
        assert_eq!(
            parse_document(many.as_bytes()).unwrap_err().code,
            S3ErrorCode::MalformedXML
        );
        // Comments and processing instructions are tolerated.
        let d = parse_document(
            b"<?xml version=\"1.0\"?><!-- c --><r><?pi x?><k>v</k></r><!-- tail -->",
        )
        .unwrap();
        assert_eq!(d.child("k").unwrap().text, "v");
        assert_eq!(d.children_named("k").count(), 1);
    }

    /// Writes one sample of every renderer to `$S3_XML_DUMP_DIR` so that
    /// `testdata/gen/check_xml.py` can parse them with real boto3:
    /// `S3_XML_DUMP_DIR=/tmp/x cargo test dump_samples -- --ignored && python3 check_xml.py /tmp/x`
    #[test]
    #[ignore]
    fn dump_samples_for_boto3_check() {
        use super::super::error::S3Error;
        let Ok(dir) = std::env::var("S3_XML_DUMP_DIR") else {
            return;
        };
        let w = |name: &str, s: String| std::fs::write(format!("{dir}/{name}.xml"), s).unwrap();
        let owner = Owner {
            id: "oid",
            display_name: "me",
        };
        let objs = [
            ObjectEntry {
                key: "a&b <c> ü+x y",
                last_modified_ms: 1_704_067_200_123,
                etag: "abc",
                size: 42,
                storage_class: "STANDARD",
                owner: None,
            },
            ObjectEntry {
                key: "k2",
                last_modified_ms: 0,
                etag: "\"def-2\"",
                size: 0,
                storage_class: "STANDARD",
                owner: Some(owner),
            },
        ];
        w(
            "ListObjectsV2",
            list_objects_v2(&ListObjectsV2 {
                name: "b",
                prefix: "p/",
                delimiter: Some("/"),
                max_keys: 1000,
                is_truncated: true,
                continuation_token: Some("c1"),
                next_continuation_token: Some("c2"),
                start_after: Some("s"),
                encoding_url: false,
                contents: &objs,
                common_prefixes: &["p/q/"],
            }),
        );
        w(
            "ListObjectsV2url",
            list_objects_v2(&ListObjectsV2 {
                name: "b",
                prefix: "p ü/",
                delimiter: Some("/"),
                max_keys: 1000,
                encoding_url: true,
                contents: &objs,
                common_prefixes: &["p ü/q+r/"],
                ..Default::default()
            }),
        );
        w(
            "ListObjects",
            list_objects_v1(&ListObjectsV1 {
                name: "b",
                prefix: "",
                marker: "m",
                next_marker: Some("n"),
                delimiter: Some("/"),
                max_keys: 2,
                is_truncated: true,
                encoding_url: false,
                contents: &objs,
                common_prefixes: &[],
            }),
        );
        w(
            "ListBuckets",
            list_all_my_buckets(
                Some(&owner),
                &[BucketEntry {
                    name: "b1",
                    creation_date_ms: 1_704_067_200_000,
                }],
            ),
        );
        w(
            "CreateMultipartUpload",
            initiate_multipart_upload("b", "k", "up1"),
        );
        w(
            "CompleteMultipartUpload",
            complete_multipart_upload(
                "http://x/b/k",
                "b",
                "k",
                "e-2",
                &[(ChecksumAlgorithm::Crc32, "AAAAAA==-2")],
            ),
        );
        let parts = [PartEntry {
            part_number: 1,
            last_modified_ms: 5,
            etag: "e1",
            size: 5,
            checksums: &[(ChecksumAlgorithm::Crc32, "AAAAAA==")],
        }];
        w(
            "ListParts",
            list_parts(&ListParts {
                bucket: "b",
                key: "k",
                upload_id: "u",
                part_number_marker: 0,
                next_part_number_marker: Some(1),
                max_parts: 1000,
                is_truncated: false,
                storage_class: "STANDARD",
                owner: Some(owner),
                parts: &parts,
            }),
        );
        let ups = [UploadEntry {
            key: "k",
            upload_id: "u",
            initiated_ms: 7,
            storage_class: "STANDARD",
            owner: Some(owner),
        }];
        w(
            "ListMultipartUploads",
            list_multipart_uploads(&ListMultipartUploads {
                bucket: "b",
                max_uploads: 1000,
                uploads: &ups,
                common_prefixes: &["x/"],
                ..Default::default()
            }),
        );
        w(
            "DeleteObjects",
            delete_result(
                &[DeletedEntry {
                    key: "d1",
                    version_id: Some("v"),
                }],
                &[DeleteErrorEntry {
                    key: "e1",
                    version_id: None,
                    code: "AccessDenied",
                    message: "Access Denied",
                }],
                false,
            ),
        );
        w(
            "CopyObject",
            copy_object_result(1_704_067_200_000, "abc", &[]),
        );
        w(
            "UploadPartCopy",
            copy_part_result(1_704_067_200_000, "abc", &[]),
        );
        w("GetBucketLocation", location_constraint("eu-west-3"));
        w("GetBucketLocationUsEast1", location_constraint("us-east-1"));
        w(
            "Error",
            S3Error::new(S3ErrorCode::NoSuchKey, "The specified key does not exist.")
                .with_resource("/b/k")
                .with_extra("Key", "k")
                .to_xml("REQ123"),
        );
    }
}
