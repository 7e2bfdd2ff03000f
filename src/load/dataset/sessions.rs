//! Multi-turn sessions: conversations whose turn k+1 is sent after turn k's answer, with the
//! whole conversation so far as its prompt. This module prepares what a session says (its
//! system prompt, each turn's user message and output length, the think times between turns);
//! the answers are the server's, inserted by the load generator as they arrive
//! (`load::sessions`).
//!
//! Two sources: synthetic sessions of exact token lengths (made of the tokenizer's one-token
//! words, so the history's tokens are the concatenation of its parts' tokens), and ShareGPT
//! conversations, whose human turns become the user messages.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rand::SeedableRng;
use rand_distr::{Distribution, Exp};
use serde::Deserialize;

use super::words::Words;
use super::*;

/// How think times (between the end of an answer and the next user message) are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThinkTime {
    /// Exponential with the given mean: users who sometimes answer at once, sometimes late.
    Exponential,
    /// Exactly the mean every time.
    Fixed,
}

/// Where sessions come from.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionSource {
    /// `turns` turns each: a system prompt of `system_len` tokens (0: none; else the special
    /// tokens the tokenizer adds are included), user messages of `question_len` tokens, answers
    /// of `output_len` tokens (sent with `ignore_eos`).
    Synthetic {
        turns: u64,
        system_len: u64,
        question_len: u64,
        output_len: u64,
    },
    /// ShareGPT conversations: human turns are the user messages, the gpt turn after each sets
    /// its output length (unless `output_len`); at most `max_turns` turns per session.
    ShareGpt {
        path: PathBuf,
        max_turns: Option<u64>,
        output_len: Option<u64>,
    },
}

/// The shape of a sessions workload.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionsSpec {
    pub source: SessionSource,
    /// Mean think time, seconds (0: the next turn is sent as soon as the answer is complete).
    pub think_time_s: f64,
    pub think_time: ThinkTime,
}

/// One session as prepared: what the user says, not yet what the server answers.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedSession {
    /// System prompt (a `system` message in chat, the prompt's start in completions); may be
    /// empty.
    pub system: String,
    /// Tokens of the system prompt with the tokenizer's special tokens (or of those alone
    /// when there is no system prompt), as counted or estimated.
    pub system_tokens: u64,
    /// One per turn: `prompt` is the turn's user message alone, `prompt_tokens` its tokens,
    /// `max_tokens` the answer's length.
    pub turns: Vec<PreparedRequest>,
    /// Seconds between the end of turn k's answer and turn k+1's send: `think_s[k - 1]`.
    pub think_s: Vec<f64>,
}

impl PreparedSession {
    /// The first turn as a request of its own (system prompt and first message), for the
    /// request set's slots and for warm-up.
    pub fn first_request(&self) -> PreparedRequest {
        let first = &self.turns[0];
        PreparedRequest {
            prompt: format!("{}{}", self.system, first.prompt),
            prompt_tokens: self.system_tokens + first.prompt_tokens,
            max_tokens: first.max_tokens,
        }
    }
}

pub(super) fn sessions(
    spec: &SessionsSpec,
    n: usize,
    seed: u64,
    tokenizer: Option<&Tokenizer>,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<PreparedSession>> {
    if !(spec.think_time_s.is_finite() && spec.think_time_s >= 0.0) {
        bail!(
            "think_time_s {} must be a number of seconds, 0 or more",
            spec.think_time_s
        );
    }
    let mut sessions = match &spec.source {
        SessionSource::Synthetic {
            turns,
            system_len,
            question_len,
            output_len,
        } => {
            let tok = tokenizer.ok_or_else(|| {
                anyhow!(
                    "synthetic sessions need a tokenizer to make messages of exact token \
                     lengths: pass --tokenizer (a tokenizer.json, a model folder or a cached \
                     model id)"
                )
            })?;
            let shape = Shape {
                turns: *turns,
                system_len: *system_len,
                question_len: *question_len,
                output_len: *output_len,
            };
            synthetic(&shape, n, seed, tok)?
        }
        SessionSource::ShareGpt {
            path,
            max_turns,
            output_len,
        } => sharegpt(path, *max_turns, *output_len, n, seed, tokenizer, notes)?,
    };
    // Think times come from a stream of their own, so changing them keeps the texts.
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x7468_696e_6b5f_7473);
    let exp = Exp::new(1.0).expect("rate 1 is valid");
    for s in &mut sessions {
        s.think_s = (1..s.turns.len())
            .map(|_| match spec.think_time {
                ThinkTime::Fixed => spec.think_time_s,
                ThinkTime::Exponential => spec.think_time_s * exp.sample(&mut rng),
            })
            .collect();
    }
    Ok(sessions)
}

