//! Logging set-up shared by every binary.

use tracing_subscriber::EnvFilter;

/// Log targets limited to errors (see [`init`]).
pub const QUIET_TARGETS: [&str; 2] = ["srt_protocol", "srt_tokio"];

/// Installs a global `tracing` subscriber writing to stderr.
///
/// The filter comes from `RUST_LOG` (default `info`). When `AWS_LAMBDA_FUNCTION_NAME` or
/// `STREAMSTACK_LOG_JSON=1` is set, lines are JSON (one object per event) so CloudWatch Logs
/// Insights can query them; otherwise they are human-readable. Calling it twice is harmless.
///
/// Whatever `RUST_LOG` says, the SRT library logs errors only ([`QUIET_TARGETS`]): it logs
/// whole handshakes (with the caller's stream id, which carries a signature) at debug and
/// info, and one line per unparsable datagram a stranger sends.
pub fn init() {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for target in QUIET_TARGETS {
        if let Ok(directive) = format!("{target}=error").parse() {
            filter = filter.add_directive(directive);
        }
    }
    let json = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
        || std::env::var("STREAMSTACK_LOG_JSON").is_ok_and(|v| v == "1");
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().without_time().try_init() } else { builder.try_init() };
}
