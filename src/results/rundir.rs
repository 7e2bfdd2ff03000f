//! The run folder, `results/<experiment>/<YYYYMMDD_HHMMSS>/`: the one owner of its layout.
//!
//! ```text
//! <run>/manifest.toml                  exact copy of what ran
//! <run>/plan.json                      the resolved plan (variants, cells)
//! <run>/inputs.json                    size and sha256 of the dataset file and tokenizer
//! <run>/environment.json               versions, GPUs, host, git state (written once the
//!                                      `vllm --version` probe answers, as the first variant starts)
//! <run>/environment-resume-<T>.json    the same, for each `apply --resume`
//! <run>/<variant>/deployment.json      resolved commands (secrets redacted), ports, GPUs
//! <run>/<variant>/deployment-resume-<T>.json, teardown-resume-<T>.json   a resumed attempt's
//! <run>/<variant>/logs/<component>.log
//! <run>/<variant>/lmcache-<component>.yaml   LMCache config (named by `exec::deploy` in the
//!                                      folder it is given: this one, or for a resumed attempt
//!                                      <run>/<variant>/configs-resume-<T>/, as its ports may differ)
//! <run>/<variant>/metrics/             /metrics before/after each rate, gauge samples
//! <run>/<variant>/vllm-<rate>qps.json  one result file per cell (named by the plan)
//! <run>/<variant>/aborted/vllm-<rate>qps[-resume-<T>].json   a cell during which a component
//!                                      died (kept; not a result; measured again on resume)
//! <run>/<variant>/teardown.json        how each component stopped
//! <run>/<variant>/vllm-<rate>qps-search<k>.json   the k-th batch of a `[load.search]`
//! <run>/<variant>/search.json          how the search went: every probe, the bracket
//!                                      (search-resume-<T>.json when a resume finished it)
//! <run>/<variant>/timing.json          how long start-up, each rate and teardown took, and the
//!                                      plan's estimate (timing-resume-<T>.json for a resume)
//! <run>/<variant>/FAILED.txt           why the variant failed
//! <run>/.apply.lock                    held by the `apply` running here (its pid, the run's mark)
//! <run>/report/                        the report (`apply` replaces it whole, through a hidden
//!                                      `.report-new-<pid>/` beside it)
//! ```
//!
//! Every writer and reader of these names goes through this module: `apply` writes them,
//! `report` and `ls` walk them, and [`is_result_file`] is the single answer to "is this file a
//! result?". Files are written atomically and never overwritten (see [`super::store`]).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::environment::Environment;
use super::inputs::Inputs;
use super::redact;
use super::store::{
    write_bytes_new, write_json_new, write_json_new_reserved, SpaceReserve, MAX_RECORD_BYTES,
};
use crate::bounded_file::read_bounded;
use crate::load::RunResult;
use crate::manifest::{self, LoadedManifest};
use crate::plan::{Cell, Plan};

pub const MANIFEST: &str = "manifest.toml";
pub const PLAN: &str = "plan.json";
/// Fingerprints of the run's dataset file and tokenizer ([`super::inputs`]).
const INPUTS: &str = "inputs.json";
pub const ENVIRONMENT: &str = "environment.json";
pub const REPORT_DIR: &str = "report";
const DEPLOYMENT: &str = "deployment";
const TEARDOWN: &str = "teardown";
const TIMING: &str = "timing";
const SEARCH: &str = "search";
const FAILED: &str = "FAILED.txt";
/// Held (flock) by the `apply` that runs in the folder; hidden, so no walk reads it.
const LOCK: &str = ".apply.lock";
const LOGS_DIR: &str = "logs";
const METRICS_DIR: &str = "metrics";
/// Results of cells during which a component died: kept for the record, never read as
/// results (the cell is measured again on `--resume`).
const ABORTED_DIR: &str = "aborted";
/// Written by the report into its own folder; a report folder is never walked for results,
/// but a stray copy elsewhere is not a result either.
const SUMMARY: &str = "summary.json";
/// Folders of a run that hold no result files.
const NOT_RESULT_DIRS: &[&str] = &[REPORT_DIR, LOGS_DIR, METRICS_DIR, ABORTED_DIR];
/// A resumed attempt's records carry this between the base name and `.json`.
const RESUME_TAG: &str = "-resume-";

/// The name a cell's metrics files carry, `metrics/<tag>-…`: its result file's name without
/// `vllm-` and `.json` (`8qps`, `8qps-repeat2`, `8qps-search3`), so repeats and search
/// batches of one rate keep their own.
pub fn cell_tag(cell: &Cell) -> String {
    let f = cell.result_file.as_str();
    f.strip_prefix("vllm-")
        .and_then(|f| f.strip_suffix(".json"))
        .unwrap_or(f)
        .to_owned()
}

/// Whether a file (by name) in a run folder, or in any folder given to the report, may hold
/// results: every `*.json` except vbench's own bookkeeping (plan, environment, deployment,
/// teardown, timing and summary records, including a resumed attempt's). Other tools' result files
/// have free-form names, so anything else that ends in `.json` is a candidate.
pub fn is_result_file(name: &str) -> bool {
    name.ends_with(".json") && !is_bookkeeping(name)
}

/// vbench's own records, by name: `plan.json`, `environment[-resume-T].json`,
/// `deployment[-resume-T].json`, `teardown[-resume-T].json`, `timing[-resume-T].json`,
/// `summary.json`.
fn is_bookkeeping(name: &str) -> bool {
    if name == PLAN || name == SUMMARY || name == INPUTS {
        return true;
    }
    let Some(stem) = name.strip_suffix(".json") else {
        return false;
    };
    [
        ENVIRONMENT.trim_end_matches(".json"),
        DEPLOYMENT,
        TEARDOWN,
        TIMING,
        SEARCH,
    ]
    .iter()
    .any(|base| match stem.strip_prefix(base) {
        Some("") => true,
        Some(rest) => rest.starts_with(RESUME_TAG),
        None => false,
    })
}

