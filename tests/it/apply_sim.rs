//! `vbench apply` end to end on the sim backend: real processes (sim instances and the proxy as
//! `vbench` subcommands), real HTTP on loopback, the real load generator. Checks the run folder,
//! the results, teardown without orphans, Ctrl-C, resume, and crashes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use vbench::load::RunResult;

const BIN: &str = env!("CARGO_BIN_EXE_vbench");

fn apply(results: &Path, sets: &[&str], extra: &[&str]) -> Command {
    let mut c = apply_with_report(results, sets, extra);
    c.arg("--no-report");
    c
}

fn apply_with_report(results: &Path, sets: &[&str], extra: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(["apply", "experiments/sim-demo.toml", "--results"])
        .arg(results);
    for s in sets {
        c.args(["--set", s]);
    }
    c.args(["--stop-grace-s", "5"])
        .args(extra)
        .env("NO_COLOR", "1");
    c
}

/// The run folder under `results`, once it holds `file` (relative to it); 60 s at most.
fn wait_for(results: &Path, file: &str) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(entries) = std::fs::read_dir(results.join("sim-demo")) {
            if let Some(run) = entries.flatten().next() {
                if run.path().join(file).exists() {
                    return run.path();
                }
            }
        }
        assert!(Instant::now() < deadline, "{file} never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until the run under `results` has `file` (relative to the run folder), then send
/// SIGINT 0.8 s later, during the next cell. Returns the child's output and the file's path.
fn interrupt_after(child: Child, results: &Path, file: &str) -> (Output, PathBuf) {
    let first = wait_for(results, file).join(file);
    std::thread::sleep(Duration::from_millis(800));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    (child.wait_with_output().unwrap(), first)
}

fn run_dir(results: &Path) -> PathBuf {
    let exp = results.join("sim-demo");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&exp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    dirs.pop().expect("a run folder")
}

fn variant_dirs(run: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(run)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && p.join("deployment.json").exists())
        .collect();
    v.sort();
    v
}

/// Ports every component of the run listened on.
fn component_ports(run: &Path) -> Vec<u16> {
    let mut ports = Vec::new();
    for v in variant_dirs(run) {
        let d: serde_json::Value =
            serde_json::from_slice(&std::fs::read(v.join("deployment.json")).unwrap()).unwrap();
        for c in d["components"].as_array().unwrap() {
            let url = c["url"].as_str().unwrap();
            ports.push(url.rsplit(':').next().unwrap().parse().unwrap());
        }
    }
    ports
}

/// No process of the run is left: none carries the run's mark in its environment (every
/// process vbench starts does, and vLLM's children inherit it). Ports cannot tell: once the
/// run has ended, another test's run may take the same ports at once.
fn assert_no_orphans(run: &Path) {
    assert!(
        !component_ports(run).is_empty(),
        "the run started components"
    );
    let lock = vbench::results::rundir::RunDir::open(run).lock().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let alive = vbench::exec::leftovers::find(lock.mark());
        if alive.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "orphan processes: {alive:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The ids `vbench plan` gives the variants under these overrides, in plan order.
fn planned_ids(sets: &[&str]) -> Vec<String> {
    let plan = Command::new(BIN)
        .args(["plan", "experiments/sim-demo.toml", "--json"])
        .args(sets.iter().flat_map(|s| ["--set", s]))
        .output()
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    plan["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The id `vbench plan` gives the first variant under these overrides.
fn first_variant_id(sets: &[&str]) -> String {
    planned_ids(sets).swap_remove(0)
}

/// The id of the planned variant whose id starts with `prefix` (e.g. "nixl-p2d1").
fn variant_id(sets: &[&str], prefix: &str) -> String {
    planned_ids(sets)
        .into_iter()
        .find(|id| id.starts_with(prefix))
        .unwrap_or_else(|| panic!("no variant {prefix}* planned"))
}

/// What an apply of only the first planned variant did.
struct Applied {
    id: String,
    code: Option<i32>,
    stderr: String,
    took: Duration,
}

/// Applies only the first variant `vbench plan` gives under these overrides.
fn apply_first_variant(results: &Path, sets: &[&str]) -> Applied {
    let id = first_variant_id(sets);
    let t0 = Instant::now();
    let out = apply(results, sets, &["--only", &id]).output().unwrap();
    Applied {
        id,
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: t0.elapsed(),
    }
}

/// The one run folder of `experiment` under `results`, and its variant folder that holds
/// `file`.
fn run_and_variant_with(results: &Path, experiment: &str, file: &str) -> (PathBuf, PathBuf) {
    let run = std::fs::read_dir(results.join(experiment))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .next()
        .expect("a run folder");
    let variant = std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join(file).is_file())
        .unwrap_or_else(|| panic!("no variant folder with {file} in {}", run.display()));
    (run, variant)
}

fn read_result(path: &Path) -> RunResult {
    serde_json::from_slice(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn apply_runs_every_cell_writes_the_run_folder_and_leaves_nothing_behind() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let out = apply(
        tmp.path(),
        &["load.rates=[20]", "load.num_prompts=12", "load.warmup=1"],
        &[],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "apply failed:\n{stderr}");
    let run = run_dir(tmp.path());
    for f in ["manifest.toml", "plan.json", "environment.json"] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    assert_eq!(
        std::fs::read_to_string(run.join("manifest.toml")).unwrap(),
        std::fs::read_to_string("experiments/sim-demo.toml").unwrap(),
        "exact copy of what ran"
    );
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan["overrides"][0], "load.rates=[20]");
    let variants = variant_dirs(&run);
    assert_eq!(variants.len(), 5);
    for v in &variants {
        let r = read_result(&v.join("vllm-20qps.json"));
        assert_eq!(r.completed + r.failed, 12, "{}", v.display());
        assert_eq!(r.failed, 0, "{}: {:?}", v.display(), r.errors);
        assert!(
            r.vbench.deployment.simulated,
            "sim results are labelled simulated"
        );
        assert_eq!(r.vbench.requests.len(), 12, "warm-up excluded");
        assert!(v.join("logs").read_dir().unwrap().count() >= 1);
        assert!(v.join("teardown.json").is_file());
        assert!(v.join("metrics/20qps-samples.jsonl").is_file());
        let name = v.file_name().unwrap().to_str().unwrap();
        assert_eq!(r.vbench.deployment.variant_id.as_deref(), Some(name));
    }
    // The same prompts were replayed against every variant.
    let prompts: Vec<Vec<u64>> = variants
        .iter()
        .map(|v| read_result(&v.join("vllm-20qps.json")).input_lens)
        .collect();
    assert!(prompts.windows(2).all(|w| w[0] == w[1]), "{prompts:?}");
    assert_no_orphans(&run);
}

#[test]
fn ctrl_c_stops_everything_keeps_results_and_resume_finishes_the_run() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let sets = ["load.rates=[20, 4]", "load.num_prompts=20", "load.warmup=0"];
    let only = [
        "--only",
        "simple-tp1-074b25",
        "--only",
        "nixl-p1d1-tp1x1-779daf",
    ];
    let child = apply(tmp.path(), &sets, &only)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt during the second cell (5 s long), once the first has its result.
    let (out, first) = interrupt_after(child, tmp.path(), "simple-tp1-074b25/vllm-20qps.json");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("results written so far are kept"),
        "{stderr}"
    );
    let run = run_dir(tmp.path());
    assert_no_orphans(&run);
    let kept = std::fs::read(&first).unwrap();
    assert_eq!(read_result(&first).completed, 20);
    assert!(
        !run.join("simple-tp1-074b25/vllm-4qps.json").exists(),
        "the interrupted cell is not written"
    );
    // What the stopped cell measured is kept aside, marked, and not taken for a result.
    let aside = run.join("simple-tp1-074b25/aborted/vllm-4qps.json");
    assert!(
        stderr.contains(&format!(
            "rate 4 req/s was stopped during its load; its {} requests sent so far",
            read_result(&aside).vbench.requests.len()
        )) && stderr.contains(&format!(
            "kept aside in {}, not as a result (--resume measures it again)",
            aside.display()
        )),
        "{stderr}"
    );
    let stopped = read_result(&aside).vbench.load.stopped_early.unwrap();
    assert_eq!(stopped.planned, 20);
    assert!(stopped.sent >= 1 && stopped.sent < 20, "{stopped:?}");

    // As if the first attempt had run on another host: the resume says it differs.
    let env_path = run.join("environment.json");
    let mut env: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&env_path).unwrap()).unwrap();
    let host = env["host"].as_str().unwrap().to_owned();
    env["host"] = "elsewhere".into();
    std::fs::write(&env_path, env.to_string()).unwrap();

    // Resume: only the missing cells run; the kept file is untouched.
    let mut resume = apply(tmp.path(), &sets, &only);
    resume.arg("--resume").arg(&run);
    let out = resume.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("already measured, skipped"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "this resume differs from the run's first attempt in host elsewhere → {host}: cells \
             measured by different attempts may not be comparable"
        )),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&first).unwrap(), kept);
    for v in ["simple-tp1-074b25", "nixl-p1d1-tp1x1-779daf"] {
        for r in ["20", "4"] {
            assert!(
                run.join(v).join(format!("vllm-{r}qps.json")).is_file(),
                "{v} {r}"
            );
        }
    }
    assert_no_orphans(&run);

    // Resuming with a different manifest is refused.
    let mut wrong = apply(tmp.path(), &["load.rates=[1]"], &only);
    wrong.arg("--resume").arg(&run);
    let out = wrong.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give the same overrides"));
}

/// `plan --resume RUN` shows what `apply --resume RUN` would still run: the variants and cells
/// without a result, their estimate, and nothing when nothing is left.
#[test]
fn plan_of_a_resume_shows_only_what_is_left() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let sets = ["load.rates=[20, 4]", "load.num_prompts=20", "load.warmup=0"];
    let out = apply(tmp.path(), &sets, &["--only", "simple-tp1-074b25"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = run_dir(tmp.path());
    let plan = |extra: &[&str]| {
        let mut c = Command::new(BIN);
        c.args([
            "plan",
            "experiments/sim-demo.toml",
            "--no-history",
            "--resume",
        ])
        .arg(&run);
        for s in sets {
            c.args(["--set", s]);
        }
        c.args(extra).output().unwrap()
    };
    let left = plan(&[]);
    let text = String::from_utf8_lossy(&left.stdout);
    assert!(
        left.status.success(),
        "{}",
        String::from_utf8_lossy(&left.stderr)
    );
    assert!(
        text.contains(&format!(
            "Left of {}: 8 of its 10 planned cells",
            run.display()
        )),
        "{text}"
    );
    assert!(
        text.contains("4 variants · 8 cells · 160 requests"),
        "{text}"
    );
    assert!(!text.contains("simple-tp1-074b25"), "{text}");
    let done = plan(&["--only", "simple-tp1-074b25"]);
    assert!(
        String::from_utf8_lossy(&done.stdout).contains("Nothing is left to run in"),
        "{}",
        String::from_utf8_lossy(&done.stdout)
    );
    // Other overrides than the run's: refused, as `apply --resume` refuses them.
    let wrong = Command::new(BIN)
        .args(["plan", "experiments/sim-demo.toml", "--resume"])
        .arg(&run)
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("give the same overrides"));
}

