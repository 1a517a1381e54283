//! The live ring page on the admin port, and the health endpoints.
//!
//! - `GET /ui`: one self-contained page (HTML, SVG and a little JavaScript,
//!   compiled into the binary from `ui/ring.html`; no build step).
//! - `GET /ui/state.json`: the page's state in one shot ([`UiState`]).
//! - `GET /ui/events`: the same state as Server-Sent Events (`event:
//!   state`), sent on every new ring version and every
//!   [`UI_REFRESH`], with keep-alive comments every [`SSE_KEEP_ALIVE`] so
//!   that idle timeouts of proxies on the way never cut the stream (the
//!   polling admin pages of HAProxy and Envoy, pushed instead).
//! - `GET /healthz`: 200 while the process serves; `GET /readyz`: 200 once
//!   the initial replicas run (the backend is ready), 503 once shutdown
//!   began.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, Response};
use axum::routing::get;
use futures::{Stream, StreamExt};
use http::StatusCode;
use ringlb_ring::{Ring, RingConfig};
use serde::Serialize;
use tokio_stream::wrappers::{IntervalStream, WatchStream};

use crate::http_api::json;
use crate::live::{self, DataPlaneLoad, Heartbeat, ReplicaLoad};
use crate::manager::Manager;

/// How often the event stream sends the state when the ring does not
/// change (live load and heartbeats move all the time).
pub const UI_REFRESH: Duration = Duration::from_secs(1);
/// How often a keep-alive comment goes down an event stream.
pub const SSE_KEEP_ALIVE: Duration = Duration::from_secs(10);
/// Most virtual nodes whose slots and key ranges the state lists; a
/// larger ring is summarised (owned slots per replica) with
/// `truncated: true`.
pub const MAX_UI_VNODES: usize = 4096;

/// The page itself.
const PAGE: &str = include_str!("ui/ring.html");

/// One replica as the page shows it.
#[derive(Debug, Serialize)]
pub struct UiReplica {
    pub name: String,
    pub id: u64,
    /// `host:port`.
    pub address: String,
    /// `serving`, or `missing heartbeats` while it misses some.
    pub state: &'static str,
    /// Its ring weight (K × weight virtual nodes).
    pub weight: u32,
    /// The slots of its virtual nodes (empty when `truncated`).
    pub vnodes: Vec<u32>,
    /// Slots whose keys it owns, 0..=M.
    pub owned_slots: u64,
    pub heartbeat: Heartbeat,
    pub load: ReplicaLoad,
}

/// A run of slots `start..=end` (clockwise, wrapping at M) whose keys go to
/// `replica`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct KeyRange {
    pub start: u32,
    pub end: u32,
    pub replica: String,
}

/// One data plane watching the ring.
#[derive(Debug, Serialize)]
pub struct UiDataPlane {
    /// Its subscriber id.
    pub id: String,
    /// The ring version it acknowledged.
    pub applied: u64,
    /// What it reported last (`null` before its first report).
    pub load: Option<DataPlaneLoad>,
}

/// Everything the page shows.
#[derive(Debug, Serialize)]
pub struct UiState {
    /// When this state was taken, RFC 3339.
    pub at: String,
    pub version: u64,
    pub config: RingConfig,
    /// Oldest first.
    pub replicas: Vec<UiReplica>,
    /// Key ranges in slot order (empty when `truncated`).
    pub ranges: Vec<KeyRange>,
    /// Whether the ring has more than [`MAX_UI_VNODES`] virtual nodes, so
    /// `vnodes` and `ranges` were left out.
    pub truncated: bool,
    pub data_planes: Vec<UiDataPlane>,
    /// Ring events, oldest first.
    pub events: Vec<live::Event>,
}

/// The state the page shows, now.
pub fn state(manager: &Manager) -> UiState {
    let ring_state = manager.current();
    let config = ring_state.config;
    let ring = ring_state.ring().ok();
    let points = ring.as_ref().map(Ring::virtual_nodes).unwrap_or_default();
    let truncated = points.len() > MAX_UI_VNODES;
    let name_of = |id: u64| {
        ring_state
            .replicas
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.name.clone())
            .unwrap_or_default()
    };
    let (ranges, owned) = key_ranges(points, config.slots, truncated, name_of);
    let (loads, planes) = manager.live().load();
    let replicas = ring_state
        .replicas
        .iter()
        .map(|r| {
            let heartbeat = manager.live().heartbeat_of(&r.name, r.id);
            UiReplica {
                name: r.name.clone(),
                id: r.id,
                address: r.address.clone(),
                weight: r.weight,
                state: if heartbeat.misses == 0 {
                    "serving"
                } else {
                    "missing heartbeats"
                },
                vnodes: if truncated {
                    Vec::new()
                } else {
                    points
                        .iter()
                        .filter(|p| p.id == r.id)
                        .map(|p| p.slot)
                        .collect()
                },
                owned_slots: owned.get(&r.id).copied().unwrap_or(0),
                heartbeat,
                load: loads.get(&r.name).cloned().unwrap_or_default(),
            }
        })
        .collect();
    let data_planes = manager
        .subscribers()
        .applied()
        .into_iter()
        .map(|(id, applied)| UiDataPlane {
            load: planes.get(&id).cloned(),
            id,
            applied,
        })
        .collect();
    UiState {
        at: live::now_rfc3339(),
        version: ring_state.version,
        config,
        replicas,
        ranges,
        truncated,
        data_planes,
        events: manager.live().events(),
    }
}