/// Whether a sub-folder of a run can hold results (not `report*/`, `logs/`, `metrics/`, hidden).
fn may_hold_results(dir_name: &str) -> bool {
    !NOT_RESULT_DIRS.contains(&dir_name)
        && !dir_name.starts_with("report-")
        && !dir_name.starts_with('.')
}

/// Every result file under `path` (itself when a file), sorted. Folders are walked four
/// levels deep at most, skipping those that hold no results.
pub fn result_files(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if !path.is_dir() {
        // A file given by name is read (or refused, with the reason) whatever its name.
        out.push(path.to_path_buf());
        return out;
    }
    walk(path, 0, &mut out);
    out.sort();
    out
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if depth > 4 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let p = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        // A link to a folder is not followed: one to `.` or `/` would read results twice, or
        // the whole file system. (Anything else named like a result is read, or refused by
        // name: a FIFO, a device, a link to one.)
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if may_hold_results(&name) {
                walk(&p, depth + 1, out);
            }
        } else if !(kind.is_symlink() && p.is_dir()) && is_result_file(&name) {
            out.push(p);
        }
    }
}

/// Figure files (pdf, png, svg) anywhere under a run folder.
pub fn figure_count(dir: &Path) -> usize {
    fn count(dir: &Path, depth: usize) -> usize {
        if depth > 4 {
            return 0;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        let mut n = 0;
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_ascii_lowercase();
            let Ok(kind) = e.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if name != LOGS_DIR && name != METRICS_DIR {
                    n += count(&p, depth + 1);
                }
            } else if kind.is_file() && [".pdf", ".png", ".svg"].iter().any(|x| name.ends_with(x)) {
                n += 1;
            }
        }
        n
    }
    count(dir, 0)
}

