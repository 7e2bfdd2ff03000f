//! vLLM's response bodies, byte for byte in shape: SSE chunks for streaming (one `data:` event
//! per token, a usage chunk when asked, `data: [DONE]`) and the non-streaming JSON.
//! Field names and order follow the transcripts in tests/fixtures/vllm-cpu/.

use serde_json::{json, Value};

/// Completions or chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Completions,
    Chat,
}

/// The parts of every chunk of one response that do not change.
#[derive(Debug, Clone)]
pub struct Encoder {
    pub api: Api,
    /// `"id":"...","object":"...","created":N,"model":"..."` already JSON-escaped.
    head: String,
    pub id: String,
    pub created: u64,
    pub model: String,
}

/// The fingerprint chunks carry; says plainly that the server is the simulator.
pub const FINGERPRINT: &str = concat!("vbench-sim-", env!("CARGO_PKG_VERSION"));

impl Encoder {
    pub fn new(api: Api, id: String, created: u64, model: &str) -> Self {
        let object = match api {
            Api::Completions => "text_completion",
            Api::Chat => "chat.completion.chunk",
        };
        let head = format!(
            "\"id\":{},\"object\":\"{object}\",\"created\":{created},\"model\":{}",
            json_str(&id),
            json_str(model)
        );
        Encoder {
            api,
            head,
            id,
            created,
            model: model.to_string(),
        }
    }

    /// The chat role chunk that precedes the first token.
    pub fn role_chunk(&self) -> String {
        format!(
            "data: {{{},\"choices\":[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\"}},\"logprobs\":null,\"finish_reason\":null}}],\"prompt_token_ids\":null,\"prompt_text\":null}}\n\n",
            self.head
        )
    }

    /// One token's chunk; `text` must need no JSON escaping (see `tokens::piece`).
    pub fn token_chunk(&self, out: &mut String, text: &str, last: bool) {
        use std::fmt::Write;
        let finish = if last {
            "\"length\",\"stop_reason\":null"
        } else {
            "null"
        };
        let stop = if last { "" } else { ",\"stop_reason\":null" };
        let _ = match self.api {
            Api::Completions => write!(
                out,
                "data: {{{},\"choices\":[{{\"index\":0,\"text\":\"{text}\",\"logprobs\":null,\"finish_reason\":{finish}{stop},\"prompt_token_ids\":null,\"token_ids\":null}}]}}\n\n",
                self.head
            ),
            Api::Chat => write!(
                out,
                "data: {{{},\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}},\"logprobs\":null,\"finish_reason\":{finish},\"token_ids\":null}}]}}\n\n",
                self.head
            ),
        };
    }

    /// The usage chunk (stream_options.include_usage) and the end marker.
    pub fn usage_chunk(&self, prompt: u32, completion: u32) -> String {
        format!(
            "data: {{{},\"choices\":[],\"usage\":{{\"prompt_tokens\":{prompt},\"total_tokens\":{},\"completion_tokens\":{completion}}},\"system_fingerprint\":\"{FINGERPRINT}\"}}\n\n",
            self.head,
            prompt + completion
        )
    }

    pub const DONE: &'static str = "data: [DONE]\n\n";

    /// The non-streaming response.
    pub fn full_response(
        &self,
        text: &str,
        prompt: u32,
        completion: u32,
        kv_transfer_params: Value,
    ) -> Value {
        let usage = json!({
            "prompt_tokens": prompt,
            "total_tokens": prompt + completion,
            "completion_tokens": completion,
            "prompt_tokens_details": null,
        });
        match self.api {
            Api::Completions => json!({
                "id": self.id,
                "object": "text_completion",
                "created": self.created,
                "model": self.model,
                "choices": [{
                    "index": 0,
                    "text": text,
                    "logprobs": null,
                    "finish_reason": "length",
                    "stop_reason": null,
                    "token_ids": null,
                    "prompt_logprobs": null,
                    "prompt_token_ids": null,
                }],
                "service_tier": null,
                "system_fingerprint": FINGERPRINT,
                "usage": usage,
                "kv_transfer_params": kv_transfer_params,
            }),
            Api::Chat => json!({
                "id": self.id,
                "object": "chat.completion",
                "created": self.created,
                "model": self.model,
                "choices": [{
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": text,
                        "refusal": null,
                        "annotations": null,
                        "audio": null,
                        "function_call": null,
                        "tool_calls": [],
                        "reasoning_content": null,
                    },
                    "logprobs": null,
                    "finish_reason": "length",
                    "stop_reason": null,
                    "token_ids": null,
                }],
                "service_tier": null,
                "system_fingerprint": FINGERPRINT,
                "usage": usage,
                "prompt_logprobs": null,
                "prompt_token_ids": null,
                "kv_transfer_params": kv_transfer_params,
            }),
        }
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_is_one_json_event() {
        let e = Encoder::new(Api::Chat, "chatcmpl-1".into(), 5, "we\"ird");
        let mut s = e.role_chunk();
        e.token_chunk(&mut s, " the", false);
        e.token_chunk(&mut s, " end", true);
        s.push_str(&e.usage_chunk(3, 2));
        for ev in s.split("\n\n").filter(|x| !x.is_empty()) {
            let body = ev.strip_prefix("data: ").unwrap();
            let v: Value = serde_json::from_str(body).unwrap();
            assert_eq!(v["model"], "we\"ird");
        }
    }
}
