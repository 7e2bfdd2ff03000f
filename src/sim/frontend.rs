//! The API server in front of the engine. vLLM's is one Python process that tokenises each
//! request and then handles every output token of every stream; under load it is busy, and a
//! new request waits for it. The simulator models this as a fixed per-request cost inflated by
//! the server's utilisation from recent token output: delay = frontend / (1 - rho), with
//! rho = output tokens per second x cost per token (capped at 0.9). This is what makes TTFT
//! grow with load on the reference machine even where the GPU has room.

use std::collections::VecDeque;

/// Recent output-token throughput of one instance and the delay it implies.
#[derive(Debug, Clone)]
pub struct FrontendLoad {
    base_s: f64,
    serial_s: f64,
    per_token_s: f64,
    window_s: f64,
    tokens_in_window: u64,
    steps: VecDeque<(f64, u64)>,
    /// When the API server is done with the requests already given to it.
    free_at: f64,
}

impl FrontendLoad {
    /// `base_s`: latency every request pays (in parallel with others); `serial_s`: work the
    /// API server does for one request at a time (a burst of requests queues for it);
    /// `per_token_s`: its work per output token, which inflates both.
    pub fn new(base_s: f64, serial_s: f64, per_token_s: f64) -> Self {
        FrontendLoad {
            base_s,
            serial_s,
            per_token_s,
            window_s: 1.0,
            tokens_in_window: 0,
            steps: VecDeque::new(),
            free_at: 0.0,
        }
    }

    /// `tokens` output tokens were produced at `now`.
    pub fn record(&mut self, now: f64, tokens: u64) {
        if tokens == 0 {
            return;
        }
        self.steps.push_back((now, tokens));
        self.tokens_in_window += tokens;
        self.expire(now);
    }

    fn expire(&mut self, now: f64) {
        while let Some(&(t, n)) = self.steps.front() {
            if now - t > self.window_s {
                self.steps.pop_front();
                self.tokens_in_window -= n;
            } else {
                break;
            }
        }
    }

    /// Utilisation of the API server by token handling, 0..=0.9.
    pub fn utilisation(&mut self, now: f64) -> f64 {
        self.expire(now);
        let rate = self.tokens_in_window as f64 / self.window_s;
        (rate * self.per_token_s).min(0.9)
    }

    /// Delay of a request arriving at `now` before the engine sees it: requests are handled
    /// one at a time, so a burst queues.
    pub fn delay(&mut self, now: f64) -> f64 {
        let inflate = 1.0 / (1.0 - self.utilisation(now));
        let done = self.free_at.max(now) + self.serial_s * inflate;
        self.free_at = done;
        done - now + self.base_s * inflate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_grows_with_recent_token_output_and_recovers() {
        let mut f = FrontendLoad::new(0.010, 0.0, 0.0005);
        assert!((f.delay(0.0) - 0.010).abs() < 1e-12);
        assert!(
            (f.delay(0.0) - 0.010).abs() < 1e-12,
            "no serial part: no queue"
        );
        for i in 0..100 {
            f.record(i as f64 * 0.01, 10); // 1000 tokens/s -> rho 0.5
        }
        let loaded = f.delay(1.0);
        assert!((loaded - 0.020).abs() < 0.002, "{loaded}");
        assert!((f.delay(5.0) - 0.010).abs() < 1e-12, "window expired");
    }

    #[test]
    fn a_burst_queues_for_the_serial_part() {
        let mut f = FrontendLoad::new(0.010, 0.005, 0.0);
        let d: Vec<f64> = (0..3).map(|_| f.delay(1.0)).collect();
        assert!(
            (d[0] - 0.015).abs() < 1e-12 && (d[2] - 0.025).abs() < 1e-12,
            "{d:?}"
        );
    }
}
