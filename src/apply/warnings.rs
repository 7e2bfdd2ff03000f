//! The warnings a measured cell merits, worded from what its servers and GPUs did: prefix
//! cache hits on a workload not built to reuse, NIXL transfers that failed or outlasted the
//! TTFT objective, preemptions, errors the servers logged, a GPU that slowed itself down.
//! `apply` prints each and keeps it in the cell's result (`vbench.load.warnings`).

use std::path::Path;

use crate::exec::gpu_telemetry;
use crate::load::result::{CacheReuse, ComponentLogErrors, GpuTelemetry, KvCache, KvTransfer};
use crate::plan::table::thousands;
use crate::report::attainment::fmt_num;

/// Above this share of prompt tokens served from the prefix cache in a rate, apply warns and
/// notes it in the result. vbench's own prompts never repeat across rates, so a share this
/// high means the dataset repeats prefixes (or has too few prompts for the sweep).
const PREFIX_CACHE_WARN_SHARE: f64 = 0.10;

/// What to say about a cell's cache reuse: for a workload built to reuse, how much the
/// instances that compute prompts reused (and what the prompts allowed); otherwise only a
/// share above [`PREFIX_CACHE_WARN_SHARE`], as a warning's text.
pub(crate) fn reuse_note(r: &CacheReuse, reuses: bool) -> Option<String> {
    let c = r.computing()?;
    if c.prompt_tokens <= 0.0 {
        return None;
    }
    let local = c.local_hit_tokens / c.prompt_tokens;
    if reuses {
        let ideal = r.ideal.as_ref().map_or(String::new(), |i| {
            format!(
                "; the prompts allowed {:.1} % ({}-token blocks, nothing evicted)",
                100.0 * i.hit_share(),
                i.block_size
            )
        });
        let at = if c.role == "instance" {
            "the instances".to_owned()
        } else {
            format!("the {} instances", c.role)
        };
        Some(format!(
            "{:.1} % of this cell's prompt tokens at {at} ({:.0} of {:.0}) were not computed: \
             {:.1} % from their prefix cache, {:.1} % from a KV connector{ideal}",
            100.0 * c.reused_share,
            c.local_hit_tokens + c.external_tokens,
            c.prompt_tokens,
            100.0 * local,
            100.0 * c.external_tokens / c.prompt_tokens,
        ))
    } else if local > PREFIX_CACHE_WARN_SHARE {
        Some(format!(
            "{:.0} % of this rate's prompt tokens ({:.0} of {:.0}) came from the servers' \
             prefix cache: latencies are better than for prompts the servers have not seen",
            100.0 * local,
            c.local_hit_tokens,
            c.prompt_tokens
        ))
    } else {
        None
    }
}

/// The share of the decoders' prompt tokens they may compute themselves, beyond LMCache's
/// appended first tokens, before a cell is said not to measure disaggregation alone.
const UNTRANSFERRED_WARN_SHARE: f64 = 0.01;

/// Decoders that computed prompts themselves: KV that did not arrive (vLLM falls back to
/// recomputing it), so the cell measured a mix of disaggregated and whole-instance serving.
/// Real decoders compute nothing of a transferred prompt under NIXL, and under LMCache only
/// the prefill's first token, which the proxy appends to the decoder's prompt (0 and 1 token
/// per request on the H200 runs of `benches/gpu`); that allowance is the decoders' prompt
/// tokens beyond the prefills'. Only for decoders that count their prompt tokens by source.
pub(crate) fn untransferred_note(r: &CacheReuse) -> Option<String> {
    let decode = r.roles.iter().find(|x| x.role == "decode")?;
    let sent = r
        .roles
        .iter()
        .find(|x| x.role == "prefill")
        .map_or(0.0, |p| p.prompt_tokens);
    let appended = (decode.prompt_tokens - sent).max(0.0);
    let untransferred = decode.computed_tokens - appended;
    if decode.prompt_tokens <= 0.0
        || untransferred <= UNTRANSFERRED_WARN_SHARE * decode.prompt_tokens
    {
        return None;
    }
    Some(format!(
        "the decoders computed {untransferred:.0} of this rate's {:.0} prompt tokens themselves \
         ({:.1} %) instead of receiving their KV: those requests' KV did not arrive and vLLM \
         recomputed it, so this rate does not measure prefill/decode disaggregation alone (the \
         decoders' logs say why)",
        decode.prompt_tokens,
        100.0 * untransferred / decode.prompt_tokens
    ))
}

