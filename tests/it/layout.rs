//! The source layout keeps the pipeline's direction: a stage may use the stages before it,
//! never one after it (README, "Layout"). Checked on the text of `src/`: every `crate::NAME`
//! path outside comments is an import of module NAME.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The pipeline, in order; `apply` drives it and `cmd` is the edge above everything. `error`,
/// `bounded_file` (reading files from outside with a bound) and `stats` (intervals) are its
/// foundations.
const ORDER: &[&str] = &[
    "error",
    "bounded_file",
    "stats",
    "manifest",
    "plan",
    "exec",
    "load",
    "results",
    "report",
    "apply",
    "cmd",
];
/// Beside the pipeline: the servers `apply` launches as processes. They may use these only.
/// `kv_notify` is a wire format both servers speak (LMCache's KV-ready notification).
const BESIDE: &[(&str, &[&str])] = &[
    (
        "sim",
        &["error", "bounded_file", "load", "manifest", "kv_notify"],
    ),
    ("proxy", &["error", "kv_notify"]),
    ("kv_notify", &[]),
];

/// Top-level module → the top-level modules its files name, with one file that does.
fn imports() -> BTreeMap<String, BTreeMap<String, String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap();
            let top = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or("");
                for (i, _) in code.match_indices("crate::") {
                    let name: String = code[i + 7..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != top {
                        out.entry(top.clone())
                            .or_default()
                            .entry(name)
                            .or_insert_with(|| rel.display().to_string());
                    }
                }
            }
        }
    }
    out
}

#[test]
fn no_stage_imports_a_later_one() {
    let graph = imports();
    let mut wrong = Vec::new();
    for (from, targets) in &graph {
        let allowed: BTreeSet<&str> = match ORDER.iter().position(|m| m == from) {
            // The edge runs every subcommand, the servers beside the pipeline included.
            Some(_) if from == "cmd" => continue,
            Some(i) => ORDER[..i].iter().copied().collect(),
            None => match BESIDE.iter().find(|(m, _)| m == from) {
                Some((_, ok)) => ok.iter().copied().collect(),
                // main.rs and lib.rs assemble everything.
                None if from == "main" || from == "lib" => continue,
                None => panic!("src/{from} is in neither the pipeline nor beside it"),
            },
        };
        for (to, file) in targets {
            // `crate::NAME` can also be an exported macro (`crate::path!`): modules only.
            let is_module = ORDER.contains(&to.as_str()) || BESIDE.iter().any(|(m, _)| m == to);
            if is_module && !allowed.contains(to.as_str()) {
                wrong.push(format!("{from} -> {to} (src/{file})"));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the pipeline: {wrong:#?}");
}

#[test]
fn the_manifest_imports_only_the_foundations() {
    let graph = imports();
    let manifest: Vec<&String> = graph["manifest"].keys().collect();
    assert_eq!(manifest, ["bounded_file", "error"]);
}

#[test]
fn only_the_command_layer_prints() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut printing = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(&src).unwrap().display().to_string();
            if path.is_dir() {
                if rel != "cmd" {
                    stack.push(path);
                }
                continue;
            }
            if rel == "main.rs" || path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            if ["println!", "eprintln!", "print!(", "eprint!("]
                .iter()
                .any(|m| text.contains(m))
            {
                printing.push(rel);
            }
        }
    }
    // The servers beside the pipeline log nothing themselves either: their commands do.
    assert!(printing.is_empty(), "printing outside cmd/: {printing:?}");
}
