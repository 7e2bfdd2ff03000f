//! Reports: attainment math, figures, HTML and Markdown summaries.
//!
//! Entry point for other commands (e.g. `apply` after its last cell): [`render_report`] with a
//! [`ReportOptions`] built by [`ReportOptions::for_inputs`].

pub mod analysis;
pub mod attainment;
pub mod convert;
pub mod figures;
pub mod summary;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::Context;

use crate::error::{Error, Result};
use crate::results::import::{self, Imported};
use crate::results::store::write_bytes_new;
use analysis::{Analysis, Scoring, VariantStats};
use attainment::{Slo, SloKind};
pub use convert::Format;

/// Which SLO types get comparison figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SloChoice {
    Ttft,
    Tpot,
    Both,
    All,
}

/// The x axis of attainment-vs-rate panels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum XAxis {
    /// Offered request rate (req/s).
    Rate,
    /// Offered rate divided by the variant's GPUs (req/s/GPU), for equal-budget comparisons.
    PerGpu,
}

/// Draw SLO-attainment figures and summaries from stored results.
///
/// Reads vbench run folders, folders of the original suite's `vllm-<rate>qps-*.json` files and
/// `vllm bench serve --save-result --save-detailed` files. A malformed file is reported by
/// name and skipped.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Run folders or result files. Each is one run; several variants of one run folder are
    /// compared with each other.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Compare every variant of every input in one set of figures.
    #[arg(long)]
    pub compare: bool,
    /// SLO types that get comparison figures (default: the manifest's `report.slo_types`,
    /// else all).
    #[arg(long, value_enum)]
    pub slo: Option<SloChoice>,
    /// TTFT SLO in milliseconds (default: the manifest's, else 125).
    #[arg(long, env = "TTFT_SLO")]
    pub ttft_ms: Option<f64>,
    /// TPOT SLO in milliseconds (default: the manifest's, else 200).
    #[arg(long, env = "TPOT_SLO")]
    pub tpot_ms: Option<f64>,
    /// Target attainment in percent (default: the manifest's, else 90).
    #[arg(long, env = "TARGET_ATTAINMENT")]
    pub target: Option<f64>,
    /// SLO scales for the scale panel, comma-separated (default: the manifest's, else
    /// 0.4,0.6,0.8,1,1.2,1.5,2).
    #[arg(long, value_delimiter = ',')]
    pub scales: Option<Vec<f64>>,
    /// Rate at which the SLO-scale panel is scored (default: the manifest's `slo.scale_rate`,
    /// else the middle of the swept rates).
    #[arg(long)]
    pub scale_rate: Option<f64>,
    /// Compare each run over its own rates instead of only the rates all runs share
    /// (default: the manifest's `report.rates`, else shared).
    #[arg(long)]
    pub separate_rates: bool,
    /// X axis of attainment-vs-rate panels (default: the manifest's `report.x_axis`, else rate).
    #[arg(long = "x", value_enum)]
    pub x_axis: Option<XAxis>,
    /// Figure formats, comma-separated (default: the manifest's `report.formats`, else
    /// pdf,svg,png).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub format: Option<Vec<Format>>,
    /// Output folder (default: $PLOT_OUTPUT_DIR, else `report/` inside the single input
    /// folder, else `report/` beside the first input; a fresh `report-N` if it exists).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

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
}

impl ReportOptions {
    /// Defaults for a set of inputs: the first input's manifest.toml (the copy in its run
    /// folder) when present — `[slo]` `ttft_ms`, `tpot_ms`, `target_pct`, `scales`,
    /// `scale_rate` and `[report]` `formats`, `x_axis`, `rates`, `slo_types` — else SLOs 125/200
    /// ms at 90 %, every figure in all three formats over shared rates, output in `report/`
    /// inside the run folder.
    pub fn for_inputs(inputs: Vec<PathBuf>) -> Self {
        let mut o = ReportOptions {
            inputs,
            scoring: Scoring::default(),
            compare_all: false,
            kinds: SloKind::ALL.to_vec(),
            per_gpu: false,
            separate_rates: false,
            formats: vec![Format::Pdf, Format::Svg, Format::Png],
            out: None,
        };
        if let Some(first) = o.inputs.first().cloned() {
            apply_manifest(&first, &mut o);
        }
        o
    }
}

