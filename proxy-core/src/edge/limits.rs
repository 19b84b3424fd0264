//! Connection lifecycle limits, as nginx's `keepalive_timeout`, `keepalive_requests`,
//! `client_header_timeout`, `client_body_timeout`, `large_client_header_buffers` and
//! `worker_connections`.
//!
//! Every plain HTTP/1 connection is wrapped in a [`GuardedStream`] that sees the bytes Pingora
//! reads. Between requests it waits at most the keep-alive timeout for the next request's first
//! byte (the first request of a connection: the header timeout); from that byte the whole header
//! must arrive within `client-header-timeout` (one deadline, not restarted by each read), and
//! its lines are measured against `large-client-header-buffers` as they arrive, so a too large
//! header is answered (414 or 400, as nginx) before it is buffered. After the header the stream
//! is passed through untouched until the proxy says the request is done
//! ([`request_done`]). HTTP/2 connections are not wrapped: their loop is in `h2.rs`.
//!
//! [`ConnTable`] counts the connections of every proxy listener: over its cap the oldest idle
//! keep-alive connection is closed to make room, and when none is idle the new connection is
//! closed at once.
//!
//! Per request this costs no lock and no timer change: a connection registers its idle slot
//! once, and marks it idle or busy with an atomic store; only the (rare) eviction over the cap
//! takes the table's lock and scans the slots. The read timer is lazy: a deadline that moves
//! later leaves the timer where it is, and a timer that fires before the current deadline is
//! set again then (about once per `client-header-timeout` on a busy keep-alive connection).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_trait::async_trait;
use futures::task::AtomicWaker;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType,
};
use pingora::proxy::Session;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::snapshot::SnapshotHandle;

/// Connection limits from the ConfigMap (ingress-nginx's keys and defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnLimits {
    /// `keep-alive`: how long an idle keep-alive connection is kept; `None` (`"0"`): no
    /// keep-alive, every response says `Connection: close`.
    pub keep_alive: Option<Duration>,
    /// `keep-alive-requests`: requests served on one connection before it is closed.
    pub keep_alive_requests: u32,
    /// `client-header-timeout`: for the whole request header from its first byte, for the first
    /// byte of a new connection, and for the TLS handshake.
    pub client_header_timeout: Duration,
    /// `client-body-timeout`: between two reads of the request body; then 408.
    pub client_body_timeout: Duration,
    /// `send-timeout` (nginx `send_timeout`): for each write of a response to the client, also
    /// an HTTP/2 stream waiting for the client to open its flow-control window; then the
    /// response is abandoned (HTTP/2: the stream is reset).
    pub send_timeout: Duration,
    /// `client-header-buffer-size`: accepted for compatibility (nginx's first buffer; Weir
    /// grows its buffer as the header arrives, up to the large buffers).
    pub client_header_buffer_size: usize,
    /// `large-client-header-buffers` number: the total header is at most `number × size`.
    pub large_header_buffers: usize,
    /// `large-client-header-buffers` size: the longest request line (414 beyond) and header line
    /// (400 beyond).
    pub large_header_buffer_size: usize,
    /// `max-worker-connections`: client connections of all proxy listeners together; `0` = only
    /// the limit from open files.
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            keep_alive: Some(Duration::from_secs(75)),
            keep_alive_requests: 1000,
            client_header_timeout: Duration::from_secs(60),
            client_body_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            client_header_buffer_size: 1024,
            large_header_buffers: 4,
            large_header_buffer_size: 8 * 1024,
            max_connections: 16384,
        }
    }
}

/// The live connections of the proxy listeners, and the idle ones that may be closed for room.
pub struct ConnTable {
    active: AtomicUsize,
    /// The cap from open files (see the daemon), applied on top of `max-worker-connections`.
    fd_cap: usize,
    /// Every registered connection's slot, by key.
    slots: Mutex<HashMap<u64, Arc<IdleSlot>>>,
    next: AtomicU64,
    /// The origin of [`IdleSlot::idle_since`].
    epoch: Instant,
}

