//! A consumer group on one stream: its cursor, its pending entries list
//! (PEL) and its consumers, with the PEL rules of Redis 7.0.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound::{Excluded, Unbounded};
use std::sync::Arc;
use std::time::Duration;

use streams_core::Entry;
use streams_core::backend::{
    AutoClaimPage, ConsumerInfo, ConsumerRemoval, Cursor, DeliveredEntry, EntryId, GroupInfo,
    PendingEntry,
};

pub(crate) use crate::entries::Entries;
use crate::entries::Hint;
use crate::id::{StreamId, Tick};

/// XAUTOCLAIM examines at most `count` times this many PEL entries.
const AUTOCLAIM_ATTEMPTS_FACTOR: usize = 10;

/// One delivered, unacknowledged entry.
#[derive(Debug, Clone)]
pub(crate) struct Nack {
    pub(crate) consumer: Arc<str>,
    pub(crate) delivered: Tick,
    pub(crate) deliveries: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Consumer {
    /// Last time Redis would have looked the consumer up for a read or claim.
    pub(crate) seen: Tick,
    /// Its share of the group's PEL.
    pub(crate) pending: BTreeSet<StreamId>,
}

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub(crate) last_delivered: StreamId,
    /// Where `last_delivered` is in the stream, for the next read.
    cursor: Hint,
    pub(crate) pel: BTreeMap<StreamId, Nack>,
    pub(crate) consumers: BTreeMap<Arc<str>, Consumer>,
}

impl Group {
    pub(crate) fn new(last_delivered: StreamId) -> Self {
        Self {
            last_delivered,
            cursor: Hint::default(),
            pel: BTreeMap::new(),
            consumers: BTreeMap::new(),
        }
    }

    /// Looks a consumer up as a read or claim does: creating it if needed and
    /// refreshing its last-seen time. Returns the shared name.
    fn touch_consumer(&mut self, name: &str, now: Tick) -> Arc<str> {
        if let Some(c) = self.consumers.get_mut(name) {
            c.seen = now;
        }
        if let Some((key, _)) = self.consumers.get_key_value(name) {
            return Arc::clone(key);
        }
        let key: Arc<str> = Arc::from(name);
        self.consumers.insert(
            Arc::clone(&key),
            Consumer {
                seen: now,
                pending: BTreeSet::new(),
            },
        );
        key
    }

    /// Makes `id` pending for `consumer` (which must exist), taking it from
    /// its previous owner if it had one.
    fn assign(&mut self, id: StreamId, consumer: &Arc<str>, delivered: Tick, deliveries: u64) {
        let previous = self.pel.insert(
            id,
            Nack {
                consumer: Arc::clone(consumer),
                delivered,
                deliveries,
            },
        );
        if let Some(old) = previous {
            if old.consumer != *consumer {
                if let Some(c) = self.consumers.get_mut(&old.consumer) {
                    c.pending.remove(&id);
                }
            }
        }
        if let Some(c) = self.consumers.get_mut(consumer) {
            c.pending.insert(id);
        }
    }

    /// Removes `id` from the PEL; whether it was there.
    pub(crate) fn ack(&mut self, id: StreamId) -> bool {
        let Some(nack) = self.pel.remove(&id) else {
            return false;
        };
        if let Some(c) = self.consumers.get_mut(&nack.consumer) {
            c.pending.remove(&id);
        }
        true
    }

    /// The owner of a pending entry.
    pub(crate) fn owner(&self, id: StreamId) -> Option<&str> {
        self.pel.get(&id).map(|n| &*n.consumer)
    }

    /// Whether entries wait after the group's cursor.
    pub(crate) fn has_new(&self, entries: &Entries) -> bool {
        entries
            .after_hinted(self.last_delivered, self.cursor)
            .next()
            .is_some()
    }

