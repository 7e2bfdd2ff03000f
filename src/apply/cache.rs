//! What the servers' KV caches did during a cell: what they reused (their prompt-token
//! counters before and after it, per role, beside what the prompts themselves allowed,
//! `load::cache_reuse`), what NIXL moved between them, and how full they got.

use std::collections::BTreeMap;

use super::warnings;
use crate::exec::metrics::{self, CacheCounters, KvCacheConfig, NixlCounters, Sample};
use crate::load::result::{
    CacheReuse, IdealReuse, KvCache, KvTransfer, RoleCacheReuse, RoleKvCache, VbenchSection,
};

/// The servers' `/metrics` around one cell (or one `vbench bench` load).
pub struct ServerMetrics<'s> {
    /// Each instance's role as the results name it (`instance`, `prefill`, `decode`).
    pub roles: &'s BTreeMap<String, &'static str>,
    /// Each instance's `/metrics` before and after.
    pub before: &'s BTreeMap<String, String>,
    pub after: &'s BTreeMap<String, String>,
    /// Their gauges, sampled every second while it ran.
    pub samples: &'s [Sample],
}

/// What the servers' metrics merit saying about a cell.
#[derive(Debug, Default)]
pub struct Said {
    /// Facts without alarm (the reuse a workload built to reuse got).
    pub notes: Vec<String>,
    pub warnings: Vec<String>,
}

/// Prompt reuse, NIXL transfers and the KV caches of a cell, into its result, with what they
/// merit saying (`apply` and `vbench bench --server-metrics` alike). `ideal`: what the prompts
/// allowed; `reuses`: the workload shares prefixes on purpose, so its reuse is a note, not a
/// warning; `ttft_ms`: the TTFT objective a KV transfer is held against.
pub fn record(
    v: &mut VbenchSection,
    m: &ServerMetrics<'_>,
    ideal: Option<IdealReuse>,
    reuses: bool,
    ttft_ms: Option<f64>,
) -> Said {
    let mut said = Said::default();
    v.cache_reuse = reuse(m.roles, m.before, m.after, ideal);
    if let Some(note) = v
        .cache_reuse
        .as_ref()
        .and_then(|r| warnings::reuse_note(r, reuses))
    {
        if reuses {
            said.notes.push(note);
        } else {
            said.warnings.push(note);
        }
    }
    if decoders_count_sources(m.roles, m.after) {
        said.warnings.extend(
            v.cache_reuse
                .as_ref()
                .and_then(warnings::untransferred_note),
        );
    }
    v.kv_transfer = transfer(m.before, m.after);
    if let Some(t) = &v.kv_transfer {
        said.warnings.extend(warnings::transfer_notes(
            t,
            ttft_ms.unwrap_or(f64::INFINITY),
        ));
    }
    v.kv_cache = kv_cache(m.roles, m.before, m.after, m.samples);
    said.warnings
        .extend(v.kv_cache.as_ref().and_then(warnings::preemption_note));
    said
}

/// Whether every decoder counts its prompt tokens by source: without that counter a
/// decoder's prompt tokens all look computed (there are none without decoders).
fn decoders_count_sources(
    roles: &BTreeMap<String, &'static str>,
    after: &BTreeMap<String, String>,
) -> bool {
    after
        .iter()
        .filter(|(component, _)| roles.get(*component) == Some(&"decode"))
        .all(|(_, text)| CacheCounters::read(text).is_some_and(|c| c.by_source))
}

/// The roles in the pipeline's order: where prompts are computed first.
const ROLE_ORDER: [&str; 3] = ["instance", "prefill", "decode"];

fn role_rank(role: &str) -> Option<usize> {
    ROLE_ORDER.iter().position(|o| *o == role)
}

