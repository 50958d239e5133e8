//! A stream's entries in id order: a deque of slots, appended at the back
//! (new ids are always the greatest), trimmed at the front, looked up by
//! binary search. An entry deleted from the middle leaves a tombstone,
//! dropped when it reaches an end or when tombstones outnumber the entries
//! (as Redis marks deleted entries in a listpack and reclaims the node once
//! it is empty).

use std::collections::VecDeque;

use crate::id::StreamId;
use crate::packed::Packed;

#[derive(Debug, Clone)]
struct Slot {
    id: StreamId,
    /// `None`: deleted.
    packed: Option<Packed>,
}

/// A stream's entries.
#[derive(Debug, Clone, Default)]
pub(crate) struct Entries {
    slots: VecDeque<Slot>,
    live: usize,
    /// Slots ever removed from the front: a slot's logical index is its
    /// place in the deque plus this.
    popped: u64,
    /// Changes whenever slots move other than at the front (compaction, an
    /// insertion in the middle), which invalidates every [`Hint`].
    epoch: u64,
}

/// Where a reader was: the logical index of the slot it read last, so that
/// its next read starts there without a search (a group's cursor moves
/// forward one read at a time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hint {
    epoch: u64,
    at: u64,
}

impl Default for Hint {
    fn default() -> Self {
        Self {
            epoch: u64::MAX,
            at: 0,
        }
    }
}

/// Tombstones tolerated before a compaction, at least.
const MIN_TOMBSTONES: usize = 64;

impl Entries {
    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// The index of the first slot whose id is not below `id`.
    fn lower_bound(&self, id: StreamId) -> usize {
        self.slots.partition_point(|s| s.id < id)
    }

    fn find(&self, id: StreamId) -> Option<usize> {
        let i = self.lower_bound(id);
        self.slots
            .get(i)
            .is_some_and(|s| s.id == id && s.packed.is_some())
            .then_some(i)
    }

    /// Adds an entry. Ids normally come in increasing order (appended);
    /// any other is put in its place.
    pub(crate) fn insert(&mut self, id: StreamId, packed: Packed) {
        let slot = Slot {
            id,
            packed: Some(packed),
        };
        match self.slots.back() {
            Some(last) if last.id >= id => {
                let i = self.lower_bound(id);
                match self.slots.get_mut(i) {
                    Some(s) if s.id == id => {
                        if s.packed.is_none() {
                            self.live += 1;
                        }
                        *s = slot;
                    }
                    _ => {
                        self.slots.insert(i, slot);
                        self.live += 1;
                        self.epoch = self.epoch.wrapping_add(1);
                    }
                }
            }
            _ => {
                self.slots.push_back(slot);
                self.live += 1;
            }
        }
    }

    /// The entry with this id.
    pub(crate) fn get(&self, id: &StreamId) -> Option<&Packed> {
        self.find(*id)
            .and_then(|i| self.slots.get(i))
            .and_then(|s| s.packed.as_ref())
    }

    /// Whether the entry exists.
    pub(crate) fn contains_key(&self, id: &StreamId) -> bool {
        self.find(*id).is_some()
    }

    /// Deletes an entry; returns it if it existed.
    pub(crate) fn remove(&mut self, id: &StreamId) -> Option<Packed> {
        let i = self.find(*id)?;
        let packed = self.slots.get_mut(i)?.packed.take()?;
        self.live -= 1;
        self.tidy();
        Some(packed)
    }

    /// Removes and returns the first entry.
    pub(crate) fn pop_first(&mut self) -> Option<(StreamId, Packed)> {
        while let Some(slot) = self.slots.pop_front() {
            self.popped += 1;
            if let Some(packed) = slot.packed {
                self.live -= 1;
                self.tidy();
                return Some((slot.id, packed));
            }
        }
        None
    }

