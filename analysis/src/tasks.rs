//! Tasks A-1 to A-5 against a running system. Each returns its measured
//! data; the report and charts are made from nothing else.

use std::time::Duration;

use http::Method;
use serde::Serialize;

use crate::client::Client;
use crate::load::{self, Event, Keyed, Stream};
use crate::metrics::{self, Sampler, Scrape};
use crate::stats::{Spread, buckets, percentile};
use crate::system::{KillWith, kill_replica};

/// Requests per measurement by default (the assignment's 10,000).
pub const DEFAULT_REQUESTS: u64 = 10_000;
/// Requests in flight at once by default.
pub const DEFAULT_CONCURRENCY: usize = 200;
/// The range of N that A-2 walks by default (the assignment's 2..=6).
pub const DEFAULT_N_MIN: usize = 2;
/// The largest N of A-2 by default.
pub const DEFAULT_N_MAX: usize = 6;

/// A-5's hot key (`X-Request-ID`) by default.
pub const DEFAULT_HOT_KEY: u64 = 424_242;
/// The percentage of A-5's requests that carry the hot key by default.
pub const DEFAULT_HOT_PERCENT: u8 = 50;
/// A-5's `hash_balance_factor` for its second run by default.
pub const DEFAULT_BALANCE_FACTOR: u32 = 150;
/// How often A-5 samples the data plane's in-flight gauges.
pub const METRICS_SAMPLE_INTERVAL: Duration = Duration::from_millis(5);
/// Unmeasured requests (random ids) A-5 sends before its first run, so that
/// neither run pays for opening connections (at most --requests of them).
pub const WARMUP_REQUESTS: u64 = 1_000;
/// Seed of A-5's random ids, so both of its runs send the same ids.
const WORKLOAD_SEED: u64 = 0x5eed_a5a5;
/// The percentile A-5 reports.
pub const LATENCY_PERCENTILE: f64 = 99.0;

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

/// A-5's knobs.
#[derive(Clone, Debug)]
pub struct HotKeySettings {
    /// The hot key, sent as `X-Request-ID`.
    pub key: u64,
    /// The percentage of requests that carry it (the rest: random ids).
    pub percent: u8,
    /// The `hash_balance_factor` of the second run.
    pub factor: u32,
    /// The data plane's `/metrics`, `host:port`, when known.
    pub metrics: Option<String>,
}

/// The ring A-5 runs on: the spec's functions send 84 % of random keys to
/// one replica, which would hide the hot key's own skew, so A-5 uses an even
/// ring, one of A-4's alternatives.
pub fn hot_key_setup() -> RingSetup {
    RingSetup {
        name: "xxh3, M=4096, K=64".into(),
        patch: r#"{"slots": 4096, "vnodes": 64, "request_hash": "xxh3", "vnode_hash": "xxh3", "probing": "linear", "key_source": "request-id"}"#.into(),
    }
}

