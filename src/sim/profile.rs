//! Profiles: the named parameter sets that make the engine behave like one model on one GPU.
//!
//! A profile is TOML (`deny_unknown_fields`). Built-in profiles are compiled into the binary
//! from `src/sim/profiles/*.toml`, each commented with where its numbers come from; a user can
//! pass a path to their own file instead of a name.

use std::path::Path;

use serde::Deserialize;

/// Built-in profiles: (name, TOML text).
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "llama3-8b-h200",
        include_str!("profiles/llama3-8b-h200.toml"),
    ),
    (
        "qwen3-0.6b-h200",
        include_str!("profiles/qwen3-0.6b-h200.toml"),
    ),
    ("tiny-cpu", include_str!("profiles/tiny-cpu.toml")),
];

/// One model on one kind of accelerator.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Short name (used in logs and /metrics labels).
    pub name: String,
    /// What this profile models and where its numbers come from.
    #[serde(default)]
    pub description: String,
    /// Longest prompt + completion a request may have (vLLM's --max-model-len).
    pub max_model_len: u32,
    /// Tokens per KV block (vLLM's --block-size, 16 by default).
    #[serde(default = "default_block_size")]
    pub block_size: u32,
    /// KV cache capacity of one instance at TP 1, in tokens ("GPU KV cache size" in vLLM's log).
    pub kv_capacity_tokens: u64,
    /// Token budget of one scheduler step (vLLM's --max-num-batched-tokens).
    pub max_num_batched_tokens: u32,
    /// Most requests running at once (vLLM's --max-num-seqs).
    pub max_num_seqs: u32,
    /// Size of the KV cache of one token, in bytes (2 x layers x kv_heads x head_dim x dtype bytes).
    pub kv_bytes_per_token: u64,
    pub timing: Timing,
    #[serde(default)]
    pub tp: TensorParallel,
    pub kv_transfer: KvTransfer,
}

/// Cost model of one scheduler step, and fixed per-request overheads.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// API-server time before a request reaches the engine (HTTP, tokenisation), ms.
    pub frontend_ms: f64,
    /// API-server work done for one request at a time, ms: requests arriving together queue for
    /// it (tokenising a burst of prompts).
    #[serde(default)]
    pub frontend_serial_ms: f64,
    /// API-server time per output token of any stream, microseconds: it makes the per-request
    /// time above grow with the server's load (see `frontend.rs`).
    #[serde(default)]
    pub frontend_per_output_token_us: f64,
    /// Fixed cost of any step (reading the weights, launch overheads), ms.
    pub step_base_ms: f64,
    /// Cost per prefill token in a step, microseconds.
    pub prefill_per_token_us: f64,
    /// Attention cost of prefill: per prefill token per 1,000 tokens of context before it, microseconds.
    #[serde(default)]
    pub prefill_attn_per_token_per_kctx_us: f64,
    /// Cost per running decode sequence in a step, microseconds.
    pub decode_per_seq_us: f64,
    /// Cost per context token of the decode sequences in a step (KV reads), nanoseconds.
    pub decode_per_ctx_token_ns: f64,
}

/// How tensor parallelism changes an instance.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TensorParallel {
    /// Speed-up of a step at TP n is 1 + (n - 1) x efficiency.
    #[serde(default = "default_tp_efficiency")]
    pub efficiency: f64,
}

impl Default for TensorParallel {
    fn default() -> Self {
        TensorParallel {
            efficiency: default_tp_efficiency(),
        }
    }
}

/// The KV hand-off between a prefill and a decode instance.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KvTransfer {
    /// Link bandwidth in GB/s (10^9 bytes per second); transfers share it first come, first served.
    pub bandwidth_gb_s: f64,
    /// Fixed cost of one transfer (handshake, notification), ms.
    pub latency_ms: f64,
}

fn default_block_size() -> u32 {
    16
}

fn default_tp_efficiency() -> f64 {
    0.8
}

