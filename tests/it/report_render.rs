//! End-to-end report rendering from hand-built vbench run folders.

use std::path::Path;

use crate::support::report::*;
use vbench::report::{render_report, Format, ReportOptions};

fn small_run(dir: &Path) {
    synth_run(dir, "qwen-pd", 1, &[1.0, 2.0, 4.0, 6.0, 8.0, 10.0], 200, 48);
}

#[test]
fn report_writes_every_figure_in_three_formats_and_the_summaries() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("qwen-pd/20261128_120000");
    small_run(&run);
    let out = vbench::report::report_run_folder(&run).unwrap();
    assert_eq!(out.out_dir, run.join("report"));
    assert!(out.skipped.is_empty(), "{:?}", out.skipped);
    // 3 variants: per variant 3 figures; comparisons: 3 SLO kinds. Each in 3 formats.
    let figs = (3 * 3 + 3) * 3;
    assert_eq!(out.files.len(), figs + 3, "{:#?}", out.files);
    for f in &out.files {
        let bytes = std::fs::read(f).unwrap();
        assert!(bytes.len() > 1000, "{} is too small", f.display());
        match f.extension().and_then(|e| e.to_str()) {
            Some("pdf") => assert!(bytes.starts_with(b"%PDF-"), "{}", f.display()),
            Some("png") => assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{}", f.display()),
            Some("svg") => assert!(bytes.starts_with(b"<svg"), "{}", f.display()),
            _ => {}
        }
    }
    let names: Vec<String> = out
        .files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "qwen-pd_simple-tp1_benchmark_plots.pdf",
        "qwen-pd_nixl-pf1-d1_latency_percentiles.png",
        "qwen-pd_lmcache-pf1-d1_client_health.svg",
        "simple-tp1_vs_nixl-pf1-d1_vs_lmcache-pf1-d1_comparison_both.pdf",
        "simple-tp1_vs_nixl-pf1-d1_vs_lmcache-pf1-d1_comparison_ttft.pdf",
        "simple-tp1_vs_nixl-pf1-d1_vs_lmcache-pf1-d1_comparison_tpot.pdf",
        "index.html",
        "summary.md",
        "summary.json",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "missing {expected} in {names:?}"
        );
    }
}

#[test]
fn a_second_report_goes_to_a_new_folder_and_overwrites_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("20261128_120000");
    synth_run(&run, "x", 1, &[1.0, 2.0], 20, 8);
    let mut opts = ReportOptions::for_inputs(vec![run.clone()]);
    opts.formats = vec![Format::Svg];
    let a = render_report(&opts).unwrap();
    let b = render_report(&opts).unwrap();
    assert_eq!(a.out_dir, run.join("report"));
    assert_eq!(b.out_dir, run.join("report-2"));
    // An explicit folder that already holds the files is refused, not overwritten.
    opts.out = Some(a.out_dir.clone());
    let err = render_report(&opts).unwrap_err();
    assert!(format!("{err}").contains("refusing to overwrite"), "{err}");
}

/// Original-suite folders: `--compare` names files as the suite did.
#[test]
fn comparing_original_suite_folders_uses_their_names() {
    let tmp = tempfile::tempdir().unwrap();
    let mut dirs = Vec::new();
    for (mode, extra) in [
        ("simple", r#""tensor_parallel_size":1"#),
        (
            "nixl",
            r#""num_prefill_instances":1,"num_decode_instances":1,"tensor_parallel_size":1"#,
        ),
    ] {
        let dir = tmp.path().join(format!("{mode}_20250101_120000"));
        std::fs::create_dir_all(&dir).unwrap();
        for rate in [1, 2, 4] {
            let ttft = 0.02 * rate as f64;
            std::fs::write(
                dir.join(format!("vllm-{rate}qps-20250101-120000.json")),
                format!(
                    r#"{{"model_name":"m","dataset_name":"sharegpt","deployment_mode":"{mode}",{extra},
                       "ttfts":[{ttft},{ttft},0.5],"tpots":[0.01,0.01,0.01],"output_lens":[9,9,9]}}"#
                ),
            )
            .unwrap();
        }
        dirs.push(dir);
    }
    let mut opts = ReportOptions::for_inputs(dirs);
    opts.compare_all = true;
    opts.formats = vec![Format::Pdf];
    opts.out = Some(tmp.path().join("plots"));
    let out = render_report(&opts).unwrap();
    for name in [
        "simple_20250101_120000_vs_nixl_20250101_120000_comparison_both.pdf",
        "simple_20250101_120000_vs_nixl_20250101_120000_comparison_ttft.pdf",
        "simple_20250101_120000_vs_nixl_20250101_120000_comparison_tpot.pdf",
        "simple_20250101_120000_benchmark_plots.pdf",
        "nixl_20250101_120000_benchmark_plots.pdf",
    ] {
        assert!(out.out_dir.join(name).exists(), "missing {name}");
    }
    // Suite files carry no client-health data: no such figure is drawn.
    assert!(!out
        .files
        .iter()
        .any(|f| f.to_string_lossy().contains("client_health")));
}

#[test]
fn the_run_manifests_report_and_slo_sections_are_honoured() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("20261128_120000");
    synth_run(&run, "m", 1, &[1.0, 2.0, 4.0], 20, 4);
    let manifest = run.join("manifest.toml");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("ttft_ms = 125", "ttft_ms = 80\nscale_rate = 4");
    std::fs::write(
        &manifest,
        format!(
            "{text}\n[report]\nformats = [\"svg\"]\nx_axis = \"per-gpu\"\nslo_types = [\"tpot\"]\n"
        ),
    )
    .unwrap();
    let opts = ReportOptions::for_inputs(vec![run]);
    assert_eq!(opts.formats, vec![Format::Svg]);
    assert!(opts.per_gpu);
    assert_eq!(opts.scoring.slo.ttft_s, 0.08);
    assert_eq!(opts.scoring.scale_rate, Some(4.0));
    let out = render_report(&opts).unwrap();
    let names: Vec<String> = out
        .files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names
        .iter()
        .all(|n| !n.ends_with(".pdf") && !n.ends_with(".png")));
    assert_eq!(
        names.iter().filter(|n| n.contains("_comparison_")).count(),
        1,
        "{names:?}"
    );
    assert!(out
        .analysis
        .variants
        .iter()
        .all(|v| v.scale_rate == Some(4.0)));
}