/// One run folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// A fresh run folder under `results/<experiment>/`. Two runs in the same second get
    /// `_2`, `_3`, ... rather than sharing a folder.
    pub fn create(
        results: &Path,
        experiment: &str,
        now: chrono::DateTime<chrono::Local>,
    ) -> anyhow::Result<RunDir> {
        let parent = results.join(experiment);
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let stamp = now.format("%Y%m%d_%H%M%S").to_string();
        for n in 1..1000 {
            let name = if n == 1 {
                stamp.clone()
            } else {
                format!("{stamp}_{n}")
            };
            let dir = parent.join(name);
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(RunDir { path: dir }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
            }
        }
        bail!(
            "could not create a new run folder under {}",
            parent.display()
        )
    }

    /// An existing folder (a run folder, or any folder of results given to the report).
    pub fn open(path: &Path) -> RunDir {
        RunDir {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Take the folder for one `apply` (a new run or a `--resume`): a second `apply` in the
    /// same folder is refused, naming the process that holds it. Released when the returned
    /// guard is dropped, or by the kernel when the process dies, however it dies.
    pub fn lock(&self) -> anyhow::Result<RunLock> {
        use crate::exec::flock::{Attempt, Flock};
        let path = self.path.join(LOCK);
        let mut lock =
            match Flock::try_take(&path).with_context(|| format!("opening {}", path.display()))? {
                Attempt::Held(lock) => lock,
                Attempt::Taken { record } => {
                    return Err(Locked {
                        run: self.path.clone(),
                        holder: LockRecord::parse(&record).pid,
                    }
                    .into())
                }
            };
        // The mark outlives each apply: it names the run's processes for the next one. But a
        // record whose vbench is alive though it does not hold this lock was copied with the
        // folder from a live run: its mark names that run's processes, which this folder's
        // resume or clean must never stop, so the copy gets a mark of its own.
        let previous = LockRecord::parse(&lock.record());
        let copy_of_live = previous.pid.filter(|&pid| {
            pid != std::process::id()
                && i32::try_from(pid).is_ok_and(crate::exec::leftovers::is_live_vbench)
        });
        let mark = match (previous.mark, copy_of_live) {
            (Some(mark), None) => mark,
            _ => crate::exec::leftovers::new_mark(),
        };
        lock.set_record(&format!("pid={}\nmark={mark}\n", std::process::id()))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(RunLock {
            _lock: lock,
            mark,
            copy_of_live,
        })
    }

    /// Hold `bytes` of disk on the folder's file system for the result of a cell measured as
    /// the disk fills (see [`SpaceReserve`]; it leaves no file behind).
    pub fn hold_reserve(&self, bytes: u64) -> anyhow::Result<SpaceReserve> {
        SpaceReserve::hold(&self.path, bytes)
    }

    /// The records a new run starts with: the manifest as on disk and the plan (the
    /// environment follows with [`Self::write_environment`]).
    pub fn write_start(&self, loaded: &LoadedManifest, plan: &Plan) -> anyhow::Result<()> {
        write_bytes_new(&self.path.join(MANIFEST), loaded.original_text.as_bytes())?;
        write_json_new(&self.path.join(INPUTS), &Inputs::of(loaded)?)?;
        write_json_new(&self.path.join(PLAN), &redacted(plan)?)
    }

    /// `environment.json` for the first attempt; a resumed run keeps it and adds
    /// `environment-resume-<T>.json` per resume.
    pub fn write_environment(&self, attempt: &Attempt, env: &Environment) -> anyhow::Result<()> {
        write_json_new(
            &self
                .path
                .join(attempt.file(ENVIRONMENT.trim_end_matches(".json"))),
            env,
        )
    }

    /// A run folder can be resumed with the manifest and overrides it started with.
    pub fn check_resumable(&self, loaded: &LoadedManifest) -> anyhow::Result<()> {
        let dir = &self.path;
        let stored = read_bounded(&dir.join(MANIFEST), MAX_RECORD_BYTES)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|why| {
                anyhow::anyhow!(
                    "--resume {}: {MANIFEST} there: {why}; is it a run folder?",
                    dir.display()
                )
            })?;
        if stored != loaded.original_text {
            bail!(
                "--resume {}: its {MANIFEST} differs from {}; resume continues the same \
                 experiment (start a new run instead)",
                dir.display(),
                loaded.path.display()
            );
        }
        let plan = self.read_plan().ok().flatten().with_context(|| {
            format!(
                "--resume {}: {PLAN} is missing or not a plan",
                dir.display()
            )
        })?;
        // Stored redacted: compare the redacted forms.
        let given: Vec<String> = loaded
            .overrides
            .iter()
            .map(|o| redact::override_text(o))
            .collect();
        if plan.overrides != given {
            bail!(
                "--resume {}: the run used --set {:?}, this invocation {:?}; give the same overrides",
                dir.display(),
                plan.overrides,
                loaded.overrides
            );
        }
        // Runs from before inputs.json have no fingerprints to compare.
        let then: Option<Inputs> = read_json(&dir.join(INPUTS), "not an inputs record")
            .map_err(|why| anyhow::anyhow!("--resume {}: {why}", dir.display()))?;
        if let Some(then) = then {
            let changes = Inputs::of(loaded)?.changes_since(&then);
            if !changes.is_empty() {
                bail!(
                    "--resume {}: {}; resuming would mix two workloads in one run (start a new \
                     run, or put the files back as they were)",
                    dir.display(),
                    changes.join("; ")
                );
            }
        }
        Ok(())
    }

    /// `plan.json`: `Ok(None)` when there is none, `Err` (a reason) when it cannot be read.
    pub fn read_plan(&self) -> Result<Option<PlanRecord>, String> {
        read_json(&self.path.join(PLAN), "not a vbench plan")
    }

    /// Whether `file` (below this folder) is a result `plan` names: a cell's file, or a batch
    /// of a search, in a planned variant's folder. Anything else that looks like a result (a
    /// copy, a stray file) would count as one more measurement: the report leaves it out.
    pub fn is_planned_result(&self, plan: &PlanRecord, file: &Path) -> bool {
        // A plan that names no variant (from another tool, or cut) lists nothing to hold to.
        if plan.variants.is_empty() {
            return true;
        }
        let Ok(rel) = file.strip_prefix(&self.path) else {
            return false;
        };
        let mut parts = rel.iter().filter_map(|p| p.to_str());
        let (Some(variant), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
            return false;
        };
        let is_batch = || {
            name.strip_suffix(".json")
                .and_then(|stem| stem.rsplit_once("qps-search"))
                .is_some_and(|(head, k)| {
                    head.starts_with("vllm-")
                        && !k.is_empty()
                        && k.bytes().all(|b| b.is_ascii_digit())
                })
        };
        plan.variants.iter().any(|v| v.id == variant)
            && (plan
                .cells
                .iter()
                .any(|c| c.variant_id == variant && c.result_file == name)
                || is_batch())
    }

    /// `environment.json`: `Ok(None)` when there is none, `Err` (a reason) when unreadable.
    pub fn read_environment(&self) -> Result<Option<Environment>, String> {
        read_json(&self.path.join(ENVIRONMENT), "not an environment record")
    }

    /// The environment record of every `apply --resume` of the run
    /// (`environment-resume-<T>.json`), oldest first: each read, or why it could not be.
    pub fn read_resume_environments(&self) -> Vec<(PathBuf, Result<Environment, String>)> {
        let stem = ENVIRONMENT.trim_end_matches(".json");
        attempt_files_in(&self.path, stem, ".json")
            .into_iter()
            .filter(|name| name != ENVIRONMENT)
            .map(|name| {
                let path = self.path.join(name);
                let record = read_json(&path, "not an environment record")
                    .and_then(|e| e.ok_or_else(|| "removed while being read".to_owned()));
                (path, record)
            })
            .collect()
    }

    /// What readers need from the run's copy of its manifest, read leniently: the manifest was
    /// validated when it ran, but it may come from another version of vbench, so each part is
    /// read on its own and one that no longer parses is left at its default.
    pub fn manifest_extract(&self) -> ManifestExtract {
        #[derive(Deserialize, Default)]
        struct Parts {
            #[serde(default)]
            name: Option<toml::Value>,
            #[serde(default)]
            slo: Option<toml::Value>,
            #[serde(default)]
            report: Option<toml::Value>,
        }
        let path = self.path.join(MANIFEST);
        if std::fs::symlink_metadata(&path).is_err() {
            return ManifestExtract::default();
        }
        let mut problems = Vec::new();
        let text = read_bounded(&path, MAX_RECORD_BYTES)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|why| {
                problems.push(why);
                String::new()
            });
        let parts: Parts = toml::from_str(&text).unwrap_or_else(|e| {
            problems.push(format!("not TOML: {}", e.message().replace('\n', " ")));
            Parts::default()
        });
        fn section<T: serde::de::DeserializeOwned>(
            value: Option<toml::Value>,
            name: &str,
            problems: &mut Vec<String>,
        ) -> Option<T> {
            value.and_then(|v| {
                v.try_into()
                    .map_err(|e: toml::de::Error| {
                        problems.push(format!("[{name}]: {}", e.message().replace('\n', " ")))
                    })
                    .ok()
            })
        }
        let slo = section(parts.slo, "slo", &mut problems).unwrap_or_default();
        let report = section(parts.report, "report", &mut problems).unwrap_or_default();
        ManifestExtract {
            name: parts.name.and_then(|v| v.as_str().map(str::to_owned)),
            slo,
            report,
            problem: (!problems.is_empty()).then(|| {
                format!(
                    "{}: {}; the defaults stand in for what could not be read (the SLOs among \
                     them: give --ttft-ms, --tpot-ms and --target to be sure)",
                    path.display(),
                    problems.join("; ")
                )
            }),
        }
    }

    /// How many cells the plan planned, and those without a result file (`Ok(None)` without a
    /// plan; `Err` when it cannot be read).
    pub fn coverage(&self) -> Result<Option<Coverage>, String> {
        let Some(plan) = self.read_plan()? else {
            return Ok(None);
        };
        // Read once per variant, not per missing cell.
        let mut failures: std::collections::BTreeMap<&str, Option<String>> = Default::default();
        let missing = plan
            .cells
            .iter()
            .filter(|c| !self.variant(&c.variant_id).has_result(&c.result_file))
            .map(|c| MissingCell {
                label: plan
                    .variants
                    .iter()
                    .find(|v| v.id == c.variant_id)
                    .map_or_else(|| c.variant_id.clone(), |v| v.label.clone()),
                rate: c.rate.as_f64(),
                speedup: c.speedup,
                result_file: format!("{}/{}", c.variant_id, c.result_file),
                variant_failed: failures
                    .entry(&c.variant_id)
                    .or_insert_with(|| self.variant(&c.variant_id).failure())
                    .clone(),
                variant_id: c.variant_id.clone(),
            })
            .collect();
        Ok(Some(Coverage {
            planned: plan.cells.len(),
            missing,
            skipped: plan.skipped,
        }))
    }

    pub fn variant(&self, id: &str) -> VariantDir {
        VariantDir {
            path: self.path.join(id),
        }
    }

    /// Where the report goes by default.
    pub fn report_dir(&self) -> PathBuf {
        self.path.join(REPORT_DIR)
    }

    /// Where this process draws a report before swapping it in for [`RunDir::report_dir`];
    /// hidden, so no walk takes it for results.
    pub fn report_staging_dir(&self) -> PathBuf {
        self.path
            .join(format!(".{REPORT_DIR}-new-{}", std::process::id()))
    }

    /// What writers that died left in the folder: unfinished writes' temp files (anywhere in
    /// the run) and report staging folders whose process is gone. Nothing here is a result.
    pub fn dead_writes(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let staging = format!(".{REPORT_DIR}-new-");
        let mut dirs = vec![(self.path.clone(), 0)];
        while let Some((dir, depth)) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let Ok(kind) = e.file_type() else { continue };
                let name = e.file_name().to_string_lossy().into_owned();
                if kind.is_file() && super::store::is_partial_write(&name) {
                    found.push(e.path());
                } else if kind.is_dir() && depth == 0 && name.starts_with(&staging) {
                    let writer = name[staging.len()..].parse::<u32>().ok();
                    if writer.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                        found.push(e.path());
                    }
                } else if kind.is_dir() && depth < 3 {
                    // Symlinks are not followed: a run folder's own folders are real ones.
                    dirs.push((e.path(), depth + 1));
                }
            }
        }
        found.sort();
        found
    }
}

