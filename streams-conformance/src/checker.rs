//! A history checker for fault tests, in the manner of Jepsen's queue
//! checkers: every process of a scenario appends what it did to a history,
//! and at the end the checker compares the history with what the server
//! holds and reports what was lost, duplicated or settled twice.
//!
//! Messages are told apart by a `key` the producer puts in each payload
//! (`{"key": "p1-42", ...}`), which retry and dead-letter copies keep.
//!
//! Each process writes its own file of JSON lines under one directory
//! ([`Recorder`]); every event is one `write` of one line, so what a process
//! recorded before it was killed with `SIGKILL` is on disk. The scenario
//! records its faults there too ([`Recorder::fault`], [`Recorder::healed`]).
//!
//! ```
//! use streams_conformance::checker::{Checker, Event, Final, Recorder};
//! use streams_core::runner::Settled;
//!
//! let dir = std::env::temp_dir().join(format!("checker-doc-{}", std::process::id()));
//! let producer = Recorder::create(&dir, "producer")?;
//! producer.sent("k1", "s", "1-0");
//! producer.sent("k2", "s", "2-0");
//! let consumer = Recorder::create(&dir, "c1")?;
//! consumer.started("k1", "s", "1-0", "c1", 1);
//! consumer.settled("k1", "s", "1-0", "c1", Settled::Acked);
//! consumer.started("k2", "s", "2-0", "c1", 1);
//! consumer.settled("k2", "s", "2-0", "c1", Settled::DeadLettered);
//!
//! let report = Checker::load(&dir)?.check(&Final::new().dead_lettered(["k2"]));
//! assert_eq!((report.messages, report.lost, report.duplicated), (2, 0, 0));
//! assert!(report.problems().is_empty());
//! std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use streams_core::runner::Settled;

/// Microseconds since the Unix epoch: the clock every process of a
/// scenario shares.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// How a settlement is written in a history.
fn settled_name(how: Settled) -> &'static str {
    match how {
        Settled::Acked => "acked",
        Settled::AckUnconfirmed => "ack_unconfirmed",
        Settled::Retried => "retried",
        Settled::DeadLettered => "dead_lettered",
        Settled::Taken => "taken",
        Settled::AckFailed => "ack_failed",
        Settled::Failed => "failed",
        Settled::HandedBack => "handed_back",
        Settled::Overran => "overran",
        _ => "other",
    }
}

/// One line of a history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A send returned an id.
    Sent {
        /// When, in µs since the epoch.
        t: u64,
        /// The message's key.
        key: String,
        /// The logical stream.
        stream: String,
        /// The id the send returned.
        id: String,
    },
    /// A handler started on a message.
    Started {
        /// When.
        t: u64,
        /// The message's key.
        key: String,
        /// The stream it was read from.
        stream: String,
        /// The entry id delivered (a retry copy has its own).
        id: String,
        /// Who handles it.
        consumer: String,
        /// The delivery count the backend reported.
        deliveries: u64,
    },
    /// A handler returned, asking for `outcome`. Recorded before the
    /// runner settles the message, so a process killed between its ack and
    /// the `Settled` event still shows that the ack was asked for.
    Finished {
        /// When.
        t: u64,
        /// The message's key.
        key: String,
        /// The stream it was read from.
        stream: String,
        /// The entry id.
        id: String,
        /// Who handled it.
        consumer: String,
        /// `ack`, `retry`, `dead_letter`, or `failed` (the handler erred).
        outcome: String,
    },
    /// The runner was done with a message ([`Settled`], by name).
    Settled {
        /// When.
        t: u64,
        /// The message's key.
        key: String,
        /// The stream it was read from.
        stream: String,
        /// The entry id.
        id: String,
        /// Who settled it.
        consumer: String,
        /// `acked`, `ack_unconfirmed`, `ack_failed`, `retried`,
        /// `dead_lettered`, `taken`, `failed`, `handed_back` or `overran`.
        how: String,
    },
    /// The scenario injected a fault.
    Fault {
        /// When.
        t: u64,
        /// What it did.
        what: String,
    },
    /// The fault ended (a paused process resumed, a server restarted).
    Healed {
        /// When.
        t: u64,
        /// What ended.
        what: String,
    },
    /// Anything else worth keeping with the history (a consumer's summary).
    Note {
        /// When.
        t: u64,
        /// Who wrote it.
        who: String,
        /// What.
        text: String,
    },
}

