//! The read side of the JSON API: the overview, health, streams and
//! groups (from the latest snapshot), and the probes `/healthz` and
//! `/metrics`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use xnai_streams::GroupHealth;

use super::error::{ApiError, ApiResult};
use super::history::{self, Growth, History};
use super::params::Params;
use super::sampler::{Snapshot, epoch_ms};
use super::state::App;

/// Rates shown as "now" are averaged over this much of the history.
pub(crate) const RATE_WINDOW: Duration = Duration::from_secs(60);

/// The query of a path that takes no parameters, checked.
pub(crate) type RawQuery = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// The parameters of a query, each one of `allowed`.
pub(crate) fn params(query: RawQuery, allowed: &[&str]) -> ApiResult<Params> {
    let Query(pairs) = query?;
    Params::new(pairs, allowed)
}

/// The latest snapshot, or 503 before the first one.
pub(crate) fn snapshot(app: &App) -> ApiResult<Arc<Snapshot>> {
    app.latest()
        .ok_or_else(|| ApiError::unavailable("the first look at the server is still being taken"))
}

/// RFC 3339 of a time in ms since the epoch.
pub(crate) fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// What every answer of the overview and group views starts with.
pub(crate) fn about(app: &App, snap: &Snapshot) -> Value {
    json!({
        "sampled_at": rfc3339_ms(epoch_ms(snap.at)),
        "history_since": app.with_history(History::since_ms).map(rfc3339_ms),
        "interval_ms": app.interval.as_millis() as u64,
        "history_ms": app.history_span.as_millis() as u64,
        "target": app.target,
        "writes": app.writes.allowed(),
        "errors": snap.errors,
    })
}

/// Per minute, over the last [`RATE_WINDOW`].
fn rate_now(h: &History, growth: &Growth<'_>) -> Option<f64> {
    h.rate(growth, RATE_WINDOW)
}

/// One group at a glance: totals over its streams and its rates.
fn group_summary(snap: &Snapshot, h: &History, g: &GroupHealth) -> Value {
    let sum = |f: fn(&xnai_streams::StreamHealth) -> u64| g.streams.iter().map(f).sum::<u64>();
    let lag = g
        .streams
        .iter()
        .map(|s| s.lag)
        .try_fold(0u64, |acc, l| Some(acc + l?));
    let oldest = g.streams.iter().filter_map(|s| s.oldest_pending_ms).max();
    let consumers: BTreeSet<&str> = g
        .streams
        .iter()
        .flat_map(|s| s.consumers.iter().map(|c| c.name.as_str()))
        .collect();
    let out = history::sum(
        g.streams
            .iter()
            .map(|s| history::group_out(&g.group, &s.stream))
            .collect(),
    );
    let retries = history::sum(
        g.streams
            .iter()
            .map(|s| history::group_retries(&g.group, &s.stream))
            .collect(),
    );
    json!({
        "group": g.group,
        "claim_idle_ms": g.claim_idle_ms,
        "streams": g.streams.iter().map(|s| &s.stream).collect::<Vec<_>>(),
        "missing_on": g.streams.iter().filter(|s| !s.group_exists).map(|s| &s.stream).collect::<Vec<_>>(),
        "pending": sum(|s| s.pending),
        "lag": lag,
        "oldest_pending_ms": oldest,
        "claimable": sum(|s| s.claimable),
        "scheduled_retries": sum(|s| s.scheduled_retries),
        "ready_retries": sum(|s| s.ready_retries),
        "consumers": consumers.len(),
        "dead_letters": snap.dlq.by_group.get(&g.group).copied().unwrap_or(0),
        "rates_per_min": {
            "out": rate_now(h, &out),
            "retries": rate_now(h, &retries),
            "dead_letters": rate_now(h, &history::group_dlq(&g.group)),
        },
    })
}

