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
    let path = sim_manifest(tmp.path());
    let out = apply_command(&path, &tmp.path().join("results"), &[])
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
    // Started outside a job, the run itself (proxy, load generator) ran on that node as a
    // step (target.slurm.driver = "first_node", the default).
    assert!(
        stderr.contains(&format!("the run is driven from {node}")),
        "{stderr}"
    );
    assert_eq!(env["driver_node"], node.as_str(), "{env}");
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
    assert!(!sim_processes_left());
}

/// A one-node NIXL manifest in `dir` whose "vLLM" is the simulator, through a template
/// override and a wrapper that answers `--version` with the Slurm node it runs on.
fn sim_manifest(dir: &Path) -> std::path::PathBuf {
    let template = std::fs::canonicalize("tests/fixtures/slurm/sim_serve_as_vllm.hbs").unwrap();
    let wrapper = dir.join("vllm-on-node");
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
        bin = wrapper.display(),
        template = template.display(),
    );
    let path = dir.join("slurm.toml");
    std::fs::write(&path, manifest).unwrap();
    path
}

fn apply_command(manifest: &Path, results: &Path, sets: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(["apply", manifest.to_str().unwrap(), "--no-report"])
        .args(["--stop-grace-s", "5", "--results"])
        .arg(results);
    for s in sets {
        c.args(["--set", s]);
    }
    c
}

fn sim_processes_left() -> bool {
    Path::new("/proc").read_dir().unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains("sim-model"))
            .unwrap_or(false)
    })
}

/// `target.slurm.driver = "here"`: the proxy and the load generator stay where vbench was
/// started (a login node), as before the driver step existed.
#[test]
fn the_login_node_drives_the_run_when_asked() {
    let _alone = crate::alone();
    if !slurm_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = sim_manifest(tmp.path());
    let results = tmp.path().join("results");
    let out = apply_command(&path, &results, &["target.slurm.driver=here"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("the run is driven from"), "{stderr}");
    let run = crate::only_dir(&results.join("slurm-e2e"));
    let env: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("environment.json")).unwrap()).unwrap();
    assert!(env.get("driver_node").is_none(), "{env}");
    assert!(squeue_jobs("vbench-slurm-e2e").is_empty());
}

/// A Ctrl-C to a run driven from the first node reaches the step there: it tears down, keeps
/// the rate it measured, exits 130 (and so does this vbench), and the allocation, its steps
/// and every instance are gone.
#[test]
fn ctrl_c_reaches_the_run_on_the_first_node_and_the_allocation_is_released() {
    let _alone = crate::alone();
    if !slurm_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = sim_manifest(tmp.path());
    let results = tmp.path().join("results");
    let child = apply_command(
        &path,
        &results,
        &["load.rates=[10, 1]", "load.num_prompts=20"],
    )
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let first = first_rate(&results);
    std::thread::sleep(std::time::Duration::from_millis(800));
    // SAFETY: signalling the vbench this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("the step on the first node tears down"),
        "{stderr}"
    );
    assert!(first.is_file(), "the measured rate is kept");
    assert!(
        !first.with_file_name("vllm-1qps.json").exists(),
        "the interrupted rate is not a result"
    );
    assert!(
        squeue_jobs("vbench-slurm-e2e").is_empty(),
        "allocation left"
    );
    assert!(!sim_processes_left(), "an instance was left running");
}

/// The first rate's result file of the one run under `results`, once it is there (90 s at
/// most).
fn first_rate(results: &Path) -> std::path::PathBuf {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let found = std::fs::read_dir(results.join("slurm-e2e"))
            .ok()
            .and_then(|mut runs| runs.next())
            .and_then(|run| run.ok())
            .and_then(|run| {
                std::fs::read_dir(run.path())
                    .ok()?
                    .flatten()
                    .map(|v| v.path().join("vllm-10qps.json"))
                    .find(|f| f.is_file())
            });
        if let Some(f) = found {
            return f;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no first rate measured"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A SIGKILL of the vbench that drives a run from the first node: its reaper stops the
/// driver step and cancels the allocation, and with it every instance.
#[test]
fn sigkill_of_a_driving_vbench_leaves_no_job_and_no_instance() {
    let _alone = crate::alone();
    if !slurm_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = sim_manifest(tmp.path());
    let results = tmp.path().join("results");
    let mut child = apply_command(
        &path,
        &results,
        &["load.rates=[10, 1]", "load.num_prompts=20"],
    )
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    first_rate(&results);
    child.kill().unwrap();
    child.wait().unwrap();
    // The reaper's grace (--stop-grace-s 5), then scancel and Slurm's own teardown.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !squeue_jobs("vbench-slurm-e2e").is_empty() || sim_processes_left() {
        assert!(
            std::time::Instant::now() < deadline,
            "left after 60 s: jobs {:?}, instances {}",
            squeue_jobs("vbench-slurm-e2e"),
            sim_processes_left()
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
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
