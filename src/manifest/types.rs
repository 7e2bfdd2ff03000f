//! The manifest's serde types. They mirror the TOML one to one (unknown keys are errors) and
//! their doc comments become the JSON Schema's descriptions, so they are user documentation.
//! Nothing here is validated beyond types: the planner resolves and checks the meaning.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::env_value::EnvMap;
use super::one_or_many::OneOrMany;

/// One benchmark experiment: a model, a workload, SLOs, and the deployments to compare.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Experiment name; results go to `results/<name>/<timestamp>/`. Letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// Free text shown in the report.
    #[serde(default)]
    pub description: Option<String>,
    /// Model to serve: a Hugging Face id (e.g. `Qwen/Qwen3-0.6B`) or a local folder (a relative
    /// path that names a folder beside the manifest is passed to vLLM as an absolute path).
    pub model: String,
    /// Name the server exposes the model under (vLLM's `--served-model-name`). Default: `model`.
    #[serde(default)]
    pub served_model_name: Option<String>,
    /// Tokenizer for counting and synthesising prompts: a `tokenizer.json`, a model folder, or a
    /// Hugging Face id resolved in the local cache. Default: `model`.
    #[serde(default)]
    pub tokenizer: Option<String>,
    /// The prompts to send.
    pub dataset: Dataset,
    /// The request rates and how arrivals are spaced.
    pub load: Load,
    /// Service-level objectives the report scores against.
    #[serde(default)]
    pub slo: Slo,
    /// Where and how processes run.
    #[serde(default)]
    pub target: Target,
    /// Which figures and formats the report produces.
    #[serde(default)]
    pub report: ReportOptions,
    /// The deployments to compare. Any list-valued field makes a sweep axis: the planner
    /// expands each deployment into the cartesian product of its lists (its variants).
    #[serde(rename = "deployment")]
    pub deployments: Vec<Deployment>,
}

/// Where prompts come from.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// `sharegpt` (ShareGPT JSON, filtered as vLLM does), `random` (synthetic prompts of exact
    /// token lengths; needs a tokenizer), `jsonl` (one JSON object per line with a `prompt`),
    /// `shared_prefix` (groups of requests sharing a system prompt; needs a tokenizer),
    /// `trace` (a request trace with arrival times and lengths, see `format`; needs a
    /// tokenizer) or `sessions` (multi-turn conversations: each turn is sent after the
    /// previous answer plus a think time, with the whole conversation as its prompt;
    /// synthetic, needing a tokenizer, or from a ShareGPT `path`). With `sessions`,
    /// `load.rates` are session starts per second and `load.num_prompts` is sessions.
    pub kind: DatasetKind,
    /// Path of the dataset file (sharegpt, jsonl, trace; sessions: a ShareGPT file whose
    /// conversations' human turns become the user messages), relative to the manifest's
    /// folder.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// random: prompt length in tokens.
    #[serde(default)]
    pub input_len: Option<u32>,
    /// random, shared_prefix and synthetic sessions: output length in tokens (per turn for
    /// sessions; sent as `max_tokens` with `ignore_eos`). sharegpt, jsonl, trace and ShareGPT
    /// sessions: overrides each entry's (each answer's) own output length.
    #[serde(default)]
    pub output_len: Option<u32>,
    /// random: lengths are drawn uniformly from `[len·(1−r), len·(1+r)]`. Default 0.
    #[serde(default)]
    pub range_ratio: Option<f64>,
    /// shared_prefix: number of groups; each group's requests share one system prompt.
    #[serde(default)]
    pub groups: Option<u32>,
    /// shared_prefix: system-prompt length in tokens (the special tokens the tokenizer adds,
    /// e.g. a BOS, included), identical across a group's requests. Synthetic sessions: each
    /// session's own system prompt (default: none).
    #[serde(default)]
    pub system_prompt_len: Option<u32>,
    /// shared_prefix: question length in tokens, different for every request. Synthetic
    /// sessions: the user message of every turn, in tokens.
    #[serde(default)]
    pub question_len: Option<u32>,
    /// sessions: turns per session (synthetic: required; ShareGPT: at most this many of each
    /// conversation's turns, default all of them).
    #[serde(default)]
    pub turns: Option<u32>,
    /// sessions: mean think time in seconds between the end of a turn's answer and the next
    /// turn's send (default 0: at once).
    #[serde(default)]
    pub think_time_s: Option<f64>,
    /// sessions: how think times are drawn (from the seed): `exponential` (default) around
    /// `think_time_s`, or `fixed` at exactly `think_time_s`.
    #[serde(default)]
    pub think_time: Option<ThinkTime>,
    /// trace: the file's format: `mooncake` (JSONL with `timestamp` in ms, `input_length`,
    /// `output_length`, `hash_ids`), `azure` (Azure LLM inference CSV: `TIMESTAMP`,
    /// `ContextTokens`, `GeneratedTokens`) or `burstgpt` (BurstGPT CSV: `Timestamp` in s,
    /// `Model`, `Request tokens`, `Response tokens`, `Total tokens`, `Log Type`).
    #[serde(default)]
    pub format: Option<TraceFormat>,
    /// trace, mooncake format: tokens per `hash_ids` block (Mooncake's traces use 512).
    /// Requests that share leading hash ids share exactly those prompt tokens.
    #[serde(default)]
    pub block_size: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DatasetKind {
    Sharegpt,
    Random,
    Jsonl,
    SharedPrefix,
    Trace,
    Sessions,
}

