//! `xnai-streams dashboard`: a small web dashboard over the same manager
//! the other commands use, and a JSON API under `/api/` that the page and
//! scripts share; `/metrics` (Prometheus) and `/healthz` (readiness) make
//! the process a monitoring sidecar too.
//!
//! Read-only unless started with `--allow-writes`; then every change needs
//! the token. A sampler looks at the server every interval; the pages read
//! its latest snapshot and the rates its history gives.

mod actions;
mod api;
mod assets;
mod dlq;
mod error;
mod group;
mod guard;
mod history;
mod message;
mod params;
mod sampler;
mod state;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Args;

use crate::output::{Failure, parse_duration};
use crate::target::Target;
use error::ApiError;
use state::{App, Options, TargetView, Writes};

/// The consumer name the dashboard uses in a group (claims).
pub(crate) const DASHBOARD_CONSUMER: &str = "xnai-streams-dashboard";

/// Options of `xnai-streams dashboard`.
#[derive(Args)]
pub(crate) struct DashboardArgs {
    /// The address to listen on. A loopback address answers requests for
    /// local host names only.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    addr: SocketAddr,
    /// Allow changes from the page and the API (replay, purge, claim,
    /// release, prune), each with the token.
    #[arg(long)]
    allow_writes: bool,
    /// The token every change must carry (`Authorization: Bearer
    /// <token>`). Without one, a dashboard on a loopback address makes one
    /// up and prints it; on any other address --allow-writes needs one.
    #[arg(
        long,
        env = "XNAI_DASHBOARD_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
    /// How often the server is looked at (the pages' data and the rates).
    #[arg(long, value_parser = parse_duration, default_value = "2s", value_name = "DURATION")]
    interval: Duration,
    /// How much history the charts and rates keep (it starts when the
    /// dashboard does).
    #[arg(long, value_parser = parse_duration, default_value = "10m", value_name = "DURATION")]
    history: Duration,
    /// A consumer that holds nothing and has been idle this long is stale
    /// (flagged, and pruned by the prune action's default).
    #[arg(long, value_parser = parse_duration, default_value = "1h", value_name = "DURATION")]
    stale_after: Duration,
}

impl std::fmt::Debug for DashboardArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardArgs")
            .field("addr", &self.addr)
            .field("allow_writes", &self.allow_writes)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("interval", &self.interval)
            .field("history", &self.history)
            .field("stale_after", &self.stale_after)
            .finish()
    }
}

/// A token nobody can guess: 32 hex digits from the system's randomness.
fn new_token() -> Result<String, Failure> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| Failure::new(format!("cannot make a token: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether and how writes are allowed, and the token to print when one was
/// made up.
fn writes(args: &DashboardArgs) -> Result<(Writes, Option<String>), Failure> {
    if !args.allow_writes {
        return Ok((Writes::ReadOnly, None));
    }
    match args.token.as_deref().map(str::trim) {
        Some("") => Err(Failure::new("the dashboard token is empty")),
        Some(t) if t.chars().any(char::is_whitespace) => {
            Err(Failure::new("the dashboard token must not contain spaces"))
        }
        Some(t) => Ok((Writes::Token(t.to_owned()), None)),
        None if args.addr.ip().is_loopback() => {
            let token = new_token()?;
            Ok((Writes::Token(token.clone()), Some(token)))
        }
        None => Err(Failure::new(format!(
            "refusing to allow writes on {} (not a loopback address) without a token: give --token or XNAI_DASHBOARD_TOKEN",
            args.addr
        ))),
    }
}

/// The routes: the page, the JSON API, `/metrics` and `/healthz`.
pub(crate) fn router(app: Arc<App>) -> Router {
    let reads = Router::new()
        .route("/api/overview", get(api::overview))
        .route("/api/health", get(api::health))
        .route("/api/streams", get(api::streams))
        .route("/api/groups", get(api::groups))
        .route("/api/groups/{group}", get(group::group))
        .route("/api/groups/{group}/pending", get(group::pending))
        .route("/api/message", get(message::message))
        .route("/api/dlq", get(dlq::list))
        .route("/api/dlq/stats", get(dlq::stats));
    let writes = Router::new()
        .route("/api/dlq/replay", post(dlq::replay))
        .route("/api/dlq/purge", post(dlq::purge))
        .route("/api/groups/{group}/claim", post(actions::claim))
        .route("/api/groups/{group}/release", post(actions::release))
        .route("/api/groups/{group}/prune", post(actions::prune))
        .route_layer(from_fn_with_state(Arc::clone(&app), guard::require_token));
    Router::new()
        .merge(reads)
        .merge(writes)
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .route("/", get(assets::index))
        .route("/assets/{*path}", get(assets::file))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn(guard::headers))
        .layer(from_fn_with_state(Arc::clone(&app), guard::check_host))
        .with_state(app)
}

async fn not_found(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") {
        ApiError::not_found(format!("no such endpoint: {}", uri.path())).into_response()
    } else {
        (axum::http::StatusCode::NOT_FOUND, "not found").into_response()
    }
}

