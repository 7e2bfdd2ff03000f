//! Workloads that exercise the KV cache: shared-prefix groups and trace replay. The manifest's
//! located errors for them, the result files a speedup sweep writes, and the replay's timing
//! on the simulator.

use std::path::Path;
use std::process::Command;

use vbench::load::dataset::trace::{generate::SampleTrace, mooncake};
use vbench::manifest::{self, ManifestError};
use vbench::plan::{self, Capacity, Pace};

const BIN: &str = env!("CARGO_BIN_EXE_vbench");

const TRACE: &str = r#"name = "t"
model = "m"

[dataset]
kind = "trace"
format = "mooncake"
path = "t.jsonl"

[load]
speedups = [1, 2]
num_prompts = 10

[target]
backend = "sim"

[[deployment]]
mode = "simple"
"#;

fn capacity() -> Capacity {
    Capacity {
        absent: None,
        gpus: Some(8),
        cpu_cores: None,
        source: "test".into(),
    }
}

fn planned(text: &str) -> Result<plan::Plan, Box<ManifestError>> {
    let loaded = match manifest::load_str(Path::new("m.toml"), text, &[]) {
        Ok(l) => l,
        Err(vbench::Error::Manifest(e)) => return Err(e),
        Err(other) => panic!("expected a manifest error, got: {other}"),
    };
    plan::resolve(&loaded, &capacity()).map_err(Box::new)
}

/// `line:column` of the first `needle` in `text` (1-based).
fn at(text: &str, needle: &str) -> String {
    let i = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the text"));
    let line = text[..i].matches('\n').count() + 1;
    let col = i - text[..i].rfind('\n').map_or(0, |n| n + 1) + 1;
    format!("{line}:{col}")
}

/// `text` must be refused at the first `needle` with a message containing `message`.
#[track_caller]
fn refused(text: &str, needle: &str, message: &str) {
    let e = planned(text).expect_err("an error");
    assert_eq!(e.location, format!("m.toml:{}", at(text, needle)), "{e}");
    assert!(
        e.message.contains(message),
        "{:?} lacks {message:?}",
        e.message
    );
}

const RANDOM: &str = "kind = \"random\"\ninput_len = 100\noutput_len = 10";
const TRACE_KEYS: &str = "kind = \"trace\"\nformat = \"mooncake\"\npath = \"t.jsonl\"";

#[test]
fn the_trace_example_shape_plans_one_cell_per_speedup_with_files_no_rate_can_name() {
    let p = planned(TRACE).unwrap();
    let files: Vec<&str> = p.cells.iter().map(|c| c.result_file.as_str()).collect();
    assert_eq!(files, ["vllm-speedup-1x.json", "vllm-speedup-2x.json"]);
    assert_eq!(p.cells[1].pace, Pace::Speedup(2.0));
    assert_eq!(p.speedups, [1.0, 2.0]);
    // plan.json says which it is.
    let json = serde_json::to_value(&p.cells[1]).unwrap();
    assert_eq!(json["speedup"], 2.0);
    assert!(json.get("rate").is_none());
    // A rate's file always has `qps` in it, a speedup's never: they cannot collide, and the
    // report never reads a speedup's name as a rate.
    for s in [1.0, 0.5, 2.0, 10.0] {
        let name = plan::result_file_name(Pace::Speedup(s), 3);
        assert!(!name.contains("qps"), "{name}");
        assert!(name.ends_with("-repeat3.json"), "{name}");
    }
    let rates = TRACE.replace("speedups = [1, 2]", "rates = [1, 2]");
    let p = planned(&rates).unwrap();
    assert_eq!(p.cells[0].result_file, "vllm-1qps.json");
}

#[test]
fn speedups_need_a_trace_and_nothing_else_that_paces_arrivals() {
    refused(
        &TRACE.replace(TRACE_KEYS, RANDOM),
        "[1, 2]",
        "`speedups` replay a trace's arrival times, but the dataset is kind = \"random\"",
    );
    refused(
        &TRACE.replace("speedups = [1, 2]", "speedups = [1, 2]\nrates = [4]"),
        "[1, 2]",
        "`speedups` and `rates` both given",
    );
    refused(
        &TRACE.replace(
            "num_prompts = 10",
            "num_prompts = 10\narrival = \"constant\"",
        ),
        "\"constant\"",
        "`arrival` shapes vbench's arrival process",
    );
    refused(
        &TRACE.replace("num_prompts = 10", "num_prompts = 10\nburstiness = 2.0"),
        "2.0",
        "`burstiness` shapes vbench's arrival process",
    );
    refused(
        &TRACE.replace("[1, 2]", "[1, 0]"),
        "0]",
        "speedup 0 must be a positive factor",
    );
    refused(
        &TRACE.replace("[1, 2]", "[2, 2]"),
        "2]",
        "speedup 2 appears twice",
    );
    refused(
        &TRACE.replace(
            "num_prompts = 10",
            "num_prompts = 10\n\n[slo]\nscale_rate = 2",
        ),
        "2\n\n[target",
        "scale_rate names a rate",
    );
}

