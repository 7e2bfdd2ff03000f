//! `vbench ls`: past runs, newest first.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// List past runs, newest first, with file and plot counts and a config line per variant.
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Results folder to list.
    #[arg(default_value = "results")]
    pub dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run_ls(_args: LsArgs) -> Result<()> {
    Err(Error::not_implemented("ls"))
}
