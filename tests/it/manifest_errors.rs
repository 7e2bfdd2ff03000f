//! Malformed manifests: each must be refused with the file, line and column of the problem,
//! a message that says what is wrong, and (where one exists) what would be right.

use std::path::Path;

use vbench::manifest::{self, ManifestError};
use vbench::plan::{self, Capacity};

const BASE: &str = r#"name = "t"
model = "m"

[dataset]
kind = "random"
input_len = 100
output_len = 10

[load]
rates = [1, 2]
num_prompts = 10

[target]
backend = "sim"
gpus = 4

[[deployment]]
mode = "simple"
tp = [1, 2]

[[deployment]]
mode = "nixl"
prefill = { instances = 1, tp = 1 }
decode = { instances = 1, tp = 1 }
"#;

fn capacity() -> Capacity {
    Capacity {
        absent: None,
        gpus: Some(4),
        cpu_cores: None,
        source: "target.gpus = 4".into(),
    }
}

/// Parse and plan `text`; return the manifest error it must produce.
fn error_of(text: &str) -> ManifestError {
    let loaded = match manifest::load_str(Path::new("m.toml"), text, &[]) {
        Ok(l) => l,
        Err(vbench::Error::Manifest(e)) => return *e,
        Err(other) => panic!("expected a manifest error, got: {other}"),
    };
    let cap = match loaded.manifest.target.gpus {
        manifest::Gpus::Count(n) => Capacity {
            absent: None,
            gpus: Some(n),
            ..capacity()
        },
        _ => capacity(),
    };
    match plan::resolve(&loaded, &cap) {
        Ok(p) => panic!(
            "expected an error, but planned {} variants",
            p.variants.len()
        ),
        Err(e) => e,
    }
}

#[track_caller]
fn assert_error(text: &str, location: &str, message: &str, help: Option<&str>) {
    let e = error_of(text);
    assert_eq!(e.location, format!("m.toml:{location}"), "location of: {e}");
    assert!(
        e.message.contains(message),
        "message {:?} lacks {:?}",
        e.message,
        message
    );
    if let Some(h) = help {
        let got = e.help.clone().unwrap_or_default();
        assert!(got.contains(h), "help {got:?} lacks {h:?} (error: {e})");
    }
    // The one-line Display carries the location too (logs, non-terminal output).
    assert!(e.to_string().starts_with(&format!("m.toml:{location}: ")));
}

fn edit(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "fixture lacks {from:?}");
    BASE.replacen(from, to, 1)
}

fn append(extra: &str) -> String {
    format!("{BASE}{extra}")
}

#[test]
fn base_manifest_is_valid() {
    let loaded = manifest::load_str(Path::new("m.toml"), BASE, &[]).unwrap();
    let p = plan::resolve(&loaded, &capacity()).unwrap();
    assert_eq!((p.variants.len(), p.cells.len()), (3, 6));
}

// --- syntax -------------------------------------------------------------------------------

#[test]
fn unclosed_list_is_a_syntax_error_at_its_line() {
    let e = error_of(&edit("rates = [1, 2]", "rates = [1, 2"));
    assert!(e.location.starts_with("m.toml:1"), "{e}");
    assert!(
        e.message.contains("invalid array") || e.message.contains("expected"),
        "{e}"
    );
}

#[test]
fn missing_value_is_a_syntax_error() {
    assert_error(
        &edit("num_prompts = 10", "num_prompts ="),
        "11:14",
        "invalid string",
        None,
    );
}

#[test]
fn duplicate_key_is_refused() {
    assert_error(
        &edit("model = \"m\"", "model = \"m\"\nmodel = \"n\""),
        "3:1",
        "duplicate key",
        None,
    );
}

// --- types and unknown keys ---------------------------------------------------------------

#[test]
fn string_where_number_expected() {
    assert_error(
        &edit("num_prompts = 10", "num_prompts = \"ten\""),
        "11:15",
        "invalid type: string \"ten\", expected u32",
        None,
    );
}

