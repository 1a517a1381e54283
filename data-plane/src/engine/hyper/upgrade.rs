//! Protocol switches (RFC 9110 §7.8, e.g. WebSocket): once the replica
//! answered 101 and hyper sent it on, the client connection and the replica
//! connection become one byte tunnel, both ways, until either side closes.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// Join the client's and the replica's connections once both have switched;
/// runs on a task of its own, not counted against the client connection
/// limit, until either side closes.
pub(crate) fn tunnel(client: OnUpgrade, replica: OnUpgrade) {
    tokio::spawn(async move {
        let (client, replica) = match tokio::try_join!(client, replica) {
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
