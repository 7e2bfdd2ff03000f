//! A lean HTTP/1.1 client for plain `http://` endpoints, the measuring path of the load
//! generator: one task per request reads its socket directly and hands each piece of the
//! chunked body to the SSE parser with the instant it arrived. No connection task, no body
//! channel, no per-chunk allocation; keep-alive connections are pooled. `https://` endpoints
//! go through reqwest instead (see `client.rs`).

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::net::{enable_rx_timestamps, recv_stamped};

/// What a response turned into, before the SSE rules are applied.
pub enum Outcome<E> {
    /// 200 and a complete body.
    Ok,
    /// A non-200 status with (the start of) its body.
    Status(u16, String),
    /// The stream could not be completed.
    Failed { kind: &'static str, message: String },
    /// The SSE layer rejected an event.
    Event(E),
}

/// What the reads of one response saw of the kernel's receive stamps.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadStats {
    /// Body reads timed by the kernel's receive stamp.
    pub stamped: u32,
    /// Body reads timed by the read instant (no stamp came with them).
    pub unstamped: u32,
    /// The longest any body bytes waited in the socket before the client read them.
    pub max_wait: Duration,
    /// The final response head's status, once one arrived (a request cut off later still has
    /// it).
    pub status: Option<u16>,
}

/// A request the dispatcher thread already started at its scheduled instant: written, whole
/// or in part, on a kept-alive connection, or on a connection it opened without waiting for
/// the handshake. [`Endpoint::post`] finishes it.
pub struct InFlight {
    conn: Conn,
    written: usize,
    /// Why the dispatcher's write failed, if it did for another reason than "not yet".
    send_error: Option<std::io::Error>,
}

enum Conn {
    /// From the keep-alive pool.
    Pooled(TcpStream),
    /// Opened by the dispatcher (non-blocking connect, possibly still in progress).
    Opened(std::net::TcpStream),
}

impl Conn {
    fn fd(&self) -> std::os::fd::RawFd {
        match self {
            Conn::Pooled(s) => s.as_raw_fd(),
            Conn::Opened(s) => s.as_raw_fd(),
        }
    }
}

/// One endpoint (host, port, path) and its idle connections.
pub struct Endpoint {
    addr: SocketAddr,
    head: String,
    /// Ask the kernel to stamp received bytes (see `net.rs`).
    rx_timestamps: bool,
    /// Idle keep-alive connections and when they became idle.
    idle: Mutex<Vec<(TcpStream, Instant)>>,
}

/// Idle connections older than this are closed rather than reused: servers close idle
/// keep-alive connections (uvicorn, which serves vLLM, after 5 s), and a request written into
/// a connection the server is closing is a race better not run.
const MAX_IDLE: std::time::Duration = std::time::Duration::from_secs(2);

