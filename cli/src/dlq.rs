//! `xnai-streams dlq list|show|stats|replay|purge`: the dead-letter queue.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use serde_json::Value;
use xnai_streams::{
    DlqCursor, DlqFilter, DlqProgress, DlqPurge, DlqQuery, DlqReplay, DlqSelection, StreamMessage,
};

use crate::output::{Failure, Format, clip, or_dash, parse_duration, parse_time, progress, table};
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
struct FilterArgs {
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
    fn filter(&self) -> DlqFilter {
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

/// Which entries a replay or purge acts on.
#[derive(Debug, Args)]
struct Selection {
    /// Dead-letter entry ids (else give filters or --all).
    #[arg(value_name = "ID")]
    ids: Vec<String>,
    /// Every entry (that passes the filters).
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    filter: FilterArgs,
    /// Only report what would happen.
    #[arg(long)]
    dry_run: bool,
    /// Go ahead with more than one entry.
    #[arg(long)]
    yes: bool,
}

impl Selection {
    /// The selection, refusing a bulk change without --yes or --dry-run.
    fn resolve(&self, verb: &str) -> Result<DlqSelection, Failure> {
        let filter = self.filter.filter();
        let (selection, bulk) = if !self.ids.is_empty() {
            let mut besides_stream = filter.clone();
            besides_stream.stream = None;
            if self.all || !besides_stream.is_empty() {
                return Err(Failure::new(
                    "give entry ids, or filters and --all, not both",
                ));
            }
            let mut selection = DlqSelection::ids(self.ids.clone());
            if let Some(stream) = filter.stream {
                selection = selection.in_stream(stream);
            }
            (selection, self.ids.len() > 1)
        } else if self.all || !filter.is_empty() {
            (DlqSelection::matching(filter), true)
        } else {
            return Err(Failure::new(format!(
                "say which entries to {verb}: ids, filters (--reason, --older-than, ...) or --all"
            )));
        };
        if bulk && !self.dry_run && !self.yes {
            return Err(Failure::new(format!(
                "this would {verb} more than one entry: add --yes to go ahead, or --dry-run to see which"
            )));
        }
        Ok(selection)
    }
}

#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    selection: Selection,
    /// The group for entries dead-lettered without one (entries that name
    /// a group always go back to it).
    #[arg(long, value_name = "GROUP")]
    target_group: Option<String>,
    /// At most N entries per second.
    #[arg(long, value_name = "N")]
    rate: Option<u32>,
    #[command(flatten)]
    format: Format,
}

#[derive(Debug, Args)]
pub(crate) struct PurgeArgs {
    #[command(flatten)]
    selection: Selection,
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

/// A bar that follows a replay's or purge's progress.
fn bar_progress(what: &str) -> (indicatif::ProgressBar, DlqProgress) {
    let bar = progress(0, what);
    let follow = bar.clone();
    let report: DlqProgress = Arc::new(move |done, total| {
        follow.set_length(total);
        follow.set_position(done);
    });
    (bar, report)
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

async fn replay(args: ReplayArgs, target: &Target) -> Result<u8, Failure> {
    let out = args.format.out();
    let selection = args.selection.resolve("replay")?;
    let manager = target.manager().await?;
    let mut request = DlqReplay::new(selection).dry_run(args.selection.dry_run);
    if let Some(group) = &args.target_group {
        request = request.with_target_group(group);
    }
    if let Some(rate) = args.rate {
        request = request.with_rate_limit(rate);
    }
    let (bar, report_progress) = bar_progress("replaying");
    let report = manager
        .dlq_replay(&request.with_progress(report_progress))
        .await;
    bar.finish_and_clear();
    let report = report?;
    if out.json {
        out.json(&report)?;
        return Ok(0);
    }
    let (verb, items) = if report.dry_run {
        ("would replay", &report.would_replay)
    } else {
        ("replayed", &report.replayed)
    };
    out.line(format!("{verb} {}", items.len()))?;
    if !items.is_empty() {
        let mut t = table(&["DLQ ID", "STREAM", "GROUP", "NEW ID", "REPLAYS"]);
        for r in items {
            t.add_row(vec![
                r.dlq_id.clone(),
                r.stream.clone(),
                r.group.clone(),
                or_dash(r.new_id.as_ref()),
                r.replay_count.to_string(),
            ]);
        }
        out.table(&t)?;
    }
    if !report.skipped.is_empty() {
        out.line(format!("skipped {}", report.skipped.len()))?;
        let mut t = table(&["DLQ ID", "WHY"]);
        for s in &report.skipped {
            t.add_row(vec![s.dlq_id.clone(), s.reason.to_string()]);
        }
        out.table(&t)?;
    }
    if !report.duplicates.is_empty() {
        out.line(format!(
            "left {} duplicates in the queue",
            report.duplicates.len()
        ))?;
        let mut t = table(&["DLQ ID", "MID", "SAME MESSAGE AS"]);
        for d in &report.duplicates {
            let of = if d.waiting {
                format!("{} (waiting in the ready stream)", d.of)
            } else {
                format!("{} (replayed now)", d.of)
            };
            t.add_row(vec![d.dlq_id.clone(), d.mid.clone(), of]);
        }
        out.table(&t)?;
    }
    Ok(0)
}

async fn purge(args: PurgeArgs, target: &Target) -> Result<u8, Failure> {
    let out = args.format.out();
    let selection = args.selection.resolve("purge")?;
    let manager = target.manager().await?;
    let (bar, report_progress) = bar_progress("purging");
    let request = DlqPurge::new(selection)
        .dry_run(args.selection.dry_run)
        .with_progress(report_progress);
    let report = manager.dlq_purge(&request).await;
    bar.finish_and_clear();
    let report = report?;
    if out.json {
        out.json(&report)?;
        return Ok(0);
    }
    let (verb, items) = if report.dry_run {
        ("would remove", &report.would_remove)
    } else {
        ("removed", &report.removed)
    };
    out.line(format!("{verb} {}", items.len()))?;
    if !items.is_empty() {
        let mut t = table(&["DLQ ID", "STREAM", "GROUP", "REASON"]);
        for p in items {
            t.add_row(vec![
                p.dlq_id.clone(),
                or_dash(p.stream.as_ref()),
                or_dash(p.group.as_ref()),
                clip(&or_dash(p.reason.as_ref()), 50),
            ]);
        }
        out.table(&t)?;
    }
    if !report.not_found.is_empty() {
        out.line(format!("not found: {}", report.not_found.join(", ")))?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selection(
        ids: &[&str],
        all: bool,
        reason: Option<&str>,
        dry_run: bool,
        yes: bool,
    ) -> Selection {
        Selection {
            ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            all,
            filter: FilterArgs {
                stream: None,
                group: None,
                reason: reason.map(str::to_owned),
                since: None,
                until: None,
                older_than: None,
            },
            dry_run,
            yes,
        }
    }

    #[test]
    fn bulk_changes_need_yes_or_dry_run() {
        assert!(
            selection(&["1-0"], false, None, false, false)
                .resolve("replay")
                .is_ok()
        );
        assert!(
            selection(&["1-0", "2-0"], false, None, false, false)
                .resolve("replay")
                .is_err()
        );
        assert!(
            selection(&["1-0", "2-0"], false, None, false, true)
                .resolve("replay")
                .is_ok()
        );
        assert!(
            selection(&[], true, None, true, false)
                .resolve("purge")
                .is_ok()
        );
        assert!(
            selection(&[], false, Some("x"), false, false)
                .resolve("purge")
                .is_err()
        );
        assert!(
            selection(&[], false, None, false, true)
                .resolve("purge")
                .is_err(),
            "nothing named"
        );
        assert!(
            selection(&["1-0"], true, None, false, true)
                .resolve("purge")
                .is_err(),
            "ids and --all"
        );
    }
}
