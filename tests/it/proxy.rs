//! The built-in proxy against scripted upstream instances on loopback: the NixlConnector
//! hand-off, round robin, error pass-through, and health.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use vbench::proxy::{serve, ProxyConfig, ProxyMode};

/// A scripted instance: records request bodies, answers by role.
#[derive(Clone)]
struct Upstream {
    name: &'static str,
    seen: Arc<Mutex<Vec<Value>>>,
    behaviour: Behaviour,
}

#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    Prefill,
    PrefillWithoutKv,
    PrefillFails,
    /// A JSON answer that never ends.
    PrefillEndless,
    Decode,
}

async fn completions(State(u): State<Upstream>, Json(body): Json<Value>) -> Response {
    u.seen.lock().unwrap().push(body.clone());
    match u.behaviour {
        Behaviour::Prefill => Json(json!({
            "choices": [{"text": "x"}],
            "kv_transfer_params": {"remote_engine_id": u.name, "remote_block_ids": [1, 2], "remote_host": "127.0.0.1", "remote_port": 5600}
        }))
        .into_response(),
        Behaviour::PrefillWithoutKv => Json(json!({"choices": [{"text": "x"}]})).into_response(),
        Behaviour::PrefillFails => (StatusCode::BAD_REQUEST, Json(json!({"error": {"message": "prompt too long"}}))).into_response(),
        Behaviour::PrefillEndless => {
            let open = futures::stream::once(async { Ok::<_, std::convert::Infallible>(axum::body::Bytes::from_static(b"{\"choices\": [")) });
            let forever = futures::stream::repeat_with(|| Ok(axum::body::Bytes::from_static(&[b' '; 64 * 1024])));
            ([("content-type", "application/json")], axum::body::Body::from_stream(futures::StreamExt::chain(open, forever))).into_response()
        }
        Behaviour::Decode => {
            let sse = format!(
                "data: {{\"choices\":[{{\"text\":\"{}\"}}]}}\n\ndata: {{\"choices\":[{{\"text\":\"!\"}}]}}\n\ndata: [DONE]\n\n",
                u.name
            );
            ([("content-type", "text/event-stream")], sse).into_response()
        }
    }
}

async fn start(u: Upstream) -> String {
    let app = Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(completions))
        .route("/health", get(|| async { "ok" }))
        .route(
            "/v1/models",
            get(|| async { Json(json!({"data": [{"id": "m"}]})) }),
        )
        .with_state(u);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn upstream(name: &'static str, behaviour: Behaviour) -> Upstream {
    Upstream {
        name,
        seen: Arc::default(),
        behaviour,
    }
}

/// POST a completion request to the proxy at `url`.
async fn complete(url: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/v1/completions"))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The proxy's `/metrics` text.
async fn scrape(url: &str) -> String {
    reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn proxy(config: ProxyConfig) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        serve(config, listener, std::future::pending())
            .await
            .unwrap()
    });
    format!("http://{addr}")
}

fn nixl(prefill: Vec<String>, decode: Vec<String>) -> ProxyConfig {
    ProxyConfig {
        mode: ProxyMode::Nixl,
        prefill,
        decode,
        backends: vec![],
        lmcache_decoder_ports: vec![],
        lmcache_notify: None,
        kv_wait: Duration::from_secs(5),
        lmcache_buffer_slots: vec![],
        lmcache_chunk_size: 256,
        timeout: Duration::from_secs(10),
        log: None,
    }
}

#[tokio::test]
async fn nixl_handoff_sends_prefill_one_token_then_decode_with_kv_params() {
    let p = upstream("p0", Behaviour::Prefill);
    let d = upstream("d0", Behaviour::Decode);
    let url = proxy(nixl(
        vec![start(p.clone()).await],
        vec![start(d.clone()).await],
    ))
    .await;
    let request = json!({"model": "m", "prompt": "hi", "max_tokens": 16, "stream": true, "stream_options": {"include_usage": true}});
    let resp = complete(&url, &request).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    assert!(
        text.starts_with("data: {\"choices\":[{\"text\":\"d0\"}]}"),
        "decoder stream relayed unchanged: {text}"
    );
    assert!(text.ends_with("data: [DONE]\n\n"));

    let pre = p.seen.lock().unwrap()[0].clone();
    assert_eq!(pre["max_tokens"], 1);
    assert_eq!(pre["stream"], false);
    assert!(pre.get("stream_options").is_none());
    assert_eq!(pre["kv_transfer_params"]["do_remote_decode"], true);
    assert_eq!(pre["kv_transfer_params"]["do_remote_prefill"], false);
    assert_eq!(pre["prompt"], "hi");

    let dec = d.seen.lock().unwrap()[0].clone();
    assert_eq!(dec["max_tokens"], 16, "decoder gets the original request");
    assert_eq!(dec["stream"], true);
    assert_eq!(dec["stream_options"]["include_usage"], true);
    assert_eq!(dec["kv_transfer_params"]["remote_engine_id"], "p0");
    assert_eq!(dec["kv_transfer_params"]["remote_block_ids"], json!([1, 2]));
}

