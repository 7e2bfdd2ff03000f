//! The real binary: exit codes (0 ok, 1 run failed, 2 bad input), messages on stderr,
//! machine-readable output on stdout.

use assert_cmd::Command;
use predicates::prelude::*;

fn vbench() -> Command {
    let mut c = Command::cargo_bin("vbench").unwrap();
    c.env("NO_COLOR", "1");
    c
}

#[test]
fn validate_accepts_every_shipped_experiment() {
    let mut shipped: Vec<String> = std::fs::read_dir("experiments")
        .unwrap()
        .flatten()
        .map(|e| e.path().display().to_string())
        .filter(|p| p.ends_with(".toml"))
        .collect();
    shipped.sort();
    assert!(shipped.len() >= 7, "{shipped:?}");
    for m in &shipped {
        vbench()
            .args(["validate", m])
            .assert()
            .success()
            .stdout(predicate::str::contains(": valid ("));
    }
}

#[test]
fn bad_manifest_exits_2_with_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let text = std::fs::read_to_string("experiments/sim-demo.toml")
        .unwrap()
        .replace("tp = [1, 2]", "tp = [1, 3]");
    std::fs::write(&path, text).unwrap();
    vbench()
        .args(["validate", path.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "bad.toml:36:10: tp = 3 is not a valid tensor-parallel size",
        ))
        .stderr(predicate::str::contains(
            "help: vLLM splits attention heads",
        ));
}

#[test]
fn missing_manifest_exits_2() {
    vbench()
        .args(["plan", "no/such/file.toml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "manifest no/such/file.toml: cannot read",
        ));
}

/// A manifest that is a device or a FIFO would block or never end: refused by name at once.
#[test]
fn a_manifest_that_is_not_a_regular_file_is_refused_without_reading_it() {
    vbench()
        .args(["validate", "/dev/zero"])
        .timeout(std::time::Duration::from_secs(20))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "manifest /dev/zero: not a regular file (a device)",
        ));
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("m.toml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path in our own temp folder.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    vbench()
        .args(["plan", fifo.to_str().unwrap()])
        .timeout(std::time::Duration::from_secs(20))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "m.toml: not a regular file (a FIFO)",
        ));
}

#[test]
fn plan_json_is_json_with_all_cells() {
    let out = vbench()
        .args(["plan", "experiments/sim-demo.toml", "--json"])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["variants"].as_array().unwrap().len(), 5);
    assert_eq!(v["cells"].as_array().unwrap().len(), 20);
}

#[test]
fn set_override_changes_the_plan_and_is_validated() {
    vbench()
        .args([
            "plan",
            "experiments/sim-demo.toml",
            "--set",
            "load.rates=[1]",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("5 variants · 5 cells"))
        .stdout(predicate::str::contains("Overrides: --set load.rates=[1]"));
    vbench()
        .args([
            "plan",
            "experiments/sim-demo.toml",
            "--set",
            "deployment.7.tp=1",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("in --set deployment.7.tp=1"));
}

/// The plan says how much disk its results take and how much the results folder has, and
/// warns when `apply` would refuse for want of it.
#[test]
fn plan_shows_the_disk_its_results_need() {
    let dir = tempfile::tempdir().unwrap();
    vbench()
        .args(["plan", "experiments/sim-demo.toml", "--results"])
        .arg(dir.path())
        .assert()
        .success()
        .stdout(
            predicate::str::is_match(
                r"Results: about \d+ MiB in .*/sim-demo \([\d,]+ MiB free there\)",
            )
            .unwrap(),
        )
        .stderr(predicate::str::contains("refuses to start").not());
    vbench()
        .args([
            "plan",
            "experiments/sim-demo.toml",
            "--set",
            "load.num_prompts=100000000",
        ])
        .arg("--results")
        .arg(dir.path())
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "`apply` refuses to start without about 7,813,5",
        ));
}

#[test]
fn plan_refuses_a_target_no_variant_fits() {
    vbench()
        .args([
            "plan",
            "experiments/sim-demo.toml",
            "--set",
            "target.gpus=1",
            "--set",
            "deployment.0.tp=2",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "needs 2 GPUs but the target has 1",
        ));
}

#[test]
fn init_writes_a_manifest_that_plans_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.toml");
    vbench()
        .args(["init", "x", "--out", out.to_str().unwrap()])
        .assert()
        .success();
    vbench()
        .args(["plan", out.to_str().unwrap()])
        .assert()
        .success();
    vbench()
        .args(["init", "x", "--out", out.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("refusing to overwrite"));
}

/// The manifest's `#:schema` line finds its schema (what an editor validates it against),
/// in vbench's layout (`experiments/` beside `schemas/`) and anywhere else; a schema that is
/// there already is left as it is.
#[test]
fn init_puts_the_schema_where_the_manifest_s_schema_line_points() {
    let schema = std::fs::read_to_string("schemas/experiment.schema.json").unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (out, line) in [
        (
            "experiments/a.toml",
            "#:schema ../schemas/experiment.schema.json",
        ),
        ("elsewhere/b.toml", "#:schema experiment.schema.json"),
    ] {
        let out = dir.path().join(out);
        vbench()
            .args(["init", "x", "--out", out.to_str().unwrap()])
            .assert()
            .success()
            .stderr(predicate::str::contains("which editors check it against"));
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(text.lines().next(), Some(line));
        let target = out.parent().unwrap().join(&line["#:schema ".len()..]);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), schema);
    }
    let again = dir.path().join("experiments/c.toml");
    vbench()
        .args(["init", "c", "--out", again.to_str().unwrap()])
        .assert()
        .success()
        .stderr(predicate::str::contains("is there already"));
}

#[test]
fn schema_command_prints_the_checked_in_schema() {
    let on_disk = std::fs::read_to_string("schemas/experiment.schema.json").unwrap();
    vbench().arg("schema").assert().success().stdout(on_disk);
}

#[test]
fn completions_are_generated() {
    vbench()
        .args(["completions", "bash"])
        .assert()
        .success()
        .stdout(predicate::str::contains("vbench"));
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    vbench().arg("aply").assert().code(2);
}
