//! Launch templates (handlebars) shipped inside vbench; a deployment may override any of them
//! by name (`templates = { vllm_serve = "my_serve.hbs" }`), so a user whose vLLM version
//! differs can fix a flag without a new release.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use handlebars::Handlebars;
use serde::Serialize;

/// Built-in templates: (name, text).
pub const BUILTIN: &[(&str, &str)] = &[
    ("vllm_serve", include_str!("templates/vllm_serve.hbs")),
    ("vllm_env", include_str!("templates/vllm_env.hbs")),
    ("sim_serve", include_str!("templates/sim_serve.hbs")),
    ("proxy_builtin", include_str!("templates/proxy_builtin.hbs")),
    (
        "proxy_vllm_router",
        include_str!("templates/proxy_vllm_router.hbs"),
    ),
    (
        "lmcache_prefiller_yaml",
        include_str!("templates/lmcache_prefiller.yaml.hbs"),
    ),
    (
        "lmcache_decoder_yaml",
        include_str!("templates/lmcache_decoder.yaml.hbs"),
    ),
];

/// The templates one deployment uses: built-ins with its overrides applied.
pub struct Templates {
    registry: Handlebars<'static>,
}

impl Templates {
    /// `overrides` maps template names to files, relative to `base_dir` (the manifest's folder).
    pub fn new(overrides: &BTreeMap<String, PathBuf>, base_dir: &Path) -> anyhow::Result<Self> {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        for (name, text) in BUILTIN {
            registry
                .register_template_string(name, *text)
                .with_context(|| format!("built-in template {name}"))?;
        }
        for (name, file) in overrides {
            if !BUILTIN.iter().any(|(n, _)| n == name) {
                let known: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
                return Err(anyhow!(
                    "unknown template `{name}` in deployment.templates; known: {}",
                    known.join(", ")
                ));
            }
            let path = base_dir.join(file);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading template override {}", path.display()))?;
            registry
                .register_template_string(name, text)
                .with_context(|| format!("template override {} does not parse", path.display()))?;
        }
        Ok(Templates { registry })
    }

    pub fn render(&self, name: &str, context: &impl Serialize) -> anyhow::Result<String> {
        self.registry
            .render(name, context)
            .with_context(|| format!("rendering template `{name}`"))
    }

    /// Render an argument-list template: one argument per non-empty line.
    pub fn args(&self, name: &str, context: &impl Serialize) -> anyhow::Result<Vec<String>> {
        Ok(self
            .render(name, context)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Render an environment template: `KEY=VALUE` per non-empty line.
    pub fn env(
        &self,
        name: &str,
        context: &impl Serialize,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        self.render(name, context)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                    .ok_or_else(|| anyhow!("template `{name}` produced {l:?}, expected KEY=VALUE"))
            })
            .collect()
    }
}
