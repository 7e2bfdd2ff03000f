//! The arrival schedule: send offsets precomputed from a seed, as `vllm bench serve` draws them.
//!
//! Gaps are Gamma(shape = burstiness, scale = 1 / (rate · burstiness)): burstiness 1 is a Poisson
//! process, < 1 burstier, > 1 more regular. The cumulated offsets are then rescaled so the last
//! one is exactly `n / rate`, as vLLM does, so the offered rate over the run is exactly `rate`.
//! `constant` spaces requests exactly `1 / rate` apart; an infinite rate sends all at t = 0.

use rand::SeedableRng;
use rand_distr::{Distribution, Gamma};

/// How inter-arrival gaps are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrival {
    /// Exponential gaps (gamma with shape 1).
    Poisson,
    /// Gamma gaps with this shape ("burstiness"); must be > 0.
    Gamma { burstiness: f64 },
    /// Evenly spaced.
    Constant,
}

impl Arrival {
    /// `poisson`, `gamma` or `constant`, the name written into results.
    pub fn name(&self) -> &'static str {
        match self {
            Arrival::Poisson => "poisson",
            Arrival::Gamma { .. } => "gamma",
            Arrival::Constant => "constant",
        }
    }

    /// The burstiness vLLM would record: 1 for Poisson, the shape for gamma, inf for constant.
    pub fn burstiness(&self) -> f64 {
        match self {
            Arrival::Poisson => 1.0,
            Arrival::Gamma { burstiness } => *burstiness,
            Arrival::Constant => f64::INFINITY,
        }
    }
}

/// Why a schedule cannot be drawn.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScheduleError {
    #[error("request rate must be > 0 requests/s (or inf), got {0}")]
    BadRate(f64),
    #[error("burstiness must be a finite number > 0, got {0}")]
    BadBurstiness(f64),
    #[error("a trace's speedup must be a finite number > 0, got {0}")]
    BadSpeedup(f64),
}

/// A trace's arrival offsets (seconds from its first request) replayed `speedup` times as
/// fast, and the rate they offer: the requests over the last send time (infinite when every
/// request comes at once).
pub fn replay_offsets(trace: &[f64], speedup: f64) -> Result<(Vec<f64>, f64), ScheduleError> {
    if !(speedup.is_finite() && speedup > 0.0) {
        return Err(ScheduleError::BadSpeedup(speedup));
    }
    let offsets: Vec<f64> = trace.iter().map(|t| t / speedup).collect();
    let last = offsets.last().copied().unwrap_or(0.0);
    let rate = if last > 0.0 {
        offsets.len() as f64 / last
    } else {
        f64::INFINITY
    };
    Ok((offsets, rate))
}

