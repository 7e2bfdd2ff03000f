//! Everything the figures and summaries show, computed once from the imported runs.

use serde::Serialize;

use super::attainment::{self, percentile_sorted, Crossing, Slo};
use crate::report::import::{
    CacheInfo, ClientInfo, FileSummary, Imported, RatePoint, Sample, SourceKind, Variant,
};
use crate::stats::{self, Interval};

/// What to score and how.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Scoring {
    pub slo: Slo,
    /// Target attainment, percent.
    pub target_pct: f64,
    /// SLO scales for the scale panel, ascending.
    pub scales: Vec<f64>,
    /// Rate for the SLO-scale panel (the nearest measured one); `None` (null): the middle of the
    /// swept rates (the lower middle for an even count), as the manifest documents.
    pub scale_rate: Option<f64>,
}

impl Default for Scoring {
    /// The manifest's defaults (`[slo]` left out).
    fn default() -> Self {
        Scoring::from(&crate::manifest::Slo::default())
    }
}

impl From<&crate::manifest::Slo> for Scoring {
    fn from(slo: &crate::manifest::Slo) -> Self {
        let mut scales = slo.scales.clone();
        scales.sort_by(f64::total_cmp);
        scales.dedup();
        Scoring {
            slo: Slo::from(slo),
            target_pct: slo.target_pct,
            scales,
            scale_rate: slo.scale_rate,
        }
    }
}

/// p50/p90/p99 of one metric, milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Pcts {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

/// 95 % intervals of p50/p90/p99, milliseconds; an open end: too few requests to bound it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PctsInterval {
    pub p50: Interval,
    pub p90: Interval,
    pub p99: Interval,
}

fn pcts_ms(values: &mut [f64]) -> Option<Pcts> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable_by(f64::total_cmp);
    Some(Pcts {
        p50: percentile_sorted(values, 50.0) * 1e3,
        p90: percentile_sorted(values, 90.0) * 1e3,
        p99: percentile_sorted(values, 99.0) * 1e3,
    })
}

/// The intervals of [`pcts_ms`] (call it first: `values` must be sorted).
fn pcts_interval_ms(sorted: &[f64]) -> Option<PctsInterval> {
    (!sorted.is_empty()).then(|| PctsInterval {
        p50: stats::quantile_interval(sorted, 0.50).scaled(1e3),
        p90: stats::quantile_interval(sorted, 0.90).scaled(1e3),
        p99: stats::quantile_interval(sorted, 0.99).scaled(1e3),
    })
}

/// One rate of one variant.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PointStats {
    /// Offered rate, requests/s.
    pub rate: f64,
    /// `rate` divided by the variant's GPUs (1 when unknown).
    pub per_gpu_rate: f64,
    /// The result file's name.
    pub file: String,
    pub requests: u64,
    pub completed: u64,
    pub failed: u64,
    pub failures_by_kind: std::collections::BTreeMap<String, u64>,
    /// The warnings `apply` recorded with this point's results (each once, over repeats).
    pub warnings: Vec<String>,
    /// What each GPU did during this point (over repeats); empty where unknown.
    pub gpus: Vec<crate::load::result::GpuTelemetry>,
    /// Attainment (%) at scale 1: both, TTFT only, TPOT only. `None` (null) without per-request data.
    pub attainment: Option<[f64; 3]>,
    /// 95 % Wilson intervals of `attainment` (%), over this point's requests; with repeats,
    /// "both" is widened to the t-interval of the repeats' mean where that is wider.
    pub attainment_interval: Option<[Interval; 3]>,
    /// Latency percentiles over successful requests (TPOT: those with ≥ 2 output tokens).
    pub ttft_ms: Option<Pcts>,
    pub tpot_ms: Option<Pcts>,
    pub itl_ms: Option<Pcts>,
    pub e2e_ms: Option<Pcts>,
    /// 95 % intervals of the TTFT, TPOT and E2E percentiles (distribution-free, over
    /// requests). ITL has none: the gaps of one request are not independent samples.
    pub ttft_interval_ms: Option<PctsInterval>,
    pub tpot_interval_ms: Option<PctsInterval>,
    pub e2e_interval_ms: Option<PctsInterval>,
    pub request_throughput: Option<f64>,
    pub output_throughput: Option<f64>,
    /// The client's schedule keeping (with repeats: the repeat that kept it worst); null for
    /// files other tools wrote.
    pub client: Option<ClientInfo>,
    /// What the instances that compute prompts reused of this point's prompt tokens; null
    /// where the servers did not say.
    pub cache: Option<CacheInfo>,
    /// NIXL's KV transfers during this point (summed over repeats); null for other modes
    /// and where the servers did not say.
    pub kv_transfer: Option<crate::load::result::KvTransfer>,
    /// Each role's KV cache during this point: size, peak use, preemptions (summed over
    /// repeats); null where the servers did not say.
    pub kv_cache: Option<crate::load::result::KvCache>,
    /// Result files pooled into this point: 1, or the number of repeats of this rate.
    pub repeats: u32,
    /// With repeats: each repeat's own numbers, to show the spread between them beside the
    /// pooled intervals (which count requests, not repeats).
    pub spread: Option<RepeatSpread>,
    /// Only when the file has no per-request data: its own summary numbers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_summary: Option<FileSummary>,
    /// Only for multi-turn sessions (`rate` is then session starts per second): attainment
    /// per turn index and per session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<SessionStats>,
}

