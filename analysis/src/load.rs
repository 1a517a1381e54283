//! Load generation: a fixed number of asynchronous `GET /home` requests with
//! bounded concurrency, and a steady stream that records a timeline.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::client::Client;

/// What a burst of requests did.
#[derive(Clone, Debug, Default)]
pub struct Burst {
    /// Requests answered by each replica.
    pub counts: BTreeMap<String, u64>,
    pub failed: u64,
    pub elapsed: Duration,
}

impl Burst {
    /// Counts in the order of `replicas`, 0 for a replica that got nothing.
    pub fn counts_for(&self, replicas: &[String]) -> Vec<u64> {
        replicas
            .iter()
            .map(|r| self.counts.get(r).copied().unwrap_or(0))
            .collect()
    }
}

/// A progress bar for `total` requests labelled `what`.
pub fn progress(total: u64, what: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>28} [{bar:32}] {pos:>6}/{len} {per_sec:>12} {elapsed}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(what.to_owned());
    bar
}

/// `requests` `GET /home`, at most `concurrency` in flight.
pub async fn burst(client: &Client, requests: u64, concurrency: usize, bar: &ProgressBar) -> Burst {
    let started = Instant::now();
    let mut out = Burst::default();
    let mut answers = futures::stream::iter(0..requests)
        .map(|_| {
            let client = client.clone();
            async move { client.home().await }
        })
        .buffer_unordered(concurrency.max(1));
    while let Some(answer) = answers.next().await {
        match answer {
            Ok(replica) => *out.counts.entry(replica).or_default() += 1,
            Err(e) => {
                tracing::debug!(error = %e, "request failed");
                out.failed += 1;
            }
        }
        bar.inc(1);
    }
    bar.finish();
    out.elapsed = started.elapsed();
    out
}

/// One request of a steady stream: when it completed and who answered.
#[derive(Clone, Debug)]
pub struct Event {
    /// Milliseconds since the stream started.
    pub at_ms: f64,
    /// The replica, or `None` for a failed request.
    pub replica: Option<String>,
}

/// A steady stream of `/home` requests from `workers` clients, each pausing
/// `pause` between requests, until [`Stream::stop`] (or `limit` passes).
pub struct Stream {
    stop: Arc<AtomicBool>,
    started: Instant,
    workers: Vec<tokio::task::JoinHandle<Vec<Event>>>,
}

impl Stream {
    pub fn start(client: &Client, workers: usize, pause: Duration, limit: Duration) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let workers = (0..workers)
            .map(|_| {
                let (client, stop) = (client.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut events = Vec::new();
                    while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
                        let replica = client.home().await.ok();
                        events.push(Event {
                            at_ms: started.elapsed().as_secs_f64() * 1000.0,
                            replica,
                        });
                        tokio::time::sleep(pause).await;
                    }
                    events
                })
            })
            .collect();
        Stream {
            stop,
            started,
            workers,
        }
    }

    /// Milliseconds since the stream started.
    pub fn now_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    /// Stop and return every event, in time order.
    pub async fn stop(self) -> Vec<Event> {
        self.stop.store(true, Ordering::Relaxed);
        let mut events = Vec::new();
        for worker in self.workers {
            if let Ok(mut e) = worker.await {
                events.append(&mut e);
            }
        }
        events.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
        events
    }
}

/// One request of a keyed burst.
#[derive(Clone, Debug)]
pub struct Keyed {
    /// Whether it carried the hot key.
    pub hot: bool,
    /// The replica that answered, or `None` for a failed request.
    pub replica: Option<String>,
    /// From sending it until its whole answer was read.
    pub ms: f64,
}

/// One `GET /home` per `(X-Request-ID, hot)` of `ids`, at most
/// `concurrency` in flight; each timed. Returns the requests in completion
/// order and how long the whole burst took.
pub async fn keyed_burst(
    client: &Client,
    ids: &[(u64, bool)],
    concurrency: usize,
    bar: &ProgressBar,
) -> (Vec<Keyed>, Duration) {
    let started = Instant::now();
    let mut out = Vec::with_capacity(ids.len());
    let mut answers = futures::stream::iter(ids.iter().copied())
        .map(|(id, hot)| {
            let client = client.clone();
            async move {
                let sent = Instant::now();
                let answer = client.home_keyed(id).await;
                let ms = sent.elapsed().as_secs_f64() * 1000.0;
                let replica = match answer {
                    Ok(replica) => Some(replica),
                    Err(e) => {
                        tracing::debug!(error = %e, "request failed");
                        None
                    }
                };
                Keyed { hot, replica, ms }
            }
        })
        .buffer_unordered(concurrency.max(1));
    while let Some(answer) = answers.next().await {
        out.push(answer);
        bar.inc(1);
    }
    bar.finish();
    (out, started.elapsed())
}