struct Shape {
    turns: u64,
    system_len: u64,
    question_len: u64,
    output_len: u64,
}

fn synthetic(
    shape: &Shape,
    n: usize,
    seed: u64,
    tok: &Tokenizer,
) -> anyhow::Result<Vec<PreparedSession>> {
    if shape.turns == 0 || shape.question_len == 0 || shape.output_len == 0 {
        bail!("turns, question_len and output_len must each be at least 1");
    }
    let words = Words::new(tok)?;
    let system_words = match shape.system_len {
        0 => 0,
        len => match len.checked_sub(words.specials).filter(|w| *w > 0) {
            Some(w) => w,
            None => bail!(
                "system_prompt_len {len} leaves no room for text after the tokenizer's {} \
                 special tokens",
                words.specials
            ),
        },
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let system = words.join(&words.draw(&mut rng, system_words));
            let turns: Vec<PreparedRequest> = (0..shape.turns)
                .map(|_| PreparedRequest {
                    prompt: words.join(&words.draw(&mut rng, shape.question_len)),
                    prompt_tokens: shape.question_len,
                    max_tokens: shape.output_len,
                })
                .collect();
            let session = PreparedSession {
                system_tokens: words.specials + system_words,
                system,
                turns,
                think_s: Vec::new(),
            };
            // The whole conversation's user side, counted again: exact, or refused.
            let all: String = std::iter::once(session.system.as_str())
                .chain(session.turns.iter().map(|t| t.prompt.as_str()))
                .collect();
            let want = session.system_tokens + shape.turns * shape.question_len;
            words.verify(tok, &all, want)?;
            Ok(session)
        })
        .collect()
}

// --- ShareGPT conversations ---------------------------------------------------------------

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    conversations: Option<Vec<Message>>,
}

#[derive(Deserialize)]
struct Message {
    from: String,
    value: String,
}

#[derive(PartialEq)]
enum Role {
    System,
    User,
    Assistant,
    Other,
}

fn role(from: &str) -> Role {
    match from {
        "system" => Role::System,
        "human" | "user" => Role::User,
        "gpt" | "assistant" | "chatgpt" | "bard" | "bing" => Role::Assistant,
        _ => Role::Other,
    }
}

/// A conversation's usable part: its system prompt, then (user, answer) pairs for as long as
/// the turns alternate; `cut` when it stopped before the conversation's end.
struct Usable<'a> {
    system: &'a str,
    pairs: Vec<(&'a str, &'a str)>,
    cut: bool,
}

fn usable(messages: &[Message], max_turns: Option<u64>) -> Usable<'_> {
    let mut rest = messages;
    let mut system = "";
    if let Some((first, tail)) = rest.split_first() {
        if role(&first.from) == Role::System {
            system = &first.value;
            rest = tail;
        }
    }
    let mut pairs = Vec::new();
    while let [user, answer, tail @ ..] = rest {
        if max_turns.is_some_and(|m| pairs.len() as u64 >= m) {
            break;
        }
        if role(&user.from) != Role::User || role(&answer.from) != Role::Assistant {
            break;
        }
        pairs.push((user.value.as_str(), answer.value.as_str()));
        rest = tail;
    }
    let cut = !rest.is_empty() && max_turns.is_none_or(|m| (pairs.len() as u64) < m);
    Usable { system, pairs, cut }
}

