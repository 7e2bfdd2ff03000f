//! The glue from the executor to the load generator and the report.

use std::path::Path;

use anyhow::bail;

use crate::results::RunResult;

use super::apply::{CellRequest, CellRunner};

/// Runs each cell with vbench's own load generator.
pub struct LoadGenRunner;

impl CellRunner for LoadGenRunner {
    async fn run(&self, _request: CellRequest<'_>) -> anyhow::Result<RunResult> {
        bail!("the load generator is not part of this build yet")
    }
}

/// Render the report of a finished run folder.
pub fn render_report(_run_dir: &Path) -> anyhow::Result<()> {
    bail!("the report is not part of this build yet; run `vbench report` when it is")
}