    /// `XREADGROUP ... >`: entries after the group's cursor, which advances.
    /// The consumer is created only when there is something to serve, as in
    /// Redis 7.0. Appends what it serves to `out`.
    pub(crate) fn read_new(
        &mut self,
        entries: &Entries,
        consumer: &str,
        limit: usize,
        now: Tick,
        out: &mut Vec<DeliveredEntry>,
    ) -> usize {
        let mut fresh = entries
            .after_hinted(self.last_delivered, self.cursor)
            .take(limit)
            .peekable();
        if fresh.peek().is_none() {
            return 0;
        }
        let name = self.touch_consumer(consumer, now);
        let mut served = 0;
        let mut last = self.last_delivered;
        // New entries are pending nowhere yet: no previous owner to update.
        let mut pending = self.consumers.get_mut(&name).map(|c| &mut c.pending);
        let mut cursor = self.cursor;
        for (hint, id, packed) in fresh {
            self.pel.insert(
                id,
                Nack {
                    consumer: Arc::clone(&name),
                    delivered: now,
                    deliveries: 1,
                },
            );
            if let Some(p) = pending.as_deref_mut() {
                p.insert(id);
            }
            out.push(DeliveredEntry::new(
                Entry::new(id.to_entry_id(), packed.fields()),
                1,
            ));
            last = id;
            cursor = hint;
            served += 1;
        }
        self.last_delivered = last;
        self.cursor = cursor;
        served
    }

