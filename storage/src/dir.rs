//! The data directory: an exclusive lock and the format marker.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::segment::FORMAT_VERSION;

pub const FORMAT_FILE: &str = "FORMAT";
const LOCK_FILE: &str = "LOCK";

/// An opened, locked data directory. The lock is held until this is dropped.
pub struct StoreDir {
    path: PathBuf,
    _lock: File,
}

impl StoreDir {
    /// Creates the directory if needed, takes its lock (failing if another
    /// process holds it) and checks the format version.
    pub fn open(path: &Path) -> Result<StoreDir> {
        std::fs::create_dir_all(path).map_err(|e| Error::io(format!("creating data directory {}", path.display()), e))?;
        let lock_path = path.join(LOCK_FILE);
        let mut lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("opening {}", lock_path.display()), e))?;
        // SAFETY: flock on a valid fd.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let mut holder = String::new();
            let _ = lock.read_to_string(&mut holder);
            let holder = holder.trim().to_string();
            return Err(Error::Locked { dir: path.to_path_buf(), holder: if holder.is_empty() { "unknown".into() } else { holder } });
        }
        lock.set_len(0).ok();
        let _ = write!(lock, "{}", std::process::id());
        let _ = lock.sync_data();

        let fmt_path = path.join(FORMAT_FILE);
        match std::fs::read_to_string(&fmt_path) {
            Ok(s) => {
                let found: u32 = s
                    .trim()
                    .strip_prefix("dataplane-storage ")
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| Error::BadFile { path: fmt_path.clone(), what: format!("unrecognised format marker {:?}", s.trim()) })?;
                if found > FORMAT_VERSION {
                    return Err(Error::NewerFormat { dir: path.to_path_buf(), found, supported: FORMAT_VERSION });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::cursor::write_atomic(path, FORMAT_FILE, format!("dataplane-storage {FORMAT_VERSION}\n").as_bytes())
                    .map_err(|e| Error::io(format!("writing {}", fmt_path.display()), e))?;
            }
            Err(e) => return Err(Error::io(format!("reading {}", fmt_path.display()), e)),
        }
        Ok(StoreDir { path: path.to_path_buf(), _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Directory of partition `p`.
    pub fn partition_dir(&self, p: u32) -> PathBuf {
        self.path.join(format!("p{p:05}"))
    }

    /// Free bytes on the filesystem holding the directory.
    pub fn free_bytes(&self) -> Option<u64> {
        free_bytes(&self.path)
    }
}

pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some(s.f_bavail as u64 * s.f_frsize as u64)
}
