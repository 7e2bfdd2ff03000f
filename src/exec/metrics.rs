//! Server metrics around and during each rate: the full `/metrics` text of every instance
//! before and after, and the load gauges (running, waiting, KV-cache use) sampled every second,
//! so a reader can see queueing and KV pressure behind a latency curve.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Gauges worth following over time (both spellings of the KV-cache gauge across versions).
const GAUGES: &[&str] = &[
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",
];

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since sampling started.
    pub t_s: f64,
    pub component: String,
    pub gauges: BTreeMap<String, f64>,
}

/// Sum of every series of `name` in a Prometheus text exposition (labels ignored).
pub fn gauge_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if let Some(v) = sample_value(rest) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// The value of one sample line, from what follows its name: `{labels} value [timestamp]` or
/// ` value [timestamp]`. Finite values only: a server's NaN or Inf is no count vbench can add
/// up or compare.
fn sample_value(rest: &str) -> Option<f64> {
    let after = if rest.starts_with('{') {
        rest.rsplit_once('}')?.1
    } else {
        rest
    };
    let v: f64 = after.split_whitespace().next()?.parse().ok()?;
    v.is_finite().then_some(v)
}

/// Sum of the series of `name` whose labels include `label="value"`.
pub fn labelled_sum(text: &str, name: &str, label: &str, value: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let Some(labels) = rest.strip_prefix('{').and_then(parse_labels) else {
            continue;
        };
        if labels.get(label).map(String::as_str) != Some(value) {
            continue;
        }
        if let Some(v) = sample_value(rest) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// An instance's prompt-token counters since it started, or `None` when this vLLM does not
/// export them by source (`prompt_tokens_by_source_total`): without it a transfer cannot be
/// told from a local prefill.
pub async fn kv_sources(url: &str) -> Option<CacheCounters> {
    let text = fetch(&reqwest::Client::new(), url).await?;
    CacheCounters::read(&text).filter(|c| c.by_source)
}

async fn fetch(client: &reqwest::Client, url: &str) -> Option<String> {
    let r = client
        .get(format!("{url}/metrics"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    let body = crate::http_body::read_capped(r, crate::http_body::MAX_METRICS_BYTES)
        .await
        .ok()?;
    String::from_utf8(body).ok()
}

/// Each component's full `/metrics` text, by component (those that answered).
pub async fn snapshot(components: &[(String, String)]) -> BTreeMap<String, String> {
    let client = reqwest::Client::new();
    let mut texts = BTreeMap::new();
    for (name, url) in components {
        if let Some(text) = fetch(&client, url).await {
            texts.insert(name.clone(), text);
        }
    }
    texts
}

/// One instance's prompt-token counters over an interval (the difference of two `/metrics`
/// snapshots), in tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CacheCounters {
    pub prompt_tokens: f64,
    pub computed: f64,
    pub local_hit: f64,
    pub external: f64,
    pub prefix_cache_queries: f64,
    pub prefix_cache_hits: f64,
    /// Read from `prompt_tokens_by_source_total` (else from the prefix cache's counters).
    pub by_source: bool,
}

impl CacheCounters {
    /// The counters in one snapshot; `None` when the server exports neither the prompt tokens
    /// by source nor its prefix-cache counters (an older vLLM, another server).
    pub fn read(text: &str) -> Option<CacheCounters> {
        let by_source = "vllm:prompt_tokens_by_source_total";
        let queries = gauge_sum(text, "vllm:prefix_cache_queries_total");
        let hits = gauge_sum(text, "vllm:prefix_cache_hits_total");
        let source = |s: &str| labelled_sum(text, by_source, "source", s);
        let c = match gauge_sum(text, by_source) {
            Some(total) => CacheCounters {
                prompt_tokens: total,
                computed: source("local_compute").unwrap_or(0.0),
                local_hit: source("local_cache_hit").unwrap_or(0.0),
                external: source("external_kv_transfer").unwrap_or(0.0),
                prefix_cache_queries: queries.unwrap_or(0.0),
                prefix_cache_hits: hits.unwrap_or(0.0),
                by_source: true,
            },
            // Without the sources, the prefix cache's own counts: lookups are prompt tokens,
            // hits were not computed.
            None => {
                let (q, h) = (queries?, hits.unwrap_or(0.0));
                CacheCounters {
                    prompt_tokens: q,
                    computed: q - h,
                    local_hit: h,
                    external: 0.0,
                    prefix_cache_queries: q,
                    prefix_cache_hits: h,
                    by_source: false,
                }
            }
        };
        Some(c)
    }

    /// `after - before`, or `after` alone when `before` did not have the counters.
    pub fn delta(before: Option<&str>, after: &str) -> Option<CacheCounters> {
        let a = CacheCounters::read(after)?;
        let b = before.and_then(CacheCounters::read).unwrap_or_default();
        Some(CacheCounters {
            prompt_tokens: a.prompt_tokens - b.prompt_tokens,
            computed: a.computed - b.computed,
            local_hit: a.local_hit - b.local_hit,
            external: a.external - b.external,
            prefix_cache_queries: a.prefix_cache_queries - b.prefix_cache_queries,
            prefix_cache_hits: a.prefix_cache_hits - b.prefix_cache_hits,
            by_source: a.by_source,
        })
    }

    pub fn add(&mut self, o: &CacheCounters) {
        self.prompt_tokens += o.prompt_tokens;
        self.computed += o.computed;
        self.local_hit += o.local_hit;
        self.external += o.external;
        self.prefix_cache_queries += o.prefix_cache_queries;
        self.prefix_cache_hits += o.prefix_cache_hits;
    }
}

/// An instance's NIXL counters over an interval (vLLM's `vllm:nixl_*` metrics): the decoder
/// that pulls a prompt's KV records the transfer, the prefiller that held it records expiry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NixlCounters {
    /// Transfers completed (`nixl_xfer_time_seconds_count`).
    pub transfers: f64,
    /// Their time, summed (`nixl_xfer_time_seconds_sum`).
    pub xfer_time_s: f64,
    /// Bytes moved (`nixl_bytes_transferred_sum`).
    pub bytes: f64,
    /// The transfer-time histogram: (upper bound in seconds, cumulative count), ascending, the
    /// last bound infinite.
    pub xfer_buckets: Vec<(f64, f64)>,
    pub failed_transfers: f64,
    pub failed_notifications: f64,
    /// Requests whose KV the prefiller freed before a decoder read it.
    pub expired_requests: f64,
    /// Completion notices for requests no longer tracked: their blocks may have been reused
    /// while being read (vLLM 0.32 and later).
    pub notifications_after_expiry: f64,
}

impl NixlCounters {
    /// The counters in one snapshot; `None` when the server exports no NIXL metrics.
    pub fn read(text: &str) -> Option<NixlCounters> {
        let transfers = gauge_sum(text, "vllm:nixl_xfer_time_seconds_count");
        let expired = gauge_sum(text, "vllm:nixl_num_kv_expired_reqs_total");
        if transfers.is_none() && expired.is_none() {
            return None;
        }
        let counter = |name: &str| gauge_sum(text, name).unwrap_or(0.0);
        Some(NixlCounters {
            transfers: transfers.unwrap_or(0.0),
            xfer_time_s: counter("vllm:nixl_xfer_time_seconds_sum"),
            bytes: counter("vllm:nixl_bytes_transferred_sum"),
            xfer_buckets: histogram_buckets(text, "vllm:nixl_xfer_time_seconds_bucket"),
            failed_transfers: counter("vllm:nixl_num_failed_transfers_total"),
            failed_notifications: counter("vllm:nixl_num_failed_notifications_total"),
            expired_requests: expired.unwrap_or(0.0),
            notifications_after_expiry: counter("vllm:nixl_num_notifications_after_expiry_total"),
        })
    }

    /// `after - before`, or `after` alone when `before` did not have the counters.
    pub fn delta(before: Option<&str>, after: &str) -> Option<NixlCounters> {
        let a = NixlCounters::read(after)?;
        let b = before.and_then(NixlCounters::read).unwrap_or_default();
        let before_bucket = |le: f64| {
            b.xfer_buckets
                .iter()
                .find(|(l, _)| *l == le)
                .map_or(0.0, |(_, c)| *c)
        };
        Some(NixlCounters {
            transfers: a.transfers - b.transfers,
            xfer_time_s: a.xfer_time_s - b.xfer_time_s,
            bytes: a.bytes - b.bytes,
            xfer_buckets: a
                .xfer_buckets
                .iter()
                .map(|&(le, c)| (le, c - before_bucket(le)))
                .collect(),
            failed_transfers: a.failed_transfers - b.failed_transfers,
            failed_notifications: a.failed_notifications - b.failed_notifications,
            expired_requests: a.expired_requests - b.expired_requests,
            notifications_after_expiry: a.notifications_after_expiry - b.notifications_after_expiry,
        })
    }
}

/// The most distinct bucket bounds read from one histogram: vLLM's have about 20; a server
/// that sends more is cut off here rather than costing a scan per line.
const MAX_BUCKETS: usize = 256;

/// The buckets of histogram series `name` (`…_bucket`), summed over its other labels:
/// (upper bound, cumulative count), ascending by bound.
fn histogram_buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let mut by_bound: Vec<(f64, f64)> = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let Some(labels) = rest.strip_prefix('{').and_then(parse_labels) else {
            continue;
        };
        let Some(le) = labels.get("le").map(String::as_str) else {
            continue;
        };
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            match le.parse::<f64>() {
                Ok(b) if b.is_finite() => b,
                _ => continue,
            }
        };
        let Some(count) = sample_value(rest) else {
            continue;
        };
        let room = by_bound.len() < MAX_BUCKETS;
        match by_bound.iter_mut().find(|(b, _)| *b == bound) {
            Some(entry) => entry.1 += count,
            None if room => by_bound.push((bound, count)),
            None => {}
        }
    }
    by_bound.sort_by(|a, b| a.0.total_cmp(&b.0));
    by_bound
}

