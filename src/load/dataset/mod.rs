//! Request sets: ShareGPT JSON (filtered and sampled as `vllm bench serve` does), random prompts
//! of exact token lengths, JSONL prompts, groups sharing a system prompt, request traces
//! (arrival times, lengths and shared prefix blocks), and multi-turn sessions. The result is prepared once and replayed,
//! the same requests in the same order, against every deployment.

use std::path::PathBuf;

use anyhow::{anyhow, bail};
use rand::{Rng, SeedableRng};

use super::pyrandom::PyRandom;
use super::tokenizer::{estimate_tokens, Tokenizer};
use files::{jsonl, sharegpt};
pub use sessions::{PreparedSession, SessionSource, SessionsSpec, ThinkTime};
pub use shared_prefix::SharedPrefixSpec;
use synthetic::random;
pub use trace::{TraceFormat, TraceSpec};

mod files;
pub mod input;
mod sessions;
mod shared_prefix;
mod synthetic;
pub mod trace;
mod words;

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
    /// Groups of requests sharing a system prompt; needs a tokenizer.
    SharedPrefix(SharedPrefixSpec),
    /// A request trace's lengths, shared prefix blocks and arrival times; needs a tokenizer.
    Trace(TraceSpec),
    /// Multi-turn sessions, synthetic (needs a tokenizer) or from ShareGPT conversations.
    Sessions(SessionsSpec),
}

impl DatasetSpec {
    /// `sharegpt`, `random`, `jsonl`, `shared_prefix`, `trace` or `sessions`.
    pub fn name(&self) -> &'static str {
        match self {
            DatasetSpec::ShareGpt { .. } => "sharegpt",
            DatasetSpec::Random { .. } => "random",
            DatasetSpec::Jsonl { .. } => "jsonl",
            DatasetSpec::SharedPrefix(_) => "shared_prefix",
            DatasetSpec::Trace(_) => "trace",
            DatasetSpec::Sessions(_) => "sessions",
        }
    }

    /// Whether its requests have output lengths to keep exactly (sent with `ignore_eos`):
    /// synthetic prompts and sessions, and a trace's recorded lengths.
    pub fn exact_output_lengths(&self) -> bool {
        match self {
            DatasetSpec::Random { .. } | DatasetSpec::SharedPrefix(_) | DatasetSpec::Trace(_) => {
                true
            }
            DatasetSpec::Sessions(s) => matches!(s.source, SessionSource::Synthetic { .. }),
            DatasetSpec::ShareGpt { .. } | DatasetSpec::Jsonl { .. } => false,
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
    /// A trace's arrival offsets, seconds from its first request, one per request.
    pub offsets_s: Option<Vec<f64>>,
    /// Multi-turn sessions, one per request: `requests[i]` is session `i`'s first turn alone.
    pub sessions: Option<Vec<PreparedSession>>,
}

/// Prepare `num_prompts` requests (sessions, for a sessions dataset). Bad files give an error naming the file and the place.
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
    let mut offsets_s = None;
    let mut sessions = None;
    let requests = match spec {
        DatasetSpec::ShareGpt { path, output_len } => {
            sharegpt(path, *output_len, num_prompts, seed, tokenizer, &mut notes)?
        }
        DatasetSpec::Random {
            input_len,
            output_len,
            range_ratio,
        } => random(
            *input_len,
            *output_len,
            *range_ratio,
            num_prompts,
            seed,
            needs_tokenizer(spec, tokenizer)?,
            &mut notes,
        )?,
        DatasetSpec::Jsonl { path, output_len } => {
            jsonl(path, *output_len, num_prompts, seed, tokenizer, &mut notes)?
        }
        DatasetSpec::SharedPrefix(s) => {
            shared_prefix::shared_prefix(s, num_prompts, seed, needs_tokenizer(spec, tokenizer)?)?
        }
        DatasetSpec::Trace(t) => {
            let tok = needs_tokenizer(spec, tokenizer)?;
            let trace = trace::trace(t, num_prompts, seed, tok, &mut notes)?;
            offsets_s = Some(trace.offsets_s);
            trace.requests
        }
        DatasetSpec::Sessions(s) => {
            let prepared = sessions::sessions(s, num_prompts, seed, tokenizer, &mut notes)?;
            let firsts = prepared.iter().map(|s| s.first_request()).collect();
            sessions = Some(prepared);
            firsts
        }
    };
    Ok(Dataset {
        name: spec.name().to_string(),
        requests,
        token_counts: counts,
        notes,
        offsets_s,
        sessions,
    })
}

/// The tokenizer a synthesised dataset cannot do without.
fn needs_tokenizer<'t>(
    spec: &DatasetSpec,
    tokenizer: Option<&'t Tokenizer>,
) -> anyhow::Result<&'t Tokenizer> {
    tokenizer.ok_or_else(|| {
        anyhow!(
            "the {} dataset needs a tokenizer to make prompts of exact token lengths: pass \
             --tokenizer (a tokenizer.json, a model folder or a cached model id)",
            spec.name()
        )
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

/// What the datasets' unit tests share: the tiny tokenizer and a temporary file.
#[cfg(test)]
mod test_support {
    use std::io::Write;

    use crate::load::tokenizer::Tokenizer;

    pub fn tiny() -> Tokenizer {
        Tokenizer::load(&format!(
            "{}/tests/fixtures/tiny-model",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    pub fn file(content: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content.as_bytes()).unwrap();
        f
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{file, tiny};
    use super::*;

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
            e.contains("dataset file /nonexistent/sharegpt.json: cannot read"),
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
        // The manifest's length overrides the lines' own; without it, each line's holds.
        assert_eq!(d.requests[0].max_tokens, 9);
        assert_eq!(d.requests[1].max_tokens, 9);
        let own = DatasetSpec::Jsonl {
            path: f.path().into(),
            output_len: None,
        };
        let e = format!("{:#}", load(&own, 2, 0, None).unwrap_err());
        assert!(e.contains(":3: no `output_tokens`"), "{e}");
        assert_eq!(d.requests[1].prompt, "second");
        let f = file("{\"prompt\": \"first prompt\", \"output_tokens\": 3}\n");
        let own = DatasetSpec::Jsonl {
            path: f.path().into(),
            output_len: None,
        };
        assert_eq!(load(&own, 1, 0, None).unwrap().requests[0].max_tokens, 3);
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
