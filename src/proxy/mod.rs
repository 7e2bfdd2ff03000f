//! The built-in proxy in front of a deployment's instances (`vbench proxy`).
//!
//! - `nixl`: prefill/decode disaggregation with the NixlConnector protocol shared by vLLM's toy
//!   proxy and vllm-router (docs/modes.md): the prefiller gets the request with
//!   `max_tokens = 1` and `do_remote_decode`, its `kv_transfer_params` go to the decoder with the
//!   original request, and the decoder's stream goes back to the client unchanged.
//! - `round-robin`: spreads whole requests over identical instances (`simple` with replicas).
//! - `lmcache`: LMCache's PD flow (docs/modes.md): the prefiller gets `max_tokens = 1`
//!   and a `disagg_spec` naming the decoder's side channels, its first token is streamed to the
//!   client at once, then the decoder's stream (`max_tokens − 1`) follows. TTFT therefore
//!   excludes the KV transfer, which lands in the first inter-token gap.
//!
//! Unlike vLLM's toy proxy it serves `/health` (healthy only when every instance is) and
//! `/v1/models`, and forwards errors as errors: a benchmark must see failures, never retries.

mod kv_ready;
mod lmcache;
mod server;

pub use server::{serve, LmcacheFlags, ProxyConfig, ProxyMode};