#[test]
fn a_crashing_instance_fails_its_variant_but_not_the_run() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let sets = [
        "load.rates=[20]",
        "load.num_prompts=20",
        "load.warmup=0",
        "deployment.0.extra_args=[\"--crash-after-requests\", \"5\"]",
    ];
    // The crash flag is part of the deployment, so the simple variants get new ids.
    let crash_id = first_variant_id(&sets);
    let only = [
        "--only",
        crash_id.as_str(),
        "--only",
        "nixl-p1d1-tp1x1-779daf",
    ];
    let out = apply(tmp.path(), &sets, &only).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("1 variant(s) failed: {crash_id}")),
        "{stderr}"
    );
    let run = run_dir(tmp.path());
    let failed = std::fs::read_to_string(run.join(&crash_id).join("FAILED.txt")).unwrap();
    assert!(failed.contains("serve-0 exited"), "{failed}");
    let ok = read_result(&run.join("nixl-p1d1-tp1x1-779daf/vllm-20qps.json"));
    assert_eq!(ok.completed, 20);
    assert_no_orphans(&run);
}

/// An instance that dies on a rate's last request: the load ends at once (the request fails),
/// usually before the crash watch looks. The rate's result must not count as its
/// measurement: it is kept aside in `aborted/`, the variant fails, and a resume measures the
/// rate again (no result file for it).
#[test]
fn a_rate_during_which_an_instance_died_is_not_kept_as_measured() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let sets = [
        "load.rates=[20, 10]",
        "load.num_prompts=20",
        "load.warmup=0",
        // The smoke request, then the rate's 20: the last one finds the server gone.
        "deployment.0.extra_args=[\"--crash-after-requests\", \"20\"]",
    ];
    let Applied {
        id, code, stderr, ..
    } = apply_first_variant(tmp.path(), &sets);
    assert_eq!(code, Some(1), "{stderr}");
    let run = run_dir(tmp.path());
    let variant = run.join(&id);
    assert!(
        !variant.join("vllm-20qps.json").exists(),
        "a spoiled rate was kept as measured: {stderr}"
    );
    let failed = std::fs::read_to_string(variant.join("FAILED.txt")).unwrap();
    assert!(failed.contains("serve-0 exited"), "{failed}");
    // When the load finished before the watch saw the crash (the usual case), its requests
    // are kept aside, failures counted, and named in the error.
    if let Ok(kept) = std::fs::read(variant.join("aborted/vllm-20qps.json")) {
        let kept: RunResult = serde_json::from_slice(&kept).unwrap();
        assert_eq!(kept.completed + kept.failed, 20);
        assert!(kept.failed >= 1);
        assert!(failed.contains("measured again on --resume"), "{failed}");
    }
    // Neither the report nor ls takes the aside copy for a result.
    let ls = Command::new(BIN)
        .args(["ls", "--json"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let ls: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(ls[0]["files"], 0, "{ls}");
    assert_no_orphans(&run);
}

/// A CPU core id of its own for a test's stub "vLLM" (which pins nothing): `apply` claims the
/// cores of a local CPU run against every other vbench, so tests that run side by side must
/// not list the same ones.
fn private_core() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(4096);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A one-variant manifest named `name` on the local backend whose "vLLM" is the shell script
/// `script` (a TOML string; `$1` is `--version` when vbench asks for the version), with
/// `target_extra` added to `[target]`.
fn stub_vllm_manifest(name: &str, script: &str, target_extra: &str) -> String {
    let core = private_core();
    format!(
        r#"name = "{name}"
model = "stub-model"
tokenizer = "{tok}"
[dataset]
kind = "random"
input_len = 32
output_len = 4
[load]
rates = [2]
num_prompts = 4
[target]
backend = "local"
accelerator = "cpu"
cpu_cores_per_instance = 1
cpus = [{core}]
vllm_bin = ["sh", "-c", {script}, "stub"]
health_timeout_s = 120
{target_extra}[[deployment]]
mode = "simple"
"#,
        tok = std::fs::canonicalize("tests/fixtures/tiny-model")
            .unwrap()
            .display(),
    )
}

/// On the CPU build, a second `apply` whose instances would be pinned to a core the first
/// one runs on is refused before it makes a run folder, naming the first.
#[test]
fn a_second_apply_on_the_same_cpu_cores_is_refused_while_the_first_runs() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    // A "vLLM" that never becomes healthy: the first run waits for it until stopped.
    let manifest = stub_vllm_manifest(
        "cores",
        r#""[ \"$1\" = --version ] && echo 0.0-stub && exit 0; exec sleep 3000""#,
        "",
    );
    let core: u32 = manifest
        .lines()
        .find_map(|l| l.strip_prefix("cpus = ["))
        .and_then(|l| l.trim_end_matches(']').parse().ok())
        .unwrap();
    let path = tmp.path().join("cores.toml");
    std::fs::write(&path, manifest).unwrap();
    let apply = |results: &str| {
        let mut c = Command::new(BIN);
        c.args(["apply", path.to_str().unwrap(), "--no-report"])
            .args(["--stop-grace-s", "5", "--results"])
            .arg(tmp.path().join(results));
        c
    };
    let first = apply("first").stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(tmp.path().join("first/cores")).map_or(true, |mut d| d.next().is_none())
    {
        assert!(
            Instant::now() < deadline,
            "the first apply made no run folder"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = apply("second").output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "CPU core {core} is in use by another vbench on this host (pid {}, vbench apply {}, \
             results in {}); vbench does not share CPU cores",
            first.id(),
            path.display(),
            tmp.path().join("first/cores").display()
        )),
        "{stderr}"
    );
    let runs = std::fs::read_dir(tmp.path().join("second/cores")).map_or(0, |d| d.count());
    assert_eq!(runs, 0, "no run folder");
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(first.id() as i32, libc::SIGINT) };
    let out = first.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = std::fs::read_dir(tmp.path().join("first/cores"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_no_orphans(&run);
}

/// vLLM's API server can outlive a failed engine: an instance that logs a fatal line (the
/// `fatal_lines` template) fails its variant at once, not at the health timeout, and is
/// stopped under a short grace period though it ignores SIGTERM (as such a server did on the
/// H200). It also gets the manifest's compile-cache folder, and is launched while vbench's
/// `vllm --version` probe (slow: it imports vLLM) still runs.
#[test]
fn an_instance_that_logs_a_fatal_line_fails_fast_though_its_process_lives() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let line = "ERROR 11-30 12:00:00 [core.py:700] EngineCore failed to start.";
    let manifest = stub_vllm_manifest(
        "fatal",
        &format!(
            r#""[ \"$1\" = --version ] && sleep 4 && echo 0.0-stub && exit 0; trap '' TERM; echo cache=$VLLM_CACHE_ROOT; sleep 1; echo '{line}'; exec sleep 3000""#
        ),
        "compile_cache = \"cache\"\n",
    );
    let path = tmp.path().join("fatal.toml");
    std::fs::write(&path, manifest).unwrap();
    let t0 = Instant::now();
    let out = Command::new(BIN)
        .args(["apply", path.to_str().unwrap(), "--no-report"])
        .args(["--stop-grace-s", "60", "--results"])
        .arg(tmp.path().join("results"))
        .output()
        .unwrap();
    let took = t0.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("serve-0 logged a fatal error (its process is still up)")
            && stderr.contains(line)
            && !stderr.contains("likely cause"),
        "{stderr}"
    );
    // The full grace would be 60 s; a dead instance gets 3.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let (_, variant) = run_and_variant_with(&tmp.path().join("results"), "fatal", "teardown.json");
    let teardown: serde_json::Value =
        serde_json::from_slice(&std::fs::read(variant.join("teardown.json")).unwrap()).unwrap();
    assert_eq!(teardown[0]["killed"], true, "{teardown}");
    assert!(
        teardown[0]["seconds"].as_f64().unwrap() < 10.0,
        "{teardown}"
    );
    let cache = tmp.path().join("cache");
    assert!(cache.is_dir());
    let log_path = variant.join("logs/serve-0.log");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains(&format!("cache={}/vllm", cache.display())),
        "{log}"
    );
    // The instance had started and logged its last line (at ~1 s) well before the version
    // probe answered (at ~4 s) and environment.json was written.
    let env_path = variant.parent().unwrap().join("environment.json");
    let env: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&env_path).unwrap()).unwrap();
    assert_eq!(env["vllm_version"], "0.0-stub", "{env}");
    let modified = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let lead = modified(&env_path)
        .duration_since(modified(&log_path))
        .unwrap_or_default();
    assert!(
        lead > Duration::from_secs(2),
        "the probe came first: {lead:?}"
    );
}

