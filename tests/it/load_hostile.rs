//! `vbench bench` against servers that never stop sending: every request ends by its deadline
//! or at a bound, is counted as failed with its own kind, and the client stays small.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use vbench::load::RunResult;

/// What the server sends after its response head, forever (until the client hangs up).
#[derive(Clone, Copy)]
enum Hostile {
    /// Valid completion chunks as fast as it can: a stream with no end.
    Tokens,
    /// SSE comment lines only: no event ever completes, bytes never stop.
    Comments,
    /// One `data:` line that never ends.
    Line,
    /// A chunked body whose chunk-size line never ends.
    ChunkSize,
}

/// A server on 127.0.0.1 answering every request the hostile way; returns its base URL.
fn serve(mode: Hostile) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut byte) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&byte[..n]),
                    }
                }
                let (response_head, piece): (&[u8], Vec<u8>) = match mode {
                    Hostile::Tokens => (
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n",
                        b"data: {\"choices\":[{\"index\":0,\"text\":\"x\"}]}\n\n".repeat(64),
                    ),
                    Hostile::Comments => (
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n",
                        b": ping\n".repeat(512),
                    ),
                    Hostile::Line => (
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\ndata: ",
                        vec![b'a'; 16 * 1024],
                    ),
                    Hostile::ChunkSize => (
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
                        vec![b'f'; 16 * 1024],
                    ),
                };
                if conn.write_all(response_head).is_err() {
                    return;
                }
                while conn.write_all(&piece).is_ok() {}
            });
        }
    });
    url
}

/// Two requests of 16 tokens with a 3 s timeout: how long it took and what was recorded.
fn bench(mode: Hostile, extra: &[&str]) -> (Duration, RunResult) {
    let url = serve(mode);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    let tiny = format!("{}/tests/fixtures/tiny-model", env!("CARGO_MANIFEST_DIR"));
    let t0 = Instant::now();
    Command::cargo_bin("vbench")
        .unwrap()
        .args(["bench", "--base-url", &url, "--model", "m"])
        .args(["--tokenizer", &tiny, "--dataset", "random"])
        .args([
            "--input-len",
            "16",
            "--output-len",
            "16",
            "--num-prompts",
            "2",
        ])
        .args(["--rate", "inf", "--timeout-s", "3", "--warmup", "0"])
        .args(extra)
        .arg("--out")
        .arg(&out)
        .timeout(Duration::from_secs(60))
        .assert()
        .code(1);
    let took = t0.elapsed();
    let r: RunResult = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    (took, r)
}

fn kinds(r: &RunResult) -> Vec<String> {
    r.vbench
        .requests
        .iter()
        .map(|q| q.error_kind.clone().unwrap_or_default())
        .collect()
}

fn check(mode: Hostile, kind: &str, within: Duration) {
    check_with(mode, &[], kind, within)
}

fn check_with(mode: Hostile, extra: &[&str], kind: &str, within: Duration) {
    let (took, r) = bench(mode, extra);
    assert_eq!((r.completed, r.failed), (0, 2), "{:?}", r.errors);
    assert_eq!(kinds(&r), [kind, kind], "{:?}", r.errors);
    assert!(took < within, "took {took:?}");
    let rss = r.vbench.client.max_rss_mib.expect("peak RSS recorded");
    assert!(rss < 100.0, "peak RSS {rss} MiB");
}

#[test]
fn an_endless_token_stream_fails_at_the_chunk_bound() {
    let _busy = crate::support::busy();
    check(Hostile::Tokens, "too_many_chunks", Duration::from_secs(10));
}

#[test]
fn endless_comments_fail_at_the_deadline() {
    let _busy = crate::support::busy();
    // Bytes never stop, so only the clock read inside the read loop can end the request.
    check(Hostile::Comments, "timeout", Duration::from_secs(10));
}

#[test]
fn a_line_that_never_ends_fails_at_the_line_bound() {
    let _busy = crate::support::busy();
    check(Hostile::Line, "too_large", Duration::from_secs(10));
}

#[test]
fn a_chunk_size_line_that_never_ends_is_malformed() {
    let _busy = crate::support::busy();
    check(Hostile::ChunkSize, "malformed", Duration::from_secs(10));
}

#[test]
fn the_reqwest_path_has_the_same_bounds() {
    let _busy = crate::support::busy();
    check_with(
        Hostile::Tokens,
        &["--reqwest"],
        "too_many_chunks",
        Duration::from_secs(10),
    );
    check_with(
        Hostile::Line,
        &["--reqwest"],
        "too_large",
        Duration::from_secs(10),
    );
}