/// How `kind = "sessions"` draws think times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ThinkTime {
    Exponential,
    Fixed,
}

impl DatasetKind {
    /// The name as written in the manifest.
    pub fn as_str(&self) -> &'static str {
        match self {
            DatasetKind::Sharegpt => "sharegpt",
            DatasetKind::Random => "random",
            DatasetKind::Jsonl => "jsonl",
            DatasetKind::SharedPrefix => "shared_prefix",
            DatasetKind::Trace => "trace",
            DatasetKind::Sessions => "sessions",
        }
    }

    /// Whether the workload shares prompt prefixes between requests by design (so a prefix
    /// cache is meant to find them): a session's turns share its history.
    pub fn reuses_prefixes(&self) -> bool {
        matches!(
            self,
            DatasetKind::SharedPrefix | DatasetKind::Trace | DatasetKind::Sessions
        )
    }

    /// Whether prompts are synthesised to exact token lengths (so a tokenizer is required);
    /// for sessions that depends on the source ([`Dataset::needs_tokenizer`]).
    pub fn needs_tokenizer(&self) -> bool {
        matches!(
            self,
            DatasetKind::Random | DatasetKind::SharedPrefix | DatasetKind::Trace
        )
    }
}

impl Dataset {
    /// Whether prompts are synthesised to exact token lengths (so a tokenizer is required):
    /// sessions are, unless they come from a ShareGPT file.
    pub fn needs_tokenizer(&self) -> bool {
        self.kind.needs_tokenizer() || self.synthetic_sessions()
    }

    /// Synthetic multi-turn sessions (`kind = "sessions"` without a `path`).
    pub fn synthetic_sessions(&self) -> bool {
        self.kind == DatasetKind::Sessions && self.path.is_none()
    }
}

/// The public request-trace formats `kind = "trace"` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TraceFormat {
    Mooncake,
    Azure,
    Burstgpt,
}

impl TraceFormat {
    pub fn as_str(&self) -> &'static str {
        match self {
            TraceFormat::Mooncake => "mooncake",
            TraceFormat::Azure => "azure",
            TraceFormat::Burstgpt => "burstgpt",
        }
    }
}

/// The offered load: open loop, one sweep over `rates` per variant.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Load {
    /// Request rates in requests per second, swept in order for each variant; `"inf"` sends
    /// every request at once. Required unless `[load.search]` finds the rate instead. With
    /// `kind = "sessions"`: session starts per second (later turns follow their answers).
    #[serde(default)]
    pub rates: Option<OneOrMany<Rate>>,
    /// Instead of `rates`, for `kind = "trace"`: replay the trace's own arrival times
    /// (relative to its first request), compressed by each factor in turn (2 = twice as fast);
    /// each speedup is one cell of the sweep. With `rates` instead, a trace keeps its lengths
    /// and prefixes but arrivals follow `arrival` at each rate.
    #[serde(default)]
    pub speedups: Option<OneOrMany<f64>>,
    /// Instead of `rates`: search each variant for the highest rate that meets the SLO target
    /// (`[slo]`'s `target_pct`), probing in batches of `num_prompts` requests. Not with
    /// `kind = "sessions"`.
    #[serde(default)]
    pub search: Option<SearchOptions>,
    /// Inter-arrival distribution: `poisson` (exponential gaps), `gamma` (set `burstiness`),
    /// `constant` (equal gaps).
    #[serde(default)]
    pub arrival: Arrival,
    /// Gamma shape for `arrival = "gamma"`: 1 is Poisson, below 1 burstier, above 1 smoother.
    #[serde(default)]
    pub burstiness: Option<f64>,
    /// Requests measured at each rate (warm-up not included); with `kind = "sessions"`, the
    /// sessions started at each rate (each sends all its turns).
    #[serde(default = "defaults::num_prompts")]
    pub num_prompts: u32,
    /// How many times each rate is measured (1 to 100). Repeats run within one launch of a
    /// variant, all its rates in turn before the next repeat; each repeat draws its own
    /// prompts from the dataset and its own arrival instants (seed + repeat - 1), and the
    /// report pools them, with the spread between repeats beside the pooled intervals.
    #[serde(default = "defaults::one")]
    pub repeats: u32,
    /// Seed for the prompt sample and the arrival schedule; the same seed replays the same
    /// requests at the same instants against every variant.
    #[serde(default)]
    pub seed: u64,
    /// Requests sent before each rate's measurement and excluded from results (sessions: the
    /// first turns of this many extra sessions).
    #[serde(default)]
    pub warmup: u32,
    /// Cap on requests in flight. Unset: pure open loop (recommended; a cap hides queueing).
    /// Not with `kind = "sessions"`, whose turns already wait for their answers.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Per-request timeout in seconds; a request that exceeds it counts as failed.
    #[serde(default = "defaults::request_timeout_s")]
    pub timeout_s: f64,
    /// `completions` (`/v1/completions`) or `chat` (`/v1/chat/completions`).
    #[serde(default)]
    pub api: Api,
    /// Ask the server to ignore end-of-sequence so every request produces its full output length.
    /// Forced on for the random dataset.
    #[serde(default)]
    pub ignore_eos: bool,
}

