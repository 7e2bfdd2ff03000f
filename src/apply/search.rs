//! The SLO-capacity search (`[load.search]`): the largest offered rate whose attainment meets
//! the target, found with as few requests as the answer needs.
//!
//! Bracket, then narrow. The first probe runs at `start`; each rate that passes doubles the next
//! (up to `max_rate`), the first that fails closes the bracket (one that fails at `start`
//! halves instead), then `[highest pass, lowest fail above it]` is narrowed (regula falsi on the
//! ends' attainments, alternating with bisection) until its relative width is within
//! `tolerance`. A probe is decided by the Wilson interval of its
//! attainment: pass when the whole interval is at or above the target, fail when it is below;
//! while it straddles the target, another batch of requests at the same rate is added
//! (sequential testing) up to `max_batches`, after which the point estimate decides and the
//! probe is marked forced. A probe whose client fell behind, whose server queue kept growing or
//! whose requests failed beyond `max_failed_pct` is a fail at once (saturated: no more requests
//! are spent past capacity). `budget` caps the measured requests per variant.
//!
//! Near capacity one batch passes or fails with its seed: requests queue behind each other, so
//! a batch's requests are not independent and its Wilson interval is too narrow (on the
//! simulator, three seeds of 200 requests at one rate gave 83.5, 88 and 94.5 %). So before the
//! search ends, each end of the bracket is measured again with further seeds until it rests on
//! `confirm_batches` batches, and decided on the pooled counts; an end that flips moves the
//! bracket and the narrowing goes on.
//!
//! The search is a pure state machine over measured counts: the same measurements give the
//! same next step, which is what lets `--resume` replay the probes already on disk and go on.

use serde::Serialize;

use crate::plan::search::{Ending, SearchSpec};
use crate::stats::{wilson, Z95};

/// What one batch measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BatchOutcome {
    /// Requests meeting the SLO (both conditions).
    pub met: u64,
    /// Measured requests (failed included).
    pub requests: u64,
    pub failed: u64,
    pub client_fell_behind: bool,
    /// The servers' waiting queue piled up while the batch was sent.
    pub queue_growing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
}

/// One rate's probe: its batches pooled.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Probe {
    pub rate: f64,
    pub batches: u32,
    pub met: u64,
    pub requests: u64,
    pub failed: u64,
    /// Attainment and its 95 % Wilson interval, %.
    pub attainment_pct: f64,
    pub interval_pct: (f64, f64),
    pub verdict: Option<Verdict>,
    /// Decided by the point estimate after `max_batches` (the interval still straddled).
    pub forced: bool,
    /// The client fell behind or failures passed `max_failed_pct`.
    pub saturated: bool,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Measure one more batch at `rate` (the `batch`-th at that rate).
    Measure {
        rate: f64,
        batch: u32,
    },
    Done(Ending),
}

/// The search's state: every probe so far, in the order measured.
#[derive(Debug, Clone, Serialize)]
pub struct Search {
    pub spec: SearchSpec,
    pub probes: Vec<Probe>,
    /// Measured requests so far.
    pub used: u64,
}

/// Rates as the search names them: 3 significant digits (file names stay readable and a
/// bisection that cannot move any more stops).
fn round_rate(r: f64) -> f64 {
    if r <= 0.0 || !r.is_finite() {
        return r;
    }
    let digits = 3 - 1 - r.log10().floor() as i32;
    let scale = 10f64.powi(digits);
    (r * scale).round() / scale
}

impl Search {
    pub fn new(spec: SearchSpec) -> Search {
        Search {
            spec,
            probes: Vec::new(),
            used: 0,
        }
    }

