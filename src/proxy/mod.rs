//! The built-in proxy in front of a deployment's instances (`vbench proxy`).
//!
//! - `nixl`: prefill/decode disaggregation with the NixlConnector protocol shared by vLLM's toy
//!   proxy and vllm-router (VLLM_FACTS section C): the prefiller gets the request with
//!   `max_tokens = 1` and `do_remote_decode`, its `kv_transfer_params` go to the decoder with the
//!   original request, and the decoder's stream goes back to the client unchanged.
//! - `round-robin`: spreads whole requests over identical instances (`simple` with replicas).
//! - `lmcache`: LMCache's PD flow (VLLM_FACTS section D): the prefiller gets `max_tokens = 1`
//!   and a `disagg_spec` naming the decoder's side channels, its first token is streamed to the
//!   client at once, then the decoder's stream (`max_tokens − 1`) follows. TTFT therefore
//!   excludes the KV transfer, which lands in the first inter-token gap.
//!
//! Unlike vLLM's toy proxy it serves `/health` (healthy only when every instance is) and
//! `/v1/models`, and forwards errors as errors: a benchmark must see failures, never retries.

mod lmcache;
mod server;

use std::net::SocketAddr;

use anyhow::Context;

use crate::error::{Error, Result};

pub use server::{serve, ProxyConfig, ProxyMode};

/// Run the built-in prefill/decode (or round-robin) proxy.
#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one; the chosen port is printed).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// `nixl` (prefill/decode hand-off) or `round-robin` (whole requests over --backend URLs).
    #[arg(long, value_enum, default_value_t = ProxyMode::Nixl)]
    pub mode: ProxyMode,
    /// Prefill instance base URL (repeat for several), nixl mode.
    #[arg(long = "prefill", value_name = "URL")]
    pub prefill: Vec<String>,
    /// Decode instance base URL (repeat for several), nixl mode.
    #[arg(long = "decode", value_name = "URL")]
    pub decode: Vec<String>,
    /// Instance base URL (repeat for several), round-robin mode.
    #[arg(long = "backend", value_name = "URL")]
    pub backend: Vec<String>,
    /// lmcache mode: one decoder's LMCache side-channel ports, `INIT[,INIT..]:ALLOC[,ALLOC..]`
    /// (one port per TP rank), in the order of --decode. Repeat per decoder.
    #[arg(long = "lmcache-decoder-ports", value_name = "INIT:ALLOC")]
    pub lmcache_decoder_ports: Vec<String>,
    /// Seconds an upstream request may take before the proxy answers 504.
    #[arg(long, default_value_t = 600.0)]
    pub timeout_s: f64,
}

pub fn run_proxy(args: ProxyArgs) -> Result<()> {
    let config = ProxyConfig::from_args(&args).map_err(Error::bad_input)?;
    let addr: SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .with_context(|| format!("bad --host/--port {}:{}", args.host, args.port))
        .map_err(Error::bad_input)?;
    let rt = tokio::runtime::Runtime::new().map_err(Error::failed)?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))
            .map_err(Error::failed)?;
        let local = listener.local_addr().map_err(Error::failed)?;
        eprintln!(
            "vbench proxy ({}) listening on http://{local}",
            args.mode.as_str()
        );
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        serve(config, listener, shutdown)
            .await
            .map_err(Error::failed)
    })
}