impl Event {
    /// When it happened, in µs since the epoch.
    pub fn time(&self) -> u64 {
        match self {
            Self::Sent { t, .. }
            | Self::Started { t, .. }
            | Self::Finished { t, .. }
            | Self::Settled { t, .. }
            | Self::Fault { t, .. }
            | Self::Healed { t, .. }
            | Self::Note { t, .. } => *t,
        }
    }
}

/// Appends one process's events to `<dir>/<name>.jsonl`, one `write` per
/// line. Recording never fails the caller: an event that cannot be written
/// is reported on stderr (and the checker will then find it missing).
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    file: Mutex<File>,
}

impl Recorder {
    /// Opens (creating `dir` if needed) `<dir>/<name>.jsonl` for appending.
    ///
    /// # Errors
    /// If the directory or file cannot be created.
    pub fn create(dir: impl AsRef<Path>, name: &str) -> io::Result<Self> {
        std::fs::create_dir_all(dir.as_ref())?;
        let path = dir.as_ref().join(format!("{name}.jsonl"));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self {
            path,
            file: Mutex::new(file),
        })
    }

    /// Appends `event`.
    pub fn record(&self, event: &Event) {
        let mut line = match serde_json::to_vec(event) {
            Ok(line) => line,
            Err(e) => {
                eprintln!("history {}: {e}", self.path.display());
                return;
            }
        };
        line.push(b'\n');
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = file.write_all(&line) {
            eprintln!("history {}: {e}", self.path.display());
        }
    }

    /// Records a send that returned `id`.
    pub fn sent(&self, key: &str, stream: &str, id: &str) {
        self.record(&Event::Sent {
            t: now_us(),
            key: key.to_owned(),
            stream: stream.to_owned(),
            id: id.to_owned(),
        });
    }

    /// Records a handler start.
    pub fn started(&self, key: &str, stream: &str, id: &str, consumer: &str, deliveries: u64) {
        self.record(&Event::Started {
            t: now_us(),
            key: key.to_owned(),
            stream: stream.to_owned(),
            id: id.to_owned(),
            consumer: consumer.to_owned(),
            deliveries,
        });
    }

    /// Records what a handler asked for: `ack`, `retry`, `dead_letter` or
    /// `failed`, before the runner settles the message.
    pub fn finished(&self, key: &str, stream: &str, id: &str, consumer: &str, outcome: &str) {
        self.record(&Event::Finished {
            t: now_us(),
            key: key.to_owned(),
            stream: stream.to_owned(),
            id: id.to_owned(),
            consumer: consumer.to_owned(),
            outcome: outcome.to_owned(),
        });
    }

    /// Records how the runner finished with a message.
    pub fn settled(&self, key: &str, stream: &str, id: &str, consumer: &str, how: Settled) {
        self.record(&Event::Settled {
            t: now_us(),
            key: key.to_owned(),
            stream: stream.to_owned(),
            id: id.to_owned(),
            consumer: consumer.to_owned(),
            how: settled_name(how).to_owned(),
        });
    }

    /// Records an injected fault.
    pub fn fault(&self, what: &str) {
        self.record(&Event::Fault {
            t: now_us(),
            what: what.to_owned(),
        });
    }

    /// Records the end of a fault.
    pub fn healed(&self, what: &str) {
        self.record(&Event::Healed {
            t: now_us(),
            what: what.to_owned(),
        });
    }

    /// Records a note.
    pub fn note(&self, who: &str, text: &str) {
        self.record(&Event::Note {
            t: now_us(),
            who: who.to_owned(),
            text: text.to_owned(),
        });
    }
}

