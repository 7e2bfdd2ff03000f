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
    // The "vLLM" answers `--version` with the Slurm node it runs on.
    let wrapper = tmp.path().join("vllm-on-node");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo \"on ${{SLURMD_NODENAME:-no node}}\"; \
             exit 0; fi\nexec {BIN} \"$@\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let manifest = manifest.replace(
        &format!("vllm_bin = \"{BIN}\""),
        &format!("vllm_bin = \"{}\"", wrapper.display()),
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

    let run = crate::only_dir(&tmp.path().join("results/slurm-e2e"));
    // What ran is described from the allocation's node, through a step there, not from this
    // host: the node's name, and the "vLLM" version asked on it.
    let env: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("environment.json")).unwrap()).unwrap();
    let node = env["nodes"][0].as_str().unwrap_or_default().to_owned();
    assert!(node.starts_with("node"), "{env}");
    assert_eq!(env["vllm_version"], format!("on {node}"), "{env}");
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

/// An allocation (and the `srun`s started in it) that a test holds: cancelled, and waited
/// for, however the test ends.
struct Held {
    job: String,
    sruns: Vec<std::process::Child>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = Command::new("scancel").arg(&self.job).status();
        for s in &mut self.sruns {
            let _ = s.kill();
            let _ = s.wait();
        }
        // A completing job is still listed (and holds its node) for a moment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let out = Command::new("squeue")
                .args(["-h", "-j", &self.job])
                .output()
                .unwrap();
            if out.stdout.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

/// Teardown's last resort: a step of the variant still listed after the patience is cancelled
/// by its id, and only steps of that variant are touched.
#[test]
fn a_leftover_step_is_cancelled_by_id() {
    let _alone = crate::alone();
    if !slurm_ready() {
        return;
    }
    let job_name = "vbench-leftover-step";
    let out = Command::new("timeout")
        .args(["30", "salloc", "--no-shell", "--exclusive", "--nodes=1"])
        .args(["--job-name", job_name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut held = Held {
        job: squeue_jobs(job_name).pop().expect("allocated"),
        sruns: Vec::new(),
    };
    let job = held.job.clone();
    for name in ["decode-0", "someone-else"] {
        let srun = Command::new("srun")
            .args([&format!("--jobid={job}"), "--exact", "--ntasks=1"])
            .arg(format!("--job-name={name}"))
            .args(["sleep", "300"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        held.sruns.push(srun);
    }
    let listed = |name: &str| {
        let out = Command::new("squeue")
            .args(["-h", "-s", "-j", &job, "-o", "%j"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == name)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !(listed("decode-0") && listed("someone-else")) {
        assert!(std::time::Instant::now() < deadline, "steps never started");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(vbench::exec::slurm::end_steps(
        &job,
        &["decode-0"],
        std::time::Duration::ZERO,
        std::time::Duration::from_secs(30),
    ))
    .unwrap();
    assert!(!listed("decode-0"), "our step is cancelled");
    assert!(listed("someone-else"), "another step is left alone");
    drop(held);
    assert!(squeue_jobs(job_name).is_empty());
}
