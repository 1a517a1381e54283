//! What both kinds of replica connection pools share — hyper's
//! ([`crate::upstream`]) and the fast engine's ([`crate::h1::pool`]): how a
//! connection is made, and the stack idle connections wait in.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use http::uri::Authority;
use tokio::net::TcpStream;

/// Idle connections kept per upstream.
pub const MAX_IDLE: usize = 1024;

/// A TCP connection to `authority` (with `TCP_NODELAY`) within `within`;
/// the error says why not.
pub async fn connect_within(authority: &Authority, within: Duration) -> Result<TcpStream, String> {
    let stream = tokio::time::timeout(within, TcpStream::connect(authority.as_str()))
        .await
        .map_err(|_| format!("no connection within {within:?}"))?
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
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
