//! The commands that touch several parts of the keyspace at once, each run
//! whole under the keyspace lock: group creation, group reads,
//! acknowledgement, atomic moves and the promotion of due retries.

use streams_core::EntryId;
use streams_core::backend::{
    KeyEntries, Move, MoveOutcome, MoveTarget, Promotion, StartAt, Transfer, TransferOutcome,
};

use crate::error::Error;
use crate::group::Group;
use crate::id::StreamId;
use crate::state::{Keyspace, Now};

/// Keys (and ids) a command handles without allocating for them.
pub(crate) const SMALL: usize = 8;

/// Parses every id of a command before it changes anything, as Redis does.
pub(crate) fn parse_ids(ids: &[EntryId]) -> Result<Vec<StreamId>, Error> {
    ids.iter().map(StreamId::of).collect()
}

/// Parses every id, then calls `f` with them: on the stack for up to
/// [`SMALL`] ids (an ack of one message allocates nothing).
pub(crate) fn with_ids<T>(
    ids: &[EntryId],
    f: impl FnOnce(&[StreamId]) -> Result<T, Error>,
) -> Result<T, Error> {
    if ids.len() <= SMALL {
        let mut parsed = [StreamId::MIN; SMALL];
        for (slot, id) in parsed.iter_mut().zip(ids) {
            *slot = StreamId::of(id)?;
        }
        f(&parsed[..ids.len()])
    } else {
        f(&parse_ids(ids)?)
    }
}

impl Keyspace {
    /// `XGROUP CREATE key group start MKSTREAM`; `false` if the group exists.
    /// `After(id)` starts after `id` if the stream has given out that id
    /// (its history reaches it), else at the beginning.
    pub(crate) fn create_group(
        &mut self,
        key: &str,
        group: &str,
        start: &StartAt,
    ) -> Result<bool, Error> {
        self.check_stream(key)?;
        let after = match start {
            StartAt::After(id) => Some(StreamId::of(id)?),
            _ => None,
        };
        let stream = self.stream_entry(key)?;
        if stream.groups.contains_key(group) {
            return Ok(false);
        }
        let last = match (start, after) {
            (StartAt::End, _) => stream.last_id,
            (_, Some(id)) if id <= stream.last_id => id,
            _ => StreamId::MIN,
        };
        stream.groups.insert(group.to_owned(), Group::new(last));
        Ok(true)
    }

    /// `XGROUP DESTROY`; whether the group existed.
    pub(crate) fn destroy_group(&mut self, key: &str, group: &str) -> Result<bool, Error> {
        Ok(self
            .stream_mut(key)?
            .is_some_and(|s| s.groups.remove(group).is_some()))
    }

    /// One non-blocking group read of at most `count` entries in total,
    /// shared fairly: each round gives every key still in play its share
    /// of what is left (the remainder goes to the keys that have had the
    /// least, the first listed first), and keys that cannot fill their
    /// share leave the next round to the others.
    /// Every key's group is checked before anything is delivered; keys
    /// with nothing to return are left out.
    ///
    /// Allocates only what it returns (for up to [`SMALL`] keys).
    pub(crate) fn read_group(
        &mut self,
        group: &str,
        consumer: &str,
        keys: &[String],
        count: usize,
        now: &Now,
    ) -> Result<Vec<KeyEntries>, Error> {
        for key in keys {
            self.group(key, group)?;
        }
        let count = count.max(1);
        let k = keys.len();
        let (mut received_small, mut active_small, mut reply_small) =
            ([0usize; SMALL], [0usize; SMALL], [usize::MAX; SMALL]);
        let (mut received_large, mut active_large, mut reply_large);
        let (received, active, reply_of): (&mut [usize], &mut [usize], &mut [usize]) = if k <= SMALL
        {
            (
                &mut received_small[..k],
                &mut active_small[..k],
                &mut reply_small[..k],
            )
        } else {
            received_large = vec![0; k];
            active_large = vec![0; k];
            reply_large = vec![usize::MAX; k];
            (&mut received_large, &mut active_large, &mut reply_large)
        };
        for (i, a) in active.iter_mut().enumerate() {
            *a = i;
        }
        let mut live = k;
        let mut replies: Vec<KeyEntries> = Vec::new();
        let mut remaining = count;
        while remaining > 0 && live > 0 {
            // The remainder goes to the keys that have had the least so far,
            // in the order listed.
            active[..live].sort_unstable_by_key(|&i| (received[i], i));
            let (base, extra) = (remaining / live, remaining % live);
            let mut kept = 0;
            for turn in 0..live {
                let i = active[turn];
                let want = base + usize::from(turn < extra);
                if want == 0 {
                    active[kept] = i;
                    kept += 1;
                    continue;
                }
                let (g, entries) = self.group_mut(&keys[i], group)?;
                let got = if g.has_new(entries) {
                    if reply_of[i] == usize::MAX {
                        reply_of[i] = replies.len();
                        let mut reply = KeyEntries::new(keys[i].as_str());
                        reply.entries = Vec::with_capacity(remaining.min(entries.len()));
                        replies.push(reply);
                    }
                    let out = &mut replies[reply_of[i]].entries;
                    g.read_new(entries, consumer, want, now.tick(), out)
                } else {
                    0
                };
                remaining -= got;
                received[i] += got;
                if got == want {
                    active[kept] = i;
                    kept += 1;
                }
            }
            live = kept;
        }
        // Replies come in the order the keys were listed.
        if replies.len() > 1 && !reply_of.iter().filter(|r| **r != usize::MAX).is_sorted() {
            let mut ordered = Vec::with_capacity(replies.len());
            for &r in reply_of.iter().filter(|r| **r != usize::MAX) {
                ordered.push(std::mem::take(&mut replies[r]));
            }
            replies = ordered;
        }
        Ok(replies)
    }

