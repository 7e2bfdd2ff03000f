//! The load generator: datasets, the arrival schedule, the streaming client, the recorder.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// Drive an open-loop streaming load against any OpenAI-compatible endpoint.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Base URL of the server, e.g. http://127.0.0.1:8000
    #[arg(long)]
    pub base_url: String,
    /// Where to write the result JSON.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run_bench(_args: BenchArgs) -> Result<()> {
    Err(Error::not_implemented("bench"))
}
