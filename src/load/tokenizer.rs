//! Token counting with a Hugging Face `tokenizer.json`, found from a file, a model folder, a
//! model id in the Hugging Face cache, or not at all (then counts are estimates, and say so).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};

/// A loaded tokenizer and where it came from.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// The `tokenizer.json` that was read.
    pub path: PathBuf,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("path", &self.path)
            .finish()
    }
}

/// The largest `tokenizer.json` vbench reads.
pub const MAX_TOKENIZER_BYTES: u64 = 512 << 20;

impl Tokenizer {
    /// Load from `spec`: a `tokenizer.json` file, a folder holding one, or a model id
    /// (`org/name`) looked up in the Hugging Face cache (`$HF_HUB_CACHE`, `$HF_HOME/hub`,
    /// `~/.cache/huggingface/hub`, layout `models--org--name/snapshots/<rev>/tokenizer.json`).
    pub fn load(spec: &str) -> anyhow::Result<Tokenizer> {
        let path = resolve(spec)?;
        // Bounded: the largest public tokenizer.json files are tens of MiB.
        let bytes = crate::bounded_file::read_bounded(&path, MAX_TOKENIZER_BYTES)
            .map_err(|why| anyhow!("tokenizer {}: {why}", path.display()))?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("reading tokenizer {}", path.display()))?;
        Ok(Tokenizer { inner, path })
    }

    /// Tokens of `text` including the special tokens the model adds (a BOS, usually), as
    /// `tokenizer(text).input_ids` counts them in vLLM's benchmark.
    pub fn count(&self, text: &str) -> anyhow::Result<usize> {
        Ok(self.encode(text, true)?.len())
    }

    pub fn encode(&self, text: &str, special: bool) -> anyhow::Result<Vec<u32>> {
        let enc = self
            .inner
            .encode_fast(text, special)
            .map_err(|e| anyhow!("tokenizing: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> anyhow::Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| anyhow!("detokenizing: {e}"))
    }

    /// Ids of ordinary (non-special) tokens, to draw random prompts from.
    pub fn ordinary_ids(&self) -> Vec<u32> {
        let special: std::collections::HashSet<u32> = self
            .inner
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| *id)
            .collect();
        let mut ids: Vec<u32> = self
            .inner
            .get_vocab(false)
            .into_values()
            .filter(|id| !special.contains(id))
            .collect();
        ids.sort_unstable();
        ids
    }
}

/// Estimated tokens of `text` without a tokenizer: about 4 characters per token for English
/// BPE vocabularies. Used only when no tokenizer was given, and results say so.
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4).max(1)
}

fn resolve(spec: &str) -> anyhow::Result<PathBuf> {
    let p = Path::new(spec);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    if p.is_dir() {
        let f = p.join("tokenizer.json");
        if f.is_file() {
            return Ok(f);
        }
        bail!(
            "tokenizer folder {} has no tokenizer.json (only fast tokenizers are supported)",
            p.display()
        );
    }
    if let Some(f) = find_in_hf_cache(spec) {
        return Ok(f);
    }
    bail!(
        "tokenizer `{spec}` not found: give a tokenizer.json file, a model folder holding one, \
         or a model id present in the Hugging Face cache (set HF_HUB_CACHE or HF_HOME if it is \
         elsewhere); vbench does not download"
    )
}

fn find_in_hf_cache(model_id: &str) -> Option<PathBuf> {
    if model_id.split('/').count() > 2 || model_id.is_empty() {
        return None;
    }
    let mut roots = Vec::new();
    if let Ok(c) = std::env::var("HF_HUB_CACHE") {
        roots.push(PathBuf::from(c));
    }
    if let Ok(h) = std::env::var("HF_HOME") {
        roots.push(PathBuf::from(h).join("hub"));
    }
    if let Ok(h) = std::env::var("HOME") {
        roots.push(PathBuf::from(h).join(".cache/huggingface/hub"));
    }
    let folder = format!("models--{}", model_id.replace('/', "--"));
    for root in roots {
        let repo = root.join(&folder);
        // Prefer the revision refs/main points at, else any snapshot that has the file.
        if let Ok(rev) = crate::bounded_file::read_text(&repo.join("refs/main"), 4096) {
            let f = repo
                .join("snapshots")
                .join(rev.trim())
                .join("tokenizer.json");
            if f.is_file() {
                return Some(f);
            }
        }
        if let Ok(entries) = std::fs::read_dir(repo.join("snapshots")) {
            let mut snaps: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            snaps.sort();
            if let Some(f) = snaps
                .into_iter()
                .map(|s| s.join("tokenizer.json"))
                .find(|f| f.is_file())
            {
                return Some(f);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> String {
        format!("{}/tests/fixtures/tiny-model", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn loads_from_folder_and_file_and_round_trips() {
        let t = Tokenizer::load(&tiny()).unwrap();
        let t2 = Tokenizer::load(&format!("{}/tokenizer.json", tiny())).unwrap();
        assert_eq!(t.path, t2.path);
        let ids = t.encode("def main(): return 42", false).unwrap();
        assert!(!ids.is_empty());
        assert_eq!(t.decode(&ids).unwrap(), "def main(): return 42");
        assert!(t.ordinary_ids().len() > 1000);
    }

    #[test]
    fn finds_model_id_in_hf_cache_layout() {
        let dir = tempfile::tempdir().unwrap();
        let snap = dir.path().join("models--org--tiny/snapshots/abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::copy(
            format!("{}/tokenizer.json", tiny()),
            snap.join("tokenizer.json"),
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("models--org--tiny/refs")).unwrap();
        std::fs::write(dir.path().join("models--org--tiny/refs/main"), "abc123\n").unwrap();
        // resolve through a root given explicitly (env vars are process-global; avoid them)
        let found = {
            let repo = dir.path().join("models--org--tiny");
            let rev = std::fs::read_to_string(repo.join("refs/main")).unwrap();
            repo.join("snapshots")
                .join(rev.trim())
                .join("tokenizer.json")
        };
        assert!(found.is_file());
        std::env::set_var("HF_HUB_CACHE", dir.path());
        assert_eq!(find_in_hf_cache("org/tiny"), Some(found));
        assert_eq!(find_in_hf_cache("org/absent"), None);
    }

    #[test]
    fn missing_tokenizer_error_says_what_to_give() {
        let e = Tokenizer::load("/nonexistent/place/x").unwrap_err();
        assert!(format!("{e:#}").contains("tokenizer.json"), "{e:#}");
    }
}
