//! Reading result files written by vbench, by the original script suite and by
//! `vllm bench serve --save-result [--save-detailed]` into one in-memory model.
//!
//! Each input path is one *run*: a vbench run folder, a folder of `vllm-<rate>qps-*.json` files
//! (original suite), a folder of vLLM result files, or a single file. A run holds one or more
//! *variants* (one deployment each), and a variant holds one *rate point* per result file.
//!
//! Leniency rules: a file that cannot be read or understood is reported by name in
//! [`Imported::skipped`] and skipped; every other file is still read. Bare `NaN`/`Infinity`
//! tokens (Python's `json.dump` writes them) are read as `null`.
//!
//! Failed requests: vLLM keeps failed requests' slots in its arrays with `ttft = 0` and an
//! `errors` string. A request is failed when its `errors` entry is non-empty, or, when the file
//! has no `errors` array, when its TTFT is not positive. A zero TTFT is never counted as fast.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

mod file;

use file::read_file;
pub use file::{peek, Peek};

use crate::results::rundir::{self, MissingCell, RunDir};
use crate::results::Environment;

/// Which tool wrote a result file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// vbench's own file, with raw per-request records under `vbench.requests`.
    Vbench,
    /// The original script suite (`deployment_mode`, `tpots`, ... beside vLLM's keys).
    OriginalSuite,
    /// `vllm bench serve --save-result`, with or without `--save-detailed`.
    VllmBenchServe,
}

/// One request as the report needs it. Times in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Succeeded (HTTP 200, at least one token, stream ended properly).
    pub ok: bool,
    pub ttft_s: Option<f64>,
    /// None when undefined (failed, or fewer than two output tokens).
    pub tpot_s: Option<f64>,
    pub e2e_s: Option<f64>,
    /// Output tokens, when known.
    pub output_tokens: Option<u64>,
    /// Multi-turn sessions: (session, turn) of this request; None for other workloads.
    pub session_turn: Option<(u64, u32)>,
}

/// Client-side schedule keeping, as recorded by vbench (absent for other tools' files).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
///
/// The numbers are copied from the result file's `vbench.client`; one the file lacks (or
/// wrote as null) is NaN here, which summary.json writes as `null`.
pub struct ClientInfo {
    /// Requests actually sent per second over the send window.
    #[schemars(with = "Option<f64>")]
    pub achieved_rate: f64,
    #[schemars(with = "Option<f64>")]
    pub lag_p50_ms: f64,
    #[schemars(with = "Option<f64>")]
    pub lag_p99_ms: f64,
    #[schemars(with = "Option<f64>")]
    pub lag_max_ms: f64,
    #[schemars(with = "Option<f64>")]
    pub lag_threshold_ms: f64,
    pub client_fell_behind: bool,
}

/// What the instances that compute prompts reused of a point's prompt tokens (from the result
/// file's `vbench.cache_reuse`; several repeats are summed).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct CacheInfo {
    /// `instance` (one instance serves whole requests) or `prefill`.
    pub role: String,
    pub prompt_tokens: f64,
    /// From the instances' own prefix cache.
    pub local_hit_tokens: f64,
    /// From a KV connector (LMCache; NIXL brings KV to decoders, not here).
    pub external_tokens: f64,
    /// Share (%) of prompt tokens not computed: (local + external) / prompt tokens.
    pub reused_pct: f64,
    /// Share (%) a prefix cache that never evicts could have served, from the prompts
    /// themselves; null where vbench could not compute it.
    pub ideal_pct: Option<f64>,
    #[serde(skip)]
    pub ideal_tokens: Option<(f64, f64)>,
}

impl CacheInfo {
    pub fn new(
        role: String,
        prompt_tokens: f64,
        local_hit_tokens: f64,
        external_tokens: f64,
        ideal_tokens: Option<(f64, f64)>,
    ) -> CacheInfo {
        let pct = |part: f64, whole: f64| {
            if whole > 0.0 {
                100.0 * part / whole
            } else {
                0.0
            }
        };
        CacheInfo {
            reused_pct: pct(local_hit_tokens + external_tokens, prompt_tokens),
            ideal_pct: ideal_tokens.map(|(prompt, hit)| pct(hit, prompt)),
            role,
            prompt_tokens,
            local_hit_tokens,
            external_tokens,
            ideal_tokens,
        }
    }

    /// Two repeats of one point together (the ideal only when both have one).
    pub fn merged(&self, o: &CacheInfo) -> CacheInfo {
        let ideal = match (self.ideal_tokens, o.ideal_tokens) {
            (Some(a), Some(b)) => Some((a.0 + b.0, a.1 + b.1)),
            _ => None,
        };
        CacheInfo::new(
            self.role.clone(),
            self.prompt_tokens + o.prompt_tokens,
            self.local_hit_tokens + o.local_hit_tokens,
            self.external_tokens + o.external_tokens,
            ideal,
        )
    }
}

