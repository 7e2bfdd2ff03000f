//! The simulated vLLM server (`vbench sim-serve`): an OpenAI-compatible streaming server whose
//! latencies come from a model of vLLM's continuous-batching engine (docs/simulator.md).
//!
//! Data path: `server` (HTTP routes, faults) parses a `request`, asks `pd` what the
//! kv_transfer_params mean, waits the `frontend` delay, hands the request to the `engine`
//! thread, which runs the `scheduler` (with `kv` block accounting) in real time, and streams
//! the tokens back as vLLM's chunks (`sse`). `profile` holds the numbers; `model` runs the same
//! scheduler in virtual time for calibration; `metrics` renders /metrics.
//!
//! For a launcher it behaves like `vllm serve`: start it as its own process group with
//! `vbench sim-serve --host H --port P --model NAME --profile PROFILE --tp N
//! [--role simple|prefill|decode] [--kv-connector nixl|lmcache]`, wait for GET /health = 200,
//! stop it with SIGTERM (exit 0). A crash fault exits with status 1; bad flags exit 2.
//! In-process: [`SimServer::start`] (127.0.0.1, free port) or [`serve`] on your own listener.

pub mod engine;
pub mod faults;
pub mod frontend;
pub mod kv;
pub mod metrics;
pub mod model;
pub mod pd;
pub mod prefix_cache;
pub mod profile;
pub mod request;
pub mod scheduler;
pub mod server;
pub mod side_channel;
pub mod sse;
pub mod tokens;

pub use pd::{Connector, Role};
pub use profile::Profile;
pub use server::{serve, ServeExit, SimConfig, SimServer};
