//! Listening sockets, made with the options tokio's `TcpListener::bind`
//! does not expose: `SO_REUSEPORT`, so that several processes (or several
//! single-threaded runtimes of one process) each have a listener of their
//! own on one address and the kernel spreads new connections over them.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Pending connections each listener queues before the kernel refuses more
/// (`listen(2)`'s backlog; the kernel caps it at `net.core.somaxconn`). The
/// figure tokio's `TcpListener::bind` uses.
pub const LISTEN_BACKLOG: i32 = 1024;

/// A non-blocking TCP listener on `addr` with `SO_REUSEADDR` (as tokio's
/// `TcpListener::bind` sets it) and, if `reuse_port`, `SO_REUSEPORT`: Linux
/// then lets every socket of the same user that also sets it bind the same
/// address, and hashes each new connection (its address and port pair) to
/// one of them. A socket bound without it keeps the address to itself, and
/// binding one with it beside a socket without it fails (`EADDRINUSE`).
///
/// The listener is a `std` one, not yet tied to a runtime: hand it to
/// `tokio::net::TcpListener::from_std` on the runtime that serves it.
///
/// # Errors
/// Creating the socket, setting an option, `bind(2)` (e.g. the address is
/// taken) or `listen(2)` failed.
pub fn listen(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// `count` listeners on `addr`, all with `SO_REUSEPORT`: the first binds
/// `addr` (port 0 picks a free port), the others the address the first got.
///
/// # Errors
/// As [`listen`], for any of them.
pub fn listen_many(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let first = listen(addr, true)?;
    let bound = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..count {
        listeners.push(listen(bound, true)?);
    }
    Ok(listeners)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn loopback() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    #[test]
    fn reuse_port_listeners_share_an_address_and_others_cannot() {
        let listeners = listen_many(loopback(), 2).expect("two listeners");
        let addr = listeners[0].local_addr().expect("addr");
        assert_eq!(listeners[1].local_addr().expect("addr"), addr);
        // A third with the option joins them; one without it is refused.
        let third = listen(addr, true).expect("a third with SO_REUSEPORT");
        let refused = listen(addr, false).expect_err("bound without SO_REUSEPORT");
        assert_eq!(refused.kind(), io::ErrorKind::AddrInUse);
        drop(third);
        // Without the option an address stays exclusive.
        let alone = listen(loopback(), false).expect("listener");
        let taken = alone.local_addr().expect("addr");
        assert_eq!(
            listen(taken, true).expect_err("bound beside it").kind(),
            io::ErrorKind::AddrInUse
        );
    }

    /// Connections to the shared address reach the listeners between them
    /// (the kernel hashes each connection to one), and each accepts.
    #[test]
    fn connections_are_spread_over_the_listeners() {
        let listeners = listen_many(loopback(), 2).expect("two listeners");
        let addr = listeners[0].local_addr().expect("addr");
        let mut clients = Vec::new();
        for _ in 0..64 {
            let mut client = std::net::TcpStream::connect(addr).expect("connect");
            client.write_all(b"x").expect("write");
            clients.push(client);
        }
        let mut accepted = [0usize; 2];
        // Everything connected is queued on one of the two by now.
        std::thread::sleep(std::time::Duration::from_millis(200));
        for (n, listener) in listeners.iter().enumerate() {
            while let Ok((mut stream, _)) = listener.accept() {
                stream.set_nonblocking(false).expect("blocking");
                let mut byte = [0u8; 1];
                stream.read_exact(&mut byte).expect("read");
                accepted[n] += 1;
            }
        }
        assert_eq!(accepted[0] + accepted[1], 64, "{accepted:?}");
        // 64 random source ports all hashed to one listener: 2^-63.
        assert!(accepted[0] > 0 && accepted[1] > 0, "{accepted:?}");
    }
}