/// What the server holds at the end of a scenario, read by the test once
/// the system is quiet.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Final {
    /// The keys found in the dead-letter queue, once per dead letter.
    pub dead_lettered: Vec<String>,
    /// Entries still pending in the group (0 once every message settled).
    pub pending: u64,
    /// Keys the scenario knows were removed on purpose (trimmed while
    /// pending, and reported so): not lost.
    pub excused: BTreeSet<String>,
    /// Only keys sent at or after this time (µs) are checked for loss:
    /// for a server that restarts empty, what was sent before is gone by
    /// design.
    pub sent_after: Option<u64>,
}

impl Final {
    /// Nothing dead-lettered, nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the dead-lettered keys.
    #[must_use]
    pub fn dead_lettered<I, S>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.dead_lettered = keys.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the group's pending count.
    #[must_use]
    pub fn pending(mut self, pending: u64) -> Self {
        self.pending = pending;
        self
    }

    /// Sets the keys removed on purpose.
    #[must_use]
    pub fn excused<I, S>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.excused = keys.into_iter().map(Into::into).collect();
        self
    }

    /// Checks only sends at or after `t` (µs since the epoch).
    #[must_use]
    pub fn sent_after(mut self, t: u64) -> Self {
        self.sent_after = Some(t);
        self
    }
}

/// What a scenario did, message by message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// Distinct keys whose send returned an id (and that are checked).
    pub messages: u64,
    /// Checked keys acknowledged at least once (`unconfirmed` included).
    pub acked: u64,
    /// Checked keys whose handler asked for an ack (a `Finished` event with
    /// `ack`, or an `ack_failed` settlement: timed out,
    /// connection cut), never confirmed in the history, and not pending at
    /// the end: only an ack could have taken them off the pending list, so
    /// the server applied it, and its reply was lost or its consumer was
    /// killed before recording it. Counted as acknowledged, not lost. (A
    /// dead-letter move whose reply was lost shows in the dead-letter
    /// queue, and is counted there.)
    pub unconfirmed: u64,
    /// Checked keys in the dead-letter queue.
    pub dead_lettered: u64,
    /// Sent and neither acknowledged nor dead-lettered nor excused.
    pub lost: u64,
    /// Up to 20 of the lost keys.
    pub lost_keys: Vec<String>,
    /// Handler starts beyond one per entry (an entry is a send that landed,
    /// or a copy made by a retry): work done again.
    pub duplicated: u64,
    /// Sends that landed more than once: the producer sent again after a
    /// send failed (its reply was lost) though the server had written it.
    /// Each landed entry is a message of its own for the other counts.
    pub resent: u64,
    /// Keys whose handler had started and not finished when a fault began,
    /// or started before it ended: the most a fault can make run twice.
    pub in_flight: u64,
    /// Keys with more terminal settlements (acknowledged and confirmed, or
    /// dead-lettered) than entries that landed: settled twice.
    pub double_settled: u64,
    /// Up to 20 of the double-settled keys.
    pub double_settled_keys: Vec<String>,
    /// Settlements the server refused because another consumer had taken
    /// the message (late moves, fenced).
    pub fenced: u64,
    /// Faults recorded.
    pub faults: u64,
    /// The longest recovery of the faults: from a fault's start until every
    /// message in flight at it was settled (until the first settlement after
    /// it, when none was in flight). `None` without faults.
    pub recovery: Option<Duration>,
    /// Entries the group still holds pending at the end.
    pub pending: u64,
}

