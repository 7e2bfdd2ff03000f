//! `inputs.json`: fingerprints of the files a run's workload is built from (the dataset file
//! and a local tokenizer). The manifest's text alone does not pin the workload: a dataset
//! file rewritten between `apply` and `apply --resume` would mix two workloads in one run,
//! its rates drawn from different prompts, and the report would draw them as one curve.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::manifest::LoadedManifest;

/// Dataset files are at most this large (the dataset reader's bound).
const MAX_INPUT_BYTES: u64 = 4 << 30;

/// One input file as it was when the run started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    /// `dataset` or `tokenizer`.
    pub role: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
}

/// The run's input files, by role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    pub files: Vec<InputFile>,
}

impl Inputs {
    /// Fingerprint the files `loaded` builds its workload from (none for a purely synthetic
    /// workload without a local tokenizer).
    pub fn of(loaded: &LoadedManifest) -> anyhow::Result<Inputs> {
        let m = &loaded.manifest;
        let base = loaded.base_dir();
        let mut files = Vec::new();
        if let Some(path) = &m.dataset.path {
            files.push(fingerprint("dataset", &base.join(path))?);
        }
        // The tokenizer as the simulator is given it: a local file or folder (a model id is
        // the Hub's, fixed by its revision).
        if let Some(local) = crate::exec::deploy::local_tokenizer(m, base) {
            let local = PathBuf::from(local);
            let file = if local.is_dir() {
                local.join("tokenizer.json")
            } else {
                local
            };
            if file.is_file() {
                files.push(fingerprint("tokenizer", &file)?);
            }
        }
        Ok(Inputs { files })
    }

    /// What changed from `then` (the run's start) to `self` (now), one line per file; empty
    /// when nothing did.
    pub fn changes_since(&self, then: &Inputs) -> Vec<String> {
        let mut out = Vec::new();
        for old in &then.files {
            match self.files.iter().find(|f| f.role == old.role) {
                None => out.push(format!(
                    "the {} {} is no longer used or found",
                    old.role,
                    old.path.display()
                )),
                Some(new) if new.sha256 != old.sha256 || new.path != old.path => out.push(format!(
                    "the {} changed: {} ({} bytes, sha256 {}…) at the start, {} ({} bytes, \
                         sha256 {}…) now",
                    old.role,
                    old.path.display(),
                    old.bytes,
                    &old.sha256[..12.min(old.sha256.len())],
                    new.path.display(),
                    new.bytes,
                    &new.sha256[..12.min(new.sha256.len())]
                )),
                Some(_) => {}
            }
        }
        for new in &self.files {
            if !then.files.iter().any(|f| f.role == new.role) {
                out.push(format!(
                    "the {} {} was not used at the start",
                    new.role,
                    new.path.display()
                ));
            }
        }
        out
    }
}

fn fingerprint(role: &str, path: &Path) -> anyhow::Result<InputFile> {
    let (mut file, meta) = crate::bounded_file::open_bounded(path, MAX_INPUT_BYTES)
        .map_err(|why| anyhow::anyhow!("the {role} file: {why}"))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .map_err(|e| anyhow::anyhow!("reading the {role} file {}: {e}", path.display()))?;
    let digest = hasher.finalize();
    Ok(InputFile {
        role: role.to_owned(),
        path: std::path::absolute(path).unwrap_or_else(|_| path.to_owned()),
        bytes: meta.len(),
        sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_dataset_is_named_with_both_fingerprints() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("d.jsonl");
        std::fs::write(&data, "{\"prompt\": \"a\"}\n").unwrap();
        let manifest = dir.path().join("m.toml");
        let text = "name = \"t\"\nmodel = \"m\"\n[dataset]\nkind = \"jsonl\"\npath = \"d.jsonl\"\n\
                    [load]\nrates = [1]\nnum_prompts = 1\n[target]\nbackend = \"sim\"\n\
                    [[deployment]]\nmode = \"simple\"\n";
        std::fs::write(&manifest, text).unwrap();
        let loaded = crate::manifest::load(&manifest, &[]).unwrap();
        let then = Inputs::of(&loaded).unwrap();
        assert_eq!(then.files.len(), 1);
        assert!(Inputs::of(&loaded).unwrap().changes_since(&then).is_empty());
        std::fs::write(&data, "{\"prompt\": \"b\"}\n").unwrap();
        let changes = Inputs::of(&loaded).unwrap().changes_since(&then);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert!(
            changes[0].starts_with("the dataset changed: "),
            "{changes:?}"
        );
    }
}
