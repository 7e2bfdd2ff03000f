//! The proxy in front of a variant's instances: vbench's built-in one or vllm-router, told
//! where the prefill, decode (or round-robin) instances are.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use serde_json::json;

use super::instance::LmcachePorts;
use super::kv_size;
use super::{Component, ComponentRole, Target, HOST};
use crate::exec::ports::PortAllocator;
use crate::exec::process::ProcessSpec;
use crate::exec::templates::Templates;
use crate::manifest::{Mode, ProxyKind};
use crate::plan::{RoleKind, Variant};

/// The proxy component for `instances`; for LMCache, where it hears the prefillers and each
/// decoder's side-channel ports, in order.
pub fn component(
    target: &Target,
    templates: &Templates,
    variant: &Variant,
    instances: &[Component],
    lmcache: Option<&LmcachePorts>,
    ports: &mut PortAllocator,
) -> anyhow::Result<Component> {
    let urls = |kind: ComponentRole| -> Vec<String> {
        instances
            .iter()
            .filter(|c| c.role == kind)
            .map(|c| c.url.clone())
            .collect()
    };
    let port = ports.any()?;
    let ctx = json!({
        "host": HOST,
        "port": port,
        "proxy_mode": match variant.mode {
            Mode::Simple => "round-robin",
            Mode::Nixl => "nixl",
            Mode::Lmcache => "lmcache",
        },
        "prefill_urls": urls(ComponentRole::Prefill),
        "decode_urls": urls(ComponentRole::Decode),
        "backend_urls": urls(ComponentRole::Serve),
        "lmcache_decoder_ports": lmcache.map(|l| l.decoder_ports.as_slice()).unwrap_or_default(),
        "lmcache_notify": lmcache.map(LmcachePorts::notify_addr),
        "kv_wait_s": variant.lmcache.as_ref().and_then(|l| l.kv_wait_s),
        "lmcache_buffer": lmcache_buffer(target, variant)?,
    });
    let (program, args) = match variant.proxy {
        ProxyKind::Builtin => (
            target.vbench_bin.clone(),
            templates.args("proxy_builtin", &ctx)?,
        ),
        ProxyKind::VllmRouter => {
            // vllm-router installs next to vllm in the same environment.
            let beside = Path::new(target.vllm_bin.program()).with_file_name("vllm-router");
            let program = if beside.exists() {
                beside.display().to_string()
            } else {
                "vllm-router".to_owned()
            };
            (program, templates.args("proxy_vllm_router", &ctx)?)
        }
        ProxyKind::Lmcache => bail!(
            "proxy = \"lmcache\" needs LMCache's disagg_proxy_server.py, which the lmcache wheel \
             does not ship; not supported yet"
        ),
    };
    Ok(Component {
        name: "proxy".into(),
        role: ComponentRole::Proxy,
        url: format!("http://{HOST}:{port}"),
        spec: ProcessSpec {
            name: "proxy".into(),
            program,
            args,
            env: BTreeMap::new(),
            env_from: BTreeMap::new(),
        },
        gpus: vec![],
        cpus: vec![],
        node: None,
        files: BTreeMap::new(),
    })
}

/// The LMCache proxy's in-flight limit: each decoder's transfer-buffer capacity in chunk slots,
/// and the chunk size (`super::kv_size`), when the model is a local folder with a
/// `config.json`; `None` otherwise (the proxy then sets no limit).
fn lmcache_buffer(target: &Target, variant: &Variant) -> anyhow::Result<Option<serde_json::Value>> {
    let Some(opts) = &variant.lmcache else {
        return Ok(None);
    };
    let Some(config) = kv_size::local_config(target.model, target.manifest_dir) else {
        return Ok(None);
    };
    let config = config.context("reading the model's config.json for LMCache's buffer limit")?;
    let per_token = kv_size::kv_bytes_per_token(&config)
        .context("the model's config.json (for LMCache's buffer limit)")?;
    let yaml_u64 = |key: &str| {
        opts.decoder_yaml
            .get(key)
            .and_then(serde_json::Value::as_u64)
    };
    let buffer = yaml_u64("pd_buffer_size").unwrap_or(kv_size::DEFAULT_DECODER_BUFFER);
    let chunk = yaml_u64("chunk_size").unwrap_or(kv_size::DEFAULT_CHUNK_SIZE);
    let slots: Vec<u64> = variant
        .roles
        .iter()
        .filter(|r| r.role == RoleKind::Decode)
        .flat_map(|r| {
            std::iter::repeat_n(
                kv_size::buffer_slots(buffer, r.tp, per_token, chunk),
                r.instances as usize,
            )
        })
        .collect();
    Ok(Some(json!({"slots": slots, "chunk_size": chunk})))
}
