//! Result files: the per-rate format, the run-folder store, and import of other tools' files.

pub mod format;
pub mod import;
pub mod ls;
pub mod store;

pub use format::{ClientHealth, DeploymentInfo, LoadInfo, RequestRecord, RunResult, VbenchSection};
