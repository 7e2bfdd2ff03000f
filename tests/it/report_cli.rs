//! `vbench report` and `vbench ls` through the real binary.

use crate::support::report::*;
use assert_cmd::Command;
use predicates::prelude::*;

fn vbench() -> Command {
    Command::cargo_bin("vbench").unwrap()
}

/// `vbench report RUN --format svg --out OUT`, which must succeed; returns summary.md.
fn svg_report(run: &std::path::Path, out: &std::path::Path) -> String {
    vbench()
        .arg("report")
        .arg(run)
        .args(["--format", "svg", "--out"])
        .arg(out)
        .assert()
        .success();
    std::fs::read_to_string(out.join("summary.md")).unwrap()
}

#[test]
fn report_cli_writes_requested_formats_to_out() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("exp/20261128_120000");
    synth_run(&run, "exp", 1, &[1.0, 4.0, 8.0], 30, 8);
    let out = tmp.path().join("figs");
    vbench()
        .arg("report")
        .arg(&run)
        .args([
            "--format",
            "svg",
            "--slo",
            "both",
            "--x",
            "per-gpu",
            "--ttft-ms",
            "100",
        ])
        .arg("--out")
        .arg(&out)
        .env_remove("PLOT_OUTPUT_DIR")
        .assert()
        .success()
        .stdout(predicate::str::contains("index.html"));
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.ends_with(".pdf") && !n.ends_with(".png")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.ends_with("_comparison_both.svg")),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.ends_with("_comparison_ttft.svg")),
        "{names:?}"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["scoring"]["slo"]["ttft_s"], 0.1);
    assert_eq!(summary["x_axis"], "per_gpu");
    assert_eq!(summary["simulated"], true);
}

#[test]
fn plot_output_dir_is_honoured() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("20261128_120000");
    synth_run(&run, "exp", 1, &[1.0, 2.0], 10, 4);
    let out = tmp.path().join("plots-here");
    vbench()
        .arg("report")
        .arg(&run)
        .args(["--format", "svg"])
        .env("PLOT_OUTPUT_DIR", &out)
        .assert()
        .success();
    assert!(out.join("summary.md").exists());
    assert!(!run.join("report").exists());
}

#[test]
fn report_of_a_missing_folder_is_bad_input() {
    vbench()
        .args(["report", "/nonexistent/run"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("does not exist"));
}

#[test]
fn report_of_a_folder_without_results_is_bad_input_and_names_skipped_files() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("junk.json"), b"not json").unwrap();
    vbench()
        .arg("report")
        .arg(tmp.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no usable result files"))
        .stderr(predicate::str::contains("junk.json"));
}

#[test]
fn ls_lists_runs_newest_first_with_counts_and_config() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let old = root.join("qwen-pd/20260814_153022");
    let d1 = dep("nixl", "nixl PF:2 D:2 TP:1x1", 4, "nixl-a");
    write(
        &old,
        &result(&d1, "Qwen/Qwen3-0.6B", 1.0, vec![ok(0, 0.1, 0.01, 3)]),
    );
    write(
        &old,
        &result(&d1, "Qwen/Qwen3-0.6B", 2.0, vec![ok(0, 0.1, 0.01, 3)]),
    );
    for tp in [1, 2] {
        let d = dep(
            "simple",
            &format!("simple TP:{tp}"),
            tp,
            &format!("simple-{tp}"),
        );
        write(
            &old,
            &result(&d, "Qwen/Qwen3-0.6B", 1.0, vec![ok(0, 0.1, 0.01, 3)]),
        );
    }
    std::fs::create_dir_all(old.join("report")).unwrap();
    std::fs::write(old.join("report/a.pdf"), b"%PDF").unwrap();
    std::fs::write(old.join("report/a.png"), b"png").unwrap();
    std::fs::write(old.join("plan.json"), b"{}").unwrap();
    // An original-suite run, newer.
    let suite = root.join("sharegpt/simple_20261001_090000");
    std::fs::create_dir_all(&suite).unwrap();
    std::fs::write(
        suite.join("vllm-1qps-x.json"),
        br#"{"model_name":"m2","deployment_mode":"simple","tensor_parallel_size":2,"ttfts":[0.1],"tpots":[0.01]}"#,
    )
    .unwrap();
    let out = vbench()
        .arg("ls")
        .arg(root)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "2026-10-01 09:00:00  sharegpt/simple_20261001_090000  (1 files, 0 plots)",
            "  simple TP:2 · Model: m2",
            "2026-08-14 15:30:22  qwen-pd/20260814_153022  (4 files, 2 plots)",
            "  simple TP:1,2 · nixl PF:2 D:2 TP:1x1 · Model: Qwen/Qwen3-0.6B · SIMULATED",
        ],
        "{text}"
    );
    let json = vbench()
        .arg("ls")
        .arg(root)
        .arg("--json")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[1]["files"], 4);
    assert_eq!(v[1]["simulated"], true);
}

