//! Makes a given number of `add` calls to a calculator with a given number in flight, then
//! exits: `call-count CALLS WIDTH [child|worker|none]` (the calculator's isolation, `child` by
//! default), or `raw`: the same calls through the raw tokio multiplexer to the `raw-echo` peer
//! over a socketpair, the floor the `in_flight` benchmark compares with.
//!
//! Run it under `valgrind --tool=callgrind --trace-children=yes` twice, with two call counts,
//! and the difference of the instructions each process executed, over the difference of the
//! counts, is the instructions one call costs on each side. Unlike time on a shared machine,
//! that figure barely moves between runs, so it tells apart changes of a few percent.
//! `bench/count.sh` does all of it.

use pm_examples::Calculator;
use pm_runtime::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let calls: u64 = args
        .next()
        .ok_or("usage: call-count CALLS WIDTH")?
        .parse()?;
    let width: u64 = args
        .next()
        .ok_or("usage: call-count CALLS WIDTH")?
        .parse()?;
    let isolation = match args.next().as_deref() {
        None | Some("child") => Isolation::Child,
        Some("worker") => Isolation::Worker,
        Some("none") => Isolation::None,
        Some("raw") => return raw(calls, width),
        Some(other) => {
            return Err(format!("no isolation `{other}`: child, worker, none or raw").into())
        }
    };
    let calculator = std::env::current_exe()?
        .parent()
        .ok_or("the executable has no directory")?
        .join("bench-calculator");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let pm = ProcessManager::new(ProcessManagerConfig {
            isolation,
            transport: TransportKind::Ipc,
            ..Default::default()
        });
        let calc = pm
            .spawn::<Calculator>(&calculator, SpawnOptions::default())
            .await?;
        let calc = std::sync::Arc::new(calc);
        let mut workers = tokio::task::JoinSet::new();
        for w in 0..width.max(1) {
            let calc = calc.clone();
            let share = calls / width.max(1) + u64::from(w < calls % width.max(1));
            workers.spawn(async move {
                for i in 0..share {
                    let i = i as i64;
                    if calc.add(i, 1).await? != i + 1 {
                        return Err(pm_runtime::Error::Protocol("a wrong sum".into()));
                    }
                }
                Ok(())
            });
        }
        while let Some(done) = workers.join_next().await {
            done??;
        }
        pm.shutdown().await?;
        Ok(())
    })
}

/// The baseline: `calls` 16-byte messages through the raw multiplexer, `width` in flight.
fn raw(calls: u64, width: u64) -> Result<(), Box<dyn std::error::Error>> {
    let echo = std::env::current_exe()?
        .parent()
        .ok_or("the executable has no directory")?
        .join("raw-echo");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let peer = rt.block_on(async {
        let mut peer = pm_bench::raw::RawPeer::start(&echo, pm_bench::raw::Socket::Pair).await?;
        let mux = pm_bench::raw::RawMux::start(peer.take_stream());
        let mut workers = tokio::task::JoinSet::new();
        for w in 0..width.max(1) {
            let mux = mux.clone();
            let share = calls / width.max(1) + u64::from(w < calls % width.max(1));
            workers.spawn(async move {
                for i in 0..share {
                    let message = i.to_be_bytes().repeat(2);
                    if mux.call(&message).await? != message {
                        return Err(std::io::Error::other("a wrong echo"));
                    }
                }
                Ok(())
            });
        }
        while let Some(done) = workers.join_next().await {
            done??;
        }
        Ok::<_, Box<dyn std::error::Error>>(peer)
    })?;
    // Dropping the runtime drops the multiplexer's tasks and with them our end of the socket.
    drop(rt);
    peer.finish()?;
    Ok(())
}
