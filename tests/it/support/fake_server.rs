//! A scripted OpenAI-compatible streaming server with known timing, for the load generator's
//! tests and its accuracy benchmark (`examples/fixed_server.rs`, which includes this file). Not a simulator of vLLM
//! (that is `vbench sim-serve`): it streams `max_tokens` tokens after a fixed TTFT with a fixed
//! gap and logs, per request, when it received it and when it wrote each token, so a client's
//! measurements can be checked against the server's truth.
//!
//! Markers in the prompt script misbehaviour, one request at a time:
//! `@ttft=MS`, `@gap=MS` (per-request timing), `@status=CODE` (HTTP error), `@cut=N` (break
//! the connection after N tokens), `@malformed=N` (invalid JSON after N tokens), `@error=N`
//! (an in-stream `{"error": ...}` after N tokens), `@nodone` (close without `[DONE]`),
//! `@nousage` (no usage chunk), `@hang` (headers, then silence).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

/// Default timing of every request.
#[derive(Debug, Clone, Copy)]
pub struct FakeTiming {
    pub ttft: Duration,
    pub gap: Duration,
}

/// What the server did for one request (nanoseconds since the server started).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServedLog {
    /// The `x-request-id` header, if any.
    pub id: Option<String>,
    pub recv_ns: u64,
    pub first_ns: Option<u64>,
    pub last_ns: Option<u64>,
    pub tokens: u64,
}

struct Shared {
    timing: FakeTiming,
    t0: Instant,
    log: Mutex<Vec<ServedLog>>,
    /// When set, requests without `Authorization: Bearer KEY` get HTTP 401 (as vLLM's
    /// `--api-key`).
    api_key: Mutex<Option<String>>,
}

/// A running server; dropped = stopped.
pub struct FakeServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    /// Start on 127.0.0.1 at `port` (0 = any free port) on the current tokio runtime.
    pub async fn start(port: u16, timing: FakeTiming) -> std::io::Result<FakeServer> {
        let shared = Arc::new(Shared {
            timing,
            t0: Instant::now(),
            log: Mutex::new(Vec::new()),
            api_key: Mutex::new(None),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        // Without TCP_NODELAY, Nagle holds each small token write until the previous one is
        // acknowledged (tens of ms with delayed ACKs): the stream would lie about its timing.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = router(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeServer { addr, shared, task })
    }

    /// From now on answer only requests that carry `Authorization: Bearer KEY`.
    pub fn require_api_key(&self, key: &str) {
        *self.shared.api_key.lock().unwrap() = Some(key.to_owned());
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything served so far.
    pub fn log(&self) -> Vec<ServedLog> {
        self.shared
            .log
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/v1/models",
            get(|| async {
                Json(
                    serde_json::json!({"object": "list", "data": [{"id": "m", "object": "model"}]}),
                )
            }),
        )
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat))
        .route("/log", get(get_log))
        .with_state(shared)
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(default)]
    reset: bool,
}

/// The log as JSON lines; `?reset=true` also empties it.
async fn get_log(State(s): State<Arc<Shared>>, Query(q): Query<LogQuery>) -> String {
    let entries = {
        let mut l = s.log.lock().unwrap_or_else(|e| e.into_inner());
        if q.reset {
            std::mem::take(&mut *l)
        } else {
            l.clone()
        }
    };
    let mut out = String::with_capacity(entries.len() * 100);
    for e in entries {
        out.push_str(&serde_json::to_string(&e).unwrap_or_default());
        out.push('\n');
    }
    out
}

