//! Request traces: arrival times and token lengths from a production log, and for Mooncake's
//! format the prefix blocks requests share (`hash_ids`). The prompts are synthesised: exact
//! token counts, and every hash block is the same tokens in every request that names it, so
//! a server's prefix cache sees exactly the reuse the trace recorded.
//!
//! One module per format family owns its file format: [`mooncake`] (JSONL, read and written)
//! and [`csv`] (Azure LLM inference and BurstGPT). Files are read line by line, with caps on
//! the file and line sizes, and only as far as the requests needed.

use std::path::{Path, PathBuf};

use anyhow::bail;
use rand::SeedableRng;

use super::input::BoundedLines;
use super::words::Words;
use super::{PreparedRequest, Tokenizer};

mod csv;
pub mod generate;
pub mod mooncake;

pub use super::input::MAX_FILE_BYTES;
/// A line longer than this is not a trace record.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The public formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceFormat {
    /// JSONL: `timestamp` (ms), `input_length`, `output_length`, `hash_ids`.
    Mooncake,
    /// Azure LLM inference CSV: `TIMESTAMP` (date and time), `ContextTokens`, `GeneratedTokens`.
    Azure,
    /// BurstGPT CSV: `Timestamp` (s), `Model`, `Request tokens`, `Response tokens`,
    /// `Total tokens`, `Log Type`.
    BurstGpt,
}

impl TraceFormat {
    pub fn name(&self) -> &'static str {
        match self {
            TraceFormat::Mooncake => "mooncake",
            TraceFormat::Azure => "azure",
            TraceFormat::BurstGpt => "burstgpt",
        }
    }
}

/// Which trace to read and how to make its prompts.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSpec {
    pub path: PathBuf,
    pub format: TraceFormat,
    /// Tokens per `hash_ids` block (Mooncake).
    pub block_size: u64,
    /// Overrides every record's output length.
    pub output_len: Option<u64>,
}

/// One request of a trace, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRecord {
    /// 1-based line in the file, for errors.
    pub line: usize,
    /// Arrival time in seconds, on the trace's own clock.
    pub at_s: f64,
    pub input_len: u64,
    pub output_len: u64,
    /// Prefix blocks (Mooncake); empty when the format has none.
    pub hash_ids: Vec<u64>,
}

/// A synthesised trace: its requests and their arrival offsets (seconds from the first).
#[derive(Debug, Clone)]
pub struct TraceRequests {
    pub requests: Vec<PreparedRequest>,
    pub offsets_s: Vec<f64>,
}

