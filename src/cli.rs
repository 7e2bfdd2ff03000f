//! Command-line interface: the subcommands and their flags. Each command's own flags live in
//! the module that implements it; this file only assembles them.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::exec::ApplyArgs;
use crate::load::BenchArgs;
use crate::manifest::ManifestArgs;
use crate::plan::PlanArgs;
use crate::proxy::ProxyArgs;
use crate::report::ReportArgs;
use crate::results::ls::LsArgs;
use crate::sim::SimServeArgs;

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
    /// Print a shell completion script.
    Completions(CompletionsArgs),
}

#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    /// Which file's schema: the manifest, a result file (`vllm-<rate>qps.json`) or the
    /// report's summary.json.
    #[arg(long, value_enum, default_value_t = SchemaKind::Manifest)]
    pub kind: SchemaKind,
    /// Write to this file instead of stdout.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Print the manifest reference as Markdown (the README's reference section) instead
    /// (manifest only).
    #[arg(long)]
    pub markdown: bool,
}

/// The files `vbench schema` describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaKind {
    /// The experiment manifest (`schemas/experiment.schema.json`).
    Manifest,
    /// One result file, `vllm-<rate>qps.json` (`schemas/result.schema.json`).
    Result,
    /// The report's summary.json (`schemas/summary.schema.json`).
    Summary,
}

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Experiment name; the manifest is written to experiments/<NAME>.toml.
    #[arg(default_value = "my-experiment")]
    pub name: String,
    /// Write here instead of experiments/<NAME>.toml.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// Shell to generate completions for.
    pub shell: clap_complete::Shell,
}
