//! Access logs: one line per request the driver served (`--access-log
//! <stdout|path>`, `--access-log-format <json|combined>`; off by default).
//!
//! The request path never waits for the log: the driver formats the line
//! and hands it to a bounded queue ([`ACCESS_LOG_QUEUE_LINES`]) with
//! `try_send`; a writer thread of its own takes them every
//! [`ACCESS_LOG_DRAIN_INTERVAL`], writes them through a buffer and flushes
//! it at least every [`ACCESS_LOG_FLUSH_INTERVAL`].
//! When the queue is full (the disk or the reader of stdout cannot keep
//! up) the line is dropped and counted (`ringlb_access_log_dropped_total`
//! on `/metrics`) rather than stalling the request, as nginx's
//! `access_log … buffer=` and Envoy's access log flush do, minus their
//! blocking. With the log off, the request path pays a branch (and one per
//! attempt): no clock read, no allocation.
//!
//! Fields: time of arrival, client address, method, target, HTTP version,
//! status, response body bytes, duration, replica, attempts and the
//! request key. The line of a forwarded response is written when its body
//! has been relayed to its end (or the relay stopped, or the tunnel of a
//! protocol switch closed; `completion.rs`): `bytes` is the body
//! content that reached the client (chunk framing not counted; fewer than
//! framed when the relay stopped early, as nginx's `$body_bytes_sent`), and
//! `duration` runs from the request's arrival until then (nginx's
//! `$request_time`). An answer of the data plane's own has its body's
//! length. A client that hung up before its answer is logged with status
//! 499 (nginx's convention). Requests refused or answered before routing
//! (malformed heads, oversized bodies, `OPTIONS` at `Max-Forwards: 0`) are
//! not logged.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::stats::Stats;

/// Lines queued for the writer at most; more are dropped and counted.
pub const ACCESS_LOG_QUEUE_LINES: usize = 16 * 1024;
/// The writer flushes its buffer at least this often.
pub const ACCESS_LOG_FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// How often the writer takes the queued lines (the queue holds
/// [`ACCESS_LOG_QUEUE_LINES`], enough for this long at well over 100,000
/// requests per second).
pub const ACCESS_LOG_DRAIN_INTERVAL: Duration = Duration::from_millis(10);
/// How long [`AccessLog::flush`] waits for the writer at shutdown.
pub const ACCESS_LOG_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// The writer's buffer, in bytes.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;
/// The status logged for a request whose client hung up first.
pub const CLIENT_CLOSED_STATUS: u16 = 499;

/// Where access log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// The process's standard output.
    Stdout,
    /// A file, created if missing, appended to.
    File(PathBuf),
}

impl std::str::FromStr for AccessLogTarget {
    type Err = std::convert::Infallible;

    /// `stdout`, or a path.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(if s == "stdout" || s == "-" {
            AccessLogTarget::Stdout
        } else {
            AccessLogTarget::File(PathBuf::from(s))
        })
    }
}

/// How a line is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// NCSA combined (Apache's `%h %l %u %t "%r" %>s %b "%{Referer}i"
    /// "%{User-agent}i"`, as nginx's `combined`), Referer and User-Agent
    /// written as `-` (the data plane does not keep header values), then
    /// ringlb's fields: duration in ms, replica, attempts, key.
    Combined,
}

/// An `--access-log-format` value that names no format.
#[derive(Debug, thiserror::Error)]
#[error("unknown access log format '{0}' (expected json or combined)")]
pub struct UnknownFormat(String);

impl std::str::FromStr for AccessLogFormat {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, UnknownFormat> {
        match s {
            "json" => Ok(AccessLogFormat::Json),
            "combined" => Ok(AccessLogFormat::Combined),
            other => Err(UnknownFormat(other.to_owned())),
        }
    }
}

impl AccessLogFormat {
    /// The format's name, as the flag spells it.
    pub fn name(self) -> &'static str {
        match self {
            AccessLogFormat::Json => "json",
            AccessLogFormat::Combined => "combined",
        }
    }
}

/// Why the access log cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum AccessLogError {
    #[error("cannot open the access log {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the access log writer")]
    Thread(#[source] std::io::Error),
}

