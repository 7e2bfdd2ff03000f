//! The planner: a parsed manifest → a fully resolved, validated plan (variants × rates = cells).
//!
//! Like ripgrep's low-level/high-level args: the manifest types only mirror the TOML; every
//! check of meaning happens here, before any process starts, and every error points at the
//! manifest line that caused it.

pub mod capacity;
pub mod estimate;
mod expand;
pub mod placement;
pub mod search;
pub mod table;
pub mod variant;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Result;
use crate::manifest::{self, limits, Accelerator, Backend, LoadedManifest, ManifestError, Rate};
use crate::path;

pub use capacity::Capacity;
pub use estimate::{Estimate, VariantEstimate};
pub use search::SearchSpec;
pub use variant::{RoleKind, RoleSpec, Variant};

/// A multi-turn sessions workload, as the plan shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SessionsPlan {
    /// Turns per session; `None` when each ShareGPT conversation decides.
    pub turns: Option<u32>,
}

/// Everything `apply` will do, resolved.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub experiment: String,
    pub model: String,
    pub served_model_name: String,
    pub backend: Backend,
    pub accelerator: Accelerator,
    /// sim backend: the simulator profile (part of what makes past runs comparable).
    pub sim_profile: Option<String>,
    pub capacity: Capacity,
    pub rates: Vec<Rate>,
    /// Trace replay: the speedups swept instead of rates (else empty).
    pub speedups: Vec<f64>,
    /// Requests per cell; with multi-turn sessions, sessions (and `rates` are session starts
    /// per second).
    pub num_prompts: u32,
    /// Multi-turn sessions: their turns each (`None` for ShareGPT sessions without `turns`:
    /// as many as each conversation has). Absent for other workloads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<SessionsPlan>,
    /// Times each rate is measured.
    pub repeats: u32,
    /// `[load.search]`, resolved: each variant searches for its capacity instead of sweeping
    /// `rates` (then empty, and so are `cells`).
    pub search: Option<SearchSpec>,
    pub warmup: u32,
    pub variants: Vec<Variant>,
    pub cells: Vec<Cell>,
    /// slurm backend: where each variant's instances go on the nodes the manifest asks for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmPlan>,
    pub estimate: Estimate,
    /// `--set` overrides this plan was made with.
    pub overrides: Vec<String>,
    /// Problems that do not stop planning but would stop `apply` (e.g. a missing dataset file).
    pub warnings: Vec<String>,
    /// Variants of the manifest left out because the target is too small for them.
    pub skipped: Vec<SkippedVariant>,
}

/// A variant the target cannot hold: planned, named, not run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SkippedVariant {
    pub id: String,
    pub label: String,
    pub gpus: u32,
    /// Why, e.g. `needs 3 GPUs but the target has 2 (2 GPUs from nvidia-smi)`.
    pub reason: String,
}

/// The most repeats a manifest may ask for.
pub const MAX_REPEATS: u32 = 100;

/// The file a cell's result goes to: `vllm-2qps.json` for the first repeat (as without
/// repeats), `vllm-2qps-repeat3.json` after; a trace replay's `vllm-speedup-2x.json` (never a
/// rate's name: it has no `qps`).
pub fn result_file_name(pace: Pace, repeat: u32) -> String {
    let base = format!("vllm-{}", pace.tag());
    if repeat <= 1 {
        format!("{base}.json")
    } else {
        format!("{base}-repeat{repeat}.json")
    }
}

/// How a cell's arrivals are paced: vbench's arrival process at a rate, or a trace's own
/// arrival times compressed by a speedup.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pace {
    Rate(Rate),
    Speedup(f64),
}

impl Pace {
    /// Short form for records and files: `2`, `inf`, `2x`.
    pub fn label(&self) -> String {
        match self {
            Pace::Rate(r) => r.label(),
            Pace::Speedup(s) => format!("{s}x"),
        }
    }

    /// In file names: `2qps`, `speedup-2x`.
    pub fn tag(&self) -> String {
        match self {
            Pace::Rate(r) => format!("{}qps", r.label()),
            Pace::Speedup(s) => format!("speedup-{s}x"),
        }
    }

    /// For aligned progress lines: `rate      2 req/s`, `speedup     2x`.
    pub fn describe(&self) -> String {
        match self {
            Pace::Rate(r) => format!("rate {:>6} req/s", r.label()),
            Pace::Speedup(s) => format!("speedup {:>5}x", s),
        }
    }

    /// The rate, when the cell has one.
    pub fn rate(&self) -> Option<Rate> {
        match self {
            Pace::Rate(r) => Some(*r),
            Pace::Speedup(_) => None,
        }
    }
}

/// `rate 2 req/s`, `speedup 2x`.
impl std::fmt::Display for Pace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pace::Rate(r) => write!(f, "rate {r} req/s"),
            Pace::Speedup(s) => write!(f, "speedup {s}x"),
        }
    }
}

