//! The engine in virtual time: the same scheduler as the server, driven by an event loop
//! instead of the clock, so a whole open-loop experiment (simple, or prefill -> decode through
//! a proxy) runs in milliseconds. Used to calibrate profiles and to check the DistServe effect
//! without waiting; the real-time server is checked against it by the tests.

use std::collections::BinaryHeap;

use rand::{Rng, SeedableRng};

use super::frontend::FrontendLoad;
use super::profile::Profile;
use super::scheduler::{NewRequest, SchedConfig, Scheduler};

/// One request of an open-loop schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrival {
    /// Scheduled send time, seconds from the start.
    pub at: f64,
    pub prompt_tokens: u32,
    pub output_tokens: u32,
}

/// What a client measures for one request (from its scheduled send time).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientTiming {
    pub ttft: f64,
    /// (last token - first token) / (tokens - 1); 0 for one-token outputs.
    pub tpot: f64,
    pub tokens: u32,
}

/// Poisson arrivals at `rate` per second until `secs` (the last one may fall just past it),
/// like the open-loop client of the recorded H200 runs: exponential gaps from a seeded generator.
pub fn poisson_arrivals(rate: f64, secs: f64, seed: u64, prompt: u32, output: u32) -> Vec<Arrival> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut t = 0.0;
    let mut out = Vec::new();
    while t < secs {
        let u: f64 = rng.gen_range(f64::EPSILON..1.0);
        t += -u.ln() / rate;
        out.push(Arrival {
            at: t,
            prompt_tokens: prompt,
            output_tokens: output,
        });
    }
    out
}

/// Nearest-rank percentile as the recorded runs' client computed it (p in 0..=1).
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// Latencies a client adds outside the engines: the network hop of each forwarded request.
#[derive(Debug, Clone, Copy)]
pub struct Hops {
    /// Client -> server (or proxy -> instance) and back, per request, seconds.
    pub hop_s: f64,
}

impl Default for Hops {
    fn default() -> Self {
        Hops { hop_s: 0.0005 }
    }
}

struct Instance {
    sched: Scheduler<usize>,
    frontend: FrontendLoad,
    busy_until: Option<f64>,
    wake_at: Option<f64>,
}

impl Instance {
    fn new(p: &Profile, tp: u32) -> Self {
        Instance {
            sched: Scheduler::new(SchedConfig::from_profile(p, tp)),
            frontend: FrontendLoad::new(
                p.timing.frontend_ms * 1e-3,
                p.timing.frontend_serial_ms * 1e-3,
                p.timing.frontend_per_output_token_us * 1e-6,
            ),
            busy_until: None,
            wake_at: None,
        }
    }

    fn next_event(&self) -> Option<f64> {
        self.busy_until.or(self.wake_at)
    }

