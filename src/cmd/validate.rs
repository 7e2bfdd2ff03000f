//! `vbench validate`: parse and plan a manifest; print a one-line verdict.

use crate::error::Result;
use crate::plan;

use super::ManifestArgs;

pub fn run(args: ManifestArgs) -> Result<()> {
    let loaded = args.load()?;
    let plan = plan::resolve(&loaded, &plan::capacity::discover(&loaded.manifest.target))?;
    println!(
        "{}: valid ({} variants, {} cells, {} requests)",
        args.manifest.display(),
        plan.variants.len(),
        plan.cells.len(),
        plan.total_requests()
    );
    for w in &plan.warnings {
        eprintln!("warning: {w}");
    }
    Ok(())
}
