//! `OneOrMany<T>`: a manifest value that is either one value or a list of them.
//! A list makes the field a sweep axis of the planner.

use schemars::gen::SchemaGenerator;
use schemars::schema::{ArrayValidation, InstanceType, Schema, SchemaObject, SubschemaValidation};
use schemars::JsonSchema;
use serde::de::{DeserializeOwned, IntoDeserializer};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One value, or a non-empty list of values to sweep over.
#[derive(Debug, Clone, PartialEq)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<T> OneOrMany<T> {
    pub fn one(value: T) -> Self {
        OneOrMany(vec![value])
    }

    pub fn values(&self) -> &[T] {
        &self.0
    }

    pub fn is_sweep(&self) -> bool {
        self.0.len() > 1
    }
}

impl<T: Serialize> Serialize for OneOrMany<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Dispatch on the shape of the input so that the error for a bad scalar comes from
        // `T` itself ("invalid type: string, expected u32"), not a vague "no variant matched".
        fn one<T: DeserializeOwned, V, E>(v: V) -> Result<OneOrMany<T>, E>
        where
            V: for<'a> IntoDeserializer<'a, E>,
            E: serde::de::Error,
        {
            T::deserialize(v.into_deserializer()).map(OneOrMany::one)
        }
        serde_untagged::UntaggedEnumVisitor::new()
            .expecting("a value or a list of values")
            .bool(|v| one(v))
            .i64(|v| one(v))
            .u64(|v| one(v))
            .f64(|v| one(v))
            .string(|v| one(v.to_owned()))
            .seq(|seq| {
                let values: Vec<T> = seq.deserialize()?;
                if values.is_empty() {
                    return Err(serde::de::Error::custom(
                        "empty list: give at least one value (a list sweeps over its values)",
                    ));
                }
                Ok(OneOrMany(values))
            })
            .deserialize(d)
    }
}

impl<T: JsonSchema> JsonSchema for OneOrMany<T> {
    fn schema_name() -> String {
        format!("OneOrMany_{}", T::schema_name())
    }

    fn json_schema(gen: &mut SchemaGenerator) -> Schema {
        let item = gen.subschema_for::<T>();
        let list = SchemaObject {
            instance_type: Some(InstanceType::Array.into()),
            array: Some(Box::new(ArrayValidation {
                items: Some(item.clone().into()),
                min_items: Some(1),
                ..Default::default()
            })),
            ..Default::default()
        };
        SchemaObject {
            subschemas: Some(Box::new(SubschemaValidation {
                any_of: Some(vec![item, list.into()]),
                ..Default::default()
            })),
            ..Default::default()
        }
        .into()
    }
}
