//! Reading one result file, whichever tool wrote it: vbench's `vbench.requests`, `vllm bench
//! serve --save-detailed` arrays, or the original suite's files (rate from the file name).
//! Python's bare `NaN`/`Infinity` tokens are read as `null`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::*;
use crate::bounded_file::read_bounded;
use crate::load::result::CacheReuse;
use crate::results::store::MAX_RESULT_BYTES;

/// Scalars every format may carry; arrays are read only by the format that needs them.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Common {
    model_name: Option<String>,
    model_id: Option<String>,
    dataset_name: Option<String>,
    deployment_mode: Option<String>,
    num_prefill_instances: Option<u32>,
    num_decode_instances: Option<u32>,
    tensor_parallel_size: Option<u32>,
    prefiller_tp_size: Option<u32>,
    decoder_tp_size: Option<u32>,
    label: Option<String>,
    request_rate: Option<serde_json::Value>,
    num_prompts: Option<u64>,
    duration: Option<f64>,
    completed: Option<u64>,
    failed: Option<u64>,
    request_throughput: Option<f64>,
    output_throughput: Option<f64>,
    median_ttft_ms: Option<f64>,
    p99_ttft_ms: Option<f64>,
    median_tpot_ms: Option<f64>,
    p99_tpot_ms: Option<f64>,
    median_itl_ms: Option<f64>,
    p99_itl_ms: Option<f64>,
    median_e2el_ms: Option<f64>,
    p99_e2el_ms: Option<f64>,
    vbench: Option<LeanVbench>,
    // Presence markers only (not parsed into memory).
    endpoint_type: Option<serde::de::IgnoredAny>,
    ttfts: Option<serde::de::IgnoredAny>,
    latencies: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct LeanVbench {
    deployment: LeanDeployment,
    #[serde(default)]
    client: Option<LeanClient>,
    #[serde(default)]
    requests: Vec<LeanRecord>,
    /// Read apart, so a malformed section costs only itself.
    #[serde(default)]
    cache_reuse: Option<serde_json::Value>,
    #[serde(default)]
    kv_transfer: Option<serde_json::Value>,
    #[serde(default)]
    kv_cache: Option<serde_json::Value>,
    #[serde(default)]
    load: Option<serde_json::Value>,
    #[serde(default)]
    gpus: Option<serde_json::Value>,
}

/// The client-health section, lenient: a non-finite number is written as `null` by serde_json.
#[derive(Deserialize, Default)]
#[serde(default)]
struct LeanClient {
    achieved_rate: Option<f64>,
    lag_p50_ms: Option<f64>,
    lag_p99_ms: Option<f64>,
    lag_max_ms: Option<f64>,
    lag_threshold_ms: Option<f64>,
    client_fell_behind: bool,
}

#[derive(Deserialize)]
struct LeanDeployment {
    #[serde(default)]
    variant_id: Option<String>,
    mode: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    gpus: Option<u32>,
    #[serde(default)]
    simulated: bool,
}

#[derive(Deserialize)]
struct LeanRecord {
    #[serde(default)]
    ok: bool,
    #[serde(default)]
    ttft_s: Option<f64>,
    #[serde(default)]
    tpot_s: Option<f64>,
    #[serde(default)]
    e2e_s: Option<f64>,
    #[serde(default)]
    itls_s: Vec<f64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    error_kind: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    session: Option<u64>,
    #[serde(default)]
    turn: Option<u32>,
}

/// Per-request arrays of the original suite's and vLLM's files.
#[derive(Deserialize, Default)]
#[serde(default)]
struct LegacyArrays {
    ttfts: Option<Vec<Option<f64>>>,
    tpots: Option<Vec<Option<f64>>>,
    itls: Option<Vec<Option<Vec<Option<f64>>>>>,
    latencies: Option<Vec<Option<f64>>>,
    output_lens: Option<Vec<Option<u64>>>,
    errors: Option<Vec<Option<String>>>,
}

