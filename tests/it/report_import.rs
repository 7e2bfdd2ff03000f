//! Reading result files of vbench, the original suite and `vllm bench serve`.

use std::path::{Path, PathBuf};

use crate::support::report::*;
use vbench::report::analysis::{analyse, Scoring};
use vbench::report::attainment::{attainment, Crossing, SloKind};
use vbench::report::import::{import_paths, SourceKind};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/vllm-cpu")
        .join(name)
}

#[test]
fn real_vllm_bench_serve_files_are_read_as_summary_only_points() {
    let imp = import_paths(&[
        fixture("vllm-bench-serve-result.json"),
        fixture("vllm-bench-serve-pd-router.json"),
    ])
    .unwrap();
    assert!(imp.skipped.is_empty(), "{:?}", imp.skipped);
    assert_eq!(imp.runs.len(), 2);
    let v = &imp.runs[0].variants[0];
    assert_eq!(v.source, SourceKind::VllmBenchServe);
    assert_eq!(v.model, "tiny");
    assert!(!v.gpus_known);
    let p = &v.points[0];
    assert_eq!(p.rate, 5.0);
    assert!(
        !p.per_request,
        "these files were saved without per-request ttfts"
    );
    assert_eq!((p.completed, p.failed, p.num_requests), (50, 0, 50));
    assert!((p.file_summary.median_ttft_ms.unwrap() - 8.991).abs() < 0.01);
    assert!((p.request_throughput.unwrap() - 4.979).abs() < 0.01);
    // The PD-router run (behind vllm-router) at 2 req/s.
    let pd = &imp.runs[1].variants[0].points[0];
    assert_eq!((pd.rate, pd.completed), (2.0, 30));
    // Attainment is not invented for them.
    let a = analyse(&imp, &Scoring::default());
    assert_eq!(a.variants[0].goodput, Crossing::NoData);
    assert_eq!(a.variants[0].points[0].attainment, None);
}

#[test]
fn vllm_detailed_failures_are_misses_even_with_zero_ttft() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("detailed.json");
    std::fs::write(
        &f,
        r#"{"endpoint_type":"vllm","model_id":"m","request_rate":4.0,"duration":2.0,
            "completed":3,"failed":1,
            "ttfts":[0.05,0.0,0.08,0.02],"latencies":[0.25,0.0,0.5,0.02],
            "output_lens":[5,0,5,1],"itls":[[0.05,0.05,0.05,0.05],[],[0.1,0.1,0.1,0.12],[]],
            "errors":["","Connection reset by peer","",""]}"#,
    )
    .unwrap();
    let imp = import_paths(&[f]).unwrap();
    let p = &imp.runs[0].variants[0].points[0];
    assert!(p.per_request);
    assert_eq!((p.completed, p.failed), (3, 1));
    assert_eq!(p.failures_by_kind.get("connection"), Some(&1));
    let slo = vbench::report::attainment::Slo {
        ttft_s: 0.1,
        tpot_s: 0.06,
    };
    // TTFT: 3 of 4 fast; the failure's ttft=0 does not count.
    assert_eq!(
        attainment(&p.samples, slo, 1.0, SloKind::TtftOnly),
        Some(75.0)
    );
    // TPOT = (latency - ttft)/(out - 1): 0.05 and 0.105; the one-token request meets it.
    assert_eq!(
        attainment(&p.samples, slo, 1.0, SloKind::TpotOnly),
        Some(50.0)
    );
    assert_eq!(p.samples[3].tpot_s, None);
    assert_eq!(p.itls_s.len(), 8, "ITLs of successful requests only");
}

#[test]
fn without_an_errors_array_a_zero_ttft_is_a_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("vllm-3qps-x.json");
    std::fs::write(
        &f,
        r#"{"model_id":"m","ttfts":[0.0,0.01],"output_lens":[0,3],"latencies":[0,0.05]}"#,
    )
    .unwrap();
    let imp = import_paths(&[f]).unwrap();
    let p = &imp.runs[0].variants[0].points[0];
    assert_eq!(p.rate, 3.0, "rate from the file name");
    assert_eq!((p.completed, p.failed), (1, 1));
}

