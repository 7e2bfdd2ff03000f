//! `--set path.to.field=value`: per-invocation overrides, the manifest-era replacement for the
//! original suite's environment variables (`NUM_PREFILL_INSTANCES=2 ./run_benchmark...`).
//!
//! Overrides edit the TOML document (keeping its formatting), so the result is parsed and
//! validated exactly like a file would be.

use std::str::FromStr;

use anyhow::{anyhow, bail};
use toml_edit::{DocumentMut, InlineTable, Item, Table, TableLike, Value};

use crate::error::{Error, Result};

/// Apply every `PATH=VALUE` to the manifest text and return the new text.
pub fn apply(text: &str, overrides: &[String]) -> Result<String> {
    let mut doc = DocumentMut::from_str(text).map_err(|e| Error::bad_input(anyhow!("{e}")))?;
    for raw in overrides {
        apply_one(&mut doc, raw).map_err(|e| {
            // Said whole unless it is long (a hostile one may be megabytes).
            let shown: String = raw.chars().take(200).collect();
            let cut = if shown.len() < raw.len() { "…" } else { "" };
            Error::bad_input(e.context(format!("in --set {shown}{cut}")))
        })?;
    }
    Ok(doc.to_string())
}

/// Keys of a path, at most (the manifest's deepest is four: `deployment.0.prefill.tp`); a
/// deeper one would only nest tables until the stack runs out.
const MAX_DEPTH: usize = 16;

fn apply_one(doc: &mut DocumentMut, raw: &str) -> anyhow::Result<()> {
    let Some((path, value)) = raw.split_once('=') else {
        bail!("expected PATH=VALUE, e.g. --set load.rates=[1,2,4]");
    };
    let segments: Vec<&str> = path.trim().split('.').collect();
    if segments.len() > MAX_DEPTH {
        bail!(
            "a path {} keys deep; a manifest's keys go at most {MAX_DEPTH} deep",
            segments.len()
        );
    }
    if segments.iter().any(|s| s.is_empty()) {
        bail!("empty key in path `{path}`; use dots between keys, e.g. slo.ttft_ms");
    }
    set_in_table(
        doc.as_table_mut(),
        false,
        &segments,
        parse_value(value.trim()),
        "",
    )
}

/// A VALUE is TOML (`2`, `[1, 2]`, `"x"`, `{ tp = 2 }`); anything else is taken as a string,
/// so `--set model=Qwen/Qwen3-8B` works without shell-quoting quotes.
fn parse_value(raw: &str) -> Value {
    Value::from_str(raw).unwrap_or_else(|_| Value::from(raw))
}

fn join(walked: &str, seg: &str) -> String {
    if walked.is_empty() {
        seg.to_owned()
    } else {
        format!("{walked}.{seg}")
    }
}

fn set_in_table(
    table: &mut dyn TableLike,
    inline: bool,
    segs: &[&str],
    value: Value,
    walked: &str,
) -> anyhow::Result<()> {
    let (seg, rest) = segs.split_first().expect("paths are non-empty");
    if seg.parse::<usize>().is_ok() {
        let here = if walked.is_empty() {
            "the top level"
        } else {
            walked
        };
        bail!("`{here}` is a table, not a list; `{seg}` cannot index it");
    }
    if rest.is_empty() {
        table.insert(seg, Item::Value(value));
        return Ok(());
    }
    if table.get(seg).is_none() {
        let fresh = if inline {
            Item::Value(Value::InlineTable(InlineTable::new()))
        } else {
            Item::Table(Table::new())
        };
        table.insert(seg, fresh);
    }
    let child = table.get_mut(seg).expect("present or just inserted");
    set_in_item(child, rest, value, &join(walked, seg))
}

