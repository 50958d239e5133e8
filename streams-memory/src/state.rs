//! The data model: one keyspace whose keys hold a stream, a schedule (a
//! sorted set in Redis), a hash or a short-lived string (a readiness
//! probe), and the type checks Redis makes on it.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use streams_core::backend::Trim;
use streams_core::{Entry, Fields};
use tokio::sync::Notify;

use crate::error::Error;
use crate::group::{Entries, Group};
use crate::id::{StreamId, Tick, wall_ms};
use crate::packed::{Arena, Packed};

/// What blocked readers of a stream wait on, and how many there are: an
/// add raises the signal only when someone waits.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    notify: Notify,
    waiting: AtomicUsize,
}

impl Signal {
    /// Wakes every reader waiting now.
    pub(crate) fn wake(&self) {
        self.notify.notify_waiters();
    }

    /// The wait of one reader (see [`Waiting`]).
    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    fn has_waiters(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }
}

/// A reader's registration on the signals it waits on, from before its
/// last look at the streams until it stops waiting. Adds made under the
/// lock after that look see it, so none is missed; adds nobody waits for
/// raise nothing.
#[derive(Debug)]
pub(crate) struct Waiting<'a>(&'a [Arc<Signal>]);

impl<'a> Waiting<'a> {
    pub(crate) fn new(signals: &'a [Arc<Signal>]) -> Self {
        for s in signals {
            s.waiting.fetch_add(1, Ordering::SeqCst);
        }
        Self(signals)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        for s in self.0 {
            s.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The time of one command, read once so that everything it does agrees
/// (Redis' command time snapshot). Each clock is read on first use: an
/// acknowledgement reads none, an add only the wall clock.
#[derive(Debug, Default)]
pub(crate) struct Now {
    ms: Cell<Option<u64>>,
    tick: Cell<Option<Tick>>,
}

impl Now {
    /// The time of a command starting now.
    pub(crate) fn read() -> Self {
        Self::default()
    }

    /// A fixed time (tests).
    #[cfg(test)]
    pub(crate) fn at(ms: u64, tick: Tick) -> Self {
        Self {
            ms: Cell::new(Some(ms)),
            tick: Cell::new(Some(tick)),
        }
    }

    /// Wall time in ms: what new ids and `MINID` trims use.
    pub(crate) fn ms(&self) -> u64 {
        self.ms.get().unwrap_or_else(|| {
            let ms = wall_ms();
            self.ms.set(Some(ms));
            ms
        })
    }

    /// Monotonic time: what idle and due times use.
    pub(crate) fn tick(&self) -> Tick {
        self.tick.get().unwrap_or_else(|| {
            let tick = Tick::now();
            self.tick.set(Some(tick));
            tick
        })
    }
}

/// A stream: entries, the last id ever given (deleting entries never lowers
/// it), its groups, the signal blocked readers wait on, and where its
/// entries are packed.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) entries: Entries,
    pub(crate) last_id: StreamId,
    pub(crate) groups: BTreeMap<String, Group>,
    pub(crate) added: Arc<Signal>,
    arena: Arena,
}

impl Stream {
    fn new() -> Self {
        Self {
            entries: Entries::default(),
            last_id: StreamId::MIN,
            groups: BTreeMap::new(),
            added: Arc::default(),
            arena: Arena::default(),
        }
    }

    /// Packs an entry's fields for this stream.
    pub(crate) fn pack(&mut self, fields: &[(Bytes, Bytes)]) -> Packed {
        self.arena.pack(fields)
    }

    /// Applies one trim; returns how many entries it removed. Pending
    /// entries lists are left alone, as in Redis.
    pub(crate) fn trim(&mut self, trim: Trim, now_ms: u64) -> Result<u64, Error> {
        Ok(match trim {
            // Trimming exactly is within what `approx` allows.
            Trim::MaxLen { len, .. } => {
                let mut removed = 0;
                while self.entries.len() as u64 > len && self.entries.pop_first().is_some() {
                    removed += 1;
                }
                removed
            }
            Trim::MaxAge { age, .. } => {
                let age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
                let min_id = StreamId::new(now_ms.saturating_sub(age_ms), 0);
                self.entries.remove_below(min_id)
            }
            _ => return Err(Error::UnknownTrim),
        })
    }

    /// `XRANGE` over `[lo, hi]` (`XREVRANGE` with `newest_first`).
    pub(crate) fn range(
        &self,
        (lo, hi): (StreamId, StreamId),
        count: usize,
        newest_first: bool,
    ) -> Vec<Entry> {
        let entry =
            |(id, packed): (StreamId, &Packed)| Entry::new(id.to_entry_id(), packed.fields());
        let range = self.entries.range(lo, hi);
        if newest_first {
            range.rev().take(count).map(entry).collect()
        } else {
            range.take(count).map(entry).collect()
        }
    }
}

/// Scheduled entries by due time; equal due times keep insertion order.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    items: BTreeMap<(Tick, u64), Fields>,
    inserted: u64,
}

impl Schedule {
    pub(crate) fn push(&mut self, due: Tick, fields: Fields) {
        self.inserted += 1;
        self.items.insert((due, self.inserted), fields);
    }

