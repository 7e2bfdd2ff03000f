//! How much of a cell's prompts a prefix cache could reuse, from the prompts themselves: the
//! number vbench sets beside what the servers' counters say they reused.
//!
//! vLLM's automatic prefix caching knows a full block of prompt tokens by a hash chained over
//! every token before it and its own, so two prompts share a cached block only when everything
//! up to its end is the same; a prompt that starts with cached blocks skips their prefill, but
//! its last token is always computed (its logits give the first output token), so a hit stops
//! a whole block short of a fully cached prompt. The simulator's prefix cache works the same
//! way, with these hashes.

use std::collections::HashSet;

use super::result::IdealReuse;

/// The hash of an empty token sequence, for [`chain`].
pub const CHAIN_START: u64 = 0xcbf2_9ce4_8422_2325;

/// The hash of a token sequence hashed `h`, extended by `id`: chained from [`CHAIN_START`] it
/// names everything up to a position.
pub fn chain(h: u64, id: u32) -> u64 {
    let h = (h ^ u64::from(id)).wrapping_mul(0x100_0000_01b3);
    h ^ (h >> 29)
}

/// Chained hashes of the full blocks of `ids` (a trailing partial block has none).
pub fn block_hashes(ids: &[u32], block_size: u32) -> Vec<u64> {
    let block = block_size.max(1) as usize;
    let mut h = CHAIN_START;
    ids.chunks_exact(block)
        .map(|chunk| {
            h = chunk.iter().fold(h, |h, &id| chain(h, id));
            h
        })
        .collect()
}

/// Leading blocks of a prompt of `prompt` tokens that a cache may serve: every full block
/// that ends before its last token.
pub fn cacheable_blocks(prompt: usize, block_size: u32) -> usize {
    prompt.saturating_sub(1) / block_size.max(1) as usize
}

/// What a prefix cache that never evicts would reuse of `prompts` (token ids, in the order they
/// reach the server), if each found every earlier prompt's blocks cached: an upper bound, met
/// when requests do not overlap and the cache holds them all.
pub fn ideal_reuse<'a>(
    prompts: impl IntoIterator<Item = &'a [u32]>,
    block_size: u32,
) -> IdealReuse {
    let mut cached: HashSet<u64> = HashSet::new();
    let (mut tokens, mut hits) = (0u64, 0u64);
    for ids in prompts {
        let hashes = block_hashes(ids, block_size);
        let usable = cacheable_blocks(ids.len(), block_size);
        let found = hashes
            .iter()
            .take(usable)
            .take_while(|h| cached.contains(h))
            .count();
        tokens += ids.len() as u64;
        hits += found as u64 * u64::from(block_size);
        cached.extend(hashes);
    }
    IdealReuse {
        block_size,
        prompt_tokens: tokens,
        hit_tokens: hits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_is_shared_only_when_everything_before_it_is() {
        let a: Vec<u32> = (0..48).collect();
        let mut b = a.clone();
        b[40] = 999; // third block differs
        let mut c = a.clone();
        c[0] = 999; // first block differs: nothing after it can match
        let (ha, hb, hc) = (
            block_hashes(&a, 16),
            block_hashes(&b, 16),
            block_hashes(&c, 16),
        );
        assert_eq!(ha.len(), 3);
        assert_eq!(ha[..2], hb[..2]);
        assert_ne!(ha[2], hb[2]);
        assert!(ha.iter().zip(&hc).all(|(x, y)| x != y));
        assert_eq!(
            block_hashes(&a[..47], 16).len(),
            2,
            "a partial block has no hash"
        );
    }

    #[test]
    fn ideal_reuse_counts_earlier_prompts_blocks_short_of_the_last_token() {
        let system: Vec<u32> = (1000..1064).collect(); // 4 blocks of 16
        let prompt = |q: u32| -> Vec<u32> {
            let mut p = system.clone();
            p.extend(q * 100..q * 100 + 20); // 20 own tokens: one more full block, and 4
            p
        };
        let (p1, p2, p3) = (prompt(1), prompt(2), prompt(3));
        // The first computes everything; the next two find the 4 system blocks (64 tokens).
        let r = ideal_reuse([&p1[..], &p2[..], &p3[..]], 16);
        assert_eq!((r.prompt_tokens, r.hit_tokens), (3 * 84, 2 * 64));
        // The same prompt twice: 64 tokens are 4 full blocks, but the last token is always
        // computed, so only 3 blocks are served.
        let r = ideal_reuse([&system[..], &system[..]], 16);
        assert_eq!(r.hit_tokens, 48);
        assert!((r.hit_share() - 48.0 / 128.0).abs() < 1e-12);
        // Nothing shared: nothing reused.
        let r = ideal_reuse([&p1[..], &(5000..5084).collect::<Vec<u32>>()[..]], 16);
        assert_eq!(r.hit_tokens, 0);
    }
}