/// A connection's handle in the table: while it is idle, set `evicted` and wake it to close it.
#[derive(Default)]
struct IdleSlot {
    /// When the connection became idle (nanoseconds from the table's epoch, plus one, so never
    /// zero); zero while it is busy.
    idle_since: AtomicU64,
    evicted: AtomicBool,
    waker: AtomicWaker,
}

/// One connection counted in a [`ConnTable`]; dropping it releases the place.
pub struct ConnPlace {
    table: Arc<ConnTable>,
}

impl Drop for ConnPlace {
    fn drop(&mut self) {
        self.table.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnTable {
    /// A table whose cap is at most `fd_cap` (`usize::MAX`: none from open files).
    pub fn new(fd_cap: usize) -> Arc<Self> {
        Arc::new(ConnTable {
            active: AtomicUsize::new(0),
            fd_cap,
            slots: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    /// Client connections open now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Count a new connection under `limits`: over the cap, the oldest idle keep-alive connection
    /// is closed for it; `None` when none is idle (the new connection must be closed).
    pub fn enter(self: &Arc<Self>, limits: &ConnLimits) -> Option<ConnPlace> {
        let cap = match limits.max_connections {
            0 => self.fd_cap,
            n => n.min(self.fd_cap),
        };
        let now = self.active.fetch_add(1, Ordering::Relaxed) + 1;
        let place = ConnPlace {
            table: self.clone(),
        };
        if now > cap {
            self.evict_oldest_idle()?;
        }
        Some(place)
    }

    /// Close the connection idle the longest: `None` when none is idle.
    fn evict_oldest_idle(&self) -> Option<()> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let (slot, since) = slots
                .values()
                .filter_map(|s| match s.idle_since.load(Ordering::Acquire) {
                    0 => None,
                    since => Some((s, since)),
                })
                .min_by_key(|(_, since)| *since)?;
            // It may have become busy since the load: then look again.
            if slot
                .idle_since
                .compare_exchange(since, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                slot.evicted.store(true, Ordering::Release);
                slot.waker.wake();
                return Some(());
            }
        }
    }

    /// Wait, as an idle connection, until the cap closes it for room (an HTTP/2 connection with
    /// no stream in progress); dropping the future takes it out of the idle ones.
    pub(crate) async fn idle_until_evicted(&self) {
        struct Parked<'a>(&'a ConnTable, u64);
        impl Drop for Parked<'_> {
            fn drop(&mut self) {
                self.0.deregister(self.1);
            }
        }
        let slot = Arc::new(IdleSlot::default());
        let _parked = Parked(self, self.register(&slot));
        self.mark_idle(&slot, Instant::now());
        std::future::poll_fn(|cx| {
            slot.waker.register(cx.waker());
            if slot.evicted.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    /// Add a connection's slot (busy): once per connection.
    fn register(&self, slot: &Arc<IdleSlot>) -> u64 {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, slot.clone());
        key
    }

    fn deregister(&self, key: u64) {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    }

    /// The slot's connection waits for a request from `now`: it may be evicted.
    fn mark_idle(&self, slot: &IdleSlot, now: Instant) {
        slot.evicted.store(false, Ordering::Relaxed);
        let since = now.saturating_duration_since(self.epoch).as_nanos();
        let since = u64::try_from(since).unwrap_or(u64::MAX - 1) + 1;
        slot.idle_since.store(since, Ordering::Release);
    }
}

impl IdleSlot {
    /// The connection is busy again: it may no longer be evicted.
    fn mark_busy(&self) {
        self.idle_since.store(0, Ordering::Release);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of a request (until `deadline`).
    Idle,
    /// Reading a request header (until `deadline`).
    Header,
    /// Header read: pass through until the proxy says the request is done.
    Busy,
}

/// Why a request header is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TooLarge {
    /// The request line is longer than one large buffer: 414.
    RequestLine,
    /// A header line is longer than one large buffer, or the header than all of them: 400.
    Header,
}

const PAGE_414: &str = "<html>\r\n<head><title>414 Request-URI Too Large</title></head>\r\n<body>\r\n<center><h1>414 Request-URI Too Large</h1></center>\r\n<hr><center>weir</center>\r\n</body>\r\n</html>\r\n";
const PAGE_400_TOO_LARGE: &str = "<html>\r\n<head><title>400 Request Header Or Cookie Too Large</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>Request Header Or Cookie Too Large</center>\r\n<hr><center>weir</center>\r\n</body>\r\n</html>\r\n";

fn rejection(kind: TooLarge) -> Vec<u8> {
    let (status, page) = match kind {
        TooLarge::RequestLine => ("414 Request-URI Too Large", PAGE_414),
        TooLarge::Header => ("400 Bad Request", PAGE_400_TOO_LARGE),
    };
    format!(
        "HTTP/1.1 {status}\r\nServer: weir\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
        page.len()
    )
    .into_bytes()
}

/// The request-header scanner: where the header ends and whether it is too large.
#[derive(Debug, Default)]
struct HeaderScan {
    /// Bytes of the current line so far, without its `\n`.
    line: usize,
    /// The last byte of the current line was `\r`.
    cr: bool,
    /// The request line has been seen.
    started: bool,
    /// Header bytes so far.
    total: usize,
}

impl HeaderScan {
    /// Scan `data`: `Ok(Some(n))` when the header ends after `n` of its bytes, `Ok(None)` when it
    /// goes on, `Err` when it is too large.
    fn feed(&mut self, data: &[u8], limits: &ConnLimits) -> Result<Option<usize>, TooLarge> {
        let line_max = limits.large_header_buffer_size;
        let total_max = limits.large_header_buffers.saturating_mul(line_max);
        let mut at = 0;
        while at < data.len() {
            let rest = &data[at..];
            let Some(i) = memchr::memchr(b'\n', rest) else {
                self.line += rest.len();
                self.cr = rest.last() == Some(&b'\r');
                self.total += rest.len();
                return self.check(line_max, total_max).map(|()| None);
            };
            if i > 0 {
                self.cr = rest[i - 1] == b'\r';
            }
            self.line += i;
            self.total += i + 1;
            let empty = self.line == 0 || (self.line == 1 && self.cr);
            self.check(line_max, total_max)?;
            at += i + 1;
            if empty {
                if self.started {
                    return Ok(Some(at));
                }
                // Empty lines before the request line are skipped, as nginx.
            } else {
                self.started = true;
            }
            self.line = 0;
            self.cr = false;
        }
        Ok(None)
    }

    fn check(&self, line_max: usize, total_max: usize) -> Result<(), TooLarge> {
        if self.line > line_max {
            return Err(if self.started {
                TooLarge::Header
            } else {
                TooLarge::RequestLine
            });
        }
        if self.total > total_max {
            return Err(TooLarge::Header);
        }
        Ok(())
    }
}

/// A plain HTTP/1 connection with the limits of [`ConnLimits`] enforced on its reads.
pub struct GuardedStream {
    inner: Stream,
    snapshot: SnapshotHandle,
    limits: ConnLimits,
    phase: Phase,
    deadline: Instant,
    timer: Option<Pin<Box<Sleep>>>,
    /// The task `timer` was last polled by: while it is the one waiting, the running timer will
    /// wake it, so the timer need not be polled again (a keep-alive wait costs no timer work).
    timer_waker: Option<Waker>,
    scan: HeaderScan,
    /// A refusal being written, and how much of it is out.
    reject: Option<(Vec<u8>, usize)>,
    /// Set by the proxy when a request is finished and the connection may be reused.
    done: AtomicBool,
    /// Requests finished on this connection.
    requests: AtomicU32,
    table: Option<Arc<ConnTable>>,
    slot: Option<(Arc<IdleSlot>, u64)>,
    /// `send-timeout`: armed when a write has to wait, not per write (as nginx's `send_timeout`,
    /// the time between two successive writes), so a client that keeps up costs no timer.
    write_timer: Option<Pin<Box<Sleep>>>,
    /// A write is waiting: `write_timer` runs for it.
    write_waiting: bool,
}

impl std::fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedStream")
            .field("inner", &self.inner)
            .field("phase", &self.phase)
            .finish()
    }
}

impl GuardedStream {
    /// Wrap a new connection: its first byte must come within the header timeout.
    pub fn new(inner: Stream, snapshot: SnapshotHandle, table: Option<Arc<ConnTable>>) -> Self {
        let limits = snapshot.load().server().conn;
        let now = Instant::now();
        // A new connection is idle until its first byte (closed for room like any idle one).
        let slot = table.as_ref().map(|table| {
            let slot = Arc::new(IdleSlot::default());
            let key = table.register(&slot);
            table.mark_idle(&slot, now);
            (slot, key)
        });
        GuardedStream {
            inner,
            snapshot,
            limits,
            phase: Phase::Idle,
            deadline: now + limits.client_header_timeout,
            timer: None,
            timer_waker: None,
            scan: HeaderScan::default(),
            reject: None,
            done: AtomicBool::new(false),
            requests: AtomicU32::new(0),
            table,
            slot,
            write_timer: None,
            write_waiting: false,
        }
    }

