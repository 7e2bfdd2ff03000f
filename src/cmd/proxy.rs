//! `vbench proxy`: the built-in prefill/decode (or round-robin) proxy on a port.

use std::net::SocketAddr;

use anyhow::Context;

use crate::error::{Error, Result};
use crate::proxy::{serve, LmcacheFlags, ProxyConfig, ProxyMode};

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
    #[arg(long, value_enum, default_value_t = ModeArg::Nixl)]
    pub mode: ModeArg,
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
    /// lmcache mode: address to receive the prefillers' "KV is on the decoder" notifications
    /// (ZeroMQ PULL; their LMCache `pd_proxy_host:pd_proxy_port`).
    #[arg(long = "lmcache-notify", value_name = "HOST:PORT")]
    pub lmcache_notify: Option<SocketAddr>,
    /// lmcache mode: seconds a request's decode waits for those notifications before the
    /// request fails (a decoder asked sooner would recompute the prompt).
    #[arg(long, default_value_t = 30.0)]
    pub kv_wait_s: f64,
    /// lmcache mode: one decoder's transfer-buffer capacity in chunk slots, in the order of
    /// --decode (repeat per decoder; none: no limit). A request holds ceil(prompt tokens /
    /// --lmcache-chunk-size) slots from before its prefill until its KV is reported, as in
    /// LMCache's own proxy.
    #[arg(long = "lmcache-buffer-slots", value_name = "SLOTS")]
    pub lmcache_buffer_slots: Vec<u64>,
    /// lmcache mode: LMCache's chunk_size in tokens.
    #[arg(long, default_value_t = 256)]
    pub lmcache_chunk_size: u64,
    /// Seconds an upstream request may take before the proxy answers 504.
    #[arg(long, default_value_t = 600.0)]
    pub timeout_s: f64,
}

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    Nixl,
    RoundRobin,
    Lmcache,
}

impl From<ModeArg> for ProxyMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Nixl => ProxyMode::Nixl,
            ModeArg::RoundRobin => ProxyMode::RoundRobin,
            ModeArg::Lmcache => ProxyMode::Lmcache,
        }
    }
}

impl ProxyArgs {
    /// The proxy configuration these flags describe.
    pub fn config(&self) -> anyhow::Result<ProxyConfig> {
        ProxyConfig::new(
            self.mode.into(),
            &self.prefill,
            &self.decode,
            &self.backend,
            LmcacheFlags {
                decoder_ports: &self.lmcache_decoder_ports,
                notify: self.lmcache_notify,
                kv_wait_s: self.kv_wait_s,
                buffer_slots: &self.lmcache_buffer_slots,
                chunk_size: self.lmcache_chunk_size,
            },
            self.timeout_s,
        )
    }
}

pub fn run(args: ProxyArgs) -> Result<()> {
    let mut config = args.config().map_err(Error::bad_input)?;
    let (log, lines) = std::sync::mpsc::channel::<String>();
    config.log = Some(log);
    std::thread::spawn(move || {
        for line in lines {
            eprintln!("vbench proxy: {line}");
        }
    });
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
            ProxyMode::from(args.mode).as_str()
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
