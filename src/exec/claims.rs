//! What one `apply` runs on (GPUs, CPU cores), claimed against every other vbench on this
//! host: an exclusive `flock` per device on `<temp dir>/vbench-<device>.lock`, held until
//! dropped and released by the kernel however the process dies.
//!
//! Why locks and not a look at the device: a vLLM that is still starting holds no GPU memory
//! and no busy core yet, so two runs started seconds apart would both find it free and share
//! it, and both would measure wrong numbers without a word.

use std::path::Path;

use super::flock::{Attempt, Flock};

/// One device to claim.
#[derive(Debug, Clone)]
pub struct Device {
    /// As a user names it: `GPU 0 (GPU-8f2c...)`, `CPU core 3`.
    pub name: String,
    /// Unique on the host, for the lock file's name: the GPU's UUID, `cpu-3`.
    pub key: String,
}

/// What each kind of device is called in a refusal, and where a user picks others.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// `GPUs`, `CPU cores`.
    pub plural: &'static str,
    /// The manifest setting that lists them: `target.gpus`, `target.cpus`.
    pub setting: &'static str,
}

pub const GPUS: Kind = Kind {
    plural: "GPUs",
    setting: "target.gpus",
};
pub const CPU_CORES: Kind = Kind {
    plural: "CPU cores",
    setting: "target.cpus",
};

/// Devices held by this process until dropped.
#[derive(Debug)]
pub struct Claims {
    _locks: Vec<Flock>,
    /// Devices left unclaimed, each with why: their lock file could not be opened (a temp
    /// folder this user cannot write). The run goes on without their protection.
    pub unclaimed: Vec<String>,
}

/// Another vbench holds one of the devices a run asked for.
#[derive(Debug, thiserror::Error)]
#[error(
    "{device} is in use by another vbench on this host ({holder}); vbench does not share \
     {plural}: wait for that run to end, or give this one other {plural} ({setting})"
)]
pub struct Claimed {
    pub device: String,
    pub holder: String,
    pub plural: &'static str,
    pub setting: &'static str,
}

/// Claim `devices` for this process in `dir`, recording `holder` (e.g. the run folder) for a
/// second vbench's message. Fails at the first device another vbench holds, releasing the
/// rest.
pub fn claim_in(
    dir: &Path,
    kind: Kind,
    devices: &[Device],
    holder: &str,
) -> Result<Claims, Claimed> {
    let (mut locks, mut unclaimed) = (Vec::new(), Vec::new());
    for device in devices {
        let safe: String = device
            .key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join(format!("vbench-{safe}.lock"));
        let mut lock = match Flock::try_take(&path) {
            Err(e) => {
                unclaimed.push(format!("{} ({}: {e})", device.name, path.display()));
                continue;
            }
            Ok(Attempt::Held(lock)) => lock,
            Ok(Attempt::Taken { record }) => {
                let holder = match record.trim() {
                    "" => "a process that recorded nothing".to_owned(),
                    r => r.replace('\n', ", "),
                };
                return Err(Claimed {
                    device: device.name.clone(),
                    holder,
                    plural: kind.plural,
                    setting: kind.setting,
                });
            }
        };
        // Only for the message of a run refused: a file another user made, open read-only,
        // keeps its old record.
        let _ = lock.set_record(&format!("pid {}\n{holder}\n", std::process::id()));
        locks.push(lock);
    }
    Ok(Claims {
        _locks: locks,
        unclaimed,
    })
}

/// Claim CPU cores `cores` (host ids) in the temp folder; see [`claim_in`].
pub fn claim_cpu_cores(cores: &[u32], holder: &str) -> Result<Claims, Claimed> {
    claim_in(
        &std::env::temp_dir(),
        CPU_CORES,
        &cpu_devices(cores),
        holder,
    )
}

fn cpu_devices(cores: &[u32]) -> Vec<Device> {
    cores
        .iter()
        .map(|c| Device {
            name: format!("CPU core {c}"),
            key: format!("cpu-{c}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cores(dir: &Path, ids: &[u32], holder: &str) -> Result<Claims, Claimed> {
        claim_in(dir, CPU_CORES, &cpu_devices(ids), holder)
    }

    #[test]
    fn a_core_claimed_by_one_run_is_refused_to_another_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = cores(dir.path(), &[0, 1], "run results/x/1").unwrap();
        // flock is per open file: a second claim in this process conflicts like another's.
        let e = cores(dir.path(), &[2, 1], "run results/y/2").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "CPU core 1 is in use by another vbench on this host (pid {}, run results/x/1); \
                 vbench does not share CPU cores: wait for that run to end, or give this one \
                 other CPU cores (target.cpus)",
                std::process::id()
            )
        );
        // Core 2 was claimed and released again by the failed attempt.
        drop(cores(dir.path(), &[2], "z").unwrap());
        drop(first);
        let again = cores(dir.path(), &[0, 1, 2], "run results/y/2").unwrap();
        assert!(again.unclaimed.is_empty());
        assert!(dir.path().join("vbench-cpu-2.lock").exists());
    }
}