/// Multi-turn sessions at one rate. Every turn is also one of the point's requests.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SessionStats {
    pub sessions: u64,
    /// Sessions every turn of which met the SLO (TTFT and TPOT, scale 1), % of `sessions`.
    pub attainment: f64,
    /// Sessions with a failed turn; the turns after it are failed `session_ended` requests.
    pub sessions_failed: u64,
    /// One entry per turn index, from turn 1.
    pub by_turn: Vec<TurnStats>,
}

/// The requests of one turn index across a rate's sessions.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TurnStats {
    /// 1 for the first turn of every session, 2 for the second, ...
    pub turn: u32,
    pub requests: u64,
    /// % of this turn's requests meeting the SLO (failed ones included, as misses).
    pub attainment: f64,
    /// Over this turn's successful requests.
    pub ttft_ms: Option<Pcts>,
    pub tpot_ms: Option<Pcts>,
}

/// Each repeat's attainment and medians, and their spread.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RepeatSpread {
    /// Attainment (both SLOs, %) of each repeat, in file order.
    pub attainment: Vec<f64>,
    /// Their standard deviation, percentage points.
    pub attainment_sd: f64,
    /// TTFT and TPOT p50 (ms) of each repeat, and their coefficients of variation (sd / mean).
    pub ttft_p50_ms: Vec<f64>,
    pub ttft_p50_cv: Option<f64>,
    pub tpot_p50_ms: Vec<f64>,
    pub tpot_p50_cv: Option<f64>,
}

