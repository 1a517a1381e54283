//! The control plane's Prometheus text: ring version and epoch, replicas,
//! data planes, lifecycle counters, replica weights.

use crate::manager::Manager;

/// Render `manager`'s metrics in the text exposition format.
pub fn render(manager: &Manager) -> String {
    let state = manager.current();
    let (started, failed) = manager.lifecycle_counts();
    let (drained, drain_timeouts) = manager.drain_counts();
    let gauge = |name: &str, help: &str, value: u64| {
        format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n")
    };
    let counter = |name: &str, help: &str, value: u64| {
        format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n")
    };
    [
        gauge(
            "ringlb_ring_version",
            "Ring version published.",
            state.version,
        ),
        gauge(
            "ringlb_ring_epoch",
            "Epoch of the ring versions published (start time in Unix ms, raised above later epochs data planes report).",
            manager.epoch().get(),
        ),
        gauge(
            "ringlb_replicas",
            "Replicas on the ring.",
            state.replicas.len() as u64,
        ),
        gauge(
            "ringlb_data_planes",
            "Data planes watching the ring.",
            manager.subscribers().len() as u64,
        ),
        counter(
            "ringlb_replicas_started_total",
            "Replicas started (boot, /add, replacements).",
            started,
        ),
        counter(
            "ringlb_replicas_failed_total",
            "Replicas that died or stopped answering heartbeats.",
            failed,
        ),
        counter(
            "ringlb_rm_drains_total",
            "Graceful drains on /rm that ended with no request in flight to the removed replicas.",
            drained,
        ),
        counter(
            "ringlb_rm_drain_timeouts_total",
            "Graceful drains on /rm that hit --drain-timeout with requests still in flight.",
            drain_timeouts,
        ),
    ]
    .concat()
        + &replica_weights(&state.replicas)
}

/// `ringlb_replica_weight{replica="…"}`: each replica's ring weight.
fn replica_weights(replicas: &[crate::state::Replica]) -> String {
    let mut out = String::from(
        "# HELP ringlb_replica_weight Ring weight of each replica (K x weight virtual nodes).\n# TYPE ringlb_replica_weight gauge\n",
    );
    for r in replicas {
        out.push_str(&format!(
            "ringlb_replica_weight{{replica=\"{}\"}} {}\n",
            r.name, r.weight
        ));
    }
    out
}