/// The slurm backend's placement, as planned for the allocation the manifest describes (apply
/// places again on the nodes it gets, with the same policy).
#[derive(Debug, Clone, Serialize)]
pub struct SlurmPlan {
    pub placement: manifest::Placement,
    pub nodes: u32,
    /// GPUs per node, when the manifest says (else GPUs do not limit the planned placement).
    pub gpus_per_node: Option<u32>,
    /// Variant id → each instance's node (position in the allocation, from 0).
    pub instances: BTreeMap<String, Vec<placement::InstanceNode>>,
    /// Where the proxy and the load generator run (`target.slurm.driver`).
    pub driver: manifest::SlurmDriver,
}

impl SlurmPlan {
    /// The planned node of every instance of `variant_id`.
    pub fn of(&self, variant_id: &str) -> &[placement::InstanceNode] {
        self.instances.get(variant_id).map_or(&[], Vec::as_slice)
    }
}

/// One variant at one rate (or trace speedup) in one repeat: one result file.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub variant_id: String,
    /// `"rate": 2` or `"speedup": 2` in plan.json.
    #[serde(flatten)]
    pub pace: Pace,
    /// 1-based; every rate of repeat 1 runs before repeat 2.
    pub repeat: u32,
    /// Measured requests (warm-up excluded).
    pub requests: u32,
    /// File name inside the variant's folder, e.g. `vllm-2qps.json`.
    pub result_file: String,
}

impl Plan {
    /// Measured requests of every cell; with a search, every variant's whole budget (the most
    /// it may send).
    pub fn total_requests(&self) -> u64 {
        match &self.search {
            Some(s) => s.budget * self.variants.len() as u64,
            None => self.cells.iter().map(|c| u64::from(c.requests)).sum(),
        }
    }

    pub fn cells_of<'a>(&'a self, variant_id: &'a str) -> impl Iterator<Item = &'a Cell> + 'a {
        self.cells
            .iter()
            .filter(move |c| c.variant_id == variant_id)
    }
}

/// The sweep of one repeat, in order: the manifest's rates, or its trace speedups.
pub fn sweep(load: &manifest::Load) -> Vec<Pace> {
    let rates = load.rates().iter().map(|r| Pace::Rate(*r));
    let speedups = load.speedups().iter().map(|s| Pace::Speedup(*s));
    rates.chain(speedups).collect()
}

/// What the later turns of a multi-turn session add to each cell (0 without sessions).
fn session_tail_s(m: &manifest::Manifest) -> f64 {
    if m.dataset.kind != manifest::DatasetKind::Sessions {
        return 0.0;
    }
    // A ShareGPT source without `turns` has conversations of any length: one turn assumed.
    estimate::session_tail_s(
        m.target.backend,
        m.dataset.turns.unwrap_or(1),
        m.dataset.think_time_s.unwrap_or(0.0),
    )
}

/// The plan of what is left to run: the variants `keep_variant` keeps (`--only`, a resumed
/// run's unfinished ones) and the cells `keep_cell` keeps (a resumed run's missing ones),
/// with the default estimates of that work alone.
pub fn narrow(
    plan: &mut Plan,
    loaded: &LoadedManifest,
    keep_variant: &dyn Fn(&Variant) -> bool,
    keep_cell: &dyn Fn(&Cell) -> bool,
) {
    let m = &loaded.manifest;
    plan.variants.retain(|v| keep_variant(v));
    let kept: std::collections::BTreeSet<String> =
        plan.variants.iter().map(|v| v.id.clone()).collect();
    plan.cells
        .retain(|c| kept.contains(&c.variant_id) && keep_cell(c));
    if plan.search.is_none() {
        // A variant with every cell measured has nothing left to run.
        let with_cells: std::collections::BTreeSet<&str> =
            plan.cells.iter().map(|c| c.variant_id.as_str()).collect();
        plan.variants.retain(|v| with_cells.contains(v.id.as_str()));
    }
    plan.estimate = estimate::defaults(
        plan.backend,
        plan.accelerator,
        &plan.variants,
        &plan.cells,
        plan.warmup,
        plan.search.as_ref(),
        session_tail_s(m),
    );
}

