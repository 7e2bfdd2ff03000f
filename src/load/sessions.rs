//! The measured phase of a multi-turn sessions load: open loop over session starts, closed
//! loop within a session.
//!
//! Session `i` starts at its scheduled offset; its turn k+1 is scheduled at the instant turn
//! k's response ended plus the session's think time, and its prompt is the whole conversation
//! so far with the server's actual answers (what a chat client sends, and what a prefix cache
//! can reuse). Each turn's TTFT counts from that scheduled instant, like every other request's.
//! A failed turn ends its session: its later turns are recorded as failed `session_ended`,
//! never dropped. Turns are timed by the runtime's timer (a session's next send depends on
//! its previous answer, so the dispatcher thread's precomputed deadlines do not apply): up to
//! about a millisecond of lag, recorded per request like any other.
//!
//! A stop ([`Stop`]) works as for single requests: the first sends no further turn (no new
//! session, no next turn of a started one) and waits for the turns in flight; the second stops
//! waiting, and those turns count as failed (`abandoned`). Turns never sent are not part of
//! the result.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::client::{self, Anchors, Job, Measured, Message, Target};
use super::dataset::{PreparedRequest, PreparedSession};
use super::runner::{Progress, Stop};
use super::tokenizer::Tokenizer;
use crate::load::{RequestRecord, StoppedEarly};

/// `error_kind` of the turns a session did not send because an earlier turn failed.
pub const SESSION_ENDED: &str = "session_ended";

/// What the measured phase gives back for the run's result.
pub(super) struct Measurements {
    /// One per turn of every session, in index order (session by session, turn by turn).
    pub records: Vec<RequestRecord>,
    /// Seconds from the start to the last response's end.
    pub duration_s: f64,
    pub read_waits_s: Vec<f64>,
    pub stamped: u64,
    pub unstamped: u64,
    /// Every successful turn's token counts came from the server's usage.
    pub all_usage: bool,
    /// Set when a stop left turns unsent or abandoned; `records` then holds only the turns
    /// sent (and those a failed turn ended before the stop).
    pub stopped_early: Option<StoppedEarly>,
    /// Per session: whether its first turn was sent (all true unless stopped early).
    pub started: Vec<bool>,
}

/// What one session task needs.
struct Session {
    id: u64,
    /// Index of its first turn's record.
    first_index: u64,
    prepared: PreparedSession,
    http: reqwest::Client,
    target: Arc<Target>,
    tokenizer: Option<Arc<Tokenizer>>,
    start: Instant,
    scheduled: Instant,
    tx: tokio::sync::mpsc::UnboundedSender<Measured>,
    stop: Stop,
    /// One flag per turn of the run, set as the turn is sent.
    sent: Arc<[AtomicBool]>,
}

/// Run sessions `0..offsets.len()`, session `i` starting at `offsets[i]` seconds.
pub(super) async fn measure(
    sessions: &[PreparedSession],
    offsets: &[f64],
    http: reqwest::Client,
    target: Arc<Target>,
    tokenizer: Option<Arc<Tokenizer>>,
    progress: &dyn Progress,
    stop: Stop,
) -> Measurements {
    let n = offsets.len();
    let total: usize = sessions[..n].iter().map(|s| s.turns.len()).sum();
    progress.start(total as u64);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Measured>();
    let sent: Arc<[AtomicBool]> = (0..total).map(|_| AtomicBool::new(false)).collect();
    // A short lead so every session task is waiting before the first start.
    let start = Instant::now() + Duration::from_millis(5);
    // Dropping the set (the run's future dropped) stops every session.
    let mut set = tokio::task::JoinSet::new();
    let mut first_index = 0u64;
    for (i, (s, &off)) in sessions.iter().zip(offsets).enumerate() {
        let session = Session {
            id: i as u64,
            first_index,
            prepared: s.clone(),
            http: http.clone(),
            target: target.clone(),
            tokenizer: tokenizer.clone(),
            start,
            scheduled: start + Duration::from_secs_f64(off.max(0.0)),
            tx: tx.clone(),
            stop: stop.clone(),
            sent: sent.clone(),
        };
        first_index += s.turns.len() as u64;
        set.spawn(run_session(session));
    }
    drop(tx);
    let mut slots: Vec<Option<RequestRecord>> = vec![None; total];
    let mut m = Measurements {
        records: Vec::new(),
        duration_s: 0.0,
        read_waits_s: Vec::new(),
        stamped: 0,
        unstamped: 0,
        all_usage: true,
        stopped_early: None,
        started: Vec::new(),
    };
    // Every session task ends by itself: each turn has the per-request timeout, and after a
    // stop no task sends another turn.
    let (mut stopping, mut abandoning) = (false, false);
    loop {
        let done = tokio::select! {
            done = rx.recv() => done,
            _ = stop.reached(1), if !stopping => {
                stopping = true;
                continue;
            }
            _ = stop.reached(2), if stopping => {
                abandoning = true;
                break;
            }
        };
        let Some(done) = done else { break };
        progress.request_done(&done.record);
        m.duration_s = m.duration_s.max(done.finished_s);
        m.stamped += u64::from(done.reads.stamped);
        m.unstamped += u64::from(done.reads.unstamped);
        if done.reads.stamped > 0 {
            m.read_waits_s.push(done.reads.max_wait.as_secs_f64());
        }
        if done.record.ok && !done.usage_seen {
            m.all_usage = false;
        }
        let i = done.record.index as usize;
        slots[i] = Some(done.record);
    }
    if abandoning {
        set.abort_all();
    }
    while set.join_next().await.is_some() {}
    progress.finish();
    let was_sent = |i: usize| sent[i].load(Ordering::Acquire);
    let (mut abandoned, mut unsent_turns) = (0u64, 0u64);
    let mut index = 0;
    for (id, s) in sessions[..n].iter().enumerate() {
        m.started.push(was_sent(index));
        for (t, turn) in s.turns.iter().enumerate() {
            if slots[index].is_none() {
                let mut r = unsent(index as u64, turn, 0.0);
                r.turn = Some(t as u32 + 1);
                r.session = Some(id as u64);
                if was_sent(index) && abandoning {
                    abandoned += 1;
                    r.error_kind = Some("abandoned".into());
                    r.error = Some("vbench was stopped while this turn was in flight".into());
                    slots[index] = Some(r);
                } else if stopping {
                    // Not sent because of the stop: not part of the result.
                    unsent_turns += 1;
                } else {
                    // A session task that panicked leaves holes: they are failed records.
                    r.error_kind = Some("not_sent".into());
                    r.error = Some("the session's task stopped before this turn was sent".into());
                    slots[index] = Some(r);
                }
            }
            index += 1;
        }
    }
    m.records = slots.into_iter().flatten().collect();
    if stopping && (unsent_turns > 0 || abandoning) {
        m.stopped_early = Some(StoppedEarly {
            planned: total as u64,
            sent: m.records.len() as u64,
            abandoned,
        });
    }
    m
}

