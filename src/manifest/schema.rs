//! JSON Schemas (draft-07, which Taplo / Even Better TOML understand), generated from the types
//! so they cannot drift: the manifest's (`schemas/experiment.schema.json`), a result file's
//! (`schemas/result.schema.json`) and the report's summary.json (`schemas/summary.schema.json`).
//! The checked-in copies are kept fresh by tests.

use serde_json::Value;

use crate::cli::{SchemaArgs, SchemaKind};
use crate::error::{Error, Result};

use super::types::Manifest;

/// The manifest's schema as pretty JSON with a trailing newline.
pub fn schema_json() -> String {
    let settings = schemars::gen::SchemaSettings::draft07();
    let schema = settings.into_generator().into_root_schema_for::<Manifest>();
    let mut value = serde_json::to_value(&schema).expect("schema serialises");
    if let Some(obj) = value.as_object_mut() {
        obj.insert("title".into(), "vbench experiment manifest".into());
    }
    pretty(&value)
}

/// The schema of one result file, `vllm-<rate>qps.json` ([`crate::results::RunResult`]).
pub fn result_schema_json() -> String {
    let schema = schemars::gen::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<crate::results::RunResult>();
    output_schema(
        serde_json::to_value(&schema).expect("schema serialises"),
        "vbench result file (vllm-<rate>qps.json)",
        "RunResult",
    )
}

/// The schema of the report's summary.json.
pub fn summary_schema_json() -> String {
    let schema = crate::report::summary::summary_schema(schemars::gen::SchemaSettings::draft07());
    output_schema(
        serde_json::to_value(&schema).expect("schema serialises"),
        "vbench report summary (summary.json)",
        "SummaryJson",
    )
}

/// Keys vbench may leave out of an output file (`skip_serializing_if`), as (type, key).
const MAY_BE_ABSENT: &[(&str, &str)] = &[("PointStats", "file_summary")];

/// Output files are written from the types, so every key is always there (possibly `null`)
/// and there are no others: mark every property required, except those in
/// [`MAY_BE_ABSENT`], and close every object. (schemars leaves `Option` and
/// `#[serde(default)]` fields optional, which describes what is *read*, not what is written.)
fn output_schema(mut value: Value, title: &str, root_name: &str) -> String {
    if let Some(defs) = value.get_mut("definitions").and_then(Value::as_object_mut) {
        for (name, def) in defs.iter_mut() {
            close_objects(def, name);
        }
    }
    close_objects(&mut value, root_name);
    if let Some(obj) = value.as_object_mut() {
        obj.insert("title".into(), title.into());
    }
    pretty(&value)
}

/// Walk the schema positions below `schema` (not `definitions`, handled by the caller).
fn close_objects(schema: &mut Value, type_name: &str) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        let required: Vec<Value> = props
            .keys()
            .filter(|k| !MAY_BE_ABSENT.contains(&(type_name, k.as_str())))
            .map(|k| Value::String(k.clone()))
            .collect();
        obj.insert("required".into(), Value::Array(required));
        obj.entry("additionalProperties")
            .or_insert(Value::Bool(false));
    }
    if let Some(props) = obj.get_mut("properties").and_then(Value::as_object_mut) {
        for sub in props.values_mut() {
            close_objects(sub, "");
        }
    }
    for key in ["items", "additionalProperties"] {
        match obj.get_mut(key) {
            Some(Value::Array(list)) => list.iter_mut().for_each(|s| close_objects(s, "")),
            Some(sub) => close_objects(sub, ""),
            None => {}
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(list)) = obj.get_mut(key) {
            // Variants of an enum are the same type: its exemptions apply.
            list.iter_mut().for_each(|s| close_objects(s, type_name));
        }
    }
}

fn pretty(value: &Value) -> String {
    let mut out = serde_json::to_string_pretty(value).expect("schema serialises");
    out.push('\n');
    out
}

pub fn run_schema(args: SchemaArgs) -> Result<()> {
    if args.markdown && args.kind != SchemaKind::Manifest {
        return Err(Error::bad_input(anyhow::anyhow!(
            "--markdown describes the manifest only; leave out --kind"
        )));
    }
    let json = match args.kind {
        SchemaKind::Manifest if args.markdown => super::reference::markdown(),
        SchemaKind::Manifest => schema_json(),
        SchemaKind::Result => result_schema_json(),
        SchemaKind::Summary => summary_schema_json(),
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
