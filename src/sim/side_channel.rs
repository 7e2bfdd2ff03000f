//! The NIXL side channel, as vLLM's NixlConnector uses it (`sim-serve --kv-side-channel`): a
//! prefill instance listens on `VLLM_NIXL_SIDE_CHANNEL_HOST:PORT`; a decoder connects to the
//! host and port a request's kv_transfer_params name, and learns the prefill's engine id,
//! before it reads any KV. A side-channel host the decoder cannot reach (127.0.0.1 for a
//! prefill on another node) then fails the transfer here as it would in vLLM, and the
//! decoder prefills locally (vLLM's `kv_load_failure_policy = "recompute"`), which
//! `/metrics` shows. Opt-in: instances on one host sharing the default port would collide.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long a decoder waits for a prefill's side channel to connect and answer.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// Listen on `host:port` and answer every connection with `engine_id` and a newline.
pub async fn listen(host: &str, port: u16, engine_id: String) -> anyhow::Result<JoinHandle<()>> {
    let listener = TcpListener::bind((host, port))
        .await
        .with_context(|| format!("binding the NIXL side channel {host}:{port}"))?;
    Ok(tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let line = format!("{engine_id}\n");
            tokio::spawn(async move {
                let _ = conn.write_all(line.as_bytes()).await;
            });
        }
    }))
}

/// A decoder's handshakes: each prefill's side channel is asked once, when it answers.
#[derive(Debug, Default)]
pub struct Handshakes {
    done: Mutex<HashSet<(String, u16, String)>>,
}

impl Handshakes {
    /// Reach the side channel that `params` (a NIXL prefill's kv_transfer_params) name, and
    /// check that the engine there is the one they name; why not, when it fails.
    pub async fn check(&self, params: &Value) -> Result<(), String> {
        let host = params["remote_host"].as_str().unwrap_or_default();
        let port = params["remote_port"].as_u64().unwrap_or(0) as u16;
        let engine = params["remote_engine_id"].as_str().unwrap_or_default();
        let key = (host.to_owned(), port, engine.to_owned());
        if self.done.lock().expect("not poisoned").contains(&key) {
            return Ok(());
        }
        let answer = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            let conn = TcpStream::connect((host, port)).await?;
            let mut line = String::new();
            BufReader::new(conn).read_line(&mut line).await?;
            Ok::<_, std::io::Error>(line)
        })
        .await;
        match answer {
            Ok(Ok(line)) if line.trim() == engine => {
                self.done.lock().expect("not poisoned").insert(key);
                Ok(())
            }
            Ok(Ok(line)) => Err(format!(
                "side channel {host}:{port} belongs to engine {:?}, not {engine:?}",
                line.trim()
            )),
            Ok(Err(e)) => Err(format!("side channel {host}:{port} unreachable: {e}")),
            Err(_) => Err(format!(
                "side channel {host}:{port} did not answer in {}s",
                HANDSHAKE_TIMEOUT.as_secs()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn a_decoder_reaches_the_named_engine_and_nothing_else() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let server = listen("127.0.0.1", port, "engine-a".into()).await.unwrap();
        let h = Handshakes::default();
        let params = |host: &str, engine: &str| json!({"remote_host": host, "remote_port": port, "remote_engine_id": engine});
        assert_eq!(h.check(&params("127.0.0.1", "engine-a")).await, Ok(()));
        let wrong = h.check(&params("127.0.0.1", "engine-b")).await.unwrap_err();
        assert!(wrong.contains("belongs to engine \"engine-a\""), "{wrong}");
        server.abort();
        let _ = server.await;
        // Answered once, known since; a side channel nobody listens on fails.
        assert_eq!(h.check(&params("127.0.0.1", "engine-a")).await, Ok(()));
        let gone = h.check(&params("127.0.0.2", "engine-a")).await.unwrap_err();
        assert!(gone.contains("unreachable"), "{gone}");
    }
}
