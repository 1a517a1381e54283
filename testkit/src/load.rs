//! Steady `/home` load for failure tests, bounded in time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::Pool;

/// Steady `/home` traffic until stopped; counts answers that are not 200.
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `workers` clients, each sending back to back with `pause` between
    /// requests, for at most `limit` (a hard bound in case a test forgets).
    pub fn start(lb: &str, workers: usize, pause: Duration, limit: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let pool = Pool::default();
        let deadline = Instant::now() + limit;
        let workers = (0..workers)
            .map(|_| {
                let (stop, ok, failed, pool, lb) = (
                    stop.clone(),
                    ok.clone(),
                    failed.clone(),
                    pool.clone(),
                    lb.to_owned(),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        match pool.get(&lb, "/home").await {
                            Ok(reply) if reply.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                            Ok(reply) => {
                                eprintln!("load: {} {}", reply.status, reply.text());
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                            Err(e) => {
                                eprintln!("load: {e}");
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            workers,
        }
    }

    /// Stop and return (ok, failed).
    pub async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            let _ = worker.await;
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}
