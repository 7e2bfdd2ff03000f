//! From a resolved variant to the concrete processes of one deployment: which instances, on
//! which GPUs (or CPU cores) and ports, with which command line, environment and config files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::json;

use crate::manifest::{Accelerator, Backend, Mode, ProxyKind, VllmCommand};
use crate::plan::{RoleKind, Variant};

use super::ports::PortAllocator;
use super::process::ProcessSpec;
use super::slurm::{self, SlurmNode};
use super::templates::Templates;

/// One process of a deployment.
#[derive(Debug, Clone, Serialize)]
pub struct Component {
    pub name: String,
    pub role: ComponentRole,
    pub url: String,
    pub spec: ProcessSpec,
    /// GPUs (CUDA indices) this component holds.
    pub gpus: Vec<u32>,
    /// CPU cores it is pinned to (CPU build).
    pub cpus: Vec<u32>,
    /// Slurm node it runs on (slurm backend).
    pub node: Option<String>,
    /// Config files written before launch (e.g. LMCache YAML): path → contents.
    pub files: BTreeMap<PathBuf, String>,
}

/// What a component is for; written as `serve`, `prefill`, `decode` or `proxy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentRole {
    Serve,
    Prefill,
    Decode,
    Proxy,
}

impl From<RoleKind> for ComponentRole {
    fn from(r: RoleKind) -> Self {
        match r {
            RoleKind::Serve => ComponentRole::Serve,
            RoleKind::Prefill => ComponentRole::Prefill,
            RoleKind::Decode => ComponentRole::Decode,
        }
    }
}

/// Everything launched for one variant.
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentSpec {
    pub variant_id: String,
    pub label: String,
    /// Instances first, then the proxy (started last, stopped first).
    pub components: Vec<Component>,
    /// Where the load generator sends requests.
    pub entry_url: String,
    pub gpus: Vec<u32>,
}

/// What the launcher knows about the target beyond the plan.
pub struct Target<'a> {
    pub backend: Backend,
    pub accelerator: Accelerator,
    /// The command that runs vLLM (`vllm`, or e.g. `python3 -m vllm.entrypoints.cli.main`).
    pub vllm_bin: &'a VllmCommand,
    /// This vbench executable (sim instances and the built-in proxy run as its subcommands).
    pub vbench_bin: String,
    pub sim_profile: Option<&'a str>,
    /// sim backend: the tokenizer sim-serve counts prompt tokens with (see
    /// [`local_tokenizer`]); None = its stand-in.
    pub sim_tokenizer: Option<String>,
    /// GPU indices vbench may hand out (cuda).
    pub gpu_pool: Vec<u32>,
    /// CPU cores vbench may hand out (cpu build).
    pub cpu_pool: Vec<u32>,
    pub cpu_cores_per_instance: u32,
    pub model: &'a str,
    pub served_model_name: &'a str,
    pub manifest_dir: &'a Path,
    /// slurm backend: the allocation's job id and nodes.
    pub slurm: Option<(&'a str, &'a [SlurmNode])>,
    /// slurm backend: CPUs per instance step.
    pub slurm_cpus_per_instance: u32,
}

const HOST: &str = "127.0.0.1";

/// The manifest's tokenizer (else its model) as a local path, when it is one: a path relative
/// to the manifest's folder or an absolute one that exists. sim-serve then counts prompt
/// tokens as the model would; a Hugging Face id is left to the stand-in (sim-serve must not
/// fail to start for want of a download).
pub fn local_tokenizer(m: &crate::manifest::Manifest, manifest_dir: &Path) -> Option<String> {
    let spec = m.tokenizer.as_deref().unwrap_or(&m.model);
    let path = manifest_dir.join(spec);
    path.exists().then(|| {
        std::path::absolute(&path)
            .unwrap_or(path)
            .display()
            .to_string()
    })
}

