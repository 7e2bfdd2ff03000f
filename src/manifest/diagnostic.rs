//! Located manifest errors.

/// A manifest error with its location.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
#[error("{message}")]
pub struct ManifestError {
    pub message: String,
}
