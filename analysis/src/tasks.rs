//! Tasks A-1 to A-4 against a running system. Each returns its measured
//! data; the report and charts are made from nothing else.

use std::time::Duration;

use http::Method;
use serde::Serialize;

use crate::client::Client;
use crate::load::{self, Event, Stream};
use crate::stats::{Spread, buckets};
use crate::system::{KillWith, kill_replica};

/// Requests per measurement by default (the assignment's 10,000).
pub const DEFAULT_REQUESTS: u64 = 10_000;
/// Requests in flight at once by default.
pub const DEFAULT_CONCURRENCY: usize = 200;
/// The range of N that A-2 walks by default (the assignment's 2..=6).
pub const DEFAULT_N_MIN: usize = 2;
/// The largest N of A-2 by default.
pub const DEFAULT_N_MAX: usize = 6;

/// Knobs shared by the tasks.
#[derive(Clone, Debug)]
pub struct Settings {
    pub requests: u64,
    pub concurrency: usize,
    pub n_range: Vec<usize>,
    pub kill_with: KillWith,
    /// The control plane the analysis started, if it did.
    pub control_plane_pid: Option<u32>,
    pub quiet: bool,
}

/// Where one burst of requests landed.
#[derive(Clone, Debug, Serialize)]
pub struct Distribution {
    pub config: String,
    pub n: usize,
    pub replicas: Vec<String>,
    pub counts: Vec<u64>,
    pub failed: u64,
    pub spread: Spread,
    pub seconds: f64,
}

/// A named ring configuration (a partial `/config` body).
#[derive(Clone, Debug, Serialize)]
pub struct RingSetup {
    pub name: String,
    pub patch: String,
}

/// The spec's configuration, which the analysis starts from and ends with.
pub fn spec_setup() -> RingSetup {
    RingSetup {
        name: "spec, M=512, K=9".into(),
        patch: r#"{"slots": 512, "vnodes": 9, "request_hash": "spec", "vnode_hash": "spec", "probing": "linear", "key_source": "request-id"}"#.into(),
    }
}

/// The alternatives A-4 compares with the spec.
pub fn alternative_setups() -> Vec<RingSetup> {
    vec![
        RingSetup {
            name: "xxh3, M=512, K=9".into(),
            patch: r#"{"slots": 512, "vnodes": 9, "request_hash": "xxh3", "vnode_hash": "xxh3"}"#.into(),
        },
        RingSetup {
            name: "xxh3, M=4096, K=64".into(),
            patch: r#"{"slots": 4096, "vnodes": 64, "request_hash": "xxh3", "vnode_hash": "xxh3"}"#.into(),
        },
        RingSetup {
            name: "murmur3, M=65536, K=256".into(),
            patch: r#"{"slots": 65536, "vnodes": 256, "request_hash": "murmur3", "vnode_hash": "murmur3"}"#.into(),
        },
    ]
}

/// A-1: one burst at the current N.
pub async fn distribution(
    client: &Client,
    settings: &Settings,
    config: &str,
) -> anyhow::Result<Distribution> {
    let replicas = client.replicas().await?;
    let what = format!("{config} N={}", replicas.len());
    let bar = load::progress(settings.requests, &what, settings.quiet);
    let burst = load::burst(client, settings.requests, settings.concurrency, &bar).await;
    let counts = burst.counts_for(&replicas);
    let spread = Spread::of(&counts).ok_or_else(|| anyhow::anyhow!("no replicas"))?;
    if burst.failed > 0 {
        tracing::warn!(failed = burst.failed, "requests failed during a burst");
    }
    Ok(Distribution {
        config: config.to_owned(),
        n: replicas.len(),
        replicas,
        counts,
        failed: burst.failed,
        spread,
        seconds: burst.elapsed.as_secs_f64(),
    })
}

