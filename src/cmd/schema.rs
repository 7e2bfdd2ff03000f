//! `vbench schema`: the JSON Schema of the manifest, a result file or summary.json.

use std::path::PathBuf;

use crate::error::{Error, Result};

#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    /// Which file's schema: the manifest, a result file (`vllm-<rate>qps.json`) or the
    /// report's summary.json.
    #[arg(long, value_enum, default_value_t = SchemaKind::Manifest)]
    pub kind: SchemaKind,
    /// Write to this file instead of stdout.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Print the manifest reference as Markdown (the README's reference section) instead
    /// (manifest only).
    #[arg(long)]
    pub markdown: bool,
}

/// The files `vbench schema` describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaKind {
    /// The experiment manifest (`schemas/experiment.schema.json`).
    Manifest,
    /// One result file, `vllm-<rate>qps.json` (`schemas/result.schema.json`).
    Result,
    /// The report's summary.json (`schemas/summary.schema.json`).
    Summary,
}

pub fn run(args: SchemaArgs) -> Result<()> {
    if args.markdown && args.kind != SchemaKind::Manifest {
        return Err(Error::bad_input(anyhow::anyhow!(
            "--markdown describes the manifest only; leave out --kind"
        )));
    }
    let json = match args.kind {
        SchemaKind::Manifest if args.markdown => crate::manifest::reference::markdown(),
        SchemaKind::Manifest => crate::manifest::schema::schema_json(),
        SchemaKind::Result => crate::load::result::schema_json(),
        SchemaKind::Summary => crate::report::summary::schema_json(),
    };
    match args.out {
        Some(path) => std::fs::write(&path, json)
            .map_err(|e| Error::failed(anyhow::anyhow!("writing {}: {e}", path.display()))),
        None => {
            print!("{json}");
            Ok(())
        }
    }
}
