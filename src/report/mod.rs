//! Reports: attainment math, figures, HTML and Markdown summaries.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// Draw SLO-attainment figures and summaries from stored results.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Run folders or result files.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
}

pub fn run_report(_args: ReportArgs) -> Result<()> {
    Err(Error::not_implemented("report"))
}
