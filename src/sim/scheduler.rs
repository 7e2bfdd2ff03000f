//! The continuous-batching scheduler, free of any clock: the drivers (`engine` in real time,
//! `model` in virtual time) tell it what time it is.
//!
//! It follows vLLM's V1 scheduler in the respects that shape latency: every step first gives
//! each running request its share of the token budget (one token per decode, a chunk for a
//! prefill in progress), then admits waiting requests first come, first served while budget,
//! KV blocks and `max_num_seqs` allow (chunked prefill). A step's duration is a function of the
//! prefill tokens and the decode batch in it, so a long prefill slows every decode sharing the
//! step: the interference that prefill/decode disaggregation removes.
//!
//! KV blocks for prompt + max_tokens are reserved at admission, so no request is ever preempted
//! (vLLM allocates lazily and preempts instead; reservation makes the simulator admit slightly
//! fewer requests when the cache is nearly full).
//!
//! With prefix caching (vLLM's default), a request admitted for local prefill starts after the
//! leading blocks of its prompt that an earlier prompt computed ([`PrefixCache`]).

use std::collections::VecDeque;

use super::kv::KvCache;
use super::prefix_cache::PrefixCache;
use super::profile::Profile;

/// Everything the scheduler needs, resolved from a profile and a TP size.
#[derive(Debug, Clone)]
pub struct SchedConfig {
    pub budget: u32,
    pub max_seqs: usize,
    pub block_size: u32,
    pub kv_capacity_tokens: u64,
    /// Step cost terms in seconds, already divided by the TP speed-up.
    pub base_s: f64,
    pub prefill_per_token_s: f64,
    pub prefill_attn_per_token_per_ctx_token_s: f64,
    pub decode_per_seq_s: f64,
    pub decode_per_ctx_token_s: f64,
    pub kv_bytes_per_token: u64,
    pub link_bytes_per_s: f64,
    pub transfer_latency_s: f64,
    /// vLLM's automatic prefix caching (on unless `--no-enable-prefix-caching`).
    pub prefix_caching: bool,
}

impl SchedConfig {
    pub fn from_profile(p: &Profile, tp: u32) -> Self {
        let speedup = p.tp_speedup(tp);
        let t = &p.timing;
        SchedConfig {
            budget: p.max_num_batched_tokens,
            max_seqs: p.max_num_seqs as usize,
            block_size: p.block_size,
            // Each TP rank holds 1/tp of every token's KV: capacity grows with the GPUs.
            kv_capacity_tokens: p.kv_capacity_tokens * tp.max(1) as u64,
            base_s: t.step_base_ms * 1e-3 / speedup,
            prefill_per_token_s: t.prefill_per_token_us * 1e-6 / speedup,
            prefill_attn_per_token_per_ctx_token_s: t.prefill_attn_per_token_per_kctx_us * 1e-9
                / speedup,
            decode_per_seq_s: t.decode_per_seq_us * 1e-6 / speedup,
            decode_per_ctx_token_s: t.decode_per_ctx_token_ns * 1e-9 / speedup,
            kv_bytes_per_token: p.kv_bytes_per_token,
            link_bytes_per_s: p.kv_transfer.bandwidth_gb_s * 1e9,
            transfer_latency_s: p.kv_transfer.latency_ms * 1e-3,
            prefix_caching: true,
        }
    }

    /// Duration of a step with `prefill_tokens` prefill tokens whose attention spans
    /// `prefill_attn` (sum over tokens of the context before them) and `decodes` decode
    /// sequences holding `decode_ctx` context tokens in all.
    pub fn step_time(
        &self,
        prefill_tokens: u64,
        prefill_attn: f64,
        decodes: u64,
        decode_ctx: u64,
    ) -> f64 {
        self.base_s
            + self.prefill_per_token_s * prefill_tokens as f64
            + self.prefill_attn_per_token_per_ctx_token_s * prefill_attn
            + self.decode_per_seq_s * decodes as f64
            + self.decode_per_ctx_token_s * decode_ctx as f64
    }