/// Resolve and validate a loaded manifest against the target's capacity.
pub fn resolve(loaded: &LoadedManifest, capacity: &Capacity) -> Result<Plan, ManifestError> {
    let m = &loaded.manifest;
    let mut warnings = Vec::new();
    check_experiment(loaded, &mut warnings)?;
    let variants = expand::variants(loaded)?;
    warn_of_literal_secrets(m, &variants, &mut warnings);
    warnings.extend(capacity.absent.as_ref().map(|a| a.warning()));

    // A variant larger than the target is left out and named (a manifest may keep a 2P1D
    // beside variants that fit two GPUs); when none fits, the manifest cannot run here.
    let unit = if m.target.accelerator == Accelerator::Cpu {
        "instance slots"
    } else {
        "GPUs"
    };
    let (variants, too_large): (Vec<Variant>, Vec<Variant>) = variants
        .into_iter()
        .partition(|v| capacity.gpus.is_none_or(|limit| v.gpus <= limit));
    let skipped: Vec<SkippedVariant> = too_large
        .iter()
        .map(|v| SkippedVariant {
            id: v.id.clone(),
            label: v.label.clone(),
            gpus: v.gpus,
            reason: format!(
                "needs {} {unit} but the target has {} ({})",
                v.gpus,
                capacity.gpus.unwrap_or(0),
                capacity.source
            ),
        })
        .collect();
    if variants.is_empty() {
        if let Some(v) = too_large.first() {
            return Err(loaded.error_at(
                path!["deployment", v.deployment_index],
                format!("variant `{}` ({}) {}", v.id, v.label, skipped[0].reason),
                Some("use fewer instances or a smaller tp, or give the target more GPUs (target.gpus)".into()),
            ));
        }
    }

    let rates = m.load.rates().to_vec();
    let speedups = m.load.speedups().to_vec();
    let paces = sweep(&m.load);
    let mut cells = Vec::new();
    for v in &variants {
        // All rates of a repeat before the next: drift over a variant's life spreads over
        // every rate instead of piling onto the last.
        for repeat in 1..=m.load.repeats {
            for pace in &paces {
                cells.push(Cell {
                    variant_id: v.id.clone(),
                    pace: *pace,
                    repeat,
                    requests: m.load.num_prompts,
                    result_file: result_file_name(*pace, repeat),
                });
            }
        }
    }
    let search = m.load.search.as_ref().map(|s| SearchSpec::resolve(s, m));
    let slurm = plan_slurm(loaded, &variants)?;
    let estimate = estimate::defaults(
        m.target.backend,
        m.target.accelerator,
        &variants,
        &cells,
        m.load.warmup,
        search.as_ref(),
        session_tail_s(m),
    );

    Ok(Plan {
        experiment: m.name.clone(),
        model: m.model.clone(),
        served_model_name: m
            .served_model_name
            .clone()
            .unwrap_or_else(|| m.model.clone()),
        backend: m.target.backend,
        accelerator: m.target.accelerator,
        sim_profile: (m.target.backend == Backend::Sim).then(|| {
            m.target
                .sim_profile
                .clone()
                .unwrap_or_else(|| "default".to_owned())
        }),
        capacity: capacity.clone(),
        rates,
        speedups,
        num_prompts: m.load.num_prompts,
        sessions: (m.dataset.kind == manifest::DatasetKind::Sessions).then_some(SessionsPlan {
            turns: m.dataset.turns,
        }),
        repeats: m.load.repeats,
        search,
        warmup: m.load.warmup,
        variants,
        cells,
        slurm,
        estimate,
        overrides: loaded.overrides.clone(),
        warnings,
        skipped,
    })
}

/// slurm backend: each variant placed on the nodes `[target.slurm]` asks for; a variant that
/// cannot be placed there is an error at `placement` (or `gpus_per_node`).
fn plan_slurm(
    loaded: &LoadedManifest,
    variants: &[Variant],
) -> Result<Option<SlurmPlan>, ManifestError> {
    let t = &loaded.manifest.target;
    if t.backend != Backend::Slurm {
        return Ok(None);
    }
    let options = t.slurm.clone().unwrap_or_default();
    let nodes = vec![options.gpus_per_node; options.nodes as usize];
    let mut instances = BTreeMap::new();
    for v in variants {
        let placed = placement::place(&v.roles, &nodes, options.placement).map_err(|why| {
            loaded.error_at(
                path!["target", "slurm", "placement"],
                format!(
                    "variant `{}` ({}) cannot be placed on {} node(s){}: {why}",
                    v.id,
                    v.label,
                    options.nodes,
                    options
                        .gpus_per_node
                        .map(|g| format!(" of {g} GPUs"))
                        .unwrap_or_default()
                ),
                Some(
                    "allocate more nodes (target.slurm.nodes), use a smaller variant, or the \
                     other placement (\"pack\" or \"spread\")"
                        .into(),
                ),
            )
        })?;
        instances.insert(v.id.clone(), placed);
    }
    Ok(Some(SlurmPlan {
        placement: options.placement,
        nodes: options.nodes,
        gpus_per_node: options.gpus_per_node,
        instances,
        driver: options.driver,
    }))
}

/// How a check reports a located error (the planner's `err`).
type Located<'a> = &'a dyn Fn(Vec<manifest::Seg>, String, &str) -> Result<(), ManifestError>;

