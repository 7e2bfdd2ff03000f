//! `vbench apply`, the whole pipeline: plan, then for each variant launch → health → smoke →
//! sweep rates → teardown → verify GPUs free; results written as each cell finishes.
//!
//! - [`mod@self`]: the run loop over variants (run folder, resume, allocation, outcome);
//! - [`variant`]: one variant from launch to teardown;
//! - [`health`]: waiting for `/health`, the smoke request, the KV-transfer check;
//! - [`cell`]: the load of one cell (the manifest's dataset and load settings as a `LoadSpec`);
//! - `disk`: the room a run needs, and the reserve that keeps the cell measured as it fills.
//!
//! Ctrl-C (or SIGTERM) at any moment stops the load, tears every process group down and keeps
//! every result already written; the run ends [`Outcome::Interrupted`]. A crashed component
//! fails its variant but not the variants after it; a full disk stops the run
//! ([`Outcome::DiskFull`]). Nothing here prints: what the user sees
//! goes through [`Events`], which the command implements.

pub mod cache;
pub mod cell;
mod disk;
pub mod driver;
pub mod gpu;
pub mod health;
pub mod queue;
pub mod search;
pub mod variant;
pub mod warnings;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::sync::watch;

use crate::exec::claims::{Claimed, Claims};
use crate::exec::deploy;
use crate::exec::gpus::GpuProbe;
use crate::exec::ports::PortAllocator;
use crate::exec::reaper::Reaper;
use crate::load::Progress;
use crate::manifest::{self, Accelerator, Backend, DatasetKind, LoadedManifest};
use crate::plan::{Plan, Variant};
use crate::results::rundir::Attempt;
use crate::results::{Environment, RunDir};

pub use disk::{check_results_folder, disk_need, DiskNeed};
use disk::{hold_reserve, short_of_space};

/// How to run an experiment (the flags of `vbench apply`, as plain values).
#[derive(Debug, Clone)]
pub struct Options {
    /// Folder that holds `<experiment>/<timestamp>/` run folders.
    pub results: PathBuf,
    /// Run only these variants (ids from `vbench plan`); empty: all.
    pub only: Vec<String>,
    /// Grace period between SIGTERM and SIGKILL at teardown.
    pub stop_grace: Duration,
    /// Continue this run folder instead of starting a new one.
    pub resume: Option<PathBuf>,
}

impl Options {
    /// Whether `--only` lets variant `id` run.
    pub fn selects(&self, id: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == id)
    }
}

/// What the user sees of a run; the command prints it. Lines that start with two spaces
/// belong to the variant announced last.
pub trait Events: Sync {
    /// An informational line.
    fn info(&self, line: &str);
    /// Something the user should look at; the run goes on.
    fn warning(&self, line: &str);
    /// Instances are starting: what is being waited for (a spinner on a terminal).
    fn waiting(&self, what: &str);
    /// The wait announced by [`Events::waiting`] is over.
    fn waiting_done(&self);
    /// A progress display for the measured requests of one rate.
    fn requests(&self, label: &str) -> Box<dyn Progress>;
}

/// [`Events`] that show nothing (tests, `--json` callers that print their own).
pub struct Silent;

impl Events for Silent {
    fn info(&self, _: &str) {}
    fn warning(&self, _: &str) {}
    fn waiting(&self, _: &str) {}
    fn waiting_done(&self) {}
    fn requests(&self, _: &str) -> Box<dyn Progress> {
        Box::new(crate::load::NoProgress)
    }
}

/// How the whole run ended.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Every variant ran every cell.
    Complete,
    /// Some variants failed (named); the others' results are complete.
    VariantsFailed(Vec<String>),
    /// Stopped by a signal; results written so far are kept.
    Interrupted,
    /// Stopped because the results' file system filled up (`why`); results written so far are
    /// kept, and the variants named failed.
    DiskFull { why: String, failed: Vec<String> },
}

