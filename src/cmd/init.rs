//! `vbench init`: a commented starter manifest that validates as written.

use std::path::PathBuf;

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
    let text = crate::manifest::starter(&args.name);
    crate::results::store::write_bytes_new(&path, text.as_bytes()).map_err(Error::bad_input)?;
    eprintln!(
        "wrote {} — check it with `vbench plan {}`",
        path.display(),
        path.display()
    );
    Ok(())
}
