//! One variant from launch to teardown: render its processes, refuse busy GPUs, record the
//! deployment, start instances then the proxy, check health and the path, run each rate that
//! has no result yet (sampling the servers' `/metrics` around and during it), and tear
//! everything down whatever happened.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use super::health::{self, Running};
use super::search::{BatchOutcome, Probe, Search, Step, Verdict};
use super::{cache, gpu, queue, warnings};
use super::{cell, Events, Interrupts, Options, VariantError};
use crate::exec::deploy::{self, Component, ComponentRole, DeploymentSpec};
use crate::exec::gpu_telemetry;
use crate::exec::gpus::{self, GpuProbe};
use crate::exec::metrics;
use crate::exec::ports::PortAllocator;
use crate::exec::process::{StopReport, Supervised};
use crate::load::RunResult;
use crate::manifest::Rate;
use crate::manifest::{LoadedManifest, Mode, ProxyKind, StartOrder};
use crate::plan::search::{batch_file_name, SearchSpec};
use crate::plan::{Cell, Pace, Plan, RoleKind, Variant};
use crate::results::rundir::{Attempt, CellTiming, VariantDir, VariantTiming};
use crate::results::store::{DiskFull, SpaceReserve};

/// The grace period at teardown for a component known to be dead (it logged a fatal line or
/// its `/health` hung): vLLM's API server can outlive its engine and ignore SIGTERM, and
/// nothing it holds is worth the full grace of GPU time.
const DEAD_GRACE: Duration = Duration::from_secs(3);