/// Summary latencies as written in the file (milliseconds), used when per-request arrays are
/// missing (`vllm bench serve --save-result` without `--save-detailed`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct FileSummary {
    pub median_ttft_ms: Option<f64>,
    pub p99_ttft_ms: Option<f64>,
    pub median_tpot_ms: Option<f64>,
    pub p99_tpot_ms: Option<f64>,
    pub median_itl_ms: Option<f64>,
    pub p99_itl_ms: Option<f64>,
    pub median_e2el_ms: Option<f64>,
    pub p99_e2el_ms: Option<f64>,
}

/// One result file: one variant at one offered rate.
#[derive(Debug, Clone, PartialEq)]
pub struct RatePoint {
    pub path: PathBuf,
    /// Offered request rate (requests/s).
    pub rate: f64,
    /// Per-request samples; empty when the file has no per-request data.
    pub samples: Vec<Sample>,
    /// Every inter-token gap of every successful request, seconds.
    pub itls_s: Vec<f64>,
    /// True when `samples` came from per-request data (attainment is computable).
    pub per_request: bool,
    pub num_requests: u64,
    pub completed: u64,
    pub failed: u64,
    pub duration_s: Option<f64>,
    pub request_throughput: Option<f64>,
    pub output_throughput: Option<f64>,
    pub client: Option<ClientInfo>,
    /// Prompt-token reuse at the computing instances (vbench results written by `apply`).
    pub cache: Option<CacheInfo>,
    /// NIXL's KV transfers (vbench results of NIXL deployments written by `apply`).
    pub kv_transfer: Option<crate::load::result::KvTransfer>,
    /// Each role's KV cache: size, peak use, preemptions (vbench results written by `apply`).
    pub kv_cache: Option<crate::load::result::KvCache>,
    pub file_summary: FileSummary,
    /// Failure counts by kind (`http`, `timeout`, ... or the error text's first words).
    pub failures_by_kind: BTreeMap<String, u64>,
    /// The warnings `apply` recorded with the result (`vbench.load.warnings`).
    pub warnings: Vec<String>,
    /// What each GPU did (`vbench.gpus`, local CUDA runs of `apply`).
    pub gpus: Vec<crate::load::result::GpuTelemetry>,
}

/// One deployment with its rate points, sorted by rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// Stable key within its run: the planner's variant id, else a slug of the label.
    pub key: String,
    /// `simple`, `nixl`, `lmcache`, `external`, ...
    pub mode: String,
    /// Human label, e.g. `nixl PF:2 D:1 TP:1x1`.
    pub label: String,
    pub gpus: u32,
    /// False when the file did not say (per-GPU rates then assume 1 GPU).
    pub gpus_known: bool,
    pub simulated: bool,
    pub model: String,
    pub dataset: String,
    pub source: SourceKind,
    pub points: Vec<RatePoint>,
    /// A vbench `[load.search]`'s outcome (its `search.json`), when the variant ran one.
    pub search: Option<rundir::SearchSummary>,
}

/// One input path.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub path: PathBuf,
    /// Name for file names and titles: the manifest's `name`, else the folder or file name.
    pub name: String,
    pub variants: Vec<Variant>,
    /// What `apply` recorded about where and how the run happened (`environment.json`).
    pub environment: Option<Environment>,
    /// The same for each `apply --resume` of the run, oldest first: a resume may run on
    /// another host or with other versions.
    pub resumes: Vec<Environment>,
    /// Cells the run's `plan.json` planned that have no result file: an interrupted run, a
    /// variant that failed to start, or one left out with `--only`.
    pub missing_cells: Vec<MissingCell>,
    /// Variants the run's plan left out: the target was too small for them.
    pub not_run: Vec<rundir::SkippedRecord>,
}

/// A file that was not used, and why.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Skipped {
    /// The file's path as given or found.
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Imported {
    pub runs: Vec<Run>,
    pub skipped: Vec<Skipped>,
}

