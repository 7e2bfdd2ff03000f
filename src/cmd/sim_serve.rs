//! `vbench sim-serve`: a simulated vLLM instance on a port. Its flags mirror `vllm serve`'s
//! where they overlap, so a launcher starts it the same way.

use crate::error::{Error, Result};
use crate::sim::faults::FaultSpec;
use crate::sim::{serve, Connector, Profile, Role, ServeExit, SimConfig};

/// Serve a simulated vLLM instance (OpenAI-compatible, streaming) on a port.
///
/// Ready when GET /health answers 200; stops on SIGTERM or SIGINT. Every figure it produces is
/// simulated.
#[derive(Debug, clap::Args)]
pub struct SimServeArgs {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// What this instance is: a whole server, or one side of a prefill/decode pair.
    #[arg(long, value_enum, default_value_t = RoleArg::Simple)]
    pub role: RoleArg,
    /// Built-in profile name (llama3-8b-h200, qwen3-0.6b-h200, tiny-cpu) or a TOML file.
    #[arg(long, default_value = "qwen3-0.6b-h200")]
    pub profile: String,
    /// Model name clients must send (vLLM's --served-model-name).
    #[arg(long, visible_alias = "served-model-name", default_value = "sim")]
    pub model: String,
    /// Tensor-parallel size (speeds steps up and enlarges the KV cache per the profile).
    #[arg(long, visible_alias = "tensor-parallel-size", default_value_t = 1)]
    pub tp: u32,
    /// KV connector of a prefill/decode pair.
    #[arg(long, value_enum, default_value_t = ConnectorArg::Nixl)]
    pub kv_connector: ConnectorArg,
    /// vLLM's kv_role, as in --kv-transfer-config: kv_producer means --role prefill,
    /// kv_consumer --role decode; kv_both needs --role prefill or decode.
    #[arg(long, value_enum)]
    pub kv_role: Option<KvRole>,
    /// Override the profile's maximum context length.
    #[arg(long)]
    pub max_model_len: Option<u32>,
    /// Give the instance this many KV blocks (of the profile's block size) in all, as vLLM's
    /// flag of that name does, instead of the profile's KV capacity.
    #[arg(long)]
    pub num_gpu_blocks_override: Option<u64>,
    /// Refuse `/v1` requests that do not carry `Authorization: Bearer KEY`, as vLLM does with
    /// `--api-key` or `VLLM_API_KEY`.
    #[arg(long, env = "VLLM_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Count prompt tokens with this tokenizer (a tokenizer.json, a model folder or a cached
    /// model id), as vLLM would for the same prompt. Default: a stand-in of about 4
    /// characters per token, which can be 25 % off for real prompts.
    #[arg(long)]
    pub tokenizer: Option<String>,
    /// Host advertised in kv_transfer_params (as vLLM reads VLLM_NIXL_SIDE_CHANNEL_HOST).
    #[arg(long, env = "VLLM_NIXL_SIDE_CHANNEL_HOST", default_value = "localhost")]
    pub kv_host: String,
    /// Port advertised in kv_transfer_params (as vLLM reads VLLM_NIXL_SIDE_CHANNEL_PORT).
    #[arg(long, env = "VLLM_NIXL_SIDE_CHANNEL_PORT", default_value_t = 5600)]
    pub kv_port: u16,
    /// Engine id advertised in kv_transfer_params (random by default).
    #[arg(long)]
    pub engine_id: Option<String>,
    /// NIXL: listen on the side channel (--kv-host, --kv-port) as a prefill, or handshake with
    /// the prefill's before each new transfer as a decoder, as vLLM does; a decoder that cannot
    /// reach it prefills locally.
    #[arg(long)]
    pub kv_side_channel: bool,
    /// Wait this long before listening, as a model load does: connections are refused meanwhile.
    #[arg(long, value_name = "SECS")]
    pub startup_delay: Option<f64>,
    /// Compute every prompt in full, as `vllm serve --no-enable-prefix-caching` does (by
    /// default, prompt blocks an earlier prompt computed are taken from the prefix cache).
    #[arg(long)]
    pub no_enable_prefix_caching: bool,
    /// LMCache producer: tell the proxy listening here (LMCache's `pd_proxy_host:pd_proxy_port`,
    /// ZeroMQ PULL) when a request's KV is on its decoder, once per TP rank, as LMCache does.
    #[arg(long, value_name = "HOST:PORT")]
    pub lmcache_proxy: Option<std::net::SocketAddr>,
    /// Tokio worker threads for HTTP (the engine has a thread of its own).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    #[command(flatten)]
    pub faults: Box<FaultArgs>,
}