    /// Takes the earliest item if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Tick) -> Option<((Tick, u64), Fields)> {
        let first = self.items.first_entry()?;
        if first.key().0 > now {
            return None;
        }
        Some(first.remove_entry())
    }

    /// Puts back an item taken by [`pop_due`](Self::pop_due).
    pub(crate) fn restore(&mut self, key: (Tick, u64), fields: Fields) {
        self.items.insert(key, fields);
    }

    /// Time until the earliest item is due (zero if it is), if any.
    pub(crate) fn next_due_in(&self, now: Tick) -> Option<Duration> {
        self.items.keys().next().map(|(due, _)| due.since(now))
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }
}

/// What a key holds.
#[derive(Debug)]
pub(crate) enum Value {
    Stream(Stream),
    Schedule(Schedule),
    Hash(BTreeMap<String, String>),
    /// A string with an expiry (`SET key value PX ttl`); gone once expired.
    /// No command reads its value, so only the expiry is kept.
    Expiring {
        expires: Tick,
    },
}

const STREAM: &str = "stream";
const SCHEDULE: &str = "sorted set";
const HASH: &str = "hash";
const STRING: &str = "string";

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Self::Stream(_) => STREAM,
            Self::Schedule(_) => SCHEDULE,
            Self::Hash(_) => HASH,
            Self::Expiring { .. } => STRING,
        }
    }

    /// Whether the value has expired: Redis treats such a key as missing
    /// from then on.
    fn expired(&self) -> bool {
        matches!(self, Self::Expiring { expires, .. } if *expires <= Tick::now())
    }
}

fn wrong_type(key: &str, found: &Value, wanted: &'static str) -> Error {
    Error::WrongType {
        key: key.to_owned(),
        found: found.kind(),
        wanted,
    }
}

/// Generates the three typed accessors of one kind of value: shared, mutable,
/// and mutable-creating-if-missing. Each fails with `WRONGTYPE` on another kind.
macro_rules! accessors {
    ($get:ident, $get_mut:ident, $entry:ident, $variant:ident, $ty:ty, $kind:expr, $new:expr) => {
        pub(crate) fn $get(&self, key: &str) -> Result<Option<&$ty>, Error> {
            match self.keys.get(key) {
                None => Ok(None),
                Some(Value::$variant(v)) => Ok(Some(v)),
                Some(other) if other.expired() => Ok(None),
                Some(other) => Err(wrong_type(key, other, $kind)),
            }
        }

        #[allow(dead_code, reason = "not every kind needs every accessor")]
        pub(crate) fn $get_mut(&mut self, key: &str) -> Result<Option<&mut $ty>, Error> {
            match self.keys.get_mut(key) {
                None => Ok(None),
                Some(Value::$variant(v)) => Ok(Some(v)),
                Some(other) if other.expired() => Ok(None),
                Some(other) => Err(wrong_type(key, other, $kind)),
            }
        }

        pub(crate) fn $entry(&mut self, key: &str) -> Result<&mut $ty, Error> {
            // Look up first: most calls find the key, and inserting needs
            // an owned copy of it. An expired value is replaced.
            if !self.keys.get(key).is_some_and(|v| !v.expired()) {
                self.keys.insert(key.to_owned(), Value::$variant($new));
            }
            match self.keys.get_mut(key) {
                Some(Value::$variant(v)) => Ok(v),
                Some(other) => Err(wrong_type(key, other, $kind)),
                None => Err(Error::Vanished {
                    key: key.to_owned(),
                }),
            }
        }
    };
}

