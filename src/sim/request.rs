//! Parsing and validating OpenAI-style requests the way vLLM does, with vLLM's error JSON.

use serde_json::{json, Value};

use super::sse::Api;
use super::tokens;

/// A request the engine can run.
#[derive(Debug, Clone, PartialEq)]
pub struct GenRequest {
    pub api: Api,
    pub prompt_tokens: u32,
    /// The prompt as token ids (the model's tokenizer's, or stand-in ids that are equal for
    /// equal text prefixes), for the prefix cache's block hashes.
    pub prompt_ids: Vec<u32>,
    pub max_tokens: u32,
    pub stream: bool,
    pub include_usage: bool,
    /// `kv_transfer_params` as sent (null when absent).
    pub kv_params: Value,
    /// `temperature` = 0: greedy decoding, whose answer follows from the prompt.
    pub greedy: bool,
}

/// An error answered as vLLM answers it: `{"error": {message, type, param, code}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
    pub param: Option<&'static str>,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>, param: Option<&'static str>) -> Self {
        ApiError {
            status: 400,
            kind: "BadRequestError",
            message: message.into(),
            param,
        }
    }

    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.status,
        }})
    }
}

/// Tokens of a chat conversation: each message's content plus a few for the chat template.
pub fn chat_prompt_tokens(messages: &Value, counter: &tokens::Counter) -> Result<u32, ApiError> {
    let arr = messages
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request("messages must be a non-empty list", Some("messages"))
        })?;
    let mut n = 3u32; // the assistant prefix the template adds
    for m in arr {
        let obj = m.as_object().ok_or_else(|| {
            ApiError::bad_request("each message must be an object", Some("messages"))
        })?;
        if !obj.get("role").is_some_and(Value::is_string) {
            return Err(ApiError::bad_request(
                "each message needs a string `role`",
                Some("messages"),
            ));
        }
        n += 4;
        match obj.get("content") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => n += counter.content(s),
            Some(Value::Array(parts)) => {
                for p in parts {
                    match p.get("text").and_then(Value::as_str) {
                        Some(t) => n += counter.content(t),
                        None => {
                            return Err(ApiError::bad_request(
                                "sim-serve supports text content parts only",
                                Some("messages"),
                            ))
                        }
                    }
                }
            }
            Some(_) => {
                return Err(ApiError::bad_request(
                    "message content must be a string or a list of parts",
                    Some("messages"),
                ))
            }
        }
    }
    Ok(n)
}

/// Stand-in ids of a chat conversation already validated by [`chat_prompt_tokens`]: a marker
/// per message (where the template's tokens go) and its content's ids.
fn chat_prompt_ids(messages: &Value, counter: &tokens::Counter) -> Vec<u32> {
    let mut ids = Vec::new();
    for m in messages.as_array().into_iter().flatten() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        ids.extend(tokens::ids(role, u32::MAX));
        ids.push(u32::MAX);
        match m.get("content") {
            Some(Value::String(s)) => ids.extend(counter.content_ids(s)),
            Some(Value::Array(parts)) => {
                for t in parts.iter().filter_map(|p| p.get("text")?.as_str()) {
                    ids.extend(counter.content_ids(t));
                }
            }
            _ => {}
        }
    }
    ids
}

/// Tokens of a completions `prompt`: a string, a list of token ids, or a list of one of those.
pub fn completion_prompt_tokens(
    prompt: Option<&Value>,
    counter: &tokens::Counter,
) -> Result<u32, ApiError> {
    Ok(completion_prompt_ids(prompt, counter)?.len() as u32)
}

