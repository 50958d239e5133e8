//! What every request of the dashboard shares: the manager, the options,
//! the latest snapshot and the history.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use xnai_streams::{RedisConfig, RedisStreamManager, observe};

use super::history::History;
use super::sampler::{Snapshot, point};
use crate::target::{Layout, Target};

/// Whether the dashboard may change anything, and the token that proves a
/// request may.
pub(crate) enum Writes {
    /// Nothing can be changed through the dashboard.
    ReadOnly,
    /// Changes are allowed to requests that carry this token.
    Token(String),
}

impl std::fmt::Debug for Writes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ReadOnly => f.write_str("ReadOnly"),
            Self::Token(_) => f.write_str("Token(***)"),
        }
    }
}

impl Writes {
    /// Whether changes are allowed at all.
    pub(crate) fn allowed(&self) -> bool {
        matches!(self, Self::Token(_))
    }

    /// Whether `given` is the token, compared in time that does not depend
    /// on where they differ.
    pub(crate) fn accepts(&self, given: &str) -> bool {
        let Self::Token(token) = self else {
            return false;
        };
        let (a, b) = (token.as_bytes(), given.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// The server and namespace, as the page shows them: never the password.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TargetView {
    /// The URL with its password replaced by `***`.
    pub(crate) redis: String,
    /// The key namespace, if any.
    pub(crate) namespace: Option<String>,
    /// `shared` or `per-stream`.
    pub(crate) dlq_layout: &'static str,
}

impl TargetView {
    pub(crate) fn of(target: &Target) -> Self {
        Self {
            redis: RedisConfig::new(target.url()).redacted_url(),
            namespace: target.namespace.clone(),
            dlq_layout: match target.dlq_layout {
                Layout::Shared => "shared",
                Layout::PerStream => "per-stream",
            },
        }
    }
}

/// The state every handler sees.
#[derive(Debug)]
pub(crate) struct App {
    /// The dashboard's own manager (consumer `xnai-streams-dashboard`).
    pub(crate) manager: RedisStreamManager,
    /// Where it looks.
    pub(crate) target: TargetView,
    /// Whether it may change anything.
    pub(crate) writes: Writes,
    /// How often the sampler runs.
    pub(crate) interval: Duration,
    /// How much history is kept.
    pub(crate) history_span: Duration,
    /// A consumer idle this long that holds nothing is stale.
    pub(crate) stale_after: Duration,
    /// Whether the dashboard listens on a loopback address only (then it
    /// answers requests for local host names only).
    pub(crate) loopback: bool,
    /// The metrics of this process, for `/metrics`.
    pub(crate) prometheus: Option<PrometheusHandle>,
    history: Mutex<History>,
    latest: Mutex<Option<Arc<Snapshot>>>,
}

/// The options an [`App`] is made of.
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) writes: Writes,
    pub(crate) interval: Duration,
    pub(crate) history_span: Duration,
    pub(crate) stale_after: Duration,
    pub(crate) loopback: bool,
}

impl App {
    pub(crate) fn new(manager: RedisStreamManager, target: TargetView, options: Options) -> Self {
        Self {
            manager,
            target,
            writes: options.writes,
            interval: options.interval,
            history_span: options.history_span,
            stale_after: options.stale_after,
            loopback: options.loopback,
            prometheus: prometheus(),
            history: Mutex::new(History::new(options.history_span)),
            latest: Mutex::new(None),
        }
    }

    /// The latest snapshot, if one was taken.
    pub(crate) fn latest(&self) -> Option<Arc<Snapshot>> {
        self.latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Keeps a new snapshot as the latest and as a point of the history.
    pub(crate) fn record(&self, snapshot: Snapshot) {
        let p = point(&snapshot);
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(p);
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(snapshot));
        if let Some(handle) = &self.prometheus {
            handle.run_upkeep();
        }
    }

    /// Runs `f` over the history.
    pub(crate) fn with_history<T>(&self, f: impl FnOnce(&History) -> T) -> T {
        f(&self.history.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The Prometheus recorder of this process, installed on first use (one
/// per process: a second dashboard in the same process shares it). `None`
/// when another recorder was installed first.
fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new().install_recorder().ok()?;
            observe::describe_metrics();
            Some(handle)
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_shown_without_its_password() {
        let target = Target {
            redis: Some("redis://app:hunter2-secret@db:6379/0".to_owned()),
            namespace: Some("t1".to_owned()),
            dlq_layout: Layout::PerStream,
        };
        let view = serde_json::to_string(&TargetView::of(&target)).unwrap();
        assert!(!view.contains("hunter2"), "{view}");
        assert!(view.contains("redis://app:***@db:6379"), "{view}");
        assert!(view.contains("per-stream"), "{view}");
    }

    #[test]
    fn tokens_are_compared_whole_and_hidden() {
        let writes = Writes::Token("s3cret-token".to_owned());
        assert!(writes.accepts("s3cret-token"));
        assert!(!writes.accepts("s3cret-tokeN"));
        assert!(!writes.accepts("s3cret"));
        assert!(!writes.accepts(""));
        assert!(!Writes::ReadOnly.accepts(""));
        assert!(!format!("{writes:?}").contains("s3cret"));
    }
}