fn sharegpt(
    path: &Path,
    max_turns: Option<u64>,
    output_len: Option<u64>,
    n: usize,
    seed: u64,
    tokenizer: Option<&Tokenizer>,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<PreparedSession>> {
    let reader = super::input::open(path, "dataset file")?;
    let entries: Vec<Entry> = serde_json::from_reader(reader).map_err(|e| {
        anyhow!(
            "{}:{}:{}: not a ShareGPT file ({e}); expected a JSON list of \
             {{\"conversations\": [{{\"from\": \"human\", \"value\": \"...\"}}, \
             {{\"from\": \"gpt\", \"value\": \"...\"}}, ...]}}",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    let total = entries.len();
    let (mut cut, mut unusable) = (0usize, 0usize);
    let mut sessions = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let Some(messages) = &entry.conversations else {
            unusable += 1;
            continue;
        };
        let u = usable(messages, max_turns);
        if u.pairs.is_empty() {
            unusable += 1;
            continue;
        }
        cut += usize::from(u.cut);
        let located = || {
            let id = entry
                .id
                .as_ref()
                .map(|v| format!(" (id {v})"))
                .unwrap_or_default();
            format!("{}: conversation {}{id}", path.display(), i + 1)
        };
        let turns = u
            .pairs
            .iter()
            .map(|(user, answer)| {
                let max_tokens = match output_len {
                    Some(l) => l,
                    None => count(tokenizer, answer).with_context(located)?.max(1),
                };
                Ok(PreparedRequest {
                    prompt_tokens: count(tokenizer, user).with_context(located)?,
                    prompt: (*user).to_owned(),
                    max_tokens,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        sessions.push(PreparedSession {
            system: u.system.to_owned(),
            system_tokens: count(tokenizer, u.system).with_context(located)?,
            turns,
            think_s: Vec::new(),
        });
    }
    if sessions.is_empty() {
        bail!(
            "{}: none of its {total} entries has a conversation that starts (after an optional \
             system turn) with a human turn answered by a gpt turn",
            path.display()
        );
    }
    if unusable > 0 || cut > 0 {
        notes.push(format!(
            "{} of {total} ShareGPT entries skipped (no human turn answered by a gpt turn at \
             their start); {cut} conversations end where their turns stop alternating human, gpt",
            unusable
        ));
    }
    PyRandom::new(seed).shuffle(&mut sessions);
    sessions.truncate(n);
    if sessions.len() < n {
        notes.push(format!(
            "only {} usable conversations for {n} sessions: oversampled with repetition",
            sessions.len()
        ));
        let mut r = PyRandom::new(seed);
        let base = sessions.len();
        for _ in base..n {
            let k = r.randbelow(base as u32) as usize;
            sessions.push(sessions[k].clone());
        }
    }
    Ok(sessions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::dataset::test_support::{file, tiny};

    fn synthetic_spec(system_len: u64) -> SessionsSpec {
        SessionsSpec {
            source: SessionSource::Synthetic {
                turns: 4,
                system_len,
                question_len: 12,
                output_len: 5,
            },
            think_time_s: 0.5,
            think_time: ThinkTime::Exponential,
        }
    }

    #[test]
    fn synthetic_sessions_have_exact_lengths_and_a_history_is_its_parts_tokens() {
        let tok = tiny();
        let mut notes = Vec::new();
        let s = sessions(&synthetic_spec(40), 3, 7, Some(&tok), &mut notes).unwrap();
        assert_eq!(s.len(), 3);
        for session in &s {
            assert_eq!(session.turns.len(), 4);
            assert_eq!(session.think_s.len(), 3);
            assert_eq!(tok.count(&session.system).unwrap(), 40);
            assert_eq!(session.system_tokens, 40);
            assert_eq!(session.first_request().prompt_tokens, 52);
            assert_eq!(tok.count(&session.first_request().prompt).unwrap(), 52);
            // A turn's completions prompt is the history's parts one after the other; with
            // answers made of the same words, its tokens are exactly the parts' tokens.
            let answer = &session.turns[3].prompt[..];
            let mut history = session.system.clone();
            let mut want = 40;
            for t in &session.turns {
                assert_eq!(t.prompt_tokens, 12);
                assert_eq!(t.max_tokens, 5);
                assert_eq!(tok.encode(&t.prompt, false).unwrap().len(), 12);
                history.push_str(&t.prompt);
                history.push_str(answer);
                want += 24;
                assert_eq!(tok.count(&history).unwrap() as u64, want);
            }
        }
        // The same seed gives the same sessions; another seed other texts.
        let again = sessions(&synthetic_spec(40), 3, 7, Some(&tok), &mut notes).unwrap();
        assert_eq!(s, again);
        let other = sessions(&synthetic_spec(40), 3, 8, Some(&tok), &mut notes).unwrap();
        assert_ne!(s[0].system, other[0].system);
        // No system prompt: the first turn is the special tokens and the message.
        let bare = sessions(&synthetic_spec(0), 1, 7, Some(&tok), &mut notes).unwrap();
        assert!(bare[0].system.is_empty());
        let specials = tok.count("").unwrap();
        assert_eq!(
            tok.count(&bare[0].first_request().prompt).unwrap(),
            specials + 12
        );
        assert!(sessions(&synthetic_spec(0), 1, 7, None, &mut notes)
            .unwrap_err()
            .to_string()
            .contains("need a tokenizer"));
    }

    #[test]
    fn think_times_are_seeded_exponential_or_fixed() {
        let tok = tiny();
        let mut notes = Vec::new();
        let mut spec = synthetic_spec(0);
        spec.source = SessionSource::Synthetic {
            turns: 201,
            system_len: 0,
            question_len: 1,
            output_len: 1,
        };
        let s = sessions(&spec, 10, 1, Some(&tok), &mut notes).unwrap();
        let all: Vec<f64> = s.iter().flat_map(|s| s.think_s.clone()).collect();
        assert_eq!(all.len(), 2000);
        let mean = all.iter().sum::<f64>() / all.len() as f64;
        assert!((mean - 0.5).abs() < 0.05, "mean think time {mean}");
        assert!(all.iter().any(|t| *t > 1.5) && all.iter().any(|t| *t < 0.05));
        spec.think_time = ThinkTime::Fixed;
        let s = sessions(&spec, 2, 1, Some(&tok), &mut notes).unwrap();
        assert!(s.iter().flat_map(|s| &s.think_s).all(|t| *t == 0.5));
        spec.think_time_s = -1.0;
        assert!(sessions(&spec, 2, 1, Some(&tok), &mut notes).is_err());
    }

    #[test]
    fn sharegpt_conversations_become_sessions_of_their_human_turns() {
        let data = serde_json::json!([
            {"id": "a", "conversations": [
                {"from": "system", "value": "be brief"},
                {"from": "human", "value": "first question here"},
                {"from": "gpt", "value": "one two three four five six"},
                {"from": "human", "value": "second question"},
                {"from": "gpt", "value": "seven eight"},
                {"from": "human", "value": "unanswered"}]},
            {"id": "b", "conversations": [{"from": "gpt", "value": "starts with an answer"}]},
            {"id": "c", "conversations": [
                {"from": "human", "value": "q1"}, {"from": "gpt", "value": "a1"},
                {"from": "human", "value": "q2"}, {"from": "gpt", "value": "a2"},
                {"from": "human", "value": "q3"}, {"from": "gpt", "value": "a3"}]},
        ]);
        let f = file(&data.to_string());
        let spec = |max_turns, output_len| SessionsSpec {
            source: SessionSource::ShareGpt {
                path: f.path().into(),
                max_turns,
                output_len,
            },
            think_time_s: 0.0,
            think_time: ThinkTime::Fixed,
        };
        let tok = tiny();
        let mut notes = Vec::new();
        let mut s = sessions(&spec(None, None), 2, 0, Some(&tok), &mut notes).unwrap();
        s.sort_by_key(|s| s.turns.len());
        let (a, c) = (&s[0], &s[1]);
        assert_eq!(a.system, "be brief");
        let users: Vec<&str> = a.turns.iter().map(|t| t.prompt.as_str()).collect();
        assert_eq!(users, ["first question here", "second question"]);
        assert_eq!(
            a.turns[0].max_tokens as usize,
            tok.encode("one two three four five six", false)
                .unwrap()
                .len()
        );
        assert_eq!(a.think_s, [0.0]);
        assert_eq!(c.turns.len(), 3);
        assert!(notes
            .iter()
            .any(|n| n.contains("1 of 3") && n.contains("1 conversations end")));
        // `turns` caps a session; `output_len` overrides the answers' lengths.
        let s = sessions(&spec(Some(2), Some(9)), 2, 0, None, &mut notes).unwrap();
        assert!(s.iter().all(|s| s.turns.len() <= 2));
        assert!(s.iter().flat_map(|s| &s.turns).all(|t| t.max_tokens == 9));
        // More sessions than conversations: oversampled, and said so.
        let s = sessions(&spec(None, None), 5, 0, None, &mut notes).unwrap();
        assert_eq!(s.len(), 5);
        assert!(notes.iter().any(|n| n.contains("oversampled")));
    }

    #[test]
    fn a_malformed_sharegpt_conversation_is_a_located_error() {
        let spec = |path: &Path| SessionsSpec {
            source: SessionSource::ShareGpt {
                path: path.into(),
                max_turns: None,
                output_len: None,
            },
            think_time_s: 0.0,
            think_time: ThinkTime::Fixed,
        };
        let mut notes = Vec::new();
        // Line 3: a turn without `from`.
        let f = file(
            "[\n {\"conversations\": [{\"from\": \"human\", \"value\": \"hi\"},\n  \
             {\"value\": \"no role\"}]}\n]",
        );
        let e = format!(
            "{:#}",
            sessions(&spec(f.path()), 1, 0, None, &mut notes).unwrap_err()
        );
        assert!(
            e.contains(&format!("{}:3:", f.path().display())) && e.contains("missing field `from`"),
            "{e}"
        );
        // Line 2: a value that is not text.
        let f = file("[\n {\"conversations\": [{\"from\": \"human\", \"value\": 3}]}\n]");
        let e = format!(
            "{:#}",
            sessions(&spec(f.path()), 1, 0, None, &mut notes).unwrap_err()
        );
        assert!(
            e.contains(":2:") && e.contains("not a ShareGPT file"),
            "{e}"
        );
        // Well-formed, but nothing usable.
        let f = file("[{\"conversations\": [{\"from\": \"gpt\", \"value\": \"x\"}]}]");
        let e = format!(
            "{:#}",
            sessions(&spec(f.path()), 1, 0, None, &mut notes).unwrap_err()
        );
        assert!(e.contains("none of its 1 entries"), "{e}");
    }
}
