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
    ("fatal_lines", include_str!("templates/fatal_lines.txt")),
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
            let text = crate::bounded_file::read_text(&path, crate::bounded_file::MAX_TEXT_BYTES)
                .map_err(|why| anyhow!("template override {}: {why}", path.display()))?;
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

    /// The `fatal_lines` template: plain-text patterns, one per line, `#` comments skipped.
    pub fn fatal_lines(&self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .render("fatal_lines", &serde_json::json!({}))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect())
    }

    /// Render an argument-list template: one argument per non-empty line of the template.
    /// A value is never split or trimmed, whatever it holds (see [`Masked`]).
    pub fn args(&self, name: &str, context: &impl Serialize) -> anyhow::Result<Vec<String>> {
        let masked = Masked::new(context)?;
        self.render(name, &masked.context)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| masked.unmask(l))
            .collect()
    }

    /// Render an environment template: `KEY=VALUE` per non-empty line.
    pub fn env(
        &self,
        name: &str,
        context: &impl Serialize,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let masked = Masked::new(context)?;
        self.render(name, &masked.context)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (k, v) = l.split_once('=').ok_or_else(|| {
                    anyhow!("template `{name}` produced {l:?}, expected KEY=VALUE")
                })?;
                Ok((masked.unmask(k.trim())?, masked.unmask(v.trim())?))
            })
            .collect()
    }
}

/// A template context whose risky strings are replaced by placeholders until the rendered
/// text has been cut into lines: a value with a line break or surrounding whitespace (which
/// the manifest refuses, but a template context may get from elsewhere) then stays one
/// argument, exactly as given. Ordinary strings are left in place, so a template can still
/// compare them (`{{#if (eq mode "nixl")}}`).
struct Masked {
    context: serde_json::Value,
    values: Vec<String>,
}

/// Placeholder delimiters: private-use characters that no template or ordinary value holds.
const OPEN: char = '\u{F0001}';
const CLOSE: char = '\u{F0002}';

impl Masked {
    fn new(context: &impl Serialize) -> anyhow::Result<Masked> {
        let mut masked = Masked {
            context: serde_json::to_value(context)?,
            values: Vec::new(),
        };
        let mut context = std::mem::take(&mut masked.context);
        masked.mask(&mut context);
        masked.context = context;
        Ok(masked)
    }

    fn mask(&mut self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) if Self::risky(s) => {
                let placeholder = format!("{OPEN}{}{CLOSE}", self.values.len());
                self.values.push(std::mem::replace(s, placeholder));
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.mask(v)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| self.mask(v)),
            _ => {}
        }
    }

    fn risky(s: &str) -> bool {
        s.chars().any(|c| c.is_control() || c == OPEN || c == CLOSE) || s.trim() != s
    }

    /// `line` with each placeholder replaced by its value (values are not scanned again).
    fn unmask(&self, line: &str) -> anyhow::Result<String> {
        let mut out = String::with_capacity(line.len());
        let mut rest = line;
        while let Some(start) = rest.find(OPEN) {
            out.push_str(&rest[..start]);
            let after = &rest[start + OPEN.len_utf8()..];
            let end = after
                .find(CLOSE)
                .ok_or_else(|| anyhow!("a template line cut a value in two: {line:?}"))?;
            let index: usize = after[..end]
                .parse()
                .map_err(|_| anyhow!("a template line holds a stray placeholder: {line:?}"))?;
            let value = self
                .values
                .get(index)
                .ok_or_else(|| anyhow!("a template line holds a stray placeholder: {line:?}"))?;
            out.push_str(value);
            rest = &after[end + CLOSE.len_utf8()..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `plan` checks overrides against the manifest's list of names: it must be these.
    #[test]
    fn the_manifest_names_every_built_in_template() {
        let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, crate::manifest::TEMPLATE_NAMES);
    }

    #[test]
    fn a_value_with_line_breaks_or_spaces_stays_one_argument_exactly() {
        let t = Templates::new(&BTreeMap::new(), Path::new(".")).unwrap();
        let ctx = serde_json::json!({
            "host": "127.0.0.1", "port": 8000, "sim_role": "both", "tp": 1,
            "served_model_name": "m\n--fail-fraction\n1",
            "is_lmcache": false, "sim_tokenizer": " tok ", "sim_profile": "",
            "extra_args": ["--x", "a\r\nb"],
        });
        let args = t.args("sim_serve", &ctx).unwrap();
        assert_eq!(
            args,
            [
                "sim-serve",
                "--host",
                "127.0.0.1",
                "--port",
                "8000",
                "--role",
                "both",
                "--model",
                "m\n--fail-fraction\n1",
                "--tp",
                "1",
                "--tokenizer",
                " tok ",
                "--x",
                "a\r\nb",
            ]
        );
        let env = t
            .env(
                "vllm_env",
                &serde_json::json!({"host": "127.0.0.1", "cuda_visible_devices": "0,\n1",
                    "cpu_bind": "", "is_nixl": false, "is_lmcache": false}),
            )
            .unwrap();
        assert_eq!(env["CUDA_VISIBLE_DEVICES"], "0,\n1");
    }
}
