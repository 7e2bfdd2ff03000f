//! The figures, drawn as SVG with plotters and the bundled font (no system fonts needed).
//!
//! Every figure carries its context (model, dataset, SLOs, target, topology, simulated or
//! real) in a header, so a PDF on its own explains itself.

use std::sync::Once;

use anyhow::anyhow;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::analysis::{Analysis, VariantStats};
use super::attainment::{fmt_num, Crossing, SloKind};

/// DejaVu Sans (Bitstream Vera licence, see assets/fonts/LICENSE-DejaVu.txt).
pub static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The family name the SVG text uses; the converters map it to the bundled font.
pub const FAMILY: &str = "sans-serif";

const W: u32 = 1200;
const H: u32 = 540;
const HEADER: u32 = 74;

fn init_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bundled bytes are a valid TrueType font; a failure here is a build defect.
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("bundled font failed to load"));
        plotters::style::register_font(FAMILY, FontStyle::Bold, FONT)
            .unwrap_or_else(|_| panic!("bundled font failed to load"));
    });
}

thread_local! {
    /// Dashed strokes of the figure being drawn on this thread: plotters' SVG backend has no
    /// dash support (its dashed series emit one element per dash), so a dashed line is drawn
    /// solid in a placeholder colour `#0102NN` and given its real colour and a
    /// `stroke-dasharray` after drawing. One element per line instead of hundreds.
    static DASHES: std::cell::RefCell<Vec<(RGBColor, Dash)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The placeholder colour standing for `color` drawn with `dash`.
fn dashed(color: RGBColor, dash: Dash) -> RGBColor {
    if dash == Dash::Solid {
        return color;
    }
    DASHES.with(|d| {
        let mut d = d.borrow_mut();
        let i = match d.iter().position(|x| *x == (color, dash)) {
            Some(i) => i,
            None => {
                d.push((color, dash));
                d.len() - 1
            }
        };
        RGBColor(1, 2, i as u8)
    })
}

/// Replace the placeholder colours with real colours and dash patterns.
fn apply_dashes(svg: String) -> String {
    let dashes = DASHES.with(|d| std::mem::take(&mut *d.borrow_mut()));
    let mut svg = svg;
    for (i, (c, dash)) in dashes.iter().enumerate() {
        let pattern = match dash {
            Dash::Solid => continue,
            Dash::Dashed => "9,5",
            Dash::Dotted => "2,3",
            Dash::DashDot => "12,4,2,4",
        };
        let from = format!("stroke=\"#0102{i:02X}\"");
        let to = format!(
            "stroke=\"#{:02X}{:02X}{:02X}\" stroke-dasharray=\"{pattern}\"",
            c.0, c.1, c.2
        );
        svg = svg.replace(&from, &to);
    }
    svg
}

fn pe<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

/// Line style of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dash {
    Solid,
    Dashed,
    Dotted,
    DashDot,
}

impl Dash {
    fn nth(i: usize) -> Dash {
        [Dash::Solid, Dash::Dashed, Dash::Dotted, Dash::DashDot][i % 4]
    }
}

/// The mode's base colour: simple red, nixl blue, lmcache green, others purple/grey.
pub fn mode_color(mode: &str) -> RGBColor {
    match mode {
        "simple" => RGBColor(214, 39, 40),
        "nixl" => RGBColor(31, 119, 180),
        "lmcache" => RGBColor(44, 160, 44),
        "external" => RGBColor(90, 90, 90),
        _ => RGBColor(148, 103, 189),
    }
}

/// The j-th shade of a colour: 0 is the base, then darker and lighter in turn.
fn shade(c: RGBColor, j: usize) -> RGBColor {
    if j == 0 {
        return c;
    }
    let step = 0.28 * j.div_ceil(2) as f64;
    let f = |v: u8| -> u8 {
        let v = v as f64;
        let out = if j % 2 == 1 {
            v * (1.0 - step).max(0.2)
        } else {
            v + (255.0 - v) * step.min(0.7)
        };
        out.round().clamp(0.0, 255.0) as u8
    };
    RGBColor(f(c.0), f(c.1), f(c.2))
}

/// Colour and dash of each variant in a comparison: by mode, shades and dashes within one.
pub fn variant_styles(variants: &[&VariantStats]) -> Vec<(RGBColor, Dash)> {
    let mut seen: std::collections::BTreeMap<&str, usize> = Default::default();
    variants
        .iter()
        .map(|v| {
            let j = seen.entry(v.mode.as_str()).or_insert(0);
            let out = (shade(mode_color(&v.mode), *j), Dash::nth(*j));
            *j += 1;
            out
        })
        .collect()
}

