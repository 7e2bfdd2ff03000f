//! The runner and client against a real local server (axum, 127.0.0.1, port 0) with scripted
//! per-token delays and injected failures. Timing assertions use tolerance windows wide enough
//! for a busy 2-core machine; what they pin is the rule (what is measured from where).

use std::sync::Arc;
use std::time::Duration;

use crate::support::fake_server::{FakeServer, FakeTiming};
use vbench::load::{
    self, Api, Arrival, Dataset, LoadSpec, NoProgress, PreparedRequest, TokenCounts,
};
use vbench::load::{DeploymentInfo, RunResult};

fn timing(ttft_ms: u64, gap_ms: u64) -> FakeTiming {
    FakeTiming {
        ttft: Duration::from_millis(ttft_ms),
        gap: Duration::from_millis(gap_ms),
    }
}

fn spec(base_url: &str, api: Api, prompts: &[(&str, u64)], offsets: Vec<f64>) -> LoadSpec {
    let requests: Vec<PreparedRequest> = prompts
        .iter()
        .map(|(p, n)| PreparedRequest {
            prompt: p.to_string(),
            prompt_tokens: 3,
            max_tokens: *n,
        })
        .collect();
    let data = Dataset {
        name: "jsonl".into(),
        requests: requests.clone(),
        token_counts: TokenCounts::Estimated,
        notes: vec![],
        offsets_s: None,
        sessions: None,
    };
    let dep = DeploymentInfo {
        variant_id: None,
        mode: "external".into(),
        label: "test".into(),
        gpus: 0,
        simulated: false,
        base_url: base_url.into(),
    };
    let mut s = LoadSpec::new(
        dep,
        api,
        "m",
        &data,
        requests.into(),
        offsets.into(),
        10.0,
        Arrival::Constant,
        0,
    );
    s.timeout = Duration::from_secs(10);
    s
}

async fn run(s: &LoadSpec) -> RunResult {
    load::execute(s, &NoProgress).await.expect("run")
}

fn within(x: f64, lo: f64, hi: f64, what: &str) {
    assert!(x >= lo && x <= hi, "{what} = {x:.4} not in [{lo}, {hi}]");
}

// The guard only keeps whole tests apart; nothing in the test takes it again.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttft_tpot_e2e_match_the_servers_scripted_timing() {
    let _serial = crate::support::serial();
    for use_reqwest in [false, true] {
        ttft_tpot_e2e_with(use_reqwest).await;
    }
}

async fn ttft_tpot_e2e_with(use_reqwest: bool) {
    let srv = FakeServer::start(0, timing(40, 10)).await.unwrap();
    let prompts = [("hello there", 8u64); 6];
    let offsets = (0..6).map(|i| 0.02 + i as f64 * 0.05).collect();
    let mut s = spec(&srv.base_url(), Api::Completions, &prompts, offsets);
    s.use_reqwest = use_reqwest;
    let r = run(&s).await;
    assert_eq!(r.completed, 6, "{:?}", r.errors);
    let log = srv.log();
    for q in &r.vbench.requests {
        assert!(q.ok, "{q:?}");
        let ttft = q.ttft_s.unwrap();
        within(ttft, 0.040, 0.070, "ttft");
        within(q.tpot_s.unwrap(), 0.008, 0.014, "tpot");
        within(q.e2e_s.unwrap(), 0.040 + 0.070, 0.150, "e2e");
        assert_eq!(q.itls_s.len(), 7);
        assert_eq!(q.output_tokens, 8); // from usage
        assert_eq!(q.prompt_tokens, 2); // the server's count, not the client's 3
        within(q.lag_s(), -0.0005, 0.010, "lag");
        // against the server's own log: the client can only see the token later, not earlier
        let served = log
            .iter()
            .find(|l| l.id.as_deref() == Some(&format!("vbench-{}", q.index)))
            .expect("server saw the request");
        let server_ttft = (served.first_ns.unwrap() - served.recv_ns) as f64 * 1e-9;
        let client_ttft = q.ttft_from_send_s().unwrap();
        within(
            client_ttft - server_ttft,
            -0.0002,
            0.015,
            "client - server ttft",
        );
    }
    assert!(r.vbench.load.tokens_from_usage);
    assert!((r.mean_ttft_ms - 1e3 * r.ttfts.iter().sum::<f64>() / 6.0).abs() < 1e-6);
    assert!(!r.vbench.client.client_fell_behind);
}

