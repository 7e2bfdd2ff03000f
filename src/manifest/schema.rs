//! The manifest's JSON Schema (draft-07, which Taplo / Even Better TOML understand), generated
//! from the types so it cannot drift; `schemas/experiment.schema.json` is a checked-in copy
//! kept fresh by a test.

use crate::cli::SchemaArgs;
use crate::error::{Error, Result};

use super::types::Manifest;

/// The schema as pretty JSON with a trailing newline.
pub fn schema_json() -> String {
    let settings = schemars::gen::SchemaSettings::draft07();
    let schema = settings.into_generator().into_root_schema_for::<Manifest>();
    let mut value = serde_json::to_value(&schema).expect("schema serialises");
    if let Some(obj) = value.as_object_mut() {
        obj.insert("title".into(), "vbench experiment manifest".into());
    }
    let mut out = serde_json::to_string_pretty(&value).expect("schema serialises");
    out.push('\n');
    out
}

pub fn run_schema(args: SchemaArgs) -> Result<()> {
    let json = if args.markdown {
        super::reference::markdown()
    } else {
        schema_json()
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
