//! `vbench bench` as a user runs it: the real binary against a local scripted server.

use std::time::Duration;

use crate::support::fake_server::{FakeServer, FakeTiming};
use assert_cmd::Command;
use predicates::prelude::*;
use vbench::load::RunResult;

fn server() -> (tokio::runtime::Runtime, FakeServer) {
    server_with(Duration::from_millis(5))
}

/// A scripted server whose streams take `ttft` to their first token, 2 ms a token after.
fn server_with(ttft: Duration) -> (tokio::runtime::Runtime, FakeServer) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let srv = rt
        .block_on(FakeServer::start(
            0,
            FakeTiming {
                ttft,
                gap: Duration::from_millis(2),
            },
        ))
        .unwrap();
    (rt, srv)
}

fn tiny() -> String {
    format!("{}/tests/fixtures/tiny-model", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn bench_writes_a_result_and_prints_a_summary() {
    let _serial = crate::support::serial();
    let (_rt, srv) = server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    Command::cargo_bin("vbench")
        .unwrap()
        .args(["bench", "--base-url", &srv.base_url(), "--model", "m"])
        .args(["--tokenizer", &tiny(), "--dataset", "random"])
        .args([
            "--input-len",
            "32",
            "--output-len",
            "6",
            "--num-prompts",
            "20",
        ])
        .args(["--rate", "100", "--seed", "3", "--out"])
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains("Successful requests:"))
        .stdout(predicate::str::contains("Schedule lag p50 / p99 / max"))
        .stdout(
            predicate::str::is_match(r"Median TTFT: +[0-9.]+  \(95 %: [0-9.]+-[0-9.]+\)").unwrap(),
        )
        .stdout(predicate::str::is_match(r"P99 TTFT: +[0-9.]+  \(95 %: ≥ [0-9.]+\)").unwrap());
    let r: RunResult = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!((r.completed, r.failed), (20, 0));
    assert_eq!(r.vbench.requests.len(), 20);
    // Every latency the summary prints has its 95 % interval, around the number itself; p99
    // of 20 requests cannot be bounded above.
    let iv = r.vbench.intervals.as_ref().expect("intervals");
    for (name, i, median, mean) in [
        ("TTFT", iv.ttft_ms, r.median_ttft_ms, r.mean_ttft_ms),
        ("TPOT", iv.tpot_ms, r.median_tpot_ms, r.mean_tpot_ms),
        ("E2E", iv.e2e_ms, r.median_e2el_ms, r.mean_e2el_ms),
    ] {
        assert!(
            i.p50.contains(median) && i.mean.contains(mean),
            "{name}: {i:?}"
        );
        assert!(i.p99.lo.is_some() && i.p99.hi.is_none(), "{name}: {i:?}");
    }
    assert!(iv.request_goodput.is_none(), "no --goodput, no goodput");
    assert!(r.output_lens.iter().all(|&n| n == 6));
    assert_eq!(r.vbench.load.token_counts.as_deref(), Some("tokenizer"));
    assert!(r.vbench.load.ignore_eos);
    assert_eq!(r.request_rate, serde_json::json!(100.0));
    // 20 measured + 1 warm-up reached the server
    assert_eq!(srv.log().len(), 21);

    // a second run to the same file is refused before anything is sent
    Command::cargo_bin("vbench")
        .unwrap()
        .args(["bench", "--base-url", &srv.base_url(), "--model", "m"])
        .args(["--tokenizer", &tiny(), "--num-prompts", "2", "--out"])
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("never overwrites"));
    assert_eq!(srv.log().len(), 21);
}

