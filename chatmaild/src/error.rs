//! The one error type of the library.

use std::path::PathBuf;

/// Everything that can go wrong in the chatmaild library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: invalid ini syntax: {message}", path.display())]
    IniSyntax { path: PathBuf, message: String },

    #[error("{}: missing [params] section", path.display())]
    MissingSection { path: PathBuf },

    #[error("{}: missing required setting '{key}' in [params]", path.display())]
    MissingKey { path: PathBuf, key: String },

    #[error("{}: setting '{key}' appears more than once", path.display())]
    DuplicateKey { path: PathBuf, key: String },

    #[error("{}: invalid value {value:?} for '{key}': {reason}", path.display())]
    InvalidValue {
        path: PathBuf,
        key: String,
        value: String,
        reason: String,
    },

    #[error("invalid address {0:?}")]
    InvalidAddress(String),

    #[error("timed out after {secs} s waiting for lock {}", path.display())]
    LockTimeout { path: PathBuf, secs: u64 },

    #[error("password hashing failed: {0}")]
    Hash(String),

    #[error("push token refused: {0}")]
    TokenRefused(&'static str),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Attach the path an I/O operation was working on, so that log lines are actionable.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
