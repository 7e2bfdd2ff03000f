//! The simulated vLLM server (`vbench sim-serve`).

pub mod frontend;
pub mod kv;
pub mod model;
pub mod profile;
pub mod scheduler;

use crate::error::{Error, Result};

/// Serve a simulated vLLM instance (OpenAI-compatible, streaming) on a port.
#[derive(Debug, clap::Args)]
pub struct SimServeArgs {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
}

pub fn run_sim_serve(_args: SimServeArgs) -> Result<()> {
    Err(Error::not_implemented("sim-serve"))
}