    /// Time to move the KV of `tokens` tokens over the link, excluding queueing.
    pub fn transfer_time(&self, tokens: u32) -> f64 {
        tokens as f64 * self.kv_bytes_per_token as f64 / self.link_bytes_per_s
    }
}

/// A request handed to the engine.
#[derive(Debug)]
pub struct NewRequest<T> {
    pub id: u64,
    pub prompt_tokens: u32,
    pub max_tokens: u32,
    /// The prompt's KV comes from a remote prefill (NIXL / LMCache consumer): the request
    /// waits for the transfer instead of computing its prefill.
    pub remote_kv: bool,
    /// Hashes of the prompt's full blocks ([`super::prefix_cache::block_hashes`]); empty when
    /// unknown (then nothing is cached for it).
    pub prefix_blocks: Vec<u64>,
    pub sink: T,
}

/// One token produced for one request at the end of a step.
#[derive(Debug, Clone, Copy)]
pub struct TokenEvent {
    /// 0 for the first token.
    pub index: u32,
    pub finished: bool,
    pub prompt_tokens: u32,
    /// When the request reached the engine, and when its previous token was produced.
    pub arrival: f64,
    pub prev: f64,
}

/// What one step contains.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepInfo {
    pub duration: f64,
    pub prefill_tokens: u64,
    pub decodes: u64,
}

/// Cumulative counters, read by /metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// Prompt tokens computed here.
    pub prompt_tokens_local: u64,
    /// Prompt tokens found in the prefix cache.
    pub prompt_tokens_cached: u64,
    pub prompt_tokens_external: u64,
    /// Prompt tokens looked up in the prefix cache, and those found (vLLM's
    /// `prefix_cache_queries` and `prefix_cache_hits`).
    pub prefix_cache_queries: u64,
    pub prefix_cache_hits: u64,
    pub generation_tokens: u64,
    pub finished: u64,
    pub aborted: u64,
    pub kv_transfers: u64,
    /// Bytes and time of those transfers (time: from admission, link queue included, to the
    /// KV's arrival, as vLLM's NIXL worker times a read), and their durations by
    /// [`NIXL_XFER_BUCKETS`] (per bucket, the last one open).
    pub kv_transfer_bytes: u64,
    pub kv_transfer_time_s: f64,
    pub kv_transfer_buckets: [u64; NIXL_XFER_BUCKETS.len() + 1],
    pub steps: u64,
}

/// vLLM's buckets for `vllm:nixl_xfer_time_seconds`, seconds.
pub const NIXL_XFER_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 5.0,
];

struct Req<T> {
    id: u64,
    prompt: u32,
    max_tokens: u32,
    computed: u32,
    generated: u32,
    blocks: u64,
    remote_kv: bool,
    prefix_blocks: Vec<u64>,
    /// Leading prompt tokens taken from the prefix cache.
    cached: u32,
    ready_at: f64,
    /// How long its KV transfer takes, queue on the link included.
    transfer_s: f64,
    arrival: f64,
    last_token: f64,
    scheduled: u32,
    sink: T,
}

/// The scheduler of one instance. `T` is where a request's tokens go.
pub struct Scheduler<T> {
    cfg: SchedConfig,
    kv: KvCache,
    prefix_cache: PrefixCache,
    waiting: VecDeque<Req<T>>,
    transferring: Vec<Req<T>>,
    running: Vec<Req<T>>,
    link_free_at: f64,
    in_step: bool,
    counters: Counters,
}

impl<T> Scheduler<T> {
    pub fn new(cfg: SchedConfig) -> Self {
        let kv = KvCache::new(cfg.kv_capacity_tokens, cfg.block_size);
        Scheduler {
            prefix_cache: PrefixCache::new(kv.total_blocks()),
            kv,
            cfg,
            waiting: VecDeque::new(),
            transferring: Vec::new(),
            running: Vec::new(),
            link_free_at: 0.0,
            in_step: false,
            counters: Counters::default(),
        }
    }

