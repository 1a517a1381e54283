//! A replica for the data plane's wire tests: it speaks the replica's
//! command line (`--port --host --announce --server-id`, prints
//! `listening <addr>`) and answers `/heartbeat` and `/home` like the real
//! one, but it writes its responses byte by byte as scripted per path, to
//! exercise what a proxy must forward: chunked bodies with trailers,
//! close-delimited bodies, hop-by-hop headers, interim responses, bodies
//! that come in pieces, invalid responses, responses that try to smuggle a
//! second one, WebSocket tunnels.
//!
//! It remembers the request line (method and target) of every request it
//! receives; `GET /seen` lists them, so that a test can tell whether a
//! request reached this replica.
//!
//! Blocking std networking, one thread per connection: it is a test peer,
//! not a server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use base64::Engine as _;

/// `method target` of every request this process received, in order.
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn seen() -> MutexGuard<'static, Vec<String>> {
    // A thread that panicked while holding the lock left a whole list.
    SEEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Set by `/sick`, cleared by `/well`: while set, `/home` answers 503
/// (heartbeats stay healthy), as a replica whose application fails does.
static SICK: AtomicBool = AtomicBool::new(false);
/// `/slow` requests being served now, and the most at once so far.
static IN_FLIGHT: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);

/// RFC 6455 §1.3: appended to `Sec-WebSocket-Key` before hashing.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The largest WebSocket frame payload accepted (a test peer's bound).
const MAX_FRAME: u64 = 16 * 1024 * 1024;

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

/// One request as received: its head as text, its body (decoded when it
/// came chunked).
struct Received {
    head: String,
    body: Vec<u8>,
}

impl Received {
    /// The value of the first header `name` (any case), trimmed.
    fn header(&self, name: &str) -> Option<&str> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }
}

fn serve(stream: TcpStream, name: &str) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut out = stream;
    while let Some(request) = read_request(&mut reader) {
        let target = request.head.split_whitespace().nth(1).unwrap_or("/");
        let path = target.split('?').next().unwrap_or("/").to_owned();
        if !respond(&mut reader, &mut out, &path, &request, name) {
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
        if line == "\r\n" || line == "\n" {
            break;
        }
    }
    let request_line: Vec<&str> = head.split_whitespace().take(2).collect();
    seen().push(request_line.join(" "));
    let mut request = Received {
        head,
        body: Vec::new(),
    };
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().ends_with("chunked"));
    let length = request
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    // Like any HTTP/1.1 server: a client that waits for it gets its
    // `100 Continue` before the body is read.
    let expects = request
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if expects && (chunked || length > 0) {
        reader
            .get_mut()
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .ok()?;
    }
    if chunked {
        request.body = read_chunked(reader)?;
    } else {
        request.body = vec![0; length];
        reader.read_exact(&mut request.body).ok()?;
    }
    Some(request)
}

