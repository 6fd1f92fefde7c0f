//! Small filesystem helpers: atomic replacement, lock files with a timeout, randomness.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::user::with_suffix;

/// Replace `path` with `data` so that readers never see a partial file: write a uniquely
/// named sibling first, then rename it over the target.
pub fn write_bytes_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = with_suffix(path, &format!(".tmp-{}", random_u64() % 10_000_000));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// An exclusive `flock` on a lock file, released on drop.
///
/// `flock` locks belong to the open file description, so two threads of one process that
/// each open the file exclude each other just like two processes do.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
    path: PathBuf,
}

impl FileLock {
    /// Wait up to `timeout` for the lock, creating the file (not its directory) if needed.
    pub fn acquire(path: &Path, timeout: Duration) -> Result<FileLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            match file.try_lock() {
                Ok(()) => {
                    return Ok(FileLock {
                        _file: file,
                        path: path.to_owned(),
                    });
                }
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(Error::LockTimeout {
                        path: path.to_owned(),
                        secs: timeout.as_secs(),
                    });
                }
                Err(TryLockError::Error(e)) => return Err(Error::io(path, e)),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Fill `buf` from the OS CSPRNG. Failure means the system is unusable for anything
/// security related, so it is treated as fatal.
pub fn random_bytes(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the operating system's random number generator failed");
}

pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    random_bytes(&mut b);
    u64::from_le_bytes(b)
}

/// A string of `len` characters drawn uniformly from `alphabet` (rejection sampling, so
/// there is no modulo bias).
pub fn random_string(alphabet: &[u8], len: usize) -> String {
    assert!(!alphabet.is_empty() && alphabet.len() <= 256);
    let n = alphabet.len();
    // Largest multiple of n that fits in a byte; bytes at or above it are rejected.
    let limit = 256 - (256 % n);
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        random_bytes(&mut buf);
        for &b in &buf {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % n] as char);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        write_bytes_atomic(&p, b"one").unwrap();
        write_bytes_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn atomic_write_into_missing_dir_fails_cleanly() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("nodir").join("f");
        let err = write_bytes_atomic(&p, b"x").unwrap_err();
        assert!(err.to_string().contains("nodir"));
    }

    #[test]
    fn lock_excludes_and_times_out() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.lock");
        let held = FileLock::acquire(&p, Duration::from_secs(1)).unwrap();
        assert_eq!(held.path(), p);
        let start = Instant::now();
        let err = FileLock::acquire(&p, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, Error::LockTimeout { .. }));
        assert!(start.elapsed() >= Duration::from_millis(200));
        drop(held);
        FileLock::acquire(&p, Duration::from_millis(200)).unwrap();
    }

    #[test]
    fn random_strings_use_alphabet() {
        let s = random_string(b"abc", 300);
        assert_eq!(s.len(), 300);
        assert!(s.bytes().all(|b| b"abc".contains(&b)));
        assert!(s.contains('a') && s.contains('b') && s.contains('c'));
        assert_ne!(
            random_string(b"0123456789", 20),
            random_string(b"0123456789", 20)
        );
    }
}
