//! The manifest's JSON Schema.
use crate::cli::SchemaArgs;
use crate::error::{Error, Result};

pub fn run_schema(_args: SchemaArgs) -> Result<()> {
    Err(Error::not_implemented("schema"))
}
