//! The ring subscription: a background task that watches a control plane's
//! ring stream, compiles each snapshot and swaps it in, acknowledges the
//! version, and reconnects with exponential backoff and jitter when the
//! stream breaks. The last good table stays in force meanwhile: a data plane
//! never stops routing because the control plane went away.
//!
//! **Several control planes.** Given a list of gRPC endpoints, it follows
//! one at a time and cycles to the next on any failure (cannot connect, the
//! stream breaks or ends, or it offers an older ring), as Envoy cycles
//! through the `grpc_services` of an `ApiConfigSource`. The index of the
//! control plane that delivered the ring in force is published, so that
//! admin requests go to that control plane's HTTP API.
//!
//! **Order.** Snapshots are ordered by (epoch, version)
//! ([`RingVersion`]); one is applied only if it is newer than the ring in
//! force, so a reconnection (to another control plane, or to a restarted
//! one that forgot its history) never takes the data plane back to an
//! older ring. When it subscribes, the data plane reports the epoch it
//! serves, and a control plane whose epoch is lower (its clock went
//! backwards) raises its own above it, so a legitimately newer control
//! plane is not refused in the first place. Should a data plane still meet
//! only older rings (a control plane that does not raise its epoch, or
//! two sharing one), it refuses them for [`STALE_RING_GRACE`], cycling
//! through its list in search of the control plane that produced the ring
//! in force, and then follows the one it reaches: a data plane is never
//! stuck for good on a ring whose control plane is gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use ringlb_proto::RingVersion;
use ringlb_proto::v1;
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::auth::{Bearer, Client};
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
/// How long a data plane refuses rings older than the one in force before
/// it follows the control plane it reaches anyway: several reconnection
/// rounds at the capped backoff, time to find the control plane that
/// produced the ring in force if it is still in the list and up.
pub const STALE_RING_GRACE: Duration = Duration::from_secs(30);

/// What the subscription updates.
pub struct Subscription {
    /// The control planes' gRPC endpoints, in the order they are tried.
    pub endpoints: Vec<Endpoint>,
    pub subscriber: String,
    pub table: Arc<ArcSwapOption<RouteTable>>,
    pub stats: Arc<Stats>,
    pub pools: Arc<Pools>,
    /// The ring in force, for embedders and tests.
    pub applied: watch::Sender<RingVersion>,
    /// Replicas that left the ring with requests still in flight.
    pub draining: Draining,
    /// Index in `endpoints` of the control plane that delivered the ring in
    /// force (0 until one did).
    pub current: Arc<AtomicUsize>,
    /// The admin token sent with every call, if the control plane wants one.
    pub bearer: Bearer,
}

/// What becomes of an offered snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Newer than the ring in force (or the first): apply it.
    Apply,
    /// The ring in force (a reconnection): acknowledge it, nothing else.
    Current,
    /// Older than the ring in force: keep ours and try the next control
    /// plane.
    Refuse,
    /// Older, but older ones were refused for [`STALE_RING_GRACE`]: follow
    /// it.
    ApplyStale,
}

/// The order the subscription keeps: the ring in force and since when
/// older ones are being refused.
#[derive(Debug, Default)]
pub struct Order {
    held: Option<RingVersion>,
    refusing_since: Option<Instant>,
}

impl Order {
    /// The ring in force, if any.
    pub fn held(&self) -> Option<RingVersion> {
        self.held
    }

    /// Judge a snapshot offered at `now`.
    pub fn judge(&mut self, offered: RingVersion, now: Instant) -> Verdict {
        let Some(held) = self.held else {
            return Verdict::Apply;
        };
        if offered > held {
            self.refusing_since = None;
            Verdict::Apply
        } else if offered == held {
            self.refusing_since = None;
            Verdict::Current
        } else {
            let since = *self.refusing_since.get_or_insert(now);
            if now.duration_since(since) >= STALE_RING_GRACE {
                Verdict::ApplyStale
            } else {
                Verdict::Refuse
            }
        }
    }

    /// `applied` is now the ring in force.
    pub fn applied(&mut self, applied: RingVersion) {
        self.held = Some(applied);
        self.refusing_since = None;
    }
}

impl Subscription {
    /// Run until the task is dropped or aborted.
    pub async fn run(self) {
        let mut backoff = Backoff::default();
        let mut order = Order::default();
        let mut next = 0;
        loop {
            let index = next % self.endpoints.len().max(1);
            let Some(endpoint) = self.endpoints.get(index) else {
                tracing::error!("no control plane endpoint to watch");
                return;
            };
            let uri = endpoint.uri();
            let held = order.held().unwrap_or_default();
            match self.stream_once(endpoint, index, &mut order).await {
                Ok(()) => {
                    tracing::warn!(endpoint = %uri, ring = %held, "control plane ended the ring stream; serving the last good ring");
                    backoff.reset();
                }
                Err(StreamError { error, received }) => {
                    if received {
                        backoff.reset();
                    }
                    tracing::warn!(endpoint = %uri, %error, ring = %held, retry_in = ?backoff.current, "control plane unavailable; serving the last good ring");
                }
            }
            if self.endpoints.len() > 1 {
                next = index + 1;
            }
            backoff.wait().await;
        }
    }

