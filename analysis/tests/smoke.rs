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
    for heading in ["## A-1", "## A-2", "## A-3", "## A-4"] {
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
    // The sentences are computed: the A-1 numbers appear in the report.
    assert!(
        report.contains(&format!("{} (", a1_counts.iter().max().expect("max"))),
        "A-1 observation does not quote the data"
    );
    let _ = std::fs::remove_dir_all(&out);
}