/// A start-up failure whose cause its own log names earlier gets the fix in the error: here
/// vLLM 0.26's all-reduce + RMSNorm fusion on the NVLink-multicast backend, which kills TP2 on
/// machines without multicast (the stub logs the lines vLLM logged on the H200s).
#[test]
fn a_known_start_up_failure_names_its_fix() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let manifest = stub_vllm_manifest(
        "fusion",
        r#""[ \"$1\" = --version ] && echo 0.0-stub && exit 0; echo 'INFO [compilation] Enabled custom fusions: allreduce_rms'; echo 'INFO [flashinfer_comm] Auto-selected flashinfer allreduce backend: mnnvl'; sleep 1; echo 'ERROR RuntimeError: CUDA error: cudaErrorIllegalAddress'; exit 1""#,
        "",
    );
    let path = tmp.path().join("fusion.toml");
    std::fs::write(&path, manifest).unwrap();
    let out = Command::new(BIN)
        .args(["apply", path.to_str().unwrap(), "--no-report", "--results"])
        .arg(tmp.path().join("results"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cudaErrorIllegalAddress")
            && stderr.contains("likely cause: vLLM fused all-reduce with RMSNorm")
            && stderr.contains(r#"'{"pass_config":{"fuse_allreduce_rms":false}}'"#),
        "{stderr}"
    );
}

/// A start-up log line that qualifies the numbers (LMCache's compiled kernels missing, as on
/// the H200 machines' torch: the stub logs that line, then serves as the simulator) is said
/// once at start-up, recorded in every result, and listed once in the report with its rates.
#[test]
fn a_log_line_that_qualifies_the_numbers_is_in_every_result_and_the_report() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let line = "(EngineCore pid=1653) LMCache WARNING: lmcache.cuda_ops compiled extension not \
                found; CudaDeviceOps stays on the torch baseline for all ops.";
    let script = format!(
        r#""[ \"$1\" = --version ] && echo 0.0-stub && exit 0; port=; while [ $# -gt 0 ]; do [ \"$1\" = --port ] && port=$2; shift; done; echo '{line}'; exec {BIN} sim-serve --port $port --model stub-model --profile tiny-cpu""#
    );
    let manifest =
        stub_vllm_manifest("finding", &script, "").replace("rates = [2]", "rates = [2, 4]");
    let path = tmp.path().join("finding.toml");
    std::fs::write(&path, manifest).unwrap();
    let out = Command::new(BIN)
        .args(["apply", path.to_str().unwrap(), "--results"])
        .arg(tmp.path().join("results"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let finding = "LMCache's compiled CUDA kernels did not load in serve-0";
    assert_eq!(stderr.matches(finding).count(), 1, "{stderr}");
    let (run, variant) =
        run_and_variant_with(&tmp.path().join("results"), "finding", "vllm-2qps.json");
    for rate in [2, 4] {
        let r = read_result(&variant.join(format!("vllm-{rate}qps.json")));
        assert!(
            r.vbench
                .load
                .warnings
                .iter()
                .any(|w| w.starts_with(finding)),
            "{rate}: {:?}",
            r.vbench.load.warnings
        );
    }
    let md = std::fs::read_to_string(run.join("report/summary.md")).unwrap();
    assert_eq!(md.matches(finding).count(), 1, "{md}");
    assert!(md.contains(&format!("- 2, 4 req/s: {finding}")), "{md}");
}

/// A local CUDA target on GPU 0 whose `nvidia-smi` (put first on `PATH`, in `<tmp>/bin`) is a
/// fake, and whose "vLLM" is the simulator behind a vLLM-shaped stub with a profile file of
/// the test's own, so the fake can find the server by that path in /proc (no procps needed).
/// `apps` is the shell that answers `--query-compute-apps`, with `$ours` the server's pids (if
/// it runs), `$dir` the temporary folder and `$uuid` the fake GPU's UUID (the folder's own,
/// so tests beside each other never claim the same GPU). Returns the manifest's path and
/// `PATH`.
fn fake_gpu_target(tmp: &Path, name: &str, apps: &str) -> (PathBuf, String) {
    let bin = tmp.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let profile = tmp.join("gpu-test-profile.toml");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/sim/profiles/tiny-cpu.toml"
        ),
        &profile,
    )
    .unwrap();
    let smi = bin.join("nvidia-smi");
    std::fs::write(
        &smi,
        format!(
            "#!/bin/sh\n\
         dir='{dir}'\n\
         uuid='GPU-fake-{token}'\n\
         case \"$*\" in\n\
         *query-compute-apps*) ours=; for d in /proc/[0-9]*; do \
         case \"$(tr '\\0' ' ' < $d/cmdline 2>/dev/null)\" in *'{profile}'*) ours=\"$ours ${{d#/proc/}}\" ;; esac; \
         done; {apps} ;;\n\
         *query-gpu=index,uuid*) echo \"0, $uuid\" ;;\n\
         *query-gpu=index\\ *) echo 0 ;;\n\
         *clocks_event_reasons*) echo '0, 93, 1215, 1980, 655.5, 91, 120000, 0x0000000000000044'; \
         echo '1, 0, 345, 1980, 75, 30, 0, 0x0000000000000001' ;;\n\
         *) exit 9 ;;\n\
         esac\n",
            dir = tmp.display(),
            token = tmp.file_name().unwrap().to_string_lossy().replace('.', ""),
            profile = profile.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&smi, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = format!(
        r#""[ \"$1\" = --version ] && echo 0.0-stub && exit 0; port=; while [ $# -gt 0 ]; do [ \"$1\" = --port ] && port=$2; shift; done; exec {BIN} sim-serve --port $port --model stub-model --profile {}""#,
        profile.display()
    );
    let manifest = stub_vllm_manifest(name, &script, "")
        .replace(
            "accelerator = \"cpu\"",
            "accelerator = \"cuda\"\ngpus = [0]",
        )
        .replace("num_prompts = 4", "num_prompts = 8");
    let path = tmp.join(format!("{name}.toml"));
    std::fs::write(&path, manifest).unwrap();
    let search_path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    (path, search_path)
}

/// On a local CUDA target `apply` samples `nvidia-smi` while each rate runs: every result
/// has each GPU's utilisation, clocks, power and temperature, a GPU that slowed itself down
/// (here the fake nvidia-smi reports a hardware thermal slowdown at a low clock) is warned of,
/// so is another process on the deployment's GPU, and the report shows a GPUs column.
#[test]
fn gpu_telemetry_is_sampled_per_rate_and_a_thermal_slowdown_is_named() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    // While the server runs, pid 1 is another process on GPU 0.
    let (path, search_path) = fake_gpu_target(
        tmp.path(),
        "gpus",
        "[ -n \"$ours\" ] || exit 0; \
         for p in $ours; do echo \"$uuid, $p, 70000\"; done; echo \"$uuid, 1, 900\"",
    );
    let out = Command::new(BIN)
        .args(["apply", path.to_str().unwrap(), "--results"])
        .arg(tmp.path().join("results"))
        .env("PATH", search_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let warning = "the driver slowed a GPU down to protect it during this rate: GPU 0 \
                   (hardware thermal slowdown): SM clock down to 1,215 MHz of 1,980, up to 91 °C";
    assert!(stderr.contains(warning), "{stderr}");
    let (run, variant) =
        run_and_variant_with(&tmp.path().join("results"), "gpus", "vllm-2qps.json");
    let r = read_result(&variant.join("vllm-2qps.json"));
    // GPU 1 is not the deployment's: left out.
    assert_eq!(r.vbench.gpus.len(), 1, "{:?}", r.vbench.gpus);
    let g = &r.vbench.gpus[0];
    // Eight requests at 2 req/s take about four seconds: a reading a second.
    assert!(g.samples >= 2, "{g:?}");
    assert_eq!(
        (
            g.index,
            g.util_mean_pct,
            g.sm_clock_min_mhz,
            g.power_max_w,
            g.temp_max_c
        ),
        (0, Some(93.0), Some(1215.0), Some(655.5), Some(91.0))
    );
    assert_eq!(g.slowdowns, ["power cap", "hardware thermal slowdown"]);
    // The server is the deployment's; pid 1 is not.
    assert_eq!(
        g.other_processes,
        [vbench::load::result::GpuProcess {
            pid: 1,
            used_mib: 900
        }]
    );
    assert!(
        stderr.contains(
            "another process used the deployment's GPUs during this rate: GPU 0 (pid 1, 900 MiB)"
        ),
        "{stderr}"
    );
    assert!(r
        .vbench
        .load
        .warnings
        .iter()
        .any(|w| w.starts_with(warning)));
    let md = std::fs::read_to_string(run.join("report/summary.md")).unwrap();
    assert!(md.contains(" GPUs |"), "{md}");
    assert!(
        md.contains(
            "util 93 %, SM ≥ 1,215 MHz, ≤ 656 W, ≤ 91 °C; power cap, hardware thermal slowdown"
        ),
        "{md}"
    );
}

/// A GPU the manifest names but this host lacks is said before anything starts (`plan` and
/// `apply`): an instance placed there would fail only after its launch.
#[test]
fn a_named_gpu_this_host_lacks_is_said_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, search_path) = fake_gpu_target(tmp.path(), "absent", "exit 0");
    let warning = "target.gpus names GPU 3, which nvidia-smi does not list on this host (it \
                   lists GPU 0): an instance placed there cannot start";
    let plan = Command::new(BIN)
        .args(["plan", path.to_str().unwrap(), "--set", "target.gpus=[3]"])
        .env("PATH", &search_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&plan.stderr);
    assert!(plan.status.success(), "{stderr}");
    assert!(stderr.contains(warning), "{stderr}");
    // The GPU the host has: nothing to say.
    let plan = Command::new(BIN)
        .args(["plan", path.to_str().unwrap()])
        .env("PATH", &search_path)
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&plan.stderr).contains("does not list"));
}

/// A driver that stops answering once the deployment is gone (`nvidia-smi` hangs in the GPU
/// check after teardown) cannot hold the user: a second Ctrl-C ends the wait at once, the
/// hanging query is killed, and the measured rate is kept.
#[test]
fn a_second_signal_stops_waiting_for_a_hanging_nvidia_smi() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let (path, search_path) = fake_gpu_target(
        tmp.path(),
        "wedged",
        "if [ -n \"$ours\" ]; then touch \"$dir/served\"; \
         for p in $ours; do echo \"$uuid, $p, 70000\"; done; \
         elif [ -e \"$dir/served\" ]; then echo $$ > \"$dir/hanging.tmp\"; \
         mv \"$dir/hanging.tmp\" \"$dir/hanging\"; exec sleep 300; fi",
    );
    let stderr_path = tmp.path().join("stderr");
    let mut child = Command::new(BIN)
        .args(["apply", path.to_str().unwrap(), "--no-report", "--results"])
        .arg(tmp.path().join("results"))
        .env("PATH", search_path)
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let hanging = tmp.path().join("hanging");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !hanging.exists() {
        assert!(
            Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "the GPU check after teardown never ran: {}",
            std::fs::read_to_string(&stderr_path).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let query: i32 = std::fs::read_to_string(&hanging)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: signalling our own child, twice.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    std::thread::sleep(Duration::from_millis(300));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = crate::support::exit_within(
        &mut child,
        Duration::from_secs(15),
        "still waiting for nvidia-smi",
    );
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    // Every cell was measured before the signals: the run is complete (a run with variants
    // still to do ends 130, as any interrupted run).
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("second signal: not waiting for the GPUs"),
        "{stderr}"
    );
    // SAFETY: signal 0 only asks whether the pid exists.
    let alive = unsafe { libc::kill(query, 0) } == 0;
    assert!(!alive, "the hanging nvidia-smi ({query}) was left running");
    let (_, variant) =
        run_and_variant_with(&tmp.path().join("results"), "wedged", "vllm-2qps.json");
    let r = read_result(&variant.join("vllm-2qps.json"));
    assert_eq!((r.completed, r.failed), (8, 0));
}

