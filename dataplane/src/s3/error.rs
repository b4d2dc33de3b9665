//! S3 error codes, HTTP statuses and the XML error document.
//!
//! Codes and statuses follow the "List of error codes" of the Amazon S3 API
//! reference. [`S3Error::to_xml`] renders the `<Error>` body S3 returns.
//!
//! Note for callers: a [`S3ErrorCode::NotModified`] (304) response and any
//! reply to a `HEAD` request must be sent without a body.

use std::fmt;

use super::xml::escape;

/// Every error code this crate can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum S3ErrorCode {
    AccessDenied,
    AccountProblem,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    BadDigest,
    BucketAlreadyExists,
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    EntityTooLarge,
    EntityTooSmall,
    ExpiredToken,
    IncompleteBody,
    InsufficientStorage,
    InternalError,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidBucketName,
    InvalidDigest,
    InvalidPart,
    InvalidPartOrder,
    InvalidPartNumber,
    InvalidRange,
    InvalidRequest,
    InvalidStorageClass,
    InvalidTag,
    InvalidURI,
    KeyTooLongError,
    MalformedTrailerError,
    MalformedXML,
    MetadataTooLarge,
    MethodNotAllowed,
    MissingContentLength,
    MissingRequestBodyError,
    MissingSecurityHeader,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    NotImplemented,
    NotModified,
    PreconditionFailed,
    RequestHeaderSectionTooLarge,
    RequestTimeout,
    RequestTimeTooSkewed,
    ServiceUnavailable,
    SignatureDoesNotMatch,
    SlowDown,
    TooManyBuckets,
    XAmzContentSHA256Mismatch,
}

