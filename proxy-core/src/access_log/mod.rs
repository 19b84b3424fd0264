//! The access log: one line per request in an nginx `log_format` ([`LogFormat`]), rendered in
//! Pingora's `logging` hook and written to stdout by a dedicated thread ([`AccessLog`]).
//!
//! The request path renders the line into its own buffer and hands it over a bounded channel
//! with `try_send`: no lock and no blocking. When the writer falls behind and the channel is
//! full, the line is dropped and counted (`weir_access_log_dropped_total`).

mod format;

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::IntCounter;

pub use format::{Escape, FormatError, LogFormat};
pub(crate) use format::{Segment, Var};

/// Lines waiting for the writer before new ones are dropped.
pub const ACCESS_LOG_QUEUE: usize = 16384;

/// What the access log writes, part of [`ServerPolicy`](crate::ServerPolicy) (ConfigMap keys
/// `log-format-upstream`, `log-format-escape-*`, `skip-access-log-urls`,
/// `enable-access-log-for-default-backend`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AccessLogConfig {
    /// The line format.
    pub format: Arc<LogFormat>,
    /// Requests whose `$request_uri` (path and query as sent) is one of these are not logged.
    pub skip_urls: Vec<String>,
    /// Log requests that no Ingress routes (the default backend); off by default, as
    /// ingress-nginx.
    pub default_backend: bool,
}

impl AccessLogConfig {
    /// Whether a request for `request_uri` is left out.
    pub(crate) fn skips(&self, request_uri: &[u8]) -> bool {
        !self.skip_urls.is_empty() && self.skip_urls.iter().any(|u| u.as_bytes() == request_uri)
    }
}

/// Where access log lines go: a writer thread fed by a bounded channel. Cheap to clone.
#[derive(Clone)]
pub struct AccessLog {
    tx: SyncSender<Vec<u8>>,
    dropped: Arc<Dropped>,
}

struct Dropped {
    count: AtomicU64,
    counter: Option<IntCounter>,
}

impl Dropped {
    fn add(&self, n: u64) {
        self.count.fetch_add(n, Ordering::Relaxed);
        if let Some(c) = &self.counter {
            c.inc_by(n);
        }
    }
}

impl AccessLog {
    /// Write lines to stdout; `dropped` counts lines lost (see [`AccessLog::dropped_counter`]).
    pub fn stdout(dropped: Option<IntCounter>) -> std::io::Result<AccessLog> {
        AccessLog::to_writer(std::io::stdout(), ACCESS_LOG_QUEUE, dropped)
    }

    /// Write lines to `out` from a new thread, with room for `queue` lines in flight. The
    /// thread ends when every clone of the returned handle is gone.
    pub fn to_writer<W: Write + Send + 'static>(
        out: W,
        queue: usize,
        dropped: Option<IntCounter>,
    ) -> std::io::Result<AccessLog> {
        let (tx, rx) = std::sync::mpsc::sync_channel(queue.max(1));
        let dropped = Arc::new(Dropped {
            count: AtomicU64::new(0),
            counter: dropped,
        });
        let d = dropped.clone();
        std::thread::Builder::new()
            .name("weir-access-log".into())
            .spawn(move || write_lines(rx, out, &d))?;
        Ok(AccessLog { tx, dropped })
    }

    /// `weir_access_log_dropped_total`, registered in `registry`.
    pub fn dropped_counter(registry: &prometheus::Registry) -> prometheus::Result<IntCounter> {
        let c = IntCounter::new(
            "weir_access_log_dropped_total",
            "Access log lines dropped because the writer fell behind or could not write",
        )?;
        registry.register(Box::new(c.clone()))?;
        Ok(c)
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.count.load(Ordering::Relaxed)
    }

    /// Queue one rendered line (ending in `\n`); never blocks.
    pub(crate) fn send(&self, line: Vec<u8>) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.add(1),
        }
    }
}

/// The writer thread: waits for a line, takes whatever else is queued (up to 64 KiB), and
/// writes the batch with one `write` call.
fn write_lines(rx: Receiver<Vec<u8>>, mut out: impl Write, dropped: &Dropped) {
    const BATCH: usize = 64 << 10;
    let mut batch = Vec::with_capacity(BATCH);
    while let Ok(line) = rx.recv() {
        batch.extend_from_slice(&line);
        let mut lines = 1u64;
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(line) => {
                    batch.extend_from_slice(&line);
                    lines += 1;
                }
                Err(_) => break,
            }
        }
        if out.write_all(&batch).and_then(|()| out.flush()).is_err() {
            dropped.add(lines);
        }
        batch.clear();
        if batch.capacity() > 4 * BATCH {
            batch.shrink_to(BATCH);
        }
    }
}