/// The key ranges of a ring whose virtual nodes are `points` (sorted by
/// slot, as [`Ring::virtual_nodes`] gives them) on `slots` slots, named by
/// `name_of`, and the slots each replica id owns. Keys of the slots after
/// one owning virtual node up to the next go to the next (a request goes
/// to the first virtual node at or after its slot); virtual nodes sharing
/// a slot: the first owns it. Ranges are left out when `summary_only`.
fn key_ranges(
    points: &[ringlb_ring::VirtualNode],
    slots: u32,
    summary_only: bool,
    name_of: impl Fn(u64) -> String,
) -> (Vec<KeyRange>, HashMap<u64, u64>) {
    let mut owned: HashMap<u64, u64> = HashMap::new();
    let mut ranges = Vec::new();
    let owners: Vec<_> = points
        .iter()
        .enumerate()
        .filter(|(i, p)| *i == 0 || points[i - 1].slot != p.slot)
        .map(|(_, p)| p)
        .collect();
    for (i, point) in owners.iter().enumerate() {
        let previous = if i == 0 {
            owners[owners.len() - 1].slot
        } else {
            owners[i - 1].slot
        };
        let length = if owners.len() == 1 {
            u64::from(slots)
        } else {
            u64::from((point.slot + slots - previous) % slots)
        };
        *owned.entry(point.id).or_default() += length;
        if !summary_only {
            ranges.push(KeyRange {
                start: (previous + 1) % slots,
                end: point.slot,
                replica: name_of(point.id),
            });
        }
    }
    (ranges, owned)
}

/// `/ui`, `/ui/state.json`, `/ui/events`, `/healthz` and `/readyz` over
/// `manager`.
pub fn router(manager: Arc<Manager>) -> Router {
    Router::new()
        .route("/ui", get(page))
        .route("/ui/", get(page))
        .route("/ui/state.json", get(state_json))
        .route("/ui/events", get(events))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(manager)
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

fn state_body(manager: &Manager) -> Vec<u8> {
    // Serialising plain data with string keys cannot fail.
    serde_json::to_vec(&state(manager)).unwrap_or_default()
}

async fn state_json(State(manager): State<Arc<Manager>>) -> Response {
    json(StatusCode::OK, state_body(&manager))
}

async fn events(
    State(manager): State<Arc<Manager>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut ticks = tokio::time::interval(UI_REFRESH);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let changes = WatchStream::from_changes(manager.watch()).map(|_| ());
    let ticks = IntervalStream::new(ticks).map(|_| ());
    let stream = futures::stream::select(changes, ticks)
        // Ends at the first tick after shutdown began, so that the server's
        // graceful shutdown does not wait for it.
        .take_while({
            let manager = manager.clone();
            move |()| std::future::ready(!manager.stopping())
        })
        .map(move |()| {
            let body = String::from_utf8(state_body(&manager)).unwrap_or_default();
            Ok(Event::default().event("state").data(body))
        });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(SSE_KEEP_ALIVE))
}

async fn healthz() -> Response {
    json(StatusCode::OK, ringlb_api::success(&"alive"))
}

/// Whether the control plane is ready: the initial replicas run and
/// shutdown has not begun.
///
/// # Errors
/// Why it is not ready, for the `/readyz` answer.
pub fn ready(manager: &Manager) -> Result<(), &'static str> {
    if manager.stopping() {
        Err("Shutting down")
    } else if manager.current().version == 0 {
        Err("The initial replicas are not up yet")
    } else {
        Ok(())
    }
}

async fn readyz(State(manager): State<Arc<Manager>>) -> Response {
    match ready(&manager) {
        Ok(()) => json(StatusCode::OK, ringlb_api::success(&"ready")),
        Err(why) => json(StatusCode::SERVICE_UNAVAILABLE, ringlb_api::failure(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained() {
        assert!(PAGE.contains("new EventSource(\"/ui/events\")"));
        assert!(!PAGE.contains("src=\"http"), "no external scripts");
        assert!(!PAGE.contains("href=\"http"), "no external styles");
    }

    /// The ranges agree with the ring crate's own lookups: every key's
    /// slot lies in a range of the replica the ring sends it to, and the
    /// ranges cover the ring once.
    #[test]
    fn key_ranges_agree_with_ring_lookups() {
        for (probing, vnodes) in [
            (ringlb_ring::Probing::Linear, 9),
            (ringlb_ring::Probing::Shared, 3),
            (ringlb_ring::Probing::Linear, 1),
        ] {
            let config = RingConfig {
                probing,
                vnodes,
                ..RingConfig::default()
            };
            for ids in [&[1u64, 2, 3][..], &[2], &[1, 4, 7, 9, 12]] {
                let ring = Ring::build(&config, ids).expect("ring");
                let (ranges, owned) = key_ranges(ring.virtual_nodes(), config.slots, false, |id| {
                    id.to_string()
                });
                assert_eq!(owned.values().sum::<u64>(), u64::from(config.slots));
                let owner_of_slot = |slot: u32| {
                    ranges
                        .iter()
                        .find(|r| {
                            if r.start <= r.end && ranges.len() > 1 {
                                (r.start..=r.end).contains(&slot)
                            } else {
                                slot >= r.start || slot <= r.end
                            }
                        })
                        .map(|r| r.replica.clone())
                };
                for key in 100_000..101_000u64 {
                    let slot = ring.slot_of(key);
                    let member = ring.lookup(key).expect("a replica");
                    assert_eq!(
                        owner_of_slot(slot),
                        Some(ids[member].to_string()),
                        "{probing:?} K={vnodes} {ids:?} key {key} slot {slot}"
                    );
                }
            }
        }
    }
}
