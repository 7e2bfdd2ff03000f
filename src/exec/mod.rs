//! Execution: backends (local, slurm, sim), process supervision, GPUs, ports, templates.

use crate::error::{Error, Result};
use crate::manifest::ManifestArgs;

pub fn run_apply(_args: ManifestArgs) -> Result<()> {
    Err(Error::not_implemented("apply"))
}
