//! Random prompts of exact token lengths (as `vllm bench serve --dataset-name random`).

use super::*;

fn len_range(len: u64, ratio: f64) -> (u64, u64) {
    let lo = ((len as f64) * (1.0 - ratio)).floor().max(1.0) as u64;
    let hi = ((len as f64) * (1.0 + ratio)).ceil().max(lo as f64) as u64;
    (lo, hi)
}

pub(super) fn random(
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
                filler.get_or_insert_with(|| pick_filler(tok)),
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
fn pick_filler(tok: &Tokenizer) -> String {
    super::words::single_token_words(tok, 1)
        .pop()
        .unwrap_or_else(|| " a".to_string())
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
