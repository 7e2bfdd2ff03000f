//! The report's summaries: summary.json here (its type and schema), the rows and lines that
//! summary.md (`markdown`) and index.html (`html`) both show, and the writer of all three.
//!
//! Every string that came from a manifest or a result file is escaped: handlebars escapes
//! HTML in `{{...}}`, and Markdown cells get `|`, `<` and `>` escaped.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::analysis::{goodput_rank_value, Analysis, Pcts, VariantStats};
use super::attainment::{fmt_num, Crossing};
use super::{slo_line, FigureFile, ReportOptions};
use crate::report::import::Skipped;
use crate::results::store::{write_bytes_new, write_json_new};
use html::html;
use markdown::markdown;

mod html;
mod markdown;

/// Version of summary.json's layout.
pub const SUMMARY_VERSION: u32 = 1;

/// summary.json: the report's findings in machine-readable form.
#[derive(Serialize, schemars::JsonSchema)]
struct SummaryJson<'a> {
    /// Version of this layout.
    summary_version: u32,
    vbench_version: &'static str,
    scoring: &'a super::analysis::Scoring,
    /// The figures' x axis: offered rate, or rate per GPU.
    #[schemars(schema_with = "x_axis_schema")]
    x_axis: &'static str,
    /// True when every variant ran on the simulator; `partly_simulated` when some did.
    simulated: bool,
    partly_simulated: bool,
    winner: Winner,
    variants: &'a [VariantStats],
    /// Input runs with their `environment.json` (versions, host, GPUs, git state, command).
    runs: &'a [super::analysis::RunInfo],
    figures: &'a [FigureFile],
    skipped: &'a [Skipped],
}

/// Which variant(s) win at the target: highest goodput and highest per-GPU goodput.
#[derive(Serialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
pub struct Winner {
    /// Labels of the variant(s) with the highest goodput (ties: all); empty when none reaches
    /// the target.
    pub by_goodput: Vec<String>,
    /// The same by goodput per GPU.
    pub by_goodput_per_gpu: Vec<String>,
    /// Whether the goodput winner's 95 % range lies above every other variant's (false: not
    /// distinguishable at this sample size; the note says about how many requests per rate
    /// would be).
    pub distinguishable: bool,
    /// The same for goodput per GPU.
    pub distinguishable_per_gpu: bool,
    /// How a reader should take it ("lower bound" when a winner never dropped below target);
    /// empty when there is nothing to add.
    pub note: String,
}

fn x_axis_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
    serde_json::from_value(serde_json::json!({ "type": "string", "enum": ["rate", "per_gpu"] }))
        .expect("a valid schema")
}

/// summary.json's JSON Schema (`schemas/summary.schema.json`, `vbench schema --kind summary`).
pub fn schema_json() -> String {
    let schema = schemars::gen::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<SummaryJson<'static>>();
    crate::manifest::schema::output_schema(
        serde_json::to_value(&schema).expect("schema serialises"),
        "vbench report summary (summary.json)",
        "SummaryJson",
        // `file_summary` is left out when a point has none, `sessions` outside multi-turn
        // sessions, an environment's `packages` when none was found and `nodes` off Slurm
        // (`skip_serializing_if`).
        // The result file's server sections it carries leave out the same absent numbers.
        &[
            ("PointStats", "file_summary"),
            ("PointStats", "sessions"),
            ("Environment", "packages"),
            ("Environment", "nodes"),
            ("Environment", "driver_node"),
        ]
        .iter()
        .chain(crate::load::result::SERVER_SECTIONS_MAY_BE_ABSENT)
        .copied()
        .collect::<Vec<_>>(),
    )
}

fn best(vs: &[VariantStats], f: impl Fn(&VariantStats) -> &Crossing) -> Vec<String> {
    let top = vs
        .iter()
        .map(|v| goodput_rank_value(f(v)))
        .fold(0.0, f64::max);
    if top <= 0.0 {
        return Vec::new();
    }
    vs.iter()
        .filter(|v| (goodput_rank_value(f(v)) - top).abs() < 1e-9)
        .map(|v| v.label.clone())
        .collect()
}

