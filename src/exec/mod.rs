//! Launching and stopping one deployment: backends (local, slurm, sim), the processes of a
//! variant (`deploy`: placement, ports, templates), their supervision (`process`), GPUs,
//! ports, and the servers' `/metrics`. It writes nothing into the run folder itself: paths
//! come from the caller, records go back to it.

pub mod claims;
pub mod compile_cache;
pub mod deploy;
pub mod flock;
pub mod gpu_telemetry;
pub mod gpus;
pub mod leftovers;
pub mod metrics;
pub mod ports;
pub mod probe;
pub mod process;
pub mod reaper;
pub mod slurm;
pub mod templates;
