//! The HTTP server: vLLM's routes over the simulated engine, fault injection, and the library
//! entry points (`serve`, `SimServer`) that the CLI and in-process tests use.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::engine::{EngineHandle, FrontendCosts, TokenStream};
use super::faults::{FaultSpec, Faults, RequestFault};
use super::metrics::{CacheConfigInfo, FaultKind, Metrics};
use super::pd::{self, Connector, KvIdentity, KvPlan, KvVerdict, Role};
use super::prefix_cache::block_hashes;
use super::profile::Profile;
use super::request::{self, ApiError, GenRequest};
use super::scheduler::SchedConfig;
use super::side_channel;
use super::sse::{Api, Encoder};
use super::tokens;

/// Everything one simulated instance needs.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub profile: Profile,
    /// The name clients must use in `model` (vLLM's --served-model-name).
    pub served_model: String,
    pub tp: u32,
    pub role: Role,
    pub connector: Connector,
    pub faults: FaultSpec,
    /// NIXL side channel this instance advertises (VLLM_NIXL_SIDE_CHANNEL_HOST / _PORT).
    pub kv_host: String,
    pub kv_port: u16,
    /// Engine id for kv_transfer_params; random when None.
    pub engine_id: Option<String>,
    /// NIXL: serve (prefill) or handshake with (decode) the side channel, as vLLM does
    /// ([`super::side_channel`]).
    pub kv_side_channel: bool,
    /// Where lines for the instance's log go (the command prints them; the server prints
    /// nothing itself). None: dropped.
    pub log: Option<std::sync::mpsc::Sender<String>>,
    /// How prompt tokens are counted (the real tokenizer when given one).
    pub counter: tokens::Counter,
    /// vLLM's automatic prefix caching (its default; off with `--no-enable-prefix-caching`).
    pub prefix_caching: bool,
    /// LMCache producer: the proxy's notification socket (LMCache's `pd_proxy_host:port`),
    /// told once per TP rank when a request's KV is on its decoder.
    pub lmcache_proxy: Option<std::net::SocketAddr>,
    /// vLLM's `--num-gpu-blocks-override`: the instance's KV cache in blocks, instead of the
    /// profile's capacity.
    pub kv_blocks_override: Option<u64>,
    /// vLLM's `--api-key` / `VLLM_API_KEY`: `/v1` requests without it are refused.
    pub api_key: Option<String>,
}

impl SimConfig {
    /// A simple instance of a built-in profile serving `model`, no faults.
    pub fn new(profile: Profile, model: &str) -> Self {
        SimConfig {
            profile,
            served_model: model.to_string(),
            tp: 1,
            role: Role::Simple,
            connector: Connector::Nixl,
            faults: FaultSpec::default(),
            kv_host: "localhost".into(),
            kv_port: 5600,
            engine_id: None,
            kv_side_channel: false,
            log: None,
            counter: tokens::Counter::default(),
            prefix_caching: true,
            lmcache_proxy: None,
            kv_blocks_override: None,
            api_key: None,
        }
    }
}

/// How `serve` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServeExit {
    /// The shutdown future completed (SIGTERM in the CLI).
    Shutdown,
    /// A crash fault fired; the CLI exits with status 1 at once.
    Crashed(String),
}

struct App {
    cfg: SimConfig,
    engine: EngineHandle,
    metrics: Arc<Metrics>,
    faults: Faults,
    crash: watch::Sender<Option<String>>,
    kv_id: KvIdentity,
    /// What `/metrics` says of the KV cache (`cache_config_info`).
    cache_info: CacheConfigInfo,
    /// A NIXL decoder's side-channel handshakes (with `kv_side_channel`).
    handshakes: Option<side_channel::Handshakes>,
    started: u64,
    /// LMCache producer: requests whose KV it has reported to the proxy.
    kv_notified: std::sync::atomic::AtomicU64,
    /// Decoder: requests that arrived with KV to take by transfer.
    kv_offered: std::sync::atomic::AtomicU64,
}

type St = State<Arc<App>>;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A random UUID-shaped engine id, like vLLM's.
fn engine_uuid() -> String {
    let (a, b) = (random_hex(), random_hex());
    format!(
        "{}-{}-4{}-8{}-{}",
        &a[..8],
        &a[8..12],
        &a[13..16],
        &b[..3],
        &b[4..16]
    )
}

