//! Protocol switches (RFC 9110 §7.8, e.g. WebSocket): once the replica
//! answered 101 and hyper sent it on, the client connection and the replica
//! connection become one byte tunnel, both ways, until either side closes.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::balance::InFlight;

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
/// limit, until either side closes. The request counts as in flight on the
/// replica (`in_flight`) until then, so a graceful drain waits for the
/// tunnel (up to the drain timeout).
pub(crate) fn tunnel(switch: Switch, in_flight: InFlight) {
    tokio::spawn(async move {
        let _in_flight = in_flight;
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
            Ok((up, down)) => tracing::debug!(up, down, "tunnel closed"),
            Err(e) => tracing::debug!(error = %e, "tunnel ended with an error"),
        }
    });
}