impl Report {
    /// What makes the scenario fail: a lost message, duplicates beyond what
    /// was in flight at the faults, a double settlement, a fault never
    /// injected, entries left pending.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.lost > 0 {
            problems.push(format!(
                "{} messages lost (e.g. {:?})",
                self.lost, self.lost_keys
            ));
        }
        if self.duplicated > self.in_flight {
            problems.push(format!(
                "{} duplicate handler runs, more than the {} messages in flight at the faults",
                self.duplicated, self.in_flight
            ));
        }
        if self.double_settled > 0 {
            problems.push(format!(
                "{} messages settled twice (e.g. {:?})",
                self.double_settled, self.double_settled_keys
            ));
        }
        if self.pending > 0 {
            problems.push(format!("{} entries still pending", self.pending));
        }
        problems
    }

    /// Panics with the report and its problems unless the scenario injected
    /// at least one fault and [`problems`](Self::problems) is empty.
    ///
    /// # Panics
    /// As said.
    pub fn assert_ok(&self, scenario: &str) {
        let mut problems = self.problems();
        if self.faults == 0 {
            problems.insert(0, "no fault was injected".to_owned());
        }
        assert!(
            problems.is_empty(),
            "{scenario}: {}\n{self}",
            problems.join("; ")
        );
    }

    /// One row of the reliability table: `| scenario | messages | lost |
    /// duplicated (in flight) | resent | double-settled | recovery |`.
    pub fn table_row(&self, scenario: &str) -> String {
        let recovery = self
            .recovery
            .map_or_else(|| "-".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()));
        format!(
            "| {scenario} | {} | {} | {} ({}) | {} | {} | {recovery} |",
            self.messages,
            self.lost,
            self.duplicated,
            self.in_flight,
            self.resent,
            self.double_settled
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let recovery = self
            .recovery
            .map_or_else(|| "-".to_owned(), |d| format!("{d:?}"));
        write!(
            f,
            "messages {}, acked {} (unconfirmed {}), dead-lettered {}, lost {}, duplicated {} \
             (in flight {}), resent {}, double-settled {}, fenced {}, faults {}, \
             recovery {recovery}, pending {}",
            self.messages,
            self.acked,
            self.unconfirmed,
            self.dead_lettered,
            self.lost,
            self.duplicated,
            self.in_flight,
            self.resent,
            self.double_settled,
            self.fenced,
            self.faults,
            self.pending
        )
    }
}

/// Every event of a scenario, from every process, in time order.
#[derive(Debug, Clone, Default)]
pub struct Checker {
    events: Vec<Event>,
}

