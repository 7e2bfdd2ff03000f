//! The manifest reference in Markdown, generated from the JSON Schema (itself generated from
//! the types), so the README's reference cannot drift: a test compares them.

use serde_json::Value;

/// Tables documented in the reference: (TOML header, schema definition).
const SECTIONS: &[(&str, &str)] = &[
    ("[dataset]", "Dataset"),
    ("[load]", "Load"),
    ("[slo]", "Slo"),
    ("[target]", "Target"),
    ("[target.slurm]", "SlurmOptions"),
    ("[report]", "ReportOptions"),
    ("[[deployment]]", "Deployment"),
    ("deployment `prefill` / `decode`", "Role"),
    ("deployment `nixl`", "NixlOptions"),
    ("deployment `lmcache`", "LmcacheOptions"),
];

pub fn markdown() -> String {
    let schema: Value =
        serde_json::from_str(&super::schema::schema_json()).expect("schema is JSON");
    let defs = &schema["definitions"];
    let mut out = String::new();
    out.push_str("#### Top level\n\n");
    table(&mut out, &schema, defs);
    for (header, def) in SECTIONS {
        out.push_str(&format!("\n#### {header}\n\n"));
        table(&mut out, &defs[*def], defs);
    }
    out
}

fn table(out: &mut String, object: &Value, defs: &Value) {
    out.push_str("| key | type | default | description |\n|---|---|---|---|\n");
    let required: Vec<&str> = object["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(props) = object["properties"].as_object() {
        for (key, prop) in props {
            let default = match prop.get("default") {
                Some(Value::Null) | None if required.contains(&key.as_str()) => {
                    "required".to_owned()
                }
                Some(Value::Null) | None => "—".to_owned(),
                Some(Value::Object(_)) => "see below".to_owned(),
                Some(v) => format!("`{v}`"),
            };
            let description = prop["description"]
                .as_str()
                .unwrap_or("")
                .replace('\n', " ")
                .replace('|', "\\|");
            out.push_str(&format!(
                "| `{key}` | {} | {default} | {description} |\n",
                type_name(prop, defs).replace('|', "\\|")
            ));
        }
    }
}

fn type_name(prop: &Value, defs: &Value) -> String {
    if let Some(r) = prop["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or(r);
        return def_name(name, defs);
    }
    for key in ["allOf", "anyOf"] {
        if let Some(list) = prop[key].as_array() {
            let parts: Vec<String> = list
                .iter()
                .filter(|v| v["type"] != "null")
                .map(|v| type_name(v, defs))
                .collect();
            return parts.join(" or ");
        }
    }
    if let Some(values) = prop["enum"].as_array() {
        return values
            .iter()
            .map(|v| format!("`{v}`"))
            .collect::<Vec<_>>()
            .join(" or ");
    }
    match prop["type"].as_str() {
        Some("array") => format!("list of {}", type_name(&prop["items"], defs)),
        Some("object") => "table".to_owned(),
        Some(t) => t.to_owned(),
        None => match prop["type"].as_array() {
            Some(ts) => ts
                .iter()
                .filter(|t| *t != "null")
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" or "),
            None => "any".to_owned(),
        },
    }
}

fn def_name(name: &str, defs: &Value) -> String {
    if let Some(inner) = name.strip_prefix("OneOrMany_") {
        let one = match inner {
            "uint32" => "integer".to_owned(),
            "double" => "number".to_owned(),
            other => def_name(other, defs),
        };
        return format!("{one}, or a list (sweep)");
    }
    let def = &defs[name];
    if def["enum"].is_array() || def["anyOf"].is_array() {
        return type_name(def, defs);
    }
    "table".to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reference_documents_every_section_and_key() {
        let md = super::markdown();
        for needle in [
            "#### [load]",
            "| `rates` |",
            "| `ttft_ms` | number | `125.0` |",
            "| `tp` | integer, or a list (sweep) |",
        ] {
            assert!(md.contains(needle), "missing {needle:?} in\n{md}");
        }
    }
}