#[test]
fn dataset_keys_are_checked_against_their_kind() {
    refused(
        &TRACE.replace("format = \"mooncake\"\n", ""),
        "\"trace\"",
        "kind = \"trace\" needs a `format`",
    );
    refused(
        &TRACE.replace("path = \"t.jsonl\"\n", ""),
        "\"trace\"",
        "dataset kind `trace` needs a `path`",
    );
    refused(
        &TRACE.replace("\"mooncake\"", "\"azure\"\nblock_size = 512"),
        "512",
        "`block_size` sizes the `hash_ids` blocks of a mooncake trace",
    );
    refused(
        &TRACE.replace("path = \"t.jsonl\"", "path = \"t.jsonl\"\nblock_size = 0"),
        "0\n",
        "`block_size` must be at least 1",
    );
    refused(
        &TRACE.replace(TRACE_KEYS, &format!("{RANDOM}\ngroups = 4")),
        "4\n",
        "`groups` only applies to kind = \"shared_prefix\"",
    );
    refused(
        &TRACE.replace("\"mooncake\"", "\"mooncake\"\nquestion_len = 4"),
        "4\n",
        "`question_len` only applies to kind = \"shared_prefix\"",
    );
    let shared = "kind = \"shared_prefix\"\ngroups = 4\nsystem_prompt_len = 100\noutput_len = 8";
    let text = TRACE
        .replace(TRACE_KEYS, shared)
        .replace("speedups = [1, 2]", "rates = [1]");
    refused(
        &text,
        "\"shared_prefix\"",
        "kind = \"shared_prefix\" needs `question_len`",
    );
    let text = text.replace("groups = 4", "groups = 0\nquestion_len = 8");
    refused(&text, "0\n", "`groups` must be at least 1");
    assert!(planned(&text.replace("groups = 0", "groups = 2")).is_ok());
    let e = planned(&TRACE.replace("\"mooncake\"", "\"sharegpt\"")).unwrap_err();
    assert!(e.message.contains("unknown variant `sharegpt`"), "{e}");
}

