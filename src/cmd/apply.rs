//! `vbench apply`: run an experiment, print its progress, render the report, and choose the
//! exit code (0 complete, 1 a variant failed, 130 interrupted).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::json;

use super::progress::{RequestBar, Spinner};
use super::ManifestArgs;
use crate::apply::{self, Events, Outcome};
use crate::bounded_file::read_bounded;
use crate::error::{Error, Result};
use crate::exec::gpus::NvidiaSmiProbe;
use crate::load::{NoProgress, Progress, RunResult};
use crate::plan::{self, Plan};
use crate::results::history::History;
use crate::results::store::MAX_RESULT_BYTES;
use crate::results::RunDir;

/// Run an experiment.
#[derive(Debug, Clone, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// Folder that holds `<experiment>/<timestamp>/` run folders.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Run only these variants (ids from `vbench plan`); repeatable.
    #[arg(long = "only", value_name = "VARIANT_ID")]
    pub only: Vec<String>,
    /// Grace period in seconds between SIGTERM and SIGKILL at teardown.
    #[arg(long, default_value_t = 30.0)]
    pub stop_grace_s: f64,
    /// Continue an interrupted or failed run in its folder: cells whose result file exists are
    /// skipped, the rest run. The manifest and overrides must be the ones the run started with.
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// Skip the report at the end (run `vbench report RUN_DIR` later).
    #[arg(long)]
    pub no_report: bool,
    /// At the end, print what the run produced as JSON on stdout (run folder, report, outcome,
    /// and every planned cell with its result's counts), for scripts and CI.
    #[arg(long)]
    pub json: bool,
}

impl ApplyArgs {
    fn options(&self) -> Result<apply::Options> {
        Ok(apply::Options {
            results: self.results.clone(),
            only: self.only.clone(),
            stop_grace: super::stop_grace(self.stop_grace_s)?,
            resume: self.resume.clone(),
        })
    }
}

pub fn run(args: ApplyArgs) -> Result<()> {
    let loaded = args.manifest.load()?;
    let capacity =
        plan::capacity::discover(&loaded.manifest.target, &crate::exec::gpus::NvidiaSmiProbe);
    let mut plan = plan::resolve(&loaded, &capacity)?;
    // Estimates from past runs: apply compares each variant's time with them.
    let history = History::scan(&args.results);
    history.refine(&mut plan);
    super::warn_of_skipped_history(&history);
    apply::preflight(&loaded, &plan).map_err(Error::bad_input)?;
    apply::check_only(&plan, &args.only).map_err(Error::bad_input)?;
    let options = args.options()?;
    apply::check_results_folder(&options, &loaded, &plan).map_err(Error::bad_input)?;
    let events = Terminal::default();
    if apply::driver::drives_from_first_node(&loaded, &plan) {
        // The same command, run again on the allocation's first node (it prints there, and
        // its exit status is this one's).
        let own_args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
        let runtime = tokio::runtime::Runtime::new().map_err(Error::failed)?;
        let code = runtime
            .block_on(apply::driver::drive_from_first_node(
                &options, &loaded, &plan, &own_args, &events,
            ))
            .map_err(Error::failed)?;
        drop(runtime);
        std::process::exit(code);
    }
    // Before anything is launched: a missing tokenizer or a bad dataset is bad input.
    let workload = apply::cell::Workload::prepare(&loaded, &events).map_err(Error::bad_input)?;
    let runtime = tokio::runtime::Runtime::new().map_err(Error::failed)?;
    let (run_dir, outcome) = runtime
        .block_on(apply::run(
            &options,
            &loaded,
            &plan,
            &workload,
            std::sync::Arc::new(NvidiaSmiProbe),
            &events,
        ))
        .map_err(|e| {
            // A second apply in a run folder, or on GPUs another vbench holds, is a usage
            // error (exit 2), like a bad flag.
            if e.is::<crate::results::rundir::Locked>() || e.is::<crate::exec::claims::Claimed>() {
                Error::bad_input(e)
            } else {
                Error::failed(e)
            }
        })?;
    eprintln!("results: {}", run_dir.path().display());
    let mut report = None;
    if !args.no_report {
        let rendering = Spinner::on_terminal("rendering the report");
        let rendered = crate::report::report_run_folder(run_dir.path());
        drop(rendering);
        match rendered {
            Ok(outcome) => {
                let index = outcome.out_dir.join("index.html");
                eprintln!(
                    "report: {} ({} files)",
                    index.display(),
                    outcome.files.len()
                );
                report = Some(index);
            }
            Err(e) => eprintln!("warning: report not written: {e:#}"),
        }
    }
    if args.json {
        let doc = run_json(&plan, &run_dir, report.as_deref(), &outcome);
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(Error::failed)?
        );
    }
    match (&outcome, apply::outcome_error(&outcome, &run_dir)) {
        (Outcome::Interrupted, Some(e)) => {
            eprintln!("{e}");
            std::process::exit(130);
        }
        (_, Some(e)) => Err(Error::failed(e)),
        (_, None) => Ok(()),
    }
}

