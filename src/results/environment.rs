//! `environment.json`: where and with what a run happened, written by `apply` at the start
//! of a run (and of each resume), read by `report` and `ls`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::exec::{probe, slurm};
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
    /// Versions of the Python packages vLLM ran with that the numbers depend on (torch, the
    /// KV connectors' lmcache and nixl, ...), from the interpreter that runs vLLM; only those
    /// installed. Empty on the simulator or where the interpreter could not be asked.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub packages: BTreeMap<String, String>,
    /// Slurm: the allocation's nodes, where `gpus` (every node's) and the versions (the first
    /// node's) were read instead of on `host`, which may be a login node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// Slurm: the node vbench itself ran on (`SLURMD_NODENAME`), with the proxy and the load
    /// generator; absent outside a job (a login node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_node: Option<String>,
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
        let gpus = Environment::gpu_lines(&[], stop);
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
            command: super::redact::argv(
                &std::env::args_os()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect::<Vec<_>>(),
            ),
            simulated: Some(simulated),
            os: Some(std::env::consts::OS.to_owned()),
            arch: Some(std::env::consts::ARCH.to_owned()),
            cpus: Some(
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1),
            ),
            packages: BTreeMap::new(),
            nodes: Vec::new(),
            driver_node: std::env::var("SLURMD_NODENAME")
                .ok()
                .filter(|n| !n.is_empty() && n.len() <= 256),
        }
    }
}

/// How long `vllm --version` may take: it imports vLLM, which took 57.7 s on an idle 2-core VM
/// without bytecode caches (the vLLM CPU build, `PYTHONDONTWRITEBYTECODE=1`), and longer
/// while the run's instances start beside it. It runs in the background (nothing waits for
/// it but the run's last record), so the limit only bounds a wedged import.
const VLLM_IMPORT_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

impl Environment {
    /// `vllm --version` (its last line). It imports vLLM: 20-30 s on a GPU host.
    ///
    /// `via`: a command line that runs it elsewhere (`srun ... --` on a Slurm node), or empty.
    pub fn vllm_version(
        cmd: &VllmCommand,
        env: &BTreeMap<String, String>,
        via: &[String],
        stop: &dyn Fn() -> bool,
    ) -> Option<String> {
        let mut c = command_via(via, cmd.program());
        c.args(cmd.leading_args()).arg("--version").envs(env);
        probe::output(c, VLLM_IMPORT_LIMIT, stop)
            .and_then(|s| bounded_version(s.lines().last().unwrap_or("").trim()))
    }

    /// `nvidia-smi`'s line per GPU (`index, name, memory, driver`), here or `via` a command
    /// line that runs it on another machine; `None` without nvidia-smi or GPUs.
    pub fn gpu_lines(via: &[String], stop: &dyn Fn() -> bool) -> Option<Vec<String>> {
        let mut c = command_via(via, "nvidia-smi");
        c.args([
            "--query-gpu=index,name,memory.total,driver_version",
            "--format=csv,noheader",
        ]);
        probe::output(c, probe::LIMIT, stop)
            .map(|s| s.lines().map(str::to_owned).collect::<Vec<_>>())
            .filter(|lines| !lines.is_empty())
    }
}

impl Environment {
    /// On Slurm: the allocation's nodes, and the GPUs read on each of them (before any variant
    /// holds them) instead of on this host, which may be a login node. Returns the command
    /// line that runs the vLLM probes on the first node.
    pub fn read_allocation(
        &mut self,
        allocation: &slurm::Allocation,
        stop: &dyn Fn() -> bool,
    ) -> Vec<String> {
        let a = allocation;
        let gpus: Vec<String> = a
            .nodes
            .iter()
            .filter(|n| n.gpus > 0)
            .filter_map(|n| {
                Environment::gpu_lines(&slurm::probe_prefix(&a.job_id, &n.name, n.gpus), stop)
            })
            .flatten()
            .collect();
        self.gpus = serde_json::to_value(gpus)
            .ok()
            .filter(|g| g.as_array().is_some_and(|g| !g.is_empty()))
            .unwrap_or_default();
        self.nodes = a.nodes.iter().map(|n| n.name.clone()).collect();
        a.nodes
            .first()
            .map(|first| slurm::probe_prefix(&a.job_id, &first.name, 0))
            .unwrap_or_default()
    }
}