/// `--role`: which kind of instance this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    /// A whole instance: kv_transfer_params are ignored, as without `--kv-transfer-config`.
    Simple,
    /// A prefill instance of a disaggregated pair.
    Prefill,
    /// A decode instance of a disaggregated pair.
    Decode,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Simple => Role::Simple,
            RoleArg::Prefill => Role::Prefill,
            RoleArg::Decode => Role::Decode,
        }
    }
}

/// `--kv-connector`: which KV connector the pair speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConnectorArg {
    /// vLLM's NixlConnector (kv_both; the proxy decides who prefills).
    Nixl,
    /// LMCacheConnectorV1 (kv_producer on the prefill role, kv_consumer on the decode role).
    Lmcache,
}

impl From<ConnectorArg> for Connector {
    fn from(c: ConnectorArg) -> Self {
        match c {
            ConnectorArg::Nixl => Connector::Nixl,
            ConnectorArg::Lmcache => Connector::Lmcache,
        }
    }
}

/// vLLM's `kv_role` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KvRole {
    #[value(name = "kv_producer")]
    Producer,
    #[value(name = "kv_consumer")]
    Consumer,
    #[value(name = "kv_both")]
    Both,
}

impl SimServeArgs {
    /// The role these flags give, reconciling --role and --kv-role.
    fn role(&self) -> Result<Role> {
        let bad = |m: String| Err(Error::bad_input(anyhow::anyhow!(m)));
        match (self.kv_role, Role::from(self.role)) {
            (None, r) => Ok(r),
            (Some(KvRole::Producer), Role::Simple | Role::Prefill) => Ok(Role::Prefill),
            (Some(KvRole::Consumer), Role::Simple | Role::Decode) => Ok(Role::Decode),
            (Some(KvRole::Both), r @ (Role::Prefill | Role::Decode)) => Ok(r),
            (Some(KvRole::Both), Role::Simple) => {
                bad("--kv-role kv_both needs --role prefill or --role decode".into())
            }
            (Some(k), r) => bad(format!("--kv-role {k:?} contradicts --role {r:?}")),
        }
    }

