//! The planner: manifest → variants × rates → cells.

use crate::error::{Error, Result};
use crate::manifest::ManifestArgs;

/// Print the run matrix without running anything.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run_plan(_args: PlanArgs) -> Result<()> {
    Err(Error::not_implemented("plan"))
}