/// What a cell's NIXL counters say that a reader must not miss: KV that failed or expired
/// (those requests were not served as disaggregated), and transfers slower on average than the
/// whole TTFT objective (the KV path, not the engines, bounds TTFT).
pub(crate) fn transfer_notes(t: &KvTransfer, ttft_ms: f64) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(trouble) = t.trouble() {
        notes.push(format!(
            "NIXL reported {trouble} during this rate: those requests' KV did not arrive whole \
             (vLLM then fails or recomputes them, by its kv_load_failure_policy), so this rate \
             does not measure prefill/decode disaggregation alone"
        ));
    }
    if let (Some(mean_ms), Some(bytes)) = (t.mean_xfer_ms(), t.mean_bytes()) {
        if mean_ms > ttft_ms {
            notes.push(format!(
                "NIXL's KV transfers took {mean_ms:.0} ms on average ({:.1} MB each), more than \
                 the TTFT objective of {} ms: the KV path bounds TTFT here (instances sharing a \
                 GPU, or a transport without direct GPU copies: see UCX_TLS and UCX_NET_DEVICES)",
                bytes / 1e6,
                fmt_num(ttft_ms)
            ));
        }
    }
    notes
}

/// LMCache requests the built-in proxy gave up on: LMCache never said their KV reached the
/// decoder.
pub(crate) fn kv_wait_warning(timeouts: f64) -> String {
    format!(
        "{timeouts} requests failed waiting for LMCache's report that their KV reached the \
         decoder (the proxy's --kv-wait-s passed; look for \"LMCache ERROR\" lines in the \
         instances' logs, e.g. transfer-buffer allocations that timed out)"
    )
}

/// Errors the servers logged during the cell: how many where, with the first, and where the
/// logs are (`None` without any).
pub(crate) fn log_errors_warning(
    errors: &[ComponentLogErrors],
    variant_dir: &Path,
) -> Option<String> {
    let parts: Vec<String> = errors
        .iter()
        .map(|e| {
            format!(
                "{} {}{} line{} (first: \"{}\")",
                e.component,
                if e.at_least { "at least " } else { "" },
                e.lines,
                if e.lines == 1 { "" } else { "s" },
                e.first
            )
        })
        .collect();
    (!parts.is_empty()).then(|| {
        format!(
            "the servers logged errors during this rate: {} (in {}): the requests they concern \
             may have failed or been served another way",
            parts.join("; "),
            variant_dir.join("logs").display()
        )
    })
}

/// Preempted requests lost their KV and were computed again: say where, and how big and how
/// full the KV cache was (`None` without preemptions).
pub(crate) fn preemption_note(k: &KvCache) -> Option<String> {
    let short: Vec<String> = k
        .roles
        .iter()
        .filter(|r| r.preemptions.is_some_and(|n| n > 0.0))
        .map(|r| {
            let n = r.preemptions.unwrap_or(0.0);
            let mut s = format!("{} time{}", fmt_num(n), if n == 1.0 { "" } else { "s" });
            if r.role != "instance" {
                s.push_str(&format!(" on the {} instances", r.role));
            }
            let mut about = Vec::new();
            if let Some(c) = r.capacity_tokens {
                about.push(format!("KV cache of {} tokens per instance", thousands(c)));
            }
            if let Some(u) = r.usage_max {
                about.push(format!("{} % full at most", fmt_num(100.0 * u)));
            }
            if !about.is_empty() {
                s.push_str(&format!(" ({})", about.join(", ")));
            }
            s
        })
        .collect();
    (!short.is_empty()).then(|| {
        format!(
            "vLLM preempted requests for want of KV cache at this rate: {}. A preempted request \
             is computed again and its latency includes that: this rate measured a server short \
             of KV memory (gpu_memory_utilization, max_model_len or more instances would change \
             that)",
            short.join("; ")
        )
    })
}