    /// Add a measured batch at `rate` (the rate [`Search::next`] asked for) and return its
    /// probe, decided again on all its batches.
    pub fn record(&mut self, rate: f64, batch: BatchOutcome) -> &Probe {
        self.used += batch.requests;
        let index = match self.probes.iter().position(|p| p.rate == rate) {
            Some(i) => i,
            None => {
                self.probes.push(Probe {
                    rate,
                    batches: 0,
                    met: 0,
                    requests: 0,
                    failed: 0,
                    attainment_pct: 0.0,
                    interval_pct: (0.0, 100.0),
                    verdict: None,
                    forced: false,
                    saturated: false,
                });
                self.probes.len() - 1
            }
        };
        let spec = &self.spec;
        let budget_left = self.used + u64::from(spec.batch) <= spec.budget;
        let probe = &mut self.probes[index];
        probe.batches += 1;
        probe.met += batch.met;
        probe.requests += batch.requests;
        probe.failed += batch.failed;
        let n = probe.requests.max(1);
        probe.attainment_pct = 100.0 * probe.met as f64 / n as f64;
        let (lo, hi) = wilson(probe.met, probe.requests, Z95).unwrap_or((0.0, 1.0));
        probe.interval_pct = (100.0 * lo, 100.0 * hi);
        probe.saturated |= batch.client_fell_behind
            || batch.queue_growing
            || 100.0 * batch.failed as f64 > spec.max_failed_pct * batch.requests.max(1) as f64;
        probe.forced = false;
        probe.verdict = if probe.saturated || hi < spec.target {
            Some(Verdict::Fail)
        } else if lo >= spec.target {
            Some(Verdict::Pass)
        } else if probe.batches >= spec.max_batches || !budget_left {
            probe.forced = true;
            Some(if probe.attainment_pct >= 100.0 * spec.target {
                Verdict::Pass
            } else {
                Verdict::Fail
            })
        } else {
            None
        };
        probe
    }

