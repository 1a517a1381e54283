//! The data plane's HTTP/1.1 conformance (RFC 9110, RFC 9112, RFC 6455),
//! black box: real processes, a control plane whose replicas are the
//! `scripted-replica` test binary (it answers each path with scripted
//! bytes, and lists the requests it received at `/seen`), and a raw-socket
//! client that reads exactly what the data plane wrote.
//!
//! Both engines must behave the same: every check is one function taking
//! the engine's name, run as `fast::<check>` and `hyper::<check>`, so that
//! a failure on one engine does not hide the other.
//!
//! What the data plane refuses itself, it answers with the spec's JSON
//! error (`{"message": "<Error> ...", "status": "failure"}`).

mod common;

use std::io::{ErrorKind, Read};
use std::net::TcpStream;

use common::{Client, READ_TIMEOUT, Wire, assert_refusal, seen, start};
use tungstenite::{Message, WebSocket};

/// `conformance!(a, b)` makes the tests `fast::a`, `fast::b`, `hyper::a`
/// and `hyper::b`, each calling the check of that name with its engine.
macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        conformance!(@engine fast; $($check),*);
        conformance!(@engine hyper; $($check),*);
    };
    (@engine $engine:ident; $($check:ident),*) => {
        mod $engine {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check(stringify!($engine)).await;
                }
            )*
        }
    };
}

conformance!(
    connection_cannot_remove_request_framing,
    connection_cannot_remove_response_framing,
    a_chunked_response_with_a_length_loses_the_length,
    no_content_has_no_body,
    not_modified_has_no_body,
    a_head_response_has_no_body,
    late_bytes_after_a_bodiless_response_reach_no_client,
    an_unasked_switch_of_protocols_is_a_502,
    a_stalled_body_or_a_silent_client_is_closed,
    transfer_codings_other_than_chunked_are_refused,
    early_hints_reach_the_client,
    continue_comes_before_the_body,
    host_must_be_one_valid_authority,
    http10_without_host_is_served,
    a_request_line_over_the_limit_is_414,
    a_header_section_over_the_limit_is_431,
    requests_within_the_limits_are_served,
    the_request_line_limit_is_a_flag,
    many_set_cookie_fields_pass_through,
    an_invalid_response_is_a_502_not_retried,
    websocket_echoes_until_the_client_closes,
    websocket_ends_when_the_replica_closes,
    upgrade_to_a_plain_path_is_an_ordinary_request,
    request_trailers_are_refused_and_nothing_after_them_is_served,
    the_client_gets_http11_a_valid_status_line_and_a_date,
    a_content_length_list_from_a_replica_is_a_502,
    a_declared_length_over_the_limit_is_413_before_any_body,
    an_empty_chunked_body_reaches_the_replica_with_a_length,
    framing_names_with_underscores_are_refused,
    more_than_16_interim_responses_is_a_502,
    max_forwards_is_checked_and_decremented_on_options_and_trace,
);

/// RFC 9110 §7.6.2: `OPTIONS` or `TRACE` with `Max-Forwards: 0` ends at the
/// data plane (`OPTIONS`: 200; `TRACE`: 501, it does not reflect requests);
/// a larger value reaches the replica decremented; other methods' values
/// are left alone.
async fn max_forwards_is_checked_and_decremented_on_options_and_trace(engine: &str) {
    let wire = start(engine, &[]).await;
    let ask = |request: String| {
        let mut client = Client::connect(wire.addr());
        client.send(&request);
        let method = request.split(' ').next().unwrap_or("GET").to_owned();
        client.response(&method)
    };
    let options = ask("OPTIONS /mf-zero HTTP/1.1\r\nHost: lb\r\nMax-Forwards: 0\r\n\r\n".into());
    assert_eq!(options.status, 200, "{engine}: {options:?}");
    assert!(options.body.is_empty(), "{engine}: {options:?}");
    let trace = ask("TRACE /mf-trace HTTP/1.1\r\nHost: lb\r\nMax-Forwards: 0\r\n\r\n".into());
    assert_refusal(&trace, 501, &format!("{engine}: TRACE"));
    for (method, sent, expected) in [("OPTIONS", 3, 2), ("TRACE", 1, 0), ("GET", 3, 3)] {
        let echoed = ask(format!(
            "{method} /echo HTTP/1.1\r\nHost: lb\r\nMax-Forwards: {sent}\r\n\r\n"
        ));
        let text = echoed.text().to_ascii_lowercase();
        assert!(
            text.contains(&format!("max-forwards: {expected}\r\n")),
            "{engine}: {method} with {sent}: the replica got {text:?}"
        );
    }
    // One number on one line: two lines are not a value (RFC 9110 §7.6.2).
    let two = ask(
        "OPTIONS /mf-two HTTP/1.1\r\nHost: lb\r\nMax-Forwards: 5\r\nMax-Forwards: 0\r\n\r\n".into(),
    );
    assert_refusal(&two, 400, &format!("{engine}: two Max-Forwards lines"));
    let seen = seen(&wire);
    assert_eq!(
        seen.count("/mf-zero") + seen.count("/mf-trace") + seen.count("/mf-two"),
        0,
        "{engine}: forwarded"
    );
}