/// The packages [`Environment::packages`] asks for: vLLM and what it computes with, and what
/// moves the KV between prefill and decode.
const PACKAGES: &[&str] = &[
    "vllm",
    "torch",
    "transformers",
    "triton",
    "flashinfer-python",
    "lmcache",
    "nixl",
    "nixl-cu12",
    "nixl-cu13",
];

/// Bounds on what the interpreter may answer (a hostile or broken one).
const MAX_PACKAGE_NAME: usize = 64;
const MAX_VERSION: usize = 64;

impl Environment {
    /// The versions of [`PACKAGES`] the interpreter that runs `cmd` has installed (empty when
    /// it cannot be found or asked). Imports nothing but the standard library: 0.1 s.
    pub fn python_packages(
        cmd: &VllmCommand,
        env: &BTreeMap<String, String>,
        via: &[String],
        stop: &dyn Fn() -> bool,
    ) -> BTreeMap<String, String> {
        let Some(python) = python_of(cmd, env) else {
            return BTreeMap::new();
        };
        let names = serde_json::to_string(PACKAGES).unwrap_or_default();
        let script = format!(
            "import importlib.metadata as m, json\n\
             out = {{}}\n\
             for n in {names}:\n\
             \x20   try:\n\
             \x20       out[n] = m.version(n)\n\
             \x20   except Exception:\n\
             \x20       pass\n\
             print(json.dumps(out))\n"
        );
        let mut c = command_via(via, &python[0]);
        c.args(&python[1..]).args(["-c", &script]).envs(env);
        probe::output(c, probe::LIMIT, stop)
            .map(|text| parse_packages(&text))
            .unwrap_or_default()
    }
}

/// The interpreter that runs vLLM for `cmd`, with whatever `cmd` puts before it (`nice -n 10`,
/// `taskset`): the first part that is a Python (`python3 -m vllm.entrypoints.cli.main`), or
/// the interpreter the `#!` line of the first part that is a Python script names (the `vllm`
/// console script). `env`'s PATH, if set, finds bare program names.
fn python_of(cmd: &VllmCommand, env: &BTreeMap<String, String>) -> Option<Vec<String>> {
    let parts = cmd.parts();
    for (i, part) in parts.iter().enumerate() {
        if part.starts_with('-') {
            continue;
        }
        let before = &parts[..i];
        if is_python(part) {
            return Some(parts[..=i].to_vec());
        }
        if let Some(words) = python_shebang(part, env) {
            return Some(before.iter().cloned().chain(words).collect());
        }
    }
    None
}

fn is_python(program: &str) -> bool {
    Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("python"))
}

/// The words of `program`'s `#!` line when they run a Python (`/venv/bin/python`,
/// `/usr/bin/env python3`).
fn python_shebang(program: &str, env: &BTreeMap<String, String>) -> Option<Vec<String>> {
    let path = if program.contains('/') {
        std::path::PathBuf::from(program)
    } else {
        let search = env
            .get("PATH")
            .cloned()
            .or_else(|| std::env::var("PATH").ok())?;
        std::env::split_paths(&search)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())?
    };
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .ok()?;
    let first = std::str::from_utf8(head[..n].split(|b| *b == b'\n').next()?).ok()?;
    let words: Vec<String> = first
        .strip_prefix("#!")?
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    is_python(words.last()?).then_some(words)
}

