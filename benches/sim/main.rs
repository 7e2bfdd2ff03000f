//! Benchmarks of `vbench sim-serve` (run: `cargo test --release --bench sim -- --nocapture`;
//! results are recorded in benches/sim/RESULTS.md).
//!
//! - `five_thousand_streams_on_one_core`: one server process pinned to one core holds 5,000
//!   concurrent streams; reports how late its simulated steps end against their schedule.
//! - `realtime_distserve_table`: the llama3-8b-h200 profile served for real over HTTP, simple vs
//!   NIXL 1P1D behind a minimal in-bench proxy, Poisson 4/8/12 req/s for 20 s each, against the
//!   H200 measurements.

#[path = "../../tests/it/support/sim.rs"]
mod sim_support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use sim_support::*;
use vbench::sim::model::{percentile, poisson_arrivals};
use vbench::sim::{Profile, Role, SimConfig};

const BENCH_PROFILE: &str = r#"
name = "bench-5k"
description = "A wide decode batch: 5,000 sequences per step"
max_model_len = 4096
block_size = 16
kv_capacity_tokens = 20000000
max_num_batched_tokens = 8192
max_num_seqs = 8192
kv_bytes_per_token = 131072
[timing]
frontend_ms = 0.0
step_base_ms = 5.0
prefill_per_token_us = 1.0
decode_per_seq_us = 20.0
decode_per_ctx_token_ns = 0.0
[kv_transfer]
bandwidth_gb_s = 14.0
latency_ms = 1.0
"#;

fn pin_self_to(cpu: usize) {
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let ut: f64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0.0);
    let st: f64 = f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0.0);
    (ut + st) / ticks
}

/// The vbench binary: this build's, or SIM_BENCH_VBENCH (to run the bench on another machine).
fn vbench_bin() -> String {
    std::env::var("SIM_BENCH_VBENCH").unwrap_or_else(|_| env!("CARGO_BIN_EXE_vbench").to_string())
}

struct Killer(Child);
impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn five_thousand_streams_on_one_core() {
    let streams: usize = std::env::var("SIM_BENCH_STREAMS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let out_tokens: u32 = 150;
    let dir = tempfile::tempdir().unwrap();
    let prof = dir.path().join("bench.toml");
    std::fs::write(&prof, BENCH_PROFILE).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    // Server on core 0, this client on the last core.
    let child = Command::new("taskset")
        .args([
            "-c",
            "0",
            &vbench_bin(),
            "sim-serve",
            "--port",
            &port.to_string(),
            "--profile",
            prof.to_str().unwrap(),
            "--model",
            "m",
        ])
        .stderr(Stdio::null())
        .spawn()
        .expect("taskset and the vbench binary");
    let server = Killer(child);
    if ncpu > 1 {
        pin_self_to(ncpu - 1);
    }
    let url = format!("http://127.0.0.1:{port}");
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    let t0 = Instant::now();
    while c
        .get(format!("{url}/health"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "server never healthy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu0 = cpu_seconds(server.0.id());
    let start = Instant::now();
    let u = format!("{url}/v1/completions");
    // Open all streams over 1 s.
    let tasks: Vec<_> = (0..streams)
        .map(|i| {
            let (c, u) = (c.clone(), u.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs_f64(i as f64 / streams as f64)).await;
                let body = json!({"model": "m", "prompt": [1, 2, 3, 4, 5, 6, 7, 8], "max_tokens": out_tokens,
                    "stream": true, "stream_options": {"include_usage": true}});
                let s = stream(&c, &u, body).await;
                let span = s.sent.zip(s.token_times.last().copied());
                (s.done(), s.token_times.len(), span)
            })
        })
        .collect();
    // Sample the server's running count while the streams are open.
    let mut peak_running = 0.0f64;
    let sampler = async {
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if let Ok(r) = c.get(format!("{url}/metrics")).send().await {
                if let Ok(t) = r.text().await {
                    if let Ok(m) = parse_prometheus(&t) {
                        let run = metric(&m, "vllm:num_requests_running", &[]);
                        peak_running = peak_running.max(run);
                        if run == 0.0 && peak_running > 0.0 {
                            break;
                        }
                    }
                }
            }
        }
    };
    let (results, ()) = futures::future::join(futures::future::join_all(tasks), sampler).await;
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(server.0.id()) - cpu0;
    let ok = results
        .iter()
        .filter(|r| matches!(r, Ok((true, n, _)) if *n == out_tokens as usize))
        .count();
    // Streams open at once, from the client's side: sweep over (sent, last token) intervals.
    let mut edges: Vec<(Instant, i32)> = Vec::new();
    for (a, b) in results
        .iter()
        .filter_map(|r| r.as_ref().ok().and_then(|r| r.2))
    {
        edges.push((a, 1));
        edges.push((b, -1));
    }
    edges.sort();
    let (mut open, mut max_open) = (0i32, 0i32);
    for (_, d) in edges {
        open += d;
        max_open = max_open.max(open);
    }
    let text = c
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let m = parse_prometheus(&text).unwrap();
    let steps = metric(&m, "vbench_sim:step_lag_seconds_count", &[]);
    let lag_sum = metric(&m, "vbench_sim:step_lag_seconds_sum", &[]);
    let le = |b: &str| metric(&m, "vbench_sim:step_lag_seconds_bucket", &[("le", b)]);
    let over_1ms = steps - le("0.001");
    let over_500us = steps - le("0.0005");
    println!("streams: {streams} requested, {ok} complete with all {out_tokens} tokens and [DONE]");
    println!("streams open at once (client side): {max_open}; peak vllm:num_requests_running sampled: {peak_running}");
    println!(
        "server CPU: {cpu:.1} s over {wall:.1} s wall ({:.0} % of one core)",
        100.0 * cpu / wall
    );
    let lag_max = metric(&m, "vbench_sim:step_lag_max_seconds", &[]);
    println!("steps: {steps}, mean lag {:.3} ms, max lag {:.3} ms, steps later than 0.5 ms: {over_500us}, later than 1 ms: {over_1ms}",
        1e3 * lag_sum / steps.max(1.0), 1e3 * lag_max);
    assert_eq!(ok, streams, "every stream must complete");
    assert!(
        peak_running >= streams as f64 * 0.95,
        "streams must be concurrent, peak {peak_running}"
    );
    assert!(
        over_1ms / steps.max(1.0) < 0.01,
        "more than 1 % of steps over 1 ms late"
    );
}

