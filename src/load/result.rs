//! The per-rate result file (`vllm-<rate>qps.json`): the contract between the load generator
//! (which writes it), `apply` (which places it in the run folder) and the report (which reads it).
//!
//! One JSON object carries three layers of keys, so every consumer finds what it knows:
//! - the original script suite's keys (`ttfts`, `tpots` in seconds, `model_name`, ...);
//! - `vllm bench serve --save-result --save-detailed` keys (same names and units);
//! - vbench's own section under `"vbench"`: raw per-request records and client health.
//!
//! The report computes everything from `vbench.requests` when present; the two legacy layers
//! exist for compatibility with other tools and are derived from the same records.

use crate::stats::Interval;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of the `vbench` section; bump when a field changes meaning.
pub const RESULT_FORMAT_VERSION: u32 = 1;

/// One result file (`vllm-<rate>qps.json`): one variant at one request rate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct RunResult {
    // --- the original suite's keys -------------------------------------------------------
    pub model_name: String,
    pub dataset_name: String,
    /// `simple`, `nixl`, `lmcache`, or `external` for `vbench bench` against a given URL.
    pub deployment_mode: String,
    pub num_prefill_instances: u32,
    pub num_decode_instances: u32,
    /// simple: TP of the instance; disaggregated: prefill TP (decode TP is `decoder_tp_size`).
    pub tensor_parallel_size: u32,
    pub prefiller_tp_size: u32,
    pub decoder_tp_size: u32,
    /// TTFT per request in seconds (failed requests: 0, as vLLM writes them; see `errors`).
    pub ttfts: Vec<f64>,
    /// TPOT per request in seconds (0 where undefined: failed or one output token).
    pub tpots: Vec<f64>,

    // --- vllm bench serve --save-result --save-detailed keys ------------------------------
    pub date: String,
    pub endpoint_type: String,
    pub backend: String,
    pub label: Option<String>,
    pub model_id: String,
    pub tokenizer_id: Option<String>,
    pub num_prompts: u64,
    /// Offered rate in requests/s; `"inf"` is written as the string "inf".
    #[schemars(schema_with = "request_rate_schema")]
    pub request_rate: serde_json::Value,
    /// Gamma shape of the arrivals (1 = Poisson); constant arrivals (infinite) are written as 0.
    pub burstiness: f64,
    pub max_concurrency: Option<u64>,
    /// Seconds from the first scheduled send to the last response end.
    pub duration: f64,
    pub completed: u64,
    pub failed: u64,
    pub total_input_tokens: u64,
    pub total_output_tokens: u64,
    /// Completed requests per second of `duration`.
    pub request_throughput: f64,
    /// Requests per second meeting the `--goodput` SLO; null when none was given.
    pub request_goodput: Option<f64>,
    /// Output tokens of completed requests per second.
    pub output_throughput: f64,
    pub total_token_throughput: f64,
    /// Prompt tokens per request.
    pub input_lens: Vec<u64>,
    /// Output tokens per request (failed: 0).
    pub output_lens: Vec<u64>,
    /// Inter-token latencies per request, seconds.
    pub itls: Vec<Vec<f64>>,
    /// End-to-end latency per request, seconds (failed: 0).
    pub latencies: Vec<f64>,
    /// Scheduled send offsets (seconds from run start).
    pub start_times: Vec<f64>,
    /// Empty string for a successful request, else the reason it failed.
    pub errors: Vec<String>,
    /// Summary statistics over successful requests, milliseconds (0 when there are none);
    /// the same holds for every `*_ms` key below.
    pub mean_ttft_ms: f64,
    pub median_ttft_ms: f64,
    pub std_ttft_ms: f64,
    pub p99_ttft_ms: f64,
    pub mean_tpot_ms: f64,
    pub median_tpot_ms: f64,
    pub std_tpot_ms: f64,
    pub p99_tpot_ms: f64,
    pub mean_itl_ms: f64,
    pub median_itl_ms: f64,
    pub std_itl_ms: f64,
    pub p99_itl_ms: f64,
    pub mean_e2el_ms: f64,
    pub median_e2el_ms: f64,
    pub std_e2el_ms: f64,
    pub p99_e2el_ms: f64,

    // --- vbench's own section --------------------------------------------------------------
    pub vbench: VbenchSection,
}

