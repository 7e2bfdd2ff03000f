//! The error type every command returns, and the exit code each kind maps to.
//!
//! Exit codes (documented in the README): 0 ok, 1 a run failed, 2 bad input or usage.

use std::fmt;

/// What went wrong, sorted by whose fault it is: the input (exit 2) or the run (exit 1).
#[derive(Debug)]
pub enum Error {
    /// A manifest problem with a source location, rendered by miette.
    Manifest(Box<crate::manifest::ManifestError>),
    /// Bad input that is not a located manifest error: a missing file, a bad flag value,
    /// a malformed dataset or result file.
    BadInput(anyhow::Error),
    /// The input was fine but the run did not succeed (a server never became healthy,
    /// a process crashed, a write failed).
    Failed(anyhow::Error),
}

impl Error {
    pub fn bad_input(err: impl Into<anyhow::Error>) -> Self {
        Error::BadInput(err.into())
    }

    pub fn failed(err: impl Into<anyhow::Error>) -> Self {
        Error::Failed(err.into())
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Manifest(_) | Error::BadInput(_) => 2,
            Error::Failed(_) => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Manifest(e) => write!(f, "{e}"),
            Error::BadInput(e) | Error::Failed(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<crate::manifest::ManifestError> for Error {
    fn from(e: crate::manifest::ManifestError) -> Self {
        Error::Manifest(Box::new(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