/// `record` as JSON with its secrets redacted ([`redact::json`]).
fn redacted(record: &impl Serialize) -> anyhow::Result<serde_json::Value> {
    let mut value = serde_json::to_value(record)?;
    redact::json(&mut value);
    Ok(value)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<Option<T>, String> {
    if !path.exists() {
        return Ok(None);
    }
    let bytes = read_bounded(path, MAX_RECORD_BYTES)?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| format!("{what}: {e}"))
}

/// Names of `stem<ext>` and `stem-resume-<T><ext>` in `dir`, oldest attempt first.
fn attempt_files_in(dir: &Path, stem: &str, ext: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.strip_suffix(ext)
                .is_some_and(|s| s == stem || s.starts_with(&format!("{stem}{RESUME_TAG}")))
        })
        .collect();
    // `stem<ext>` sorts before `stem-resume-…` once the extension is set aside.
    names.sort_by_key(|n| n.trim_end_matches(ext).to_owned());
    names
}

/// The parts of a run's manifest copy that the report and `ls` use.
#[derive(Debug, Clone, Default)]
pub struct ManifestExtract {
    /// The experiment's `name`.
    pub name: Option<String>,
    pub slo: manifest::Slo,
    pub report: manifest::ReportOptions,
    /// Why (part of) a manifest that is there could not be read: its defaults stand in.
    pub problem: Option<String>,
}

/// Another vbench holds the run folder ([`RunDir::lock`]): a usage error, not a failed run.
#[derive(Debug, thiserror::Error)]
#[error(
    "another vbench is running in {} ({}); wait for it to finish, or stop it",
    run.display(),
    match holder { Some(pid) => format!("process {pid}"), None => "its process id is not recorded".to_owned() }
)]
pub struct Locked {
    pub run: PathBuf,
    pub holder: Option<u32>,
}

/// The run folder's lock ([`RunDir::lock`]); dropping it releases the folder.
#[derive(Debug)]
pub struct RunLock {
    _lock: crate::exec::flock::Flock,
    mark: String,
    copy_of_live: Option<u32>,
}

impl RunLock {
    /// When this folder is a copy of a run a live vbench is measuring (it then got a mark of
    /// its own), what to tell the user.
    pub fn copy_of_live_run(&self, run: &Path) -> Option<String> {
        self.copy_of_live.map(|pid| {
            format!(
                "{} was copied from a run that vbench (pid {pid}) is still measuring: it gets a \
                 mark of its own, and that run's processes are not touched",
                run.display()
            )
        })
    }

    /// The run's mark: every process `apply` starts for this run carries it (see
    /// [`crate::exec::leftovers`]); the same for every apply in the folder.
    pub fn mark(&self) -> &str {
        &self.mark
    }
}

/// What `.apply.lock` holds: `pid=<pid of the apply holding it>` and `mark=<the run's mark>`,
/// one per line. A folder from before marks existed holds only a pid.
struct LockRecord {
    pid: Option<u32>,
    mark: Option<String>,
}

