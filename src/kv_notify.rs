//! LMCache's "KV is on the decoder" notification on the wire: the one owner of its format,
//! for both ends (vbench's proxy receives it, the simulator's LMCache producer sends it).
//!
//! After a prefiller's LMCache has written a request's KV into the decoder's buffer it PUSHes
//! `ProxyNotif{req_id}` (msgspec msgpack, a tagged struct: the map `{"type": "ProxyNotif",
//! "req_id": ...}`) over ZeroMQ to `pd_proxy_host:pd_proxy_port`, once per TP rank.
//!
//! ZeroMQ here is ZMTP 3 over TCP with the NULL mechanism, the part a PUSH→PULL pair uses: a
//! 64-byte greeting each way, a READY command each way naming the socket types, then message
//! frames. Only that is spoken; anything else ends the connection with an error.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest frame accepted: a ProxyNotif is a few dozen bytes.
const MAX_FRAME: u64 = 64 * 1024;
/// Time a peer gets for its greeting and READY.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve one PUSH peer (a prefiller rank) until it closes: `on_message` gets each message's
/// request id, or `None` for a message that is not a ProxyNotif.
pub async fn receive(
    mut stream: TcpStream,
    mut on_message: impl FnMut(Option<String>),
) -> anyhow::Result<()> {
    let _ = stream.set_nodelay(true);
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut stream, "PULL", "PUSH"))
        .await
        .context("no ZMTP greeting and READY within 10 s")??;
    loop {
        let Some(message) = read_message(&mut stream).await? else {
            return Ok(());
        };
        let req_id = match message.as_slice() {
            [only] => proxy_notif_req_id(only),
            _ => None,
        };
        on_message(req_id);
    }
}

/// Send one `ProxyNotif{req_id}` to a proxy's PULL socket at `addr`, as a prefiller's rank
/// does (a connection per call: the simulator sends few).
pub async fn push(addr: SocketAddr, req_id: &str) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let _ = stream.set_nodelay(true);
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut stream, "PUSH", "PULL"))
        .await
        .context("no ZMTP greeting and READY within 10 s")??;
    write_frame(&mut stream, 0, &encode_proxy_notif(req_id)).await?;
    stream.flush().await?;
    Ok(())
}

/// The ZMTP 3 greeting (signature, version 3.0, NULL, not as-server) and READY exchange; the
/// peer must say it is a `peer_type` socket.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    own_type: &str,
    peer_type: &str,
) -> anyhow::Result<()> {
    let mut greeting = [0u8; 64];
    greeting[0] = 0xff;
    greeting[9] = 0x7f;
    greeting[10] = 3;
    greeting[12..16].copy_from_slice(b"NULL");
    s.write_all(&greeting).await?;
    let mut peer = [0u8; 64];
    s.read_exact(&mut peer)
        .await
        .context("reading the greeting")?;
    ensure!(
        peer[0] == 0xff && peer[9] == 0x7f,
        "not a ZeroMQ peer (bad greeting signature)"
    );
    ensure!(peer[10] >= 3, "ZMTP version {} (need 3 or later)", peer[10]);
    ensure!(
        peer[12..32].starts_with(b"NULL") && peer[16..32].iter().all(|&b| b == 0),
        "security mechanism {:?} (only NULL is spoken)",
        String::from_utf8_lossy(&peer[12..32]).trim_end_matches('\0')
    );
    let mut ready = vec![5u8];
    ready.extend_from_slice(b"READY");
    ready.push(11);
    ready.extend_from_slice(b"Socket-Type");
    ready.extend_from_slice(&(own_type.len() as u32).to_be_bytes());
    ready.extend_from_slice(own_type.as_bytes());
    write_frame(s, FLAG_COMMAND, &ready).await?;
    s.flush().await?;
    let (flags, body) = read_frame(s).await?.context("closed before READY")?;
    ensure!(flags & FLAG_COMMAND != 0, "expected the READY command");
    let socket_type = ready_socket_type(&body)?;
    ensure!(
        socket_type.eq_ignore_ascii_case(peer_type),
        "peer is a {socket_type} socket, expected {peer_type}"
    );
    Ok(())
}

const FLAG_MORE: u8 = 0x01;
const FLAG_LONG: u8 = 0x02;
const FLAG_COMMAND: u8 = 0x04;

async fn write_frame<S: AsyncWrite + Unpin>(
    s: &mut S,
    flags: u8,
    body: &[u8],
) -> anyhow::Result<()> {
    let mut head = Vec::with_capacity(9);
    if body.len() > 255 {
        head.push(flags | FLAG_LONG);
        head.extend_from_slice(&(body.len() as u64).to_be_bytes());
    } else {
        head.push(flags);
        head.push(body.len() as u8);
    }
    s.write_all(&head).await?;
    s.write_all(body).await?;
    Ok(())
}