/// `[load.search]`'s values make sense together.
fn check_search(
    s: &manifest::SearchOptions,
    l: &manifest::Load,
    err: Located,
) -> Result<(), ManifestError> {
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if !positive(s.start) {
        return err(
            path!["load", "search", "start"],
            format!("start {} must be a positive rate (req/s)", s.start),
            "",
        );
    }
    if let Some(max) = s.max_rate.filter(|m| !(positive(*m) && *m >= s.start)) {
        return err(
            path!["load", "search", "max_rate"],
            format!("max_rate {max} must be at least start ({})", s.start),
            "",
        );
    }
    if let Some(min) = s.min_rate.filter(|m| !(positive(*m) && *m <= s.start)) {
        return err(
            path!["load", "search", "min_rate"],
            format!(
                "min_rate {min} must be positive and at most start ({})",
                s.start
            ),
            "",
        );
    }
    if !(s.tolerance > 0.0 && s.tolerance < 1.0) {
        return err(
            path!["load", "search", "tolerance"],
            format!("tolerance {} must be in (0, 1)", s.tolerance),
            "0.05 stops when the bracket is within 5 %",
        );
    }
    if !(1..=100).contains(&s.max_batches) {
        return err(
            path!["load", "search", "max_batches"],
            format!("max_batches must be 1 to 100, got {}", s.max_batches),
            "",
        );
    }
    if !(1..=s.max_batches).contains(&s.confirm_batches) {
        return err(
            path!["load", "search", "confirm_batches"],
            format!(
                "confirm_batches must be 1 to max_batches ({}), got {}",
                s.max_batches, s.confirm_batches
            ),
            "1 ends the search on single batches; 2 (the default) measures each end of the \
             bracket with a second seed",
        );
    }
    if s.budget.is_some_and(|b| b < u64::from(l.num_prompts)) {
        return err(
            path!["load", "search", "budget"],
            format!(
                "a budget below one batch (num_prompts = {}) cannot measure anything",
                l.num_prompts
            ),
            "",
        );
    }
    if !(0.0..=100.0).contains(&s.max_failed_pct) {
        return err(
            path!["load", "search", "max_failed_pct"],
            format!("max_failed_pct {} must be 0 to 100", s.max_failed_pct),
            "",
        );
    }
    if l.repeats > 1 {
        return err(
            path!["load", "repeats"],
            "repeats with [load.search]: a search adds requests where it is unsure instead".into(),
            "remove repeats, or search once per apply",
        );
    }
    Ok(())
}

/// A secret written in the manifest is kept out of the run folder, but it is in a file that
/// is meant for git: say so, once per variable.
fn warn_of_literal_secrets(
    m: &manifest::Manifest,
    variants: &[Variant],
    warnings: &mut Vec<String>,
) {
    let mut named = std::collections::BTreeSet::new();
    let envs = std::iter::once(&m.target.env)
        .chain(variants.iter().flat_map(|v| v.roles.iter().map(|r| &r.env)));
    for env in envs {
        for (k, v) in env {
            let Some(v) = v.literal() else { continue };
            if manifest::secret::is_secret(k, v) && named.insert(k.clone()) {
                warnings.push(format!(
                    "{k} holds a secret written in the manifest: vbench keeps it out of the run \
                     folder, but the manifest is meant for git; export it in the shell that runs \
                     vbench and write `{k} = {{ env = \"{k}\" }}` instead"
                ));
            }
        }
    }
}

