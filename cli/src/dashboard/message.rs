//! One message: its envelope, and where it is. An entry of a stream is
//! new, pending with a consumer, or done in each group that reads the
//! stream; copies of it (the same producer id, `mid`) may wait as retries in
//! a group's ready stream or lie in the dead-letter queue. Retries
//! scheduled and not yet due are counted per group but cannot be searched
//! by message (the schedule is not readable through the manager).

use std::ops::Bound;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use xnai_streams::backend::{PendingQuery, RangeQuery};
use xnai_streams::{
    DlqCursor, DlqFilter, DlqQuery, EntryId, EntryState, StreamBackend, StreamError, StreamMessage,
    StreamUse,
};

use super::api::{RawQuery, params, snapshot};
use super::error::{ApiError, ApiResult};
use super::params::MAX_PAGE;
use super::state::App;

/// Entries of a ready stream searched for copies of a message.
const READY_SCAN: usize = 1000;

/// Pages of the dead-letter queue searched for copies of a message.
const DLQ_PAGES: usize = 10;

/// Where the message was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Stream,
    DeadLetter,
    Retry,
}

impl Place {
    fn parse(text: Option<&str>) -> ApiResult<Vec<Self>> {
        Ok(match text {
            None => vec![Self::Stream, Self::DeadLetter, Self::Retry],
            Some("stream") => vec![Self::Stream],
            Some("dead_letter") => vec![Self::DeadLetter],
            Some("retry") => vec![Self::Retry],
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "`in` is stream, dead_letter or retry, not `{other}`"
                )));
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Stream => "stream",
            Self::DeadLetter => "dead_letter",
            Self::Retry => "retry",
        }
    }
}

/// The entry `id` of the stream key `key`, decoded as a message of `stream`.
async fn entry(
    app: &App,
    key: &str,
    stream: &str,
    id: &str,
) -> Result<Option<StreamMessage>, StreamError> {
    let exact = EntryId::from(id);
    let query =
        RangeQuery::new(key, 1).within(Bound::Included(exact.clone()), Bound::Included(exact));
    let backend = app.manager.backend();
    let Some(found) = backend.range(query).await?.pop() else {
        return Ok(None);
    };
    if found.id.as_str() != id {
        return Ok(None);
    }
    let mut message = StreamMessage::from_entry(stream, id, &found.fields);
    if message.timestamp.is_empty() {
        if let Some(t) = backend.entry_time(&found.id) {
            message.timestamp = humantime::format_rfc3339_millis(t).to_string();
        }
    }
    Ok(Some(message))
}

/// The groups registered to read `stream`.
async fn readers(app: &App, stream: &str) -> ApiResult<Vec<(String, u64)>> {
    Ok(app
        .manager
        .registered_groups()
        .await?
        .into_iter()
        .filter(|g| g.streams.iter().any(|s| s == stream))
        .map(|g| {
            let idle = u64::try_from(g.claim_idle.as_millis()).unwrap_or(u64::MAX);
            (g.name, idle)
        })
        .collect())
}

/// Who holds entry `id` of `key` in `group`, if anyone.
async fn holder(app: &App, key: &str, group: &str, id: &str) -> Option<Value> {
    let exact = EntryId::from(id);
    let query = PendingQuery::new(key, group, 1)
        .within(Bound::Included(exact.clone()), Bound::Included(exact));
    let p = app.manager.backend().pending(query).await.ok()?.pop()?;
    Some(json!({
        "consumer": p.consumer,
        "deliveries": p.deliveries,
        "idle_ms": u64::try_from(p.idle.as_millis()).unwrap_or(u64::MAX),
    }))
}

/// The envelope's fields, named as on the wire.
fn envelope(m: &StreamMessage) -> Value {
    json!({
        "data": m.data,
        "ts": m.timestamp,
        "mid": m.mid,
        "retry_count": m.retry_count,
        "error": m.error,
        "traceparent": m.traceparent,
        "replayed_from": m.replayed_from,
        "replay_count": m.replay_count,
        "status": m.status,
    })
}

