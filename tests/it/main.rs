//! The self-contained integration tests in one binary (as ripgrep does): one link instead of
//! one per file, which on this project's 2-core machines makes `cargo test --no-run` after a
//! library change several times faster than a binary per file (numbers in the README). Each
//! file is a module; run one with `cargo test --test it apply_sim::`. Tests against real vLLM
//! and Slurm are in `tests/real/`.

mod support;

mod apply_sim;
mod cli;
mod deploy;
mod layout;
mod load_bench_cli;
mod load_client;
mod load_hostile;
mod load_sse;
mod manifest_errors;
mod manifest_fuzz;
mod metrics_nixl;
mod output_schemas;
mod plan;
mod proxy;
mod report_cli;
mod report_html;
mod report_import;
mod report_intervals;
mod report_render;
mod report_snapshot;
mod schema;
mod search;
mod sessions;
mod sim_calibration;
mod sim_faults;
mod sim_server;
mod workloads;
