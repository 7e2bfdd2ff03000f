//! SLO attainment, target crossings and goodput (DistServe's definitions, vLLM's conventions).
//!
//! - attainment(%) = 100 × met / **all** requests of the run; a failed request never meets any
//!   SLO and stays in the denominator.
//! - A successful request with fewer than two output tokens has no TPOT. As in vLLM's goodput
//!   (`benchmark_serving`: "if output_len <= 1, we regard tpot as 0 for goodput") it **meets**
//!   any TPOT SLO; it still has to meet the TTFT SLO. It is left out of TPOT percentiles.
//! - A crossing is found by linear interpolation between the two neighbouring points on either
//!   side of the target; when the curve never crosses, the answer says so
//!   ([`Crossing::AlwaysAbove`] / [`Crossing::NotReached`]) and no number is invented.
//! - Every function returns finite numbers or `None`; nothing here produces NaN.

use serde::Serialize;

use crate::report::import::Sample;

/// Which condition a request must meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum SloKind {
    /// TTFT and TPOT both met.
    Both,
    TtftOnly,
    TpotOnly,
}

impl SloKind {
    pub const ALL: [SloKind; 3] = [SloKind::Both, SloKind::TtftOnly, SloKind::TpotOnly];

    /// The short name used in file names (`_comparison_{name}`) and on the CLI.
    pub fn short(self) -> &'static str {
        match self {
            SloKind::Both => "both",
            SloKind::TtftOnly => "ttft",
            SloKind::TpotOnly => "tpot",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            SloKind::Both => "TTFT and TPOT",
            SloKind::TtftOnly => "TTFT only",
            SloKind::TpotOnly => "TPOT only",
        }
    }
}

/// The SLO thresholds (seconds) at scale 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Slo {
    pub ttft_s: f64,
    pub tpot_s: f64,
}

impl From<&crate::manifest::Slo> for Slo {
    fn from(slo: &crate::manifest::Slo) -> Self {
        Slo {
            ttft_s: slo.ttft_ms / 1e3,
            tpot_s: slo.tpot_ms / 1e3,
        }
    }
}

impl From<crate::manifest::SloType> for SloKind {
    fn from(t: crate::manifest::SloType) -> Self {
        match t {
            crate::manifest::SloType::Both => SloKind::Both,
            crate::manifest::SloType::Ttft => SloKind::TtftOnly,
            crate::manifest::SloType::Tpot => SloKind::TpotOnly,
        }
    }
}

/// Does this request meet the condition at SLO scale `scale`? The one definition of "meets
/// the SLO": the report's attainment and `apply`'s per-cell line both use it.
pub fn meets(sample: &Sample, slo: Slo, scale: f64, kind: SloKind) -> bool {
    if !sample.ok {
        return false;
    }
    let ttft_ok = sample.ttft_s.is_some_and(|t| t <= slo.ttft_s * scale);
    let tpot_ok = match sample.tpot_s {
        Some(t) => t <= slo.tpot_s * scale,
        // One output token: TPOT undefined, counted as met (vLLM's goodput convention).
        None => sample.output_tokens.is_some_and(|o| o <= 1),
    };
    match kind {
        SloKind::Both => ttft_ok && tpot_ok,
        SloKind::TtftOnly => ttft_ok,
        SloKind::TpotOnly => tpot_ok,
    }
}

impl From<&crate::load::RequestRecord> for Sample {
    fn from(r: &crate::load::RequestRecord) -> Self {
        Sample {
            ok: r.ok,
            ttft_s: r.ttft_s,
            tpot_s: r.tpot_s,
            e2e_s: r.e2e_s,
            output_tokens: Some(r.output_tokens),
            session_turn: r.session.zip(r.turn),
        }
    }
}

/// How many of `requests` meet the manifest's SLO (TTFT and TPOT, scale 1), as the report
/// counts them.
pub fn count_meeting(requests: &[crate::load::RequestRecord], slo: &crate::manifest::Slo) -> u64 {
    let slo = Slo::from(slo);
    requests
        .iter()
        .filter(|r| meets(&Sample::from(*r), slo, 1.0, SloKind::Both))
        .count() as u64
}

