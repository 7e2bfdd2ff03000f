//! The engine in real time: the scheduler on its own OS thread, sleeping until each simulated
//! step's end. A dedicated thread (not a tokio timer, which rounds to whole milliseconds) keeps
//! steps within a fraction of a millisecond of their schedule; each step's lateness is
//! recorded in `vbench_sim:step_lag_seconds`.
//!
//! Steps run back to back on the simulated timeline: the next step starts when the previous
//! one was due to end, not when the thread got round to it, so handling tokens does not slow
//! the simulated GPU down (unless the thread falls behind by more than a step, which shows as
//! lag).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::frontend::FrontendLoad;
use super::metrics::{EngineSnapshot, Metrics};
use super::scheduler::{NewRequest, SchedConfig, Scheduler, TokenEvent};

enum Cmd {
    Submit {
        at: Instant,
        req: NewRequest<UnboundedSender<TokenEvent>>,
    },
    Abort(u64),
}

/// State the engine thread publishes for the HTTP side.
#[derive(Debug, Default)]
pub struct Shared {
    pub snapshot: Mutex<EngineSnapshot>,
    /// API-server utilisation (f64 bits), see `frontend.rs`.
    frontend_util: AtomicU64,
}

/// The HTTP side's handle on the engine thread. Dropping every clone stops the thread.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Cmd>,
    shared: Arc<Shared>,
    next_id: Arc<AtomicU64>,
    frontend: FrontendCosts,
    serial_free_at: Arc<Mutex<Instant>>,
}

/// The API server's costs (see `frontend.rs`), in seconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrontendCosts {
    pub base_s: f64,
    pub serial_s: f64,
    pub per_token_s: f64,
}

/// A request's stream of tokens; dropping it before the end aborts the request in the engine.
pub struct TokenStream {
    pub id: u64,
    pub rx: UnboundedReceiver<TokenEvent>,
    tx: mpsc::Sender<Cmd>,
    done: bool,
}

impl TokenStream {
    pub async fn next(&mut self) -> Option<TokenEvent> {
        let ev = self.rx.recv().await;
        if ev.is_none_or(|e| e.finished) {
            self.done = true;
        }
        ev
    }
}

impl Drop for TokenStream {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.tx.send(Cmd::Abort(self.id));
        }
    }
}

impl EngineHandle {
    /// Start the engine thread.
    pub fn start(cfg: SchedConfig, frontend: FrontendCosts, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let sh = shared.clone();
        std::thread::Builder::new()
            .name("sim-engine".into())
            .spawn(move || {
                run(
                    Scheduler::new(cfg),
                    FrontendLoad::new(frontend.base_s, frontend.serial_s, frontend.per_token_s),
                    rx,
                    sh,
                    metrics,
                )
            })
            .expect("spawn the engine thread");
        EngineHandle {
            tx,
            shared,
            next_id: Arc::new(AtomicU64::new(1)),
            frontend,
            serial_free_at: Arc::new(Mutex::new(Instant::now())),
        }
    }

    /// A fresh request id.
    pub fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// How long a request arriving now spends in the API server before the engine sees it.
    pub fn frontend_delay(&self) -> Duration {
        let util = f64::from_bits(self.shared.frontend_util.load(Ordering::Relaxed));
        let inflate = 1.0 / (1.0 - util.clamp(0.0, 0.9));
        let now = Instant::now();
        let serial = Duration::from_secs_f64(self.frontend.serial_s * inflate);
        let done = {
            let mut free = self
                .serial_free_at
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let done = (*free).max(now) + serial;
            *free = done;
            done
        };
        (done - now) + Duration::from_secs_f64(self.frontend.base_s * inflate)
    }

