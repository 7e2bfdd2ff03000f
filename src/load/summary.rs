//! From raw per-request records to the result file (all three layers of keys) and the human
//! summary. Statistics follow vLLM's `calculate_metrics`: latency figures over successful
//! requests (numpy's linear-interpolation percentiles, population std); failures are counted
//! and kept in the arrays with zeros plus an `errors` string, and stay in vbench's records.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::load::result::{Intervals, LatencyIntervals};
use crate::load::{ClientHealth, LoadInfo, RequestRecord, RunResult, VbenchSection};
use crate::stats::Interval;

use super::client::round_us;
use super::LoadSpec;

/// numpy.percentile with linear interpolation; `sorted` ascending, p in [0, 100].
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = p / 100.0 * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

/// mean, median, population std, p99 (zeros for an empty set, as vLLM writes them).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    pub mean: f64,
    pub median: f64,
    pub std: f64,
    pub p99: f64,
}

pub fn stats(values: &mut [f64]) -> Stats {
    if values.is_empty() {
        return Stats::default();
    }
    values.sort_by(f64::total_cmp);
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    Stats {
        mean,
        median: percentile(values, 50.0),
        std: var.sqrt(),
        p99: percentile(values, 99.0),
    }
}

/// Extra figures the runner measured about itself.
#[derive(Debug, Clone, Default)]
pub struct RunFacts {
    /// Seconds from run start to the last request's end.
    pub duration_s: f64,
    /// Dispatcher wake-up minus scheduled instant, seconds, per request.
    pub dispatch_lags_s: Vec<f64>,
    /// Per request (with kernel-stamped reads): the longest its bytes waited to be read, s.
    pub read_waits_s: Vec<f64>,
    /// Share of body reads timed by the kernel's receive stamp (None: no lean-path reads).
    pub kernel_stamped_share: Option<f64>,
    /// Whether the dispatcher thread ran at real-time priority.
    pub dispatcher_realtime: bool,
    pub tokens_from_usage: bool,
    pub warmup_failed: u64,
    pub cpu_s: Option<f64>,
    pub max_rss_mib: Option<f64>,
}

