//! Hand-built result files for the report's tests and benchmark, made with the result-file
//! contract's own types (`vbench::load::RunResult`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use vbench::load::{RequestRecord, RunResult, VbenchSection};

/// A successful request.
pub fn ok(index: u64, ttft: f64, tpot: f64, output_tokens: u64) -> RequestRecord {
    let gaps = output_tokens.saturating_sub(1);
    let e2e = ttft + tpot * gaps as f64;
    // Built through serde so fields the format gains later (with defaults) need no edit here.
    from_json(serde_json::json!({
        "index": index,
        "scheduled_s": index as f64 * 0.1,
        "sent_s": index as f64 * 0.1 + 0.0002,
        "ttft_s": ttft,
        "e2e_s": e2e,
        "itls_s": vec![tpot; gaps as usize],
        "tpot_s": (output_tokens > 1).then_some(tpot),
        "prompt_tokens": 100,
        "output_tokens": output_tokens,
        "ok": true,
        "http_status": 200,
        "error_kind": null,
        "error": null,
    }))
}

fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("test data matches the result-file contract")
}

/// A failed request.
pub fn failed(index: u64, kind: &str) -> RequestRecord {
    from_json(serde_json::json!({
        "index": index,
        "scheduled_s": index as f64 * 0.1,
        "sent_s": index as f64 * 0.1,
        "ttft_s": null,
        "e2e_s": null,
        "itls_s": [],
        "tpot_s": null,
        "prompt_tokens": 100,
        "output_tokens": 0,
        "ok": false,
        "http_status": 500,
        "error_kind": kind,
        "error": format!("{kind}: injected"),
    }))
}

/// Deployment description: (mode, label, gpus).
#[derive(Clone, Debug)]
pub struct Dep {
    pub mode: &'static str,
    pub label: String,
    pub gpus: u32,
    pub simulated: bool,
    pub variant_id: String,
}

pub fn dep(mode: &'static str, label: &str, gpus: u32, id: &str) -> Dep {
    Dep {
        mode,
        label: label.to_string(),
        gpus,
        simulated: true,
        variant_id: id.to_string(),
    }
}

/// A complete result file around `requests`, with every legacy key derived from them.
pub fn result(d: &Dep, model: &str, rate: f64, requests: Vec<RequestRecord>) -> RunResult {
    let n = requests.len() as u64;
    let completed = requests.iter().filter(|r| r.ok).count() as u64;
    let duration = (n as f64 / rate).max(1e-3) + 1.0;
    let total_out: u64 = requests.iter().map(|r| r.output_tokens).sum();
    let lag_ms: Vec<f64> = requests.iter().map(|r| r.lag_s() * 1e3).collect();
    let lag_max = lag_ms.iter().cloned().fold(0.0, f64::max);
    RunResult {
        model_name: model.to_string(),
        dataset_name: "sharegpt".to_string(),
        deployment_mode: d.mode.to_string(),
        num_prefill_instances: 1,
        num_decode_instances: 1,
        tensor_parallel_size: 1,
        prefiller_tp_size: 1,
        decoder_tp_size: 1,
        ttfts: requests.iter().map(|r| r.ttft_s.unwrap_or(0.0)).collect(),
        tpots: requests.iter().map(|r| r.tpot_s.unwrap_or(0.0)).collect(),
        date: "20261128-120000".to_string(),
        endpoint_type: "vllm".to_string(),
        backend: "vbench".to_string(),
        label: Some(d.label.clone()),
        model_id: model.to_string(),
        tokenizer_id: None,
        num_prompts: n,
        request_rate: serde_json::json!(rate),
        burstiness: 1.0,
        max_concurrency: None,
        duration,
        completed,
        failed: n - completed,
        total_input_tokens: 100 * n,
        total_output_tokens: total_out,
        request_throughput: completed as f64 / duration,
        request_goodput: None,
        output_throughput: total_out as f64 / duration,
        total_token_throughput: (total_out + 100 * n) as f64 / duration,
        input_lens: vec![100; n as usize],
        output_lens: requests.iter().map(|r| r.output_tokens).collect(),
        itls: requests.iter().map(|r| r.itls_s.clone()).collect(),
        latencies: requests.iter().map(|r| r.e2e_s.unwrap_or(0.0)).collect(),
        start_times: requests.iter().map(|r| r.scheduled_s).collect(),
        errors: requests
            .iter()
            .map(|r| r.error.clone().unwrap_or_default())
            .collect(),
        mean_ttft_ms: 0.0,
        median_ttft_ms: 0.0,
        std_ttft_ms: 0.0,
        p99_ttft_ms: 0.0,
        mean_tpot_ms: 0.0,
        median_tpot_ms: 0.0,
        std_tpot_ms: 0.0,
        p99_tpot_ms: 0.0,
        mean_itl_ms: 0.0,
        median_itl_ms: 0.0,
        std_itl_ms: 0.0,
        p99_itl_ms: 0.0,
        mean_e2el_ms: 0.0,
        median_e2el_ms: 0.0,
        std_e2el_ms: 0.0,
        p99_e2el_ms: 0.0,
        vbench: VbenchSection {
            format_version: 1,
            vbench_version: "0.1.0".to_string(),
            deployment: from_json(serde_json::json!({
                "variant_id": d.variant_id,
                "mode": d.mode,
                "label": d.label,
                "gpus": d.gpus,
                "simulated": d.simulated,
                "base_url": "http://127.0.0.1:0",
            })),
            load: from_json(serde_json::json!({
                "api": "completions",
                "arrival": "poisson",
                "seed": 0,
                "warmup": 0,
                "tokens_from_usage": true,
            })),
            client: from_json(serde_json::json!({
                "achieved_rate": rate * 0.99,
                "lag_p50_ms": 0.2,
                "lag_p99_ms": 0.2,
                "lag_max_ms": lag_max,
                "client_fell_behind": false,
                "lag_threshold_ms": 10.0,
            })),
            requests,
            server_queue: None,
            cache_reuse: None,
            kv_transfer: None,
            kv_cache: None,
            gpus: Vec::new(),
            log_errors: Vec::new(),
            intervals: None,
        },
    }
}