    pub fn snapshot(&self) -> EngineSnapshot {
        *self
            .shared
            .snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Hand a request to the engine; `None` if the engine has stopped.
    pub fn submit(
        &self,
        id: u64,
        prompt_tokens: u32,
        max_tokens: u32,
        remote_kv: bool,
        prefix_blocks: Vec<u64>,
    ) -> Option<TokenStream> {
        let (stx, srx) = unbounded_channel();
        let req = NewRequest {
            id,
            prompt_tokens,
            max_tokens,
            remote_kv,
            prefix_blocks,
            sink: stx,
        };
        self.tx
            .send(Cmd::Submit {
                at: Instant::now(),
                req,
            })
            .ok()?;
        Some(TokenStream {
            id,
            rx: srx,
            tx: self.tx.clone(),
            done: false,
        })
    }
}

/// Sleep until `deadline`: the OS sleep for all but the last stretch, then a short spin, so
/// the wake-up does not depend on the timer slack of a busy core.
fn sleep_until(deadline: Instant) {
    const SPIN: Duration = Duration::from_micros(200);
    let now = Instant::now();
    if deadline > now + SPIN {
        std::thread::sleep(deadline - now - SPIN);
    }
    while Instant::now() < deadline {
        std::hint::spin_loop();
    }
}

/// Best effort: let the engine thread preempt the HTTP threads when its step is due (real-time
/// scheduling where permitted, else a higher priority; silently nothing otherwise). Its bursts
/// are short (it sleeps through every step), so it cannot starve the rest.
fn raise_priority() {
    #[cfg(target_os = "linux")]
    unsafe {
        let param = libc::sched_param { sched_priority: 1 };
        if libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) != 0 {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            let _ = libc::setpriority(libc::PRIO_PROCESS, tid, -10);
        }
    }
}

fn run(
    mut sched: Scheduler<UnboundedSender<TokenEvent>>,
    mut frontend: FrontendLoad,
    rx: mpsc::Receiver<Cmd>,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
) {
    raise_priority();
    let epoch = Instant::now();
    let secs = |t: Instant| t.saturating_duration_since(epoch).as_secs_f64();
    let handle = |sched: &mut Scheduler<UnboundedSender<TokenEvent>>, cmd: Cmd| match cmd {
        Cmd::Submit { at, req } => sched.submit(secs(at), req),
        Cmd::Abort(id) => {
            sched.abort(id);
        }
    };
    let publish =
        |sched: &Scheduler<UnboundedSender<TokenEvent>>, frontend: &mut FrontendLoad, now: f64| {
            let snap = EngineSnapshot {
                running: sched.num_running(),
                waiting: sched.num_waiting(),
                kv_usage: sched.kv_usage(),
                counters: sched.counters(),
            };
            *shared.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = snap;
            shared
                .frontend_util
                .store(frontend.utilisation(now).to_bits(), Ordering::Relaxed);
        };
    let mut last_end: Option<f64> = None;
    loop {
        loop {
            match rx.try_recv() {
                Ok(cmd) => handle(&mut sched, cmd),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        let now = secs(Instant::now());
        // Back to back with the previous step when on time; otherwise from now.
        let start = match last_end {
            Some(end) if now - end < 0.005 => end,
            _ => now,
        };
        match sched.begin_step(start) {
            Some(step) => {
                let end = start + step.duration;
                sleep_until(epoch + Duration::from_secs_f64(end));
                metrics.step_lag.observe(secs(Instant::now()) - end);
                let mut tokens = 0;
                sched.end_step(end, |tx, ev| {
                    tokens += 1;
                    tx.send(ev).is_ok()
                });
                frontend.record(end, tokens);
                publish(&sched, &mut frontend, end);
                last_end = Some(end);
            }
            None => {
                last_end = None;
                publish(&sched, &mut frontend, now);
                let cmd = match sched.next_wakeup() {
                    Some(t) => {
                        let wait = Duration::from_secs_f64((t - now).max(0.0));
                        match rx.recv_timeout(wait) {
                            Ok(cmd) => Some(cmd),
                            Err(RecvTimeoutError::Timeout) => None,
                            Err(RecvTimeoutError::Disconnected) => return,
                        }
                    }
                    None => match rx.recv() {
                        Ok(cmd) => Some(cmd),
                        Err(_) => return,
                    },
                };
                if let Some(cmd) = cmd {
                    handle(&mut sched, cmd);
                }
            }
        }
    }
}