impl Profile {
    /// A built-in profile by name, or a TOML file by path.
    pub fn load(name_or_path: &str) -> anyhow::Result<Profile> {
        if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Profile::from_toml(text)
                .map_err(|e| anyhow::anyhow!("built-in profile {name_or_path}: {e}"));
        }
        let path = Path::new(name_or_path);
        if path.exists() {
            let text = crate::bounded_file::read_text(path, crate::bounded_file::MAX_TEXT_BYTES)
                .map_err(|e| anyhow::anyhow!("cannot read profile {}: {e}", path.display()))?;
            return Profile::from_toml(&text)
                .map_err(|e| anyhow::anyhow!("profile {}: {e}", path.display()));
        }
        let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
        anyhow::bail!(
            "unknown profile `{name_or_path}`: give a built-in name ({}) or the path of a TOML file",
            names.join(", ")
        )
    }

    /// Parse and check a profile.
    pub fn from_toml(text: &str) -> anyhow::Result<Profile> {
        let p: Profile = toml::from_str(text)?;
        p.check()?;
        Ok(p)
    }

    fn check(&self) -> anyhow::Result<()> {
        let t = &self.timing;
        let non_negative = [
            ("timing.frontend_ms", t.frontend_ms),
            ("timing.step_base_ms", t.step_base_ms),
            ("timing.frontend_serial_ms", t.frontend_serial_ms),
            (
                "timing.frontend_per_output_token_us",
                t.frontend_per_output_token_us,
            ),
            ("timing.prefill_per_token_us", t.prefill_per_token_us),
            (
                "timing.prefill_attn_per_token_per_kctx_us",
                t.prefill_attn_per_token_per_kctx_us,
            ),
            ("timing.decode_per_seq_us", t.decode_per_seq_us),
            ("timing.decode_per_ctx_token_ns", t.decode_per_ctx_token_ns),
            ("kv_transfer.latency_ms", self.kv_transfer.latency_ms),
            ("tp.efficiency", self.tp.efficiency),
        ];
        for (key, v) in non_negative {
            if !v.is_finite() || v < 0.0 {
                anyhow::bail!("{key} must be a finite number >= 0, got {v}");
            }
        }
        if !(self.kv_transfer.bandwidth_gb_s.is_finite() && self.kv_transfer.bandwidth_gb_s > 0.0) {
            anyhow::bail!("kv_transfer.bandwidth_gb_s must be > 0");
        }
        if t.step_base_ms <= 0.0 {
            anyhow::bail!("timing.step_base_ms must be > 0 (a step always takes some time)");
        }
        for (key, v) in [
            ("max_model_len", self.max_model_len as u64),
            ("block_size", self.block_size as u64),
            ("max_num_batched_tokens", self.max_num_batched_tokens as u64),
            ("max_num_seqs", self.max_num_seqs as u64),
            ("kv_capacity_tokens", self.kv_capacity_tokens),
        ] {
            if v == 0 {
                anyhow::bail!("{key} must be > 0");
            }
        }
        if self.kv_capacity_tokens < self.max_model_len as u64 {
            anyhow::bail!(
                "kv_capacity_tokens ({}) must hold at least one request of max_model_len ({})",
                self.kv_capacity_tokens,
                self.max_model_len
            );
        }
        Ok(())
    }

    /// Step speed-up at tensor-parallel size `tp`.
    pub fn tp_speedup(&self, tp: u32) -> f64 {
        1.0 + (tp.max(1) - 1) as f64 * self.tp.efficiency
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_profile_parses() {
        for (name, _) in BUILTIN {
            let p = Profile::load(name).unwrap();
            assert_eq!(&p.name, name);
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        let base = BUILTIN[0].1;
        let extra = format!("{base}\nbogus = 1\n");
        assert!(Profile::from_toml(&extra).is_err());
        let neg = base.replace("step_base_ms = ", "step_base_ms = -");
        assert!(Profile::from_toml(&neg).is_err());
        let err = Profile::load("no-such-profile").unwrap_err().to_string();
        assert!(err.contains("llama3-8b-h200"), "{err}");
    }

    #[test]
    fn tp_speedup_grows_with_tp() {
        let p = Profile::load("llama3-8b-h200").unwrap();
        assert_eq!(p.tp_speedup(1), 1.0);
        assert!(p.tp_speedup(2) > 1.5 && p.tp_speedup(4) > p.tp_speedup(2));
    }
}
