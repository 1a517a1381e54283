//! SPEC.md's contract as reusable checks, run against the process-mode
//! system and the Docker system alike: status, content type and the exact
//! JSON bytes, errors included. Every refused request must leave the replica
//! set exactly as it was.

use http::Method;

use crate::{Reply, replica_names, request};

pub async fn call(addr: &str, method: Method, path: &str, body: &str) -> Reply {
    request(addr, method.clone(), path, body, &[])
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

pub fn assert_json(reply: &Reply, status: u16, body: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_eq!(reply.text(), body);
    assert_eq!(reply.headers["content-type"], "application/json");
}

pub fn failure(what: &str) -> String {
    format!(r#"{{"message": "<Error> {what}", "status": "failure"}}"#)
}

pub fn listing(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!(
        r#"{{"message": {{"N": {}, "replicas": [{}]}}, "status": "successful"}}"#,
        names.len(),
        quoted.join(", ")
    )
}

/// Send a request that must be refused with 400 and `expected`, and check
/// that the replica set did not change.
/// `admin` is the control plane's admin port: the ring version (in
/// `GET /config`) must not move either.
pub async fn refused(
    lb: &str,
    admin: &str,
    method: Method,
    path: &str,
    body: &str,
    expected: &str,
) {
    let before = call(lb, Method::GET, "/rep", "").await;
    let version_before = call(admin, Method::GET, "/config", "").await;
    let reply = call(lb, method.clone(), path, body).await;
    assert_json(&reply, 400, &failure(expected));
    let after = call(lb, Method::GET, "/rep", "").await;
    assert_eq!(
        before.text(),
        after.text(),
        "{method} {path} {body} changed the set"
    );
    let version_after = call(admin, Method::GET, "/config", "").await;
    assert_eq!(
        version_before.text(),
        version_after.text(),
        "{method} {path} {body} published a ring version"
    );
}

/// SPEC.md's `/rep`, `/add`, `/rm` and routing rows, starting from
/// `server-1..3`, through the load balancer at `lb` and the control plane's
/// admin port at `admin`. Ends with `server-1` alone.
pub async fn replica_set_scenario(lb: &str, admin: &str) {
    // GET /rep
    let rep = call(lb, Method::GET, "/rep", "").await;
    assert_json(&rep, 200, &listing(&["server-1", "server-2", "server-3"]));
    // ... also on the control plane's own port.
    let direct = call(admin, Method::GET, "/rep", "").await;
    assert_json(
        &direct,
        200,
        &listing(&["server-1", "server-2", "server-3"]),
    );

    // GET /home
    let home = call(lb, Method::GET, "/home", "").await;
    assert_eq!(home.status, 200);
    let text = home.text();
    assert!(
        ["server-1", "server-2", "server-3"].iter().any(|s| text
            == format!(r#"{{"message": "Hello from Server: {s}", "status": "successful"}}"#)),
        "{text}"
    );

    // POST /add with the spec's example.
    let added = call(
        lb,
        Method::POST,
        "/add",
        r#"{"n": 4, "hostnames": ["S5", "S4", "S10", "S11"]}"#,
    )
    .await;
    assert_json(
        &added,
        200,
        &listing(&["server-1", "server-2", "server-3", "S5", "S4", "S10", "S11"]),
    );
    // The new replicas answer right after /add returns.
    let s5 = request(lb, Method::GET, "/home", "", &[])
        .await
        .expect("home");
    assert_eq!(s5.status, 200);

    // /add with generated names.
    let grown = call(lb, Method::POST, "/add", r#"{"n": 2}"#).await;
    assert_eq!(grown.status, 200);
    let names = replica_names(&grown);
    assert_eq!(names.len(), 9);
    for generated in &names[7..] {
        let hex = generated.strip_prefix("server-").expect("generated prefix");
        assert!(
            hex.len() == 6
                && hex
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
            "{generated}"
        );
    }

    // DELETE /rm with the spec's example: S5 and S4 plus one random other.
    let removed = call(
        lb,
        Method::DELETE,
        "/rm",
        r#"{"n": 3, "hostnames": ["S5", "S4"]}"#,
    )
    .await;
    assert_eq!(removed.status, 200, "{}", removed.text());
    let left = replica_names(&removed);
    assert_eq!(left.len(), 6);
    assert!(!left.contains(&"S5".to_string()) && !left.contains(&"S4".to_string()));
    let order_kept: Vec<&String> = names.iter().filter(|n| left.contains(n)).collect();
    assert_eq!(order_kept, left.iter().collect::<Vec<_>>(), "oldest first");
    assert_json(
        &removed,
        200,
        &listing(&left.iter().map(String::as_str).collect::<Vec<_>>()),
    );

    // POST /rm is accepted too; a removed name can be added again at once.
    let again = call(lb, Method::POST, "/add", r#"{"n": 1, "hostnames": ["S5"]}"#).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(replica_names(&again).last().map(String::as_str), Some("S5"));
    let rm_post = call(lb, Method::POST, "/rm", r#"{"n": 1, "hostnames": ["S5"]}"#).await;
    assert_eq!(rm_post.status, 200);
    assert_eq!(replica_names(&rm_post), left);

    // Paths the replicas do not serve.
    assert_json(
        &call(lb, Method::GET, "/other", "").await,
        400,
        &failure("'/other' endpoint does not exist in server replicas"),
    );
    assert_json(
        &call(lb, Method::GET, "/", "").await,
        400,
        &failure("'/' endpoint does not exist in server replicas"),
    );
    assert_json(
        &call(lb, Method::GET, "/deep/path?x=1", "").await,
        400,
        &failure("'/deep/path' endpoint does not exist in server replicas"),
    );

    // Other methods are forwarded: the replica's own 405 comes back unchanged.
    let post = call(lb, Method::POST, "/home", "payload").await;
    assert_eq!(post.status, 405);
    assert_eq!(post.headers["allow"], "GET, HEAD");

    // Removing every replica is allowed; then nothing can serve.
    let n = left.len();
    let emptied = call(lb, Method::DELETE, "/rm", &format!(r#"{{"n": {n}}}"#)).await;
    assert_json(&emptied, 200, &listing(&[]));
    assert_json(
        &call(lb, Method::GET, "/home", "").await,
        503,
        &failure("No server replicas available"),
    );
    let back = call(
        lb,
        Method::POST,
        "/add",
        r#"{"n": 1, "hostnames": ["server-1"]}"#,
    )
    .await;
    assert_json(&back, 200, &listing(&["server-1"]));
    assert_eq!(
        call(lb, Method::GET, "/home", "").await.text(),
        r#"{"message": "Hello from Server: server-1", "status": "successful"}"#
    );
}

/// Every `/add` error of SPEC.md on each of `addrs`, for a control plane
/// started with `--max-replicas 20` and three replicas.
pub async fn add_errors(addrs: &[&str], admin: &str) {
    let cases: &[(Method, &str, &str)] = &[
        (
            Method::POST,
            r#"{"n": 1, "hostnames": ["S5", "S4"]}"#,
            "Length of hostname list is more than newly added instances",
        ),
        (
            Method::POST,
            r#"{"n": 2, "hostnames": "#,
            "Malformed JSON body: EOF while parsing a value at line 1 column 22",
        ),
        (
            Method::POST,
            r#"{"hostnames": ["S5"]}"#,
            "Missing field 'n'",
        ),
        (Method::POST, "", "Missing field 'n'"),
        (
            Method::POST,
            r#"[1, 2]"#,
            "Request body must be a JSON object",
        ),
        (
            Method::POST,
            r#"{"n": "2"}"#,
            r#"Field 'n' must be an integer between 1 and 20, got \"2\""#,
        ),
        (
            Method::POST,
            r#"{"n": 1.5}"#,
            "Field 'n' must be an integer between 1 and 20, got 1.5",
        ),
        (
            Method::POST,
            r#"{"n": -1}"#,
            "Field 'n' must be an integer between 1 and 20, got -1",
        ),
        (
            Method::POST,
            r#"{"n": 0}"#,
            "Field 'n' must be an integer between 1 and 20, got 0",
        ),
        (
            Method::POST,
            r#"{"n": 1000000}"#,
            "Field 'n' must be an integer between 1 and 20, got 1000000",
        ),
        (
            Method::POST,
            r#"{"n": 18}"#,
            "Adding 18 replicas would make 21, more than the maximum of 20",
        ),
        (
            Method::POST,
            r#"{"n": 1, "hostnames": ["server-2"]}"#,
            "Hostname 'server-2' already exists",
        ),
        (
            Method::POST,
            r#"{"n": 2, "hostnames": ["S7", "S7"]}"#,
            "Hostname 'S7' appears more than once in 'hostnames'",
        ),
        (
            Method::POST,
            r#"{"n": 1, "hostnames": ["bad name"]}"#,
            "Invalid hostname 'bad name': a name is 1 to 63 characters of [a-zA-Z0-9_.-] starting with a letter or digit",
        ),
        (
            Method::POST,
            r#"{"n": 1, "hostnames": [7]}"#,
            "Field 'hostnames' must be a list of strings, got 7",
        ),
    ];
    for &lb in addrs {
        for (method, body, expected) in cases {
            refused(lb, admin, method.clone(), "/add", body, expected).await;
        }
    }
}

/// Every `/rm` error of SPEC.md on each of `addrs` (three replicas,
/// `--max-replicas` = `max`).
pub async fn rm_errors(addrs: &[&str], admin: &str, max: u64) {
    let bad_n = format!("Field 'n' must be an integer between 1 and {max}, got -2");
    let cases: &[(Method, &str, &str)] = &[
        (
            Method::DELETE,
            r#"{"n": 1, "hostnames": ["server-1", "server-2"]}"#,
            "Length of hostname list is more than removable instances",
        ),
        (
            Method::DELETE,
            r#"{"n": 4}"#,
            "Cannot remove 4 replicas: only 3 exist",
        ),
        (
            Method::DELETE,
            r#"{"n": 1, "hostnames": ["S9"]}"#,
            "Hostname 'S9' is not a replica",
        ),
        (
            Method::DELETE,
            r#"{"n": 2, "hostnames": ["server-1", "server-1"]}"#,
            "Hostname 'server-1' appears more than once in 'hostnames'",
        ),
        (
            Method::POST,
            r#"{"n": }"#,
            "Malformed JSON body: expected value at line 1 column 7",
        ),
        (Method::DELETE, r#"{"n": -2}"#, &bad_n),
    ];
    for &lb in addrs {
        for (method, body, expected) in cases {
            refused(lb, admin, method.clone(), "/rm", body, expected).await;
        }
    }
}

/// Wrong methods, unknown admin paths and oversized bodies, through `lb`
/// and directly on the admin port `cp`.
pub async fn method_and_size_errors(lb: &str, cp: &str) {
    for (method, path) in [
        (Method::GET, "/add"),
        (Method::GET, "/rm"),
        (Method::POST, "/rep"),
    ] {
        for addr in [lb, cp] {
            let reply = call(addr, method.clone(), path, "").await;
            assert_json(
                &reply,
                405,
                &failure(&format!("Method {method} is not allowed on '{path}'")),
            );
        }
    }
    assert_json(
        &call(cp, Method::GET, "/nope", "").await,
        404,
        &failure("'/nope' endpoint does not exist"),
    );
    let big = format!(r#"{{"n": 1, "pad": "{}"}}"#, "x".repeat(70 * 1024));
    let reply = call(cp, Method::POST, "/add", &big).await;
    assert_json(
        &reply,
        413,
        &failure("Request body is larger than 65536 bytes"),
    );
}