impl LockRecord {
    fn parse(text: &str) -> LockRecord {
        let mut record = LockRecord {
            pid: None,
            mark: None,
        };
        for line in text.lines().map(str::trim) {
            match line.split_once('=') {
                Some(("pid", pid)) => record.pid = pid.parse().ok(),
                Some(("mark", mark))
                    if !mark.is_empty() && mark.bytes().all(|b| b.is_ascii_hexdigit()) =>
                {
                    record.mark = Some(mark.to_owned())
                }
                None => record.pid = record.pid.or(line.parse().ok()),
                _ => {}
            }
        }
        record
    }
}

/// Which attempt at a variant (or run) this is: the first writes `deployment.json`, a resumed
/// one `deployment-resume-<T>.json` beside it, so no record is ever overwritten.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt(String);

impl Attempt {
    pub fn first() -> Attempt {
        Attempt(String::new())
    }

    pub fn resume(now: chrono::DateTime<chrono::Local>) -> Attempt {
        Attempt(format!("{RESUME_TAG}{}", now.format("%Y%m%d_%H%M%S")))
    }

    fn file(&self, base: &str) -> String {
        format!("{base}{}.json", self.0)
    }

    fn failed_file(&self) -> String {
        let stem = FAILED.trim_end_matches(".txt");
        format!("{stem}{}.txt", self.0)
    }

    /// Appended to the names of this attempt's metrics files (empty for the first).
    fn suffix(&self) -> &str {
        &self.0
    }
}

/// One variant's folder inside a run.
#[derive(Debug, Clone)]
pub struct VariantDir {
    path: PathBuf,
}

impl VariantDir {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Create the folder and its `logs/`.
    pub fn create(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(self.logs_dir())
            .with_context(|| format!("creating {}", self.logs_dir().display()))
    }

    pub fn result_path(&self, cell: &Cell) -> PathBuf {
        self.path.join(&cell.result_file)
    }

    /// A result stands at this name: a regular, non-empty file (whether it reads as one is
    /// the importer's to say, which names it when it does not).
    fn has_result(&self, result_file: &str) -> bool {
        std::fs::symlink_metadata(self.path.join(result_file))
            .is_ok_and(|m| m.is_file() && m.len() > 0)
    }

    /// The cell has a result that reads back. An empty, cut or foreign file (or a folder) at
    /// its name is no measurement: `--resume` sets it aside ([`Self::set_aside_unreadable`])
    /// and measures the cell again.
    pub fn is_measured(&self, cell: &Cell) -> bool {
        self.has_result(&cell.result_file) && self.read_result(cell).is_ok()
    }

    /// Moves what stands at the cell's result name without being a readable result into
    /// `aborted/` (as `<result>-unreadable[-resume-T].json`), so that the cell can be measured
    /// again without overwriting anything. Returns where it went, and why it was no result.
    pub fn set_aside_unreadable(
        &self,
        attempt: &Attempt,
        cell: &Cell,
    ) -> anyhow::Result<Option<(PathBuf, String)>> {
        let path = self.result_path(cell);
        let why = match std::fs::symlink_metadata(&path) {
            Err(_) => return Ok(None),
            Ok(m) if !m.is_file() => "not a regular file".to_owned(),
            Ok(m) if m.len() == 0 => "empty".to_owned(),
            Ok(_) => match self.read_result(cell) {
                Ok(_) => return Ok(None),
                Err(e) => format!("{e:#}"),
            },
        };
        let stem = cell
            .result_file
            .strip_suffix(".json")
            .unwrap_or(&cell.result_file);
        let aside = self.path.join(ABORTED_DIR);
        std::fs::create_dir_all(&aside).with_context(|| format!("creating {}", aside.display()))?;
        let dest = aside.join(attempt.file(&format!("{stem}-unreadable")));
        if std::fs::symlink_metadata(&dest).is_ok() {
            bail!("{} is there already", dest.display());
        }
        std::fs::rename(&path, &dest)
            .with_context(|| format!("moving {} to {}", path.display(), dest.display()))?;
        Ok(Some((dest, why)))
    }

    /// The first attempt when the variant has no deployment record yet, else a resume.
    pub fn next_attempt(&self, now: chrono::DateTime<chrono::Local>) -> Attempt {
        if self.path.join(Attempt::first().file(DEPLOYMENT)).exists() {
            Attempt::resume(now)
        } else {
            Attempt::first()
        }
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.path.join(LOGS_DIR)
    }

    pub fn log_path(&self, component: &str) -> PathBuf {
        self.logs_dir().join(format!("{component}.log"))
    }

    pub fn metrics_dir(&self) -> PathBuf {
        self.path.join(METRICS_DIR)
    }

    /// The deployment record, with every `env` map's secrets redacted.
    /// The folder an attempt's config files (LMCache's YAMLs) go to: the variant's own for
    /// the first attempt, `configs-resume-<T>/` in it for a resume, whose ports may differ
    /// from the first attempt's (whose files are never overwritten).
    pub fn config_dir(&self, attempt: &Attempt) -> PathBuf {
        match attempt.suffix() {
            "" => self.path.clone(),
            suffix => self.path.join(format!("configs{suffix}")),
        }
    }

