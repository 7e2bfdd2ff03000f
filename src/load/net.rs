//! Socket reads that know when their bytes arrived.
//!
//! A user-space timestamp taken after `read` returns includes however long the bytes waited
//! in the socket: the wake-up of the reading thread, and every other stream the runtime
//! served first. At a thousand streams that wait is a millisecond or more, and it would be
//! counted as server latency. Linux can stamp each packet when the network stack receives it
//! (`SO_TIMESTAMPNS`; for TCP, `recvmsg` reports the stamp of the newest segment it
//! returned). vbench reads through [`recv_stamped`] and measures from that stamp, so the
//! client's own scheduling no longer leaks into TTFT and ITL; the wait itself is kept as a
//! client-health figure ([`Arrival::waited`]).
//!
//! The kernel stamps with CLOCK_REALTIME. Each stamp is turned into an [`Instant`] by its age
//! (`realtime now - stamp`) measured right at the read, so a clock step between reads
//! cannot skew it; a stamp that looks wrong (in the future, or older than
//! [`MAX_PLAUSIBLE_AGE`]) is ignored and the read instant is used instead.

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::net::TcpStream;

/// Stamps older than this are treated as wrong (a realtime clock step during the read).
pub const MAX_PLAUSIBLE_AGE: Duration = Duration::from_secs(10);

/// When the bytes of one read arrived.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// When `recvmsg` returned.
    pub read_at: Instant,
    /// When the network stack received the newest of these bytes, if the kernel said.
    pub kernel_at: Option<Instant>,
}

impl Arrival {
    /// The best estimate of when the bytes arrived.
    pub fn at(&self) -> Instant {
        self.kernel_at.unwrap_or(self.read_at)
    }

    /// How long the bytes waited before the client read them (zero without a kernel stamp).
    pub fn waited(&self) -> Duration {
        self.kernel_at
            .map(|k| self.read_at.saturating_duration_since(k))
            .unwrap_or_default()
    }
}

/// Ask the kernel to stamp received data on this socket (best effort: without it every
/// [`Arrival`] falls back to the read instant).
pub fn enable_rx_timestamps(sock: &impl AsRawFd) -> bool {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads `on` (an int, as SO_TIMESTAMPNS expects) and nothing else.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

/// Read what is available into the spare capacity of `buf` (reserving 16 KiB if it has
/// none), waiting for readability first. Returns the byte count (0 = end of stream) and when
/// those bytes arrived.
pub async fn recv_stamped(sock: &TcpStream, buf: &mut Vec<u8>) -> io::Result<(usize, Arrival)> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(16 * 1024);
    }
    loop {
        sock.readable().await?;
        match sock.try_io(Interest::READABLE, || {
            recvmsg_stamped(sock.as_raw_fd(), buf)
        }) {
            Ok(r) => return Ok(r),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Control-message space for one `struct timespec` (with room to spare), 8-byte aligned.
#[repr(C, align(8))]
struct Control([u8; 128]);

fn recvmsg_stamped(fd: libc::c_int, buf: &mut Vec<u8>) -> io::Result<(usize, Arrival)> {
    let spare = buf.spare_capacity_mut();
    let mut iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: spare.len(),
    };
    let mut control = Control([0; 128]);
    // SAFETY: msghdr is plain data; zeroed is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len() as _;
    // SAFETY: the iovec points at `spare` (uninitialised capacity we own), the control
    // buffer at `control`; recvmsg writes at most their lengths.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let read_at = Instant::now();
    let realtime_now = realtime_ns();
    let n = n as usize;
    // SAFETY: recvmsg initialised the first n bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    let stamp = if msg.msg_flags & libc::MSG_CTRUNC == 0 {
        kernel_stamp_ns(&msg)
    } else {
        None
    };
    let kernel_at = stamp.and_then(|s| {
        let age = realtime_now.checked_sub(s)?;
        let age = Duration::from_nanos(u64::try_from(age).ok()?);
        (age <= MAX_PLAUSIBLE_AGE).then(|| read_at.checked_sub(age))?
    });
    Ok((n, Arrival { read_at, kernel_at }))
}

/// The SCM_TIMESTAMPNS stamp of a received message, in ns since the epoch.
fn kernel_stamp_ns(msg: &libc::msghdr) -> Option<i128> {
    // SAFETY: the CMSG_* macros walk the control buffer recvmsg filled, within
    // msg_controllen; the timespec is read unaligned from the message's data.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Some(ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128);
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}

fn realtime_ns() -> i128 {
    // SAFETY: clock_gettime writes the timespec we pass.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn stamps_say_when_data_arrived_not_when_it_was_read() {
        let (reader, mut writer) = pair().await;
        assert!(enable_rx_timestamps(&reader));
        // The kernel turns stamping on from a work queue the first time a socket asks for
        // it: wait until a segment comes stamped, then measure.
        let mut buf = Vec::new();
        for attempt in 0.. {
            writer.write_all(b"x").await.unwrap();
            if recv_stamped(&reader, &mut buf)
                .await
                .unwrap()
                .1
                .kernel_at
                .is_some()
            {
                break;
            }
            assert!(attempt < 100, "no receive stamp after {attempt} writes");
            std::thread::sleep(Duration::from_millis(10));
        }

        let before = Instant::now();
        writer.write_all(b"hello").await.unwrap();
        let after = Instant::now();
        std::thread::sleep(Duration::from_millis(30)); // the reader is "busy" for 30 ms
        buf.clear();
        let (n, arrival) = recv_stamped(&reader, &mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello");
        let kernel_at = arrival.kernel_at.expect("the kernel stamped the segment");
        // Loopback stamps inside the sender's write; allow for the realtime-to-monotonic
        // conversion (two clock reads apart).
        let slack = Duration::from_micros(200);
        assert!(
            kernel_at + slack >= before && kernel_at <= after + slack,
            "stamp outside its write: {:?} after the write started, write took {:?}",
            kernel_at.saturating_duration_since(before),
            after - before
        );
        assert!(arrival.waited() >= Duration::from_millis(29), "{arrival:?}");
        assert_eq!(arrival.at(), kernel_at);
    }

    #[tokio::test]
    async fn without_timestamps_the_read_instant_is_used() {
        let (reader, mut writer) = pair().await;
        writer.write_all(b"abc").await.unwrap();
        let mut buf = Vec::new();
        let (n, arrival) = recv_stamped(&reader, &mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"abc");
        assert!(arrival.kernel_at.is_none());
        assert_eq!(arrival.at(), arrival.read_at);
        assert_eq!(arrival.waited(), Duration::ZERO);
        drop(writer);
        let (n, _) = recv_stamped(&reader, &mut buf).await.unwrap();
        assert_eq!(n, 0, "end of stream");
    }
}
