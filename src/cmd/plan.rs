//! `vbench plan`: the run matrix (variants, GPUs, cells, requests, time estimate), without
//! running anything.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::plan::{self, table, Cell, Variant};
use crate::results::history::History;
use crate::results::RunDir;

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
    /// A run folder `apply --resume` would finish: the plan shows only what is left of it
    /// (same manifest and --set options as the run, as for `apply --resume`).
    #[arg(long, value_name = "RUN")]
    pub resume: Option<PathBuf>,
    /// Only these variants (as `apply --only`); repeatable.
    #[arg(long = "only", value_name = "VARIANT_ID")]
    pub only: Vec<String>,
}

pub fn run(args: PlanArgs) -> Result<()> {
    let loaded = args.manifest.load()?;
    let capacity =
        plan::capacity::discover(&loaded.manifest.target, &crate::exec::gpus::NvidiaSmiProbe);
    let mut plan = plan::resolve(&loaded, &capacity)?;
    crate::apply::check_only(&plan, &args.only).map_err(Error::bad_input)?;
    let resumed = match &args.resume {
        Some(dir) => {
            let run = RunDir::open(dir);
            run.check_resumable(&loaded).map_err(Error::bad_input)?;
            Some(run)
        }
        None => None,
    };
    let planned_cells = plan.cells.len();
    if resumed.is_some() || !args.only.is_empty() {
        let searching = plan.search.is_some();
        let left = |v: &Variant| {
            let selected = args.only.is_empty() || args.only.contains(&v.id);
            // A finished search has nothing left; a sweep's variant, its missing cells.
            let unfinished = !searching
                || resumed
                    .as_ref()
                    .is_none_or(|r| !r.variant(&v.id).search_done());
            selected && unfinished
        };
        let missing = |c: &Cell| {
            resumed
                .as_ref()
                .is_none_or(|r| !r.variant(&c.variant_id).is_measured(c))
        };
        plan::narrow(&mut plan, &loaded, &left, &missing);
    }
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
    } else if let Some(run) = resumed.as_ref().filter(|_| plan.variants.is_empty()) {
        println!(
            "Nothing is left to run in {}: the selected variants are measured",
            run.path().display()
        );
    } else {
        print!("{}", table::render(&plan));
        if let Some(run) = &resumed {
            println!(
                "Left of {}: {} of its {} planned cells",
                run.path().display(),
                plan.cells.len(),
                planned_cells
            );
        }
    }
    for w in &plan.warnings {
        eprintln!("warning: {w}");
    }
    if plan.variants.is_empty() {
        return Ok(());
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