impl S3ErrorCode {
    /// All codes, for exhaustive tests and lookups.
    pub const ALL: &'static [S3ErrorCode] = &[
        S3ErrorCode::AccessDenied,
        S3ErrorCode::AccountProblem,
        S3ErrorCode::AuthorizationHeaderMalformed,
        S3ErrorCode::AuthorizationQueryParametersError,
        S3ErrorCode::BadDigest,
        S3ErrorCode::BucketAlreadyExists,
        S3ErrorCode::BucketAlreadyOwnedByYou,
        S3ErrorCode::BucketNotEmpty,
        S3ErrorCode::EntityTooLarge,
        S3ErrorCode::EntityTooSmall,
        S3ErrorCode::ExpiredToken,
        S3ErrorCode::IncompleteBody,
        S3ErrorCode::InsufficientStorage,
        S3ErrorCode::InternalError,
        S3ErrorCode::InvalidAccessKeyId,
        S3ErrorCode::InvalidArgument,
        S3ErrorCode::InvalidBucketName,
        S3ErrorCode::InvalidDigest,
        S3ErrorCode::InvalidPart,
        S3ErrorCode::InvalidPartOrder,
        S3ErrorCode::InvalidPartNumber,
        S3ErrorCode::InvalidRange,
        S3ErrorCode::InvalidRequest,
        S3ErrorCode::InvalidStorageClass,
        S3ErrorCode::InvalidTag,
        S3ErrorCode::InvalidURI,
        S3ErrorCode::KeyTooLongError,
        S3ErrorCode::MalformedTrailerError,
        S3ErrorCode::MalformedXML,
        S3ErrorCode::MetadataTooLarge,
        S3ErrorCode::MethodNotAllowed,
        S3ErrorCode::MissingContentLength,
        S3ErrorCode::MissingRequestBodyError,
        S3ErrorCode::MissingSecurityHeader,
        S3ErrorCode::NoSuchBucket,
        S3ErrorCode::NoSuchKey,
        S3ErrorCode::NoSuchUpload,
        S3ErrorCode::NotImplemented,
        S3ErrorCode::NotModified,
        S3ErrorCode::PreconditionFailed,
        S3ErrorCode::RequestHeaderSectionTooLarge,
        S3ErrorCode::RequestTimeout,
        S3ErrorCode::RequestTimeTooSkewed,
        S3ErrorCode::ServiceUnavailable,
        S3ErrorCode::SignatureDoesNotMatch,
        S3ErrorCode::SlowDown,
        S3ErrorCode::TooManyBuckets,
        S3ErrorCode::XAmzContentSHA256Mismatch,
    ];

    /// The `<Code>` string.
    pub fn as_str(self) -> &'static str {
        use S3ErrorCode::*;
        match self {
            AccessDenied => "AccessDenied",
            AccountProblem => "AccountProblem",
            AuthorizationHeaderMalformed => "AuthorizationHeaderMalformed",
            AuthorizationQueryParametersError => "AuthorizationQueryParametersError",
            BadDigest => "BadDigest",
            BucketAlreadyExists => "BucketAlreadyExists",
            BucketAlreadyOwnedByYou => "BucketAlreadyOwnedByYou",
            BucketNotEmpty => "BucketNotEmpty",
            EntityTooLarge => "EntityTooLarge",
            EntityTooSmall => "EntityTooSmall",
            ExpiredToken => "ExpiredToken",
            IncompleteBody => "IncompleteBody",
            InsufficientStorage => "InsufficientStorage",
            InternalError => "InternalError",
            InvalidAccessKeyId => "InvalidAccessKeyId",
            InvalidArgument => "InvalidArgument",
            InvalidBucketName => "InvalidBucketName",
            InvalidDigest => "InvalidDigest",
            InvalidPart => "InvalidPart",
            InvalidPartOrder => "InvalidPartOrder",
            InvalidRange => "InvalidRange",
            InvalidPartNumber => "InvalidPartNumber",
            InvalidRequest => "InvalidRequest",
            InvalidStorageClass => "InvalidStorageClass",
            InvalidTag => "InvalidTag",
            InvalidURI => "InvalidURI",
            KeyTooLongError => "KeyTooLongError",
            MalformedTrailerError => "MalformedTrailerError",
            MalformedXML => "MalformedXML",
            MetadataTooLarge => "MetadataTooLarge",
            MethodNotAllowed => "MethodNotAllowed",
            MissingContentLength => "MissingContentLength",
            MissingRequestBodyError => "MissingRequestBodyError",
            MissingSecurityHeader => "MissingSecurityHeader",
            NoSuchBucket => "NoSuchBucket",
            NoSuchKey => "NoSuchKey",
            NoSuchUpload => "NoSuchUpload",
            NotImplemented => "NotImplemented",
            NotModified => "NotModified",
            PreconditionFailed => "PreconditionFailed",
            RequestHeaderSectionTooLarge => "RequestHeaderSectionTooLarge",
            RequestTimeout => "RequestTimeout",
            RequestTimeTooSkewed => "RequestTimeTooSkewed",
            ServiceUnavailable => "ServiceUnavailable",
            SignatureDoesNotMatch => "SignatureDoesNotMatch",
            SlowDown => "SlowDown",
            TooManyBuckets => "TooManyBuckets",
            XAmzContentSHA256Mismatch => "XAmzContentSHA256Mismatch",
        }
    }

    /// Parses a `<Code>` string back into the enum.
    pub fn from_code_str(s: &str) -> Option<S3ErrorCode> {
        S3ErrorCode::ALL.iter().copied().find(|c| c.as_str() == s)
    }

    /// The HTTP status S3 returns with this code.
    pub fn status(self) -> u16 {
        use S3ErrorCode::*;
        match self {
            NotModified => 304,
            AuthorizationHeaderMalformed
            | AuthorizationQueryParametersError
            | BadDigest
            | EntityTooLarge
            | EntityTooSmall
            | ExpiredToken
            | IncompleteBody
            | InvalidArgument
            | InvalidBucketName
            | InvalidDigest
            | InvalidPart
            | InvalidPartOrder
            | InvalidRequest
            | InvalidStorageClass
            | InvalidTag
            | InvalidURI
            | KeyTooLongError
            | MalformedTrailerError
            | MalformedXML
            | MetadataTooLarge
            | MissingRequestBodyError
            | MissingSecurityHeader
            | RequestHeaderSectionTooLarge
            | RequestTimeout
            | TooManyBuckets
            | XAmzContentSHA256Mismatch => 400,
            AccessDenied
            | AccountProblem
            | InvalidAccessKeyId
            | RequestTimeTooSkewed
            | SignatureDoesNotMatch => 403,
            NoSuchBucket | NoSuchKey | NoSuchUpload => 404,
            MethodNotAllowed => 405,
            BucketAlreadyExists | BucketAlreadyOwnedByYou | BucketNotEmpty => 409,
            MissingContentLength => 411,
            PreconditionFailed => 412,
            InvalidRange | InvalidPartNumber => 416,
            InternalError => 500,
            NotImplemented => 501,
            ServiceUnavailable | SlowDown => 503,
            InsufficientStorage => 507,
        }
    }

    /// The message S3 uses when there is nothing more specific to say.
    pub fn default_message(self) -> &'static str {
        use S3ErrorCode::*;
        match self {
            AccessDenied => "Access Denied",
            AccountProblem => "There is a problem with your account that prevents the operation from completing successfully.",
            AuthorizationHeaderMalformed => "The authorization header you provided is invalid.",
            AuthorizationQueryParametersError => "Error parsing the X-Amz-Credential parameter.",
            BadDigest => "The Content-MD5 you specified did not match what we received.",
            BucketAlreadyExists => "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again.",
            BucketAlreadyOwnedByYou => "Your previous request to create the named bucket succeeded and you already own it.",
            BucketNotEmpty => "The bucket you tried to delete is not empty",
            EntityTooLarge => "Your proposed upload exceeds the maximum allowed object size.",
            EntityTooSmall => "Your proposed upload is smaller than the minimum allowed object size.",
            ExpiredToken => "The provided token has expired.",
            IncompleteBody => "You did not provide the number of bytes specified by the Content-Length HTTP header.",
            InsufficientStorage => "Insufficient storage space is available to complete the request.",
            InternalError => "We encountered an internal error. Please try again.",
            InvalidAccessKeyId => "The AWS Access Key Id you provided does not exist in our records.",
            InvalidArgument => "Invalid Argument",
            InvalidBucketName => "The specified bucket is not valid.",
            InvalidDigest => "The Content-MD5 you specified is not valid.",
            InvalidPart => "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.",
            InvalidPartOrder => "The list of parts was not in ascending order. The parts list must be specified in order by part number.",
            InvalidRange => "The requested range is not satisfiable",
            InvalidPartNumber => "The requested partnumber is not satisfiable",
            InvalidRequest => "Invalid Request",
            InvalidStorageClass => "The storage class you specified is not valid",
            InvalidTag => "The tag set you provided is not valid",
            InvalidURI => "Couldn't parse the specified URI.",
            KeyTooLongError => "Your key is too long",
            MalformedTrailerError => "The request contained trailing data that was not well-formed or did not conform to our published schema.",
            MalformedXML => "The XML you provided was not well-formed or did not validate against our published schema",
            MetadataTooLarge => "Your metadata headers exceed the maximum allowed metadata size.",
            MethodNotAllowed => "The specified method is not allowed against this resource.",
            MissingContentLength => "You must provide the Content-Length HTTP header.",
            MissingRequestBodyError => "Request Body is empty",
            MissingSecurityHeader => "Your request is missing a required header.",
            NoSuchBucket => "The specified bucket does not exist",
            NoSuchKey => "The specified key does not exist.",
            NoSuchUpload => "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
            NotImplemented => "A header you provided implies functionality that is not implemented",
            NotModified => "Not Modified",
            PreconditionFailed => "At least one of the pre-conditions you specified did not hold",
            RequestHeaderSectionTooLarge => "Your request header section exceeds the maximum allowed size.",
            RequestTimeout => "Your socket connection to the server was not read from or written to within the timeout period.",
            RequestTimeTooSkewed => "The difference between the request time and the current time is too large.",
            ServiceUnavailable => "Service is unable to handle request.",
            SignatureDoesNotMatch => "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
            SlowDown => "Please reduce your request rate.",
            TooManyBuckets => "You have attempted to create more buckets than allowed",
            XAmzContentSHA256Mismatch => "The provided 'x-amz-content-sha256' header does not match what was computed.",
        }
    }
}