/// Every key. One lock guards it, which makes every command atomic, as
/// Redis' single thread does.
#[derive(Debug, Default)]
pub(crate) struct Keyspace {
    keys: HashMap<String, Value>,
    /// Signals of streams that received entries during the current command
    /// while readers waited, raised once the lock is released.
    wakes: Vec<Arc<Signal>>,
}

impl Keyspace {
    accessors!(
        stream,
        stream_mut,
        stream_entry,
        Stream,
        Stream,
        STREAM,
        Stream::new()
    );
    accessors!(
        schedule,
        schedule_mut,
        schedule_entry,
        Schedule,
        Schedule,
        SCHEDULE,
        Schedule::default()
    );
    accessors!(hash, hash_mut, hash_entry, Hash, BTreeMap<String, String>, HASH, BTreeMap::new());

    /// Fails unless `key` is missing or a stream; never creates it.
    pub(crate) fn check_stream(&self, key: &str) -> Result<(), Error> {
        self.stream(key).map(|_| ())
    }

    /// Deletes a key of any kind; whether it existed.
    pub(crate) fn delete(&mut self, key: &str) -> bool {
        self.keys.remove(key).is_some_and(|v| !v.expired())
    }

    /// `SET key value PX ttl`: replaces whatever `key` held with a string
    /// that expires after `ttl` (at least 1 ms).
    pub(crate) fn set_expiring(&mut self, key: &str, ttl: Duration, now: Tick) {
        let expires = now.plus(ttl.max(Duration::from_millis(1)));
        self.keys
            .insert(key.to_owned(), Value::Expiring { expires });
    }

    /// Removes a schedule that has become empty: Redis deletes empty sorted
    /// sets (streams, by contrast, stay when empty).
    pub(crate) fn drop_if_empty(&mut self, key: &str) {
        if matches!(self.keys.get(key), Some(Value::Schedule(s)) if s.len() == 0) {
            self.keys.remove(key);
        }
    }

    /// `XADD key * fields...` followed by `trims`, creating the stream.
    /// Nothing changes when it fails.
    pub(crate) fn add_entry(
        &mut self,
        key: &str,
        fields: &[(Bytes, Bytes)],
        trims: &[Trim],
        now: &Now,
    ) -> Result<StreamId, Error> {
        if fields.is_empty() {
            return Err(Error::NoFields {
                key: key.to_owned(),
            });
        }
        if trims
            .iter()
            .any(|t| !matches!(t, Trim::MaxLen { .. } | Trim::MaxAge { .. }))
        {
            return Err(Error::UnknownTrim);
        }
        let stream = self.stream_entry(key)?;
        let id =
            StreamId::next_after(stream.last_id, now.ms()).ok_or_else(|| Error::IdsExhausted {
                key: key.to_owned(),
            })?;
        let packed = stream.pack(fields);
        stream.entries.insert(id, packed);
        stream.last_id = id;
        for trim in trims {
            stream.trim(*trim, now.ms())?;
        }
        let signal = stream
            .added
            .has_waiters()
            .then(|| Arc::clone(&stream.added));
        if let Some(signal) = signal {
            if !self.wakes.iter().any(|w| Arc::ptr_eq(w, &signal)) {
                self.wakes.push(signal);
            }
        }
        Ok(id)
    }

