//! How sure a number is: 95 % intervals for attainment (Wilson score) and for latency
//! percentiles (distribution-free, from order statistics).
//!
//! Percentile intervals come from the binomial distribution of how many requests fall below
//! the true quantile, not from a bootstrap: the interval is exact for any latency
//! distribution, costs one pass over a binomial, gives the same answer on every run of the
//! report, and says honestly when there are too few requests to bound a tail percentile (a
//! bootstrap of p99 from 60 requests would resample the same few largest values and claim a
//! narrow interval).

use serde::{Deserialize, Serialize};

/// The normal quantile of a two-sided 95 % interval.
pub const Z95: f64 = 1.959_963_984_540_054;
/// The confidence of every interval vbench reports.
pub const CONFIDENCE: f64 = 0.95;

/// A two-sided interval; a missing end means the data cannot bound that side (too few
/// samples for a tail percentile).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Interval {
    pub lo: Option<f64>,
    pub hi: Option<f64>,
}

impl Interval {
    pub fn scaled(self, factor: f64) -> Interval {
        Interval {
            lo: self.lo.map(|x| x * factor),
            hi: self.hi.map(|x| x * factor),
        }
    }

    /// Whether `x` lies inside (an open end contains everything beyond it).
    pub fn contains(&self, x: f64) -> bool {
        self.lo.is_none_or(|lo| lo <= x) && self.hi.is_none_or(|hi| x <= hi)
    }
}

/// The Wilson score interval of a proportion: `k` successes in `n` trials, as proportions
/// (0..=1). None without trials.
pub fn wilson(k: u64, n: u64, z: f64) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let n_f = n as f64;
    let p = k.min(n) as f64 / n_f;
    let z2 = z * z;
    let denom = 1.0 + z2 / n_f;
    let centre = (p + z2 / (2.0 * n_f)) / denom;
    let half = z * (p * (1.0 - p) / n_f + z2 / (4.0 * n_f * n_f)).sqrt() / denom;
    // At 0 or n successes the interval's end is exactly 0 or 1 (rounding would leave the
    // observed share just outside its own interval).
    let lo = if k == 0 {
        0.0
    } else {
        (centre - half).max(0.0)
    };
    let hi = if k >= n {
        1.0
    } else {
        (centre + half).min(1.0)
    };
    Some((lo, hi))
}

/// The `q`-quantile's (0 < q < 1) 95 % interval from sorted samples: order statistics
/// `x(r) ≤ x(s)` with P(x(r) ≤ ξ_q ≤ x(s)) ≥ 95 %, the number of samples below ξ_q being
/// Binomial(n, q). An end the data cannot reach is open.
pub fn quantile_interval(sorted: &[f64], q: f64) -> Interval {
    let n = sorted.len();
    if n == 0 || !(q > 0.0 && q < 1.0) {
        return Interval { lo: None, hi: None };
    }
    let cdf = binomial_cdf(n as u64, q);
    let tail = (1.0 - CONFIDENCE) / 2.0;
    // Lower: the largest r (1-based) with P(X ≤ r-1) ≤ tail; none when even r = 1 fails.
    let lo = (1..=n).take_while(|&r| cdf[r - 1] <= tail).last();
    // Upper: the smallest s with P(X ≤ s-1) ≥ 1 - tail; none when s would pass n.
    let hi = (1..=n).find(|&s| cdf[s - 1] >= 1.0 - tail);
    Interval {
        lo: lo.map(|r| sorted[r - 1]),
        hi: hi.map(|s| sorted[s - 1]),
    }
}

/// P(X ≤ k) for k = 0..=n, X ~ Binomial(n, p), computed in log space (no underflow at
/// n = 10^6).
fn binomial_cdf(n: u64, p: f64) -> Vec<f64> {
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let mut log_pmf = Vec::with_capacity(n as usize + 1);
    let mut l = n as f64 * lq;
    log_pmf.push(l);
    for k in 0..n {
        l += ((n - k) as f64).ln() - ((k + 1) as f64).ln() + lp - lq;
        log_pmf.push(l);
    }
    let max = log_pmf.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = log_pmf.iter().map(|l| (l - max).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    weights
        .iter()
        .map(|w| {
            acc += w;
            (acc / total).min(1.0)
        })
        .collect()
}

/// The 97.5 % quantile of Student's t with `df` degrees of freedom (two-sided 95 %).
pub fn t975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => TABLE[df - 1],
        // Beyond the table: the normal quantile plus the first correction term.
        _ => Z95 + (Z95.powi(3) + Z95) / (4.0 * df as f64),
    }
}

/// The 95 % interval of a mean from `k` independent values (Student's t); None below two.
pub fn mean_interval(values: &[f64]) -> Option<(f64, f64)> {
    let k = values.len();
    if k < 2 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / k as f64;
    let var = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1) as f64;
    let half = t975(k - 1) * (var / k as f64).sqrt();
    Some((mean - half, mean + half))
}

