//! Counters and histograms, exposed at /metrics in Prometheus text format under vLLM's names
//! (`vllm:*`), plus the simulator's own (`vbench_sim:*`).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::scheduler::Counters;

/// A Prometheus histogram with lock-free observation.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_ns: AtomicU64,
    count: AtomicU64,
    max_ns: AtomicU64,
}

/// vLLM's buckets for time to first token.
pub const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
/// vLLM's buckets for inter-token latency.
pub const ITL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
/// vLLM's buckets for end-to-end request latency.
pub const E2E_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];
/// Lateness of simulated steps against their schedule.
pub const LAG_BUCKETS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05];

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, seconds: f64) {
        let s = seconds.max(0.0);
        if let Some(i) = self.bounds.iter().position(|&b| s <= b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        let ns = (s * 1e9) as u64;
        self.sum_ns.fetch_add(ns, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.max_ns.fetch_max(ns, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    pub fn max_seconds(&self) -> f64 {
        self.max_ns.load(Relaxed) as f64 * 1e-9
    }

    pub fn mean_seconds(&self) -> f64 {
        let n = self.count();
        if n == 0 {
            0.0
        } else {
            self.sum_ns.load(Relaxed) as f64 * 1e-9 / n as f64
        }
    }

    /// Observations above `bound` seconds (`bound` must be one of the bucket bounds).
    pub fn count_above(&self, bound: f64) -> u64 {
        let mut below = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            if *b <= bound {
                below += c.load(Relaxed);
            }
        }
        self.count() - below
    }

    fn render(&self, out: &mut String, name: &str, help: &str, labels: &str) {
        let counts: Vec<u64> = self.counts.iter().map(|c| c.load(Relaxed)).collect();
        let sum = self.sum_ns.load(Relaxed) as f64 * 1e-9;
        write_histogram(
            out,
            (name, help, labels),
            self.bounds,
            &counts,
            self.count(),
            sum,
        );
    }
}

/// A histogram in Prometheus text: `counts` per finite bound (not cumulative), `total`
/// observations in all (the `+Inf` bucket), their `sum`.
fn write_histogram(
    out: &mut String,
    (name, help, labels): (&str, &str, &str),
    bounds: &[f64],
    counts: &[u64],
    total: u64,
    sum: f64,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    let mut cum = 0;
    for (b, c) in bounds.iter().zip(counts) {
        cum += c;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b:?}\"}} {cum}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum:?}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {total}");
}

/// Fault kinds counted in `vbench_sim:faults_injected_total{kind=...}`.
#[derive(Debug, Clone, Copy)]
pub enum FaultKind {
    Fail = 0,
    Cut = 1,
    Hang = 2,
    Unhealthy = 3,
}

const FAULT_NAMES: [&str; 4] = ["fail", "cut", "hang", "unhealthy"];

/// Everything the HTTP side counts.
#[derive(Debug)]
pub struct Metrics {
    pub ttft: Histogram,
    pub itl: Histogram,
    pub e2e: Histogram,
    pub step_lag: Histogram,
    pub requests_ok: AtomicU64,
    pub requests_bad: AtomicU64,
    pub faults: [AtomicU64; 4],
    /// Decode-role requests without usable kv_transfer_params (prefilled locally).
    pub decode_without_kv: AtomicU64,
    /// Requests whose kv_transfer_params were present but not valid.
    pub kv_params_invalid: AtomicU64,
    /// Decode-role requests whose prefill's NIXL side channel could not be reached.
    pub kv_side_channel_failures: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            ttft: Histogram::new(TTFT_BUCKETS),
            itl: Histogram::new(ITL_BUCKETS),
            e2e: Histogram::new(E2E_BUCKETS),
            step_lag: Histogram::new(LAG_BUCKETS),
            requests_ok: AtomicU64::new(0),
            requests_bad: AtomicU64::new(0),
            faults: Default::default(),
            decode_without_kv: AtomicU64::new(0),
            kv_params_invalid: AtomicU64::new(0),
            kv_side_channel_failures: AtomicU64::new(0),
        }
    }
}

/// The engine's state at its last step.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineSnapshot {
    pub running: usize,
    pub waiting: usize,
    pub kv_usage: f64,
    pub counters: Counters,
}