#[test]
fn original_suite_folder_gets_topology_from_its_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nixl_20250101_120000");
    std::fs::create_dir_all(&dir).unwrap();
    for (rate, ttft) in [(1, 0.05), (2, 0.3)] {
        std::fs::write(
            dir.join(format!("vllm-{rate}qps-20250101.json")),
            format!(
                r#"{{"model_name":"Qwen/Qwen3-0.6B","dataset_name":"sharegpt","deployment_mode":"nixl",
                   "num_prefill_instances":2,"num_decode_instances":1,"tensor_parallel_size":1,
                   "ttfts":[{ttft},{ttft}],"tpots":[0.01,0.0],"output_lens":[10,1]}}"#
            ),
        )
        .unwrap();
    }
    let imp = import_paths(&[dir]).unwrap();
    assert!(imp.skipped.is_empty(), "{:?}", imp.skipped);
    assert_eq!(imp.runs[0].name, "nixl_20250101_120000");
    let v = &imp.runs[0].variants[0];
    assert_eq!(v.source, SourceKind::OriginalSuite);
    assert_eq!(v.label, "nixl PF:2 D:1 TP:1x1");
    assert_eq!(v.gpus, 3);
    assert_eq!(
        v.points.iter().map(|p| p.rate).collect::<Vec<_>>(),
        [1.0, 2.0]
    );
    // tpots 0.0 with a one-token output is "undefined", not "fast".
    assert_eq!(v.points[0].samples[1].tpot_s, None);
    let a = analyse(&imp, &Scoring::default());
    assert_eq!(
        a.variants[0].points[0].attainment,
        Some([100.0, 100.0, 100.0])
    );
    assert_eq!(a.variants[0].points[1].attainment, Some([0.0, 0.0, 100.0]));
    assert_eq!(
        a.variants[0].goodput,
        Crossing::At {
            x: 1.1,
            lo: 1.0,
            hi: 2.0
        }
    );
}

#[test]
fn malformed_files_are_reported_by_name_and_the_rest_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("20261128_120000");
    let d = dep("simple", "simple TP:1", 1, "simple-tp1");
    write(&run, &result(&d, "m", 1.0, vec![ok(0, 0.05, 0.01, 4)]));
    let bad_dir = run.join("simple-tp1");
    std::fs::write(bad_dir.join("vllm-2qps.json"), b"{\"vbench\": {\"deploym").unwrap();
    std::fs::write(bad_dir.join("notes.json"), b"[1, 2, 3]").unwrap();
    std::fs::write(
        bad_dir.join("vllm-9qps.json"),
        br#"{"model_id":"m","request_rate":"inf","ttfts":[]}"#,
    )
    .unwrap();
    std::fs::write(run.join("plan.json"), b"{}").unwrap();
    let imp = import_paths(&[run]).unwrap();
    let names: Vec<String> = imp
        .skipped
        .iter()
        .map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["notes.json", "vllm-2qps.json", "vllm-9qps.json"],
        "{:?}",
        imp.skipped
    );
    assert!(
        imp.skipped[2].reason.contains("inf"),
        "{}",
        imp.skipped[2].reason
    );
    assert_eq!(imp.runs[0].variants.len(), 1);
    assert_eq!(imp.runs[0].variants[0].points.len(), 1);
}

#[test]
fn python_nan_in_a_summary_key_does_not_lose_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("r.json");
    std::fs::write(
        &f,
        r#"{"endpoint_type":"vllm","model_id":"m","request_rate":1,"completed":0,"failed":2,
            "mean_ttft_ms":NaN,"median_ttft_ms":NaN,"ttfts":[0,0],"errors":["timeout","timeout"]}"#,
    )
    .unwrap();
    let imp = import_paths(&[f]).unwrap();
    assert!(imp.skipped.is_empty(), "{:?}", imp.skipped);
    let a = analyse(&imp, &Scoring::default());
    let p = &a.variants[0].points[0];
    assert_eq!(
        p.attainment,
        Some([0.0, 0.0, 0.0]),
        "all failed: zero, not NaN"
    );
    assert_eq!(p.ttft_ms, None);
    assert_eq!(a.variants[0].goodput, Crossing::NotReached { edge: 1.0 });
    let json = serde_json::to_string(&a).unwrap();
    assert!(!json.contains("NaN"));
}

