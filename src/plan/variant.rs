//! Resolved variants: one deployment with every sweep axis fixed to a value.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::manifest::{LmcacheOptions, Mode, NixlOptions, ProxyKind};

/// What an instance group does in the deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleKind {
    /// A whole vLLM instance (mode `simple`).
    Serve,
    Prefill,
    Decode,
}

impl RoleKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            RoleKind::Serve => "serve",
            RoleKind::Prefill => "prefill",
            RoleKind::Decode => "decode",
        }
    }
}

/// A group of identical vLLM instances.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoleSpec {
    pub role: RoleKind,
    pub instances: u32,
    pub tp: u32,
    pub gpu_memory_utilization: f64,
    pub extra_args: Vec<String>,
    pub env: crate::manifest::EnvMap,
}

impl RoleSpec {
    pub fn gpus(&self) -> u32 {
        self.instances * self.tp
    }
}

/// One deployment to launch, fully resolved.
#[derive(Debug, Clone, Serialize)]
pub struct Variant {
    /// Stable id from the resolved configuration: same configuration, same id.
    pub id: String,
    /// Label for tables and figures, e.g. `nixl PF:2 D:1 TP:1x1`.
    pub label: String,
    /// Index of the `[[deployment]]` this variant came from (0-based).
    pub deployment_index: usize,
    pub mode: Mode,
    /// Topology in the original suite's notation: `TP:2`, `R:2 TP:1`, `PF:2 D:1 TP:1x1`.
    pub topology: String,
    /// The instance groups: one `serve` group, or a `prefill` and a `decode` group.
    pub roles: Vec<RoleSpec>,
    pub proxy: ProxyKind,
    pub max_model_len: Option<u32>,
    pub max_num_seqs: Option<u32>,
    pub max_num_batched_tokens: Option<u32>,
    pub load_format: Option<String>,
    pub nixl: Option<NixlOptions>,
    pub lmcache: Option<LmcacheOptions>,
    pub templates: BTreeMap<String, PathBuf>,
    /// The values this variant took on each sweep axis of its deployment (axis → value).
    pub sweep: BTreeMap<String, serde_json::Value>,
    /// GPUs (accelerator slots) the variant occupies while it runs.
    pub gpus: u32,
}

impl Variant {
    pub fn role(&self, kind: RoleKind) -> Option<&RoleSpec> {
        self.roles.iter().find(|r| r.role == kind)
    }

    /// Number of vLLM processes (instances) the variant starts.
    pub fn instance_count(&self) -> u32 {
        self.roles.iter().map(|r| r.instances).sum()
    }
}

/// `TP:2`, `R:2 TP:1` or `PF:2 D:1 TP:1x1` (the original suite's config line).
pub fn topology(mode: Mode, roles: &[RoleSpec]) -> String {
    match mode {
        Mode::Simple => {
            let r = &roles[0];
            if r.instances == 1 {
                format!("TP:{}", r.tp)
            } else {
                format!("R:{} TP:{}", r.instances, r.tp)
            }
        }
        Mode::Nixl | Mode::Lmcache => {
            let p = &roles[0];
            let d = &roles[1];
            format!("PF:{} D:{} TP:{}x{}", p.instances, d.instances, p.tp, d.tp)
        }
    }
}

/// `simple-tp2-1a2b3c`, `nixl-p2d1-tp1x1-9f8e7d`: readable prefix + 6 hex digits of a hash of
/// everything that changes what runs (the label does not; renaming keeps finished cells).
pub fn variant_id(mode: Mode, roles: &[RoleSpec], identity: &serde_json::Value) -> String {
    let prefix = match mode {
        Mode::Simple => {
            let r = &roles[0];
            if r.instances == 1 {
                format!("simple-tp{}", r.tp)
            } else {
                format!("simple-r{}-tp{}", r.instances, r.tp)
            }
        }
        Mode::Nixl | Mode::Lmcache => format!(
            "{}-p{}d{}-tp{}x{}",
            mode, roles[0].instances, roles[1].instances, roles[0].tp, roles[1].tp
        ),
    };
    // serde_json's map is a BTreeMap here (no preserve_order), so the text is canonical.
    let canonical = serde_json::to_string(identity).expect("identity serialises");
    let digest = Sha256::digest(canonical.as_bytes());
    let hex: String = digest.iter().take(3).map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{hex}")
}