#[test]
fn bad_dataset_file_is_bad_input_with_its_location() {
    let _serial = crate::support::serial();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("p.jsonl");
    std::fs::write(&data, "{\"prompt\": \"ok\"}\n{\"prompt\": \n").unwrap();
    Command::cargo_bin("vbench")
        .unwrap()
        .args(["bench", "--base-url", "http://127.0.0.1:9", "--model", "m"])
        .args(["--dataset", "jsonl", "--output-len", "4", "--dataset-path"])
        .arg(&data)
        .arg("--out")
        .arg(dir.path().join("r.json"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("p.jsonl:2:"));
    Command::cargo_bin("vbench")
        .unwrap()
        .args(["bench", "--base-url", "http://127.0.0.1:9", "--model", "m"])
        .args(["--dataset", "random", "--out"])
        .arg(dir.path().join("r.json"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("needs a tokenizer"));
}

/// An `--out` that cannot take the result is bad input before any request is sent (here no
/// server listens at all: the check comes first), not a load whose result is then lost.
#[test]
fn an_out_folder_that_cannot_take_the_result_is_refused_before_the_load() {
    Command::cargo_bin("vbench")
        .unwrap()
        .args(["bench", "--base-url", "http://127.0.0.1:9", "--model", "m"])
        .args(["--dataset", "random", "--tokenizer", &tiny()])
        .args(["--num-prompts", "3", "--out", "/proc/vbench-no/r.json"])
        .timeout(Duration::from_secs(30))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--out /proc/vbench-no/r.json"))
        .stderr(predicate::str::contains("warm-up").not());
    let dir = tempfile::tempdir().unwrap();
    Command::cargo_bin("vbench")
        .unwrap()
        .args(["bench", "--base-url", "http://127.0.0.1:9", "--model", "m"])
        .args(["--dataset", "random", "--tokenizer", &tiny()])
        .args([
            "--num-prompts",
            "1000000000",
            "--output-len",
            "4000",
            "--out",
        ])
        .arg(dir.path().join("r.json"))
        .timeout(Duration::from_secs(30))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("MiB free; the result needs about"));
}

#[test]
fn unreachable_server_is_a_failed_run_not_a_hang() {
    let _serial = crate::support::serial();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    Command::cargo_bin("vbench")
        .unwrap()
        .args(["bench", "--base-url", &format!("http://127.0.0.1:{port}")])
        .args([
            "--model",
            "m",
            "--dataset",
            "random",
            "--tokenizer",
            &tiny(),
        ])
        .args(["--num-prompts", "3", "--out"])
        .arg(dir.path().join("r.json"))
        .timeout(Duration::from_secs(60))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("warm-up"));
    assert!(!dir.path().join("r.json").exists());
}

