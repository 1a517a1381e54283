//! Reading a data plane's Prometheus `/metrics`: the counters and gauges
//! task A-5 needs (bounded-load spills, requests and in-flight requests per
//! replica).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::client::Client;

/// Requests sent past their owner at the `hash_balance_factor` bound.
pub const SPILLS: &str = "ringlb_bounded_load_spills_total";
/// Requests forwarded, by replica.
pub const UPSTREAM_REQUESTS: &str = "ringlb_upstream_requests_total";
/// Attempts awaiting their response head, by replica (what the bound counts).
pub const UPSTREAM_IN_FLIGHT: &str = "ringlb_upstream_in_flight";

/// Why a `/metrics` text lacks what A-5 reads.
#[derive(Debug, PartialEq, Eq)]
pub enum MetricsError {
    /// The metric is not in the text (an older data plane, or a typo).
    Missing(&'static str),
    /// A sample's value is not a number.
    BadValue { line: String },
}

impl std::fmt::Display for MetricsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricsError::Missing(name) => write!(f, "/metrics has no {name}"),
            MetricsError::BadValue { line } => write!(f, "/metrics: not a number in {line:?}"),
        }
    }
}

impl std::error::Error for MetricsError {}

/// The samples of one scrape that A-5 reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scrape {
    pub spills: u64,
    pub requests: BTreeMap<String, u64>,
    pub in_flight: BTreeMap<String, u64>,
}

/// One sample line: the metric name, its `replica` label if any, the value.
fn sample(line: &str) -> Option<(&str, Option<&str>, &str)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    match series.split_once('{') {
        None => Some((series, None, value)),
        Some((name, labels)) => {
            let replica = labels
                .trim_end_matches('}')
                .split(',')
                .find_map(|l| l.strip_prefix("replica=\""))
                .map(|v| v.trim_end_matches('"'));
            Some((name, replica, value))
        }
    }
}

/// Parse the metrics A-5 reads out of Prometheus text.
pub fn parse(text: &str) -> Result<Scrape, MetricsError> {
    let mut scrape = Scrape::default();
    let mut spills = None;
    for line in text.lines() {
        let Some((name, replica, value)) = sample(line) else {
            continue;
        };
        if name != SPILLS && name != UPSTREAM_REQUESTS && name != UPSTREAM_IN_FLIGHT {
            continue;
        }
        // Counters and gauges here are integers; a float form is tolerated.
        let value = value
            .parse::<u64>()
            .ok()
            .or_else(|| {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|v| *v >= 0.0)
                    .map(|v| v as u64)
            })
            .ok_or_else(|| MetricsError::BadValue {
                line: line.to_owned(),
            })?;
        match (name, replica) {
            (SPILLS, _) => spills = Some(value),
            (UPSTREAM_REQUESTS, Some(r)) => {
                scrape.requests.insert(r.to_owned(), value);
            }
            (UPSTREAM_IN_FLIGHT, Some(r)) => {
                scrape.in_flight.insert(r.to_owned(), value);
            }
            _ => {}
        }
    }
    scrape.spills = spills.ok_or(MetricsError::Missing(SPILLS))?;
    Ok(scrape)
}

/// Scrape `addr`'s `/metrics` once.
pub async fn scrape(client: &Client, addr: &str) -> anyhow::Result<Scrape> {
    Ok(parse(&client.metrics(addr).await?)?)
}

/// Scrapes taken every `interval` until [`Sampler::stop`].
pub struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Scrape>>,
}

impl Sampler {
    pub fn start(client: &Client, addr: &str, interval: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let (client, addr, flag) = (client.clone(), addr.to_owned(), stop.clone());
        let task = tokio::spawn(async move {
            let mut scrapes = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match scrape(&client, &addr).await {
                    Ok(s) => scrapes.push(s),
                    Err(e) => tracing::debug!(error = %e, "a /metrics sample failed"),
                }
                tokio::time::sleep(interval).await;
            }
            scrapes
        });
        Sampler { stop, task }
    }

    /// Stop sampling; every scrape taken, in order.
    pub async fn stop(self) -> Vec<Scrape> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP ringlb_bounded_load_spills_total Requests sent past their owner.
# TYPE ringlb_bounded_load_spills_total counter
ringlb_bounded_load_spills_total 17
ringlb_upstream_requests_total{replica=\"server-1\"} 300
ringlb_upstream_requests_total{replica=\"server-2\"} 41
ringlb_upstream_in_flight{replica=\"server-1\"} 12
ringlb_upstream_in_flight{replica=\"server-2\"} 0
ringlb_upstream_response_seconds_bucket{replica=\"server-1\",le=\"0.001\"} 250
";

    #[test]
    fn reads_spills_requests_and_in_flight() {
        let s = parse(TEXT).expect("parses");
        assert_eq!(s.spills, 17);
        assert_eq!(s.requests.get("server-1"), Some(&300));
        assert_eq!(s.requests.get("server-2"), Some(&41));
        assert_eq!(s.in_flight.get("server-1"), Some(&12));
        assert_eq!(s.in_flight.get("server-2"), Some(&0));
    }

    #[test]
    fn errors_are_typed() {
        assert_eq!(
            parse("ringlb_upstream_in_flight{replica=\"a\"} 1\n"),
            Err(MetricsError::Missing(SPILLS))
        );
        assert!(matches!(
            parse("ringlb_bounded_load_spills_total many\n"),
            Err(MetricsError::BadValue { .. })
        ));
    }
}
