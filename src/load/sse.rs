//! Server-sent events from an OpenAI-compatible streaming response, and what each event means
//! for the measurement.
//!
//! Two layers: [`SseParser`] splits bytes (in whatever pieces the network delivers them) into
//! events (`data:` lines joined, `:` comments skipped, other fields ignored, CRLF accepted);
//! [`StreamAccount`] applies vLLM's rules to each event: a chunk whose `choices` is non-empty is
//! a token arrival (the first gives TTFT, later ones ITLs; a chunk may carry several tokens), the
//! `usage` chunk gives token counts, `data: [DONE]` ends the stream. A `{"error": ...}` payload,
//! a payload that is not JSON, or data after `[DONE]` are failures.

use std::time::Instant;

use serde::Deserialize;

/// The longest SSE line (and the largest event) vbench holds for one response. A vLLM chunk is
/// under 2 KiB; a line that grows past this is a broken or hostile server, not a slow one.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Content chunks a response may send beyond what its `max_tokens` allows: `2 × max_tokens +
/// 64` (a chunk carries at least one token, and chat adds a role-only first chunk; the slack
/// absorbs servers that split differently). With `max_tokens` unknown (0), this many.
pub const MAX_CHUNKS_UNKNOWN: u64 = 1 << 16;

/// Generated text kept per content chunk allowed, when text is kept at all.
const TEXT_BYTES_PER_CHUNK: usize = 256;

/// Incremental SSE splitter. Feed it bytes; it calls back once per complete event with the
/// event's data (several `data:` lines joined by `\n`).
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Consume `bytes`; `on_event` gets each completed event's data. Stops early and returns
    /// the callback's error if it fails.
    ///
    /// A line or an event longer than [`MAX_LINE_BYTES`] is a [`StreamError::TooLarge`].
    pub fn push<E: From<StreamError>>(
        &mut self,
        mut bytes: &[u8],
        mut on_event: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        while !bytes.is_empty() {
            match memchr(b'\n', bytes) {
                None => {
                    self.grow_line(bytes)?;
                    return Ok(());
                }
                Some(i) => {
                    let (head, rest) = bytes.split_at(i);
                    bytes = &rest[1..];
                    if self.line.is_empty() {
                        self.take_line(head, &mut on_event)?;
                    } else {
                        self.grow_line(head)?;
                        let line = std::mem::take(&mut self.line);
                        let r = self.take_line(&line, &mut on_event);
                        self.line = line;
                        self.line.clear();
                        r?;
                    }
                }
            }
        }
        Ok(())
    }

    fn grow_line(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        if self.line.len() + bytes.len() > MAX_LINE_BYTES {
            self.line.clear();
            return Err(StreamError::TooLarge(format!(
                "an SSE line longer than {} KiB",
                MAX_LINE_BYTES >> 10
            )));
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// Bytes received that did not complete an event (a cut stream leaves some).
    pub fn has_partial(&self) -> bool {
        !self.line.is_empty() || self.has_data
    }

    /// End of input: a final event not followed by a blank line is still delivered, as
    /// browsers' EventSource does not but as lenient servers expect.
    pub fn finish<E: From<StreamError>>(
        &mut self,
        mut on_event: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.take_line(&line, &mut on_event)?;
        }
        self.dispatch(&mut on_event)
    }

    fn take_line<E: From<StreamError>>(
        &mut self,
        line: &[u8],
        on_event: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > MAX_LINE_BYTES {
            return Err(StreamError::TooLarge(format!(
                "an SSE line longer than {} KiB",
                MAX_LINE_BYTES >> 10
            ))
            .into());
        }
        if line.is_empty() {
            return self.dispatch(on_event);
        }
        if line[0] == b':' {
            return Ok(()); // comment / keep-alive ping
        }
        let (field, value) = match memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        if field == b"data" {
            if self.data.len() + value.len() >= MAX_LINE_BYTES {
                self.data.clear();
                self.has_data = false;
                return Err(StreamError::TooLarge(format!(
                    "an SSE event larger than {} KiB",
                    MAX_LINE_BYTES >> 10
                ))
                .into());
            }
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
        Ok(())
    }

    fn dispatch<E>(&mut self, on_event: &mut impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        if !self.has_data {
            return Ok(());
        }
        self.has_data = false;
        let r = on_event(&self.data);
        self.data.clear();
        r
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// Why a stream is not a valid completion stream.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamError {
    /// The server sent `{"error": ...}` inside the stream.
    Server(String),
    /// An event's data was not the JSON we expect, or came after `[DONE]`.
    Malformed(String),
    /// A line, an event or the generated text outgrew its bound ([`MAX_LINE_BYTES`]).
    TooLarge(String),
    /// More content chunks than the request's `max_tokens` allows ([`StreamAccount::new`]).
    TooManyChunks(String),
}

impl StreamError {
    pub fn kind(&self) -> &'static str {
        match self {
            StreamError::Server(_) => "server_error",
            StreamError::Malformed(_) => "malformed",
            StreamError::TooLarge(_) => "too_large",
            StreamError::TooManyChunks(_) => "too_many_chunks",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            StreamError::Server(m)
            | StreamError::Malformed(m)
            | StreamError::TooLarge(m)
            | StreamError::TooManyChunks(m) => m,
        }
    }
}

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(default, borrow)]
    choices: Option<FirstChoice<'a>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// The first element of `choices` (the rest are skipped without allocating).