/// A GPU that protected itself (thermal or hardware slowdown, power brake) ran below full
/// speed: name it, with how far its clock fell (`None` when none did).
pub(crate) fn slowdown_warning(gpus: &[GpuTelemetry]) -> Option<String> {
    let slowed: Vec<String> = gpus
        .iter()
        .filter_map(|g| {
            let protective: Vec<&str> = g
                .slowdowns
                .iter()
                .map(String::as_str)
                .filter(|r| gpu_telemetry::is_protective(r))
                .collect();
            if protective.is_empty() {
                return None;
            }
            let mut s = format!("GPU {} ({})", g.index, protective.join(", "));
            if let (Some(low), Some(top)) = (g.sm_clock_min_mhz, g.sm_clock_max_mhz) {
                s.push_str(&format!(
                    ": SM clock down to {} MHz of {}",
                    thousands(low as u64),
                    thousands(top as u64)
                ));
            }
            if let Some(t) = g.temp_max_c {
                s.push_str(&format!(", up to {} °C", fmt_num(t)));
            }
            Some(s)
        })
        .collect();
    (!slowed.is_empty()).then(|| {
        format!(
            "the driver slowed a GPU down to protect it during this rate: {}. Its latencies \
             include the slowdown; cooling or power, not the deployment, may set them",
            slowed.join("; ")
        )
    })
}

/// Roles whose KV caches differ by more than this factor for the GPU memory they were given
/// are warned of.
const KV_IMBALANCE: f64 = 2.0;

/// The roles' KV caches against what each was given (`given(role)`: its TP × its
/// gpu_memory_utilization): vLLM sizes the cache from the memory it finds free at start-up,
/// and instances that share a GPU and start together split it unevenly. `None` when the roles
/// agree within [`KV_IMBALANCE`], or there is one role.
pub(crate) fn kv_imbalance(k: &KvCache, given: &dyn Fn(&str) -> Option<f64>) -> Option<String> {
    let per_given: Vec<(&str, u64, f64)> = k
        .roles
        .iter()
        .filter_map(|r| {
            let c = r.capacity_tokens?;
            let g = given(&r.role).filter(|g| *g > 0.0)?;
            Some((r.role.as_str(), c, c as f64 / g))
        })
        .collect();
    let small = per_given.iter().min_by(|a, b| a.2.total_cmp(&b.2))?;
    let large = per_given.iter().max_by(|a, b| a.2.total_cmp(&b.2))?;
    if small.2 <= 0.0 || large.2 / small.2 <= KV_IMBALANCE {
        return None;
    }
    Some(format!(
        "the {small_role} instances hold {} tokens of KV cache each, the {large_role} instances \
         {} ({}× more for the GPU memory each was given): vLLM sizes its KV cache from the \
         memory it finds free at start-up, and instances that share a GPU and start together \
         split it unevenly (target.start = \"one_by_one\" avoids that). The {small_role} side \
         preempts or queues requests sooner than its configuration says",
        thousands(small.1),
        thousands(large.1),
        fmt_num(large.2 / small.2),
        small_role = small.0,
        large_role = large.0,
    ))
}