    /// The server configuration these flags describe.
    pub fn config(&self) -> Result<SimConfig> {
        let role = self.role()?;
        let mut profile = Profile::load(&self.profile).map_err(Error::bad_input)?;
        if let Some(len) = self.max_model_len {
            if len == 0 || len as u64 > profile.kv_capacity_tokens * self.tp.max(1) as u64 {
                return Err(Error::bad_input(anyhow::anyhow!(
                    "--max-model-len {len} must be > 0 and fit the KV cache ({} tokens)",
                    profile.kv_capacity_tokens * self.tp.max(1) as u64
                )));
            }
            profile.max_model_len = len;
        }
        if self.tp == 0 {
            return Err(Error::bad_input(anyhow::anyhow!("--tp must be at least 1")));
        }
        if let Some(blocks) = self.num_gpu_blocks_override {
            let tokens = blocks.saturating_mul(u64::from(profile.block_size));
            if tokens < u64::from(profile.max_model_len) {
                return Err(Error::bad_input(anyhow::anyhow!(
                    "--num-gpu-blocks-override {blocks}: {tokens} tokens cannot hold one request \
                     of max_model_len {} (as vLLM refuses to start)",
                    profile.max_model_len
                )));
            }
        }
        let faults = FaultSpec::from((*self.faults).clone());
        faults.check().map_err(Error::bad_input)?;
        let counter = match &self.tokenizer {
            Some(spec) => crate::sim::tokens::Counter::real(std::sync::Arc::new(
                crate::load::Tokenizer::load(spec)
                    .map_err(|e| Error::bad_input(e.context("--tokenizer")))?,
            )),
            None => crate::sim::tokens::Counter::default(),
        };
        Ok(SimConfig {
            profile,
            served_model: self.model.clone(),
            tp: self.tp,
            role,
            connector: self.kv_connector.into(),
            faults,
            kv_host: self.kv_host.clone(),
            kv_port: self.kv_port,
            engine_id: self.engine_id.clone(),
            kv_side_channel: self.kv_side_channel,
            log: None,
            counter,
            prefix_caching: !self.no_enable_prefix_caching,
            lmcache_proxy: self.lmcache_proxy,
            kv_blocks_override: self.num_gpu_blocks_override,
            api_key: self.api_key.clone().filter(|k| !k.is_empty()),
        })
    }
}

