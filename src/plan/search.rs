//! The SLO-capacity search as the plan and the run folder know it: the resolved
//! `[load.search]`, the names of its batches' result files, and how a search can end. The
//! search itself runs in `apply::search`.

use serde::{Deserialize, Serialize};

use crate::manifest::{Manifest, Rate, SearchOptions};

/// What the manifest's `[load.search]` asks for, resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchSpec {
    /// Target attainment, 0..1.
    pub target: f64,
    pub start: f64,
    pub max_rate: f64,
    /// Below this the search stops: the variant does not meet the target at any useful rate.
    pub min_rate: f64,
    /// Relative width of the final bracket, e.g. 0.05.
    pub tolerance: f64,
    /// Measured requests per batch.
    pub batch: u32,
    /// Batches one rate may get while its interval straddles the target.
    pub max_batches: u32,
    /// Batches each end of the final bracket must rest on.
    pub confirm_batches: u32,
    /// Measured requests per variant, at most.
    pub budget: u64,
    /// A probe with more failed requests than this share is saturated.
    pub max_failed_pct: f64,
}

impl SearchSpec {
    /// The manifest's `[load.search]` with its defaults filled in.
    pub fn resolve(s: &SearchOptions, m: &Manifest) -> SearchSpec {
        SearchSpec {
            target: m.slo.target_pct / 100.0,
            start: s.start,
            max_rate: s.max_rate.unwrap_or(s.start * 64.0),
            min_rate: s.min_rate.unwrap_or(s.start / 64.0),
            tolerance: s.tolerance,
            batch: m.load.num_prompts,
            max_batches: s.max_batches,
            confirm_batches: s.confirm_batches,
            budget: s.budget.unwrap_or(20 * u64::from(m.load.num_prompts)),
            max_failed_pct: s.max_failed_pct,
        }
    }
}

impl SearchSpec {
    /// Batches the budget allows (a batch is measured only while it fits).
    pub fn max_batches_total(&self) -> u64 {
        self.budget / u64::from(self.batch.max(1))
    }
}

/// `vllm-8.5qps-search7.json`: the `index`-th batch of a search (counted from 1, in order).
pub fn batch_file_name(rate: Rate, index: u32) -> String {
    format!("vllm-{}qps-search{index}.json", rate.label())
}

/// How the search ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Ending {
    /// Goodput lies in `[pass, fail]`, within the tolerance.
    Bracketed { pass: f64, fail: f64 },
    /// Met the target up to `max_rate`: goodput ≥ it.
    AboveMax { pass: f64 },
    /// Missed the target down to `min_rate`.
    BelowMin { fail: f64 },
    /// The request budget ran out; the bracket so far (either end may be missing).
    BudgetSpent {
        pass: Option<f64>,
        fail: Option<f64>,
    },
}

impl Ending {
    /// `goodput between 8.25 and 8.5 req/s`, for humans.
    pub fn describe(&self) -> String {
        let num = |x: f64| {
            let s = format!("{x:.3}");
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        };
        let opt = |x: Option<f64>| x.map_or("-".to_owned(), num);
        match self {
            Ending::Bracketed { pass, fail } => {
                format!("goodput between {} and {} req/s", num(*pass), num(*fail))
            }
            Ending::AboveMax { pass } => {
                format!("meets the target up to max_rate, {} req/s", num(*pass))
            }
            Ending::BelowMin { fail } => format!(
                "misses the target even at {} req/s (min_rate reached)",
                num(*fail)
            ),
            Ending::BudgetSpent { pass, fail } => format!(
                "budget spent: passed up to {}, failed from {} req/s",
                opt(*pass),
                opt(*fail)
            ),
        }
    }
}