/// Two applies on one host asking for the same GPU: the second is refused before it makes a
/// run folder, naming the first (nvidia-smi cannot tell, as a vLLM still starting holds no
/// GPU memory yet), and gets the GPU once the first has ended.
#[test]
fn a_second_apply_on_the_same_gpu_is_refused_while_the_first_runs() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let (path, search_path) = fake_gpu_target(
        tmp.path(),
        "claims",
        "for p in $ours; do echo \"$uuid, $p, 70000\"; done",
    );
    let apply = |results: &str| {
        let mut c = Command::new(BIN);
        c.args(["apply", path.to_str().unwrap(), "--no-report", "--results"])
            .arg(tmp.path().join(results))
            .args(["--set", "load.rates=[2, 3]"])
            .env("PATH", &search_path);
        c
    };
    let first = apply("first").stderr(Stdio::piped()).spawn().unwrap();
    // The claim is taken before the run folder is made.
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(tmp.path().join("first/claims"))
        .map_or(true, |mut d| d.next().is_none())
    {
        assert!(
            Instant::now() < deadline,
            "the first apply made no run folder"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = apply("second").output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    let token = tmp
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace('.', "");
    assert!(
        stderr.contains(&format!(
            "GPU 0 (GPU-fake-{token}) is in use by another vbench on this host (pid {}, vbench \
             apply {}, results in {})",
            first.id(),
            path.display(),
            tmp.path().join("first/claims").display()
        )),
        "{stderr}"
    );
    let runs = std::fs::read_dir(tmp.path().join("second/claims")).map_or(0, |d| d.count());
    assert_eq!(runs, 0, "no run folder");
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = apply("second").output().unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

/// Errors a server logs while a rate runs are counted per component, kept in the result with
/// the first line, warned of and listed in the report: here the simulator fails a share of
/// requests and logs each at vLLM's ERROR level.
#[test]
fn errors_the_servers_log_during_a_rate_are_counted_and_named() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let sets = [
        "load.rates=[40]",
        "load.num_prompts=40",
        "load.warmup=0",
        "deployment.0.extra_args=[\"--fail-fraction\", \"0.25\"]",
    ];
    let id = variant_id(&sets, "simple-tp1");
    let out = apply_with_report(tmp.path(), &sets, &["--only", &id])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let run = run_dir(tmp.path());
    let r = read_result(&run.join(&id).join("vllm-40qps.json"));
    assert!(r.failed > 0, "some requests failed: {stderr}");
    assert_eq!(r.vbench.log_errors.len(), 1, "{:?}", r.vbench.log_errors);
    let e = &r.vbench.log_errors[0];
    // One logged line per failed request (the smoke request before the cell succeeded).
    assert_eq!((e.component.as_str(), e.lines), ("serve-0", r.failed));
    assert!(
        e.first.contains("simulated failure (--fail-fraction)"),
        "{e:?}"
    );
    let warning = format!(
        "the servers logged errors during this rate: serve-0 {} lines",
        r.failed
    );
    assert!(stderr.contains(&warning), "{stderr}");
    assert!(r
        .vbench
        .load
        .warnings
        .iter()
        .any(|w| w.starts_with(&warning)));
    let md = std::fs::read_to_string(run.join("report/summary.md")).unwrap();
    assert!(md.contains(&format!("- 40 req/s: {warning}")), "{md}");
    // The headline row points at them.
    assert!(
        md.contains("warnings at 40 req/s (listed under its per-rate table)"),
        "{md}"
    );
}

/// Decoders that prefill prompts themselves instead of taking their KV (vLLM's recompute
/// fallback; the simulator's `--recompute-kv-after N`) measure the wrong system. From the
/// first request, the start-up check fails the NIXL and LMCache variants; from the third (the
/// start-up smoke and output-check requests got theirs), the rate runs and its result carries
/// a warning with the share of prompt tokens the decoders computed.
#[test]
fn decoders_that_recompute_prompts_are_caught_at_start_up_and_per_rate() {
    let _busy = crate::support::busy();
    let base = ["load.rates=[20]", "load.num_prompts=10", "load.warmup=0"];
    let tmp = tempfile::tempdir().unwrap();
    let mut sets = base.to_vec();
    sets.push("deployment.1.decode.extra_args=[\"--recompute-kv-after\", \"0\"]");
    sets.push("deployment.2.decode.extra_args=[\"--recompute-kv-after\", \"0\"]");
    let nixl = variant_id(&sets, "nixl-p1d1");
    let lmcache = variant_id(&sets, "lmcache-p1d1");
    let out = apply(tmp.path(), &sets, &["--only", &nixl, "--only", &lmcache])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("2 variant(s) failed"), "{stderr}");
    assert_eq!(
        stderr
            .matches("the smoke request reached the decoders without a KV transfer")
            .count(),
        2,
        "{stderr}"
    );
    let run = run_dir(tmp.path());
    assert!(!run.join(&nixl).join("vllm-20qps.json").exists());
    assert_no_orphans(&run);

    let tmp = tempfile::tempdir().unwrap();
    let mut sets = base.to_vec();
    sets.push("deployment.1.decode.extra_args=[\"--recompute-kv-after\", \"2\"]");
    // The variant's id covers its flags.
    let nixl = variant_id(&sets, "nixl-p1d1");
    let out = apply(tmp.path(), &sets, &["--only", &nixl])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("KV transfer verified"), "{stderr}");
    let r = read_result(&run_dir(tmp.path()).join(&nixl).join("vllm-20qps.json"));
    assert_eq!(r.failed, 0);
    let decode = r.vbench.cache_reuse.as_ref().unwrap().roles[1].clone();
    assert_eq!(decode.role, "decode");
    assert!(decode.computed_tokens > 0.0, "{decode:?}");
    let said = format!(
        "the decoders computed {:.0} of this rate's {:.0} prompt tokens themselves",
        decode.computed_tokens, decode.prompt_tokens
    );
    assert!(
        r.vbench.load.warnings.iter().any(|w| w.starts_with(&said)),
        "{said}: {:?}",
        r.vbench.load.warnings
    );
    assert!(stderr.contains(&said), "{stderr}");
}

/// A decoder with far less KV cache than its prefiller for the same GPU memory (as when two
/// instances sharing a GPU start together; here the simulator's `--num-gpu-blocks-override`,
/// vLLM's flag) is named at start-up and recorded with every cell.
#[test]
fn roles_with_uneven_kv_caches_are_named_at_start_up() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let sets = [
        "load.rates=[20, 40]",
        "load.num_prompts=6",
        "load.warmup=1",
        "deployment.1.decode.extra_args=[\"--num-gpu-blocks-override\", \"600\"]",
    ];
    let id = variant_id(&sets, "nixl-p1d1");
    let out = apply(tmp.path(), &sets, &["--only", &id]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // 600 blocks of 16 tokens against the profile's 769,520.
    let uneven = "the decode instances hold 9,600 tokens of KV cache each, the prefill instances \
                  769,520 (80.16× more for the GPU memory each was given)";
    assert_eq!(stderr.matches(uneven).count(), 1, "said once: {stderr}");
    let run = run_dir(tmp.path());
    for rate in [20, 40] {
        let r = read_result(&run.join(&id).join(format!("vllm-{rate}qps.json")));
        assert!(
            r.vbench.load.warnings.iter().any(|w| w.starts_with(uneven)),
            "{rate}: {:?}",
            r.vbench.load.warnings
        );
        let k = r.vbench.kv_cache.unwrap();
        assert_eq!(k.roles[1].capacity_tokens, Some(9_600));
    }
}

/// `target.start = "one_by_one"`: each instance is healthy before the next starts (for
/// instances sharing a GPU, which split its memory unevenly when they start together).
#[test]
fn instances_start_one_by_one_when_asked() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let base = ["load.rates=[20]", "load.num_prompts=4", "load.warmup=0"];
    for (order, healthy) in [
        (None, vec!["healthy: prefill-0, decode-0 ("]),
        (
            Some("target.start=\"one_by_one\""),
            vec!["healthy: prefill-0 (", "healthy: decode-0 ("],
        ),
    ] {
        let sets: Vec<&str> = base.iter().copied().chain(order).collect();
        let id = variant_id(&sets, "nixl-p1d1");
        let results = tmp.path().join(if order.is_some() { "one" } else { "all" });
        let out = apply(&results, &sets, &["--only", &id]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        let lines: Vec<&str> = stderr
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("healthy: ") && !l.starts_with("healthy: proxy"))
            .collect();
        assert_eq!(lines.len(), healthy.len(), "{stderr}");
        for (line, want) in lines.iter().zip(&healthy) {
            assert!(line.starts_with(want), "{line} / {want}: {stderr}");
        }
    }
}

/// A server that wedges mid-rate (no answer to anything, /health included) holds every
/// request until its timeout; its `/health`, watched while the rate runs, fails the variant
/// within seconds instead.
#[test]
fn a_server_that_wedges_mid_rate_fails_its_variant_by_its_health() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let sets = [
        "load.rates=[2]",
        "load.num_prompts=60",
        "load.warmup=0",
        "load.timeout_s=300",
        "deployment.0.extra_args=[\"--hang-after\", \"4\"]",
    ];
    let Applied {
        code, stderr, took, ..
    } = apply_first_variant(tmp.path(), &sets);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("serve-0's /health went bad while it served (no answer in 5s, 3 times"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert_no_orphans(&run_dir(tmp.path()));
}

#[test]
fn an_instance_that_never_gets_healthy_times_out_with_its_log() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let sets = [
        "load.rates=[20]",
        "load.num_prompts=5",
        "target.health_timeout_s=2",
        "deployment.0.extra_args=[\"--unhealthy-for\", \"60\"]",
        "deployment.0.tp=1",
    ];
    let Applied {
        code, stderr, took, ..
    } = apply_first_variant(tmp.path(), &sets);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("not healthy after 2s (target.health_timeout_s): serve-0"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(30));
    assert_no_orphans(&run_dir(tmp.path()));
}

#[test]
fn apply_json_lists_every_planned_cell_with_what_it_measured() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let sets = ["load.rates=[20]", "load.num_prompts=8", "load.warmup=1"];
    let only = first_variant_id(&sets);
    let out = apply(tmp.path(), &sets, &["--only", &only, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let run = run_dir(tmp.path());
    assert_eq!(doc["run_dir"], run.display().to_string());
    assert_eq!(doc["outcome"], "complete");
    assert!(doc["report"].is_null(), "--no-report");
    let cells = doc["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 5, "one rate x five variants planned");
    for c in cells {
        if c["variant_id"] == only.as_str() {
            assert_eq!(c["measured"], true, "{c}");
            assert_eq!(
                (c["completed"].as_u64(), c["failed"].as_u64()),
                (Some(8), Some(0))
            );
            assert_eq!(c["client_fell_behind"], false);
            assert!(std::path::Path::new(c["result_file"].as_str().unwrap()).is_file());
        } else {
            assert_eq!(c["measured"], false, "left out with --only: {c}");
            assert!(c["completed"].is_null());
        }
    }
    assert_no_orphans(&run);
}

/// A resumed LMCache variant whose side-channel ports moved (the variant before it, measured
/// in the first attempt, is skipped now and no longer holds the first block of ports) writes
/// this attempt's LMCache configs beside the first attempt's, which stay as they were, and
/// finishes its rates.
#[test]
fn a_resumed_lmcache_variant_whose_ports_moved_keeps_both_attempts_configs() {
    // Alone: the test is about which LMCache port block each variant gets, and other runs'
    // LMCache variants beside it take blocks from the same base port.
    let _alone = crate::support::serial();
    let tmp = tempfile::tempdir().unwrap();
    let sets = [
        "load.rates=[20, 4]",
        "load.num_prompts=20",
        "load.warmup=0",
        "deployment.2.prefill.instances=[1, 2]",
    ];
    let first = variant_id(&sets, "lmcache-p1d1");
    let second = variant_id(&sets, "lmcache-p2d1");
    let only = ["--only", first.as_str(), "--only", second.as_str()];
    let child = apply(tmp.path(), &sets, &only)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (out, _) = interrupt_after(child, tmp.path(), &format!("{second}/vllm-20qps.json"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let run = run_dir(tmp.path());
    assert!(
        run.join(&first).join("vllm-4qps.json").is_file(),
        "the first variant was measured whole: {stderr}"
    );
    let configs = |dir: &Path| -> Vec<(PathBuf, String)> {
        let mut found: Vec<(PathBuf, String)> = walkdir(dir)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                (p, text)
            })
            .collect();
        found.sort();
        found
    };
    let before = configs(&run.join(&second));
    assert_eq!(before.len(), 3, "a YAML per instance: {before:?}");

    let mut resume = apply(tmp.path(), &sets, &only);
    resume.arg("--resume").arg(&run);
    let out = resume.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr
            .matches("every rate already measured: skipped")
            .count(),
        1,
        "{stderr}"
    );
    assert!(run.join(&second).join("vllm-4qps.json").is_file());
    let after = configs(&run.join(&second));
    assert_eq!(
        after.len(),
        6,
        "this attempt's beside the first's: {after:?}"
    );
    for (path, text) in &before {
        assert_eq!(&std::fs::read_to_string(path).unwrap(), text, "{path:?}");
    }
    assert_no_orphans(&run);
}

/// Every file below `dir`.
fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// After an interrupted run and its `--resume`: the report is replaced whole (no `report-2/`),
/// `vbench report` does not list vbench's own resume records as skipped, and `vbench ls`
/// counts only result files.
#[test]
fn a_resumed_run_reads_whole_in_report_and_ls() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let sets = [
        "load.rates=[20, 4]",
        "load.num_prompts=20",
        "load.warmup=0",
        "report.formats=[\"svg\"]",
    ];
    let only = ["--only", "simple-tp1-074b25"];
    let child = apply_with_report(tmp.path(), &sets, &only)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (out, _) = interrupt_after(child, tmp.path(), "simple-tp1-074b25/vllm-20qps.json");
    assert_eq!(out.status.code(), Some(130));
    let run = run_dir(tmp.path());
    assert!(
        run.join("report/index.html").is_file(),
        "the interrupted attempt reports what it measured"
    );

    let mut resume = apply_with_report(tmp.path(), &sets, &only);
    resume.arg("--resume").arg(&run);
    let out = resume.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v = run.join("simple-tp1-074b25");
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let resumed: Vec<String> = names(&v)
        .into_iter()
        .chain(names(&run))
        .filter(|n| n.contains("-resume-"))
        .collect();
    assert_eq!(
        resumed.len(),
        4,
        "deployment, teardown, timing, environment: {resumed:?}"
    );
    // One report, the resumed one, covering both rates.
    assert!(!run.join("report-2").exists(), "{:?}", names(&run));
    let summary = std::fs::read_to_string(run.join("report/summary.md")).unwrap();
    assert!(summary.contains("simple"), "{summary}");
    assert!(
        !names(&run).iter().any(|n| n.starts_with(".report")),
        "no staging folder left: {:?}",
        names(&run)
    );

    // `vbench report` reads the run without complaining about vbench's own records.
    let out = Command::new(BIN)
        .args(["report"])
        .arg(&run)
        .arg("--out")
        .arg(tmp.path().join("again"))
        .arg("--format")
        .arg("svg")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("skipped"), "{stderr}");

    // `vbench ls` counts the two result files only, and both planned cells of the variant.
    let out = Command::new(BIN)
        .args(["ls", "--json"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entry = &runs[0];
    assert_eq!(entry["files"], 2, "{entry}");
    assert_eq!(entry["measured_cells"], 2, "{entry}");
    assert!(entry["planned_cells"].as_u64().unwrap() > 2, "{entry}");
}

/// A tokenizer that is not there is found before anything is launched: exit 2, no run folder,
/// no process.
#[test]
fn a_missing_tokenizer_is_bad_input_before_any_launch() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let out = apply(
        tmp.path(),
        &["tokenizer=\"/no/such/tokenizer\""],
        &["--only", "simple-tp1-074b25"],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/no/such/tokenizer"), "{stderr}");
    let runs = std::fs::read_dir(tmp.path().join("sim-demo"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(runs, 0, "no run folder");
}

/// Two `apply` in one run folder: the second is refused at once, naming the first, which
/// finishes undisturbed.
#[test]
fn a_second_apply_in_the_same_run_folder_is_refused() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let sets = ["load.rates=[20, 4]", "load.num_prompts=20", "load.warmup=0"];
    let only = ["--only", "simple-tp1-074b25"];
    let first = apply(tmp.path(), &sets, &only)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let run = wait_for(tmp.path(), "plan.json");
    let second = apply(tmp.path(), &sets, &only)
        .arg("--resume")
        .arg(&run)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("another vbench is running in {}", run.display()))
            && stderr.contains(&format!("process {}", first.id())),
        "{stderr}"
    );
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for r in ["20", "4"] {
        assert!(run
            .join(format!("simple-tp1-074b25/vllm-{r}qps.json"))
            .is_file());
    }
    assert!(!run.join("simple-tp1-074b25/FAILED.txt").exists());
    assert_no_orphans(&run);
}

