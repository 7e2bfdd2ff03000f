//! `vbench apply`: plan, then for each variant launch → health → smoke → sweep rates →
//! teardown → verify GPUs free; results written as each cell finishes.
//!
//! Ctrl-C (or SIGTERM) at any moment stops the load, tears every process group down and keeps
//! every result already written; the run exits 130. A crashed component fails its variant
//! (exit 1 at the end) but not the variants after it.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::json;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::manifest::{self, Accelerator, Backend, DatasetKind, LoadedManifest, ManifestArgs};
use crate::plan::{self, Cell, Plan, Variant};
use crate::results::store::{write_bytes_new, write_json_new};
use crate::results::RunResult;

use super::deploy::{self, Component, DeploymentSpec};
use super::gpus::{self, GpuProbe, NvidiaSmiProbe};
use super::metrics;
use super::ports::PortAllocator;
use super::process::{StopReport, Supervised};
use super::rundir;

/// Run an experiment.
#[derive(Debug, Clone, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// Folder that holds `<experiment>/<timestamp>/` run folders.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Run only these variants (ids from `vbench plan`); repeatable.
    #[arg(long = "only", value_name = "VARIANT_ID")]
    pub only: Vec<String>,
    /// Grace period in seconds between SIGTERM and SIGKILL at teardown.
    #[arg(long, default_value_t = 30.0)]
    pub stop_grace_s: f64,
    /// Continue an interrupted or failed run in its folder: cells whose result file exists are
    /// skipped, the rest run. The manifest and overrides must be the ones the run started with.
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// Skip the report at the end (run `vbench report RUN_DIR` later).
    #[arg(long)]
    pub no_report: bool,
    /// At the end, print what the run produced as JSON on stdout (run folder, report, outcome,
    /// and every planned cell with its result's counts), for scripts and CI.
    #[arg(long)]
    pub json: bool,
}

/// Everything one cell's load needs.
pub struct CellRequest<'a> {
    pub loaded: &'a LoadedManifest,
    pub plan: &'a Plan,
    pub variant: &'a Variant,
    pub cell: &'a Cell,
    pub entry_url: &'a str,
    pub simulated: bool,
}

/// Drives the load of one cell; the load generator implements it, tests may fake it.
pub trait CellRunner: Sync {
    fn run(
        &self,
        request: CellRequest<'_>,
    ) -> impl Future<Output = anyhow::Result<RunResult>> + Send;
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
}

#[derive(Debug)]
enum VariantError {
    Interrupted,
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for VariantError {
    fn from(e: anyhow::Error) -> Self {
        VariantError::Failed(e)
    }
}

pub fn run_apply(args: ApplyArgs) -> Result<()> {
    let loaded = manifest::load(&args.manifest.manifest, &args.manifest.set)?;
    let capacity = plan::capacity::discover(&loaded.manifest.target);
    let plan = plan::resolve(&loaded, &capacity)?;
    preflight(&loaded, &plan).map_err(Error::bad_input)?;
    for id in &args.only {
        if !plan.variants.iter().any(|v| &v.id == id) {
            let ids: Vec<&str> = plan.variants.iter().map(|v| v.id.as_str()).collect();
            return Err(Error::bad_input(anyhow!(
                "--only {id}: no such variant; the plan has {}",
                ids.join(", ")
            )));
        }
    }
    let runtime = tokio::runtime::Runtime::new().map_err(Error::failed)?;
    let runner = super::runner::LoadGenRunner::default();
    let (run_dir, outcome) = runtime
        .block_on(apply(&args, &loaded, &plan, &runner, &NvidiaSmiProbe))
        .map_err(Error::failed)?;
    eprintln!("results: {}", run_dir.display());
    let mut report = None;
    if !args.no_report {
        match super::runner::render_report(&run_dir) {
            Ok(()) => report = Some(run_dir.join("report").join("index.html")),
            Err(e) => eprintln!("warning: report not written: {e:#}"),
        }
    }
    if args.json {
        let doc = run_json(&plan, &run_dir, report.as_deref(), &outcome);
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(Error::failed)?
        );
    }
    match outcome {
        Outcome::Complete => Ok(()),
        Outcome::VariantsFailed(ids) => Err(Error::failed(anyhow!(
            "{} variant(s) failed: {} (see their logs/ under {})",
            ids.len(),
            ids.join(", "),
            run_dir.display()
        ))),
        Outcome::Interrupted => {
            eprintln!("interrupted: every process stopped; results written so far are kept");
            std::process::exit(130);
        }
    }
}