/// What a format's parser says about one line.
enum Parsed {
    Record(TraceRecord),
    /// A header, or a record that cannot be a request, with why (counted in the notes).
    Skip(Option<&'static str>),
}

/// The first `n` requests of the trace, with prompts synthesised from `seed`: the same seed
/// gives the same texts, another seed other texts with the same sharing.
pub(super) fn trace(
    spec: &TraceSpec,
    n: usize,
    seed: u64,
    tok: &Tokenizer,
    notes: &mut Vec<String>,
) -> anyhow::Result<TraceRequests> {
    if spec.block_size == 0 {
        bail!("block_size must be at least 1 token");
    }
    let records = read(&spec.path, spec.format, n, notes)?;
    let words = Words::new(tok)?;
    let first = records.first().map_or(0.0, |r| r.at_s);
    let mut requests = Vec::with_capacity(records.len());
    for r in &records {
        let prompt = synthesise(r, spec.block_size, seed, &words)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", spec.path.display(), r.line))?;
        words.verify(tok, &prompt, r.input_len)?;
        requests.push(PreparedRequest {
            prompt,
            prompt_tokens: r.input_len,
            max_tokens: spec.output_len.unwrap_or(r.output_len),
        });
    }
    Ok(TraceRequests {
        requests,
        offsets_s: records.iter().map(|r| r.at_s - first).collect(),
    })
}

/// The first `n` usable records of a trace file; an error names the file, line and field.
pub fn read(
    path: &Path,
    format: TraceFormat,
    n: usize,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<TraceRecord>> {
    let mut lines = BoundedLines::open(
        path,
        "trace file",
        &format!("a {} trace", format.name()),
        MAX_LINE_BYTES,
    )?;
    let mut header: Option<csv::Header> = None;
    let mut records: Vec<TraceRecord> = Vec::with_capacity(n);
    let mut skipped: std::collections::BTreeMap<&'static str, usize> = Default::default();
    while records.len() < n {
        let Some((line, text)) = lines.next_line()? else {
            break;
        };
        if text.trim().is_empty() {
            continue;
        }
        let parsed = match format {
            TraceFormat::Mooncake => mooncake::parse_line(text, line),
            TraceFormat::Azure | TraceFormat::BurstGpt => match &header {
                None => csv::Header::parse(text, format).map(|h| {
                    header = Some(h);
                    Parsed::Skip(None)
                }),
                Some(h) => h.parse_row(text, line),
            },
        }
        .map_err(|e| anyhow::anyhow!("{}:{line}: {e}", path.display()))?;
        match parsed {
            Parsed::Record(r) => {
                if let Some(prev) = records.last().filter(|p| r.at_s < p.at_s) {
                    bail!(
                        "{}:{line}: timestamp goes back in time (line {} is later); a trace \
                         must be sorted by arrival",
                        path.display(),
                        prev.line
                    );
                }
                records.push(r);
            }
            Parsed::Skip(Some(why)) => *skipped.entry(why).or_default() += 1,
            Parsed::Skip(None) => {}
        }
    }
    if records.len() < n {
        bail!(
            "{}: the trace has {} usable requests, fewer than the {n} needed (num_prompts + \
             warmup); lower num_prompts or use a longer trace",
            path.display(),
            records.len()
        );
    }
    for (why, count) in skipped {
        notes.push(format!("{count} trace records skipped: {why}"));
    }
    Ok(records)
}

/// SplitMix64: a well-mixed 64-bit value from two keys (seeds per block and per request).
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Separates the random streams of unshared text from those of hash blocks.
const UNSHARED: u64 = 0x5EED_0000_0000_0000;

/// The prompt of one record: its hash blocks' words (the first block shortened by the
/// special tokens the tokenizer adds, the last truncated to the input length), or words of its
/// own when it names no blocks.
fn synthesise(r: &TraceRecord, block: u64, seed: u64, words: &Words) -> Result<String, String> {
    let len = r.input_len;
    if len <= words.specials {
        return Err(format!(
            "field `input_length`: {len} tokens leave no room for text after the tokenizer's \
             {} special tokens",
            words.specials
        ));
    }
    if r.hash_ids.is_empty() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(mix(seed ^ UNSHARED, r.line as u64));
        return Ok(words.join(&words.draw(&mut rng, len - words.specials)));
    }
    let blocks = len.div_ceil(block);
    if r.hash_ids.len() as u64 != blocks {
        return Err(format!(
            "field `hash_ids`: {} blocks, but input_length {len} in blocks of {block} tokens \
             needs {blocks}; is block_size right for this trace?",
            r.hash_ids.len()
        ));
    }
    let mut ids = Vec::with_capacity(len as usize);
    for (j, &h) in r.hash_ids.iter().enumerate() {
        let start = j as u64 * block;
        // Token positions of this block in the prompt; the specials come first.
        let end = (start + block).min(len);
        let take = end.saturating_sub(start.max(words.specials));
        let mut rng = rand::rngs::StdRng::seed_from_u64(mix(seed, h));
        let mut block_words = words.draw(&mut rng, block);
        block_words.truncate(take as usize);
        ids.extend(block_words);
    }
    Ok(words.join(&ids))
}

#[cfg(test)]
mod tests;
