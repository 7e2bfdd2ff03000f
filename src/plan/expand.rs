//! Deployments → variants: the cartesian product of each deployment's list-valued fields.
//!
//! Order (documented in the README and pinned by tests): deployments in file order; within one
//! deployment, nested loops over the axes in the order of `AXES_*` below, the last axis
//! varying fastest, each list in the order written.

use std::collections::BTreeMap;

use serde_json::json;

use crate::manifest::{
    defaults, Deployment, LoadedManifest, ManifestError, Mode, OneOrMany, ProxyKind, Role, Seg,
    TEMPLATE_NAMES,
};
use crate::path;

use super::variant::{self, RoleKind, RoleSpec, Variant};
use super::SweepValues;

/// One sweep axis of one deployment: its name, where it is in the manifest, its values.
struct Axis {
    name: &'static str,
    path: Vec<Seg>,
    values: Vec<serde_json::Value>,
    /// The manifest gave the values (else a default, or null for "inherit").
    given: bool,
}

fn axis<T: Clone + serde::Serialize>(
    name: &'static str,
    path: Vec<Seg>,
    field: &Option<OneOrMany<T>>,
    default: Option<T>,
) -> Axis {
    let values = match (field, default) {
        (Some(v), _) => v.values().iter().map(|x| json!(x)).collect(),
        (None, Some(d)) => vec![json!(d)],
        (None, None) => vec![serde_json::Value::Null],
    };
    Axis {
        name,
        path,
        values,
        given: field.is_some(),
    }
}

pub(super) fn variants(loaded: &LoadedManifest) -> Result<Vec<Variant>, ManifestError> {
    let m = &loaded.manifest;
    let mut out: Vec<Variant> = Vec::new();
    for (index, dep) in m.deployments.iter().enumerate() {
        check_mode_fields(loaded, index, dep)?;
        let axes = axes_of(index, dep);
        check_axis_values(loaded, &axes)?;

        let lens: Vec<usize> = axes.iter().map(|a| a.values.len()).collect();
        for combo in odometer(&lens) {
            let pick: BTreeMap<&str, &serde_json::Value> = axes
                .iter()
                .zip(&combo)
                .map(|(a, &i)| (a.name, &a.values[i]))
                .collect();
            let sweep: SweepValues = axes
                .iter()
                .zip(&combo)
                .filter(|(a, _)| a.values.len() > 1)
                .map(|(a, &i)| (a.name.to_owned(), a.values[i].clone()))
                .collect();
            let v = build(loaded, index, dep, &pick, sweep);
            if let Some(prev) = out.iter().find(|p| p.id == v.id) {
                return Err(loaded.error_at(
                    path!["deployment", index],
                    format!(
                        "this deployment repeats variant `{}` ({}), already produced by deployment {}",
                        v.id, v.label, prev.deployment_index
                    ),
                    Some("remove the duplicate value or deployment; each variant runs once".into()),
                ));
            }
            out.push(v);
        }
    }
    Ok(out)
}

fn axes_of(index: usize, dep: &Deployment) -> Vec<Axis> {
    let d = |k: &'static str| path!["deployment", index, k];
    let r = |role: &'static str, k: &'static str| path!["deployment", index, role, k];
    let mut axes = Vec::new();
    match dep.mode {
        Mode::Simple => {
            axes.push(axis(
                "replicas",
                d("replicas"),
                &dep.replicas,
                Some(defaults::INSTANCES),
            ));
            axes.push(axis("tp", d("tp"), &dep.tp, Some(defaults::TP)));
        }
        Mode::Nixl | Mode::Lmcache => {
            let empty = Role::default();
            let p = dep.prefill.as_ref().unwrap_or(&empty);
            let q = dep.decode.as_ref().unwrap_or(&empty);
            axes.push(axis(
                "prefill.instances",
                r("prefill", "instances"),
                &p.instances,
                Some(defaults::INSTANCES),
            ));
            axes.push(axis(
                "prefill.tp",
                r("prefill", "tp"),
                &p.tp,
                Some(defaults::TP),
            ));
            axes.push(axis(
                "prefill.gpu_memory_utilization",
                r("prefill", "gpu_memory_utilization"),
                &p.gpu_memory_utilization,
                None,
            ));
            axes.push(axis(
                "decode.instances",
                r("decode", "instances"),
                &q.instances,
                Some(defaults::INSTANCES),
            ));
            axes.push(axis(
                "decode.tp",
                r("decode", "tp"),
                &q.tp,
                Some(defaults::TP),
            ));
            axes.push(axis(
                "decode.gpu_memory_utilization",
                r("decode", "gpu_memory_utilization"),
                &q.gpu_memory_utilization,
                None,
            ));
        }
    }
    axes.push(axis(
        "gpu_memory_utilization",
        d("gpu_memory_utilization"),
        &dep.gpu_memory_utilization,
        Some(defaults::GPU_MEMORY_UTILIZATION),
    ));
    axes.push(axis(
        "max_model_len",
        d("max_model_len"),
        &dep.max_model_len,
        None,
    ));
    axes.push(axis(
        "max_num_seqs",
        d("max_num_seqs"),
        &dep.max_num_seqs,
        None,
    ));
    axes.push(axis(
        "max_num_batched_tokens",
        d("max_num_batched_tokens"),
        &dep.max_num_batched_tokens,
        None,
    ));
    axes.push(axis(
        "proxy",
        d("proxy"),
        &dep.proxy,
        Some(ProxyKind::Builtin),
    ));
    axes
}

