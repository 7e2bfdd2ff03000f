//! Request sets: ShareGPT JSON (filtered and sampled as `vllm bench serve` does), random prompts
//! of exact token lengths, and JSONL prompts. The result is prepared once and replayed, the
//! same requests in the same order, against every deployment.

use std::fmt;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use rand::{Rng, SeedableRng};
use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;

use super::pyrandom::PyRandom;
use super::tokenizer::{estimate_tokens, Tokenizer};

/// One request of the replayed set.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedRequest {
    /// Prompt text (sent as `prompt`, or as the one user message in chat).
    pub prompt: String,
    /// Prompt tokens as counted (or estimated) by the client; the server's usage wins in results.
    pub prompt_tokens: u64,
    /// `max_tokens` to ask for.
    pub max_tokens: u64,
}

/// Which dataset to prepare.
#[derive(Debug, Clone, PartialEq)]
pub enum DatasetSpec {
    /// ShareGPT JSON: first turn = prompt, second turn's token length = output length, unless
    /// `output_len` fixes it.
    ShareGpt {
        path: PathBuf,
        output_len: Option<u64>,
    },
    /// Random token prompts: lengths uniform in `len·(1 ± range_ratio)`; needs a tokenizer.
    Random {
        input_len: u64,
        output_len: u64,
        range_ratio: f64,
    },
    /// One JSON object per line with a `prompt` string and optionally `output_tokens`
    /// (aliases `output_len`, `max_tokens`); `output_len` is the default for lines without it.
    Jsonl {
        path: PathBuf,
        output_len: Option<u64>,
    },
}

impl DatasetSpec {
    /// `sharegpt`, `random` or `jsonl`.
    pub fn name(&self) -> &'static str {
        match self {
            DatasetSpec::ShareGpt { .. } => "sharegpt",
            DatasetSpec::Random { .. } => "random",
            DatasetSpec::Jsonl { .. } => "jsonl",
        }
    }
}

/// How prompt/output token counts of the prepared set were obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCounts {
    Tokenizer,
    /// No tokenizer: about 4 characters per token. Output lengths of ShareGPT are estimates.
    Estimated,
}

/// A prepared request set.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    pub requests: Vec<PreparedRequest>,
    pub token_counts: TokenCounts,
    /// Things a user should know (oversampling, estimates), one sentence each.
    pub notes: Vec<String>,
}

/// Prepare `num_prompts` requests. Bad files give an error naming the file and the place.
pub fn load(
    spec: &DatasetSpec,
    num_prompts: usize,
    seed: u64,
    tokenizer: Option<&Tokenizer>,
) -> anyhow::Result<Dataset> {
    if num_prompts == 0 {
        bail!("--num-prompts must be at least 1");
    }
    let counts = if tokenizer.is_some() {
        TokenCounts::Tokenizer
    } else {
        TokenCounts::Estimated
    };
    let mut notes = Vec::new();
    if tokenizer.is_none() {
        notes.push(
            "no tokenizer given: client-side token counts are estimates (about 4 characters per \
             token); results use the server's usage counts where it sends them"
                .to_string(),
        );
    }
    let requests = match spec {
        DatasetSpec::ShareGpt { path, output_len } => {
            sharegpt(path, *output_len, num_prompts, seed, tokenizer, &mut notes)?
        }
        DatasetSpec::Random {
            input_len,
            output_len,
            range_ratio,
        } => {
            let tok = tokenizer.ok_or_else(|| {
                anyhow!(
                    "the random dataset needs a tokenizer to make prompts of exact token \
                     lengths: pass --tokenizer (a tokenizer.json, a model folder or a cached \
                     model id)"
                )
            })?;
            random(
                *input_len,
                *output_len,
                *range_ratio,
                num_prompts,
                seed,
                tok,
                &mut notes,
            )?
        }
        DatasetSpec::Jsonl { path, output_len } => {
            jsonl(path, *output_len, num_prompts, seed, tokenizer, &mut notes)?
        }
    };
    Ok(Dataset {
        name: spec.name().to_string(),
        requests,
        token_counts: counts,
        notes,
    })
}

fn count(tokenizer: Option<&Tokenizer>, text: &str) -> anyhow::Result<u64> {
    Ok(match tokenizer {
        Some(t) => t.count(text)? as u64,
        None => estimate_tokens(text) as u64,
    })
}