struct Series {
    points: Vec<(f64, f64)>,
    color: RGBColor,
    dash: Dash,
    label: String,
    markers: bool,
    /// 95 % intervals drawn as error bars: (x, value, low, high).
    bars: Vec<(f64, f64, f64, f64)>,
}

struct Mark {
    x: f64,
    y: f64,
    color: RGBColor,
    text: String,
}

struct Panel<'a> {
    title: String,
    x_desc: &'a str,
    y_desc: &'a str,
    /// Draw x reversed (loose scales left, strict right).
    invert: bool,
    y_max: f64,
    series: Vec<Series>,
    /// Horizontal reference line (target or SLO), with its label.
    hline: Option<(f64, String)>,
    /// Vertical dashed lines from the axis to the curve, labelled.
    marks: Vec<Mark>,
    /// A search's probes: (x, attainment, passed), drawn over the curve with their verdict.
    probes: Vec<(f64, f64, bool)>,
    /// Shown in the middle of an empty panel.
    empty_note: Option<String>,
    /// Draw y = x (achieved vs offered).
    diagonal: bool,
    /// Where the legend goes: where the curves are not.
    legend_at: SeriesLabelPosition,
}

impl<'a> Panel<'a> {
    fn new(title: String, x_desc: &'a str, y_desc: &'a str) -> Self {
        Panel {
            title,
            x_desc,
            y_desc,
            invert: false,
            y_max: 110.0,
            series: Vec::new(),
            hline: None,
            marks: Vec::new(),
            probes: Vec::new(),
            empty_note: None,
            diagonal: false,
            legend_at: SeriesLabelPosition::UpperRight,
        }
    }
}

fn style_of(color: RGBColor, width: u32) -> ShapeStyle {
    ShapeStyle {
        color: color.to_rgba(),
        filled: false,
        stroke_width: width,
    }
}

