//! The ring subscription: a background task that watches the control plane's
//! ring stream, compiles each snapshot and swaps it in, acknowledges the
//! version, and reconnects with exponential backoff and jitter when the
//! stream breaks. The last good table stays in force meanwhile: a data plane
//! never stops routing because the control plane went away.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use ringlb_proto::v1;
use ringlb_proto::v1::control_plane_client::ControlPlaneClient;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

use crate::drain::Draining;
use crate::pool::Pools;
use crate::stats::Stats;
use crate::table::RouteTable;

/// Reconnect backoff: first wait, cap.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long one connection attempt or one ack may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the acknowledgement is repeated while requests to replicas
/// that left the ring are still in flight (graceful drain).
const DRAIN_REPORT_INTERVAL: Duration = Duration::from_millis(50);

/// What the subscription updates.
pub struct Subscription {
    pub endpoint: String,
    pub subscriber: String,
    pub table: Arc<ArcSwapOption<RouteTable>>,
    pub stats: Arc<Stats>,
    pub pools: Arc<Pools>,
    /// The version in force, for embedders and tests.
    pub applied: watch::Sender<u64>,
    /// Replicas that left the ring with requests still in flight.
    pub draining: Draining,
}

impl Subscription {
    /// Run until the task is dropped or aborted.
    pub async fn run(self) {
        let mut backoff = Backoff::default();
        loop {
            match self.stream_once().await {
                Ok(()) => {
                    tracing::warn!(endpoint = %self.endpoint, version = *self.applied.borrow(), "control plane ended the ring stream; serving the last good ring");
                    backoff.reset();
                }
                Err(StreamError { error, received }) => {
                    if received {
                        backoff.reset();
                    }
                    tracing::warn!(endpoint = %self.endpoint, %error, version = *self.applied.borrow(), retry_in = ?backoff.current, "control plane unreachable; serving the last good ring");
                }
            }
            backoff.wait().await;
        }
    }

    /// One connection: stream snapshots until it breaks.
    async fn stream_once(&self) -> Result<(), StreamError> {
        let mut received = false;
        let fail = |error: String, received: bool| StreamError { error, received };
        let endpoint = Endpoint::from_shared(self.endpoint.clone())
            .map_err(|e| fail(e.to_string(), false))?
            .connect_timeout(CALL_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        let channel: Channel = endpoint
            .connect()
            .await
            .map_err(|e| fail(e.to_string(), false))?;
        let mut client = ControlPlaneClient::new(channel);
        let request = v1::WatchRingRequest {
            subscriber: self.subscriber.clone(),
        };
        let mut stream = client
            .watch_ring(request)
            .await
            .map_err(|e| fail(e.message().to_owned(), false))?
            .into_inner();
        loop {
            let message = if self.draining.is_empty() {
                stream.message().await
            } else {
                // Repeat the acknowledgement with what is still in flight to
                // removed replicas until they are drained.
                tokio::select! {
                    message = stream.message() => message,
                    () = tokio::time::sleep(DRAIN_REPORT_INTERVAL) => {
                        let version = *self.applied.borrow();
                        self.ack(&mut client, version).await;
                        continue;
                    }
                }
            };
            let snapshot = match message {
                Ok(Some(snapshot)) => snapshot,
                Ok(None) => return Ok(()),
                Err(status) => return Err(fail(status.message().to_owned(), received)),
            };
            received = true;
            self.apply(&snapshot);
            self.ack(&mut client, snapshot.version).await;
        }
    }

    /// Tell the control plane the version in force and the requests still
    /// in flight to replicas that left the ring.
    async fn ack(&self, client: &mut ControlPlaneClient<Channel>, version: u64) {
        let ack = v1::AckRingRequest {
            subscriber: self.subscriber.clone(),
            version,
            draining: self.draining.report(),
        };
        match tokio::time::timeout(CALL_TIMEOUT, client.ack_ring(ack)).await {
            Ok(Ok(_)) => {}
            Ok(Err(status)) => tracing::debug!(error = %status.message(), "ring ack refused"),
            Err(_) => tracing::debug!("ring ack timed out"),
        }
    }

    fn apply(&self, snapshot: &v1::RingSnapshot) {
        match RouteTable::from_snapshot(snapshot, &self.stats, &self.pools) {
            Ok(table) => {
                let names: Vec<&str> = table.upstreams.iter().map(|u| u.name.as_str()).collect();
                tracing::info!(version = table.version, replicas = ?names, "ring version applied");
                let version = table.version;
                let previous = self.table.load_full();
                self.draining.update(previous.as_deref(), &table);
                self.table.store(Some(Arc::new(table)));
                self.stats.ring_version.store(version, Ordering::Relaxed);
                self.applied.send_replace(version);
            }
            Err(e) => {
                tracing::error!(error = %e, "ignoring an unusable ring snapshot; keeping the last good one")
            }
        }
    }
}

struct StreamError {
    error: String,
    /// Whether the stream delivered anything before failing (then the
    /// backoff starts over).
    received: bool,
}

/// Full jitter on the upper half: a wait in [d/2, d].
/// Exponential backoff with jitter between reconnection attempts: waits
/// between half and all of the current delay, which doubles from
/// [`BACKOFF_MIN`] up to [`BACKOFF_MAX`] and starts over after a success
/// (so that data planes that lost the same control plane do not come back
/// in step).
#[derive(Debug)]
struct Backoff {
    current: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            current: BACKOFF_MIN,
        }
    }
}

impl Backoff {
    /// Sleep for the jittered current delay, then double it (capped).
    async fn wait(&mut self) {
        tokio::time::sleep(jitter(self.current)).await;
        self.current = (self.current * 2).min(BACKOFF_MAX);
    }

    /// Back to the shortest delay.
    fn reset(&mut self) {
        self.current = BACKOFF_MIN;
    }
}

fn jitter(d: Duration) -> Duration {
    let half = d / 2;
    half + half.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On the paused clock: each wait lasts between half and all of a delay
    /// that doubles from the minimum to the cap, and a reset starts over.
    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_to_the_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::default();
        let mut expected = BACKOFF_MIN;
        for _ in 0..10 {
            let started = tokio::time::Instant::now();
            backoff.wait().await;
            let waited = started.elapsed();
            assert!(
                waited >= expected / 2 && waited <= expected,
                "{waited:?} outside [{:?}, {expected:?}]",
                expected / 2
            );
            expected = (expected * 2).min(BACKOFF_MAX);
        }
        assert_eq!(backoff.current, BACKOFF_MAX, "capped");
        backoff.reset();
        let started = tokio::time::Instant::now();
        backoff.wait().await;
        assert!(started.elapsed() <= BACKOFF_MIN);
    }

    #[test]
    fn jitter_stays_within_half_and_whole() {
        for _ in 0..1000 {
            let j = jitter(Duration::from_millis(800));
            assert!(
                j >= Duration::from_millis(400) && j <= Duration::from_millis(800),
                "{j:?}"
            );
        }
    }
}
