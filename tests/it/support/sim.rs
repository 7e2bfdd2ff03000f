//! Helpers shared by the sim tests: a minimal streaming client, a NIXL hand-off done by hand
//! (the proxy's protocol), a JSON shape extractor and a strict Prometheus text parser.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use vbench::sim::{Profile, SimConfig, SimServer};

/// A profile with round numbers for property tests (no API-server delay).
pub const TEST_PROFILE: &str = r#"
name = "test"
max_model_len = 8192
block_size = 16
kv_capacity_tokens = 400000
max_num_batched_tokens = 2048
max_num_seqs = 256
kv_bytes_per_token = 20000
[timing]
frontend_ms = 0.0
step_base_ms = 2.0
prefill_per_token_us = 20.0
decode_per_seq_us = 10.0
decode_per_ctx_token_ns = 0.0
[tp]
efficiency = 1.0
[kv_transfer]
bandwidth_gb_s = 0.01
latency_ms = 0.0
"#;

pub fn test_profile() -> Profile {
    Profile::from_toml(TEST_PROFILE).unwrap()
}

pub async fn start(cfg: SimConfig) -> SimServer {
    SimServer::start(cfg).await.unwrap()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// What a streaming client saw.
#[derive(Debug, Default)]
pub struct Streamed {
    pub status: u16,
    /// Raw `data: ...` payloads, in order.
    pub events: Vec<String>,
    /// Arrival time of each event carrying a non-empty `choices`.
    pub token_times: Vec<Instant>,
    pub sent: Option<Instant>,
    pub error: Option<String>,
    pub body: String,
}

impl Streamed {
    pub fn ttft(&self) -> f64 {
        (self.token_times[0] - self.sent.unwrap()).as_secs_f64()
    }
    /// (last - first) / (n - 1) over token events.
    pub fn tpot(&self) -> f64 {
        let n = self.token_times.len();
        (self.token_times[n - 1] - self.token_times[0]).as_secs_f64() / (n - 1) as f64
    }
    pub fn done(&self) -> bool {
        self.events.last().is_some_and(|e| e == "[DONE]")
    }
}

/// POST `body` to `url` and read the SSE stream to its end (or its failure).
pub async fn stream(
    c: &reqwest::Client,
    url: &str,
    body: impl std::borrow::Borrow<Value>,
) -> Streamed {
    let body = body.borrow();
    let mut out = Streamed {
        sent: Some(Instant::now()),
        ..Default::default()
    };
    let resp = match c.post(url).json(body).send().await {
        Ok(r) => r,
        Err(e) => {
            out.error = Some(e.to_string());
            return out;
        }
    };
    out.status = resp.status().as_u16();
    let mut s = resp.bytes_stream();
    let mut buf = String::new();
    while let Some(chunk) = s.next().await {
        match chunk {
            Ok(b) => {
                let now = Instant::now();
                buf.push_str(&String::from_utf8_lossy(&b));
                out.body.push_str(&String::from_utf8_lossy(&b));
                while let Some(i) = buf.find("\n\n") {
                    let ev: String = buf[..i].to_string();
                    buf.drain(..i + 2);
                    let data = ev.strip_prefix("data: ").unwrap_or(&ev).to_string();
                    if data != "[DONE]" {
                        if let Ok(v) = serde_json::from_str::<Value>(&data) {
                            if v["choices"].as_array().is_some_and(|a| !a.is_empty()) {
                                out.token_times.push(now);
                            }
                        }
                    }
                    out.events.push(data);
                }
            }
            Err(e) => {
                out.error = Some(e.to_string());
                break;
            }
        }
    }
    out
}

/// A completions body of `prompt_tokens` token ids. Every body's first token is its own, so
/// no two prompts share a prefix-cache block (as a benchmark's prompts do not).
pub fn completion_body(prompt_tokens: usize, max_tokens: u32) -> Value {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let unique = 10_000 + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let ids = (0..prompt_tokens).map(|i| if i == 0 { unique } else { 3 + (i % 4000) });
    json!({
        "model": "m",
        "prompt": ids.collect::<Vec<_>>(),
        "max_tokens": max_tokens,
        "ignore_eos": true,
        "stream": true,
        "stream_options": {"include_usage": true},
    })
}

/// The NIXL proxy protocol by hand: prefill with max_tokens 1, then decode with the params.
pub async fn pd_request(
    c: &reqwest::Client,
    p_url: &str,
    d_url: &str,
    body: &Value,
) -> (Value, Streamed) {
    let sent = Instant::now();
    let mut pb = body.clone();
    pb["max_tokens"] = json!(1);
    pb["stream"] = json!(false);
    pb.as_object_mut().unwrap().remove("stream_options");
    pb["kv_transfer_params"] = json!({"do_remote_decode": true, "do_remote_prefill": false,
        "remote_engine_id": null, "remote_block_ids": null, "remote_host": null, "remote_port": null});
    let resp: Value = c
        .post(format!("{p_url}/v1/completions"))
        .json(&pb)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut db = body.clone();
    db["kv_transfer_params"] = resp["kv_transfer_params"].clone();
    let mut s = stream(c, &format!("{d_url}/v1/completions"), &db).await;
    s.sent = Some(sent);
    (resp, s)
}

/// The shape of a JSON text: keys in their original order, every string value as S, every
/// number as N (so two chunks differing only in text, ids and counts have the same shape).
pub fn shape(json: &str) -> String {
    let b = json.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    // A string is a key when the next non-space character after it is ':'.
    while i < b.len() {
        let c = b[i];
        if c == b'"' {
            let start = i;
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            let mut j = i;
            while j < b.len() && b[j] == b' ' {
                j += 1;
            }
            if j < b.len() && b[j] == b':' {
                out.push_str(&json[start..i]);
            } else {
                out.push('S');
            }
        } else if c == b'-' || c.is_ascii_digit() {
            while i < b.len()
                && (b[i] == b'-'
                    || b[i] == b'.'
                    || b[i] == b'e'
                    || b[i] == b'E'
                    || b[i] == b'+'
                    || b[i].is_ascii_digit())
            {
                i += 1;
            }
            out.push('N');
        } else {
            out.push(c as char);
            i += 1;
        }
    }
    out
}

/// One sample of a Prometheus text page.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: HashMap<String, String>,
    pub value: f64,
}