/// The low end of a goodput range as a number: a crossing, the edge of "always above" (a
/// lower bound), 0 for "not reached".
fn low_end(c: &Crossing) -> f64 {
    goodput_rank_value(c)
}

/// The high end: a crossing, the edge of "not reached" (goodput lies below it), unbounded for
/// "always above".
fn high_end(c: &Crossing) -> f64 {
    match c {
        Crossing::At { x, .. } => *x,
        Crossing::NotReached { edge } => *edge,
        Crossing::AlwaysAbove { .. } => f64::INFINITY,
        Crossing::NoData => 0.0,
    }
}

/// Whether the winners' ranges lie above every other variant's, and if not, roughly how many
/// requests per rate would separate the best two (interval widths shrink as 1/√n).
fn separation(
    vs: &[VariantStats],
    winners: &[String],
    range: impl Fn(&VariantStats) -> &[Crossing; 2],
    point: impl Fn(&VariantStats) -> &Crossing,
) -> (bool, Option<u64>) {
    let (ws, others): (Vec<&VariantStats>, Vec<&VariantStats>) =
        vs.iter().partition(|v| winners.contains(&v.label));
    let Some(w) = ws.first() else {
        return (true, None);
    };
    let Some(rival) = others
        .iter()
        .max_by(|a, b| goodput_rank_value(point(a)).total_cmp(&goodput_rank_value(point(b))))
    else {
        return (true, None);
    };
    if low_end(&range(w)[0]) > high_end(&range(rival)[1]) {
        return (true, None);
    }
    let width = |v: &VariantStats| high_end(&range(v)[1]) - low_end(&range(v)[0]);
    let gap = goodput_rank_value(point(w)) - goodput_rank_value(point(rival));
    let per_point = |v: &VariantStats| v.total_requests / v.points.len().max(1) as u64;
    let widths = width(w) + width(rival);
    let needed = (gap > 0.0 && widths.is_finite()).then(|| {
        let n = per_point(w).max(per_point(rival)).max(1) as f64;
        (n * (widths / (2.0 * gap)).powi(2)).ceil() as u64
    });
    (false, needed)
}

pub fn winner(a: &Analysis) -> Winner {
    let by_goodput = best(&a.variants, |v| &v.goodput);
    let by_goodput_per_gpu = best(&a.variants, |v| &v.goodput_per_gpu);
    let (distinguishable, needed) = separation(
        &a.variants,
        &by_goodput,
        |v| &v.goodput_interval,
        |v| &v.goodput,
    );
    let (distinguishable_per_gpu, _) = separation(
        &a.variants,
        &by_goodput_per_gpu,
        |v| &v.goodput_per_gpu_interval,
        |v| &v.goodput_per_gpu,
    );
    let mut notes = Vec::new();
    if by_goodput.is_empty() {
        notes.push("no variant reaches the target at any measured rate".to_owned());
    } else if a
        .variants
        .iter()
        .any(|v| matches!(v.goodput, Crossing::AlwaysAbove { .. }))
    {
        notes.push(
            "at least one variant met the target at every measured rate: its goodput is a \
             lower bound; measure higher rates to separate them"
                .to_owned(),
        );
    }
    if !by_goodput.is_empty() && !distinguishable {
        notes.push(match needed {
            Some(n) => format!(
                "not distinguishable at this sample size: the goodput ranges (95 %) overlap; \
                 about {n} requests per rate would separate the best two"
            ),
            None => "not distinguishable at this sample size: the goodput ranges (95 %) overlap"
                .to_owned(),
        });
    }
    Winner {
        by_goodput,
        by_goodput_per_gpu,
        distinguishable,
        distinguishable_per_gpu,
        note: notes.join("; "),
    }
}

fn pcts(p: Option<Pcts>) -> String {
    match p {
        Some(p) => format!(
            "{} / {} / {}",
            fmt_num(p.p50),
            fmt_num(p.p90),
            fmt_num(p.p99)
        ),
        None => "-".into(),
    }
}