fn draw_panel(area: &DrawingArea<SVGBackend, Shift>, p: &Panel) -> anyhow::Result<()> {
    let xs: Vec<f64> = p
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|q| q.0))
        .chain(p.marks.iter().map(|m| m.x))
        .filter(|x| x.is_finite())
        .collect();
    let (mut lo, mut hi) = xs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    if !lo.is_finite() {
        lo = 0.0;
        hi = 1.0;
    }
    if hi - lo < 1e-9 {
        let pad = if lo.abs() > 1e-9 { lo.abs() * 0.5 } else { 1.0 };
        lo -= pad;
        hi += pad;
    }
    let pad = (hi - lo) * 0.05;
    let (x0, x1) = (lo - pad, hi + pad);
    let tx = |x: f64| if p.invert { -x } else { x };
    let range = if p.invert { -x1..-x0 } else { x0..x1 };
    let invert = p.invert;
    let fmt_x = move |v: &f64| fmt_num(if invert { -*v } else { *v });
    let fmt_y = |v: &f64| fmt_num(*v);

    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, (FAMILY, 17))
        .margin(8)
        .x_label_area_size(42)
        .y_label_area_size(56)
        .build_cartesian_2d(range, 0f64..p.y_max)
        .map_err(pe)?;
    chart
        .configure_mesh()
        .x_desc(p.x_desc)
        .y_desc(p.y_desc)
        .x_labels(8)
        .y_labels(12)
        .x_label_formatter(&fmt_x)
        .y_label_formatter(&fmt_y)
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 14))
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()
        .map_err(pe)?;

    if p.diagonal {
        let d = vec![(tx(x0.max(0.0)), x0.max(0.0)), (tx(x1), x1)];
        let grey = dashed(RGBColor(150, 150, 150), Dash::Dashed);
        chart
            .draw_series(LineSeries::new(d, style_of(grey, 1)))
            .map_err(pe)?
            .label("offered = achieved")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style_of(grey, 1)));
    }
    if let Some((y, label)) = &p.hline {
        let grey = RGBColor(128, 128, 128);
        chart
            .draw_series(LineSeries::new(
                vec![(tx(x0), *y), (tx(x1), *y)],
                style_of(grey, 1),
            ))
            .map_err(pe)?;
        let anchor_x = if p.invert { tx(x1) } else { tx(x0) };
        chart
            .draw_series(std::iter::once(Text::new(
                label.clone(),
                (anchor_x, *y + p.y_max * 0.012),
                TextStyle::from((FAMILY, 12))
                    .color(&grey)
                    .pos(Pos::new(HPos::Left, VPos::Bottom)),
            )))
            .map_err(pe)?;
    }
    for s in &p.series {
        if s.points.is_empty() {
            continue;
        }
        let pts: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (tx(x), y)).collect();
        let st = style_of(dashed(s.color, s.dash), 2);
        let anno = chart
            .draw_series(LineSeries::new(pts.clone(), st))
            .map_err(pe)?;
        if !s.label.is_empty() {
            anno.label(s.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 26, y)], st));
        }
        if s.markers {
            chart
                .draw_series(
                    pts.iter()
                        .map(|&(x, y)| Circle::new((x, y), 3, s.color.filled())),
                )
                .map_err(pe)?;
        }
        chart
            .draw_series(s.bars.iter().map(|&(x, y, lo, hi)| {
                ErrorBar::new_vertical(tx(x), lo, y, hi, style_of(s.color, 1), 7)
            }))
            .map_err(pe)?;
    }
    // A search's verdicts: a triangle for a probe that met the target, a cross for one that
    // did not (its attainment point may still sit above the target line: a saturated probe).
    let ink = RGBColor(40, 40, 40);
    let pass: Vec<(f64, f64)> = p
        .probes
        .iter()
        .filter(|q| q.2)
        .map(|q| (tx(q.0), q.1))
        .collect();
    let fail: Vec<(f64, f64)> = p
        .probes
        .iter()
        .filter(|q| !q.2)
        .map(|q| (tx(q.0), q.1))
        .collect();
    if !pass.is_empty() {
        chart
            .draw_series(
                pass.iter()
                    .map(|&pt| TriangleMarker::new(pt, 6, ink.stroke_width(1))),
            )
            .map_err(pe)?
            .label("search probe: pass")
            .legend(move |(x, y)| TriangleMarker::new((x + 12, y), 6, ink.stroke_width(1)));
    }
    if !fail.is_empty() {
        chart
            .draw_series(
                fail.iter()
                    .map(|&pt| Cross::new(pt, 5, ink.stroke_width(2))),
            )
            .map_err(pe)?
            .label("search probe: fail")
            .legend(move |(x, y)| Cross::new((x + 12, y), 5, ink.stroke_width(2)));
    }
    for (i, m) in p.marks.iter().enumerate() {
        let x = tx(m.x);
        chart
            .draw_series(LineSeries::new(
                vec![(x, 0.0), (x, m.y)],
                style_of(dashed(m.color, Dash::Dashed), 1),
            ))
            .map_err(pe)?;
        chart
            .draw_series(std::iter::once(Circle::new(
                (x, m.y),
                5,
                ShapeStyle {
                    color: m.color.to_rgba(),
                    filled: false,
                    stroke_width: 2,
                },
            )))
            .map_err(pe)?;
        // Stagger labels of several marks so they do not overprint.
        let y = (p.y_max * 0.06) + (i % 6) as f64 * p.y_max * 0.05;
        chart
            .draw_series(std::iter::once(Text::new(
                m.text.clone(),
                (x, y),
                TextStyle::from((FAMILY, 12))
                    .color(&m.color)
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            )))
            .map_err(pe)?;
    }
    if let Some(note) = &p.empty_note {
        let mid = (tx(x0) + tx(x1)) / 2.0;
        chart
            .draw_series(std::iter::once(Text::new(
                note.clone(),
                (mid, p.y_max / 2.0),
                TextStyle::from((FAMILY, 14))
                    .color(&RGBColor(120, 120, 120))
                    .pos(Pos::new(HPos::Center, VPos::Center)),
            )))
            .map_err(pe)?;
    }
    if p.series.iter().any(|s| !s.label.is_empty()) || p.diagonal {
        chart
            .configure_series_labels()
            .position(legend_position(p, x0, x1))
            .label_font((FAMILY, 12))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .draw()
            .map_err(pe)?;
    }
    Ok(())
}

