//! Which accelerator each instance gets, and the check that GPUs are free between variants.

use std::time::{Duration, Instant};

use anyhow::bail;

use super::gpu_telemetry::{self, GpuReading};

/// Lists the processes holding GPU memory; behind a trait so the executor's tests need no GPU.
pub trait GpuProbe: Send + Sync {
    /// (GPU index, pid, used MiB) of every compute process; `None` when it cannot be asked.
    fn busy(&self) -> Option<Vec<(u32, u32, u64)>>;

    /// The state of `gpus` now (utilisation, clocks, power, ...); `None` when it cannot be
    /// asked.
    fn telemetry(&self, _gpus: &[u32]) -> Option<Vec<GpuReading>> {
        None
    }
}

/// Asks `nvidia-smi`.
pub struct NvidiaSmiProbe;

impl GpuProbe for NvidiaSmiProbe {
    fn busy(&self) -> Option<Vec<(u32, u32, u64)>> {
        // A wedged driver makes nvidia-smi hang: each query has a time limit.
        let query = |args: &[&str]| {
            let mut cmd = std::process::Command::new("nvidia-smi");
            cmd.args(args);
            super::probe::output(cmd, super::probe::LIMIT, &|| false)
        };
        let apps = query(&[
            "--query-compute-apps=gpu_uuid,pid,used_memory",
            "--format=csv,noheader,nounits",
        ])?;
        let uuids = query(&["--query-gpu=index,uuid", "--format=csv,noheader"]).unwrap_or_default();
        let index_of: Vec<(u32, String)> = uuids
            .lines()
            .filter_map(|l| {
                let (i, u) = l.split_once(',')?;
                Some((i.trim().parse().ok()?, u.trim().to_owned()))
            })
            .collect();
        Some(
            apps.lines()
                .filter_map(|l| {
                    let mut f = l.split(',').map(str::trim);
                    let uuid = f.next()?;
                    let pid = f.next()?.parse().ok()?;
                    let mib = f.next()?.parse().unwrap_or(0);
                    let gpu = index_of.iter().find(|(_, u)| u == uuid)?.0;
                    Some((gpu, pid, mib))
                })
                .collect(),
        )
    }

    fn telemetry(&self, gpus: &[u32]) -> Option<Vec<GpuReading>> {
        // Every GPU is asked and ours kept: `-i` with an index the host lacks fails the whole
        // query.
        let ask = |query: &str| {
            let mut cmd = std::process::Command::new("nvidia-smi");
            cmd.arg(format!("--query-gpu={query}"))
                .arg("--format=csv,noheader,nounits");
            // Sampled every second while a rate runs: a slow answer is skipped, not waited for.
            super::probe::output(cmd, Duration::from_secs(5), &|| false)
        };
        let text = ask(gpu_telemetry::QUERY).or_else(|| ask(gpu_telemetry::QUERY_OLD_DRIVER))?;
        let mut readings = gpu_telemetry::parse(&text);
        readings.retain(|r| gpus.contains(&r.index));
        Some(readings)
    }
}

/// `GPU g: pid p (m MiB)` for each compute process on one of `gpus`; `None` when the probe
/// cannot be asked (no nvidia-smi: sim or CPU targets).
fn held(probe: &dyn GpuProbe, gpus: &[u32]) -> Option<Vec<String>> {
    let busy = probe.busy()?;
    Some(
        busy.iter()
            .filter(|(g, _, _)| gpus.contains(g))
            .map(|(g, pid, mib)| format!("GPU {g}: pid {pid} ({mib} MiB)"))
            .collect(),
    )
}

/// Wait until none of `gpus` runs a compute process, or fail naming who holds them.
pub async fn wait_free(
    probe: &dyn GpuProbe,
    gpus: &[u32],
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let who = held(probe, gpus).unwrap_or_default();
        if who.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "GPUs still busy {}s after teardown: {}; refusing to start the next variant on them",
                timeout.as_secs(),
                who.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Before a variant starts: refuse GPUs that some other process holds (another user's job,
/// a leftover of an earlier run), instead of finding out from an out-of-memory error after
/// minutes of vLLM start-up, or measuring a deployment that shares its GPUs.
pub fn ensure_free(probe: &dyn GpuProbe, gpus: &[u32]) -> anyhow::Result<()> {
    let taken = held(probe, gpus).unwrap_or_default();
    if !taken.is_empty() {
        bail!(
            "GPUs in use before this variant started: {}; vbench does not share GPUs (stop \
             those processes, or list other GPUs in target.gpus)",
            taken.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Fake {
        calls: AtomicU32,
        free_after: u32,
    }
    impl GpuProbe for Fake {
        fn busy(&self) -> Option<Vec<(u32, u32, u64)>> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            Some(if n < self.free_after {
                vec![(1, 4242, 900), (5, 1, 10)]
            } else {
                vec![(5, 1, 10)]
            })
        }
    }

    #[tokio::test]
    async fn waits_until_our_gpus_are_free_and_ignores_others() {
        let f = Fake {
            calls: AtomicU32::new(0),
            free_after: 2,
        };
        wait_free(&f, &[0, 1], Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(f.calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn refuses_to_start_on_a_gpu_someone_else_holds() {
        let f = Fake {
            calls: AtomicU32::new(0),
            free_after: u32::MAX,
        };
        let e = ensure_free(&f, &[0, 1]).unwrap_err();
        assert!(e.to_string().contains("GPU 1: pid 4242 (900 MiB)"), "{e}");
        assert!(!e.to_string().contains("GPU 5"), "{e}");
        ensure_free(&f, &[0, 2]).unwrap();
    }

    #[tokio::test]
    async fn names_the_process_still_holding_a_gpu() {
        let f = Fake {
            calls: AtomicU32::new(0),
            free_after: u32::MAX,
        };
        let e = wait_free(&f, &[1], Duration::from_millis(10))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("GPU 1: pid 4242 (900 MiB)"), "{e}");
    }
}