pub(super) fn read_file(path: &Path) -> Result<Parsed, String> {
    let bytes = read_bounded(path, MAX_RESULT_BYTES)?;
    let bytes = sanitize_non_finite(bytes);
    let mut common: Common =
        serde_json::from_slice(&bytes).map_err(|e| format!("not a result file: {e}"))?;
    let rate = rate_of(&common, path)?;
    let file_summary = FileSummary {
        median_ttft_ms: common.median_ttft_ms,
        p99_ttft_ms: common.p99_ttft_ms,
        median_tpot_ms: common.median_tpot_ms,
        p99_tpot_ms: common.p99_tpot_ms,
        median_itl_ms: common.median_itl_ms,
        p99_itl_ms: common.p99_itl_ms,
        median_e2el_ms: common.median_e2el_ms,
        p99_e2el_ms: common.p99_e2el_ms,
    };
    let model = common
        .model_name
        .clone()
        .or_else(|| common.model_id.clone())
        .unwrap_or_else(|| "unknown model".to_string());
    let dataset = common
        .dataset_name
        .clone()
        .unwrap_or_else(|| "unknown dataset".to_string());
    let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();

    if let Some(vb) = common.vbench.take() {
        let mut point = empty_point(path, rate, file_summary);
        for r in vb.requests {
            let ok = r.ok && r.ttft_s.is_some_and(|t| t.is_finite() && t >= 0.0);
            if ok {
                point
                    .itls_s
                    .extend(r.itls_s.iter().copied().filter(|x| x.is_finite()));
            } else {
                let kind = r
                    .error_kind
                    .or_else(|| r.error.as_deref().map(error_class))
                    .unwrap_or_else(|| "unknown".to_string());
                *point.failures_by_kind.entry(kind).or_insert(0) += 1;
            }
            point.samples.push(Sample {
                ok,
                ttft_s: r.ttft_s.filter(|t| t.is_finite()),
                tpot_s: r.tpot_s.filter(|t| t.is_finite()),
                e2e_s: r.e2e_s.filter(|t| t.is_finite()),
                output_tokens: r.output_tokens,
                session_turn: r.session.zip(r.turn),
            });
        }
        finish_point(&mut point, &common);
        // Unknown numbers become NaN here and are left out of the figure's curves.
        let n = |x: Option<f64>| x.filter(|v| v.is_finite()).unwrap_or(f64::NAN);
        point.client = vb.client.map(|c| ClientInfo {
            achieved_rate: n(c.achieved_rate),
            lag_p50_ms: n(c.lag_p50_ms),
            lag_p99_ms: n(c.lag_p99_ms),
            lag_max_ms: n(c.lag_max_ms),
            lag_threshold_ms: n(c.lag_threshold_ms),
            client_fell_behind: c.client_fell_behind,
        });
        point.cache = vb
            .cache_reuse
            .and_then(|v| serde_json::from_value::<CacheReuse>(v).ok())
            .and_then(|r| {
                let c = r.computing()?;
                let ideal = r
                    .ideal
                    .as_ref()
                    .map(|i| (i.prompt_tokens as f64, i.hit_tokens as f64));
                Some(CacheInfo::new(
                    c.role.clone(),
                    c.prompt_tokens,
                    c.local_hit_tokens,
                    c.external_tokens,
                    ideal,
                ))
            });
        point.kv_transfer = vb
            .kv_transfer
            .and_then(|v| serde_json::from_value::<crate::load::result::KvTransfer>(v).ok());
        point.kv_cache = vb
            .kv_cache
            .and_then(|v| serde_json::from_value::<crate::load::result::KvCache>(v).ok());
        point.warnings = vb.load.as_ref().map_or_else(Vec::new, bounded_warnings);
        point.gpus = vb
            .gpus
            .and_then(|v| serde_json::from_value::<Vec<crate::load::result::GpuTelemetry>>(v).ok())
            .unwrap_or_default();
        let d = vb.deployment;
        let label = if d.label.is_empty() {
            d.mode.clone()
        } else {
            d.label.clone()
        };
        let key = d.variant_id.clone().unwrap_or_else(|| slug(&label));
        let group = format!("{}\u{0}{}", dir.display(), key);
        return Ok(Parsed {
            group,
            variant: Variant {
                key,
                mode: d.mode,
                label,
                gpus: d.gpus.unwrap_or(1).max(1),
                gpus_known: d.gpus.is_some_and(|g| g > 0),
                simulated: d.simulated,
                model,
                dataset,
                source: SourceKind::Vbench,
                points: Vec::new(),
                search: None,
            },
            point,
        });
    }

    let is_suite = common.deployment_mode.is_some();
    let is_vllm = common.endpoint_type.is_some()
        || common.ttfts.is_some()
        || common.latencies.is_some()
        || common.model_id.is_some();
    if !is_suite && !is_vllm {
        return Err(
            "not a result file: none of vbench's, the original suite's or vLLM's \
                    keys (vbench, deployment_mode, ttfts, endpoint_type) is present"
                .to_string(),
        );
    }
    let arrays: LegacyArrays =
        serde_json::from_slice(&bytes).map_err(|e| format!("malformed arrays: {e}"))?;
    let mut point = empty_point(path, rate, file_summary);
    legacy_samples(&arrays, &mut point)?;
    finish_point(&mut point, &common);

    let (mode, label, gpus, gpus_known, source) = if is_suite {
        let mode = common.deployment_mode.clone().unwrap_or_default();
        let (label, gpus) = suite_topology(&mode, &common);
        (mode, label, gpus, true, SourceKind::OriginalSuite)
    } else {
        let label = common
            .label
            .clone()
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| format!("external {model}"));
        (
            "external".to_string(),
            label,
            1,
            false,
            SourceKind::VllmBenchServe,
        )
    };
    let key = slug(&label);
    let group = format!("{}\u{0}{}\u{0}{}", dir.display(), key, model);
    Ok(Parsed {
        group,
        variant: Variant {
            key,
            mode,
            label,
            gpus,
            gpus_known,
            simulated: false,
            model,
            dataset,
            source,
            points: Vec::new(),
            search: None,
        },
        point,
    })
}

