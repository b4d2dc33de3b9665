//! Pure, I/O-free S3 protocol helpers.
//!
//! * [`error`]: S3 error codes, statuses and the XML error body.
//! * [`http`]: HTTP/1.1 request-head parsing, response heads, chunked bodies.
//! * [`sigv4`]: AWS Signature Version 4 verification (header and presigned).
//! * [`chunked`]: `aws-chunked` body decoding with chunk-signature checks.
//! * [`checksum`]: flexible checksums, MD5/ETag, Content-MD5.
//! * [`xml`]: response renderers and request-body parsers.
//! * [`names`]: bucket-name and object-key validation.
//! * [`range`]: `Range` header handling for GetObject.
//! * [`datetime`], [`encoding`]: shared date and encoding helpers.
//!
//! Modules refer to each other only through `super::`, so the directory can
//! be mounted anywhere in a crate as `mod s3;`.

pub mod checksum;
pub mod chunked;
pub mod datetime;
pub mod encoding;
pub mod error;
pub mod http;
pub mod names;
pub mod range;
pub mod sigv2;
pub mod sigv4;
pub mod tagging;
pub mod xml;

#[cfg(test)]
mod fixture_tests;