/// A chunked body, decoded; its trailers are read and dropped.
fn read_chunked(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        if reader.read_line(&mut size_line).ok()? == 0 {
            return None;
        }
        let size = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).ok()?;
        if size == 0 {
            loop {
                let mut trailer = String::new();
                if reader.read_line(&mut trailer).ok()? == 0 || trailer.trim().is_empty() {
                    return Some(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).ok()?;
        let mut crlf = String::new();
        reader.read_line(&mut crlf).ok()?;
    }
}

/// A complete HTTP/1.1 response of exactly `total` bytes whose body is
/// `SMUGGLED`: what a replica appends where no body may be, to see whether
/// a proxy takes it for the answer to a later request.
fn smuggled_response(total: usize) -> Vec<u8> {
    let prefix = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\nX-Pad: ";
    let suffix = "\r\n\r\nSMUGGLED";
    let pad = total.saturating_sub(prefix.len() + suffix.len());
    format!("{prefix}{}{suffix}", "a".repeat(pad)).into_bytes()
}

/// The `ms=` query parameter of a request's target (default 1000).
fn millis_of(request: &Received) -> u64 {
    request
        .head
        .split_whitespace()
        .nth(1)
        .and_then(|target| target.split_once("ms="))
        .and_then(|(_, v)| v.split('&').next()?.parse().ok())
        .unwrap_or(1000)
}

/// Write the scripted response; false when the connection must end.
fn respond(
    reader: &mut BufReader<TcpStream>,
    out: &mut TcpStream,
    path: &str,
    request: &Received,
    name: &str,
) -> bool {
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
        "/home" if SICK.load(Ordering::SeqCst) => {
            fixed(out, "503 Service Unavailable", &format!("sick: {name}"))
        }
        "/home" => fixed(out, "200 OK", &format!("Hello from: {name}")),
        "/sick" | "/well" => {
            SICK.store(path == "/sick", Ordering::SeqCst);
            fixed(out, "200 OK", path)
        }
        // `/slow?ms=N`: answer after N ms (default 1000), counting how many
        // are served at once; `/peak` tells the most so far.
        "/slow" => {
            let ms = millis_of(request);
            let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
            PEAK.fetch_max(now, Ordering::SeqCst);
            thread::sleep(Duration::from_millis(ms));
            IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
            fixed(out, "200 OK", &format!("slow from: {name}"))
        }
        // `/slow-body?ms=N`: the head and half the body at once, the rest
        // of the body after N ms (default 1000).
        // A response as an HTTP/1.0 server without Date writes it, and one
        // whose status line lacks the SP after the code.
        "/http10" => out
            .write_all(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello")
            .is_ok(),
        "/bare-status" => out
            .write_all(b"HTTP/1.1 200\r\nDate: Mon, 30 Nov 2026 00:00:00 GMT\r\nContent-Length: 2\r\n\r\nok")
            .is_ok(),
        // One interim response more than the data plane forwards.
        "/many-interims" => {
            let mut bytes = b"HTTP/1.1 102 Processing\r\n\r\n".repeat(17);
            bytes.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
            out.write_all(&bytes).is_ok()
        }
        "/length-list" => out
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello")
            .is_ok(),
        "/slow-body" => {
            let body = format!("slow body from: {name}");
            let (first, rest) = body.split_at(body.len() / 2);
            let head = write!(
                out,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{first}",
                body.len()
            )
            .is_ok();
            thread::sleep(Duration::from_millis(millis_of(request)));
            head && out.write_all(rest.as_bytes()).is_ok()
        }
        // The most `/slow` requests served at once since the last `/peak`.
        "/peak" => fixed(out, "200 OK", &PEAK.swap(0, Ordering::SeqCst).to_string()),
        // `replica <name>`, then one `method target` line per request
        // received so far (this one included).
        "/seen" => {
            let mut body = format!("replica {name}\n");
            for line in seen().iter() {
                body.push_str(line);
                body.push('\n');
            }
            fixed(out, "200 OK", &body)
        }
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
        // An interim response, a pause, then the final one.
        "/early-hints" => {
            let hints = out
                .write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
                .is_ok();
            thread::sleep(Duration::from_millis(200));
            hints
                && out
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal")
                    .is_ok()
        }
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
        "/bad-length" => {
            let _ = out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n");
            false
        }
        // `Connection` naming the response's own framing header.
        "/connection-content-length" => out
            .write_all(b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello")
            .is_ok(),
        // Both framings: Transfer-Encoding wins (RFC 9112 §6.3).
        "/chunked-and-length" => out
            .write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            )
            .is_ok(),
        // Responses that have no body, each followed by bytes that look
        // like one (or like a whole other response), in the same write.
        "/no-content" => {
            let mut raw = b"HTTP/1.1 204 No Content\r\nContent-Length: 68\r\n\r\n".to_vec();
            raw.extend_from_slice(&smuggled_response(68));
            out.write_all(&raw).is_ok()
        }
        "/not-modified" => {
            let mut raw = b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 68\r\n\r\n".to_vec();
            raw.extend_from_slice(&smuggled_response(68));
            out.write_all(&raw).is_ok()
        }
        // The same, the extra bytes 100 ms after the head: too late to be
        // seen with it, in time to be read as the next request's answer.
        "/no-content-late" | "/not-modified-late" | "/head-late" | "/both-lengths-late"
        | "/http10-late" => {
            let head: &[u8] = match path {
                "/no-content-late" => b"HTTP/1.1 204 No Content\r\n\r\n",
                "/not-modified-late" => b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
                // HTTP/1.0 keep-alive: not trusted for another request.
                "/http10-late" => {
                    b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"
                }
                // Chunked wins (an empty body), but 68 bytes were announced.
                "/both-lengths-late" => {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 68\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
                }
                _ => b"HTTP/1.1 200 OK\r\ncontent-length: 68\r\n\r\n",
            };
            if out.write_all(head).is_err() {
                return false;
            }
            thread::sleep(Duration::from_millis(100));
            out.write_all(&smuggled_response(68)).is_ok()
        }
        // Switches protocols whatever the request asked.
        "/switches" => {
            let _ = out.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            );
            false
        }
        // The body even when the request is a HEAD.
        "/head-body" => out
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED")
            .is_ok(),
        // 70 `Set-Cookie` fields, about 2 KB of head.
        "/cookies" => {
            let mut raw = String::from("HTTP/1.1 200 OK\r\n");
            for n in 0..70 {
                raw.push_str(&format!("Set-Cookie: c{n}={}\r\n", cookie_value(n)));
            }
            raw.push_str("Content-Length: 2\r\n\r\nok");
            out.write_all(raw.as_bytes()).is_ok()
        }
        "/ws" => websocket(reader, out, request, None),
        "/ws-close-after-1" => websocket(reader, out, request, Some(1)),
        _ => fixed(out, "404 Not Found", "no such path"),
    }
}

