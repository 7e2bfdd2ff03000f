//! Every string in a manifest may end up as one argument of a command line or one environment
//! value (the launch templates put one argument per line and trim each line). A control
//! character (a newline above all) could split one value into several arguments, and
//! surrounding whitespace would be dropped silently, so both are located errors here, before
//! anything is planned or launched.

use super::diagnostic::{span_of, Seg};
use super::{ManifestError, Source};

/// The first string (value or key) in `source` with a control character or surrounding
/// whitespace, as a located error. `description` is free text and exempt.
pub fn check(source: &Source) -> Result<(), ManifestError> {
    let Ok(value) = source.text.parse::<toml::Table>() else {
        // Syntax errors are reported by the parser, with their own location.
        return Ok(());
    };
    let mut path = Vec::new();
    for (k, v) in &value {
        if k == "description" {
            continue;
        }
        path.push(Seg::Key(k.clone()));
        walk(source, k, v, &mut path)?;
        path.pop();
    }
    Ok(())
}

fn walk(
    source: &Source,
    key: &str,
    value: &toml::Value,
    path: &mut Vec<Seg>,
) -> Result<(), ManifestError> {
    check_one(source, path, key, "key")?;
    match value {
        toml::Value::String(s) => check_one(source, path, s, "value"),
        toml::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Seg::Index(i));
                let r = walk(source, key, item, path);
                path.pop();
                r?;
            }
            Ok(())
        }
        toml::Value::Table(t) => {
            for (k, v) in t {
                path.push(Seg::Key(k.clone()));
                let r = walk(source, k, v, path);
                path.pop();
                r?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check_one(source: &Source, path: &[Seg], s: &str, what: &str) -> Result<(), ManifestError> {
    let located = |message: String, help: &str| {
        ManifestError::new(
            source,
            span_of(&source.text, path),
            message,
            Some(help.to_owned()),
        )
    };
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(located(
            format!(
                "this {what} contains the control character U+{:04X}",
                c as u32
            ),
            "a value here becomes one command-line argument or environment value, where a \
             newline or other control character would split or change the command; remove it",
        ));
    }
    if s.trim() != s {
        return Err(located(
            format!("this {what} has leading or trailing whitespace: {s:?}"),
            "the launch templates trim every argument, so the spaces would be dropped silently; \
             remove them",
        ));
    }
    Ok(())
}
