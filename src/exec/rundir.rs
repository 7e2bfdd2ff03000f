//! The run folder: `results/<experiment>/<YYYYMMDD_HHMMSS>/`, created new for every run
//! (never reused, never overwritten), and its provenance files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::manifest::VllmCommand;

/// Create a fresh run folder under `results/<experiment>/`. Two runs in the same second get
/// `_2`, `_3`, ... rather than sharing a folder.
pub fn create(
    results: &Path,
    experiment: &str,
    now: chrono::DateTime<chrono::Local>,
) -> anyhow::Result<PathBuf> {
    let parent = results.join(experiment);
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let stamp = now.format("%Y%m%d_%H%M%S").to_string();
    for n in 1..1000 {
        let name = if n == 1 {
            stamp.clone()
        } else {
            format!("{stamp}_{n}")
        };
        let dir = parent.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    bail!(
        "could not create a new run folder under {}",
        parent.display()
    )
}

/// A run folder can be resumed with the manifest and overrides it started with.
pub fn check_resumable(dir: &Path, loaded: &crate::manifest::LoadedManifest) -> anyhow::Result<()> {
    let stored = std::fs::read_to_string(dir.join("manifest.toml")).with_context(|| {
        format!(
            "--resume {}: no manifest.toml there; is it a run folder?",
            dir.display()
        )
    })?;
    if stored != loaded.original_text {
        bail!(
            "--resume {}: its manifest.toml differs from {}; resume continues the same experiment \
             (start a new run instead)",
            dir.display(),
            loaded.path.display()
        );
    }
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("plan.json")).unwrap_or_default())
            .with_context(|| {
                format!(
                    "--resume {}: plan.json is missing or not JSON",
                    dir.display()
                )
            })?;
    let stored_overrides: Vec<String> =
        serde_json::from_value(plan["overrides"].clone()).unwrap_or_default();
    if stored_overrides != loaded.overrides {
        bail!(
            "--resume {}: the run used --set {:?}, this invocation {:?}; give the same overrides",
            dir.display(),
            stored_overrides,
            loaded.overrides
        );
    }
    Ok(())
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let mut c = Command::new(program);
    c.args(args);
    command_output_of(c)
}

fn command_output_of(mut command: Command) -> Option<String> {
    let out = command.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Versions, GPUs, host and the manifest's git revision.
/// `vllm` is the command that runs vLLM and the environment to ask it for its version in.
pub fn environment(
    manifest_path: &Path,
    vllm: Option<(&VllmCommand, &BTreeMap<String, String>)>,
    simulated: bool,
) -> Value {
    let dir = manifest_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir_s = dir.display().to_string();
    let git_sha = command_output("git", &["-C", &dir_s, "rev-parse", "HEAD"]);
    let git_dirty = command_output("git", &["-C", &dir_s, "status", "--porcelain", "--", "."])
        .map(|s| !s.is_empty());
    let vllm_version = match (simulated, vllm) {
        (true, _) => Some("simulated (vbench sim-serve)".to_owned()),
        (false, Some((cmd, env))) => {
            let mut c = Command::new(cmd.program());
            c.args(cmd.leading_args()).arg("--version").envs(env);
            command_output_of(c).map(|s| s.lines().last().unwrap_or("").to_owned())
        }
        (false, None) => None,
    };
    let gpus = command_output(
        "nvidia-smi",
        &[
            "--query-gpu=index,name,memory.total,driver_version",
            "--format=csv,noheader",
        ],
    )
    .map(|s| s.lines().map(str::to_owned).collect::<Vec<_>>());
    json!({
        "vbench_version": env!("CARGO_PKG_VERSION"),
        "vllm_version": vllm_version,
        "simulated": simulated,
        "gpus": gpus,
        "host": command_output("hostname", &[]),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "manifest_git": { "sha": git_sha, "dirty": git_dirty },
        "command": std::env::args().collect::<Vec<_>>(),
        "started_at": chrono::Local::now().to_rfc3339(),
    })
}

/// Environment variables whose values must not be written to disk.
pub fn redact(key: &str, value: &str) -> String {
    let k = key.to_ascii_uppercase();
    if ["TOKEN", "KEY", "SECRET", "PASSWORD"]
        .iter()
        .any(|s| k.contains(s))
    {
        "<redacted>".to_owned()
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_in_the_same_second_get_distinct_folders() {
        let dir = tempfile::tempdir().unwrap();
        let now = chrono::Local::now();
        let a = create(dir.path(), "exp", now).unwrap();
        let b = create(dir.path(), "exp", now).unwrap();
        assert_ne!(a, b);
        assert!(b.file_name().unwrap().to_str().unwrap().ends_with("_2"));
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(redact("HF_TOKEN", "abc"), "<redacted>");
        assert_eq!(redact("CUDA_VISIBLE_DEVICES", "0,1"), "0,1");
    }
}
