//! The load generator: datasets, the arrival schedule, the streaming client, the recorder.
//!
//! # Library API (what `apply` calls)
//!
//! Prepare once per experiment, replay against every variant and rate:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use vbench::load::{self, dataset, schedule, Api, LoadSpec, NoProgress};
//! use vbench::load::DeploymentInfo;
//!
//! // 1. tokenizer (optional) and the request set: once per experiment
//! let tok = Some(Arc::new(load::Tokenizer::load("Qwen/Qwen3-0.6B")?));
//! let spec = dataset::DatasetSpec::ShareGpt { path: "data/sharegpt.json".into(), output_len: None };
//! let data = dataset::load(&spec, 500, 0, tok.as_deref())?;
//! let requests: Arc<[dataset::PreparedRequest]> = data.requests.clone().into();
//!
//! // 2. per rate: the schedule (deterministic from the seed) and the spec
//! let offsets = schedule::arrival_offsets(500, 4.0, schedule::Arrival::Poisson, 0)?;
//! let deployment = DeploymentInfo {
//!     variant_id: Some("simple-tp1-abc".into()), mode: "simple".into(),
//!     label: "simple TP:1".into(), gpus: 1, simulated: false,
//!     base_url: "http://127.0.0.1:8000".into(),
//! };
//! let mut ls = LoadSpec::new(deployment, Api::Completions, "Qwen/Qwen3-0.6B", &data, requests,
//!                            offsets.into(), 4.0, schedule::Arrival::Poisson, 0);
//! ls.tokenizer = tok.clone();
//! ls.warmup = 1;
//! // 3. run; the caller writes the result (`vbench::results::store::write_json_new`)
//! let result = load::execute(&ls, &NoProgress).await?;
//! # let _ = result;
//! # Ok(()) }
//! ```
//!
//! Timing rules (vLLM's; docs/metrics.md): TTFT = first chunk with non-empty `choices`;
//! ITLs = gaps between such chunks; E2E = the last one; TPOT = (E2E − TTFT)/(out − 1); token
//! counts from the usage chunk. vbench measures all of them from the *scheduled* instant.
//! A request is `ok` with HTTP 200, at least one content chunk and `data: [DONE]`; anything
//! else is a failed record with an `error_kind` (`http`, `connect`, `request`, `timeout`,
//! `stream_cut`, `malformed`, `server_error`, `no_content`, `not_sent`, `abandoned` (in flight
//! when a [`Stop`] stopped the waiting), and `session_ended` for a multi-turn session's turns
//! after a failed one), never dropped.
//!
//! Transport: `http://` endpoints are driven by a lean HTTP/1.1 reader (`http1.rs`: one task
//! per request reads its own socket, keep-alive pool, TCP_NODELAY); `https://` (or
//! `LoadSpec::use_reqwest`) goes through reqwest. Sends are timed by a dedicated thread
//! (`runner.rs`), because tokio's timer wheel has a 1 ms granularity; on a kept-alive
//! connection that thread also writes the request itself, so a runtime busy reading thousands
//! of streams cannot delay a send. Response bytes are timed by the kernel's receive stamp
//! (`net.rs`), so it cannot delay a token either, as long as it reads each within a token gap
//! (the `read_wait_*` figures of the client health say whether it did).

pub mod cache_reuse;
pub mod client;
pub mod dataset;
pub mod http1;
pub mod net;
mod pyrandom;
pub mod result;
pub mod runner;
pub mod schedule;
pub mod sessions;
pub mod sse;
pub mod summary;
pub mod tokenizer;

use std::sync::Arc;
use std::time::Duration;

pub use client::Api;
pub use dataset::{Dataset, DatasetSpec, PreparedRequest, PreparedSession, TokenCounts};
pub use runner::{execute, execute_until, LoadError, NoProgress, Progress, Stop};
pub use schedule::{arrival_offsets, Arrival};
pub use tokenizer::Tokenizer;

pub use result::{
    ClientHealth, DeploymentInfo, LoadInfo, RequestRecord, RunResult, StoppedEarly, VbenchSection,
};

/// The original suite's topology keys, carried into every result file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub num_prefill_instances: u32,
    pub num_decode_instances: u32,
    /// simple: the instance's TP; disaggregated: the prefill TP.
    pub tensor_parallel_size: u32,
    pub prefiller_tp_size: u32,
    pub decoder_tp_size: u32,
}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            num_prefill_instances: 1,
            num_decode_instances: 1,
            tensor_parallel_size: 1,
            prefiller_tp_size: 1,
            decoder_tp_size: 1,
        }
    }
}

