//! Multi-turn sessions (`dataset.kind = "sessions"`): against a loopback server that records
//! every request's body and the instants it received it and finished answering it, turn k+1
//! must be sent only after turn k's answer ended (plus the think time), carry the whole
//! conversation with the server's exact answers, and a failed turn must end its session with
//! its later turns recorded as `session_ended`. Then the manifest's checks and a whole
//! `apply` on the simulator with the report's per-turn and per-session attainment.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use vbench::load::dataset::{self, DatasetSpec, SessionSource, SessionsSpec, ThinkTime};
use vbench::load::{self, Api, Arrival, DeploymentInfo, LoadSpec, NoProgress, RunResult};

const BIN: &str = env!("CARGO_BIN_EXE_vbench");
/// Gap between the scripted server's tokens.
const GAP: Duration = Duration::from_millis(4);

/// What the recording server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    body: Value,
    received: Instant,
    /// When it wrote `data: [DONE]`.
    done: Option<Instant>,
    /// The text it streamed.
    answer: String,
}

#[derive(Default)]
struct Recorder {
    seen: Mutex<HashMap<String, Seen>>,
    /// Request ids answered with HTTP 500.
    fail: Vec<String>,
}

/// An OpenAI-compatible streaming server on 127.0.0.1 that answers `max_tokens` words of its
/// own (different for every request), one every [`GAP`], and records what it saw.
async fn recording_server(fail: &[&str]) -> (SocketAddr, Arc<Recorder>) {
    let rec = Arc::new(Recorder {
        fail: fail.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    });
    let app = Router::new()
        .route("/v1/completions", post(answer))
        .route("/v1/chat/completions", post(answer))
        .with_state(rec.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, rec)
}

