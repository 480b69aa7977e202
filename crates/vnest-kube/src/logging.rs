//! Logs of vnest's long-running components: `tracing` to stderr, levels from
//! `RUST_LOG` (default `info`), as text for people or JSON for collectors.

/// Installs the global subscriber.
pub fn init(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
