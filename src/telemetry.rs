//! The agent's own logs (to stderr: stdout carries `discover` and `debug` output).

use tracing_subscriber::EnvFilter;

use crate::config::{LogEncoding, LogsConfig};

/// Installs the global subscriber. `RUST_LOG`, when set, overrides the configured level.
pub fn init_logs(config: &LogsConfig) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(config.level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second call (tests) finds a subscriber already set; that is fine.
    let _ = match config.encoding {
        LogEncoding::Json => builder.json().try_init(),
        LogEncoding::Console => builder.try_init(),
    };
}
