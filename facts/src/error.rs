use thiserror::Error;

/// Everything that can go wrong while gathering or parsing facts.
#[derive(Debug, Error)]
pub enum Error {
    #[error("{0}")]
    Remote(#[from] crate::RemoteError),
    #[error("fact script failed (exit {status:?}): {stderr}")]
    ScriptFailed { status: Option<u32>, stderr: String },
    #[error("fact output is incomplete: section '{0}' is missing")]
    MissingSection(String),
    #[error("cannot parse fact '{fact}': {detail}")]
    Parse { fact: &'static str, detail: String },
}

impl Error {
    pub(crate) fn parse(fact: &'static str, detail: impl Into<String>) -> Self {
        Error::Parse {
            fact,
            detail: detail.into(),
        }
    }
}