#[test]
fn goodput_counts_the_requests_that_meet_every_objective() {
    let _serial = crate::support::serial();
    let (_rt, srv) = server();
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, slo: &[&str]| -> RunResult {
        let out = dir.path().join(name);
        Command::cargo_bin("vbench")
            .unwrap()
            .args(["bench", "--base-url", &srv.base_url(), "--model", "m"])
            .args(["--tokenizer", &tiny(), "--dataset", "random"])
            .args([
                "--input-len",
                "8",
                "--output-len",
                "4",
                "--num-prompts",
                "10",
            ])
            .args(["--rate", "200", "--goodput"])
            .args(slo)
            .arg("--out")
            .arg(&out)
            .assert()
            .success()
            .stdout(predicate::str::contains("Request goodput (req/s):"));
        serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
    };
    // the server answers in ~5 ms + 3 x 2 ms: generous objectives hold for all
    let all = run("loose.json", &["ttft:2000", "tpot:1000"]);
    let goodput = all.request_goodput.expect("goodput asked for");
    assert!((goodput - all.request_throughput).abs() < 1e-9, "{all:?}");
    // Its interval: the Wilson interval of 10 met of 10, times the requests per second.
    let range = all
        .vbench
        .intervals
        .as_ref()
        .unwrap()
        .request_goodput
        .unwrap();
    let per_s = 10.0 / all.duration;
    let (lo, hi) = vbench::stats::wilson(10, 10, vbench::stats::Z95).unwrap();
    assert!(
        (range.lo.unwrap() - lo * per_s).abs() < 1e-9
            && (range.hi.unwrap() - hi * per_s).abs() < 1e-9
    );
    assert!(range.contains(goodput));
    // a TTFT objective below the server's fixed 5 ms holds for none
    let none = run("strict.json", &["ttft:1"]);
    assert_eq!(none.request_goodput, Some(0.0));
    Command::cargo_bin("vbench")
        .unwrap()
        .args(["bench", "--base-url", &srv.base_url(), "--model", "m"])
        .args(["--goodput", "itl:5", "--out"])
        .arg(dir.path().join("bad.json"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("unknown objective"));
}

#[test]
fn bench_sends_a_shared_prefix_workload_of_exact_lengths() {
    let _serial = crate::support::serial();
    let (_rt, srv) = server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    let bench = |extra: &[&str]| {
        Command::cargo_bin("vbench")
            .unwrap()
            .args(["bench", "--base-url", &srv.base_url(), "--model", "m"])
            .args(["--tokenizer", &tiny(), "--dataset", "shared-prefix"])
            .args(["--system-prompt-len", "48", "--question-len", "8"])
            .args(["--output-len", "4", "--num-prompts", "20", "--rate", "100"])
            .args(extra)
            .assert()
    };
    bench(&["--groups", "4", "--out", out.to_str().unwrap()]).success();
    let r: RunResult = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!((r.completed, r.failed), (20, 0));
    assert!(r.input_lens.iter().all(|&n| n == 56), "{:?}", r.input_lens);
    assert!(r.output_lens.iter().all(|&n| n == 4));
    assert_eq!(r.dataset_name, "shared_prefix");
    let refused = dir.path().join("refused.json");
    bench(&["--groups", "0", "--out", refused.to_str().unwrap()])
        .code(2)
        .stderr(predicate::str::contains(
            "groups, question_len and output_len must each be at least 1",
        ));
    assert!(!refused.exists());
}

/// `--server-metrics` against the simulator: the result records the server's KV cache, prompt
/// reuse and waiting queue as `apply` does; a role that is not one, or a URL without
/// `/metrics`, is bad input before anything is sent.
#[test]
fn bench_records_what_the_server_metrics_say() {
    let _serial = crate::support::serial();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let profile = vbench::sim::Profile::from_toml(crate::support::sim::TEST_PROFILE).unwrap();
    let sim = rt
        .block_on(vbench::sim::SimServer::start(vbench::sim::SimConfig::new(
            profile, "m",
        )))
        .unwrap();
    let url = format!("http://{}", sim.addr);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    let bench = |prompts: &str, extra: &[&str], out: &std::path::Path| {
        let mut c = Command::cargo_bin("vbench").unwrap();
        c.args(["bench", "--base-url", &url, "--model", "m"])
            .args(["--tokenizer", &tiny(), "--dataset", "random"])
            .args(["--input-len", "32", "--output-len", "8"])
            .args(["--num-prompts", prompts, "--rate", "8", "--out"])
            .arg(out)
            .args(extra);
        c
    };
    bench(
        "40",
        &["--server-metrics", &format!("instance={url}/")],
        &out,
    )
    .assert()
    .success();
    let r: RunResult = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!((r.completed, r.failed), (40, 0));
    let k = r.vbench.kv_cache.expect("the server's KV cache");
    assert_eq!(k.roles.len(), 1);
    // The test profile's 400,000 tokens, and requests of up to 8,192 (its max_model_len).
    assert_eq!(
        (
            k.roles[0].role.as_str(),
            k.roles[0].capacity_tokens,
            k.roles[0].max_concurrency
        ),
        ("instance", Some(400_000), Some(400_000.0 / 8192.0))
    );
    assert_eq!(k.roles[0].preemptions, Some(0.0));
    let reuse = r.vbench.cache_reuse.expect("prompt tokens by source");
    // 40 measured prompts and the warm-up one, about 32 tokens each.
    assert!(reuse.roles[0].prompt_tokens >= 41.0 * 30.0, "{reuse:?}");
    // Five seconds of sends: enough samples of the waiting queue to judge its trend.
    let q = r
        .vbench
        .server_queue
        .expect("the waiting queue over the sends");
    assert!(!q.growing && q.samples >= 3, "{q:?}");
    // Without the flag the result has none of it.
    let plain = dir.path().join("plain.json");
    bench("5", &[], &plain).assert().success();
    let p: RunResult = serde_json::from_slice(&std::fs::read(&plain).unwrap()).unwrap();
    assert!(p.vbench.kv_cache.is_none() && p.vbench.server_queue.is_none());
    // Bad input, named, before anything is sent.
    let bad = dir.path().join("bad.json");
    bench("5", &["--server-metrics", &format!("router={url}")], &bad)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "role \"router\" is not instance, prefill or decode",
        ));
    bench(
        "5",
        &["--server-metrics", "decode=http://127.0.0.1:9"],
        &bad,
    )
    .assert()
    .code(2)
    .stderr(predicate::str::contains(
        "http://127.0.0.1:9/metrics did not answer (decode-0)",
    ));
    assert!(!bad.exists());
    drop(sim);
}