/// Checks of the experiment-wide sections (name, dataset, load, SLO, target, report).
fn check_experiment(
    loaded: &LoadedManifest,
    warnings: &mut Vec<String>,
) -> Result<(), ManifestError> {
    let m = &loaded.manifest;
    let err = |p: Vec<manifest::Seg>, msg: String, help: &str| {
        Err(loaded.error_at(p, msg, (!help.is_empty()).then(|| help.to_owned())))
    };

    // A folder name: a file system takes at most 255 bytes, and the run's own folder and
    // files go below it.
    let name_ok = !m.name.is_empty()
        && m.name.len() <= 128
        && !m.name.starts_with('.')
        && m.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        return err(
            path!["name"],
            format!(
                "experiment name {:?} cannot be used as a folder name",
                m.name.chars().take(80).collect::<String>()
            ),
            "use at most 128 letters, digits, '-', '_' and '.', e.g. name = \"qwen-pd\"",
        );
    }
    if m.model.trim().is_empty() {
        return err(
            path!["model"],
            "model is empty".into(),
            "e.g. model = \"Qwen/Qwen3-0.6B\"",
        );
    }

    check_dataset(loaded, &err, warnings)?;

    // Load.
    let l = &m.load;
    match (&l.rates, &l.search) {
        (None, None) if l.speedups.is_some() => check_speedups(loaded, &err)?,
        (None, None) => {
            return err(
                path!["load"],
                "[load] needs `rates` (a sweep) or a `[load.search]` table".into(),
                "e.g. rates = [1, 2, 4, 8], or [load.search] with start = 2",
            )
        }
        (Some(_), Some(_)) => {
            return err(
                path!["load", "search"],
                "`rates` and `[load.search]` both given: a search chooses its own rates".into(),
                "remove one of them",
            )
        }
        (None, Some(s)) => check_search(s, l, &err)?,
        (Some(_), None) => {}
    }
    if l.speedups.is_some() && (l.rates.is_some() || l.search.is_some()) {
        return err(
            path!["load", "speedups"],
            format!(
                "`speedups` and `{}` both given: a trace is either replayed at its own pace \
                 (speedups) or paced by vbench's arrival process (rates or a search)",
                if l.rates.is_some() {
                    "rates"
                } else {
                    "[load.search]"
                }
            ),
            "remove one of them",
        );
    }
    let rates = l.rates();
    for (i, r) in rates.iter().enumerate() {
        if let Rate::PerSecond(x) = r {
            if !limits::RATES.contains(x) {
                return err(
                    path!["load", "rates", i],
                    format!(
                        "rate {} is outside {} to {} per second",
                        limits::show(*x),
                        limits::RATES.start(),
                        limits::RATES.end()
                    ),
                    "use \"inf\" to send everything at once",
                );
            }
        }
        if rates[..i].contains(r) {
            return err(
                path!["load", "rates", i],
                format!("rate {r} appears twice in load.rates"),
                "each rate runs once per variant; remove the duplicate",
            );
        }
    }
    if l.num_prompts == 0 {
        return err(
            path!["load", "num_prompts"],
            "num_prompts must be at least 1".into(),
            "",
        );
    }
    if !(1..=MAX_REPEATS).contains(&l.repeats) {
        return err(
            path!["load", "repeats"],
            format!("repeats must be 1 to {MAX_REPEATS}, got {}", l.repeats),
            "each repeat measures every rate once more",
        );
    }
    match (l.arrival, l.burstiness) {
        (manifest::Arrival::Gamma, Some(b)) if !limits::BURSTINESS.contains(&b) => {
            return err(
                path!["load", "burstiness"],
                format!(
                    "burstiness {} must be a number from {} to {}",
                    limits::show(b),
                    limits::BURSTINESS.start(),
                    limits::BURSTINESS.end()
                ),
                "1 is Poisson; below 1 is burstier, above 1 smoother",
            )
        }
        (manifest::Arrival::Gamma, _) => {}
        (other, Some(_)) => {
            return err(
                path!["load", "burstiness"],
                format!(
                    "burstiness only applies to arrival = \"gamma\" (arrival is \"{}\")",
                    arrival_name(other)
                ),
                "set arrival = \"gamma\", or remove burstiness",
            )
        }
        (_, None) => {}
    }
    if !limits::is_wait(l.timeout_s, false) {
        return err(
            path!["load", "timeout_s"],
            format!(
                "timeout_s {} must be positive and at most {} (a week)",
                limits::show(l.timeout_s),
                limits::MAX_WAIT_S
            ),
            "",
        );
    }
    if l.max_concurrency == Some(0) {
        return err(
            path!["load", "max_concurrency"],
            "max_concurrency 0 would never send a request".into(),
            "remove it for a pure open loop, or give a positive cap",
        );
    }
    if m.dataset.kind == manifest::DatasetKind::Sessions {
        if l.search.is_some() {
            return err(
                path!["load", "search"],
                "the SLO-capacity search probes request rates in batches of single requests; \
                 it does not run multi-turn sessions"
                    .into(),
                "sweep session-start rates with rates = [...]",
            );
        }
        if l.max_concurrency.is_some() {
            return err(
                path!["load", "max_concurrency"],
                "max_concurrency caps requests in flight, but a session's turns already wait \
                 for their answers: sessions are an open loop over session starts"
                    .into(),
                "remove it; lower the rates (session starts per second) for less load",
            );
        }
    }

    // SLOs.
    let s = &m.slo;
    for (key, v) in [("ttft_ms", s.ttft_ms), ("tpot_ms", s.tpot_ms)] {
        if !(v.is_finite() && v > 0.0) {
            return err(
                path!["slo", key],
                format!("{key} = {v}: an SLO must be a positive number of milliseconds"),
                "the original suite used ttft_ms = 125, tpot_ms = 200",
            );
        }
    }
    if !(s.target_pct > 0.0 && s.target_pct <= 100.0) {
        return err(
            path!["slo", "target_pct"],
            format!("target_pct = {} must be in (0, 100]", s.target_pct),
            "e.g. target_pct = 90",
        );
    }
    if s.scales.is_empty() {
        return err(
            path!["slo", "scales"],
            "slo.scales is empty".into(),
            "e.g. scales = [0.5, 1.0, 1.5, 2.0]",
        );
    }
    for (i, sc) in s.scales.iter().enumerate() {
        if !(sc.is_finite() && *sc > 0.0) {
            return err(
                path!["slo", "scales", i],
                format!("SLO scale {sc} must be positive"),
                "",
            );
        }
    }
    if let (Some(_), Some(_)) = (s.scale_rate, &l.speedups) {
        return err(
            path!["slo", "scale_rate"],
            "scale_rate names a rate, but this sweep is over trace speedups".into(),
            "remove it: the SLO-scale panel then re-scores the middle speedup",
        );
    }
    if let Some(sr) = s.scale_rate {
        if !rates.iter().any(|r| r.as_f64() == sr) {
            let listed: Vec<String> = rates.iter().map(|r| r.label()).collect();
            return err(
                path!["slo", "scale_rate"],
                format!(
                    "scale_rate {sr} is not one of load.rates ({})",
                    listed.join(", ")
                ),
                "the SLO-scale panel re-scores the results of one measured rate",
            );
        }
    }

    // Target.
    let t = &m.target;
    if let manifest::Gpus::List(list) = &t.gpus {
        for (i, g) in list.iter().enumerate() {
            if list[..i].contains(g) {
                return err(
                    path!["target", "gpus", i],
                    format!("GPU {g} is listed twice"),
                    "",
                );
            }
        }
    }
    check_api_key(m, &err)?;
    if let Some(name) = &t.api_key_env {
        if std::env::var_os(name).is_none() {
            warnings.push(format!(
                "target.api_key_env: ${name} is not set in this shell, and `apply` needs it"
            ));
        }
    }
    if t.cpu_cores_per_instance == 0 {
        return err(
            path!["target", "cpu_cores_per_instance"],
            "cpu_cores_per_instance must be at least 1".into(),
            "",
        );
    }
    if !limits::is_wait(t.health_timeout_s, false) {
        return err(
            path!["target", "health_timeout_s"],
            format!(
                "health_timeout_s {} must be positive and at most {} (a week)",
                limits::show(t.health_timeout_s),
                limits::MAX_WAIT_S
            ),
            "vLLM can take minutes to start; e.g. 600",
        );
    }
    if t.slurm.is_some() && t.backend != Backend::Slurm {
        return err(
            path!["target", "slurm"],
            "[target.slurm] is set but backend is not \"slurm\"".into(),
            "set backend = \"slurm\", or remove [target.slurm]",
        );
    }
    if let Some(s) = &t.slurm {
        if s.nodes == 0 {
            return err(
                path!["target", "slurm", "nodes"],
                "nodes must be at least 1".into(),
                "",
            );
        }
        let [first, last] = s.port_range;
        if first < 1024 || first > last {
            return err(
                path!["target", "slurm", "port_range"],
                format!("port_range [{first}, {last}] is not a range of unprivileged ports"),
                "give [first, last] with 1024 <= first <= last, e.g. [20000, 29999]",
            );
        }
    }
    if m.report.formats.is_empty() {
        return err(
            path!["report", "formats"],
            "report.formats is empty".into(),
            "e.g. formats = [\"pdf\", \"svg\", \"png\"]",
        );
    }
    if m.deployments.is_empty() {
        return err(
            path![],
            "the manifest declares no [[deployment]]".into(),
            "add at least one, e.g.\n[[deployment]]\nmode = \"simple\"",
        );
    }
    Ok(())
}