/// Requests per point for an attainment interval no wider than `half_width` (percentage
/// points, each side) where attainment is near `pct` %: the normal approximation
/// `n = z² p (1 - p) / h²`.
pub fn requests_for_half_width(pct: f64, half_width: f64) -> u64 {
    let p = (pct / 100.0).clamp(0.01, 0.99);
    let h = (half_width / 100.0).max(1e-4);
    (Z95 * Z95 * p * (1.0 - p) / (h * h)).ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn wilson_matches_textbook_values() {
        // Newcombe (1998), Statistics in Medicine 17:857, table I, method 3 (Wilson score):
        // 81/263 → 0.2553-0.3662; 15/148 → 0.0624-0.1605; 0/20 → 0-0.1611; 1/29 → 0.0061-0.1718.
        for (k, n, lo, hi) in [
            (81, 263, 0.2553, 0.3662),
            (15, 148, 0.0624, 0.1605),
            (0, 20, 0.0, 0.1611),
            (1, 29, 0.0061, 0.1718),
        ] {
            let (l, h) = wilson(k, n, Z95).unwrap();
            assert!(close(l, lo, 6e-5) && close(h, hi, 6e-5), "{k}/{n}: {l} {h}");
        }
        assert_eq!(wilson(0, 0, Z95), None);
        let (l, h) = wilson(10, 10, Z95).unwrap();
        assert!(close(h, 1.0, 1e-12) && close(l, 0.7225, 6e-5), "{l} {h}");
    }

    #[test]
    fn binomial_cdf_is_exact_for_small_n() {
        // Binomial(4, 0.5): 1, 4, 6, 4, 1 over 16.
        let c = binomial_cdf(4, 0.5);
        let want = [1.0, 5.0, 11.0, 15.0, 16.0].map(|x| x / 16.0);
        for (a, b) in c.iter().zip(want) {
            assert!(close(*a, b, 1e-12), "{c:?}");
        }
        // Large n does not underflow.
        let c = binomial_cdf(1_000_000, 0.99);
        assert!(close(*c.last().unwrap(), 1.0, 1e-12));
        assert!(c[989_000] < 1e-6 && c[991_000] > 1.0 - 1e-6);
    }

    /// Over 1,000 samples of an exponential distribution with a known quantile, the interval
    /// holds the true quantile at least 93 % of the time (it is built for ≥ 95 %).
    #[test]
    fn quantile_intervals_cover_the_true_quantile() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(20261201);
        for (q, n) in [(0.5, 200), (0.9, 200), (0.99, 2000), (0.5, 15)] {
            let truth = -(1.0f64 - q).ln(); // Exp(1)
            let mut covered = 0;
            let mut bounded = 0;
            for _ in 0..1000 {
                let mut xs: Vec<f64> = (0..n).map(|_| -(1.0 - rng.gen::<f64>()).ln()).collect();
                xs.sort_by(f64::total_cmp);
                let i = quantile_interval(&xs, q);
                covered += i.contains(truth) as u32;
                bounded += (i.lo.is_some() && i.hi.is_some()) as u32;
            }
            assert!(covered >= 930, "q {q}, n {n}: covered {covered}/1000");
            assert_eq!(bounded, 1000, "q {q}, n {n}");
        }
    }

    #[test]
    fn too_few_samples_leave_a_tail_open() {
        let xs: Vec<f64> = (1..=60).map(f64::from).collect();
        let p99 = quantile_interval(&xs, 0.99);
        assert!(p99.lo.is_some() && p99.hi.is_none(), "{p99:?}");
        let p50 = quantile_interval(&xs, 0.5);
        // Order statistics 22 and 39 (60 samples: exact coverage 97.3 %).
        assert_eq!((p50.lo, p50.hi), (Some(22.0), Some(39.0)), "{p50:?}");
    }

    #[test]
    fn t_quantiles_and_mean_intervals() {
        assert_eq!(t975(2), 4.303);
        assert!(close(t975(1000), 1.9623, 1e-3), "{}", t975(1000));
        // 26, 83, 45: mean 51.33, sd 29.02, t(2) 4.303 → ±72.1.
        let (lo, hi) = mean_interval(&[26.0, 83.0, 45.0]).unwrap();
        assert!(
            close(lo, -20.76, 0.01) && close(hi, 123.43, 0.01),
            "{lo} {hi}"
        );
        assert_eq!(mean_interval(&[1.0]), None);
    }

    #[test]
    fn requests_needed_for_a_width() {
        // Near 90 %, ±2 points: 1.96² × 0.09 / 0.0004 = 865.
        assert_eq!(requests_for_half_width(90.0, 2.0), 865);
    }
}