/// Why one variant stopped early.
#[derive(Debug)]
pub(crate) enum VariantError {
    Interrupted,
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for VariantError {
    fn from(e: anyhow::Error) -> Self {
        VariantError::Failed(e)
    }
}

/// `--only` names variants of the plan.
pub fn check_only(plan: &Plan, only: &[String]) -> anyhow::Result<()> {
    for id in only {
        if let Some(v) = plan.skipped.iter().find(|v| &v.id == id) {
            bail!("--only {id}: {} cannot run here: it {}", v.label, v.reason);
        }
        if !plan.variants.iter().any(|v| &v.id == id) {
            let ids: Vec<&str> = plan.variants.iter().map(|v| v.id.as_str()).collect();
            bail!(
                "--only {id}: no such variant; the plan has {}",
                ids.join(", ")
            );
        }
    }
    Ok(())
}

/// Checks that need the file system, before anything starts.
pub fn preflight(loaded: &LoadedManifest, plan: &Plan) -> anyhow::Result<()> {
    let m = &loaded.manifest;
    if matches!(
        m.dataset.kind,
        DatasetKind::Sharegpt | DatasetKind::Jsonl | DatasetKind::Trace
    ) || (m.dataset.kind == DatasetKind::Sessions && m.dataset.path.is_some())
    {
        let path = loaded
            .base_dir()
            .join(m.dataset.path.as_deref().unwrap_or(Path::new("")));
        if !path.is_file() {
            bail!(
                "dataset file {} not found (dataset.path is relative to the manifest's folder)",
                path.display()
            );
        }
    }
    let envs = std::iter::once(&m.target.env).chain(
        plan.variants
            .iter()
            .flat_map(|v| v.roles.iter().map(|r| &r.env)),
    );
    let mut unset: Vec<String> = envs.flat_map(crate::exec::process::unset_sources).collect();
    unset.sort();
    unset.dedup();
    if !unset.is_empty() {
        bail!(
            "the manifest takes {} from vbench's environment, but {} not set in it",
            unset.join(", "),
            if unset.len() == 1 {
                "it is"
            } else {
                "they are"
            }
        );
    }
    if let Some(name) = &m.target.api_key_env {
        crate::load::api_key_from_env(name)
            .with_context(|| format!("target.api_key_env = \"{name}\""))?;
    }
    compile_cache(loaded, plan)?;
    if plan.backend == Backend::Local
        && plan.accelerator == Accelerator::Cuda
        && plan.capacity.gpus.is_none()
    {
        bail!(
            "no GPUs found ({}); set target.gpus, or use backend = \"sim\" to rehearse",
            plan.capacity.source
        );
    }
    Ok(())
}

/// The compile-cache folder of this run's vLLM instances, created (none for the simulator).
pub fn compile_cache(loaded: &LoadedManifest, plan: &Plan) -> anyhow::Result<Option<PathBuf>> {
    if plan.backend == Backend::Sim {
        return Ok(None);
    }
    let dir = crate::exec::compile_cache::resolve(
        loaded.manifest.target.compile_cache.as_deref(),
        loaded.base_dir(),
        &|name| std::env::var(name).ok(),
    )?;
    if let Some(dir) = &dir {
        crate::exec::compile_cache::prepare(dir)?;
    }
    Ok(dir)
}

/// SIGINT and SIGTERM, counted: the first asks for an orderly stop (teardown with the grace
/// period), the second for an immediate one (every process group SIGKILLed).
#[derive(Clone)]
pub(crate) struct Interrupts(watch::Receiver<u32>);

impl Interrupts {
    /// Start counting signals (from now until the runtime ends).
    pub(crate) fn listen() -> Interrupts {
        let (tx, rx) = watch::channel(0u32);
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                tx.send_modify(|n| *n += 1);
            }
        });
        Interrupts(rx)
    }

    /// The load generator's stop, following these signals.
    pub(crate) fn as_load_stop(&self) -> crate::load::Stop {
        crate::load::Stop::counting(self.0.clone())
    }

    /// A stop was asked for.
    pub(crate) fn requested(&self) -> bool {
        *self.0.borrow() >= 1
    }

    /// Resolves at the first signal.
    pub(crate) async fn first(&mut self) {
        let _ = self.0.wait_for(|n| *n >= 1).await;
    }

    /// Resolves at the second signal: stop waiting for anything.
    pub(crate) async fn second(&mut self) {
        self.at_least(2).await;
    }

    /// Resolves once `count` signals have come.
    pub(crate) async fn at_least(&mut self, count: u32) {
        let _ = self.0.wait_for(|n| *n >= count).await;
    }
}