    /// `XACK` (then `XDEL` with `delete`); unknown keys, groups and ids count 0.
    pub(crate) fn ack(
        &mut self,
        key: &str,
        group: &str,
        ids: &[EntryId],
        delete: bool,
    ) -> Result<u64, Error> {
        with_ids(ids, |ids| {
            let Some(stream) = self.stream_mut(key)? else {
                return Ok(0);
            };
            let acked = match stream.groups.get_mut(group) {
                Some(g) => ids.iter().filter(|id| g.ack(**id)).count() as u64,
                None => 0,
            };
            if delete {
                for id in ids {
                    stream.entries.remove(id);
                }
            }
            Ok(acked)
        })
    }

    /// Writes the new copy and acknowledges the old one, after the fencing
    /// checks. Nothing is written when it is refused or fails.
    pub(crate) fn move_entry(&mut self, mv: Move, now: &Now) -> Result<MoveOutcome, Error> {
        let id = StreamId::of(&mv.id)?;
        let owner = self
            .stream(&mv.source)?
            .and_then(|s| s.groups.get(&mv.group))
            .and_then(|g| g.owner(id));
        let Some(owner) = owner else {
            return Ok(MoveOutcome::NotPending);
        };
        if let Some(consumer) = &mv.consumer {
            if owner != consumer {
                return Ok(MoveOutcome::OwnedBy(owner.to_owned()));
            }
        }
        let new_id = match mv.target {
            MoveTarget::Stream { key, fields, trim } => {
                Some(self.add_entry(&key, &fields, &trim, now)?.to_entry_id())
            }
            MoveTarget::Schedule { key, fields, delay } => {
                // It becomes an entry when due: refuse now what XADD would refuse then.
                if fields.is_empty() {
                    return Err(Error::NoFields { key });
                }
                self.schedule_entry(&key)?
                    .push(now.tick().plus(delay), fields);
                None
            }
            _ => return Err(Error::UnknownTarget),
        };
        if let Some(stream) = self.stream_mut(&mv.source)? {
            if let Some(g) = stream.groups.get_mut(&mv.group) {
                g.ack(id);
            }
            if mv.delete_source {
                stream.entries.remove(&id);
            }
        }
        Ok(MoveOutcome::Moved { new_id })
    }

    /// Adds the copy to the target and deletes the source entry, if the
    /// source entry exists. Nothing changes when it fails.
    pub(crate) fn transfer(&mut self, t: Transfer, now: &Now) -> Result<TransferOutcome, Error> {
        let id = StreamId::of(&t.id)?;
        let exists = self
            .stream(&t.source)?
            .is_some_and(|s| s.entries.contains_key(&id));
        if !exists {
            return Ok(TransferOutcome::Missing);
        }
        let new_id = self.add_entry(&t.target, &t.fields, &[], now)?;
        if let Some(source) = self.stream_mut(&t.source)? {
            source.entries.remove(&id);
        }
        Ok(TransferOutcome::Transferred {
            new_id: new_id.to_entry_id(),
        })
    }