/// NIXL's transfers over the cell, summed over every instance that exports the counters
/// (`None` when none does: another connector, or a vLLM without them).
pub fn transfer(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Option<KvTransfer> {
    let mut sum: Option<KvTransfer> = None;
    let mut instances = 0;
    for (component, text) in after {
        let Some(delta) = NixlCounters::delta(before.get(component).map(String::as_str), text)
        else {
            continue;
        };
        let one = transfer_record(&delta);
        sum = Some(sum.map_or_else(|| one.clone(), |s| s.merged(&one)));
        instances += 1;
    }
    sum.map(|s| KvTransfer { instances, ..s })
}

/// One instance's NIXL counters as the result file records them.
fn transfer_record(c: &NixlCounters) -> KvTransfer {
    KvTransfer {
        instances: 1,
        transfers: c.transfers,
        bytes: c.bytes,
        xfer_time_s: c.xfer_time_s,
        xfer_time_buckets: c
            .xfer_buckets
            .iter()
            .filter(|(le, _)| le.is_finite())
            .map(|&(le, n)| [le, n])
            .collect(),
        failed_transfers: c.failed_transfers,
        failed_notifications: c.failed_notifications,
        expired_requests: c.expired_requests,
        notifications_after_expiry: c.notifications_after_expiry,
    }
}

/// `roles` maps each instance's component name to its role (`instance`, `prefill`,
/// `decode`). `None` when no instance exported the counters.
pub fn reuse(
    roles: &BTreeMap<String, &'static str>,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    ideal: Option<IdealReuse>,
) -> Option<CacheReuse> {
    let mut by_role: BTreeMap<&'static str, (u32, CacheCounters)> = BTreeMap::new();
    for (component, text) in after {
        let Some(role) = roles.get(component) else {
            continue;
        };
        let Some(delta) = CacheCounters::delta(before.get(component).map(String::as_str), text)
        else {
            continue;
        };
        let entry = by_role.entry(role).or_default();
        entry.0 += 1;
        entry.1.add(&delta);
    }
    if by_role.is_empty() {
        return None;
    }
    let mut list: Vec<RoleCacheReuse> = by_role
        .into_iter()
        .map(|(role, (instances, c))| RoleCacheReuse {
            role: role.to_owned(),
            instances,
            prompt_tokens: c.prompt_tokens,
            computed_tokens: c.computed,
            local_hit_tokens: c.local_hit,
            external_tokens: c.external,
            reused_share: if c.prompt_tokens > 0.0 {
                (c.local_hit + c.external) / c.prompt_tokens
            } else {
                0.0
            },
            prefix_cache_queries: c.prefix_cache_queries,
            prefix_cache_hits: c.prefix_cache_hits,
        })
        .collect();
    list.sort_by_key(|r| role_rank(&r.role));
    Some(CacheReuse { roles: list, ideal })
}

/// Each role's KV cache over the cell: its size from `cache_config_info` (after the cell),
/// its peak use from the samples, its preemptions from the counters before and after. `None`
/// when no instance exported any of them.
pub fn kv_cache(
    roles: &BTreeMap<String, &'static str>,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    samples: &[Sample],
) -> Option<KvCache> {
    let mut by_role: BTreeMap<&'static str, RoleKvCache> = BTreeMap::new();
    for (component, text) in after {
        let Some(&role) = roles.get(component) else {
            continue;
        };
        let config = KvCacheConfig::read(text);
        // A counter missing before the cell (a restarted scrape) counts from the start.
        let preempted = metrics::preemptions(text).map(|a| {
            a - before
                .get(component)
                .and_then(|b| metrics::preemptions(b))
                .unwrap_or(0.0)
        });
        if config.is_none() && preempted.is_none() {
            continue;
        }
        let config = config.unwrap_or_default();
        let one = RoleKvCache {
            role: role.to_owned(),
            instances: 1,
            capacity_tokens: config.capacity_tokens,
            max_concurrency: config.max_concurrency,
            prefix_caching: config.prefix_caching,
            usage_max: None,
            preemptions: preempted,
        };
        by_role
            .entry(role)
            .and_modify(|r| {
                let instances = r.instances + 1;
                *r = r.merged(&one);
                r.instances = instances;
            })
            .or_insert(one);
    }
    for s in samples {
        let Some(r) = roles
            .get(&s.component)
            .and_then(|role| by_role.get_mut(role))
        else {
            continue;
        };
        let usage = s
            .gauges
            .get("vllm:kv_cache_usage_perc")
            .or_else(|| s.gauges.get("vllm:gpu_cache_usage_perc"));
        if let Some(&u) = usage {
            r.usage_max = Some(r.usage_max.map_or(u, |m| m.max(u)));
        }
    }
    if by_role.is_empty() {
        return None;
    }
    let mut list: Vec<RoleKvCache> = by_role.into_values().collect();
    list.sort_by_key(|r| role_rank(&r.role));
    Some(KvCache { roles: list })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(computed: u32, hit: u32, external: u32) -> String {
        format!(
            "vllm:prompt_tokens_by_source_total{{source=\"local_compute\"}} {computed}\n\
             vllm:prompt_tokens_by_source_total{{source=\"local_cache_hit\"}} {hit}\n\
             vllm:prompt_tokens_by_source_total{{source=\"external_kv_transfer\"}} {external}\n"
        )
    }

    /// A decoder that recomputed prompts is said to have; one that cannot say where its
    /// prompt tokens came from (no by-source counter: they all look computed) is not.
    #[test]
    fn decoders_that_recomputed_are_warned_of_only_where_they_count_sources() {
        let roles: BTreeMap<String, &'static str> = [
            ("prefill-0".to_owned(), "prefill"),
            ("decode-0".to_owned(), "decode"),
        ]
        .into();
        let none = BTreeMap::new();
        let after: BTreeMap<String, String> = [
            ("prefill-0".to_owned(), counters(1000, 0, 0)),
            ("decode-0".to_owned(), counters(500, 0, 500)),
        ]
        .into();
        assert!(decoders_count_sources(&roles, &after));
        let r = reuse(&roles, &none, &after, None).unwrap();
        let note = warnings::untransferred_note(&r).unwrap();
        assert!(
            note.contains("computed 500 of this rate's 1000 prompt tokens"),
            "{note}"
        );

        let prefix_counters_only = "vllm:prefix_cache_queries_total 1000\n\
                                    vllm:prefix_cache_hits_total 0\n";
        let after: BTreeMap<String, String> = [
            ("prefill-0".to_owned(), counters(1000, 0, 0)),
            ("decode-0".to_owned(), prefix_counters_only.to_owned()),
        ]
        .into();
        assert!(!decoders_count_sources(&roles, &after));
        // The same counters seen as computed tokens would have been warned of.
        let r = reuse(&roles, &none, &after, None).unwrap();
        assert!(warnings::untransferred_note(&r).is_some());
    }

    #[test]
    fn roles_are_summed_over_their_instances_and_prefill_comes_first() {
        let roles: BTreeMap<String, &'static str> = [
            ("decode-0".to_owned(), "decode"),
            ("prefill-0".to_owned(), "prefill"),
            ("prefill-1".to_owned(), "prefill"),
        ]
        .into();
        let before: BTreeMap<String, String> = [
            ("prefill-0".to_owned(), counters(100, 0, 0)),
            ("prefill-1".to_owned(), counters(0, 0, 0)),
            ("decode-0".to_owned(), counters(0, 0, 100)),
        ]
        .into();
        let after: BTreeMap<String, String> = [
            ("prefill-0".to_owned(), counters(400, 300, 0)),
            ("prefill-1".to_owned(), counters(300, 100, 0)),
            ("decode-0".to_owned(), counters(0, 0, 1100)),
        ]
        .into();
        let r = reuse(&roles, &before, &after, None).unwrap();
        let names: Vec<&str> = r.roles.iter().map(|x| x.role.as_str()).collect();
        assert_eq!(names, ["prefill", "decode"]);
        let p = r.computing().unwrap();
        assert_eq!(
            (p.instances, p.prompt_tokens, p.local_hit_tokens),
            (2, 1000.0, 400.0)
        );
        assert!((p.reused_share - 0.4).abs() < 1e-12);
        let d = &r.roles[1];
        assert_eq!((d.external_tokens, d.reused_share), (1000.0, 1.0));
        // Servers without the counters: nothing to report.
        let bare: BTreeMap<String, String> = [(
            "prefill-0".to_owned(),
            "vllm:num_requests_running 0\n".to_owned(),
        )]
        .into();
        assert_eq!(reuse(&roles, &bare, &bare, None), None);
    }

    #[test]
    fn kv_cache_has_each_role_s_size_peak_and_preemptions_over_the_cell() {
        let roles: BTreeMap<String, &'static str> = [
            ("decode-0".to_owned(), "decode"),
            ("decode-1".to_owned(), "decode"),
            ("prefill-0".to_owned(), "prefill"),
        ]
        .into();
        let text = |tokens: u32, preempted: u32| {
            format!(
                "vllm:cache_config_info{{block_size=\"16\",enable_prefix_caching=\"False\",\
                 kv_cache_max_concurrency=\"4.5\",kv_cache_size_tokens=\"{tokens}\"}} 1.0\n\
                 vllm:num_preemptions_total{{engine=\"0\"}} {preempted}\n"
            )
        };
        let before: BTreeMap<String, String> = [
            ("prefill-0".to_owned(), text(1000, 0)),
            ("decode-0".to_owned(), text(2000, 5)),
            ("decode-1".to_owned(), text(1800, 0)),
        ]
        .into();
        let after: BTreeMap<String, String> = [
            ("prefill-0".to_owned(), text(1000, 0)),
            ("decode-0".to_owned(), text(2000, 12)),
            ("decode-1".to_owned(), text(1800, 4)),
        ]
        .into();
        let sample = |component: &str, usage: f64| Sample {
            t_s: 0.0,
            component: component.to_owned(),
            gauges: [("vllm:kv_cache_usage_perc".to_owned(), usage)].into(),
        };
        let samples = [
            sample("decode-0", 0.7),
            sample("decode-1", 1.0),
            sample("prefill-0", 0.1),
            sample("decode-0", 0.9),
        ];
        let k = kv_cache(&roles, &before, &after, &samples).unwrap();
        let names: Vec<&str> = k.roles.iter().map(|r| r.role.as_str()).collect();
        assert_eq!(names, ["prefill", "decode"]);
        let d = &k.roles[1];
        assert_eq!(d.instances, 2);
        assert_eq!(d.capacity_tokens, Some(1800));
        assert_eq!(d.max_concurrency, Some(4.5));
        assert_eq!(d.prefix_caching, Some(false));
        assert_eq!(d.usage_max, Some(1.0));
        assert_eq!(d.preemptions, Some(11.0));
        assert_eq!(k.roles[0].preemptions, Some(0.0));
        assert_eq!(k.roles[0].usage_max, Some(0.1));
        assert_eq!(k.preemptions(), Some(11.0));
        // Repeats: preemptions add up, the peak is the higher one.
        let twice = k.merged(&k);
        assert_eq!(twice.roles[1].preemptions, Some(22.0));
        assert_eq!(twice.roles[1].instances, 2);
        // Servers that export none of it: nothing to say.
        let bare: BTreeMap<String, String> = [(
            "decode-0".to_owned(),
            "vllm:num_requests_running 0\n".to_owned(),
        )]
        .into();
        assert_eq!(kv_cache(&roles, &bare, &bare, &samples), None);
    }
}