/// `vbench bench` against `srv` with `extra` flags, sent `signals` SIGINTs (300 ms apart)
/// once the server has seen `after` requests. Its output (exit 130 checked) and `--out`.
struct Interrupted {
    stderr: String,
    stdout: String,
    out: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn interrupted_bench(srv: &FakeServer, extra: &[&str], after: usize, signals: u32) -> Interrupted {
    interrupted_workload(srv, RANDOM_500, extra, after, signals)
}

/// 500 random prompts of 32 tokens, 6 tokens out.
const RANDOM_500: &[&str] = &[
    "--dataset",
    "random",
    "--input-len",
    "32",
    "--output-len",
    "6",
    "--num-prompts",
    "500",
];

/// [`interrupted_bench`] with another workload than [`RANDOM_500`].
fn interrupted_workload(
    srv: &FakeServer,
    workload: &[&str],
    extra: &[&str],
    after: usize,
    signals: u32,
) -> Interrupted {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("vbench"))
        .args(["bench", "--base-url", &srv.base_url(), "--model", "m"])
        .args(["--tokenizer", &tiny()])
        .args(workload)
        .args(extra)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while srv.log().len() < after {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the load never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for k in 0..signals {
        if k > 0 {
            std::thread::sleep(Duration::from_millis(300));
        }
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    Interrupted {
        stderr,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        out,
        _dir: dir,
    }
}

impl Interrupted {
    /// The result written, and what it says of the stop.
    fn result(&self) -> (RunResult, vbench::load::StoppedEarly) {
        let r: RunResult = serde_json::from_slice(&std::fs::read(&self.out).unwrap()).unwrap();
        let stopped = r
            .vbench
            .load
            .stopped_early
            .expect("marked as stopped early");
        (r, stopped)
    }
}

/// Ctrl-C during the load stops the schedule, waits for the requests in flight and writes the
/// result of every request that was sent, marked as stopped; exit 130. Every request the
/// server saw is in the result.
#[test]
fn ctrl_c_keeps_the_result_of_what_was_sent() {
    let _serial = crate::support::serial();
    let (_rt, srv) = server();
    let run = interrupted_bench(&srv, &["--rate", "50"], 30, 1);
    assert!(
        run.stderr.contains("stopping: no more requests are sent"),
        "{}",
        run.stderr
    );
    let (r, stopped) = run.result();
    assert_eq!(stopped.planned, 500);
    assert!((29..500).contains(&stopped.sent), "{stopped:?}");
    assert_eq!(stopped.abandoned, 0);
    // The requests in flight were waited for: all of them completed.
    assert_eq!(r.vbench.requests.len() as u64, stopped.sent);
    assert_eq!((r.completed, r.failed), (stopped.sent, 0));
    assert_eq!(r.vbench.load.num_requests, stopped.sent);
    // The server saw the warm-up and exactly the requests in the result.
    assert_eq!(srv.log().len() as u64, stopped.sent + 1);
    assert!(r.vbench.load.warnings.iter().any(|w| w.contains(&format!(
        "stopped after {} of its 500 requests were sent",
        stopped.sent
    ))));
    assert!(run.stdout.contains("result written to"), "{}", run.stdout);
}

/// With a concurrency cap every request is handed on at once and waits for a slot; Ctrl-C
/// sends none of those still waiting: the result holds exactly what the server saw.
#[test]
fn ctrl_c_under_a_concurrency_cap_sends_no_request_still_waiting_for_a_slot() {
    let _serial = crate::support::serial();
    let (_rt, srv) = server();
    let run = interrupted_bench(&srv, &["--rate", "inf", "--max-concurrency", "2"], 20, 1);
    let (r, stopped) = run.result();
    assert!((19..500).contains(&stopped.sent), "{stopped:?}");
    assert_eq!((r.completed, r.failed), (stopped.sent, 0));
    assert_eq!(srv.log().len() as u64, stopped.sent + 1);
}

/// A second Ctrl-C stops waiting for requests in flight: they are in the result as failed
/// (`abandoned`), and vbench does not wait for their streams to end.
#[test]
fn a_second_ctrl_c_abandons_the_requests_in_flight_and_counts_them() {
    let _serial = crate::support::serial();
    // Every stream takes a minute to its first token.
    let (_rt, srv) = server_with(Duration::from_secs(60));
    let t0 = std::time::Instant::now();
    let run = interrupted_bench(&srv, &["--rate", "50", "--warmup", "0"], 10, 2);
    assert!(t0.elapsed() < Duration::from_secs(30), "{}", run.stderr);
    let (r, stopped) = run.result();
    assert!(stopped.sent >= 10 && stopped.sent < 500, "{stopped:?}");
    assert_eq!(stopped.abandoned, stopped.sent);
    assert_eq!((r.completed, r.failed), (0, stopped.sent));
    assert!(r
        .vbench
        .requests
        .iter()
        .all(|q| q.error_kind.as_deref() == Some("abandoned")));
    assert_eq!(srv.log().len() as u64, stopped.sent);
}

/// Ctrl-C before any measured request was sent: nothing is written, and vbench says so.
#[test]
fn ctrl_c_during_the_warm_up_writes_nothing() {
    let _serial = crate::support::serial();
    let (_rt, srv) = server_with(Duration::from_secs(60));
    let run = interrupted_bench(&srv, &["--rate", "50"], 1, 1);
    assert!(
        run.stderr
            .contains("stopped: nothing was measured and nothing written"),
        "{}",
        run.stderr
    );
    assert!(!run.out.exists());
    assert_eq!(srv.log().len(), 1);
}

/// Multi-turn sessions through `vbench bench`: every turn of every session is a request of
/// the result, in the order the sessions and their turns come, and the rate counts sessions.
#[test]
fn bench_runs_multi_turn_sessions() {
    let _serial = crate::support::serial();
    let (_rt, srv) = server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    let bench = |extra: &[&str], out: &std::path::Path| {
        Command::cargo_bin("vbench")
            .unwrap()
            .args(["bench", "--base-url", &srv.base_url(), "--model", "m"])
            .args(["--tokenizer", &tiny(), "--dataset", "sessions"])
            .args(["--question-len", "6", "--output-len", "4"])
            .args(["--num-prompts", "10", "--rate", "40"])
            .args(extra)
            .arg("--out")
            .arg(out)
            .assert()
    };
    bench(&["--turns", "3", "--think-time-s", "0.01"], &out).success();
    let r: RunResult = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!((r.completed, r.failed), (30, 0), "{:?}", r.errors);
    assert_eq!(r.dataset_name, "sessions");
    let turns: Vec<(u64, u32)> = r
        .vbench
        .requests
        .iter()
        .map(|q| (q.session.unwrap(), q.turn.unwrap()))
        .collect();
    assert_eq!(turns[..4], [(0, 1), (0, 2), (0, 3), (1, 1)]);
    // A turn's prompt holds the conversation so far: it grows from turn to turn.
    assert!(r.input_lens[2] > r.input_lens[1] && r.input_lens[1] > r.input_lens[0]);
    assert!(r.output_lens.iter().all(|&n| n == 4));
    assert!(r.vbench.load.ignore_eos);
    assert!(r
        .vbench
        .load
        .notes
        .iter()
        .any(|n| n.contains("session starts per second")));
    // 30 turns and the warm-up session's first turn.
    assert_eq!(srv.log().len(), 31);
    // Synthetic sessions need --turns; a cap on concurrency does not apply to them.
    let bad = dir.path().join("bad.json");
    bench(&[], &bad)
        .code(2)
        .stderr(predicate::str::contains("--dataset sessions needs --turns"));
    bench(&["--turns", "2", "--max-concurrency", "2"], &bad)
        .code(2)
        .stderr(predicate::str::contains(
            "a concurrency cap does not apply to sessions",
        ));
    assert!(!bad.exists());
    assert_eq!(srv.log().len(), 31, "bad input sent requests");
}

/// Ctrl-C during a sessions load sends no further turn and waits for the turns in flight: the
/// result holds exactly the turns the server saw.
#[test]
fn ctrl_c_during_sessions_keeps_the_turns_sent() {
    let _serial = crate::support::serial();
    let (_rt, srv) = server();
    let sessions = [
        "--dataset",
        "sessions",
        "--turns",
        "4",
        "--question-len",
        "6",
        "--output-len",
        "6",
        "--think-time-s",
        "0.02",
        "--num-prompts",
        "200",
    ];
    let run = interrupted_workload(&srv, &sessions, &["--rate", "50"], 40, 1);
    let (r, stopped) = run.result();
    assert_eq!(stopped.planned, 800);
    assert!(stopped.sent < 800, "{stopped:?}");
    assert_eq!(r.vbench.requests.len() as u64, stopped.sent);
    assert_eq!((r.completed, r.failed), (stopped.sent, 0), "{:?}", r.errors);
    // The server saw the warm-up's first turn and exactly the turns in the result.
    assert_eq!(srv.log().len() as u64, stopped.sent + 1);
}

/// A trace replayed through `vbench bench --speedup`: its arrival times divided by the
/// speedup, its lengths kept; `--speedup` is refused with `--rate` or without a trace.
#[test]
fn bench_replays_a_trace_at_a_speedup() {
    let _serial = crate::support::serial();
    let (_rt, srv) = server();
    let dir = tempfile::tempdir().unwrap();
    let trace = format!(
        "{}/tests/fixtures/traces/mooncake-sample.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    let bench = |extra: &[&str], out: &std::path::Path| {
        Command::cargo_bin("vbench")
            .unwrap()
            .args(["bench", "--base-url", &srv.base_url(), "--model", "m"])
            .args(["--tokenizer", &tiny(), "--num-prompts", "12"])
            // The sample's hash blocks are 256 tokens.
            .args(["--block-size", "256"])
            .args(extra)
            .arg("--out")
            .arg(out)
            .assert()
    };
    let replay = [
        "--dataset",
        "trace",
        "--dataset-path",
        &trace,
        "--speedup",
        "4",
    ];
    let out = dir.path().join("r.json");
    bench(&replay, &out).success();
    let r: RunResult = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!((r.completed, r.failed), (12, 0), "{:?}", r.errors);
    assert_eq!(r.vbench.load.arrival, "trace");
    // The first 12 timestamps of the trace (ms), divided by 4.
    let stamps: Vec<f64> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .take(12)
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["timestamp"]
                .as_f64()
                .unwrap()
        })
        .collect();
    for (q, ms) in r.vbench.requests.iter().zip(&stamps) {
        let expected = (ms - stamps[0]) / 1e3 / 4.0;
        assert!(
            (q.scheduled_s - expected).abs() < 1e-5,
            "{} vs {expected}",
            q.scheduled_s
        );
    }
    assert!(
        r.input_lens.iter().all(|&n| n == 1024),
        "{:?}",
        r.input_lens
    );
    assert!(r.output_lens.iter().all(|&n| n == 32));
    let bad = dir.path().join("bad.json");
    bench(&[&replay[..], &["--rate", "5"]].concat(), &bad)
        .code(2)
        .stderr(predicate::str::contains("cannot be used with"));
    bench(&["--dataset", "random", "--speedup", "4"], &bad)
        .code(2)
        .stderr(predicate::str::contains(
            "--speedup replays a trace's arrival times",
        ));
    bench(
        &[
            "--dataset",
            "trace",
            "--dataset-path",
            &trace,
            "--speedup",
            "0",
        ],
        &bad,
    )
    .code(2)
    .stderr(predicate::str::contains(
        "--speedup 0 must be from 0.001 to 1000000",
    ));
    assert!(!bad.exists());
}

