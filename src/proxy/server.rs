//! The proxy's HTTP server.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use super::kv_ready::KvReady;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    Nixl,
    RoundRobin,
    Lmcache,
}

impl ProxyMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            ProxyMode::Nixl => "nixl",
            ProxyMode::RoundRobin => "round-robin",
            ProxyMode::Lmcache => "lmcache",
        }
    }
}

/// Where the proxy sends requests.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub mode: ProxyMode,
    pub prefill: Vec<String>,
    pub decode: Vec<String>,
    pub backends: Vec<String>,
    /// lmcache mode: each decoder's LMCache side-channel ports (init, alloc), one per TP rank.
    pub lmcache_decoder_ports: Vec<(Vec<u16>, Vec<u16>)>,
    /// lmcache mode: where to listen for the prefillers' "KV is on the decoder" notifications
    /// (their `pd_proxy_host:pd_proxy_port`).
    pub lmcache_notify: Option<SocketAddr>,
    /// lmcache mode: how long a request's decode waits for those notifications before it fails.
    pub kv_wait: Duration,
    /// lmcache mode: each decoder's transfer buffer in chunk slots (empty: no limit), and the
    /// chunk size in tokens.
    pub lmcache_buffer_slots: Vec<u64>,
    pub lmcache_chunk_size: u64,
    pub timeout: Duration,
    /// Where the proxy's log lines go (its command prints them); None: dropped.
    pub log: Option<std::sync::mpsc::Sender<String>>,
}

/// The lmcache mode's flags, as `vbench proxy` takes them.
pub struct LmcacheFlags<'a> {
    /// Per decoder, `INIT[,INIT..]:ALLOC[,ALLOC..]`.
    pub decoder_ports: &'a [String],
    pub notify: Option<SocketAddr>,
    pub kv_wait_s: f64,
    /// Per decoder, its transfer buffer in chunk slots (empty: no limit).
    pub buffer_slots: &'a [u64],
    pub chunk_size: u64,
}

impl ProxyConfig {
    /// A checked configuration.
    pub fn new(
        mode: ProxyMode,
        prefill: &[String],
        decode: &[String],
        backends: &[String],
        lmcache: LmcacheFlags<'_>,
        timeout_s: f64,
    ) -> anyhow::Result<Self> {
        let clean = |urls: &[String]| -> Vec<String> {
            urls.iter()
                .map(|u| u.trim_end_matches('/').to_owned())
                .collect()
        };
        let config = ProxyConfig {
            mode,
            prefill: clean(prefill),
            decode: clean(decode),
            backends: clean(backends),
            lmcache_decoder_ports: lmcache
                .decoder_ports
                .iter()
                .map(|s| parse_lmcache_ports(s))
                .collect::<anyhow::Result<_>>()?,
            lmcache_notify: lmcache.notify,
            kv_wait: Duration::from_secs_f64(lmcache.kv_wait_s.max(0.001)),
            lmcache_buffer_slots: lmcache.buffer_slots.to_vec(),
            lmcache_chunk_size: lmcache.chunk_size,
            timeout: Duration::from_secs_f64(timeout_s.max(0.001)),
            log: None,
        };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> anyhow::Result<()> {
        match self.mode {
            ProxyMode::Nixl | ProxyMode::Lmcache
                if self.prefill.is_empty() || self.decode.is_empty() =>
            {
                bail!(
                    "{} mode needs at least one --prefill URL and one --decode URL",
                    self.mode.as_str()
                )
            }
            ProxyMode::Lmcache if self.lmcache_decoder_ports.len() != self.decode.len() => {
                bail!(
                    "lmcache mode needs one --lmcache-decoder-ports per --decode URL ({} given for {} decoders)",
                    self.lmcache_decoder_ports.len(),
                    self.decode.len()
                )
            }
            ProxyMode::Lmcache if self.lmcache_notify.is_none() => {
                bail!(
                    "lmcache mode needs --lmcache-notify HOST:PORT, the prefillers' pd_proxy_host:pd_proxy_port"
                )
            }
            ProxyMode::Lmcache
                if !self.lmcache_buffer_slots.is_empty()
                    && self.lmcache_buffer_slots.len() != self.decode.len() =>
            {
                bail!(
                    "lmcache mode takes one --lmcache-buffer-slots per --decode URL, or none ({} given for {} decoders)",
                    self.lmcache_buffer_slots.len(),
                    self.decode.len()
                )
            }
            ProxyMode::Lmcache if self.lmcache_chunk_size == 0 => {
                bail!("--lmcache-chunk-size must be at least 1")
            }
            ProxyMode::RoundRobin if self.backends.is_empty() => {
                bail!("round-robin mode needs at least one --backend URL")
            }
            _ => {}
        }
        for url in self
            .prefill
            .iter()
            .chain(&self.decode)
            .chain(&self.backends)
        {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("instance URL {url:?} must start with http:// or https://");
            }
        }
        Ok(())
    }

