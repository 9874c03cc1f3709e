//! Pattern 3, a full application inside a process: the process's `init` starts its own HTTP
//! endpoint and a background task; the manager calls its business logic over RPC while
//! anyone may use its HTTP endpoint; `#[on_shutdown]` stops both before the process exits.
//!
//! Run it with `cargo run -p pm-examples --example microservice`.

#![allow(clippy::print_stdout)] // an example prints what it shows

use std::io::{Read, Write};

use pm_examples::built_binary;
use pm_examples::patterns::Microservice;
use pm_runtime::prelude::*;

/// One plain HTTP GET of `/` from the application's own endpoint; its body.
fn http_get(address: &str) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        ..Default::default()
    });
    let service = pm
        .spawn::<Microservice>(built_binary("microservice")?, SpawnOptions::default())
        .await?;
    let address = service.address().await?;
    println!("the application's own HTTP endpoint: http://{address}/");
    println!(
        "{}",
        service.handle_business_logic("2 x coffee".into()).await?
    );
    println!("{}", service.handle_business_logic("1 x tea".into()).await?);
    let body = {
        let address = address.clone();
        tokio::task::spawn_blocking(move || http_get(&address)).await??
    };
    println!("GET http://{address}/ -> {body}");
    let stats = service.stats().await?;
    println!(
        "stats over RPC: handled {}, http requests {}, background ticks > 0: {}",
        stats.handled,
        stats.http_requests,
        stats.ticks > 0
    );
    pm.shutdown().await?;
    let closed = std::net::TcpStream::connect(&address).is_err();
    println!("after shutdown: endpoint closed: {closed}");
    Ok(())
}
