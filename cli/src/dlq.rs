//! `xnai-streams dlq list|show|stats|replay|purge`: the dead-letter queue.

mod change;

use change::{PurgeArgs, ReplayArgs, purge, replay};

use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use serde_json::Value;
use xnai_streams::{DlqCursor, DlqFilter, DlqQuery, StreamMessage};

use crate::output::{Failure, Format, clip, or_dash, parse_duration, parse_time, table};
use crate::target::Target;

/// The dead-letter commands.
#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// List dead letters, oldest first, a page at a time.
    List(ListArgs),
    /// Show one dead letter in full.
    Show(ShowArgs),
    /// Count dead letters by reason, stream and group.
    Stats(StatsArgs),
    /// Send dead letters back to the groups that gave up on them (each to
    /// its own group only, with a fresh retry budget). More than one entry
    /// needs --yes, or --dry-run to see what would happen.
    Replay(ReplayArgs),
    /// Remove dead letters by id, filter or age. More than one entry needs
    /// --yes, or --dry-run to see what would be removed.
    Purge(PurgeArgs),
}

/// Which dead letters: every condition given must hold.
#[derive(Debug, Args)]
pub(crate) struct FilterArgs {
    /// Only entries dead-lettered from this stream.
    #[arg(long)]
    stream: Option<String>,
    /// Only entries dead-lettered by this group.
    #[arg(long)]
    group: Option<String>,
    /// Only entries whose reason contains this text.
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// Only entries that failed at or after this time (RFC 3339, or a
    /// duration ago: `1h`).
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    since: Option<SystemTime>,
    /// Only entries that failed before this time (RFC 3339, or a duration
    /// ago: `1h`).
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    until: Option<SystemTime>,
    /// Only entries that failed longer ago than this (`30m`, `7d`).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    older_than: Option<Duration>,
}

impl FilterArgs {
    pub(crate) fn filter(&self) -> DlqFilter {
        let mut f = DlqFilter::new();
        if let Some(s) = &self.stream {
            f = f.with_stream(s);
        }
        if let Some(g) = &self.group {
            f = f.with_group(g);
        }
        if let Some(r) = &self.reason {
            f = f.with_reason(r);
        }
        if let Some(t) = self.since {
            f = f.failed_since(t);
        }
        if let Some(t) = self.until {
            f = f.failed_before(t);
        }
        if let Some(d) = self.older_than {
            f = f.older_than(d);
        }
        f
    }
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// Most entries on the page.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Start after this cursor (printed after the previous page).
    #[arg(long, value_name = "CURSOR")]
    after: Option<String>,
    #[command(flatten)]
    format: Format,
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The dead-letter entry's id.
    id: String,
    /// With the per-stream layout: the stream it was dead-lettered from.
    #[arg(long)]
    stream: Option<String>,
    #[command(flatten)]
    format: Format,
}

#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    #[command(flatten)]
    filter: FilterArgs,
    #[command(flatten)]
    format: Format,
}

pub(crate) async fn run(command: DlqCommand, target: &Target) -> Result<u8, Failure> {
    match command {
        DlqCommand::List(args) => list(args, target).await,
        DlqCommand::Show(args) => show(args, target).await,
        DlqCommand::Stats(args) => stats(args, target).await,
        DlqCommand::Replay(args) => replay(args, target).await,
        DlqCommand::Purge(args) => purge(args, target).await,
    }
}

fn data_text(m: &StreamMessage) -> String {
    Value::Object(m.data.clone()).to_string()
}

async fn list(args: ListArgs, target: &Target) -> Result<u8, Failure> {
    let out = args.format.out();
    let manager = target.manager().await?;
    let mut query = DlqQuery::new()
        .with_filter(args.filter.filter())
        .with_limit(args.limit);
    if let Some(after) = &args.after {
        query = query.after(DlqCursor::new(after));
    }
    let page = manager.dlq_list(&query).await?;
    if out.json {
        out.json(&page)?;
        return Ok(0);
    }
    if page.entries.is_empty() {
        out.line("no dead letters")?;
        return Ok(0);
    }
    let mut t = table(&[
        "DLQ ID",
        "STREAM",
        "GROUP",
        "REASON",
        "FAILED AT",
        "RETRIES",
        "DATA",
    ]);
    for m in &page.entries {
        let d = m.dead_letter.as_ref();
        t.add_row(vec![
            m.id.clone(),
            or_dash(d.map(|d| &d.origin_stream)),
            or_dash(d.and_then(|d| d.group.as_ref())),
            clip(&or_dash(d.map(|d| &d.reason)), 30),
            or_dash(d.map(|d| &d.failed_at)),
            m.retry_count.to_string(),
            clip(&data_text(m), 30),
        ]);
    }
    out.table(&t)?;
    if let Some(next) = &page.next {
        out.line(format!("more: --after '{next}'"))?;
    }
    Ok(0)
}

async fn show(args: ShowArgs, target: &Target) -> Result<u8, Failure> {
    let out = args.format.out();
    let manager = target.manager().await?;
    let Some(m) = manager.dlq_show(&args.id, args.stream.as_deref()).await? else {
        return Err(Failure::new(format!("no dead-letter entry `{}`", args.id)));
    };
    if out.json {
        out.json(&m.to_json())?;
        return Ok(0);
    }
    let d = m.dead_letter.as_ref();
    let rows = [
        ("id", m.id.clone()),
        ("stream", or_dash(d.map(|d| &d.origin_stream))),
        ("origin id", or_dash(d.map(|d| &d.origin_id))),
        ("group", or_dash(d.and_then(|d| d.group.as_ref()))),
        ("consumer", or_dash(d.and_then(|d| d.consumer.as_ref()))),
        ("reason", or_dash(d.map(|d| &d.reason))),
        ("failed at", or_dash(d.map(|d| &d.failed_at))),
        ("deliveries", or_dash(d.and_then(|d| d.deliveries))),
        ("retries", m.retry_count.to_string()),
        ("replays", m.replay_count.to_string()),
        ("replayed from", or_dash(m.replayed_from.as_ref())),
        ("mid", or_dash(m.mid.as_ref())),
        ("sent at", m.timestamp.clone()),
        ("error", or_dash(m.error.as_ref())),
    ];
    for (name, value) in rows {
        out.line(format!("{name:<14} {value}"))?;
    }
    out.line("data")?;
    out.line(serde_json::to_string_pretty(&Value::Object(
        m.data.clone(),
    ))?)?;
    Ok(0)
}

async fn stats(args: StatsArgs, target: &Target) -> Result<u8, Failure> {
    let out = args.format.out();
    let manager = target.manager().await?;
    let stats = manager.dlq_stats(&args.filter.filter()).await?;
    if out.json {
        out.json(&stats)?;
        return Ok(0);
    }
    out.line(format!("dead letters: {}", stats.total))?;
    if stats.total == 0 {
        return Ok(0);
    }
    out.line(format!(
        "failed between {} and {}",
        or_dash(stats.oldest_failed_at.as_ref()),
        or_dash(stats.newest_failed_at.as_ref())
    ))?;
    for (title, counts) in [
        ("REASON", &stats.by_reason),
        ("STREAM", &stats.by_stream),
        ("GROUP", &stats.by_group),
    ] {
        if counts.is_empty() {
            continue;
        }
        let mut t = table(&[title, "COUNT"]);
        for (key, n) in counts {
            t.add_row(vec![key.clone(), n.to_string()]);
        }
        out.table(&t)?;
    }
    Ok(0)
}
