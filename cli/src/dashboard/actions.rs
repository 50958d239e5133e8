//! Changes to a group's work, through the same manager calls as the
//! command line: claim (`xnai-streams claim`), release a consumer's
//! entries, and prune stale consumers (`xnai-streams consumers prune`).
//! Claims and moves are fenced by the manager; hand-backs pass the delivery
//! counts they saw, so repeating one changes nothing.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use xnai_streams::{Delivery, PendingFilter, StreamMessage};

use super::error::{ApiError, ApiResult};
use super::params::{body, duration};
use super::state::App;
use crate::claim::{claim_and_hand_back, claimed_json};

/// Most entries one release hands back.
const RELEASE_MAX: usize = 10_000;

/// `POST /api/groups/{group}/claim` with `{"idle": "30s"}` (default: the
/// group's `claim_idle`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ClaimBody {
    idle: Option<String>,
}

/// Claims the group's idle entries and hands them back at once for its
/// workers, as `xnai-streams claim`: poison messages go to the dead-letter
/// queue on the way.
pub(crate) async fn claim(
    State(app): State<Arc<App>>,
    path: Result<Path<String>, PathRejection>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let Path(group) = path?;
    let req: ClaimBody = body(&bytes)?;
    let idle = req
        .idle
        .as_deref()
        .map(|t| duration("idle", t))
        .transpose()?;
    let manager = &app.manager;
    manager.group_config(&group).await?;
    let before = manager.get_stats().await?;
    let claimed = claim_and_hand_back(manager, &group, idle).await?;
    let after = manager.get_stats().await?;
    Ok(Json(json!({
        "group": group,
        "claimed": claimed.iter().map(claimed_json).collect::<Vec<_>>(),
        "handed_back": claimed.len(),
        "dead_lettered": after.poison_messages.saturating_sub(before.poison_messages),
        "deleted_acknowledged": after.pending_deleted.saturating_sub(before.pending_deleted),
    })))
}

/// One entry to hand back, as a pending listing (or a dry run) showed it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeldEntry {
    stream: String,
    id: String,
    deliveries: u64,
    #[serde(default)]
    retry: bool,
}

/// `POST /api/groups/{group}/release` with `{"consumer": "...", "stream":
/// optional, "entries": optional, "dry_run": bool}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ReleaseBody {
    consumer: String,
    stream: Option<String>,
    /// The entries to hand back, with the delivery counts the caller saw
    /// (what a dry run answers): an entry delivered or handed back since is
    /// left alone, so sending the same request twice hands back nothing
    /// more. Without them, what the consumer holds now.
    entries: Option<Vec<HeldEntry>>,
    dry_run: bool,
}

/// Hands a consumer's pending entries back, as if it had let go of them
/// unhandled: they stay pending, become claimable at once by the group's
/// workers, and the delivery that brought them is not counted. For a
/// consumer known to be hung or gone; a consumer still working on them
/// finds its later retries and dead-letter moves refused (fencing), and
/// its acks count as done.
pub(crate) async fn release(
    State(app): State<Arc<App>>,
    path: Result<Path<String>, PathRejection>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let Path(group) = path?;
    let req: ReleaseBody = body(&bytes)?;
    if req.consumer.is_empty() {
        return Err(ApiError::bad_request("`consumer` is required"));
    }
    app.manager.group_config(&group).await?;
    let held: Vec<HeldEntry> = match req.entries {
        Some(entries) => entries,
        None => {
            let mut filter = PendingFilter::new(&group)
                .with_consumer(&req.consumer)
                .with_limit(RELEASE_MAX);
            if let Some(stream) = &req.stream {
                filter = filter.with_stream(stream);
            }
            app.manager
                .list_pending(&filter)
                .await?
                .into_iter()
                // A count of 0 was handed back already.
                .filter(|p| p.deliveries > 0)
                .map(|p| HeldEntry {
                    stream: p.stream,
                    id: p.id,
                    deliveries: p.deliveries,
                    retry: p.retry,
                })
                .collect()
        }
    };
    let entries: Vec<Value> = held
        .iter()
        .map(|e| json!({"stream": e.stream, "id": e.id, "deliveries": e.deliveries, "retry": e.retry}))
        .collect();
    if req.dry_run {
        return Ok(Json(json!({
            "dry_run": true,
            "group": group,
            "consumer": req.consumer,
            "would_release": entries.len(),
            "entries": entries,
        })));
    }
    let messages: Vec<StreamMessage> = held
        .iter()
        .map(|e| {
            let mut m = StreamMessage::new(&e.stream, Map::new());
            m.id.clone_from(&e.id);
            m.delivery = Some(
                Delivery::new(group.as_str(), req.consumer.as_str(), e.deliveries)
                    .from_retry(e.retry),
            );
            m
        })
        .collect();
    let released = app.manager.release(&messages).await?;
    Ok(Json(json!({
        "dry_run": false,
        "group": group,
        "consumer": req.consumer,
        "released": released,
        "entries": entries,
    })))
}

/// `POST /api/groups/{group}/prune` with `{"idle": "1h", "dry_run": bool}`
/// (default idle: the dashboard's `--stale-after`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct PruneBody {
    idle: Option<String>,
    dry_run: bool,
}

/// Removes the group's consumers idle at least `idle` that hold nothing,
/// as `xnai-streams consumers prune`; those holding entries are kept.
pub(crate) async fn prune(
    State(app): State<Arc<App>>,
    path: Result<Path<String>, PathRejection>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let Path(group) = path?;
    let req: PruneBody = body(&bytes)?;
    let idle = match req.idle.as_deref() {
        Some(t) => duration("idle", t)?,
        None => app.stale_after,
    };
    let manager = &app.manager;
    if req.dry_run {
        let health = manager.group_health(&group).await?;
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let mut would_remove = Vec::new();
        let mut kept = Vec::new();
        for s in &health.streams {
            for c in s.consumers.iter().filter(|c| c.idle_ms >= idle_ms) {
                if c.name == manager.consumer_id() {
                    continue;
                }
                if c.pending == 0 {
                    if !would_remove.contains(&c.name) {
                        would_remove.push(c.name.clone());
                    }
                } else {
                    kept.push(json!([c.name, c.pending]));
                }
            }
        }
        return Ok(Json(json!({
            "dry_run": true,
            "group": group,
            "would_remove": would_remove,
            "kept": kept,
        })));
    }
    let report = manager.prune_consumers(&group, idle).await?;
    let mut value = json!(report);
    if let Some(map) = value.as_object_mut() {
        map.insert("dry_run".to_owned(), json!(false));
        map.insert("group".to_owned(), json!(group));
    }
    Ok(Json(value))
}