/// `5.46 req/s (95 %: 4.9-6.1)`; the range's open ends as `≥ x` or `< x`.
fn with_range(point: &Crossing, range: &[Crossing; 2], unit: &str) -> String {
    let text = point.describe(unit, "≥");
    // "Always above" at every bound says it all already.
    if matches!(range[0], Crossing::AlwaysAbove { .. }) {
        return text;
    }
    let (lo, hi) = (low_end(&range[0]), high_end(&range[1]));
    let range = match (lo > 0.0, hi.is_finite()) {
        (true, true) => format!("{}-{}", fmt_num(lo), fmt_num(hi)),
        (true, false) => format!("≥ {}", fmt_num(lo)),
        (false, true) => format!("< {}", fmt_num(hi)),
        (false, false) => return text,
    };
    format!("{text} (95 %: {range})")
}

/// `search: goodput between 8.25 and 8.5 req/s (9 probes, 900 requests)`.
fn search_note(s: &crate::results::rundir::SearchSummary) -> String {
    format!(
        "search: {} ({} probes, {} requests)",
        s.ending.describe(),
        s.probes,
        s.requests
    )
}

/// `72.5 (64.8-79.1)`: a percentage with its interval.
fn pct_with_interval(pct: f64, i: Option<&crate::stats::Interval>) -> String {
    match i.and_then(|i| Some((i.lo?, i.hi?))) {
        Some((lo, hi)) => format!("{} ({}-{})", fmt_num(pct), fmt_num(lo), fmt_num(hi)),
        None => fmt_num(pct),
    }
}

/// ` · 3 repeats: 91, 88.5, 93 (sd 2.3); TTFT p50 CV 4 %` for a pooled point.
fn repeats_text(p: &super::analysis::PointStats) -> String {
    let Some(s) = &p.spread else {
        return String::new();
    };
    let each: Vec<String> = s.attainment.iter().map(|a| fmt_num(*a)).collect();
    let mut text = format!(
        " · {} repeats: {} (sd {})",
        p.repeats,
        each.join(", "),
        fmt_num(s.attainment_sd)
    );
    if let Some(cv) = s.ttft_p50_cv {
        text.push_str(&format!("; TTFT p50 CV {} %", fmt_num(100.0 * cv)));
    }
    text
}

fn opt(x: Option<f64>) -> String {
    x.map(fmt_num).unwrap_or_else(|| "-".into())
}

/// One row of the per-variant headline table, pre-formatted.
#[derive(Serialize)]
struct HeadRow {
    label: String,
    mode: String,
    run: String,
    gpus: String,
    simulated: bool,
    goodput: String,
    goodput_per_gpu: String,
    scale: String,
    failures: String,
    client: String,
    winner: bool,
    note: String,
}

/// One row of a per-rate table.
#[derive(Serialize)]
struct RateRow {
    rate: String,
    attainment: String,
    ttft: String,
    tpot: String,
    itl: String,
    e2e: String,
    throughput: String,
    failed: String,
    client: String,
    /// Prompt tokens the computing instances reused (and could have), when known.
    cache: String,
    /// NIXL's transfers, when known.
    kv_transfer: String,
    /// Peak KV-cache use and preemptions per role, when known.
    kv_cache: String,
    /// The GPUs' utilisation, lowest clock, power and temperature, when known.
    gpus: String,
}

#[derive(Serialize)]
struct SessionRow {
    rate: String,
    /// `1`, `2`, ... or `whole session`.
    turn: String,
    requests: String,
    attainment: String,
    ttft: String,
    tpot: String,
}