/// The emptiest corner for the legend: points sampled along every curve and the crossing
/// labels are counted per quadrant; the panel's preferred corner wins ties.
fn legend_position(p: &Panel, x0: f64, x1: f64) -> SeriesLabelPosition {
    use SeriesLabelPosition::*;
    let w = (x1 - x0).max(1e-12);
    let mut count = [0usize; 4]; // upper right, lower left, lower right, upper left
    let mut add = |x: f64, y: f64| {
        let mut fx = (x - x0) / w;
        if p.invert {
            fx = 1.0 - fx;
        }
        let fy = y / p.y_max;
        let right = fx > 0.45;
        let left = fx < 0.55;
        if fy > 0.5 && right {
            count[0] += 1;
        }
        if fy < 0.5 && left {
            count[1] += 1;
        }
        if fy < 0.5 && right {
            count[2] += 1;
        }
        if fy > 0.5 && left {
            count[3] += 1;
        }
    };
    for s in &p.series {
        for seg in s.points.windows(2) {
            for k in 0..=8 {
                let t = k as f64 / 8.0;
                add(
                    seg[0].0 + (seg[1].0 - seg[0].0) * t,
                    seg[0].1 + (seg[1].1 - seg[0].1) * t,
                );
            }
        }
        if s.points.len() == 1 {
            add(s.points[0].0, s.points[0].1);
        }
    }
    // The reference line's label sits at its left end (right end when inverted).
    if let Some((y, _)) = &p.hline {
        for k in 0..6 {
            let fx = k as f64 * 0.05;
            let x = if p.invert { x1 - fx * w } else { x0 + fx * w };
            add(x, *y);
        }
    }
    for (i, m) in p.marks.iter().enumerate() {
        for k in 0..4 {
            add(m.x, (0.06 + (i % 6) as f64 * 0.05) * p.y_max + k as f64);
        }
    }
    let corners = [UpperRight, LowerLeft, LowerRight, UpperLeft];
    let pref = corners
        .iter()
        .position(|c| std::mem::discriminant(c) == std::mem::discriminant(&p.legend_at))
        .unwrap_or(0);
    let mut best = pref;
    for i in 0..4 {
        if count[i] < count[best] {
            best = i;
        }
    }
    corners[best].clone()
}

/// Header: a title line and context lines, drawn at the top of the figure.
fn draw_header(
    area: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    lines: &[String],
) -> anyhow::Result<()> {
    area.draw(&Text::new(
        title.to_string(),
        (14, 8),
        TextStyle::from((FAMILY, 20, FontStyle::Bold)).pos(Pos::new(HPos::Left, VPos::Top)),
    ))
    .map_err(pe)?;
    for (i, l) in lines.iter().enumerate() {
        area.draw(&Text::new(
            l.clone(),
            (14, 36 + 17 * i as i32),
            TextStyle::from((FAMILY, 13))
                .color(&RGBColor(70, 70, 70))
                .pos(Pos::new(HPos::Left, VPos::Top)),
        ))
        .map_err(pe)?;
    }
    Ok(())
}

/// Context lines for a set of variants.
fn context_lines(a: &Analysis, vs: &[&VariantStats]) -> Vec<String> {
    let mut models: Vec<&str> = vs.iter().map(|v| v.model.as_str()).collect();
    models.dedup();
    let mut datasets: Vec<&str> = vs.iter().map(|v| v.dataset.as_str()).collect();
    datasets.dedup();
    let sim = vs.iter().filter(|v| v.simulated).count();
    let provenance = if sim == vs.len() {
        "SIMULATED (vbench sim-serve, not real hardware)"
    } else if sim > 0 {
        "PARTLY SIMULATED: see labels"
    } else {
        "measured on real servers"
    };
    let sc = &a.scoring;
    vec![
        format!(
            "Model: {}  ·  Dataset: {}  ·  {}",
            models.join(", "),
            datasets.join(", "),
            provenance
        ),
        format!(
            "SLO: TTFT ≤ {} ms, TPOT ≤ {} ms  ·  target {}%  ·  attainment = met / all requests (failures count as misses)",
            fmt_num(sc.slo.ttft_s * 1e3),
            fmt_num(sc.slo.tpot_s * 1e3),
            fmt_num(sc.target_pct)
        ),
    ]
}

fn topology(v: &VariantStats) -> String {
    let gpus = if v.gpus_known {
        format!("{} GPU{}", v.gpus, if v.gpus == 1 { "" } else { "s" })
    } else {
        "GPUs unknown (1 assumed)".to_string()
    };
    let sim = if v.simulated { " · SIMULATED" } else { "" };
    format!("{} · {}{}", v.label, gpus, sim)
}

fn with_svg(
    f: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<String> {
    init_font();
    DASHES.with(|d| d.borrow_mut().clear());
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(pe)?;
        f(&root)?;
        root.present().map_err(pe)?;
    }
    Ok(apply_dashes(buf))
}