struct FirstChoice<'a>(Option<Choice<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for FirstChoice<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = FirstChoice<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of choices")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<FirstChoice<'a>, A::Error> {
                let first = seq.next_element::<Choice<'a>>()?;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(FirstChoice(first))
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default, borrow)]
    text: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning_content: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    #[serde(default)]
    pub completion_tokens: Option<u64>,
}

/// A usage count above this is no count (a model's context is far smaller): it is malformed,
/// and it could not overflow the run's token sums.
const MAX_USAGE_TOKENS: u64 = 1 << 32;

/// The measurement of one streamed response, fed event by event.
#[derive(Debug)]
pub struct StreamAccount {
    /// Instant of the first chunk with non-empty `choices`.
    pub first: Option<Instant>,
    /// Instant of the latest chunk with non-empty `choices`.
    pub last: Option<Instant>,
    /// Gaps between successive content chunks, seconds.
    pub itls: Vec<f64>,
    /// Chunks with non-empty `choices`.
    pub content_chunks: u64,
    /// Chunks whose text/content/reasoning was non-empty (a token-count estimate without usage).
    pub nonempty_chunks: u64,
    /// The last `usage` object seen.
    pub usage: Option<Usage>,
    /// `data: [DONE]` was received.
    pub done: bool,
    /// Generated text, kept only when asked (to count tokens when the server sends no usage).
    pub text: Option<String>,
    /// Content chunks allowed before the stream is failed as [`StreamError::TooManyChunks`].
    max_chunks: u64,
}

impl StreamAccount {
    /// `expected_tokens` is the request's `max_tokens` (0: unknown); it bounds the content
    /// chunks (and so the ITL list and kept text) a response may send.
    pub fn new(keep_text: bool, expected_tokens: usize) -> Self {
        let max_chunks = match expected_tokens {
            0 => MAX_CHUNKS_UNKNOWN,
            n => 2 * n as u64 + 64,
        };
        StreamAccount {
            max_chunks,
            first: None,
            last: None,
            itls: Vec::with_capacity(expected_tokens.min(4096)),
            content_chunks: 0,
            nonempty_chunks: 0,
            usage: None,
            done: false,
            text: keep_text.then(String::new),
        }
    }

    /// Account one event's data received at `now`.
    pub fn on_event(&mut self, data: &[u8], now: Instant) -> Result<(), StreamError> {
        if self.done {
            return Err(StreamError::Malformed(format!(
                "data after [DONE]: {}",
                snippet(data)
            )));
        }
        if data == b"[DONE]" {
            self.done = true;
            return Ok(());
        }
        let chunk: Chunk = serde_json::from_slice(data).map_err(|e| {
            StreamError::Malformed(format!("event is not valid JSON ({e}): {}", snippet(data)))
        })?;
        if let Some(err) = chunk.error {
            let msg = err
                .get("message")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| err.to_string());
            return Err(StreamError::Server(msg));
        }
        if let Some(FirstChoice(Some(c))) = chunk.choices.as_ref() {
            if self.content_chunks >= self.max_chunks {
                return Err(StreamError::TooManyChunks(format!(
                    "more than {} content chunks for this request's max_tokens",
                    self.max_chunks
                )));
            }
            match self.last {
                None => self.first = Some(now),
                Some(prev) => self.itls.push((now - prev).as_secs_f64()),
            }
            self.last = Some(now);
            self.content_chunks += 1;
            let piece = c.text.as_deref().or_else(|| {
                c.delta.as_ref().and_then(|d| {
                    d.content
                        .as_deref()
                        .filter(|s| !s.is_empty())
                        .or(d.reasoning_content.as_deref())
                        .or(d.reasoning.as_deref())
                })
            });
            if let Some(p) = piece.filter(|p| !p.is_empty()) {
                self.nonempty_chunks += 1;
                if let Some(t) = self.text.as_mut() {
                    let bound = self.max_chunks as usize * TEXT_BYTES_PER_CHUNK;
                    if t.len() + p.len() > bound {
                        return Err(StreamError::TooLarge(format!(
                            "more than {bound} bytes of generated text ({TEXT_BYTES_PER_CHUNK} \
                             per token asked for)"
                        )));
                    }
                    t.push_str(p);
                }
            }
        }
        if let Some(u) = chunk.usage {
            for (name, n) in [
                ("prompt_tokens", u.prompt_tokens),
                ("completion_tokens", u.completion_tokens),
            ] {
                if let Some(n) = n.filter(|&n| n > MAX_USAGE_TOKENS) {
                    return Err(StreamError::Malformed(format!(
                        "usage.{name} = {n}: more tokens than any request holds"
                    )));
                }
            }
            self.usage = Some(u);
        }
        Ok(())
    }
}

