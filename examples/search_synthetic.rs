//! The SLO-capacity search against synthetic servers whose noise is calibrated on the
//! simulator's measurements (benches/search/RESULTS.md): how often the search lands within 5 %
//! of the true crossing, and at what cost, over many seeds. It drives `apply::search::Search`
//! exactly as `apply` does, so a change to the search can be judged in seconds before the
//! 30-minute simulator benchmark.
//!
//! Attainment at a rate is the dense sweep's pooled curve (piecewise linear between its
//! measured rates); a 200-request batch then draws a seed effect (near capacity a batch's
//! requests queue behind each other and pass or fail together: at one rate 13 seeds gave 79 to
//! 98 %, a spread of about 5 points, far beyond binomial noise) and its requests from the
//! binomial. Above 1.3 times the crossing the server queue grows (a saturated probe).
//!
//! usage: cargo run --release --example search_synthetic [SEARCHES [BUDGET [CONFIRM]]]

use rand::{Rng, SeedableRng};
use rand_distr::{Binomial, Distribution, Normal};

use vbench::apply::search::{BatchOutcome, Search, Step};
use vbench::plan::search::{Ending, SearchSpec};
use vbench::report::attainment::{rate_crossing, Crossing};
use vbench::stats::{mean_interval, wilson, Z95};

struct Curve {
    name: &'static str,
    /// (rate, attainment %) of the dense sweep, rising rates.
    points: &'static [(f64, f64)],
    /// Where the pooled dense curve crosses 90 %.
    truth: f64,
}

const CURVES: &[Curve] = &[
    Curve {
        name: "simple TP1",
        points: &[
            (1.0, 100.0),
            (4.0, 99.5),
            (6.0, 98.0),
            (7.0, 95.2),
            (7.5, 91.8),
            (7.75, 89.4),
            (8.0, 86.5),
            (10.0, 62.0),
            (16.0, 20.0),
            (64.0, 0.0),
        ],
        truth: 7.683,
    },
    Curve {
        name: "NIXL 1P1D",
        points: &[
            (1.0, 100.0),
            (4.0, 99.8),
            (8.0, 98.5),
            (9.0, 96.3),
            (10.0, 89.9),
            (10.5, 86.8),
            (11.0, 84.2),
            (16.0, 40.0),
            (64.0, 0.0),
        ],
        truth: 9.982,
    },
];

fn mean_attainment(c: &Curve, rate: f64) -> f64 {
    let p = c.points;
    if rate <= p[0].0 {
        return p[0].1;
    }
    for w in p.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if rate <= x1 {
            return y0 + (y1 - y0) * (rate - x0) / (x1 - x0);
        }
    }
    p[p.len() - 1].1
}

fn batch(rng: &mut impl Rng, c: &Curve, rate: f64, n: u64) -> BatchOutcome {
    let mean = mean_attainment(c, rate) / 100.0;
    // The seed effect: about 5 points where attainment is uncertain, less near 100 %.
    let sd = 0.05 * ((1.0 - mean) / 0.1).min(1.0);
    let p = (mean + Normal::new(0.0, sd.max(1e-9)).unwrap().sample(rng)).clamp(0.0, 1.0);
    BatchOutcome {
        met: Binomial::new(n, p).unwrap().sample(rng),
        requests: n,
        failed: 0,
        client_fell_behind: false,
        queue_growing: rate > 1.3 * c.truth,
    }
}

/// The report's goodput from a search's probes: each rate's batches pooled, the curve's
/// crossing of the target interpolated (what `vbench report` draws and states).
fn reported(s: &Search) -> Option<f64> {
    let mut pts: Vec<(f64, f64)> = s
        .probes
        .iter()
        .map(|p| (p.rate, p.attainment_pct))
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    match rate_crossing(&pts, 100.0 * s.spec.target) {
        Crossing::At { x, .. } => Some(x),
        _ => None,
    }
}