/// Label and GPU count from the original suite's keys.
fn suite_topology(mode: &str, c: &Common) -> (String, u32) {
    let tp = c.tensor_parallel_size.unwrap_or(1).max(1);
    if mode == "simple" {
        return (format!("simple TP:{tp}"), tp);
    }
    let pf = c.num_prefill_instances.unwrap_or(1).max(1);
    let d = c.num_decode_instances.unwrap_or(1).max(1);
    let ptp = c.prefiller_tp_size.unwrap_or(tp).max(1);
    let dtp = c.decoder_tp_size.unwrap_or(tp).max(1);
    (
        format!("{mode} PF:{pf} D:{d} TP:{ptp}x{dtp}"),
        pf * ptp + d * dtp,
    )
}

fn empty_point(path: &Path, rate: f64, file_summary: FileSummary) -> RatePoint {
    RatePoint {
        path: path.to_path_buf(),
        rate,
        samples: Vec::new(),
        itls_s: Vec::new(),
        per_request: false,
        num_requests: 0,
        completed: 0,
        failed: 0,
        duration_s: None,
        request_throughput: None,
        output_throughput: None,
        client: None,
        cache: None,
        kv_transfer: None,
        kv_cache: None,
        warnings: Vec::new(),
        gpus: Vec::new(),
        file_summary,
        failures_by_kind: BTreeMap::new(),
    }
}

/// Counts and throughput: from the samples when there are any, else from the file.
fn finish_point(point: &mut RatePoint, c: &Common) {
    point.per_request = !point.samples.is_empty();
    if point.per_request {
        point.num_requests = point.samples.len() as u64;
        point.completed = point.samples.iter().filter(|s| s.ok).count() as u64;
        point.failed = point.num_requests - point.completed;
    } else {
        point.completed = c.completed.unwrap_or(0);
        point.failed = c.failed.unwrap_or(0);
        point.num_requests = c.num_prompts.unwrap_or(point.completed + point.failed);
    }
    point.duration_s = c.duration.filter(|d| d.is_finite() && *d > 0.0);
    point.request_throughput = c
        .request_throughput
        .filter(|x| x.is_finite())
        .or_else(|| point.duration_s.map(|d| point.completed as f64 / d));
    point.output_throughput = c.output_throughput.filter(|x| x.is_finite());
}