/// One frame (flags, body); `None` at a clean end of stream before a frame.
async fn read_frame<S: AsyncRead + Unpin>(s: &mut S) -> anyhow::Result<Option<(u8, Vec<u8>)>> {
    let mut flags = [0u8; 1];
    match s.read_exact(&mut flags).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let flags = flags[0];
    ensure!(flags & !0x07 == 0, "bad frame flags {flags:#04x}");
    let len = if flags & FLAG_LONG != 0 {
        let mut b = [0u8; 8];
        s.read_exact(&mut b).await?;
        u64::from_be_bytes(b)
    } else {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await?;
        u64::from(b[0])
    };
    ensure!(
        len <= MAX_FRAME,
        "frame of {len} bytes (at most {MAX_FRAME})"
    );
    let mut body = vec![0u8; len as usize];
    s.read_exact(&mut body).await?;
    Ok(Some((flags, body)))
}

/// One message (its frames); commands between messages (e.g. PING) are skipped. `None` when the
/// peer closed between messages.
async fn read_message<S: AsyncRead + Unpin>(s: &mut S) -> anyhow::Result<Option<Vec<Vec<u8>>>> {
    let mut frames = Vec::new();
    loop {
        let Some((flags, body)) = read_frame(s).await? else {
            if frames.is_empty() {
                return Ok(None);
            }
            bail!("closed in the middle of a message");
        };
        if flags & FLAG_COMMAND != 0 {
            continue;
        }
        frames.push(body);
        ensure!(frames.len() <= 16, "message of more than 16 frames");
        if flags & FLAG_MORE == 0 {
            return Ok(Some(frames));
        }
    }
}

/// The `Socket-Type` property of a READY command body.
fn ready_socket_type(body: &[u8]) -> anyhow::Result<String> {
    let name_len = *body.first().context("empty command")? as usize;
    let name = body.get(1..1 + name_len).context("short command")?;
    ensure!(
        name == b"READY",
        "expected READY, got {:?}",
        String::from_utf8_lossy(name)
    );
    let mut rest = &body[1 + name_len..];
    while !rest.is_empty() {
        let n = rest[0] as usize;
        let key = rest.get(1..1 + n).context("short property name")?;
        let len_at = 1 + n;
        let len = u32::from_be_bytes(
            rest.get(len_at..len_at + 4)
                .context("short property")?
                .try_into()
                .expect("4 bytes"),
        ) as usize;
        let value = rest
            .get(len_at + 4..len_at + 4 + len)
            .context("short property value")?;
        if key.eq_ignore_ascii_case(b"Socket-Type") {
            return Ok(String::from_utf8_lossy(value).into_owned());
        }
        rest = &rest[len_at + 4 + len..];
    }
    bail!("READY without Socket-Type")
}