/// `apply --json`: the run folder, the report, the outcome, and each planned cell as found on
/// disk (a cell without a result file is `measured: false`).
fn run_json(
    plan: &Plan,
    run_dir: &Path,
    report: Option<&Path>,
    outcome: &Outcome,
) -> serde_json::Value {
    let (state, failed) = match outcome {
        Outcome::Complete => ("complete", Vec::new()),
        Outcome::VariantsFailed(ids) => ("variants_failed", ids.clone()),
        Outcome::Interrupted => ("interrupted", Vec::new()),
    };
    let cells: Vec<serde_json::Value> = plan
        .cells
        .iter()
        .map(|c| {
            let path = run_dir.join(&c.variant_id).join(&c.result_file);
            let result: Option<crate::results::RunResult> = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            json!({
                "variant_id": c.variant_id,
                "rate": c.rate.label(),
                "result_file": path,
                "measured": result.is_some(),
                "completed": result.as_ref().map(|r| r.completed),
                "failed": result.as_ref().map(|r| r.failed),
                "request_throughput": result.as_ref().map(|r| r.request_throughput),
                "request_goodput": result.as_ref().and_then(|r| r.request_goodput),
                "client_fell_behind": result.as_ref().map(|r| r.vbench.client.client_fell_behind),
            })
        })
        .collect();
    json!({
        "run_dir": run_dir,
        "report": report,
        "outcome": state,
        "failed_variants": failed,
        "cells": cells,
    })
}

/// Checks that need the file system, before anything starts.
fn preflight(loaded: &LoadedManifest, plan: &Plan) -> anyhow::Result<()> {
    let m = &loaded.manifest;
    if matches!(m.dataset.kind, DatasetKind::Sharegpt | DatasetKind::Jsonl) {
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

/// Signals → a watch channel the executor checks at every await point that can take long.
fn interrupt_channel() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("\nstopping: tearing down every process (results written so far are kept)");
        let _ = tx.send(true);
    });
    rx
}

