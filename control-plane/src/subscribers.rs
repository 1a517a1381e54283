//! The data planes watching the ring, the versions they applied and the
//! requests they still have in flight to replicas that left the ring, so a
//! change can wait until every connected data plane serves it, and `/rm`
//! until they drained the removed replicas.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::Notify;

#[derive(Clone, Debug)]
struct Entry {
    /// Which registration (a data plane that reconnects gets a new one).
    generation: u64,
    applied: u64,
    /// Requests in flight to replicas no longer on its ring, by name, as of
    /// its last acknowledgement.
    draining: Vec<(String, u64)>,
}

/// Connected subscribers and their applied versions.
#[derive(Default)]
pub struct Subscribers {
    entries: DashMap<String, Entry>,
    generations: AtomicU64,
    changed: Notify,
}

/// Removes its subscriber when dropped (the watch stream ended).
pub struct Registration {
    subscribers: Arc<Subscribers>,
    id: String,
    generation: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let removed = self
            .subscribers
            .entries
            .remove_if(&self.id, |_, e| e.generation == self.generation);
        if removed.is_some() {
            tracing::info!(subscriber = %self.id, "data plane disconnected");
            self.subscribers.changed.notify_waiters();
        }
    }
}

impl Subscribers {
    /// A data plane started watching.
    pub fn register(self: &Arc<Self>, id: &str) -> Registration {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        self.entries.insert(
            id.to_owned(),
            Entry {
                generation,
                applied: 0,
                draining: Vec::new(),
            },
        );
        tracing::info!(subscriber = %id, "data plane connected");
        Registration {
            subscribers: self.clone(),
            id: id.to_owned(),
            generation,
        }
    }

    /// A data plane reports the version it now serves and what it still has
    /// in flight to replicas that left its ring (`(name, requests)`).
    /// Unknown ids (not watching) are ignored.
    pub fn ack(&self, id: &str, version: u64, draining: Vec<(String, u64)>) {
        if let Some(mut entry) = self.entries.get_mut(id) {
            entry.applied = entry.applied.max(version);
            entry.draining = draining;
            drop(entry);
            tracing::debug!(subscriber = %id, version, "data plane applied ring version");
            self.changed.notify_waiters();
        }
    }

    /// Ids of the connected subscribers that have not applied `version`.
    pub fn lagging(&self, version: u64) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.applied < version)
            .map(|e| e.key().clone())
            .collect()
    }

    /// Ids of the connected subscribers with requests in flight to any of
    /// `replicas`.
    pub fn draining(&self, replicas: &[String]) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| {
                e.draining
                    .iter()
                    .any(|(name, n)| *n > 0 && replicas.contains(name))
            })
            .map(|e| e.key().clone())
            .collect()
    }

    /// Wait until no connected subscriber has a request in flight to any
    /// of `replicas`, at most `within` (graceful drain on `/rm`).
    ///
    /// # Errors
    /// On timeout, the ids of the subscribers still draining.
    pub async fn drained(&self, replicas: &[String], within: Duration) -> Result<(), Vec<String>> {
        self.wait_until(within, || self.draining(replicas)).await
    }

    /// Every connected subscriber and the version it applied, by id.
    pub fn applied(&self) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self
            .entries
            .iter()
            .map(|e| (e.key().clone(), e.applied))
            .collect();
        all.sort();
        all
    }

    /// How many subscribers are connected.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Wait until every connected subscriber applied `version`, at most
    /// `within`.
    ///
    /// # Errors
    /// On timeout, the ids of the subscribers still behind.
    pub async fn converged(&self, version: u64, within: Duration) -> Result<(), Vec<String>> {
        self.wait_until(within, || self.lagging(version)).await
    }

    /// Wait until `behind` names nobody, at most `within`; it is asked
    /// again at every change.
    async fn wait_until(
        &self,
        within: Duration,
        behind: impl Fn() -> Vec<String>,
    ) -> Result<(), Vec<String>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if behind().is_empty() {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let behind = behind();
                return if behind.is_empty() {
                    Ok(())
                } else {
                    Err(behind)
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_for_every_connected_subscriber() {
        let subs = Arc::new(Subscribers::default());
        let a = subs.register("a");
        let _b = subs.register("b");
        subs.ack("a", 3, Vec::new());
        let waiter = {
            let subs = subs.clone();
            tokio::spawn(async move { subs.converged(3, Duration::from_secs(2)).await })
        };
        tokio::task::yield_now().await;
        subs.ack("b", 3, Vec::new());
        assert_eq!(waiter.await.expect("joins"), Ok(()));

        // A disconnected subscriber is no longer waited for.
        let mut lagging = subs
            .converged(4, Duration::from_millis(100))
            .await
            .expect_err("nobody applied 4");
        lagging.sort();
        assert_eq!(lagging, ["a", "b"]);
        drop(a);
        subs.ack("b", 4, Vec::new());
        assert_eq!(subs.converged(4, Duration::from_millis(100)).await, Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn drained_waits_for_in_flight_requests_to_removed_replicas() {
        let subs = Arc::new(Subscribers::default());
        let _a = subs.register("a");
        let _b = subs.register("b");
        subs.ack("a", 2, vec![("S1".into(), 2), ("S9".into(), 0)]);
        subs.ack("b", 2, vec![("S2".into(), 1)]);
        let gone = ["S1".to_string()];
        assert_eq!(
            subs.drained(&gone, Duration::from_millis(100)).await,
            Err(vec!["a".to_string()])
        );
        let waiter = {
            let subs = subs.clone();
            tokio::spawn(async move {
                subs.drained(&["S1".to_string()], Duration::from_secs(5))
                    .await
            })
        };
        tokio::task::yield_now().await;
        subs.ack("a", 2, vec![]);
        assert_eq!(waiter.await.expect("joins"), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_naming_the_laggards() {
        let subs = Arc::new(Subscribers::default());
        let _slow = subs.register("slow");
        assert_eq!(
            subs.converged(1, Duration::from_secs(1)).await,
            Err(vec!["slow".to_string()])
        );
        // A reconnect replaces the entry; the old registration's drop must not remove it.
        let old = subs.register("dp");
        let _new = subs.register("dp");
        drop(old);
        assert_eq!(subs.lagging(1).len(), 2);
    }
}