/// The labels of every series of `name` (an info metric such as `cache_config_info`), one map
/// per series, values unescaped. A value may hold commas (`"[a, b]"`) and escaped quotes.
fn series_labels(text: &str, name: &str) -> Vec<BTreeMap<String, String>> {
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix('{'))
        .filter_map(parse_labels)
        .collect()
}

/// `a="1",b="x,\"y\""} 1.0` → {a: 1, b: x,"y"}; `None` if malformed.
fn parse_labels(rest: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut chars = rest.chars();
    loop {
        let mut key = String::new();
        loop {
            match chars.next()? {
                '}' if key.is_empty() => return Some(labels),
                '=' => break,
                ',' if key.is_empty() => {}
                c => key.push(c),
            }
        }
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key.trim().to_owned(), value);
    }
}

/// The KV block size a vLLM reports in `cache_config_info{block_size="…"}`.
pub fn block_size(text: &str) -> Option<u32> {
    series_labels(text, "vllm:cache_config_info")
        .iter()
        .find_map(|l| l.get("block_size")?.parse().ok())
        .filter(|b| *b > 0)
}

/// One instance's KV cache as its `cache_config_info` describes it (summed over its engines).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KvCacheConfig {
    /// Tokens the KV cache holds (`kv_cache_size_tokens`, or `num_gpu_blocks × block_size`
    /// where a vLLM does not say it).
    pub capacity_tokens: Option<u64>,
    /// vLLM's own figure: requests of `max_model_len` tokens that fit at once.
    pub max_concurrency: Option<f64>,
    pub prefix_caching: Option<bool>,
}