/// Send offsets in seconds from the run's start, one per request, non-decreasing.
///
/// Deterministic: the same `(n, rate, arrival, seed)` gives the same offsets on every machine,
/// so one schedule can be replayed against every deployment.
pub fn arrival_offsets(
    n: usize,
    rate: f64,
    arrival: Arrival,
    seed: u64,
) -> Result<Vec<f64>, ScheduleError> {
    if rate.is_nan() || rate <= 0.0 {
        return Err(ScheduleError::BadRate(rate));
    }
    if let Arrival::Gamma { burstiness } = arrival {
        if !(burstiness.is_finite() && burstiness > 0.0) {
            return Err(ScheduleError::BadBurstiness(burstiness));
        }
    }
    if rate.is_infinite() {
        return Ok(vec![0.0; n]);
    }
    let mut offsets = Vec::with_capacity(n);
    match arrival {
        Arrival::Constant => {
            // vLLM's constant schedule: the first request waits one gap too.
            offsets.extend((1..=n).map(|i| i as f64 / rate));
        }
        Arrival::Poisson | Arrival::Gamma { .. } => {
            let shape = arrival.burstiness();
            let gamma = Gamma::new(shape, 1.0 / (rate * shape))
                .map_err(|_| ScheduleError::BadBurstiness(shape))?;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut t = 0.0;
            for _ in 0..n {
                t += gamma.sample(&mut rng);
                offsets.push(t);
            }
            if let Some(&last) = offsets.last() {
                if last > 0.0 {
                    let factor = (n as f64 / rate) / last;
                    offsets.iter_mut().for_each(|o| *o *= factor);
                }
            }
        }
    }
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replayed_trace_keeps_its_gaps_divided_by_the_speedup() {
        let (offsets, rate) = replay_offsets(&[0.0, 0.1, 0.2, 0.5], 2.0).unwrap();
        assert_eq!(offsets, [0.0, 0.05, 0.1, 0.25]);
        assert!((rate - 4.0 / 0.25).abs() < 1e-9, "{rate}");
        assert_eq!(replay_offsets(&[0.0, 0.0], 1.0).unwrap().1, f64::INFINITY);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(
                matches!(
                    replay_offsets(&[0.0], bad),
                    Err(ScheduleError::BadSpeedup(_))
                ),
                "{bad}"
            );
        }
    }

    fn gaps(offsets: &[f64]) -> Vec<f64> {
        let mut prev = 0.0;
        offsets
            .iter()
            .map(|&o| {
                let g = o - prev;
                prev = o;
                g
            })
            .collect()
    }

    fn mean_cv(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt() / mean)
    }

    #[test]
    fn poisson_schedule_has_mean_gap_one_over_rate_and_cv_one() {
        let o = arrival_offsets(20_000, 50.0, Arrival::Poisson, 7).unwrap();
        let (mean, cv) = mean_cv(&gaps(&o));
        assert!((mean - 0.02).abs() < 1e-9, "mean gap {mean}"); // exact after rescale
        assert!((cv - 1.0).abs() < 0.03, "cv {cv}");
        assert!((o.last().unwrap() - 400.0).abs() < 1e-6);
        assert!(o.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn gamma_burstiness_sets_cv_to_one_over_sqrt_shape() {
        for b in [0.25, 4.0] {
            let o = arrival_offsets(40_000, 10.0, Arrival::Gamma { burstiness: b }, 3).unwrap();
            let (mean, cv) = mean_cv(&gaps(&o));
            assert!((mean - 0.1).abs() < 1e-9);
            let want = 1.0 / b.sqrt();
            assert!((cv - want).abs() < 0.05 * want, "b={b} cv={cv} want {want}");
        }
    }

    #[test]
    fn constant_schedule_is_evenly_spaced_like_vllm() {
        let o = arrival_offsets(4, 2.0, Arrival::Constant, 0).unwrap();
        assert_eq!(o, vec![0.5, 1.0, 1.5, 2.0]);
    }

    #[test]
    fn infinite_rate_sends_everything_at_zero() {
        let o = arrival_offsets(3, f64::INFINITY, Arrival::Poisson, 0).unwrap();
        assert_eq!(o, vec![0.0; 3]);
    }

    #[test]
    fn same_seed_same_schedule_other_seed_other_schedule() {
        let a = arrival_offsets(100, 5.0, Arrival::Poisson, 42).unwrap();
        let b = arrival_offsets(100, 5.0, Arrival::Poisson, 42).unwrap();
        let c = arrival_offsets(100, 5.0, Arrival::Poisson, 43).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn bad_rate_and_burstiness_are_errors() {
        assert_eq!(
            arrival_offsets(1, 0.0, Arrival::Poisson, 0),
            Err(ScheduleError::BadRate(0.0))
        );
        assert!(arrival_offsets(1, f64::NAN, Arrival::Poisson, 0).is_err());
        assert_eq!(
            arrival_offsets(1, 1.0, Arrival::Gamma { burstiness: 0.0 }, 0),
            Err(ScheduleError::BadBurstiness(0.0))
        );
    }
}