/// A GPU the deployment shared with another compute process: the rate did not measure the
/// deployment alone (`None` when no GPU was shared).
pub(crate) fn shared_gpu_warning(gpus: &[GpuTelemetry]) -> Option<String> {
    let shared: Vec<String> = gpus
        .iter()
        .filter(|g| !g.other_processes.is_empty())
        .map(|g| {
            let who: Vec<String> = g
                .other_processes
                .iter()
                .map(|p| format!("pid {}, {} MiB", p.pid, thousands(p.used_mib)))
                .collect();
            format!("GPU {} ({})", g.index, who.join("; "))
        })
        .collect();
    (!shared.is_empty()).then(|| {
        format!(
            "another process used the deployment's GPUs during this rate: {}. The rate did not \
             measure the deployment alone",
            shared.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::result::{RoleCacheReuse, RoleKvCache};

    fn role(role: &str, preemptions: Option<f64>) -> RoleKvCache {
        RoleKvCache {
            role: role.into(),
            instances: 1,
            capacity_tokens: Some(518_672),
            max_concurrency: Some(126.63),
            prefix_caching: Some(true),
            usage_max: Some(1.0),
            preemptions,
        }
    }

    fn sources(role: &str, prompt: f64, computed: f64, external: f64) -> RoleCacheReuse {
        RoleCacheReuse {
            role: role.into(),
            instances: 1,
            prompt_tokens: prompt,
            computed_tokens: computed,
            local_hit_tokens: prompt - computed - external,
            external_tokens: external,
            reused_share: (prompt - computed) / prompt,
            prefix_cache_queries: 0.0,
            prefix_cache_hits: 0.0,
        }
    }

    /// The counters of real H200 cells (`benches/gpu`): NIXL's decoder computed nothing,
    /// LMCache's the 68 first tokens the proxy appended to 68 prompts. Neither is warned of;
    /// a decoder that recomputed 3 of 34 prompts is.
    #[test]
    fn decoders_computing_prompts_they_should_have_received_are_named() {
        let cell = |decode| CacheReuse {
            roles: vec![sources("prefill", 69_632.0, 69_632.0, 0.0), decode],
            ideal: None,
        };
        let nixl = cell(sources("decode", 69_632.0, 0.0, 69_632.0));
        assert_eq!(untransferred_note(&nixl), None);
        let lmcache = cell(sources("decode", 69_700.0, 68.0, 69_632.0));
        assert_eq!(untransferred_note(&lmcache), None);
        let recomputed = cell(sources("decode", 69_632.0, 6_144.0, 63_488.0));
        let note = untransferred_note(&recomputed).unwrap();
        assert!(
            note.starts_with(
                "the decoders computed 6144 of this rate's 69632 prompt tokens themselves \
                 (8.8 %) instead of receiving their KV"
            ),
            "{note}"
        );
        // Simple deployments have no decoders.
        let simple = CacheReuse {
            roles: vec![sources("instance", 1_000.0, 1_000.0, 0.0)],
            ideal: None,
        };
        assert_eq!(untransferred_note(&simple), None);
    }

    #[test]
    fn preemptions_are_named_by_role_with_the_cache_s_size_and_peak() {
        let k = KvCache {
            roles: vec![role("prefill", Some(0.0)), role("decode", Some(13.0))],
        };
        assert_eq!(
            preemption_note(&k).unwrap(),
            "vLLM preempted requests for want of KV cache at this rate: 13 times on the decode \
             instances (KV cache of 518,672 tokens per instance, 100 % full at most). A \
             preempted request is computed again and its latency includes that: this rate \
             measured a server short of KV memory (gpu_memory_utilization, max_model_len or \
             more instances would change that)"
        );
        let one = KvCache {
            roles: vec![role("instance", Some(1.0))],
        };
        assert!(preemption_note(&one)
            .unwrap()
            .contains("at this rate: 1 time (KV cache of 518,672 tokens per instance"));
        // None preempted, or not counted: nothing to say.
        let calm = KvCache {
            roles: vec![role("instance", Some(0.0)), role("decode", None)],
        };
        assert_eq!(preemption_note(&calm), None);
    }

    fn gpu(index: u32, slowdowns: &[&str], clock_min: f64) -> GpuTelemetry {
        GpuTelemetry {
            index,
            samples: 2,
            util_mean_pct: Some(90.0),
            sm_clock_min_mhz: Some(clock_min),
            sm_clock_mean_mhz: Some(1600.0),
            sm_clock_max_mhz: Some(1980.0),
            power_mean_w: Some(600.0),
            power_max_w: Some(619.8),
            temp_max_c: Some(99.0),
            memory_used_max_mib: Some(80_000.0),
            slowdowns: slowdowns.iter().map(|s| s.to_string()).collect(),
            other_processes: Vec::new(),
        }
    }

    #[test]
    fn only_a_gpu_that_protected_itself_is_warned_of() {
        let g = [
            gpu(0, &["power cap"], 1780.0),
            gpu(1, &["hardware thermal slowdown"], 1200.0),
        ];
        assert_eq!(
            slowdown_warning(&g).unwrap(),
            "the driver slowed a GPU down to protect it during this rate: GPU 1 (hardware \
             thermal slowdown): SM clock down to 1,200 MHz of 1,980, up to 99 °C. Its \
             latencies include the slowdown; cooling or power, not the deployment, may set them"
        );
        // A power cap alone is the GPU's normal power management: recorded, not warned of.
        assert_eq!(slowdown_warning(&g[..1]), None);
        assert_eq!(shared_gpu_warning(&g), None);
        let mut shared = g.to_vec();
        shared[1].other_processes = vec![crate::load::result::GpuProcess {
            pid: 4242,
            used_mib: 1200,
        }];
        assert_eq!(
            shared_gpu_warning(&shared).unwrap(),
            "another process used the deployment's GPUs during this rate: GPU 1 (pid 4242, \
             1,200 MiB). The rate did not measure the deployment alone"
        );
    }

    #[test]
    fn kv_caches_uneven_for_what_each_role_was_given_are_named() {
        let role = |role: &str, tokens: u64| RoleKvCache {
            capacity_tokens: Some(tokens),
            ..self::role(role, Some(0.0))
        };
        // As on one H200 shared by a NIXL prefill and decode at 0.42 each (2026-12-01).
        let k = KvCache {
            roles: vec![role("prefill", 510_656), role("decode", 17_840)],
        };
        let same = |_: &str| Some(0.42);
        assert_eq!(
            kv_imbalance(&k, &same).unwrap(),
            "the decode instances hold 17,840 tokens of KV cache each, the prefill instances \
             510,656 (28.62× more for the GPU memory each was given): vLLM sizes its KV cache \
             from the memory it finds free at start-up, and instances that share a GPU and \
             start together split it unevenly (target.start = \"one_by_one\" avoids that). The \
             decode side preempts or queues requests sooner than its configuration says"
        );
        // A decoder with twice the GPUs holding twice the tokens is even.
        let k = KvCache {
            roles: vec![role("prefill", 500_000), role("decode", 1_000_000)],
        };
        let tp = |r: &str| Some(if r == "decode" { 2.0 * 0.9 } else { 0.9 });
        assert_eq!(kv_imbalance(&k, &tp), None);
        // One role: nothing to compare.
        let k = KvCache {
            roles: vec![role("instance", 1_000)],
        };
        assert_eq!(kv_imbalance(&k, &same), None);
    }

    #[test]
    fn log_errors_are_named_per_component_with_the_first_line() {
        let e = [ComponentLogErrors {
            component: "decode-0".into(),
            lines: 12,
            first: "LMCache ERROR: Failed to allocate".into(),
            at_least: true,
        }];
        assert_eq!(
            log_errors_warning(&e, Path::new("/r/v")).unwrap(),
            "the servers logged errors during this rate: decode-0 at least 12 lines (first: \
             \"LMCache ERROR: Failed to allocate\") (in /r/v/logs): the requests they concern \
             may have failed or been served another way"
        );
        assert_eq!(log_errors_warning(&[], Path::new("/r/v")), None);
    }
}
