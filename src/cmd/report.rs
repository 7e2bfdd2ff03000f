//! `vbench report`: figures and summaries from stored results.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::report::attainment::SloKind;
use crate::report::{render_report, Format, ReportOptions};

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
    pub format: Option<Vec<FormatArg>>,
    /// Output folder (default: $PLOT_OUTPUT_DIR, else `report/` inside the single input
    /// folder, else `report/` beside the first input; a fresh `report-N` if it exists).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// A figure format on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    Pdf,
    Svg,
    Png,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Pdf => Format::Pdf,
            FormatArg::Svg => Format::Svg,
            FormatArg::Png => Format::Png,
        }
    }
}

/// `vbench report`.
pub fn run(args: ReportArgs) -> Result<()> {
    let opts = options_from_args(args)?;
    for w in &opts.warnings {
        eprintln!("warning: {w}");
    }
    let rendering = super::progress::Spinner::on_terminal("rendering the report");
    let outcome = render_report(&opts);
    drop(rendering);
    let outcome = outcome?;
    if let Some(t) = &outcome.timing {
        eprintln!("{t}");
    }
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
        o.formats = f.into_iter().map(Format::from).collect();
    }
    o.formats.sort();
    o.formats.dedup();
    o.out = args
        .out
        .or_else(|| std::env::var_os("PLOT_OUTPUT_DIR").map(PathBuf::from));
    Ok(o)
}