/// A `/config` body that sets only `hash_balance_factor`.
pub fn factor_patch(factor: u32) -> String {
    format!(r#"{{"hash_balance_factor": {factor}}}"#)
}

/// splitmix64: a small, seeded generator for reproducible random ids.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `requests` `(X-Request-ID, hot)` pairs: exactly `percent` % of them (to
/// the nearest request, spread evenly through the sequence) carry `hot`,
/// the others random 6-digit ids other than `hot`.
pub fn workload(requests: u64, percent: u8, hot: u64, seed: u64) -> Vec<(u64, bool)> {
    let p = u64::from(percent.min(100));
    let mut state = seed;
    (0..requests)
        .map(|i| {
            if (i + 1) * p / 100 > i * p / 100 {
                return (hot, true);
            }
            loop {
                let id = 100_000 + splitmix64(&mut state) % 900_000;
                if id != hot {
                    return (id, false);
                }
            }
        })
        .collect()
}

/// One of A-5's two runs.
#[derive(Clone, Debug, Serialize)]
pub struct HotKeyRun {
    pub factor: u32,
    pub requests: u64,
    /// Of those, the requests that carried the hot key.
    pub hot_requests: u64,
    pub failed: u64,
    pub seconds: f64,
    /// Requests answered by each replica (from the answers' bodies).
    pub counts: Vec<u64>,
    /// Of those, the requests that carried the hot key.
    pub hot_counts: Vec<u64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p99_hot_ms: Option<f64>,
    pub p99_other_ms: Option<f64>,
    /// The p99 of the requests each replica answered (`None`: it answered none).
    pub p99_by_replica_ms: Vec<Option<f64>>,
    /// From the data plane's `/metrics`, when read: spills during the run.
    pub spills: Option<u64>,
    /// Requests the data plane forwarded to each replica during the run.
    pub forwarded: Option<Vec<u64>>,
    /// The data plane's in-flight requests per replica, over the samples.
    pub in_flight_mean: Option<Vec<f64>>,
    pub in_flight_max: Option<Vec<u64>>,
    pub in_flight_samples: usize,
}

/// A-5: a hot key with bounded load off, then on.
#[derive(Clone, Debug, Serialize)]
pub struct HotKey {
    pub config: String,
    pub hot_key: u64,
    pub hot_percent: u8,
    pub factor: u32,
    /// Unmeasured requests sent before the first run.
    pub warmup: u64,
    /// The factor in force before A-5, put back after it.
    pub factor_before: u32,
    pub replicas: Vec<String>,
    /// The replica that answered the hot key with bounded load off.
    pub owner: String,
    pub metrics: Option<String>,
    pub off: HotKeyRun,
    pub on: HotKeyRun,
}

impl HotKey {
    /// The owner's index in `replicas`.
    pub fn owner_index(&self) -> usize {
        self.replicas
            .iter()
            .position(|r| *r == self.owner)
            .unwrap_or(0)
    }
}

/// A-5: the same hot-key workload at factor 0 and at `hot.factor`, on
/// [`hot_key_setup`]'s ring at N = 3. The factor in force before is put
/// back afterwards, also when a run fails.
pub async fn hot_key(
    client: &Client,
    settings: &Settings,
    hot: &HotKeySettings,
) -> anyhow::Result<HotKey> {
    let setup = hot_key_setup();
    let factor_before = client.hash_balance_factor().await?;
    client.set_config(&setup.patch).await?;
    client.scale_to(3).await?;
    let replicas = client.replicas().await?;
    let ids = workload(settings.requests, hot.percent, hot.key, WORKLOAD_SEED);
    let warmup = WARMUP_REQUESTS.min(settings.requests);
    let measured = async {
        client.set_config(&factor_patch(0)).await?;
        let random = workload(warmup, 0, hot.key, !WORKLOAD_SEED);
        let bar = load::progress(warmup, "hot key, warm-up", settings.quiet);
        load::keyed_burst(client, &random, settings.concurrency, &bar).await;
        let off = hot_key_run(client, settings, hot, &replicas, &ids, 0).await?;
        client.set_config(&factor_patch(hot.factor)).await?;
        let on = hot_key_run(client, settings, hot, &replicas, &ids, hot.factor).await?;
        anyhow::Ok((off, on))
    }
    .await;
    let restored = client.set_config(&factor_patch(factor_before)).await;
    let (off, on) = measured?;
    restored?;
    let owner_index = off
        .hot_counts
        .iter()
        .enumerate()
        .max_by_key(|(_, c)| **c)
        .filter(|(_, c)| **c > 0)
        .map(|(i, _)| i)
        .ok_or_else(|| anyhow::anyhow!("no hot-key request was answered with the factor off"))?;
    Ok(HotKey {
        config: setup.name,
        hot_key: hot.key,
        hot_percent: hot.percent,
        factor: hot.factor,
        warmup,
        factor_before,
        owner: replicas[owner_index].clone(),
        replicas,
        metrics: hot.metrics.clone(),
        off,
        on,
    })
}

async fn hot_key_run(
    client: &Client,
    settings: &Settings,
    hot: &HotKeySettings,
    replicas: &[String],
    ids: &[(u64, bool)],
    factor: u32,
) -> anyhow::Result<HotKeyRun> {
    let what = format!("hot key, factor {factor}");
    let bar = load::progress(ids.len() as u64, &what, settings.quiet);
    let before = match &hot.metrics {
        Some(addr) => Some(metrics::scrape(client, addr).await?),
        None => None,
    };
    let sampler = hot
        .metrics
        .as_deref()
        .map(|addr| Sampler::start(client, addr, METRICS_SAMPLE_INTERVAL));
    let (answers, elapsed) = load::keyed_burst(client, ids, settings.concurrency, &bar).await;
    let samples = match sampler {
        Some(s) => s.stop().await,
        None => Vec::new(),
    };
    let after = match &hot.metrics {
        Some(addr) => Some(metrics::scrape(client, addr).await?),
        None => None,
    };
    let failed = answers.iter().filter(|a| a.replica.is_none()).count() as u64;
    if failed > 0 {
        tracing::warn!(failed, "requests failed during A-5");
    }
    let answered_by = |name: &str, hot_only: bool| {
        answers
            .iter()
            .filter(|a| a.replica.as_deref() == Some(name) && (a.hot || !hot_only))
            .count() as u64
    };
    let p99_of = |keep: &dyn Fn(&Keyed) -> bool| {
        let ms: Vec<f64> = answers
            .iter()
            .filter(|a| a.replica.is_some() && keep(a))
            .map(|a| a.ms)
            .collect();
        percentile(&ms, LATENCY_PERCENTILE)
    };
    let all_ms: Vec<f64> = answers
        .iter()
        .filter(|a| a.replica.is_some())
        .map(|a| a.ms)
        .collect();
    let (spills, forwarded) = match (&before, &after) {
        (Some(b), Some(a)) => (
            Some(a.spills.saturating_sub(b.spills)),
            Some(delta(replicas, b, a)),
        ),
        _ => (None, None),
    };
    let (in_flight_mean, in_flight_max) = if samples.is_empty() {
        (None, None)
    } else {
        let of = |r: &String| -> Vec<u64> {
            samples
                .iter()
                .map(|s| s.in_flight.get(r).copied().unwrap_or(0))
                .collect()
        };
        (
            Some(
                replicas
                    .iter()
                    .map(|r| of(r).iter().sum::<u64>() as f64 / samples.len() as f64)
                    .collect(),
            ),
            Some(
                replicas
                    .iter()
                    .map(|r| of(r).iter().copied().max().unwrap_or(0))
                    .collect(),
            ),
        )
    };
    Ok(HotKeyRun {
        factor,
        requests: ids.len() as u64,
        hot_requests: ids.iter().filter(|(_, hot)| *hot).count() as u64,
        failed,
        seconds: elapsed.as_secs_f64(),
        counts: replicas.iter().map(|r| answered_by(r, false)).collect(),
        hot_counts: replicas.iter().map(|r| answered_by(r, true)).collect(),
        p50_ms: percentile(&all_ms, 50.0),
        p99_ms: percentile(&all_ms, LATENCY_PERCENTILE),
        p99_hot_ms: p99_of(&|a| a.hot),
        p99_other_ms: p99_of(&|a| !a.hot),
        p99_by_replica_ms: replicas
            .iter()
            .map(|r| p99_of(&|a| a.replica.as_deref() == Some(r.as_str())))
            .collect(),
        spills,
        forwarded,
        in_flight_mean,
        in_flight_max,
        in_flight_samples: samples.len(),
    })
}

/// Requests forwarded to each replica between two scrapes.
fn delta(replicas: &[String], before: &Scrape, after: &Scrape) -> Vec<u64> {
    replicas
        .iter()
        .map(|r| {
            let count = |s: &Scrape| s.requests.get(r).copied().unwrap_or(0);
            count(after).saturating_sub(count(before))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workload_carries_the_hot_key_in_the_asked_share() {
        let ids = workload(1000, 50, 424_242, 7);
        let hot: Vec<&(u64, bool)> = ids.iter().filter(|(_, h)| *h).collect();
        assert_eq!(hot.len(), 500);
        assert!(hot.iter().all(|(id, _)| *id == 424_242));
        // Evenly spread: every other request.
        assert!(
            ids.chunks(2)
                .all(|pair| pair.iter().filter(|(_, h)| *h).count() == 1)
        );
        let others: Vec<u64> = ids.iter().filter(|(_, h)| !*h).map(|(id, _)| *id).collect();
        assert!(
            others
                .iter()
                .all(|id| (100_000..1_000_000).contains(id) && *id != 424_242)
        );
        let distinct: std::collections::BTreeSet<_> = others.iter().collect();
        assert!(
            distinct.len() > 490,
            "random ids repeat: {}",
            distinct.len()
        );
        // The same seed sends the same ids: both runs of A-5 see one workload.
        assert_eq!(ids, workload(1000, 50, 424_242, 7));
        assert_eq!(
            workload(300, 30, 1, 7).iter().filter(|(_, h)| *h).count(),
            90
        );
        assert_eq!(workload(10, 0, 1, 7).iter().filter(|(_, h)| *h).count(), 0);
        assert_eq!(
            workload(10, 100, 1, 7).iter().filter(|(_, h)| *h).count(),
            10
        );
    }
}