    /// The highest passing rate below the lowest failing one, and that failing rate.
    pub fn bracket(&self) -> (Option<f64>, Option<f64>) {
        let fail = self
            .probes
            .iter()
            .filter(|p| p.verdict == Some(Verdict::Fail))
            .map(|p| p.rate)
            .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.min(r))));
        let pass = self
            .probes
            .iter()
            .filter(|p| p.verdict == Some(Verdict::Pass))
            .map(|p| p.rate)
            .filter(|r| fail.is_none_or(|f| *r < f))
            .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
        (pass, fail)
    }

    /// The next rate inside the bracket `[p, f]`: where the straight line through the two
    /// ends' attainments crosses the target (regula falsi), at least a tenth of the width from
    /// either end. Near capacity attainment falls steeply, so the line lands far closer than
    /// the midpoint would. Bisection instead when the last two probes got the same verdict (the
    /// line keeps landing on one side: alternating guarantees at least bisection's pace every
    /// two probes) or when the ends do not straddle the target on the line (a saturated fail
    /// can have a high attainment).
    fn narrow(&self, p: f64, f: f64) -> f64 {
        let mid = (p + f) / 2.0;
        let at = |rate: f64| self.probes.iter().find(|q| q.rate == rate);
        let (Some(low), Some(high)) = (at(p), at(f)) else {
            return mid;
        };
        let n = self.probes.len();
        let same_side = n >= 2 && self.probes[n - 1].verdict == self.probes[n - 2].verdict;
        let target = 100.0 * self.spec.target;
        let (a, b) = (low.attainment_pct, high.attainment_pct);
        if same_side || high.saturated || !(a >= target && b < target) {
            return mid;
        }
        let x = p + (a - target) / (a - b) * (f - p);
        let margin = (f - p) / 10.0;
        x.clamp(p + margin, f - margin)
    }

    /// The next measurement, or how the search ended.
    pub fn next(&self) -> Step {
        let spec = &self.spec;
        if let Some(p) = self.probes.iter().find(|p| p.verdict.is_none()) {
            return Step::Measure {
                rate: p.rate,
                batch: p.batches + 1,
            };
        }
        let (pass, fail) = self.bracket();
        let budget_left = self.used + u64::from(spec.batch) <= spec.budget;
        if let (Some(p), Some(f)) = (pass, fail) {
            if (f - p) / p <= spec.tolerance {
                // Confirm the ends with more seeds (the pass end first: it is the answer).
                let unconfirmed = [p, f].into_iter().find_map(|rate| {
                    self.probes
                        .iter()
                        .find(|q| q.rate == rate)
                        .filter(|q| !q.saturated && q.batches < spec.confirm_batches)
                });
                return match unconfirmed {
                    Some(q) if budget_left => Step::Measure {
                        rate: q.rate,
                        batch: q.batches + 1,
                    },
                    _ => Step::Done(Ending::Bracketed { pass: p, fail: f }),
                };
            }
        }
        if !budget_left {
            return Step::Done(Ending::BudgetSpent { pass, fail });
        }
        let rate = match (pass, fail) {
            (None, None) => spec.start,
            (Some(p), None) => {
                if p >= spec.max_rate {
                    return Step::Done(Ending::AboveMax { pass: p });
                }
                (p * 2.0).min(spec.max_rate)
            }
            (None, Some(f)) => {
                let r = f / 2.0;
                if r < spec.min_rate {
                    return Step::Done(Ending::BelowMin { fail: f });
                }
                r
            }
            (Some(p), Some(f)) => self.narrow(p, f),
        };
        let rate = round_rate(rate);
        // A rate measured and decided before (rounding, or noise that broke monotonicity):
        // the bracket cannot narrow further.
        if self
            .probes
            .iter()
            .any(|p| p.rate == rate && p.verdict.is_some())
        {
            return Step::Done(match (pass, fail) {
                (Some(p), Some(f)) => Ending::Bracketed { pass: p, fail: f },
                (pass, fail) => Ending::BudgetSpent { pass, fail },
            });
        }
        Step::Measure { rate, batch: 1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn spec() -> SearchSpec {
        SearchSpec {
            target: 0.9,
            start: 1.0,
            max_rate: 256.0,
            min_rate: 0.05,
            tolerance: 0.05,
            batch: 100,
            max_batches: 4,
            confirm_batches: 2,
            budget: 4000,
            max_failed_pct: 5.0,
        }
    }

    fn batch(met: u64) -> BatchOutcome {
        BatchOutcome {
            met,
            requests: 100,
            failed: 0,
            client_fell_behind: false,
            queue_growing: false,
        }
    }

    /// A synthetic server: attainment falls from 1 to 0 around `capacity` (logistic), each
    /// request meeting the SLO independently (binomial noise).
    fn synthetic_batch(rng: &mut impl Rng, rate: f64, capacity: f64, n: u64) -> BatchOutcome {
        let p = 1.0 / (1.0 + ((rate / capacity - 1.0) * 12.0).exp());
        BatchOutcome {
            met: (0..n).filter(|_| rng.gen::<f64>() < p).count() as u64,
            requests: n,
            failed: 0,
            client_fell_behind: false,
            queue_growing: false,
        }
    }

    fn run(capacity: f64, seed: u64, spec: SearchSpec) -> Search {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut s = Search::new(spec);
        for _ in 0..200 {
            match s.next() {
                Step::Done(_) => return s,
                Step::Measure { rate, .. } => {
                    let n = u64::from(s.spec.batch);
                    let batch = synthetic_batch(&mut rng, rate, capacity, n);
                    s.record(rate, batch);
                }
            }
        }
        panic!("the search did not end in 200 steps");
    }

    /// Where the synthetic curve crosses 90 %: 1/(1+e^(12(x-1))) = 0.9.
    fn truth(capacity: f64) -> f64 {
        capacity * (1.0 + (1.0f64 / 9.0).ln() / 12.0)
    }

    #[test]
    fn converges_within_tolerance_in_few_probes() {
        for (i, capacity) in [0.7, 3.3, 12.0, 47.0, 150.0].iter().enumerate() {
            for seed in 0..20 {
                let s = run(*capacity, seed * 31 + i as u64, spec());
                let Step::Done(Ending::Bracketed { pass, fail }) = s.next() else {
                    panic!("capacity {capacity}: {:?}", s.next());
                };
                assert!((fail - pass) / pass <= 0.05 + 1e-9, "{pass} {fail}");
                // The truth lies in the bracket widened by the noise the intervals allow.
                let t = truth(*capacity);
                assert!(
                    pass <= t * 1.08 && t <= fail * 1.08,
                    "capacity {capacity} seed {seed}: truth {t} vs [{pass}, {fail}]"
                );
                assert!(s.probes.len() <= 16, "{} probes", s.probes.len());
                assert!(s.used <= 4000);
            }
        }
    }

    #[test]
    fn straddling_probes_get_more_requests_up_to_the_cap() {
        let mut s = Search::new(spec());
        // 88 of 100 at the start: the interval (80-93 %) straddles 90 %.
        let batch = BatchOutcome {
            met: 88,
            requests: 100,
            failed: 0,
            client_fell_behind: false,
            queue_growing: false,
        };
        s.record(1.0, batch);
        assert_eq!(
            s.next(),
            Step::Measure {
                rate: 1.0,
                batch: 2
            }
        );
        for _ in 0..3 {
            s.record(1.0, batch);
        }
        // 352 of 400 (88 %, 84.4-91.0 %) still straddles: forced by the point estimate.
        let p = &s.probes[0];
        assert_eq!(
            (p.batches, p.verdict, p.forced),
            (4, Some(Verdict::Fail), true)
        );
        assert_eq!(
            s.next(),
            Step::Measure {
                rate: 0.5,
                batch: 1
            }
        );
    }

    #[test]
    fn a_saturated_probe_fails_at_once_and_the_search_halves() {
        let mut s = Search::new(spec());
        s.record(
            1.0,
            BatchOutcome {
                met: 99,
                requests: 100,
                failed: 0,
                client_fell_behind: true,
                queue_growing: false,
            },
        );
        assert!(s.probes[0].saturated);
        assert_eq!(s.probes[0].verdict, Some(Verdict::Fail));
        assert_eq!(
            s.next(),
            Step::Measure {
                rate: 0.5,
                batch: 1
            }
        );
    }

    #[test]
    fn the_budget_and_the_limits_end_it() {
        let mut tight = spec();
        tight.budget = 250;
        let s = run(100.0, 1, tight);
        assert!(
            matches!(s.next(), Step::Done(Ending::BudgetSpent { .. })),
            "{:?}",
            s.next()
        );
        assert!(s.used <= 250);
        let s = run(10_000.0, 1, spec());
        assert_eq!(s.next(), Step::Done(Ending::AboveMax { pass: 256.0 }));
        let s = run(0.001, 1, spec());
        assert!(
            matches!(s.next(), Step::Done(Ending::BelowMin { .. })),
            "{:?}",
            s.next()
        );
    }

    /// A scripted server: 97 of 100 up to 10 req/s, 60 from 10.6; in between the first batch
    /// at a rate is lucky (96) and later ones are not (80, 82, ...).
    fn scripted(rate: f64, batch_no: u32) -> u64 {
        match rate {
            r if r <= 10.0 => 97,
            r if r < 10.6 => {
                if batch_no == 1 {
                    96
                } else {
                    81
                }
            }
            _ => 60,
        }
    }

    #[test]
    fn each_end_of_the_bracket_is_confirmed_with_another_seed_and_a_lucky_pass_moves_it() {
        let run = |confirm_batches: u32| {
            let mut s = Search::new(SearchSpec {
                start: 8.0,
                confirm_batches,
                ..spec()
            });
            let mut asked = Vec::new();
            while let Step::Measure { rate, batch: k } = s.next() {
                asked.push((rate, k));
                s.record(rate, batch(scripted(rate, k)));
            }
            (s, asked)
        };
        // Without confirmation a lucky first batch between 10 and 10.6 ends the search above
        // 10 (96 of 100 passes on its own: Wilson 90.2-98.4 %).
        let (single, _) = run(1);
        let Step::Done(Ending::Bracketed { pass, .. }) = single.next() else {
            panic!("{:?}", single.next());
        };
        assert!(pass > 10.0, "{:?}", single.probes);
        // With it, that end gets more seeds, fails on the pooled counts (e.g. 96 + 81 + 81 of
        // 300: 86 %, 81.6-89.4 %), and the bracket moves down to where passes are real.
        let (s, asked) = run(2);
        let Step::Done(Ending::Bracketed { pass, fail }) = s.next() else {
            panic!("{:?}", s.next());
        };
        assert!(
            pass <= 10.0 && fail > 10.0 && (fail - pass) / pass <= 0.05,
            "{asked:?}"
        );
        let lucky: Vec<&Probe> = s
            .probes
            .iter()
            .filter(|p| p.rate > 10.0 && p.rate < 10.6)
            .collect();
        assert!(
            !lucky.is_empty()
                && lucky
                    .iter()
                    .all(|p| p.batches >= 2 && p.verdict == Some(Verdict::Fail)),
            "{asked:?}"
        );
        // Both ends rest on two batches at least.
        for end in [pass, fail] {
            let p = s.probes.iter().find(|p| p.rate == end).unwrap();
            assert!(p.batches >= 2, "{end}: {asked:?}");
        }
    }

    /// Batches whose attainment shifts with their seed (a random logit offset per batch, as
    /// seen near capacity on the simulator) on a flat curve (attainment 93 % at 10 req/s, 84 %
    /// at 12): confirming the ends puts more searches within 5 % of the crossing and lowers
    /// the mean error, for a few more requests.
    #[test]
    fn confirmation_tightens_the_answer_when_batches_vary_beyond_binomial_noise() {
        let crossing = 10.0 * (1.0 + ((1.0f64 / 9.0).ln() + 2.5) / 5.0);
        let searches = |confirm_batches: u32| {
            let (mut within, mut error, mut used) = (0, 0.0, 0);
            for seed in 0..200u64 {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                let mut s = Search::new(SearchSpec {
                    confirm_batches,
                    budget: 3000,
                    ..spec()
                });
                while let Step::Measure { rate, .. } = s.next() {
                    let shift: f64 = rng.gen_range(-0.6..0.6);
                    let p = 1.0 / (1.0 + ((rate / 10.0 - 1.0) * 5.0 - 2.5 + shift).exp());
                    s.record(
                        rate,
                        batch((0..100).filter(|_| rng.gen::<f64>() < p).count() as u64),
                    );
                }
                let Step::Done(Ending::Bracketed { pass, fail }) = s.next() else {
                    panic!("seed {seed}: {:?}", s.next());
                };
                let e = ((pass + fail) / 2.0 - crossing).abs() / crossing;
                within += u32::from(e <= 0.05);
                error += e / 200.0;
                used += s.used / 200;
            }
            (within, error, used)
        };
        // Measured: 140 → 145 of 200 within 5 %, mean error 3.7 → 3.5 %, 1,562 → 1,705 requests.
        let (single, confirmed) = (searches(1), searches(2));
        assert!(
            confirmed.0 > single.0 && confirmed.1 < single.1 && confirmed.2 > single.2,
            "confirmed {confirmed:?} vs single {single:?}"
        );
    }

    #[test]
    fn the_same_measurements_give_the_same_steps() {
        // What --resume relies on: replaying the recorded batches reproduces the state.
        let a = run(9.0, 7, spec());
        let mut b = Search::new(spec());
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        while let Step::Measure { rate, .. } = b.next() {
            b.record(rate, synthetic_batch(&mut rng, rate, 9.0, 100));
        }
        assert_eq!(a.probes, b.probes);
        assert_eq!(round_rate(5.4321), 5.43);
        assert_eq!(round_rate(123.456), 123.0);
        assert_eq!(round_rate(0.012345), 0.0123);
    }
}