/// `kill -9` of apply (what the OOM killer or a batch system does): its reaper stops every
/// instance and the proxy, and a resume then finishes the run.
#[test]
fn sigkill_of_apply_leaves_no_process_behind() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let sets = ["load.rates=[20, 4]", "load.num_prompts=20", "load.warmup=0"];
    let only = ["--only", "nixl-p1d1-tp1x1-779daf"];
    let mut child = apply(tmp.path(), &sets, &only)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let run = wait_for(tmp.path(), "nixl-p1d1-tp1x1-779daf/vllm-20qps.json");
    child.kill().unwrap(); // SIGKILL: no teardown of its own
    child.wait().unwrap();
    assert_no_orphans(&run);

    let out = apply(tmp.path(), &sets, &only)
        .arg("--resume")
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(run.join("nixl-p1d1-tp1x1-779daf/vllm-4qps.json").is_file());
    assert_no_orphans(&run);
}

/// The process ids of `parent`'s children whose command line contains `needle`.
fn children_running(parent: u32, needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let ppid: u32 = stat[stat.rfind(')')? + 1..]
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            (ppid == parent && String::from_utf8_lossy(&cmd).contains(needle)).then_some(pid)
        })
        .collect()
}

/// SIGKILL an apply and its reaper together (a `kill -9` of both, a batch system that kills
/// by name): the components are left running, marked with the run.
fn kill_apply_and_reaper(child: &mut Child) {
    let reapers = children_running(child.id(), "reaper");
    assert_eq!(reapers.len(), 1, "apply runs one reaper");
    // SAFETY: signalling a process this test started (through apply).
    unsafe { libc::kill(reapers[0], libc::SIGKILL) };
    child.kill().unwrap();
    child.wait().unwrap();
}

fn component_count(run: &Path) -> usize {
    let ports = component_ports(run);
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c).replace('\0', " ");
                    ports.iter().any(|p| c.contains(&format!("--port {p} ")))
                })
                .unwrap_or(false)
        })
        .count()
}

/// When apply and its reaper both die, the run's processes carry its mark: `vbench clean`
/// names and stops them (and removes unfinished writes, never results), and so does the next
/// `--resume` before it launches anything.
#[test]
fn leftovers_of_a_run_whose_reaper_died_too_are_found_by_clean_and_resume() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let sets = [
        "load.rates=[20, 4, 3]",
        "load.num_prompts=20",
        "load.warmup=0",
    ];
    let only = ["--only", "nixl-p1d1-tp1x1-779daf"];
    let mut child = apply(tmp.path(), &sets, &only)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let run = wait_for(tmp.path(), "nixl-p1d1-tp1x1-779daf/vllm-20qps.json");
    kill_apply_and_reaper(&mut child);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        component_count(&run),
        3,
        "prefill, decode and proxy left running"
    );
    let partial = run.join("nixl-p1d1-tp1x1-779daf/.vbench-partial-Ab12Cd");
    std::fs::write(&partial, "half a result").unwrap();
    let result = run.join("nixl-p1d1-tp1x1-779daf/vllm-20qps.json");
    let result_bytes = std::fs::read(&result).unwrap();

    let clean = |extra: &[&str]| {
        let out = Command::new(BIN)
            .arg("clean")
            .arg(&run)
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let listed = clean(&["--dry-run"]);
    for component in ["prefill-0", "decode-0", "proxy"] {
        assert!(listed.contains("would stop pid "), "{listed}");
        assert!(
            listed.contains(&format!("({component}, group ")),
            "{listed}"
        );
    }
    assert!(listed.contains("would remove") && listed.contains(".vbench-partial-Ab12Cd"));
    assert_eq!(component_count(&run), 3, "a dry run stops nothing");
    let cleaned = clean(&[]);
    // Ours, and any write the SIGKILL cut short (a metrics sample being saved).
    assert!(
        cleaned.contains("stopped 3 process(es), removed ")
            && cleaned.contains(".vbench-partial-Ab12Cd"),
        "{cleaned}"
    );
    assert_no_orphans(&run);
    assert!(!partial.exists());
    assert_eq!(std::fs::read(&result).unwrap(), result_bytes);
    assert!(clean(&[]).contains("nothing left behind"));

    // The same again, left for the resume to find.
    let mut child = apply(tmp.path(), &sets, &only)
        .arg("--resume")
        .arg(&run)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(tmp.path(), "nixl-p1d1-tp1x1-779daf/vllm-4qps.json");
    kill_apply_and_reaper(&mut child);
    let out = apply(tmp.path(), &sets, &only)
        .arg("--resume")
        .arg(&run)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("an earlier apply of this run left 3 process(es) running"),
        "{stderr}"
    );
    assert!(run.join("nixl-p1d1-tp1x1-779daf/vllm-3qps.json").is_file());
    assert_no_orphans(&run);
}

/// A component whose group ignores SIGTERM (a stubborn worker) would hold teardown for the
/// whole grace period; a second Ctrl-C kills every group at once.
#[test]
fn a_second_ctrl_c_during_teardown_kills_at_once() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let marker = "sleep 3217";
    let template = std::fs::canonicalize("tests/fixtures/slurm/sim_serve_as_vllm.hbs").unwrap();
    // vllm_bin: a shell that leaves a TERM-ignoring `sleep` in the group, then runs sim-serve.
    let manifest = format!(
        r#"name = "stubborn"
model = "sim-model"
tokenizer = "{tok}"
[dataset]
kind = "random"
input_len = 32
output_len = 4
[load]
rates = [2]
num_prompts = 400
warmup = 0
[target]
backend = "local"
accelerator = "cpu"
cpu_cores_per_instance = 1
cpus = [{core}]
vllm_bin = ["sh", "-c", "trap '' TERM; {marker} & exec \"$0\" \"$@\"", "{bin}"]
health_timeout_s = 60
[[deployment]]
mode = "simple"
templates = {{ vllm_serve = "{template}" }}
"#,
        tok = std::fs::canonicalize("tests/fixtures/tiny-model")
            .unwrap()
            .display(),
        bin = BIN,
        template = template.display(),
        core = private_core(),
    );
    let path = tmp.path().join("stubborn.toml");
    std::fs::write(&path, manifest).unwrap();
    let mut child = Command::new(BIN)
        .args(["apply", path.to_str().unwrap(), "--no-report"])
        .args(["--stop-grace-s", "120", "--results"])
        .arg(tmp.path().join("results"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stubborn_alive = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim() == marker)
                .unwrap_or(false)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stubborn_alive() {
        assert!(
            Instant::now() < deadline,
            "the stubborn component never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(3)); // healthy, and measuring
                                                // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    std::thread::sleep(Duration::from_secs(2)); // teardown has begun; the sleep ignores TERM
    assert!(stubborn_alive(), "the grace period holds teardown");
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status =
        crate::support::exit_within(&mut child, Duration::from_secs(20), "still tearing down");
    assert_eq!(status.code(), Some(130));
    assert!(!stubborn_alive(), "the stubborn group was killed");
}

/// No file of the run folder (it has more than five) holds any of `needles`.
fn assert_no_file_holds(run: &Path, needles: &[&str]) {
    let mut stack = vec![run.to_path_buf()];
    let mut read = 0;
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            read += 1;
            let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
            for s in needles {
                assert!(!text.contains(s), "{s} in {}", p.display());
            }
        }
    }
    assert!(read > 5);
}

/// Secrets given in the manifest or with `--set` reach the processes but no file of the run.
#[test]
fn secrets_never_reach_the_run_folder() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let sets = [
        "load.rates=[20]",
        "load.num_prompts=10",
        "load.warmup=0",
        "target.env.HF_TOKEN=\"hf_SeCrEt1\"",
        "target.env.MY_PASSWD=\"SeCrEt2\"",
        "target.env.AUTH=\"Bearer SeCrEt3\"",
    ];
    // The environment is part of a variant's identity.
    let id = first_variant_id(&sets);
    let only = ["--only", id.as_str()];
    let out = apply(tmp.path(), &sets, &only).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = run_dir(tmp.path());
    // manifest.toml is the user's own file, copied as it is (the --set values are not in it).
    assert_no_file_holds(&run, &["SeCrEt1", "SeCrEt2", "SeCrEt3"]);
    let plan = std::fs::read_to_string(run.join("plan.json")).unwrap();
    assert!(plan.contains("target.env.HF_TOKEN=<redacted>"), "{plan}");
    // The same overrides resume the run (they are compared redacted).
    let out = apply(tmp.path(), &sets, &only)
        .arg("--resume")
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And validate says where the secrets are written.
    let out = Command::new(BIN)
        .args(["validate", "experiments/sim-demo.toml", "--set", sets[3]])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HF_TOKEN holds a secret"));
}