/// Sample standard deviation; 0 for fewer than two values.
fn sd(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

fn cv(xs: &[f64]) -> Option<f64> {
    let mean = xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    (xs.len() >= 2 && mean > 0.0).then(|| sd(xs) / mean)
}

/// One point from several repeats of a rate: their requests pooled, counts summed, the worst
/// client health kept.
fn pooled(repeats: &[&RatePoint]) -> RatePoint {
    let mut out = repeats[0].clone();
    for p in &repeats[1..] {
        // Each repeat numbers its sessions from 0: renumber after the ones pooled so far.
        let next = out
            .samples
            .iter()
            .filter_map(|s| s.session_turn)
            .map(|(session, _)| session + 1)
            .max()
            .unwrap_or(0);
        out.samples.extend(p.samples.iter().map(|s| Sample {
            session_turn: s.session_turn.map(|(session, turn)| (session + next, turn)),
            ..*s
        }));
        out.itls_s.extend_from_slice(&p.itls_s);
        out.per_request &= p.per_request;
        out.num_requests += p.num_requests;
        out.completed += p.completed;
        out.failed += p.failed;
        out.duration_s = match (out.duration_s, p.duration_s) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        for (kind, n) in &p.failures_by_kind {
            *out.failures_by_kind.entry(kind.clone()).or_default() += n;
        }
        out.gpus = crate::load::result::merge_gpus(&out.gpus, &p.gpus);
        for w in &p.warnings {
            if !out.warnings.contains(w) {
                out.warnings.push(w.clone());
            }
        }
        out.cache = match (&out.cache, &p.cache) {
            (Some(a), Some(b)) => Some(a.merged(b)),
            _ => None,
        };
        out.kv_transfer = match (&out.kv_transfer, &p.kv_transfer) {
            (Some(a), Some(b)) => Some(a.merged(b)),
            _ => None,
        };
        out.kv_cache = match (&out.kv_cache, &p.kv_cache) {
            (Some(a), Some(b)) => Some(a.merged(b)),
            _ => None,
        };
        if let Some(c) = &p.client {
            // Falling behind outranks any lag; then the larger lag.
            let rank = |x: &ClientInfo| (x.client_fell_behind, x.lag_p99_ms);
            let worse = out
                .client
                .as_ref()
                .is_none_or(|o| rank(c).partial_cmp(&rank(o)) == Some(std::cmp::Ordering::Greater));
            if worse {
                out.client = Some(c.clone());
            }
        }
    }
    let mean = |f: fn(&RatePoint) -> Option<f64>| -> Option<f64> {
        let xs: Option<Vec<f64>> = repeats.iter().map(|p| f(p)).collect();
        xs.map(|xs| xs.iter().sum::<f64>() / xs.len() as f64)
    };
    out.request_throughput = mean(|p| p.request_throughput);
    out.output_throughput = mean(|p| p.output_throughput);
    out
}

/// The spread between repeats of one rate (None for a single file).
fn repeat_spread(repeats: &[&RatePoint], slo: Slo) -> Option<RepeatSpread> {
    if repeats.len() < 2 || !repeats.iter().all(|p| p.per_request) {
        return None;
    }
    let attainment: Vec<f64> = repeats
        .iter()
        .filter_map(|p| attainment::attainment3(&p.samples, slo, 1.0).map(|a| a[0]))
        .collect();
    let p50 = |f: fn(&crate::report::import::Sample) -> Option<f64>| -> Vec<f64> {
        repeats
            .iter()
            .filter_map(|p| {
                let mut xs: Vec<f64> = p.samples.iter().filter(|s| s.ok).filter_map(f).collect();
                attainment::percentile(&mut xs, 50.0).map(|v| v * 1e3)
            })
            .collect()
    };
    let ttft_p50_ms = p50(|s| s.ttft_s);
    let tpot_p50_ms = p50(|s| s.tpot_s);
    Some(RepeatSpread {
        attainment_sd: sd(&attainment),
        attainment,
        ttft_p50_cv: cv(&ttft_p50_ms),
        ttft_p50_ms,
        tpot_p50_cv: cv(&tpot_p50_ms),
        tpot_p50_ms,
    })
}

/// Curves and headline numbers of one variant.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct VariantStats {
    pub run: String,
    /// File-name stem for this variant's figures.
    pub slug: String,
    /// Stable key within its run: the planner's variant id, else a slug of the label.
    pub key: String,
    /// `simple`, `nixl`, `lmcache`, `external`, ...
    pub mode: String,
    /// Human label, e.g. `nixl PF:2 D:1 TP:1x1`.
    pub label: String,
    pub gpus: u32,
    /// False when the result files did not say (per-GPU rates then assume 1 GPU).
    pub gpus_known: bool,
    /// True when the variant ran on `vbench sim-serve`.
    pub simulated: bool,
    pub model: String,
    pub dataset: String,
    pub source: SourceKind,
    pub points: Vec<PointStats>,
    /// Rate crossing per kind (both, TTFT only, TPOT only).
    pub rate_crossing: [Crossing; 3],
    /// Goodput: rate crossing of "both", req/s.
    pub goodput: Crossing,
    /// Goodput per GPU, req/s/GPU.
    pub goodput_per_gpu: Crossing,
    /// Goodput's 95 % range: where the attainment intervals' lower ends cross the target
    /// (pessimistic) and where their upper ends do (optimistic).
    pub goodput_interval: [Crossing; 2],
    /// How many times more the attainment of repeated measurements of one rate (repeats, or a
    /// search's batches) varied than independent requests would make it (a variance ratio,
    /// pooled over the rates measured more than once; null without two degrees of freedom).
    /// Above 1, every attainment interval of the variant is widened to match: near capacity
    /// requests queue behind each other and pass or fail together.
    pub attainment_dispersion: Option<f64>,
    pub goodput_per_gpu_interval: [Crossing; 2],
    /// The rate the SLO-scale panel was scored at.
    pub scale_rate: Option<f64>,
    /// (scale, [both, ttft, tpot]) at `scale_rate`: attainment (%) at each SLO scale.
    pub scale_curve: Vec<(f64, [f64; 3])>,
    /// Tightest scale meeting the target, per kind.
    pub scale_crossing: [Crossing; 3],
    /// True when some rate point's client fell behind its schedule.
    pub client_fell_behind: bool,
    pub total_failed: u64,
    pub total_requests: u64,
    /// Rate points without per-request data (attainment cannot be computed there).
    pub summary_only_points: usize,
    /// The variant's `[load.search]` outcome, when it ran one (its points are the probes).
    pub search: Option<crate::results::rundir::SearchSummary>,
    /// Rates to measure next to narrow the goodput range: the middle of each gap between
    /// measured rates, wider than a tenth of the goodput, that holds an end of the range (or,
    /// with no crossing, twice the highest rate / half the lowest). Empty when rate spacing
    /// is not what makes the range wide, and for a search, which picks its own probes.
    pub narrowing_rates: Vec<f64>,
}