/// `0-3` for contiguous cores, else `0,2,5`.
fn core_list(cores: &[u32]) -> String {
    let contiguous = cores.windows(2).all(|w| w[1] == w[0] + 1);
    match (cores.first(), cores.last()) {
        (Some(a), Some(b)) if contiguous && cores.len() > 1 => format!("{a}-{b}"),
        _ => cores
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// The model argument for vLLM: a relative path that names a folder beside the manifest is
/// made absolute (vLLM would resolve it against its own working directory, or take it for a
/// Hugging Face id); anything else (an id, an absolute path) is passed unchanged.
pub fn model_arg(model: &str, manifest_dir: &Path) -> String {
    let path = Path::new(model);
    if path.is_relative() {
        let beside = manifest_dir.join(path);
        if beside.is_dir() {
            if let Ok(abs) = std::path::absolute(&beside) {
                return abs.display().to_string();
            }
        }
    }
    model.to_owned()
}

pub fn render(
    target: &Target,
    variant: &Variant,
    config_dir: &Path,
    ports: &mut PortAllocator,
) -> anyhow::Result<DeploymentSpec> {
    let templates = Templates::new(&variant.templates, target.manifest_dir)?;
    let sim = target.backend == Backend::Sim;
    let mut gpu_pool = target.gpu_pool.iter().copied();
    let mut cpu_pool = target.cpu_pool.iter().copied();
    let mut components = Vec::new();
    let mut all_gpus = Vec::new();
    let mut slurm_free: Vec<u32> = target
        .slurm
        .map(|(_, nodes)| nodes.iter().map(|n| n.gpus).collect())
        .unwrap_or_default();

    // LMCache side-channel ports: the proxy's notification port, then per decoder instance one
    // init and one alloc port per TP rank.
    let lmcache_base = variant.lmcache.as_ref().map(|l| l.port);
    let mut lmcache_next = lmcache_base.map(|b| b + 1);
    let mut lmcache_decoder_ports: Vec<String> = Vec::new();
    let join = |ports: &[u16]| {
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };

    for role in &variant.roles {
        for index in 0..role.instances {
            let name = format!("{}-{index}", role.role.as_str());
            let port = ports.any()?;
            let mut gpus = Vec::new();
            let mut cpus = Vec::new();
            let node = match target.slurm {
                Some((_, nodes)) => Some(&nodes[slurm::place(nodes, &mut slurm_free, role.tp)?]),
                None => None,
            };
            let host = node.map_or(HOST, |n| n.addr.as_str());
            match (sim, target.accelerator) {
                (true, _) => {}
                // Slurm binds the step's GPUs itself (CUDA_VISIBLE_DEVICES in the step).
                (false, _) if node.is_some() => {}
                (false, Accelerator::Cuda) => {
                    for _ in 0..role.tp {
                        gpus.push(
                            gpu_pool
                                .next()
                                .context("not enough GPUs left for this variant")?,
                        );
                    }
                }
                (false, Accelerator::Cpu) => {
                    for _ in 0..role.tp * target.cpu_cores_per_instance {
                        cpus.push(
                            cpu_pool
                                .next()
                                .context("not enough CPU cores left for this variant")?,
                        );
                    }
                }
            }
            all_gpus.extend(&gpus);
            let side_channel_port = match &variant.nixl {
                Some(n) => Some(ports.block(n.side_channel_port, role.tp as u16)?),
                None => None,
            };
            let mut files = BTreeMap::new();
            let mut lmcache_config_file = None;
            if let (Some(base), Some(opts)) = (lmcache_base, &variant.lmcache) {
                let yaml_overrides: BTreeMap<String, String> = match role.role {
                    RoleKind::Decode => &opts.decoder_yaml,
                    _ => &opts.prefiller_yaml,
                }
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect();
                let (template, ctx) = match role.role {
                    RoleKind::Decode => {
                        let next = lmcache_next.as_mut().expect("set with base");
                        let init: Vec<u16> = (0..role.tp as u16).map(|r| *next + r).collect();
                        let alloc: Vec<u16> = (0..role.tp as u16)
                            .map(|r| *next + role.tp as u16 + r)
                            .collect();
                        *next += 2 * role.tp as u16;
                        lmcache_decoder_ports.push(format!("{}:{}", join(&init), join(&alloc)));
                        (
                            "lmcache_decoder_yaml",
                            json!({"host": host, "init_ports": init, "alloc_ports": alloc, "yaml_overrides": yaml_overrides}),
                        )
                    }
                    _ => (
                        "lmcache_prefiller_yaml",
                        json!({"host": HOST, "lmcache_proxy_port": base,
                        "skip_proxy_notification": variant.proxy == ProxyKind::Builtin, "yaml_overrides": yaml_overrides}),
                    ),
                };
                let path = config_dir.join(format!("lmcache-{name}.yaml"));
                files.insert(path.clone(), templates.render(template, &ctx)?);
                lmcache_config_file = Some(path);
            }

            let kv_transfer_config = kv_transfer_config(variant, role.role, index);
            let sim_role = match role.role {
                RoleKind::Serve => "simple",
                RoleKind::Prefill => "prefill",
                RoleKind::Decode => "decode",
            };
            let cpu_bind = (!cpus.is_empty()).then(|| {
                cpus.chunks(target.cpu_cores_per_instance.max(1) as usize)
                    .map(core_list)
                    .collect::<Vec<_>>()
                    .join("|")
            });
            let ctx = json!({
                "model": model_arg(target.model, target.manifest_dir),
                "served_model_name": target.served_model_name,
                "host": host,
                "port": port,
                "tp": role.tp,
                "role": role.role.as_str(),
                "index": index,
                "sim_role": sim_role,
                "sim_profile": target.sim_profile,
                "sim_tokenizer": target.sim_tokenizer,
                "is_gpu": target.accelerator == Accelerator::Cuda,
                "gpu_memory_utilization": role.gpu_memory_utilization,
                "max_model_len": variant.max_model_len,
                "max_num_seqs": variant.max_num_seqs,
                "max_num_batched_tokens": variant.max_num_batched_tokens,
                "load_format": variant.load_format,
                "kv_transfer_config": kv_transfer_config,
                "is_nixl": variant.mode == Mode::Nixl,
                "is_lmcache": variant.mode == Mode::Lmcache,
                "side_channel_port": side_channel_port,
                "lmcache_config_file": lmcache_config_file,
                "cuda_visible_devices": (!gpus.is_empty()).then(|| gpus.iter().map(u32::to_string).collect::<Vec<_>>().join(",")),
                "cpu_bind": cpu_bind,
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
            // The manifest's own environment wins over the template's.
            env.extend(role.env.clone());
            let (program, args) = match (target.slurm, node) {
                (Some((job, _)), Some(n)) => {
                    let gres = if sim { 0 } else { role.tp };
                    let mut wrapped =
                        slurm::srun_args(job, &n.name, gres, target.slurm_cpus_per_instance, &name);
                    wrapped.push(program);
                    wrapped.extend(args);
                    ("srun".to_owned(), wrapped)
                }
                _ => (program, args),
            };
            components.push(Component {
                name: name.clone(),
                role: role.role.into(),
                url: format!("http://{host}:{port}"),
                spec: ProcessSpec {
                    name,
                    program,
                    args,
                    env,
                },
                gpus,
                cpus,
                node: node.map(|n| n.name.clone()),
                files,
            });
        }
    }

    let urls = |kind: ComponentRole| -> Vec<String> {
        components
            .iter()
            .filter(|c| c.role == kind)
            .map(|c| c.url.clone())
            .collect()
    };
    let needs_proxy = variant.mode != Mode::Simple || variant.roles[0].instances > 1;
    let entry_url = if needs_proxy {
        let port = ports.any()?;
        let ctx = json!({
            "host": HOST,
            "port": port,
            "proxy_mode": match variant.mode { Mode::Simple => "round-robin", Mode::Nixl => "nixl", Mode::Lmcache => "lmcache" },
            "prefill_urls": urls(ComponentRole::Prefill),
            "decode_urls": urls(ComponentRole::Decode),
            "backend_urls": urls(ComponentRole::Serve),
            "lmcache_decoder_ports": lmcache_decoder_ports,
        });
        let (program, args) = match (variant.proxy, variant.mode) {
            (ProxyKind::Builtin, _) => (target.vbench_bin.clone(), templates.args("proxy_builtin", &ctx)?),
            (ProxyKind::VllmRouter, _) => {
                // vllm-router installs next to vllm in the same environment.
                let beside = Path::new(target.vllm_bin.program()).with_file_name("vllm-router");
                let program = if beside.exists() { beside.display().to_string() } else { "vllm-router".to_owned() };
                (program, templates.args("proxy_vllm_router", &ctx)?)
            }
            (ProxyKind::Lmcache, _) => bail!(
                "proxy = \"lmcache\" needs LMCache's disagg_proxy_server.py, which the lmcache wheel does not ship; \
                 not supported yet"
            ),
        };
        let url = format!("http://{HOST}:{port}");
        components.push(Component {
            name: "proxy".into(),
            role: ComponentRole::Proxy,
            url: url.clone(),
            spec: ProcessSpec {
                name: "proxy".into(),
                program,
                args,
                env: BTreeMap::new(),
            },
            gpus: vec![],
            cpus: vec![],
            node: None,
            files: BTreeMap::new(),
        });
        url
    } else {
        components[0].url.clone()
    };
    Ok(DeploymentSpec {
        variant_id: variant.id.clone(),
        label: variant.label.clone(),
        components,
        entry_url,
        gpus: all_gpus,
    })
}

/// vLLM's `--kv-transfer-config` for one instance of a disaggregated variant (`None` for
/// `simple`): NixlConnector with the manifest's options, or LMCacheConnectorV1 with the
/// producer/consumer role and RPC name LMCache's PD mode expects.
fn kv_transfer_config(variant: &Variant, role: RoleKind, index: u32) -> Option<String> {
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
            Some(json!({"kv_connector": "LMCacheConnectorV1", "kv_role": kv_role, "kv_connector_extra_config": extra}).to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::core_list;

    #[test]
    fn core_lists_use_ranges_when_contiguous() {
        assert_eq!(core_list(&[0, 1, 2, 3]), "0-3");
        assert_eq!(core_list(&[1]), "1");
        assert_eq!(core_list(&[0, 2, 5]), "0,2,5");
    }
}