/// `{ env = "NAME" }` takes a value from vbench's environment at launch: the process gets it,
/// no file of the run holds it, and a reference to an unset variable is bad input found
/// before anything starts.
#[test]
fn an_env_reference_reaches_the_process_and_no_file() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let secret = "hf_RefSeCrEt7";
    let sets = [
        "load.rates=[5]",
        "load.num_prompts=15",
        "load.warmup=0",
        "target.env.HF_TOKEN={ env = \"VBENCH_TEST_TOKEN_SRC\" }",
    ];
    let id = first_variant_id(&sets);
    let only = ["--only", id.as_str()];

    let unset = apply(tmp.path(), &sets, &only)
        .env_remove("VBENCH_TEST_TOKEN_SRC")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&unset.stderr);
    assert_eq!(unset.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("HF_TOKEN = { env = \"VBENCH_TEST_TOKEN_SRC\" }")
            && stderr.contains("not set"),
        "{stderr}"
    );
    assert!(!tmp.path().join("sim-demo").exists(), "nothing started");

    let mut child = apply(tmp.path(), &sets, &only)
        .env("VBENCH_TEST_TOKEN_SRC", secret)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let wanted = format!("HF_TOKEN={secret}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen_in = None;
    while seen_in.is_none() && Instant::now() < deadline {
        seen_in = std::fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
            let env = std::fs::read(e.path().join("environ")).ok()?;
            let vars: Vec<&[u8]> = env.split(|&b| b == 0).collect();
            let component = vars
                .iter()
                .find_map(|v| v.strip_prefix(b"VBENCH_COMPONENT="))?;
            vars.contains(&wanted.as_bytes())
                .then(|| String::from_utf8_lossy(component).into_owned())
        });
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        seen_in.as_deref(),
        Some("serve-0"),
        "the instance got the value"
    );
    assert!(child.wait().unwrap().success());

    let run = run_dir(tmp.path());
    assert_no_file_holds(&run, &["RefSeCrEt7"]);
    let deployment: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join(&id).join("deployment.json")).unwrap())
            .unwrap();
    assert_eq!(
        deployment["components"][0]["env_from"]["HF_TOKEN"],
        "VBENCH_TEST_TOKEN_SRC"
    );
    // A reference is what a manifest should hold: validate does not warn about it.
    let out = Command::new(BIN)
        .args(["validate", "experiments/sim-demo.toml", "--set", sets[3]])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("secret"));
}

/// A results folder that cannot take files, or a file system without room for the planned
/// cells, is bad input found before anything is prepared or launched.
#[test]
fn results_that_cannot_be_written_are_bad_input_before_any_launch() {
    let out = Command::new(BIN)
        .args(["apply", "experiments/sim-demo.toml", "--no-report"])
        .args(["--results", "/proc/vbench-cannot-write-here"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("/proc/vbench-cannot-write-here"),
        "{stderr}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let out = apply(
        tmp.path(),
        &["load.num_prompts=1000000000", "dataset.output_len=4000"],
        &[],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("MiB free; the planned cells need about"),
        "{stderr}"
    );
    let runs = std::fs::read_dir(tmp.path().join("sim-demo"))
        .unwrap()
        .count();
    assert_eq!(runs, 0, "no run folder");
}

/// A disk that fills during a run (something else wrote to it) costs no measured cell: the
/// cell being measured is written into the space the run held in reserve, the run stops
/// before its next variant with every process stopped, and a resume, once there is room,
/// measures only what is missing. The results live on a 24 MiB tmpfs, mounted in a private
/// mount namespace (`unshare`), which a `dd` fills after the second variant's first result.
#[test]
fn a_disk_that_fills_mid_run_loses_no_measured_cell_and_stops_the_run() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let (mnt, out) = (tmp.path().join("mnt"), tmp.path().join("out"));
    std::fs::create_dir_all(out.join("results")).unwrap();
    std::fs::create_dir_all(&mnt).unwrap();
    let sets = [
        "load.rates=[10, 20, 40]",
        "load.num_prompts=40",
        "load.warmup=0",
    ];
    let ids = planned_ids(&sets);
    let only: Vec<&str> = ids[..3].iter().flat_map(|id| ["--only", id]).collect();
    let (tp1, tp2, third) = (&ids[0], &ids[1], &ids[2]);
    let run_apply = apply(&mnt, &sets, &only);
    let script = r#"
        set -u
        R=$1; OUT=$2; shift 2
        mount -t tmpfs -o size=24m vbench-full "$R" || exit 97
        "$@" 2>"$OUT/stderr" &
        pid=$!
        while kill -0 $pid 2>/dev/null && ! ls "$R"/sim-demo/*/simple-tp2-*/vllm-10qps.json >/dev/null 2>&1; do
            sleep 0.02
        done
        dd if=/dev/zero of="$R/fill" bs=64k 2>/dev/null
        wait $pid; echo $? >"$OUT/rc"
        rm -f "$R/fill"
        cp -a "$R/." "$OUT/results/"
    "#;
    let status = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(&mnt)
        .arg(&out)
        .arg(run_apply.get_program())
        .args(run_apply.get_args())
        .env("NO_COLOR", "1")
        .status()
        .expect("unshare (util-linux) runs");
    assert!(status.success(), "the namespace script failed: {status}");
    let stderr = std::fs::read_to_string(out.join("stderr")).unwrap();
    let rc = std::fs::read_to_string(out.join("rc")).unwrap();
    assert_eq!(rc.trim(), "1", "{stderr}");
    assert!(
        stderr.contains("was written into the space vbench held in reserve")
            && stderr.contains("the run stopped: the results disk is full")
            && stderr.contains("--resume"),
        "{stderr}"
    );
    let run = run_dir(&out.join("results"));
    // Every cell that was measured says where it went, and is there.
    let written: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(" req/s: "))
        .filter_map(|l| l.split("→ ").nth(1))
        .collect();
    assert_eq!(
        written.len(),
        5,
        "three of {tp1}, and of {tp2} one before the fill and one into the reserve: {stderr}"
    );
    for (variant, rate) in [(tp1, 10), (tp1, 20), (tp1, 40), (tp2, 10), (tp2, 20)] {
        assert!(
            run.join(format!("{variant}/vllm-{rate}qps.json")).is_file(),
            "{variant} at {rate} req/s: {stderr}"
        );
    }
    assert!(!run.join(format!("{tp2}/vllm-40qps.json")).exists());
    assert!(
        !run.join(third).exists(),
        "the third variant never started: {stderr}"
    );
    assert_no_orphans(&run);

    // With room again: only what is missing runs.
    let resumed = apply(&out.join("results"), &sets, &only)
        .arg("--resume")
        .arg(&run)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    let measured = stderr
        .lines()
        .filter(|l| l.contains(" req/s: ") && l.contains("→ "))
        .count();
    assert_eq!(measured, 1 + 3, "{stderr}");
    assert_eq!(stderr.matches("already measured, skipped").count(), 2);
    assert!(run.join(format!("{tp2}/vllm-40qps.json")).is_file());
    assert!(!run.join(format!("{tp2}/FAILED.txt")).exists());
}