/// `GET /api/message?stream=S&id=ID[&in=stream|dead_letter|retry]`: the
/// message and where it is. Without `in`, the id is looked for in the
/// stream, then in the dead-letter queue, then in the ready streams of the
/// stream's groups. 404 when it is in none of them. A dead letter
/// (`in=dead_letter`) needs no stream: its origin stream is used.
pub(crate) async fn message(
    State(app): State<Arc<App>>,
    query: RawQuery,
) -> ApiResult<Json<Value>> {
    let p = params(query, &["stream", "id", "in"])?;
    let id = p.required("id")?.to_owned();
    let places = Place::parse(p.text("in"))?;
    let manager = &app.manager;
    let keys = manager.keys();
    let mut stream = match p.text("stream") {
        Some(s) => s.to_owned(),
        // A dead letter knows where it came from.
        None if places == [Place::DeadLetter] => String::new(),
        None => return Err(ApiError::bad_request("parameter `stream` is required")),
    };
    if stream.is_empty() {
        let Some(m) = manager.dlq_show(&id, None).await? else {
            return Err(ApiError::not_found(format!(
                "no entry `{id}` in the dead-letter queue"
            )));
        };
        stream = m
            .dead_letter
            .as_ref()
            .map(|d| d.origin_stream.clone())
            .unwrap_or_default();
    }
    // Empty only for a dead letter without provenance.
    let groups = if stream.is_empty() {
        Vec::new()
    } else {
        keys.check_stream(&stream, StreamUse::Read)?;
        readers(&app, &stream).await?
    };
    let mut found = None;
    for place in places {
        let hit = match place {
            Place::Stream => entry(&app, &keys.stream(&stream), &stream, &id)
                .await?
                .map(|m| (m, None)),
            Place::DeadLetter => {
                let per_stream =
                    (!keys.dlq_is_shared() && !stream.is_empty()).then_some(stream.as_str());
                manager.dlq_show(&id, per_stream).await?.map(|m| (m, None))
            }
            Place::Retry => {
                let mut hit = None;
                for (g, _) in &groups {
                    let ready = keys.retry_ready(&stream, g);
                    if let Some(m) = entry(&app, &ready, &stream, &id).await? {
                        hit = Some((m, Some(g.clone())));
                        break;
                    }
                }
                hit
            }
        };
        if let Some((m, group)) = hit {
            found = Some((place, m, group));
            break;
        }
    }
    let Some((place, message, retry_group)) = found else {
        return Err(ApiError::not_found(format!(
            "no entry `{id}` in stream `{stream}`, its groups' retries or the dead-letter queue"
        )));
    };

    // Each group's view of a stream entry.
    let mut states = Vec::new();
    let snap = snapshot(&app)?;
    for (g, claim_idle_ms) in &groups {
        let scheduled = snap
            .health
            .groups
            .iter()
            .filter(|h| &h.group == g)
            .flat_map(|h| h.streams.iter())
            .find(|s| s.stream == stream)
            .map(|s| s.scheduled_retries);
        let mut state = json!({ "group": g, "scheduled_retries": scheduled });
        if place == Place::Stream {
            let view = match manager
                .group_view(g, &stream, std::slice::from_ref(&id))
                .await
            {
                Ok(mut v) => v.pop(),
                Err(StreamError::NoGroup { .. }) => None,
                Err(e) => return Err(e.into()),
            };
            let extra = match view {
                Some(EntryState::Pending {
                    consumer,
                    deliveries,
                    idle_ms,
                }) => json!({
                    "state": "pending", "consumer": consumer, "deliveries": deliveries,
                    "idle_ms": idle_ms, "lease_expired": idle_ms >= *claim_idle_ms,
                }),
                Some(EntryState::New) => json!({ "state": "new" }),
                Some(EntryState::Done) => json!({ "state": "done" }),
                Some(other) => json!({ "state": format!("{other:?}").to_lowercase() }),
                None => json!({ "state": "missing" }),
            };
            state = super::api::merge(state, extra);
        }
        states.push(state);
    }

    // Copies by producer id: retries waiting or in work, dead letters.
    let mut retries = Vec::new();
    let mut dead_letters = Vec::new();
    let mut notes = Vec::new();
    if let Some(mid) = &message.mid {
        for (g, _) in &groups {
            let ready = keys.retry_ready(&stream, g);
            let Ok(page) = manager
                .backend()
                .range(RangeQuery::new(&ready, READY_SCAN))
                .await
            else {
                continue;
            };
            if page.len() == READY_SCAN {
                notes.push(format!(
                    "only the first {READY_SCAN} retries waiting for group `{g}` were searched"
                ));
            }
            for e in page {
                let copy = StreamMessage::from_entry(&stream, e.id.as_str(), &e.fields);
                if copy.mid.as_ref() != Some(mid) {
                    continue;
                }
                if place == Place::Retry && copy.id == message.id {
                    continue;
                }
                let held = holder(&app, &ready, g, e.id.as_str()).await;
                retries.push(json!({
                    "group": g, "id": copy.id, "retry_count": copy.retry_count,
                    "replay_count": copy.replay_count, "error": copy.error,
                    "state": if held.is_some() { "pending" } else { "waiting" },
                    "held_by": held,
                }));
            }
        }
    }
    let filter = DlqFilter::new().with_stream(&stream);
    let mut query = DlqQuery::new().with_filter(filter).with_limit(MAX_PAGE);
    let mut pages = 0;
    loop {
        let page = manager.dlq_list(&query).await?;
        for d in page.entries {
            let same_mid = message.mid.is_some() && d.mid == message.mid;
            let same_origin = d.dead_letter.as_ref().is_some_and(|p| p.origin_id == id);
            let itself = place == Place::DeadLetter && d.id == message.id;
            if (same_mid || same_origin) && !itself {
                let p = d.dead_letter.as_ref();
                dead_letters.push(json!({
                    "dlq_id": d.id,
                    "group": p.and_then(|p| p.group.clone()),
                    "reason": p.map(|p| p.reason.clone()),
                    "failed_at": p.map(|p| p.failed_at.clone()),
                    "retry_count": d.retry_count,
                }));
            }
        }
        pages += 1;
        match page.next {
            Some(next) if pages < DLQ_PAGES => query = query.after(DlqCursor::new(next.as_str())),
            Some(_) => {
                notes.push(format!(
                    "only the first {} dead letters of `{stream}` were searched",
                    DLQ_PAGES * MAX_PAGE
                ));
                break;
            }
            None => break,
        }
    }
    if states
        .iter()
        .any(|s| s["scheduled_retries"].as_u64() > Some(0))
    {
        notes.push(
            "retries scheduled and not yet due are counted per group but cannot be searched by message; they show here once due".to_owned(),
        );
    }

    let deliveries = message
        .dead_letter
        .as_ref()
        .and_then(|d| d.deliveries)
        .map(|n| json!(n))
        .unwrap_or(Value::Null);
    let held_by = match (place, &retry_group) {
        (Place::Retry, Some(g)) => holder(&app, &keys.retry_ready(&stream, g), g, &id).await,
        _ => None,
    };
    Ok(Json(json!({
        "stream": stream,
        "id": id,
        "found_in": place.name(),
        "retry_group": retry_group,
        "held_by": held_by,
        "message": message.to_json(),
        "envelope": envelope(&message),
        "deliveries": deliveries,
        "dead_letter": message.dead_letter,
        "groups": states,
        "retries": retries,
        "dead_letters": dead_letters,
        "notes": notes,
    })))
}