    /// Writes one config file into a [`Self::config_dir`] (made if need be); never over
    /// an existing file.
    pub fn write_config(&self, path: &Path, text: &str) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        write_bytes_new(path, text.as_bytes())
    }

    pub fn write_deployment(
        &self,
        attempt: &Attempt,
        record: &impl Serialize,
    ) -> anyhow::Result<()> {
        write_json_new(
            &self.path.join(attempt.file(DEPLOYMENT)),
            &redacted(record)?,
        )
    }

    pub fn write_teardown(&self, attempt: &Attempt, record: &impl Serialize) -> anyhow::Result<()> {
        write_json_new(&self.path.join(attempt.file(TEARDOWN)), record)
    }

    /// The search's record, written when it ends: the variant is then complete.
    pub fn write_search(&self, attempt: &Attempt, record: &impl Serialize) -> anyhow::Result<()> {
        write_json_new(&self.path.join(attempt.file(SEARCH)), record)
    }

    /// Every attempt's `<base>[-resume-T].json` in this folder, oldest first (the first
    /// attempt's, then resumes' by their time tag).
    fn attempt_records(&self, base: &str) -> Vec<String> {
        self.attempt_files(base, ".json")
    }

    /// Every attempt's `<stem>[-resume-T]<ext>` in this folder, oldest first.
    fn attempt_files(&self, stem: &str, ext: &str) -> Vec<String> {
        attempt_files_in(&self.path, stem, ext)
    }

    /// Whether a search of this variant has ended (any attempt's record).
    pub fn search_done(&self) -> bool {
        !self.attempt_records(SEARCH).is_empty()
    }

    /// The newest search record of this variant (`search[-resume-T].json`): None when it has
    /// none, `Err` (a reason) when it cannot be read.
    pub fn read_search(&self) -> Option<Result<SearchSummary, String>> {
        let path = self.path.join(self.attempt_records(SEARCH).pop()?);
        let record = read_bounded(&path, MAX_RECORD_BYTES)
            .map_err(|why| format!("{}: {why}", path.display()))
            .and_then(|bytes| {
                serde_json::from_slice::<SearchRecord>(&bytes)
                    .map_err(|e| format!("{}: not a search record: {e}", path.display()))
            });
        Some(record.map(|r| {
            SearchSummary {
                requests: r.requests,
                probes: r.probes.len(),
                verdicts: r
                    .probes
                    .iter()
                    .filter_map(|p| {
                        Some(ProbeVerdict {
                            rate: p.get("rate")?.as_f64()?,
                            pass: p.get("verdict")?.as_str()? == "pass",
                        })
                    })
                    .collect(),
                ending: r.ending,
            }
        }))
    }

    /// A result file of this variant, read back (bounded).
    pub fn read_result(&self, cell: &Cell) -> anyhow::Result<RunResult> {
        let path = self.result_path(cell);
        let bytes =
            read_bounded(&path, super::store::MAX_RESULT_BYTES).map_err(anyhow::Error::msg)?;
        serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))
    }

    pub fn write_timing(&self, attempt: &Attempt, timing: &VariantTiming) -> anyhow::Result<()> {
        write_json_new(&self.path.join(attempt.file(TIMING)), timing)
    }

    /// Every attempt's timing record, oldest first (the first attempt's, then resumes' by
    /// their time tag); a record that cannot be read is returned as its error.
    pub fn timings(&self) -> Vec<Result<VariantTiming, String>> {
        self.attempt_records(TIMING)
            .iter()
            .map(|n| {
                let path = self.path.join(n);
                read_bounded(&path, MAX_RECORD_BYTES)
                    .map_err(|e| format!("{e:#}"))
                    .and_then(|bytes| {
                        serde_json::from_slice(&bytes)
                            .map_err(|e| format!("{}: {e}", path.display()))
                    })
            })
            .collect()
    }

    /// Why this attempt failed: `FAILED.txt`, or `FAILED-resume-<T>.txt` for a resumed one.
    pub fn write_failed(&self, attempt: &Attempt, why: &str) -> anyhow::Result<()> {
        write_bytes_new(
            &self.path.join(attempt.failed_file()),
            format!("{why}\n").as_bytes(),
        )
    }

    /// Why the newest attempt that failed did (the first line of its `FAILED*.txt`, at most
    /// 400 characters); `None` when no attempt failed or none says why.
    pub fn failure(&self) -> Option<String> {
        let stem = FAILED.trim_end_matches(".txt");
        let newest = self.attempt_files(stem, ".txt").pop()?;
        let bytes = read_bounded(&self.path.join(newest), 64 << 10).ok()?;
        let text = String::from_utf8_lossy(&bytes);
        let line = text.lines().next()?.trim();
        (!line.is_empty()).then(|| match line.char_indices().nth(400) {
            Some((cut, _)) => format!("{}…", &line[..cut]),
            None => line.to_owned(),
        })
    }

    /// The variant now has every result: earlier attempts' `FAILED*.txt` no longer describe
    /// it (their deployment and teardown records stay, as history).
    pub fn clear_failed(&self) -> anyhow::Result<()> {
        for name in self.attempt_files(FAILED.trim_end_matches(".txt"), ".txt") {
            let path = self.path.join(name);
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
        Ok(())
    }

    /// The cell's result file; should the disk be full, written into `reserve` (then `true`:
    /// no reserve is left, and the run must stop).
    pub fn write_result(
        &self,
        cell: &Cell,
        result: &RunResult,
        reserve: Option<&SpaceReserve>,
    ) -> anyhow::Result<bool> {
        write_json_new_reserved(&self.result_path(cell), result, reserve)
    }

    /// The result of a cell during which a component died, `aborted/<result>[-resume-T].json`:
    /// its requests are kept, but it is not the cell's measurement.
    pub fn write_aborted_result(
        &self,
        attempt: &Attempt,
        cell: &Cell,
        result: &RunResult,
    ) -> anyhow::Result<PathBuf> {
        let stem = cell
            .result_file
            .strip_suffix(".json")
            .unwrap_or(&cell.result_file);
        let path = self.path.join(ABORTED_DIR).join(attempt.file(stem));
        write_json_new(&path, result)?;
        Ok(path)
    }

    /// One instance's `/metrics` text, `metrics/<instance>-<tag>[-resume-T].prom`.
    pub fn write_metrics_text(
        &self,
        attempt: &Attempt,
        instance: &str,
        tag: &str,
        text: &str,
    ) -> anyhow::Result<()> {
        std::fs::create_dir_all(self.metrics_dir())?;
        write_bytes_new(
            &self
                .metrics_dir()
                .join(format!("{instance}-{tag}{}.prom", attempt.suffix())),
            text.as_bytes(),
        )
    }

    /// Gauge samples of one rate, `metrics/<tag>-samples[-resume-T].jsonl`, one JSON object
    /// per line.
    pub fn write_metrics_samples<T: Serialize>(
        &self,
        attempt: &Attempt,
        tag: &str,
        samples: &[T],
    ) -> anyhow::Result<()> {
        std::fs::create_dir_all(self.metrics_dir())?;
        let mut text = String::new();
        for s in samples {
            text.push_str(&serde_json::to_string(s)?);
            text.push('\n');
        }
        write_bytes_new(
            &self
                .metrics_dir()
                .join(format!("{tag}-samples{}.jsonl", attempt.suffix())),
            text.as_bytes(),
        )
    }
}