/// Everything vbench records beyond the compatibility keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct VbenchSection {
    pub format_version: u32,
    pub vbench_version: String,
    /// The deployment that served this run.
    pub deployment: DeploymentInfo,
    /// The load that was offered.
    pub load: LoadInfo,
    /// Health of the measuring client itself: did it keep to the schedule?
    pub client: ClientHealth,
    /// Raw per-request records, in request-index order; warm-up requests are not here.
    pub requests: Vec<RequestRecord>,
    /// The servers' waiting queues while the requests were sent (`apply` only: it samples
    /// the servers' `/metrics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_queue: Option<ServerQueue>,
    /// What the servers' KV caches reused of this cell's prompts, from their `/metrics`
    /// before and after it (`apply` only, when the servers export the counters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_reuse: Option<CacheReuse>,
    /// The KV transfers of a NIXL deployment during this cell, from the instances' own
    /// counters (`apply` only, when they export them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_transfer: Option<KvTransfer>,
    /// Each role's KV cache: its size, how full it got and how often it ran out (preempted
    /// requests) during this cell (`apply` only, when the servers export the metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_cache: Option<KvCache>,
    /// What each GPU of the deployment did while the cell ran (`apply` on local CUDA targets,
    /// from `nvidia-smi` once a second).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<GpuTelemetry>,
    /// 95 % intervals of this run's latencies and goodput (absent in results written before
    /// vbench computed them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervals: Option<Intervals>,
    /// The components that logged errors while the cell ran (`apply` only; none: absent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_errors: Vec<ComponentLogErrors>,
}

/// How sure this run's numbers are, each a 95 % interval over its successful requests
/// (docs/metrics.md): percentiles distribution-free (order statistics), means by Student's t.
/// ITL has none: the gaps of one request are not independent samples.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct Intervals {
    pub ttft_ms: LatencyIntervals,
    pub tpot_ms: LatencyIntervals,
    pub e2e_ms: LatencyIntervals,
    /// `request_goodput`'s, req/s: the Wilson interval of the share of requests that met every
    /// objective, times the requests over the duration (null without `--goodput`).
    pub request_goodput: Option<Interval>,
}

/// One latency's intervals, milliseconds; an open end where too few requests bound it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct LatencyIntervals {
    pub mean: Interval,
    pub p50: Interval,
    pub p99: Interval,
}

/// Error lines one component (an instance or the proxy) logged while a cell ran: vLLM's and
/// LMCache's `ERROR` level, Python tracebacks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct ComponentLogErrors {
    pub component: String,
    pub lines: u64,
    /// The first of them (colour codes removed, cut at 500 characters).
    pub first: String,
    /// Its log grew by more than vbench reads per cell (64 MiB): there may be more.
    #[serde(default)]
    pub at_least: bool,
}

/// One GPU during a cell (warm-up included), from `nvidia-smi --query-gpu` once a second. A
/// number the driver never gave is absent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct GpuTelemetry {
    /// CUDA index on its host.
    pub index: u32,
    /// Readings taken.
    pub samples: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub util_mean_pct: Option<f64>,
    /// The lowest and the mean SM clock read, and the GPU's maximum SM clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_clock_min_mhz: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_clock_mean_mhz: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_clock_max_mhz: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_mean_w: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_max_w: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp_max_c: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_used_max_mib: Option<f64>,
    /// Why the driver held the clocks below their maximum in any reading ("power cap",
    /// "hardware thermal slowdown", ...).
    #[serde(default)]
    pub slowdowns: Vec<String>,
    /// Compute processes on this GPU that were not the deployment's (listed every few
    /// seconds): the deployment shared the GPU.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_processes: Vec<GpuProcess>,
}

