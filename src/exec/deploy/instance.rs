//! One vLLM (or sim-serve) instance: its kv-transfer config, its LMCache YAML, and its command
//! line and environment from the templates, wrapped in `srun` on the slurm backend.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::placement::Place;
use super::{core_list, model_arg, Component, Target};
use crate::exec::process::ProcessSpec;
use crate::exec::slurm;
use crate::exec::templates::Templates;
use crate::manifest::{Accelerator, Backend, LmcacheOptions, Mode, VLLM_API_KEY_VAR};
use crate::plan::{RoleKind, RoleSpec, Variant};

/// What is decided about an instance before its command is rendered.
pub struct Instance<'a> {
    pub name: &'a str,
    pub role: &'a RoleSpec,
    pub index: u32,
    pub port: u16,
    pub place: &'a Place<'a>,
    /// NIXL side-channel base port (one per TP rank from here).
    pub side_channel_port: Option<u16>,
    pub lmcache_config_file: Option<&'a Path>,
    /// LMCache producer: the proxy's notification address (its YAML's pd_proxy_host:port).
    pub lmcache_proxy: Option<String>,
}

/// LMCache side-channel ports: `base` is the proxy's notification port (the prefillers'
/// `pd_proxy_port`), then each decoder instance gets one init and one alloc port per TP rank.
pub struct LmcachePorts {
    pub base: u16,
    /// The address the proxy listens on for the notifications, as the prefillers reach it.
    pub notify_host: String,
    next: u16,
    /// Per decoder, `INIT[,INIT..]:ALLOC[,ALLOC..]`, as `vbench proxy` takes them.
    pub decoder_ports: Vec<String>,
}

impl LmcachePorts {
    pub fn new(base: u16, notify_host: String) -> Self {
        LmcachePorts {
            base,
            notify_host,
            next: base + 1,
            decoder_ports: Vec::new(),
        }
    }

    /// `HOST:PORT` of the proxy's notification socket.
    pub fn notify_addr(&self) -> String {
        format!("{}:{}", self.notify_host, self.base)
    }
}

