//! `vbench ls`: past runs, newest first.
//!
//! A run is a folder whose name ends in a `YYYYMMDD_HHMMSS` timestamp, one or two levels
//! below the results folder: vbench's `<experiment>/<timestamp>/` and the original suite's
//! `<dataset>/<mode>_<timestamp>/`.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::report::import;
use crate::results::environment;
use crate::results::rundir::{self, RunDir};

/// List past runs, newest first, with file and plot counts and a config line per variant.
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Results folder to list.
    #[arg(default_value = "results")]
    pub dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One past run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunEntry {
    /// `YYYY-MM-DD HH:MM:SS` from the folder name.
    pub date: String,
    /// `<experiment>/<run folder>`, relative to the listed folder.
    pub name: String,
    /// Written lossily where it is not UTF-8 (JSON cannot hold such a name; one odd folder
    /// must not fail the whole listing).
    #[serde(serialize_with = "lossy_path")]
    pub path: PathBuf,
    /// Result files (`*.json` that hold results).
    pub files: usize,
    /// Figure files (pdf, png, svg).
    pub plots: usize,
    /// One label per variant, e.g. `nixl PF:2 D:2 TP:2x2`.
    pub variants: Vec<String>,
    pub models: Vec<String>,
    pub simulated: bool,
    /// The config line as printed.
    pub config: String,
    /// Cells the run's plan.json planned, and how many of them have a result file (None
    /// without a plan, e.g. the original suite's folders).
    pub planned_cells: Option<usize>,
    pub measured_cells: Option<usize>,
    /// `apply --resume` attempts of the run (their environment records).
    pub resumes: usize,
}

pub fn run(args: LsArgs) -> Result<()> {
    if !args.dir.is_dir() {
        return Err(Error::bad_input(anyhow::anyhow!(
            "{} is not a folder; pass the results folder, e.g. `vbench ls results`",
            args.dir.display()
        )));
    }
    let runs = list_runs(&args.dir);
    if args.json {
        let text = serde_json::to_string_pretty(&runs).map_err(Error::failed)?;
        println!("{text}");
        return Ok(());
    }
    if runs.is_empty() {
        println!("no runs in {}", args.dir.display());
        return Ok(());
    }
    for r in &runs {
        println!("{}", format_entry(r));
    }
    Ok(())
}

/// The two lines printed for one run.
pub fn format_entry(r: &RunEntry) -> String {
    let counts = match (r.planned_cells, r.measured_cells) {
        (Some(p), Some(m)) if m < p => format!("{m} of {p} cells measured, {} plots", r.plots),
        (Some(p), Some(_)) => format!("{p} cells, {} plots", r.plots),
        _ => format!("{} files, {} plots", r.files, r.plots),
    };
    format!("{}  {}  ({counts})\n  {}", r.date, r.name, r.config)
}

/// `YYYYMMDD_HHMMSS` at the end of a folder name, as `YYYY-MM-DD HH:MM:SS`.
fn timestamp_of(name: &str) -> Option<String> {
    let b = name.as_bytes();
    if b.len() < 15 {
        return None;
    }
    let t = &name[name.len() - 15..];
    let tb = t.as_bytes();
    let digits = |r: std::ops::Range<usize>| tb[r].iter().all(u8::is_ascii_digit);
    if !(digits(0..8) && tb[8] == b'_' && digits(9..15)) {
        return None;
    }
    if name.len() > 15 && !matches!(b[name.len() - 16], b'_' | b'-') {
        return None;
    }
    Some(format!(
        "{}-{}-{} {}:{}:{}",
        &t[0..4],
        &t[4..6],
        &t[6..8],
        &t[9..11],
        &t[11..13],
        &t[13..15]
    ))
}

/// Every run under `root`, newest first.
pub fn list_runs(root: &Path) -> Vec<RunEntry> {
    let mut out = Vec::new();
    let Ok(level1) = std::fs::read_dir(root) else {
        return out;
    };
    for e1 in level1.flatten() {
        let p1 = e1.path();
        if !p1.is_dir() {
            continue;
        }
        let n1 = e1.file_name().to_string_lossy().into_owned();
        if let Some(date) = timestamp_of(&n1) {
            out.push(entry(root, &p1, date));
            continue;
        }
        let Ok(level2) = std::fs::read_dir(&p1) else {
            continue;
        };
        for e2 in level2.flatten() {
            let p2 = e2.path();
            let n2 = e2.file_name().to_string_lossy().into_owned();
            if p2.is_dir() {
                if let Some(date) = timestamp_of(&n2) {
                    out.push(entry(root, &p2, date));
                }
            }
        }
    }
    // Newest first; the timestamp string sorts like the time it names.
    out.sort_by(|a, b| b.date.cmp(&a.date).then(a.name.cmp(&b.name)));
    out
}

