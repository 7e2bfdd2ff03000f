//! The disk a run needs: how much its cells write (checked before anything starts and
//! before each variant launches), and the reserve that keeps the cell measured as the disk
//! fills (see [`crate::results::store::SpaceReserve`]).

use std::path::Path;

use anyhow::bail;

use super::{Events, Options};
use crate::manifest::LoadedManifest;
use crate::plan::{Cell, Plan};
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

/// `resumed`: the run folder being resumed, whose measured cells (and finished searches)
/// need nothing more.
pub fn disk_need(
    loaded: &LoadedManifest,
    plan: &Plan,
    ids: &dyn Fn(&str) -> bool,
    resumed: Option<&RunDir>,
) -> DiskNeed {
    // Unknown output lengths (ShareGPT) are taken as long ones.
    let output = u64::from(loaded.manifest.dataset.output_len.unwrap_or(1024));
    let measured = |c: &Cell| resumed.is_some_and(|r| r.variant(&c.variant_id).is_measured(c));
    let searched = |id: &str| resumed.is_some_and(|r| r.variant(id).search_done());
    let (total, largest) = match &plan.search {
        // A search has no planned cells: every variant may spend its whole budget.
        Some(s) => {
            let variants = plan
                .variants
                .iter()
                .filter(|v| ids(&v.id) && !searched(&v.id))
                .count() as u64;
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
            .filter(|c| ids(&c.variant_id) && !measured(c))
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
    let resumed = options.resume.as_deref().map(RunDir::open);
    let need = disk_need(loaded, plan, &|id| options.selects(id), resumed.as_ref());
    let what = match resumed {
        Some(_) => "the cells still to measure",
        None => "the planned cells",
    };
    if let Some(why) = short_of_space(&dir, need.with_reserve(), what) {
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
    let bytes = disk_need(loaded, plan, &|id| options.selects(id), Some(run_dir)).largest_cell;
    if bytes == 0 {
        // Nothing left to measure (a resume of a finished run): nothing to hold.
        return None;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sim_demo() -> (LoadedManifest, Plan) {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/experiments/sim-demo.toml");
        let loaded = crate::manifest::load(Path::new(path), &[]).unwrap();
        let capacity = crate::plan::Capacity {
            gpus: Some(8),
            cpu_cores: None,
            source: "test".into(),
            absent: None,
        };
        let plan = crate::plan::resolve(&loaded, &capacity).unwrap();
        (loaded, plan)
    }

    /// A resume needs room only for what it still has to measure: after a disk filled up,
    /// freeing that much is enough to go on.
    #[test]
    fn a_resume_needs_room_only_for_its_missing_cells() {
        let (loaded, plan) = sim_demo();
        let all = disk_need(&loaded, &plan, &|_| true, None);
        let cells = plan.cells.len() as u64;
        assert_eq!(
            all.total,
            cells * all.largest_cell,
            "sim-demo's cells are alike"
        );
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::open(dir.path());
        let first = &plan.cells[0];
        let variant = run.variant(&first.variant_id);
        variant.create().unwrap();
        // A result that reads back (a simulator's, kept as a fixture).
        let result = include_str!("../../tests/fixtures/results/sim-simple-tp1-20qps.json");
        std::fs::write(variant.result_path(first), result).unwrap();
        let resumed = disk_need(&loaded, &plan, &|_| true, Some(&run));
        assert_eq!(resumed.total, all.total - all.largest_cell);
        let one = disk_need(&loaded, &plan, &|id| id == first.variant_id, Some(&run));
        let per_variant = plan.cells_of(&first.variant_id).count() as u64;
        assert_eq!(one.total, (per_variant - 1) * all.largest_cell);
    }
}
