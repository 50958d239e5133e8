//! The sampler: every interval, one look at the server (health, streams,
//! dead letters, and how far each group has read), kept as the latest
//! snapshot for the pages and as a point of the history for the rates.
//!
//! Pages and scripts read the snapshot, so any number of them costs the
//! server no more than one sampler.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use xnai_streams::backend::GroupInfo;
use xnai_streams::{
    DlqFilter, DlqStats, HealthReport, RedisStreamManager, StreamBackend, StreamInfo, observe,
};

use super::history::{GroupPoint, Point, StreamPoint};
use super::state::App;

/// How often the stream list (a key scan) and the dead-letter counts (a
/// scan of the queue) are read again when nothing says they changed.
const SLOW_REFRESH: Duration = Duration::from_secs(10);

/// How far a group has read one of its streams and its retries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Entries of the stream the group has read, when the server tells.
    pub(crate) entries_read: Option<u64>,
    /// Retry copies the group has read from its ready stream, when the
    /// server tells (0 when the ready stream was never written).
    pub(crate) retries_read: Option<u64>,
    /// Retry copies pending in the ready stream.
    pub(crate) retries_pending: u64,
}

/// One look at the server.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    /// When it was taken.
    pub(crate) at: SystemTime,
    /// Health: the verdict, the groups, the dead-letter length.
    pub(crate) health: HealthReport,
    /// The streams of the namespace.
    pub(crate) streams: Vec<StreamInfo>,
    /// Dead letters counted by reason, stream and group.
    pub(crate) dlq: DlqStats,
    /// By (group, stream).
    pub(crate) progress: BTreeMap<(String, String), Progress>,
    /// What could not be read this time (the rest is from the last time).
    pub(crate) errors: Vec<String>,
    /// When the streams and dead letters were last read.
    slow_at: Instant,
}

/// Entries the group has read, when the server tells; a group that never
/// read anything (no last delivered id) has read none, even where the
/// server reports no count (a group created on an empty stream).
fn read_count(info: &GroupInfo) -> Option<u64> {
    match (info.entries_read, &info.last_delivered) {
        (Some(n), _) => Some(n),
        (None, None) => Some(0),
        (None, Some(_)) => None,
    }
}

/// The info of `group` on `key`, if both exist.
async fn group_on(manager: &RedisStreamManager, key: &str, group: &str) -> Option<GroupInfo> {
    match manager.backend().groups(key).await {
        Ok(groups) => groups.into_iter().find(|g| g.name == group),
        Err(_) => None,
    }
}

