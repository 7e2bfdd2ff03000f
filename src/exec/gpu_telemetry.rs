//! What the GPUs did while a rate ran: `nvidia-smi --query-gpu` once a second (utilisation,
//! SM clock against its maximum, power, temperature, memory, and the reasons the driver gave
//! for holding the clocks down), so a reader can tell a slow deployment from a hot or
//! power-capped GPU.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::gpus::GpuProbe;
use super::probe::StopFlag;

/// The fields asked of `nvidia-smi --query-gpu`, in order. Drivers before 535 call the last
/// one `clocks_throttle_reasons.active` ([`QUERY_OLD_DRIVER`]).
pub const QUERY: &str = "index,utilization.gpu,clocks.sm,clocks.max.sm,power.draw,\
                         temperature.gpu,memory.used,clocks_event_reasons.active";
pub const QUERY_OLD_DRIVER: &str = "index,utilization.gpu,clocks.sm,clocks.max.sm,power.draw,\
                                    temperature.gpu,memory.used,clocks_throttle_reasons.active";

/// One GPU at one moment. A field the driver did not give (`[N/A]`, `[Not Supported]`) is
/// `None`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GpuReading {
    pub index: u32,
    pub util_pct: Option<f64>,
    pub sm_clock_mhz: Option<f64>,
    pub max_sm_clock_mhz: Option<f64>,
    pub power_w: Option<f64>,
    pub temp_c: Option<f64>,
    pub memory_used_mib: Option<f64>,
    /// The driver's bit mask of why clocks are below their maximum.
    pub clock_reasons: Option<u64>,
}

/// All GPUs asked, at `t_s` seconds after sampling began.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuSample {
    pub t_s: f64,
    pub readings: Vec<GpuReading>,
    /// (GPU, pid, used MiB) of every compute process, on every [`APPS_EVERY`]th sample.
    pub apps: Option<Vec<(u32, u32, u64)>>,
}

/// The compute processes are listed on the first sample and every this many after (two more
/// `nvidia-smi` calls each time).
pub const APPS_EVERY: usize = 5;

/// Parse `nvidia-smi --query-gpu=QUERY --format=csv,noheader,nounits` output; lines that do
/// not have the fields (a driver message, a cut line) are skipped.
pub fn parse(csv: &str) -> Vec<GpuReading> {
    csv.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            if f.len() != 8 {
                return None;
            }
            let num = |s: &str| s.parse::<f64>().ok().filter(|x| x.is_finite());
            Some(GpuReading {
                index: f[0].parse().ok()?,
                util_pct: num(f[1]),
                sm_clock_mhz: num(f[2]),
                max_sm_clock_mhz: num(f[3]),
                power_w: num(f[4]),
                temp_c: num(f[5]),
                memory_used_mib: num(f[6]),
                clock_reasons: f[7]
                    .strip_prefix("0x")
                    .and_then(|h| u64::from_str_radix(h, 16).ok()),
            })
        })
        .collect()
}

/// The driver's clock-event reasons (NVML's `nvmlClocksEventReason*` bits) that slow a busy
/// GPU down, by name, and whether each is the GPU protecting itself (heat, a failing supply)
/// rather than its normal power management: a rate under a protective one did not measure the
/// deployment at full speed. Idle, application-clock and display settings are left out: they
/// say nothing about a loaded GPU.
const SLOWDOWNS: &[(u64, &str, bool)] = &[
    (0x4, "power cap", false),
    (0x8, "hardware slowdown", true),
    (0x10, "sync boost", false),
    (0x20, "software thermal slowdown", true),
    (0x40, "hardware thermal slowdown", true),
    (0x80, "hardware power brake", true),
];

/// The reasons in a mask that slow a busy GPU, by name.
pub fn slowdowns(mask: u64) -> Vec<&'static str> {
    SLOWDOWNS
        .iter()
        .filter(|(bit, _, _)| mask & bit != 0)
        .map(|(_, name, _)| *name)
        .collect()
}

/// Whether a reason (a name [`slowdowns`] gives) is the GPU protecting itself.
pub fn is_protective(reason: &str) -> bool {
    SLOWDOWNS
        .iter()
        .any(|(_, name, protective)| *protective && *name == reason)
}