impl fmt::Display for S3ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An S3 error: code, human message, optional resource, and optional extra
/// elements that S3 adds to some errors (e.g. `StringToSign` for
/// `SignatureDoesNotMatch`, `ActualObjectSize` for `InvalidRange`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Error {
    pub code: S3ErrorCode,
    pub message: String,
    pub resource: Option<String>,
    /// Extra child elements of `<Error>`, rendered in order after `<Message>`.
    pub extra: Vec<(&'static str, String)>,
}

impl S3Error {
    pub fn new(code: S3ErrorCode, message: impl Into<String>) -> S3Error {
        S3Error {
            code,
            message: message.into(),
            resource: None,
            extra: Vec::new(),
        }
    }

    /// An error carrying the code's default message.
    pub fn from_code(code: S3ErrorCode) -> S3Error {
        S3Error::new(code, code.default_message())
    }

    pub fn with_resource(mut self, resource: impl Into<String>) -> S3Error {
        self.resource = Some(resource.into());
        self
    }

    pub fn with_extra(mut self, name: &'static str, value: impl Into<String>) -> S3Error {
        self.extra.push((name, value.into()));
        self
    }

    /// Value of an extra element, if present.
    pub fn extra(&self, name: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    pub fn code_str(&self) -> &'static str {
        self.code.as_str()
    }