/// This vbench executable, to run its `sim-serve`, `proxy` and `reaper` subcommands. When the
/// file was replaced while this process runs (a rebuild, an upgrade), Linux names it
/// `PATH (deleted)`; the new file at `PATH` is the one to run.
fn vbench_exe() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe().context("locating the vbench executable")?;
    let text = exe.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(path) => std::path::PathBuf::from(path),
        None => exe,
    })
}

/// Run the experiment: every selected variant, in plan order. Returns the run folder and how
/// the run ended; an `Err` means the run could not start or its bookkeeping failed.
pub async fn run(
    options: &Options,
    loaded: &LoadedManifest,
    plan: &Plan,
    workload: &cell::Workload,
    probe: std::sync::Arc<dyn GpuProbe>,
    events: &dyn Events,
) -> anyhow::Result<(RunDir, Outcome)> {
    // The signal task only counts; the variant that sees a signal says so.
    let mut interrupted = Interrupts::listen();
    let m = &loaded.manifest;
    let simulated = plan.backend == Backend::Sim;
    let stop = interrupted.clone();
    // Everything but vLLM's version now: that probe imports vLLM (20-30 s on a GPU host), so
    // it runs while the first variant starts, and environment.json follows when it answers.
    let env = Environment::collect(&loaded.path, simulated, &move || stop.requested());
    let stop = interrupted.clone();
    // Held until the run returns.
    let device_claims = claim_devices(options, loaded, plan, probe.as_ref(), &move || {
        stop.requested()
    })?;
    if let Some(unclaimed) = device_claims
        .as_ref()
        .map(|g| &g.unclaimed)
        .filter(|u| !u.is_empty())
    {
        events.warning(&format!(
            "could not claim {} against other vbench runs on this host: a run started beside \
             this one could share them",
            unclaimed.join(", ")
        ));
    }
    let (run_dir, lock, attempt) = match &options.resume {
        Some(dir) => {
            let run_dir = RunDir::open(dir);
            // Taken before anything is checked or written: a second resume of the same run
            // stops here, naming the first.
            let lock = run_dir.lock()?;
            if let Some(warning) = lock.copy_of_live_run(run_dir.path()) {
                events.warning(&warning);
            }
            run_dir.check_resumable(loaded)?;
            stop_leftovers(lock.mark(), options.stop_grace, events)?;
            (run_dir, lock, Attempt::resume(chrono::Local::now()))
        }
        None => {
            let run_dir = RunDir::create(&options.results, &plan.experiment, chrono::Local::now())?;
            let started = run_dir
                .lock()
                .and_then(|lock| run_dir.write_start(loaded, plan).map(|_| lock));
            match started {
                Ok(lock) => (run_dir, lock, Attempt::first()),
                Err(e) => {
                    // A folder without its manifest and plan cannot be resumed or reported:
                    // it is removed (it holds nothing else yet).
                    let _ = std::fs::remove_dir_all(run_dir.path());
                    return Err(e.context(format!(
                        "starting the run folder {} (removed again)",
                        run_dir.path().display()
                    )));
                }
            }
        }
    };
    let reserve = hold_reserve(&run_dir, loaded, plan, options, events);
    let vbench_bin = vbench_exe()?;
    // Everything launched from here on is registered with the reaper, which stops it should
    // this process die before its own teardown (SIGKILL, the OOM killer).
    let _reaper = Reaper::start(&vbench_bin, options.stop_grace)?;
    events.info(&format!(
        "run {}: {} variants, {} cells → {}",
        plan.experiment,
        plan.variants.len(),
        plan.cells.len(),
        run_dir.path().display()
    ));
    if let Some(absent) = &plan.capacity.absent {
        events.warning(&absent.warning());
    }
    for v in &plan.skipped {
        events.warning(&format!(
            "{} ({}) is not run: it {}",
            v.id, v.label, v.reason
        ));
    }

    let vbench_bin = vbench_bin.display().to_string();
    let gpu_pool = gpu_pool(m, plan);
    let cpu_pool = cpu_pool(m, plan);
    let compile_cache = compile_cache(loaded, plan)?;
    if let Some(dir) = &compile_cache {
        events.info(&format!(
            "compile cache: {} (target.compile_cache)",
            dir.display()
        ));
    }
    let slurm_options = m.target.slurm.clone().unwrap_or_default();
    let allocation = match plan.backend {
        Backend::Slurm => {
            let alloc = crate::exec::slurm::acquire(
                &slurm_options,
                &format!("vbench-{}", plan.experiment),
            )?;
            events.info(&format!(
                "slurm job {} ({}): {}",
                alloc.job_id,
                if alloc.owned {
                    "allocated by vbench"
                } else {
                    "current allocation"
                },
                alloc.nodes_line()
            ));
            if !alloc.owned && alloc.nodes.len() != slurm_options.nodes as usize {
                events.warning(&format!(
                    "the allocation has {} node(s), the manifest plans for {} \
                     (target.slurm.nodes): placing on the allocation's",
                    alloc.nodes.len(),
                    slurm_options.nodes
                ));
            }
            Some(alloc)
        }
        _ => None,
    };
    let mut environment = PendingEnvironment::start(
        env,
        attempt,
        &run_dir,
        allocation.as_ref(),
        (!simulated).then(|| {
            (
                m.target.vllm_bin.clone(),
                crate::exec::process::resolve_env(&m.target.env),
                interrupted.clone(),
            )
        }),
    )?;
    let target = deploy::Target {
        slurm: allocation.as_ref().map(|a| deploy::SlurmTarget {
            job_id: &a.job_id,
            nodes: &a.nodes,
            placement: slurm_options.placement,
            cpus_per_instance: slurm_options.cpus_per_instance,
        }),
        backend: plan.backend,
        accelerator: plan.accelerator,
        vllm_bin: &m.target.vllm_bin,
        vbench_bin,
        sim_profile: m.target.sim_profile.as_deref(),
        sim_tokenizer: deploy::local_tokenizer(m, loaded.base_dir()),
        gpu_pool,
        cpu_pool,
        cpu_cores_per_instance: m.target.cpu_cores_per_instance,
        model: &m.model,
        served_model_name: &plan.served_model_name,
        manifest_dir: loaded.base_dir(),
        compile_cache: compile_cache.as_deref(),
        api_key_env: m.target.api_key_env.as_deref(),
    };
    let mut ports = PortAllocator::default().with_node_range(slurm_options.port_range);
    let mut failed = Vec::new();
    let selected: Vec<&Variant> = plan
        .variants
        .iter()
        .filter(|v| options.selects(&v.id))
        .collect();
    let mut stopped = false;
    let mut disk_full = None;
    for (i, variant) in selected.iter().enumerate() {
        if interrupted.requested() {
            stopped = true;
            break;
        }
        events.info(&format!(
            "[{}/{}] {} ({})",
            i + 1,
            selected.len(),
            variant.id,
            variant.label
        ));
        let variant_dir = run_dir.variant(&variant.id);
        let complete = match plan.search {
            Some(_) => variant_dir.search_done(),
            None => plan
                .cells_of(&variant.id)
                .all(|c| variant_dir.is_measured(c)),
        };
        if complete {
            events.info("  every rate already measured: skipped");
            variant_dir.clear_failed()?;
            continue;
        }
        // A disk filled by something else since the start: better said now than after
        // minutes of start-up.
        let need = disk_need(loaded, plan, &|id| id == variant.id, Some(&run_dir));
        if let Some(why) = short_of_space(run_dir.path(), need.total, "its cells") {
            disk_full = Some(why);
            break;
        }
        variant_dir.create()?;
        let attempt = variant_dir.next_attempt(chrono::Local::now());
        let run = variant::VariantRun {
            options,
            loaded,
            plan,
            target: &target,
            variant,
            dir: &variant_dir,
            run_mark: lock.mark(),
            attempt: &attempt,
            workload,
            probe: probe.clone(),
            events,
            simulated,
            reserve: reserve.as_ref(),
        };
        match run.run(&mut ports, &mut interrupted).await {
            Ok(()) => variant_dir.clear_failed()?,
            Err(VariantError::Interrupted) => {
                stopped = true;
                break;
            }
            Err(VariantError::Failed(e)) => {
                events.info(&format!("  variant {} failed: {e:#}", variant.id));
                let _ = variant_dir.write_failed(&attempt, &format!("{e:#}"));
                failed.push(variant.id.clone());
                // Every later variant would start only to find no room for its results.
                if crate::results::store::is_disk_full(&e) {
                    disk_full = Some(format!("{e:#}"));
                    break;
                }
            }
        }
    }
    drop(reserve);
    let recorded = environment.settle().await?;
    if let (Some(_), Some(now)) = (&options.resume, &recorded) {
        // A resume elsewhere or with other versions: said now, and in the report.
        if let Ok(Some(first)) = run_dir.read_environment() {
            let changed = now.differences_from(&first);
            if !changed.is_empty() {
                events.warning(&format!(
                    "this resume differs from the run's first attempt in {}: cells measured by \
                     different attempts may not be comparable (the report lists each attempt's \
                     environment)",
                    changed.join(", ")
                ));
            }
        }
    }
    let outcome = if stopped {
        Outcome::Interrupted
    } else if let Some(why) = disk_full {
        Outcome::DiskFull { why, failed }
    } else if failed.is_empty() {
        Outcome::Complete
    } else {
        Outcome::VariantsFailed(failed)
    };
    Ok((run_dir, outcome))
}

