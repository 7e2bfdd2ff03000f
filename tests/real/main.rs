//! Tests against real components that `ci/test.sh` installs and starts: the vLLM CPU build
//! (`VBENCH_VLLM_URL`, `VBENCH_VLLM_ROOT`, `VBENCH_TINY_MODEL`) and a real Slurm cluster
//! (`SLURM_CONF`; the multi-node tests need three nodes or more, `NODES=3`). They run one at a
//! time ([`alone`]): each loads the machine's few cores with real servers, and their timings
//! and teardown checks must not share them with another.

mod apply_vllm_cpu;
mod lmcache_notify_pyzmq;
mod load_vllm_cpu;
mod slurm;
mod slurm_multinode;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

static ALONE: Mutex<()> = Mutex::new(());

/// Held for a whole test: no other test of this binary runs meanwhile.
pub fn alone() -> MutexGuard<'static, ()> {
    ALONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The one folder inside `dir` (a run folder inside its experiment folder), asserting there is
/// exactly one.
pub fn only_dir(dir: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.pop().unwrap()
}

/// Every file below `dir`.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}
