//! The edge: one file per subcommand, each with its clap arguments and its `run`. This is the
//! only code that prints to the terminal or chooses an exit code; the stages below take plain
//! option structs and return values (or report progress through a trait).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::{Error, Result};

pub mod apply;
pub mod bench;
pub mod clean;
pub mod gen_trace;
pub mod init;
pub mod ls;
pub mod plan;
mod progress;
pub mod proxy;
pub mod report;
pub mod schema;
pub mod sim_serve;
pub mod validate;

use apply::ApplyArgs;
use bench::BenchArgs;
use init::InitArgs;
use ls::LsArgs;
use plan::PlanArgs;
use proxy::ProxyArgs;
use report::ReportArgs;
use schema::SchemaArgs;
use sim_serve::SimServeArgs;

/// Declarative benchmarks of vLLM deployments: plan, launch, load, tear down, report.
///
/// Exit codes: 0 success, 1 a run failed, 2 bad input or usage.
#[derive(Debug, Parser)]
#[command(
    name = "vbench",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an experiment: launch every variant, sweep its rates, tear down, report.
    Apply(ApplyArgs),
    /// Print the run matrix (variants, GPUs, cells, requests, time estimate) without running.
    Plan(PlanArgs),
    /// Check a manifest and exit 0 if it is valid.
    Validate(ManifestArgs),
    /// Draw SLO-attainment figures and summaries from stored results.
    Report(ReportArgs),
    /// List past runs, newest first.
    Ls(LsArgs),
    /// Stop what a dead apply left running in a run folder; remove its unfinished writes.
    Clean(clean::CleanArgs),
    /// Drive an open-loop streaming load against any OpenAI-compatible endpoint.
    Bench(BenchArgs),
    /// Serve a simulated vLLM instance (the `sim` backend's stand-in for a GPU).
    SimServe(SimServeArgs),
    /// Run the built-in prefill/decode proxy.
    Proxy(ProxyArgs),
    /// Print a JSON Schema (draft-07): the manifest's, a result file's or summary.json's.
    Schema(SchemaArgs),
    /// Write a commented starter manifest.
    Init(InitArgs),
    /// Write a sample request trace (Mooncake format) with a chosen prefix reuse.
    GenTrace(gen_trace::GenTraceArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// (internal) The watchdog `apply` starts: stops what apply launched if apply dies.
    #[command(hide = true)]
    Reaper(ReaperArgs),
}

#[derive(Debug, clap::Args)]
pub struct ReaperArgs {
    /// Seconds between SIGTERM and SIGKILL.
    #[arg(long, default_value_t = 30.0)]
    pub grace_s: f64,
}

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// Shell to generate completions for.
    pub shell: clap_complete::Shell,
}

/// A manifest path plus per-invocation overrides.
#[derive(Debug, Clone, clap::Args)]
pub struct ManifestArgs {
    /// The experiment manifest (TOML).
    pub manifest: PathBuf,
    /// Override a manifest field for this invocation, like the original suite's environment
    /// variables: `--set load.rates=[1,2]`, `--set deployment.1.prefill.instances=2`
    /// (array indices start at 0). Repeatable; validated like the file and recorded with the run.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
}

impl ManifestArgs {
    pub fn load(&self) -> Result<crate::manifest::LoadedManifest> {
        crate::manifest::load(&self.manifest, &self.set)
    }
}

/// Run one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Apply(args) => apply::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Report(args) => report::run(args),
        Command::Ls(args) => ls::run(args),
        Command::Clean(args) => clean::run(args),
        Command::Bench(args) => bench::run(args),
        Command::SimServe(args) => sim_serve::run(args),
        Command::Proxy(args) => proxy::run(args),
        Command::Schema(args) => schema::run(args),
        Command::Init(args) => init::run(args),
        Command::GenTrace(args) => gen_trace::run(args),
        Command::Reaper(args) => {
            let left = crate::exec::reaper::run(
                std::io::stdin().lock(),
                std::time::Duration::from_secs_f64(args.grace_s.clamp(0.0, 3600.0)),
            );
            if !left.is_empty() {
                eprintln!("vbench reaper: vbench ended without stopping {left:?}; stopped them");
            }
            Ok(())
        }
        Command::Completions(args) => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(args.shell, &mut cmd, "vbench", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// Past timing records that could not be read do not stop a plan; they are named.
fn warn_of_skipped_history(history: &crate::results::history::History) {
    if let Some(first) = history.skipped.first() {
        eprintln!(
            "warning: {} record(s) of past runs could not be read for the time estimates \
             (first: {first})",
            history.skipped.len()
        );
    }
}

/// Print an error for a human: manifest errors as a located diagnostic, others as a chain.
pub fn report_error(err: &Error) {
    match err {
        Error::Manifest(diag) => {
            // Unwrapped lines keep `file:line:col: message` greppable in logs.
            let _ = miette::set_hook(Box::new(|_| {
                Box::new(miette::MietteHandlerOpts::new().wrap_lines(false).build())
            }));
            let report = miette::Report::new((**diag).clone());
            eprintln!("{report:?}");
        }
        Error::Stopped(e) => eprintln!("stopped: {e:#}"),
        other => eprintln!("error: {other}"),
    }
}

/// `--stop-grace-s` as a duration: 0 or more seconds, at most a week.
pub(crate) fn stop_grace(seconds: f64) -> Result<std::time::Duration> {
    if !crate::manifest::limits::is_wait(seconds, true) {
        return Err(Error::bad_input(anyhow::anyhow!(
            "--stop-grace-s must be a number of seconds from 0 to {} (a week), got {}",
            crate::manifest::limits::MAX_WAIT_S,
            crate::manifest::limits::show(seconds)
        )));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}
