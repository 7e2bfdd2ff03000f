//! Whole HTTP bodies from servers vbench does not control (vLLM instances, a proxy, anything at
//! a manifest's URL), read with a bound: a hostile or broken server that sends without end, or
//! declares a huge `content-length`, gets an error instead of vbench's memory. Streamed
//! completions are not read here: the load generator's SSE reader bounds those.

use std::fmt;

/// The most a JSON answer other than a stream may hold: a prefill answer or a `/tokenize` list
/// for the longest context is well under a megabyte.
pub const MAX_JSON_BYTES: usize = 16 << 20;
/// The most a `/metrics` page may hold: vLLM's is a few hundred kilobytes.
pub const MAX_METRICS_BYTES: usize = 16 << 20;

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// The body (or its declared length) went past the bound.
    TooLarge { limit: usize },
    /// The connection failed while reading.
    Transport(reqwest::Error),
    /// The body was read but is not the JSON expected.
    Json(serde_json::Error),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooLarge { limit } => {
                write!(f, "the body is longer than {limit} bytes (vbench's bound)")
            }
            // reqwest says "error decoding response body" for a body cut by the request's
            // timeout; say what happened instead.
            BodyError::Transport(e) if e.is_timeout() => {
                write!(f, "no whole answer within the request's time limit")
            }
            BodyError::Transport(e) => {
                write!(f, "reading the body failed: {e}")?;
                let mut cause = std::error::Error::source(e);
                while let Some(c) = cause {
                    write!(f, ": {c}")?;
                    cause = c.source();
                }
                Ok(())
            }
            BodyError::Json(e) => write!(f, "invalid JSON: {e}"),
        }
    }
}

impl std::error::Error for BodyError {}

/// The whole body of `resp`, or an error once it passes `limit` bytes (before reading any of
/// it when the declared length already does).
pub async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The body of `resp` as JSON, at most [`MAX_JSON_BYTES`] of it.
pub async fn read_json(resp: reqwest::Response) -> Result<serde_json::Value, BodyError> {
    let body = read_capped(resp, MAX_JSON_BYTES).await?;
    serde_json::from_slice(&body).map_err(BodyError::Json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-connection server on 127.0.0.1 that answers with `head`, then writes `piece` until
    /// the client hangs up (or once, when `forever` is false), and keeps the connection open.
    async fn serve(head: &'static str, piece: Vec<u8>, forever: bool) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = conn.read(&mut request).await;
            conn.write_all(head.as_bytes()).await.unwrap();
            while conn.write_all(&piece).await.is_ok() && forever {}
            // Hold the connection: a body shorter than its length is then still unfinished.
            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
        });
        url
    }

    async fn get(url: &str) -> reqwest::Response {
        reqwest::get(url).await.unwrap()
    }

    #[tokio::test]
    async fn a_body_within_the_bound_is_read_whole() {
        let head = "HTTP/1.1 200 OK\r\ncontent-length: 11\r\nconnection: close\r\n\r\n";
        let url = serve(head, b"{\"a\": [1]} ".to_vec(), false).await;
        let v = read_json(get(&url).await).await.unwrap();
        assert_eq!(v["a"][0], 1);
    }

    #[tokio::test]
    async fn an_endless_body_stops_at_the_bound() {
        let head = "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n[";
        let url = serve(head, b"1,".repeat(4096), true).await;
        let err = read_capped(get(&url).await, 1 << 20).await.unwrap_err();
        assert!(
            matches!(err, BodyError::TooLarge { limit } if limit == 1 << 20),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "the body is longer than 1048576 bytes (vbench's bound)"
        );
    }

    #[tokio::test]
    async fn a_declared_length_past_the_bound_is_refused_unread() {
        let head = "HTTP/1.1 200 OK\r\ncontent-length: 10000000000\r\n\r\n";
        let url = serve(head, Vec::new(), false).await;
        let err = read_capped(get(&url).await, 1 << 20).await.unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_body_cut_by_the_time_limit_says_so() {
        let head = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n";
        let url = serve(head, b"{".to_vec(), false).await;
        // The server keeps the connection open without the rest of the body.
        let resp = reqwest::Client::new()
            .get(&url)
            .timeout(std::time::Duration::from_millis(300))
            .send()
            .await
            .unwrap();
        let err = read_capped(resp, 1 << 20).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "no whole answer within the request's time limit"
        );
    }

    #[tokio::test]
    async fn a_body_that_is_not_json_says_so() {
        let head = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\n";
        let url = serve(head, b"hello".to_vec(), false).await;
        let err = read_json(get(&url).await).await.unwrap_err();
        assert!(err.to_string().starts_with("invalid JSON: "), "{err}");
    }
}