/// The same from a monotone (non-increasing) fit of the probes, weighted by requests
/// (pool-adjacent-violators), so a lucky batch above a lower rate's failure cannot pull the
/// crossing up.
fn reported_monotone(s: &Search) -> Option<f64> {
    let mut pts: Vec<(f64, f64, f64)> = s
        .probes
        .iter()
        .map(|p| (p.rate, p.attainment_pct, p.requests as f64))
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Blocks of (sum w·y, sum w, first index, last index).
    let mut blocks: Vec<(f64, f64, usize, usize)> = Vec::new();
    for (i, &(_, y, w)) in pts.iter().enumerate() {
        blocks.push((w * y, w, i, i));
        while blocks.len() >= 2 {
            let n = blocks.len();
            let (a, b) = (blocks[n - 2], blocks[n - 1]);
            if a.0 / a.1 >= b.0 / b.1 {
                break;
            }
            blocks.truncate(n - 2);
            blocks.push((a.0 + b.0, a.1 + b.1, a.2, b.3));
        }
    }
    let mut fitted: Vec<(f64, f64)> = Vec::new();
    for (sy, sw, i, j) in blocks {
        for p in &pts[i..=j] {
            fitted.push((p.0, sy / sw));
        }
    }
    match rate_crossing(&fitted, 100.0 * s.spec.target) {
        Crossing::At { x, .. } => Some(x),
        _ => None,
    }
}

/// The report's 95 % goodput range from a search's probes: where the attainment intervals'
/// lower ends cross the target and where their upper ends do (each rate's Wilson interval
/// over its pooled requests, widened to the t-interval of its batches' attainments when it has
/// three or more, as the report widens repeats). `batches` holds each batch's (rate,
/// attainment %) in the order measured.
fn reported_range(s: &Search, batches: &[(f64, f64)], dispersed: bool) -> (f64, f64) {
    let mut probes: Vec<_> = s.probes.iter().collect();
    probes.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    // Overdispersion: the batches' spread at the rates measured more than once, against the
    // binomial spread, pooled over those rates.
    let phi = if dispersed {
        let (mut seen, mut expected, mut df) = (0.0, 0.0, 0usize);
        for p in &probes {
            let own: Vec<f64> = batches
                .iter()
                .filter(|b| b.0 == p.rate)
                .map(|b| b.1 / 100.0)
                .collect();
            if own.len() < 2 {
                continue;
            }
            let k = own.len() as f64;
            let mean = own.iter().sum::<f64>() / k;
            let var = own.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1.0);
            let n = p.requests as f64 / k;
            seen += (k - 1.0) * var;
            expected += (k - 1.0) * mean * (1.0 - mean) / n;
            df += own.len() - 1;
        }
        if expected > 0.0 && df >= 2 {
            (seen / expected).max(1.0)
        } else {
            1.0
        }
    } else {
        1.0
    };
    let (mut lows, mut highs) = (Vec::new(), Vec::new());
    for p in probes {
        let n_eff = (p.requests as f64 / phi).max(1.0);
        let met_eff = p.met as f64 / p.requests.max(1) as f64 * n_eff;
        let (lo, hi) =
            wilson(met_eff.round() as u64, n_eff.round() as u64, Z95).unwrap_or((0.0, 1.0));
        let (mut lo, mut hi) = (100.0 * lo, 100.0 * hi);
        let own: Vec<f64> = batches
            .iter()
            .filter(|b| b.0 == p.rate)
            .map(|b| b.1)
            .collect();
        if own.len() >= 3 {
            if let Some((a, b)) = mean_interval(&own) {
                lo = lo.min(a.max(0.0));
                hi = hi.max(b.min(100.0));
            }
        }
        lows.push((p.rate, lo));
        highs.push((p.rate, hi));
    }
    let target = 100.0 * s.spec.target;
    let low = match rate_crossing(&lows, target) {
        Crossing::At { x, .. } => x,
        Crossing::AlwaysAbove { edge } => edge,
        _ => 0.0,
    };
    let high = match rate_crossing(&highs, target) {
        Crossing::At { x, .. } => x,
        _ => f64::INFINITY,
    };
    (low, high)
}