/// Multi-turn sessions' attainment: per turn index and per session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionAttainment {
    pub sessions: u64,
    /// Sessions every turn of which met the SLO.
    pub sessions_met: u64,
    /// Sessions with a failed turn (the turns after it are failed `session_ended` ones).
    pub sessions_failed: u64,
    /// (turn, requests, met), by turn index from 1.
    pub by_turn: Vec<(u32, u64, u64)>,
}

/// Attainment of multi-turn sessions (TTFT and TPOT at scale 1): per turn index over that
/// turn's requests, and per session: a session attains when every one of its turns met the
/// SLO, so a failed turn (and the `session_ended` turns after it) fails its session. `None`
/// when no sample belongs to a session.
pub fn session_attainment(samples: &[Sample], slo: Slo) -> Option<SessionAttainment> {
    use std::collections::BTreeMap;
    // session -> (all met, any failed); turn -> (requests, met)
    let mut sessions: BTreeMap<u64, (bool, bool)> = BTreeMap::new();
    let mut turns: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for s in samples {
        let Some((session, turn)) = s.session_turn else {
            continue;
        };
        let met = meets(s, slo, 1.0, SloKind::Both);
        let e = sessions.entry(session).or_insert((true, false));
        e.0 &= met;
        e.1 |= !s.ok;
        let t = turns.entry(turn).or_default();
        t.0 += 1;
        t.1 += u64::from(met);
    }
    (!sessions.is_empty()).then(|| SessionAttainment {
        sessions: sessions.len() as u64,
        sessions_met: sessions.values().filter(|(met, _)| *met).count() as u64,
        sessions_failed: sessions.values().filter(|(_, failed)| *failed).count() as u64,
        by_turn: turns.into_iter().map(|(t, (n, met))| (t, n, met)).collect(),
    })
}

/// Attainment in percent over all samples; `None` when there are no samples.
pub fn attainment(samples: &[Sample], slo: Slo, scale: f64, kind: SloKind) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let met = samples
        .iter()
        .filter(|s| meets(s, slo, scale, kind))
        .count();
    Some(100.0 * met as f64 / samples.len() as f64)
}

/// Attainment for all three kinds in one pass.
pub fn attainment3(samples: &[Sample], slo: Slo, scale: f64) -> Option<[f64; 3]> {
    if samples.is_empty() {
        return None;
    }
    let mut met = [0usize; 3];
    for s in samples {
        for (i, k) in SloKind::ALL.iter().enumerate() {
            if meets(s, slo, scale, *k) {
                met[i] += 1;
            }
        }
    }
    let n = samples.len() as f64;
    Some(met.map(|m| 100.0 * m as f64 / n))
}

/// Where a curve crosses the target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Crossing {
    /// Crosses at `x` (interpolated between `lo` and `hi`, the neighbouring measured points).
    At { x: f64, lo: f64, hi: f64 },
    /// Meets the target at every measured point; the true crossing lies beyond `edge`.
    AlwaysAbove { edge: f64 },
    /// Misses the target at every measured point; the true crossing lies beyond `edge`.
    NotReached { edge: f64 },
    /// No points.
    NoData,
}

impl Crossing {
    /// The interpolated value, when the curve really crosses.
    pub fn value(&self) -> Option<f64> {
        match self {
            Crossing::At { x, .. } => Some(*x),
            _ => None,
        }
    }

    /// For humans, with a unit: "3.42 req/s", "≥ 8 req/s (always above)", "not reached".
    /// An empty `unit` (an SLO scale, a bare multiplier) gives "2×".
    pub fn describe(&self, unit: &str, beyond: &str) -> String {
        let with_unit = |x: f64| match unit {
            "" => format!("{}×", fmt_num(x)),
            _ => format!("{} {unit}", fmt_num(x)),
        };
        match self {
            Crossing::At { x, .. } => with_unit(*x),
            Crossing::AlwaysAbove { edge } => {
                format!("always above ({beyond} {})", with_unit(*edge))
            }
            Crossing::NotReached { edge } => {
                format!("not reached (even at {})", with_unit(*edge))
            }
            Crossing::NoData => "no data".to_string(),
        }
    }
}