fn set_in_item(item: &mut Item, segs: &[&str], value: Value, walked: &str) -> anyhow::Result<()> {
    let (seg, rest) = segs.split_first().expect("paths are non-empty");
    let Ok(index) = seg.parse::<usize>() else {
        return match item {
            Item::Table(t) => set_in_table(t, false, segs, value, walked),
            Item::Value(Value::InlineTable(t)) => set_in_table(t, true, segs, value, walked),
            _ => bail!("`{walked}` is not a table; cannot set `{seg}` inside it"),
        };
    };
    match item {
        Item::ArrayOfTables(arr) => {
            let len = arr.len();
            let table = arr
                .get_mut(index)
                .ok_or_else(|| out_of_range(walked, len, index))?;
            if rest.is_empty() {
                bail!("`{walked}.{index}` is a whole table; set one of its fields instead");
            }
            set_in_table(table, false, rest, value, &join(walked, seg))
        }
        Item::Value(Value::Array(arr)) => {
            let len = arr.len();
            let slot = arr
                .get_mut(index)
                .ok_or_else(|| out_of_range(walked, len, index))?;
            match (rest.is_empty(), slot) {
                (true, slot) => {
                    *slot = value;
                    Ok(())
                }
                (false, Value::InlineTable(t)) => {
                    set_in_table(t, true, rest, value, &join(walked, seg))
                }
                (false, _) => bail!("`{walked}.{index}` is not a table"),
            }
        }
        _ => bail!("`{walked}` is not a list; `{seg}` cannot index it"),
    }
}

fn out_of_range(walked: &str, len: usize, index: usize) -> anyhow::Error {
    if len == 0 {
        anyhow!("`{walked}` is empty; there is no index {index}")
    } else {
        anyhow!(
            "`{walked}` has {len} entries (indices 0..={}); there is no index {index}",
            len - 1
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "name = \"x\"\n\n[load]\nrates = [1, 2]\n\n[[deployment]]\nmode = \"simple\"\n\n[[deployment]]\nmode = \"nixl\"\nprefill = { instances = 1 }\n";

    fn set(overrides: &[&str]) -> String {
        let owned: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        apply(BASE, &owned).map_err(|e| e.to_string()).unwrap()
    }

    fn err(o: &str) -> String {
        apply(BASE, &[o.to_owned()]).unwrap_err().to_string()
    }

    #[test]
    fn sets_scalars_lists_and_nested_inline_fields() {
        let out = set(&[
            "load.rates=[4, 8]",
            "deployment.1.prefill.instances=2",
            "deployment.0.tp=[1,2]",
        ]);
        let v: toml::Value = toml::from_str(&out).unwrap();
        assert_eq!(v["load"]["rates"].as_array().unwrap().len(), 2);
        assert_eq!(v["load"]["rates"][1].as_integer(), Some(8));
        assert_eq!(
            v["deployment"][1]["prefill"]["instances"].as_integer(),
            Some(2)
        );
        assert_eq!(v["deployment"][0]["tp"][1].as_integer(), Some(2));
    }

    #[test]
    fn creates_missing_tables_and_takes_bare_words_as_strings() {
        let out = set(&[
            "slo.ttft_ms=100",
            "model=Qwen/Qwen3-8B",
            "deployment.1.decode.tp=2",
        ]);
        let v: toml::Value = toml::from_str(&out).unwrap();
        assert_eq!(v["slo"]["ttft_ms"].as_integer(), Some(100));
        assert_eq!(v["model"].as_str(), Some("Qwen/Qwen3-8B"));
        assert_eq!(v["deployment"][1]["decode"]["tp"].as_integer(), Some(2));
    }

    #[test]
    fn keeps_untouched_formatting() {
        let out = set(&["name=y"]);
        assert!(out.contains("prefill = { instances = 1 }"), "{out}");
    }

    #[test]
    fn bad_overrides_say_what_is_wrong() {
        assert!(err("load.rates").contains("expected PATH=VALUE"));
        assert!(
            err("deployment.5.tp=1").contains("has 2 entries (indices 0..=1); there is no index 5")
        );
        assert!(err("name.x=1").contains("`name` is not a table"));
        assert!(err("load..rates=1").contains("empty key"));
        let deep = format!("{}b=1", "k.".repeat(2000));
        assert!(err(&deep).contains("a path 2001 keys deep"));
        assert!(err("load.rates.7=1").contains("no index 7"));
        assert!(err("deployment.0=1").contains("whole table"));
        assert!(err("deployment.9.tp=1").starts_with("in --set deployment.9.tp=1: "));
    }
}