    /// One connection to control plane `index`: stream snapshots until it
    /// breaks, ends, or offers an older ring.
    async fn stream_once(
        &self,
        endpoint: &Endpoint,
        index: usize,
        order: &mut Order,
    ) -> Result<(), StreamError> {
        let mut received = false;
        let fail = |error: String, received: bool| StreamError { error, received };
        let endpoint = endpoint
            .clone()
            .connect_timeout(CALL_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        let channel: Channel = endpoint
            .connect()
            .await
            .map_err(|e| fail(e.to_string(), false))?;
        let mut client = self.bearer.client(channel);
        let request = v1::WatchRingRequest {
            subscriber: self.subscriber.clone(),
            epoch: order.held().map_or(0, |held| held.epoch),
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
                        let version = self.applied.borrow().version;
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
            let offered = snapshot.ring_version();
            match order.judge(offered, Instant::now()) {
                Verdict::Apply => {
                    if !self.apply(&snapshot, order, None).await {
                        continue;
                    }
                }
                Verdict::ApplyStale => {
                    let held = order.held().unwrap_or_default();
                    if !self.apply(&snapshot, order, Some(held)).await {
                        continue;
                    }
                }
                Verdict::Current => {}
                Verdict::Refuse => {
                    self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    let held = order.held().unwrap_or_default();
                    return Err(fail(
                        format!(
                            "offered ring {offered}, older than the ring in force, {held}; refused"
                        ),
                        received,
                    ));
                }
            }
            received = true;
            self.current.store(index, Ordering::Relaxed);
            self.ack(&mut client, snapshot.version).await;
        }
    }

    /// Tell the control plane the version in force and the requests still
    /// in flight to replicas that left the ring.
    async fn ack(&self, client: &mut Client, version: u64) {
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

    /// Compile and swap in `snapshot`; whether it could be used. `stale`:
    /// the newer ring it replaces after the grace, for the log. The table
    /// is compiled on a blocking thread: a large ring (millions of virtual
    /// nodes and slots) takes long to build, and the requests of this
    /// runtime keep being served by the ring in force meanwhile.
    async fn apply(
        &self,
        snapshot: &v1::RingSnapshot,
        order: &mut Order,
        stale: Option<RingVersion>,
    ) -> bool {
        let (owned, stats, pools) = (snapshot.clone(), self.stats.clone(), self.pools.clone());
        let built =
            tokio::task::spawn_blocking(move || RouteTable::from_snapshot(&owned, &stats, &pools))
                .await;
        let built = match built {
            Ok(built) => built,
            Err(e) => {
                tracing::error!(error = %e, "building the routing table failed; keeping the last good one");
                return false;
            }
        };
        match built {
            Ok(table) => {
                let names: Vec<&str> = table.upstreams.iter().map(|u| u.name.as_str()).collect();
                let ring = table.version;
                match stale {
                    None => tracing::info!(%ring, replicas = ?names, "ring applied"),
                    Some(held) => {
                        tracing::warn!(%ring, replaces = %held, grace = ?STALE_RING_GRACE, replicas = ?names, "older rings refused for the whole grace period: following this control plane's ring")
                    }
                }
                let previous = self.table.load_full();
                self.draining.update(previous.as_deref(), &table);
                self.table.store(Some(Arc::new(table)));
                self.stats
                    .ring_version
                    .store(ring.version, Ordering::Relaxed);
                self.stats.ring_epoch.store(ring.epoch, Ordering::Relaxed);
                order.applied(ring);
                self.applied.send_replace(ring);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "ignoring an unusable ring snapshot; keeping the last good one");
                false
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

    fn at(epoch: u64, version: u64) -> RingVersion {
        RingVersion { epoch, version }
    }

    /// Having seen (E, 10): (E, 3) and any older epoch are refused, (E, 10)
    /// is the ring in force, a newer epoch from version 1 is applied.
    #[test]
    fn applies_only_newer_rings() {
        let now = Instant::now();
        let mut order = Order::default();
        assert_eq!(
            order.judge(at(500, 1), now),
            Verdict::Apply,
            "the first ring"
        );
        order.applied(at(500, 1));
        assert_eq!(order.judge(at(500, 10), now), Verdict::Apply);
        order.applied(at(500, 10));
        assert_eq!(order.judge(at(500, 3), now), Verdict::Refuse);
        assert_eq!(
            order.judge(at(499, 99), now),
            Verdict::Refuse,
            "older epoch"
        );
        assert_eq!(order.judge(at(0, 11), now), Verdict::Refuse, "no epoch");
        assert_eq!(order.judge(at(500, 10), now), Verdict::Current);
        assert_eq!(order.judge(at(501, 1), now), Verdict::Apply, "restarted");
        order.applied(at(501, 1));
        assert_eq!(order.held(), Some(at(501, 1)));
    }

    /// Older rings are refused for the grace period from the first refusal,
    /// then followed; any newer or current ring meanwhile starts it over.
    #[test]
    fn follows_an_older_ring_only_after_the_grace() {
        let start = Instant::now();
        let mut order = Order::default();
        order.applied(at(500, 10));
        assert_eq!(order.judge(at(400, 1), start), Verdict::Refuse);
        let almost = start + STALE_RING_GRACE - Duration::from_millis(1);
        assert_eq!(order.judge(at(400, 2), almost), Verdict::Refuse);
        // The ring in force is offered again (its control plane is back):
        // the clock starts over.
        assert_eq!(order.judge(at(500, 10), almost), Verdict::Current);
        let later = start + STALE_RING_GRACE;
        assert_eq!(order.judge(at(400, 2), later), Verdict::Refuse);
        let after = later + STALE_RING_GRACE;
        assert_eq!(order.judge(at(400, 3), after), Verdict::ApplyStale);
        order.applied(at(400, 3));
        assert_eq!(
            order.judge(at(400, 2), after),
            Verdict::Refuse,
            "ordered anew"
        );
    }

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