    pub fn config(&self) -> &SchedConfig {
        &self.cfg
    }

    pub fn submit(&mut self, now: f64, r: NewRequest<T>) {
        self.waiting.push_back(Req {
            id: r.id,
            prompt: r.prompt_tokens.max(1),
            max_tokens: r.max_tokens.max(1),
            computed: 0,
            generated: 0,
            blocks: 0,
            remote_kv: r.remote_kv,
            prefix_blocks: r.prefix_blocks,
            cached: 0,
            ready_at: 0.0,
            transfer_s: 0.0,
            arrival: now,
            last_token: now,
            scheduled: 0,
            sink: r.sink,
        });
    }

    /// Remove a request wherever it is (the client went away). Returns whether it was found.
    pub fn abort(&mut self, id: u64) -> bool {
        if let Some(i) = self.waiting.iter().position(|r| r.id == id) {
            self.waiting.remove(i);
        } else if let Some(i) = self.transferring.iter().position(|r| r.id == id) {
            let r = self.transferring.swap_remove(i);
            self.kv.free(r.blocks);
        } else if let Some(i) = self.running.iter().position(|r| r.id == id) {
            let r = self.running.remove(i);
            self.kv.free(r.blocks);
        } else {
            return false;
        }
        self.counters.aborted += 1;
        true
    }

    /// Requests being computed.
    pub fn num_running(&self) -> usize {
        self.running.len()
    }

    /// Requests waiting for admission or for their KV to arrive.
    pub fn num_waiting(&self) -> usize {
        self.waiting.len() + self.transferring.len()
    }

    pub fn kv_usage(&self) -> f64 {
        self.kv.usage()
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.transferring.is_empty() && self.running.is_empty()
    }

    /// When the engine must look again although no step runs (a KV transfer completing).
    pub fn next_wakeup(&self) -> Option<f64> {
        self.transferring
            .iter()
            .map(|r| r.ready_at)
            .min_by(|a, b| a.total_cmp(b))
    }