#[tokio::test]
async fn chat_prefill_caps_max_completion_tokens_too() {
    let p = upstream("p0", Behaviour::Prefill);
    let d = upstream("d0", Behaviour::Decode);
    let url = proxy(nixl(
        vec![start(p.clone()).await],
        vec![start(d.clone()).await],
    ))
    .await;
    let request = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 9, "stream": true});
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let pre = p.seen.lock().unwrap()[0].clone();
    assert_eq!(pre["max_completion_tokens"], 1);
    assert_eq!(d.seen.lock().unwrap()[0]["max_completion_tokens"], 9);
}

#[tokio::test]
async fn prefillers_and_decoders_are_picked_round_robin_independently() {
    let ps = [
        upstream("p0", Behaviour::Prefill),
        upstream("p1", Behaviour::Prefill),
    ];
    let d = upstream("d0", Behaviour::Decode);
    let url = proxy(nixl(
        vec![start(ps[0].clone()).await, start(ps[1].clone()).await],
        vec![start(d.clone()).await],
    ))
    .await;
    let client = reqwest::Client::new();
    for _ in 0..4 {
        let r = client
            .post(format!("{url}/v1/completions"))
            .json(&json!({"prompt": "a", "max_tokens": 2}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
    }
    assert_eq!(ps[0].seen.lock().unwrap().len(), 2);
    assert_eq!(ps[1].seen.lock().unwrap().len(), 2);
    let engines: Vec<Value> = d
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|b| b["kv_transfer_params"]["remote_engine_id"].clone())
        .collect();
    assert_eq!(
        engines,
        [json!("p0"), json!("p1"), json!("p0"), json!("p1")]
    );
}

#[tokio::test]
async fn prefill_error_is_passed_through_as_an_error() {
    let p = upstream("p0", Behaviour::PrefillFails);
    let d = upstream("d0", Behaviour::Decode);
    let url = proxy(nixl(vec![start(p).await], vec![start(d.clone()).await])).await;
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/completions"))
        .json(&json!({"prompt": "a", "max_tokens": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("prompt too long"));
    assert!(d.seen.lock().unwrap().is_empty(), "decode never called");
}

#[tokio::test]
async fn an_endless_prefill_answer_is_a_502_at_the_bound_not_unbounded_memory() {
    let p = upstream("p0", Behaviour::PrefillEndless);
    let d = upstream("d0", Behaviour::Decode);
    let url = proxy(nixl(vec![start(p).await], vec![start(d.clone()).await])).await;
    let r = complete(&url, &json!({"prompt": "a", "max_tokens": 2})).await;
    assert_eq!(r.status(), 502);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("'s answer: the body is longer than 16777216 bytes"),
        "{text}"
    );
    assert!(d.seen.lock().unwrap().is_empty(), "decode never called");
}

#[tokio::test]
async fn missing_kv_transfer_params_fail_loudly_instead_of_silent_reprefill() {
    let p = upstream("p0", Behaviour::PrefillWithoutKv);
    let d = upstream("d0", Behaviour::Decode);
    let url = proxy(nixl(vec![start(p).await], vec![start(d.clone()).await])).await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{url}/v1/completions"))
        .json(&json!({"prompt": "a", "max_tokens": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("returned no kv_transfer_params"));
    let metrics = scrape(&url).await;
    assert!(
        metrics.contains("vbench_proxy_missing_kv_transfer_params_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn health_requires_every_instance_and_models_are_served() {
    let p = upstream("p0", Behaviour::Prefill);
    let d = upstream("d0", Behaviour::Decode);
    let url = proxy(nixl(vec![start(p).await], vec![start(d).await])).await;
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(format!("{url}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let models: Value = client
        .get(format!("{url}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "m");

    // An instance that is down makes the proxy unhealthy, naming it.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let url = proxy(nixl(
        vec![dead.clone()],
        vec![start(upstream("d1", Behaviour::Decode)).await],
    ))
    .await;
    let r = client.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains(&dead));
}

#[tokio::test]
async fn round_robin_spreads_whole_requests() {
    let a = upstream("a", Behaviour::Decode);
    let b = upstream("b", Behaviour::Decode);
    let config = ProxyConfig {
        mode: ProxyMode::RoundRobin,
        prefill: vec![],
        decode: vec![],
        backends: vec![start(a.clone()).await, start(b.clone()).await],
        lmcache_decoder_ports: vec![],
        lmcache_notify: None,
        kv_wait: Duration::from_secs(5),
        lmcache_buffer_slots: vec![],
        lmcache_chunk_size: 256,
        timeout: Duration::from_secs(10),
        log: None,
    };
    let url = proxy(config).await;
    let client = reqwest::Client::new();
    let mut firsts = vec![];
    for _ in 0..4 {
        let body = json!({"prompt": "q", "max_tokens": 3, "stream": true});
        let text = client
            .post(format!("{url}/v1/completions"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        firsts.push(text[..40].to_owned());
    }
    assert_eq!(a.seen.lock().unwrap().len(), 2);
    assert_eq!(
        b.seen.lock().unwrap()[0]["max_tokens"],
        3,
        "bodies forwarded unchanged"
    );
    assert!(firsts[0].contains("\"a\"") && firsts[1].contains("\"b\""));
}

#[tokio::test]
async fn unreachable_decoder_is_a_502_not_a_hang() {
    let p = upstream("p0", Behaviour::Prefill);
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let url = proxy(nixl(vec![start(p).await], vec![dead])).await;
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/completions"))
        .json(&json!({"prompt": "a", "max_tokens": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    // The cause, not only reqwest's "error sending request".
    let text = r.text().await.unwrap();
    assert!(text.contains("Connection refused"), "{text}");
}

/// A prefill instance that redirects is answered as it answered: the proxy follows no
/// redirect (which would turn the POST into a GET and blame the missing KV params).
#[tokio::test]
async fn a_redirect_is_passed_back_not_followed() {
    let app = Router::new().route(
        "/v1/completions",
        post(|| async { (StatusCode::FOUND, [("location", "/elsewhere")], "moved") }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let d = upstream("d0", Behaviour::Decode);
    let url = proxy(nixl(vec![format!("http://{addr}")], vec![start(d).await])).await;
    let r = complete(&url, &json!({"prompt": "a", "max_tokens": 2})).await;
    assert_eq!(r.status(), 302);
    assert_eq!(r.text().await.unwrap(), "moved");
}

#[test]
fn config_without_instances_is_refused() {
    let args = vbench::cmd::proxy::ProxyArgs {
        host: "127.0.0.1".into(),
        port: 0,
        mode: vbench::cmd::proxy::ModeArg::Nixl,
        prefill: vec!["http://127.0.0.1:1".into()],
        decode: vec![],
        backend: vec![],
        lmcache_decoder_ports: vec![],
        lmcache_notify: None,
        kv_wait_s: 1.0,
        lmcache_buffer_slots: vec![],
        lmcache_chunk_size: 256,
        timeout_s: 1.0,
    };
    let err = args.config().unwrap_err();
    assert!(err
        .to_string()
        .contains("at least one --prefill URL and one --decode URL"));
}

/// LMCache-flavoured instances, answering as vLLM does: `/tokenize` gives a prompt's ids (here
/// one per character, plus 100), a producer asked `ret_first_tok` answers one token and its
/// id in JSON and sends `notify_ranks` "KV is on the decoder" notifications to `notify` (as
/// many as the decoder has ranks, unless told fewer), and a stream answers `max_tokens` tokens
/// named after the instance.
async fn lmcache_upstream(
    name: &'static str,
    seen: Arc<Mutex<Vec<Value>>>,
    notify: Option<(std::net::SocketAddr, usize, Duration)>,
) -> String {
    let app = Router::new()
        .route(
            "/tokenize",
            post(|Json(body): Json<Value>| async move {
                let ids: Vec<u64> = body["prompt"]
                    .as_str()
                    .unwrap()
                    .bytes()
                    .map(|b| 100 + u64::from(b))
                    .collect();
                Json(json!({"count": ids.len(), "tokens": ids}))
            }),
        )
        .route(
            "/v1/completions",
            post(move |Json(body): Json<Value>| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(body.clone());
                    let n = body["max_tokens"].as_u64().unwrap();
                    let prompt = body["prompt"].as_array().map_or(0, Vec::len) as u64;
                    if body["stream"] == json!(false) {
                        let req_id = body["kv_transfer_params"]["disagg_spec"]["req_id"]
                            .as_str()
                            .unwrap()
                            .to_owned();
                        if let Some((addr, ranks, delay)) = notify {
                            // The KV "arrives" `delay` after the prefill answered.
                            tokio::spawn(async move {
                                tokio::time::sleep(delay).await;
                                for _ in 0..ranks {
                                    vbench::kv_notify::push(addr, &req_id).await.unwrap();
                                }
                            });
                        }
                        let answer = json!({"id": "cmpl-p", "created": 1, "model": "m",
                            "choices": [{"index": 0, "text": format!("{name}0")}],
                            "kv_transfer_params": {"first_tok": 42}});
                        return ([("content-type", "application/json")], answer.to_string());
                    }
                    let mut sse = String::new();
                    for i in 0..n {
                        sse.push_str(&format!("data: {{\"choices\":[{{\"text\":\"{name}{i}\"}}]}}\n\n"));
                    }
                    sse.push_str(&format!(
                        "data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":{prompt},\"completion_tokens\":{n},\"total_tokens\":{}}}}}\n\n",
                        n + prompt
                    ));
                    sse.push_str("data: [DONE]\n\n");
                    ([("content-type", "text/event-stream")], sse)
                }
            }),
        )
        .route("/health", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// An LMCache proxy over one producer sending `ranks_notified` notifications per request and
/// one decoder of two TP ranks, with no limit on in-flight transfers.
async fn lmcache_pair(
    ranks_notified: usize,
    kv_wait: Duration,
) -> (String, Arc<Mutex<Vec<Value>>>, Arc<Mutex<Vec<Value>>>) {
    lmcache_pair_with(ranks_notified, kv_wait, Duration::ZERO, vec![], 256).await
}

/// [`lmcache_pair`] whose KV arrives `kv_delay` after each prefill, with a decoder buffer of
/// `buffer_slots` chunks of `chunk_size` tokens.
async fn lmcache_pair_with(
    ranks_notified: usize,
    kv_wait: Duration,
    kv_delay: Duration,
    buffer_slots: Vec<u64>,
    chunk_size: u64,
) -> (String, Arc<Mutex<Vec<Value>>>, Arc<Mutex<Vec<Value>>>) {
    let (ps, ds) = (Arc::new(Mutex::new(vec![])), Arc::new(Mutex::new(vec![])));
    let notify = free_port();
    let config = ProxyConfig {
        mode: ProxyMode::Lmcache,
        prefill: vec![
            lmcache_upstream("p", ps.clone(), Some((notify, ranks_notified, kv_delay))).await,
        ],
        decode: vec![lmcache_upstream("d", ds.clone(), None).await],
        backends: vec![],
        lmcache_decoder_ports: vec![(vec![7300, 7301], vec![7400, 7401])],
        lmcache_notify: Some(notify),
        kv_wait,
        lmcache_buffer_slots: buffer_slots,
        lmcache_chunk_size: chunk_size,
        timeout: Duration::from_secs(10),
        log: None,
    };
    (proxy(config).await, ps, ds)
}

#[tokio::test]
async fn lmcache_flow_streams_prefill_token_then_decoder_rest_after_it() {
    let (url, ps, ds) = lmcache_pair(2, Duration::from_secs(10)).await;
    let body = json!({"model": "m", "prompt": "hi", "max_tokens": 4, "stream": true, "stream_options": {"include_usage": true}});
    let text = complete(&url, &body).await.text().await.unwrap();
    let texts: Vec<String> = text
        .split("\n\n")
        .filter_map(|b| b.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["choices"][0]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        texts,
        ["p0", "d0", "d1", "d2"],
        "first token from the prefiller, the rest from the decoder"
    );
    assert!(
        text.contains("\"completion_tokens\":4") && text.contains("\"prompt_tokens\":2"),
        "usage counts all four tokens out and the two-token prompt in: {text}"
    );
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert_eq!(text.matches("[DONE]").count(), 1);

    let p = ps.lock().unwrap()[0].clone();
    let d = ds.lock().unwrap()[0].clone();
    // The prefiller reads the prompt's ids, answers one token in JSON, and pushes the KV.
    assert_eq!(p["prompt"], json!([204, 205]));
    assert_eq!(
        (p["max_tokens"].clone(), p["stream"].clone()),
        (json!(1), json!(false))
    );
    assert_eq!(p["kv_transfer_params"]["ret_first_tok"], true);
    assert_eq!(
        p["kv_transfer_params"]["disagg_spec"]["receiver_init_port"],
        json!([7300, 7301])
    );
    assert_eq!(
        p["kv_transfer_params"]["disagg_spec"]["receiver_alloc_port"],
        json!([7400, 7401])
    );
    // The decoder continues after the first token: the prompt's ids and its id, no params.
    assert_eq!(d["prompt"], json!([204, 205, 42]));
    assert_eq!(d["max_tokens"], 3);
    assert!(d.get("kv_transfer_params").is_none(), "{d}");
}

/// A decoder asked before its KV arrived would recompute the prompt: without every rank's
/// notification the proxy never asks it, and the request fails after its first token.
#[tokio::test]
async fn lmcache_decode_waits_for_every_rank_and_fails_without_them() {
    let (url, ps, ds) = lmcache_pair(1, Duration::from_millis(300)).await;
    let body = json!({"model": "m", "prompt": "hi", "max_tokens": 4, "stream": true});
    let resp = complete(&url, &body).await;
    assert_eq!(resp.status(), 200, "the first token was already on its way");
    let mut stream = resp.bytes_stream();
    let mut got = Vec::new();
    let mut broke = false;
    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
        match chunk {
            Ok(b) => got.extend_from_slice(&b),
            Err(_) => {
                broke = true;
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(broke, "the stream must break, not end cleanly: {text}");
    assert!(
        text.contains("\"p0\"") && !text.contains("[DONE]"),
        "{text}"
    );
    assert_eq!(ps.lock().unwrap().len(), 1);
    assert!(ds.lock().unwrap().is_empty(), "the decoder was never asked");
    let metrics = scrape(&url).await;
    assert!(
        metrics.contains("vbench_proxy_lmcache_notifications_total 1\n")
            && metrics.contains("vbench_proxy_lmcache_kv_wait_timeouts_total 1\n"),
        "{metrics}"
    );
}

#[test]
fn lmcache_mode_needs_the_notification_address() {
    let args = vbench::cmd::proxy::ProxyArgs {
        host: "127.0.0.1".into(),
        port: 0,
        mode: vbench::cmd::proxy::ModeArg::Lmcache,
        prefill: vec!["http://127.0.0.1:1".into()],
        decode: vec!["http://127.0.0.1:2".into()],
        backend: vec![],
        lmcache_decoder_ports: vec!["7300:7400".into()],
        lmcache_notify: None,
        kv_wait_s: 1.0,
        lmcache_buffer_slots: vec![],
        lmcache_chunk_size: 256,
        timeout_s: 1.0,
    };
    let err = args.config().unwrap_err().to_string();
    assert!(err.contains("--lmcache-notify"), "{err}");
}

/// As LMCache's proxy: a request holds ceil(prompt tokens / chunk) slots of its decoder's
/// transfer buffer from before its prefill until its KV is reported. With room for one
/// request, a second one's prefill waits for the first's KV; a prompt larger than the whole
/// buffer is refused.
#[tokio::test]
async fn lmcache_transfers_in_flight_fit_the_decoders_buffer() {
    let delay = Duration::from_millis(400);
    // "hi" is two tokens: one slot of two-token chunks, the whole buffer.
    let (url, ps, _) = lmcache_pair_with(2, Duration::from_secs(5), delay, vec![1], 2).await;
    let body = json!({"model": "m", "prompt": "hi", "max_tokens": 2, "stream": true});
    let t0 = std::time::Instant::now();
    let (a, b) = tokio::join!(
        async { complete(&url, &body).await.text().await.unwrap() },
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            complete(&url, &body).await.text().await.unwrap()
        }
    );
    assert!(
        a.ends_with("data: [DONE]\n\n") && b.ends_with("data: [DONE]\n\n"),
        "{a}\n{b}"
    );
    assert_eq!(ps.lock().unwrap().len(), 2);
    assert!(
        t0.elapsed() >= 2 * delay,
        "the second prefill waited for the first KV: {:?}",
        t0.elapsed()
    );

    let big = json!({"model": "m", "prompt": "hello", "max_tokens": 2, "stream": true});
    let resp = complete(&url, &big).await;
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("a prompt of 5 tokens needs 3 chunks") && text.contains("which holds 1"),
        "{text}"
    );
    assert_eq!(ps.lock().unwrap().len(), 2, "never prefilled");
}