/// vLLM's client records a non-200 answer's error as the HTTP reason, which can be empty,
/// with TTFT 0: such a request failed, though its error text is "", and never counts as a
/// fast success.
#[test]
fn a_vllm_failure_with_an_empty_error_text_is_a_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("r.json");
    std::fs::write(
        &f,
        r#"{"endpoint_type":"vllm","model_id":"m","request_rate":1,"completed":1,"failed":1,
            "ttfts":[0.0,0.05],"tpots":[0,0.01],"itls":[[],[0.01,0.01]],"output_lens":[0,3],
            "errors":["",""]}"#,
    )
    .unwrap();
    let imp = import_paths(&[f]).unwrap();
    assert!(imp.skipped.is_empty(), "{:?}", imp.skipped);
    let a = analyse(&imp, &Scoring::default());
    let p = &a.variants[0].points[0];
    assert_eq!(p.attainment, Some([50.0, 50.0, 50.0]), "{p:?}");
    assert_eq!(p.failed, 1, "{p:?}");
}

#[test]
fn vbench_files_keep_one_token_outputs_and_failure_kinds() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("20261128_120000");
    let d = dep("nixl", "nixl PF:1 D:1 TP:1x1", 2, "nixl-a");
    let reqs = vec![
        ok(0, 0.05, 0.01, 10),
        ok(1, 0.05, 0.0, 1),
        failed(2, "timeout"),
        failed(3, "http"),
    ];
    write(&run, &result(&d, "m", 2.0, reqs));
    let imp = import_paths(&[run]).unwrap();
    let v = &imp.runs[0].variants[0];
    assert_eq!(v.source, SourceKind::Vbench);
    assert!(v.simulated);
    assert_eq!((v.gpus, v.key.as_str()), (2, "nixl-a"));
    let p = &v.points[0];
    assert_eq!(p.samples.len(), 4);
    assert_eq!(p.samples[1].tpot_s, None);
    assert_eq!(p.failures_by_kind.len(), 2);
    assert!(p.client.is_some());
    let a = analyse(&imp, &Scoring::default());
    assert_eq!(a.variants[0].points[0].attainment, Some([50.0, 50.0, 50.0]));
}

#[test]
fn goodput_per_gpu_and_scale_crossing_on_hand_built_data() {
    // 10 requests per rate; met requests: 10, 10, 8, 4 → 100, 100, 80, 40 %.
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("20261128_120000");
    let d = dep("nixl", "nixl PF:1 D:1 TP:1x1", 2, "n");
    for (rate, slow) in [(1.0, 0), (2.0, 0), (3.0, 2), (4.0, 6)] {
        let reqs = (0..10)
            .map(|i| {
                if i < slow {
                    ok(i, 0.2, 0.01, 5)
                } else {
                    ok(i, 0.05, 0.01, 5)
                }
            })
            .collect();
        write(&run, &result(&d, "m", rate, reqs));
    }
    let imp = import_paths(&[run]).unwrap();
    let a = analyse(&imp, &Scoring::default());
    let v = &a.variants[0];
    // Between 2 (100 %) and 3 (80 %): 2 + (90 - 100)/(80 - 100) = 2.5 req/s.
    assert_eq!(
        v.goodput,
        Crossing::At {
            x: 2.5,
            lo: 2.0,
            hi: 3.0
        }
    );
    assert_eq!(v.goodput_per_gpu.value(), Some(1.25));
    // TPOT always met; TTFT-only identical to both here.
    assert_eq!(v.rate_crossing[2], Crossing::AlwaysAbove { edge: 4.0 });
    // Scale panel at rate 2 (highest meeting the target): all ttft 0.05 → meets from
    // scale 0.4 (0.05 ≤ 0.4 × 0.125).
    assert_eq!(v.scale_rate, Some(2.0));
    assert_eq!(v.scale_crossing[0], Crossing::AlwaysAbove { edge: 0.4 });
}

#[test]
fn a_null_in_the_client_section_keeps_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("20261128_120000");
    let d = dep("simple", "simple TP:1", 1, "s");
    let path = write(&run, &result(&d, "m", 1.0, vec![ok(0, 0.05, 0.01, 3)]));
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    v["vbench"]["client"]["lag_p99_ms"] = serde_json::Value::Null;
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    let imp = import_paths(&[run]).unwrap();
    assert!(imp.skipped.is_empty(), "{:?}", imp.skipped);
    let c = imp.runs[0].variants[0].points[0].client.as_ref().unwrap();
    assert!(c.lag_p99_ms.is_nan() && c.lag_p50_ms == 0.2);
}
