//! One streamed request, measured: send, read the SSE stream, and turn what happened into a
//! [`RequestRecord`]. Every outcome, including every kind of failure, becomes a record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::time::timeout_at;

use super::dataset::PreparedRequest;
use super::http1::{Endpoint, InFlight, Outcome, ReadStats};
use super::sse::{SseParser, StreamAccount, StreamError};
use super::tokenizer::Tokenizer;
use crate::load::RequestRecord;

/// Which OpenAI-compatible API to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/v1/completions` with `prompt` and `max_tokens`.
    Completions,
    /// `/v1/chat/completions` with one user message and `max_completion_tokens`.
    Chat,
}

impl Api {
    pub fn default_path(&self) -> &'static str {
        match self {
            Api::Completions => "/v1/completions",
            Api::Chat => "/v1/chat/completions",
        }
    }

    /// `completions` or `chat`, as written into results.
    pub fn name(&self) -> &'static str {
        match self {
            Api::Completions => "completions",
            Api::Chat => "chat",
        }
    }

    /// vLLM's `endpoint_type`/`backend` names for the same thing.
    pub fn vllm_backend(&self) -> &'static str {
        match self {
            Api::Completions => "openai",
            Api::Chat => "openai-chat",
        }
    }
}

/// Everything a request task needs besides the request itself.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    pub model: String,
    pub api: Api,
    pub ignore_eos: bool,
    pub timeout: Duration,
    /// The lean HTTP/1.1 path for `http://` URLs; `None` = use reqwest.
    pub raw: Option<Arc<Endpoint>>,
    /// Sent as `Authorization: Bearer KEY` (never shown: not in `Debug`, not in results).
    pub api_key: Option<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("api", &self.api)
            .field("raw", &self.raw.is_some())
            .finish()
    }
}

/// The HTTP client vbench uses: no connection cap, no proxy, no Nagle, HTTP/1.1 keep-alive,
/// no redirects (a redirect is the answer, as on the lean path: following one would turn a
/// POST into a GET and measure something else).
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(usize::MAX)
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Serialize)]
struct CompletionBody<'a> {
    model: &'a str,
    prompt: &'a str,
    max_tokens: u64,
    stream: bool,
    stream_options: StreamOptions,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    ignore_eos: bool,
}

/// One message of a chat conversation.
#[derive(Serialize, Debug, Clone, Copy)]
pub struct Message<'a> {
    /// `system`, `user` or `assistant`.
    pub role: &'a str,
    pub content: &'a str,
}

#[derive(Serialize)]
struct ChatBody<'a> {
    model: &'a str,
    messages: &'a [Message<'a>],
    max_completion_tokens: u64,
    stream: bool,
    stream_options: StreamOptions,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    ignore_eos: bool,
}

/// The JSON body vLLM's benchmark client would send for this request.
pub fn request_body(target: &Target, req: &PreparedRequest) -> Vec<u8> {
    let message = Message {
        role: "user",
        content: &req.prompt,
    };
    body(target, &req.prompt, &[message], req.max_tokens)
}