// The guard only keeps whole tests apart; nothing in the test takes it again.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_request_scripted_delays_land_on_the_right_records() {
    let _serial = crate::support::serial();
    let srv = FakeServer::start(0, timing(10, 5)).await.unwrap();
    let prompts = [
        ("slow @ttft=120", 2u64),
        ("fast @ttft=10", 2),
        ("slow gaps @gap=40", 3),
    ];
    let r = run(&spec(
        &srv.base_url(),
        Api::Chat,
        &prompts,
        vec![0.01, 0.01, 0.01],
    ))
    .await;
    let q = &r.vbench.requests;
    within(q[0].ttft_s.unwrap(), 0.120, 0.160, "slow ttft");
    within(q[1].ttft_s.unwrap(), 0.010, 0.040, "fast ttft");
    within(q[2].tpot_s.unwrap(), 0.038, 0.050, "slow tpot");
    assert_eq!(r.endpoint_type, "openai-chat");
}

// The guard only keeps whole tests apart; nothing in the test takes it again.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_recorded_with_their_kind_and_never_dropped() {
    let _serial = crate::support::serial();
    // both transports: the lean HTTP/1.1 client (http://) and reqwest (https://)
    for use_reqwest in [false, true] {
        failures_with(use_reqwest).await;
    }
}

async fn failures_with(use_reqwest: bool) {
    let srv = FakeServer::start(0, timing(5, 2)).await.unwrap();
    let prompts = [
        ("fine", 4u64),
        ("@status=500", 4),
        ("@cut=2", 4),
        ("@malformed=1", 4),
        ("@error=2", 4),
        ("@nodone", 4),
        ("@hang", 4),
        ("@status=404", 4),
        ("fine again", 4),
    ];
    let offsets = (0..prompts.len()).map(|i| 0.005 * i as f64).collect();
    let mut s = spec(&srv.base_url(), Api::Completions, &prompts, offsets);
    s.timeout = Duration::from_millis(500);
    s.use_reqwest = use_reqwest;
    let r = run(&s).await;
    let kinds: Vec<Option<&str>> = r
        .vbench
        .requests
        .iter()
        .map(|q| q.error_kind.as_deref())
        .collect();
    assert_eq!(
        kinds,
        vec![
            None,
            Some("http"),
            Some("stream_cut"),
            Some("malformed"),
            Some("server_error"),
            Some("stream_cut"),
            Some("timeout"),
            Some("http"),
            None
        ]
    );
    assert_eq!(r.num_prompts, 9);
    assert_eq!((r.completed, r.failed), (2, 7));
    let q = &r.vbench.requests;
    assert_eq!(q[1].http_status, Some(500));
    assert!(q[1].error.as_deref().unwrap().contains("scripted failure"));
    assert_eq!(q[7].http_status, Some(404));
    // a cut stream keeps what it measured (ttft) but is not ok and has no e2e
    assert!(q[2].ttft_s.is_some() && q[2].e2e_s.is_none() && !q[2].ok);
    // legacy arrays: same length as requests, zeros + error text for failures
    assert_eq!(r.ttfts.len(), 9);
    assert_eq!(r.errors.len(), 9);
    for (i, e) in r.errors.iter().enumerate() {
        assert_eq!(e.is_empty(), q[i].ok, "errors[{i}] = {e:?}");
        if !q[i].ok {
            assert_eq!(r.ttfts[i], 0.0);
            assert_eq!(r.output_lens[i], 0);
        }
    }
    // the hanging request was cut at its timeout, not waited for
    assert!(q[6].e2e_s.is_none());
    within(r.duration, 0.5, 2.0, "run duration with a 0.5 s timeout");
}

// The guard only keeps whole tests apart; nothing in the test takes it again.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_errors_are_records_but_all_failed_warmup_is_an_error() {
    let _serial = crate::support::serial();
    // a port that was free a moment ago: nothing listens there
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let mut s = spec(
        &url,
        Api::Completions,
        &[("x", 2), ("y", 2)],
        vec![0.0, 0.01],
    );
    for use_reqwest in [false, true] {
        s.use_reqwest = use_reqwest;
        let r = run(&s).await;
        assert_eq!(r.failed, 2);
        assert!(r
            .vbench
            .requests
            .iter()
            .all(|q| q.error_kind.as_deref() == Some("connect")));
    }
    s.warmup = 2;
    let e = load::execute(&s, &NoProgress).await.unwrap_err();
    assert!(e.to_string().contains("warm-up"), "{e}");
}