impl Load {
    /// The swept rates (none with `[load.search]` or `speedups`).
    pub fn rates(&self) -> &[Rate] {
        self.rates.as_ref().map(OneOrMany::values).unwrap_or(&[])
    }

    /// The swept trace speedups (none unless a trace is replayed).
    pub fn speedups(&self) -> &[f64] {
        self.speedups.as_ref().map(OneOrMany::values).unwrap_or(&[])
    }
}

/// `[load.search]`: the SLO-capacity search (docs/metrics.md, "SLO-capacity search").
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchOptions {
    /// The first rate probed, requests per second; rates that meet the target double.
    pub start: f64,
    /// Never probe above this rate (default 64 × `start`).
    #[serde(default)]
    pub max_rate: Option<f64>,
    /// Stop when the target is missed down to this rate (default `start` / 64).
    #[serde(default)]
    pub min_rate: Option<f64>,
    /// Stop when the bracket [highest pass, lowest fail] is this narrow, relative (default
    /// 0.05).
    #[serde(default = "defaults::search_tolerance")]
    pub tolerance: f64,
    /// Batches of `num_prompts` requests one rate may get while its attainment interval
    /// straddles the target (default 4).
    #[serde(default = "defaults::search_max_batches")]
    pub max_batches: u32,
    /// Batches (each with its own arrival seed) both ends of the final bracket must rest on
    /// before the search ends (default 2; 1 turns the confirmation off): one batch near
    /// capacity passes or fails with its seed.
    #[serde(default = "defaults::search_confirm_batches")]
    pub confirm_batches: u32,
    /// Measured requests per variant at most (default 20 × `num_prompts`).
    #[serde(default)]
    pub budget: Option<u64>,
    /// A probe whose failed requests pass this share (%) is saturated: a fail at once
    /// (default 5).
    #[serde(default = "defaults::search_max_failed_pct")]
    pub max_failed_pct: f64,
}

/// A request rate: a positive number of requests per second, or `"inf"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    PerSecond(f64),
    Infinite,
}

impl Rate {
    /// File-name form: `2`, `0.5`, `inf` (as in `vllm-0.5qps.json`).
    pub fn label(&self) -> String {
        match self {
            Rate::PerSecond(r) => format!("{r}"),
            Rate::Infinite => "inf".to_owned(),
        }
    }

    pub fn as_f64(&self) -> f64 {
        match self {
            Rate::PerSecond(r) => *r,
            Rate::Infinite => f64::INFINITY,
        }
    }

    /// The rate a [`Rate::label`] names; None for anything else.
    pub fn parse_label(label: &str) -> Option<Rate> {
        if label == "inf" {
            return Some(Rate::Infinite);
        }
        let r: f64 = label.parse().ok()?;
        (r.is_finite() && r > 0.0).then_some(Rate::PerSecond(r))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Rate::PerSecond(r) => s.serialize_f64(*r),
            Rate::Infinite => s.serialize_str("inf"),
        }
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let positive = |r: f64| {
            if r.is_finite() && r > 0.0 {
                Ok(Rate::PerSecond(r))
            } else {
                Err(D::Error::custom(format!(
                    "rate {r} is not a positive number of requests per second (or \"inf\")"
                )))
            }
        };
        serde_untagged::UntaggedEnumVisitor::new()
            .expecting("a positive request rate or \"inf\"")
            .i64(|v| positive(v as f64).map_err(serde_untagged::de::Error::custom))
            .u64(|v| positive(v as f64).map_err(serde_untagged::de::Error::custom))
            .f64(|v| positive(v).map_err(serde_untagged::de::Error::custom))
            .string(|v| match v {
                "inf" => Ok(Rate::Infinite),
                other => Err(serde_untagged::de::Error::custom(format!(
                    "unknown rate \"{other}\": expected a number or \"inf\""
                ))),
            })
            .deserialize(d)
    }
}