impl Checker {
    /// Reads every `*.jsonl` file under `dir`. A line cut short by a kill
    /// (the last one of a file) is skipped.
    ///
    /// # Errors
    /// If the directory or a file cannot be read.
    pub fn load(dir: impl AsRef<Path>) -> io::Result<Self> {
        let mut events = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "jsonl") {
                continue;
            }
            for line in BufReader::new(File::open(&path)?).lines() {
                if let Ok(event) = serde_json::from_str::<Event>(&line?) {
                    events.push(event);
                }
            }
        }
        Ok(Self::from_events(events))
    }

    /// A checker over events already in memory.
    pub fn from_events(mut events: Vec<Event>) -> Self {
        events.sort_by_key(Event::time);
        Self { events }
    }

    /// The events, in time order.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Compares the history with the server's final state.
    pub fn check(&self, end: &Final) -> Report {
        let since = end.sent_after.unwrap_or(0);
        let mut sent = BTreeSet::new();
        let mut starts: HashMap<&str, u64> = HashMap::new();
        let mut entries: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        let mut retries: HashMap<&str, u64> = HashMap::new();
        let mut terminal: HashMap<&str, u64> = HashMap::new();
        let mut acked = BTreeSet::new();
        // Keys whose handler asked for an ack that may not be confirmed.
        let mut asked = BTreeSet::new();
        let mut failed = BTreeSet::new();
        let mut dead_letter_settled = BTreeSet::new();
        let mut fenced = 0;
        let mut faults = Vec::new();
        let mut heals = Vec::new();
        for e in &self.events {
            match e {
                Event::Sent { t, key, .. } if *t >= since => {
                    sent.insert(key.as_str());
                }
                Event::Started { key, id, .. } => {
                    *starts.entry(key).or_default() += 1;
                    entries.entry(key).or_default().insert(id);
                }
                Event::Settled { key, how, .. } => match how.as_str() {
                    "acked" => {
                        acked.insert(key.as_str());
                        *terminal.entry(key).or_default() += 1;
                    }
                    // Settled: by this ack, or first by a consumer that
                    // took the message over.
                    "ack_unconfirmed" => {
                        acked.insert(key.as_str());
                    }
                    "ack_failed" => {
                        asked.insert(key.as_str());
                    }
                    "retried" => *retries.entry(key).or_default() += 1,
                    "taken" => fenced += 1,
                    "failed" => {
                        failed.insert(key.as_str());
                    }
                    "dead_lettered" => {
                        dead_letter_settled.insert(key.as_str());
                    }
                    _ => {}
                },
                Event::Finished { key, outcome, .. } if outcome == "ack" => {
                    asked.insert(key.as_str());
                }
                Event::Fault { t, .. } => faults.push(*t),
                Event::Healed { t, .. } => heals.push(*t),
                _ => {}
            }
        }
        let mut dead: BTreeMap<&str, u64> = BTreeMap::new();
        for key in &end.dead_lettered {
            *dead.entry(key.as_str()).or_default() += 1;
        }
        for (key, n) in &dead {
            *terminal.entry(key).or_default() += n;
        }

        let mut report = Report {
            messages: sent.len() as u64,
            fenced,
            faults: faults.len() as u64,
            pending: end.pending,
            ..Report::default()
        };
        // An ack asked for and never confirmed: had the server not applied
        // it, the entry would still be pending, or delivered again and
        // settled.
        let applied: BTreeSet<&str> = if end.pending == 0 {
            asked
                .iter()
                .copied()
                .filter(|k| !acked.contains(k) && !dead.contains_key(k))
                .collect()
        } else {
            BTreeSet::new()
        };
        for key in &sent {
            let unconfirmed = applied.contains(key);
            let is_acked = acked.contains(key) || unconfirmed;
            let is_dead = dead.contains_key(key);
            if is_acked {
                report.acked += 1;
            }
            if unconfirmed {
                report.unconfirmed += 1;
            }
            if is_dead {
                report.dead_lettered += 1;
            }
            if !is_acked && !is_dead && !end.excused.contains(*key) {
                report.lost += 1;
                if report.lost_keys.len() < 20 {
                    report.lost_keys.push((*key).to_owned());
                }
            }
        }
        // Each entry of a key that was handled is either a copy made by a
        // retry or a root: a send that landed (more than one when a send
        // whose reply was lost was sent again). Every root ends in exactly
        // one terminal settlement; every entry is handled once.
        let mut roots: HashMap<&str, u64> = HashMap::new();
        for (key, ids) in &entries {
            let copies = retries.get(key).copied().unwrap_or(0);
            let n = (ids.len() as u64).saturating_sub(copies).max(1);
            roots.insert(key, n);
            report.resent += n - 1;
        }
        for (key, n) in &starts {
            let handled =
                roots.get(key).copied().unwrap_or(1) + retries.get(key).copied().unwrap_or(0);
            report.duplicated += n.saturating_sub(handled);
        }
        for (key, n) in &terminal {
            if *n > roots.get(key).copied().unwrap_or(1) {
                report.double_settled += 1;
                if report.double_settled_keys.len() < 20 {
                    report.double_settled_keys.push((*key).to_owned());
                }
            }
        }
        report.double_settled_keys.sort();
        // For recovery, the failed settlement of those keys, and of keys in
        // the dead-letter queue that no settlement put there, was applied.
        let mut settled_by_failure = applied.clone();
        settled_by_failure.extend(
            failed
                .iter()
                .copied()
                .filter(|k| dead.contains_key(k) && !dead_letter_settled.contains(k)),
        );
        let waited: BTreeSet<&str> = sent
            .iter()
            .copied()
            .filter(|k| !dead.contains_key(k) && !end.excused.contains(*k))
            .collect();
        let (in_flight, recovery) = self.in_flight(&faults, &heals, &waited, &settled_by_failure);
        report.in_flight = in_flight;
        report.recovery = recovery;
        report
    }

    /// Keys in flight across the faults, and the recovery time.
    ///
    /// A fault runs from its `Fault` event to the next `Healed` event (or
    /// is instant without one). A key is in flight at a fault when a handler
    /// started on it before the fault ended and no terminal settlement
    /// (acked, retried, dead-lettered) of that delivery came before the
    /// fault began.
    /// Recovery ends when each of them that is `waited` for was settled:
    /// the dead-lettered ones (whose move may come from a read, with no
    /// settlement in the history), the excused ones (removed on purpose,
    /// never settled) and the ones not checked (sent before a server lost
    /// its data) do not hold it up. For the keys whose failed ack or move
    /// was `applied`, that failure is their settlement.
    fn in_flight(
        &self,
        faults: &[u64],
        heals: &[u64],
        waited: &BTreeSet<&str>,
        applied: &BTreeSet<&str>,
    ) -> (u64, Option<Duration>) {
        let mut keys: BTreeSet<&str> = BTreeSet::new();
        let mut recovery: Option<Duration> = None;
        for (i, &begin) in faults.iter().enumerate() {
            // Its own healing, if any: before the next fault begins.
            let next = faults.get(i + 1).copied().unwrap_or(u64::MAX);
            let end = heals
                .iter()
                .copied()
                .find(|&h| h >= begin && h < next)
                .unwrap_or(begin);
            // The latest delivery of each key started before the fault ended,
            // and whether it was settled before the fault began.
            let mut open: HashMap<&str, (&str, bool)> = HashMap::new();
            for e in &self.events {
                if let Event::Started { t, key, id, .. } = e {
                    if *t <= end {
                        open.insert(key, (id, false));
                    }
                } else if let Some((t, key, id)) = settlement(e, applied) {
                    if t < begin {
                        if let Some(entry) = open.get_mut(key) {
                            if entry.0 == id {
                                entry.1 = true;
                            }
                        }
                    }
                }
            }
            let this: BTreeSet<&str> = open
                .into_iter()
                .filter(|(_, (_, done))| !done)
                .map(|(k, _)| k)
                .collect();
            if let Some(took) = self.recovered(begin, &this, waited, applied) {
                recovery = Some(recovery.map_or(took, |r| r.max(took)));
            }
            keys.extend(this);
        }
        (keys.len() as u64, recovery)
    }

    /// How long after `begin` every `waited` key of `in_flight` was
    /// settled (with none, until the first settlement after it).
    fn recovered(
        &self,
        begin: u64,
        in_flight: &BTreeSet<&str>,
        waited: &BTreeSet<&str>,
        applied: &BTreeSet<&str>,
    ) -> Option<Duration> {
        let mut waiting: BTreeSet<&str> = in_flight
            .iter()
            .copied()
            .filter(|k| waited.contains(k))
            .collect();
        for (t, key, _) in self.events.iter().filter_map(|e| settlement(e, applied)) {
            if t <= begin {
                continue;
            }
            // With nothing to wait for, the first settlement after the
            // fault shows the system working again.
            if waiting.is_empty() || (waiting.remove(key) && waiting.is_empty()) {
                return Some(Duration::from_micros(t - begin));
            }
        }
        None
    }
}