// The guard only keeps whole tests apart; nothing in the test takes it again.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_is_measured_from_the_schedule_so_queueing_cannot_hide() {
    let _serial = crate::support::serial();
    // max_concurrency 1, three requests due at once: the second and third wait for the slot.
    let srv = FakeServer::start(0, timing(60, 1)).await.unwrap();
    let mut s = spec(
        &srv.base_url(),
        Api::Completions,
        &[("a", 1), ("b", 1), ("c", 1)],
        vec![0.0, 0.0, 0.0],
    );
    s.max_concurrency = Some(1);
    let r = run(&s).await;
    let mut by_sent: Vec<_> = r.vbench.requests.iter().collect();
    by_sent.sort_by(|a, b| a.sent_s.total_cmp(&b.sent_s));
    within(by_sent[0].ttft_s.unwrap(), 0.060, 0.090, "first ttft");
    within(
        by_sent[2].ttft_s.unwrap(),
        0.180,
        0.260,
        "third ttft from schedule",
    );
    within(
        by_sent[2].ttft_from_send_s().unwrap(),
        0.060,
        0.090,
        "third ttft from send",
    );
    within(by_sent[2].lag_s(), 0.115, 0.180, "third lag");
    // waiting for a slot the user asked for is not the client falling behind
    assert!(!r.vbench.client.client_fell_behind);
    assert!(r.vbench.client.lag_p99_ms > 100.0);
}

// The guard only keeps whole tests apart; nothing in the test takes it again.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_sends_on_schedule_while_earlier_requests_are_still_running() {
    let _serial = crate::support::serial();
    let srv = FakeServer::start(0, timing(300, 1)).await.unwrap();
    let offsets: Vec<f64> = (0..5).map(|i| 0.01 + 0.05 * i as f64).collect();
    let s = spec(
        &srv.base_url(),
        Api::Completions,
        &[("p", 2); 5],
        offsets.clone(),
    );
    let r = run(&s).await;
    for (q, o) in r.vbench.requests.iter().zip(&offsets) {
        within(q.scheduled_s, o - 1e-6, o + 1e-6, "scheduled");
        within(q.sent_s - o, -0.0005, 0.010, "send lag");
    }
    let mut recv: Vec<u64> = srv.log().iter().map(|l| l.recv_ns).collect();
    recv.sort();
    // arrivals at the server 50 ms apart, not 300 ms (closed loop would serialise them)
    within(
        (recv[4] - recv[0]) as f64 * 1e-9,
        0.18,
        0.26,
        "server arrival span",
    );
}

// The guard only keeps whole tests apart; nothing in the test takes it again.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_usage_tokens_are_counted_by_the_client_and_flagged() {
    let _serial = crate::support::serial();
    let srv = FakeServer::start(0, timing(5, 1)).await.unwrap();
    let tok = Arc::new(
        load::Tokenizer::load(&format!(
            "{}/tests/fixtures/tiny-model",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    );
    let mut s = spec(
        &srv.base_url(),
        Api::Completions,
        &[("no usage @nousage", 5)],
        vec![0.0],
    );
    let r = run(&s).await;
    assert!(r.vbench.requests[0].ok);
    assert_eq!(r.vbench.requests[0].output_tokens, 5); // 5 non-empty chunks
    assert_eq!(r.vbench.requests[0].prompt_tokens, 3); // the client's count
    assert!(!r.vbench.load.tokens_from_usage);
    s.tokenizer = Some(tok.clone());
    let r = run(&s).await;
    let want = tok.encode(&" tok".repeat(5), false).unwrap().len() as u64;
    assert_eq!(r.vbench.requests[0].output_tokens, want);
}

// The guard only keeps whole tests apart; nothing in the test takes it again.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_seed_replays_the_same_schedule_and_requests() {
    let _serial = crate::support::serial();
    let srv = FakeServer::start(0, timing(1, 1)).await.unwrap();
    let mk = |seed| {
        let offsets = load::arrival_offsets(20, 200.0, Arrival::Poisson, seed).unwrap();
        spec(&srv.base_url(), Api::Completions, &[("q", 1); 20], offsets)
    };
    let (a, b, c) = (run(&mk(5)).await, run(&mk(5)).await, run(&mk(6)).await);
    assert_eq!(a.start_times, b.start_times);
    assert_ne!(a.start_times, c.start_times);
    assert_eq!(a.completed, 20);
}

