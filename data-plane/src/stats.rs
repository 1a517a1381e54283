//! Counters for `/metrics`: per-replica requests and errors in a concurrent
//! map (replicas come and go), plus data-plane-wide outcomes. The request
//! path never touches the map: each routing-table entry holds its replica's
//! counters directly.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// Upper bounds of the latency buckets, in microseconds (250 µs … 10 s).
const BUCKETS_US: [u64; 14] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 10_000_000,
];

/// A Prometheus histogram of durations: a few relaxed atomic adds per
/// observation, no lock.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative; rendering sums them).
    buckets: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = BUCKETS_US.iter().position(|&bound| us <= bound) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The `_bucket`, `_sum` and `_count` lines of `name` with `labels`.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS_US.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = *bound as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Counters and balancing state of one replica.
#[derive(Debug)]
pub struct UpstreamStats {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    /// From a request's arrival until the response head came back from
    /// this replica (failover included).
    pub latency: Histogram,
    /// Requests sent to it whose response has not been forwarded whole yet
    /// (body or protocol-switch tunnel included).
    pub in_flight: AtomicU64,
    /// Outlier detection: failures in a row, and how often it was ejected.
    pub consecutive_failures: AtomicU32,
    pub ejections: AtomicU32,
    /// Outlier detection: ejected until this time ([`Stats::now_ms`]).
    pub ejected_until_ms: AtomicU64,
    /// Slow start: when this data plane first routed to it
    /// ([`Stats::now_ms`]; 0: in the first ring applied, never slow;
    /// [`NOT_JOINED`] until a ring holds it).
    pub joined_ms: AtomicU64,
}

/// [`UpstreamStats::joined_ms`] of a replica no ring has held yet.
pub const NOT_JOINED: u64 = u64::MAX;

impl Default for UpstreamStats {
    fn default() -> Self {
        UpstreamStats {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: Histogram::default(),
            in_flight: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            joined_ms: AtomicU64::new(NOT_JOINED),
        }
    }
}

/// The start of a data plane's clock for balancing state.
#[derive(Debug)]
struct Epoch(Instant);

impl Default for Epoch {
    fn default() -> Self {
        Epoch(Instant::now())
    }
}

/// Every counter of a data plane.
#[derive(Debug, Default)]
pub struct Stats {
    upstreams: DashMap<String, Arc<UpstreamStats>>,
    /// Requests answered 503 (no replica on the ring).
    pub no_replica: AtomicU64,
    /// Requests answered 502 (no replica reachable).
    pub unreachable: AtomicU64,
    /// Attempts retried on the next replica.
    pub retries: AtomicU64,
    /// Admin requests forwarded to the control plane.
    pub admin: AtomicU64,
    /// The ring version in force.
    pub ring_version: AtomicU64,
    /// Bounded load: requests sent past their owner because it was at the
    /// bound.
    pub bounded_load_spills: AtomicU64,
    /// Outlier detection: ejections.
    pub ejections: AtomicU64,
    /// Slow start: requests sent past an owner that was still ramping up.
    pub slow_start_skips: AtomicU64,
    epoch: Epoch,
    /// The epoch of the ring in force (its control plane's).
    pub ring_epoch: AtomicU64,
    /// Ring snapshots refused as older than the ring in force.
    pub refused: AtomicU64,
    /// Access log lines dropped because the writer could not keep up.
    pub access_log_dropped: AtomicU64,
}

impl Stats {
    /// Milliseconds since this data plane started, at least 1 (0 marks
    /// "from the start" in [`UpstreamStats::joined_ms`]).
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.0.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    /// The counters of replica `name`, created on first use.
    pub fn upstream(&self, name: &str) -> Arc<UpstreamStats> {
        self.upstreams.entry(name.to_owned()).or_default().clone()
    }