    /// Compose the next step at time `now`; `None` when there is nothing to compute now.
    pub fn begin_step(&mut self, now: f64) -> Option<StepInfo> {
        debug_assert!(!self.in_step, "begin_step twice without end_step");
        // KV that has arrived: the request runs, with only its last prompt token to compute
        // (vLLM recomputes it to get the logits of the first output token).
        let mut i = 0;
        while i < self.transferring.len() {
            if self.transferring[i].ready_at <= now {
                let mut r = self.transferring.swap_remove(i);
                r.computed = r.prompt - 1;
                self.counters.prompt_tokens_external += r.prompt as u64;
                self.counters.kv_transfers += 1;
                self.counters.kv_transfer_bytes += r.prompt as u64 * self.cfg.kv_bytes_per_token;
                self.counters.kv_transfer_time_s += r.transfer_s;
                let bucket = NIXL_XFER_BUCKETS
                    .iter()
                    .position(|le| r.transfer_s <= *le)
                    .unwrap_or(NIXL_XFER_BUCKETS.len());
                self.counters.kv_transfer_buckets[bucket] += 1;
                self.running.push(r);
            } else {
                i += 1;
            }
        }

        let mut budget = self.cfg.budget;
        let (mut prefill, mut attn, mut decodes, mut ctx) = (0u64, 0f64, 0u64, 0u64);
        for r in self.running.iter_mut() {
            r.scheduled = 0;
            if budget == 0 {
                continue;
            }
            let remaining = r.prompt - r.computed;
            if remaining > 0 {
                let chunk = remaining.min(budget);
                r.scheduled = chunk;
                budget -= chunk;
                prefill += chunk as u64;
                attn += chunk as f64 * (r.computed as f64 + chunk as f64 / 2.0);
            } else {
                r.scheduled = 1;
                budget -= 1;
                decodes += 1;
                ctx += (r.prompt + r.generated) as u64;
            }
        }

        while let Some(front) = self.waiting.front() {
            if self.running.len() + self.transferring.len() >= self.cfg.max_seqs {
                break;
            }
            if !front.remote_kv && budget == 0 {
                break;
            }
            let need = self
                .kv
                .blocks_for(front.prompt as u64 + front.max_tokens as u64);
            if !self.kv.try_alloc(need) {
                break; // first come, first served: nobody overtakes the head of the queue
            }
            let mut r = self.waiting.pop_front().expect("front exists");
            r.blocks = need;
            if r.remote_kv {
                let start = now.max(self.link_free_at);
                let done = start + self.cfg.transfer_time(r.prompt);
                self.link_free_at = done;
                r.ready_at = done + self.cfg.transfer_latency_s;
                r.transfer_s = r.ready_at - now;
                self.transferring.push(r);
                continue;
            }
            if self.cfg.prefix_caching {
                r.cached =
                    self.prefix_cache
                        .hit_tokens(&r.prefix_blocks, r.prompt, self.cfg.block_size);
                r.computed = r.cached;
                self.counters.prefix_cache_queries += r.prompt as u64;
                self.counters.prefix_cache_hits += r.cached as u64;
            }
            let chunk = (r.prompt - r.computed).min(budget);
            r.scheduled = chunk;
            budget -= chunk;
            prefill += chunk as u64;
            attn += chunk as f64 * (r.computed as f64 + chunk as f64 / 2.0);
            self.running.push(r);
        }

        if prefill == 0 && decodes == 0 {
            return None;
        }
        self.in_step = true;
        self.counters.steps += 1;
        Some(StepInfo {
            duration: self.cfg.step_time(prefill, attn, decodes, ctx),
            prefill_tokens: prefill,
            decodes,
        })
    }