/// A compute process `nvidia-smi` listed on a GPU.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct GpuProcess {
    pub pid: u32,
    /// The most GPU memory it was seen holding.
    pub used_mib: u64,
}

impl GpuTelemetry {
    /// One GPU over two cells (repeats of a rate): means weighted by readings, the extremes
    /// of both, every slowdown seen.
    pub fn merged(&self, o: &GpuTelemetry) -> GpuTelemetry {
        let (a, b) = (f64::from(self.samples), f64::from(o.samples));
        let mean = |x: Option<f64>, y: Option<f64>| {
            combine(x, y, |x, y| {
                if a + b > 0.0 {
                    (x * a + y * b) / (a + b)
                } else {
                    x
                }
            })
        };
        let mut slowdowns = self.slowdowns.clone();
        for s in &o.slowdowns {
            if !slowdowns.contains(s) {
                slowdowns.push(s.clone());
            }
        }
        let mut other_processes = self.other_processes.clone();
        for p in &o.other_processes {
            match other_processes.iter_mut().find(|q| q.pid == p.pid) {
                Some(q) => q.used_mib = q.used_mib.max(p.used_mib),
                None => other_processes.push(p.clone()),
            }
        }
        GpuTelemetry {
            index: self.index,
            samples: self.samples + o.samples,
            util_mean_pct: mean(self.util_mean_pct, o.util_mean_pct),
            sm_clock_min_mhz: combine(self.sm_clock_min_mhz, o.sm_clock_min_mhz, f64::min),
            sm_clock_mean_mhz: mean(self.sm_clock_mean_mhz, o.sm_clock_mean_mhz),
            sm_clock_max_mhz: combine(self.sm_clock_max_mhz, o.sm_clock_max_mhz, f64::max),
            power_mean_w: mean(self.power_mean_w, o.power_mean_w),
            power_max_w: combine(self.power_max_w, o.power_max_w, f64::max),
            temp_max_c: combine(self.temp_max_c, o.temp_max_c, f64::max),
            memory_used_max_mib: combine(self.memory_used_max_mib, o.memory_used_max_mib, f64::max),
            slowdowns,
            other_processes,
        }
    }
}

/// Two optional numbers together by `f`; where one is missing, the other.
fn combine<T>(a: Option<T>, b: Option<T>, f: impl FnOnce(T, T) -> T) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, b) => a.or(b),
    }
}

/// Two cells' GPU lists together, GPU by GPU (a GPU on one side only is kept as it is).
pub fn merge_gpus(a: &[GpuTelemetry], b: &[GpuTelemetry]) -> Vec<GpuTelemetry> {
    let mut out = a.to_vec();
    for g in b {
        match out.iter_mut().find(|x| x.index == g.index) {
            Some(x) => *x = x.merged(g),
            None => out.push(g.clone()),
        }
    }
    out
}

/// NIXL's KV transfers during one cell: vLLM's `vllm:nixl_*` counters, deltas over the cell
/// (warm-up included), summed over the deployment's instances. A decoder counts the
/// transfers it pulled; a prefiller counts the requests whose KV it freed unread.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct KvTransfer {
    /// Instances whose counters were read.
    pub instances: u32,
    /// Transfers completed.
    pub transfers: f64,
    /// Bytes they moved.
    pub bytes: f64,
    /// Their durations summed, seconds (from the decoder's read request to its completion:
    /// waiting behind other transfers included).
    pub xfer_time_s: f64,
    /// The transfer-time histogram: [upper bound in seconds, transfers that took at most
    /// that], ascending; transfers above the last bound are the rest of `transfers`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xfer_time_buckets: Vec<[f64; 2]>,
    /// Failed transfers (handshakes and notifications included).
    pub failed_transfers: f64,
    pub failed_notifications: f64,
    /// Requests whose KV a prefiller freed before any decoder read it.
    pub expired_requests: f64,
    /// Completion notices for requests a prefiller no longer tracked: their blocks may have
    /// been reused while being read.
    pub notifications_after_expiry: f64,
}

