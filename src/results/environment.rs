//! `environment.json`: where and with what a run happened, written by `apply` at the start
//! of a run (and of each resume), read by `report` and `ls`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::exec::probe;
use crate::manifest::VllmCommand;

/// `environment.json`: versions, GPUs, host and the manifest's git revision. Written by
/// `apply` with every field set; read leniently (every field optional) so older or hand-made
/// files still read. The report copies it into summary.json.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Environment {
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub vbench_version: Option<String>,
    #[serde(default)]
    pub vllm_version: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    /// GPU descriptions as `nvidia-smi` gave them (null on the simulator or the CPU build).
    #[serde(default)]
    pub gpus: serde_json::Value,
    #[serde(default)]
    pub manifest_git: Option<GitState>,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub simulated: Option<bool>,
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub arch: Option<String>,
    /// CPUs this process may use.
    #[serde(default)]
    pub cpus: Option<usize>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GitState {
    #[serde(default)]
    pub sha: Option<String>,
    #[serde(default)]
    pub dirty: Option<bool>,
}

impl Environment {
    /// This host now. vLLM's version is left out (except on the simulator): its probe imports
    /// vLLM, so `apply` runs [`Self::vllm_version`] while the first variant starts.
    ///
    /// Every query has a time limit ([`probe::LIMIT`]) and gives up at once when `stop()`
    /// says so (a Ctrl-C meanwhile).
    pub fn collect(manifest_path: &Path, simulated: bool, stop: &dyn Fn() -> bool) -> Environment {
        let dir = manifest_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir_s = dir.display().to_string();
        let git_sha = command_output("git", &["-C", &dir_s, "rev-parse", "HEAD"], stop);
        let git_dirty = command_output(
            "git",
            &["-C", &dir_s, "status", "--porcelain", "--", "."],
            stop,
        )
        .map(|s| !s.is_empty());
        let vllm_version = simulated.then(|| "simulated (vbench sim-serve)".to_owned());
        let gpus = command_output(
            "nvidia-smi",
            &[
                "--query-gpu=index,name,memory.total,driver_version",
                "--format=csv,noheader",
            ],
            stop,
        )
        .map(|s| s.lines().map(str::to_owned).collect::<Vec<_>>());
        Environment {
            started_at: Some(chrono::Local::now().to_rfc3339()),
            vbench_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            vllm_version,
            host: command_output("hostname", &[], stop),
            gpus: serde_json::to_value(gpus).unwrap_or_default(),
            manifest_git: Some(GitState {
                sha: git_sha,
                dirty: git_dirty,
            }),
            // `--set` values can be secrets (target.env.HF_TOKEN=...).
            command: super::redact::argv(&std::env::args().collect::<Vec<_>>()),
            simulated: Some(simulated),
            os: Some(std::env::consts::OS.to_owned()),
            arch: Some(std::env::consts::ARCH.to_owned()),
            cpus: Some(
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1),
            ),
        }
    }
}

impl Environment {
    /// `vllm --version` (its last line). It imports vLLM: 20-30 s on a GPU host.
    pub fn vllm_version(
        cmd: &VllmCommand,
        env: &BTreeMap<String, String>,
        stop: &dyn Fn() -> bool,
    ) -> Option<String> {
        let mut c = Command::new(cmd.program());
        c.args(cmd.leading_args()).arg("--version").envs(env);
        probe::output(c, probe::LIMIT, stop).map(|s| s.lines().last().unwrap_or("").to_owned())
    }
}

fn command_output(program: &str, args: &[&str], stop: &dyn Fn() -> bool) -> Option<String> {
    let mut c = Command::new(program);
    c.args(args);
    probe::output(c, probe::LIMIT, stop)
}

/// `2 × NVIDIA H200 (143771 MiB)` from nvidia-smi's `index, name, memory, driver` lines
/// (other shapes are shown as they are).
pub fn gpu_summary(gpus: &[serde_json::Value]) -> String {
    let mut groups: Vec<(String, usize)> = Vec::new();
    for g in gpus {
        let desc = match g.as_str() {
            Some(line) => {
                let f: Vec<&str> = line.split(',').map(str::trim).collect();
                match f.as_slice() {
                    [_, name, mem, ..] => format!("{name} ({mem})"),
                    _ => line.to_string(),
                }
            }
            None => g.to_string(),
        };
        match groups.iter_mut().find(|(d, _)| *d == desc) {
            Some((_, n)) => *n += 1,
            None => groups.push((desc, 1)),
        }
    }
    groups
        .iter()
        .map(|(d, n)| format!("{n} × {d}"))
        .collect::<Vec<_>>()
        .join(", ")
}