#[test]
fn unknown_rate_word() {
    assert_error(
        &edit("rates = [1, 2]", "rates = \"fast\""),
        "10:9",
        "unknown rate \"fast\"",
        None,
    );
}

#[test]
fn negative_rate() {
    assert_error(
        &edit("rates = [1, 2]", "rates = [1, -2]"),
        "10:9",
        "rate -2 is not a positive",
        None,
    );
}

#[test]
fn zero_rate() {
    assert_error(
        &edit("rates = [1, 2]", "rates = [0]"),
        "10:9",
        "rate 0 is not a positive",
        None,
    );
}

#[test]
fn unknown_top_level_key_suggests_the_right_one() {
    assert_error(
        &edit("model = \"m\"", "model = \"m\"\nmodle = \"x\""),
        "3:1",
        "unknown field `modle`",
        Some("did you mean `model`?"),
    );
}

#[test]
fn unknown_deployment_key_suggests_tp() {
    assert_error(
        &edit("tp = [1, 2]", "tpp = [1, 2]"),
        "19:1",
        "unknown field `tpp`",
        Some("did you mean `tp`?"),
    );
}

#[test]
fn unknown_key_in_inline_role_table() {
    assert_error(
        &edit(
            "prefill = { instances = 1, tp = 1 }",
            "prefill = { instance = 1, tp = 1 }",
        ),
        "23:13",
        "unknown field `instance`",
        Some("did you mean `instances`?"),
    );
}

#[test]
fn unknown_mode_suggests_nixl() {
    assert_error(
        &edit("mode = \"nixl\"", "mode = \"nixll\""),
        "22:8",
        "unknown variant `nixll`",
        Some("did you mean `nixl`?"),
    );
}

#[test]
fn unknown_dataset_kind_suggests_sharegpt() {
    assert_error(
        &edit("kind = \"random\"", "kind = \"sharegtp\""),
        "5:8",
        "unknown variant `sharegtp`",
        Some("did you mean `sharegpt`?"),
    );
}

#[test]
fn unknown_arrival_suggests_poisson() {
    assert_error(
        &append_to_load("arrival = \"poison\""),
        "12:11",
        "unknown variant `poison`",
        Some("did you mean `poisson`?"),
    );
}

fn append_to_load(line: &str) -> String {
    edit("num_prompts = 10", &format!("num_prompts = 10\n{line}"))
}

#[test]
fn unknown_backend_lists_valid_values() {
    assert_error(
        &edit("backend = \"sim\"", "backend = \"k8s\""),
        "14:11",
        "unknown variant `k8s`",
        Some("`local`, `slurm`, `sim`"),
    );
}

#[test]
fn empty_vllm_command_is_refused() {
    assert_error(
        &edit("backend = \"sim\"", "backend = \"sim\"\nvllm_bin = []"),
        "15:12",
        "vllm_bin needs a program",
        None,
    );
}

#[test]
fn unknown_figure_format() {
    assert_error(
        &append("\n[report]\nformats = [\"jpg\"]\n"),
        "27:12",
        "unknown variant `jpg`",
        None,
    );
}

#[test]
fn negative_tp_is_a_type_error() {
    assert_error(
        &edit("tp = [1, 2]", "tp = -1"),
        "19:6",
        "invalid value: integer `-1`, expected u32",
        None,
    );
}

#[test]
fn table_where_value_expected() {
    let e = error_of(&edit(
        "[dataset]\nkind = \"random\"\ninput_len = 100\noutput_len = 10\n",
        "dataset = 5\n",
    ));
    assert!(e.location.starts_with("m.toml:4:"), "{e}");
    assert!(
        e.message
            .contains("invalid type: integer `5`, expected struct Dataset"),
        "{e}"
    );
}