impl JsonSchema for Rate {
    fn schema_name() -> String {
        "Rate".to_owned()
    }

    fn json_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        serde_json::from_value(serde_json::json!({
            "description": "Requests per second (> 0), or \"inf\" to send all at once.",
            "anyOf": [
                { "type": "number", "exclusiveMinimum": 0 },
                { "type": "string", "enum": ["inf"] }
            ]
        }))
        .expect("static schema is valid")
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Arrival {
    #[default]
    Poisson,
    Gamma,
    Constant,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    #[default]
    Completions,
    Chat,
}

/// Service-level objectives. A request meets the SLO at scale `s` when
/// `ttft ≤ s·ttft_ms` and `tpot ≤ s·tpot_ms`; failed requests never do.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// Time-to-first-token objective in milliseconds. With `tpot_ms` it also scores each result
    /// file's `request_goodput`, as vLLM's `--goodput ttft:MS tpot:MS` would.
    #[serde(default = "defaults::ttft_ms")]
    pub ttft_ms: f64,
    /// Time-per-output-token objective in milliseconds.
    #[serde(default = "defaults::tpot_ms")]
    pub tpot_ms: f64,
    /// Attainment target in percent; goodput is the highest rate meeting it.
    #[serde(default = "defaults::target_pct")]
    pub target_pct: f64,
    /// SLO scales for the attainment-vs-scale panel (smaller is stricter).
    #[serde(default = "defaults::scales")]
    pub scales: Vec<f64>,
    /// Request rate whose results are re-scored for the SLO-scale panel. Default: the middle
    /// of the swept rates.
    #[serde(default)]
    pub scale_rate: Option<f64>,
}

impl Default for Slo {
    fn default() -> Self {
        Slo {
            ttft_ms: defaults::ttft_ms(),
            tpot_ms: defaults::tpot_ms(),
            target_pct: defaults::target_pct(),
            scales: defaults::scales(),
            scale_rate: None,
        }
    }
}

/// The variable vLLM takes its API key from (as `--api-key`, but kept out of its command line,
/// which vLLM logs and vbench records). vbench sets it from `target.api_key_env`.
pub const VLLM_API_KEY_VAR: &str = "VLLM_API_KEY";

/// Where processes run and what they may use.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// `local` (processes on this host), `slurm` (steps of a Slurm allocation through `srun`)
    /// or `sim` (the built-in simulator stands in for vLLM; no GPU needed).
    #[serde(default)]
    pub backend: Backend,
    /// `cuda` (GPUs) or `cpu` (vLLM's CPU build; each instance gets `cpu_cores_per_instance` cores).
    #[serde(default)]
    pub accelerator: Accelerator,
    /// GPUs vbench may use: `"auto"` (discover with nvidia-smi), a count, or a list of indices.
    #[serde(default)]
    pub gpus: Gpus,
    /// cpu accelerator: cores pinned to each vLLM instance (VLLM_CPU_OMP_THREADS_BIND).
    #[serde(default = "defaults::cpu_cores_per_instance")]
    pub cpu_cores_per_instance: u32,
    /// cpu accelerator: cores vbench may hand out. Default: all cores of the host.
    #[serde(default)]
    pub cpus: Option<Vec<u32>>,
    /// Seconds to wait for every component's `/health` before the variant counts as failed.
    #[serde(default = "defaults::health_timeout_s")]
    pub health_timeout_s: f64,
    /// How a variant's instances start: `"together"` (the default, the fastest) or
    /// `"one_by_one"` (each healthy before the next starts). vLLM sizes its KV cache from the
    /// GPU memory it finds free while it starts, so instances that share a GPU split it
    /// unevenly when they start together; start them one by one.
    #[serde(default)]
    pub start: StartOrder,
    /// Before measuring a NIXL or LMCache variant, compare a greedy completion through prefill
    /// and decode with the same request on one instance alone (a prefill instance for NIXL, a
    /// decoder for LMCache), and fail the variant when they differ (KV that arrived wrong).
    /// Default true; false where greedy decoding is not reproducible across the two paths
    /// (near-ties in random weights on different kernels).
    #[serde(default = "defaults::verify_output")]
    pub verify_output: bool,
    /// The `vllm` executable (or a path to it), or a whole command as a list whose first item is
    /// the program, e.g. `["python3", "-m", "vllm.entrypoints.cli.main"]` for a vLLM that is
    /// importable but has no usable `vllm` script. vbench appends `serve ...` (and `--version`).
    #[serde(default)]
    pub vllm_bin: VllmCommand,
    /// Environment for every vLLM instance on this target (and vbench's `vllm --version` probe),
    /// e.g. `PYTHONPATH` or NCCL settings of the site. A deployment's or role's `env` wins.
    /// A value is a string, or `{ env = "NAME" }` to pass vbench's own `NAME` at launch
    /// without writing it anywhere (for tokens).
    #[serde(default)]
    pub env: EnvMap,
    /// The name of a variable in vbench's environment that holds an API key. Every vLLM
    /// instance then starts with it as `VLLM_API_KEY` (vLLM refuses `/v1` requests without
    /// it), and vbench sends it as a bearer token with every request it makes (load, warm-up,
    /// start-up checks; the built-in proxy passes it on, vllm-router cannot). The key is never
    /// written anywhere; at start-up vbench checks that every instance refuses a request
    /// without it.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// sim backend: simulator profile, a built-in name (e.g. `llama3-8b-h200`) or a TOML path.
    #[serde(default)]
    pub sim_profile: Option<String>,
    /// Where vLLM keeps what it compiles (torch.compile, Inductor, Triton, FlashInfer and CUDA
    /// JIT caches), shared by every instance, variant and run so that only the first start of
    /// a configuration pays for compilation: `"auto"` (the default: `compile/` in
    /// `$VBENCH_CACHE_DIR`, else in `$XDG_CACHE_HOME/vbench`, else in `~/.cache/vbench`), `"off"`
    /// (vLLM's own defaults), or a folder (relative to the manifest's). On Slurm, a folder every
    /// node sees.
    #[serde(default)]
    pub compile_cache: Option<String>,
    /// slurm backend options.
    #[serde(default)]
    pub slurm: Option<SlurmOptions>,
}