/// Each rate's turn rows, then its whole-session row (a session attains when all its turns do).
fn session_rows(v: &VariantStats) -> Vec<SessionRow> {
    let mut rows = Vec::new();
    for p in &v.points {
        let Some(st) = &p.sessions else {
            continue;
        };
        for t in &st.by_turn {
            rows.push(SessionRow {
                rate: fmt_num(p.rate),
                turn: t.turn.to_string(),
                requests: t.requests.to_string(),
                attainment: fmt_num(t.attainment),
                ttft: pcts(t.ttft_ms),
                tpot: pcts(t.tpot_ms),
            });
        }
        rows.push(SessionRow {
            rate: fmt_num(p.rate),
            turn: "whole session".into(),
            requests: format!(
                "{} sessions ({} with a failed turn)",
                st.sessions, st.sessions_failed
            ),
            attainment: fmt_num(st.attainment),
            ttft: String::new(),
            tpot: String::new(),
        });
    }
    rows
}

#[derive(Serialize)]
struct VariantBlock {
    label: String,
    /// What its rates count: `req/s`, or `sessions/s` for multi-turn sessions.
    rate_unit: &'static str,
    /// Whether any rate has cache numbers (the column is shown only then).
    has_cache: bool,
    /// Whether any rate has NIXL transfer numbers (the column is shown only then).
    has_transfer: bool,
    /// Whether any rate has KV-cache numbers (the column is shown only then).
    has_kv_cache: bool,
    /// Whether any rate has GPU telemetry (the column is shown only then).
    has_gpus: bool,
    /// Each role's KV cache size, e.g. `KV cache per instance: 518,672 tokens (126.6 ×
    /// max_model_len).`; empty when unknown.
    kv_capacity: String,
    /// Said when the attainment intervals were widened for overdispersion; else empty.
    dispersion_note: String,
    /// Multi-turn sessions: per rate, a row per turn index and one for whole sessions.
    sessions: Vec<SessionRow>,
    rows: Vec<RateRow>,
    /// The warnings recorded with the results, `8, 12 req/s: ...`, each text once.
    warnings: Vec<String>,
}

fn head_rows(a: &Analysis, w: &Winner) -> Vec<HeadRow> {
    a.variants
        .iter()
        .map(|v| {
            let unit = super::analysis::rate_unit(&[v]);
            let mut note = Vec::new();
            if v.summary_only_points > 0 {
                note.push(format!(
                    "{} rate file(s) without per-request data (no attainment)",
                    v.summary_only_points
                ));
            }
            if !v.gpus_known {
                note.push("GPU count unknown: per-GPU assumes 1".to_string());
            }
            if let Some(s) = &v.search {
                note.push(search_note(s));
            }
            if !v.narrowing_rates.is_empty() {
                let rates: Vec<String> = v.narrowing_rates.iter().map(|r| fmt_num(*r)).collect();
                let why = match v.goodput {
                    Crossing::AlwaysAbove { .. } => "met the target at every rate measured",
                    Crossing::NotReached { .. } => "missed the target at every rate measured",
                    _ => "to narrow its goodput range",
                };
                note.push(format!(
                    "{why}: measure {} {unit} too (or run a [load.search])",
                    rates.join(" and ")
                ));
            }
            let warned: Vec<String> = v
                .points
                .iter()
                .filter(|p| !p.warnings.is_empty())
                .map(|p| fmt_num(p.rate))
                .collect();
            if !warned.is_empty() {
                note.push(format!(
                    "warnings at {} {unit} (listed under its per-rate table)",
                    warned.join(", ")
                ));
            }
            if v.mode == "lmcache" {
                note.push(
                    "LMCache proxy streams the prefiller's first token: KV transfer time is in \
                     the first inter-token gap, not TTFT"
                        .to_string(),
                );
            }
            HeadRow {
                label: v.label.clone(),
                mode: v.mode.clone(),
                run: v.run.clone(),
                gpus: if v.gpus_known {
                    v.gpus.to_string()
                } else {
                    "?".into()
                },
                simulated: v.simulated,
                goodput: with_range(&v.goodput, &v.goodput_interval, unit),
                goodput_per_gpu: with_range(
                    &v.goodput_per_gpu,
                    &v.goodput_per_gpu_interval,
                    &format!("{unit}/GPU"),
                ),
                scale: match v.scale_rate {
                    Some(r) => format!(
                        "{} (at {} {unit})",
                        v.scale_crossing[0].describe("", "≤"),
                        fmt_num(r)
                    ),
                    None => "-".into(),
                },
                failures: format!("{} of {}", v.total_failed, v.total_requests),
                client: if v.client_fell_behind {
                    "FELL BEHIND".into()
                } else if v.points.iter().any(|p| p.client.is_some()) {
                    "ok".into()
                } else {
                    "not recorded".into()
                },
                winner: w.by_goodput.contains(&v.label),
                note: note.join("; "),
            }
        })
        .collect()
}

