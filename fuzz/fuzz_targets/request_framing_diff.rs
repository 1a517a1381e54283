//! Request smuggling, differentially: the fast engine's framing of a client
//! byte stream against hyper's HTTP/1 server reading the same bytes.
//!
//! The fast engine's side is what its connection loop does: parse a head
//! at the start of what is left, forward head and `Content-Length` body,
//! go on after them; stop where it would wait (the head or body is not all
//! there), hand the connection over to hyper, refuse, or close
//! (`Connection: close`). Every message it forwards must be one hyper sees
//! too, in the same order, with the same method, target and body:
//! otherwise a client could make the proxy and a server behind it disagree
//! on where a request ends. Two views:
//!
//! - client side: the client's bytes, as hyper would read them; hyper must
//!   frame at least the messages the fast engine forwards, identically
//!   (it may go on where the fast engine stops);
//! - replica side: the bytes the fast engine writes to a replica for those
//!   messages (rebuilt heads included), one after another on one
//!   connection; hyper must read exactly those messages from them.
//!
//! The smaller limits must only ever forward fewer of the same messages.
#![no_main]

use std::cell::RefCell;
use std::convert::Infallible;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use ringlb_data_plane::Limits;
use ringlb_data_plane::fuzzing::{Parsed, parse_request, rebuild_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A request as a server acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Message {
    method: String,
    target: String,
    body: Vec<u8>,
}

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} with a body of {} bytes \"{}\"",
            self.method,
            self.target,
            self.body.len(),
            self.body.escape_ascii()
        )
    }
}

fuzz_target!(|data: &[u8]| {
    let input = data.escape_ascii().to_string();
    let forwarded = fast_engine(data, &Limits::default());
    let small = Limits {
        max_body_bytes: 16,
        max_request_line_bytes: 48,
        max_header_bytes: 96,
        ..Limits::default()
    };
    let fewer = fast_engine(data, &small);
    assert!(
        fewer.len() <= forwarded.len() && fewer.iter().zip(&forwarded).all(|(a, b)| a.0 == b.0),
        "small limits forward other messages: {:?} vs {:?}: {input}",
        fewer.iter().map(|m| m.0.to_string()).collect::<Vec<_>>(),
        forwarded
            .iter()
            .map(|m| m.0.to_string())
            .collect::<Vec<_>>(),
    );

    if forwarded.is_empty() {
        return; // nothing to compare (hyper would only repeat its own tests)
    }
    let client_side = hyper_reads(data, &input);
    for (i, (message, _)) in forwarded.iter().enumerate() {
        match client_side.get(i) {
            Some(seen) if seen == message => {}
            Some(seen) => panic!(
                "request smuggling: the fast engine forwards message {i} as {message}, \
                 hyper reads the client's bytes as {seen}: {input}"
            ),
            None => panic!(
                "request smuggling: the fast engine forwards message {i} ({message}), \
                 hyper reads only {} from the client's bytes: {input}",
                client_side.len()
            ),
        }
    }

    let upstream: Vec<u8> = forwarded
        .iter()
        .flat_map(|(_, bytes)| bytes.clone())
        .collect();
    let replica_side = hyper_reads(&upstream, &input);
    let sent: Vec<&Message> = forwarded.iter().map(|(m, _)| m).collect();
    let seen: Vec<&Message> = replica_side.iter().collect();
    assert!(
        sent == seen,
        "request smuggling: the fast engine sends a replica {}, hyper reads {} from those bytes \
         ({}), from the client's: {input}",
        list(&sent),
        list(&seen),
        upstream.escape_ascii()
    );
});

fn list(messages: &[&Message]) -> String {
    let items: Vec<String> = messages.iter().map(|m| format!("[{m}]")).collect();
    format!("{} message(s) {}", messages.len(), items.join(", "))
}

/// The messages the fast engine forwards from `data`, each with the bytes a
/// replica gets for it.
fn fast_engine(data: &[u8], limits: &Limits) -> Vec<(Message, Vec<u8>)> {
    let mut forwarded = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let rest = &data[at..];
        let Parsed::Complete(head) = parse_request(rest, limits) else {
            break;
        };
        let total = head.len + head.body_len;
        if rest.len() < total {
            break; // waits for the rest of the body, which never comes
        }
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let mut req = httparse::Request::new(&mut headers);
        let _ = req.parse(&rest[..head.len]);
        let message = Message {
            method: req.method.unwrap_or_default().to_string(),
            target: req.path.unwrap_or_default().to_string(),
            body: rest[head.len..total].to_vec(),
        };
        let bytes = if head.rebuild {
            let mut out = Vec::new();
            rebuild_request(&rest[..head.len], &mut out);
            out.extend_from_slice(&rest[head.len..total]);
            out
        } else {
            rest[..total].to_vec()
        };
        forwarded.push((message, bytes));
        at += total;
        if head.close {
            break;
        }
    }
    forwarded
}

/// A runtime for one connection: a fresh one each time, so that what runs
/// (and the coverage the fuzzer sees) depends on the input only, not on
/// the scheduler's state left by earlier inputs. Its clock is paused:
/// nothing here waits on real time, so when every task waits the clock
/// jumps to the guard's deadline at once, and a hung connection is a crash.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a tokio runtime")
}

/// The requests hyper's HTTP/1 server reads from a connection on which a
/// client writes `bytes` then shuts its side down, answering each with an
/// empty 200. Requests whose body does not arrive whole are left out.
fn hyper_reads(bytes: &[u8], input: &str) -> Vec<Message> {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let log = seen.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let log = log.clone();
        async move {
            let (parts, body) = req.into_parts();
            if let Ok(body) = body.collect().await {
                log.borrow_mut().push(Message {
                    method: parts.method.as_str().to_string(),
                    target: parts
                        .uri
                        .path_and_query()
                        .map_or_else(|| parts.uri.to_string(), |p| p.as_str().to_string()),
                    body: body.to_bytes().to_vec(),
                });
            }
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        }
    });
    runtime().block_on(async {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let connection = http1::Builder::new()
            .half_close(true)
            .header_read_timeout(None)
            .auto_date_header(false)
            .serve_connection(TokioIo::new(server), service);
        let (mut from_server, mut to_server) = tokio::io::split(client);
        let write = async move {
            let _ = to_server.write_all(bytes).await;
            let _ = to_server.shutdown().await;
        };
        let read = async move {
            let mut sink = Vec::new();
            let _ = from_server.read_to_end(&mut sink).await;
        };
        let all = async { tokio::join!(connection, write, read) };
        if tokio::time::timeout(Duration::from_secs(60), all)
            .await
            .is_err()
        {
            panic!("hyper hung on: {input}");
        }
    });
    seen.take()
}