/// The interpreter's answer: a JSON object of name → version on its last line; anything
/// else, or out of bounds, is left out.
fn parse_packages(text: &str) -> BTreeMap<String, String> {
    let Some(Ok(serde_json::Value::Object(map))) = text
        .lines()
        .last()
        .map(serde_json::from_str::<serde_json::Value>)
    else {
        return BTreeMap::new();
    };
    map.into_iter()
        .filter_map(|(name, version)| {
            let version = bounded_version(version.as_str()?)?;
            (PACKAGES.contains(&name.as_str()) && name.len() <= MAX_PACKAGE_NAME)
                .then_some((name, version))
        })
        .collect()
}

/// A version as a program printed it, if it reads as one: short and printable (a broken or
/// hostile program's answer is left out, not recorded).
fn bounded_version(text: &str) -> Option<String> {
    (!text.is_empty() && text.len() <= MAX_VERSION && !text.chars().any(char::is_control))
        .then(|| text.to_owned())
}

/// `program`, or `via` (a command line ending where the program goes) followed by it.
fn command_via(via: &[String], program: &str) -> Command {
    match via.split_first() {
        Some((launcher, args)) => {
            let mut c = Command::new(launcher);
            c.args(args).arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn command_output(program: &str, args: &[&str], stop: &dyn Fn() -> bool) -> Option<String> {
    let mut c = Command::new(program);
    c.args(args);
    probe::output(c, probe::LIMIT, stop)
}

impl Environment {
    /// Where a resume's environment differs from the first attempt's in what the numbers depend
    /// on (versions, host, GPUs), e.g. `vLLM 0.26.0 → 0.26.1`. Time, command and git state are
    /// expected to differ and are left out.
    pub fn differences_from(&self, first: &Environment) -> Vec<String> {
        fn shown(v: &Option<String>) -> &str {
            v.as_deref().unwrap_or("unknown")
        }
        let mut changed = Vec::new();
        let mut field = |what: &str, a: &Option<String>, b: &Option<String>| {
            if a != b {
                changed.push(format!("{what} {} → {}", shown(a), shown(b)));
            }
        };
        field("vLLM", &first.vllm_version, &self.vllm_version);
        field("vbench", &first.vbench_version, &self.vbench_version);
        field("host", &first.host, &self.host);
        let names: std::collections::BTreeSet<&String> =
            first.packages.keys().chain(self.packages.keys()).collect();
        for name in names {
            let (a, b) = (first.packages.get(name), self.packages.get(name));
            if a != b && name != "vllm" {
                changed.push(format!(
                    "{name} {} → {}",
                    a.map_or("absent", String::as_str),
                    b.map_or("absent", String::as_str)
                ));
            }
        }
        if first.gpus != self.gpus {
            let summary = |g: &serde_json::Value| match g {
                serde_json::Value::Array(list) => gpu_summary(list),
                serde_json::Value::Null => "none".to_owned(),
                other => other.to_string(),
            };
            changed.push(format!(
                "GPUs {} → {}",
                summary(&first.gpus),
                summary(&self.gpus)
            ));
        }
        if first.nodes != self.nodes {
            changed.push(format!(
                "Slurm nodes {} → {}",
                first.nodes.join(", "),
                self.nodes.join(", ")
            ));
        }
        changed
    }
}

/// `2 × NVIDIA H200 (143771 MiB)` from nvidia-smi's `index, name, memory, driver` lines
/// (other shapes are shown as they are).
pub fn gpu_summary(gpus: &[serde_json::Value]) -> String {
    // A hand-made record may list anything: the first GPUs_SHOWN entries say enough.
    const GPUS_SHOWN: usize = 1024;
    let mut groups: Vec<(String, usize)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for g in gpus.iter().take(GPUS_SHOWN) {
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
        let desc: String = desc.chars().filter(|c| !c.is_control()).take(200).collect();
        match index.get(&desc) {
            Some(&i) => groups[i].1 += 1,
            None => {
                index.insert(desc.clone(), groups.len());
                groups.push((desc, 1));
            }
        }
    }
    let mut parts: Vec<String> = groups.iter().map(|(d, n)| format!("{n} × {d}")).collect();
    if gpus.len() > GPUS_SHOWN {
        parts.push(format!("{} more not shown", gpus.len() - GPUS_SHOWN));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn command(parts: &[&str]) -> VllmCommand {
        serde_json::from_value(serde_json::json!(parts)).unwrap()
    }

    fn script(dir: &Path, name: &str, text: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    /// A hand-made record with a million GPUs reads in linear time and says what it left out.
    #[test]
    fn a_huge_gpu_list_is_summarised_in_bounds() {
        let gpus: Vec<serde_json::Value> = (0..1_000_000)
            .map(|i| serde_json::json!(format!("{i}, GPU {}, 80 GiB, 1", i % 3)))
            .collect();
        assert_eq!(
            gpu_summary(&gpus),
            "342 × GPU 0 (80 GiB), 341 × GPU 1 (80 GiB), 341 × GPU 2 (80 GiB), 998976 more not shown"
        );
    }

    #[test]
    fn the_interpreter_is_the_program_or_its_shebang_s() {
        let none = BTreeMap::new();
        let python = command(&["python3", "-m", "vllm.entrypoints.cli.main"]);
        assert_eq!(python_of(&python, &none), Some(vec!["python3".to_owned()]));
        let tmp = tempfile::tempdir().unwrap();
        let venv = script(tmp.path(), "vllm", "#!/opt/venv/bin/python\nimport vllm\n");
        assert_eq!(
            python_of(&command(&[&venv]), &none),
            Some(vec!["/opt/venv/bin/python".to_owned()])
        );
        let env = script(tmp.path(), "vllm-env", "#!/usr/bin/env python3.12\n");
        assert_eq!(
            python_of(&command(&[&env]), &none),
            Some(vec!["/usr/bin/env".to_owned(), "python3.12".to_owned()])
        );
        // A bare name is found on the target's PATH.
        let path: BTreeMap<String, String> =
            [("PATH".to_owned(), tmp.path().display().to_string())].into();
        assert_eq!(
            python_of(&command(&["vllm"]), &path),
            Some(vec!["/opt/venv/bin/python".to_owned()])
        );
        // What the command puts before vLLM stays before its interpreter.
        assert_eq!(
            python_of(&command(&["nice", "-n", "10", &venv]), &none),
            Some(
                ["nice", "-n", "10", "/opt/venv/bin/python"]
                    .map(str::to_owned)
                    .to_vec()
            )
        );
        // A shell wrapper, or a binary, is not asked.
        let wrapper = script(tmp.path(), "serve.sh", "#!/bin/bash\nexec vllm \"$@\"\n");
        assert_eq!(python_of(&command(&[&wrapper]), &none), None);
        assert_eq!(python_of(&command(&["/no/such/vllm"]), &none), None);
    }

    /// The interpreter's answer is read from its last line and kept only within bounds: known
    /// names, short printable versions.
    #[test]
    fn package_versions_are_asked_of_the_interpreter_and_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let answer = r#"{"vllm": "0.26.0", "lmcache": "0.5.6", "nixl": 1, "evil": "x", "torch": "2.11.0+cu130\n"}"#;
        let fake = script(
            tmp.path(),
            "python3",
            &format!("#!/bin/sh\necho 'some warning'\nprintf '%s\\n' '{answer}'\n"),
        );
        let found = Environment::python_packages(
            &command(&[&fake, "-m", "vllm"]),
            &BTreeMap::new(),
            &[],
            &|| false,
        );
        let expected: BTreeMap<String, String> = [
            ("lmcache".to_owned(), "0.5.6".to_owned()),
            ("vllm".to_owned(), "0.26.0".to_owned()),
        ]
        .into();
        assert_eq!(found, expected);
        assert_eq!(parse_packages("not json"), BTreeMap::new());
        let long = format!(r#"{{"vllm": "{}"}}"#, "9".repeat(65));
        assert_eq!(parse_packages(&long), BTreeMap::new());
    }
}
