//! The report: Markdown whose every observation is computed from the
//! measured data, plus the charts and the raw numbers beside it.

use std::fmt::Write;
use std::path::Path;

use serde::Serialize;

use crate::charts::{self, Band, Bars, GroupedBars, Lines, Panels, Timeline};
use crate::stats::percent;
use crate::tasks::{
    Comparison, Distribution, EndpointCase, HotKey, HotKeyRun, LATENCY_PERCENTILE, Recovery,
};

/// Where the report goes by default (relative to the working directory).
pub const DEFAULT_DIR: &str = "analysis/report";

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct Results {
    pub command: String,
    pub system: String,
    pub requests: u64,
    pub concurrency: usize,
    pub seconds: f64,
    /// The `hash_balance_factor` in force when the run started (off during
    /// A-1..A-4, put back at the end).
    pub factor_found: u32,
    pub a1: Distribution,
    pub a2: Vec<Distribution>,
    pub endpoints: Vec<EndpointCase>,
    pub recovery: Recovery,
    pub a4: Vec<Comparison>,
    pub a5: HotKey,
}

fn a1_chart(d: &Distribution, title: &str) -> Bars {
    Bars {
        title: title.to_owned(),
        labels: d.replicas.clone(),
        values: d.counts.clone(),
        fair_share: Some(d.spread.total as f64 / d.n.max(1) as f64),
    }
}

fn a2_chart(runs: &[Distribution], title: &str) -> Band {
    Band {
        title: title.to_owned(),
        n: runs.iter().map(|d| d.n as u32).collect(),
        mean: runs.iter().map(|d| d.spread.mean).collect(),
        min: runs.iter().map(|d| d.spread.min as f64).collect(),
        max: runs.iter().map(|d| d.spread.max as f64).collect(),
    }
}

/// Write every chart, the CSVs, results.json and REPORT.md into `dir`.
pub fn write(results: &Results, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let a1_title = format!(
        "A-1: {} requests over N = {} (spec ring)",
        results.requests, results.a1.n
    );
    charts::save(&a1_chart(&results.a1, &a1_title), dir, "a1_distribution")?;
    charts::save(
        &a2_chart(&results.a2, "A-2: load per replica as N grows (spec ring)"),
        dir,
        "a2_scaling",
    )?;
    let r = &results.recovery;
    charts::save(
        &Timeline {
            title: format!(
                "A-3: requests per replica around `{}` of {}",
                r.how, r.killed
            ),
            t: r.t.clone(),
            series: r.series.clone(),
            markers: vec![
                (0.0, "killed".into()),
                (r.off_ring_ms / 1000.0, "off the ring".into()),
                (r.restored_ms / 1000.0, "N restored".into()),
            ],
            bucket_ms: r.bucket_ms,
        },
        dir,
        "a3_recovery",
    )?;
    let mut all = vec![("spec, M=512, K=9".to_owned(), &results.a1, &results.a2)];
    all.extend(
        results
            .a4
            .iter()
            .map(|c| (c.setup.name.clone(), &c.a1, &c.a2)),
    );
    charts::save(
        &Panels {
            charts: all
                .iter()
                .map(|(name, a1, _)| a1_chart(a1, &format!("A-1, {name}")))
                .collect(),
            columns: 2,
        },
        dir,
        "a4_distribution",
    )?;
    charts::save(
        &Panels {
            charts: all
                .iter()
                .map(|(name, _, a2)| a2_chart(a2, &format!("A-2, {name}")))
                .collect(),
            columns: 2,
        },
        dir,
        "a4_scaling",
    )?;
    let n: Vec<u32> = results.a2.iter().map(|d| d.n as u32).collect();
    charts::save(
        &Lines {
            title: "A-4: coefficient of variation of per-replica load (lower is more even)".into(),
            y_desc: "CV = std / mean".into(),
            n: n.clone(),
            series: all
                .iter()
                .map(|(name, _, a2)| (name.clone(), a2.iter().map(|d| d.spread.cv).collect()))
                .collect(),
        },
        dir,
        "a4_cv",
    )?;
    charts::save(
        &Lines {
            title: "A-4: busiest replica over the mean (1 = perfectly even)".into(),
            y_desc: "max / mean".into(),
            n,
            series: all
                .iter()
                .map(|(name, _, a2)| {
                    (
                        name.clone(),
                        a2.iter().map(|d| d.spread.max_over_mean).collect(),
                    )
                })
                .collect(),
        },
        dir,
        "a4_max_over_mean",
    )?;
    a5_charts(&results.a5, dir)?;
    write_csvs(results, dir)?;
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(results)?,
    )?;
    std::fs::write(dir.join("REPORT.md"), markdown(results))?;
    Ok(())
}

