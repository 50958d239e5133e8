//! The dead-letter queue: pages and counts (reads), replays and purges
//! (writes, through the same manager calls as `xnai-streams dlq`).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use xnai_streams::{DlqCursor, DlqPurge, DlqQuery, DlqReplay, DlqSelection};

use super::api::{RawQuery, params};
use super::error::{ApiError, ApiResult};
use super::params::{FILTER_KEYS, FilterBody, body};
use super::state::App;

/// `GET /api/dlq?stream=&group=&reason=&since=&until=&older_than=&limit=&after=`:
/// a page of dead letters, oldest first (at most 500), with the cursor of
/// the next page.
pub(crate) async fn list(State(app): State<Arc<App>>, query: RawQuery) -> ApiResult<Json<Value>> {
    let mut allowed = FILTER_KEYS.to_vec();
    allowed.extend(["limit", "after"]);
    let p = params(query, &allowed)?;
    let limit = p.limit(50)?;
    let mut q = DlqQuery::new()
        .with_filter(p.dlq_filter()?)
        .with_limit(limit);
    if let Some(after) = p.text("after") {
        q = q.after(DlqCursor::new(after));
    }
    let page = app.manager.dlq_list(&q).await?;
    Ok(Json(json!({
        "entries": page.entries.iter().map(|m| m.to_json()).collect::<Vec<_>>(),
        "next": page.next,
        "limit": limit,
    })))
}

/// `GET /api/dlq/stats?<filter>`: dead letters counted by reason, stream
/// and group, as `xnai-streams dlq stats --json`.
pub(crate) async fn stats(State(app): State<Arc<App>>, query: RawQuery) -> ApiResult<Json<Value>> {
    let p = params(query, &FILTER_KEYS)?;
    let stats = app.manager.dlq_stats(&p.dlq_filter()?).await?;
    Ok(Json(json!(stats)))
}

/// The body of a replay or purge: entry ids, or a filter (or `all`), and
/// whether it is a dry run.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ChangeBody {
    /// Dead-letter ids.
    ids: Vec<String>,
    /// With ids and the per-stream layout: the origin stream.
    stream: Option<String>,
    /// Which entries, when no ids are given.
    filter: Option<FilterBody>,
    /// Every entry that passes the filter (every entry without one).
    all: bool,
    /// Report only.
    dry_run: bool,
    /// Go ahead with more than one entry (a filter, or several ids).
    yes: bool,
    /// Replays: the group for entries dead-lettered without one.
    target_group: Option<String>,
    /// Replays: at most this many per second.
    rate: Option<u32>,
}

impl ChangeBody {
    /// The selection, refusing an empty one and a bulk change without
    /// `yes` or `dry_run` (as the command line does).
    fn selection(&self, verb: &str) -> ApiResult<DlqSelection> {
        let filter = self
            .filter
            .as_ref()
            .map(FilterBody::filter)
            .transpose()?
            .unwrap_or_default();
        let (selection, bulk) = if !self.ids.is_empty() {
            if self.all || !filter.is_empty() {
                return Err(ApiError::bad_request(
                    "give `ids`, or `filter` / `all`, not both",
                ));
            }
            let mut selection = DlqSelection::ids(self.ids.clone());
            if let Some(stream) = &self.stream {
                selection = selection.in_stream(stream);
            }
            (selection, self.ids.len() > 1)
        } else if self.all || !filter.is_empty() {
            (DlqSelection::matching(filter), true)
        } else {
            return Err(ApiError::bad_request(format!(
                "say which entries to {verb}: `ids`, a `filter`, or `all`: true"
            )));
        };
        if bulk && !self.dry_run && !self.yes {
            return Err(ApiError::bad_request(format!(
                "this would {verb} more than one entry: send `yes`: true to go ahead, or `dry_run`: true to see which"
            )));
        }
        Ok(selection)
    }
}

/// `POST /api/dlq/replay`: sends dead letters back to their groups, as
/// `xnai-streams dlq replay`; answers its report.
pub(crate) async fn replay(State(app): State<Arc<App>>, bytes: Bytes) -> ApiResult<Json<Value>> {
    let req: ChangeBody = body(&bytes)?;
    let mut request = DlqReplay::new(req.selection("replay")?).dry_run(req.dry_run);
    if let Some(group) = &req.target_group {
        request = request.with_target_group(group);
    }
    if let Some(rate) = req.rate {
        request = request.with_rate_limit(rate);
    }
    let report = app.manager.dlq_replay(&request).await?;
    Ok(Json(json!(report)))
}

/// `POST /api/dlq/purge`: removes dead letters, as `xnai-streams dlq
/// purge`; answers its report.
pub(crate) async fn purge(State(app): State<Arc<App>>, bytes: Bytes) -> ApiResult<Json<Value>> {
    let req: ChangeBody = body(&bytes)?;
    if req.target_group.is_some() || req.rate.is_some() {
        return Err(ApiError::bad_request(
            "`target_group` and `rate` are for replays",
        ));
    }
    let request = DlqPurge::new(req.selection("purge")?).dry_run(req.dry_run);
    let report = app.manager.dlq_purge(&request).await?;
    Ok(Json(json!(report)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(text: &str) -> ChangeBody {
        body(text.as_bytes()).unwrap()
    }

    #[test]
    fn selections_follow_the_command_lines_rules() {
        assert!(change(r#"{"ids":["1-0"]}"#).selection("replay").is_ok());
        assert!(
            change(r#"{"ids":["1-0","2-0"]}"#)
                .selection("replay")
                .is_err()
        );
        assert!(
            change(r#"{"ids":["1-0","2-0"],"yes":true}"#)
                .selection("replay")
                .is_ok()
        );
        assert!(
            change(r#"{"all":true,"dry_run":true}"#)
                .selection("purge")
                .is_ok()
        );
        assert!(
            change(r#"{"filter":{"reason":"x"}}"#)
                .selection("purge")
                .is_err()
        );
        assert!(change("{}").selection("purge").is_err());
        assert!(
            change(r#"{"ids":["1-0"],"all":true}"#)
                .selection("purge")
                .is_err()
        );
        assert!(
            change(r#"{"filter":{"since":"whenever"},"dry_run":true}"#)
                .selection("purge")
                .is_err()
        );
        assert!(body::<ChangeBody>(br#"{"idz":["1-0"]}"#).is_err());
    }
}