impl Endpoint {
    /// For an `http://host:port/path` URL; `None` for anything else (https, unresolvable, an
    /// API key that cannot be a header value).
    pub fn new(url: &str, rx_timestamps: bool, api_key: Option<&str>) -> Option<Endpoint> {
        let rest = url.strip_prefix("http://")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return None; // credentials: leave to reqwest
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&with_port)
            .ok()?
            .next()?;
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
             Accept: text/event-stream\r\nUser-Agent: vbench/{}\r\n",
            env!("CARGO_PKG_VERSION")
        );
        if let Some(key) = api_key {
            if !crate::load::valid_api_key(key) {
                return None;
            }
            head.push_str(&format!("Authorization: Bearer {key}\r\n"));
        }
        Some(Endpoint {
            rx_timestamps,
            addr,
            head,
            idle: Mutex::new(Vec::new()),
        })
    }

    fn take_idle(&self) -> Option<TcpStream> {
        let mut v = self.idle.lock().ok()?;
        // Most recently used first; drop the stale ones (the oldest sit at the bottom).
        let now = Instant::now();
        let fresh_from = v.partition_point(|(_, t)| now.duration_since(*t) > MAX_IDLE);
        v.drain(..fresh_from);
        // One that received bytes (or a close) while idle is dropped.
        while let Some((s, _)) = v.pop() {
            if nothing_pending(&s) {
                return Some(s);
            }
        }
        None
    }

    fn put_idle(&self, s: TcpStream) {
        if let Ok(mut v) = self.idle.lock() {
            v.push((s, Instant::now()));
        }
    }

    /// The request as it goes on the wire: head, `x-request-id`, body.
    pub fn request_bytes(&self, body: &[u8], request_id: &str) -> Vec<u8> {
        let mut req = Vec::with_capacity(self.head.len() + body.len() + 64);
        req.extend_from_slice(self.head.as_bytes());
        req.extend_from_slice(
            format!(
                "x-request-id: {request_id}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        req.extend_from_slice(body);
        req
    }

    /// Start sending `req` now without blocking: on an idle keep-alive connection, or else on
    /// a new one whose handshake is not waited for (on loopback it is complete by the time
    /// the write is tried). Called from the dispatcher thread, so a send happens at its
    /// instant however busy the runtime is with reading. `None` only when no socket could be
    /// made (the request's task then connects and reports why).
    pub fn send_now(&self, req: &[u8]) -> Option<InFlight> {
        let conn = match self.take_idle() {
            Some(s) => Conn::Pooled(s),
            None => Conn::Opened(self.open_nonblocking().ok()?),
        };
        // SAFETY: send reads `req` and writes nothing of ours; MSG_DONTWAIT never blocks,
        // MSG_NOSIGNAL turns a closed peer into EPIPE rather than a signal.
        let n = unsafe {
            libc::send(
                conn.fd(),
                req.as_ptr().cast(),
                req.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        let send_error = (n < 0)
            .then(std::io::Error::last_os_error)
            .filter(|e| e.kind() != std::io::ErrorKind::WouldBlock);
        // A short write, or one tried before the handshake finished, is completed by `post`.
        Some(InFlight {
            conn,
            written: n.max(0) as usize,
            send_error,
        })
    }

    /// A socket with a connect to the endpoint in progress (or already done).
    fn open_nonblocking(&self) -> std::io::Result<std::net::TcpStream> {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(
            Domain::for_address(self.addr),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        s.set_nonblocking(true)?;
        s.set_tcp_nodelay(true)?;
        if self.rx_timestamps {
            enable_rx_timestamps(&s);
        }
        match s.connect(&self.addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        Ok(s.into())
    }

    /// Finish what the dispatcher started: a pooled connection as it is; an opened one once
    /// its handshake completed. `Err` is a connect failure.
    async fn resume(&self, f: InFlight) -> Result<(TcpStream, bool, usize), String> {
        let connect_failed = |e: std::io::Error| format!("connecting to {}: {e}", self.addr);
        match f.conn {
            // A failed write on a pooled connection: the server closed it while idle; `post`
            // retries on a fresh connection.
            Conn::Pooled(s) => Ok((s, true, if f.send_error.is_some() { 0 } else { f.written })),
            Conn::Opened(std) => {
                if let Some(e) = f.send_error {
                    return Err(connect_failed(e));
                }
                let s = TcpStream::from_std(std).map_err(connect_failed)?;
                if f.written == 0 {
                    s.writable().await.map_err(connect_failed)?;
                    if let Some(e) = s.take_error().map_err(connect_failed)? {
                        return Err(connect_failed(e));
                    }
                }
                Ok((s, false, f.written))
            }
        }
    }

    /// Send one request (or finish sending it, when the dispatcher started it) and feed its
    /// body to `on_body(bytes, arrival instant)`. The call ends by `deadline` whatever the
    /// server sends (the clock is read after every read, so a server that never stops sending
    /// cannot keep it going); the caller also bounds it with a timer, for a silent server.
    pub async fn post<E>(
        &self,
        req: &[u8],
        mut started: Option<InFlight>,
        deadline: Instant,
        stats: &mut ReadStats,
        mut on_body: impl FnMut(&[u8], Instant) -> Result<(), E>,
    ) -> Outcome<E> {
        // A pooled connection may have been closed by the server while idle: if it fails
        // before any response byte, send again on the next idle connection or a new one
        // (only a new connection's failure is the request's).
        let mut buf = Vec::with_capacity(16 * 1024);
        let (sock, head_len, head_arrived) = loop {
            let (mut sock, reused, written) = match started.take() {
                Some(f) => match self.resume(f).await {
                    Ok(c) => c,
                    Err(message) => {
                        return Outcome::Failed {
                            kind: "connect",
                            message,
                        }
                    }
                },
                None => match self.take_idle() {
                    Some(s) => (s, true, 0),
                    None => match TcpStream::connect(self.addr).await {
                        Ok(s) => {
                            let _ = s.set_nodelay(true);
                            if self.rx_timestamps {
                                enable_rx_timestamps(&s);
                            }
                            (s, false, 0)
                        }
                        Err(e) => {
                            return Outcome::Failed {
                                kind: "connect",
                                message: format!("connecting to {}: {e}", self.addr),
                            }
                        }
                    },
                },
            };
            buf.clear();
            match write_and_read_head(
                &mut sock,
                &req[written.min(req.len())..],
                &mut buf,
                deadline,
            )
            .await
            {
                Ok((n, arrived)) => break (sock, n, arrived),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Outcome::Failed {
                        kind: "timeout",
                        message: format!("no complete response head: {e}"),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    return Outcome::Failed {
                        kind: "too_large",
                        message: e.to_string(),
                    }
                }
                Err(_) if reused => continue,
                Err(e) => {
                    return Outcome::Failed {
                        kind: "stream_cut",
                        message: format!("no response head: {e}"),
                    }
                }
            }
        };

        let (mut sock, mut head_len, mut head_arrived) = (sock, head_len, head_arrived);
        let head = loop {
            let head = match Head::parse(&buf[..head_len]) {
                Ok(h) => h,
                Err(message) => {
                    return Outcome::Failed {
                        kind: "malformed",
                        message,
                    }
                }
            };
            // An interim answer (`100 Continue`, `103 Early Hints`): the real one follows.
            if !matches!(head.status, 100 | 102..=199) {
                break head;
            }
            buf.drain(..head_len);
            match write_and_read_head(&mut sock, &[], &mut buf, deadline).await {
                Ok((n, arrived)) => (head_len, head_arrived) = (n, arrived),
                Err(e) => {
                    return Outcome::Failed {
                        kind: if e.kind() == std::io::ErrorKind::TimedOut {
                            "timeout"
                        } else {
                            "stream_cut"
                        },
                        message: format!("no response head after an interim one: {e}"),
                    }
                }
            }
        };
        let Head {
            status,
            chunked,
            length,
            close,
        } = head;
        stats.status = Some(status);
        buf.drain(..head_len);

        if status != 200 {
            // Enough of an error body to say what went wrong; stop reading after that, and
            // soon: a server that sends an error head and then nothing is an HTTP error, not a
            // timeout.
            let mut text = Vec::new();
            let mut ignored = ReadStats::default();
            let body_deadline = (Instant::now() + ERROR_BODY_WAIT).min(deadline);
            let read = read_body(
                &sock,
                &mut buf,
                (chunked, length),
                (head_arrived, body_deadline),
                &mut ignored,
                |b, _| {
                    text.extend_from_slice(&b[..b.len().min(2000 - text.len())]);
                    if text.len() < 2000 {
                        Ok(())
                    } else {
                        Err(())
                    }
                },
            );
            let _ = tokio::time::timeout_at(body_deadline.into(), read).await;
            return Outcome::Status(status, String::from_utf8_lossy(&text).into_owned());
        }
        let mut event_err = None;
        let r = read_body(
            &sock,
            &mut buf,
            (chunked, length),
            (head_arrived, deadline),
            stats,
            |b, t| on_body(b, t).map_err(|e| event_err = Some(e)),
        )
        .await;
        if let Some(e) = event_err {
            return Outcome::Event(e);
        }
        match r {
            Ok(complete) => {
                // Reused only when the response ended exactly: bytes past its end (a server
                // that sent more than it framed) would be read as the next request's answer.
                // Bytes still in the kernel, now or later, are found when the connection is
                // taken from the pool ([`Endpoint::take_idle`]).
                if complete && buf.is_empty() && !close && chunked | length.is_some() {
                    self.put_idle(sock);
                }
                Outcome::Ok
            }
            Err((kind, message)) => Outcome::Failed { kind, message },
        }
    }
}

/// Response headers the reader takes; a head with more is malformed.
const MAX_HEADERS: usize = 64;

/// What a response head says about the body that follows.
struct Head {
    status: u16,
    chunked: bool,
    /// `Content-Length`, when given.
    length: Option<usize>,
    /// The server closes the connection after this response.
    close: bool,
}

impl Head {
    /// The head in `bytes` (through its blank line), or why it is malformed.
    fn parse(bytes: &[u8]) -> Result<Head, String> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        resp.parse(bytes).map_err(|e| {
            format!("unparseable HTTP response head ({e}; at most {MAX_HEADERS} headers)")
        })?;
        let mut head = Head {
            status: resp.code.unwrap_or(0),
            chunked: false,
            length: None,
            close: resp.version == Some(0),
        };
        for h in resp.headers.iter() {
            let v = std::str::from_utf8(h.value).unwrap_or("").trim();
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                head.chunked = v.to_ascii_lowercase().contains("chunked");
            } else if h.name.eq_ignore_ascii_case("content-length") {
                // Two lengths that differ, or one that is no number, frame nothing reliably.
                let n: usize = v
                    .parse()
                    .map_err(|_| format!("a Content-Length that is no length: {v:?}"))?;
                if head.length.is_some_and(|m| m != n) {
                    return Err("two Content-Length headers that differ".into());
                }
                head.length = Some(n);
            } else if h.name.eq_ignore_ascii_case("connection") {
                head.close = v.eq_ignore_ascii_case("close");
            }
        }
        Ok(head)
    }
}

/// How long the body of a non-200 answer is read for its message.
const ERROR_BODY_WAIT: Duration = Duration::from_secs(2);

/// Whether a kept-alive connection has no unread bytes and is not closed: only then may it
/// carry the next request (bytes a server sent unasked would be read as its answer). Asks the
/// kernel (a peek), not tokio's readiness, which may not have seen them yet.
fn nothing_pending(sock: &impl AsRawFd) -> bool {
    let mut probe = [0u8; 1];
    // SAFETY: a one-byte peek into our buffer; MSG_DONTWAIT never blocks.
    let n = unsafe {
        libc::recv(
            sock.as_raw_fd(),
            probe.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
}

async fn write_and_read_head(
    sock: &mut TcpStream,
    req: &[u8],
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> std::io::Result<(usize, Instant)> {
    if !req.is_empty() {
        sock.write_all(req).await?;
    }
    let mut arrived = Instant::now();
    loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            return Ok((i + 4, arrived));
        }
        if buf.len() > 64 * 1024 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "response head larger than 64 KiB",
            ));
        }
        let (n, arrival) = recv_stamped(sock, buf).await?;
        arrived = arrival.at();
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if Instant::now() >= deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the deadline passed while the head was arriving",
            ));
        }
    }
}

