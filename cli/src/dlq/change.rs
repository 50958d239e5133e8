//! `xnai-streams dlq replay` and `dlq purge`: the changes, which need
//! `--yes` (or `--dry-run`) for more than one entry.

use std::sync::Arc;

use clap::Args;
use xnai_streams::{DlqProgress, DlqPurge, DlqReplay, DlqSelection};

use super::FilterArgs;
use crate::output::{Failure, Format, clip, or_dash, progress, table};
use crate::target::Target;

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

pub(crate) async fn replay(args: ReplayArgs, target: &Target) -> Result<u8, Failure> {
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

pub(crate) async fn purge(args: PurgeArgs, target: &Target) -> Result<u8, Failure> {
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