fn write_csvs(results: &Results, dir: &Path) -> anyhow::Result<()> {
    let mut dist = String::from("task,config,n,replica,requests,share_percent\n");
    let mut push = |task: &str, d: &Distribution| {
        for (name, count) in d.replicas.iter().zip(&d.counts) {
            let _ = writeln!(
                dist,
                "{task},{},{},{name},{count},{:.3}",
                d.config,
                d.n,
                percent(*count, d.spread.total)
            );
        }
    };
    push("A-1", &results.a1);
    for d in &results.a2 {
        push("A-2", d);
    }
    for c in &results.a4 {
        push("A-4/A-1", &c.a1);
        for d in &c.a2 {
            push("A-4/A-2", d);
        }
    }
    std::fs::write(dir.join("distributions.csv"), dist)?;

    let mut spread = String::from("config,n,total,mean,min,max,std_dev,cv,max_over_mean,failed\n");
    let mut push = |d: &Distribution| {
        let s = &d.spread;
        let _ = writeln!(
            spread,
            "{},{},{},{:.1},{},{},{:.1},{:.4},{:.4},{}",
            d.config,
            d.n,
            s.total,
            s.mean,
            s.min,
            s.max,
            s.std_dev,
            s.cv,
            s.max_over_mean,
            d.failed
        );
    };
    results.a2.iter().for_each(&mut push);
    results
        .a4
        .iter()
        .flat_map(|c| c.a2.iter())
        .for_each(&mut push);
    std::fs::write(dir.join("spread.csv"), spread)?;

    let r = &results.recovery;
    let mut timeline = String::from("seconds_from_kill");
    for (name, _) in &r.series {
        let _ = write!(timeline, ",{name}");
    }
    timeline.push('\n');
    for (i, t) in r.t.iter().enumerate() {
        let _ = write!(timeline, "{t:.1}");
        for (_, values) in &r.series {
            let _ = write!(timeline, ",{}", values.get(i).copied().unwrap_or(0));
        }
        timeline.push('\n');
    }
    std::fs::write(dir.join("a3_timeline.csv"), timeline)?;
    std::fs::write(dir.join("a5_hot_key.csv"), a5_csv(&results.a5))?;
    Ok(())
}

fn distribution_table(out: &mut String, d: &Distribution) {
    let fair = 100.0 / d.n.max(1) as f64;
    let _ = writeln!(
        out,
        "| replica | requests | share | vs fair share ({fair:.1} %) |\n|---|---:|---:|---:|"
    );
    for (name, &count) in d.replicas.iter().zip(&d.counts) {
        let share = percent(count, d.spread.total);
        let _ = writeln!(
            out,
            "| {name} | {count} | {share:.1} % | {:.2}× |",
            share / fair
        );
    }
    let _ = writeln!(out);
}

/// Sentences about one distribution, from its numbers.
fn describe(d: &Distribution) -> String {
    let (mut busiest, mut idlest) = (0, 0);
    for (i, &c) in d.counts.iter().enumerate() {
        if c > d.counts[busiest] {
            busiest = i;
        }
        if c < d.counts[idlest] {
            idlest = i;
        }
    }
    let fair = 100.0 / d.n.max(1) as f64;
    let share = |i: usize| percent(d.counts[i], d.spread.total);
    format!(
        "{} answered the most requests, {} ({:.1} %), {:.2}× its fair share of {fair:.1} %; {} the fewest, {} ({:.1} %). \
         The coefficient of variation is {:.3} and the busiest replica carries {:.2}× the mean load.{}",
        d.replicas[busiest],
        d.counts[busiest],
        share(busiest),
        share(busiest) / fair,
        d.replicas[idlest],
        d.counts[idlest],
        share(idlest),
        d.spread.cv,
        d.spread.max_over_mean,
        if d.failed > 0 {
            format!(" {} requests failed.", d.failed)
        } else {
            " No request failed.".to_owned()
        },
    )
}