#[test]
fn missing_model_is_named() {
    let e = error_of(&edit("model = \"m\"\n", ""));
    assert!(e.message.contains("missing field `model`"), "{e}");
    assert!(e.location.starts_with("m.toml:1:1"), "{e}");
}

#[test]
fn gpus_word_other_than_auto() {
    assert_error(
        &edit("gpus = 4", "gpus = \"all\""),
        "15:8",
        "expected \"auto\", a count like 8",
        None,
    );
}

// --- meaning (planner) --------------------------------------------------------------------

#[test]
fn tp_three_is_not_a_tensor_parallel_size() {
    assert_error(
        &edit("tp = [1, 2]", "tp = 3"),
        "19:6",
        "tp = 3 is not a valid tensor-parallel size",
        Some("1, 2, 4 or 8"),
    );
}

#[test]
fn bad_tp_inside_a_sweep_points_at_the_element() {
    assert_error(
        &edit("tp = [1, 2]", "tp = [1, 6]"),
        "19:10",
        "tp = 6 is not a valid",
        None,
    );
}

#[test]
fn prefill_tp_zero() {
    assert_error(
        &edit(
            "prefill = { instances = 1, tp = 1 }",
            "prefill = { instances = 1, tp = 0 }",
        ),
        "23:33",
        "prefill.tp = 0 is not a valid tensor-parallel size",
        None,
    );
}

#[test]
fn zero_decode_instances() {
    assert_error(
        &edit(
            "decode = { instances = 1, tp = 1 }",
            "decode = { instances = 0, tp = 1 }",
        ),
        "24:24",
        "decode.instances = 0: at least one instance is needed",
        None,
    );
}

#[test]
fn gpu_memory_utilization_above_one() {
    assert_error(
        &edit("tp = [1, 2]", "tp = [1, 2]\ngpu_memory_utilization = 1.5"),
        "20:26",
        "gpu_memory_utilization = 1.5 is not a fraction",
        Some("(0, 1]"),
    );
}

#[test]
fn gpu_memory_utilization_zero_in_a_sweep() {
    assert_error(
        &edit(
            "tp = [1, 2]",
            "tp = [1, 2]\ngpu_memory_utilization = [0.9, 0]",
        ),
        "20:32",
        "gpu_memory_utilization = 0 is not a fraction",
        None,
    );
}

#[test]
fn no_variant_fitting_the_target_is_an_error() {
    // One that does not fit is left out (tests/it/apply_sim.rs); none fitting stops the plan.
    let text = edit("gpus = 4", "gpus = 1").replace("tp = [1, 2]", "tp = [2]");
    assert_error(&text, "17:1", "variant `simple-tp2-", Some("target.gpus"));
    let e = error_of(&text);
    assert!(
        e.message.contains("needs 2 GPUs but the target has 1"),
        "{e}"
    );
}

#[test]
fn empty_rates_list() {
    assert_error(
        &edit("rates = [1, 2]", "rates = []"),
        "10:9",
        "empty list",
        None,
    );
}

#[test]
fn duplicate_rate() {
    assert_error(
        &edit("rates = [1, 2]", "rates = [1, 2, 1]"),
        "10:16",
        "rate 1 appears twice",
        None,
    );
}

#[test]
fn negative_ttft_slo() {
    assert_error(
        &append("\n[slo]\nttft_ms = -5\n"),
        "27:11",
        "ttft_ms = -5: an SLO must be a positive number",
        None,
    );
}

#[test]
fn target_above_hundred_percent() {
    assert_error(
        &append("\n[slo]\ntarget_pct = 150\n"),
        "27:14",
        "target_pct = 150 must be in (0, 100]",
        None,
    );
}

#[test]
fn empty_slo_scales() {
    assert_error(
        &append("\n[slo]\nscales = []\n"),
        "27:10",
        "slo.scales is empty",
        None,
    );
}

#[test]
fn zero_slo_scale() {
    assert_error(
        &append("\n[slo]\nscales = [0.5, 0]\n"),
        "27:16",
        "SLO scale 0 must be positive",
        None,
    );
}

