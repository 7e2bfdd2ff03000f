//! The experiment manifest: serde types mirroring the TOML, its schema, and located errors.

pub mod diagnostic;
pub mod init;
pub mod schema;

use std::path::PathBuf;

pub use diagnostic::ManifestError;

use crate::error::Result;

/// A manifest path plus per-invocation overrides.
#[derive(Debug, Clone, clap::Args)]
pub struct ManifestArgs {
    /// The experiment manifest (TOML).
    pub manifest: PathBuf,
    /// Override a manifest field for this invocation, e.g. `--set load.rates=[1,2]` or
    /// `--set deployment.1.prefill.instances=2`. Repeatable; validated like the file.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
}

pub fn run_validate(_args: ManifestArgs) -> Result<()> {
    Err(crate::Error::not_implemented("validate"))
}