/// `--api-key-env NAME` sends `Authorization: Bearer $NAME` on both HTTP paths (the lean
/// reader and reqwest); the key appears nowhere in the result. Without it a server that wants a
/// key refuses every request; an unset or unfit variable is bad input before any request.
#[test]
fn bench_sends_an_api_key_from_the_environment_and_never_records_it() {
    let _serial = crate::support::serial();
    let (_rt, srv) = server();
    srv.require_api_key("sk-vbench-test-0123");
    let dir = tempfile::tempdir().unwrap();
    let bench = |extra: &[&str], out: &std::path::Path| {
        Command::cargo_bin("vbench")
            .unwrap()
            .args(["bench", "--base-url", &srv.base_url(), "--model", "m"])
            .args(["--tokenizer", &tiny(), "--dataset", "random"])
            .args(["--input-len", "16", "--output-len", "4"])
            .args(["--num-prompts", "5", "--rate", "100"])
            .args(extra)
            .arg("--out")
            .arg(out)
            .env("VBENCH_TEST_KEY", "sk-vbench-test-0123")
            .env("VBENCH_BAD_KEY", "two words")
            .assert()
    };
    for (name, extra) in [
        ("lean.json", &["--api-key-env", "VBENCH_TEST_KEY"][..]),
        (
            "reqwest.json",
            &["--api-key-env", "VBENCH_TEST_KEY", "--reqwest"][..],
        ),
    ] {
        let out = dir.path().join(name);
        bench(extra, &out).success();
        let bytes = std::fs::read(&out).unwrap();
        let r: RunResult = serde_json::from_slice(&bytes).unwrap();
        assert_eq!((r.completed, r.failed), (5, 0), "{name}: {:?}", r.errors);
        assert!(
            !String::from_utf8_lossy(&bytes).contains("sk-vbench-test-0123"),
            "{name}: the key is in the result"
        );
        assert!(r
            .vbench
            .load
            .notes
            .iter()
            .any(|n| n.contains("API key from $VBENCH_TEST_KEY (not recorded)")));
    }
    // Without the key the server refuses: the warm-up fails, nothing is written.
    let refused = dir.path().join("refused.json");
    bench(&[], &refused)
        .code(1)
        .stderr(predicate::str::contains("HTTP 401"));
    let bad = dir.path().join("bad.json");
    bench(&["--api-key-env", "VBENCH_NO_SUCH_VAR"], &bad)
        .code(2)
        .stderr(predicate::str::contains("$VBENCH_NO_SUCH_VAR is not set"));
    bench(&["--api-key-env", "VBENCH_BAD_KEY"], &bad)
        .code(2)
        .stderr(predicate::str::contains("a header cannot carry"))
        .stderr(predicate::str::contains("two words").not());
    assert!(!refused.exists() && !bad.exists());
}

