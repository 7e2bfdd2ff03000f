//! Helpers shared by the integration tests (never part of the library). `report` and `sim`
//! allow dead code themselves (the benchmarks include them too); `fake_server` is also the
//! accuracy benchmark's server (`examples/fixed_server.rs`).

#[allow(dead_code)]
pub mod fake_server;
pub mod report;
pub mod sim;

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static MACHINE: RwLock<()> = RwLock::new(());

/// Held for a whole test that asserts wall-clock timing: it runs while no [`busy`] test does
/// (as it did when each file was its own binary). Light tests still run beside it.
pub fn serial() -> RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(|e| e.into_inner())
}

/// Held for a whole test that loads the machine (real processes, streams at full speed):
/// such tests run beside each other, but never beside a [`serial`] one.
pub fn busy() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(|e| e.into_inner())
}

/// The result file `name` of the one run of `experiment` under `results` (in whichever variant
/// folder has it).
pub fn only_result(
    results: &std::path::Path,
    experiment: &str,
    name: &str,
) -> vbench::load::RunResult {
    let run = std::fs::read_dir(results.join(experiment))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let variant = std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join(name).is_file())
        .unwrap_or_else(|| panic!("no {name} under {}", run.display()));
    serde_json::from_slice(&std::fs::read(variant.join(name)).unwrap()).unwrap()
}

/// Waits for `child` to exit, failing the test with `what` if it takes longer than `limit`.
pub fn exit_within(
    child: &mut std::process::Child,
    limit: std::time::Duration,
    what: &str,
) -> std::process::ExitStatus {
    let t0 = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(t0.elapsed() < limit, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
