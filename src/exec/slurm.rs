//! The `slurm` backend: instances run as job steps (`srun`) on the nodes of one allocation,
//! each on its node's GPUs; the proxy and the load generator stay on the node vbench runs on.
//!
//! vbench uses the allocation it runs inside (`SLURM_JOB_ID`, e.g. under `salloc`), or makes one
//! with `salloc --no-shell` and cancels it when the run ends, whatever the reason.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::manifest::SlurmOptions;

/// One node of the allocation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SlurmNode {
    pub name: String,
    /// Address instances on this node are reached at (Slurm's NodeAddr).
    pub addr: String,
    pub gpus: u32,
}

/// The allocation vbench places instances in.
#[derive(Debug, Serialize)]
pub struct Allocation {
    pub job_id: String,
    pub nodes: Vec<SlurmNode>,
    /// True when vbench made the allocation (and so must cancel it).
    pub owned: bool,
}

impl Allocation {
    /// `node1 at 10.0.0.1 (8 GPUs), node2 at ...`, as `apply` reports the allocation.
    pub fn nodes_line(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("{} at {} ({} GPUs)", n.name, n.addr, n.gpus))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Drop for Allocation {
    /// Cancel an allocation vbench made and wait (up to a minute) until Slurm no longer lists
    /// it: a job in its completing state still holds its nodes, and the next run (or user)
    /// must find them free.
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        // Each call is bounded: a controller that stops answering cannot hang the exit.
        let mut scancel = Command::new("scancel");
        scancel.arg(&self.job_id);
        let _ = super::probe::output(scancel, QUERY_LIMIT, &|| false);
        super::reaper::release(&super::reaper::Watched::Job(self.job_id.clone()));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            let mut squeue = Command::new("squeue");
            squeue.args(["-h", "-j", &self.job_id, "-o", "%i"]);
            let listed = super::probe::output(squeue, QUERY_LIMIT, &|| false)
                .is_some_and(|out| !out.is_empty());
            if !listed {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("running {cmd:?} (is Slurm installed and SLURM_CONF set?)"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Use the current allocation, or make one as `options` describe.
pub fn acquire(options: &SlurmOptions, job_name: &str) -> anyhow::Result<Allocation> {
    let (job_id, owned) = match std::env::var("SLURM_JOB_ID") {
        Ok(id) if !id.is_empty() => (id, false),
        _ => {
            let id = allocate(options, job_name)?;
            // Should vbench die holding it, the reaper cancels it.
            super::reaper::watch(&super::reaper::Watched::Job(id.clone()));
            (id, true)
        }
    };
    let mut alloc = Allocation {
        job_id,
        nodes: Vec::new(),
        owned,
    };
    alloc.nodes = nodes_of(&alloc.job_id, options.gpus_per_node)?;
    Ok(alloc)
}

fn allocate(options: &SlurmOptions, job_name: &str) -> anyhow::Result<String> {
    let mut cmd = Command::new("salloc");
    cmd.args([
        "--no-shell",
        // Whole nodes: a benchmark must not share its nodes with other jobs.
        "--exclusive",
        "--job-name",
        job_name,
        "--nodes",
        &options.nodes.to_string(),
    ]);
    if let Some(g) = options.gpus_per_node {
        cmd.arg(format!("--gres=gpu:{g}"));
    }
    if let Some(p) = &options.partition {
        cmd.args(["--partition", p]);
    }
    if let Some(a) = &options.account {
        cmd.args(["--account", a]);
    }
    if let Some(t) = &options.time {
        cmd.args(["--time", t]);
    }
    cmd.args(&options.extra_args);
    let out = cmd
        .output()
        .context("running salloc (is Slurm installed and SLURM_CONF set?)")?;
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    // "salloc: Granted job allocation 42"
    let id = text
        .lines()
        .find_map(|l| l.split("Granted job allocation ").nth(1))
        .map(|s| s.trim().to_owned());
    match (out.status.success(), id) {
        (true, Some(id)) => Ok(id),
        _ => bail!("salloc did not grant an allocation: {}", text.trim()),
    }
}

fn nodes_of(job_id: &str, gpus_per_node: Option<u32>) -> anyhow::Result<Vec<SlurmNode>> {
    let list = run(Command::new("squeue").args(["-h", "-j", job_id, "-o", "%N"]))?;
    let list = list.trim();
    if list.is_empty() {
        bail!("job {job_id} has no nodes (is it still pending?)");
    }
    let names = run(Command::new("scontrol").args(["show", "hostnames", list]))?;
    names
        .lines()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|name| {
            let info = run(Command::new("scontrol").args(["show", "node", name]))?;
            let field = |key: &str| {
                info.split_whitespace()
                    .find_map(|kv| kv.strip_prefix(key))
                    .map(str::to_owned)
            };
            let addr = field("NodeAddr=").unwrap_or_else(|| name.to_owned());
            // Gres=gpu:4 or gpu:h200:8(S:0-1)
            let gres_gpus = field("Gres=").and_then(|g| {
                g.split(',')
                    .find(|p| p.starts_with("gpu"))
                    .and_then(|p| p.split('(').next())
                    .and_then(|p| p.rsplit(':').next())
                    .and_then(|n| n.parse().ok())
            });
            let gpus = gpus_per_node.or(gres_gpus).unwrap_or(0);
            Ok(SlurmNode {
                name: name.to_owned(),
                addr,
                gpus,
            })
        })
        .collect()
}

/// `srun` arguments that run one instance as a step on `node` with `gpus` GPUs.
pub fn srun_args(job_id: &str, node: &str, gpus: u32, cpus: u32, name: &str) -> Vec<String> {
    let mut args = vec![
        format!("--jobid={job_id}"),
        "--nodes=1".into(),
        "--ntasks=1".into(),
        format!("--cpus-per-task={cpus}"),
        format!("--nodelist={node}"),
        // Steps of one allocation run side by side only with --exact.
        "--exact".into(),
        "--kill-on-bad-exit=1".into(),
        format!("--job-name={name}"),
    ];
    if gpus > 0 {
        args.push(format!("--gres=gpu:{gpus}"));
    }
    args.push("--".into());
    args
}

/// `srun` arguments that run the run's driver (this `vbench apply` again, `apply::driver`) on
/// `node` of the job: beside the instances' steps, whatever resources they hold (`--overlap`),
/// its output relayed as it comes (`--unbuffered`).
pub fn driver_args(job_id: &str, node: &str) -> Vec<String> {
    vec![
        format!("--jobid={job_id}"),
        "--nodes=1".into(),
        "--ntasks=1".into(),
        format!("--nodelist={node}"),
        "--overlap".into(),
        "--unbuffered".into(),
        format!("--job-name={DRIVER_STEP}"),
        "--".into(),
    ]
}

/// The command line (`srun ... --`) that runs a short query on `node` of the job, seeing its
/// `gpus` GPUs, beside the job's other steps (`--overlap`: it waits for none and holds back
/// none): the environment's probes, which must describe the nodes, not the host vbench is on.
pub fn probe_prefix(job_id: &str, node: &str, gpus: u32) -> Vec<String> {
    let mut args = vec!["srun".to_owned()];
    args.extend(srun_args(job_id, node, gpus, 1, "vbench-probe"));
    let end = args.len() - 1;
    args.insert(end, "--overlap".into());
    args
}

/// The name of the step [`driver_args`] starts.
pub const DRIVER_STEP: &str = "vbench-driver";

/// Send `signal` (e.g. `INT`) to the tasks of the job's steps named `name`, and only that:
/// `srun` takes a signal of its own as the end of its step (SIGTERM: SIGKILL after Slurm's
/// KillWait), which leaves a vbench there no time to tear down.
/// Errs when no such step is listed (yet), and when Slurm does not answer within
/// [`QUERY_LIMIT`] (a stop must not wait on a slow controller).
pub fn signal_steps(job_id: &str, name: &str, signal: &str) -> anyhow::Result<()> {
    let steps = steps_named(job_id, &[name])?;
    if steps.is_empty() {
        bail!("job {job_id} has no step named {name} (yet)");
    }
    for (step, _) in steps {
        let mut scancel = Command::new("scancel");
        scancel.args([&format!("--signal={signal}"), &step]);
        super::probe::answer(scancel, QUERY_LIMIT, &|| false)
            .map_err(|why| anyhow::anyhow!("scancel --signal={signal} {step}: {why}"))?;
    }
    Ok(())
}

/// How long a query of the job's steps (and a signal to one) may take: teardown and a stop
/// poll them, and must not hang on a slow controller.
const QUERY_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The running steps of the job whose names are in `names`, as `(step id, name)`.
fn steps_named(job_id: &str, names: &[&str]) -> anyhow::Result<Vec<(String, String)>> {
    let mut squeue = Command::new("squeue");
    squeue.args(["-h", "-s", "-j", job_id, "-o", "%i %j"]);
    let out = super::probe::answer(squeue, QUERY_LIMIT, &|| false)
        .map_err(|why| anyhow::anyhow!("squeue -s -j {job_id}: {why}"))?;
    Ok(out
        .lines()
        .filter_map(|l| l.trim().split_once(' '))
        .filter(|(_, name)| names.contains(name))
        .map(|(id, name)| (id.to_owned(), name.to_owned()))
        .collect())
}

/// After a variant's `srun` processes were stopped: wait until none of its steps (named
/// `names`) is left in the job. A step still there after `patience` (its `srun` was killed
/// before it could pass the signal on) is cancelled by its id; one still there at `timeout`
/// is an error that names it.
pub async fn end_steps(
    job_id: &str,
    names: &[&str],
    patience: Duration,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut cancelled = false;
    loop {
        let steps = steps_named(job_id, names)?;
        if steps.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = steps.iter().map(|(id, _)| id.as_str()).collect();
        if !cancelled && started.elapsed() >= patience {
            // A step that ends meanwhile makes scancel complain; the next look tells.
            let mut scancel = Command::new("scancel");
            scancel.args(&ids);
            let _ = super::probe::output(scancel, QUERY_LIMIT, &|| false);
            cancelled = true;
        }
        if started.elapsed() >= timeout {
            bail!(
                "Slurm steps still running after teardown: {}",
                steps
                    .iter()
                    .map(|(id, name)| format!("{id} ({name})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srun_runs_one_exact_task_on_the_node() {
        let a = srun_args("42", "a", 2, 4, "prefill-0");
        assert!(a.contains(&"--jobid=42".to_owned()) && a.contains(&"--exact".to_owned()));
        assert!(a.contains(&"--gres=gpu:2".to_owned()));
        assert_eq!(a.last().unwrap(), "--");
    }
}