/// vLLM's `is_valid_sequence` with its defaults.
fn is_valid_sequence(prompt_len: u64, output_len: u64, skip_min_output: bool) -> bool {
    let prompt_too_short = prompt_len < 4;
    let output_too_short = !skip_min_output && output_len < 4;
    let prompt_too_long = prompt_len > 1024;
    let combined_too_long = prompt_len + output_len > 2048;
    !(prompt_too_short || output_too_short || prompt_too_long || combined_too_long)
}

/// vLLM's oversampling: reseed, then `random.choice` until there are enough.
fn oversample(
    mut v: Vec<PreparedRequest>,
    n: usize,
    seed: u64,
    notes: &mut Vec<String>,
) -> Vec<PreparedRequest> {
    if v.len() < n && !v.is_empty() {
        notes.push(format!(
            "only {} usable prompts for {} requests: oversampled with repetition, as vLLM does",
            v.len(),
            n
        ));
        let mut r = PyRandom::new(seed);
        let base = v.len();
        for _ in base..n {
            let k = r.randbelow(base as u32) as usize;
            v.push(v[k].clone());
        }
    }
    v
}

// --- ShareGPT ---------------------------------------------------------------------------

/// One ShareGPT entry, keeping only what vLLM reads: the first two turns' values and the count.
#[derive(Deserialize)]
struct ShareGptEntry {
    #[serde(default)]
    conversations: Option<FirstTwo>,
}

#[derive(Deserialize)]
struct Turn {
    value: String,
}

struct FirstTwo {
    turns: Vec<Turn>,
    len: usize,
}

impl<'de> Deserialize<'de> for FirstTwo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FirstTwo;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of turns like {\"from\": \"human\", \"value\": \"...\"}")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FirstTwo, A::Error> {
                let mut turns = Vec::with_capacity(2);
                let mut len = 0;
                while len < 2 {
                    match seq.next_element::<Turn>()? {
                        Some(t) => {
                            turns.push(t);
                            len += 1;
                        }
                        None => return Ok(FirstTwo { turns, len }),
                    }
                }
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    len += 1;
                }
                Ok(FirstTwo { turns, len })
            }
        }
        d.deserialize_seq(V)
    }
}

fn open(path: &Path) -> anyhow::Result<std::io::BufReader<std::fs::File>> {
    let f = std::fs::File::open(path)
        .with_context(|| format!("cannot open dataset file {}", path.display()))?;
    if f.metadata().map(|m| m.len() == 0).unwrap_or(false) {
        bail!("dataset file {} is empty", path.display());
    }
    Ok(std::io::BufReader::with_capacity(1 << 20, f))
}