    /// `XDEL`: the ids that existed, in the order given.
    pub(crate) fn delete_entries(
        &mut self,
        key: &str,
        ids: &[EntryId],
    ) -> Result<Vec<EntryId>, Error> {
        let parsed = parse_ids(ids)?;
        let Some(stream) = self.stream_mut(key)? else {
            return Ok(Vec::new());
        };
        Ok(ids
            .iter()
            .zip(parsed)
            .filter(|(_, id)| stream.entries.remove(id).is_some())
            .map(|(given, _)| given.clone())
            .collect())
    }

    /// Moves up to `limit` due items of `schedule`, earliest first, to the
    /// stream `ready`.
    pub(crate) fn promote(
        &mut self,
        schedule: &str,
        ready: &str,
        limit: usize,
        now: &Now,
    ) -> Result<Promotion, Error> {
        if self.schedule(schedule)?.is_none() {
            return Ok(Promotion::default());
        }
        self.check_stream(ready)?;
        let mut promoted = 0;
        while promoted < limit as u64 {
            let Some((slot, fields)) = self
                .schedule_mut(schedule)?
                .and_then(|s| s.pop_due(now.tick()))
            else {
                break;
            };
            if let Err(e) = self.add_entry(ready, &fields, &[], now) {
                if let Some(s) = self.schedule_mut(schedule)? {
                    s.restore(slot, fields);
                }
                return Err(e);
            }
            promoted += 1;
        }
        let next_due_in = self
            .schedule(schedule)?
            .and_then(|s| s.next_due_in(now.tick()));
        self.drop_if_empty(schedule);
        Ok(Promotion::new(promoted, next_due_in))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use streams_core::Fields;
    use streams_core::backend::Trim;

    use super::*;

    fn fields(v: &str) -> Fields {
        vec![(Bytes::from("k"), Bytes::from(v.to_owned()))]
    }

    fn new(key: &str) -> String {
        key.to_owned()
    }

    /// A keyspace with stream `s`, group `g` from the start, and `n` entries.
    fn setup(n: usize) -> (Keyspace, Vec<EntryId>) {
        let mut ks = Keyspace::default();
        assert!(ks.create_group("s", "g", &StartAt::Beginning).unwrap());
        let ids = (0..n)
            .map(|i| {
                EntryId::from(
                    ks.add_entry("s", &fields(&i.to_string()), &[], &Now::read())
                        .unwrap()
                        .to_string(),
                )
            })
            .collect();
        (ks, ids)
    }

    fn move_to_dlq(id: &EntryId, consumer: Option<&str>) -> Move {
        let mv = Move::new(
            "s",
            "g",
            id.clone(),
            MoveTarget::Stream {
                key: "dlq".into(),
                fields: fields("dead"),
                trim: vec![Trim::MaxLen {
                    len: 10,
                    approx: true,
                }],
            },
        );
        match consumer {
            Some(c) => mv.fenced(c),
            None => mv,
        }
    }

    #[test]
    fn create_group_makes_the_stream_and_is_idempotent() {
        let mut ks = Keyspace::default();
        assert!(ks.create_group("s", "g", &StartAt::End).unwrap());
        assert!(!ks.create_group("s", "g", &StartAt::Beginning).unwrap());
        assert!(ks.stream("s").unwrap().is_some());
        let nonsense = StartAt::After(EntryId::from("nonsense"));
        assert!(ks.create_group("t", "g", &nonsense).is_err());
        assert!(
            ks.stream("t").unwrap().is_none(),
            "a bad id creates nothing"
        );

        // `$` starts after what is there now.
        ks.add_entry("s", &fields("old"), &[], &Now::read())
            .unwrap();
        assert!(ks.create_group("s", "late", &StartAt::End).unwrap());
        let now = Now::read();
        let read = ks.read_group("late", "c", &[new("s")], 10, &now).unwrap();
        assert!(read.is_empty());
        let read = ks.read_group("g", "c", &[new("s")], 10, &now).unwrap();
        assert_eq!(read[0].entries.len(), 1);
    }

    #[test]
    fn missing_groups_fail_the_read_before_anything_is_delivered() {
        let (mut ks, _) = setup(2);
        for keys in [
            vec![new("s"), new("missing")],
            vec![new("missing"), new("s")],
        ] {
            let err = ks
                .read_group("g", "c", &keys, 10, &Now::read())
                .unwrap_err();
            assert_eq!(
                err,
                Error::NoGroup {
                    stream: "missing".into(),
                    group: "g".into()
                }
            );
        }
        let err = ks
            .read_group("other", "c", &[new("s")], 10, &Now::read())
            .unwrap_err();
        assert!(matches!(err, Error::NoGroup { .. }));
        let (g, _) = ks.group("s", "g").unwrap();
        assert!(g.pel.is_empty() && g.consumers.is_empty());
    }

    #[test]
    fn a_read_count_is_a_total_shared_fairly() {
        let mut ks = Keyspace::default();
        let now = Now::read();
        for key in ["a", "b", "c"] {
            assert!(ks.create_group(key, "g", &StartAt::Beginning).unwrap());
        }
        for (key, n) in [("a", 10), ("b", 10), ("c", 1)] {
            for i in 0..n {
                ks.add_entry(key, &fields(&i.to_string()), &[], &now)
                    .unwrap();
            }
        }
        let keys = [new("a"), new("b"), new("c")];
        let per_key = |read: &[KeyEntries]| -> Vec<(String, usize)> {
            read.iter()
                .map(|r| (r.key.clone(), r.entries.len()))
                .collect()
        };
        // 7 over 3 keys: 3, 2, 2 — but c has 1, so its share goes to the others.
        let read = ks.read_group("g", "c1", &keys, 7, &now).unwrap();
        assert_eq!(
            per_key(&read),
            [
                ("a".to_owned(), 3),
                ("b".to_owned(), 3),
                ("c".to_owned(), 1)
            ]
        );
        // 1 over 3 keys: the first listed gets it.
        let read = ks
            .read_group("g", "c1", &[new("b"), new("a")], 1, &now)
            .unwrap();
        assert_eq!(per_key(&read), [("b".to_owned(), 1)]);
        // More than there is: everything, and no more.
        let read = ks.read_group("g", "c1", &keys, 100, &now).unwrap();
        let total: usize = read.iter().map(|r| r.entries.len()).sum();
        assert_eq!(total, 10 + 10 + 1 - 7 - 1);
    }

    #[test]
    fn ack_counts_only_what_was_pending() {
        let (mut ks, ids) = setup(3);
        ks.read_group("g", "c", &[new("s")], 2, &Now::read())
            .unwrap();
        let all = ids;
        assert_eq!(ks.ack("s", "g", &all, false).unwrap(), 2);
        assert_eq!(ks.ack("s", "g", &all, false).unwrap(), 0);
        assert_eq!(ks.ack("missing", "g", &all, true).unwrap(), 0);
        assert_eq!(ks.ack("s", "nogroup", &all, false).unwrap(), 0);
        assert!(ks.ack("s", "g", &[EntryId::from("bad")], false).is_err());
        // With delete, the entries go too, pending or not.
        assert_eq!(ks.ack("s", "g", &all[..1], true).unwrap(), 0);
        assert_eq!(ks.stream("s").unwrap().unwrap().entries.len(), 2);
    }

    #[test]
    fn moves_are_fenced_and_atomic() {
        let (mut ks, ids) = setup(2);
        let now = Now::read();
        ks.read_group("g", "a", &[new("s")], 1, &now).unwrap();
        ks.read_group("g", "b", &[new("s")], 1, &now).unwrap();

        // Not pending at all, or pending for someone else: nothing written.
        let out = ks
            .move_entry(move_to_dlq(&EntryId::from("9-9"), None), &now)
            .unwrap();
        assert_eq!(out, MoveOutcome::NotPending);
        let out = ks
            .move_entry(move_to_dlq(&ids[1], Some("a")), &now)
            .unwrap();
        assert_eq!(out, MoveOutcome::OwnedBy("b".into()));
        let mut wrong_group = move_to_dlq(&ids[0], None);
        wrong_group.group = "nope".to_owned();
        assert_eq!(
            ks.move_entry(wrong_group, &now).unwrap(),
            MoveOutcome::NotPending
        );
        assert!(ks.stream("dlq").unwrap().is_none());

        // A target of the wrong type fails and leaves the entry pending.
        ks.hash_entry("h").unwrap();
        let mut bad = move_to_dlq(&ids[0], Some("a"));
        bad.target = MoveTarget::Schedule {
            key: "h".into(),
            fields: fields("x"),
            delay: Duration::ZERO,
        };
        assert!(matches!(
            ks.move_entry(bad, &now),
            Err(Error::WrongType { .. })
        ));
        assert_eq!(
            ks.group("s", "g")
                .unwrap()
                .0
                .owner(StreamId::of(&ids[0]).unwrap()),
            Some("a")
        );

        let out = ks
            .move_entry(move_to_dlq(&ids[0], Some("a")), &now)
            .unwrap();
        let MoveOutcome::Moved {
            new_id: Some(new_id),
        } = out
        else {
            panic!("{out:?}")
        };
        assert_eq!(
            ks.stream("dlq")
                .unwrap()
                .unwrap()
                .range((StreamId::MIN, StreamId::MAX), 10, false)[0]
                .id,
            new_id
        );
        assert_eq!(ks.group("s", "g").unwrap().0.pel.len(), 1);
        assert_eq!(ks.stream("s").unwrap().unwrap().entries.len(), 2);
        // Moved already: refused the second time.
        let out = ks
            .move_entry(move_to_dlq(&ids[0], Some("a")), &now)
            .unwrap();
        assert_eq!(out, MoveOutcome::NotPending);

        // Without a fencing consumer, any pending entry moves; the source
        // entry can go with it.
        let mut mv = move_to_dlq(&ids[1], None);
        mv.delete_source = true;
        mv.target = MoveTarget::Schedule {
            key: "sched".into(),
            fields: fields("retry"),
            delay: Duration::from_secs(60),
        };
        assert_eq!(
            ks.move_entry(mv, &now).unwrap(),
            MoveOutcome::Moved { new_id: None }
        );
        assert_eq!(ks.stream("s").unwrap().unwrap().entries.len(), 1);
        assert_eq!(ks.schedule("sched").unwrap().unwrap().len(), 1);
    }

    #[test]
    fn promotion_takes_due_items_in_order() {
        let mut ks = Keyspace::default();
        let now = Now::read();
        let sched = ks.schedule_entry("sched").unwrap();
        sched.push(now.tick().minus(Duration::from_secs(1)), fields("second"));
        sched.push(now.tick().minus(Duration::from_secs(2)), fields("first"));
        sched.push(
            now.tick().minus(Duration::from_millis(500)),
            fields("third"),
        );
        sched.push(now.tick().plus(Duration::from_secs(30)), fields("later"));
        // A reader waits on the ready stream.
        ks.create_group("ready", "g", &StartAt::End).unwrap();
        let signals = [ks.added_signal("ready").unwrap()];
        let _waiting = crate::state::Waiting::new(&signals);

        let p = ks.promote("sched", "ready", 2, &now).unwrap();
        assert_eq!(p.promoted, 2);
        assert_eq!(p.next_due_in, Some(Duration::ZERO), "one more is due");
        let p = ks.promote("sched", "ready", 10, &now).unwrap();
        assert_eq!(p.promoted, 1);
        let left = p.next_due_in.unwrap();
        assert!(left > Duration::from_secs(29) && left <= Duration::from_secs(30));
        let ready =
            ks.stream("ready")
                .unwrap()
                .unwrap()
                .range((StreamId::MIN, StreamId::MAX), 10, false);
        let order: Vec<_> = ready.iter().map(|e| e.fields.clone()).collect();
        assert_eq!(order, [fields("first"), fields("second"), fields("third")]);
        assert_eq!(
            ks.take_wakes().len(),
            1,
            "readers of the ready stream are woken"
        );

        let later = Now::at(now.ms(), now.tick().plus(Duration::from_secs(31)));
        let p = ks.promote("sched", "ready", 10, &later).unwrap();
        assert_eq!((p.promoted, p.next_due_in), (1, None));
        assert!(
            ks.schedule("sched").unwrap().is_none(),
            "an empty sorted set is deleted"
        );
        assert_eq!(
            ks.promote("sched", "ready", 10, &later).unwrap(),
            Promotion::default()
        );

        ks.schedule_entry("s2")
            .unwrap()
            .push(now.tick(), fields("x"));
        ks.hash_entry("h").unwrap();
        assert!(ks.promote("s2", "h", 10, &now).is_err());
        assert_eq!(ks.schedule("s2").unwrap().unwrap().len(), 1, "nothing lost");
    }
}
