//! Failures with real processes: a replica killed with SIGKILL, a saturating
//! load, and the control plane itself dying.

use std::time::{Duration, Instant};

use ringlb_testkit::load::Load;
use ringlb_testkit::{
    System, alive, children_of, eventually, get, replica_names, replica_pid, signal,
};

#[tokio::test]
async fn a_killed_replica_is_replaced_and_home_never_fails() {
    let system = System::start(&["--metrics-listen", "127.0.0.1:0"]).await;
    let lb = system.lb().to_owned();
    let cp_pid = system.control_plane.proc.pid();
    let victim =
        replica_pid(cp_pid, "server-2").expect("server-2 runs as a child of the control plane");

    let load = Load::start(&lb, 4, Duration::from_millis(2), Duration::from_secs(30));
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(victim, 9);
    let killed_at = Instant::now();
    // A generous bound for a shared 2-core machine: replacement usually
    // takes well under a second (printed below; bench/failover.py measures
    // it), and the point here is that it happens with no failed request.
    let names = eventually(
        Duration::from_secs(10),
        "server-2 gone and N = 3 again",
        || {
            let lb = lb.clone();
            async move {
                let names = replica_names(&get(&lb, "/rep").await);
                (names.len() == 3 && !names.contains(&"server-2".to_string())).then_some(names)
            }
        },
    )
    .await;
    let healed_in = killed_at.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, failed) = load.finish().await;

    assert_eq!(&names[..2], ["server-1", "server-3"]);
    let newcomer = names[2].strip_prefix("server-").expect("generated name");
    assert_eq!(newcomer.len(), 6, "{names:?}");
    assert!(ok > 100, "the load ran ({ok} ok)");
    assert_eq!(failed, 0, "/home failed {failed} times around the kill");
    assert!(!alive(victim));

    // The control plane's metrics tell the story.
    let metrics_addr = system
        .control_plane
        .metrics
        .clone()
        .expect("metrics announced");
    let metrics = get(&metrics_addr, "/metrics").await.text();
    for line in [
        "ringlb_replicas 3",
        "ringlb_replicas_started_total 4",
        "ringlb_replicas_failed_total 1",
        "ringlb_data_planes 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }
    eprintln!("replaced in {healed_in:?}; {ok} requests, none failed");
}

#[tokio::test]
async fn a_saturating_load_evicts_no_healthy_replica() {
    let system = System::start(&[]).await;
    let lb = system.lb().to_owned();
    let before = replica_names(&get(&lb, "/rep").await);
    // As many clients as fit, back to back, for four seconds (eight
    // heartbeat rounds).
    let load = Load::start(&lb, 64, Duration::ZERO, Duration::from_secs(4));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (ok, failed) = load.finish().await;
    let after = replica_names(&get(&lb, "/rep").await);
    assert_eq!(before, after, "a replica was replaced under load");
    assert_eq!(failed, 0);
    assert!(ok > 1000, "the load saturated nothing ({ok} requests)");
}

#[tokio::test]
async fn replicas_die_with_the_control_plane_even_on_sigkill() {
    let mut system = System::start(&[]).await;
    let cp_pid = system.control_plane.proc.pid();
    let replicas = children_of(cp_pid);
    assert_eq!(replicas.len(), 3, "three replica processes");
    system.control_plane.proc.kill9();
    eventually(Duration::from_secs(5), "replicas to exit", || {
        let replicas = replicas.clone();
        async move { replicas.iter().all(|&pid| !alive(pid)).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn a_clean_shutdown_stops_every_replica() {
    let mut system = System::start(&["--replicas", "4"]).await;
    let cp_pid = system.control_plane.proc.pid();
    let replicas = children_of(cp_pid);
    assert_eq!(replicas.len(), 4);
    let status = system.control_plane.proc.stop().expect("stops on SIGTERM");
    assert!(status.success(), "{status}");
    for pid in replicas {
        assert!(!alive(pid), "replica {pid} outlived the control plane");
    }
}
