//! Groups of requests that share a system prompt (as SGLang's `generated-shared-prefix` and
//! inference-perf's `shared_prefix`): each group has a system prompt of exactly `system_len`
//! tokens, each request appends a question of exactly `question_len` tokens of its own. The
//! system prompt is the same bytes and the same tokens in every request of its group, so a
//! server's prefix cache can reuse it; nothing is shared between groups.

use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::words::Words;
use super::*;

/// The shape of a shared-prefix workload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SharedPrefixSpec {
    pub groups: u64,
    /// Tokens of the system prompt, the tokenizer's special tokens (a BOS) included.
    pub system_len: u64,
    pub question_len: u64,
    pub output_len: u64,
}

pub(super) fn shared_prefix(
    spec: &SharedPrefixSpec,
    n: usize,
    seed: u64,
    tok: &Tokenizer,
) -> anyhow::Result<Vec<PreparedRequest>> {
    if spec.groups == 0 || spec.question_len == 0 || spec.output_len == 0 {
        bail!("groups, question_len and output_len must each be at least 1");
    }
    let words = Words::new(tok)?;
    let Some(system_words) = spec
        .system_len
        .checked_sub(words.specials)
        .filter(|w| *w > 0)
    else {
        bail!(
            "system_prompt_len {} leaves no room for text after the tokenizer's {} special tokens",
            spec.system_len,
            words.specials
        );
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let systems: Vec<String> = (0..spec.groups)
        .map(|_| words.join(&words.draw(&mut rng, system_words)))
        .collect();
    // Balanced groups in a seeded order, so a group's requests are spread over the run.
    let mut group_of: Vec<usize> = (0..n).map(|i| i % systems.len()).collect();
    group_of.shuffle(&mut rng);
    let want = spec.system_len + spec.question_len;
    group_of
        .into_iter()
        .map(|g| {
            let prompt = format!(
                "{}{}",
                systems[g],
                words.join(&words.draw(&mut rng, spec.question_len))
            );
            words.verify(tok, &prompt, want)?;
            Ok(PreparedRequest {
                prompt,
                prompt_tokens: want,
                max_tokens: spec.output_len,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::dataset::test_support::tiny;
    use std::collections::BTreeMap;

    const SPEC: SharedPrefixSpec = SharedPrefixSpec {
        groups: 3,
        system_len: 200,
        question_len: 30,
        output_len: 8,
    };

    #[test]
    fn every_prompt_is_exactly_system_plus_question_tokens_and_groups_share_their_prefix() {
        let tok = tiny();
        let reqs = shared_prefix(&SPEC, 12, 5, &tok).unwrap();
        assert_eq!(reqs.len(), 12);
        let specials = tok.count("").unwrap();
        // Group the prompts by their first system-prompt tokens.
        let mut groups: BTreeMap<Vec<u32>, Vec<&PreparedRequest>> = BTreeMap::new();
        for r in &reqs {
            let ids = tok.encode(&r.prompt, true).unwrap();
            assert_eq!(ids.len(), 230, "{:?}", r.prompt);
            assert_eq!(r.prompt_tokens, 230);
            assert_eq!(r.max_tokens, 8);
            groups.entry(ids[..200].to_vec()).or_default().push(r);
        }
        assert_eq!(groups.len(), 3, "three distinct system prompts");
        for members in groups.values() {
            assert_eq!(members.len(), 4, "balanced groups");
            // The shared prefix is byte-identical too: the system text is the common start.
            let system_words = 200 - specials;
            let first = &members[0].prompt;
            let text_ids = tok.encode(first, false).unwrap();
            let system_bytes = tok.decode(&text_ids[..system_words]).unwrap().len();
            for m in members {
                assert_eq!(
                    m.prompt.as_bytes()[..system_bytes],
                    first.as_bytes()[..system_bytes]
                );
            }
            // Questions differ within a group.
            let questions: std::collections::HashSet<&str> =
                members.iter().map(|m| &m.prompt[system_bytes..]).collect();
            assert_eq!(questions.len(), members.len());
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_requests_and_another_seed_other_prefixes() {
        let tok = tiny();
        let a = shared_prefix(&SPEC, 6, 1, &tok).unwrap();
        assert_eq!(a, shared_prefix(&SPEC, 6, 1, &tok).unwrap());
        let b = shared_prefix(&SPEC, 6, 2, &tok).unwrap();
        let starts = |v: &[PreparedRequest]| -> std::collections::HashSet<String> {
            v.iter().map(|r| r.prompt[..40].to_owned()).collect()
        };
        assert!(starts(&a).is_disjoint(&starts(&b)));
    }

    #[test]
    fn a_system_prompt_with_no_room_for_text_is_an_error() {
        let tok = tiny();
        let specials = tok.count("").unwrap() as u64;
        let spec = SharedPrefixSpec {
            system_len: specials,
            ..SPEC
        };
        let e = shared_prefix(&spec, 2, 0, &tok).unwrap_err().to_string();
        assert!(e.contains("no room"), "{e}");
        let spec = SharedPrefixSpec { groups: 0, ..SPEC };
        assert!(shared_prefix(&spec, 2, 0, &tok).is_err());
    }
}
