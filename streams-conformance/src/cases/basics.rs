//! Basics.

use serde_json::json;

use crate::support::TestContext;

/// `send_message` returns the new entry's id.
pub async fn send_returns_id(ctx: &TestContext) {
    let m = ctx.manager("a");
    let id = m.send_message("s", json!({"k": 1}), None).await.unwrap();
    assert!(id.contains('-'), "{id}");
}
