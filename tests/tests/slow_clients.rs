//! A slow-loris attack on a process's HTTP transport: a thousand clients that trickle their
//! headers and never finish them. The process goes on serving complete requests, its memory
//! stays bounded, and connections beyond its limit are closed at once instead of piling up.
//! (The timeouts that end the trickling connections are tested with short limits in
//! pm-transport's `http::limits`.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use pm_tests::resources::raise_fd_limit;
use pm_tests::standalone::Host;

const CALCULATOR: &str = env!("CARGO_BIN_EXE_test-calculator");
const TOKEN: &str = "0123456789abcdef-slow-token";
/// The HTTP transport's default connection limit.
const MAX_CONNECTIONS: usize = 1024;

/// A complete request on a connection of its own, closed after the answer: the status line
/// and the body.
fn request(host: &Host, method: &str, path: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(host.endpoint()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response.lines().next().unwrap_or("").to_owned();
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_owned();
    format!("{status} {body}")
}

/// Whether the server has closed `stream` without sending anything (it must be
/// non-blocking).
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

#[test]
fn a_thousand_trickling_clients_leave_the_process_serving_and_bounded() {
    raise_fd_limit();
    let mut host = Host::start(CALCULATOR, "http://", TOKEN);
    let before = host.rss();
    let mut slow: Vec<TcpStream> = (0..1000)
        .map(|_| {
            let mut stream = TcpStream::connect(host.endpoint()).expect("connect");
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                .expect("first bytes");
            stream
        })
        .collect();
    // Three rounds of one more header line each, never the blank line that ends them; the
    // rounds are time under test, the attacker's pace.
    for _ in 0..3 {
        for stream in &mut slow {
            stream.write_all(b"X-Slow: 1\r\n").expect("trickle");
        }
        std::thread::sleep(Duration::from_millis(300));
        // Complete requests are answered meanwhile.
        assert!(
            request(&host, "POST", "/call/add", "[5,3]").starts_with("HTTP/1.1 200 OK 8"),
            "a complete request was not answered while clients trickled"
        );
    }
    // Past the limit, connections are closed at once.
    let mut extra: Vec<TcpStream> = (0..100)
        .map(|_| {
            let stream = TcpStream::connect(host.endpoint()).expect("connect");
            stream.set_nonblocking(true).expect("non-blocking");
            stream
        })
        .collect();
    let over = slow.len() + extra.len() - MAX_CONNECTIONS;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut closed = 0;
    while closed < over && std::time::Instant::now() < deadline {
        closed = extra
            .iter_mut()
            .map(closed_by_server)
            .filter(|&closed| closed)
            .count();
        std::thread::sleep(Duration::from_millis(20));
    }
    // The complete requests' connections may not all have given their slots back yet.
    assert!(
        (over..=over + 4).contains(&closed),
        "{closed} of 100 connections past the limit were closed at once; expected about {over}"
    );
    assert!(host.alive());
    let after = host.rss();
    assert!(
        after < before + (32 << 20),
        "resident memory grew from {before} to {after} bytes"
    );
    // The attackers go; the process serves as before.
    drop(slow);
    drop(extra);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !request(&host, "GET", "/health", "").starts_with("HTTP/1.1 200") {
        assert!(std::time::Instant::now() < deadline, "never served again");
        std::thread::sleep(Duration::from_millis(20));
    }
}
