//! Which accelerator each instance gets, and the check that GPUs are free between variants.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::claims::{self, Claimed, Claims, Device};
use super::gpu_telemetry::{self, GpuReading};
use super::probe::StopFlag;

/// Lists the processes holding GPU memory; behind a trait so the executor's tests need no GPU.
/// Each query gives up (answers `None`) as soon as `stop()` says so: a wedged driver can make
/// `nvidia-smi` hang, and Ctrl-C must not wait for it.
pub trait GpuProbe: Send + Sync {
    /// (GPU index, pid, used MiB) of every compute process; `None` when it cannot be asked.
    fn busy(&self, stop: &dyn Fn() -> bool) -> Option<Vec<(u32, u32, u64)>>;

    /// The state of `gpus` now (utilisation, clocks, power, ...); `None` when it cannot be
    /// asked.
    fn telemetry(&self, _gpus: &[u32], _stop: &dyn Fn() -> bool) -> Option<Vec<GpuReading>> {
        None
    }

    /// (GPU index, UUID) of every GPU; `None` when it cannot be asked.
    fn uuids(&self, _stop: &dyn Fn() -> bool) -> Option<Vec<(u32, String)>> {
        None
    }
}

/// Asks `nvidia-smi`.
pub struct NvidiaSmiProbe;

impl GpuProbe for NvidiaSmiProbe {
    fn busy(&self, stop: &dyn Fn() -> bool) -> Option<Vec<(u32, u32, u64)>> {
        // A wedged driver makes nvidia-smi hang: each query has a time limit.
        let query = |args: &[&str]| {
            let mut cmd = std::process::Command::new("nvidia-smi");
            cmd.args(args);
            super::probe::output(cmd, super::probe::LIMIT, stop)
        };
        let apps = query(&[
            "--query-compute-apps=gpu_uuid,pid,used_memory",
            "--format=csv,noheader,nounits",
        ])?;
        let index_of = self.uuids(stop).unwrap_or_default();
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

    fn uuids(&self, stop: &dyn Fn() -> bool) -> Option<Vec<(u32, String)>> {
        let mut cmd = std::process::Command::new("nvidia-smi");
        cmd.args(["--query-gpu=index,uuid", "--format=csv,noheader"]);
        let text = super::probe::output(cmd, super::probe::LIMIT, stop)?;
        Some(
            text.lines()
                .filter_map(|l| {
                    let (i, u) = l.split_once(',')?;
                    Some((i.trim().parse().ok()?, u.trim().to_owned()))
                })
                .collect(),
        )
    }

    fn telemetry(&self, gpus: &[u32], stop: &dyn Fn() -> bool) -> Option<Vec<GpuReading>> {
        // Every GPU is asked and ours kept: `-i` with an index the host lacks fails the whole
        // query.
        let ask = |query: &str| {
            let mut cmd = std::process::Command::new("nvidia-smi");
            cmd.arg(format!("--query-gpu={query}"))
                .arg("--format=csv,noheader,nounits");
            // Sampled every second while a rate runs: a slow answer is skipped, not waited for.
            super::probe::output(cmd, Duration::from_secs(5), stop)
        };
        let text = ask(gpu_telemetry::QUERY).or_else(|| ask(gpu_telemetry::QUERY_OLD_DRIVER))?;
        let mut readings = gpu_telemetry::parse(&text);
        readings.retain(|r| gpus.contains(&r.index));
        Some(readings)
    }
}

impl crate::plan::capacity::GpuDiscovery for NvidiaSmiProbe {
    fn gpu_indices(&self) -> Result<Vec<u32>, String> {
        // A wedged driver makes nvidia-smi hang: `vbench plan` must still answer.
        let mut cmd = std::process::Command::new("nvidia-smi");
        cmd.args(["--query-gpu=index", "--format=csv,noheader"]);
        let out = super::probe::answer(cmd, DISCOVERY_LIMIT, &|| false)?;
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.trim()
                    .parse()
                    .map_err(|_| format!("unexpected nvidia-smi line {l:?}"))
            })
            .collect()
    }
}

/// How long `nvidia-smi` may take to list the GPUs (it answers in well under a second).
const DISCOVERY_LIMIT: Duration = Duration::from_secs(20);

/// `GPU g: pid p (m MiB)` for each compute process on one of `gpus`; `None` when the probe
/// cannot be asked (no nvidia-smi: sim or CPU targets).
fn held(probe: &dyn GpuProbe, gpus: &[u32], stop: &dyn Fn() -> bool) -> Option<Vec<String>> {
    let busy = probe.busy(stop)?;
    Some(
        busy.iter()
            .filter(|(g, _, _)| gpus.contains(g))
            .map(|(g, pid, mib)| format!("GPU {g}: pid {pid} ({mib} MiB)"))
            .collect(),
    )
}

