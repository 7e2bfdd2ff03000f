//! JSON Schemas (draft-07, which Taplo / Even Better TOML understand), generated from the types
//! so they cannot drift: the manifest's (`schemas/experiment.schema.json`) here, and the rule
//! every output file's schema follows ([`output_schema`]), used by the owners of a result file
//! (`load::result`) and of summary.json (`report::summary`). The checked-in
//! copies are kept fresh by tests.

use serde_json::Value;

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

/// Output files are written from the types, so every key is always there (possibly `null`)
/// and there are no others: mark every property required, except those in
/// `may_be_absent` (keys left out by `skip_serializing_if`, as (type, key)), and close every object. (schemars leaves `Option` and
/// `#[serde(default)]` fields optional, which describes what is *read*, not what is written.)
pub fn output_schema(
    mut value: Value,
    title: &str,
    root_name: &str,
    may_be_absent: &[(&str, &str)],
) -> String {
    if let Some(defs) = value.get_mut("definitions").and_then(Value::as_object_mut) {
        for (name, def) in defs.iter_mut() {
            close_objects(def, name, may_be_absent);
        }
    }
    close_objects(&mut value, root_name, may_be_absent);
    if let Some(obj) = value.as_object_mut() {
        obj.insert("title".into(), title.into());
    }
    pretty(&value)
}

/// Walk the schema positions below `schema` (not `definitions`, handled by the caller).
fn close_objects(schema: &mut Value, type_name: &str, may_be_absent: &[(&str, &str)]) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        let required: Vec<Value> = props
            .keys()
            .filter(|k| !may_be_absent.contains(&(type_name, k.as_str())))
            .map(|k| Value::String(k.clone()))
            .collect();
        obj.insert("required".into(), Value::Array(required));
        obj.entry("additionalProperties")
            .or_insert(Value::Bool(false));
    }
    if let Some(props) = obj.get_mut("properties").and_then(Value::as_object_mut) {
        for sub in props.values_mut() {
            close_objects(sub, "", may_be_absent);
        }
    }
    for key in ["items", "additionalProperties"] {
        match obj.get_mut(key) {
            Some(Value::Array(list)) => list
                .iter_mut()
                .for_each(|s| close_objects(s, "", may_be_absent)),
            Some(sub) => close_objects(sub, "", may_be_absent),
            None => {}
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(list)) = obj.get_mut(key) {
            // Variants of an enum are the same type: its exemptions apply.
            list.iter_mut()
                .for_each(|s| close_objects(s, type_name, may_be_absent));
        }
    }
}

fn pretty(value: &Value) -> String {
    let mut out = serde_json::to_string_pretty(value).expect("schema serialises");
    out.push('\n');
    out
}
