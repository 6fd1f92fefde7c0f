use thiserror::Error;

/// Everything that can end a run before or after planning and applying.
#[derive(Debug, Error)]
pub enum Error {
    /// `--ssh-host` or the ssh config does not name a host to reach.
    #[error("{0}")]
    Target(String),
    /// The host cannot be reached or logged in to, or its host key is refused.
    #[error("{0}")]
    Connect(String),
    /// The run lock is held by another run, or cannot be taken.
    #[error("{0}")]
    Lock(String),
    #[error(transparent)]
    Operations(#[from] operations::Error),
    #[error(transparent)]
    Facts(#[from] facts::Error),
    #[error("{0}")]
    Remote(#[from] facts::RemoteError),
    /// A remote step outside apply gave no result in time.
    #[error("{what}: no result within {secs} s")]
    Timeout { what: String, secs: u64 },
    #[error("the host did not converge in {rounds} rounds, still to change: {left}")]
    NotConverged { rounds: usize, left: String },
    #[error("the host does not match the desired state after applying, still different: {0}")]
    Mismatch(String),
    /// The caller could not make the desired state for this host (it refused the host, say).
    #[error("{0}")]
    State(String),
}

impl Error {
    /// The caller's error while making the state, kept as one line.
    pub fn state(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
        Error::State(one_line(e.into().as_ref()))
    }
}

/// The error and its causes on one line, without repeating a cause the message already holds.
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut cause = Some(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        cause = c.source();
    }
    line.replace('\n', " ")
}

/// The transport's internal error (with its context) as one of the crate's.
pub(crate) fn from_anyhow(make: fn(String) -> Error) -> impl Fn(anyhow::Error) -> Error {
    move |e| {
        let e: &(dyn std::error::Error + 'static) = e.as_ref();
        make(one_line(e))
    }
}