/// `Transfer_Encoding` / `Content_Length`: valid field names, but read as
/// framing headers by back ends that fold `_` into `-`: 400, and nothing
/// reaches a replica.
async fn framing_names_with_underscores_are_refused(engine: &str) {
    let wire = start(engine, &[]).await;
    for (what, field) in [
        ("Transfer_Encoding", "Transfer_Encoding: chunked"),
        ("content_length", "content_length: 64"),
    ] {
        let context = format!("{engine}: {what}");
        let reply = exchange(
            &wire,
            &format!(
                "POST /disguised HTTP/1.1\r\nHost: lb\r\nContent-Length: 5\r\n{field}\r\n\r\n0\r\n\r\n"
            ),
            &context,
        );
        assert_refusal(&reply, 400, &context);
    }
    assert_eq!(seen(&wire).count("/disguised"), 0, "{engine}: forwarded");
}

/// At most 16 interim responses per request (README): one more is a 502
/// with both engines, after the 16 forwarded.
async fn more_than_16_interim_responses_is_a_502(engine: &str) {
    let wire = start(engine, &[]).await;
    let mut client = Client::connect(wire.addr());
    client.send(&format!(
        "GET /many-interims HTTP/1.1\r\nHost: lb\r\nX-Request-ID: {STICKY_ID}\r\n\r\n"
    ));
    let reply = client.response("GET");
    assert!(
        reply.interim.len() <= 16,
        "{engine}: {} interims",
        reply.interim.len()
    );
    assert_refusal(&reply, 502, engine);
}

