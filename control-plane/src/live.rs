//! What the live ring page (`/ui`, [`crate::ui`]) shows besides the ring
//! itself: a short log of membership events, each replica's recent
//! heartbeats, and the load the data planes report (`ReportLoad`, about once
//! a second each).
//!
//! Everything here is bounded: at most [`MAX_EVENTS`] events, at most
//! [`MAX_LOAD_SUBSCRIBERS`] reporting data planes with at most
//! [`MAX_LOAD_SAMPLES`] samples of at most [`MAX_REPORTED_REPLICAS`]
//! replicas each, and heartbeat records only for replicas on the ring.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::state::RingState;

/// Events kept for the page's log (the oldest go first).
pub const MAX_EVENTS: usize = 50;
/// Data planes whose load reports are kept; a new one past this evicts the
/// one that reported least recently.
pub const MAX_LOAD_SUBSCRIBERS: usize = 256;
/// Replicas kept from one load report (more are ignored).
pub const MAX_REPORTED_REPLICAS: usize = 4096;
/// Samples kept per data plane.
pub const MAX_LOAD_SAMPLES: usize = 16;
/// The window live load is measured over: requests/s and shares are those
/// of the last this-long.
pub const LOAD_WINDOW: Duration = Duration::from_secs(5);

/// Why a ring version was published (for the event log).
#[derive(Clone, Debug)]
pub enum Change {
    /// The replicas started or adopted at boot.
    Boot,
    /// `/add` or `AddReplicas`.
    Added,
    /// `/rm` or `RemoveReplicas`.
    Removed,
    /// A replica died or missed its heartbeats and was taken off the ring.
    Failed {
        /// Why, as the heartbeat checker or the backend said it.
        reason: String,
    },
    /// Replacements started to keep N.
    Replaced,
    /// A new ring configuration.
    Config,
}

/// One line of the page's event log.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Event {
    /// When, RFC 3339 (UTC, milliseconds).
    pub at: String,
    /// `boot`, `added`, `removed`, `failed`, `replaced` or `config`.
    pub kind: &'static str,
    /// The ring version it produced.
    pub version: u64,
    /// Replicas that joined the ring with it.
    pub joined: Vec<String>,
    /// Replicas that left the ring with it.
    pub left: Vec<String>,
    /// Why, when there is more to say (a failure's reason).
    pub detail: String,
}

/// The recent heartbeats of one replica.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Heartbeat {
    /// Heartbeats answered since the replica joined.
    pub ok: u64,
    /// Heartbeats missed in a row now (0 when the last one was answered).
    pub misses: u32,
    /// Milliseconds since the last answered heartbeat (`null` before the
    /// first).
    pub last_ok_ms_ago: Option<u64>,
    /// Why the last missed heartbeat was missed.
    pub last_error: Option<String>,
    #[serde(skip)]
    last_ok: Option<InstantOrd>,
}

/// An `Instant` that compares equal to any other, so that [`Heartbeat`]
/// can derive `PartialEq` for tests on the values people see.
#[derive(Clone, Copy, Debug)]
struct InstantOrd(Instant);

impl PartialEq for InstantOrd {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for InstantOrd {}

/// One data plane's report: cumulative requests (and errors) per replica.
#[derive(Clone, Debug)]
struct Sample {
    at: Instant,
    version: u64,
    requests: HashMap<String, (u64, u64)>,
}

/// Live load of one replica, summed over the data planes.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ReplicaLoad {
    /// Requests per second over the last [`LOAD_WINDOW`].
    pub rps: f64,
    /// Failed attempts per second over the same window.
    pub errors_per_s: f64,
    /// Its share of all requests in the window, 0..=1 (0 when there were
    /// none).
    pub share: f64,
}

/// Live load of one data plane.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct DataPlaneLoad {
    /// The ring version it last reported serving.
    pub reported_version: u64,
    /// Requests per second it sent over the last [`LOAD_WINDOW`].
    pub rps: f64,
    /// Milliseconds since its last report.
    pub last_report_ms_ago: u64,
}

