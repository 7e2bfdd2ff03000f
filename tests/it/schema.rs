//! The checked-in JSON Schemas must match the types, and every shipped manifest must follow
//! the manifest's. (That real result files and summaries follow theirs: `output_schemas.rs`.)

#[test]
fn checked_in_schema_is_up_to_date() {
    let fresh = vbench::manifest::schema::schema_json();
    let on_disk = std::fs::read_to_string("schemas/experiment.schema.json").unwrap_or_default();
    assert!(
        fresh == on_disk,
        "schemas/experiment.schema.json is stale: run `cargo run -- schema -o schemas/experiment.schema.json`"
    );
}

#[test]
fn checked_in_result_schema_is_up_to_date() {
    let fresh = vbench::load::result::schema_json();
    let on_disk = std::fs::read_to_string("schemas/result.schema.json").unwrap_or_default();
    assert!(
        fresh == on_disk,
        "schemas/result.schema.json is stale: run `cargo run -- schema --kind result -o schemas/result.schema.json`"
    );
}

#[test]
fn checked_in_summary_schema_is_up_to_date() {
    let fresh = vbench::report::summary::schema_json();
    let on_disk = std::fs::read_to_string("schemas/summary.schema.json").unwrap_or_default();
    assert!(
        fresh == on_disk,
        "schemas/summary.schema.json is stale: run `cargo run -- schema --kind summary -o schemas/summary.schema.json`"
    );
}

#[test]
fn schema_is_draft_07_and_closed() {
    let v: serde_json::Value =
        serde_json::from_str(&vbench::manifest::schema::schema_json()).unwrap();
    assert_eq!(v["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(
        v["additionalProperties"], false,
        "unknown top-level keys are errors"
    );
    assert!(v["properties"]["load"]["description"]
        .as_str()
        .unwrap()
        .contains("rates"));
}

#[test]
fn every_experiment_declares_the_schema_on_its_first_line() {
    let mut seen = 0;
    for entry in std::fs::read_dir("experiments").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(
                text.lines().next(),
                Some("#:schema ../schemas/experiment.schema.json"),
                "{}",
                path.display()
            );
            seen += 1;
        }
    }
    assert!(seen >= 3);
}

#[test]
fn starter_manifest_from_init_plans() {
    let text = vbench::manifest::starter("demo");
    assert!(text.starts_with("#:schema ../schemas/experiment.schema.json\n"));
    let loaded =
        vbench::manifest::load_str(std::path::Path::new("experiments/demo.toml"), &text, &[])
            .unwrap();
    let cap = vbench::plan::capacity::discover(
        &loaded.manifest.target,
        &vbench::exec::gpus::NvidiaSmiProbe,
    );
    let p = vbench::plan::resolve(&loaded, &cap).unwrap();
    assert_eq!(p.experiment, "demo");
    assert_eq!(p.variants.len(), 4);
}

#[test]
fn readme_reference_matches_the_schema() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let start = readme
        .find("<!-- reference:start -->\n")
        .expect("start marker")
        + "<!-- reference:start -->\n".len();
    let end = readme.find("<!-- reference:end -->").expect("end marker");
    assert!(
        readme[start..end] == vbench::manifest::reference::markdown(),
        "README's manifest reference is stale: replace it with `cargo run -- schema --markdown`"
    );
}

/// The README's batch script is `examples/slurm/run.sh` (which a Slurm test runs) without its
/// comments.
#[test]
fn readme_sbatch_script_is_the_example() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let shown = readme
        .split("```bash\n")
        .find(|block| block.contains("#SBATCH"))
        .and_then(|block| block.split("```").next())
        .expect("README shows a batch script");
    let example = std::fs::read_to_string("examples/slurm/run.sh").unwrap();
    let code: String = example
        .lines()
        .filter(|l| !l.starts_with("# ") && *l != "#")
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        shown, code,
        "README's batch script differs from examples/slurm/run.sh"
    );
}
