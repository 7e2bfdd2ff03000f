//! The prefill/decode proxy (`vbench proxy`).

use crate::error::{Error, Result};

/// Run the built-in prefill/decode proxy.
#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// Port to listen on.
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Prefill instance base URLs.
    #[arg(long = "prefill")]
    pub prefill: Vec<String>,
    /// Decode instance base URLs.
    #[arg(long = "decode")]
    pub decode: Vec<String>,
}

pub fn run_proxy(_args: ProxyArgs) -> Result<()> {
    Err(Error::not_implemented("proxy"))
}
