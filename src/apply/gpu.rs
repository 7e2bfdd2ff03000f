//! What each GPU did during a cell, from the telemetry samples (`exec::gpu_telemetry`), and
//! the warning when one slowed itself down.

use crate::exec::gpu_telemetry::{self, GpuSample};
use crate::load::result::GpuTelemetry;
use crate::plan::table::thousands;
use crate::report::attainment::fmt_num;

/// One entry per GPU that answered, by index.
pub fn summarize(samples: &[GpuSample]) -> Vec<GpuTelemetry> {
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
            }
        })
        .collect()
}

/// A GPU that protected itself (thermal or hardware slowdown, power brake) ran below full
/// speed: name it, with how far its clock fell (`None` when none did).
pub fn slowdown_warning(gpus: &[GpuTelemetry]) -> Option<String> {
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
    fn each_gpu_is_summarized_and_only_a_protective_slowdown_warns() {
        let samples = vec![
            GpuSample {
                t_s: 0.0,
                readings: vec![reading(1, 1980.0, 0), reading(0, 1980.0, 0x4)],
            },
            GpuSample {
                t_s: 1.0,
                readings: vec![reading(1, 1200.0, 0x40), reading(0, 1780.0, 0x4)],
            },
        ];
        let g = summarize(&samples);
        assert_eq!(g.iter().map(|x| x.index).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(g[0].samples, 2);
        assert_eq!(g[0].sm_clock_min_mhz, Some(1780.0));
        assert_eq!(g[0].sm_clock_mean_mhz, Some(1880.0));
        assert_eq!(g[0].slowdowns, ["power cap"]);
        assert_eq!(g[1].power_max_w, Some(619.8));
        assert_eq!(g[1].temp_max_c, Some(99.0));
        assert_eq!(g[1].slowdowns, ["hardware thermal slowdown"]);
        assert_eq!(
            slowdown_warning(&g).unwrap(),
            "the driver slowed a GPU down to protect it during this rate: GPU 1 (hardware \
             thermal slowdown): SM clock down to 1,200 MHz of 1,980, up to 99 °C. Its \
             latencies include the slowdown; cooling or power, not the deployment, may set them"
        );
        // A power cap alone is the GPU's normal power management: recorded, not warned of.
        assert_eq!(slowdown_warning(&g[..1]), None);
        assert!(summarize(&[]).is_empty());
    }
}