enum Message {
    Line(String),
    /// Flush, then say so.
    Flush(SyncSender<()>),
}

/// An open access log: a bounded queue to its writer thread.
#[derive(Debug)]
pub struct AccessLog {
    queue: SyncSender<Message>,
    format: AccessLogFormat,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Line(line) => f.debug_tuple("Line").field(line).finish(),
            Message::Flush(_) => f.write_str("Flush"),
        }
    }
}

/// The request line as an engine has it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Line<'r> {
    /// The raw head (the fast engine): method, target and version are its
    /// first line's three words, read only when a line is logged.
    Raw(&'r [u8]),
    /// Parsed (hyper).
    Parsed {
        method: &'r str,
        target: &'r str,
        version: &'static str,
    },
    /// `method target version`, kept for a line written later.
    Text(&'r str),
}

impl<'r> Line<'r> {
    /// Method, target and version.
    fn parts(self) -> (&'r str, &'r str, &'r str) {
        match self {
            Line::Parsed {
                method,
                target,
                version,
            } => (method, target, version),
            Line::Raw(head) => {
                let end = head
                    .iter()
                    .position(|&b| b == b'\r' || b == b'\n')
                    .unwrap_or(head.len());
                words(std::str::from_utf8(&head[..end]).unwrap_or(""))
            }
            Line::Text(line) => words(line),
        }
    }

    /// The line as [`Line::Text`] holds it.
    fn text(self) -> String {
        let (method, target, version) = self.parts();
        format!("{method} {target} {version}")
    }

    /// Whether the method is HEAD (its answer has no body).
    pub(crate) fn is_head(self) -> bool {
        self.parts().0 == "HEAD"
    }
}

/// A request line's three words.
fn words(line: &str) -> (&str, &str, &str) {
    let mut words = line.split(' ');
    let method = words.next().unwrap_or("");
    let target = words.next().unwrap_or("");
    let version = words.next().unwrap_or("");
    (method, target, version)
}

/// What one access log line says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry<'r> {
    pub at: SystemTime,
    pub client: IpAddr,
    pub line: Line<'r>,
    pub status: u16,
    pub bytes: Option<u64>,
    pub duration: Duration,
    pub replica: Option<&'r str>,
    pub attempts: usize,
    pub key: Option<u64>,
}

#[derive(Serialize)]
struct JsonLine<'a> {
    time: String,
    client: IpAddr,
    method: &'a str,
    target: &'a str,
    version: &'a str,
    status: u16,
    bytes: Option<u64>,
    duration_ms: f64,
    replica: Option<&'a str>,
    attempts: usize,
    key: Option<u64>,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `10/Oct/2000:13:55:36 +0000` (the combined format's `%t`, UTC) from
/// humantime's RFC 3339 rendering (`2000-10-10T13:55:36Z`).
fn clf_time(at: SystemTime) -> String {
    let rfc = humantime::format_rfc3339_seconds(at).to_string();
    let field = |range: std::ops::Range<usize>| rfc.get(range).unwrap_or("");
    let month = field(5..7)
        .parse::<usize>()
        .ok()
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .copied()
        .unwrap_or("Jan");
    format!(
        "{}/{month}/{}:{} +0000",
        field(8..10),
        field(0..4),
        field(11..19)
    )
}

impl Entry<'_> {
    fn format(&self, format: AccessLogFormat) -> String {
        let (method, target, version) = self.line.parts();
        let duration_ms = self.duration.as_secs_f64() * 1e3;
        match format {
            AccessLogFormat::Json => {
                let line = JsonLine {
                    time: humantime::format_rfc3339_micros(self.at).to_string(),
                    client: self.client,
                    method,
                    target,
                    version,
                    status: self.status,
                    bytes: self.bytes,
                    duration_ms,
                    replica: self.replica,
                    attempts: self.attempts,
                    key: self.key,
                };
                // Strings and numbers only: serialising cannot fail.
                let mut text = serde_json::to_string(&line).unwrap_or_default();
                text.push('\n');
                text
            }
            AccessLogFormat::Combined => {
                let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
                // The request line is the client's: quotes and controls
                // escaped, as nginx does.
                let request = format!("{method} {target} {version}")
                    .escape_default()
                    .to_string();
                format!(
                    "{} - - [{}] \"{request}\" {} {} \"-\" \"-\" {duration_ms:.3} {} {} {}\n",
                    self.client,
                    clf_time(self.at),
                    self.status,
                    dash(self.bytes.map(|b| b.to_string())),
                    self.replica.unwrap_or("-"),
                    self.attempts,
                    dash(self.key.map(|k| k.to_string())),
                )
            }
        }
    }
}