/// A chunk-size line (hex size, optional extensions) longer than this is malformed.
const MAX_CHUNK_SIZE_LINE: usize = 4096;

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decode the body (chunked, fixed length, or until close), calling `on` with each data piece
/// and the instant its bytes arrived (the kernel's receive stamp when there is one).
/// `Ok(true)`: body complete (its bytes consumed from `buf`, which keeps only what came after
/// it) and the connection reusable in principle; `Ok(false)`: complete
/// by close, or `on` declined more; `Err((kind, message))`: cut (`stream_cut`), a malformed
/// chunk framing (`malformed`), or `deadline` passed (`timeout`).
async fn read_body<E>(
    sock: &TcpStream,
    buf: &mut Vec<u8>,
    (chunked, length): (bool, Option<usize>),
    (head_arrived, deadline): (Instant, Instant),
    stats: &mut ReadStats,
    mut on: impl FnMut(&[u8], Instant) -> Result<(), E>,
) -> Result<bool, (&'static str, String)> {
    let mut now = head_arrived; // for body bytes that came with the head
    let mut pos = 0usize; // start of unconsumed bytes in buf
    let mut remaining = length; // content-length mode
                                // chunked state: Some(n) = n data bytes left in the current chunk (+2 for its CRLF)
    let mut in_chunk: Option<usize> = None;
    // chunked: the last chunk came; its trailer section (usually empty) and CRLF follow
    let mut in_trailer = false;
    let mut chunks_seen = 0u64;
    loop {
        // consume what is buffered
        loop {
            let avail = &buf[pos..];
            if in_trailer {
                let end = if avail.starts_with(b"\r\n") {
                    Some(2)
                } else {
                    find(avail, b"\r\n\r\n").map(|i| i + 4)
                };
                match end {
                    Some(n) => {
                        buf.drain(..pos + n);
                        return Ok(true);
                    }
                    None if avail.len() > MAX_CHUNK_SIZE_LINE => {
                        return Err((
                            "malformed",
                            format!("a trailer section longer than {MAX_CHUNK_SIZE_LINE} bytes"),
                        ));
                    }
                    None => break,
                }
            }
            if chunked {
                match in_chunk {
                    None => {
                        let Some(eol) = find(avail, b"\r\n") else {
                            if avail.len() > MAX_CHUNK_SIZE_LINE {
                                return Err((
                                    "malformed",
                                    format!(
                                        "a chunk-size line longer than {MAX_CHUNK_SIZE_LINE} bytes"
                                    ),
                                ));
                            }
                            break;
                        };
                        let line = std::str::from_utf8(&avail[..eol]).unwrap_or("");
                        let size_txt = line.split(';').next().unwrap_or("").trim();
                        let size = usize::from_str_radix(size_txt, 16).map_err(|_| {
                            (
                                "stream_cut",
                                format!(
                                    "bad chunk size line {:?}",
                                    line.chars().take(80).collect::<String>()
                                ),
                            )
                        })?;
                        pos += eol + 2;
                        if size == 0 {
                            in_trailer = true;
                            continue;
                        }
                        in_chunk = Some(size);
                    }
                    Some(left) => {
                        if left == 0 {
                            if avail.len() < 2 {
                                break;
                            }
                            if !avail.starts_with(b"\r\n") {
                                return Err((
                                    "malformed",
                                    "a chunk's data does not end where its size says".into(),
                                ));
                            }
                            pos += 2; // CRLF after the chunk's data
                            in_chunk = None;
                            continue;
                        }
                        if avail.is_empty() {
                            break;
                        }
                        let n = left.min(avail.len());
                        if on(&avail[..n], now).is_err() {
                            return Ok(false);
                        }
                        chunks_seen += 1;
                        pos += n;
                        in_chunk = Some(left - n);
                    }
                }
            } else {
                if avail.is_empty() {
                    break;
                }
                let n = remaining.map_or(avail.len(), |r| r.min(avail.len()));
                if on(&avail[..n], now).is_err() {
                    return Ok(false);
                }
                pos += n;
                if let Some(r) = remaining.as_mut() {
                    *r -= n;
                    if *r == 0 {
                        buf.drain(..pos);
                        return Ok(true);
                    }
                }
            }
        }
        if remaining == Some(0) {
            buf.drain(..pos);
            return Ok(true);
        }
        // compact and read more
        buf.drain(..pos);
        pos = 0;
        if Instant::now() >= deadline {
            return Err((
                "timeout",
                format!("the deadline passed while the body was arriving (after {chunks_seen} body pieces)"),
            ));
        }
        // A server that always has bytes ready never makes this task wait: give the other
        // requests' tasks their turn.
        tokio::task::coop::consume_budget().await;
        match recv_stamped(sock, buf).await {
            Ok((0, _)) => {
                if !chunked && remaining.is_none() {
                    return Ok(false); // close-delimited body ends here
                }
                return Err((
                    "stream_cut",
                    format!("connection closed mid-body (after {chunks_seen} body pieces)"),
                ));
            }
            Ok((_, arrival)) => {
                now = arrival.at();
                if arrival.kernel_at.is_some() {
                    stats.stamped += 1;
                    stats.max_wait = stats.max_wait.max(arrival.waited());
                } else {
                    stats.unstamped += 1;
                }
            }
            Err(e) => return Err(("stream_cut", format!("reading the body: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// Serve one connection: read the request head, then write `parts` with small pauses.
    async fn serve_once(parts: Vec<&'static [u8]>) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/completions", l.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await;
            for p in parts {
                s.write_all(p).await.unwrap();
                s.flush().await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        });
        url
    }

    async fn collect(url: &str) -> (Vec<u8>, &'static str) {
        let ep = Endpoint::new(url, true, None).unwrap();
        let mut got = Vec::new();
        let o = ep
            .post(
                &ep.request_bytes(b"{}", "t-1"),
                None,
                Instant::now() + std::time::Duration::from_secs(10),
                &mut ReadStats::default(),
                |b, _| {
                    got.extend_from_slice(b);
                    Ok::<(), ()>(())
                },
            )
            .await;
        let kind = match o {
            Outcome::Ok => "ok",
            Outcome::Status(..) => "status",
            Outcome::Failed { kind, .. } => kind,
            Outcome::Event(_) => "event",
        };
        (got, kind)
    }

    #[tokio::test]
    async fn chunked_body_split_anywhere_with_extensions_is_decoded() {
        let url = serve_once(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n",
            b"\r\n5;ext=1\r\nhel",
            b"lo\r\n",
            b"6\r",
            b"\n world\r\n0\r\n\r\n",
        ])
        .await;
        assert_eq!(collect(&url).await, (b"hello world".to_vec(), "ok"));
    }

    #[tokio::test]
    async fn content_length_and_close_delimited_bodies_are_read_whole() {
        let url = serve_once(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
            b"cde",
        ])
        .await;
        assert_eq!(collect(&url).await, (b"abcde".to_vec(), "ok"));
        let url = serve_once(vec![b"HTTP/1.0 200 OK\r\n\r\nuntil ", b"close"]).await;
        assert_eq!(collect(&url).await, (b"until close".to_vec(), "ok"));
    }

    #[tokio::test]
    async fn cut_chunked_body_and_bad_chunk_size_are_stream_cuts() {
        let url = serve_once(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhe",
        ])
        .await;
        assert_eq!(collect(&url).await, (b"he".to_vec(), "stream_cut"));
        let url = serve_once(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ])
        .await;
        assert_eq!(collect(&url).await.1, "stream_cut");
    }

    #[tokio::test]
    async fn non_200_status_returns_its_body() {
        let url = serve_once(vec![b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy"]).await;
        let ep = Endpoint::new(&url, true, None).unwrap();
        let req = ep.request_bytes(b"{}", "t");
        match ep
            .post(
                &req,
                None,
                Instant::now() + std::time::Duration::from_secs(10),
                &mut ReadStats::default(),
                |_, _| Ok::<(), ()>(()),
            )
            .await
        {
            Outcome::Status(503, body) => assert_eq!(body, "busy"),
            _ => panic!("expected a 503"),
        }
    }

    #[test]
    fn only_plain_http_urls_take_this_path() {
        assert!(Endpoint::new("https://127.0.0.1:1/v1/completions", true, None).is_none());
        assert!(Endpoint::new("http://user:pw@127.0.0.1:1/x", true, None).is_none());
        let ep = Endpoint::new("http://127.0.0.1:8000/v1/chat/completions", true, None).unwrap();
        assert!(ep
            .head
            .starts_with("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"));
    }
}