/// Parse Prometheus text format 0.0.4 strictly: every line must be a HELP/TYPE comment or a
/// well-formed sample of a declared family; histograms must be cumulative and end in +Inf.
pub fn parse_prometheus(text: &str) -> Result<Vec<Sample>, String> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    for (ln, line) in text.lines().enumerate() {
        let err = |m: &str| Err(format!("line {}: {m}: {line}", ln + 1));
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap_or("");
            let name = parts.next().unwrap_or("");
            let arg = parts.next().unwrap_or("");
            if !valid_name(name) {
                return err("bad metric name in comment");
            }
            if kind == "TYPE" {
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&arg) {
                    return err("bad type");
                }
                if types.insert(name.to_string(), arg.to_string()).is_some() {
                    return err("family declared twice");
                }
            } else if kind != "HELP" {
                return err("unknown comment");
            }
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => (&line[..i], &line[i..]),
            None => return err("no value"),
        };
        if !valid_name(name) {
            return err("bad metric name");
        }
        let mut labels = HashMap::new();
        let rest = if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let end;
            loop {
                let Some((i, c)) = chars.next() else {
                    return err("unterminated labels");
                };
                if c == '}' {
                    end = i;
                    break;
                }
                if c == ',' {
                    continue;
                }
                let mut key = String::from(c);
                for (_, c) in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    key.push(c);
                }
                if !valid_name(&key) || key.contains(':') {
                    return err("bad label name");
                }
                if chars.next().map(|x| x.1) != Some('"') {
                    return err("label value must be quoted");
                }
                let mut val = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => val.push('\n'),
                            Some((_, c @ ('\\' | '"'))) => val.push(c),
                            _ => return err("bad escape"),
                        },
                        Some((_, '"')) => break,
                        Some((_, c)) => val.push(c),
                        None => return err("unterminated label value"),
                    }
                }
                labels.insert(key, val);
            }
            &r[end + 1..]
        } else {
            rest
        };
        let value_text = rest.trim();
        let value: f64 = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => match v.parse() {
                Ok(x) => x,
                Err(_) => return err("bad value"),
            },
        };
        let family = [
            ("_bucket", "histogram"),
            ("_sum", "histogram"),
            ("_count", "histogram"),
        ]
        .iter()
        .find_map(|(suf, t)| {
            name.strip_suffix(suf)
                .filter(|base| types.get(*base).map(String::as_str) == Some(*t))
        })
        .unwrap_or(name);
        if !types.contains_key(family) {
            return err("sample of an undeclared family");
        }
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    // Histograms: buckets non-decreasing, +Inf equals _count.
    for (fam, t) in &types {
        if t != "histogram" {
            continue;
        }
        let buckets: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.name == format!("{fam}_bucket"))
            .collect();
        if buckets
            .last()
            .map(|s| s.labels.get("le").map(String::as_str))
            != Some(Some("+Inf"))
        {
            return Err(format!("{fam}: last bucket is not +Inf"));
        }
        if buckets.windows(2).any(|w| w[1].value < w[0].value) {
            return Err(format!("{fam}: buckets not cumulative"));
        }
        let count = samples
            .iter()
            .find(|s| s.name == format!("{fam}_count"))
            .ok_or(format!("{fam}: no _count"))?;
        if count.value != buckets.last().unwrap().value {
            return Err(format!("{fam}: +Inf bucket != _count"));
        }
    }
    Ok(samples)
}

/// Value of the sample `name` whose labels include `want`.
pub fn metric(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .unwrap_or_else(|| panic!("no sample {name} {want:?}"))
        .value
}

pub async fn scrape(c: &reqwest::Client, url: &str) -> Vec<Sample> {
    let text = c
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    parse_prometheus(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}