/// A manifest replaying `trace` (absolute path) on the simulator at `speedups`.
fn trace_manifest(dir: &Path, trace: &Path, block_size: u64, load: &str) -> std::path::PathBuf {
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-model");
    let text = format!(
        r#"name = "replay"
model = "m"
tokenizer = "{}"

[dataset]
kind = "trace"
format = "mooncake"
path = "{}"
block_size = {block_size}

[load]
{load}
seed = 0

[target]
backend = "sim"
health_timeout_s = 30

[[deployment]]
mode = "simple"
"#,
        tiny.display(),
        trace.display()
    );
    let path = dir.join("replay.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The schedule is the trace's timestamps (to the microsecond) and at 1x the sends follow it:
/// nearly all within 1 ms of their own scheduled time, none off by more than 50 ms (a send
/// that ignored the schedule would be seconds early). Other tests share the 2-core machine, so
/// a few sends may hit a scheduler hiccup (CI saw 1.1 and 5.3 ms); the load generator's
/// accuracy itself is measured by `benches/loadgen`.
#[test]
fn a_trace_at_speedup_1_is_sent_on_its_timestamps() {
    let _serial = crate::support::serial();
    let dir = tempfile::tempdir().unwrap();
    let sample = SampleTrace {
        requests: 60,
        rate: 20.0,
        input_len: 64,
        output_len: 4,
        block_size: 16,
        reuse: 0.5,
        prefixes: 2,
        seed: 3,
    };
    let records = sample.records().unwrap();
    let trace = dir.path().join("t.jsonl");
    mooncake::write(&trace, &records).unwrap();
    let manifest = trace_manifest(
        dir.path(),
        &trace,
        16,
        "speedups = [1, 4]\nnum_prompts = 60",
    );
    let out = Command::new(BIN)
        .args([
            "apply",
            manifest.to_str().unwrap(),
            "--no-report",
            "--results",
        ])
        .arg(dir.path().join("results"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (name, speedup) in [("vllm-speedup-1x.json", 1.0), ("vllm-speedup-4x.json", 4.0)] {
        let r = crate::support::only_result(&dir.path().join("results"), "replay", name);
        assert_eq!(r.vbench.load.arrival, "trace");
        assert_eq!(r.completed, 60, "{name}");
        let reqs = &r.vbench.requests;
        let t0 = records[0].at_s;
        for q in reqs {
            let want = (records[q.index as usize].at_s - t0) / speedup;
            // The schedule is the trace's (to the microsecond the file keeps) ...
            assert!(
                (q.scheduled_s - reqs[0].scheduled_s - want).abs() < 2e-6,
                "{name} {q:?}"
            );
            // ... and at 1x no send is far from it.
            if speedup == 1.0 {
                let lag = (q.sent_s - q.scheduled_s).abs();
                assert!(
                    lag < 50e-3,
                    "request {} sent {:.3} ms off its time in the trace",
                    q.index,
                    lag * 1e3
                );
            }
        }
        if speedup == 1.0 {
            let within = reqs
                .iter()
                .filter(|q| (q.sent_s - q.scheduled_s).abs() < 1e-3)
                .count();
            assert!(within >= 54, "only {within} of 60 sends within 1 ms");
        }
        // The offered rate: requests over the last send of the compressed trace.
        let span = (records[59].at_s - t0) / speedup;
        let rate = r.request_rate.as_f64().unwrap();
        assert!((rate - 60.0 / span).abs() < 1e-6 * rate, "{rate}");
        // The simulator's prefix cache finds exactly the trace's sharing: every request whose
        // shared prefix (2 blocks of 16 tokens) came earlier in this cell hits 32 tokens; the
        // 1x cell's texts do not carry over to the 4x cell. A request that arrives while the
        // first of its prefix is still being computed may miss (one per prefix at most).
        let seen: std::collections::HashSet<&[u64]> =
            records.iter().map(|r| &r.hash_ids[..2]).collect();
        let want = 32.0 * (60 - seen.len()) as f64;
        let reuse = r.vbench.cache_reuse.as_ref().expect("cache reuse counted");
        let c = reuse.computing().unwrap();
        let (hits, total) = (c.local_hit_tokens, c.prompt_tokens);
        assert_eq!(
            (c.role.as_str(), total),
            ("instance", 60.0 * 64.0),
            "{name}"
        );
        assert!(
            hits <= want && hits >= want - 32.0 * seen.len() as f64,
            "{name}: {hits} cached prompt tokens, the trace shares {want}"
        );
        // vbench's own count from the prompts' tokens is the trace's sharing exactly.
        let ideal = reuse
            .ideal
            .as_ref()
            .expect("an ideal for completions with a tokenizer");
        assert_eq!(
            (
                ideal.block_size,
                ideal.prompt_tokens,
                ideal.hit_tokens as f64
            ),
            (16, 60 * 64, want),
            "{name}"
        );
        assert!(r
            .vbench
            .load
            .notes
            .iter()
            .any(|n| n.contains("the prompts allowed")));
    }
}

#[test]
fn gen_trace_writes_a_mooncake_trace_that_replays_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.jsonl");
    let gen = |extra: &[&str]| {
        Command::new(BIN)
            .args(["gen-trace", "--requests", "30", "--input-len", "64"])
            .args(["--block-size", "16", "--prefixes", "3", "-o"])
            .arg(&out)
            .args(extra)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let first = gen(&["--reuse", "0.5"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let records = vbench::load::dataset::trace::read(
        &out,
        vbench::load::dataset::TraceFormat::Mooncake,
        30,
        &mut Vec::new(),
    )
    .unwrap();
    // 4 blocks of 16 per prompt, the first 2 one of 3 shared prefixes.
    let prefixes: std::collections::HashSet<&[u64]> =
        records.iter().map(|r| &r.hash_ids[..2]).collect();
    assert_eq!(prefixes.len(), 3);
    assert!(records
        .iter()
        .all(|r| r.hash_ids.len() == 4 && r.input_len == 64));
    let before = std::fs::read(&out).unwrap();
    let again = gen(&["--reuse", "0.5", "--seed", "9"]);
    assert_eq!(again.status.code(), Some(2));
    assert_eq!(
        std::fs::read(&out).unwrap(),
        before,
        "the file was overwritten"
    );
    std::fs::remove_file(&out).unwrap();
    let bad = gen(&["--reuse", "1.5"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("reuse 1.5 must be a share from 0 to 1"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
