//! `xnai-streams tail STREAM`: follow new entries without consuming them.
//!
//! Entries are read without any group (ranges after the last id seen), so
//! no group's work is taken: `tail` is safe to run against a live system.

use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};
use xnai_streams::{EntryState, PeekQuery, StreamManager, StreamMessage, split_partition};

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
/// An entry id's `(milliseconds, sequence)`, to merge partitions in time
/// order; ids of another form sort first.
fn id_order(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

async fn show(
    manager: &dyn StreamManager,
    args: &TailArgs,
    out: Out,
    partitioned: bool,
    batch: &[StreamMessage],
) -> Result<usize, Failure> {
    let mut states = Vec::with_capacity(batch.len());
    if let Some(group) = &args.group {
        // One view per stream (partition) in the batch.
        let mut streams: Vec<&str> = batch.iter().map(|m| m.stream.as_str()).collect();
        streams.dedup();
        let mut by_stream = std::collections::HashMap::new();
        for stream in streams {
            let ids: Vec<String> = batch
                .iter()
                .filter(|m| m.stream == stream)
                .map(|m| m.id.clone())
                .collect();
            let view = manager.group_view(group, stream, &ids).await?;
            by_stream.insert(stream, ids.into_iter().zip(view).collect::<Vec<_>>());
        }
        for m in batch {
            states.push(
                by_stream
                    .get(m.stream.as_str())
                    .and_then(|v| v.iter().find(|(id, _)| *id == m.id).map(|(_, s)| s.clone())),
            );
        }
    }
    for (i, m) in batch.iter().enumerate() {
        let state = states.get(i).and_then(Option::as_ref);
        if out.json {
            let mut value = m.to_json();
            if let (Some(map), Some(state)) = (value.as_object_mut(), state) {
                map.insert("group_state".to_owned(), json!(state));
            }
            out.json_line(&value)?;
        } else {
            let data = Value::Object(m.data.clone());
            let at = if partitioned {
                format!("{}  {}", m.id, m.stream)
            } else {
                m.id.clone()
            };
            match state {
                Some(state) => out.line(format!("{at}  {data}  [{}]", describe(state)))?,
                None => out.line(format!("{at}  {data}"))?,
            }
        }
    }
    Ok(batch.len())
}

pub(crate) async fn run(args: TailArgs, target: &Target) -> Result<u8, Failure> {
    let out = args.format.out();
    let manager = target.manager().await?;
    // A partitioned stream is followed over every partition, merged by id.
    let streams = if split_partition(&args.stream).1 == 0 {
        manager.partitioned_stream(&args.stream).await?.streams()
    } else {
        vec![args.stream.clone()]
    };
    let partitioned = streams.len() > 1;
    if let Some(group) = &args.group {
        manager.group_view(group, &args.stream, &[]).await?;
    }
    let limit = args.limit.unwrap_or(usize::MAX);
    let mut after: Vec<Option<String>> = Vec::with_capacity(streams.len());
    let mut newest: Vec<StreamMessage> = Vec::new();
    for stream in &streams {
        let last = manager
            .peek_messages(
                &PeekQuery::new(stream)
                    .with_count(args.last.max(1))
                    .newest_first(),
            )
            .await?;
        after.push(last.first().map(|m| m.id.clone()));
        newest.extend(last);
    }
    let mut shown = 0;
    if args.last > 0 {
        newest.sort_by_key(|m| id_order(&m.id));
        let skip = newest.len().saturating_sub(args.last);
        let mut old: Vec<StreamMessage> = newest.split_off(skip);
        old.truncate(limit);
        shown += show(&manager, &args, out, partitioned, &old).await?;
    }
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    while shown < limit {
        let mut batch = Vec::new();
        for (stream, after) in streams.iter().zip(after.iter_mut()) {
            let mut query = PeekQuery::new(stream).with_count(PAGE.min(limit - shown));
            if let Some(id) = after.as_ref() {
                query = query.after(id.clone());
            }
            let page = tokio::select! {
                _ = &mut ctrl_c => return close(&manager).await,
                page = manager.peek_messages(&query) => page?,
            };
            if let Some(last) = page.last() {
                *after = Some(last.id.clone());
            }
            batch.extend(page);
        }
        if batch.is_empty() {
            tokio::select! {
                _ = &mut ctrl_c => break,
                () = tokio::time::sleep(args.interval) => continue,
            }
        }
        batch.sort_by_key(|m| id_order(&m.id));
        batch.truncate(limit - shown);
        shown += show(&manager, &args, out, partitioned, &batch).await?;
    }
    close(&manager).await
}

async fn close(manager: &dyn StreamManager) -> Result<u8, Failure> {
    manager.close().await?;
    Ok(0)
}
