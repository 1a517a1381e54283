//! Load reports for the control plane's live ring page: every
//! [`REPORT_INTERVAL`] the data plane sends its cumulative per-replica
//! request and error counters (`ReportLoad`), on a connection of its own,
//! never on the request path. A report that fails is only logged: the next
//! one carries the same counters, so nothing is lost.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ringlb_proto::v1;
use ringlb_proto::v1::control_plane_client::ControlPlaneClient;
use tonic::transport::Endpoint;

use crate::stats::Stats;

/// Time between two load reports.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// How long one report (connection included) may take.
const REPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// Report `stats` to the control plane at `endpoint` as `subscriber`
/// until the task is dropped or aborted.
#[tracing::instrument(name = "load_report", skip_all, fields(endpoint = %endpoint))]
pub(crate) async fn run(endpoint: String, subscriber: String, stats: Arc<Stats>) {
    let channel = match Endpoint::from_shared(endpoint) {
        Ok(endpoint) => endpoint
            .connect_timeout(REPORT_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy(),
        Err(e) => {
            tracing::warn!(error = %e, "invalid control plane endpoint; no load reports");
            return;
        }
    };
    let mut client = ControlPlaneClient::new(channel);
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
