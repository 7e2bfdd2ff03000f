//! `vbench init`: a commented starter manifest that validates as written.

use std::path::PathBuf;

use anyhow::anyhow;

use crate::cli::InitArgs;
use crate::error::{Error, Result};

/// The starter manifest; `{name}` is replaced by the experiment name.
pub const STARTER: &str = include_str!("starter.toml");

pub fn starter(name: &str) -> String {
    STARTER.replace("{name}", name)
}

pub fn run_init(args: InitArgs) -> Result<()> {
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
    let text = starter(&args.name);
    crate::results::store::write_bytes_new(&path, text.as_bytes()).map_err(Error::bad_input)?;
    eprintln!(
        "wrote {} — check it with `vbench plan {}`",
        path.display(),
        path.display()
    );
    Ok(())
}
