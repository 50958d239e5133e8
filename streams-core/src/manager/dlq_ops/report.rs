//! Replaying and purging dead letters: the requests and what they report.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::query::DlqSelection;

/// Called as a replay or purge goes on, with the entries done so far and
/// the total it will do (a progress bar, say).
pub type DlqProgress = Arc<dyn Fn(u64, u64) + Send + Sync>;

fn show_progress(p: &Option<DlqProgress>) -> &'static str {
    if p.is_some() { "Some(..)" } else { "None" }
}

/// Replaying dead letters ([`StreamManager::dlq_replay`](crate::StreamManager::dlq_replay)).
///
/// Each entry goes back to the group that dead-lettered it, into that
/// group's ready stream for its origin stream, never onto the shared
/// stream (which would reach every group reading it).
///
/// ```
/// use streams_core::{DlqFilter, DlqReplay, DlqSelection};
///
/// let replay = DlqReplay::new(DlqSelection::matching(DlqFilter::new().with_reason("timeout")))
///     .with_target_group("agent_wavefront")
///     .with_rate_limit(50)
///     .dry_run(true);
/// assert!(replay.dry_run);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct DlqReplay {
    /// The entries to replay.
    pub selection: DlqSelection,
    /// The group for entries dead-lettered without one; entries that name a
    /// group always go back to it. Without it such entries are skipped
    /// ([`SkipReason::NoGroup`]).
    pub target_group: Option<String>,
    /// Report what would be replayed and change nothing.
    pub dry_run: bool,
    /// At most this many entries per second (at least 1). Default: no limit.
    pub rate_limit: Option<u32>,
    /// Told of the progress after each entry.
    pub progress: Option<DlqProgress>,
}

impl fmt::Debug for DlqReplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DlqReplay")
            .field("selection", &self.selection)
            .field("target_group", &self.target_group)
            .field("dry_run", &self.dry_run)
            .field("rate_limit", &self.rate_limit)
            .field("progress", &show_progress(&self.progress))
            .finish()
    }
}

impl DlqReplay {
    /// Replays `selection`, at full speed, for real.
    pub fn new(selection: DlqSelection) -> Self {
        Self {
            selection,
            target_group: None,
            dry_run: false,
            rate_limit: None,
            progress: None,
        }
    }

    /// Sends entries dead-lettered without a group to `group`.
    #[must_use]
    pub fn with_target_group(mut self, group: impl Into<String>) -> Self {
        self.target_group = Some(group.into());
        self
    }

    /// Only reports what would be replayed.
    #[must_use]
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Replays at most `per_second` entries per second.
    #[must_use]
    pub fn with_rate_limit(mut self, per_second: u32) -> Self {
        self.rate_limit = Some(per_second);
        self
    }

    /// Calls `progress(done, total)` after each entry.
    #[must_use]
    pub fn with_progress(mut self, progress: DlqProgress) -> Self {
        self.progress = Some(progress);
        self
    }
}

/// One entry replayed, or to be replayed in a dry run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReplayItem {
    /// The dead-letter entry's id.
    pub dlq_id: String,
    /// The stream it came from, which its group reads it as again.
    pub stream: String,
    /// The group it goes back to.
    pub group: String,
    /// The producer's message id, if it has one.
    pub mid: Option<String>,
    /// Its replay count once replayed.
    pub replay_count: u32,
    /// The id of the copy in the group's ready stream; `None` in a dry run.
    pub new_id: Option<String>,
}

/// Why an entry was not replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkipReason {
    /// No entry has this id.
    NotFound,
    /// The entry was removed while the replay ran (replayed or purged by
    /// someone else).
    Gone,
    /// The entry has no provenance: it was not written as a dead letter.
    NoProvenance,
    /// The message cannot be replayed as it is: its original entry was
    /// malformed (the dead letter keeps its raw fields), or the dead-letter
    /// entry itself is.
    Malformed,
    /// It was dead-lettered without a group, and no target group was given.
    NoGroup,
    /// Its group is not registered (never was, or was deleted).
    GroupNotFound {
        /// The group.
        group: String,
    },
    /// Its group does not read its origin stream (any more).
    StreamNotInGroup {
        /// The group.
        group: String,
        /// The origin stream.
        stream: String,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => f.write_str("no such dead-letter entry"),
            Self::Gone => f.write_str("removed meanwhile"),
            Self::NoProvenance => f.write_str("not a dead letter (no provenance)"),
            Self::Malformed => {
                f.write_str("malformed: its raw fields stay in the dead-letter queue")
            }
            Self::NoGroup => f.write_str("dead-lettered without a group: give a target group"),
            Self::GroupNotFound { group } => write!(f, "group `{group}` is not registered"),
            Self::StreamNotInGroup { group, stream } => {
                write!(f, "group `{group}` does not read stream `{stream}`")
            }
        }
    }
}

