//! `vbench bench`: the load generator alone, against any running OpenAI-compatible endpoint.
//! Flag names follow `vllm bench serve` where one exists.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::ValueEnum;

use super::progress::RequestBar;
use crate::apply::Interrupts;
use crate::apply::{cache, queue};
use crate::error::{Error, Result};
use crate::exec::metrics;
use crate::load::dataset::{
    self, DatasetSpec, SessionSource, SessionsSpec, ThinkTime, TraceFormat, TraceSpec,
};
use crate::load::runner::{execute_until, LoadError, NoProgress};
use crate::load::schedule::{arrival_offsets, replay_offsets, Arrival};
use crate::load::summary::human_summary;
use crate::load::tokenizer::Tokenizer;
use crate::load::{Api, DeploymentInfo, GoodputSlo, LoadSpec, RunResult};
use crate::manifest::limits;
use crate::results::store::{self, write_json_new_reserved, SpaceReserve};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DatasetKind {
    Sharegpt,
    Random,
    Jsonl,
    /// Groups of requests sharing a system prompt (`--groups`, `--system-prompt-len`,
    /// `--question-len`, `--output-len`); needs a tokenizer.
    SharedPrefix,
    /// A request trace (`--dataset-path`, `--trace-format`): its lengths and shared prefix
    /// blocks, and with `--speedup` its arrival times; needs a tokenizer.
    Trace,
    /// Multi-turn sessions: each turn is sent when the previous answer has ended plus a think
    /// time, with the whole conversation as its prompt. Synthetic (`--turns`,
    /// `--system-prompt-len`, `--question-len`, `--output-len`; needs a tokenizer) or, with
    /// `--dataset-path`, from ShareGPT conversations. `--rate` and `--num-prompts` count
    /// sessions.
    Sessions,
}

