//! `atp serve`: the HTTP API, metrics and dashboard (crate `atp-server`)
//! and, unless `--no-daemon`, a daemon, in one process that stops
//! gracefully on the first SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use atp_core::Store as _;
use atp_daemon::Daemon;
use atp_server::{AppState, ServerConfig, Tokens};
use clap::Args;

use crate::database::DatabaseArgs;
use crate::{DaemonArgs, daemon_config, registry};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one; the address in use
    /// is printed). Non-loopback addresses need a token or --insecure.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Accept only requests with `Authorization: Bearer TOKEN` (repeat for
    /// several; env ATP_TOKENS takes a comma-separated list).
    #[arg(
        long = "token",
        env = "ATP_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    tokens: Vec<String>,
    /// Listen on a non-loopback address without a token.
    #[arg(long)]
    insecure: bool,
    /// Serve only: run no daemon in this process.
    // `--no-workers`, the old name, stays as a hidden alias for scripts.
    #[arg(long, alias = "no-workers")]
    pub no_daemon: bool,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, default_value_t = ServerConfig::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Where the OGC API – Processes facade is served: a path such as
    /// /ogc or /services/processes (no trailing slash).
    #[arg(long, default_value = ServerConfig::DEFAULT_OGC_PREFIX, value_parser = ogc_prefix)]
    ogc_prefix: String,
    #[command(flatten)]
    daemon: DaemonArgs,
}

/// An OGC prefix: `/` and path segments of letters, digits, `-`, `_` and
/// `.`, without a trailing slash (the routes are appended to it).
fn ogc_prefix(text: &str) -> Result<String, String> {
    let segments_ok = text.split('/').skip(1).all(|s| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    });
    if text.starts_with('/') && segments_ok && text != "/api" && !text.starts_with("/api/") {
        Ok(text.to_owned())
    } else {
        Err(
            "expected a path such as /ogc: segments of letters, digits, - _ and ., \
             no trailing slash, outside /api"
                .to_owned(),
        )
    }
}

pub async fn run(db: &DatabaseArgs, args: ServeArgs) -> anyhow::Result<()> {
    let tokens = Tokens::new(args.tokens.iter().map(|t| t.trim().to_owned()));
    atp_server::check_listen(args.listen, &tokens, args.insecure)?;
    let config = daemon_config(&args.daemon)?;
    // Listen for signals before anything can be told the server is up (the
    // "listening on" line): a SIGTERM right after it must stop gracefully,
    // not kill the process.
    let shutdown = atp_daemon::shutdown_on_signals();
    let store = db.open().await?;
    let state = AppState::new(
        store.clone(),
        ServerConfig {
            tokens,
            max_body_bytes: args.max_body_bytes,
            ogc_prefix: args.ogc_prefix,
        },
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    say!("listening on http://{addr}");
    tracing::info!(%addr, engine = store.engine(), "serving");

    let stopping = {
        let shutdown = shutdown.clone();
        async move { shutdown.stopping().await }
    };
    let server = atp_server::serve(listener, state.clone(), stopping);
    if args.no_daemon {
        server.await.context("serving HTTP")?;
        return Ok(());
    }
    let daemon = Daemon::new(store, registry(&args.daemon), config)
        .with_observer(state.metrics.clone() as Arc<dyn atp_daemon::Observer>);
    let (served, ran) = tokio::join!(server, daemon.run(shutdown));
    served.context("serving HTTP")?;
    ran?;
    Ok(())
}