fn random_hex() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl App {
    fn crash(&self, why: &str) {
        self.faults.mark_crashed();
        let _ = self.crash.send(Some(why.to_string()));
    }
}

/// Serve `config` on `listener` until `shutdown` completes or a crash fault fires.
/// In-flight streams are cut on a crash and given up to 2 s to finish on a shutdown.
pub async fn serve(
    config: SimConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<ServeExit> {
    config.faults.check()?;
    let metrics = Arc::new(Metrics::default());
    let mut sched = SchedConfig {
        prefix_caching: config.prefix_caching,
        ..SchedConfig::from_profile(&config.profile, config.tp)
    };
    if let Some(blocks) = config.kv_blocks_override {
        sched.kv_capacity_tokens = blocks * u64::from(sched.block_size);
    }
    let cache_info = CacheConfigInfo {
        block_size: sched.block_size,
        capacity_tokens: sched.kv_capacity_tokens,
        max_model_len: config.profile.max_model_len,
        prefix_caching: sched.prefix_caching,
    };
    let t = &config.profile.timing;
    let engine = EngineHandle::start(
        sched,
        FrontendCosts {
            base_s: t.frontend_ms * 1e-3,
            serial_s: t.frontend_serial_ms * 1e-3,
            per_token_s: t.frontend_per_output_token_us * 1e-6,
        },
        metrics.clone(),
    );
    let (crash_tx, mut crash_rx) = watch::channel(None);
    let kv_id = KvIdentity {
        engine_id: config.engine_id.clone().unwrap_or_else(engine_uuid),
        host: config.kv_host.clone(),
        port: config.kv_port,
        tp: config.tp,
        block_size: config.profile.block_size,
    };
    let nixl_side_channel = config.kv_side_channel && config.connector == Connector::Nixl;
    let side_channel = match (nixl_side_channel, config.role) {
        (true, Role::Prefill) => {
            Some(side_channel::listen(&kv_id.host, kv_id.port, kv_id.engine_id.clone()).await?)
        }
        _ => None,
    };
    let app = Arc::new(App {
        faults: Faults::new(config.faults.clone()),
        handshakes: (nixl_side_channel && config.role == Role::Decode)
            .then(side_channel::Handshakes::default),
        cfg: config,
        engine,
        metrics,
        crash: crash_tx,
        kv_id,
        cache_info,
        started: unix_now(),
        kv_notified: std::sync::atomic::AtomicU64::new(0),
        kv_offered: std::sync::atomic::AtomicU64::new(0),
    });
    if let Some(deadline) = app.faults.crash_deadline() {
        let a = app.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline.into()).await;
            a.crash("crash fault: --crash-after elapsed");
        });
    }
    let router = Router::new()
        .route("/health", get(health))
        .route("/ping", get(health))
        .route("/version", get(version))
        .route("/v1/models", get(models))
        .route("/metrics", get(metrics_page))
        .route("/tokenize", post(tokenize))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            require_key,
        ))
        .with_state(app.clone());

    let (stop_tx, mut stop_rx) = watch::channel(false);
    // Tokens are small writes a few ms apart: without TCP_NODELAY, Nagle's algorithm holds
    // them back and the client would measure the network stack, not the engine.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    });
    let server = tokio::spawn(async move { server.await });
    let _side_channel = side_channel.map(AbortOnDrop);
    tokio::select! {
        _ = shutdown => {
            let _ = stop_tx.send(true);
            // Streams may run for minutes: give them a moment, then drop them.
            let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
            Ok(ServeExit::Shutdown)
        }
        why = crash_reason(&mut crash_rx) => {
            let _ = stop_tx.send(true);
            Ok(ServeExit::Crashed(why))
        }
    }
}

/// vLLM's authentication: with a key, a `/v1` request (OPTIONS aside) that does not carry
/// `Authorization: Bearer KEY` gets 401 `{"error": "Unauthorized"}`; other paths (`/health`,
/// `/metrics`, `/tokenize`) stay open.
async fn require_key(
    State(app): State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(key) = &app.cfg.api_key {
        let guarded = req.uri().path().starts_with("/v1") && req.method() != Method::OPTIONS;
        let carried = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .is_some_and(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && token == key);
        if guarded && !carried {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error": "Unauthorized"})),
            )
                .into_response();
        }
    }
    next.run(req).await
}

