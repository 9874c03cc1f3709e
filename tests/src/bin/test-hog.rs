//! Allocates and touches as many MiB as its first argument says, prints `ready`, then holds
//! the memory until its parent dies (or 120 s pass, whichever is first).

use std::io::Write;
use std::time::Duration;

fn main() {
    // SAFETY: prctl(PR_SET_PDEATHSIG) has no memory-safety preconditions.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(0);
    let block = vec![1u8; mib << 20];
    let touched: u64 = block.iter().step_by(4096).map(|b| u64::from(*b)).sum();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ready {touched}");
    let _ = out.flush();
    drop(out);
    std::thread::sleep(Duration::from_secs(120));
    drop(block);
}
