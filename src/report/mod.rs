//! Reports: attainment math, figures, HTML and Markdown summaries.
//!
//! Entry point for other commands (e.g. `apply` after its last cell): [`render_report`] with a
//! [`ReportOptions`] built by [`ReportOptions::for_inputs`].

pub mod analysis;
pub mod attainment;
pub mod convert;
pub mod figures;
pub mod import;
pub mod summary;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::Context;

use crate::error::{Error, Result};
use crate::manifest;
use crate::results::rundir;
use crate::results::store::write_bytes_new;
use analysis::{Analysis, Scoring, VariantStats};
use attainment::{Slo, SloKind};
pub use convert::Format;
use import::Imported;

/// Everything [`render_report`] needs.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub inputs: Vec<PathBuf>,
    pub scoring: Scoring,
    pub compare_all: bool,
    pub kinds: Vec<SloKind>,
    pub per_gpu: bool,
    pub separate_rates: bool,
    pub formats: Vec<Format>,
    /// Explicit output folder; `None`: the default next to the results.
    pub out: Option<PathBuf>,
    /// What the user should know about these options (a run's manifest that could not be
    /// read, so the defaults stand in for its SLOs).
    pub warnings: Vec<String>,
}

impl ReportOptions {
    /// Defaults for a set of inputs: the first input's manifest.toml (the copy in its run
    /// folder) when present — `[slo]` `ttft_ms`, `tpot_ms`, `target_pct`, `scales`,
    /// `scale_rate` and `[report]` `formats`, `x_axis`, `rates`, `slo_types` — else SLOs 125/200
    /// ms at 90 %, every figure in all three formats over shared rates, output in `report/`
    /// inside the run folder.
    pub fn for_inputs(inputs: Vec<PathBuf>) -> Self {
        let extract = inputs
            .first()
            .map(|first| rundir::RunDir::open(first).manifest_extract())
            .unwrap_or_default();
        let mut options = ReportOptions::from_manifest(inputs, &extract.slo, &extract.report);
        options.warnings.extend(extract.problem);
        options
    }

    /// Options from the manifest's own `[slo]` and `[report]` sections.
    pub fn from_manifest(
        inputs: Vec<PathBuf>,
        slo: &manifest::Slo,
        report: &manifest::ReportOptions,
    ) -> Self {
        // An empty list in the manifest means the manifest's default, not nothing.
        let or_default = |given: &[manifest::FigureFormat]| {
            if given.is_empty() {
                manifest::defaults::formats()
            } else {
                given.to_vec()
            }
        };
        let mut formats: Vec<Format> = or_default(&report.formats)
            .into_iter()
            .map(Format::from)
            .collect();
        formats.sort();
        formats.dedup();
        let slo_types = if report.slo_types.is_empty() {
            manifest::defaults::slo_types()
        } else {
            report.slo_types.clone()
        };
        let kinds: Vec<SloKind> = SloKind::ALL
            .into_iter()
            .filter(|k| slo_types.iter().any(|&t| SloKind::from(t) == *k))
            .collect();
        ReportOptions {
            inputs,
            scoring: Scoring::from(slo),
            compare_all: false,
            kinds,
            per_gpu: report.x_axis == manifest::XAxis::PerGpu,
            separate_rates: report.rates == manifest::RateSelection::Separate,
            formats,
            out: None,
            warnings: Vec::new(),
        }
    }
}

/// What a report run produced.
#[derive(Debug, Clone)]
pub struct ReportOutcome {
    pub out_dir: PathBuf,
    /// Every file written, in order.
    pub files: Vec<PathBuf>,
    pub skipped: Vec<import::Skipped>,
    pub analysis: Analysis,
    /// Stage times, when `VBENCH_REPORT_TIMING` is set (for the benchmark).
    pub timing: Option<String>,
}