#[test]
fn ls_of_a_missing_folder_is_bad_input() {
    vbench()
        .args(["ls", "/nonexistent/results"])
        .assert()
        .code(2);
}

#[test]
fn the_report_says_where_and_with_what_each_run_ran() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("exp/20261128_120000");
    synth_run(&run, "exp", 1, &[1.0, 4.0], 20, 4);
    std::fs::write(
        run.join("environment.json"),
        r#"{"started_at": "2026-11-28T20:31:31.04+00:00", "vbench_version": "0.1.0",
            "vllm_version": "0.26.0", "host": "gpu-node-7",
            "gpus": ["0, NVIDIA H200, 143771 MiB, 580.159.04", "1, NVIDIA H200, 143771 MiB, 580.159.04"],
            "manifest_git": {"sha": "b27fc58aa1bb2cc3dd", "dirty": true},
            "command": ["vbench", "apply", "experiments/x.toml"], "simulated": false}"#,
    )
    .unwrap();
    let out = tmp.path().join("r");
    let md = svg_report(&run, &out);
    let line = md
        .lines()
        .find(|l| l.contains("gpu-node-7"))
        .unwrap_or_else(|| panic!("no run line in:\n{md}"));
    for part in [
        "started 2026-11-28T20:31:31",
        "vLLM 0.26.0",
        "2 × NVIDIA H200 (143771 MiB)",
        "git b27fc58aa1bb with uncommitted changes",
        "command: vbench apply experiments/x.toml",
    ] {
        assert!(line.contains(part), "{part:?} not in {line:?}");
    }
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("<h2>Runs</h2>") && html.contains("gpu-node-7"));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["runs"][0]["environment"]["vllm_version"], "0.26.0");

    // A broken environment.json costs the provenance line, not the report.
    std::fs::write(run.join("environment.json"), "{not json").unwrap();
    let out = tmp.path().join("r2");
    let md = svg_report(&run, &out);
    assert!(!md.contains("## Runs"), "{md}");
    assert!(md.contains("environment.json"), "listed as skipped: {md}");
}