/// A fully resolved load: what to send, where, and when. Free of manifest types.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Where the requests go and which deployment it is (`base_url` is used for requests).
    pub deployment: DeploymentInfo,
    /// Path of the API under `deployment.base_url`; `None` = the API's default path.
    pub endpoint: Option<String>,
    pub api: Api,
    /// Model name as served (`--served-model-name`), sent in every request.
    pub model: String,
    /// The replayed request set, shared between runs.
    pub requests: Arc<[PreparedRequest]>,
    /// Send offsets in seconds from the run's start; request `i` is sent at `offsets[i]`
    /// (with `sessions`: session `i` starts then).
    pub offsets: Arc<[f64]>,
    /// Multi-turn sessions (`load::sessions`), one per entry of `requests` (which then holds
    /// each session's first turn alone, for warm-up); `None` for single requests.
    pub sessions: Option<Arc<[PreparedSession]>>,
    /// Offered rate, req/s (`f64::INFINITY` for all at once); recorded, not used for timing.
    pub request_rate: f64,
    /// `poisson`, `gamma` or `constant`.
    pub arrival_name: String,
    /// Gamma shape (1 = Poisson; infinite for constant).
    pub burstiness: f64,
    pub seed: u64,
    /// Requests sent (together) before the measured run and excluded from it.
    pub warmup: usize,
    /// Cap on requests in flight (`None` = open loop, vbench's default).
    pub max_concurrency: Option<usize>,
    /// Per-request limit from send to the end of the stream.
    pub timeout: Duration,
    pub ignore_eos: bool,
    /// Schedule-lag p99 above which the result is flagged `client_fell_behind`.
    pub lag_threshold_ms: f64,
    pub topology: Topology,
    pub dataset_name: String,
    pub label: Option<String>,
    /// Used to count output tokens when the server sends no usage chunk.
    pub tokenizer: Option<Arc<Tokenizer>>,
    /// Recorded as `tokenizer_id` (a path or model id).
    pub tokenizer_id: Option<String>,
    /// `tokenizer` or `estimated`.
    pub token_counts: String,
    /// Notes from preparing the dataset, carried into the result.
    pub notes: Vec<String>,
    /// Which repeat of its rate this load is (1-based), when a sweep has repeats.
    pub repeat: Option<u32>,
    /// Send through reqwest even for `http://` URLs (default: the lean HTTP/1.1 client for
    /// `http://`, reqwest for `https://`).
    pub use_reqwest: bool,
    /// Time response bytes by the kernel's receive stamp (lean reader only; default true).
    pub rx_timestamps: bool,
    /// Service-level objectives for `request_goodput` (vLLM's `--goodput`); None leaves it null.
    pub goodput: Option<GoodputSlo>,
    /// Sent with every request as `Authorization: Bearer KEY` (a server started with
    /// `--api-key`). Never written anywhere: results say only that a key was sent.
    pub api_key: Option<String>,
}

/// Per-request objectives, in ms, as vLLM's `bench serve --goodput ttft:MS tpot:MS e2el:MS`:
/// a request is good when it succeeded and meets every objective given.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GoodputSlo {
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    pub e2el_ms: Option<f64>,
}

impl GoodputSlo {
    /// Parse vLLM's `KEY:MS` pairs (`ttft`, `tpot`, `e2el`).
    pub fn parse(pairs: &[String]) -> Result<GoodputSlo, String> {
        let mut slo = GoodputSlo::default();
        for pair in pairs {
            let (key, value) = pair
                .split_once(':')
                .ok_or_else(|| format!("--goodput {pair:?}: expected KEY:MS, e.g. ttft:200"))?;
            let ms: f64 = value
                .trim()
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v > 0.0)
                .ok_or_else(|| {
                    format!("--goodput {pair:?}: {value:?} is not a positive number of ms")
                })?;
            let slot = match key.trim() {
                "ttft" => &mut slo.ttft_ms,
                "tpot" => &mut slo.tpot_ms,
                "e2el" => &mut slo.e2el_ms,
                other => {
                    return Err(format!(
                        "--goodput {pair:?}: unknown objective {other:?} (ttft, tpot or e2el)"
                    ))
                }
            };
            *slot = Some(ms);
        }
        Ok(slo)
    }

    /// Whether a request meets every objective (failed requests never do).
    pub fn met_by(&self, r: &crate::load::RequestRecord) -> bool {
        let within = |limit: Option<f64>, value: Option<f64>| match (limit, value) {
            (None, _) => true,
            (Some(l), Some(v)) => v * 1e3 <= l,
            (Some(_), None) => false,
        };
        // vLLM scores a one-token request's TPOT as 0.
        let tpot = r.tpot_s.or(r.ok.then_some(0.0));
        r.ok && within(self.ttft_ms, r.ttft_s)
            && within(self.tpot_ms, tpot)
            && within(self.e2el_ms, r.e2e_s)
    }
}

/// Whether `key` can travel as a bearer token in a header: printable ASCII without spaces
/// (no line break can smuggle a header in).
pub fn valid_api_key(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic())
}

/// The API key in vbench's environment variable `name`: set, and fit for a header. The error
/// names the variable, never its value.
pub fn api_key_from_env(name: &str) -> anyhow::Result<String> {
    let key =
        std::env::var(name).map_err(|_| anyhow::anyhow!("${name} is not set (or not UTF-8)"))?;
    if !valid_api_key(&key) {
        anyhow::bail!(
            "${name} is empty or holds a space, a line break or another character a header \
             cannot carry"
        );
    }
    Ok(key)
}

