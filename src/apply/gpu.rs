//! What each GPU did during a cell, from the telemetry samples (`exec::gpu_telemetry`).

use crate::exec::gpu_telemetry::{self, GpuSample};
use crate::load::result::{GpuProcess, GpuTelemetry};

/// One entry per GPU that answered, by index. `ours`: whether a pid belongs to the deployment
/// (its process groups). Other compute processes are named only when some listed process is
/// ours: `nvidia-smi` in a container can list pids of another PID namespace, and then none
/// can be told apart.
pub fn summarize(samples: &[GpuSample], ours: &dyn Fn(u32) -> bool) -> Vec<GpuTelemetry> {
    let listed: Vec<(u32, u32, u64)> = samples
        .iter()
        .flat_map(|s| s.apps.iter().flatten().copied())
        .collect();
    let comparable = listed.iter().any(|&(_, pid, _)| ours(pid));
    let mut indices: Vec<u32> = samples
        .iter()
        .flat_map(|s| s.readings.iter().map(|r| r.index))
        .collect();
    indices.sort_unstable();
    indices.dedup();
    indices
        .into_iter()
        .map(|index| {
            let readings: Vec<_> = samples
                .iter()
                .flat_map(|s| s.readings.iter().filter(move |r| r.index == index))
                .collect();
            let values = |f: fn(&gpu_telemetry::GpuReading) -> Option<f64>| -> Vec<f64> {
                readings.iter().filter_map(|r| f(r)).collect()
            };
            let mean =
                |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
            let min = |v: Vec<f64>| v.into_iter().reduce(f64::min);
            let max = |v: Vec<f64>| v.into_iter().reduce(f64::max);
            let mut slowdowns: Vec<String> = Vec::new();
            for r in &readings {
                for reason in gpu_telemetry::slowdowns(r.clock_reasons.unwrap_or(0)) {
                    if !slowdowns.iter().any(|s| s == reason) {
                        slowdowns.push(reason.to_owned());
                    }
                }
            }
            let mut other_processes: Vec<GpuProcess> = Vec::new();
            for &(_, pid, mib) in listed.iter().filter(|(g, _, _)| *g == index) {
                if !comparable || ours(pid) {
                    continue;
                }
                match other_processes.iter_mut().find(|p| p.pid == pid) {
                    Some(p) => p.used_mib = p.used_mib.max(mib),
                    None => other_processes.push(GpuProcess { pid, used_mib: mib }),
                }
            }
            GpuTelemetry {
                index,
                samples: readings.len() as u32,
                util_mean_pct: mean(values(|r| r.util_pct)),
                sm_clock_min_mhz: min(values(|r| r.sm_clock_mhz)),
                sm_clock_mean_mhz: mean(values(|r| r.sm_clock_mhz)),
                sm_clock_max_mhz: max(values(|r| r.max_sm_clock_mhz)),
                power_mean_w: mean(values(|r| r.power_w)),
                power_max_w: max(values(|r| r.power_w)),
                temp_max_c: max(values(|r| r.temp_c)),
                memory_used_max_mib: max(values(|r| r.memory_used_mib)),
                slowdowns,
                other_processes,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::gpu_telemetry::GpuReading;

    fn reading(index: u32, clock: f64, reasons: u64) -> GpuReading {
        GpuReading {
            index,
            util_pct: Some(90.0),
            sm_clock_mhz: Some(clock),
            max_sm_clock_mhz: Some(1980.0),
            power_w: Some(600.0 + clock / 100.0),
            temp_c: Some(clock / 20.0),
            memory_used_mib: Some(80_000.0),
            clock_reasons: Some(reasons),
        }
    }

    #[test]
    fn each_gpu_is_summarized_with_every_slowdown_reason_it_gave() {
        let samples = vec![
            GpuSample {
                t_s: 0.0,
                readings: vec![reading(1, 1980.0, 0), reading(0, 1980.0, 0x4)],
                // Ours (pid 100) on both, another process on GPU 1.
                apps: Some(vec![(0, 100, 70_000), (1, 100, 70_000), (1, 4242, 900)]),
            },
            GpuSample {
                t_s: 1.0,
                readings: vec![reading(1, 1200.0, 0x40), reading(0, 1780.0, 0x4)],
                apps: Some(vec![(1, 4242, 1200)]),
            },
        ];
        let ours = |pid: u32| pid == 100;
        let g = summarize(&samples, &ours);
        assert_eq!(g.iter().map(|x| x.index).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(g[0].samples, 2);
        assert_eq!(g[0].sm_clock_min_mhz, Some(1780.0));
        assert_eq!(g[0].sm_clock_mean_mhz, Some(1880.0));
        assert_eq!(g[0].slowdowns, ["power cap"]);
        assert_eq!(g[1].power_max_w, Some(619.8));
        assert_eq!(g[1].temp_max_c, Some(99.0));
        assert_eq!(g[1].slowdowns, ["hardware thermal slowdown"]);
        assert!(g[0].other_processes.is_empty());
        assert_eq!(
            g[1].other_processes,
            [GpuProcess {
                pid: 4242,
                used_mib: 1200
            }]
        );
        // No listed process is ours (pids of another namespace): none is named.
        let strangers = |_: u32| false;
        assert!(summarize(&samples, &strangers)
            .iter()
            .all(|g| g.other_processes.is_empty()));
        assert!(summarize(&[], &ours).is_empty());
    }
}