/// Read every input path. A path that does not exist is an error (bad input); a file inside
/// that cannot be read is skipped and listed.
pub fn import_paths(paths: &[PathBuf]) -> anyhow::Result<Imported> {
    let mut out = Imported::default();
    for path in paths {
        if !path.exists() {
            anyhow::bail!("{} does not exist", path.display());
        }
        let run_dir = RunDir::open(path);
        let mut files = rundir::result_files(path);
        // In a vbench run folder only the plan's results count (a copy of one would be taken
        // for one more repeat and narrow every interval).
        if let Ok(Some(plan)) = run_dir.read_plan() {
            files.retain(|f| {
                let planned = run_dir.is_planned_result(&plan, f);
                if !planned {
                    out.skipped.push(Skipped {
                        path: f.clone(),
                        reason: "not a result this run planned (a copy, or a stray file); \
                                 only the plan's result files are read from a run folder"
                            .into(),
                    });
                }
                planned
            });
        }
        let mut parsed = Vec::new();
        for (file, r) in files.iter().zip(par_map(&files, |f| read_file(f))) {
            match r {
                Ok(p) => parsed.push(p),
                Err(reason) => out.skipped.push(Skipped {
                    path: file.clone(),
                    reason,
                }),
            }
        }
        let mut variants = group_variants(parsed);
        for v in &mut variants {
            match run_dir.variant(&v.key).read_search() {
                Some(Ok(search)) => v.search = Some(search),
                Some(Err(reason)) => out.skipped.push(Skipped {
                    path: path.join(&v.key),
                    reason,
                }),
                None => {}
            }
        }
        let environment = run_dir.read_environment().unwrap_or_else(|reason| {
            out.skipped.push(Skipped {
                path: path.join(rundir::ENVIRONMENT),
                reason,
            });
            None
        });
        let mut resumes = Vec::new();
        for (file, record) in run_dir.read_resume_environments() {
            match record {
                Ok(e) => resumes.push(e),
                Err(reason) => out.skipped.push(Skipped { path: file, reason }),
            }
        }
        let (missing_cells, not_run) = match run_dir.coverage() {
            Ok(coverage) => coverage.map(|c| (c.missing, c.skipped)).unwrap_or_default(),
            Err(reason) => {
                out.skipped.push(Skipped {
                    path: path.join(rundir::PLAN),
                    reason,
                });
                (Vec::new(), Vec::new())
            }
        };
        out.runs.push(Run {
            path: path.clone(),
            name: run_name(path),
            variants,
            environment,
            resumes,
            missing_cells,
            not_run,
        });
    }
    dedupe_run_names(&mut out.runs);
    Ok(out)
}

/// `f` over `items` on every core, results in order. Parsing JSON is the importer's cost.
pub(crate) fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(items.len());
    if workers <= 1 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(workers);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| s.spawn(|| c.iter().map(&f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// The manifest's `name` when the folder has a manifest.toml, else the folder or file stem.
fn run_name(path: &Path) -> String {
    if path.is_dir() {
        if let Some(name) = RunDir::open(path).manifest_extract().name {
            return name;
        }
    }
    let stem = if path.is_dir() {
        path.file_name()
    } else {
        path.file_stem()
    };
    stem.map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".to_string())
}

/// Two inputs with the same name (two runs of one experiment) get a numeric suffix.
fn dedupe_run_names(runs: &mut [Run]) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for run in runs.iter_mut() {
        let n = seen.entry(run.name.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            run.name = format!("{}_{}", run.name, n);
        }
    }
}

/// A parsed file before grouping.
struct Parsed {
    group: String,
    variant: Variant,
    point: RatePoint,
}

fn group_variants(parsed: Vec<Parsed>) -> Vec<Variant> {
    let mut groups: BTreeMap<String, Variant> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for p in parsed {
        match groups.get_mut(&p.group) {
            Some(v) => {
                v.simulated |= p.variant.simulated;
                v.points.push(p.point);
            }
            None => {
                let mut v = p.variant;
                v.points.push(p.point);
                order.push(p.group.clone());
                groups.insert(p.group, v);
            }
        }
    }
    let mut out: Vec<Variant> = order
        .into_iter()
        .filter_map(|k| groups.remove(&k))
        .collect();
    for v in &mut out {
        v.points
            .sort_by(|a, b| a.rate.total_cmp(&b.rate).then(a.path.cmp(&b.path)));
    }
    // Keys must be unique within a run: they name files.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for v in &mut out {
        let n = seen.entry(v.key.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            v.key = format!("{}-{}", v.key, n);
        }
    }
    out.sort_by(|a, b| {
        mode_rank(&a.mode)
            .cmp(&mode_rank(&b.mode))
            .then(a.gpus.cmp(&b.gpus))
            .then(a.label.cmp(&b.label))
    });
    out
}

/// Display order of modes: simple, nixl, lmcache, then others alphabetically.
pub fn mode_rank(mode: &str) -> (u8, String) {
    match mode {
        "simple" => (0, String::new()),
        "nixl" => (1, String::new()),
        "lmcache" => (2, String::new()),
        other => (3, other.to_string()),
    }
}

/// A lowercase file-name-safe form of `s` (keeps `_` and `.`, so the original suite's folder
/// names such as `simple_20250101_120000` survive as they are).
pub fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        out.push_str("run");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_is_file_name_safe() {
        assert_eq!(slug("nixl PF:2 D:1 TP:1x1"), "nixl-pf-2-d-1-tp-1x1");
        assert_eq!(slug("<script>"), "script");
        assert_eq!(slug("///"), "run");
    }
}