/// An entry left out of a replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReplaySkip {
    /// The dead-letter entry's id.
    pub dlq_id: String,
    /// Why.
    pub reason: SkipReason,
}

/// An entry left in place because its message is replayed already: it
/// shares its `mid` and target with another entry of the same call (the
/// newest is replayed), or with a copy still waiting in the group's ready
/// stream (a replay run twice).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReplayDuplicate {
    /// The dead-letter entry's id, left in the queue.
    pub dlq_id: String,
    /// The shared producer message id.
    pub mid: String,
    /// The stream it came from.
    pub stream: String,
    /// The group it would go back to.
    pub group: String,
    /// The dead-letter id replayed in its place, or, with `waiting`, the
    /// id of the copy waiting in the ready stream.
    pub of: String,
    /// Whether `of` is a copy waiting in the group's ready stream.
    pub waiting: bool,
}

/// What a replay did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReplayReport {
    /// Whether this was a dry run (nothing changed).
    pub dry_run: bool,
    /// Entries replayed, with their new ids, in dead-letter order.
    pub replayed: Vec<ReplayItem>,
    /// In a dry run, the entries that would be replayed.
    pub would_replay: Vec<ReplayItem>,
    /// Entries not replayed, with the reason.
    pub skipped: Vec<ReplaySkip>,
    /// Entries left in place as duplicates.
    pub duplicates: Vec<ReplayDuplicate>,
}

/// Removing dead letters ([`StreamManager::dlq_purge`](crate::StreamManager::dlq_purge)).
///
/// ```
/// use std::time::Duration;
/// use streams_core::{DlqFilter, DlqPurge, DlqSelection};
///
/// let week_old = DlqPurge::new(DlqSelection::matching(
///     DlqFilter::new().older_than(Duration::from_secs(7 * 86_400)),
/// ));
/// assert!(!week_old.dry_run);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct DlqPurge {
    /// The entries to remove.
    pub selection: DlqSelection,
    /// Report what would be removed and change nothing.
    pub dry_run: bool,
    /// Told of the progress after each batch of deletions.
    pub progress: Option<DlqProgress>,
}

impl fmt::Debug for DlqPurge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DlqPurge")
            .field("selection", &self.selection)
            .field("dry_run", &self.dry_run)
            .field("progress", &show_progress(&self.progress))
            .finish()
    }
}

impl DlqPurge {
    /// Removes `selection`.
    pub fn new(selection: DlqSelection) -> Self {
        Self {
            selection,
            dry_run: false,
            progress: None,
        }
    }

    /// Only reports what would be removed.
    #[must_use]
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Calls `progress(done, total)` as entries are removed.
    #[must_use]
    pub fn with_progress(mut self, progress: DlqProgress) -> Self {
        self.progress = Some(progress);
        self
    }
}

/// A dead-letter entry a purge removed (or would remove).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PurgedEntry {
    /// The dead-letter entry's id.
    pub dlq_id: String,
    /// The stream it came from, if it says.
    pub stream: Option<String>,
    /// The group that dead-lettered it, if any.
    pub group: Option<String>,
    /// Why it was dead-lettered, if it says.
    pub reason: Option<String>,
}

/// What a purge did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PurgeReport {
    /// Whether this was a dry run (nothing changed).
    pub dry_run: bool,
    /// Entries removed.
    pub removed: Vec<PurgedEntry>,
    /// In a dry run, the entries that would be removed.
    pub would_remove: Vec<PurgedEntry>,
    /// Ids asked for that no entry has (or that were removed meanwhile).
    pub not_found: Vec<String>,
}