fn rate_blocks(a: &Analysis) -> Vec<VariantBlock> {
    a.variants
        .iter()
        .map(|v| VariantBlock {
            label: v.label.clone(),
            rate_unit: super::analysis::rate_unit(&[v]),
            has_cache: v.points.iter().any(|p| p.cache.is_some()),
            has_transfer: v.points.iter().any(|p| p.kv_transfer.is_some()),
            has_kv_cache: v.points.iter().any(|p| p.kv_cache.is_some()),
            has_gpus: v.points.iter().any(|p| !p.gpus.is_empty()),
            kv_capacity: v
                .points
                .iter()
                .find_map(|p| p.kv_cache.as_ref())
                .map_or(String::new(), kv_capacity_text),
            sessions: session_rows(v),
            warnings: warning_lines(v),
            dispersion_note: match v.attainment_dispersion {
                Some(phi) if phi > 1.0 => format!(
                    "Attainment intervals widened: repeated measurements of a rate varied {} \
                     times as much (in variance) as independent requests would, since requests \
                     near capacity pass or fail together; every interval here allows for that.",
                    fmt_num(phi)
                ),
                _ => String::new(),
            },
            rows: v
                .points
                .iter()
                .map(|p| RateRow {
                    rate: fmt_num(p.rate),
                    attainment: match p.attainment {
                        Some(x) => format!(
                            "{} / {} / {}{}",
                            pct_with_interval(x[0], p.attainment_interval.as_ref().map(|i| &i[0])),
                            fmt_num(x[1]),
                            fmt_num(x[2]),
                            repeats_text(p)
                        ),
                        None => "no per-request data".into(),
                    },
                    ttft: match (&p.ttft_ms, &p.file_summary) {
                        (None, Some(fs)) => format!(
                            "{} / - / {} (file)",
                            opt(fs.median_ttft_ms),
                            opt(fs.p99_ttft_ms)
                        ),
                        _ => pcts(p.ttft_ms),
                    },
                    tpot: match (&p.tpot_ms, &p.file_summary) {
                        (None, Some(fs)) => format!(
                            "{} / - / {} (file)",
                            opt(fs.median_tpot_ms),
                            opt(fs.p99_tpot_ms)
                        ),
                        _ => pcts(p.tpot_ms),
                    },
                    itl: pcts(p.itl_ms),
                    e2e: pcts(p.e2e_ms),
                    throughput: format!(
                        "{} req/s, {} tok/s",
                        opt(p.request_throughput),
                        opt(p.output_throughput)
                    ),
                    failed: if p.failures_by_kind.is_empty() {
                        p.failed.to_string()
                    } else {
                        format!(
                            "{} ({})",
                            p.failed,
                            p.failures_by_kind
                                .iter()
                                .map(|(k, n)| format!("{k}: {n}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    },
                    client: match &p.client {
                        Some(c) => format!(
                            "{} {}, lag p99 {} ms{}",
                            fmt_num(c.achieved_rate),
                            super::analysis::rate_unit(&[v]),
                            fmt_num(c.lag_p99_ms),
                            if c.client_fell_behind {
                                " FELL BEHIND"
                            } else {
                                ""
                            }
                        ),
                        None => "-".into(),
                    },
                    cache: match &p.cache {
                        Some(c) => format!(
                            "{} %{}",
                            fmt_num(c.reused_pct),
                            c.ideal_pct
                                .map_or(String::new(), |i| format!(" (ideal {} %)", fmt_num(i)))
                        ),
                        None => "-".into(),
                    },
                    kv_transfer: p.kv_transfer.as_ref().map_or("-".into(), kv_transfer_text),
                    kv_cache: p.kv_cache.as_ref().map_or("-".into(), kv_cache_text),
                    gpus: gpus_text(&p.gpus),
                })
                .collect(),
        })
        .collect()
}

/// A cell's NIXL transfers in the per-rate table: `158 × mean 4422 ms (p90 > 5000 ms),
/// 117.4 MB each`, then what failed or expired after a semicolon.
pub fn kv_transfer_text(t: &crate::load::result::KvTransfer) -> String {
    let mut s = match (t.mean_xfer_ms(), t.mean_bytes()) {
        (Some(ms), Some(bytes)) => {
            let p90 = match t.xfer_quantile_bound_s(0.9) {
                Some(Ok(b)) => format!(" (p90 ≤ {} ms)", fmt_num(1e3 * b)),
                Some(Err(b)) => format!(" (p90 > {} ms)", fmt_num(1e3 * b)),
                None => String::new(),
            };
            format!(
                "{} × mean {} ms{p90}, {} MB each",
                fmt_num(t.transfers),
                fmt_num(ms),
                fmt_num(bytes / 1e6)
            )
        }
        _ => "no transfers".to_owned(),
    };
    if let Some(trouble) = t.trouble() {
        s.push_str("; ");
        s.push_str(&trouble);
    }
    s
}

/// A variant's warnings, each text once with the rates that recorded it (`8, 12 req/s: ...`),
/// in the order they first appear.
fn warning_lines(v: &VariantStats) -> Vec<String> {
    let mut by_text: Vec<(&str, Vec<String>)> = Vec::new();
    for p in &v.points {
        for w in &p.warnings {
            let rate = fmt_num(p.rate);
            match by_text.iter_mut().find(|(t, _)| *t == w.as_str()) {
                Some((_, rates)) if !rates.contains(&rate) => rates.push(rate),
                Some(_) => {}
                None => by_text.push((w, vec![rate])),
            }
        }
    }
    by_text
        .into_iter()
        .map(|(text, rates)| {
            format!(
                "{} {}: {text}",
                rates.join(", "),
                super::analysis::rate_unit(&[v])
            )
        })
        .collect()
}

/// A cell's GPUs in the per-rate table: `util 87 %, SM ≥ 1,755 MHz, ≤ 612 W, ≤ 71 °C` over
/// all of them (mean utilisation, lowest clock, highest power and temperature of any), then
/// what slowed a clock down.
pub fn gpus_text(gpus: &[crate::load::result::GpuTelemetry]) -> String {
    if gpus.is_empty() {
        return "-".into();
    }
    let utils: Vec<f64> = gpus.iter().filter_map(|g| g.util_mean_pct).collect();
    let mut parts = Vec::new();
    if !utils.is_empty() {
        let mean = utils.iter().sum::<f64>() / utils.len() as f64;
        parts.push(format!("util {} %", fmt_num(mean)));
    }
    if let Some(c) = gpus
        .iter()
        .filter_map(|g| g.sm_clock_min_mhz)
        .reduce(f64::min)
    {
        parts.push(format!(
            "SM ≥ {} MHz",
            crate::plan::table::thousands(c as u64)
        ));
    }
    if let Some(w) = gpus.iter().filter_map(|g| g.power_max_w).reduce(f64::max) {
        parts.push(format!("≤ {} W", fmt_num(w.round())));
    }
    if let Some(t) = gpus.iter().filter_map(|g| g.temp_max_c).reduce(f64::max) {
        parts.push(format!("≤ {} °C", fmt_num(t)));
    }
    let mut slowdowns: Vec<&str> = Vec::new();
    for s in gpus.iter().flat_map(|g| &g.slowdowns) {
        if !slowdowns.contains(&s.as_str()) {
            slowdowns.push(s);
        }
    }
    let mut text = parts.join(", ");
    if !slowdowns.is_empty() {
        text.push_str(&format!("; {}", slowdowns.join(", ")));
    }
    let others: Vec<String> = gpus
        .iter()
        .flat_map(|g| &g.other_processes)
        .map(|p| p.pid.to_string())
        .collect();
    if !others.is_empty() {
        text.push_str(&format!("; SHARED with pid {}", others.join(", ")));
    }
    text
}

/// A role's short name in a cell: `P`/`D` for disaggregated roles, nothing for a lone one.
fn role_tag(k: &crate::load::result::KvCache, role: &str) -> String {
    match (k.roles.len(), role) {
        (1, _) => String::new(),
        (_, "prefill") => "P ".into(),
        (_, "decode") => "D ".into(),
        (_, other) => format!("{other} "),
    }
}

/// A cell's KV caches in the per-rate table: `peak 97 %, 18 preempted`, or per role
/// `P peak 12 %; D peak 100 %, 18 preempted`.
pub fn kv_cache_text(k: &crate::load::result::KvCache) -> String {
    let parts: Vec<String> = k
        .roles
        .iter()
        .map(|r| {
            let mut s = role_tag(k, &r.role);
            s.push_str(&match r.usage_max {
                Some(u) => format!("peak {} %", fmt_num(100.0 * u)),
                None => "peak -".into(),
            });
            if let Some(n) = r.preemptions.filter(|n| *n > 0.0) {
                s.push_str(&format!(", {} preempted", fmt_num(n)));
            }
            s
        })
        .collect();
    parts.join("; ")
}

/// The KV cache each role's instances hold: `KV cache per instance: 1,048,576 tokens (512 ×
/// max_model_len).`, or per role (`P ...; D ...`) for disaggregated deployments.
fn kv_capacity_text(k: &crate::load::result::KvCache) -> String {
    let parts: Vec<String> = k
        .roles
        .iter()
        .filter_map(|r| {
            let tokens = r.capacity_tokens?;
            let mut s = format!(
                "{}{} tokens",
                role_tag(k, &r.role),
                crate::plan::table::thousands(tokens)
            );
            if let Some(c) = r.max_concurrency {
                s.push_str(&format!(" ({} × max_model_len)", fmt_num(c)));
            }
            Some(s)
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("KV cache per instance: {}.", parts.join("; "))
    }
}

fn title_of(a: &Analysis) -> String {
    let mut runs: Vec<&str> = a.variants.iter().map(|v| v.run.as_str()).collect();
    runs.dedup();
    format!("vbench report: {}", runs.join(" vs "))
}

fn provenance(a: &Analysis) -> (bool, bool) {
    let sim = a.variants.iter().filter(|v| v.simulated).count();
    (sim == a.variants.len() && sim > 0, sim > 0)
}

/// One line per input run that has an `environment.json`: when, what versions, where, from
/// which manifest state, with which command; then one per `apply --resume` of it, saying what
/// differs from the first attempt in what the numbers depend on.
fn run_lines(a: &Analysis) -> Vec<String> {
    let mut lines = Vec::new();
    for r in &a.runs {
        if let Some(e) = &r.environment {
            let mut parts = vec![format!("{} ({})", r.name, r.path)];
            parts.extend(environment_parts(e));
            lines.push(parts.join(" · "));
        }
        for resumed in &r.resumes {
            let mut parts = vec![format!("{}: resumed", r.name)];
            parts.extend(environment_parts(resumed));
            let changed = r
                .environment
                .as_ref()
                .map(|first| resumed.differences_from(first))
                .unwrap_or_default();
            if !changed.is_empty() {
                parts.push(format!(
                    "differs from the first attempt in {}: cells measured by different attempts \
                     may not be comparable",
                    changed.join(", ")
                ));
            }
            lines.push(parts.join(" · "));
        }
    }
    lines
}

/// What an environment record says, as the parts of a provenance line.
fn environment_parts(e: &crate::results::Environment) -> Vec<String> {
    let mut parts = Vec::new();
    if let Some(t) = &e.started_at {
        parts.push(format!("started {}", t.get(..19).unwrap_or(t)));
    }
    if let Some(v) = &e.vllm_version {
        parts.push(format!("vLLM {v}"));
    }
    // What else the numbers depend on: torch, and the KV connectors' packages.
    let others: Vec<String> = e
        .packages
        .iter()
        .filter(|(name, _)| name.as_str() != "vllm")
        .map(|(name, version)| format!("{name} {version}"))
        .collect();
    if !others.is_empty() {
        parts.push(format!("with {}", others.join(", ")));
    }
    if let Some(v) = &e.vbench_version {
        parts.push(format!("vbench {v}"));
    }
    if let Some(h) = &e.host {
        parts.push(format!("host {h}"));
    }
    if !e.nodes.is_empty() {
        parts.push(format!("Slurm nodes {}", e.nodes.join(", ")));
    }
    if let Some(n) = &e.driver_node {
        parts.push(format!("load generated on {n}"));
    }
    match &e.gpus {
        serde_json::Value::Null => {}
        serde_json::Value::Array(g) => parts.push(format!(
            "GPUs {}",
            crate::results::environment::gpu_summary(g)
        )),
        other => parts.push(format!("GPUs {other}")),
    }
    if let Some(g) = &e.manifest_git {
        if let Some(sha) = &g.sha {
            let dirty = if g.dirty == Some(true) {
                " with uncommitted changes"
            } else {
                ""
            };
            parts.push(format!(
                "manifest at git {}{dirty}",
                sha.get(..12).unwrap_or(sha)
            ));
        }
    }
    if !e.command.is_empty() {
        parts.push(format!("command: {}", e.command.join(" ")));
    }
    parts
}

/// One line per planned cell without a result, so a partial sweep is not mistaken for a
/// whole one.
fn missing_lines(a: &Analysis) -> Vec<String> {
    let not_run = a.runs.iter().flat_map(|r| {
        r.not_run.iter().map(move |v| {
            format!(
                "{}: {} was not run: it {}",
                r.name,
                if v.label.is_empty() { &v.id } else { &v.label },
                v.reason
            )
        })
    });
    not_run
        .chain(a.runs.iter().flat_map(|r| {
            r.missing_cells.iter().map(move |c| {
                let at = match (c.speedup, c.rate) {
                    (Some(s), _) => format!("speedup {s}x"),
                    (None, Some(x)) => format!("{x} req/s"),
                    (None, None) => "inf req/s".to_string(),
                };
                let why = match &c.variant_failed {
                    Some(failed) => format!("the variant failed: {failed}"),
                    None => "the run was interrupted, the variant failed (see its logs/), or \
                             it was left out with --only"
                        .to_owned(),
                };
                format!(
                    "{}: {} at {at} has no result ({}): {why}",
                    r.name, c.label, c.result_file
                )
            })
        }))
        .collect()
}

/// Write summary.json, summary.md and index.html; return their paths.
pub fn write_summaries(
    a: &Analysis,
    figures: &[FigureFile],
    skipped: &[Skipped],
    opts: &ReportOptions,
    out: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let w = winner(a);
    let (all_sim, any_sim) = provenance(a);
    let json = SummaryJson {
        summary_version: SUMMARY_VERSION,
        vbench_version: env!("CARGO_PKG_VERSION"),
        scoring: &a.scoring,
        x_axis: if opts.per_gpu { "per_gpu" } else { "rate" },
        simulated: all_sim,
        partly_simulated: any_sim && !all_sim,
        winner: w.clone(),
        variants: &a.variants,
        runs: &a.runs,
        figures,
        skipped,
    };
    let p_json = out.join("summary.json");
    write_json_new(&p_json, &json)?;
    let p_md = out.join("summary.md");
    write_bytes_new(&p_md, markdown(a, &w, figures, skipped).as_bytes())?;
    let p_html = out.join("index.html");
    write_bytes_new(&p_html, html(a, &w, figures, skipped)?.as_bytes())?;
    Ok(vec![p_json, p_md, p_html])
}

/// The Markdown summary alone (for tests and `apply`'s terminal output).
pub fn markdown_summary(a: &Analysis, figures: &[FigureFile], skipped: &[Skipped]) -> String {
    markdown(a, &winner(a), figures, skipped)
}
