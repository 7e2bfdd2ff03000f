//! Real output files follow their checked-in JSON Schemas: a result file written by
//! `vbench bench` against the scripted server, and the summary.json `vbench report` writes
//! from it (and from a synthesised run folder). A broken copy of each must be rejected, so the
//! check is known to bite.
//!
//! The validator is a small draft-07 subset (the keywords schemars emits); a schema keyword it
//! does not know fails the test rather than being ignored.

use std::path::Path;
use std::time::Duration;

use crate::support::fake_server::{FakeServer, FakeTiming};
use assert_cmd::Command;
use serde_json::{json, Value};

// ------------------------------------------------------------------------------------------
// A draft-07 subset validator.

/// Keywords that only annotate.
const ANNOTATIONS: &[&str] = &["$schema", "title", "description", "default", "format"];

/// Every violation in `value`, as "path: what".
fn violations(root: &Value, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check(root, root, value, "$", &mut out);
    out
}

fn check(root: &Value, schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
    let obj = match schema {
        Value::Bool(true) => return,
        Value::Bool(false) => return out.push(format!("{at}: no value is allowed here")),
        Value::Object(o) => o,
        other => panic!("not a schema at {at}: {other}"),
    };
    for (key, arg) in obj {
        match key.as_str() {
            k if ANNOTATIONS.contains(&k) => {}
            "definitions" => {}
            "$ref" => {
                let name = arg
                    .as_str()
                    .and_then(|r| r.strip_prefix("#/definitions/"))
                    .unwrap_or_else(|| panic!("unsupported $ref {arg}"));
                let target = &root["definitions"][name];
                assert!(!target.is_null(), "dangling $ref {name}");
                check(root, target, v, at, out);
            }
            "type" => {
                let types: Vec<&str> = match arg {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(ts) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
                    _ => panic!("bad type {arg}"),
                };
                if !types.iter().any(|t| has_type(v, t)) {
                    out.push(format!("{at}: expected {}, found {v}", types.join(" or ")));
                }
            }
            "enum" => {
                if !arg.as_array().unwrap().contains(v) {
                    out.push(format!("{at}: {v} is not one of {arg}"));
                }
            }
            "const" => {
                if arg != v {
                    out.push(format!("{at}: {v} is not {arg}"));
                }
            }
            "minimum" => {
                if let (Some(x), Some(min)) = (v.as_f64(), arg.as_f64()) {
                    if x < min {
                        out.push(format!("{at}: {x} < minimum {min}"));
                    }
                }
            }
            "maximum" => {
                if let (Some(x), Some(max)) = (v.as_f64(), arg.as_f64()) {
                    if x > max {
                        out.push(format!("{at}: {x} > maximum {max}"));
                    }
                }
            }
            "required" => {
                if let Some(o) = v.as_object() {
                    for k in arg.as_array().unwrap() {
                        if !o.contains_key(k.as_str().unwrap()) {
                            out.push(format!("{at}: missing required key {k}"));
                        }
                    }
                }
            }
            "properties" => {
                if let Some(o) = v.as_object() {
                    for (k, sub) in arg.as_object().unwrap() {
                        if let Some(x) = o.get(k) {
                            check(root, sub, x, &format!("{at}.{k}"), out);
                        }
                    }
                }
            }
            "additionalProperties" => {
                if let Some(o) = v.as_object() {
                    let known = obj.get("properties").and_then(Value::as_object);
                    for (k, x) in o {
                        if !known.is_some_and(|p| p.contains_key(k)) {
                            match arg {
                                Value::Bool(false) => {
                                    out.push(format!("{at}: unexpected key {k:?}"))
                                }
                                sub => check(root, sub, x, &format!("{at}.{k}"), out),
                            }
                        }
                    }
                }
            }
            "items" => {
                if let Some(a) = v.as_array() {
                    match arg {
                        // Tuple form: position by position (minItems/maxItems fix the length).
                        Value::Array(subs) => {
                            for (i, (sub, x)) in subs.iter().zip(a).enumerate() {
                                check(root, sub, x, &format!("{at}[{i}]"), out);
                            }
                        }
                        sub => {
                            for (i, x) in a.iter().enumerate() {
                                check(root, sub, x, &format!("{at}[{i}]"), out);
                            }
                        }
                    }
                }
            }
            "minItems" | "maxItems" => {
                if let Some(a) = v.as_array() {
                    let n = arg.as_u64().unwrap() as usize;
                    if (key == "minItems" && a.len() < n) || (key == "maxItems" && a.len() > n) {
                        out.push(format!("{at}: {} items breaks {key} {n}", a.len()));
                    }
                }
            }
            // Every subschema must hold: check each in place, so messages keep their detail.
            "allOf" => {
                for sub in arg.as_array().unwrap() {
                    check(root, sub, v, at, out);
                }
            }
            "anyOf" | "oneOf" => {
                let results: Vec<Vec<String>> = arg
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|sub| {
                        let mut errs = Vec::new();
                        check(root, sub, v, at, &mut errs);
                        errs
                    })
                    .collect();
                let passing = results.iter().filter(|e| e.is_empty()).count();
                let ok = if key == "anyOf" {
                    passing >= 1
                } else {
                    passing == 1
                };
                if !ok {
                    out.push(format!(
                        "{at}: {passing} of {} alternatives of {key} match {}",
                        results.len(),
                        short(v)
                    ));
                    for (i, errs) in results.iter().enumerate() {
                        out.extend(errs.iter().map(|e| format!("  (alternative {i}) {e}")));
                    }
                }
            }
            other => panic!("the test's validator does not know the keyword {other:?} (at {at})"),
        }
    }
}