#[test]
fn scale_rate_not_among_rates() {
    assert_error(
        &append("\n[slo]\nscale_rate = 3\n"),
        "27:14",
        "scale_rate 3 is not one of load.rates (1, 2)",
        None,
    );
}

#[test]
fn duplicate_variant_after_expansion() {
    assert_error(
        &append("\n[[deployment]]\nmode = \"simple\"\ntp = 1\n"),
        "26:1",
        "repeats variant `simple-tp1-",
        Some("remove the duplicate"),
    );
}

#[test]
fn simple_mode_with_prefill() {
    assert_error(
        &edit("tp = [1, 2]", "tp = [1, 2]\nprefill = { instances = 1 }"),
        "20:11",
        "mode \"simple\" has no `prefill` instances",
        Some("mode = \"nixl\""),
    );
}

#[test]
fn nixl_mode_with_top_level_tp() {
    assert_error(
        &edit("mode = \"nixl\"", "mode = \"nixl\"\ntp = 2"),
        "23:6",
        "mode \"nixl\" has no top-level `tp`",
        Some("set it per role"),
    );
}

#[test]
fn vllm_router_cannot_front_simple() {
    assert_error(
        &edit("tp = [1, 2]", "tp = [1, 2]\nproxy = \"vllm-router\""),
        "20:9",
        "proxy \"vllm-router\" cannot front mode \"simple\"",
        None,
    );
}

#[test]
fn lmcache_s_own_proxy_is_refused_with_the_built_in_one_named() {
    let text = edit("mode = \"nixl\"", "mode = \"lmcache\"\nproxy = \"lmcache\"");
    assert_error(
        &text,
        "23:9",
        "proxy \"lmcache\" (LMCache's disagg_proxy_server.py) is not supported",
        Some("vbench's built-in proxy speaks LMCache's PD protocol"),
    );
}

/// Template overrides are checked when the manifest is planned, before anything launches:
/// their names, that the file is there, and that it parses.
#[test]
fn template_overrides_are_checked_before_launch() {
    let with = |line: &str| edit("mode = \"nixl\"", &format!("mode = \"nixl\"\n{line}"));
    assert_error(
        &with("templates = { instance = \"tests/fixtures/x.hbs\" }"),
        "23:26",
        "unknown template `instance`",
        Some("the templates are vllm_serve, vllm_env"),
    );
    assert_error(
        &with("templates = { vllm_serve = \"no/such/serve.hbs\" }"),
        "23:28",
        "cannot read template no/such/serve.hbs",
        Some("relative to the manifest's folder"),
    );
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("broken.hbs");
    std::fs::write(&broken, "{{#if x}}never closed").unwrap();
    assert_error(
        &with(&format!(
            "templates = {{ vllm_serve = \"{}\" }}",
            broken.display()
        )),
        "23:28",
        "does not parse",
        None,
    );
}

#[test]
fn lmcache_needs_the_completions_api() {
    let text =
        append_to_load("api = \"chat\"").replacen("mode = \"nixl\"", "mode = \"lmcache\"", 1);
    assert_error(
        &text,
        "12:7",
        "mode \"lmcache\" needs the completions API",
        None,
    );
}

#[test]
fn random_dataset_without_input_len() {
    assert_error(
        &edit("input_len = 100\n", ""),
        "5:8",
        "kind = \"random\" needs `input_len`",
        None,
    );
}

#[test]
fn sharegpt_without_path() {
    let text = edit(
        "kind = \"random\"\ninput_len = 100\noutput_len = 10",
        "kind = \"sharegpt\"",
    );
    assert_error(
        &text,
        "5:8",
        "dataset kind `sharegpt` needs a `path`",
        Some("path ="),
    );
}