impl KvCacheConfig {
    /// `None` when the server exports no `cache_config_info`.
    pub fn read(text: &str) -> Option<KvCacheConfig> {
        let series = series_labels(text, "vllm:cache_config_info");
        if series.is_empty() {
            return None;
        }
        let number = |l: &BTreeMap<String, String>, k: &str| -> Option<f64> {
            l.get(k)?
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
        };
        let sum = |f: &dyn Fn(&BTreeMap<String, String>) -> Option<f64>| -> Option<f64> {
            series.iter().map(f).sum::<Option<f64>>()
        };
        let capacity = sum(&|l| {
            number(l, "kv_cache_size_tokens")
                .or_else(|| Some(number(l, "num_gpu_blocks")? * number(l, "block_size")?))
        });
        Some(KvCacheConfig {
            capacity_tokens: capacity.map(|c| c as u64),
            max_concurrency: sum(&|l| number(l, "kv_cache_max_concurrency")),
            prefix_caching: series
                .iter()
                .map(|l| match l.get("enable_prefix_caching")?.as_str() {
                    "True" | "true" => Some(true),
                    "False" | "false" => Some(false),
                    _ => None,
                })
                .reduce(|a, b| if a == b { a } else { None })
                .flatten(),
        })
    }
}

/// Requests vLLM preempted (freed their KV, to recompute them later) since it started.
pub fn preemptions(text: &str) -> Option<f64> {
    gauge_sum(text, "vllm:num_preemptions_total")
}

