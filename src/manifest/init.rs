//! `vbench init`: a commented starter manifest.
use crate::cli::InitArgs;
use crate::error::{Error, Result};

pub fn run_init(_args: InitArgs) -> Result<()> {
    Err(Error::not_implemented("init"))
}