    /// Start a step at `now` if the instance is free and has work.
    fn kick(&mut self, now: f64) {
        if self.busy_until.is_some() {
            return;
        }
        match self.sched.begin_step(now) {
            Some(st) => {
                self.busy_until = Some(now + st.duration);
                self.wake_at = None;
            }
            None => self.wake_at = self.sched.next_wakeup(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Pending {
    at: f64,
    seq: u64,
    inst: usize,
    req: usize,
    remote_kv: bool,
    max_tokens: u32,
    /// Still to pass the instance's API server (false: reaches the engine now).
    at_frontend: bool,
}

impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Earliest first (BinaryHeap is a max-heap).
        other.at.total_cmp(&self.at).then(other.seq.cmp(&self.seq))
    }
}

/// Run `arrivals` against one `simple` instance.
pub fn simulate_simple(
    p: &Profile,
    tp: u32,
    arrivals: &[Arrival],
    hops: Hops,
) -> Vec<ClientTiming> {
    run(&[Instance::new(p, tp)], arrivals, hops, false)
}

/// Run `arrivals` through a NIXL-style proxy: prefill (max_tokens 1) on one instance, then the
/// decode of the whole output on the other after the KV transfer.
pub fn simulate_pd(
    prefill: (&Profile, u32),
    decode: (&Profile, u32),
    arrivals: &[Arrival],
    hops: Hops,
) -> Vec<ClientTiming> {
    run(
        &[
            Instance::new(prefill.0, prefill.1),
            Instance::new(decode.0, decode.1),
        ],
        arrivals,
        hops,
        true,
    )
}

fn run(insts: &[Instance], arrivals: &[Arrival], hops: Hops, pd: bool) -> Vec<ClientTiming> {
    let mut insts: Vec<Instance> = insts
        .iter()
        .map(|i| Instance {
            sched: Scheduler::new(i.sched.config().clone()),
            frontend: i.frontend.clone(),
            busy_until: None,
            wake_at: None,
        })
        .collect();
    let mut pending = BinaryHeap::new();
    let mut seq = 0u64;
    for (i, a) in arrivals.iter().enumerate() {
        pending.push(Pending {
            at: a.at + hops.hop_s,
            seq,
            inst: 0,
            req: i,
            remote_kv: false,
            max_tokens: if pd { 1 } else { a.output_tokens },
            at_frontend: true,
        });
        seq += 1;
    }
    let mut first = vec![f64::NAN; arrivals.len()];
    let mut last = vec![f64::NAN; arrivals.len()];
    let mut count = vec![0u32; arrivals.len()];
    let client_inst = if pd { 1 } else { 0 };

    loop {
        let t_sub = pending.peek().map(|p: &Pending| p.at);
        let (mut best, mut which) = (f64::INFINITY, None);
        for (k, inst) in insts.iter().enumerate() {
            if let Some(t) = inst.next_event() {
                if t < best {
                    best = t;
                    which = Some(k);
                }
            }
        }
        match (t_sub, which) {
            (Some(ts), _) if ts <= best => {
                let mut p = pending.pop().expect("peeked");
                let inst = &mut insts[p.inst];
                if p.at_frontend {
                    p.at += inst.frontend.delay(p.at);
                    p.at_frontend = false;
                    p.seq = seq;
                    seq += 1;
                    pending.push(p);
                    continue;
                }
                inst.sched.submit(
                    p.at,
                    NewRequest {
                        id: p.req as u64,
                        prompt_tokens: arrivals[p.req].prompt_tokens,
                        max_tokens: p.max_tokens,
                        remote_kv: p.remote_kv,
                        prefix_blocks: Vec::new(),
                        sink: p.req,
                    },
                );
                inst.kick(p.at);
            }
            (_, Some(k)) => {
                let now = best;
                let mut handoffs = Vec::new();
                {
                    let inst = &mut insts[k];
                    if inst.busy_until.take().is_some() {
                        let mut tokens = 0;
                        inst.sched.end_step(now, |req, ev| {
                            tokens += 1;
                            if k == client_inst {
                                if ev.index == 0 {
                                    first[*req] = now;
                                }
                                last[*req] = now;
                                count[*req] += 1;
                            } else if ev.finished {
                                handoffs.push(*req);
                            }
                            true
                        });
                        inst.frontend.record(now, tokens);
                    }
                    inst.wake_at = None;
                    inst.kick(now);
                }
                for req in handoffs {
                    // Prefill answered: the proxy sends the decode request with the KV params.
                    pending.push(Pending {
                        at: now + hops.hop_s,
                        seq,
                        inst: 1,
                        req,
                        remote_kv: true,
                        max_tokens: arrivals[req].output_tokens,
                        at_frontend: true,
                    });
                    seq += 1;
                }
            }
            (None, None) => break,
            (Some(_), None) => unreachable!("handled by the first arm"),
        }
    }

    arrivals
        .iter()
        .enumerate()
        .map(|(i, a)| ClientTiming {
            ttft: first[i] - a.at + hops.hop_s,
            tpot: if count[i] > 1 {
                (last[i] - first[i]) / (count[i] - 1) as f64
            } else {
                0.0
            },
            tokens: count[i],
        })
        .collect()
}

/// TTFT p50 and TPOT p50/p90 in milliseconds.
pub fn summary(t: &[ClientTiming]) -> [f64; 3] {
    let ttft: Vec<f64> = t.iter().map(|c| c.ttft * 1e3).collect();
    let tpot: Vec<f64> = t.iter().map(|c| c.tpot * 1e3).collect();
    [
        percentile(&ttft, 0.5),
        percentile(&tpot, 0.5),
        percentile(&tpot, 0.9),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_completes_with_all_its_tokens() {
        let p = Profile::load("llama3-8b-h200").unwrap();
        let arr = poisson_arrivals(8.0, 5.0, 1, 512, 32);
        for t in simulate_simple(&p, 1, &arr, Hops::default())
            .into_iter()
            .chain(simulate_pd((&p, 1), (&p, 1), &arr, Hops::default()))
        {
            assert_eq!(t.tokens, 32);
            assert!(t.ttft > 0.0 && t.tpot > 0.0);
        }
    }

    #[test]
    fn percentile_is_nearest_rank() {
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 0.5), 2.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.9), 4.0);
    }
}
