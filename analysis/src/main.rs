//! `analysis`: measures how ringlb's ring spreads load (tasks of
//! the assignment, and A-5: a hot key with and without bounded load) and
//! writes a report with charts.
#![forbid(unsafe_code)]

mod charts;
mod client;
mod load;
mod metrics;
mod report;
mod stats;
mod system;
mod tasks;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

use crate::client::Client;
use crate::system::{KillWith, Local};
use crate::tasks::{HotKeySettings, Settings};

/// Measure how ringlb spreads load and heals (tasks A-1..A-4), and how
/// bounded-load hashing spreads a hot key, and write REPORT.md with
/// charts (PNG and SVG) and the raw numbers (CSV, JSON).
///
/// By default it starts its own system (the control plane with local replica
/// processes and a data plane, as `make run`) and stops it at the end. With
/// --target it drives a running one, Docker mode included; it then changes
/// that system's replicas and ring configuration and leaves it at N = 3 with
/// the spec's ring and the hash_balance_factor it found.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// A running load balancer, e.g. http://localhost:5000 (default: start one).
    #[arg(long)]
    target: Option<String>,

    /// The control plane's admin API of --target (for /config), host:port.
    /// Default: the target's host, port 5100.
    #[arg(long)]
    admin: Option<String>,

    /// Requests per measurement (A-5: per run, after a warm-up of as many
    /// random-id requests, at most 1000).
    #[arg(long, default_value_t = tasks::DEFAULT_REQUESTS)]
    requests: u64,

    /// Requests in flight at once.
    #[arg(long, default_value_t = tasks::DEFAULT_CONCURRENCY)]
    concurrency: usize,

    /// Smallest N of A-2.
    #[arg(long, default_value_t = tasks::DEFAULT_N_MIN)]
    n_min: usize,

    /// Largest N of A-2.
    #[arg(long, default_value_t = tasks::DEFAULT_N_MAX)]
    n_max: usize,

    /// How A-3 kills a replica.
    #[arg(long, value_enum, default_value_t = KillWith::Auto)]
    kill: KillWith,

    /// the hot key, sent as X-Request-ID on --hot-percent of its
    /// requests (the rest carry random 6-digit ids).
    #[arg(long, default_value_t = tasks::DEFAULT_HOT_KEY)]
    hot_key: u64,

    /// the percentage of its requests that carry --hot-key (1 to 100).
    #[arg(long, default_value_t = tasks::DEFAULT_HOT_PERCENT, value_parser = clap::value_parser!(u8).range(1..=100))]
    hot_percent: u8,

    /// the hash_balance_factor (percent, at least 100) of its second
    /// run; the first runs with bounded load off (0).
    #[arg(long, default_value_t = tasks::DEFAULT_BALANCE_FACTOR, value_parser = clap::value_parser!(u32).range(100..))]
    balance_factor: u32,

    /// The data plane's Prometheus /metrics of --target (its
    /// --metrics-listen), host:port: A-5 then reports the bounded-load
    /// spills and the requests in flight per replica. Without it (and with
    /// --target) A-5 measures from the client side only. Default: none with
    /// --target; the analysis's own data plane otherwise.
    #[arg(long)]
    metrics: Option<String>,

    /// Where the report goes.
    #[arg(long, default_value = report::DEFAULT_DIR)]
    out: PathBuf,

    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.trim_end_matches('/').to_owned()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ringlb_rt::init_tracing("warn");
    charts::init_fonts()?;
    anyhow::ensure!(
        args.n_min >= 1 && args.n_min <= args.n_max,
        "--n-min must be between 1 and --n-max"
    );
    let started = Instant::now();
    let (local, client, system, metrics) = match &args.target {
        Some(target) => {
            let lb = host_port(target);
            let admin = args.admin.clone().unwrap_or_else(|| {
                let host = lb.rsplit_once(':').map_or(lb.as_str(), |(h, _)| h);
                format!("{host}:5100")
            });
            (
                None,
                Client::new(lb.clone(), admin),
                format!("the running system at {lb}"),
                args.metrics.as_deref().map(host_port),
            )
        }
        None => {
            let local = Local::start(3)
                .await
                .context("cannot start a local system")?;
            let client = Client::new(local.lb.clone(), local.admin.clone());
            let metrics = Some(local.metrics.clone());
            (
                Some(local),
                client,
                "a local system it started (process backend)".to_owned(),
                metrics,
            )
        }
    };
    let control_plane_pid = local.as_ref().and_then(|l| l.control_plane_pid);
    let outcome = run(&args, &client, system, control_plane_pid, metrics, started).await;
    if let Some(local) = local {
        local.stop().await;
    }
    let results = outcome?;
    report::write(&results, &args.out)?;
    eprintln!(
        "report written to {} in {:.0} s",
        args.out.join("REPORT.md").display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn run(
    args: &Args,
    client: &Client,
    system: String,
    control_plane_pid: Option<u32>,
    metrics: Option<String>,
    started: Instant,
) -> anyhow::Result<report::Results> {
    wait_until_serving(client).await?;
    let settings = Settings {
        requests: args.requests,
        concurrency: args.concurrency,
        n_range: (args.n_min..=args.n_max).collect(),
        kill_with: args.kill,
        control_plane_pid,
        quiet: args.quiet,
    };
    let spec = tasks::spec_setup();
    // A-1..A-4 measure the ring itself: bounded load off until A-5, and the
    // factor found put back at the end.
    let factor_found = client.hash_balance_factor().await?;
    client.set_config(&spec.patch).await?;
    client.set_config(&tasks::factor_patch(0)).await?;
    client.scale_to(3).await?;
    let a1 = tasks::distribution(client, &settings, &spec.name).await?;
    let a2 = tasks::scaling(client, &settings, &spec.name).await?;
    let endpoints = tasks::endpoints(client).await?;
    let recovery = tasks::recovery(client, &settings).await?;
    let mut a4 = Vec::new();
    for setup in tasks::alternative_setups() {
        a4.push(tasks::compare(client, &settings, &setup).await?);
    }
    let hot = HotKeySettings {
        key: args.hot_key,
        percent: args.hot_percent,
        factor: args.balance_factor,
        metrics,
    };
    let a5 = tasks::hot_key(client, &settings, &hot).await?;
    client.set_config(&spec.patch).await?;
    client
        .set_config(&tasks::factor_patch(factor_found))
        .await?;
    client.scale_to(3).await?;
    let flags: Vec<String> = std::env::args().skip(1).collect();
    let command = format!("analysis {}", flags.join(" "));
    Ok(report::Results {
        command: command.trim_end().to_owned(),
        system,
        requests: args.requests,
        concurrency: args.concurrency,
        seconds: started.elapsed().as_secs_f64(),
        factor_found,
        a1,
        a2,
        endpoints,
        recovery,
        a4,
        a5,
    })
}

async fn wait_until_serving(client: &Client) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.home().await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context("the load balancer does not serve /home"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
