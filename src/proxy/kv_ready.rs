//! Waiting for LMCache's "KV is on the decoder" notifications (`crate::kv_notify`).
//!
//! LMCache's own proxy binds a PULL socket at the prefillers' `pd_proxy_host:pd_proxy_port`
//! and sends the decoder its request only when every decoder TP rank has been reported; a
//! decoder asked earlier finds no KV, recomputes the prompt, and the benchmark silently
//! measures something else. vbench's proxy does the same, with a bound on the wait.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Connections from prefiller ranks held at once.
const MAX_CONNECTIONS: usize = 1024;
/// Notifications nobody waits for (a request that failed before its wait) are dropped after
/// this long, so the table stays bounded.
const UNCLAIMED_TTL: Duration = Duration::from_secs(600);
/// At most this many unclaimed notifications are kept.
const MAX_UNCLAIMED: usize = 100_000;

/// Per request id, the ranks that reported its KV on the decoder, and whom to wake.
#[derive(Default)]
pub struct KvReady {
    seen: Mutex<HashMap<String, (u32, Instant)>>,
    arrived: Notify,
    /// Notifications received (all ranks, all requests).
    pub received: AtomicU64,
    /// Messages that were not a ProxyNotif (counted, ignored).
    pub ignored: AtomicU64,
    /// Waits that ended without every rank's notification.
    pub timeouts: AtomicU64,
}

impl KvReady {
    /// Record one rank's notification for `req_id`.
    pub fn record(&self, req_id: &str) {
        let now = Instant::now();
        let mut seen = self.seen.lock().expect("kv_ready lock");
        if seen.len() >= MAX_UNCLAIMED {
            seen.retain(|_, (_, at)| now.duration_since(*at) < UNCLAIMED_TTL);
        }
        if seen.len() < MAX_UNCLAIMED || seen.contains_key(req_id) {
            seen.entry(req_id.to_owned()).or_insert((0, now)).0 += 1;
        }
        drop(seen);
        self.received.fetch_add(1, Ordering::Relaxed);
        self.arrived.notify_waiters();
    }

    /// Wait until `ranks` notifications for `req_id` arrived (they may have come already), at
    /// most `timeout`; the count reached, or `Err` with the count seen by then.
    pub async fn wait(&self, req_id: &str, ranks: u32, timeout: Duration) -> Result<(), u32> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before the check, so an arrival in between still wakes us.
            let woken = self.arrived.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            {
                let mut seen = self.seen.lock().expect("kv_ready lock");
                let count = seen.get(req_id).map_or(0, |(n, _)| *n);
                if count >= ranks {
                    seen.remove(req_id);
                    return Ok(());
                }
                if tokio::time::Instant::now() >= deadline {
                    seen.remove(req_id);
                    self.timeouts.fetch_add(1, Ordering::Relaxed);
                    return Err(count);
                }
            }
            let _ = tokio::time::timeout_at(deadline, woken).await;
        }
    }
}

/// Accept prefillers' PUSH connections on `listener` and record what they send, until dropped;
/// connection problems go to `log`.
pub async fn listen(listener: TcpListener, ready: Arc<KvReady>, log: Option<Sender<String>>) {
    let say = move |line: String| {
        if let Some(log) = &log {
            let _ = log.send(line);
        }
    };
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: wait instead of spinning on the error.
                say(format!("LMCache notification socket: accept failed: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            say(format!(
                "LMCache notification from {peer} refused: {MAX_CONNECTIONS} connections open"
            ));
            continue;
        };
        let (ready, say) = (ready.clone(), say.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let result = crate::kv_notify::receive(stream, |req_id| match req_id {
                Some(id) => ready.record(&id),
                None => {
                    ready.ignored.fetch_add(1, Ordering::Relaxed);
                }
            })
            .await;
            if let Err(e) = result {
                say(format!(
                    "LMCache notification connection from {peer}: {e:#}"
                ));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_sees_notifications_sent_before_and_after_it_began() {
        let ready = Arc::new(KvReady::default());
        ready.record("early");
        ready.record("early");
        assert_eq!(ready.wait("early", 2, Duration::from_secs(1)).await, Ok(()));
        let r = ready.clone();
        let waiter = tokio::spawn(async move { r.wait("late", 2, Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        ready.record("late");
        tokio::time::sleep(Duration::from_millis(20)).await;
        ready.record("late");
        assert_eq!(waiter.await.unwrap(), Ok(()));
        ready.record("partial");
        assert_eq!(
            ready.wait("partial", 2, Duration::from_millis(50)).await,
            Err(1),
            "one of two ranks reported"
        );
        assert!(
            ready.seen.lock().unwrap().is_empty(),
            "claimed entries are removed"
        );
    }

    #[tokio::test]
    async fn the_listener_records_what_prefillers_push() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ready = Arc::new(KvReady::default());
        tokio::spawn(listen(listener, ready.clone(), None));
        crate::kv_notify::push(addr, "req-7").await.unwrap();
        crate::kv_notify::push(addr, "req-7").await.unwrap();
        assert_eq!(ready.wait("req-7", 2, Duration::from_secs(5)).await, Ok(()));
        assert_eq!(ready.received.load(Ordering::Relaxed), 2);
    }
}
