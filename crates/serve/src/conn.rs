//! Limits below HTTP, per accepted connection: the caps on open connections ([`Caps`]), and
//! the send and idle timeouts of its IO ([`Timed`]). A timeout fails the IO with `TimedOut`,
//! so hyper ends the connection and drops its response bodies (their concurrency permits and
//! buffered bytes with them).

use futures::task::AtomicWaker;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep, Instant, Sleep};

/// The caps on open connections: in total and per client address (0 = unlimited).
pub struct Caps {
    total: usize,
    per_ip: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

impl Caps {
    /// At most `total` connections, `per_ip` from one address.
    pub fn new(total: usize, per_ip: usize) -> Arc<Self> {
        Arc::new(Caps {
            total,
            per_ip,
            open: Mutex::default(),
        })
    }

    /// A slot for a new connection from `ip`, or `None` when a cap is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let from_ip = open.1.get(&ip).copied().unwrap_or(0);
        if (self.total > 0 && open.0 >= self.total) || (self.per_ip > 0 && from_ip >= self.per_ip) {
            return None;
        }
        open.0 += 1;
        open.1.insert(ip, from_ip + 1);
        Some(Slot {
            caps: Arc::clone(self),
            ip,
        })
    }
}

/// One admitted connection; dropping it frees the slot.
pub struct Slot {
    caps: Arc<Caps>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.caps.open.lock().unwrap_or_else(|e| e.into_inner());
        open.0 -= 1;
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
    }
}

/// Responses in flight on one connection: the idle timeout runs only while there are none.
/// A read that waits while some are registers here, to be woken (and arm the timer) when the
/// last one ends.
#[derive(Default)]
pub struct InFlight {
    count: AtomicUsize,
    reader: AtomicWaker,
}

impl InFlight {
    /// Counts a response until the returned guard is dropped (with its body).
    pub fn enter(self: &Arc<Self>) -> Busy {
        self.count.fetch_add(1, Ordering::SeqCst);
        Busy(Arc::clone(self))
    }

    /// Whether no response is in flight; if one is, `cx` is woken when the last one ends.
    fn idle(&self, cx: &mut Context<'_>) -> bool {
        if self.count.load(Ordering::SeqCst) == 0 {
            return true;
        }
        self.reader.register(cx.waker());
        self.count.load(Ordering::SeqCst) == 0
    }
}

/// A response in flight (see [`InFlight::enter`]).
pub struct Busy(Arc<InFlight>);

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.reader.wake();
        }
    }
}

/// A deadline armed when an operation starts waiting and disarmed on progress.
struct Deadline {
    after: Duration,
    sleep: Pin<Box<Sleep>>,
    armed: bool,
}

impl Deadline {
    fn new(after: Duration) -> Self {
        Deadline {
            after,
            sleep: Box::pin(sleep(after)),
            armed: false,
        }
    }

    /// Arms the deadline if it is not, and whether it has passed (registering `cx` if not).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.armed {
            self.armed = true;
            self.sleep.as_mut().reset(Instant::now() + self.after);
        }
        self.sleep.as_mut().poll(cx).is_ready()
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_string())
}

/// A connection's IO with its timeouts: a write that cannot progress for the send timeout
/// fails, and so does a read that gets nothing for the idle timeout while no response is in
/// flight nor waiting to be written (the idle time counts from the last byte either way).
pub struct Timed<T> {
    io: T,
    in_flight: Arc<InFlight>,
    send: Deadline,
    idle: Deadline,
}

impl<T> Timed<T> {
    /// `io` with a send timeout of `send` and an idle timeout of `idle`, idle when
    /// `in_flight` counts no response.
    pub fn new(io: T, in_flight: Arc<InFlight>, send: Duration, idle: Duration) -> Self {
        Timed {
            io,
            in_flight,
            send: Deadline::new(send),
            idle: Deadline::new(idle),
        }
    }

    /// The result of a write-side poll, failing it once the send deadline has passed. Only
    /// written bytes (`progress`) disarm the deadline: a flush of a socket is always ready.
    fn write_side<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
        progress: bool,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Pending if self.send.expired(cx) => {
                Poll::Ready(Err(timed_out("send timeout: the client stopped reading")))
            }
            Poll::Pending => Poll::Pending,
            ready => {
                if progress {
                    self.send.armed = false;
                    self.idle.armed = false;
                }
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Timed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            // A response in flight, or bytes of one still waiting to be written: the send
            // timeout governs.
            Poll::Pending if this.send.armed || !this.in_flight.idle(cx) => {
                this.idle.armed = false;
                Poll::Pending
            }
            Poll::Pending if this.idle.expired(cx) => {
                Poll::Ready(Err(timed_out("idle timeout: the client sent nothing")))
            }
            Poll::Pending => Poll::Pending,
            ready => {
                this.idle.armed = false;
                ready
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Timed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.write_side(cx, polled, true)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.write_side(cx, polled, true)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.write_side(cx, polled, false)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.write_side(cx, polled, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn caps_hold_in_total_and_per_address() {
        let caps = Caps::new(3, 2);
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let a1 = caps.admit(a).unwrap();
        let _a2 = caps.admit(a).unwrap();
        assert!(caps.admit(a).is_none(), "per-address cap");
        let _b1 = caps.admit(b).unwrap();
        assert!(caps.admit(b).is_none(), "total cap");
        drop(a1);
        assert!(caps.admit(b).is_some());
        assert!(Caps::new(0, 0).admit(a).is_some());
    }

    #[tokio::test]
    async fn a_stalled_write_times_out() {
        let (near, _far) = tokio::io::duplex(16);
        let mut io = Timed::new(
            near,
            Arc::new(InFlight::default()),
            Duration::from_millis(100),
            Duration::from_secs(100),
        );
        let err = io.write_all(&[0u8; 64]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn reads_time_out_only_when_idle() {
        let (near, mut far) = tokio::io::duplex(16);
        let in_flight = Arc::new(InFlight::default());
        let mut io = Timed::new(
            near,
            Arc::clone(&in_flight),
            Duration::from_secs(100),
            Duration::from_millis(100),
        );
        let busy = in_flight.enter();
        let mut buf = [0u8; 4];
        let read = tokio::time::timeout(Duration::from_millis(500), io.read(&mut buf)).await;
        assert!(
            read.is_err(),
            "no idle timeout while a response is in flight"
        );
        drop(busy);
        far.write_all(b"x").await.unwrap();
        assert_eq!(io.read(&mut buf).await.unwrap(), 1);
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