/// Escape a Prometheus label value.
pub fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The KV cache settings an instance reports in `cache_config_info`.
#[derive(Debug, Clone, Copy)]
pub struct CacheConfigInfo {
    pub block_size: u32,
    /// Tokens the whole instance holds (every TP rank together).
    pub capacity_tokens: u64,
    pub max_model_len: u32,
    pub prefix_caching: bool,
}

impl Metrics {
    pub fn fault(&self, kind: FaultKind) {
        self.faults[kind as usize].fetch_add(1, Relaxed);
    }

    /// The /metrics page.
    /// `nixl`: the instance is one end of a NIXL deployment (vLLM then exports its
    /// `vllm:nixl_*` metrics, zero on a prefiller).
    pub fn render(
        &self,
        snap: &EngineSnapshot,
        model: &str,
        cache: &CacheConfigInfo,
        nixl: bool,
    ) -> String {
        let labels = format!("engine=\"0\",model_name=\"{}\"", label_value(model));
        let mut o = String::with_capacity(8192);
        let gauge = |o: &mut String, name: &str, help: &str, v: f64| {
            let _ = writeln!(o, "# HELP {name} {help}");
            let _ = writeln!(o, "# TYPE {name} gauge");
            let _ = writeln!(o, "{name}{{{labels}}} {v:?}");
        };
        gauge(
            &mut o,
            "vllm:num_requests_running",
            "Number of requests in model execution batches.",
            snap.running as f64,
        );
        gauge(
            &mut o,
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed.",
            snap.waiting as f64,
        );
        gauge(
            &mut o,
            "vllm:kv_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage.",
            snap.kv_usage,
        );
        // vLLM's cache settings as labels of a constant gauge (the labels vLLM 0.26 and 0.32
        // both have): clients read the block size and the KV cache's size.
        let _ = writeln!(
            o,
            "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig"
        );
        let _ = writeln!(o, "# TYPE vllm:cache_config_info gauge");
        let CacheConfigInfo {
            block_size,
            capacity_tokens,
            max_model_len,
            prefix_caching,
        } = *cache;
        let _ = writeln!(
            o,
            "vllm:cache_config_info{{block_size=\"{block_size}\",cache_dtype=\"auto\",\
             enable_prefix_caching=\"{}\",engine=\"0\",kv_cache_max_concurrency=\"{:?}\",\
             kv_cache_size_tokens=\"{capacity_tokens}\",num_gpu_blocks=\"{}\"}} 1.0",
            if prefix_caching { "True" } else { "False" },
            capacity_tokens as f64 / f64::from(max_model_len.max(1)),
            capacity_tokens / u64::from(block_size.max(1)),
        );
        let counter = |o: &mut String, name: &str, help: &str, series: &[(&str, u64)]| {
            let _ = writeln!(o, "# HELP {name} {help}");
            let _ = writeln!(o, "# TYPE {name} counter");
            for (extra, v) in series {
                let _ = writeln!(o, "{name}{{{labels}{extra}}} {:?}", *v as f64);
            }
        };
        let c = &snap.counters;
        counter(
            &mut o,
            "vllm:prompt_tokens_total",
            "Number of prefill tokens processed.",
            &[(
                "",
                c.prompt_tokens_local + c.prompt_tokens_cached + c.prompt_tokens_external,
            )],
        );
        counter(
            &mut o,
            "vllm:prompt_tokens_by_source_total",
            "Number of prompt tokens by source.",
            &[
                (",source=\"local_compute\"", c.prompt_tokens_local),
                (",source=\"local_cache_hit\"", c.prompt_tokens_cached),
                (",source=\"external_kv_transfer\"", c.prompt_tokens_external),
            ],
        );
        counter(
            &mut o,
            "vllm:prefix_cache_queries_total",
            "Prefix cache queries, in terms of number of queried tokens.",
            &[("", c.prefix_cache_queries)],
        );
        counter(
            &mut o,
            "vllm:prefix_cache_hits_total",
            "Prefix cache hits, in terms of number of cached tokens.",
            &[("", c.prefix_cache_hits)],
        );
        counter(
            &mut o,
            "vllm:generation_tokens_total",
            "Number of generation tokens processed.",
            &[("", c.generation_tokens)],
        );
        counter(
            &mut o,
            "vllm:request_success_total",
            "Count of successfully processed requests.",
            &[(
                ",finished_reason=\"length\"",
                self.requests_ok.load(Relaxed),
            )],
        );
        counter(
            &mut o,
            "vllm:num_preemptions_total",
            "Cumulative number of preemption from the engine.",
            &[("", 0)],
        );
        self.ttft.render(
            &mut o,
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            &labels,
        );
        self.itl.render(
            &mut o,
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            &labels,
        );
        self.e2e.render(
            &mut o,
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            &labels,
        );
        if nixl {
            // vLLM's NIXL metrics from the simulated link; nothing fails here.
            use crate::sim::scheduler::NIXL_XFER_BUCKETS;
            write_histogram(
                &mut o,
                (
                    "vllm:nixl_xfer_time_seconds",
                    "Histogram of transfer duration for NIXL KV Cache transfers.",
                    &labels,
                ),
                &NIXL_XFER_BUCKETS,
                &c.kv_transfer_buckets[..NIXL_XFER_BUCKETS.len()],
                c.kv_transfers,
                c.kv_transfer_time_s,
            );
            write_histogram(
                &mut o,
                (
                    "vllm:nixl_bytes_transferred",
                    "Histogram of bytes transferred per NIXL KV Cache transfers.",
                    &labels,
                ),
                &[],
                &[],
                c.kv_transfers,
                c.kv_transfer_bytes as f64,
            );
            for (name, help) in [
                (
                    "vllm:nixl_num_failed_transfers_total",
                    "Number of failed NIXL KV Cache transfers.",
                ),
                (
                    "vllm:nixl_num_failed_notifications_total",
                    "Number of failed NIXL KV Cache notifications.",
                ),
                (
                    "vllm:nixl_num_kv_expired_reqs_total",
                    "Number of requests that had their KV expire.",
                ),
            ] {
                counter(&mut o, name, help, &[("", 0)]);
            }
        }
        counter(
            &mut o,
            "vbench_sim:kv_transfers_total",
            "KV transfers received from a remote prefill (simulated).",
            &[("", c.kv_transfers)],
        );
        counter(
            &mut o,
            "vbench_sim:decode_without_kv_transfer_total",
            "Decode-role requests without usable kv_transfer_params, prefilled locally.",
            &[("", self.decode_without_kv.load(Relaxed))],
        );
        counter(
            &mut o,
            "vbench_sim:kv_transfer_params_invalid_total",
            "Requests whose kv_transfer_params were present but unusable.",
            &[("", self.kv_params_invalid.load(Relaxed))],
        );
        counter(
            &mut o,
            "vbench_sim:kv_side_channel_failures_total",
            "Decode-role requests whose prefill's NIXL side channel did not answer (prefilled \
             locally).",
            &[("", self.kv_side_channel_failures.load(Relaxed))],
        );
        counter(
            &mut o,
            "vbench_sim:requests_rejected_total",
            "Requests answered with a 4xx error.",
            &[("", self.requests_bad.load(Relaxed))],
        );
        let faults: Vec<(String, u64)> = FAULT_NAMES
            .iter()
            .zip(&self.faults)
            .map(|(n, v)| (format!(",kind=\"{n}\""), v.load(Relaxed)))
            .collect();
        let faults: Vec<(&str, u64)> = faults.iter().map(|(s, v)| (s.as_str(), *v)).collect();
        counter(
            &mut o,
            "vbench_sim:faults_injected_total",
            "Faults injected on purpose.",
            &faults,
        );
        counter(
            &mut o,
            "vbench_sim:steps_total",
            "Engine steps run.",
            &[("", c.steps)],
        );
        self.step_lag.render(
            &mut o,
            "vbench_sim:step_lag_seconds",
            "How late each simulated step ended against its schedule.",
            &labels,
        );
        gauge(
            &mut o,
            "vbench_sim:step_lag_max_seconds",
            "Latest any simulated step ended against its schedule.",
            self.step_lag.max_seconds(),
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_counts_are_cumulative_and_complete() {
        let h = Histogram::new(LAG_BUCKETS);
        h.observe(0.00005);
        h.observe(0.003);
        h.observe(1.0);
        let mut s = String::new();
        h.render(&mut s, "x", "help", "a=\"b\"");
        assert!(s.contains("x_bucket{a=\"b\",le=\"0.0001\"} 1"), "{s}");
        assert!(s.contains("x_bucket{a=\"b\",le=\"0.005\"} 2"), "{s}");
        assert!(s.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3"), "{s}");
        assert_eq!(h.count_above(0.001), 2);
    }
}