    /// Delivers again the entries of `ids` still pending for `consumer`
    /// (`XCLAIM` to itself after checking the owner): each counts a
    /// delivery and its idle time starts again. Ids whose entries are gone
    /// are reported and stay pending; ids not pending for the consumer are
    /// skipped, and so are those whose delivery count is not the one
    /// `expected` gives (missing: any count).
    pub(crate) fn redeliver(
        &mut self,
        entries: &Entries,
        consumer: &str,
        ids: &[StreamId],
        expected: &[u64],
        now: Tick,
    ) -> (Vec<DeliveredEntry>, Vec<EntryId>) {
        let mut served = Vec::new();
        let mut deleted = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let Some(nack) = self.pel.get(id) else {
                continue;
            };
            if *nack.consumer != *consumer || expected.get(i).is_some_and(|n| *n != nack.deliveries)
            {
                continue;
            }
            let Some(packed) = entries.get(id) else {
                deleted.push(id.to_entry_id());
                continue;
            };
            if let Some(nack) = self.pel.get_mut(id) {
                nack.deliveries = nack.deliveries.saturating_add(1);
                nack.delivered = now;
                served.push(DeliveredEntry::new(
                    Entry::new(id.to_entry_id(), packed.fields()),
                    nack.deliveries,
                ));
            }
        }
        if !served.is_empty() {
            if let Some(c) = self.consumers.get_mut(consumer) {
                c.seen = now;
            }
        }
        (served, deleted)
    }

    /// `XAUTOCLAIM` as Redis 7.0 runs it: examines at most `count * 10` PEL
    /// entries from `start`; ids whose entries are gone leave the PEL and are
    /// reported; `count` bounds claimed plus deleted.
    pub(crate) fn auto_claim(
        &mut self,
        entries: &Entries,
        consumer: &str,
        min_idle: Duration,
        start: StreamId,
        count: usize,
        now: Tick,
    ) -> AutoClaimPage {
        let mut page = AutoClaimPage::default();
        let mut attempts = count.saturating_mul(AUTOCLAIM_ATTEMPTS_FACTOR);
        let mut left = count;
        let mut claimer: Option<Arc<str>> = None;
        let mut next = self.pel.range(start..).next().map(|(id, _)| *id);
        while attempts > 0 && left > 0 {
            attempts -= 1;
            let Some(id) = next else { break };
            next = self
                .pel
                .range((Excluded(id), Unbounded))
                .next()
                .map(|(id, _)| *id);
            let Some(packed) = entries.get(&id) else {
                self.ack(id);
                page.deleted.push(id.to_entry_id());
                left -= 1;
                continue;
            };
            let (idle, deliveries) = match self.pel.get(&id) {
                Some(nack) => (now.since(nack.delivered), nack.deliveries),
                None => continue,
            };
            if idle < min_idle {
                continue;
            }
            // Redis looks the claimer up (creating it) only once it claims.
            let name = claimer.get_or_insert_with(|| self.touch_consumer(consumer, now));
            let name = Arc::clone(name);
            let deliveries = deliveries.saturating_add(1);
            self.assign(id, &name, now, deliveries);
            page.entries.push(DeliveredEntry::new(
                Entry::new(id.to_entry_id(), packed.fields()),
                deliveries,
            ));
            left -= 1;
        }
        page.next = next.map(|id| Cursor::new(id.to_string()));
        page
    }

    /// Extended `XPENDING`: PEL entries in `[lo, hi]`, in id order.
    pub(crate) fn pending(
        &self,
        (lo, hi): (StreamId, StreamId),
        count: usize,
        consumer: Option<&str>,
        min_idle: Option<Duration>,
        now: Tick,
    ) -> Vec<PendingEntry> {
        let min_idle = min_idle.unwrap_or(Duration::ZERO);
        let report = |(id, nack): (&StreamId, &Nack)| {
            let idle = now.since(nack.delivered);
            (idle >= min_idle).then(|| {
                PendingEntry::new(
                    id.to_entry_id(),
                    nack.consumer.to_string(),
                    idle,
                    nack.deliveries,
                )
            })
        };
        match consumer {
            None => self
                .pel
                .range(lo..=hi)
                .filter_map(report)
                .take(count)
                .collect(),
            Some(name) => match self.consumers.get(name) {
                None => Vec::new(),
                Some(c) => c
                    .pending
                    .range(lo..=hi)
                    .filter_map(|id| self.pel.get_key_value(id))
                    .filter_map(report)
                    .take(count)
                    .collect(),
            },
        }
    }

    /// Backdates the delivery of entries pending for `consumer` without
    /// counting a delivery (`XCLAIM ... IDLE ms JUSTID` to their owner), and
    /// with `refund` gives one delivery back (`RETRYCOUNT` one less, not
    /// below 0); returns the ids it changed. As `XCLAIM` does in Redis 7.0,
    /// an id whose entry is gone leaves the PEL instead and is not returned.
    ///
    /// `expected` gives, per id, the delivery count the entry must still
    /// have for it to be changed (missing: any count).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn set_idle(
        &mut self,
        entries: &Entries,
        consumer: &str,
        ids: &[StreamId],
        expected: &[u64],
        idle: Duration,
        refund: bool,
        now: Tick,
    ) -> Vec<EntryId> {
        let delivered = now.minus(idle);
        let mut updated = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let Some(nack) = self.pel.get(id) else {
                continue;
            };
            if *nack.consumer != *consumer || expected.get(i).is_some_and(|n| *n != nack.deliveries)
            {
                continue;
            }
            if !entries.contains_key(id) {
                self.ack(*id);
                continue;
            }
            if let Some(nack) = self.pel.get_mut(id) {
                nack.delivered = delivered;
                if refund {
                    nack.deliveries = nack.deliveries.saturating_sub(1);
                }
                updated.push(id.to_entry_id());
            }
        }
        if !updated.is_empty() {
            // Claiming to itself is a claim: Redis refreshes the consumer.
            if let Some(c) = self.consumers.get_mut(consumer) {
                c.seen = now;
            }
        }
        updated
    }

    /// `XINFO GROUPS` for this group.
    pub(crate) fn info(&self, name: &str, entries: &Entries) -> GroupInfo {
        let lag = entries
            .after_hinted(self.last_delivered, self.cursor)
            .count();
        let mut info = GroupInfo::new(name, self.consumers.len() as u64, self.pel.len() as u64);
        info.last_delivered = Some(self.last_delivered.to_entry_id());
        info.lag = Some(lag as u64);
        info
    }

    /// `XINFO CONSUMERS`, in name order.
    pub(crate) fn consumer_infos(&self, now: Tick) -> Vec<ConsumerInfo> {
        self.consumers
            .iter()
            .map(|(name, c)| {
                ConsumerInfo::new(name.to_string(), c.pending.len() as u64, now.since(c.seen))
            })
            .collect()
    }

    /// Removes a consumer that holds nothing.
    pub(crate) fn delete_consumer(&mut self, name: &str) -> ConsumerRemoval {
        match self.consumers.get(name) {
            None => ConsumerRemoval::Missing,
            Some(c) if !c.pending.is_empty() => ConsumerRemoval::HasPending(c.pending.len() as u64),
            Some(_) => {
                self.consumers.remove(name);
                ConsumerRemoval::Deleted
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::packed::Arena;

    fn id(ms: u64) -> StreamId {
        StreamId::new(ms, 1)
    }

    /// Entries 1-1 ..= n-1.
    fn entries(n: u64) -> Entries {
        let mut arena = Arena::default();
        (1..=n)
            .map(|ms| {
                let fields = [(Bytes::from("n"), Bytes::from(ms.to_string()))];
                (id(ms), arena.pack(&fields))
            })
            .collect()
    }

    impl Group {
        fn read_new_vec(
            &mut self,
            entries: &Entries,
            consumer: &str,
            limit: usize,
            now: Tick,
        ) -> Vec<DeliveredEntry> {
            let mut out = Vec::new();
            self.read_new(entries, consumer, limit, now, &mut out);
            out
        }
    }

    fn ids(v: &[DeliveredEntry]) -> Vec<&str> {
        v.iter().map(|e| e.entry.id.as_str()).collect()
    }

    fn cursor(next: &Option<Cursor>) -> Option<&str> {
        next.as_ref().map(Cursor::as_str)
    }

    #[test]
    fn new_reads_advance_the_cursor_and_fill_the_pel() {
        let es = entries(4);
        let mut g = Group::new(StreamId::MIN);
        let now = Tick::now();
        assert_eq!(
            ids(&g.read_new_vec(&es, "c1", 3, now)),
            ["1-1", "2-1", "3-1"]
        );
        assert_eq!(g.last_delivered, id(3));
        assert_eq!(ids(&g.read_new_vec(&es, "c2", 3, now)), ["4-1"]);
        assert!(g.read_new_vec(&es, "c3", 3, now).is_empty());
        // A consumer is created only when served (Redis 7.0).
        assert!(!g.consumers.contains_key("c3"));
        assert_eq!(g.owner(id(4)), Some("c2"));
        assert_eq!(g.pel[&id(1)].deliveries, 1);
        let info = g.info("g", &es);
        assert_eq!((info.consumers, info.pending, info.lag), (2, 4, Some(0)));
        assert_eq!(info.last_delivered.unwrap(), "4-1");
    }

    #[test]
    fn redeliveries_count_deliveries_and_report_deleted_ids() {
        let mut es = entries(4);
        let mut g = Group::new(StreamId::MIN);
        let t0 = Tick::now();
        g.read_new_vec(&es, "c1", 3, t0);
        g.read_new_vec(&es, "c2", 1, t0);
        es.remove(&id(2));
        let t1 = t0.plus(Duration::from_secs(1));
        let asked = [id(3), id(2), id(4), id(1)];
        let (served, deleted) = g.redeliver(&es, "c1", &asked, &[], t1);
        // In the order asked; c2's entry left alone.
        assert_eq!(ids(&served), ["3-1", "1-1"]);
        assert_eq!(deleted, ["2-1"]);
        assert_eq!(g.pel[&id(1)].deliveries, 2);
        assert_eq!(g.pel[&id(1)].delivered, t1);
        // The deleted id stays pending, its count unchanged.
        assert_eq!(g.pel[&id(2)].deliveries, 1);
        assert_eq!(g.pel[&id(4)].deliveries, 1);
        // An expected count that no longer holds leaves the entry alone.
        let (served, _) = g.redeliver(&es, "c1", &[id(1), id(3)], &[1, 2], t1);
        assert_eq!(ids(&served), ["3-1"]);
        assert_eq!(g.pel[&id(1)].deliveries, 2);
    }

    #[test]
    fn auto_claim_pages_and_reports_deleted_ids() {
        // The sequence measured on Redis 7.0.15.
        let mut es = entries(4);
        let mut g = Group::new(StreamId::MIN);
        let t0 = Tick::now();
        g.read_new_vec(&es, "c1", 3, t0);
        es.remove(&id(2));
        let t1 = t0.plus(Duration::from_millis(20));

        // Nothing idle enough, but the deleted id still leaves the PEL and
        // uses up the count.
        let page = g.auto_claim(&es, "c2", Duration::from_secs(1000), StreamId::MIN, 1, t1);
        assert_eq!(cursor(&page.next), Some("3-1"));
        assert!(page.entries.is_empty());
        assert_eq!(page.deleted, ["2-1"]);
        assert!(g.owner(id(2)).is_none());
        assert!(!g.consumers.contains_key("c2"));
        assert_eq!(g.consumers["c1"].pending.len(), 2);

        let page = g.auto_claim(&es, "c3", Duration::ZERO, StreamId::MIN, 1, t1);
        assert_eq!(cursor(&page.next), Some("3-1"));
        assert_eq!(page.entries.len(), 1);
        assert_eq!(
            (
                page.entries[0].entry.id.as_str(),
                page.entries[0].deliveries
            ),
            ("1-1", 2)
        );

        let page = g.auto_claim(&es, "c3", Duration::ZERO, StreamId::MIN, 2, t1);
        assert_eq!(page.next, None);
        let claimed: Vec<_> = page
            .entries
            .iter()
            .map(|c| (c.entry.id.as_str(), c.deliveries))
            .collect();
        assert_eq!(claimed, [("1-1", 3), ("3-1", 2)]);
        assert_eq!(g.owner(id(3)), Some("c3"));
        assert!(g.consumers["c1"].pending.is_empty());
        assert_eq!(g.consumers["c3"].pending.len(), 2);
    }

    #[test]
    fn auto_claim_respects_idle_time_and_attempts() {
        let es = entries(30);
        let mut g = Group::new(StreamId::MIN);
        let t0 = Tick::now();
        g.read_new_vec(&es, "c1", 30, t0);
        // Only the last entry is idle long enough.
        for ms in 1..30 {
            g.set_idle(
                &es,
                "c1",
                &[id(ms)],
                &[],
                Duration::ZERO,
                false,
                t0.plus(Duration::from_secs(10)),
            );
        }
        let t1 = t0.plus(Duration::from_secs(10));
        // count 1 examines at most 10 entries.
        let page = g.auto_claim(&es, "c2", Duration::from_secs(5), StreamId::MIN, 1, t1);
        assert!(page.entries.is_empty());
        assert_eq!(cursor(&page.next), Some("11-1"));
        let page = g.auto_claim(&es, "c2", Duration::from_secs(5), id(20), 1, t1);
        assert_eq!(page.entries.len(), 0);
        assert_eq!(cursor(&page.next), Some("30-1"));
        let page = g.auto_claim(&es, "c2", Duration::from_secs(5), id(30), 1, t1);
        assert_eq!(ids(&page.entries), ["30-1"]);
        assert_eq!(page.next, None);
    }

    #[test]
    fn pending_filters_and_set_idle_fences() {
        let es = entries(3);
        let mut g = Group::new(StreamId::MIN);
        let t0 = Tick::now();
        g.read_new_vec(&es, "a", 2, t0);
        g.read_new_vec(&es, "b", 1, t0);
        let all = (StreamId::MIN, StreamId::MAX);
        let t1 = t0.plus(Duration::from_secs(3));
        let p = g.pending(all, 10, None, None, t1);
        assert_eq!(p.len(), 3);
        assert_eq!(
            (p[2].consumer.as_str(), p[2].idle, p[2].deliveries),
            ("b", Duration::from_secs(3), 1)
        );
        assert_eq!(g.pending(all, 2, None, None, t1).len(), 2);
        assert_eq!(g.pending(all, 10, Some("b"), None, t1).len(), 1);
        assert!(g.pending(all, 10, Some("nobody"), None, t1).is_empty());
        assert_eq!(g.pending((id(2), id(3)), 10, None, None, t1).len(), 2);

        // Only the owner's entries are backdated.
        let updated = g.set_idle(
            &es,
            "a",
            &[id(1), id(3), id(9)],
            &[],
            Duration::from_secs(60),
            false,
            t1,
        );
        assert_eq!(updated, ["1-1"]);
        // A hand-back expecting another delivery count changes nothing.
        assert!(
            g.set_idle(&es, "a", &[id(1)], &[2], Duration::ZERO, true, t1)
                .is_empty()
        );
        assert_eq!(g.pending(all, 1, None, None, t1)[0].deliveries, 1);
        let idle = g.pending(all, 10, None, Some(Duration::from_secs(30)), t1);
        assert_eq!(idle.len(), 1);
        assert_eq!(
            (idle[0].id.as_str(), idle[0].idle),
            ("1-1", Duration::from_secs(60))
        );
        assert_eq!(idle[0].deliveries, 1);

        // An owned id whose entry is gone leaves the PEL, as with XCLAIM.
        let mut es = es;
        es.remove(&id(2));
        assert!(
            g.set_idle(&es, "a", &[id(2)], &[], Duration::ZERO, false, t1)
                .is_empty()
        );
        assert!(g.owner(id(2)).is_none());
        assert_eq!(g.consumers["a"].pending.len(), 1);
    }

    #[test]
    fn consumers_with_pending_work_are_kept() {
        let es = entries(1);
        let mut g = Group::new(StreamId::MIN);
        let t0 = Tick::now();
        g.read_new_vec(&es, "a", 1, t0);
        g.touch_consumer("idle", t0);
        assert_eq!(g.delete_consumer("a"), ConsumerRemoval::HasPending(1));
        assert_eq!(g.delete_consumer("idle"), ConsumerRemoval::Deleted);
        assert_eq!(g.delete_consumer("idle"), ConsumerRemoval::Missing);
        let infos = g.consumer_infos(t0.plus(Duration::from_secs(2)));
        assert_eq!(infos.len(), 1);
        assert_eq!(
            (infos[0].pending, infos[0].idle),
            (1, Duration::from_secs(2))
        );
        assert!(g.ack(id(1)));
        assert!(!g.ack(id(1)));
        assert_eq!(g.delete_consumer("a"), ConsumerRemoval::Deleted);
    }
}