/// The line of a forwarded response, written when the response is over
/// ([`crate::completion::Completion`]): everything known at its head.
#[derive(Debug)]
pub(crate) struct PendingLine {
    log: Arc<AccessLog>,
    stats: Arc<Stats>,
    at: SystemTime,
    started: Instant,
    client: IpAddr,
    request_line: String,
    status: u16,
    replica: Option<String>,
    attempts: usize,
    key: Option<u64>,
}

impl PendingLine {
    /// The head-time part of `entry` (its `bytes` and `duration` are
    /// replaced when the line is written), for `log`; `started` is when the
    /// request arrived.
    pub(crate) fn new(
        log: Arc<AccessLog>,
        stats: Arc<Stats>,
        entry: &Entry<'_>,
        started: Instant,
    ) -> PendingLine {
        PendingLine {
            log,
            stats,
            at: entry.at,
            started,
            client: entry.client,
            request_line: entry.line.text(),
            status: entry.status,
            replica: entry.replica.map(str::to_owned),
            attempts: entry.attempts,
            key: entry.key,
        }
    }

    /// Queue the line: `body_bytes` of content reached the client, and the
    /// request took until now; `client_gone`: before any of the response
    /// reached it (status [`CLIENT_CLOSED_STATUS`]).
    pub(crate) fn write(self, body_bytes: u64, client_gone: bool) {
        let entry = Entry {
            at: self.at,
            client: self.client,
            line: Line::Text(&self.request_line),
            status: if client_gone {
                CLIENT_CLOSED_STATUS
            } else {
                self.status
            },
            bytes: Some(body_bytes),
            duration: self.started.elapsed(),
            replica: self.replica.as_deref(),
            attempts: self.attempts,
            key: self.key,
        };
        self.log.record(&self.stats, &entry);
    }
}

impl AccessLog {
    /// Open `target` and start the writer thread.
    ///
    /// # Errors
    /// [`AccessLogError`]: the file cannot be opened for appending, or the
    /// thread cannot start.
    pub fn open(
        target: &AccessLogTarget,
        format: AccessLogFormat,
    ) -> Result<AccessLog, AccessLogError> {
        let out: Box<dyn Write + Send> = match target {
            AccessLogTarget::Stdout => Box::new(std::io::stdout()),
            AccessLogTarget::File(path) => Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| AccessLogError::Open {
                        path: path.clone(),
                        source,
                    })?,
            ),
        };
        let (queue, lines) = std::sync::mpsc::sync_channel(ACCESS_LOG_QUEUE_LINES);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(lines, BufWriter::with_capacity(WRITE_BUFFER_BYTES, out)))
            .map_err(AccessLogError::Thread)?;
        Ok(AccessLog { queue, format })
    }

    /// Queue the line of `entry`, or drop it (counted in `stats`) when the
    /// queue is full. Never blocks.
    pub(crate) fn record(&self, stats: &Stats, entry: &Entry<'_>) {
        let line = entry.format(self.format);
        match self.queue.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                stats.access_log_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Write out what is queued (at shutdown), waiting at most
    /// [`ACCESS_LOG_FLUSH_TIMEOUT`].
    pub fn flush(&self) {
        let (done, finished) = std::sync::mpsc::sync_channel(1);
        if self.queue.send(Message::Flush(done)).is_ok() {
            let _ = finished.recv_timeout(ACCESS_LOG_FLUSH_TIMEOUT);
        }
    }
}