/// A crossing for a legend: two decimals, honest about no crossing.
fn short_crossing(c: &Crossing, unit: &str) -> String {
    match c {
        Crossing::At { x, .. } => format!("{x:.2} {unit}"),
        Crossing::AlwaysAbove { edge } => format!("≥ {} {unit} (always above)", fmt_num(*edge)),
        Crossing::NotReached { .. } => "not reached".to_string(),
        Crossing::NoData => "no data".to_string(),
    }
}

fn crossing_mark(
    c: &Crossing,
    target: f64,
    color: RGBColor,
    prefix: &str,
    unit: &str,
) -> Option<Mark> {
    c.value().map(|x| Mark {
        x,
        y: target,
        color,
        text: format!("{prefix}{x:.2} {unit}").trim_end().to_string(),
    })
}

const KIND_DASH: [Dash; 3] = [Dash::Solid, Dash::Dotted, Dash::Dashed];

/// Per-variant figure: attainment vs rate (left) and vs SLO scale (right), three lines each.
pub fn variant_figure(a: &Analysis, v: &VariantStats, per_gpu: bool) -> anyhow::Result<String> {
    let target = a.scoring.target_pct;
    let color = mode_color(&v.mode);
    let (x_desc, unit) = super::analysis::rate_axis(&[v], per_gpu);
    let (x_desc, unit) = (x_desc.as_str(), unit.as_str());
    with_svg(|root| {
        let (head, body) = root.split_vertically(HEADER);
        let mut lines = context_lines(a, &[v]);
        lines.push(format!("Topology: {}", topology(v)));
        draw_header(&head, &format!("SLO attainment — {}", v.label), &lines)?;
        let (left, right) = body.split_horizontally(W / 2);

        let mut lp = Panel::new(
            "Attainment vs rate".to_string(),
            x_desc,
            "SLO attainment (%)",
        );
        for (k, kind) in SloKind::ALL.iter().enumerate() {
            lp.series.push(Series {
                points: v.rate_curve(k, per_gpu),
                color: shade(color, k * 2),
                dash: KIND_DASH[k],
                label: kind.title().to_string(),
                markers: true,
                // "Both" only: three sets of bars would hide the curves.
                bars: if k == 0 {
                    v.rate_curve_interval(0, per_gpu)
                } else {
                    Vec::new()
                },
            });
        }
        lp.hline = Some((target, format!("target {}%", fmt_num(target))));
        if let Some(search) = &v.search {
            lp.probes = v.probe_points(&search.verdicts, per_gpu);
        }
        let g = if per_gpu {
            &v.goodput_per_gpu
        } else {
            &v.goodput
        };
        lp.marks
            .extend(crossing_mark(g, target, color, "goodput ", unit));
        if lp.series.iter().all(|s| s.points.is_empty()) {
            lp.empty_note = Some("no per-request data: attainment cannot be computed".into());
        } else if g.value().is_none() {
            lp.empty_note = Some(format!("goodput: {}", g.describe(unit, "≥")));
        }
        draw_panel(&left, &lp)?;

        let title = match v.scale_rate {
            Some(r) => format!("Attainment vs SLO scale (at {} req/s)", fmt_num(r)),
            None => "Attainment vs SLO scale".to_string(),
        };
        let mut rp = Panel::new(title, "SLO scale (loose → strict)", "SLO attainment (%)");
        rp.invert = true;
        rp.legend_at = SeriesLabelPosition::LowerLeft;
        for (k, kind) in SloKind::ALL.iter().enumerate() {
            rp.series.push(Series {
                points: v.scale_curve.iter().map(|(s, att)| (*s, att[k])).collect(),
                color: shade(color, k * 2),
                dash: KIND_DASH[k],
                label: kind.title().to_string(),
                markers: true,
                bars: Vec::new(),
            });
        }
        rp.hline = Some((target, format!("target {}%", fmt_num(target))));
        rp.marks.extend(crossing_mark(
            &v.scale_crossing[0],
            target,
            color,
            "scale ",
            "",
        ));
        if v.scale_curve.is_empty() {
            rp.empty_note = Some("no per-request data".into());
        }
        draw_panel(&right, &rp)?;
        Ok(())
    })
}

