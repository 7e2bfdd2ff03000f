//! The LMCache prefill/decode flow, as LMCache's own disaggregation proxy runs it.
//!
//! 1. The prompt is tokenised on the prefiller (`/tokenize`), so prefill and decode see the
//!    same token ids.
//! 2. The prefiller gets those ids with `max_tokens = 1`, not streamed, and
//!    `kv_transfer_params = {ret_first_tok: true, disagg_spec: {req_id, receiver_host,
//!    receiver_init_port[], receiver_alloc_port[]}}`; it pushes the prompt's KV to the
//!    decoder's LMCache and answers its first token, text and id (`kv_transfer_params.first_tok`).
//! 3. The client gets that first token at once.
//! 4. The decoder gets the prompt's ids followed by the first token's id, with `max_tokens − 1`
//!    and no `kv_transfer_params`: it finds the prompt's KV in its LMCache and continues after
//!    the first token. Its stream is relayed with its usage corrected (one more completion
//!    token; the prompt counted without the appended token).
//!
//! Without step 4's appended token the decoder would generate the first token a second time:
//! the client would read it twice and every later token one place late (vbench's output check
//! at start-up, `apply::health::verify_pd_output`, fails such a deployment).
//!
//! Between 3 and 4 the proxy waits, as LMCache's does, until every decoder TP rank's KV has
//! been reported written (`super::kv_ready`: the prefiller's ZeroMQ `ProxyNotif`). The
//! decoder looks the prompt up in its LMCache once, when the request arrives: asked before the
//! KV is there it recomputes the prompt. (`pd_skip_proxy_notification` is no way out: LMCache
//! 0.5.6's default async PD backend ignores it and PUSHes anyway.) A wait longer than
//! `kv_wait` fails the request: its stream breaks after the first token.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};

use super::kv_ready::KvReady;
use super::server::{error_response, pick, post_prefill, relay, upstream_failure, Auth, Shared};

static NEXT_REQ: AtomicU64 = AtomicU64::new(0);

pub(super) async fn handle(
    s: &Shared,
    auth: &Auth,
    path: &str,
    request: Value,
) -> Result<Response, Response> {
    if path != "/v1/completions" {
        return Err(error_response(
            StatusCode::BAD_REQUEST,
            "lmcache mode serves /v1/completions only (the decoder continues from token ids)",
        ));
    }
    let Some(max_tokens) = request.get("max_tokens").and_then(Value::as_u64) else {
        return Err(error_response(
            StatusCode::BAD_REQUEST,
            "lmcache mode needs max_tokens in the request",
        ));
    };
    let stream_client = request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !stream_client {
        return Err(error_response(
            StatusCode::BAD_REQUEST,
            "lmcache mode supports streaming requests only",
        ));
    }
    let prefiller = pick(&s.config.prefill, &s.next_prefill);
    let d_index = s.next_decode.fetch_add(1, Ordering::Relaxed) % s.config.decode.len();
    let decoder = s.config.decode[d_index].clone();
    let (init, alloc) = s.config.lmcache_decoder_ports[d_index].clone();
    let init_ranks = init.len() as u32;
    let receiver_host = decoder
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let req_id = format!(
        "vbench-{}-{}",
        std::process::id(),
        NEXT_REQ.fetch_add(1, Ordering::Relaxed)
    );

    let tokens = tokenize(s, auth, prefiller, &request).await?;
    let slots = match s.buffers.get(d_index) {
        Some(buffer) => Some(reserve_buffer(s, buffer, d_index, tokens.len()).await?),
        None => None,
    };

    let mut prefill_body = request.clone();
    let obj = prefill_body.as_object_mut().expect("checked object");
    obj.insert("prompt".into(), json!(tokens));
    obj.insert("max_tokens".into(), json!(1));
    obj.insert("stream".into(), json!(false));
    obj.remove("stream_options");
    obj.insert(
        "kv_transfer_params".into(),
        json!({
            "ret_first_tok": true,
            "disagg_spec": {
                "req_id": req_id,
                "receiver_host": receiver_host,
                "receiver_init_port": init,
                "receiver_alloc_port": alloc,
            }
        }),
    );
    let first = post_prefill(s, auth, prefiller, path, &prefill_body).await?;
    let bad = |why: String| {
        error_response(
            StatusCode::BAD_GATEWAY,
            format!("prefill instance {prefiller}: {why}"),
        )
    };
    let first = crate::http_body::read_json(first)
        .await
        .map_err(|e| bad(e.to_string()))?;
    let Some(first_tok) = first["kv_transfer_params"]["first_tok"].as_u64() else {
        return Err(bad(
            "no kv_transfer_params.first_tok in its answer: is it running LMCacheConnectorV1 \
             as kv_producer?"
                .into(),
        ));
    };
    let head = json!({
        "id": first["id"],
        "object": "text_completion",
        "created": first["created"],
        "model": first["model"],
        "choices": [{
            "index": 0,
            "text": first["choices"][0]["text"].as_str().unwrap_or(""),
            "logprobs": null,
            "finish_reason": if max_tokens <= 1 { json!("length") } else { Value::Null },
            "stop_reason": null,
        }],
    });

    let mut decode_body = request;
    let obj = decode_body.as_object_mut().expect("checked object");
    let remaining = max_tokens.saturating_sub(1);
    let mut prompt = tokens;
    prompt.push(first_tok);
    obj.insert("prompt".into(), json!(prompt));
    obj.insert("max_tokens".into(), json!(remaining));
    obj.remove("kv_transfer_params");

    // Stream: the prefiller's token now, then the decoder's (usage corrected), then [DONE].
    let head = futures::stream::iter([Ok::<Bytes, std::io::Error>(Bytes::from(format!(
        "data: {head}\n\n"
    )))]);
    let wait = KvWait {
        ready: s.kv_ready.clone(),
        req_id,
        ranks: init_ranks,
        timeout: s.config.kv_wait,
        log: s.config.log.clone(),
        slots,
    };
    let tail = async_stream_decoder(
        auth.on(s.client.post(format!("{decoder}{path}"))),
        decoder,
        decode_body,
        remaining,
        wait,
    );
    let body = Body::from_stream(head.chain(tail));
    Ok(([(header::CONTENT_TYPE, "text/event-stream")], body).into_response())
}

