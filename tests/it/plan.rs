//! The planner on the shipped experiments: tables people read (snapshots), JSON that scripts
//! read, the expansion order, and the stability of variant ids.

use std::path::Path;

use vbench::manifest;
use vbench::plan::{self, Capacity};

fn eight_gpus() -> Capacity {
    Capacity {
        absent: None,
        gpus: Some(8),
        cpu_cores: None,
        source: "target.gpus = 8".into(),
    }
}

fn plan_of(path: &str, sets: &[&str], cap: &Capacity) -> plan::Plan {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let loaded = manifest::load(Path::new(path), &sets).unwrap();
    plan::resolve(&loaded, cap).unwrap()
}

#[test]
fn qwen_pd_plan_table() {
    let p = plan_of("experiments/qwen-pd.toml", &[], &eight_gpus());
    insta::assert_snapshot!(plan::table::render(&p));
}

#[test]
fn sim_demo_plan_table() {
    let p = plan_of("experiments/sim-demo.toml", &[], &eight_gpus());
    insta::assert_snapshot!(plan::table::render(&p));
}

#[test]
fn cpu_tiny_plan_table() {
    let cap = Capacity {
        absent: None,
        gpus: Some(2),
        cpu_cores: Some(2),
        source: "2 CPU cores on this host, 1 per instance: 2 instance slots".into(),
    };
    let p = plan_of("experiments/cpu-tiny.toml", &[], &cap);
    insta::assert_snapshot!(plan::table::render(&p));
}

/// The slurm backend's plan says on which node of the allocation each instance runs.
#[test]
fn slurm_plan_table_places_every_instance_on_a_node() {
    let cap = Capacity {
        absent: None,
        gpus: Some(24),
        cpu_cores: None,
        source: "slurm: 3 nodes x 8 GPUs".into(),
    };
    let p = plan_of("experiments/slurm-multinode.toml", &[], &cap);
    insta::assert_snapshot!(plan::table::render(&p));
    let packed = plan_of(
        "experiments/slurm-multinode.toml",
        &["target.slurm.placement=pack"],
        &cap,
    );
    let slurm = packed.slurm.as_ref().unwrap();
    let nodes: Vec<usize> = packed
        .variants
        .iter()
        .flat_map(|v| slurm.of(&v.id).iter().map(|i| i.node))
        .collect();
    assert!(
        nodes.iter().all(|&n| n == 0),
        "pack: every variant on node 1"
    );
    let json = serde_json::to_value(&packed).unwrap();
    assert_eq!(json["slurm"]["placement"], "pack");
    assert_eq!(
        json["slurm"]["instances"]["nixl-p2d1-tp1x1-914735"][1],
        serde_json::json!({"role": "prefill", "index": 1, "node": 0})
    );
}