/// A completions `prompt` as token ids (a string is tokenised as [`tokens::Counter`] counts
/// it); the errors vLLM gives for a missing, empty or batched prompt.
pub fn completion_prompt_ids(
    prompt: Option<&Value>,
    counter: &tokens::Counter,
) -> Result<Vec<u32>, ApiError> {
    let err = |m: &str| ApiError::bad_request(m, Some("prompt"));
    let p = prompt.ok_or_else(|| err("`prompt` is required"))?;
    let ids = match p {
        Value::String(s) => counter.prompt_ids(s),
        Value::Array(a) if a.is_empty() => return Err(err("prompt cannot be empty")),
        Value::Array(a) if a.iter().all(Value::is_u64) => a
            .iter()
            .filter_map(Value::as_u64)
            .map(|i| i as u32)
            .collect(),
        Value::Array(a) if a.len() == 1 => return completion_prompt_ids(a.first(), counter),
        Value::Array(_) => {
            return Err(err(
                "sim-serve takes one prompt per request (a string or a list of token ids)",
            ))
        }
        _ => return Err(err("prompt must be a string or a list of token ids")),
    };
    if ids.is_empty() {
        return Err(err("prompt cannot be empty"));
    }
    Ok(ids)
}

/// Parse a completions or chat body for the model `served` with context `max_model_len`.
/// A model name that is not served is a 404, as in vLLM.
pub fn parse(
    v: &Value,
    api: Api,
    served: &str,
    max_model_len: u32,
    counter: &tokens::Counter,
) -> Result<GenRequest, ApiError> {
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::bad_request("the request body must be a JSON object", None))?;
    match obj.get("model") {
        None | Some(Value::Null) => {}
        Some(Value::String(m)) if m == served => {}
        Some(Value::String(m)) => {
            return Err(ApiError {
                status: 404,
                kind: "NotFoundError",
                message: format!("The model `{m}` does not exist."),
                param: Some("model"),
            })
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "model must be a string",
                Some("model"),
            ))
        }
    }
    // The prompt's ids are counted (completions) and hashed into prefix-cache blocks.
    let (prompt_tokens, prompt_ids) = match api {
        Api::Completions => {
            let ids = completion_prompt_ids(obj.get("prompt"), counter)?;
            (ids.len() as u32, ids)
        }
        Api::Chat => {
            let messages = obj.get("messages").unwrap_or(&Value::Null);
            (
                chat_prompt_tokens(messages, counter)?,
                chat_prompt_ids(messages, counter),
            )
        }
    };
    if let Some(n) = obj.get("n") {
        if n.as_u64() != Some(1) && !n.is_null() {
            return Err(ApiError::bad_request(
                "sim-serve supports n = 1 only",
                Some("n"),
            ));
        }
    }
    let keys: &[&'static str] = match api {
        Api::Completions => &["max_tokens"],
        Api::Chat => &["max_completion_tokens", "max_tokens"],
    };
    let mut max_tokens = None;
    for &k in keys {
        match obj.get(k) {
            None | Some(Value::Null) => continue,
            Some(v) => {
                let n = v.as_i64().ok_or_else(|| {
                    ApiError::bad_request(format!("{k} must be an integer"), Some(k))
                })?;
                if n < 1 {
                    return Err(ApiError::bad_request(
                        format!("{k} must be at least 1, got {n}."),
                        Some(k),
                    ));
                }
                max_tokens = Some(n.min(u32::MAX as i64) as u32);
                break;
            }
        }
    }
    if prompt_tokens >= max_model_len {
        return Err(ApiError::bad_request(
            format!(
                "This model's maximum context length is {max_model_len} tokens. However, your request has {prompt_tokens} input tokens. Please reduce the length of the input messages."
            ),
            Some("input_tokens"),
        ));
    }
    let max_tokens = match (max_tokens, api) {
        (Some(m), _) => m,
        (None, Api::Completions) => 16,
        (None, Api::Chat) => max_model_len - prompt_tokens,
    };
    if prompt_tokens as u64 + max_tokens as u64 > max_model_len as u64 {
        return Err(ApiError::bad_request(
            format!(
                "This model's maximum context length is {max_model_len} tokens. However, you requested {} tokens ({prompt_tokens} in the messages, {max_tokens} in the completion). Please reduce the length of the messages or completion.",
                prompt_tokens as u64 + max_tokens as u64
            ),
            Some("max_tokens"),
        ));
    }
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::bad_request(
                "stream must be a boolean",
                Some("stream"),
            ))
        }
    };
    let include_usage = match obj.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => {
            if !stream {
                return Err(ApiError::bad_request(
                    "Stream options can only be defined when `stream=True`.",
                    Some("stream_options"),
                ));
            }
            o.get("include_usage")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "stream_options must be an object",
                Some("stream_options"),
            ))
        }
    };
    let greedy = match obj.get("temperature") {
        None | Some(Value::Null) => false,
        Some(t) => match t.as_f64() {
            Some(t) if t >= 0.0 => t == 0.0,
            _ => {
                return Err(ApiError::bad_request(
                    "temperature must be a number of at least 0",
                    Some("temperature"),
                ))
            }
        },
    };
    Ok(GenRequest {
        api,
        prompt_tokens,
        prompt_ids,
        max_tokens,
        stream,
        include_usage,
        kv_params: obj
            .get("kv_transfer_params")
            .cloned()
            .unwrap_or(Value::Null),
        greedy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: Value) -> Result<GenRequest, ApiError> {
        parse(&v, Api::Completions, "m", 100, &tokens::Counter::default())
    }

    #[test]
    fn token_id_prompts_count_exactly_and_defaults_apply() {
        let r = p(json!({"model": "m", "prompt": [1, 2, 3], "stream": true, "stream_options": {"include_usage": true}})).unwrap();
        assert_eq!(
            (r.prompt_tokens, r.max_tokens, r.stream, r.include_usage),
            (3, 16, true, true)
        );
        let c = parse(&json!({"messages": [{"role": "user", "content": "hi there"}], "max_completion_tokens": 5}), Api::Chat, "m", 100, &tokens::Counter::default()).unwrap();
        assert_eq!(
            (c.prompt_tokens, c.max_tokens),
            (3 + 4 + tokens::count("hi there"), 5)
        );
    }

    #[test]
    fn with_a_tokenizer_prompts_count_as_the_model_counts_them() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-model");
        let tok = std::sync::Arc::new(crate::load::Tokenizer::load(dir).unwrap());
        let counter = tokens::Counter::real(tok.clone());
        let text = "The quick brown fox jumps over the lazy dog, twice: quick, quick!";
        let exact = tok.encode(text, true).unwrap().len() as u32;
        let r = parse(
            &json!({"prompt": text}),
            Api::Completions,
            "m",
            1000,
            &counter,
        )
        .unwrap();
        assert_eq!(r.prompt_tokens, exact);
        let stand_in = p(json!({"prompt": text})).unwrap().prompt_tokens;
        assert_ne!(stand_in, exact, "the stand-in only approximates");
        let chat = json!([{"role": "user", "content": text}]);
        let content = tok.encode(text, false).unwrap().len() as u32;
        assert_eq!(
            chat_prompt_tokens(&chat, &counter).unwrap(),
            3 + 4 + content
        );
    }

    #[test]
    fn invalid_requests_get_vllm_style_errors() {
        let e = p(json!({"prompt": "x", "max_tokens": 0})).unwrap_err();
        assert_eq!((e.status, e.kind), (400, "BadRequestError"));
        assert_eq!(e.body()["error"]["code"], 400);
        assert_eq!(
            p(json!({"model": "other", "prompt": "x"}))
                .unwrap_err()
                .status,
            404
        );
        assert!(p(json!({"prompt": [1, 2], "max_tokens": 99}))
            .unwrap_err()
            .message
            .contains("maximum context length is 100"));
        assert_eq!(p(json!({"max_tokens": 3})).unwrap_err().status, 400);
        assert_eq!(
            p(json!({"prompt": [], "max_tokens": 3}))
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            p(json!({"prompt": "x", "stream": "yes"}))
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            p(json!({"prompt": "x", "max_tokens": 1.5}))
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(p(json!([1])).unwrap_err().status, 400);
    }
}