/// Hold `ceil(prompt tokens / chunk_size)` slots of decoder `d_index`'s transfer buffer, as
/// LMCache's proxy does, so that prefillers never push more KV than the buffer holds. A prompt
/// larger than the whole buffer is refused; the wait is bounded by the proxy's timeout.
async fn reserve_buffer(
    s: &Shared,
    buffer: &Arc<tokio::sync::Semaphore>,
    d_index: usize,
    prompt_tokens: usize,
) -> Result<tokio::sync::OwnedSemaphorePermit, Response> {
    let chunk = s.config.lmcache_chunk_size.max(1) as usize;
    let capacity = s.config.lmcache_buffer_slots[d_index];
    let slots = prompt_tokens.div_ceil(chunk);
    if slots as u64 > capacity {
        return Err(error_response(
            StatusCode::BAD_REQUEST,
            format!(
                "a prompt of {prompt_tokens} tokens needs {slots} chunks of decoder {}'s LMCache \
                 transfer buffer, which holds {capacity}: raise its pd_buffer_size",
                s.config.decode[d_index]
            ),
        ));
    }
    let acquire = buffer.clone().acquire_many_owned(slots as u32);
    match tokio::time::timeout(s.config.timeout, acquire).await {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(_)) => Err(error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "the proxy is shutting down",
        )),
        Err(_) => Err(error_response(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "no room in decoder {}'s LMCache transfer buffer within {:.0} s",
                s.config.decode[d_index],
                s.config.timeout.as_secs_f64()
            ),
        )),
    }
}

/// The prompt's token ids, as the prefiller's tokenizer reads a completion's prompt (a list of
/// ids is taken as it is).
async fn tokenize(
    s: &Shared,
    auth: &Auth,
    prefiller: &str,
    request: &Value,
) -> Result<Vec<u64>, Response> {
    let prompt = &request["prompt"];
    if let Some(ids) = prompt.as_array().and_then(|a| {
        a.iter()
            .map(Value::as_u64)
            .collect::<Option<Vec<u64>>>()
            .filter(|v| !v.is_empty())
    }) {
        return Ok(ids);
    }
    if !prompt.is_string() {
        return Err(error_response(
            StatusCode::BAD_REQUEST,
            "lmcache mode takes one prompt per request: a string or a list of token ids",
        ));
    }
    let resp = auth
        .on(s.client.post(format!("{prefiller}/tokenize")))
        .json(&json!({"model": request["model"], "prompt": prompt}))
        .send()
        .await
        .map_err(|e| upstream_failure(prefiller, "/tokenize", &e))?;
    if !resp.status().is_success() {
        return Err(relay(resp).await);
    }
    let v = crate::http_body::read_json(resp).await.map_err(|e| {
        error_response(
            StatusCode::BAD_GATEWAY,
            format!("prefill instance {prefiller}/tokenize: {e}"),
        )
    })?;
    v["tokens"]
        .as_array()
        .and_then(|a| a.iter().map(Value::as_u64).collect::<Option<Vec<u64>>>())
        .ok_or_else(|| {
            error_response(
                StatusCode::BAD_GATEWAY,
                format!("prefill instance {prefiller}/tokenize answered no `tokens` list"),
            )
        })
}