/// When and which delivery `e` settles, if it does: a terminal
/// settlement; and for a key whose ack was applied unconfirmed
/// (`applied`), its failed settlement or the handler's asking for the ack.
fn settlement<'e>(e: &'e Event, applied: &BTreeSet<&str>) -> Option<(u64, &'e str, &'e str)> {
    match e {
        Event::Settled {
            t, key, id, how, ..
        } if is_terminal(how)
            || (matches!(how.as_str(), "ack_failed" | "failed")
                && applied.contains(key.as_str())) =>
        {
            Some((*t, key, id))
        }
        Event::Finished {
            t,
            key,
            id,
            outcome,
            ..
        } if outcome == "ack" && applied.contains(key.as_str()) => Some((*t, key, id)),
        _ => None,
    }
}

fn is_terminal(how: &str) -> bool {
    matches!(
        how,
        "acked" | "ack_unconfirmed" | "retried" | "dead_lettered"
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn sent(t: u64, key: &str) -> Event {
        Event::Sent {
            t,
            key: key.into(),
            stream: "s".into(),
            id: format!("{t}-0"),
        }
    }

    fn started(t: u64, key: &str, id: &str, consumer: &str) -> Event {
        Event::Started {
            t,
            key: key.into(),
            stream: "s".into(),
            id: id.into(),
            consumer: consumer.into(),
            deliveries: 1,
        }
    }

    fn settled(t: u64, key: &str, id: &str, how: &str) -> Event {
        Event::Settled {
            t,
            key: key.into(),
            stream: "s".into(),
            id: id.into(),
            consumer: "c".into(),
            how: how.into(),
        }
    }

    #[test]
    fn a_clean_run_has_no_problems() {
        let c = Checker::from_events(vec![
            sent(1, "a"),
            sent(2, "b"),
            started(3, "a", "1-0", "c1"),
            settled(4, "a", "1-0", "retried"),
            started(5, "a", "9-0", "c1"),
            settled(6, "a", "9-0", "acked"),
            started(7, "b", "2-0", "c1"),
            settled(8, "b", "2-0", "dead_lettered"),
        ]);
        let r = c.check(&Final::new().dead_lettered(["b"]));
        assert_eq!((r.messages, r.acked, r.dead_lettered), (2, 1, 1));
        assert_eq!((r.lost, r.duplicated, r.double_settled), (0, 0, 0));
        assert!(r.problems().is_empty(), "{r}");
    }

    #[test]
    fn lost_duplicated_and_double_settled_are_found() {
        let c = Checker::from_events(vec![
            sent(1, "a"),
            sent(2, "b"),
            sent(3, "c"),
            started(4, "a", "1-0", "c1"),
            Event::Fault {
                t: 5,
                what: "kill c1".into(),
            },
            started(6, "a", "1-0", "c2"),
            settled(7, "a", "1-0", "acked"),
            started(8, "b", "2-0", "c2"),
            settled(9, "b", "2-0", "acked"),
            started(10, "b", "2-0", "c2"),
            settled(11, "b", "2-0", "acked"),
        ]);
        let r = c.check(&Final::new().dead_lettered(["b"]));
        assert_eq!(r.lost, 1, "{r}");
        assert_eq!(r.lost_keys, ["c"]);
        // a twice (in flight at the kill), b twice (not): 2 > 1.
        assert_eq!((r.duplicated, r.in_flight), (2, 1), "{r}");
        // b acked twice and dead-lettered.
        assert_eq!(r.double_settled_keys, ["b"]);
        assert_eq!(r.recovery, Some(Duration::from_micros(2)));
        assert_eq!(r.problems().len(), 3, "{:?}", r.problems());
    }

    #[test]
    fn sends_that_landed_twice_are_resent_not_double_settled() {
        let c = Checker::from_events(vec![
            sent(1, "a"),
            started(2, "a", "1-0", "c1"),
            started(3, "a", "1-1", "c1"),
            settled(4, "a", "1-0", "acked"),
            settled(5, "a", "1-1", "acked"),
        ]);
        let r = c.check(&Final::new());
        assert_eq!((r.resent, r.duplicated, r.double_settled), (1, 0, 0), "{r}");
        // A retry that made two copies, both acknowledged, is caught.
        let c = Checker::from_events(vec![
            sent(1, "b"),
            started(2, "b", "1-0", "c1"),
            settled(3, "b", "1-0", "retried"),
            settled(4, "b", "1-0", "retried"),
            started(5, "b", "2-0", "c1"),
            started(6, "b", "3-0", "c2"),
            settled(7, "b", "2-0", "acked"),
            settled(8, "b", "3-0", "acked"),
        ]);
        let r = c.check(&Final::new());
        assert_eq!((r.resent, r.double_settled), (0, 1), "{r}");
    }

    #[test]
    fn excused_and_earlier_sends_are_not_lost() {
        let c = Checker::from_events(vec![sent(1, "old"), sent(10, "trimmed"), sent(11, "x")]);
        let r = c.check(
            &Final::new()
                .sent_after(10)
                .excused(["trimmed"])
                .dead_lettered(["x"]),
        );
        assert_eq!((r.messages, r.lost), (2, 0), "{r}");

        // A key in flight at a fault and then trimmed is never settled:
        // recovery waits for the others only.
        let c = Checker::from_events(vec![
            sent(1, "a"),
            sent(2, "b"),
            started(3, "a", "1-0", "c1"),
            started(4, "b", "2-0", "c1"),
            Event::Fault {
                t: 5,
                what: "trim".into(),
            },
            started(6, "b", "2-0", "c2"),
            settled(9, "b", "2-0", "acked"),
        ]);
        let r = c.check(&Final::new().excused(["a"]));
        assert_eq!((r.lost, r.in_flight), (0, 2), "{r}");
        assert_eq!(r.recovery, Some(Duration::from_micros(4)));
        assert!(r.problems().is_empty(), "{r}");
    }

    #[test]
    fn an_ack_whose_reply_was_lost_is_not_a_loss() {
        let c = Checker::from_events(vec![
            sent(1, "a"),
            sent(2, "b"),
            started(3, "a", "1-0", "c1"),
            started(4, "b", "2-0", "c1"),
            Event::Fault {
                t: 5,
                what: "cut".into(),
            },
            settled(6, "a", "1-0", "ack_failed"),
            settled(7, "b", "2-0", "ack_failed"),
            // b's ack was not applied: it is delivered again.
            started(8, "b", "2-0", "c2"),
            settled(9, "b", "2-0", "acked"),
        ]);
        let r = c.check(&Final::new());
        assert_eq!((r.acked, r.unconfirmed, r.lost), (2, 1, 0), "{r}");
        assert_eq!(r.recovery, Some(Duration::from_micros(4)));
        assert!(r.problems().is_empty(), "{r}");
        // While the group holds entries, a failed ack proves nothing.
        let r = c.check(&Final::new().pending(1));
        assert_eq!((r.unconfirmed, r.lost), (0, 1), "{r}");
        // A consumer killed between its ack and recording it: its handler
        // asked for the ack, and nothing is pending.
        let finished = |t, key: &str, outcome: &str| Event::Finished {
            t,
            key: key.into(),
            stream: "s".into(),
            id: "1-0".into(),
            consumer: "c1".into(),
            outcome: outcome.into(),
        };
        let killed = |outcome: &str| {
            Checker::from_events(vec![
                sent(1, "a"),
                started(2, "a", "1-0", "c1"),
                finished(3, "a", outcome),
                Event::Fault {
                    t: 4,
                    what: "SIGKILL c1".into(),
                },
            ])
        };
        let r = killed("ack").check(&Final::new());
        assert_eq!((r.unconfirmed, r.lost), (1, 0), "{r}");
        assert_eq!(r.recovery, None, "settled before the fault: {r}");
        let r = killed("retry").check(&Final::new());
        assert_eq!((r.unconfirmed, r.lost), (0, 1), "a retry is no ack: {r}");

        // A failed move is not an ack; unless it shows in the dead-letter
        // queue, the message is lost.
        let c = Checker::from_events(vec![
            sent(1, "a"),
            started(2, "a", "1-0", "c1"),
            Event::Fault {
                t: 3,
                what: "cut".into(),
            },
            settled(4, "a", "1-0", "failed"),
        ]);
        assert_eq!(c.check(&Final::new()).lost, 1);
        let r = c.check(&Final::new().dead_lettered(["a"]));
        assert_eq!((r.lost, r.dead_lettered), (0, 1), "{r}");
        assert_eq!(r.recovery, Some(Duration::from_micros(1)));
    }

    #[test]
    #[should_panic(expected = "no fault was injected")]
    fn a_scenario_without_its_fault_fails() {
        Checker::default().check(&Final::new()).assert_ok("nothing");
    }

    #[test]
    fn recorded_histories_load_and_skip_a_torn_last_line() {
        let dir = std::env::temp_dir().join(format!("checker-test-{}", std::process::id()));
        let r = Recorder::create(&dir, "p").unwrap();
        r.sent("k", "s", "1-0");
        r.fault("kill");
        drop(r);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join("p.jsonl"))
            .unwrap();
        f.write_all(b"{\"ev\":\"sent\",\"t\":9,\"ke").unwrap();
        let c = Checker::load(&dir).unwrap();
        assert_eq!(c.events().len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
