//! Is the deployment up and measuring the right thing? Waiting for `/health` (failing early
//! when a component exits), the smoke request through the whole path, and, for NIXL, proof in
//! the decoders' `/metrics` that prompts arrived by KV transfer.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::json;

use super::{Events, Interrupts, VariantError};
use crate::exec::deploy::{Component, ComponentRole};
use crate::exec::metrics;
use crate::exec::process::Supervised;
use crate::load::result::ComponentLogErrors;
use crate::load::sse::{SseParser, StreamAccount, StreamError};
use crate::manifest::Mode;

/// A running component of the variant.
pub(crate) type Running = (Component, Supervised);

/// A component that exited while it should be serving, or that logged a fatal line (the
/// `fatal_lines` template), fails the variant, with its log tail.
pub(crate) fn check_alive(running: &mut [Running]) -> anyhow::Result<()> {
    for (c, p) in running.iter_mut() {
        if let Some(status) = p.exited() {
            bail!(
                "{} exited ({status}); last log lines:\n{}{}",
                who(c),
                p.log_tail(20),
                known_cause(p)
            );
        }
        if let Some(line) = p.fatal_line() {
            bail!(
                "{} logged a fatal error (its process is still up): {line}\nlast log lines:\n{}{}",
                who(c),
                p.log_tail(20),
                known_cause(p)
            );
        }
    }
    Ok(())
}

/// Start-up failures whose cause the same log names earlier: markers that must all appear
/// in its first lines, and what to do.
const KNOWN_CAUSES: &[(&[&str], &str)] = &[(
    &["allreduce_rms", "allreduce backend: mnnvl"],
    "vLLM fused all-reduce with RMSNorm on FlashInfer's multi-node-NVLink (mnnvl) backend, \
     which needs NVLink multicast; without it a TP > 1 instance dies at start-up (seen with \
     vLLM 0.26 on H200s). Add to the deployment: extra_args = [\"--compilation-config\", \
     '{\"pass_config\":{\"fuse_allreduce_rms\":false}}'] (docs/real-vllm.md, \"TP2 of the 8B \
     shape\")",
)];

/// `\nlikely cause: ...` when the log matches a [`KNOWN_CAUSES`] entry, else nothing.
fn known_cause(p: &Supervised) -> String {
    let start = p.log_start(8 << 20);
    KNOWN_CAUSES
        .iter()
        .find(|(markers, _)| markers.iter().all(|m| start.contains(m)))
        .map_or(String::new(), |(_, advice)| {
            format!("\nlikely cause: {advice}")
        })
}

/// Lines in a component's start-up log that change how its numbers read without failing it:
/// a marker, and what every result of the variant records (`{who}`: the components).
const LOG_FINDINGS: &[(&str, &str)] = &[(
    "lmcache.cuda_ops compiled extension not found",
    "LMCache's compiled CUDA kernels did not load in {who} (\"lmcache.cuda_ops compiled \
     extension not found\" in the log): it copied KV with its slower pure-torch ops, so these \
     are not LMCache's best numbers (an LMCache built against the installed torch has them)",
)];

/// How much of each log's start [`log_findings`] reads: start-up lines come first.
const FINDINGS_SCAN_BYTES: u64 = 1 << 20;

/// The [`LOG_FINDINGS`] whose marker is in the start of a component's log, worded for the
/// results, with the components named.
pub(crate) fn log_findings(running: &[Running]) -> Vec<String> {
    let starts: Vec<(String, String)> = running
        .iter()
        .map(|(c, p)| (who(c), p.log_start(FINDINGS_SCAN_BYTES)))
        .collect();
    LOG_FINDINGS
        .iter()
        .filter_map(|(marker, text)| {
            let names: Vec<&str> = starts
                .iter()
                .filter(|(_, log)| log.contains(marker))
                .map(|(name, _)| name.as_str())
                .collect();
            (!names.is_empty()).then(|| text.replace("{who}", &names.join(", ")))
        })
        .collect()
}

/// The error lines each component's log gained since `marks` (its length before the cell),
/// for the components that logged any.
pub(crate) fn log_errors(running: &[Running], marks: &[u64]) -> Vec<ComponentLogErrors> {
    running
        .iter()
        .zip(marks)
        .filter_map(|((c, p), &mark)| {
            let e = p.errors_since(mark);
            Some(ComponentLogErrors {
                component: c.name.clone(),
                lines: e.lines,
                first: e.first?,
                at_least: e.cut,
            })
        })
        .collect()
}

