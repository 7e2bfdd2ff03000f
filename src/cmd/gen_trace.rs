//! `vbench gen-trace`: write a sample request trace in Mooncake's format, with a chosen share
//! of every prompt reused as a shared prefix, for trying `kind = "trace"` without downloading
//! a production trace.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::load::dataset::trace::{generate::SampleTrace, mooncake};

#[derive(Debug, clap::Args)]
pub struct GenTraceArgs {
    /// Where to write the trace (JSONL); an existing file is never overwritten.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Requests in the trace.
    #[arg(long, default_value_t = 400)]
    pub requests: usize,
    /// Mean arrival rate (Poisson), requests per second.
    #[arg(long, default_value_t = 8.0)]
    pub rate: f64,
    /// Prompt tokens of every request.
    #[arg(long, default_value_t = 1024)]
    pub input_len: u64,
    /// Output tokens of every request.
    #[arg(long, default_value_t = 32)]
    pub output_len: u64,
    /// Tokens per hash block (set the manifest's `block_size` to the same).
    #[arg(long, default_value_t = 512)]
    pub block_size: u64,
    /// Share of each prompt's whole blocks that is a shared prefix, 0 to 1.
    #[arg(long, default_value_t = 0.5)]
    pub reuse: f64,
    /// Distinct shared prefixes the requests pick from.
    #[arg(long, default_value_t = 4)]
    pub prefixes: u64,
    /// Seed of the arrivals and the prefix choices.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: GenTraceArgs) -> Result<()> {
    let sample = SampleTrace {
        requests: args.requests,
        rate: args.rate,
        input_len: args.input_len,
        output_len: args.output_len,
        block_size: args.block_size,
        reuse: args.reuse,
        prefixes: args.prefixes,
        seed: args.seed,
    };
    let records = sample.records().map_err(Error::bad_input)?;
    let text = mooncake::render(&records);
    crate::results::store::write_bytes_new(&args.out, text.as_bytes()).map_err(Error::bad_input)?;
    eprintln!(
        "wrote {}: {} requests, {} of each prompt's blocks shared among {} prefixes; replay it \
         with kind = \"trace\", format = \"mooncake\", block_size = {}",
        args.out.display(),
        records.len(),
        sample.shared_blocks(),
        sample.prefixes,
        sample.block_size
    );
    Ok(())
}