/// The goodput and its 95 % range from a straight line through the batches near the crossing
/// (an alternative the report does not use): batches, not requests, are the units, so their
/// spread around the line carries the seed effect.
fn line_range(batches: &[(f64, f64)], target: f64) -> Option<(f64, f64, f64)> {
    let mut rates: Vec<f64> = batches.iter().map(|b| b.0).collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    let pooled = |r: f64| {
        let own: Vec<f64> = batches.iter().filter(|b| b.0 == r).map(|b| b.1).collect();
        own.iter().sum::<f64>() / own.len() as f64
    };
    // The window: from the highest rate clearly above the target to the lowest clearly below.
    let lo = rates
        .iter()
        .copied()
        .filter(|&r| pooled(r) >= target + 5.0)
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))))
        .unwrap_or(rates[0]);
    let hi = rates
        .iter()
        .copied()
        .filter(|&r| r > lo && pooled(r) <= target - 5.0)
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.min(r))))
        .unwrap_or(rates[rates.len() - 1]);
    let window: Vec<f64> = rates.into_iter().filter(|&r| r >= lo && r <= hi).collect();
    if window.len() < 2 {
        return None;
    }
    let fit = |pts: &[(f64, f64)]| -> Option<f64> {
        let n = pts.len() as f64;
        let (mx, my) = (
            pts.iter().map(|p| p.0).sum::<f64>() / n,
            pts.iter().map(|p| p.1).sum::<f64>() / n,
        );
        let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        if sxx <= 0.0 || sxy >= 0.0 {
            return None;
        }
        let b = sxy / sxx;
        Some(mx + (target - my) / b)
    };
    let by_rate: Vec<Vec<f64>> = window
        .iter()
        .map(|&r| batches.iter().filter(|b| b.0 == r).map(|b| b.1).collect())
        .collect();
    let all: Vec<(f64, f64)> = window
        .iter()
        .zip(&by_rate)
        .flat_map(|(&r, ys)| ys.iter().map(move |&y| (r, y)))
        .collect();
    let point = fit(&all)?;
    // Inverse prediction of the line: the batches' residual spread, through the delta method,
    // t with n - 2 degrees of freedom.
    let n = all.len() as f64;
    if n < 3.0 {
        return None;
    }
    let mx = all.iter().map(|p| p.0).sum::<f64>() / n;
    let my = all.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = all.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let b = all.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / sxx;
    let a = my - b * mx;
    let rss: f64 = all.iter().map(|p| (p.1 - a - b * p.0).powi(2)).sum();
    let sigma = (rss / (n - 2.0)).sqrt();
    let t = [12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23]
        .get((n - 3.0) as usize)
        .copied()
        .unwrap_or(2.1);
    let se = sigma / b.abs() * (1.0 / n + (point - mx).powi(2) / sxx).sqrt();
    Some((point, point - t * se, point + t * se))
}