/// What the decoder's request waits for: every rank's notification for `req_id`.
struct KvWait {
    ready: Arc<KvReady>,
    req_id: String,
    ranks: u32,
    timeout: Duration,
    log: Option<std::sync::mpsc::Sender<String>>,
    /// The decoder buffer's slots this request holds until its KV is reported.
    slots: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The longest SSE event relayed from a decoder; a stream without an event end within this
/// many bytes is broken off.
const MAX_EVENT_BYTES: usize = 1 << 20;

/// `request`: the decoder's POST, to be sent once the KV is there.
fn async_stream_decoder(
    request: reqwest::RequestBuilder,
    decoder: String,
    body: Value,
    remaining: u64,
    wait: KvWait,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::once(async move {
        let fail =
            |msg: String| futures::stream::iter(vec![Err(std::io::Error::other(msg))]).boxed();
        let done = Bytes::from_static(b"data: [DONE]\n\n");
        let reported = wait
            .ready
            .wait(&wait.req_id, wait.ranks, wait.timeout)
            .await;
        // As LMCache's proxy: the slots are free again once the KV is on the decoder.
        drop(wait.slots);
        if let Err(seen) = reported {
            let msg = format!(
                "request {}: {seen} of {} prefiller ranks reported its KV on decoder {decoder} \
                 within {:.1} s (LMCache notification); not decoding it without its KV",
                wait.req_id,
                wait.ranks,
                wait.timeout.as_secs_f64()
            );
            if let Some(log) = &wait.log {
                let _ = log.send(msg.clone());
            }
            return fail(msg);
        }
        if remaining == 0 {
            return futures::stream::iter(vec![Ok(done)]).boxed();
        }
        let resp = match request.json(&body).send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                return fail(format!(
                    "decode instance {decoder} answered HTTP {}",
                    r.status()
                ))
            }
            Err(e) => return fail(format!("decode instance {decoder}: {e}")),
        };
        // Re-frame the decoder's events, adding the prefiller's token to its usage.
        let mut buffer = String::new();
        resp.bytes_stream()
            .map(move |chunk| -> Result<Bytes, std::io::Error> {
                let chunk =
                    chunk.map_err(|e| std::io::Error::other(format!("decode stream: {e}")))?;
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                let mut out = String::new();
                while let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    out.push_str(&rewrite_usage(&block));
                }
                if buffer.len() > MAX_EVENT_BYTES {
                    return Err(std::io::Error::other(format!(
                        "decode stream: no event end within {MAX_EVENT_BYTES} bytes"
                    )));
                }
                Ok(Bytes::from(out))
            })
            .boxed()
    })
    .flatten()
}

/// Correct a decoder's usage event for the split: the first token, which the decoder read as
/// the prompt's last, was the prefiller's output (one more completion token, one fewer prompt
/// token; the total stays).
fn rewrite_usage(block: &str) -> String {
    let Some(data) = block.trim().strip_prefix("data: ") else {
        return block.to_owned();
    };
    let Ok(mut v) = serde_json::from_str::<Value>(data) else {
        return block.to_owned();
    };
    let Some(usage) = v.get_mut("usage").filter(|u| u.is_object()) else {
        return block.to_owned();
    };
    if let Some(n) = usage.get("completion_tokens").and_then(Value::as_u64) {
        usage["completion_tokens"] = json!(n + 1);
    }
    if let Some(n) = usage.get("prompt_tokens").and_then(Value::as_u64) {
        usage["prompt_tokens"] = json!(n.saturating_sub(1));
    }
    format!("data: {v}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_the_prefillers_token_as_output_not_prompt() {
        let b = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":6,\"completion_tokens\":6,\"total_tokens\":12}}\n\n";
        let out = rewrite_usage(b);
        assert!(
            out.contains("\"completion_tokens\":7")
                && out.contains("\"prompt_tokens\":5")
                && out.contains("\"total_tokens\":12"),
            "{out}"
        );
        let plain = "data: {\"choices\":[{\"text\":\"a\"}]}\n\n";
        assert_eq!(rewrite_usage(plain), plain);
        assert_eq!(rewrite_usage("data: [DONE]\n\n"), "data: [DONE]\n\n");
    }
}
