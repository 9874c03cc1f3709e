//! The benchmarks' raw peer: a tokio program that echoes 4-byte-length-prefixed messages with
//! no framework at all, reading in large chunks and answering every complete message of a
//! read with one write. It serves the socketpair inherited on descriptor 3, or connects to
//! `unix:PATH` or `tcp:ADDR` given as its argument. Exits at end-of-stream.

use std::os::fd::FromRawFd;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let mut input = Vec::with_capacity(1 << 16);
    let mut output = Vec::with_capacity(1 << 16);
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        input.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        while input.len() - start >= 4 {
            let len = u32::from_be_bytes([
                input[start],
                input[start + 1],
                input[start + 2],
                input[start + 3],
            ]) as usize;
            if input.len() - start < 4 + len {
                break;
            }
            output.extend_from_slice(&input[start..start + 4 + len]);
            start += 4 + len;
        }
        input.drain(..start);
        if !output.is_empty() {
            if stream.write_all(&output).await.is_err() {
                return;
            }
            output.clear();
        }
    }
}

fn main() {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(_) => std::process::exit(1),
    };
    let target = std::env::args().nth(1);
    runtime.block_on(async move {
        match target.as_deref() {
            Some(path) if path.starts_with("unix:") => {
                if let Ok(stream) = tokio::net::UnixStream::connect(&path[5..]).await {
                    echo(stream).await;
                }
            }
            Some(addr) if addr.starts_with("tcp:") => {
                if let Ok(stream) = tokio::net::TcpStream::connect(&addr[4..]).await {
                    let _ = stream.set_nodelay(true);
                    echo(stream).await;
                }
            }
            _ => {
                // SAFETY: the benchmark starts this binary with a connected socket on
                // descriptor 3 and nothing else in this process uses that descriptor.
                let std_stream = unsafe { std::os::unix::net::UnixStream::from_raw_fd(3) };
                if std_stream.set_nonblocking(true).is_ok() {
                    if let Ok(stream) = tokio::net::UnixStream::from_std(std_stream) {
                        echo(stream).await;
                    }
                }
            }
        }
    });
}
