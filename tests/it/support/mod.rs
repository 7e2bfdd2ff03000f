//! Helpers shared by the integration tests (never part of the library). `report` and `sim`
//! allow dead code themselves (the benchmarks include them too); `fake_server` is also the
//! accuracy benchmark's server (`examples/fixed_server.rs`).

#[allow(dead_code)]
pub mod fake_server;
pub mod report;
pub mod sim;
