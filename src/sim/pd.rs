//! Prefill/decode disaggregation: what `kv_transfer_params` in a request mean to an instance,
//! and what a prefill instance answers (docs/modes.md).
//!
//! NIXL (`--kv-connector nixl`, vLLM's `kv_role: kv_both`): the proxy marks a prefill request
//! with `do_remote_decode: true`; the instance prefills it and answers, in the non-streaming
//! JSON, `kv_transfer_params` = {do_remote_prefill: true, remote_engine_id, remote_block_ids,
//! remote_host, remote_port, ...}. The decode request carries those back; the instance then
//! pulls the KV (bytes / bandwidth) instead of prefilling, and counts the prompt tokens under
//! `source="external_kv_transfer"`. Without valid params it prefills locally (as vLLM does),
//! which shows as `source="local_compute"` and in `vbench_sim:decode_without_kv_transfer_total`.
//! Simplification: the prefill instance frees its KV blocks when it answers (vLLM keeps them
//! until the decoder has read them), and transfers to one decoder share one link, first come,
//! first served.
//!
//! LMCache (`--kv-connector lmcache`): the producer (role prefill) prefills requests whose
//! params carry `disagg_spec` and, asked with `ret_first_tok`, answers `kv_transfer_params =
//! {first_tok: id}`; the consumer (role decode) takes a request as one whose KV the producer
//! pushed (LMCache's proxy sends it the prompt's token ids plus that first token, without
//! params; one that still carries `disagg_spec` is read the same way): it waits for the KV to
//! arrive, then decodes. (The real producer pushes the KV to the consumer's LMCache, which the
//! consumer finds by the prompt's tokens.)

use serde_json::{json, Value};

/// Which kind of instance this is (`--role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A whole instance: kv_transfer_params are ignored, as without `--kv-transfer-config`.
    Simple,
    /// A prefill instance of a disaggregated pair.
    Prefill,
    /// A decode instance of a disaggregated pair.
    Decode,
}

/// Which KV connector the pair speaks (`--kv-connector`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connector {
    /// vLLM's NixlConnector (kv_both; the proxy decides who prefills).
    Nixl,
    /// LMCacheConnectorV1 (kv_producer on the prefill role, kv_consumer on the decode role).
    Lmcache,
}

/// Identity of this instance in the NIXL side channel.
#[derive(Debug, Clone)]
pub struct KvIdentity {
    pub engine_id: String,
    pub host: String,
    pub port: u16,
    pub tp: u32,
    pub block_size: u32,
}

/// What the instance does with one request.
#[derive(Debug, Clone, PartialEq)]
pub enum KvPlan {
    /// Prefill locally, answer without kv_transfer_params.
    Local,
    /// Prefill locally and answer with NIXL kv_transfer_params for a decoder.
    ProduceNixl,
    /// The KV comes from a remote prefill: wait for the transfer, skip the prefill.
    Consume,
}

/// How a request's kv_transfer_params were judged (for counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvVerdict {
    Ok,
    /// A decode-role request without any usable params.
    DecodeWithoutParams,
    /// Params present but malformed (missing ids, wrong token count...).
    Invalid,
}

/// Decide what to do with a request's `kv_transfer_params` (`params` is the JSON value or
/// null) for a prompt of `prompt_tokens` tokens.
pub fn plan(
    role: Role,
    connector: Connector,
    params: &Value,
    prompt_tokens: u32,
) -> (KvPlan, KvVerdict) {
    if role == Role::Simple {
        return (KvPlan::Local, KvVerdict::Ok);
    }
    let obj = params.as_object();
    let missing = if role == Role::Decode {
        KvVerdict::DecodeWithoutParams
    } else {
        KvVerdict::Ok
    };
    let Some(obj) = obj else {
        // An LMCache decoder (kv_consumer) finds the KV the producer pushed by looking the
        // prompt up in its own LMCache; LMCache's proxy sends it no params. The simulator takes
        // every such request as one whose KV was pushed.
        if role == Role::Decode && connector == Connector::Lmcache {
            return (KvPlan::Consume, KvVerdict::Ok);
        }
        return (KvPlan::Local, missing);
    };
    match connector {
        Connector::Nixl => {
            if obj.get("do_remote_decode").and_then(Value::as_bool) == Some(true) {
                return (KvPlan::ProduceNixl, KvVerdict::Ok);
            }
            if obj.get("do_remote_prefill").and_then(Value::as_bool) == Some(true) {
                return if nixl_params_valid(obj, prompt_tokens) {
                    (KvPlan::Consume, KvVerdict::Ok)
                } else {
                    (KvPlan::Local, KvVerdict::Invalid)
                };
            }
            (KvPlan::Local, missing)
        }
        Connector::Lmcache => {
            let spec_ok = obj
                .get("disagg_spec")
                .and_then(Value::as_object)
                .is_some_and(|s| s.get("req_id").is_some_and(|r| r.is_string()));
            match (role, spec_ok, obj.contains_key("disagg_spec")) {
                (Role::Decode, true, _) => (KvPlan::Consume, KvVerdict::Ok),
                (_, false, true) => (KvPlan::Local, KvVerdict::Invalid),
                _ => (KvPlan::Local, missing),
            }
        }
    }
}