fn describe_scaling(runs: &[Distribution]) -> String {
    let (Some(first), Some(last)) = (runs.first(), runs.last()) else {
        return String::new();
    };
    let worst = runs
        .iter()
        .max_by(|a, b| a.spread.max_over_mean.total_cmp(&b.spread.max_over_mean))
        .unwrap_or(first);
    let best = runs
        .iter()
        .min_by(|a, b| a.spread.cv.total_cmp(&b.spread.cv))
        .unwrap_or(first);
    let busiest_share: Vec<String> = runs
        .iter()
        .map(|d| {
            format!(
                "{:.0} % at N = {}",
                percent(d.spread.max, d.spread.total),
                d.n
            )
        })
        .collect();
    format!(
        "As N went from {} to {}, the fair share fell from {:.0} to {:.0} requests per replica, but the busiest replica took {}. \
         The coefficient of variation went from {:.3} (N = {}) to {:.3} (N = {}); the most even N was {} (CV {:.3}) \
         and the least even, by max/mean, N = {} ({:.2}× the mean).",
        first.n,
        last.n,
        first.spread.mean,
        last.spread.mean,
        busiest_share.join(", "),
        first.spread.cv,
        first.n,
        last.spread.cv,
        last.n,
        best.n,
        best.spread.cv,
        worst.n,
        worst.spread.max_over_mean,
    )
}

fn mean_cv(runs: &[Distribution]) -> f64 {
    runs.iter().map(|d| d.spread.cv).sum::<f64>() / runs.len().max(1) as f64
}

fn worst_max_over_mean(runs: &[Distribution]) -> f64 {
    runs.iter()
        .map(|d| d.spread.max_over_mean)
        .fold(0.0, f64::max)
}

