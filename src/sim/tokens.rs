//! A stand-in tokenizer: deterministic, cheap, and good enough for lengths. A word is one token
//! per 4 characters (a leading space belongs to the word, as in byte-level BPE); every other
//! visible character is a token of its own. Output text is drawn from a fixed list of pieces.

use crate::load::cache_reuse::{chain, CHAIN_START};
/// Output pieces. Plain ASCII letters and spaces only, so they never need JSON escaping.
const PIECES: &[&str] = &[
    " the", " of", "ing", " and", " model", " to", "ed", " in", " is", " for", "tion", " that",
    " on", " with", " as", "er", " it", " by", " be", " are", "al", " this", " from", " at",
    " serve", " token", "ly", " or", " an", " we", " can", " which", " data", " not", "es",
    " each", " time", " batch", " cache", " step", " one", " all", " more", " has", " use", " new",
    " when", " out", " run", " first", " two", " also", " into", " over", " its", " load", " rate",
    " prefill", " decode", " GPU", "s", " per", " queue", " KV",
];

/// How sim-serve counts prompt tokens: with the model's real tokenizer when it was given one
/// (`--tokenizer`), so its prefill work matches what vLLM would count for the same prompt;
/// otherwise with the stand-in [`count`].
#[derive(Clone, Default)]
pub struct Counter(Option<std::sync::Arc<crate::load::Tokenizer>>);

impl Counter {
    pub fn real(tokenizer: std::sync::Arc<crate::load::Tokenizer>) -> Counter {
        Counter(Some(tokenizer))
    }

    /// Tokens of a chat message's content (the template's own tokens are counted apart).
    pub fn content(&self, text: &str) -> u32 {
        self.with(text, false)
    }

    /// Token ids of a completions prompt, with the tokenizer's special tokens (such as BOS) as
    /// vLLM adds them; stand-in ids without a tokenizer, equal for equal text prefixes.
    pub fn prompt_ids(&self, text: &str) -> Vec<u32> {
        self.ids_with(text, true)
    }

    /// Token ids of a chat message's content.
    pub fn content_ids(&self, text: &str) -> Vec<u32> {
        self.ids_with(text, false)
    }

    fn ids_with(&self, text: &str, special: bool) -> Vec<u32> {
        match &self.0 {
            Some(t) => t
                .encode(text, special)
                .unwrap_or_else(|_| ids(text, u32::MAX)),
            None => ids(text, u32::MAX),
        }
    }

    fn with(&self, text: &str, special: bool) -> u32 {
        match &self.0 {
            Some(t) => t
                .encode(text, special)
                .map(|ids| ids.len() as u32)
                .unwrap_or_else(|_| count(text)),
            None => count(text),
        }
    }
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Counter(tokenizer)"
        } else {
            "Counter(stand-in)"
        })
    }
}

/// Number of tokens `text` makes.
pub fn count(text: &str) -> u32 {
    let mut n = 0u32;
    let mut word = 0u32;
    for c in text.chars() {
        if c.is_alphanumeric() {
            word += 1;
        } else {
            n += word.div_ceil(4);
            word = 0;
            if !c.is_whitespace() {
                n += 1;
            }
        }
    }
    n + word.div_ceil(4)
}

/// Token ids for `text` (stable hashes of the pieces, below `vocab`).
pub fn ids(text: &str, vocab: u32) -> Vec<u32> {
    let n = count(text) as usize;
    let mut out = Vec::with_capacity(n);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, b) in text.bytes().enumerate() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        if out.len() < n && (i % 3 == 2 || i + 1 == text.len()) {
            out.push((h % vocab as u64) as u32);
        }
    }
    while out.len() < n {
        h = h.wrapping_mul(0x100_0000_01b3) ^ 0x9e37;
        out.push((h % vocab as u64) as u32);
    }
    out
}

/// Greedy decoding, as far as a simulator can have it: each output token follows from
/// everything before it (a hash chained over the context's token ids), so the same context
/// gives the same continuation on any instance, and a prompt extended by its own first output
/// token continues where the longer answer would have. Output token ids are indices into the
/// stand-in pieces, valid in any vocabulary.
#[derive(Debug, Clone, Copy)]
pub struct Greedy(u64);

impl Greedy {
    pub fn after(context: &[u32]) -> Greedy {
        Greedy(context.iter().fold(CHAIN_START, |h, &id| chain(h, id)))
    }

    /// A context the model would read differently (a corrupt KV cache).
    pub fn corrupted(self) -> Greedy {
        Greedy(self.0.rotate_left(17) ^ 0x5bd1_e995)
    }

    /// The next output token: its id and text; the context grows by it.
    pub fn next_token(&mut self) -> (u32, &'static str) {
        let id = (self.0 % PIECES.len() as u64) as u32;
        self.0 = chain(self.0, id);
        (id, PIECES[id as usize])
    }
}

/// The text of output token `index` of request `req`.
pub fn piece(req: u64, index: u32) -> &'static str {
    PIECES[piece_id(req, index) as usize]
}

/// The id of output token `index` of request `req` (an index into the pieces).
pub fn piece_id(req: u64, index: u32) -> u32 {
    let mut x = req.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ (index as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 31;
    (x % PIECES.len() as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_greedy_answer_continues_the_same_after_its_own_first_token() {
        let prompt = [5u32, 9, 11, 300];
        let mut whole = Greedy::after(&prompt);
        let answer: Vec<(u32, &str)> = (0..6).map(|_| whole.next_token()).collect();
        // The first token, then a context extended by it: the rest of the same answer.
        let mut extended = prompt.to_vec();
        extended.push(answer[0].0);
        let mut rest = Greedy::after(&extended);
        let tail: Vec<(u32, &str)> = (0..5).map(|_| rest.next_token()).collect();
        assert_eq!(tail, answer[1..]);
        // A corrupt context reads differently from the first token on (for this prompt).
        let mut bad = Greedy::after(&prompt).corrupted();
        let other: Vec<(u32, &str)> = (0..6).map(|_| bad.next_token()).collect();
        assert_ne!(other, answer);
    }

    #[test]
    fn counts_words_by_four_characters_and_punctuation_singly() {
        assert_eq!(count(""), 0);
        assert_eq!(count("Hello, world!"), 6);
        assert_eq!(count("a b c"), 3);
        assert_eq!(ids("Hello, world!", 4096).len(), 6);
        assert!(ids("x y z", 10).iter().all(|&t| t < 10));
    }

    #[test]
    fn pieces_need_no_json_escaping() {
        for p in PIECES {
            assert!(p.chars().all(|c| c.is_ascii_alphanumeric() || c == ' '));
        }
        assert_eq!(piece(7, 3), piece(7, 3));
    }
}