    /// Requests finished on this connection so far.
    pub fn requests(&self) -> u32 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The previous request is done: wait for the next one as an idle keep-alive connection.
    fn become_idle(&mut self) {
        self.limits = self.snapshot.load().server().conn;
        self.phase = Phase::Idle;
        self.scan = HeaderScan::default();
        // Keep-alive off: Pingora closes after the response; this is only a bound.
        let wait = self
            .limits
            .keep_alive
            .unwrap_or(self.limits.client_header_timeout);
        let now = Instant::now();
        self.deadline = now + wait;
        if let (Some(table), Some((slot, _))) = (&self.table, &self.slot) {
            table.mark_idle(slot, now);
        }
    }

    /// No longer idle: not evictable.
    fn unpark(&mut self) {
        if let Some((slot, _)) = &self.slot {
            slot.mark_busy();
        }
    }

    /// A write could not go on: fail it once the client has taken nothing for `send-timeout`.
    fn poll_send_timeout<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        if !self.write_waiting {
            self.write_waiting = true;
            let deadline = Instant::now() + self.limits.send_timeout;
            match &mut self.write_timer {
                Some(t) => t.as_mut().reset(deadline),
                None => self.write_timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let timer = self.write_timer.as_mut().expect("armed above");
        match timer.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "send-timeout",
            ))),
        }
    }

    /// A write's outcome: a wait arms the send timeout, progress disarms it.
    fn written<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match r {
            Poll::Pending => self.poll_send_timeout(cx),
            ready => {
                self.write_waiting = false;
                ready
            }
        }
    }

    /// Write the refusal, then fail the read.
    fn poll_reject(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let Some((bytes, sent)) = &mut self.reject else {
            return Poll::Ready(Ok(()));
        };
        while *sent < bytes.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*sent..]) {
                Poll::Ready(Ok(0)) => break,
                Poll::Ready(Ok(n)) => *sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => Poll::Pending,
            _ => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "request header too large (refused)",
            ))),
        }
    }
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        if let (Some(table), Some((_, key))) = (&self.table, &self.slot) {
            table.deregister(*key);
        }
    }
}