/// `apply --json`: the run folder, the report, the outcome, and each planned cell as found on
/// disk (a cell without a result file is `measured: false`).
fn run_json(
    plan: &Plan,
    run_dir: &RunDir,
    report: Option<&Path>,
    outcome: &Outcome,
) -> serde_json::Value {
    let (state, failed) = match outcome {
        Outcome::Complete => ("complete", Vec::new()),
        Outcome::VariantsFailed(ids) => ("variants_failed", ids.clone()),
        Outcome::Interrupted => ("interrupted", Vec::new()),
        Outcome::DiskFull { failed, .. } => ("disk_full", failed.clone()),
    };
    let cells: Vec<serde_json::Value> = plan
        .cells
        .iter()
        .map(|c| {
            let path = run_dir.variant(&c.variant_id).result_path(c);
            let result: Option<RunResult> = read_bounded(&path, MAX_RESULT_BYTES)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            json!({
                "variant_id": c.variant_id,
                "rate": c.pace.rate().map(|r| r.label()),
                "speedup": match c.pace {
                    crate::plan::Pace::Speedup(s) => Some(s),
                    crate::plan::Pace::Rate(_) => None,
                },
                "result_file": path,
                "measured": result.is_some(),
                "completed": result.as_ref().map(|r| r.completed),
                "failed": result.as_ref().map(|r| r.failed),
                "request_throughput": result.as_ref().map(|r| r.request_throughput),
                "request_goodput": result.as_ref().and_then(|r| r.request_goodput),
                "client_fell_behind": result.as_ref().map(|r| r.vbench.client.client_fell_behind),
            })
        })
        .collect();
    json!({
        "run_dir": run_dir.path(),
        "report": report,
        "outcome": state,
        "failed_variants": failed,
        "cells": cells,
    })
}

/// Progress on stderr: lines as they come, a spinner while instances start and a request bar
/// per rate when stderr is a terminal.
#[derive(Default)]
struct Terminal {
    spinner: Mutex<Option<Spinner>>,
}

impl Events for Terminal {
    fn info(&self, line: &str) {
        eprintln!("{line}");
    }

    fn warning(&self, line: &str) {
        eprintln!("  warning: {line}");
    }

    fn waiting(&self, what: &str) {
        let mut spinner = self.spinner.lock().unwrap_or_else(|e| e.into_inner());
        match spinner.as_ref() {
            Some(s) => s.set_message(what.to_owned()),
            None => *spinner = Some(Spinner::on_terminal(what)),
        }
    }

    fn waiting_done(&self) {
        // Dropping the spinner clears it.
        self.spinner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    fn requests(&self, label: &str) -> Box<dyn Progress> {
        match RequestBar::on_terminal(label) {
            Some(bar) => Box::new(bar),
            None => Box::new(NoProgress),
        }
    }
}