/// A compact number: 3 significant decimals, trailing zeros removed.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "-".to_string();
    }
    let s = if x.abs() >= 100.0 {
        format!("{x:.1}")
    } else if x.abs() >= 10.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    };
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// Linear interpolation of where the segment (x0,y0)–(x1,y1) reaches `target`.
fn interpolate(x0: f64, y0: f64, x1: f64, y1: f64, target: f64) -> f64 {
    if y1 == y0 {
        return x0;
    }
    let x = x0 + (target - y0) * (x1 - x0) / (y1 - y0);
    x.clamp(x0.min(x1), x0.max(x1))
}

/// Goodput: the highest rate meeting the target on an attainment-vs-rate curve.
///
/// `points` are (rate, attainment %) sorted by rate ascending. The answer interpolates between
/// the highest point meeting the target (attainment ≥ target) and the next point above it.
/// A curve that dips and recovers is judged by its last point meeting the target.
pub fn rate_crossing(points: &[(f64, f64)], target: f64) -> Crossing {
    let Some(last) = points.last() else {
        return Crossing::NoData;
    };
    match points.iter().rposition(|&(_, y)| y >= target) {
        None => Crossing::NotReached { edge: points[0].0 },
        Some(i) if i + 1 == points.len() => Crossing::AlwaysAbove { edge: last.0 },
        Some(i) => {
            let (x0, y0) = points[i];
            let (x1, y1) = points[i + 1];
            Crossing::At {
                x: interpolate(x0, y0, x1, y1, target),
                lo: x0,
                hi: x1,
            }
        }
    }
}

/// The tightest SLO scale still meeting the target, on an attainment-vs-scale curve.
///
/// `points` are (scale, attainment %) sorted by scale ascending (strict → loose). Interpolates
/// between the loosest point missing the target below the first point meeting it.
/// `AlwaysAbove { edge }`: even the tightest scale measured meets it; `NotReached { edge }`:
/// even the loosest misses it.
pub fn scale_crossing(points: &[(f64, f64)], target: f64) -> Crossing {
    if points.is_empty() {
        return Crossing::NoData;
    }
    // The tightest scale from which every looser scale meets the target.
    let Some(last_miss) = points.iter().rposition(|&(_, y)| y < target) else {
        return Crossing::AlwaysAbove { edge: points[0].0 };
    };
    if last_miss + 1 == points.len() {
        return Crossing::NotReached {
            edge: points[last_miss].0,
        };
    }
    let (x0, y0) = points[last_miss];
    let (x1, y1) = points[last_miss + 1];
    Crossing::At {
        x: interpolate(x0, y0, x1, y1, target),
        lo: x0,
        hi: x1,
    }
}

/// Percentile with linear interpolation between closest ranks (numpy's default, which vLLM
/// uses). `values` need not be sorted; `None` when empty. `p` in 0..=100.
pub fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable_by(f64::total_cmp);
    Some(percentile_sorted(values, p))
}

