//! The open-loop runner: warm-up, then every request sent at its absolute deadline by a
//! dedicated timer thread, measured by a task of the caller's tokio runtime, collected in
//! index order.
//!
//! Why a thread for the schedule: tokio's timer has a 1 ms granularity, which would add up to
//! a millisecond of lag to every send. A plain thread with 1 ns timer slack sleeps to within
//! tens of microseconds and hands each request to the runtime at its instant; the request's
//! task records when it actually started, so a busy runtime shows up as lag, never hidden.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::client::{self, Anchors, Dispatched, Job, Measured, Target};
use super::dataset::PreparedRequest;
use super::summary::{build_result, RunFacts};
use super::tokenizer::Tokenizer;
use super::LoadSpec;
use crate::load::{RequestRecord, RunResult, StoppedEarly};

/// Why a run could not produce a result at all (individual request failures are data, not
/// errors).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the load spec is inconsistent: {0}")]
    Spec(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error(
        "all {count} warm-up requests to {url} failed; is the server up and serving model \
         `{model}`? first error: {first}"
    )]
    WarmupFailed {
        count: usize,
        url: String,
        model: String,
        first: String,
    },
    #[error("the run was stopped during the warm-up, before any measured request was sent")]
    StoppedInWarmup,
}

/// How a caller ends a run before its schedule does (`vbench bench` on Ctrl-C): a count of
/// stop requests. The first: send nothing more and wait for the requests in flight; the
/// second: stop waiting for them too (they are recorded as failed, `abandoned`). The result
/// then covers the requests that were sent, and says so in `vbench.load.stopped_early`.
#[derive(Clone)]
pub struct Stop(tokio::sync::watch::Receiver<u32>);

impl Stop {
    /// A stop and the sender that counts its requests (`send_modify(|n| *n += 1)`).
    pub fn channel() -> (tokio::sync::watch::Sender<u32>, Stop) {
        let (tx, rx) = tokio::sync::watch::channel(0);
        (tx, Stop(rx))
    }

    /// A stop that follows an existing count, such as signals received.
    pub fn counting(requests: tokio::sync::watch::Receiver<u32>) -> Stop {
        Stop(requests)
    }

    /// A stop that never comes.
    pub fn never() -> Stop {
        Stop::channel().1
    }

