//! Rendered launch commands, environments and config files for each mode: what vbench would
//! start on a real host, snapshotted so a template change is a reviewed diff.

use std::path::Path;

use vbench::exec::deploy::{self, DeploymentSpec};
use vbench::exec::ports::PortAllocator;
use vbench::manifest::{self, Accelerator, Backend};
use vbench::plan::{self, Capacity};

fn render_all(path: &str, sets: &[&str], cap: Capacity) -> Vec<DeploymentSpec> {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let loaded = manifest::load(Path::new(path), &sets).unwrap();
    let plan = plan::resolve(&loaded, &cap).unwrap();
    let m = &loaded.manifest;
    let target = deploy::Target {
        backend: plan.backend,
        accelerator: plan.accelerator,
        vllm_bin: &m.target.vllm_bin,
        vbench_bin: "/usr/bin/vbench".into(),
        sim_profile: m.target.sim_profile.as_deref(),
        // what apply passes when the manifest's tokenizer is a local folder (machine-specific
        // in real runs, fixed here for the snapshot)
        sim_tokenizer: deploy::local_tokenizer(m, loaded.base_dir()).map(|_| "/models/tok".into()),
        gpu_pool: (0..cap.gpus.unwrap_or(0)).collect(),
        cpu_pool: (0..cap.cpu_cores.unwrap_or(0)).collect(),
        cpu_cores_per_instance: m.target.cpu_cores_per_instance,
        model: &m.model,
        served_model_name: &plan.served_model_name,
        manifest_dir: loaded.base_dir(),
        slurm: None,
        // what apply passes for the default `target.compile_cache = "auto"` (fixed here)
        compile_cache: (plan.backend != Backend::Sim).then_some(Path::new("/cache/vbench/compile")),
        api_key_env: m.target.api_key_env.as_deref(),
    };
    plan.variants
        .iter()
        .map(|v| {
            let mut ports = PortAllocator::sequential(20000);
            deploy::render(&target, v, Path::new("/run/v"), &mut ports).unwrap()
        })
        .collect()
}

fn describe(specs: &[DeploymentSpec]) -> String {
    let mut out = String::new();
    for s in specs {
        out.push_str(&format!(
            "== {} ({}) entry {}\n",
            s.variant_id, s.label, s.entry_url
        ));
        for c in &s.components {
            out.push_str(&format!(
                "  [{}] gpus={:?} cpus={:?}\n    {}\n",
                c.name,
                c.gpus,
                c.cpus,
                c.spec.command_line()
            ));
            for (path, text) in &c.files {
                out.push_str(&format!("    file {}:\n", path.display()));
                for line in text.lines() {
                    out.push_str(&format!("      {line}\n"));
                }
            }
        }
    }
    out
}

#[test]
fn qwen_pd_on_eight_gpus() {
    let cap = Capacity {
        absent: None,
        gpus: Some(8),
        cpu_cores: None,
        source: "test".into(),
    };
    let specs = render_all("experiments/qwen-pd.toml", &[], cap);
    // GPUs are handed out per instance, TP GPUs each, never shared within a variant.
    assert_eq!(specs[1].gpus, [0, 1]);
    assert_eq!(specs[3].gpus, [0, 1, 2]);
    insta::assert_snapshot!(describe(&specs));
}

#[test]
fn cpu_tiny_pins_cores_and_uses_cpu_kv_buffer() {
    let cap = Capacity {
        absent: None,
        gpus: Some(2),
        cpu_cores: Some(2),
        source: "test".into(),
    };
    let specs = render_all("experiments/cpu-tiny.toml", &[], cap);
    let nixl = &specs[1];
    let p = &nixl.components[0].spec;
    let d = &nixl.components[1].spec;
    assert_eq!(p.env["VLLM_CPU_OMP_THREADS_BIND"], "0");
    assert_eq!(d.env["VLLM_CPU_OMP_THREADS_BIND"], "1");
    assert_ne!(
        p.env["VLLM_NIXL_SIDE_CHANNEL_PORT"],
        d.env["VLLM_NIXL_SIDE_CHANNEL_PORT"]
    );
    assert!(
        p.args
            .iter()
            .any(|a| a.contains("\"kv_buffer_device\":\"cpu\"")),
        "{:?}",
        p.args
    );
    assert!(
        !p.args.contains(&"--gpu-memory-utilization".to_owned()),
        "no GPU flag on the CPU build"
    );
    assert_eq!(
        p.env["UCX_NET_DEVICES"], "lo",
        "the manifest's env wins over the template's"
    );
    assert_eq!(nixl.components[2].name, "proxy");
    insta::assert_snapshot!(describe(&specs));
}

