//! One group in detail: its state on each stream, its rates, its consumers
//! with their leases, and its pending entries. Read live (not from the
//! snapshot), so a page that just acted sees the result at once.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde::Serialize;
use serde_json::{Value, json};
use xnai_streams::{GroupHealth, PendingFilter, PendingInfo};

use super::api::{RATE_WINDOW, RawQuery, about, merge, params, snapshot};
use super::error::ApiResult;
use super::history;
use super::params::MAX_PAGE;
use super::state::App;

/// Pending entries listed on the group's page.
const PENDING_SHOWN: usize = 100;

/// What a consumer's hold on its entries looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Lease {
    /// It holds nothing.
    None,
    /// It holds entries, none idle past the group's `claim_idle`: alive,
    /// or not dead for long.
    Held,
    /// It holds entries idle past `claim_idle`: they can be claimed, it is
    /// dead or stuck.
    Expired,
}

/// A consumer of the group on one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ConsumerRow {
    pub(crate) stream: String,
    pub(crate) name: String,
    pub(crate) pending: u64,
    pub(crate) idle_ms: u64,
    /// The idle time of its longest-idle entry, when listed.
    pub(crate) oldest_entry_idle_ms: Option<u64>,
    pub(crate) lease: Lease,
    /// `stuck` (holds entries whose lease expired) or `stale` (holds
    /// nothing and has been idle past the stale limit: prunable).
    pub(crate) flags: Vec<&'static str>,
}

/// The consumers of a group with their leases, judged from the pending
/// entries listed (`complete` when that is all of them) and, for those not
/// listed, from the consumer's own idle time.
pub(crate) fn consumers(
    health: &GroupHealth,
    pending: &[PendingInfo],
    complete: bool,
    stale_after_ms: u64,
) -> Vec<ConsumerRow> {
    let mut rows = Vec::new();
    for s in &health.streams {
        for c in &s.consumers {
            let entries: Vec<&PendingInfo> = pending
                .iter()
                .filter(|p| p.stream == s.stream && p.consumer == c.name)
                .collect();
            let oldest = entries.iter().map(|p| p.idle_ms).max();
            let lease = if c.pending == 0 {
                Lease::None
            } else {
                let idle = match oldest {
                    Some(ms) => ms,
                    // Not listed: its entries are at least as idle as it is
                    // when the list is whole (none), else unknown.
                    None if complete => 0,
                    None => c.idle_ms,
                };
                if idle >= health.claim_idle_ms {
                    Lease::Expired
                } else {
                    Lease::Held
                }
            };
            let mut flags = Vec::new();
            if lease == Lease::Expired {
                flags.push("stuck");
            }
            if c.pending == 0 && c.idle_ms >= stale_after_ms {
                flags.push("stale");
            }
            rows.push(ConsumerRow {
                stream: s.stream.clone(),
                name: c.name.clone(),
                pending: c.pending,
                idle_ms: c.idle_ms,
                oldest_entry_idle_ms: oldest,
                lease,
                flags,
            });
        }
    }
    rows
}

/// `GET /api/groups/{group}`: the group in detail. 404 for an unknown group.
pub(crate) async fn group(
    State(app): State<Arc<App>>,
    path: Result<Path<String>, PathRejection>,
    query: RawQuery,
) -> ApiResult<Json<Value>> {
    let Path(name) = path?;
    params(query, &[])?;
    let manager = &app.manager;
    let config = manager.group_config(&name).await?;
    let health = manager.group_health(&name).await?;
    let pending = manager
        .list_pending(&PendingFilter::new(&name).with_limit(MAX_PAGE))
        .await?;
    let complete = pending.len() < MAX_PAGE;
    let stale_after_ms = u64::try_from(app.stale_after.as_millis()).unwrap_or(u64::MAX);
    let rows = consumers(&health, &pending, complete, stale_after_ms);
    let snap = snapshot(&app)?;
    let g = name.as_str();
    let body = app.with_history(|h| {
        let streams: Vec<Value> = health
            .streams
            .iter()
            .map(|s| {
                let mut v = json!(s);
                let rates = json!({
                    "out": h.rate(&history::group_out(g, &s.stream), RATE_WINDOW),
                    "retries": h.rate(&history::group_retries(g, &s.stream), RATE_WINDOW),
                });
                if let Some(map) = v.as_object_mut() {
                    map.insert("rates_per_min".to_owned(), rates);
                    map.remove("consumers");
                }
                v
            })
            .collect();
        let out = || {
            history::sum(
                health
                    .streams
                    .iter()
                    .map(|s| history::group_out(g, &s.stream))
                    .collect(),
            )
        };
        let retries = || {
            history::sum(
                health
                    .streams
                    .iter()
                    .map(|s| history::group_retries(g, &s.stream))
                    .collect(),
            )
        };
        let chart = h.chart(vec![
            ("done".to_owned(), out()),
            ("retries".to_owned(), retries()),
            ("dead letters".to_owned(), history::group_dlq(g)),
        ]);
        json!({
            "group": name,
            "config": config,
            "streams": streams,
            "totals": {
                "pending": health.streams.iter().map(|s| s.pending).sum::<u64>(),
                "claimable": health.streams.iter().map(|s| s.claimable).sum::<u64>(),
                "scheduled_retries": health.streams.iter().map(|s| s.scheduled_retries).sum::<u64>(),
                "ready_retries": health.streams.iter().map(|s| s.ready_retries).sum::<u64>(),
                "oldest_pending_ms": health.streams.iter().filter_map(|s| s.oldest_pending_ms).max(),
                "dead_letters": snap.dlq.by_group.get(g).copied().unwrap_or(0),
            },
            "rates_per_min": {
                "out": h.rate(&out(), RATE_WINDOW),
                "retries": h.rate(&retries(), RATE_WINDOW),
                "dead_letters": h.rate(&history::group_dlq(g), RATE_WINDOW),
            },
            "chart": chart,
            "consumers": rows,
            "stale_after_ms": stale_after_ms,
            "pending": pending.iter().take(PENDING_SHOWN).map(|p| {
                let mut v = json!(p);
                if let Some(map) = v.as_object_mut() {
                    map.insert("claimable".to_owned(), json!(p.idle_ms >= health.claim_idle_ms));
                }
                v
            }).collect::<Vec<_>>(),
            "pending_listed": pending.len().min(PENDING_SHOWN),
            "pending_more": pending.len() > PENDING_SHOWN,
        })
    });
    Ok(Json(merge(about(&app, &snap), body)))
}

