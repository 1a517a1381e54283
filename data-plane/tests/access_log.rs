//! `--access-log` and `--access-log-format`: the data plane binary, with
//! each engine and each format, against a real control plane and its
//! replicas, writes one line per request with every field right, and
//! counts no dropped line under a light load.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ringlb_testkit::{
    Proc, bin, eventually, get, request, served_by, start_control_plane, wait_routed,
};
use serde_json::Value;

/// A data plane process writing its access log to `log`; its client and
/// metrics addresses.
fn start(grpc: &str, http: &str, engine: &str, format: &str, log: &Path) -> (Proc, String, String) {
    let mut cmd = Command::new(bin("data-plane"));
    cmd.args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .args(["--announce", "--engine", engine])
        .args(["--control-plane-grpc", &format!("http://{grpc}")])
        .args(["--control-plane-http", http])
        .args(["--access-log", &log.to_string_lossy()])
        .args(["--access-log-format", format])
        .env("RUST_LOG", "warn");
    let (proc, found) = Proc::spawn_announcing_all(cmd, "data-plane", &["metrics", "ready"]);
    (proc, found[1].clone(), found[0].clone())
}

async fn lines(log: &Path, n: usize) -> Vec<String> {
    eventually(Duration::from_secs(20), "the access log lines", || async {
        let text = std::fs::read_to_string(log).ok()?;
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        (lines.len() >= n).then_some(lines)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_line_per_request_with_both_engines_and_formats() {
    let cp = start_control_plane(&[]);
    let dir = std::env::temp_dir().join(format!("ringlb-access-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for engine in ["fast", "hyper"] {
        for format in ["json", "combined"] {
            let log = dir.join(format!("{engine}-{format}.log"));
            let _ = std::fs::remove_file(&log);
            let (_proc, addr, metrics) = start(&cp.grpc, &cp.http, engine, format, &log);
            wait_routed(&addr).await;
            // wait_routed's own requests are logged too: count from here.
            let before = lines(&log, 1).await.len();

            let home = request(
                &addr,
                http::Method::GET,
                "/home?x=1",
                "",
                &[("x-request-id", "123456")],
            )
            .await
            .expect("answer");
            assert_eq!(home.status, 200);
            let replica = served_by(&home.text());
            let missing = get(&addr, "/nowhere").await;
            assert_eq!(missing.status, 400, "the spec's 400 for a replica 404");

            let all = lines(&log, before + 2).await;
            let ours = &all[before..];
            assert_eq!(ours.len(), 2, "{engine} {format}: {ours:?}");
            match format {
                "json" => {
                    let first: Value = serde_json::from_str(&ours[0]).expect("a JSON line");
                    assert_eq!(first["client"], "127.0.0.1");
                    assert_eq!(first["method"], "GET");
                    assert_eq!(first["target"], "/home?x=1");
                    assert_eq!(first["version"], "HTTP/1.1");
                    assert_eq!(first["status"], 200);
                    assert_eq!(first["bytes"], home.body.len());
                    assert_eq!(first["replica"], replica.as_str());
                    assert_eq!(first["attempts"], 1);
                    assert_eq!(first["key"], 123_456, "the X-Request-ID is the key");
                    assert!(first["duration_ms"].as_f64().is_some_and(|d| d > 0.0));
                    assert!(first["time"].as_str().is_some_and(|t| t.ends_with('Z')));
                    let second: Value = serde_json::from_str(&ours[1]).expect("a JSON line");
                    assert_eq!(second["target"], "/nowhere");
                    assert_eq!(second["status"], 400);
                    assert_eq!(second["bytes"], missing.body.len());
                }
                _ => {
                    let first = &ours[0];
                    assert!(first.starts_with("127.0.0.1 - - ["), "{first}");
                    let expected = format!(
                        "] \"GET /home?x=1 HTTP/1.1\" 200 {} \"-\" \"-\" ",
                        home.body.len()
                    );
                    assert!(first.contains(&expected), "{first}");
                    assert!(first.ends_with(&format!(" {replica} 1 123456")), "{first}");
                    assert!(
                        ours[1].contains(&format!(
                            "\"GET /nowhere HTTP/1.1\" 400 {} ",
                            missing.body.len()
                        )),
                        "{}",
                        ours[1]
                    );
                }
            }
            let counters = get(&metrics, "/metrics").await.text();
            assert!(
                counters.contains("\nringlb_access_log_dropped_total 0\n"),
                "{counters}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unwritable_log_is_refused_at_start() {
    let output = Command::new(bin("data-plane"))
        .args(["--listen", "127.0.0.1:0"])
        .args(["--access-log", "/nonexistent-dir/access.log"])
        .output()
        .expect("data-plane runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot open the access log")
            && stderr.contains("/nonexistent-dir/access.log"),
        "{stderr}"
    );
}

/// A forwarded response is logged when its body is over: `bytes` counts a
/// chunked body's content and a body still streaming after its head, and
/// `duration` covers that body (with both engines).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_line_is_written_when_the_body_is_over() {
    let cp = ringlb_testkit::start_control_plane_running(
        "scripted-replica",
        "127.0.0.1:0",
        "127.0.0.1:0",
        &[],
    );
    let dir = std::env::temp_dir().join(format!("ringlb-access-log-body-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for engine in ["fast", "hyper"] {
        let log = dir.join(format!("{engine}.log"));
        let _ = std::fs::remove_file(&log);
        let (_proc, addr, _) = start(&cp.grpc, &cp.http, engine, "json", &log);
        wait_routed(&addr).await;
        let before = lines(&log, 1).await.len();

        let chunked = get(&addr, "/chunked").await;
        assert_eq!(chunked.text(), "hello, world", "{engine}");
        let slow = get(&addr, "/slow-body?ms=400").await;
        assert!(slow.text().starts_with("slow body from: "), "{engine}");

        // A client that resets its connection while the replica is still
        // thinking: 499, nothing of the response reached it.
        {
            use tokio::io::AsyncWriteExt;
            let mut gone = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            gone.write_all(b"GET /slow?ms=600 HTTP/1.1\r\nHost: lb\r\n\r\n")
                .await
                .expect("send");
            tokio::time::sleep(Duration::from_millis(150)).await;
            gone.set_zero_linger().expect("linger");
        }

        let all = lines(&log, before + 3).await;
        let line = |i: usize| -> Value { serde_json::from_str(&all[before + i]).expect("JSON") };
        let third = line(2);
        assert_eq!(third["target"], "/slow?ms=600", "{engine}");
        if engine == "fast" {
            assert_eq!(third["status"], 499, "{engine}: {third}");
            assert_eq!(third["bytes"], 0, "{engine}: {third}");
        } else {
            // hyper takes the whole (small) body before its write to the
            // reset connection fails, and tells nobody: the replica's
            // status and the bytes handed to hyper (README, access logs).
            assert_eq!(third["status"], 200, "{engine}: {third}");
        }
        let (first, second) = (line(0), line(1));
        assert_eq!(first["target"], "/chunked", "{engine}");
        assert_eq!(first["bytes"], 12, "{engine}: chunked content, no framing");
        assert_eq!(second["target"], "/slow-body?ms=400", "{engine}");
        assert_eq!(second["bytes"], slow.body.len(), "{engine}");
        // The body's second half comes 400 ms after the head: the line
        // waits for it (a lower bound, whatever the machine's speed).
        let duration = second["duration_ms"].as_f64().expect("duration");
        assert!(duration >= 400.0, "{engine}: duration {duration} ms");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
