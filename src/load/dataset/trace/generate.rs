//! Sample traces made by vbench (no downloads): Mooncake-format requests whose prompts reuse
//! shared prefixes in a chosen share, arriving as a Poisson process. Used by the tests, the
//! example manifests and anyone who wants a trace with known reuse.

use rand::{Rng, SeedableRng};

use super::TraceRecord;
use crate::load::schedule::{arrival_offsets, Arrival};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleTrace {
    pub requests: usize,
    /// Mean arrival rate, requests per second.
    pub rate: f64,
    /// Prompt tokens of every request.
    pub input_len: u64,
    pub output_len: u64,
    pub block_size: u64,
    /// Share of each prompt's whole blocks that is a shared prefix, 0 to 1.
    pub reuse: f64,
    /// Distinct shared prefixes the requests pick from (uniformly).
    pub prefixes: u64,
    pub seed: u64,
}

impl SampleTrace {
    /// Whole blocks of each prompt that come from a shared prefix.
    pub fn shared_blocks(&self) -> u64 {
        let whole = self.input_len / self.block_size;
        ((whole as f64) * self.reuse).round() as u64
    }

    /// The trace's records: request `i`'s hash ids are one of the shared prefixes' blocks
    /// followed by blocks of its own.
    pub fn records(&self) -> anyhow::Result<Vec<TraceRecord>> {
        anyhow::ensure!(
            self.block_size > 0 && self.input_len > 0 && self.output_len > 0,
            "block_size, input_len and output_len must be at least 1"
        );
        anyhow::ensure!(self.prefixes > 0, "prefixes must be at least 1");
        anyhow::ensure!(self.requests > 0, "requests must be at least 1");
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.reuse),
            "reuse {} must be a share from 0 to 1",
            self.reuse
        );
        anyhow::ensure!(
            self.rate.is_finite() && self.rate > 0.0,
            "rate {} must be a positive number of requests per second",
            self.rate
        );
        let offsets = arrival_offsets(self.requests, self.rate, Arrival::Poisson, self.seed)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        let blocks = self.input_len.div_ceil(self.block_size);
        let shared = self.shared_blocks();
        // Ids 0.. belong to the shared prefixes; every other block gets a fresh id after them.
        let mut next_id = self.prefixes * shared;
        let first = offsets.first().copied().unwrap_or(0.0);
        Ok(offsets
            .iter()
            .enumerate()
            .map(|(i, at)| {
                let prefix = rng.gen_range(0..self.prefixes);
                let mut hash_ids: Vec<u64> = (prefix * shared..(prefix + 1) * shared).collect();
                hash_ids.extend(next_id..next_id + (blocks - shared));
                next_id += blocks - shared;
                TraceRecord {
                    line: i + 1,
                    // Whole milliseconds, as the file stores them.
                    at_s: ((at - first) * 1000.0).round() / 1000.0,
                    input_len: self.input_len,
                    output_len: self.output_len,
                    hash_ids,
                }
            })
            .collect())
    }
}

/// The sample shipped as `tests/fixtures/traces/mooncake-sample.jsonl` (and used by
/// `experiments/sim-trace.toml`): 400 requests at 8 req/s, 1024-token prompts in 4 blocks of
/// 256, half of each prompt one of 4 shared prefixes.
pub fn shipped_sample() -> SampleTrace {
    SampleTrace {
        requests: 400,
        rate: 8.0,
        input_len: 1024,
        output_len: 32,
        block_size: 256,
        reuse: 0.5,
        prefixes: 4,
        seed: 0,
    }
}