/// `GET /api/groups/{group}/pending?consumer=&stream=&idle=&limit=`: the
/// group's pending entries, as `xnai-streams pending --json`.
pub(crate) async fn pending(
    State(app): State<Arc<App>>,
    path: Result<Path<String>, PathRejection>,
    query: RawQuery,
) -> ApiResult<Json<Value>> {
    let Path(name) = path?;
    let p = params(query, &["consumer", "stream", "idle", "limit"])?;
    let limit = p.limit(100)?;
    let mut filter = PendingFilter::new(&name).with_limit(limit);
    if let Some(c) = p.text("consumer") {
        filter = filter.with_consumer(c);
    }
    if let Some(s) = p.text("stream") {
        filter = filter.with_stream(s);
    }
    if let Some(idle) = p.duration("idle")? {
        filter = filter.idle_at_least(idle);
    }
    let entries = app.manager.list_pending(&filter).await?;
    Ok(Json(json!({ "entries": entries, "limit": limit })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(claim_idle_ms: u64, consumers: &[(&str, u64, u64)]) -> GroupHealth {
        let value = json!({
            "group": "g",
            "claim_idle_ms": claim_idle_ms,
            "streams": [{
                "stream": "s", "length": 10, "group_exists": true, "pending": 3,
                "lag": 0, "oldest_pending_ms": null, "claimable": 0,
                "scheduled_retries": 0, "ready_retries": 0,
                "consumers": consumers.iter().map(|(n, p, i)| json!({"name": n, "pending": p, "idle_ms": i})).collect::<Vec<_>>(),
            }],
        });
        serde_json::from_value(value).unwrap()
    }

    fn entry(consumer: &str, idle_ms: u64) -> PendingInfo {
        serde_json::from_value(json!({
            "stream": "s", "id": "1-0", "consumer": consumer,
            "idle_ms": idle_ms, "deliveries": 1, "retry": false,
        }))
        .unwrap()
    }

    #[test]
    fn leases_and_flags() {
        let h = health(
            1000,
            &[
                ("live", 1, 10),
                ("dead", 2, 5000),
                ("gone", 0, 9000),
                ("new", 0, 5),
            ],
        );
        let pending = [entry("live", 20), entry("dead", 4000), entry("dead", 100)];
        let rows = consumers(&h, &pending, true, 8000);
        let by = |n: &str| rows.iter().find(|r| r.name == n).unwrap().clone();
        assert_eq!(by("live").lease, Lease::Held);
        assert!(by("live").flags.is_empty());
        assert_eq!(by("dead").lease, Lease::Expired);
        assert_eq!(by("dead").flags, ["stuck"]);
        assert_eq!(by("dead").oldest_entry_idle_ms, Some(4000));
        assert_eq!(by("gone").lease, Lease::None);
        assert_eq!(by("gone").flags, ["stale"]);
        assert!(by("new").flags.is_empty());
        // Not listed in a partial list: judged by its own idle time.
        let rows = consumers(&h, &[], false, 8000);
        assert_eq!(
            rows.iter().find(|r| r.name == "dead").unwrap().lease,
            Lease::Expired
        );
    }
}