/// `plan.json` as read back: the parts of [`Plan`] that readers use, each defaulted so a plan
/// written by another version still reads. [`RunDir::write_start`] writes the whole [`Plan`];
/// a test checks that what it writes reads back here.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PlanRecord {
    #[serde(default)]
    pub experiment: String,
    #[serde(default)]
    pub model: String,
    /// As the plan writes it (`sim`, `local`, `slurm`).
    #[serde(default)]
    pub backend: String,
    #[serde(default)]
    pub accelerator: String,
    #[serde(default)]
    pub sim_profile: Option<String>,
    #[serde(default)]
    pub variants: Vec<PlannedVariant>,
    #[serde(default)]
    pub cells: Vec<PlannedCell>,
    #[serde(default)]
    pub overrides: Vec<String>,
    /// Variants left out because the target was too small for them.
    #[serde(default)]
    pub skipped: Vec<SkippedRecord>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
pub struct SkippedRecord {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PlannedVariant {
    pub id: String,
    #[serde(default)]
    pub label: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PlannedCell {
    pub variant_id: String,
    #[serde(default)]
    pub rate: serde_json::Value,
    /// A trace replay's speedup (then there is no rate).
    #[serde(default)]
    pub speedup: Option<f64>,
    pub result_file: String,
}

/// `search.json` as read back: the parts the report uses.
#[derive(Deserialize)]
struct SearchRecord {
    requests: u64,
    probes: Vec<serde_json::Value>,
    ending: crate::plan::search::Ending,
}

/// What a variant's `search.json` says, for the report.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SearchSummary {
    /// Measured requests the search used.
    pub requests: u64,
    /// Rates probed.
    pub probes: usize,
    /// Each decided probe's rate and verdict, in the order probed.
    pub verdicts: Vec<ProbeVerdict>,
    /// How it ended.
    pub ending: crate::plan::search::Ending,
}

/// One probe of a search: its rate and whether it met the target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ProbeVerdict {
    pub rate: f64,
    pub pass: bool,
}

/// How long one attempt at a variant took (`timing.json`): what `vbench plan` estimates the
/// next run from, and what `apply` compares with the plan's estimate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VariantTiming {
    /// Launch until every instance answered `/health`.
    #[serde(default)]
    pub instances_healthy_s: Option<f64>,
    /// Launch until ready for load: instances and proxy healthy, the smoke request (and the
    /// KV-transfer check) passed. None when the attempt never got there.
    #[serde(default)]
    pub ready_s: Option<f64>,
    /// The rates this attempt measured (rates measured before it are not here).
    #[serde(default)]
    pub cells: Vec<CellTiming>,
    /// Teardown, until the GPUs were free again.
    #[serde(default)]
    pub teardown_s: Option<f64>,
    /// Launch to the end of teardown.
    #[serde(default)]
    pub total_s: f64,
    /// `completed`, `failed` or `interrupted`.
    #[serde(default)]
    pub outcome: String,
    /// What the plan estimated for this attempt's work (its start-up, teardown and the rates
    /// it measured), and on what basis.
    #[serde(default)]
    pub estimated_s: Option<f64>,
    #[serde(default)]
    pub estimate_basis: Option<String>,
}

/// One measured rate of an attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellTiming {
    /// The rate's label (`4`, `0.5`, `inf`).
    pub rate: String,
    pub requests: u32,
    pub warmup: u32,
    /// From `/metrics` before the load to the result written.
    pub seconds: f64,
}

/// Planned cells and the ones without a result file.
#[derive(Debug, Clone, PartialEq)]
pub struct Coverage {
    pub planned: usize,
    pub missing: Vec<MissingCell>,
    /// Variants the plan left out (the target was too small for them).
    pub skipped: Vec<SkippedRecord>,
}