/// Comparison of several variants for one SLO kind: rate (or per-GPU rate) left, scale right.
pub fn comparison_figure(
    a: &Analysis,
    vs: &[&VariantStats],
    kind: SloKind,
    per_gpu: bool,
    shared_rates: Option<&[f64]>,
) -> anyhow::Result<String> {
    let target = a.scoring.target_pct;
    let k = SloKind::ALL.iter().position(|x| *x == kind).unwrap_or(0);
    let styles = variant_styles(vs);
    let (x_desc, unit) = super::analysis::rate_axis(vs, per_gpu);
    let (x_desc, unit) = (x_desc.as_str(), unit.as_str());
    with_svg(|root| {
        let (head, body) = root.split_vertically(HEADER);
        let mut lines = context_lines(a, vs);
        lines.push(match shared_rates {
            Some(r) => format!(
                "Rates shared by all runs: {}",
                r.iter().map(|x| fmt_num(*x)).collect::<Vec<_>>().join(", ")
            ),
            None => "Each run over its own rates".to_string(),
        });
        draw_header(
            &head,
            &format!("SLO attainment comparison — {}", kind.title()),
            &lines,
        )?;
        let (left, right) = body.split_horizontally(W / 2);
        let mut lp = Panel::new(
            format!("{} attainment vs rate", kind.title()),
            x_desc,
            "SLO attainment (%)",
        );
        let mut rp = Panel::new(
            format!("{} attainment vs SLO scale", kind.title()),
            "SLO scale (loose → strict)",
            "SLO attainment (%)",
        );
        rp.invert = true;
        rp.legend_at = SeriesLabelPosition::LowerLeft;
        for (v, (color, dash)) in vs.iter().zip(&styles) {
            let pts: Vec<(f64, f64)> = v
                .points
                .iter()
                .filter(|p| {
                    shared_rates.is_none_or(|r| r.iter().any(|x| (x - p.rate).abs() < 1e-9))
                })
                .filter_map(|p| {
                    p.attainment
                        .map(|att| (if per_gpu { p.per_gpu_rate } else { p.rate }, att[k]))
                })
                .collect();
            let crossing = super::attainment::rate_crossing(&pts, target);
            let partly = vs.iter().any(|x| x.simulated) && !vs.iter().all(|x| x.simulated);
            let label = format!(
                "{} ({} GPU{}){} — {}",
                v.label,
                v.gpus,
                if v.gpus == 1 { "" } else { "s" },
                if partly && v.simulated { " SIM" } else { "" },
                short_crossing(&crossing, unit)
            );
            lp.marks
                .extend(crossing_mark(&crossing, target, *color, "", unit));
            let bars = v
                .rate_curve_interval(k, per_gpu)
                .into_iter()
                .filter(|b| pts.iter().any(|p| p.0 == b.0))
                .collect();
            lp.series.push(Series {
                points: pts,
                color: *color,
                dash: *dash,
                label,
                markers: true,
                bars,
            });
            rp.series.push(Series {
                points: v.scale_curve.iter().map(|(s, att)| (*s, att[k])).collect(),
                color: *color,
                dash: *dash,
                label: match v.scale_rate {
                    Some(r) => format!("{} at {} req/s", v.label, fmt_num(r)),
                    None => v.label.clone(),
                },
                markers: true,
                bars: Vec::new(),
            });
            rp.marks
                .extend(crossing_mark(&v.scale_crossing[k], target, *color, "", ""));
        }
        lp.hline = Some((target, format!("target {}%", fmt_num(target))));
        rp.hline = lp.hline.clone();
        if lp.series.iter().all(|s| s.points.is_empty()) {
            lp.empty_note = Some("no rates with per-request data to compare".into());
        }
        draw_panel(&left, &lp)?;
        draw_panel(&right, &rp)?;
        Ok(())
    })
}

