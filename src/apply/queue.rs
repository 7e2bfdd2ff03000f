//! Whether requests piled up in the servers' waiting queues while a cell's requests were sent.
//! A vLLM server admits requests into its running batch until its sequence slots or its KV
//! cache are full; past that, arrivals wait, and in an open loop above capacity the wait queue
//! only grows. A short batch can still meet a lenient SLO before that shows in its latencies,
//! so the search counts such a batch as saturated. (Below the admission limit the queue stays
//! near zero however long requests take, so the signal does not confuse a slow server with an
//! overloaded one; a server that admits everything shows overload in its latencies instead.)

use std::collections::BTreeMap;

use crate::exec::metrics::Sample;
use crate::load::result::{RequestRecord, ServerQueue};

const WAITING: &str = "vllm:num_requests_waiting";

/// The waiting queues (summed over instances) over the send window, from the gauge samples.
/// `load_start_s` is when the load's clock started, on the samples' clock. `None` when fewer
/// than three samples fall in the window or no instance exports the gauge.
pub fn trend(
    samples: &[Sample],
    load_start_s: f64,
    records: &[RequestRecord],
) -> Option<ServerQueue> {
    let sends = records.iter().map(|r| r.sent_s);
    let first = sends.clone().fold(f64::INFINITY, f64::min);
    let last = sends.fold(f64::NEG_INFINITY, f64::max);
    if !(first.is_finite() && last.is_finite() && last > first) {
        return None;
    }
    let (from, to) = (load_start_s + first, load_start_s + last);
    let third = (to - from) / 3.0;
    // Each instance is its own series (one sample per instance per round).
    let mut by_instance: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.t_s >= from && s.t_s <= to) {
        if let Some(w) = s.gauges.get(WAITING) {
            by_instance
                .entry(&s.component)
                .or_default()
                .push((s.t_s, *w));
        }
    }
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let (mut early, mut late, mut end, mut count) = (0.0, 0.0, 0.0, 0usize);
    for series in by_instance.values() {
        let within = |lo: f64, hi: f64| -> Vec<f64> {
            series
                .iter()
                .filter(|(t, _)| *t >= lo && *t <= hi)
                .map(|(_, w)| *w)
                .collect()
        };
        early += mean(&within(from, from + third)).unwrap_or(0.0);
        late += mean(&within(to - third, to)).unwrap_or(0.0);
        end += series.last().map_or(0.0, |(_, w)| *w);
        count = count.max(series.len());
    }
    if count < 3 {
        return None;
    }
    let threshold = growth_threshold(records.len());
    Some(ServerQueue {
        window_s: to - from,
        samples: count as u32,
        waiting_first_third: early,
        waiting_last_third: late,
        waiting_end: end,
        threshold,
        growing: late >= threshold && late > 2.0 * early,
    })
}

/// The waiting requests over the window's last third that count as a pile-up: a twentieth of
/// the batch, at least 5.
fn growth_threshold(requests: usize) -> f64 {
    (requests as f64 / 20.0).max(5.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: usize, rate: f64) -> Vec<RequestRecord> {
        (0..n)
            .map(|i| {
                let t = i as f64 / rate;
                RequestRecord {
                    index: i as u64,
                    scheduled_s: t,
                    sent_s: t,
                    ttft_s: Some(0.1),
                    e2e_s: Some(1.0),
                    itls_s: Vec::new(),
                    tpot_s: None,
                    prompt_tokens: 10,
                    output_tokens: 1,
                    ok: true,
                    http_status: Some(200),
                    error_kind: None,
                    error: None,
                    session: None,
                    turn: None,
                }
            })
            .collect()
    }

    /// One sample a second for 40 s.
    fn samples(component: &str, waiting: impl Fn(f64) -> f64) -> Vec<Sample> {
        (0..40)
            .map(|k| {
                let t = k as f64;
                Sample {
                    t_s: t,
                    component: component.to_owned(),
                    gauges: [(WAITING.to_owned(), waiting(t))].into(),
                }
            })
            .collect()
    }

    #[test]
    fn a_queue_that_piles_up_during_the_sends_is_growing_and_a_passing_one_is_not() {
        // 200 requests at 10 req/s: sends over 19.9 s, the load's clock 2 s after sampling.
        let reqs = records(200, 10.0);
        // Past the admission limit from t = 8 s: +3 waiting per second.
        let piling = samples("serve-0", |t| 3.0 * (t - 8.0).max(0.0));
        let q = trend(&piling, 2.0, &reqs).unwrap();
        assert!(q.growing, "{q:?}");
        assert_eq!(q.threshold, 10.0);
        // Near capacity: a queue that comes and goes.
        let passing = samples("serve-0", |t| if (t as i64) % 4 == 0 { 8.0 } else { 0.0 });
        assert!(!trend(&passing, 2.0, &reqs).unwrap().growing);
        // A standing queue that does not grow.
        assert!(
            !trend(&samples("serve-0", |_| 30.0), 2.0, &reqs)
                .unwrap()
                .growing
        );
        // Two instances, each piling a little: summed, they pile up; one alone does not.
        let mut both = samples("prefill-0", |t| 0.6 * (t - 2.0).max(0.0));
        both.extend(samples("decode-0", |t| 0.6 * (t - 2.0).max(0.0)));
        assert!(trend(&both, 2.0, &reqs).unwrap().growing);
        assert!(!trend(&both[..40], 2.0, &reqs).unwrap().growing);
    }

    #[test]
    fn too_short_a_window_or_no_gauge_judges_nothing() {
        let piling = samples("s", |t| 10.0 * t);
        // Sends over 1.9 s: at most two samples in the window.
        assert!(trend(&piling, 0.0, &records(20, 10.0)).is_none());
        let mut blank = piling.clone();
        blank.iter_mut().for_each(|s| s.gauges.clear());
        assert!(trend(&blank, 0.0, &records(200, 10.0)).is_none());
    }
}