fn snippet(data: &[u8]) -> String {
    let s = String::from_utf8_lossy(data);
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(input: &[u8], piece: usize) -> Vec<String> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for part in input.chunks(piece) {
            p.push(part, |d| {
                out.push(String::from_utf8(d.to_vec()).unwrap());
                Ok::<(), StreamError>(())
            })
            .unwrap();
        }
        p.finish(|d| {
            out.push(String::from_utf8(d.to_vec()).unwrap());
            Ok::<(), StreamError>(())
        })
        .unwrap();
        out
    }

    #[test]
    fn splits_events_across_any_piece_size_with_comments_crlf_and_multiline_data() {
        let input = b": ping\r\n\r\ndata: a\r\ndata:b\r\nid: 3\r\n\r\nevent: x\ndata: {\"k\":1}\n\ndata: [DONE]\n\n";
        for piece in [1, 2, 3, 7, 1000] {
            assert_eq!(
                events(input, piece),
                vec!["a\nb", "{\"k\":1}", "[DONE]"],
                "piece {piece}"
            );
        }
    }

    #[test]
    fn trailing_event_without_blank_line_is_delivered_at_finish() {
        assert_eq!(events(b"data: x\n\ndata: y", 4), vec!["x", "y"]);
    }

    #[test]
    fn account_follows_vllm_rules_for_choices_usage_and_done() {
        let t0 = Instant::now();
        let ms = |n| t0 + std::time::Duration::from_millis(n);
        let mut a = StreamAccount::new(true, 4);
        a.on_event(br#"{"choices":[{"index":0,"text":"he"}]}"#, ms(10))
            .unwrap();
        a.on_event(br#"{"choices":[{"index":0,"text":""}]}"#, ms(13))
            .unwrap();
        a.on_event(br#"{"choices":[{"index":0,"text":"llo"}]}"#, ms(20))
            .unwrap();
        a.on_event(
            br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":4}}"#,
            ms(21),
        )
        .unwrap();
        a.on_event(b"[DONE]", ms(22)).unwrap();
        assert_eq!(a.first, Some(ms(10)));
        assert_eq!(a.last, Some(ms(20)));
        assert_eq!(a.content_chunks, 3);
        assert_eq!(a.nonempty_chunks, 2);
        assert_eq!(a.itls.len(), 2);
        assert!((a.itls[0] - 0.003).abs() < 1e-9 && (a.itls[1] - 0.007).abs() < 1e-9);
        assert_eq!(a.usage.unwrap().completion_tokens, Some(4));
        assert_eq!(a.text.as_deref(), Some("hello"));
        assert!(a.done);
    }

    /// A usage count no request can have (here 2^64 - 1, which overflowed the run's token
    /// sum) is malformed, not believed.
    #[test]
    fn an_impossible_usage_count_is_malformed() {
        let mut a = StreamAccount::new(false, 4);
        let e = a
            .on_event(
                br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":18446744073709551615}}"#,
                Instant::now(),
            )
            .unwrap_err();
        assert_eq!(e.kind(), "malformed");
        assert!(e
            .message()
            .contains("usage.completion_tokens = 18446744073709551615"));
        assert_eq!(a.usage, None);
    }

    #[test]
    fn chat_role_delta_counts_as_first_chunk_and_reasoning_is_text() {
        let now = Instant::now();
        let mut a = StreamAccount::new(true, 4);
        a.on_event(
            br#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            now,
        )
        .unwrap();
        a.on_event(
            br#"{"choices":[{"index":0,"delta":{"reasoning_content":"hm"}}]}"#,
            now,
        )
        .unwrap();
        a.on_event(
            br#"{"choices":[{"index":0,"delta":{"content":"ok"}}]}"#,
            now,
        )
        .unwrap();
        assert_eq!(a.content_chunks, 3);
        assert_eq!(a.nonempty_chunks, 2);
        assert_eq!(a.text.as_deref(), Some("hmok"));
    }

    #[test]
    fn broken_payloads_are_classified() {
        let now = Instant::now();
        let mut a = StreamAccount::new(false, 0);
        let e = a.on_event(b"{\"choices\": [", now).unwrap_err();
        assert_eq!(e.kind(), "malformed");
        let e = a
            .on_event(br#"{"error":{"message":"boom","code":500}}"#, now)
            .unwrap_err();
        assert_eq!(e, StreamError::Server("boom".into()));
        a.on_event(b"[DONE]", now).unwrap();
        let e = a.on_event(br#"{"choices":[]}"#, now).unwrap_err();
        assert!(e.message().contains("after [DONE]"), "{e:?}");
    }
}
