use thiserror::Error;

/// Everything that can go wrong while planning or applying.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Facts(#[from] facts::Error),
    #[error("{0}")]
    Remote(#[from] facts::RemoteError),
    #[error("unsupported host: {0}")]
    UnsupportedHost(String),
    #[error("template {name}: {detail}")]
    Template { name: String, detail: String },
    #[error("{path}: sha256 is {actual}, expected {expected}")]
    ChecksumMismatch {
        path: String,
        expected: String,
        actual: String,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("cannot read {path}: {source}")]
    LocalFile {
        path: String,
        source: std::io::Error,
    },
    #[error("{what} failed: {detail}")]
    ChangeFailed { what: String, detail: String },
    /// Restarts or reloads that failed (each message names the unit and what was done).
    #[error("{0}")]
    HandlersFailed(String),
    /// apt would install a provider under another name, and the plan would never converge.
    #[error("package {name} is virtual on this host (provided by {}): the state must name the real package", providers.join(", "))]
    VirtualPackage {
        name: String,
        providers: Vec<String>,
    },
    #[error("invalid resource: {0}")]
    Invalid(String),
}