impl Default for Target {
    fn default() -> Self {
        Target {
            backend: Backend::default(),
            accelerator: Accelerator::default(),
            gpus: Gpus::default(),
            cpu_cores_per_instance: defaults::cpu_cores_per_instance(),
            cpus: None,
            health_timeout_s: defaults::health_timeout_s(),
            start: StartOrder::default(),
            verify_output: true,
            vllm_bin: VllmCommand::default(),
            env: BTreeMap::new(),
            api_key_env: None,
            sim_profile: None,
            compile_cache: None,
            slurm: None,
        }
    }
}

/// `target.start`: all of a variant's instances at once, or each after the previous is healthy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StartOrder {
    #[default]
    Together,
    OneByOne,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Local,
    Slurm,
    Sim,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Accelerator {
    #[default]
    Cuda,
    Cpu,
}

/// `"auto"`, a GPU count, or a list of GPU indices.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Gpus {
    #[default]
    Auto,
    Count(u32),
    List(Vec<u32>),
}

impl Serialize for Gpus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Gpus::Auto => s.serialize_str("auto"),
            Gpus::Count(n) => s.serialize_u32(*n),
            Gpus::List(l) => l.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Gpus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        use serde_untagged::de::Error;
        serde_untagged::UntaggedEnumVisitor::new()
            .expecting("\"auto\", a GPU count, or a list of GPU indices")
            .string(|v| match v {
                "auto" => Ok(Gpus::Auto),
                other => Err(Error::custom(format!(
                    "unknown value \"{other}\": expected \"auto\", a count like 8, or a list like [0, 1]"
                ))),
            })
            .i64(|v| {
                u32::try_from(v)
                    .map(Gpus::Count)
                    .map_err(|_| Error::custom(format!("GPU count {v} must be between 0 and 4294967295")))
            })
            .u64(|v| {
                u32::try_from(v)
                    .map(Gpus::Count)
                    .map_err(|_| Error::custom(format!("GPU count {v} is too large")))
            })
            .seq(|seq| seq.deserialize().map(Gpus::List))
            .deserialize(d)
    }
}

impl JsonSchema for Gpus {
    fn schema_name() -> String {
        "Gpus".to_owned()
    }

    fn json_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        serde_json::from_value(serde_json::json!({
            "description": "\"auto\" (discover with nvidia-smi), a GPU count, or a list of GPU indices.",
            "anyOf": [
                { "type": "string", "enum": ["auto"] },
                { "type": "integer", "minimum": 0 },
                { "type": "array", "items": { "type": "integer", "minimum": 0 }, "uniqueItems": true }
            ]
        }))
        .expect("static schema is valid")
    }
}

/// The command that runs vLLM: a program, or a program and its leading arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct VllmCommand(Vec<String>);

impl VllmCommand {
    /// The program to execute (the first item).
    pub fn program(&self) -> &str {
        &self.0[0]
    }

    /// Arguments that come before vLLM's own (`serve ...`); empty for a plain executable.
    pub fn leading_args(&self) -> &[String] {
        &self.0[1..]
    }