    /// Resolves once `count` stops were asked for; never, if the sender is gone first.
    pub(super) async fn reached(&self, count: u32) {
        let mut requests = self.0.clone();
        if requests.wait_for(|n| *n >= count).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Whether `count` stops were asked for already.
    pub(super) fn asked(&self, count: u32) -> bool {
        *self.0.borrow() >= count
    }
}

/// Hooks for a progress display; every method has a no-op default.
pub trait Progress: Send + Sync {
    /// The measured phase starts with this many requests.
    fn start(&self, _total: u64) {}
    /// One measured request finished (successfully or not).
    fn request_done(&self, _record: &RequestRecord) {}
    /// All requests finished.
    fn finish(&self) {}
}

/// A [`Progress`] that shows nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

fn cpu_and_rss() -> (f64, f64) {
    // SAFETY: getrusage writes into the struct we pass and nothing else.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return (f64::NAN, f64::NAN);
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    // Linux carries `ru_maxrss` over from the parent across fork and exec, so a vbench started
    // by a large process would report the parent's peak; this process's own memory's peak is
    // `VmHWM`.
    let rss = peak_rss_mib().unwrap_or(ru.ru_maxrss as f64 / 1024.0);
    (tv(ru.ru_utime) + tv(ru.ru_stime), rss)
}

/// `VmHWM` of `/proc/self/status` in MiB: the peak resident set of this process's memory.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Many concurrent streams need many sockets: lift the soft open-file limit to the hard one
/// (best effort; also used by the benchmark server).
pub fn raise_nofile_limit() {
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Take, before the measured phase, the process-wide stalls a send would otherwise hit
/// mid-run (each was seen to hold the dispatcher for milliseconds at 5,000 req/s):
/// - growing the fd table: the kernel waits for an RCU grace period each time it doubles,
///   so it is grown once to room for `sockets`;
/// - glibc trimming a thread arena's heap and growing it again, each an `mprotect` that
///   queues behind the other thread's page faults on the address-space lock: heaps are no
///   longer trimmed (freed memory is reused, not returned).
fn prepare_process(sockets: usize) {
    // SAFETY: getrlimit/dup2/close on our own fds; mallopt only sets allocator parameters.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            let top = (sockets as u64).min(lim.rlim_cur.saturating_sub(1)) as libc::c_int;
            if top > 2 && libc::fcntl(top, libc::F_GETFD) == -1 && libc::dup2(2, top) == top {
                libc::close(top);
            }
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}

/// Tune the calling (dispatcher) thread for punctual wake-ups: 1 ns timer slack (default
/// 50 µs), and, where the user may (root, CAP_SYS_NICE or an RLIMIT_RTPRIO), the lowest
/// real-time priority, so that its wake-up preempts the runtime's busy worker at once
/// instead of waiting for the fair scheduler's turn. The thread sleeps between sends and
/// does a few µs of work per send, so it cannot starve anything. Returns whether it got the
/// real-time priority.
fn precise_timer_thread() -> bool {
    // SAFETY: both calls change only this thread's scheduling attributes.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
        let param = libc::sched_param { sched_priority: 1 };
        libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// Sleep until `when`, waking every 100 ms to check `cancel`. Returns false if cancelled.
fn sleep_until(when: Instant, cancel: &AtomicBool) -> bool {
    loop {
        if cancel.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= when {
            return true;
        }
        std::thread::sleep((when - now).min(Duration::from_millis(100)));
    }
}

struct CancelOnDrop(Arc<AtomicBool>);
impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The send side of a run, on its own thread: sleeps to each scheduled instant, sends (or
/// hands to the runtime) the request, and spawns the task that reads and measures it.
struct Dispatcher {
    runtime: tokio::runtime::Handle,
    start: Instant,
    offsets: Arc<[f64]>,
    requests: Arc<[PreparedRequest]>,
    http: reqwest::Client,
    target: Arc<Target>,
    tokenizer: Option<Arc<Tokenizer>>,
    /// The `max_concurrency` slots, if capped.
    sem: Option<Arc<tokio::sync::Semaphore>>,
    /// Where each finished request goes: (index, measurement, dispatcher wake-up lag in s);
    /// no measurement for a request that waited for a concurrency slot until the run stopped,
    /// and so was never sent.
    tx: tokio::sync::mpsc::UnboundedSender<(usize, Option<Measured>, f64)>,
    cancel: Arc<AtomicBool>,
    /// How many requests were handed on (they go in index order).
    handed_on: Arc<AtomicUsize>,
    /// Set when the thread got real-time priority.
    realtime: Arc<AtomicBool>,
}

impl Dispatcher {
    fn run(self) {
        self.realtime
            .store(precise_timer_thread(), Ordering::Relaxed);
        for (i, &off) in self.offsets.iter().enumerate() {
            let scheduled = self.start + Duration::from_secs_f64(off.max(0.0));
            let request_id = format!("vbench-{i}");
            // Build the wire bytes before the deadline; without a concurrency cap the send
            // itself happens here too, at the deadline (see `Endpoint::send_now`).
            let wire = match (&self.target.raw, &self.sem) {
                (Some(ep), None) => {
                    let body = client::request_body(&self.target, &self.requests[i]);
                    Some((ep.clone(), ep.request_bytes(&body, &request_id)))
                }
                _ => None,
            };
            if !sleep_until(scheduled, &self.cancel) {
                break;
            }
            let woke = Instant::now();
            let dispatched = wire.map(|(ep, wire)| {
                let started = ep.send_now(&wire).map(|f| (f, woke));
                Dispatched { wire, started }
            });
            let dispatch_lag = woke.saturating_duration_since(scheduled).as_secs_f64();
            let (tx, http, target, reqs, tok, sem, cancel) = (
                self.tx.clone(),
                self.http.clone(),
                self.target.clone(),
                self.requests.clone(),
                self.tokenizer.clone(),
                self.sem.clone(),
                self.cancel.clone(),
            );
            let start = self.start;
            self.runtime.spawn(async move {
                let _permit = match sem {
                    Some(s) => {
                        let permit = s.acquire_owned().await.ok();
                        // Stopped while this request waited for a slot: it is not sent.
                        if cancel.load(Ordering::Relaxed) {
                            let _ = tx.send((i, None, dispatch_lag));
                            return;
                        }
                        permit
                    }
                    None => None,
                };
                let job = Job {
                    req: &reqs[i],
                    index: i as u64,
                    request_id: &request_id,
                    at: Anchors { start, scheduled },
                    dispatched,
                    body: None,
                    keep_answer: false,
                };
                let m = client::send(&http, &target, job, tok.as_deref()).await;
                let _ = tx.send((i, Some(m), dispatch_lag));
            });
            self.handed_on.store(i + 1, Ordering::Release);
        }
    }
}

/// Run the load described by `spec` and return the result (not yet written anywhere).
///
/// Must be called inside a tokio runtime; request tasks run on it. Dropping the future stops
/// the schedule: requests in flight finish on their own, those waiting for a concurrency slot
/// are not sent.
pub async fn execute(spec: &LoadSpec, progress: &dyn Progress) -> Result<RunResult, LoadError> {
    execute_until(spec, progress, Stop::never()).await
}

/// [`execute`], which `stop` may end early (see [`Stop`]; for multi-turn sessions it stops
/// their turns).
pub async fn execute_until(
    spec: &LoadSpec,
    progress: &dyn Progress,
    stop: Stop,
) -> Result<RunResult, LoadError> {
    let n = spec.offsets.len();
    if n == 0 || spec.requests.is_empty() {
        return Err(LoadError::Spec("no requests to send".into()));
    }
    if spec.requests.len() < n {
        return Err(LoadError::Spec(format!(
            "{} arrival offsets but only {} prepared requests",
            n,
            spec.requests.len()
        )));
    }
    if spec
        .api_key
        .as_deref()
        .is_some_and(|k| !super::valid_api_key(k))
    {
        return Err(LoadError::Spec(
            "the API key is empty or holds characters a header cannot carry (a line break, a \
             control character)"
                .into(),
        ));
    }
    if let Some(sessions) = &spec.sessions {
        if sessions.len() < n || sessions[..n].iter().any(|s| s.turns.is_empty()) {
            return Err(LoadError::Spec(format!(
                "{n} session starts but {} prepared sessions (each needs a turn)",
                sessions.len()
            )));
        }
        if spec.max_concurrency.is_some() {
            return Err(LoadError::Spec(
                "a concurrency cap does not apply to sessions (their turns wait for their \
                 answers, not for a slot)"
                    .into(),
            ));
        }
    }
    raise_nofile_limit();
    prepare_process(65_536);
    let http = client::http_client()?;
    let target = Arc::new(Target {
        url: spec.url(),
        model: spec.model.clone(),
        api: spec.api,
        ignore_eos: spec.ignore_eos,
        timeout: spec.timeout,
        raw: if spec.use_reqwest {
            None
        } else {
            super::http1::Endpoint::new(&spec.url(), spec.rx_timestamps, spec.api_key.as_deref())
                .map(Arc::new)
        },
        api_key: spec.api_key.clone(),
    });
    let tokenizer = spec.tokenizer.clone();

    // --- warm-up: sent together, awaited, excluded ---------------------------------------
    let mut warmup_failed = 0u64;
    if spec.warmup > 0 {
        let t0 = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for w in 0..spec.warmup {
            let (http, target, reqs, tok) = (
                http.clone(),
                target.clone(),
                spec.requests.clone(),
                tokenizer.clone(),
            );
            set.spawn(async move {
                // Warm-up prompts come after the measured ones when the caller prepared
                // extra (so a prefix cache cannot serve a measured request from a warm-up).
                let req = &reqs[(n + w) % reqs.len()];
                let at = Anchors {
                    start: t0,
                    scheduled: Instant::now(),
                };
                let id = format!("vbench-warmup-{w}");
                let job = Job {
                    req,
                    index: w as u64,
                    request_id: &id,
                    at,
                    dispatched: None,
                    body: None,
                    keep_answer: false,
                };
                client::send(&http, &target, job, tok.as_deref()).await
            });
        }
        let mut first_err = None;
        loop {
            let r = tokio::select! {
                r = set.join_next() => r,
                _ = stop.reached(1) => return Err(LoadError::StoppedInWarmup),
            };
            let Some(r) = r else { break };
            if let Ok(m) = r {
                if !m.record.ok {
                    warmup_failed += 1;
                    if first_err.is_none() {
                        first_err = m.record.error.clone();
                    }
                }
            } else {
                warmup_failed += 1;
            }
        }
        if warmup_failed as usize == spec.warmup {
            return Err(LoadError::WarmupFailed {
                count: spec.warmup,
                url: target.url.clone(),
                model: spec.model.clone(),
                first: first_err.unwrap_or_else(|| "task panicked".into()),
            });
        }
    }

    // --- measured phase ------------------------------------------------------------------
    if let Some(sessions) = &spec.sessions {
        let (cpu0, _) = cpu_and_rss();
        let m = super::sessions::measure(
            sessions,
            &spec.offsets,
            http,
            target,
            tokenizer,
            progress,
            stop,
        )
        .await;
        let (cpu1, rss) = cpu_and_rss();
        let facts = RunFacts {
            duration_s: m.duration_s,
            dispatch_lags_s: Vec::new(),
            read_waits_s: m.read_waits_s,
            kernel_stamped_share: (m.stamped + m.unstamped > 0)
                .then(|| m.stamped as f64 / (m.stamped + m.unstamped) as f64),
            tokens_from_usage: m.all_usage,
            warmup_failed,
            // Turns are timed by the runtime, not by the dispatcher thread.
            dispatcher_realtime: false,
            cpu_s: (cpu1 - cpu0).is_finite().then_some(cpu1 - cpu0),
            max_rss_mib: rss.is_finite().then_some(rss),
        };
        let Some(stopped) = m.stopped_early else {
            return Ok(build_result(spec, m.records, facts));
        };
        // As for single requests: the sessions never started are not part of the run.
        let mut sent_spec = spec.clone();
        sent_spec.offsets = (0..n)
            .filter(|&i| m.started[i])
            .map(|i| spec.offsets[i])
            .collect();
        let mut result = build_result(&sent_spec, m.records, facts);
        result.vbench.load.warnings.push(stopped.describe());
        result.vbench.load.stopped_early = Some(stopped);
        return Ok(result);
    }
    progress.start(n as u64);
    let (cpu0, _) = cpu_and_rss();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Option<Measured>, f64)>();
    let cancel = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancel.clone());
    let sem = spec
        .max_concurrency
        .map(|c| Arc::new(tokio::sync::Semaphore::new(c.max(1))));
    // A short lead so the timer thread is running before the first deadline.
    let start = Instant::now() + Duration::from_millis(5);
    let realtime = Arc::new(AtomicBool::new(false));
    let handed_on = Arc::new(AtomicUsize::new(0));
    let dispatcher = Dispatcher {
        runtime: tokio::runtime::Handle::current(),
        start,
        offsets: spec.offsets.clone(),
        requests: spec.requests.clone(),
        http,
        target,
        tokenizer,
        sem,
        tx,
        cancel: cancel.clone(),
        handed_on: handed_on.clone(),
        realtime: realtime.clone(),
    };
    let dispatcher = std::thread::Builder::new()
        .name("vbench-dispatch".into())
        .spawn(move || dispatcher.run())
        .map_err(|e| LoadError::Spec(format!("cannot start the dispatcher thread: {e}")))?;

    let mut slots: Vec<Option<Measured>> = Vec::with_capacity(n);
    slots.resize_with(n, || None);
    // Handed on by the dispatcher but never sent (they waited for a slot until the stop).
    let mut withheld = vec![false; n];
    let mut dispatch_lags = vec![0.0; n];
    let mut read_waits = Vec::with_capacity(n);
    let (mut stamped, mut unstamped) = (0u64, 0u64);
    let mut received = 0;
    let (mut stopping, mut abandoning) = (false, false);
    while received < n {
        let next = tokio::select! {
            next = rx.recv() => next,
            _ = stop.reached(1), if !stopping => {
                stopping = true;
                cancel.store(true, Ordering::Relaxed);
                continue;
            }
            _ = stop.reached(2), if stopping => {
                abandoning = true;
                break;
            }
        };
        match next {
            Some((i, None, _)) => {
                withheld[i] = true;
                received += 1;
            }
            Some((i, Some(m), dl)) => {
                progress.request_done(&m.record);
                dispatch_lags[i] = dl;
                stamped += u64::from(m.reads.stamped);
                unstamped += u64::from(m.reads.unstamped);
                if m.reads.stamped > 0 {
                    read_waits.push(m.reads.max_wait.as_secs_f64());
                }
                slots[i] = Some(m);
                received += 1;
            }
            None => break, // every sender gone: the dispatcher stopped early
        }
    }
    // Stopping: the dispatcher wakes within 100 ms and hands on nothing more.
    cancel.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || dispatcher.join()).await;
    progress.finish();
    let (cpu1, rss) = cpu_and_rss();
    let handed_on = handed_on.load(Ordering::Acquire);
    // Sent: handed on by the dispatcher and not withheld at a concurrency slot.
    let was_sent = |i: usize| i < handed_on && !withheld[i];

    let mut duration = 0.0f64;
    let mut all_usage = true;
    let mut abandoned = 0u64;
    let records: Vec<RequestRecord> = slots
        .into_iter()
        .enumerate()
        .map(|(i, m)| match m {
            Some(m) => {
                duration = duration.max(m.finished_s);
                if m.record.ok && !m.usage_seen {
                    all_usage = false;
                }
                m.record
            }
            None => {
                let (kind, why) = if was_sent(i) {
                    abandoned += 1;
                    (
                        "abandoned",
                        "vbench was stopped while this request was in flight",
                    )
                } else {
                    (
                        "not_sent",
                        "the run was stopped before this request was sent",
                    )
                };
                RequestRecord {
                    index: i as u64,
                    scheduled_s: spec.offsets[i],
                    sent_s: spec.offsets[i],
                    ttft_s: None,
                    e2e_s: None,
                    itls_s: Vec::new(),
                    tpot_s: None,
                    prompt_tokens: spec.requests[i].prompt_tokens,
                    output_tokens: 0,
                    ok: false,
                    http_status: None,
                    error_kind: Some(kind.into()),
                    error: Some(why.into()),
                    session: None,
                    turn: None,
                }
            }
        })
        .collect();
    let sent: Vec<usize> = (0..n).filter(|&i| was_sent(i)).collect();
    let stopped_early = (stopping && (sent.len() < n || abandoning)).then_some(StoppedEarly {
        planned: n as u64,
        sent: sent.len() as u64,
        abandoned,
    });
    let facts = RunFacts {
        duration_s: duration,
        dispatch_lags_s: dispatch_lags,
        read_waits_s: read_waits,
        kernel_stamped_share: (stamped + unstamped > 0)
            .then(|| stamped as f64 / (stamped + unstamped) as f64),
        tokens_from_usage: all_usage,
        warmup_failed,
        dispatcher_realtime: realtime.load(Ordering::Relaxed),
        cpu_s: (cpu1 - cpu0).is_finite().then_some(cpu1 - cpu0),
        max_rss_mib: rss.is_finite().then_some(rss),
    };
    let Some(stopped) = stopped_early else {
        return Ok(build_result(spec, records, facts));
    };
    // The result is the run of the requests that were sent: those never sent are not part of
    // it, as if the schedule had held only these (its offered rate included).
    let records: Vec<RequestRecord> = records
        .into_iter()
        .filter(|r| was_sent(r.index as usize))
        .collect();
    let mut facts = facts;
    facts.dispatch_lags_s = sent.iter().map(|&i| facts.dispatch_lags_s[i]).collect();
    let mut sent_spec = spec.clone();
    sent_spec.offsets = sent.iter().map(|&i| spec.offsets[i]).collect();
    let mut result = build_result(&sent_spec, records, facts);
    result.vbench.load.warnings.push(stopped.describe());
    result.vbench.load.stopped_early = Some(stopped);
    Ok(result)
}