/// msgspec's encoding of `ProxyNotif(req_id=...)`: `{"type": "ProxyNotif", "req_id": ...}`.
pub fn encode_proxy_notif(req_id: &str) -> Vec<u8> {
    let mut out = vec![0x82];
    for s in ["type", "ProxyNotif", "req_id", req_id] {
        put_str(&mut out, s);
    }
    out
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let n = s.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n < 256 {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else if n < 65_536 {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(s.as_bytes());
}

/// The `req_id` of a msgpack `ProxyNotif` (a map whose `type` is "ProxyNotif"); `None` for any
/// other message (LMCache's other PD messages, or bytes that are not msgpack).
pub fn proxy_notif_req_id(bytes: &[u8]) -> Option<String> {
    let mut r = MsgpackReader { bytes, at: 0 };
    let entries = r.map_len()?;
    let (mut kind, mut req_id) = (None, None);
    for _ in 0..entries {
        let key = r.str()?;
        match key {
            "type" => kind = Some(r.str()?),
            "req_id" => req_id = Some(r.str()?),
            _ => r.skip(0)?,
        }
    }
    (kind? == "ProxyNotif" && r.at == bytes.len()).then(|| req_id.map(str::to_owned))?
}

/// Just enough msgpack to read a map of strings and skip other values, bounded by the input.
struct MsgpackReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> MsgpackReader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let out = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(out)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn be(&mut self, n: usize) -> Option<usize> {
        let b = self.take(n)?;
        Some(b.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x)))
    }

    fn map_len(&mut self) -> Option<usize> {
        match self.byte()? {
            b @ 0x80..=0x8f => Some(usize::from(b & 0x0f)),
            0xde => self.be(2),
            0xdf => self.be(4),
            _ => None,
        }
    }

    fn str(&mut self) -> Option<&'a str> {
        let n = match self.byte()? {
            b @ 0xa0..=0xbf => usize::from(b & 0x1f),
            0xd9 => self.be(1)?,
            0xda => self.be(2)?,
            0xdb => self.be(4)?,
            _ => return None,
        };
        std::str::from_utf8(self.take(n)?).ok()
    }

    /// Skip one value of any type (nested at most 32 deep).
    fn skip(&mut self, depth: u32) -> Option<()> {
        if depth > 32 {
            return None;
        }
        let b = self.byte()?;
        let (skip_bytes, items) = match b {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * usize::from(b & 0x0f)),
            0x90..=0x9f => (0, usize::from(b & 0x0f)),
            0xa0..=0xbf => (usize::from(b & 0x1f), 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xce | 0xd2 | 0xca => (4, 0),
            0xcf | 0xd3 | 0xcb => (8, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xc4 | 0xd9 => (self.be(1)?, 0),
            0xc5 | 0xda => (self.be(2)?, 0),
            0xc6 | 0xdb => (self.be(4)?, 0),
            0xc7 => (self.be(1)? + 1, 0),
            0xc8 => (self.be(2)? + 1, 0),
            0xc9 => (self.be(4)? + 1, 0),
            0xdc => (0, self.be(2)?),
            0xdd => (0, self.be(4)?),
            0xde => (0, 2 * self.be(2)?),
            0xdf => (0, 2 * self.be(4)?),
            0xc1 => return None,
        };
        self.take(skip_bytes)?;
        for _ in 0..items {
            self.skip(depth + 1)?;
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn proxy_notif_bytes_are_msgspecs() {
        // msgspec.msgpack.encode(ProxyNotif(req_id="vbench-1-2")) with LMCache's tagged struct.
        let msgspec = "82a474797065aa50726f78794e6f746966a67265715f6964aa7662656e63682d312d32";
        let ours: String = encode_proxy_notif("vbench-1-2")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(ours, msgspec);
        assert_eq!(
            proxy_notif_req_id(&encode_proxy_notif("vbench-1-2")).as_deref(),
            Some("vbench-1-2")
        );
        let long = "r".repeat(300);
        assert_eq!(
            proxy_notif_req_id(&encode_proxy_notif(&long)).as_deref(),
            Some(long.as_str())
        );
    }

    #[test]
    fn other_messages_and_garbage_are_not_notifications() {
        // {"type": "CancelNotif", "req_id": "r", "keys": ["a"]}
        let mut cancel = vec![0x83];
        for s in ["type", "CancelNotif", "req_id", "r", "keys"] {
            put_str(&mut cancel, s);
        }
        cancel.push(0x91);
        put_str(&mut cancel, "a");
        assert_eq!(proxy_notif_req_id(&cancel), None);
        // Unknown fields are skipped, whatever their type.
        let mut extra = vec![0x83];
        for s in ["type", "ProxyNotif", "n"] {
            put_str(&mut extra, s);
        }
        extra.extend_from_slice(&[0x92, 0xcd, 0x01, 0x00, 0xc3]);
        put_str(&mut extra, "req_id");
        put_str(&mut extra, "x");
        assert_eq!(proxy_notif_req_id(&extra).as_deref(), Some("x"));
        for bad in [
            &b""[..],
            &[0x82],
            &[0x82, 0xa4, b't'],
            &[0xdf, 0xff, 0xff, 0xff, 0xff],
            &[0x81, 0xa1, b'z', 0xdd, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert_eq!(proxy_notif_req_id(bad), None, "{bad:?}");
        }
        // Trailing bytes after the map: not one message.
        let mut trailing = encode_proxy_notif("r");
        trailing.push(0);
        assert_eq!(proxy_notif_req_id(&trailing), None);
    }

    #[tokio::test]
    async fn push_and_receive_speak_zmtp_to_each_other() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut ids = Vec::new();
            receive(stream, |id| ids.push(id)).await.unwrap();
            ids
        });
        push(addr, "req-7").await.unwrap();
        assert_eq!(got.await.unwrap(), [Some("req-7".to_owned())]);
    }

    #[tokio::test]
    async fn a_peer_that_is_not_zeromq_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            receive(stream, |_| panic!("no message expected")).await
        });
        let mut junk = TcpStream::connect(addr).await.unwrap();
        junk.write_all(&[0u8; 64]).await.unwrap();
        let err = got.await.unwrap().unwrap_err().to_string();
        assert!(err.contains("not a ZeroMQ peer"), "{err}");
    }
}
