//! `xnai-streams tail STREAM`: follow new entries without consuming them.
//!
//! Entries are read without any group (ranges after the last id seen), so
//! no group's work is taken: `tail` is safe to run against a live system.

use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};
use xnai_streams::{EntryState, PeekQuery, StreamManager, StreamMessage};

use crate::output::{Failure, Format, Out, parse_duration, show_ms};
use crate::target::Target;

/// Entries read per round trip.
const PAGE: usize = 100;

/// Options of `xnai-streams tail`.
#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// The stream to follow.
    stream: String,
    /// Show what this group has done with each entry: new (not delivered
    /// yet), pending (to which consumer), or done.
    #[arg(long)]
    group: Option<String>,
    /// Show the last N entries first.
    #[arg(long, default_value_t = 0, value_name = "N")]
    last: usize,
    /// Stop after N entries (default: follow until Ctrl-C).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// How often to look for new entries.
    #[arg(long, value_parser = parse_duration, default_value = "200ms", value_name = "DURATION")]
    interval: Duration,
    #[command(flatten)]
    format: Format,
}

/// A group's view of an entry, in words.
fn describe(state: &EntryState) -> String {
    match state {
        EntryState::New => "new".to_owned(),
        EntryState::Pending {
            consumer,
            deliveries,
            idle_ms,
        } => format!(
            "pending: {consumer}, delivered {deliveries}x, idle {}",
            show_ms(*idle_ms)
        ),
        EntryState::Done => "done".to_owned(),
        other => format!("{other:?}"),
    }
}

/// Prints entries (with the group's view of them); returns how many.
async fn show(
    manager: &dyn StreamManager,
    args: &TailArgs,
    out: Out,
    batch: &[StreamMessage],
) -> Result<usize, Failure> {
    let states = match &args.group {
        Some(group) => {
            let ids: Vec<String> = batch.iter().map(|m| m.id.clone()).collect();
            Some(manager.group_view(group, &args.stream, &ids).await?)
        }
        None => None,
    };
    for (i, m) in batch.iter().enumerate() {
        let state = states.as_ref().and_then(|s| s.get(i));
        if out.json {
            let mut value = m.to_json();
            if let (Some(map), Some(state)) = (value.as_object_mut(), state) {
                map.insert("group_state".to_owned(), json!(state));
            }
            out.json_line(&value)?;
        } else {
            let data = Value::Object(m.data.clone());
            match state {
                Some(state) => out.line(format!("{}  {data}  [{}]", m.id, describe(state)))?,
                None => out.line(format!("{}  {data}", m.id))?,
            }
        }
    }
    Ok(batch.len())
}

pub(crate) async fn run(args: TailArgs, target: &Target) -> Result<u8, Failure> {
    let out = args.format.out();
    let manager = target.manager().await?;
    if let Some(group) = &args.group {
        // An unknown group, or one that does not read the stream, fails now.
        manager.group_view(group, &args.stream, &[]).await?;
    }
    let newest = manager
        .peek_messages(
            &PeekQuery::new(&args.stream)
                .with_count(args.last.max(1))
                .newest_first(),
        )
        .await?;
    let mut after = newest.first().map(|m| m.id.clone());
    let mut shown = 0;
    let limit = args.limit.unwrap_or(usize::MAX);
    if args.last > 0 {
        let mut old: Vec<StreamMessage> = newest;
        old.reverse();
        old.truncate(limit);
        shown += show(&manager, &args, out, &old).await?;
    }
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    while shown < limit {
        let mut query = PeekQuery::new(&args.stream).with_count(PAGE.min(limit - shown));
        if let Some(id) = &after {
            query = query.after(id.clone());
        }
        let batch = tokio::select! {
            _ = &mut ctrl_c => break,
            batch = manager.peek_messages(&query) => batch?,
        };
        let Some(last) = batch.last() else {
            tokio::select! {
                _ = &mut ctrl_c => break,
                () = tokio::time::sleep(args.interval) => continue,
            }
        };
        after = Some(last.id.clone());
        shown += show(&manager, &args, out, &batch).await?;
    }
    manager.close().await?;
    Ok(0)
}