/// Flags past what any benchmark needs are usage errors before anything is sent (each used to
/// panic, overflow, run unbounded or inject a header), and no result is written.
#[test]
fn flags_out_of_range_are_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    let cases: &[(&[&str], &str)] = &[
        (
            &["--timeout-s", "1e300"],
            "--timeout-s 1e300 must be a number of seconds",
        ),
        (
            &["--rate", "1e-300"],
            "expected a rate from 0.001 to 1000000 requests/s",
        ),
        (
            &[
                "--dataset",
                "sessions",
                "--turns",
                "2",
                "--think-time-s",
                "1e300",
            ],
            "--think-time-s 1e300 must be",
        ),
        (
            &["--dataset", "sessions", "--turns", "18446744073709551615"],
            "--turns 18446744073709551615 is more than vbench takes (10000)",
        ),
        (
            &["--input-len", "100000000"],
            "--input-len 100000000 is more than vbench takes",
        ),
        (
            &["--burstiness", "1e-300", "--rate", "10"],
            "--burstiness 1e-300 must be from",
        ),
        (
            &["--max-concurrency", "0"],
            "--max-concurrency 0 would never send a request",
        ),
        (
            &["--endpoint", "/v1/completions HTTP/1.1\r\nX-Injected: yes"],
            "--endpoint must be a URL path",
        ),
    ];
    for (flags, says) in cases {
        Command::cargo_bin("vbench")
            .unwrap()
            .args(["bench", "--base-url", "http://127.0.0.1:9", "--model", "m"])
            .args(*flags)
            .arg("--out")
            .arg(&out)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(*says));
        assert!(!out.exists(), "{flags:?}");
    }
}