/// p50/p90/p99 TTFT (left) and TPOT (right) vs rate for one variant.
pub fn latency_figure(a: &Analysis, v: &VariantStats) -> anyhow::Result<String> {
    let color = mode_color(&v.mode);
    let (x_desc, _) = super::analysis::rate_axis(&[v], false);
    with_svg(|root| {
        let (head, body) = root.split_vertically(HEADER);
        let mut lines = context_lines(a, &[v]);
        lines.push(format!(
            "Topology: {}  ·  percentiles over successful requests",
            topology(v)
        ));
        draw_header(&head, &format!("Latency percentiles — {}", v.label), &lines)?;
        let (left, right) = body.split_horizontally(W / 2);
        let panels = [
            ("TTFT", a.scoring.slo.ttft_s * 1e3, 0usize),
            ("TPOT", a.scoring.slo.tpot_s * 1e3, 1usize),
        ];
        for ((name, slo_ms, which), area) in panels.into_iter().zip([&left, &right]) {
            let pick = |p: &super::analysis::PointStats| -> Option<[Option<f64>; 3]> {
                let pc = if which == 0 { p.ttft_ms } else { p.tpot_ms };
                if let Some(pc) = pc {
                    return Some([Some(pc.p50), Some(pc.p90), Some(pc.p99)]);
                }
                let fs = p.file_summary.as_ref()?;
                let (m, p99) = if which == 0 {
                    (fs.median_ttft_ms, fs.p99_ttft_ms)
                } else {
                    (fs.median_tpot_ms, fs.p99_tpot_ms)
                };
                Some([m, None, p99])
            };
            let mut series: Vec<Series> = Vec::new();
            for (i, (pname, dash)) in [
                ("p50", Dash::Solid),
                ("p90", Dash::Dashed),
                ("p99", Dash::Dotted),
            ]
            .into_iter()
            .enumerate()
            {
                let pts: Vec<(f64, f64)> = v
                    .points
                    .iter()
                    .filter_map(|p| pick(p).and_then(|q| q[i]).map(|y| (p.rate, y)))
                    .filter(|(_, y)| y.is_finite())
                    .collect();
                series.push(Series {
                    points: pts,
                    color: shade(color, i * 2),
                    dash,
                    label: format!("{name} {pname}"),
                    markers: true,
                    bars: Vec::new(),
                });
            }
            let y_top = series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1))
                .fold(slo_ms, f64::max);
            let mut panel = Panel::new(
                format!("{name} percentiles vs rate"),
                &x_desc,
                "milliseconds",
            );
            panel.y_max = (y_top * 1.12).max(1e-3);
            panel.legend_at = SeriesLabelPosition::UpperLeft;
            panel.hline = Some((slo_ms, format!("{name} SLO {} ms", fmt_num(slo_ms))));
            if series.iter().all(|s| s.points.is_empty()) {
                panel.empty_note = Some("no latency data".into());
            }
            panel.series = series;
            draw_panel(area, &panel)?;
        }
        Ok(())
    })
}

/// Client health: achieved vs offered rate (left), schedule lag vs rate (right).
pub fn client_figure(a: &Analysis, v: &VariantStats) -> anyhow::Result<String> {
    let color = mode_color(&v.mode);
    with_svg(|root| {
        let (head, body) = root.split_vertically(HEADER);
        let mut lines = context_lines(a, &[v]);
        lines.push(format!(
            "Topology: {}  ·  {}",
            topology(v),
            if v.client_fell_behind {
                "WARNING: the client fell behind its schedule at some rates (marked)"
            } else {
                "the client kept to its schedule at every rate"
            }
        ));
        draw_header(&head, &format!("Client health — {}", v.label), &lines)?;
        let (left, right) = body.split_horizontally(W / 2);
        let with: Vec<_> = v
            .points
            .iter()
            .filter_map(|p| p.client.as_ref().map(|c| (p.rate, c)))
            .collect();
        let mut lp = Panel::new(
            "Achieved vs offered rate".to_string(),
            "Offered rate (req/s)",
            "Achieved send rate (req/s)",
        );
        lp.diagonal = true;
        lp.legend_at = SeriesLabelPosition::LowerRight;
        lp.series.push(Series {
            points: with
                .iter()
                .map(|(r, c)| (*r, c.achieved_rate))
                .filter(|p| p.1.is_finite())
                .collect(),
            color,
            dash: Dash::Solid,
            label: "achieved".into(),
            markers: true,
            bars: Vec::new(),
        });
        let ymax = with
            .iter()
            .map(|(r, c)| r.max(c.achieved_rate))
            .fold(0.0, f64::max);
        lp.y_max = (ymax * 1.12).max(1.0);
        let mut rp = Panel::new(
            "Schedule lag vs rate".to_string(),
            "Offered rate (req/s)",
            "Send lag (ms)",
        );
        rp.legend_at = SeriesLabelPosition::UpperLeft;
        for (i, (name, dash)) in [
            ("lag p50", Dash::Solid),
            ("lag p99", Dash::Dashed),
            ("lag max", Dash::Dotted),
        ]
        .into_iter()
        .enumerate()
        {
            rp.series.push(Series {
                points: with
                    .iter()
                    .map(|(r, c)| (*r, [c.lag_p50_ms, c.lag_p99_ms, c.lag_max_ms][i]))
                    .filter(|p| p.1.is_finite())
                    .collect(),
                color: shade(color, i * 2),
                dash,
                label: name.into(),
                markers: true,
                bars: Vec::new(),
            });
        }
        let thr = with.first().map(|(_, c)| c.lag_threshold_ms);
        let lag_top = with
            .iter()
            .map(|(_, c)| c.lag_max_ms)
            .chain(thr)
            .filter(|x| x.is_finite())
            .fold(1.0, f64::max);
        rp.y_max = lag_top * 1.15;
        if let Some(t) = thr.filter(|t| t.is_finite()) {
            rp.hline = Some((t, format!("fell-behind threshold {} ms (p99)", fmt_num(t))));
        }
        for (r, c) in &with {
            if c.client_fell_behind {
                rp.marks.push(Mark {
                    x: *r,
                    y: c.lag_p99_ms,
                    color: RGBColor(200, 0, 0),
                    text: "fell behind".into(),
                });
            }
        }
        if with.is_empty() {
            let note = "no client-health data (not a vbench result)".to_string();
            lp.empty_note = Some(note.clone());
            rp.empty_note = Some(note);
        }
        draw_panel(&left, &lp)?;
        draw_panel(&right, &rp)?;
        Ok(())
    })
}