fn markdown(r: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# ringlb load analysis\n");
    let _ = writeln!(
        out,
        "Made by `{}` against {}: {} requests per measurement, at most {} in flight; the whole run took {:.0} s. \
         Every number and sentence below is computed from this run's measurements; the raw data is in \
         [`results.json`](results.json), [`distributions.csv`](distributions.csv), [`spread.csv`](spread.csv), \
         [`a3_timeline.csv`](a3_timeline.csv) and [`a5_hot_key.csv`](a5_hot_key.csv). Charts are PNG, with an SVG of each beside it.\n",
        r.command, r.system, r.requests, r.concurrency, r.seconds
    );
    if r.factor_found != 0 {
        let _ = writeln!(
            out,
            "Bounded load was on when the run started (`hash_balance_factor` {}): it was off for A-1 to A-4, and put \
             back at the end.\n",
            r.factor_found
        );
    }

    let _ = writeln!(out, "## A-1: {} requests over three replicas\n", r.requests);
    let _ = writeln!(out, "![A-1](a1_distribution.png)\n");
    distribution_table(&mut out, &r.a1);
    let _ = writeln!(out, "{}\n", describe(&r.a1));

    let _ = writeln!(
        out,
        "## A-2: N = {} to {}\n",
        r.a2.first().map_or(0, |d| d.n),
        r.a2.last().map_or(0, |d| d.n)
    );
    let _ = writeln!(out, "![A-2](a2_scaling.png)\n");
    let _ = writeln!(
        out,
        "| N | requests per replica (oldest first) | mean | min | max | CV | max / mean |\n|---:|---|---:|---:|---:|---:|---:|"
    );
    for d in &r.a2 {
        let per: Vec<String> = d
            .replicas
            .iter()
            .zip(&d.counts)
            .map(|(n, c)| format!("{n}: {c}"))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {} | {:.3} | {:.2} |",
            d.n,
            per.join(", "),
            d.spread.mean,
            d.spread.min,
            d.spread.max,
            d.spread.cv,
            d.spread.max_over_mean
        );
    }
    let _ = writeln!(out, "\n{}\n", describe_scaling(&r.a2));

    let _ = writeln!(out, "## A-3: endpoints and failure recovery\n");
    let _ = writeln!(
        out,
        "| case | request | status | body |\n|---|---|---:|---|"
    );
    for c in &r.endpoints {
        let body = c.body.replace('|', "\\|");
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | `{}` |",
            c.what,
            c.request.replace('|', "\\|"),
            c.status,
            body
        );
    }
    let rec = &r.recovery;
    let _ = writeln!(out, "\n![A-3](a3_recovery.png)\n");
    let _ = writeln!(
        out,
        "With {} clients sending `/home` back to back, `{}` of {} took it off the ring after {:.0} ms and N was back at {} \
         after {:.0} ms{}. Of {} requests in the stream, {} failed ({:.3} %). Replicas before: {}; after: {}.\n",
        rec.clients,
        rec.how,
        rec.killed,
        rec.off_ring_ms,
        rec.before.len(),
        rec.restored_ms,
        rec.replacement
            .as_ref()
            .map(|n| format!(", with the new replica {n}"))
            .unwrap_or_default(),
        rec.requests,
        rec.failed,
        percent(rec.failed, rec.requests),
        rec.before.join(", "),
        rec.after.join(", "),
    );

    let _ = writeln!(out, "## A-4: other hash functions and more virtual nodes\n");
    let _ = writeln!(
        out,
        "Switched at run time through the control plane's `PUT /config`, no rebuild.\n"
    );
    let _ = writeln!(
        out,
        "![A-4 distributions](a4_distribution.png)\n\n![A-4 scaling](a4_scaling.png)\n"
    );
    let _ = writeln!(
        out,
        "![A-4 CV](a4_cv.png)\n\n![A-4 max/mean](a4_max_over_mean.png)\n"
    );
    let _ = writeln!(
        out,
        "| configuration | CV at N = 3 (A-1) | max / mean at N = 3 | mean CV, N = {}..{} | worst max / mean |\n|---|---:|---:|---:|---:|",
        r.a2.first().map_or(0, |d| d.n),
        r.a2.last().map_or(0, |d| d.n)
    );
    let mut rows = vec![("spec, M=512, K=9".to_owned(), &r.a1, &r.a2)];
    rows.extend(r.a4.iter().map(|c| (c.setup.name.clone(), &c.a1, &c.a2)));
    for (name, a1, a2) in &rows {
        let _ = writeln!(
            out,
            "| {name} | {:.3} | {:.2} | {:.3} | {:.2} |",
            a1.spread.cv,
            a1.spread.max_over_mean,
            mean_cv(a2),
            worst_max_over_mean(a2)
        );
    }
    let spec_cv = mean_cv(&r.a2);
    if let Some((name, _, a2)) = rows
        .iter()
        .skip(1)
        .min_by(|a, b| mean_cv(a.2).total_cmp(&mean_cv(b.2)))
    {
        let best = mean_cv(a2);
        let _ = writeln!(
            out,
            "\nThe most even configuration was {name}: a mean CV of {best:.3} over N = {}..{} against {spec_cv:.3} for the spec's \
             functions ({:.1}× more even), and its busiest replica never carried more than {:.2}× the mean (spec: {:.2}×).",
            r.a2.first().map_or(0, |d| d.n),
            r.a2.last().map_or(0, |d| d.n),
            if best > 0.0 {
                spec_cv / best
            } else {
                f64::INFINITY
            },
            worst_max_over_mean(a2),
            worst_max_over_mean(&r.a2),
        );
    }
    for c in &r.a4 {
        let _ = writeln!(out, "\n**{}** at N = 3: {}", c.setup.name, describe(&c.a1));
    }
    a5_markdown(&mut out, &r.a5, r.concurrency);
    out
}

/// A replica's name, marked when it owns the hot key.
fn a5_label(h: &HotKey, i: usize) -> String {
    let name = h.replicas.get(i).cloned().unwrap_or_default();
    if i == h.owner_index() {
        format!("{name} (owner)")
    } else {
        name
    }
}

fn off_on_legends(h: &HotKey) -> (String, String) {
    (
        "bounded load off".to_owned(),
        format!("hash_balance_factor {}", h.factor),
    )
}

fn answered(run: &HotKeyRun) -> u64 {
    run.counts.iter().sum()
}

