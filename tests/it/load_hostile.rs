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