/// Stops a background task when `serve` returns.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Wait for a crash fault and say why it fired.
async fn crash_reason(rx: &mut watch::Receiver<Option<String>>) -> String {
    let why = rx
        .wait_for(|c| c.is_some())
        .await
        .map(|c| c.clone().unwrap_or_default());
    match why {
        Ok(why) => why,
        Err(_) => std::future::pending().await,
    }
}

/// A server running in this process on 127.0.0.1 (for tests and embedding).
pub struct SimServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<ServeExit>>,
}

impl SimServer {
    /// Bind 127.0.0.1 on a free port and serve `config` in the background.
    pub async fn start(config: SimConfig) -> anyhow::Result<SimServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(config, listener, async move {
            let _ = rx.await;
        }));
        Ok(SimServer {
            addr,
            stop: Some(tx),
            task,
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop it (like SIGTERM) and wait.
    pub async fn stop(mut self) -> anyhow::Result<ServeExit> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.await?
    }

    /// Wait for it to end by itself (a crash fault).
    pub async fn wait(self) -> anyhow::Result<ServeExit> {
        let SimServer { stop, task, .. } = self;
        let r = task.await?;
        drop(stop);
        r
    }
}

fn json_response(status: StatusCode, v: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn api_error(app: &App, e: ApiError) -> Response {
    if e.status < 500 {
        app.metrics
            .requests_bad
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    json_response(
        StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
        e.body(),
    )
}

/// A response whose body fails at once: the client sees the connection drop.
fn broken_response() -> Response {
    let body = Body::from_stream(futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("simulated crash"))
    }));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Server-wide faults every route obeys: a hung server never answers, a crashed one drops
/// the connection, a slow-starting one answers 503.
async fn gate(app: &App) -> Option<Response> {
    if app.faults.hung() {
        std::future::pending::<()>().await;
    }
    if app.faults.crashed() {
        return Some(broken_response());
    }
    if app.faults.unhealthy() {
        app.metrics.fault(FaultKind::Unhealthy);
        return Some(api_error(
            app,
            ApiError {
                status: 503,
                kind: "ServiceUnavailableError",
                message: "sim-serve is starting (--unhealthy-for)".into(),
                param: None,
            },
        ));
    }
    None
}

async fn health(State(app): St) -> Response {
    if let Some(r) = gate(&app).await {
        return r;
    }
    StatusCode::OK.into_response()
}

async fn version(State(app): St) -> Response {
    if let Some(r) = gate(&app).await {
        return r;
    }
    json_response(StatusCode::OK, json!({"version": super::sse::FINGERPRINT}))
}

async fn not_found() -> Response {
    json_response(StatusCode::NOT_FOUND, json!({"detail": "Not Found"}))
}

async fn models(State(app): St) -> Response {
    if let Some(r) = gate(&app).await {
        return r;
    }
    let m = &app.cfg.served_model;
    json_response(
        StatusCode::OK,
        json!({"object": "list", "data": [{
            "id": m,
            "object": "model",
            "created": app.started,
            "owned_by": "vllm",
            "root": m,
            "parent": null,
            "max_model_len": app.cfg.profile.max_model_len,
            "permission": [{
                "id": format!("modelperm-{}", random_hex()),
                "object": "model_permission",
                "created": app.started,
                "allow_create_engine": false,
                "allow_sampling": true,
                "allow_logprobs": true,
                "allow_search_indices": false,
                "allow_view": true,
                "allow_fine_tuning": false,
                "organization": "*",
                "group": null,
                "is_blocking": false,
            }],
        }]}),
    )
}

async fn metrics_page(State(app): St) -> Response {
    if let Some(r) = gate(&app).await {
        return r;
    }
    let text = app.metrics.render(
        &app.engine.snapshot(),
        &app.cfg.served_model,
        &app.cache_info,
        app.cfg.role != Role::Simple && app.cfg.connector == Connector::Nixl,
    );
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn parse_body(app: &App, body: &Bytes) -> Result<Value, Box<Response>> {
    let err = match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.is_object() => return Ok(v),
        Ok(_) => ApiError::bad_request("the request body must be a JSON object", None),
        Err(e) => ApiError::bad_request(format!("invalid JSON: {e}"), None),
    };
    Err(Box::new(api_error(app, err)))
}