impl KvTransfer {
    /// Mean transfer time, milliseconds (`None` without transfers).
    pub fn mean_xfer_ms(&self) -> Option<f64> {
        (self.transfers > 0.0).then(|| 1e3 * self.xfer_time_s / self.transfers)
    }

    /// Mean size of a transfer, bytes (`None` without transfers).
    pub fn mean_bytes(&self) -> Option<f64> {
        (self.transfers > 0.0).then(|| self.bytes / self.transfers)
    }

    /// Where the `q` quantile of transfer times lies, from the histogram: `Ok(b)` for at most
    /// `b` seconds, `Err(b)` for more than the last bound `b`; `None` without a histogram.
    pub fn xfer_quantile_bound_s(&self, q: f64) -> Option<Result<f64, f64>> {
        let last = self.xfer_time_buckets.last()?[0];
        if self.transfers <= 0.0 {
            return None;
        }
        Some(
            self.xfer_time_buckets
                .iter()
                .find(|[_, c]| *c >= q * self.transfers)
                .map(|[le, _]| *le)
                .ok_or(last),
        )
    }

    /// Two counts together (two instances of a cell, or two repeats of it): sums, and the
    /// histogram only where both sides' bounds agree (a side without one and without
    /// transfers adds nothing; any other mismatch drops it rather than mix bounds).
    pub fn merged(&self, o: &KvTransfer) -> KvTransfer {
        let bounds = |t: &KvTransfer| t.xfer_time_buckets.iter().map(|b| b[0]).collect::<Vec<_>>();
        let silent = |t: &KvTransfer| t.xfer_time_buckets.is_empty() && t.transfers == 0.0;
        let xfer_time_buckets = if bounds(self) == bounds(o) {
            self.xfer_time_buckets
                .iter()
                .zip(&o.xfer_time_buckets)
                .map(|(a, b)| [a[0], a[1] + b[1]])
                .collect()
        } else if silent(o) {
            self.xfer_time_buckets.clone()
        } else if silent(self) {
            o.xfer_time_buckets.clone()
        } else {
            Vec::new()
        };
        KvTransfer {
            instances: self.instances.max(o.instances),
            transfers: self.transfers + o.transfers,
            bytes: self.bytes + o.bytes,
            xfer_time_s: self.xfer_time_s + o.xfer_time_s,
            xfer_time_buckets,
            failed_transfers: self.failed_transfers + o.failed_transfers,
            failed_notifications: self.failed_notifications + o.failed_notifications,
            expired_requests: self.expired_requests + o.expired_requests,
            notifications_after_expiry: self.notifications_after_expiry
                + o.notifications_after_expiry,
        }
    }