fn sharegpt(
    path: &Path,
    output_len: Option<u64>,
    n: usize,
    seed: u64,
    tokenizer: Option<&Tokenizer>,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<PreparedRequest>> {
    let reader = open(path)?;
    let entries: Vec<ShareGptEntry> = serde_json::from_reader(reader).map_err(|e| {
        anyhow!(
            "{}:{}:{}: not a ShareGPT file ({e}); expected a JSON list of \
             {{\"conversations\": [{{\"from\": ..., \"value\": ...}}, ...]}}",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    let total = entries.len();
    let mut data: Vec<FirstTwo> = entries
        .into_iter()
        .filter_map(|e| e.conversations)
        .filter(|c| c.len >= 2)
        .collect();
    if data.is_empty() {
        bail!(
            "{}: none of its {total} entries has a conversation of at least 2 turns",
            path.display()
        );
    }
    PyRandom::new(seed).shuffle(&mut data);
    let mut out = Vec::with_capacity(n);
    for c in &data {
        if out.len() >= n {
            break;
        }
        let prompt = &c.turns[0].value;
        let prompt_len = count(tokenizer, prompt)?;
        let out_len = match output_len {
            Some(l) => l,
            None => count(tokenizer, &c.turns[1].value)?,
        };
        if !is_valid_sequence(prompt_len, out_len, output_len.is_some()) {
            continue;
        }
        out.push(PreparedRequest {
            prompt: prompt.clone(),
            prompt_tokens: prompt_len,
            max_tokens: out_len,
        });
    }
    if out.is_empty() {
        bail!(
            "{}: no conversation passes vLLM's length filter (prompt 4..=1024 tokens, output \
             >= 4, prompt + output <= 2048)",
            path.display()
        );
    }
    Ok(oversample(out, n, seed, notes))
}

// --- JSONL --------------------------------------------------------------------------------

#[derive(Deserialize)]
struct JsonlLine {
    prompt: String,
    #[serde(default, alias = "output_len", alias = "max_tokens")]
    output_tokens: Option<u64>,
}

fn jsonl(
    path: &Path,
    output_len: Option<u64>,
    n: usize,
    seed: u64,
    tokenizer: Option<&Tokenizer>,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<PreparedRequest>> {
    let reader = open(path)?;
    let mut out = Vec::with_capacity(n);
    for (i, line) in reader.lines().enumerate() {
        if out.len() >= n {
            break;
        }
        let lineno = i + 1;
        let line = line.with_context(|| format!("{}:{lineno}: cannot read", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let row: JsonlLine = serde_json::from_str(&line).map_err(|e| {
            anyhow!(
                "{}:{lineno}:{}: {e}; each line must be a JSON object like \
                 {{\"prompt\": \"...\", \"output_tokens\": 128}}",
                path.display(),
                e.column()
            )
        })?;
        let max_tokens = row.output_tokens.or(output_len).ok_or_else(|| {
            anyhow!(
                "{}:{lineno}: no `output_tokens` on this line and no --output-len given",
                path.display()
            )
        })?;
        if max_tokens == 0 {
            bail!(
                "{}:{lineno}: output_tokens must be at least 1",
                path.display()
            );
        }
        out.push(PreparedRequest {
            prompt_tokens: count(tokenizer, &row.prompt)?,
            prompt: row.prompt,
            max_tokens,
        });
    }
    if out.is_empty() {
        bail!("{}: no prompts (only blank lines)", path.display());
    }
    Ok(oversample(out, n, seed, notes))
}

// --- random -------------------------------------------------------------------------------

fn len_range(len: u64, ratio: f64) -> (u64, u64) {
    let lo = ((len as f64) * (1.0 - ratio)).floor().max(1.0) as u64;
    let hi = ((len as f64) * (1.0 + ratio)).ceil().max(lo as f64) as u64;
    (lo, hi)
}

fn random(
    input_len: u64,
    output_len: u64,
    ratio: f64,
    n: usize,
    seed: u64,
    tok: &Tokenizer,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<PreparedRequest>> {
    if !(0.0..1.0).contains(&ratio) {
        bail!("--range-ratio must be in [0, 1), got {ratio}");
    }
    if output_len == 0 {
        bail!("--output-len must be at least 1");
    }
    let specials = tok.count("")? as u64; // what encode(add_special_tokens) adds, e.g. a BOS
    if input_len <= specials {
        bail!("--input-len {input_len} leaves no room for text after {specials} special tokens");
    }
    let allowed = tok.ordinary_ids();
    if allowed.is_empty() {
        bail!("tokenizer {} has no ordinary tokens", tok.path.display());
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (ilo, ihi) = len_range(input_len, ratio);
    let (olo, ohi) = len_range(output_len, ratio);
    let mut out = Vec::with_capacity(n);
    let mut mismatched = 0usize;
    let mut filler: Option<String> = None;
    for _ in 0..n {
        let target_total = rng.gen_range(ilo..=ihi).max(specials + 1);
        let target = (target_total - specials) as usize;
        let mut ids: Vec<u32> = (0..target)
            .map(|_| allowed[rng.gen_range(0..allowed.len())])
            .collect();
        // Decode and re-encode until the text is exactly `target` tokens (vLLM's procedure,
        // with a larger retry budget).
        let mut text = String::new();
        let mut got = 0;
        for _ in 0..32 {
            text = tok.decode(&ids)?;
            let re = tok.encode(&text, false)?;
            got = re.len();
            if got == target {
                break;
            }
            ids = re;
            if got > target {
                ids.truncate(target);
            } else {
                ids.extend((got..target).map(|_| allowed[rng.gen_range(0..allowed.len())]));
            }
        }
        if got != target {
            // Re-encoding keeps merging across the seam: settle it at the text level.
            got = settle_length(
                tok,
                &mut text,
                target,
                filler.get_or_insert_with(|| pick_filler(tok, &allowed)),
            )?;
        }
        if got != target {
            mismatched += 1;
        }
        out.push(PreparedRequest {
            prompt: text,
            prompt_tokens: got as u64 + specials,
            max_tokens: rng.gen_range(olo..=ohi),
        });
    }
    if mismatched > 0 {
        notes.push(format!(
            "{mismatched} random prompts could not be made exactly their target length; \
             their true counts are recorded"
        ));
    }
    Ok(out)
}

/// A short word that tokenizes as one token per repetition (e.g. " the"), to pad with.
fn pick_filler(tok: &Tokenizer, allowed: &[u32]) -> String {
    for &id in allowed {
        let Ok(t) = tok.decode(&[id]) else { continue };
        let word = t.strip_prefix(' ').unwrap_or("");
        if word.len() >= 2 && word.chars().all(|c| c.is_ascii_lowercase()) {
            let three = t.repeat(3);
            if tok.encode(&three, false).map(|v| v.len()).ok() == Some(3) {
                return t;
            }
        }
    }
    " a".to_string()
}

/// Pad with `filler` or drop trailing characters until `text` is `target` tokens (bounded).
fn settle_length(
    tok: &Tokenizer,
    text: &mut String,
    target: usize,
    filler: &str,
) -> anyhow::Result<usize> {
    let mut got = tok.encode(text, false)?.len();
    for _ in 0..(4 * target + 16) {
        if got == target {
            break;
        }
        if got > target {
            text.pop();
        } else {
            text.push_str(filler);
        }
        got = tok.encode(text, false)?.len();
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tiny() -> Tokenizer {
        Tokenizer::load(&format!(
            "{}/tests/fixtures/tiny-model",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn file(content: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content.as_bytes()).unwrap();
        f
    }

    fn conv(p: &str, r: &str) -> serde_json::Value {
        serde_json::json!({"id": "x", "conversations": [
            {"from": "human", "value": p}, {"from": "gpt", "value": r}]})
    }

    #[test]
    fn sharegpt_drops_short_conversations_and_filters_lengths_like_vllm() {
        let long = "word ".repeat(3000);
        let data = serde_json::json!([
            {"id": "one-turn", "conversations": [{"from": "human", "value": "only a question here"}]},
            {"id": "no-conv"},
            conv("a fine prompt of several words", "a fine reply of several words too"),
            conv("hi", "prompt too short for the filter, reply fine"),
            conv(&long, "prompt too long"),
            {"conversations": [{"from":"human","value":"three turns prompt here ok"},
                               {"from":"gpt","value":"three turns reply here ok"},
                               {"from":"human","value":"ignored"}]},
        ]);
        let f = file(&data.to_string());
        let spec = DatasetSpec::ShareGpt {
            path: f.path().into(),
            output_len: None,
        };
        let tok = tiny();
        let d = load(&spec, 2, 0, Some(&tok)).unwrap();
        let mut prompts: Vec<&str> = d.requests.iter().map(|r| r.prompt.as_str()).collect();
        prompts.sort();
        assert_eq!(
            prompts,
            vec![
                "a fine prompt of several words",
                "three turns prompt here ok"
            ]
        );
        for r in &d.requests {
            assert_eq!(r.prompt_tokens as usize, tok.count(&r.prompt).unwrap());
        }
        assert_eq!(d.token_counts, TokenCounts::Tokenizer);
        // asking for more than usable oversamples (and says so)
        let d = load(&spec, 5, 0, Some(&tok)).unwrap();
        assert_eq!(d.requests.len(), 5);
        assert!(d.notes.iter().any(|n| n.contains("oversampled")));
    }

    #[test]
    fn sharegpt_order_follows_python_shuffle_of_seed() {
        let convs: Vec<_> = (0..10)
            .map(|i| {
                conv(
                    &format!("prompt number {i} with words"),
                    "a reply with words",
                )
            })
            .collect();
        let f = file(&serde_json::Value::Array(convs).to_string());
        let spec = DatasetSpec::ShareGpt {
            path: f.path().into(),
            output_len: Some(8),
        };
        let d = load(&spec, 10, 0, None).unwrap();
        let order: Vec<String> = d
            .requests
            .iter()
            .map(|r| r.prompt.split(' ').nth(2).unwrap().to_string())
            .collect();
        // python: random.seed(0); l=list(range(10)); random.shuffle(l) -> [7, 8, 1, 5, 3, 4, 2, 0, 9, 6]
        assert_eq!(order, ["7", "8", "1", "5", "3", "4", "2", "0", "9", "6"]);
        assert!(d.requests.iter().all(|r| r.max_tokens == 8));
        assert_eq!(d.token_counts, TokenCounts::Estimated);
    }

    #[test]
    fn bad_dataset_files_get_located_errors() {
        let missing = DatasetSpec::ShareGpt {
            path: "/nonexistent/sharegpt.json".into(),
            output_len: None,
        };
        let e = format!("{:#}", load(&missing, 1, 0, None).unwrap_err());
        assert!(
            e.contains("cannot open dataset file /nonexistent/sharegpt.json"),
            "{e}"
        );

        let empty = file("");
        let e = format!(
            "{:#}",
            load(
                &DatasetSpec::ShareGpt {
                    path: empty.path().into(),
                    output_len: None
                },
                1,
                0,
                None
            )
            .unwrap_err()
        );
        assert!(e.contains("is empty"), "{e}");

        let bad = file("[\n {\"conversations\": [ {\"value\": 3} ]}\n]");
        let e = format!(
            "{:#}",
            load(
                &DatasetSpec::ShareGpt {
                    path: bad.path().into(),
                    output_len: None
                },
                1,
                0,
                None
            )
            .unwrap_err()
        );
        assert!(
            e.contains(":2:") && e.contains("not a ShareGPT file"),
            "{e}"
        );

        let bad = file("{\"prompt\": \"ok\", \"output_tokens\": 3}\n{\"prompt\": 5}\n");
        let spec = DatasetSpec::Jsonl {
            path: bad.path().into(),
            output_len: None,
        };
        let e = format!("{:#}", load(&spec, 2, 0, None).unwrap_err());
        assert!(e.contains(":2:"), "{e}");

        let noout = file("{\"prompt\": \"ok\"}\n");
        let spec = DatasetSpec::Jsonl {
            path: noout.path().into(),
            output_len: None,
        };
        let e = format!("{:#}", load(&spec, 1, 0, None).unwrap_err());
        assert!(e.contains(":1: no `output_tokens`"), "{e}");
    }

    #[test]
    fn jsonl_reads_prompts_with_optional_output_length() {
        let f = file(
            "{\"prompt\": \"first prompt\", \"output_tokens\": 3}\n\n{\"prompt\": \"second\"}\n",
        );
        let spec = DatasetSpec::Jsonl {
            path: f.path().into(),
            output_len: Some(9),
        };
        let d = load(&spec, 2, 0, None).unwrap();
        assert_eq!(d.requests[0].max_tokens, 3);
        assert_eq!(d.requests[1].max_tokens, 9);
        assert_eq!(d.requests[1].prompt, "second");
    }

    #[test]
    fn random_prompts_have_exact_token_lengths() {
        let tok = tiny();
        let spec = DatasetSpec::Random {
            input_len: 100,
            output_len: 20,
            range_ratio: 0.0,
        };
        let d = load(&spec, 20, 1, Some(&tok)).unwrap();
        for r in &d.requests {
            assert_eq!(tok.count(&r.prompt).unwrap(), 100, "{:?}", r.prompt);
            assert_eq!(r.prompt_tokens, 100);
            assert_eq!(r.max_tokens, 20);
        }
        let spec = DatasetSpec::Random {
            input_len: 100,
            output_len: 20,
            range_ratio: 0.5,
        };
        let d = load(&spec, 50, 1, Some(&tok)).unwrap();
        assert!(d
            .requests
            .iter()
            .all(|r| (50..=150).contains(&r.prompt_tokens)));
        assert!(d.requests.iter().all(|r| (10..=30).contains(&r.max_tokens)));
        let again = load(&spec, 50, 1, Some(&tok)).unwrap();
        for r in &d.requests {
            assert_eq!(tok.count(&r.prompt).unwrap() as u64, r.prompt_tokens);
        }
        let long = DatasetSpec::Random {
            input_len: 512,
            output_len: 8,
            range_ratio: 0.0,
        };
        let d2 = load(&long, 40, 0, Some(&tok)).unwrap();
        assert!(
            d2.notes.iter().all(|n| !n.contains("could not")),
            "{:?}",
            d2.notes
        );
        assert!(d2.requests.iter().all(|r| r.prompt_tokens == 512));
        assert_eq!(d.requests, again.requests);
        assert!(load(&spec, 1, 0, None)
            .unwrap_err()
            .to_string()
            .contains("needs a tokenizer"));
    }
}
