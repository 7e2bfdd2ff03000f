//! The error type every command returns, and the exit code each kind maps to.
//!
//! Exit codes (documented in the README): 0 ok, 1 a run failed, 2 bad input or usage, 130
//! stopped by a signal.

use std::fmt;
use std::ops::Range;

use miette::{NamedSource, SourceSpan};

/// What went wrong, sorted by whose fault it is: the input (exit 2) or the run (exit 1).
#[derive(Debug)]
pub enum Error {
    /// A manifest problem with a source location, rendered by miette.
    Manifest(Box<ManifestError>),
    /// Bad input that is not a located manifest error: a missing file, a bad flag value,
    /// a malformed dataset or result file.
    BadInput(anyhow::Error),
    /// The input was fine but the run did not succeed (a server never became healthy,
    /// a process crashed, a write failed).
    Failed(anyhow::Error),
    /// A signal (Ctrl-C, SIGTERM) stopped the command; what it had measured is kept.
    Stopped(anyhow::Error),
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
            Error::Stopped(_) => 130,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Manifest(e) => write!(f, "{e}"),
            Error::BadInput(e) | Error::Failed(e) | Error::Stopped(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<ManifestError> for Error {
    fn from(e: ManifestError) -> Self {
        Error::Manifest(Box::new(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The text a manifest was parsed from, kept so errors can point into it.
#[derive(Debug, Clone)]
pub struct Source {
    /// Shown in messages: the file path, plus a note when `--set` overrides were applied.
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A manifest error with its location, rendered by miette with a source snippet.
/// Its `Display` is one line, `file:line:col: message`, so logs and tests see the location too.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
#[error("{location}: {message}")]
pub struct ManifestError {
    /// `file:line:col`, or just `file` when no position is known.
    pub location: String,
    pub message: String,
    #[source_code]
    src: NamedSource<String>,
    #[label("{label}")]
    span: Option<SourceSpan>,
    label: String,
    #[help]
    pub help: Option<String>,
}

impl ManifestError {
    pub fn new(
        source: &Source,
        span: Option<Range<usize>>,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Self {
        let message = message.into();
        let location = match &span {
            Some(r) => {
                let (line, col) = source.line_col(r.start);
                format!("{}:{line}:{col}", source.name)
            }
            None => source.name.clone(),
        };
        let span = span.map(|r| {
            let start = r.start.min(source.text.len());
            let end = r.end.clamp(start, source.text.len());
            SourceSpan::from(start..end)
        });
        ManifestError {
            location,
            label: short_label(&message),
            message,
            src: NamedSource::new(source.name.clone(), source.text.clone()),
            span,
            help,
        }
    }
}

fn short_label(message: &str) -> String {
    let first = message.lines().next().unwrap_or("");
    if first.chars().count() > 60 {
        "here".to_owned()
    } else {
        first.to_owned()
    }
}