/// Build the result file from the records (in index order).
pub fn build_result(spec: &LoadSpec, records: Vec<RequestRecord>, facts: RunFacts) -> RunResult {
    let n = records.len();
    let ok: Vec<&RequestRecord> = records.iter().filter(|r| r.ok).collect();
    let completed = ok.len() as u64;
    let failed = n as u64 - completed;
    let duration = facts.duration_s.max(f64::MIN_POSITIVE);

    let mut ttft_samples: Vec<f64> = ok.iter().filter_map(|r| r.ttft_s).collect();
    let mut tpot_samples: Vec<f64> = ok.iter().filter_map(|r| r.tpot_s).collect();
    let mut itl_samples: Vec<f64> = ok.iter().flat_map(|r| r.itls_s.iter().copied()).collect();
    let mut e2e_samples: Vec<f64> = ok.iter().filter_map(|r| r.e2e_s).collect();
    let (ttft, tpot, itl, e2e) = (
        stats(&mut ttft_samples),
        stats(&mut tpot_samples),
        stats(&mut itl_samples),
        stats(&mut e2e_samples),
    );
    // Requests that met every goodput objective (None without objectives).
    let goodput_met = spec
        .goodput
        .map(|slo| records.iter().filter(|r| slo.met_by(r)).count() as u64);
    // `stats` sorted the samples.
    let intervals = Intervals {
        ttft_ms: latency_intervals(&ttft_samples),
        tpot_ms: latency_intervals(&tpot_samples),
        e2e_ms: latency_intervals(&e2e_samples),
        request_goodput: goodput_met
            .and_then(|met| crate::stats::wilson(met, n as u64, crate::stats::Z95))
            .map(|(lo, hi)| Interval {
                lo: Some(lo * n as f64 / duration),
                hi: Some(hi * n as f64 / duration),
            }),
    };

    let total =
        |count: fn(&&RequestRecord) -> u64| ok.iter().map(count).fold(0u64, u64::saturating_add);
    let total_input = total(|r| r.prompt_tokens);
    let total_output = total(|r| r.output_tokens);

    let mut lags: Vec<f64> = records.iter().map(|r| r.lag_s() * 1e3).collect();
    lags.sort_by(f64::total_cmp);
    let lag_p99 = percentile(&lags, 99.0);
    let mut dl: Vec<f64> = facts.dispatch_lags_s.iter().map(|l| l * 1e3).collect();
    dl.sort_by(f64::total_cmp);
    let dispatch_p99 = (!dl.is_empty()).then(|| percentile(&dl, 99.0));
    // With a concurrency cap, waiting for a slot is the user's choice, not the client falling
    // behind: judge the timer's own lag then.
    let judged = match (spec.max_concurrency, dispatch_p99) {
        (Some(_), Some(d)) => d,
        _ => lag_p99,
    };
    let mut waits: Vec<f64> = facts.read_waits_s.iter().map(|w| w * 1e3).collect();
    waits.sort_by(f64::total_cmp);
    // What the schedule fixed in advance: requests, or a session's first turn (its later
    // turns follow their answers), so that the achieved rate compares with the offered one.
    let scheduled_sends: Vec<f64> = records
        .iter()
        .filter(|r| r.turn.is_none_or(|t| t == 1))
        .map(|r| r.sent_s)
        .collect();
    let last_sent = scheduled_sends.iter().copied().fold(0.0, f64::max);
    let last_sched = spec.offsets.last().copied().unwrap_or(0.0);
    let client = ClientHealth {
        achieved_rate: if last_sent > 0.0 {
            scheduled_sends.len() as f64 / last_sent
        } else {
            0.0 // everything sent at t = 0 (rate inf): no send window to divide by
        },
        lag_p50_ms: percentile(&lags, 50.0),
        lag_p99_ms: lag_p99,
        lag_max_ms: lags.last().copied().unwrap_or(0.0),
        client_fell_behind: judged > spec.lag_threshold_ms,
        lag_threshold_ms: spec.lag_threshold_ms,
        // Sends the schedule fixed in advance: requests, or session starts.
        offered_rate: (last_sched > 0.0).then(|| spec.offsets.len() as f64 / last_sched),
        dispatch_lag_p99_ms: dispatch_p99,
        kernel_stamped_share: facts.kernel_stamped_share,
        dispatcher_realtime: Some(facts.dispatcher_realtime),
        read_wait_p99_ms: (!waits.is_empty()).then(|| percentile(&waits, 99.0)),
        read_wait_max_ms: waits.last().copied(),
        cpu_s: facts.cpu_s,
        max_rss_mib: facts.max_rss_mib,
    };

    let ms = |x: f64| x * 1e3;
    RunResult {
        model_name: spec.model.clone(),
        dataset_name: spec.dataset_name.clone(),
        deployment_mode: spec.deployment.mode.clone(),
        num_prefill_instances: spec.topology.num_prefill_instances,
        num_decode_instances: spec.topology.num_decode_instances,
        tensor_parallel_size: spec.topology.tensor_parallel_size,
        prefiller_tp_size: spec.topology.prefiller_tp_size,
        decoder_tp_size: spec.topology.decoder_tp_size,
        ttfts: records
            .iter()
            .map(|r| if r.ok { r.ttft_s.unwrap_or(0.0) } else { 0.0 })
            .collect(),
        tpots: records.iter().map(|r| r.tpot_s.unwrap_or(0.0)).collect(),
        date: chrono::Utc::now().format("%Y%m%d-%H%M%S").to_string(),
        endpoint_type: spec.api.vllm_backend().to_string(),
        backend: spec.api.vllm_backend().to_string(),
        label: spec.label.clone(),
        model_id: spec.model.clone(),
        tokenizer_id: spec.tokenizer_id.clone(),
        num_prompts: n as u64,
        request_rate: if spec.request_rate.is_finite() {
            serde_json::json!(spec.request_rate)
        } else {
            serde_json::json!("inf")
        },
        // JSON has no infinity: constant arrivals (no gamma draw) are written as 0; the
        // authoritative name is vbench.load.arrival.
        burstiness: if spec.burstiness.is_finite() {
            spec.burstiness
        } else {
            0.0
        },
        max_concurrency: spec.max_concurrency.map(|c| c as u64),
        duration,
        completed,
        failed,
        total_input_tokens: total_input,
        total_output_tokens: total_output,
        request_throughput: completed as f64 / duration,
        request_goodput: goodput_met.map(|met| met as f64 / duration),
        output_throughput: total_output as f64 / duration,
        total_token_throughput: (total_input + total_output) as f64 / duration,
        input_lens: records.iter().map(|r| r.prompt_tokens).collect(),
        output_lens: records
            .iter()
            .map(|r| if r.ok { r.output_tokens } else { 0 })
            .collect(),
        itls: records
            .iter()
            .map(|r| if r.ok { r.itls_s.clone() } else { Vec::new() })
            .collect(),
        latencies: records.iter().map(|r| r.e2e_s.unwrap_or(0.0)).collect(),
        start_times: records.iter().map(|r| r.scheduled_s).collect(),
        errors: records
            .iter()
            .map(|r| r.error.clone().unwrap_or_default())
            .collect(),
        mean_ttft_ms: ms(ttft.mean),
        median_ttft_ms: ms(ttft.median),
        std_ttft_ms: ms(ttft.std),
        p99_ttft_ms: ms(ttft.p99),
        mean_tpot_ms: ms(tpot.mean),
        median_tpot_ms: ms(tpot.median),
        std_tpot_ms: ms(tpot.std),
        p99_tpot_ms: ms(tpot.p99),
        mean_itl_ms: ms(itl.mean),
        median_itl_ms: ms(itl.median),
        std_itl_ms: ms(itl.std),
        p99_itl_ms: ms(itl.p99),
        mean_e2el_ms: ms(e2e.mean),
        median_e2el_ms: ms(e2e.median),
        std_e2el_ms: ms(e2e.std),
        p99_e2el_ms: ms(e2e.p99),
        vbench: VbenchSection {
            format_version: crate::load::result::RESULT_FORMAT_VERSION,
            vbench_version: env!("CARGO_PKG_VERSION").to_string(),
            deployment: spec.deployment.clone(),
            load: LoadInfo {
                api: spec.api.name().to_string(),
                arrival: spec.arrival_name.clone(),
                seed: spec.seed,
                warmup: spec.warmup as u64,
                tokens_from_usage: facts.tokens_from_usage,
                token_counts: Some(spec.token_counts.clone()),
                tokenizer: spec.tokenizer_id.clone(),
                num_requests: n as u64,
                timeout_s: Some(round_us(spec.timeout.as_secs_f64())),
                ignore_eos: spec.ignore_eos,
                warmup_failed: facts.warmup_failed,
                notes: spec.notes.clone(),
                warnings: Vec::new(),
                repeat: spec.repeat,
                stopped_early: None,
            },
            client,
            requests: records,
            server_queue: None,
            cache_reuse: None,
            kv_transfer: None,
            kv_cache: None,
            gpus: Vec::new(),
            log_errors: Vec::new(),
            intervals: Some(intervals),
        },
    }
}

