//! A streaming server with known timing for the load generator's accuracy benchmark
//! (benches/loadgen/run.sh). Every request gets `max_tokens` tokens after a fixed TTFT with a
//! fixed gap; `GET /log?reset=true` returns (and clears) what it served, one JSON line per
//! request with its receive, first-token and last-token instants in ns.
//!
//! usage: fixed_server PORT TTFT_MS GAP_MS [WORKER_THREADS]

use std::time::Duration;

use vbench::load::fake_server::{FakeServer, FakeTiming};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: f64| -> f64 {
        args.get(i)
            .map(|s| {
                s.parse()
                    .unwrap_or_else(|_| panic!("argument {i} must be a number: {s}"))
            })
            .unwrap_or(d)
    };
    let port = arg(1, 8199.0) as u16;
    let timing = FakeTiming {
        ttft: Duration::from_secs_f64(arg(2, 20.0) / 1e3),
        gap: Duration::from_secs_f64(arg(3, 5.0) / 1e3),
    };
    let threads = arg(4, 1.0) as usize;
    vbench::load::runner::raise_nofile_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let srv = FakeServer::start(port, timing)
            .await
            .expect("bind 127.0.0.1");
        eprintln!(
            "fixed_server on {} (ttft {:?}, gap {:?})",
            srv.base_url(),
            timing.ttft,
            timing.gap
        );
        let _ = tokio::signal::ctrl_c().await;
    });
}