fn has_type(v: &Value, t: &str) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|x| x.fract() == 0.0),
        "array" => v.is_array(),
        "object" => v.is_object(),
        other => panic!("unknown type {other}"),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(120) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}

fn schema(name: &str) -> Value {
    let path = format!("{}/schemas/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn read(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn assert_valid(schema: &Value, value: &Value, what: &str) {
    let errs = violations(schema, value);
    assert!(
        errs.is_empty(),
        "{what} does not follow its schema:\n{}",
        errs.join("\n")
    );
}

/// `value` changed by `edit` must be rejected with a violation that mentions `expect`.
fn assert_rejected(schema: &Value, value: &Value, edit: impl Fn(&mut Value), expect: &str) {
    let mut broken = value.clone();
    edit(&mut broken);
    let errs = violations(schema, &broken);
    assert!(
        errs.iter().any(|e| e.contains(expect)),
        "a broken file passed (wanted a violation mentioning {expect:?}); got {errs:?}"
    );
}

// ------------------------------------------------------------------------------------------
// Producing real files.

fn vbench() -> Command {
    Command::cargo_bin("vbench").unwrap()
}

/// `vbench bench` against the scripted server, with some requests scripted to fail, into
/// `<dir>/vllm-50qps.json`.
fn bench_result(dir: &Path) -> std::path::PathBuf {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let srv = rt
        .block_on(FakeServer::start(
            0,
            FakeTiming {
                ttft: Duration::from_millis(5),
                gap: Duration::from_millis(2),
            },
        ))
        .unwrap();
    let data = dir.join("prompts.jsonl");
    let prompts = [
        "a plain prompt",
        "another plain prompt",
        "fails @status=500",
        "breaks @cut=2",
        "one more",
        "and the last",
    ];
    let lines: Vec<String> = prompts
        .iter()
        .map(|p| json!({ "prompt": p }).to_string())
        .collect();
    std::fs::write(&data, lines.join("\n") + "\n").unwrap();
    let out = dir.join("bench").join("vllm-50qps.json");
    let run = vbench()
        .args(["bench", "--base-url", &srv.base_url(), "--model", "m"])
        .args(["--dataset", "jsonl", "--output-len", "5", "--dataset-path"])
        .arg(&data)
        .args([
            "--num-prompts",
            "12",
            "--rate",
            "50",
            "--seed",
            "1",
            "--warmup",
            "0",
        ])
        .args(["--goodput", "ttft:100", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        out.exists(),
        "vbench bench wrote no result file: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    out
}

/// A run folder as `apply` leaves it: synthesised results, an environment.json, a stray file.
fn synth_run(dir: &Path) -> std::path::PathBuf {
    let run = dir.join("exp/20261128_120000");
    crate::support::report::synth_run(&run, "exp", 1, &[1.0, 4.0, 8.0, 12.0], 30, 8);
    std::fs::write(
        run.join("environment.json"),
        r#"{"started_at": "2026-11-28T20:31:31.04+00:00", "vbench_version": "0.1.0",
            "vllm_version": "0.26.0", "host": "gpu-node-7",
            "gpus": ["0, NVIDIA H200, 143771 MiB, 580.159.04"],
            "manifest_git": {"sha": "b27fc58aa1bb2cc3dd", "dirty": true},
            "command": ["vbench", "apply", "experiments/x.toml"], "simulated": true}"#,
    )
    .unwrap();
    std::fs::write(run.join("simple-tp1").join("vllm-2qps.json"), "{broken").unwrap();
    run
}

/// `vllm bench serve --save-result` without `--save-detailed`: summary numbers only.
fn summary_only_run(dir: &Path) -> std::path::PathBuf {
    let run = dir.join("vllm-summary");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        run.join("vllm-3qps.json"),
        json!({
            "date": "20261128-120000", "endpoint_type": "openai", "backend": "vllm",
            "model_id": "Qwen/Qwen3-0.6B", "num_prompts": 20, "request_rate": 3.0,
            "burstiness": 1.0, "duration": 7.1, "completed": 20, "failed": 0,
            "request_throughput": 2.8, "output_throughput": 300.0,
            "median_ttft_ms": 41.0, "p99_ttft_ms": 90.5, "median_tpot_ms": 12.0,
            "p99_tpot_ms": 20.0, "median_itl_ms": 11.0, "p99_itl_ms": 30.0,
            "median_e2el_ms": 900.0, "p99_e2el_ms": 1500.0
        })
        .to_string(),
    )
    .unwrap();
    run
}

// ------------------------------------------------------------------------------------------

#[test]
fn a_real_result_file_follows_the_result_schema_and_a_broken_one_does_not() {
    let schema = schema("result.schema.json");
    let tmp = tempfile::tempdir().unwrap();
    let r = read(&bench_result(tmp.path()));
    // The run exercised failures: their nullable fields are written as null.
    assert!(r["failed"].as_u64().unwrap() > 0, "no scripted failure");
    assert_valid(&schema, &r, "vbench bench's result file");

    // The synthesised files the report tests use follow it too.
    let run = tmp.path().join("synth");
    crate::support::report::synth_run(&run, "synth", 1, &[1.0, 8.0], 10, 4);
    let file = run.join("nixl-pf1-d1/vllm-8qps.json");
    assert_valid(&schema, &read(&file), "a synthesised result file");

    assert_rejected(
        &schema,
        &r,
        |v| v["completed"] = json!("12"),
        "$.completed: expected integer",
    );
    assert_rejected(
        &schema,
        &r,
        |v| v["vbench"]["requests"][0]["ttft_s"] = json!("fast"),
        "$.vbench.requests[0].ttft_s: expected number or null",
    );
    assert_rejected(
        &schema,
        &r,
        |v| {
            v["vbench"]["client"]
                .as_object_mut()
                .unwrap()
                .remove("lag_p99_ms");
        },
        "$.vbench.client: missing required key \"lag_p99_ms\"",
    );
    assert_rejected(
        &schema,
        &r,
        |v| v["request_rate"] = json!("fast"),
        "$.request_rate: 0 of 2 alternatives",
    );
    assert_rejected(
        &schema,
        &r,
        |v| v["vbench"]["deployment"]["colour"] = json!("red"),
        "$.vbench.deployment: unexpected key \"colour\"",
    );
    assert_rejected(
        &schema,
        &r,
        |v| v["itls"][0] = json!(0.5),
        "$.itls[0]: expected array",
    );
}

#[test]
fn a_real_summary_follows_the_summary_schema_and_a_broken_one_does_not() {
    let schema = schema("summary.schema.json");
    let tmp = tempfile::tempdir().unwrap();
    let bench = bench_result(tmp.path());
    let synth = synth_run(tmp.path());
    let vllm = summary_only_run(tmp.path());
    let out = tmp.path().join("report");
    vbench()
        .arg("report")
        .arg(bench.parent().unwrap())
        .arg(&synth)
        .arg(&vllm)
        .args(["--format", "svg", "--out"])
        .arg(&out)
        .env_remove("PLOT_OUTPUT_DIR")
        .assert()
        .success();
    let s = read(&out.join("summary.json"));
    // The parts that are often empty or null are really there.
    assert!(
        !s["skipped"].as_array().unwrap().is_empty(),
        "{}",
        s["skipped"]
    );
    assert!(!s["figures"].as_array().unwrap().is_empty());
    assert_eq!(s["runs"][1]["environment"]["host"], "gpu-node-7");
    let points = s["variants"].as_array().unwrap().iter().flat_map(|v| {
        v["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.get("file_summary").is_some())
    });
    assert!(
        points.into_iter().any(|has| has),
        "no summary-only point exercised"
    );
    assert_valid(&schema, &s, "vbench report's summary.json");

    // Also with the per-GPU axis.
    let out2 = tmp.path().join("report2");
    vbench()
        .arg("report")
        .arg(&synth)
        .args(["--format", "svg", "--x", "per-gpu", "--out"])
        .arg(&out2)
        .env_remove("PLOT_OUTPUT_DIR")
        .assert()
        .success();
    let s2 = read(&out2.join("summary.json"));
    assert_eq!(s2["x_axis"], "per_gpu");
    assert_valid(&schema, &s2, "vbench report --x per-gpu's summary.json");

    assert_rejected(
        &schema,
        &s,
        |v| v["variants"][0]["goodput"]["kind"] = json!("sort_of"),
        "$.variants[0].goodput: 0 of 4 alternatives of oneOf",
    );
    assert_rejected(
        &schema,
        &s,
        |v| {
            v.as_object_mut().unwrap().remove("winner");
        },
        "$: missing required key \"winner\"",
    );
    assert_rejected(
        &schema,
        &s,
        |v| v["variants"][0]["points"][0]["rate"] = json!("4"),
        "$.variants[0].points[0].rate: expected number",
    );
    assert_rejected(
        &schema,
        &s,
        |v| v["x_axis"] = json!("time"),
        "$.x_axis: \"time\" is not one of",
    );
    assert_rejected(
        &schema,
        &s,
        |v| {
            v["variants"][0]["rate_crossing"]
                .as_array_mut()
                .unwrap()
                .pop()
                .map(drop)
                .unwrap()
        },
        "$.variants[0].rate_crossing: 2 items breaks minItems 3",
    );
}

#[test]
fn schema_command_prints_each_checked_in_schema() {
    for (kind, file) in [
        ("result", "schemas/result.schema.json"),
        ("summary", "schemas/summary.schema.json"),
        ("manifest", "schemas/experiment.schema.json"),
    ] {
        let on_disk = std::fs::read_to_string(file).unwrap();
        vbench()
            .args(["schema", "--kind", kind])
            .assert()
            .success()
            .stdout(on_disk);
    }
    vbench()
        .args(["schema", "--kind", "result", "--markdown"])
        .assert()
        .code(2);
}
