//! A replica for the data plane's wire tests: it speaks the replica's
//! command line (`--port --host --announce --server-id`, prints
//! `listening <addr>`) and answers `/heartbeat` and `/home` like the real
//! one, but it writes its responses byte by byte as scripted per path, to
//! exercise what a proxy must forward: chunked bodies with trailers,
//! close-delimited bodies, hop-by-hop headers, interim responses, bodies
//! that come in pieces, invalid responses.
//!
//! Blocking std networking, one thread per connection: it is a test peer,
//! not a server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let host = value("--host").unwrap_or_else(|| "127.0.0.1".into());
    let port = value("--port").unwrap_or_else(|| "0".into());
    let name = value("--server-id").unwrap_or_else(|| "scripted".into());
    let listener = TcpListener::bind(format!("{host}:{port}")).expect("bind");
    let local = listener.local_addr().expect("local address");
    println!("listening {local}");
    let _ = std::io::stdout().flush();
    for stream in listener.incoming().flatten() {
        let name = name.clone();
        thread::spawn(move || serve(stream, &name));
    }
}

/// One request as received: its head as text, its body.
struct Received {
    head: String,
    body: Vec<u8>,
}

fn serve(stream: TcpStream, name: &str) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut out = stream;
    while let Some(request) = read_request(&mut reader) {
        let path = request
            .head
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_owned();
        if !respond(&mut out, &path, &request, name) {
            return;
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Received> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Received { head, body })
}

/// Write the scripted response; false when the connection must end.
fn respond(out: &mut TcpStream, path: &str, request: &Received, name: &str) -> bool {
    let pause = || thread::sleep(Duration::from_millis(20));
    let fixed = |out: &mut TcpStream, status: &str, body: &str| {
        write!(
            out,
            "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .is_ok()
    };
    match path {
        "/heartbeat" => fixed(out, "200 OK", ""),
        "/home" => fixed(out, "200 OK", &format!("Hello from: {name}")),
        // The head and body the replica received, as its body.
        "/echo" => {
            let mut body = request.head.clone().into_bytes();
            body.extend_from_slice(&request.body);
            let ok = write!(
                out,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .is_ok();
            ok && out.write_all(&body).is_ok()
        }
        "/chunked" => {
            let parts: [&[u8]; 4] = [
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum\r\n\r\n5\r\nhello\r\n",
                b"7;ext=1\r\n, world\r\n",
                b"0\r\nx-checksum: 42\r\n",
                b"\r\n",
            ];
            parts.iter().all(|part| {
                pause();
                out.write_all(part).is_ok()
            })
        }
        "/until-close" => {
            let _ = out.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nstreamed ");
            pause();
            let _ = out.write_all(b"until the end");
            false
        }
        "/hop-by-hop" => out
            .write_all(
                b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\nX-End-To-End: 1\r\ncontent-length: 2\r\n\r\nok",
            )
            .is_ok(),
        "/interim" => out
            .write_all(
                b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal",
            )
            .is_ok(),
        "/in-pieces" => {
            let body = "0123456789".repeat(100_000);
            let _ = write!(out, "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
            body.as_bytes().chunks(64 * 1024).all(|piece| {
                pause();
                out.write_all(piece).is_ok()
            })
        }
        "/closes" => {
            let _ = out.write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 4\r\n\r\nbye.");
            false
        }
        "/garbage" => {
            let _ = out.write_all(b"this is not HTTP\r\n\r\n");
            false
        }
        _ => fixed(out, "404 Not Found", "no such path"),
    }
}