/// The writer thread: every [`ACCESS_LOG_DRAIN_INTERVAL`] it takes every
/// queued line and writes it through `out`'s buffer, which it flushes at
/// least every [`ACCESS_LOG_FLUSH_INTERVAL`]; it ends when every sender is
/// gone. It sleeps rather than waiting on the queue, so a request's
/// `try_send` never has a sleeping thread to wake (a futex wake and a
/// context switch per line, the cost of a first version: 1.5× the CPU per
/// request in `make bench`).
fn write_lines(lines: Receiver<Message>, mut out: BufWriter<Box<dyn Write + Send>>) {
    let mut failing = false;
    let mut report = |result: std::io::Result<()>| match result {
        Ok(()) => failing = false,
        Err(e) => {
            if !failing {
                tracing::error!(error = %e, "cannot write the access log; lines are lost until it works again");
            }
            failing = true;
        }
    };
    let mut flushed = Instant::now();
    loop {
        std::thread::sleep(ACCESS_LOG_DRAIN_INTERVAL);
        loop {
            match lines.try_recv() {
                Ok(Message::Line(line)) => report(out.write_all(line.as_bytes())),
                Ok(Message::Flush(done)) => {
                    report(out.flush());
                    flushed = Instant::now();
                    let _ = done.send(());
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    report(out.flush());
                    return;
                }
            }
        }
        if flushed.elapsed() >= ACCESS_LOG_FLUSH_INTERVAL {
            report(out.flush());
            flushed = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(line: Line<'_>) -> Entry<'_> {
        Entry {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(971_186_136),
            client: IpAddr::from([127, 0, 0, 1]),
            line,
            status: 200,
            bytes: Some(57),
            duration: Duration::from_micros(1500),
            replica: Some("server-1"),
            attempts: 1,
            key: Some(123_456),
        }
    }

    #[test]
    fn combined_lines_are_ncsa_combined_plus_ringlb_fields() {
        let head = b"GET /home?x=1 HTTP/1.1\r\nHost: a\r\n\r\n";
        let text = entry(Line::Raw(head)).format(AccessLogFormat::Combined);
        assert_eq!(
            text,
            "127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] \"GET /home?x=1 HTTP/1.1\" 200 57 \"-\" \"-\" 1.500 server-1 1 123456\n"
        );
        let mut odd = entry(Line::Parsed {
            method: "GET",
            target: "/\"quoted\"",
            version: "HTTP/1.0",
        });
        odd.bytes = None;
        odd.replica = None;
        odd.key = None;
        let text = odd.format(AccessLogFormat::Combined);
        assert!(
            text.contains("\"GET /\\\"quoted\\\" HTTP/1.0\" 200 - \"-\" \"-\" 1.500 - 1 -\n"),
            "{text}"
        );
    }

    #[test]
    fn json_lines_have_every_field() {
        let text = entry(Line::Raw(b"HEAD /home HTTP/1.1\r\n\r\n")).format(AccessLogFormat::Json);
        assert!(text.ends_with('\n'));
        let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(value["time"], "2000-10-10T13:55:36.000000Z");
        assert_eq!(value["client"], "127.0.0.1");
        assert_eq!(value["method"], "HEAD");
        assert_eq!(value["target"], "/home");
        assert_eq!(value["version"], "HTTP/1.1");
        assert_eq!(value["status"], 200);
        assert_eq!(value["bytes"], 57);
        assert_eq!(value["duration_ms"], 1.5);
        assert_eq!(value["replica"], "server-1");
        assert_eq!(value["attempts"], 1);
        assert_eq!(value["key"], 123_456);
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        // A writer that never finishes its first write holds the queue.
        struct Stuck;
        impl Write for Stuck {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                std::thread::sleep(Duration::from_secs(3600));
                Ok(0)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (queue, lines) = std::sync::mpsc::sync_channel(4);
        std::thread::spawn(move || {
            write_lines(lines, BufWriter::with_capacity(1, Box::new(Stuck)))
        });
        let log = AccessLog {
            queue,
            format: AccessLogFormat::Json,
        };
        let stats = Stats::default();
        let started = std::time::Instant::now();
        for _ in 0..100 {
            log.record(&stats, &entry(Line::Raw(b"GET / HTTP/1.1\r\n")));
        }
        assert!(started.elapsed() < Duration::from_secs(5), "never blocks");
        let dropped = stats.access_log_dropped.load(Ordering::Relaxed);
        assert!((90..=96).contains(&dropped), "{dropped} dropped");
    }
}
