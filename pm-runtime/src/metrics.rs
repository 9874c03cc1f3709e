//! OS resource readings of the processes hosting managed processes.

use std::sync::Mutex;
use std::time::Instant;

/// CPU and memory readings of an OS process from `/proc`.
#[derive(Debug, Default)]
pub(crate) struct ResourceSampler {
    last: Mutex<Option<(Instant, u64)>>,
}

impl ResourceSampler {
    /// Resident memory in bytes, and CPU use in percent of one core since the previous sample
    /// (since the process started, on the first sample). `None` when `/proc` cannot be read
    /// (the process is gone).
    pub(crate) fn sample(&self, pid: u32) -> Option<(f64, u64)> {
        let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
        let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
        let memory = resident_pages * page;

        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces; fields resume after its closing parenthesis.
        let after_name = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the full line: 11 and 12 after the name.
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        let start_ticks: u64 = fields.get(19)?.parse().ok()?;
        // SAFETY: as above.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let cpu = match *last {
            Some((at, before)) => {
                let elapsed = now.duration_since(at).as_secs_f64();
                if elapsed > 0.0 {
                    (ticks.saturating_sub(before) as f64 / hz) / elapsed * 100.0
                } else {
                    0.0
                }
            }
            None => {
                let uptime: f64 = std::fs::read_to_string("/proc/uptime")
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0.0);
                let alive = uptime - start_ticks as f64 / hz;
                if alive > 0.0 {
                    (ticks as f64 / hz) / alive * 100.0
                } else {
                    0.0
                }
            }
        };
        *last = Some((now, ticks));
        Some((cpu, memory))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_this_process_reads_memory_and_cpu() {
        let sampler = ResourceSampler::default();
        let (cpu, memory) = sampler.sample(std::process::id()).expect("own /proc");
        assert!(memory > 1024 * 1024, "{memory}");
        assert!(cpu >= 0.0);
        assert!(sampler.sample(u32::MAX).is_none());
    }
}