fn join(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The LMCache YAML of one instance (path in `config_dir`, text), with its side-channel ports.
#[allow(clippy::too_many_arguments)]
pub fn lmcache_config(
    templates: &Templates,
    opts: &LmcacheOptions,
    role: &RoleSpec,
    name: &str,
    place: &Place,
    ports: &mut LmcachePorts,
    config_dir: &Path,
) -> anyhow::Result<(PathBuf, String)> {
    let yaml_overrides: BTreeMap<String, String> = match role.role {
        RoleKind::Decode => &opts.decoder_yaml,
        _ => &opts.prefiller_yaml,
    }
    .iter()
    .map(|(k, v)| (k.clone(), v.to_string()))
    .collect();
    let tp = role.tp as u16;
    let (template, ctx) = match role.role {
        RoleKind::Decode => {
            let init: Vec<u16> = (0..tp).map(|r| ports.next + r).collect();
            let alloc: Vec<u16> = (0..tp).map(|r| ports.next + tp + r).collect();
            ports.next += 2 * tp;
            ports
                .decoder_ports
                .push(format!("{}:{}", join(&init), join(&alloc)));
            (
                "lmcache_decoder_yaml",
                json!({"host": place.host, "init_ports": init, "alloc_ports": alloc,
                       "pd_buffer_size": super::kv_size::DEFAULT_DECODER_BUFFER,
                       "yaml_overrides": yaml_overrides}),
            )
        }
        _ => (
            "lmcache_prefiller_yaml",
            json!({"host": ports.notify_host, "lmcache_proxy_port": ports.base,
                   "yaml_overrides": yaml_overrides}),
        ),
    };
    let path = config_dir.join(format!("lmcache-{name}.yaml"));
    let text = templates.render(template, &ctx)?;
    Ok((path, text))
}

/// vLLM's `--kv-transfer-config` for one instance of a disaggregated variant (`None` for
/// `simple`): NixlConnector with the manifest's options, or LMCacheConnectorV1 with the
/// producer/consumer role and RPC name LMCache's PD mode expects.
pub fn kv_transfer_config(variant: &Variant, role: RoleKind, index: u32) -> Option<String> {
    match variant.mode {
        Mode::Simple => None,
        Mode::Nixl => {
            let n = variant.nixl.clone().unwrap_or_default();
            let mut c = json!({"kv_connector": "NixlConnector", "kv_role": "kv_both"});
            if let Some(d) = &n.kv_buffer_device {
                c["kv_buffer_device"] = json!(d);
            }
            if let Some(p) = &n.kv_load_failure_policy {
                c["kv_load_failure_policy"] = json!(p);
            }
            if let Some(b) = &n.backends {
                c["kv_connector_extra_config"] = json!({"backends": b});
            }
            Some(c.to_string())
        }
        Mode::Lmcache => {
            let (kv_role, rpc) = match role {
                RoleKind::Decode => ("kv_consumer", format!("consumer{}", index + 1)),
                _ => ("kv_producer", format!("producer{}", index + 1)),
            };
            let mut extra = json!({"discard_partial_chunks": false, "lmcache_rpc_port": rpc});
            if role == RoleKind::Decode {
                extra["skip_last_n_tokens"] = json!(1);
            }
            Some(
                json!({"kv_connector": "LMCacheConnectorV1", "kv_role": kv_role,
                       "kv_connector_extra_config": extra})
                .to_string(),
            )
        }
    }
}

/// The instance's component: program, argv and environment from the templates (`sim_serve`,
/// or `vllm_serve` + `vllm_env`), the manifest's `env` over the template's, in `srun` on Slurm.
pub fn component(
    target: &Target,
    templates: &Templates,
    variant: &Variant,
    i: &Instance,
) -> anyhow::Result<Component> {
    let sim = target.backend == Backend::Sim;
    let role = i.role;
    let place = i.place;
    let sim_role = match role.role {
        RoleKind::Serve => "simple",
        RoleKind::Prefill => "prefill",
        RoleKind::Decode => "decode",
    };
    let cpu_bind = (!place.cpus.is_empty()).then(|| {
        place
            .cpus
            .chunks(target.cpu_cores_per_instance.max(1) as usize)
            .map(core_list)
            .collect::<Vec<_>>()
            .join("|")
    });
    let cuda_visible_devices = (!place.gpus.is_empty()).then(|| {
        place
            .gpus
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    });
    let ctx = json!({
        "model": model_arg(target.model, target.manifest_dir),
        "served_model_name": target.served_model_name,
        "host": place.host,
        "port": i.port,
        "tp": role.tp,
        "role": role.role.as_str(),
        "index": i.index,
        "sim_role": sim_role,
        "sim_profile": target.sim_profile,
        "sim_tokenizer": target.sim_tokenizer,
        "is_gpu": target.accelerator == Accelerator::Cuda,
        "gpu_memory_utilization": role.gpu_memory_utilization,
        "max_model_len": variant.max_model_len,
        "max_num_seqs": variant.max_num_seqs,
        "max_num_batched_tokens": variant.max_num_batched_tokens,
        "load_format": variant.load_format,
        "kv_transfer_config": kv_transfer_config(variant, role.role, i.index),
        "is_nixl": variant.mode == Mode::Nixl,
        "is_lmcache": variant.mode == Mode::Lmcache,
        "side_channel_port": i.side_channel_port,
        "lmcache_config_file": i.lmcache_config_file,
        "lmcache_proxy": i.lmcache_proxy,
        "cuda_visible_devices": cuda_visible_devices,
        "cpu_bind": cpu_bind,
        "cache_dir": target.compile_cache,
        "extra_args": role.extra_args,
    });
    let (program, args, mut env) = if sim {
        (
            target.vbench_bin.clone(),
            templates.args("sim_serve", &ctx)?,
            BTreeMap::new(),
        )
    } else {
        let mut args = target.vllm_bin.leading_args().to_vec();
        args.extend(templates.args("vllm_serve", &ctx)?);
        (
            target.vllm_bin.program().to_owned(),
            args,
            templates.env("vllm_env", &ctx)?,
        )
    };
    // The manifest's own environment wins over the template's; its references to vbench's
    // environment are resolved only at launch.
    let (literal, mut env_from) = crate::exec::process::split_env(&role.env);
    env.retain(|k, _| !env_from.contains_key(k));
    env.extend(literal);
    // The key goes by name too, so neither the command line nor a record holds it.
    if let Some(name) = target.api_key_env {
        env.remove(VLLM_API_KEY_VAR);
        env_from.insert(VLLM_API_KEY_VAR.to_owned(), name.to_owned());
    }
    let (program, args) = match (&target.slurm, place.node) {
        (Some(s), Some(n)) => {
            let gres = if sim { 0 } else { role.tp };
            let mut wrapped =
                slurm::srun_args(s.job_id, &n.name, gres, s.cpus_per_instance, i.name);
            wrapped.push(program);
            wrapped.extend(args);
            ("srun".to_owned(), wrapped)
        }
        _ => (program, args),
    };
    Ok(Component {
        name: i.name.to_owned(),
        role: role.role.into(),
        url: format!("http://{}:{}", place.host, i.port),
        spec: ProcessSpec {
            name: i.name.to_owned(),
            program,
            args,
            env,
            env_from,
        },
        gpus: place.gpus.clone(),
        cpus: place.cpus.clone(),
        node: place.node.map(|n| n.name.clone()),
        files: BTreeMap::new(),
    })
}