/// A planned (variant, rate) without a result file.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct MissingCell {
    pub variant_id: String,
    /// The variant's label from the plan.
    pub label: String,
    /// Requests per second; null for `inf` and for a trace replay.
    pub rate: Option<f64>,
    /// A trace replay's speedup; absent for a rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speedup: Option<f64>,
    /// The file that would hold it, relative to the run folder.
    pub result_file: String,
    /// Why the variant failed, when it did: the first line of its newest `FAILED*.txt`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant_failed: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_in_the_same_second_get_distinct_folders() {
        let dir = tempfile::tempdir().unwrap();
        let now = chrono::Local::now();
        let a = RunDir::create(dir.path(), "exp", now).unwrap();
        let b = RunDir::create(dir.path(), "exp", now).unwrap();
        assert_ne!(a.path(), b.path());
        assert!(b.path().to_str().unwrap().ends_with("_2"));
    }

    #[test]
    fn bookkeeping_of_every_attempt_is_not_a_result() {
        let resume = Attempt::resume(chrono::Local::now());
        for base in ["environment", DEPLOYMENT, TEARDOWN, TIMING, SEARCH] {
            assert!(!is_result_file(&Attempt::first().file(base)), "{base}");
            assert!(!is_result_file(&resume.file(base)), "{base} resumed");
        }
        for own in [PLAN, SUMMARY] {
            assert!(!is_result_file(own));
        }
        for result in [
            "vllm-2qps.json",
            "vllm-0.5qps-20250101-120000.json",
            "openai-infqps-Qwen.json",
            "deployments.json",
            "teardown_notes.json",
        ] {
            assert!(is_result_file(result), "{result}");
        }
        assert!(!is_result_file("samples.jsonl"));
        assert!(!is_result_file("manifest.toml"));
    }

    #[test]
    fn the_walk_finds_results_and_skips_records_logs_metrics_and_reports() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path(), "exp", chrono::Local::now()).unwrap();
        let v = run.variant("v1");
        v.create().unwrap();
        let resume = Attempt::resume(chrono::Local::now());
        v.write_deployment(&Attempt::first(), &1).unwrap();
        v.write_deployment(&resume, &2).unwrap();
        v.write_teardown(&resume, &3).unwrap();
        run.write_environment(&resume, &Environment::default())
            .unwrap();
        v.write_metrics_text(&resume, "i0", "1qps-before", "x 1\n")
            .unwrap();
        std::fs::create_dir_all(run.report_dir()).unwrap();
        std::fs::write(run.report_dir().join("summary.json"), "{}").unwrap();
        std::fs::write(v.path().join("vllm-1qps.json"), "{}").unwrap();
        std::fs::write(v.logs_dir().join("x.json"), "{}").unwrap();
        let found = result_files(run.path());
        assert_eq!(found, vec![v.path().join("vllm-1qps.json")]);
    }

    #[test]
    fn a_second_attempt_gets_records_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path(), "exp", chrono::Local::now()).unwrap();
        let v = run.variant("v1");
        v.create().unwrap();
        let now = chrono::Local::now();
        assert_eq!(v.next_attempt(now), Attempt::first());
        v.write_deployment(&Attempt::first(), &1).unwrap();
        let second = v.next_attempt(now);
        assert_ne!(second, Attempt::first());
        v.write_deployment(&second, &2).unwrap();
        // never overwritten
        assert!(v.write_deployment(&Attempt::first(), &3).is_err());
    }

    /// A run folder started (plan.json written) for the manifest `text`.
    fn started_run(text: &str) -> (tempfile::TempDir, RunDir, Plan) {
        let dir = tempfile::tempdir().unwrap();
        // The dataset file a manifest may name, beside it (its fingerprint goes in inputs.json).
        std::fs::write(dir.path().join("t.jsonl"), "").unwrap();
        let loaded = crate::manifest::load_str(&dir.path().join("t.toml"), text, &[]).unwrap();
        let capacity = crate::plan::capacity::discover(
            &loaded.manifest.target,
            &crate::exec::gpus::NvidiaSmiProbe,
        );
        let plan = crate::plan::resolve(&loaded, &capacity).unwrap();
        let run = RunDir::create(dir.path(), "t", chrono::Local::now()).unwrap();
        run.write_start(&loaded, &plan).unwrap();
        (dir, run, plan)
    }

    #[test]
    fn the_plan_written_at_the_start_reads_back_with_its_cells() {
        let text = r#"
name = "t"
model = "m"
[dataset]
kind = "random"
input_len = 8
output_len = 2
[load]
rates = [1, 2]
num_prompts = 4
[target]
backend = "sim"
[[deployment]]
mode = "simple"
[[deployment]]
mode = "nixl"
"#;
        let (_dir, run, plan) = started_run(text);
        let read = run.read_plan().unwrap().unwrap();
        assert_eq!(read.experiment, plan.experiment);
        assert_eq!(read.overrides, plan.overrides);
        let ids: Vec<&str> = read.variants.iter().map(|v| v.id.as_str()).collect();
        let want: Vec<&str> = plan.variants.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, want);
        assert_eq!(read.cells.len(), 4);
        for (r, c) in read.cells.iter().zip(&plan.cells) {
            assert_eq!(
                (&r.variant_id, &r.result_file),
                (&c.variant_id, &c.result_file)
            );
            assert!(is_result_file(&r.result_file), "{}", r.result_file);
        }
        // Nothing measured yet: every planned cell is missing.
        let coverage = run.coverage().unwrap().unwrap();
        assert_eq!((coverage.planned, coverage.missing.len()), (4, 4));
    }

    #[test]
    fn a_missing_trace_replay_cell_is_named_by_its_speedup() {
        let text = r#"
name = "t"
model = "m"
[dataset]
kind = "trace"
format = "mooncake"
path = "t.jsonl"
[load]
speedups = [1, 2.5]
num_prompts = 4
[target]
backend = "sim"
[[deployment]]
mode = "simple"
"#;
        let (_dir, run, _) = started_run(text);
        let missing = run.coverage().unwrap().unwrap().missing;
        let got: Vec<(Option<f64>, Option<f64>)> =
            missing.iter().map(|m| (m.rate, m.speedup)).collect();
        assert_eq!(got, [(None, Some(1.0)), (None, Some(2.5))]);
        assert!(missing[1].result_file.ends_with("/vllm-speedup-2.5x.json"));
    }

    #[test]
    fn one_apply_at_a_time_holds_a_run_folder() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path(), "exp", chrono::Local::now()).unwrap();
        let held = run.lock().unwrap();
        let second = run.lock().unwrap_err().to_string();
        assert!(
            second.contains(&format!("process {}", std::process::id())),
            "{second}"
        );
        drop(held);
        run.lock().unwrap();
        // The lock file is not a result, and hidden from every walk.
        assert!(result_files(run.path()).is_empty());
    }

    #[test]
    fn a_completed_variant_sheds_earlier_failure_notes() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path(), "exp", chrono::Local::now()).unwrap();
        let v = run.variant("v1");
        v.create().unwrap();
        let resume = Attempt::resume(chrono::Local::now());
        v.write_failed(&Attempt::first(), "crashed").unwrap();
        v.write_failed(&resume, "crashed again").unwrap();
        assert!(v.path().join("FAILED.txt").exists());
        v.clear_failed().unwrap();
        let left: Vec<_> = std::fs::read_dir(v.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["logs"]);
    }
}
