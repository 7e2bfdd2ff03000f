//! Secrets never reach the run folder: every record vbench writes that can carry an
//! environment or a command line goes through here first (see `manifest::secret` for what
//! counts as a secret).

use serde_json::Value;

use crate::manifest::secret;

/// What a secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// `value`, or [`REDACTED`] when `name = value` is a secret.
pub fn env_value(name: &str, value: &str) -> String {
    if secret::is_secret(name, value) {
        REDACTED.to_owned()
    } else {
        value.to_owned()
    }
}

/// A `--set PATH=VALUE` override with its value redacted when the path's last part names a
/// secret or the value looks like one.
pub fn override_text(text: &str) -> String {
    match text.split_once('=') {
        Some((path, value)) => {
            let last = path.rsplit('.').next().unwrap_or(path);
            let unquoted = value.trim().trim_matches('"');
            if secret::is_secret(last.trim(), unquoted) {
                format!("{path}={REDACTED}")
            } else {
                text.to_owned()
            }
        }
        None => text.to_owned(),
    }
}

/// A command line with the values of secret `--set` overrides redacted (`--set P=V` and
/// `--set=P=V`).
pub fn argv(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut after_set = false;
    for a in args {
        if after_set {
            out.push(override_text(a));
            after_set = false;
        } else if let Some(rest) = a.strip_prefix("--set=") {
            out.push(format!("--set={}", override_text(rest)));
        } else {
            after_set = a == "--set";
            out.push(a.clone());
        }
    }
    out
}

/// Redact, anywhere in a JSON record, every `env` object's secret members and every
/// `overrides` list's secret values.
pub fn json(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match (key.as_str(), &mut *v) {
                    ("env", Value::Object(env)) => {
                        for (name, val) in env.iter_mut() {
                            let text = match &*val {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            if secret::is_secret(name, &text) {
                                *val = Value::String(REDACTED.to_owned());
                            }
                        }
                    }
                    ("overrides", Value::Array(list)) => {
                        for item in list.iter_mut() {
                            if let Value::String(s) = item {
                                *s = override_text(s);
                            }
                        }
                    }
                    _ => json(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(json),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_objects_overrides_and_command_lines_lose_their_secrets() {
        let mut v = serde_json::json!({
            "variant": {"roles": [{"env": {"HF_TOKEN": "hf_x", "MY_PASSWD": "p", "AUTH_HEADER": "Bearer y", "X": "Bearer z", "CUDA_VISIBLE_DEVICES": "0"}}]},
            "overrides": ["target.env.MY_PASSWD=\"p\"", "load.rates=[1]"],
            "max_num_batched_tokens": 8192,
        });
        json(&mut v);
        let env = &v["variant"]["roles"][0]["env"];
        for k in ["HF_TOKEN", "MY_PASSWD", "AUTH_HEADER", "X"] {
            assert_eq!(env[k], REDACTED, "{k}");
        }
        assert_eq!(env["CUDA_VISIBLE_DEVICES"], "0");
        assert_eq!(v["overrides"][0], "target.env.MY_PASSWD=<redacted>");
        assert_eq!(v["overrides"][1], "load.rates=[1]");
        assert_eq!(
            v["max_num_batched_tokens"], 8192,
            "only env maps are touched"
        );
        let args: Vec<String> = [
            "vbench",
            "apply",
            "m.toml",
            "--set",
            "target.env.HF_TOKEN=abc",
            "--set=load.rates=[2]",
            "--set=deployment.0.env.API_KEY=k",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            argv(&args)[4..],
            [
                "target.env.HF_TOKEN=<redacted>",
                "--set=load.rates=[2]",
                "--set=deployment.0.env.API_KEY=<redacted>"
            ]
        );
    }
}
