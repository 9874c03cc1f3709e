//! A child's stdout and stderr, forwarded into `tracing` line by line, with the manager's
//! memory bounded however much the child writes.
//!
//! The pipes are always read to the end, so a child never blocks on a full pipe. A line
//! longer than [`MAX_LINE`] is cut there (the rest of it is skipped and counted). Lines past
//! [`LINES_PER_SECOND`] (after a burst of as many) are dropped and counted, and a warning
//! says how many once forwarding resumes and when the pipe closes. So a flood costs the
//! manager CPU to read it, never memory to hold it.

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// The longest line forwarded, in bytes; the rest of a longer one is skipped.
pub(crate) const MAX_LINE: usize = 8 * 1024;
/// How many lines per second, per stream, are forwarded once a burst of as many is spent.
pub(crate) const LINES_PER_SECOND: u32 = 1000;

/// Forwards `stream` until it closes. Bytes that are not UTF-8 are replaced, never a reason
/// to stop forwarding.
pub(crate) async fn forward<R: AsyncRead + Unpin>(
    stream: R,
    process: String,
    pid: u32,
    which: &'static str,
) {
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut line = Vec::with_capacity(256);
    let mut budget = Budget::new(Instant::now());
    let mut cut_bytes: u64 = 0;
    loop {
        line.clear();
        match read_line(&mut reader, &mut line).await {
            Ok(Read::End) => break,
            Ok(Read::Line { skipped }) => {
                cut_bytes = cut_bytes.saturating_add(skipped);
                if let Some(dropped) = budget.take(Instant::now()) {
                    if dropped > 0 {
                        tracing::warn!(target: "pm::child", process = %process, pid, stream = which, dropped, "dropped {dropped} lines over the rate limit of {LINES_PER_SECOND} a second");
                    }
                    emit(&line, skipped, &process, pid, which);
                }
            }
            Err(err) => {
                tracing::debug!(process = %process, pid, %err, "stopped forwarding {which}");
                break;
            }
        }
    }
    let dropped = budget.dropped;
    if dropped > 0 || cut_bytes > 0 {
        tracing::warn!(target: "pm::child", process = %process, pid, stream = which, dropped, cut_bytes, "{which} closed; {dropped} lines were dropped over the rate limit and {cut_bytes} bytes cut from long lines");
    }
}

/// What one read gave.
enum Read {
    /// The pipe is closed and nothing is left.
    End,
    /// A line (without its newline) is in the buffer; `skipped` bytes past [`MAX_LINE`] were
    /// thrown away.
    Line { skipped: u64 },
}

/// Reads one line into `line`, keeping at most [`MAX_LINE`] bytes of it.
async fn read_line<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    line: &mut Vec<u8>,
) -> std::io::Result<Read> {
    let mut skipped: u64 = 0;
    let mut any = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(if any {
                Read::Line { skipped }
            } else {
                Read::End
            });
        }
        any = true;
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(at) => (&available[..at], Some(at + 1)),
            None => (available, None),
        };
        let room = MAX_LINE.saturating_sub(line.len());
        let kept = chunk.len().min(room);
        line.extend_from_slice(&chunk[..kept]);
        skipped = skipped.saturating_add((chunk.len() - kept) as u64);
        let used = done.unwrap_or(available.len());
        reader.consume(used);
        if done.is_some() {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(Read::Line { skipped });
        }
    }
}

/// A token bucket of lines: [`LINES_PER_SECOND`] a second, as many at once.
struct Budget {
    tokens: f64,
    last: Instant,
    /// Lines dropped in all.
    dropped: u64,
    /// Lines dropped since the last one forwarded.
    dropped_since: u64,
}

impl Budget {
    fn new(now: Instant) -> Self {
        Budget {
            tokens: f64::from(LINES_PER_SECOND),
            last: now,
            dropped: 0,
            dropped_since: 0,
        }
    }

