//! How long a plan will take: per variant, its start-up (launch until ready for load), each
//! rate's load, and its teardown. The planner fills in rough defaults by backend; past runs
//! of the same variant replace them where they exist (`results::history`), and the basis of
//! every estimate is shown beside it.

use serde::Serialize;

use super::{Cell, Pace, SearchSpec, Variant};
use crate::manifest::{Accelerator, Backend, Rate};

/// The whole plan's estimate and each variant's.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Estimate {
    pub startup_s: f64,
    pub load_s: f64,
    pub teardown_s: f64,
    pub total_s: f64,
    /// One per variant, in plan order.
    pub variants: Vec<VariantEstimate>,
}

/// One variant's estimate and what it rests on.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VariantEstimate {
    pub variant_id: String,
    /// Launch until ready for load (instances and proxy healthy, smoke request passed).
    pub startup_s: f64,
    /// Every rate: sending its requests (warm-up included) and the last ones finishing.
    pub load_s: f64,
    pub teardown_s: f64,
    pub total_s: f64,
    pub basis: Basis,
}

/// Where a variant's estimate comes from.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Basis {
    /// Past attempts of this variant (same id, model, backend, accelerator and simulator
    /// profile) the start-up and teardown come from; 0: built-in defaults.
    pub past_attempts: usize,
    /// Rates whose time comes from past runs of the same rate and request count.
    pub rates_measured_before: usize,
    /// Rates whose time is scaled from the variant's past rates (send time + its past drain).
    pub rates_scaled: usize,
    /// Rates estimated from defaults.
    pub rates_default: usize,
}

impl Basis {
    /// `defaults`, `3 past runs`, `2 past runs, 1 rate scaled`: for the plan table.
    pub fn describe(&self) -> String {
        if self.past_attempts == 0 && self.rates_measured_before + self.rates_scaled == 0 {
            return "defaults".to_owned();
        }
        let mut parts = Vec::new();
        if self.past_attempts > 0 {
            let s = if self.past_attempts == 1 { "" } else { "s" };
            parts.push(format!("{} past run{s}", self.past_attempts));
        } else {
            parts.push("default start-up".to_owned());
        }
        if self.rates_scaled > 0 {
            let s = if self.rates_scaled == 1 { "" } else { "s" };
            parts.push(format!("{} rate{s} scaled", self.rates_scaled));
        }
        if self.rates_default > 0 {
            let s = if self.rates_default == 1 { "" } else { "s" };
            parts.push(format!("{} rate{s} by default", self.rates_default));
        }
        parts.join(", ")
    }
}

/// Seconds a variant takes to become ready, by backend and accelerator (rough defaults).
pub fn default_startup_s(backend: Backend, accelerator: Accelerator, variant: &Variant) -> f64 {
    let base = match (backend, accelerator) {
        (Backend::Sim, _) => 0.5,
        (_, Accelerator::Cpu) => 90.0,
        (_, Accelerator::Cuda) => 120.0,
    };
    // Instances start in parallel; a disaggregated pair also waits for its KV connector.
    if variant.roles.len() > 1 {
        base * 1.3
    } else {
        base
    }
}

/// Seconds to stop a variant's processes (rough defaults).
pub fn default_teardown_s(backend: Backend) -> f64 {
    if backend == Backend::Sim {
        0.5
    } else {
        5.0
    }
}

/// The schedule's length: the seconds it takes to send `sends` requests at `rate` (0 for
/// `inf`, where everything is sent at once).
pub fn send_s(rate: Rate, sends: u32) -> f64 {
    match rate {
        Rate::PerSecond(r) => f64::from(sends) / r,
        Rate::Infinite => 0.0,
    }
}

/// Seconds to send one rate's requests (warm-up included) and let the last ones finish.
pub fn default_cell_s(backend: Backend, rate: Rate, requests: u32, warmup: u32) -> f64 {
    // The last requests still need their full latency after the last send.
    let drain_s = if backend == Backend::Sim { 0.5 } else { 10.0 };
    match rate {
        Rate::PerSecond(_) => send_s(rate, requests + warmup) + drain_s,
        Rate::Infinite => drain_s + 0.05 * f64::from(requests + warmup),
    }
}

/// [`default_cell_s`] for any cell. A trace replay's length is the trace's, which the plan
/// does not read: only the drain is counted until a past run measured it.
pub fn default_pace_s(backend: Backend, pace: Pace, requests: u32, warmup: u32) -> f64 {
    match pace {
        Pace::Rate(rate) => default_cell_s(backend, rate, requests, warmup),
        Pace::Speedup(_) => default_cell_s(backend, Rate::Infinite, requests, warmup),
    }
}