/// Sample the gauges of every component every `period` until told to stop.
pub fn spawn_sampler(
    components: Vec<(String, String)>,
    period: Duration,
) -> (watch::Sender<bool>, JoinHandle<Vec<Sample>>) {
    let (tx, mut rx) = watch::channel(false);
    let handle = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let start = Instant::now();
        let mut samples = Vec::new();
        loop {
            for (name, url) in &components {
                if let Some(text) = fetch(&client, url).await {
                    let gauges: BTreeMap<String, f64> = GAUGES
                        .iter()
                        .filter_map(|g| gauge_sum(&text, g).map(|v| (g.to_string(), v)))
                        .collect();
                    if !gauges.is_empty() {
                        samples.push(Sample {
                            t_s: start.elapsed().as_secs_f64(),
                            component: name.clone(),
                            gauges,
                        });
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = rx.wait_for(|stop| *stop) => break,
            }
        }
        samples
    });
    (tx, handle)
}

#[cfg(test)]
mod tests {
    use super::{gauge_sum, CacheCounters};

    #[test]
    fn cache_counters_are_the_interval_s_delta_by_source() {
        let text = |hit: f64, compute: f64, ext: f64| {
            format!(
                "vllm:prompt_tokens_by_source_total{{engine=\"0\",source=\"local_cache_hit\"}} {hit}\n\
                 vllm:prompt_tokens_by_source_total{{engine=\"0\",source=\"local_compute\"}} {compute}\n\
                 vllm:prompt_tokens_by_source_total{{engine=\"0\",source=\"external_kv_transfer\"}} {ext}\n\
                 vllm:prefix_cache_queries_total{{engine=\"0\"}} {}\n\
                 vllm:prefix_cache_hits_total{{engine=\"0\"}} {hit}\n",
                hit + compute
            )
        };
        let d = CacheCounters::delta(Some(&text(100.0, 1000.0, 7.0)), &text(400.0, 1600.0, 7.0))
            .unwrap();
        assert_eq!(
            d,
            CacheCounters {
                prompt_tokens: 900.0,
                computed: 600.0,
                local_hit: 300.0,
                external: 0.0,
                prefix_cache_queries: 900.0,
                prefix_cache_hits: 300.0,
                by_source: true,
            }
        );
        // No earlier snapshot: the counters since the server started.
        assert_eq!(
            CacheCounters::delta(None, &text(1.0, 2.0, 3.0))
                .unwrap()
                .prompt_tokens,
            6.0
        );
        // Only the prefix cache's counters (an older vLLM): hits are the reused tokens.
        let old = "vllm:prefix_cache_queries_total 500\nvllm:prefix_cache_hits_total 200\n";
        let c = CacheCounters::read(old).unwrap();
        assert_eq!(
            (c.prompt_tokens, c.computed, c.local_hit),
            (500.0, 300.0, 200.0)
        );
        // Neither: nothing to say.
        assert_eq!(CacheCounters::read("vllm:num_requests_running 0\n"), None);
    }