/// RFC 9112 §7.1.2: a chunked request with a trailer section gets 400 and
/// the connection closes. A bare LF there ends the message for parsers that
/// take LF as a line end (RFC 9112 §2.2) but not for hyper's decoder, which
/// read the next request as trailer lines: with the trailer section
/// refused, no reading of those bytes is ever served.
async fn request_trailers_are_refused_and_nothing_after_them_is_served(engine: &str) {
    let wire = start(engine, &[]).await;
    for (what, trailers) in [
        ("bare LF ending the trailer section", "0\r\n\n"),
        ("field line ended by a bare LF", "0\r\nX-T: 1\n\n"),
        ("a well-formed trailer field", "0\r\nX-T: 1\r\n\r\n"),
    ] {
        let context = format!("{engine}: {what}");
        let mut client = Client::connect(wire.addr());
        client.send(&format!(
            "POST /echo HTTP/1.1\r\nHost: lb\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n{trailers}\
             GET /swallowed HTTP/1.1\r\nHost: lb\r\n\r\n\
             GET /home HTTP/1.1\r\nHost: lb\r\n\r\n"
        ));
        let reply = client.response("POST");
        assert_refusal(&reply, 400, &context);
        let rest = client.rest_until_closed();
        assert!(
            rest.is_empty(),
            "{context}: then {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
    let seen = seen(&wire);
    assert_eq!(
        seen.count("/swallowed"),
        0,
        "{engine}: /swallowed was served"
    );
    assert_eq!(
        seen.count("/echo"),
        0,
        "{engine}: the refused POST was forwarded"
    );
    // A chunked request without trailers still goes through.
    let mut client = Client::connect(wire.addr());
    client.send(
        "POST /echo HTTP/1.1\r\nHost: lb\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    let echoed = client.response("POST");
    assert_eq!(echoed.status, 200, "{engine}: {echoed:?}");
    assert!(echoed.text().ends_with("hello"), "{engine}: {echoed:?}");
}

/// RFC 9110 §6.2 (the proxy's own version), RFC 9112 §4 (a status line
/// with its second SP), RFC 9110 §6.6.1 (a forwarded response without Date
/// gets one).
async fn the_client_gets_http11_a_valid_status_line_and_a_date(engine: &str) {
    let wire = start(engine, &[]).await;
    for path in ["/http10", "/bare-status"] {
        let context = format!("{engine}: {path}");
        let mut client = Client::connect(wire.addr());
        client.send(&format!(
            "GET {path} HTTP/1.1\r\nHost: lb\r\nX-Request-ID: {STICKY_ID}\r\n\r\n"
        ));
        let reply = client.response("GET");
        let received = String::from_utf8_lossy(client.received()).into_owned();
        let line = received.lines().next().unwrap_or_default().to_owned();
        assert!(
            line.starts_with("HTTP/1.1 200 "),
            "{context}: status line {line:?}"
        );
        assert!(
            reply.header("date").is_some(),
            "{context}: no Date in {reply:?}"
        );
        assert!(!reply.body.is_empty(), "{context}: {reply:?}");
        // The connection goes on: it is HTTP/1.1 to the client.
        assert_eq!(client.get("/home").status, 200, "{context}: after");
    }
}

/// RFC 9110 §8.6: `Content-Length: 5, 5` is not passed on as a list; both
/// engines refuse it alike (502, the replica named).
async fn a_content_length_list_from_a_replica_is_a_502(engine: &str) {
    let wire = start(engine, &[]).await;
    let reply = exchange(
        &wire,
        &format!("GET /length-list HTTP/1.1\r\nHost: lb\r\nX-Request-ID: {STICKY_ID}\r\n\r\n"),
        engine,
    );
    assert_refusal(&reply, 502, engine);
}

/// RFC 9110 §15.5.14 and §10.1.1: a declared length over
/// `--max-body-bytes` gets 413 from the head, also with `Expect:
/// 100-continue` (no `100 Continue` first) and for a length too large to be
/// a number the data plane can hold.
async fn a_declared_length_over_the_limit_is_413_before_any_body(engine: &str) {
    let wire = start(engine, &["--max-body-bytes", "1000"]).await;
    for (what, head) in [
        ("over the limit", "Content-Length: 5000"),
        (
            "with Expect",
            "Expect: 100-continue\r\nContent-Length: 5000",
        ),
        ("u64::MAX", "Content-Length: 18446744073709551615"),
    ] {
        let context = format!("{engine}: {what}");
        let mut client = Client::connect(wire.addr());
        client.send(&format!(
            "POST /echo HTTP/1.1\r\nHost: lb\r\n{head}\r\n\r\n"
        ));
        let reply = client.response("POST");
        assert!(reply.interim.is_empty(), "{context}: {:?}", reply.interim);
        if engine == "hyper" && what == "u64::MAX" {
            // hyper's own parser refuses a length it cannot hold before
            // the data plane sees the request (431, its choice).
            assert!(reply.status >= 400, "{context}: {reply:?}");
            continue;
        }
        assert_refusal(&reply, 413, &context);
    }
}

/// An empty chunked body reaches the replica with `Content-Length: 0`, as
/// every body the data plane forwards (README: request bodies).
async fn an_empty_chunked_body_reaches_the_replica_with_a_length(engine: &str) {
    let wire = start(engine, &[]).await;
    let mut client = Client::connect(wire.addr());
    client.send("POST /echo HTTP/1.1\r\nHost: lb\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    let echoed = client.response("POST");
    assert_eq!(echoed.status, 200, "{engine}: {echoed:?}");
    let text = echoed.text().to_ascii_lowercase();
    assert!(
        text.contains("content-length: 0\r\n"),
        "{engine}: the replica got {text:?}"
    );
    assert!(
        !text.contains("transfer-encoding"),
        "{engine}: the replica got {text:?}"
    );
}

/// A request `X-Request-ID` for the checks that need the same replica
/// again: the same id goes to the same replica.
const STICKY_ID: u64 = 424_242;

/// Bytes after a refusal: nothing (the data plane closed the connection),
/// or exactly the answer to the `GET /home` sent after it.
fn assert_only_home_follows(rest: &[u8], context: &str) {
    let text = String::from_utf8_lossy(rest);
    if text.is_empty() {
        return;
    }
    assert!(
        text.starts_with("HTTP/1.1 200 ")
            && text.contains("Hello from: ")
            && text.matches("HTTP/1.").count() == 1,
        "{context}: after the answer, the connection carried {text:?}"
    );
}

// 1. Connection never removes framing (RFC 9110 §7.6.1).

/// A 64-byte request body that is itself a whole request for `/smuggled`.
fn smuggled_request() -> String {
    let prefix = "GET /smuggled HTTP/1.1\r\nHost: a\r\nX-Pad: ";
    let suffix = "\r\n\r\n";
    let raw = format!(
        "{prefix}{}{suffix}",
        "a".repeat(64 - prefix.len() - suffix.len())
    );
    assert_eq!(raw.len(), 64);
    raw
}

/// A `Connection` header that names a framing or routing header
/// (`Content-Length`, `Transfer-Encoding`, `Host`) would turn the body into
/// a second request if the header were removed as hop-by-hop: the request
/// is refused (400), and no replica ever receives `/smuggled`.
async fn connection_cannot_remove_request_framing(engine: &str) {
    let wire = start(engine, &[]).await;
    for connection in [
        "Connection: Content-Length\r\n",
        "Connection: keep-alive, transfer-encoding\r\n",
        "Connection: HOST\r\n",
        "Connection: keep-alive\r\nConnection: content-length\r\n",
    ] {
        let context = format!("{engine}: {connection:?}");
        let mut client = Client::connect(wire.addr());
        client.send(&format!(
            "POST /echo HTTP/1.1\r\nHost: a\r\n{connection}Content-Length: 64\r\n\r\n{}",
            smuggled_request()
        ));
        let refused = client.response("POST");
        assert_refusal(&refused, 400, &context);
        // Then the connection closes, or serves the next request: never
        // an answer to /smuggled.
        client.send_lossy(b"GET /home HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let rest = client.rest_until_closed();
        assert_only_home_follows(&rest, &context);
    }
    let seen = seen(&wire);
    assert_eq!(
        seen.count("/smuggled"),
        0,
        "{engine}: /smuggled reached {:?}",
        seen.replicas_with("/smuggled")
    );
}

/// A response whose `Connection` names its `Content-Length` cannot be
/// forwarded (502); the client connection does not fall out of step.
async fn connection_cannot_remove_response_framing(engine: &str) {
    let wire = start(engine, &[]).await;
    let mut client = Client::connect(wire.addr());
    let reply = client.get("/connection-content-length");
    assert_refusal(
        &reply,
        502,
        &format!("{engine}: Connection: Content-Length"),
    );
    client.send_lossy(b"GET /home HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n");
    let rest = client.rest_until_closed();
    assert_only_home_follows(&rest, engine);
}

// 2. Both Transfer-Encoding and Content-Length (RFC 9112 §6.3).

/// Transfer-Encoding wins; the `Content-Length` is removed before the
/// response goes on.
async fn a_chunked_response_with_a_length_loses_the_length(engine: &str) {
    let wire = start(engine, &[]).await;
    let mut client = Client::connect(wire.addr());
    let reply = client.get("/chunked-and-length");
    assert_eq!(reply.status, 200, "{engine}: {reply:?}");
    assert_eq!(reply.text(), "hello", "{engine}: {reply:?}");
    assert_eq!(
        reply.header("content-length"),
        None,
        "{engine}: {:?}",
        reply.headers
    );
    let next = client.get("/home");
    assert_eq!(next.status, 200, "{engine}: then {next:?}");
    assert!(
        next.text().starts_with("Hello from: "),
        "{engine}: {next:?}"
    );
}

// 3. Responses without a body, whatever follows them (RFC 9112 §6.3).

/// After a response without a body from the replica that owns
/// [`STICKY_ID`] (whose connection had more bytes after it), several
/// requests on the same client connection, mostly to that replica: each
/// gets its own answer, and `SMUGGLED` never reaches the client.
fn assert_next_answers_are_clean(client: &mut Client, context: &str) {
    for n in 0..8u64 {
        let id = if n < 5 { STICKY_ID } else { STICKY_ID + n };
        client.send(&format!(
            "GET /home HTTP/1.1\r\nHost: lb\r\nX-Request-ID: {id}\r\n\r\n"
        ));
        let next = client.try_response("GET");
        let ok = next
            .as_ref()
            .is_ok_and(|r| r.status == 200 && r.text().starts_with("Hello from: "));
        assert!(
            ok,
            "{context}: request {n} after it got {next:?}; the connection carried {:?}",
            String::from_utf8_lossy(client.received())
        );
    }
    let received = String::from_utf8_lossy(client.received()).into_owned();
    assert!(
        !received.contains("SMUGGLED"),
        "{context}: the client received {received:?}"
    );
}

/// A 204 whose replica sent `Content-Length: 68` and 68 more bytes (a
/// whole other response): the client gets the 204 without a body and
/// without `Content-Length` (RFC 9110 §8.6).
async fn no_content_has_no_body(engine: &str) {
    let wire = start(engine, &[]).await;
    let mut client = Client::connect(wire.addr());
    let reply = client.get_with_id("/no-content", STICKY_ID);
    assert_eq!(reply.status, 204, "{engine}: {reply:?}");
    assert_next_answers_are_clean(&mut client, &format!("{engine}: 204"));
    for framing in ["content-length", "transfer-encoding"] {
        assert_eq!(
            reply.header(framing),
            None,
            "{engine}: the 204 came with {:?}",
            reply.headers
        );
    }
}

/// A 304 followed by 68 bytes that are a whole other response.
async fn not_modified_has_no_body(engine: &str) {
    let wire = start(engine, &[]).await;
    let mut client = Client::connect(wire.addr());
    let reply = client.get_with_id("/not-modified", STICKY_ID);
    assert_eq!(reply.status, 304, "{engine}: {reply:?}");
    assert_next_answers_are_clean(&mut client, &format!("{engine}: 304"));
}

/// A HEAD whose replica sent the 8 body bytes anyway.
async fn a_head_response_has_no_body(engine: &str) {
    let wire = start(engine, &[]).await;
    let mut client = Client::connect(wire.addr());
    client.send(&format!(
        "HEAD /head-body HTTP/1.1\r\nHost: lb\r\nX-Request-ID: {STICKY_ID}\r\n\r\n"
    ));
    let reply = client.response("HEAD");
    assert_eq!(reply.status, 200, "{engine}: {reply:?}");
    assert_next_answers_are_clean(&mut client, &format!("{engine}: HEAD"));
}

/// Found by the black-box attack: a replica that sends bytes some time
/// after a response without a body (204, 304, the answer to HEAD). Had its
/// connection gone back to the pool, the next request on it (here the
/// client's next one, sent at once) would get those bytes as its answer.
async fn late_bytes_after_a_bodiless_response_reach_no_client(engine: &str) {
    let wire = start(engine, &[]).await;
    for (method, path) in [
        ("GET", "/no-content-late"),
        ("GET", "/not-modified-late"),
        ("HEAD", "/head-late"),
        ("GET", "/both-lengths-late"),
        ("GET", "/http10-late"),
    ] {
        let mut client = Client::connect(wire.addr());
        let context = format!("{engine}: {method} {path}");
        // Both requests at once: the second is on its way to the same
        // replica before the late bytes come.
        client.send(&format!(
            "{method} {path} HTTP/1.1\r\nHost: lb\r\nX-Request-ID: {STICKY_ID}\r\n\r\n\
             GET /home HTTP/1.1\r\nHost: lb\r\nX-Request-ID: {STICKY_ID}\r\n\r\n"
        ));
        let first = client.response(method);
        assert!(first.status < 400, "{context}: {first:?}");
        let second = client.response("GET");
        assert!(
            second.status == 200 && second.text().starts_with("Hello from: "),
            "{context}: the next answer was {second:?}"
        );
        assert_next_answers_are_clean(&mut client, &context);
    }
}

/// A 101 that no request asked for (the replica answers 101 to a request
/// without `Connection: upgrade`, or to an HTTP/1.0 one): 502, never a
/// protocol switch (RFC 9110 §7.8).
async fn an_unasked_switch_of_protocols_is_a_502(engine: &str) {
    let wire = start(engine, &[]).await;
    for request in [
        format!("GET /switches HTTP/1.1\r\nHost: lb\r\nX-Request-ID: {STICKY_ID}\r\n\r\n"),
        format!(
            "GET /switches HTTP/1.1\r\nHost: lb\r\nUpgrade: websocket\r\nX-Request-ID: {STICKY_ID}\r\n\r\n"
        ),
        format!(
            "GET /switches HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-Request-ID: {STICKY_ID}\r\n\r\n"
        ),
    ] {
        let reply = exchange(&wire, &request, &format!("{engine}: {request:?}"));
        assert_refusal(&reply, 502, &format!("{engine}: {request:?}"));
    }
}

/// A client that stops in the middle of a body, or never sends a byte,
/// does not hold its connection (a slot of `--max-connections`) beyond the
/// header-read timeout.
async fn a_stalled_body_or_a_silent_client_is_closed(engine: &str) {
    let wire = start(engine, &["--header-read-timeout", "1s"]).await;
    for request in [
        "",
        "POST /echo HTTP/1.1\r\nHost: lb\r\nContent-Length: 40\r\n\r\nbbbb",
        "POST /echo HTTP/1.1\r\nHost: lb\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbbbb\r\n",
        "POST /echo HTTP/1.0\r\nContent-Length: 40\r\n\r\nbbbb",
    ] {
        let mut client = Client::connect(wire.addr());
        client.send(request);
        // The client's read timeout (10 s) bounds the wait (it panics if
        // the connection stays open); whatever the data plane answers first
        // (a 408, or nothing), it then closes.
        let answered = String::from_utf8_lossy(&client.rest_until_closed()).into_owned();
        assert!(
            answered.is_empty()
                || (answered.starts_with("HTTP/1.") && answered[8..].starts_with(" 408 ")),
            "{engine}: {request:?} got {answered:?}"
        );
    }
}

/// RFC 9112 §6.1: a request with a transfer coding the data plane cannot
/// pass on gets 501; chunked twice too.
async fn transfer_codings_other_than_chunked_are_refused(engine: &str) {
    let wire = start(engine, &[]).await;
    for coding in ["gzip, chunked", "identity, chunked", "chunked, chunked"] {
        let request = format!(
            "POST /echo HTTP/1.1\r\nHost: lb\r\nTransfer-Encoding: {coding}\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        let reply = exchange(&wire, &request, &format!("{engine}: {coding}"));
        assert_refusal(&reply, 501, &format!("{engine}: {coding}"));
    }
}

// 4. Interim responses reach HTTP/1.1 clients (RFC 9110 §15.2).

/// A 103 with its `Link`, then the final 200, in that order.
async fn early_hints_reach_the_client(engine: &str) {
    let wire = start(engine, &[]).await;
    let mut client = Client::connect(wire.addr());
    client.send("GET /early-hints HTTP/1.1\r\nHost: lb\r\n\r\n");
    let (status, headers) = client.head();
    assert_eq!(status, 103, "{engine}: first head {headers:?}");
    let link: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n == "link")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(link, ["</style.css>; rel=preload"], "{engine}: {headers:?}");
    let last = client.response("GET");
    assert_eq!(
        (last.status, last.text().as_str()),
        (200, "final"),
        "{engine}: {last:?}"
    );
    assert_eq!(client.get("/home").status, 200, "{engine}: then");
}

/// `Expect: 100-continue`: the client hears `100 Continue` before it sends
/// the body, then gets the final answer.
async fn continue_comes_before_the_body(engine: &str) {
    let wire = start(engine, &[]).await;
    let mut client = Client::connect(wire.addr());
    client.send(
        "POST /echo HTTP/1.1\r\nHost: lb\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    let (status, headers) = client
        .try_head()
        .unwrap_or_else(|e| panic!("{engine}: no 100 Continue before the body: {e}"));
    assert_eq!(status, 100, "{engine}: {headers:?}");
    client.send("hello");
    let reply = client.response("POST");
    assert_eq!(reply.status, 200, "{engine}: {reply:?}");
    assert!(reply.text().ends_with("hello"), "{engine}: {reply:?}");
}

// 5. Host (RFC 9112 §3.2).

/// An HTTP/1.1 request without exactly one valid `Host` is refused (400)
/// and reaches no replica.
async fn host_must_be_one_valid_authority(engine: &str) {
    let wire = start(engine, &[]).await;
    let cases = [
        ("no Host", ""),
        ("two Host lines", "Host: a\r\nHost: a\r\n"),
        ("Host: a b", "Host: a b\r\n"),
        ("Host: a/b", "Host: a/b\r\n"),
        ("Host: user@a", "Host: user@a\r\n"),
        ("Host: a:port", "Host: a:port\r\n"),
    ];
    for (n, (what, host)) in cases.iter().enumerate() {
        let mut client = Client::connect(wire.addr());
        client.send(&format!(
            "GET /host-case-{n} HTTP/1.1\r\n{host}X-Case: {n}\r\n\r\n"
        ));
        let reply = client.response("GET");
        assert_refusal(&reply, 400, &format!("{engine}: {what}"));
    }
    let seen = seen(&wire);
    let reached: Vec<&String> = seen
        .0
        .values()
        .flatten()
        .filter(|line| line.contains("/host-case-"))
        .collect();
    assert!(
        reached.is_empty(),
        "{engine}: forwarded to a replica: {reached:?}"
    );
}

/// HTTP/1.0 has no Host requirement.
async fn http10_without_host_is_served(engine: &str) {
    let wire = start(engine, &[]).await;
    let mut client = Client::connect(wire.addr());
    client.send("GET /home HTTP/1.0\r\n\r\n");
    let reply = client.response("GET");
    assert_eq!(reply.status, 200, "{engine}: {reply:?}");
    assert!(
        reply.text().starts_with("Hello from: "),
        "{engine}: {reply:?}"
    );
}

// 6. Limits: request line 8192 bytes (`--max-request-line-bytes`), header
// fields 65536 bytes (`--max-header-bytes`), at most 100 fields.

/// `GET <target> HTTP/1.1` of exactly `length` bytes (CRLF not counted).
fn request_line(path: &str, length: usize) -> String {
    let fixed = "GET ?q= HTTP/1.1".len() + path.len();
    format!("GET {path}?q={} HTTP/1.1", "x".repeat(length - fixed))
}

/// Send `raw` on a new connection (all of it, as far as the data plane
/// reads it) and read the answer.
fn exchange(wire: &Wire, raw: &str, context: &str) -> common::Response {
    let mut client = Client::connect(wire.addr());
    client.send_lossy(raw.as_bytes());
    client
        .try_response("GET")
        .unwrap_or_else(|e| panic!("{context}: no answer: {e}"))
}

async fn a_request_line_over_the_limit_is_414(engine: &str) {
    let wire = start(engine, &[]).await;
    let query = format!(
        "GET /home?q={} HTTP/1.1\r\nHost: lb\r\n\r\n",
        "x".repeat(100_000)
    );
    let reply = exchange(&wire, &query, &format!("{engine}: 100 KB query"));
    if engine == "hyper" {
        // hyper's parser refuses a target over 64 KiB itself, before the
        // data plane sees the request: the right status, hyper's empty
        // body (README, "Limits").
        assert_eq!(reply.status, 414, "{engine}: 100 KB query: {reply:?}");
    } else {
        assert_refusal(&reply, 414, &format!("{engine}: 100 KB query"));
    }

    let line = format!("{}\r\nHost: lb\r\n\r\n", request_line("/home", 9_000));
    let reply = exchange(&wire, &line, &format!("{engine}: 9000-byte line"));
    assert_refusal(&reply, 414, &format!("{engine}: 9000-byte line"));
}

async fn a_header_section_over_the_limit_is_431(engine: &str) {
    let wire = start(engine, &[]).await;
    let mut big = String::from("GET /home HTTP/1.1\r\nHost: lb\r\n");
    for n in 0..100 {
        big.push_str(&format!("X-Fill-{n}: {}\r\n", "f".repeat(1000)));
    }
    big.push_str("\r\n");
    let reply = exchange(&wire, &big, &format!("{engine}: 100 KB of fields"));
    assert_refusal(&reply, 431, &format!("{engine}: 100 KB of fields"));

    let mut many = String::from("GET /home HTTP/1.1\r\nHost: lb\r\n");
    for n in 0..120 {
        many.push_str(&format!("X-Short-{n}: {n}\r\n"));
    }
    many.push_str("\r\n");
    let reply = exchange(&wire, &many, &format!("{engine}: 121 fields"));
    assert_refusal(&reply, 431, &format!("{engine}: 121 fields"));
}

/// Close to each limit without passing it: served. The request line does
/// not count in the header section's limit.
async fn requests_within_the_limits_are_served(engine: &str) {
    let wire = start(engine, &[]).await;
    let mut large = format!("{}\r\nHost: lb\r\n", request_line("/home", 8_000));
    for n in 0..60 {
        large.push_str(&format!("X-Fill-{n}: {}\r\n", "f".repeat(1000)));
    }
    large.push_str("\r\n");
    let context = format!("{engine}: an 8000-byte line and 60 KB of fields");
    let reply = exchange(&wire, &large, &context);
    assert_eq!(reply.status, 200, "{context}: {reply:?}");
    assert!(reply.text().starts_with("Hello from: "), "{context}");

    let mut hundred = String::from("GET /home HTTP/1.1\r\nHost: lb\r\n");
    for n in 0..99 {
        hundred.push_str(&format!("X-Short-{n}: {n}\r\n"));
    }
    hundred.push_str("\r\n");
    let context = format!("{engine}: 100 fields");
    let reply = exchange(&wire, &hundred, &context);
    assert_eq!(reply.status, 200, "{context}: {reply:?}");
}

/// `--max-request-line-bytes 16384`: a 9000-byte request line is served.
async fn the_request_line_limit_is_a_flag(engine: &str) {
    let wire = start(engine, &["--max-request-line-bytes", "16384"]).await;
    let line = format!("{}\r\nHost: lb\r\n\r\n", request_line("/home", 9_000));
    let context = format!("{engine}: 9000-byte line, limit 16384");
    let reply = exchange(&wire, &line, &context);
    assert_eq!(reply.status, 200, "{context}: {reply:?}");
    assert!(reply.text().starts_with("Hello from: "), "{context}");
}

// 7. Response heads.

/// 70 `Set-Cookie` fields (about 2 KB) reach the client, all of them, in
/// order.
async fn many_set_cookie_fields_pass_through(engine: &str) {
    let wire = start(engine, &[]).await;
    let mut client = Client::connect(wire.addr());
    let reply = client.get("/cookies");
    assert_eq!(reply.status, 200, "{engine}: {reply:?}");
    let expected: Vec<String> = (0..70).map(|n| format!("c{n}={n:0>20}")).collect();
    assert_eq!(reply.headers_named("set-cookie"), expected, "{engine}");
    assert_eq!(reply.text(), "ok", "{engine}");
}

/// A response that cannot be accepted is a 502 naming the one replica that
/// sent it; the request (which that replica received) is not sent to
/// another.
async fn an_invalid_response_is_a_502_not_retried(engine: &str) {
    let wire = start(engine, &[]).await;
    for (path, what) in [
        ("/bad-length", "Content-Length: abc"),
        ("/garbage", "a status line that is not HTTP"),
    ] {
        let context = format!("{engine}: {what}");
        let mut client = Client::connect(wire.addr());
        let reply = client.get(path);
        assert_refusal(&reply, 502, &context);
        let text = reply.text();
        assert_eq!(
            text.matches("server-").count(),
            1,
            "{context}: not one replica named: {text}"
        );
        assert_eq!(client.get("/home").status, 200, "{context}: then");
    }
    let seen = seen(&wire);
    for path in ["/bad-length", "/garbage"] {
        assert_eq!(
            seen.count(path),
            1,
            "{engine}: {path} was sent {} times, to {:?}",
            seen.count(path),
            seen.replicas_with(path)
        );
    }
}

// 8. Upgrade (RFC 9110 §7.8) and WebSocket (RFC 6455).

/// A WebSocket through the data plane to `path` of a replica.
fn websocket(addr: &str, path: &str, context: &str) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(READ_TIMEOUT))
        .expect("write timeout");
    let (socket, response) = tungstenite::client::client(format!("ws://{addr}{path}"), stream)
        .unwrap_or_else(|e| panic!("{context}: WebSocket handshake: {e}"));
    assert_eq!(response.status(), 101, "{context}: {response:?}");
    socket
}

/// Whether `error` is a read that timed out (the connection stayed open).
fn timed_out(error: &tungstenite::Error) -> bool {
    matches!(error, tungstenite::Error::Io(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
}

/// Whether the stream ends (end of stream or reset) within the read
/// timeout, with nothing more on it.
fn ends(stream: &mut TcpStream) -> Result<(), String> {
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) if rest.is_empty() => Ok(()),
        Ok(_) => Err(format!("more bytes: {rest:?}")),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(()),
        Err(e) => Err(format!("still open after {READ_TIMEOUT:?}: {e}")),
    }
}

/// Handshake, messages of every length encoding echoed, then the client's
/// close: the tunnel ends, and so does the client connection.
async fn websocket_echoes_until_the_client_closes(engine: &str) {
    let wire = start(engine, &[]).await;
    let mut socket = websocket(wire.addr(), "/ws", engine);
    for text in ["hello", &"m".repeat(300), &"l".repeat(70_000)] {
        socket
            .send(Message::text(text))
            .unwrap_or_else(|e| panic!("{engine}: send: {e}"));
        let echoed = socket
            .read()
            .unwrap_or_else(|e| panic!("{engine}: echo of {} bytes: {e}", text.len()));
        assert!(
            echoed == Message::text(text),
            "{engine}: sent {} bytes, got {echoed:?}",
            text.len()
        );
    }
    socket
        .close(None)
        .unwrap_or_else(|e| panic!("{engine}: close: {e}"));
    // The replica's close comes back; then the connection ends.
    loop {
        match socket.read() {
            Ok(Message::Close(_)) => {}
            Ok(other) => panic!("{engine}: after the close, {other:?}"),
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("{engine}: the closing handshake did not end the connection: {e}"),
        }
    }
    if let Err(e) = ends(socket.get_mut()) {
        panic!("{engine}: the client connection after the tunnel: {e}");
    }
}

/// The replica ends the connection after one message: so does the data
/// plane.
async fn websocket_ends_when_the_replica_closes(engine: &str) {
    let wire = start(engine, &[]).await;
    let mut socket = websocket(wire.addr(), "/ws-close-after-1", engine);
    socket
        .send(Message::text("only one"))
        .unwrap_or_else(|e| panic!("{engine}: send: {e}"));
    let echoed = socket
        .read()
        .unwrap_or_else(|e| panic!("{engine}: echo: {e}"));
    assert!(echoed == Message::text("only one"), "{engine}: {echoed:?}");
    match socket.read() {
        Ok(message) => panic!("{engine}: after the replica closed, {message:?}"),
        Err(e) if timed_out(&e) => panic!("{engine}: the connection stayed open: {e}"),
        Err(_) => {}
    }
    if let Err(e) = ends(socket.get_mut()) {
        panic!("{engine}: the client connection after the tunnel: {e}");
    }
}

/// `Upgrade: websocket` to a path that does not switch protocols: the
/// replica's ordinary answer, and the connection goes on in HTTP/1.1.
async fn upgrade_to_a_plain_path_is_an_ordinary_request(engine: &str) {
    let wire = start(engine, &[]).await;
    let mut client = Client::connect(wire.addr());
    client.send(
        "GET /home HTTP/1.1\r\nHost: lb\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    let reply = client.response("GET");
    assert_eq!(reply.status, 200, "{engine}: {reply:?}");
    assert!(
        reply.text().starts_with("Hello from: "),
        "{engine}: {reply:?}"
    );
    let next = client.get("/home");
    assert_eq!(next.status, 200, "{engine}: then {next:?}");
    assert!(
        next.text().starts_with("Hello from: "),
        "{engine}: {next:?}"
    );
}