/// Ask `probe` for `gpus` every `period` until the flag is raised (or dropped: an early return
/// cannot leave it asking); the handle yields every sample taken. Runs on a blocking thread
/// (each `nvidia-smi` call takes tens of ms), and a query under way when the flag goes up is
/// killed, not waited for.
pub fn spawn_sampler(
    probe: Arc<dyn GpuProbe>,
    gpus: Vec<u32>,
    period: Duration,
) -> (StopFlag, tokio::task::JoinHandle<Vec<GpuSample>>) {
    let flag = StopFlag::new();
    let stopped = flag.watcher();
    let handle = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let mut samples = Vec::new();
        while !stopped() {
            let asked = Instant::now();
            match probe.telemetry(&gpus, &stopped) {
                Some(readings) if !readings.is_empty() => {
                    let apps = (samples.len() % APPS_EVERY == 0)
                        .then(|| probe.busy(&stopped))
                        .flatten();
                    samples.push(GpuSample {
                        t_s: start.elapsed().as_secs_f64(),
                        readings,
                        apps,
                    })
                }
                // No nvidia-smi, or it failed: nothing to sample, and no point asking again.
                _ if samples.is_empty() => break,
                _ => {}
            }
            let next = asked + period;
            while !stopped() && Instant::now() < next {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        samples
    });
    (flag, handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_lines_parse_and_missing_fields_are_none() {
        // An idle H200's answer, verbatim (driver 580.159.04, on the device tool's machine);
        // then a line made up with fields a driver did not give, and a driver message.
        let text = "0, 0, 345, 1980, 81.04, 36, 0, 0x0000000000000001\n\
                    1, [N/A], 1755, 1980, [Not Supported], 88, 100, 0x0000000000000044\n\
                    No devices were found\n";
        let r = parse(text);
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0],
            GpuReading {
                index: 0,
                util_pct: Some(0.0),
                sm_clock_mhz: Some(345.0),
                max_sm_clock_mhz: Some(1980.0),
                power_w: Some(81.04),
                temp_c: Some(36.0),
                memory_used_mib: Some(0.0),
                clock_reasons: Some(1),
            }
        );
        // Idle is not a slowdown.
        assert!(slowdowns(r[0].clock_reasons.unwrap()).is_empty());
        assert_eq!((r[1].util_pct, r[1].power_w), (None, None));
        assert_eq!(r[1].clock_reasons, Some(0x44));
        assert_eq!(slowdowns(0x44), ["power cap", "hardware thermal slowdown"]);
        assert!(is_protective("hardware thermal slowdown") && !is_protective("power cap"));
        // Idle (0x1) and application clocks (0x2) are not slowdowns of a busy GPU.
        assert!(slowdowns(0x3).is_empty());
    }

    use std::sync::atomic::Ordering;

    struct Counting(std::sync::atomic::AtomicU32, bool);
    impl GpuProbe for Counting {
        fn busy(&self, _stop: &dyn Fn() -> bool) -> Option<Vec<(u32, u32, u64)>> {
            None
        }
        fn telemetry(&self, gpus: &[u32], _stop: &dyn Fn() -> bool) -> Option<Vec<GpuReading>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            self.1.then(|| {
                gpus.iter()
                    .map(|&index| GpuReading {
                        index,
                        ..Default::default()
                    })
                    .collect()
            })
        }
    }

    #[tokio::test]
    async fn the_sampler_asks_each_period_until_stopped_and_gives_up_without_nvidia_smi() {
        let probe = Arc::new(Counting(Default::default(), true));
        let (stop, handle) = spawn_sampler(probe.clone(), vec![0, 3], Duration::from_millis(50));
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.raise();
        let samples = handle.await.unwrap();
        assert!((3..=8).contains(&samples.len()), "{}", samples.len());
        assert!(samples.iter().all(|s| s.readings.len() == 2));
        assert!(samples.windows(2).all(|w| w[1].t_s > w[0].t_s));
        // A probe that cannot answer is asked once.
        let none = Arc::new(Counting(Default::default(), false));
        let (_stop, handle) = spawn_sampler(none.clone(), vec![0], Duration::from_millis(10));
        assert!(handle.await.unwrap().is_empty());
        assert_eq!(none.0.load(Ordering::SeqCst), 1);
        // Dropping the stopper stops the sampler.
        let (stop, handle) = spawn_sampler(probe, vec![0], Duration::from_millis(10));
        drop(stop);
        tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .expect("stopped")
            .unwrap();
    }

    /// Answers its first query, then hangs in every later one until told to stop.
    struct WedgesAfterOne(std::sync::atomic::AtomicU32);
    impl GpuProbe for WedgesAfterOne {
        fn busy(&self, _stop: &dyn Fn() -> bool) -> Option<Vec<(u32, u32, u64)>> {
            None
        }
        fn telemetry(&self, _gpus: &[u32], stop: &dyn Fn() -> bool) -> Option<Vec<GpuReading>> {
            if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
                return Some(vec![GpuReading::default()]);
            }
            let t0 = Instant::now();
            while !stop() && t0.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(10));
            }
            None
        }
    }

    #[tokio::test]
    async fn stopping_the_sampler_cuts_a_hanging_query_short() {
        let probe = Arc::new(WedgesAfterOne(Default::default()));
        let (stop, handle) = spawn_sampler(probe.clone(), vec![0], Duration::from_millis(10));
        while probe.0.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The second query is hanging now.
        stop.raise();
        let samples = tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .expect("the sampler ended without waiting out its query")
            .unwrap();
        assert_eq!(samples.len(), 1);
    }
}