impl VariantStats {
    /// Attainment-vs-rate points (x, y) of one kind, x as rate or per-GPU rate.
    pub fn rate_curve(&self, kind: usize, per_gpu: bool) -> Vec<(f64, f64)> {
        self.points
            .iter()
            .filter_map(|p| {
                let x = if per_gpu { p.per_gpu_rate } else { p.rate };
                p.attainment.map(|a| (x, a[kind]))
            })
            .collect()
    }

    /// A search's verdicts placed on the "both" curve: (x, attainment, passed) for each probe
    /// whose rate has a point (a rate's batches are pooled into one point).
    pub fn probe_points(
        &self,
        verdicts: &[crate::results::rundir::ProbeVerdict],
        per_gpu: bool,
    ) -> Vec<(f64, f64, bool)> {
        verdicts
            .iter()
            .filter_map(|v| {
                let p = self
                    .points
                    .iter()
                    .find(|p| (p.rate - v.rate).abs() < 1e-9)?;
                let x = if per_gpu { p.per_gpu_rate } else { p.rate };
                Some((x, p.attainment?[0], v.pass))
            })
            .collect()
    }

    /// [`Self::rate_curve`] with each point's 95 % interval: (x, attainment, low, high) %.
    pub fn rate_curve_interval(&self, kind: usize, per_gpu: bool) -> Vec<(f64, f64, f64, f64)> {
        self.points
            .iter()
            .filter_map(|p| {
                let x = if per_gpu { p.per_gpu_rate } else { p.rate };
                let i = p.attainment_interval?[kind];
                Some((x, p.attainment?[kind], i.lo?, i.hi?))
            })
            .collect()
    }
}

/// The whole analysis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    pub scoring: Scoring,
    pub variants: Vec<VariantStats>,
    /// Each input run and what was recorded about where it ran.
    pub runs: Vec<RunInfo>,
}

/// One input run, for the report's provenance section.
#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct RunInfo {
    pub name: String,
    pub path: String,
    pub environment: Option<crate::results::Environment>,
    /// Each `apply --resume` of the run (`environment-resume-<T>.json`), oldest first.
    pub resumes: Vec<crate::results::Environment>,
    /// Planned cells without a result (from the run's plan.json).
    pub missing_cells: Vec<crate::results::rundir::MissingCell>,
    /// Variants the plan left out because the target was too small for them.
    pub not_run: Vec<crate::results::rundir::SkippedRecord>,
}

