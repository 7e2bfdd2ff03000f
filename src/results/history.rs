//! Past runs in a results folder, as the basis of the next plan's time estimates.
//!
//! A past attempt counts for a planned variant when it ran the same variant id (a hash of
//! everything that changes what runs) with the same model, backend, accelerator and simulator
//! profile. Start-up and teardown are the median of the last [`RECENT`] such attempts; a
//! rate's load time is the median of its past runs at the same rate and request count, else
//! the schedule's length plus the variant's past drain time (how long its last requests took
//! after the last send), else the planner's default.

use std::path::{Path, PathBuf};

use super::rundir::{CellTiming, PlanRecord, RunDir, VariantTiming};
use crate::manifest::Rate;
use crate::plan::estimate::{self, Basis, Estimate, VariantEstimate};
use crate::plan::{Pace, Plan};

/// Attempts an estimate takes the median of (the newest).
pub const RECENT: usize = 5;
/// Run folders read at most, newest first (a results folder can hold years of runs).
const MAX_RUN_FOLDERS: usize = 2000;

/// Timing records of past runs.
#[derive(Debug, Default)]
pub struct History {
    /// Newest run first.
    attempts: Vec<PastAttempt>,
    /// Records that could not be read, with the reason.
    pub skipped: Vec<String>,
}

#[derive(Debug)]
struct PastAttempt {
    key: Key,
    timing: VariantTiming,
}

/// What makes a past attempt comparable with a planned variant.
#[derive(Debug, Clone, PartialEq)]
struct Key {
    variant_id: String,
    model: String,
    backend: String,
    accelerator: String,
    sim_profile: Option<String>,
}

/// A name as serde writes it in plan.json (`sim`, `cuda`).
fn serde_name(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl Key {
    fn of_plan(plan: &Plan, variant_id: &str) -> Key {
        Key {
            variant_id: variant_id.to_owned(),
            model: plan.model.clone(),
            backend: serde_name(&plan.backend),
            accelerator: serde_name(&plan.accelerator),
            sim_profile: plan.sim_profile.clone(),
        }
    }

    fn of_record(plan: &PlanRecord, variant_id: &str) -> Key {
        Key {
            variant_id: variant_id.to_owned(),
            model: plan.model.clone(),
            backend: plan.backend.clone(),
            accelerator: plan.accelerator.clone(),
            sim_profile: plan.sim_profile.clone(),
        }
    }
}

/// Run folders under `root` (`<root>/<experiment>/<run>/`), newest first by their timestamp
/// name, at most [`MAX_RUN_FOLDERS`]. Hidden entries and files are not runs.
fn run_folders(root: &Path) -> Vec<PathBuf> {
    let dirs = |p: &Path| -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(p) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            // file_type does not follow links: a linked folder is not walked into.
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect()
    };
    let mut runs: Vec<PathBuf> = dirs(root).iter().flat_map(|e| dirs(e)).collect();
    // Run folders are named `YYYYMMDD_HHMMSS[_N]`: by name is by time, across experiments.
    runs.sort_by_key(|p| std::cmp::Reverse(p.file_name().map(|n| n.to_owned())));
    runs.truncate(MAX_RUN_FOLDERS);
    runs
}

impl History {
    /// Read every run folder under `root` (none is fine: an empty history).
    pub fn scan(root: &Path) -> History {
        let mut history = History::default();
        for run in run_folders(root) {
            let dir = RunDir::open(&run);
            let plan = match dir.read_plan() {
                Ok(Some(plan)) => plan,
                // Not a run folder (no plan.json): nothing to learn from.
                Ok(None) => continue,
                Err(e) => {
                    history.skipped.push(e);
                    continue;
                }
            };
            for variant in &plan.variants {
                // Newest attempt of this run first, like the runs.
                for timing in dir.variant(&variant.id).timings().into_iter().rev() {
                    match timing {
                        Ok(timing) => history.attempts.push(PastAttempt {
                            key: Key::of_record(&plan, &variant.id),
                            timing,
                        }),
                        Err(e) => history.skipped.push(e),
                    }
                }
            }
        }
        history
    }

    /// Past attempts, newest first.
    #[cfg(test)]
    fn from_attempts(attempts: Vec<(Key, VariantTiming)>) -> History {
        History {
            attempts: attempts
                .into_iter()
                .map(|(key, timing)| PastAttempt { key, timing })
                .collect(),
            skipped: Vec::new(),
        }
    }

