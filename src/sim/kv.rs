//! KV cache capacity, counted in blocks (no contents: the simulator only needs occupancy).

/// Block accounting of one instance's KV cache.
#[derive(Debug, Clone)]
pub struct KvCache {
    block_size: u32,
    total: u64,
    used: u64,
}

impl KvCache {
    pub fn new(capacity_tokens: u64, block_size: u32) -> Self {
        let block_size = block_size.max(1);
        KvCache {
            block_size,
            total: (capacity_tokens / block_size as u64).max(1),
            used: 0,
        }
    }

    /// Blocks needed to hold `tokens` tokens.
    pub fn blocks_for(&self, tokens: u64) -> u64 {
        tokens.div_ceil(self.block_size as u64)
    }

    /// Take `n` blocks if they are free.
    pub fn try_alloc(&mut self, n: u64) -> bool {
        if self.used + n <= self.total {
            self.used += n;
            true
        } else {
            false
        }
    }

    pub fn free(&mut self, n: u64) {
        self.used = self.used.saturating_sub(n);
    }

    pub fn total_blocks(&self) -> u64 {
        self.total
    }

    pub fn used_blocks(&self) -> u64 {
        self.used
    }

    /// Fraction in use, 0..=1 (vLLM's kv_cache_usage_perc is a fraction too).
    pub fn usage(&self) -> f64 {
        self.used as f64 / self.total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_stops_at_capacity_and_free_returns_blocks() {
        let mut kv = KvCache::new(160, 16);
        assert_eq!(kv.total_blocks(), 10);
        assert_eq!(kv.blocks_for(17), 2);
        assert!(kv.try_alloc(8));
        assert!(!kv.try_alloc(3));
        kv.free(8);
        assert!(kv.try_alloc(10));
        assert!((kv.usage() - 1.0).abs() < 1e-12);
    }
}
