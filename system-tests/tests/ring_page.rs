//! The live ring page (`/ui` on the control plane's admin port) in a real
//! browser: Debian's `chromium` driven by `chromedriver` over W3C
//! WebDriver (fantoccini). The page loads, shows the ring version and one
//! legend row per replica of `/rep`, the live load the data plane reports,
//! and follows `/add` and a `kill -9` of a replica without a reload.
//! Screenshots go to `target/ring-page/` for a person to look at.
//!
//! Skipped, saying so, when `chromedriver` or `chromium` is not installed
//! (`make tools` and `.ci/run` install them).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use http::Method;
use ringlb_testkit::{
    Proc, System, children_of, eventually, get, replica_names, replica_pid, request,
};
use serde_json::{Value, json};

/// How long the page gets to show a change (it is pushed within about a
/// second; generous for a loaded machine).
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

fn installed(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
}

/// `chromedriver` on a port it picks itself; on drop the browsers it
/// started are killed by PID, then chromedriver itself (the `Proc` guard).
struct Driver {
    url: String,
    proc: Proc,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Every descendant (chromium and its helpers), deepest last found.
        let mut pending = vec![self.proc.pid()];
        let mut all = Vec::new();
        while let Some(pid) = pending.pop() {
            let children = children_of(pid);
            pending.extend(&children);
            all.extend(children);
        }
        for pid in all {
            ringlb_testkit::signal(pid, libc::SIGKILL);
        }
    }
}

fn start_driver(chromedriver: &Path) -> Driver {
    let mut cmd = Command::new(chromedriver);
    cmd.arg("--port=0").stderr(Stdio::null());
    let (proc, port) = Proc::spawn_announcing(
        cmd,
        "chromedriver",
        "ChromeDriver was started successfully on port",
    );
    let port = port.trim_end_matches('.');
    Driver {
        url: format!("http://127.0.0.1:{port}"),
        proc,
    }
}

async fn browser(driver: &Driver, chromium: &Path, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1500,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| panic!("no WebDriver session on {}: {e}", driver.url))
}

/// What the page shows: ring version, legend rows, whether it is the same
/// document (no reload), data plane rows, event kinds, and the total load.
async fn shown(client: &Client) -> Value {
    client
        .execute(
            r##"return {
                version: document.getElementById("version").textContent,
                rows: [...document.querySelectorAll("#legend tbody tr")].map(r => r.dataset.replica),
                same_document: window.ringlbTestMarker === 1,
                data_planes: document.querySelectorAll("#data-planes tbody tr").length,
                events: [...document.querySelectorAll("#events li")].map(li => li.dataset.kind),
                rps: document.getElementById("center-rps").textContent,
                live: document.getElementById("conn").className,
            };"##,
            vec![],
        )
        .await
        .expect("the page answers scripts")
}

async fn ring_version(system: &System) -> String {
    let state: Value =
        serde_json::from_slice(&get(&system.control_plane.http, "/ui/state.json").await.body)
            .expect("state.json is JSON");
    state["version"].to_string()
}

/// Wait until the page shows `rows` (in order) and ring `version`.
async fn wait_for(client: &Client, version: &str, rows: &[String], what: &str) -> Value {
    eventually(PAGE_TIMEOUT, what, || async {
        let shown = shown(client).await;
        let ok = shown["version"] == version
            && shown["rows"].as_array().is_some_and(|r| {
                r.iter()
                    .map(|v| v.as_str())
                    .eq(rows.iter().map(|s| Some(s.as_str())))
            });
        ok.then_some(shown)
    })
    .await
}

fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ring-page");
    std::fs::create_dir_all(&dir).expect("target/ring-page");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_follows_the_ring_live() {
    let (Some(chromedriver), Some(chromium)) = (installed("chromedriver"), installed("chromium"))
    else {
        eprintln!(
            "SKIPPED: the ring page browser test needs chromium and chromedriver (make tools installs them)"
        );
        return;
    };
    let system = System::start(&["--heartbeat-interval", "200ms"]).await;
    // Traffic, so that the page has live load to show.
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let lb = system.lb().to_owned();
        let stop = stop.clone();
        async move {
            let mut id = 100_000u64;
            while !stop.load(Ordering::Relaxed) {
                id += 7919;
                let rid = (100_000 + id % 900_000).to_string();
                let _ = request(&lb, Method::GET, "/home", "", &[("x-request-id", &rid)]).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });

    let driver = start_driver(&chromedriver);
    // A fresh browser profile per run, removed afterwards.
    let profile = std::env::temp_dir().join(format!("ringlb-ring-page-{}", std::process::id()));
    let client = browser(&driver, &chromium, &profile).await;
    let url = format!("http://{}/ui", system.control_plane.http);
    client.goto(&url).await.expect("the page loads");
    client
        .execute("window.ringlbTestMarker = 1;", vec![])
        .await
        .expect("marker set");

    // Loaded: the ring version and one legend row per replica of /rep.
    let rows = replica_names(&get(system.lb(), "/rep").await);
    let version = ring_version(&system).await;
    let first = wait_for(&client, &version, &rows, "the page to show the ring").await;
    assert_eq!(first["live"], "live", "{first}");
    assert_eq!(
        client
            .find_all(fantoccini::Locator::Css("#nodes circle.vnode"))
            .await
            .expect("vnodes")
            .len(),
        rows.len() * 9,
        "one dot per virtual node (K = 9)"
    );
    // The data plane's load reports reach the page.
    eventually(PAGE_TIMEOUT, "live load on the page", || async {
        let shown = shown(&client).await;
        let rps: f64 = shown["rps"]
            .as_str()?
            .trim_end_matches(" req/s")
            .parse()
            .ok()?;
        (rps > 0.0 && shown["data_planes"] == 1).then_some(())
    })
    .await;

    // /add: the page follows without a reload.
    let added = request(
        system.lb(),
        Method::POST,
        "/add",
        r#"{"n": 2, "hostnames": ["S5"]}"#,
        &[],
    )
    .await
    .expect("/add answers");
    assert_eq!(added.status, 200, "{}", added.text());
    let rows = replica_names(&added);
    let version = ring_version(&system).await;
    let after_add = wait_for(&client, &version, &rows, "the page to show /add").await;
    assert_eq!(after_add["same_document"], true, "no reload");
    std::fs::write(
        screenshot_dir().join("after-add.png"),
        client.screenshot().await.expect("screenshot"),
    )
    .expect("screenshot saved");

    // kill -9 of a replica: it leaves, its replacement joins, no reload.
    let pid = replica_pid(system.control_plane.proc.pid(), "server-2").expect("server-2 runs");
    ringlb_testkit::signal(pid, libc::SIGKILL);
    let healed = eventually(PAGE_TIMEOUT, "the page to show the replacement", || async {
        let shown = shown(&client).await;
        let rows: Vec<&str> = shown["rows"]
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let failed = shown["events"].as_array()?.iter().any(|k| k == "failed");
        (rows.len() == 5 && !rows.contains(&"server-2") && failed).then_some(shown.clone())
    })
    .await;
    assert_eq!(healed["same_document"], true, "no reload");
    let rows = replica_names(&get(system.lb(), "/rep").await);
    let version = ring_version(&system).await;
    wait_for(
        &client,
        &version,
        &rows,
        "the page to match /rep after healing",
    )
    .await;
    // Let the load settle over the new ring for the picture.
    tokio::time::sleep(Duration::from_secs(3)).await;
    std::fs::write(
        screenshot_dir().join("after-kill.png"),
        client.screenshot().await.expect("screenshot"),
    )
    .expect("screenshot saved");

    stop.store(true, Ordering::Relaxed);
    let _ = load.await;
    let _ = client.close().await;
    drop(driver);
    let _ = std::fs::remove_dir_all(&profile);
}
