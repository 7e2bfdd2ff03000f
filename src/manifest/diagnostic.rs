//! Located manifest errors: every problem names file, line and column, says what is wrong and,
//! where it can, what would be right.

use std::ops::Range;

pub use crate::error::{ManifestError, Source};

impl ManifestError {
    /// Convert a TOML syntax or type error, adding a "did you mean" to unknown keys and values.
    pub fn from_toml(source: &Source, err: &toml::de::Error) -> Self {
        let message = err.message().trim().to_owned();
        let help = suggest_from_expected_list(&message);
        ManifestError::new(source, err.span(), message, help)
    }
}

/// serde writes "unknown field `tpp`, expected one of `mode`, `tp`" (and the same for
/// variants); turn that into "did you mean `tp`?" when one candidate is close.
fn suggest_from_expected_list(message: &str) -> Option<String> {
    let kind = if message.starts_with("unknown field") {
        "key"
    } else if message.starts_with("unknown variant") {
        "value"
    } else {
        return None;
    };
    let ticked: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    let (given, candidates) = ticked.split_first()?;
    match closest(given, candidates.iter().copied()) {
        Some(best) => Some(format!("did you mean `{best}`?")),
        None if !candidates.is_empty() => Some(format!(
            "valid {kind}s here: {}",
            candidates
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        None => None,
    }
}

/// The candidate closest to `given`, if it is close enough to be a plausible typo.
pub fn closest<'a>(given: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::jaro_winkler(given, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// One step of a path into the manifest: a key or an array index.
#[derive(Debug, Clone, PartialEq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl From<&str> for Seg {
    fn from(k: &str) -> Self {
        Seg::Key(k.to_owned())
    }
}

impl From<usize> for Seg {
    fn from(i: usize) -> Self {
        Seg::Index(i)
    }
}

/// Build a path: `path!["deployment", 1, "prefill", "tp"]`.
#[macro_export]
macro_rules! path {
    ($($seg:expr),* $(,)?) => { vec![$($crate::manifest::diagnostic::Seg::from($seg)),*] };
}

/// Byte span of the value at `path` in a TOML text; when the path ends early (a field left at
/// its default), the span of the deepest ancestor that exists, so errors still point nearby.
pub fn span_of(text: &str, path: &[Seg]) -> Option<Range<usize>> {
    let doc = toml_edit::ImDocument::parse(text.to_owned()).ok()?;
    let mut node = Node::Table(doc.as_table());
    let mut best = None;
    for seg in path {
        match node.child(seg) {
            Some((next, span)) => {
                best = span.or(best);
                node = next;
            }
            None => break,
        }
    }
    best
}

/// A position while walking a parsed TOML document.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a toml_edit::Item),
    Table(&'a toml_edit::Table),
    Value(&'a toml_edit::Value),
}

impl<'a> Node<'a> {
    fn child(&self, seg: &Seg) -> Option<(Node<'a>, Option<Range<usize>>)> {
        use toml_edit::{Item, Value};
        match (*self, seg) {
            (Node::Item(Item::Table(t)) | Node::Table(t), Seg::Key(k)) => {
                let (key, item) = t.get_key_value(k)?;
                Some((Node::Item(item), item.span().or_else(|| key.span())))
            }
            (Node::Item(Item::Value(v)) | Node::Value(v), _) => match (v, seg) {
                (Value::InlineTable(t), Seg::Key(k)) => {
                    let (key, item) = t.get_key_value(k)?;
                    Some((Node::Item(item), item.span().or_else(|| key.span())))
                }
                (Value::Array(a), Seg::Index(i)) => {
                    let v = a.get(*i)?;
                    Some((Node::Value(v), v.span()))
                }
                _ => None,
            },
            (Node::Item(Item::ArrayOfTables(a)), Seg::Index(i)) => {
                let t = a.get(*i)?;
                Some((Node::Table(t), t.span()))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "name = \"x\"\n[[deployment]]\nmode = \"simple\"\n\n[[deployment]]\nmode = \"nixl\"\nprefill = { instances = [1, 2], tp = 3 }\n";

    fn at(path: Vec<Seg>) -> String {
        let r = span_of(TEXT, &path).expect("span");
        TEXT[r].to_owned()
    }

    #[test]
    fn span_of_finds_values_inside_inline_tables_of_array_tables() {
        assert_eq!(at(path!["deployment", 1, "prefill", "tp"]), "3");
        assert_eq!(at(path!["deployment", 1, "prefill", "instances", 1]), "2");
        assert_eq!(at(path!["deployment", 0, "mode"]), "\"simple\"");
        assert_eq!(at(path!["name"]), "\"x\"");
    }

    #[test]
    fn span_of_missing_field_falls_back_to_nearest_ancestor() {
        let r = span_of(
            TEXT,
            &[
                Seg::from("deployment"),
                1.into(),
                "decode".into(),
                "tp".into(),
            ],
        )
        .unwrap();
        let (line, _) = Source::new("f", TEXT).line_col(r.start);
        assert_eq!(line, 5, "points at the second [[deployment]] table");
    }

    #[test]
    fn line_col_is_one_based_and_counts_characters() {
        let s = Source::new("f", "ab\ncé d");
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(3), (2, 1));
        assert_eq!(s.line_col(6), (2, 3));
    }

    #[test]
    fn unknown_field_gets_did_you_mean() {
        let help = suggest_from_expected_list(
            "unknown field `tpp`, expected one of `mode`, `tp`, `replicas`",
        );
        assert_eq!(help.as_deref(), Some("did you mean `tp`?"));
        let help = suggest_from_expected_list("unknown field `zzzz`, expected `mode` or `tp`");
        assert_eq!(help.as_deref(), Some("valid keys here: `mode`, `tp`"));
    }
}