/// The GPUs variants are placed on, in order: `target.gpus`, else every GPU found.
fn gpu_pool(m: &manifest::Manifest, plan: &Plan) -> Vec<u32> {
    match &m.target.gpus {
        manifest::Gpus::List(l) => l.clone(),
        _ => (0..plan.capacity.gpus.unwrap_or(0)).collect(),
    }
}

/// On a local target, the devices this run's variants will take (the first of the pool, as
/// many as its largest variant needs: GPUs on CUDA, cores on the CPU build), claimed for the
/// whole run against every other vbench on this host ([`crate::exec::claims`]).
fn claim_devices(
    options: &Options,
    loaded: &LoadedManifest,
    plan: &Plan,
    probe: &dyn GpuProbe,
    stop: &dyn Fn() -> bool,
) -> Result<Option<Claims>, Claimed> {
    if plan.backend != Backend::Local {
        return Ok(None);
    }
    // Instance slots (GPUs, or CPU-build instances of `cpu_cores_per_instance` cores each).
    let slots = plan
        .variants
        .iter()
        .filter(|v| options.selects(&v.id))
        .map(|v| v.gpus as usize)
        .max()
        .unwrap_or(0);
    let holder = match &options.resume {
        Some(run) => format!("vbench apply --resume {}", run.display()),
        None => format!(
            "vbench apply {}, results in {}",
            loaded.path.display(),
            options.results.join(&plan.experiment).display()
        ),
    };
    let m = &loaded.manifest;
    match plan.accelerator {
        Accelerator::Cuda => {
            let pool = gpu_pool(m, plan);
            crate::exec::gpus::claim(probe, &pool[..slots.min(pool.len())], &holder, stop).map(Some)
        }
        Accelerator::Cpu => {
            let pool = cpu_pool(m, plan);
            let cores = slots * m.target.cpu_cores_per_instance as usize;
            crate::exec::claims::claim_cpu_cores(&pool[..cores.min(pool.len())], &holder).map(Some)
        }
    }
}