    fn all_instances(&self) -> impl Iterator<Item = &String> {
        self.prefill
            .iter()
            .chain(&self.decode)
            .chain(&self.backends)
    }
}

pub(super) struct Shared {
    pub(super) config: ProxyConfig,
    pub(super) client: reqwest::Client,
    pub(super) next_prefill: AtomicUsize,
    pub(super) next_decode: AtomicUsize,
    pub(super) next_backend: AtomicUsize,
    pub(super) requests: AtomicU64,
    pub(super) upstream_errors: AtomicU64,
    pub(super) missing_kv_params: AtomicU64,
    /// lmcache mode: the prefillers' notifications, by request id.
    pub(super) kv_ready: Arc<KvReady>,
    /// lmcache mode: per decoder, its transfer buffer's free chunk slots (empty: no limit).
    pub(super) buffers: Vec<Arc<tokio::sync::Semaphore>>,
}

/// A client request's credentials (`Authorization`), passed on to every instance the request
/// reaches. The proxy checks none itself: the instances do, as vLLM does with `--api-key`.
#[derive(Clone, Default)]
pub(super) struct Auth(Option<header::HeaderValue>);

impl Auth {
    pub(super) fn of(headers: &HeaderMap) -> Auth {
        Auth(headers.get(header::AUTHORIZATION).cloned())
    }

    /// `builder` carrying the client's credentials, if it sent any.
    pub(super) fn on(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.0 {
            Some(v) => builder.header(reqwest::header::AUTHORIZATION, v.clone()),
            None => builder,
        }
    }
}

pub(super) fn pick<'a>(list: &'a [String], counter: &AtomicUsize) -> &'a str {
    &list[counter.fetch_add(1, Ordering::Relaxed) % list.len()]
}

/// Serve until `shutdown` resolves.
pub async fn serve(
    config: ProxyConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.check()?;
    let kv_ready = Arc::new(KvReady::default());
    // Ends with the proxy: the listener task is aborted when this guard drops.
    let _notifications = match (config.mode, config.lmcache_notify) {
        (ProxyMode::Lmcache, Some(addr)) => {
            let pull = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for LMCache notifications on {addr}"))?;
            Some(AbortOnDrop(tokio::spawn(super::kv_ready::listen(
                pull,
                kv_ready.clone(),
                config.log.clone(),
            ))))
        }
        _ => None,
    };
    let client = reqwest::Client::builder()
        .timeout(config.timeout)
        // An instance that redirects is misconfigured: following would turn a POST into a GET
        // and report something else.
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1024)
        // vLLM's server (uvicorn) closes a keep-alive connection idle for 5 s; one the pool
        // hands out just as that close arrives fails the request ("error sending request").
        // Dropping idle connections sooner leaves no such race.
        .pool_idle_timeout(std::time::Duration::from_secs(3))
        .build()
        .context("building the HTTP client")?;
    let shared = Arc::new(Shared {
        client,
        next_prefill: AtomicUsize::new(0),
        next_decode: AtomicUsize::new(0),
        next_backend: AtomicUsize::new(0),
        requests: AtomicU64::new(0),
        upstream_errors: AtomicU64::new(0),
        missing_kv_params: AtomicU64::new(0),
        buffers: config
            .lmcache_buffer_slots
            .iter()
            .map(|&n| {
                let n = usize::try_from(n)
                    .unwrap_or(usize::MAX)
                    .min(tokio::sync::Semaphore::MAX_PERMITS);
                Arc::new(tokio::sync::Semaphore::new(n))
            })
            .collect(),
        kv_ready,
        config,
    });
    let app = Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/metrics", get(metrics))
        .route("/v1/completions", post(generate))
        .route("/v1/chat/completions", post(generate))
        .with_state(shared);
    // Relayed tokens are small writes: TCP_NODELAY keeps Nagle from batching them.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("proxy server")
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(super) fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({ "error": { "message": message.into(), "type": "proxy_error", "code": status.as_u16() } });
    (status, axum::Json(body)).into_response()
}