/// The body of a turn of a conversation: chat sends the messages as they are; completions
/// sends their contents one after the other, with nothing in between (the server's answers
/// exactly as it streamed them), so each turn's prompt starts with the previous turn's
/// prompt and answer, token for token where the texts tokenize alike.
pub fn conversation_body(target: &Target, messages: &[Message<'_>], max_tokens: u64) -> Vec<u8> {
    let prompt = match target.api {
        Api::Completions => messages.iter().map(|m| m.content).collect(),
        Api::Chat => String::new(),
    };
    body(target, &prompt, messages, max_tokens)
}

fn body(target: &Target, prompt: &str, messages: &[Message<'_>], max_tokens: u64) -> Vec<u8> {
    let opts = StreamOptions {
        include_usage: true,
    };
    let r = match target.api {
        Api::Completions => serde_json::to_vec(&CompletionBody {
            model: &target.model,
            prompt,
            max_tokens,
            stream: true,
            stream_options: opts,
            ignore_eos: target.ignore_eos,
        }),
        Api::Chat => serde_json::to_vec(&ChatBody {
            model: &target.model,
            messages,
            max_completion_tokens: max_tokens,
            stream: true,
            stream_options: opts,
            ignore_eos: target.ignore_eos,
        }),
    };
    r.expect("serialising a request body of strings and integers cannot fail")
}

/// The measurement of one request.
#[derive(Debug, Clone)]
pub struct Measured {
    pub record: RequestRecord,
    /// Seconds from run start when the request finished (ended, failed or timed out).
    pub finished_s: f64,
    /// Whether the server reported usage (token counts) for it.
    pub usage_seen: bool,
    /// How its body reads were timed (lean HTTP/1.1 path only).
    pub reads: ReadStats,
    /// The generated text, when the job asked to keep it.
    pub answer: Option<String>,
}

/// A request the dispatcher thread prepared at its instant: the bytes for the wire and, when a
/// kept-alive connection was free, the send already started on it.
pub struct Dispatched {
    pub wire: Vec<u8>,
    /// The connection and the instant the write started.
    pub started: Option<(InFlight, Instant)>,
}

/// Timing anchors of one request.
#[derive(Debug, Clone, Copy)]
pub struct Anchors {
    /// The run's time zero.
    pub start: Instant,
    /// The instant the schedule said to send.
    pub scheduled: Instant,
}

fn secs(d: Duration) -> f64 {
    round_us(d.as_secs_f64())
}

/// Round to the microsecond: far below any accuracy claim, and keeps result files small.
pub fn round_us(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn since(later: Instant, earlier: Instant) -> f64 {
    // Signed, so a (theoretical) send before the schedule shows as negative lag, not zero.
    if later >= earlier {
        secs(later - earlier)
    } else {
        -secs(earlier - later)
    }
}

struct Failure {
    kind: &'static str,
    message: String,
    status: Option<u16>,
}

/// One request to send and measure.
pub struct Job<'a> {
    pub req: &'a PreparedRequest,
    pub index: u64,
    pub request_id: &'a str,
    pub at: Anchors,
    /// What the dispatcher already did for it (lean HTTP/1.1 path only).
    pub dispatched: Option<Dispatched>,
    /// The JSON body to send instead of `req`'s own (a session turn's conversation); `req`
    /// still gives the token counts.
    pub body: Option<Vec<u8>>,
    /// Keep the generated text in [`Measured::answer`] (a session's next turn needs it).
    pub keep_answer: bool,
}

/// Send the request (or finish sending it) and measure it. Never fails: every problem is
/// recorded in the result.
pub async fn send(
    client: &reqwest::Client,
    target: &Target,
    job: Job<'_>,
    tokenizer: Option<&Tokenizer>,
) -> Measured {
    let Job {
        req,
        index,
        request_id,
        at,
        dispatched,
        body,
        keep_answer,
    } = job;
    let keep_text = tokenizer.is_some() || keep_answer;
    let mut acct = StreamAccount::new(keep_text, req.max_tokens as usize);
    let mut reads = ReadStats::default();
    let (outcome, sent) = match &target.raw {
        Some(ep) => {
            let (wire, started) = match dispatched {
                Some(d) => (d.wire, d.started),
                None => (
                    ep.request_bytes(
                        &body.unwrap_or_else(|| request_body(target, req)),
                        request_id,
                    ),
                    None,
                ),
            };
            let (in_flight, sent) = match started {
                Some((f, t)) => (Some(f), t),
                None => (None, Instant::now()),
            };
            let deadline = tokio::time::Instant::from_std(sent + target.timeout);
            let stream = RawStream {
                ep,
                target,
                wire: &wire,
                in_flight,
                deadline,
            };
            (run_stream_raw(stream, &mut acct, &mut reads).await, sent)
        }
        None => {
            let body = body.unwrap_or_else(|| request_body(target, req));
            let sent = Instant::now();
            let deadline = tokio::time::Instant::from_std(sent + target.timeout);
            let outcome = run_stream(client, target, body, request_id, deadline, &mut acct).await;
            (outcome, sent)
        }
    };
    let end = Instant::now();

    let (status, failure) = match outcome {
        Ok(status) => (Some(status), None),
        Err(f) => (f.status, Some(f)),
    };
    let failure = failure.or_else(|| match acct.first {
        // Bytes that were waiting before the request went out answer some other request.
        Some(first) if first < sent => Some(Failure {
            kind: "malformed",
            message: "the answer began before the request was sent (bytes left over from an \
                      earlier response on the connection)"
                .into(),
            status,
        }),
        _ => None,
    });
    let failure = failure.or_else(|| {
        if acct.first.is_none() {
            Some(Failure {
                kind: "no_content",
                message: "HTTP 200 but the stream carried no chunk with choices".into(),
                status,
            })
        } else {
            None
        }
    });
    let usage = acct.usage;
    let output_tokens = usage
        .and_then(|u| u.completion_tokens)
        .or_else(|| {
            let text = acct.text.as_deref()?;
            tokenizer.and_then(|t| t.encode(text, false).ok().map(|v| v.len() as u64))
        })
        .unwrap_or(acct.nonempty_chunks);
    let prompt_tokens = usage
        .and_then(|u| u.prompt_tokens)
        .unwrap_or(req.prompt_tokens);
    let ok = failure.is_none();
    let ttft_s = acct.first.map(|f| since(f, at.scheduled));
    let e2e_s = if ok {
        acct.last.map(|l| since(l, at.scheduled))
    } else {
        None
    };
    let tpot_s = match (ok, ttft_s, e2e_s) {
        (true, Some(t), Some(e)) if output_tokens > 1 => {
            Some(round_us((e - t) / (output_tokens - 1) as f64))
        }
        _ => None,
    };
    let itls_s = acct.itls.iter().map(|&x| round_us(x)).collect();
    Measured {
        record: RequestRecord {
            index,
            scheduled_s: since(at.scheduled, at.start),
            sent_s: since(sent, at.start),
            ttft_s,
            e2e_s,
            itls_s,
            tpot_s,
            prompt_tokens,
            output_tokens,
            ok,
            http_status: status,
            error_kind: failure.as_ref().map(|f| f.kind.to_string()),
            error: failure.map(|f| f.message),
            session: None,
            turn: None,
        },
        finished_s: since(end, at.start),
        usage_seen: usage.and_then(|u| u.completion_tokens).is_some(),
        reads,
        answer: if keep_answer { acct.text } else { None },
    }
}

/// One request on the lean HTTP/1.1 path.
struct RawStream<'a> {
    ep: &'a Endpoint,
    target: &'a Target,
    wire: &'a [u8],
    in_flight: Option<InFlight>,
    deadline: tokio::time::Instant,
}

async fn run_stream_raw(
    stream: RawStream<'_>,
    acct: &mut StreamAccount,
    reads: &mut ReadStats,
) -> Result<u16, Failure> {
    let RawStream {
        ep,
        target,
        wire,
        in_flight,
        deadline,
    } = stream;
    let mut parser = SseParser::new();
    let outcome = {
        let (parser, acct) = (&mut parser, &mut *acct);
        let fut = ep.post(wire, in_flight, deadline.into_std(), reads, |bytes, now| {
            parser.push(bytes, |d| acct.on_event(d, now))
        });
        tokio::time::timeout_at(deadline, fut).await
    };
    // The head's status, when one came (a request cut off later keeps it).
    let status = reads.status;
    match outcome {
        Err(_) if acct.done => return Ok(status.unwrap_or(200)),
        Err(_) => {
            return Err(Failure {
                kind: "timeout",
                message: format!(
                    "no complete response within {:.1} s (after {} content chunks)",
                    target.timeout.as_secs_f64(),
                    acct.content_chunks
                ),
                status,
            })
        }
        Ok(Outcome::Ok) => {}
        Ok(Outcome::Status(code, text)) => {
            let text: String = text.chars().take(500).collect();
            return Err(Failure {
                kind: "http",
                message: format!("HTTP {code}: {}", text.trim()),
                status: Some(code),
            });
        }
        Ok(Outcome::Failed { .. }) if acct.done => return Ok(status.unwrap_or(200)),
        Ok(Outcome::Failed { kind, message }) => {
            let message = if kind == "stream_cut" {
                format!(
                    "stream broke after {} content chunks: {message}",
                    acct.content_chunks
                )
            } else {
                message
            };
            return Err(Failure {
                kind,
                message,
                status,
            });
        }
        Ok(Outcome::Event(e)) => {
            return Err(Failure {
                kind: e.kind(),
                message: e.message().to_string(),
                status,
            })
        }
    }
    let now = Instant::now();
    parser
        .finish(|d| acct.on_event(d, now))
        .map_err(|e| Failure {
            kind: e.kind(),
            message: e.message().to_string(),
            status,
        })?;
    if !acct.done {
        return Err(Failure {
            kind: "stream_cut",
            message: format!(
                "stream ended after {} content chunks without data: [DONE]",
                acct.content_chunks
            ),
            status,
        });
    }
    Ok(status.unwrap_or(200))
}

async fn run_stream(
    client: &reqwest::Client,
    target: &Target,
    body: Vec<u8>,
    request_id: &str,
    deadline: tokio::time::Instant,
    acct: &mut StreamAccount,
) -> Result<u16, Failure> {
    let mut request = client
        .post(&target.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("x-request-id", request_id);
    if let Some(key) = &target.api_key {
        request = request.bearer_auth(key);
    }
    let fut = request.body(body).send();
    let timeout_msg = |what: &str| Failure {
        kind: "timeout",
        message: format!(
            "no complete response within {:.1} s ({what})",
            target.timeout.as_secs_f64()
        ),
        status: None,
    };
    let mut resp = match timeout_at(deadline, fut).await {
        Err(_) => return Err(timeout_msg("waiting for response headers")),
        Ok(Err(e)) => {
            let kind = if e.is_connect() { "connect" } else { "request" };
            return Err(Failure {
                kind,
                message: error_chain(&e),
                status: None,
            });
        }
        Ok(Ok(r)) => r,
    };
    let status = resp.status().as_u16();
    if status != 200 {
        let text = match timeout_at(deadline, resp.text()).await {
            Ok(Ok(t)) => t,
            _ => String::new(),
        };
        let text: String = text.chars().take(500).collect();
        return Err(Failure {
            kind: "http",
            message: format!("HTTP {status}: {}", text.trim()),
            status: Some(status),
        });
    }
    let fail = |e: StreamError| Failure {
        kind: e.kind(),
        message: e.message().to_string(),
        status: Some(status),
    };
    let mut parser = SseParser::new();
    // One timer for the whole stream (a timeout per chunk would register and clear a timer
    // entry for every token).
    let expiry = tokio::time::sleep_until(deadline);
    tokio::pin!(expiry);
    loop {
        let next = tokio::select! {
            biased;
            c = resp.chunk() => Ok(c),
            _ = &mut expiry => Err(()),
        };
        match next {
            Err(_) if acct.done => return Ok(status), // [DONE] seen; server kept it open
            Err(_) => {
                let mut f = timeout_msg(&format!("after {} content chunks", acct.content_chunks));
                f.status = Some(status);
                return Err(f);
            }
            Ok(Err(e)) => {
                if acct.done {
                    return Ok(status);
                }
                return Err(Failure {
                    kind: "stream_cut",
                    message: format!(
                        "stream broke after {} content chunks: {}",
                        acct.content_chunks,
                        error_chain(&e)
                    ),
                    status: Some(status),
                });
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(bytes))) => {
                let now = Instant::now();
                parser
                    .push(&bytes, |d| acct.on_event(d, now))
                    .map_err(fail)?;
            }
        }
    }
    let now = Instant::now();
    parser.finish(|d| acct.on_event(d, now)).map_err(fail)?;
    if !acct.done {
        return Err(Failure {
            kind: "stream_cut",
            message: format!(
                "stream ended after {} content chunks without data: [DONE]",
                acct.content_chunks
            ),
            status: Some(status),
        });
    }
    Ok(status)
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}