/// A run resumed elsewhere or with other versions says so: one provenance line per attempt,
/// and what differs from the first in what the numbers depend on.
#[test]
fn the_report_names_each_resume_and_what_changed_since_the_first_attempt() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("exp/20261128_120000");
    synth_run(&run, "exp", 1, &[1.0, 4.0], 20, 4);
    let gpus = r#"["0, NVIDIA H200, 143771 MiB, 580.159.04"]"#;
    std::fs::write(
        run.join("environment.json"),
        format!(
            r#"{{"started_at": "2026-11-28T20:31:31+00:00", "vbench_version": "0.1.0",
                "vllm_version": "0.26.0", "host": "gpu-node-7", "gpus": {gpus},
                "packages": {{"torch": "2.11.0"}}, "command": ["vbench", "apply", "x.toml"]}}"#
        ),
    )
    .unwrap();
    // The same versions on the same host: nothing to point out.
    std::fs::write(
        run.join("environment-resume-20261129_070000.json"),
        format!(
            r#"{{"started_at": "2026-11-29T07:00:00+00:00", "vbench_version": "0.1.0",
                "vllm_version": "0.26.0", "host": "gpu-node-7", "gpus": {gpus},
                "packages": {{"torch": "2.11.0"}}, "command": ["vbench", "apply", "--resume", "r"]}}"#
        ),
    )
    .unwrap();
    std::fs::write(
        run.join("environment-resume-20261129_080000.json"),
        r#"{"started_at": "2026-11-29T08:00:00+00:00", "vbench_version": "0.1.0",
            "vllm_version": "0.26.1", "host": "gpu-node-9",
            "gpus": ["0, NVIDIA H200, 143771 MiB, 580.159.04", "1, NVIDIA H200, 143771 MiB, 580.159.04"],
            "packages": {"torch": "2.11.0", "lmcache": "0.5.6"},
            "command": ["vbench", "apply", "--resume", "r"]}"#,
    )
    .unwrap();
    std::fs::write(
        run.join("environment-resume-20261129_090000.json"),
        "{broken",
    )
    .unwrap();
    let out = tmp.path().join("r");
    let md = svg_report(&run, &out);
    let lines: Vec<&str> = md.lines().filter(|l| l.contains(": resumed")).collect();
    assert_eq!(lines.len(), 2, "{md}");
    assert!(
        lines[0].contains("started 2026-11-29T07:00:00") && !lines[0].contains("differs"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("started 2026-11-29T08:00:00")
            && lines[1].contains(
                "differs from the first attempt in vLLM 0.26.0 → 0.26.1, host gpu-node-7 → \
                 gpu-node-9, lmcache absent → 0.5.6, GPUs 1 × NVIDIA H200 (143771 MiB) → 2 × \
                 NVIDIA H200 (143771 MiB)"
            ),
        "{}",
        lines[1]
    );
    assert!(
        md.contains("environment-resume-20261129_090000.json"),
        "the broken record is listed as skipped: {md}"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["runs"][0]["resumes"][1]["host"], "gpu-node-9");
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("vLLM 0.26.0 → 0.26.1"));
    // `ls` counts the attempts (the unreadable record too) and flags the one that differs.
    let ls = vbench().arg("ls").arg(tmp.path()).output().unwrap();
    let text = String::from_utf8_lossy(&ls.stdout);
    assert!(
        text.contains("resumed 3× (1 elsewhere or with other versions)"),
        "{text}"
    );
    let ls = vbench()
        .args(["ls", "--json"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(runs[0]["resumes"], 3);
}

#[test]
fn planned_cells_without_results_are_listed_so_a_partial_sweep_shows() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("exp/20261128_130000");
    synth_run(&run, "exp", 1, &[1.0, 4.0], 20, 4);
    std::fs::write(
        run.join("plan.json"),
        r#"{"experiment": "exp",
            "variants": [{"id": "simple-tp1", "label": "simple TP:1"},
                         {"id": "nixl-pf1-d1", "label": "nixl PF:1 D:1 TP:1x1"}],
            "cells": [
              {"variant_id": "simple-tp1", "rate": 1.0, "requests": 20, "result_file": "vllm-1qps.json"},
              {"variant_id": "simple-tp1", "rate": 4.0, "requests": 20, "result_file": "vllm-4qps.json"},
              {"variant_id": "simple-tp1", "rate": 8.0, "requests": 20, "result_file": "vllm-8qps.json"},
              {"variant_id": "nixl-pf1-d1", "rate": "inf", "requests": 20, "result_file": "vllm-infqps.json"}
            ]}"#,
    )
    .unwrap();
    // The NIXL variant failed (an earlier attempt's note, then the newest one's): its missing
    // cell says why, in the newest note's words.
    std::fs::create_dir_all(run.join("nixl-pf1-d1")).unwrap();
    std::fs::write(run.join("nixl-pf1-d1/FAILED.txt"), "old reason\n").unwrap();
    std::fs::write(
        run.join("nixl-pf1-d1/FAILED-resume-20261128_140000.txt"),
        "prefill-0 exited with status 1 before it was healthy\nlog tail ...\n",
    )
    .unwrap();
    let out = tmp.path().join("r");
    let md = svg_report(&run, &out);
    assert!(md.contains("## Planned but not measured"), "{md}");
    assert!(
        md.contains(
            "simple TP:1 at 8 req/s has no result (simple-tp1/vllm-8qps.json): the run was \
             interrupted"
        ),
        "{md}"
    );
    assert!(
        md.contains(
            "nixl PF:1 D:1 TP:1x1 at inf req/s has no result (nixl-pf1-d1/vllm-infqps.json): \
             the variant failed: prefill-0 exited with status 1 before it was healthy"
        ),
        "{md}"
    );
    assert!(!md.contains("at 4 req/s has no result"), "{md}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary["runs"][0]["missing_cells"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("Planned but not measured"));

    std::fs::write(run.join("plan.json"), "[1, 2").unwrap();
    let out = tmp.path().join("r2");
    let md = svg_report(&run, &out);
    assert!(
        md.contains("plan.json") && md.contains("not a vbench plan"),
        "{md}"
    );
}