impl DatasetKind {
    /// The manifest's kind of the same workload, whose rules (such as prefix reuse) apply.
    fn manifest_kind(self) -> crate::manifest::DatasetKind {
        use crate::manifest::DatasetKind as Kind;
        match self {
            DatasetKind::Sharegpt => Kind::Sharegpt,
            DatasetKind::Random => Kind::Random,
            DatasetKind::Jsonl => Kind::Jsonl,
            DatasetKind::SharedPrefix => Kind::SharedPrefix,
            DatasetKind::Trace => Kind::Trace,
            DatasetKind::Sessions => Kind::Sessions,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TraceFormatArg {
    /// JSONL: `timestamp` (ms), `input_length`, `output_length`, `hash_ids`.
    Mooncake,
    /// Azure LLM inference CSV: `TIMESTAMP`, `ContextTokens`, `GeneratedTokens`.
    Azure,
    /// BurstGPT CSV: `Timestamp` (s), `Request tokens`, `Response tokens`, ...
    Burstgpt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ThinkTimeArg {
    /// Exponential around `--think-time-s`.
    Exponential,
    /// Exactly `--think-time-s`.
    Fixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArrivalKind {
    Poisson,
    Gamma,
    Constant,
}

/// Drive an open-loop streaming load against any OpenAI-compatible endpoint.
///
/// Requests are sent at precomputed instants (from --seed) whether or not earlier ones have
/// finished; latencies are measured from those instants. A human summary goes to stdout, the
/// full result (vLLM-compatible keys plus every request) to --out. Ctrl-C stops sending and
/// waits for the requests in flight (a second one stops waiting): the result then covers the
/// requests sent, says so, and vbench exits with 130.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    // Boxed: the CLI's command enum stays small (clippy::large_enum_variant).
    #[command(flatten)]
    pub opts: Box<BenchOptions>,
}

/// The flags of `vbench bench`.
#[derive(Debug, clap::Args)]
pub struct BenchOptions {
    /// Base URL of the server, e.g. http://127.0.0.1:8000
    #[arg(long)]
    pub base_url: String,
    /// API path: /v1/completions or /v1/chat/completions (chat is detected from the path).
    #[arg(long, default_value = "/v1/completions")]
    pub endpoint: String,
    /// Model name as the server knows it (its --served-model-name).
    #[arg(long)]
    pub model: String,
    /// tokenizer.json, a model folder, or a model id in the Hugging Face cache. Without one,
    /// client-side token counts are estimates (and the result says so).
    #[arg(long)]
    pub tokenizer: Option<String>,
    /// Where prompts come from.
    #[arg(long, value_enum, default_value = "random")]
    pub dataset: DatasetKind,
    /// Dataset file (sharegpt: JSON; jsonl: one {"prompt": ..., "output_tokens": N} per line;
    /// trace: see --trace-format; sessions: ShareGPT conversations, optional).
    #[arg(long)]
    pub dataset_path: Option<PathBuf>,
    /// random: prompt tokens (including special tokens).
    #[arg(long, default_value_t = 1024)]
    pub input_len: u64,
    /// random: output tokens (default 128); sharegpt/jsonl: fixed output length instead of the
    /// dataset's.
    #[arg(long)]
    pub output_len: Option<u64>,
    /// random: lengths are drawn uniformly from len·(1 ± ratio).
    #[arg(long, default_value_t = 0.0)]
    pub range_ratio: f64,
    /// shared-prefix: number of groups; a group's requests share one system prompt.
    #[arg(long, default_value_t = 8)]
    pub groups: u64,
    /// shared-prefix: system-prompt tokens (special tokens included), the same in a group
    /// (default 1024). Synthetic sessions: each session's own system prompt (default none).
    #[arg(long)]
    pub system_prompt_len: Option<u64>,
    /// shared-prefix: question tokens, different for every request. Synthetic sessions: each
    /// turn's user message.
    #[arg(long, default_value_t = 64)]
    pub question_len: u64,
    /// trace: the file's format.
    #[arg(long, value_enum, default_value = "mooncake")]
    pub trace_format: TraceFormatArg,
    /// trace (mooncake): tokens per `hash_ids` block.
    #[arg(long, default_value_t = 512)]
    pub block_size: u64,
    /// trace: replay its arrival times, divided by this (2 = twice as fast), instead of
    /// drawing arrivals at --rate.
    #[arg(long, conflicts_with_all = ["rate", "arrival", "burstiness"])]
    pub speedup: Option<f64>,
    /// sessions: turns per session (synthetic: required; ShareGPT: at most this many of each
    /// conversation's turns, default all).
    #[arg(long)]
    pub turns: Option<u64>,
    /// sessions: mean seconds between the end of an answer and the next turn's send.
    #[arg(long, default_value_t = 0.0)]
    pub think_time_s: f64,
    /// sessions: how think times are drawn (from --seed).
    #[arg(long, value_enum, default_value = "exponential")]
    pub think_time: ThinkTimeArg,
    /// Requests in the measured run (sessions: sessions).
    #[arg(long, default_value_t = 1000)]
    pub num_prompts: usize,
    /// Offered request rate in requests/s, or `inf` to send everything at once.
    #[arg(long, default_value = "inf", value_parser = parse_rate)]
    pub rate: f64,
    /// Arrival process (gamma uses --burstiness as its shape).
    #[arg(long, value_enum, default_value = "poisson")]
    pub arrival: ArrivalKind,
    /// Gamma shape: 1 = Poisson, < 1 burstier, > 1 more regular. A value other than 1 with
    /// --arrival poisson selects gamma, as in vLLM.
    #[arg(long, default_value_t = 1.0)]
    pub burstiness: f64,
    /// Cap on requests in flight (closed-loop-ish); default: none (open loop).
    #[arg(long)]
    pub max_concurrency: Option<usize>,
    /// Seed of the schedule and the dataset sample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Warm-up requests sent before the run and left out of it.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Per-request timeout in seconds (send to end of stream).
    #[arg(long, default_value_t = 600.0)]
    pub timeout_s: f64,
    /// Ask the server to ignore EOS and always produce the requested tokens (forced for random).
    #[arg(long)]
    pub ignore_eos: bool,
    /// Objectives for `request_goodput`, as vLLM's: `ttft:MS`, `tpot:MS`, `e2el:MS` (any of
    /// them, space-separated). Without it request_goodput is null.
    #[arg(long, num_args = 1.., value_name = "KEY:MS")]
    pub goodput: Vec<String>,
    /// Flag the result `client_fell_behind` when schedule-lag p99 exceeds this (ms).
    #[arg(long, default_value_t = 5.0)]
    pub lag_threshold_ms: f64,
    /// Label stored in the result.
    #[arg(long)]
    pub label: Option<String>,
    /// Tokio worker threads for the client (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Send through reqwest (hyper) even for http:// URLs, instead of vbench's lean HTTP/1.1
    /// reader (https:// always uses reqwest). For comparing the two.
    #[arg(long)]
    pub reqwest: bool,
    /// Time response bytes by when vbench read them instead of by the kernel's receive stamp
    /// (the default on the lean reader). For measuring what the stamps are worth.
    #[arg(long)]
    pub no_rx_timestamps: bool,
    /// A vLLM server whose `/metrics` to read before, during (every second) and after the
    /// load, as ROLE=URL (ROLE: instance, prefill or decode; URL: its base URL). Repeatable.
    /// The result then records what `apply` records of its servers: prompt reuse, NIXL
    /// transfers, each role's KV cache (size, peak use, preemptions) and the waiting queues,
    /// with the same warnings.
    #[arg(long = "server-metrics", value_name = "ROLE=URL")]
    pub server_metrics: Vec<String>,
    /// Send `Authorization: Bearer $NAME` with every request, for a server started with
    /// `--api-key` (`vllm bench serve` reads OPENAI_API_KEY; `--api-key-env OPENAI_API_KEY`
    /// does the same). The key is never written to the result, which says only that one was
    /// sent.
    #[arg(long, value_name = "NAME")]
    pub api_key_env: Option<String>,
    /// Print the result's summary keys as JSON on stdout instead of the human summary.
    #[arg(long)]
    pub json: bool,
    /// Where to write the result JSON (never overwritten).
    #[arg(long)]
    pub out: PathBuf,
}

fn parse_rate(s: &str) -> std::result::Result<f64, String> {
    if s.eq_ignore_ascii_case("inf") {
        return Ok(f64::INFINITY);
    }
    match s.parse::<f64>() {
        Ok(r) if limits::RATES.contains(&r) => Ok(r),
        _ => Err(format!(
            "expected a rate from {} to {} requests/s, or `inf`; got `{s}`",
            limits::RATES.start(),
            limits::RATES.end()
        )),
    }
}

/// The flags' numbers within the ranges vbench takes ([`limits`]), and an endpoint that is a
/// plain path: a typo is an error here, not a panic, an overflow or a machine out of memory.
fn check_ranges(args: &BenchOptions) -> anyhow::Result<()> {
    let wait = |flag: &str, s: f64, zero_ok: bool| {
        if limits::is_wait(s, zero_ok) {
            Ok(())
        } else {
            Err(anyhow!(
                "{flag} {} must be a number of seconds, {} and at most {} (a week)",
                limits::show(s),
                if zero_ok { "0 or more" } else { "above 0" },
                limits::MAX_WAIT_S
            ))
        }
    };
    wait("--timeout-s", args.timeout_s, false)?;
    wait("--think-time-s", args.think_time_s, true)?;
    if !limits::BURSTINESS.contains(&args.burstiness) {
        bail!(
            "--burstiness {} must be from {} to {}",
            limits::show(args.burstiness),
            limits::BURSTINESS.start(),
            limits::BURSTINESS.end()
        );
    }
    if let Some(s) = args.speedup.filter(|s| !limits::SPEEDUPS.contains(s)) {
        bail!(
            "--speedup {} must be from {} to {}",
            limits::show(s),
            limits::SPEEDUPS.start(),
            limits::SPEEDUPS.end()
        );
    }
    let counts = [
        ("--input-len", Some(args.input_len), limits::MAX_TOKENS),
        ("--output-len", args.output_len, limits::MAX_TOKENS),
        (
            "--system-prompt-len",
            args.system_prompt_len,
            limits::MAX_TOKENS,
        ),
        (
            "--question-len",
            Some(args.question_len),
            limits::MAX_TOKENS,
        ),
        ("--turns", args.turns, limits::MAX_TURNS),
        ("--groups", Some(args.groups), limits::MAX_GROUPS),
    ];
    for (flag, n, max) in counts {
        if let Some(n) = n.filter(|&n| n > max) {
            bail!("{flag} {n} is more than vbench takes ({max})");
        }
    }
    if args.max_concurrency == Some(0) {
        bail!("--max-concurrency 0 would never send a request; leave it out for an open loop");
    }
    let path_ok = args.endpoint.starts_with('/')
        && args.endpoint.len() <= 2048
        && args
            .endpoint
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'#');
    if !path_ok {
        bail!(
            "--endpoint must be a URL path such as /v1/completions (no spaces, line breaks or \
             fragment), got {:?}",
            args.endpoint
        );
    }
    Ok(())
}

/// Before any request: `--out`'s folder takes files and has room for the result of
/// `requests` requests, which is held for it (a disk that fills during the load cannot cost
/// the measurement).
fn hold_room_for_result(args: &BenchOptions, requests: u64) -> Result<Option<SpaceReserve>> {
    let dir = match args.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    store::check_writable(dir)
        .map_err(|e| Error::bad_input(e.context(format!("--out {}", args.out.display()))))?;
    let output = args.output_len.unwrap_or(1024);
    let bytes = store::result_size_estimate(requests, output);
    let free = store::free_bytes(dir);
    if free.is_some_and(|free| free < bytes) {
        return Err(Error::bad_input(anyhow!(
            "--out {}: {} has {} MiB free; the result needs about {} MiB",
            args.out.display(),
            dir.display(),
            free.unwrap_or(0) >> 20,
            bytes.div_ceil(1 << 20)
        )));
    }
    match SpaceReserve::hold(dir, bytes) {
        Ok(reserve) => Ok(Some(reserve)),
        Err(e) => {
            eprintln!("warning: no disk space held for the result ({e:#})");
            Ok(None)
        }
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    let args = *args.opts;
    if args.out.exists() {
        return Err(Error::bad_input(anyhow!(
            "{} exists; vbench never overwrites a result, choose another --out",
            args.out.display()
        )));
    }
    check_ranges(&args).map_err(Error::bad_input)?;
    let goodput = if args.goodput.is_empty() {
        None
    } else {
        Some(GoodputSlo::parse(&args.goodput).map_err(|e| Error::bad_input(anyhow!(e)))?)
    };
    let api = if args
        .endpoint
        .trim_end_matches('/')
        .ends_with("chat/completions")
    {
        Api::Chat
    } else {
        Api::Completions
    };
    let arrival = match args.arrival {
        ArrivalKind::Constant => Arrival::Constant,
        ArrivalKind::Poisson if args.burstiness == 1.0 => Arrival::Poisson,
        ArrivalKind::Poisson | ArrivalKind::Gamma => Arrival::Gamma {
            burstiness: args.burstiness,
        },
    };
    let tokenizer = match &args.tokenizer {
        Some(t) => Some(Arc::new(Tokenizer::load(t).map_err(Error::bad_input)?)),
        None => {
            eprintln!("note: no --tokenizer: client-side token counts are estimates");
            None
        }
    };
    let path = |what: &str| {
        args.dataset_path
            .clone()
            .ok_or_else(|| Error::bad_input(anyhow!("--dataset {what} needs --dataset-path")))
    };
    let spec = match args.dataset {
        DatasetKind::Sharegpt => DatasetSpec::ShareGpt {
            path: path("sharegpt")?,
            output_len: args.output_len,
        },
        DatasetKind::Jsonl => DatasetSpec::Jsonl {
            path: path("jsonl")?,
            output_len: args.output_len,
        },
        DatasetKind::Random => DatasetSpec::Random {
            input_len: args.input_len,
            output_len: args.output_len.unwrap_or(128),
            range_ratio: args.range_ratio,
        },
        DatasetKind::SharedPrefix => DatasetSpec::SharedPrefix(dataset::SharedPrefixSpec {
            groups: args.groups,
            system_len: args.system_prompt_len.unwrap_or(1024),
            question_len: args.question_len,
            output_len: args.output_len.unwrap_or(128),
        }),
        DatasetKind::Trace => DatasetSpec::Trace(TraceSpec {
            path: path("trace")?,
            format: match args.trace_format {
                TraceFormatArg::Mooncake => TraceFormat::Mooncake,
                TraceFormatArg::Azure => TraceFormat::Azure,
                TraceFormatArg::Burstgpt => TraceFormat::BurstGpt,
            },
            block_size: args.block_size,
            output_len: args.output_len,
        }),
        DatasetKind::Sessions => DatasetSpec::Sessions(SessionsSpec {
            source: match &args.dataset_path {
                Some(p) => SessionSource::ShareGpt {
                    path: p.clone(),
                    max_turns: args.turns,
                    output_len: args.output_len,
                },
                None => SessionSource::Synthetic {
                    turns: args.turns.ok_or_else(|| {
                        Error::bad_input(anyhow!(
                            "--dataset sessions needs --turns (synthetic sessions) or \
                             --dataset-path (ShareGPT conversations)"
                        ))
                    })?,
                    system_len: args.system_prompt_len.unwrap_or(0),
                    question_len: args.question_len,
                    output_len: args.output_len.unwrap_or(128),
                },
            },
            think_time_s: args.think_time_s,
            think_time: match args.think_time {
                ThinkTimeArg::Exponential => ThinkTime::Exponential,
                ThinkTimeArg::Fixed => ThinkTime::Fixed,
            },
        }),
    };
    if args.speedup.is_some() && args.dataset != DatasetKind::Trace {
        return Err(Error::bad_input(anyhow!(
            "--speedup replays a trace's arrival times: it needs --dataset trace"
        )));
    }
    // Before the dataset is made (a huge --num-prompts is refused before it takes memory).
    // Every turn of a session is a request of the result; ShareGPT conversations without
    // --turns count one turn each here, a floor.
    let planned = (args.num_prompts as u64).saturating_mul(match args.dataset {
        DatasetKind::Sessions => args.turns.unwrap_or(1),
        _ => 1,
    });
    let api_key = match &args.api_key_env {
        Some(name) => Some(
            crate::load::api_key_from_env(name)
                .map_err(|e| Error::bad_input(e.context(format!("--api-key-env {name}"))))?,
        ),
        None => None,
    };
    let reserve = hold_room_for_result(&args, planned)?;
    // The warm-up gets prompts of its own, after the measured ones, so a prefix cache cannot
    // serve a measured request from a warm-up.
    let data = dataset::load(
        &spec,
        args.num_prompts + args.warmup,
        args.seed,
        tokenizer.as_deref(),
    )
    .map_err(Error::bad_input)?;
    let (offsets, rate) = match args.speedup {
        Some(speedup) => {
            let trace = data.offsets_s.as_deref().unwrap_or_default();
            replay_offsets(&trace[..args.num_prompts.min(trace.len())], speedup)
                .map_err(Error::bad_input)?
        }
        None => (
            arrival_offsets(args.num_prompts, args.rate, arrival, args.seed)
                .map_err(Error::bad_input)?,
            args.rate,
        ),
    };
    let requests: Arc<[_]> = data.requests.clone().into();
    let deployment = DeploymentInfo {
        variant_id: None,
        mode: "external".into(),
        label: args.label.clone().unwrap_or_else(|| args.base_url.clone()),
        gpus: 0,
        simulated: false,
        base_url: args.base_url.clone(),
    };
    let mut ls = LoadSpec::new(
        deployment,
        api,
        &args.model,
        &data,
        requests,
        offsets.into(),
        rate,
        arrival,
        args.seed,
    );
    if let Some(speedup) = args.speedup {
        ls.replaying_trace(speedup);
    }
    if let Some(sessions) = &data.sessions {
        ls.with_sessions(sessions.clone().into());
    }
    ls.endpoint = Some(args.endpoint.clone());
    if let (Some(key), Some(name)) = (api_key, &args.api_key_env) {
        ls.api_key = Some(key);
        ls.notes.push(format!(
            "every request carried an API key from ${name} (not recorded)"
        ));
    }
    ls.label = args.label.clone();
    ls.warmup = args.warmup;
    ls.max_concurrency = args.max_concurrency;
    ls.timeout = Duration::from_secs_f64(args.timeout_s);
    ls.ignore_eos = args.ignore_eos || spec.exact_output_lengths();
    // A workload that shares prefixes on purpose: its reuse is a note, not a warning.
    let reuses_prefixes = args.dataset.manifest_kind().reuses_prefixes();
    ls.lag_threshold_ms = args.lag_threshold_ms;
    ls.goodput = goodput;
    ls.use_reqwest = args.reqwest;
    ls.rx_timestamps = !args.no_rx_timestamps;
    ls.tokenizer_id = tokenizer.as_ref().map(|t| t.path.display().to_string());
    ls.tokenizer = tokenizer;

    let servers = ServerWatch::parse(&args.server_metrics).map_err(Error::bad_input)?;

    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(t) = args.threads {
        rt.worker_threads(t.max(1));
    }
    let rt = rt.build().map_err(Error::failed)?;
    let result = rt.block_on(async {
        let interrupts = Interrupts::listen();
        let stop = interrupts.as_load_stop();
        let signals = say_what_signals_do(interrupts);
        let watching = servers.start().await?;
        let result = match RequestBar::on_terminal("") {
            Some(bar) => execute_until(&ls, &bar, stop).await,
            None => execute_until(&ls, &NoProgress, stop).await,
        };
        signals.abort();
        let seen = watching.finish().await;
        Ok::<_, Error>(result.map(|mut r| {
            let ttft_ms = ls.goodput.as_ref().and_then(|g| g.ttft_ms);
            for warning in seen.record(&mut r, ttft_ms, reuses_prefixes) {
                eprintln!("warning: {warning}");
            }
            r
        }))
    })?;
    // Let in-flight sockets close without blocking on them.
    rt.shutdown_timeout(Duration::from_millis(100));
    let result = result.map_err(|e| match e {
        LoadError::Spec(_) => Error::bad_input(e),
        LoadError::StoppedInWarmup => {
            Error::Stopped(anyhow!(e).context("nothing was measured and nothing written"))
        }
        _ => Error::failed(e),
    })?;
    if let Err(e) = write_json_new_reserved(&args.out, &result, reserve.as_ref()) {
        // The measurement must not vanish with the file: its summary, at least, is shown.
        eprint!("{}", human_summary(&result));
        return Err(Error::failed(e.context(
            "the result was not written; the summary above is all that is left of it",
        )));
    }
    if args.json {
        let mut v = serde_json::to_value(&result).map_err(Error::failed)?;
        if let Some(o) = v.as_object_mut() {
            for k in [
                "ttfts",
                "tpots",
                "input_lens",
                "output_lens",
                "itls",
                "latencies",
                "start_times",
                "errors",
            ] {
                o.remove(k);
            }
            if let Some(vb) = o.get_mut("vbench").and_then(|v| v.as_object_mut()) {
                vb.remove("requests");
            }
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(Error::failed)?
        );
    } else {
        print!("{}", human_summary(&result));
        println!("result written to {}", args.out.display());
    }
    if let Some(stopped) = &result.vbench.load.stopped_early {
        return Err(Error::Stopped(anyhow!(
            "{}; written to {}",
            stopped.describe(),
            args.out.display()
        )));
    }
    if result.completed == 0 {
        return Err(Error::failed(anyhow!(
            "every one of the {} requests failed",
            result.failed
        )));
    }
    Ok(())
}

/// Ctrl-C (or SIGTERM) during the load: the first stops the schedule and waits for the
/// requests in flight, the second stops waiting (`load::Stop`); the result of what was sent is
/// written either way. This says so as each comes.
fn say_what_signals_do(mut interrupts: Interrupts) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        interrupts.first().await;
        eprintln!(
            "\nstopping: no more requests are sent; waiting for those in flight (Ctrl-C again \
             to stop waiting)"
        );
        interrupts.second().await;
        eprintln!("\nstopping: no longer waiting for the requests in flight; they count as failed");
    })
}

/// The servers named by `--server-metrics`: component name, base URL and role.
struct ServerWatch {
    servers: Vec<(String, String, &'static str)>,
}

impl ServerWatch {
    fn parse(specs: &[String]) -> anyhow::Result<ServerWatch> {
        let mut servers: Vec<(String, String, &'static str)> = Vec::new();
        for spec in specs {
            let (role, url) = spec.split_once('=').ok_or_else(|| {
                anyhow!("--server-metrics {spec:?}: expected ROLE=URL, e.g. decode=http://127.0.0.1:8200")
            })?;
            let role: &'static str = match role {
                "instance" => "instance",
                "prefill" => "prefill",
                "decode" => "decode",
                other => {
                    return Err(anyhow!(
                    "--server-metrics {spec:?}: role {other:?} is not instance, prefill or decode"
                ))
                }
            };
            let url = url.trim_end_matches('/');
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(anyhow!(
                    "--server-metrics {spec:?}: the URL must start with http:// or https://"
                ));
            }
            let index = servers.iter().filter(|(_, _, r)| *r == role).count();
            servers.push((format!("{role}-{index}"), url.to_owned(), role));
        }
        Ok(ServerWatch { servers })
    }

