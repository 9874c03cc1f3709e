//! The `tracing` output of child processes: written by the child to its stderr, one event per
//! line, and read back by the manager into its own `tracing` at the same level.
//!
//! A process binary started by a manager installs a plain-text subscriber on stderr (unless
//! the binary installed one of its own first) at the level `TITAN_PM_LOG` names (`error`,
//! `warn`, `info`, `debug`, `trace` or `off`; default `info`). The manager forwards every
//! line with the process name and pid; a line that starts with a level keeps that level, so a
//! child's `info!` is an `INFO` event in the manager, not a warning. Each event is one line
//! (newlines inside it are written as `\n`). Spans come along as text, so an event inside a
//! traced call carries its `trace_id`.

use std::io::Write;

use tracing::Level;

/// The environment variable setting a child's log level.
pub(crate) const LOG_ENV: &str = "TITAN_PM_LOG";

/// Installs the child's stderr subscriber; does nothing when one is installed already or
/// `TITAN_PM_LOG=off`.
pub(crate) fn init_child_logging() {
    let level = match std::env::var(LOG_ENV) {
        Ok(value) => match parse_level(&value) {
            Ok(level) => level,
            Err(()) => Some(Level::INFO),
        },
        Err(_) => Some(Level::INFO),
    };
    let Some(level) = level else { return };
    // An error here means the binary installed its own subscriber: keep it.
    let _ = tracing_subscriber::fmt()
        .with_writer(|| EventLine(std::io::stderr()))
        .with_ansi(false)
        .without_time()
        .with_max_level(level)
        .try_init();
}

/// Writes each formatted event as exactly one line: newlines and carriage returns inside it
/// become `\n` and `\r`, so a multi-line message keeps its level when the manager reads it
/// back, and no message can forge a line of its own. The subscriber writes an event with one
/// `write` of the whole record.
struct EventLine<W: Write>(W);

impl<W: Write> Write for EventLine<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let body = buf.strip_suffix(b"\n").unwrap_or(buf);
        let mut line = Vec::with_capacity(buf.len() + 8);
        for &byte in body {
            match byte {
                b'\n' => line.extend_from_slice(b"\\n"),
                b'\r' => line.extend_from_slice(b"\\r"),
                _ => line.push(byte),
            }
        }
        line.push(b'\n');
        self.0.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// A level name; `Ok(None)` for `off`.
fn parse_level(value: &str) -> Result<Option<Level>, ()> {
    match value.trim().to_ascii_lowercase().as_str() {
        "off" => Ok(None),
        "error" => Ok(Some(Level::ERROR)),
        "warn" => Ok(Some(Level::WARN)),
        "info" => Ok(Some(Level::INFO)),
        "debug" => Ok(Some(Level::DEBUG)),
        "trace" => Ok(Some(Level::TRACE)),
        _ => Err(()),
    }
}

/// The level a child's stderr line was logged at, and the rest of the line; `None` for a
/// line that does not start with a level (plain output, a panic message).
pub(crate) fn split_level(line: &str) -> Option<(Level, &str)> {
    let trimmed = line.trim_start();
    let (word, rest) = trimmed.split_once(' ')?;
    let level = match word {
        "ERROR" => Level::ERROR,
        "WARN" => Level::WARN,
        "INFO" => Level::INFO,
        "DEBUG" => Level::DEBUG,
        "TRACE" => Level::TRACE,
        _ => return None,
    };
    Some((level, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_keeps_the_level_the_child_logged_it_at() {
        assert_eq!(
            split_level(" INFO call{trace_id=ab}: arrived"),
            Some((Level::INFO, "call{trace_id=ab}: arrived"))
        );
        assert_eq!(split_level("ERROR x"), Some((Level::ERROR, "x")));
        assert_eq!(split_level("thread 'main' panicked"), None);
        assert_eq!(split_level("INFO"), None);
    }

    #[test]
    fn an_event_with_newlines_is_written_as_one_line() {
        let mut out = EventLine(Vec::new());
        out.write_all(b" INFO first\nERROR forged\r\n")
            .expect("written");
        assert_eq!(out.0, b" INFO first\\nERROR forged\\r\n".to_vec());
    }

    #[test]
    fn level_names_parse_and_unknown_ones_are_refused() {
        assert_eq!(parse_level("Debug"), Ok(Some(Level::DEBUG)));
        assert_eq!(parse_level("off"), Ok(None));
        assert_eq!(parse_level("loud"), Err(()));
    }
}