/// A turn that was never sent, at `at_s` seconds from the start.
fn unsent(index: u64, turn: &PreparedRequest, at_s: f64) -> RequestRecord {
    RequestRecord {
        index,
        scheduled_s: at_s,
        sent_s: at_s,
        ttft_s: None,
        e2e_s: None,
        itls_s: Vec::new(),
        tpot_s: None,
        prompt_tokens: turn.prompt_tokens,
        output_tokens: 0,
        ok: false,
        http_status: None,
        error_kind: None,
        error: None,
        session: None,
        turn: None,
    }
}

async fn run_session(s: Session) {
    let p = &s.prepared;
    // The server's answers, in turn order.
    let mut answers: Vec<String> = Vec::with_capacity(p.turns.len());
    let mut scheduled = s.scheduled;
    // Tokens of the conversation so far (the server's usage wins in the records).
    let mut history_tokens = p.system_tokens;
    for (k, turn) in p.turns.iter().enumerate() {
        tokio::select! {
            biased;
            _ = s.stop.reached(1) => return,
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(scheduled)) => {}
        }
        let mut messages = Vec::with_capacity(2 * k + 2);
        if !p.system.is_empty() {
            messages.push(Message {
                role: "system",
                content: &p.system,
            });
        }
        for (earlier, answer) in p.turns.iter().zip(&answers) {
            messages.push(Message {
                role: "user",
                content: &earlier.prompt,
            });
            messages.push(Message {
                role: "assistant",
                content: answer,
            });
        }
        messages.push(Message {
            role: "user",
            content: &turn.prompt,
        });
        let body = client::conversation_body(&s.target, &messages, turn.max_tokens);
        let counted = PreparedRequest {
            prompt: String::new(),
            prompt_tokens: history_tokens + turn.prompt_tokens,
            max_tokens: turn.max_tokens,
        };
        let index = s.first_index + k as u64;
        s.sent[index as usize].store(true, Ordering::Release);
        let request_id = format!("vbench-s{}-t{}", s.id, k + 1);
        let job = Job {
            req: &counted,
            index,
            request_id: &request_id,
            at: Anchors {
                start: s.start,
                scheduled,
            },
            dispatched: None,
            body: Some(body),
            keep_answer: true,
        };
        let mut m = client::send(&s.http, &s.target, job, s.tokenizer.as_deref()).await;
        // The answer is complete: the user starts thinking now.
        let ended = Instant::now();
        m.record.session = Some(s.id);
        m.record.turn = Some(k as u32 + 1);
        let ok = m.record.ok;
        let failure = m.record.error_kind.clone().unwrap_or_default();
        history_tokens += turn.prompt_tokens + m.record.output_tokens;
        answers.push(m.answer.take().unwrap_or_default());
        if s.tx.send(m).is_err() {
            return; // the run was dropped
        }
        if !ok {
            if s.stop.asked(1) {
                // Stopped: the later turns would not have been sent anyway.
                return;
            }
            let at_s = client::round_us(ended.saturating_duration_since(s.start).as_secs_f64());
            for (j, later) in p.turns.iter().enumerate().skip(k + 1) {
                let mut r = unsent(s.first_index + j as u64, later, at_s);
                r.error_kind = Some(SESSION_ENDED.into());
                r.error = Some(format!(
                    "turn {} of this session failed ({failure}), which ended the session \
                     before this turn",
                    k + 1
                ));
                r.session = Some(s.id);
                r.turn = Some(j as u32 + 1);
                let _ = s.tx.send(Measured {
                    record: r,
                    finished_s: at_s,
                    usage_seen: false,
                    reads: Default::default(),
                    answer: None,
                });
            }
            return;
        }
        if let Some(think) = p.think_s.get(k) {
            scheduled = ended + Duration::from_secs_f64(think.max(0.0));
        }
    }
}
