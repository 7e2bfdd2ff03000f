//! What the servers' KV caches reused during a cell: their prompt-token counters before and
//! after it, per role, beside what the prompts themselves allowed (`load::cache_reuse`); and
//! what NIXL moved between them.

use std::collections::BTreeMap;

use crate::exec::metrics::{CacheCounters, NixlCounters, Sample};
use crate::load::result::{CacheReuse, IdealReuse, KvTransfer, RoleCacheReuse};

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
        let one = record(&delta);
        sum = Some(sum.map_or_else(|| one.clone(), |s| s.merged(&one)));
        instances += 1;
    }
    sum.map(|s| KvTransfer { instances, ..s })
}

/// One instance's counters as the result file records them.
fn record(c: &NixlCounters) -> KvTransfer {
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
    samples: &[Sample],
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
    let kv_usage_max = |role: &str| {
        samples
            .iter()
            .filter(|s| roles.get(&s.component).is_some_and(|r| *r == role))
            .filter_map(|s| {
                s.gauges
                    .get("vllm:kv_cache_usage_perc")
                    .or_else(|| s.gauges.get("vllm:gpu_cache_usage_perc"))
            })
            .copied()
            .reduce(f64::max)
    };
    // The roles in the pipeline's order: where prompts are computed first.
    let order = ["instance", "prefill", "decode"];
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
            kv_usage_max: kv_usage_max(role),
        })
        .collect();
    list.sort_by_key(|r| order.iter().position(|o| *o == r.role));
    Some(CacheReuse { roles: list, ideal })
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
        let sample = |component: &str, usage: f64| Sample {
            t_s: 0.0,
            component: component.to_owned(),
            gauges: [("vllm:kv_cache_usage_perc".to_owned(), usage)].into(),
        };
        let samples = [
            sample("prefill-0", 0.2),
            sample("prefill-1", 0.5),
            sample("decode-0", 0.9),
        ];
        let r = reuse(&roles, &before, &after, &samples, None).unwrap();
        let names: Vec<&str> = r.roles.iter().map(|x| x.role.as_str()).collect();
        assert_eq!(names, ["prefill", "decode"]);
        let p = r.computing().unwrap();
        assert_eq!(
            (p.instances, p.prompt_tokens, p.local_hit_tokens),
            (2, 1000.0, 400.0)
        );
        assert!((p.reused_share - 0.4).abs() < 1e-12);
        assert_eq!(p.kv_usage_max, Some(0.5));
        let d = &r.roles[1];
        assert_eq!((d.external_tokens, d.reused_share), (1000.0, 1.0));
        // Servers without the counters: nothing to report.
        let bare: BTreeMap<String, String> = [(
            "prefill-0".to_owned(),
            "vllm:num_requests_running 0\n".to_owned(),
        )]
        .into();
        assert_eq!(reuse(&roles, &bare, &bare, &[], None), None);
    }
}
