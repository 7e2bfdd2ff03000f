//! vbench: declarative experiment runner for vLLM serving benchmarks.
//!
//! The pipeline, in the order data flows through it:
//! `manifest` (TOML types, schema, diagnostics) → `plan` (variants, cells, ids) →
//! `exec` (backends, process supervision) → `load` (datasets, schedule, streaming client) →
//! `results` (file formats, store) → `report` (attainment math, figures, HTML/Markdown).
//! Beside it: `sim` (the simulated vLLM server) and `proxy` (the prefill/decode proxy).

// Manifest diagnostics carry their source text and are returned on cold paths only.
#![allow(clippy::result_large_err)]

pub mod cli;
pub mod error;
pub mod exec;
pub mod load;
pub mod manifest;
pub mod plan;
pub mod proxy;
pub mod report;
pub mod results;
pub mod sim;

pub use error::{Error, Result};

use cli::{Cli, Command};

/// Run one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Apply(args) => exec::run_apply(args),
        Command::Plan(args) => plan::run_plan(args),
        Command::Validate(args) => manifest::run_validate(args),
        Command::Report(args) => report::run_report(args),
        Command::Ls(args) => results::ls::run_ls(args),
        Command::Bench(args) => load::run_bench(args),
        Command::SimServe(args) => sim::run_sim_serve(args),
        Command::Proxy(args) => proxy::run_proxy(args),
        Command::Schema(args) => manifest::schema::run_schema(args),
        Command::Init(args) => manifest::init::run_init(args),
        Command::Completions(args) => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(args.shell, &mut cmd, "vbench", &mut std::io::stdout());
            Ok(())
        }
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
        other => eprintln!("error: {other}"),
    }
}