/// A search's worst case: every batch of its budget at its first rate (rates that pass
/// double, so later batches are shorter).
pub fn search_worst_case_s(backend: Backend, s: &SearchSpec, warmup: u32) -> f64 {
    s.max_batches_total() as f64
        * default_cell_s(backend, Rate::PerSecond(s.start), s.batch, warmup)
}

/// Multi-turn sessions: after its last session starts, a cell still waits for that session's
/// later turns, each a think time and a response after the one before (a response counted as
/// long as a cell's drain).
pub fn session_tail_s(backend: Backend, turns: u32, think_time_s: f64) -> f64 {
    let response_s = default_cell_s(backend, Rate::Infinite, 0, 0);
    f64::from(turns.saturating_sub(1)) * (think_time_s + response_s)
}

/// The defaults for every variant of a plan; `tail_s` is added to every cell (the later turns
/// of multi-turn sessions, else 0).
pub fn defaults(
    backend: Backend,
    accelerator: Accelerator,
    variants: &[Variant],
    cells: &[Cell],
    warmup: u32,
    search: Option<&SearchSpec>,
    tail_s: f64,
) -> Estimate {
    let per_variant = variants
        .iter()
        .map(|v| {
            let mine: Vec<&Cell> = cells.iter().filter(|c| c.variant_id == v.id).collect();
            let load_s = match search {
                Some(s) => search_worst_case_s(backend, s, warmup),
                None => mine
                    .iter()
                    .map(|c| default_pace_s(backend, c.pace, c.requests, warmup) + tail_s)
                    .sum(),
            };
            VariantEstimate::new(
                &v.id,
                default_startup_s(backend, accelerator, v),
                load_s,
                default_teardown_s(backend),
                Basis {
                    rates_default: mine.len(),
                    ..Basis::default()
                },
            )
        })
        .collect();
    Estimate::from_variants(per_variant)
}

impl VariantEstimate {
    pub fn new(id: &str, startup_s: f64, load_s: f64, teardown_s: f64, basis: Basis) -> Self {
        VariantEstimate {
            variant_id: id.to_owned(),
            startup_s,
            load_s,
            teardown_s,
            total_s: startup_s + load_s + teardown_s,
            basis,
        }
    }
}

impl Estimate {
    /// The plan's totals over its variants' estimates.
    pub fn from_variants(variants: Vec<VariantEstimate>) -> Estimate {
        let sum = |f: fn(&VariantEstimate) -> f64| variants.iter().map(f).sum::<f64>();
        Estimate {
            startup_s: sum(|v| v.startup_s),
            load_s: sum(|v| v.load_s),
            teardown_s: sum(|v| v.teardown_s),
            total_s: sum(|v| v.total_s),
            variants,
        }
    }

    pub fn of(&self, variant_id: &str) -> Option<&VariantEstimate> {
        self.variants.iter().find(|v| v.variant_id == variant_id)
    }

    /// How many variants rest on past runs (any part of them).
    pub fn from_history(&self) -> usize {
        self.variants
            .iter()
            .filter(|v| v.basis.describe() != "defaults")
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_read_naturally() {
        assert_eq!(Basis::default().describe(), "defaults");
        let b = Basis {
            past_attempts: 3,
            rates_measured_before: 1,
            rates_scaled: 1,
            rates_default: 0,
        };
        assert_eq!(b.describe(), "3 past runs, 1 rate scaled");
        let b = Basis {
            past_attempts: 0,
            rates_measured_before: 2,
            rates_scaled: 0,
            rates_default: 1,
        };
        assert_eq!(b.describe(), "default start-up, 1 rate by default");
    }

    #[test]
    fn a_session_cell_waits_for_its_last_sessions_later_turns() {
        // Three more turns, each a 1 s think and a 0.5 s response on the simulator.
        assert_eq!(session_tail_s(Backend::Sim, 4, 1.0), 4.5);
        assert_eq!(session_tail_s(Backend::Local, 1, 3.0), 0.0);
    }

    #[test]
    fn totals_add_up() {
        let e = Estimate::from_variants(vec![
            VariantEstimate::new("a", 10.0, 20.0, 1.0, Basis::default()),
            VariantEstimate::new("b", 5.0, 5.0, 0.5, Basis::default()),
        ]);
        assert_eq!((e.startup_s, e.load_s, e.teardown_s), (15.0, 25.0, 1.5));
        assert_eq!(e.total_s, 41.5);
        assert_eq!(e.of("b").unwrap().total_s, 10.5);
    }
}
