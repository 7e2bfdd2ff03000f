//! Request sets from files: ShareGPT JSON (first turns, filtered and sampled as `vllm bench
//! serve` does) and JSONL prompts.

use std::fmt;
use std::path::Path;

use anyhow::{anyhow, bail};
use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;

use super::*;

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

pub(super) fn sharegpt(
    path: &Path,
    output_len: Option<u64>,
    n: usize,
    seed: u64,
    tokenizer: Option<&Tokenizer>,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<PreparedRequest>> {
    let reader = input::open(path, "dataset file")?;
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

/// A JSONL line longer than this is not a prompt (16 MiB: some four million tokens).
const MAX_JSONL_LINE_BYTES: usize = 16 << 20;

pub(super) fn jsonl(
    path: &Path,
    output_len: Option<u64>,
    n: usize,
    seed: u64,
    tokenizer: Option<&Tokenizer>,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<PreparedRequest>> {
    let mut lines = input::BoundedLines::open(
        path,
        "dataset file",
        "a JSONL prompt file",
        MAX_JSONL_LINE_BYTES,
    )?;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let Some((lineno, line)) = lines.next_line()? else {
            break;
        };
        if line.trim().is_empty() {
            continue;
        }
        let row: JsonlLine = serde_json::from_str(line).map_err(|e| {
            anyhow!(
                "{}:{lineno}:{}: {e}; each line must be a JSON object like \
                 {{\"prompt\": \"...\", \"output_tokens\": 128}}",
                path.display(),
                e.column()
            )
        })?;
        // The manifest's output length, when given, overrides every line's (as for ShareGPT).
        let max_tokens = output_len.or(row.output_tokens).ok_or_else(|| {
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