#[derive(Deserialize)]
struct Req {
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    messages: Option<Vec<Msg>>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    stream_options: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Msg {
    #[serde(default)]
    content: String,
}

#[derive(Default)]
struct Script {
    ttft: Option<u64>,
    gap: Option<u64>,
    status: Option<u16>,
    cut: Option<u64>,
    malformed: Option<u64>,
    error: Option<u64>,
    nodone: bool,
    nousage: bool,
    hang: bool,
}

fn script(prompt: &str) -> Script {
    let mut s = Script::default();
    for word in prompt.split_whitespace().filter(|w| w.starts_with('@')) {
        let (k, v) = word[1..].split_once('=').unwrap_or((&word[1..], ""));
        let num = v.parse::<u64>().ok();
        match k {
            "ttft" => s.ttft = num,
            "gap" => s.gap = num,
            "status" => s.status = num.map(|n| n as u16),
            "cut" => s.cut = num,
            "malformed" => s.malformed = num,
            "error" => s.error = num,
            "nodone" => s.nodone = true,
            "nousage" => s.nousage = true,
            "hang" => s.hang = true,
            _ => {}
        }
    }
    s
}

async fn completions(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(r): Json<Req>,
) -> Response {
    serve(s, headers, r, false)
}

async fn chat(State(s): State<Arc<Shared>>, headers: HeaderMap, Json(r): Json<Req>) -> Response {
    serve(s, headers, r, true)
}

fn chunk(chat: bool, last: bool) -> Bytes {
    Bytes::from(token_event(chat, last))
}

/// The SSE event of one token, as vLLM streams it (`last` carries `finish_reason`); also
/// used by the benchmark's bare fixed-timing server.
pub fn token_event(chat: bool, last: bool) -> String {
    let fin = if last { "\"length\"" } else { "null" };
    if chat {
        format!(
            "data: {{\"id\":\"chatcmpl-f\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" tok\"}},\"finish_reason\":{fin}}}]}}\n\n"
        )
    } else {
        format!(
            "data: {{\"id\":\"cmpl-f\",\"object\":\"text_completion\",\"model\":\"m\",\"choices\":[{{\"index\":0,\"text\":\" tok\",\"finish_reason\":{fin}}}]}}\n\n"
        )
    }
}

enum Step {
    Token(u64),
    Tail,
    End,
}

fn serve(s: Arc<Shared>, headers: HeaderMap, r: Req, chat: bool) -> Response {
    let recv = Instant::now();
    let required = s.api_key.lock().unwrap().clone();
    if let Some(key) = required {
        let sent = headers.get("authorization").and_then(|v| v.to_str().ok());
        if sent != Some(format!("Bearer {key}").as_str()) {
            return (
                StatusCode::UNAUTHORIZED,
                Json(serde_json::json!({"error": "Unauthorized"})),
            )
                .into_response();
        }
    }
    let prompt = r.prompt.clone().unwrap_or_else(|| {
        r.messages
            .as_ref()
            .map(|m| {
                m.iter()
                    .map(|m| m.content.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    });
    let sc = script(&prompt);
    let n = r
        .max_completion_tokens
        .or(r.max_tokens)
        .unwrap_or(16)
        .max(1);
    let id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let ns = |t: Instant| (t - s.t0).as_nanos() as u64;
    let idx = {
        let mut l = s.log.lock().unwrap_or_else(|e| e.into_inner());
        l.push(ServedLog {
            id,
            recv_ns: ns(recv),
            first_ns: None,
            last_ns: None,
            tokens: 0,
        });
        l.len() - 1
    };
    if let Some(code) = sc.status {
        let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (
            code,
            Json(serde_json::json!({"error": {"message": "scripted failure", "code": code.as_u16()}})),
        )
            .into_response();
    }
    let ttft = sc.ttft.map(Duration::from_millis).unwrap_or(s.timing.ttft);
    let gap = sc.gap.map(Duration::from_millis).unwrap_or(s.timing.gap);
    let usage = !sc.nousage
        && r.stream_options
            .as_ref()
            .and_then(|o| o.get("include_usage"))
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
    let (mid, last) = (chunk(chat, false), chunk(chat, true));
    let prompt_tokens = prompt.split_whitespace().count() as u64;
    let first_at = tokio::time::Instant::from_std(recv + ttft);
    let hang = sc.hang;
    let state = (Step::Token(0), s.clone());
    let stream = futures::stream::unfold(state, move |(step, s)| {
        let (mid, last) = (mid.clone(), last.clone());
        async move {
            if hang {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return None;
            }
            match step {
                Step::Token(k) => {
                    if sc.cut == Some(k) {
                        return Some((Err(std::io::Error::other("scripted cut")), (Step::End, s)));
                    }
                    tokio::time::sleep_until(first_at + gap * k as u32).await;
                    if sc.malformed == Some(k) {
                        return Some((
                            Ok(Bytes::from_static(b"data: {\"choices\": [\n\n")),
                            (Step::End, s),
                        ));
                    }
                    if sc.error == Some(k) {
                        return Some((
                            Ok(Bytes::from_static(
                                b"data: {\"error\": {\"message\": \"scripted engine error\", \"code\": 500}}\n\n",
                            )),
                            (Step::End, s),
                        ));
                    }
                    let now = (Instant::now() - s.t0).as_nanos() as u64;
                    if let Ok(mut l) = s.log.lock() {
                        let e = &mut l[idx];
                        e.first_ns.get_or_insert(now);
                        e.last_ns = Some(now);
                        e.tokens = k + 1;
                    }
                    let next = if k + 1 < n {
                        Step::Token(k + 1)
                    } else {
                        Step::Tail
                    };
                    Some((Ok(if k + 1 < n { mid } else { last }), (next, s)))
                }
                Step::Tail => {
                    let mut tail = String::new();
                    if usage {
                        tail.push_str(&format!(
                            "data: {{\"id\":\"cmpl-f\",\"choices\":[],\"usage\":{{\"prompt_tokens\":{prompt_tokens},\"completion_tokens\":{n},\"total_tokens\":{}}}}}\n\n",
                            prompt_tokens + n
                        ));
                    }
                    if !sc.nodone {
                        tail.push_str("data: [DONE]\n\n");
                    }
                    if tail.is_empty() {
                        return None;
                    }
                    Some((Ok(Bytes::from(tail)), (Step::End, s)))
                }
                Step::End => None,
            }
        }
    });
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