/// `prefill-0 on node1 (http://10.77.0.11:20000), ...`: where each Slurm step runs.
fn placement_line(spec: &DeploymentSpec) -> String {
    spec.components
        .iter()
        .filter_map(|c| Some(format!("{} on {} ({})", c.name, c.node.as_ref()?, c.url)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Everything one variant's run reads.
pub(crate) struct VariantRun<'a> {
    pub options: &'a Options,
    pub loaded: &'a LoadedManifest,
    pub plan: &'a Plan,
    pub target: &'a deploy::Target<'a>,
    pub variant: &'a Variant,
    pub dir: &'a VariantDir,
    /// The run folder's mark, carried by every process this run starts.
    pub run_mark: &'a str,
    /// Which attempt at this variant (names its records and metrics).
    pub attempt: &'a Attempt,
    pub workload: &'a cell::Workload,
    pub probe: std::sync::Arc<dyn GpuProbe>,
    pub events: &'a dyn Events,
    pub simulated: bool,
    /// The run's disk reserve, given up for a result that finds the disk full.
    pub reserve: Option<&'a SpaceReserve>,
}

impl VariantRun<'_> {
    pub(crate) async fn run(
        &self,
        ports: &mut PortAllocator,
        interrupted: &mut Interrupts,
    ) -> Result<(), VariantError> {
        let mut clock = Clock {
            launched: Instant::now(),
            record: VariantTiming::default(),
        };
        let result = self
            .launch_and_measure(ports, interrupted, &mut clock)
            .await;
        // Recorded whatever happened: a failed attempt's start-up still tells the next plan.
        let estimate = self.estimate_of_attempt(&clock.record);
        let timing = clock.finish(&result, estimate);
        let _ = self.dir.write_timing(self.attempt, &timing);
        if let Some(line) = estimate_line(&timing) {
            self.events.info(&line);
        }
        result
    }

    /// What the plan estimated for the work this attempt did: start-up and teardown, and the
    /// load of the rates it measured (a resume skips the ones measured before).
    fn estimate_of_attempt(&self, record: &VariantTiming) -> Option<(f64, String)> {
        let e = self.plan.estimate.of(&self.variant.id)?;
        let planned = self.plan.cells_of(&self.variant.id).count().max(1);
        let load = if self.plan.search.is_some() {
            // A search's probes are not planned: its estimate is the whole search.
            e.load_s
        } else {
            e.load_s * record.cells.len() as f64 / planned as f64
        };
        Some((e.startup_s + e.teardown_s + load, e.basis.describe()))
    }

    async fn launch_and_measure(
        &self,
        ports: &mut PortAllocator,
        interrupted: &mut Interrupts,
        clock: &mut Clock,
    ) -> Result<(), VariantError> {
        let config_dir = self.dir.config_dir(self.attempt);
        let spec = deploy::render(self.target, self.variant, &config_dir, ports)?;
        if self.target.slurm.is_some() {
            self.events
                .info(&format!("  placement: {}", placement_line(&spec)));
        }
        // Local GPUs only: nvidia-smi here knows nothing of a Slurm node's (whose allocation is
        // exclusive anyway).
        if !spec.gpus.is_empty() && self.target.slurm.is_none() {
            gpus::ensure_free(self.probe.as_ref(), &spec.gpus)?;
        }
        // A resumed variant keeps the first attempt's records and adds its own beside them.
        let attempt = self.attempt;
        self.dir
            .write_deployment(attempt, &deployment_record(&spec, self.variant))?;
        for c in &spec.components {
            for (path, text) in &c.files {
                self.dir.write_config(path, text)?;
            }
        }
        let mut running: Vec<Running> = Vec::new();
        let result = self
            .serve_and_measure(&spec, &mut running, interrupted, clock)
            .await;
        if matches!(result, Err(VariantError::Interrupted)) {
            self.events
                .warning("stopping: tearing down every process (results written so far are kept)");
        }

        let teardown_started = Instant::now();
        // Teardown can take the grace period and then a minute for the GPUs: say what it waits
        // for (a spinner on a terminal).
        self.events.waiting(&format!(
            "stopping {} process(es) (SIGKILL after {} s)",
            running.len(),
            self.options.stop_grace.as_secs()
        ));
        let reports = self.teardown(&mut running, interrupted).await;
        let _ = self.dir.write_teardown(attempt, &reports);
        // The processes are dead by now: a second signal stops waiting for the allocator and
        // the driver to notice.
        let released = tokio::select! {
            r = self.wait_released(&spec) => r,
            _ = interrupted.second() => {
                self.events.warning(
                    "second signal: not waiting for the GPUs and Slurm steps to be released \
                     (check nvidia-smi or squeue before the next run)",
                );
                Ok(())
            }
        };
        self.events.waiting_done();
        let killed: Vec<&str> = reports
            .iter()
            .filter(|r| r.killed)
            .map(|r| r.name.as_str())
            .collect();
        if !killed.is_empty() {
            self.events.info(&format!(
                "  teardown: SIGKILL needed for {}",
                killed.join(", ")
            ));
        }
        released?;
        clock.record.teardown_s = Some(teardown_started.elapsed().as_secs_f64());
        result
    }

    /// After the processes are gone: until the Slurm steps have ended and the GPUs are free.
    async fn wait_released(&self, spec: &DeploymentSpec) -> Result<(), VariantError> {
        if let Some(slurm) = &self.target.slurm {
            self.events.waiting("waiting for the Slurm steps to end");
            let steps: Vec<&str> = spec
                .components
                .iter()
                .filter(|c| c.node.is_some())
                .map(|c| c.name.as_str())
                .collect();
            crate::exec::slurm::end_steps(
                slurm.job_id,
                &steps,
                Duration::from_secs(5),
                Duration::from_secs(60),
            )
            .await?;
        }
        if !spec.gpus.is_empty() {
            self.events.waiting("waiting for the GPUs to be free");
            gpus::wait_free(&self.probe, &spec.gpus, Duration::from_secs(60)).await?;
        }
        Ok(())
    }

    /// Stop every component, whatever happened: the proxy first (no new work reaches the
    /// instances), then all instances at once under one grace period. A second Ctrl-C (or
    /// SIGTERM) meanwhile SIGKILLs every group at once.
    async fn teardown(
        &self,
        running: &mut Vec<Running>,
        interrupted: &mut Interrupts,
    ) -> Vec<StopReport> {
        let grace = self.options.stop_grace.max(Duration::from_millis(100));
        let groups: Vec<i32> = running.iter().map(|(_, p)| p.pgid()).collect();
        let reports = {
            let (proxies, instances): (Vec<_>, Vec<_>) = running
                .iter_mut()
                .partition(|(c, _)| c.role == ComponentRole::Proxy);
            let stop_all = async move {
                let grace_of = |p: &Supervised| {
                    if p.is_dead() {
                        grace.min(DEAD_GRACE)
                    } else {
                        grace
                    }
                };
                let mut reports = Vec::new();
                for (_, p) in proxies {
                    let g = grace_of(p);
                    reports.push(p.stop(g).await);
                }
                reports.extend(
                    futures::future::join_all(instances.into_iter().map(|(_, p)| {
                        let g = grace_of(p);
                        p.stop(g)
                    }))
                    .await,
                );
                reports
            };
            tokio::pin!(stop_all);
            tokio::select! {
                r = &mut stop_all => r,
                _ = interrupted.second() => {
                    self.events.warning("second signal: killing every process now");
                    for pgid in &groups {
                        crate::exec::process::kill_group(*pgid);
                    }
                    stop_all.await
                }
            }
        };
        running.clear();
        reports
    }

    /// Start every component, check the path, then measure each rate still to do.
    async fn serve_and_measure(
        &self,
        spec: &DeploymentSpec,
        running: &mut Vec<Running>,
        interrupted: &mut Interrupts,
        clock: &mut Clock,
    ) -> Result<(), VariantError> {
        // Instances first, all at once (vLLM start-up dominates); the proxy once they are healthy.
        let (instances, proxies): (Vec<_>, Vec<_>) = spec
            .components
            .iter()
            .partition(|c| c.role != ComponentRole::Proxy);
        // Instances sharing a GPU split its memory unevenly when they start together (each
        // sizes its KV cache from what it finds free): `target.start = "one_by_one"`.
        let mut groups: Vec<Vec<&Component>> = match self.loaded.manifest.target.start {
            StartOrder::Together => vec![instances],
            StartOrder::OneByOne => instances.into_iter().map(|c| vec![c]).collect(),
        };
        groups.push(proxies);
        for group in groups {
            if group.is_empty() {
                continue;
            }
            for c in &group {
                let mut proc =
                    Supervised::spawn(&c.spec, &self.dir.log_path(&c.name), Some(self.run_mark))?;
                proc.watch_log(spec.fatal_lines.clone());
                running.push(((*c).clone(), proc));
            }
            let names: Vec<&str> = group.iter().map(|c| c.name.as_str()).collect();
            let t0 = Instant::now();
            health::wait_healthy(
                running,
                self.loaded.manifest.target.health_timeout_s,
                interrupted,
                self.events,
            )
            .await?;
            self.events.info(&format!(
                "  healthy: {} ({:.1}s)",
                names.join(", "),
                t0.elapsed().as_secs_f64()
            ));
            if clock.record.instances_healthy_s.is_none() {
                clock.record.instances_healthy_s = Some(clock.seconds());
            }
        }
        // Said once here; every result of the variant records them.
        for finding in health::log_findings(running) {
            self.events.warning(&finding);
        }
        if let Some(uneven) = self.kv_imbalance_now(running).await {
            self.events.warning(&uneven);
        }
        let api_key = self.workload.api_key();
        if api_key.is_some() {
            health::verify_key_required(running, self.events).await;
        }
        health::smoke(&spec.entry_url, &self.plan.served_model_name, api_key).await?;
        if matches!(self.variant.mode, Mode::Nixl | Mode::Lmcache) {
            health::verify_kv_transfer(running, self.variant.mode, self.events).await?;
        }
        if matches!(self.variant.mode, Mode::Nixl | Mode::Lmcache)
            && self.loaded.manifest.target.verify_output
        {
            // LMCache's producer cannot serve a request alone (it stores every prompt for a
            // decoder, and without one its engine dies); the consumer computes locally.
            let (reference, reference_name) = match self.variant.mode {
                Mode::Lmcache => (ComponentRole::Decode, "decode"),
                _ => (ComponentRole::Prefill, "prefill"),
            };
            let single = running
                .iter()
                .find(|(c, _)| c.role == reference)
                .map(|(c, _)| c.url.clone());
            if let Some(single) = single {
                health::verify_pd_output(
                    &spec.entry_url,
                    (&single, reference_name),
                    &self.plan.served_model_name,
                    api_key,
                    self.events,
                )
                .await?;
            }
        }
        clock.record.ready_s = Some(clock.seconds());
        if let Some(search) = &self.plan.search {
            return self.search(search, spec, running, interrupted, clock).await;
        }
        for cell in self.plan.cells_of(&self.variant.id) {
            if self.dir.is_measured(cell) {
                self.events.info(&format!(
                    "  {}: already measured, skipped",
                    cell.pace.describe()
                ));
                continue;
            }
            self.set_aside_unreadable(cell)?;
            health::check_alive(running)?;
            self.measure_timed(spec, cell, running, interrupted, clock)
                .await?;
        }
        Ok(())
    }

    /// A file at the cell's result name that is no result (empty, cut, foreign) goes to
    /// `aborted/`, said, before the cell is measured again.
    fn set_aside_unreadable(&self, cell: &Cell) -> Result<(), VariantError> {
        if let Some((dest, why)) = self
            .dir
            .set_aside_unreadable(self.attempt, cell)
            .map_err(VariantError::Failed)?
        {
            self.events.warning(&format!(
                "{} was no result ({why}): moved to {} and measured again",
                cell.result_file,
                dest.display()
            ));
        }
        Ok(())
    }

    /// [`Self::measure`], its time recorded for the next plan's estimate.
    async fn measure_timed(
        &self,
        spec: &DeploymentSpec,
        cell: &Cell,
        running: &mut [Running],
        interrupted: &mut Interrupts,
        clock: &mut Clock,
    ) -> Result<RunResult, VariantError> {
        let t0 = Instant::now();
        let result = self.measure(spec, cell, running, interrupted).await?;
        clock.record.cells.push(CellTiming {
            rate: cell.pace.label(),
            requests: cell.requests,
            warmup: self.plan.warmup,
            seconds: t0.elapsed().as_secs_f64(),
        });
        Ok(result)
    }

    /// `[load.search]`: probe rates as the search asks until it ends. Batches already on disk
    /// (a resumed run) are read back instead of measured: the search replays them and goes on.
    async fn search(
        &self,
        search_spec: &SearchSpec,
        spec: &DeploymentSpec,
        running: &mut [Running],
        interrupted: &mut Interrupts,
        clock: &mut Clock,
    ) -> Result<(), VariantError> {
        let mut search = Search::new(search_spec.clone());
        let mut index = 0u32;
        let ending = loop {
            let rate = match search.next() {
                Step::Done(ending) => break ending,
                Step::Measure { rate, .. } => rate,
            };
            index += 1;
            let rate = Rate::PerSecond(rate);
            let cell = Cell {
                variant_id: self.variant.id.clone(),
                pace: Pace::Rate(rate),
                repeat: index,
                requests: search_spec.batch,
                result_file: batch_file_name(rate, index),
            };
            let result = if self.dir.is_measured(&cell) {
                let r = self.dir.read_result(&cell)?;
                if r.request_rate.as_f64() != Some(rate.as_f64()) {
                    return Err(VariantError::Failed(anyhow::anyhow!(
                        "{} was measured at {} req/s, but the search now asks for {}: the \
                         run folder holds another search's probes",
                        cell.result_file,
                        r.request_rate,
                        rate.label()
                    )));
                }
                self.events.info(&format!(
                    "  probe {index} at {} req/s: already measured, read back",
                    rate.label()
                ));
                r
            } else {
                self.set_aside_unreadable(&cell)?;
                health::check_alive(running)?;
                self.measure_timed(spec, &cell, running, interrupted, clock)
                    .await?
            };
            let requests = result.vbench.requests.len() as u64;
            let met = crate::report::attainment::count_meeting(
                &result.vbench.requests,
                &self.loaded.manifest.slo,
            );
            let probe = search.record(
                rate.as_f64(),
                BatchOutcome {
                    met,
                    requests,
                    failed: result.failed,
                    client_fell_behind: result.vbench.client.client_fell_behind,
                    queue_growing: result
                        .vbench
                        .server_queue
                        .as_ref()
                        .is_some_and(|q| q.growing),
                },
            );
            if probe.verdict.is_some() {
                self.events.info(&probe_line(probe));
            }
        };
        self.events.info(&format!(
            "  search: {} ({} requests)",
            ending.describe(),
            search.used
        ));
        self.dir.write_search(
            self.attempt,
            &json!({
                "spec": search.spec,
                "probes": search.probes,
                "requests": search.used,
                "ending": ending,
            }),
        )?;
        Ok(())
    }

    /// A cell stopped by Ctrl-C during its load is not a measurement of it: it is not written
    /// as one, and `--resume` measures it again. What it measured until then is kept aside
    /// (`aborted/`), for a look, never for the report.
    /// `partial`: what the load returned, or why there is nothing to keep.
    fn keep_stopped_cell(&self, cell: &Cell, partial: Result<RunResult, &str>) {
        let again = "--resume measures it again";
        let partial = partial.and_then(|r| {
            if r.vbench.requests.is_empty() {
                Err("nothing of it was measured")
            } else {
                Ok(r)
            }
        });
        let line = match partial {
            Err(why) => format!("{} was stopped during its load; {why} ({again})", cell.pace),
            Ok(r) => match self.dir.write_aborted_result(self.attempt, cell, &r) {
                Ok(path) => format!(
                    "{} was stopped during its load; its {} requests sent so far ({} ok) are kept \
                     aside in {}, not as a result ({again})",
                    cell.pace,
                    r.vbench.requests.len(),
                    r.completed,
                    path.display()
                ),
                Err(e) => format!(
                    "{} was stopped during its load; its requests sent so far could not be kept \
                     ({e:#}; {again})",
                    cell.pace
                ),
            },
        };
        self.events.warning(&line);
    }

    /// One cell: `/metrics` before, the load with gauges sampled, `/metrics` after, the result.
    async fn measure(
        &self,
        spec: &DeploymentSpec,
        cell: &Cell,
        running: &mut [Running],
        interrupted: &mut Interrupts,
    ) -> Result<RunResult, VariantError> {
        let t0 = Instant::now();
        let tag = crate::results::rundir::cell_tag(cell);
        let instances: Vec<(String, String)> = running
            .iter()
            .filter(|(c, _)| c.role != ComponentRole::Proxy)
            .map(|(c, _)| (c.name.clone(), c.url.clone()))
            .collect();
        // Where each component's log stood: what it adds while the cell runs is read after.
        let log_marks: Vec<u64> = running.iter().map(|(_, p)| p.log_len()).collect();
        let before = metrics::snapshot(&instances).await;
        self.save_metrics(&before, &format!("{tag}-before"));
        let kv_waits_before = self.lmcache_kv_wait_timeouts(running).await;
        let sampling = Instant::now();
        let (stop_sampling, sampler) =
            metrics::spawn_sampler(instances.clone(), Duration::from_secs(1));
        // Local GPUs only: a Slurm node's are not this host's to ask.
        let gpu_sampler = (!spec.gpus.is_empty() && self.target.slurm.is_none()).then(|| {
            gpu_telemetry::spawn_sampler(
                self.probe.clone(),
                spec.gpus.clone(),
                Duration::from_secs(1),
            )
        });
        let (stop_load, stop) = crate::load::Stop::channel();
        let request = cell::CellRequest {
            loaded: self.loaded,
            plan: self.plan,
            variant: self.variant,
            cell,
            entry_url: &spec.entry_url,
            simulated: self.simulated,
            stop,
        };
        let label = format!("  {}", cell.pace.describe());
        let progress = self.events.requests(&label);
        let outcome = {
            let load = self.workload.run(request, progress.as_ref());
            tokio::pin!(load);
            tokio::select! {
                r = &mut load => r.map_err(VariantError::Failed),
                _ = interrupted.first() => {
                    // Stop sending and waiting at once (single requests and sessions' turns
                    // alike): what was measured comes back within moments.
                    stop_load.send_replace(2);
                    let not_waited = "its requests were not waited for";
                    let partial = tokio::select! {
                        r = tokio::time::timeout(Duration::from_secs(3), &mut load) => match r {
                            Ok(Ok(result)) => Ok(result),
                            Ok(Err(_)) => Err("nothing of it was measured"),
                            Err(_) => Err(not_waited),
                        },
                        _ = interrupted.second() => Err(not_waited),
                    };
                    self.keep_stopped_cell(cell, partial);
                    Err(VariantError::Interrupted)
                }
                e = health::watch_crash(running) => Err(VariantError::Failed(e)),
            }
        };
        let load_ended_s = sampling.elapsed().as_secs_f64();
        drop(progress);
        let _ = stop_sampling.send(true);
        let samples = sampler.await.unwrap_or_default();
        let gpu_samples = match gpu_sampler {
            Some((stop, handle)) => {
                stop.raise();
                handle.await.unwrap_or_default()
            }
            None => Vec::new(),
        };
        let _ = self.dir.write_metrics_samples(self.attempt, &tag, &samples);
        let mut result = outcome?;
        // The load's clock started `duration` before it returned (its last request's end).
        result.vbench.server_queue = queue::trend(
            &samples,
            load_ended_s - result.duration,
            &result.vbench.requests,
        );
        // A component that died while the load ran (its requests failed fast, before the
        // crash watch saw it) spoils the cell: its result is kept aside, the cell runs again
        // on resume.
        if let Err(crash) = health::check_alive(running) {
            let kept = self.dir.write_aborted_result(self.attempt, cell, &result)?;
            return Err(VariantError::Failed(crash.context(format!(
                "a component died during {}; its {} ok / {} failed requests are kept in {} and \
                 the cell is measured again on --resume",
                cell.pace,
                result.completed,
                result.failed,
                kept.display()
            ))));
        }
        let after = metrics::snapshot(&instances).await;
        self.save_metrics(&after, &format!("{tag}-after"));
        let kv_waits_after = self.lmcache_kv_wait_timeouts(running).await;
        self.record_servers(
            &mut result,
            cell,
            running,
            &Observed {
                before: &before,
                after: &after,
                samples: &samples,
                gpu_samples: &gpu_samples,
                log_marks: &log_marks,
                kv_wait_timeouts: (kv_waits_before, kv_waits_after),
            },
        );
        let into_reserve = self.write_result(cell, &result)?;
        self.events.info(&cell_line(
            cell,
            &result,
            &self.loaded.manifest.slo,
            t0.elapsed(),
        ));
        if into_reserve {
            return Err(VariantError::Failed(anyhow::Error::new(DiskFull {
                dir: self.dir.path().to_path_buf(),
                what: format!(
                    "the result of {} was written into the space vbench held in reserve, and \
                     the run stops there",
                    cell.pace
                ),
            })));
        }
        let client = &result.vbench.client;
        if client.client_fell_behind {
            self.events.warning(&format!(
                "the load generator fell behind its schedule at this rate (lag p99 {:.1} ms): \
                 its latencies include the client's own delay",
                client.lag_p99_ms
            ));
        }
        Ok(result)
    }

    /// Write a cell's result; `true` when the disk was full and it went into the space the
    /// run held in reserve (the run must stop: there is no reserve left).
    fn write_result(&self, cell: &Cell, result: &RunResult) -> Result<bool, VariantError> {
        self.dir
            .write_result(cell, result, self.reserve)
            .map_err(|e| {
                VariantError::from(e.context(format!("the result of {} is lost", cell.pace)))
            })
    }

    /// What the servers and GPUs did during the cell, into its result with the warnings it
    /// merits: LMCache requests that timed out waiting for their KV, prompt reuse, NIXL
    /// transfers, start-up log findings, the KV caches, errors the logs gained, the GPUs.
    fn record_servers(
        &self,
        result: &mut RunResult,
        cell: &Cell,
        running: &[Running],
        seen: &Observed<'_>,
    ) {
        if let (Some(b), Some(a)) = seen.kv_wait_timeouts {
            if a > b {
                self.warn(result, warnings::kv_wait_warning(a - b));
            }
        }
        let roles = instance_roles(running);
        let reuses = self.loaded.manifest.dataset.kind.reuses_prefixes();
        let ideal = if reuses {
            seen.before
                .values()
                .find_map(|t| metrics::block_size(t))
                .and_then(|block| self.workload.ideal_reuse(self.loaded, cell, block))
        } else {
            None
        };
        let said = cache::record(
            &mut result.vbench,
            &cache::ServerMetrics {
                roles: &roles,
                before: seen.before,
                after: seen.after,
                samples: seen.samples,
            },
            ideal,
            reuses,
            Some(self.loaded.manifest.slo.ttft_ms),
        );
        for note in said.notes {
            // Reuse is what this workload measures: say how much, without alarm.
            self.events.info(&format!("  {note}"));
            result.vbench.load.notes.push(note);
        }
        for warning in said.warnings {
            self.warn(result, warning);
        }
        result
            .vbench
            .load
            .warnings
            .extend(health::log_findings(running));
        // Said at start-up; recorded with every cell.
        if let Some(uneven) = result
            .vbench
            .kv_cache
            .as_ref()
            .and_then(|k| warnings::kv_imbalance(k, &|role| self.memory_given(role)))
        {
            result.vbench.load.warnings.push(uneven);
        }
        result.vbench.log_errors = health::log_errors(running, seen.log_marks);
        if let Some(warning) =
            warnings::log_errors_warning(&result.vbench.log_errors, self.dir.path())
        {
            self.warn(result, warning);
        }
        let groups: Vec<i32> = running.iter().map(|(_, p)| p.pgid()).collect();
        let ours = |pid: u32| {
            i32::try_from(pid)
                .ok()
                .and_then(crate::exec::leftovers::process_group)
                .is_some_and(|g| groups.contains(&g))
        };
        result.vbench.gpus = gpu::summarize(seen.gpu_samples, &ours);
        if let Some(warning) = warnings::slowdown_warning(&result.vbench.gpus) {
            self.warn(result, warning);
        }
        if let Some(warning) = warnings::shared_gpu_warning(&result.vbench.gpus) {
            self.warn(result, warning);
        }
    }

    /// [`warnings::kv_imbalance`] of the instances as they stand (their `/metrics`).
    async fn kv_imbalance_now(&self, running: &[Running]) -> Option<String> {
        let roles = instance_roles(running);
        let instances: Vec<(String, String)> = running
            .iter()
            .filter(|(c, _)| roles.contains_key(&c.name))
            .map(|(c, _)| (c.name.clone(), c.url.clone()))
            .collect();
        let now = metrics::snapshot(&instances).await;
        let k = cache::kv_cache(&roles, &now, &now, &[])?;
        warnings::kv_imbalance(&k, &|role| self.memory_given(role))
    }

    /// What a role's instances were given of GPU memory, relative: TP × gpu_memory_utilization
    /// (`role` as the results name it: `instance`, `prefill`, `decode`).
    fn memory_given(&self, role: &str) -> Option<f64> {
        let kind = match role {
            "instance" => RoleKind::Serve,
            "prefill" => RoleKind::Prefill,
            "decode" => RoleKind::Decode,
            _ => return None,
        };
        let spec = self.variant.roles.iter().find(|r| r.role == kind)?;
        Some(f64::from(spec.tp) * spec.gpu_memory_utilization)
    }

    /// Print a warning about this cell and keep it in its result (the report lists it).
    fn warn(&self, result: &mut RunResult, warning: String) {
        self.events.warning(&warning);
        result.vbench.load.warnings.push(warning);
    }

    /// The built-in proxy's count of LMCache requests that failed waiting for their KV (None
    /// for other modes and proxies, or when it cannot be read).
    async fn lmcache_kv_wait_timeouts(&self, running: &[Running]) -> Option<f64> {
        if self.variant.mode != Mode::Lmcache || self.variant.proxy != ProxyKind::Builtin {
            return None;
        }
        let (proxy, _) = running
            .iter()
            .find(|(c, _)| c.role == ComponentRole::Proxy)?;
        let texts = metrics::snapshot(&[(proxy.name.clone(), proxy.url.clone())]).await;
        metrics::gauge_sum(
            texts.get(&proxy.name)?,
            "vbench_proxy_lmcache_kv_wait_timeouts_total",
        )
    }

    /// Best effort: metrics are context, never a reason to fail a measured cell.
    fn save_metrics(&self, texts: &std::collections::BTreeMap<String, String>, tag: &str) {
        for (instance, text) in texts {
            let _ = self
                .dir
                .write_metrics_text(self.attempt, instance, tag, text);
        }
    }
}

/// Each instance's role as the results name it (`instance`, `prefill`, `decode`), by
/// component name; the proxy has none.
fn instance_roles(running: &[Running]) -> BTreeMap<String, &'static str> {
    running
        .iter()
        .filter_map(|(c, _)| {
            let role = match c.role {
                ComponentRole::Serve => "instance",
                ComponentRole::Prefill => "prefill",
                ComponentRole::Decode => "decode",
                ComponentRole::Proxy => return None,
            };
            Some((c.name.clone(), role))
        })
        .collect()
}