#[test]
fn random_dataset_with_path() {
    assert_error(
        &edit("output_len = 10", "output_len = 10\npath = \"x.json\""),
        "8:8",
        "a random dataset is generated, it has no `path`",
        None,
    );
}

#[test]
fn range_ratio_out_of_range() {
    assert_error(
        &edit("output_len = 10", "output_len = 10\nrange_ratio = 1.5"),
        "8:15",
        "range_ratio 1.5 must be in [0, 1)",
        None,
    );
}

#[test]
fn burstiness_without_gamma() {
    assert_error(
        &append_to_load("burstiness = 0.5"),
        "12:14",
        "burstiness only applies to arrival = \"gamma\"",
        None,
    );
}

#[test]
fn negative_burstiness() {
    assert_error(
        &append_to_load("arrival = \"gamma\"\nburstiness = -1"),
        "13:14",
        "burstiness -1 must be a number from 0.001 to 1000",
        None,
    );
}

#[test]
fn experiment_name_with_slash() {
    assert_error(
        &edit("name = \"t\"", "name = \"a/b\""),
        "1:8",
        "cannot be used as a folder name",
        None,
    );
}

#[test]
fn gpu_listed_twice() {
    assert_error(
        &edit("gpus = 4", "gpus = [0, 1, 1]"),
        "15:15",
        "GPU 1 is listed twice",
        None,
    );
}

#[test]
fn zero_max_concurrency() {
    assert_error(
        &append_to_load("max_concurrency = 0"),
        "12:19",
        "max_concurrency 0 would never send",
        None,
    );
}

#[test]
fn zero_timeout() {
    assert_error(
        &append_to_load("timeout_s = 0"),
        "12:13",
        "timeout_s 0 must be positive",
        None,
    );
}

#[test]
fn slurm_options_without_slurm_backend() {
    assert_error(
        &edit("gpus = 4", "gpus = 4\nslurm = { nodes = 2 }"),
        "16:9",
        "[target.slurm] is set but backend is not \"slurm\"",
        None,
    );
}

#[test]
fn no_deployments() {
    let cut = BASE.find("[[deployment]]").unwrap();
    let e = error_of(&BASE[..cut]);
    assert!(e.message.contains("missing field `deployment`"), "{e}");
}

#[test]
fn override_errors_point_into_the_overridden_text() {
    let err = manifest::load_str(Path::new("m.toml"), BASE, &["deployment.0.tp=3".into()]).unwrap();
    let e = plan::resolve(&err, &capacity()).unwrap_err();
    assert!(
        e.location
            .starts_with("m.toml (with --set deployment.0.tp=3):19:6"),
        "{e}"
    );
    let bad = manifest::load_str(
        Path::new("m.toml"),
        BASE,
        &["load.num_prompts=\"x\"".into()],
    )
    .unwrap_err();
    assert!(
        bad.to_string()
            .contains("(with --set load.num_prompts=\"x\")"),
        "{bad}"
    );
    assert!(
        bad.to_string()
            .contains("invalid type: string \"x\", expected u32"),
        "{bad}"
    );
}

// --- values that would change a command line -----------------------------------------------

#[test]
fn a_newline_in_a_value_cannot_smuggle_arguments() {
    // What reached sim-serve as three arguments before.
    assert_error(
        &edit(
            "model = \"m\"",
            "model = \"m\"\nserved_model_name = \"m\\n--fail-fraction\\n1\"",
        ),
        "3:21",
        "control character U+000A",
        Some("one command-line argument"),
    );
    assert_error(
        &edit(
            "mode = \"simple\"\ntp = [1, 2]",
            "mode = \"simple\"\ntp = [1, 2]\nextra_args = [\"--enforce-eager\", \"--a\\r--b\"]",
        ),
        "20:34",
        "control character U+000D",
        None,
    );
    assert_error(
        &append("\n[target.env]\nX = \"a\\u0000b\"\n"),
        "27:5",
        "control character U+0000",
        None,
    );
}