/// Wait until none of `gpus` runs a compute process, or fail naming who holds them. Each look
/// runs on a blocking thread and is killed when this future is dropped (a second Ctrl-C
/// stops the wait), so a hanging `nvidia-smi` holds neither the runtime nor the user.
pub async fn wait_free(
    probe: &Arc<dyn GpuProbe>,
    gpus: &[u32],
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let dropped = StopFlag::new();
    loop {
        let (probe, ours, stop) = (probe.clone(), gpus.to_vec(), dropped.watcher());
        let who = tokio::task::spawn_blocking(move || held(probe.as_ref(), &ours, &stop))
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
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
    let taken = held(probe, gpus, &|| false).unwrap_or_default();
    if !taken.is_empty() {
        bail!(
            "GPUs in use before this variant started: {}; vbench does not share GPUs (stop \
             those processes, or list other GPUs in target.gpus)",
            taken.join(", ")
        );
    }
    Ok(())
}

/// Claim `gpus` for this process against every other vbench on this host (a lock per GPU
/// UUID, [`claims`]), recording `holder` (e.g. the run folder) for a second vbench's message.
/// Fails at the first GPU another vbench holds, releasing the rest.
pub fn claim(
    probe: &dyn GpuProbe,
    gpus: &[u32],
    holder: &str,
    stop: &dyn Fn() -> bool,
) -> Result<Claims, Claimed> {
    claim_in(&std::env::temp_dir(), probe, gpus, holder, stop)
}

fn claim_in(
    dir: &std::path::Path,
    probe: &dyn GpuProbe,
    gpus: &[u32],
    holder: &str,
    stop: &dyn Fn() -> bool,
) -> Result<Claims, Claimed> {
    let uuids = if gpus.is_empty() {
        Vec::new()
    } else {
        probe.uuids(stop).unwrap_or_default()
    };
    let devices: Vec<Device> = gpus
        .iter()
        .map(|&index| {
            let key = uuids
                .iter()
                .find(|(i, _)| *i == index)
                .map_or_else(|| format!("index-{index}"), |(_, u)| u.clone());
            Device {
                name: format!("GPU {index} ({key})"),
                key: format!("gpu-{key}"),
            }
        })
        .collect();
    claims::claim_in(dir, claims::GPUS, &devices, holder)
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
        fn busy(&self, _stop: &dyn Fn() -> bool) -> Option<Vec<(u32, u32, u64)>> {
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
        let f = Arc::new(Fake {
            calls: AtomicU32::new(0),
            free_after: 2,
        });
        let probe: Arc<dyn GpuProbe> = f.clone();
        wait_free(&probe, &[0, 1], Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(f.calls.load(Ordering::SeqCst), 3);
    }

    struct Uuids;
    impl GpuProbe for Uuids {
        fn busy(&self, _stop: &dyn Fn() -> bool) -> Option<Vec<(u32, u32, u64)>> {
            Some(Vec::new())
        }
        fn uuids(&self, _stop: &dyn Fn() -> bool) -> Option<Vec<(u32, String)>> {
            let run = std::process::id();
            Some(vec![
                (0, format!("GPU-claim-test-{run}-a")),
                (1, format!("GPU-claim-test-{run}-b")),
            ])
        }
    }

    #[test]
    fn a_gpu_claimed_by_one_run_is_refused_to_another_until_released() {
        let first = claim(&Uuids, &[0], "run results/x/1", &|| false).unwrap();
        // flock is per open file: a second claim in this process conflicts like another's.
        let e = claim(&Uuids, &[1, 0], "run results/y/2", &|| false).unwrap_err();
        assert!(e.device.starts_with("GPU 0 "), "{e}");
        assert!(
            e.to_string().contains(&format!(
                "GPU 0 (GPU-claim-test-{}-a) is in use by another vbench on this host (pid {}, run results/x/1)",
                std::process::id(),
                std::process::id()
            )),
            "{e}"
        );
        // GPU 1 was claimed and released again by the failed attempt.
        drop(claim(&Uuids, &[1], "z", &|| false).unwrap());
        drop(first);
        let again = claim(&Uuids, &[0, 1], "run results/y/2", &|| false).unwrap();
        assert!(again.unclaimed.is_empty());
    }

    #[test]
    fn gpus_whose_lock_cannot_be_made_are_named_not_fatal() {
        let dir = std::path::Path::new("/proc/vbench-no-such-folder");
        let claims = claim_in(dir, &Uuids, &[0, 1], "x", &|| false).unwrap();
        assert_eq!(claims.unclaimed.len(), 2);
        assert!(
            claims.unclaimed[0].starts_with("GPU 0 (GPU-claim-test-")
                && claims.unclaimed[0].contains("(/proc/vbench-no-such-folder/vbench-gpu-GPU-"),
            "{:?}",
            claims.unclaimed
        );
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
        let f: Arc<dyn GpuProbe> = Arc::new(Fake {
            calls: AtomicU32::new(0),
            free_after: u32::MAX,
        });
        let e = wait_free(&f, &[1], Duration::from_millis(10))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("GPU 1: pid 4242 (900 MiB)"), "{e}");
    }

    /// A driver that never answers: the query waits until told to stop (or 30 s).
    struct Hanging {
        gave_up: std::sync::atomic::AtomicBool,
    }
    impl GpuProbe for Hanging {
        fn busy(&self, stop: &dyn Fn() -> bool) -> Option<Vec<(u32, u32, u64)>> {
            let t0 = Instant::now();
            while !stop() && t0.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(10));
            }
            self.gave_up.store(stop(), Ordering::SeqCst);
            None
        }
    }

    #[tokio::test]
    async fn a_wait_given_up_stops_the_hanging_query() {
        let hanging = Arc::new(Hanging {
            gave_up: Default::default(),
        });
        let probe: Arc<dyn GpuProbe> = hanging.clone();
        // What a second Ctrl-C does to the wait: drops it.
        let waited = tokio::time::timeout(
            Duration::from_millis(200),
            wait_free(&probe, &[0], Duration::from_secs(60)),
        )
        .await;
        assert!(waited.is_err(), "the wait was still in its query");
        let t0 = Instant::now();
        while !hanging.gave_up.load(Ordering::SeqCst) {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "the query was not stopped"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
