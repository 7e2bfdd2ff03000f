//! Execution: backends (local, sim), process supervision, GPUs, ports, templates.

pub mod apply;
pub mod deploy;
pub mod gpus;
pub mod metrics;
pub mod ports;
pub mod process;
pub mod rundir;
pub mod runner;
pub mod slurm;
pub mod templates;

pub use apply::{run_apply, ApplyArgs};
