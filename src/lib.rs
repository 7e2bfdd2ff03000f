//! vbench: declarative experiment runner for vLLM serving benchmarks.
//!
//! The pipeline, in the order data flows through it (a stage imports only stages before it):
//! `manifest` (TOML types, schema, diagnostics) → `plan` (variants, cells, ids) →
//! `exec` (launching and stopping a deployment: backends, processes, templates) →
//! `load` (datasets, schedule, streaming client, the result file) →
//! `results` (the run folder: its layout and records) → `report` (import, attainment math,
//! figures, HTML/Markdown). `apply` drives them for `vbench apply`; `cmd` is the edge (flags,
//! terminal output, exit codes). Beside the pipeline: `sim` (the simulated vLLM server) and
//! `proxy` (the prefill/decode proxy), which `apply` launches as processes, and `kv_notify`
//! (LMCache's KV-ready notification on the wire, which both of them speak). `http_body` reads a
//! whole answer from a server with a bound, for every stage that needs one.

// Manifest diagnostics carry their source text and are returned on cold paths only.
#![allow(clippy::result_large_err)]

pub mod apply;
pub mod bounded_file;
pub mod cmd;
pub mod error;
pub mod exec;
pub mod http_body;
pub mod kv_notify;
pub mod load;
pub mod manifest;
pub mod plan;
pub mod proxy;
pub mod report;
pub mod results;
pub mod sim;
pub mod stats;

pub use error::{Error, Result};