    /// Replace the plan's default estimates with what past runs of the same variants took.
    pub fn refine(&self, plan: &mut Plan) {
        let variants = plan
            .variants
            .iter()
            .map(|v| {
                let default = plan.estimate.of(&v.id).cloned();
                self.estimate_variant(plan, &v.id)
                    .or(default)
                    .unwrap_or_else(|| VariantEstimate::new(&v.id, 0.0, 0.0, 0.0, Basis::default()))
            })
            .collect();
        plan.estimate = Estimate::from_variants(variants);
    }

    /// The estimate of one variant from its past attempts; None when it has none.
    fn estimate_variant(&self, plan: &Plan, variant_id: &str) -> Option<VariantEstimate> {
        let key = Key::of_plan(plan, variant_id);
        let past: Vec<&VariantTiming> = self
            .attempts
            .iter()
            .filter(|a| a.key == key)
            .map(|a| &a.timing)
            .collect();
        if past.is_empty() {
            return None;
        }
        let default = plan.estimate.of(variant_id)?;
        let mut basis = Basis::default();
        let startups = recent(past.iter().filter_map(|t| t.ready_s));
        let startup_s = match median(&startups) {
            Some(s) => {
                basis.past_attempts = startups.len();
                s
            }
            None => default.startup_s,
        };
        let teardown_s =
            median(&recent(past.iter().filter_map(|t| t.teardown_s))).unwrap_or(default.teardown_s);
        let cells: Vec<&CellTiming> = past.iter().flat_map(|t| t.cells.iter()).collect();
        let drains = recent(cells.iter().filter_map(|c| {
            let rate = Rate::parse_label(&c.rate)?;
            matches!(rate, Rate::PerSecond(_))
                .then(|| c.seconds - estimate::send_s(rate, c.requests + c.warmup))
        }));
        let mut load_s = 0.0;
        if plan.search.is_some() {
            // A search's probes depend on what it measures: the whole load of past searches.
            let searches = recent(
                past.iter()
                    .filter(|t| t.outcome == "completed")
                    .map(|t| t.cells.iter().map(|c| c.seconds).sum::<f64>()),
            );
            match median(&searches) {
                Some(s) => {
                    load_s = s;
                    basis.rates_measured_before = 1;
                }
                None => {
                    load_s = default.load_s;
                    basis.rates_default = 1;
                }
            }
        }
        for cell in plan.cells_of(variant_id) {
            let label = cell.pace.label();
            let same = recent(
                cells
                    .iter()
                    .filter(|c| {
                        c.rate == label && c.requests == cell.requests && c.warmup == plan.warmup
                    })
                    .map(|c| c.seconds),
            );
            load_s += if let Some(s) = median(&same) {
                basis.rates_measured_before += 1;
                s
            } else if let (Some(drain), Pace::Rate(rate @ Rate::PerSecond(_))) =
                (median(&drains), cell.pace)
            {
                basis.rates_scaled += 1;
                estimate::send_s(rate, cell.requests + plan.warmup) + drain.max(0.0)
            } else {
                basis.rates_default += 1;
                estimate::default_pace_s(plan.backend, cell.pace, cell.requests, plan.warmup)
            };
        }
        Some(VariantEstimate::new(
            variant_id, startup_s, load_s, teardown_s, basis,
        ))
    }
}

/// The first [`RECENT`] values (the input is newest first).
fn recent(values: impl Iterator<Item = f64>) -> Vec<f64> {
    values.filter(|v| v.is_finite()).take(RECENT).collect()
}

fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::LoadedManifest;
    use crate::plan::Capacity;

    fn plan(sets: &[&str]) -> Plan {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let loaded: LoadedManifest =
            crate::manifest::load(Path::new("experiments/sim-demo.toml"), &sets).unwrap();
        let capacity = Capacity {
            absent: None,
            gpus: None,
            cpu_cores: None,
            source: "test".into(),
        };
        crate::plan::resolve(&loaded, &capacity).unwrap()
    }

    fn timing(ready: f64, cells: &[(&str, u32, f64)], warmup: u32) -> VariantTiming {
        VariantTiming {
            instances_healthy_s: Some(ready * 0.8),
            ready_s: Some(ready),
            cells: cells
                .iter()
                .map(|(rate, requests, seconds)| CellTiming {
                    rate: (*rate).to_owned(),
                    requests: *requests,
                    warmup,
                    seconds: *seconds,
                })
                .collect(),
            teardown_s: Some(0.3),
            total_s: 0.0,
            outcome: "completed".into(),
            estimated_s: None,
            estimate_basis: None,
        }
    }

    #[test]
    fn medians_of_recent_values() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(recent([1.0, f64::NAN, 2.0].into_iter()), [1.0, 2.0]);
    }

    #[test]
    fn same_variant_same_rates_use_the_past_times() {
        let mut p = plan(&[
            "load.rates=[20, 40]",
            "load.num_prompts=40",
            "load.warmup=2",
        ]);
        let id = p.variants[0].id.clone();
        let key = Key::of_plan(&p, &id);
        // Newest first: start-up 3.0 (newest), 1.0, 2.0 → median 2.0.
        let h = History::from_attempts(vec![
            (
                key.clone(),
                timing(3.0, &[("20", 40, 4.0), ("40", 40, 2.5)], 2),
            ),
            (key.clone(), timing(1.0, &[("20", 40, 5.0)], 2)),
            (key.clone(), timing(2.0, &[("20", 40, 6.0)], 2)),
        ]);
        h.refine(&mut p);
        let e = p.estimate.of(&id).unwrap();
        assert_eq!(e.startup_s, 2.0);
        assert_eq!(e.teardown_s, 0.3);
        // 20 req/s: median(4, 5, 6) = 5; 40 req/s: 2.5.
        assert!((e.load_s - 7.5).abs() < 1e-9, "{e:?}");
        assert_eq!(e.basis.past_attempts, 3);
        assert_eq!(e.basis.rates_measured_before, 2);
        // The other variants keep their defaults.
        assert_eq!(p.estimate.of(&p.variants[1].id).unwrap().basis, {
            Basis {
                rates_default: 2,
                ..Basis::default()
            }
        });
        assert_eq!(p.estimate.from_history(), 1);
    }

    #[test]
    fn a_new_rate_is_scaled_by_the_past_drain() {
        let mut p = plan(&["load.rates=[10]", "load.num_prompts=40", "load.warmup=0"]);
        let id = p.variants[0].id.clone();
        // In the past: 40 requests at 20 req/s (2 s of sending) took 3 s: 1 s of drain.
        let h = History::from_attempts(vec![(
            Key::of_plan(&p, &id),
            timing(1.0, &[("20", 40, 3.0)], 0),
        )]);
        h.refine(&mut p);
        let e = p.estimate.of(&id).unwrap();
        // 40 requests at 10 req/s: 4 s + 1 s.
        assert!((e.load_s - 5.0).abs() < 1e-9, "{e:?}");
        assert_eq!(e.basis.rates_scaled, 1);
    }

    #[test]
    fn another_model_or_backend_is_not_history() {
        let mut p = plan(&["load.rates=[20]"]);
        let id = p.variants[0].id.clone();
        let mut other_model = Key::of_plan(&p, &id);
        other_model.model = "other".into();
        let mut other_backend = Key::of_plan(&p, &id);
        other_backend.backend = "local".into();
        let before = p.estimate.clone();
        History::from_attempts(vec![
            (other_model, timing(9.0, &[("20", 200, 99.0)], 0)),
            (other_backend, timing(9.0, &[("20", 200, 99.0)], 0)),
        ])
        .refine(&mut p);
        assert_eq!(p.estimate, before);
    }

    #[test]
    fn runs_are_read_newest_first_and_unreadable_records_are_named() {
        let root = tempfile::tempdir().unwrap();
        for run in ["20261101_100000", "20261201_100000"] {
            std::fs::create_dir_all(root.path().join("exp").join(run)).unwrap();
        }
        std::fs::create_dir_all(root.path().join("other/20261115_100000")).unwrap();
        std::fs::create_dir_all(root.path().join(".hidden/20261231_000000")).unwrap();
        let names: Vec<String> = run_folders(root.path())
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["20261201_100000", "20261115_100000", "20261101_100000"]
        );
        // A run whose plan.json is not JSON is skipped with its reason.
        std::fs::write(root.path().join("exp/20261201_100000/plan.json"), "{").unwrap();
        let h = History::scan(root.path());
        assert_eq!(h.skipped.len(), 1, "{:?}", h.skipped);
        assert!(h.attempts.is_empty());
    }
}