/// Healthy only when every instance behind the proxy is.
async fn health(State(s): State<Arc<Shared>>) -> Response {
    let checks = s.config.all_instances().map(|url| {
        let client = s.client.clone();
        let url = url.clone();
        async move {
            let ok = client
                .get(format!("{url}/health"))
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            (url, ok)
        }
    });
    let down: Vec<String> = futures::future::join_all(checks)
        .await
        .into_iter()
        .filter(|(_, ok)| !ok)
        .map(|(url, _)| url)
        .collect();
    if down.is_empty() {
        StatusCode::OK.into_response()
    } else {
        error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not healthy: {}", down.join(", ")),
        )
    }
}

async fn models(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let first = s
        .config
        .decode
        .first()
        .or(s.config.backends.first())
        .expect("checked non-empty");
    let request = Auth::of(&headers).on(s.client.get(format!("{first}/v1/models")));
    match request.send().await {
        Ok(r) => relay(r).await,
        Err(e) => error_response(StatusCode::BAD_GATEWAY, format!("{first}/v1/models: {e}")),
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> String {
    format!(
        "# TYPE vbench_proxy_requests_total counter\nvbench_proxy_requests_total {}\n\
         # TYPE vbench_proxy_upstream_errors_total counter\nvbench_proxy_upstream_errors_total {}\n\
         # TYPE vbench_proxy_missing_kv_transfer_params_total counter\nvbench_proxy_missing_kv_transfer_params_total {}\n\
         # TYPE vbench_proxy_lmcache_notifications_total counter\nvbench_proxy_lmcache_notifications_total {}\n\
         # TYPE vbench_proxy_lmcache_kv_wait_timeouts_total counter\nvbench_proxy_lmcache_kv_wait_timeouts_total {}\n",
        s.requests.load(Ordering::Relaxed),
        s.upstream_errors.load(Ordering::Relaxed),
        s.missing_kv_params.load(Ordering::Relaxed),
        s.kv_ready.received.load(Ordering::Relaxed),
        s.kv_ready.timeouts.load(Ordering::Relaxed),
    )
}

/// Pass an upstream response (status, content type, body stream) through unchanged.
pub(super) async fn relay(upstream: reqwest::Response) -> Response {
    let status =
        StatusCode::from_u16(upstream.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = HeaderMap::new();
    // The body is passed on as it came, so its encoding must come with it.
    for name in [header::CONTENT_TYPE, header::CONTENT_ENCODING] {
        if let Some(v) = upstream.headers().get(&name) {
            headers.insert(name, v.clone());
        }
    }
    (status, headers, Body::from_stream(upstream.bytes_stream())).into_response()
}

async fn generate(
    State(s): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.requests.fetch_add(1, Ordering::Relaxed);
    let auth = Auth::of(&headers);
    let path = uri.path().to_owned();
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "request body must be a JSON object",
            )
        }
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!("request body is not JSON: {e}"),
            )
        }
    };
    let result = match s.config.mode {
        ProxyMode::RoundRobin => {
            let url = pick(&s.config.backends, &s.next_backend);
            forward(&s, &auth, url, &path, &request).await
        }
        ProxyMode::Nixl => nixl(&s, &auth, &path, request).await,
        ProxyMode::Lmcache => super::lmcache::handle(&s, &auth, &path, request).await,
    };
    result.unwrap_or_else(|resp| {
        s.upstream_errors.fetch_add(1, Ordering::Relaxed);
        resp
    })
}

