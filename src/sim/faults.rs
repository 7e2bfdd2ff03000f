//! Fault injection, so reliability paths (failed requests, cut streams, slow start, crashes,
//! hangs) can be tested against a server that fails on purpose, as a client would see it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

/// Which faults a simulated server injects (`vbench sim-serve --fail-fraction ...`).
#[derive(Debug, Clone, Default)]
pub struct FaultSpec {
    /// Answer this fraction of generation requests with HTTP 500.
    pub fail_fraction: f64,
    /// Cut this fraction of streams (connection closed mid-response, no [DONE]).
    pub cut_fraction: f64,
    /// A cut stream is closed after this many tokens.
    pub cut_after_tokens: u32,
    /// Never answer this fraction of generation requests (the request hangs).
    pub hang_fraction: f64,
    /// Answer 503 to /health (and every other route) for the first T seconds: a slow start.
    pub unhealthy_for: Option<f64>,
    /// Exit (crash, status 1) when generation request N+1 arrives.
    pub crash_after_requests: Option<u64>,
    /// Exit (crash, status 1) T seconds after start.
    pub crash_after: Option<f64>,
    /// After T seconds stop answering anything, /health included (a wedged server).
    pub hang_after: Option<f64>,
    /// Seed of the fault draws.
    pub fault_seed: u64,
    /// A decoder's KV taken by transfer is garbage: its greedy answers differ from what one
    /// instance would say for the same prompt.
    pub corrupt_kv: bool,
    /// An LMCache producer stops reporting finished KV transfers to the proxy after this many
    /// requests (as when its transfers to the decoder fail).
    pub drop_kv_notifications_after: Option<u64>,
    /// A decoder takes the KV offered by transfer for its first N requests only and prefills
    /// every later prompt itself (vLLM's recompute fallback when transfers fail).
    pub recompute_kv_after: Option<u64>,
}

impl FaultSpec {
    pub fn check(&self) -> anyhow::Result<()> {
        for (name, v) in [
            ("--fail-fraction", self.fail_fraction),
            ("--cut-fraction", self.cut_fraction),
            ("--hang-fraction", self.hang_fraction),
        ] {
            if !(0.0..=1.0).contains(&v) {
                anyhow::bail!("{name} must be between 0 and 1, got {v}");
            }
        }
        if self.fail_fraction + self.cut_fraction + self.hang_fraction > 1.0 + 1e-9 {
            anyhow::bail!("--fail-fraction + --cut-fraction + --hang-fraction must not exceed 1");
        }
        for (name, v) in [
            ("--unhealthy-for", self.unhealthy_for),
            ("--crash-after", self.crash_after),
            ("--hang-after", self.hang_after),
        ] {
            if let Some(v) = v {
                if !v.is_finite() || v < 0.0 {
                    anyhow::bail!("{name} must be a number of seconds >= 0, got {v}");
                }
            }
        }
        Ok(())
    }
}

/// What happens to one generation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFault {
    None,
    Fail,
    Cut {
        after_tokens: u32,
    },
    Hang,
    /// The server crashes on this request.
    Crash,
}

/// Live fault state of a server.
#[derive(Debug)]
pub struct Faults {
    args: FaultSpec,
    start: Instant,
    rng: Mutex<rand::rngs::StdRng>,
    requests: AtomicU64,
    crashed: AtomicBool,
}

impl Faults {
    pub fn new(args: FaultSpec) -> Self {
        Faults {
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(args.fault_seed)),
            args,
            start: Instant::now(),
            requests: AtomicU64::new(0),
            crashed: AtomicBool::new(false),
        }
    }

    pub fn unhealthy(&self) -> bool {
        self.args
            .unhealthy_for
            .is_some_and(|t| self.start.elapsed() < Duration::from_secs_f64(t))
    }

    pub fn hung(&self) -> bool {
        self.args
            .hang_after
            .is_some_and(|t| self.start.elapsed() >= Duration::from_secs_f64(t))
    }

    /// When the timed crash is due, if any.
    pub fn crash_deadline(&self) -> Option<Instant> {
        self.args
            .crash_after
            .map(|t| self.start + Duration::from_secs_f64(t))
    }

    pub fn mark_crashed(&self) {
        self.crashed.store(true, Ordering::SeqCst);
    }

    pub fn crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    /// Draw the fate of the next generation request.
    pub fn draw(&self) -> RequestFault {
        let n = self.requests.fetch_add(1, Ordering::SeqCst) + 1;
        if self
            .args
            .crash_after_requests
            .is_some_and(|limit| n > limit)
        {
            return RequestFault::Crash;
        }
        let a = &self.args;
        if a.fail_fraction + a.cut_fraction + a.hang_fraction <= 0.0 {
            return RequestFault::None;
        }
        let u: f64 = self.rng.lock().unwrap_or_else(|e| e.into_inner()).gen();
        if u < a.fail_fraction {
            RequestFault::Fail
        } else if u < a.fail_fraction + a.cut_fraction {
            RequestFault::Cut {
                after_tokens: a.cut_after_tokens,
            }
        } else if u < a.fail_fraction + a.cut_fraction + a.hang_fraction {
            RequestFault::Hang
        } else {
            RequestFault::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_are_drawn_in_proportion() {
        let f = Faults::new(FaultSpec {
            fail_fraction: 0.2,
            cut_fraction: 0.3,
            ..Default::default()
        });
        let mut fail = 0;
        let mut cut = 0;
        for _ in 0..10_000 {
            match f.draw() {
                RequestFault::Fail => fail += 1,
                RequestFault::Cut { .. } => cut += 1,
                _ => {}
            }
        }
        assert!((1800..2200).contains(&fail), "{fail}");
        assert!((2700..3300).contains(&cut), "{cut}");
    }

    #[test]
    fn crash_comes_on_the_request_after_the_limit() {
        let f = Faults::new(FaultSpec {
            crash_after_requests: Some(2),
            ..Default::default()
        });
        assert_eq!(f.draw(), RequestFault::None);
        assert_eq!(f.draw(), RequestFault::None);
        assert_eq!(f.draw(), RequestFault::Crash);
    }

    #[test]
    fn bad_fractions_are_refused() {
        let a = FaultSpec {
            fail_fraction: 0.7,
            cut_fraction: 0.7,
            ..Default::default()
        };
        assert!(a.check().is_err());
    }
}
