//! `[load.search]` end to end on the simulator: the probes are ordinary result files, the
//! search ends with a record of every probe, and a resume in the middle replays the probes on
//! disk and goes on.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_vbench");

/// A small, fast search: 30 requests per batch from 40 req/s on the 0.6B profile.
const SETS: &[&str] = &[
    "target.sim_profile=\"qwen3-0.6b-h200\"",
    "dataset.input_len=512",
    "dataset.output_len=32",
    "load.num_prompts=30",
    "load.warmup=0",
    "load.search.start=40",
    "load.search.budget=600",
];

/// The simple variant's id under [`SETS`].
fn variant_id() -> String {
    variant_id_with(&[])
}

/// The simple variant's id under [`SETS`] and `extra` arguments.
fn variant_id_with(extra: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["plan", "experiments/sim-search.toml", "--json"])
        .args(SETS.iter().flat_map(|s| ["--set", s]))
        .args(extra)
        .output()
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["variants"][0]["id"].as_str().unwrap().to_owned()
}

fn apply(results: &Path, id: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args([
        "apply",
        "experiments/sim-search.toml",
        "--no-report",
        "--results",
    ])
    .arg(results)
    .args(["--only", id, "--stop-grace-s", "5"])
    .args(SETS.iter().flat_map(|s| ["--set", s]))
    .args(extra)
    .env("NO_COLOR", "1");
    c
}

fn probe_files(variant: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(variant)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().contains("-search"))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn run_folder(results: &Path) -> Option<PathBuf> {
    std::fs::read_dir(results.join("sim-search"))
        .ok()?
        .flatten()
        .next()
        .map(|e| e.path())
}

#[test]
fn a_search_brackets_the_capacity_and_a_resume_continues_it() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    let id = variant_id();
    let child = apply(tmp.path(), &id, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once two probes are on disk.
    let deadline = Instant::now() + Duration::from_secs(60);
    let run = loop {
        if let Some(run) = run_folder(tmp.path()) {
            if probe_files(&run.join(&id)).len() >= 2 {
                break run;
            }
        }
        assert!(Instant::now() < deadline, "no probes appeared");
        std::thread::sleep(Duration::from_millis(20));
    };
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let variant = run.join(&id);
    assert!(
        !variant.join("search.json").exists(),
        "an interrupted search is not done"
    );
    let before: Vec<(PathBuf, Vec<u8>)> = probe_files(&variant)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();

    let out = apply(tmp.path(), &id, &["--resume", run.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("already measured, read back").count(),
        before.len(),
        "{stderr}"
    );
    for (path, bytes) in &before {
        assert_eq!(
            &std::fs::read(path).unwrap(),
            bytes,
            "{} changed",
            path.display()
        );
    }
    // The record: every probe in order, the batches adding up to the files, and a bracket.
    // A resume finished it: its record is named for the resumed attempt.
    let name = std::fs::read_dir(&variant)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("search-resume-") && n.ends_with(".json"))
        .expect("a search record");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(variant.join(name)).unwrap()).unwrap();
    let batches: u64 = record["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["batches"].as_u64().unwrap())
        .sum();
    assert_eq!(batches as usize, probe_files(&variant).len(), "{record}");
    assert!(record["requests"].as_u64().unwrap() <= 600, "{record}");
    let ending = &record["ending"];
    assert!(
        ["bracketed", "above_max", "budget_spent"].contains(&ending["kind"].as_str().unwrap()),
        "{ending}"
    );
    if ending["kind"] == "bracketed" {
        let (pass, fail) = (
            ending["pass"].as_f64().unwrap(),
            ending["fail"].as_f64().unwrap(),
        );
        assert!(
            pass < fail && (fail - pass) / pass <= 0.05 + 1e-9,
            "{ending}"
        );
    }
    // The probes are ordinary results: the report reads them.
    let report = Command::new(BIN).arg("report").arg(&run).output().unwrap();
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let md = std::fs::read_to_string(run.join("report/summary.md")).unwrap();
    assert!(md.contains("search: ") && md.contains(" probes, "), "{md}");
    // The figure marks each probe with its verdict (the search has both kinds by now).
    let svg = std::fs::read_dir(run.join("report"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("_benchmark_plots.svg"))
        .expect("the attainment figure");
    let svg = std::fs::read_to_string(svg).unwrap();
    let verdicts: Vec<&str> = record["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["verdict"].as_str().unwrap())
        .collect();
    for (verdict, legend) in [
        ("pass", "search probe: pass"),
        ("fail", "search probe: fail"),
    ] {
        assert_eq!(
            verdicts.contains(&verdict),
            svg.contains(legend),
            "{verdicts:?}"
        );
    }
}

#[test]
fn rates_and_a_search_together_are_refused() {
    let out = Command::new(BIN)
        .args([
            "plan",
            "experiments/sim-search.toml",
            "--set",
            "load.rates=[1]",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`rates` and `[load.search]` both given"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Far past capacity the servers' waiting queue piles up: the batch's result records it and
/// the search counts the probe as saturated, whatever its attainment.
#[test]
fn a_batch_whose_server_queue_piles_up_is_saturated() {
    let _busy = crate::support::busy();
    let tmp = tempfile::tempdir().unwrap();
    // The 8B profile at 30 req/s (capacity near 10) for 200 requests of 2048 tokens: about
    // 7 s of sends, the queue climbing from the third second.
    let sets = [
        "--set",
        "target.sim_profile=\"llama3-8b-h200\"",
        "--set",
        "dataset.input_len=2048",
        "--set",
        "dataset.output_len=128",
        "--set",
        "load.num_prompts=200",
        "--set",
        "load.search.start=30",
        "--set",
        "load.search.budget=200",
    ];
    let id = variant_id_with(&sets);
    let out = apply(tmp.path(), &id, &sets).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("probe at 30 req/s") && stderr.contains("(saturated)"),
        "{stderr}"
    );
    let variant = run_folder(tmp.path()).unwrap().join(&id);
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(variant.join("vllm-30qps-search1.json")).unwrap())
            .unwrap();
    let queue = &result["vbench"]["server_queue"];
    assert_eq!(queue["growing"], true, "{queue}");
    assert!(
        queue["waiting_last_third"].as_f64().unwrap() >= 10.0
            && queue["waiting_first_third"].as_f64().unwrap() * 2.0
                < queue["waiting_last_third"].as_f64().unwrap(),
        "{queue}"
    );
    // Its gauge samples are kept under the batch's own name.
    assert!(variant
        .join("metrics/30qps-search1-samples.jsonl")
        .is_file());
}
