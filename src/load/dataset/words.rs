//! Text of an exact token count, made of words the tokenizer keeps as one token each.
//!
//! A word like `" the"` is one token and, for word-splitting tokenizers (byte-level BPE with a
//! regex pre-tokenizer, SentencePiece's metaspace), a pre-token of its own: a text of `n` such
//! words is exactly `n` tokens, and the concatenation of two such texts is exactly the
//! concatenation of their tokens. That is what shared prefixes need: a group's system prompt
//! or a trace's hash block is the same tokens in every request that carries it, and a
//! truncated block is a token prefix of the whole one. Every synthesised prompt is still
//! re-counted with the tokenizer, so a tokenizer that merges across words is caught.

use anyhow::{bail, Context};
use rand::Rng;

use super::Tokenizer;

/// Enough variety that a few thousand tokens of text never repeat in practice.
const MAX_WORDS: usize = 2048;
/// Fewer single-token words than this and the tokenizer is not the kind this works for.
const MIN_WORDS: usize = 16;

/// Single-token words of a tokenizer, each with a leading space (e.g. `" the"`), in vocabulary
/// order; at most `limit`.
pub(super) fn single_token_words(tok: &Tokenizer, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    for id in tok.ordinary_ids() {
        if out.len() >= limit {
            break;
        }
        let Ok(text) = tok.decode(&[id]) else {
            continue;
        };
        let word = text.strip_prefix(' ').unwrap_or("");
        if word.len() < 2 || !word.chars().all(|c| c.is_ascii_lowercase()) {
            continue;
        }
        // One token alone and one per repetition: it neither splits nor merges with itself.
        let one = tok.encode(&text, false).map(|v| v == [id]).unwrap_or(false);
        let three = tok.encode(&text.repeat(3), false).map(|v| v.len() == 3);
        if one && three.unwrap_or(false) {
            out.push(text);
        }
    }
    out
}

/// The words prompts are made of, and the special tokens the tokenizer adds to every prompt.
pub(super) struct Words {
    words: Vec<String>,
    /// Tokens `encode(text, add_special_tokens)` adds to any text (e.g. a BOS).
    pub specials: u64,
}

impl Words {
    /// The tokenizer's single-token words; an error when it has too few, or merges them.
    pub fn new(tok: &Tokenizer) -> anyhow::Result<Words> {
        let words = single_token_words(tok, MAX_WORDS);
        if words.len() < MIN_WORDS {
            bail!(
                "tokenizer {} has only {} words that are one token each (like \" the\"); exact \
                 prompt lengths cannot be synthesised with it",
                tok.path.display(),
                words.len()
            );
        }
        let specials = tok.count("")? as u64;
        let w = Words { words, specials };
        // A probe of every word in a row: a tokenizer that merges across spaces fails here.
        let probe: String = w.words.concat();
        let got = tok.encode(&probe, false)?.len();
        if got != w.words.len() {
            bail!(
                "tokenizer {} merges words across spaces ({} words became {got} tokens); exact \
                 shared prefixes cannot be synthesised with it",
                tok.path.display(),
                w.words.len()
            );
        }
        Ok(w)
    }

    /// `n` words drawn from `rng`, as indices (to be joined by [`Words::join`]).
    pub fn draw(&self, rng: &mut impl Rng, n: u64) -> Vec<u32> {
        (0..n)
            .map(|_| rng.gen_range(0..self.words.len()) as u32)
            .collect()
    }

    /// The text of words `ids`: exactly `ids.len()` tokens.
    pub fn join(&self, ids: &[u32]) -> String {
        ids.iter()
            .map(|&i| self.words[i as usize].as_str())
            .collect()
    }

    /// Check that `text` is `want` tokens as the server counts them (specials included).
    pub fn verify(&self, tok: &Tokenizer, text: &str, want: u64) -> anyhow::Result<()> {
        let got = tok.count(text).context("counting a synthesised prompt")? as u64;
        if got != want {
            bail!(
                "a synthesised prompt is {got} tokens instead of {want}: tokenizer {} does not \
                 keep space-separated words apart",
                tok.path.display()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::dataset::test_support::tiny;
    use rand::SeedableRng;

    #[test]
    fn a_text_of_n_words_is_n_tokens_and_concatenation_concatenates_tokens() {
        let tok = tiny();
        let words = Words::new(&tok).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for n in [1u64, 7, 100, 513] {
            let a = words.join(&words.draw(&mut rng, n));
            let b = words.join(&words.draw(&mut rng, 5));
            assert_eq!(tok.encode(&a, false).unwrap().len() as u64, n);
            let joined = tok.encode(&format!("{a}{b}"), false).unwrap();
            let mut parts = tok.encode(&a, false).unwrap();
            parts.extend(tok.encode(&b, false).unwrap());
            assert_eq!(joined, parts, "tokens of a+b are tokens of a then of b");
            words
                .verify(&tok, &a, n + words.specials)
                .expect("counted with specials");
        }
        assert!(words.verify(&tok, "x", 99).is_err());
    }
}