    pub fn parts(&self) -> &[String] {
        &self.0
    }
}

impl Default for VllmCommand {
    fn default() -> Self {
        VllmCommand(vec![defaults::vllm_bin()])
    }
}

impl Serialize for VllmCommand {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for VllmCommand {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        use serde_untagged::de::Error;
        let checked = |parts: Vec<String>| {
            match parts.first() {
            Some(p) if !p.trim().is_empty() => Ok(VllmCommand(parts)),
            _ => Err(Error::custom(
                "vllm_bin needs a program: e.g. \"vllm\" or [\"python3\", \"-m\", \"vllm.entrypoints.cli.main\"]",
            )),
        }
        };
        serde_untagged::UntaggedEnumVisitor::new()
            .expecting("a program, or a list of a program and its leading arguments")
            .string(|v| checked(vec![v.to_owned()]))
            .seq(|seq| seq.deserialize().and_then(checked))
            .deserialize(d)
    }
}

impl JsonSchema for VllmCommand {
    fn schema_name() -> String {
        "VllmCommand".to_owned()
    }

    fn json_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        serde_json::from_value(serde_json::json!({
            "description": "A program, or a list of a program and its leading arguments.",
            "anyOf": [
                { "type": "string", "minLength": 1 },
                { "type": "array", "items": { "type": "string" }, "minItems": 1 }
            ]
        }))
        .expect("static schema is valid")
    }
}

/// Slurm placement for the `slurm` backend.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlurmOptions {
    /// Partition to allocate from.
    #[serde(default)]
    pub partition: Option<String>,
    /// Nodes to allocate.
    #[serde(default = "defaults::one")]
    pub nodes: u32,
    /// GPUs per node.
    #[serde(default)]
    pub gpus_per_node: Option<u32>,
    /// Account to charge.
    #[serde(default)]
    pub account: Option<String>,
    /// Wall-time limit (`HH:MM:SS`).
    #[serde(default)]
    pub time: Option<String>,
    /// CPUs each instance's step gets (`srun --cpus-per-task`).
    #[serde(default = "defaults::slurm_cpus_per_instance")]
    pub cpus_per_instance: u32,
    /// Extra `salloc` arguments.
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// How a variant's instances are spread over the allocation's nodes: `pack` (the default:
    /// a variant on as few nodes as it fits, one whenever it can, so KV moves over the
    /// node's fastest link) or `spread` (prefill and decode instances on different nodes, and
    /// the instances of each role over its nodes in turn: KV crosses the network, as in a
    /// deployment larger than a node). `vbench plan` shows where each instance goes.
    #[serde(default)]
    pub placement: Placement,
    /// Ports vbench hands out on the nodes, `[first, last]`: each instance's HTTP port comes
    /// from this range, never twice on one node in a run (vbench cannot ask a remote node which
    /// ports are free, so it keeps them apart itself). Keep it clear of the nodes' ephemeral
    /// range (`/proc/sys/net/ipv4/ip_local_port_range`, usually from 32768).
    #[serde(default = "defaults::slurm_port_range")]
    pub port_range: [u16; 2],
    /// Where the proxy and the load generator run when `vbench apply` starts outside a job
    /// (on a login node): `first_node` (the default: vbench makes the allocation, then runs
    /// the run itself as a step on the allocation's first node, next to the instances, and
    /// relays its output) or `here` (they stay on the login node, which must reach the
    /// nodes; its load and network path are then part of every latency). Inside a job
    /// (`sbatch`) vbench already runs on the first node.
    #[serde(default)]
    pub driver: SlurmDriver,
}

/// Where a Slurm run's proxy and load generator run (`target.slurm.driver`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SlurmDriver {
    // (Described in `SlurmOptions::driver`.)
    #[default]
    FirstNode,
    Here,
}

/// Where the instances of a variant go on the nodes of a Slurm allocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    // (Described in `SlurmOptions::placement`, so the schema keeps a plain list of names.)
    #[default]
    Pack,
    Spread,
}

impl Placement {
    /// As the manifest spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Placement::Pack => "pack",
            Placement::Spread => "spread",
        }
    }
}

impl Default for SlurmOptions {
    fn default() -> Self {
        SlurmOptions {
            partition: None,
            nodes: defaults::one(),
            gpus_per_node: None,
            account: None,
            time: None,
            cpus_per_instance: defaults::slurm_cpus_per_instance(),
            extra_args: Vec::new(),
            placement: Placement::default(),
            port_range: defaults::slurm_port_range(),
            driver: SlurmDriver::default(),
        }
    }
}