#[test]
fn sim_backend_runs_vbench_subcommands() {
    let cap = Capacity {
        absent: None,
        gpus: Some(8),
        cpu_cores: None,
        source: "test".into(),
    };
    let specs = render_all("experiments/sim-demo.toml", &[], cap);
    for s in &specs {
        for c in &s.components {
            assert_eq!(c.spec.program, "/usr/bin/vbench");
            assert!(c.gpus.is_empty());
        }
    }
    // A single simple instance is its own entry point; the rest go through the proxy.
    assert_eq!(specs[0].components.len(), 1);
    assert_eq!(specs[0].entry_url, specs[0].components[0].url);
    assert_eq!(specs[3].components.len(), 4);
    assert!(specs[3].components[3]
        .spec
        .args
        .starts_with(&["proxy".to_owned()]));
    insta::assert_snapshot!(describe(&specs));
}

#[test]
fn vllm_router_proxy_disables_retries() {
    let cap = Capacity {
        absent: None,
        gpus: Some(8),
        cpu_cores: None,
        source: "test".into(),
    };
    let specs = render_all(
        "experiments/qwen-pd.toml",
        &["deployment.1.proxy=\"vllm-router\""],
        cap,
    );
    let proxy = specs[2].components.last().unwrap();
    assert!(proxy.spec.program.ends_with("vllm-router"));
    assert!(proxy.spec.args.contains(&"--disable-retries".to_owned()));
    assert!(proxy
        .spec
        .args
        .contains(&"--vllm-pd-disaggregation".to_owned()));
}

#[test]
fn template_override_changes_the_command() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("serve.hbs"),
        "serve\n{{model}}\n--port\n{{port}}\n--my-new-flag\n",
    )
    .unwrap();
    let text = std::fs::read_to_string("experiments/qwen-pd.toml")
        .unwrap()
        .replace(
            "mode = \"simple\"\ntp = [1, 2]",
            "mode = \"simple\"\ntp = [1, 2]\ntemplates = { vllm_serve = \"serve.hbs\" }",
        );
    let path = dir.path().join("m.toml");
    std::fs::write(&path, text).unwrap();
    let cap = Capacity {
        absent: None,
        gpus: Some(8),
        cpu_cores: None,
        source: "test".into(),
    };
    let specs = render_all(path.to_str().unwrap(), &[], cap);
    assert_eq!(
        specs[0].components[0].spec.args,
        [
            "serve",
            "Qwen/Qwen3-0.6B",
            "--port",
            "20000",
            "--my-new-flag"
        ]
    );
    let _ = (Accelerator::Cuda, Backend::Local);
}

#[test]
fn h200_distserve_runs_vllm_as_a_module_with_the_site_env() {
    let cap = Capacity {
        absent: None,
        gpus: Some(2),
        cpu_cores: None,
        source: "test".into(),
    };
    // The role's own env wins over the target's.
    let specs = render_all(
        "experiments/h200-distserve.toml",
        &["deployment.1.decode.env.UCX_NET_DEVICES=\"lo\""],
        cap,
    );
    let model = std::path::absolute("experiments/../benches/gpu/llama3-8b-shape").unwrap();
    let simple = &specs[0].components[0].spec;
    assert_eq!(simple.program, "python3");
    assert_eq!(
        simple.args[..4],
        [
            "-m",
            "vllm.entrypoints.cli.main",
            "serve",
            model.to_str().unwrap()
        ],
        "vllm_bin's leading arguments come first, the model folder beside the manifest is absolute"
    );
    assert!(simple
        .args
        .windows(2)
        .any(|w| w == ["--load-format", "dummy"]));
    assert_eq!(simple.env["PYTHONPATH"], "/tmp/vsite");
    assert_eq!(simple.env["NCCL_NVLS_ENABLE"], "0");
    assert_eq!(simple.env["CUDA_VISIBLE_DEVICES"], "0");

    let nixl = &specs[1];
    let (p, d) = (&nixl.components[0], &nixl.components[1]);
    assert_eq!((p.gpus.as_slice(), d.gpus.as_slice()), (&[0][..], &[1][..]));
    assert_eq!(p.spec.env["UCX_NET_DEVICES"], "all");
    assert_eq!(d.spec.env["UCX_NET_DEVICES"], "lo");
    assert_eq!(d.spec.env["TORCH_SYMM_MEM_DISABLE_MULTICAST"], "1");
    assert_eq!(nixl.components[2].spec.program, "/usr/bin/vbench");
    assert!(
        nixl.components[2].spec.env.is_empty(),
        "the proxy is vbench, not vLLM: no target env"
    );
}

