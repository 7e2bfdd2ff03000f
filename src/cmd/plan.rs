//! `vbench plan`: the run matrix (variants, GPUs, cells, requests, time estimate), without
//! running anything.

use crate::error::Result;
use crate::plan::{self, table};

use super::ManifestArgs;

/// Print the run matrix (variants, GPUs, cells, requests, time estimate) without running.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// Print the plan as JSON (every variant and cell).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: PlanArgs) -> Result<()> {
    let loaded = args.manifest.load()?;
    let capacity = plan::capacity::discover(&loaded.manifest.target);
    let plan = plan::resolve(&loaded, &capacity)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&plan).expect("plan serialises")
        );
    } else {
        print!("{}", table::render(&plan));
    }
    for w in &plan.warnings {
        eprintln!("warning: {w}");
    }
    Ok(())
}
