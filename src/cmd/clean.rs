//! `vbench clean RUN_DIR`: stop what a dead `apply` left running and remove its unfinished
//! writes. Results are never touched. Refused while an `apply` holds the folder.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::exec::leftovers;
use crate::results::rundir::{self, RunDir};

/// Stop a dead run's leftover processes and remove its unfinished writes.
#[derive(Debug, clap::Args)]
pub struct CleanArgs {
    /// The run folder (`results/<experiment>/<timestamp>`).
    pub run_dir: PathBuf,
    /// Only list what would be stopped and removed.
    #[arg(long)]
    pub dry_run: bool,
    /// Grace period in seconds between SIGTERM and SIGKILL.
    #[arg(long, default_value_t = 10.0)]
    pub stop_grace_s: f64,
}

pub fn run(args: CleanArgs) -> Result<()> {
    let grace = super::stop_grace(args.stop_grace_s)?;
    if !args.run_dir.join(rundir::PLAN).is_file() {
        return Err(Error::bad_input(anyhow::anyhow!(
            "{} is not a vbench run folder (it has no {})",
            args.run_dir.display(),
            rundir::PLAN
        )));
    }
    let run = RunDir::open(&args.run_dir);
    // Held by a live apply: its processes are not leftovers.
    let lock = run.lock().map_err(|e| {
        if e.is::<crate::results::rundir::Locked>() {
            Error::bad_input(e)
        } else {
            Error::failed(e)
        }
    })?;
    if let Some(warning) = lock.copy_of_live_run(&args.run_dir) {
        eprintln!("warning: {warning}");
    }
    let found = leftovers::find(lock.mark());
    let files = run.dead_writes();
    if found.is_empty() && files.is_empty() {
        println!("{}: nothing left behind", args.run_dir.display());
        return Ok(());
    }
    let verb = if args.dry_run {
        "would stop"
    } else {
        "stopping"
    };
    for l in &found {
        println!("{verb} {l}");
    }
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removing"
    };
    for f in &files {
        println!("{verb} {}", f.display());
    }
    if args.dry_run {
        return Ok(());
    }
    let still = leftovers::stop(&found, grace);
    let mut failures: Vec<String> = still
        .iter()
        .map(|l| format!("could not stop {l}"))
        .collect();
    for f in &files {
        let removed = if f.is_dir() {
            std::fs::remove_dir_all(f)
        } else {
            std::fs::remove_file(f)
        };
        if let Err(e) = removed {
            failures.push(format!("could not remove {}: {e}", f.display()));
        }
    }
    if !failures.is_empty() {
        return Err(Error::failed(anyhow::anyhow!("{}", failures.join("\n"))));
    }
    println!(
        "stopped {} process(es), removed {} unfinished write(s)",
        found.len(),
        files.len()
    );
    Ok(())
}
