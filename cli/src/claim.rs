//! `xnai-streams claim GROUP`: take over what dead consumers left.

use std::collections::HashSet;
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};
use xnai_streams::{RedisStreamManager, StreamError, StreamMessage};

use crate::output::{Failure, Format, clip, parse_duration, table};
use crate::target::{CLI_CONSUMER, Target};

/// Most claims one command makes.
const MAX_ROUNDS: usize = 10_000;

/// Options of `xnai-streams claim`.
#[derive(Debug, Args)]
pub(crate) struct ClaimArgs {
    /// The group.
    group: String,
    /// Claim entries idle at least this long (`30s`, `5m`). Default: the
    /// group's `claim_idle`.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    idle: Option<Duration>,
    /// The consumer name to claim as; the entries stay pending for it,
    /// handed back, until a worker claims them.
    #[arg(long, default_value = CLI_CONSUMER)]
    consumer: String,
    #[command(flatten)]
    format: Format,
}

pub(crate) fn claimed_json(message: &StreamMessage) -> Value {
    let mut value = message.to_json();
    if let (Some(map), Some(d)) = (value.as_object_mut(), &message.delivery) {
        map.insert("deliveries".to_owned(), json!(d.deliveries));
    }
    value
}

/// Claims the group's entries idle at least `idle` (default: the group's
/// `claim_idle`) as `manager`'s consumer, claim after claim until nothing
/// new comes, and hands each back at once, without counting this delivery,
/// for the group's workers to claim; poison messages go to the dead-letter
/// queue on the way. Returns what was claimed and handed back. Nothing is
/// handled here.
pub(crate) async fn claim_and_hand_back(
    manager: &RedisStreamManager,
    group: &str,
    idle: Option<Duration>,
) -> Result<Vec<StreamMessage>, StreamError> {
    // Each claim takes at most one entry whose consumer died holding it
    // and goes on after it the next time: claim until nothing new comes.
    let mut claimed: Vec<StreamMessage> = Vec::new();
    let mut seen = HashSet::new();
    for _ in 0..MAX_ROUNDS {
        let round = manager.claim_pending_messages(group, idle).await?;
        if round.is_empty() {
            break;
        }
        manager.release(&round).await?;
        let fresh: Vec<StreamMessage> = round
            .into_iter()
            .filter(|m| seen.insert((m.stream.clone(), m.id.clone())))
            .collect();
        if fresh.is_empty() {
            break;
        }
        claimed.extend(fresh);
    }
    Ok(claimed)
}

pub(crate) async fn run(args: ClaimArgs, target: &Target) -> Result<u8, Failure> {
    let out = args.format.out();
    let manager = target.manager_as(&args.consumer).await?;
    let claimed = claim_and_hand_back(&manager, &args.group, args.idle).await?;
    let stats = manager.get_stats().await?;
    manager.close().await?;
    if out.json {
        out.json(&json!({
            "group": args.group,
            "claimed": claimed.iter().map(claimed_json).collect::<Vec<_>>(),
            "handed_back": claimed.len(),
            "dead_lettered": stats.poison_messages,
            "deleted_acknowledged": stats.pending_deleted,
        }))?;
        return Ok(0);
    }
    if !claimed.is_empty() {
        let mut t = table(&["STREAM", "ID", "DELIVERIES", "RETRIES", "DATA"]);
        for m in &claimed {
            t.add_row(vec![
                m.stream.clone(),
                m.id.clone(),
                m.delivery
                    .as_ref()
                    .map_or_else(String::new, |d| d.deliveries.to_string()),
                m.retry_count.to_string(),
                clip(&Value::Object(m.data.clone()).to_string(), 60),
            ]);
        }
        out.table(&t)?;
    }
    out.line(format!(
        "claimed {}, handed back {} (claimable at once), dead-lettered {} poison, acknowledged {} deleted",
        claimed.len(),
        claimed.len(),
        stats.poison_messages,
        stats.pending_deleted
    ))?;
    Ok(0)
}