/// `GET /api/overview`: the verdict and why, every stream with its rates
/// and chart, every group at a glance, the dead-letter queue by reason.
pub(crate) async fn overview(
    State(app): State<Arc<App>>,
    query: RawQuery,
) -> ApiResult<Json<Value>> {
    params(query, &[])?;
    let snap = snapshot(&app)?;
    let health = &snap.health;
    let mut names: Vec<String> = snap.streams.iter().map(|s| s.name.clone()).collect();
    for g in &health.groups {
        for s in &g.streams {
            if !names.contains(&s.stream) {
                names.push(s.stream.clone());
            }
        }
    }
    let body = app.with_history(|h| {
        let streams: Vec<Value> = names
            .iter()
            .map(|name| {
                let info = snap.streams.iter().find(|s| &s.name == name);
                let readers: Vec<&str> = health
                    .groups
                    .iter()
                    .filter(|g| g.streams.iter().any(|s| &s.stream == name))
                    .map(|g| g.group.as_str())
                    .collect();
                let length = info.map(|i| i.length).or_else(|| {
                    health
                        .groups
                        .iter()
                        .flat_map(|g| g.streams.iter())
                        .find(|s| &s.stream == name)
                        .map(|s| s.length)
                });
                let mut lines = vec![("in".to_owned(), history::stream_in(name))];
                for g in &readers {
                    lines.push((format!("out: {g}"), history::group_out(g, name)));
                }
                json!({
                    "name": name,
                    "length": length,
                    "groups": info.map_or_else(|| readers.iter().map(|g| (*g).to_owned()).collect(), |i| i.groups.clone()),
                    "in_per_min": rate_now(h, &history::stream_in(name)),
                    "chart": h.chart(lines),
                })
            })
            .collect();
        let groups: Vec<Value> = health
            .groups
            .iter()
            .map(|g| group_summary(&snap, h, g))
            .collect();
        let dlq_chart = h.chart(vec![(
            "dead letters".to_owned(),
            Box::new(|a: &history::Point, b: &history::Point| {
                history::grew(Some(a.dlq_total), Some(b.dlq_total))
            }) as Growth<'_>,
        )]);
        json!({
            "status": health.status.as_str(),
            "healthy": health.healthy,
            "problems": health.problems,
            "thresholds": app.manager.config().health,
            "backend": health.backend,
            "server_version": health.server_version,
            "latency_ms": health.latency_ms,
            "streams": streams,
            "groups": groups,
            "dlq": {
                "total": health.dlq_entries,
                "by_reason": snap.dlq.by_reason,
                "by_stream": snap.dlq.by_stream,
                "by_group": snap.dlq.by_group,
                "without_provenance": snap.dlq.without_provenance,
                "growth_per_minute": health.dlq_growth_per_minute,
                "chart": dlq_chart,
            },
        })
    });
    Ok(Json(merge(about(&app, &snap), body)))
}

/// Adds the fields of `b` to `a`.
pub(crate) fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// `GET /api/health`: the latest health report, as `xnai-streams health
/// --json` prints it.
pub(crate) async fn health(State(app): State<Arc<App>>, query: RawQuery) -> ApiResult<Json<Value>> {
    params(query, &[])?;
    let snap = snapshot(&app)?;
    let mut value = serde_json::to_value(&snap.health)
        .map_err(|e| ApiError::internal(format!("cannot write the report: {e}")))?;
    if let Some(map) = value.as_object_mut() {
        map.insert("status".to_owned(), json!(snap.health.status.as_str()));
        map.insert(
            "sampled_at".to_owned(),
            json!(rfc3339_ms(epoch_ms(snap.at))),
        );
    }
    Ok(Json(value))
}

/// `GET /api/streams`: the streams, as `xnai-streams streams --json`, with
/// their rate in.
pub(crate) async fn streams(
    State(app): State<Arc<App>>,
    query: RawQuery,
) -> ApiResult<Json<Value>> {
    params(query, &[])?;
    let snap = snapshot(&app)?;
    let list: Vec<Value> = app.with_history(|h| {
        snap.streams
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "length": s.length,
                    "groups": s.groups,
                    "in_per_min": rate_now(h, &history::stream_in(&s.name)),
                })
            })
            .collect()
    });
    Ok(Json(Value::Array(list)))
}

/// `GET /api/groups`: every group at a glance.
pub(crate) async fn groups(State(app): State<Arc<App>>, query: RawQuery) -> ApiResult<Json<Value>> {
    params(query, &[])?;
    let snap = snapshot(&app)?;
    let list: Vec<Value> = app.with_history(|h| {
        snap.health
            .groups
            .iter()
            .map(|g| group_summary(&snap, h, g))
            .collect()
    });
    Ok(Json(Value::Array(list)))
}

/// `GET /healthz`: readiness, the cheap check (one small write): 200 when
/// the server takes work, 503 when not.
pub(crate) async fn healthz(State(app): State<Arc<App>>) -> Response {
    match app.manager.readiness().await {
        Ok(r) => {
            let status = if r.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, Json(json!(r))).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `GET /metrics`: the Prometheus text exposition of this process: the
/// group gauges the sampler sets from each health check (lag, pending,
/// oldest pending, claimable, retries, dead-letter length) and the
/// dashboard's own manager counters.
pub(crate) async fn metrics(State(app): State<Arc<App>>) -> Response {
    let Some(handle) = &app.prometheus else {
        return ApiError::unavailable("another metrics recorder is installed in this process")
            .into_response();
    };
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
