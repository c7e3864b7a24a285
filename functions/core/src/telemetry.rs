//! Logging set-up shared by every binary.

use tracing_subscriber::EnvFilter;

/// Installs a global `tracing` subscriber writing to stderr.
///
/// The filter comes from `RUST_LOG` (default `info`). When `AWS_LAMBDA_FUNCTION_NAME` or
/// `STREAMSTACK_LOG_JSON=1` is set, lines are JSON (one object per event) so CloudWatch Logs
/// Insights can query them; otherwise they are human-readable. Calling it twice is harmless.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
        || std::env::var("STREAMSTACK_LOG_JSON").is_ok_and(|v| v == "1");
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().without_time().try_init() } else { builder.try_init() };
}
