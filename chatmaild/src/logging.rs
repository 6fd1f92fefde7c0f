//! Minimal stderr logger for the service binaries.
//!
//! systemd adds timestamps and the unit name in the journal, and mtail matches on message
//! text, so only the bare message is printed (as the Python services did). Set
//! `CHATMAILD_LOG` to `error`, `warn` (default), `info`, `debug` or `trace`.

use std::io::Write;

use log::{LevelFilter, Log, Metadata, Record};

struct StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            // One write per line so concurrent tasks do not interleave within a line.
            let line = format!("{}\n", record.args());
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

/// Install the logger; calling it twice is harmless.
pub fn init() {
    let level = std::env::var("CHATMAILD_LOG")
        .ok()
        .and_then(|v| v.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::Warn);
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