pub fn analyse(imported: &Imported, scoring: &Scoring) -> Analysis {
    let mut todo = Vec::new();
    for run in &imported.runs {
        let single = run.variants.len() == 1;
        for v in &run.variants {
            let slug = if single {
                crate::report::import::slug(&run.name)
            } else {
                format!("{}_{}", crate::report::import::slug(&run.name), v.key)
            };
            todo.push((run.name.as_str(), slug, v));
        }
    }
    let variants = crate::report::import::par_map(&todo, |(run, slug, v)| {
        analyse_variant(run, slug.clone(), v, scoring)
    });
    let runs = imported
        .runs
        .iter()
        .map(|r| RunInfo {
            name: r.name.clone(),
            path: r.path.display().to_string(),
            environment: r.environment.clone(),
            resumes: r.resumes.clone(),
            missing_cells: r.missing_cells.clone(),
            not_run: r.not_run.clone(),
        })
        .collect();
    Analysis {
        scoring: scoring.clone(),
        variants,
        runs,
    }
}

/// Wilson intervals (%) of attainment percentages over `n` requests.
fn attainment_interval(att: [f64; 3], n: usize) -> [Interval; 3] {
    att.map(|pct| {
        let met = (pct / 100.0 * n as f64).round() as u64;
        match stats::wilson(met, n as u64, stats::Z95) {
            Some((lo, hi)) => Interval {
                lo: Some(100.0 * lo),
                hi: Some(100.0 * hi),
            },
            None => Interval { lo: None, hi: None },
        }
    })
}

/// The stats of one rate: its only file, or its repeats pooled.
///
/// The pooled Wilson interval counts requests as independent; three or more repeats that
/// disagree more than that allows (drift, a noisy neighbour) widen it to the t-interval of
/// their mean, so the interval (and the goodput range from it) never claims more than the
/// repeats support. Two repeats give one degree of freedom, too few to estimate a spread
/// (t = 12.7): they are pooled only.
fn rate_stats(repeats: &[&RatePoint], gpus: u32, slo: Slo) -> PointStats {
    let mut stats = if repeats.len() == 1 {
        point_stats(repeats[0], gpus, slo)
    } else {
        point_stats(&pooled(repeats), gpus, slo)
    };
    stats.repeats = repeats.len() as u32;
    stats.spread = repeat_spread(repeats, slo);
    let spread = stats.spread.as_ref().filter(|s| s.attainment.len() >= 3);
    if let (Some(spread), Some(intervals)) = (spread, stats.attainment_interval.as_mut()) {
        if let Some((lo, hi)) = stats::mean_interval(&spread.attainment) {
            let both = &mut intervals[0];
            both.lo = both.lo.map(|w| w.min(lo.max(0.0)));
            both.hi = both.hi.map(|w| w.max(hi.min(100.0)));
        }
    }
    stats
}