    /// Removes every entry below `min`; returns how many.
    pub(crate) fn remove_below(&mut self, min: StreamId) -> u64 {
        let mut removed = 0;
        while self.slots.front().is_some_and(|s| s.id < min) {
            if let Some(slot) = self.slots.pop_front() {
                self.popped += 1;
                if slot.packed.is_some() {
                    self.live -= 1;
                    removed += 1;
                }
            }
        }
        self.tidy();
        removed
    }

    /// Entries with ids above `id`, in order.
    #[cfg(test)]
    pub(crate) fn after(&self, id: StreamId) -> impl Iterator<Item = (StreamId, &Packed)> + '_ {
        self.after_hinted(id, Hint::default())
            .map(|(_, id, packed)| (id, packed))
    }

    /// The place of the first slot above `id`: right after the hint's slot
    /// when the hint still says where `id` is, else found by search.
    fn start_after(&self, id: StreamId, hint: Hint) -> usize {
        if hint.epoch == self.epoch {
            if hint.at < self.popped {
                // The hinted slot was trimmed away: start at the front if
                // everything left is above `id`.
                if self.slots.front().is_none_or(|s| s.id > id) {
                    return 0;
                }
            } else if let Ok(i) = usize::try_from(hint.at - self.popped) {
                let here = self.slots.get(i).is_some_and(|s| s.id <= id);
                let next_above = self.slots.get(i + 1).is_none_or(|s| s.id > id);
                if here && next_above {
                    return i + 1;
                }
            }
        }
        self.slots.partition_point(|s| s.id <= id)
    }

    /// [`after`](Self::after), starting from a reader's hint; yields each
    /// entry's hint too, for the reader's next call.
    pub(crate) fn after_hinted(
        &self,
        id: StreamId,
        hint: Hint,
    ) -> impl Iterator<Item = (Hint, StreamId, &Packed)> + '_ {
        let from = self.start_after(id, hint);
        let (epoch, popped) = (self.epoch, self.popped);
        self.slots
            .range(from..)
            .zip(from..)
            .filter_map(move |(s, i)| {
                let hint = Hint {
                    epoch,
                    at: popped + i as u64,
                };
                s.packed.as_ref().map(|p| (hint, s.id, p))
            })
    }

    /// Entries with ids in `[lo, hi]`, in order (reversible).
    pub(crate) fn range(
        &self,
        lo: StreamId,
        hi: StreamId,
    ) -> impl DoubleEndedIterator<Item = (StreamId, &Packed)> + '_ {
        let from = self.lower_bound(lo);
        let to = self.slots.partition_point(|s| s.id <= hi).max(from);
        self.slots
            .range(from..to)
            .filter_map(|s| s.packed.as_ref().map(|p| (s.id, p)))
    }

    /// Drops tombstones at the ends, compacts when they outnumber the
    /// entries, and gives back memory a much shorter stream no longer needs.
    fn tidy(&mut self) {
        while self.slots.front().is_some_and(|s| s.packed.is_none()) {
            self.slots.pop_front();
        }
        while self.slots.back().is_some_and(|s| s.packed.is_none()) {
            self.slots.pop_back();
        }
        let tombstones = self.slots.len() - self.live;
        if tombstones > MIN_TOMBSTONES.max(self.live) {
            self.slots.retain(|s| s.packed.is_some());
            self.epoch = self.epoch.wrapping_add(1);
        }
        let cap = self.slots.capacity();
        if cap > 1024 && cap > 4 * self.slots.len() {
            self.slots.shrink_to(2 * self.slots.len());
        }
    }
}