#[test]
fn ls_shows_a_partial_sweep_and_where_a_real_run_ran() {
    let tmp = tempfile::tempdir().unwrap();
    let partial = tmp.path().join("exp/20261128_140000");
    synth_run(&partial, "exp", 1, &[1.0, 4.0], 10, 4);
    std::fs::write(
        partial.join("plan.json"),
        r#"{"variants": [{"id": "simple-tp1", "label": "simple TP:1"}], "cells": [
             {"variant_id": "simple-tp1", "rate": 1.0, "result_file": "vllm-1qps.json"},
             {"variant_id": "simple-tp1", "rate": 4.0, "result_file": "vllm-4qps.json"},
             {"variant_id": "simple-tp1", "rate": 8.0, "result_file": "vllm-8qps.json"}]}"#,
    )
    .unwrap();
    let gpu = tmp.path().join("h200/20261128_150000");
    std::fs::create_dir_all(&gpu).unwrap();
    std::fs::write(
        gpu.join("environment.json"),
        r#"{"vllm_version": "0.26.0", "simulated": false,
            "gpus": ["0, NVIDIA H200, 143771 MiB, 580.159.04", "1, NVIDIA H200, 143771 MiB, 580.159.04"]}"#,
    )
    .unwrap();
    let out = vbench().arg("ls").arg(tmp.path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("exp/20261128_140000  (2 of 3 cells measured, 0 plots)"),
        "{text}"
    );
    assert!(
        text.contains("vLLM 0.26.0 · 2 × NVIDIA H200 (143771 MiB)"),
        "{text}"
    );
}

/// A FIFO and a link to /dev/zero named like result files: `report` and `ls` finish, read
/// the real results, and `report` names both as skipped with the reason.
#[test]
fn files_named_like_results_that_are_not_regular_files_are_skipped_not_read() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("exp/20260101_120000");
    synth_run(&run, "exp", 1, &[1.0, 4.0], 10, 4);
    let variant = std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .unwrap();
    let fifo = variant.join("vllm-99qps.json");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    std::os::unix::fs::symlink("/dev/zero", variant.join("vllm-98qps.json")).unwrap();

    let out = tmp.path().join("out");
    vbench()
        .arg("report")
        .arg(&run)
        .args(["--format", "svg", "--out"])
        .arg(&out)
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "vllm-99qps.json: not a regular file (a FIFO)",
        ))
        .stderr(predicate::str::contains(
            "vllm-98qps.json: not a regular file (a device)",
        ));
    vbench()
        .args(["ls", "--json"])
        .arg(tmp.path())
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .success();
}