/// `target.api_key_env` is a variable's name, and no instance is given vLLM's own key setting
/// (`VLLM_API_KEY`, `--api-key`) behind vbench's back: vLLM would then refuse every request
/// vbench sends, since vbench would not know the key.
fn check_api_key(m: &manifest::Manifest, err: Located) -> Result<(), ManifestError> {
    if let Some(name) = &m.target.api_key_env {
        if !manifest::env_value::valid_name(name) {
            return err(
                path!["target", "api_key_env"],
                format!("api_key_env {name:?} is not the name of an environment variable"),
                "letters, digits and `_`, not starting with a digit, e.g. \"VBENCH_API_KEY\"",
            );
        }
    }
    let help = "export the key in the shell that runs vbench and name that variable in \
                target.api_key_env: vbench then gives it to every instance as VLLM_API_KEY and \
                sends it with every request";
    let key_var = manifest::VLLM_API_KEY_VAR;
    let said = |p: Vec<manifest::Seg>, what: &str| {
        err(
            p,
            format!("{what} sets vLLM's API key, which vbench would not send with its requests"),
            help,
        )
    };
    if m.target.env.contains_key(key_var) {
        return said(
            path!["target", "env", key_var],
            &format!("target.env.{key_var}"),
        );
    }
    for (i, d) in m.deployments.iter().enumerate() {
        let router = d
            .proxy
            .as_ref()
            .is_some_and(|p| p.values().contains(&manifest::ProxyKind::VllmRouter));
        if router && m.target.api_key_env.is_some() {
            return err(
                path!["deployment", i, "proxy"],
                "vllm-router does not pass a client's API key on, and takes the instances' \
                 key only on its command line, which `ps` shows and vbench records"
                    .into(),
                "use proxy = \"builtin\" (it passes each request's key on), or drop \
                 target.api_key_env",
            );
        }
        let roles = [(None, &d.env, &d.extra_args)].into_iter().chain(
            [("prefill", &d.prefill), ("decode", &d.decode)]
                .into_iter()
                .filter_map(|(name, r)| r.as_ref().map(|r| (Some(name), &r.env, &r.extra_args))),
        );
        for (role, env, args) in roles {
            let at = |rest: Vec<manifest::Seg>| {
                let mut p = path!["deployment", i];
                p.extend(role.map(manifest::Seg::from));
                p.extend(rest);
                p
            };
            if env.contains_key(key_var) {
                return said(at(path!["env", key_var]), key_var);
            }
            if let Some(j) = args
                .iter()
                .position(|a| a == "--api-key" || a.starts_with("--api-key="))
            {
                return said(at(path!["extra_args", j]), "--api-key");
            }
        }
    }
    Ok(())
}