impl LoadSpec {
    /// A spec with vbench's defaults: no warm-up, open loop, 600 s timeout, lag threshold
    /// 5 ms, topology 1/1/1, label = the deployment label.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        deployment: DeploymentInfo,
        api: Api,
        model: &str,
        dataset: &Dataset,
        requests: Arc<[PreparedRequest]>,
        offsets: Arc<[f64]>,
        request_rate: f64,
        arrival: Arrival,
        seed: u64,
    ) -> LoadSpec {
        LoadSpec {
            label: Some(deployment.label.clone()),
            deployment,
            endpoint: None,
            api,
            model: model.to_string(),
            requests,
            offsets,
            sessions: None,
            request_rate,
            arrival_name: arrival.name().to_string(),
            burstiness: arrival.burstiness(),
            seed,
            warmup: 0,
            max_concurrency: None,
            timeout: Duration::from_secs(600),
            ignore_eos: dataset.name == "random",
            lag_threshold_ms: 5.0,
            topology: Topology::default(),
            dataset_name: dataset.name.clone(),
            tokenizer: None,
            tokenizer_id: None,
            token_counts: match dataset.token_counts {
                TokenCounts::Tokenizer => "tokenizer".into(),
                TokenCounts::Estimated => "estimated".into(),
            },
            notes: dataset.notes.clone(),
            repeat: None,
            use_reqwest: false,
            rx_timestamps: true,
            goodput: None,
            api_key: None,
        }
    }

    /// Replay a trace's arrival times at `speedup` (the offsets are already the replayed ones,
    /// from [`schedule::replay_offsets`]): the result says so.
    pub fn replaying_trace(&mut self, speedup: f64) {
        self.arrival_name = "trace".to_owned();
        // No gamma draw: written as 0, like constant arrivals.
        self.burstiness = f64::INFINITY;
        self.notes.push(format!(
            "trace replay at speedup {speedup}x: request i is sent at its trace timestamp minus \
             the first one's, divided by {speedup}; the offered rate is the requests over the \
             last send time"
        ));
    }

    /// Run multi-turn sessions, one per offset (`requests` holds their first turns): the
    /// result says how they are sent.
    pub fn with_sessions(&mut self, sessions: Arc<[PreparedSession]>) {
        self.notes.push(
            "multi-turn sessions: the rate is session starts per second; each session's turn \
             k+1 is sent when turn k's answer has ended plus a think time, with the whole \
             conversation (the server's answers included) as its prompt; warm-up sends warm-up \
             sessions' first turns only"
                .into(),
        );
        self.sessions = Some(sessions);
    }

    /// The full request URL.
    pub fn url(&self) -> String {
        let path = self
            .endpoint
            .as_deref()
            .unwrap_or_else(|| self.api.default_path());
        format!(
            "{}/{}",
            self.deployment.base_url.trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }
}

#[cfg(test)]
mod tests {
    use super::GoodputSlo;
    use crate::load::RequestRecord;

    fn record(ok: bool, ttft: f64, tpot: Option<f64>, e2e: f64) -> RequestRecord {
        RequestRecord {
            index: 0,
            scheduled_s: 0.0,
            sent_s: 0.0,
            ttft_s: Some(ttft),
            e2e_s: ok.then_some(e2e),
            itls_s: vec![],
            tpot_s: tpot,
            prompt_tokens: 1,
            output_tokens: 2,
            ok,
            http_status: Some(200),
            error_kind: None,
            error: None,
            session: None,
            turn: None,
        }
    }

    #[test]
    fn goodput_objectives_parse_like_vllm_and_judge_each_request() {
        let slo = GoodputSlo::parse(&["ttft:200".into(), "tpot:10".into()]).unwrap();
        assert_eq!(
            slo,
            GoodputSlo {
                ttft_ms: Some(200.0),
                tpot_ms: Some(10.0),
                e2el_ms: None
            }
        );
        assert!(
            slo.met_by(&record(true, 0.2, Some(0.010), 9.0)),
            "limits are inclusive"
        );
        assert!(!slo.met_by(&record(true, 0.201, Some(0.005), 1.0)));
        assert!(!slo.met_by(&record(true, 0.1, Some(0.0101), 1.0)));
        assert!(
            slo.met_by(&record(true, 0.1, None, 1.0)),
            "one token: TPOT 0"
        );
        assert!(!slo.met_by(&record(false, 0.1, Some(0.001), 1.0)), "failed");
        let e2e = GoodputSlo::parse(&["e2el:500".into()]).unwrap();
        assert!(!e2e.met_by(&record(true, 0.1, Some(0.001), 0.6)));
        for bad in ["ttft", "ttft:abc", "ttft:-1", "itl:5"] {
            assert!(GoodputSlo::parse(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
