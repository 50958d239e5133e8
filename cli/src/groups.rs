//! `xnai-streams groups` and `xnai-streams pending GROUP`.

use std::time::Duration;

use clap::Args;
use xnai_streams::PendingFilter;

use crate::output::{Failure, Format, Out, parse_duration, show_ms, table};
use crate::target::Target;

pub(crate) async fn run(target: &Target, out: Out) -> Result<u8, Failure> {
    let manager = target.manager().await?;
    let health = manager.health().await?;
    if out.json {
        out.json(&health.groups)?;
        return Ok(0);
    }
    if health.groups.is_empty() {
        out.line("no groups")?;
        return Ok(0);
    }
    let mut t = table(&[
        "GROUP",
        "STREAM",
        "LENGTH",
        "PENDING",
        "LAG",
        "CLAIMABLE",
        "RETRIES",
        "CONSUMERS",
    ]);
    for group in &health.groups {
        for s in &group.streams {
            let lag = match (s.group_exists, s.lag) {
                (false, _) => "missing".to_owned(),
                (true, Some(lag)) => lag.to_string(),
                (true, None) => "?".to_owned(),
            };
            t.add_row(vec![
                group.group.clone(),
                s.stream.clone(),
                s.length.to_string(),
                s.pending.to_string(),
                lag,
                s.claimable.to_string(),
                format!("{} + {} ready", s.scheduled_retries, s.ready_retries),
                s.consumers.len().to_string(),
            ]);
        }
    }
    out.table(&t)?;
    Ok(0)
}

/// Options of `xnai-streams pending`.
#[derive(Debug, Args)]
pub(crate) struct PendingArgs {
    /// The group.
    group: String,
    /// Only this consumer's entries.
    #[arg(long)]
    consumer: Option<String>,
    /// Only entries of this stream (and its retries).
    #[arg(long)]
    stream: Option<String>,
    /// Only entries idle at least this long (`30s`, `5m`).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    idle: Option<Duration>,
    /// Most entries listed.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[command(flatten)]
    format: Format,
}

pub(crate) async fn pending(args: PendingArgs, target: &Target) -> Result<u8, Failure> {
    let out = args.format.out();
    let manager = target.manager().await?;
    let mut filter = PendingFilter::new(&args.group).with_limit(args.limit);
    if let Some(consumer) = &args.consumer {
        filter = filter.with_consumer(consumer);
    }
    if let Some(stream) = &args.stream {
        filter = filter.with_stream(stream);
    }
    if let Some(idle) = args.idle {
        filter = filter.idle_at_least(idle);
    }
    let entries = manager.list_pending(&filter).await?;
    if out.json {
        out.json(&entries)?;
        return Ok(0);
    }
    if entries.is_empty() {
        out.line(format!("nothing pending in group {}", args.group))?;
        return Ok(0);
    }
    let mut t = table(&["STREAM", "ID", "CONSUMER", "IDLE", "DELIVERIES", "RETRY"]);
    for p in &entries {
        t.add_row(vec![
            p.stream.clone(),
            p.id.clone(),
            p.consumer.clone(),
            show_ms(p.idle_ms),
            p.deliveries.to_string(),
            if p.retry { "yes" } else { "no" }.to_owned(),
        ]);
    }
    out.table(&t)?;
    Ok(0)
}