fn point_stats(p: &RatePoint, gpus: u32, slo: Slo) -> PointStats {
    let ok = || p.samples.iter().filter(|s| s.ok);
    let mut ttft: Vec<f64> = ok().filter_map(|s| s.ttft_s).collect();
    let mut tpot: Vec<f64> = ok().filter_map(|s| s.tpot_s).collect();
    let mut e2e: Vec<f64> = ok().filter_map(|s| s.e2e_s).collect();
    let mut itl = p.itls_s.clone();
    let attainment = if p.per_request {
        attainment::attainment3(&p.samples, slo, 1.0)
    } else {
        None
    };
    let (ttft_ms, tpot_ms, e2e_ms) = (pcts_ms(&mut ttft), pcts_ms(&mut tpot), pcts_ms(&mut e2e));
    let sessions = attainment::session_attainment(&p.samples, slo).map(|a| {
        let of_turn = |turn: u32, f: fn(&Sample) -> Option<f64>| -> Vec<f64> {
            ok().filter(|s| s.session_turn.is_some_and(|(_, t)| t == turn))
                .filter_map(f)
                .collect()
        };
        SessionStats {
            sessions: a.sessions,
            attainment: 100.0 * a.sessions_met as f64 / a.sessions.max(1) as f64,
            sessions_failed: a.sessions_failed,
            by_turn: a
                .by_turn
                .iter()
                .map(|&(turn, requests, met)| TurnStats {
                    turn,
                    requests,
                    attainment: 100.0 * met as f64 / requests.max(1) as f64,
                    ttft_ms: pcts_ms(&mut of_turn(turn, |s| s.ttft_s)),
                    tpot_ms: pcts_ms(&mut of_turn(turn, |s| s.tpot_s)),
                })
                .collect(),
        }
    });
    PointStats {
        rate: p.rate,
        per_gpu_rate: p.rate / gpus.max(1) as f64,
        file: p
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        requests: p.num_requests,
        completed: p.completed,
        failed: p.failed,
        failures_by_kind: p.failures_by_kind.clone(),
        warnings: p.warnings.clone(),
        gpus: p.gpus.clone(),
        attainment,
        attainment_interval: attainment.map(|a| attainment_interval(a, p.samples.len())),
        ttft_ms,
        tpot_ms,
        itl_ms: pcts_ms(&mut itl),
        e2e_ms,
        ttft_interval_ms: pcts_interval_ms(&ttft),
        tpot_interval_ms: pcts_interval_ms(&tpot),
        e2e_interval_ms: pcts_interval_ms(&e2e),
        request_throughput: p.request_throughput,
        output_throughput: p.output_throughput,
        client: p.client.clone(),
        cache: p.cache.clone(),
        kv_transfer: p.kv_transfer.clone(),
        kv_cache: p.kv_cache.clone(),
        repeats: 1,
        spread: None,
        file_summary: (!p.per_request).then(|| p.file_summary.clone()),
        sessions,
    }
}

/// The overdispersion of attainment: the spread between repeated measurements of one rate
/// against the binomial spread of that many independent requests, pooled over the rates with
/// two or more (Σ (k−1)·s² / Σ (k−1)·p(1−p)/n). `None` below two degrees of freedom.
fn dispersion(points: &[PointStats]) -> Option<f64> {
    let (mut seen, mut expected, mut df) = (0.0, 0.0, 0usize);
    for p in points {
        let Some(spread) = &p.spread else {
            continue;
        };
        let k = spread.attainment.len();
        if k < 2 || p.requests == 0 {
            continue;
        }
        let xs: Vec<f64> = spread.attainment.iter().map(|a| a / 100.0).collect();
        let mean = xs.iter().sum::<f64>() / k as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1) as f64;
        let per_file = p.requests as f64 / k as f64;
        seen += (k - 1) as f64 * var;
        expected += (k - 1) as f64 * mean * (1.0 - mean) / per_file;
        df += k - 1;
    }
    (df >= 2 && expected > 0.0).then(|| (seen / expected).max(1.0))
}

/// Widen a point's attainment intervals to what `phi` times the binomial variance gives: the
/// Wilson interval of the same share over `n / phi` requests (never narrower than before).
fn widen_for_dispersion(p: &mut PointStats, phi: f64) {
    let (Some(att), Some(intervals)) = (p.attainment, p.attainment_interval.as_mut()) else {
        return;
    };
    let n_eff = (p.requests as f64 / phi).round().max(1.0);
    for (share, iv) in att.iter().zip(intervals.iter_mut()) {
        let met = (share / 100.0 * n_eff).round() as u64;
        if let Some((lo, hi)) = stats::wilson(met, n_eff as u64, stats::Z95) {
            iv.lo = iv.lo.map(|w| w.min(100.0 * lo));
            iv.hi = iv.hi.map(|w| w.max(100.0 * hi));
        }
    }
}