/// What was read around one cell, for [`VariantRun::record_servers`].
struct Observed<'s> {
    /// Each instance's `/metrics` before and after the cell.
    before: &'s BTreeMap<String, String>,
    after: &'s BTreeMap<String, String>,
    /// The instances' gauges and the GPUs, sampled every second while it ran.
    samples: &'s [metrics::Sample],
    gpu_samples: &'s [gpu_telemetry::GpuSample],
    /// Where each running component's log stood before it.
    log_marks: &'s [u64],
    /// The built-in proxy's LMCache KV-wait timeouts before and after.
    kv_wait_timeouts: (Option<f64>, Option<f64>),
}

/// `  probe at 8 req/s: 91.5 % (88.3-93.9) over 200 requests → pass`.
fn probe_line(p: &Probe) -> String {
    let verdict = match p.verdict {
        Some(Verdict::Pass) => "pass",
        _ => "fail",
    };
    let mut why = Vec::new();
    if p.saturated {
        why.push("saturated");
    }
    if p.forced {
        why.push("forced by the point estimate");
    }
    format!(
        "  probe at {} req/s: {:.1} % ({:.1}-{:.1}) over {} requests → {verdict}{}",
        crate::report::attainment::fmt_num(p.rate),
        p.attainment_pct,
        p.interval_pct.0,
        p.interval_pct.1,
        p.requests,
        if why.is_empty() {
            String::new()
        } else {
            format!(" ({})", why.join(", "))
        }
    )
}