/// Each attempt records how long it took (`timing.json`); `vbench plan` then estimates the
/// same variant from those records instead of its defaults, and the next apply compares its
/// time with that estimate.
#[test]
fn plan_estimates_a_variant_from_its_past_runs() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let sets = [
        "load.rates=[40, 80]",
        "load.num_prompts=40",
        "load.warmup=1",
    ];
    let only = ["--only", "simple-tp1-074b25"];
    let plan_json = |extra: &[&str]| -> serde_json::Value {
        let out = Command::new(BIN)
            .args(["plan", "experiments/sim-demo.toml", "--json", "--results"])
            .arg(tmp.path())
            .args(sets.iter().flat_map(|s| ["--set", s]))
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let estimate_of = |plan: &serde_json::Value, id: &str| -> serde_json::Value {
        plan["estimate"]["variants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["variant_id"] == id)
            .unwrap()
            .clone()
    };
    let before = plan_json(&[]);
    assert_eq!(
        estimate_of(&before, "simple-tp1-074b25")["basis"]["past_attempts"],
        0
    );
    let mut timings = Vec::new();
    for round in 0..2 {
        let out = apply(tmp.path(), &sets, &only).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let basis = if round == 0 {
            "(defaults)"
        } else {
            "(1 past run)"
        };
        assert!(
            stderr.contains("  took ") && stderr.contains(basis),
            "{stderr}"
        );
        let runs: Vec<PathBuf> = std::fs::read_dir(tmp.path().join("sim-demo"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(runs.len(), round + 1);
        timings = runs
            .iter()
            .map(|r| {
                let t: serde_json::Value = serde_json::from_slice(
                    &std::fs::read(r.join("simple-tp1-074b25/timing.json")).unwrap(),
                )
                .unwrap();
                assert_eq!(t["outcome"], "completed", "{t}");
                assert_eq!(t["cells"].as_array().unwrap().len(), 2, "{t}");
                t
            })
            .collect();
    }
    // Two past runs: start-up, teardown and each rate are the median (mean of two) of them.
    let after = plan_json(&[]);
    let e = estimate_of(&after, "simple-tp1-074b25");
    assert_eq!(e["basis"]["past_attempts"], 2, "{e}");
    assert_eq!(e["basis"]["rates_measured_before"], 2, "{e}");
    let mean = |f: &dyn Fn(&serde_json::Value) -> f64| timings.iter().map(f).sum::<f64>() / 2.0;
    let close = |a: &serde_json::Value, b: f64| (a.as_f64().unwrap() - b).abs() < 1e-6;
    assert!(
        close(&e["startup_s"], mean(&|t| t["ready_s"].as_f64().unwrap())),
        "{e}"
    );
    assert!(
        close(
            &e["teardown_s"],
            mean(&|t| t["teardown_s"].as_f64().unwrap())
        ),
        "{e}"
    );
    let cells = |t: &serde_json::Value| -> f64 {
        t["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["seconds"].as_f64().unwrap())
            .sum()
    };
    assert!(close(&e["load_s"], mean(&cells)), "{e}");
    // Other variants, and another request count, are not this history.
    assert_eq!(
        estimate_of(&after, "nixl-p1d1-tp1x1-779daf")["basis"]["past_attempts"],
        0
    );
    let more = plan_json(&["--set", "load.num_prompts=80"]);
    let e = estimate_of(&more, "simple-tp1-074b25");
    assert_eq!(e["basis"]["rates_measured_before"], 0, "{e}");
    assert_eq!(e["basis"]["rates_scaled"], 2, "{e}");
    let defaults = plan_json(&["--no-history"]);
    assert_eq!(
        estimate_of(&defaults, "simple-tp1-074b25")["basis"]["past_attempts"],
        0
    );
}

/// A variant's instances start together: three that each take 3 s to become healthy are all
/// healthy after about 3 s, not 9.
#[test]
fn a_variants_instances_start_in_parallel() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let sets = [
        "load.rates=[40]",
        "load.num_prompts=10",
        "load.warmup=0",
        "deployment.1.extra_args=[\"--unhealthy-for\", \"3\"]",
    ];
    let id = variant_id(&sets, "nixl-p2d1");
    let out = apply(tmp.path(), &sets, &["--only", &id]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let timing: serde_json::Value = serde_json::from_slice(
        &std::fs::read(run_dir(tmp.path()).join(&id).join("timing.json")).unwrap(),
    )
    .unwrap();
    let healthy = timing["instances_healthy_s"].as_f64().unwrap();
    assert!((3.0..6.0).contains(&healthy), "{timing}");
}

/// Repeats measure every rate again within one launch, each with its own prompts and arrival
/// instants, into their own files; a resume measures only the repeat that is missing.
#[test]
fn repeats_get_their_own_prompts_instants_and_files_and_resume_per_repeat() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let sets = [
        "load.rates=[40]",
        "load.num_prompts=20",
        "load.warmup=0",
        "load.repeats=2",
    ];
    let only = ["--only", "simple-tp1-074b25"];
    let out = apply(tmp.path(), &sets, &only).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = run_dir(tmp.path());
    let v = run.join("simple-tp1-074b25");
    let first = read_result(&v.join("vllm-40qps.json"));
    let second = read_result(&v.join("vllm-40qps-repeat2.json"));
    assert_eq!(first.vbench.load.repeat, Some(1));
    assert_eq!(second.vbench.load.repeat, Some(2));
    let instants =
        |r: &RunResult| -> Vec<f64> { r.vbench.requests.iter().map(|q| q.scheduled_s).collect() };
    assert_ne!(instants(&first), instants(&second), "same arrival instants");
    assert_ne!(first.input_lens, second.input_lens, "same prompts");
    // Without its file, only the second repeat runs again.
    std::fs::remove_file(v.join("vllm-40qps-repeat2.json")).unwrap();
    let out = apply(tmp.path(), &sets, &only)
        .arg("--resume")
        .arg(&run)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("already measured, skipped"), "{stderr}");
    assert_eq!(
        stderr.matches("→ vllm-40qps-repeat2.json").count(),
        1,
        "{stderr}"
    );
    assert_eq!(
        instants(&read_result(&v.join("vllm-40qps-repeat2.json"))),
        instants(&second),
        "a repeat measured again replays the same instants"
    );
    assert_no_orphans(&run);
}

/// Start-up checks that a disaggregated deployment answers what one instance answers: the same
/// greedy completion through prefill and decode and on a prefill alone. With the simulator's
/// decoders continuing from corrupt KV (`--corrupt-kv`) every NIXL and LMCache variant fails
/// with both answers; the simple ones, which have nothing to compare, run. Without the fault
/// the same variants pass the check.
#[test]
fn a_decoder_continuing_from_the_wrong_kv_fails_the_output_check() {
    let _busy = crate::support::busy();
    let base = ["load.rates=[20]", "load.num_prompts=10", "load.warmup=0"];
    let tmp = tempfile::tempdir().unwrap();
    let mut sets = base.to_vec();
    sets.push("deployment.1.decode.extra_args=[\"--corrupt-kv\"]");
    sets.push("deployment.2.decode.extra_args=[\"--corrupt-kv\"]");
    let out = apply(tmp.path(), &sets, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("3 variant(s) failed"), "{stderr}");
    assert_eq!(
        stderr
            .matches("differs from the same request on one instance")
            .count(),
        3,
        "{stderr}"
    );
    let run = run_dir(tmp.path());
    let measured = variant_dirs(&run)
        .iter()
        .filter(|v| v.join("vllm-20qps.json").is_file())
        .count();
    assert_eq!(measured, 2, "the two simple variants ran");
    assert_no_orphans(&run);
    assert!(stderr.contains("target.verify_output = false"), "{stderr}");

    // Turned off (where greedy decoding is not reproducible), the same deployments run.
    let tmp = tempfile::tempdir().unwrap();
    sets.push("target.verify_output=false");
    let out = apply(tmp.path(), &sets, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("output verified"), "{stderr}");

    let tmp = tempfile::tempdir().unwrap();
    let out = apply(tmp.path(), &base, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr
            .matches("output verified: 8 greedy tokens through prefill and decode")
            .count(),
        3,
        "{stderr}"
    );
}

/// A variant larger than the target is left out, not the whole manifest: `plan` names it and
/// why, `apply` runs the rest (exit 0) and says so, the report lists it as not run, and
/// `--only` that variant is refused. (On two GPUs, sim-demo's 2P1D needs three.)
#[test]
fn a_variant_larger_than_the_target_is_left_out_and_named() {
    let _busy = crate::support::busy();
    let sets = [
        "target.gpus=2",
        "load.rates=[20]",
        "load.num_prompts=10",
        "load.warmup=0",
    ];
    let why = "nixl-p2d1-tp1x1-0eb410 (nixl PF:2 D:1 TP:1x1) is not run: it needs 3 GPUs but \
               the target has 2 (target.gpus = 2)";
    let plan = Command::new(BIN)
        .args(["plan", "experiments/sim-demo.toml"])
        .args(sets.iter().flat_map(|s| ["--set", s]))
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&plan.stdout);
    assert!(plan.status.success(), "{table}");
    assert!(
        table.contains(
            "nixl-p2d1-tp1x1-0eb410  (nixl PF:2 D:1 TP:1x1) is left out: it needs 3 \
                        GPUs but the target has 2 (target.gpus = 2)"
        ) && table.contains("4 variants · 4 cells"),
        "{table}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let out = apply_with_report(tmp.path(), &sets, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(why), "{stderr}");
    let run = run_dir(tmp.path());
    assert_eq!(variant_dirs(&run).len(), 4);
    let md = std::fs::read_to_string(run.join("report/summary.md")).unwrap();
    assert!(
        md.contains("nixl PF:2 D:1 TP:1x1 was not run: it needs 3 GPUs but the target has 2"),
        "{md}"
    );

    let only = apply(tmp.path(), &sets, &["--only", "nixl-p2d1-tp1x1-0eb410"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&only.stderr);
    assert_eq!(only.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "--only nixl-p2d1-tp1x1-0eb410: nixl PF:2 D:1 TP:1x1 cannot run here: it \
                         needs 3 GPUs"
        ),
        "{stderr}"
    );
}

/// LMCache requests whose KV is never reported on the decoder (the simulator's producer stops
/// sending LMCache's notification after the two start-up requests) are not decoded: each fails
/// after `lmcache.kv_wait_s`, is counted, and the result and the terminal say why.
#[test]
fn lmcache_requests_whose_kv_never_arrives_fail_and_say_why() {
    let _busy = crate::support::busy();
    let sets = [
        "load.rates=[20]",
        "load.num_prompts=6",
        "load.warmup=0",
        "deployment.2.prefill.extra_args=[\"--drop-kv-notifications-after\", \"2\"]",
        "deployment.2.lmcache.kv_wait_s=0.3",
    ];
    let id = variant_id(&sets, "lmcache-");
    let tmp = tempfile::tempdir().unwrap();
    let out = apply(tmp.path(), &sets, &["--only", &id]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("output verified"),
        "the start-up requests got through: {stderr}"
    );
    let run = run_dir(tmp.path());
    let result = read_result(&run.join(&id).join("vllm-20qps.json"));
    assert_eq!((result.completed, result.failed), (0, 6), "{stderr}");
    let why = "6 requests failed waiting for LMCache's report that their KV reached the decoder";
    assert!(stderr.contains(why), "{stderr}");
    assert!(
        result
            .vbench
            .load
            .warnings
            .iter()
            .any(|n| n.starts_with(why)),
        "{:?}",
        result.vbench.load.warnings
    );
    let proxy_log = std::fs::read_to_string(run.join(&id).join("logs/proxy.log")).unwrap();
    assert!(
        proxy_log.contains("0 of 1 prefiller ranks reported its KV"),
        "{proxy_log}"
    );
    assert_no_orphans(&run);
}

/// NIXL's transfer counters reach the result and the report: on the built-in profile every
/// request of the cell was one transfer, quick and silent; over a link 100 times slower the
/// mean transfer passes the TTFT objective, and the terminal and the result say the KV path
/// bounds TTFT.
#[test]
fn nixl_transfers_are_counted_and_a_slow_kv_path_is_named() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let builtin = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/sim/profiles/qwen3-0.6b-h200.toml"
    ))
    .unwrap();
    let slow = tmp.path().join("slow-link.toml");
    std::fs::write(
        &slow,
        builtin.replace("bandwidth_gb_s = 14.0", "bandwidth_gb_s = 0.14"),
    )
    .unwrap();
    let slow_set = format!("target.sim_profile=\"{}\"", slow.display());
    let base = ["load.rates=[20]", "load.num_prompts=6", "load.warmup=1"];
    let slo = "SLO met by";
    let warning = "NIXL's KV transfers took";
    for (sets, slow_link) in [
        (base.to_vec(), false),
        ([&base[..], &[slow_set.as_str()]].concat(), true),
    ] {
        // The profile is part of the variant's identity.
        let id = variant_id(&sets, "nixl-p1d1");
        let results = tmp.path().join(if slow_link { "slow" } else { "fast" });
        let out = apply_with_report(&results, &sets, &["--only", &id])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(stderr.contains(slo), "{stderr}");
        // The cell's attainment comes with its Wilson interval over the cell's requests.
        let with_interval =
            predicates::str::is_match(r"SLO met by [0-9.]+ % \(95 %: [0-9.]+-[0-9.]+\) in")
                .unwrap();
        assert!(
            predicates::Predicate::eval(&with_interval, stderr.as_ref()),
            "{stderr}"
        );
        let run = run_dir(&results);
        let result = read_result(&run.join(&id).join("vllm-20qps.json"));
        let t = result
            .vbench
            .kv_transfer
            .expect("NIXL counters in the result");
        // The cell's six requests and its warm-up one, each a transfer of its whole prompt.
        assert_eq!((t.instances, t.transfers), (2, 7.0), "{t:?}");
        let prompts: u64 = result.vbench.requests.iter().map(|r| r.prompt_tokens).sum();
        assert!(t.bytes > prompts as f64 * 114_688.0, "{t:?}");
        assert_eq!(t.trouble(), None);
        let mean = t.mean_xfer_ms().unwrap();
        let noted = result
            .vbench
            .load
            .warnings
            .iter()
            .any(|n| n.starts_with(warning));
        assert_eq!(stderr.contains(warning), slow_link, "{stderr}");
        assert_eq!(noted, slow_link, "{:?}", result.vbench.load.warnings);
        if slow_link {
            // About 100 MB per prompt over 0.14 GB/s: most of a second each.
            assert!(mean > 500.0, "{mean}");
        } else {
            assert!(mean < 125.0, "{mean}");
        }
        // Each role's KV cache: the profile's size (TP 1), and no preemption (the simulator
        // reserves a request's blocks when it admits it).
        let k = result
            .vbench
            .kv_cache
            .expect("KV cache numbers in the result");
        let roles: Vec<(&str, u32, Option<u64>, Option<f64>)> = k
            .roles
            .iter()
            .map(|r| {
                (
                    r.role.as_str(),
                    r.instances,
                    r.capacity_tokens,
                    r.preemptions,
                )
            })
            .collect();
        assert_eq!(
            roles,
            [
                ("prefill", 1, Some(769_520), Some(0.0)),
                ("decode", 1, Some(769_520), Some(0.0))
            ]
        );
        // Sampled once a second: a short cell may catch the cache empty.
        assert!(
            k.roles
                .iter()
                .all(|r| r.usage_max.is_some_and(|u| (0.0..=1.0).contains(&u))),
            "{k:?}"
        );
        assert!(!stderr.contains("preempted"), "{stderr}");
        let md = std::fs::read_to_string(run.join("report/summary.md")).unwrap();
        assert!(md.contains("| KV transfer |"), "{md}");
        assert!(md.contains("7 × mean "), "{md}");
        assert!(md.contains("| KV cache |"), "{md}");
        // Random prompts, nothing reused: no cache figure (the table says 0 %).
        assert!(!run.join("report/cache_reuse.svg").exists());
        // The warning is in the report too, under its rate, as printed.
        assert_eq!(
            md.contains(
                "Warnings recorded with the results:\n\n- 20 req/s: NIXL's KV transfers took"
            ),
            slow_link,
            "{md}"
        );
        assert!(
            md.contains(
                "KV cache per instance: P 769,520 tokens (93.94 × max_model_len); D 769,520"
            ),
            "{md}"
        );
        let html = std::fs::read_to_string(run.join("report/index.html")).unwrap();
        assert!(
            html.contains(">KV transfer</th>"),
            "no column in the HTML report"
        );
        assert_eq!(
            html.contains("<li>20 req/s: NIXL&#x27;s KV transfers took"),
            slow_link,
            "no warning in the HTML report"
        );
        assert_no_orphans(&run);
    }
}

