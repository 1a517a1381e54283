//! The report: Markdown whose every observation is computed from the
//! measured data, plus the charts and the raw numbers beside it.

use std::fmt::Write;
use std::path::Path;

use serde::Serialize;

use crate::charts::{self, Band, Bars, Lines, Panels, Timeline};
use crate::stats::percent;
use crate::tasks::{Comparison, Distribution, EndpointCase, Recovery};

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
    pub a1: Distribution,
    pub a2: Vec<Distribution>,
    pub endpoints: Vec<EndpointCase>,
    pub recovery: Recovery,
    pub a4: Vec<Comparison>,
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
         [`results.json`](results.json), [`distributions.csv`](distributions.csv), [`spread.csv`](spread.csv) and \
         [`a3_timeline.csv`](a3_timeline.csv). Charts are PNG, with an SVG of each beside it.\n",
        r.command, r.system, r.requests, r.concurrency, r.seconds
    );

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
    out
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
}