#[test]
fn plan_json_lists_every_variant_and_cell() {
    let p = plan_of("experiments/qwen-pd.toml", &[], &eight_gpus());
    let json: serde_json::Value = serde_json::to_value(&p).unwrap();
    let variants = json["variants"].as_array().unwrap();
    let cells = json["cells"].as_array().unwrap();
    assert_eq!(variants.len(), 5);
    assert_eq!(cells.len(), 5 * 6);
    for v in variants {
        let id = v["id"].as_str().unwrap();
        let mine: Vec<_> = cells.iter().filter(|c| c["variant_id"] == id).collect();
        assert_eq!(mine.len(), 6, "every variant has one cell per rate");
        assert_eq!(mine[0]["result_file"], "vllm-0.5qps.json");
        assert_eq!(mine[5]["result_file"], "vllm-8qps.json");
    }
    assert!(json["estimate"]["total_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn expansion_order_is_deployments_then_axes_last_fastest() {
    let text = r#"
name = "order"
model = "m"
[dataset]
kind = "random"
input_len = 8
output_len = 8
[load]
rates = [1]
[target]
backend = "sim"
[[deployment]]
mode = "nixl"
prefill = { instances = [1, 2], tp = [1, 2] }
decode = { instances = 1, tp = [1, 2] }
[[deployment]]
mode = "simple"
tp = [2, 1]
"#;
    let loaded = manifest::load_str(Path::new("o.toml"), text, &[]).unwrap();
    let p = plan::resolve(&loaded, &eight_gpus()).unwrap();
    let topo: Vec<&str> = p.variants.iter().map(|v| v.topology.as_str()).collect();
    assert_eq!(
        topo,
        [
            "PF:1 D:1 TP:1x1",
            "PF:1 D:1 TP:1x2",
            "PF:1 D:1 TP:2x1",
            "PF:1 D:1 TP:2x2",
            "PF:2 D:1 TP:1x1",
            "PF:2 D:1 TP:1x2",
            "PF:2 D:1 TP:2x1",
            "PF:2 D:1 TP:2x2",
            "TP:2",
            "TP:1",
        ]
    );
    assert_eq!(p.variants[7].gpus, 6);
}

#[test]
fn variant_ids_are_stable_and_change_with_configuration() {
    let a = plan_of("experiments/sim-demo.toml", &[], &eight_gpus());
    let b = plan_of("experiments/sim-demo.toml", &[], &eight_gpus());
    let ids = |p: &plan::Plan| p.variants.iter().map(|v| v.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&b), "same configuration, same ids");

    // Rates, seeds and labels do not change what is deployed: the ids stay.
    let c = plan_of(
        "experiments/sim-demo.toml",
        &["load.rates=[1]", "load.seed=7", "deployment.0.label=base"],
        &eight_gpus(),
    );
    assert_eq!(ids(&a), ids(&c));

    // A deployment setting does: only the variants it touches get new ids.
    let d = plan_of(
        "experiments/sim-demo.toml",
        &["deployment.1.gpu_memory_utilization=0.9"],
        &eight_gpus(),
    );
    let (ia, id) = (ids(&a), ids(&d));
    assert_eq!(ia[..2], id[..2]);
    assert_ne!(ia[2], id[2]);
    assert_ne!(ia[3], id[3]);
    assert_eq!(ia[4], id[4]);
    // And the readable prefix says what it is.
    assert!(id[2].starts_with("nixl-p1d1-tp1x1-"), "{}", id[2]);
}

#[test]
fn overrides_are_recorded_in_the_plan() {
    let p = plan_of(
        "experiments/qwen-pd.toml",
        &["deployment.1.prefill.instances=2"],
        &eight_gpus(),
    );
    assert_eq!(p.overrides, ["deployment.1.prefill.instances=2"]);
    // The nixl sweep collapsed to one value: 4 variants.
    assert_eq!(p.variants.len(), 4);
    assert_eq!(p.variants[2].topology, "PF:2 D:1 TP:1x1");
}

#[test]
fn swept_setting_outside_topology_shows_in_the_label() {
    let p = plan_of(
        "experiments/sim-demo.toml",
        &["deployment.0.gpu_memory_utilization=[0.8, 0.9]"],
        &eight_gpus(),
    );
    let labels: Vec<&str> = p.variants.iter().map(|v| v.label.as_str()).collect();
    assert_eq!(
        labels[..2],
        [
            "simple TP:1 gpu_memory_utilization=0.8",
            "simple TP:1 gpu_memory_utilization=0.9"
        ]
    );
}

#[test]
fn repeats_run_every_rate_in_turn_each_into_its_own_file() {
    let p = plan_of(
        "experiments/sim-demo.toml",
        &["load.repeats=3", "load.rates=[10, 40]"],
        &eight_gpus(),
    );
    let id = &p.variants[0].id;
    let mine: Vec<(u32, String)> = p
        .cells_of(id)
        .map(|c| (c.repeat, c.result_file.clone()))
        .collect();
    assert_eq!(
        mine,
        [
            (1, "vllm-10qps.json".to_owned()),
            (1, "vllm-40qps.json".to_owned()),
            (2, "vllm-10qps-repeat2.json".to_owned()),
            (2, "vllm-40qps-repeat2.json".to_owned()),
            (3, "vllm-10qps-repeat3.json".to_owned()),
            (3, "vllm-40qps-repeat3.json".to_owned()),
        ]
    );
    assert!(plan::table::render(&p).contains("3 repeats of every rate"));
    // Out of range: a located error.
    for bad in ["load.repeats=0", "load.repeats=101"] {
        let loaded =
            manifest::load(Path::new("experiments/sim-demo.toml"), &[bad.to_owned()]).unwrap();
        let err = plan::resolve(&loaded, &eight_gpus()).unwrap_err();
        assert!(
            format!("{err:?}").contains("repeats must be 1 to 100"),
            "{err:?}"
        );
    }
}