/// The default output folder: `report/` inside the single input folder (or beside the first
/// input), or the first of `report-2`, `report-3`, ... that does not exist yet.
fn default_out_dir(inputs: &[PathBuf]) -> PathBuf {
    let base = match inputs {
        [one] if one.is_dir() => one.clone(),
        _ => inputs
            .first()
            .and_then(|p| p.parent())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    let first = base.join("report");
    if !first.exists() {
        return first;
    }
    (2..)
        .map(|n| base.join(format!("report-{n}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

/// One figure to draw: its file stem and how to draw it.
pub struct FigureJob<'a> {
    pub stem: String,
    /// Section of the HTML page it belongs to.
    pub section: &'static str,
    pub caption: String,
    draw: Box<dyn Fn() -> anyhow::Result<String> + Send + Sync + 'a>,
}

/// A figure written to disk.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct FigureFile {
    pub stem: String,
    pub section: String,
    pub caption: String,
    /// (format extension, file name).
    pub files: Vec<(String, String)>,
    /// SVG text, kept for inlining into the HTML page (not serialised).
    #[serde(skip)]
    pub svg: Option<String>,
    #[serde(skip)]
    pub png: Option<Vec<u8>>,
}

/// Rates every variant in `vs` has (with per-request data); `None` if they share none.
pub fn shared_rates(vs: &[&VariantStats]) -> Option<Vec<f64>> {
    let first = vs.first()?;
    let rates: Vec<f64> = first
        .points
        .iter()
        .filter(|p| p.attainment.is_some())
        .map(|p| p.rate)
        .filter(|r| {
            vs.iter().all(|v| {
                v.points
                    .iter()
                    .any(|p| p.attainment.is_some() && (p.rate - r).abs() < 1e-9)
            })
        })
        .collect();
    (!rates.is_empty()).then_some(rates)
}

/// Comparison groups: all variants (`compare_all`), else each run with several variants.
fn comparison_groups(a: &Analysis, compare_all: bool) -> Vec<Vec<&VariantStats>> {
    if compare_all {
        if a.variants.len() >= 2 {
            return vec![a.variants.iter().collect()];
        }
        return Vec::new();
    }
    let mut runs: Vec<&str> = a.variants.iter().map(|v| v.run.as_str()).collect();
    runs.dedup();
    runs.into_iter()
        .map(|r| a.variants.iter().filter(|v| v.run == r).collect::<Vec<_>>())
        .filter(|g| g.len() >= 2)
        .collect()
}

/// `{a}_vs_{b}[_vs_{c}]` as the original suite named comparisons; long lists are shortened.
fn comparison_stem(group: &[&VariantStats]) -> String {
    let cross_run = group.iter().any(|v| v.run != group[0].run);
    let names: Vec<String> = group
        .iter()
        .map(|v| {
            if cross_run {
                v.slug.clone()
            } else {
                v.key.clone()
            }
        })
        .collect();
    if names.len() <= 3 {
        names.join("_vs_")
    } else if cross_run {
        format!("{}_vs_{}_more", names[0], names.len() - 1)
    } else {
        format!("{}_{}_variants", import::slug(&group[0].run), names.len())
    }
}

/// Every figure of a report, not yet drawn.
pub fn figure_jobs<'a>(a: &'a Analysis, opts: &'a ReportOptions) -> Vec<FigureJob<'a>> {
    let mut jobs: Vec<FigureJob<'a>> = Vec::new();
    let per_gpu = opts.per_gpu;
    for group in comparison_groups(a, opts.compare_all) {
        let stem = comparison_stem(&group);
        let shared = if opts.separate_rates {
            None
        } else {
            shared_rates(&group)
        };
        for &kind in &opts.kinds {
            let group = group.clone();
            let shared = shared.clone();
            jobs.push(FigureJob {
                stem: format!("{stem}_comparison_{}", kind.short()),
                section: "Comparisons",
                caption: format!(
                    "{} attainment of {} variants{}",
                    kind.title(),
                    group.len(),
                    if shared.is_some() {
                        " over their shared rates"
                    } else {
                        ""
                    }
                ),
                draw: Box::new(move || {
                    figures::comparison_figure(a, &group, kind, per_gpu, shared.as_deref())
                }),
            });
        }
    }
    // Drawn where some prompt tokens were reused or could have been: a figure of zeros says
    // nothing the per-rate tables do not.
    let reused = |c: &crate::report::import::CacheInfo| {
        c.reused_pct > 0.0 || c.ideal_pct.is_some_and(|i| i > 0.0)
    };
    let cached: Vec<&VariantStats> = a
        .variants
        .iter()
        .filter(|v| v.points.iter().any(|p| p.cache.is_some()))
        .collect();
    let cached = if cached.iter().any(|v| {
        v.points
            .iter()
            .any(|p| p.cache.as_ref().is_some_and(reused))
    }) {
        cached
    } else {
        Vec::new()
    };
    if !cached.is_empty() {
        jobs.push(FigureJob {
            stem: "cache_reuse".to_string(),
            section: "Cache reuse",
            caption: format!(
                "Prompt KV reused and TTFT p50, {} variant{}",
                cached.len(),
                if cached.len() == 1 { "" } else { "s" }
            ),
            draw: Box::new(move || figures::cache_figure(a, &cached)),
        });
    }
    for v in &a.variants {
        jobs.push(FigureJob {
            stem: format!("{}_benchmark_plots", v.slug),
            section: "Variants",
            caption: format!("{}: attainment vs rate and vs SLO scale", v.label),
            draw: Box::new(move || figures::variant_figure(a, v, per_gpu)),
        });
        jobs.push(FigureJob {
            stem: format!("{}_latency_percentiles", v.slug),
            section: "Latency",
            caption: format!("{}: TTFT and TPOT percentiles vs rate", v.label),
            draw: Box::new(move || figures::latency_figure(a, v)),
        });
        if v.points.iter().any(|p| p.client.is_some()) {
            jobs.push(FigureJob {
                stem: format!("{}_client_health", v.slug),
                section: "Client health",
                caption: format!("{}: achieved rate and schedule lag", v.label),
                draw: Box::new(move || figures::client_figure(a, v)),
            });
        }
    }
    jobs
}

/// Draw and write every job, on all cores. Results keep the jobs' order.
///
/// Writing (atomic, with fsync) waits on the disk rather than the CPU, so it runs on its own
/// threads and overlaps the drawing of the next figures.
fn draw_all(
    jobs: &[FigureJob<'_>],
    formats: &[Format],
    out_dir: &Path,
) -> anyhow::Result<Vec<FigureFile>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<anyhow::Result<FigureFile>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    let write_errors: Mutex<Vec<anyhow::Error>> = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(jobs.len().max(1));
    let (tx, rx) = std::sync::mpsc::channel::<(PathBuf, Vec<u8>)>();
    let rx = Mutex::new(rx);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let msg = match rx.lock() {
                    Ok(r) => r.recv(),
                    Err(_) => break,
                };
                let Ok((path, bytes)) = msg else { break };
                let t = std::time::Instant::now();
                if let Err(e) = write_bytes_new(&path, &bytes) {
                    if let Ok(mut w) = write_errors.lock() {
                        w.push(e);
                    }
                }
                convert::timing::add(convert::timing::WRITE, t);
            });
        }
        let drawers: Vec<_> = (0..workers)
            .map(|_| {
                let tx = tx.clone();
                s.spawn(|| {
                    let tx = tx;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(job) = jobs.get(i) else { break };
                        let r = draw_one(job, formats, out_dir, &tx);
                        if let Ok(mut guard) = results.lock() {
                            guard[i] = Some(r);
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        for d in drawers {
            let _ = d.join();
        }
    });
    if let Some(e) = write_errors
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a writing thread panicked"))?
        .into_iter()
        .next()
    {
        return Err(e);
    }
    let results = results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a drawing thread panicked"))?;
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(anyhow::anyhow!("a figure was not drawn"))))
        .collect()
}

fn draw_one(
    job: &FigureJob<'_>,
    formats: &[Format],
    out_dir: &Path,
    writer: &std::sync::mpsc::Sender<(PathBuf, Vec<u8>)>,
) -> anyhow::Result<FigureFile> {
    let t = std::time::Instant::now();
    let svg = (job.draw)().with_context(|| format!("drawing {}", job.stem))?;
    convert::timing::add(convert::timing::DRAW, t);
    let rendered =
        convert::render(&svg, formats).with_context(|| format!("converting {}", job.stem))?;
    let mut files = Vec::new();
    let mut png = None;
    for (f, bytes) in rendered {
        let name = format!("{}.{}", job.stem, f.ext());
        if f == Format::Png && !formats.contains(&Format::Svg) {
            png = Some(bytes.clone());
        }
        writer
            .send((out_dir.join(&name), bytes))
            .map_err(|_| anyhow::anyhow!("the file writer stopped"))?;
        files.push((f.ext().to_string(), name));
    }
    Ok(FigureFile {
        stem: job.stem.clone(),
        section: job.section.to_string(),
        caption: job.caption.clone(),
        files,
        svg: formats.contains(&Format::Svg).then_some(svg),
        png,
    })
}

/// The report of one run folder with the run manifest's settings, in `<run_dir>/report/`.
/// What `apply` calls after its last cell. A report already there (from an interrupted
/// attempt, before `--resume`) is replaced whole: the new one is drawn in a hidden folder
/// beside it and swapped in with one atomic rename, so a reader sees the old report or the
/// new one, never a mix, and no `report-2/` piles up.
pub fn report_run_folder(run_dir: &Path) -> Result<ReportOutcome> {
    let run = rundir::RunDir::open(run_dir);
    let final_dir = run.report_dir();
    // Only a report folder is replaced: a file of the user's by that name stays where it is.
    if std::fs::symlink_metadata(&final_dir).is_ok_and(|m| m.is_file()) {
        return Err(Error::bad_input(anyhow::anyhow!(
            "{} is a file, not a report folder vbench wrote; move it away to render the \
             report here (it was left as it is)",
            final_dir.display()
        )));
    }
    let staging = run.report_staging_dir();
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(Error::failed)?;
    }
    let mut opts = ReportOptions::for_inputs(vec![run_dir.to_path_buf()]);
    opts.out = Some(staging.clone());
    let mut outcome = match render_report(&opts) {
        Ok(o) => o,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    swap_into_place(&staging, &final_dir).map_err(Error::failed)?;
    outcome.out_dir = final_dir.clone();
    for f in &mut outcome.files {
        if let Ok(rel) = f.strip_prefix(&staging) {
            *f = final_dir.join(rel);
        }
    }
    Ok(outcome)
}

/// Put the folder `new` at `dest`: a plain rename when `dest` does not exist, else an atomic
/// exchange of the two (Linux `renameat2(RENAME_EXCHANGE)`) and removal of the old one.
fn swap_into_place(new: &Path, dest: &Path) -> anyhow::Result<()> {
    if !dest.exists() {
        return std::fs::rename(new, dest)
            .with_context(|| format!("moving {} to {}", new.display(), dest.display()));
    }
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).context("path with NUL");
    let (a, b) = (c(new)?, c(dest)?);
    // SAFETY: two valid NUL-terminated paths; renameat2 reads them only.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("replacing {} with {}", dest.display(), new.display()));
    }
    // `new` now holds the old report.
    std::fs::remove_dir_all(new)
        .with_context(|| format!("removing the old report {}", new.display()))
}