pub fn run(args: SimServeArgs) -> Result<()> {
    let mut config = args.config()?;
    let (log, lines) = std::sync::mpsc::channel::<String>();
    config.log = Some(log);
    std::thread::spawn(move || {
        for line in lines {
            eprintln!("sim-serve: {line}");
        }
    });
    let mut rt = if args.workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(args.workers);
        b
    };
    let rt = rt.enable_all().build().map_err(Error::failed)?;
    if let Some(d) = args.startup_delay {
        if !d.is_finite() || d < 0.0 {
            return Err(Error::bad_input(anyhow::anyhow!(
                "--startup-delay must be a number of seconds >= 0, got {d}"
            )));
        }
    }
    let exit = rt.block_on(async {
        if let Some(d) = args.startup_delay {
            tokio::time::sleep(std::time::Duration::from_secs_f64(d)).await;
        }
        let addr = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| Error::failed(anyhow::anyhow!("cannot listen on {addr}: {e}")))?;
        let local = listener.local_addr().map_err(Error::failed)?;
        eprintln!(
            "sim-serve: listening on http://{local} (model {}, profile {}, role {:?}, tp {}); figures are simulated",
            config.served_model, config.profile.name, config.role, config.tp
        );
        serve(config, listener, shutdown_signal())
            .await
            .map_err(Error::failed)
    })?;
    match exit {
        ServeExit::Shutdown => {
            eprintln!("sim-serve: stopped");
            Ok(())
        }
        ServeExit::Crashed(why) => {
            // A crash is abrupt: no orderly teardown, like a real engine dying.
            eprintln!("sim-serve: {why}; exiting");
            std::process::exit(1);
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Fault-injection flags of `vbench sim-serve`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FaultArgs {
    /// Answer this fraction of generation requests with HTTP 500.
    #[arg(long, default_value_t = 0.0, value_name = "F")]
    pub fail_fraction: f64,
    /// Cut this fraction of streams (connection closed mid-response, no [DONE]).
    #[arg(long, default_value_t = 0.0, value_name = "F")]
    pub cut_fraction: f64,
    /// A cut stream is closed after this many tokens.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub cut_after_tokens: u32,
    /// Never answer this fraction of generation requests (the request hangs).
    #[arg(long, default_value_t = 0.0, value_name = "F")]
    pub hang_fraction: f64,
    /// Answer 503 to /health (and every other route) for the first T seconds: a slow start.
    #[arg(long, value_name = "SECS")]
    pub unhealthy_for: Option<f64>,
    /// Exit (crash, status 1) when generation request N+1 arrives.
    #[arg(long, value_name = "N")]
    pub crash_after_requests: Option<u64>,
    /// Exit (crash, status 1) T seconds after start.
    #[arg(long, value_name = "SECS")]
    pub crash_after: Option<f64>,
    /// After T seconds stop answering anything, /health included (a wedged server).
    #[arg(long, value_name = "SECS")]
    pub hang_after: Option<f64>,
    /// Seed of the fault draws.
    #[arg(long, default_value_t = 0)]
    pub fault_seed: u64,
    /// A decoder answers greedy requests that took KV by transfer as if that KV were garbage
    /// (what vbench's P→D output check must catch).
    #[arg(long)]
    pub corrupt_kv: bool,
    /// An LMCache producer stops telling the proxy that KV reached the decoder after N
    /// requests (as when its transfers fail): the proxy's wait for it must fail those requests.
    #[arg(long, value_name = "N")]
    pub drop_kv_notifications_after: Option<u64>,
    /// A decoder takes the KV offered by transfer for its first N requests only, then
    /// prefills every prompt itself, as vLLM does when transfers fail: what vbench's check of
    /// the decoders' prompt-token sources must catch (0: from the first request).
    #[arg(long, value_name = "N")]
    pub recompute_kv_after: Option<u64>,
}

impl From<FaultArgs> for FaultSpec {
    fn from(a: FaultArgs) -> Self {
        FaultSpec {
            fail_fraction: a.fail_fraction,
            cut_fraction: a.cut_fraction,
            cut_after_tokens: a.cut_after_tokens,
            hang_fraction: a.hang_fraction,
            unhealthy_for: a.unhealthy_for,
            crash_after_requests: a.crash_after_requests,
            crash_after: a.crash_after,
            hang_after: a.hang_after,
            fault_seed: a.fault_seed,
            corrupt_kv: a.corrupt_kv,
            drop_kv_notifications_after: a.drop_kv_notifications_after,
            recompute_kv_after: a.recompute_kv_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        args: SimServeArgs,
    }

    fn parse(extra: &[&str]) -> Result<SimConfig> {
        let mut argv = vec!["x", "--profile", "tiny-cpu"];
        argv.extend_from_slice(extra);
        Wrap::try_parse_from(argv).unwrap().args.config()
    }

    #[test]
    fn kv_role_maps_to_roles_and_contradictions_are_bad_input() {
        assert_eq!(
            parse(&["--kv-role", "kv_producer"]).unwrap().role,
            Role::Prefill
        );
        assert_eq!(
            parse(&["--kv-role", "kv_consumer"]).unwrap().role,
            Role::Decode
        );
        assert_eq!(
            parse(&["--kv-role", "kv_both", "--role", "decode"])
                .unwrap()
                .role,
            Role::Decode
        );
        assert!(parse(&["--kv-role", "kv_both"]).is_err());
        let e = parse(&["--kv-role", "kv_producer", "--role", "decode"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn launcher_flags_reach_the_config() {
        let c = parse(&[
            "--model",
            "Qwen/Qwen3-0.6B",
            "--tp",
            "2",
            "--max-model-len",
            "1024",
            "--kv-port",
            "5700",
            "--engine-id",
            "e",
            "--fail-fraction",
            "0.1",
        ])
        .unwrap();
        assert_eq!(c.served_model, "Qwen/Qwen3-0.6B");
        assert_eq!((c.tp, c.profile.max_model_len, c.kv_port), (2, 1024, 5700));
        assert_eq!(c.kv_blocks_override, None);
        // vLLM's override, and its refusal when one request would not fit.
        let blocks = |n: &str| parse(&["--max-model-len", "1024", "--num-gpu-blocks-override", n]);
        assert_eq!(blocks("64").unwrap().kv_blocks_override, Some(64));
        let e = blocks("63").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("cannot hold one request"), "{e}");
        assert_eq!(c.engine_id.as_deref(), Some("e"));
        assert_eq!(c.faults.fail_fraction, 0.1);
        assert!(parse(&["--tp", "0"]).is_err());
    }
}