/// The value of `/cookies`' cookie `n`: 20 characters.
fn cookie_value(n: usize) -> String {
    format!("{n:0>20}")
}

/// Accept a WebSocket handshake (RFC 6455 §4.2.2), then echo every data
/// frame back, unmasked, answer pings, and answer a close with a close and
/// the end of the connection. With `messages`, the connection ends (no
/// close frame) after that many messages are echoed. Always false: the
/// connection no longer speaks HTTP.
fn websocket(
    reader: &mut BufReader<TcpStream>,
    out: &mut TcpStream,
    request: &Received,
    messages: Option<usize>,
) -> bool {
    let upgrade = request
        .header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = request.header("sec-websocket-key").filter(|_| upgrade) else {
        let body = "a WebSocket handshake needs Upgrade: websocket and Sec-WebSocket-Key";
        return write!(
            out,
            "HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .is_ok();
    };
    let digest = sha1_smol::Sha1::from(format!("{key}{WEBSOCKET_GUID}")).digest();
    let accept = base64::engine::general_purpose::STANDARD.encode(digest.bytes());
    if write!(
        out,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut echoed = 0;
    while let Some((first, payload)) = read_frame(reader) {
        let fin = first & 0x80 != 0;
        match first & 0x0f {
            // Continuation, text, binary: back as they came.
            0x0..=0x2 => {
                if !write_frame(out, first, &payload) {
                    return false;
                }
                if fin {
                    echoed += 1;
                    if messages.is_some_and(|m| echoed >= m) {
                        return false;
                    }
                }
            }
            // Close: the close echoed, then the end of the connection.
            0x8 => {
                let code = payload.get(..2).unwrap_or(&[]);
                let _ = write_frame(out, 0x88, code);
                return false;
            }
            // Ping: pong.
            0x9 if !write_frame(out, 0x8a, &payload) => return false,
            _ => {}
        }
    }
    false
}

/// One frame: its first byte (FIN, RSV, opcode) and its unmasked payload.
fn read_frame(reader: &mut impl Read) -> Option<(u8, Vec<u8>)> {
    let mut start = [0u8; 2];
    reader.read_exact(&mut start).ok()?;
    let masked = start[1] & 0x80 != 0;
    let length = match start[1] & 0x7f {
        126 => {
            let mut n = [0u8; 2];
            reader.read_exact(&mut n).ok()?;
            u64::from(u16::from_be_bytes(n))
        }
        127 => {
            let mut n = [0u8; 8];
            reader.read_exact(&mut n).ok()?;
            u64::from_be_bytes(n)
        }
        n => u64::from(n),
    };
    if length > MAX_FRAME {
        return None;
    }
    let mut mask = [0u8; 4];
    if masked {
        reader.read_exact(&mut mask).ok()?;
    }
    let mut payload = vec![0; usize::try_from(length).ok()?];
    reader.read_exact(&mut payload).ok()?;
    if masked {
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= mask[i % 4];
        }
    }
    Some((start[0], payload))
}

/// Write a frame as a server does: unmasked.
fn write_frame(out: &mut TcpStream, first: u8, payload: &[u8]) -> bool {
    let mut frame = vec![first];
    match payload.len() {
        n @ 0..=125 => frame.push(n as u8),
        n @ 126..=0xffff => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    out.write_all(&frame).is_ok()
}
