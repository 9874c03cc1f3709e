//! OS resource readings of the processes hosting managed processes.

use std::sync::Mutex;
use std::time::Instant;

/// CPU and memory readings of an OS process from `/proc`.
#[derive(Debug, Default)]
pub(crate) struct ResourceSampler {
    /// The baseline of the CPU figure: the OS process it is of (pid and start time, so a
    /// restarted child starts a baseline of its own), when it was read, the ticks then, and
    /// the figure reported from it.
    last: Mutex<Option<Baseline>>,
}

#[derive(Debug, Clone, Copy)]
struct Baseline {
    process: (u32, u64),
    at: Instant,
    ticks: u64,
    figure: f64,
}

/// The shortest window a CPU figure is computed over. Readers asking more often (a status
/// page, a scrape, the monitor) get the latest figure again rather than the noise of a few
/// clock ticks (the kernel counts CPU time in 10 ms ticks).
const MIN_WINDOW: std::time::Duration = std::time::Duration::from_millis(500);

impl ResourceSampler {
    /// Resident memory in bytes, and CPU use in percent of one core since the previous sample
    /// (since the process started, on the first sample; the previous figure again when the
    /// previous sample is under 500 ms old). `None` when `/proc` cannot be read
    /// (the process is gone).
    ///
    /// For a child process the memory is that of its whole process tree: the child and every
    /// descendant still running (a worker that forks helpers is charged for them). The
    /// manager's own process, which hosts `Worker` and `None` processes, is measured alone:
    /// its descendants are the other managed children.
    pub(crate) fn sample(&self, pid: u32) -> Option<(f64, u64)> {
        let mut memory = resident_bytes(pid)?;
        if pid != std::process::id() {
            memory += descendants(pid)
                .into_iter()
                .filter_map(resident_bytes)
                .sum::<u64>();
        }

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
        let process = (pid, start_ticks);
        let cpu = match *last {
            Some(base) if base.process == process && now.duration_since(base.at) < MIN_WINDOW => {
                return Some((base.figure, memory));
            }
            Some(base) if base.process == process => {
                let elapsed = now.duration_since(base.at).as_secs_f64();
                (ticks.saturating_sub(base.ticks) as f64 / hz) / elapsed * 100.0
            }
            // No baseline, or one of another process: the average since this one started.
            _ => {
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
        *last = Some(Baseline {
            process,
            at: now,
            ticks,
            figure: cpu,
        });
        Some((cpu, memory))
    }
}

/// Resident memory of one OS process in bytes; `None` when it is gone.
fn resident_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    Some(resident_pages * page)
}

/// The processes descending from `pid` (not `pid` itself), from each thread's `children`
/// list; where the kernel has no such lists, from every process's parent in `/proc/*/stat`.
fn descendants(pid: u32) -> Vec<u32> {
    let listed = std::path::Path::new(&format!("/proc/{pid}/task/{pid}/children")).exists();
    let children_of: Box<dyn Fn(u32) -> Vec<u32>> = if listed {
        Box::new(listed_children)
    } else {
        let parents = parent_table();
        Box::new(move |parent| {
            parents
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(pid, _)| *pid)
                .collect()
        })
    };
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    // Bounded, so a pid reused inside a cycle of stale reads cannot loop forever.
    while let Some(parent) = frontier.pop() {
        for child in children_of(parent) {
            if child != pid && !found.contains(&child) && found.len() < 4096 {
                found.push(child);
                frontier.push(child);
            }
        }
    }
    found
}

/// The children the kernel lists for every thread of `pid`.
fn listed_children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut children = Vec::new();
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            children.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    children
}

/// Every process's pid and parent pid.
fn parent_table() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let ppid = stat[stat.rfind(')')? + 2..]
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect()
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

    #[test]
    fn a_process_tree_is_found_both_from_children_lists_and_from_parent_pids() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let me = std::process::id();
        let listed = descendants(me);
        let scanned: Vec<u32> = parent_table()
            .into_iter()
            .filter(|(_, ppid)| *ppid == me)
            .map(|(pid, _)| pid)
            .collect();
        let _ = child.kill();
        let _ = child.wait();
        assert!(listed.contains(&child.id()), "{listed:?}");
        assert!(scanned.contains(&child.id()), "{scanned:?}");
    }
}
