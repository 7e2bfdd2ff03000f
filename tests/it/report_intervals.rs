//! How sure the report is: Wilson intervals of attainment per rate, goodput ranges from them,
//! and a winner declared only when the ranges separate.

use std::path::Path;

use crate::support::report::*;

/// `n` requests, of which `met` meet the default SLO (TTFT ≤ 125 ms) and the rest miss it.
fn requests(n: usize, met: usize) -> Vec<vbench::load::RequestRecord> {
    (0..n as u64)
        .map(|i| {
            let ttft = if (i as usize) < met { 0.05 } else { 0.5 };
            ok(i, ttft, 0.02, 16)
        })
        .collect()
}

/// A run folder with two one-GPU variants; `curves` gives each one's met count per rate
/// (rates 1, 2, 3), out of `n`.
fn run_with(dir: &Path, n: usize, curves: [[usize; 3]; 2]) -> serde_json::Value {
    std::fs::write(
        dir.join("manifest.toml"),
        "name = \"x\"\nmodel = \"m\"\n\n[slo]\nttft_ms = 125\ntpot_ms = 200\ntarget_pct = 90\n",
    )
    .unwrap();
    for (i, curve) in curves.iter().enumerate() {
        let d = dep("simple", &format!("v{i}"), 1, &format!("v{i}"));
        for (rate, met) in [1.0, 2.0, 3.0].iter().zip(curve) {
            write(dir, &result(&d, "m", *rate, requests(n, *met)));
        }
    }
    let out = vbench::report::report_run_folder(dir).unwrap();
    serde_json::from_slice(&std::fs::read(out.out_dir.join("summary.json")).unwrap()).unwrap()
}

fn variant<'a>(summary: &'a serde_json::Value, label: &str) -> &'a serde_json::Value {
    summary["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["label"] == label)
        .unwrap()
}

#[test]
fn attainment_intervals_are_wilson_over_each_rates_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let s = run_with(tmp.path(), 20, [[20, 19, 10], [20, 17, 10]]);
    let close = |v: &serde_json::Value, want: f64| (v.as_f64().unwrap() - want).abs() < 1e-6;
    // 19 of 20 → 76.39-99.11 %; 17 of 20 → 63.96-94.76 % (Wilson, 95 %).
    let i = &variant(&s, "v0")["points"][1]["attainment_interval"][0];
    assert!(
        close(&i["lo"], 76.386_880_655) && close(&i["hi"], 99.111_855_120),
        "{i}"
    );
    let i = &variant(&s, "v1")["points"][1]["attainment_interval"][0];
    assert!(
        close(&i["lo"], 63.958_113_526) && close(&i["hi"], 94.763_125_410),
        "{i}"
    );
    // Percentile intervals are there for TTFT; p99 of 20 requests cannot be bounded above.
    let ttft = &variant(&s, "v0")["points"][0]["ttft_interval_ms"];
    assert!(
        ttft["p50"]["lo"].is_number() && ttft["p99"]["hi"].is_null(),
        "{ttft}"
    );
}

#[test]
fn a_winner_whose_range_overlaps_is_not_distinguishable() {
    let tmp = tempfile::tempdir().unwrap();
    // v0 crosses 90 % between 2 and 3 req/s, v1 between 1 and 2: v0 wins on the points, but
    // with 20 requests per rate v1's optimistic crossing (17/20 → up to 94.8 %) passes 2.
    let s = run_with(tmp.path(), 20, [[20, 19, 10], [20, 17, 10]]);
    assert_eq!(s["winner"]["by_goodput"], serde_json::json!(["v0"]));
    assert_eq!(s["winner"]["distinguishable"], false, "{}", s["winner"]);
    let note = s["winner"]["note"].as_str().unwrap();
    assert!(
        note.contains("not distinguishable at this sample size")
            && note.contains("requests per rate"),
        "{note}"
    );
    let v1 = variant(&s, "v1");
    assert_eq!(v1["goodput_interval"][1]["kind"], "at", "{v1}");
    assert!(
        v1["goodput_interval"][1]["x"].as_f64().unwrap() > 2.0,
        "{v1}"
    );
    let md = std::fs::read_to_string(tmp.path().join("report/summary.md")).unwrap();
    assert!(md.contains("(goodput, not distinguishable)"), "{md}");
    // Rates 1, 2, 3 are a third of the goodput apart: the report says where to measure next,
    // the middle of each gap that holds an end of the range.
    let next = |v: &serde_json::Value| -> Vec<f64> {
        v["narrowing_rates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_f64().unwrap())
            .collect()
    };
    assert_eq!(next(variant(&s, "v0")), [2.5], "{}", variant(&s, "v0"));
    assert_eq!(next(v1), [1.5, 2.5], "{v1}");
    assert!(
        md.contains("to narrow its goodput range: measure 1.5 and 2.5 req/s too"),
        "{md}"
    );
}

#[test]
fn a_winner_whose_range_is_clear_is_distinguishable() {
    let tmp = tempfile::tempdir().unwrap();
    // The same shapes with 1,000 requests per rate: the ranges separate.
    let s = run_with(tmp.path(), 1000, [[1000, 950, 500], [1000, 850, 500]]);
    assert_eq!(s["winner"]["by_goodput"], serde_json::json!(["v0"]));
    assert_eq!(s["winner"]["distinguishable"], true, "{}", s["winner"]);
    let (v0, v1) = (variant(&s, "v0"), variant(&s, "v1"));
    let pessimistic_v0 = v0["goodput_interval"][0]["x"].as_f64().unwrap();
    let optimistic_v1 = v1["goodput_interval"][1]["x"].as_f64().unwrap();
    assert!(pessimistic_v0 > optimistic_v1, "{v0} {v1}");
    // The point estimate lies inside its own range.
    let g = v0["goodput"]["x"].as_f64().unwrap();
    let hi = v0["goodput_interval"][1]["x"].as_f64().unwrap();
    assert!(pessimistic_v0 <= g && g <= hi, "{v0}");
}

/// Repeats of a rate (files of the same rate in one variant) are one point: their requests
/// pooled, each repeat's attainment beside it, and an interval no narrower than the repeats'
/// disagreement allows.
#[test]
fn repeats_are_pooled_and_their_spread_widens_the_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("manifest.toml"),
        "name = \"x\"\nmodel = \"m\"\n\n[slo]\nttft_ms = 125\ntpot_ms = 200\ntarget_pct = 90\n",
    )
    .unwrap();
    let d = dep("simple", "v", 1, "v");
    for (repeat, met) in [(1, 26), (2, 83), (3, 45)] {
        let mut r = result(&d, "m", 2.0, requests(100, met));
        r.vbench.load.repeat = Some(repeat);
        let path = dir.join("v").join(format!("vllm-2qps-repeat{repeat}.json"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_vec(&r).unwrap()).unwrap();
    }
    let out = vbench::report::report_run_folder(dir).unwrap();
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.out_dir.join("summary.json")).unwrap()).unwrap();
    let points = variant(&s, "v")["points"].as_array().unwrap();
    assert_eq!(points.len(), 1, "one point per rate");
    let p = &points[0];
    assert_eq!(p["repeats"], 3);
    assert_eq!(p["requests"], 300);
    assert_eq!(
        p["spread"]["attainment"],
        serde_json::json!([26.0, 83.0, 45.0])
    );
    // Pooled: 154 of 300 met (51.3 %); Wilson alone would say 45.7-56.9 %, but repeats of 26,
    // 83 and 45 % only support mean ± t(2)·sd/√3: the interval spans 0-100 %.
    assert!(
        (p["attainment"][0].as_f64().unwrap() - 51.333).abs() < 0.01,
        "{p}"
    );
    let i = &p["attainment_interval"][0];
    assert_eq!(
        (i["lo"].as_f64(), i["hi"].as_f64()),
        (Some(0.0), Some(100.0)),
        "{i}"
    );
    let md = std::fs::read_to_string(out.out_dir.join("summary.md")).unwrap();
    assert!(md.contains("3 repeats: 26, 83, 45 (sd 29.02)"), "{md}");
}