fn analyse_variant(run: &str, slug: String, v: &Variant, sc: &Scoring) -> VariantStats {
    // Points come sorted by rate: files of the same rate are its repeats.
    let mut groups: Vec<Vec<&RatePoint>> = Vec::new();
    for p in &v.points {
        match groups.last_mut() {
            Some(g) if g[0].rate == p.rate => g.push(p),
            _ => groups.push(vec![p]),
        }
    }
    let mut points: Vec<PointStats> = groups
        .iter()
        .map(|g| rate_stats(g, v.gpus, sc.slo))
        .collect();
    let attainment_dispersion = dispersion(&points);
    if let Some(phi) = attainment_dispersion.filter(|phi| *phi > 1.0) {
        for p in &mut points {
            widen_for_dispersion(p, phi);
        }
    }
    let curve = |k: usize| -> Vec<(f64, f64)> {
        points
            .iter()
            .filter_map(|p| p.attainment.map(|a| (p.rate, a[k])))
            .collect()
    };
    let rate_crossing = [0, 1, 2].map(|k| attainment::rate_crossing(&curve(k), sc.target_pct));
    let goodput = rate_crossing[0];
    let g = v.gpus.max(1) as f64;
    let per_gpu = |c: Crossing| match c {
        Crossing::At { x, lo, hi } => Crossing::At {
            x: x / g,
            lo: lo / g,
            hi: hi / g,
        },
        Crossing::AlwaysAbove { edge } => Crossing::AlwaysAbove { edge: edge / g },
        Crossing::NotReached { edge } => Crossing::NotReached { edge: edge / g },
        Crossing::NoData => Crossing::NoData,
    };
    let goodput_per_gpu = per_gpu(goodput);
    let bound_curve = |upper: bool| -> Vec<(f64, f64)> {
        points
            .iter()
            .filter_map(|p| {
                let i = p.attainment_interval?[0];
                Some((p.rate, if upper { i.hi? } else { i.lo? }))
            })
            .collect()
    };
    let goodput_interval =
        [false, true].map(|upper| attainment::rate_crossing(&bound_curve(upper), sc.target_pct));

    // The SLO-scale panel's rate.
    let with_data: Vec<&RatePoint> = v.points.iter().filter(|p| p.per_request).collect();
    let chosen = match sc.scale_rate {
        Some(r) => with_data
            .iter()
            .min_by(|a, b| (a.rate - r).abs().total_cmp(&(b.rate - r).abs()))
            .copied(),
        None => with_data
            .get(with_data.len().saturating_sub(1) / 2)
            .copied(),
    };
    let scale_curve: Vec<(f64, [f64; 3])> = match chosen {
        Some(p) => sc
            .scales
            .iter()
            .filter_map(|&s| attainment::attainment3(&p.samples, sc.slo, s).map(|a| (s, a)))
            .collect(),
        None => Vec::new(),
    };
    let scale_crossing = [0, 1, 2].map(|k| {
        let pts: Vec<(f64, f64)> = scale_curve.iter().map(|(s, a)| (*s, a[k])).collect();
        attainment::scale_crossing(&pts, sc.target_pct)
    });
    VariantStats {
        run: run.to_string(),
        slug,
        key: v.key.clone(),
        mode: v.mode.clone(),
        label: v.label.clone(),
        gpus: v.gpus,
        gpus_known: v.gpus_known,
        simulated: v.simulated,
        model: v.model.clone(),
        dataset: v.dataset.clone(),
        source: v.source,
        client_fell_behind: points
            .iter()
            .any(|p| p.client.as_ref().is_some_and(|c| c.client_fell_behind)),
        total_failed: points.iter().map(|p| p.failed).sum(),
        total_requests: points.iter().map(|p| p.requests).sum(),
        summary_only_points: points.iter().filter(|p| p.attainment.is_none()).count(),
        points,
        rate_crossing,
        goodput,
        goodput_per_gpu,
        goodput_interval,
        goodput_per_gpu_interval: goodput_interval.map(per_gpu),
        attainment_dispersion,
        narrowing_rates: if v.search.is_some() {
            Vec::new()
        } else {
            narrowing_rates(&goodput, &goodput_interval)
        },
        search: v.search.clone(),
        scale_rate: chosen.map(|p| p.rate),
        scale_curve,
        scale_crossing,
    }
}

