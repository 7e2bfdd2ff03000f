//! `vbench init`: a commented starter manifest that validates as written.

use std::path::{Path, PathBuf};

use anyhow::anyhow;

use crate::error::{Error, Result};

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Experiment name; the manifest is written to experiments/<NAME>.toml.
    #[arg(default_value = "my-experiment")]
    pub name: String,
    /// Write here instead of experiments/<NAME>.toml.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

pub fn run(args: InitArgs) -> Result<()> {
    let valid = !args.name.is_empty()
        && args
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid || args.name.starts_with('.') {
        return Err(Error::bad_input(anyhow!(
            "experiment name {:?} cannot be used as a folder name: use letters, digits, '-', '_' and '.'",
            args.name
        )));
    }
    let path = args
        .out
        .unwrap_or_else(|| PathBuf::from("experiments").join(format!("{}.toml", args.name)));
    let (reference, schema_path) = schema_place(&path);
    let text = crate::manifest::starter(&args.name).replacen(
        crate::manifest::STARTER_SCHEMA_LINE,
        &format!("#:schema {reference}"),
        1,
    );
    crate::results::store::write_bytes_new(&path, text.as_bytes()).map_err(Error::bad_input)?;
    // The `#:schema` line must find the schema for an editor to check the manifest: write it
    // where the line points unless one is there already (from this or an earlier vbench).
    let schema_note = if schema_path.exists() {
        format!(
            "{} is there already (`vbench schema -o {}` refreshes it)",
            schema_path.display(),
            schema_path.display()
        )
    } else {
        let json = crate::manifest::schema::schema_json();
        crate::results::store::write_bytes_new(&schema_path, json.as_bytes())
            .map_err(Error::failed)?;
        format!(
            "wrote {}, which editors check it against",
            schema_path.display()
        )
    };
    eprintln!(
        "wrote {}; {schema_note} — check it with `vbench plan {}`",
        path.display(),
        path.display()
    );
    Ok(())
}

/// Where the manifest's `#:schema` line points (relative to the manifest) and where that is:
/// a repository's `schemas/` beside an `experiments/` folder, as in vbench's own layout, else
/// a schema file in the manifest's own folder.
fn schema_place(manifest: &Path) -> (String, PathBuf) {
    const FILE: &str = "experiment.schema.json";
    let dir = manifest.parent().unwrap_or(Path::new(""));
    if dir.file_name().is_some_and(|n| n == "experiments") {
        let root = dir.parent().unwrap_or(Path::new(""));
        (
            format!("../schemas/{FILE}"),
            root.join("schemas").join(FILE),
        )
    } else {
        (FILE.to_owned(), dir.join(FILE))
    }
}