    /// The signals to raise for the entries added since the last call.
    pub(crate) fn take_wakes(&mut self) -> Vec<Arc<Signal>> {
        std::mem::take(&mut self.wakes)
    }

    /// The signal a blocked reader of `key` waits on, if it is a stream.
    pub(crate) fn added_signal(&self, key: &str) -> Option<Arc<Signal>> {
        match self.keys.get(key) {
            Some(Value::Stream(s)) => Some(Arc::clone(&s.added)),
            _ => None,
        }
    }

    /// The keys holding streams that start with `prefix`, sorted.
    pub(crate) fn stream_keys(&self, prefix: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .keys
            .iter()
            .filter(|(k, v)| k.starts_with(prefix) && matches!(v, Value::Stream(_)))
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    /// Numbers of streams, schedules and hashes (strings are not counted).
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        self.keys
            .values()
            .fold((0, 0, 0), |(st, sc, h), v| match v {
                Value::Stream(_) => (st + 1, sc, h),
                Value::Schedule(_) => (st, sc + 1, h),
                Value::Hash(_) => (st, sc, h + 1),
                Value::Expiring { .. } => (st, sc, h),
            })
    }

    /// The group `group` of stream `key`, or `NOGROUP`.
    pub(crate) fn group_mut(
        &mut self,
        key: &str,
        group: &str,
    ) -> Result<(&mut Group, &mut Entries), Error> {
        let no_group = || Error::NoGroup {
            stream: key.to_owned(),
            group: group.to_owned(),
        };
        let stream = self.stream_mut(key)?.ok_or_else(no_group)?;
        let Stream {
            entries, groups, ..
        } = stream;
        let g = groups.get_mut(group).ok_or_else(no_group)?;
        Ok((g, entries))
    }

    /// Shared form of [`group_mut`](Self::group_mut).
    pub(crate) fn group(&self, key: &str, group: &str) -> Result<(&Group, &Entries), Error> {
        let no_group = || Error::NoGroup {
            stream: key.to_owned(),
            group: group.to_owned(),
        };
        let stream = self.stream(key)?.ok_or_else(no_group)?;
        let g = stream.groups.get(group).ok_or_else(no_group)?;
        Ok((g, &stream.entries))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn fields(v: &'static str) -> Fields {
        vec![(Bytes::from_static(b"k"), Bytes::from_static(v.as_bytes()))]
    }

    #[test]
    fn ids_increase_within_one_millisecond() {
        let mut ks = Keyspace::default();
        let now = Now::read();
        let a = ks.add_entry("s", &fields("a"), &[], &now).unwrap();
        let b = ks.add_entry("s", &fields("b"), &[], &now).unwrap();
        let c = ks.add_entry("s", &fields("c"), &[], &now).unwrap();
        assert_eq!((a.ms, b.ms, c.ms), (now.ms(), now.ms(), now.ms()));
        assert_eq!((a.seq, b.seq, c.seq), (0, 1, 2));
        // A clock that went back keeps the last millisecond.
        let earlier = Now::at(now.ms() - 1000, now.tick());
        let d = ks.add_entry("s", &fields("d"), &[], &earlier).unwrap();
        assert_eq!(d, StreamId::new(now.ms(), 3));
    }

    #[test]
    fn deleting_the_last_entry_never_reuses_its_id() {
        let mut ks = Keyspace::default();
        let now = Now::read();
        let a = ks.add_entry("s", &fields("a"), &[], &now).unwrap();
        ks.stream_mut("s").unwrap().unwrap().entries.remove(&a);
        let b = ks.add_entry("s", &fields("b"), &[], &now).unwrap();
        assert!(b > a);
    }

    #[test]
    fn empty_entries_are_refused_and_create_nothing() {
        let mut ks = Keyspace::default();
        let err = ks
            .add_entry("s", &Vec::new(), &[], &Now::read())
            .unwrap_err();
        assert!(matches!(err, Error::NoFields { .. }));
        assert!(ks.stream("s").unwrap().is_none());
    }

    #[test]
    fn keys_have_one_type() {
        let mut ks = Keyspace::default();
        ks.hash_entry("h").unwrap().insert("f".into(), "v".into());
        let err = ks
            .add_entry("h", &fields("a"), &[], &Now::read())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "key `h` holds a hash, not a stream (WRONGTYPE)"
        );
        assert!(ks.schedule("h").is_err());
        ks.add_entry("s", &fields("a"), &[], &Now::read()).unwrap();
        assert!(ks.hash_mut("s").is_err());
        assert!(ks.schedule_entry("s").is_err());
        assert_eq!(ks.counts(), (1, 0, 1));
    }