/// Per-request samples from vLLM-style arrays. TPOT: the file's `tpots` when present, else
/// `(latency - ttft) / (output_len - 1)` as vLLM computes it, else the mean ITL.
fn legacy_samples(a: &LegacyArrays, point: &mut RatePoint) -> Result<(), String> {
    let Some(ttfts) = &a.ttfts else {
        return Ok(()); // summary-only file (`--save-result` without `--save-detailed`)
    };
    let n = ttfts.len();
    let check = |name: &str, len: Option<usize>| match len {
        Some(l) if l != n => Err(format!(
            "malformed: `{name}` has {l} entries but `ttfts` has {n}"
        )),
        _ => Ok(()),
    };
    check("tpots", a.tpots.as_ref().map(Vec::len))?;
    check("itls", a.itls.as_ref().map(Vec::len))?;
    check("latencies", a.latencies.as_ref().map(Vec::len))?;
    check("output_lens", a.output_lens.as_ref().map(Vec::len))?;
    check("errors", a.errors.as_ref().map(Vec::len))?;
    for i in 0..n {
        let ttft = ttfts[i].filter(|t| t.is_finite());
        let error = a
            .errors
            .as_ref()
            .and_then(|e| e[i].clone())
            .filter(|e| !e.is_empty());
        // A zero TTFT is vLLM's placeholder for a failure, with or without an error text:
        // its client records a non-200 answer's error as the HTTP reason, which may be "".
        let ok = error.is_none() && ttft.is_some_and(|t| t > 0.0);
        let out = a.output_lens.as_ref().and_then(|o| o[i]);
        let lat = a
            .latencies
            .as_ref()
            .and_then(|l| l[i])
            .filter(|x| x.is_finite());
        let itls: Vec<f64> = a
            .itls
            .as_ref()
            .and_then(|v| v[i].as_ref())
            .map(|v| {
                v.iter()
                    .flatten()
                    .copied()
                    .filter(|x| x.is_finite())
                    .collect()
            })
            .unwrap_or_default();
        let tpot = if !ok {
            None
        } else if let Some(t) = a.tpots.as_ref().and_then(|t| t[i]) {
            // The suite wrote 0 for one-token outputs: undefined, not fast.
            if t > 0.0 || out.is_none_or(|o| o > 1) {
                Some(t)
            } else {
                None
            }
        } else {
            match (out, lat, ttft) {
                (Some(o), Some(l), Some(t)) if o > 1 => Some((l - t) / (o - 1) as f64),
                (Some(o), _, _) if o <= 1 => None,
                _ if !itls.is_empty() => Some(itls.iter().sum::<f64>() / itls.len() as f64),
                _ => None,
            }
        };
        if ok {
            point.itls_s.extend_from_slice(&itls);
        } else {
            let kind = error
                .as_deref()
                .map(error_class)
                .unwrap_or_else(|| "no_ttft".into());
            *point.failures_by_kind.entry(kind).or_insert(0) += 1;
        }
        point.samples.push(Sample {
            ok,
            ttft_s: if ok { ttft } else { None },
            tpot_s: tpot.filter(|t| t.is_finite()),
            e2e_s: if ok { lat } else { None },
            output_tokens: out,
            session_turn: None,
        });
    }
    Ok(())
}

/// A short class for an error text: its first word, lowercased.
fn error_class(text: &str) -> String {
    let w: String = text
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .find(|w| !w.is_empty())
        .unwrap_or("error")
        .chars()
        .take(40)
        .collect();
    w.to_lowercase()
}

/// Labels of one result file, for `vbench ls`: mode, label, model, simulated.
#[derive(Debug, Clone, PartialEq)]
pub struct Peek {
    pub mode: String,
    pub label: String,
    pub model: String,
    pub simulated: bool,
}

/// Read only the labels of a result file; `None` when it is not one.
pub fn peek(path: &Path) -> Option<Peek> {
    let bytes = sanitize_non_finite(read_bounded(path, MAX_RESULT_BYTES).ok()?);
    #[derive(Deserialize)]
    struct PeekVbench {
        deployment: LeanDeployment,
    }
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct PeekFile {
        model_name: Option<String>,
        model_id: Option<String>,
        deployment_mode: Option<String>,
        num_prefill_instances: Option<u32>,
        num_decode_instances: Option<u32>,
        tensor_parallel_size: Option<u32>,
        prefiller_tp_size: Option<u32>,
        decoder_tp_size: Option<u32>,
        label: Option<String>,
        endpoint_type: Option<serde::de::IgnoredAny>,
        vbench: Option<PeekVbench>,
    }
    let f: PeekFile = serde_json::from_slice(&bytes).ok()?;
    let model = f
        .model_name
        .clone()
        .or(f.model_id.clone())
        .unwrap_or_else(|| "unknown model".into());
    if let Some(v) = f.vbench {
        let d = v.deployment;
        return Some(Peek {
            label: if d.label.is_empty() {
                d.mode.clone()
            } else {
                d.label
            },
            mode: d.mode,
            model,
            simulated: d.simulated,
        });
    }
    if let Some(mode) = f.deployment_mode.clone() {
        let c = Common {
            num_prefill_instances: f.num_prefill_instances,
            num_decode_instances: f.num_decode_instances,
            tensor_parallel_size: f.tensor_parallel_size,
            prefiller_tp_size: f.prefiller_tp_size,
            decoder_tp_size: f.decoder_tp_size,
            ..Default::default()
        };
        let (label, _) = suite_topology(&mode, &c);
        return Some(Peek {
            mode,
            label,
            model,
            simulated: false,
        });
    }
    if f.endpoint_type.is_some() || f.model_id.is_some() {
        return Some(Peek {
            mode: "external".into(),
            label: f
                .label
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| format!("external {model}")),
            model,
            simulated: false,
        });
    }
    None
}