/// Where to measure next so the goodput range narrows ([`VariantStats::narrowing_rates`]).
/// A crossing is interpolated between its two neighbouring rates, so an end of the range can
/// only move as far as new rates inside its gap let it; gaps narrower than a tenth of the
/// goodput are left alone (there more requests, not more rates, narrow the range).
pub fn narrowing_rates(goodput: &Crossing, range: &[Crossing; 2]) -> Vec<f64> {
    let mut rates: Vec<f64> = match goodput {
        Crossing::At { x, .. } => {
            let wide = |lo: f64, hi: f64| hi - lo > 0.1 * x;
            std::iter::once(goodput)
                .chain(range)
                .filter_map(|c| match c {
                    Crossing::At { lo, hi, .. } if wide(*lo, *hi) => Some(nice((lo + hi) / 2.0)),
                    _ => None,
                })
                .collect()
        }
        Crossing::AlwaysAbove { edge } if *edge > 0.0 => vec![nice(2.0 * edge)],
        Crossing::NotReached { edge } if *edge > 0.0 => vec![nice(edge / 2.0)],
        _ => Vec::new(),
    };
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    rates
}

/// A rate to suggest: three significant digits (7 rather than 7.0312).
fn nice(x: f64) -> f64 {
    if !(x.is_finite() && x > 0.0) {
        return x;
    }
    let scale = 10f64.powi(2 - x.log10().floor() as i32);
    (x * scale).round() / scale
}

/// What a rate counts for these variants: `sessions/s` when every one ran multi-turn sessions
/// (their rates are session starts per second), else `req/s`.
pub fn rate_unit(vs: &[&VariantStats]) -> &'static str {
    if !vs.is_empty() && vs.iter().all(|v| v.dataset == "sessions") {
        "sessions/s"
    } else {
        "req/s"
    }
}

/// The x axis of an attainment-vs-rate panel for these variants.
pub fn rate_axis(vs: &[&VariantStats], per_gpu: bool) -> (String, String) {
    let unit = rate_unit(vs);
    match (per_gpu, unit) {
        (true, _) => (format!("Per-GPU rate ({unit}/GPU)"), format!("{unit}/GPU")),
        (false, "sessions/s") => (format!("Session start rate ({unit})"), unit.to_owned()),
        (false, _) => (format!("Request rate ({unit})"), unit.to_owned()),
    }
}

/// Comparable goodput for ranking: a real crossing counts as its value, "always above" as its
/// edge (a lower bound), "not reached" as zero.
pub fn goodput_rank_value(c: &Crossing) -> f64 {
    match c {
        Crossing::At { x, .. } => *x,
        Crossing::AlwaysAbove { edge } => *edge,
        Crossing::NotReached { .. } | Crossing::NoData => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(x: f64, lo: f64, hi: f64) -> Crossing {
        Crossing::At { x, lo, hi }
    }

    #[test]
    fn the_rates_to_measure_next_split_the_gaps_that_hold_the_range_s_ends() {
        // The H200 repeats run: 4, 6 and 8 req/s measured, range 5.38-6.80 around 6.46.
        let range = [at(5.382, 4.0, 6.0), at(6.798, 6.0, 8.0)];
        assert_eq!(narrowing_rates(&at(6.455, 6.0, 8.0), &range), [5.0, 7.0]);
        // Gaps already narrower than a tenth of the goodput: more requests, not more rates.
        let close = [at(6.16, 6.15, 6.36), at(6.30, 6.15, 6.36)];
        assert!(narrowing_rates(&at(6.23, 6.15, 6.36), &close).is_empty());
        // One end in a wide gap, the other in a narrow one.
        let mixed = [at(5.0, 4.0, 6.0), at(6.3, 6.15, 6.36)];
        assert_eq!(narrowing_rates(&at(6.2, 6.15, 6.36), &mixed), [5.0]);
        // No crossing: beyond the measured rates, the way the curve points.
        let none = [Crossing::NoData, Crossing::NoData];
        assert_eq!(
            narrowing_rates(&Crossing::AlwaysAbove { edge: 12.0 }, &none),
            [24.0]
        );
        assert_eq!(
            narrowing_rates(&Crossing::NotReached { edge: 3.0 }, &none),
            [1.5]
        );
        assert!(narrowing_rates(&Crossing::NoData, &none).is_empty());
    }

    #[test]
    fn suggested_rates_keep_three_significant_digits() {
        assert_eq!(nice(7.0312), 7.03);
        assert_eq!(nice(0.123456), 0.123);
        assert_eq!(nice(1234.5), 1230.0);
        assert_eq!(nice(5.0), 5.0);
    }
}
