//! Report benchmark: 3 modes × 2 variants × 10 rates × 1,000 requests, every figure in PDF,
//! SVG and PNG, against an equivalent Python + matplotlib script on the same data.
//!
//! Run: `cargo bench --bench report` (release profile). Options after `--`:
//! `--keep DIR` keeps the data and outputs in DIR; `--no-python` skips the matplotlib side;
//! `--reps N` repetitions of the Rust report (default 5).
//!
//! The Python side creates its own virtual environment in `target/bench-venv` and installs
//! matplotlib and numpy from the registry the first time.

#[path = "../../tests/it/support/report.rs"]
mod report_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use vbench::report::{render_report, ReportOptions};

const RATES: [f64; 10] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 14.0];
const REQUESTS: usize = 1000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let keep = args
        .iter()
        .position(|a| a == "--keep")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let no_python = args.iter().any(|a| a == "--no-python");
    let reps: usize = args
        .iter()
        .position(|a| a == "--reps")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let run = root.join("bench-run/20261128_120000");
    if !run.exists() {
        let t = Instant::now();
        report_support::synth_run(&run, "bench", 2, &RATES, REQUESTS, 48);
        eprintln!("generated data in {:.2} s", t.elapsed().as_secs_f64());
    }
    let bytes: u64 = walk_size(&run);
    println!(
        "data: 3 modes x 2 variants x {} rates x {} requests = {} requests, {} result files, {:.1} MB",
        RATES.len(),
        REQUESTS,
        6 * RATES.len() * REQUESTS,
        6 * RATES.len(),
        bytes as f64 / 1e6
    );
    println!(
        "load average before: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!(
        "cores available: {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    let mut times = Vec::new();
    let mut cpu = Vec::new();
    let mut files = 0;
    for i in 0..reps {
        let mut opts = ReportOptions::for_inputs(vec![run.clone()]);
        opts.out = Some(root.join(format!("rust-out-{i}-{}", std::process::id())));
        let t = Instant::now();
        let c = cpu_seconds();
        let out = render_report(&opts).expect("report");
        times.push(t.elapsed().as_secs_f64());
        cpu.push(cpu_seconds() - c);
        files = out.files.len();
        if keep.is_none() || i + 1 < reps {
            let _ = std::fs::remove_dir_all(&out.out_dir);
        }
    }
    times.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    let rust_median = times[times.len() / 2];
    println!(
        "vbench report CPU time (user+sys, all threads): median {:.3} s",
        cpu[cpu.len() / 2]
    );
    println!(
        "vbench report (import + analysis + {} files: every figure as pdf, svg, png + html/md/json): \
         median {:.3} s, min {:.3} s, max {:.3} s over {} runs",
        files,
        rust_median,
        times[0],
        times[times.len() - 1],
        reps
    );
    println!(
        "load average after: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    if no_python {
        return;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-venv");
    let py = venv.join("bin/python");
    if !py.exists() {
        eprintln!(
            "creating {} and installing matplotlib, numpy",
            venv.display()
        );
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "matplotlib", "numpy"])
                .status()
                .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("could not set up the Python environment; skipping the comparison");
            std::process::exit(1);
        }
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/report/matplotlib_equiv.py");
    let mut py_wall = Vec::new();
    let mut py_inner = Vec::new();
    for i in 0..3 {
        let out_dir = root.join(format!("py-out-{i}-{}", std::process::id()));
        let t = Instant::now();
        let out = Command::new(&py)
            .arg(&script)
            .arg(&run)
            .arg(&out_dir)
            .env("MPLBACKEND", "Agg")
            .output()
            .expect("running python");
        let wall = t.elapsed().as_secs_f64();
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            std::process::exit(1);
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let inner: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("elapsed_after_imports_s "))
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(f64::NAN);
        if i == 0 {
            print!("python: {text}");
        }
        py_wall.push(wall);
        py_inner.push(inner);
        if keep.is_none() || i < 2 {
            let _ = std::fs::remove_dir_all(&out_dir);
        }
    }
    py_wall.sort_by(f64::total_cmp);
    py_inner.sort_by(f64::total_cmp);
    let (pw, pi) = (py_wall[1], py_inner[1]);
    println!(
        "python+matplotlib (same data, same figures, 3 formats): median {pw:.3} s wall \
         (process incl. imports), {pi:.3} s after imports"
    );
    println!(
        "speed-up: {:.1}x vs python wall, {:.1}x vs python after imports",
        pw / rust_median,
        pi / rust_median
    );
}

/// User + system CPU seconds of this process so far (all threads).
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn walk_size(dir: &Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                n += walk_size(&p);
            } else if let Ok(m) = e.metadata() {
                n += m.len();
            }
        }
    }
    n
}