/// Called by the proxy at the end of every request: the connection's wait for its next request
/// is then bounded by the keep-alive timeout, and its idle time counts for the connection cap.
pub(crate) fn request_done(session: &mut Session) {
    let reusable = session.as_downstream_mut().is_body_done();
    let Some(guard) = session
        .as_downstream()
        .stream()
        .and_then(|s| s.as_any().downcast_ref::<GuardedStream>())
    else {
        return;
    };
    guard.requests.fetch_add(1, Ordering::Relaxed);
    if reusable {
        guard.done.store(true, Ordering::Release);
    }
}

/// Called by the proxy when a request's header is read: the body read and response write
/// timeouts, and no keep-alive when it is off or this is the connection's last request.
pub(crate) fn on_request(session: &mut Session, limits: &ConnLimits) {
    session.set_read_timeout(Some(limits.client_body_timeout));
    let served = session
        .as_downstream()
        .stream()
        .and_then(|s| s.as_any().downcast_ref::<GuardedStream>())
        .map(GuardedStream::requests);
    if served.is_none() {
        // A guarded stream times its writes itself, only when one waits.
        session.set_write_timeout(Some(limits.send_timeout));
    }
    let last = served.is_some_and(|n| n.saturating_add(1) >= limits.keep_alive_requests);
    if limits.keep_alive.is_none() || last {
        session.set_keepalive(None);
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.done.swap(false, Ordering::Acquire) {
            this.become_idle();
        }
        if this.phase == Phase::Busy {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        if this.reject.is_some() {
            return this.poll_reject(cx);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if n == 0 {
                    return Poll::Ready(Ok(()));
                }
                if this.phase == Phase::Idle {
                    this.unpark();
                    this.phase = Phase::Header;
                    this.deadline = Instant::now() + this.limits.client_header_timeout;
                }
                match this.scan.feed(&buf.filled()[before..], &this.limits) {
                    Ok(Some(_)) => this.phase = Phase::Busy,
                    Ok(None) => {}
                    Err(kind) => {
                        // Nothing of this header reaches Pingora: the refusal is written now.
                        buf.set_filled(before);
                        this.reject = Some((rejection(kind), 0));
                        return this.poll_reject(cx);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if this.phase == Phase::Idle {
                    if let Some((slot, _)) = &this.slot {
                        slot.waker.register(cx.waker());
                        if slot.evicted.swap(false, Ordering::Acquire) {
                            // Closed for room: as an idle timeout, a clean end.
                            return Poll::Ready(Ok(()));
                        }
                    }
                }
                let deadline = this.deadline;
                if let (Some(t), Some(w)) = (&this.timer, &this.timer_waker) {
                    if t.deadline() <= deadline && !t.is_elapsed() && w.will_wake(cx.waker()) {
                        return Poll::Pending;
                    }
                }
                let timer = match &mut this.timer {
                    Some(t) => {
                        // Lazy: a deadline that moved later keeps the timer (it is set again
                        // below if it fires first); one that moved earlier resets it.
                        if t.deadline() > deadline {
                            t.as_mut().reset(deadline);
                        }
                        t
                    }
                    None => this
                        .timer
                        .insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                loop {
                    if timer.as_mut().poll(cx).is_pending() {
                        if !this
                            .timer_waker
                            .as_ref()
                            .is_some_and(|w| w.will_wake(cx.waker()))
                        {
                            this.timer_waker = Some(cx.waker().clone());
                        }
                        return Poll::Pending;
                    }
                    if timer.deadline() >= deadline {
                        break;
                    }
                    timer.as_mut().reset(deadline);
                }
                if this.phase == Phase::Idle {
                    // Keep-alive (or first byte) timeout: close quietly, as nginx.
                    this.unpark();
                    Poll::Ready(Ok(()))
                } else {
                    // Header timeout: nginx closes without an answer (408 in its log).
                    Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "client-header-timeout",
                    )))
                }
            }
        }
    }
}