/// Read `[slo]` and `[report]` from a run folder's manifest.toml, leniently: the manifest was
/// validated when it ran, and a value of an unexpected shape here keeps the default.
fn apply_manifest(dir: &Path, o: &mut ReportOptions) {
    let Ok(text) = std::fs::read_to_string(dir.join("manifest.toml")) else {
        return;
    };
    let Ok(t) = text.parse::<toml::Table>() else {
        return;
    };
    if let Some(r) = t.get("report").and_then(|s| s.as_table()) {
        let strings = |k: &str| -> Option<Vec<String>> {
            r.get(k)?.as_array().map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
        };
        if let Some(f) = strings("formats") {
            let f: Vec<Format> = f
                .iter()
                .filter_map(|s| match s.as_str() {
                    "pdf" => Some(Format::Pdf),
                    "svg" => Some(Format::Svg),
                    "png" => Some(Format::Png),
                    _ => None,
                })
                .collect();
            if !f.is_empty() {
                o.formats = f;
            }
        }
        if let Some(x) = r.get("x_axis").and_then(|v| v.as_str()) {
            o.per_gpu = x == "per-gpu";
        }
        if let Some(x) = r.get("rates").and_then(|v| v.as_str()) {
            o.separate_rates = x == "separate";
        }
        if let Some(k) = strings("slo_types") {
            let k: Vec<SloKind> = SloKind::ALL
                .into_iter()
                .filter(|kind| k.iter().any(|s| s == kind.short()))
                .collect();
            if !k.is_empty() {
                o.kinds = k;
            }
        }
    }
    let sc = &mut o.scoring;
    let Some(slo) = t.get("slo").and_then(|s| s.as_table()) else {
        return;
    };
    let num = |k: &str| {
        slo.get(k)
            .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
    };
    if let Some(x) = num("ttft_ms").filter(|x| *x > 0.0) {
        sc.slo.ttft_s = x / 1e3;
    }
    if let Some(x) = num("tpot_ms").filter(|x| *x > 0.0) {
        sc.slo.tpot_s = x / 1e3;
    }
    if let Some(x) = num("target_pct").filter(|x| *x > 0.0 && *x <= 100.0) {
        sc.target_pct = x;
    }
    if let Some(x) = num("scale_rate").filter(|x| *x > 0.0) {
        sc.scale_rate = Some(x);
    }
    if let Some(arr) = slo.get("scales").and_then(|v| v.as_array()) {
        let s: Vec<f64> = arr
            .iter()
            .filter_map(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
            .filter(|x| *x > 0.0 && x.is_finite())
            .collect();
        if !s.is_empty() {
            sc.scales = s;
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
}

/// `vbench report`.
pub fn run_report(args: ReportArgs) -> Result<()> {
    let opts = options_from_args(args)?;
    let outcome = render_report(&opts)?;
    for s in &outcome.skipped {
        eprintln!("skipped {}: {}", s.path.display(), s.reason);
    }
    println!(
        "report: {} files in {}",
        outcome.files.len(),
        outcome.out_dir.display()
    );
    println!("{}", outcome.out_dir.join("index.html").display());
    Ok(())
}

fn options_from_args(args: ReportArgs) -> Result<ReportOptions> {
    let mut o = ReportOptions::for_inputs(args.dirs);
    let bad = |m: String| Error::bad_input(anyhow::anyhow!(m));
    if let Some(x) = args.ttft_ms {
        if !(x.is_finite() && x > 0.0) {
            return Err(bad(format!(
                "--ttft-ms must be a positive number of ms, got {x}"
            )));
        }
        o.scoring.slo.ttft_s = x / 1e3;
    }
    if let Some(x) = args.tpot_ms {
        if !(x.is_finite() && x > 0.0) {
            return Err(bad(format!(
                "--tpot-ms must be a positive number of ms, got {x}"
            )));
        }
        o.scoring.slo.tpot_s = x / 1e3;
    }
    if let Some(x) = args.target {
        if !(x.is_finite() && x > 0.0 && x <= 100.0) {
            return Err(bad(format!(
                "--target must be a percentage in (0, 100], got {x}"
            )));
        }
        o.scoring.target_pct = x;
    }
    if let Some(s) = args.scales {
        if s.is_empty() || s.iter().any(|x| !(x.is_finite() && *x > 0.0)) {
            return Err(bad("--scales must be positive numbers, e.g. 0.5,1,2".into()));
        }
        o.scoring.scales = s;
    }
    o.scoring.scales.sort_by(f64::total_cmp);
    o.scoring.scales.dedup();
    if let Some(r) = args.scale_rate {
        o.scoring.scale_rate = Some(r);
    }
    o.compare_all = args.compare;
    if let Some(slo) = args.slo {
        o.kinds = match slo {
            SloChoice::Ttft => vec![SloKind::TtftOnly],
            SloChoice::Tpot => vec![SloKind::TpotOnly],
            SloChoice::Both => vec![SloKind::Both],
            SloChoice::All => SloKind::ALL.to_vec(),
        };
    }
    if let Some(x) = args.x_axis {
        o.per_gpu = x == XAxis::PerGpu;
    }
    o.separate_rates |= args.separate_rates;
    if let Some(f) = args.format {
        o.formats = f;
    }
    o.formats.sort();
    o.formats.dedup();
    o.out = args
        .out
        .or_else(|| std::env::var_os("PLOT_OUTPUT_DIR").map(PathBuf::from));
    Ok(o)
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

/// The report of one run folder with the run manifest's settings, written to
/// `<run_dir>/report/` (or a fresh `report-N/`). What `apply` calls after its last cell.
pub fn report_run_folder(run_dir: &Path) -> Result<ReportOutcome> {
    render_report(&ReportOptions::for_inputs(vec![run_dir.to_path_buf()]))
}

/// Import, analyse, draw every figure, and write index.html, summary.md and summary.json.
///
/// Errors: an input that does not exist, or no usable result file at all, is bad input;
/// failing to write is a failed run.
pub fn render_report(opts: &ReportOptions) -> Result<ReportOutcome> {
    let t = std::time::Instant::now();
    let imported = import::import_paths(&opts.inputs).map_err(Error::bad_input)?;
    convert::timing::add(convert::timing::IMPORT, t);
    let out = render_imported(&imported, opts);
    convert::timing::report();
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