/// The offered rate: the file's `request_rate`, else the `vllm-<rate>qps` file name.
fn rate_of(c: &Common, path: &Path) -> Result<f64, String> {
    let from_name = rate_from_file_name(path);
    let v = match &c.request_rate {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => {
            if s.eq_ignore_ascii_case("inf") {
                return Err(
                    "request_rate is \"inf\" (all requests at once): it has no place on a \
                     rate axis"
                        .to_string(),
                );
            }
            s.parse::<f64>().ok()
        }
        _ => None,
    };
    match v.or(from_name) {
        Some(r) if r.is_finite() && r > 0.0 => Ok(r),
        Some(r) => Err(format!("request rate {r} is not a positive number")),
        None => Err("no request rate: neither a `request_rate` key nor a \
                     `vllm-<rate>qps` file name"
            .to_string()),
    }
}

fn rate_from_file_name(path: &Path) -> Option<f64> {
    let name = path.file_name()?.to_str()?;
    let start = name.find("vllm-")? + 5;
    let rest = &name[start..];
    let end = rest.find("qps")?;
    rest[..end].parse().ok()
}

/// Replace bare `NaN`, `Infinity` and `-Infinity` tokens outside strings with `null`, so files
/// written by Python's `json.dump` parse. Leaves valid JSON untouched (and uncopied).
fn sanitize_non_finite(bytes: Vec<u8>) -> Vec<u8> {
    let needs = bytes.windows(3).any(|w| w == b"NaN" || w == b"Inf");
    if !needs {
        return bytes;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut in_str = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_str {
            out.push(b);
            if b == b'\\' && i + 1 < bytes.len() {
                out.push(bytes[i + 1]);
                i += 2;
                continue;
            }
            if b == b'"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_str = true;
            out.push(b);
            i += 1;
            continue;
        }
        let rest = &bytes[i..];
        if rest.starts_with(b"NaN") {
            out.extend_from_slice(b"null");
            i += 3;
        } else if rest.starts_with(b"-Infinity") {
            out.extend_from_slice(b"null");
            i += 9;
        } else if rest.starts_with(b"Infinity") {
            out.extend_from_slice(b"null");
            i += 8;
        } else {
            out.push(b);
            i += 1;
        }
    }
    out
}

/// The warnings `apply` wrote into a result (`vbench.load.warnings`), as many and as long as
/// a report can show: a file with thousands of them, or one of megabytes, costs only that.
fn bounded_warnings(load: &serde_json::Value) -> Vec<String> {
    const MAX_WARNINGS: usize = 20;
    const MAX_CHARS: usize = 2000;
    load.get("warnings")
        .and_then(|n| n.as_array())
        .map_or_else(Vec::new, |warnings| {
            warnings
                .iter()
                .filter_map(|n| n.as_str())
                .take(MAX_WARNINGS)
                .map(|n| n.chars().take(MAX_CHARS).collect())
                .collect()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_read_from_the_original_suites_file_name() {
        assert_eq!(
            rate_from_file_name(Path::new("a/vllm-2.5qps-20250101.json")),
            Some(2.5)
        );
        assert_eq!(rate_from_file_name(Path::new("vllm-8qps.json")), Some(8.0));
        assert_eq!(rate_from_file_name(Path::new("other.json")), None);
    }

    #[test]
    fn python_nan_and_infinity_become_null_but_strings_are_kept() {
        let s = br#"{"a": NaN, "b": [Infinity, -Infinity], "c": "NaN in text"}"#.to_vec();
        let v: serde_json::Value = serde_json::from_slice(&sanitize_non_finite(s)).unwrap();
        assert!(v["a"].is_null());
        assert!(v["b"][0].is_null() && v["b"][1].is_null());
        assert_eq!(v["c"], "NaN in text");
    }

    #[test]
    fn error_class_is_first_word() {
        assert_eq!(error_class("Timeout after 30 s"), "timeout");
        assert_eq!(error_class(""), "error");
    }
}
