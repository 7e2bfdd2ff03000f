//! An environment value in a manifest: a literal string, or `{ env = "NAME" }`, a reference
//! to vbench's own environment. A reference is resolved when a process is launched and its
//! value is never written anywhere (plan, deployment record, logs of vbench), so a token can
//! stay in the shell instead of in a file that is meant for git.

use std::collections::BTreeMap;

use schemars::gen::SchemaGenerator;
use schemars::schema::{InstanceType, ObjectValidation, Schema, SchemaObject, SubschemaValidation};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Environment variables of a process, by name.
pub type EnvMap = BTreeMap<String, EnvValue>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EnvValue {
    /// Written in the manifest.
    Literal(String),
    /// Taken from vbench's environment at launch: the variable's name there.
    FromEnv(String),
}

impl EnvValue {
    /// The manifest's own value, when it wrote one.
    pub fn literal(&self) -> Option<&str> {
        match self {
            EnvValue::Literal(v) => Some(v),
            EnvValue::FromEnv(_) => None,
        }
    }

    /// The variable of vbench's environment this value comes from, when it is a reference.
    pub fn source_var(&self) -> Option<&str> {
        match self {
            EnvValue::Literal(_) => None,
            EnvValue::FromEnv(name) => Some(name),
        }
    }
}

impl From<&str> for EnvValue {
    fn from(v: &str) -> Self {
        EnvValue::Literal(v.to_owned())
    }
}

/// A variable name a shell and `execve` agree on.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Serialize for EnvValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            EnvValue::Literal(v) => v.serialize(s),
            EnvValue::FromEnv(name) => {
                let mut one = BTreeMap::new();
                one.insert("env", name);
                one.serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Reference {
            env: String,
        }
        serde_untagged::UntaggedEnumVisitor::new()
            .expecting(
                r#"a string, or { env = "NAME" } to take the value from vbench's environment"#,
            )
            .string(|v| Ok(EnvValue::Literal(v.to_owned())))
            .map(|map| {
                let r: Reference = map.deserialize()?;
                if !valid_name(&r.env) {
                    return Err(serde::de::Error::custom(format!(
                        "{:?} is not an environment variable name (letters, digits and _, not \
                         starting with a digit)",
                        r.env
                    )));
                }
                Ok(EnvValue::FromEnv(r.env))
            })
            .deserialize(d)
    }
}

impl JsonSchema for EnvValue {
    fn schema_name() -> String {
        "EnvValue".to_owned()
    }

    fn json_schema(gen: &mut SchemaGenerator) -> Schema {
        let mut reference = ObjectValidation::default();
        reference
            .properties
            .insert("env".to_owned(), gen.subschema_for::<String>());
        reference.required.insert("env".to_owned());
        reference.additional_properties = Some(Box::new(false.into()));
        let reference = SchemaObject {
            instance_type: Some(InstanceType::Object.into()),
            object: Some(Box::new(reference)),
            ..Default::default()
        };
        SchemaObject {
            subschemas: Some(Box::new(SubschemaValidation {
                one_of: Some(vec![gen.subschema_for::<String>(), reference.into()]),
                ..Default::default()
            })),
            ..Default::default()
        }
        .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Serialize)]
    struct T {
        env: EnvMap,
    }

    #[test]
    fn a_literal_or_a_reference_round_trips_and_a_bad_name_is_refused() {
        let t: T =
            toml::from_str("env = { A = \"1\", HF_TOKEN = { env = \"MY_TOKEN\" } }").unwrap();
        assert_eq!(t.env["A"], EnvValue::Literal("1".into()));
        assert_eq!(t.env["HF_TOKEN"].source_var(), Some("MY_TOKEN"));
        let back = serde_json::to_value(&t).unwrap();
        assert_eq!(
            back["env"]["HF_TOKEN"],
            serde_json::json!({"env": "MY_TOKEN"})
        );
        for bad in [
            "env = { A = { env = \"1X\" } }",
            "env = { A = { env = \"\" } }",
            "env = { A = { name = \"X\" } }",
            "env = { A = 3 }",
        ] {
            assert!(toml::from_str::<T>(bad).is_err(), "{bad}");
        }
    }
}