/// What the report draws.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportOptions {
    /// Figure formats to write.
    #[serde(default = "defaults::formats")]
    pub formats: Vec<FigureFormat>,
    /// x axis of attainment-vs-rate plots: `rate` or `per-gpu` (rate divided by the variant's GPUs).
    #[serde(default)]
    pub x_axis: XAxis,
    /// `shared`: compare only the rates every variant ran (default); `separate`: each its own.
    #[serde(default)]
    pub rates: RateSelection,
    /// SLO types to draw comparisons for.
    #[serde(default = "defaults::slo_types")]
    pub slo_types: Vec<SloType>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            formats: defaults::formats(),
            x_axis: XAxis::default(),
            rates: RateSelection::default(),
            slo_types: defaults::slo_types(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FigureFormat {
    Pdf,
    Svg,
    Png,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum XAxis {
    #[default]
    Rate,
    PerGpu,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RateSelection {
    #[default]
    Shared,
    Separate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SloType {
    Ttft,
    Tpot,
    Both,
}

/// One deployment to benchmark. List-valued fields are sweep axes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// `simple` (one vLLM per replica, tensor parallel), `nixl` (prefill/decode disaggregation
    /// over NixlConnector) or `lmcache` (disaggregation over LMCacheConnectorV1).
    pub mode: Mode,
    /// Label for the report. Default: derived from mode and topology, e.g. `nixl PF:2 D:1 TP:1x1`.
    #[serde(default)]
    pub label: Option<String>,
    /// simple: tensor-parallel size of each instance.
    #[serde(default)]
    pub tp: Option<OneOrMany<u32>>,
    /// simple: number of identical instances behind the proxy.
    #[serde(default)]
    pub replicas: Option<OneOrMany<u32>>,
    /// nixl/lmcache: the prefill instances.
    #[serde(default)]
    pub prefill: Option<Role>,
    /// nixl/lmcache: the decode instances.
    #[serde(default)]
    pub decode: Option<Role>,
    /// Fraction of GPU memory vLLM may use (`--gpu-memory-utilization`).
    #[serde(default)]
    pub gpu_memory_utilization: Option<OneOrMany<f64>>,
    /// `--max-model-len`.
    #[serde(default)]
    pub max_model_len: Option<OneOrMany<u32>>,
    /// `--max-num-seqs`.
    #[serde(default)]
    pub max_num_seqs: Option<OneOrMany<u32>>,
    /// `--max-num-batched-tokens`.
    #[serde(default)]
    pub max_num_batched_tokens: Option<OneOrMany<u32>>,
    /// `--load-format`; `dummy` benchmarks the model's shape with random weights (only its
    /// config.json is needed).
    #[serde(default)]
    pub load_format: Option<String>,
    /// Extra `vllm serve` arguments for every instance of this deployment.
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// Extra environment for every instance of this deployment.
    #[serde(default)]
    pub env: EnvMap,
    /// The proxy in front of the instances: `builtin` (vbench's own, which speaks the NIXL and
    /// LMCache protocols) or `vllm-router` (nixl). `lmcache` (LMCache's disagg proxy script)
    /// is refused: the lmcache wheel does not ship it. Default: builtin.
    #[serde(default)]
    pub proxy: Option<OneOrMany<ProxyKind>>,
    /// nixl mode options.
    #[serde(default)]
    pub nixl: Option<NixlOptions>,
    /// lmcache mode options.
    #[serde(default)]
    pub lmcache: Option<LmcacheOptions>,
    /// Override the built-in launch templates by name (`vllm_serve`, `vllm_env`, `sim_serve`,
    /// `proxy_builtin`, `proxy_vllm_router`, `lmcache_prefiller_yaml`, `lmcache_decoder_yaml`,
    /// `fatal_lines`; e.g. `vllm_serve = "templates/serve.hbs"`), to fix a flag for another
    /// vLLM version without a new vbench release. Paths are relative to the manifest.
    #[serde(default)]
    pub templates: BTreeMap<String, PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Simple,
    Nixl,
    Lmcache,
}

impl Mode {
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Simple => "simple",
            Mode::Nixl => "nixl",
            Mode::Lmcache => "lmcache",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The prefill or decode side of a disaggregated deployment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// Number of instances of this role. Default 1.
    #[serde(default)]
    pub instances: Option<OneOrMany<u32>>,
    /// Tensor-parallel size of each instance. Default 1.
    #[serde(default)]
    pub tp: Option<OneOrMany<u32>>,
    /// Overrides the deployment's `gpu_memory_utilization` for this role.
    #[serde(default)]
    pub gpu_memory_utilization: Option<OneOrMany<f64>>,
    /// Extra `vllm serve` arguments for this role only.
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// Extra environment for this role only.
    #[serde(default)]
    pub env: EnvMap,
}

/// The launch templates a deployment may override (`deployment.templates`), by name; vbench's
/// built-in ones (`exec::templates`) carry exactly these names.
pub const TEMPLATE_NAMES: &[&str] = &[
    "vllm_serve",
    "vllm_env",
    "sim_serve",
    "proxy_builtin",
    "proxy_vllm_router",
    "lmcache_prefiller_yaml",
    "lmcache_decoder_yaml",
    "fatal_lines",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyKind {
    Builtin,
    VllmRouter,
    Lmcache,
}

impl ProxyKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ProxyKind::Builtin => "builtin",
            ProxyKind::VllmRouter => "vllm-router",
            ProxyKind::Lmcache => "lmcache",
        }
    }
}

/// NixlConnector settings.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NixlOptions {
    /// First NIXL side-channel port; each instance gets a disjoint block of `tp` ports from here.
    #[serde(default = "defaults::nixl_side_channel_port")]
    pub side_channel_port: u16,
    /// Where the KV transfer buffer lives: `cuda` (default) or `cpu` (needed on the CPU build).
    #[serde(default)]
    pub kv_buffer_device: Option<String>,
    /// NIXL backends, e.g. `["UCX"]`.
    #[serde(default)]
    pub backends: Option<Vec<String>>,
    /// `fail` (default: a failed transfer fails the request) or `recompute` (hides failures as latency).
    #[serde(default)]
    pub kv_load_failure_policy: Option<String>,
}