    #[test]
    fn block_size_comes_from_the_cache_config_info_labels() {
        let text = "# TYPE vllm:cache_config_info gauge\n\
                    vllm:cache_config_info{block_size=\"128\",cache_dtype=\"auto\"} 1.0\n";
        assert_eq!(super::block_size(text), Some(128));
        assert_eq!(
            super::block_size("vllm:cache_config_info{cache_dtype=\"auto\"} 1.0\n"),
            None
        );
        assert_eq!(super::block_size(""), None);
    }

    #[test]
    fn kv_cache_config_is_read_from_real_cache_config_info_lines() {
        // vLLM 0.32.0 (CPU build, tiny model) and vLLM 0.26.0 (H200, Llama-3-8B shape), verbatim.
        let cpu = "vllm:cache_config_info{_block_size_resolved=\"True\",block_size=\"128\",cache_dtype=\"auto\",cache_hit_alignment_tokens=\"None\",effective_attention_block_size=\"128\",enable_mamba_shared_prefix_checkpoint=\"False\",enable_prefix_caching=\"True\",engine=\"0\",gpu_memory_utilization=\"0.92\",hash_block_size=\"None\",is_attention_free=\"False\",kv_cache_dtype_skip_layers=\"[]\",kv_cache_layout=\"None\",kv_cache_max_concurrency=\"512.0\",kv_cache_memory_bytes=\"1073741824\",kv_cache_size_tokens=\"1048576\",kv_offloading_backend=\"native\",kv_offloading_size=\"None\",kv_sharing_fast_prefill=\"False\",mamba_block_size=\"None\",mamba_cache_dtype=\"auto\",mamba_cache_mode=\"none\",mamba_page_size_padded=\"None\",mamba_ssm_cache_dtype=\"float32\",num_cpu_blocks=\"None\",num_gpu_blocks=\"8192\",num_gpu_blocks_override=\"None\",prefix_cache_retention_interval=\"0\",prefix_caching_hash_algo=\"sha256\",prefix_match_unit=\"None\",replayssm_buffer_len=\"16\",skip_page_size_padded=\"None\",sliding_window=\"None\",swa_bounded_replay=\"True\",use_kda_recoverssm=\"False\",use_replayssm=\"False\",user_specified_block_size=\"False\"} 1.0\n";
        let gpu = "vllm:cache_config_info{_block_size_resolved=\"True\",block_size=\"16\",cache_dtype=\"auto\",calculate_kv_scales=\"False\",enable_prefix_caching=\"False\",engine=\"0\",gpu_memory_utilization=\"0.6\",is_attention_free=\"False\",kv_cache_dtype_skip_layers=\"[]\",kv_cache_max_concurrency=\"67.8203125\",kv_cache_memory_bytes=\"None\",kv_cache_size_tokens=\"555584\",kv_offloading_backend=\"native\",kv_offloading_size=\"None\",kv_sharing_fast_prefill=\"False\",mamba_block_size=\"None\",mamba_cache_dtype=\"auto\",mamba_cache_mode=\"none\",mamba_page_size_padded=\"None\",mamba_ssm_cache_dtype=\"auto\",num_cpu_blocks=\"None\",num_gpu_blocks=\"34724\",num_gpu_blocks_override=\"None\",prefix_caching_hash_algo=\"sha256\",prefix_match_unit=\"None\",skip_page_size_padded=\"None\",sliding_window=\"None\",user_specified_block_size=\"False\",user_specified_mamba_block_size=\"False\"} 1.0\n";
        let c = super::KvCacheConfig::read(cpu).unwrap();
        assert_eq!(c.capacity_tokens, Some(1_048_576));
        assert_eq!(c.max_concurrency, Some(512.0));
        assert_eq!(c.prefix_caching, Some(true));
        assert_eq!(super::block_size(cpu), Some(128));
        let g = super::KvCacheConfig::read(gpu).unwrap();
        assert_eq!(g.capacity_tokens, Some(555_584));
        assert_eq!(g.max_concurrency, Some(67.8203125));
        assert_eq!(g.prefix_caching, Some(false));
        assert_eq!(super::block_size(gpu), Some(16));
        // Without kv_cache_size_tokens: blocks × block size; without the metric: nothing.
        let old = "vllm:cache_config_info{block_size=\"16\",enable_prefix_caching=\"True\",num_gpu_blocks=\"100\"} 1.0\n";
        assert_eq!(
            super::KvCacheConfig::read(old).unwrap().capacity_tokens,
            Some(1600)
        );
        assert_eq!(
            super::KvCacheConfig::read("vllm:num_requests_running 0\n"),
            None
        );
    }