/// Repeated measurements that disagree beyond what independent requests allow widen every
/// attainment interval of their variant, single measurements included: the spread between
/// repeats (pooled over the rates measured twice) sets how many independent requests a
/// measurement is worth. Repeats that agree as binomial noise would leave the intervals alone.
#[test]
fn overdispersed_repeats_widen_every_interval_of_their_variant() {
    let run = |dir: &Path, twice: [[usize; 2]; 2]| -> serde_json::Value {
        std::fs::write(
            dir.join("manifest.toml"),
            "name = \"x\"\nmodel = \"m\"\n\n[slo]\nttft_ms = 125\ntpot_ms = 200\ntarget_pct = 90\n",
        )
        .unwrap();
        let d = dep("simple", "v", 1, "v");
        let mut files = vec![(3.0, 1, 50)];
        for (rate, mets) in [1.0, 2.0].iter().zip(twice) {
            files.extend(
                mets.iter()
                    .enumerate()
                    .map(|(i, m)| (*rate, i as u32 + 1, *m)),
            );
        }
        for (rate, repeat, met) in files {
            let mut r = result(&d, "m", rate, requests(100, met));
            r.vbench.load.repeat = Some(repeat);
            let path = dir
                .join("v")
                .join(format!("vllm-{rate}qps-repeat{repeat}.json"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, serde_json::to_vec(&r).unwrap()).unwrap();
        }
        let out = vbench::report::report_run_folder(dir).unwrap();
        serde_json::from_slice(&std::fs::read(out.out_dir.join("summary.json")).unwrap()).unwrap()
    };
    // 95 and 75 %, 60 and 80 %: variance 0.02 at each rate where 100 independent requests
    // would give 0.85·0.15/100 and 0.7·0.3/100: φ = 0.04 / 0.003375 = 11.85.
    let tmp = tempfile::tempdir().unwrap();
    let s = run(tmp.path(), [[95, 75], [60, 80]]);
    let v = variant(&s, "v");
    let phi = v["attainment_dispersion"].as_f64().unwrap();
    assert!((phi - 0.04 / 0.003375).abs() < 1e-6, "{phi}");
    // The single measurement at 3 req/s (50 of 100, Wilson 40.4-59.6 %) is worth about 8
    // requests: 4 of 8, 21.5-78.5 %.
    let i = &v["points"][2]["attainment_interval"][0];
    let (lo, hi) = (i["lo"].as_f64().unwrap(), i["hi"].as_f64().unwrap());
    assert!((lo - 21.52).abs() < 0.1 && (hi - 78.48).abs() < 0.1, "{i}");

    // 85 and 86 %, 70 and 71 %: less spread than binomial noise, nothing widened.
    let tmp = tempfile::tempdir().unwrap();
    let s = run(tmp.path(), [[85, 86], [70, 71]]);
    let v = variant(&s, "v");
    assert_eq!(v["attainment_dispersion"].as_f64(), Some(1.0));
    let i = &v["points"][2]["attainment_interval"][0];
    let (lo, hi) = (i["lo"].as_f64().unwrap(), i["hi"].as_f64().unwrap());
    assert!((lo - 40.38).abs() < 0.1 && (hi - 59.62).abs() < 0.1, "{i}");
}
