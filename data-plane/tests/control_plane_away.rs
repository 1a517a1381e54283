//! The data plane without its control plane: it keeps routing on its last
//! good ring while the control plane is frozen, and when a new control plane
//! comes up on the same address it reconnects and applies the new state.

use std::time::Duration;

use ringlb_testkit::{
    Pool, eventually, get, replica_names, signal, start_control_plane, start_control_plane_on,
    start_data_plane,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_serving_while_the_control_plane_is_away_then_follows_a_new_one() {
    let mut first = start_control_plane(&[]);
    let data_plane = start_data_plane(&first.grpc, &first.http, &[]);
    let lb = data_plane.addr.clone();
    let pool = Pool::default();
    eventually(Duration::from_secs(20), "first ring applied", || {
        let (pool, lb) = (pool.clone(), lb.clone());
        async move {
            pool.get(&lb, "/home")
                .await
                .ok()
                .filter(|r| r.status == 200)
                .map(|_| ())
        }
    })
    .await;

    // Freeze the control plane: no heartbeats, no gRPC, no admin API. The
    // replicas (its children) still run; routing must not need it.
    signal(first.proc.pid(), libc_sigstop());
    for _ in 0..300 {
        let reply = pool.get(&lb, "/home").await.expect("data plane answers");
        assert_eq!(reply.status, 200, "{}", reply.text());
    }

    // Kill it for good (its replicas die with it) and start a new control
    // plane on the same addresses, with a different replica count.
    signal(first.proc.pid(), 9);
    first.proc.kill9();
    let second = start_control_plane_on(&first.http, &first.grpc, &["--replicas", "4"]);
    assert_eq!(second.http, first.http);

    // The data plane reconnects (backoff is capped at 5 s) and routes to the
    // new replicas.
    eventually(
        Duration::from_secs(20),
        "data plane to follow the new control plane",
        || {
            let (pool, lb) = (pool.clone(), lb.clone());
            async move {
                let mut seen = std::collections::HashSet::new();
                for _ in 0..40 {
                    let reply = pool.get(&lb, "/home").await.ok()?;
                    if reply.status != 200 {
                        return None;
                    }
                    seen.insert(reply.text());
                }
                Some(seen)
            }
        },
    )
    .await;
    let names = replica_names(&get(&lb, "/rep").await);
    assert_eq!(names, ["server-1", "server-2", "server-3", "server-4"]);
}

fn libc_sigstop() -> i32 {
    19
}