use std::future::Future;

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.written(cx, r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.written(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.written(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<pingora::protocols::ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<pingora::protocols::SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, socket_digest: pingora::protocols::SocketDigest) {
        self.inner.set_socket_digest(socket_digest);
    }
}

#[async_trait]
impl Peek for GuardedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(size: usize, number: usize) -> ConnLimits {
        ConnLimits {
            large_header_buffer_size: size,
            large_header_buffers: number,
            ..ConnLimits::default()
        }
    }

    #[test]
    fn header_end_is_found_across_reads_and_line_endings() {
        let l = ConnLimits::default();
        let mut s = HeaderScan::default();
        assert_eq!(s.feed(b"GET / HTTP/1.1\r\nHost: a\r", &l), Ok(None));
        assert_eq!(s.feed(b"\n\r", &l), Ok(None));
        assert_eq!(s.feed(b"\nbody", &l), Ok(Some(1)));
        let mut s = HeaderScan::default();
        assert_eq!(s.feed(b"\r\n\nGET / HTTP/1.0\n\nx", &l), Ok(Some(19)));
        let mut s = HeaderScan::default();
        assert_eq!(s.feed(b"GET / HTTP/1.1\r\nA: b\r\n\r\n", &l), Ok(Some(24)));
    }

    #[test]
    fn long_lines_and_headers_are_refused_as_nginx() {
        let l = limits(16, 2);
        let mut s = HeaderScan::default();
        assert_eq!(
            s.feed(b"GET /aaaaaaaaaaaaaaaaaaaaaa", &l),
            Err(TooLarge::RequestLine)
        );
        let mut s = HeaderScan::default();
        assert_eq!(s.feed(b"GET / HTTP/1.1\r\n", &l), Ok(None));
        assert_eq!(
            s.feed(b"Cookie: 0123456789abcdef", &l),
            Err(TooLarge::Header)
        );
        // Every line fits, the whole does not.
        let mut s = HeaderScan::default();
        assert_eq!(
            s.feed(b"GET / HTTP/1.1\r\nA: 0123456789\r\nB: 0123456789\r\n", &l),
            Err(TooLarge::Header)
        );
        // Exactly at the line limit (its `\r` counted, not its `\n`) is accepted, one more not.
        let mut s = HeaderScan::default();
        assert_eq!(s.feed(b"GET /0123456789\r\n\r\n", &l), Ok(Some(19)));
        let mut s = HeaderScan::default();
        assert_eq!(
            s.feed(b"GET /0123456789a\r\n\r\n", &l),
            Err(TooLarge::RequestLine)
        );
    }

    #[test]
    fn over_the_cap_the_oldest_idle_connection_is_closed() {
        let table = ConnTable::new(usize::MAX);
        let l = ConnLimits {
            max_connections: 2,
            ..ConnLimits::default()
        };
        let a = table.enter(&l).unwrap();
        let _b = table.enter(&l).unwrap();
        let old = Arc::new(IdleSlot::default());
        let young = Arc::new(IdleSlot::default());
        let busy = Arc::new(IdleSlot::default());
        table.register(&old);
        table.register(&young);
        table.register(&busy);
        let t0 = Instant::now();
        table.mark_idle(&old, t0 + Duration::from_secs(1));
        table.mark_idle(&young, t0 + Duration::from_secs(2));
        let _c = table.enter(&l).expect("an idle connection makes room");
        assert!(old.evicted.load(Ordering::Acquire));
        assert!(!young.evicted.load(Ordering::Acquire));
        assert!(!busy.evicted.load(Ordering::Acquire));
        assert_eq!(table.active(), 3, "the evicted one closes on its own");
        drop(a);
        let _d = table.enter(&l).expect("the young idle one makes room");
        assert!(young.evicted.load(Ordering::Acquire));
        // Busy again after being idle: not evictable.
        table.mark_idle(&busy, t0);
        busy.mark_busy();
        assert!(table.enter(&l).is_none(), "nothing idle: refused");
        assert!(!busy.evicted.load(Ordering::Acquire));
        assert_eq!(table.active(), 3);
    }
}
