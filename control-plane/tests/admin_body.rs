//! The admin API's body limit as a plain client meets it: one that sends
//! its whole body (8 MiB here, more than the socket buffers hold) without
//! waiting for `100 Continue` (Python's urllib,
//! curl with a small body) still reads the 413.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ringlb_control_plane::http_api::MAX_BODY_BYTES;
use ringlb_testkit::start_control_plane;

#[test]
fn an_oversized_body_sent_whole_gets_its_413() {
    let control_plane = start_control_plane(&["--replicas", "1"]);
    let size = 8 * 1024 * 1024;
    let mut stream = TcpStream::connect(&control_plane.http).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let head = format!(
        "POST /add HTTP/1.1\r\nHost: cp\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("head");
    // The whole body, as urllib sends it: every write must be taken.
    let body = vec![b' '; size];
    stream
        .write_all(&body)
        .expect("the control plane reads the body it refuses");
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).expect("status line");
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    let mut rest = String::new();
    let _ = reader.read_to_string(&mut rest);
    let json = rest.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert_eq!(
        json,
        format!(
            "{{\"message\": \"<Error> Request body is larger than {MAX_BODY_BYTES} bytes\", \"status\": \"failure\"}}"
        ),
        "{rest}"
    );
    assert!(
        rest.to_ascii_lowercase().contains("connection: close"),
        "{rest}"
    );
}