    #[test]
    fn trims_by_length_and_age() {
        let mut ks = Keyspace::default();
        let now = Now::read();
        for v in ["a", "b", "c", "d", "e"] {
            ks.add_entry("s", &fields(v), &[], &now).unwrap();
        }
        let s = ks.stream_mut("s").unwrap().unwrap();
        assert_eq!(
            s.trim(
                Trim::MaxLen {
                    len: 3,
                    approx: true
                },
                now.ms()
            ),
            Ok(2)
        );
        assert_eq!(s.entries.len(), 3);
        assert_eq!(
            s.trim(
                Trim::MaxLen {
                    len: 5,
                    approx: false
                },
                now.ms()
            ),
            Ok(0)
        );
        let age = Duration::from_secs(60);
        assert_eq!(s.trim(Trim::MaxAge { age, approx: false }, now.ms()), Ok(0));
        let later = now.ms() + 61_000;
        assert_eq!(s.trim(Trim::MaxAge { age, approx: true }, later), Ok(3));
        assert_eq!(s.entries.len(), 0);
        // The stream stays, empty, with its last id.
        assert!(s.last_id > StreamId::MIN);
        // An age longer than the epoch removes nothing.
        let forever = Duration::from_secs(u64::MAX);
        assert_eq!(
            s.trim(
                Trim::MaxAge {
                    age: forever,
                    approx: false
                },
                now.ms()
            ),
            Ok(0)
        );
    }

    #[test]
    fn add_applies_trims() {
        let mut ks = Keyspace::default();
        let trim = [Trim::MaxLen {
            len: 2,
            approx: true,
        }];
        ks.add_entry("s", &fields("a"), &trim, &Now::read())
            .unwrap();
        // Nobody waits: nothing to wake.
        assert!(ks.take_wakes().is_empty());
        let signals = [ks.added_signal("s").unwrap()];
        let waiting = Waiting::new(&signals);
        for v in ["b", "c"] {
            ks.add_entry("s", &fields(v), &trim, &Now::read()).unwrap();
        }
        let s = ks.stream("s").unwrap().unwrap();
        let kept: Vec<_> = s.range((StreamId::MIN, StreamId::MAX), 10, false);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].fields, fields("b"));
        assert_eq!(ks.take_wakes().len(), 1, "one signal per stream");
        assert!(ks.take_wakes().is_empty());
        drop(waiting);
        ks.add_entry("s", &fields("d"), &trim, &Now::read())
            .unwrap();
        assert!(ks.take_wakes().is_empty());
    }

    #[test]
    fn schedule_orders_by_due_then_insertion() {
        let mut s = Schedule::default();
        let now = Tick::now();
        s.push(now.plus(Duration::from_secs(5)), fields("late"));
        s.push(now, fields("first"));
        s.push(now, fields("second"));
        assert_eq!(s.pop_due(now).map(|(_, f)| f), Some(fields("first")));
        assert_eq!(s.pop_due(now).map(|(_, f)| f), Some(fields("second")));
        assert!(s.pop_due(now).is_none());
        let left = s.next_due_in(now).unwrap();
        assert!(left > Duration::from_secs(4) && left <= Duration::from_secs(5));
        assert_eq!(
            s.next_due_in(now.plus(Duration::from_secs(9))),
            Some(Duration::ZERO)
        );
    }
}