fn a5_charts(h: &HotKey, dir: &Path) -> anyhow::Result<()> {
    let (off, on) = off_on_legends(h);
    let shares = |run: &HotKeyRun| -> Vec<Option<f64>> {
        run.counts
            .iter()
            .map(|&c| Some(percent(c, answered(run))))
            .collect()
    };
    let labels: Vec<String> = (0..h.replicas.len()).map(|i| a5_label(h, i)).collect();
    charts::save(
        &GroupedBars {
            title: format!(
                "A-5: share of requests per replica, {} % with X-Request-ID {}",
                h.hot_percent, h.hot_key
            ),
            y_desc: "share of the requests answered (%)".into(),
            labels: labels.clone(),
            groups: vec![(off.clone(), shares(&h.off)), (on.clone(), shares(&h.on))],
            decimals: 1,
            unit: "%".into(),
            reference: Some((
                format!(
                    "fair share ({:.1} %)",
                    100.0 / h.replicas.len().max(1) as f64
                ),
                100.0 / h.replicas.len().max(1) as f64,
            )),
        },
        dir,
        "a5_distribution",
    )?;
    let p99s = |run: &HotKeyRun| -> Vec<Option<f64>> {
        let mut v = run.p99_by_replica_ms.clone();
        v.extend([run.p99_ms, run.p99_hot_ms, run.p99_other_ms]);
        v
    };
    let mut labels = labels;
    labels.extend([
        "all requests".to_owned(),
        "hot key".to_owned(),
        "other keys".to_owned(),
    ]);
    charts::save(
        &GroupedBars {
            title: "A-5: p99 latency by replica and by key, bounded load off and on".into(),
            y_desc: "p99 latency (ms)".into(),
            labels,
            groups: vec![(off, p99s(&h.off)), (on, p99s(&h.on))],
            decimals: 1,
            unit: String::new(),
            reference: None,
        },
        dir,
        "a5_p99",
    )
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.2}"))
}

fn a5_csv(h: &HotKey) -> String {
    let mut csv = String::from(
        "factor,replica,owner,requests,share_percent,hot_key_requests,p99_ms,forwarded,mean_in_flight,max_in_flight\n",
    );
    for run in [&h.off, &h.on] {
        let total = answered(run);
        for (i, name) in h.replicas.iter().enumerate() {
            let count = run.counts.get(i).copied().unwrap_or(0);
            let opt = |v: Option<String>| v.unwrap_or_default();
            let _ = writeln!(
                csv,
                "{},{name},{},{count},{:.3},{},{},{},{},{}",
                run.factor,
                i == h.owner_index(),
                percent(count, total),
                run.hot_counts.get(i).copied().unwrap_or(0),
                opt(run
                    .p99_by_replica_ms
                    .get(i)
                    .copied()
                    .flatten()
                    .map(|v| format!("{v:.3}"))),
                opt(run
                    .forwarded
                    .as_ref()
                    .and_then(|f| f.get(i))
                    .map(u64::to_string)),
                opt(run
                    .in_flight_mean
                    .as_ref()
                    .and_then(|f| f.get(i))
                    .map(|v| format!("{v:.2}"))),
                opt(run
                    .in_flight_max
                    .as_ref()
                    .and_then(|f| f.get(i))
                    .map(u64::to_string)),
            );
        }
        let _ = writeln!(
            csv,
            "{},all,false,{total},100.000,{},{},{},,",
            run.factor,
            run.hot_counts.iter().sum::<u64>(),
            run.p99_ms.map(|v| format!("{v:.3}")).unwrap_or_default(),
            run.forwarded
                .as_ref()
                .map(|f| f.iter().sum::<u64>().to_string())
                .unwrap_or_default(),
        );
    }
    csv
}

/// The mean in-flight count of the owner and the mean of the others' means.
fn in_flight_owner_others(h: &HotKey, run: &HotKeyRun) -> Option<(f64, u64, f64)> {
    let means = run.in_flight_mean.as_ref()?;
    let maxes = run.in_flight_max.as_ref()?;
    let o = h.owner_index();
    let others: Vec<f64> = means
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != o)
        .map(|(_, m)| *m)
        .collect();
    Some((
        *means.get(o)?,
        *maxes.get(o)?,
        others.iter().sum::<f64>() / others.len().max(1) as f64,
    ))
}

/// Below this mean number of requests in flight at the owner, the report
/// says requests hardly queued there.
const QUEUEING_IN_FLIGHT: f64 = 1.0;

