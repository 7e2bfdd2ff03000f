//! From a resolved variant to the concrete processes of one deployment: which instances, on
//! which GPUs (or CPU cores) and ports (`placement`), with which command line, environment,
//! kv-transfer config and config files (`instance`), behind which proxy (`proxy`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::manifest::{Accelerator, Backend, Mode, Placement, VllmCommand};
use crate::plan::{RoleKind, Variant};

use super::ports::PortAllocator;
use super::process::ProcessSpec;
use super::slurm::SlurmNode;
use super::templates::Templates;
use instance::LmcachePorts;
use placement::Placer;

mod instance;
mod kv_size;
mod placement;
mod proxy;

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
    /// Log lines that mean an instance is dead though its process may live on (the
    /// `fatal_lines` template).
    #[serde(skip)]
    pub fatal_lines: Vec<String>,
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
    /// slurm backend: the allocation and how instances are placed on it.
    pub slurm: Option<SlurmTarget<'a>>,
    /// The compile-cache folder every vLLM instance shares (`None`: vLLM's defaults).
    pub compile_cache: Option<&'a Path>,
    /// The variable of vbench's environment that holds the instances' API key
    /// (`target.api_key_env`).
    pub api_key_env: Option<&'a str>,
}

/// The slurm backend's part of the target.
#[derive(Clone, Copy)]
pub struct SlurmTarget<'a> {
    pub job_id: &'a str,
    pub nodes: &'a [SlurmNode],
    pub placement: Placement,
    /// CPUs per instance step.
    pub cpus_per_instance: u32,
}

/// Where vbench's own servers (the proxy) listen, and local instances bind.
const HOST: &str = "127.0.0.1";

/// Where LMCache's prefillers reach vbench's proxy to report finished KV transfers: 127.0.0.1
/// when every instance runs on this host; on Slurm, this host's address on the route to the
/// allocation's nodes (the source address the kernel picks for them; no packet is sent).
fn notify_host(target: &Target) -> anyhow::Result<String> {
    use anyhow::Context;
    use std::net::ToSocketAddrs;
    let Some(node) = target.slurm.as_ref().and_then(|s| s.nodes.first()) else {
        return Ok(HOST.to_owned());
    };
    let addr = (node.addr.as_str(), 9)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.find(|a| a.is_ipv4()))
        .with_context(|| {
            format!(
                "cannot resolve node {}'s address {:?}",
                node.name, node.addr
            )
        })?;
    if addr.ip().is_loopback() {
        return Ok(HOST.to_owned());
    }
    let probe = std::net::UdpSocket::bind("0.0.0.0:0")?;
    probe
        .connect(addr)
        .with_context(|| format!("no route to node {} ({})", node.name, node.addr))?;
    Ok(probe.local_addr()?.ip().to_string())
}

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

/// The concrete processes of `variant` on `target`: instances first (in role order), then the
/// proxy when the variant needs one. Config files go to `config_dir`; ports come from `ports`.
pub fn render(
    target: &Target,
    variant: &Variant,
    config_dir: &Path,
    ports: &mut PortAllocator,
) -> anyhow::Result<DeploymentSpec> {
    let templates = Templates::new(&variant.templates, target.manifest_dir)?;
    let mut placer = Placer::new(target, variant)?;
    // LMCache's side channels: the proxy's notification port, then each decoder's init and
    // alloc ports per TP rank, as one block of free ports from `lmcache.port` up (a fixed
    // block would collide with a second run's).
    let mut lmcache = match &variant.lmcache {
        Some(l) => {
            let decoder_ports: u16 = variant
                .roles
                .iter()
                .filter(|r| r.role == RoleKind::Decode)
                .map(|r| 2 * r.tp as u16 * r.instances as u16)
                .sum();
            Some(LmcachePorts::new(
                ports.block(l.port, 1 + decoder_ports)?,
                notify_host(target)?,
            ))
        }
        None => None,
    };
    let mut components = Vec::new();
    for role in &variant.roles {
        for index in 0..role.instances {
            let name = format!("{}-{index}", role.role.as_str());
            let place = placer.place(role, index)?;
            let node = place.node.map(|n| n.name.as_str());
            let port = ports.any_on(node)?;
            let side_channel_port = match &variant.nixl {
                Some(n) => Some(ports.block_on(node, n.side_channel_port, role.tp as u16)?),
                None => None,
            };
            let lmcache_config = match (&mut lmcache, &variant.lmcache) {
                (Some(lp), Some(opts)) => Some(instance::lmcache_config(
                    &templates, opts, role, &name, &place, lp, config_dir,
                )?),
                _ => None,
            };
            let instance = instance::Instance {
                name: &name,
                role,
                index,
                port,
                place: &place,
                side_channel_port,
                lmcache_config_file: lmcache_config.as_ref().map(|(path, _)| path.as_path()),
                lmcache_proxy: match (&lmcache, role.role) {
                    (Some(lp), RoleKind::Prefill) => Some(lp.notify_addr()),
                    _ => None,
                },
            };
            let mut component = instance::component(target, &templates, variant, &instance)?;
            component.files.extend(lmcache_config);
            components.push(component);
        }
    }
    let entry_url = if needs_proxy(variant) {
        let proxy = proxy::component(
            target,
            &templates,
            variant,
            &components,
            lmcache.as_ref(),
            ports,
        )?;
        let url = proxy.url.clone();
        components.push(proxy);
        url
    } else {
        components[0].url.clone()
    };
    Ok(DeploymentSpec {
        variant_id: variant.id.clone(),
        label: variant.label.clone(),
        components,
        entry_url,
        gpus: placer.all_gpus,
        fatal_lines: templates.fatal_lines()?,
    })
}

/// Disaggregated variants need a proxy in front; so does `simple` with replicas (round-robin).
fn needs_proxy(variant: &Variant) -> bool {
    variant.mode != Mode::Simple || variant.roles[0].instances > 1
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
