//! The human-readable plan table printed by `vbench plan`.

use std::fmt::Write;

use super::{Plan, SessionsPlan};
use crate::manifest::SlurmDriver;

/// `1h02m`, `9m30s`, `45s`.
pub fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, min, sec) => format!("{min}m{sec:02}s"),
        (h, min, _) => format!("{h}h{min:02}m"),
    }
}

/// `90`, `2.5`: a percentage without trailing zeros.
fn fmt_pct(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let backend = format!("{:?}", plan.backend).to_lowercase();
    let accel = format!("{:?}", plan.accelerator).to_lowercase();
    let _ = writeln!(
        out,
        "Experiment {} · model {} · backend {backend} ({accel}) · capacity: {}",
        plan.experiment,
        plan.model,
        match plan.capacity.gpus {
            Some(n) => format!("{n} ({})", plan.capacity.source),
            None => plan.capacity.source.clone(),
        }
    );
    let (sweep, unit, each) = if plan.speedups.is_empty() {
        let rates: Vec<String> = plan.rates.iter().map(|r| r.label()).collect();
        match plan.sessions {
            Some(_) => ("Session starts per second", rates, "rate"),
            None => ("Rates (req/s)", rates, "rate"),
        }
    } else {
        let speedups: Vec<String> = plan.speedups.iter().map(|s| format!("{s}x")).collect();
        ("Trace replay at speedups", speedups, "speedup")
    };
    if let Some(s) = &plan.search {
        let _ = writeln!(
            out,
            "Search: the highest rate meeting {} % of requests within the SLO, from {} req/s \
             (doubling up to {}, halving down to {}), to a bracket within {} %; batches of {} \
             requests + {} warm-up, up to {} per rate{}; at most {} requests per variant",
            fmt_pct(100.0 * s.target),
            s.start,
            s.max_rate,
            s.min_rate,
            fmt_pct(100.0 * s.tolerance),
            s.batch,
            plan.warmup,
            s.max_batches,
            if s.confirm_batches > 1 {
                format!(
                    ", each end of the bracket on {} at least",
                    s.confirm_batches
                )
            } else {
                String::new()
            },
            thousands(s.budget)
        );
    } else {
        // Sessions: what a rate sends is sessions of several turns each.
        let what = match plan.sessions {
            Some(SessionsPlan { turns: Some(t) }) => format!(
                "sessions of {t} turns ({} requests)",
                thousands(u64::from(plan.num_prompts) * u64::from(t))
            ),
            Some(SessionsPlan { turns: None }) => {
                "sessions (as many turns as each conversation has)".to_owned()
            }
            None => "requests".to_owned(),
        };
        let _ = writeln!(
            out,
            "{sweep}: {} · {} {what} per {each}{}{}",
            unit.join(", "),
            plan.num_prompts,
            if plan.warmup > 0 {
                format!(" + {} warm-up", plan.warmup)
            } else {
                String::new()
            },
            if plan.repeats > 1 {
                format!(" · {} repeats of every {each}", plan.repeats)
            } else {
                String::new()
            }
        );
    }
    if !plan.overrides.is_empty() {
        let _ = writeln!(out, "Overrides: --set {}", plan.overrides.join(" --set "));
    }
    let _ = writeln!(out);

    let header = [
        "#", "VARIANT", "MODE", "TOPOLOGY", "GPUS", "CELLS", "REQUESTS", "ESTIMATE", "FROM",
    ];
    let mut rows: Vec<[String; 9]> = Vec::new();
    for (i, v) in plan.variants.iter().enumerate() {
        let cells: Vec<_> = plan.cells_of(&v.id).collect();
        let requests: u64 = cells.iter().map(|c| u64::from(c.requests)).sum();
        let (estimate, basis) = match plan.estimate.of(&v.id) {
            Some(e) => (
                format!("~{}", human_duration(e.total_s)),
                e.basis.describe(),
            ),
            None => ("?".to_owned(), String::new()),
        };
        let mut topology = v.topology.clone();
        if v.label != format!("{} {}", v.mode, v.topology) {
            topology = v
                .label
                .strip_prefix(&format!("{} ", v.mode))
                .unwrap_or(&v.label)
                .to_owned();
        }
        rows.push([
            (i + 1).to_string(),
            v.id.clone(),
            v.mode.to_string(),
            topology,
            v.gpus.to_string(),
            if plan.search.is_some() {
                "search".to_owned()
            } else {
                cells.len().to_string()
            },
            match &plan.search {
                Some(s) => format!("≤{}", thousands(s.budget)),
                None => thousands(requests),
            },
            estimate,
            basis,
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cols: Vec<&str>| {
        let mut l = String::new();
        for (c, text) in cols.iter().enumerate() {
            let pad = widths[c] - text.chars().count();
            // Numbers right-aligned, text left-aligned.
            if matches!(c, 0 | 4 | 5 | 6) {
                l.push_str(&" ".repeat(pad));
                l.push_str(text);
            } else {
                l.push_str(text);
                if c + 1 < cols.len() {
                    l.push_str(&" ".repeat(pad));
                }
            }
            if c + 1 < cols.len() {
                l.push_str("  ");
            }
        }
        l.trim_end().to_owned()
    };
    let _ = writeln!(out, "{}", line(header.to_vec()));
    for r in &rows {
        let _ = writeln!(out, "{}", line(r.iter().map(String::as_str).collect()));
    }
    for v in &plan.skipped {
        let _ = writeln!(
            out,
            "-  {}  ({}) is left out: it {}",
            v.id, v.label, v.reason
        );
    }
    if let Some(slurm) = &plan.slurm {
        render_placement(&mut out, plan, slurm);
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{} variants · {} cells · {} requests · estimated wall time ~{} (start-up ~{} + load ~{} + teardown ~{})",
        plan.variants.len(),
        plan.cells.len(),
        thousands(plan.total_requests()),
        human_duration(plan.estimate.total_s),
        human_duration(plan.estimate.startup_s),
        human_duration(plan.estimate.load_s),
        human_duration(plan.estimate.teardown_s),
    );
    let _ = writeln!(
        out,
        "{}",
        match plan.estimate.from_history() {
            0 => "Estimates: built-in defaults (no past run of these variants in the results folder)."
                .to_owned(),
            n => format!(
                "Estimates: {n} of {} variants from past runs in the results folder (same \
                 variant, model, backend; the median of the last 5){}.",
                plan.variants.len(),
                if n < plan.variants.len() {
                    ", the rest from defaults"
                } else {
                    ""
                }
            ),
        }
    );
    out
}

/// Where each variant's instances go: node numbers of the allocation, in its order.
fn render_placement(out: &mut String, plan: &Plan, slurm: &super::SlurmPlan) {
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Placement ({}) on {} Slurm node(s){}, numbered in the allocation's order:",
        slurm.placement.as_str(),
        slurm.nodes,
        slurm
            .gpus_per_node
            .map(|g| format!(" of {g} GPUs"))
            .unwrap_or_default()
    );
    let width = plan.variants.len().to_string().len();
    let id_width = plan.variants.iter().map(|v| v.id.len()).max().unwrap_or(0);
    for (i, v) in plan.variants.iter().enumerate() {
        let _ = writeln!(
            out,
            "{:>width$}  {:<id_width$}  {}",
            i + 1,
            v.id,
            super::placement::describe(slurm.of(&v.id))
        );
    }
    let _ = writeln!(
        out,
        "{}",
        match slurm.driver {
            SlurmDriver::FirstNode =>
                "The proxy and the load generator run on node 1: started outside a job, apply \
                 runs itself there as a step (target.slurm.driver = \"first_node\").",
            SlurmDriver::Here =>
                "The proxy and the load generator run where `vbench apply` runs (target.slurm.\
                 driver = \"here\"): a login node's load and network path are then part of \
                 every latency.",
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_thousands_read_naturally() {
        assert_eq!(human_duration(45.2), "45s");
        assert_eq!(human_duration(570.0), "9m30s");
        assert_eq!(human_duration(3725.0), "1h02m");
        assert_eq!(thousands(12500), "12,500");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