/// The values of one request's variables, written on demand.
pub(crate) trait Values {
    /// Append the value of `var` to `out`; `false` when the variable has no value.
    fn write(&self, var: &Var, out: &mut Vec<u8>) -> bool;
}

/// Render one line of `format` (with its trailing newline).
pub(crate) fn render(format: &LogFormat, values: &impl Values, out: &mut Vec<u8>) {
    let escape = format.escape();
    for segment in format.segments.iter() {
        match segment {
            Segment::Text(t) => out.extend_from_slice(t),
            Segment::Var(v) => {
                let start = out.len();
                if !values.write(v, out) {
                    out.truncate(start);
                    if escape != Escape::Json {
                        out.push(b'-');
                    }
                    continue;
                }
                if !v.is_plain() && format::needs_escape(escape, &out[start..]) {
                    let raw = out.split_off(start);
                    format::escape_into(escape, &raw, out);
                }
            }
        }
    }
    out.push(b'\n');
}

/// Append `n` in decimal.
pub(crate) fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Append a duration as seconds with millisecond resolution (`0.001`), as nginx's
/// `$request_time`.
pub(crate) fn write_seconds(out: &mut Vec<u8>, d: Duration) {
    let ms = d.as_millis() as u64;
    write_u64(out, ms / 1000);
    let frac = ms % 1000;
    out.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// The time variables.
#[derive(Clone, Copy)]
pub(crate) enum TimeFormat {
    /// `$time_local`: `03/Dec/2026:05:57:19 +0000`.
    Local,
    /// `$time_iso8601`: `2026-12-03T05:57:19+00:00`.
    Iso8601,
    /// `$msec`: `1764741439.123`.
    Msec,
}

struct ClockCache {
    secs: u64,
    local: [u8; 26],
    iso: [u8; 25],
}

thread_local! {
    /// The formatted times of the current second, per thread.
    static CLOCK: RefCell<ClockCache> = const {
        RefCell::new(ClockCache { secs: u64::MAX, local: [0; 26], iso: [0; 25] })
    };
}

/// Append `now` in `format` (UTC); the text is formatted once per second per thread.
pub(crate) fn write_time(out: &mut Vec<u8>, now: SystemTime, format: TimeFormat) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    if let TimeFormat::Msec = format {
        write_u64(out, secs);
        let ms = since.subsec_millis();
        out.extend_from_slice(&[
            b'.',
            b'0' + (ms / 100) as u8,
            b'0' + (ms / 10 % 10) as u8,
            b'0' + (ms % 10) as u8,
        ]);
        return;
    }
    CLOCK.with(|c| {
        let mut c = c.borrow_mut();
        if c.secs != secs {
            let (local, iso) = format_second(secs);
            *c = ClockCache { secs, local, iso };
        }
        match format {
            TimeFormat::Local => out.extend_from_slice(&c.local),
            _ => out.extend_from_slice(&c.iso),
        }
    });
}

