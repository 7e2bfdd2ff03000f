//! The slurm backend against a real Slurm cluster (ci/start-cluster.sh: 4 fake GPUs as GRES per
//! node; one node or several, this test uses one). Instances run as `srun` steps of an allocation vbench makes and cancels; the
//! simulator stands in for vLLM through a template override, so no GPU is needed.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_vbench");

pub(crate) fn slurm_ready() -> bool {
    if std::env::var_os("SLURM_CONF").is_none() {
        if std::env::var("VBENCH_SKIP_SLURM").as_deref() == Ok("1") {
            eprintln!("\n*** VBENCH_SKIP_SLURM=1: the Slurm tests did NOT run ***\n");
            return false;
        }
        panic!(
            "SLURM_CONF is not set: start the test cluster with `ci/start-cluster.sh` and \
             `source /tmp/vbench-slurm/slurm.env` (ci/test.sh does both), or set VBENCH_SKIP_SLURM=1"
        );
    }
    true
}

pub(crate) fn squeue_jobs(name: &str) -> Vec<String> {
    let out = Command::new("squeue")
        .args(["-h", "-n", name, "-o", "%i"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn nixl_variant_runs_as_slurm_steps_and_the_allocation_is_released() {
    let _alone = crate::alone();
    if !slurm_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let template = std::fs::canonicalize("tests/fixtures/slurm/sim_serve_as_vllm.hbs").unwrap();
    let manifest = format!(
        r#"name = "slurm-e2e"
model = "sim-model"
tokenizer = "{tok}"
[dataset]
kind = "random"
input_len = 64
output_len = 8
[load]
rates = [10]
num_prompts = 10
[target]
backend = "slurm"
vllm_bin = "{bin}"
health_timeout_s = 60
slurm = {{ nodes = 1, gpus_per_node = 4, cpus_per_instance = 2 }}
[[deployment]]
mode = "nixl"
prefill = {{ instances = 2, tp = 1 }}
decode = {{ instances = 1, tp = 2 }}
templates = {{ vllm_serve = "{template}" }}
"#,
        tok = std::fs::canonicalize("tests/fixtures/tiny-model")
            .unwrap()
            .display(),
        bin = BIN,
        template = template.display(),
    );
    let path = tmp.path().join("slurm.toml");
    std::fs::write(&path, manifest).unwrap();
    let out = Command::new(BIN)
        .args([
            "apply",
            path.to_str().unwrap(),
            "--no-report",
            "--stop-grace-s",
            "5",
            "--results",
        ])
        .arg(tmp.path().join("results"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("allocated by vbench"), "{stderr}");

    let run = std::fs::read_dir(tmp.path().join("results/slurm-e2e"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let variant = std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .unwrap();
    let d: serde_json::Value =
        serde_json::from_slice(&std::fs::read(variant.join("deployment.json")).unwrap()).unwrap();
    let comps = d["components"].as_array().unwrap();
    for c in &comps[..3] {
        assert_eq!(c["program"], "srun", "{c}");
        let args: Vec<&str> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(args.contains(&"--exact"), "{args:?}");
    }
    let decode_args = comps[2]["args"].to_string();
    assert!(
        decode_args.contains("--gres=gpu:2"),
        "decode TP2 gets two GPUs: {decode_args}"
    );
    let r: vbench::load::RunResult =
        serde_json::from_slice(&std::fs::read(variant.join("vllm-10qps.json")).unwrap()).unwrap();
    assert_eq!((r.completed, r.failed), (10, 0), "{:?}", r.errors);

    // The allocation vbench made is gone, with every step.
    assert!(
        squeue_jobs("vbench-slurm-e2e").is_empty(),
        "allocation left behind"
    );
    assert!(!Path::new("/proc").read_dir().unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains("sim-model"))
            .unwrap_or(false)
    }));
}
