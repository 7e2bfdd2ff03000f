//! A Slurm run started outside a job (on a login node) is driven from the allocation's first
//! node: vbench makes the allocation, then runs the same `vbench apply` there as a job step,
//! which finds itself inside the job and runs the experiment as it would under `sbatch`. So
//! the proxy and the load generator sit next to the instances, not on a shared login node
//! whose load and network path would be part of every latency (`target.slurm.driver`).
//!
//! This process only holds the allocation, relays the step's output (srun does) and its exit
//! status, and passes a stop on: the first Ctrl-C (or SIGTERM) becomes a SIGINT to the step's
//! task (`scancel --signal=INT`; the inner vbench tears down and keeps its results), a second
//! one a SIGKILL to `srun`; the allocation is cancelled when the step ends, and by the reaper
//! should this process die first.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use anyhow::Context;

use super::{vbench_exe, Events, Interrupts, Options};
use crate::exec::reaper::{self, Reaper, Watched};
use crate::exec::slurm;
use crate::manifest::{Backend, LoadedManifest, SlurmDriver};
use crate::plan::Plan;

/// Whether `apply` hands this run to a copy of itself on the allocation's first node: the
/// slurm backend, `target.slurm.driver = "first_node"`, and not already inside a job.
pub fn drives_from_first_node(loaded: &LoadedManifest, plan: &Plan) -> bool {
    let driver = loaded
        .manifest
        .target
        .slurm
        .as_ref()
        .map_or(SlurmDriver::default(), |s| s.driver);
    plan.backend == Backend::Slurm
        && driver == SlurmDriver::FirstNode
        && std::env::var("SLURM_JOB_ID").map_or(true, |id| id.is_empty())
}

/// Allocate, run `args` (this `vbench apply`'s own arguments) as a step on the allocation's
/// first node, wait for it and cancel the allocation. Returns the step's exit status.
pub async fn drive_from_first_node(
    options: &Options,
    loaded: &LoadedManifest,
    plan: &Plan,
    args: &[std::ffi::OsString],
    events: &dyn Events,
) -> anyhow::Result<i32> {
    let slurm_options = loaded.manifest.target.slurm.clone().unwrap_or_default();
    let vbench = vbench_exe()?;
    let _reaper = Reaper::start(&vbench, options.stop_grace)?;
    let mut interrupted = Interrupts::listen();
    let allocation = slurm::acquire(&slurm_options, &format!("vbench-{}", plan.experiment))?;
    let first = allocation
        .nodes
        .first()
        .context("the allocation has no node")?
        .name
        .clone();
    events.info(&format!(
        "slurm job {} (allocated by vbench): {}; the run is driven from {first}, where the \
         proxy and the load generator run (target.slurm.driver)",
        allocation.job_id,
        allocation.nodes_line()
    ));
    let mut step = Command::new("srun");
    step.args(slurm::driver_args(&allocation.job_id, &first))
        .arg(&vbench)
        .args(args)
        .stdin(Stdio::null())
        // A Ctrl-C in the terminal is this process's to pass on, not srun's: srun takes a
        // single SIGINT as a request for its status.
        .process_group(0);
    let mut child = step
        .spawn()
        .context("running srun for the run's driver step")?;
    let group = Watched::Group(child.id() as i32);
    reaper::watch(&group);
    let pid = child.id() as i32;
    let waiting = tokio::task::spawn_blocking(move || child.wait());
    tokio::pin!(waiting);
    let mut signalled = 0;
    let status = loop {
        tokio::select! {
            status = &mut waiting => break status.context("waiting for the driver step")??,
            _ = interrupted.at_least(signalled + 1), if signalled < 2 => {
                signalled += 1;
                let passed_on = signalled == 1 && pass_on_interrupt(&allocation.job_id).await;
                if passed_on {
                    events.warning(
                        "stopping: the step on the first node tears down and keeps its results",
                    );
                } else {
                    // SAFETY: signalling the srun this function started; the allocation's
                    // cancellation then ends whatever the step left.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
    };
    reaper::release(&group);
    drop(allocation);
    Ok(status.code().unwrap_or(1))
}

/// SIGINT to the driver step's task, off the async loop (Slurm's commands may be slow); a
/// step not listed yet (a Ctrl-C just after srun started) is looked for again for 3 s.
async fn pass_on_interrupt(job_id: &str) -> bool {
    let job_id = job_id.to_owned();
    tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            if slurm::signal_steps(&job_id, slurm::DRIVER_STEP, "INT").is_ok() {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    })
    .await
    .unwrap_or(false)
}
