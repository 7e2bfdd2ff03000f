//! vLLM's automatic prefix caching, by block hashes: a full block of prompt tokens is known by
//! a hash chained over every token before it and its own, so two prompts share a cached block
//! only when everything up to its end is the same. A block stays cached after its request is
//! done (least recently used first out, up to the KV capacity in blocks), and a prompt that
//! starts with cached blocks skips their prefill. Like vLLM, at least the prompt's last token
//! is always computed (its logits give the first output token), so a hit stops a whole block
//! short of a fully cached prompt.
//!
//! Simplification: cached blocks do not count against the KV blocks requests reserve (vLLM
//! evicts a free cached block when it needs the space; the simulator reserves as if every
//! block were new, so a hit never makes it admit more).

use std::collections::{BTreeMap, HashMap};

// The hashes are the load side's too: vbench computes the ideal reuse of a cell's prompts
// with the same blocks.
pub use crate::load::cache_reuse::block_hashes;
use crate::load::cache_reuse::cacheable_blocks;

/// The cached blocks of one instance, least recently used first out.
#[derive(Debug, Default)]
pub struct PrefixCache {
    capacity: usize,
    /// Block hash → the tick it was last used.
    last_used: HashMap<u64, u64>,
    /// Tick → block hash, oldest first.
    by_age: BTreeMap<u64, u64>,
    tick: u64,
}

impl PrefixCache {
    pub fn new(capacity_blocks: u64) -> Self {
        PrefixCache {
            capacity: capacity_blocks as usize,
            ..PrefixCache::default()
        }
    }

    /// Prompt tokens already cached for a prompt of `prompt` tokens with these block hashes:
    /// its leading cached blocks, short of its last token. The blocks found are used again.
    pub fn hit_tokens(&mut self, hashes: &[u64], prompt: u32, block_size: u32) -> u32 {
        let usable = cacheable_blocks(prompt as usize, block_size);
        let hits = hashes
            .iter()
            .take(usable)
            .take_while(|h| self.last_used.contains_key(h))
            .count();
        for h in &hashes[..hits] {
            self.touch(*h);
        }
        hits as u32 * block_size
    }

    /// Cache the blocks of a prompt that has been computed.
    pub fn insert(&mut self, hashes: &[u64]) {
        for h in hashes {
            self.touch(*h);
        }
        while self.last_used.len() > self.capacity {
            let Some((_, old)) = self.by_age.pop_first() else {
                break;
            };
            self.last_used.remove(&old);
        }
    }

    pub fn len(&self) -> usize {
        self.last_used.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last_used.is_empty()
    }

    fn touch(&mut self, h: u64) {
        self.tick += 1;
        if let Some(old) = self.last_used.insert(h, self.tick) {
            self.by_age.remove(&old);
        }
        self.by_age.insert(self.tick, h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_are_leading_cached_blocks_short_of_the_last_token() {
        let mut c = PrefixCache::new(100);
        let ids: Vec<u32> = (0..64).collect();
        let h = block_hashes(&ids, 16);
        assert_eq!(c.hit_tokens(&h, 64, 16), 0);
        c.insert(&h);
        // All 4 blocks cached, but the last token is computed: 3 blocks hit.
        assert_eq!(c.hit_tokens(&h, 64, 16), 48);
        // A longer prompt with the same start hits all 4.
        let longer: Vec<u32> = (0..70).collect();
        assert_eq!(c.hit_tokens(&block_hashes(&longer, 16), 70, 16), 64);
        // A prompt that differs in its first block hits nothing.
        let other: Vec<u32> = (1..71).collect();
        assert_eq!(c.hit_tokens(&block_hashes(&other, 16), 70, 16), 0);
    }

    #[test]
    fn the_least_recently_used_blocks_leave_first() {
        let mut c = PrefixCache::new(4);
        let a = block_hashes(&(0..32).collect::<Vec<_>>(), 16);
        let b = block_hashes(&(100..132).collect::<Vec<_>>(), 16);
        let d = block_hashes(&(200..232).collect::<Vec<_>>(), 16);
        c.insert(&a);
        c.insert(&b);
        assert_eq!(
            c.hit_tokens(&a, 33, 16),
            32,
            "a used again: b is now the oldest"
        );
        c.insert(&d);
        assert_eq!(c.len(), 4);
        assert_eq!(c.hit_tokens(&b, 33, 16), 0);
        assert_eq!(c.hit_tokens(&a, 33, 16), 32);
        assert_eq!(c.hit_tokens(&d, 33, 16), 32);
    }
}
