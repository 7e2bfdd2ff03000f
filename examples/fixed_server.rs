//! A streaming server with known timing for the load generator's accuracy benchmark
//! (benches/loadgen/run.sh). Every request gets `max_tokens` tokens after a fixed TTFT with a
//! fixed gap; `GET /log?reset=true` returns (and clears) what it served, one JSON line per
//! request with its receive, first-token and last-token instants in ns.
//!
//! The truth is taken as close to the wire as a process can: `recv_ns` is the kernel's receive
//! stamp of the request's last bytes (not when this server got round to parsing it), and each
//! token's instant is taken just before the `write` that hands it to the kernel. So a busy or
//! descheduled server shows up in the truth itself, and the difference from a client's
//! figures is the client's error. A bare tokio current-thread server (no hyper, no per-chunk
//! task hand-off) keeps one core enough for 5,000 req/s of 64-token streams.
//!
//! usage: fixed_server PORT TTFT_MS GAP_MS

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
#[path = "../tests/it/support/fake_server.rs"]
#[allow(dead_code)]
mod fake_server;
use fake_server::{token_event, ServedLog};
use vbench::load::net::{enable_rx_timestamps, recv_stamped};

struct Server {
    ttft: Duration,
    gap: Duration,
    t0: Instant,
    log: RefCell<Vec<ServedLog>>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: f64| -> f64 {
        args.get(i)
            .map(|s| {
                s.parse()
                    .unwrap_or_else(|_| panic!("argument {i} must be a number: {s}"))
            })
            .unwrap_or(d)
    };
    let port = arg(1, 8199.0) as u16;
    let server = Rc::new(Server {
        ttft: Duration::from_secs_f64(arg(2, 20.0) / 1e3),
        gap: Duration::from_secs_f64(arg(3, 5.0) / 1e3),
        t0: Instant::now(),
        log: RefCell::new(Vec::new()),
    });
    vbench::load::runner::raise_nofile_limit();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind 127.0.0.1");
        eprintln!(
            "fixed_server on http://{} (ttft {:?}, gap {:?})",
            listener.local_addr().expect("bound address"),
            server.ttft,
            server.gap
        );
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((sock, _)) = accepted else { continue };
                    let _ = sock.set_nodelay(true);
                    enable_rx_timestamps(&sock);
                    tokio::task::spawn_local(connection(server.clone(), sock));
                }
                _ = tokio::signal::ctrl_c() => break,
            }
        }
    });
}

/// One parsed request.
struct Request {
    method: String,
    path: String,
    id: Option<String>,
    body: Vec<u8>,
    /// Kernel receive stamp of the request's last bytes (or the read instant).
    arrived: Instant,
}

async fn connection(server: Rc<Server>, mut sock: TcpStream) {
    let mut buf = Vec::with_capacity(16 * 1024);
    while let Some(req) = read_request(&sock, &mut buf).await {
        let ok = match (
            req.method.as_str(),
            req.path.split('?').next().unwrap_or(""),
        ) {
            ("GET", "/health") => respond(&mut sock, "text/plain", b"ok").await,
            ("GET", "/v1/models") => {
                let body = br#"{"object":"list","data":[{"id":"m","object":"model"}]}"#;
                respond(&mut sock, "application/json", body).await
            }
            ("GET", "/log") => {
                let reset = req.path.contains("reset=true");
                let entries = if reset {
                    std::mem::take(&mut *server.log.borrow_mut())
                } else {
                    server.log.borrow().clone()
                };
                let mut out = String::with_capacity(entries.len() * 100);
                for e in entries {
                    out.push_str(&serde_json::to_string(&e).unwrap_or_default());
                    out.push('\n');
                }
                respond(&mut sock, "application/x-ndjson", out.as_bytes()).await
            }
            ("POST", "/v1/completions") => stream(&server, &mut sock, req, false).await,
            ("POST", "/v1/chat/completions") => stream(&server, &mut sock, req, true).await,
            _ => respond_status(&mut sock, "404 Not Found", b"not found").await,
        };
        if !ok {
            return;
        }
    }
}

async fn read_request(sock: &TcpStream, buf: &mut Vec<u8>) -> Option<Request> {
    let mut arrived = Instant::now();
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(head_len)) = parsed.parse(buf) {
            let header = |name: &str| {
                parsed
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .map(str::to_owned)
            };
            let len: usize = header("content-length")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= head_len + len {
                let req = Request {
                    method: parsed.method.unwrap_or("").to_owned(),
                    path: parsed.path.unwrap_or("").to_owned(),
                    id: header("x-request-id"),
                    body: buf[head_len..head_len + len].to_vec(),
                    arrived,
                };
                buf.drain(..head_len + len);
                return Some(req);
            }
        }
        let (n, arrival) = recv_stamped(sock, buf).await.ok()?;
        if n == 0 {
            return None;
        }
        arrived = arrival.at();
    }
}

async fn respond(sock: &mut TcpStream, content_type: &str, body: &[u8]) -> bool {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    sock.write_all(&out).await.is_ok()
}

async fn respond_status(sock: &mut TcpStream, status: &str, body: &[u8]) -> bool {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    sock.write_all(&out).await.is_ok()
}

/// One HTTP/1.1 chunk holding `data`.
fn chunk(data: &str) -> Vec<u8> {
    format!("{:x}\r\n{data}\r\n", data.len()).into_bytes()
}

async fn stream(server: &Server, sock: &mut TcpStream, req: Request, chat: bool) -> bool {
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
    let n = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(|v| v.as_u64())
        .unwrap_or(16)
        .max(1);
    let usage = body
        .pointer("/stream_options/include_usage")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let prompt_tokens = body
        .get("prompt")
        .and_then(|p| p.as_str())
        .map_or(1, |p| p.split_whitespace().count().max(1));
    let ns = |t: Instant| t.saturating_duration_since(server.t0).as_nanos() as u64;
    let idx = {
        let mut log = server.log.borrow_mut();
        log.push(ServedLog {
            id: req.id,
            recv_ns: ns(req.arrived),
            first_ns: None,
            last_ns: None,
            tokens: 0,
        });
        log.len() - 1
    };
    let head =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
    if sock.write_all(head).await.is_err() {
        return false;
    }
    let event = |last: bool| chunk(&token_event(chat, last));
    let (mid, last) = (event(false), event(true));
    let first_at = req.arrived + server.ttft;
    for k in 0..n {
        tokio::time::sleep_until((first_at + server.gap * k as u32).into()).await;
        let now = Instant::now();
        {
            let mut log = server.log.borrow_mut();
            let e = &mut log[idx];
            e.first_ns.get_or_insert(ns(now));
            e.last_ns = Some(ns(now));
            e.tokens = k + 1;
        }
        let piece = if k + 1 < n { &mid } else { &last };
        if sock.write_all(piece).await.is_err() {
            return false;
        }
    }
    let mut tail = Vec::new();
    if usage {
        tail.extend(chunk(&format!(
            "data: {{\"id\":\"cmpl-f\",\"choices\":[],\"usage\":{{\"prompt_tokens\":{prompt_tokens},\"completion_tokens\":{n},\"total_tokens\":{}}}}}\n\n",
            n + prompt_tokens as u64
        )));
    }
    tail.extend(chunk("data: [DONE]\n\n"));
    tail.extend_from_slice(b"0\r\n\r\n");
    sock.write_all(&tail).await.is_ok()
}
