//! `vbench validate`: parse and plan a manifest; print a one-line verdict.

use crate::error::Result;
use crate::plan;

use super::ManifestArgs;

pub fn run(args: ManifestArgs) -> Result<()> {
    let loaded = args.load()?;
    let plan = plan::resolve(
        &loaded,
        &plan::capacity::discover(&loaded.manifest.target, &crate::exec::gpus::NvidiaSmiProbe),
    )?;
    // With sessions, each of `num_prompts` is a session of several requests.
    let unit = match loaded.manifest.dataset.kind {
        crate::manifest::DatasetKind::Sessions => "sessions",
        _ => "requests",
    };
    println!(
        "{}: valid ({} variants, {} cells, {} {unit})",
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
