//! The LMCache prefill/decode flow.
//!
//! 1. The prefiller gets the request with `max_tokens = 1`, streaming, and
//!    `kv_transfer_params = {ret_first_tok: true, disagg_spec: {req_id, receiver_host,
//!    receiver_init_port[], receiver_alloc_port[]}}`; it pushes the KV to the decoder's LMCache.
//! 2. Its first token goes to the client at once.
//! 3. The decoder gets the original request with `max_tokens − 1` and the same params; it waits
//!    for the KV and streams the rest, which is relayed with its usage corrected by the one
//!    token the prefiller produced.
//!
//! vbench's proxy does not listen for LMCache's ZMQ "prefill done" notification: the prefiller
//! YAML it writes sets `pd_skip_proxy_notification: true`, and the decoder waits for the KV.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};

use super::server::{error_response, pick, relay, upstream_failure, Shared};

static NEXT_REQ: AtomicU64 = AtomicU64::new(0);

pub(super) async fn handle(s: &Shared, path: &str, request: Value) -> Result<Response, Response> {
    let max_key = if request.get("max_completion_tokens").is_some() {
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    let Some(max_tokens) = request.get(max_key).and_then(Value::as_u64) else {
        return Err(error_response(
            StatusCode::BAD_REQUEST,
            "lmcache mode needs max_tokens in the request",
        ));
    };
    let prefiller = pick(&s.config.prefill, &s.next_prefill);
    let d_index = s.next_decode.fetch_add(1, Ordering::Relaxed) % s.config.decode.len();
    let decoder = s.config.decode[d_index].clone();
    let (init, alloc) = s.config.lmcache_decoder_ports[d_index].clone();
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
    let params = json!({
        "ret_first_tok": true,
        "disagg_spec": {
            "req_id": req_id,
            "receiver_host": receiver_host,
            "receiver_init_port": init,
            "receiver_alloc_port": alloc,
        }
    });
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

    let mut prefill_body = request.clone();
    let obj = prefill_body.as_object_mut().expect("checked object");
    obj.insert(max_key.into(), json!(1));
    obj.insert("kv_transfer_params".into(), params.clone());
    obj.remove("stream_options");
    let first = s
        .client
        .post(format!("{prefiller}{path}"))
        .json(&prefill_body)
        .send()
        .await
        .map_err(|e| upstream_failure(prefiller, path, &e))?;
    if !first.status().is_success() {
        return Err(relay(first).await);
    }
    let first_events = read_events(first).await.map_err(|e| {
        error_response(
            StatusCode::BAD_GATEWAY,
            format!("prefill instance {prefiller}: {e}"),
        )
    })?;

    let mut decode_body = request;
    let obj = decode_body.as_object_mut().expect("checked object");
    let remaining = max_tokens.saturating_sub(1);
    obj.insert("kv_transfer_params".into(), params);
    obj.insert(max_key.into(), json!(remaining));
    let client = s.client.clone();
    let path = path.to_owned();

    // Stream: prefiller's content events now, then the decoder's (usage corrected), then [DONE].
    let head = futures::stream::iter(
        first_events
            .into_iter()
            .filter(|e| is_content(e))
            .map(|e| Ok::<Bytes, std::io::Error>(Bytes::from(format!("data: {e}\n\n")))),
    );
    let tail = async_stream_decoder(client, decoder, path, decode_body, remaining);
    let body = Body::from_stream(head.chain(tail));
    Ok(([(header::CONTENT_TYPE, "text/event-stream")], body).into_response())
}

fn is_content(event: &str) -> bool {
    serde_json::from_str::<Value>(event)
        .ok()
        .and_then(|v| {
            v.get("choices")
                .and_then(Value::as_array)
                .map(|c| !c.is_empty())
        })
        .unwrap_or(false)
}

/// Read a whole SSE response into its `data:` payloads (without `[DONE]`).
async fn read_events(resp: reqwest::Response) -> anyhow::Result<Vec<String>> {
    let text = resp.text().await?;
    Ok(text
        .split("\n\n")
        .filter_map(|block| {
            block
                .lines()
                .find_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        })
        .map(str::trim)
        .filter(|d| *d != "[DONE]" && !d.is_empty())
        .map(str::to_owned)
        .collect())
}

fn async_stream_decoder(
    client: reqwest::Client,
    decoder: String,
    path: String,
    body: Value,
    remaining: u64,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::once(async move {
        let done = Bytes::from_static(b"data: [DONE]\n\n");
        if remaining == 0 {
            return futures::stream::iter(vec![Ok(done)]).boxed();
        }
        let resp = match client
            .post(format!("{decoder}{path}"))
            .json(&body)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                let msg = format!("decode instance {decoder} answered HTTP {}", r.status());
                return futures::stream::iter(vec![Err(std::io::Error::other(msg))]).boxed();
            }
            Err(e) => {
                return futures::stream::iter(vec![Err(std::io::Error::other(format!(
                    "decode instance {decoder}: {e}"
                )))])
                .boxed()
            }
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
                Ok(Bytes::from(out))
            })
            .boxed()
    })
    .flatten()
}

/// Add the prefiller's first token to a usage event's completion and total counts.
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
    for key in ["completion_tokens", "total_tokens"] {
        if let Some(n) = usage.get(key).and_then(Value::as_u64) {
            usage[key] = json!(n + 1);
        }
    }
    format!("data: {v}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_the_prefillers_token() {
        let b = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":6,\"total_tokens\":11}}\n\n";
        let out = rewrite_usage(b);
        assert!(
            out.contains("\"completion_tokens\":7") && out.contains("\"total_tokens\":12"),
            "{out}"
        );
        let plain = "data: {\"choices\":[{\"text\":\"a\"}]}\n\n";
        assert_eq!(rewrite_usage(plain), plain);
        assert_eq!(rewrite_usage("data: [DONE]\n\n"), "data: [DONE]\n\n");
    }
}