/// `  (95 %: 9.8-10.4)` after a number; an open end as `≥`/`≤`; nothing without an interval.
fn interval_text(i: Option<Interval>) -> String {
    match i.map(|i| (i.lo, i.hi)) {
        Some((Some(lo), Some(hi))) => format!("  (95 %: {lo:.2}-{hi:.2})"),
        Some((Some(lo), None)) => format!("  (95 %: ≥ {lo:.2})"),
        Some((None, Some(hi))) => format!("  (95 %: ≤ {hi:.2})"),
        _ => String::new(),
    }
}

/// A latency's 95 % intervals from its sorted samples (seconds), in milliseconds.
fn latency_intervals(sorted_s: &[f64]) -> LatencyIntervals {
    let ms = |i: Interval| i.scaled(1e3);
    LatencyIntervals {
        mean: ms(match crate::stats::mean_interval(sorted_s) {
            Some((lo, hi)) => Interval {
                lo: Some(lo),
                hi: Some(hi),
            },
            None => Interval { lo: None, hi: None },
        }),
        p50: ms(crate::stats::quantile_interval(sorted_s, 0.50)),
        p99: ms(crate::stats::quantile_interval(sorted_s, 0.99)),
    }
}

/// The human summary printed after a run (vLLM's block, plus client health and failures).
pub fn human_summary(r: &RunResult) -> String {
    let mut s = String::new();
    let c = &r.vbench.client;
    // A number, and after its column how sure it is (when that is known).
    let line_with = |s: &mut String, k: &str, v: String, interval: String| {
        let _ = writeln!(s, "{k:<40}{v:>12}{interval}");
    };
    let line = |s: &mut String, k: &str, v: String| line_with(s, k, v, String::new());
    let _ = writeln!(s, "{:=^52}", " vbench load result ");
    line(&mut s, "Successful requests:", r.completed.to_string());
    line(&mut s, "Failed requests:", r.failed.to_string());
    line(&mut s, "Duration (s):", format!("{:.2}", r.duration));
    line(
        &mut s,
        "Request rate offered (req/s):",
        match &r.request_rate {
            serde_json::Value::String(x) => x.clone(),
            v => format!("{:.2}", v.as_f64().unwrap_or(0.0)),
        },
    );
    line(
        &mut s,
        "Request rate sent (req/s):",
        format!("{:.2}", c.achieved_rate),
    );
    line(
        &mut s,
        "Request throughput (req/s):",
        format!("{:.2}", r.request_throughput),
    );
    if let Some(g) = r.request_goodput {
        let range = r.vbench.intervals.as_ref().and_then(|i| i.request_goodput);
        line_with(
            &mut s,
            "Request goodput (req/s):",
            format!("{g:.2}"),
            interval_text(range),
        );
    }
    line(
        &mut s,
        "Output token throughput (tok/s):",
        format!("{:.2}", r.output_throughput),
    );
    line(
        &mut s,
        "Total input tokens:",
        r.total_input_tokens.to_string(),
    );
    line(
        &mut s,
        "Total output tokens:",
        format!(
            "{}{}",
            r.total_output_tokens,
            if r.vbench.load.tokens_from_usage {
                ""
            } else {
                " (est.)"
            }
        ),
    );
    let iv = r.vbench.intervals.as_ref();
    for (name, mean, median, p99, range) in [
        (
            "TTFT",
            r.mean_ttft_ms,
            r.median_ttft_ms,
            r.p99_ttft_ms,
            iv.map(|i| i.ttft_ms),
        ),
        (
            "TPOT",
            r.mean_tpot_ms,
            r.median_tpot_ms,
            r.p99_tpot_ms,
            iv.map(|i| i.tpot_ms),
        ),
        ("ITL", r.mean_itl_ms, r.median_itl_ms, r.p99_itl_ms, None),
        (
            "E2E",
            r.mean_e2el_ms,
            r.median_e2el_ms,
            r.p99_e2el_ms,
            iv.map(|i| i.e2e_ms),
        ),
    ] {
        let _ = writeln!(s, "{:-^52}", format!(" {name} (ms, from schedule) "));
        let of = |pick: fn(&LatencyIntervals) -> Interval| interval_text(range.map(|r| pick(&r)));
        line_with(
            &mut s,
            &format!("Mean {name}:"),
            format!("{mean:.2}"),
            of(|r| r.mean),
        );
        line_with(
            &mut s,
            &format!("Median {name}:"),
            format!("{median:.2}"),
            of(|r| r.p50),
        );
        line_with(
            &mut s,
            &format!("P99 {name}:"),
            format!("{p99:.2}"),
            of(|r| r.p99),
        );
    }
    let _ = writeln!(s, "{:-^52}", " client health ");
    line(
        &mut s,
        "Schedule lag p50 / p99 / max (ms):",
        format!(
            "{:.2} / {:.2} / {:.2}",
            c.lag_p50_ms, c.lag_p99_ms, c.lag_max_ms
        ),
    );
    if let (Some(share), Some(p99), Some(max)) = (
        c.kernel_stamped_share,
        c.read_wait_p99_ms,
        c.read_wait_max_ms,
    ) {
        line(
            &mut s,
            "Read wait p99 / max (ms):",
            format!(
                "{p99:.2} / {max:.2}  ({:.0} % of reads kernel-stamped)",
                share * 100.0
            ),
        );
    }
    if let Some(wait) = c
        .read_wait_p99_ms
        .filter(|w| *w > r.median_tpot_ms && r.median_tpot_ms > 0.0)
    {
        let _ = writeln!(
            s,
            "NOTE: received bytes waited up to {wait:.2} ms (p99) to be read, longer than the \
             median time per output token ({:.2} ms): some tokens were read together and carry the \
             later one's arrival stamp, so ITLs (and a TTFT whose first token was batched) are \
             approximate. A less busy client (more --threads, a core of its own) avoids it.",
            r.median_tpot_ms
        );
    }
    if let Some(cpu) = c.cpu_s {
        line(&mut s, "Client CPU (s):", format!("{cpu:.2}"));
    }
    if c.client_fell_behind {
        let _ = writeln!(
            s,
            "WARNING: the client fell behind its schedule (lag p99 {:.2} ms > {:.2} ms): \
             latencies include the client's own delay",
            c.lag_p99_ms, c.lag_threshold_ms
        );
    }
    if r.failed > 0 {
        let mut kinds: BTreeMap<&str, (u64, &str)> = BTreeMap::new();
        for q in r.vbench.requests.iter().filter(|q| !q.ok) {
            let e = kinds
                .entry(q.error_kind.as_deref().unwrap_or("unknown"))
                .or_insert((0, q.error.as_deref().unwrap_or("")));
            e.0 += 1;
        }
        let _ = writeln!(s, "{:-^52}", " failures ");
        for (k, (count, example)) in kinds {
            let ex: String = example.chars().take(100).collect();
            let _ = writeln!(s, "{count:>8} {k}  (e.g. {ex})");
        }
    }
    for n in &r.vbench.load.notes {
        let _ = writeln!(s, "note: {n}");
    }
    for w in &r.vbench.load.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    let _ = writeln!(s, "{}", "=".repeat(52));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy_linear() {
        // np.percentile([1,2,3,4], 99) = 3.97; 50 -> 2.5
        let v = [1.0, 2.0, 3.0, 4.0];
        assert!((percentile(&v, 99.0) - 3.97).abs() < 1e-12);
        assert_eq!(percentile(&v, 50.0), 2.5);
        assert_eq!(percentile(&[], 50.0), 0.0);
        let mut w = vec![4.0, 1.0, 3.0, 2.0];
        let s = stats(&mut w);
        assert_eq!(s.mean, 2.5);
        assert!((s.std - 1.118_033_988_749_895).abs() < 1e-12);
    }
}