/// The CPU cores instances are pinned to, in order: `target.cpus`, else every core found.
fn cpu_pool(m: &manifest::Manifest, plan: &Plan) -> Vec<u32> {
    match &m.target.cpus {
        Some(l) => l.clone(),
        None => (0..plan.capacity.cpu_cores.unwrap_or(0)).collect(),
    }
}

/// The run's environment record, written as soon as the vLLM version probe (started in the
/// background) answers: while the first variant starts, not before it.
struct PendingEnvironment {
    /// Writes the record; resolves with it, once written.
    task: Option<tokio::task::JoinHandle<anyhow::Result<Environment>>>,
    /// The record written at once (nothing to wait for).
    written: Option<Environment>,
}

impl PendingEnvironment {
    /// On Slurm the GPUs are read on every node of `allocation` (before any variant holds
    /// them) and vLLM's versions on its first, not on this host, which may be a login node.
    fn start(
        mut env: Environment,
        attempt: Attempt,
        run_dir: &RunDir,
        allocation: Option<&crate::exec::slurm::Allocation>,
        vllm: Option<(
            manifest::VllmCommand,
            std::collections::BTreeMap<String, String>,
            Interrupts,
        )>,
    ) -> anyhow::Result<Self> {
        let via = match allocation {
            Some(a) => {
                let stop = vllm.as_ref().map(|(_, _, stop)| stop.clone());
                env.read_allocation(a, &move || stop.as_ref().is_some_and(Interrupts::requested))
            }
            None => Vec::new(),
        };
        // Nothing to wait for (the simulator): written at once.
        let Some((cmd, probe_env, stop)) = vllm else {
            run_dir.write_environment(&attempt, &env)?;
            return Ok(PendingEnvironment {
                task: None,
                written: Some(env),
            });
        };
        let run_dir = RunDir::open(run_dir.path());
        let task = tokio::spawn(async move {
            let mut env = env;
            let probe = tokio::task::spawn_blocking(move || {
                let stopped = move || stop.requested();
                (
                    Environment::vllm_version(&cmd, &probe_env, &via, &stopped),
                    Environment::python_packages(&cmd, &probe_env, &via, &stopped),
                )
            });
            if let Ok((version, packages)) = probe.await {
                env.vllm_version = version;
                env.packages = packages;
            }
            run_dir.write_environment(&attempt, &env).map(|()| env)
        });
        Ok(PendingEnvironment {
            task: Some(task),
            written: None,
        })
    }

