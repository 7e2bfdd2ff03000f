//! The experiment manifest: serde types mirroring the TOML, its schema, and located errors.

pub mod diagnostic;
pub mod env_value;
pub mod limits;
pub mod one_or_many;
pub mod overrides;
pub mod reference;
pub mod schema;
pub mod secret;
mod strings;
pub mod types;

use std::path::{Path, PathBuf};

use anyhow::anyhow;

use crate::bounded_file::MAX_TEXT_BYTES;

pub use diagnostic::{ManifestError, Seg, Source};
pub use env_value::{EnvMap, EnvValue};
pub use one_or_many::OneOrMany;
pub use types::*;

use crate::error::{Error, Result};

/// A parsed manifest with the text it came from (for located errors) and its overrides.
#[derive(Debug, Clone)]
pub struct LoadedManifest {
    pub manifest: Manifest,
    /// The text the manifest was parsed from: the file with `--set` overrides applied.
    pub source: Source,
    /// The file's own text, exactly as on disk (copied into the run folder).
    pub original_text: String,
    pub path: PathBuf,
    /// The `--set` overrides applied, as given.
    pub overrides: Vec<String>,
}

impl LoadedManifest {
    /// The folder relative paths in the manifest are resolved against.
    pub fn base_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// A located error at `path` in the manifest.
    pub fn error_at(
        &self,
        path: Vec<Seg>,
        message: impl Into<String>,
        help: Option<String>,
    ) -> ManifestError {
        let span = diagnostic::span_of(&self.source.text, &path);
        ManifestError::new(&self.source, span, message, help)
    }
}

/// Read, override and parse a manifest file.
pub fn load(path: &Path, overrides: &[String]) -> Result<LoadedManifest> {
    let text = crate::bounded_file::read_text(path, MAX_TEXT_BYTES)
        .map_err(|why| Error::bad_input(anyhow!("manifest {}: {why}", path.display())))?;
    load_str(path, &text, overrides)
}

/// Parse manifest text as if read from `path`. The file is first checked on its own, so an
/// error in the file points into the file; then the overrides are applied and checked.
pub fn load_str(path: &Path, text: &str, overrides: &[String]) -> Result<LoadedManifest> {
    let name = path.display().to_string();
    let file_source = Source::new(name.clone(), text);
    let manifest = parse(&file_source)?;
    let (manifest, source) = if overrides.is_empty() {
        (manifest, file_source)
    } else {
        let merged = overrides::apply(text, overrides)?;
        let source = Source::new(
            format!("{name} (with --set {})", overrides.join(" --set ")),
            merged,
        );
        (parse(&source)?, source)
    };
    Ok(LoadedManifest {
        manifest,
        source,
        original_text: text.to_owned(),
        path: path.to_owned(),
        overrides: overrides.to_vec(),
    })
}

/// Parse TOML text into the manifest types (types and unknown keys checked, not meaning), and
/// check that no string could smuggle or lose part of a command line ([`strings`]).
pub fn parse(source: &Source) -> Result<Manifest, ManifestError> {
    let manifest =
        toml::from_str(&source.text).map_err(|e| ManifestError::from_toml(source, &e))?;
    strings::check(source)?;
    Ok(manifest)
}

/// The starter manifest of `vbench init`; `{name}` is replaced by the experiment name.
pub const STARTER: &str = include_str!("starter.toml");

/// The starter's first line, for vbench's own layout (`experiments/` beside `schemas/`); `init`
/// points it at wherever it puts the schema.
pub const STARTER_SCHEMA_LINE: &str = "#:schema ../schemas/experiment.schema.json";

/// The starter manifest for an experiment called `name`; it validates as written.
pub fn starter(name: &str) -> String {
    STARTER.replace("{name}", name)
}
