//! Every row of SPEC.md, through the data plane on its port (as clients use
//! it) and the control plane's own admin port (process mode). The checks
//! live in `ringlb_testkit::contract`, shared with the Docker tests.

use ringlb_testkit::System;
use ringlb_testkit::contract;

#[tokio::test]
async fn rep_add_rm_and_routing_as_the_spec_says() {
    let system = System::start(&["--max-replicas", "20"]).await;
    contract::replica_set_scenario(system.lb(), &system.control_plane.http).await;
}

#[tokio::test]
async fn every_add_error_is_refused_and_changes_nothing() {
    let system = System::start(&["--max-replicas", "20"]).await;
    contract::add_errors(
        &[system.lb(), &system.control_plane.http],
        &system.control_plane.http,
    )
    .await;
}

#[tokio::test]
async fn every_rm_error_is_refused_and_changes_nothing() {
    let system = System::start(&[]).await;
    contract::rm_errors(
        &[system.lb(), &system.control_plane.http],
        &system.control_plane.http,
        50,
    )
    .await;
}

#[tokio::test]
async fn wrong_methods_and_unknown_admin_paths_answer_json() {
    let system = System::start(&[]).await;
    contract::method_and_size_errors(system.lb(), &system.control_plane.http).await;
}