impl FromIterator<(StreamId, Packed)> for Entries {
    fn from_iter<I: IntoIterator<Item = (StreamId, Packed)>>(iter: I) -> Self {
        let mut entries = Self::default();
        for (id, packed) in iter {
            entries.insert(id, packed);
        }
        entries
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::packed::Arena;

    fn id(n: u64) -> StreamId {
        StreamId::new(n, 0)
    }

    fn filled(n: u64) -> Entries {
        let mut arena = Arena::default();
        (1..=n)
            .map(|i| {
                let fields = [(Bytes::from("n"), Bytes::from(i.to_string()))];
                (id(i), arena.pack(&fields))
            })
            .collect()
    }

    fn ids<'a>(it: impl Iterator<Item = (StreamId, &'a Packed)>) -> Vec<u64> {
        it.map(|(id, _)| id.ms).collect()
    }

    #[test]
    fn ordered_lookups_and_tombstones() {
        let mut e = filled(10);
        assert_eq!(e.len(), 10);
        assert!(e.contains_key(&id(3)));
        assert!(e.remove(&id(3)).is_some());
        assert!(e.remove(&id(3)).is_none());
        assert!(!e.contains_key(&id(3)));
        assert!(e.get(&id(3)).is_none());
        assert_eq!(e.len(), 9);
        assert_eq!(ids(e.after(id(1))), [2, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(ids(e.after(StreamId::new(2, 5))), [4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(ids(e.range(id(2), id(5))), [2, 4, 5]);
        assert_eq!(ids(e.range(id(2), id(5)).rev()), [5, 4, 2]);
        assert_eq!(ids(e.range(id(6), id(5))), Vec::<u64>::new());
        assert_eq!(e.pop_first().map(|(i, _)| i.ms), Some(1));
        assert_eq!(e.remove_below(id(6)), 3);
        assert_eq!(ids(e.after(StreamId::MIN)), [6, 7, 8, 9, 10]);
        assert!(e.remove(&id(10)).is_some());
        assert_eq!(e.len(), 4);
        // An id below the last goes in its place.
        let mut arena = Arena::default();
        e.insert(id(7), arena.pack(&[]));
        e.insert(StreamId::new(7, 1), arena.pack(&[]));
        assert_eq!(e.len(), 5);
        assert_eq!(ids(e.after(StreamId::MIN)), [6, 7, 7, 8, 9]);
    }

    #[test]
    fn hints_follow_a_cursor() {
        let mut e = filled(100);
        let first: Vec<_> = e.after_hinted(id(10), Hint::default()).take(5).collect();
        let (hint, last, _) = first[4];
        assert_eq!(last, id(15));
        assert_eq!(e.start_after(last, hint), 15);
        // Trimmed from the front: still right.
        e.remove_below(id(12));
        assert_eq!(e.start_after(last, hint), 4);
        let next: Vec<_> = e
            .after_hinted(last, hint)
            .map(|(_, i, _)| i.ms)
            .take(2)
            .collect();
        assert_eq!(next, [16, 17]);
        // Trimmed past the hint: the front.
        e.remove_below(id(20));
        assert_eq!(e.start_after(last, hint), 0);
        // A wrong hint is not trusted.
        let wrong = Hint {
            epoch: hint.epoch,
            at: hint.at + 30,
        };
        assert_eq!(e.start_after(last, wrong), 0);
        assert_eq!(e.start_after(id(50), wrong), 31);
        // Compaction invalidates hints.
        let mut e = filled(300);
        let (hint, last, _) = e.after_hinted(id(260), Hint::default()).next().unwrap();
        for i in 50..250 {
            e.remove(&id(i));
        }
        assert_ne!(e.epoch, hint.epoch);
        let next = e.after_hinted(last, hint).map(|(_, i, p)| (i, p));
        assert_eq!(ids(next).first(), Some(&262));
    }

    #[test]
    fn compacts_and_shrinks() {
        let mut e = filled(5000);
        for i in (2..5000).step_by(2) {
            e.remove(&id(i));
        }
        for i in (1..4000).step_by(2) {
            e.remove(&id(i));
        }
        assert_eq!(e.len(), 501);
        assert!(e.slots.len() < 1100, "{}", e.slots.len());
        assert_eq!(ids(e.after(StreamId::MIN)).len(), 501);
        while e.pop_first().is_some() {}
        assert_eq!(e.len(), 0);
        assert!(e.slots.capacity() <= 1024 * 4);
    }
}