    /// What went wrong, in words (`None` when nothing did).
    pub fn trouble(&self) -> Option<String> {
        let parts: Vec<String> = [
            (self.failed_transfers, "failed transfers"),
            (self.failed_notifications, "failed notifications"),
            (
                self.expired_requests,
                "requests whose KV expired on the prefiller before a decoder read it",
            ),
            (
                self.notifications_after_expiry,
                "completion notices after expiry (blocks possibly reused while read)",
            ),
        ]
        .iter()
        .filter(|(n, _)| *n > 0.0)
        .map(|(n, what)| format!("{n:.0} {what}"))
        .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// Prompt-token reuse during one cell: per role, the servers' own counters (deltas over the
/// cell, warm-up included, summed over the role's instances), and what the prompts allowed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct CacheReuse {
    /// One entry per role that reported counters: `instance` (simple and LMCache-less
    /// modes), `prefill`, `decode`.
    pub roles: Vec<RoleCacheReuse>,
    /// What a prefix cache that never evicts would have reused of the prompts sent, at the
    /// servers' block size; absent when vbench cannot know the prompts' tokens (chat
    /// requests, no tokenizer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ideal: Option<IdealReuse>,
}

impl CacheReuse {
    /// The role that computes prompts (`instance`, else `prefill`): where reuse saves work.
    pub fn computing(&self) -> Option<&RoleCacheReuse> {
        ["instance", "prefill"]
            .iter()
            .find_map(|r| self.roles.iter().find(|x| x.role == *r))
    }
}

/// One role's prompt tokens by where they came from (vLLM's
/// `prompt_tokens_by_source_total`, or, where a server lacks it, its prefix-cache counters).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct RoleCacheReuse {
    pub role: String,
    /// Instances of the role whose counters were read.
    pub instances: u32,
    pub prompt_tokens: f64,
    /// Computed by the instance (prefill work done).
    pub computed_tokens: f64,
    /// Found in the instance's own prefix cache.
    pub local_hit_tokens: f64,
    /// Brought by a KV connector: a NIXL transfer from a prefill, or LMCache.
    pub external_tokens: f64,
    /// Share of prompt tokens not computed here: (local + external) / prompt tokens.
    pub reused_share: f64,
    /// The prefix cache's own lookups and hits in tokens (`prefix_cache_{queries,hits}_total`).
    pub prefix_cache_queries: f64,
    pub prefix_cache_hits: f64,
}

/// The servers' KV caches during one cell, per role: what they hold (vLLM's
/// `cache_config_info`), how full they got (`kv_cache_usage_perc`, sampled every second) and
/// how often they ran out (`num_preemptions_total`, the delta over the cell, warm-up
/// included). A preempted request loses its KV and is computed again: its latency includes
/// that, and a rate with preemptions measured a server short of KV memory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct KvCache {
    /// One entry per role that reported: `instance`, `prefill`, `decode`, in that order.
    pub roles: Vec<RoleKvCache>,
}

impl KvCache {
    /// Preempted requests over every role (`None` when no role counted them).
    pub fn preemptions(&self) -> Option<f64> {
        self.roles
            .iter()
            .filter_map(|r| r.preemptions)
            .reduce(|a, b| a + b)
    }

    /// Two repeats of a cell together: preemptions summed, the higher peak, the smaller size
    /// (a role missing on one side is kept as the other side has it).
    pub fn merged(&self, o: &KvCache) -> KvCache {
        let mut roles = self.roles.clone();
        for b in &o.roles {
            match roles.iter_mut().find(|a| a.role == b.role) {
                Some(a) => *a = a.merged(b),
                None => roles.push(b.clone()),
            }
        }
        KvCache { roles }
    }
}

/// One role's KV cache during a cell.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct RoleKvCache {
    pub role: String,
    /// Instances of the role that reported.
    pub instances: u32,
    /// Tokens one instance's KV cache holds (the smallest among the role's instances).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_tokens: Option<u64>,
    /// vLLM's figure for one instance: requests of `max_model_len` tokens that fit at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_caching: Option<bool>,
    /// The highest use (0-1) any of the role's instances reported while the load ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_max: Option<f64>,
    /// Requests the role's instances preempted during the cell, summed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preemptions: Option<f64>,
}

impl RoleKvCache {
    /// Two counts of one role together (its instances, or two repeats): preemptions summed,
    /// the higher peak, the smaller size, the larger `instances` (right for repeats; a caller
    /// merging instances counts them itself).
    pub fn merged(&self, o: &RoleKvCache) -> RoleKvCache {
        RoleKvCache {
            role: self.role.clone(),
            instances: self.instances.max(o.instances),
            capacity_tokens: combine(self.capacity_tokens, o.capacity_tokens, u64::min),
            max_concurrency: combine(self.max_concurrency, o.max_concurrency, f64::min),
            prefix_caching: if self.prefix_caching == o.prefix_caching {
                self.prefix_caching
            } else {
                None
            },
            usage_max: combine(self.usage_max, o.usage_max, f64::max),
            preemptions: combine(self.preemptions, o.preemptions, |a, b| a + b),
        }
    }
}

