//! The disk a run needs: how much its cells write (checked before anything starts and
//! before each variant launches), and the reserve that keeps the cell measured as the disk
//! fills (see [`crate::results::store::SpaceReserve`]).

use std::path::Path;

use anyhow::bail;

use super::{Events, Options};
use crate::manifest::LoadedManifest;
use crate::plan::Plan;
use crate::results::RunDir;

/// A generous size of what one cell leaves on disk: its result and 1 MiB of server metrics.
fn cell_bytes(requests: u64, output_tokens: u64) -> u64 {
    crate::results::store::result_size_estimate(requests, output_tokens).saturating_add(1 << 20)
}

/// What the variants in `ids` may write: in all, and the largest single cell (the size of the
/// run's disk reserve).
pub struct DiskNeed {
    pub total: u64,
    pub largest_cell: u64,
}

impl DiskNeed {
    /// What a run needs free before it starts: everything, and its reserve.
    pub fn with_reserve(&self) -> u64 {
        self.total.saturating_add(self.largest_cell)
    }
}

pub fn disk_need(loaded: &LoadedManifest, plan: &Plan, ids: &dyn Fn(&str) -> bool) -> DiskNeed {
    // Unknown output lengths (ShareGPT) are taken as long ones.
    let output = u64::from(loaded.manifest.dataset.output_len.unwrap_or(1024));
    let (total, largest) = match &plan.search {
        // A search has no planned cells: every variant may spend its whole budget.
        Some(s) => {
            let variants = plan.variants.iter().filter(|v| ids(&v.id)).count() as u64;
            let batch = cell_bytes(u64::from(s.batch), output);
            let batches = s.max_batches_total().saturating_mul(variants);
            (
                batch.saturating_mul(batches),
                if batches > 0 { batch } else { 0 },
            )
        }
        None => plan
            .cells
            .iter()
            .filter(|c| ids(&c.variant_id))
            .map(|c| cell_bytes(u64::from(c.requests), output))
            .fold((0, 0), |(sum, max): (u64, u64), c| {
                (sum.saturating_add(c), max.max(c))
            }),
    };
    DiskNeed {
        total,
        // Never more than the largest result vbench would read back.
        largest_cell: largest.min(crate::results::store::MAX_RESULT_BYTES),
    }
}

/// `Some(why)` when the file system of `dir` has less than `need` bytes free.
pub(crate) fn short_of_space(dir: &Path, need: u64, what: &str) -> Option<String> {
    let free = crate::results::store::free_bytes(dir)?;
    (free < need).then(|| {
        format!(
            "{} has {} MiB free; {what} need about {} MiB of results and metrics",
            dir.display(),
            free >> 20,
            need.div_ceil(1 << 20)
        )
    })
}

/// Before anything is launched: the results folder (or the run folder being resumed) takes
/// new files, and its file system has room for the planned cells and the run's disk reserve.
pub fn check_results_folder(
    options: &Options,
    loaded: &LoadedManifest,
    plan: &Plan,
) -> anyhow::Result<()> {
    let dir = match &options.resume {
        Some(run) => run.clone(),
        None => options.results.join(&plan.experiment),
    };
    crate::results::store::check_writable(&dir)?;
    let need = disk_need(loaded, plan, &|id| options.selects(id));
    if let Some(why) = short_of_space(&dir, need.with_reserve(), "the planned cells") {
        bail!("{why}");
    }
    Ok(())
}

/// The run's disk reserve: room for its largest cell's result, so the cell measured when the
/// disk fills is still written (`None`, said, when the file system cannot allocate it).
pub(crate) fn hold_reserve(
    run_dir: &RunDir,
    loaded: &LoadedManifest,
    plan: &Plan,
    options: &Options,
    events: &dyn Events,
) -> Option<crate::results::store::SpaceReserve> {
    let bytes = disk_need(loaded, plan, &|id| options.selects(id)).largest_cell;
    match run_dir.hold_reserve(bytes) {
        Ok(reserve) => Some(reserve),
        Err(e) => {
            events.warning(&format!(
                "no disk space held in reserve ({e:#}): should the disk fill during the run, \
                 the cell being measured then is lost"
            ));
            None
        }
    }
}
