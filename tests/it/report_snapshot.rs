//! SVG snapshots of the figures people read (deterministic: the font is bundled).

use crate::support::report::*;
use vbench::report::analysis::{analyse, Scoring};
use vbench::report::attainment::SloKind;
use vbench::report::figures;
use vbench::report::import::import_paths;

fn analysis() -> vbench::report::analysis::Analysis {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("demo");
    let s = dep("simple", "simple TP:1", 1, "simple-tp1");
    let n = dep("nixl", "nixl PF:1 D:1 TP:1x1", 2, "nixl-pf1");
    // Met requests out of 10 per rate: simple 10, 9, 5, 1; nixl 10, 10, 9, 6.
    for (rate, slow_s, slow_n) in [(1.0, 0, 0), (2.0, 1, 0), (4.0, 5, 1), (8.0, 9, 4)] {
        let reqs = |slow: u64| -> Vec<_> {
            (0..10)
                .map(|i| match i {
                    i if i < slow && i % 2 == 0 => ok(i, 0.3, 0.01, 6),
                    i if i < slow => ok(i, 0.05, 0.4, 6),
                    i => ok(i, 0.05 + 0.001 * i as f64, 0.02, 6),
                })
                .collect()
        };
        write(&run, &result(&s, "Qwen/Qwen3-0.6B", rate, reqs(slow_s)));
        write(&run, &result(&n, "Qwen/Qwen3-0.6B", rate, reqs(slow_n)));
    }
    let imp = import_paths(&[run]).unwrap();
    analyse(&imp, &Scoring::default())
}

#[test]
fn variant_figure_svg() {
    let a = analysis();
    let svg = figures::variant_figure(&a, &a.variants[0], false).unwrap();
    assert!(svg.contains("SIMULATED"));
    insta::assert_snapshot!("variant_figure", svg);
}

#[test]
fn comparison_figure_svg_per_gpu() {
    let a = analysis();
    let vs: Vec<_> = a.variants.iter().collect();
    let svg = figures::comparison_figure(&a, &vs, SloKind::Both, true, Some(&[1.0, 2.0, 4.0, 8.0]))
        .unwrap();
    assert!(svg.contains("nixl PF:1 D:1 TP:1x1"));
    insta::assert_snapshot!("comparison_both_per_gpu", svg);
}
