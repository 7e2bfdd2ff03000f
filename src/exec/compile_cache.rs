//! The compile-cache folder vLLM instances share (`target.compile_cache`).
//!
//! vLLM's start-up is dominated by torch.compile and kernel JIT; every one of those caches keys
//! its entries by a hash of what it compiled (vLLM: model, parallel and compilation config and
//! its own source; Inductor and Triton: graph, torch/Triton version, device; CUDA: PTX and
//! driver), so one folder serves every TP size, role, variant and run without mix-ups. The
//! `vllm_env` template points each cache into it. Concurrent writers are safe with vLLM releases
//! since the end of 2025 (compile artifacts saved as single files, written atomically) and
//! torch >= 2.10 (Inductor artifacts written atomically); older versions should use `"off"` or
//! a folder per deployment (see docs/real-vllm.md).

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The manifest's word for "vLLM's own defaults".
const OFF: &str = "off";
/// The manifest's word for vbench's default folder (also what an absent key means).
const AUTO: &str = "auto";

/// The folder for `setting` (`None`, `"auto"`, `"off"` or a path relative to `manifest_dir`);
/// `None` when caching is off. `"auto"` is `compile/` in vbench's cache folder. `env` looks up
/// vbench's environment (a parameter for tests).
pub fn resolve(
    setting: Option<&str>,
    manifest_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<PathBuf>> {
    let nonempty = |name: &str| env(name).filter(|v| !v.is_empty());
    let dir = match setting.unwrap_or(AUTO) {
        OFF => return Ok(None),
        AUTO => {
            let root = if let Some(dir) = nonempty("VBENCH_CACHE_DIR") {
                PathBuf::from(dir)
            } else if let Some(xdg) = nonempty("XDG_CACHE_HOME") {
                Path::new(&xdg).join("vbench")
            } else if let Some(home) = nonempty("HOME") {
                Path::new(&home).join(".cache").join("vbench")
            } else {
                anyhow::bail!(
                    "target.compile_cache = \"auto\" needs VBENCH_CACHE_DIR, XDG_CACHE_HOME or \
                     HOME; none is set (give a folder, or \"off\")"
                );
            };
            root.join("compile")
        }
        path => manifest_dir.join(path),
    };
    // vLLM resolves its cache paths against its own working directory: give it an absolute one.
    Ok(Some(std::path::absolute(&dir).unwrap_or(dir)))
}

/// Create the folder (before anything is launched): a cache that cannot be written would make
/// every instance compile again, or fail.
pub fn prepare(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the compile cache {}", dir.display()))?;
    tempfile::NamedTempFile::new_in(dir).with_context(|| {
        format!(
            "the compile cache {} is not writable (target.compile_cache)",
            dir.display()
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn auto_prefers_vbench_then_xdg_then_home() {
        let m = Path::new("/exp");
        let all = [
            ("VBENCH_CACHE_DIR", "/v"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(
            resolve(None, m, &env_of(&all)).unwrap(),
            Some(PathBuf::from("/v/compile"))
        );
        assert_eq!(
            resolve(Some("auto"), m, &env_of(&all[1..])).unwrap(),
            Some(PathBuf::from("/x/vbench/compile"))
        );
        assert_eq!(
            resolve(None, m, &env_of(&[("XDG_CACHE_HOME", ""), ("HOME", "/h")])).unwrap(),
            Some(PathBuf::from("/h/.cache/vbench/compile"))
        );
        assert!(resolve(None, m, &env_of(&[])).is_err());
    }

    #[test]
    fn off_and_paths() {
        let m = Path::new("/exp");
        assert_eq!(resolve(Some("off"), m, &env_of(&[])).unwrap(), None);
        assert_eq!(
            resolve(Some("cache"), m, &env_of(&[])).unwrap(),
            Some(PathBuf::from("/exp/cache"))
        );
        assert_eq!(
            resolve(Some("/abs"), m, &env_of(&[])).unwrap(),
            Some(PathBuf::from("/abs"))
        );
    }

    #[test]
    fn an_unwritable_cache_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = prepare(&file.join("sub")).unwrap_err();
        assert!(format!("{err:#}").contains("compile cache"), "{err:#}");
    }
}
