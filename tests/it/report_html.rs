//! The HTML page: escaping of untrusted strings, and a real render in headless Chromium.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::report::*;
use vbench::report::{render_report, Format, ReportOptions};

const EVIL: &str = "<script>alert(1)</script>";

fn hostile_run(dir: &Path) {
    synth_run(dir, EVIL, 1, &[1.0, 3.0, 6.0, 9.0, 12.0], 80, 16);
    // A hostile label too, in its own variant.
    let mut d = dep("nixl", "nixl <b>PF:9</b> D:1", 10, "evil");
    d.simulated = true;
    for rate in [1.0, 3.0] {
        write(
            dir,
            &result(
                &d,
                "<img src=x onerror=alert(2)>",
                rate,
                synth(7, 20, rate, 5.0, 0.5, 8),
            ),
        );
    }
}

#[test]
fn strings_from_manifests_and_results_stay_text() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("20261128_120000");
    hostile_run(&run);
    let mut opts = ReportOptions::for_inputs(vec![run.clone()]);
    opts.formats = vec![Format::Svg];
    let out = render_report(&opts).unwrap();
    let html = std::fs::read_to_string(out.out_dir.join("index.html")).unwrap();
    assert!(
        !html.contains("<script"),
        "a script tag leaked into index.html"
    );
    assert!(!html.contains("<b>PF:9"), "a label's markup leaked");
    assert!(!html.contains("<img src=x"), "a model name's markup leaked");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the name is shown as text"
    );
    let md = std::fs::read_to_string(out.out_dir.join("summary.md")).unwrap();
    assert!(!md.contains("<script") && !md.contains("<b>"), "{md}");
    for f in &out.files {
        if f.extension().is_some_and(|e| e == "svg") {
            let svg = std::fs::read_to_string(f).unwrap();
            assert!(
                !svg.contains("<script") && !svg.contains("<b>"),
                "{}",
                f.display()
            );
        }
    }
}

/// Debian's chromium; CI installs it with ci/install-chromium.sh. Missing is a failure.
fn chromium() -> PathBuf {
    let candidates = [
        std::env::var("CHROMIUM").unwrap_or_default(),
        "/usr/bin/chromium".into(),
        "/usr/bin/chromium-browser".into(),
    ];
    candidates
        .iter()
        .filter(|c| !c.is_empty())
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "headless Chromium is required for this test and was not found \
                 (looked at $CHROMIUM, /usr/bin/chromium, /usr/bin/chromium-browser); \
                 install it with `bash ci/install-chromium.sh`"
            )
        })
}

fn chromium_cmd(profile: &Path) -> Command {
    let mut c = Command::new(chromium());
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

/// Pixels close to `rgb` (within `tol` per channel).
fn count_color(p: &resvg::tiny_skia::Pixmap, rgb: (u8, u8, u8), tol: i32) -> usize {
    p.pixels()
        .iter()
        .filter(|px| {
            let c = px.demultiply();
            (c.red() as i32 - rgb.0 as i32).abs() <= tol
                && (c.green() as i32 - rgb.1 as i32).abs() <= tol
                && (c.blue() as i32 - rgb.2 as i32).abs() <= tol
        })
        .count()
}

#[test]
fn index_html_renders_in_headless_chromium_with_its_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("20261128_120000");
    hostile_run(&run);
    let mut opts = ReportOptions::for_inputs(vec![run.clone()]);
    opts.formats = vec![Format::Svg, Format::Png];
    let out = render_report(&opts).unwrap();
    let index = out.out_dir.join("index.html");
    let url = format!("file://{}", index.display());

    // The DOM after load: figures present, the hostile name only as text, no script element.
    let profile = tempfile::tempdir().unwrap();
    let dom = chromium_cmd(profile.path())
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("running chromium");
    assert!(
        dom.status.success(),
        "chromium --dump-dom failed: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    let figures = out
        .files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "svg"))
        .count();
    assert!(figures >= 10, "{figures}");
    assert_eq!(
        dom.matches("<img ").count(),
        figures,
        "one inline image per figure"
    );
    assert!(
        !dom.contains("<script"),
        "no script element in the rendered DOM"
    );
    assert!(dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));

    // A screenshot: the figures' nixl-blue and lmcache-green lines are visible.
    let shot = tmp.path().join("shot.png");
    let profile = tempfile::tempdir().unwrap();
    let status = chromium_cmd(profile.path())
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1280,2200")
        .arg(&url)
        .output()
        .expect("running chromium");
    assert!(
        status.status.success() && shot.exists(),
        "chromium --screenshot failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let px = resvg::tiny_skia::Pixmap::decode_png(&std::fs::read(&shot).unwrap()).unwrap();
    assert_eq!(px.width(), 1280);
    let blue = count_color(&px, (31, 119, 180), 12);
    let green = count_color(&px, (44, 160, 44), 12);
    assert!(
        blue > 200 && green > 200,
        "figures not visible: blue {blue}, green {green}"
    );
    if let Ok(keep) = std::env::var("VBENCH_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}