/// `prefill-1`, or `prefill-1 on node2` on Slurm (whose step's output, relayed by
/// `srun`, is the log tail that follows).
fn who(c: &Component) -> String {
    match &c.node {
        Some(node) => format!("{} on {node}", c.name),
        None => c.name.clone(),
    }
}

/// While a rate runs, `/health` is asked this often...
const HEALTH_EVERY: Duration = Duration::from_secs(2);
/// ...with this timeout...
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
/// ...and this many bad answers in a row fail the variant (one slow answer under load is not
/// a dead server; a wedged or dead engine gives every time).
const HEALTH_STRIKES: u32 = 3;

/// Resolves when a component exits, logs a fatal line ([`check_alive`]), or its `/health`,
/// good when the rate began, turns bad for [`HEALTH_STRIKES`] looks in a row (a wedged
/// server that holds every request until its timeout).
pub(crate) async fn watch_crash(running: &mut [Running]) -> anyhow::Error {
    let client = reqwest::Client::new();
    let mut strikes = vec![0u32; running.len()];
    let mut next_look = Instant::now() + HEALTH_EVERY;
    loop {
        if let Err(e) = check_alive(running) {
            return e;
        }
        if Instant::now() >= next_look {
            for (i, (c, p)) in running.iter_mut().enumerate() {
                let answer = client
                    .get(format!("{}/health", c.url))
                    .timeout(HEALTH_TIMEOUT)
                    .send()
                    .await;
                let bad = match answer {
                    Ok(r) if r.status().is_success() => None,
                    Ok(r) => Some(format!("HTTP {}", r.status())),
                    Err(e) if e.is_timeout() => {
                        Some(format!("no answer in {}s", HEALTH_TIMEOUT.as_secs()))
                    }
                    Err(e) => Some(format!("{e}")),
                };
                strikes[i] = if bad.is_some() { strikes[i] + 1 } else { 0 };
                if let (Some(bad), true) = (bad, strikes[i] >= HEALTH_STRIKES) {
                    p.mark_dead();
                    return anyhow!(
                        "{}'s /health went bad while it served ({bad}, {HEALTH_STRIKES} times in \
                         a row); last log lines:\n{}",
                        who(c),
                        p.log_tail(20)
                    );
                }
            }
            next_look = Instant::now() + HEALTH_EVERY;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Wait until every component answers `/health` with 200, failing early when one exits and
/// at `timeout_s` with the log tails of those still waited for.
pub(crate) async fn wait_healthy(
    running: &mut [Running],
    timeout_s: f64,
    interrupted: &mut Interrupts,
    events: &dyn Events,
) -> Result<(), VariantError> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs_f64(timeout_s);
    let mut healthy = vec![false; running.len()];
    events.waiting("starting");
    let result = loop {
        if interrupted.requested() {
            break Err(VariantError::Interrupted);
        }
        if let Err(e) = check_alive(running) {
            break Err(e.into());
        }
        for (i, (c, _)) in running.iter().enumerate() {
            if !healthy[i] {
                healthy[i] = client
                    .get(format!("{}/health", c.url))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
            }
        }
        if healthy.iter().all(|h| *h) {
            break Ok(());
        }
        let waiting: Vec<&str> = running
            .iter()
            .zip(&healthy)
            .filter(|(_, h)| !**h)
            .map(|((c, _), _)| c.name.as_str())
            .collect();
        events.waiting(&format!("waiting for /health of {}", waiting.join(", ")));
        if Instant::now() >= deadline {
            let waiting: Vec<String> = running
                .iter()
                .zip(&healthy)
                .filter(|(_, h)| !**h)
                .map(|((c, p), _)| {
                    format!(
                        "{} ({}); last log lines:\n{}",
                        who(c),
                        c.url,
                        p.log_tail(10)
                    )
                })
                .collect();
            break Err(VariantError::Failed(anyhow!(
                "not healthy after {timeout_s}s (target.health_timeout_s): {}",
                waiting.join("\n")
            )));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = interrupted.first() => break Err(VariantError::Interrupted),
        }
    };
    events.waiting_done();
    result
}

/// How long a decoder's prompt-token counters may take to count the smoke request.
const COUNTERS_SETTLE: Duration = Duration::from_secs(10);

/// After the smoke request, every decoder must have received its prompt by KV transfer: a
/// proxy that drops `kv_transfer_params` makes decoders re-prefill silently, which would
/// measure the wrong system. vLLM versions without the per-source counter are only warned about.
pub(crate) async fn verify_kv_transfer(
    running: &[Running],
    mode: Mode,
    events: &dyn Events,
) -> anyhow::Result<()> {
    // vLLM counts a request's prompt tokens as its API server processes the engine's output,
    // which can come just after the client has the stream's end: a decoder whose counters
    // are still all zero is asked again for a while.
    let deadline = Instant::now() + COUNTERS_SETTLE;
    let (external, local) = loop {
        let mut external = 0.0;
        let mut local = 0.0;
        for (c, _) in running
            .iter()
            .filter(|(c, _)| c.role == ComponentRole::Decode)
        {
            match metrics::kv_sources(&c.url).await {
                Some(counters) => {
                    external += counters.external;
                    local += counters.computed;
                }
                None => {
                    events.warning(&format!(
                        "{} exports no prompt_tokens_by_source_total; KV transfer not verified",
                        c.name
                    ));
                    return Ok(());
                }
            }
        }
        if external + local > 0.0 || Instant::now() >= deadline {
            break (external, local);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Only a positive count proves a transfer (a server's NaN or negative count does not).
    if !(external.is_finite() && external > 0.0) {
        let hint = match mode {
            Mode::Lmcache => {
                "the same PYTHONHASHSEED on prefill and decode, the LMCache YAMLs' pd_* ports, \
                 and the decoders' \"LMCache hit tokens\" log lines"
            }
            _ => {
                "that decoders reach the prefills' side channels \
                 (VLLM_NIXL_SIDE_CHANNEL_HOST; the decoders' logs say)"
            }
        };
        bail!(
            "the smoke request reached the decoders without a KV transfer ({local} prompt tokens \
             computed locally, 0 transferred): check the proxy, --kv-transfer-config, and {hint}"
        );
    }
    events.info(&format!(
        "  KV transfer verified: {external} prompt tokens arrived by transfer"
    ));
    Ok(())
}

/// A disaggregated deployment must answer what one instance answers. The same greedy
/// completion goes straight to one instance (a prefill one for NIXL; for LMCache a decoder,
/// since its producer cannot serve alone), which computes it alone, and through the proxy
/// (prefill, KV hand-off, decode); with the same weights (`--load-format dummy` seeds
/// both instances alike) greedy decoding gives the same tokens, and KV that arrives corrupt,
/// incomplete or for the wrong positions changes them. The transfer counters prove KV moved;
/// this proves it was the right KV.
pub(crate) async fn verify_pd_output(
    entry_url: &str,
    (single_url, single_role): (&str, &str),
    model: &str,
    api_key: Option<&str>,
    events: &dyn Events,
) -> anyhow::Result<()> {
    let prompt =
        "The vbench output check compares a disaggregated answer with one instance's. ".repeat(4);
    // Streamed, as the load is (LMCache's proxy serves streams only).
    let body = json!({"model": model, "prompt": prompt, "max_tokens": 8, "temperature": 0,
                      "stream": true});
    let client = reqwest::Client::new();
    let answer = |url: String| {
        let request = post(&client, format!("{url}/v1/completions"), api_key)
            .json(&body)
            .timeout(Duration::from_secs(120));
        async move { streamed_text(request.send().await?, 8).await }
    };
    // The instance alone first: a disaggregated request before it could leave the prompt's KV
    // where that instance would find it.
    let alone = answer(single_url.to_owned())
        .await
        .with_context(|| format!("output check on the {single_role} instance {single_url}"))?;
    let through = answer(entry_url.to_owned())
        .await
        .with_context(|| format!("output check through {entry_url}"))?;
    if through != alone {
        bail!(
            "a greedy completion through prefill and decode ({through:?}) differs from the same \
             request on one instance ({alone:?}): the decoder did not continue from the right KV \
             (check that prefill and decode run the same model, weights, dtype and block size, \
             and the same PYTHONHASHSEED; if greedy decoding itself is not reproducible here, \
             e.g. near-ties in random weights on different kernels, set target.verify_output = \
             false)"
        );
    }
    events
        .info("  output verified: 8 greedy tokens through prefill and decode equal one instance's");
    Ok(())
}

/// The text a streamed completion of at most `max_tokens` tokens generated, read with the load
/// generator's bounded SSE reader (a hostile or broken server cannot make it hold more).
async fn streamed_text(resp: reqwest::Response, max_tokens: usize) -> anyhow::Result<String> {
    use futures::StreamExt;
    let status = resp.status();
    let mut bytes = resp.bytes_stream();
    if !status.is_success() {
        let first = bytes.next().await.and_then(Result::ok).unwrap_or_default();
        bail!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&first)
                .chars()
                .take(300)
                .collect::<String>()
        );
    }
    let mut parser = SseParser::new();
    let mut account = StreamAccount::new(true, max_tokens);
    let stream_error = |e: StreamError| anyhow!("{}: {}", e.kind(), e.message());
    while let Some(chunk) = bytes.next().await {
        parser
            .push(&chunk?, |data| account.on_event(data, Instant::now()))
            .map_err(stream_error)?;
    }
    parser
        .finish(|data| account.on_event(data, Instant::now()))
        .map_err(stream_error)?;
    if !account.done {
        bail!("the stream ended without [DONE]");
    }
    Ok(account.text.unwrap_or_default())
}

/// A smoke answer is four tokens: a megabyte is a broken or hostile server.
const SMOKE_BODY_BYTES: usize = 1 << 20;

/// One short streaming request through the whole path before measuring anything. Its prompt
/// spans several KV blocks (16 tokens each by default), so the decoders' transfer counter moves
/// even for a connector that only transfers full blocks.
pub(crate) async fn smoke(
    entry_url: &str,
    model: &str,
    api_key: Option<&str>,
) -> anyhow::Result<()> {
    let prompt = "Hello from the vbench smoke test. ".repeat(8);
    let body = json!({"model": model, "prompt": prompt, "max_tokens": 4, "stream": true,
                      "stream_options": {"include_usage": true}});
    let client = reqwest::Client::new();
    let resp = post(&client, format!("{entry_url}/v1/completions"), api_key)
        .json(&body)
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .context("smoke request")?;
    let status = resp.status();
    let body = crate::http_body::read_capped(resp, SMOKE_BODY_BYTES)
        .await
        .context("smoke request body")?;
    let text = String::from_utf8_lossy(&body);
    if !status.is_success() || !text.contains("data:") {
        let hint = match (status, api_key) {
            (reqwest::StatusCode::UNAUTHORIZED, None) => {
                " (the deployment wants an API key: name the variable that holds it in \
                 target.api_key_env)"
            }
            (reqwest::StatusCode::UNAUTHORIZED, Some(_)) => {
                " (the deployment refused target.api_key_env's key)"
            }
            _ => "",
        };
        bail!(
            "smoke request to {entry_url} failed: HTTP {status}: {}{hint}",
            text.chars().take(300).collect::<String>()
        );
    }
    Ok(())
}

/// With `target.api_key_env`, every instance must refuse a `/v1` request that lacks the key:
/// otherwise the setting did nothing (a vLLM that ignores `VLLM_API_KEY`, or a template that
/// drops it), and the run would believe in a protection it does not have. A warning names
/// such instances; the line says when all refused.
pub(crate) async fn verify_key_required(running: &[Running], events: &dyn Events) {
    let client = reqwest::Client::new();
    let mut open = Vec::new();
    let instances = running
        .iter()
        .filter(|(c, _)| c.role != ComponentRole::Proxy);
    for (c, _) in instances.clone() {
        let answer = client
            .get(format!("{}/v1/models", c.url))
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        match answer {
            Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => {}
            Ok(r) => open.push(format!("{} (HTTP {})", c.name, r.status().as_u16())),
            Err(e) => open.push(format!("{} ({e})", c.name)),
        }
    }
    if open.is_empty() {
        events.info(&format!(
            "  API key required: {} instance(s) refuse requests without it",
            instances.count()
        ));
    } else {
        events.warning(&format!(
            "target.api_key_env: {} did not refuse a request without the key (VLLM_API_KEY had \
             no effect there)",
            open.join(", ")
        ));
    }
}

/// A POST of vbench's own to the deployment, with the run's API key when it has one.
fn post(client: &reqwest::Client, url: String, api_key: Option<&str>) -> reqwest::RequestBuilder {
    let request = client.post(url);
    match api_key {
        Some(key) => request.bearer_auth(key),
        None => request,
    }
}