/// Import, analyse, draw every figure, and write index.html, summary.md and summary.json.
///
/// Errors: an input that does not exist, or no usable result file at all, is bad input;
/// failing to write is a failed run.
pub fn render_report(opts: &ReportOptions) -> Result<ReportOutcome> {
    let t = std::time::Instant::now();
    let imported = import::import_paths(&opts.inputs).map_err(Error::bad_input)?;
    convert::timing::add(convert::timing::IMPORT, t);
    let mut out = render_imported(&imported, opts);
    let timing = convert::timing::report();
    if let Ok(o) = &mut out {
        o.timing = timing;
    }
    out
}

/// [`render_report`] on results already in memory (tests, benchmarks).
pub fn render_imported(imported: &Imported, opts: &ReportOptions) -> Result<ReportOutcome> {
    let total: usize = imported.runs.iter().map(|r| r.variants.len()).sum();
    if total == 0 {
        let mut msg = String::from("no usable result files found");
        for s in &imported.skipped {
            msg.push_str(&format!("\n  skipped {}: {}", s.path.display(), s.reason));
        }
        return Err(Error::bad_input(anyhow::anyhow!(msg)));
    }
    let t = std::time::Instant::now();
    let analysis = analysis::analyse(imported, &opts.scoring);
    convert::timing::add(convert::timing::ANALYSE, t);
    let out_dir = opts
        .out
        .clone()
        .unwrap_or_else(|| default_out_dir(&opts.inputs));
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("creating {}", out_dir.display()))
        .map_err(Error::failed)?;
    let figures = {
        let jobs = figure_jobs(&analysis, opts);
        draw_all(&jobs, &opts.formats, &out_dir).map_err(Error::failed)?
    };
    let mut files: Vec<PathBuf> = figures
        .iter()
        .flat_map(|f| f.files.iter().map(|(_, n)| out_dir.join(n)))
        .collect();
    let t = std::time::Instant::now();
    let written = summary::write_summaries(&analysis, &figures, &imported.skipped, opts, &out_dir)
        .map_err(Error::failed)?;
    convert::timing::add(convert::timing::SUMMARY, t);
    files.extend(written);
    Ok(ReportOutcome {
        out_dir,
        files,
        skipped: imported.skipped.clone(),
        analysis,
        timing: None,
    })
}

/// A one-line view of the SLOs, for texts.
pub fn slo_line(slo: &Slo, target: f64) -> String {
    format!(
        "TTFT ≤ {} ms, TPOT ≤ {} ms, target {}%",
        attainment::fmt_num(slo.ttft_s * 1e3),
        attainment::fmt_num(slo.tpot_s * 1e3),
        attainment::fmt_num(target)
    )
}