#[test]
fn surrounding_whitespace_is_an_error_not_silently_dropped() {
    assert_error(
        &edit("model = \"m\"", "model = \" m\""),
        "2:9",
        "leading or trailing whitespace",
        Some("dropped silently"),
    );
}

#[test]
fn free_text_may_span_lines() {
    let text = edit(
        "model = \"m\"",
        "model = \"m\"\ndescription = \"two\\nlines \"",
    );
    let loaded = manifest::load_str(Path::new("m.toml"), &text, &[]).unwrap();
    plan::resolve(&loaded, &capacity()).unwrap();
}

// --- API keys -------------------------------------------------------------------------------

/// vLLM's own key settings on an instance are refused where they stand (vbench would not send
/// the key, so every request would fail with 401); so is a name that is no variable, and
/// vllm-router with a key (it passes no client's key on).
#[test]
fn api_key_settings_vbench_would_not_send_are_refused_where_they_stand() {
    let help = "target.api_key_env";
    assert_error(
        &edit(
            "gpus = 4",
            "gpus = 4\nenv = { VLLM_API_KEY = { env = \"K\" } }",
        ),
        "16:24",
        "target.env.VLLM_API_KEY sets vLLM's API key",
        Some(help),
    );
    assert_error(
        &edit(
            "decode = { instances = 1, tp = 1 }",
            "decode = { instances = 1, tp = 1, env = { VLLM_API_KEY = \"sk-1\" } }",
        ),
        "24:58",
        "VLLM_API_KEY sets vLLM's API key",
        Some(help),
    );
    assert_error(
        &edit(
            "tp = [1, 2]",
            "tp = [1, 2]\nextra_args = [\"--max-num-seqs\", \"8\", \"--api-key=sk-1\"]",
        ),
        "20:38",
        "--api-key sets vLLM's API key",
        Some(help),
    );
    assert_error(
        &edit("gpus = 4", "gpus = 4\napi_key_env = \"MY-KEY\""),
        "16:15",
        "api_key_env \"MY-KEY\" is not the name of an environment variable",
        None,
    );
    let router = edit(
        "decode = { instances = 1, tp = 1 }",
        "decode = { instances = 1, tp = 1 }\nproxy = \"vllm-router\"",
    )
    .replacen("gpus = 4", "gpus = 4\napi_key_env = \"K\"", 1);
    assert_error(
        &router,
        "26:9",
        "vllm-router does not pass a client's API key on",
        Some("proxy = \"builtin\""),
    )
}

// --- ranges -----------------------------------------------------------------------------

/// Numbers past what any experiment needs are refused where they stand (each used to pass
/// validation and then panic, overflow or exhaust memory in `apply`).
#[test]
fn numbers_out_of_range_are_refused_where_they_stand() {
    assert_error(
        &edit("rates = [1, 2]", "rates = [1, 5e-324]"),
        "10:13",
        "rate 5e-324 is outside 0.001 to 1000000 per second",
        Some("\"inf\""),
    );
    assert_error(
        &edit("num_prompts = 10", "num_prompts = 10\ntimeout_s = 1e300"),
        "12:13",
        "timeout_s 1e300 must be positive and at most 604800 (a week)",
        None,
    );
    assert_error(
        &edit("input_len = 100", "input_len = 100000000"),
        "6:13",
        "`input_len` = 100000000 is more than vbench takes (1048576)",
        None,
    );
    assert_error(
        &edit("tp = [1, 2]", "tp = [1, 2]\ngpu_memory_utilization = nan"),
        "20:26",
        "gpu_memory_utilization = a non-finite number is not a fraction of GPU memory",
        None,
    );
    assert_error(
        &edit(
            "num_prompts = 10",
            "num_prompts = 10\narrival = \"gamma\"\nburstiness = 1e-300",
        ),
        "13:14",
        "burstiness 1e-300 must be a number from 0.001 to 1000",
        None,
    );
}