/// `secs` since the epoch as `$time_local` and `$time_iso8601` (UTC).
fn format_second(secs: u64) -> ([u8; 26], [u8; 25]) {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (h, mi, s) = (rem / 3600, rem / 60 % 60, rem % 60);
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as u64;
    let two = |n: u64| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
    let four = |n: u64| {
        [
            b'0' + (n / 1000 % 10) as u8,
            b'0' + (n / 100 % 10) as u8,
            b'0' + (n / 10 % 10) as u8,
            b'0' + (n % 10) as u8,
        ]
    };
    let mut local = [0u8; 26];
    let mut w = &mut local[..];
    for part in [
        &two(d)[..],
        b"/",
        MONTHS[(m - 1) as usize],
        b"/",
        &four(y),
        b":",
        &two(h),
        b":",
        &two(mi),
        b":",
        &two(s),
        b" +0000",
    ] {
        let _ = w.write_all(part);
    }
    let mut iso = [0u8; 25];
    let mut w = &mut iso[..];
    for part in [
        &four(y)[..],
        b"-",
        &two(m),
        b"-",
        &two(d),
        b"T",
        &two(h),
        b":",
        &two(mi),
        b":",
        &two(s),
        b"+00:00",
    ] {
        let _ = w.write_all(part);
    }
    (local, iso)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderName;

    struct Fake;

    impl Values for Fake {
        fn write(&self, var: &Var, out: &mut Vec<u8>) -> bool {
            match var {
                Var::Status => write_u64(out, 200),
                Var::Header(h) if h == HeaderName::from_static("user-agent") => {
                    out.extend_from_slice(b"curl \"x\"")
                }
                Var::RequestTime => write_seconds(out, Duration::from_micros(1_234_567)),
                _ => return false,
            }
            true
        }
    }

    fn line(format: &str, escape: Escape) -> String {
        let f = LogFormat::compile(format, escape).unwrap();
        let mut out = Vec::new();
        render(&f, &Fake, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn unset_values_are_a_dash_or_empty_in_json() {
        let f = "$status \"$http_user_agent\" $remote_user $request_time";
        assert_eq!(
            line(f, Escape::Default),
            "200 \"curl \\x22x\\x22\" - 1.234\n"
        );
        assert_eq!(line(f, Escape::Json), "200 \"curl \\\"x\\\"\"  1.234\n");
        assert_eq!(line(f, Escape::None), "200 \"curl \"x\"\" - 1.234\n");
    }

    #[test]
    fn times_are_formatted_as_nginx() {
        // 2024-02-29T23:59:58Z, a leap day.
        let t = UNIX_EPOCH + Duration::from_millis(1_709_251_198_042);
        let fmt = |f| {
            let mut out = Vec::new();
            write_time(&mut out, t, f);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(fmt(TimeFormat::Local), "29/Feb/2024:23:59:58 +0000");
        assert_eq!(fmt(TimeFormat::Iso8601), "2024-02-29T23:59:58+00:00");
        assert_eq!(fmt(TimeFormat::Msec), "1709251198.042");
        let (local, _) = format_second(0);
        assert_eq!(&local, b"01/Jan/1970:00:00:00 +0000");
        let (_, iso) = format_second(951_782_400);
        assert_eq!(&iso, b"2000-02-29T00:00:00+00:00");
    }

    #[test]
    fn numbers_and_seconds() {
        let mut out = Vec::new();
        write_u64(&mut out, 0);
        out.push(b' ');
        write_u64(&mut out, u64::MAX);
        out.push(b' ');
        write_seconds(&mut out, Duration::from_micros(999));
        out.push(b' ');
        write_seconds(&mut out, Duration::from_secs(61));
        assert_eq!(out, b"0 18446744073709551615 0.000 61.000");
    }

    #[test]
    fn the_writer_batches_lines_and_counts_what_it_cannot_queue() {
        #[derive(Clone, Default)]
        struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Shared::default();
        let log = AccessLog::to_writer(sink.clone(), 4, None).unwrap();
        for i in 0..3 {
            log.send(format!("line {i}\n").into_bytes());
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sink.0.lock().unwrap().len() < 21 {
            assert!(std::time::Instant::now() < deadline, "lines written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"line 0\nline 1\nline 2\n");
        assert_eq!(log.dropped(), 0);

        // A writer that blocks: once it holds a line, the queue (2) fills and further lines
        // are counted.
        struct Stuck(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>);
        impl Write for Stuck {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                let _ = self.0.send(());
                let _ = self.1.recv();
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (entered_tx, entered) = std::sync::mpsc::channel();
        let (release, rx) = std::sync::mpsc::channel();
        let counter = IntCounter::new("dropped", "test").unwrap();
        let log = AccessLog::to_writer(Stuck(entered_tx, rx), 2, Some(counter.clone())).unwrap();
        log.send(b"first\n".to_vec());
        entered.recv().unwrap();
        for _ in 0..10 {
            log.send(b"x\n".to_vec());
        }
        assert_eq!(log.dropped(), 8);
        assert_eq!(counter.get(), 8);
        drop(release);
    }

    #[test]
    fn skip_urls_match_the_request_uri_exactly() {
        let c = AccessLogConfig {
            skip_urls: vec!["/healthz".into()],
            ..Default::default()
        };
        assert!(c.skips(b"/healthz"));
        assert!(!c.skips(b"/healthz?x"));
        assert!(!AccessLogConfig::default().skips(b"/healthz"));
    }
}
