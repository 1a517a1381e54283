//! What ends with a forwarded response rather than with its head: the
//! request's place in its replica's in-flight count, and its access log
//! line, written with the body bytes forwarded and the time until then.
//!
//! The driver fills a [`Completion`] when an attempt brings back a response
//! to forward; the engine keeps it with the response until the body has
//! been relayed to its end (or the relay stopped), or hands it to the tunnel
//! of a protocol switch; dropping it completes the request.

use crate::access_log::PendingLine;
use crate::balance::InFlight;

/// A forwarded request until its response is over; see the module doc.
#[derive(Debug, Default)]
pub(crate) struct Completion {
    in_flight: Option<InFlight>,
    log: Option<PendingLine>,
    body_bytes: u64,
    /// The response stopped before its end, the client gone.
    abandoned: bool,
}

impl Completion {
    /// Count the request in flight until the completion is dropped.
    pub(crate) fn count_in_flight(&mut self, in_flight: InFlight) {
        self.in_flight = Some(in_flight);
    }

    /// Write `line` when the completion is dropped.
    pub(crate) fn log_when_done(&mut self, line: PendingLine) {
        self.log = Some(line);
    }

    /// `n` more bytes of the response body (its content: without chunk
    /// framing) reached the client.
    pub(crate) fn sent(&mut self, n: u64) {
        self.body_bytes += n;
    }

    /// The client went away before the response was over: logged as 499
    /// (nginx's convention) when none of it reached the client.
    pub(crate) fn abandoned(&mut self) {
        self.abandoned = true;
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        drop(self.in_flight.take());
        if let Some(line) = self.log.take() {
            line.write(self.body_bytes, self.abandoned && self.body_bytes == 0);
        }
    }
}