/// The dataset's keys make sense for its kind.
fn check_dataset(
    loaded: &LoadedManifest,
    err: Located,
    warnings: &mut Vec<String>,
) -> Result<(), ManifestError> {
    use manifest::DatasetKind::{self, *};
    let d = &loaded.manifest.dataset;
    if d.kind == Random && d.path.is_some() {
        return err(
            path!["dataset", "path"],
            "a random dataset is generated, it has no `path`".into(),
            "remove path, or use kind = \"sharegpt\" or \"jsonl\"",
        );
    }
    // Which kinds each optional key applies to.
    let applies: [(&str, bool, &[DatasetKind]); 11] = [
        (
            "path",
            d.path.is_some(),
            &[Sharegpt, Jsonl, Trace, Sessions],
        ),
        ("input_len", d.input_len.is_some(), &[Random]),
        ("range_ratio", d.range_ratio.is_some(), &[Random]),
        ("groups", d.groups.is_some(), &[SharedPrefix]),
        (
            "system_prompt_len",
            d.system_prompt_len.is_some(),
            &[SharedPrefix, Sessions],
        ),
        (
            "question_len",
            d.question_len.is_some(),
            &[SharedPrefix, Sessions],
        ),
        ("format", d.format.is_some(), &[Trace]),
        ("block_size", d.block_size.is_some(), &[Trace]),
        ("turns", d.turns.is_some(), &[Sessions]),
        ("think_time_s", d.think_time_s.is_some(), &[Sessions]),
        ("think_time", d.think_time.is_some(), &[Sessions]),
    ];
    for (key, given, kinds) in applies {
        if given && !kinds.contains(&d.kind) {
            let names: Vec<String> = kinds
                .iter()
                .map(|k| format!("\"{}\"", k.as_str()))
                .collect();
            return err(
                path!["dataset", key],
                format!("`{key}` only applies to kind = {}", names.join(" or ")),
                &format!("remove it, or use kind = {}", names.join(" or ")),
            );
        }
    }
    // Which keys each kind needs.
    let needs: &[(&str, Option<u32>)] = match d.kind {
        Random => &[("input_len", d.input_len), ("output_len", d.output_len)],
        SharedPrefix => &[
            ("groups", d.groups),
            ("system_prompt_len", d.system_prompt_len),
            ("question_len", d.question_len),
            ("output_len", d.output_len),
        ],
        Sessions if d.path.is_none() => &[
            ("turns", d.turns),
            ("question_len", d.question_len),
            ("output_len", d.output_len),
        ],
        Sharegpt | Jsonl | Trace | Sessions => &[],
    };
    for (key, v) in needs {
        match v {
            None => {
                return err(
                    path!["dataset", "kind"],
                    format!("kind = \"{}\" needs `{key}`", d.kind.as_str()),
                    match d.kind {
                        Random => "e.g. input_len = 1024 and output_len = 128",
                        Sessions => "synthetic sessions: e.g. turns = 4, question_len = 64, output_len = 128; or path = a ShareGPT file",
                        _ => "e.g. groups = 8, system_prompt_len = 1024, question_len = 64, output_len = 128",
                    },
                )
            }
            Some(0) => {
                return err(
                    path!["dataset", *key],
                    format!("`{key}` must be at least 1"),
                    "",
                )
            }
            Some(_) => {}
        }
    }
    let counts = [
        ("input_len", d.input_len, limits::MAX_TOKENS),
        ("output_len", d.output_len, limits::MAX_TOKENS),
        ("system_prompt_len", d.system_prompt_len, limits::MAX_TOKENS),
        ("question_len", d.question_len, limits::MAX_TOKENS),
        ("turns", d.turns, limits::MAX_TURNS),
        ("groups", d.groups, limits::MAX_GROUPS),
    ];
    for (key, v, max) in counts {
        if let Some(n) = v.filter(|&n| u64::from(n) > max) {
            return err(
                path!["dataset", key],
                format!("`{key}` = {n} is more than vbench takes ({max})"),
                "",
            );
        }
    }
    if d.output_len == Some(0) {
        return err(
            path!["dataset", "output_len"],
            "`output_len` must be at least 1 token".into(),
            "",
        );
    }
    if let Some(r) = d.range_ratio {
        if !(0.0..1.0).contains(&r) {
            return err(
                path!["dataset", "range_ratio"],
                format!("range_ratio {r} must be in [0, 1)"),
                "lengths are drawn from [len*(1-r), len*(1+r)]",
            );
        }
    }
    if d.kind == Sessions {
        check_sessions(d, err)?;
    }
    if d.kind == Trace {
        if d.format.is_none() {
            return err(
                path!["dataset", "kind"],
                "kind = \"trace\" needs a `format`".into(),
                "format = \"mooncake\", \"azure\" or \"burstgpt\"",
            );
        }
        if d.block_size.is_some() && d.format != Some(manifest::TraceFormat::Mooncake) {
            return err(
                path!["dataset", "block_size"],
                "`block_size` sizes the `hash_ids` blocks of a mooncake trace; this format has none"
                    .into(),
                "remove it",
            );
        }
        if d.block_size == Some(0) {
            return err(
                path!["dataset", "block_size"],
                "`block_size` must be at least 1 token".into(),
                "Mooncake's traces use 512",
            );
        }
    }
    if let Some(p) = &d.path {
        let full = loaded.base_dir().join(p);
        if !full.exists() {
            warnings.push(format!(
                "dataset file {} does not exist yet; apply will refuse to start without it",
                full.display()
            ));
        }
    } else if matches!(d.kind, Sharegpt | Jsonl | Trace) {
        return err(
            path!["dataset", "kind"],
            format!("dataset kind `{}` needs a `path`", d.kind.as_str()),
            "add path = \"data/sharegpt.json\" (relative to the manifest's folder)",
        );
    }
    Ok(())
}