/// The live view's records. Cheap to update; every method takes a short
/// lock and never waits on I/O.
#[derive(Debug, Default)]
pub struct Live {
    events: Mutex<VecDeque<Event>>,
    heartbeats: Mutex<HashMap<(String, u64), Heartbeat>>,
    load: Mutex<HashMap<String, VecDeque<Sample>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data
    // (every update is a single insert or push), so poisoning is ignored.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Now as RFC 3339 with milliseconds, UTC.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

impl Live {
    /// Record the publication of `next` after `previous`, for `why`.
    pub fn published(&self, previous: &RingState, next: &RingState, why: &Change) {
        let joined: Vec<String> = next
            .replicas
            .iter()
            .filter(|r| previous.find(&r.name).is_none_or(|p| p.id != r.id))
            .map(|r| r.name.clone())
            .collect();
        let left: Vec<String> = previous
            .replicas
            .iter()
            .filter(|r| next.find(&r.name).is_none_or(|n| n.id != r.id))
            .map(|r| r.name.clone())
            .collect();
        let (kind, detail) = match why {
            Change::Boot => ("boot", String::new()),
            Change::Added => ("added", String::new()),
            Change::Removed => ("removed", String::new()),
            Change::Failed { reason } => ("failed", reason.clone()),
            Change::Replaced => ("replaced", String::new()),
            Change::Config => (
                "config",
                format!(
                    "slots={} vnodes={} request_hash={} vnode_hash={} probing={} key_source={}",
                    next.config.slots,
                    next.config.vnodes,
                    next.config.request_hash,
                    next.config.vnode_hash,
                    next.config.probing,
                    next.config.key_source
                ),
            ),
        };
        let mut events = lock(&self.events);
        if events.len() == MAX_EVENTS {
            events.pop_front();
        }
        events.push_back(Event {
            at: now_rfc3339(),
            kind,
            version: next.version,
            joined,
            left,
            detail,
        });
        drop(events);
        // Heartbeat records only for replicas on the ring.
        lock(&self.heartbeats).retain(|(name, id), _| next.find(name).is_some_and(|r| r.id == *id));
    }

    /// The event log, oldest first.
    pub fn events(&self) -> Vec<Event> {
        lock(&self.events).iter().cloned().collect()
    }

    /// A heartbeat of replica `name` (`id`): answered, or missed for
    /// `error`.
    pub fn heartbeat(&self, name: &str, id: u64, error: Option<&str>) {
        let mut heartbeats = lock(&self.heartbeats);
        let record = heartbeats.entry((name.to_owned(), id)).or_default();
        match error {
            None => {
                record.ok += 1;
                record.misses = 0;
                record.last_ok = Some(InstantOrd(Instant::now()));
            }
            Some(error) => {
                record.misses += 1;
                record.last_error = Some(error.to_owned());
            }
        }
    }

    /// The heartbeat record of replica `name` (`id`), ages filled in.
    pub fn heartbeat_of(&self, name: &str, id: u64) -> Heartbeat {
        let heartbeats = lock(&self.heartbeats);
        let mut record = heartbeats
            .get(&(name.to_owned(), id))
            .cloned()
            .unwrap_or_default();
        record.last_ok_ms_ago = record
            .last_ok
            .map(|at| u64::try_from(at.0.elapsed().as_millis()).unwrap_or(u64::MAX));
        record
    }

    /// A data plane's load report: cumulative `(requests, errors)` per
    /// replica name while serving ring `version`.
    pub fn report(
        &self,
        subscriber: &str,
        version: u64,
        replicas: impl IntoIterator<Item = (String, u64, u64)>,
    ) {
        let now = Instant::now();
        let requests = replicas
            .into_iter()
            .take(MAX_REPORTED_REPLICAS)
            .map(|(name, requests, errors)| (name, (requests, errors)))
            .collect();
        let mut load = lock(&self.load);
        if !load.contains_key(subscriber) && load.len() >= MAX_LOAD_SUBSCRIBERS {
            let stalest = load
                .iter()
                .min_by_key(|(_, samples)| samples.back().map(|s| s.at))
                .map(|(id, _)| id.clone());
            if let Some(stalest) = stalest {
                load.remove(&stalest);
            }
        }
        let samples = load.entry(subscriber.to_owned()).or_default();
        samples.push_back(Sample {
            at: now,
            version,
            requests,
        });
        // Keep one sample at or before the window's start, so the window
        // is covered whole.
        while samples.len() > MAX_LOAD_SAMPLES
            || (samples.len() > 2 && now.duration_since(samples[1].at) >= LOAD_WINDOW)
        {
            samples.pop_front();
        }
        // Data planes silent for long are forgotten.
        load.retain(|_, samples| {
            samples
                .back()
                .is_some_and(|s| now.duration_since(s.at) < 4 * LOAD_WINDOW)
        });
    }

