//! `vbench plan`: the run matrix (variants, GPUs, cells, requests, time estimate), without
//! running anything.

use std::path::PathBuf;

use crate::error::Result;
use crate::plan::{self, table};
use crate::results::history::History;

use super::ManifestArgs;

/// Print the run matrix (variants, GPUs, cells, requests, time estimate) without running.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// Print the plan as JSON (every variant and cell).
    #[arg(long)]
    pub json: bool,
    /// Folder of past runs (as `apply --results`): time estimates come from the runs of the
    /// same variants found there.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Estimate from built-in defaults only, ignoring past runs.
    #[arg(long)]
    pub no_history: bool,
}

pub fn run(args: PlanArgs) -> Result<()> {
    let loaded = args.manifest.load()?;
    let capacity =
        plan::capacity::discover(&loaded.manifest.target, &crate::exec::gpus::NvidiaSmiProbe);
    let mut plan = plan::resolve(&loaded, &capacity)?;
    if !args.no_history {
        let history = History::scan(&args.results);
        history.refine(&mut plan);
        super::warn_of_skipped_history(&history);
    }
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
    let need = crate::apply::disk_need(&loaded, &plan, &|_| true, None).with_reserve();
    let dir = args.results.join(&plan.experiment);
    let free = free_where_made(&dir);
    if !args.json {
        println!(
            "Results: about {} in {}{}",
            mib(need),
            dir.display(),
            free.map_or_else(String::new, |f| format!(" ({} free there)", mib(f)))
        );
    }
    if free.is_some_and(|f| f < need) {
        eprintln!(
            "warning: {} has {} free; `apply` refuses to start without about {}",
            dir.display(),
            mib(free.unwrap_or(0)),
            mib(need)
        );
    }
    Ok(())
}

/// Free bytes on the file system where `dir` is or would be made (its nearest existing
/// folder).
fn free_where_made(dir: &std::path::Path) -> Option<u64> {
    dir.ancestors()
        .find(|a| a.is_dir())
        .and_then(crate::results::store::free_bytes)
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", table::thousands(bytes.div_ceil(1 << 20)))
}