/// Sentences about A-5, from its numbers.
fn describe_hot_key(h: &HotKey, concurrency: usize) -> Vec<String> {
    let o = h.owner_index();
    let (off, on) = (&h.off, &h.on);
    let share =
        |run: &HotKeyRun, i: usize| percent(run.counts.get(i).copied().unwrap_or(0), answered(run));
    let hot_share = |run: &HotKeyRun, i: usize| {
        percent(
            run.hot_counts.get(i).copied().unwrap_or(0),
            run.hot_counts.iter().sum(),
        )
    };
    let fair = 100.0 / h.replicas.len().max(1) as f64;
    let mut out = Vec::new();
    out.push(format!(
        "After {} unmeasured requests with random ids, each run sent {} requests, at most {concurrency} in flight, on \
         the {} ring at N = {}: {} of them ({} %) with `X-Request-ID: {}`, the others with random 6-digit ids (the same \
         ids in both runs). With bounded load off, {} answered {:.1} % of the hot-key requests: it owns the key.",
        h.warmup,
        off.requests,
        h.config,
        h.replicas.len(),
        off.hot_requests,
        h.hot_percent,
        h.hot_key,
        h.owner,
        hot_share(off, o),
    ));
    let others_on: Vec<String> = h
        .replicas
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != o)
        .map(|(i, name)| format!("{name} {:.1} %", hot_share(on, i)))
        .collect();
    out.push(format!(
        "With factor {} the hot key's owner {} served {:.1} % of all requests instead of {:.1} % ({:.2}× instead of \
         {:.2}× its fair share of {fair:.1} %), and {:.1} % of the hot-key requests instead of {:.1} % (the rest: {}).",
        h.factor,
        h.owner,
        share(on, o),
        share(off, o),
        share(on, o) / fair,
        share(off, o) / fair,
        hot_share(on, o),
        hot_share(off, o),
        others_on.join(", "),
    ));
    match (off.spills, on.spills) {
        (Some(s_off), Some(s_on)) => out.push(format!(
            "The data plane counted {s_on} bounded-load spills with the factor on ({:.1} % of the requests) and \
             {s_off} with it off.",
            percent(s_on, on.requests)
        )),
        _ => out.push(
            "The data plane's `/metrics` was not read (`--target` without `--metrics`), so the spills and the \
             requests in flight per replica were not measured; shares and latencies come from the answers."
                .to_owned(),
        ),
    }
    if let (Some(f_off), Some(f_on)) = (&off.forwarded, &on.forwarded) {
        let pct = |f: &Vec<u64>| percent(f.get(o).copied().unwrap_or(0), f.iter().sum());
        out.push(format!(
            "The data plane's own counters (`ringlb_upstream_requests_total`) give {} {:.1} % of the requests it \
             forwarded with the factor off and {:.1} % with it on.",
            h.owner,
            pct(f_off),
            pct(f_on)
        ));
    }
    if let (Some((m_off, x_off, r_off)), Some((m_on, x_on, r_on))) = (
        in_flight_owner_others(h, off),
        in_flight_owner_others(h, on),
    ) {
        out.push(format!(
            "Sampled every {} ms ({} and {} samples), {} had on average {m_off:.1} requests in flight at the data plane \
             with the factor off (at most {x_off}) against {r_off:.1} for each other replica; with the factor on, \
             {m_on:.1} (at most {x_on}) against {r_on:.1}.",
            crate::tasks::METRICS_SAMPLE_INTERVAL.as_millis(),
            off.in_flight_samples,
            on.in_flight_samples,
            h.owner,
        ));
        out.push(if m_off < QUEUEING_IN_FLIGHT {
            format!(
                "Requests hardly queued: with fewer than {QUEUEING_IN_FLIGHT:.0} request in flight at the owner on \
                 average, the replicas answered about as fast as requests came, so bounded load had little queue to \
                 cut at this concurrency."
            )
        } else {
            format!(
                "Requests did queue on the owner: with the factor off it held {:.1}× the in-flight requests of \
                 each other replica, {:.1}× with the factor on.",
                m_off / r_off.max(f64::MIN_POSITIVE),
                m_on / r_on.max(f64::MIN_POSITIVE),
            )
        });
    }
    let change = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => format!(
            "from {a:.2} ms to {b:.2} ms ({}{:.0} %)",
            if b >= a { "+" } else { "−" },
            (100.0 * (b - a) / a).abs()
        ),
        _ => format!("from {} ms to {} ms", ms(a), ms(b)),
    };
    out.push(format!(
        "The p99 latency of all requests went {}; of the hot-key requests {}; of the other keys {}; of the requests \
         {} answered {}.",
        change(off.p99_ms, on.p99_ms),
        change(off.p99_hot_ms, on.p99_hot_ms),
        change(off.p99_other_ms, on.p99_other_ms),
        h.owner,
        change(
            off.p99_by_replica_ms.get(o).copied().flatten(),
            on.p99_by_replica_ms.get(o).copied().flatten()
        ),
    ));
    let n = answered(off);
    let slowest = n + 1 - ((LATENCY_PERCENTILE / 100.0) * n as f64).ceil().max(1.0) as u64;
    out.push(format!(
        "Each p99 is a nearest rank: of all {n} answers of a run, at most {} were slower, so a few slow answers \
         (on the shared cores of client, data plane and replicas) move it; the p99 of one replica or one kind of key \
         rests on fewer answers still.",
        slowest.min(n).saturating_sub(1)
    ));
    out.push(if off.failed + on.failed == 0 {
        "No request failed.".to_owned()
    } else {
        format!(
            "{} requests failed with the factor off, {} with it on.",
            off.failed, on.failed
        )
    });
    out.push(format!(
        "Afterwards A-5 put the hash_balance_factor back to the {} it found.",
        h.factor_before
    ));
    out
}