/// All index combinations of lists with these lengths, last index fastest.
fn odometer(lens: &[usize]) -> Vec<Vec<usize>> {
    let mut out = vec![vec![]];
    for &len in lens {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                (0..len).map(move |i| {
                    let mut p = prefix.clone();
                    p.push(i);
                    p
                })
            })
            .collect();
    }
    out
}

/// Fields that do not belong to a deployment's mode are errors, not silently ignored.
fn check_mode_fields(
    loaded: &LoadedManifest,
    index: usize,
    dep: &Deployment,
) -> Result<(), ManifestError> {
    let at = |k: &str, msg: String, help: &str| {
        Err(loaded.error_at(path!["deployment", index, k], msg, Some(help.to_owned())))
    };
    match dep.mode {
        Mode::Simple => {
            if dep.prefill.is_some() || dep.decode.is_some() {
                let k = if dep.prefill.is_some() {
                    "prefill"
                } else {
                    "decode"
                };
                return at(k, format!("mode \"simple\" has no `{k}` instances"), "use `tp` and `replicas` for simple, or mode = \"nixl\" / \"lmcache\" for disaggregation");
            }
            if dep.nixl.is_some() || dep.lmcache.is_some() {
                let k = if dep.nixl.is_some() {
                    "nixl"
                } else {
                    "lmcache"
                };
                return at(
                    k,
                    format!("[{k}] options do not apply to mode \"simple\""),
                    "remove them, or change the mode",
                );
            }
        }
        Mode::Nixl | Mode::Lmcache => {
            if dep.tp.is_some() || dep.replicas.is_some() {
                let k = if dep.tp.is_some() { "tp" } else { "replicas" };
                return at(
                    k,
                    format!("mode \"{}\" has no top-level `{k}`", dep.mode),
                    "set it per role: prefill = { instances = 1, tp = 1 } and decode = { ... }",
                );
            }
            let wrong = if dep.mode == Mode::Nixl {
                "lmcache"
            } else {
                "nixl"
            };
            let present = if dep.mode == Mode::Nixl {
                dep.lmcache.is_some()
            } else {
                dep.nixl.is_some()
            };
            if present {
                return at(
                    wrong,
                    format!("[{wrong}] options do not apply to mode \"{}\"", dep.mode),
                    "remove them, or change the mode",
                );
            }
        }
    }
    if let Some(wait) = dep.lmcache.as_ref().and_then(|l| l.kv_wait_s) {
        if !crate::manifest::limits::is_wait(wait, false) {
            return Err(loaded.error_at(
                path!["deployment", index, "lmcache", "kv_wait_s"],
                format!(
                    "kv_wait_s must be a positive number of seconds, at most {} (a week), got \
                     {}",
                    crate::manifest::limits::MAX_WAIT_S,
                    crate::manifest::limits::show(wait)
                ),
                Some("the default is 30".into()),
            ));
        }
    }
    check_templates(loaded, index, dep)?;
    if let Some(proxies) = &dep.proxy {
        for (i, p) in proxies.values().iter().enumerate() {
            if *p == ProxyKind::Lmcache {
                return Err(loaded.error_at(
                    path!["deployment", index, "proxy", i],
                    "proxy \"lmcache\" (LMCache's disagg_proxy_server.py) is not supported: the \
                     lmcache wheel does not ship it",
                    Some(
                        "leave `proxy` out: vbench's built-in proxy speaks LMCache's PD protocol \
                         (first token from the prefiller, the KV-ready notification over ZMQ)"
                            .into(),
                    ),
                ));
            }
            let ok = match p {
                ProxyKind::Builtin => true,
                ProxyKind::VllmRouter => dep.mode == Mode::Nixl,
                ProxyKind::Lmcache => dep.mode == Mode::Lmcache,
            };
            if !ok {
                return Err(loaded.error_at(
                    path!["deployment", index, "proxy", i],
                    format!("proxy \"{}\" cannot front mode \"{}\"", p.as_str(), dep.mode),
                    Some(match p {
                        ProxyKind::VllmRouter => "vllm-router speaks the NixlConnector protocol: use it with mode = \"nixl\"".into(),
                        _ => "LMCache's proxy only works with mode = \"lmcache\"".into(),
                    }),
                ));
            }
        }
    }
    if dep.mode == Mode::Lmcache && loaded.manifest.load.api == crate::manifest::Api::Chat {
        return Err(loaded.error_at(
            path!["load", "api"],
            "mode \"lmcache\" needs the completions API (its proxy reads `max_tokens`)",
            Some("set api = \"completions\"".into()),
        ));
    }
    Ok(())
}

