//! Load reports for the control plane's live ring page: every
//! [`REPORT_INTERVAL`] the data plane sends its cumulative per-replica
//! request and error counters (`ReportLoad`) to the control plane whose
//! ring is in force, on a connection of its own,
//! never on the request path. A report that fails is only logged: the next
//! one carries the same counters, so nothing is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ringlb_proto::v1;
use tonic::transport::Endpoint;

use crate::auth::{Bearer, Client};

use crate::stats::Stats;

/// Time between two load reports.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// How long one report (connection included) may take.
const REPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// Report `stats` as `subscriber` to the control plane whose ring is in
/// force (`current`, an index into `endpoints`), until the task is dropped
/// or aborted.
#[tracing::instrument(name = "load_report", skip_all)]
pub(crate) async fn run(
    endpoints: Vec<Endpoint>,
    current: Arc<AtomicUsize>,
    bearer: Bearer,
    subscriber: String,
    stats: Arc<Stats>,
) {
    // Lazy channels: nothing connects until a report is sent.
    let mut clients: Vec<Client> = endpoints
        .into_iter()
        .map(|endpoint| {
            bearer.client(
                endpoint
                    .connect_timeout(REPORT_TIMEOUT)
                    .tcp_nodelay(true)
                    .connect_lazy(),
            )
        })
        .collect();
    if clients.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(REPORT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unsupported = false;
    loop {
        tick.tick().await;
        let request = v1::ReportLoadRequest {
            subscriber: subscriber.clone(),
            version: stats.ring_version.load(Ordering::Relaxed),
            replicas: stats
                .load_by_replica()
                .into_iter()
                .map(|(name, requests, errors)| v1::ReplicaLoad {
                    name,
                    requests,
                    errors,
                })
                .collect(),
        };
        let index = current.load(Ordering::Relaxed).min(clients.len() - 1);
        let client = &mut clients[index];
        match tokio::time::timeout(REPORT_TIMEOUT, client.report_load(request)).await {
            Ok(Ok(_)) => unsupported = false,
            Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
                if !unsupported {
                    tracing::info!("the control plane takes no load reports");
                }
                unsupported = true;
            }
            Ok(Err(status)) => tracing::debug!(error = %status.message(), "load report failed"),
            Err(_) => tracing::debug!(timeout = ?REPORT_TIMEOUT, "load report timed out"),
        }
    }
}
