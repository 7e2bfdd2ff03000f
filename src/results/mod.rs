//! What a run leaves on disk: the run folder's layout and records ([`rundir`]), and the safe
//! way every file in it is written ([`store`]). The per-rate result file's format belongs to
//! the load generator that writes it ([`crate::load::result`]).

pub mod environment;
pub mod history;
pub mod inputs;
pub mod redact;
pub mod rundir;
pub mod store;

pub use environment::Environment;
pub use rundir::{is_result_file, RunDir, VariantDir};
