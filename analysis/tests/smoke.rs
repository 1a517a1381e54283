//! A short run of every task (few requests, N = 2..3) against a real local
//! system the analysis starts itself: the report, charts and raw data appear
//! and agree with each other.

use std::process::Command;

#[test]
fn a_short_run_writes_the_whole_report() {
    let out = std::env::temp_dir().join(format!("ringlb-analysis-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new(env!("CARGO_BIN_EXE_analysis"))
        .args([
            "--requests",
            "300",
            "--concurrency",
            "20",
            "--n-max",
            "3",
            "--quiet",
            "--out",
        ])
        .arg(&out)
        .status()
        .expect("analysis runs");
    assert!(status.success(), "analysis exited with {status}");

    for chart in [
        "a1_distribution",
        "a2_scaling",
        "a3_recovery",
        "a4_distribution",
        "a4_scaling",
        "a4_cv",
        "a4_max_over_mean",
        "a5_distribution",
        "a5_p99",
    ] {
        let png = std::fs::read(out.join(format!("{chart}.png"))).expect("png written");
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000,
            "{chart}.png is not a real picture"
        );
        let svg = std::fs::read_to_string(out.join(format!("{chart}.svg"))).expect("svg written");
        assert!(svg.contains("<svg"), "{chart}.svg");
    }
    let report = std::fs::read_to_string(out.join("REPORT.md")).expect("report written");
    for heading in ["## A-1", "## A-2", "## A-3", "## A-4", "## A-5"] {
        assert!(report.contains(heading), "{heading} missing");
    }

    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).expect("json"))
            .expect("valid json");
    let a1_counts: Vec<u64> = results["a1"]["counts"]
        .as_array()
        .expect("counts")
        .iter()
        .map(|c| c.as_u64().expect("count"))
        .collect();
    assert_eq!(a1_counts.len(), 3);
    assert_eq!(
        a1_counts.iter().sum::<u64>() + results["a1"]["failed"].as_u64().expect("failed"),
        300
    );
    let a2: Vec<u64> = results["a2"]
        .as_array()
        .expect("a2")
        .iter()
        .map(|d| d["n"].as_u64().expect("n"))
        .collect();
    assert_eq!(a2, [2, 3]);
    let recovery = &results["recovery"];
    assert_eq!(
        recovery["failed"], 0,
        "requests failed around the kill: {recovery}"
    );
    assert!(
        recovery["restored_ms"].as_f64().expect("restored")
            >= recovery["off_ring_ms"].as_f64().expect("off")
    );
    assert_eq!(results["a4"].as_array().expect("a4").len(), 3);
    // The endpoint tour answered each error with the spec's status.
    let statuses: Vec<u64> = results["endpoints"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| c["status"].as_u64().expect("status"))
        .collect();
    assert_eq!(
        statuses,
        [
            200, 200, 400, 200, 200, 400, 400, 400, 400, 400, 400, 400, 400, 400, 405
        ],
        "{}",
        results["endpoints"]
    );
    // both runs answered every request, the hot key all went to its
    // owner with bounded load off (no spill), and the data plane's counters
    // cover the answers.
    let a5 = &results["a5"];
    let owner = a5["owner"].as_str().expect("owner");
    let at_owner = a5["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .position(|r| r == owner)
        .expect("owner is a replica");
    for (run, factor) in [("off", 0), ("on", 150)] {
        let r = &a5[run];
        assert_eq!(r["factor"], factor, "{r}");
        let counts: Vec<u64> = r["counts"]
            .as_array()
            .expect("counts")
            .iter()
            .map(|c| c.as_u64().expect("count"))
            .collect();
        assert_eq!(counts.len(), 3);
        assert_eq!(
            counts.iter().sum::<u64>() + r["failed"].as_u64().expect("failed"),
            300,
            "{r}"
        );
        assert_eq!(r["hot_requests"], 150, "{r}");
        assert!(r["spills"].is_u64(), "spills measured: {r}");
        assert!(r["p99_ms"].as_f64().expect("p99") > 0.0, "{r}");
        // Each answer from a replica was forwarded to it (retries add more).
        let forwarded = r["forwarded"].as_array().expect("forwarded measured");
        for (sent, answered) in forwarded.iter().zip(&counts) {
            assert!(sent.as_u64().expect("forwarded") >= *answered, "{r}");
        }
    }
    assert_eq!(a5["off"]["spills"], 0, "spills with bounded load off");
    assert_eq!(
        a5["off"]["hot_counts"][at_owner], a5["off"]["hot_requests"],
        "the owner answered every hot-key request with bounded load off"
    );
    assert_eq!(a5["factor_before"], 0);
    let csv = std::fs::read_to_string(out.join("a5_hot_key.csv")).expect("a5 csv");
    assert_eq!(csv.lines().count(), 1 + 2 * 4, "{csv}");
    assert!(
        report.contains(&format!("the hot key's owner {owner} served")),
        "A-5 observation does not name the owner"
    );

    // The sentences are computed: the A-1 numbers appear in the report.
    assert!(
        report.contains(&format!("{} (", a1_counts.iter().max().expect("max"))),
        "A-1 observation does not quote the data"
    );
    let _ = std::fs::remove_dir_all(&out);
}