fn entry(root: &Path, dir: &Path, date: String) -> RunEntry {
    let run = RunDir::open(dir);
    let results = rundir::result_files(dir);
    let plots = rundir::figure_count(dir);
    // One file per variant folder is enough for the config line.
    let mut seen_dirs = Vec::new();
    let mut variants: Vec<String> = Vec::new();
    let mut modes: Vec<(String, String)> = Vec::new();
    let mut models: Vec<String> = Vec::new();
    let mut simulated = false;
    for f in &results {
        let parent = f.parent().map(Path::to_path_buf);
        if seen_dirs.contains(&parent) {
            continue;
        }
        seen_dirs.push(parent);
        if let Some(meta) = import::peek(f) {
            if !variants.contains(&meta.label) {
                variants.push(meta.label.clone());
                modes.push((meta.mode.clone(), meta.label.clone()));
            }
            if !models.contains(&meta.model) {
                models.push(meta.model.clone());
            }
            simulated |= meta.simulated;
        }
    }
    modes.sort_by(|a, b| {
        import::mode_rank(&a.0)
            .cmp(&import::mode_rank(&b.0))
            .then(a.1.cmp(&b.1))
    });
    let mut parts = config_parts(&modes);
    if !models.is_empty() {
        parts.push(format!("Model: {}", models.join(", ")));
    }
    if simulated {
        parts.push("SIMULATED".to_string());
    } else if let Ok(Some(env)) = run.read_environment() {
        if let Some(v) = &env.vllm_version {
            parts.push(format!("vLLM {v}"));
        }
        if let serde_json::Value::Array(g) = &env.gpus {
            parts.push(environment::gpu_summary(g));
        }
    }
    let resumes = run.read_resume_environments();
    if !resumes.is_empty() {
        let first = run.read_environment().ok().flatten();
        // Resumes that ran elsewhere or with other versions: the report says how.
        let differing = resumes
            .iter()
            .filter_map(|(_, e)| e.as_ref().ok())
            .filter(|e| {
                first
                    .as_ref()
                    .is_some_and(|f| !e.differences_from(f).is_empty())
            })
            .count();
        parts.push(match differing {
            0 => format!("resumed {}×", resumes.len()),
            d => format!(
                "resumed {}× ({d} elsewhere or with other versions)",
                resumes.len()
            ),
        });
    }
    // A plan with no cells (or none at all) says nothing: fall back to counting files.
    let coverage = run.coverage().ok().flatten().filter(|c| c.planned > 0);
    let planned_cells = coverage.as_ref().map(|c| c.planned);
    let measured_cells = coverage.map(|c| c.planned - c.missing.len());
    let config = if parts.is_empty() {
        "(no readable result files)".to_string()
    } else {
        parts.join(" · ")
    };
    RunEntry {
        date,
        // A line break in a folder's name must not print as a line of the listing.
        name: dir
            .strip_prefix(root)
            .unwrap_or(dir)
            .display()
            .to_string()
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect(),
        path: dir.to_path_buf(),
        files: results.len(),
        plots,
        variants,
        models,
        simulated,
        config,
        planned_cells,
        measured_cells,
        resumes: resumes.len(),
    }
}

/// `simple TP:1` and `simple TP:2` become `simple TP:1,2`; other labels stay as they are.
fn config_parts(modes: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut simple_tps: Vec<String> = Vec::new();
    for (mode, label) in modes {
        if mode == "simple" {
            if let Some(tp) = label.strip_prefix("simple TP:") {
                if !simple_tps.iter().any(|t| t == tp) {
                    simple_tps.push(tp.to_string());
                }
                continue;
            }
        }
        out.push(label.clone());
    }
    if !simple_tps.is_empty() {
        out.insert(0, format!("simple TP:{}", simple_tps.join(",")));
    }
    out
}

fn lossy_path<S: serde::Serializer>(path: &Path, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_found_at_the_end_of_folder_names() {
        assert_eq!(
            timestamp_of("20260814_153022").as_deref(),
            Some("2026-08-14 15:30:22")
        );
        assert_eq!(
            timestamp_of("nixl_20250101_120000").as_deref(),
            Some("2025-01-01 12:00:00")
        );
        assert_eq!(timestamp_of("report"), None);
        assert_eq!(timestamp_of("x20250101_120000"), None);
    }

    #[test]
    fn simple_variants_merge_their_tp_values() {
        let parts = config_parts(&[
            ("nixl".into(), "nixl PF:2 D:2 TP:1x1".into()),
            ("simple".into(), "simple TP:1".into()),
            ("simple".into(), "simple TP:2".into()),
        ]);
        assert_eq!(parts, vec!["simple TP:1,2", "nixl PF:2 D:2 TP:1x1"]);
    }
}