/// Write `r` as `<dir>/<variant_id>/vllm-<rate>qps.json`.
pub fn write(dir: &Path, r: &RunResult) -> PathBuf {
    let rate = r.request_rate.as_f64().unwrap_or(0.0);
    let vid = r.vbench.deployment.variant_id.clone().unwrap_or_default();
    let path = dir.join(vid).join(format!("vllm-{rate}qps.json"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, serde_json::to_vec(r).unwrap()).unwrap();
    path
}

/// A small deterministic generator (xorshift), so data is the same on every machine.
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn round_us(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Synthetic requests of a deployment with `capacity` req/s at `rate`: queueing grows TTFT as
/// the rate nears capacity; `interference` grows TPOT with load (prefill/decode interference
/// in `simple`); past capacity some requests time out. Times rounded to microseconds.
pub fn synth(
    seed: u64,
    n: usize,
    rate: f64,
    capacity: f64,
    interference: f64,
    max_out: u64,
) -> Vec<RequestRecord> {
    let mut rng = Rng::new(seed);
    let u = rate / capacity;
    let q = 1.0 / (1.0 - u.min(0.97));
    (0..n as u64)
        .map(|i| {
            let x = rng.next_f64();
            let y = rng.next_f64();
            let z = rng.next_f64();
            if u > 1.0 && x < ((u - 1.0) * 0.4).min(0.8) {
                return failed(i, "timeout");
            }
            let ttft = round_us(0.03 * q * (0.4 + 1.2 * y));
            let tpot = round_us(0.05 * (1.0 + interference * u * u) * (0.6 + 0.8 * z));
            let out = 1 + (x * max_out as f64) as u64;
            let mut r = ok(i, ttft, tpot, out);
            r.scheduled_s = round_us(i as f64 / rate);
            r.sent_s = round_us(r.scheduled_s + 0.0001 + 0.0004 * x);
            r.itls_s = (0..out.saturating_sub(1))
                .map(|_| round_us(tpot * (0.8 + 0.4 * rng.next_f64())))
                .collect();
            let e2e = round_us(ttft + r.itls_s.iter().sum::<f64>());
            r.e2e_s = Some(e2e);
            r.tpot_s = (out > 1).then(|| (e2e - ttft) / (out - 1) as f64);
            r
        })
        .collect()
}

/// A vbench run folder: 3 modes × `per_mode` variants × `rates` × `n` requests.
pub fn synth_run(dir: &Path, name: &str, per_mode: usize, rates: &[f64], n: usize, max_out: u64) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("manifest.toml"),
        format!("name = {name:?}\nmodel = \"Qwen/Qwen3-0.6B\"\n\n[slo]\nttft_ms = 125\ntpot_ms = 200\ntarget_pct = 90\n"),
    )
    .unwrap();
    let mut seed = 1;
    for (mode, cap, interf) in [
        ("simple", 6.0, 3.0),
        ("nixl", 9.0, 0.6),
        ("lmcache", 8.0, 0.8),
    ] {
        for j in 0..per_mode {
            let (label, gpus, id) = match mode {
                "simple" => (
                    format!("simple TP:{}", j + 1),
                    (j + 1) as u32,
                    format!("simple-tp{}", j + 1),
                ),
                m => (
                    format!("{m} PF:{} D:1 TP:1x1", j + 1),
                    (j + 2) as u32,
                    format!("{m}-pf{}-d1", j + 1),
                ),
            };
            let d = dep(mode, &label, gpus, &id);
            let capacity = cap * (1.0 + 0.5 * j as f64);
            for &rate in rates {
                seed += 1;
                let reqs = synth(seed, n, rate, capacity, interf, max_out);
                write(dir, &result(&d, "Qwen/Qwen3-0.6B", rate, reqs));
            }
        }
    }
}