/// The client's runtime is blocked for 50 ms at a time (a stand-in for a client busy with
/// thousands of other streams, or descheduled): the first token waits in the socket, but its
/// arrival is taken from the kernel's receive stamp, so the measured TTFT stays the server's
/// own (from its log), and the wait shows up as client health instead. With the stamps turned
/// off, the same run measures the wait as latency.
// The guard only keeps whole tests apart; nothing in the test takes it again.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "current_thread")]
async fn a_busy_client_still_times_tokens_by_when_they_arrived() {
    let _serial = crate::support::serial();
    let (r, errors) = busy_client_run(true).await;
    let v = &r.vbench;
    assert_eq!(r.completed, 4, "{:?}", v.requests);
    for q in &v.requests {
        within(
            q.sent_s - q.scheduled_s,
            -0.001,
            0.01,
            "lag (sent by the dispatcher thread)",
        );
    }
    for e in &errors {
        within(*e, -0.003, 0.006, "TTFT error against the server's log");
    }
    let c = &v.client;
    assert!(c.kernel_stamped_share.unwrap() > 0.5, "{c:?}");
    assert!(
        c.read_wait_max_ms.unwrap() > 5.0,
        "the hog made reads wait: {c:?}"
    );

    let (r, errors) = busy_client_run(false).await;
    assert_eq!(r.completed, 4);
    assert_eq!(r.vbench.client.kernel_stamped_share, Some(0.0));
    let worst = errors.iter().copied().fold(0.0, f64::max);
    assert!(
        worst > 0.010,
        "read instants include the hog's 50 ms blocks: {errors:?}"
    );
}

/// A scripted server on its own thread and runtime, so a blocked client runtime cannot slow
/// it. `stop` ends it and returns what it served.
struct ServerThread {
    url: String,
    done: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<Vec<crate::support::fake_server::ServedLog>>,
}

impl ServerThread {
    fn start(t: FakeTiming) -> ServerThread {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done, done_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let srv = FakeServer::start(0, t).await.unwrap();
                tx.send(srv.base_url()).unwrap();
                let _ = done_rx.await;
                srv.log()
            })
        });
        let url = rx.recv().unwrap();
        ServerThread { url, done, thread }
    }

    fn stop(self) -> Vec<crate::support::fake_server::ServedLog> {
        let _ = self.done.send(());
        self.thread.join().unwrap()
    }
}

/// Block the (current-thread) runtime's only worker for `ms` at a time until stopped: a
/// stand-in for a client busy with thousands of other streams, or descheduled.
struct Hog {
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Hog {
    fn start(ms: u64) -> Hog {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(ms));
                tokio::task::yield_now().await;
            }
        });
        Hog { stop, task }
    }

    async fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.unwrap();
    }
}

/// One run against a server on its own thread; returns the result and, per request, the
/// client's TTFT (from its send) minus the server's (from its log), in seconds.
async fn busy_client_run(rx_timestamps: bool) -> (RunResult, Vec<f64>) {
    let server = ServerThread::start(timing(30, 100));
    let hog = Hog::start(50);
    let prompts = [("busy client", 2u64); 4];
    let offsets = (0..4).map(|i| 0.05 + i as f64 * 0.4).collect();
    let mut s = spec(&server.url, Api::Completions, &prompts, offsets);
    s.warmup = 1; // leaves a kept-alive connection, so the dispatcher thread sends on time
    s.rx_timestamps = rx_timestamps;
    let r = run(&s).await;
    hog.stop().await;
    let log = server.stop();
    let errors = r
        .vbench
        .requests
        .iter()
        .map(|q| {
            let served = log
                .iter()
                .find(|e| e.id.as_deref() == Some(&format!("vbench-{}", q.index)))
                .expect("the server logged every request");
            let server_ttft = (served.first_ns.unwrap() - served.recv_ns) as f64 / 1e9;
            q.ttft_s.unwrap() - (q.sent_s - q.scheduled_s) - server_ttft
        })
        .collect();
    (r, errors)
}

/// When the client reads later than a token gap, tokens are read together and share a stamp:
/// the summary says so instead of presenting the ITLs as exact.
// The guard only keeps whole tests apart; nothing in the test takes it again.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "current_thread")]
async fn batched_reads_are_called_out_in_the_summary() {
    let _serial = crate::support::serial();
    // a 20 ms token gap: an idle client reads far within it, the hog's 60 ms blocks do not
    let server = ServerThread::start(timing(10, 20));
    let quiet = {
        let s = spec(
            &server.url,
            Api::Completions,
            &[("quiet", 6u64); 3],
            vec![0.0, 0.2, 0.4],
        );
        run(&s).await
    };
    let hog = Hog::start(60);
    let busy = {
        let s = spec(
            &server.url,
            Api::Completions,
            &[("busy", 6u64); 3],
            vec![0.0, 0.2, 0.4],
        );
        run(&s).await
    };
    hog.stop().await;
    server.stop();
    let note = "some tokens were read together";
    assert!(
        !vbench::load::summary::human_summary(&quiet).contains(note),
        "{:?}",
        quiet.vbench.client
    );
    assert!(
        vbench::load::summary::human_summary(&busy).contains(note),
        "{:?}",
        busy.vbench.client
    );
}