/// What a prefix cache that never evicts would reuse if every request found every earlier
/// one's blocks (see `load::cache_reuse`): an upper bound, met when requests do not overlap.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct IdealReuse {
    /// The servers' KV block size in tokens (from `cache_config_info`).
    pub block_size: u32,
    /// Prompt tokens of the requests sent (warm-up included), as the tokenizer counts them.
    pub prompt_tokens: u64,
    /// Of those, tokens in leading full blocks an earlier request had.
    pub hit_tokens: u64,
}

impl IdealReuse {
    pub fn hit_share(&self) -> f64 {
        if self.prompt_tokens == 0 {
            0.0
        } else {
            self.hit_tokens as f64 / self.prompt_tokens as f64
        }
    }
}

/// The servers' waiting queues (`vllm:num_requests_waiting`, summed over instances, sampled
/// every second) over the window in which the requests were sent. A server queues arrivals
/// only once its running batch is full; a queue that keeps growing means the rate is past what
/// it drains.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct ServerQueue {
    /// From the first send to the last, seconds.
    pub window_s: f64,
    /// Samples per instance in the window (the most any instance had).
    pub samples: u32,
    /// Mean waiting requests over the window's first and last third.
    pub waiting_first_third: f64,
    pub waiting_last_third: f64,
    /// Waiting requests at the last sample in the window.
    pub waiting_end: f64,
    /// The last third's mean that counts as a pile-up: a twentieth of the batch, at least 5.
    pub threshold: f64,
    /// The queue piled up: the last third's mean reached `threshold` and more than doubled
    /// the first third's.
    pub growing: bool,
}

/// Which deployment produced a result; enough for labels, colours and per-GPU rates.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct DeploymentInfo {
    /// Stable variant id from the planner (`None` for `vbench bench` against a given URL).
    pub variant_id: Option<String>,
    /// `simple`, `nixl`, `lmcache` or `external`.
    pub mode: String,
    /// Human label, e.g. `nixl PF:2 D:1 TP:1x1`.
    pub label: String,
    /// GPUs (or CPU-instance slots) the deployment occupies; divides the rate for per-GPU plots.
    pub gpus: u32,
    /// True when the server was `vbench sim-serve`: every figure must say "simulated".
    pub simulated: bool,
    pub base_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct LoadInfo {
    /// `completions` or `chat`.
    pub api: String,
    /// `poisson`, `gamma` or `constant`.
    pub arrival: String,
    pub seed: u64,
    pub warmup: u64,
    /// Whether token counts came from server usage (`true`) or were estimated by the client.
    pub tokens_from_usage: bool,
    /// How the client counted dataset tokens: `tokenizer` or `estimated` (no tokenizer given:
    /// about 4 characters per token). Server usage, when present, overrides these counts.
    #[serde(default)]
    pub token_counts: Option<String>,
    /// The tokenizer file used, if any.
    #[serde(default)]
    pub tokenizer: Option<String>,
    /// Requests in the measured set (warm-up excluded).
    #[serde(default)]
    pub num_requests: u64,
    /// Per-request timeout in seconds.
    #[serde(default)]
    pub timeout_s: Option<f64>,
    #[serde(default)]
    pub ignore_eos: bool,
    /// Warm-up requests that failed (they are not in the results, but a user should know).
    #[serde(default)]
    pub warmup_failed: u64,
    /// Things the user should know about how the load was prepared (oversampling, estimates).
    #[serde(default)]
    pub notes: Vec<String>,
    /// What `apply` warned of while measuring this cell, as it printed it: requests
    /// preempted, KV that failed, expired or took longer than the TTFT objective, prefix-cache
    /// hits on a workload not built to reuse. The report lists them under their rate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Which repeat of its rate this file is (1-based); absent without repeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
    /// Set when the run was stopped before its schedule ended (`vbench bench` on Ctrl-C):
    /// the result covers the requests sent before the stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<StoppedEarly>,
}

