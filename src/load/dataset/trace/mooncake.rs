//! Mooncake's trace format (the FAST'25 traces; also read by AIPerf and vLLM): one JSON object
//! per line, `{"timestamp": 27482, "input_length": 6955, "output_length": 52, "hash_ids": [46,
//! 47, ...]}`. `timestamp` is the arrival in milliseconds; each hash id names one block of
//! `block_size` prompt tokens (512 in Mooncake's traces), the last block possibly partial, and
//! requests that share leading hash ids share those prompt tokens.

use std::fmt::Write;
use std::path::Path;

use anyhow::Context;
use serde_json::{Map, Value};

use super::{Parsed, TraceRecord};

/// One line, or why it is not a record (the error names the field).
pub(super) fn parse_line(text: &str, line: usize) -> Result<Parsed, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "column {}: {e}; each line must be a JSON object like {{\"timestamp\": 0, \
             \"input_length\": 655, \"output_length\": 52, \"hash_ids\": [46, 47]}}",
            e.column()
        )
    })?;
    let Value::Object(obj) = value else {
        return Err("not a JSON object".into());
    };
    let timestamp_ms = number(&obj, "timestamp")?;
    let input_len = count(&obj, "input_length")?;
    let output_len = count(&obj, "output_length")?;
    let hash_ids = match obj.get("hash_ids") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(ids)) => ids
            .iter()
            .map(|v| {
                v.as_u64().ok_or_else(|| {
                    format!("field `hash_ids`: {v} is not a non-negative integer block id")
                })
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("field `hash_ids`: {other} is not a list of ids")),
    };
    if input_len == 0 {
        return Ok(Parsed::Skip(Some("input_length 0 (no prompt)")));
    }
    if output_len == 0 {
        return Ok(Parsed::Skip(Some("output_length 0 (nothing to generate)")));
    }
    Ok(Parsed::Record(TraceRecord {
        line,
        at_s: timestamp_ms / 1000.0,
        input_len,
        output_len,
        hash_ids,
    }))
}

fn number(obj: &Map<String, Value>, field: &str) -> Result<f64, String> {
    match obj.get(field) {
        None => Err(format!("field `{field}` is missing")),
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .ok_or_else(|| format!("field `{field}`: {v} is not a non-negative number")),
    }
}

fn count(obj: &Map<String, Value>, field: &str) -> Result<u64, String> {
    match obj.get(field) {
        None => Err(format!("field `{field}` is missing")),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| format!("field `{field}`: {v} is not a non-negative integer")),
    }
}

/// Write records as a Mooncake trace file.
pub fn write(path: &Path, records: &[TraceRecord]) -> anyhow::Result<()> {
    std::fs::write(path, render(records))
        .with_context(|| format!("writing trace {}", path.display()))
}

/// Records as Mooncake trace text (timestamps rounded to whole milliseconds, as Mooncake's).
pub fn render(records: &[TraceRecord]) -> String {
    let mut out = String::new();
    for r in records {
        // Mooncake's own key order.
        let _ = writeln!(
            out,
            "{{\"timestamp\": {}, \"input_length\": {}, \"output_length\": {}, \"hash_ids\": {}}}",
            (r.at_s * 1000.0).round() as u64,
            r.input_len,
            r.output_len,
            serde_json::to_string(&r.hash_ids).expect("a list of integers serialises")
        );
    }
    out
}
