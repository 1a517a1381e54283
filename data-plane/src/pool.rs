//! The connection pools of every upstream (a replica or the control plane),
//! and what the two engines' pools share: how a connection is made and the
//! stack idle connections wait in.
//!
//! Each upstream has two pools, one per engine ([`ReplicaPools`]): the fast
//! engine keeps bare TCP streams with their read buffers, hyper keeps its
//! own client connections (a `SendRequest` driven by a task). A hyper client
//! connection cannot give its stream back, and making one per request from
//! a pooled stream costs a handshake and a spawned task per request, so the
//! two are kept apart; the hyper pool only carries what the fast engine
//! hands over (HTTP/1.0, HTTP/2, chunked uploads, upgrades) or all traffic
//! with `--engine hyper`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::uri::Authority;
use tokio::net::TcpStream;

use crate::config::MAX_IDLE_PER_UPSTREAM as MAX_IDLE;
use crate::engine::fast::pool::RawPool;
use crate::engine::hyper::pool::UpstreamPool;
use crate::error::AttemptError;

/// A TCP connection to `authority` (with `TCP_NODELAY`) within `within`.
///
/// # Errors
/// [`AttemptError::ConnectTimeout`] or [`AttemptError::Connect`]: nothing
/// was sent.
pub async fn connect_within(
    authority: &Authority,
    within: Duration,
) -> Result<TcpStream, AttemptError> {
    let stream = tokio::time::timeout(within, TcpStream::connect(authority.as_str()))
        .await
        .map_err(|_| AttemptError::ConnectTimeout {
            authority: authority.clone(),
            within,
        })?
        .map_err(|source| AttemptError::Connect {
            authority: authority.clone(),
            source,
        })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// The connection pools of one upstream: hyper's and the fast engine's.
#[derive(Debug, Clone)]
pub struct ReplicaPools {
    pub hyper: Arc<UpstreamPool>,
    pub raw: Arc<RawPool>,
}

impl ReplicaPools {
    /// Empty pools for `authority`; new connections get `connect_timeout`.
    pub fn new(authority: Authority, connect_timeout: Duration) -> ReplicaPools {
        ReplicaPools {
            hyper: UpstreamPool::new(authority.clone(), connect_timeout),
            raw: Arc::new(RawPool::new(authority, connect_timeout)),
        }
    }

    /// The upstream's `host:port`.
    pub fn authority(&self) -> &Authority {
        self.raw.authority()
    }
}

/// The pools of every upstream the routing table knows, kept across ring
/// versions so that connections survive a membership change.
///
/// One set per worker: a connection belongs to the runtime whose reactor
/// it is registered with (and a hyper client connection to the runtime
/// its task runs on), so workers of a data plane with `--workers N` never
/// share one; each routing-table entry holds every worker's pools and a
/// worker takes its own ([`crate::table::Upstream::pools`]).
#[derive(Debug)]
pub struct Pools {
    by_authority: dashmap::DashMap<Authority, Arc<[ReplicaPools]>>,
    connect_timeout: Duration,
    workers: usize,
}

impl Pools {
    /// Pools for `workers` workers (at least one); new connections get
    /// `connect_timeout`.
    pub fn new(connect_timeout: Duration, workers: usize) -> Pools {
        Pools {
            by_authority: dashmap::DashMap::new(),
            connect_timeout,
            workers: workers.max(1),
        }
    }

    /// Every worker's pools of `authority` (indexed by worker), created on
    /// first use.
    pub fn get(&self, authority: &Authority) -> Arc<[ReplicaPools]> {
        self.by_authority
            .entry(authority.clone())
            .or_insert_with(|| {
                (0..self.workers)
                    .map(|_| ReplicaPools::new(authority.clone(), self.connect_timeout))
                    .collect()
            })
            .clone()
    }

    /// Drop the pools (and their idle connections) of upstreams for which
    /// `keep` is false.
    pub fn retain(&self, keep: impl Fn(&Authority) -> bool) {
        self.by_authority.retain(|authority, _| keep(authority));
    }
}

/// Idle connections in a short-held mutex'd stack: most recently used
/// first, so hot connections stay hot; at most [`MAX_IDLE`].
#[derive(Debug)]
pub struct IdleStack<T>(Mutex<Vec<T>>);

impl<T> Default for IdleStack<T> {
    fn default() -> Self {
        IdleStack(Mutex::new(Vec::new()))
    }
}

impl<T> IdleStack<T> {
    fn lock(&self) -> MutexGuard<'_, Vec<T>> {
        // Every critical section is a push or a pop: a panic cannot leave
        // the stack inconsistent.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently returned connection that `usable` accepts; those
    /// it rejects on the way are dropped.
    pub fn pop_usable(&self, usable: impl Fn(&T) -> bool) -> Option<T> {
        loop {
            let conn = self.lock().pop()?;
            if usable(&conn) {
                return Some(conn);
            }
        }
    }

    /// Keep `conn` for reuse (dropped when the stack is full).
    pub fn push(&self, conn: T) {
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_recent_first_unusable_dropped_bounded() {
        let stack = IdleStack::default();
        for n in 0..MAX_IDLE + 10 {
            stack.push(n);
        }
        // 0..MAX_IDLE were kept (1023 on top), the last ten dropped.
        assert_eq!(stack.pop_usable(|_| true), Some(1023));
        assert_eq!(stack.pop_usable(|&n| n % 10 == 0), Some(1020));
        assert_eq!(
            stack.pop_usable(|_| true),
            Some(1019),
            "rejected ones are gone"
        );
        assert_eq!(stack.pop_usable(|_| false), None);
        assert_eq!(stack.pop_usable(|_| true), None, "all dropped");
    }
}