/// A run stopped before its schedule ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub struct StoppedEarly {
    /// Requests the schedule held.
    pub planned: u64,
    /// Requests sent before the stop: the result's requests (multi-turn sessions: turns sent,
    /// and the later turns of sessions a failed turn ended, which count as failed).
    pub sent: u64,
    /// Of those, the ones still in flight when vbench stopped waiting (a second stop); they
    /// are counted as failed (`abandoned`).
    pub abandoned: u64,
}

impl StoppedEarly {
    /// One line for warnings and summaries.
    pub fn describe(&self) -> String {
        let mut line = format!(
            "the run was stopped after {} of its {} requests were sent; the result covers those {}",
            self.sent, self.planned, self.sent
        );
        if self.abandoned > 0 {
            line.push_str(&format!(
                ", {} of them abandoned in flight and counted as failed",
                self.abandoned
            ));
        }
        line
    }
}

/// How well the client kept to its schedule. A run whose client fell behind measured the
/// client, not the server; the report flags it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct ClientHealth {
    /// Requests actually sent per second over the send window (multi-turn sessions: session
    /// starts, like `offered_rate`).
    pub achieved_rate: f64,
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_max_ms: f64,
    /// True when `lag_p99_ms` exceeded `lag_threshold_ms`.
    pub client_fell_behind: bool,
    pub lag_threshold_ms: f64,
    /// Requests per second the schedule asked for: n / last scheduled offset (multi-turn
    /// sessions: session starts per second, since later turns wait for answers).
    #[serde(default)]
    pub offered_rate: Option<f64>,
    /// p99 of (dispatcher wake-up - scheduled instant): the timer's own lag, without the wait
    /// for a `max_concurrency` slot. `client_fell_behind` uses this one when a cap is set.
    #[serde(default)]
    pub dispatch_lag_p99_ms: Option<f64>,
    /// Whether the thread that sends on schedule ran at real-time priority (it asks for it;
    /// it gets it as root or with CAP_SYS_NICE / RLIMIT_RTPRIO). Without it, a busy client
    /// core shows as more lag.
    #[serde(default)]
    pub dispatcher_realtime: Option<bool>,
    /// Share of response reads timed by the kernel's receive stamp rather than by when the
    /// client got to read them (see `load::net`); None for the reqwest transport.
    #[serde(default)]
    pub kernel_stamped_share: Option<f64>,
    /// How long received bytes waited in the socket before the client read them: p99 over
    /// requests of each request's longest wait. With kernel stamps this wait is not in the
    /// latencies; it shows how busy the client was.
    #[serde(default)]
    pub read_wait_p99_ms: Option<f64>,
    #[serde(default)]
    pub read_wait_max_ms: Option<f64>,
    /// CPU seconds (user + system) the client process used during the measured run.
    #[serde(default)]
    pub cpu_s: Option<f64>,
    /// Peak resident memory of the client process so far, MiB.
    #[serde(default)]
    pub max_rss_mib: Option<f64>,
}

/// One request, raw. All times are seconds; offsets are from the run's start instant.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct RequestRecord {
    /// Position in the replayed request set (same index = same prompt across variants).
    pub index: u64,
    /// When the schedule said to send it.
    pub scheduled_s: f64,
    /// When it was actually sent (`sent_s - scheduled_s` is the client's lag).
    pub sent_s: f64,
    /// Time to first token measured from the scheduled instant (None if no token arrived).
    pub ttft_s: Option<f64>,
    /// End-to-end latency from the scheduled instant (None if the request failed).
    pub e2e_s: Option<f64>,
    /// Gaps between successive content chunks.
    pub itls_s: Vec<f64>,
    /// (e2e - ttft) / (output_tokens - 1); None when output_tokens < 2 or failed.
    pub tpot_s: Option<f64>,
    pub prompt_tokens: u64,
    pub output_tokens: u64,
    /// True: HTTP 200, at least one content chunk, and the stream ended properly.
    pub ok: bool,
    pub http_status: Option<u16>,
    /// Failure class (`http`, `connect`, `timeout`, `stream_cut`, `malformed`, ...;
    /// `session_ended`: a turn not sent because an earlier turn of its session failed).
    pub error_kind: Option<String>,
    pub error: Option<String>,
    /// Multi-turn sessions (`dataset.kind = "sessions"`): which session (0-based, the order
    /// sessions started in) this request is a turn of; absent for other workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<u64>,
    /// Multi-turn sessions: this request's turn in its session (1-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<u32>,
}