/// An LMCache producer (kv_producer with a PD backend) asked without a `disagg_spec`: it has
/// no decoder to push the prompt's KV to, and real LMCache kills the engine.
pub fn producer_without_receiver(role: Role, connector: Connector, params: &Value) -> bool {
    role == Role::Prefill && connector == Connector::Lmcache && params.get("disagg_spec").is_none()
}

/// What an LMCache producer answers when the proxy asks for the first token back
/// (`ret_first_tok`): `{"first_tok": id}`, which the proxy appends to the decoder's prompt.
pub fn first_token_params(
    role: Role,
    connector: Connector,
    params: &Value,
    first_id: u32,
) -> Option<Value> {
    let wants = params
        .get("ret_first_tok")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    (role == Role::Prefill && connector == Connector::Lmcache && wants)
        .then(|| json!({"first_tok": first_id}))
}

fn nixl_params_valid(obj: &serde_json::Map<String, Value>, prompt_tokens: u32) -> bool {
    let engine = obj
        .get("remote_engine_id")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    let host = obj
        .get("remote_host")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    let port = obj
        .get("remote_port")
        .and_then(Value::as_u64)
        .is_some_and(|p| p > 0 && p < 65536);
    // vLLM 0.26 nests the ids per KV-cache group ([[1, 2, ...]]); older versions are flat.
    let blocks = match obj.get("remote_block_ids") {
        Some(Value::Array(a)) if !a.is_empty() => a.iter().all(|g| match g {
            Value::Array(ids) => !ids.is_empty() && ids.iter().all(Value::is_u64),
            v => v.is_u64(),
        }),
        _ => false,
    };
    let tokens = match obj.get("remote_num_tokens") {
        None | Some(Value::Null) => true,
        Some(v) => v.as_u64() == Some(prompt_tokens as u64),
    };
    engine && host && port && blocks && tokens
}

/// The kv_transfer_params a NIXL prefill instance returns for request `request_id`.
pub fn produced_params(id: &KvIdentity, request_id: &str, prompt_tokens: u32) -> Value {
    let blocks = prompt_tokens.div_ceil(id.block_size.max(1));
    let ids: Vec<u32> = (1..=blocks).collect();
    json!({
        "do_remote_prefill": true,
        "do_remote_decode": false,
        "remote_block_ids": [ids],
        "remote_engine_id": id.engine_id,
        "remote_request_id": request_id,
        "remote_host": id.host,
        "remote_port": id.port,
        "tp_size": id.tp,
        "remote_num_tokens": prompt_tokens,
        "remote_blocks_expiry_time": null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident() -> KvIdentity {
        KvIdentity {
            engine_id: "e1".into(),
            host: "127.0.0.1".into(),
            port: 5600,
            tp: 1,
            block_size: 16,
        }
    }

    #[test]
    fn prefill_params_round_trip_into_a_remote_decode() {
        let p = plan(
            Role::Prefill,
            Connector::Nixl,
            &json!({"do_remote_decode": true, "do_remote_prefill": false, "remote_engine_id": null, "remote_block_ids": null, "remote_host": null, "remote_port": null}),
            200,
        );
        assert_eq!(p, (KvPlan::ProduceNixl, KvVerdict::Ok));
        let out = produced_params(&ident(), "cmpl-1", 200);
        assert_eq!(out["remote_block_ids"][0].as_array().unwrap().len(), 13);
        assert_eq!(
            plan(Role::Decode, Connector::Nixl, &out, 200),
            (KvPlan::Consume, KvVerdict::Ok)
        );
    }

    #[test]
    fn decode_without_or_with_broken_params_prefills_locally() {
        assert_eq!(
            plan(Role::Decode, Connector::Nixl, &Value::Null, 10),
            (KvPlan::Local, KvVerdict::DecodeWithoutParams)
        );
        let mut out = produced_params(&ident(), "x", 200);
        out["remote_block_ids"] = json!([]);
        assert_eq!(
            plan(Role::Decode, Connector::Nixl, &out, 200),
            (KvPlan::Local, KvVerdict::Invalid)
        );
        let out = produced_params(&ident(), "x", 200);
        assert_eq!(
            plan(Role::Decode, Connector::Nixl, &out, 199),
            (KvPlan::Local, KvVerdict::Invalid),
            "token count must match"
        );
        assert_eq!(
            plan(Role::Simple, Connector::Nixl, &out, 200),
            (KvPlan::Local, KvVerdict::Ok)
        );
    }

    #[test]
    fn lmcache_consumer_needs_a_disagg_spec() {
        let spec = json!({"ret_first_tok": true, "disagg_spec": {"req_id": "r1", "receiver_host": "127.0.0.1", "receiver_init_port": [7300], "receiver_alloc_port": [7400]}});
        assert_eq!(
            plan(Role::Decode, Connector::Lmcache, &spec, 5),
            (KvPlan::Consume, KvVerdict::Ok)
        );
        assert_eq!(
            plan(Role::Prefill, Connector::Lmcache, &spec, 5),
            (KvPlan::Local, KvVerdict::Ok)
        );
        assert_eq!(
            plan(
                Role::Decode,
                Connector::Lmcache,
                &json!({"disagg_spec": 3}),
                5
            ),
            (KvPlan::Local, KvVerdict::Invalid)
        );
    }
}