/// A sessions dataset's keys: what a ShareGPT source brings itself, and the think times.
fn check_sessions(d: &manifest::Dataset, err: Located) -> Result<(), ManifestError> {
    if d.path.is_some() {
        for (key, given) in [
            ("question_len", d.question_len.is_some()),
            ("system_prompt_len", d.system_prompt_len.is_some()),
        ] {
            if given {
                return err(
                    path!["dataset", key],
                    format!(
                        "`{key}` sizes synthetic sessions, but `path` reads the messages of a \
                         ShareGPT file"
                    ),
                    "remove it, or remove `path` for synthetic sessions",
                );
            }
        }
    }
    for (key, v) in [
        ("turns", d.turns),
        ("system_prompt_len", d.system_prompt_len),
    ] {
        if v == Some(0) {
            return err(
                path!["dataset", key],
                format!("`{key}` must be at least 1"),
                if key == "turns" {
                    ""
                } else {
                    "leave it out for sessions without a system prompt"
                },
            );
        }
    }
    match (d.think_time_s, d.think_time) {
        (Some(t), _) if !limits::is_wait(t, true) => err(
            path!["dataset", "think_time_s"],
            format!(
                "think_time_s {} must be a number of seconds from 0 to {} (a week)",
                limits::show(t),
                limits::MAX_WAIT_S
            ),
            "the mean time between an answer and the next turn, e.g. 2.0",
        ),
        (None, Some(_)) => err(
            path!["dataset", "think_time"],
            "`think_time` shapes think times around `think_time_s`, which is not given".into(),
            "add think_time_s = 2.0 (the mean, seconds), or remove think_time",
        ),
        _ => Ok(()),
    }
}

/// `speedups` replay a trace: positive, distinct, and nothing that paces arrivals otherwise.
fn check_speedups(loaded: &LoadedManifest, err: Located) -> Result<(), ManifestError> {
    let m = &loaded.manifest;
    if m.dataset.kind != manifest::DatasetKind::Trace {
        return err(
            path!["load", "speedups"],
            format!(
                "`speedups` replay a trace's arrival times, but the dataset is kind = \"{}\"",
                m.dataset.kind.as_str()
            ),
            "use rates = [...] for this dataset, or kind = \"trace\"",
        );
    }
    let speedups = m.load.speedups();
    for (i, s) in speedups.iter().enumerate() {
        if !(s.is_finite() && *s > 0.0) {
            return err(
                path!["load", "speedups", i],
                format!("speedup {s} must be a positive factor"),
                "1 replays the trace as recorded, 2 twice as fast",
            );
        }
        if speedups[..i].contains(s) {
            return err(
                path!["load", "speedups", i],
                format!("speedup {s} appears twice in load.speedups"),
                "remove the duplicate",
            );
        }
    }
    if m.load.burstiness.is_some() || written(loaded, "arrival") {
        let key = if m.load.burstiness.is_some() {
            "burstiness"
        } else {
            "arrival"
        };
        return err(
            path!["load", key],
            format!("`{key}` shapes vbench's arrival process, but `speedups` replay the trace's own arrival times"),
            "remove it, or use rates = [...] to pace the trace's requests by vbench's arrival process",
        );
    }
    Ok(())
}

/// Whether `[load]` spells out `key` (a key with a default cannot tell otherwise).
fn written(loaded: &LoadedManifest, key: &str) -> bool {
    toml::from_str::<toml::Value>(&loaded.source.text)
        .ok()
        .and_then(|v| v.get("load")?.get(key).cloned())
        .is_some()
}

fn arrival_name(a: manifest::Arrival) -> &'static str {
    match a {
        manifest::Arrival::Poisson => "poisson",
        manifest::Arrival::Gamma => "gamma",
        manifest::Arrival::Constant => "constant",
    }
}

/// Sweep-axis values a variant took, for `Variant::sweep`.
pub(crate) type SweepValues = BTreeMap<String, serde_json::Value>;