async fn answer(State(rec): State<Arc<Recorder>>, headers: HeaderMap, body: Bytes) -> Response {
    let received = Instant::now();
    let id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body: Value = serde_json::from_slice(&body).unwrap();
    let chat = body.get("messages").is_some();
    let n = body["max_tokens"]
        .as_u64()
        .or(body["max_completion_tokens"].as_u64())
        .unwrap();
    // Words of this request's own, so an answer found in a later prompt is this one's.
    let pieces: Vec<String> = (0..n).map(|i| format!(" {id}w{i}")).collect();
    rec.seen.lock().unwrap().insert(
        id.clone(),
        Seen {
            body,
            received,
            done: None,
            answer: pieces.concat(),
        },
    );
    if rec.fail.contains(&id) {
        return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "scripted").into_response();
    }
    let stream = futures::stream::unfold(0usize, move |k| {
        let (rec, id, pieces) = (rec.clone(), id.clone(), pieces.clone());
        async move {
            tokio::time::sleep(GAP).await;
            if k < pieces.len() {
                let chunk = if chat {
                    serde_json::json!({"choices": [{"index": 0, "delta": {"content": pieces[k]}}]})
                } else {
                    serde_json::json!({"choices": [{"index": 0, "text": pieces[k]}]})
                };
                return Some((
                    Ok::<_, std::io::Error>(Bytes::from(format!("data: {chunk}\n\n"))),
                    k + 1,
                ));
            }
            if k > pieces.len() {
                return None;
            }
            rec.seen.lock().unwrap().get_mut(&id).unwrap().done = Some(Instant::now());
            let tail = format!(
                "data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":1,\"completion_tokens\":{}}}}}\n\ndata: [DONE]\n\n",
                pieces.len()
            );
            Some((Ok(Bytes::from(tail)), k + 1))
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn tiny() -> load::Tokenizer {
    load::Tokenizer::load(&format!(
        "{}/tests/fixtures/tiny-model",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// `sessions` synthetic sessions of `turns` turns at `rate` session starts per second.
fn sessions_spec(
    addr: SocketAddr,
    api: Api,
    sessions: usize,
    turns: u64,
    think_s: f64,
) -> LoadSpec {
    let spec = DatasetSpec::Sessions(SessionsSpec {
        source: SessionSource::Synthetic {
            turns,
            system_len: 20,
            question_len: 6,
            output_len: 5,
        },
        think_time_s: think_s,
        think_time: ThinkTime::Fixed,
    });
    let data = dataset::load(&spec, sessions, 3, Some(&tiny())).unwrap();
    let offsets: Vec<f64> = (0..sessions).map(|i| 0.01 + 0.02 * i as f64).collect();
    let deployment = DeploymentInfo {
        variant_id: None,
        mode: "external".into(),
        label: "test".into(),
        gpus: 0,
        simulated: false,
        base_url: format!("http://{addr}"),
    };
    let mut s = LoadSpec::new(
        deployment,
        api,
        "m",
        &data,
        data.requests.clone().into(),
        offsets.into(),
        50.0,
        Arrival::Constant,
        0,
    );
    s.sessions = data.sessions.clone().map(Into::into);
    s.timeout = Duration::from_secs(10);
    s
}

fn seen(rec: &Recorder, session: u64, turn: u32) -> Option<Seen> {
    rec.seen
        .lock()
        .unwrap()
        .get(&format!("vbench-s{session}-t{turn}"))
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_turn_follows_the_previous_answer_and_think_time_with_the_whole_conversation() {
    let (addr, rec) = recording_server(&[]).await;
    let think = 0.05;
    let spec = sessions_spec(addr, Api::Completions, 3, 3, think);
    let sessions = spec.sessions.clone().unwrap();
    let r: RunResult = load::execute(&spec, &NoProgress).await.unwrap();
    assert_eq!(r.vbench.requests.len(), 9, "sessions x turns records");
    assert_eq!(r.completed, 9, "{:?}", r.errors);
    for (s, session) in sessions.iter().enumerate() {
        let mut expected = session.system.clone();
        for t in 1..=3u32 {
            let now = seen(&rec, s as u64, t).expect("the server saw every turn");
            expected.push_str(&session.turns[t as usize - 1].prompt);
            // The prompt is the conversation so far with the server's exact answers.
            assert_eq!(now.body["prompt"].as_str().unwrap(), expected, "s{s} t{t}");
            expected.push_str(&now.answer);
            if t > 1 {
                let before = seen(&rec, s as u64, t - 1).unwrap();
                let gap = now.received - before.done.unwrap();
                assert!(
                    gap >= Duration::from_secs_f64(think),
                    "turn {t} of session {s} sent {gap:?} after turn {}'s answer ended",
                    t - 1
                );
            }
        }
    }
    // The records: session and turn, TTFT from the turn's scheduled instant, which is the
    // previous turn's end plus the think time.
    let mut by_turn: HashMap<(u64, u32), &load::RequestRecord> = HashMap::new();
    for q in &r.vbench.requests {
        by_turn.insert((q.session.unwrap(), q.turn.unwrap()), q);
    }
    assert_eq!(by_turn.len(), 9);
    for s in 0..3u64 {
        for t in 2..=3u32 {
            let (prev, q) = (by_turn[&(s, t - 1)], by_turn[&(s, t)]);
            let prev_end = prev.scheduled_s + prev.e2e_s.unwrap();
            let wait = q.scheduled_s - prev_end;
            assert!(
                (think..think + 0.02).contains(&wait),
                "turn {t} scheduled {wait:.4} s after the previous answer"
            );
            assert!(q.sent_s >= q.scheduled_s - 1e-6);
            assert!(q.ttft_s.unwrap() >= GAP.as_secs_f64());
        }
    }
    // Offered: session starts per second; achieved counts session starts too (not turns).
    let offered = r.vbench.client.offered_rate.unwrap();
    assert!((offered - 3.0 / 0.05).abs() < 1e-6, "{offered}");
    let achieved = r.vbench.client.achieved_rate;
    assert!(
        (achieved / offered - 1.0).abs() < 0.1,
        "achieved {achieved} vs offered {offered}"
    );
}

/// Requests the recording server has seen.
fn seen_count(rec: &Recorder) -> usize {
    rec.seen.lock().unwrap().len()
}

/// `spec` running on its own task, and the sender that asks it to stop.
fn start_stoppable(
    spec: &LoadSpec,
) -> (
    tokio::sync::watch::Sender<u32>,
    tokio::task::JoinHandle<Result<RunResult, load::LoadError>>,
) {
    let (stop_tx, stop) = load::Stop::channel();
    let spec = spec.clone();
    let run = tokio::spawn(async move { load::execute_until(&spec, &NoProgress, stop).await });
    (stop_tx, run)
}

/// Until the recording server has seen `n` requests (20 s at most).
async fn wait_until_seen(rec: &Recorder, n: usize) {
    let t0 = Instant::now();
    while seen_count(rec) < n {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the load never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A first stop sends no further turn, neither a new session's nor a started one's next, and
/// waits for the turns in flight: the result holds exactly the turns the server saw, and says
/// it was stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_sends_no_further_turn_and_the_result_holds_the_turns_sent() {
    let (addr, rec) = recording_server(&[]).await;
    // 40 sessions of 4 turns, 20 ms apart, 20 ms think time: about a second in all.
    let spec = sessions_spec(addr, Api::Completions, 40, 4, 0.02);
    let (stop_tx, run) = start_stoppable(&spec);
    wait_until_seen(&rec, 20).await;
    stop_tx.send_modify(|n| *n += 1);
    let stopped_at = Instant::now();
    let r = run.await.unwrap().unwrap();
    let stopped = r
        .vbench
        .load
        .stopped_early
        .expect("marked as stopped early");
    assert_eq!(stopped.planned, 160);
    assert_eq!(stopped.abandoned, 0);
    let saw = seen_count(&rec);
    assert!(saw < 160, "every turn was sent: the stop did nothing");
    assert_eq!(
        r.vbench.requests.len(),
        saw,
        "one record per turn the server saw"
    );
    assert_eq!(stopped.sent as usize, saw);
    // Turns in flight were waited for and completed; nothing was sent after the stop.
    assert_eq!((r.completed as usize, r.failed), (saw, 0), "{:?}", r.errors);
    let late = rec
        .seen
        .lock()
        .unwrap()
        .values()
        .filter(|s| s.received > stopped_at + Duration::from_millis(2))
        .count();
    assert_eq!(late, 0, "turns sent after the stop");
    // The offered rate counts the sessions that started.
    let started = r
        .vbench
        .requests
        .iter()
        .filter(|q| q.turn == Some(1))
        .count();
    assert!(started < 40, "{started}");
    let offered = r.vbench.client.offered_rate.unwrap();
    let last_start = spec.offsets[started - 1];
    assert!(
        (offered - started as f64 / last_start).abs() < 1e-6,
        "{offered}"
    );
    assert!(r.vbench.load.warnings.iter().any(|w| w.contains("stopped")));
}

/// A second stop stops waiting: the turns still in flight are recorded as failed
/// (`abandoned`), never dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_stop_records_the_turns_in_flight_as_abandoned() {
    let (addr, rec) = recording_server(&[]).await;
    let mut spec = sessions_spec(addr, Api::Completions, 10, 2, 0.0);
    // Long answers (200 tokens, 4 ms apart): every turn is in flight for most of a second.
    let sessions: Vec<_> = spec
        .sessions
        .as_deref()
        .unwrap()
        .iter()
        .cloned()
        .map(|mut s| {
            for t in &mut s.turns {
                t.max_tokens = 200;
            }
            s
        })
        .collect();
    spec.sessions = Some(sessions.into());
    let (stop_tx, run) = start_stoppable(&spec);
    wait_until_seen(&rec, 5).await;
    stop_tx.send_modify(|n| *n += 1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop_tx.send_modify(|n| *n += 1);
    let r = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("a second stop ends the run at once")
        .unwrap()
        .unwrap();
    let stopped = r
        .vbench
        .load
        .stopped_early
        .expect("marked as stopped early");
    let saw = seen_count(&rec);
    assert_eq!(r.vbench.requests.len(), saw);
    assert!(stopped.abandoned > 0, "{stopped:?}");
    let abandoned = r
        .vbench
        .requests
        .iter()
        .filter(|q| q.error_kind.as_deref() == Some("abandoned"))
        .count();
    assert_eq!(abandoned as u64, stopped.abandoned);
    assert_eq!(r.failed, stopped.abandoned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_turn_ends_its_session_and_its_later_turns_are_recorded_as_session_ended() {
    let (addr, rec) = recording_server(&["vbench-s1-t2"]).await;
    let spec = sessions_spec(addr, Api::Chat, 3, 3, 0.0);
    let sessions = spec.sessions.clone().unwrap();
    let r = load::execute(&spec, &NoProgress).await.unwrap();
    assert_eq!(r.vbench.requests.len(), 9);
    assert_eq!((r.completed, r.failed), (7, 2));
    let kinds: Vec<(u64, u32, Option<&str>)> = r
        .vbench
        .requests
        .iter()
        .map(|q| (q.session.unwrap(), q.turn.unwrap(), q.error_kind.as_deref()))
        .collect();
    assert_eq!(
        kinds[3..6],
        [
            (1, 1, None),
            (1, 2, Some("http")),
            (1, 3, Some("session_ended"))
        ]
    );
    assert!(
        seen(&rec, 1, 3).is_none(),
        "a turn after a failure was sent"
    );
    let ended = &r.vbench.requests[5];
    assert!(
        ended.error.as_deref().unwrap().contains("turn 2"),
        "{ended:?}"
    );
    assert_eq!(r.errors.iter().filter(|e| !e.is_empty()).count(), 2);
    // Chat: the conversation as messages, with the server's exact answer as the assistant's.
    let third = seen(&rec, 2, 3).unwrap();
    let (first, second) = (seen(&rec, 2, 1).unwrap(), seen(&rec, 2, 2).unwrap());
    let roles: Vec<&str> = third.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "user", "assistant", "user"]
    );
    let contents: Vec<&str> = third.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    let s = &sessions[2];
    assert_eq!(
        contents,
        [
            s.system.as_str(),
            &s.turns[0].prompt,
            &first.answer,
            &s.turns[1].prompt,
            &second.answer,
            &s.turns[2].prompt
        ]
    );
}

// --- the manifest -------------------------------------------------------------------------

const MANIFEST: &str = r#"name = "s"
model = "m"

[dataset]
kind = "sessions"
turns = 3
question_len = 8
output_len = 4
think_time_s = 0.5

[load]
rates = [1]
num_prompts = 4

[target]
backend = "sim"

[[deployment]]
mode = "simple"
"#;

#[track_caller]
fn refused(text: &str, needle: &str, message: &str) {
    let loaded = vbench::manifest::load_str(Path::new("m.toml"), text, &[]).unwrap();
    let capacity = vbench::plan::Capacity {
        absent: None,
        gpus: Some(8),
        cpu_cores: None,
        source: "test".into(),
    };
    let e = vbench::plan::resolve(&loaded, &capacity).expect_err("an error");
    let i = text.find(needle).unwrap();
    let line = text[..i].matches('\n').count() + 1;
    let col = i - text[..i].rfind('\n').map_or(0, |n| n + 1) + 1;
    assert_eq!(e.location, format!("m.toml:{line}:{col}"), "{e}");
    assert!(
        e.message.contains(message),
        "{:?} lacks {message:?}",
        e.message
    );
}

#[test]
fn sessions_manifests_are_checked_with_located_errors() {
    let ok = vbench::manifest::load_str(Path::new("m.toml"), MANIFEST, &[]).unwrap();
    let capacity = vbench::plan::Capacity {
        absent: None,
        gpus: Some(8),
        cpu_cores: None,
        source: "test".into(),
    };
    assert!(vbench::plan::resolve(&ok, &capacity).is_ok());
    refused(
        &MANIFEST.replace("turns = 3\n", ""),
        "\"sessions\"",
        "kind = \"sessions\" needs `turns`",
    );
    refused(
        &MANIFEST.replace("turns = 3", "turns = 0"),
        "0\n",
        "`turns` must be at least 1",
    );
    refused(
        &MANIFEST.replace("think_time_s = 0.5", "think_time_s = -1.0"),
        "-1.0",
        "think_time_s -1 must be a number of seconds",
    );
    refused(
        &MANIFEST.replace("think_time_s = 0.5", "think_time = \"fixed\""),
        "\"fixed\"",
        "`think_time` shapes think times around `think_time_s`",
    );
    refused(
        &MANIFEST.replace("turns = 3", "turns = 3\npath = \"c.json\""),
        "8\n",
        "`question_len` sizes synthetic sessions",
    );
    refused(
        &MANIFEST.replace("num_prompts = 4", "num_prompts = 4\nmax_concurrency = 2"),
        "2\n",
        "a session's turns already wait for their answers",
    );
    refused(
        &MANIFEST.replace(
            "rates = [1]\nnum_prompts = 4",
            "num_prompts = 4\n\n[load.search]\nstart = 1",
        ),
        "[load.search]",
        "does not run multi-turn sessions",
    );
    refused(
        &MANIFEST.replace(
            "kind = \"sessions\"\nturns = 3\nquestion_len = 8",
            "kind = \"random\"\ninput_len = 8\nturns = 3",
        ),
        "3\n",
        "`turns` only applies to kind = \"sessions\"",
    );
    // ShareGPT sessions: `turns` caps them, the messages are the file's.
    let sharegpt = "kind = \"sessions\"\npath = \"c.json\"\nturns = 2";
    let text = MANIFEST.replace(
        "kind = \"sessions\"\nturns = 3\nquestion_len = 8\noutput_len = 4",
        sharegpt,
    );
    assert!(vbench::plan::resolve(
        &vbench::manifest::load_str(Path::new("m.toml"), &text, &[]).unwrap(),
        &capacity
    )
    .is_ok());
}

// --- apply on the simulator ---------------------------------------------------------------

#[test]
fn apply_runs_sessions_on_the_simulator_and_the_report_scores_turns_and_sessions() {
    let _busy = crate::support::busy();
    let dir = tempfile::tempdir().unwrap();
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-model");
    let text = format!(
        "name = \"sess\"\nmodel = \"m\"\ntokenizer = \"{}\"\n{}",
        tiny.display(),
        &MANIFEST["name = \"s\"\nmodel = \"m\"\n".len()..]
            .replace(
                "think_time_s = 0.5",
                "think_time_s = 0.05\nsystem_prompt_len = 64"
            )
            .replace("rates = [1]", "rates = [20]\nwarmup = 1")
            .replace(
                "backend = \"sim\"",
                "backend = \"sim\"\nhealth_timeout_s = 30"
            )
    );
    let manifest = dir.path().join("sess.toml");
    std::fs::write(&manifest, text).unwrap();
    let results = dir.path().join("results");
    let out = Command::new(BIN)
        .args(["apply", manifest.to_str().unwrap(), "--results"])
        .arg(&results)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = std::fs::read_dir(results.join("sess"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let r = crate::support::only_result(&results, "sess", "vllm-20qps.json");
    assert_eq!(r.vbench.requests.len(), 12, "4 sessions x 3 turns");
    assert_eq!(r.completed, 12, "{:?}", r.errors);
    // The simulator counts the history's tokens: the first turn is the system prompt and the
    // message (64 + 8); every later turn's prompt is the previous one's, its answer (however
    // the tokenizer splits the simulator's text) and 8 tokens more.
    for q in &r.vbench.requests {
        let turn = q.turn.unwrap();
        if turn == 1 {
            assert_eq!(q.prompt_tokens, 72, "{q:?}");
        } else {
            let prev = &r.vbench.requests[q.index as usize - 1];
            assert_eq!((prev.session, prev.turn), (q.session, Some(turn - 1)));
            assert!(
                q.prompt_tokens >= prev.prompt_tokens + 8 + prev.output_tokens,
                "{q:?}"
            );
        }
    }
    // Later turns find their history in the prefix cache (the ideal is not computed: the
    // prompts hold the server's answers).
    let reuse = r.vbench.cache_reuse.as_ref().expect("cache reuse counted");
    let served = reuse.computing().unwrap();
    assert!(served.local_hit_tokens > 0.0, "{reuse:?}");
    assert!(reuse.ideal.is_none());
    assert!(r
        .vbench
        .load
        .notes
        .iter()
        .any(|n| n.contains("from their prefix cache")));
    // summary.json scores each turn index and each session.
    let report = std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("summary.json"))
        .find(|p| p.is_file())
        .or_else(|| Some(run.join("report/summary.json")).filter(|p| p.is_file()))
        .expect("a summary.json");
    let summary: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    // summary.md and index.html show the same table: three turns and the whole sessions.
    for page in ["summary.md", "index.html"] {
        let text = std::fs::read_to_string(report.with_file_name(page)).unwrap();
        assert!(
            text.contains("Rate (sessions/s)")
                && text.contains("whole session")
                && text.contains("4 sessions (0 with a failed turn)"),
            "{page}: {text}"
        );
    }
    // Its rates are session starts: the summary and the figures say sessions/s, not req/s.
    let md = std::fs::read_to_string(report.with_file_name("summary.md")).unwrap();
    assert!(
        md.contains("sessions/s, lag p99") && !md.contains("(req/s)"),
        "{md}"
    );
    let figure = std::fs::read_dir(report.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("_benchmark_plots.svg"))
        .expect("an attainment figure");
    assert!(std::fs::read_to_string(figure)
        .unwrap()
        .contains("Session start rate (sessions/s)"));
    // The turns reuse their conversation's prefix: the cache figure is drawn.
    assert!(report.with_file_name("cache_reuse.svg").is_file());
    let sessions = &summary["variants"][0]["points"][0]["sessions"];
    assert_eq!(sessions["sessions"], 4, "{sessions}");
    let turns = sessions["by_turn"].as_array().unwrap();
    assert_eq!(turns.len(), 3);
    assert_eq!(turns[2]["turn"], 3);
    assert_eq!(turns[2]["requests"], 4);
    assert!(sessions["attainment"].as_f64().is_some());
}

/// `vbench plan` of a sessions manifest says what a rate sends: session starts, and sessions
/// of several turns each (`plan --json` carries the turns).
#[test]
fn the_plan_counts_sessions_and_their_turns() {
    let out = Command::new(BIN)
        .args(["plan", "experiments/sim-sessions.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(
            "Session starts per second: 2, 8 · 40 sessions of 4 turns (160 requests) per rate"
        ),
        "{stdout}"
    );
    let json = Command::new(BIN)
        .args(["plan", "experiments/sim-sessions.toml", "--json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let plan: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(plan["sessions"]["turns"], 4, "{plan}");
}
