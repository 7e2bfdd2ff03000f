//! How many prompts' KV fit in an LMCache decoder's transfer buffer, from the model's
//! `config.json`: the capacity LMCache's own proxy gives its in-flight limit.
//!
//! LMCache's proxy holds `ceil(prompt tokens / chunk_size)` buffer slots per request from
//! before its prefill until the decoder's KV is reported, out of
//! `pd_buffer_size / (KV bytes per token × chunk_size)`, so that prefillers never push more KV
//! than the decoders' buffers hold (a full buffer stalls or fails transfers). vbench's proxy
//! does the same, per decoder.

use std::path::Path;

use anyhow::{bail, Context};
use serde_json::Value;

/// LMCache's default `chunk_size` (tokens).
pub const DEFAULT_CHUNK_SIZE: u64 = 256;
/// The decoder's `pd_buffer_size` (2 GiB, as LMCache's examples): the decoder YAML template
/// is given this value, and the in-flight limit is computed from it.
pub const DEFAULT_DECODER_BUFFER: u64 = 2 * 1024 * 1024 * 1024;
/// A config.json is a few KiB; a file much larger is not one.
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// KV bytes per token across all layers, K and V, as LMCache's proxy computes them:
/// `2 × layers × KV heads × head dim × dtype bytes` (float32 4, else 2).
pub fn kv_bytes_per_token(config: &Value) -> anyhow::Result<u64> {
    let int = |key: &str| config.get(key).and_then(Value::as_u64);
    let Some(layers) = int("num_hidden_layers") else {
        bail!("no num_hidden_layers");
    };
    let Some(heads) = int("num_attention_heads") else {
        bail!("no num_attention_heads");
    };
    let kv_heads = int("num_key_value_heads").unwrap_or(heads);
    let head_dim = match int("head_dim") {
        Some(d) => d,
        None => match int("hidden_size") {
            Some(h) if heads > 0 => h / heads,
            _ => bail!("neither head_dim nor hidden_size"),
        },
    };
    let dtype = config
        .get("torch_dtype")
        .or_else(|| config.get("dtype"))
        .and_then(Value::as_str)
        .unwrap_or("bfloat16");
    let dtype_bytes = if dtype.contains("float32") { 4 } else { 2 };
    let bytes = [2, layers, kv_heads, head_dim, dtype_bytes]
        .into_iter()
        .try_fold(1u64, u64::checked_mul)
        .filter(|b| *b > 0)
        .context("KV bytes per token out of range")?;
    Ok(bytes)
}

/// The decoder buffer's capacity in chunk slots: `buffer × tp / (KV bytes per token ×
/// chunk_size)` (each TP rank has a buffer of its own and holds its share of the heads).
pub fn buffer_slots(buffer_bytes: u64, tp: u32, kv_bytes_per_token: u64, chunk_size: u64) -> u64 {
    let per_slot = kv_bytes_per_token.saturating_mul(chunk_size).max(1);
    buffer_bytes.saturating_mul(u64::from(tp.max(1))) / per_slot
}

/// The model's `config.json` when `model` names a local folder (relative to `manifest_dir` or
/// absolute); `None` for a Hugging Face id (nothing is downloaded).
pub fn local_config(model: &str, manifest_dir: &Path) -> Option<anyhow::Result<Value>> {
    let dir = manifest_dir.join(model);
    let path = dir.join("config.json");
    if !path.is_file() {
        return None;
    }
    Some((|| {
        let text = crate::bounded_file::read_bounded(&path, MAX_CONFIG_BYTES)
            .map_err(|why| anyhow::anyhow!("{}: {why}, not a model config", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("{} is not JSON", path.display()))
    })())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn qwen3_shape_matches_lmcaches_own_chunk_bytes() {
        let qwen = json!({"num_hidden_layers": 28, "num_attention_heads": 16,
                          "num_key_value_heads": 8, "head_dim": 128, "hidden_size": 1024,
                          "torch_dtype": "bfloat16"});
        let per_token = kv_bytes_per_token(&qwen).unwrap();
        assert_eq!(per_token, 114_688);
        // LMCache logged "chunk size: 29360128" for this shape on the H200.
        assert_eq!(per_token * DEFAULT_CHUNK_SIZE, 29_360_128);
        assert_eq!(
            buffer_slots(DEFAULT_DECODER_BUFFER, 1, per_token, DEFAULT_CHUNK_SIZE),
            73
        );
        assert_eq!(
            buffer_slots(DEFAULT_DECODER_BUFFER, 2, per_token, DEFAULT_CHUNK_SIZE),
            146
        );
    }

    #[test]
    fn missing_keys_fall_back_as_transformers_does() {
        // Llama-2 style: no num_key_value_heads, no head_dim; float32.
        let old = json!({"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 64,
                         "torch_dtype": "float32"});
        assert_eq!(kv_bytes_per_token(&old).unwrap(), 2 * 2 * 4 * 16 * 4);
        assert!(kv_bytes_per_token(&json!({"num_attention_heads": 4})).is_err());
        assert!(kv_bytes_per_token(
            &json!({"num_hidden_layers": 0, "num_attention_heads": 4, "head_dim": 8})
        )
        .is_err());
        let huge = json!({"num_hidden_layers": u64::MAX, "num_attention_heads": 4, "head_dim": 8});
        assert!(kv_bytes_per_token(&huge).is_err());
    }

    #[test]
    fn only_a_local_folder_has_a_config() {
        let dir = tempfile::tempdir().unwrap();
        assert!(local_config("Qwen/Qwen3-0.6B", dir.path()).is_none());
        std::fs::create_dir(dir.path().join("m")).unwrap();
        std::fs::write(dir.path().join("m/config.json"), "{not json").unwrap();
        let err = local_config("m", dir.path()).unwrap().unwrap_err();
        assert!(err.to_string().contains("is not JSON"), "{err}");
    }
}