    /// Forget replicas for which `keep` is false.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.upstreams.retain(|name, _| keep(name));
    }

    /// Requests sent to each replica, by name.
    pub fn requests_by_replica(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .upstreams
            .iter()
            .map(|e| (e.key().clone(), e.value().requests.load(Ordering::Relaxed)))
            .collect();
        out.sort();
        out
    }

    /// Requests sent to and failed attempts on each replica, by name:
    /// `(name, requests, errors)`, cumulative.
    pub fn load_by_replica(&self) -> Vec<(String, u64, u64)> {
        self.upstreams
            .iter()
            .map(|e| {
                let s = e.value();
                (
                    e.key().clone(),
                    s.requests.load(Ordering::Relaxed),
                    s.errors.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(1024);
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "ringlb_no_replica_total",
            "Requests answered 503: no replica on the ring.",
            self.no_replica.load(Ordering::Relaxed),
        );
        counter(
            "ringlb_unreachable_total",
            "Requests answered 502: no replica reachable.",
            self.unreachable.load(Ordering::Relaxed),
        );
        counter(
            "ringlb_retries_total",
            "Attempts retried on the next replica.",
            self.retries.load(Ordering::Relaxed),
        );
        counter(
            "ringlb_admin_requests_total",
            "Admin requests forwarded to the control plane.",
            self.admin.load(Ordering::Relaxed),
        );
        counter(
            "ringlb_bounded_load_spills_total",
            "Requests sent past their owner because it was at the hash_balance_factor bound.",
            self.bounded_load_spills.load(Ordering::Relaxed),
        );
        counter(
            "ringlb_outlier_ejections_total",
            "Replicas ejected by outlier detection.",
            self.ejections.load(Ordering::Relaxed),
        );
        counter(
            "ringlb_slow_start_skips_total",
            "Requests sent past an owner still in its slow-start window.",
            self.slow_start_skips.load(Ordering::Relaxed),
        );
        counter(
            "ringlb_ring_refused_total",
            "Ring snapshots refused as older (epoch, version) than the ring in force.",
            self.refused.load(Ordering::Relaxed),
        );
        counter(
            "ringlb_access_log_dropped_total",
            "Access log lines dropped because the writer could not keep up.",
            self.access_log_dropped.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP ringlb_ring_version Ring version in force.\n# TYPE ringlb_ring_version gauge\nringlb_ring_version {}",
            self.ring_version.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP ringlb_ring_epoch Epoch of the ring in force (its control plane's; versions are ordered by epoch first).\n# TYPE ringlb_ring_epoch gauge\nringlb_ring_epoch {}",
            self.ring_epoch.load(Ordering::Relaxed)
        );
        let mut upstreams: Vec<_> = self
            .upstreams
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        upstreams.sort_by(|a, b| a.0.cmp(&b.0));
        let family = |out: &mut String,
                      name: &str,
                      help: &str,
                      kind: &str,
                      value: &dyn Fn(&UpstreamStats) -> u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (replica, s) in &upstreams {
                let _ = writeln!(out, "{name}{{replica=\"{replica}\"}} {}", value(s));
            }
        };
        family(
            &mut out,
            "ringlb_upstream_requests_total",
            "Requests forwarded, by replica.",
            "counter",
            &|s| s.requests.load(Ordering::Relaxed),
        );
        family(
            &mut out,
            "ringlb_upstream_errors_total",
            "Failed attempts, by replica.",
            "counter",
            &|s| s.errors.load(Ordering::Relaxed),
        );
        family(
            &mut out,
            "ringlb_upstream_in_flight",
            "Attempts awaiting their response head, by replica.",
            "gauge",
            &|s| s.in_flight.load(Ordering::Relaxed),
        );
        let now = self.now_ms();
        family(
            &mut out,
            "ringlb_upstream_ejected",
            "Whether outlier detection ejects the replica now (1) or not (0).",
            "gauge",
            &|s| u64::from(s.ejected_until_ms.load(Ordering::Relaxed) > now),
        );
        out.push_str("# HELP ringlb_upstream_response_seconds From a request's arrival until the replica's response head (failover included), by replica.\n# TYPE ringlb_upstream_response_seconds histogram\n");
        for (name, s) in &upstreams {
            s.latency.render(
                &mut out,
                "ringlb_upstream_response_seconds",
                &format!("replica=\"{name}\""),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let histogram = Histogram::default();
        for us in [100, 300, 300, 2_000, 20_000_000] {
            histogram.observe(Duration::from_micros(us));
        }
        let mut out = String::new();
        histogram.render(&mut out, "h", "replica=\"a\"");
        let line = |prefix: &str| {
            out.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in {out}"))
                .rsplit(' ')
                .next()
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(line("h_bucket{replica=\"a\",le=\"0.00025\"}"), "1");
        assert_eq!(line("h_bucket{replica=\"a\",le=\"0.0005\"}"), "3");
        assert_eq!(line("h_bucket{replica=\"a\",le=\"0.0025\"}"), "4");
        assert_eq!(line("h_bucket{replica=\"a\",le=\"10\"}"), "4");
        assert_eq!(line("h_bucket{replica=\"a\",le=\"+Inf\"}"), "5");
        assert_eq!(line("h_count{replica=\"a\"}"), "5");
        assert_eq!(line("h_sum{replica=\"a\"}"), "20.0027");
    }
}