    /// Live load per replica name and per data plane, over the last
    /// [`LOAD_WINDOW`] (data planes that have not reported for a window
    /// count as idle).
    pub fn load(&self) -> (HashMap<String, ReplicaLoad>, HashMap<String, DataPlaneLoad>) {
        let now = Instant::now();
        let load = lock(&self.load);
        let mut replicas: HashMap<String, ReplicaLoad> = HashMap::new();
        let mut data_planes = HashMap::new();
        let mut total = 0.0;
        for (subscriber, samples) in load.iter() {
            let (Some(first), Some(last)) = (samples.front(), samples.back()) else {
                continue;
            };
            let mut plane = DataPlaneLoad {
                reported_version: last.version,
                rps: 0.0,
                last_report_ms_ago: u64::try_from(now.duration_since(last.at).as_millis())
                    .unwrap_or(u64::MAX),
            };
            let span = last.at.duration_since(first.at).as_secs_f64();
            if span > 0.0 && now.duration_since(last.at) < LOAD_WINDOW {
                for (name, &(requests, errors)) in &last.requests {
                    let (before, errors_before) =
                        first.requests.get(name).copied().unwrap_or((0, 0));
                    let rps = requests.saturating_sub(before) as f64 / span;
                    let entry = replicas.entry(name.clone()).or_default();
                    entry.rps += rps;
                    entry.errors_per_s += errors.saturating_sub(errors_before) as f64 / span;
                    plane.rps += rps;
                    total += rps;
                }
            }
            data_planes.insert(subscriber.clone(), plane);
        }
        if total > 0.0 {
            for entry in replicas.values_mut() {
                entry.share = entry.rps / total;
            }
        }
        (replicas, data_planes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Replica;

    fn state(version: u64, names: &[(&str, u64)]) -> RingState {
        RingState {
            version,
            config: ringlb_ring::RingConfig::default(),
            replicas: names
                .iter()
                .map(|&(name, id)| Replica {
                    id,
                    name: name.into(),
                    address: "127.0.0.1:1".into(),
                    weight: 1,
                })
                .collect(),
        }
    }

    #[test]
    fn events_say_who_joined_and_left_and_stay_bounded() {
        let live = Live::default();
        let a = state(1, &[("server-1", 1), ("server-2", 2)]);
        let b = state(2, &[("server-1", 1), ("server-abc123", 3)]);
        live.published(
            &a,
            &b,
            &Change::Failed {
                reason: "exited".into(),
            },
        );
        let events = live.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, "failed");
        assert_eq!(events[0].joined, ["server-abc123"]);
        assert_eq!(events[0].left, ["server-2"]);
        assert_eq!(events[0].detail, "exited");
        for _ in 0..2 * MAX_EVENTS {
            live.published(&a, &b, &Change::Added);
        }
        assert_eq!(live.events().len(), MAX_EVENTS);
    }

    #[test]
    fn heartbeats_count_and_reset() {
        let live = Live::default();
        live.heartbeat("s", 1, Some("refused"));
        live.heartbeat("s", 1, Some("refused"));
        let record = live.heartbeat_of("s", 1);
        assert_eq!(record.misses, 2);
        assert_eq!(record.last_ok_ms_ago, None);
        live.heartbeat("s", 1, None);
        let record = live.heartbeat_of("s", 1);
        assert_eq!((record.ok, record.misses), (1, 0));
        assert!(record.last_ok_ms_ago.is_some());
        // Off the ring: forgotten.
        live.published(&state(1, &[("s", 1)]), &state(2, &[]), &Change::Removed);
        assert_eq!(live.heartbeat_of("s", 1), Heartbeat::default());
    }

    #[test]
    fn load_is_the_rate_over_the_window_and_shares_add_up() {
        let live = Live::default();
        live.report("dp", 3, [("a".to_string(), 0, 0), ("b".to_string(), 0, 0)]);
        std::thread::sleep(Duration::from_millis(200));
        live.report(
            "dp",
            3,
            [("a".to_string(), 300, 3), ("b".to_string(), 100, 0)],
        );
        let (replicas, planes) = live.load();
        let a = &replicas["a"];
        let b = &replicas["b"];
        assert!((a.share - 0.75).abs() < 1e-9, "{a:?}");
        assert!((b.share - 0.25).abs() < 1e-9, "{b:?}");
        // 300 requests in about 0.2 s (generous bounds for a busy machine).
        assert!(a.rps > 100.0 && a.rps <= 1500.0, "{a:?}");
        assert!(a.errors_per_s > 0.0);
        assert_eq!(planes["dp"].reported_version, 3);
        assert!((planes["dp"].rps - a.rps - b.rps).abs() < 1e-6);
    }

    #[test]
    fn reporters_are_bounded() {
        let live = Live::default();
        for i in 0..MAX_LOAD_SUBSCRIBERS + 10 {
            live.report(&format!("dp-{i}"), 1, []);
        }
        assert_eq!(live.load().1.len(), MAX_LOAD_SUBSCRIBERS);
        let many = (0..MAX_REPORTED_REPLICAS + 5).map(|i| (format!("r{i}"), 1, 0));
        live.report("big", 1, many);
        let load = lock(&live.load);
        let kept = load["big"].back().map(|s| s.requests.len());
        assert_eq!(kept, Some(MAX_REPORTED_REPLICAS));
    }
}
