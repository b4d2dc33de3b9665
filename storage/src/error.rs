use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

/// Every error says what happened, to what, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key of {len} bytes exceeds the limit of {max} bytes (MAX_KEY_BYTES); use a shorter key")]
    KeyTooLong { len: usize, max: usize },
    #[error("record metadata of {len} bytes exceeds the limit of {max} bytes (MAX_META_BYTES)")]
    MetaTooLarge { len: usize, max: usize },
    #[error("record value of {len} bytes exceeds the limit of {max} bytes (MAX_VALUE_BYTES); split it into blocks")]
    ValueTooLarge { len: usize, max: usize },
    #[error("record of {len} bytes does not fit a segment of {segment_bytes} bytes; raise segment_bytes or write smaller records")]
    RecordTooLarge { len: usize, segment_bytes: u64 },
    #[error("invalid storage configuration: {0}")]
    Config(String),
    #[error("data directory {dir} was written by storage format version {found}; this build reads up to version {supported}: upgrade dataplane")]
    NewerFormat { dir: PathBuf, found: u32, supported: u32 },
    #[error("data directory {dir} is locked by another process (pid {holder}); stop it or use another data_dir")]
    Locked { dir: PathBuf, holder: String },
    #[error("{path}: {what}")]
    BadFile { path: PathBuf, what: String },
    #[error("corrupt record in {path} at offset {offset}: {detail}; the key is listed as damaged and fullsync will repair it from a peer")]
    Corrupt { path: PathBuf, offset: u64, detail: String },
    #[error("no space left for partition {partition} in {dir}: {detail}; free disk space, writes resume by themselves")]
    NoSpace { partition: u32, dir: PathBuf, detail: String },
    #[error("partition {partition} stopped after an I/O error on {path}: {detail}; check the disk and restart the node")]
    Failed { partition: u32, path: PathBuf, detail: String },
    #[error("partition {0} is closed")]
    Closed(u32),
    #[error("unknown cursor {name:?} on partition {partition}")]
    NoSuchCursor { partition: u32, name: String },
    #[error("cursor {name:?} on partition {partition}: {detail}")]
    BadCursor { partition: u32, name: String, detail: String },
    #[error("{context}: {source}")]
    Io { context: String, #[source] source: std::io::Error },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io { context: context.into(), source }
    }

    /// True when the error is a lack of disk space (the write may be retried
    /// once space is available again).
    pub fn is_no_space(&self) -> bool {
        matches!(self, Error::NoSpace { .. })
    }
}

pub(crate) fn is_enospc(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC)
        || e.raw_os_error() == Some(libc::EDQUOT)
        || matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
}