/// Takes a snapshot; what cannot be read is carried over from `previous`
/// and named in `errors`. `None` only when the manager is closed before a
/// first snapshot (an unreachable server gives an unhealthy report).
pub(crate) async fn sample(app: &App, previous: Option<&Snapshot>) -> Option<Snapshot> {
    let manager = &app.manager;
    let mut errors = Vec::new();
    let health = match manager.health().await {
        Ok(h) => h,
        Err(e) => {
            errors.push(format!("health: {e}"));
            previous?.health.clone()
        }
    };
    let known_streams: Vec<&str> = health
        .groups
        .iter()
        .flat_map(|g| g.streams.iter().map(|s| s.stream.as_str()))
        .collect();
    let slow_due = previous.is_none_or(|p| {
        p.slow_at.elapsed() >= SLOW_REFRESH
            || p.health.dlq_entries != health.dlq_entries
            || known_streams
                .iter()
                .any(|s| !p.streams.iter().any(|i| i.name == *s))
    });
    let (mut streams, mut dlq, mut slow_at) = match previous {
        Some(p) => (p.streams.clone(), p.dlq.clone(), p.slow_at),
        None => (Vec::new(), DlqStats::default(), Instant::now()),
    };
    // An unreachable server is in the health report; asking it more
    // would only wait for more timeouts.
    let reachable = health.latency_ms.is_some();
    if slow_due && reachable {
        slow_at = Instant::now();
        match manager.list_streams().await {
            Ok(s) => streams = s,
            Err(e) => errors.push(format!("streams: {e}")),
        }
        match manager.dlq_stats(&DlqFilter::new()).await {
            Ok(d) => dlq = d,
            Err(e) => errors.push(format!("dead letters: {e}")),
        }
    }
    // The lengths health has just read are newer than the list's.
    for info in &mut streams {
        if let Some(s) = health
            .groups
            .iter()
            .flat_map(|g| g.streams.iter())
            .find(|s| s.stream == info.name)
        {
            info.length = s.length;
        }
    }
    let mut progress = BTreeMap::new();
    let keys = manager.keys();
    for group in health.groups.iter().filter(|_| reachable) {
        for s in group.streams.iter().filter(|s| s.group_exists) {
            let on_stream = group_on(manager, &keys.stream(&s.stream), &group.group).await;
            let ready = keys.retry_ready(&s.stream, &group.group);
            let on_ready = group_on(manager, &ready, &group.group).await;
            let retries_read = match &on_ready {
                Some(info) => read_count(info),
                // Never promoted to: nothing read there yet.
                None if s.ready_retries == 0 => Some(0),
                None => None,
            };
            progress.insert(
                (group.group.clone(), s.stream.clone()),
                Progress {
                    entries_read: on_stream.as_ref().and_then(read_count),
                    retries_read,
                    retries_pending: on_ready.map_or(0, |g| g.pending),
                },
            );
        }
    }
    observe::record_health_gauges(&health);
    Some(Snapshot {
        at: SystemTime::now(),
        health,
        streams,
        dlq,
        progress,
        errors,
        slow_at,
    })
}

/// Milliseconds since the Unix epoch.
pub(crate) fn epoch_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The history point of a snapshot.
pub(crate) fn point(snapshot: &Snapshot) -> Point {
    let mut p = Point {
        at_ms: epoch_ms(snapshot.at),
        dlq_by_group: snapshot.dlq.by_group.clone(),
        dlq_total: snapshot.health.dlq_entries,
        ..Point::default()
    };
    for info in &snapshot.streams {
        p.streams.insert(
            info.name.clone(),
            StreamPoint {
                length: info.length,
                added: None,
            },
        );
    }
    for group in &snapshot.health.groups {
        for s in &group.streams {
            let progress = snapshot
                .progress
                .get(&(group.group.clone(), s.stream.clone()));
            let entries_read = progress.and_then(|p| p.entries_read);
            let stream = p.streams.entry(s.stream.clone()).or_default();
            stream.length = s.length;
            // Entries ever added: what the group read plus what it has not.
            if let (Some(read), Some(lag)) = (entries_read, s.lag) {
                let added = read + lag;
                stream.added = Some(stream.added.map_or(added, |a| a.max(added)));
            }
            // Handed out and no longer pending.
            let done = match (entries_read, s.lag) {
                (Some(read), _) => Some(read.saturating_sub(s.pending)),
                (None, Some(lag)) => Some(s.length.saturating_sub(lag + s.pending)),
                (None, None) => None,
            };
            // Scheduled, plus read from the ready stream, plus waiting
            // there unread (acknowledged copies are deleted, so what is
            // there and not pending has not been read).
            let retried = progress.and_then(|p| {
                let waiting = s.ready_retries.saturating_sub(p.retries_pending);
                Some(s.scheduled_retries + p.retries_read? + waiting)
            });
            p.groups.insert(
                (group.group.clone(), s.stream.clone()),
                GroupPoint { done, retried },
            );
        }
    }
    p
}

/// Samples every interval until the task is aborted.
pub(crate) async fn run(app: Arc<App>) {
    // The first look was taken before the server started.
    let start = tokio::time::Instant::now() + app.interval;
    let mut ticker = tokio::time::interval_at(start, app.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let previous = app.latest();
        if let Some(snapshot) = sample(&app, previous.as_deref()).await {
            app.record(snapshot);
        }
    }
}