impl Default for NixlOptions {
    fn default() -> Self {
        NixlOptions {
            side_channel_port: defaults::nixl_side_channel_port(),
            kv_buffer_device: None,
            backends: None,
            kv_load_failure_policy: None,
        }
    }
}

/// LMCache PD settings.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LmcacheOptions {
    /// Lowest port for LMCache's PD side channels (the proxy's notification port, then each
    /// decoder's init and alloc ports): vbench takes the first free block at or above it.
    #[serde(default = "defaults::lmcache_port")]
    pub port: u16,
    /// Extra keys merged into the prefiller's LMCache YAML.
    #[serde(default)]
    pub prefiller_yaml: BTreeMap<String, serde_json::Value>,
    /// Extra keys merged into the decoder's LMCache YAML.
    #[serde(default)]
    pub decoder_yaml: BTreeMap<String, serde_json::Value>,
    /// Seconds the proxy waits, per request, for the prefillers' report that the KV reached
    /// the decoder before the request fails (a decoder asked sooner would recompute the
    /// prompt). Default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_wait_s: Option<f64>,
}

impl Default for LmcacheOptions {
    fn default() -> Self {
        LmcacheOptions {
            port: defaults::lmcache_port(),
            prefiller_yaml: BTreeMap::new(),
            decoder_yaml: BTreeMap::new(),
            kv_wait_s: None,
        }
    }
}

/// Defaults, most carried over from the original script suite.
pub mod defaults {
    use super::{FigureFormat, SloType};

    pub const GPU_MEMORY_UTILIZATION: f64 = 0.8;
    pub const INSTANCES: u32 = 1;
    pub const TP: u32 = 1;

    pub fn num_prompts() -> u32 {
        200
    }
    pub fn request_timeout_s() -> f64 {
        300.0
    }
    pub fn ttft_ms() -> f64 {
        125.0
    }
    pub fn tpot_ms() -> f64 {
        200.0
    }
    pub fn target_pct() -> f64 {
        90.0
    }
    pub fn scales() -> Vec<f64> {
        vec![0.4, 0.6, 0.8, 1.0, 1.2, 1.5, 2.0]
    }
    pub fn cpu_cores_per_instance() -> u32 {
        1
    }
    pub fn verify_output() -> bool {
        true
    }
    pub fn health_timeout_s() -> f64 {
        600.0
    }
    pub fn vllm_bin() -> String {
        "vllm".to_owned()
    }
    pub fn one() -> u32 {
        1
    }
    /// Tokens per `hash_ids` block of a Mooncake trace.
    pub const TRACE_BLOCK_SIZE: u32 = 512;
    pub fn search_tolerance() -> f64 {
        0.05
    }
    pub fn search_max_batches() -> u32 {
        4
    }
    pub fn search_confirm_batches() -> u32 {
        2
    }
    pub fn search_max_failed_pct() -> f64 {
        5.0
    }
    pub fn slurm_cpus_per_instance() -> u32 {
        4
    }
    pub fn slurm_port_range() -> [u16; 2] {
        [20000, 29999]
    }
    pub fn formats() -> Vec<FigureFormat> {
        vec![FigureFormat::Pdf, FigureFormat::Svg, FigureFormat::Png]
    }
    pub fn slo_types() -> Vec<SloType> {
        vec![SloType::Ttft, SloType::Tpot, SloType::Both]
    }
    pub fn nixl_side_channel_port() -> u16 {
        5600
    }
    pub fn lmcache_port() -> u16 {
        65432
    }
}