async fn forward(
    s: &Shared,
    auth: &Auth,
    base: &str,
    path: &str,
    body: &Value,
) -> Result<Response, Response> {
    let upstream = auth
        .on(s.client.post(format!("{base}{path}")))
        .json(body)
        .send()
        .await
        .map_err(|e| upstream_failure(base, path, &e))?;
    if !upstream.status().is_success() {
        s.upstream_errors.fetch_add(1, Ordering::Relaxed);
    }
    Ok(relay(upstream).await)
}

pub(super) fn upstream_failure(base: &str, path: &str, e: &reqwest::Error) -> Response {
    let status = if e.is_timeout() {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::BAD_GATEWAY
    };
    // reqwest's own message ("error sending request") hides the cause: say the whole chain.
    let mut why = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        why.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    error_response(status, format!("{base}{path}: {why}"))
}

/// Sends a prefill request to `prefiller`; its error answer, or a failure to reach it, is the
/// client's answer as it is (never retried).
pub(super) async fn post_prefill(
    s: &Shared,
    auth: &Auth,
    prefiller: &str,
    path: &str,
    body: &Value,
) -> Result<reqwest::Response, Response> {
    let response = auth
        .on(s.client.post(format!("{prefiller}{path}")))
        .json(body)
        .send()
        .await
        .map_err(|e| upstream_failure(prefiller, path, &e))?;
    if !response.status().is_success() {
        return Err(relay(response).await);
    }
    Ok(response)
}

/// The NixlConnector hand-off: prefill with max_tokens = 1, then decode with its KV params.
async fn nixl(s: &Shared, auth: &Auth, path: &str, request: Value) -> Result<Response, Response> {
    let prefiller = pick(&s.config.prefill, &s.next_prefill);
    let mut prefill_body = request.clone();
    let obj = prefill_body.as_object_mut().expect("checked object");
    obj.insert("max_tokens".into(), json!(1));
    if obj.contains_key("max_completion_tokens") {
        obj.insert("max_completion_tokens".into(), json!(1));
    }
    obj.insert("stream".into(), json!(false));
    obj.remove("stream_options");
    obj.insert(
        "kv_transfer_params".into(),
        json!({
            "do_remote_decode": true,
            "do_remote_prefill": false,
            "remote_engine_id": null,
            "remote_block_ids": null,
            "remote_host": null,
            "remote_port": null,
        }),
    );
    let response = post_prefill(s, auth, prefiller, path, &prefill_body).await?;
    let prefill_json = crate::http_body::read_json(response).await.map_err(|e| {
        error_response(
            StatusCode::BAD_GATEWAY,
            format!("prefill instance {prefiller}'s answer: {e}"),
        )
    })?;
    let kv = match prefill_json.get("kv_transfer_params") {
        Some(kv @ Value::Object(_)) => kv.clone(),
        _ => {
            // Without them the decoder would silently re-prefill: a benchmark must not hide that.
            s.missing_kv_params.fetch_add(1, Ordering::Relaxed);
            return Err(error_response(
                StatusCode::BAD_GATEWAY,
                format!(
                    "prefill instance {prefiller} returned no kv_transfer_params: is it running with \
                     --kv-transfer-config NixlConnector?"
                ),
            ));
        }
    };
    let decoder = pick(&s.config.decode, &s.next_decode);
    let mut decode_body = request;
    decode_body
        .as_object_mut()
        .expect("checked object")
        .insert("kv_transfer_params".into(), kv);
    forward(s, auth, decoder, path, &decode_body).await
}

/// `7300,7301:7400,7401` → ([7300, 7301], [7400, 7401]).
fn parse_lmcache_ports(s: &str) -> anyhow::Result<(Vec<u16>, Vec<u16>)> {
    let list = |part: &str| -> anyhow::Result<Vec<u16>> {
        part.split(',')
            .map(|p| {
                p.trim()
                    .parse::<u16>()
                    .with_context(|| format!("bad port {p:?} in --lmcache-decoder-ports {s:?}"))
            })
            .collect()
    };
    let (init, alloc) = s.split_once(':').with_context(|| {
        format!("--lmcache-decoder-ports {s:?}: expected INIT[,INIT..]:ALLOC[,ALLOC..]")
    })?;
    Ok((list(init)?, list(alloc)?))
}
