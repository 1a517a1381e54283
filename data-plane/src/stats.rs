//! Counters for `/metrics`: per-replica requests and errors in a concurrent
//! map (replicas come and go), plus data-plane-wide outcomes. The request
//! path never touches the map: each routing-table entry holds its replica's
//! counters directly.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

/// Counters of one replica.
#[derive(Debug, Default)]
pub struct UpstreamStats {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
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
}

impl Stats {
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
        let _ = writeln!(
            out,
            "# HELP ringlb_ring_version Ring version in force.\n# TYPE ringlb_ring_version gauge\nringlb_ring_version {}",
            self.ring_version.load(Ordering::Relaxed)
        );
        let mut upstreams: Vec<_> = self
            .upstreams
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        upstreams.sort_by(|a, b| a.0.cmp(&b.0));
        out.push_str("# HELP ringlb_upstream_requests_total Requests forwarded, by replica.\n# TYPE ringlb_upstream_requests_total counter\n");
        for (name, s) in &upstreams {
            let _ = writeln!(
                out,
                "ringlb_upstream_requests_total{{replica=\"{name}\"}} {}",
                s.requests.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP ringlb_upstream_errors_total Failed attempts, by replica.\n# TYPE ringlb_upstream_errors_total counter\n");
        for (name, s) in &upstreams {
            let _ = writeln!(
                out,
                "ringlb_upstream_errors_total{{replica=\"{name}\"}} {}",
                s.errors.load(Ordering::Relaxed)
            );
        }
        out
    }
}