#[test]
fn vllm_bin_as_a_plain_program_and_model_ids_pass_unchanged() {
    let cap = Capacity {
        absent: None,
        gpus: Some(8),
        cpu_cores: None,
        source: "test".into(),
    };
    let specs = render_all(
        "experiments/qwen-pd.toml",
        &["target.vllm_bin=\"/opt/v/bin/vllm\""],
        cap,
    );
    let s = &specs[0].components[0].spec;
    assert_eq!(s.program, "/opt/v/bin/vllm");
    assert_eq!(s.args[..2], ["serve", "Qwen/Qwen3-0.6B"]);
    assert_eq!(
        deploy::model_arg("Qwen/Qwen3-0.6B", Path::new("experiments")),
        "Qwen/Qwen3-0.6B"
    );
    assert_eq!(
        deploy::model_arg("/abs/model", Path::new("experiments")),
        "/abs/model"
    );
}

/// With a local model folder, the LMCache proxy gets each decoder's transfer-buffer capacity in
/// chunk slots from the model's config.json (Qwen3-0.6B: 114,688 KV bytes per token, 2 GiB at
/// 256 tokens a chunk = 73 slots per TP rank), as LMCache's own proxy computes it; the ports
/// are one block from lmcache.port.
#[test]
fn lmcache_proxy_gets_the_decoder_buffer_in_chunk_slots() {
    let cap = Capacity {
        absent: None,
        gpus: Some(2),
        cpu_cores: None,
        source: "test".into(),
    };
    let specs = render_all("experiments/qwen-pd-h200.toml", &[], cap.clone());
    let lmcache = specs
        .iter()
        .find(|s| s.variant_id.starts_with("lmcache-"))
        .unwrap();
    let proxy = &lmcache.components.last().unwrap().spec.args;
    let after = |flag: &str| -> Vec<&str> {
        proxy
            .windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    };
    assert_eq!(after("--lmcache-buffer-slots"), ["73"], "{proxy:?}");
    assert_eq!(after("--lmcache-chunk-size"), ["256"]);
    assert_eq!(after("--lmcache-notify"), ["127.0.0.1:65432"]);
    assert_eq!(after("--lmcache-decoder-ports"), ["65433:65434"]);

    // A bigger decoder buffer in the YAML is what the limit follows.
    let specs = render_all(
        "experiments/qwen-pd-h200.toml",
        &["deployment.2.lmcache.decoder_yaml.pd_buffer_size=4294967296"],
        cap,
    );
    let proxy = &specs
        .iter()
        .find(|s| s.variant_id.starts_with("lmcache-"))
        .unwrap()
        .components
        .last()
        .unwrap()
        .spec
        .args;
    let i = proxy
        .iter()
        .position(|a| a == "--lmcache-buffer-slots")
        .unwrap();
    assert_eq!(proxy[i + 1], "146");
}

/// `target.api_key_env` reaches every instance as `VLLM_API_KEY`, by name only (the recorded
/// command line says where it comes from, never what it is); the proxy gets none (it passes
/// each request's own key on).
#[test]
fn api_key_env_reaches_every_instance_by_name() {
    let cap = Capacity {
        absent: None,
        gpus: Some(8),
        cpu_cores: None,
        source: "test".into(),
    };
    let specs = render_all(
        "experiments/sim-demo.toml",
        &["target.api_key_env=\"VBENCH_SECRET_KEY\""],
        cap,
    );
    let mut instances = 0;
    for c in specs.iter().flat_map(|s| &s.components) {
        if c.name == "proxy" {
            assert!(c.spec.env_from.is_empty(), "{:?}", c.spec.env_from);
            continue;
        }
        instances += 1;
        assert_eq!(
            c.spec.env_from.get("VLLM_API_KEY").map(String::as_str),
            Some("VBENCH_SECRET_KEY"),
            "{}",
            c.name
        );
        assert!(!c.spec.env.contains_key("VLLM_API_KEY"));
        assert!(c
            .spec
            .command_line()
            .contains("VLLM_API_KEY=\"$VBENCH_SECRET_KEY\""));
    }
    assert!(instances >= 5, "{instances}");
}
