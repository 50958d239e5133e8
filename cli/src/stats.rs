//! `xnai-streams stats` and `xnai-streams health`.

use serde_json::json;
use xnai_streams::{DlqFilter, HealthReport, HealthStatus};

use crate::output::{Failure, Out, table};
use crate::target::Target;

/// The exit code of a health report: 0 healthy, 1 degraded, 2 unhealthy
/// (a status added later counts as unhealthy).
pub(crate) fn exit_code(report: &HealthReport) -> u8 {
    match report.status {
        HealthStatus::Healthy => 0,
        HealthStatus::Degraded => 1,
        _ => 2,
    }
}

/// The word for a report's state.
fn status(report: &HealthReport) -> &'static str {
    report.status.as_str()
}

pub(crate) async fn stats(target: &Target, out: Out) -> Result<u8, Failure> {
    let manager = target.manager().await?;
    let streams = manager.list_streams().await?;
    let health = manager.health().await?;
    let dlq = manager.dlq_stats(&DlqFilter::new()).await?;
    if out.json {
        out.json(&json!({ "streams": streams, "groups": health.groups, "dlq": dlq }))?;
        return Ok(0);
    }
    let mut t = table(&["STREAM", "LENGTH", "GROUPS"]);
    for s in &streams {
        t.add_row(vec![
            s.name.clone(),
            s.length.to_string(),
            s.groups.join(", "),
        ]);
    }
    out.line(format!("streams: {}", streams.len()))?;
    if !streams.is_empty() {
        out.table(&t)?;
    }
    let mut t = table(&["GROUP", "STREAM", "PENDING", "LAG", "CLAIMABLE", "RETRIES"]);
    for g in &health.groups {
        for s in &g.streams {
            t.add_row(vec![
                g.group.clone(),
                s.stream.clone(),
                s.pending.to_string(),
                s.lag.map_or_else(|| "?".to_owned(), |l| l.to_string()),
                s.claimable.to_string(),
                (s.scheduled_retries + s.ready_retries).to_string(),
            ]);
        }
    }
    out.line(format!("groups: {}", health.groups.len()))?;
    if !health.groups.is_empty() {
        out.table(&t)?;
    }
    out.line(format!("dead letters: {}", dlq.total))?;
    if dlq.total > 0 {
        let mut t = table(&["REASON", "COUNT"]);
        for (reason, n) in &dlq.by_reason {
            t.add_row(vec![reason.clone(), n.to_string()]);
        }
        out.table(&t)?;
    }
    Ok(0)
}

pub(crate) async fn health(target: &Target, out: Out) -> Result<u8, Failure> {
    let manager = match target.manager().await {
        Ok(m) => m,
        // A server that cannot be reached is an answer: unhealthy.
        Err(e) if e.unreachable => {
            let problem = format!("backend unreachable: {}", e.message());
            if out.json {
                out.json(&json!({
                    "healthy": false,
                    "status": "unhealthy",
                    "backend": "redis",
                    "server_version": null,
                    "latency_ms": null,
                    "consumer_id": crate::target::CLI_CONSUMER,
                    "groups": [],
                    "dlq_entries": 0,
                    "problems": [problem],
                }))?;
            } else {
                out.line("status: unhealthy")?;
                out.line(format!("problem: {problem}"))?;
            }
            return Ok(2);
        }
        Err(e) => return Err(e),
    };
    let report = manager.health().await?;
    let code = exit_code(&report);
    if out.json {
        let mut value = serde_json::to_value(&report)?;
        if let Some(map) = value.as_object_mut() {
            map.insert("status".to_owned(), json!(status(&report)));
        }
        out.json(&value)?;
        return Ok(code);
    }
    out.line(format!("status: {}", status(&report)))?;
    out.line(format!(
        "backend: {} {}, latency {}",
        report.backend,
        report.server_version.as_deref().unwrap_or("?"),
        report
            .latency_ms
            .map_or_else(|| "?".to_owned(), |ms| format!("{ms:.1} ms"))
    ))?;
    out.line(format!(
        "groups: {}, dead letters: {}",
        report.groups.len(),
        report.dlq_entries
    ))?;
    for problem in &report.problems {
        out.line(format!("problem: {problem}"))?;
    }
    Ok(code)
}
