//! summary.md: the report as Markdown (the headline table, per-rate tables, runs, gaps).

use super::*;

/// Escape a string for a Markdown table cell.
fn md(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "\\|")
        .replace('\n', " ")
}

pub(super) fn markdown(
    a: &Analysis,
    w: &Winner,
    figures: &[FigureFile],
    skipped: &[Skipped],
) -> String {
    let mut s = String::new();
    let (all_sim, any_sim) = provenance(a);
    s.push_str(&format!("# {}\n\n", md(&title_of(a))));
    if all_sim {
        s.push_str(
            "**SIMULATED**: every result comes from `vbench sim-serve`, not real hardware.\n\n",
        );
    } else if any_sim {
        s.push_str("**PARTLY SIMULATED**: variants marked (sim) ran on `vbench sim-serve`.\n\n");
    }
    let mut models: Vec<&str> = a.variants.iter().map(|v| v.model.as_str()).collect();
    models.dedup();
    let mut datasets: Vec<&str> = a.variants.iter().map(|v| v.dataset.as_str()).collect();
    datasets.dedup();
    s.push_str(&format!(
        "Model: {} · Dataset: {} · SLO: {}\n\n",
        md(&models.join(", ")),
        md(&datasets.join(", ")),
        slo_line(&a.scoring.slo, a.scoring.target_pct)
    ));
    s.push_str(
        "Attainment = requests meeting the SLO / all requests (failed requests count as misses; \
         a one-token output has no TPOT and meets the TPOT SLO, as in vLLM's goodput).\n\n",
    );
    match w.by_goodput.as_slice() {
        [] => s.push_str("**Winner at the target:** none reaches it.\n\n"),
        list => s.push_str(&format!(
            "**Winner at the target:** {} (goodput{}); per GPU: {}{}.\n\n",
            md(&list.join(", ")),
            if w.distinguishable {
                ""
            } else {
                ", not distinguishable"
            },
            md(&w.by_goodput_per_gpu.join(", ")),
            if w.distinguishable_per_gpu {
                ""
            } else {
                " (not distinguishable)"
            }
        )),
    }
    if !w.note.is_empty() {
        s.push_str(&format!("Note: {}.\n\n", md(&w.note)));
    }
    s.push_str("| Variant | Run | GPUs | Goodput | Per-GPU goodput | SLO-scale crossing | Failures | Client | Notes |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for r in head_rows(a, w) {
        s.push_str(&format!(
            "| {}{}{} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            md(&r.label),
            if r.simulated { " (sim)" } else { "" },
            if r.winner { " ★" } else { "" },
            md(&r.run),
            r.gpus,
            md(&r.goodput),
            md(&r.goodput_per_gpu),
            md(&r.scale),
            r.failures,
            r.client,
            md(&r.note)
        ));
    }
    s.push('\n');
    for b in rate_blocks(a) {
        s.push_str(&format!("## {}\n\n", md(&b.label)));
        s.push_str(
            "Latencies in ms as p50 / p90 / p99; attainment % as both (with its 95 % Wilson \
             interval) / TTFT only / TPOT only. Goodput ranges (95 %) are where the attainment \
             intervals' ends cross the target; summary.json has 95 % intervals of every TTFT, \
             TPOT and E2E percentile too.\n\n",
        );
        if !b.dispersion_note.is_empty() {
            s.push_str(&format!("{}\n\n", md(&b.dispersion_note)));
        }
        if b.has_cache {
            s.push_str(
                "Prompt KV reused: the share of prompt tokens the instances that compute prompts \
                 did not compute (their prefix cache, or a connector such as LMCache), from their \
                 own counters; ideal: what the prompts allowed with nothing evicted.\n\n",
            );
        }
        if b.has_kv_cache {
            s.push_str(
                "KV cache: the highest KV-cache use an instance reported while the load ran \
                 (sampled every second) and the requests vLLM preempted for want of KV cache \
                 (each computed again, its latency included that), per role (P prefill, D \
                 decode).",
            );
            if !b.kv_capacity.is_empty() {
                s.push(' ');
                s.push_str(&md(&b.kv_capacity));
            }
            s.push_str("\n\n");
        }
        if b.has_gpus {
            s.push_str(
                "GPUs: from nvidia-smi once a second during the rate, over the deployment's \
                 GPUs: mean utilisation, the lowest SM clock, the highest power draw and \
                 temperature, then why the driver held clocks down (a power cap is normal \
                 under load; a thermal or hardware slowdown is warned of).\n\n",
            );
        }
        if b.has_transfer {
            s.push_str(
                "KV transfer: NIXL's transfers during the rate (warm-up included), from the \
                 instances' own counters: how many, their mean time (waiting behind other \
                 transfers included) with the histogram bucket that holds their p90, and their \
                 mean size; then any failed or expired.\n\n",
            );
        }
        let mut extra_head = String::new();
        if b.has_cache {
            extra_head.push_str(" Prompt KV reused |");
        }
        if b.has_transfer {
            extra_head.push_str(" KV transfer |");
        }
        if b.has_kv_cache {
            extra_head.push_str(" KV cache |");
        }
        if b.has_gpus {
            extra_head.push_str(" GPUs |");
        }
        s.push_str(&format!(
            "| Rate ({}) | Attainment | TTFT | TPOT | ITL | E2E | Throughput | Failed | Client |{extra_head}\n",
            b.rate_unit
        ));
        s.push_str(&format!(
            "|---|---|---|---|---|---|---|---|---|{}\n",
            "---|".repeat(
                usize::from(b.has_cache)
                    + usize::from(b.has_transfer)
                    + usize::from(b.has_kv_cache)
                    + usize::from(b.has_gpus)
            )
        ));
        for r in b.rows {
            let mut cache = String::new();
            if b.has_cache {
                cache.push_str(&format!(" {} |", r.cache));
            }
            if b.has_transfer {
                cache.push_str(&format!(" {} |", md(&r.kv_transfer)));
            }
            if b.has_kv_cache {
                cache.push_str(&format!(" {} |", md(&r.kv_cache)));
            }
            if b.has_gpus {
                cache.push_str(&format!(" {} |", md(&r.gpus)));
            }
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |{cache}\n",
                r.rate,
                r.attainment,
                r.ttft,
                r.tpot,
                r.itl,
                r.e2e,
                r.throughput,
                md(&r.failed),
                r.client
            ));
        }
        if !b.warnings.is_empty() {
            s.push_str("\nWarnings recorded with the results:\n\n");
            for n in &b.warnings {
                s.push_str(&format!("- {}\n", md(n)));
            }
        }
        s.push('\n');
        sessions_table(&mut s, &b.sessions);
    }
    let runs = run_lines(a);
    if !runs.is_empty() {
        s.push_str("## Runs\n\n");
        for line in runs {
            s.push_str(&format!("- {}\n", md(&line)));
        }
        s.push('\n');
    }
    let missing = missing_lines(a);
    if !missing.is_empty() {
        s.push_str("## Planned but not measured\n\n");
        for line in missing {
            s.push_str(&format!("- {}\n", md(&line)));
        }
        s.push('\n');
    }
    s.push_str("## Figures\n\n");
    for f in figures {
        let links: Vec<String> = f
            .files
            .iter()
            .map(|(ext, name)| format!("[{ext}]({name})"))
            .collect();
        s.push_str(&format!("- {}: {}\n", md(&f.caption), links.join(" ")));
    }
    if !skipped.is_empty() {
        s.push_str("\n## Skipped files\n\n");
        for k in skipped {
            s.push_str(&format!(
                "- `{}`: {}\n",
                md(&k.path.display().to_string()),
                md(&k.reason)
            ));
        }
    }
    s
}

/// Multi-turn sessions of one variant: per rate, each turn index's attainment and latencies,
/// then the sessions' own attainment (a session attains when all its turns do).
fn sessions_table(s: &mut String, rows: &[SessionRow]) {
    if rows.is_empty() {
        return;
    }
    s.push_str(
        "Sessions (the rate is session starts per second): attainment % per turn index over \
         that turn's requests, and per session (every turn met the SLO; a failed turn ends its \
         session).\n\n",
    );
    s.push_str("| Rate (sessions/s) | Turn | Requests | Attainment | TTFT | TPOT |\n");
    s.push_str("|---|---|---|---|---|---|\n");
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.rate, r.turn, r.requests, r.attainment, r.ttft, r.tpot
        ));
    }
    s.push('\n');
}