async fn until_interrupted(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// The executor proper, generic over the load runner and the GPU probe for tests.
pub async fn apply<R: CellRunner>(
    args: &ApplyArgs,
    loaded: &LoadedManifest,
    plan: &Plan,
    runner: &R,
    probe: &dyn GpuProbe,
) -> anyhow::Result<(PathBuf, Outcome)> {
    let mut interrupted = interrupt_channel();
    let m = &loaded.manifest;
    let simulated = plan.backend == Backend::Sim;
    let env = rundir::environment(
        &loaded.path,
        (!simulated).then_some((&m.target.vllm_bin, &m.target.env)),
        simulated,
    );
    let run_dir = match &args.resume {
        Some(dir) => {
            rundir::check_resumable(dir, loaded)?;
            let stamp = chrono::Local::now().format("%Y%m%d_%H%M%S");
            write_json_new(&dir.join(format!("environment-resume-{stamp}.json")), &env)?;
            dir.clone()
        }
        None => {
            let dir = rundir::create(&args.results, &plan.experiment, chrono::Local::now())?;
            write_bytes_new(&dir.join("manifest.toml"), loaded.original_text.as_bytes())?;
            write_json_new(&dir.join("plan.json"), plan)?;
            write_json_new(&dir.join("environment.json"), &env)?;
            dir
        }
    };
    eprintln!(
        "run {}: {} variants, {} cells → {}",
        plan.experiment,
        plan.variants.len(),
        plan.cells.len(),
        run_dir.display()
    );

    let vbench_bin = std::env::current_exe()
        .context("locating the vbench executable")?
        .display()
        .to_string();
    let gpu_pool: Vec<u32> = match &m.target.gpus {
        manifest::Gpus::List(l) => l.clone(),
        _ => (0..plan.capacity.gpus.unwrap_or(0)).collect(),
    };
    let cpu_pool: Vec<u32> = match &m.target.cpus {
        Some(l) => l.clone(),
        None => (0..plan.capacity.cpu_cores.unwrap_or(0)).collect(),
    };
    let allocation = match plan.backend {
        Backend::Slurm => {
            let options = m.target.slurm.clone().unwrap_or_default();
            let alloc = super::slurm::acquire(&options, &format!("vbench-{}", plan.experiment))?;
            eprintln!(
                "slurm job {} ({}): {}",
                alloc.job_id,
                if alloc.owned {
                    "allocated by vbench"
                } else {
                    "current allocation"
                },
                alloc
                    .nodes
                    .iter()
                    .map(|n| format!("{} ({} GPUs)", n.name, n.gpus))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Some(alloc)
        }
        _ => None,
    };
    let target = deploy::Target {
        slurm: allocation
            .as_ref()
            .map(|a| (a.job_id.as_str(), a.nodes.as_slice())),
        slurm_cpus_per_instance: m.target.slurm.as_ref().map_or(4, |s| s.cpus_per_instance),
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
    };
    let mut ports = PortAllocator::default();
    let mut failed = Vec::new();
    let selected: Vec<&Variant> = plan
        .variants
        .iter()
        .filter(|v| args.only.is_empty() || args.only.contains(&v.id))
        .collect();
    for (i, variant) in selected.iter().enumerate() {
        if *interrupted.borrow() {
            return Ok((run_dir, Outcome::Interrupted));
        }
        eprintln!(
            "[{}/{}] {} ({})",
            i + 1,
            selected.len(),
            variant.id,
            variant.label
        );
        let variant_dir = run_dir.join(&variant.id);
        if plan
            .cells_of(&variant.id)
            .all(|c| variant_dir.join(&c.result_file).exists())
        {
            eprintln!("  every rate already measured: skipped");
            continue;
        }
        std::fs::create_dir_all(variant_dir.join("logs"))?;
        let outcome = run_variant(
            args,
            loaded,
            plan,
            &target,
            variant,
            &variant_dir,
            &mut ports,
            runner,
            probe,
            simulated,
            &mut interrupted,
        )
        .await;
        match outcome {
            Ok(()) => {}
            Err(VariantError::Interrupted) => return Ok((run_dir, Outcome::Interrupted)),
            Err(VariantError::Failed(e)) => {
                eprintln!("  variant {} failed: {e:#}", variant.id);
                let _ = write_bytes_new(
                    &variant_dir.join("FAILED.txt"),
                    format!("{e:#}\n").as_bytes(),
                );
                failed.push(variant.id.clone());
            }
        }
    }
    let outcome = if failed.is_empty() {
        Outcome::Complete
    } else {
        Outcome::VariantsFailed(failed)
    };
    Ok((run_dir, outcome))
}

#[allow(clippy::too_many_arguments)]
async fn run_variant<R: CellRunner>(
    args: &ApplyArgs,
    loaded: &LoadedManifest,
    plan: &Plan,
    target: &deploy::Target<'_>,
    variant: &Variant,
    variant_dir: &Path,
    ports: &mut PortAllocator,
    runner: &R,
    probe: &dyn GpuProbe,
    simulated: bool,
    interrupted: &mut watch::Receiver<bool>,
) -> Result<(), VariantError> {
    let spec = deploy::render(target, variant, variant_dir, ports)?;
    // Local GPUs only: nvidia-smi here knows nothing of a Slurm node's (whose allocation is
    // exclusive anyway).
    if !spec.gpus.is_empty() && target.slurm.is_none() {
        gpus::ensure_free(probe, &spec.gpus)?;
    }
    // A resumed variant keeps the first attempt's records and adds its own beside them.
    let attempt = if variant_dir.join("deployment.json").exists() {
        format!("-resume-{}", chrono::Local::now().format("%Y%m%d_%H%M%S"))
    } else {
        String::new()
    };
    write_json_new(
        &variant_dir.join(format!("deployment{attempt}.json")),
        &deployment_record(&spec, variant),
    )?;
    for c in &spec.components {
        for (path, text) in &c.files {
            // A resumed variant finds its config files from the first attempt.
            if std::fs::read_to_string(path).ok().as_deref() != Some(text.as_str()) {
                write_bytes_new(path, text.as_bytes())?;
            }
        }
    }
    let grace = Duration::from_secs_f64(args.stop_grace_s.max(0.1));
    let mut running: Vec<(Component, Supervised)> = Vec::new();
    let result = async {
        // Instances first, all at once (vLLM start-up dominates); the proxy once they are healthy.
        let (instances, proxies): (Vec<_>, Vec<_>) =
            spec.components.iter().partition(|c| c.role != "proxy");
        for group in [instances, proxies] {
            if group.is_empty() {
                continue;
            }
            for c in &group {
                let log = variant_dir.join("logs").join(format!("{}.log", c.name));
                let proc = Supervised::spawn(&c.spec, &log)?;
                running.push(((*c).clone(), proc));
            }
            let names: Vec<&str> = group.iter().map(|c| c.name.as_str()).collect();
            let t0 = Instant::now();
            wait_healthy(
                &mut running,
                loaded.manifest.target.health_timeout_s,
                interrupted,
            )
            .await?;
            eprintln!(
                "  healthy: {} ({:.1}s)",
                names.join(", "),
                t0.elapsed().as_secs_f64()
            );
        }
        smoke(&spec.entry_url, &plan.served_model_name).await?;
        if variant.mode == crate::manifest::Mode::Nixl {
            verify_kv_transfer(&running).await?;
        }
        for cell in plan.cells_of(&variant.id) {
            if variant_dir.join(&cell.result_file).exists() {
                eprintln!(
                    "  rate {:>6} req/s: already measured, skipped",
                    cell.rate.label()
                );
                continue;
            }
            check_alive(&mut running)?;
            let request = CellRequest {
                loaded,
                plan,
                variant,
                cell,
                entry_url: &spec.entry_url,
                simulated,
            };
            let t0 = Instant::now();
            let metrics_dir = variant_dir.join("metrics");
            let tag = format!("{}qps", cell.rate.label());
            let instances: Vec<(String, String)> = running
                .iter()
                .filter(|(c, _)| c.role != "proxy")
                .map(|(c, _)| (c.name.clone(), c.url.clone()))
                .collect();
            let before =
                metrics::snapshot(&instances, &metrics_dir, &format!("{tag}-before")).await;
            let (stop_sampling, sampler) =
                metrics::spawn_sampler(instances.clone(), Duration::from_secs(1));
            let outcome = tokio::select! {
                r = runner.run(request) => r.map_err(VariantError::Failed),
                _ = until_interrupted(interrupted) => Err(VariantError::Interrupted),
                e = watch_crash(&mut running) => Err(VariantError::Failed(e)),
            };
            let _ = stop_sampling.send(true);
            if let Ok(samples) = sampler.await {
                let file = metrics_dir.join(format!("{tag}-samples.jsonl"));
                let _ = metrics::write_samples(&file, &samples);
            }
            let mut result = outcome?;
            let after = metrics::snapshot(&instances, &metrics_dir, &format!("{tag}-after")).await;
            if let Some((hits, total)) = metrics::prefix_cache_share(&before, &after) {
                if hits > PREFIX_CACHE_WARN_SHARE * total {
                    let note = format!(
                        "{:.0} % of this rate's prompt tokens ({hits:.0} of {total:.0}) came from \
                         the servers' prefix cache: latencies are better than for prompts the \
                         servers have not seen",
                        100.0 * hits / total
                    );
                    eprintln!("  warning: {note}");
                    result.vbench.load.notes.push(note);
                }
            }
            let path = variant_dir.join(&cell.result_file);
            write_json_new(&path, &result)?;
            let attained = super::runner::slo_objectives(&loaded.manifest.slo);
            let requests = &result.vbench.requests;
            let met = requests.iter().filter(|r| attained.met_by(r)).count();
            eprintln!(
                "  rate {:>6} req/s: {} ok, {} failed, SLO met by {:.1} % in {:.1}s → {}",
                cell.rate.label(),
                result.completed,
                result.failed,
                100.0 * met as f64 / requests.len().max(1) as f64,
                t0.elapsed().as_secs_f64(),
                cell.result_file
            );
            let client = &result.vbench.client;
            if client.client_fell_behind {
                eprintln!(
                    "  warning: the load generator fell behind its schedule at this rate (lag \
                     p99 {:.1} ms): its latencies include the client's own delay",
                    client.lag_p99_ms
                );
            }
        }
        Ok::<(), VariantError>(())
    }
    .await;

    // Teardown whatever happened: proxy first (no new work reaches instances), then instances.
    let mut reports: Vec<StopReport> = Vec::new();
    while let Some((_, mut proc)) = running.pop() {
        reports.push(proc.stop(grace).await);
    }
    let killed: Vec<&str> = reports
        .iter()
        .filter(|r| r.killed)
        .map(|r| r.name.as_str())
        .collect();
    if !killed.is_empty() {
        eprintln!("  teardown: SIGKILL needed for {}", killed.join(", "));
    }
    let _ = write_json_new(
        &variant_dir.join(format!("teardown{attempt}.json")),
        &reports,
    );
    if let Some((job, _)) = target.slurm {
        super::slurm::wait_steps_gone(job, Duration::from_secs(60)).await?;
    }
    if !spec.gpus.is_empty() {
        gpus::wait_free(probe, &spec.gpus, Duration::from_secs(60)).await?;
    }
    result
}

/// Above this share of prompt tokens served from the prefix cache in a rate, apply warns and
/// notes it in the result. vbench's own prompts never repeat across rates, so a share this
/// high means the dataset repeats prefixes (or has too few prompts for the sweep).
const PREFIX_CACHE_WARN_SHARE: f64 = 0.10;

fn deployment_record(spec: &DeploymentSpec, variant: &Variant) -> serde_json::Value {
    let components: Vec<_> = spec
        .components
        .iter()
        .map(|c| {
            let env: std::collections::BTreeMap<_, _> = c
                .spec
                .env
                .iter()
                .map(|(k, v)| (k.clone(), rundir::redact(k, v)))
                .collect();
            json!({
                "name": c.name,
                "role": c.role,
                "url": c.url,
                "program": c.spec.program,
                "args": c.spec.args,
                "env": env,
                "gpus": c.gpus,
                "cpus": c.cpus,
                "config_files": c.files.keys().collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "variant": variant,
        "entry_url": spec.entry_url,
        "gpus": spec.gpus,
        "components": components,
    })
}

/// A component that exited while it should be serving fails the variant, with its log tail.
fn check_alive(running: &mut [(Component, Supervised)]) -> anyhow::Result<()> {
    for (c, p) in running.iter_mut() {
        if let Some(status) = p.exited() {
            bail!(
                "{} exited ({status}); last log lines:\n{}",
                c.name,
                p.log_tail(20)
            );
        }
    }
    Ok(())
}

async fn watch_crash(running: &mut [(Component, Supervised)]) -> anyhow::Error {
    loop {
        if let Err(e) = check_alive(running) {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_healthy(
    running: &mut [(Component, Supervised)],
    timeout_s: f64,
    interrupted: &mut watch::Receiver<bool>,
) -> Result<(), VariantError> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs_f64(timeout_s);
    let mut healthy = vec![false; running.len()];
    let spinner = crate::load::progress::Spinner::on_terminal("starting");
    loop {
        if *interrupted.borrow() {
            return Err(VariantError::Interrupted);
        }
        check_alive(running)?;
        for (i, (c, _)) in running.iter().enumerate() {
            if !healthy[i] {
                healthy[i] = client
                    .get(format!("{}/health", c.url))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
            }
        }
        if healthy.iter().all(|h| *h) {
            return Ok(());
        }
        let waiting: Vec<&str> = running
            .iter()
            .zip(&healthy)
            .filter(|(_, h)| !**h)
            .map(|((c, _), _)| c.name.as_str())
            .collect();
        spinner.set_message(format!("waiting for /health of {}", waiting.join(", ")));
        if Instant::now() >= deadline {
            let waiting: Vec<String> = running
                .iter()
                .zip(&healthy)
                .filter(|(_, h)| !**h)
                .map(|((c, p), _)| {
                    format!(
                        "{} ({}); last log lines:\n{}",
                        c.name,
                        c.url,
                        p.log_tail(10)
                    )
                })
                .collect();
            return Err(VariantError::Failed(anyhow!(
                "not healthy after {timeout_s}s (target.health_timeout_s): {}",
                waiting.join("\n")
            )));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = until_interrupted(interrupted) => return Err(VariantError::Interrupted),
        }
    }
}

/// After the smoke request, every decoder must have received its prompt by KV transfer: a
/// proxy that drops `kv_transfer_params` makes decoders re-prefill silently, which would
/// measure the wrong system. vLLM versions without the per-source counter are only warned about.
async fn verify_kv_transfer(running: &[(Component, Supervised)]) -> anyhow::Result<()> {
    let mut external = 0.0;
    let mut local = 0.0;
    for (c, _) in running.iter().filter(|(c, _)| c.role == "decode") {
        match metrics::kv_sources(&c.url).await {
            Some((e, l)) => {
                external += e;
                local += l;
            }
            None => {
                eprintln!("  warning: {} exports no prompt_tokens_by_source_total; KV transfer not verified", c.name);
                return Ok(());
            }
        }
    }
    if external == 0.0 {
        bail!(
            "the smoke request reached the decoders without a KV transfer ({local} prompt tokens \
             computed locally, 0 transferred): check the proxy and --kv-transfer-config"
        );
    }
    eprintln!("  KV transfer verified: {external} prompt tokens arrived by transfer");
    Ok(())
}

/// One short streaming request through the whole path before measuring anything. Its prompt
/// spans several KV blocks (16 tokens each by default), so the decoders' transfer counter moves
/// even for a connector that only transfers full blocks.
async fn smoke(entry_url: &str, model: &str) -> anyhow::Result<()> {
    let prompt = "Hello from the vbench smoke test. ".repeat(8);
    let body = json!({"model": model, "prompt": prompt, "max_tokens": 4, "stream": true,
                      "stream_options": {"include_usage": true}});
    let resp = reqwest::Client::new()
        .post(format!("{entry_url}/v1/completions"))
        .json(&body)
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .context("smoke request")?;
    let status = resp.status();
    let text = resp.text().await.context("smoke request body")?;
    if !status.is_success() || !text.contains("data:") {
        bail!(
            "smoke request to {entry_url} failed: HTTP {status}: {}",
            text.chars().take(300).collect::<String>()
        );
    }
    Ok(())
}
