//! The CSV trace family: Azure's LLM inference traces (`TIMESTAMP,ContextTokens,
//! GeneratedTokens`, the timestamp a date and time such as `2023-11-16 18:15:46.6805900`) and
//! BurstGPT (`Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type`, the
//! timestamp in seconds from the trace's start). Columns are found by their header names;
//! other columns are ignored. Neither format records prefix sharing.

use super::{Parsed, TraceFormat, TraceRecord};

/// Where a format's columns are, from the file's header line.
pub(super) struct Header {
    format: TraceFormat,
    timestamp: usize,
    input: usize,
    output: usize,
    columns: usize,
}

/// The header names of (timestamp, input tokens, output tokens).
fn names(format: TraceFormat) -> [&'static str; 3] {
    match format {
        TraceFormat::Azure => ["TIMESTAMP", "ContextTokens", "GeneratedTokens"],
        TraceFormat::BurstGpt => ["Timestamp", "Request tokens", "Response tokens"],
        TraceFormat::Mooncake => unreachable!("mooncake traces are JSONL"),
    }
}

impl Header {
    pub fn parse(text: &str, format: TraceFormat) -> Result<Header, String> {
        let fields = split(text)?;
        let find = |name: &str| {
            fields.iter().position(|f| f == name).ok_or_else(|| {
                format!(
                    "not a {} trace: the header has no `{name}` column (it has {}); expected \
                     a header with {}",
                    format.name(),
                    fields.join(", "),
                    names(format).join(", ")
                )
            })
        };
        let [t, i, o] = names(format);
        Ok(Header {
            format,
            timestamp: find(t)?,
            input: find(i)?,
            output: find(o)?,
            columns: fields.len(),
        })
    }

    pub fn parse_row(&self, text: &str, line: usize) -> Result<Parsed, String> {
        let fields = split(text)?;
        if fields.len() != self.columns {
            return Err(format!(
                "{} fields where the header has {}",
                fields.len(),
                self.columns
            ));
        }
        let [t, i, o] = names(self.format);
        let tokens = |col: usize, name: &str| {
            fields[col].parse::<u64>().map_err(|_| {
                format!(
                    "field `{name}`: {:?} is not a non-negative integer",
                    fields[col]
                )
            })
        };
        let at_s = match self.format {
            TraceFormat::Azure => date_time_s(&fields[self.timestamp]).ok_or_else(|| {
                format!(
                    "field `{t}`: {:?} is not a date and time like 2023-11-16 18:15:46.6805900",
                    fields[self.timestamp]
                )
            })?,
            _ => fields[self.timestamp]
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| {
                    format!(
                        "field `{t}`: {:?} is not a non-negative number of seconds",
                        fields[self.timestamp]
                    )
                })?,
        };
        let input_len = tokens(self.input, i)?;
        let output_len = tokens(self.output, o)?;
        if input_len == 0 {
            return Ok(Parsed::Skip(Some("no prompt tokens")));
        }
        if output_len == 0 {
            return Ok(Parsed::Skip(Some(
                "no generated tokens (a failed request in the log)",
            )));
        }
        Ok(Parsed::Record(TraceRecord {
            line,
            at_s,
            input_len,
            output_len,
            hash_ids: Vec::new(),
        }))
    }
}

/// Seconds since the epoch of an Azure timestamp (optionally with a UTC offset).
fn date_time_s(s: &str) -> Option<f64> {
    let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .or_else(|| {
            ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%z"]
                .iter()
                .find_map(|f| chrono::DateTime::parse_from_str(s, f).ok())
                .map(|d| d.naive_utc())
        })?;
    let utc = naive.and_utc();
    Some(utc.timestamp() as f64 + f64::from(utc.timestamp_subsec_nanos()) * 1e-9)
}

/// The fields of one CSV line: comma-separated, trimmed, double quotes around a field allowed
/// (`""` inside quotes is a quote).
fn split(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted field is not closed".into()),
                }
            }
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                field.push(c);
                chars.next();
            }
        }
        fields.push(field.trim().to_owned());
        if chars.next().is_none() {
            return Ok(fields);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_split_on_commas_with_quotes_and_spaces() {
        assert_eq!(split("a, b ,c").unwrap(), ["a", "b", "c"]);
        assert_eq!(
            split("\"x, y\",\"say \"\"hi\"\"\",").unwrap(),
            ["x, y", "say \"hi\"", ""]
        );
        assert!(split("\"open").is_err());
    }

    #[test]
    fn azure_timestamps_parse_with_seven_digits_and_with_an_offset() {
        let a = date_time_s("2023-11-16 18:15:46.6805900").unwrap();
        let b = date_time_s("2023-11-16 18:15:47.1805900").unwrap();
        assert!((b - a - 0.5).abs() < 1e-6);
        let c = date_time_s("2024-05-10 00:00:00.009930+00:00").unwrap();
        let d = date_time_s("2024-05-10 00:00:01.009930+00:00").unwrap();
        assert!((d - c - 1.0).abs() < 1e-6);
        assert_eq!(date_time_s("yesterday"), None);
    }
}