    /// Wait until the record is written (the probe gives up at a signal); the record.
    async fn settle(&mut self) -> anyhow::Result<Option<Environment>> {
        match self.task.take() {
            Some(task) => task.await.context("writing environment.json")?.map(Some),
            None => Ok(self.written.take()),
        }
    }
}

/// Processes an earlier apply of this run left behind (it and its reaper died): named, then
/// stopped, before anything new starts. One that cannot be stopped is an error.
fn stop_leftovers(mark: &str, grace: Duration, events: &dyn Events) -> anyhow::Result<()> {
    let found = crate::exec::leftovers::find(mark);
    if found.is_empty() {
        return Ok(());
    }
    events.warning(&format!(
        "an earlier apply of this run left {} process(es) running; stopping them:",
        found.len()
    ));
    for l in &found {
        events.warning(&format!("  {l}"));
    }
    let still = crate::exec::leftovers::stop(&found, grace);
    if !still.is_empty() {
        bail!(
            "could not stop {} process(es) of an earlier apply: {}",
            still.len(),
            still
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(())
}

/// The error `apply` ends with for an outcome that is not complete (`None` when complete).
/// Both say how to go on: `--resume` measures only what is missing.
pub fn outcome_error(outcome: &Outcome, run_dir: &RunDir) -> Option<anyhow::Error> {
    let run = run_dir.path().display();
    let resume = format!(
        "`vbench apply` with the same manifest and --set options and `--resume {run}` runs \
         only what is missing"
    );
    match outcome {
        Outcome::Complete => None,
        Outcome::VariantsFailed(ids) => Some(anyhow!(
            "{} variant(s) failed: {} (see their logs/ under {run}); once fixed, {resume}",
            ids.len(),
            ids.join(", "),
        )),
        Outcome::Interrupted => Some(anyhow!(
            "interrupted: every process stopped; results written so far are kept; {resume}"
        )),
        Outcome::DiskFull { why, failed } => {
            let failed = match failed.as_slice() {
                [] => String::new(),
                ids => format!(" ({} failed: {})", ids.len(), ids.join(", ")),
            };
            Some(anyhow!(
                "the run stopped: the results disk is full{failed}: {why}; every process \
                 stopped and every result written so far is kept; once that file system has room, {resume}"
            ))
        }
    }
}