/// `target.api_key_env`: every instance (the simulator reads `VLLM_API_KEY` as vLLM does)
/// refuses `/v1` requests without the key, so the run gets through only because vbench sends
/// it everywhere: the smoke request, the KV and output checks (through the built-in proxy,
/// which passes it on to prefill and decode), the warm-up and the load. The key itself is in
/// no file of the run folder or its report. Without the variable set, nothing starts.
#[test]
fn an_api_key_reaches_every_request_and_no_file() {
    let _busy = crate::support::busy();
    const KEY: &str = "sk-vbench-apply-5f2c9e";
    let sets = [
        "target.api_key_env=\"VBENCH_TEST_APPLY_KEY\"",
        "load.rates=[20]",
        "load.num_prompts=8",
        "load.warmup=1",
    ];
    let tmp = tempfile::tempdir().unwrap();
    let out = apply_with_report(tmp.path(), &sets, &[])
        .env("VBENCH_TEST_APPLY_KEY", KEY)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let run = run_dir(tmp.path());
    let variants = variant_dirs(&run);
    assert_eq!(variants.len(), 5);
    assert_eq!(
        stderr.matches("  API key required: ").count(),
        5,
        "every variant's instances refuse requests without the key: {stderr}"
    );
    assert_eq!(stderr.matches("output verified").count(), 3, "{stderr}");
    for v in &variants {
        let r: RunResult =
            serde_json::from_slice(&std::fs::read(v.join("vllm-20qps.json")).unwrap()).unwrap();
        assert_eq!(
            (r.completed, r.failed),
            (8, 0),
            "{}: {:?}",
            v.display(),
            r.errors
        );
        assert!(
            r.vbench.load.notes.iter().any(|n| n
                == "every request carried an API key from $VBENCH_TEST_APPLY_KEY (not recorded)"),
            "{:?}",
            r.vbench.load.notes
        );
    }
    let files = walkdir(&run);
    assert!(files.iter().any(|f| f.ends_with("report/summary.md")));
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
            "{} holds the key",
            f.display()
        );
    }
    assert_no_orphans(&run);

    let unset = tempfile::tempdir().unwrap();
    let out = apply(unset.path(), &sets, &[])
        .env_remove("VBENCH_TEST_APPLY_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "target.api_key_env = \"VBENCH_TEST_APPLY_KEY\": $VBENCH_TEST_APPLY_KEY is not set"
        ),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(unset.path()).unwrap().count(), 0);
}

/// A run folder copied while its apply runs carries that run's mark in its lock record:
/// `vbench clean COPY` and `apply --resume COPY` must not take the live run's processes for
/// leftovers and stop them (the live run then failed). The copy gets a mark of its own, the
/// user is told, and the live run finishes untouched.
#[test]
fn a_copy_of_a_live_run_never_stops_that_runs_processes() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let sets = ["load.rates=[20, 4]", "load.num_prompts=20", "load.warmup=0"];
    let only = ["--only", "simple-tp1-074b25"];
    let live = apply(tmp.path(), &sets, &only)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let run = wait_for(tmp.path(), "simple-tp1-074b25/vllm-20qps.json");
    let copy = tmp.path().join("copy");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&run)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(cp.success());
    let clean = Command::new(BIN).arg("clean").arg(&copy).output().unwrap();
    let said = String::from_utf8_lossy(&clean.stderr);
    assert!(clean.status.success(), "{said}");
    assert!(
        said.contains("was copied from a run that vbench (pid ")
            && said.contains("that run's processes are not touched"),
        "{said}"
    );
    let printed = String::from_utf8_lossy(&clean.stdout);
    assert!(!printed.contains("stopping pid"), "{printed}");
    let out = live.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the live run finished: {stderr}"
    );
    assert_eq!(
        read_result(&run.join("simple-tp1-074b25/vllm-4qps.json")).failed,
        0
    );
}

/// A result name that holds no result (an empty file, a folder) is no measurement: `plan
/// --resume` counts the cell as left, `apply --resume` moves what stands there into
/// `aborted/` (nothing is overwritten or lost) and measures the cell again.
#[test]
fn an_unreadable_result_is_set_aside_and_measured_again() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let sets = [
        "load.rates=[20, 40]",
        "load.num_prompts=10",
        "load.warmup=0",
    ];
    let only = ["--only", "simple-tp1-074b25"];
    let out = apply(tmp.path(), &sets, &only).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = run_dir(tmp.path());
    let v = run.join("simple-tp1-074b25");
    std::fs::write(v.join("vllm-20qps.json"), "").unwrap();
    std::fs::remove_file(v.join("vllm-40qps.json")).unwrap();
    std::fs::create_dir(v.join("vllm-40qps.json")).unwrap();
    std::fs::write(v.join("vllm-40qps.json/note.txt"), "mine").unwrap();

    let plan = Command::new(BIN)
        .args(["plan", "experiments/sim-demo.toml", "--resume"])
        .arg(&run)
        .args(sets.iter().flat_map(|s| ["--set", s]))
        .args(only)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(text.contains(": 2 of its 10 planned cells"), "{text}");

    let out = apply(tmp.path(), &sets, &only)
        .arg("--resume")
        .arg(&run)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("vllm-20qps.json was no result (empty): moved to")
            && stderr.contains("vllm-40qps.json was no result (not a regular file): moved to"),
        "{stderr}"
    );
    assert_eq!(read_result(&v.join("vllm-20qps.json")).completed, 10);
    assert_eq!(read_result(&v.join("vllm-40qps.json")).completed, 10);
    let aside: Vec<String> = std::fs::read_dir(v.join("aborted"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(aside.len(), 2, "{aside:?}");
    let folder = aside
        .iter()
        .find(|n| n.starts_with("vllm-40qps-unreadable"))
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(v.join("aborted").join(folder).join("note.txt")).unwrap(),
        "mine"
    );
    assert_no_orphans(&run);
}

/// In a run folder the report reads only the results the plan names: a copy of one (which
/// was merged in as one more repeat, narrowing the intervals) is listed as skipped, and links
/// are not followed (one to `.` listed every variant twice).
#[test]
fn the_report_reads_only_the_plans_results_and_follows_no_link() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let sets = ["load.rates=[20]", "load.num_prompts=10", "load.warmup=0"];
    let only = ["--only", "simple-tp1-074b25"];
    let out = apply(tmp.path(), &sets, &only).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = run_dir(tmp.path());
    let v = run.join("simple-tp1-074b25");
    std::fs::copy(v.join("vllm-20qps.json"), v.join("vllm-20qps copy.json")).unwrap();
    std::os::unix::fs::symlink(".", v.join("again")).unwrap();
    let report = Command::new(BIN).arg("report").arg(&run).output().unwrap();
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let md = std::fs::read_to_string(run.join("report/summary.md")).unwrap();
    assert!(!md.contains("2 repeats"), "{md}");
    assert!(md.contains("vllm-20qps copy.json"), "{md}");
    assert!(md.contains("not a result this run planned"), "{md}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("report/summary.json")).unwrap()).unwrap();
    let text = summary.to_string();
    assert!(!text.contains("again/"), "the link was followed: {text}");

    // A run's manifest copy that no longer parses: the report says the defaults stand in
    // for its SLOs (it used them silently).
    let manifest = run.join("manifest.toml");
    let mut broken = std::fs::read_to_string(&manifest).unwrap();
    broken.push_str("\n[[deployment]]\nmode = \n");
    std::fs::write(&manifest, broken).unwrap();
    let report = Command::new(BIN).arg("report").arg(&run).output().unwrap();
    let stderr = String::from_utf8_lossy(&report.stderr);
    assert!(report.status.success(), "{stderr}");
    assert!(
        stderr.contains("manifest.toml: not TOML: ")
            && stderr.contains("the defaults stand in for what could not be read"),
        "{stderr}"
    );
}

/// `apply --resume` refuses a run whose dataset file changed since it started (its rates would
/// be measured with different prompts and drawn as one curve), naming the file and both
/// fingerprints; the same file as before resumes.
#[test]
fn a_resume_refuses_a_dataset_that_changed() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d.jsonl");
    let lines = |word: &str| {
        (0..8)
            .map(|i| format!("{{\"prompt\": \"{word} {i}\", \"output_tokens\": 4}}\n"))
            .collect::<String>()
    };
    std::fs::write(&data, lines("first")).unwrap();
    let manifest = tmp.path().join("m.toml");
    let tiny = format!("{}/tests/fixtures/tiny-model", env!("CARGO_MANIFEST_DIR"));
    std::fs::write(
        &manifest,
        format!(
            "name = \"ds\"\nmodel = \"m\"\ntokenizer = \"{tiny}\"\n[dataset]\nkind = \"jsonl\"\n\
             path = \"d.jsonl\"\n[load]\nrates = [20, 40]\nnum_prompts = 4\nwarmup = 0\n\
             [target]\nbackend = \"sim\"\n[[deployment]]\nmode = \"simple\"\n"
        ),
    )
    .unwrap();
    let results = tmp.path().join("results");
    let apply = |extra: &[&str]| {
        Command::new(BIN)
            .arg("apply")
            .arg(&manifest)
            .arg("--results")
            .arg(&results)
            .args(["--no-report", "--stop-grace-s", "5"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = apply(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = std::fs::read_dir(results.join("ds"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let run_arg = run.display().to_string();
    let inputs = std::fs::read_to_string(run.join("inputs.json")).unwrap();
    assert!(
        inputs.contains("\"dataset\"") && inputs.contains("\"tokenizer\""),
        "{inputs}"
    );
    std::fs::write(&data, lines("second")).unwrap();
    let out = apply(&["--resume", &run_arg]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // As for a manifest that differs: the resume is refused (exit 1) before anything starts.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the dataset changed: ") && stderr.contains("mix two workloads"),
        "{stderr}"
    );
    std::fs::write(&data, lines("first")).unwrap();
    let out = apply(&["--resume", &run_arg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ls --json` lists a run under a folder whose name is not UTF-8 (written lossily; one odd
/// folder failed the whole listing), and no control character of a name reaches the terminal.
#[test]
fn ls_lists_runs_under_odd_folder_names() {
    use std::os::unix::ffi::OsStrExt;
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let sets = ["load.rates=[20]", "load.num_prompts=4", "load.warmup=0"];
    let only = ["--only", "simple-tp1-074b25"];
    let out = apply(tmp.path(), &sets, &only).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = run_dir(tmp.path());
    let listed = tmp.path().join("listed");
    for name in [&b"e\xffxp"[..], &b"line\nbreak"[..]] {
        let exp = listed.join(std::ffi::OsStr::from_bytes(name));
        std::fs::create_dir_all(&exp).unwrap();
        let cp = Command::new("cp")
            .arg("-a")
            .arg(&run)
            .arg(&exp)
            .status()
            .unwrap();
        assert!(cp.success());
    }
    let json = Command::new(BIN)
        .arg("ls")
        .arg(&listed)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        json.status.success(),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    let runs: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 2, "{runs}");
    let text = Command::new(BIN).arg("ls").arg(&listed).output().unwrap();
    let printed = String::from_utf8_lossy(&text.stdout);
    assert!(printed.contains("line?break/"), "{printed}");
}