fn main() {
    let searches: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(400);
    let spec = SearchSpec {
        target: 0.9,
        start: 2.0,
        max_rate: 128.0,
        min_rate: 2.0 / 64.0,
        tolerance: 0.05,
        batch: 200,
        max_batches: 4,
        confirm_batches: std::env::args()
            .nth(3)
            .and_then(|a| a.parse().ok())
            .unwrap_or(2),
        budget: std::env::args()
            .nth(2)
            .and_then(|a| a.parse().ok())
            .unwrap_or(2800),
        max_failed_pct: 5.0,
    };
    println!(
        "{searches} searches per curve, batches of {}, budget {}, tolerance {}",
        spec.batch, spec.budget, spec.tolerance
    );
    for c in CURVES {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (mut mid_ok, mut rep_ok, mut bracketed, mut contains, mut mono_ok) = (0, 0, 0, 0, 0);
        let (mut covered, mut narrow_covered, mut dcovered) = (0, 0, 0);
        let mut dwidths: Vec<f64> = Vec::new();
        let (mut bcovered, mut bok) = (0, 0);
        let mut bwidths: Vec<f64> = Vec::new();
        let mut widths: Vec<f64> = Vec::new();
        let mut used = 0u64;
        let mut errors: Vec<f64> = Vec::new();
        for _ in 0..searches {
            let mut s = Search::new(spec.clone());
            let mut batches: Vec<(f64, f64)> = Vec::new();
            let ending = loop {
                match s.next() {
                    Step::Done(e) => break e,
                    Step::Measure { rate, .. } => {
                        let b = batch(&mut rng, c, rate, u64::from(spec.batch));
                        batches.push((rate, 100.0 * b.met as f64 / b.requests as f64));
                        s.record(rate, b);
                    }
                }
            };
            let (lo, hi) = reported_range(&s, &batches, false);
            let inside = lo <= c.truth && c.truth <= hi;
            let (dlo, dhi) = reported_range(&s, &batches, true);
            let dinside = dlo <= c.truth && c.truth <= dhi;
            dcovered += usize::from(dinside);
            dwidths.push((dhi - dlo) / c.truth);
            match line_range(&batches, 100.0 * spec.target) {
                Some((g, blo, bhi)) => {
                    bcovered += usize::from(blo <= c.truth && c.truth <= bhi);
                    bwidths.push((bhi - blo) / c.truth);
                    bok += usize::from((g / c.truth - 1.0).abs() <= 0.05);
                }
                None => bwidths.push(f64::INFINITY),
            }
            covered += usize::from(inside);
            let width = (hi - lo) / c.truth;
            widths.push(width);
            narrow_covered += usize::from(inside && width <= 0.10);
            used += s.used;
            let (lo, hi) = match ending {
                Ending::Bracketed { pass, fail } => {
                    bracketed += 1;
                    (Some(pass), Some(fail))
                }
                Ending::BudgetSpent { pass, fail } => (pass, fail),
                _ => (None, None),
            };
            if let (Some(lo), Some(hi)) = (lo, hi) {
                let mid = (lo + hi) / 2.0;
                mid_ok += usize::from((mid / c.truth - 1.0).abs() <= 0.05);
                contains += usize::from(lo <= c.truth && c.truth <= hi);
            }
            if let Some(g) = reported_monotone(&s) {
                mono_ok += usize::from((g / c.truth - 1.0).abs() <= 0.05);
            }
            if let Some(g) = reported(&s) {
                let e = g / c.truth - 1.0;
                errors.push(e.abs());
                rep_ok += usize::from(e.abs() <= 0.05);
            }
        }
        errors.sort_by(f64::total_cmp);
        widths.sort_by(f64::total_cmp);
        dwidths.sort_by(f64::total_cmp);
        bwidths.sort_by(f64::total_cmp);
        let q = |f: f64| errors[((errors.len() - 1) as f64 * f) as usize] * 100.0;
        let n = searches as f64;
        println!(
            "{:<11} truth {:.3}: bracketed {:.0} %, midpoint within 5 % {:.0} %, reported within \
             5 % {:.0} % (|error| p50 {:.1} %, p90 {:.1} %; monotone fit {:.0} %), bracket \
             contains truth {:.0} %, requests {:.0} mean",
            c.name,
            c.truth,
            100.0 * bracketed as f64 / n,
            100.0 * mid_ok as f64 / n,
            100.0 * rep_ok as f64 / n,
            q(0.5),
            q(0.9),
            100.0 * mono_ok as f64 / n,
            100.0 * contains as f64 / n,
            used as f64 / n
        );
        println!(
            "{:<11} the report's 95 % goodput range before 2026-12-01 contains the truth in {:.0} % (and is also \
             at most 10 % wide in {:.0} %); width p50 {:.1} %, p90 {:.1} %",
            "",
            100.0 * covered as f64 / n,
            100.0 * narrow_covered as f64 / n,
            100.0 * widths[widths.len() / 2],
            100.0 * widths[widths.len() * 9 / 10],
        );
        println!(
            "{:<11} widened for the batches' overdispersion (the report since 2026-12-01): contains the truth \
             in {:.0} %; width p50 {:.1} %, p90 {:.1} %",
            "",
            100.0 * dcovered as f64 / n,
            100.0 * dwidths[dwidths.len() / 2],
            100.0 * dwidths[dwidths.len() * 9 / 10],
        );
        println!(
            "{:<11} a line through the batches near the crossing (delta-method range): \
             within 5 % {:.0} %, its 95 % range contains the truth in {:.0} %; width p50 {:.1} %, \
             p90 {:.1} %",
            "",
            100.0 * bok as f64 / n,
            100.0 * bcovered as f64 / n,
            100.0 * bwidths[bwidths.len() / 2],
            100.0 * bwidths[bwidths.len() * 9 / 10],
        );
    }
}