fn check_axis_values(loaded: &LoadedManifest, axes: &[Axis]) -> Result<(), ManifestError> {
    for a in axes {
        for (i, v) in a.values.iter().enumerate() {
            let mut p = a.path.clone();
            p.push(Seg::Index(i));
            let fail = |msg: String, help: &str| {
                Err(loaded.error_at(p.clone(), msg, Some(help.to_owned())))
            };
            let leaf = a.name.rsplit('.').next().unwrap_or(a.name);
            match (leaf, v.as_f64()) {
                ("tp", Some(n)) if n < 1.0 || !(n as u64).is_power_of_two() => {
                    return fail(
                        format!("{} = {n} is not a valid tensor-parallel size", a.name),
                        "vLLM splits attention heads evenly across GPUs: use 1, 2, 4 or 8",
                    )
                }
                ("instances" | "replicas", Some(n)) if n < 1.0 => {
                    return fail(
                        format!("{} = {n}: at least one instance is needed", a.name),
                        "use 1 or more",
                    )
                }
                // NaN and infinities arrive as null (JSON has no such numbers).
                ("gpu_memory_utilization", f)
                    if a.given && !f.is_some_and(|f| f > 0.0 && f <= 1.0) =>
                {
                    return fail(
                        format!(
                            "{} = {} is not a fraction of GPU memory",
                            a.name,
                            f.map_or("a non-finite number".to_owned(), |f| f.to_string())
                        ),
                        "use a value in (0, 1], e.g. 0.8 (the original suite's default)",
                    )
                }
                ("max_model_len" | "max_num_seqs" | "max_num_batched_tokens", Some(n))
                    if n < 1.0 =>
                {
                    return fail(format!("{} = {n} must be at least 1", a.name), "")
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn build(
    loaded: &LoadedManifest,
    index: usize,
    dep: &Deployment,
    pick: &BTreeMap<&str, &serde_json::Value>,
    sweep: SweepValues,
) -> Variant {
    let m = &loaded.manifest;
    let u32_of = |k: &str| pick.get(k).and_then(|v| v.as_u64()).map(|n| n as u32);
    let f64_of = |k: &str| pick.get(k).and_then(|v| v.as_f64());
    let shared_gmu = f64_of("gpu_memory_utilization").unwrap_or(defaults::GPU_MEMORY_UTILIZATION);

    let role = |kind: RoleKind, instances: u32, tp: u32, gmu: Option<f64>, own: Option<&Role>| {
        let mut extra_args = dep.extra_args.clone();
        // Target-wide environment, then the deployment's, then the role's: the narrower wins.
        let mut env = m.target.env.clone();
        env.extend(dep.env.clone());
        if let Some(r) = own {
            extra_args.extend(r.extra_args.iter().cloned());
            env.extend(r.env.clone());
        }
        RoleSpec {
            role: kind,
            instances,
            tp,
            gpu_memory_utilization: gmu.unwrap_or(shared_gmu),
            extra_args,
            env,
        }
    };
    let roles = match dep.mode {
        Mode::Simple => vec![role(
            RoleKind::Serve,
            u32_of("replicas").unwrap_or(1),
            u32_of("tp").unwrap_or(1),
            None,
            None,
        )],
        Mode::Nixl | Mode::Lmcache => vec![
            role(
                RoleKind::Prefill,
                u32_of("prefill.instances").unwrap_or(1),
                u32_of("prefill.tp").unwrap_or(1),
                f64_of("prefill.gpu_memory_utilization"),
                dep.prefill.as_ref(),
            ),
            role(
                RoleKind::Decode,
                u32_of("decode.instances").unwrap_or(1),
                u32_of("decode.tp").unwrap_or(1),
                f64_of("decode.gpu_memory_utilization"),
                dep.decode.as_ref(),
            ),
        ],
    };
    let proxy = pick
        .get("proxy")
        .and_then(|v| serde_json::from_value::<ProxyKind>((*v).clone()).ok())
        .unwrap_or(ProxyKind::Builtin);
    let nixl = (dep.mode == Mode::Nixl).then(|| dep.nixl.clone().unwrap_or_default());
    let lmcache = (dep.mode == Mode::Lmcache).then(|| dep.lmcache.clone().unwrap_or_default());
    let topology = variant::topology(dep.mode, &roles);
    let gpus = roles.iter().map(RoleSpec::gpus).sum();

    // Everything that changes what runs; not the label, not the deployment's position.
    let identity = json!({
        "model": m.model,
        "served_model_name": m.served_model_name,
        "backend": m.target.backend,
        "accelerator": m.target.accelerator,
        "sim_profile": m.target.sim_profile,
        "mode": dep.mode,
        "roles": roles,
        "proxy": proxy,
        "max_model_len": u32_of("max_model_len"),
        "max_num_seqs": u32_of("max_num_seqs"),
        "max_num_batched_tokens": u32_of("max_num_batched_tokens"),
        "load_format": dep.load_format,
        "nixl": nixl,
        "lmcache": lmcache,
        "templates": dep.templates,
    });
    let id = variant::variant_id(dep.mode, &roles, &identity);
    const TOPOLOGY_AXES: [&str; 6] = [
        "replicas",
        "tp",
        "prefill.instances",
        "prefill.tp",
        "decode.instances",
        "decode.tp",
    ];
    let mut label = match &dep.label {
        Some(l) if sweep.keys().any(|k| TOPOLOGY_AXES.contains(&k.as_str())) => {
            format!("{l} {topology}")
        }
        Some(l) => l.clone(),
        None => format!("{} {topology}", dep.mode),
    };
    // Axes the topology does not show still tell variants apart.
    for (k, v) in sweep
        .iter()
        .filter(|(k, _)| !TOPOLOGY_AXES.contains(&k.as_str()))
    {
        let shown = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        label.push_str(&format!(" {k}={shown}"));
    }
    Variant {
        id,
        label,
        deployment_index: index,
        mode: dep.mode,
        topology,
        roles,
        proxy,
        max_model_len: u32_of("max_model_len"),
        max_num_seqs: u32_of("max_num_seqs"),
        max_num_batched_tokens: u32_of("max_num_batched_tokens"),
        load_format: dep.load_format.clone(),
        nixl,
        lmcache,
        templates: dep.templates.clone(),
        sweep,
        gpus,
    }
}

/// A deployment's template overrides name built-in templates and point at readable
/// handlebars files, or `plan` says which one does not (before `apply` launches anything).
fn check_templates(
    loaded: &LoadedManifest,
    index: usize,
    dep: &Deployment,
) -> Result<(), ManifestError> {
    for (name, file) in &dep.templates {
        let at = || path!["deployment", index, "templates", name.as_str()];
        if !TEMPLATE_NAMES.contains(&name.as_str()) {
            return Err(loaded.error_at(
                at(),
                format!("unknown template `{name}`"),
                Some(format!("the templates are {}", TEMPLATE_NAMES.join(", "))),
            ));
        }
        let path = loaded.base_dir().join(file);
        let text = crate::bounded_file::read_text(&path, crate::bounded_file::MAX_TEXT_BYTES)
            .map_err(|e| {
                loaded.error_at(
                    at(),
                    format!("cannot read template {}: {e}", path.display()),
                    Some("paths are relative to the manifest's folder".into()),
                )
            })?;
        if let Err(e) = handlebars::Template::compile(&text) {
            return Err(loaded.error_at(
                at(),
                format!("template {} does not parse: {e}", path.display()),
                None,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::odometer;

    #[test]
    fn odometer_varies_last_axis_fastest() {
        assert_eq!(
            odometer(&[2, 1, 3]),
            vec![
                vec![0, 0, 0],
                vec![0, 0, 1],
                vec![0, 0, 2],
                vec![1, 0, 0],
                vec![1, 0, 1],
                vec![1, 0, 2]
            ]
        );
        assert_eq!(odometer(&[]), vec![Vec::<usize>::new()]);
    }
}