    /// Finish the step begun by `begin_step`, at time `now`. `emit` receives every token
    /// produced and returns false when its receiver is gone (the request is then dropped).
    pub fn end_step(&mut self, now: f64, mut emit: impl FnMut(&mut T, TokenEvent) -> bool) {
        if !self.in_step {
            return;
        }
        self.in_step = false;
        let Scheduler {
            running,
            kv,
            counters,
            prefix_cache,
            cfg,
            ..
        } = self;
        running.retain_mut(|r| {
            if r.scheduled == 0 {
                return true;
            }
            let produces = if r.computed < r.prompt {
                r.computed += r.scheduled;
                if r.computed == r.prompt && !r.remote_kv {
                    counters.prompt_tokens_local += (r.prompt - r.cached) as u64;
                    counters.prompt_tokens_cached += r.cached as u64;
                    if cfg.prefix_caching {
                        prefix_cache.insert(&r.prefix_blocks);
                    }
                }
                r.computed == r.prompt
            } else {
                true
            };
            r.scheduled = 0;
            if !produces {
                return true;
            }
            let ev = TokenEvent {
                index: r.generated,
                finished: r.generated + 1 >= r.max_tokens,
                prompt_tokens: r.prompt,
                arrival: r.arrival,
                prev: r.last_token,
            };
            r.generated += 1;
            r.last_token = now;
            counters.generation_tokens += 1;
            let alive = emit(&mut r.sink, ev);
            if ev.finished || !alive {
                kv.free(r.blocks);
                if ev.finished {
                    counters.finished += 1;
                } else {
                    counters.aborted += 1;
                }
                return false;
            }
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SchedConfig {
        SchedConfig {
            budget: 100,
            max_seqs: 8,
            block_size: 16,
            kv_capacity_tokens: 16 * 100,
            base_s: 0.001,
            prefill_per_token_s: 1e-5,
            prefill_attn_per_token_per_ctx_token_s: 0.0,
            decode_per_seq_s: 1e-4,
            decode_per_ctx_token_s: 0.0,
            kv_bytes_per_token: 1000,
            link_bytes_per_s: 1e6,
            transfer_latency_s: 0.0,
            prefix_caching: true,
        }
    }

    fn req(id: u64, prompt: u32, max_tokens: u32, remote_kv: bool) -> NewRequest<Vec<TokenEvent>> {
        NewRequest {
            id,
            prompt_tokens: prompt,
            max_tokens,
            remote_kv,
            prefix_blocks: Vec::new(),
            sink: Vec::new(),
        }
    }

    /// A request whose prompt is `shared` tokens common to every such request, then its own.
    fn with_prefix(id: u64, shared: u32, own: u32) -> NewRequest<Vec<TokenEvent>> {
        let ids: Vec<u32> = (0..shared)
            .chain((0..own).map(|i| 1_000_000 * id as u32 + i))
            .collect();
        NewRequest {
            prefix_blocks: super::super::prefix_cache::block_hashes(&ids, 16),
            ..req(id, shared + own, 2, false)
        }
    }

    #[test]
    fn a_cached_prefix_is_not_prefilled_again_and_the_first_token_comes_sooner() {
        let ttft = |caching: bool| {
            let mut s = Scheduler::new(SchedConfig {
                prefix_caching: caching,
                ..cfg()
            });
            s.submit(0.0, with_prefix(1, 320, 40));
            let t = drain(&mut s, 0.0);
            s.submit(t, with_prefix(2, 320, 40));
            let mut now = t;
            let mut first = None;
            while first.is_none() {
                let info = s.begin_step(now).expect("work to do");
                now += info.duration;
                s.end_step(now, |_, ev| {
                    if ev.index == 0 {
                        first = Some(now - t);
                    }
                    true
                });
            }
            (first.unwrap(), s.counters())
        };
        let (cold, c) = ttft(false);
        assert_eq!((c.prefix_cache_queries, c.prefix_cache_hits), (0, 0));
        let (warm, c) = ttft(true);
        // 320 shared tokens = 20 blocks; the second request computes only its 40 own tokens.
        assert_eq!(c.prefix_cache_queries, 720);
        assert_eq!(c.prefix_cache_hits, 320);
        assert_eq!(c.prompt_tokens_cached, 320);
        assert_eq!(c.prompt_tokens_local, 360 + 40);
        assert!(
            warm < cold / 3.0,
            "cached prefix: TTFT {warm} s vs {cold} s"
        );
    }

    /// Run until idle; returns the time it became idle.
    fn drain(s: &mut Scheduler<Vec<TokenEvent>>, mut now: f64) -> f64 {
        loop {
            match s.begin_step(now) {
                Some(info) => {
                    now += info.duration;
                    s.end_step(now, |sink, ev| {
                        sink.push(ev);
                        true
                    });
                }
                None => match s.next_wakeup() {
                    Some(t) => now = t,
                    None => return now,
                },
            }
        }
    }

    #[test]
    fn long_prompt_is_chunked_under_the_budget() {
        let mut s = Scheduler::new(cfg());
        s.submit(0.0, req(1, 250, 2, false));
        let a = s.begin_step(0.0).unwrap();
        assert_eq!(a.prefill_tokens, 100);
        s.end_step(a.duration, |_, _| true);
        let b = s.begin_step(a.duration).unwrap();
        assert_eq!(b.prefill_tokens, 100);
        s.end_step(1.0, |_, _| true);
        let c = s.begin_step(1.0).unwrap();
        assert_eq!((c.prefill_tokens, c.decodes), (50, 0));
        let mut first = None;
        s.end_step(2.0, |_, ev| {
            first = Some(ev.index);
            true
        });
        assert_eq!(
            first,
            Some(0),
            "the step that completes the prefill yields the first token"
        );
        let d = s.begin_step(2.0).unwrap();
        assert_eq!((d.prefill_tokens, d.decodes), (0, 1));
    }

    #[test]
    fn decodes_share_steps_with_prefill_chunks() {
        let mut s = Scheduler::new(cfg());
        s.submit(0.0, req(1, 10, 50, false));
        let a = s.begin_step(0.0).unwrap();
        s.end_step(a.duration, |_, _| true);
        s.submit(0.0, req(2, 300, 5, false));
        let b = s.begin_step(0.1).unwrap();
        assert_eq!((b.prefill_tokens, b.decodes), (99, 1));
        assert!(b.duration > a.duration);
    }

    #[test]
    fn full_kv_cache_makes_requests_wait_until_blocks_free() {
        let mut s = Scheduler::new(cfg());
        // 100 blocks of 16 tokens: two requests of 50 blocks fill it.
        s.submit(0.0, req(1, 400, 400, false));
        s.submit(0.0, req(2, 400, 400, false));
        s.submit(0.0, req(3, 16, 16, false));
        let a = s.begin_step(0.0).unwrap();
        assert_eq!(
            s.num_running(),
            1,
            "budget 100 < 400: one prefill in flight"
        );
        s.end_step(a.duration, |_, _| true);
        for _ in 0..10 {
            let st = s.begin_step(0.0).unwrap();
            s.end_step(st.duration, |_, _| true);
        }
        assert_eq!(s.num_running(), 2);
        assert_eq!(s.num_waiting(), 1, "third request waits for KV blocks");
        assert!((s.kv_usage() - 1.0).abs() < 1e-9);
        assert!(s.abort(1));
        let st = s.begin_step(0.0).unwrap();
        s.end_step(st.duration, |_, _| true);
        assert_eq!(s.num_waiting(), 0);
    }

    #[test]
    fn remote_kv_waits_for_transfer_and_skips_prefill() {
        let mut s = Scheduler::new(cfg());
        s.submit(0.0, req(1, 100, 3, true));
        assert!(
            s.begin_step(0.0).is_none(),
            "nothing to compute while the KV moves"
        );
        let ready = s.next_wakeup().unwrap();
        assert!(
            (ready - 0.1).abs() < 1e-9,
            "100 tokens x 1000 B at 1 MB/s = 0.1 s, got {ready}"
        );
        let st = s.begin_step(ready).unwrap();
        assert_eq!(
            st.prefill_tokens, 1,
            "only the last prompt token is recomputed"
        );
        s.end_step(ready + st.duration, |_, _| true);
        drain(&mut s, ready + st.duration);
        let c = s.counters();
        assert_eq!(c.prompt_tokens_external, 100);
        assert_eq!(c.prompt_tokens_local, 0);
        assert_eq!(c.kv_transfers, 1);
    }

    #[test]
    fn transfers_queue_on_the_link() {
        let mut s = Scheduler::new(cfg());
        s.submit(0.0, req(1, 100, 3, true));
        s.submit(0.0, req(2, 100, 3, true));
        assert!(s.begin_step(0.0).is_none());
        let mut ready: Vec<f64> = s.transferring.iter().map(|r| r.ready_at).collect();
        ready.sort_by(f64::total_cmp);
        assert!(
            (ready[1] - 0.2).abs() < 1e-9,
            "second transfer waits for the first: {ready:?}"
        );
    }

    #[test]
    fn a_dropped_receiver_frees_the_request() {
        let mut s = Scheduler::new(cfg());
        s.submit(0.0, req(1, 10, 100, false));
        let st = s.begin_step(0.0).unwrap();
        s.end_step(st.duration, |_, _| false);
        assert!(s.is_idle());
        assert_eq!(s.kv_usage(), 0.0);
        assert_eq!(s.counters().aborted, 1);
    }
}
