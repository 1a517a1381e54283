//! Protocol switches (RFC 9110 §7.8, e.g. WebSocket): once the replica
//! answered 101 and hyper sent it on, the client connection and the replica
//! connection become one byte tunnel, both ways, until either side closes.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::completion::Completion;

/// Both sides of a protocol switch the replica accepted, not yet joined.
#[derive(Debug)]
pub struct Switch {
    /// The client's side (completes once hyper has sent it the 101).
    pub client: OnUpgrade,
    /// The replica's side.
    pub replica: OnUpgrade,
}

/// Join the client's and the replica's connections once both have switched;
/// runs on a task of its own, not counted against the client connection
/// limit, until either side closes. The request is complete
/// (`completion`) only then: it counts as in flight on the replica, so a
/// graceful drain waits for the tunnel (up to the drain timeout), and its
/// access log line counts the bytes the tunnel carried to the client.
pub(crate) fn tunnel(switch: Switch, mut completion: Completion) {
    tokio::spawn(async move {
        let (client, replica) = match tokio::try_join!(switch.client, switch.replica) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(error = %e, "protocol switch did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut replica = TokioIo::new(replica);
        match tokio::io::copy_bidirectional(&mut client, &mut replica).await {
            Ok((up, down)) => {
                tracing::debug!(up, down, "tunnel closed");
                completion.sent(down);
            }
            Err(e) => tracing::debug!(error = %e, "tunnel ended with an error"),
        }
    });
}