/// A-2: a burst at each N, set through `/add` and `/rm`.
pub async fn scaling(
    client: &Client,
    settings: &Settings,
    config: &str,
) -> anyhow::Result<Vec<Distribution>> {
    let mut out = Vec::new();
    for &n in &settings.n_range {
        client.scale_to(n).await?;
        out.push(distribution(client, settings, config).await?);
    }
    Ok(out)
}

/// One request of A-3's endpoint tour and what came back.
#[derive(Clone, Debug, Serialize)]
pub struct EndpointCase {
    pub what: String,
    pub request: String,
    pub status: u16,
    pub body: String,
}

/// A-3, first half: every endpoint and each error case (starts and ends at N = 3).
pub async fn endpoints(client: &Client) -> anyhow::Result<Vec<EndpointCase>> {
    client.scale_to(3).await?;
    let existing = client
        .replicas()
        .await?
        .first()
        .cloned()
        .unwrap_or_else(|| "server-1".into());
    let lb = client.lb.clone();
    let cases: Vec<(&str, Method, &str, String)> = vec![
        ("list the replicas", Method::GET, "/rep", String::new()),
        ("route a request", Method::GET, "/home", String::new()),
        // Before /rm below removes a random replica, which may be this one.
        (
            "a name that exists",
            Method::POST,
            "/add",
            format!(r#"{{"n": 1, "hostnames": ["{existing}"]}}"#),
        ),
        (
            "add two replicas, one named",
            Method::POST,
            "/add",
            r#"{"n": 2, "hostnames": ["S5"]}"#.into(),
        ),
        (
            "remove the named one and one other",
            Method::DELETE,
            "/rm",
            r#"{"n": 2, "hostnames": ["S5"]}"#.into(),
        ),
        (
            "a path the replicas do not serve",
            Method::GET,
            "/other",
            String::new(),
        ),
        (
            "more hostnames than n (add)",
            Method::POST,
            "/add",
            r#"{"n": 1, "hostnames": ["S6", "S7"]}"#.into(),
        ),
        (
            "more hostnames than n (rm)",
            Method::DELETE,
            "/rm",
            r#"{"n": 1, "hostnames": ["S6", "S7"]}"#.into(),
        ),
        ("malformed JSON", Method::POST, "/add", r#"{"n": "#.into()),
        ("negative n", Method::POST, "/add", r#"{"n": -1}"#.into()),
        (
            "n is a string",
            Method::POST,
            "/add",
            r#"{"n": "2"}"#.into(),
        ),
        (
            "an invalid name",
            Method::POST,
            "/add",
            r#"{"n": 1, "hostnames": ["no spaces"]}"#.into(),
        ),
        (
            "remove an unknown name",
            Method::DELETE,
            "/rm",
            r#"{"n": 1, "hostnames": ["S404"]}"#.into(),
        ),
        (
            "remove more than exist",
            Method::DELETE,
            "/rm",
            r#"{"n": 9}"#.into(),
        ),
        ("a wrong method", Method::GET, "/add", String::new()),
    ];
    let mut out = Vec::new();
    for (what, method, path, body) in cases {
        let answer = client.send(&lb, method.clone(), path, &body).await?;
        let request = if body.is_empty() {
            format!("{method} {path}")
        } else {
            format!("{method} {path} {body}")
        };
        out.push(EndpointCase {
            what: what.into(),
            request,
            status: answer.status.as_u16(),
            body: answer.body,
        });
    }
    client.scale_to(3).await?;
    Ok(out)
}

/// A-3, second half: a replica killed under a steady stream of requests.
#[derive(Clone, Debug, Serialize)]
pub struct Recovery {
    pub killed: String,
    pub how: String,
    /// Clients in the steady stream.
    pub clients: usize,
    pub before: Vec<String>,
    pub after: Vec<String>,
    pub replacement: Option<String>,
    /// From the kill until `/rep` no longer lists it.
    pub off_ring_ms: f64,
    /// From the kill until `/rep` lists N replicas again.
    pub restored_ms: f64,
    pub requests: u64,
    pub failed: u64,
    /// Timeline: bucket start (s from the kill) and per-series counts.
    pub bucket_ms: f64,
    pub t: Vec<f64>,
    pub series: Vec<(String, Vec<u64>)>,
}

pub async fn recovery(client: &Client, settings: &Settings) -> anyhow::Result<Recovery> {
    let before = client.scale_to(3).await?;
    let victim = before
        .get(1)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("need three replicas"))?;
    const CLIENTS: usize = 16;
    let stream = Stream::start(
        client,
        CLIENTS,
        Duration::from_millis(2),
        Duration::from_secs(60),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed_at = stream.now_ms();
    let how = kill_replica(&victim, settings.kill_with, settings.control_plane_pid).await?;
    let (mut off_ring, mut restored, mut after) = (None, None, before.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while restored.is_none() && tokio::time::Instant::now() < deadline {
        if let Ok(names) = client.replicas().await {
            let now = stream.now_ms() - killed_at;
            if !names.contains(&victim) {
                off_ring.get_or_insert(now);
                if names.len() == before.len() {
                    restored = Some(now);
                    after = names;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let events = stream.stop().await;
    let off_ring_ms = off_ring.ok_or_else(|| anyhow::anyhow!("{victim} never left the ring"))?;
    let restored_ms = restored.ok_or_else(|| anyhow::anyhow!("N was not restored within 30 s"))?;
    let replacement = after.iter().find(|n| !before.contains(n)).cloned();
    let bucket_ms = 100.0;
    // Whole buckets only: from 0.8 s before the kill (the stream is steady
    // by then) to the last full bucket before the stream stopped.
    let from = killed_at - 800.0;
    let stream_end = events.last().map_or(from, |e| e.at_ms);
    let to = from
        + ((stream_end.min(killed_at + restored_ms + 1000.0) - from) / bucket_ms).floor()
            * bucket_ms;
    let (t, series) = timeline(&events, &before, &after, from, to, bucket_ms, killed_at);
    Ok(Recovery {
        killed: victim,
        how: how.into(),
        clients: CLIENTS,
        before,
        after,
        replacement,
        off_ring_ms,
        restored_ms,
        requests: events.len() as u64,
        failed: events.iter().filter(|e| e.replica.is_none()).count() as u64,
        bucket_ms,
        t,
        series,
    })
}

type Series = Vec<(String, Vec<u64>)>;

fn timeline(
    events: &[Event],
    before: &[String],
    after: &[String],
    from: f64,
    to: f64,
    bucket_ms: f64,
    zero: f64,
) -> (Vec<f64>, Series) {
    let mut names: Vec<String> = before.to_vec();
    names.extend(after.iter().filter(|n| !before.contains(n)).cloned());
    let mut series: Series = names
        .iter()
        .map(|name| {
            let times: Vec<f64> = events
                .iter()
                .filter(|e| e.replica.as_deref() == Some(name.as_str()))
                .map(|e| e.at_ms)
                .collect();
            (name.clone(), buckets(&times, from, to, bucket_ms))
        })
        .collect();
    let failed: Vec<f64> = events
        .iter()
        .filter(|e| e.replica.is_none())
        .map(|e| e.at_ms)
        .collect();
    series.push(("failed".into(), buckets(&failed, from, to, bucket_ms)));
    let len = series.first().map_or(0, |(_, v)| v.len());
    let t = (0..len)
        .map(|i| (from + i as f64 * bucket_ms - zero) / 1000.0)
        .collect();
    (t, series)
}

/// A-4: A-1 and A-2 under one configuration.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub setup: RingSetup,
    pub a1: Distribution,
    pub a2: Vec<Distribution>,
}

pub async fn compare(
    client: &Client,
    settings: &Settings,
    setup: &RingSetup,
) -> anyhow::Result<Comparison> {
    client.set_config(&setup.patch).await?;
    client.scale_to(3).await?;
    let a1 = distribution(client, settings, &setup.name).await?;
    let a2 = scaling(client, settings, &setup.name).await?;
    Ok(Comparison {
        setup: setup.clone(),
        a1,
        a2,
    })
}
