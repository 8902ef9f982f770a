//! The `log` crate's records and panics into Envoy's log, one `proxy_log`
//! call a line (installed once per VM, from `_initialize`).

use std::fmt::Write as _;

use super::proxy_log;

/// Logs a panic at critical level before the VM aborts, so the cause of a dead
/// worker is in Envoy's log (the message never holds secrets: the core has no
/// panic paths that format credentials). Straight through `proxy_log`, whose
/// status is ignored: the hook itself cannot panic.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let mut line = String::new();
        // A formatting error only shortens the line.
        let _ = write!(
            line,
            "envoy-presign: panic (worker VM will be restarted): {info}"
        );
        log_line(LogLevel::Critical, &line);
    }));
}

/// Sends the `log` crate's records to Envoy at most as verbose as `max`
/// (Envoy's own wasm log level filters them further).
pub fn install_logger(max: log::LevelFilter) {
    // Fails only if a logger is already set (a second `_initialize`): it is ours.
    let _ = log::set_logger(&HostLogger);
    log::set_max_level(max);
}

/// proxy-wasm's log levels.
#[derive(Clone, Copy)]
#[repr(u32)]
enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

/// Writes one line to Envoy's log; a line the host refuses is dropped
/// (there is nowhere else to write it). Not counted as a hostcall: logging
/// never was (`hostcall-count` measures the request's work).
fn log_line(level: LogLevel, line: &str) {
    // SAFETY: a live slice with its length.
    let _ = unsafe { proxy_log(level as u32, line.as_ptr(), line.len()) };
}

/// The `log` crate's logger: each record is one `proxy_log` call.
struct HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        if let Some(line) = record.args().as_str() {
            log_line(level, line);
            return;
        }
        let mut line = String::new();
        // Not `to_string`, which panics if a `Display` fails: that only
        // shortens the line here.
        let _ = line.write_fmt(*record.args());
        log_line(level, &line);
    }

    fn flush(&self) {}
}
