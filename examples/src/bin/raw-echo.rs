//! The benchmark's baseline peer: echoes 4-byte-length-prefixed messages over the socket it
//! inherits on descriptor 3, with no framework at all. Exits at end-of-stream.

use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;

fn main() {
    // SAFETY: the benchmark starts this binary with a connected socket on descriptor 3 and
    // nothing else in this process uses that descriptor.
    let mut stream = unsafe { UnixStream::from_raw_fd(3) };
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).is_err() {
            return;
        }
        let n = u32::from_be_bytes(len) as usize;
        if n > buf.len() {
            buf.resize(n, 0);
        }
        if stream.read_exact(&mut buf[..n]).is_err() {
            return;
        }
        let mut out = Vec::with_capacity(4 + n);
        out.extend_from_slice(&len);
        out.extend_from_slice(&buf[..n]);
        if stream.write_all(&out).is_err() {
            return;
        }
    }
}
