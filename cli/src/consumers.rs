//! `xnai-streams consumers GROUP` and `xnai-streams consumers prune GROUP`.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde::Serialize;

use crate::output::{Failure, Format, parse_duration, show_ms, table};
use crate::target::Target;

/// Options of `xnai-streams consumers`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct ConsumersArgs {
    #[command(subcommand)]
    command: Option<ConsumersCommand>,
    /// The group whose consumers to list.
    #[arg(required = true)]
    group: Option<String>,
    #[command(flatten)]
    format: Format,
}

#[derive(Debug, Subcommand)]
enum ConsumersCommand {
    /// Remove the group's consumers that have been idle for at least --idle
    /// and hold no pending entries (those that do are listed, and kept).
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
struct PruneArgs {
    /// The group.
    group: String,
    /// How long a consumer must have been idle (`30s`, `5m`, `2h`).
    #[arg(long, value_parser = parse_duration, default_value = "1h", value_name = "DURATION")]
    idle: Duration,
    #[command(flatten)]
    format: Format,
}

/// One consumer of a group on one stream, as `--json` prints it.
#[derive(Debug, Serialize)]
struct ConsumerRow {
    stream: String,
    name: String,
    pending: u64,
    idle_ms: u64,
}

pub(crate) async fn run(args: ConsumersArgs, target: &Target) -> Result<u8, Failure> {
    if let Some(ConsumersCommand::Prune(prune)) = args.command {
        return run_prune(prune, target).await;
    }
    let Some(group) = args.group else {
        return Err(Failure::new("name the group: consumers GROUP"));
    };
    let out = args.format.out();
    let manager = target.manager().await?;
    // Unknown groups fail here, with a clear error.
    manager.group_config(&group).await?;
    let health = manager.health().await?;
    let rows: Vec<ConsumerRow> = health
        .groups
        .iter()
        .filter(|g| g.group == group)
        .flat_map(|g| {
            g.streams.iter().flat_map(|s| {
                s.consumers.iter().map(|c| ConsumerRow {
                    stream: s.stream.clone(),
                    name: c.name.clone(),
                    pending: c.pending,
                    idle_ms: c.idle_ms,
                })
            })
        })
        .collect();
    if out.json {
        out.json(&rows)?;
        return Ok(0);
    }
    if rows.is_empty() {
        out.line(format!("group {group} has no consumers"))?;
        return Ok(0);
    }
    let mut t = table(&["STREAM", "CONSUMER", "PENDING", "IDLE"]);
    for r in &rows {
        t.add_row(vec![
            r.stream.clone(),
            r.name.clone(),
            r.pending.to_string(),
            show_ms(r.idle_ms),
        ]);
    }
    out.table(&t)?;
    Ok(0)
}

async fn run_prune(args: PruneArgs, target: &Target) -> Result<u8, Failure> {
    let out = args.format.out();
    let manager = target.manager().await?;
    let report = manager.prune_consumers(&args.group, args.idle).await?;
    if out.json {
        out.json(&report)?;
        return Ok(0);
    }
    if report.removed.is_empty() {
        out.line("removed no consumers")?;
    } else {
        out.line(format!(
            "removed {} consumers: {}",
            report.removed.len(),
            report.removed.join(", ")
        ))?;
    }
    for (name, pending) in &report.kept {
        out.line(format!(
            "kept {name}: it holds {pending} pending entries (claim them first)"
        ))?;
    }
    Ok(0)
}