/// Time since launch and what it is recorded as (`timing.json`).
struct Clock {
    launched: Instant,
    record: VariantTiming,
}

impl Clock {
    fn seconds(&self) -> f64 {
        self.launched.elapsed().as_secs_f64()
    }

    fn finish(
        mut self,
        result: &Result<(), VariantError>,
        estimate: Option<(f64, String)>,
    ) -> VariantTiming {
        self.record.total_s = self.seconds();
        self.record.outcome = match result {
            Ok(()) => "completed",
            Err(VariantError::Interrupted) => "interrupted",
            Err(VariantError::Failed(_)) => "failed",
        }
        .to_owned();
        if let Some((seconds, basis)) = estimate {
            self.record.estimated_s = Some(seconds);
            self.record.estimate_basis = Some(basis);
        }
        self.record
    }
}

/// `  took 1m02s; estimated ~58s (3 past runs): +7 %` for an attempt that completed.
fn estimate_line(t: &VariantTiming) -> Option<String> {
    let estimated = t.estimated_s.filter(|e| *e > 0.0)?;
    if t.outcome != "completed" {
        return None;
    }
    let short = |s: f64| {
        if s < 60.0 {
            format!("{s:.1}s")
        } else {
            crate::plan::table::human_duration(s)
        }
    };
    let off = (100.0 * (t.total_s - estimated) / estimated).round();
    Some(format!(
        "  took {}; estimated ~{} ({}): {}",
        short(t.total_s),
        short(estimated),
        t.estimate_basis.as_deref().unwrap_or("defaults"),
        if off == 0.0 {
            "on the mark".to_owned()
        } else {
            format!("{off:+} %")
        }
    ))
}