/// A server that answers each request on a connection with `answer(n)` (n counts the
/// connection's requests from 0) and then `after(n)`; keeps the connection while the request
/// asked for nothing else. Returns its base URL.
fn serve_wire(answer: fn(usize) -> Vec<u8>, after: fn(usize) -> Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                for n in 0.. {
                    // The request: its head, then Content-Length bytes of body.
                    let mut byte = [0u8; 4096];
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match conn.read(&mut byte) {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&byte[..k]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    while buf.len() < head_end + len {
                        match conn.read(&mut byte) {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&byte[..k]),
                        }
                    }
                    buf.drain(..head_end + len);
                    if conn.write_all(&answer(n)).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(30));
                    if conn.write_all(&after(n)).is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// A complete 200 stream of one token `text`, framed by Content-Length.
fn framed_stream(text: &str, prompt_tokens: u64) -> Vec<u8> {
    let body = format!(
        "data: {{\"choices\":[{{\"index\":0,\"text\":\"{text}\"}}]}}\n\n\
         data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":{prompt_tokens},\"completion_tokens\":1}}}}\n\n\
         data: [DONE]\n\n"
    );
    let mut out = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// `vbench bench` of `n` requests at `rate` (constant arrivals) with `extra` flags; the result.
fn bench_wire(url: &str, n: usize, rate: &str, extra: &[&str]) -> RunResult {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    let tiny = format!("{}/tests/fixtures/tiny-model", env!("CARGO_MANIFEST_DIR"));
    let _ = Command::cargo_bin("vbench")
        .unwrap()
        .args(["bench", "--base-url", url, "--model", "m"])
        .args(["--tokenizer", &tiny, "--dataset", "random"])
        .args(["--input-len", "16", "--output-len", "1", "--ignore-eos"])
        .args(["--num-prompts", &n.to_string(), "--rate", rate])
        .args(["--arrival", "constant", "--timeout-s", "5", "--warmup", "0"])
        .args(extra)
        .arg("--out")
        .arg(&out)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
}

/// A server that sends a second, unasked response on a kept-alive connection after each real
/// one: no request may take it for its answer (it was read as the next request's, with a
/// TTFT below zero and its token counts). The connection that holds it is not reused.
#[test]
fn an_unasked_response_on_a_kept_alive_connection_answers_no_request() {
    let _busy = crate::support::busy();
    let url = serve_wire(
        |_| framed_stream("real", 10),
        |_| framed_stream("STALE", 777),
    );
    for extra in [&[][..], &["--reqwest"][..]] {
        let r = bench_wire(&url, 8, "10", extra);
        assert_eq!((r.completed, r.failed), (8, 0), "{extra:?}: {:?}", r.errors);
        for q in &r.vbench.requests {
            assert!(q.ttft_s.unwrap() > 0.0, "{extra:?}: {q:?}");
            assert_eq!(q.prompt_tokens, 10, "{extra:?}: {q:?}");
        }
    }
}

/// What a request records of the response head: 500 with no body is an HTTP error (not a
/// timeout) with its status, and soon; a `100 Continue` before the real head is skipped; two Content-Lengths that differ are
/// malformed.
#[test]
fn the_status_recorded_is_the_heads_and_interim_heads_are_skipped() {
    let _busy = crate::support::busy();
    let silent_500 = serve_wire(
        |_| b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 100\r\n\r\n".to_vec(),
        |_| {
            std::thread::sleep(Duration::from_secs(30));
            Vec::new()
        },
    );
    let t0 = Instant::now();
    let r = bench_wire(&silent_500, 1, "inf", &[]);
    let q = &r.vbench.requests[0];
    assert_eq!(
        (q.error_kind.as_deref(), q.http_status),
        (Some("http"), Some(500)),
        "{q:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());

    let continue_first = serve_wire(
        |_| {
            let mut out = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
            out.extend(framed_stream("ok", 10));
            out
        },
        |_| Vec::new(),
    );
    let r = bench_wire(&continue_first, 2, "inf", &[]);
    assert_eq!((r.completed, r.failed), (2, 0), "{:?}", r.errors);

    let two_lengths = serve_wire(
        |_| {
            let mut out = framed_stream("ok", 10);
            out.splice(17..17, b"content-length: 5\r\n".iter().copied());
            out
        },
        |_| Vec::new(),
    );
    let r = bench_wire(&two_lengths, 1, "inf", &[]);
    let q = &r.vbench.requests[0];
    assert_eq!(q.error_kind.as_deref(), Some("malformed"), "{q:?}");
    assert!(
        q.error.as_deref().unwrap().contains("two Content-Length"),
        "{q:?}"
    );
}