async fn tokenize(State(app): St, body: Bytes) -> Response {
    if let Some(r) = gate(&app).await {
        return r;
    }
    let v = match parse_body(&app, &body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let (count, ids) = if let Some(m) = v.get("messages") {
        match request::chat_prompt_tokens(m, &app.cfg.counter) {
            Ok(n) => (
                n,
                (0..n).map(|i| 3 + (i * 7919) % 4000).collect::<Vec<u32>>(),
            ),
            Err(e) => return api_error(&app, e),
        }
    } else {
        match v.get("prompt") {
            // The ids a completion of this prompt is read as (so a proxy may send them back).
            Some(Value::String(s)) => {
                let ids = app.cfg.counter.prompt_ids(s);
                (ids.len() as u32, ids)
            }
            other => match request::completion_prompt_tokens(other, &app.cfg.counter) {
                Ok(n) => (n, (0..n).map(|i| 3 + (i * 7919) % 4000).collect()),
                Err(e) => return api_error(&app, e),
            },
        }
    };
    json_response(
        StatusCode::OK,
        json!({"count": count, "max_model_len": app.cfg.profile.max_model_len, "tokens": ids, "token_strs": null}),
    )
}

async fn completions(State(app): St, body: Bytes) -> Response {
    endpoint(app, body, Api::Completions).await
}

async fn chat(State(app): St, body: Bytes) -> Response {
    endpoint(app, body, Api::Chat).await
}

async fn endpoint(app: Arc<App>, body: Bytes, api: Api) -> Response {
    if let Some(r) = gate(&app).await {
        return r;
    }
    let v = match parse_body(&app, &body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    match request::parse(
        &v,
        api,
        &app.cfg.served_model,
        app.cfg.profile.max_model_len,
        &app.cfg.counter,
    ) {
        Ok(req) => generate(app, req).await,
        Err(e) => api_error(&app, e),
    }
}

async fn generate(app: Arc<App>, req: GenRequest) -> Response {
    if pd::producer_without_receiver(app.cfg.role, app.cfg.connector, &req.kv_params) {
        // As LMCache 0.5.6 on vLLM 0.26 does: its PD backend stores every prompt for a
        // decoder, finds none named, and the engine dies (AttributeError on
        // receiver_init_port).
        app.crash("LMCache producer got a request without kv_transfer_params.disagg_spec");
        return broken_response();
    }
    let fault = app.faults.draw();
    match fault {
        RequestFault::Crash => {
            app.crash("crash fault: --crash-after-requests reached");
            return broken_response();
        }
        RequestFault::Fail => {
            app.metrics.fault(FaultKind::Fail);
            // As vLLM logs a request that failed in the engine, at its ERROR level.
            if let Some(log) = &app.cfg.log {
                let _ = log.send(format!(
                    "ERROR {} [sim] simulated failure (--fail-fraction): request answered \
                     with HTTP 500",
                    chrono::Local::now().format("%m-%d %H:%M:%S")
                ));
            }
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": {"message": "simulated failure (--fail-fraction)", "type": "InternalServerError", "param": null, "code": 500}}),
            );
        }
        RequestFault::Hang => {
            app.metrics.fault(FaultKind::Hang);
            std::future::pending::<()>().await;
        }
        RequestFault::Cut { .. } | RequestFault::None => {}
    }
    let (mut plan, verdict) = pd::plan(
        app.cfg.role,
        app.cfg.connector,
        &req.kv_params,
        req.prompt_tokens,
    );
    if let (KvPlan::Consume, Some(handshakes)) = (&plan, &app.handshakes) {
        if let Err(why) = handshakes.check(&req.kv_params).await {
            // vLLM's "recompute" policy: the decoder prefills the prompt itself.
            if let Some(log) = &app.cfg.log {
                let _ = log.send(format!(
                    "NIXL KV transfer failed, prefilling locally: {why}"
                ));
            }
            app.metrics
                .kv_side_channel_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            plan = KvPlan::Local;
        }
    }
    if plan == KvPlan::Consume
        && app.cfg.role == Role::Decode
        && counted_past(&app.kv_offered, app.cfg.faults.recompute_kv_after)
    {
        if let Some(log) = &app.cfg.log {
            let _ = log
                .send("KV transfer failed, prefilling locally (--recompute-kv-after)".to_owned());
        }
        plan = KvPlan::Local;
    }
    match verdict {
        KvVerdict::Ok => {}
        KvVerdict::DecodeWithoutParams => {
            app.metrics
                .decode_without_kv
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        KvVerdict::Invalid => {
            app.metrics
                .kv_params_invalid
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if app.cfg.role == Role::Decode {
                app.metrics
                    .decode_without_kv
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
    let received = Instant::now();
    tokio::time::sleep(app.engine.frontend_delay()).await;
    let id = app.engine.new_id();
    let Some(ts) = app.engine.submit(
        id,
        req.prompt_tokens,
        req.max_tokens,
        plan == KvPlan::Consume,
        block_hashes(&req.prompt_ids, app.cfg.profile.block_size),
    ) else {
        return api_error(
            &app,
            ApiError {
                status: 503,
                kind: "ServiceUnavailableError",
                message: "the engine has stopped".into(),
                param: None,
            },
        );
    };
    // Which text the tokens spell: a sampled answer is the request's own; a greedy one
    // (temperature 0) follows from the prompt, as a real model's does, so the same prompt
    // through a prefill and a decoder reads the same as on one instance, unless the decoder's
    // transferred KV is corrupt (`--corrupt-kv`).
    let text = if req.greedy {
        let g = tokens::Greedy::after(&req.prompt_ids);
        OutputText::Greedy(if plan == KvPlan::Consume && app.cfg.faults.corrupt_kv {
            g.corrupted()
        } else {
            g
        })
    } else {
        OutputText::Sampled(ts.id)
    };
    let rid = match req.api {
        Api::Completions => format!("cmpl-{}", random_hex()),
        Api::Chat => format!("chatcmpl-{}", random_hex()),
    };
    let enc = Encoder::new(req.api, rid, unix_now(), &app.cfg.served_model);
    if req.stream {
        let cut_after = match fault {
            RequestFault::Cut { after_tokens } => Some(after_tokens),
            _ => None,
        };
        stream_response(app, req, enc, ts, received, cut_after, text)
    } else {
        full_response(app, req, enc, ts, received, plan, text).await
    }
}

/// Where a response's token texts come from: a sampled answer is the request's own (keyed by
/// its engine id); a greedy one follows from the context ([`tokens::Greedy`]).
enum OutputText {
    Sampled(u64),
    Greedy(tokens::Greedy),
}

impl OutputText {
    /// Output token `index` (asked in order): its id and text.
    fn token(&mut self, index: u32) -> (u32, &'static str) {
        match self {
            OutputText::Sampled(key) => {
                let id = tokens::piece_id(*key, index);
                (id, tokens::piece(*key, index))
            }
            OutputText::Greedy(g) => g.next_token(),
        }
    }
}

struct Timing {
    received: Instant,
    prev: Instant,
}

impl Timing {
    fn token(&mut self, m: &Metrics, index: u32, finished: bool) {
        let now = Instant::now();
        if index == 0 {
            m.ttft.observe((now - self.received).as_secs_f64());
        } else {
            m.itl.observe((now - self.prev).as_secs_f64());
        }
        self.prev = now;
        if finished {
            m.e2e.observe((now - self.received).as_secs_f64());
            m.requests_ok
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

async fn full_response(
    app: Arc<App>,
    req: GenRequest,
    enc: Encoder,
    mut ts: TokenStream,
    received: Instant,
    plan: KvPlan,
    mut out: OutputText,
) -> Response {
    let mut crash = app.crash.subscribe();
    let mut text = String::new();
    let mut first_id = 0;
    let mut n = 0u32;
    let mut timing = Timing {
        received,
        prev: received,
    };
    loop {
        let ev = tokio::select! {
            ev = ts.next() => ev,
            _ = crash_reason(&mut crash) => None,
        };
        let Some(ev) = ev else {
            return broken_response();
        };
        let (id, piece) = out.token(ev.index);
        if ev.index == 0 {
            first_id = id;
        }
        text.push_str(piece);
        n += 1;
        timing.token(&app.metrics, ev.index, ev.finished);
        if ev.finished {
            break;
        }
    }
    let kv = if plan == KvPlan::ProduceNixl {
        pd::produced_params(&app.kv_id, &enc.id, req.prompt_tokens)
    } else if let Some(kv) =
        pd::first_token_params(app.cfg.role, app.cfg.connector, &req.kv_params, first_id)
    {
        notify_kv_pushed(&app, &req.kv_params);
        kv
    } else {
        Value::Null
    };
    json_response(
        StatusCode::OK,
        enc.full_response(&text, req.prompt_tokens, n, kv),
    )
}

/// Counts one more of the events `counter` counts; whether a fault set to begin after
/// `after` of them (`--recompute-kv-after`, `--drop-kv-notifications-after`) hits this one.
fn counted_past(counter: &std::sync::atomic::AtomicU64, after: Option<u64>) -> bool {
    let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    after.is_some_and(|after| n >= after)
}

/// As LMCache's producer does once the KV is written to the decoder: one `ProxyNotif` per TP
/// rank to the proxy (the decoder side models the transfer time itself).
fn notify_kv_pushed(app: &Arc<App>, params: &Value) {
    let (Some(addr), Some(req_id)) = (
        app.cfg.lmcache_proxy,
        params["disagg_spec"]["req_id"].as_str(),
    ) else {
        return;
    };
    if counted_past(&app.kv_notified, app.cfg.faults.drop_kv_notifications_after) {
        return;
    }
    let (req_id, ranks, log) = (req_id.to_owned(), app.cfg.tp, app.cfg.log.clone());
    tokio::spawn(async move {
        for _ in 0..ranks {
            if let Err(e) = crate::kv_notify::push(addr, &req_id).await {
                if let Some(log) = &log {
                    let _ = log.send(format!(
                        "LMCache: notifying the proxy at {addr} for {req_id} failed: {e:#}"
                    ));
                }
            }
        }
    });
}

struct StreamState {
    app: Arc<App>,
    enc: Encoder,
    ts: TokenStream,
    crash: watch::Receiver<Option<String>>,
    timing: Timing,
    prompt: u32,
    include_usage: bool,
    cut_after: Option<u32>,
    text: OutputText,
    sent: u32,
    end: bool,
}

fn stream_response(
    app: Arc<App>,
    req: GenRequest,
    enc: Encoder,
    ts: TokenStream,
    received: Instant,
    cut_after: Option<u32>,
    text: OutputText,
) -> Response {
    let state = StreamState {
        crash: app.crash.subscribe(),
        app,
        enc,
        ts,
        timing: Timing {
            received,
            prev: received,
        },
        prompt: req.prompt_tokens,
        include_usage: req.include_usage,
        cut_after,
        text,
        sent: 0,
        end: false,
    };
    let stream = futures::stream::unfold(state, |mut s| async move {
        if s.end {
            return None;
        }
        if s.cut_after.is_some_and(|k| s.sent >= k) {
            // Cut when the next token would have come, so the bytes already sent are flushed.
            let _ = s.ts.next().await;
            s.app.metrics.fault(FaultKind::Cut);
            s.end = true;
            return Some((Err(std::io::Error::other("simulated stream cut")), s));
        }
        let ev = tokio::select! {
            ev = s.ts.next() => ev,
            _ = crash_reason(&mut s.crash) => None,
        };
        let Some(ev) = ev else {
            s.end = true;
            return Some((Err(std::io::Error::other("engine stopped")), s));
        };
        let mut out = String::with_capacity(640);
        if ev.index == 0 && s.enc.api == Api::Chat {
            out.push_str(&s.enc.role_chunk());
        }
        s.enc
            .token_chunk(&mut out, s.text.token(ev.index).1, ev.finished);
        s.sent += 1;
        s.timing.token(&s.app.metrics, ev.index, ev.finished);
        if ev.finished {
            if s.include_usage {
                out.push_str(&s.enc.usage_chunk(s.prompt, s.sent));
            }
            out.push_str(Encoder::DONE);
            s.end = true;
        }
        Some((Ok::<Bytes, std::io::Error>(Bytes::from(out)), s))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