fn a5_markdown(out: &mut String, h: &HotKey, concurrency: usize) {
    let _ = writeln!(out, "\n## A-5: a hot key with and without bounded load\n");
    let _ = writeln!(
        out,
        "The same workload twice against the same system: bounded load off (`hash_balance_factor` 0), then \
         `PUT /config {{\"hash_balance_factor\": {}}}`. A replica then takes a request only while its in-flight requests \
         stay within {} % of the average per replica on the data plane; the rest go to the next distinct replica \
         clockwise.\n",
        h.factor, h.factor
    );
    let _ = writeln!(
        out,
        "![A-5 shares](a5_distribution.png)\n\n![A-5 p99](a5_p99.png)\n"
    );
    let (off, on) = (&h.off, &h.on);
    let _ = writeln!(
        out,
        "| replica | requests, off | share, off | requests, factor {f} | share, factor {f} | hot key, off | hot key, factor {f} | p99 ms, off | p99 ms, factor {f} | mean in flight, off | mean in flight, factor {f} |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f = h.factor
    );
    let flight = |run: &HotKeyRun, i: usize| {
        run.in_flight_mean
            .as_ref()
            .and_then(|m| m.get(i))
            .map_or_else(|| "–".to_owned(), |m| format!("{m:.1}"))
    };
    for i in 0..h.replicas.len() {
        let c = |run: &HotKeyRun| run.counts.get(i).copied().unwrap_or(0);
        let hc = |run: &HotKeyRun| run.hot_counts.get(i).copied().unwrap_or(0);
        let p = |run: &HotKeyRun| run.p99_by_replica_ms.get(i).copied().flatten();
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} % | {} | {:.1} % | {} | {} | {} | {} | {} | {} |",
            a5_label(h, i),
            c(off),
            percent(c(off), answered(off)),
            c(on),
            percent(c(on), answered(on)),
            hc(off),
            hc(on),
            ms(p(off)),
            ms(p(on)),
            flight(off, i),
            flight(on, i),
        );
    }
    let _ = writeln!(
        out,
        "| all | {} | 100 % | {} | 100 % | {} | {} | {} | {} | | |\n",
        answered(off),
        answered(on),
        off.hot_counts.iter().sum::<u64>(),
        on.hot_counts.iter().sum::<u64>(),
        ms(off.p99_ms),
        ms(on.p99_ms),
    );
    let _ = writeln!(out, "{}", describe_hot_key(h, concurrency).join(" "));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Spread;

    fn dist(counts: &[u64]) -> Distribution {
        Distribution {
            config: "spec".into(),
            n: counts.len(),
            replicas: (1..=counts.len()).map(|i| format!("server-{i}")).collect(),
            counts: counts.to_vec(),
            failed: 0,
            spread: Spread::of(counts).expect("replicas"),
            seconds: 1.0,
        }
    }

    #[test]
    fn observations_come_from_the_numbers() {
        let text = describe(&dist(&[8438, 469, 1093]));
        assert!(
            text.starts_with(
                "server-1 answered the most requests, 8438 (84.4 %), 2.53× its fair share of 33.3 %"
            ),
            "{text}"
        );
        assert!(text.contains("server-2 the fewest, 469 (4.7 %)"), "{text}");
        let scaling = describe_scaling(&[dist(&[6000, 4000]), dist(&[5000, 2500, 2500])]);
        assert!(
            scaling.starts_with("As N went from 2 to 3, the fair share fell from 5000 to 3333"),
            "{scaling}"
        );
        assert!(
            scaling.contains("60 % at N = 2, 50 % at N = 3"),
            "{scaling}"
        );
    }

    fn run(factor: u32, counts: [u64; 3], hot: [u64; 3], in_flight: Option<[f64; 3]>) -> HotKeyRun {
        HotKeyRun {
            factor,
            requests: counts.iter().sum(),
            hot_requests: hot.iter().sum(),
            failed: 0,
            seconds: 1.0,
            counts: counts.to_vec(),
            hot_counts: hot.to_vec(),
            p50_ms: Some(1.0),
            p99_ms: Some(10.0 - f64::from(factor) / 50.0),
            p99_hot_ms: Some(12.0),
            p99_other_ms: Some(8.0),
            p99_by_replica_ms: vec![Some(5.0), Some(12.0), None],
            spills: in_flight.map(|_| u64::from(factor) * 2),
            forwarded: in_flight.map(|_| counts.to_vec()),
            in_flight_mean: in_flight.map(|m| m.to_vec()),
            in_flight_max: in_flight.map(|m| m.iter().map(|v| *v as u64 * 2).collect()),
            in_flight_samples: if in_flight.is_some() { 40 } else { 0 },
        }
    }

    fn hot_key(off: HotKeyRun, on: HotKeyRun) -> HotKey {
        HotKey {
            config: "xxh3".into(),
            hot_key: 7,
            hot_percent: 50,
            factor: 150,
            warmup: 100,
            factor_before: 0,
            replicas: vec!["a".into(), "b".into(), "c".into()],
            owner: "b".into(),
            metrics: None,
            off,
            on,
        }
    }

    #[test]
    fn hot_key_observations_come_from_the_numbers() {
        let h = hot_key(
            run(0, [200, 700, 100], [0, 500, 0], Some([2.0, 30.0, 4.0])),
            run(150, [250, 450, 300], [0, 300, 200], Some([5.0, 15.0, 10.0])),
        );
        let text = describe_hot_key(&h, 64).join(" ");
        assert!(
            text.contains("b answered 100.0 % of the hot-key requests"),
            "{text}"
        );
        assert!(
            text.contains("the hot key's owner b served 45.0 % of all requests instead of 70.0 %"),
            "{text}"
        );
        assert!(
            text.contains(
                "60.0 % of the hot-key requests instead of 100.0 % (the rest: a 0.0 %, c 40.0 %)"
            ),
            "{text}"
        );
        assert!(text.contains("300 bounded-load spills with the factor on (30.0 % of the requests) and 0 with it off"), "{text}");
        assert!(
            text.contains("on average 30.0 requests in flight"),
            "{text}"
        );
        assert!(
            text.contains("Requests did queue on the owner: with the factor off it held 10.0×"),
            "{text}"
        );
        assert!(text.contains("from 10.00 ms to 7.00 ms (−30 %)"), "{text}");
        assert!(
            text.contains("of all 1000 answers of a run, at most 10 were slower"),
            "{text}"
        );
        assert_eq!(h.owner_index(), 1);
        let csv = a5_csv(&h);
        assert!(
            csv.contains("\n0,b,true,700,70.000,500,12.000,700,30.00,60\n"),
            "{csv}"
        );

        // Replicas that answer at once: the report says there was no queue.
        let idle = hot_key(
            run(0, [300, 400, 300], [0, 400, 0], Some([0.1, 0.4, 0.1])),
            run(150, [300, 400, 300], [0, 400, 0], Some([0.1, 0.3, 0.1])),
        );
        let text = describe_hot_key(&idle, 64).join(" ");
        assert!(text.contains("Requests hardly queued"), "{text}");

        // Without /metrics, nothing is claimed about spills or queues.
        let blind = hot_key(
            run(0, [200, 700, 100], [0, 500, 0], None),
            run(150, [250, 450, 300], [0, 300, 200], None),
        );
        let text = describe_hot_key(&blind, 64).join(" ");
        assert!(text.contains("`/metrics` was not read"), "{text}");
        assert!(!text.contains("in flight at the data plane"), "{text}");
    }
}
