//! No input may panic: random text, mutated real manifests and random `--set` overrides all
//! end in a plan or a located error.

use std::path::Path;

use proptest::prelude::*;
use vbench::manifest;
use vbench::plan::{self, Capacity};

fn experiments() -> Vec<String> {
    [
        "experiments/qwen-pd.toml",
        "experiments/sim-demo.toml",
        "experiments/cpu-tiny.toml",
    ]
    .iter()
    .map(|p| std::fs::read_to_string(p).unwrap())
    .collect()
}

/// Parse and plan; any outcome but a panic is fine, and an error must carry a location.
fn check(text: &str, sets: &[String]) {
    let cap = Capacity {
        absent: None,
        gpus: Some(4),
        cpu_cores: None,
        source: "fuzz".into(),
    };
    match manifest::load_str(Path::new("f.toml"), text, sets) {
        Ok(loaded) => match plan::resolve(&loaded, &cap) {
            Ok(p) => {
                let _ = plan::table::render(&p);
                let _ = serde_json::to_string(&p).unwrap();
            }
            Err(e) => assert!(e.location.starts_with("f.toml"), "{e}"),
        },
        Err(vbench::Error::Manifest(e)) => assert!(e.location.starts_with("f.toml"), "{e}"),
        Err(vbench::Error::BadInput(e)) => {
            assert!(!sets.is_empty(), "non-manifest error without --set: {e:#}")
        }
        Err(vbench::Error::Failed(e) | vbench::Error::Stopped(e)) => {
            panic!("parsing cannot fail or stop a run: {e:#}")
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, String),
    DuplicateLine(usize),
    DropLine(usize),
    SwapLines(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let tokens = prop::sample::select(vec![
        "[",
        "]",
        "{",
        "}",
        "=",
        "\"",
        ",",
        "\n",
        "-1",
        "0",
        "3",
        "1e400",
        "inf",
        "nan",
        "\"inf\"",
        "[[deployment]]",
        "mode = \"nixl\"",
        "tp = [1,3]",
        "x = 1",
        "é",
        "#",
        ".",
        "'",
        "\u{0}",
        "instances = []",
        "prefill = {}",
        "[slo]",
        "rates = [0.5, 0.5]",
    ]);
    prop_oneof![
        (any::<usize>(), 0usize..8).prop_map(|(a, n)| Mutation::Delete(a, n)),
        (any::<usize>(), tokens).prop_map(|(a, t)| Mutation::Insert(a, t.to_owned())),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        any::<usize>().prop_map(Mutation::DropLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    let boundary = |s: &str, i: usize| {
        let mut i = i % (s.len() + 1);
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let n = lines.len().max(1);
    match m {
        Mutation::Delete(at, len) => {
            let a = boundary(text, *at);
            let b = boundary(text, (a + len).min(text.len()));
            format!("{}{}", &text[..a], &text[b.max(a)..])
        }
        Mutation::Insert(at, t) => {
            let a = boundary(text, *at);
            format!("{}{t}{}", &text[..a], &text[a..])
        }
        Mutation::DuplicateLine(i) => {
            let l = lines[i % n].clone();
            lines.insert(i % n, l);
            lines.join("\n")
        }
        Mutation::DropLine(i) => {
            lines.remove(i % n);
            lines.join("\n")
        }
        Mutation::SwapLines(a, b) => {
            lines.swap(a % n, b % n);
            lines.join("\n")
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(text in "\\PC{0,200}") {
        check(&text, &[]);
    }

    #[test]
    fn mutated_experiments_never_panic(which in 0usize..3, muts in prop::collection::vec(mutation(), 1..6)) {
        let mut text = experiments()[which].clone();
        for m in &muts {
            text = apply(&text, m);
        }
        check(&text, &[]);
    }

    #[test]
    fn random_overrides_never_panic(
        which in 0usize..3,
        path in prop::sample::select(vec![
            "name", "load.rates", "load.rates.0", "deployment.0.tp", "deployment.1.prefill.instances",
            "deployment.9.tp", "slo", "slo.scales.3", "target.gpus", "deployment", "deployment.0",
            "dataset.kind", "a.b.c", "", ".", "deployment.x.tp", "load.rates.99",
        ]),
        value in prop::sample::select(vec![
            "1", "-1", "[1,2]", "[]", "\"x\"", "{ tp = 2 }", "inf", "\"inf\"", "3", "nixl", "=", "[[", "0.0", "1e999",
        ]),
    ) {
        let text = experiments()[which].clone();
        check(&text, &[format!("{path}={value}")]);
    }
}