/// [`percentile`] on already sorted, non-empty data.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    if n == 1 {
        return sorted[0];
    }
    let rank = (p.clamp(0.0, 100.0) / 100.0) * (n - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    let frac = rank - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(ttft: f64, tpot: f64) -> Sample {
        Sample {
            ok: true,
            ttft_s: Some(ttft),
            tpot_s: Some(tpot),
            e2e_s: Some(ttft + tpot * 10.0),
            output_tokens: Some(11),
            session_turn: None,
        }
    }

    fn failed() -> Sample {
        Sample {
            ok: false,
            ttft_s: None,
            tpot_s: None,
            e2e_s: None,
            output_tokens: None,
            session_turn: None,
        }
    }

    const SLO: Slo = Slo {
        ttft_s: 0.125,
        tpot_s: 0.2,
    };

    #[test]
    fn attainment_counts_failures_in_the_denominator() {
        let s = vec![ok(0.1, 0.1), ok(0.2, 0.1), ok(0.1, 0.3), failed()];
        assert_eq!(attainment(&s, SLO, 1.0, SloKind::Both), Some(25.0));
        assert_eq!(attainment(&s, SLO, 1.0, SloKind::TtftOnly), Some(50.0));
        assert_eq!(attainment(&s, SLO, 1.0, SloKind::TpotOnly), Some(50.0));
        assert_eq!(
            attainment3(&s, SLO, 1.0),
            Some([25.0, 50.0, 50.0]),
            "one pass agrees"
        );
    }

    #[test]
    fn a_session_attains_only_when_every_turn_does() {
        let turn = |s: Sample, session: u64, turn: u32| Sample {
            session_turn: Some((session, turn)),
            ..s
        };
        let samples = vec![
            turn(ok(0.1, 0.1), 0, 1),
            turn(ok(0.1, 0.1), 0, 2),
            turn(ok(0.1, 0.1), 1, 1),
            turn(ok(0.5, 0.1), 1, 2), // slow second turn
            turn(ok(0.1, 0.1), 2, 1),
            turn(failed(), 2, 2), // failed: the session ended
            ok(0.1, 0.1),         // not a session's
        ];
        let a = session_attainment(&samples, SLO).unwrap();
        assert_eq!((a.sessions, a.sessions_met, a.sessions_failed), (3, 1, 1));
        assert_eq!(a.by_turn, [(1, 3, 3), (2, 3, 1)]);
        assert_eq!(session_attainment(&[ok(0.1, 0.1)], SLO), None);
    }

    #[test]
    fn all_failed_is_zero_not_nan() {
        let s = vec![failed(); 5];
        assert_eq!(attainment(&s, SLO, 10.0, SloKind::TtftOnly), Some(0.0));
        assert_eq!(attainment(&[], SLO, 1.0, SloKind::Both), None);
    }

    #[test]
    fn a_failed_request_with_zero_ttft_is_not_fast() {
        // vLLM writes ttft=0 for failures; the importer marks them !ok.
        let s = Sample {
            ok: false,
            ttft_s: Some(0.0),
            tpot_s: Some(0.0),
            e2e_s: Some(0.0),
            output_tokens: Some(0),
            session_turn: None,
        };
        assert!(!meets(&s, SLO, 1.0, SloKind::TtftOnly));
    }

    #[test]
    fn one_token_output_meets_tpot_but_still_needs_ttft() {
        let fast = Sample {
            ok: true,
            ttft_s: Some(0.05),
            tpot_s: None,
            e2e_s: Some(0.05),
            output_tokens: Some(1),
            session_turn: None,
        };
        let slow = Sample {
            ttft_s: Some(0.5),
            ..fast
        };
        assert!(meets(&fast, SLO, 1.0, SloKind::Both));
        assert!(meets(&slow, SLO, 1.0, SloKind::TpotOnly));
        assert!(!meets(&slow, SLO, 1.0, SloKind::Both));
        // Unknown token count and no TPOT: not counted as met.
        let unknown = Sample {
            output_tokens: None,
            ..fast
        };
        assert!(!meets(&unknown, SLO, 1.0, SloKind::TpotOnly));
    }

    #[test]
    fn slo_scale_loosens_both_thresholds() {
        let s = vec![ok(0.2, 0.3)];
        assert_eq!(attainment(&s, SLO, 1.0, SloKind::Both), Some(0.0));
        assert_eq!(attainment(&s, SLO, 1.6, SloKind::Both), Some(100.0));
        // Exactly on the threshold meets it.
        assert_eq!(attainment(&s, SLO, 1.5, SloKind::TpotOnly), Some(100.0));
    }

    #[test]
    fn rate_crossing_interpolates_between_neighbours() {
        let c = rate_crossing(&[(1.0, 100.0), (2.0, 95.0), (4.0, 85.0), (8.0, 10.0)], 90.0);
        assert_eq!(
            c,
            Crossing::At {
                x: 3.0,
                lo: 2.0,
                hi: 4.0
            }
        );
    }

    #[test]
    fn rate_crossing_reports_always_above_and_not_reached() {
        assert_eq!(
            rate_crossing(&[(1.0, 100.0), (2.0, 90.0)], 90.0),
            Crossing::AlwaysAbove { edge: 2.0 }
        );
        assert_eq!(
            rate_crossing(&[(1.0, 80.0), (2.0, 50.0)], 90.0),
            Crossing::NotReached { edge: 1.0 }
        );
        assert_eq!(rate_crossing(&[], 90.0), Crossing::NoData);
    }

    #[test]
    fn single_rate_is_above_or_not_reached_never_a_number() {
        assert_eq!(
            rate_crossing(&[(4.0, 95.0)], 90.0),
            Crossing::AlwaysAbove { edge: 4.0 }
        );
        assert_eq!(
            rate_crossing(&[(4.0, 50.0)], 90.0),
            Crossing::NotReached { edge: 4.0 }
        );
    }

    #[test]
    fn rate_crossing_with_a_dip_uses_the_highest_rate_meeting_the_target() {
        let c = rate_crossing(&[(1.0, 95.0), (2.0, 85.0), (3.0, 95.0), (4.0, 75.0)], 90.0);
        assert_eq!(
            c,
            Crossing::At {
                x: 3.25,
                lo: 3.0,
                hi: 4.0
            }
        );
    }

    #[test]
    fn ties_on_a_flat_segment_at_the_target_take_the_higher_rate() {
        // 90 at 2 and 3 (meets), then 80 at 4: crossing between 3 and 4.
        let c = rate_crossing(&[(1.0, 100.0), (2.0, 90.0), (3.0, 90.0), (4.0, 80.0)], 90.0);
        assert_eq!(c.value(), Some(3.0));
    }

    #[test]
    fn scale_crossing_is_the_tightest_scale_meeting_the_target() {
        let pts = [
            (0.4, 20.0),
            (0.6, 60.0),
            (0.8, 80.0),
            (1.0, 100.0),
            (2.0, 100.0),
        ];
        assert_eq!(
            scale_crossing(&pts, 90.0),
            Crossing::At {
                x: 0.9,
                lo: 0.8,
                hi: 1.0
            }
        );
        assert_eq!(
            scale_crossing(&[(0.5, 95.0), (1.0, 99.0)], 90.0),
            Crossing::AlwaysAbove { edge: 0.5 }
        );
        assert_eq!(
            scale_crossing(&[(0.5, 10.0), (1.0, 50.0)], 90.0),
            Crossing::NotReached { edge: 1.0 }
        );
    }

    #[test]
    fn percentiles_match_numpy_linear() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        // numpy.percentile([1,2,3,4], 50) == 2.5, 90 -> 3.7, 99 -> 3.97
        assert_eq!(percentile(&mut v, 50.0), Some(2.5));
        assert!((percentile(&mut v, 90.0).unwrap() - 3.7).abs() < 1e-12);
        assert!((percentile(&mut v, 99.0).unwrap() - 3.97).abs() < 1e-12);
        assert_eq!(percentile(&mut [7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&mut [], 50.0), None);
    }

    #[test]
    fn describe_never_prints_nan() {
        assert_eq!(
            Crossing::At {
                x: 3.0,
                lo: 2.0,
                hi: 4.0
            }
            .describe("req/s", "≥"),
            "3 req/s"
        );
        assert_eq!(
            Crossing::NotReached { edge: 1.0 }.describe("req/s", "≥"),
            "not reached (even at 1 req/s)"
        );
        assert_eq!(
            Crossing::NotReached { edge: 2.0 }.describe("", "≤"),
            "not reached (even at 2×)",
            "an SLO scale is a bare multiplier"
        );
        assert_eq!(fmt_num(f64::NAN), "-");
        assert_eq!(fmt_num(0.125), "0.125");
        assert_eq!(fmt_num(12.5), "12.5");
    }
}