    #[test]
    fn labels_with_commas_and_escapes_parse_and_a_cut_line_does_not() {
        let l = super::parse_labels("a=\"[x, y]\",b=\"say \\\"hi\\\"\"} 1.0").unwrap();
        assert_eq!(l["a"], "[x, y]");
        assert_eq!(l["b"], "say \"hi\"");
        assert_eq!(super::parse_labels("a=\"1\",b=\"unterminated"), None);
        assert_eq!(super::parse_labels("a=1} 1.0"), None);
        assert!(super::parse_labels("} 1.0").unwrap().is_empty());
    }

    #[test]
    fn labelled_series_are_selected_by_label() {
        let text = "vllm:prompt_tokens_by_source_total{engine=\"0\",source=\"local_compute\"} 5.0\n\
                    vllm:prompt_tokens_by_source_total{engine=\"0\",source=\"external_kv_transfer\"} 1538.0\n";
        let name = "vllm:prompt_tokens_by_source_total";
        assert_eq!(
            super::labelled_sum(text, name, "source", "external_kv_transfer"),
            Some(1538.0)
        );
        assert_eq!(
            super::labelled_sum(text, name, "source", "local_compute"),
            Some(5.0)
        );
        assert_eq!(
            super::labelled_sum(text, name, "source", "local_cache_hit"),
            None
        );
    }

    #[test]
    fn gauges_are_summed_over_labels_and_names_match_exactly() {
        let text = "# HELP vllm:num_requests_running x\n\
                    vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 3.0\n\
                    vllm:num_requests_running{engine=\"1\",model_name=\"m\"} 2.0\n\
                    vllm:num_requests_running_total 99\n\
                    vllm:kv_cache_usage_perc 0.25\n";
        assert_eq!(gauge_sum(text, "vllm:num_requests_running"), Some(5.0));
        assert_eq!(gauge_sum(text, "vllm:kv_cache_usage_perc"), Some(0.25));
        assert_eq!(gauge_sum(text, "vllm:num_requests_waiting"), None);
    }

    /// What a hostile or broken server may send: NaN and Inf values (not counted), a
    /// timestamp after the value (not read as the value), a label whose name only ends like
    /// the one asked for, and a histogram with endless distinct bounds (cut off).
    #[test]
    fn non_finite_values_timestamps_lookalike_labels_and_endless_buckets_are_bounded() {
        let text = "vllm:num_requests_waiting{engine=\"0\"} NaN\n\
                    vllm:num_requests_waiting{engine=\"1\"} 2 1700000000000\n\
                    vllm:num_requests_waiting{engine=\"2\"} +Inf\n";
        assert_eq!(gauge_sum(text, "vllm:num_requests_waiting"), Some(2.0));
        let name = "vllm:prompt_tokens_by_source_total";
        let text = format!(
            "{name}{{other_source=\"external_kv_transfer\"}} 7\n\
             {name}{{source=\"external_kv_transfer\"}} nan\n"
        );
        assert_eq!(
            super::labelled_sum(&text, name, "source", "external_kv_transfer"),
            None
        );
        let bucket = "vllm:nixl_xfer_time_seconds_bucket";
        let mut text: String = (0..1000)
            .map(|i| format!("{bucket}{{le=\"{i}.5\"}} 1\n"))
            .collect();
        text.push_str(&format!(
            "{bucket}{{le=\"NaN\"}} 1\n{bucket}{{le=\"+Inf\"}} 3\n"
        ));
        let buckets = super::histogram_buckets(&text, bucket);
        assert_eq!(buckets.len(), super::MAX_BUCKETS);
        assert!(buckets.iter().all(|(b, n)| b.is_finite() && *n == 1.0));
    }
}