async fn method_not_allowed() -> Response {
    ApiError::method_not_allowed().into_response()
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

pub(crate) async fn run(args: DashboardArgs, target: &Target) -> Result<u8, Failure> {
    let (writes, made_up) = writes(&args)?;
    if args.interval < Duration::from_millis(100) {
        return Err(Failure::new("--interval must be at least 100ms"));
    }
    let manager = target.manager_as(DASHBOARD_CONSUMER).await?;
    let view = TargetView::of(target);
    let options = Options {
        writes,
        interval: args.interval,
        history_span: args.history,
        stale_after: args.stale_after,
        loopback: args.addr.ip().is_loopback(),
    };
    let app = Arc::new(App::new(manager.clone(), view.clone(), options));
    // The first look before the first request, so no page starts empty.
    if let Some(first) = sampler::sample(&app, None).await {
        app.record(first);
    }
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|e| Failure::new(format!("cannot listen on {}: {e}", args.addr)))?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::new(format!("cannot listen on {}: {e}", args.addr)))?;
    let ns = view
        .namespace
        .as_deref()
        .map_or_else(String::new, |n| format!(", namespace `{n}`"));
    let mode = if app.writes.allowed() {
        "changes allowed with the token"
    } else {
        "read-only"
    };
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "dashboard on http://{local}/ for {}{ns}, {mode}",
            view.redis
        )?;
        if let Some(token) = &made_up {
            writeln!(out, "token: {token}")?;
        }
        if !local.ip().is_loopback() {
            writeln!(
                out,
                "warning: listening on {local}, not a loopback address: anyone who reaches it can read the streams"
            )?;
        }
        writeln!(out, "Ctrl-C to stop")?;
        out.flush()?;
    }
    let sampler = tokio::spawn(sampler::run(Arc::clone(&app)));
    let served = axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown_signal())
        .await;
    sampler.abort();
    manager.close().await?;
    served.map_err(|e| Failure::new(format!("the dashboard stopped: {e}")))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(addr: &str, allow_writes: bool, token: Option<&str>) -> DashboardArgs {
        DashboardArgs {
            addr: addr.parse().unwrap(),
            allow_writes,
            token: token.map(str::to_owned),
            interval: Duration::from_secs(2),
            history: Duration::from_secs(600),
            stale_after: Duration::from_secs(3600),
        }
    }

    #[test]
    fn writes_need_a_token_off_loopback() {
        let (w, made) = writes(&args("127.0.0.1:0", false, None)).unwrap();
        assert!(!w.allowed() && made.is_none());
        let (w, made) = writes(&args("127.0.0.1:0", true, None)).unwrap();
        let made = made.unwrap();
        assert_eq!(made.len(), 32);
        assert!(w.accepts(&made));
        assert!(writes(&args("0.0.0.0:0", true, None)).is_err());
        let (w, made) = writes(&args("0.0.0.0:0", true, Some("t0ken-t0ken"))).unwrap();
        assert!(w.accepts("t0ken-t0ken") && made.is_none());
        assert!(writes(&args("127.0.0.1:0", true, Some("  "))).is_err());
        assert!(writes(&args("127.0.0.1:0", true, Some("a b"))).is_err());
        let shown = format!("{:?}", args("127.0.0.1:0", true, Some("hunter2-token")));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