/// `  rate      4 req/s: 98 ok, 2 failed, SLO met by 91.0 % (95 %: 83.8-95.2) in 30.2s →
/// vllm-4qps.json`: the attainment with its Wilson interval over the cell's requests.
fn cell_line(
    cell: &Cell,
    result: &RunResult,
    slo: &crate::manifest::Slo,
    took: Duration,
) -> String {
    let requests = &result.vbench.requests;
    let met = crate::report::attainment::count_meeting(requests, slo);
    let n = requests.len() as u64;
    let interval = match crate::stats::wilson(met, n, crate::stats::Z95) {
        Some((lo, hi)) => format!(" (95 %: {:.1}-{:.1})", 100.0 * lo, 100.0 * hi),
        None => String::new(),
    };
    format!(
        "  {}: {} ok, {} failed, SLO met by {:.1} %{interval} in {:.1}s → {}",
        cell.pace.describe(),
        result.completed,
        result.failed,
        100.0 * met as f64 / n.max(1) as f64,
        took.as_secs_f64(),
        cell.result_file
    )
}

/// What `deployment.json` records: the variant, and each component's resolved command (the
/// run folder redacts the secrets of every `env` map as it writes it).
fn deployment_record(spec: &DeploymentSpec, variant: &Variant) -> serde_json::Value {
    let components: Vec<_> = spec
        .components
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "role": c.role,
                "node": c.node,
                "url": c.url,
                "program": c.spec.program,
                "args": c.spec.args,
                "env": c.spec.env,
                "env_from": c.spec.env_from,
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