/// (rate, simple [TTFT p50, TPOT p50, TPOT p90], pd [same]) in ms: tests/fixtures/vllm-gpu/README.md.
const MEASURED: [(f64, [f64; 3], [f64; 3]); 3] = [
    (4.0, [64.0, 6.1, 8.3], [97.0, 4.9, 5.2]),
    (8.0, [80.0, 8.4, 11.2], [113.0, 5.2, 5.6]),
    (12.0, [150.0, 13.4, 17.0], [157.0, 6.2, 7.0]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_distserve_table() {
    let secs: f64 = std::env::var("SIM_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20.0);
    let p = Profile::load("llama3-8b-h200").unwrap();
    let mk = |role| {
        let mut c = SimConfig::new(p.clone(), "m");
        c.role = role;
        c.kv_host = "127.0.0.1".into();
        c
    };
    let c = client();
    let mut worst: f64 = 0.0;
    println!("| rate | mode | TTFT p50 ms (measured / sim) | TPOT p50 ms | TPOT p90 ms |");
    println!("|---|---|---|---|---|");
    for (rate, m_simple, m_pd) in MEASURED {
        for pd in [false, true] {
            // Fresh servers per cell, as the reference restarted nothing but began idle.
            let simple = start(mk(Role::Simple)).await;
            let (ps, ds) = (
                start(mk(Role::Prefill)).await,
                start(mk(Role::Decode)).await,
            );
            let arrivals = poisson_arrivals(rate, secs, 42, 2048, 128);
            let t0 = tokio::time::Instant::now();
            let futs = arrivals.iter().map(|a| {
                let (c, su, pu, du) = (c.clone(), simple.url(), ps.url(), ds.url());
                let at = t0 + Duration::from_secs_f64(a.at);
                async move {
                    tokio::time::sleep_until(at).await;
                    let body = completion_body(2048, 128);
                    let s = if pd {
                        pd_request(&c, &pu, &du, &body).await.1
                    } else {
                        stream(&c, &format!("{su}/v1/completions"), body).await
                    };
                    let sched = at.into_std();
                    assert!(s.done(), "request failed: {:?}", s.error);
                    let ttft = (s.token_times[0] - sched).as_secs_f64();
                    (ttft * 1e3, s.tpot() * 1e3)
                }
            });
            let res = futures::future::join_all(futs).await;
            let ttft: Vec<f64> = res.iter().map(|r| r.0).collect();
            let tpot: Vec<f64> = res.iter().map(|r| r.1).collect();
            let sim = [
                percentile(&ttft, 0.5),
                percentile(&tpot, 0.5),
                percentile(&tpot, 0.9),
            ];
            let meas = if pd { m_pd } else { m_simple };
            for k in 0..3 {
                worst = worst.max(((sim[k] - meas[k]) / meas[k]).abs());
            }
            println!(
                "| {rate} | {} | {:.0} / {:.0} | {:.1} / {:.1} | {:.1} / {:.1} |",
                if pd { "1P1D" } else { "simple" },
                meas[0],
                sim[0],
                meas[1],
                sim[1],
                meas[2],
                sim[2]
            );
            if pd {
                let m = scrape(&c, &ds.url()).await;
                let ext = metric(
                    &m,
                    "vllm:prompt_tokens_by_source_total",
                    &[("source", "external_kv_transfer")],
                );
                assert_eq!(
                    ext,
                    2048.0 * res.len() as f64,
                    "every decode used the transferred KV"
                );
            }
            for s in [simple, ps, ds] {
                s.stop().await.unwrap();
            }
        }
    }
    println!("worst deviation: {:.0} %", worst * 100.0);
    assert!(worst < 0.30, "worst deviation {:.0} %", worst * 100.0);
}