/// Cache reuse: TTFT p50 against the share of prompt tokens the computing instances reused,
/// one path per variant through its rates (left), and that share against the rate beside what
/// the prompts allowed (right), so a user sees whether prefix caching or LMCache reused KV,
/// and what it bought.
pub fn cache_figure(a: &Analysis, vs: &[&VariantStats]) -> anyhow::Result<String> {
    let styles = variant_styles(vs);
    let (x_desc, _) = super::analysis::rate_axis(vs, false);
    with_svg(|root| {
        let (head, body) = root.split_vertically(HEADER);
        let mut lines = context_lines(a, vs);
        lines.push(
            "Reused: prompt tokens the instances that compute prompts (simple: each instance; \
             disaggregated: the prefills) did not compute, from their own counters"
                .to_string(),
        );
        draw_header(&head, "Prompt KV reuse and TTFT", &lines)?;
        let (left, right) = body.split_horizontally(W / 2);
        let mut lp = Panel::new(
            "TTFT p50 vs prompt KV reused".to_string(),
            "Prompt tokens reused (%)",
            "TTFT p50 (ms)",
        );
        let mut rp = Panel::new(
            "Prompt KV reused vs rate".to_string(),
            &x_desc,
            "Prompt tokens reused (%)",
        );
        rp.legend_at = SeriesLabelPosition::LowerLeft;
        let mut ttft_top: f64 = 0.0;
        for (v, (color, dash)) in vs.iter().zip(&styles) {
            let with: Vec<_> = v
                .points
                .iter()
                .filter_map(|p| p.cache.as_ref().map(|c| (p, c)))
                .collect();
            let path: Vec<(f64, f64)> = with
                .iter()
                .filter_map(|(p, c)| p.ttft_ms.as_ref().map(|t| (c.reused_pct, t.p50)))
                .filter(|q| q.1.is_finite())
                .collect();
            ttft_top = path.iter().map(|q| q.1).fold(ttft_top, f64::max);
            lp.series.push(Series {
                points: path,
                color: *color,
                dash: *dash,
                label: v.label.clone(),
                markers: true,
                bars: Vec::new(),
            });
            rp.series.push(Series {
                points: with.iter().map(|(p, c)| (p.rate, c.reused_pct)).collect(),
                color: *color,
                dash: *dash,
                label: format!("{} reused", v.label),
                markers: true,
                bars: Vec::new(),
            });
            let ideal: Vec<(f64, f64)> = with
                .iter()
                .filter_map(|(p, c)| c.ideal_pct.map(|i| (p.rate, i)))
                .collect();
            if !ideal.is_empty() {
                rp.series.push(Series {
                    points: ideal,
                    color: shade(*color, 2),
                    dash: Dash::Dotted,
                    label: format!("{} ideal (nothing evicted)", v.label),
                    markers: false,
                    bars: Vec::new(),
                });
            }
        }
        lp.y_max = (ttft_top * 1.15).max(1e-3);
        if lp.series.iter().all(|s| s.points.is_empty()) {
            lp.empty_note = Some("no rates with cache counters and latencies".into());
        }
        draw_panel(&left, &lp)?;
        draw_panel(&right, &rp)?;
        Ok(())
    })
}
