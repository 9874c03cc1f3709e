//! What this test process holds, read from `/proc/self`: open fds, threads, zombie children
//! and resident memory. The counts cover the whole process, so a test using them should be
//! alone in its binary.

/// Open file descriptors (`usize::MAX` if they cannot be read).
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(usize::MAX)
}

/// Threads (`usize::MAX` if they cannot be read).
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(usize::MAX)
}

/// Children of this process that have exited and not been reaped.
pub fn zombie_children() -> usize {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return usize::MAX;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            let Some(close) = stat.rfind(')') else {
                return false;
            };
            let mut fields = stat[close + 1..].split_whitespace();
            let state = fields.next();
            let ppid = fields.next();
            state == Some("Z") && ppid == Some(me.as_str())
        })
        .count()
}

/// Resident memory, in bytes (`u64::MAX` if it cannot be read).
pub fn rss() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok());
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    match (pages, u64::try_from(page)) {
        (Some(pages), Ok(page)) => pages * page,
        _ => u64::MAX,
    }
}

/// Raises this process's open-file limit to its hard limit (children started afterwards
/// inherit it), for tests that open a thousand connections.
pub fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit on a valid struct.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