impl RequestRecord {
    /// TTFT measured from the actual send, the number a client without latency correction
    /// would report.
    pub fn ttft_from_send_s(&self) -> Option<f64> {
        self.ttft_s.map(|t| t - (self.sent_s - self.scheduled_s))
    }

    pub fn lag_s(&self) -> f64 {
        self.sent_s - self.scheduled_s
    }
}

/// `request_rate` is a number, or the string "inf" for all requests at once.
fn request_rate_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
    serde_json::from_value(serde_json::json!({
        "anyOf": [{ "type": "number" }, { "type": "string", "enum": ["inf"] }]
    }))
    .expect("a valid schema")
}

/// The schema of one result file (`schemas/result.schema.json`, `vbench schema --kind result`).
pub fn schema_json() -> String {
    let schema = schemars::gen::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<RunResult>();
    crate::manifest::schema::output_schema(
        serde_json::to_value(&schema).expect("schema serialises"),
        "vbench result file (vllm-<rate>qps.json)",
        "RunResult",
        // Left out when absent (`skip_serializing_if`): `repeat` without repeats, `warnings`
        // when there were none, `stopped_early` in a run that was not stopped, `server_queue`, `cache_reuse`, `kv_transfer` and `kv_cache` in
        // files not written by `apply`, `intervals` in files written before vbench computed
        // them, `ideal` and a KV cache's numbers where a server did
        // not say them, a transfer histogram a server did not export, a request's `session`
        // and `turn` outside multi-turn sessions.
        &[
            ("LoadInfo", "repeat"),
            ("LoadInfo", "warnings"),
            ("LoadInfo", "stopped_early"),
            ("VbenchSection", "server_queue"),
            ("VbenchSection", "cache_reuse"),
            ("VbenchSection", "kv_transfer"),
            ("VbenchSection", "kv_cache"),
            ("VbenchSection", "gpus"),
            ("VbenchSection", "log_errors"),
            ("VbenchSection", "intervals"),
            ("CacheReuse", "ideal"),
            ("RequestRecord", "session"),
            ("RequestRecord", "turn"),
        ]
        .iter()
        .chain(SERVER_SECTIONS_MAY_BE_ABSENT)
        .copied()
        .collect::<Vec<_>>(),
    )
}

/// The fields of the server-side sections (which summary.json carries too) that are left out
/// when a server did not say them (`skip_serializing_if`).
pub const SERVER_SECTIONS_MAY_BE_ABSENT: &[(&str, &str)] = &[
    ("KvTransfer", "xfer_time_buckets"),
    ("RoleKvCache", "capacity_tokens"),
    ("RoleKvCache", "max_concurrency"),
    ("RoleKvCache", "prefix_caching"),
    ("RoleKvCache", "usage_max"),
    ("RoleKvCache", "preemptions"),
    ("GpuTelemetry", "util_mean_pct"),
    ("GpuTelemetry", "sm_clock_min_mhz"),
    ("GpuTelemetry", "sm_clock_mean_mhz"),
    ("GpuTelemetry", "sm_clock_max_mhz"),
    ("GpuTelemetry", "power_mean_w"),
    ("GpuTelemetry", "power_max_w"),
    ("GpuTelemetry", "temp_max_c"),
    ("GpuTelemetry", "memory_used_max_mib"),
    ("GpuTelemetry", "other_processes"),
];