    /// The XML error document, e.g.
    /// `<?xml ...?><Error><Code>NoSuchKey</Code><Message>..</Message><Resource>..</Resource><RequestId>..</RequestId></Error>`.
    pub fn to_xml(&self, request_id: &str) -> String {
        let mut s = String::with_capacity(192 + self.message.len());
        s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>");
        s.push_str(self.code.as_str());
        s.push_str("</Code><Message>");
        escape(&mut s, &self.message);
        s.push_str("</Message>");
        for (name, value) in &self.extra {
            s.push('<');
            s.push_str(name);
            s.push('>');
            escape(&mut s, value);
            s.push_str("</");
            s.push_str(name);
            s.push('>');
        }
        if let Some(r) = &self.resource {
            s.push_str("<Resource>");
            escape(&mut s, r);
            s.push_str("</Resource>");
        }
        s.push_str("<RequestId>");
        escape(&mut s, request_id);
        s.push_str("</RequestId></Error>");
        s
    }
}

impl fmt::Display for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code.as_str(),
            self.code.status(),
            self.message
        )
    }
}

impl std::error::Error for S3Error {}

impl From<S3ErrorCode> for S3Error {
    fn from(code: S3ErrorCode) -> S3Error {
        S3Error::from_code(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_match_aws() {
        use S3ErrorCode::*;
        let expect = [
            (AccessDenied, 403),
            (SignatureDoesNotMatch, 403),
            (InvalidAccessKeyId, 403),
            (AuthorizationHeaderMalformed, 400),
            (AuthorizationQueryParametersError, 400),
            (RequestTimeTooSkewed, 403),
            (ExpiredToken, 400),
            (NoSuchBucket, 404),
            (NoSuchKey, 404),
            (NoSuchUpload, 404),
            (BucketAlreadyOwnedByYou, 409),
            (BucketAlreadyExists, 409),
            (BucketNotEmpty, 409),
            (InvalidBucketName, 400),
            (KeyTooLongError, 400),
            (InvalidArgument, 400),
            (InvalidRange, 416),
            (InvalidPart, 400),
            (InvalidPartOrder, 400),
            (EntityTooSmall, 400),
            (EntityTooLarge, 400),
            (IncompleteBody, 400),
            (BadDigest, 400),
            (InvalidDigest, 400),
            (XAmzContentSHA256Mismatch, 400),
            (MalformedXML, 400),
            (MalformedTrailerError, 400),
            (MethodNotAllowed, 405),
            (NotImplemented, 501),
            (InvalidRequest, 400),
            (MissingContentLength, 411),
            (RequestHeaderSectionTooLarge, 400),
            (InternalError, 500),
            (ServiceUnavailable, 503),
            (SlowDown, 503),
            (InsufficientStorage, 507),
            (PreconditionFailed, 412),
            (NotModified, 304),
            (RequestTimeout, 400),
            (InvalidURI, 400),
        ];
        for (code, status) in expect {
            assert_eq!(code.status(), status, "{code}");
        }
    }

    #[test]
    fn code_strings_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for &c in S3ErrorCode::ALL {
            assert!(seen.insert(c.as_str()), "duplicate {}", c.as_str());
            assert_eq!(S3ErrorCode::from_code_str(c.as_str()), Some(c));
            assert_eq!(format!("{c}"), c.as_str());
            assert!(!c.default_message().is_empty());
        }
        assert_eq!(
            S3ErrorCode::InsufficientStorage.as_str(),
            "InsufficientStorage"
        );
        assert_eq!(S3ErrorCode::from_code_str("Nope"), None);
    }

    #[test]
    fn xml_document_is_escaped_and_ordered() {
        let e = S3Error::new(S3ErrorCode::NoSuchKey, "key <a&b> \"q\"")
            .with_resource("/bucket/a&b")
            .with_extra("Key", "a&b");
        assert_eq!(e.status(), 404);
        assert_eq!(e.code_str(), "NoSuchKey");
        assert_eq!(e.extra("Key"), Some("a&b"));
        let xml = e.to_xml("REQ<1>");
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>\
             <Message>key &lt;a&amp;b&gt; &quot;q&quot;</Message><Key>a&amp;b</Key>\
             <Resource>/bucket/a&amp;b</Resource><RequestId>REQ&lt;1&gt;</RequestId></Error>"
        );
    }

    #[test]
    fn from_code_uses_default_message_and_display() {
        let e: S3Error = S3ErrorCode::BucketNotEmpty.into();
        assert_eq!(e.message, "The bucket you tried to delete is not empty");
        assert_eq!(e.resource, None);
        assert_eq!(
            e.to_string(),
            "BucketNotEmpty (409): The bucket you tried to delete is not empty"
        );
        let xml = e.to_xml("id");
        assert!(xml.contains("<Code>BucketNotEmpty</Code>"));
        assert!(!xml.contains("<Resource>"));
    }
}