    /// Takes one line's worth: `Some(dropped since the last forwarded line)` if it may be
    /// forwarded, `None` if it is dropped.
    fn take(&mut self, now: Instant) -> Option<u64> {
        let rate = f64::from(LINES_PER_SECOND);
        let elapsed = now
            .saturating_duration_since(self.last)
            .min(Duration::from_secs(1));
        self.tokens = (self.tokens + elapsed.as_secs_f64() * rate).min(rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Some(std::mem::take(&mut self.dropped_since))
        } else {
            self.dropped = self.dropped.saturating_add(1);
            self.dropped_since = self.dropped_since.saturating_add(1);
            None
        }
    }
}

fn emit(line: &[u8], skipped: u64, process: &str, pid: u32, which: &'static str) {
    let text = String::from_utf8_lossy(line);
    let text = if skipped > 0 {
        std::borrow::Cow::Owned(format!("{text} [{skipped} more bytes cut]"))
    } else {
        text
    };
    if which == "stderr" {
        match crate::logging::split_level(&text) {
            Some((level, event)) => forward_event(level, process, pid, event),
            None => {
                tracing::warn!(target: "pm::child", process = %process, pid, stream = which, "{text}");
            }
        }
    } else {
        tracing::info!(target: "pm::child", process = %process, pid, stream = which, "{text}");
    }
}

/// Re-emits an event a child logged, at the level it was logged at.
fn forward_event(level: tracing::Level, process: &str, pid: u32, event: &str) {
    match level {
        tracing::Level::ERROR => {
            tracing::error!(target: "pm::child", process = %process, pid, stream = "stderr", "{event}")
        }
        tracing::Level::WARN => {
            tracing::warn!(target: "pm::child", process = %process, pid, stream = "stderr", "{event}")
        }
        tracing::Level::INFO => {
            tracing::info!(target: "pm::child", process = %process, pid, stream = "stderr", "{event}")
        }
        tracing::Level::DEBUG => {
            tracing::debug!(target: "pm::child", process = %process, pid, stream = "stderr", "{event}")
        }
        tracing::Level::TRACE => {
            tracing::trace!(target: "pm::child", process = %process, pid, stream = "stderr", "{event}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_allows_a_burst_then_the_rate_and_counts_what_it_drops() {
        let start = Instant::now();
        let mut budget = Budget::new(start);
        for _ in 0..LINES_PER_SECOND {
            assert_eq!(budget.take(start), Some(0));
        }
        assert_eq!(budget.take(start), None);
        assert_eq!(budget.take(start), None);
        // A tenth of a second later, a tenth of the rate is back; the first says what was
        // dropped before it.
        let later = start + Duration::from_millis(100);
        assert_eq!(budget.take(later), Some(2));
        for _ in 1..(LINES_PER_SECOND / 10) {
            assert_eq!(budget.take(later), Some(0));
        }
        assert_eq!(budget.take(later), None);
        assert_eq!(budget.dropped, 3);
    }

    #[tokio::test]
    async fn a_line_longer_than_the_limit_is_cut_and_the_rest_skipped_not_kept() {
        let mut input = vec![b'x'; MAX_LINE * 3];
        input.extend_from_slice(b"\nshort\r\n");
        let mut reader = BufReader::with_capacity(1024, &input[..]);
        let mut line = Vec::new();
        let Read::Line { skipped } = read_line(&mut reader, &mut line).await.expect("read") else {
            panic!("no line");
        };
        assert_eq!((line.len(), skipped), (MAX_LINE, (MAX_LINE * 2) as u64));
        assert!(
            line.capacity() < MAX_LINE * 2,
            "the long line was held whole"
        );
        line.clear();
        assert!(matches!(
            read_line(&mut reader, &mut line).await,
            Ok(Read::Line { skipped: 0 })
        ));
        assert_eq!(line, b"short");
        line.clear();
        assert!(matches!(
            read_line(&mut reader, &mut line).await,
            Ok(Read::End)
        ));
    }
}