    /// Read every server's `/metrics` and start sampling; a server that does not answer is
    /// bad input (nothing has been sent yet).
    async fn start(&self) -> Result<Watching> {
        let components: Vec<(String, String)> = self
            .servers
            .iter()
            .map(|(name, url, _)| (name.clone(), url.clone()))
            .collect();
        let before = metrics::snapshot(&components).await;
        if let Some((name, url, _)) = self
            .servers
            .iter()
            .find(|(n, _, _)| !before.contains_key(n))
        {
            return Err(Error::bad_input(anyhow!(
                "--server-metrics: {url}/metrics did not answer ({name}); is it a vLLM server?"
            )));
        }
        let sampler = (!components.is_empty())
            .then(|| metrics::spawn_sampler(components.clone(), Duration::from_secs(1)));
        Ok(Watching {
            roles: self
                .servers
                .iter()
                .map(|(n, _, r)| (n.clone(), *r))
                .collect(),
            components,
            before,
            sampling: std::time::Instant::now(),
            sampler,
        })
    }
}

/// Sampling in progress.
struct Watching {
    roles: BTreeMap<String, &'static str>,
    components: Vec<(String, String)>,
    before: BTreeMap<String, String>,
    sampling: std::time::Instant,
    sampler: Option<(
        tokio::sync::watch::Sender<bool>,
        tokio::task::JoinHandle<Vec<metrics::Sample>>,
    )>,
}

impl Watching {
    async fn finish(self) -> Seen {
        let ended_s = self.sampling.elapsed().as_secs_f64();
        let samples = match self.sampler {
            Some((stop, handle)) => {
                let _ = stop.send(true);
                handle.await.unwrap_or_default()
            }
            None => Vec::new(),
        };
        let after = metrics::snapshot(&self.components).await;
        Seen {
            roles: self.roles,
            before: self.before,
            after,
            samples,
            ended_s,
        }
    }
}

/// What the servers said around the load.
struct Seen {
    roles: BTreeMap<String, &'static str>,
    before: BTreeMap<String, String>,
    after: BTreeMap<String, String>,
    samples: Vec<metrics::Sample>,
    /// When the load ended, in seconds since sampling began.
    ended_s: f64,
}

impl Seen {
    /// Into the result as `apply` records them; the warnings they merit. `reuses`: the
    /// workload shares prefixes on purpose (its reuse is a note, not a warning).
    fn record(&self, r: &mut RunResult, ttft_ms: Option<f64>, reuses: bool) -> Vec<String> {
        if self.roles.is_empty() {
            return Vec::new();
        }
        let v = &mut r.vbench;
        v.server_queue = queue::trend(&self.samples, self.ended_s - r.duration, &v.requests);
        let said = cache::record(
            v,
            &cache::ServerMetrics {
                roles: &self.roles,
                before: &self.before,
                after: &self.after,
                samples: &self.samples,
            },
            None,
            reuses,
            ttft_ms,
        );
        v.load.notes.extend(said.notes);
        v.load.warnings.extend(said.warnings.iter().cloned());
        said.warnings
    }
}
